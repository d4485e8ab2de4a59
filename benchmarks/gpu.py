"""Encoder throughput on one accelerator: images/s at several batch sizes, AMP on and off.

For each encoder (randomly initialised: speed does not depend on the weights), on
ready input tensors of the encoder's own input size (one preprocessed synthetic
image, repeated with noise), times the forward pass at each batch size with
full precision and with automatic mixed precision (float16 on CUDA, bfloat16 on
the CPU), and prints images/s per device and the largest relative difference
AMP makes to the features (max |amp - fp32| / max |fp32|, over one batch).
The time includes copying the features back to the host, as extraction does.

    .venv/bin/python benchmarks/gpu.py [--device cuda] [--encoders inception dinov2-vitl14]
        [--batch-sizes 64 128 256] [--seconds 5]
    .venv/bin/python benchmarks/gpu.py --device cpu --smoke   # seconds, for the test suite

On a node with several GPUs, the per-GPU rate times the GPU count is the ceiling
of `torchrun --nproc-per-node G -m percept features` (docs/encoders.md).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image

from analysis.encoders import ENCODERS, resolve

# Every encoder with a network (pixel has none).
DEFAULT_ENCODERS = tuple(name for name in ENCODERS if name != "pixel")


def input_batch(encoder, batch_size: int, seed: int = 0) -> torch.Tensor:
    """`batch_size` inputs of the encoder's size: one preprocessed image plus noise."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8))
    one = encoder.spec.preprocess(image)
    noise = torch.from_numpy(rng.normal(0, 0.05, (batch_size, *one.shape)).astype(np.float32))
    return one.unsqueeze(0) + noise


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def features(encoder, module, batch: torch.Tensor, amp: bool) -> torch.Tensor:
    kind = batch.device.type
    dtype = torch.float16 if kind == "cuda" else torch.bfloat16
    with torch.inference_mode(), torch.autocast(kind, dtype=dtype, enabled=amp):
        return encoder.spec.forward(module, batch)["features"].float().cpu()


def rate(encoder, module, batch: torch.Tensor, amp: bool, seconds: float, least: int) -> float:
    """Images/s over at least `least` passes and `seconds` seconds, after one warm-up pass."""
    features(encoder, module, batch, amp)
    synchronise(batch.device)
    passes, start = 0, time.perf_counter()
    while passes < least or time.perf_counter() - start < seconds:
        features(encoder, module, batch, amp)
        passes += 1
    synchronise(batch.device)
    return passes * len(batch) / (time.perf_counter() - start)


def amp_error(encoder, module, batch: torch.Tensor) -> float:
    full = features(encoder, module, batch, amp=False)
    mixed = features(encoder, module, batch, amp=True)
    return float((mixed - full).abs().max() / full.abs().max().clamp_min(1e-30))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--encoders", nargs="+", default=list(DEFAULT_ENCODERS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--seconds", type=float, default=5.0, help="timed per measurement")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a check that it runs: pixel and a random ViT-S/14, batch 1, one pass each",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.encoders, args.batch_sizes, args.seconds = ["pixel", "dinov2-vits14"], [1], 0.0
    unknown = [name for name in args.encoders if name not in ENCODERS]
    if unknown:
        parser.error(f"unknown encoder {unknown[0]!r}; known: {', '.join(sorted(ENCODERS))}")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device {device} ({name}); {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
        f"threads, load {os.getloadavg()[0]:.1f}; random weights; {args.seconds:g} s each"
    )
    print(
        f"{'encoder':<20} {'batch':>5} {'fp32 img/s':>11} {'AMP img/s':>10} {'speed-up':>8} "
        f"{'AMP max rel. err':>17}"
    )
    rows = []
    for encoder_name in args.encoders:
        encoder = resolve(
            f"random:{encoder_name}" if ENCODERS[encoder_name].has_weights else encoder_name
        )
        module = encoder.module().to(device)
        for batch_size in args.batch_sizes:
            batch = input_batch(encoder, batch_size).to(device)
            least = 1 if args.smoke else 3
            full = rate(encoder, module, batch, False, args.seconds, least)
            mixed = rate(encoder, module, batch, True, args.seconds, least)
            error = amp_error(encoder, module, batch)
            rows.append(
                dict(encoder=encoder_name, batch=batch_size, fp32=full, amp=mixed, amp_error=error)
            )
            print(
                f"{encoder_name:<20} {batch_size:>5} {full:>11.1f} {mixed:>10.1f} "
                f"{mixed / full:>7.2f}x {error:>17.2e}"
            )
        del module
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    main()
