"""Every kind of bad input the CLI can meet: one line naming the file and the problem, exit
code 1, no traceback, and nothing lost: no partial output, no input touched, the other files
of the run still done. (Bad arrays given to the API: test_infer.py and test_api_properties.py;
weights files: test_model.py; supported odd layouts such as CMYK and 1-bit: test_imagefile.py.)"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from srcnn_fast.cli import main
from srcnn_fast.imagefile import write_image


def _png_bytes(image: np.ndarray) -> bytes:
    from srcnn_fast.imagefile import encode_image

    return encode_image(image, "x.png")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds almost nothing (a bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _pillow_bytes(image: np.ndarray, mode: str | None, fmt: str) -> Callable[[], bytes]:
    def make() -> bytes:
        from PIL import Image

        out = io.BytesIO()
        pil = Image.fromarray(image)
        (pil.convert(mode) if mode else pil).save(out, fmt)
        return out.getvalue()

    return make


def _cut(make: Callable[[], bytes], keep: float) -> Callable[[], bytes]:
    return lambda: (data := make())[: int(len(data) * keep)]


GOOD = np.random.default_rng(0).integers(0, 256, (6, 7, 3)).astype(np.uint8)
CORRUPT = "not an image OpenCV can decode, or corrupt"

#: name -> (file bytes, the problem: the message after "FILE: ")
BAD_FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.png": (lambda: b"", "empty file"),
    "empty.jpg": (lambda: b"", "empty file"),
    "truncated.png": (lambda: _png_bytes(GOOD)[:60], CORRUPT),
    "cut-in-data.png": (_cut(lambda: _png_bytes(GOOD), 0.9), CORRUPT),
    "truncated.jpg": (_cut(_pillow_bytes(GOOD, None, "JPEG"), 0.5), CORRUPT),
    "truncated.tif": (_cut(_pillow_bytes(GOOD, None, "TIFF"), 0.5), CORRUPT),
    "truncated.webp": (_cut(_pillow_bytes(GOOD, None, "WEBP"), 0.5), CORRUPT),
    "corrupt.jpg": (lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, CORRUPT),
    "notes.png": (lambda: b"shopping list: milk, eggs\n", CORRUPT),
    "notes.bmp": (lambda: b"BM but not a bitmap", CORRUPT),
    "zero-width.png": (lambda: _png_header_only(0, 5), CORRUPT),
    "zero-height.png": (lambda: _png_header_only(5, 0), CORRUPT),
    "bomb.png": (
        lambda: _png_header_only(100_000, 100_000),
        "image is 100000x100000 = 10,000,000,000 pixels, over the 500,000,000-pixel limit "
        "(raise it with --max-pixels)",
    ),
    "float.tif": (
        _pillow_bytes(np.zeros((4, 5), np.float32), None, "TIFF"),
        "unsupported sample type float32 (8- or 16-bit only)",
    ),
    "int32.tif": (
        _pillow_bytes(GOOD[..., 0], "I", "TIFF"),
        "unsupported sample type int32 (8- or 16-bit only)",
    ),
    "lab.tif": (
        _pillow_bytes(GOOD, "LAB", "TIFF"),
        "unsupported colour space CIELAB (convert it to RGB)",
    ),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_file_fails_alone(
    name: str, tmp_path: Path, tiny_weights: Path, capsys, recwarn: pytest.WarningsRecorder
) -> None:
    data, problem = BAD_FILES[name]
    bad = tmp_path / name
    bad.write_bytes(data())
    write_image(tmp_path / "good.png", GOOD)
    before = bad.read_bytes()
    code = main(["upscale", str(bad), str(tmp_path / "good.png"), "-w", str(tiny_weights), "-q"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert lines[0] == f"srcnn-fast: error: {bad}: {problem}", lines
    assert len(lines) == 2 and "1 upscaled, 1 failed" in lines[1], lines
    # A warning (Pillow's "Truncated File Read") would be two more lines on a user's stderr.
    assert [f"{w.category.__name__}: {w.message}" for w in recwarn] == []
    assert (tmp_path / "good_x2.png").exists(), "one bad file never stops the others"
    assert bad.read_bytes() == before
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == sorted([name, "good.png", "good_x2.png", "tiny_x2.npz"]), leftovers


def test_bomb_limit_can_be_raised(tmp_path: Path, tiny_weights: Path, capsys) -> None:
    """Past the limit the decoder decides: this bomb holds no pixel data, so it is corrupt."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(30_000, 30_000))
    argv = ["upscale", str(bomb), "-w", str(tiny_weights), "-q", "--max-pixels", "1000000000"]
    assert main(argv) == 1
    assert "bomb.png: not an image OpenCV can decode" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["gray", "gray+alpha", "RGB", "RGBA"])
def test_one_pixel_image_upscales(channels: int, dtype, tmp_path: Path, tiny_weights: Path) -> None:
    """A 1x1 file of every layout and depth comes out 2x2, same layout and depth."""
    from srcnn_fast.imagefile import read_image

    top = np.iinfo(dtype).max
    pixel = np.array([top // 7, top, top // 3, top // 2][:channels], dtype)
    write_image(
        tmp_path / "dot.png", pixel[0].reshape(1, 1) if channels == 1 else pixel[None, None]
    )
    assert main(["upscale", str(tmp_path / "dot.png"), "-w", str(tiny_weights), "-q"]) == 0
    out = read_image(tmp_path / "dot_x2.png")
    assert out.dtype == dtype
    assert out.shape == ((2, 2) if channels == 1 else (2, 2, channels))


def test_missing_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "a.png", GOOD)
    assert main(["upscale", "a.png", "-w", "nothere.npz"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "srcnn-fast: error: nothere.npz: no such weights file"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.parametrize(
    ("argv_tail", "problem"),
    [
        (
            ["-o", "{tmp}/out.jpg"],
            "out.jpg: JPEG has no alpha channel and the image is transparent",
        ),
        (["-o", "{tmp}/out.gif"], "out.gif: cannot write .gif"),
    ],
)
def test_outputs_that_would_lose_data_are_refused(
    argv_tail: list[str], problem: str, tmp_path: Path, tiny_weights: Path, capsys
) -> None:
    write_image(tmp_path / "rgba.png", np.zeros((4, 4, 4), np.uint8))
    argv = ["upscale", str(tmp_path / "rgba.png"), "-w", str(tiny_weights)]
    assert main(argv + [a.format(tmp=tmp_path) for a in argv_tail]) == 1
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgba.png", "tiny_x2.npz"]


def test_corrupt_weights_file(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"PK\x03\x04 this is not a weights file")
    write_image(tmp_path / "a.png", GOOD)
    assert main(["upscale", str(tmp_path / "a.png"), "-w", str(weights)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(
        f"srcnn-fast: error: {weights}: not a srcnn-fast weights file (.npz) or corrupt ("
    ), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "w.npz"]


# --- outputs that cannot be written ----------------------------------------------------------


def _drop_root_overrides() -> None:
    """In the child, before exec: remove the capabilities that let root ignore permission
    bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) from the bounding set, so that
    the exec'd CLI, still uid 0, meets a 0o500 folder as any user would."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _cli_as_a_user(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess that permission bits stop, also when the tests run as root."""
    as_root = os.geteuid() == 0
    try:
        return subprocess.run(
            [sys.executable, "-m", "srcnn_fast.cli", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            preexec_fn=_drop_root_overrides if as_root else None,
        )
    except subprocess.SubprocessError as exc:  # no CAP_SETPCAP here (a locked-down container)
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE: {exc}")


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        ("{ro}/", "{ro}/a_x2.png: cannot write the output ({ro}: Permission denied)"),
        ("{ro}/sub/", "{ro}/sub/a_x2.png: cannot write the output ({ro}: Permission denied)"),
    ],
    ids=["folder", "sub-folder"],
)
def test_output_folder_without_write_permission(
    out: str, problem: str, tmp_path: Path, tiny_weights: Path
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    write_image(tmp_path / "a.png", GOOD)
    ro.chmod(0o500)
    try:
        argv = ["upscale", str(tmp_path / "a.png"), "-o", out.format(ro=ro), "-q"]
        run = _cli_as_a_user([*argv, "-w", str(tiny_weights), "--backend", "reference"])
        assert list(ro.iterdir()) == [], "nothing written, not even a temporary file"
    finally:
        ro.chmod(0o700)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1, run.stderr
    assert lines[0] == f"srcnn-fast: error: {problem.format(ro=ro)}", lines
    assert len(lines) == 2 and "0 upscaled, 1 failed" in lines[1], lines


def test_an_unwritable_output_folder_is_refused_before_any_work(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A folder that refuses new files (here: as a read-only mount answers) is found before
    any image is read or computed, and the message names the output asked for, not a
    temporary file."""
    import errno
    import tempfile

    from srcnn_fast.infer import Upscaler

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def computed(*args, **kwargs):
        raise AssertionError("the image was computed before the output was checked")

    write_image(tmp_path / "a.png", GOOD)
    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(Upscaler, "__call__", computed)
    monkeypatch.setattr(Upscaler, "upscale_bands", computed)
    out = tmp_path / "out"
    argv = ["upscale", str(tmp_path / "a.png"), "-o", f"{out}/", "-w", str(tiny_weights), "-q"]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (
        f"srcnn-fast: error: {out}/a_x2.png: cannot write the output "
        f"({tmp_path}: Read-only file system)"
    ), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "tiny_x2.npz"]


def test_names_too_long_for_the_file_system(tmp_path: Path, tiny_weights: Path, capsys) -> None:
    """An input or an output name over the file system's 255 bytes: one line each (OSError
    from the file system, not a traceback), and the good file of the run is still done."""
    write_image(tmp_path / "good.png", GOOD)
    long_input = tmp_path / ("i" * 300 + ".png")
    argv = ["upscale", str(long_input), str(tmp_path / "good.png"), "-w", str(tiny_weights)]
    assert main([*argv, "-q"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"srcnn-fast: error: {long_input}: File name too long", lines
    assert len(lines) == 2 and "1 upscaled, 1 failed" in lines[1], lines
    long_output = tmp_path / ("o" * 300 + ".png")
    argv = ["upscale", str(tmp_path / "good.png"), "-o", str(long_output), "-w", str(tiny_weights)]
    assert main([*argv, "-q"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"srcnn-fast: error: {long_output}: File name too long", lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.png", "good_x2.png", "tiny_x2.npz"]
    # Several inputs: -o is checked as a folder before any work (cli.cmd_upscale).
    long_folder = tmp_path / ("o" * 300)
    argv = ["upscale", str(tmp_path / "good.png"), str(tmp_path / "good_x2.png")]
    assert main([*argv, "-o", f"{long_folder}/", "-w", str(tiny_weights), "-q"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"srcnn-fast: error: {long_folder}: File name too long"], lines


def test_ctrl_c_mid_write_leaves_no_partial_file(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Interrupted while a tiled image is being written band by band: exit 130, and neither
    the output nor its temporary file is left behind."""
    from srcnn_fast.infer import Upscaler

    real_bands = Upscaler.upscale_bands

    def interrupted(self, image, tile=None, **hints):
        bands = real_bands(self, image, tile, **hints)
        yield next(bands)
        raise KeyboardInterrupt

    monkeypatch.setattr(Upscaler, "upscale_bands", interrupted)
    write_image(tmp_path / "a.png", np.zeros((40, 40, 3), np.uint8))
    argv = ["upscale", str(tmp_path / "a.png"), "-w", str(tiny_weights), "--tile", "8"]
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "tiny_x2.npz"]
