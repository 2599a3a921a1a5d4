"""Which block of a launch must write which output element: the one place that turns a launch's
geometry into tiles, for the block-ownership check of every launch (see ``launch()`` in
``cuda_cpu_runtime.h``).

A kernel's *tiles* are a function of its launch (grid, block, arguments, ``-D`` options) that
returns, for each pointer argument the kernel writes, the elements each block writes: the block
must write exactly those (no fewer: a pixel left unwritten; no more: another block's pixel or
memory outside the output), and no element may belong to two blocks. Each function restates the
kernel's documented contract (its header comment), never the test's expectations. A kernel with
no entry here is still checked for bytes written by two blocks and for order dependence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import KERNELS


@dataclass(frozen=True)
class Launch:
    name: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    args: tuple[Any, ...]
    options: tuple[str, ...]

    def block_id(self, x, y, z):
        """Linear index of block (x, y, z), as the launcher numbers them (x fastest)."""
        gx, gy, gz = self.grid
        x, y, z = (np.asarray(v, np.int64) for v in (x, y, z))
        if (x >= gx).any() or (y >= gy).any() or (z >= gz).any():
            raise AssertionError(f"{self.name}: grid {self.grid} does not cover its output")
        return x + gx * (y + gy * z)

    def define(self, name: str) -> int:
        """A ``-D`` option of the module, else the kernels' default (``#define NAME value`` in
        ``kernels/*.cuh``)."""
        for option in self.options:
            if option.startswith(f"-D{name}="):
                return int(option.split("=", 1)[1])
        for header in sorted(KERNELS.glob("*.cuh")):
            found = re.search(rf"^#define {name} (\d+)$", header.read_text(), re.M)
            if found:
                return int(found.group(1))
        raise KeyError(f"{self.name}: no value for {name}")


@dataclass(frozen=True)
class Owned:
    """Elements of pointer argument ``arg`` (``itemsize`` bytes each, at these element offsets
    from the pointer) and the linear index of the block that must write each."""

    arg: int
    itemsize: int
    offsets: np.ndarray
    blocks: np.ndarray


TILES: dict[str, Callable[[Launch], list[Owned]]] = {}


def tiles(*names: str):
    def register(fn: Callable[[Launch], list[Owned]]):
        for name in names:
            TILES[name] = fn
        return fn

    return register


@tiles("srcnn_fused_f32", "srcnn_fused_tc")
def fused_tiles(launch: Launch) -> list[Owned]:
    """Block (bx, by, f) writes the TILE_H x TILE_W tile of HR pixels of frame f whose corner
    is (by TILE_H, bx TILE_W), clipped to the (scale h) x (scale w) image; ``out`` has row pitch
    ``out_pitch`` and frame pitch ``out_frame`` floats."""
    _, _, _, h, w, scale, _, out_pitch, out_frame = launch.args
    th, tw = launch.define("TILE_H"), launch.define("TILE_W")
    f, y, x = np.meshgrid(
        np.arange(launch.grid[2]),
        np.arange(int(h) * int(scale)),
        np.arange(int(w) * int(scale)),
        indexing="ij",
    )
    offsets = f * int(out_frame) + y * int(out_pitch) + x
    return [Owned(6, 4, offsets.ravel(), launch.block_id(x // tw, y // th, f).ravel())]


def _pixels(launch: Launch, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One thread per pixel i < n in a 1-D grid: pixel i and its block i // blockDim.x."""
    i = np.arange(n, dtype=np.int64)
    return i, launch.block_id(i // launch.block[0], 0, 0)


@tiles("srcnn_unpack")
def unpack_tiles(launch: Launch) -> list[Owned]:
    """Pixel i's block writes planes[c n + i]: luma (and Cb, Cr for 3-4 channels), and the
    alpha plane 3 for 2 or 4 channels."""
    _, _, channels, n, _ = launch.args
    i, blocks = _pixels(launch, int(n))
    planes = [0, 1, 2] if channels >= 3 else [0]
    planes += [3] if channels in (2, 4) else []
    offsets = np.concatenate([c * int(n) + i for c in planes])
    return [Owned(4, 4, offsets, np.tile(blocks, len(planes)))]


@tiles("srcnn_pack")
def pack_tiles(launch: Launch) -> list[Owned]:
    """Pixel i of the (scale h) x (scale w) output: its block writes its ``channels`` samples
    of ``bits`` each."""
    _, _, h, w, scale, channels, bits, _ = launch.args
    i, blocks = _pixels(launch, int(h) * int(w) * int(scale) ** 2)
    c = int(channels)
    offsets = (i[:, None] * c + np.arange(c)).ravel()
    return [Owned(7, int(bits) // 8, offsets, np.repeat(blocks, c))]


@tiles("neighbour_sum", "dynamic_neighbour_sum", "running_sum")
def one_float_per_thread(launch: Launch) -> list[Owned]:
    """planted.cu: thread t of block b writes out[b blockDim.x + t]."""
    i, blocks = _pixels(launch, launch.grid[0] * launch.block[0])
    return [Owned(1, 4, i, blocks)]


def owner_map(launch: Launch, base: int, nbytes: int, views: dict[int, int]) -> np.ndarray:
    """Per byte of a watched buffer (``nbytes`` at address ``base``), which the arguments in
    ``views`` (index: address) point into: the block that must write it, -1 for none, or -2
    for any (a kernel with no tiles here)."""
    if launch.name not in TILES:
        return np.full(nbytes, -2, np.int32)
    owner = np.full(nbytes, -1, np.int32)
    for owned in TILES[launch.name](launch):
        if owned.arg not in views:
            continue
        start = views[owned.arg] - base + owned.offsets * owned.itemsize
        bytes_ = (start[:, None] + np.arange(owned.itemsize)).ravel()
        if bytes_.size and (bytes_.min() < 0 or bytes_.max() >= nbytes):
            raise AssertionError(f"{launch.name}: a tile lies outside argument {owned.arg}")
        owner[bytes_] = np.repeat(owned.blocks, owned.itemsize)
    return owner
