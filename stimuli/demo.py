"""A demo stimulus folder with known ground truth, cut from scikit-image's sample images.

Two datasets, `scenes` (colour photographs) and `textures` (greyscale surfaces),
each with real images and five synthetic "models" whose realism is planted:

    rank  model           planted_realism
    1     memoriser       0.95   near-copies of the dataset's own real images
    2     mild-degrade    0.75   light blur and light noise
    3     colour-shift    0.50   colour cast and boosted saturation
    4     strong-degrade  0.30   heavy blur and heavy noise
    5     pca-gauss       0.10   Gaussian samples in the PCA space of the real images

Real images are random square crops (side 96..256 px, half of them mirrored)
of the sample images. Each sample image is split into two halves: real crops
come from one half, the degraded and colour-shifted fakes from the other, so a
participant never sees the same content once as real and once as fake; only
the memoriser copies real images, on purpose, for memorisation detectors.

Everything is drawn from `numpy.random.default_rng` streams derived from the
seed and fixed stream numbers, so a seed gives byte-identical output folders.
The images come only from files inside the scikit-image wheel: no network.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from percept.errors import PerceptError
from stimuli.build import DatasetSpec, Folder, IngestReport, ingest_datasets
from stimuli.manifest import write_csv
from stimuli.parallel import parallel_map

GROUND_TRUTH = "ground_truth.csv"
GROUND_TRUTH_COLUMNS = ("dataset", "model", "realism_rank", "planted_realism", "recipe", "seed")

# 230 reals leave 225 main reals after 5 practice images; 205 fakes per model
# leave at least 204 main fakes, so a 100 real + 100 fake design fits.
REAL_PER_DATASET = 230
FAKE_PER_MODEL = 205

# Crop sides in px of the sample image; never below the written size, so real
# crops are only ever shrunk, never upscaled (which would blur the reals).
CROP_SIDES = (96, 256)
# Source images are written this much larger than the stimulus, so that ingest
# does the final resize exactly as it would for a researcher's images.
SOURCE_SCALE = 1.5
SIZES = (32, 128)

# The scikit-image sample images (function names in skimage.data) whose files
# ship inside the wheel; anything fetched with pooch would need the network.
DATASETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "scenes",
        (
            "astronaut",
            "coffee",
            "chelsea",
            "rocket",
            "hubble_deep_field",
            "immunohistochemistry",
            "stereo_motorcycle",
        ),
    ),
    ("textures", ("brick", "grass", "gravel", "moon")),
)

# Blur radii are in stimulus pixels (scaled up to the source size when applied);
# noise sds are in grey levels, added to the source images before ingest shrinks them.
MILD_BLUR, MILD_NOISE = 0.6, 3.0
STRONG_BLUR, STRONG_NOISE = 1.6, 14.0
CAST, SATURATION = 0.2, 1.5
MEMORISER_NOISE, NUDGE = 1.5, 0.25
PCA_COMPONENTS = 12


@dataclass(frozen=True)
class DemoModel:
    """One planted model: its name, how real its images look (1 = like the reals), its recipe."""

    name: str
    planted_realism: float
    recipe: str


MODELS = (
    DemoModel(
        "memoriser",
        0.95,
        f"near-copies of {FAKE_PER_MODEL} of the dataset's real crops: crop box moved by at "
        f"most {NUDGE} px of the sample image, Gaussian noise sd {MEMORISER_NOISE} grey levels",
    ),
    DemoModel(
        "mild-degrade",
        0.75,
        f"fresh crops, Gaussian blur radius {MILD_BLUR} stimulus px, "
        f"then noise sd {MILD_NOISE} grey levels before the final resize",
    ),
    DemoModel(
        "colour-shift",
        0.50,
        f"fresh crops, random colour cast (channel gains 1 +/- {CAST}, mean-preserving) "
        f"and saturation x{SATURATION}",
    ),
    DemoModel(
        "strong-degrade",
        0.30,
        f"fresh crops, Gaussian blur radius {STRONG_BLUR} stimulus px, "
        f"then noise sd {STRONG_NOISE} grey levels before the final resize",
    ),
    DemoModel(
        "pca-gauss",
        0.10,
        f"Gaussian sampler in the PCA space of the real crops (fitted at half the stimulus "
        f"size): mean + top {PCA_COMPONENTS} components times N(0, eigenvalue)",
    ),
)


@dataclass(frozen=True)
class Crop:
    """A square crop of one sample image: which image, the box in its pixels, mirrored or not."""

    source: int
    box: tuple[float, float, float, float]
    flip: bool


def make_demo(
    out: Path | str,
    *,
    seed: int = 0,
    size: int = 64,
    workers: int | None = None,
    progress: bool = False,
) -> IngestReport:
    """Write a demo stimulus folder with planted realism, and its `ground_truth.csv`, to `out`.

    Datasets `scenes` and `textures`, each with 230 real images and 205 images
    from each of the five models in `MODELS`, ingested at `size` px (32..128)
    with the default practice and catch images. The same seed gives a
    byte-identical folder, whatever `workers` (processes for making and for
    ingesting the images; default all cores). `progress` shows progress bars.
    Returns the ingest report; raises PerceptError for a bad size or seed.
    """
    if not SIZES[0] <= size <= SIZES[1]:
        raise PerceptError(f"demo --size {size}: choose a size from {SIZES[0]} to {SIZES[1]} px")
    if seed < 0:
        raise PerceptError(f"demo --seed {seed}: choose a seed of 0 or more")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="percept-demo-") as tmp:
        # One job per dataset and source: each draws from its own random stream, so
        # the images do not depend on which process makes them, or in what order.
        jobs = [
            _Job(Path(tmp) / name / folder, index, stream, seed, size)
            for index, (name, _) in enumerate(DATASETS)
            for stream, folder in enumerate(("real", *(m.name for m in MODELS)))
        ]
        parallel_map(
            _make_folder, jobs, workers=workers, progress=progress, desc="demo", unit="folder"
        )
        specs = [
            DatasetSpec(
                name,
                Folder(Path(tmp) / name / "real", f"demo/{name}/real"),
                tuple(
                    (m.name, Folder(Path(tmp) / name / m.name, f"demo/{name}/{m.name}"))
                    for m in MODELS
                ),
            )
            for name, _ in DATASETS
        ]
        report = ingest_datasets(specs, out, size=size, workers=workers, progress=progress)
    write_csv(out / GROUND_TRUTH, GROUND_TRUTH_COLUMNS, ground_truth(seed))
    return report


def ground_truth(seed: int) -> list[dict]:
    """The planted realism of every demo model, one row per dataset and model."""
    return [
        {
            "dataset": name,
            "model": model.name,
            "realism_rank": rank,
            "planted_realism": model.planted_realism,
            "recipe": model.recipe,
            "seed": seed,
        }
        for name, _ in DATASETS
        for rank, model in enumerate(MODELS, start=1)
    ]


def _rng(seed: int, dataset: int, stream: int) -> np.random.Generator:
    """An independent generator per dataset and stream (0 = reals, 1.. = models, 99 = halves)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(dataset, stream)))


@dataclass(frozen=True)
class _Job:
    """One folder of source images to write: dataset index, stream (0 = real, k = MODELS[k-1])."""

    folder: Path
    dataset: int
    stream: int
    seed: int
    size: int


def _make_folder(job: _Job) -> int:
    """Worker: write one folder of real or model PNGs; returns how many it wrote."""
    size, src = job.size, round(job.size * SOURCE_SCALE)
    # Every job redraws the plan from its own streams (cheap), so jobs share nothing.
    plan = _plan(job.dataset, job.seed, src)
    images = plan.images
    rng = _rng(job.seed, job.dataset, job.stream)
    model = "real" if job.stream == 0 else MODELS[job.stream - 1].name
    if model == "real":
        arrays = [_cut(images[c.source], c, src) for c in plan.real_crops]
    elif model == "memoriser":
        arrays = _memorise(images, plan.real_crops, src, rng)
    elif model == "pca-gauss":
        reals = [_cut(images[c.source], c, src) for c in plan.real_crops]
        arrays = _pca_gauss(reals, size, src, rng)
    else:
        crops = _fresh_crops(images, plan.fake_regions, src, FAKE_PER_MODEL, rng)
        scale = src / size
        transform = {
            "mild-degrade": lambda a, r: _degrade(a, MILD_BLUR * scale, MILD_NOISE, r),
            "colour-shift": _colour_shift,
            "strong-degrade": lambda a, r: _degrade(a, STRONG_BLUR * scale, STRONG_NOISE, r),
        }[model]
        arrays = [transform(_cut(images[c.source], c, src), rng) for c in crops]
    _write_all(job.folder, arrays)
    return len(arrays)


Region = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Plan:
    """A dataset's sample images, its real crops and the regions its fresh fake crops come from."""

    images: list[Image.Image]
    real_crops: list[Crop]
    real_regions: list[Region]
    fake_regions: list[Region]


def _plan(dataset: int, seed: int, src: int) -> _Plan:
    images = [_sample_image(name) for name in DATASETS[dataset][1]]
    # Which half of each sample image holds the reals is drawn per seed, so the
    # reals are not always, say, the astronaut's face.
    halves = _halves(images, _rng(seed, dataset, 99))
    real_regions = [h[0] for h in halves]
    real_crops = _real_crops(images, real_regions, src, _rng(seed, dataset, 0))
    return _Plan(images, real_crops, real_regions, [h[1] for h in halves])


@functools.cache
def _sample_image(name: str) -> Image.Image:
    """One of scikit-image's bundled sample images as an RGB Pillow image."""
    try:
        from skimage import data
    except ImportError as e:
        raise PerceptError(
            f"the demo needs scikit-image for its sample images ({e}); pip install scikit-image"
        ) from None
    try:
        array = getattr(data, name)()
    except Exception as e:  # a missing file, or a pooch download that must not happen
        raise PerceptError(
            f"scikit-image sample image {name!r} is not available ({e}); "
            "reinstall scikit-image, whose wheel ships it"
        ) from None
    if name == "stereo_motorcycle":
        array = array[0]  # (left, right, disparity): the right view would repeat the left.
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array[:, :, :3].astype(np.uint8)), "RGB")


def _halves(images: list[Image.Image], rng: np.random.Generator) -> list[tuple[Region, Region]]:
    """(real region, fake region) per image: its two halves across the longer side."""
    result = []
    for img in images:
        width, height = img.size
        if width >= height:
            first, second = (0, 0, width // 2, height), (width // 2, 0, width, height)
        else:
            first, second = (0, 0, width, height // 2), (0, height // 2, width, height)
        result.append((first, second) if rng.random() < 0.5 else (second, first))
    return result


def _random_crop(source: int, region: Region, src: int, rng: np.random.Generator) -> Crop:
    left, top, right, bottom = region
    low = max(CROP_SIDES[0], src)
    high = min(CROP_SIDES[1], right - left, bottom - top)
    if high < low:
        raise PerceptError(f"demo sample image {source} is too small for {src} px crops")
    side = int(rng.integers(low, high + 1))
    x = int(rng.integers(left, right - side + 1))
    y = int(rng.integers(top, bottom - side + 1))
    return Crop(source, (x, y, x + side, y + side), bool(rng.random() < 0.5))


def _real_crops(
    images: list[Image.Image], regions: list[Region], src: int, rng: np.random.Generator
) -> list[Crop]:
    """REAL_PER_DATASET crops, spread evenly over the images, no two nearly the same."""
    crops: list[Crop] = []
    for i in range(REAL_PER_DATASET):
        source = i % len(images)
        # Redraw crops within 8 px of an earlier one, so every real image is visibly
        # different, not just different in its bytes.
        for _ in range(1000):
            crop = _random_crop(source, regions[source], src, rng)
            if not any(_near(crop, other) for other in crops):
                break
        else:
            raise PerceptError(f"demo: cannot find {REAL_PER_DATASET} distinct crops; report a bug")
        crops.append(crop)
    return crops


def _near(a: Crop, b: Crop, tolerance: int = 8) -> bool:
    return (
        a.source == b.source
        and a.flip == b.flip
        and all(abs(p - q) <= tolerance for p, q in zip(a.box, b.box, strict=True))
    )


def _fresh_crops(
    images: list[Image.Image], regions: list[Region], src: int, n: int, rng: np.random.Generator
) -> list[Crop]:
    """`n` crops from the fake half of each image, so none shows what a real crop shows."""
    return [_random_crop(i % len(images), regions[i % len(images)], src, rng) for i in range(n)]


def _cut(img: Image.Image, crop: Crop, src: int) -> np.ndarray:
    """The crop resized to `src` px square, mirrored if the crop says so, as uint8 RGB."""
    out = img.resize((src, src), Image.Resampling.LANCZOS, box=crop.box)
    if crop.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def _noisy(array: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    values = array.astype(np.float64) + rng.normal(0.0, sd, array.shape)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _memorise(
    images: list[Image.Image], real_crops: list[Crop], src: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Near-copies of FAKE_PER_MODEL different real crops: a sub-pixel nudge and faint noise."""
    arrays = []
    for i in rng.choice(len(real_crops), FAKE_PER_MODEL, replace=False):
        crop = real_crops[int(i)]
        width, height = images[crop.source].size
        left, top, right, bottom = crop.box
        # A sub-pixel nudge (at most NUDGE of a sample-image pixel, inside the image):
        # the pixels change everywhere, the content does not.
        dx, dy = (float(v) for v in rng.uniform(-NUDGE, NUDGE, 2))
        dx = min(max(dx, -left), width - right)
        dy = min(max(dy, -top), height - bottom)
        moved = Crop(crop.source, (left + dx, top + dy, right + dx, bottom + dy), crop.flip)
        arrays.append(_noisy(_cut(images[crop.source], moved, src), MEMORISER_NOISE, rng))
    return arrays


def _degrade(array: np.ndarray, radius: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    blurred = Image.fromarray(array).filter(ImageFilter.GaussianBlur(radius))
    return _noisy(np.asarray(blurred), sd, rng)


def _colour_shift(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour cast (gains off grey, random direction) on boosted saturation."""
    saturated = np.asarray(ImageEnhance.Color(Image.fromarray(array)).enhance(SATURATION))
    # A unit direction orthogonal to grey (1, 1, 1) keeps the mean gain at 1, so the
    # image changes colour but not brightness.
    angle = rng.uniform(0.0, 2.0 * np.pi)
    u = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)
    v = np.array([1.0, 1.0, -2.0]) / np.sqrt(6.0)
    gains = 1.0 + CAST * (np.cos(angle) * u + np.sin(angle) * v)
    values = saturated.astype(np.float64) * gains
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _pca_gauss(
    reals: list[np.ndarray], size: int, src: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """FAKE_PER_MODEL samples of a Gaussian on the top PCA components of the real crops.

    Fitted at half the stimulus size, through the n x n Gram matrix (far smaller
    than the pixel covariance). With a few hundred crops even the top components
    carry some of the crops' fine detail; fitting at half size removes it, so
    the samples are as blurry as a low-rank Gaussian model of images should be.
    """
    side = size // 2
    x = np.stack(
        [
            np.asarray(Image.fromarray(a).resize((side, side), Image.Resampling.LANCZOS)).ravel()
            for a in reals
        ]
    ).astype(np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    centred = x - mean
    eigenvalues, vectors = np.linalg.eigh(centred @ centred.T / (n - 1))
    top = np.argsort(eigenvalues)[::-1][:PCA_COMPONENTS]
    vectors = vectors[:, top]
    # eigh's sign of each eigenvector is arbitrary; fix it so the samples depend on the seed only.
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    vectors = vectors * signs
    # Unit component k is centred.T @ v_k / sqrt((n - 1) lambda_k); times sqrt(lambda_k) z_k
    # this gives mean + centred.T @ (V z) / sqrt(n - 1).
    z = rng.standard_normal((FAKE_PER_MODEL, PCA_COMPONENTS))
    samples = mean + (z @ vectors.T) @ centred / np.sqrt(n - 1)
    arrays = []
    for sample in samples:
        small = np.clip(np.rint(sample), 0, 255).astype(np.uint8).reshape(side, side, 3)
        big = Image.fromarray(small).resize((src, src), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(big))
    return arrays


def _write_all(folder: Path, arrays: list[np.ndarray]) -> Path:
    """Save arrays as numbered PNGs; numbered names keep `original_path` the same every run."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, array in enumerate(arrays):
        # Fast compression: these files live only until ingest has read them.
        Image.fromarray(array, "RGB").save(folder / f"{i:04d}.png", compress_level=1)
    return folder
