"""Continue a user's video with a folder's prediction model (`videoldm extend`, PAPER.md section 4).

The input's last frames are encoded as the rollout's context: with the stack (a folder with `interpolation/`) the
key frames are 16 source frames apart, so the context is the input's last frame and the frames 16, 32, ... before
it (`context_stride`), the predicted key frames continue at that spacing and are interpolated x16 from the input's
last frame on; without it the context is the last consecutive frames. The decoder gets the input's last latents
as left context, so the first new frames join the input without a seam. The output holds the input's own frames
(not re-decoded) followed by the new ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from videoldm.pipelines.generate import TextToVideo, VideoRequest, keyframe_pipeline, runs_stack, sampling_options
from videoldm.pipelines.rollout import PredictionSpec, decoder_radius, stream_keyframes, stream_stack
from videoldm.pipelines.stack import FACTOR, VideoLDMStackPipeline


def context_stride(stack: bool) -> int:
    """Source frames between the context frames taken from the input: the key-frame spacing with the stack."""
    return FACTOR if stack else 1


def min_input_frames(spec: PredictionSpec, *, stack: bool) -> int:
    """The fewest frames an input needs to give the prediction model its context frames."""
    return context_stride(stack) * (spec.context_frames - 1) + 1


def extend_video(
    pipe: TextToVideo, video: torch.Tensor, request: VideoRequest, spec: PredictionSpec
) -> Iterator[torch.Tensor]:
    """Yield `video` (3, T, H, W) in [-1, 1], then new frames continuing it, as pieces (3, n, H, W) on the CPU,
    `request.num_frames` frames in all (> T). `request.prompt` may be empty: no text guidance then."""
    stack = runs_stack(pipe, request)
    t = video.shape[1]
    need = min_input_frames(spec, stack=stack)
    if t < need:
        raise ValueError(f"the input has {t} frames; the prediction model's context needs at least {need}")
    if request.num_frames <= t:
        raise ValueError(f"num_frames ({request.num_frames}) must be more than the input's {t} frames")
    keyframes = keyframe_pipeline(pipe)
    autoencoder = keyframes.autoencoder
    stride = context_stride(stack)
    indices = [t - 1 - stride * j for j in reversed(range(spec.context_frames))]
    start = autoencoder.encode(video[None, :, indices].to(keyframes.device))
    # the decoder's left context at the seam: as many of the input's last latents as its temporal layers reach
    radius = decoder_radius(autoencoder, image_decoder=request.image_decoder)
    decoder_context = autoencoder.encode(video[None, :, t - min(t, radius) :].to(keyframes.device)) if radius else None
    options = {
        **sampling_options(request, prediction=True),
        "num_frames": request.num_frames - t,
        "spec": spec,
        "start": start,
        "decoder_context": decoder_context,
    }
    if not request.prompt.strip():
        options["guidance_scale"] = 1.0  # no prompt: nothing to guide towards
    yield video
    if stack:
        assert isinstance(pipe, VideoLDMStackPipeline)
        pipe.set_progress_bar_config(unit="step")
        pieces = stream_stack(pipe, request.prompt, **options)
    else:
        keyframes.set_progress_bar_config(desc="generating", unit="step")
        pieces = stream_keyframes(keyframes, request.prompt, **options)
    for piece in pieces:
        yield piece[0].cpu()
