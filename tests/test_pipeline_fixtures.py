"""Tiny model folders written to disk by the tests (no downloads): a Stable Diffusion folder in diffusers
layout with a tiny CLIP text encoder and tokenizer, and a Video LDM folder with the packaged MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

import autoencoder_fixtures
from videoldm import VideoLDMPipeline, VideoUNet
from videoldm.autoencoder import VideoAutoencoder
from videoldm.text import BUILTIN_FILE, MINILM, TextEncoder

WORDS = ["a", "red", "green", "blue", "circle", "square", "moving", "left", "right", "up", "down"]


def write_tiny_clip_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer over a handful of words: vocab.json + merges.txt, then saved as transformers does."""
    letters = sorted({c for w in WORDS for c in w})
    vocab_list = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    merges = []
    for word in WORDS:  # merge each word left to right into one token
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab_list.append(pieces[0])
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    raw = folder.parent / f"{folder.name}-raw"
    raw.mkdir(parents=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    tokenizer = CLIPTokenizer(vocab=str(raw / "vocab.json"), merges=str(raw / "merges.txt"))
    tokenizer.model_max_length = 12
    tokenizer.save_pretrained(str(folder))


def tiny_clip_text_model(*, seed: int = 0, vocab_size: int = 128) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
    )
    return CLIPTextModel(config).eval()


def tiny_image_unet(*, seed: int = 0, cross_attention_dim: int = 32) -> UNet2DConditionModel:
    """Two levels, 8x8 latents by default; sizes must be multiples of vae_scale_factor * 2."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()


def tiny_vae(*, seed: int = 0) -> AutoencoderKL:
    """Scale factor 2 (two blocks), 4 latent channels, 8 norm groups."""
    return autoencoder_fixtures.tiny_vae(seed=seed, norm_num_groups=8)


def sd_scheduler() -> DDIMScheduler:
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def write_tiny_stable_diffusion(folder: Path) -> Path:
    """A Stable Diffusion folder in diffusers layout: unet/, vae/, text_encoder/, tokenizer/, scheduler/."""
    tiny_image_unet().save_pretrained(folder / "unet")
    tiny_vae().save_pretrained(folder / "vae")
    write_tiny_clip_tokenizer(folder / "tokenizer")
    tiny_clip_text_model().save_pretrained(folder / "text_encoder")
    sd_scheduler().save_pretrained(folder / "scheduler")
    return folder


def perturb_temporal(video_unet: VideoUNet, *, seed: int = 1, scale: float = 0.2) -> VideoUNet:
    """Move the temporal layers off their identity initialisation, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in video_unet.temporal.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return video_unet


def tiny_pipeline(*, seed: int = 0) -> VideoLDMPipeline:
    """A tiny pipeline with the packaged MiniLM text encoder (384-wide) and trained-looking temporal layers."""
    unet = perturb_temporal(VideoUNet.from_image_unet(tiny_image_unet(seed=seed, cross_attention_dim=384)))
    pipe = VideoLDMPipeline(
        unet=unet,
        autoencoder=VideoAutoencoder.from_vae(tiny_vae(seed=seed), image_only=True),
        text_encoder=TextEncoder.builtin(MINILM, max_length=8),
        scheduler=sd_scheduler(),
        text_encoder_marker={"builtin": MINILM},
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_tiny_video_ldm(folder: Path) -> Path:
    """A Video LDM folder whose text encoder is a builtin.json marker (the shipped model's layout)."""
    tiny_pipeline().save_pretrained(folder)
    assert (folder / "text_encoder" / BUILTIN_FILE).is_file()
    return folder
