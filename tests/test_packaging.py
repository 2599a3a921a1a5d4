"""The wheel carries what an installed copy needs: the weights, and kernels/ as the package
srcnn_fast.kernels, found through importlib.resources in a fresh virtual environment."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (found,) = out.glob("srcnn_fast-*.whl")
    return found


@pytest.mark.slow
def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for scale in (2, 3, 4):
        assert f"srcnn_fast/weights/srcnn_x{scale}.npz" in names
    kernels = {Path(n).name for n in names if n.startswith("srcnn_fast/kernels/")}
    sources = {p.name for p in (REPO / "kernels").iterdir() if p.suffix in (".cu", ".cuh")}
    assert sources and sources <= kernels, sources - kernels
    assert any(n.endswith("entry_points.txt") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "tools/")) for n in names)


@pytest.mark.slow
def test_installed_wheel_finds_its_kernels(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    code = (
        "import importlib.resources as r;"
        "print(sorted(p.name for p in r.files('srcnn_fast.kernels').iterdir()"
        " if p.name.endswith(('.cu', '.cuh'))))"
    )
    run = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    expected = sorted(p.name for p in (REPO / "kernels").iterdir() if p.suffix in (".cu", ".cuh"))
    assert run.stdout.strip() == str(expected)
