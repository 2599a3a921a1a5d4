"""Speed of our backends against peers, in one run, per LR size and scale.

Our backends start from the LR luma plane (bicubic included); peers get the already-upscaled
plane. Every implementation's output is checked against the NumPy reference (float32 max-abs
1e-4) before it is timed; a peer that is not installed is skipped with the reason.

The GPU group (4K output, marked ``cuda``: ``pytest bench -m cuda``) times our CUDA backend
against cuDNN in NCHW and NHWC layouts, in float32 (TF32 for cuDNN) and in float16 (tensor cores
for both); the fp16 results form groups of their own, so their ratios compare fp16 with fp16.
"""

from __future__ import annotations

import functools
import gc

import numpy as np
import pytest
from conftest import make_lr_plane
from peers import FP16_PEERS, GPU_PEERS, PEERS

from srcnn_fast import imageops
from srcnn_fast.backends import available_backends, create_backend
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
    "reference": ("reference", "fp32"),
    "cuda-fp16": ("cuda", "fp16"),
}
#: float16 implementations: timed in the GPU group only.
FP16 = {"cuda-fp16", *FP16_PEERS}
ATOL = 1e-4
#: cuDNN peers run with TF32 (10-bit mantissa, its fastest mode for float32 data), the fp16 ones
#: and our fp16 mode round operands to float16 (10-bit mantissa too): their outputs are ~1e-3 off
#: the float32 reference, so they are checked at 5e-3.
GPU_PEER_ATOL = 5e-3
CASES = [
    (size, scale, impl)
    for size in SIZES
    for scale in SCALES
    for impl in [*OURS, *PEERS]
    if impl not in FP16
]
GPU_CASES = [
    (size, 2, impl) for size in GPU_SIZES for impl in ["cuda", "cuda-fp16", *sorted(GPU_PEERS)]
]
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


def peer(impl: str, weights: SRCNNWeights):
    """A fresh runner per test: engines keep arenas sized by their largest run, and a 5120x2880
    output needs ~10 GB of feature maps, so no runner may outlive its test."""
    module, factory = PEERS[impl]
    pytest.importorskip(module, reason=f"{impl} is not installed")
    try:
        return factory(weights)
    except Exception as exc:  # an engine that cannot express the network is skipped, not hidden
        pytest.skip(f"{impl} cannot run this network: {type(exc).__name__}: {exc}"[:300])


@pytest.mark.parametrize(("size", "scale", "impl"), PARAMS)
def test_speed(benchmark, size: tuple[int, int], scale: int, impl: str) -> None:
    weights, lr, upscaled, expected = case(size, scale)
    if impl in OURS:
        name, precision = OURS[impl]
        reason = available_backends().get(name, f"this version has no {name} backend")
        if reason:
            pytest.skip(f"backend {name} unavailable: {reason}")
        if impl == "reference" and size != SIZES[0]:
            pytest.skip(
                "the reference is timed at 256x256 only (it is the oracle, not a contender)"
            )
        backend = create_backend(name, weights, precision)
        holder = [backend.upscale_luma]
        plane = lr
        kind, gpu = "ours", name == "cuda"
    else:
        backend = None
        holder = [peer(impl, weights)]
        plane = upscaled
        gpu = impl in GPU_PEERS
        kind = "gpu-peer" if gpu else "peer"

    def run() -> np.ndarray:
        return holder[0](plane)

    got = run()  # also the warm-up: compiles, allocates, builds plans
    diff = float(np.abs(got - expected).max())
    atol = GPU_PEER_ATOL if impl in GPU_PEERS | FP16 else ATOL
    assert diff <= atol, f"{impl} {size} x{scale}: max |diff| {diff:.3g} vs the reference"
    benchmark.group = f"{size[0]}x{size[1]} x{scale}" + (" fp16" if impl in FP16 else "")
    benchmark.extra_info.update(
        impl=impl, kind=kind, gpu=gpu, pixels=int(expected.size), max_diff=diff
    )
    if hasattr(backend, "last_work"):  # the CPU kernel's sparse blocks
        benchmark.extra_info["work"] = dict(backend.last_work)
    rounds = max(3, min(10, int(2e7 / expected.size)))
    del got
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    holder.clear()  # the benchmark session keeps `run`; drop the engine it points to
    gc.collect()
