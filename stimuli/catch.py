"""Catch images: stimuli that are unmistakably fake at any exposure, for attention checks.

Recipe (documented in docs/stimuli.md): take a real stimulus, average it down to
an 8x8 grid of flat cells, invert every colour, shuffle the cells, and scale the
grid back up with hard edges. The result has the real image's colours and the
stimulus format and size, but no object, no texture and blocky edges, so a
participant who is paying attention calls it fake even at 100 ms.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

GRID = 8


def catch_image(real: Image.Image) -> Image.Image:
    """The catch image derived from one real RGB stimulus; the same input gives the same output."""
    size = real.size
    cells = np.asarray(real.convert("RGB").resize((GRID, GRID), Image.Resampling.BOX))
    cells = 255 - cells.reshape(GRID * GRID, 3)
    # Seeded by the pixels, so a re-run shuffles the same way.
    seed = int.from_bytes(hashlib.sha256(real.tobytes()).digest()[:8], "big")
    cells = cells[np.random.default_rng(seed).permutation(GRID * GRID)]
    grid = Image.fromarray(np.ascontiguousarray(cells.reshape(GRID, GRID, 3)), "RGB")
    return grid.resize(size, Image.Resampling.NEAREST)
