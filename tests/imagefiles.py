"""Real image files in every mode and format the tests need, written with Pillow or by hand."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 array with smooth structure and some noise, different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.02, 0.2, 3)
    channels = [127 + 100 * np.sin(freq[c] * (x + 0.7 * y) + phase[c]) for c in range(3)]
    rgb = np.stack(channels, axis=2) + rng.normal(0, 8, (height, width, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def save(path: Path, array: np.ndarray, **params) -> Path:
    """Save an RGB array with Pillow; the format follows the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **params)
    return path


def make_folder(
    folder: Path, n: int, size: tuple[int, int] = (48, 40), seed: int = 0, ext: str = ".png"
) -> Path:
    """A folder of `n` distinct images."""
    for i in range(n):
        save(folder / f"img_{i:03d}{ext}", pattern(*size, seed=seed * 1000 + i))
    return folder


def chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_16bit_rgb(array16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = array16.shape
    raw = b"".join(b"\x00" + array16[row].astype(">u2").tobytes() for row in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def with_chunk(png: bytes, extra: bytes) -> bytes:
    """PNG bytes with one more chunk placed right after IHDR."""
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + extra + png[ihdr_end:]


def with_header_size(png: bytes, width: int, height: int) -> bytes:
    """PNG bytes whose IHDR claims another size: a decompression bomb's header, cheaply."""
    ihdr = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + chunk(b"IHDR", ihdr) + png[33:]
