"""Speed of our backends against peers, in one run, per LR size and scale: the network on a
luma plane.

Our backends start from the LR luma plane (bicubic included); peers get the already-upscaled
plane. Every implementation's output is checked against the NumPy reference before it is timed,
at its precision class's tolerance (conftest.TOLERANCE: fp32 1e-4, bf16 3e-2, fp16 5e-3); a
peer that is not installed is skipped with the reason, and so is one of ours that the backend
refuses (``cpu-bf16`` until the cpu backend has a bf16 precision).

The summary compares each row with the fastest peer of its precision class (fp32, bf16, fp16)
and with the fastest peer of any precision, CPU rows with CPU peers and GPU rows with GPU peers.

The GPU group (4K output, marked ``cuda``: ``pytest bench -m cuda``) times our CUDA backend
against cuDNN in NCHW and NHWC layouts, in float32 (TF32 for cuDNN) and in float16 (tensor cores
for both).
"""

from __future__ import annotations

import functools
import gc

import numpy as np
import pytest
from conftest import TOLERANCE, make_lr_plane, ours, peer_runner, rounds_for
from peers import PEERS

from srcnn_fast import imageops
from srcnn_fast.backends import create_backend
from srcnn_fast.backends.reference import ReferenceBackend
from srcnn_fast.infer import shipped_weights_path
from srcnn_fast.model import SRCNNWeights

SIZES = [(256, 256), (640, 360), (1280, 720)]
#: On a GPU also a 4K output (the CUDA target: 1920x1080 x2 = 3840x2160).
GPU_SIZES = [(1920, 1080)]
SCALES = [2, 3, 4]
#: Our implementations: name -> (backend, precision).
OURS = {
    "cuda": ("cuda", "fp32"),
    "cpu": ("cpu", "fp32"),
    "cpu-bf16": ("cpu", "bf16"),
    "cpu-int8": ("cpu", "int8"),
    "reference": ("reference", "fp32"),
    "cuda-fp16": ("cuda", "fp16"),
}
#: Timed in the GPU group only: our CUDA backend and the cuDNN peers.
GPU_IMPLS = {"cuda", "cuda-fp16", *(name for name, p in PEERS.items() if p.gpu)}
CASES = [
    (size, scale, impl)
    for size in SIZES
    for scale in SCALES
    for impl in [*OURS, *PEERS]
    if impl not in GPU_IMPLS or impl == "cuda"
]
GPU_CASES = [(size, 2, impl) for size in GPU_SIZES for impl in sorted(GPU_IMPLS)]
PARAMS = [
    pytest.param(size, scale, impl, id=f"{size[0]}x{size[1]}-x{scale}-{impl}", marks=marks)
    for cases, marks in [(CASES, ()), (GPU_CASES, pytest.mark.cuda)]
    for size, scale, impl in cases
]


@functools.cache
def case(size: tuple[int, int], scale: int):
    """Shipped weights, LR plane, upscaled plane and the reference output (computed once)."""
    weights = SRCNNWeights.load(shipped_weights_path(scale))
    lr = make_lr_plane(*size)
    upscaled = imageops.bicubic_upscale(lr, scale)
    return weights, lr, upscaled, ReferenceBackend(weights).network(upscaled)


@pytest.mark.parametrize(("size", "scale", "impl"), PARAMS)
def test_speed(benchmark, size: tuple[int, int], scale: int, impl: str) -> None:
    weights, lr, upscaled, expected = case(size, scale)
    if impl in OURS:
        name, precision = OURS[impl]
        if impl == "reference" and size != SIZES[0]:
            pytest.skip(
                "the reference is timed at 256x256 only (it is the oracle, not a contender)"
            )
        backend = ours(impl, name, lambda: create_backend(name, weights, precision))
        holder = [backend.upscale_luma]
        plane = lr
        kind, gpu = "ours", name == "cuda"
    else:
        backend = None
        holder = [peer_runner(impl, weights, upscaled.shape)]
        plane = upscaled
        precision, gpu = PEERS[impl].precision, PEERS[impl].gpu
        kind = "gpu-peer" if gpu else "peer"

    def run() -> np.ndarray:
        return holder[0](plane)

    got = run()  # also the warm-up: compiles, allocates, builds plans
    diff = float(np.abs(got - expected).max())
    # cuDNN's float32 mode is TF32 (a 10-bit mantissa): held to the fp16 tolerance.
    atol = TOLERANCE["fp16" if impl in PEERS and gpu else precision]
    assert diff <= atol, (
        f"{impl} {size} x{scale}: max |diff| {diff:.3g} vs the reference (tolerance {atol:g})"
    )
    benchmark.group = f"{size[0]}x{size[1]} x{scale}"
    benchmark.extra_info.update(
        impl=impl,
        kind=kind,
        gpu=gpu,
        precision=precision,
        pixels=int(expected.size),
        max_diff=diff,
    )
    # An int8 peer's calibration: how long it took (once per weights and scale), on what.
    benchmark.extra_info.update(getattr(holder[0], "info", {}))
    if hasattr(backend, "last_work"):  # the CPU kernel's sparse blocks
        benchmark.extra_info["work"] = dict(backend.last_work)
    del got
    rounds = rounds_for(run)
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    holder.clear()  # the benchmark session keeps `run`; drop the engine it points to
    gc.collect()
