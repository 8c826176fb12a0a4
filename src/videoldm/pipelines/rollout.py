"""Long videos by prediction (PAPER.md section 4): the first clip from the key-frame model, then each next clip
predicted from the last frames of the one before, in latent space, and -- with the stack -- interpolated, decoded
and handed out piece by piece, so memory does not grow with the video's length.

The prediction model is the folder's `temporal/` itself, trained by the `prediction` stage with a context
encoder: given no context (S = 0) it is the text-to-video key-frame model, given the first S frames of a clip as
context c = (mask * z, mask) it continues them. `prediction.json` says the clip it was trained on (`num_frames`)
and how many frames each clip is continued from (`context_frames`, 2). Context guidance,
f = f(z) + s (f(z; c) - f(z)), composes with text guidance (`diffusion.guidance.context_guider`).

`rollout_latents` yields the key frames of a rollout clip by clip. `stream_stack` makes a long video through the
whole stack: key frames (one clip, or a rollout) -> x16 interpolation in pieces of `INTERPOLATION_GAPS` key-frame
gaps (pieces share their boundary key frame, which the interpolation pipeline returns exactly) -> a
`StreamingDecoder` (each frame as one decode of the whole clip would give it) -> pieces of (B, 3, n, H, W)
frames, written by `io.VideoWriter` as they come. The key frames, the interpolation and the decoder each hold a
bounded number of frames.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from videoldm import layout
from videoldm.autoencoder import VideoAutoencoder
from videoldm.autoencoder.chunked_decode import DEFAULT_DECODE_CHUNK, StreamingDecoder, default_overlap
from videoldm.defaults import DEFAULT_STEPS
from videoldm.diffusion.guidance import Conditioning, Guider, context_guider
from videoldm.diffusion.masks import context_from_mask
from videoldm.diffusion.noise import correlate_frames, sampling_correlation
from videoldm.diffusion.sampling import Generator, GivenFrames, Strength, sample_latents
from videoldm.pipelines.conv_in_time import conv_in_time_latents
from videoldm.pipelines.pipeline_videoldm import VideoLDMPipeline
from videoldm.pipelines.stack import (
    DEFAULT_INTERPOLATION_STEPS,
    DEFAULT_KEYFRAMES,
    FACTOR,
    MAX_KEYFRAMES,
    VideoLDMStackPipeline,
    keyframes_for,
    stack_frames,
)

DEFAULT_CONTEXT_GUIDANCE = 1.0  # s of the rollout's context guidance: 1.5 measured worse (docs/long-videos.md)
INTERPOLATION_GAPS = 4  # key-frame gaps interpolated at once in a stream: 5 key frames -> 65 frames
MAX_FRAMES = 10_000  # a stated guard (about an hour on a 2-core CPU), not a limit of the method


@dataclass(frozen=True)
class PredictionSpec:
    """`prediction.json` of a folder whose `temporal/` layers also predict: the clip they were trained on
    (`num_frames` frames, `frame_stride` source frames apart) and the frames each clip is continued from."""

    num_frames: int
    frame_stride: int
    context_frames: int

    @classmethod
    def read(cls, folder: str | Path) -> PredictionSpec | None:
        """The folder's spec, or None when it has no prediction model; a ValueError naming the file when it is
        not a valid one."""
        path = Path(folder) / layout.PREDICTION
        if not path.is_file():
            return None
        try:
            spec = cls(**{k: int(v) for k, v in json.loads(path.read_text()).items()})
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: expected {{num_frames, frame_stride, context_frames}} integers: {err}") from err
        if not 1 <= spec.context_frames < spec.num_frames:
            raise ValueError(f"{path}: context_frames must be in [1, num_frames), got {spec}")
        return spec


def predict_clip(
    pipe: VideoLDMPipeline,
    given: torch.Tensor,
    *,
    cond: Conditioning,
    guider: Guider,
    num_frames: int,
    num_inference_steps: int,
    generator: Generator = None,
) -> torch.Tensor:
    """One clip continued from its first frames: given (B, c, S, h, w) clean latents -> (B, c, T, h, w) whose
    first S frames are `given` exactly. The given frames are held at each step's noise level (as the prediction
    stage noised them in training) and enter as the context c = (mask * z, mask)."""
    b, c, s, h, w = given.shape
    given = given.to(pipe.device, torch.float32)
    clean = torch.cat([given, given.new_zeros((b, c, num_frames - s, h, w))], dim=2)
    mask = torch.arange(num_frames) < s
    cond.context = context_from_mask(clean, mask).to(pipe.dtype)
    pipe.scheduler.set_timesteps(num_inference_steps, device=pipe.device)
    noise = randn_tensor(clean.shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    noise = correlate_frames(noise, sampling_correlation(pipe.unet), generator=generator)
    noise = noise.to(pipe.device)
    held = GivenFrames(pipe.scheduler, clean, mask, noise)
    latents = held.at(noise * pipe.scheduler.init_noise_sigma, 0)
    with pipe.progress_bar(total=num_inference_steps) as bar:
        latents = sample_latents(
            functools.partial(pipe._denoise, image_only=False),
            pipe.scheduler,
            latents,
            cond=cond,
            guider=guider,
            generator=generator,
            callback=held.callback,
            progress=bar,
        )
    return held.at(latents, len(pipe.scheduler.timesteps))


def rollout_latents(
    pipe: VideoLDMPipeline,
    prompt: str | list[str],
    *,
    num_frames: int,
    spec: PredictionSpec,
    start: torch.Tensor | None = None,
    height: int | None = None,
    width: int | None = None,
    num_inference_steps: int = DEFAULT_STEPS,
    guidance_scale: float = 7.5,
    context_guidance_scale: float = DEFAULT_CONTEXT_GUIDANCE,
    negative_prompt: str | list[str] | None = None,
    generator: Generator = None,
) -> Iterator[torch.Tensor]:
    """Yield a rollout's latents (B, c, n, h, w) in order, `num_frames` new frames in all.

    Without `start`, the first piece is a clip of the text-to-video model (S = 0, `spec.num_frames` frames or
    fewer); every later piece is a predicted clip's new frames, continued from the last `spec.context_frames`
    frames made so far (latents, never decoded and re-encoded: that drifts colours). `start` (B, c, S', h, w):
    clean latents to continue instead (`videoldm extend`; S' >= context_frames); they are not yielded again.
    """
    if start is None:
        size = {"height": height, "width": width}
        first = pipe(
            prompt,
            num_frames=min(spec.num_frames, num_frames),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            negative_prompt=negative_prompt,
            generator=generator,
            output_type="latent",
            **size,
        ).frames
        yield first
        made, last = first.shape[2], first[:, :, -spec.context_frames :]
    else:
        if start.shape[2] < spec.context_frames:
            raise ValueError(f"start must hold >= {spec.context_frames} frames, got {start.shape[2]}")
        made, last = 0, start[:, :, -spec.context_frames :]
    guider = context_guider(context_guidance_scale, guidance_scale)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    cond = pipe.encode_prompt(
        prompts * (last.shape[0] // len(prompts)),
        negative_prompt=negative_prompt,
        do_classifier_free_guidance=guider.num_branches > 1,
    )
    while made < num_frames:
        clip = predict_clip(
            pipe,
            last,
            cond=cond,
            guider=guider,
            num_frames=spec.num_frames,
            num_inference_steps=num_inference_steps,
            generator=generator,
        )
        new = clip[:, :, spec.context_frames :][:, :, : num_frames - made]
        yield new
        made += new.shape[2]
        last = clip[:, :, -spec.context_frames :]


def stream_stack(
    stack: VideoLDMStackPipeline,
    prompt: str,
    *,
    num_frames: int,
    spec: PredictionSpec | None,
    start: torch.Tensor | None = None,
    decoder_context: torch.Tensor | None = None,
    context_guidance_scale: float = DEFAULT_CONTEXT_GUIDANCE,
    interpolation_steps: int = DEFAULT_INTERPOLATION_STEPS,
    interpolation_strength: Strength = None,
    interpolation_guidance_scale: float = 1.0,
    interpolation_context_guidance_scale: float = 1.0,
    generator: Generator = None,
    image_decoder: bool = False,
    **options: Any,
) -> Iterator[torch.Tensor]:
    """Yield the stack's video for one prompt as decoded pieces (1, 3, n, H, W) in [-1, 1], `num_frames` in all.

    K = `keyframes_for(num_frames)` key frames: one clip of the key-frame model when K <= the prediction clip
    (without a prediction model: up to `stack.MAX_KEYFRAMES`, as `VideoLDMStackPipeline`), else a rollout (up to
    `MAX_FRAMES` output frames). Key frames are interpolated x16 in pieces of `INTERPOLATION_GAPS` gaps and
    decoded by a `StreamingDecoder`; the frames past `num_frames` are dropped.

    `start` (1, c, S, h, w): key-frame latents (16 frames apart) to continue instead (`videoldm extend`): the
    pieces then hold the `num_frames` frames after start's last one, and `decoder_context` (1, c, n, h, w), the
    full-rate latents up to that frame, gives the decoder its left context at the seam. `options`: the key frames'
    sampling options (`height`, `width`, `num_inference_steps`, `guidance_scale`, `negative_prompt`).
    """
    check_length(num_frames, spec, stack=True, conv_in_time=options.get("conv_in_time", False))
    # new key frames after start's last, or all of them
    num_keyframes = keyframes_for(num_frames, max_keyframes=None) if start is None else -(-num_frames // FACTOR)
    keyframes = _keyframes(
        stack.keyframes,
        prompt,
        num_frames=num_keyframes,
        spec=spec,
        start=start,
        context_guidance_scale=context_guidance_scale,
        generator=generator,
        **options,
    )
    interpolate = functools.partial(
        stack.interpolation,
        factor=FACTOR,
        prompt=[prompt],
        num_inference_steps=interpolation_steps,
        strength=interpolation_strength,
        guidance_scale=interpolation_guidance_scale,
        context_guidance_scale=interpolation_context_guidance_scale,
        generator=generator,
        output_type="latent",
    )

    def interpolated() -> Iterator[torch.Tensor]:
        # Pieces of key frames share their boundary key frame, which ends one piece and is dropped from the next.
        pending = None if start is None else start[:, :, -1:].to(stack.device, torch.float32)
        drop = 0 if start is None else 1
        for new in keyframes:
            pending = new if pending is None else torch.cat([pending, new], dim=2)
            while pending.shape[2] > INTERPOLATION_GAPS:
                yield interpolate(latents=pending[:, :, : INTERPOLATION_GAPS + 1]).frames[:, :, drop:]
                pending, drop = pending[:, :, INTERPOLATION_GAPS:], 1
        if pending is not None and pending.shape[2] > 1:
            yield interpolate(latents=pending).frames[:, :, drop:]

    yield from decode_stream(
        stack.keyframes, interpolated(), num_frames=num_frames, context=decoder_context, image_decoder=image_decoder
    )


def stream_keyframes(
    pipe: VideoLDMPipeline,
    prompt: str,
    *,
    num_frames: int,
    spec: PredictionSpec | None,
    start: torch.Tensor | None = None,
    decoder_context: torch.Tensor | None = None,
    image_decoder: bool = False,
    **options: Any,
) -> Iterator[torch.Tensor]:
    """The key-frame model's video without interpolation, as decoded pieces (1, 3, n, H, W): one clip, or a
    rollout when `num_frames` is longer than the prediction clip (or `start` is given: see `stream_stack`, with
    consecutive frames). `options`: those of `rollout_latents`."""
    check_length(num_frames, spec, stack=False, conv_in_time=options.get("conv_in_time", False))
    latents = _keyframes(pipe, prompt, num_frames=num_frames, spec=spec, start=start, **options)
    yield from decode_stream(pipe, latents, num_frames=num_frames, context=decoder_context, image_decoder=image_decoder)


def check_length(num_frames: int, spec: PredictionSpec | None, *, stack: bool, conv_in_time: bool = False) -> None:
    """A ValueError when `num_frames` output frames are more than one clip of a folder without a prediction model
    (the stack: `MAX_KEYFRAMES` key frames; the key-frame model alone: any count, as one clip) or than
    `MAX_FRAMES`."""
    if not isinstance(num_frames, int) or not 1 <= num_frames <= MAX_FRAMES:
        raise ValueError(f"num_frames must be an integer in [1, {MAX_FRAMES}], got {num_frames!r}")
    if stack and spec is None and not conv_in_time and num_frames > stack_frames(MAX_KEYFRAMES):
        raise ValueError(
            f"num_frames {num_frames}: without a prediction model ({layout.PREDICTION}) the stack makes at most "
            f"{stack_frames(MAX_KEYFRAMES)} frames ({MAX_KEYFRAMES} key frames in one clip)"
        )


# A streamed decode call holds its chunk and the context on both sides, sized so that a call is no larger than the
# one-clip path's chunks (DEFAULT_DECODE_CHUNK): the rollout's peak memory is then the one-clip command's.
STREAM_CONTEXT = default_overlap(DEFAULT_DECODE_CHUNK)
STREAM_CHUNK = DEFAULT_DECODE_CHUNK - 2 * STREAM_CONTEXT


def decoder_radius(autoencoder: VideoAutoencoder, *, image_decoder: bool = False) -> int:
    """Latent frames of context a streamed decode takes on each side: the temporal decoder's reach
    (`temporal_radius()`) up to `STREAM_CONTEXT`, 0 for the image decoder, `STREAM_CONTEXT` for a clip-norm decoder
    (which reaches every frame, so no context is exact). The cap: `temporal_radius()` sums the layers' reaches, an
    upper bound -- 17 for the shipped decoder, whose frames decoded with 8 on each side equal its whole-clip decode
    within 0.001 of an 8-bit level (docs/long-videos.md) -- and 17 made each call 66 frames, twice the one-clip's."""
    if image_decoder or autoencoder.temporal is None:
        return 0
    radius = autoencoder.temporal.temporal_radius()
    return STREAM_CONTEXT if radius is None else min(radius, STREAM_CONTEXT)


def decode_stream(
    pipe: VideoLDMPipeline,
    latents: Iterator[torch.Tensor],
    *,
    num_frames: int,
    context: torch.Tensor | None = None,
    image_decoder: bool = False,
) -> Iterator[torch.Tensor]:
    """Latent pieces (B, c, n, h, w) in order -> decoded pieces (B, 3, n', H, W) in [-1, 1], the first
    `num_frames` frames in all, through a `StreamingDecoder` on the pipeline's autoencoder. `context`
    (B, c, m, h, w): latents before the first piece, decoded only as the decoder's left context (not yielded)."""
    image_decoder = image_decoder or pipe.autoencoder.temporal is None
    decoder = StreamingDecoder(
        lambda z: pipe.decode_latents(z, image_decoder=image_decoder),
        radius=decoder_radius(pipe.autoencoder, image_decoder=image_decoder),
        chunk_size=STREAM_CHUNK,  # frames kept per decode in a stream
    )
    skip = 0 if context is None else context.shape[2]
    written = 0

    def trimmed(pieces: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        nonlocal skip, written
        for piece in pieces:
            dropped = min(skip, piece.shape[2])
            piece, skip = piece[:, :, dropped : dropped + num_frames - written], skip - dropped
            if piece.shape[2]:
                written += piece.shape[2]
                yield piece

    if context is not None:  # decoded for the seam's sake, then dropped by `trimmed`
        yield from trimmed(decoder.push(context.to(pipe.device, torch.float32)))
    for piece in latents:
        yield from trimmed(decoder.push(piece))
    yield from trimmed(decoder.flush())


def _keyframes(
    pipe: VideoLDMPipeline,
    prompt: str,
    *,
    num_frames: int,
    spec: PredictionSpec | None,
    start: torch.Tensor | None = None,
    context_guidance_scale: float = DEFAULT_CONTEXT_GUIDANCE,
    conv_in_time: bool = False,
    **options: Any,
) -> Iterator[torch.Tensor]:
    """`num_frames` key-frame latents as pieces: one clip (no prediction model, or one clip is enough), one clip
    sampled convolutionally in time (`conv_in_time`: windows of the trained clip length, `pipelines.conv_in_time`)
    or a rollout (from `start` when given)."""
    if conv_in_time and start is None:
        window = spec.num_frames if spec is not None else DEFAULT_KEYFRAMES
        yield conv_in_time_latents(pipe, prompt, num_frames=num_frames, window=window, **options)
        return
    if start is None and (spec is None or num_frames <= spec.num_frames):
        yield pipe(prompt, num_frames=num_frames, output_type="latent", **options).frames
        return
    if spec is None:
        raise ValueError(f"continuing a video needs a prediction model ({layout.PREDICTION})")
    yield from rollout_latents(
        pipe,
        prompt,
        num_frames=num_frames,
        spec=spec,
        start=start,
        context_guidance_scale=context_guidance_scale,
        **options,
    )
