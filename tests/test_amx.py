"""srcnn_fast.backends.amx and tools/isa_peaks.py on any machine: the run-time check refuses
where it must, the tile configuration's bytes, the intrinsics compile to AMX instructions
(without running them), and, only where ``amx_problem`` allows it, tile multiply-adds against
NumPy. Then isa_peaks in its quick mode prints a line per path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest
from numba import njit, prange, types
from numba.core.errors import TypingError

from srcnn_fast.backends import amx
from srcnn_fast.backends.amx import (
    amx_problem,
    tile_config,
    tile_dpbf16ps,
    tile_dpbssd,
    tile_dpbusd,
    tile_load,
    tile_loadconfig,
    tile_release,
    tile_store,
    tile_zero,
    vnni_pack,
)

REPO = Path(__file__).resolve().parents[1]
HOST = dict(llvm.get_host_cpu_features())
KINDS = ("bf16", "int8")


def _needs_amx(kind: str) -> None:
    problem = amx_problem(kind)
    if problem is not None:
        pytest.skip(f"AMX {kind} not usable here: {problem}")


# ---- the run-time check ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_disabled_by_environment(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(amx.DISABLE_ENV, "1")
    assert amx_problem(kind) == "AMX disabled by SRCNN_FAST_NO_AMX"
    monkeypatch.setenv(amx.DISABLE_ENV, "0")  # 0 and empty: not disabled
    assert amx_problem(kind) != "AMX disabled by SRCNN_FAST_NO_AMX"


@pytest.mark.parametrize("kind", KINDS)
def test_refused_on_a_cpu_without_amx(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(amx.DISABLE_ENV, raising=False)
    feature = {"bf16": "amx-bf16", "int8": "amx-int8"}[kind]
    problem = amx_problem(kind)
    if HOST.get("amx-tile") and HOST.get(feature):
        assert problem is None or "kernel" in problem or "Linux" in problem
    else:
        assert isinstance(problem, str) and "\n" not in problem
        assert "this CPU lacks" in problem and "AMX" in problem


def test_reasons_name_the_missing_instruction_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(amx.DISABLE_ENV, raising=False)
    tile_only = {"amx-tile": True, "amx-bf16": True, "amx-int8": False}
    monkeypatch.setattr(amx.llvm, "get_host_cpu_features", lambda: tile_only)
    assert amx_problem("int8") == (
        "AMX int8 needs the AMX-INT8 instruction set (tdpbusd), which this CPU lacks"
    )
    monkeypatch.setattr(amx.llvm, "get_host_cpu_features", lambda: {"amx-bf16": True})
    assert "AMX-TILE" in amx_problem("bf16")


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="bf16"):
        amx_problem("fp16")


# ---- NumPy helpers ---------------------------------------------------------------------------


def test_tile_config_bytes() -> None:
    block = tile_config([(16, 64), None, (8, 32), (1, 4)])
    assert block.dtype == np.uint8 and block.shape == (64,)
    expected = bytearray(64)
    expected[0] = 1  # palette 1
    expected[16:18] = (64).to_bytes(2, "little")
    expected[20:22] = (32).to_bytes(2, "little")
    expected[22:24] = (4).to_bytes(2, "little")
    expected[48], expected[50], expected[51] = 16, 8, 1
    assert block.tobytes() == bytes(expected)
    assert tile_config([(16, 64)] * 8)[48:56].tolist() == [16] * 8


@pytest.mark.parametrize("shapes", [[(17, 64)], [(16, 68)], [(16, 6)], [(0, 64)], [(16, 64)] * 9])
def test_tile_config_rejects(shapes) -> None:
    with pytest.raises(ValueError):
        tile_config(shapes)


def test_vnni_pack() -> None:
    b = np.arange(8 * 3).reshape(8, 3)
    packed = vnni_pack(b, 4)
    assert packed.shape == (2, 12)
    assert packed[1].tolist() == [12, 15, 18, 21, 13, 16, 19, 22, 14, 17, 20, 23]
    assert vnni_pack(b, 2)[0].tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ValueError):
        vnni_pack(b[:6], 4)


# ---- the intrinsics: compile only --------------------------------------------------------------


def _every_intrinsic(config_bytes, a, b, c, n):
    tile_loadconfig(config_bytes)
    tile_zero(0)
    tile_load(1, a, 0, 64)
    tile_load(2, b, n, 64)
    for _ in range(n):
        tile_dpbf16ps(0, 1, 2)
        tile_dpbusd(3, 1, 2)
        tile_dpbssd(4, 1, 2)
    tile_store(0, c, 0, 64)
    tile_release()


BYTES = types.uint8[::1]


def test_intrinsics_compile_to_amx_instructions() -> None:
    """Compiled (never run): the AMX mnemonics on fixed tile registers, and the function marked
    with the AMX target features (without them LLVM cannot select the instructions)."""
    kernel = njit(_every_intrinsic)
    signature = (BYTES, types.uint16[::1], BYTES, types.float32[::1], types.intp)
    kernel.compile(signature)
    asm = kernel.inspect_asm(signature)
    for line in (
        "ldtilecfg",
        "tilezero\t%tmm0",
        "tileloadd\t",
        "tdpbf16ps\t%tmm2, %tmm1, %tmm0",
        "tdpbusd\t%tmm2, %tmm1, %tmm3",
        "tdpbssd\t%tmm2, %tmm1, %tmm4",
        "tilestored\t%tmm0",
        "tilerelease",
    ):
        assert line in asm, line
    assert "+amx-tile,+amx-bf16,+amx-int8" in kernel.inspect_llvm(signature)


def test_intrinsics_compile_in_a_prange_body() -> None:
    signature = (BYTES, types.uint16[::1], types.uint16[::1], types.float32[::1], types.intp)
    _parallel_blocks.compile(signature)  # the body (a gufunc) is marked too, or LLVM aborts


def test_tile_numbers_must_be_literals() -> None:
    @njit
    def variable_tile(t):
        tile_zero(t)

    with pytest.raises(TypingError):
        variable_tile.compile((types.intp,))

    @njit
    def same_tiles():
        tile_dpbf16ps(1, 1, 2)

    with pytest.raises(TypingError, match="must differ"):
        same_tiles.compile(())

    @njit
    def tile_eight():
        tile_zero(8)

    with pytest.raises(TypingError, match=r"0\.\.7"):
        tile_eight.compile(())


# ---- execution: only where this CPU and OS allow it ---------------------------------------------


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """x rounded to bfloat16 (to nearest even), as uint16 bits."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + (bits >> 16 & 1)) >> 16).astype(np.uint16)


def _bf16_values(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


@njit
def _bf16_block(config_bytes, a, b, c):
    tile_loadconfig(config_bytes)
    tile_zero(0)
    tile_load(1, a, 0, 64)
    tile_load(2, b, 0, 64)
    tile_dpbf16ps(0, 1, 2)
    tile_store(0, c, 0, 64)
    tile_release()


@njit
def _int8_block(config_bytes, a, b, c):
    tile_loadconfig(config_bytes)
    tile_zero(0)
    tile_load(1, a, 0, 64)
    tile_load(2, b, 0, 64)
    tile_dpbusd(0, 1, 2)
    tile_store(0, c, 0, 64)
    tile_release()


@njit(parallel=True)
def _parallel_blocks(config_bytes, a, b, c, blocks):
    for i in prange(blocks):
        tile_loadconfig(config_bytes)  # per thread
        tile_zero(0)
        tile_load(1, a, i * 512, 64)
        tile_load(2, b, i * 512, 64)
        tile_dpbf16ps(0, 1, 2)
        tile_store(0, c, i * 256, 64)
        tile_release()


CONFIG = tile_config([(16, 64)] * 3)


def test_tdpbf16ps_16x16x32_matches_numpy() -> None:
    _needs_amx("bf16")
    rng = np.random.default_rng(1)
    a = _bf16_bits(rng.uniform(-1, 1, (16, 32)))
    b = _bf16_bits(rng.uniform(-1, 1, (32, 16)))
    c = np.zeros(256, np.float32)
    _bf16_block(CONFIG, a.ravel(), vnni_pack(b, 2).ravel(), c)
    expected = _bf16_values(a) @ _bf16_values(b)
    np.testing.assert_allclose(c.reshape(16, 16), expected, rtol=1e-5, atol=1e-5)


def test_tdpbusd_16x16x64_matches_numpy() -> None:
    _needs_amx("int8")
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (16, 64), dtype=np.uint8)
    b = rng.integers(-128, 128, (64, 16), dtype=np.int8)
    c = np.zeros(256, np.int32)
    _int8_block(CONFIG, a.ravel(), vnni_pack(b, 4).ravel(), c)
    np.testing.assert_array_equal(c.reshape(16, 16), a.astype(np.int32) @ b.astype(np.int32))


def test_tdpbf16ps_in_prange_threads_matches_numpy() -> None:
    _needs_amx("bf16")
    rng = np.random.default_rng(3)
    blocks = 64
    a = _bf16_bits(rng.uniform(-1, 1, (blocks, 16, 32)))
    b = _bf16_bits(rng.uniform(-1, 1, (blocks, 32, 16)))
    packed = np.stack([vnni_pack(block, 2) for block in b])
    c = np.zeros(blocks * 256, np.float32)
    _parallel_blocks(CONFIG, a.ravel(), packed.ravel(), c, blocks)
    expected = _bf16_values(a) @ _bf16_values(b)
    np.testing.assert_allclose(c.reshape(blocks, 16, 16), expected, rtol=1e-5, atol=1e-5)


# ---- tools/isa_peaks.py -----------------------------------------------------------------------

LABELS = ("fp32 FMA", "bf16 dot", "int8 dot", "AMX bf16", "AMX int8")


def _isa_peaks(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "isa_peaks.py"), "--quick", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_isa_peaks_quick_prints_every_path() -> None:
    lines = _isa_peaks().splitlines()
    assert lines[0].startswith("CPU: ")
    for label in LABELS:
        (line,) = [line for line in lines if line.startswith(label)]
        fields = line.split()
        assert "refused: " in line or float(fields[-3]) > 0, line
    if not HOST.get("amx-tile"):
        assert "refused: AMX" in lines[-1] and "refused: AMX" in lines[-2]


def test_isa_peaks_json_with_amx_disabled() -> None:
    result = json.loads(_isa_peaks("--json", env={amx.DISABLE_ENV: "1"}))
    paths = {row["path"]: row for row in result["paths"]}
    assert list(paths) == ["fp32", "bf16", "int8", "amx_bf16", "amx_int8"]
    assert (
        paths["amx_bf16"]["refused"]
        == paths["amx_int8"]["refused"]
        == ("AMX disabled by SRCNN_FAST_NO_AMX")
    )
    assert paths["fp32"]["macs_per_instruction"] in (8, 16)
    assert paths["amx_int8"]["macs_per_instruction"] == 16 * 16 * 64
    if HOST.get("avx512f"):
        assert paths["fp32"]["best_gmacs"] > 0 and paths["fp32"]["ratio_to_fp32"] == 1.0
    if HOST.get("avx512vnni") and paths["int8"]["refused"] is None:
        assert paths["int8"]["macs_per_instruction"] == 64 and paths["int8"]["best_gmacs"] > 0
