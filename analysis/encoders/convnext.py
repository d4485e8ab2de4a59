"""`convnext-large`: timm's ConvNeXt-L pretrained on ImageNet-22k, pooled and normed (dgm-eval).

As dgm-eval's ConvNeXt encoder (`convnext_large_in22k`, now timm's
`convnext_large.fb_in22k`): the shorter side is resized to 256 bicubic, the
centre 224x224 is cropped, scaled to [0, 1] and normalised with the ImageNet
mean and standard deviation. The feature is the head's global average pool,
LayerNorm and flatten, before the 21,841-class layer: 1536-d.

The weight file is Meta's checkpoint `convnext_large_22k_224.pth`, or timm's
`model.safetensors` of `timm/convnext_large.fb_in22k` saved as
`convnext_large.fb_in22k.safetensors`; timm's own converter maps Meta's names.
The classifier stays in the network so that a checkpoint fine-tuned on
ImageNet-1k (1,000 classes, other features) is refused rather than loaded.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize,
    resize_short_side_center_crop,
    to_tensor,
)

TIMM_NAME = "convnext_large.fb_in22k"
CLASSES = 21841
URL = "https://dl.fbaipublicfiles.com/convnext/convnext_large_22k_224.pth"


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 224, 224): shorter side to 256 bicubic, centre crop 224, ImageNet mean/std."""
    img = resize_short_side_center_crop(img, 256, 224)
    return normalize(to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def build() -> nn.Module:
    """timm's ConvNeXt-L with its ImageNet-22k classifier, randomly initialised."""
    import timm

    return timm.create_model(TIMM_NAME, pretrained=False, num_classes=CLASSES)


def forward(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    # global_pool + norm + flatten of the head, as dgm-eval's ConvNeXTEncoder.forward.
    return {"features": module.forward_head(module.forward_features(x), pre_logits=True)}


def convert(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """Meta's checkpoint names -> timm's (timm's own converter); timm's names pass as is."""
    from timm.models.convnext import checkpoint_filter_fn

    return checkpoint_filter_fn(state, module)


SPEC = EncoderSpec(
    name="convnext-large",
    build=build,
    preprocess=preprocess,
    preprocess_version="pil-bicubic-short256-crop224;imagenet-norm;v1",
    preprocessing=(
        "bicubic resize of the shorter side to 256, centre crop 224x224, [0, 1], "
        "ImageNet mean/std normalisation"
    ),
    forward=forward,
    outputs={"features": 1536},
    ref="Liu et al. 2022 (ConvNeXt); Stein et al. 2023 (dgm-eval)",
    weight_files=("convnext_large_22k_224.pth", "convnext_large.fb_in22k.safetensors"),
    weight_source=URL,
    weight_url=URL,
    convert=convert,
)
