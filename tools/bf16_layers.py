"""What each choice of bf16 layers costs in PSNR and gains in speed, cpu backend, shipped
weights (docs/performance.md, "bf16 on the CPU"): the table behind ``bf16.SCALE_LAYERS``.

    python tools/bf16_layers.py [--data ../shared/data] [--scales 2 3 4] [--rounds 15]

Per scale and choice of layers (conv1 always runs in bf16): the mean PSNR on Set5 and on Set14
against the float32 kernel (the paper's protocol, ``srcnn_fast.evaluate``), and the speed on a
640x360 LR plane (the bench's, ``bench/conftest.make_lr_plane``): fp32 and every choice built
once, then interleaved rounds in one process, the median over rounds of fp32's CPU time over
the choice's (CPU time of the call, all threads, steadier than wall time on a shared machine).
Needs AVX512_BF16.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from conftest import make_lr_plane  # noqa: E402

from srcnn_fast.backends import bf16  # noqa: E402
from srcnn_fast.backends.cpu import CpuBackend  # noqa: E402
from srcnn_fast.backends.simd import bf16_problem  # noqa: E402
from srcnn_fast.evaluate import evaluate  # noqa: E402
from srcnn_fast.model import SRCNNWeights  # noqa: E402

CHOICES = {
    "conv1, conv2, conv3": frozenset({"conv1", "conv2", "conv3"}),
    "conv1, conv2": frozenset({"conv1", "conv2"}),
    "conv1, conv3": frozenset({"conv1", "conv3"}),
    "conv1": frozenset({"conv1"}),
}


def psnr_losses(data: Path, weights: SRCNNWeights) -> dict[str, list[float]]:
    """Per choice, bf16 minus fp32 mean PSNR (dB) on Set5 and Set14: each backend's own
    pixel path (``upscale_pixels``), fp32 evaluated once per set."""
    scale = weights.scale
    methods = {"fp32": CpuBackend(weights).upscale_pixels} | {
        name: CpuBackend(weights, precision="bf16", bf16_layers=layers).upscale_pixels
        for name, layers in CHOICES.items()
    }
    losses: dict[str, list[float]] = {name: [] for name in CHOICES}
    for name in ("Set5", "Set14"):
        result = evaluate(data / name, scale, methods)
        for choice in CHOICES:
            losses[choice].append(result.mean(choice).psnr - result.mean("fp32").psnr)
    return losses


def speedups(weights: SRCNNWeights, rounds: int) -> dict[str, float]:
    """Median of fp32 CPU time over each choice's, interleaved rounds at 640x360."""
    plane = make_lr_plane(640, 360)
    backends = {"fp32": CpuBackend(weights)} | {
        name: CpuBackend(weights, precision="bf16", bf16_layers=layers)
        for name, layers in CHOICES.items()
    }
    times: dict[str, list[float]] = {name: [] for name in backends}
    for backend in backends.values():
        backend.upscale_luma(plane)  # compile, plan
    for _ in range(rounds):
        for name, backend in backends.items():
            start = time.process_time()
            backend.upscale_luma(plane)
            times[name].append(time.process_time() - start)
    return {
        name: statistics.median(f / b for f, b in zip(times["fp32"], times[name], strict=True))
        for name in CHOICES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if bf16_problem() is not None:
        sys.exit(f"bf16_layers.py: {bf16_problem()}")
    print("| scale | layers in bf16 | Set5 dB vs fp32 | Set14 dB vs fp32 | speed vs fp32 |")
    print("|---|---|---|---|---|")
    for scale in args.scales:
        weights = SRCNNWeights.load(REPO / "srcnn_fast" / "weights" / f"srcnn_x{scale}.npz")
        speed = speedups(weights, args.rounds)
        losses = psnr_losses(args.data, weights)
        default = bf16.default_layers(scale)
        for name, layers in CHOICES.items():
            set5, set14 = losses[name]
            mark = " (default)" if layers == default else ""
            print(
                f"| x{scale} | {name}{mark} | {set5:+.4f} | {set14:+.4f} | {speed[name]:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
