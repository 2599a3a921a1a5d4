"""Inference backends behind one small interface.

A backend is built from :class:`~srcnn_fast.model.SRCNNWeights` and exposes
``upscale_luma(luma) -> luma_up``: an (H, W) float32 low-resolution luma plane in, the
(sH, sW) float32 network output out (bicubic upscale included, so fast paths may fold it into
conv1). Colour, alpha and bit depths stay in :mod:`srcnn_fast.imageops`, shared by all.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

import numpy as np

from ..errors import BackendError
from ..model import SRCNNWeights

#: Environment variable that overrides ``backend="auto"``.
BACKEND_ENV = "SRCNN_FAST_BACKEND"
#: Every backend name, fastest first: ``auto`` picks the first one available.
BACKEND_NAMES = ("cuda", "cpu", "reference")


class Backend(Protocol):
    """``upscale_luma`` is required. A backend that runs the whole pipeline itself (CUDA, so
    that only packed pixels cross the bus; cpu, whose fused parallel kernels do the colour,
    chroma and packing work that NumPy did at about the network's own cost) also has
    ``upscale_pixels(image) -> image``, which :class:`~srcnn_fast.infer.Upscaler` prefers."""

    name: str

    def upscale_luma(self, luma: np.ndarray) -> np.ndarray: ...


def _cpu_problem() -> str | None:
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return f"Numba is not importable ({exc})"
    return None


def backend_problem(name: str) -> str | None:
    """None if the backend ``name`` is usable here, else the reason it is not."""
    if name == "cuda":
        from .cuda import cuda_problem

        return cuda_problem()
    return _cpu_problem() if name == "cpu" else None


def available_backends() -> dict[str, str | None]:
    """Each backend name -> None if usable here, else the reason it is not."""
    return {name: backend_problem(name) for name in BACKEND_NAMES}


def backend_details() -> dict[str, str]:
    """Each available backend name -> a line on how it runs here (for ``srcnn-fast info``)."""
    details = {"reference": f"NumPy {np.__version__} (the oracle; BLAS-threaded matrix products)"}
    if available_backends()["cuda"] is None:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        details["cuda"] = f"CuPy {cupy.__version__} on {props['name'].decode()}"
    if available_backends()["cpu"] is None:
        import numba

        from .cpu import cache_dir, is_cached
        from .cpu_amx import amx_available, amx_enabled
        from .simd import W, bf16_problem, int8_problem

        isa = {16: "AVX-512", 8: "AVX2/SSE"}.get(W, "generic")
        state = "compiled" if is_cached() else "not compiled yet (first use compiles)"
        bf16 = bf16_problem()
        bf16_state = "available (AVX512_BF16)" if bf16 is None else f"unavailable: {bf16}"
        if bf16 is None and amx_available("bf16") is None and amx_enabled() is None:
            bf16_state = "available (AMX tdpbf16ps where all layers are bf16, else AVX512_BF16)"
        int8 = int8_problem()
        vnni = "AVX512_VNNI" if W >= 16 else "AVX-VNNI"
        conv3 = "bf16 (x2: fp32)" if bf16 is None else "fp32"
        int8_state = (
            f"available ({vnni} vpdpbusd for conv1 and conv2, conv3 in {conv3})"
            if int8 is None
            else f"unavailable: {int8}"
        )
        if int8 is None and amx_available("int8") is None and amx_enabled() is None:
            int8_state = "available (AMX tdpbsud for conv1 and conv2, conv3 in AMX tdpbf16ps)"
        details["cpu"] = (
            f"Numba {numba.__version__}, {W}-lane SIMD ({isa}), {numba.get_num_threads()} "
            f"threads; kernels {state} in {cache_dir()}; --precision bf16: {bf16_state}; "
            f"--precision int8: {int8_state}"
        )
    return details


def explain_auto() -> tuple[str, str]:
    """(backend that ``auto`` picks, why) for this process."""
    forced = os.environ.get(BACKEND_ENV, "").strip()
    if forced and forced != "auto":
        return resolve_backend_name(forced), f"set by {BACKEND_ENV}={forced}"
    available = available_backends()
    skipped = [f"{n}: {available[n]}" for n in BACKEND_NAMES if available[n] is not None]
    chosen = resolve_backend_name("auto")
    why = "the fastest backend available here"
    return chosen, why + (f" (unavailable: {'; '.join(skipped)})" if skipped else "")


def resolve_backend_name(name: str = "auto") -> str:
    """Turn ``auto`` (or the environment override) into a concrete, available backend name."""
    if name == "auto":
        name = os.environ.get(BACKEND_ENV, "").strip() or "auto"
    if name == "auto":
        return next(n for n in BACKEND_NAMES if backend_problem(n) is None)
    if name not in BACKEND_NAMES:
        choices = ", ".join(("auto", *BACKEND_NAMES))
        raise BackendError(f"unknown backend {name!r} (choose from {choices})")
    # Only the backend asked for is probed: naming `cpu` never pays for importing CuPy.
    problem = backend_problem(name)
    if problem is not None:
        raise BackendError(f"backend {name!r} is not available: {problem}")
    return name


#: Numeric precisions: "fp32" everywhere (the default: ``auto`` never picks another); "fp16"
#: (tensor cores, float32 accumulation) on CUDA; "bf16" (AVX512_BF16 ``vdpbf16ps``, float32
#: accumulation) on the cpu backend; "int8" (conv1 and conv2 as AVX512-VNNI / AVX-VNNI
#: ``vpdpbusd`` integer dot products, calibrated scales from the weights file) on the cpu
#: backend.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: The backend each reduced precision runs on.
PRECISION_BACKENDS = {"fp16": "cuda", "bf16": "cpu", "int8": "cpu"}


def create_backend(name: str, weights: SRCNNWeights, precision: str = "fp32") -> Backend:
    """Build the named backend (``auto`` resolved) for these weights.

    A reduced precision names its backend: with ``auto``, bf16 takes the cpu backend (fp16
    resolves as usual and needs cuda); asking another backend for it is an error.
    """
    chosen_automatically = name == "auto" and not os.environ.get(BACKEND_ENV, "").strip()
    if precision not in PRECISIONS:
        raise BackendError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if PRECISION_BACKENDS.get(precision) == "cpu" and name == "auto":
        name = "cpu"
    name = resolve_backend_name(name)
    needed = PRECISION_BACKENDS.get(precision, name)
    if needed != name:
        how = {
            "fp16": "tensor cores",
            "bf16": "AVX512_BF16 (vdpbf16ps)",
            "int8": "VNNI (vpdpbusd)",
        }[precision]
        raise BackendError(
            f"precision {precision} runs on {how}: it needs the {needed} backend, not {name}"
        )
    if name == "cuda":
        from .cuda import CudaBackend

        try:
            return CudaBackend(weights, precision=precision)
        except BackendError as exc:
            # Chosen by auto, not by the user: a GPU that cannot run these weights (a 9-5-5
            # model, scale > 8, a broken NVRTC) falls back to the CPU instead of failing.
            if not chosen_automatically or precision != "fp32":
                raise
            print(f"srcnn-fast: {exc}; using the cpu backend", file=sys.stderr)
            name = "cpu"
    if name == "cpu":
        from .cpu import CpuBackend

        return CpuBackend(weights, precision=precision)
    if name == "reference":
        from .reference import ReferenceBackend

        return ReferenceBackend(weights)
    raise BackendError(f"backend {name!r} is not implemented")  # pragma: no cover
