"""Conv-in-time (PAPER.md section 7): the key-frame model run on any number of frames at once, with a bounded reach
in time.

The paper gets there with temporal layers that are local by construction (relative positions, a bounded attention
window, per-frame norms: `TemporalAdapter(position_encoding="relative", max_attention_distance=..., temporal_norm=
"frame")`), so one pass over a long clip is the model applied convolutionally. The shipped layers use absolute
positions and clip norms, fitted to the 8 frames they were trained on; run on 64 frames in one pass, they see
positions they never saw. So here the model is applied convolutionally by the sampler instead: at every
denoising step it runs on overlapping windows of the trained length and the windows' predictions are blended
(`diffusion.windows`, the machinery of the interpolation and upsampling pipelines). Every frame is denoised
together with its neighbours at every step -- one video, no seams, no context frames -- and the UNet's memory
is one window's. For a model trained with local layers the same call is exact where `WindowPlan.exact_frames` says
so. Compared with prediction in `benchmarks/long_video.py`.
"""

from __future__ import annotations

from typing import Any

import torch

from videoldm.diffusion.guidance import text_guidance
from videoldm.diffusion.sampling import Generator, sample_latents
from videoldm.diffusion.windows import WindowPlan, blend_windows
from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline


def conv_in_time_latents(
    pipe: VideoLDMPipeline,
    prompt: str | list[str],
    *,
    num_frames: int,
    window: int,
    overlap: int | None = None,
    height: int | None = None,
    width: int | None = None,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    negative_prompt: str | list[str] | None = None,
    generator: Generator = None,
    **_: Any,
) -> torch.Tensor:
    """`num_frames` latents (B, c, T, h, w) sampled as one clip, the model run on overlapping windows of `window`
    frames (`overlap` shared; default half a window) at every step. One window when num_frames <= window: the
    pipeline's own clip."""
    overlap = window // 2 if overlap is None else overlap
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window={window}), got {overlap}")
    geometry = pipe.geometry
    height = geometry.default_size if height is None else height
    width = geometry.default_size if width is None else width
    pipe.check_inputs(
        prompt,
        num_frames=num_frames,
        height=height,
        width=width,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        negative_prompt=negative_prompt,
        output_type="latent",
        decode_chunk_size=None,
        num_videos_per_prompt=1,
    )
    guider = text_guidance(guidance_scale)
    cond = pipe.encode_prompt(
        prompt, negative_prompt=negative_prompt, do_classifier_free_guidance=guider.num_branches > 1
    )
    pipe.scheduler.set_timesteps(num_inference_steps, device=pipe.device)
    latents = pipe.prepare_latents(
        cond.text.shape[0], num_frames=num_frames, height=height, width=width, generator=generator
    )

    def model(sample: torch.Tensor, timestep: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        plan = WindowPlan.of(*sample.shape[2:], chunk_size=window, chunk_overlap=overlap)
        b, c = sample.shape[:2]

        def run(frames: tuple[slice, slice, slice]) -> torch.Tensor:
            return pipe._denoise(sample[:, :, frames[0]], timestep, image_only=False, **kwargs)

        return blend_windows(run, plan, batch=b, channels=c, like=sample)

    with pipe.progress_bar(total=num_inference_steps) as bar:
        return sample_latents(
            model, pipe.scheduler, latents, cond=cond, guider=guider, generator=generator, progress=bar
        )
