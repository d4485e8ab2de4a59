"""`percept metrics`: the chosen metrics of every model against the real images, per encoder.

Writes one tidy row per (dataset, model, encoder, metric): dataset, model, encoder,
encoder_pretrained, metric, value, std. Features come from `analysis.features`
(cached); the metrics from `analysis.metrics` (docs/metrics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from analysis.cli_options import extraction_options
from percept.errors import PerceptError

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("dataset", "model", "encoder", "encoder_pretrained", "metric", "value", "std")
RESAMPLES_FILE = "metric_resamples.csv"
NORMALITY_FILE = "feature_normality.csv"
KD_SUBSET_SIZE = 1000  # torch-fidelity's and dgm-eval's; smaller sets use all their samples


@dataclass
class Images:
    """Image files with their SHA-256s, in a fixed order."""

    paths: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)

    def add(self, path: str, sha: str) -> None:
        self.paths.append(path)
        self.sha256.append(sha)


@dataclass
class Dataset:
    """One dataset's real images and each model's."""

    name: str
    real: Images
    models: dict[str, Images]


def default_metrics() -> list[str]:
    from analysis.metrics import METRICS

    return [name for name, metric in METRICS.items() if metric.default]


def metric_names() -> list[str]:
    from analysis.metrics import METRICS

    return list(METRICS)


@click.command("metrics")
@click.option(
    "--encoder",
    "encoders",
    multiple=True,
    required=True,
    metavar="NAME",
    help="Encoder (repeatable): inception, inception-clean, dinov2-vitl14, clip-vitl14, "
    "clip-vitl14-336 (for cmmd), convnext-large, data2vec-vitl16, mae-vitl16, swav-rn50, "
    "simclr-rn50, pixel, or random:NAME for a randomly initialised network (docs/encoders.md).",
)
@click.option(
    "--weights",
    "weights",
    multiple=True,
    metavar="[ENCODER=]FILE",
    help="An encoder's weight file (repeatable); plain FILE when there is one --encoder.",
)
@click.option(
    "--real",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="The real images: a folder, or a stimulus folder (or its manifest.csv), whose "
    "datasets and models are then used unless --model is given.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME=DIR",
    help="A model's generated images (repeatable).",
)
@click.option(
    "--dataset",
    help="Dataset name [default: the datasets of a stimulus folder, else the --real folder's "
    "name]; with a stimulus folder, use only this dataset.",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    type=click.Choice(metric_names()),
    help="Metric to compute (repeatable) [default: the cheap ones: "
    f"{', '.join(default_metrics())}].",
)
@click.option("--seed", default=0, show_default=True, help="Seed of every random step.")
@click.option(
    "--max-images",
    type=click.IntRange(min=2),
    help="Use at most this many images per real set and per model, drawn with --seed "
    "(quick runs on a CPU, e.g. the demo) [default: all].",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also recompute every metric on this many bootstrap resamples of each model's "
    "images and, separately, of the real images: std and 95% interval columns in --out, "
    f"the raw values in {RESAMPLES_FILE} beside it (volatility, docs/metrics.md).",
)
@click.option(
    "--diagnose",
    is_flag=True,
    help="Also test each encoder's features of every image set for multivariate normality "
    f"(Mardia on the top PCA components), written to {NORMALITY_FILE} beside --out.",
)
@click.option(
    "--out",
    default="metrics.csv",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The tidy CSV to write.",
)
@extraction_options
@click.option(
    "--allow-download",
    is_flag=True,
    help="Download published weight files that are missing into the weights folder.",
)
def metrics(
    encoders: tuple[str, ...],
    weights: tuple[str, ...],
    real: Path,
    models: tuple[str, ...],
    dataset: str | None,
    metrics: tuple[str, ...],
    seed: int,
    max_images: int | None,
    resamples: int,
    diagnose: bool,
    out: Path,
    batch_size: int,
    workers: int | None,
    device: str,
    cache_dir: Path | None,
    no_cache: bool,
    allow_download: bool,
) -> None:
    """Metrics of each model's images against the real images, for every encoder.

    Either --real is a stimulus folder (from `percept stimuli ingest` or `stimuli
    demo`): every dataset and model in its manifest is measured (catch images
    left out); or --real is a folder of real images and each --model NAME=DIR a
    folder of one model's images. Features are cached: a second run with another
    --metric computes no features again.
    """
    from analysis.distributed import compute_on_ranks, is_main_process
    from analysis.encoders import resolve
    from analysis.features import cache_root
    from stimuli.manifest import write_csv

    if out.suffix.lower() != ".csv":
        raise PerceptError(f"--out {out}: the output is a CSV file; name it e.g. metrics.csv")
    chosen = list(dict.fromkeys(metrics)) or default_metrics()
    chosen = check_encoder_bound_metrics(chosen, encoders, explicit=bool(metrics))
    datasets = plan(real, parse_models(models), dataset)
    if max_images:
        subsample(datasets, max_images, seed)
    weight_files = parse_weights(weights, encoders)
    cache = False if no_cache else cache_dir

    rows: list[dict[str, object]] = []
    resampled: list[pd.DataFrame] = []
    normality: list[dict[str, object]] = []
    for name in dict.fromkeys(encoders):
        encoder = resolve(
            name,
            weights=weight_files.get(name),
            allow_download=allow_download,
            memo_dir=cache_root(cache),
        )
        click.echo(encoder.describe(), err=True)
        everything = Images()
        for ds in datasets:
            for images in (ds.real, *ds.models.values()):
                for path, sha in zip(images.paths, images.sha256, strict=True):
                    everything.add(path, sha)
        result = compute_on_ranks(
            encoder,
            everything.paths,
            sha256s=everything.sha256,
            batch_size=batch_size,
            workers=workers,
            device=device,
            cache_dir=cache,
            progress=True,
        )
        if result is None:
            continue  # a torchrun rank other than 0: rank 0 measures and writes --out
        # Rows were computed in the order of `everything`: cut them back per image set.
        start = 0
        outputs: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for ds in datasets:
            for model, images in (("", ds.real), *ds.models.items()):
                stop = start + len(images.paths)
                outputs[ds.name, model] = {k: v[start:stop] for k, v in result.outputs.items()}
                start = stop
        pretrained = "false" if encoder.random else "true"
        for ds in datasets:
            click.echo(f"{ds.name}: metrics of {len(ds.models)} models on {encoder.name}", err=True)
            for model in ds.models:
                for metric in chosen:
                    rows += measure(
                        metric,
                        outputs[ds.name, ""],
                        outputs[ds.name, model],
                        explicit=bool(metrics),
                        seed=seed,
                        where=f"dataset {ds.name}, model {model}, encoder {encoder.name}",
                        base={
                            "dataset": ds.name,
                            "model": model,
                            "encoder": encoder.name,
                            "encoder_pretrained": pretrained,
                        },
                    )
            if resamples:
                click.echo(
                    f"{ds.name}: {resamples} bootstrap resamples of each side on {encoder.name}",
                    err=True,
                )
                resampled.append(
                    resample_dataset(
                        ds, encoder.name, outputs, chosen, resamples, seed, explicit=bool(metrics)
                    )
                )
            if diagnose:
                normality += diagnose_dataset(ds, encoder.name, pretrained, outputs, seed)
    if not is_main_process():
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    # `percept report` reads these files from beside metrics.csv: one left by an earlier
    # run would describe other values, so a run that does not write one removes it.
    for wanted, name in ((resamples, RESAMPLES_FILE), (diagnose, NORMALITY_FILE)):
        stale = out.parent / name
        if not wanted and stale.is_file():
            stale.unlink()
            click.echo(f"note: removed {stale} of an earlier run (it would not match)", err=True)
    columns = COLUMNS
    if resamples:
        rows, columns = add_resample_columns(rows, resampled, out.parent / RESAMPLES_FILE)
    write_csv(out, columns, rows)
    if diagnose:
        from analysis.normality import COLUMNS as NORMALITY_COLUMNS

        write_csv(out.parent / NORMALITY_FILE, NORMALITY_COLUMNS, normality)
        click.echo(f"{out.parent / NORMALITY_FILE}: normality of {len(normality)} feature sets")
    n_models = sum(len(ds.models) for ds in datasets)
    click.echo(
        f"{out}: {len(rows)} rows ({n_models} models in {len(datasets)} datasets x "
        f"{len(set(encoders))} encoders; metrics {', '.join(chosen)})"
    )
    random = [name for name in dict.fromkeys(encoders) if name.startswith("random:")]
    if random:
        click.echo(
            f"note: {', '.join(random)} randomly initialised, not pretrained; "
            "do not judge models by these metrics",
            err=True,
        )


def resample_dataset(
    ds: Dataset,
    encoder: str,
    outputs: dict[tuple[str, str], dict[str, np.ndarray]],
    chosen: list[str],
    resamples: int,
    seed: int,
    *,
    explicit: bool,
) -> pd.DataFrame:
    """metric_resamples.csv rows of one dataset on one encoder (analysis/volatility.py)."""
    from analysis import volatility
    from analysis.metrics import METRICS

    def compute(metric: str, real: dict, fake: dict, side: str) -> list[tuple[str, float]]:
        found = measure(
            metric,
            real,
            fake,
            explicit=explicit,
            seed=seed,
            where=f"dataset {ds.name}, encoder {encoder}, a bootstrap resample",
            base={"encoder": encoder},
        )
        return [(str(row["metric"]), float(str(row["value"]))) for row in found]

    fakes = {model: outputs[ds.name, model] for model in ds.models}
    frame = volatility.resample(
        chosen,
        outputs[ds.name, ""],
        fakes,
        compute,
        resamples=resamples,
        seed=seed,
        real_side=[m for m in chosen if METRICS[m].inputs == "real+fake"],
    )
    return frame.assign(dataset=ds.name, encoder=encoder)[list(volatility.RESAMPLE_COLUMNS)]


def add_resample_columns(
    rows: list[dict[str, object]], resampled: list[pd.DataFrame], path: Path
) -> tuple[list[dict[str, object]], tuple[str, ...]]:
    """Write the raw resamples to `path`; rows with the std and interval of each side."""
    import pandas as pd

    from analysis import volatility

    everything = pd.concat(resampled, ignore_index=True)
    everything.to_csv(path, index=False, float_format="%.17g")
    stats = volatility.summary(everything).set_index(["dataset", "model", "encoder", "metric"])
    added = []
    for row in rows:
        key = (row["dataset"], row["model"], row["encoder"], row["metric"])
        found = stats.loc[key] if key in stats.index else None
        added.append(
            {
                **row,
                **{
                    c: "" if found is None or pd.isna(found[c]) else repr(float(found[c]))
                    for c in volatility.SUMMARY_COLUMNS
                },
            }
        )
    click.echo(f"{path}: {len(everything)} resampled values", err=True)
    for row in volatility.failures(everything).itertuples(index=False):
        click.echo(
            f"note: {row.metric} is undefined on {row.undefined} of {row.of} {row.side}-side "
            "resamples (duplicates drawn with replacement); those are NaN in the file and "
            "left out of its std and interval",
            err=True,
        )
    return added, (*COLUMNS, *volatility.SUMMARY_COLUMNS)


def diagnose_dataset(
    ds: Dataset,
    encoder: str,
    pretrained: str,
    outputs: dict[tuple[str, str], dict[str, np.ndarray]],
    seed: int,
) -> list[dict[str, object]]:
    """feature_normality.csv rows of one dataset on one encoder: the real set, each model."""
    from analysis.normality import diagnose

    rows = []
    for model in ("", *ds.models):
        found = diagnose(outputs[ds.name, model]["features"], seed=seed)
        rows.append(
            {
                "dataset": ds.name,
                "source": "fake" if model else "real",
                "model": model,
                "encoder": encoder,
                "encoder_pretrained": pretrained,
                **{
                    key: repr(value) if isinstance(value, float) else value
                    for key, value in found.items()
                },
            }
        )
    return rows


def subsample(datasets: list[Dataset], limit: int, seed: int) -> None:
    """Keep at most `limit` images of each set, drawn reproducibly from `seed`."""
    import random

    rng = random.Random(seed)
    for ds in datasets:
        for images in (ds.real, *ds.models.values()):
            if len(images.paths) > limit:
                keep = sorted(rng.sample(range(len(images.paths)), limit))
                images.paths = [images.paths[i] for i in keep]
                images.sha256 = [images.sha256[i] for i in keep]


def measure(
    metric: str,
    real: dict[str, np.ndarray],
    fake: dict[str, np.ndarray],
    *,
    explicit: bool,
    seed: int,
    where: str,
    base: dict[str, object],
) -> list[dict[str, object]]:
    """Rows of one metric for one model; a ValueError of the metric becomes a PerceptError."""
    from analysis.metrics import METRICS, evaluate

    if not fits_encoder(metric, str(base["encoder"])):
        return []  # defined on another encoder's features (CMMD: clip-vitl14-336)
    options: dict[str, object] = {}
    logits = None
    if METRICS[metric].inputs == "logits":
        names = [name for name in fake if name.startswith("logits")]
        if not names:
            if not explicit:
                return []
            raise PerceptError(
                f"{where}: {metric} needs classifier logits, which this encoder does not give; "
                "use --encoder inception"
            )
        logits = fake[names[0]]
    if metric == "kd":
        options["subset_size"] = min(KD_SUBSET_SIZE, len(real["features"]), len(fake["features"]))
    try:
        results = evaluate(
            metric, real["features"], fake["features"], logits=logits, seed=seed, **options
        )
    except ValueError as e:
        raise PerceptError(f"{where}, metric {metric}: {e}") from None
    return [
        {**base, "metric": name, "value": repr(value), "std": "" if math.isnan(std) else repr(std)}
        for name, value, std in results
    ]


def metric_encoder(metric: str) -> str | None:
    """The one encoder a metric is defined on (CMMD: CLIP ViT-L/14@336), or None for any."""
    if metric == "cmmd":
        from analysis.metrics.cmmd import ENCODER

        return ENCODER
    return None


def fits_encoder(metric: str, encoder: str) -> bool:
    """Whether `metric` is computed on `encoder`'s features (a random: variant counts)."""
    wanted = metric_encoder(metric)
    return wanted is None or encoder.removeprefix("random:") == wanted


def check_encoder_bound_metrics(
    chosen: list[str], encoders: tuple[str, ...], explicit: bool
) -> list[str]:
    """The metrics to compute: one bound to an encoder that is not given is left out of a
    default run and an error when named; where it runs on some encoders only, a note says so.
    """
    kept = []
    for metric in chosen:
        wanted = metric_encoder(metric)
        if wanted is not None and not any(fits_encoder(metric, name) for name in encoders):
            if explicit:
                raise PerceptError(
                    f"--metric {metric} is defined on {wanted} embeddings (docs/metrics.md); "
                    f"add --encoder {wanted} (or random:{wanted} for a test run)"
                )
            continue
        if wanted is not None and any(not fits_encoder(metric, name) for name in encoders):
            click.echo(f"note: {metric} is computed on {wanted} only (its definition)", err=True)
        kept.append(metric)
    return kept


def parse_models(models: tuple[str, ...]) -> dict[str, Path]:
    """NAME=DIR pairs; a clear error for a malformed one, a repeated name or a missing folder."""
    parsed: dict[str, Path] = {}
    for item in models:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise PerceptError(f"--model {item!r}: write it as NAME=DIR, e.g. --model ldm=data/ldm")
        if name in parsed:
            raise PerceptError(f"--model {name} is given twice; give each model once")
        if not Path(folder).is_dir():
            raise PerceptError(f"--model {name}={folder}: no such folder")
        parsed[name] = Path(folder)
    return parsed


def parse_weights(weights: tuple[str, ...], encoders: tuple[str, ...]) -> dict[str, Path]:
    """ENCODER=FILE pairs; a plain FILE belongs to the only --encoder."""
    parsed: dict[str, Path] = {}
    for item in weights:
        name, sep, file = item.partition("=")
        if sep and name in encoders:
            parsed[name] = Path(file)
        elif len(set(encoders)) == 1:
            parsed[encoders[0]] = Path(item)
        else:
            raise PerceptError(
                f"--weights {item}: with several encoders, write ENCODER=FILE, "
                f"ENCODER one of {', '.join(dict.fromkeys(encoders))}"
            )
    return parsed


def plan(real: Path, models: dict[str, Path], dataset: str | None) -> list[Dataset]:
    """The datasets to measure: from a stimulus folder's manifest, or from plain folders."""
    from stimuli.manifest import MANIFEST, image_path, read_manifest

    if real.is_file() and real.name == MANIFEST:
        real = real.parent
    if not (real / MANIFEST).is_file():
        if not real.is_dir():
            raise PerceptError(f"--real {real}: give a folder of images or a stimulus folder")
        if not models:
            raise PerceptError(
                f"--real {real} is a plain folder: give each model's images with --model NAME=DIR "
                "(or pass a stimulus folder as --real)"
            )
        return [Dataset(dataset or real.resolve().name, _images(real), _model_images(models))]

    rows = [row for row in read_manifest(real) if row["role"] != "catch"]
    names = sorted({row["dataset"] for row in rows})
    if dataset is not None:
        if dataset not in names:
            raise PerceptError(
                f"--dataset {dataset}: not in {real / MANIFEST} (it has {', '.join(names)})"
            )
        names = [dataset]
    if models and len(names) > 1:
        raise PerceptError(
            f"{real} holds datasets {', '.join(names)}: name the one the --model folders "
            "belong to with --dataset"
        )
    plans = []
    for name in names:
        ds = Dataset(name, Images(), {})
        for row in rows:
            if row["dataset"] != name:
                continue
            path = str(image_path(real, row["sha256"]))
            if row["source"] == "real":
                ds.real.add(path, row["sha256"])
            elif not models:
                ds.models.setdefault(row["model"], Images()).add(path, row["sha256"])
        if models:
            ds.models = _model_images(models)
        if not ds.real.paths:
            raise PerceptError(f"{real}: dataset {name} has no real images")
        if not ds.models:
            raise PerceptError(f"{real}: dataset {name} has no model images; add --model NAME=DIR")
        plans.append(ds)
    return plans


def _images(folder: Path) -> Images:
    from analysis.features import collect_images

    paths, shas = collect_images([folder])
    return Images(paths, shas)


def _model_images(models: dict[str, Path]) -> dict[str, Images]:
    return {name: _images(folder) for name, folder in models.items()}
