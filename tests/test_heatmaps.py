"""FD heatmaps: the differentiable FD equals the metric, Grad-CAM finds a planted region,
every supported encoder family gives maps of the image's size, and `percept heatmaps` writes
overlays and its index. Encoders are randomly initialised (or built here, tiny)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from imagefiles import make_folder, pattern
from PIL import Image
from torch import nn

from analysis.encoders import ENCODERS, Encoder, EncoderSpec, resolve
from analysis.encoders.transforms import to_tensor
from analysis.heatmaps import (
    CLIP,
    ReplacedFD,
    Target,
    fd_gradcam,
    overlay,
    target_for,
    tokens_to_grid,
)
from analysis.metrics.fd import fd
from percept.cli import cli
from percept.errors import PerceptError


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --- The differentiable FD ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_real", "n_generated", "d"),
    [(300, 200, 64), (40, 200, 64), (300, 30, 64), (20, 25, 64)],  # N > d and N <= d, each side
)
def test_replaced_fd_equals_the_metric_with_and_without_the_image(n_real, n_generated, d):
    rng = np.random.default_rng(n_real + n_generated)
    real = rng.normal(size=(n_real, d)) ** 2  # skewed, as ReLU features
    generated = 1.3 * rng.normal(size=(n_generated, d)) ** 2 + 0.2
    replaced = ReplacedFD(real, generated)
    for i in (0, 7, n_generated - 1):
        same = float(replaced(i, torch.from_numpy(generated[i])))
        assert relative(same, fd(real, generated)) <= 1e-9
        assert relative(replaced.without(i), fd(real, np.delete(generated, i, axis=0))) <= 1e-9
        other = generated.copy()
        other[i] = rng.normal(size=d)
        moved = float(replaced(i, torch.from_numpy(other[i])))
        assert relative(moved, fd(real, other)) <= 1e-9


def test_gradient_of_replaced_fd_is_the_metrics_finite_difference():
    rng = np.random.default_rng(5)
    real, generated = rng.normal(size=(40, 6)), 1.2 * rng.normal(size=(30, 6)) + 0.3
    i, h = 4, 1e-5
    feature = torch.from_numpy(generated[i] + 0.1).requires_grad_(True)
    (gradient,) = torch.autograd.grad(ReplacedFD(real, generated)(i, feature), [feature])
    numeric = []
    for k in range(6):
        plus, minus = generated.copy(), generated.copy()
        plus[i], minus[i] = generated[i] + 0.1, generated[i] + 0.1
        plus[i, k] += h
        minus[i, k] -= h
        numeric.append((fd(real, plus) - fd(real, minus)) / (2 * h))
    np.testing.assert_allclose(gradient.numpy(), numeric, rtol=1e-6, atol=1e-8)


def test_replaced_fd_needs_three_generated_images():
    with pytest.raises(ValueError, match="generated has 2 samples"):
        ReplacedFD(np.ones((5, 3)), np.ones((2, 3)))


# --- Grad-CAM on a planted encoder ----------------------------------------------------------

SIDE = 32


class Halves(nn.Module):
    """Brightness, as two channels: one lit on the left half only, one on the right half only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(dim=1)
        left = torch.zeros_like(grey)
        left[..., : SIDE // 2] = 1
        return torch.stack([grey * left, grey * (1 - left)], dim=1)


class OneHalf(nn.Module):
    """Features from one half of the image only: a fixed projection of one `Halves` channel."""

    def __init__(self, half: int) -> None:
        super().__init__()
        self.half = half
        self.split = Halves()
        self.project = nn.Linear(SIDE * SIDE, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.split(x)[:, self.half].flatten(1))


def planted_encoder(half: int) -> Encoder:
    spec = EncoderSpec(
        name=f"half-{half}",
        build=lambda: OneHalf(half),
        preprocess=lambda img: to_tensor(img.resize((SIDE, SIDE))),
        preprocess_version="test",
        preprocessing="test",
        forward=lambda module, x: {"features": module(x)},
        outputs={"features": 5},
        ref="test",
    )
    return Encoder(spec.name, spec, None, "none")


PLANTED = Target(layer=lambda m: m.split, grid=lambda m, a: a, sign=1.0, where="test")


def features_of(encoder: Encoder, images: list[Image.Image]) -> np.ndarray:
    with torch.no_grad():
        batch = torch.stack([encoder.spec.preprocess(img) for img in images])
        return encoder.spec.forward(encoder.module(), batch)["features"].double().numpy()


@pytest.mark.parametrize("half", [0, 1])
def test_the_map_lies_on_the_half_the_features_see(half):
    real = [Image.fromarray(pattern(SIDE, SIDE, seed=i)) for i in range(12)]
    generated = [Image.fromarray(pattern(SIDE, SIDE, seed=100 + i) // 2) for i in range(8)]
    encoder = planted_encoder(half)
    result = fd_gradcam(
        encoder,
        generated[:2],
        features_of(encoder, real),
        features_of(encoder, generated),
        [0, 1],
        target=PLANTED,
    )
    for heatmap in result.maps:
        assert heatmap.shape == (SIDE, SIDE)
        left, right = slice(None, SIDE // 2), slice(SIDE // 2, None)
        seen, unseen = (left, right) if half == 0 else (right, left)
        assert np.all(heatmap[:, unseen] == 0)  # FD's gradient never reaches that channel
        assert heatmap[:, seen].max() == 1 and heatmap[:, seen].mean() > 0.2
    assert np.all(result.gradient_norm > 0)
    assert np.all(np.isfinite(result.fd_contribution))


def test_patch_tokens_become_the_patch_grid_row_by_row():
    tokens = torch.arange(1 + 16, dtype=torch.float64).view(1, 17, 1).repeat(1, 1, 3)
    grid = tokens_to_grid(tokens, prefix=1)
    assert grid.shape == (1, 3, 4, 4)
    assert grid[0, 2, 1, 3] == 1 + 1 * 4 + 3  # patch at row 1, column 3, after the class token
    with pytest.raises(ValueError, match="not a square grid"):
        tokens_to_grid(tokens[:, :-1], prefix=1)
    # open_clip before 2.24 ran its blocks sequence-first, (L, B, C), as dgm-eval's CLIP.
    sequence_first = SimpleNamespace(transformer=SimpleNamespace(batch_first=False))
    assert torch.equal(CLIP.grid(sequence_first, tokens.transpose(0, 1)), grid)


# --- The supported encoder families, randomly initialised -----------------------------------


def tiny_dinov2() -> nn.Module:
    """timm's DINOv2 ViT as dinov2-vits14's, 2 blocks of width 64: the same layers, fast."""
    import timm

    return timm.create_model(
        "vit_small_patch14_dinov2",
        pretrained=False,
        img_size=224,
        num_classes=0,
        depth=2,
        embed_dim=64,
        num_heads=2,
    )


def tiny_clip() -> nn.Module:
    """open_clip's vision tower as clip-vitl14's, at width 64 (12 blocks: block 12 exists)."""
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    cfg = CLIPVisionCfg(layers=12, width=64, head_width=32, patch_size=14, image_size=224)
    return _build_vision_tower(32, cfg, quick_gelu=False)


# The ViTs at width 64 with the layers Grad-CAM reads: the same code paths, built in a blink.
TINY = {
    "dinov2-vits14": {"build": tiny_dinov2, "outputs": {"features": 64}},
    "clip-vitl14": {"build": tiny_clip, "outputs": {"features": 64}},
}


def random_encoder(name: str) -> Encoder:
    base = name.removeprefix("random:")
    if base not in TINY:
        return resolve(name)
    return Encoder(name, dataclasses.replace(ENCODERS[base], **TINY[base]), None, "random")


@pytest.mark.parametrize("name", ["random:inception", "random:dinov2-vits14", "random:clip-vitl14"])
def test_maps_have_the_images_size_and_lie_in_0_1(name):
    encoder = random_encoder(name)
    real = [Image.fromarray(pattern(48, 40, seed=i)) for i in range(2)]
    generated = [Image.fromarray(pattern(48, 40, seed=50 + i)) for i in range(2)]
    generated.append(Image.fromarray(pattern(30, 52, seed=99)))  # tall: a transposed map fails
    result = fd_gradcam(
        encoder,
        generated[2:],
        features_of(encoder, real),
        features_of(encoder, generated),
        [2],
    )
    (heatmap,) = result.maps
    assert heatmap.shape == (52, 30)
    assert np.all(np.isfinite(heatmap))
    assert heatmap.min() == 0 and heatmap.max() == 1
    assert np.isfinite(result.fd_contribution[0]) and result.gradient_norm[0] > 0


def test_unsupported_and_unknown_encoders_are_clear_errors():
    with pytest.raises(PerceptError, match=r"no FD heatmaps for it; they exist for inception"):
        target_for("random:convnext-large")
    with pytest.raises(PerceptError, match="no FD heatmaps"):
        target_for("pixel")
    with pytest.raises(PerceptError, match="unknown encoder 'dinov3'"):
        target_for("dinov3")


def test_overlay_is_the_image_blended_with_viridis():
    img = Image.fromarray(np.full((4, 6, 3), 200, np.uint8))
    heatmap = np.zeros((4, 6))
    heatmap[:, 3:] = 1
    out = np.asarray(overlay(img, heatmap)).astype(int)
    # viridis(0) is dark purple (68, 1, 84), viridis(1) yellow (253, 231, 37): halves with 200.
    np.testing.assert_allclose(out[0, 0], [134, 100, 142], atol=1)
    np.testing.assert_allclose(out[0, 5], [227, 216, 118], atol=1)
    with pytest.raises(ValueError, match="not the image's size"):
        overlay(img, heatmap.T)


# --- percept heatmaps -----------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(cli, ["heatmaps", *map(str, args)])


@pytest.fixture
def folders(tmp_path, monkeypatch):
    # The CLI tests check files and messages, not the network: a tiny one keeps them fast.
    tiny = dataclasses.replace(ENCODERS["dinov2-vits14"], **TINY["dinov2-vits14"])
    monkeypatch.setitem(ENCODERS, "dinov2-vits14", tiny)
    real = make_folder(tmp_path / "real", 8, size=(48, 40), seed=1)
    generated = make_folder(tmp_path / "generated", 5, size=(48, 40), seed=2)
    return real, generated


def test_cli_writes_overlays_and_the_index(folders, tmp_path):
    real, generated = folders
    out = tmp_path / "maps"
    result = invoke(
        "--encoder", "random:dinov2-vits14", "--real", real, "--images", generated,
        "--out", out, "--limit", 2, "--workers", 0, "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "RANDOMLY INITIALISED" in result.output and "not pretrained" in result.output
    index = pd.read_csv(out / "heatmaps.csv")
    assert list(index["overlay"]) == ["000_img_000.png", "001_img_001.png"]
    assert set(index["encoder"]) == {"random:dinov2-vits14"}
    assert not index["encoder_pretrained"].any()
    assert index["image"].iloc[1].endswith("img_001.png")
    np.testing.assert_allclose(index["fd_contribution"], index["fd"] - index["fd_without_image"])
    for name in index["overlay"]:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (48, 40)


def test_cli_errors_are_one_clear_line(folders, tmp_path):
    real, generated = folders
    out = tmp_path / "maps"
    for args, message in [
        (["--encoder", "random:convnext-large"], "no FD heatmaps for it"),
        (["--encoder", "dinov3"], "unknown encoder 'dinov3'"),
        (["--real", tmp_path / "nowhere"], "nowhere: no such file or folder"),
    ]:
        base = {"--encoder": "random:dinov2-vits14", "--real": real}
        base.update(dict(zip(args[::2], args[1::2], strict=True)))
        given = [x for pair in base.items() for x in pair]
        result = invoke(*given, "--images", generated, "--out", out)
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
    assert not out.exists()

    (generated / "img_002.png").write_bytes(b"not a png at all")
    result = invoke(
        "--encoder", "random:dinov2-vits14", "--real", real, "--images", generated,
        "--out", out, "--workers", 0, "--no-cache",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "img_002.png: not an image file" in result.output
