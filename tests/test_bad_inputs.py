"""Every kind of bad input the CLI can meet: one line naming the file and the problem, exit
code 1, no traceback, and nothing lost: no partial output, no input touched, the other files
of the run still done. (Bad arrays given to the API: test_infer.py; weights: test_model.py.)"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

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


def _float_tiff() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.zeros((4, 5), np.float32)).save(out, "TIFF")
    return out.getvalue()


GOOD = np.random.default_rng(0).integers(0, 256, (6, 7, 3)).astype(np.uint8)

#: name -> (file bytes, the message's problem part)
BAD_FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.png": (lambda: b"", "empty file"),
    "truncated.png": (lambda: _png_bytes(GOOD)[:60], "not an image OpenCV can decode, or corrupt"),
    "corrupt.jpg": (
        lambda: b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
        "not an image OpenCV can decode",
    ),
    "notes.png": (lambda: b"shopping list: milk, eggs\n", "not an image OpenCV can decode"),
    "zero.png": (lambda: _png_header_only(0, 5), "not an image OpenCV can decode"),
    "bomb.png": (lambda: _png_header_only(100_000, 100_000), "over the 500,000,000-pixel limit"),
    "float.tif": (_float_tiff, "unsupported sample type float32 (8- or 16-bit only)"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_file_fails_alone(name: str, tmp_path: Path, tiny_weights: Path, capsys) -> None:
    data, problem = BAD_FILES[name]
    bad = tmp_path / name
    bad.write_bytes(data())
    write_image(tmp_path / "good.png", GOOD)
    before = bad.read_bytes()
    code = main(["upscale", str(bad), str(tmp_path / "good.png"), "-w", str(tiny_weights), "-q"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert lines[0] == f"srcnn-fast: error: {bad}: {problem}" or (
        lines[0].startswith(f"srcnn-fast: error: {bad}: ") and problem in lines[0]
    ), lines
    assert len(lines) == 2 and "1 upscaled, 1 failed" in lines[1], lines
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


def test_one_pixel_image_upscales(tmp_path: Path, tiny_weights: Path) -> None:
    write_image(tmp_path / "dot.png", np.array([[[10, 200, 30]]], np.uint8))
    assert main(["upscale", str(tmp_path / "dot.png"), "-w", str(tiny_weights), "-q"]) == 0
    from srcnn_fast.imagefile import read_image

    assert read_image(tmp_path / "dot_x2.png").shape == (2, 2, 3)


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
    assert len(err) == 1 and str(weights) in err[0], err
    assert not (tmp_path / "a_x2.png").exists()


def test_ctrl_c_mid_write_leaves_no_partial_file(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Interrupted while a tiled image is being written band by band: exit 130, and neither
    the output nor its temporary file is left behind."""
    from srcnn_fast.infer import Upscaler

    real_bands = Upscaler.upscale_bands

    def interrupted(self, image, tile=None):
        bands = real_bands(self, image, tile)
        yield next(bands)
        raise KeyboardInterrupt

    monkeypatch.setattr(Upscaler, "upscale_bands", interrupted)
    write_image(tmp_path / "a.png", np.zeros((40, 40, 3), np.uint8))
    argv = ["upscale", str(tmp_path / "a.png"), "-w", str(tiny_weights), "--tile", "8"]
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "tiny_x2.npz"]
