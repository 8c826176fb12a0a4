"""Latent shards: `videoldm data encode` (broken inputs, time sampling, ranks, resume after SIGKILL, atomic shards)
and training from `data.shards` (the cache's batches, bad shard folders, exact resume)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file
from typer.testing import CliRunner

import test_training as T
from videoldm.cli import app
from videoldm.data.encode import FAULT_ENV, EncodeJob, EncodeSettings, encode, load_encoders
from videoldm.data.shapes import write_shapes_dataset
from videoldm.data.shards import ShardSet
from videoldm.io import read_video, write_video
from videoldm.training import batches as B
from videoldm.training.cache import encode_latents, load_videos
from videoldm.training.checkpoint import latest_checkpoint
from videoldm.training.config import ConfigError, DataConfig
from videoldm.training.stages import load_config
from videoldm.training.trainer import FAULT_ENV as TRAIN_FAULT_ENV
from videoldm.training.trainer import Trainer

GOOD = 5  # shapes-world videos in the folder, besides the broken inputs
SMALL = ["--size", "32", "--num-frames", "16", "--shard-size", "2"]
BROKEN = {"zero.mp4", "text.mp4", "trunc.mp4", "short.mp4", "missing.mp4"}


def make_model(root: Path, *, latent_channels: int = 4, text_width: int = 384) -> Path:
    """A tiny model folder: vae/, unet/ and the builtin MiniLM text encoder (width 384)."""
    torch.manual_seed(0)
    AutoencoderKL(**{**T.TINY_VAE, "latent_channels": latent_channels}).save_pretrained(root / "vae")
    unet = {**T.TINY_UNET, "in_channels": latent_channels, "out_channels": latent_channels}
    unet["cross_attention_dim"] = text_width
    UNet2DConditionModel(**unet).save_pretrained(root / "unet")
    for sub in ("text_encoder", "tokenizer"):
        (root / sub).mkdir()
        (root / sub / "builtin.json").write_text('{"builtin": "all-MiniLM-L6-v2"}')
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """5 good shapes clips (20 frames, 8 fps), one input of every broken kind, one caption row without a file."""
    root = write_shapes_dataset(tmp_path_factory.mktemp("videos"), videos=GOOD, seed=0, num_frames=20, size=32)
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video")
    data = (root / "00000.mp4").read_bytes()
    (root / "trunc.mp4").write_bytes(data[: len(data) // 2])
    video, _ = read_video(root / "00000.mp4")
    write_video(root / "short.mp4", video[:, :6])
    with (root / "captions.csv").open("a") as f:
        f.write("".join(f"{name},a broken input\n" for name in sorted(BROKEN)) + ",a row without a file\n")
    return root


def job(videos: Path, model: Path, out: Path, **settings) -> EncodeJob:
    settings = {"size": 32, "frames": 16, "shard_size": 2, **settings}
    return EncodeJob(videos=videos, model=model, out=out, settings=EncodeSettings(**settings))


@pytest.fixture(scope="module")
def shards(tmp_path_factory, videos, model) -> Path:
    out = tmp_path_factory.mktemp("shards")
    result = CliRunner().invoke(
        app,
        ["data", "encode", "--videos", str(videos), "--model", str(model), "--out", str(out), *SMALL],
    )
    assert result.exit_code == 0, result.output
    assert "5 clips in 3 shards" in result.output and "skipped 6 of 11 inputs" in result.output
    return out


def test_broken_inputs_are_skipped_counted_and_named(shards):
    summary = json.loads((shards / "summary.json").read_text())
    assert summary["clips"] == GOOD and summary["skipped"] == 6
    assert {Path(s["file"]).name for s in summary["skipped_detail"]} == BROKEN
    reasons = {Path(s["file"]).name: s["reason"] for s in summary["skipped_detail"]}
    assert reasons["missing.mp4"] == "file not found"
    assert reasons["short.mp4"].startswith("too short: 6 frames, a clip needs 16")
    assert summary["bad_caption_rows"] == ["captions.csv, row 11: empty 'path'"]
    assert not list(shards.glob(".*tmp*"))  # no temporary file left behind


@pytest.fixture(scope="module")
def good(tmp_path_factory, videos) -> Path:
    """A captions table of the good videos only (absolute paths): what the in-memory cache can load."""
    folder = tmp_path_factory.mktemp("good")
    rows = (videos / "captions.csv").read_text().splitlines()[: GOOD + 1]
    (folder / "captions.csv").write_text("\n".join(f"{videos}/{r}" if i else r for i, r in enumerate(rows)) + "\n")
    return folder


def test_shards_hold_what_the_cache_would_hold(shards, good, model):
    """Same decoding, rounding and VAE: the shards' latents are the in-memory cache's, bit for bit."""
    captions, pixels = load_videos(DataConfig(videos=good, size=32, cache_frames=16))
    vae, text_encoder = load_encoders(model)
    latents = encode_latents(vae, pixels)
    shard_set = ShardSet.open(shards)
    assert len(shard_set) == GOOD
    for i in range(GOOD):
        clip = shard_set.read(i)
        assert torch.equal(clip["latents"], latents[i])
        assert shard_set.locate(i)[1]["caption"] == captions[i]
        with torch.no_grad():
            assert torch.equal(clip["text"], text_encoder([captions[i]])[0].half())


def test_webdataset_streams_the_shards(shards):
    import webdataset as wds

    urls = sorted(str(p) for p in shards.glob("w*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(GOOD)]
    meta = json.loads(samples[3]["json"])
    assert meta["source"] == "00003.mp4" and meta["source_frames"] == 20 and meta["fps"] == 8.0


def test_target_fps_and_stride_store_the_same_frames(tmp_path, videos, model):
    """8 fps sources at --fps 4 store every 2nd frame, as --frame-stride 2 does; the index records both rates."""
    by_fps = encode(job(videos, model, tmp_path / "fps", frames=8, fps=4.0))
    by_stride = encode(job(videos, model, tmp_path / "stride", frames=8, frame_stride=2))
    assert by_fps["clips"] == by_stride["clips"] == GOOD
    a, b = ShardSet.open(tmp_path / "fps"), ShardSet.open(tmp_path / "stride")
    entry = a.locate(0)[1]
    assert (entry["fps"], entry["source_fps"], entry["frames"], entry["source_frames"]) == (4.0, 8.0, 8, 20)
    for i in range(GOOD):
        assert torch.equal(a.read(i)["latents"], b.read(i)["latents"])


def test_ranks_split_the_inputs_disjointly(tmp_path, videos, model, shards):
    out = tmp_path / "ranks"
    encode(job(videos, model, out), rank=0, world_size=2)
    with pytest.raises(Exception, match="worker"):  # rank 1 has not run: the folder is incomplete
        ShardSet.open(out)
    encode(job(videos, model, out), rank=1, world_size=2)
    keys = {p.name: [c["key"] for c in json.loads(p.read_text())] for p in out.glob("w*.clips.json")}
    assert sorted(k for ks in keys.values() for k in ks) == [f"{i:09d}" for i in range(GOOD)]  # each once
    assert {k for name, ks in keys.items() if name.startswith("w000") for k in ks} == {
        "000000000",
        "000000002",
        "000000004",
    }
    merged = ShardSet.open(out)
    straight = ShardSet.open(shards)
    order = {merged.locate(i)[1]["key"]: i for i in range(GOOD)}
    for i in range(GOOD):
        assert torch.equal(straight.read(i)["latents"], merged.read(order[straight.locate(i)[1]["key"]])["latents"])
    with pytest.raises(ValueError, match=r"workers = 2, this run has 1"):  # a rerun must split the same way
        encode(job(videos, model, out))


def test_worker_processes_write_the_same_clips(tmp_path, videos, model, shards):
    """--workers 2: two spawned processes, each its share; together the straight run's clips, each once."""
    summary = encode(job(videos, model, tmp_path / "workers"), workers=2)
    assert summary["clips"] == GOOD and summary["workers_finished"] == "2 of 2"
    merged, straight = ShardSet.open(tmp_path / "workers"), ShardSet.open(shards)
    order = {merged.locate(i)[1]["key"]: i for i in range(GOOD)}
    assert sorted(order) == [f"{i:09d}" for i in range(GOOD)]
    for i in range(GOOD):
        assert torch.equal(straight.read(i)["latents"], merged.read(order[straight.locate(i)[1]["key"]])["latents"])


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return T.run_cli(*args, env=env)


def test_a_killed_encode_continues_without_duplicates_or_gaps(tmp_path, videos, model, shards):
    out = tmp_path / "killed"
    args = ["data", "encode", "--videos", str(videos), "--model", str(model), "--out", str(out)]
    args += SMALL
    first = run_cli(*args, env={FAULT_ENV: "1"})
    assert first.returncode == -9, first.stderr[-2000:]
    assert [p.name for p in sorted(out.glob("w*"))] == ["w000-000000.clips.json", "w000-000000.json", "w000-000000.tar"]
    with pytest.raises(Exception, match="has not finished"):
        ShardSet.open(out)
    (out / ".w000-000001.tar.tmp-99999").write_bytes(b"half a shard")  # what a kill mid-shard leaves
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert not list(out.glob(".*tmp*"))
    for name in ("w000-000000", "w000-000001", "w000-000002"):  # the same shards, byte for byte
        assert (out / f"{name}.tar").read_bytes() == (shards / f"{name}.tar").read_bytes(), name
    assert json.loads((out / "summary.json").read_text())["skipped"] == 6


def shards_config(tmp: Path, shards: Path, model: Path, **train) -> Path:
    return T.write_config(
        tmp / "temporal.yaml",
        stage="temporal",
        output_dir=str(tmp / "run"),
        data={"shards": str(shards), "size": 32, "num_frames": 4, "frame_stride": 2},
        model={"pretrained": str(model), "temporal": {"kernel_size": [3, 1, 1]}},
        optim={"lr": 1e-3},
        train={"max_steps": 4, "batch_size": 2, "checkpoint_every": 2, "log_every": 1, **train},
    )


def test_shard_batches_are_the_cache_batches(tmp_path, good, shards, model):
    """One sampler: the same seed draws the same clips from the shards as from the in-memory cache."""
    trainer = Trainer(load_config(shards_config(tmp_path, shards, model, caption_dropout=0.5)))
    source = trainer.build_cache()
    config = trainer.config
    config.data.shards, config.data.videos, config.data.cache_frames = None, good, 16
    config.data.cache_dir = tmp_path / "cache"
    cache = trainer.build_cache()
    for step in range(3):
        a = trainer.stage.batch(source, B.step_generator(0, step))
        b = trainer.stage.batch(cache, B.step_generator(0, step))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_bad_shard_folders_are_clear_errors_before_any_step(tmp_path, videos, shards, model):
    both = yaml.safe_load(shards_config(tmp_path, shards, model).read_text())
    both["data"]["videos"] = str(videos)
    with pytest.raises(ConfigError, match=r"data.videos and data.shards: give one, not both"):
        load_config(T.write_config(tmp_path / "both.yaml", **both))

    other = make_model(tmp_path / "other", latent_channels=8)
    config = load_config(shards_config(tmp_path, shards, other))
    with pytest.raises(
        ConfigError, match=r"dataset.json holds latents \(c, h, w\) = \(4, 16, 16\).*expects \(8, 16, 16\)"
    ):
        Trainer(config).build_cache()

    wide = make_model(tmp_path / "wide", text_width=768)  # the same VAE, a UNet for CLIP-L's width
    with pytest.raises(ConfigError, match=r"caption embeddings of width 384 .* attends to width 768"):
        Trainer(load_config(shards_config(tmp_path, shards, wide))).build_cache()

    cut = tmp_path / "cut"
    subprocess.run(["cp", "-r", str(shards), str(cut)], check=True)
    tar = cut / "w000-000001.tar"
    tar.write_bytes(tar.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"w000-000001.tar: truncated or replaced shard: .* says 102400 bytes"):
        Trainer(load_config(shards_config(tmp_path, cut, model))).build_cache()

    long = yaml.safe_load(shards_config(tmp_path, shards, model).read_text())
    long["data"]["num_frames"] = 9
    with pytest.raises(ConfigError, match=r"span 17 stored frames, but the clips in .* have 16"):
        Trainer(load_config(T.write_config(tmp_path / "long.yaml", **long))).build_cache()

    pixels = {**both, "stage": "decoder", "data": {"shards": str(shards)}}
    pixels["model"] = {"pretrained": str(model)}
    with pytest.raises(ConfigError, match=r"stage 'decoder' trains on pixels"):
        load_config(T.write_config(tmp_path / "decoder.yaml", **pixels))


def test_resume_from_shards_after_sigkill_matches_the_straight_run(tmp_path, shards, model):
    straight = tmp_path / "straight"
    straight.mkdir()
    assert run_cli("train", str(shards_config(straight, shards, model))).returncode == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    config = shards_config(killed, shards, model)
    first = run_cli("train", str(config), env={TRAIN_FAULT_ENV: "2"})
    assert first.returncode == -9, first.stderr[-2000:]
    second = run_cli("train", str(config), "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    a = load_file(str(latest_checkpoint(straight / "run") / "weights.safetensors"))
    b = load_file(str(latest_checkpoint(killed / "run") / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert any("conv2.weight" in k and a[k].abs().sum() > 0 for k in a)  # it trained


def test_image_stage_trains_on_shard_frames_and_samples_with_their_prompts(tmp_path, shards, model):
    """The image stage draws single stored frames through the same sampler; samples take their prompts and
    embeddings from the first clips of the shards (no text encoder is loaded for them)."""
    config = T.write_config(
        tmp_path / "image.yaml",
        stage="image",
        output_dir=str(tmp_path / "run"),
        data={"shards": str(shards), "size": 32},
        model={"pretrained": str(model)},
        train={"max_steps": 1, "batch_size": 3, "checkpoint_every": 1, "sample_every": 1},
    )
    trainer = Trainer(load_config(config))
    source = trainer.build_cache()
    batch = trainer.stage.batch(source, B.step_generator(0, 0))
    assert batch["latents"].shape == (3, 4, 16, 16) and batch["text"].shape == (3, 16, 384)
    assert set(source.captions) == {source.shards.locate(i)[1]["caption"] for i in range(GOOD)}
    model_dir = trainer.fit()
    assert (tmp_path / "run" / "samples" / "step-0000001.gif").is_file()
    assert (model_dir / "unet" / "config.json").is_file()


def test_image_collections_encode_as_one_frame_clips(tmp_path, model):
    """A folder of images + captions.csv with --num-frames 1: the pixels the image dataset reads, one frame each."""
    from PIL import Image

    from videoldm.data.image_folder import ImageFolderDataset

    for i in range(3):
        pixels = (torch.rand(40, 50, 3, generator=torch.Generator().manual_seed(i)) * 255).to(torch.uint8)
        Image.fromarray(pixels.numpy()).save(tmp_path / f"{i}.png")
    (tmp_path / "captions.csv").write_text("path,caption\n0.png,a cat\n1.png,a dog\n2.png,a cow\n")
    summary = encode(job(tmp_path, model, tmp_path / "shards", frames=1))
    assert summary["clips"] == 3 and summary["skipped"] == 0
    images = ImageFolderDataset(tmp_path, captions=tmp_path / "captions.csv", size=32)
    vae, _ = load_encoders(model)
    shard_set = ShardSet.open(tmp_path / "shards")
    for i in range(3):
        pixels = B.from_unit_range(images[i]["image"])[:, None]  # (3, 1, H, W), as the image stage would see it
        assert torch.equal(shard_set.read(i)["latents"], encode_latents(vae, pixels[None])[0])


def test_the_benchmarks_synthetic_shards_open_for_the_shipped_model(tmp_path):
    """benchmarks/data_shards.py's memory runs train on synthetic shards: the shipped model must accept them."""
    from benchmarks.data_shards import CLIP_FRAMES, _trainer, write_synthetic_shards

    folder = write_synthetic_shards(tmp_path / "synthetic", 5, shard_size=2)
    trainer, source = _trainer(tmp_path / "run", {"shards": str(folder)}, batch=2)
    assert len(source) == 5 and len(source.shards.names) == 3
    assert trainer.stage.batch(source, B.step_generator(0, 0))["latents"].shape == (2, 4, CLIP_FRAMES, 16, 16)


def test_a_webvid_csv_encodes_from_its_downloaded_files(tmp_path, videos, model):
    """WebVid's columns (videoid, contentUrl, duration, page_dir, name): files {page_dir}/{videoid}.mp4 beside
    the CSV; the URL column is not read; a row whose file was not downloaded is skipped and named."""
    (tmp_path / "000001_000050").mkdir()
    for videoid, source in (("1066", "00001.mp4"), ("20077", "00002.mp4")):
        (tmp_path / "000001_000050" / f"{videoid}.mp4").write_bytes((videos / source).read_bytes())
    rows = [
        (v, f"https://example.invalid/{v}.mp4", "PT00H00M02S", "000001_000050", f"clip {v}")
        for v in ("1066", "20077", "999")
    ]
    with (tmp_path / "results_2M_val.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("videoid", "contentUrl", "duration", "page_dir", "name"), *rows])
    summary = encode(job(tmp_path / "results_2M_val.csv", model, tmp_path / "shards"))
    assert summary["clips"] == 2 and summary["skipped_by_reason"] == {"file not found": [str(tmp_path / "999.mp4")]}
    shard_set = ShardSet.open(tmp_path / "shards")
    assert [shard_set.locate(i)[1]["source"] for i in range(2)] == ["000001_000050/1066.mp4", "000001_000050/20077.mp4"]
    assert [shard_set.locate(i)[1]["caption"] for i in range(2)] == ["clip 1066", "clip 20077"]


def test_caption_dropout_on_the_cache_draws_what_it_always_drew():
    """text_for now asks the clip source for embeddings; on the in-memory cache the values are today's."""
    from videoldm.training.cache import VideoCache

    g = torch.Generator().manual_seed(0)
    cache = VideoCache(
        captions=["a", "b", "c", "a"],
        pixels=torch.zeros(4, 3, 2, 2, 2, dtype=torch.uint8),
        text=torch.randn(4, 5, 6, generator=g).half(),
        text_index=torch.tensor([1, 2, 3, 1]),
    )
    videos = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    new = B.text_for(cache, videos, dropout=0.5, generator=torch.Generator().manual_seed(3))
    dropped = torch.rand(8, generator=torch.Generator().manual_seed(3)) < 0.5
    old = cache.text[torch.where(dropped, torch.zeros(8, dtype=torch.long), cache.text_index[videos])].float()
    assert torch.equal(new, old) and 0 < dropped.sum() < 8
