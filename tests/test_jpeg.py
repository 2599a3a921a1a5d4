"""JPEG inputs: the quality estimate, training on JPEG-compressed LR images (``--jpeg``), the
JPEG-aware weights and their automatic choice, and ``eval --jpeg``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close
from PIL import Image

from srcnn_fast import imageops
from srcnn_fast.imagefile import write_image
from srcnn_fast.jpeg import estimate_quality, jpeg_roundtrip, scaled_luma_table


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)


# --- the quality estimate --------------------------------------------------------------------


def test_quality_estimate_is_exact_for_pillow_jpegs(photo: np.ndarray, tmp_path: Path) -> None:
    # libjpeg's tables are a function of the quality that differs between every two qualities
    # 1..100, so the estimate must be exact (tolerance 0) for every one, RGB and gray alike.
    wrong = [
        (q, estimate_quality(_jpeg_bytes(image, q)))
        for image in (photo, photo[..., 0])
        for q in range(1, 101)
        if estimate_quality(_jpeg_bytes(image, q)) != q
    ]
    assert not wrong, f"(written, estimated) qualities that differ: {wrong}"
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes(photo, 63))
    assert estimate_quality(path) == 63  # from a path as from bytes


def test_quality_estimate_of_other_files(photo: np.ndarray, tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", photo)
    assert estimate_quality(tmp_path / "a.png") is None
    assert estimate_quality(b"not an image") is None
    assert estimate_quality(tmp_path / "missing.jpg") is None
    # A table of another design (here libjpeg's, scaled by 1.1) gets the nearest quality.
    from srcnn_fast.jpeg import quality_from_table

    assert quality_from_table(scaled_luma_table(60) * 1.1) in (55, 56)
    assert np.array_equal(scaled_luma_table(50)[0, :3], [16, 11, 10])


# --- training on JPEG-compressed LR ----------------------------------------------------------


def test_training_pair_with_jpeg_is_the_decoded_jpeg(photo: np.ndarray) -> None:
    from srcnn_fast.train import make_training_pair

    up, hr_y = make_training_pair(photo, 2, "matlab", jpeg_quality=40)
    lr = imageops.matlab_downscale(photo, 2)
    decoded = np.asarray(Image.open(io.BytesIO(_jpeg_bytes(lr, 40))).convert("RGB"))
    expected = imageops.bicubic_upscale(imageops.rgb_to_luma(imageops.to_float(decoded)), 2)
    # OpenCV's decoder (what inference reads files with) against Pillow's: both libjpeg-turbo,
    # the same integer IDCT and upsampling, so the same bytes to within one code value.
    assert_close(up, expected, 1.5 / 255, "upscaled luma of the decoded JPEG")
    clean = make_training_pair(photo, 2, "matlab")[0]
    assert np.abs(up - clean).max() > 5 / 255, "the JPEG copy must differ from the clean one"
    assert_close(hr_y, make_training_pair(photo, 2)[1], 0.0, "HR luma")
    assert jpeg_roundtrip(lr, 90).shape == lr.shape


def test_jpeg_dataset_copies_and_holdout(tmp_path: Path) -> None:
    from srcnn_fast.train import TrainConfig, load_dataset

    rng = np.random.default_rng(0)
    for i in range(5):
        write_image(tmp_path / f"img{i}.png", rng.integers(0, 256, (40, 44, 3), dtype=np.uint8))
    base = dict(data=str(tmp_path), scale=2, out="", patch=17, val_fraction=0.2, augment=False)
    clean = load_dataset(TrainConfig(**base))
    config = TrainConfig(**base, jpeg_qualities=(30, 60), jpeg_copies=3, jpeg_clean_share=0.5)
    first, again = load_dataset(config), load_dataset(config)
    assert len(first.sampler.planes) == 3 * len(clean.sampler.planes) == 12
    # The hold-out: every image at every quality, and clean (clean share > 0), deterministic.
    assert len(first.val_images) == 3 * len(clean.val_images) == 3
    assert first.val_files == clean.val_files
    for (a, _), (b, _) in zip(
        first.val_images + first.sampler.planes,
        again.val_images + again.sampler.planes,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert_close(first.val_images[0][0], clean.val_images[0][0], 0.0, "the clean hold-out copy")
