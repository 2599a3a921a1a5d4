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

import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from ..model import SRCNNWeights
from ..polyphase import axis_geometry, fold_conv1, phase_window_starts, window_size
from .simd import W, vadd, vbroadcast, vbroadcast_at, vfma, vload, vrelu, vstore, vzero


def cache_dir() -> Path:
    """Per-user folder for the compiled kernels (so a read-only site-packages works).

    Under ``NUMBA_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/srcnn-fast`` (``~/.cache/...``),
    one sub-folder per vector width and per version of the kernel sources: Numba only notices
    edits to the module that defines a function, so a changed ``simd.py`` or ``polyphase.py``
    must not meet machine code compiled from the old one.
    """
    root = os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "srcnn-fast")
    here = Path(__file__).resolve().parent
    sources = [here / "cpu.py", here / "simd.py", here.parent / "polyphase.py"]
    version = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    return Path(root) / f"numba-w{W}-{version}"


# Numba fixes a function's cache location when it is decorated; point it at our folder only
# while this module's kernels are defined (restored at the end of the module).
_saved_cache_dir = numba.config.CACHE_DIR
numba.config.CACHE_DIR = str(cache_dir())

#: Pixel vectors per register block (conv1, conv2): 2 x W pixels.
PIXELS = 2 * W
#: Output channels per register block (conv1, conv2).
CHANNELS = 8


class _Net(NamedTuple):
    """The network's arrays (channels zero-padded to n1p, n2p) and sizes."""

    t_size: int
    n1p: int
    n2p: int
    f3: int
    b1: np.ndarray
    w2: np.ndarray  # [n1p][n2p]
    b2: np.ndarray
    w3: np.ndarray  # [f3][f3][n2p]
    b3: np.float32


class _Geometry(NamedTuple):
    """Everything that depends on the input size: padded LR copy, classes, folded conv1."""

    lr: np.ndarray  # lr_h rows of lr_stride floats, lr_pad replicated columns each side
    lr_stride: int
    lr_pad: int
    lr_h: int
    lr_w: int
    scale: int
    k1: np.ndarray  # folded conv1 [row class][column class][T][T][n1p]
    n_col_classes: int
    row_class: np.ndarray
    row_base: np.ndarray
    col_class: np.ndarray
    col_base: np.ndarray
    col_interior: np.ndarray
    phase_col_base: np.ndarray  # window start - j for interior column s*j + q
    ring_plane: int  # floats per (ring row, channel, phase) plane
    ring_pad: int  # plane index of HR column 0's block


class _Scratch(NamedTuple):
    """Per-band buffers (first axis: band), allocated once per input size."""

    rings: np.ndarray  # [band][f3 rows][n2p][scale planes][ring_plane]
    f1s: np.ndarray
    f2s: np.ndarray
    row_offs: np.ndarray
    pix1s: np.ndarray
    pix2s: np.ndarray
    partials: np.ndarray


class _BandScratch(NamedTuple):
    f1: np.ndarray
    f2: np.ndarray
    row_off: np.ndarray
    pix1: np.ndarray
    pix2: np.ndarray


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


@njit(cache=True, inline="always")
def _clamp(i, lo, hi):
    return min(max(i, lo), hi)


@njit(cache=True, inline="always")
def _zero_2x8():
    z = vzero()
    return (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z)


@njit(cache=True, inline="always")
def _fma_2x8(p0, p1, weights, k, acc):
    """The register block's step: acc[i] += p0 * w[k + i], acc[8 + i] += p1 * w[k + i].

    16 accumulators (2 pixel vectors x 8 channels) stay in SIMD registers across the whole
    loop that calls this; each broadcast weight feeds two FMAs, each pixel vector eight.
    """
    w0 = vbroadcast_at(weights, k)
    w1 = vbroadcast_at(weights, k + 1)
    w2 = vbroadcast_at(weights, k + 2)
    w3 = vbroadcast_at(weights, k + 3)
    w4 = vbroadcast_at(weights, k + 4)
    w5 = vbroadcast_at(weights, k + 5)
    w6 = vbroadcast_at(weights, k + 6)
    w7 = vbroadcast_at(weights, k + 7)
    return (
        vfma(p0, w0, acc[0]), vfma(p0, w1, acc[1]), vfma(p0, w2, acc[2]), vfma(p0, w3, acc[3]),
        vfma(p0, w4, acc[4]), vfma(p0, w5, acc[5]), vfma(p0, w6, acc[6]), vfma(p0, w7, acc[7]),
        vfma(p1, w0, acc[8]), vfma(p1, w1, acc[9]), vfma(p1, w2, acc[10]), vfma(p1, w3, acc[11]),
        vfma(p1, w4, acc[12]), vfma(p1, w5, acc[13]), vfma(p1, w6, acc[14]), vfma(p1, w7, acc[15]),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _store_2x8(out, cb, acc):
    """Channels cb..cb+7 of the 2W-pixel block into ``out`` ([channel][2W pixels])."""
    for i in range(8):
        o = (cb + i) * PIXELS
        vstore(out, o, acc[i])
        vstore(out, o + W, acc[8 + i])


@njit(cache=True)
def _conv1_block(lr, row_off, shift, k1, kbase, t_size, n1p, out, cb):
    """conv1 for 2W pixels (one phase) and 8 channels starting at ``cb``; no bias/ReLU.

    ``row_off[ti] + shift`` is the flat index in ``lr`` of the first LR pixel of window row ti
    for pixel 0 of the block; ``kbase`` the index of K[rc, q, 0, 0, cb] in ``k1``.
    """
    acc = _zero_2x8()
    for ti in range(t_size):
        src = row_off[ti] + shift
        k = kbase + ti * t_size * n1p
        for tj in range(t_size):
            acc = _fma_2x8(vload(lr, src + tj), vload(lr, src + tj + W), k1, k, acc)
            k += n1p
    _store_2x8(out, cb, acc)


@njit(cache=True)
def _conv2_block(f1, w2, n1p, n2p, cb, out):
    """conv2 (1x1) for 2W pixels and 8 output channels from ``cb``: 16 accumulators over n1."""
    acc = _zero_2x8()
    k = cb
    for i in range(n1p):
        acc = _fma_2x8(vload(f1, i * PIXELS), vload(f1, i * PIXELS + W), w2, k, acc)
        k += n2p
    _store_2x8(out, cb, acc)


@njit(cache=True)
def _bias_relu(values, bias, n, pixels):
    """values[c, :pixels] = max(values[c] + bias[c], 0) for c < n (flat, vector-wide rows)."""
    for c in range(n):
        b = vbroadcast(bias[c])
        for p in range(0, pixels, W):
            vstore(values, c * pixels + p, vrelu(vadd(vload(values, c * pixels + p), b)))


@njit(cache=True)
def _f2_row(y, net, geo, ring, slot, scratch):
    """conv2 output (after ReLU) of HR row ``y``, all columns, into ring slot ``slot``."""
    t_size, n1p, n2p, scale = net.t_size, net.n1p, net.n2p, geo.scale
    lr, k1, row_off = geo.lr, geo.k1, scratch.row_off
    f1, f2, pix1, pix2 = scratch.f1, scratch.f2, scratch.pix1, scratch.pix2
    ring_plane, ring_pad = geo.ring_plane, geo.ring_pad
    rc = geo.row_class[y]
    rb = geo.row_base[y]
    for ti in range(t_size):
        row_off[ti] = _clamp(rb + ti, 0, geo.lr_h - 1) * geo.lr_stride + geo.lr_pad
    n_hr = geo.lr_w * scale
    # Main pass: every column as if interior, 2W pixels of one phase at a time.
    for q in range(scale):
        kq = (rc * geo.n_col_classes + q) * t_size * t_size * n1p
        for j0 in range(0, geo.lr_w, PIXELS):
            shift = j0 + geo.phase_col_base[q]
            for cb in range(0, n1p, CHANNELS):
                _conv1_block(lr, row_off, shift, k1, kq + cb, t_size, n1p, f1, cb)
            _bias_relu(f1, net.b1, n1p, PIXELS)
            for cb in range(0, n2p, CHANNELS):
                _conv2_block(f1, net.w2, n1p, n2p, cb, f2)
            _bias_relu(f2, net.b2, n2p, PIXELS)
            for c in range(n2p):
                dst = ((slot * n2p + c) * scale + q) * ring_plane + ring_pad + j0
                vstore(ring, dst, vload(f2, c * PIXELS))
                vstore(ring, dst + W, vload(f2, c * PIXELS + W))
    # Border columns: their own folded filters; one pixel at a time, vectorised over channels.
    for x in range(n_hr):
        if geo.col_interior[x]:
            continue
        kx = (rc * geo.n_col_classes + geo.col_class[x]) * t_size * t_size * n1p
        for cv in range(0, n1p, W):
            acc = vzero()
            for ti in range(t_size):
                for tj in range(t_size):
                    xs = _clamp(geo.col_base[x] + tj, 0, geo.lr_w - 1)
                    v = vbroadcast(lr[row_off[ti] + xs])
                    acc = vfma(v, vload(k1, kx + (ti * t_size + tj) * n1p + cv), acc)
            vstore(pix1, cv, vrelu(vadd(acc, vload(net.b1, cv))))
        for cv in range(0, n2p, W):
            acc = vzero()
            for i in range(n1p):
                acc = vfma(vbroadcast(pix1[i]), vload(net.w2, i * n2p + cv), acc)
            vstore(pix2, cv, vrelu(vadd(acc, vload(net.b2, cv))))
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
def _conv3_row(y, net, geo, ring, partial, out):
    """conv3 of HR row ``y`` from the ring (rows clamped: edge replicate) into ``out[y]``.

    The sum over channels runs in chunks of 8 so that the ring lines a block of pixels reads
    (5 rows x 8 channels x the phase planes) stay in L1 while the s phases and f3 column taps
    reuse them; partial sums wait in ``partial`` (one phase-planar row). Within a chunk,
    2 pixel vectors x 4 channels = 8 independent accumulators share each broadcast weight.
    """
    f3, n2p, w3, scale, lr_w = net.f3, net.n2p, net.w3, geo.scale, geo.lr_w
    ring_plane, ring_pad, n_hr_rows = geo.ring_plane, geo.ring_pad, geo.lr_h * geo.scale
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
            out[y, j * scale + q] = partial[q * ring_plane + j] + net.b3


@njit(parallel=True, cache=True)
def _forward(net, geo, scratch, out):
    """The whole network into ``out``: one band of rows per thread (see the module doc)."""
    n_rows = geo.lr_h * geo.scale
    r3 = (net.f3 - 1) // 2
    bands = scratch.rings.shape[0]
    for band in prange(bands):
        y0 = band * n_rows // bands
        y1 = (band + 1) * n_rows // bands
        if y0 >= y1:
            continue
        mine = _BandScratch(
            scratch.f1s[band], scratch.f2s[band], scratch.row_offs[band],
            scratch.pix1s[band], scratch.pix2s[band],
        )  # fmt: skip
        ring = scratch.rings[band]
        nxt = max(y0 - r3, 0)
        for y in range(y0, y1):
            need = min(y + r3, n_rows - 1)
            while nxt <= need:
                _f2_row(nxt, net, geo, ring, nxt % net.f3, mine)
                _fill_halo(ring, nxt % net.f3, net.n2p, geo.scale, geo.ring_plane,
                           geo.ring_pad, geo.lr_w * geo.scale, r3)  # fmt: skip
                nxt += 1
            _conv3_row(y, net, geo, ring, scratch.partials[band], out)


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


#: Numba's default (workqueue) threading layer aborts on concurrent parallel calls, and a
#: backend's scratch buffers are shared by its calls: one kernel runs at a time per process
#: (it already uses every core, so this costs no throughput).
_KERNEL_LOCK = threading.Lock()


class CpuBackend:
    """Fused Numba backend (see the module docstring). Buffers are cached per input size.

    Safe to call from several threads: calls run one after another.
    """

    name = "cpu"
    _announced = False  # the first-compile message is printed once per process

    def __init__(self, weights: SRCNNWeights, threads: int | None = None) -> None:
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
        n1p = _round_up(arch.n1, max(W, CHANNELS))
        n2p = _round_up(arch.n2, max(W, CHANNELS, 4))

        def padded(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
            out = np.zeros(shape, np.float32)
            out[tuple(slice(0, n) for n in array.shape)] = array
            return out

        self.w1 = padded(weights.w1, (arch.f1, arch.f1, 1, n1p))
        self.net = _Net(
            t_size=window_size(self.scale, (arch.f1 - 1) // 2),
            n1p=n1p,
            n2p=n2p,
            f3=arch.f3,
            b1=padded(weights.b1, (n1p,)),
            w2=padded(weights.w2[0, 0], (n1p, n2p)).reshape(-1),
            b2=padded(weights.b2, (n2p,)),
            w3=padded(weights.w3[:, :, :, 0], (arch.f3, arch.f3, n2p)).reshape(-1),
            b3=np.float32(weights.b3[0]),
        )
        self._plans: dict[tuple[int, int], tuple[_Geometry, _Scratch]] = {}

    def _plan(self, h: int, w: int) -> tuple[_Geometry, _Scratch]:
        """Geometry, folded weights and scratch buffers for an h x w input (cached)."""
        plan = self._plans.get((h, w))
        if plan is not None:
            return plan
        if len(self._plans) > 4:
            self._plans.clear()
        s, net, arch = self.scale, self.net, self.weights.arch
        t = net.t_size
        rows = axis_geometry(h, s, arch.f1)
        cols = axis_geometry(w, s, arch.f1)
        k1 = fold_conv1(self.w1, rows, cols)  # (rc, cc, t, t, n1p)
        width_blocks = _round_up(w, PIXELS)
        lr_pad = t + 2
        lr_stride = lr_pad + width_blocks + t + PIXELS + 2
        r3 = (arch.f3 - 1) // 2
        ring_pad = r3 // s + 2
        ring_plane = ring_pad + width_blocks + ring_pad + W
        bands = max(1, min(self.threads, h * s))
        geometry = _Geometry(
            lr=np.empty(h * lr_stride, np.float32),
            lr_stride=lr_stride,
            lr_pad=lr_pad,
            lr_h=h,
            lr_w=w,
            scale=s,
            k1=k1.reshape(-1),
            n_col_classes=k1.shape[1],
            row_class=rows.classes,
            row_base=rows.base,
            col_class=cols.classes,
            col_base=cols.base,
            col_interior=cols.interior,
            phase_col_base=phase_window_starts(s, arch.f1),
            ring_plane=ring_plane,
            ring_pad=ring_pad,
        )
        scratch = _Scratch(
            rings=np.zeros((bands, arch.f3 * net.n2p * s * ring_plane), np.float32),
            f1s=np.zeros((bands, net.n1p * PIXELS), np.float32),
            f2s=np.zeros((bands, net.n2p * PIXELS), np.float32),
            row_offs=np.zeros((bands, t), np.int64),
            pix1s=np.zeros((bands, net.n1p), np.float32),
            pix2s=np.zeros((bands, net.n2p), np.float32),
            partials=np.zeros((bands, s * ring_plane), np.float32),
        )
        self._plans[(h, w)] = (geometry, scratch)
        return geometry, scratch

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
        out = np.empty((h * self.scale, w * self.scale), np.float32)
        with _KERNEL_LOCK:
            geometry, scratch = self._plan(h, w)
            _pad_lr(luma, geometry.lr, geometry.lr_stride, geometry.lr_pad)
            _forward(self.net, geometry, scratch, out)
        return out
