"""Fused SRCNN on the CPU with Numba: polyphase bicubic + conv1 + conv2 + conv3 in one pass.

Work decomposition
------------------
The HR output is split into horizontal bands, one per thread (``prange``). A band walks its
rows top to bottom keeping the last f3 rows of conv2 output in a ring buffer, so conv3 for row
Y runs as soon as conv2 row Y + r3 exists and nothing is computed twice except r3 rows at each
band edge. Nothing touches memory but the LR input, the ring (L2-resident) and the output.

Layout: phase planes
--------------------
conv1 is folded with the bicubic upscale (``srcnn_fast.polyphase``): an HR pixel X = s*j + q
reads a T x T window of LR pixels starting at column j + c_q through the filter of its row class
and column phase q. So for fixed q, W consecutive LR columns j are W HR pixels that share a
filter and read *contiguous* LR memory: they form one SIMD vector, and the weights are
broadcast. conv2 output is kept in the same "phase-planar" layout (plane q holds HR columns
s*j + q), which conv3 reads with contiguous loads too: HR column X + dx lives in plane
(q + dx) mod s at index j + (q + dx) div s. Only the final single-channel output is
interleaved back to HR order.

Register blocking
-----------------
conv1 and conv2 hold 16 accumulators (2 pixel vectors x 8 output channels) in SIMD registers
across all T*T taps (conv1) or all n1 inputs (conv2): per tap, 2 vector loads and 8 broadcast
weights feed 16 FMAs. conv3 keeps 4 independent accumulators per pixel vector so its 800-long
sum is not one dependent chain. Channel counts are padded with zero weights to a multiple of
the vector width, which is exact (a zero channel adds nothing).

Border columns (HR X < r1 or X >= sW - r1) have their own folded filters (conv1's edge-
replicate padding); they are recomputed per pixel, vectorised over channels, after the main
pass. Border *rows* need nothing special: a whole row shares its row class.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

from ..model import SRCNNWeights
from ..polyphase import axis_geometry, fold_conv1, window_size
from .simd import W, vadd, vbroadcast, vbroadcast_at, vfma, vload, vrelu, vstore, vzero


def cache_dir() -> Path:
    """Per-user folder for the compiled kernels (so a read-only site-packages works).

    ``NUMBA_CACHE_DIR`` wins if set; else ``$XDG_CACHE_HOME/srcnn-fast`` (``~/.cache/...``).
    One sub-folder per vector width: a kernel compiled for one never loads for another.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "srcnn-fast" / f"numba-w{W}"


# Numba fixes a function's cache location when it is decorated; point it at our folder only
# while this module's kernels are defined (restored at the end of the module).
_saved_cache_dir = numba.config.CACHE_DIR
numba.config.CACHE_DIR = str(cache_dir())

#: Pixel vectors per register block (conv1, conv2): 2 x W pixels.
PIXELS = 2 * W
#: Output channels per register block (conv1, conv2).
CHANNELS = 8


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


@njit(cache=True, inline="always")
def _clamp(i, lo, hi):
    return min(max(i, lo), hi)


@njit(cache=True)
def _conv1_block(lr, row_off, shift, k1, kbase, t_size, n1p, out, cb):
    """conv1 for 2W pixels (one phase) and 8 channels starting at ``cb``; no bias/ReLU.

    ``row_off[ti] + shift`` is the flat index in ``lr`` of the first LR pixel of window row ti
    for pixel 0 of the block; ``kbase`` the index of K[rc, q, 0, 0, cb] in ``k1``.
    """
    a0 = vzero()
    a1 = vzero()
    a2 = vzero()
    a3 = vzero()
    a4 = vzero()
    a5 = vzero()
    a6 = vzero()
    a7 = vzero()
    c0 = vzero()
    c1 = vzero()
    c2 = vzero()
    c3 = vzero()
    c4 = vzero()
    c5 = vzero()
    c6 = vzero()
    c7 = vzero()
    for ti in range(t_size):
        src = row_off[ti] + shift
        k = kbase + ti * t_size * n1p
        for tj in range(t_size):
            p0 = vload(lr, src + tj)
            p1 = vload(lr, src + tj + W)
            w = vbroadcast_at(k1, k)
            a0 = vfma(p0, w, a0)
            c0 = vfma(p1, w, c0)
            w = vbroadcast_at(k1, k + 1)
            a1 = vfma(p0, w, a1)
            c1 = vfma(p1, w, c1)
            w = vbroadcast_at(k1, k + 2)
            a2 = vfma(p0, w, a2)
            c2 = vfma(p1, w, c2)
            w = vbroadcast_at(k1, k + 3)
            a3 = vfma(p0, w, a3)
            c3 = vfma(p1, w, c3)
            w = vbroadcast_at(k1, k + 4)
            a4 = vfma(p0, w, a4)
            c4 = vfma(p1, w, c4)
            w = vbroadcast_at(k1, k + 5)
            a5 = vfma(p0, w, a5)
            c5 = vfma(p1, w, c5)
            w = vbroadcast_at(k1, k + 6)
            a6 = vfma(p0, w, a6)
            c6 = vfma(p1, w, c6)
            w = vbroadcast_at(k1, k + 7)
            a7 = vfma(p0, w, a7)
            c7 = vfma(p1, w, c7)
            k += n1p
    o = cb * PIXELS
    vstore(out, o, a0)
    vstore(out, o + W, c0)
    vstore(out, o + PIXELS, a1)
    vstore(out, o + PIXELS + W, c1)
    vstore(out, o + 2 * PIXELS, a2)
    vstore(out, o + 2 * PIXELS + W, c2)
    vstore(out, o + 3 * PIXELS, a3)
    vstore(out, o + 3 * PIXELS + W, c3)
    vstore(out, o + 4 * PIXELS, a4)
    vstore(out, o + 4 * PIXELS + W, c4)
    vstore(out, o + 5 * PIXELS, a5)
    vstore(out, o + 5 * PIXELS + W, c5)
    vstore(out, o + 6 * PIXELS, a6)
    vstore(out, o + 6 * PIXELS + W, c6)
    vstore(out, o + 7 * PIXELS, a7)
    vstore(out, o + 7 * PIXELS + W, c7)


@njit(cache=True)
def _conv2_block(f1, w2, n1p, n2p, cb, out):
    """conv2 (1x1) for 2W pixels and 8 output channels from ``cb``: 16 accumulators over n1."""
    a0 = vzero()
    a1 = vzero()
    a2 = vzero()
    a3 = vzero()
    a4 = vzero()
    a5 = vzero()
    a6 = vzero()
    a7 = vzero()
    c0 = vzero()
    c1 = vzero()
    c2 = vzero()
    c3 = vzero()
    c4 = vzero()
    c5 = vzero()
    c6 = vzero()
    c7 = vzero()
    k = cb
    for i in range(n1p):
        p0 = vload(f1, i * PIXELS)
        p1 = vload(f1, i * PIXELS + W)
        w = vbroadcast_at(w2, k)
        a0 = vfma(p0, w, a0)
        c0 = vfma(p1, w, c0)
        w = vbroadcast_at(w2, k + 1)
        a1 = vfma(p0, w, a1)
        c1 = vfma(p1, w, c1)
        w = vbroadcast_at(w2, k + 2)
        a2 = vfma(p0, w, a2)
        c2 = vfma(p1, w, c2)
        w = vbroadcast_at(w2, k + 3)
        a3 = vfma(p0, w, a3)
        c3 = vfma(p1, w, c3)
        w = vbroadcast_at(w2, k + 4)
        a4 = vfma(p0, w, a4)
        c4 = vfma(p1, w, c4)
        w = vbroadcast_at(w2, k + 5)
        a5 = vfma(p0, w, a5)
        c5 = vfma(p1, w, c5)
        w = vbroadcast_at(w2, k + 6)
        a6 = vfma(p0, w, a6)
        c6 = vfma(p1, w, c6)
        w = vbroadcast_at(w2, k + 7)
        a7 = vfma(p0, w, a7)
        c7 = vfma(p1, w, c7)
        k += n2p
    o = cb * PIXELS
    vstore(out, o, a0)
    vstore(out, o + W, c0)
    vstore(out, o + PIXELS, a1)
    vstore(out, o + PIXELS + W, c1)
    vstore(out, o + 2 * PIXELS, a2)
    vstore(out, o + 2 * PIXELS + W, c2)
    vstore(out, o + 3 * PIXELS, a3)
    vstore(out, o + 3 * PIXELS + W, c3)
    vstore(out, o + 4 * PIXELS, a4)
    vstore(out, o + 4 * PIXELS + W, c4)
    vstore(out, o + 5 * PIXELS, a5)
    vstore(out, o + 5 * PIXELS + W, c5)
    vstore(out, o + 6 * PIXELS, a6)
    vstore(out, o + 6 * PIXELS + W, c6)
    vstore(out, o + 7 * PIXELS, a7)
    vstore(out, o + 7 * PIXELS + W, c7)


@njit(cache=True)
def _bias_relu(values, bias, n, pixels):
    """values[c, :pixels] = max(values[c] + bias[c], 0) for c < n (flat, vector-wide rows)."""
    for c in range(n):
        b = vbroadcast(bias[c])
        for p in range(0, pixels, W):
            vstore(values, c * pixels + p, vrelu(vadd(vload(values, c * pixels + p), b)))


@njit(cache=True)
def _f2_row(
    y,
    lr,
    lr_stride,
    lr_pad,
    lr_h,
    lr_w,
    scale,
    k1,
    n_col_classes,
    t_size,
    b1,
    w2,
    b2,
    n1p,
    n2p,
    row_class,
    row_base,
    col_class,
    col_base,
    col_interior,
    phase_col_base,
    ring,
    slot,
    ring_plane,
    ring_pad,
    f1,
    f2,
    row_off,
    pix1,
    pix2,
):
    """conv2 output (after ReLU) of HR row ``y``, all columns, into ring slot ``slot``."""
    rc = row_class[y]
    rb = row_base[y]
    for ti in range(t_size):
        row_off[ti] = _clamp(rb + ti, 0, lr_h - 1) * lr_stride + lr_pad
    n_hr = lr_w * scale
    # Main pass: every column as if interior, 2W pixels of one phase at a time.
    for q in range(scale):
        kq = (rc * n_col_classes + q) * t_size * t_size * n1p
        for j0 in range(0, lr_w, PIXELS):
            shift = j0 + phase_col_base[q]
            for cb in range(0, n1p, CHANNELS):
                _conv1_block(lr, row_off, shift, k1, kq + cb, t_size, n1p, f1, cb)
            _bias_relu(f1, b1, n1p, PIXELS)
            for cb in range(0, n2p, CHANNELS):
                _conv2_block(f1, w2, n1p, n2p, cb, f2)
            _bias_relu(f2, b2, n2p, PIXELS)
            for c in range(n2p):
                dst = ((slot * n2p + c) * scale + q) * ring_plane + ring_pad + j0
                vstore(ring, dst, vload(f2, c * PIXELS))
                vstore(ring, dst + W, vload(f2, c * PIXELS + W))
    # Border columns: their own folded filters; one pixel at a time, vectorised over channels.
    for x in range(n_hr):
        if col_interior[x]:
            continue
        kx = (rc * n_col_classes + col_class[x]) * t_size * t_size * n1p
        for cv in range(0, n1p, W):
            acc = vzero()
            for ti in range(t_size):
                for tj in range(t_size):
                    xs = _clamp(col_base[x] + tj, 0, lr_w - 1)
                    v = vbroadcast(lr[row_off[ti] + xs])
                    acc = vfma(v, vload(k1, kx + (ti * t_size + tj) * n1p + cv), acc)
            vstore(pix1, cv, vrelu(vadd(acc, vload(b1, cv))))
        for cv in range(0, n2p, W):
            acc = vzero()
            for i in range(n1p):
                acc = vfma(vbroadcast(pix1[i]), vload(w2, i * n2p + cv), acc)
            vstore(pix2, cv, vrelu(vadd(acc, vload(b2, cv))))
        j, q = divmod(x, scale)
        for c in range(n2p):
            ring[((slot * n2p + c) * scale + q) * ring_plane + ring_pad + j] = pix2[c]


@njit(cache=True)
def _fill_halo(ring, slot, n2p, scale, ring_plane, ring_pad, n_hr, r3):
    """HR columns -r3..-1 and n_hr..n_hr+r3-1 of a ring row: copies of the edge columns."""
    for c in range(n2p):
        plane0 = (slot * n2p + c) * scale
        first = ring[plane0 * ring_plane + ring_pad]
        j_last, q_last = divmod(n_hr - 1, scale)
        last = ring[(plane0 + q_last) * ring_plane + ring_pad + j_last]
        for d in range(1, r3 + 1):
            j, q = divmod(-d, scale)
            ring[(plane0 + q) * ring_plane + ring_pad + j] = first
            j, q = divmod(n_hr - 1 + d, scale)
            ring[(plane0 + q) * ring_plane + ring_pad + j] = last


@njit(cache=True)
def _conv3_row(
    y, n_hr_rows, lr_w, scale, ring, ring_plane, ring_pad, n2p, w3, b3, f3, partial, out
):
    """conv3 of HR row ``y`` from the ring (rows clamped: edge replicate) into ``out[y]``.

    The sum over channels runs in chunks of 8 so that the ring lines a block of pixels reads
    (5 rows x 8 channels x the phase planes) stay in L1 while the s phases and f3 column taps
    reuse them; partial sums wait in ``partial`` (one phase-planar row). Within a chunk,
    2 pixel vectors x 4 channels = 8 independent accumulators share each broadcast weight.
    """
    r3 = (f3 - 1) // 2
    step = scale * ring_plane  # from one channel's plane to the next one's
    for c_lo in range(0, n2p, CHANNELS):
        for j0 in range(0, lr_w, PIXELS):
            for q in range(scale):
                a0 = vzero()
                a1 = vzero()
                a2 = vzero()
                a3 = vzero()
                c0 = vzero()
                c1 = vzero()
                c2 = vzero()
                c3 = vzero()
                for dy in range(f3):
                    slot = _clamp(y + dy - r3, 0, n_hr_rows - 1) % f3
                    for dx in range(f3):
                        o = q + dx - r3
                        plane, jo = o % scale, o // scale
                        src = ((slot * n2p) * scale + plane) * ring_plane + ring_pad + j0 + jo
                        k = (dy * f3 + dx) * n2p
                        for c in range(c_lo, c_lo + CHANNELS, 4):
                            s0 = src + c * step
                            w = vbroadcast_at(w3, k + c)
                            a0 = vfma(vload(ring, s0), w, a0)
                            c0 = vfma(vload(ring, s0 + W), w, c0)
                            w = vbroadcast_at(w3, k + c + 1)
                            a1 = vfma(vload(ring, s0 + step), w, a1)
                            c1 = vfma(vload(ring, s0 + step + W), w, c1)
                            w = vbroadcast_at(w3, k + c + 2)
                            a2 = vfma(vload(ring, s0 + 2 * step), w, a2)
                            c2 = vfma(vload(ring, s0 + 2 * step + W), w, c2)
                            w = vbroadcast_at(w3, k + c + 3)
                            a3 = vfma(vload(ring, s0 + 3 * step), w, a3)
                            c3 = vfma(vload(ring, s0 + 3 * step + W), w, c3)
                first = vadd(vadd(a0, a1), vadd(a2, a3))
                second = vadd(vadd(c0, c1), vadd(c2, c3))
                at = q * ring_plane + j0
                if c_lo > 0:
                    first = vadd(first, vload(partial, at))
                    second = vadd(second, vload(partial, at + W))
                vstore(partial, at, first)
                vstore(partial, at + W, second)
    for q in range(scale):
        for j in range(lr_w):
            out[y, j * scale + q] = partial[q * ring_plane + j] + b3


@njit(parallel=True, cache=True)
def _forward(
    lr,
    lr_stride,
    lr_pad,
    lr_h,
    lr_w,
    scale,
    k1,
    n_col_classes,
    t_size,
    b1,
    w2,
    b2,
    w3,
    b3,
    f3,
    n1p,
    n2p,
    row_class,
    row_base,
    col_class,
    col_base,
    col_interior,
    phase_col_base,
    rings,
    ring_plane,
    ring_pad,
    f1s,
    f2s,
    row_offs,
    pix1s,
    pix2s,
    partials,
    out,
):
    n_rows = lr_h * scale
    n_cols = lr_w * scale
    r3 = (f3 - 1) // 2
    bands = rings.shape[0]
    for band in prange(bands):
        y0 = band * n_rows // bands
        y1 = (band + 1) * n_rows // bands
        if y0 >= y1:
            continue
        ring = rings[band]
        nxt = max(y0 - r3, 0)
        for y in range(y0, y1):
            need = min(y + r3, n_rows - 1)
            while nxt <= need:
                _f2_row(
                    nxt,
                    lr,
                    lr_stride,
                    lr_pad,
                    lr_h,
                    lr_w,
                    scale,
                    k1,
                    n_col_classes,
                    t_size,
                    b1,
                    w2,
                    b2,
                    n1p,
                    n2p,
                    row_class,
                    row_base,
                    col_class,
                    col_base,
                    col_interior,
                    phase_col_base,
                    ring,
                    nxt % f3,
                    ring_plane,
                    ring_pad,
                    f1s[band],
                    f2s[band],
                    row_offs[band],
                    pix1s[band],
                    pix2s[band],
                )
                _fill_halo(ring, nxt % f3, n2p, scale, ring_plane, ring_pad, n_cols, r3)
                nxt += 1
            _conv3_row(
                y,
                n_rows,
                lr_w,
                scale,
                ring,
                ring_plane,
                ring_pad,
                n2p,
                w3,
                b3,
                f3,
                partials[band],
                out,
            )


@njit(cache=True)
def _pad_lr(luma, lr, lr_stride, lr_pad):
    """Copy the LR plane into ``lr`` with ``lr_pad`` edge-replicated columns each side."""
    h, w = luma.shape
    for r in range(h):
        base = r * lr_stride
        for c in range(lr_stride):
            lr[base + c] = luma[r, min(max(c - lr_pad, 0), w - 1)]


numba.config.CACHE_DIR = _saved_cache_dir


def is_cached() -> bool:
    """Whether the fused kernel was compiled for this machine before (its index file exists)."""
    return any(cache_dir().rglob("*_forward*.nbi"))


class CpuBackend:
    """Fused Numba backend (see the module docstring). Buffers are cached per input size."""

    name = "cpu"
    _announced = False  # the first-compile message is printed once per process

    def __init__(self, weights: SRCNNWeights, threads: int | None = None) -> None:
        import numba

        arch = weights.arch
        self.weights = weights
        # The fused kernel keeps conv2 per pixel, so it needs a 1x1 conv2 (every SRCNN in the
        # papers but 9-5-5/9-3-5). Others take the general path: the NumPy reference.
        self._general = None
        if arch.f2 != 1:
            from .reference import ReferenceBackend

            self._general = ReferenceBackend(weights)
            return
        self.scale = weights.scale
        self.threads = threads or numba.get_num_threads()
        self.n1p = _round_up(arch.n1, max(W, CHANNELS))
        self.n2p = _round_up(arch.n2, max(W, CHANNELS, 4))
        n1, n2 = arch.n1, arch.n2
        self.w1 = np.zeros((arch.f1, arch.f1, 1, self.n1p), np.float32)
        self.w1[..., :n1] = weights.w1
        self.b1 = np.zeros(self.n1p, np.float32)
        self.b1[:n1] = weights.b1
        w2 = np.zeros((self.n1p, self.n2p), np.float32)
        w2[:n1, :n2] = weights.w2[0, 0]
        self.w2 = w2.reshape(-1)
        self.b2 = np.zeros(self.n2p, np.float32)
        self.b2[:n2] = weights.b2
        w3 = np.zeros((arch.f3, arch.f3, self.n2p), np.float32)
        w3[:, :, :n2] = weights.w3[:, :, :, 0]
        self.w3 = w3.reshape(-1)
        self.b3 = np.float32(weights.b3[0])
        self.t_size = window_size(self.scale, (arch.f1 - 1) // 2)
        self._plans: dict[tuple[int, int], dict] = {}

    def _plan(self, h: int, w: int) -> dict:
        """Geometry, folded weights and scratch buffers for an h x w input (cached)."""
        plan = self._plans.get((h, w))
        if plan is not None:
            return plan
        if len(self._plans) > 4:
            self._plans.clear()
        s, t, arch = self.scale, self.t_size, self.weights.arch
        rows = axis_geometry(h, s, arch.f1)
        cols = axis_geometry(w, s, arch.f1)
        k1 = fold_conv1(self.w1, rows, cols)  # (rc, cc, t, t, n1p)
        # Window start relative to j for interior HR column X = s*j + q (polyphase.py).
        q = np.arange(s)
        phase_col_base = (np.floor((q - (arch.f1 - 1) // 2 + 0.5) / s - 0.5) - 1).astype(np.int64)
        width_blocks = _round_up(w, PIXELS)
        lr_pad = t + 2
        lr_stride = lr_pad + width_blocks + t + PIXELS + 2
        r3 = (arch.f3 - 1) // 2
        ring_pad = r3 // s + 2
        ring_plane = ring_pad + width_blocks + ring_pad + W
        bands = max(1, min(self.threads, h * s))
        plan = {
            "lr": np.empty(h * lr_stride, np.float32),
            "lr_stride": lr_stride,
            "lr_pad": lr_pad,
            "k1": k1.reshape(-1),
            "n_col_classes": k1.shape[1],
            "row_class": rows.classes,
            "row_base": rows.base,
            "col_class": cols.classes,
            "col_base": cols.base,
            "col_interior": cols.interior,
            "phase_col_base": phase_col_base,
            "rings": np.zeros((bands, arch.f3 * self.n2p * s * ring_plane), np.float32),
            "ring_plane": ring_plane,
            "ring_pad": ring_pad,
            "f1s": np.zeros((bands, self.n1p * PIXELS), np.float32),
            "f2s": np.zeros((bands, self.n2p * PIXELS), np.float32),
            "row_offs": np.zeros((bands, t), np.int64),
            "pix1s": np.zeros((bands, self.n1p), np.float32),
            "pix2s": np.zeros((bands, self.n2p), np.float32),
            "partials": np.zeros((bands, s * ring_plane), np.float32),
        }
        self._plans[(h, w)] = plan
        return plan

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray:
        """(H, W) float32 LR luma -> (sH, sW) float32 network output."""
        if self._general is not None:
            return self._general.upscale_luma(luma)
        luma = np.ascontiguousarray(luma, dtype=np.float32)
        h, w = luma.shape
        if not CpuBackend._announced and not is_cached():
            print(
                f"srcnn-fast: compiling the CPU kernels for this machine (first run only; "
                f"cached in {cache_dir()})",
                file=sys.stderr,
            )
        CpuBackend._announced = True
        p = self._plan(h, w)
        _pad_lr(luma, p["lr"], p["lr_stride"], p["lr_pad"])
        out = np.empty((h * self.scale, w * self.scale), np.float32)
        arch = self.weights.arch
        _forward(
            p["lr"],
            p["lr_stride"],
            p["lr_pad"],
            h,
            w,
            self.scale,
            p["k1"],
            p["n_col_classes"],
            self.t_size,
            self.b1,
            self.w2,
            self.b2,
            self.w3,
            self.b3,
            arch.f3,
            self.n1p,
            self.n2p,
            p["row_class"],
            p["row_base"],
            p["col_class"],
            p["col_base"],
            p["col_interior"],
            p["phase_col_base"],
            p["rings"],
            p["ring_plane"],
            p["ring_pad"],
            p["f1s"],
            p["f2s"],
            p["row_offs"],
            p["pix1s"],
            p["pix2s"],
            p["partials"],
            out,
        )
        return out
