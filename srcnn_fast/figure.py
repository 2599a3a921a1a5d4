"""Side-by-side comparison crops (bicubic / SRCNN / ground truth) from an evaluation run.

For each image the crop is the window where SRCNN and bicubic differ most (the luma energy of
their difference), so the figure shows where the network actually changes the picture. Crops
are enlarged with nearest-neighbour so that pixels stay visible; each is labelled with its
method and the image's PSNR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .evaluate import EvalResult, luma_255

LABEL_HEIGHT = 22
GAP = 6


def _as_rgb8(image: np.ndarray) -> np.ndarray:
    """RGB uint8 for display: gray repeated, alpha dropped, 16-bit scaled down."""
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def best_window(a: np.ndarray, b: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window with the largest squared luma difference."""
    diff = (luma_255(a) - luma_255(b)) ** 2
    size = min(size, *diff.shape)
    table = np.pad(diff, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    energy = (
        table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    )
    y, x = np.unravel_index(int(np.argmax(energy)), energy.shape)
    return int(y), int(x)


def comparison_figure(
    result: EvalResult,
    path: str | Path,
    methods: tuple[str, ...] = ("bicubic", "SRCNN", "ground truth"),
    crop: int = 72,
    zoom: int = 3,
    max_images: int = 5,
    window: tuple[str, str] | None = None,
) -> Path:
    """Write a PNG grid: one row per image, one column per method (cropped and enlarged).
    Each crop is where the two methods of ``window`` differ most (default: the first two)."""
    import cv2

    from .imagefile import write_image

    rows = []
    for row in result.rows[:max_images]:
        first, second = window or (methods[0], methods[1])
        y, x = best_window(row.images[second], row.images[first], crop)
        tiles = []
        for method in methods:
            image = _as_rgb8(row.images[method])[y : y + crop, x : x + crop]
            tile = np.repeat(np.repeat(image, zoom, axis=0), zoom, axis=1)
            label = np.full((LABEL_HEIGHT, tile.shape[1], 3), 255, np.uint8)
            scores = row.methods.get(method)
            text = method if scores is None else f"{method} {scores.psnr:.2f} dB"
            cv2.putText(
                label, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
            )
            tiles.append(np.concatenate([label, tile], axis=0))
            tiles.append(np.full((tiles[-1].shape[0], GAP, 3), 255, np.uint8))
        rows.append(np.concatenate(tiles[:-1], axis=1))
        rows.append(np.full((GAP, rows[-1].shape[1], 3), 255, np.uint8))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    figure = np.concatenate(rows[:-1], axis=0)
    path = Path(path)
    write_image(path, figure, overwrite=True)
    return path
