"""The documentation holds together: every relative link in README.md and docs/*.md resolves
(file and #anchor), the README stays a short door (under 12 KB), its test command is the one
`.ci/run` runs, and its tables agree with the test floors and the full speed table."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
#: [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")".
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
EXTERNAL = ("http://", "https://", "mailto:")


def _prose(text: str) -> str:
    """The page without code blocks and code spans, where link syntax is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than '-'
    and '_' removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        result.add(slug if n == 0 else f"{slug}-{n}")
    return result


def links(page: Path) -> list[str]:
    return LINK.findall(_prose(page.read_text(encoding="utf-8")))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if target.startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no file {os.path.relpath(dest, ROOT)})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    return broken


def test_the_link_checker_sees_links_and_anchors() -> None:
    assert github_slug("Set up (two commands)") == "set-up-two-commands"
    assert github_slug("GPU: the model") == "gpu-the-model"
    assert github_slug("Huge images: tiling") == "huge-images-tiling"
    assert LINK.findall('see [a](b.md#c) and ![img](d.png "t") not `[e](f)`') == [
        "b.md#c",
        "d.png",
        "f",
    ]
    assert links(README), "no links found in README.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n  " + "\n  ".join(broken)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size < 12 * 1024, f"README.md is {size} bytes; keep it under 12 KB, move detail to docs/"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines()]
    assert ci in commands, f".ci/run runs {ci!r}, which no README code block shows"


def _table(text: str, header_start: str) -> list[list[str]]:
    """Rows (cells stripped, the header and rule skipped) of the table whose header starts so."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_readme_quality_table_matches_the_quality_test_floors() -> None:
    source = (ROOT / "tests" / "test_quality.py").read_text(encoding="utf-8")
    assign = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", "") == "README_SET14_GAIN"
    )
    floors = ast.literal_eval(assign.value)
    rows = _table(README.read_text(encoding="utf-8"), "| set | scale |")
    gains = {int(r[1].lstrip("x")): float(r[4].split()[0]) for r in rows if r[0] == "Set14"}
    assert gains == floors, (
        f"README Set14 gains {gains} != tests/test_quality.py README_SET14_GAIN "
        f"{floors}: update both together"
    )


SPEED_TABLE = ROOT / "bench" / "speed_table.py"
TABLE_RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


def _speed_table_module():
    """bench/speed_table.py (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("speed_table", SPEED_TABLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


speed_table = _speed_table_module()


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table outside code blocks: (header cells, rows of cells)."""
    lines = FENCE.sub("", text).splitlines()
    tables = []
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and TABLE_RULE.match(lines[i + 1]):
            rows = []
            for line in lines[i + 2 :]:
                if not line.startswith("|"):
                    break
                rows.append(_cells(line))
            tables.append((_cells(lines[i]), rows))
    return tables


def speed_table_problems(readme: str, performance: str) -> list[str]:
    """What keeps the README's speed table from being the first columns of rows of the full
    luma table in docs/performance.md (both found by their headers, as bench/speed_table.py
    writes them; rows matched by LR size and precision), or the frame table from being there."""
    readme_tables = [t for t in markdown_tables(readme) if t[0] == speed_table.README_HEADER]
    full_tables = [t for t in markdown_tables(performance) if t[0] == speed_table.LUMA_HEADER]
    frame_tables = [t for t in markdown_tables(performance) if t[0] == speed_table.FRAME_HEADER]
    problems = []
    if len(readme_tables) != 1:
        problems.append(f"README.md: {len(readme_tables)} tables with {speed_table.README_HEADER}")
    if len(full_tables) != 1:
        problems.append(f"performance.md: {len(full_tables)} tables with {speed_table.LUMA_HEADER}")
    if len(frame_tables) != 1:
        problems.append(
            f"performance.md: {len(frame_tables)} tables with {speed_table.FRAME_HEADER}"
        )
    if problems:
        return problems
    (header, short), (full_header, full_rows) = readme_tables[0], full_tables[0]
    if header != full_header[: len(header)]:
        return [f"README header {header} is not the start of {full_header}"]
    precision = header.index("precision")
    full: dict[tuple[str, str], list[str]] = {}
    for row in full_rows:
        key = (row[0], row[precision])
        if key in full:
            problems.append(f"performance.md has two rows for {key}")
        full[key] = row
    if not short:
        problems.append("no rows in README.md's speed table")
    for row in short:
        key = (row[0], row[precision])
        if len(row) != len(header):
            problems.append(f"README speed row {row} has {len(row)} cells, not {len(header)}")
        elif key not in full:
            problems.append(f"README speed row {key} is not in docs/performance.md")
        elif row != full[key][: len(row)]:
            problems.append(f"README speed row {row} differs from docs/performance.md {full[key]}")
    return problems


def test_readme_speed_rows_are_rows_of_the_full_table() -> None:
    problems = speed_table_problems(
        README.read_text(encoding="utf-8"),
        (ROOT / "docs" / "performance.md").read_text(encoding="utf-8"),
    )
    assert not problems, (
        "the speed tables are not bench/speed_table.py's (paste its output):\n  "
        + "\n  ".join(problems)
    )


def _row(group: str, impl: str, kind: str, precision: str, median_ms: float, **extra) -> dict:
    return {
        "group": group,
        "impl": impl,
        "kind": kind,
        "precision": precision,
        "median_ms": median_ms,
        "gflops": 1000 / median_ms,
        "work": None,
        **extra,
    }


#: A run with every precision of ours at 640x360 x3, no bf16 row at 256x256 x3, frames, aux
#: rows, int8 peers and a GPU group (no CPU row of ours: in no table).
SYNTHETIC_SUMMARY = {
    "machine": {
        "cpu": "Test CPU 9000",
        "family": "26",
        "model": "2",
        "cores": 4,
        "isa": ["avx2", "fma", "avx512_bf16", "amx_int8"],
        "versions": {"numpy": "2.4.6", "openvino": "2026.4.1"},
    },
    "rows": [
        _row("1920x1080 x2", "cuda", "ours", "fp32", 5.0),
        _row("1920x1080 x2", "cudnn-nchw", "gpu-peer", "fp32", 7.0),
        _row("640x360 x3", "cpu", "ours", "fp32", 50.0, work={"conv2": 0.94, "products": 0.88}),
        _row("640x360 x3", "cpu-bf16", "ours", "bf16", 25.0, vs_our_cpu=2.0),
        _row("640x360 x3", "cpu-int8", "ours", "int8", 20.0, vs_our_cpu=2.5),
        _row("640x360 x3", "reference", "ours", "fp32", 900.0),
        _row("640x360 x3", "cuda", "ours", "fp32", 3.0),
        _row("640x360 x3", "openvino-f32", "peer", "fp32", 100.0),
        _row("640x360 x3", "onnxruntime", "peer", "fp32", 120.0),
        _row("640x360 x3", "openvino-bf16", "peer", "bf16", 40.0),
        _row("640x360 x3", "openvino-int8", "peer", "int8", 30.0),
        _row("640x360 x3", "onnxruntime-int8", "peer", "int8", 45.0),
        _row("256x256 x3", "cpu", "ours", "fp32", 10.0),
        _row("256x256 x3", "cpu-int8", "ours", "int8", 4.0),
        _row("256x256 x3", "openvino-f32", "peer", "fp32", 20.0),
        _row("256x256 x3", "onnxruntime-int8", "peer", "int8", 8.0),
        _row("256x256 x3", "openvino-int8", "peer", "int8", 9.0),
        _row("256x256 x2", "cpu", "ours", "fp32", 6.0),
        _row("256x256 x2", "cpu-bf16", "ours", "bf16", 5.0),
        _row("frame 640x360 x3", "cpu", "ours", "fp32", 52.0, outside_network=0.04),
        _row("frame 640x360 x3", "cpu-bf16", "ours", "bf16", 30.0),
        _row("frame 640x360 x3", "cpu-int8", "ours", "int8", 26.0, outside_network=0.1),
        _row("frame 640x360 x3", "cpu-gray", "aux", "fp32", 50.0),
        _row("frame 640x360 x3", "cpu-int8-gray", "aux", "int8", 23.4),
        _row("frame 640x360 x3", "openvino-f32", "peer", "fp32", 104.0),
        _row("frame 640x360 x3", "openvino-bf16", "peer", "bf16", 60.0),
    ],
}


def test_speed_table_has_one_row_per_precision_of_ours() -> None:
    luma, frames = speed_table.table_rows(SYNTHETIC_SUMMARY)
    header = speed_table.LUMA_HEADER
    assert all(len(row) == len(header) for row in luma)
    assert all(len(row) == len(speed_table.FRAME_HEADER) for row in frames)
    # Smallest LR size first, then scale; per group fp32, bf16, int8 where the run has them.
    assert [(row[0], row[1]) for row in luma] == [
        ("256x256 x2 (512x512)", "fp32"),
        ("256x256 x2 (512x512)", "bf16"),
        ("256x256 x3 (768x768)", "fp32"),
        ("256x256 x3 (768x768)", "int8"),
        ("640x360 x3 (1920x1080)", "fp32"),
        ("640x360 x3 (1920x1080)", "bf16"),
        ("640x360 x3 (1920x1080)", "int8"),
    ]
    rows = {(row[0], row[1]): dict(zip(header[2:], row[2:], strict=True)) for row in luma}
    # By column name ("vs it", twice, keeps the second: against any precision's best peer).
    fp32 = luma[4]
    assert fp32[1:8] == [
        "fp32",
        "50",
        "100 (OpenVINO f32)",
        "2.00x",
        "30 (OpenVINO int8 (NNCF))",
        "0.60x",
        "1.00x",
    ]
    assert fp32[8:] == ["20", "94% / 88%"]
    assert luma[5][1:8] == [
        "bf16",
        "25",
        "40 (OpenVINO bf16)",
        "1.60x",
        "30 (OpenVINO int8 (NNCF))",
        "1.20x",
        "2.00x",
    ]
    assert luma[6][1:8] == [
        "int8",
        "20",
        "30 (OpenVINO int8 (NNCF))",
        "1.50x",
        "30 (OpenVINO int8 (NNCF))",
        "1.50x",
        "2.50x",
    ]
    assert luma[6][9] == "-"  # no work recorded
    small_int8 = rows[("256x256 x3 (768x768)", "int8")]
    assert small_int8["best same-precision peer ms"] == "8 (ONNX Runtime int8)"
    assert small_int8["vs our fp32"] == "2.50x"
    # No peer in the group: dashes in the peer columns, the row itself stays.
    assert luma[1][3:7] == ["-", "-", "-", "-"]
    assert luma[1][7] == "1.20x"

    assert [(row[0], row[1], row[-1]) for row in frames] == [
        ("640x360 -> 1920x1080", "fp32", "4%"),
        ("640x360 -> 1920x1080", "bf16", "-"),
        ("640x360 -> 1920x1080", "int8", "10%"),
    ]
    assert frames[2][1:8] == ["int8", "26", "-", "-", "60 (OpenVINO bf16)", "2.31x", "2.00x"]


def test_speed_table_output_passes_the_docs_check(tmp_path: Path) -> None:
    """Pages holding bench/speed_table.py's output pass speed_table_problems; edited ones do
    not."""
    blocks = speed_table.blocks(SYNTHETIC_SUMMARY)
    line = speed_table.machine_line(SYNTHETIC_SUMMARY["machine"])
    assert line.startswith("Test CPU 9000 (family 26, model 2), 4 cores; AVX2, FMA")
    performance = blocks["docs/performance.md"]
    readme = blocks["README.md"]
    assert performance.count(line) == 2 and readme.count(line) == 1  # above each table
    for text in (performance, readme):
        for table in text.split(line)[1:]:
            assert table.startswith("\n\n| ")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"# srcnn-fast\n\n## Speed\n\n{readme}\n\nMore.\n")
    (tmp_path / "docs" / "performance.md").write_text(f"# Performance\n\n{performance}\n")
    readme_page = (tmp_path / "README.md").read_text()
    full_page = (tmp_path / "docs" / "performance.md").read_text()
    assert speed_table_problems(readme_page, full_page) == []

    ((header, short),) = [
        t for t in markdown_tables(readme_page) if t[0][0] == speed_table.LUMA_HEADER[0]
    ]
    assert header == speed_table.README_HEADER == speed_table.LUMA_HEADER[:8]
    assert header[-1] == "vs our fp32"
    assert [(row[0], row[1]) for row in short] == [
        ("256x256 x3 (768x768)", "fp32"),
        ("256x256 x3 (768x768)", "int8"),
        ("640x360 x3 (1920x1080)", "fp32"),
        ("640x360 x3 (1920x1080)", "bf16"),
        ("640x360 x3 (1920x1080)", "int8"),
    ]

    edited = readme_page.replace("| 2.50x |", "| 2.60x |", 1)
    assert edited != readme_page
    assert any("differs" in p for p in speed_table_problems(edited, full_page))
    missing = full_page.replace("| 640x360 x3 (1920x1080) | int8 |", "| 640x360 x3 | int8 |")
    assert any("is not in" in p for p in speed_table_problems(readme_page, missing))
    old_header = readme_page.replace("| precision |", "| cpu-bf16 ms |", 1)
    assert speed_table_problems(old_header, full_page)
    no_frames = full_page.replace("| outside the network |", "| cpu as gray ms |")
    assert speed_table_problems(readme_page, no_frames)
