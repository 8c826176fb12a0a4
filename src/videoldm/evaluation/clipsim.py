"""CLIPSIM: the mean over frames of the cosine similarity between each frame's and the prompt's CLIP embedding.

Reported as a plain cosine (not x 100), like the paper's MSR-VTT CLIPSIM of 0.2929 (and GODIVA / NUWA /
Make-A-Video's protocol); the paper uses CLIP ViT-B/32. Any CLIP in transformers format works: a local
folder that `CLIPModel.from_pretrained` and `CLIPProcessor.from_pretrained` read (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CLIP_HOW_TO_GET = (
    "Give a local folder with a CLIP in transformers format (config.json, model.safetensors, the tokenizer and "
    "processor files), e.g. a copy of the Hugging Face repo openai/clip-vit-base-patch32 (the paper's CLIP "
    "ViT-B/32), fetched beforehand with `hf download openai/clip-vit-base-patch32 --local-dir clip-vit-b32`. "
    "Pass it with --clip (or VIDEOLDM_CLIP)."
)


def load_clip(directory: str | Path | None) -> tuple[torch.nn.Module, object]:
    """(CLIPModel in eval mode, CLIPProcessor) from a local folder; a clear error when it is not one."""
    from transformers import CLIPModel, CLIPProcessor

    if directory is None or not (Path(directory) / "config.json").is_file():
        where = "no folder was given" if directory is None else f"{directory} has no config.json"
        raise FileNotFoundError(f"a CLIP model folder is needed for CLIPSIM ({where}). {CLIP_HOW_TO_GET}")
    try:
        model = CLIPModel.from_pretrained(directory, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"{directory}: not a CLIP model + processor in transformers format: {err}") from err
    return model.eval(), processor


def _to_uint8_frames(video: torch.Tensor) -> list[np.ndarray]:
    """(C, T, H, W) in [-1, 1] -> T frames (H, W, C) uint8, the input the CLIP processor expects."""
    frames = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return list(frames.permute(1, 2, 3, 0).cpu().numpy())


@torch.no_grad()
def clip_similarity(model: torch.nn.Module, processor: object, video: torch.Tensor, prompt: str) -> float:
    """Mean over frames of cos(CLIP(frame), CLIP(prompt)) for one video (C, T, H, W) in [-1, 1]."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"CLIPSIM expects one RGB video (3, T, H, W); got {tuple(video.shape)}")
    inputs = processor(
        text=[prompt], images=_to_uint8_frames(video), return_tensors="pt", padding=True, truncation=True
    )
    out = model(**inputs)
    # image_embeds (T, D) and text_embeds (1, D) come out L2-normalised, so the dot product is the cosine.
    image = torch.nn.functional.normalize(out.image_embeds.float(), dim=-1)
    text = torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)
    return (image @ text.T).mean().item()
