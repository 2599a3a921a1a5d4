"""Share of an RGB frame's time spent outside the network, cpu backend, before and after the
fused pixel kernels (docs/performance.md, "The pixels around the network").

    python tools/pixel_share.py [WIDTH HEIGHT SCALE [ROUNDS]]   (default 1280 720 2 7)

One process, interleaved rounds, medians. "before" is ``imageops.upscale_image`` around the
backend's network (the path every backend took), "after" the backend's ``upscale_pixels``.
The gray frame has the RGB frame's luma (mapped so that the network sees the same plane),
so (rgb - gray) / rgb is the share of the RGB frame's time outside the network.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from srcnn_fast import imageops
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
    cases = {
        "rgb before": lambda: imageops.upscale_image(rgb, scale, backend.upscale_luma),
        "rgb after": lambda: backend.upscale_pixels(rgb),
        "gray before": lambda: imageops.upscale_image(gray, scale, backend.upscale_luma),
        "gray after": lambda: backend.upscale_pixels(gray),
        "network alone": lambda: backend.upscale_luma(luma),
    }
    for run in cases.values():  # compile and warm up
        run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    print(f"{width}x{height} RGB uint8 x{scale}, medians of {rounds} interleaved rounds (ms):")
    for name, value in ms.items():
        spread = 1e3 * (max(times[name]) - min(times[name]))
        print(f"  {name:14s} {value:8.1f}   (spread {spread:.1f})")
    for when in ("before", "after"):
        r, g = ms[f"rgb {when}"], ms[f"gray {when}"]
        print(f"  outside the network, {when}: (rgb - gray) / rgb = {(r - g) / r:.1%}")
    print(f"  rgb after vs before: {ms['rgb before'] / ms['rgb after']:.2f}x faster")


if __name__ == "__main__":
    main()
