"""Turning any supported image file into a square, 8-bit RGB PNG with nothing but pixels.

Everything a participant's browser receives goes through `encode_png`, so real
and generated images cannot differ in format, mode, colour profile or
metadata, only in their pixels.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from percept.errors import PerceptError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Transparent pixels are composited over mid grey, the background the trial
# runner shows, so a transparent border looks the same as the page around it.
BACKGROUND = (128, 128, 128)

# Pillow's default limit (about 89 megapixels, a 9,500 px square): far above any
# generated image, at the size of large camera photographs.
MAX_PIXELS = 89_478_485

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_SRGB = ImageCms.createProfile("sRGB")


class BadImageError(PerceptError):
    """One input file that cannot become a stimulus, and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def open_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image lazily (header only), refusing non-images and decompression bombs."""
    path = str(path)
    if Path(path).stat().st_size == 0:
        raise BadImageError(path, "file is empty (0 bytes)")
    # Pillow's own guard (a warning above its limit, an error above twice that) is
    # aligned with ours; the warning is ours to turn into a message with the size.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:
        raise BadImageError(path, _bomb_reason(None, max_pixels)) from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image file that Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImageError(path, f"cannot read image header ({e})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise BadImageError(path, _bomb_reason((width, height), max_pixels))
    if getattr(img, "n_frames", 1) > 1:
        n = img.n_frames
        img.close()
        raise BadImageError(path, f"has {n} frames; percept takes still images only")
    return img


def _bomb_reason(size: tuple[int, int] | None, max_pixels: int) -> str:
    shown = f"{size[0]}x{size[1]} px " if size else ""
    return (
        f"image {shown}is larger than the limit of {max_pixels:,} pixels "
        "(a decompression bomb, or a photograph to downscale first)"
    )


def image_size(path: Path | str, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Width and height from the file header, without decoding the pixels."""
    with open_image(path, max_pixels) as img:
        return img.size


def load_rgb(path: Path | str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a file into an upright 8-bit sRGB image, whatever its mode and profile."""
    img = open_image(path, max_pixels)
    try:
        with img:
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_srgb(img, str(path))
            return to_rgb(img)
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImageError(str(path), f"cannot decode: truncated or corrupt ({e})") from None


def _to_srgb(img: Image.Image, path: str) -> Image.Image:
    """Apply an embedded colour profile, so a wide-gamut photograph looks as intended."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return img
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
            return img
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, profile, _SRGB, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        raise BadImageError(
            path, f"cannot apply its embedded ICC colour profile ({e}); re-save it in sRGB"
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha over `BACKGROUND`, 16-bit and float rescaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("1", "L", "CMYK", "YCbCr", "HSV", "LAB"):
        return img.convert("RGB")
    if mode == "P":
        has_alpha = "transparency" in img.info or img.palette.mode == "RGBA"
        return _over_background(img.convert("RGBA")) if has_alpha else img.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return _over_background(img.convert("RGBA"))
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _grey_array_to_rgb(np.asarray(img), mode)
    raise ValueError(f"unsupported image mode {mode!r}")


def _over_background(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _grey_array_to_rgb(values: np.ndarray, mode: str) -> Image.Image:
    """Rescale 16-bit, 32-bit integer or float greyscale to 0..255."""
    values = values.astype(np.float64)
    if mode == "F":
        # Float images are taken as 0..1 when they fit, else as 0..255.
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
    elif mode == "I" and values.size and np.max(values) <= 255:
        scale = 1.0
    else:
        scale = 255.0 / 65535.0
    grey = np.clip(np.rint(np.nan_to_num(values * scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))


def square(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize to `size` px with Lanczos; never upscales."""
    width, height = img.size
    side = min(width, height)
    if side < size:
        raise ValueError(f"image is {width}x{height} px, smaller than the target size {size} px")
    left, top = (width - side) // 2, (height - side) // 2
    box = (left, top, left + side, top + side)
    if side == size:
        return img.crop(box) if (width, height) != (size, size) else img
    return img.resize((size, size), Image.Resampling.LANCZOS, box=box)


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes holding only IHDR, IDAT and IEND: no text, EXIF, ICC, gamma or dpi chunks."""
    if img.mode != "RGB":
        raise ValueError(f"encode_png takes RGB images, got {img.mode}")
    # A fresh image carries no `info`, so Pillow has no metadata to write.
    bare = Image.frombytes("RGB", img.size, img.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def normalise(path: Path | str, size: int, max_pixels: int = MAX_PIXELS) -> bytes:
    """The stimulus PNG bytes for one input file: decoded, RGB, squared, re-encoded."""
    img = load_rgb(path, max_pixels)
    try:
        img = square(img, size)
    except ValueError as e:
        raise BadImageError(str(path), f"{e} (--size, or the smallest real image)") from None
    return encode_png(img)


def png_chunks(data: bytes) -> list[tuple[str, bytes]]:
    """The (type, payload) chunks of a PNG file; raises ValueError if it is not one."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file (wrong signature)")
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        payload = data[pos + 8 : pos + 8 + length]
        if len(payload) != length or pos + 12 + length > len(data):
            raise ValueError(f"truncated PNG chunk {kind}")
        chunks.append((kind, payload))
        pos += 12 + length
        if kind == "IEND":
            break
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes after the end of the PNG (IEND)")
    return chunks
