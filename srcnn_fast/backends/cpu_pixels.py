"""The pixels around the network on the CPU: unpack and pack as parallel Numba kernels.

:func:`srcnn_fast.imageops.upscale_image` defines what happens around the network (DESIGN.md
section 1, steps 1, 2 and 4) in NumPy, one whole-image array operation at a time: at 1280x720
x2 an RGB frame made some ten passes over float32 HR planes (chroma bicubic, concatenations,
the 3x3 colour product, clip, scale, rint, cast) and took about as long as the network itself.
This module computes the same values in two passes, as the CUDA backend's
``kernels/srcnn_pixels.cu`` does:

* :func:`_unpack`: packed uint8 / uint16 / float32 pixels (1 to 4 channels) -> float32 LR
  planes: luma (BT.601 studio range; a gray channel mapped as
  :func:`~srcnn_fast.imageops.gray_to_luma` maps it), then Cb and Cr for colour, then alpha.
  One pass over the LR image, parallel over rows.
* the network on the luma plane (the caller's ``upscale_luma``);
* :func:`_pack`: per HR row, the vertical bicubic pass of the LR chroma / alpha rows it needs
  into a small row buffer, then per HR pixel the horizontal pass, YCbCr -> RGB, clip, round
  half to even and the store in the input's dtype. One pass over the output, parallel over
  bands of rows; no HR plane but the network's output is ever materialised.

The result equals ``imageops.upscale_image`` with the same ``upscale_luma``; the constants
(colour matrices, bicubic phase weights) come from :mod:`srcnn_fast.imageops`. Bicubic sums run
in its order (rows first, taps added left to right, float32, no fused multiply-add), and the
3x3 colour products as NumPy's matrix product runs them through OpenBLAS here (fused
multiply-adds, in channel order), so on this machine only a sample a hair from a rounding
boundary can land 1 LSB apart (another BLAS may sum the three products differently: ~1e-7).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import imageops
from ..errors import ImageError
from .numba_cache import KERNEL_LOCK, cache_here, cache_restore

#: Output pixels below which the kernels run on the calling thread.
PARALLEL_MIN_PIXELS = 1 << 16
#: Bands of HR rows of :func:`_pack` per thread: enough bands to balance uneven cores, few
#: enough that each band's row buffer is allocated rarely.
_BANDS_PER_THREAD = 4

# Cache the kernels beside the cpu backend's (numba_cache.cache_dir), only while this module
# defines them.
_saved_cache_dir = cache_here()


@intrinsic
def _fma(typingctx, a, b, c):
    """float32 ``a * b + c`` with one rounding (``llvm.fma.f32``): the colour products are
    summed as OpenBLAS sums NumPy's float32 matrix product, whose kernels use FMA."""

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32"
        )
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@njit(cache=True, inline="always")
def _sample(value, full):
    """A float32 value as :func:`imageops.from_float` stores it: for an integer output
    (``full`` > 0) clipped to [0, 1], scaled and rounded half to even (``np.rint``; the store
    into the integer array is then exact), for float32 (``full`` = 0) unchanged."""
    if full > 0:
        return np.rint(min(max(value, np.float32(0.0)), np.float32(1.0)) * full)
    return value


@njit(cache=True)
def _unpack_rows(pixels, inv, to_ycc, ycc_offset, gray_gain, planes, y0, y1):
    """Rows [y0, y1) of (h, w, c) packed pixels -> ``planes`` (n, h, w) float32: luma, then
    Cb and Cr (colour), then alpha (2 or 4 channels).

    ``inv``: 1 / full scale (1 for float32, where the multiply is exact); ``to_ycc`` the 3x3
    RGB -> YCbCr matrix and ``ycc_offset`` its offset (float32, from imageops); ``gray_gain``
    the luma row's sum, which maps a gray sample into studio-range Y.
    """
    w, c = pixels.shape[1], pixels.shape[2]
    alpha = planes.shape[0] - 1
    for y in range(y0, y1):
        for x in range(w):
            if c >= 3:
                r = np.float32(pixels[y, x, 0]) * inv
                g = np.float32(pixels[y, x, 1]) * inv
                b = np.float32(pixels[y, x, 2]) * inv
                for k in range(3):
                    t = _fma(b, to_ycc[k, 2], _fma(g, to_ycc[k, 1], r * to_ycc[k, 0]))
                    planes[k, y, x] = t + ycc_offset[k]
            else:
                gray = np.float32(pixels[y, x, 0]) * inv
                planes[0, y, x] = gray * gray_gain + ycc_offset[0]
            if c == 2 or c == 4:
                planes[alpha, y, x] = np.float32(pixels[y, x, c - 1]) * inv


@njit(parallel=True, cache=True)
def _unpack(pixels, inv, to_ycc, ycc_offset, gray_gain, planes, bands):
    """:func:`_unpack_rows` on all rows, ``bands`` bands of rows shared by the threads."""
    h = pixels.shape[0]
    for band in prange(bands):
        _unpack_rows(
            pixels, inv, to_ycc, ycc_offset, gray_gain, planes, band * h // bands,
            (band + 1) * h // bands,
        )  # fmt: skip


@njit(cache=True)
def _bicubic_row(plane, rows, wy, phase_weights, phase_origin, buf, dst):
    """One HR row of the bicubic upscale of LR ``plane`` (float32 or integer samples) into
    ``dst`` (sW floats), in imageops' order: the vertical pass of LR ``rows`` weighted by
    ``wy`` into ``buf`` (w + 4 floats: 2 edge-replicated entries each side, so that the
    horizontal taps, which reach from 2 left of a pixel's LR column to 2 right, need no
    clamping), then the horizontal pass one phase at a time (each phase's weights are then
    constants of its loop)."""
    w = plane.shape[1]
    s = phase_weights.shape[0]
    r0, r1, r2, r3 = plane[rows[0]], plane[rows[1]], plane[rows[2]], plane[rows[3]]
    for x in range(w):
        # Integer samples (video planes) converted first, as imageops converts them: Numba
        # types uint16 * float32 as float64, which would round differently at x3.
        a, b = np.float32(r0[x]) * wy[0], np.float32(r1[x]) * wy[1]
        c, d = np.float32(r2[x]) * wy[2], np.float32(r3[x]) * wy[3]
        buf[2 + x] = ((a + b) + c) + d
    buf[0] = buf[1] = buf[2]
    buf[w + 2] = buf[w + 3] = buf[w + 1]
    for px in range(s):
        w0, w1, w2, w3 = (
            phase_weights[px, 0],
            phase_weights[px, 1],
            phase_weights[px, 2],
            phase_weights[px, 3],
        )
        first = phase_origin[px] + 1  # buffer index of LR column 0's first tap
        for j in range(w):
            i = j + first
            dst[j * s + px] = ((buf[i] * w0 + buf[i + 1] * w1) + buf[i + 2] * w2) + buf[i + 3] * w3


@njit(cache=True)
def _pack_rows(
    luma, planes, phase_weights, phase_origin, to_rgb, ycc_offset, gray_gain, full, out, y0, y1
):
    """HR rows [y0, y1): HR ``luma`` (H, W) + LR ``planes`` of :func:`_unpack_rows` ->
    ``out`` (H, W, c) pixels.

    ``phase_weights`` (s, 4) float32 and ``phase_origin`` (s,): imageops' bicubic taps per
    phase; ``to_rgb`` the YCbCr -> RGB matrix; ``gray_gain`` maps luma back to a gray sample;
    ``full``: the integer full scale, 0 for float32 output (no clip, no rounding).

    Per row, the interpolated planes go to a row buffer first and the colour loop runs over
    plain arrays, into planar float rows, then the interleaved stores: LLVM vectorises the
    colour loop only so (6x less CPU time at 1280x720 x2 than interpolating inside it).
    """
    big_w, c = out.shape[1], out.shape[2]
    n_planes, h, w = planes.shape
    s = phase_weights.shape[0]
    buf = np.empty(w + 4, np.float32)
    up = np.empty((n_planes, big_w), np.float32)  # [0] unused: luma is the network's
    rows = np.empty(4, np.int64)
    rgb = np.empty((3, big_w), np.float32)  # the row's samples, ready to store
    m00, m01, m02 = to_rgb[0, 0], to_rgb[0, 1], to_rgb[0, 2]
    m10, m11, m12 = to_rgb[1, 0], to_rgb[1, 1], to_rgb[1, 2]
    m20, m21, m22 = to_rgb[2, 0], to_rgb[2, 1], to_rgb[2, 2]
    y_offset, cb_offset, cr_offset = ycc_offset[0], ycc_offset[1], ycc_offset[2]
    for y in range(y0, y1):
        j, p = divmod(y, s)
        for t in range(4):
            rows[t] = min(max(j + phase_origin[p] - 1 + t, 0), h - 1)
        for k in range(1, n_planes):  # Cb, Cr, alpha: all but luma
            _bicubic_row(planes[k], rows, phase_weights[p], phase_weights, phase_origin, buf, up[k])
        lum, row, alpha = luma[y], out[y], up[n_planes - 1]
        if c >= 3:
            # Planar float rows first (a loop LLVM vectorises), then the interleaved stores.
            cb_row, cr_row = up[1], up[2]
            for x in range(big_w):
                yy = lum[x] - y_offset
                cb = cb_row[x] - cb_offset
                cr = cr_row[x] - cr_offset
                # In the order of NumPy's float32 (..., 3) @ (3, 3) through OpenBLAS.
                rgb[0, x] = _sample(_fma(cr, m02, _fma(cb, m01, yy * m00)), full)
                rgb[1, x] = _sample(_fma(cr, m12, _fma(cb, m11, yy * m10)), full)
                rgb[2, x] = _sample(_fma(cr, m22, _fma(cb, m21, yy * m20)), full)
            for x in range(big_w):
                row[x, 0] = rgb[0, x]
                row[x, 1] = rgb[1, x]
                row[x, 2] = rgb[2, x]
        else:
            for x in range(big_w):
                rgb[0, x] = _sample((lum[x] - y_offset) * gray_gain, full)
            for x in range(big_w):
                row[x, 0] = rgb[0, x]
        if c == 2 or c == 4:
            for x in range(big_w):
                rgb[1, x] = _sample(alpha[x], full)
            for x in range(big_w):
                row[x, c - 1] = rgb[1, x]


@njit(parallel=True, cache=True)
def _pack(
    luma, planes, phase_weights, phase_origin, to_rgb, ycc_offset, gray_gain, full, out, bands
):
    """:func:`_pack_rows` on all HR rows, ``bands`` bands of rows shared by the threads."""
    big_h = out.shape[0]
    for band in prange(bands):
        _pack_rows(
            luma, planes, phase_weights, phase_origin, to_rgb, ycc_offset, gray_gain, full, out,
            band * big_h // bands, (band + 1) * big_h // bands,
        )  # fmt: skip


# --- video planes: integer Y, U, V samples in and out (imageops' video helpers) -----------


@njit(cache=True)
def _plane_to_float(plane, a, b, c, out):
    """``out = (plane * a) * b + c`` in float32, the samples converted exactly first: with
    (a, b, c) = (1 / gain, 1, 0) :func:`imageops.video_luma` of a limited-range plane, with
    (1 / top, gray gain, luma offset) of a full-range one (the multiplies by 1 and the add of
    0 are exact, so one kernel serves both). ``plane`` may be a strided view (a decoded
    frame's plane with its line padding): it is read where it lies."""
    for y in range(plane.shape[0]):
        row, dst = plane[y], out[y]
        for x in range(plane.shape[1]):
            dst[x] = (np.float32(row[x]) * a) * b + c


@njit(cache=True, inline="always")
def _store_sample(value, top):
    """:func:`imageops._to_samples`: clipped to [0, top], rounded half to even."""
    return np.rint(min(max(value, np.float32(0.0)), top))


@njit(cache=True)
def _luma_rows(luma, offset, gain, top, out, y0, y1):
    """HR rows [y0, y1) of :func:`imageops.video_luma_samples`: ``((luma - offset) * gain)``
    (offset 0 and a single gain for limited range; luma_to_gray's offset and gain times the
    top sample for full range, whose NumPy form multiplies by each in turn: ``gain`` is then
    a pair applied in order) clipped, rounded and stored."""
    g0, g1 = gain[0], gain[1]
    for y in range(y0, y1):
        src, dst = luma[y], out[y]
        for x in range(out.shape[1]):
            dst[x] = _store_sample(((src[x] - offset) * g0) * g1, top)


@njit(cache=True)
def _chroma_rows(plane, phase_weights, phase_origin, top, out, y0, y1):
    """Output rows [y0, y1) of :func:`imageops.upscale_chroma`: per row, cpu_pixels'
    bicubic row (vertical then horizontal pass, imageops' order) of the integer LR plane,
    cut to ``out``'s width, clipped, rounded and stored."""
    h, w = plane.shape
    s = phase_weights.shape[0]
    buf = np.empty(w + 4, np.float32)
    row = np.empty(w * s, np.float32)
    rows = np.empty(4, np.int64)
    for y in range(y0, y1):
        j, p = divmod(y, s)
        for t in range(4):
            rows[t] = min(max(j + phase_origin[p] - 1 + t, 0), h - 1)
        _bicubic_row(plane, rows, phase_weights[p], phase_weights, phase_origin, buf, row)
        dst = out[y]
        for x in range(out.shape[1]):
            dst[x] = _store_sample(row[x], top)


@njit(parallel=True, cache=True)
def _planes_out(
    luma, offset, gain, top, u, v, n_chroma, phase_weights, phase_origin, y_out, u_out, v_out,
    bands,
):  # fmt: skip
    """The network's Y and the U, V planes (``n_chroma`` 0: Y only) to integer samples in
    one parallel call (one wake-up of the thread pool per frame): each band of threads takes
    its share of the rows of every plane."""
    for band in prange(bands):
        h = y_out.shape[0]
        _luma_rows(luma, offset, gain, top, y_out, band * h // bands, (band + 1) * h // bands)
        if n_chroma:
            hc = u_out.shape[0]
            c0, c1 = band * hc // bands, (band + 1) * hc // bands
            _chroma_rows(u, phase_weights, phase_origin, top, u_out, c0, c1)
            _chroma_rows(v, phase_weights, phase_origin, top, v_out, c0, c1)


cache_restore(_saved_cache_dir)

_RGB_TO_YCC = imageops.RGB_TO_YCBCR.astype(np.float32)
_YCC_TO_RGB = imageops.YCBCR_TO_RGB.astype(np.float32)
_YCC_OFFSET = imageops.YCBCR_OFFSET.astype(np.float32)


def upscale_pixels(
    image: np.ndarray,
    scale: int,
    upscale_luma: imageops.LumaUpscaler,
    lock: contextlib.AbstractContextManager[Any] | None = None,
) -> np.ndarray:
    """``imageops.upscale_image(image, scale, upscale_luma)`` (alpha bicubic) in two kernels.

    ``image``: (H, W) or (H, W, 1-4) uint8, uint16 or float32, any memory layout. ``lock`` is
    held around each kernel (not around ``upscale_luma``, which takes its own): Numba's default
    threading layer aborts on concurrent parallel calls.
    """
    if image.dtype not in imageops.SUPPORTED_DTYPES:
        raise ImageError(f"unsupported dtype {image.dtype} (use uint8, uint16 or float32)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[2] <= 4):
        raise ImageError(f"unsupported shape {image.shape} (use HxW, HxWx1, HxWx2, HxWx3 or HxWx4)")
    lock = lock or contextlib.nullcontext()
    pixels = np.ascontiguousarray(image if image.ndim == 3 else image[:, :, None])
    h, w, c = pixels.shape
    full = imageops.INTEGER_SCALES.get(pixels.dtype, 0.0)
    inv = np.float32(1.0 / full) if full else np.float32(1.0)
    planes = np.empty(((3 if c >= 3 else 1) + (c in (2, 4)), h, w), np.float32)
    gain_in = np.float32(imageops.GRAY_TO_LUMA_GAIN)
    gain_out = np.float32(imageops.LUMA_TO_GRAY_GAIN)
    # Small images (tiles, thumbnails) run on the calling thread: waking the thread pool costs
    # more than their whole pass (about 20 ms per parallel call on a loaded 2-core machine).
    threads = numba.get_num_threads() if h * w * scale * scale >= PARALLEL_MIN_PIXELS else 1
    with lock:
        if threads == 1:
            _unpack_rows(pixels, inv, _RGB_TO_YCC, _YCC_OFFSET, gain_in, planes, 0, h)
        else:
            _unpack(pixels, inv, _RGB_TO_YCC, _YCC_OFFSET, gain_in, planes, min(h, threads))
    luma = np.ascontiguousarray(upscale_luma(planes[0]), dtype=np.float32)
    out = np.empty((h * scale, w * scale, c), pixels.dtype)
    weights = imageops.bicubic_phase_weights(scale).astype(np.float32)
    origin = imageops.bicubic_phase_origin(scale)
    constants = (weights, origin, _YCC_TO_RGB, _YCC_OFFSET, gain_out, np.float32(full), out)
    with lock:
        if threads == 1:
            _pack_rows(luma, planes, *constants, 0, h * scale)
        else:
            _pack(luma, planes, *constants, min(h * scale, threads * _BANDS_PER_THREAD))
    return out if image.ndim == 3 else out[:, :, 0]


def upscale_planes(
    planes: list[np.ndarray],
    scale: int,
    bits: int,
    full_range: bool,
    upscale_luma: imageops.LumaUpscaler,
    out: list[np.ndarray],
) -> list[np.ndarray]:
    """One video frame's planes (Y, or Y, U, V; uint8 or uint16 ``bits``-bit samples, any
    strides) upscaled into ``out`` (the output planes at the output frame's sizes, allocated
    by the caller; they may be strided views of an encoder frame's planes): what
    ``imageops.video_luma`` -> ``upscale_luma`` -> ``video_luma_samples`` and
    ``imageops.upscale_chroma`` compute, with the samples read and written where they lie and
    everything after the network in one parallel kernel."""
    y = planes[0]
    top = float(2**bits - 1)
    if full_range:
        # gray_to_luma(y / top) in, luma_to_gray(luma) * top out, factor by factor.
        a, b, c = np.float32(1.0 / top), np.float32(imageops.GRAY_TO_LUMA_GAIN), _YCC_OFFSET[0]
        gain = np.array([imageops.LUMA_TO_GRAY_GAIN, top], np.float32)
    else:
        limited = imageops.limited_gain(bits)
        a, b, c = np.float32(1.0 / limited), np.float32(1.0), np.float32(0.0)
        gain = np.array([limited, 1.0], np.float32)
    luma = np.empty(y.shape, np.float32)
    # One multiply per LR sample: on the calling thread (waking the pool costs more).
    _plane_to_float(y, a, b, c, luma)
    hr = np.ascontiguousarray(upscale_luma(luma), dtype=np.float32)
    weights = imageops.bicubic_phase_weights(scale).astype(np.float32)
    origin = imageops.bicubic_phase_origin(scale)
    top32 = np.float32(top)
    # c is the luma offset (full range) or 0: it is subtracted again on the way out.
    with KERNEL_LOCK:
        if out[0].size < PARALLEL_MIN_PIXELS:  # as in upscale_pixels: no pool wake-up
            _luma_rows(hr, c, gain, top32, out[0], 0, out[0].shape[0])
            for plane, target in zip(planes[1:], out[1:], strict=True):
                _chroma_rows(plane, weights, origin, top32, target, 0, target.shape[0])
        else:
            chroma = planes[1:] or [y[:1, :1]] * 2  # placeholders, unread, for a gray frame
            targets = out[1:] or [out[0][:1, :1]] * 2
            bands = min(out[0].shape[0], numba.get_num_threads() * _BANDS_PER_THREAD)
            _planes_out(
                hr, c, gain, top32, chroma[0], chroma[1], len(planes) - 1, weights, origin,
                out[0], targets[0], targets[1], bands,
            )  # fmt: skip
    return out
