"""Equal byte sizes: every image a study serves is padded to one length.

A PNG's length follows from how well its pixels compress, and that differs
between real photographs, some models' fakes and (very much) the blocky catch
images: a bot could tell them apart from the `Content-Length` header alone,
without looking at a pixel. So the study server pads each stimulus to the
same length with one private ancillary chunk, `paDd`, of zero bytes, placed
just before IEND. Decoders skip ancillary chunks they do not know (browsers,
Pillow), so the pixels are untouched; the stimulus folder itself stays
unpadded (its files are named by the hash of the unpadded bytes).

Every padded image gets the chunk, the largest too (with an empty payload), so
all of them also share one chunk layout: IHDR, IDAT..., paDd, IEND.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from stimuli.images import png_chunks

PAD_CHUNK = "paDd"
# A chunk's length, type and CRC around its payload.
CHUNK_OVERHEAD = 12
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def padded_length(lengths: Iterable[int]) -> int:
    """The one byte length for images of these unpadded lengths: the longest plus a chunk."""
    return max(lengths) + CHUNK_OVERHEAD


def pad_png(data: bytes, length: int) -> bytes:
    """`data` (a PNG ending in IEND, unpadded) grown to exactly `length` bytes with paDd."""
    if not data.endswith(_IEND):
        raise ValueError("not a PNG file that ends with its IEND chunk")
    if any(kind == PAD_CHUNK for kind, _ in png_chunks(data)):
        raise ValueError("already padded")
    payload = length - len(data) - CHUNK_OVERHEAD
    if payload < 0:
        raise ValueError(f"{len(data)} bytes do not fit in {length} with a {PAD_CHUNK} chunk")
    kind = PAD_CHUNK.encode("ascii")
    body = bytes(payload)
    chunk = payload.to_bytes(4, "big") + kind + body
    chunk += zlib.crc32(kind + body).to_bytes(4, "big")
    return data[: -len(_IEND)] + chunk + _IEND


def unpad_png(data: bytes) -> bytes:
    """The PNG bytes before `pad_png`: its paDd chunk taken out (ValueError if none)."""
    chunks = png_chunks(data)
    if len(chunks) < 2 or chunks[-2][0] != PAD_CHUNK or chunks[-1][0] != "IEND":
        raise ValueError(f"no {PAD_CHUNK} chunk just before IEND")
    pad = CHUNK_OVERHEAD + len(chunks[-2][1])
    return data[: -len(_IEND) - pad] + _IEND
