"""Reading and writing image files: EXIF orientation applied, bit depths kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from srcnn_fast.imagefile import read_image, write_image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation: int, tmp_path: Path) -> None:
    from PIL import Image, ImageOps

    rgb = np.random.default_rng(orientation).integers(0, 256, (5, 8, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path, exif=exif)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)


def test_sixteen_bit_round_trip(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    write_image(tmp_path / "deep.png", image)
    back = read_image(tmp_path / "deep.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, image)
