"""`srcnn-fast` as a user meets it: outputs, naming, exit codes and one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SAMPLES

from srcnn_fast.cli import main
from srcnn_fast.imagefile import read_image, write_image
from srcnn_fast.model import Architecture, SRCNNWeights


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_image(folder / "a.png", rng.integers(0, 256, (9, 11, 3)).astype(np.uint8))
    write_image(folder / "b.png", rng.integers(0, 65536, (7, 5)).astype(np.uint16))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srcnn_fast.cli", *args], cwd=REPO, capture_output=True, text=True
    )


def test_upscale_writes_name_xs_beside_the_input(images: Path, tiny_weights: Path, capsys) -> None:
    assert main(["upscale", str(images / "a.png"), "-w", str(tiny_weights)]) == 0
    out = read_image(images / "a_x2.png")
    assert out.shape == (18, 22, 3) and out.dtype == np.uint8
    assert "a_x2.png" in capsys.readouterr().out
    assert main(["upscale", str(images / "b.png"), "-w", str(tiny_weights), "-q"]) == 0
    b = read_image(images / "b_x2.png")
    assert b.shape == (14, 10) and b.dtype == np.uint16, "16-bit stays 16-bit"


def test_output_file_and_folder(images: Path, tiny_weights: Path, tmp_path: Path) -> None:
    target = tmp_path / "big.png"
    assert main(["upscale", str(images / "a.png"), "-w", str(tiny_weights), "-o", str(target)]) == 0
    assert read_image(target).shape == (18, 22, 3)
    outdir = tmp_path / "out"
    argv = ["upscale", str(images / "a.png"), str(images / "b.png"), "-w", str(tiny_weights)]
    assert main([*argv, "-o", str(outdir), "-q"]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["a_x2.png", "b_x2.png"]


def test_existing_outputs_and_inputs_are_never_overwritten(
    images: Path, tiny_weights: Path, capsys
) -> None:
    a = images / "a.png"
    existing = images / "a_x2.png"
    existing.write_bytes(b"keep me")
    assert main(["upscale", str(a), "-w", str(tiny_weights)]) == 1
    assert existing.read_bytes() == b"keep me"
    assert "already exists (use --overwrite" in capsys.readouterr().err
    assert main(["upscale", str(a), "-w", str(tiny_weights), "--overwrite", "-q"]) == 0
    assert read_image(existing).shape == (18, 22, 3)
    before = a.read_bytes()
    assert main(["upscale", str(a), "-w", str(tiny_weights), "-o", str(a), "--overwrite"]) == 1
    assert a.read_bytes() == before
    assert "refusing to overwrite an input" in capsys.readouterr().err


def test_bad_files_fail_alone_with_one_line_each(images: Path, tiny_weights: Path, capsys) -> None:
    names = ["broken.png", "a.png", "empty.jpg", "missing.png"]
    code = main(["upscale", *(str(images / n) for n in names), "-w", str(tiny_weights), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert (images / "a_x2.png").exists(), "one bad file never stops the others"
    assert not (images / "broken_x2.png").exists() and not (images / "empty_x2.jpg").exists()
    assert any("broken.png: not an image" in line for line in err), err
    assert any("empty.jpg: empty file" in line for line in err), err
    assert any("missing.png: no such file" in line for line in err), err
    assert "1 upscaled, 3 failed" in err[-1], err
    assert len(err) == 4, err  # one line per failure, then the summary: nothing from OpenCV
    assert not [p for p in images.iterdir() if ".tmp" in p.name], "no partial files"


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    cases = [
        (
            ["upscale", str(SAMPLES / "butterfly.png"), "-w", str(tmp_path / "nope.npz")],
            "nope.npz: no such weights file",
            1,
        ),
        (
            ["upscale", str(SAMPLES / "butterfly.png"), "--backend", "warp"],
            "invalid choice: 'warp'",
            2,
        ),
        (
            ["upscale", str(SAMPLES / "butterfly.png"), "-s", "7"],
            "-s 7: no shipped weights for scale 7 (shipped: 2, 3, 4); give weights for it with -w",
            2,
        ),
        (
            ["upscale", str(SAMPLES / "butterfly.png"), "-w", str(SAMPLES / "butterfly.png")],
            "butterfly.png: not a srcnn-fast weights file (a PNG image)",
            1,
        ),
        (
            ["upscale", str(SAMPLES / "butterfly.png"), "-o", str(tmp_path / "newout")],
            "newout: -o names neither an image file (add an extension: .png",
            2,
        ),
        (
            ["upscale", str(SAMPLES / "butterfly.png"), "-o", str(tmp_path / "newout")],
            "nor a folder (end it with / to make one)",
            2,
        ),
        (["upscale", str(SAMPLES / "butterfly.png"), "-s", "zero"], "not an integer", 2),
        (["upscale"], "the following arguments are required", 2),
        (["convert", str(tmp_path / "none.h5"), str(tmp_path / "o.npz"), "-s", "3"], "none.h5", 1),
        (["convert", str(tmp_path / "none.h5"), str(tmp_path / "o.npz")], "--scale", 2),
        (["eval", "--data", str(tmp_path)], "no *_LR.* / *_HR.* image pairs", 1),
    ]
    for argv, message, code in cases:
        run = run_cli(*argv)
        assert run.returncode == code, (argv, run.stderr)
        assert message in run.stderr, (argv, run.stderr)
        assert "Traceback" not in run.stderr
        if code == 1:  # a failure is one line; a usage error (2) also shows the usage
            assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert list(tmp_path.iterdir()) == [], "no refused run wrote anything"


def test_several_inputs_into_an_image_name_is_a_usage_error(tmp_path: Path, capsys) -> None:
    """`upscale a.png b.png -o single.png` used to make a folder named single.png/."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    image = np.zeros((5, 6, 3), np.uint8)
    write_image(a, image)
    write_image(b, image)
    single = tmp_path / "single.png"
    assert main(["upscale", str(a), str(b), "-o", str(single), "-q"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"srcnn-fast: error: {single}: several inputs need -o to name a folder, not a .png "
        f"file (write {tmp_path / 'single'}/ for a new folder)\n"
    ), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_console_script_upscales_the_sample(tmp_path: Path) -> None:
    # What the README's first command does, with the shipped weights.
    sample = tmp_path / "butterfly.png"
    shutil.copy(SAMPLES / "butterfly.png", sample)
    script = Path(sys.executable).with_name("srcnn-fast")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "srcnn_fast.cli"]
    run = subprocess.run([*command, "upscale", str(sample)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert read_image(tmp_path / "butterfly_x2.png").shape == (256, 256, 3)


def test_eval_prints_the_table(data_dir: Path, capsys) -> None:
    assert main(["eval", "--data", str(data_dir / "Set5"), "--scale", "4"]) == 0
    out = capsys.readouterr().out
    assert "bicubic PSNR" in out and "SRCNN PSNR" in out and out.count("img_00") == 5


def test_info_shows_backends_and_the_choice(monkeypatch, capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cpu " in out and "reference " in out and "auto -> cpu" in out
    monkeypatch.setenv("SRCNN_FAST_BACKEND", "reference")
    assert main(["info"]) == 0
    assert "auto -> reference: set by SRCNN_FAST_BACKEND=reference" in capsys.readouterr().out


def test_two_inputs_never_write_the_same_output(tmp_path: Path, tiny_weights: Path, capsys) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_image(
            tmp_path / sub / "x.png", np.full((4, 5, 3), 40 if sub == "a" else 200, np.uint8)
        )
    out = tmp_path / "out"
    argv = ["upscale", str(tmp_path / "a/x.png"), str(tmp_path / "b/x.png"), "-o", str(out)]
    assert main([*argv, "-w", str(tiny_weights), "--overwrite", "-q"]) == 1
    assert "another input of this run already writes it" in capsys.readouterr().err
    assert read_image(out / "x_x2.png").shape == (8, 10, 3)


def test_unwritable_format_is_refused_before_work(
    tmp_path: Path, tiny_weights: Path, capsys
) -> None:
    argv = ["upscale", str(SAMPLES / "butterfly.png"), "-o", str(tmp_path / "big.xyz")]
    assert main([*argv, "-w", str(tiny_weights)]) == 1
    assert "cannot write .xyz" in capsys.readouterr().err
    assert not list(tmp_path.glob("big*"))


def test_weights_scale_is_the_default(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "w3.npz"
    SRCNNWeights.random(Architecture(f1=3, n1=4, n2=4, f3=3), scale=3).save(weights)
    sample = tmp_path / "s.png"
    shutil.copy(SAMPLES / "butterfly.png", sample)
    assert main(["upscale", str(sample), "-w", str(weights), "-q"]) == 0
    assert read_image(tmp_path / "s_x3.png").shape == (384, 384, 3)


def test_alpha_and_tile_options_reach_the_output(tmp_path: Path, tiny_weights: Path) -> None:
    """--alpha network: the alpha plane is the network's upscale of it, not bicubic; --tile N:
    the same file as untiled."""
    from srcnn_fast.infer import Upscaler

    rgba = np.random.default_rng(5).integers(0, 256, (12, 17, 4)).astype(np.uint8)
    write_image(tmp_path / "a.png", rgba)
    argv = ["upscale", str(tmp_path / "a.png"), "-w", str(tiny_weights), "-q", "--overwrite"]
    assert main([*argv, "--alpha", "network"]) == 0
    network = read_image(tmp_path / "a_x2.png")
    np.testing.assert_array_equal(
        network, Upscaler(weights=tiny_weights, backend="cpu", alpha="network")(rgba)
    )
    assert main(argv) == 0
    bicubic = read_image(tmp_path / "a_x2.png")
    assert (network[..., 3] != bicubic[..., 3]).any(), "the two alpha modes differ"
    np.testing.assert_array_equal(network[..., :3], bicubic[..., :3])
    untiled = (tmp_path / "a_x2.png").read_bytes()
    assert main([*argv, "--tile", "4"]) == 0
    assert (tmp_path / "a_x2.png").read_bytes() == untiled


def test_a_precision_on_another_backend_is_a_usage_error(tmp_path: Path, capsys) -> None:
    # Issue 30: options that contradict each other exit 2 (docs/cli.md), not 1.
    for precision, backend in (("fp16", "cpu"), ("bf16", "reference"), ("int8", "cuda")):
        argv = ["upscale", str(SAMPLES / "butterfly.png"), "-o", str(tmp_path / "x.png")]
        assert main([*argv, "--precision", precision, "--backend", backend]) == 2
        err = capsys.readouterr().err
        assert f"--precision {precision} runs on the" in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())
