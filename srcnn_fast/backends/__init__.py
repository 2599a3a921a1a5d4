"""Inference backends behind one small interface.

A backend is built from :class:`~srcnn_fast.model.SRCNNWeights` and exposes
``upscale_luma(luma) -> luma_up``: an (H, W) float32 low-resolution luma plane in, the
(sH, sW) float32 network output out (bicubic upscale included, so fast paths may fold it into
conv1). Colour, alpha and bit depths stay in :mod:`srcnn_fast.imageops`, shared by all.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from ..errors import BackendError
from ..model import SRCNNWeights

#: Environment variable that overrides ``backend="auto"``.
BACKEND_ENV = "SRCNN_FAST_BACKEND"
#: Every backend name, fastest first: ``auto`` picks the first one available.
BACKEND_NAMES = ("reference",)


class Backend(Protocol):
    name: str

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray: ...


def available_backends() -> dict[str, str | None]:
    """Each backend name -> None if usable here, else the reason it is not."""
    return {"reference": None}


def resolve_backend_name(name: str = "auto") -> str:
    """Turn ``auto`` (or the environment override) into a concrete, available backend name."""
    if name == "auto":
        name = os.environ.get(BACKEND_ENV, "").strip() or "auto"
    available = available_backends()
    if name == "auto":
        return next(n for n in BACKEND_NAMES if available[n] is None)
    if name not in available:
        choices = ", ".join(("auto", *BACKEND_NAMES))
        raise BackendError(f"unknown backend {name!r} (choose from {choices})")
    if available[name] is not None:
        raise BackendError(f"backend {name!r} is not available: {available[name]}")
    return name


def create_backend(name: str, weights: SRCNNWeights) -> Backend:
    """Build the named backend (``auto`` resolved) for these weights."""
    name = resolve_backend_name(name)
    if name == "reference":
        from .reference import ReferenceBackend

        return ReferenceBackend(weights)
    raise BackendError(f"backend {name!r} is not implemented")  # pragma: no cover
