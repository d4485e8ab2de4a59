"""Preprocessing shared by the encoder families, written to equal torchvision's transforms.

dgm-eval feeds its encoders PIL images through torchvision's `Resize`,
`CenterCrop`, `ToTensor` and `Normalize`. These functions do the same with
Pillow and torch alone (the tests check equality on fixed images), so the
DataLoader workers need no torchvision and each step is visible here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> (3, H, W) float32 in [0, 1], as torchvision's `ToTensor`."""
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy())
    return x.permute(2, 0, 1).contiguous().to(torch.float32).div(255)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel, as torchvision's `Normalize` (float32 arithmetic)."""
    m = torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return x.sub(m).div(s)


def resize_exact(img: Image.Image, size: int) -> Image.Image:
    """Bicubic resize to size x size, ignoring the aspect ratio (`Resize((size, size))`)."""
    return img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def resize_short_side(
    img: Image.Image, short: int, resample: Image.Resampling = Image.Resampling.BICUBIC
) -> Image.Image:
    """Resize the shorter side to `short`, keeping the aspect ratio: torchvision's `Resize(short)`.

    torchvision's rounding: the longer side becomes int(short * long / short_side);
    an image already of that size is returned unchanged.
    """
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample)
    return img


def resize_short_side_center_crop(img: Image.Image, short: int, crop: int) -> Image.Image:
    """Bicubic resize of the shorter side to `short`, then a centred `crop` square.

    `Resize(short)` then `CenterCrop(crop)` of torchvision, with its rounding:
    the longer side becomes int(short * long / short_side), and the crop starts
    at round((side - crop) / 2).
    """
    img = resize_short_side(img, short)
    new_w, new_h = img.size
    top = round((new_h - crop) / 2.0)
    left = round((new_w - crop) / 2.0)
    return img.crop((left, top, left + crop, top + crop))


def clean_resize(img: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) float32 in 0..255: each channel resized bicubic in float ('F' mode).

    clean-fid's "clean" resize (and dgm-eval's `resizer.pil_resize`): Pillow's
    antialiased bicubic filter on floats, no rounding to 8 bits, clipped to 0..255.
    """
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    channels = [
        np.asarray(Image.fromarray(rgb[:, :, c]).resize((size, size), Image.Resampling.BICUBIC))
        for c in range(3)
    ]
    return np.stack(channels, axis=2).clip(0, 255)


def hwc_to_tensor(x: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array -> (3, H, W) float32 tensor, values unchanged."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(2, 0, 1).contiguous()
