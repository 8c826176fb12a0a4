"""The shapes world: caption grammar, renderer properties, seeded and balanced dataset files, its CLI."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from videoldm.cli import app
from videoldm.data import shapes as shapes_module
from videoldm.data.shapes import (
    COLOURS,
    DIRECTIONS,
    PAPER_FRAMES,
    PAPER_KEYFRAME_STRIDE,
    PAPER_SPEED,
    SHAPES,
    ShapesClip,
    all_captions,
    balanced_captions,
    dataset_clips,
    parse_caption,
    render_shapes_video,
    sample_clip,
    write_shapes_dataset,
)
from videoldm.io import read_video, to_uint8


def read_table(folder) -> list[dict[str, str]]:
    with (folder / "captions.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def shapes_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return {
        "a": write_shapes_dataset(root / "a", videos=8, seed=3),
        "b": write_shapes_dataset(root / "b", videos=8, seed=3),
        "c": write_shapes_dataset(root / "c", videos=8, seed=4),
    }


def test_grammar_has_48_distinct_parseable_captions():
    captions = all_captions()
    assert len(captions) == len(set(captions)) == 48
    parsed = [parse_caption(c) for c in captions]
    assert {p[0] for p in parsed} == set(COLOURS) == {"red", "green", "blue", "yellow"}
    assert {p[1] for p in parsed} == set(SHAPES) == {"circle", "square", "triangle"}
    assert {p[2] for p in parsed} == set(DIRECTIONS) == {"left", "right", "up", "down"}
    assert parse_caption("a yellow triangle moving up") == ("yellow", "triangle", "up")


@pytest.mark.parametrize("bad", ["a red circle moving", "a purple circle moving left", "the red circle moving up", ""])
def test_parse_caption_rejects_other_text(bad):
    with pytest.raises(ValueError, match="colour"):
        parse_caption(bad)


def test_balanced_captions_cycle_through_all_48():
    captions = balanced_captions(100, seed=0)
    counts = Counter(captions)
    assert set(counts) == set(all_captions())
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sorted(captions[:48]) == sorted(all_captions())
    assert captions != balanced_captions(100, seed=1)
    assert balanced_captions(20, seed=0) == captions[:20]


@pytest.mark.parametrize(
    "caption", ["a red circle moving right", "a blue triangle moving up", "a green square moving left"]
)
def test_rendered_object_stays_inside_and_moves_as_captioned(caption):
    colour, shape, direction = parse_caption(caption)
    for seed in range(5):
        clip = sample_clip(colour, shape, direction, rng=np.random.default_rng(seed))
        video = clip.render()
        assert video.shape == (3, 32, 64, 64)
        assert video.min() >= -1 and video.max() <= 1
        assert 14 <= clip.object_size <= 20 and 0.75 <= clip.speed <= 1.25
        # Object pixels: saturated ones. Never touching the border, in every frame.
        rgb = (video + 1) / 2
        saturated = (rgb.amax(0) - rgb.amin(0)) > 0.3  # (T, H, W)
        assert saturated.flatten(1).any(1).all()
        assert not saturated[:, 0].any() and not saturated[:, -1].any()
        assert not saturated[:, :, 0].any() and not saturated[:, :, -1].any()
        # The saturated pixels have the caption's colour.
        mean_colour = (rgb.permute(1, 2, 3, 0)[saturated] * 255).mean(0)
        assert (mean_colour - torch.tensor(COLOURS[colour], dtype=torch.float32)).abs().max() < 15
        # The centre of mass moves by about speed * 31 px along the direction, not across it.
        ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        weight = saturated.float()
        centre = torch.stack([(weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))], 1) / weight.sum((1, 2))[:, None]
        moved = (centre[-1] - centre[0]).numpy()
        expected = np.array(DIRECTIONS[direction]) * clip.speed * 31
        assert np.abs(moved - expected).max() < 1.0


def test_background_is_grey():
    clip = sample_clip("green", "circle", "down", rng=np.random.default_rng(7))
    rgb = (clip.render() + 1) / 2
    tinted = (rgb.amax(0) - rgb.amin(0)) > 1e-5  # any colour at all: R, G, B not all equal
    # Only the object (and its anti-aliased rim) has colour: at most its bounding box plus a 1 px rim.
    assert tinted.flatten(1).sum(1).max() <= (clip.object_size + 2) ** 2
    background = rgb[0][~tinted]
    assert background.max() - background.min() > 0.04  # not flat: a gradient
    assert 0.2 < background.mean() < 0.8


def test_renderer_is_deterministic_and_sizes_follow_arguments():
    a = render_shapes_video("red", "square", "left", rng=np.random.default_rng(5))
    b = render_shapes_video("red", "square", "left", rng=5)
    c = render_shapes_video("red", "square", "left", rng=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert render_shapes_video("red", "square", "left", rng=0, num_frames=48, size=96).shape == (3, 48, 96, 96)
    with pytest.raises(ValueError, match="colour"):
        render_shapes_video("pink", "square", "left", rng=0)


def test_long_clips_keep_the_object_inside():
    clip = sample_clip("blue", "circle", "right", rng=np.random.default_rng(0), num_frames=200)
    centres = clip.centres()
    assert centres[:, 0].min() - clip.object_size / 2 >= 0
    assert centres[:, 0].max() + clip.object_size / 2 <= 64


def test_same_seed_same_files_other_seed_other_files(shapes_dirs):
    a, b, c = shapes_dirs["a"], shapes_dirs["b"], shapes_dirs["c"]
    assert read_table(a) == read_table(b)
    assert [r["caption"] for r in read_table(a)] != [r["caption"] for r in read_table(c)]
    for row in read_table(a):
        assert (a / row["path"]).read_bytes() == (b / row["path"]).read_bytes()
    video_a, fps = read_video(a / "00000.mp4")
    video_c, _ = read_video(c / "00000.mp4")
    assert fps == 8 and video_a.shape == (3, 32, 64, 64)
    assert not torch.equal(video_a, video_c)


def test_dataset_files_match_their_captions(shapes_dirs):
    rows = read_table(shapes_dirs["a"])
    assert len(rows) == 8 and len({r["caption"] for r in rows}) == 8  # 8 < 48: no caption twice
    assert [r["caption"] for r in rows] == balanced_captions(8, seed=3)
    for i, row in enumerate(rows):
        video, _ = read_video(shapes_dirs["a"] / row["path"])
        expected = render_shapes_video(*parse_caption(row["caption"]), rng=np.random.default_rng([3, i]))
        assert (video - expected).abs().mean() < 0.02  # the mp4 holds that clip


def test_cli_writes_a_dataset(tmp_path):
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "s"), "--videos", "3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(tmp_path / "s")
    assert len(read_table(tmp_path / "s")) == 3
    assert read_video(tmp_path / "s" / "00002.mp4")[0].shape == (3, 32, 64, 64)


def test_cli_lossless_dataset_holds_the_rendered_frames(tmp_path):
    """--lossless: every decoded uint8 value is the rendered clip's (the upsampler's truth keeps its colour edges)."""
    args = ["data", "shapes", "--out", str(tmp_path / "s"), "--videos", "2", "--seed", "1", "--frames", "4"]
    result = CliRunner().invoke(app, [*args, "--size", "32", "--lossless"])
    assert result.exit_code == 0, result.output
    caption, clip = list(dataset_clips(2, seed=1, num_frames=4, size=32))[1]
    assert read_table(tmp_path / "s")[1]["caption"] == caption
    decoded, _ = read_video(tmp_path / "s" / "00001.mp4")
    np.testing.assert_array_equal(to_uint8(decoded), to_uint8(clip.render()))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--videos", "0", "--seed", "1"], "--videos"),
        (["--videos", "2", "--seed", "1", "--frames", "1"], "--frames"),
        (["--videos", "2", "--seed", "1", "--size", "8"], "--size"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, args, message):
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "s"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "s").exists()


def test_cli_rejects_a_file_as_output(tmp_path):
    (tmp_path / "f").write_text("x")
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "f"), "--videos", "1", "--seed", "0"])
    assert result.exit_code == 2
    assert "not a folder" in result.output


# Computed with the code before speed / wrap options existed (commit f451ebc): the defaults keep today's clips.
PINNED_FILES = "82920751c875c68fc834c0d2add605a22f73237121aac2b86b2521e188626e76"
PINNED_PIXELS = "7b45bbafa10d4cfef0e4cb888b9331386fc36c4e41048ef2f1f57ccca28dff57"


def test_defaults_keep_todays_files_and_pixels(tmp_path):
    args = ["--videos", "6", "--seed", "11", "--frames", "12", "--size", "32"]
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "s"), *args])
    assert result.exit_code == 0, result.output
    files = hashlib.sha256()
    for path in sorted((tmp_path / "s").iterdir()):
        files.update(path.name.encode())
        files.update(path.read_bytes())
    pixels = hashlib.sha256()  # independent of the video encoder's version
    for i, caption in enumerate(balanced_captions(6, seed=11)):
        clip = sample_clip(*parse_caption(caption), rng=np.random.default_rng([11, i]), num_frames=12, size=32)
        pixels.update(to_uint8(clip.render()).tobytes())
    assert pixels.hexdigest() == PINNED_PIXELS
    assert files.hexdigest() == PINNED_FILES


def saturated_centroids(video: torch.Tensor) -> torch.Tensor:
    """(T, 2) centre of mass (x, y) of the object's saturated pixels."""
    rgb = (video + 1) / 2
    weight = ((rgb.amax(0) - rgb.amin(0)) > 0.3).double()
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    return torch.stack([(weight * xs).sum((1, 2)), (weight * ys).sum((1, 2))], 1) / weight.sum((1, 2))[:, None]


def test_paper_rates_move_a_latent_pixel_per_key_frame_and_stay_in_view():
    assert (PAPER_FRAMES - 1) % PAPER_KEYFRAME_STRIDE == 0 and (PAPER_FRAMES - 1) // PAPER_KEYFRAME_STRIDE == 7
    for i, caption in enumerate(all_captions()):
        clip = sample_clip(*parse_caption(caption), rng=np.random.default_rng(i), num_frames=113, speed=PAPER_SPEED)
        assert PAPER_SPEED[0] <= clip.speed <= PAPER_SPEED[1] <= 0.4  # sub-pixel at the full rate, not slowed
        assert clip.speed * PAPER_KEYFRAME_STRIDE >= 4  # >= one latent pixel (the VAE's factor 4) per key frame
        centres, half = clip.centres(), clip.object_size / 2
        assert centres.min() - half >= 0 and centres.max() + half <= 64
    video = sample_clip("red", "square", "left", rng=np.random.default_rng(0), num_frames=113, speed=PAPER_SPEED)
    keys = saturated_centroids(video.render()[:, ::PAPER_KEYFRAME_STRIDE])  # the 8 key frames
    assert keys.shape == (8, 2)
    steps = keys.diff(dim=0)
    assert (steps[:, 0] <= -3.5).all() and (steps[:, 1].abs() < 0.5).all()  # leftwards, >= ~4 px each


def test_speed_option_scales_and_is_checked():
    clip = sample_clip("red", "circle", "up", rng=np.random.default_rng(1), num_frames=8, speed=(2.0, 2.0))
    assert clip.speed == 2.0
    scaled = sample_clip("red", "circle", "up", rng=np.random.default_rng(1), num_frames=8, size=128, speed=(2.0, 2.0))
    assert scaled.speed == 4.0  # px per frame at size 64, scaled with the size
    # Too fast to stay in view: slowed down to cross the allowed range exactly (rounding once made numpy fail).
    fast = sample_clip("red", "circle", "up", rng=np.random.default_rng(1), size=128, speed=(2.0, 2.0))
    assert fast.speed < 4.0 and fast.centres()[:, 1].min() >= 1 + fast.object_size / 2 - 1e-9
    for bad in [(0.0, 1.0), (1.0, 0.5), (-1.0, 1.0)]:
        with pytest.raises(ValueError, match="speed must be"):
            sample_clip("red", "circle", "up", rng=np.random.default_rng(1), speed=bad)


def wrapped(start: tuple[float, float], **fields) -> ShapesClip:
    base = {"colour": "blue", "shape": "square", "direction": "right", "object_size": 16.0, "speed": 1.0}
    base |= {"grey": 0.5, "gradient": (0.0, 0.0), "num_frames": 1, "size": 64, "wrap": True}
    return ShapesClip(start=start, **(base | fields))


def test_wrap_draws_the_object_at_its_centre_modulo_the_frame():
    inside = wrapped((64 + 30.0, -64 + 20.0))
    assert torch.equal(inside.render(), wrapped((30.0, 20.0), wrap=False).render())
    # Centred on the corner: a quarter of the square in each corner, none elsewhere, nothing lost.
    cover = shapes_module._coverage(wrapped((0.0, 0.0)))[0]
    assert cover.sum() == 256
    for rows in (slice(0, 8), slice(56, 64)):
        for cols in (slice(0, 8), slice(56, 64)):
            assert cover[rows, cols].sum() == 64
    assert cover[8:56].sum() == 0 and cover[:, 8:56].sum() == 0


def test_wrapped_clips_keep_speed_and_the_whole_object_in_every_frame():
    for caption in ("a red circle moving right", "a green triangle moving up", "a blue square moving left"):
        clip = sample_clip(*parse_caption(caption), rng=np.random.default_rng(3), num_frames=150, wrap=True)
        assert 0.75 <= clip.speed <= 1.25 and clip.wrap  # long clips are not slowed down
        cover = shapes_module._coverage(clip)  # 150 frames: more than one chunk
        area = cover.sum((1, 2))
        assert (area - area.mean()).abs().max() < 0.02 * area.mean()  # never clipped at an edge
        travel = clip.centres()[-1] - clip.centres()[0]
        assert np.abs(travel - np.array(DIRECTIONS[clip.direction]) * clip.speed * 149).max() < 1e-9
        assert np.abs(travel).max() > 64  # it went once round the world


def test_rendering_in_chunks_changes_no_pixel(monkeypatch):
    clip = sample_clip("yellow", "triangle", "down", rng=np.random.default_rng(4), num_frames=70, size=32)
    chunked = clip.render()
    monkeypatch.setattr(shapes_module, "_CHUNK_FRAMES", 1000)
    assert torch.equal(chunked, clip.render())


def test_cli_writes_paper_rate_wrapping_clips(tmp_path):
    args = ["--videos", "1", "--seed", "2", "--frames", "20", "--size", "32", "--speed", "0.25", "0.375", "--wrap"]
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "s"), *args])
    assert result.exit_code == 0, result.output
    video, _ = read_video(tmp_path / "s" / "00000.mp4")
    caption = read_table(tmp_path / "s")[0]["caption"]
    expected = render_shapes_video(
        *parse_caption(caption),
        rng=np.random.default_rng([2, 0]),
        num_frames=20,
        size=32,
        speed=(0.25, 0.375),
        wrap=True,
    )
    assert (video - expected).abs().mean() < 0.02
    bad = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "t"), *args[:6], "--speed", "1", "0.5"])
    assert bad.exit_code == 2 and "--speed" in bad.output and not (tmp_path / "t").exists()
