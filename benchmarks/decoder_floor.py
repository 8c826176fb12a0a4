"""How much of a decoder's flicker can a temporal decoder remove? The floor of the flicker metric on panned texture.

flicker = mean |diff(x̂) - diff(x)| = mean |e[t+1] - e[t]| with e = x̂ - x, the per-frame error. A temporal decoder
that keeps the image decoder's per-frame error but makes it *consistent* -- the error moves with the camera, as the
texture does -- still flickers by mean |S(e[t]) - e[t]|, S the camera's sub-pixel shift: the error's own motion.
That is the floor for a decoder no sharper than the image decoder; below it, the decoder must lower the error
itself (recover detail the latents do not hold, from the frames around). On still backgrounds the floor is 0
there: the part of the flicker at still pixels is what consistency alone removes.

Renders held-out clips with a known pan (`decoder_quality.held_out_clips`), decodes them with the image
decoder (and the temporal decoder when the folder has one) and reports, on background pixels 8 px or more from the
border (the shift is least exact there):
- flicker: the metric, there;
- moving-error floor: mean |S(e[t]) - e[t]|;
- floor / flicker: the best ratio a temporal decoder as sharp as the image decoder could reach on that footage;
- truth shift residual: mean |S(x[t]) - x[t+1]| of the true frames (how exact S is on the crop: the precision).

Run: .venv/bin/python -m benchmarks.decoder_floor --model DIR [--num-videos 16] [--texture pan]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.decoder_quality import held_out_clips
from videoldm.autoencoder import VideoAutoencoder

MARGIN = 8  # px left out at each border
OBJECT_THRESHOLD = 0.02  # a pixel is background where the true frames follow the camera within this ([0, 1] scale)


def shift(frames: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """(..., H, W) -> the view moved by (dx, dy) px: out(x, y) = frames(x + dx, y + dy), by a Fourier phase shift."""
    h, w = frames.shape[-2:]
    # Mirror-extend to twice the size first: the extended frame is periodic without jumps at its edges, so the
    # phase shift rings far less than on the crop itself (whose content is not periodic in h, w).
    frames = torch.cat([frames, frames.flip(-1)], dim=-1)
    frames = torch.cat([frames, frames.flip(-2)], dim=-2)
    fy = torch.fft.fftfreq(2 * h, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(2 * w, dtype=torch.float64)[None]
    phase = torch.exp(2j * torch.pi * (fx * dx + fy * dy))
    return torch.fft.ifft2(torch.fft.fft2(frames.double()) * phase).real[..., :h, :w]


@torch.no_grad()
def floor_scores(
    video_ae: VideoAutoencoder, *, num_videos: int, texture: str, frames: int = 16, size: int = 64
) -> dict[str, dict]:
    """The flicker, the moving-error floor and the mean abs error of each decoder on background pixels."""
    decoders = ("image",) if video_ae.temporal is None else ("image", "temporal")
    sums = {name: np.zeros(3) for name in decoders}
    truth_residual = []
    inner = (slice(None), slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    for clip in held_out_clips(num_videos, frames=frames, size=size, texture=texture):
        video = clip.render()[None]
        truth = ((video[0] + 1) / 2).double()  # (3, T, H, W), [0, 1]
        moved_truth = shift(truth[:, :-1], *clip.pan)
        residual = (moved_truth - truth[:, 1:]).abs()
        background = (residual.amax(dim=0, keepdim=True) <= OBJECT_THRESHOLD).expand_as(residual)[inner]
        truth_residual.append(residual[inner][background].mean().item())
        latents = video_ae.encode(video)
        for name in decoders:
            decoded = video_ae.decode(latents, image_decoder=name == "image").clamp(-1, 1)
            error = ((decoded[0] + 1) / 2).double() - truth
            flicker = (error[:, 1:] - error[:, :-1]).abs()[inner][background].mean().item()
            floor = (shift(error[:, :-1], *clip.pan) - error[:, :-1]).abs()[inner][background].mean().item()
            sums[name] += (flicker, floor, error.abs()[inner].mean().item())
    results = {}
    for name, total in sums.items():
        flicker, floor, error = total / num_videos
        results[name] = {"flicker": flicker, "floor": floor, "floor_over_flicker": floor / flicker, "error": error}
    return {"decoders": results, "truth_shift_residual": float(np.mean(truth_residual))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder with vae/ (temporal_decoder/)")
    parser.add_argument("--num-videos", type=int, default=16)
    parser.add_argument("--texture", choices=["static", "pan"], default="pan")
    args = parser.parse_args(argv)
    scores = floor_scores(VideoAutoencoder.from_model_dir(args.model), num_videos=args.num_videos, texture=args.texture)
    print(f"{args.num_videos} held-out clips, texture {args.texture}, background pixels >= {MARGIN} px from the border")
    print("| decoder | flicker | moving-error floor | floor / flicker | mean abs error |\n|---|---|---|---|---|")
    for name, s in scores["decoders"].items():
        print(f"| {name} | {s['flicker']:.5f} | {s['floor']:.5f} | {s['floor_over_flicker']:.2f} | {s['error']:.4f} |")
    print(f"truth shift residual (precision of the shift): {scores['truth_shift_residual']:.5f}")


if __name__ == "__main__":
    main()
