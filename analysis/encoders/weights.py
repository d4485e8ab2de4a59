"""Finding an encoder's weight file, reading it, and checking it before it is trusted.

Every pretrained encoder loads through `load_checked`: the file is read as a
state dict (PyTorch pickle with `weights_only=True`, or safetensors), mapped to
the module's parameter names by the encoder's `convert`, and compared key by
key and shape by shape with the module before a single value is copied, so a
wrong, truncated or foreign file is one error naming the encoder, the file and
what did not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from percept.errors import PerceptError

WEIGHTS_DIR_ENV = "PERCEPT_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/percept/weights")

StateDict = dict[str, torch.Tensor]
Convert = Callable[[StateDict, nn.Module], StateDict]

# How many names of missing, unexpected or mismatched keys an error message shows.
SHOWN = 5


def weights_dir() -> Path:
    """The folder searched for weight files: $PERCEPT_WEIGHTS_DIR or ~/.cache/percept/weights."""
    return Path(os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def locate(encoder: str, file_names: tuple[str, ...], source: str, given: Path | None) -> Path:
    """The weight file to use: `given`, else the first expected name found in `weights_dir()`.

    A missing file is a `PerceptError` naming the expected file, the folder
    searched and where the file comes from.
    """
    if given is not None:
        given = Path(given).expanduser()
        if not given.is_file():
            what = "is a folder, not a file" if given.is_dir() else "file not found"
            raise PerceptError(f"{given}: {what} (--weights for encoder {encoder})")
        return given
    folder = weights_dir()
    for name in file_names:
        if (folder / name).is_file():
            return folder / name
    also = f" (or {', '.join(file_names[1:])})" if len(file_names) > 1 else ""
    raise PerceptError(
        f"encoder {encoder}: weight file {file_names[0]}{also} not found in {folder}; "
        f"download it from {source} into that folder (or set ${WEIGHTS_DIR_ENV}), "
        "pass --weights FILE, or use --allow-download"
    )


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """SHA-256 of a file's bytes, remembered by (path, size, mtime) in `memo_dir`.

    Weight files are hundreds of MB to GB; hashing one takes seconds, so a
    fully cached feature run would otherwise spend most of its time here.
    """
    path = Path(path).resolve()
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo_file = memo_dir / "weights-sha256.json" if memo_dir else None
    memo: dict = {}
    if memo_file is not None:
        try:
            memo = json.loads(memo_file.read_text())
            known = memo.get(str(path), {})
            if {k: known.get(k) for k in stamp} == stamp and _is_hex64(known.get("sha256")):
                return known["sha256"]
        except (OSError, ValueError, AttributeError):
            memo = {}  # a missing or damaged memo only costs one hashing
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    sha = digest.hexdigest()
    if memo_file is not None:
        memo[str(path)] = {**stamp, "sha256": sha}
        _write_text_atomic(memo_file, json.dumps(memo, indent=1, sort_keys=True))
    return sha


def read_state_dict(encoder: str, path: Path) -> StateDict:
    """The tensors in a weight file; one clear error when it is not a readable state dict."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            # weights_only: a weight file is data, never code to run. mmap: a
            # multi-GB file is paged in as the values are copied, not read twice;
            # only the zip format (torch >= 1.6) allows it, and the published FID
            # Inception file may be older.
            mmap = zipfile.is_zipfile(path)
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch and safetensors raise many types for a bad file
        raise PerceptError(
            f"encoder {encoder}: cannot read weight file {path} "
            f"({type(e).__name__}: {_first_line(e)}); it may be truncated or not a "
            "PyTorch/safetensors weight file: download it again"
        ) from None
    # Training checkpoints wrap the weights: {"model": ...} or {"state_dict": ...};
    # SimCLRv2-Pytorch's converted files hold {"resnet": ..., "head": ...}.
    for key in ("state_dict", "model", "resnet"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
    if not isinstance(data, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()
    ):
        raise PerceptError(
            f"encoder {encoder}: {path} holds a {type(data).__name__}, not a state dict "
            "of named tensors; download the published weight file again"
        )
    state = dict(data)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel
    return state


def check_state_dict(encoder: str, path: Path, state: StateDict, module: nn.Module) -> None:
    """Raise one `PerceptError` listing every key and shape in which `state` and `module` differ."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} where {expected[k]} was expected"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_some(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es): {_some(wrong)}")
    if problems:
        raise PerceptError(
            f"encoder {encoder}: weight file {path} does not fit its network: "
            + "; ".join(problems)
            + ". Is it the file for this encoder (see docs/encoders.md)?"
        )


def load_checked(
    encoder: str, path: Path, build: Callable[[], nn.Module], convert: Convert
) -> nn.Module:
    """Build the network without initialising it, and fill it from a checked weight file."""
    # Built on the meta device: no time is spent on a random initialisation that
    # the file overwrites (half a minute for the 1.1B-parameter DINOv2 ViT-g).
    with torch.device("meta"):
        module = build()
    state = read_state_dict(encoder, path)
    try:
        state = convert(state, module)
    except Exception as e:  # a converter meets a file it was not written for
        raise PerceptError(
            f"encoder {encoder}: weight file {path} does not fit its network "
            f"({type(e).__name__} while mapping its names: {_first_line(e)}). "
            "Is it the file for this encoder (see docs/encoders.md)?"
        ) from None
    # BatchNorm counters are absent from some published files and never used in eval mode.
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros(value.shape, dtype=value.dtype)
    check_state_dict(encoder, path, state, module)
    ref = module.state_dict()
    # Copies, in the module's dtype: a file saved in float16 still gives float32 features,
    # and the module does not keep the mmap of the file open.
    state = {k: v.to(dtype=ref[k].dtype, copy=True).contiguous() for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:  # a buffer that no state dict holds would have no value; a bug of ours, not the file
        raise RuntimeError(f"encoder {encoder}: no value for {_some(left)} after loading")
    return module.eval()


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else "no details"


def _is_hex64(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass  # the memo is an optimisation; a read-only cache folder must not stop a run
    finally:
        tmp.unlink(missing_ok=True)
