"""Benchmark fixtures and the summary table (ratios to the best peer, GFLOP/s).

Run: ``pytest bench/`` (save with ``--benchmark-autosave``, compare a later run with
``--benchmark-compare`` / ``--benchmark-compare-fail=median:10%``). Timings on these machines are
noisy: read the ratios measured in one run, never absolute times from different runs.
"""

from __future__ import annotations

import os

# NumPy's OpenBLAS threads, started beside OpenVINO's and ONNX Runtime's own pools in this one
# process, stalled a matrix product for 10+ minutes (the int8 peers' T91 calibration, a Zen 4,
# issue 28); one BLAS thread keeps the reference and that preparation off the engines' cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from srcnn_fast.backends import available_backends
from srcnn_fast.errors import BackendError
from srcnn_fast.model import Architecture, SRCNNWeights

sys.path.insert(0, str(Path(__file__).parent))
from peers import PEERS, MissingData  # bench/ is not a package: found through the line above

T = TypeVar("T")

MACS_PER_PIXEL = Architecture().macs_per_pixel  # 8,032 for 9-1-5 (64, 32)
SUMMARY_JSON = Path(__file__).resolve().parents[1] / ".benchmarks" / "summary.json"


def gflops(pixels: int, seconds: float) -> float:
    return 2 * MACS_PER_PIXEL * pixels / seconds / 1e9


#: Max |diff| to the float32 reference an implementation of each precision class may show.
#: fp32: 1e-4 (different summation orders; ours show ~1e-6). fp16 (and cuDNN's TF32 for float32
#: data): 10-bit mantissas, ~1e-3 off, checked at 5e-3. bf16: an 8-bit mantissa rounds each
#: operand by up to 2^-9 (2e-3) relative, ~1.5e-2 at the output on this network, checked at 3e-2.
#: int8: 8-bit activations and weights, each rounded to 1/255 of its range (1/127 of the
#: weights'), and each engine clips conv1's activations where its calibration says: 1e-2 to
#: 7e-2 off at the worst pixel of a 640x360 plane (ours and OpenVINO's NNCF model), checked
#: at 0.1.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "bf16": 3e-2, "int8": 0.1}


#: Seconds of timed calls per row (at least 3 calls, at most 60): a row of 10 calls of 10 ms
#: measured 0.1 s of a noisy machine, and a burst from elsewhere moved its median by 50%.
ROW_SECONDS = 2.0


def rounds_for(run: Callable[[], object]) -> int:
    """How many timed calls a row gets: one more untimed call (after the check, a second
    warm-up) tells how long a call takes, and the row gets :data:`ROW_SECONDS` of them."""
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    return max(3, min(60, int(ROW_SECONDS / max(seconds, 1e-6))))


def _best(benches: list) -> object | None:
    return min(benches, key=lambda b: b.stats.median) if benches else None


def _versus(bench, best) -> tuple[float, str | None]:
    """best peer's median / this median, and the best peer's name."""
    if best is None:
        return float("nan"), None
    return best.stats.median / bench.stats.median, best.extra_info["impl"]


#: Engines timed after every other row of the run: once TensorFlow (with or without XLA) has
#: run in the process, the rows timed after it were 30% slower in 4 runs of 6 (our cpu kernel
#: at 640x360 x3: 88-93 ms against 67-69 ms in the 5 runs without TensorFlow, and in the runs
#: where TensorFlow came first).
LAST = ("tensorflow",)


def pytest_collection_modifyitems(session, config, items) -> None:
    """Our rows first, then the peers', those of :data:`LAST` at the end (a stable sort: the
    order is unchanged otherwise). Engines leave threads behind (thread pools that spin, and
    worse, above); ours leave Numba's idle pool, so timing ours first keeps every peer's
    leftovers out of our rows without putting ours into the peers'."""

    def rank(item) -> int:
        impl = str((getattr(item, "callspec", None) and item.callspec.params.get("impl")) or "")
        return 0 if impl not in PEERS else 2 if impl.startswith(LAST) else 1

    items.sort(key=rank)


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
    write(
        "srcnn-fast speed summary: median ms; 'vs best peer' = best peer median / this median, "
        "among peers of the same precision class, then of any precision"
    )
    header = (
        f"{'group':<22}{'impl':<16}{'prec':<6}{'median ms':>10}{'GFLOP/s':>9}{'Mpix/s':>8}"
        f"  {'vs best same-class peer':<34}vs best peer, any precision"
    )
    write(header)
    write("-" * len(header))
    for group, benches in groups.items():
        for bench in sorted(benches, key=lambda b: b.stats.median):
            info = bench.extra_info
            median, pixels = bench.stats.median, info["pixels"]
            # GPU implementations are compared with GPU peers (cuDNN), CPU ones with CPU peers.
            peer_kind = "gpu-peer" if info["gpu"] else "peer"
            rivals = [b for b in benches if b.extra_info["kind"] == peer_kind]
            same_class = [b for b in rivals if b.extra_info["precision"] == info["precision"]]
            same, same_peer = _versus(bench, _best(same_class))
            anyp, any_peer = _versus(bench, _best(rivals))
            row = {
                "group": group,
                "impl": info["impl"],
                "kind": info["kind"],
                "precision": info["precision"],
                "median_ms": median * 1e3,
                "gflops": gflops(pixels, median),
                "vs_best_same_class_peer": same,
                "best_same_class_peer": same_peer,
                "vs_best_peer_any_precision": anyp,
                "best_peer_any_precision": any_peer,
                "work": info.get("work"),
            }
            if info["kind"] == "aux":  # a reading aid (our gray frame), compared with no peer
                same_label = any_label = "-"
            else:
                same_label = f"{same:.2f}x ({same_peer})" if same_peer else "no peer"
                any_label = f"{anyp:.2f}x ({any_peer})" if any_peer else "no peer"
            work = info.get("work")
            if work:  # share of the dense conv2 / products the sparse blocks computed
                any_label += f"  (conv2 {work['conv2']:.0%}, products {work['products']:.0%} done)"
            # Our reduced precisions against our own fp32 and bf16 rows (issue 28's targets).
            for base in ("cpu", "cpu-bf16"):
                mine = next((b for b in benches if b.extra_info["impl"] == base), None)
                ours = info["impl"].startswith("cpu-") and info["kind"] == "ours"
                if ours and mine is not None and mine is not bench:
                    row[f"vs_our_{base}"] = mine.stats.median / median
                    any_label += f"  ({row[f'vs_our_{base}']:.2f}x our {base})"
            gray = next((b for b in benches if b.extra_info.get("gray_of") == info["impl"]), None)
            if gray is not None:  # the share of our frame's time spent outside the network
                row["outside_network"] = 1 - gray.stats.median / median
                any_label += f"  ({row['outside_network']:.0%} of it outside the network)"
            write(
                f"{group:<22}{info['impl']:<16}{info['precision']:<6}{median * 1e3:>10.1f}"
                f"{gflops(pixels, median):>9.1f}{pixels / median / 1e6:>8.1f}  "
                f"{same_label:<34}{any_label}"
            )
            rows.append(row)
    SUMMARY_JSON.parent.mkdir(exist_ok=True)
    SUMMARY_JSON.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    write(f"(written to {SUMMARY_JSON})")


#: CPU flags that decide which kernels run (ours and the peers'), as /proc/cpuinfo names them.
ISA_FLAGS = ["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"]
#: Distributions whose versions the summary records (those installed).
ENGINES = [
    "numpy",
    "numba",
    "onnxruntime",
    "openvino",
    "nncf",
    "tensorflow",
    "tensorflow-cpu",
    "opencv-python-headless",
    "opencv-python",
    "torch",
]


def machine() -> dict:
    """The CPU (model, family, cores, the flags of ISA_FLAGS it has) and the engines' versions,
    recorded with the summary so a table made from it can name them."""
    from importlib import metadata

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: the model stays unknown
        pass
    versions = {}
    for name in ENGINES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": fields.get("model name", "unknown"),
        "family": fields.get("cpu family"),  # "AMD EPYC" alone does not say which Zen
        "model": fields.get("model"),
        "cores": os.cpu_count(),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "versions": versions,
    }


def ours(impl: str, backend: str, build: Callable[[], T]) -> T:
    """``build()`` (one of our backends or an Upscaler on ``backend``), or a skip with the
    reason: the backend is not available here, or it refuses the setup (a precision it does
    not support yet, say) in its own words."""
    reason = available_backends().get(backend, f"this version has no {backend} backend")
    if reason:
        pytest.skip(f"backend {backend} unavailable: {reason}")
    try:
        return build()
    except BackendError as exc:
        pytest.skip(f"{impl}: {exc}")


def peer_runner(impl: str, weights: SRCNNWeights, shape: tuple[int, int]):
    """A fresh runner for ``shape`` planes per test: engines keep arenas sized by their largest
    run, and a 5120x2880 output needs ~10 GB of feature maps, so no runner may outlive its
    test (the tests drop theirs and collect garbage after timing)."""
    spec = PEERS[impl]
    for module in spec.module.split():
        pytest.importorskip(module, reason=f"{impl} needs {module}, which is not installed")
    try:
        return spec.factory(weights, shape)
    except MissingData as exc:
        pytest.skip(f"{impl}: {exc}")
    except Exception as exc:  # an engine that cannot express the network is skipped, not hidden
        pytest.skip(f"{impl} cannot run this network: {type(exc).__name__}: {exc}"[:300])


def make_lr_plane(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic LR plane in [0, 1]: smooth structure plus pixel detail."""
    rng = np.random.default_rng(width * 7 + height + seed)
    coarse = rng.random((height // 8 + 2, width // 8 + 2), dtype=np.float32)
    from srcnn_fast.imageops import bicubic_upscale

    smooth = bicubic_upscale(coarse, 8)[:height, :width]
    detail = rng.random((height, width), dtype=np.float32)
    return np.clip(0.8 * smooth + 0.2 * detail, 0, 1).astype(np.float32)
