"""Float32 precision mode of the CUDA backend: ``kernels/srcnn_fused_f32.cu``.

The host side of the kernel: its shared memory per tile, the tile that fits a device, and the
``NetworkKernel`` (source, ``#define``s, ``__constant__`` weights) that :class:`.cuda.Pipeline`
launches for ``precision="fp32"``.
"""

from __future__ import annotations

from ..model import SRCNNWeights
from .cuda_common import (
    NetworkKernel,
    bicubic_constants,
    fused_options,
    kernel_dir,
    pick_tile,
    tile_pixels,
)

KERNEL = "srcnn_fused_f32"
SOURCE = "srcnn_fused_f32.cu"


def fused_shared_bytes(weights: SRCNNWeights, tile: tuple[int, int]) -> int:
    """Dynamic shared memory of one block: SRCNN_F32_SMEM_BYTES of srcnn_fused_f32.cu (the
    kernel static_asserts that they agree)."""
    region, window = tile_pixels(weights.arch, tile)
    return 4 * (weights.arch.n2 * region + window)


def tile_for(max_shared_bytes: int, weights: SRCNNWeights) -> tuple[int, int]:
    """Largest (TILE_H, TILE_W) of the fused kernel whose shared memory fits the device."""
    return pick_tile(lambda tile: fused_shared_bytes(weights, tile), max_shared_bytes, "float32")


def fp32_network(weights: SRCNNWeights, max_shared_bytes: int) -> NetworkKernel:
    """``srcnn_fused_f32`` for these weights on a device with this much shared memory."""
    tile = tile_for(max_shared_bytes, weights)
    shared_bytes = fused_shared_bytes(weights, tile)
    bicubic_w, bicubic_origin = bicubic_constants(weights.scale)
    return NetworkKernel(
        source=kernel_dir() / SOURCE,
        options=fused_options(weights, tile, shared_bytes),
        name=KERNEL,
        tile=tile,
        shared_bytes=shared_bytes,
        constants={
            "c_w1": weights.w1.reshape(-1),
            "c_b1": weights.b1,
            "c_w2": weights.w2.reshape(-1),
            "c_b2": weights.b2,
            "c_w3": weights.w3.reshape(-1),
            "c_b3": weights.b3,
            "c_bicubic_weight": bicubic_w,
            "c_bicubic_origin": bicubic_origin,
        },
    )
