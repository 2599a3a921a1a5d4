"""The wheel carries what an installed copy needs: weights, kernels/ as srcnn_fast.kernels."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


@pytest.mark.slow
def test_wheel_contents(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = tmp_path.glob("srcnn_fast-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for scale in (2, 3, 4):
        assert f"srcnn_fast/weights/srcnn_x{scale}.npz" in names
    assert "srcnn_fast/kernels/__init__.py" in names and "srcnn_fast/kernels/README.md" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "tools/")) for n in names)
