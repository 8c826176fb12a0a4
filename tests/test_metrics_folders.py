"""FVD / FID / CLIPSIM on folders of video files, with random-weight networks and a tiny CLIP; CLI errors."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from test_metrics_networks import signal_preserving
from videoldm.cli.app import app
from videoldm.evaluation.clipsim import clip_similarity, load_clip
from videoldm.evaluation.i3d import InceptionI3d
from videoldm.evaluation.inception import FIDInceptionV3
from videoldm.evaluation.metrics import clipsim, frame_fid, fvd
from videoldm.io import read_video, write_video


def write_videos(folder, n, *, seed, frames=9, shift=0.0):
    folder.mkdir()
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        base = torch.rand(3, 1, 16, 16, generator=g) * 2 - 1
        motion = torch.linspace(-0.3, 0.3, frames)[None, :, None, None]
        write_video(folder / f"clip_{i:02d}.mp4", (base + motion + shift).clamp(-1, 1))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return write_videos(root / "a", 3, seed=0), write_videos(root / "b", 3, seed=1, shift=0.5)


def test_fvd_of_a_set_against_itself_is_about_zero_and_positive_against_another(folders):
    a, b = folders
    model = signal_preserving(InceptionI3d())
    # I3D at 224 x 224 costs ~1 s a clip here: two videos of each set, with the fewest frames I3D takes (9).
    same = fvd(a, a, num_videos=2, num_frames=9, model=model)
    other = fvd(a, b, num_videos=2, num_frames=9, model=model)
    assert abs(same) < 1e-6 * other
    assert other > 0


class CountingProjection(torch.nn.Module):
    """Inception pool3 features projected to 8-d: the pipeline is the real one, the sqrtm is 8x8, not 2048x2048
    (36 s here). Counts the frames it sees."""

    def __init__(self):
        super().__init__()
        self.inception = signal_preserving(FIDInceptionV3())
        self.proj = torch.nn.Linear(2048, 8)
        self.frames_seen = 0

    def forward(self, frames):
        assert frames.shape[1:] == (3, 299, 299)
        self.frames_seen += frames.shape[0]
        return self.proj(self.inception(frames))


def test_frame_fid_uses_every_frame_and_is_about_zero_against_itself(folders):
    a, b = folders
    model = CountingProjection()
    same = frame_fid(a, a, num_frames=1, model=model)
    assert model.frames_seen == 2 * 3  # two sets of three one-frame clips
    other = frame_fid(a, b, num_frames=1, model=model)
    assert abs(same) < 1e-6 * other


def test_fvd_protocol_asks_for_2048_videos_and_16_frame_clips(folders):
    a, _ = folders
    with pytest.raises(ValueError, match="has 3 videos, FVD needs 2048"):
        fvd(a, a, model=InceptionI3d())
    with pytest.raises(ValueError, match="has 9 frames; the protocol takes clips of 16"):
        fvd(a, a, num_videos=3, model=InceptionI3d())


def tiny_clip_folder(path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = [chr(i) for i in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    path.mkdir()
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2}
    text |= {"num_attention_heads": 2, "bos_token_id": len(vocab) - 2, "eos_token_id": len(vocab) - 1}
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37}
    vision |= {"num_hidden_layers": 2, "num_attention_heads": 2}
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(path)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


def test_clipsim_is_the_mean_frame_prompt_cosine(folders, tmp_path):
    a, _ = folders
    model, processor = load_clip(tiny_clip_folder(tmp_path / "clip"))
    prompts = ["a red circle", "a blue square", "noise"]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts))
    score = clipsim(a, tmp_path / "prompts.txt", num_frames=4, model=(model, processor))

    # Reference: embed every frame and the prompt separately, cosine, mean over frames then videos.
    expected = []
    for path, prompt in zip(sorted(a.iterdir()), prompts, strict=True):
        video, _ = read_video(path, max_frames=4)
        frames = ((video + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
        with torch.no_grad():
            img = model.get_image_features(**processor(images=list(frames), return_tensors="pt"))
            txt = model.get_text_features(**processor(text=[prompt], return_tensors="pt"))
        img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))
        expected.append(torch.nn.functional.cosine_similarity(img, txt).mean().item())
    assert score == pytest.approx(sum(expected) / 3, abs=1e-5)
    assert -1 <= score <= 1
    assert clip_similarity(model, processor, video, prompts[2]) == pytest.approx(expected[2], abs=1e-5)
    (tmp_path / "two.txt").write_text("a\nb")
    with pytest.raises(ValueError, match="2 prompts for 3 videos"):
        clipsim(a, tmp_path / "two.txt", model=(model, processor))


def test_cli_errors_say_which_weights_are_needed(folders, tmp_path):
    a, b = folders
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "fvd", str(a), str(b), "--num-videos", "3", "--num-frames", "9"])
    assert result.exit_code == 2
    assert "I3D weights" in result.output and "rgb_imagenet.pt" in result.output
    result = runner.invoke(app, ["evaluate", "clipsim", str(a), str(tmp_path / "p.txt"), "--clip", str(tmp_path)])
    assert result.exit_code == 2 and "p.txt does not exist" in result.output
