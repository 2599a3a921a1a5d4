"""Strip and halo geometry, shared by every backend.

A conv layer with an f x f kernel produces output rows [lo, hi) from input rows
[lo - r, hi + r), r = (f - 1) // 2. Every layer reads its input with edge-replicate padding,
so rows outside the image are copies of the edge row *of that layer's output*, never values
computed from padded input. :func:`layer_row_ranges` gives each layer's row range for a strip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def row_strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    """Consecutive [start, stop) ranges of at most ``rows`` rows covering ``height``."""
    rows = max(1, rows)
    for start in range(0, height, rows):
        yield start, min(start + rows, height)


def layer_row_ranges(start: int, stop: int, radii: Sequence[int]) -> list[tuple[int, int]]:
    """Row ranges, input first, that each layer needs to produce rows [start, stop) at the end.

    ``radii`` are the layers' kernel radii in forward order. Entry 0 is the input range, entry
    i the range layer i must output (ranges may extend past the image: those rows replicate).
    """
    ranges = [(start, stop)]
    for radius in reversed(radii):
        lo, hi = ranges[0]
        ranges.insert(0, (lo - radius, hi + radius))
    return ranges


def replicate_rows(rows: np.ndarray, lo: int, hi: int, have_lo: int) -> np.ndarray:
    """Rows [lo, hi) from ``rows`` (which holds rows [have_lo, have_lo + len)), edge-replicated."""
    index = np.clip(np.arange(lo, hi), have_lo, have_lo + rows.shape[0] - 1) - have_lo
    return rows[index]
