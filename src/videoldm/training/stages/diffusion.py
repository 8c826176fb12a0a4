"""What every diffusion stage shares: the noise schedule, the diffusion loss and the model folder's conditioning.

The noise schedule is built here and nowhere else: `noise_scheduler_config` gives Stable Diffusion's scaled
linear betas; the DDPM scheduler that noises training batches and the DDIM scheduler that the exported
`scheduler/` holds (and that training samples use) are both made from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from videoldm import layout
from videoldm.diffusion.noise import correlate_frames
from videoldm.loading import write_builtin_marker
from videoldm.text import MINILM
from videoldm.training.config import ConfigError, RunConfig
from videoldm.training.stages.base import BUILTIN_PREFIX, Stage
from videoldm.video_unet import VideoUNet


def noise_scheduler_config(config: RunConfig) -> dict[str, Any]:
    """Stable Diffusion's noise schedule (scaled linear betas), as a diffusers scheduler config."""
    return {
        "num_train_timesteps": config.model.num_train_timesteps,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": config.model.prediction_type,
        "clip_sample": False,
        "steps_offset": 1,
    }


class DiffusionLoss(nn.Module):
    """The image LDM objective for any latent rank: (B, c, h, w) frames or (B, c, T, h, w) clips.

    One diffusion time per sample -- per clip for videos, never per frame (PAPER.md sections 2 and 9).
    `weighting="edm"` weights each sample's loss so that it equals the v-objective (x0 error x (1 + SNR)):
    eps-MSE / alpha_bar(t) for an eps model, the plain MSE for a v model (see `TrainConfig.loss_weighting`).
    """

    def __init__(self, model: nn.Module, scheduler: DDPMScheduler, *, weighting: str = "epsilon") -> None:
        super().__init__()
        if weighting not in ("epsilon", "edm"):
            raise ValueError(f"weighting must be 'epsilon' or 'edm', got {weighting!r}")
        self.model = model
        self.scheduler = scheduler
        self.weighting = weighting

    def forward(
        self,
        latents: torch.Tensor,
        text: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        loss_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """`loss_mask` (B, T): only the frames where it is 1 count (each clip's loss is the mean over them): the
        new frames of an interpolation clip. Other keyword arguments go to the model."""
        if loss_mask is None and not self._edm_weighted:
            return F.mse_loss(*self._prediction_and_target(latents, text, noise, timesteps, **kwargs))
        return self.per_sample(latents, text, noise, timesteps, loss_mask, **kwargs).mean()

    def per_sample(
        self,
        latents: torch.Tensor,
        text: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        loss_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Each sample's (weighted) loss, (B,): what `forward` averages; a caller that weights parts of the
        batch differently (the dreambooth stage's prior preservation) averages it itself."""
        pred, target = self._prediction_and_target(latents, text, noise, timesteps, **kwargs)
        per_sample = _masked_mean((pred - target).pow(2), loss_mask)
        if not self._edm_weighted:
            return per_sample
        alpha_bar = self.scheduler.alphas_cumprod.to(per_sample.device)[timesteps]
        return per_sample / alpha_bar

    @property
    def _edm_weighted(self) -> bool:
        # A v model's plain MSE is already the EDM weighting.
        return self.weighting == "edm" and self.scheduler.config.prediction_type != "v_prediction"

    def _prediction_and_target(
        self, latents: torch.Tensor, text: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's prediction on the noised latents and its target, both float32."""
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        pred = self.model(noisy, timesteps, encoder_hidden_states=text, **kwargs).sample
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return pred.float(), target.float()


def _masked_mean(error: torch.Tensor, loss_mask: torch.Tensor | None) -> torch.Tensor:
    """error (B, C, T, ...) -> (B,): the mean per sample, over the frames where loss_mask (B, T) is 1."""
    if loss_mask is None:
        return error.flatten(1).mean(dim=1)
    weights = loss_mask.to(error.dtype).reshape(*loss_mask.shape[:2], *([1] * (error.ndim - 3)))[:, None]
    weights = weights.expand_as(error)
    return (error * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1).clamp_min(1)


class DiffusionStage(Stage):
    """A stage that trains a denoiser on cached latents and caption embeddings and exports a model folder
    that `VideoLDMPipeline` samples from: the trained parts plus vae/, text_encoder/, tokenizer/, scheduler/."""

    needs_latents = True
    needs_text = True

    # The model-folder part that holds the layers a stage trains and can continue (temporal/, interpolation/).
    continued_part: str | None = None

    @classmethod
    def _continues(cls, config: RunConfig) -> bool:
        """Whether the stage loads `model.pretrained`'s saved `continued_part` (else it builds new layers)."""
        assert config.model.pretrained is not None and cls.continued_part is not None
        return not config.model.fresh_temporal and (config.model.pretrained / cls.continued_part).is_dir()

    @staticmethod
    def _require_saved_prediction_type(config: RunConfig, folder: Path | None = None) -> None:
        """A stage that trains on a saved denoiser (frozen under new layers, continued or fine-tuned) must use its
        parametrisation: an eps-trained UNet under layers trained to predict v gives neither. `folder` (default
        `model.pretrained`) holds the saved sampler in scheduler/; without one nothing is checked."""
        folder = config.model.pretrained if folder is None else folder
        if folder is None or not (folder / layout.SCHEDULER).is_dir():
            return
        # diffusers' reader, as the export's writer; a config without the key predicts epsilon (diffusers' default)
        saved = DDIMScheduler.load_config(folder / layout.SCHEDULER).get("prediction_type", "epsilon")
        if saved != config.model.prediction_type:
            raise ConfigError(
                f"model.prediction_type: {config.model.prediction_type!r}, but {folder}'s denoiser predicts {saved!r} "
                f"(its {layout.SCHEDULER}/): give the same"
            )

    @classmethod
    def _refuse_options_when_continuing(cls, config: RunConfig) -> None:
        # Continuing takes the options from the folder's saved layers: different ones would not load.
        if config.model.temporal and cls._continues(config):
            raise ConfigError(
                f"model.temporal: {config.model.pretrained} already has {cls.continued_part}/; leave the options out "
                "to continue it, or set model.fresh_temporal: true to train new layers with these options"
            )

    def noise_scheduler(self) -> DDPMScheduler:
        """The training noise schedule."""
        return DDPMScheduler(**noise_scheduler_config(self.config))

    def sampling_scheduler(self) -> DDIMScheduler:
        """The sampler of the exported folder's scheduler/ (and of the training samples)."""
        return DDIMScheduler(**noise_scheduler_config(self.config), set_alpha_to_one=False)

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        """The VideoUNet to sample with and whether to run it image-only (image stage: independent frames)."""
        raise NotImplementedError

    def _diffusion_loss(self, model: nn.Module) -> DiffusionLoss:
        return DiffusionLoss(model, self.noise_scheduler(), weighting=self.config.train.loss_weighting)

    def _temporal_loss(self, video_unet: VideoUNet) -> DiffusionLoss:
        """The loss of a stage that trains only `video_unet`'s temporal layers: spatial layers frozen, gradient
        checkpointing and `model.spatial_padding` as configured (the export's temporal config records the latter)."""
        if self.config.model.spatial_padding is not None:
            try:
                video_unet.spatial_padding = self.config.model.spatial_padding
            except ValueError as err:
                raise ConfigError(f"model.spatial_padding: {err}") from err
        video_unet.freeze_spatial()
        if self.config.train.gradient_checkpointing:
            video_unet.enable_gradient_checkpointing()
        return self._diffusion_loss(video_unet)

    def _diffusion_batch(self, latents: torch.Tensor, text: torch.Tensor, g: torch.Generator) -> dict:
        """latents (B, c, h, w) or (B, c, T, h, w) -> the DiffusionLoss inputs: noise like the latents and one
        diffusion time per sample, drawn from `train.timestep_range` (default: all of them); a clip's frames share
        `train.noise_correlation` of their noise."""
        noise = torch.randn(latents.shape, generator=g)
        if latents.ndim == 5:
            noise = correlate_frames(noise, self.config.train.noise_correlation, generator=g)
        return {
            "latents": latents,
            "text": text,
            "noise": noise,
            "timesteps": self._draw_timesteps(latents.shape[0], g),
        }

    def _save_video_unet(self, video_unet: VideoUNet, directory: Path) -> None:
        """`unet/` and `temporal/`, the temporal config recording the noise prior the layers were trained with
        (`train.noise_correlation`): the pipelines sample with it."""
        video_unet.noise_correlation = self.config.train.noise_correlation
        video_unet.save_pretrained(directory)

    def _draw_timesteps(self, count: int, g: torch.Generator, span: tuple[int, int] | None = None) -> torch.Tensor:
        """`count` diffusion times, uniform over `span` (default `train.timestep_range`, else all of them)."""
        first, last = span or self.config.train.timestep_range or (0, self.config.model.num_train_timesteps - 1)
        return torch.randint(first, last + 1, (count,), generator=g)

    def _write_conditioning(self, directory: Path) -> None:
        """vae/, text_encoder/, tokenizer/ and scheduler/ beside the trained parts of a model folder."""
        assert self.vae is not None
        self.vae.save_pretrained(directory / layout.VAE)
        pretrained = self.config.model.pretrained
        spec = self.config.model.text_encoder
        if pretrained is not None and (pretrained / layout.TEXT_ENCODER).is_dir():
            for sub in (layout.TEXT_ENCODER, layout.TOKENIZER):
                shutil.copytree(pretrained / sub, directory / sub)
        elif spec.startswith(BUILTIN_PREFIX):
            name = spec.removeprefix(BUILTIN_PREFIX) or MINILM
            write_builtin_marker(directory, {"builtin": name, "max_length": self.config.model.text_max_length})
        else:
            self.get_text_encoder().save_pretrained(directory / layout.TEXT_ENCODER, directory / layout.TOKENIZER)
        self.sampling_scheduler().save_pretrained(directory / layout.SCHEDULER)
