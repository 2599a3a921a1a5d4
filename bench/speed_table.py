"""The speed tables of README.md and docs/performance.md, from one bench run's summary.

    pytest bench/ --benchmark-autosave        # writes .benchmarks/summary.json
    python bench/speed_table.py [summary.json] # prints the tables, the machine line above each

Each table has, per size and scale (the luma table: test_speed's CPU groups; the frame table:
test_frames'), one row per precision of ours that the summary holds, in :data:`OURS` order:
fp32 (`cpu`), bf16 (`cpu-bf16`), int8 (`cpu-int8`). A precision without a row (a backend that
refused it, a run that left it out) is left out of the table, not shown as dashes. Each row
names our median, the fastest CPU peer of the same precision and the fastest of any precision
(each with its name and the ratio "its ms / ours", so 2.00x means ours takes half its time),
and our fp32 median over this row's ("1.00x" on the fp32 row). The luma table adds the row's
GFLOP/s and the share of the dense conv2 / products its sparse blocks did; the frame table, the
share of the frame's time spent outside the network (from our gray-frame rows, "-" where the
run has none). A peer that is missing shows as "-".

:func:`machine_line` names the CPU (model, family, cores, instruction sets) and the engines'
versions; it is printed above each table ("Machine: ..."). The README takes the luma table's
x3 rows (:data:`README_SCALE`) and its first :data:`README_COLUMNS` columns, up to "vs our
fp32" (:data:`README_HEADER`): tests/test_docs.py checks that they are rows of
docs/performance.md's table.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SUMMARY_JSON = Path(__file__).resolve().parents[1] / ".benchmarks" / "summary.json"
#: Our CPU implementations, one table row each, in this order: impl -> precision.
OURS = {"cpu": "fp32", "cpu-bf16": "bf16", "cpu-int8": "int8"}
#: The implementation every row's "vs our fp32" divides by.
FP32 = "cpu"
#: Peers' display names; each names its precision where the engine runs several.
NAMES = {
    "onnxruntime": "ONNX Runtime",
    "onnxruntime-int8": "ONNX Runtime int8",
    "openvino-f32": "OpenVINO f32",
    "openvino-bf16": "OpenVINO bf16",
    "openvino-int8": "OpenVINO int8 (NNCF)",
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
#: The columns of every table after the first (the group): our row against the peers and our
#: own fp32. Each "vs it" is the peer named to its left over ours.
ROW_COLUMNS = [
    "precision",
    "ours ms",
    "best same-precision peer ms",
    "vs it",
    "best peer, any precision ms",
    "vs it",
    "vs our fp32",
]
LUMA_HEADER = ["LR size, scale (output)", *ROW_COLUMNS, "GFLOP/s", "conv2 / products done"]
FRAME_HEADER = ["RGB frame, LR -> output", *ROW_COLUMNS, "outside the network"]
#: The README's table: the luma table's x3 rows, its columns up to "vs our fp32".
README_SCALE, README_COLUMNS = 3, 1 + len(ROW_COLUMNS)
README_HEADER = LUMA_HEADER[:README_COLUMNS]
GROUP = re.compile(r"^(?P<frame>frame )?(?P<w>\d+)x(?P<h>\d+) x(?P<s>\d+)$")


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def ratio(numerator_ms: float | None, denominator_ms: float | None) -> str:
    """numerator / denominator as "2.00x" ("-" when either is missing)."""
    if numerator_ms is None or denominator_ms is None:
        return "-"
    return f"{numerator_ms / denominator_ms:.2f}x"


def median(row: dict | None) -> float | None:
    return None if row is None else row["median_ms"]


def best_peer(rows: list[dict], precision: str | None = None) -> dict | None:
    """The fastest CPU peer of ``precision`` (of any, with None) among a group's rows."""
    peers = [r for r in rows if r["kind"] == "peer" and precision in (None, r["precision"])]
    return min(peers, key=lambda r: r["median_ms"]) if peers else None


def name(row: dict) -> str:
    return NAMES.get(row["impl"], row["impl"])


def peer_cell(row: dict | None) -> str:
    return "-" if row is None else f"{ms(row['median_ms'])} ({name(row)})"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _group_key(group: str) -> tuple[int, int, int, int]:
    match = GROUP.match(group)
    assert match
    width, height, scale = (int(match[k]) for k in ("w", "h", "s"))
    return width * height, width, height, scale


def table_rows(summary: dict) -> tuple[list[list[str]], list[list[str]]]:
    """(luma rows, frame rows), each a list of cells in LUMA_HEADER / FRAME_HEADER order: per
    group (smallest LR size first, then scale), one row per precision of ours it holds."""
    groups: dict[str, list[dict]] = {}
    for row in summary["rows"]:
        if GROUP.match(row["group"]):  # the GPU's groups are not in these CPU tables
            groups.setdefault(row["group"], []).append(row)
    luma, frames = [], []
    for group in sorted(groups, key=_group_key):
        rows = groups[group]
        match = GROUP.match(group)
        assert match
        width, height, scale = (int(match[k]) for k in ("w", "h", "s"))
        ours = {r["impl"]: r for r in rows if r["kind"] == "ours"}
        fp32_ms = median(ours.get(FP32))
        any_peer = best_peer(rows)
        for impl, precision in OURS.items():
            row = ours.get(impl)
            if row is None:  # a precision this run has no row of: no table row either
                continue
            our_ms = row["median_ms"]
            same_peer = best_peer(rows, precision)
            cells = [
                precision,
                ms(our_ms),
                peer_cell(same_peer),
                ratio(median(same_peer), our_ms),
                peer_cell(any_peer),
                ratio(median(any_peer), our_ms),
                ratio(fp32_ms, our_ms),
            ]
            if match["frame"]:
                label = f"{width}x{height} -> {width * scale}x{height * scale}"
                frames.append([label, *cells, share(row.get("outside_network"))])
            else:
                label = f"{width}x{height} x{scale} ({width * scale}x{height * scale})"
                work = row.get("work")
                luma.append(
                    [
                        label,
                        *cells,
                        "-" if row.get("gflops") is None else f"{row['gflops']:.0f}",
                        "-" if not work else f"{work['conv2']:.0%} / {work['products']:.0%}",
                    ]
                )
    return luma, frames


def readme_rows(luma: list[list[str]]) -> list[list[str]]:
    """The README's rows: the luma rows at x:data:`README_SCALE`, cut to README_HEADER."""
    return [row[:README_COLUMNS] for row in luma if row[0].split()[1] == f"x{README_SCALE}"]


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


def blocks(summary: dict) -> dict[str, str]:
    """The markdown for each page: {"docs/performance.md": luma and frame tables,
    "README.md": the README's table}, the machine line above each table."""
    luma, frames = table_rows(summary)
    line = machine_line(summary["machine"])

    def block(header: list[str], rows: list[list[str]]) -> str:
        return f"Machine: {line}\n\n{markdown(header, rows)}"

    return {
        "docs/performance.md": "\n\n".join([block(LUMA_HEADER, luma), block(FRAME_HEADER, frames)]),
        "README.md": block(README_HEADER, readme_rows(luma)),
    }


def main(argv: list[str]) -> None:
    summary = json.loads(Path(argv[0] if argv else SUMMARY_JSON).read_text())
    print("\n\n".join(f"{page}:\n\n{text}" for page, text in blocks(summary).items()))


if __name__ == "__main__":
    main(sys.argv[1:])
