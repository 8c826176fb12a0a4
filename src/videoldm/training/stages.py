"""The training stages: what is trained, on which batches, with which loss, and what is exported.

Each stage owns an `nn.Module` whose forward computes the loss, so DDP (through accelerate) wraps exactly the
computation it must synchronise. Batches are drawn from the cache by `batch(cache, generator)`, outside the
module, as a pure function of the step's generator.

- autoencoder: a diffusers AutoencoderKL on single frames (L1 + KL), for models trained from scratch.
- image: a UNet2DConditionModel on single latent frames with a frozen text encoder (epsilon / v loss).
- temporal: a VideoUNet's temporal layers on latent clips, spatial layers frozen, one noise level per clip,
  optionally some clips trained as images through `image_only_indicator`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from torch import nn

from videoldm.loading import load_text_encoder, read_builtin_marker, write_builtin_marker
from videoldm.text import MINILM, TextEncoder
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache
from videoldm.training.config import RunConfig
from videoldm.video_unet import VideoUNet

BUILTIN_PREFIX = "builtin:"


def noise_scheduler_config(config: RunConfig) -> dict[str, Any]:
    """Stable Diffusion's noise schedule (scaled linear betas); the model folder stores it for DDIM sampling."""
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
        self, latents: torch.Tensor, text: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        pred = self.model(noisy, timesteps, encoder_hidden_states=text, **kwargs).sample
        if self.scheduler.config.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        if self.weighting == "epsilon" or self.scheduler.config.prediction_type == "v_prediction":
            return F.mse_loss(pred.float(), target.float())
        per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
        alpha_bar = self.scheduler.alphas_cumprod.to(per_sample.device)[timesteps]
        return (per_sample / alpha_bar).mean()


class AutoencoderLoss(nn.Module):
    """L1 reconstruction + KL for an AutoencoderKL on frames (B, 3, H, W) in [-1, 1]."""

    def __init__(self, vae: AutoencoderKL, kl_weight: float) -> None:
        super().__init__()
        self.vae = vae
        self.kl_weight = kl_weight

    def forward(self, frames: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(frames).latent_dist
        z = posterior.mean + posterior.std * noise  # reparameterised with the step's noise (deterministic)
        reconstruction = self.vae.decode(z).sample
        return F.l1_loss(reconstruction, frames) + self.kl_weight * posterior.kl().mean()


class Stage:
    """Base class: subclasses build `self.module` (forward -> loss) and say what the cache needs."""

    needs_latents = False
    needs_text = False

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.vae: AutoencoderKL | None = None
        self.text_encoder: TextEncoder | None = None
        self.module: nn.Module

    def trainable(self) -> nn.Module:
        """The module whose parameters are optimised, checkpointed and exported."""
        return self.module

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def export(self, directory: Path, cache: VideoCache) -> None:
        """Write a complete model folder for this stage's result (the trained part plus what it builds on)."""
        raise NotImplementedError

    # shared helpers -------------------------------------------------------------------------------
    def _pretrained(self, sub: str) -> Path:
        assert self.config.model.pretrained is not None
        path = self.config.model.pretrained / sub
        if not path.is_dir():
            raise FileNotFoundError(f"model.pretrained: {self.config.model.pretrained} has no {sub}/ folder")
        return path

    def vae_dir(self) -> Path:
        return self._pretrained("vae")

    def text_encoder_id(self) -> str:
        """Which text encoder this stage uses (keys the text-embedding cache)."""
        pretrained = self.config.model.pretrained
        if pretrained is not None and (pretrained / "text_encoder").is_dir():
            marker = read_builtin_marker(pretrained / "text_encoder")
            return BUILTIN_PREFIX + marker["builtin"] if marker else str(pretrained / "text_encoder")
        return self.config.model.text_encoder

    def get_text_encoder(self) -> TextEncoder:
        """Loaded on first use: a cached run needs no text encoder (its embeddings are in the cache)."""
        if self.text_encoder is None:
            self.text_encoder = self._load_text_encoder()
        return self.text_encoder

    def _load_vae(self) -> AutoencoderKL:
        return (
            AutoencoderKL.from_pretrained(self._pretrained("vae"), local_files_only=True).eval().requires_grad_(False)
        )

    def _load_text_encoder(self) -> TextEncoder:
        pretrained = self.config.model.pretrained
        if pretrained is not None and (pretrained / "text_encoder").is_dir():
            return load_text_encoder(pretrained / "text_encoder", pretrained / "tokenizer")
        spec = self.config.model.text_encoder
        if spec.startswith(BUILTIN_PREFIX):
            return TextEncoder.builtin(spec.removeprefix(BUILTIN_PREFIX), max_length=self.config.model.text_max_length)
        return TextEncoder.from_pretrained(spec, max_length=self.config.model.text_max_length)

    def _noise_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(**noise_scheduler_config(self.config))

    def _diffusion_loss(self, model: nn.Module) -> DiffusionLoss:
        return DiffusionLoss(model, self._noise_scheduler(), weighting=self.config.train.loss_weighting)

    def noise_scheduler_config(self) -> dict[str, Any]:
        return noise_scheduler_config(self.config)

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        """The VideoUNet to sample with and whether to run it image-only (image stage: independent frames)."""
        raise NotImplementedError

    def _diffusion_batch(self, latents: torch.Tensor, text: torch.Tensor, g: torch.Generator) -> dict:
        first, last = self.config.train.timestep_range or (0, self.config.model.num_train_timesteps - 1)
        return {
            "latents": latents,
            "text": text,
            "noise": torch.randn(latents.shape, generator=g),
            "timesteps": torch.randint(first, last + 1, (latents.shape[0],), generator=g),
        }

    def _write_conditioning(self, directory: Path) -> None:
        """vae/, text_encoder/, tokenizer/ and scheduler/ beside the trained parts of a model folder."""
        assert self.vae is not None
        self.vae.save_pretrained(directory / "vae")
        pretrained = self.config.model.pretrained
        spec = self.config.model.text_encoder
        if pretrained is not None and (pretrained / "text_encoder").is_dir():
            for sub in ("text_encoder", "tokenizer"):
                shutil.copytree(pretrained / sub, directory / sub)
        elif spec.startswith(BUILTIN_PREFIX):
            name = spec.removeprefix(BUILTIN_PREFIX) or MINILM
            write_builtin_marker(directory, {"builtin": name, "max_length": self.config.model.text_max_length})
        else:
            self.get_text_encoder().save_pretrained(directory / "text_encoder", directory / "tokenizer")
        ddim = DDIMScheduler(**noise_scheduler_config(self.config), set_alpha_to_one=False)
        ddim.save_pretrained(directory / "scheduler")


class AutoencoderStage(Stage):
    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        assert config.model.vae is not None
        self.vae = AutoencoderKL(**config.model.vae)
        self.module = AutoencoderLoss(self.vae, config.optim.kl_weight)

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=1, generator=g)
        frames = B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, 1)[:, :, 0])
        if self.config.data.random_flip:
            frames = B.flip(frames, g)
        latent_shape = self._latent_shape(frames)
        return {"frames": frames, "noise": torch.randn(latent_shape, generator=g)}

    def _latent_shape(self, frames: torch.Tensor) -> tuple[int, ...]:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        b, _, h, w = frames.shape
        return (b, self.vae.config.latent_channels, h // factor, w // factor)

    def export(self, directory: Path, cache: VideoCache) -> None:
        # Latents should have unit variance for the diffusion model's noise schedule: measure, as SD did for
        # its 0.18215, and store it as the VAE's scaling_factor.
        self.vae.register_to_config(scaling_factor=self._latent_scale(cache))
        self.vae.save_pretrained(directory / "vae")

    @torch.no_grad()
    def _latent_scale(self, cache: VideoCache, count: int = 256) -> float:
        g = torch.Generator().manual_seed(0)
        videos, starts = B.pick_clips(cache, batch_size=count, num_frames=1, generator=g)
        frames = B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, 1)[:, :, 0])
        was_training = self.vae.training
        self.vae.eval()
        latents = self.vae.encode(frames.to(self.vae.device)).latent_dist.mode()
        self.vae.train(was_training)
        return float(1.0 / latents.float().std())


class ImageStage(Stage):
    needs_latents = True
    needs_text = True

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        assert config.model.unet is not None
        self.vae = self._load_vae()
        self.unet = UNet2DConditionModel(**config.model.unet)
        if config.train.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        self.module = self._diffusion_loss(self.unet)

    def trainable(self) -> nn.Module:
        return self.unet

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        if not hasattr(self, "_sampling_unet"):  # built once: it hooks into self.unet
            self._sampling_unet = VideoUNet.from_image_unet(self.unet)
        return self._sampling_unet, True

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        assert cache.latents is not None
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=1, generator=g)
        latents = B.gather_clips(cache.latents, videos, starts, 1)[:, :, 0].float()
        text = B.text_for(cache, videos, dropout=self.config.train.caption_dropout, generator=g)
        return self._diffusion_batch(latents, text, g)

    def export(self, directory: Path, cache: VideoCache) -> None:
        self.unet.save_pretrained(directory / "unet")
        self._write_conditioning(directory)


class TemporalStage(Stage):
    needs_latents = True
    needs_text = True

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.vae = self._load_vae()
        if (config.model.pretrained / "temporal").is_dir():
            # A Video LDM folder: continue training its temporal layers (options come from its temporal/).
            if config.model.temporal:
                raise ValueError(
                    f"model.temporal: {config.model.pretrained} already has temporal layers; leave the options out"
                )
            self.video_unet = VideoUNet.from_pretrained(config.model.pretrained)
        else:
            unet = UNet2DConditionModel.from_pretrained(self._pretrained("unet"), local_files_only=True)
            self.video_unet = VideoUNet.from_image_unet(unet, **config.model.temporal)
        self.video_unet.freeze_spatial()
        if config.train.gradient_checkpointing:
            self.video_unet.enable_gradient_checkpointing()
        self.module = self._diffusion_loss(self.video_unet)

    def trainable(self) -> nn.Module:
        return self.video_unet.temporal

    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        return self.video_unet, False

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        assert cache.latents is not None
        t = self.config.data.num_frames
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=t, generator=g)
        latents = B.gather_clips(cache.latents, videos, starts, t).float()
        text = B.text_for(cache, videos, dropout=self.config.train.caption_dropout, generator=g)
        batch = self._diffusion_batch(latents, text, g)
        if self.config.train.image_fraction > 0:
            images = torch.rand(latents.shape[0], generator=g) < self.config.train.image_fraction
            batch["image_only_indicator"] = images[:, None].expand(-1, t).clone()
        return batch

    def export(self, directory: Path, cache: VideoCache) -> None:
        self.video_unet.save_pretrained(directory)
        self._write_conditioning(directory)


class DecoderReconstruction(nn.Module):
    """The temporal decoder's generator loss on clips: decode cached latents, compare with the true frames."""

    def __init__(self, video_ae, loss) -> None:
        super().__init__()
        self.video_ae = video_ae
        self.loss = loss
        self.step = 0
        self.last_reconstruction: torch.Tensor | None = None

    def forward(self, video: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        reconstruction = self.video_ae.decode(latents)
        self.last_reconstruction = reconstruction.detach()  # for the discriminator step that follows
        loss, _ = self.loss.generator_loss(video, reconstruction, step=self.step, last_layer=self.video_ae.last_layer)
        return loss


class DecoderStage(Stage):
    """The temporal VAE decoder (PAPER.md section 3): encoder and latent space frozen, the decoder's temporal
    layers trained on clips against a 3D-conv patch discriminator. `model.pretrained` is a complete model
    folder; the export is that folder plus `temporal_decoder/`."""

    needs_latents = True

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        from videoldm.autoencoder import DecoderLoss, VideoAutoencoder

        self.vae = self._load_vae()
        self.video_ae = VideoAutoencoder.from_vae(self.vae, **config.model.temporal_decoder)
        self.video_ae.freeze_spatial()
        if config.train.gradient_checkpointing:
            self.video_ae.enable_gradient_checkpointing()
        opt = config.optim
        loss = DecoderLoss(
            disc_weight=opt.disc_weight,
            disc_start_step=opt.disc_start_step,
            lpips_weights=opt.lpips_weights,
            flicker_weight=opt.flicker_weight,
        )
        self.module = DecoderReconstruction(self.video_ae, loss)
        self.discriminator = loss.discriminator

    def trainable(self) -> nn.Module:
        return self.video_ae.temporal

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        assert cache.latents is not None
        t = self.config.data.num_frames
        videos, starts = B.pick_clips(cache, batch_size=self.config.train.batch_size, num_frames=t, generator=g)
        return {
            "video": B.to_unit_range(B.gather_clips(cache.pixels, videos, starts, t)),
            "latents": B.gather_clips(cache.latents, videos, starts, t).float(),
        }

    def adversary_loss(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor | None:
        """The discriminator's hinge loss on this step's clips and reconstructions (None before it starts)."""
        loss = self.module.loss
        if not loss.discriminator_active(step) or self.module.last_reconstruction is None:
            return None
        d_loss, _ = loss.discriminator_loss(batch["video"], self.module.last_reconstruction, step=step)
        return d_loss

    def export(self, directory: Path, cache: VideoCache) -> None:
        assert self.config.model.pretrained is not None
        shutil.copytree(self.config.model.pretrained, directory, ignore=shutil.ignore_patterns("temporal_decoder"))
        self.video_ae.save_temporal(directory / "temporal_decoder")


STAGE_CLASSES: dict[str, type[Stage]] = {
    "autoencoder": AutoencoderStage,
    "image": ImageStage,
    "temporal": TemporalStage,
    "decoder": DecoderStage,
}


def build_stage(config: RunConfig) -> Stage:
    if config.stage not in STAGE_CLASSES:
        raise NotImplementedError(f"stage {config.stage!r} is not available; known: {sorted(STAGE_CLASSES)}")
    return STAGE_CLASSES[config.stage](config)
