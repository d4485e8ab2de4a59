"""`data2vec-vitl16`: data2vec ViT-L/16 (Baevski et al. 2022) from transformers, pooler output.

dgm-eval's data2vec encoder (`dgm_eval/models/data2vec.py` at commit d57a6d2)
loads `AutoModel.from_pretrained("facebook/data2vec-vision-large",
add_pooling_layer=True)` and returns its `pooler_output`
(`HuggingFaceTransformer`); its images go through
`AutoImageProcessor.from_pretrained("facebook/data2vec-vision-large")`
(`HuggingFaceTransformerEncoder.transform`),
a BEiT image processor whose published `preprocessor_config.json` says: resize to
224x224 with Pillow's bicubic filter (resample 3), no crop, rescale by 1/255,
normalise with mean 0.5 and std 0.5.

The network is transformers' `Data2VecVisionModel` with that checkpoint's
configuration (below): no absolute position embeddings, one relative position
bias shared by all layers, layer scale, no mean pooling. Without mean pooling,
the pooler output is the class token after the final LayerNorm: 1024-d.

The weight file is the checkpoint's `model.safetensors` (or `pytorch_model.bin`)
saved under the names below. Old files also hold `relative_position_index`
buffers, which transformers recomputes and ignores; `convert` drops them too.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

from analysis.encoders import EncoderSpec
from analysis.encoders.transforms import normalize, resize_exact, to_tensor

HF_REPO = "facebook/data2vec-vision-large"
URL = f"https://huggingface.co/{HF_REPO}/resolve/main/model.safetensors"
SIZE = 224
MEAN = STD = (0.5, 0.5, 0.5)
# facebook/data2vec-vision-large's config.json (the published base model's, at large width).
CONFIG = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "image_size": 224,
    "patch_size": 16,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "layer_scale_init_value": 0.1,
    "use_absolute_position_embeddings": False,
    "use_relative_position_bias": False,
    "use_shared_relative_position_bias": True,
    "use_mean_pooling": False,
    "use_mask_token": False,
}


def preprocess(img: Image.Image) -> torch.Tensor:
    """Image -> (3, 224, 224): bicubic resize without crop, [0, 1], mean 0.5 / std 0.5."""
    return normalize(to_tensor(resize_exact(img, SIZE)), MEAN, STD)


def build() -> nn.Module:
    """transformers' Data2VecVisionModel with the large checkpoint's configuration, random."""
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    return Data2VecVisionModel(Data2VecVisionConfig(**CONFIG), add_pooling_layer=True)


def forward(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"features": module(pixel_values=x).pooler_output}


def convert(state: dict[str, torch.Tensor], module: nn.Module) -> dict[str, torch.Tensor]:
    """The published names as they are, without the recomputed relative position indices."""
    return {k: v for k, v in state.items() if not k.endswith("relative_position_index")}


SPEC = EncoderSpec(
    name="data2vec-vitl16",
    build=build,
    preprocess=preprocess,
    preprocess_version="pil-bicubic-224-nocrop;half-norm;v1",
    preprocessing="bicubic resize to 224x224 (no crop), [0, 1], mean 0.5 / std 0.5 normalisation",
    forward=forward,
    outputs={"features": 1024},
    ref="Baevski et al. 2022 (data2vec); Stein et al. 2023 (dgm-eval)",
    weight_files=("data2vec-vision-large.safetensors", "data2vec-vision-large.bin"),
    weight_source=f"{URL} (save it as data2vec-vision-large.safetensors)",
    weight_url=URL,
    convert=convert,
)
