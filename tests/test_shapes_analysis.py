"""The shapes-world analysis reads rendered videos back correctly (clean and after mp4) and flags broken ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from videoldm.data.shapes import all_captions, parse_caption, render_shapes_video, sample_clip, write_shapes_dataset
from videoldm.evaluation.shapes_analysis import analyse_frame, analyse_video, score_videos
from videoldm.io import read_video


def render(caption: str, seed: int) -> torch.Tensor:
    return render_shapes_video(*parse_caption(caption), rng=seed)


def test_all_48_clean_renders_are_read_correctly():
    scores = score_videos((caption, render(caption, seed)) for seed, caption in enumerate(all_captions()))
    assert scores["videos"] == 48
    for key in ("colour_correct", "shape_correct", "direction_correct", "all_correct", "consistent", "identity"):
        assert scores[key] == 1.0, key
    assert scores["smoothness"] < 0.15  # constant speed: the centroid's second difference is ~0


def test_all_48_mp4_round_trips_are_read_correctly(tmp_path):
    folder = write_shapes_dataset(tmp_path, videos=48, seed=11)
    rows = [line.split(",", 1) for line in (folder / "captions.csv").read_text().splitlines()[1:]]
    scores = score_videos((caption, read_video(folder / path)[0]) for path, caption in rows)
    for key in ("colour_correct", "shape_correct", "direction_correct", "all_correct", "consistent", "identity"):
        assert scores[key] == 1.0, key
    assert scores["smoothness"] < 0.2


@pytest.mark.parametrize("shape", ["circle", "square"])
def test_centroids_and_velocity_follow_the_object(shape):
    clip = sample_clip("yellow", shape, "up", rng=np.random.default_rng(2))
    result = analyse_video(clip.render())
    track = np.array(result.centroids)
    assert np.abs(track - clip.centres()).max() < 0.15  # symmetric shapes: centroid = centre
    assert result.velocity == pytest.approx((0.0, -clip.speed), abs=0.02)
    assert result.caption == f"a yellow {shape} moving up"


def test_reversed_video_moves_the_other_way():
    for caption, opposite in [("a red circle moving left", "right"), ("a blue triangle moving down", "up")]:
        result = analyse_video(render(caption, 0).flip(1))
        assert result.direction == opposite
        assert result.consistent


def test_identity_needs_a_track_not_only_the_same_colour_and_shape():
    """The same red circle drawn at an unrelated place in every frame (what a frame-by-frame image model does) is
    consistent in colour and shape but not one tracked object; the moving original is both."""
    caption = "a red circle moving right"
    moving = analyse_video(render(caption, 0))
    assert moving.consistent and moving.tracked and moving.identity
    # frame t of clip t: 8 clips with other start positions, one frame each
    clips = [render(caption, seed) for seed in range(8)]
    jumping = analyse_video(torch.stack([clips[t][:, t] for t in range(8)], dim=1))
    assert jumping.consistent and not jumping.tracked and not jumping.identity
    # a still object is tracked (it overlaps itself); one frame without the object breaks the track
    still = analyse_video(render(caption, 0)[:, :1].repeat(1, 6, 1, 1))
    assert still.tracked
    gap = render(caption, 0)[:, :6].clone()
    gap[:, 3] = gap[:, 3, :1, :1]  # frame 3: only the background colour
    assert not analyse_video(gap).tracked


def test_static_and_empty_videos():
    video = render("a green square moving right", 0)
    static = analyse_video(video[:, :1].repeat(1, 16, 1, 1))
    assert static.direction == "static" and static.consistent and static.caption is None
    empty = analyse_video(torch.full((3, 8, 64, 64), 0.1))
    assert empty.frames == [None] * 8 and empty.colour is None and empty.shape is None
    assert empty.direction is None and not empty.consistent and math.isnan(empty.smoothness)
    assert analyse_frame(torch.zeros(3, 64, 64)) is None


def test_colour_change_halfway_is_not_consistent():
    red = render("a red circle moving right", 4)
    blue = render("a blue circle moving right", 4)  # same seed: same path, other colour
    mixed = torch.cat([red[:, :16], blue[:, 16:]], dim=1)
    result = analyse_video(mixed)
    assert result.colours == ["red"] * 16 + ["blue"] * 16
    assert not result.consistent
    assert result.direction == "right" and result.shape == "circle"


def test_shape_change_and_missing_frames_are_not_consistent():
    circle = render("a yellow circle moving down", 9)
    triangle = render("a yellow triangle moving down", 9)
    morph = analyse_video(torch.cat([circle[:, :20], triangle[:, 20:]], dim=1))
    assert morph.shape == "circle" and not morph.consistent
    vanishing = circle.clone()
    vanishing[:, 10:13] = vanishing[:, 10:13].mean(0, keepdim=True)  # three grey frames
    result = analyse_video(vanishing)
    assert result.frames[10:13] == [None] * 3 and result.frames[13] is not None
    assert not result.consistent and result.direction == "down"


def test_jittery_motion_scores_worse_smoothness():
    video = render("a green triangle moving left", 5)
    jittery = video[:, [min(31, i + 2 * (i % 2)) for i in range(32)]]  # every other frame jumps ahead
    smooth, rough = analyse_video(video).smoothness, analyse_video(jittery).smoothness
    assert smooth < 0.15 and rough > 1.0


def test_small_coloured_specks_do_not_move_the_object():
    video = render("a blue square moving up", 6)
    clean = analyse_video(video)
    specks = video.clone()
    specks[:, :, 0:3, 0:3] = torch.tensor([0.8, -0.8, -0.8])[:, None, None, None]  # a 3 x 3 red speck
    noisy = analyse_video(specks)
    assert noisy.colours == clean.colours and noisy.shapes == clean.shapes
    assert np.allclose(noisy.centroids, clean.centroids)


def test_scores_count_wrong_captions():
    video = render("a red square moving up", 1)
    scores = score_videos(
        [
            ("a red square moving up", video),
            ("a green square moving up", video),
            ("a red circle moving up", video),
            ("a red square moving down", video),
        ]
    )
    assert scores["colour_correct"] == 0.75 and scores["shape_correct"] == 0.75
    assert scores["direction_correct"] == 0.75 and scores["all_correct"] == 0.25
    assert scores["consistent"] == 1.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="C=3"):
        analyse_video(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="at least one"):
        score_videos([])
    with pytest.raises(ValueError, match="not a shapes-world caption"):
        score_videos([("a cat", torch.zeros(3, 2, 64, 64))])
