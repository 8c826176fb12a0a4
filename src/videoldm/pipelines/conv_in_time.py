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

from videoldm.diffusion.windows import WindowPlan, blend_windows
from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline


def conv_in_time_latents(
    pipe: VideoLDMPipeline,
    prompt: str | list[str],
    *,
    num_frames: int,
    window: int,
    overlap: int | None = None,
    **options: Any,
) -> torch.Tensor:
    """`num_frames` latents (B, c, T, h, w) sampled by `pipe` as one clip, the model run on overlapping windows of
    `window` frames (`overlap` shared; default half a window) at every step. One window when num_frames <= window:
    the pipeline's own clip. `options`: the pipeline's (`num_inference_steps`, `guidance_scale`, `generator`, ...).
    """
    overlap = window // 2 if overlap is None else overlap
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window={window}), got {overlap}")
    denoise = pipe._denoise
    if num_frames > window:
        # The layers' noise prior (`VideoUNet.noise_correlation`) was chosen on one clip; shared by a whole long
        # video it pins every frame to one start (1,000 frames: direction right in 57% of windows, i.i.d.: 76%).
        options = {"noise_correlation": 0.0, **options}

    def windowed(sample: torch.Tensor, timestep: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        plan = WindowPlan.of(*sample.shape[2:], chunk_size=window, chunk_overlap=overlap)

        def run(windows: list[tuple[slice, slice, slice]]) -> torch.Tensor:
            (frames,) = windows  # one window per call (blend_windows' default group)
            return denoise(sample[:, :, frames[0]], timestep, **kwargs)

        return blend_windows(run, plan, batch=sample.shape[0], channels=sample.shape[1], like=sample)

    # The pipeline's one sampling call, its model closure windowed: an instance attribute shadows the method for
    # this call only (the text-to-video model takes no context, so a window needs only its frames of the sample).
    pipe._denoise = windowed
    try:
        return pipe(prompt, num_frames=num_frames, output_type="latent", **options).frames
    finally:
        del pipe._denoise
