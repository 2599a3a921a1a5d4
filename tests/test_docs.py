"""The documentation holds together: every relative link in README.md and docs/*.md resolves
(file and #anchor), the README stays a short door (under 12 KB), its test command is the one
`.ci/run` runs, and its tables agree with the test floors and the full speed table."""

from __future__ import annotations

import ast
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


def test_readme_speed_rows_are_rows_of_the_full_table() -> None:
    header = "| LR size, scale (output) |"
    short = _table(README.read_text(encoding="utf-8"), header)
    full = {r[0]: r for r in _table((ROOT / "docs" / "performance.md").read_text("utf-8"), header)}
    assert short, "no speed table in README.md"
    for row in short:
        assert row[0] in full, f"README speed row {row[0]!r} is not in docs/performance.md"
        assert row == full[row[0]][: len(row)], (
            f"README speed row {row} differs from docs/performance.md {full[row[0]]}"
        )
