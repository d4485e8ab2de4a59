"""Stimuli as a participant's browser sees them: Chromium decodes exactly the ingested pixels."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from imagefiles import make_folder, pattern, save
from PIL import Image

from stimuli import ingest
from stimuli.manifest import read_manifest

pytestmark = pytest.mark.browser


@pytest.fixture
def served_stimuli(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    make_folder(tmp_path / "real", 6, size=(50, 40), seed=1)
    # A source with metadata (dpi): nothing of it may reach the browser.
    save(tmp_path / "gan" / "meta.png", pattern(48, 48, seed=3), dpi=(300, 300))
    make_folder(tmp_path / "gan", 4, size=(48, 48), seed=2)
    out = tmp_path / "stim"
    ingest(tmp_path / "real", {"gan": tmp_path / "gan"}, out, practice=1, catch=1, workers=1)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", out
    finally:
        server.shutdown()
        server.server_close()


DECODE_JS = """
async (url) => {
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  return {width: img.naturalWidth, height: img.naturalHeight, rgba: Array.from(data)};
}
"""


def test_chromium_shows_every_stimulus_at_its_size_with_exact_pixels(browser, served_stimuli):
    base, stimdir = served_stimuli
    page = browser.new_page()
    try:
        page.goto(f"{base}/images/")  # a same-origin page, so the canvas is readable
        for row in read_manifest(stimdir):
            shown = page.evaluate(DECODE_JS, f"{base}/images/{row['sha256']}.png")
            assert (shown["width"], shown["height"]) == (40, 40)
            rgba = np.array(shown["rgba"], dtype=np.uint8).reshape(40, 40, 4)
            expected = np.asarray(Image.open(stimdir / "images" / f"{row['sha256']}.png"))
            assert np.array_equal(rgba[:, :, :3], expected), row["original_path"]
    finally:
        page.close()
