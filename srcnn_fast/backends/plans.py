"""Per-input-size plans (scratch buffers, folded weights) that a backend keeps for reuse.

A latency-sensitive caller alternates among a few frame sizes (a video and its thumbnails,
the tiles of a large image, which all share one size): each size's plan is built once and
reused. The least recently used plans are dropped once there are more than ``max_entries``
or they hold more than ``max_bytes``, so a caller that walks through many sizes (a folder of
photos) keeps memory bounded rather than one plan per size it ever saw.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

Plan = TypeVar("Plan")

MAX_PLANS = 8
MAX_PLAN_BYTES = 1 << 30


def nbytes(plan: Any) -> int:
    """Bytes of the arrays (NumPy or CuPy) in a plan made of tuples and dataclasses."""
    if hasattr(plan, "nbytes"):
        return int(plan.nbytes)
    if isinstance(plan, (tuple, list)):
        return sum(nbytes(part) for part in plan)
    if dataclasses.is_dataclass(plan) and not isinstance(plan, type):
        return sum(nbytes(getattr(plan, f.name)) for f in dataclasses.fields(plan))
    return 0


class PlanCache(OrderedDict):
    """Plans by key, least recently used first. Not locked: callers hold their own lock."""

    def __init__(self, max_entries: int = MAX_PLANS, max_bytes: int = MAX_PLAN_BYTES) -> None:
        super().__init__()
        self.max_entries, self.max_bytes = max_entries, max_bytes

    def get_or_build(self, key: Hashable, build: Callable[[], Plan]) -> Plan:
        plan = self.get(key)
        if plan is not None:
            self.move_to_end(key)
            return plan
        plan = self[key] = build()
        # The newest plan always stays, however large: it is the one in use.
        while len(self) > 1 and (
            len(self) > self.max_entries or sum(map(nbytes, self.values())) > self.max_bytes
        ):
            self.popitem(last=False)
        return plan
