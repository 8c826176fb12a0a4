"""The shapes world's textured backgrounds: static or panned grey texture with fine grain, draws after all others."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from videoldm.cli import app
from videoldm.data.shapes import sample_clip, write_shapes_dataset
from videoldm.io import read_video


def clip(texture: str | None, seed: int = 3, **kwargs):
    return sample_clip("red", "circle", "right", rng=np.random.default_rng(seed), texture=texture, **kwargs)


def never_object(video: torch.Tensor) -> torch.Tensor:
    """(H, W) pixels the (saturated) object covers in no frame, one pixel of margin."""
    rgb = (video + 1) / 2
    tinted = ((rgb.amax(0) - rgb.amin(0)) > 1e-5).any(0).float()
    return F.max_pool2d(tinted[None, None], 3, stride=1, padding=1)[0, 0] == 0


def test_texture_draws_come_after_the_others():
    plain = clip(None)
    for texture in ("static", "pan", "mixed"):
        textured = clip(texture)
        keep = {f.name for f in dataclasses.fields(plain)} - {"texture", "texture_seed", "texture_contrast", "pan"}
        assert all(getattr(plain, k) == getattr(textured, k) for k in keep)
        assert textured.texture in ("static", "pan")
    assert clip("static").pan == (0.0, 0.0) and clip("pan").pan != (0.0, 0.0)
    assert {clip("mixed", seed=s).texture for s in range(12)} == {"static", "pan"}
    # "any": plain clips among them, rendered exactly as a plain clip with the same draws
    kinds = {s: clip("any", seed=s).texture for s in range(12)}
    assert set(kinds.values()) == {None, "static", "pan"}
    plain_seed = next(s for s, kind in kinds.items() if kind is None)
    assert torch.equal(clip("any", seed=plain_seed).render(), clip(None, seed=plain_seed).render())
    with pytest.raises(ValueError, match="texture"):
        clip("wood")


def test_static_texture_is_still_and_grainy():
    c = clip("static", num_frames=6)
    video = c.render()
    background = video[:, :, never_object(video)]  # (3, T, N)
    assert torch.equal(background, background[:, :1].expand_as(background))  # no change where no object passes
    # Grey and textured: a few percent of contrast, about half of it finer than 2 px (lost to a 2x box downscale).
    texture = dataclasses.replace(c, object_size=0.0, gradient=(0.0, 0.0)).render()[0, 0] / 2
    coarse = F.interpolate(F.avg_pool2d(texture[None, None], 2), scale_factor=2, mode="nearest")[0, 0]
    assert 0.03 < texture.std() < 0.15
    assert (texture - coarse).std() > 0.4 * texture.std()


def test_pan_moves_the_texture_without_changing_its_contrast():
    c = clip("pan", num_frames=8)
    speed = float(np.hypot(*c.pan))
    assert 0.15 <= speed <= 0.35
    video = c.render()
    mask = never_object(video)
    stds = video[0][:, mask].std(dim=1)
    assert (stds.max() - stds.min()) / stds.mean() < 0.05  # sub-pixel shifts do not blur the grain
    assert (video[:, 1:, mask] - video[:, :-1, mask]).abs().mean() > 0.005  # the background moves
    # One pixel per frame to the right in the view's coordinates (the camera pans left): frame t+1 is frame t
    # shifted by one pixel, exactly (a phase shift of a band-limited periodic field).
    unit = dataclasses.replace(c, pan=(1.0, 0.0), texture_contrast=(0.05, 0.05), grey=0.5, gradient=(0.0, 0.0))
    frames = unit.render()[0]
    inner = never_object(unit.render())[:, 1:] & never_object(unit.render())[:, :-1]
    assert torch.allclose(frames[1][:, :-1][inner], frames[0][:, 1:][inner], atol=1e-5)


def test_dataset_and_cli_take_the_texture(tmp_path):
    plain = write_shapes_dataset(tmp_path / "plain", videos=2, seed=1, num_frames=4, size=32)
    panned = write_shapes_dataset(tmp_path / "pan", videos=2, seed=1, num_frames=4, size=32, texture="pan")
    assert (plain / "00000.mp4").read_bytes() != (panned / "00000.mp4").read_bytes()
    args = ["--videos", "2", "--seed", "1", "--frames", "4", "--size", "32", "--texture", "pan"]
    result = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "cli"), *args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "00000.mp4").read_bytes() == (panned / "00000.mp4").read_bytes()
    assert read_video(panned / "00000.mp4")[0].shape == (3, 4, 32, 32)
    bad = CliRunner().invoke(app, ["data", "shapes", "--out", str(tmp_path / "bad"), *args[:-1], "wood"])
    assert bad.exit_code == 2 and "--texture" in bad.output
    assert not (tmp_path / "bad").exists()
