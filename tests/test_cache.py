"""The clip cache: full-rate frames, strided clips from any start, one clear error for short videos, and a latent
cache keyed on what the latents depend on."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

import test_training
from videoldm.data.shapes import write_shapes_dataset
from videoldm.io import read_video, write_video
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache, cache_key, data_key, load_videos, prepare_cache, vae_fingerprint
from videoldm.training.config import ConfigError, DataConfig, RunConfig, _check_data

TINY_VAE = {**test_training.TINY_VAE, "sample_size": 16}


def counting_cache(videos: int = 3, frames: int = 32, *, frame_stride: int = 1) -> VideoCache:
    """pixels[v, c, t] = 100 * v + t (as uint8): a gathered clip shows which video and frames it came from."""
    values = 100 * torch.arange(videos)[:, None] + torch.arange(frames)[None]
    pixels = values[:, None, :, None, None].expand(videos, 3, frames, 2, 2).to(torch.uint8)
    return VideoCache(captions=[f"v{i}" for i in range(videos)], pixels=pixels, frame_stride=frame_stride)


def test_stride_one_batches_are_todays(tmp_path):
    """The draws and clips of consecutive frames are what they were before strides: resumed runs and
    published configs see the same batches."""
    cache = counting_cache()
    videos, frames = B.pick_clips(cache, batch_size=16, num_frames=8, generator=torch.Generator().manual_seed(5))
    clips = B.gather_clips(cache.pixels, videos, frames, 8)
    g = torch.Generator().manual_seed(5)  # today's pick_clips, written out
    old_videos = torch.randint(3, (16,), generator=g)
    old_starts = torch.randint(32 - 8 + 1, (16,), generator=g)
    old = torch.stack([cache.pixels[v, :, s : s + 8] for v, s in zip(old_videos, old_starts, strict=True)])
    assert torch.equal(videos, old_videos) and torch.equal(clips, old)
    assert torch.equal(B.gather_clips(cache.pixels, old_videos, old_starts, 8), old)  # (B,) starts still work


def test_strided_clips_start_at_any_cached_frame():
    cache = counting_cache(frames=32, frame_stride=4)
    starts = set()
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        videos, frames = B.pick_clips(cache, batch_size=8, num_frames=8, generator=g)
        clips = B.gather_clips(cache.pixels, videos, frames, 8)[:, 0, :, 0, 0].long()  # (B, T) = 100 v + t
        assert torch.equal(clips // 100, videos[:, None].expand(-1, 8))
        assert (clips.diff(dim=1) == 4).all()  # every 4th source frame
        starts.update((clips[:, 0] % 100).tolist())
    assert starts == {0, 1, 2, 3}  # 8 frames every 4th span 29 of 32: starts 0-3, not only 0


def test_batches_are_a_pure_function_of_the_generator():
    cache = counting_cache(frames=32, frame_stride=4)
    a = B.pick_clips(cache, batch_size=8, num_frames=8, generator=B.step_generator(1, 7))
    b = B.pick_clips(cache, batch_size=8, num_frames=8, generator=B.step_generator(1, 7))
    c = B.pick_clips(cache, batch_size=8, num_frames=8, generator=B.step_generator(1, 8))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_clips_longer_than_the_cache_and_bad_frame_indices_are_errors():
    with pytest.raises(ValueError, match="spans 29 frames, but the cache holds 16"):
        B.pick_clips(counting_cache(frames=16, frame_stride=4), batch_size=2, num_frames=8, generator=None)
    cache = counting_cache()
    with pytest.raises(ValueError, match=r"got \(2, 3\)"):
        B.gather_clips(cache.pixels, torch.tensor([0, 1]), torch.zeros(2, 3, dtype=torch.long), 4)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"num_frames": 8, "frame_stride": 16, "cache_frames": 112}, r"spans 113: set data.cache_frames >= 113"),
        ({"num_frames": 8, "frame_stride": 4, "cache_frames": 28}, r"data.frame_stride \(4\) .* spans 29"),
        ({"num_frames": 9, "cache_frames": 8}, r"data.num_frames \(9\) .* spans 9"),
        ({"frame_stride": 0}, r"data.frame_stride: must be >= 1, got 0"),
    ],
)
def test_config_check_counts_the_source_frames_a_clip_spans(tmp_path, data, message):
    with pytest.raises(ConfigError, match=message):
        _check_data(DataConfig(videos=tmp_path, **data))
    _check_data(DataConfig(videos=tmp_path, num_frames=8, frame_stride=16, cache_frames=113))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), videos=3, seed=0, num_frames=20, size=24)


def test_the_cache_holds_full_rate_frames(shapes):
    captions, pixels = load_videos(DataConfig(videos=shapes, size=24, num_frames=4, frame_stride=4, cache_frames=16))
    assert len(captions) == 3 and pixels.shape == (3, 3, 16, 24, 24) and pixels.dtype == torch.uint8
    video, _ = read_video(shapes / "00001.mp4")
    assert torch.equal(pixels[1], ((video[:, :16] + 1) * 127.5).round().to(torch.uint8))


def test_videos_too_short_give_one_error_naming_the_frames_needed(shapes, caplog):
    data = DataConfig(videos=shapes, size=24, num_frames=8, frame_stride=4, cache_frames=29)
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError) as err:
        load_videos(data)
    message = str(err.value)
    assert "3 of 3 videos" in message and "29 source frames per video (data.cache_frames" in message
    assert "data.num_frames=8 frames every data.frame_stride=4 frames spans 29" in message
    assert "they have 20-20" in message
    assert "too short" not in caplog.text  # no line per video


def test_some_short_videos_are_one_warning(tmp_path, shapes, caplog):
    rows = [("long.mp4", "a red circle moving up"), ("short.mp4", "a red circle moving down")]
    video, _ = read_video(shapes / "00000.mp4")
    write_video(tmp_path / "long.mp4", video)
    write_video(tmp_path / "short.mp4", video[:, :10])
    with (tmp_path / "captions.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "caption"), *rows])
    with caplog.at_level(logging.WARNING):
        captions, pixels = load_videos(DataConfig(videos=tmp_path, size=24, num_frames=4, cache_frames=16))
    assert captions == ["a red circle moving up"] and pixels.shape[2] == 16
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "1 of 2 videos" in warnings[0] and "they have 10-10" in warnings[0]


def test_pixel_keys_do_not_depend_on_the_stride_and_stride_one_keeps_todays(shapes):
    data = DataConfig(videos=shapes, size=24, num_frames=4, cache_frames=16)
    table = hashlib.sha256((shapes / "captions.csv").read_bytes()).hexdigest()
    assert data_key(data) == cache_key(table, 24, 16, 1, None)  # today's key: existing caches are reused
    assert data_key(DataConfig(videos=shapes, size=24, num_frames=4, cache_frames=16, frame_stride=4)) == data_key(data)
    assert data_key(DataConfig(videos=shapes, size=24, num_frames=4, cache_frames=17)) != data_key(data)


@pytest.fixture(scope="module")
def vae_copies(tmp_path_factory) -> dict[str, Path]:
    """The same VAE as fp16 (as shipped) and fp32 (as exported) files, plus changed copies."""
    root = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    vae = AutoencoderKL(**TINY_VAE).half()
    vae.save_pretrained(root / "fp16")
    vae = vae.float()  # the stages load a VAE in fp32: the export is the fp16 weights, upcast
    vae.save_pretrained(root / "fp32")
    with torch.no_grad():
        vae.decoder.conv_out.bias.add_(1)
        vae.save_pretrained(root / "decoder")
        vae.encoder.conv_in.weight[0, 0, 0, 0] += 1e-3
        vae.save_pretrained(root / "encoder")
    vae.register_to_config(scaling_factor=0.5)
    vae.save_pretrained(root / "scaling")
    return {p.name: p for p in root.iterdir()}


def test_vae_key_is_the_encoder_not_the_file_bytes(vae_copies):
    fp16, fp32 = vae_copies["fp16"], vae_copies["fp32"]
    assert (fp16 / "diffusion_pytorch_model.safetensors").read_bytes() != (
        fp32 / "diffusion_pytorch_model.safetensors"
    ).read_bytes()
    assert vae_fingerprint(fp16) == vae_fingerprint(fp32)
    assert vae_fingerprint(vae_copies["decoder"]) == vae_fingerprint(fp32)  # the decoder makes no latent
    assert vae_fingerprint(vae_copies["encoder"]) != vae_fingerprint(fp32)
    assert vae_fingerprint(vae_copies["scaling"]) != vae_fingerprint(vae_copies["encoder"])  # scale_latents


class FakeStage:
    """What `prepare_cache` asks of a stage that needs latents."""

    needs_text = False
    needs_latents = True

    def __init__(self, vae_dir: Path, data: DataConfig, *, may_encode: bool) -> None:
        self._vae_dir = vae_dir
        self.data = data
        self.vae = AutoencoderKL.from_pretrained(vae_dir) if may_encode else None

    def vae_dir(self) -> Path:
        return self._vae_dir

    def data_key(self) -> str:
        return data_key(self.data)

    def load_pixels(self) -> tuple[list[str], torch.Tensor]:
        return load_videos(self.data)


def test_continuing_from_an_fp32_export_reuses_the_latents(tmp_path, shapes, vae_copies):
    data = DataConfig(videos=shapes, size=24, num_frames=4, frame_stride=2, cache_frames=12, cache_dir=tmp_path)
    config = RunConfig(stage="temporal", output_dir=tmp_path / "run", data=data)
    first = prepare_cache(FakeStage(vae_copies["fp16"], data, may_encode=True), config, is_main=True, wait=lambda: None)
    assert first.frame_stride == 2 and first.latents is not None and first.latents.shape[:3] == (3, 4, 12)
    # No VAE to encode with: the fp32 copy must find the fp16 copy's latents (else `None.encode` fails).
    again = prepare_cache(
        FakeStage(vae_copies["fp32"], data, may_encode=False), config, is_main=True, wait=lambda: None
    )
    assert torch.equal(again.latents, first.latents)
    assert len(list(tmp_path.glob("latents-*.safetensors"))) == 1
