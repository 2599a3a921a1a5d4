"""Intel AMX (Advanced Matrix Extensions) from Numba: the run-time check and the tile intrinsics.

AMX adds eight tile registers ``tmm0`` ... ``tmm7`` (up to 16 rows of 64 bytes each) and
matrix multiply-adds between them: ``tdpbf16ps`` (bf16 pairs, float32 accumulators: 16x16x32
= 8192 multiply-adds per instruction) and ``tdpbusd`` / ``tdpbssd`` (uint8 or int8 by int8
quads, int32 accumulators: 16x16x64 = 16384). ``C[m, n] += sum_k A[m, k] * B[k, n]`` where A is
row-major and B is *VNNI-packed* along K: row ``k // g`` of the B tile holds, for each n, the
``g`` consecutive K values ``B[k:k + g, n]`` (``g`` = 2 for bf16, 4 for int8; :func:`vnni_pack`).

Run time (:func:`amx_problem`): the CPU must have the instruction sets and Linux must grant
this process the tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``, requested
once per process). **A tile instruction without that permission kills the process**, and one on
a CPU without AMX is SIGILL: nothing may *run* a function that uses these intrinsics unless
``amx_problem(kind)`` returned None. Compiling them is safe on any x86-64 CPU.

Compile time: LLVM selects AMX instructions only in a function whose target features include
AMX; for the host CPU's features (Numba's target machine) it stops the whole process with
"LLVM ERROR: Cannot select: intrinsic %llvm.x86.tdpbf16ps". So each intrinsic here marks the
function that uses it with ``"target-features"`` = Numba's host features plus
``+amx-tile,+amx-bf16,+amx-int8`` (per-function features; LLVM will not inline such a function
into one without them). The intrinsics are LLVM's fixed-register ones: tile numbers are
compile-time constants, so they must be integer *literals* in the calling code.

The tile configuration (:func:`tile_config`, loaded by :func:`tile_loadconfig`) is per thread:
every thread (every ``prange`` body) runs ``tile_loadconfig`` before its first tile
instruction, and ``tile_release`` when done. Loads and stores take a 1-D NumPy array, an
element index (the tile's first byte is at ``array[index]``) and the row stride in *bytes*;
bounds are the caller's job, as in C.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from collections.abc import Sequence

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.errors import TypingError
from numba.extending import intrinsic

#: Setting this to 1 makes :func:`amx_problem` refuse (to test the fallbacks on an AMX machine).
DISABLE_ENV = "SRCNN_FAST_NO_AMX"
#: Tile registers; rows and bytes per row of one tile at most.
TILES = 8
MAX_ROWS = 16
MAX_ROW_BYTES = 64
#: Multiply-adds of one full-size tdpbf16ps (16x16x32) and tdpbusd (16x16x64).
MACS = {"bf16": 16 * 16 * 32, "int8": 16 * 16 * 64}

_INSTRUCTION_SET = {
    "bf16": ("amx-bf16", "AMX-BF16", "tdpbf16ps"),
    "int8": ("amx-int8", "AMX-INT8", "tdpbusd"),
}

# Linux x86-64: arch_prctl and its AMX requests (arch/x86/include/uapi/asm/prctl.h).
_SYS_ARCH_PRCTL = 158
_ARCH_GET_XCOMP_SUPP = 0x1021
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def amx_problem(kind: str) -> str | None:
    """None if this CPU and OS run AMX ``kind`` ("bf16": ``tdpbf16ps``; "int8": ``tdpbusd``,
    ``tdpbssd``) in this process, else why not (one line). The first call that gets this far
    asks Linux for the tile state (once per process)."""
    if kind not in _INSTRUCTION_SET:
        raise ValueError(f"AMX kind must be 'bf16' or 'int8', not {kind!r}")
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0"):
        return f"AMX disabled by {DISABLE_ENV}"
    feature, name, mnemonic = _INSTRUCTION_SET[kind]
    features = llvm.get_host_cpu_features()
    if not features.get("amx-tile"):
        return (
            f"AMX {kind} needs the AMX-TILE instruction set (tile registers), which this CPU lacks"
        )
    if not features.get(feature):
        return f"AMX {kind} needs the {name} instruction set ({mnemonic}), which this CPU lacks"
    return _os_problem()


@functools.lru_cache(maxsize=1)
def _os_problem() -> str | None:
    """None once Linux has granted this process the AMX tile state, else why not."""
    if not sys.platform.startswith("linux"):
        return f"AMX is only enabled on Linux (it needs arch_prctl); this is {sys.platform}"
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"AMX needs an x86-64 Linux process; this one is {machine}"
    libc = ctypes.CDLL(None, use_errno=True)
    supported = ctypes.c_uint64(0)
    if libc.syscall(
        ctypes.c_long(_SYS_ARCH_PRCTL),
        ctypes.c_long(_ARCH_GET_XCOMP_SUPP),
        ctypes.byref(supported),
    ):
        errno = ctypes.get_errno()
        return (
            "the Linux kernel does not support AMX (arch_prctl ARCH_GET_XCOMP_SUPP failed: "
            f"{os.strerror(errno)}; AMX needs Linux 5.16 or newer)"
        )
    if not supported.value >> _XFEATURE_XTILEDATA & 1:
        return (
            "the Linux kernel does not offer the AMX tile state "
            f"(ARCH_GET_XCOMP_SUPP bit {_XFEATURE_XTILEDATA} clear)"
        )
    if libc.syscall(
        ctypes.c_long(_SYS_ARCH_PRCTL),
        ctypes.c_long(_ARCH_REQ_XCOMP_PERM),
        ctypes.c_long(_XFEATURE_XTILEDATA),
    ):
        errno = ctypes.get_errno()
        return (
            "the Linux kernel refused this process the AMX tile state "
            f"(ARCH_REQ_XCOMP_PERM: {os.strerror(errno)})"
        )
    return None


def tile_config(shapes: Sequence[tuple[int, int] | None]) -> np.ndarray:
    """The 64-byte block :func:`tile_loadconfig` loads: palette 1, and tile ``i`` of ``shapes[i]``
    = (rows, bytes per row) (None or missing: unused). Bytes per row at offset 16 (uint16 x 16,
    little-endian), rows at offset 48 (uint8 x 16); the rest zero."""
    if len(shapes) > TILES:
        raise ValueError(f"AMX has {TILES} tiles, not {len(shapes)}")
    config_bytes = np.zeros(64, np.uint8)
    config_bytes[0] = 1  # palette 1; byte 1: start_row = 0
    row_bytes = np.zeros(16, "<u2")
    rows = np.zeros(16, np.uint8)
    for tile, shape in enumerate(shapes):
        if shape is None:
            continue
        n_rows, n_bytes = (int(v) for v in shape)
        if not (0 < n_rows <= MAX_ROWS and 0 < n_bytes <= MAX_ROW_BYTES and n_bytes % 4 == 0):
            raise ValueError(
                f"tile {tile}: {n_rows} rows of {n_bytes} bytes (1..{MAX_ROWS} rows of "
                f"4..{MAX_ROW_BYTES} bytes, a multiple of 4)"
            )
        row_bytes[tile] = n_bytes
        rows[tile] = n_rows
    config_bytes[16:48] = row_bytes.view(np.uint8)
    config_bytes[48:64] = rows
    return config_bytes


def vnni_pack(b: np.ndarray, group: int) -> np.ndarray:
    """B (K x N) in the layout a B tile wants: (K // group) x (N * group), row ``r`` holding
    ``b[r * group : (r + 1) * group, n]`` for n = 0, 1, ... (``group`` = 2 for bf16 (as uint16
    bits), 4 for int8/uint8). K must be a multiple of ``group``."""
    k, n = b.shape
    if k % group:
        raise ValueError(f"K = {k} is not a multiple of {group}")
    return np.ascontiguousarray(
        b.reshape(k // group, group, n).transpose(0, 2, 1).reshape(k // group, n * group)
    )


# ---- Numba intrinsics ----------------------------------------------------------------------

_VOID = ir.VoidType()
_I8 = ir.IntType(8)
_I64 = ir.IntType(64)
_BYTES = _I8.as_pointer()
_AMX_FEATURES = "+amx-tile,+amx-bf16,+amx-int8"


def _allow_amx(function: ir.Function) -> None:
    """Let LLVM select AMX instructions in ``function`` (see the module docstring)."""
    host = config.CPU_FEATURES
    if host is None:
        from numba.core.codegen import get_host_cpu_features

        host = get_host_cpu_features()
    features = f"{host},{_AMX_FEATURES}" if host else _AMX_FEATURES
    # llvmlite's FunctionAttributes takes known enum attributes only; a "key"="value" string
    # attribute is written into the IR as given.
    set.add(function.attributes, f'"target-features"="{features}"')


def _call(builder, name: str, arg_types: list[ir.Type], args: list[ir.Value]) -> None:
    _allow_amx(builder.function)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_VOID, arg_types), f"llvm.x86.{name}"
    )
    builder.call(fn, args)


def _tile_numbers(name: str, *tiles) -> list[int] | None:
    """The tile numbers (Python ints) of literal arguments; None where one is not a literal
    (Numba then retries, and reports a typing error)."""
    if not all(isinstance(t, types.IntegerLiteral) for t in tiles):
        return None
    numbers = [int(t.literal_value) for t in tiles]
    if not all(0 <= n < TILES for n in numbers):
        raise TypingError(f"{name}: tile numbers are 0..{TILES - 1}, not {numbers}")
    return numbers


def _byte_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _BYTES)


def _check_array(name: str, array) -> None:
    if not (isinstance(array, types.Array) and array.ndim == 1):
        raise TypingError(f"{name}: wants a 1-D array, not {array}")


@intrinsic
def tile_loadconfig(typingctx, config_bytes):
    """``ldtilecfg``: load the tile configuration (a :func:`tile_config` array) in this thread."""
    _check_array("tile_loadconfig", config_bytes)

    def codegen(context, builder, sig, args):
        zero = context.get_constant(types.intp, 0)
        pointer = _byte_pointer(context, builder, sig.args[0], args[0], zero)
        _call(builder, "ldtilecfg", [_BYTES], [pointer])
        return context.get_dummy_value()

    return types.void(config_bytes), codegen


@intrinsic
def tile_release(typingctx):
    """``tilerelease``: back to the initial state (no configuration) in this thread."""

    def codegen(context, builder, sig, args):
        _call(builder, "tilerelease", [], [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic(prefer_literal=True)
def tile_zero(typingctx, tile):
    """``tilezero``: tile ``tile`` (a literal 0..7) all zero."""
    numbers = _tile_numbers("tile_zero", tile)
    if numbers is None:
        return None

    def codegen(context, builder, sig, args):
        _call(builder, "tilezero", [_I8], [_I8(numbers[0])])
        return context.get_dummy_value()

    return types.void(tile), codegen


def _load_store(name: str, llvm_name: str):
    def typer(typingctx, tile, array, index, stride):
        numbers = _tile_numbers(name, tile)
        if numbers is None:
            return None
        _check_array(name, array)

        def codegen(context, builder, sig, args):
            pointer = _byte_pointer(context, builder, sig.args[1], args[1], args[2])
            stride_value = builder.sext(args[3], _I64) if args[3].type != _I64 else args[3]
            _call(
                builder,
                llvm_name,
                [_I8, _BYTES, _I64],
                [_I8(numbers[0]), pointer, stride_value],
            )
            return context.get_dummy_value()

        return types.void(tile, array, types.intp, types.intp), codegen

    typer.__name__ = name
    return intrinsic(prefer_literal=True)(typer)


#: ``tileloadd``: ``tile_load(tile, array, index, stride)`` loads tile ``tile`` (a literal) from
#: the rows at ``array[index]`` + ``r * stride`` bytes (shape from the loaded configuration).
tile_load = _load_store("tile_load", "tileloadd64")
#: ``tilestored``: ``tile_store(tile, array, index, stride)``, the inverse of :data:`tile_load`.
tile_store = _load_store("tile_store", "tilestored64")


def _dot(name: str, llvm_name: str):
    def typer(typingctx, c, a, b):
        numbers = _tile_numbers(name, c, a, b)
        if numbers is None:
            return None
        if len(set(numbers)) != 3:
            raise TypingError(f"{name}: the three tiles must differ, not {numbers}")

        def codegen(context, builder, sig, args):
            _call(builder, llvm_name, [_I8] * 3, [_I8(n) for n in numbers])
            return context.get_dummy_value()

        return types.void(c, a, b), codegen

    typer.__name__ = name
    return intrinsic(prefer_literal=True)(typer)


#: ``tdpbf16ps``: ``tile_dpbf16ps(c, a, b)``: tile c (float32) += tile a (bf16) @ tile b (bf16,
#: VNNI pairs); 16x16x32 at full size. Literal tile numbers, all different.
tile_dpbf16ps = _dot("tile_dpbf16ps", "tdpbf16ps")
#: ``tdpbusd``: ``tile_dpbusd(c, a, b)``: tile c (int32) += tile a (uint8) @ tile b (int8, VNNI
#: quads); 16x16x64 at full size.
tile_dpbusd = _dot("tile_dpbusd", "tdpbusd")
#: ``tdpbssd``: as :data:`tile_dpbusd` with a signed (int8) A.
tile_dpbssd = _dot("tile_dpbssd", "tdpbssd")
