"""The CUDA-on-CPU harness as a ``srcnn_fast.backends.cuda.Device``: runs the CUDA backend's
own host code (constants, launch geometry, buffers) with the kernels compiled by g++."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import BUILD, CpuModule


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


class PlantedDevice(HarnessDevice):
    """A ``HarnessDevice`` that compiles a kernel file with a bug planted in it: ``plants`` maps
    a file name to (text, replacement); the text must occur exactly once. The planted copy is
    compiled from the build folder and finds the kernels' headers as the original does."""

    def __init__(self, plants: dict[str, tuple[str, str]], **kwargs) -> None:
        super().__init__(**kwargs)
        self.plants = plants

    def compile(self, source: Path, options: tuple[str, ...]) -> CpuModule:
        if source.name not in self.plants:
            return super().compile(source, options)
        text, replacement = self.plants[source.name]
        code = source.read_text()
        assert code.count(text) == 1, f"{text!r} is not in {source.name} exactly once"
        code = code.replace(text, replacement)
        path = BUILD / "planted" / hashlib.sha256(code.encode()).hexdigest()[:20] / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
        return CpuModule(path, options, self.variant)


#: The off-by-one of issue 20 in the fused kernels' conv3 output loop: one extra pass writes one
#: pixel into the next block's tile, which a fixed block order then overwrites.
CONV3_LOOP = "for (int o = threadIdx.x; o < TILE_H * TILE_W; o += THREADS)"


def tile_edge_shapes(scale: int, tile: tuple[int, int]) -> list[tuple[int, int]]:
    """LR sizes that test a fused kernel's tiling: 1 pixel, odd sizes, and HR sizes at, one
    under and one over a multiple of the tile."""
    th, tw = tile
    return [(1, 1), (3, 7), (th // scale + 1, tw // scale), (2 * th // scale, 2 * tw // scale + 1)]
