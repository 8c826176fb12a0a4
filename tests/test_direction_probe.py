"""The direction probe: its counts, that all four words start from one noise, and the trainer's hook."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from test_training import image_model, shapes, temporal_config, write_config  # noqa: F401  (fixtures)
from videoldm.data.shapes import DIRECTIONS, parse_caption, render_shapes_video
from videoldm.evaluation.direction_probe import GROUPS, ProbeResult, direction_probe, word_advantage
from videoldm.io import write_video
from videoldm.loading import ModelGeometry
from videoldm.training.config import ConfigError
from videoldm.training.stages import load_config
from videoldm.training.trainer import train


def test_counts():
    result = ProbeResult(
        groups=[("red", "circle"), ("blue", "square")],
        moved=[["left", "right", "up", "down"], ["right", "right", "down", None]],
        one_object=[[True, True, False, True], [True, True, True, False]],
        drawn=[
            [("red", "circle"), ("red", "circle"), ("red", "circle"), ("red", "square")],
            [("blue", "square"), ("red", "square"), (None, None), ("blue", "circle")],
        ],
    )
    assert result.total == 8
    assert result.right == 4 + 1  # the second group: only "right" moved right
    assert result.axis_right == 4 + 3  # left->right, right->right, up->down are on the axis; None is not
    assert result.four_ways == 1
    assert result.identity == 6
    assert result.colour_right == 4 + 2  # the second group: one red, one not found
    assert result.shape_right == 3 + 2
    assert result.summary() == {
        "direction_right": 5 / 8,
        "axis_right": 7 / 8,
        "four_ways": 0.5,
        "identity": 6 / 8,
        "colour": 6 / 8,
        "shape": 5 / 8,
    }
    assert "5/8 right" in result.line() and "one object throughout in 6/8" in result.line()
    assert "colour right in 6/8, shape in 5/8" in result.line()
    both = ProbeResult(groups=[])
    both.extend(result)
    both.extend(result)
    assert (both.total, both.right, both.identity, both.colour_right) == (16, 10, 12, 12)


class RenderingPipe:
    """Stands in for a model: renders each prompt's caption (a model that follows the prompt), or always the
    first prompt's (one that ignores the direction word), and records the initial noise it was given."""

    geometry = ModelGeometry(vae_scale_factor=4, num_down_blocks=2, sample_size=16, latent_channels=4)

    def __init__(self, *, follow: bool) -> None:
        self.follow = follow
        self.latents: list[torch.Tensor] = []

    def __call__(self, prompts, *, num_frames, latents, **_) -> object:
        self.latents.append(latents)
        videos = []
        for i, prompt in enumerate(prompts):
            colour, shape, direction = parse_caption(prompt if self.follow else prompts[0])
            videos.append(render_shapes_video(colour, shape, direction, rng=i, num_frames=num_frames, size=64))
        return type("Out", (), {"frames": torch.stack(videos)})


@pytest.mark.parametrize("follow", [True, False])
def test_probe_scores_a_model_that_follows_the_prompt_and_one_that_does_not(follow):
    pipe = RenderingPipe(follow=follow)
    result = direction_probe(pipe, groups=GROUPS[:2], num_frames=8)
    assert [len(x) for x in pipe.latents] == [len(DIRECTIONS)] * 2
    for latents in pipe.latents:  # the four words of a group start from one noise
        assert all(torch.equal(latents[0], other) for other in latents[1:])
    assert not torch.equal(pipe.latents[0], pipe.latents[1]), "groups get their own noise"
    assert result.identity == 8  # every rendered video is one object, whichever way it moves
    if follow:
        assert (result.right, result.four_ways) == (8, 2)
    else:
        assert (result.right, result.four_ways) == (2, 0)


def test_trainer_runs_the_probe_every_n_steps_on_the_groups_the_data_has(tmp_path, shapes, image_model, capsys):  # noqa: F811
    # every caption of the first probe group (and none of the others: 4 videos)
    data = tmp_path / "four"
    data.mkdir()
    rows = ["path,caption"]
    for i, direction in enumerate(DIRECTIONS):
        video = render_shapes_video("red", "circle", direction, rng=i, num_frames=8, size=32)
        write_video(data / f"{i}.mp4", video, fps=8)
        rows.append(f"{i}.mp4,a red circle moving {direction}")
    (data / "captions.csv").write_text("\n".join(rows) + "\n")
    config = load_config(temporal_config(tmp_path, data, image_model, max_steps=2, probe_every=2))
    train(config)
    out = capsys.readouterr().out
    assert out.count("step 2: direction probe:") == 1 and "in 0/1 groups" in out, out
    assert "word advantage (own word best) t=200:" in out, out
    (tmp_path / "b").mkdir()
    skipped = load_config(temporal_config(tmp_path / "b", shapes, image_model, max_steps=1, probe_every=1))
    train(skipped)
    assert "direction probe skipped" in capsys.readouterr().out


def test_probe_every_is_refused_for_a_stage_that_does_not_sample(tmp_path, shapes):  # noqa: F811
    path = write_config(
        tmp_path / "a.yaml",
        stage="autoencoder",
        output_dir=str(tmp_path / "out"),
        data={"videos": str(shapes)},
        model={"vae": {"latent_channels": 4}},
        train={"probe_every": 10},
    )
    with pytest.raises(ConfigError, match=r"train\.probe_every"):
        load_config(path)


class WordModel:
    """Stands in for a denoiser and its text encoder: the "text" of a caption is the index of its direction word;
    the denoiser returns the true noise, plus an error unless the word is the clip's own (`follow`)."""

    def __init__(self, *, follow: bool, seed: int) -> None:
        self.follow, self.seed = follow, seed

    def text(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([float(list(DIRECTIONS).index(parse_caption(p)[2])) for p in prompts])[:, None, None]

    def unet(self, noisy: torch.Tensor, t: torch.Tensor, *, encoder_hidden_states: torch.Tensor):
        noise = torch.randn(noisy.shape, generator=torch.Generator().manual_seed(self.seed))
        own = torch.arange(noisy.shape[0]) % len(DIRECTIONS)  # clips come group by group, in DIRECTIONS order
        wrong = (encoder_hidden_states[:, 0, 0] != own).float() if self.follow else torch.zeros(noisy.shape[0])
        return SimpleNamespace(sample=noise + 0.1 * wrong[:, None, None, None, None] + 0.01)


@pytest.mark.parametrize("follow", [True, False])
def test_word_advantage_is_zero_for_a_model_that_ignores_the_word(follow):
    from diffusers import AutoencoderKL, DDPMScheduler

    vae = AutoencoderKL(
        block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        latent_channels=4,
        norm_num_groups=4,
    )
    model = WordModel(follow=follow, seed=3)
    result = word_advantage(
        model.unet,
        vae,
        model.text,
        DDPMScheduler(),
        groups=GROUPS[:2],
        timesteps=(100, 900),
        num_frames=3,
        frame_stride=2,
        size=32,
        seed=3,
    )
    assert set(result) == {100, 900}
    for row in result.values():
        if follow:
            assert row["accuracy"] == 1.0 and row["advantage"] > 10  # error 0.1 vs 0.01 on every element
        else:
            assert row == {"advantage": 0.0, "accuracy": 0.25}  # ties: the first word wins, right for 1 in 4
