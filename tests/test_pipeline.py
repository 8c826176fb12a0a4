"""VideoLDMPipeline sampling: against diffusers' StableDiffusionPipeline (per frame), determinism, seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, EulerAncestralDiscreteScheduler, StableDiffusionPipeline
from transformers import CLIPTextModel

from conftest import tiny_unet
from test_pipeline_fixtures import perturb_temporal, sd_scheduler, tiny_vae, write_tiny_stable_diffusion
from videoldm import VideoLDMPipeline, VideoUNet
from videoldm.autoencoder import VideoAutoencoder
from videoldm.diffusion import make_scheduler

PROMPT = "a red circle moving left"
T = 3


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return write_tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def fresh(sd_folder: Path) -> VideoLDMPipeline:
    """Fresh temporal layers: the video model is the image model frame by frame."""
    pipe = VideoLDMPipeline.from_stable_diffusion(sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def aligned(sd_folder: Path) -> VideoLDMPipeline:
    """Temporal layers moved off the identity, as after training."""
    pipe = VideoLDMPipeline.from_stable_diffusion(sd_folder)
    perturb_temporal(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image_pipeline(pipe: VideoLDMPipeline, sd_folder: Path) -> StableDiffusionPipeline:
    """diffusers' own Stable Diffusion sampler on the same image UNet, VAE and scheduler."""
    return StableDiffusionPipeline(
        vae=pipe.vae,
        text_encoder=CLIPTextModel.from_pretrained(sd_folder / "text_encoder"),
        tokenizer=pipe.text_encoder.tokenizer,
        unet=pipe.unet.unet,
        scheduler=pipe.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _noise(seed: int, frames: int = T) -> torch.Tensor:
    return torch.randn(1, 4, frames, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("sampler", "mode"), [("ddim", "fresh"), ("dpm++", "fresh"), ("euler", "fresh"), ("euler", "image_only")]
)
def test_each_frame_follows_the_image_model_sampler(request, sd_folder: Path, sampler: str, mode: str) -> None:
    """A fresh video model, or any video model with image_only=True, samples each frame exactly as diffusers'
    StableDiffusionPipeline samples an image from that frame's noise: init_noise_sigma, scale_model_input, CFG,
    the scheduler step and the VAE scaling are all used as diffusers uses them."""
    pipe: VideoLDMPipeline = request.getfixturevalue("fresh" if mode == "fresh" else "aligned")
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    noise = _noise(0)
    video = pipe(PROMPT, num_frames=T, num_inference_steps=3, guidance_scale=3.0, latents=noise,
                 image_only=mode == "image_only").frames  # fmt: skip
    assert video.shape == (1, 3, T, 16, 16) and video.min() >= -1 and video.max() <= 1

    cond = pipe.encode_prompt(PROMPT)
    image_pipe = _image_pipeline(pipe, sd_folder)
    images = image_pipe(
        prompt_embeds=cond.text.expand(T, -1, -1),
        negative_prompt_embeds=cond.negative_text.expand(T, -1, -1),
        latents=noise[0].permute(1, 0, 2, 3),
        num_inference_steps=3,
        guidance_scale=3.0,
        output_type="pt",
    ).images  # (T, 3, H, W) in [0, 1]
    torch.testing.assert_close(video[0].permute(1, 0, 2, 3) * 0.5 + 0.5, images, atol=1e-4, rtol=1e-4)


def test_same_seed_same_video_other_seed_other_video(aligned: VideoLDMPipeline) -> None:
    # Euler: its step draws noise too, so the generator must drive the whole loop, not only the initial noise
    aligned.scheduler = make_scheduler("euler", aligned.scheduler.config)

    def run(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return aligned(PROMPT, num_frames=T, num_inference_steps=2, generator=generator).frames

    first, again, other = run(7), run(7), run(8)
    assert torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, EulerAncestralDiscreteScheduler])
def test_a_list_of_generators_seeds_each_video_as_alone(aligned: VideoLDMPipeline, scheduler_cls: type) -> None:
    """With a sampler that draws noise at every step, video i of a batch is the video its prompt gives alone
    with generator i: the list drives the step noise too, not only the initial noise."""
    saved = aligned.scheduler
    aligned.scheduler = scheduler_cls.from_config(saved.config)
    try:
        prompts = [PROMPT, "a blue square moving up"]

        def run(texts: list[str], seeds: list[int]) -> torch.Tensor:
            generators = [torch.Generator().manual_seed(s) for s in seeds]
            return aligned(texts, num_frames=2, num_inference_steps=3, guidance_scale=3.0, generator=generators).frames

        both = run(prompts, [5, 6])
        torch.testing.assert_close(both[0:1], run(prompts[:1], [5]), atol=1e-4, rtol=0)
        torch.testing.assert_close(both[1:2], run(prompts[1:], [6]), atol=1e-4, rtol=0)
    finally:
        aligned.scheduler = saved


def test_latents_have_the_vae_channels_when_the_unet_takes_more(fresh: VideoLDMPipeline) -> None:
    """A UNet with extra input channels (an upsampler's low-res frames): the noise has the VAE's channels."""
    pipe = VideoLDMPipeline(
        unet=VideoUNet.from_image_unet(tiny_unet(extra_channels=3)),
        autoencoder=VideoAutoencoder.from_vae(tiny_vae(), image_only=True),
        text_encoder=fresh.text_encoder,
        scheduler=sd_scheduler(),
    )
    assert pipe.unet.config.in_channels == 7 and pipe.geometry.latent_channels == 4
    latents = pipe.prepare_latents(2, num_frames=3, height=16, width=16, generator=torch.Generator().manual_seed(0))
    assert latents.shape == (2, 4, 3, 8, 8)


def test_temporal_layers_change_the_video(aligned: VideoLDMPipeline) -> None:
    """image_only really switches the temporal layers off (the 'before alignment' baseline)."""
    noise = _noise(1)
    video = aligned(PROMPT, num_frames=T, num_inference_steps=2, latents=noise).frames
    image = aligned(PROMPT, num_frames=T, num_inference_steps=2, latents=noise, image_only=True).frames
    assert (video - image).abs().max() > 1e-3


def test_text_encoded_once_and_guidance_batched(aligned: VideoLDMPipeline) -> None:
    unet_batches: list[int] = []
    text_calls: list[int] = []
    hooks = [
        aligned.unet.register_forward_pre_hook(lambda _m, args: unet_batches.append(args[0].shape[0])),
        aligned.text_encoder.register_forward_pre_hook(lambda _m, args: text_calls.append(len(args[0]))),
    ]
    try:
        aligned([PROMPT, "a blue square moving up"], num_frames=T, num_inference_steps=5, guidance_scale=5.0)
        assert text_calls == [2, 2]  # prompts and negative prompts, once per call, not per step
        assert unet_batches == [4] * 5  # one UNet call per step on [uncond, cond]
        unet_batches.clear()
        aligned(PROMPT, num_frames=T, num_inference_steps=2, guidance_scale=1.0)
        assert unet_batches == [1, 1]  # no guidance: one branch
    finally:
        for hook in hooks:
            hook.remove()


def test_output_types_and_default_size(aligned: VideoLDMPipeline) -> None:
    noise = _noise(2, frames=2)
    kwargs = {"num_frames": 2, "num_inference_steps": 2, "latents": noise}
    pt = aligned(PROMPT, **kwargs).frames
    np_frames = aligned(PROMPT, output_type="np", **kwargs).frames
    latents = aligned(PROMPT, output_type="latent", **kwargs).frames
    assert pt.shape == (1, 3, 2, 16, 16)  # sample_size 8 x vae factor 2
    assert isinstance(np_frames, np.ndarray) and np_frames.dtype == np.uint8 and np_frames.shape == (1, 2, 16, 16, 3)
    np.testing.assert_array_equal(np_frames[0], ((pt[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0))
    assert latents.shape == (1, 4, 2, 8, 8)
    torch.testing.assert_close(aligned.decode_latents(latents), pt)


def test_size_batch_and_chunked_decoding(aligned: VideoLDMPipeline) -> None:
    g = torch.Generator().manual_seed(3)
    latents = aligned(
        [PROMPT, "a blue square"],
        num_frames=3,
        height=24,
        width=8,
        num_inference_steps=1,
        guidance_scale=1.0,
        num_videos_per_prompt=2,
        generator=g,
        output_type="latent",
    ).frames
    assert latents.shape == (4, 4, 3, 12, 4)
    assert (latents[0] - latents[1]).abs().max() > 1e-3  # copies of one prompt get their own noise
    whole = aligned.decode_latents(latents)
    chunked = aligned.decode_latents(latents, decode_chunk_size=5)
    assert whole.shape == (4, 3, 3, 24, 8)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)


def test_negative_prompt_changes_the_guided_video(aligned: VideoLDMPipeline) -> None:
    noise = _noise(4)
    plain = aligned(PROMPT, num_frames=T, num_inference_steps=2, latents=noise).frames
    negative = aligned(PROMPT, num_frames=T, num_inference_steps=2, latents=noise, negative_prompt="blue").frames
    assert (plain - negative).abs().max() > 1e-4


def test_callback_sees_every_step_and_can_replace_latents(aligned: VideoLDMPipeline) -> None:
    seen: list[int] = []

    def callback(pipe, i, t, kwargs):
        seen.append(i)
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = aligned(PROMPT, num_frames=2, num_inference_steps=3, guidance_scale=1.0, output_type="latent",
                  callback_on_step_end=callback)  # fmt: skip
    assert seen == [0, 1, 2]
    assert torch.equal(out.frames, torch.zeros_like(out.frames))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prompt": "  "}, "prompt must not be empty"),
        ({"prompt": []}, "prompt must be"),
        ({"num_frames": 0}, "num_frames"),
        ({"height": 18}, "height must be a positive multiple of 4"),
        ({"width": 2}, "width must be a positive multiple of 4"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"output_type": "pil"}, "output_type"),
        ({"decode_chunk_size": 0}, "decode_chunk_size"),
        ({"negative_prompt": ["a", "b"]}, "negative_prompt has 2 entries"),
    ],
)
def test_bad_arguments_are_named(aligned: VideoLDMPipeline, kwargs: dict, match: str) -> None:
    kwargs = {"prompt": PROMPT, "num_frames": 2, "num_inference_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        aligned(**kwargs)


def test_components_round_trip(fresh: VideoLDMPipeline) -> None:
    components = fresh.components
    assert components.autoencoder is fresh.autoencoder and components.autoencoder.vae is fresh.vae
    rebuilt = VideoLDMPipeline.from_components(components)
    assert all(getattr(rebuilt, k) is v for k, v in vars(components).items())


def test_from_stable_diffusion_starts_as_the_image_model(sd_folder: Path) -> None:
    pipe = VideoLDMPipeline.from_stable_diffusion(sd_folder, position_encoding="relative")
    assert isinstance(pipe.unet, VideoUNet) and pipe.unet.temporal.config.position_encoding == "relative"
    assert pipe.text_encoder_marker is None and pipe.autoencoder.temporal is None  # the image decoder


def test_same_seed_same_noise_in_any_dtype(sd_folder: Path) -> None:
    pipe = VideoLDMPipeline.from_stable_diffusion(sd_folder)
    full = pipe.prepare_latents(1, num_frames=4, height=16, width=16, generator=torch.Generator().manual_seed(0))
    pipe.to(dtype=torch.float64)  # torch draws float64 (and, on some builds, float16) normals differently
    double = pipe.prepare_latents(1, num_frames=4, height=16, width=16, generator=torch.Generator().manual_seed(0))
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), full, atol=0, rtol=0)
    pipe.to(dtype=torch.bfloat16)  # bf16 weights: the latents (and the scheduler's arithmetic) stay float32
    low = pipe.prepare_latents(1, num_frames=4, height=16, width=16, generator=torch.Generator().manual_seed(0))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, full, atol=0, rtol=0)


def test_drawn_noise_correlates_across_frames_as_asked(sd_folder: Path) -> None:
    pipe = VideoLDMPipeline.from_stable_diffusion(sd_folder)
    draw = lambda a, g: pipe.prepare_latents(2, num_frames=4, height=64, width=64, generator=g, noise_correlation=a)  # noqa: E731
    plain, mixed = draw(0.0, torch.Generator().manual_seed(0)), draw(0.8, torch.Generator().manual_seed(0))
    corr = lambda z: torch.corrcoef(torch.stack([z[:, :, 0].flatten(), z[:, :, 2].flatten()]))[0, 1].item()  # noqa: E731
    assert abs(corr(plain)) < 0.1 and corr(mixed) > 0.7
    # One generator per video: video i's noise is what generator i gives alone, shared part included.
    both = draw(0.8, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    alone = pipe.prepare_latents(
        1, num_frames=4, height=64, width=64, generator=[torch.Generator().manual_seed(2)], noise_correlation=0.8
    )
    torch.testing.assert_close(both[1:], alone, atol=0, rtol=0)


def test_the_temporal_layers_noise_prior_is_the_default(sd_folder: Path) -> None:
    pipe = VideoLDMPipeline.from_stable_diffusion(sd_folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.temporal.register_to_config(noise_correlation=0.8)
    assert pipe.unet.noise_correlation == 0.8

    def run(**kwargs) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        return pipe(PROMPT, num_frames=T, num_inference_steps=1, generator=g, output_type="latent", **kwargs).frames

    torch.testing.assert_close(run(), run(noise_correlation=0.8), atol=0, rtol=0)
    assert not torch.allclose(run(), run(noise_correlation=0.0))
    # The image-only baseline draws frame by frame unless asked otherwise.
    torch.testing.assert_close(run(image_only=True), run(image_only=True, noise_correlation=0.0), atol=0, rtol=0)
