"""The host's shared memory per block and each fused kernel's layout cannot drift apart.

The host computes the dynamic shared memory of a block (to pick the tile) and passes it as
``-DSRCNN_SMEM_BYTES``; each kernel static_asserts it equals its layout's size. Agreement is
tested by every compile of the backend's own options (the compile gate, the CPU harness); this
file checks that the assertion has teeth: NVRTC refuses a number 4 bytes off.
"""

from __future__ import annotations

import pytest

from srcnn_fast.backends.cuda import compile_options, network_kernel
from srcnn_fast.model import Architecture, SRCNNWeights

pytest.importorskip("cupy", reason="CuPy (the dev extra) provides the NVRTC bindings")
from cupy.cuda import nvrtc  # after the skip: CuPy may be absent


def _nvrtc_log(source, options: tuple[str, ...]) -> tuple[bool, str]:
    headers = sorted(source.parent.glob("*.cuh"))
    try:
        program = nvrtc.createProgram(
            source.read_text(),
            source.name,
            [h.read_bytes() for h in headers],
            [h.name.encode() for h in headers],
        )
    except Exception as exc:  # no NVRTC library: the one thing that may skip this test
        pytest.skip(f"NVRTC library not loadable: {exc}")
    try:
        # PTX only (a virtual architecture): the static_assert fires in the front end.
        nvrtc.compileProgram(program, [*compile_options(source, options), "-arch=compute_80"])
        ok = True
    except nvrtc.NVRTCError:
        ok = False
    log = nvrtc.getProgramLog(program)
    nvrtc.destroyProgram(program)
    return ok, log


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("arch", [Architecture(), Architecture(f1=5, n1=24, n2=12, f3=3)])
def test_a_shared_memory_size_the_kernel_does_not_lay_out_fails_to_compile(
    precision: str, arch: Architecture
) -> None:
    kernel = network_kernel(SRCNNWeights.random(arch, scale=3), 64 * 1024, precision)
    define = f"-DSRCNN_SMEM_BYTES={kernel.shared_bytes}"
    assert define in kernel.options  # the host passes what it launches with
    wrong = tuple(
        f"-DSRCNN_SMEM_BYTES={kernel.shared_bytes + 4}" if o == define else o
        for o in kernel.options
    )
    ok, log = _nvrtc_log(kernel.source, wrong)
    assert not ok and "SRCNN_SMEM_BYTES" in log and "static assertion" in log, log
