"""Share of an RGB frame's time spent outside the network, cpu backend, before and after the
fused pixel kernels (docs/performance.md, "The pixels around the network").

    python tools/pixel_share.py [WIDTH HEIGHT SCALE [ROUNDS]]   (default 1280 720 2 7)

One process, interleaved rounds, medians. "before" is ``imageops.upscale_image`` around the
backend's network (the path every backend took), "after" the backend's ``upscale_pixels``.
The gray frame has the RGB frame's luma (mapped so that the network sees the same plane),
so (rgb - gray) / rgb is the share of the RGB frame's time outside the network. "pixels"
times the same RGB frame with the network's output ready-made (everything but the network),
which is steadier than a difference of two noisy timings; CPU times (all threads) are printed
beside wall times because other jobs on the machine disturb the latter most.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from srcnn_fast import imageops
from srcnn_fast.backends import cpu_pixels
from srcnn_fast.infer import Upscaler


def frame(width: int, height: int) -> np.ndarray:
    """A smooth random RGB frame with some fine detail (as bench/conftest.make_lr_plane)."""
    rng = np.random.default_rng(width * 7 + height)
    coarse = rng.random((height // 8 + 2, width // 8 + 2, 3), dtype=np.float32)
    smooth = imageops.bicubic_upscale(coarse, 8)[:height, :width]
    detail = rng.random((height, width, 3), dtype=np.float32)
    return imageops.from_float(np.clip(0.8 * smooth + 0.2 * detail, 0, 1), np.uint8)


def main() -> None:
    width, height, scale, rounds = (
        list(map(int, sys.argv[1:])) + [1280, 720, 2, 7][len(sys.argv) - 1 :]
    )[:4]
    backend = Upscaler(scale, backend="cpu").backend
    rgb = frame(width, height)
    luma = imageops.rgb_to_luma(imageops.to_float(rgb))
    gray = imageops.from_float(imageops.luma_to_gray(luma), np.uint8)
    luma = np.ascontiguousarray(luma)
    network_output = backend.upscale_luma(luma)

    def no_network(plane: np.ndarray) -> np.ndarray:
        return network_output  # the pixel work alone, with the network's output ready-made

    cases = {
        "rgb before": lambda: imageops.upscale_image(rgb, scale, backend.upscale_luma),
        "rgb after": lambda: backend.upscale_pixels(rgb),
        "gray before": lambda: imageops.upscale_image(gray, scale, backend.upscale_luma),
        "gray after": lambda: backend.upscale_pixels(gray),
        "network alone": lambda: backend.upscale_luma(luma),
        "pixels before": lambda: imageops.upscale_image(rgb, scale, no_network),
        "pixels after": lambda: cpu_pixels.upscale_pixels(rgb, scale, no_network),
    }
    for run in cases.values():  # compile and warm up
        run()
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    print(f"{width}x{height} RGB uint8 x{scale}, medians of {rounds} interleaved rounds:")
    print(f"  {'':14s} {'wall ms':>8s} {'spread':>8s} {'CPU ms':>8s}  (CPU: all threads)")
    ms = {name: 1e3 * statistics.median(t) for name, t in wall.items()}
    cpu_ms = {name: 1e3 * statistics.median(t) for name, t in cpu.items()}
    for name, value in ms.items():
        spread = 1e3 * (max(wall[name]) - min(wall[name]))
        print(f"  {name:14s} {value:8.1f} {spread:8.1f} {cpu_ms[name]:8.1f}")
    for when in ("before", "after"):
        shares = []
        for t in (ms, cpu_ms):
            r, g = t[f"rgb {when}"], t[f"gray {when}"]
            shares.append(f"{(r - g) / r:.1%}")
        pixels = [
            t[f"pixels {when}"] / (t[f"pixels {when}"] + t["network alone"]) for t in (ms, cpu_ms)
        ]
        print(
            f"  outside the network, {when}: (rgb - gray) / rgb {shares[0]} wall, {shares[1]} CPU;"
            f" pixels / (pixels + network) = {pixels[0]:.1%} wall, {pixels[1]:.1%} CPU"
        )
    print(f"  rgb after vs before: {ms['rgb before'] / ms['rgb after']:.2f}x faster (wall)")


if __name__ == "__main__":
    main()
