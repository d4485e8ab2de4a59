"""`swav-rn50` and `simclr-rn50`: self-supervised ResNet-50s, global-average-pooled (dgm-eval).

**SwAV** (Caron et al. 2020). dgm-eval's `dgm_eval/models/swav.py` (commit
d57a6d2) builds a torchvision-style ResNet-50 (`ResNet`, `resnet50`) and loads
Meta's `swav_800ep_pretrain.pth.tar` into it with `strict=False`, so the
pretraining head in the file (`projection_head.*`, `prototypes.*`) is not used;
the feature is the global average pool of the last stage, flattened
(`forward_backbone`; no head, no L2 normalisation by default): 2048-d. Its
input padding (a 1-pixel zero pad, then a 7x7 convolution with padding 2) is
the same as torchvision's padding 3, so timm's `resnet50`
(the same parameter names) is the network; `convert` drops the head's tensors,
by name, and nothing else.

**SimCLR** (Chen et al. 2020, SimCLRv2). dgm-eval's `dgm_eval/models/simclr.py`
is SimCLRv2-Pytorch's ResNet (github.com/Separius/SimCLRv2-Pytorch) for the
`r50_1x_sk1` checkpoint: a ResNet-50 with selective kernels (sk_ratio 0.0625) and
a 3-convolution stem, loaded from the converted file's `"resnet"` entry
(`SimCLRResNetEncoder.setup`); the feature is the mean of the last stage over
space (`ResNet.forward` with `apply_fc=False`), 2048-d. `SimCLRResNet50`
below has that network's structure and parameter names.
There is no downloadable PyTorch file: SimCLRv2-Pytorch's `convert.py` makes
`r50_1x_sk1.pth` from Google's TensorFlow checkpoint.

Preprocessing, both (`ResNet50Encoder.transform`, `SimCLRResNetEncoder.transform`):
torchvision's `Resize(224)` (the shorter side to 224 with Pillow's bilinear filter,
aspect ratio kept, no crop), `ToTensor`, ImageNet mean/std. Images that are not
square therefore give inputs that are not square, as in dgm-eval; the network
pools over whatever size it gets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize,
    resize_short_side,
    to_tensor,
)

SHORT_SIDE = 224
SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"
SWAV_HEAD = ("projection_head.", "prototypes.")
SIMCLR_SOURCE = (
    "https://github.com/Separius/SimCLRv2-Pytorch (run its convert.py on Google's "
    "TensorFlow checkpoint gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk1 and "
    "keep the r50_1x_sk1.pth it writes)"
)
BN_EPS = 1e-5
SK_RATIO = 0.0625
SK_MIN_DIM = 32


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 224, W) or (3, H, 224): shorter side to 224 bilinear, ImageNet mean/std."""
    img = resize_short_side(img, SHORT_SIDE, Image.Resampling.BILINEAR)
    return normalize(to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def pooled(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"features": module(x)}


# --- SwAV: timm's ResNet-50 ---------------------------------------------------------------------


def build_swav() -> nn.Module:
    """timm's ResNet-50 without a classifier (global average pool), randomly initialised."""
    import timm

    return timm.create_model("resnet50", pretrained=False, num_classes=0)


def convert_swav(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """SwAV's file without its pretraining head (projection MLP and prototypes)."""
    return {k: v for k, v in state.items() if not k.startswith(SWAV_HEAD)}


# --- SimCLRv2: ResNet-50 with selective kernels, SimCLRv2-Pytorch's module layout --------------


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)


class BatchNormRelu(nn.Sequential):
    """Batch norm then ReLU (or nothing): parameter names `0.*`."""

    def __init__(self, channels: int, relu: bool = True) -> None:
        super().__init__(nn.BatchNorm2d(channels, eps=BN_EPS), nn.ReLU() if relu else nn.Identity())


class SelectiveKernel(nn.Module):
    """Two 3x3 branches in one convolution, mixed by a softmax over branches of a global gate."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.main_conv = nn.Sequential(_conv(cin, 2 * cout, stride=stride), BatchNormRelu(2 * cout))
        mid = max(int(cout * SK_RATIO), SK_MIN_DIM)
        self.mixing_conv = nn.Sequential(
            _conv(cout, mid, kernel=1), BatchNormRelu(mid), _conv(mid, 2 * cout, kernel=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.stack(torch.chunk(self.main_conv(x), 2, dim=1), dim=0)  # 2, B, C, H, W
        gate = self.mixing_conv(x.sum(dim=0).mean(dim=[2, 3], keepdim=True))
        gate = torch.stack(torch.chunk(gate, 2, dim=1), dim=0)  # 2, B, C, 1, 1
        return (x * F.softmax(gate, dim=0)).sum(dim=0)


class Projection(nn.Module):
    """The shortcut of a stage's first block: 2x2 average pool (after a zero pad) and 1x1 conv."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.ZeroPad2d((0, 1, 0, 1)),
            nn.AvgPool2d(kernel_size=2, stride=stride, padding=0),
            _conv(cin, cout, kernel=1),
        )
        self.bn = BatchNormRelu(cout, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.shortcut(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, project: bool) -> None:
        super().__init__()
        self.projection = Projection(cin, width * 4, stride) if project else nn.Identity()
        self.net = nn.Sequential(
            _conv(cin, width, kernel=1),
            BatchNormRelu(width),
            SelectiveKernel(width, width, stride),
            _conv(width, width * 4, kernel=1),
            BatchNormRelu(width * 4, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.projection(x) + self.net(x))


class Stage(nn.Module):
    def __init__(self, blocks: int, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Bottleneck(cin, width, stride, project=True)])
        self.blocks.extend(
            Bottleneck(width * 4, width, 1, project=False) for _ in range(blocks - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class SimCLRResNet50(nn.Module):
    """SimCLRv2's r50_1x_sk1 trunk (and its unused 1000-class layer); forward = pooled 2048-d."""

    def __init__(self) -> None:
        super().__init__()
        stem = nn.Sequential(
            _conv(3, 32, stride=2),
            BatchNormRelu(32),
            _conv(32, 32),
            BatchNormRelu(32),
            _conv(32, 64),
            BatchNormRelu(64),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages = [Stage(3, 64, 64, 1), Stage(4, 256, 128, 2), Stage(6, 512, 256, 2)]
        stages.append(Stage(3, 1024, 512, 2))
        self.net = nn.Sequential(stem, *stages)
        self.fc = nn.Linear(2048, 1000)  # in the file; the features come before it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=[2, 3])


def build_simclr() -> nn.Module:
    """SimCLRv2's ResNet-50 (1x, selective kernels), randomly initialised."""
    return SimCLRResNet50()


SWAV = EncoderSpec(
    name="swav-rn50",
    build=build_swav,
    preprocess=preprocess,
    preprocess_version="pil-bilinear-short224-nocrop;imagenet-norm;v1",
    preprocessing=(
        "bilinear resize of the shorter side to 224 (no crop), [0, 1], ImageNet mean/std "
        "normalisation"
    ),
    forward=pooled,
    outputs={"features": 2048},
    ref="Caron et al. 2020 (SwAV); Stein et al. 2023 (dgm-eval)",
    weight_files=("swav_800ep_pretrain.pth.tar",),
    weight_source=SWAV_URL,
    weight_url=SWAV_URL,
    convert=convert_swav,
)

SIMCLR = EncoderSpec(
    name="simclr-rn50",
    build=build_simclr,
    preprocess=preprocess,
    preprocess_version="pil-bilinear-short224-nocrop;imagenet-norm;v1",
    preprocessing=SWAV.preprocessing,
    forward=pooled,
    outputs={"features": 2048},
    ref="Chen et al. 2020 (SimCLRv2); Stein et al. 2023 (dgm-eval)",
    weight_files=("r50_1x_sk1.pth",),
    weight_source=SIMCLR_SOURCE,
)

SPECS = [SWAV, SIMCLR]
