"""Folders, globs and many files: naming, mirrored trees, skipping, limits, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srcnn_fast.cli import main
from srcnn_fast.imagefile import read_image, write_image


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for rel in ("a.png", "b.jpg", "trip/c.png", "trip/day2/d.webp"):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, rng.integers(0, 256, (6, 7, 3)).astype(np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def outputs(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*_x2.*"))


def test_folder_recursive_mirrors_the_tree(tree: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "big"
    assert main(["upscale", str(tree), "-r", "-o", str(out), "-w", str(tiny_weights), "-q"]) == 0
    assert outputs(out) == ["a_x2.png", "b_x2.jpg", "trip/c_x2.png", "trip/day2/d_x2.webp"]
    assert read_image(out / "trip/day2/d_x2.webp").shape == (12, 14, 3)


def test_folder_without_r_takes_its_own_images_only(tree: Path, tiny_weights: Path) -> None:
    assert main(["upscale", str(tree), "-w", str(tiny_weights), "-q"]) == 0
    assert outputs(tree) == ["a_x2.png", "b_x2.jpg"]
    # A second run over the same folder never takes a_x2.png as an input (no a_x2_x2.png).
    assert main(["upscale", str(tree), "-w", str(tiny_weights), "-q", "--skip-existing"]) == 0
    assert outputs(tree) == ["a_x2.png", "b_x2.jpg"]


def test_skip_existing_and_overwrite(tree: Path, tiny_weights: Path, capsys) -> None:
    target = tree / "a_x2.png"
    target.write_bytes(b"old")
    argv = ["upscale", str(tree / "a.png"), "-w", str(tiny_weights)]
    assert main([*argv, "--skip-existing"]) == 0
    assert target.read_bytes() == b"old"
    assert "0 upscaled, 1 skipped" in capsys.readouterr().err
    assert main(argv) == 1 and target.read_bytes() == b"old"
    assert main([*argv, "--overwrite"]) == 0 and read_image(target).shape == (12, 14, 3)


def test_globs(tree: Path, tiny_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "g"
    pattern = str(tree / "**" / "*.png")
    assert main(["upscale", pattern, "-o", str(out), "-w", str(tiny_weights), "-q"]) == 0
    assert outputs(out) == ["a_x2.png", "trip/c_x2.png"]
    assert main(["upscale", str(tree / "*.gif"), "-w", str(tiny_weights), "-q"]) == 1


def test_size_limit_before_decoding(tree: Path, tiny_weights: Path, capsys) -> None:
    argv = ["upscale", str(tree / "a.png"), "-w", str(tiny_weights), "--max-pixels", "41"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "a.png: image is 7x6 = 42 pixels, over the 41-pixel limit" in err
    assert "--max-pixels" in err and not (tree / "a_x2.png").exists()


def test_unwritable_output_folder(tree: Path, tiny_weights: Path, tmp_path: Path, capsys) -> None:
    # A folder that cannot be created (a file stands in the way; permissions would not stop
    # root, who runs CI): one line, nothing written, exit 1.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["upscale", str(tree / "a.png"), "-o", f"{blocker}/sub/", "-w", str(tiny_weights)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot create the folder" in err and "Traceback" not in err


def test_output_folder_that_is_a_file(tree: Path, tiny_weights: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["upscale", str(tree / "a.png"), str(tree / "b.jpg"), "-o", str(blocker)]
    assert main([*argv, "-w", str(tiny_weights)]) == 2
