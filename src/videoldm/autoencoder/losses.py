"""The temporal decoder's training losses: reconstruction (L1, + LPIPS with local weights) and a video GAN.

As the LDM autoencoder's `LPIPSWithDiscriminator`, with the image discriminator replaced by a 3D-conv
video discriminator (PAPER.md section 3). The generator loss is

    rec + d_weight * g,     rec = L1 + lpips_weight * LPIPS (per frame) + flicker_weight * L1(diffs),
                            g = -mean(D(reconstruction)),

where L1(diffs) compares the frame differences x[t+1] - x[t] of the reconstruction and the video (the flicker
metric, `metrics.temporal_flicker`: per-frame L1 does not ask for errors that agree from frame to frame), and
the adaptive weight d_weight = disc_weight * |grad_last rec| / (|grad_last g| + 1e-4) balances the two
gradients at the decoder's last layer, and the adversarial term is off before `disc_start_step`.

The trainer makes two optimisers: one over `VideoAutoencoder.temporal_parameters()` for `generator_loss`,
one over `DecoderLoss.discriminator.parameters()` for `discriminator_loss`. `generator_loss` leaves
gradients on the discriminator's parameters: zero them before the discriminator's own backward.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from videoldm.autoencoder.discriminator import VideoDiscriminator, hinge_d_loss, hinge_g_loss
from videoldm.autoencoder.lpips import LPIPS
from videoldm.temporal.layers import video_to_frames

MAX_ADAPTIVE_WEIGHT = 1e4


def adaptive_weight(
    rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor, *, disc_weight: float
) -> torch.Tensor:
    """disc_weight * |d rec / d last_layer| / (|d g / d last_layer| + 1e-4), clamped to [0, 1e4], detached."""
    rec_grads = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grads.norm() / (g_grads.norm() + 1e-4)
    return weight.clamp(0.0, MAX_ADAPTIVE_WEIGHT).detach() * disc_weight


class DecoderLoss(nn.Module):
    """Losses for the temporal decoder; owns the video discriminator.

    Args:
        discriminator: the video discriminator (default: `VideoDiscriminator()`).
        disc_weight: scale of the adaptive weight of the adversarial term.
        disc_start_step: the adversarial term (and the discriminator's training) starts at this step.
        lpips_weights: a local safetensors file for LPIPS (see `lpips.py`); None: L1 only.
        lpips_weight: weight of LPIPS in the reconstruction loss.
        flicker_weight: weight of the L1 between the reconstruction's and the video's frame differences.
    """

    def __init__(
        self,
        *,
        discriminator: VideoDiscriminator | None = None,
        disc_weight: float = 0.5,
        disc_start_step: int = 0,
        lpips_weights: str | Path | None = None,
        lpips_weight: float = 1.0,
        flicker_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if min(disc_weight, disc_start_step, lpips_weight, flicker_weight) < 0:
            raise ValueError(
                f"disc_weight, disc_start_step, lpips_weight and flicker_weight must be >= 0; got {disc_weight}, "
                f"{disc_start_step}, {lpips_weight}, {flicker_weight}"
            )
        self.discriminator = discriminator if discriminator is not None else VideoDiscriminator()
        self.disc_weight = disc_weight
        self.disc_start_step = disc_start_step
        self.lpips = LPIPS.from_file(lpips_weights) if lpips_weights is not None else None
        self.lpips_weight = lpips_weight
        self.flicker_weight = flicker_weight

    def discriminator_active(self, step: int) -> bool:
        """Whether the adversarial term is on at `step` (the trainer may skip the discriminator step if not)."""
        return step >= self.disc_start_step

    def reconstruction_loss(self, video: torch.Tensor, reconstruction: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"l1", "lpips" (if weights were given), "flicker" (if weighted), "rec"} for videos (B, 3, T, H, W)."""
        losses = {"l1": F.l1_loss(reconstruction.float(), video.float())}
        rec = losses["l1"]
        if self.lpips is not None:
            lpips = self.lpips(video_to_frames(reconstruction.float()), video_to_frames(video.float())).mean()
            losses["lpips"] = lpips
            rec = rec + self.lpips_weight * lpips
        if self.flicker_weight > 0:
            losses["flicker"] = flicker_l1(video, reconstruction)
            rec = rec + self.flicker_weight * losses["flicker"]
        losses["rec"] = rec
        return losses

    def generator_loss(
        self, video: torch.Tensor, reconstruction: torch.Tensor, *, step: int, last_layer: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The decoder's loss for videos (B, 3, T, H, W) in [-1, 1] and their reconstructions.

        last_layer: `VideoAutoencoder.last_layer` (the weight the adaptive weight is measured on).
        Returns (loss, logs) with logs of floats: loss/l1, [loss/lpips], loss/rec, loss/g, disc/weight, loss/total.
        Without gradients (validation) the adversarial weight is 0, as in the LDM autoencoder.
        """
        _check_pair(video, reconstruction)
        losses = self.reconstruction_loss(video, reconstruction)
        loss = losses["rec"]
        logs = {f"loss/{k}": v.item() for k, v in losses.items()}
        if self.discriminator_active(step):
            g_loss = hinge_g_loss(self.discriminator(reconstruction))
            if torch.is_grad_enabled() and last_layer.requires_grad:
                weight = adaptive_weight(loss, g_loss, last_layer, disc_weight=self.disc_weight)
            else:
                weight = torch.zeros((), device=loss.device)
            loss = loss + weight * g_loss
            logs |= {"loss/g": g_loss.item(), "disc/weight": weight.item()}
        logs["loss/total"] = loss.item()
        return loss, logs

    def discriminator_loss(
        self, video: torch.Tensor, reconstruction: torch.Tensor, *, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss of the discriminator on real videos and (detached) reconstructions (B, 3, T, H, W).

        Before `disc_start_step` the loss is a zero that is still connected to every discriminator parameter
        (so a backward gives zero gradients and nothing breaks); skip the optimiser step then, since weight
        decay would still move the weights. Returns (loss, logs): loss/disc, logits/real, logits/fake.
        """
        _check_pair(video, reconstruction)
        if not self.discriminator_active(step):
            zero = sum(p.sum() for p in self.discriminator.parameters()) * 0.0
            return zero, {"loss/disc": 0.0}
        logits_real = self.discriminator(video.detach())
        logits_fake = self.discriminator(reconstruction.detach())
        loss = hinge_d_loss(logits_real, logits_fake)
        logs = {
            "loss/disc": loss.item(),
            "logits/real": logits_real.mean().item(),
            "logits/fake": logits_fake.mean().item(),
        }
        return loss, logs


def flicker_l1(video: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean |(r[t+1] - r[t]) - (x[t+1] - x[t])| over (B, C, T, H, W) clips: the flicker metric, as a loss."""
    return F.l1_loss(reconstruction.float().diff(dim=2), video.float().diff(dim=2))


def _check_pair(video: torch.Tensor, reconstruction: torch.Tensor) -> None:
    if video.ndim != 5 or video.shape != reconstruction.shape:
        raise ValueError(
            f"video and reconstruction must both be (B, 3, T, H, W) of the same shape; got "
            f"{tuple(video.shape)} and {tuple(reconstruction.shape)}"
        )
