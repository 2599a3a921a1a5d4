"""The cpu backend's precisions against each other, interleaved in one process (issue 28).

    python tools/precision_speed.py [--scale 3] [--size 640x360] [--seconds 60]
                                    [--precisions int8,bf16,fp32]

Builds one ``CpuBackend`` per precision on the shipped weights, warms each up, then calls them
in turn on the bench's LR plane (``bench/conftest.make_lr_plane``) until ``--seconds`` have
passed, so a slow spell of a shared machine slows every precision alike. Prints each one's
median and best, and per round its time over the first precision's (the median of those
ratios: the figure to quote, the others drift with the machine). (The share of an RGB
frame's time outside the network: ``tools/pixel_share.py``, or the bench's ``-gray`` rows.)

This is what ratios between our own precisions should be quoted from; ``pytest bench/`` times
each row in a block of its own, so a disturbance lands on one row only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from conftest import machine, make_lr_plane  # noqa: E402

from srcnn_fast.backends import create_backend  # noqa: E402
from srcnn_fast.infer import shipped_weights_path  # noqa: E402
from srcnn_fast.model import SRCNNWeights  # noqa: E402


def interleaved(calls: dict[str, object], seconds: float) -> dict[str, list[float]]:
    """Each callable's times (s), called in turn until ``seconds`` have passed."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--size", default="640x360", help="LR width x height")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--precisions", default="int8,bf16,fp32")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    precisions = args.precisions.split(",")
    weights = SRCNNWeights.load(shipped_weights_path(args.scale))
    plane = make_lr_plane(width, height)
    calls = {}
    for precision in precisions:
        backend = create_backend("cpu", weights, precision)
        calls[precision] = lambda b=backend: b.upscale_luma(plane)
    for call in calls.values():  # compile, plan, warm up
        call()
        call()
    times = interleaved(calls, args.seconds)
    cpu = machine()  # "AMD EPYC" alone does not say which Zen: family and model too
    rounds = len(next(iter(times.values())))
    print(
        f"{cpu['cpu']} (family {cpu['family']}, model {cpu['model']}), {width}x{height} "
        f"x{args.scale}, {rounds} rounds"
    )
    first = next(iter(times))
    for name, values in times.items():
        ratio = statistics.median(a / b for a, b in zip(values, times[first], strict=True))
        print(
            f"{name:12s} median {statistics.median(values) * 1e3:7.1f} ms, best "
            f"{min(values) * 1e3:7.1f}; per round vs {first}: {ratio:.3f}x its time"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
