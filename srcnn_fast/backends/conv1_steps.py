"""conv1's folded window as a list of multiply-add steps over packed copies of the LR plane.

The ``cpu`` kernel's conv1 (``srcnn_fast.backends.cpu``) multiplies a vector of pixels by one
broadcast weight lane per step. A lane holds ``pack`` values: 1 (float32), 2 (a bf16 pair,
``vdpbf16ps``) or 4 (an int8 quad, ``vpdpbusd``), so a step covers ``pack`` taps of the
window, read from a copy of the LR plane whose lane i holds the ``pack`` LR values those taps
see from position i. Which taps go together is the *shape* of the step:

* ``ROW``: ``pack`` taps side by side in a window row (lane i: L[i], L[i + 1], ...);
* ``COLUMN``: 4 taps one under the other (L[i], L[i + stride], L[i + 2 stride], ...);
* ``SQUARE``: 2 x 2 taps (L[i], L[i + 1], L[i + stride], L[i + stride + 1]).

Rows of quads alone waste the lanes past a window's last column: at x3 the windows are 6 or 7
columns wide, 2 quads a row, so 25% or 12.5% of conv1's int8 work multiplied zeros. The plan
takes rows of 4 taps while a whole quad fits, then covers the 1-3 columns left with squares
and columns (x3: 93 steps for the nine interior phases instead of 114, 91 at best). Only int8
uses the other shapes: its sums are integers, so grouping the taps differently cannot change
a bit of the result, while float32 and bf16 keep the order of taps they have always summed in
(rows outer, columns inner; a different order would round differently).

Each step is (shape, ti, tj): the window tap its lane's first value belongs to.
"""

from __future__ import annotations

import numpy as np

#: Step shapes (and the LR copy each reads: plane ``shape`` of the packed input).
ROW, COLUMN, SQUARE = 0, 1, 2

#: Window offsets (row, column) of the values of a lane, per shape and pack.
OFFSETS = {
    (ROW, 1): ((0, 0),),
    (ROW, 2): ((0, 0), (0, 1)),
    (ROW, 4): ((0, 0), (0, 1), (0, 2), (0, 3)),
    (COLUMN, 4): ((0, 0), (1, 0), (2, 0), (3, 0)),
    (SQUARE, 4): ((0, 0), (0, 1), (1, 0), (1, 1)),
}

#: How far past the window a step can read: rows below its last (COLUMN: 3) and columns
#: right of its last (ROW: 3), so the packed planes are padded by this much more.
REACH = 3


def plan(rows: tuple[int, int], cols: tuple[int, int], pack: int) -> list[tuple[int, int, int]]:
    """The steps covering window rows [rows) x columns [cols), for lanes of ``pack`` values.

    Every tap in the span is covered once; a step may also cover taps outside it, whose
    weights are 0. In each part, rows outer and columns inner.
    """
    r0, r1 = rows
    c0, c1 = cols
    if pack != 4:  # float32 and bf16: rows of lanes, the last partly zero, in their old order
        return [(ROW, ti, tj) for ti in range(r0, r1) for tj in range(c0, c1, pack)]
    whole = c0 + (c1 - c0) // 4 * 4
    steps = [(ROW, ti, tj) for ti in range(r0, r1) for tj in range(c0, whole, 4)]
    left = c1 - whole
    if left >= 2:  # two columns: 2 x 2 squares (R / 2 steps, not R)
        steps += [(SQUARE, ti, whole) for ti in range(r0, r1, 2)]
    if left % 2:  # one column: quads down it (R / 4 steps)
        steps += [(COLUMN, ti, c1 - 1) for ti in range(r0, r1, 4)]
    return steps


def planes_needed(plans: list[list[tuple[int, int, int]]]) -> int:
    """How many packed copies of the LR plane the steps read (shapes 0 .. n - 1)."""
    return 1 + max((shape for steps in plans for shape, _, _ in steps), default=0)


def step_weights(window: np.ndarray, steps: list[tuple[int, int, int]], pack: int) -> np.ndarray:
    """(len(steps), pack, n) weights of each step's lane values, from ``window`` (T, T, n):
    0 where a lane value falls outside the window."""
    t = window.shape[0]
    out = np.zeros((len(steps), pack, window.shape[2]), window.dtype)
    for s, (shape, ti, tj) in enumerate(steps):
        for k, (di, dj) in enumerate(OFFSETS[shape, pack]):
            if ti + di < t and tj + dj < t:
                out[s, k] = window[ti + di, tj + dj]
    return out


def step_offsets(steps: list[tuple[int, int, int]], stride: int, plane_size: int) -> np.ndarray:
    """Each step's index in the packed input, relative to the window's first LR pixel."""
    return np.array([shape * plane_size + ti * stride + tj for shape, ti, tj in steps], np.int64)
