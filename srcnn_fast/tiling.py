"""Strip, tile and halo geometry, shared by every backend.

Image tiles (:func:`tile_bands`): a large image is upscaled tile by tile, each tile cut from the
low-resolution image with a halo wide enough that the part of its output we keep equals the
untiled output bit for bit: the bicubic taps reach 2 LR pixels beyond a pixel (plus one for the
phase offset), and the network's receptive radius (the sum of the layers' radii, in HR pixels)
adds ceil(radius / scale) LR pixels. All tiles of an image have the same source size. Tiles
sharing rows form a band, so output leaves in order.

Row strips (:func:`row_strips`): inside a backend, a conv layer with an f x f kernel
produces output rows [lo, hi) from input rows [lo - r, hi + r), r = (f - 1) // 2. Every layer
reads its input with edge-replicate padding, so rows outside the image are copies of the edge
row *of that layer's output*, never values computed from padded input.
:func:`layer_row_ranges` gives each layer's row range for a strip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

#: LR pixels the bicubic upscale reads beyond an output pixel's own (taps -1..+2 around
#: floor((x + 0.5) / s - 0.5), which can sit one pixel below x // s).
BICUBIC_REACH = 3


def round_up(n: int, m: int) -> int:
    """n rounded up to a multiple of m (padded channel, tap and pixel counts of the kernels)."""
    return -(-n // m) * m


def tile_halo(radii: Sequence[int], scale: int) -> int:
    """LR halo around a tile that makes its kept output exact (see the module docstring)."""
    return BICUBIC_REACH + -(-sum(radii) // scale)


@dataclass(frozen=True)
class Tile:
    """One tile: ``source`` (rows, cols) of the LR image, halo included; ``keep`` the part of
    its upscaled output that is exact; ``target`` where that part goes in the band's output."""

    source: tuple[slice, slice]
    keep: tuple[slice, slice]
    target: tuple[slice, slice]


def _spans(size: int, tile: int, halo: int, scale: int) -> list[tuple[slice, slice, slice]]:
    # Every source window has the same length, tile + 2 * halo (or the whole axis): a window
    # that would cross the image edge is shifted inwards instead of cut, so the tiles near an
    # edge read more of the image than they need rather than less. Their kept part is still
    # exact (a halo or more of real pixels on the inner side, the true edge on the outer),
    # and a backend that caches buffers per input size (CpuBackend's plans, the CUDA
    # buffers) serves every tile of an image with one set instead of rebuilding per shape.
    span = min(tile + 2 * halo, size)
    spans = []
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        lo = min(max(start - halo, 0), size - span)
        hi = lo + span
        keep = slice((start - lo) * scale, (stop - lo) * scale)
        spans.append((slice(lo, hi), keep, slice(start * scale, stop * scale)))
    return spans


def tile_bands(
    height: int, width: int, tile: int, halo: int, scale: int
) -> Iterator[tuple[slice, list[Tile]]]:
    """Bands of tiles covering an LR image: (the band's output rows, its tiles left to right).

    Each tile's ``target`` columns are in output pixels and its rows are relative to the band.
    """
    columns = _spans(width, tile, halo, scale)
    for rows, keep_rows, out_rows in _spans(height, tile, halo, scale):
        band_rows = slice(0, out_rows.stop - out_rows.start)
        tiles = [
            Tile((rows, cols), (keep_rows, keep_cols), (band_rows, out_cols))
            for cols, keep_cols, out_cols in columns
        ]
        yield out_rows, tiles


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
