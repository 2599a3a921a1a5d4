"""conv1's steps over packed LR planes (``srcnn_fast.backends.conv1_steps``) and the cpu
kernel's planes: every tap counted once, the planes' lanes where the shapes say, and conv1
summed through steps, planes and weight lanes equal to the window sum, in NumPy (so the
indexing is checked on any CPU, VNNI or not)."""

from __future__ import annotations

import numpy as np
import pytest

from srcnn_fast.backends import conv1_steps
from srcnn_fast.backends.conv1_steps import COLUMN, OFFSETS, ROW, SQUARE, plan
from srcnn_fast.model import SRCNNWeights
from srcnn_fast.polyphase import axis_geometry, fold_conv1

SPANS = [(0, 6), (0, 7), (1, 6), (0, 5), (0, 8), (0, 9), (2, 3), (0, 1)]


def _covered(steps, pack: int, t: int) -> np.ndarray:
    """How many times each tap of a t x t window (plus the reach) is covered."""
    count = np.zeros((t + 4, t + 4), int)
    for shape, ti, tj in steps:
        for di, dj in OFFSETS[shape, pack]:
            count[ti + di, tj + dj] += 1
    return count


@pytest.mark.parametrize("pack", [1, 2, 4])
def test_every_tap_of_the_span_once(pack: int) -> None:
    for rows in SPANS:
        for cols in SPANS:
            steps = plan(rows, cols, pack)
            count = _covered(steps, pack, 9)
            span = count[rows[0] : rows[1], cols[0] : cols[1]]
            assert (span == 1).all(), f"pack {pack} {rows} x {cols}: covered {span.tolist()}"
            assert count.sum() == len(steps) * pack  # the rest: outside the span (weight 0)
            if pack != 4:  # float32 and bf16 keep their order: rows outer, columns inner
                assert steps == sorted(steps, key=lambda s: (s[1], s[2]))
                assert {shape for shape, _, _ in steps} == {ROW}


def test_int8_at_x3_takes_93_steps_for_114() -> None:
    """The nine interior phases of x3 (windows 6 or 7 wide and high): rows of quads alone
    take 114 steps; the plan 93 (361 taps: 91 at best)."""
    spans = [(0, 6), (0, 7), (0, 6)]
    rows_of_quads = sum(len(range(c[0], c[1], 4)) * (r[1] - r[0]) for r in spans for c in spans)
    planned = sum(len(plan(r, c, 4)) for r in spans for c in spans)
    assert (rows_of_quads, planned) == (114, 93)


def _planes(lr: np.ndarray, stride: int, planes: int) -> np.ndarray:
    """The packed int8 planes of ``lr`` by the shapes' offsets, in NumPy (0 past the end)."""
    n = lr.size
    padded = np.concatenate([lr.astype(np.int64), np.zeros(4 * stride + 4, np.int64)])
    out = np.zeros((planes, n), np.int64)
    for shape in range(planes):
        for k, (di, dj) in enumerate(OFFSETS[shape, 4]):
            out[shape] |= padded[np.arange(n) + di * stride + dj] << (8 * k)
    return out.astype(np.uint32).view(np.int32)


@pytest.mark.parametrize("planes", [1, 2, 3])
@pytest.mark.parametrize("passes", [1, 2])
def test_the_kernels_planes_hold_the_shapes_lanes(planes: int, passes: int) -> None:
    from srcnn_fast.backends.cpu import _quantise_and_quad

    stride, rows = 23, 9
    rng = np.random.default_rng(planes * 10 + passes)
    luma = rng.random(stride * rows).astype(np.float32)
    luma[:5] = [0.0, 1.0, -0.5, 2.0, 0.5]  # clipped both ways, and a tie
    lr = luma.copy()
    quads = np.zeros(planes * lr.size, np.int32)
    low = np.zeros(planes * lr.size if passes == 2 else 1, np.int32)
    _quantise_and_quad(lr, quads, low, passes, stride)
    top = 255.0 * (1 if passes == 1 else 256)
    values = np.clip(np.rint(luma.astype(np.float64) * top), 0, top)
    assert np.array_equal(lr, values.astype(np.float32))
    ints = values.astype(np.int64)
    high = ints >> 8 if passes == 2 else ints
    expected = _planes(high, stride, planes).reshape(-1)
    assert np.array_equal(quads, expected), f"{int((quads != expected).sum())} lanes differ"
    if passes == 2:
        assert np.array_equal(low, _planes(ints & 0xFF, stride, planes).reshape(-1))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_conv1_through_steps_is_the_window_sum(scale: int) -> None:
    """Every interior class: the sum over its steps of (plane lanes at the step's offset) x
    (its weight lanes), byte by byte, equals the folded window's sum over the LR pixels,
    with integers, as the kernel's vpdpbusd sums them."""
    weights = SRCNNWeights.random(scale=scale, seed=scale)
    h, w = 12, 14
    rows, cols = axis_geometry(h, scale, 9), axis_geometry(w, scale, 9)
    k1 = fold_conv1(weights.w1, rows, cols)[..., :4]  # 4 channels are enough
    t = k1.shape[2]
    rng = np.random.default_rng(scale)
    kq = rng.integers(-127, 128, k1.shape) * (k1 != 0)  # integers where the fold has weights
    pad = t + 4
    stride = w + 2 * pad
    lr = rng.integers(0, 256, (h + 2 * pad, stride))
    planes = _planes(lr.reshape(-1), stride, 3).view(np.uint32).astype(np.int64)
    for rc in range(rows.classes.max() + 1):
        for q in range(scale):
            steps = plan(tuple(rows.spans[rc]), tuple(cols.spans[q]), 4)
            lanes = conv1_steps.step_weights(kq[rc, q], steps, 4)  # (steps, 4, n)
            offsets = conv1_steps.step_offsets(steps, stride, lr.size)
            r0, c0 = pad - 1, pad + 2  # any window inside the padded plane
            src = r0 * stride + c0
            got = np.zeros(kq.shape[-1], np.int64)
            for s, offset in enumerate(offsets):
                lane = planes.reshape(-1)[src + offset]
                for k in range(4):
                    got += ((lane >> (8 * k)) & 0xFF) * lanes[s, k]
            window = lr[r0 : r0 + t, c0 : c0 + t]
            expected = np.einsum("ij,ijc->c", window, kq[rc, q])
            assert np.array_equal(got, expected), f"x{scale} class ({rc}, {q})"


def test_steps_reach_no_further_than_the_padding() -> None:
    """A step reads at most REACH rows below and columns right of the window (the planes'
    padding is sized by it)."""
    for pack in (1, 2, 4):
        for rows in SPANS:
            for cols in SPANS:
                for shape, ti, tj in plan(rows, cols, pack):
                    di = max(d for d, _ in OFFSETS[shape, pack])
                    dj = max(d for _, d in OFFSETS[shape, pack])
                    assert ti + di < rows[1] + conv1_steps.REACH
                    assert tj + dj < cols[1] + conv1_steps.REACH
    assert {COLUMN, SQUARE} <= {shape for shape, _, _ in plan((0, 7), (0, 7), 4)}
