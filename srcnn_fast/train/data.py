"""Training data: each HR image made into the (bicubic-upscaled LR luma, HR luma) pair that
inference would see, the hold-out split, and random augmented sub-images of the pairs;
with ``--jpeg``, LR images JPEG-compressed as a user's photos are.

Each pair is made exactly as inference sees images: the HR image (cropped to a multiple of the
scale) is downscaled (:data:`~srcnn_fast.train.config.DOWNSCALERS`) to 8 bits, converted to luma
and upscaled with :func:`srcnn_fast.imageops.bicubic_upscale`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import imageops
from ..errors import DataError
from ..imagefile import IMAGE_EXTENSIONS, read_image
from ..jpeg import jpeg_roundtrip
from .config import DOWNSCALERS, TrainConfig


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such data folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return files


def make_training_pairs(
    hr: np.ndarray,
    scale: int,
    downscaler: str = "matlab",
    jpeg_qualities: Sequence[int | None] = (None,),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """HR image (uint8/uint16, gray or RGB[A]) -> one (bicubic-upscaled LR luma, HR luma) pair,
    float32, per entry of ``jpeg_qualities``, all sharing the one HR luma array.

    The LR image is the HR image downscaled by ``downscaler`` (see :attr:`TrainConfig.downscaler`)
    to 8 bits, as a saved file would be; an entry q makes it a JPEG of quality q
    (:func:`srcnn_fast.jpeg.jpeg_roundtrip`), None leaves it clean; each is then converted to
    luma like inference does.
    """
    if downscaler not in DOWNSCALERS:
        raise DataError(f"unknown downscaler {downscaler!r}: choose {' or '.join(DOWNSCALERS)}")
    if hr.dtype == np.uint16:  # both downscalers take 8-bit images; the training sets are 8-bit
        hr = (hr // 257).astype(np.uint8)
    height, width = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    hr = hr[:height, :width]
    if hr.ndim == 3:
        hr = hr[..., :3]
    if downscaler == "matlab":
        lr = imageops.matlab_downscale(hr, scale)
    else:
        from PIL import Image

        size = (width // scale, height // scale)
        lr = np.asarray(Image.fromarray(hr).resize(size, Image.Resampling.BICUBIC))

    def luma(image: np.ndarray) -> np.ndarray:
        return imageops.image_luma(imageops.to_float(image))

    hr_luma = luma(hr)
    return [
        (imageops.bicubic_upscale(luma(lr if q is None else jpeg_roundtrip(lr, q)), scale), hr_luma)
        for q in jpeg_qualities
    ]


def make_training_pair(
    hr: np.ndarray, scale: int, downscaler: str = "matlab", jpeg_quality: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One pair of :func:`make_training_pairs`: LR clean, or a JPEG of ``jpeg_quality``."""
    return make_training_pairs(hr, scale, downscaler, (jpeg_quality,))[0]


def training_degradations(config: TrainConfig, rng: np.random.Generator) -> list[int | None]:
    """The JPEG qualities (None: clean) of one training image's copies: one clean copy without
    ``--jpeg``; else ``jpeg_copies`` draws, each clean with ``jpeg_clean_share``'s probability,
    else a quality drawn uniformly from ``jpeg_qualities``."""
    if not config.jpeg_qualities:
        return [None]
    return [
        None
        if rng.random() < config.jpeg_clean_share
        else int(config.jpeg_qualities[rng.integers(len(config.jpeg_qualities))])
        for _ in range(config.jpeg_copies)
    ]


def validation_degradations(config: TrainConfig) -> list[int | None]:
    """The JPEG qualities (None: clean) every hold-out image is scored at: all of them, so the
    validation PSNR does not depend on a draw; clean too when training sees clean copies."""
    if not config.jpeg_qualities:
        return [None]
    clean: list[int | None] = [None] if config.jpeg_clean_share > 0 else []
    return clean + sorted(set(config.jpeg_qualities))


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes (k in 0..7)."""
    if k >= 4:
        x = x[..., ::-1]
    return np.rot90(x, k % 4, axes=(-2, -1))


class PatchSampler:
    """Random sub-images: an image chosen in proportion to its number of positions, a uniform
    position, and (with ``augment``) one of the 8 flips/rotations. Labels are the centre that a
    'valid' network produces: ``patch - 2 * shrink`` pixels on a side."""

    def __init__(self, planes: list[tuple[np.ndarray, np.ndarray]], patch: int, shrink: int):
        self.planes = [p for p in planes if min(p[0].shape) >= patch]
        if not self.planes:
            raise DataError(f"no training image is at least {patch} pixels on a side")
        self.patch, self.shrink = patch, shrink
        positions = np.array(
            [(u.shape[0] - patch + 1) * (u.shape[1] - patch + 1) for u, _ in self.planes], float
        )
        self.weights = positions / positions.sum()

    def batch(
        self, rng: np.random.Generator, size: int, augment: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        p, s = self.patch, self.shrink
        inner = p - 2 * s
        x = np.empty((size, p, p, 1), np.float32)
        y = np.empty((size, inner, inner, 1), np.float32)
        for i, which in enumerate(rng.choice(len(self.planes), size, p=self.weights)):
            up, hr = self.planes[which]
            r = rng.integers(up.shape[0] - p + 1)
            c = rng.integers(up.shape[1] - p + 1)
            xi, yi = up[r : r + p, c : c + p], hr[r + s : r + p - s, c + s : c + p - s]
            if augment:
                k = int(rng.integers(8))
                xi, yi = dihedral(xi, k), dihedral(yi, k)
            x[i, :, :, 0], y[i, :, :, 0] = xi, yi
        return x, y


@dataclass
class Dataset:
    sampler: PatchSampler
    val_images: list[tuple[np.ndarray, np.ndarray]]
    train_files: list[str]
    val_files: list[str]


def _downscaled(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    if factor == 1.0:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


#: Seeds the hold-out split, which ``--seed`` does not change: a run that starts from another
#: run's weights (``--init``) with another seed still validates on images neither trained on.
HOLDOUT_SEED = 0


def load_dataset(config: TrainConfig) -> Dataset:
    """Training planes (augmented) and whole validation images, split by a fixed seeded choice
    (the same for every ``--seed`` and scale)."""
    files = image_files(config.data)
    rng = np.random.default_rng(HOLDOUT_SEED)
    n_val = round(len(files) * config.val_fraction) if len(files) > 1 else 0
    val_index = set(rng.choice(len(files), size=n_val, replace=False).tolist())
    factors = config.downscales if config.augment else (1.0,)
    val_qualities = validation_degradations(config)
    planes, val = [], []
    train_files, val_files = [], []
    for i, path in enumerate(files):
        image = read_image(path)
        if image.ndim == 3:
            image = image[..., :3]
        if i in val_index:
            val.extend(make_training_pairs(image, config.scale, config.downscaler, val_qualities))
            val_files.append(path.name)
            continue
        # Each image's draws from its own generator: the same copies whatever the split.
        draws = np.random.default_rng([config.seed, i])
        for f in factors:
            qualities = training_degradations(config, draws)
            planes.extend(
                make_training_pairs(
                    _downscaled(image, f), config.scale, config.downscaler, qualities
                )
            )
        train_files.append(path.name)
    sampler = PatchSampler(planes, config.patch, config.arch.radius)
    return Dataset(sampler, val, train_files, val_files)
