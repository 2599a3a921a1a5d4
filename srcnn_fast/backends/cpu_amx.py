"""Fused SRCNN on Intel AMX tiles (int8 and bf16), and a NumPy-exact emulation of its tiles.

The kernel is :mod:`.cpu`'s fused design (bands of HR rows, one per thread; per row conv1
(polyphase-folded), conv2 and conv3's tap products per block of pixels, a ring of the last f3
rows of products, conv3 as the sum of 25 shifted products; border columns on a plain path),
with the three matrix products of a block done by AMX tile multiply-adds:

* ``precision="int8"``: conv1 and conv2 as ``tdpbsud`` (signed int8 weights x unsigned 8-bit
  activations -> int32), with :mod:`.int8`'s arithmetic as the VNNI kernel does it; conv3's
  products as
  ``tdpbf16ps`` (conv2's output centred and rounded to bf16, as ``int8.emulate(...,
  conv3_bf16=True)``). A 16-bit input (``Int8Params.input_bits`` = 16) runs conv1 twice, on
  planes of its high and of its low bytes (the sums combined exactly: high * 256 + low);
* ``precision="bf16"``: all three layers as ``tdpbf16ps``, with exactly :mod:`.bf16`'s
  arithmetic with every layer in bf16 (``bf16.emulate(weights, luma)``: centred input, centred
  conv1 and conv2 outputs).

Tiles, transposed: weights are A, pixels are B
----------------------------------------------
A tile product is C[M x N] += A[M x K] B[K x N] with B *VNNI-packed* (row r of the B tile holds,
per column n, the 4 (int8) or 2 (bf16) consecutive K values of n). Each layer runs transposed,
C^T = W^T X^T: M = 16 output channels (or taps), N = 16 pixels of one phase (16 consecutive
LR columns j, HR columns s*j + q), K = the layer's inputs. Then

* conv1's B is the LR plane itself: K = the T x T window, in groups of 4 (2) consecutive
  window columns, and pixel p's group at window row ti, columns 4h..4h+3, is the quad of LR
  bytes at (row base + ti, j0 + p + start + 4h), the same quads layout as :mod:`.cpu`'s int8
  input. The plane is stored with ``nh`` = ceil(T / 4) (bf16: ceil(T / 2)) *sub-rows* per LR
  row, sub-row h holding the quads (pairs) that start 4h (2h) columns further, and rows
  replicated above and below the image: so the B tile's rows (ti, h) are ``ti * nh + h`` sub-rows
  apart, one fixed stride, and it is **one tile load straight from the plane** (no im2col);
* conv1's C rows are channels: the requantisation (int8: ``a1 = round(acc * m1 + o1)`` clamped
  to 0..255, m1 and o1 per class and channel) or bias + ReLU (bf16: the C tile starts from a
  bias tile) uses one scalar per row, and writes conv2's B (channel quads (pairs) per pixel);
* conv3's C rows are taps: the C tile of taps 0..15 (and 16..24) is **stored straight into the
  ring**, whose planes (ring row, tap, phase) are ``scale * ring_plane`` floats apart: the
  ring layout of :mod:`.cpu`, whose ``_conv3_row`` and ``_fill_halo`` this module reuses.

(int8 therefore multiplies signed weights (A) by unsigned activations (B): ``tdpbsud``, the
transposed twin of ``tdpbusd``, same unit and rate.)

Tile registers (one configuration for both precisions; every thread loads it first):

====  ================  ==========================================================
tmm0  16 x 64 B  C      conv1 channel groups (even), conv2 output group 0
tmm1  16 x 64 B  C      conv1 channel groups (odd), conv2 output group 1
tmm2  ra x 64 B  C      conv3 taps 0 .. ra - 1 (ra = min(f3^2, 16): 16 x 16 float32)
tmm3  rb x 64 B  C      conv3 taps 16 .. f3^2 - 1 (rb = f3^2 - 16: 9 for 9-1-5)
tmm4  16 x 64 B  B      the block's activations: LR quads/pairs, conv1's, conv2's output
tmm5  16 x 64 B  A      conv1 and conv2 weights (16 output channels x 64 bytes of K)
tmm6  ra x 64 B  A      conv3: w3^T taps 0 .. ra - 1 x 32 channels (bf16)
tmm7  rb x 64 B  A      conv3: w3^T taps 16 ..
====  ================  ==========================================================

Layouts (n1 <= 64 channels and n2 <= 32 zero-padded to 64 and 32; K zero-padded, which is exact):

* LR plane ``plane``: uint32 [LR row + top][nh][stride]: int8 quads of the 0..255 input (the
  lowest byte first), or bf16 pairs of the centred, rounded input (the first in the low half);
* conv1 weights ``a1``: bytes [row class][phase q][4 channel groups][K chunks][16 channels][64
  bytes], K index (ti * nh + h) * 4 + e (bf16: * 2 + e) for window tap (ti, 4h + e) (2h + e),
  zero where the tap is past the window; int8 one chunk (16 sub-rows; T * nh <= 16), bf16 two
  (32 sub-rows); per class (row class, interior column phase), as :mod:`.cpu`'s k1 tables;
* conv2's B ``f1``: int8 [16 channel quads][16 pixels][4 bytes]; bf16 [32 channel pairs][16
  pixels][2 bf16] (two K chunks); conv2's A ``a2``: w2^T [2 output groups][K chunks][16][64
  bytes]; conv3's B ``f2``: [16 channel pairs][16 pixels][2 bf16]; its A ``a3``: w3^T [32 taps
  (zero past f3^2)][32 channels] bf16;
* C tiles go to ``acc`` ([64 or 32 channels][16 pixels], int32 or float32), conv3's to the ring.

Performance model (per block of 16 pixels; a full tile op is 16 x 16 x 64 = 16384 int8 or
16 x 16 x 32 = 8192 bf16 multiply-adds, one issue per 16 cycles on Sapphire Rapids):

=========  =======================  =========================  ============================
layer      int8 tile ops            bf16 tile ops              useful share of the MACs
=========  =======================  =========================  ============================
conv1      1 B + 4 A loads,         4 C (bias) + 8 B + 8 A     T^2 / 64 (int8) or / 64 (bf16,
           4 zero, 4 ``tdpbsud``,   loads, 8 ``tdpbf16ps``,    2 chunks): 100% x2, 77% x3,
           4 stores                 4 stores                   56% x4
conv2      1 B + 2 A loads,         2 C (bias) + 4 B + 4 A,    100%
           2 zero, 2 ``tdpbsud``,   4 ``tdpbf16ps``, 2 stores
           2 stores
products   1 B + 2 A loads, 2 zero, 2 ``tdpbf16ps``, 2 stores  25 / 32 = 78%
           into the ring (both precisions)
=========  =======================  =========================  ============================

So int8 issues 6 ``tdpbsud`` + 2 ``tdpbf16ps`` = 8 tile products per 16 pixels (~128 TMUL
cycles: 8 cycles per pixel, ~16 M cycles for a 1080p frame), bf16 14 ``tdpbf16ps`` (~14 cycles
per pixel). Between them runs vector code per block (:func:`_requant_quads`,
:func:`_relu_pairs`): conv1's 1024 and conv2's 512 outputs rescaled (one float32 fma per 16
values, the VNNI kernel's arithmetic), clamped or centred and packed into the next B tile
(``vpack_u8``, ``vpack_bf16``), which is likely the bound; the tile loads come from L1
(weights: 4 KB per class for int8 conv1, 2 + 2 KB conv2 and conv3). conv3's final sum (25
loads and adds per output) is :mod:`.cpu`'s; the border columns (2 r1 per row) run on a
plain path.

What the tiles leave (``tools/amx_floor.py``: every tile op emulated as a no-op, so nothing but
the vector code, the border columns, conv3's sums and the input's packing): 640x360 ->
1920x1080 at x3 took 14.8 ms (int8) and 19.3 ms (bf16) on a 2-core Zen 4, where our VNNI int8
kernel takes ~45 ms; 147 and 99 ms before the rescaling moved from scalar float64 code to the
vector units, the block functions lost their reference counting (``cpu.ROW_KERNEL``: every
array of the plan was incremented and decremented per block; the emulated ops allocate
nothing), the border columns moved to cpu's ``_border_columns`` and the input's packing to
parallel Numba loops (docs/performance.md).

Emulation
---------
The tile algorithm is written once (:func:`_band`, :func:`_block`): which sub-rows and bytes are
loaded into which tile, the packing and padding, the order of tile ops. Its tile ops
(``_t_config``, ``_t_zero``, ``_t_load``, ``_t_store``, ``_t_dpbsud``, ``_t_dpbf16ps``,
``_t_release``) dispatch on their first argument's type: ``None`` compiles the AMX instructions
(:mod:`.amx`, inlined into :func:`_block`), an emulator state (:func:`_emulator`: per band, 8
tiles of 16 x 64 bytes, their float64 accumulators and their configured shapes) runs a Numba
model of each instruction on the same bytes (shapes from the same configuration bytes, checked
as the CPU requires, loads and stores bounds-checked). The emulated C accumulates in float64:

* int8: conv1 and conv2's integer sums are exact, as on AMX; the rescaling is one float32
  fma where :func:`.int8.emulate` adds in float64 before rounding to float32, so a rare
  activation within an ulp of a rounding boundary can round the other way (as in the VNNI
  kernel; none seen on the test images); otherwise the output differs by conv3's float32
  rounding and sum only (~1e-7). On AMX only conv3's products (float32 accumulation in
  ``tdpbf16ps``) differ further, by summation order;
* bf16: float summation order only (the C tiles start from the bias); on AMX the float32
  accumulation can flip a rare bf16 rounding of an activation.

(tests/test_cpu_amx.py states the tolerances.) :meth:`AmxBackend.emulate_luma` runs the whole
network this way on any CPU; :meth:`AmxBackend.upscale_luma` runs the AMX instructions where
:func:`amx_available` returns None (else a BackendError with its reason).

Use: where ``amx_available(precision) is None and unsupported(weights) is None``, hold one
``AmxBackend(weights, precision, int8_params, threads)`` and call its ``upscale_luma(luma)``
((H, W) float32 luma -> (sH, sW) network output). It takes :data:`.numba_cache.KERNEL_LOCK`
itself. bf16 here is every layer in bf16 (``bf16.ALL_LAYERS``); int8 always runs conv3 in bf16
(``int8.emulate(..., conv3_bf16=True)``); 8- and 16-bit int8 inputs (``input_bits``).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from ..errors import BackendError
from ..model import SRCNNWeights
from ..polyphase import axis_geometry, fold_conv1, phase_window_starts, window_size
from ..tiling import round_up
from . import amx, bf16, int8
from .amx import (
    amx_problem,
    tile_config,
    tile_dpbf16ps,
    tile_load,
    tile_loadconfig,
    tile_release,
    tile_store,
    tile_zero,
)
from .cpu import (
    ROW_KERNEL,
    _bf16_rounded,
    _border_columns,
    _conv3_row,
    _fill_halo,
    _quantised,
    _tap_offsets,
)
from .numba_cache import KERNEL_LOCK, cache_here, cache_restore
from .simd import (
    W,
    vadd,
    vbroadcast_at,
    vdequant,
    vload,
    vload_int,
    vpack_bf16,
    vpack_u8,
    vrelu,
    vshl8,
    vstore,
)

#: ``tdpbsud``: ``tile_dpbsud(c, a, b)``: tile c (int32) += tile a (int8) @ tile b (uint8, VNNI
#: quads): :data:`.amx.tile_dpbusd` with the signs swapped (AMX-INT8 as well).
tile_dpbsud = amx._dot("tile_dpbsud", "tdpbsud")

#: Pixels per block: the N of every tile product.
PIXELS = 16
#: Padded channel counts: conv1's outputs (4 tiles of 16) and conv2's (2 tiles; 32 bf16 = one
#: K chunk of conv3, 64 int8 = one K chunk of conv2).
N1P, N2P = 64, 32
#: conv3's taps padded (two A tiles of w3^T at most).
NKP = 32
PRECISIONS = ("int8", "bf16")
#: Tile numbers (see the module docstring's table).
C_EVEN, C_ODD, C_TAPS, C_TAPS2, B_ACT, A_W, A_TAPS, A_TAPS2 = range(8)

#: How the tile ops' overloads are inlined: at Numba's IR level, so that the AMX instructions sit
#: in :func:`_block` itself (which the intrinsics then mark with the AMX target features) rather
#: than in one small function per op and call; the emulated ops become calls of ``_emu_*``.
_INLINE = "always"

_saved_cache_dir = cache_here()


# ---- the tile ops: AMX instructions, or their emulation --------------------------------------
# Each takes the emulator state of this band (None: the real instructions) first; tile numbers
# must be integer literals at the call (the real instructions encode them).


def _t_config(e, config_bytes):
    raise NotImplementedError("compiled only")


def _t_release(e):
    raise NotImplementedError("compiled only")


def _t_zero(e, tile):
    raise NotImplementedError("compiled only")


def _t_load(e, tile, array, index, stride):
    raise NotImplementedError("compiled only")


def _t_store(e, tile, array, index, stride):
    raise NotImplementedError("compiled only")


def _t_dpbsud(e, c, a, b):
    raise NotImplementedError("compiled only")


def _t_dpbf16ps(e, c, a, b):
    raise NotImplementedError("compiled only")


def _real(e) -> bool:
    return isinstance(e, types.NoneType)


def _literal(*tiles) -> bool:
    return all(isinstance(t, types.IntegerLiteral) for t in tiles)


@overload(_t_config, inline=_INLINE)
def _t_config_for(e, config_bytes):
    if _real(e):
        return lambda e, config_bytes: tile_loadconfig(config_bytes)
    return lambda e, config_bytes: _emu_config(e, config_bytes)


@overload(_t_release, inline=_INLINE)
def _t_release_for(e):
    if _real(e):
        return lambda e: tile_release()
    return lambda e: _emu_release(e)


@overload(_t_zero, prefer_literal=True, inline=_INLINE)
def _t_zero_for(e, tile):
    if _real(e) != _literal(tile):
        return None  # AMX: literal tile numbers; emulated: one compile for all
    if _real(e):
        return lambda e, tile: tile_zero(tile)
    return lambda e, tile: _emu_zero(e, tile)


@overload(_t_load, prefer_literal=True, inline=_INLINE)
def _t_load_for(e, tile, array, index, stride):
    if _real(e) != _literal(tile):
        return None  # AMX: literal tile numbers; emulated: one compile for all
    if _real(e):
        return lambda e, tile, array, index, stride: tile_load(tile, array, index, stride)
    return lambda e, tile, array, index, stride: _emu_load(e, tile, array, index, stride)


@overload(_t_store, prefer_literal=True, inline=_INLINE)
def _t_store_for(e, tile, array, index, stride):
    if _real(e) != _literal(tile):
        return None  # AMX: literal tile numbers; emulated: one compile for all
    if _real(e):
        return lambda e, tile, array, index, stride: tile_store(tile, array, index, stride)
    return lambda e, tile, array, index, stride: _emu_store(e, tile, array, index, stride)


@overload(_t_dpbsud, prefer_literal=True, inline=_INLINE)
def _t_dpbsud_for(e, c, a, b):
    if _real(e) != _literal(c, a, b):
        return None  # AMX: literal tile numbers; emulated: one compile for all
    if _real(e):
        return lambda e, c, a, b: tile_dpbsud(c, a, b)
    return lambda e, c, a, b: _emu_dot(e, c, a, b, False)


@overload(_t_dpbf16ps, prefer_literal=True, inline=_INLINE)
def _t_dpbf16ps_for(e, c, a, b):
    if _real(e) != _literal(c, a, b):
        return None  # AMX: literal tile numbers; emulated: one compile for all
    if _real(e):
        return lambda e, c, a, b: tile_dpbf16ps(c, a, b)
    return lambda e, c, a, b: _emu_dot(e, c, a, b, True)


def _state_for(em, band):
    raise NotImplementedError("compiled only")


@overload(_state_for, inline=_INLINE)
def _state_for_impl(em, band):
    if _real(em):
        return lambda em, band: None
    return lambda em, band: (em[0][band], em[1][band], em[2][band], em[3][band])


# ---- the emulator ------------------------------------------------------------------------------
# State per band: bytes [8][16 * 64] uint8 (the tile registers), acc [8][16][16] float64 (C tiles'
# values, kept exact), shape [8][2] int64 (rows, bytes per row; 0: not configured), kind [8]
# int64 (KIND_*: what a C tile holds).

KIND_BYTES, KIND_ZERO, KIND_INT, KIND_FLOAT = 0, 1, 2, 3


def _emulator(bands: int) -> tuple[np.ndarray, ...]:
    """Fresh emulator state for ``bands`` bands (nothing configured)."""
    return (
        np.zeros((bands, 8, 16 * 64), np.uint8),
        np.zeros((bands, 8, 16, 16), np.float64),
        np.zeros((bands, 8, 2), np.int64),
        np.zeros((bands, 8), np.int64),
    )


@njit(cache=True)
def _emu_config(e, config_bytes):
    tiles, acc, shape, kind = e
    if config_bytes[0] != 1:
        raise ValueError("tile config: palette must be 1")
    for t in range(8):
        shape[t, 0] = config_bytes[48 + t]
        shape[t, 1] = config_bytes[16 + 2 * t] | (np.int64(config_bytes[17 + 2 * t]) << 8)
        tiles[t, :] = 0
        acc[t] = 0.0
        kind[t] = KIND_ZERO


@njit(cache=True)
def _emu_release(e):
    e[2][:] = 0


@njit(cache=True)
def _emu_shape(e, tile):
    rows, colsb = e[2][tile, 0], e[2][tile, 1]
    if rows == 0 or colsb == 0:
        raise ValueError("tile used but not configured")
    return rows, colsb


@njit(cache=True)
def _emu_zero(e, tile):
    _emu_shape(e, tile)
    e[0][tile, :] = 0
    e[1][tile] = 0.0
    e[3][tile] = KIND_ZERO


@njit(cache=True)
def _emu_load(e, tile, array, index, stride):
    """``tileloadd``: rows r at byte ``index * itemsize + r * stride`` of ``array`` (bounds
    checked); bytes past the configured shape are zero, as the CPU leaves them."""
    rows, colsb = _emu_shape(e, tile)
    data = array.view(np.uint8)
    start = index * array.itemsize
    if start < 0 or start + (rows - 1) * stride + colsb > data.size:
        raise IndexError("tile load out of bounds")
    tiles = e[0]
    tiles[tile, :] = 0
    for r in range(rows):
        src = start + r * stride
        for b in range(colsb):
            tiles[tile, r * 64 + b] = data[src + b]
    # As a C tile (bf16 accumulators loaded with a bias): its float32 values.
    values = tiles[tile].view(np.float32)
    for r in range(16):
        for n in range(16):
            e[1][tile, r, n] = values[r * 16 + n]
    e[3][tile] = KIND_BYTES


@njit(cache=True)
def _emu_store(e, tile, array, index, stride):
    """``tilestored``: a C tile's values (int32 or float32, rounded once from the exact
    accumulator, which become the register's bytes) or a loaded tile's bytes, rows ``stride``
    bytes apart (bounds checked). (Nothing is allocated here, nor in the other ops: the
    kernel that calls them runs without reference counting.)"""
    rows, colsb = _emu_shape(e, tile)
    kind = e[3][tile]
    out = e[0][tile]
    if kind == KIND_INT:
        ints = out.view(np.int32)
        for r in range(16):
            for n in range(16):
                ints[r * 16 + n] = np.int32(e[1][tile, r, n])
    elif kind == KIND_FLOAT:
        floats = out.view(np.float32)
        for r in range(16):
            for n in range(16):
                floats[r * 16 + n] = np.float32(e[1][tile, r, n])
    data = array.view(np.uint8)
    start = index * array.itemsize
    if start < 0 or start + (rows - 1) * stride + colsb > data.size:
        raise IndexError("tile store out of bounds")
    for r in range(rows):
        dst = start + r * stride
        for b in range(colsb):
            data[dst + b] = out[r * 64 + b]


@intrinsic
def _bits_of(typingctx, x):
    """The bits of a float32 as a uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _float_of(typingctx, bits):
    """The float32 whose bits are the low 32 bits of an integer."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        value = args[0]
        if value.type.width > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif value.type.width < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@njit(cache=True, inline="always")
def _bf16_value(bits):
    """A bf16 (uint16 bits) as float64."""
    return np.float64(_float_of(np.uint32(bits) << np.uint32(16)))


@njit(cache=True)
def _emu_dot(e, c, a, b, is_bf16):
    """``tdpbf16ps`` (``is_bf16``) or ``tdpbsud``: C[m, n] += sum_k A[m, k] B[k, n], B packed in
    VNNI groups of ``g`` = 2 (bf16) or 4 (int8: A signed, B unsigned), with the shape rules
    the CPU enforces (#UD otherwise): A and C have M rows, A's bytes per row are 4 x B's rows,
    B and C have the same bytes per row (N x 4)."""
    m_rows, c_bytes = _emu_shape(e, c)
    a_rows, a_bytes = _emu_shape(e, a)
    b_rows, b_bytes = _emu_shape(e, b)
    if a_rows != m_rows or a_bytes != 4 * b_rows or b_bytes != c_bytes:
        raise ValueError("tile product: inconsistent tile shapes")
    tiles, acc, kind = e[0], e[1], e[3]
    if kind[c] == KIND_BYTES:  # loaded: its bytes are its starting values (float32)
        kind[c] = KIND_FLOAT if is_bf16 else KIND_INT
        if not is_bf16:
            ints = tiles[c].view(np.int32)
            for r in range(16):
                for n in range(16):
                    acc[c, r, n] = ints[r * 16 + n]
    want = KIND_FLOAT if is_bf16 else KIND_INT
    if kind[c] != KIND_ZERO and kind[c] != want:
        raise ValueError("tile product: accumulator of the other type")
    kind[c] = want
    n_cols = c_bytes // 4
    a8, b8 = tiles[a].view(np.int8), tiles[b]
    a16, b16 = tiles[a].view(np.uint16), tiles[b].view(np.uint16)
    for m in range(m_rows):
        for n in range(n_cols):
            total = 0.0
            if is_bf16:
                for k in range(a_bytes // 2):
                    total += _bf16_value(a16[m * 32 + k]) * _bf16_value(
                        b16[(k // 2) * 32 + n * 2 + k % 2]
                    )
            else:
                for k in range(a_bytes):
                    total += np.float64(a8[m * 64 + k]) * np.float64(
                        b8[(k // 4) * 64 + n * 4 + k % 4]
                    )
            acc[c, m, n] += total


# ---- the tile algorithm --------------------------------------------------------------------------


class _Plan(NamedTuple):
    """Everything one call needs, for one precision and input size. Field names shared with
    :mod:`.cpu`'s ``_Net`` and ``_Geometry`` (f3, nk, b3, scale, lr_w, lr_h, ring_plane,
    tap_offsets) let its ``_conv3_row`` take a plan as both."""

    quantised: bool  # int8 (else bf16)
    passes: int  # int8: 2 with a 16-bit input (high and low bytes), else 1
    scale: int
    lr_h: int
    lr_w: int
    t_size: int
    nh: int  # sub-rows per LR row of the plane
    stride: int  # uint32 per sub-row
    top: int  # replicated LR rows above the image in the plane
    left: int  # replicated LR columns left of the image in the plane
    n_row_classes: int
    n_col_classes: int
    config: np.ndarray  # the tile configuration (64 bytes)
    a1: np.ndarray  # bytes: conv1's A tiles per (row class, phase)
    a2: np.ndarray  # bytes: conv2's A tiles (w2^T)
    a3: np.ndarray  # bytes: conv3's A tiles (w3^T, bf16)
    bias1: np.ndarray  # bf16: [64][16] float32 C tile of conv1's bias (centred)
    bias2: np.ndarray  # bf16: [32][16] C tile of conv2's bias
    # conv1's rescaling per class (row class * n_col_classes + column class) and channel,
    # [class][64] float32: int8's multiplier of the integer sum (divided by 256 for a 16-bit
    # input, whose sums are high * 256 + low) and offset; bf16: ones and the centred bias.
    m1: np.ndarray
    b1: np.ndarray
    s2: np.ndarray  # int8: [32] conv2's scale (bf16: ones)
    b2: np.ndarray  # [32] conv2's bias (bf16: centred)
    # Minus the centres of conv1's output (bf16; int8: zeros) and conv2's (the bf16 input of
    # conv3), which the vector code adds.
    neg_c1: np.ndarray
    neg_c2: np.ndarray
    one: np.ndarray  # [64] ones and zeros: the scale and offset of a float32 C tile
    zero: np.ndarray
    # The border columns run cpu's ``_border_columns``, on these fields of its _Net and
    # _Geometry (float32): the folded conv1 [row class][column class][T][T][64] (int8: the
    # integers; bf16: rounded), w2 [64][32] (int8: w2q), w3 [32][32] (taps; rounded to bf16),
    # and conv1's input unpadded (int8: the integer sums' scale, 0..255 or 0..65280 for a
    # 16-bit input; bf16: centred and rounded), with the pair flags of the layers' inputs.
    k1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray
    lr: np.ndarray  # [H * W]
    lr_stride: int
    lr_pad: int
    row_pad: int
    n1p: int
    n2p: int
    nkp: int
    pair1: int
    pair2: int
    pair3: int
    row_class: np.ndarray
    row_base: np.ndarray
    row_span: np.ndarray
    col_class: np.ndarray
    col_base: np.ndarray
    col_span: np.ndarray
    col_interior: np.ndarray
    phase_col_base: np.ndarray
    f3: int
    nk: int
    b3: np.float32
    ring_plane: int
    ring_pad: int
    tap_offsets: np.ndarray


class _Scratch(NamedTuple):
    plane: np.ndarray  # uint32: conv1's B source (quads or pairs), filled per call
    plane_lo: np.ndarray  # the same of the low bytes of a 16-bit int8 input (else unused)
    rings: np.ndarray  # [band][f3 * nk * scale * ring_plane]
    accs: np.ndarray  # [band][2 x 64 x 16 x 4] bytes: int32/float32 C tiles
    f1s: np.ndarray  # [band][2048] bytes: conv2's B
    f2s: np.ndarray  # [band][1024] bytes: conv3's B
    rows: np.ndarray  # [band][scale * ring_plane]
    slot_offs: np.ndarray  # [band][f3]
    row_offs: np.ndarray  # [band][T], and a border pixel's features: [band][64], [32], [32]
    pix1s: np.ndarray
    pix2s: np.ndarray
    pixgs: np.ndarray


@njit(cache=True, inline="always")
def _requant_quads(acc, passes, m1, o1, out):
    """int8 conv1: the C tiles' int32 sums ``acc`` ([channel][PIXELS]; with a 16-bit input
    the high bytes' sums, then the low bytes' from ``N1P * PIXELS``) to uint8 activations,
    round(sum * m1 + o1) clamped to 0..255, as quads of channels per pixel in ``out``
    ([quad][PIXELS]: conv2's B tile). The arithmetic of the VNNI kernel (``cpu``): the sum in
    int32 (high * 256 + low), to float32, one fused multiply-add (the plan's ``m1`` is
    already / 256 for a 16-bit input), rounded to the nearest integer, ties to even."""
    for quad in range(N1P // 4):
        c = 4 * quad
        m = (vbroadcast_at(m1, c), vbroadcast_at(m1, c + 1),
             vbroadcast_at(m1, c + 2), vbroadcast_at(m1, c + 3))  # fmt: skip
        o = (vbroadcast_at(o1, c), vbroadcast_at(o1, c + 1),
             vbroadcast_at(o1, c + 2), vbroadcast_at(o1, c + 3))  # fmt: skip
        for v in range(0, PIXELS, W):
            t = (_sum_at(acc, c * PIXELS + v, passes),
                 _sum_at(acc, (c + 1) * PIXELS + v, passes),
                 _sum_at(acc, (c + 2) * PIXELS + v, passes),
                 _sum_at(acc, (c + 3) * PIXELS + v, passes))  # fmt: skip
            quads = vpack_u8(
                vdequant(t[0], m[0], o[0]), vdequant(t[1], m[1], o[1]),
                vdequant(t[2], m[2], o[2]), vdequant(t[3], m[3], o[3]),
            )  # fmt: skip
            vstore(out, quad * PIXELS + v, quads)


@njit(cache=True, inline="always")
def _sum_at(acc, i, passes):
    """conv1's int32 sums at ``acc[i:]``: with a 16-bit input high * 256 + low."""
    total = vload_int(acc, i)
    if passes == 2:
        total = vadd(vshl8(total), vload_int(acc, N1P * PIXELS + i))
    return total


@njit(cache=True, inline="always")
def _relu_pairs(acc, scale, offset, neg_centre, n, out):
    """A C tile's ``n`` channels (``acc``: [channel][PIXELS], int32 sums or float32) to
    max(acc * scale + offset, 0) (``vdequant``: one fused multiply-add for int32; float32 gets
    ``offset`` added), centred (+ ``neg_centre``) and rounded to bf16, as pairs of channels
    per pixel in ``out`` ([pair][PIXELS]: the next layer's B tile)."""
    for pair in range(n // 2):
        c = 2 * pair
        s0, s1 = vbroadcast_at(scale, c), vbroadcast_at(scale, c + 1)
        o0, o1 = vbroadcast_at(offset, c), vbroadcast_at(offset, c + 1)
        n0, n1 = vbroadcast_at(neg_centre, c), vbroadcast_at(neg_centre, c + 1)
        for v in range(0, PIXELS, W):
            lo = vadd(vrelu(vdequant(_lanes_at(acc, c * PIXELS + v), s0, o0)), n0)
            hi = vadd(vrelu(vdequant(_lanes_at(acc, (c + 1) * PIXELS + v), s1, o1)), n1)
            vstore(out, pair * PIXELS + v, vpack_bf16(lo, hi))


def _lanes_at(acc, i):
    raise NotImplementedError("compiled only")


@overload(_lanes_at, inline=_INLINE)
def _lanes_at_for(acc, i):
    """W lanes of a C tile: an int32 accumulator or float32 values."""
    if acc.dtype == types.int32:
        return lambda acc, i: vload_int(acc, i)
    return lambda acc, i: vload(acc, i)


@njit(**ROW_KERNEL)
def _block(e, p, plane, plane_lo, cls, b_index, dst, acc, f1, f2, ring):
    """One block: 16 pixels of one phase (consecutive LR columns) through conv1, conv2 and
    conv3's products, the products stored into the ring from ring index ``dst`` (tap k at
    ``dst + k * scale * ring_plane``). ``b_index``: the plane index of sub-row (0, 0) of pixel
    0's window in ``plane`` (conv1's B source; int8 with a 16-bit input: the high bytes, and
    ``plane_lo`` the low bytes); ``cls``: the class (row class * scale + phase) of conv1's A
    tiles."""
    plane_stride = p.stride * 4  # bytes between sub-rows
    acc_i = acc.view(np.int32)
    acc_f = acc.view(np.float32)
    if p.quantised:
        # conv1: one B tile (16 sub-rows of LR quads), 4 groups of 16 channels; with a 16-bit
        # input once for the high bytes (acc[0:4096]) and once for the low bytes (acc[4096:]).
        for lo in range(p.passes):
            _t_load(e, B_ACT, plane_lo if lo else plane, b_index, plane_stride)
            for g in range(4):
                a_index = (cls * 4 + g) * 1024
                if g % 2 == 0:
                    _t_zero(e, C_EVEN)
                    _t_load(e, A_W, p.a1, a_index, 64)
                    _t_dpbsud(e, C_EVEN, A_W, B_ACT)
                    _t_store(e, C_EVEN, acc, (lo * 4 + g) * 1024, 64)
                else:
                    _t_zero(e, C_ODD)
                    _t_load(e, A_W, p.a1, a_index, 64)
                    _t_dpbsud(e, C_ODD, A_W, B_ACT)
                    _t_store(e, C_ODD, acc, (lo * 4 + g) * 1024, 64)
        # Requantised into conv2's B, [channel quad][pixel] quads of bytes, on the vector
        # units: :func:`_requant_quads`.
        row = (cls // p.scale) * p.n_col_classes + cls % p.scale
        _requant_quads(acc_i, p.passes, p.m1[row], p.b1[row], f1.view(np.int32))
        # conv2: 64 input channels = one K chunk, 2 groups of 16 outputs.
        _t_load(e, B_ACT, f1, 0, 64)
        _t_zero(e, C_EVEN)
        _t_load(e, A_W, p.a2, 0, 64)
        _t_dpbsud(e, C_EVEN, A_W, B_ACT)
        _t_store(e, C_EVEN, acc, 0, 64)
        _t_zero(e, C_ODD)
        _t_load(e, A_W, p.a2, 1024, 64)
        _t_dpbsud(e, C_ODD, A_W, B_ACT)
        _t_store(e, C_ODD, acc, 1024, 64)
    else:
        # conv1: per group of 16 channels, C from the bias tile, two K chunks of 16 sub-rows.
        for g in range(4):
            a_index = (cls * 4 + g) * 2048
            if g % 2 == 0:
                _t_load(e, C_EVEN, p.bias1, g * 256, 64)
                _t_load(e, B_ACT, plane, b_index, plane_stride)
                _t_load(e, A_W, p.a1, a_index, 64)
                _t_dpbf16ps(e, C_EVEN, A_W, B_ACT)
                _t_load(e, B_ACT, plane, b_index + 16 * p.stride, plane_stride)
                _t_load(e, A_W, p.a1, a_index + 1024, 64)
                _t_dpbf16ps(e, C_EVEN, A_W, B_ACT)
                _t_store(e, C_EVEN, acc, g * 1024, 64)
            else:
                _t_load(e, C_ODD, p.bias1, g * 256, 64)
                _t_load(e, B_ACT, plane, b_index, plane_stride)
                _t_load(e, A_W, p.a1, a_index, 64)
                _t_dpbf16ps(e, C_ODD, A_W, B_ACT)
                _t_load(e, B_ACT, plane, b_index + 16 * p.stride, plane_stride)
                _t_load(e, A_W, p.a1, a_index + 1024, 64)
                _t_dpbf16ps(e, C_ODD, A_W, B_ACT)
                _t_store(e, C_ODD, acc, g * 1024, 64)
        # ReLU, centred, rounded to bf16: conv2's B, [channel pair][pixel].
        _relu_pairs(acc_f, p.one, p.zero, p.neg_c1, N1P, f1.view(np.uint32))
        # conv2: two K chunks (32 channels each), 2 groups of 16 outputs, C from the bias.
        _t_load(e, C_EVEN, p.bias2, 0, 64)
        _t_load(e, B_ACT, f1, 0, 64)
        _t_load(e, A_W, p.a2, 0, 64)
        _t_dpbf16ps(e, C_EVEN, A_W, B_ACT)
        _t_load(e, B_ACT, f1, 1024, 64)
        _t_load(e, A_W, p.a2, 1024, 64)
        _t_dpbf16ps(e, C_EVEN, A_W, B_ACT)
        _t_store(e, C_EVEN, acc, 0, 64)
        _t_load(e, C_ODD, p.bias2, 256, 64)
        _t_load(e, B_ACT, f1, 0, 64)
        _t_load(e, A_W, p.a2, 2048, 64)
        _t_dpbf16ps(e, C_ODD, A_W, B_ACT)
        _t_load(e, B_ACT, f1, 1024, 64)
        _t_load(e, A_W, p.a2, 3072, 64)
        _t_dpbf16ps(e, C_ODD, A_W, B_ACT)
        _t_store(e, C_ODD, acc, 1024, 64)
    # conv2's output: int8 rescaled (acc * s2 + b2), bias already in for bf16; ReLU, centred,
    # rounded to bf16: conv3's B, [channel pair][pixel].
    if p.quantised:
        _relu_pairs(acc_i, p.s2, p.b2, p.neg_c2, N2P, f2.view(np.uint32))
    else:
        _relu_pairs(acc_f, p.one, p.zero, p.neg_c2, N2P, f2.view(np.uint32))
    # conv3's products: taps x pixels, straight into the ring (planes scale * ring_plane apart).
    ring_stride = p.scale * p.ring_plane * 4
    _t_load(e, B_ACT, f2, 0, 64)
    _t_zero(e, C_TAPS)
    _t_load(e, A_TAPS, p.a3, 0, 64)
    _t_dpbf16ps(e, C_TAPS, A_TAPS, B_ACT)
    _t_store(e, C_TAPS, ring, dst, ring_stride)
    if p.nk > 16:
        _t_zero(e, C_TAPS2)
        _t_load(e, A_TAPS2, p.a3, 16 * 64, 64)
        _t_dpbf16ps(e, C_TAPS2, A_TAPS2, B_ACT)
        _t_store(e, C_TAPS2, ring, dst + 16 * p.scale * p.ring_plane, ring_stride)


@njit(**ROW_KERNEL)
def _band(e, band, y0, y1, p, scratch, out):
    """HR rows y0..y1-1 (this thread's band): the tile configuration first, then per row the
    blocks of every phase, the border columns, and conv3 once its rows exist."""
    _t_config(e, p.config)
    ring = scratch.rings[band]
    acc, f1, f2 = scratch.accs[band], scratch.f1s[band], scratch.f2s[band]
    n_rows = p.lr_h * p.scale
    r3 = (p.f3 - 1) // 2
    nxt = max(y0 - r3, 0)
    for y in range(y0, y1):
        need = min(y + r3, n_rows - 1)
        while nxt <= need:
            slot = nxt % p.f3
            rc = p.row_class[nxt]
            row_index = (p.row_base[nxt] + p.top) * p.nh * p.stride + p.left
            for q in range(p.scale):
                cls = rc * p.scale + q
                for j0 in range(0, p.lr_w, PIXELS):
                    b_index = row_index + j0 + p.phase_col_base[q]
                    dst = (slot * p.nk * p.scale + q) * p.ring_plane + p.ring_pad + j0
                    _block(
                        e, p, scratch.plane, scratch.plane_lo, cls, b_index, dst, acc, f1, f2,
                        ring,
                    )  # fmt: skip
            _border_columns(
                nxt, p, p, ring, slot, scratch.row_offs[band], scratch.pix1s[band],
                scratch.pix2s[band], scratch.pixgs[band],
            )  # fmt: skip
            _fill_halo(ring, slot, p.nk, p.scale, p.ring_plane, p.ring_pad, p.lr_w * p.scale, r3)
            nxt += 1
        _conv3_row(y, p, p, ring, scratch.rows[band], scratch.slot_offs[band], out)
    _t_release(e)


@njit(parallel=True, cache=True)
def _forward(em, p, scratch, out):
    """The network into ``out``: one band of HR rows per thread, each loading the tile
    configuration first (:func:`_band`). ``em``: None (AMX) or the emulator state."""
    n_rows = p.lr_h * p.scale
    bands = scratch.rings.shape[0]
    for band in prange(bands):
        y0 = band * n_rows // bands
        y1 = (band + 1) * n_rows // bands
        if y0 < y1:
            _band(_state_for(em, band), band, y0, y1, p, scratch, out)


@njit(parallel=True, cache=True)
def _quantise_input(luma, quantised, passes, centre, lr):
    """conv1's input, rows in parallel, into ``lr`` ([H * W] float32): int8's round(top *
    luma) clamped to 0..top, ties to even, the product in float64 (``int8.quantise_input``
    times 256 for a 16-bit input: top = 255, or 255 * 256 with ``passes`` = 2); bf16's
    luma minus ``centre`` (float32) rounded to the nearest bf16 (``bf16.round_bf16(luma -
    CENTRE)``: an argument, not a constant compiled into the cached kernel)."""
    h, w = luma.shape
    top = 255.0 if passes == 1 else 255.0 * 256.0
    for r in prange(h):
        for c in range(w):
            if quantised:
                lr[r * w + c] = np.float32(_quantised(luma[r, c], top))
            else:
                bits = _bf16_rounded(_bits_of(np.float32(luma[r, c] - centre)))
                lr[r * w + c] = _float_of(np.uint32(bits))


@njit(parallel=True, cache=True)
def _pack_plane(values, w, quantised, shift, g, nh, top, left, stride, out):
    """:func:`plane_tiles`' layout into ``out``, rows in parallel: ``values`` ([H * W] float32)
    with replicated edges, int8 bytes ``(int(value) >> shift) & 255`` (lowest first), bf16
    halves (low first)."""
    h = values.size // w
    for r in prange(out.size // (nh * stride)):
        src = min(max(r - top, 0), h - 1) * w
        for hh in range(nh):
            base = (r * nh + hh) * stride
            for c in range(stride):
                word = np.uint32(0)
                for e in range(g):
                    v = values[src + min(max(c - left + g * hh + e, 0), w - 1)]
                    if quantised:
                        lane = (np.uint32(np.int32(v)) >> np.uint32(shift)) & np.uint32(255)
                        word |= lane << np.uint32(8 * e)
                    else:
                        word |= (_bits_of(v) >> np.uint32(16)) << np.uint32(16 * e)
                out[base + c] = word


cache_restore(_saved_cache_dir)


# ---- tables and plans -----------------------------------------------------------------------


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 values already rounded to bf16 -> their uint16 bits."""
    return (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def _group(t_size: int, quantised: bool) -> tuple[int, int, int]:
    """(values per VNNI group, sub-rows per LR row, sub-rows of conv1's K)."""
    g = 4 if quantised else 2
    return g, -(-t_size // g), 16 if quantised else 32


def conv1_a_tiles(k1: np.ndarray, quantised: bool) -> np.ndarray:
    """conv1's A tiles from folded weights ``k1`` [..., T, T, 64] (integers for int8, bf16
    values else): bytes [..., 4 groups, K chunks, 16 channels, 64 bytes], K index
    (ti * nh + h) * g + e for window tap (ti, g * h + e), zero past the window."""
    t_size = k1.shape[-2]
    g, nh, sub_rows = _group(t_size, quantised)
    lead = k1.shape[:-3]
    k_total = sub_rows * g
    a = np.zeros((*lead, N1P, k_total), np.float32)
    for ti in range(t_size):
        for tj in range(t_size):
            k = (ti * nh + tj // g) * g + tj % g
            a[..., k] = k1[..., ti, tj, :]
    chunks = k_total // (64 if quantised else 32)
    a = a.reshape(*lead, 4, 16, chunks, k_total // chunks)
    a = np.moveaxis(a, -2, -3)  # [..., group, chunk, channel, K]
    if quantised:
        return np.ascontiguousarray(a.astype(np.int8)).view(np.uint8)
    return np.ascontiguousarray(_bf16_bits(a)).view(np.uint8)


def matrix_a_tiles(w: np.ndarray, quantised: bool) -> np.ndarray:
    """A tiles of a 1x1 layer: ``w`` [n_in][n_out] (n_out a multiple of 16, n_in of the K chunk)
    -> bytes [n_out / 16 groups][K chunks][16 outputs][64 bytes] of w^T."""
    n_in, n_out = w.shape
    k_chunk = 64 if quantised else 32
    a = w.T.reshape(n_out // 16, 16, n_in // k_chunk, k_chunk).transpose(0, 2, 1, 3)
    if quantised:
        return np.ascontiguousarray(a.astype(np.int8)).view(np.uint8)
    return np.ascontiguousarray(_bf16_bits(a)).view(np.uint8)


def plane_tiles(x: np.ndarray, quantised: bool, t_size: int, top: int, bottom: int,
                left: int, width: int) -> np.ndarray:  # fmt: skip
    """conv1's B source: the LR plane ``x`` (int8: 0..255 integers; bf16: rounded values) with
    ``top``/``bottom`` rows and ``left`` columns replicated, as uint32 [row][nh sub-rows][width]:
    sub-row h, column c holds the g = 4 bytes (2 bf16) of columns c + g h .. c + g h + g - 1."""
    g, nh, _ = _group(t_size, quantised)
    h, w = x.shape
    out = np.empty((top + h + bottom) * nh * width, np.uint32)
    values = np.ascontiguousarray(x, np.float32).reshape(-1)
    _pack_plane(values, w, quantised, 0, g, nh, top, left, width, out)
    return out


class AmxBackend:
    """The AMX kernel (see the module docstring) for one set of weights and precision.

    :meth:`upscale_luma` runs the AMX instructions (only where :func:`amx_available` says so);
    :meth:`emulate_luma` runs the same tile algorithm with the instructions emulated, anywhere.
    ``int8_params``: the int8 scales (default: the weights' own calibration).
    """

    def __init__(
        self,
        weights: SRCNNWeights,
        precision: str = "int8",
        int8_params: int8.Int8Params | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"the AMX kernel runs int8 or bf16, not {precision!r}")
        problem = unsupported(weights)
        if problem is not None:
            raise BackendError(problem)
        self.weights = weights
        self.precision = precision
        self.quantised = precision == "int8"
        self.threads = threads or numba.get_num_threads()
        if self.quantised and int8_params is None:
            int8_params = int8.params_for(weights)
        if self.quantised and int8_params.input_bits not in (8, 16):
            raise BackendError(f"int8 input of {int8_params.input_bits} bits (8 or 16)")
        self.params = int8_params
        if self.quantised:
            self.weights = int8.network_weights(weights, int8_params)  # its refitted conv3
        self.passes = int8_params.input_bits // 8 if self.quantised else 1
        self._plans: dict[tuple[int, int], tuple[_Plan, _Scratch]] = {}

    # -- plan ------------------------------------------------------------------------------

    def _plan(self, h: int, w: int) -> tuple[_Plan, _Scratch]:
        key = (h, w)
        if key not in self._plans:
            self._plans = {key: self._build(h, w)}  # the last size only
        return self._plans[key]

    def _build(self, h: int, w: int) -> tuple[_Plan, _Scratch]:
        weights, arch, s = self.weights, self.weights.arch, self.weights.scale
        quantised = self.quantised
        t_size = window_size(s, (arch.f1 - 1) // 2)
        _, nh, sub_rows = _group(t_size, quantised)
        rows = axis_geometry(h, s, arch.f1)
        cols = axis_geometry(w, s, arch.f1)
        n1, n2, nk = arch.n1, arch.n2, arch.f3 * arch.f3
        folded = fold_conv1(weights.w1, rows, cols)
        k1 = np.zeros((*folded.shape[:4], N1P), np.float32)
        k1[..., :n1] = folded
        w2 = np.zeros((N1P, N2P), np.float32)
        w3 = np.zeros((N2P, NKP), np.float32)
        w3[:n2, :nk] = bf16.round_bf16(weights.w3[:, :, :, 0].reshape(nk, n2).T)
        n_rc, n_cc = k1.shape[:2]
        m1 = np.ones((n_rc, n_cc, N1P), np.float32)
        o1 = np.zeros((n_rc, n_cc, N1P), np.float32)
        s2 = np.ones(N2P, np.float32)
        b2 = np.zeros(N2P, np.float32)
        c1 = np.zeros(N1P, np.float32)
        c2 = np.zeros(N2P, np.float32)
        bias1 = np.zeros((N1P, PIXELS), np.float32)
        bias2 = np.zeros((N2P, PIXELS), np.float32)
        if quantised:
            p = self.params
            kq, m, o = int8.conv1_tables(k1[..., :n1], weights.b1, p)
            k1[..., :n1] = kq
            # A 16-bit input's sums are 256 times the 8-bit scale's (exact: a power of two).
            m1[..., :n1], o1[..., :n1] = m / np.float32(2 ** (p.input_bits - 8)), o
            w2[:n1, :n2] = p.w2q
            s2[:n2], b2[:n2] = p.s2, p.b2
            _, centre2 = bf16.activation_centres(weights)
            c2[:n2] = centre2
            _, b3 = bf16.centred_biases(weights, np.zeros_like(weights.b1), centre2)
        else:
            k1 = bf16.round_bf16(k1)
            w2[:n1, :n2] = bf16.round_bf16(weights.w2[0, 0])
            centre1, centre2 = bf16.rounded_centres(weights, bf16.ROUNDED)
            c1[:n1], c2[:n2] = centre1, centre2
            b2c, b3 = bf16.centred_biases(weights, centre1, centre2)
            b2[:n2] = b2c
            o1[..., :n1] = bf16.centred_bias(weights.w1, weights.b1)
            bias1[:] = o1[0, 0, :, None]
            bias2[:] = b2[:, None]
        ra, rb = min(nk, 16), max(nk - 16, 0)
        shapes = [(16, 64), (16, 64), (ra, 64), (rb, 64) if rb else None,
                  (16, 64), (16, 64), (ra, 64), (rb, 64) if rb else None]  # fmt: skip
        # The plane: enough rows above (window starts < 0) and below (the B tiles read
        # sub_rows sub-rows from a window start) and columns either side.
        top = int(max(0, -rows.base.min())) + 1
        bottom = int(max(0, rows.base.max() + -(-sub_rows // nh) + 1 - h)) + 1
        left = t_size + 4
        stride = left + round_up(w, PIXELS) + t_size + 8
        r3 = (arch.f3 - 1) // 2
        ring_pad = r3 // s + 2
        ring_plane = ring_pad + round_up(w, 2 * PIXELS) + ring_pad + PIXELS
        bands = max(1, min(self.threads, h * s))
        plan = _Plan(
            quantised=quantised,
            passes=self.passes,
            scale=s,
            lr_h=h,
            lr_w=w,
            t_size=t_size,
            nh=nh,
            stride=stride,
            top=top,
            left=left,
            n_row_classes=n_rc,
            n_col_classes=n_cc,
            config=tile_config(shapes),
            a1=conv1_a_tiles(k1[:, :s], quantised).reshape(-1),
            a2=matrix_a_tiles(w2, quantised).reshape(-1),
            a3=matrix_a_tiles(w3, False).reshape(-1),
            bias1=bias1.reshape(-1),
            bias2=bias2.reshape(-1),
            m1=m1.reshape(n_rc * n_cc, N1P),
            b1=o1.reshape(n_rc * n_cc, N1P),
            s2=s2,
            b2=b2,
            neg_c1=-c1,
            neg_c2=-c2,
            one=np.ones(N1P, np.float32),
            zero=np.zeros(N1P, np.float32),
            k1=k1.reshape(-1),
            w2=w2.reshape(-1),
            w3=w3.reshape(-1),
            lr=np.zeros(h * w, np.float32),
            lr_stride=w,
            lr_pad=0,
            row_pad=0,
            n1p=N1P,
            n2p=N2P,
            nkp=NKP,
            pair1=4 if quantised else 2,
            pair2=4 if quantised else 2,
            pair3=2,
            row_class=rows.classes,
            row_base=rows.base,
            row_span=rows.spans,
            col_class=cols.classes,
            col_base=cols.base,
            col_span=cols.spans,
            col_interior=cols.interior,
            phase_col_base=phase_window_starts(s, arch.f1),
            f3=arch.f3,
            nk=nk,
            b3=np.float32(b3),
            ring_plane=ring_plane,
            ring_pad=ring_pad,
            tap_offsets=_tap_offsets(s, arch.f3, ring_plane, ring_pad),
        )
        scratch = _Scratch(
            plane=np.zeros((h + top + bottom) * nh * stride, np.uint32),
            plane_lo=np.zeros(
                (h + top + bottom) * nh * stride if self.passes == 2 else 1, np.uint32
            ),
            rings=np.zeros((bands, arch.f3 * nk * s * ring_plane), np.float32),
            accs=np.zeros((bands, 2 * N1P * PIXELS * 4), np.uint8),
            f1s=np.zeros((bands, 2048), np.uint8),
            f2s=np.zeros((bands, 1024), np.uint8),
            rows=np.zeros((bands, s * ring_plane), np.float32),
            slot_offs=np.zeros((bands, arch.f3), np.int64),
            row_offs=np.zeros((bands, t_size), np.int64),
            pix1s=np.zeros((bands, N1P), np.float32),
            pix2s=np.zeros((bands, N2P), np.float32),
            pixgs=np.zeros((bands, NKP), np.float32),
        )
        return plan, scratch

    def _prepare(self, luma: np.ndarray) -> tuple[_Plan, _Scratch]:
        luma = np.asarray(luma, np.float32)
        h, w = luma.shape
        plan, scratch = self._plan(h, w)
        # The input on the scale of the integer sums (a 16-bit input's high * 256 + low), which
        # the border columns read; its B-tile planes (a 16-bit input's high and low bytes).
        _quantise_input(luma, self.quantised, self.passes, np.float32(bf16.CENTRE), plan.lr)
        g = _group(plan.t_size, self.quantised)[0]
        shift = 8 if self.passes == 2 else 0
        _pack_plane(
            plan.lr, w, self.quantised, shift, g, plan.nh, plan.top, plan.left, plan.stride,
            scratch.plane,
        )  # fmt: skip
        if self.passes == 2:
            _pack_plane(
                plan.lr, w, True, 0, g, plan.nh, plan.top, plan.left, plan.stride,
                scratch.plane_lo,
            )  # fmt: skip
        return plan, scratch

    def _run(self, luma: np.ndarray, emulated: bool) -> np.ndarray:
        h, w = np.shape(luma)
        out = np.empty((h * self.weights.scale, w * self.weights.scale), np.float32)
        with KERNEL_LOCK:
            plan, scratch = self._prepare(luma)
            em = _emulator(scratch.rings.shape[0]) if emulated else None
            _forward(em, plan, scratch, out)
        return out

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        """(H, W) float32 LR luma -> (sH, sW) network output, on AMX."""
        problem = amx_available(self.precision)
        if problem is not None:
            raise BackendError(problem)
        return self._run(luma, emulated=False)

    def emulate_luma(self, luma: np.ndarray) -> np.ndarray:
        """The same, with every tile instruction emulated (any CPU; slow)."""
        return self._run(luma, emulated=True)

    def compile_kernel(self, shape: tuple[int, int] = (4, 4)) -> str:
        """Compile (never run) the AMX band kernel for this precision; returns its assembly."""
        plan, scratch = self._plan(*shape)
        out = np.empty((shape[0] * plan.scale, shape[1] * plan.scale), np.float32)
        args = (None, 0, 0, 1, plan, scratch, out)
        signature = tuple(numba.typeof(a) for a in args)
        _band.compile(signature)
        _forward.compile(tuple(numba.typeof(a) for a in (None, plan, scratch, out)))
        return _band.inspect_asm(signature)


def unsupported(weights: SRCNNWeights) -> str | None:
    """None if the AMX kernel runs this architecture, else why not."""
    arch, s = weights.arch, weights.scale
    if arch.f2 != 1:
        return f"the AMX kernel needs a 1x1 conv2 (this model's is {arch.f2}x{arch.f2})"
    if arch.n1 > N1P or arch.n2 > N2P:
        return f"the AMX kernel runs at most {N1P} conv1 and {N2P} conv2 channels"
    if arch.f3 * arch.f3 > NKP:
        return f"the AMX kernel runs conv3 up to 5x5 (this model's is {arch.f3}x{arch.f3})"
    t_size = window_size(s, (arch.f1 - 1) // 2)
    for quantised in (True, False):
        _, nh, sub_rows = _group(t_size, quantised)
        if t_size * nh > sub_rows:  # int8 and bf16 both fit windows up to 8 x 8
            return (
                f"the AMX kernel's conv1 reads LR windows up to 8x8; x{s} with a {arch.f1}x"
                f"{arch.f1} conv1 needs {t_size}x{t_size}"
            )
    return None


#: The tile kernel has run only on its emulation (no AMX CPU has been lent to this project
#: since it was written): the cpu backend takes it only where this is set to 1, so that an
#: AMX machine runs the tested vector kernels until a session there has verified it
#: (tests/test_cpu_amx.py's hardware test, then the bench).
ENABLE_ENV = "SRCNN_FAST_AMX"


def amx_enabled() -> str | None:
    """None where the cpu backend may choose the tile kernel, else why not (one line)."""
    if os.environ.get(ENABLE_ENV, "").strip() == "1":
        return None
    return f"the AMX kernel is not yet verified on AMX hardware ({ENABLE_ENV}=1 runs it)"


def amx_available(precision: str) -> str | None:
    """None if :meth:`AmxBackend.upscale_luma` can run ``precision`` on this CPU and OS, else
    why not (one line). int8 needs AMX-BF16 too (conv3's products)."""
    if precision not in PRECISIONS:
        return f"the AMX kernel runs int8 or bf16, not {precision!r}"
    for kind in ("bf16",) if precision == "bf16" else ("int8", "bf16"):
        problem = amx_problem(kind)
        if problem is not None:
            return problem
    return None
