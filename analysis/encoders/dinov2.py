"""`dinov2-vit{s,b,l,g}14`: DINOv2 ViTs (timm `vit_*_patch14_dinov2`), CLS token after the norm.

As in dgm-eval (Stein et al. 2023): each image is resized to 224x224 with
bicubic interpolation and no crop, scaled to [0, 1] and normalised with the
ImageNet mean and standard deviation; the feature is the class token after
the last LayerNorm.

The weight files are Meta's published checkpoints (`dinov2_vitl14_pretrain.pth`,
...), trained at 518 px with 37x37 position embeddings. dgm-eval runs them
through torch.hub's DINOv2 code, which interpolates those embeddings to the
16x16 grid of a 224 px input on every call (bicubic, no antialiasing, scale
factor (16 + 0.1) / 37). `convert` does exactly that once, at load time, so the
timm network gives the torch.hub features. timm's own loader would resample
with antialiasing instead, which gives different features.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize,
    resize_exact,
    to_tensor,
)

SIZE = 224
PATCH = 14
# torch.hub's DINOv2 adds this to the target grid size when it interpolates
# position embeddings (a historical kludge it keeps for backward compatibility).
INTERPOLATE_OFFSET = 0.1

ARCHS = {
    # name: (timm model, width)
    "vits14": ("vit_small_patch14_dinov2", 384),
    "vitb14": ("vit_base_patch14_dinov2", 768),
    "vitl14": ("vit_large_patch14_dinov2", 1024),
    "vitg14": ("vit_giant_patch14_dinov2", 1536),
}
URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_{arch}/dinov2_{arch}_pretrain.pth"


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 224, 224): bicubic resize without crop, [0, 1], ImageNet mean/std."""
    return normalize(to_tensor(resize_exact(img, SIZE)), IMAGENET_MEAN, IMAGENET_STD)


def build(timm_name: str) -> nn.Module:
    """The timm ViT at 224 px without a classifier, randomly initialised."""
    import timm

    return timm.create_model(timm_name, pretrained=False, img_size=SIZE, num_classes=0)


def forward(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    # timm's head with num_classes=0 and token pooling is the class token of the
    # normed sequence: dgm-eval's x_norm_clstoken.
    return {"features": module(x)}


def hub_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Position embeddings (1, 1 + M*M, d) resampled for a grid x grid input, as torch.hub does."""
    n = pos_embed.shape[1] - 1
    m = math.isqrt(n)
    if m * m != n:
        raise ValueError(f"pos_embed has {n} patch positions, not a square grid")
    if m == grid:
        return pos_embed
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:].float()
    scale = (grid + INTERPOLATE_OFFSET) / m
    patches = F.interpolate(
        patches.reshape(1, m, m, -1).permute(0, 3, 1, 2),
        scale_factor=(scale, scale),
        mode="bicubic",
        antialias=False,
    )
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([cls.float(), patches], dim=1)


def convert(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """Meta's checkpoint -> timm's names at 224 px; a state dict saved from timm passes as is."""
    out = {}
    for key, value in state.items():
        if key == "mask_token":  # used only in training
            continue
        # The giant model's SwiGLU: Meta's packed w12 and w3 are timm's fc1 and fc2.
        key = key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
        out[key] = value
    pos = out.get("pos_embed")
    grid = SIZE // PATCH
    # Only a square grid of another size is interpolated; anything else is left
    # for the shape check to name.
    if pos is not None and pos.ndim == 3 and pos.shape[1] != module.pos_embed.shape[1]:
        n = pos.shape[1] - 1
        if math.isqrt(n) ** 2 == n:
            out["pos_embed"] = hub_pos_embed(pos, grid)
    return out


def _spec(arch: str) -> EncoderSpec:
    timm_name, width = ARCHS[arch]
    url = URL.format(arch=arch)
    return EncoderSpec(
        name=f"dinov2-{arch}",
        build=partial(build, timm_name),
        preprocess=preprocess,
        preprocess_version="pil-bicubic-224-nocrop;imagenet-norm;v1",
        preprocessing=(
            "bicubic resize to 224x224 (no crop), [0, 1], ImageNet mean/std normalisation"
        ),
        forward=forward,
        outputs={"features": width},
        ref="Oquab et al. 2023 (DINOv2); Stein et al. 2023 (dgm-eval)",
        weight_files=(f"dinov2_{arch}_pretrain.pth",),
        weight_source=url,
        weight_url=url,
        convert=convert,
    )


SPECS = [_spec(arch) for arch in ARCHS]
