"""FD heatmaps: which regions of a generated image drive its Fréchet distance (Grad-CAM).

After dgm-eval's `heatmaps/` (Stein et al. 2023; github.com/layer6ai-labs/dgm-eval at
d57a6d2, `dgm_eval/heatmaps/gradcam.py`), itself after Kynkäänniemi et al. 2023
("The role of ImageNet classes in Fréchet Inception Distance"):

1. FD of the generated set is written as a function of one of its images: the
   other images' statistics are fixed, and the image's feature, computed with
   gradients, is folded in by the rank-one update of the mean and covariance
   (`GradCAM.get_map`, lines 23-65). The real statistics are fixed.
2. FD is back-propagated to a layer of the encoder (`MODEL_TO_LAYER_NAME_MAP`,
   lines 84-93): Inception's last block `Mixed_7c` (8 x 8), the input LayerNorm
   of DINOv2's last block and of CLIP's 12th block, whose patch tokens are
   reshaped to the patch grid with the class token dropped (`_get_heatmap_from_grads`,
   lines 67-81).
3. The map is sum_c w_c A_c with w_c the mean over positions of the *squared*
   gradient of channel c (line 78; classic Grad-CAM averages the gradient and
   applies a ReLU), times the sign dgm-eval gives each family
   (`MODEL_TO_TRANSFORM_MAP`, lines 95-104: negated for the ViTs); then it is
   scaled to [0, 1] by its minimum and maximum (`heatmaps_utils.zero_one_scaling`).

Departures (docs/metrics.md, "FD heatmaps"): FD's trace term is the project's
symmetric eigenvalue form (`analysis.metrics.fd`) in float64 instead of
`torch.linalg.eig` of the non-symmetric product plus 1e-12 per eigenvalue; the
map is resized bilinearly to the original image (the encoders here resize the
whole image, no crop) and scaled after resizing, not resized with Lanczos after
8-bit rounding; the overlay is an even blend with matplotlib's viridis
(dgm-eval adds OpenCV's parula to the image and rescales).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from PIL import Image
from torch import nn

from analysis.encoders import RANDOM_PREFIX, Encoder, get_spec
from analysis.metrics.fd import Gaussian, significant
from analysis.metrics.validation import as_feature_pair, require_samples
from percept.errors import PerceptError

# --- Where Grad-CAM looks, per encoder family -------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The layer Grad-CAM reads in one encoder, and how its output becomes a (B, C, h, w) grid.

    `sign` multiplies the map: dgm-eval negates the ViTs' token activations
    (`MODEL_TO_TRANSFORM_MAP`), which decides which end of the min-max scale is hot.
    """

    layer: Callable[[nn.Module], nn.Module]
    grid: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    sign: float
    where: str


def tokens_to_grid(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """(B, prefix + g*g, C) tokens -> (B, C, g, g) with the `prefix` (class) tokens dropped.

    Patch tokens are in row-major order (timm's and open_clip's patch embedding
    flatten the grid row by row), so patch p sits at row p // g, column p % g.
    """
    patches = tokens[:, prefix:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens are not a square grid")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def _conv_grid(module: nn.Module, activations: torch.Tensor) -> torch.Tensor:
    return activations


def _timm_vit_grid(module: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return tokens_to_grid(tokens, module.num_prefix_tokens)


def _open_clip_grid(visual: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    if not getattr(visual.transformer, "batch_first", True):
        tokens = tokens.transpose(0, 1)  # (L, B, C) -> (B, L, C)
    return tokens_to_grid(tokens, 1)


INCEPTION = Target(
    layer=lambda m: m.Mixed_7c,
    grid=_conv_grid,
    sign=1.0,
    where="output of Mixed_7c, 2048 x 8 x 8 (dgm-eval's blocks.3.2)",
)
DINOV2 = Target(
    layer=lambda m: m.blocks[-1].norm1,
    grid=_timm_vit_grid,
    sign=-1.0,
    where="patch tokens after the last block's norm1, 16 x 16 "
    "(dgm-eval's blocks.23.norm1 of ViT-L)",
)
CLIP = Target(
    # dgm-eval's resblocks.11: the 12th of ViT-L/14's 24 blocks, not the last.
    layer=lambda m: m.transformer.resblocks[11].ln_1,
    grid=_open_clip_grid,
    sign=-1.0,
    where="patch tokens after block 12's ln_1, 16 x 16 (dgm-eval's resblocks.11.ln_1)",
)

TARGETS: dict[str, Target] = {
    "inception": INCEPTION,
    "inception-clean": INCEPTION,
    "dinov2-vits14": DINOV2,
    "dinov2-vitb14": DINOV2,
    "dinov2-vitl14": DINOV2,
    "dinov2-vitg14": DINOV2,
    "clip-vitl14": CLIP,
}


def target_for(name: str) -> Target:
    """The Grad-CAM target of encoder `name` (or `random:name`); a PerceptError when none."""
    get_spec(name)  # an unknown name gets the registry's own message
    base = name.removeprefix(RANDOM_PREFIX)
    if base not in TARGETS:
        raise PerceptError(
            f"encoder {name}: no FD heatmaps for it; they exist for {', '.join(TARGETS)} "
            f"(and their {RANDOM_PREFIX} variants)"
        )
    return TARGETS[base]


# --- FD as a differentiable function of one generated image's feature ------------------------


class ReplacedFD:
    """FD of the real set against the generated set with one generated row replaced.

    ``fd(i, feature)`` is FD(real, generated with row i := feature) as a float64
    torch scalar, differentiable in `feature`; ``fd.without(i)`` is FD against
    the generated set without row i (dgm-eval's `original_fid`). With x the stored
    row i, n the generated count, m, S their mean and covariance, and u0 = x - m',
    u = feature - m' (m' the mean of the others):

        mean = m + (feature - x) / n,    cov = S + (u u^T - u0 u0^T) / n

    which is dgm-eval's leave-one-out update (gradcam.py lines 41-45) written
    from the full set's statistics. The trace term is that of
    `analysis.metrics.fd`: with F the real covariance's factor, the square roots
    of the eigenvalues of F^T cov F = P + (a a^T - b b^T) / n, where P = F^T S F
    is computed once and a = F^T u, b = F^T u0; eigenvalues at rounding level
    (`significant`) are dropped. Each call costs O(d k) plus a k x k
    eigenproblem (k = d, or the real count when that is smaller).
    """

    def __init__(self, real: ArrayLike, generated: ArrayLike) -> None:
        real, generated = as_feature_pair(real, generated, ("real", "generated"))
        require_samples(real, "real", 2, "a covariance")
        require_samples(generated, "generated", 3, "FD without one of its images")
        r, g = Gaussian.fit(real), Gaussian.fit(generated)
        factor = r.factor
        self.n = g.n
        self._generated = generated
        self._real_mean = torch.from_numpy(r.mean)
        self._real_trace = r.trace
        self._mean = g.mean
        self._trace = g.trace
        self._factor = torch.from_numpy(np.ascontiguousarray(factor))
        self._p = torch.from_numpy(factor.T @ (g.cov @ factor))

    def _parts(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = self._generated[i]
        others_mean = (self.n * self._mean - x) / (self.n - 1)
        return x, others_mean, x - others_mean

    def __call__(self, i: int, feature: torch.Tensor) -> torch.Tensor:
        n = self.n
        x, others_mean, u0 = self._parts(i)
        feature = feature.to(torch.float64)
        u = feature - torch.from_numpy(others_mean)
        u0 = torch.from_numpy(u0)
        mean = torch.from_numpy(self._mean) + (feature - torch.from_numpy(x)) / n
        trace = self._trace + (u @ u - u0 @ u0) / n
        a, b = self._factor.T @ u, self._factor.T @ u0
        product = self._p + (torch.outer(a, a) - torch.outer(b, b)) / n
        return self._fd(mean, trace, product)

    def without(self, i: int) -> float:
        """FD against the generated set without its row i."""
        n = self.n
        _, others_mean, u0 = self._parts(i)
        u0 = torch.from_numpy(u0)
        trace = ((n - 1) * self._trace - (n - 1) / n * float(u0 @ u0)) / (n - 2)
        b = self._factor.T @ u0
        product = ((n - 1) * self._p - (n - 1) / n * torch.outer(b, b)) / (n - 2)
        return float(self._fd(torch.from_numpy(others_mean), trace, product))

    def _fd(self, mean: torch.Tensor, trace, product: torch.Tensor) -> torch.Tensor:
        diff = self._real_mean - mean
        eigenvalues = torch.linalg.eigvalsh(product)  # reads one triangle only
        keep = torch.from_numpy(significant(eigenvalues.detach().numpy()))
        return diff @ diff + self._real_trace + trace - 2 * eigenvalues[keep].sqrt().sum()


# --- Grad-CAM ---------------------------------------------------------------------------------


@dataclass
class FDGradCAM:
    """FD heatmaps of some generated images, with what FD says of each.

    `maps[j]` is an (H, W) float64 array in [0, 1] at the size of image j;
    `fd_with[j]` is FD with image j's feature as computed here (equal to the full
    set's FD up to float32 rounding in the network); `fd_without[j]` is FD without
    image j; `gradient_norm[j]` is the L2 norm of dFD/d(network input) for image j.
    """

    maps: list[np.ndarray]
    fd_with: np.ndarray
    fd_without: np.ndarray
    gradient_norm: np.ndarray

    @property
    def fd_contribution(self) -> np.ndarray:
        """FD with each image minus FD without it (dgm-eval's delta_fid)."""
        return self.fd_with - self.fd_without


def gradcam(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """(C, h, w) activations and gradients -> (h, w) map: sum_c mean(grad_c^2) A_c (dgm-eval)."""
    weights = gradients.pow(2).mean(dim=(1, 2))
    return torch.einsum("c,chw->hw", weights, activations)


def scaled_to_image(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """An (h, w) map resized bilinearly to `size` (width, height), then scaled to [0, 1].

    Min-max scaling as dgm-eval's `zero_one_scaling`; a constant map (nothing
    to show) becomes all zeros.
    """
    width, height = size
    resized = F.interpolate(
        cam[None, None].to(torch.float64),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
    )[0, 0]
    low, high = resized.min(), resized.max()
    if not high > low:
        return np.zeros((height, width))
    return ((resized - low) / (high - low)).cpu().numpy()


def fd_gradcam(
    encoder: Encoder,
    images: Sequence[Image.Image],
    real_features: ArrayLike,
    generated_features: ArrayLike,
    positions: Sequence[int],
    *,
    device: str | torch.device | None = "cpu",
    target: Target | None = None,
    progress: bool = False,
) -> FDGradCAM:
    """Grad-CAM maps of FD for `images`, which are rows `positions` of `generated_features`.

    FD is that of `real_features` against `generated_features` (both (N, d) from
    `encoder`), with each image's row replaced by its feature computed here with
    gradients (see `ReplacedFD`). `target` defaults to the encoder's entry in
    `TARGETS`. `device` runs the network (None or "auto": the GPU when there is
    one); FD itself runs in float64 on the CPU.
    """
    from tqdm import tqdm

    from analysis.features import _device

    if len(images) != len(positions):
        raise ValueError(f"{len(images)} images but {len(positions)} positions")
    target = target or target_for(encoder.name)
    replaced = ReplacedFD(real_features, generated_features)
    for p in positions:
        if not 0 <= p < replaced.n:
            raise ValueError(f"position {p} is not a row of the {replaced.n} generated features")
    device = _device(device)
    module = encoder.module().to(device)
    layer = target.layer(module)
    maps, with_, without, norms = [], [], [], []
    seen: list[torch.Tensor] = []  # the layer's output in the current forward pass
    hook = layer.register_forward_hook(lambda _module, _input, output: seen.append(output))
    pairs = list(zip(images, positions, strict=True))
    try:
        for image, position in tqdm(pairs, unit="img", disable=None if progress else True):
            seen.clear()
            x = encoder.spec.preprocess(image).unsqueeze(0).to(device).requires_grad_(True)
            with torch.enable_grad():
                feature = encoder.spec.forward(module, x)["features"][0]
                fd = replaced(position, feature.double().cpu())
                grad_layer, grad_input = torch.autograd.grad(fd, [seen[-1], x])
            activations = target.grid(module, seen[-1].detach())[0].double()
            cam = target.sign * gradcam(activations, target.grid(module, grad_layer)[0].double())
            maps.append(scaled_to_image(cam, image.size))
            with_.append(float(fd.detach()))
            without.append(replaced.without(position))
            norms.append(float(grad_input.double().norm()))
    finally:
        hook.remove()
    return FDGradCAM(maps, np.array(with_), np.array(without), np.array(norms))


# --- Pictures ---------------------------------------------------------------------------------

COLORMAP = "viridis"
OVERLAY_ALPHA = 0.5


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """The image blended with the heatmap in viridis (dark blue 0 to yellow 1), as 8-bit RGB."""
    from matplotlib import colormaps

    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255
    if heatmap.shape != rgb.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} is not the image's size {rgb.shape[:2]}")
    colours = colormaps[COLORMAP](heatmap)[..., :3]
    blended = (1 - alpha) * rgb + alpha * colours  # both in [0, 1], so no clipping
    return Image.fromarray(np.rint(blended * 255).astype(np.uint8))


def save_overlay(image: Image.Image, heatmap: np.ndarray, path: str | Path) -> None:
    """Write `overlay(image, heatmap)` as a PNG."""
    overlay(image, heatmap).save(path, format="PNG")
