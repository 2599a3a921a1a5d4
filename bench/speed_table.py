"""The speed tables of README.md and docs/performance.md, from one bench run's summary.

    pytest bench/ --benchmark-autosave        # writes .benchmarks/summary.json
    python bench/speed_table.py [summary.json] # prints the machine line and both tables

The luma table's rows (test_speed, CPU groups) and the frame table's (test_frames) name, per
row, our time, the best peer of each precision class and our ratios to them: `cpu` against the
best fp32 peer, `cpu-bf16` against the best bf16 peer, and `cpu` against the best peer of any
precision. A missing row (a peer not installed, `cpu-bf16` before the cpu backend has bf16)
shows as "-". The README takes the first columns of the same rows (tests/test_docs.py checks).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SUMMARY_JSON = Path(__file__).resolve().parents[1] / ".benchmarks" / "summary.json"
NAMES = {
    "onnxruntime": "ONNX Runtime",
    "openvino-f32": "OpenVINO",
    "openvino-bf16": "OpenVINO",
    "tensorflow": "TensorFlow",
    "tensorflow-xla": "TensorFlow XLA",
    "opencv-dnn": "OpenCV DNN",
    "pytorch": "PyTorch",
}
ISA_NAMES = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
}
#: Per precision class: our time, the best peer's (with its name), the ratio; then `cpu` against
#: the best peer of any precision.
CLASS_COLUMNS = [
    "cpu ms",
    "best fp32 peer ms",
    "cpu vs best fp32 peer",
    "cpu-bf16 ms",
    "best bf16 peer ms",
    "cpu-bf16 vs best bf16 peer",
    "cpu vs best peer (any precision)",
]
LUMA_HEADER = ["LR size, scale (output)", *CLASS_COLUMNS, "cpu GFLOP/s", "conv2 / products done"]
FRAME_HEADER = ["RGB frame, LR -> output", *CLASS_COLUMNS, "cpu as gray ms", "outside the network"]
#: The README's luma table: the x3 rows, the columns up to the ratio to any precision.
README_SCALE, README_COLUMNS = 3, 1 + len(CLASS_COLUMNS)
GROUP = re.compile(r"^(?P<frame>frame )?(?P<w>\d+)x(?P<h>\d+) x(?P<s>\d+)$")


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def ratio(peer_ms: float | None, our_ms: float | None) -> str:
    return "-" if peer_ms is None or our_ms is None else f"{peer_ms / our_ms:.1f}x"


def median(row: dict | None) -> float | None:
    return None if row is None else row["median_ms"]


def best_peer(rows: list[dict], precision: str | None = None) -> dict | None:
    peers = [r for r in rows if r["kind"] == "peer" and precision in (None, r["precision"])]
    return min(peers, key=lambda r: r["median_ms"]) if peers else None


def peer_cell(row: dict | None) -> str:
    return "-" if row is None else f"{ms(row['median_ms'])} ({NAMES.get(row['impl'], row['impl'])})"


def table_rows(summary: dict) -> tuple[list[list[str]], list[list[str]]]:
    """(luma rows, frame rows), each a list of cells in LUMA_HEADER / FRAME_HEADER order."""
    groups: dict[str, list[dict]] = {}
    for row in summary["rows"]:
        groups.setdefault(row["group"], []).append(row)
    luma, frames = [], []
    for group, rows in groups.items():
        match = GROUP.match(group)
        if not match:  # the GPU's fp16 or other groups: not in these CPU tables
            continue
        width, height, scale = (int(match[k]) for k in ("w", "h", "s"))
        impl = {r["impl"]: r for r in rows}
        cpu, bf16 = impl.get("cpu"), impl.get("cpu-bf16")
        cpu_ms, bf16_ms = median(cpu), median(bf16)
        fp32_peer, bf16_peer, any_peer = (
            best_peer(rows, "fp32"),
            best_peer(rows, "bf16"),
            best_peer(rows),
        )

        any_name = any_peer and NAMES.get(any_peer["impl"], any_peer["impl"])
        cells = [
            ms(cpu_ms),
            peer_cell(fp32_peer),
            ratio(median(fp32_peer), cpu_ms),
            ms(bf16_ms),
            peer_cell(bf16_peer),
            ratio(median(bf16_peer), bf16_ms),
            ratio(median(any_peer), cpu_ms) + (f" ({any_name})" if any_peer else ""),
        ]
        if match["frame"]:
            gray = impl.get("cpu-gray")
            outside = cpu and cpu.get("outside_network")
            frames.append(
                [
                    f"{width}x{height} -> {width * scale}x{height * scale}",
                    *cells,
                    ms(median(gray)),
                    "-" if outside is None else f"{outside:.0%}",
                ]
            )
        else:
            work = cpu and cpu.get("work")
            luma.append(
                [
                    f"{width}x{height} x{scale} ({width * scale}x{height * scale})",
                    *cells,
                    "-" if cpu is None else f"{cpu['gflops']:.0f}",
                    "-" if not work else f"{work['conv2']:.0%} / {work['products']:.0%}",
                ]
            )
    return luma, frames


def machine_line(machine: dict) -> str:
    isa = ", ".join(ISA_NAMES[f] for f in machine.get("isa", []) if f in ISA_NAMES)
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    return (
        f"{machine['cpu']} (family {machine.get('family')}, model {machine.get('model')}), "
        f"{machine['cores']} cores; {isa or 'no AVX2'}; {versions}"
    )


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def main(argv: list[str]) -> None:
    summary = json.loads(Path(argv[0] if argv else SUMMARY_JSON).read_text())
    luma, frames = table_rows(summary)
    print(machine_line(summary["machine"]), end="\n\n")
    print(
        "docs/performance.md:",
        markdown(LUMA_HEADER, luma),
        markdown(FRAME_HEADER, frames),
        sep="\n\n",
    )
    readme = [row[:README_COLUMNS] for row in luma if row[0].split()[1] == f"x{README_SCALE}"]
    print(
        "\nREADME.md:",
        markdown(LUMA_HEADER[:README_COLUMNS], readme),
        markdown(FRAME_HEADER, frames),
        sep="\n\n",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
