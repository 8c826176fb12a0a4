"""LPIPS (Zhang et al. 2018) on a VGG16 feature net, in plain torch, from one local safetensors file.

Nothing is downloaded. The file holds two sets of tensors:
- the VGG16 convolutions under torchvision's names, `features.{i}.weight` / `features.{i}.bias` for
  i in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 (`classifier.*` keys are ignored),
- the LPIPS heads under the `lpips` package's names, `lin{k}.model.1.weight` (1, C_k, 1, 1) for k = 0..4.
To make it from the usual files: `state = torch.load("vgg16-397923af.pth") | torch.load("lpips/weights/v0.1/
vgg.pth")`, then `safetensors.torch.save_file(state, "lpips_vgg.safetensors")`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

# VGG16's conv widths, "M" = 2x2 max pool; LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # indices (in torchvision's `features`) of the ReLUs whose outputs are compared
_TAP_CHANNELS = (64, 128, 256, 512, 512)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 3
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(width, item, 3, padding=1), nn.ReLU()]
            width = item
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """Perceptual distance between images (N, 3, H, W) in [-1, 1] -> (N,), >= 0 and 0 for identical images.

    Frozen: all parameters have requires_grad False, but gradients flow to the inputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in _TAP_CHANNELS])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> LPIPS:
        """Load the VGG16 + LPIPS-head weights from one safetensors file (see the module docstring)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"LPIPS weights file not found: {path} (a .safetensors file)")
        state = load_file(str(path))
        model = cls()
        ours = {f"features.{k}": v for k, v in model.features.state_dict().items()}
        ours |= {f"lin{i}.model.1.weight": lin.weight for i, lin in enumerate(model.lins)}
        for key, param in ours.items():
            if key not in state:
                raise ValueError(f"{path}: missing LPIPS weight {key!r} (shape {tuple(param.shape)})")
            if state[key].shape != param.shape:
                raise ValueError(
                    f"{path}: LPIPS weight {key!r} has shape {tuple(state[key].shape)}, expected {tuple(param.shape)}"
                )
            with torch.no_grad():
                param.copy_(state[key])
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (N, 3, H, W) in [-1, 1] -> (N,) distances."""
        x = (x - self.shift) / self.scale
        y = (y - self.shift) / self.scale
        total = x.new_zeros(x.shape[0])
        taps = iter(zip(_TAPS, self.lins, strict=True))
        tap, lin = next(taps)
        for i, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if i == tap:
                diff = (_unit(x) - _unit(y)) ** 2
                total = total + lin(diff).mean(dim=(1, 2, 3))
                tap, lin = next(taps, (None, None))
                if tap is None:
                    break
        return total


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Normalise features to unit length over channels."""
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)
