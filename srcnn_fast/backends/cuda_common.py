"""What every precision mode of the CUDA backend shares: launch constants, where the kernel
sources are, the handle of a compiled network kernel, the tile picker and the ``#define``s the
fused kernels are compiled with.

Imports run one way: this module <- one module per precision (:mod:`.cuda_fp32`,
:mod:`.cuda_tensorcore`) <- :mod:`.cuda`, which picks a precision and launches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import imageops
from ..errors import BackendError
from ..model import Architecture, SRCNNWeights

#: Threads per block of every kernel (the fused kernels' __launch_bounds__).
THREADS = 256
#: Output tiles (TILE_H, TILE_W) of the fused kernels, largest first.
TILES = ((16, 32), (8, 32), (8, 16), (4, 16))
#: Bicubic phases the kernels' constant memory holds (SRCNN_MAX_SCALE).
MAX_SCALE = 8


def kernel_dir() -> Path:
    """Folder of the CUDA sources, in a checkout or an installed wheel."""
    return Path(str(resources.files("srcnn_fast.kernels")))


def compile_options(source: Path, options: tuple[str, ...]) -> tuple[str, ...]:
    """Exactly what NVRTC gets from this backend (CuPy adds the target architecture)."""
    return ("-std=c++17", f"-I{source.parent}", *options)


class Module(Protocol):
    def get_function(self, name: str) -> Any: ...

    def set_constant(self, name: str, array: np.ndarray) -> None: ...


class Device(Protocol):
    """What the pipeline needs from a GPU runtime (CuPy) or the CPU harness.

    A device may also have ``compute_capability`` (e.g. "80"); one without it is taken to run
    every kernel (the CPU harness).
    """

    xp: Any  # the array module: cupy, or numpy for the harness
    max_shared_bytes: int
    stream: Any  # the stream kernels are launched on (None: the current one)

    def compile(self, source: Path, options: tuple[str, ...]) -> Module: ...


@dataclass
class NetworkKernel:
    """One compiled form of the network: what to compile, launch and put in constant memory."""

    source: Path
    options: tuple[str, ...]
    name: str
    tile: tuple[int, int]
    shared_bytes: int
    constants: dict[str, np.ndarray]


def require_1x1_conv2(arch: Architecture) -> None:
    """The fused kernels keep conv2 per pixel in registers: they need a 1x1 conv2."""
    if arch.f2 != 1:
        raise BackendError(
            f"the CUDA kernel needs a 1x1 conv2; {arch.name} has {arch.f2}x{arch.f2}"
        )


def tile_pixels(arch: Architecture, tile: tuple[int, int]) -> tuple[int, int]:
    """(conv2-region, input-window) pixels of a block: REGION_H * REGION_W and
    WINDOW_H * WINDOW_W of kernels/srcnn_fused_config.cuh (tile + conv3 halo, + conv1 halo)."""
    r1, r3 = (arch.f1 - 1) // 2, (arch.f3 - 1) // 2
    region_h, region_w = tile[0] + 2 * r3, tile[1] + 2 * r3
    return region_h * region_w, (region_h + 2 * r1) * (region_w + 2 * r1)


def pick_tile(
    shared_bytes: Callable[[tuple[int, int]], int], max_shared_bytes: int, kernel: str
) -> tuple[int, int]:
    """Largest tile of TILES whose ``shared_bytes(tile)`` fits the device; ``kernel`` names
    the kernel in the error if none does."""
    for tile in TILES:
        if shared_bytes(tile) <= max_shared_bytes:
            return tile
    raise BackendError(
        f"the GPU's shared memory ({max_shared_bytes} B) is too small for the {kernel} kernel"
    )


def fused_options(
    weights: SRCNNWeights, tile: tuple[int, int], shared_bytes: int
) -> tuple[str, ...]:
    """The ``#define``s a fused network kernel is compiled with for these weights and tile.

    ``SRCNN_SMEM_BYTES`` is the dynamic shared memory the host launches with; each kernel
    static_asserts that it equals its own layout's size, so a host and kernel that disagree
    fail every compile (NVRTC at run time, the compile gate, the CPU harness) instead of
    overrunning shared memory.
    """
    a = weights.arch
    require_1x1_conv2(a)
    return (
        f"-DSRCNN_MAX_SCALE={MAX_SCALE}",
        f"-DF1={a.f1}",
        f"-DN1={a.n1}",
        f"-DN2={a.n2}",
        f"-DF3={a.f3}",
        f"-DTILE_H={tile[0]}",
        f"-DTILE_W={tile[1]}",
        f"-DTHREADS={THREADS}",
        f"-DSRCNN_SMEM_BYTES={shared_bytes}",
    )


def bicubic_constants(scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-phase weights and origins of imageops, padded to SRCNN_MAX_SCALE phases."""
    if scale > MAX_SCALE:
        raise BackendError(f"the CUDA kernels support scales up to {MAX_SCALE}, not {scale}")
    weights = np.zeros((MAX_SCALE, 4), np.float32)
    origin = np.zeros(MAX_SCALE, np.int32)
    weights[:scale] = imageops.bicubic_phase_weights(scale)
    origin[:scale] = imageops.bicubic_phase_origin(scale)
    return weights.reshape(-1), origin
