"""`clip-vitl14-336`: OpenAI CLIP ViT-L/14 at 336 px, unit-length image embeddings (for CMMD).

CMMD (Jayasumana et al. 2024) embeds images with
`openai/clip-vit-large-patch14-336` through transformers, as its published code
(google-research/google-research, `cmmd/embedding.py` and `cmmd/io_util.py`):

- `io_util._center_crop_and_resize`: the centred square of side min(w, h), its
  corner at ((w - side) // 2, (h - side) // 2), resized to 336x336 by Pillow's
  bicubic filter on 8-bit values;
- `compute_embeddings_for_dir`: / 255 (float32);
- `embedding.ClipEmbeddingModel.embed`: a bicubic resize to 336 (the identity on
  a 336 px input, so percept leaves it out), CLIP's image processor with only its
  normalisation (OpenAI CLIP mean/std), the image embedding after the visual
  projection, divided by its Euclidean norm.

The network is transformers' `CLIPVisionModelWithProjection` with that
checkpoint's vision configuration (QuickGELU), so the published file loads
with its own names; the text tower's weights in a whole-CLIP file are skipped.
The feature is the 768-d unit-length embedding.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, normalize, to_tensor

HF_REPO = "openai/clip-vit-large-patch14-336"
URL = f"https://huggingface.co/{HF_REPO}/resolve/main/model.safetensors"
SIZE = 336
CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": SIZE,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
# The whole-CLIP file's entries that are not part of the image tower.
TEXT_PREFIXES = ("text_model.", "text_projection.", "logit_scale")


def centre_square_resize(img: Image.Image, size: int) -> Image.Image:
    """CMMD's `_center_crop_and_resize`: centred square of side min(w, h), bicubic to size."""
    img = img.convert("RGB")
    w, h = img.size
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.Resampling.BICUBIC)


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 336, 336): centre square, bicubic to 336, [0, 1], OpenAI CLIP mean/std."""
    return normalize(to_tensor(centre_square_resize(img, SIZE)), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def build() -> nn.Module:
    """transformers' CLIP ViT-L/14@336 vision tower with its projection, randomly initialised."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    module = CLIPVisionModelWithProjection(CLIPVisionConfig(**CONFIG))
    # A buffer outside the state dict: give it its value on the CPU even when the
    # network is built on the meta device for loading.
    embeddings = module.vision_model.embeddings
    positions = torch.arange(embeddings.num_positions, device="cpu").expand((1, -1))
    embeddings.register_buffer("position_ids", positions, persistent=False)
    return module


def forward(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    embeds = module(pixel_values=x).image_embeds
    return {"features": embeds / torch.linalg.norm(embeds, dim=-1, keepdim=True)}


def convert(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """A whole CLIP file -> its image tower and projection; a saved tower passes as is."""
    return {
        k: v
        for k, v in state.items()
        if not k.startswith(TEXT_PREFIXES) and k != "vision_model.embeddings.position_ids"
    }


SPEC = EncoderSpec(
    name="clip-vitl14-336",
    build=build,
    preprocess=preprocess,
    preprocess_version="pil-centre-square-bicubic-336;openai-clip-norm;v1",
    preprocessing=(
        "centred square crop, bicubic resize to 336x336, [0, 1], OpenAI CLIP mean/std "
        "normalisation (CMMD's)"
    ),
    forward=forward,
    outputs={"features": 768},
    ref="Radford et al. 2021 (CLIP); Jayasumana et al. 2024 (CMMD)",
    weight_files=("clip-vit-large-patch14-336.safetensors", "clip-vit-large-patch14-336.bin"),
    weight_source=f"{URL} (save it as clip-vit-large-patch14-336.safetensors)",
    weight_url=URL,
    convert=convert,
)
