"""Benchmark fixtures and the summary table (ratios to the best peer, GFLOP/s).

Run: ``pytest bench/`` (save with ``--benchmark-autosave``, compare a later run with
``--benchmark-compare`` / ``--benchmark-compare-fail=median:10%``). Timings on these machines are
noisy: read the ratios measured in one run, never absolute times from different runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from srcnn_fast.model import Architecture

sys.path.insert(0, str(Path(__file__).parent))

MACS_PER_PIXEL = Architecture().macs_per_pixel  # 8,032 for 9-1-5 (64, 32)
SUMMARY_JSON = Path(__file__).resolve().parents[1] / ".benchmarks" / "summary.json"


def gflops(pixels: int, seconds: float) -> float:
    return 2 * MACS_PER_PIXEL * pixels / seconds / 1e9


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    results = [b for b in getattr(session, "benchmarks", []) if b.extra_info.get("impl")]
    if not results:
        return
    rows = []
    groups: dict[str, list] = {}
    for bench in results:
        groups.setdefault(bench.group, []).append(bench)
    write = terminalreporter.write_line
    write("")
    write("srcnn-fast speed summary: median ms; 'vs best peer' = best peer median / this median")
    header = f"{'group':<18}{'impl':<16}{'median ms':>11}{'GFLOP/s':>9}{'Mpix/s':>9}  vs best peer"
    write(header)
    write("-" * len(header))
    for group, benches in groups.items():
        for bench in sorted(benches, key=lambda b: b.stats.median):
            # GPU implementations are compared with GPU peers (cuDNN), CPU ones with CPU peers.
            kind = "gpu-peer" if bench.extra_info["gpu"] else "peer"
            peers = [b for b in benches if b.extra_info["kind"] == kind]
            best = min(peers, key=lambda b: b.stats.median) if peers else None
            median = bench.stats.median
            pixels = bench.extra_info["pixels"]
            ratio = best.stats.median / median if best else float("nan")
            label = f"{ratio:.2f}x" + (f" ({best.extra_info['impl']})" if bench is best else "")
            work = bench.extra_info.get("work")
            if work:  # share of the dense conv2 / products the sparse blocks computed
                label += f"  (conv2 {work['conv2']:.0%}, products {work['products']:.0%} done)"
            write(
                f"{group:<18}{bench.extra_info['impl']:<16}{median * 1e3:>11.1f}"
                f"{gflops(pixels, median):>9.1f}{pixels / median / 1e6:>9.1f}  {label}"
            )
            rows.append(
                {
                    "group": group,
                    "impl": bench.extra_info["impl"],
                    "kind": bench.extra_info["kind"],
                    "median_ms": median * 1e3,
                    "gflops": gflops(pixels, median),
                    "vs_best_peer": ratio,
                    "best_peer": best.extra_info["impl"] if best else None,
                    "work": bench.extra_info.get("work"),
                }
            )
    SUMMARY_JSON.parent.mkdir(exist_ok=True)
    SUMMARY_JSON.write_text(json.dumps(rows, indent=1))
    write(f"(written to {SUMMARY_JSON})")


def make_lr_plane(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(width * 7 + height)
    coarse = rng.random((height // 8 + 2, width // 8 + 2), dtype=np.float32)
    from srcnn_fast.imageops import bicubic_upscale

    smooth = bicubic_upscale(coarse, 8)[:height, :width]
    detail = rng.random((height, width), dtype=np.float32)
    return np.clip(0.8 * smooth + 0.2 * detail, 0, 1).astype(np.float32)
