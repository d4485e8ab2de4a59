"""Image encoders for metrics: a registry of specs, one small module per family.

`ENCODERS` maps a name (`inception`, `dinov2-vitl14`, `clip-vitl14`, ...) to an
`EncoderSpec`: how to build the network, how to turn an image into its input,
what it outputs, which weight file it expects and where that file comes from.
`resolve(name)` finds and fingerprints the weights without building anything;
`Encoder.module()` builds the network and loads the checked weights.

`random:<name>` is the same network randomly initialised with a fixed seed,
for tests and the demo; its name keeps the prefix in every output.

timm, open_clip and transformers are imported only when a network is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from analysis.encoders import weights as _weights
from percept.errors import PerceptError

RANDOM_PREFIX = "random:"
# Seed of every randomly initialised encoder: the same name gives the same network.
RANDOM_SEED = 0

Outputs = dict[str, torch.Tensor]


def _same_keys(state: _weights.StateDict, module: nn.Module) -> _weights.StateDict:
    return state


@dataclass(frozen=True)
class EncoderSpec:
    """Everything percept knows about one encoder; see docs/encoders.md.

    `build()` makes the network, randomly initialised; its state dict keys are
    those of the published weights after `convert`. `preprocess(image)` turns
    one decoded RGB image into the network's input (it runs in DataLoader
    worker processes, so it must be a module-level function or a partial of
    one). `forward(module, batch)` returns every output named in `outputs`,
    whose first entry, `features`, is what metrics use by default.
    `preprocess_version` names the preprocessing in cache keys: change it
    whenever `preprocess` changes what it returns.
    """

    name: str
    build: Callable[[], nn.Module]
    preprocess: Callable[[Image.Image], torch.Tensor]
    preprocess_version: str
    preprocessing: str
    forward: Callable[[nn.Module, torch.Tensor], Outputs]
    outputs: Mapping[str, int]
    ref: str
    weight_files: tuple[str, ...] = ()
    weight_source: str = ""
    weight_url: str = ""
    convert: _weights.Convert = _same_keys

    @property
    def dim(self) -> int:
        """Dimension of the default output, `features`."""
        return self.outputs["features"]

    @property
    def has_weights(self) -> bool:
        return bool(self.weight_files)


def _registry() -> dict[str, EncoderSpec]:
    from analysis.encoders import (
        clip,
        clip336,
        convnext,
        data2vec,
        dinov2,
        inception,
        mae,
        pixel,
        resnet50,
    )

    specs = [
        inception.SPEC,
        inception.SPEC_CLEAN,
        *dinov2.SPECS,
        clip.SPEC,
        clip336.SPEC,
        convnext.SPEC,
        data2vec.SPEC,
        mae.SPEC,
        *resnet50.SPECS,
        pixel.SPEC,
    ]
    return {spec.name: spec for spec in specs}


ENCODERS: dict[str, EncoderSpec] = _registry()


@dataclass
class Encoder:
    """A resolved encoder: its spec, and the weights it will run with, fingerprinted.

    `weights_id` identifies the weights in cache keys and outputs: `sha256:<hex>`
    of the weight file, `random:seed=0;torch=...` for a random network (its
    values depend on the library versions), or `none` for `pixel`.
    """

    name: str
    spec: EncoderSpec
    weights_path: Path | None
    weights_id: str
    _module: nn.Module | None = field(default=None, repr=False)

    @property
    def pretrained(self) -> bool:
        return self.weights_path is not None

    @property
    def random(self) -> bool:
        return self.name.startswith(RANDOM_PREFIX)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def module(self) -> nn.Module:
        """The network in eval mode on the CPU, built once: checked weights loaded, or random."""
        if self._module is None:
            if self.weights_path is not None:
                module = _weights.load_checked(
                    self.name, self.weights_path, self.spec.build, self.spec.convert
                )
            else:
                # The global RNG is left as it was: building an encoder must not
                # change what later seeded code in the same process draws.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(RANDOM_SEED)
                    module = self.spec.build()
            self._module = module.eval().requires_grad_(False)
        return self._module

    def describe(self) -> str:
        """One line for logs and the CLI, saying plainly when the weights are not pretrained."""
        if self.random:
            return (
                f"encoder {self.name}: RANDOMLY INITIALISED (seed {RANDOM_SEED}), not pretrained; "
                "its features are for tests and demos, not for judging models"
            )
        if self.weights_path is None:
            return f"encoder {self.name}: no weights ({self.spec.preprocessing})"
        return f"encoder {self.name}: weights {self.weights_path} ({self.weights_id[:15]}...)"


def names() -> list[str]:
    """Every encoder name the registry knows (without the `random:` variants)."""
    return list(ENCODERS)


def get_spec(name: str) -> EncoderSpec:
    """The spec of `name` or `random:name`; a `PerceptError` listing the names otherwise."""
    base = name.removeprefix(RANDOM_PREFIX)
    if base not in ENCODERS:
        raise PerceptError(
            f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)} "
            f"(or {RANDOM_PREFIX}NAME for a randomly initialised one)"
        )
    spec = ENCODERS[base]
    if name.startswith(RANDOM_PREFIX) and not spec.has_weights:
        raise PerceptError(f"encoder {base} has no weights, so {name!r} means nothing; use {base}")
    return spec


def random_weights_id() -> str:
    """The fingerprint of every random network: seed and the versions that set its values."""
    import importlib.metadata as md

    versions = []
    for package in ("torch", "timm", "open_clip_torch", "transformers"):
        try:
            versions.append(f"{package}={md.version(package)}")
        except md.PackageNotFoundError:
            versions.append(f"{package}=none")
    return f"random:seed={RANDOM_SEED};" + ";".join(versions)


def resolve(
    name: str,
    *,
    weights: Path | str | None = None,
    allow_download: bool = False,
    memo_dir: Path | None = None,
) -> Encoder:
    """Find the weights of encoder `name` and fingerprint them; nothing is built yet.

    Weights come from `weights` when given, else from a file with an expected
    name in $PERCEPT_WEIGHTS_DIR (default ~/.cache/percept/weights). When none
    is there, `allow_download=True` fetches the published file into that folder;
    otherwise the error names the expected file and where it comes from.
    `memo_dir` keeps the weight file's SHA-256 between runs.
    """
    spec = get_spec(name)
    if name.startswith(RANDOM_PREFIX) or not spec.has_weights:
        if weights is not None:
            raise PerceptError(f"encoder {name} takes no weight file; drop --weights")
        weights_id = random_weights_id() if name.startswith(RANDOM_PREFIX) else "none"
        return Encoder(name, spec, None, weights_id)
    given = Path(weights) if weights is not None else None
    try:
        path = _weights.locate(name, spec.weight_files, spec.weight_source, given)
    except PerceptError:
        if given is not None or not allow_download:
            raise
        if not spec.weight_url:
            raise PerceptError(
                f"encoder {name}: its weight file {spec.weight_files[0]} cannot be downloaded; "
                f"make it as follows and put it in {_weights.weights_dir()}: {spec.weight_source}"
            ) from None
        path = download(spec)
    return Encoder(name, spec, path, "sha256:" + _weights.file_sha256(path, memo_dir))


def download(spec: EncoderSpec) -> Path:
    """Fetch the published weight file of `spec` into the weights folder (needs internet)."""
    folder = _weights.weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / spec.weight_files[0]
    tmp = folder / f".{dest.name}.part-{os.getpid()}"
    try:
        _fetch(spec.weight_url, tmp)
        os.replace(tmp, dest)
    except PerceptError:
        raise
    except Exception as e:  # network errors come in many types; the user can act on the message
        raise PerceptError(
            f"encoder {spec.name}: download of {spec.weight_url} failed ({e}); "
            f"fetch it by hand into {dest}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch(url: str, dest: Path) -> None:
    # The URLs are those that timm's and open_clip's pretrained configs point at
    # (tests check this); torch.hub shows a progress bar.
    torch.hub.download_url_to_file(url, str(dest), progress=True)
