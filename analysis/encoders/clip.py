"""`clip-vitl14`: open_clip's ViT-L-14 image tower, features before the projection (dgm-eval).

dgm-eval's CLIP encoder is open_clip `ViT-L-14` with the DataComp-XL weights
(`datacomp_xl_s13b_b90k`, Gadre et al. 2023). Each image is resized to
224x224 bicubic (no crop for square images), scaled to [0, 1] and normalised
with OpenAI's CLIP mean and standard deviation. The feature is the class
token after the final LayerNorm (`ln_post`), before the 1024 -> 768
projection into the joint text-image space: 1024-d.

Only the image tower is built; the text tower's weights in the file are skipped.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    normalize,
    resize_exact,
    to_tensor,
)

ARCH = "ViT-L-14"
PRETRAINED = "datacomp_xl_s13b_b90k"
HF_REPO = "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K"
URL = f"https://huggingface.co/{HF_REPO}/resolve/main/open_clip_pytorch_model.bin"
SIZE = 224


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 224, 224): bicubic resize, [0, 1], OpenAI CLIP mean/std."""
    return normalize(to_tensor(resize_exact(img, SIZE)), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def build() -> nn.Module:
    """open_clip's ViT-L-14 image tower (GELU, as the DataComp weights), randomly initialised."""
    import open_clip
    from open_clip.model import _build_vision_tower

    cfg = open_clip.get_model_config(ARCH)
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=False)


def forward(visual: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    # dgm-eval's CLIPEncoder.forward: embeddings, transformer, ln_post of the
    # class token, and no projection.
    x = visual._embeds(x)
    x = visual.transformer(x)
    return {"features": visual.ln_post(x[:, 0])}


def convert(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """A whole open_clip CLIP checkpoint -> its image tower; a saved tower passes as is."""
    if not any(k.startswith("visual.") for k in state):
        return state
    return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}


SPEC = EncoderSpec(
    name="clip-vitl14",
    build=build,
    preprocess=preprocess,
    preprocess_version="pil-bicubic-224-nocrop;openai-clip-norm;v1",
    preprocessing="bicubic resize to 224x224, [0, 1], OpenAI CLIP mean/std normalisation",
    forward=forward,
    outputs={"features": 1024},
    ref="Radford et al. 2021 (CLIP); Gadre et al. 2023 (DataComp); Stein et al. 2023 (dgm-eval)",
    weight_files=(
        "CLIP-ViT-L-14-DataComp.XL-s13B-b90K.bin",
        "CLIP-ViT-L-14-DataComp.XL-s13B-b90K.safetensors",
    ),
    weight_source=f"{URL} (save it as CLIP-ViT-L-14-DataComp.XL-s13B-b90K.bin)",
    weight_url=URL,
    convert=convert,
)
