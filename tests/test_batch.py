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
    # (test_bad_inputs.py has the permission case, run without root's overrides.)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["upscale", str(tree / "a.png"), "-o", f"{blocker}/sub/", "-w", str(tiny_weights)]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (
        f"srcnn-fast: error: {blocker}/sub/a_x2.png: cannot write the output "
        f"({blocker} is not a folder)"
    ), lines
    assert len(lines) == 2 and "0 upscaled, 1 failed" in lines[1], lines
    assert blocker.read_text() == "x" and outputs(tree) == []


def test_output_folder_that_is_a_file(tree: Path, tiny_weights: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["upscale", str(tree / "a.png"), str(tree / "b.jpg"), "-o", str(blocker)]
    assert main([*argv, "-w", str(tiny_weights)]) == 2


def test_progress_bar_on_a_terminal_only(
    tree: Path, tiny_weights: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    argv = ["upscale", str(tree), "-o", str(tmp_path / "o"), "-w", str(tiny_weights)]
    argv += ["--overwrite", "--backend", "cpu"]
    assert main(argv) == 0  # not a terminal: one line per file on stdout, the summary
    captured = capsys.readouterr()
    assert captured.err.startswith("srcnn-fast: 2 upscaled in ") and "|" not in captured.err
    assert captured.out.count(" -> ") == 2
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "image" in captured.err, captured.err  # tqdm's bar
    assert captured.out == ""
    assert main([*argv, "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_decoding_and_encoding_overlap_compute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While image i computes, image i + 1 is being decoded and image i - 1 encoded. Each
    side waits (up to 5 s) for the other to have started: run one after the other, the
    waits time out and are recorded as failures."""
    import threading

    from srcnn_fast import batch

    n = 3
    jobs = []
    for i in range(n):
        write_image(tmp_path / f"{i}.png", np.full((4, 5, 3), 40 * i, np.uint8))
        jobs.append(batch.Job(tmp_path / f"{i}.png", tmp_path / f"{i}_x2.png"))
    started = {(stage, i): threading.Event() for stage in ("load", "compute") for i in range(n)}
    waits: list[tuple[str, bool]] = []
    real_read, real_write = batch.read_image_file, batch.write_image

    def read(path):
        i = int(Path(path).stem)
        started["load", i].set()
        if i > 0:  # not merely read ahead: read while the one before computes
            waits.append((f"decode {i} during compute {i - 1}", started["compute", i - 1].wait(5)))
        return real_read(path)

    def write(path, image, **kwargs):
        i = int(Path(path).stem.split("_")[0])
        if i + 1 < n:
            waits.append((f"encode {i} during compute {i + 1}", started["compute", i + 1].wait(5)))
        return real_write(path, image, **kwargs)

    class Upscaler:
        calls = 0

        def tile_size(self, image, tile=None) -> int:
            return 0

        def __call__(self, image, **hints):
            i, self.calls = self.calls, self.calls + 1
            started["compute", i].set()
            if i + 1 < n:
                waits.append((f"decode {i + 1} during compute {i}", started["load", i + 1].wait(5)))
            return image.repeat(2, 0).repeat(2, 1)

    monkeypatch.setattr(batch, "read_image_file", read)
    monkeypatch.setattr(batch, "write_image", write)
    summary = batch.run_jobs(jobs, Upscaler(), progress=False)
    assert summary.done == n, summary.errors
    assert len(waits) == 3 * (n - 1) and all(ok for _, ok in waits), waits
    assert read_image(tmp_path / "2_x2.png").shape == (8, 10, 3)


@pytest.mark.parametrize("tile", [None, 3], ids=["whole", "tiled"])
def test_an_output_that_appears_mid_run_is_not_replaced(
    tile, tmp_path: Path, tiny_weights: Path
) -> None:
    """The output did not exist when the run checked, and another program (or a second run)
    writes it while this image computes: without --overwrite it is kept, and this image fails
    with the usual line. (The final step is a hard link, which cannot replace a file.)"""
    from srcnn_fast.batch import Job, run_jobs
    from srcnn_fast.infer import Upscaler

    source, target = tmp_path / "a.png", tmp_path / "a_x2.png"
    write_image(source, np.full((6, 7, 3), 90, np.uint8))

    class Racing(Upscaler):
        def __call__(self, image, tile=None, **hints):
            target.write_bytes(b"someone else's")
            return super().__call__(image, tile)

        def upscale_bands(self, image, tile=None, **hints):
            target.write_bytes(b"someone else's")
            yield from super().upscale_bands(image, tile)

    up = Racing(weights=tiny_weights, backend="cpu", tile=tile)
    assert (up.tile_size(read_image(source)) != 0) == (tile is not None)
    summary = run_jobs([Job(source, target)], up, progress=False, report=lambda _: None)
    assert summary.errors == [f"{target}: already exists (use --overwrite to replace it)"]
    assert target.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.png", "tiny_x2.npz"]


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (MemoryError("Unable to allocate 1.00 TiB"), "out of memory (Unable to allocate 1.00 TiB"),
        (MemoryError(), "out of memory (allocation failed"),
        (OSError(5, "Input/output error"), "Input/output error"),
    ],
    ids=["numpy", "bare", "io"],
)
def test_memory_and_os_errors_fail_one_file_only(
    error: BaseException, problem: str, tree: Path, tmp_path: Path
) -> None:
    """Not only our own errors: running out of memory or an I/O error on one image is one
    line naming it, and the next image still runs."""
    from srcnn_fast.batch import Job, run_jobs

    class Upscaler:
        calls = 0

        def tile_size(self, image, tile=None) -> int:
            return 0

        def __call__(self, image, **hints):
            self.calls += 1
            if self.calls == 1:
                raise error
            return image.repeat(2, 0).repeat(2, 1)

    jobs = [
        Job(tree / "a.png", tmp_path / "a_x2.png"),
        Job(tree / "trip/c.png", tmp_path / "c_x2.png"),
    ]
    summary = run_jobs(jobs, Upscaler(), progress=False, report=lambda _: None)
    assert summary.done == 1 and len(summary.errors) == 1, summary
    assert summary.errors[0].startswith(f"{tree / 'a.png'}: {problem}"), summary.errors
    assert "\n" not in summary.errors[0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith("_x2.png")) == ["c_x2.png"]
