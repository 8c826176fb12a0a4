"""VideoFolderDataset / FramesDataset / ImageFolderDataset: frame sampling, resizing, flips, captions tables,
skipping bad files without raising, and clear errors."""

from __future__ import annotations

import itertools
import json
import logging

import pytest
import torch
from torch.utils.data import DataLoader

from test_io import counter_video, decode_counter
from videoldm.data import FramesDataset, ImageFolderDataset, VideoFolderDataset
from videoldm.io import write_image, write_video


def write_csv(path, header: str, rows: list[str]):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """40-frame counter videos at 16 and 20 fps, plus a corrupt, a too-short and a missing one."""
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", counter_video(40), fps=16)
    write_video(root / "b.mp4", counter_video(40), fps=20)
    write_video(root / "short.mp4", counter_video(6), fps=16)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 50)
    write_csv(root / "good.csv", "path,caption", ["a.mp4,first video", "b.mp4,second video"])
    write_csv(
        root / "mixed.csv",
        "path,caption",
        ["corrupt.mp4,bad", "a.mp4,first video", "short.mp4,too short", "missing.mp4,gone", "b.mp4,second video"],
    )
    return root


def test_items_have_the_documented_shape_range_and_caption(folder):
    ds = VideoFolderDataset(folder, captions=folder / "good.csv", num_frames=8, size=12)
    assert len(ds) == 2
    item = ds[1]
    assert item["video"].shape == (3, 8, 12, 12) and item["video"].dtype == torch.float32
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["caption"] == "second video"
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["video"].shape == (2, 3, 8, 12, 12) and batch["caption"] == ["first video", "second video"]


def test_stride_sampling_picks_every_kth_frame(folder):
    ds = VideoFolderDataset(folder, captions=folder / "good.csv", num_frames=5, size=16, frame_stride=3)
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        frames = decode_counter(ds[0]["video"])
        assert [b - a for a, b in itertools.pairwise(frames)] == [3] * 4
        assert frames[0] >= 0 and frames[-1] <= 39
        starts.add(frames[0])
    assert len(starts) > 1  # random starts differ between epochs
    fixed = VideoFolderDataset(
        folder, captions=folder / "good.csv", num_frames=5, size=16, frame_stride=3, random_start=False
    )
    assert decode_counter(fixed[0]["video"]) == [0, 3, 6, 9, 12]


def test_sampling_is_deterministic_in_seed_epoch_and_index(folder):
    def frames(seed, epoch):
        ds = VideoFolderDataset(folder, captions=folder / "good.csv", num_frames=4, size=16, seed=seed)
        ds.set_epoch(epoch)
        return decode_counter(ds[0]["video"])

    assert frames(0, 0) == frames(0, 0)
    assert len({tuple(frames(seed, 0)) for seed in range(6)}) > 1


@pytest.mark.parametrize("index, source_fps", [(0, 16), (1, 20)])
def test_fps_sampling_matches_target_times(folder, index, source_fps):
    ds = VideoFolderDataset(folder, captions=folder / "good.csv", num_frames=6, size=16, fps=8)
    for epoch in range(4):
        ds.set_epoch(epoch)
        frames = decode_counter(ds[index]["video"])
        times = [(f - frames[0]) / source_fps for f in frames]
        # Each sampled frame is the source frame nearest to k / 8 s after the first.
        assert times == pytest.approx([k / 8 for k in range(6)], abs=0.5 / source_fps + 1e-9)


def test_resize_shorter_side_then_centre_crop(tmp_path):
    video = torch.full((3, 4, 16, 32), -1.0)
    video[:, :, :, 14:18] = 1.0  # a white bar in the middle
    video[:, :, :, :4] = 1.0  # a white bar at the left edge, outside the centre crop
    write_video(tmp_path / "wide.mp4", video)
    write_csv(tmp_path / "c.csv", "path,caption", ["wide.mp4,x"])
    out = VideoFolderDataset(tmp_path, captions=tmp_path / "c.csv", num_frames=4, size=8)[0]["video"]
    assert out.shape == (3, 4, 8, 8)
    columns = out.mean((0, 1, 2))
    assert columns[3:5].min() > 0.3  # centre bar kept, in the centre
    assert columns[[0, 1, 6, 7]].max() < -0.7  # the edge bar was cropped away
    tall = VideoFolderDataset(tmp_path, captions=tmp_path / "c.csv", num_frames=4, size=(16, 8))[0]["video"]
    assert tall.shape == (3, 4, 16, 8)


def test_random_flip_mirrors_some_clips(tmp_path):
    video = torch.full((3, 4, 16, 16), -1.0)
    video[:, :, :, :4] = 1.0  # bright on the left
    write_video(tmp_path / "left.mp4", video)
    write_csv(tmp_path / "c.csv", "path,caption", ["left.mp4,x"])
    plain = VideoFolderDataset(tmp_path, captions=tmp_path / "c.csv", num_frames=4, size=16)[0]["video"]
    ds = VideoFolderDataset(tmp_path, captions=tmp_path / "c.csv", num_frames=4, size=16, random_flip=True)
    flipped = []
    for epoch in range(12):
        ds.set_epoch(epoch)
        clip = ds[0]["video"]
        assert torch.equal(clip, plain) or torch.equal(clip, plain.flip(-1))
        flipped.append(torch.equal(clip, plain.flip(-1)))
    assert 0 < sum(flipped) < 12
    ds.set_epoch(3)
    assert torch.equal(ds[0]["video"], plain.flip(-1) if flipped[3] else plain)


def test_bad_videos_are_skipped_counted_and_reported(folder, caplog):
    ds = VideoFolderDataset(folder, captions=folder / "mixed.csv", num_frames=8, size=16, random_start=False)
    with caplog.at_level(logging.WARNING, logger="videoldm.data"):
        items = [ds[i] for i in range(len(ds))] + [ds[i] for i in range(len(ds))]  # two epochs: never raises
    # A bad row yields the next good one, deterministically.
    assert [item["caption"] for item in items[:5]] == [
        "first video",
        "first video",
        "second video",
        "second video",
        "second video",
    ]
    assert set(ds.skipped) == {str(folder / n) for n in ("corrupt.mp4", "short.mp4", "missing.mp4")}
    assert "too short: 6 frames" in ds.skipped[str(folder / "short.mp4")]
    assert "not found" in ds.skipped[str(folder / "missing.mp4")]
    assert len(caplog.records) == 3  # one warning per bad file, not per access
    report = ds.report()
    assert "skipped 3" in report and all(name in report for name in ("corrupt.mp4", "short.mp4", "missing.mp4"))
    assert ds.load(0) is None and ds.load(1) is not None  # the trainer's API


def test_too_short_depends_on_the_stride(folder):
    rows = folder / "good.csv"
    assert VideoFolderDataset(folder, captions=rows, num_frames=8, size=16, frame_stride=5).load(0) is not None
    ds = VideoFolderDataset(folder, captions=rows, num_frames=8, size=16, frame_stride=6)  # needs 43 frames
    assert ds.load(0) is None and "a clip needs 43" in ds.report()


def test_all_bad_raises_with_the_report(folder):
    write_csv(folder / "allbad.csv", "path,caption", ["corrupt.mp4,a", "missing.mp4,b"])
    ds = VideoFolderDataset(folder, captions=folder / "allbad.csv", num_frames=4, size=16)
    with pytest.raises(RuntimeError, match=r"corrupt\.mp4"):
        ds[0]


def test_webvid_layout_and_other_extensions(tmp_path):
    write_video(tmp_path / "1001.mp4", counter_video(8))
    (tmp_path / "000001_000050").mkdir()
    write_video(tmp_path / "000001_000050" / "1002.mp4", counter_video(8))
    write_video(tmp_path / "1003.gif", counter_video(8))
    write_csv(
        tmp_path / "results_2M_val.csv",
        "videoid,contentUrl,duration,page_dir,name",
        [
            "1001,http://x/1.mp4,PT00H00M10S,000001_000050,Aerial view of a lake",
            "1002,http://x/2.mp4,PT00H00M10S,000001_000050,A cat",
            '1003,http://x/3.mp4,PT00H00M10S,000001_000050,"Slow motion, a bird"',
        ],
    )
    ds = VideoFolderDataset(tmp_path, captions=tmp_path / "results_2M_val.csv", num_frames=8, size=16)
    assert [ds[i]["caption"] for i in range(3)] == ["Aerial view of a lake", "A cat", "Slow motion, a bird"]
    assert decode_counter(ds[2]["video"]) == list(range(8))
    assert not ds.skipped


def test_jsonl_captions(folder, tmp_path):
    table = tmp_path / "c.jsonl"
    rows = [{"path": str(folder / "a.mp4"), "caption": "absolute path"}, {"path": "b.mp4", "caption": "relative"}]
    table.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = VideoFolderDataset(folder, captions=table, num_frames=4, size=16)
    assert [ds[0]["caption"], ds[1]["caption"]] == ["absolute path", "relative"]


def test_clear_errors_for_bad_tables_and_arguments(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv.*path,caption"):
        VideoFolderDataset(folder, captions=tmp_path / "nope.csv", num_frames=4, size=16)
    wrong = write_csv(tmp_path / "wrong.csv", "file,text_prompt", ["a.mp4,x"])
    with pytest.raises(ValueError, match=r"wrong\.csv.*\['file', 'text_prompt'\].*path,caption"):
        VideoFolderDataset(folder, captions=wrong, num_frames=4, size=16)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"path": "a.mp4", "caption": "x"}\n{"path": \n')
    with pytest.raises(ValueError, match=r"broken\.jsonl, line 2"):
        VideoFolderDataset(folder, captions=broken, num_frames=4, size=16)
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        VideoFolderDataset(folder, captions=write_csv(tmp_path / "c.txt", "path,caption", []), num_frames=4, size=16)
    with pytest.raises(ValueError, match="fps"):
        VideoFolderDataset(folder, captions=folder / "good.csv", num_frames=4, size=16, fps=8, frame_stride=2)
    with pytest.raises(FileNotFoundError, match="video folder"):
        VideoFolderDataset(tmp_path / "none", captions=folder / "good.csv", num_frames=4, size=16)


def test_frames_dataset_yields_every_frame_as_an_image(folder):
    ds = FramesDataset(folder, captions=folder / "mixed.csv", size=16, frames_per_video=10, frame_stride=2)
    assert len(ds) == 50
    item = ds[10]  # video 1 (a.mp4), frame 0
    assert item["image"].shape == (3, 16, 16) and item["caption"] == "first video"
    assert [decode_counter(ds[10 + k]["image"][:, None])[0] for k in range(10)] == list(range(0, 20, 2))
    assert ds.load(25) is None  # short.mp4 has 6 frames: its frame 10 is missing
    assert ds.load(20) is not None  # ... but its frame 0 is there
    assert "short.mp4" in ds.report() and "corrupt.mp4" not in ds.report()


def test_image_folder_dataset(tmp_path):
    image = torch.linspace(-1, 1, 24)[None, None, :].expand(3, 16, 24).clone()
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "b.jpg", -image)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    write_csv(tmp_path / "c.csv", "path,caption", ["bad.png,broken", "a.png,ramp up", "b.jpg,ramp down"])
    ds = ImageFolderDataset(tmp_path, captions=tmp_path / "c.csv", size=8)
    items = [ds[i] for i in range(3)]
    assert [i["caption"] for i in items] == ["ramp up", "ramp up", "ramp down"]
    assert items[1]["image"].shape == (3, 8, 8)
    row = items[1]["image"][0, 4]
    assert (row[1:] > row[:-1]).all() and row.min() > -0.8  # the centre crop of an increasing ramp
    assert list(ds.skipped) == [str(tmp_path / "bad.png")]


def test_check_cli_lists_bad_videos(folder, tmp_path):
    from typer.testing import CliRunner

    from videoldm.cli import app

    runner = CliRunner()
    good = runner.invoke(app, ["data", "check", str(folder), "--captions", str(folder / "good.csv"), "--frames", "8"])
    assert good.exit_code == 0, good.output
    assert "2 of 2 videos usable" in good.output
    mixed = runner.invoke(app, ["data", "check", str(folder), "--captions", str(folder / "mixed.csv"), "--frames", "8"])
    assert mixed.exit_code == 1
    assert "2 of 5 videos usable" in mixed.output and "short.mp4" in mixed.output
    missing = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert missing.exit_code == 2
    assert "captions.csv" in missing.output
