"""`pixel`: the image itself, resized to 32x32 and flattened (3072-d), no network and no weights.

A baseline that any learned encoder should beat. The resize is dgm-eval's
and clean-fid's "clean" one: each channel is resized in floating point by
Pillow's bicubic filter (antialiased, no rounding to 8 bits), clipped to
0..255 and scaled to [0, 1]. The vector is channel-major (all red, then all
green, then all blue). dgm-eval's pixel encoder resizes the same way, but its
extraction then averages any non-flat output over space, which leaves only
the 3 mean colours; percept keeps the pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import clean_resize

SIZE = 32


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 32, 32) float32 in [0, 1]."""
    return torch.from_numpy(clean_resize(img, SIZE) / np.float32(255)).permute(2, 0, 1).contiguous()


def build() -> nn.Module:
    return nn.Flatten()


def forward(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"features": module(x)}


SPEC = EncoderSpec(
    name="pixel",
    build=build,
    preprocess=preprocess,
    preprocess_version="clean-bicubic-32;[0,1];chw;v1",
    preprocessing=(
        "each channel resized to 32x32 bicubic in floating point (clean-fid), [0, 1], "
        "flattened channel-major"
    ),
    forward=forward,
    outputs={"features": 3 * SIZE * SIZE},
    ref="Stein et al. 2023 (dgm-eval's pixel baseline); Parmar et al. 2022 (clean resize)",
)
