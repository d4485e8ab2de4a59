"""`mae-vitl16`: the MAE ViT-L/16 encoder (He et al. 2022), normed class token, as dgm-eval.

dgm-eval's MAE encoder (`dgm_eval/models/mae.py` at commit d57a6d2) is timm's
VisionTransformer with patch 16, width 1024, depth 24, 16 heads, qkv bias and
LayerNorm eps 1e-6 (`vit_large_patch16`), filled from the `"model"` entry of
Meta's `mae_pretrain_vit_large.pth` (`VisionTransformerEncoder.setup`). The
feature is its `forward_features` with `global_pool=False`: the class token
after the final LayerNorm, 1024-d. timm's `vit_large_patch16_224` without a classifier
is the same network with the same parameter names, so Meta's file loads as is.

Preprocessing: dgm-eval's `VisionTransformerEncoder.transform` has two branches. The
default one calls `TF.resize` and `InterpolationMode`, which do not exist where
it looks them up (`torchvision.transforms`, and no import), so it fails on
every image; the branch that runs is `--clean_resize`: `resizer.pil_resize`
(each channel resized to 224x224 by Pillow's bicubic filter in floating point,
clipped to 0..255, / 255), then ImageNet mean/std. percept does that.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    clean_resize,
    hwc_to_tensor,
    normalize,
)

TIMM_NAME = "vit_large_patch16_224"
SIZE = 224
URL = "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth"


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 224, 224): clean float bicubic resize, [0, 1], ImageNet mean/std."""
    x = hwc_to_tensor(clean_resize(img, SIZE)) / 255
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def build() -> nn.Module:
    """timm's ViT-L/16 at 224 px without a classifier, randomly initialised."""
    import timm

    return timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)


def forward(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    # With num_classes=0 and token pooling, timm's head is the class token of the
    # normed sequence: MAE's forward_features with global_pool=False.
    return {"features": module(x)}


SPEC = EncoderSpec(
    name="mae-vitl16",
    build=build,
    preprocess=preprocess,
    preprocess_version="clean-bicubic-224;imagenet-norm;v1",
    preprocessing=(
        "each channel resized to 224x224 bicubic in floating point (dgm-eval's clean resize), "
        "clipped, [0, 1], ImageNet mean/std normalisation"
    ),
    forward=forward,
    outputs={"features": 1024},
    ref="He et al. 2022 (MAE); Stein et al. 2023 (dgm-eval)",
    weight_files=("mae_pretrain_vit_large.pth",),
    weight_source=URL,
    weight_url=URL,
)
