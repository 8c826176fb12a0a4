"""The dreambooth stage (PAPER.md section 7): personalised text-to-video with no video training.

A Video LDM folder's image UNet is fine-tuned on a few pictures of a new concept (DreamBooth); the folder's
temporal layers, trained on the base backbone, then run unchanged on the fine-tuned one.

- Data: `data.images` (3-10 pictures), each captioned `data.instance_prompt` ("a sks star"). With
  `data.class_prompt` ("a star"; or a list of prompts, taken in turn), `data.num_class_images` pictures of the
  class are sampled once from the frozen base model (image-only) for prior preservation. Each batch then holds
  `train.batch_size` instance pictures followed by as many class pictures, and the loss is the instance half's
  diffusion loss plus `train.prior_loss_weight` x the class half's (diffusers' `train_dreambooth.py`:
  `torch.chunk(pred, 2)`). Both kinds live in the run's cache as one-frame videos, so caching, checkpoints and
  exact resume are the trainer's, unchanged.
- Full fine-tuning of the image UNet (what the paper's DreamBooth backbones had), or, with `model.lora_rank`, a
  LoRA of the UNet through peft (diffusers' `add_adapter`, as in its `train_dreambooth_lora.py`): the base
  weights stay frozen and only the low-rank updates of `model.lora_targets` train. A low-rank change keeps the
  features the temporal layers were trained on closer to the base's (docs/dreambooth.md measures both).
- Export: a complete Video LDM folder. It holds `model.pretrained`'s parts (temporal/, interpolation/,
  temporal_decoder/, vae/, text encoder, scheduler, upsampler/) copied unchanged, `unet/` replaced by the
  fine-tuned UNet (a LoRA merged into its weights: a plain diffusers UNet that loads anywhere), and
  `personalisation.json` (what it learned; `videoldm serve` lists such folders).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn
from tqdm.auto import tqdm

from videoldm import layout
from videoldm.data.image_folder import ImageFolderDataset, image_files
from videoldm.io import IMAGE_EXTENSIONS
from videoldm.temporal.adapter import TemporalAdapter
from videoldm.temporal.padding import pad_circularly
from videoldm.training import batches as B
from videoldm.training.cache import VideoCache, cache_key
from videoldm.training.config import ConfigError, RunConfig
from videoldm.training.stages.diffusion import DiffusionLoss
from videoldm.training.stages.image import ImageStage
from videoldm.video_unet import VideoUNet

logger = logging.getLogger(__name__)

# How the class images are sampled: the training samples' sampler settings (training/samples.py).
CLASS_STEPS = 25
CLASS_GUIDANCE = 7.5
CLASS_BATCH = 16
# The parts of the base folder that make its images (the class images' cache key).
IMAGE_MODEL_PARTS = (layout.UNET, layout.VAE, layout.TEXT_ENCODER, layout.TOKENIZER, layout.SCHEDULER)


class PriorPreservationLoss(nn.Module):
    """DreamBooth's loss on a batch of B instance samples followed by B class samples:
    mean(instance half) + prior_loss_weight x mean(class half), each from `DiffusionLoss.per_sample`."""

    def __init__(self, loss: DiffusionLoss, *, prior_loss_weight: float) -> None:
        super().__init__()
        self.loss = loss
        self.prior_loss_weight = prior_loss_weight

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        instance, prior = self.loss.per_sample(**batch).chunk(2)
        return instance.mean() + self.prior_loss_weight * prior.mean()


class DreamBoothStage(ImageStage):
    @classmethod
    def check_config(cls, config: RunConfig) -> None:
        cls.require_pretrained(config)
        cls._require_saved_prediction_type(config)
        data, pretrained = config.data, config.model.pretrained
        for part in (layout.UNET, layout.TEMPORAL):
            if not (pretrained / part).is_dir():
                raise ConfigError(
                    f"model.pretrained: {pretrained} has no {part}/: stage 'dreambooth' fine-tunes a Video LDM "
                    "folder's unet/ and keeps its temporal/"
                )
        if config.model.unet is not None:
            raise ConfigError("model.unet: stage 'dreambooth' fine-tunes model.pretrained's unet/; leave it out")
        if data.images is None:
            raise ConfigError("data.images: required for stage 'dreambooth' (a folder of 3-10 pictures)")
        if not image_files(data.images):
            raise ConfigError(f"data.images: folder {data.images} holds no pictures ({', '.join(IMAGE_EXTENSIONS)})")
        if not data.instance_prompt:
            raise ConfigError("data.instance_prompt: required for stage 'dreambooth', e.g. 'a sks star'")
        if data.class_prompt is not None:
            prompts = class_prompts(config)
            if not prompts or not all(prompts):
                raise ConfigError(f"data.class_prompt: expected a prompt or a list of them, got {data.class_prompt!r}")
            if data.instance_prompt in prompts:
                raise ConfigError("data.class_prompt: must differ from data.instance_prompt (the concept's class)")
            if data.num_class_images < 1:
                raise ConfigError(f"data.num_class_images: must be >= 1, got {data.num_class_images}")
        if config.train.prior_loss_weight < 0:
            raise ConfigError(f"train.prior_loss_weight: must be >= 0, got {config.train.prior_loss_weight}")
        model = config.model
        if model.lora_rank is not None:
            if model.lora_rank < 1:
                raise ConfigError(f"model.lora_rank: must be >= 1, got {model.lora_rank}")
            if model.lora_alpha is not None and model.lora_alpha <= 0:
                raise ConfigError(f"model.lora_alpha: must be > 0, got {model.lora_alpha}")
            if not model.lora_targets or not all(isinstance(t, str) and t for t in model.lora_targets):
                raise ConfigError(
                    f"model.lora_targets: expected a list of module names (e.g. to_q, to_k), got {model.lora_targets!r}"
                )

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        if config.model.lora_rank is not None:
            self._add_lora()
        temporal = self._pretrained(layout.TEMPORAL)
        if temporal.is_dir() and TemporalAdapter.options_from_dir(temporal).get("spatial_padding") == "circular":
            # The base's video model runs this image UNet padded circularly (a world that wraps): fine-tune it as
            # it will run, and after any LoRA layers exist, so that their convolutions pad the same way. (With
            # "circular_continued" only continued clips wrap; the images here are made from text: zeros.)
            pad_circularly(self.unet)
        if self.prior_preservation:
            self.module = PriorPreservationLoss(self.module, prior_loss_weight=config.train.prior_loss_weight)

    def _add_lora(self) -> None:
        """Freeze the UNet and give `model.lora_targets` low-rank updates (peft; B starts at zero, so step 0 is the
        base model). The trainer optimises what requires grad: the LoRA weights alone."""
        from peft import LoraConfig

        model = self.config.model
        lora = LoraConfig(
            r=model.lora_rank,
            lora_alpha=model.lora_alpha or model.lora_rank,
            init_lora_weights="gaussian",
            target_modules=list(model.lora_targets),
        )
        self.unet.requires_grad_(False)
        try:
            self.unet.add_adapter(lora)
        except ValueError as err:  # peft: "Target modules {...} not found in the base model"
            raise ConfigError(f"model.lora_targets: {err}") from err

    def tuned_unet(self) -> UNet2DConditionModel:
        """The fine-tuned image UNet as a plain diffusers UNet: a LoRA merged into a copy (the training UNet keeps
        its adapter)."""
        if self.config.model.lora_rank is None:
            return self.unet
        merged = copy.deepcopy(self.unet)
        merged.fuse_lora()
        merged.unload_lora()  # the peft layers replaced by their (now merged) base layers
        return merged

    @property
    def prior_preservation(self) -> bool:
        return self.config.data.class_prompt is not None

    # ---------------------------------------------------------------------------------------------- data
    def load_pixels(self) -> tuple[list[str], torch.Tensor]:
        """The pictures (each captioned with the instance prompt), then the class images: uint8 (N, 3, 1, H, W)."""
        data = self.config.data
        dataset = ImageFolderDataset(data.images, caption=data.instance_prompt, size=data.size)
        pictures = [item["image"] for i in range(len(dataset)) if (item := dataset.load(i)) is not None]
        if dataset.report():  # unreadable pictures are skipped, counted and reported
            logger.warning(dataset.report())
        if not pictures:
            raise ValueError(f"data.images: no readable pictures in {data.images}\n{dataset.report()}")
        pixels = B.from_unit_range(torch.stack(pictures)[:, :, None])
        captions = [data.instance_prompt] * len(pictures)
        if self.prior_preservation:
            choices = class_prompts(self.config)
            prompts = [choices[i % len(choices)] for i in range(data.num_class_images)]
            classes = sample_class_images(
                self.config.model.pretrained, prompts, size=data.size, seed=self.config.train.seed
            )
            pixels, captions = torch.cat([pixels, classes]), captions + prompts
        return captions, pixels

    def data_key(self) -> str:
        """The pictures' bytes, size and prompts; with prior preservation also the class images' count, seed and
        the base image model's files (by name, size and modification time: hashing SD's gigabytes would cost
        seconds at every start)."""
        data = self.config.data
        pictures = [hashlib.sha256(f.read_bytes()).hexdigest() for f in image_files(data.images)]
        parts: list[object] = ["dreambooth", pictures, data.size, data.instance_prompt]
        if self.prior_preservation:
            base = self.config.model.pretrained
            files = sorted(f for part in IMAGE_MODEL_PARTS for f in (base / part).rglob("*") if f.is_file())
            stats = [(str(f.relative_to(base)), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
            parts += [data.class_prompt, data.num_class_images, self.config.train.seed, stats]
        return cache_key(*parts)

    def batch(self, cache: VideoCache, g: torch.Generator) -> dict[str, torch.Tensor]:
        """`train.batch_size` instance pictures, then (prior preservation) as many class pictures: latents
        (2B, c, h, w), caption embeddings, noise and diffusion times. The instance half is drawn first, so it
        is the batch an instance-only run draws."""
        instances = cache.captions.count(self.config.data.instance_prompt)  # the first rows (load_pixels)
        size = self.config.train.batch_size
        batch = self._pictures(cache, torch.randint(0, instances, (size,), generator=g), g)
        if self.prior_preservation:
            prior = self._pictures(cache, torch.randint(instances, len(cache), (size,), generator=g), g)
            batch = {key: torch.cat([batch[key], prior[key]]) for key in batch}
        return batch

    def _pictures(self, cache: VideoCache, rows: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        assert cache.latents is not None
        latents = cache.latents[rows, :, 0].float()
        text = B.text_for(cache, rows, dropout=self.config.train.caption_dropout, generator=g)
        return self._diffusion_batch(latents, text, g)

    # ---------------------------------------------------------------------------------------------- outputs
    def sampling_unet(self) -> tuple[VideoUNet, bool]:
        """The base folder's temporal layers on the UNet being fine-tuned: training samples are personalised
        videos."""
        if not hasattr(self, "_sampling_unet"):  # built once: it hooks into self.unet
            self._sampling_unet = VideoUNet.from_image_unet(self.unet, temporal=self._pretrained(layout.TEMPORAL))
        return self._sampling_unet, False

    def export(self, directory: Path, cache: VideoCache) -> None:
        base = self.config.model.pretrained
        shutil.copytree(base, directory, ignore=lambda folder, names: [layout.UNET] if Path(folder) == base else [])
        self.tuned_unet().save_pretrained(directory / layout.UNET)
        data = self.config.data
        record = {
            "instance_prompt": data.instance_prompt,
            "class_prompt": data.class_prompt,
            "base": str(base),
            "images": str(data.images),
            "lora_rank": self.config.model.lora_rank,  # null: full fine-tuning
        }
        (directory / layout.PERSONALISATION).write_text(json.dumps(record, indent=2) + "\n")


def class_prompts(config: RunConfig) -> list[str]:
    """`data.class_prompt` as a list ([] without prior preservation)."""
    prompt = config.data.class_prompt
    return [] if prompt is None else [prompt] if isinstance(prompt, str) else list(prompt)


@torch.no_grad()
def sample_class_images(folder: Path, prompts: list[str], *, size: int, seed: int) -> torch.Tensor:
    """One picture per prompt from the folder's image model (every alpha = 1), uint8 (N, 3, 1, H, W).
    Picture i comes from its own generator (seed, i), so it does not depend on the batching."""
    from videoldm.pipelines import VideoLDMPipeline

    pipe = VideoLDMPipeline.from_pretrained(folder, image_decoder=True)
    pipe.set_progress_bar_config(disable=True)
    out = []
    for first in tqdm(range(0, len(prompts), CLASS_BATCH), desc="sampling class images", leave=False):
        batch = prompts[first : first + CLASS_BATCH]
        generators = [torch.Generator().manual_seed(seed * 1_000_003 + first + i) for i in range(len(batch))]
        frames = pipe(
            batch,
            num_frames=1,
            height=size,
            width=size,
            num_inference_steps=CLASS_STEPS,
            guidance_scale=CLASS_GUIDANCE,
            generator=generators,
            image_only=True,
        ).frames
        out.append(B.from_unit_range(frames.float().cpu()))
    return torch.cat(out)
