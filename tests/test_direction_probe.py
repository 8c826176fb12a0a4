"""The direction probe: its counts, that all four words start from one noise, and the trainer's hook."""

from __future__ import annotations

import pytest
import torch

from test_training import image_model, shapes, temporal_config, write_config  # noqa: F401  (fixtures)
from videoldm.data.shapes import DIRECTIONS, parse_caption, render_shapes_video
from videoldm.evaluation.direction_probe import GROUPS, ProbeResult, direction_probe
from videoldm.io import write_video
from videoldm.loading import ModelGeometry
from videoldm.training.config import ConfigError
from videoldm.training.stages import load_config
from videoldm.training.trainer import train


def test_counts():
    result = ProbeResult(
        groups=[("red", "circle"), ("blue", "square")],
        moved=[["left", "right", "up", "down"], ["right", "right", "down", None]],
    )
    assert result.total == 8
    assert result.right == 4 + 1  # the second group: only "right" moved right
    assert result.axis_right == 4 + 3  # left->right, right->right, up->down are on the axis; None is not
    assert result.four_ways == 1
    assert result.summary() == {"direction_right": 5 / 8, "axis_right": 7 / 8, "four_ways": 0.5}
    assert "5/8 right" in result.line()


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
