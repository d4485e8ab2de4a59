"""Decoding and normalisation: every mode and format becomes the same clean 8-bit RGB PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from imagefiles import chunk, pattern, png_16bit_rgb, save, with_chunk, with_header_size
from PIL import Image, ImageCms

from stimuli.images import (
    BACKGROUND,
    BadImageError,
    encode_png,
    image_size,
    load_rgb,
    normalise,
    png_chunks,
    square,
)

RGB = pattern(40, 32, seed=1)


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "RGB"
        return np.asarray(img)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_formats_keep_pixels(tmp_path, ext):
    path = save(tmp_path / f"a{ext}", RGB)
    assert np.array_equal(np.asarray(load_rgb(path)), RGB)


@pytest.mark.parametrize(
    ("ext", "params"), [(".jpg", {"quality": 95}), (".jpeg", {}), (".webp", {"quality": 90})]
)
def test_lossy_formats_decode_close(tmp_path, ext, params):
    path = save(tmp_path / f"a{ext}", RGB, **params)
    out = np.asarray(load_rgb(path)).astype(int)
    assert out.shape == RGB.shape
    assert np.abs(out - RGB).mean() < 12


def test_lossless_webp(tmp_path):
    path = save(tmp_path / "a.webp", RGB, lossless=True)
    assert np.array_equal(np.asarray(load_rgb(path)), RGB)


def test_greyscale_and_bilevel_become_equal_channels(tmp_path):
    grey = RGB[:, :, 0]
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    Image.fromarray(grey > 128).save(tmp_path / "b.png")
    out = np.asarray(load_rgb(tmp_path / "l.png"))
    assert np.array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))
    bilevel = np.asarray(load_rgb(tmp_path / "b.png"))
    assert set(np.unique(bilevel)) == {0, 255}
    assert np.array_equal(bilevel[:, :, 0] == 255, grey > 128)


def test_palette_without_and_with_transparency(tmp_path):
    img = Image.fromarray(RGB).quantize(16)
    img.save(tmp_path / "p.png")
    expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "p.png")), expected)
    img.save(tmp_path / "pt.png", transparency=0)
    out = np.asarray(load_rgb(tmp_path / "pt.png"))
    transparent = np.asarray(img) == 0
    assert transparent.any()
    assert (out[transparent] == BACKGROUND).all()
    assert np.array_equal(out[~transparent], expected[~transparent])


def test_rgba_is_composited_over_the_fixed_background(tmp_path):
    alpha = np.zeros(RGB.shape[:2], np.uint8)
    alpha[:, 20:] = 255
    alpha[:, 10:20] = 128
    Image.fromarray(np.dstack([RGB, alpha]), "RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_rgb(tmp_path / "a.png")).astype(int)
    assert (out[:, :10] == BACKGROUND).all()
    assert np.array_equal(out[:, 20:], RGB[:, 20:])
    half = (RGB[:, 10:20].astype(int) * 128 + np.array(BACKGROUND) * 127) / 255
    assert np.abs(out[:, 10:20] - half).max() <= 1


def test_greyscale_with_alpha(tmp_path):
    grey = RGB[:, :, 1]
    Image.fromarray(np.dstack([grey, np.zeros_like(grey)]), "LA").save(tmp_path / "la.png")
    assert (np.asarray(load_rgb(tmp_path / "la.png")) == BACKGROUND).all()


def test_cmyk_jpeg_and_tiff(tmp_path):
    cmyk = Image.fromarray(RGB).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=95)
    cmyk.save(tmp_path / "c.tif")
    tif = np.asarray(load_rgb(tmp_path / "c.tif")).astype(int)
    assert np.abs(tif - np.asarray(cmyk.convert("RGB"))).max() == 0
    jpg = np.asarray(load_rgb(tmp_path / "c.jpg")).astype(int)
    assert np.abs(jpg - RGB).mean() < 12


def test_16bit_greyscale_is_rescaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 40 * 32).reshape(32, 40).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")
    out = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert out.min() == 0 and out.max() == 255
    assert np.array_equal(out[:, :, 0], np.rint(values / 257).astype(np.uint8))


def test_16bit_rgb_png(tmp_path):
    wide = RGB.astype(np.uint16) * 257
    (tmp_path / "rgb16.png").write_bytes(png_16bit_rgb(wide))
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "rgb16.png")), RGB)


def test_float_and_32bit_tiff(tmp_path):
    grey = RGB[:, :, 2]
    Image.fromarray(grey.astype(np.float32) / 255, "F").save(tmp_path / "f.tif")
    Image.fromarray(grey.astype(np.int32), "I").save(tmp_path / "i.tif")
    for name in ("f.tif", "i.tif"):
        assert np.array_equal(np.asarray(load_rgb(tmp_path / name))[:, :, 0], grey)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    save(tmp_path / "r.jpg", RGB, exif=exif, quality=100)
    out = load_rgb(tmp_path / "r.jpg")
    assert out.size == (RGB.shape[0], RGB.shape[1])


def test_srgb_profile_is_left_as_is_and_a_broken_one_is_refused(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save(tmp_path / "s.png", RGB, icc_profile=srgb)
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "s.png")), RGB)
    save(tmp_path / "x.png", RGB, icc_profile=b"not a profile at all" * 10)
    with pytest.raises(BadImageError, match="ICC colour profile"):
        load_rgb(tmp_path / "x.png")


def test_square_crops_the_centre_and_never_upscales():
    img = Image.fromarray(pattern(60, 40))
    cropped = square(img, 40)
    assert cropped.size == (40, 40)
    assert np.array_equal(np.asarray(cropped), pattern(60, 40)[:, 10:50])
    assert square(img, 20).size == (20, 20)
    with pytest.raises(ValueError, match="smaller than the target size 41"):
        square(img, 41)


def test_encoded_png_has_only_pixel_chunks_and_is_deterministic(tmp_path):
    path = save(tmp_path / "meta.png", RGB, pnginfo=None, dpi=(300, 300))
    data = normalise(path, 32)
    assert [kind for kind, _ in png_chunks(data)] == ["IHDR", "IDAT", "IEND"]
    assert data == normalise(path, 32)
    assert decoded(data).shape == (32, 32, 3)
    assert encode_png(Image.fromarray(RGB)) == encode_png(Image.fromarray(RGB.copy()))


def test_bad_files_raise_a_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    good = save(tmp_path / "good.png", RGB).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "bomb.png").write_bytes(with_header_size(good, 30000, 30000))
    cases = {
        "empty.png": "empty",
        "text.png": "not an image",
        "cut.png": "truncated",
        "bomb.png": "decompression bomb",
    }
    for name, words in cases.items():
        with pytest.raises(BadImageError, match=words) as info:
            normalise(tmp_path / name, 16)
        assert info.value.path.endswith(name)
    with pytest.raises(BadImageError, match="smaller than the target size 64"):
        normalise(tmp_path / "good.png", 64)


def test_bomb_is_refused_from_the_header_without_decoding(tmp_path):
    good = save(tmp_path / "good.png", RGB).read_bytes()
    (tmp_path / "big.png").write_bytes(with_header_size(good, 12000, 10000))
    with pytest.raises(BadImageError, match="12000x10000"):
        image_size(tmp_path / "big.png")
    assert image_size(tmp_path / "big.png", max_pixels=200_000_000) == (12000, 10000)


def test_png_chunks_sees_extra_chunks_and_trailing_bytes():
    data = encode_png(Image.fromarray(RGB))
    extra = with_chunk(data, chunk(b"tEXt", b"Comment\x00fake"))
    assert [k for k, _ in png_chunks(extra)] == ["IHDR", "tEXt", "IDAT", "IEND"]
    with pytest.raises(ValueError, match="after the end"):
        png_chunks(data + b"hidden")
    with pytest.raises(ValueError, match="not a PNG"):
        png_chunks(b"\xff\xd8\xff\xe0")
