"""`inception`: the Inception-v3 of FID (the TensorFlow graph of 2015-12-05), 2048-d + 1008 logits.

This is the network that TTUR's original FID code ran, as ported by
pytorch-fid (`pt_inception-2015-12-05-6726825d.pth`) and torch-fidelity
(`weights-inception-2015-12-05-6726825d.pth`). Its parameter names are
torchvision's, so either published file loads as is. It differs from
torchvision's Inception-v3 in three places, all TensorFlow quirks: average
pools that ignore padding, a max pool in the last block, and 1008 classes.

Preprocessing follows torch-fidelity, which matches TensorFlow: 8-bit RGB is
resized to 299x299 with TensorFlow 1.x bilinear interpolation (no half-pixel
offset, no antialiasing) and mapped to [-1, 1] by (x - 128) / 128.
pytorch-fid and dgm-eval resize with PyTorch's half-pixel bilinear instead,
which gives slightly different features for images that are not 299 px.

`inception-clean` is the same network and weights with clean-fid's "clean"
preprocessing (Parmar et al. 2022; Betzalel et al. 2022's "Clean FID" row): each
channel resized to 299x299 by Pillow's antialiased bicubic filter in floating
point (no rounding to 8 bits, clipped to 0..255), then (x - 128) / 128, as
clean-fid's `build_resizer("clean")` and its torchscript Inception's own
normalisation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import clean_resize, hwc_to_tensor

SIZE = 299
PYTORCH_FID_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
TORCH_FIDELITY_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)


def tf1_bilinear_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (N, C, H, W) floats to size x size as TensorFlow 1.x `resize_bilinear` does.

    align_corners=False without half-pixel centres: output pixel i samples the
    input at i * in / out. Separable, with TensorFlow's order of operations
    (both rows interpolated across, then down), so results match torch-fidelity's
    port bit for bit on the CPU.
    """
    h, w = x.shape[-2:]

    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = torch.arange(size, dtype=torch.float32) * torch.tensor(n_in / size)
        lo = pos.long()
        hi = (lo + 1).clamp_max(n_in - 1)
        return lo, hi, pos - lo.float()

    x_lo, x_hi, dx = axis(w)
    y_lo, y_hi, dy = axis(h)
    rows = x[..., x_lo] + (x[..., x_hi] - x[..., x_lo]) * dx  # (N, C, H, size)
    top, bottom = rows[..., y_lo, :], rows[..., y_hi, :]
    return top + (bottom - top) * dy.view(size, 1)


def preprocess(img: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> (3, 299, 299) float32 in [-1, 1], as torch-fidelity feeds the network."""
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy())
    x = x.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    x = tf1_bilinear_resize(x, SIZE)
    return ((x - 128) / 128)[0]


def preprocess_clean(img: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> (3, 299, 299) float32 in [-1, 1] with clean-fid's "clean" resize."""
    return (hwc_to_tensor(clean_resize(img, SIZE)) - 128) / 128


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 0.001, as in TensorFlow), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool leaves the zero padding out of the average.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = x
        for i in range(1, 6):
            b7d = getattr(self, f"branch7x7dbl_{i}")(b7d)
        return torch.cat([self.branch1x1(x), b7, b7d, self.branch_pool(_avg_pool_tf(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """The last two blocks; the TensorFlow graph max-pools in the second (`pool="max"`)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_tf(x)
        return torch.cat([self.branch1x1(x), b3, b3d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3; `forward` gives the 2048-d pool features and the unbiased logits."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        pool = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        # The Inception Score uses logits without the bias, as the original IS
        # code, torch-fidelity (logits_unbiased) and dgm-eval do.
        return {"features": pool, "logits_unbiased": pool @ self.fc.weight.T}


def _init(module: nn.Module) -> nn.Module:
    # He initialisation keeps activations of order one through the 94 ReLU layers
    # (batch norm is the identity until real statistics are loaded), so random
    # features are usable numbers in metrics rather than values of 1e8.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    return module


def build() -> FIDInceptionV3:
    """The network, randomly initialised."""
    return _init(FIDInceptionV3())


def forward(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return module(x)


SPEC = EncoderSpec(
    name="inception",
    build=build,
    preprocess=preprocess,
    preprocess_version="tf1-bilinear-299;(x-128)/128;v1",
    preprocessing=(
        "8-bit RGB resized to 299x299 with TensorFlow 1.x bilinear interpolation "
        "(as torch-fidelity), then (x - 128) / 128"
    ),
    forward=forward,
    outputs={"features": 2048, "logits_unbiased": 1008},
    ref="Szegedy et al. 2016; Heusel et al. 2017 (FID); Salimans et al. 2016 (IS)",
    weight_files=(
        "pt_inception-2015-12-05-6726825d.pth",
        "weights-inception-2015-12-05-6726825d.pth",
    ),
    weight_source=PYTORCH_FID_URL,
    weight_url=PYTORCH_FID_URL,
)

SPEC_CLEAN = dataclasses.replace(
    SPEC,
    name="inception-clean",
    preprocess=preprocess_clean,
    preprocess_version="clean-bicubic-299;(x-128)/128;v1",
    preprocessing=(
        "each channel resized to 299x299 bicubic in floating point (clean-fid's clean mode), "
        "clipped to 0..255, then (x - 128) / 128"
    ),
    ref=SPEC.ref + "; Parmar et al. 2022 (clean-fid)",
)
