"""The CUDA-on-CPU harness as a ``srcnn_fast.backends.cuda.Device``: runs the CUDA backend's
own host code (constants, launch geometry, buffers) with the kernels compiled by g++."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CpuModule


class HarnessDevice:
    """numpy arrays stand in for device memory; ``max_shared_bytes`` picks the tile as a GPU
    with that much shared memory per block would."""

    xp = np
    stream = None

    def __init__(self, max_shared_bytes: int = 227 * 1024, variant: str = "fibers") -> None:
        self.max_shared_bytes = max_shared_bytes
        self.variant = variant

    def compile(self, source: Path, options: tuple[str, ...]) -> CpuModule:
        return CpuModule(source, options, self.variant)


def tile_edge_shapes(scale: int, tile: tuple[int, int]) -> list[tuple[int, int]]:
    """LR sizes that test a fused kernel's tiling: 1 pixel, odd sizes, and HR sizes at, one
    under and one over a multiple of the tile."""
    th, tw = tile
    return [(1, 1), (3, 7), (th // scale + 1, tw // scale), (2 * th // scale, 2 * tw // scale + 1)]
