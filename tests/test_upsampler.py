"""The video upsampler: noise augmentation per clip, windows of frames and tiles, locality in time, the pipeline."""

from __future__ import annotations

import pytest
import torch

from upsampler_fixtures import save_tiny_model, tiny_pipeline, tiny_upsampler
from videoldm.diffusion.noise_augmentation import augment, low_res_scheduler
from videoldm.diffusion.windows import WindowPlan, blend_windows
from videoldm.pipelines.upscale import VideoUpscalePipeline
from videoldm.upsampler import downscale, upscale_bicubic


def video(b: int = 1, t: int = 8, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, 3, t, size, size), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_noise_augmentation_is_one_level_per_clip():
    frames, noise = video(b=2), torch.randn(2, 3, 8, 8, 8)
    scheduler = low_res_scheduler()
    clean = augment(frames, torch.tensor([0, 0]), noise, scheduler=scheduler)
    noisy = augment(frames, torch.tensor([0, 300]), noise, scheduler=scheduler)
    assert (clean - frames).abs().mean() < 0.01  # level 0: alpha_bar = 1 - 1e-4, noise std 0.01
    assert torch.equal(noisy[0], clean[0]) and (noisy[1] - frames[1]).abs().mean() > 0.2
    with pytest.raises(ValueError, match="one level per clip"):
        augment(frames, torch.zeros(2, 8, dtype=torch.long), noise, scheduler=scheduler)
    upsampler = tiny_upsampler(temporal=False)
    condition = upsampler.condition(frames, torch.tensor([0, 5]), noise=noise)
    assert condition.shape == (2, 3, 8, 16, 16)
    assert torch.allclose(condition[0], upscale_bicubic(clean, 2)[0])
    with pytest.raises(ValueError, match="max_noise_level"):
        upsampler.condition(frames, torch.tensor([0, 100]), noise=noise)


def test_downscale_is_the_block_mean():
    x = video(size=4)
    assert torch.equal(downscale(x.repeat_interleave(2, -1).repeat_interleave(2, -2), 2), x)


def test_window_weights_sum_to_one_everywhere():
    plan = WindowPlan.of(23, 20, 12, chunk_size=8, chunk_overlap=3, tile_size=8, tile_overlap=2)
    assert len(plan) > 8
    like = torch.zeros(1, 2, 23, 20, 12)
    ones = lambda windows: torch.ones(len(windows), 2, *(s.stop - s.start for s in windows[0]))  # noqa: E731
    out = blend_windows(ones, plan, batch=1, channels=2, like=like)
    assert torch.allclose(out, torch.ones_like(out))
    for group in (3, 100):  # several windows per call: the same blend
        torch.testing.assert_close(blend_windows(ones, plan, batch=1, channels=2, like=like, group=group), out)


def test_fresh_temporal_layers_give_the_image_upsampler():
    upsampler = tiny_upsampler(temporal=False)
    fresh = type(upsampler).from_image_unet(
        upsampler.video_unet.unet, config=upsampler.upsampler_config, temporal_norm="frame"
    )
    x, c = video(t=5, size=16), video(t=5, size=16, seed=1)
    level = torch.tensor([3])
    with torch.no_grad():
        image = upsampler(x, 500, condition=c, noise_level=level).sample
        aligned = fresh(x, 500, condition=c, noise_level=level).sample
        skipped = fresh(x, 500, condition=c, noise_level=level, image_only=True).sample
    assert torch.allclose(image, aligned, atol=1e-5) and torch.equal(image, skipped)


@pytest.mark.parametrize("norm", ["frame", "clip"])
def test_a_chunks_output_does_not_depend_on_its_length_with_frame_norm(norm):
    upsampler = tiny_upsampler(temporal_norm=norm)
    radius = upsampler.video_unet.temporal.temporal_radius()
    assert radius == (12 if norm == "frame" else None)
    x, c = video(t=40, size=8), video(t=40, size=8, seed=1)
    level = torch.tensor([3])
    with torch.no_grad():
        long = upsampler(x, 400, condition=c, noise_level=level).sample
        short = upsampler(x[:, :, :24], 400, condition=c[:, :, :24], noise_level=level).sample
    inside = slice(0, 24 - 12)  # frames whose receptive field lies inside the short chunk
    difference = (long[:, :, inside] - short[:, :, inside]).abs().max()
    if norm == "frame":
        assert difference < 1e-5
        assert (long[:, :, 23] - short[:, :, 23]).abs().max() > 1e-4  # the temporal layers do reach 12 frames
    else:
        assert difference > 1e-4  # clip statistics: every frame depends on the chunk's length


def test_windowed_prediction_is_exact_where_the_receptive_field_fits():
    pipe = tiny_pipeline()
    radius = pipe.upsampler.video_unet.temporal.temporal_radius()
    x, c = video(t=64, size=8), video(t=64, size=8, seed=1)
    level = torch.tensor([3])
    windowed = WindowPlan.of(64, 8, 8, chunk_size=40, chunk_overlap=4)
    whole = WindowPlan.of(64, 8, 8)
    kwargs = {"context": c, "noise_level": level, "image_only": False}  # the input, as the guider passes it
    with torch.no_grad():
        out = pipe._denoise(x, torch.tensor(400), plan=windowed, **kwargs)
        reference = pipe._denoise(x, torch.tensor(400), plan=whole, **kwargs)
    exact = windowed.exact_frames(radius)
    assert len(exact) >= 40 and len(exact) < 64
    assert (out[:, :, exact] - reference[:, :, exact]).abs().max() < 1e-5
    assert (out - reference).abs().max() > 1e-4  # elsewhere the windows see less than the receptive field


def test_pipeline_same_seed_same_video_and_windows_over_independent_frames_change_nothing():
    pipe = tiny_pipeline()
    low = video(t=12, size=8)

    def run(seed: int, **kw) -> torch.Tensor:
        return pipe(low, num_inference_steps=3, generator=torch.Generator().manual_seed(seed), **kw).frames

    a, b, c = run(0, chunk_size=None), run(0, chunk_size=None), run(1, chunk_size=None)
    assert a.shape == (1, 3, 12, 16, 16) and a.abs().max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(run(0, chunk_size=16), a)  # one window when the chunk holds the clip
    # The image upsampler's frames are independent: blended windows of frames give exactly one pass.
    image = run(0, chunk_size=None, image_only=True)
    assert torch.allclose(run(0, chunk_size=5, chunk_overlap=2, image_only=True), image, atol=1e-5)
    tiled = run(0, chunk_size=None, tile_size=8, tile_overlap=4)
    assert tiled.shape == a.shape and torch.isfinite(tiled).all()
    # A list of generators: a video in a batch is the video alone.
    batch = pipe(
        torch.cat([low, video(t=12, size=8, seed=3)]),
        num_inference_steps=3,
        generator=[torch.Generator().manual_seed(s) for s in (0, 5)],
        chunk_size=None,
    ).frames
    assert torch.allclose(batch[:1], a, atol=1e-5)


def test_pipeline_checks_inputs():
    pipe = tiny_pipeline(levels=3)
    with pytest.raises(ValueError, match=r"input height 7: the x2 output \(14 px\) must be a multiple of 4"):
        pipe(video(size=7), num_inference_steps=1)
    with pytest.raises(ValueError, match="video must be"):
        pipe(video()[:, :2], num_inference_steps=1)
    with pytest.raises(ValueError, match="noise_level"):
        pipe(video(), noise_level=-1, num_inference_steps=1)
    with pytest.raises(ValueError, match="noise_level"):
        pipe(video(), noise_level=100, num_inference_steps=1)
    with pytest.raises(ValueError, match="tile_size"):
        pipe(video(), tile_size=3, num_inference_steps=1)


def test_saved_upsampler_loads_with_and_without_its_temporal_layers(tmp_path):
    folder = save_tiny_model(tmp_path / "model")
    assert (folder / "upsampler" / "temporal").is_dir() and (folder / "upsampler" / "scheduler").is_dir()
    original = tiny_pipeline()
    loaded = VideoUpscalePipeline.from_pretrained(folder)
    image = VideoUpscalePipeline.from_pretrained(folder, image_only=True)
    assert image.upsampler.video_unet.temporal is None and loaded.upsampler.config.noise_level == 10
    low = video(t=6, size=8)

    def run(p: VideoUpscalePipeline, **kw) -> torch.Tensor:
        return p(low, num_inference_steps=2, generator=torch.Generator().manual_seed(0), **kw).frames

    assert torch.allclose(run(loaded), run(original), atol=1e-6)
    assert torch.allclose(run(image), run(original, image_only=True), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="upsampler"):
        VideoUpscalePipeline.from_pretrained(tmp_path)


def test_the_model_never_sees_more_than_one_window():
    pipe = tiny_pipeline()
    shapes = []
    hook = pipe.upsampler.video_unet.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    try:
        pipe(video(t=20, size=16), num_inference_steps=1, chunk_size=6, tile_size=16, tile_overlap=4)
    finally:
        hook.remove()
    # one step: 4 windows of frames (6, overlap 1, over 20) x 3 x 3 tiles (16, overlap 4, over the 32 x 32 output)
    assert (
        len(shapes) == len(WindowPlan.of(20, 32, 32, chunk_size=6, chunk_overlap=1, tile_size=16, tile_overlap=4)) == 36
    )
    assert max(s[2] for s in shapes) == 6 and max(s[3] for s in shapes) == 16 and max(s[4] for s in shapes) == 16


def test_an_upsampler_shipped_in_fp16_loads_in_float32_and_upscales_alike(tmp_path):
    from scripts.ship_model import ship

    folder = save_tiny_model(tmp_path / "model")
    ship(folder / "upsampler", tmp_path / "shipped" / "upsampler")
    shipped = VideoUpscalePipeline.from_pretrained(tmp_path / "shipped")
    assert shipped.dtype == torch.float32
    low = video(t=4, size=8)

    def run(p: VideoUpscalePipeline) -> torch.Tensor:
        return p(low, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames

    assert (run(shipped) - run(VideoUpscalePipeline.from_pretrained(folder))).abs().max() < 2e-2


def test_a_residual_upsampler_adds_what_it_samples_to_the_bicubic_upscale(tmp_path):
    """residual=True: the diffusion's sample is (frames - bicubic(input)) x residual_scale. An upsampler whose UNet
    predicts a clean sample of zeros returns the bicubic upscale (a frame upsampler returns grey), and the option
    survives saving."""
    from diffusers import DDIMScheduler

    low = video(t=3, size=8) * 0.5
    residual = tiny_upsampler(temporal=False, residual=True, residual_scale=5.0)
    high = video(t=3, size=16, seed=1)
    target = residual.to_diffusion(high, low)
    assert torch.allclose(target, (high - upscale_bicubic(low, 2)) * 5.0)
    assert torch.allclose(residual.from_diffusion(target, low), high, atol=1e-6)
    assert torch.equal(tiny_upsampler(temporal=False).to_diffusion(high, low), high)

    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="sample", clip_sample=False)
    outputs = {}
    for flag in (True, False):
        upsampler = tiny_upsampler(temporal=False, residual=flag, residual_scale=5.0)
        with torch.no_grad():  # the UNet's output is the clean sample: all zeros
            upsampler.video_unet.unet.conv_out.weight.zero_()
            upsampler.video_unet.unet.conv_out.bias.zero_()
        pipe = VideoUpscalePipeline(upsampler=upsampler, scheduler=scheduler)
        outputs[flag] = pipe(low, num_inference_steps=3, generator=torch.Generator().manual_seed(0)).frames
    assert torch.allclose(outputs[True], upscale_bicubic(low, 2).clamp(-1, 1), atol=1e-6)
    assert outputs[False].abs().max() < 1e-6

    VideoUpscalePipeline(upsampler=residual, scheduler=scheduler).save_pretrained(tmp_path)
    loaded = VideoUpscalePipeline.from_pretrained(tmp_path).upsampler
    assert loaded.config.residual is True and loaded.config.residual_scale == 5.0


def test_input_guidance_mixes_a_branch_with_the_input_and_one_with_an_all_zero_input():
    pipe = tiny_pipeline()
    a, b = video(t=4, size=8), video(t=4, size=8, seed=7)

    def run(low: torch.Tensor, scale: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return pipe(low, num_inference_steps=2, generator=g, chunk_size=None, input_guidance_scale=scale).frames

    assert torch.equal(run(a, 1.0), pipe(a, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames)
    # s = 0 keeps only the branch without the input: the frames no longer depend on it (a frame upsampler)
    assert torch.allclose(run(a, 0.0), run(b, 0.0), atol=1e-6) and not torch.allclose(run(a, 1.0), run(b, 1.0))
    assert not torch.allclose(run(a, 2.0), run(a, 1.0))  # s > 1 pushes further along (with - without)
