"""Per-core peak multiply-add rate of each arithmetic path on this CPU (issue 28, item 1).

    python tools/isa_peaks.py [--rounds 15] [--seconds 0.1] [--quick] [--json]

Five paths, each a tight single-thread loop of one instruction (GMAC/s = multiply-adds per
second / 1e9):

* fp32 FMA, ``vfmadd231ps`` on zmm (ymm without AVX-512): 16 (8) multiply-adds;
* bf16, ``vdpbf16ps`` zmm (AVX512_BF16): 32;
* int8, ``vpdpbusd`` zmm (AVX512_VNNI; 256-bit AVX-VNNI ``{vex} vpdpbusd`` ymm where only that
  exists): 64 (32);
* AMX ``tdpbf16ps``, 16x16x32: 8192; AMX ``tdpbusd``, 16x16x64: 16384.

The SIMD loops keep 12 independent accumulators in registers (written as LLVM IR, so nothing
can merge or reorder them), start them from memory and store them at the end, and take the
trip count as a run-time argument; the AMX loops run 4 tile accumulators (tmm0-3) fed from
four tiles loaded once (tmm4-7). The script checks the assembly of each loop for the
instruction and its register width before timing it. A path this CPU (or OS, for AMX) lacks
is never compiled or run (it would be SIGILL, or for AMX without the kernel's permission,
the end of the process): its line says ``refused: <reason>``. Rounds are interleaved across the
paths; the best and median of the rounds are printed, and the best's ratio to fp32's best.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from srcnn_fast.backends.amx import (
    MACS,
    amx_problem,
    tile_config,
    tile_dpbf16ps,
    tile_dpbusd,
    tile_load,
    tile_loadconfig,
    tile_release,
    tile_store,
    tile_zero,
)

ACCUMULATORS = 12  # SIMD accumulators (registers) per loop
AMX_ACCUMULATORS = 4  # tile accumulators per AMX loop
VECTOR_BYTES = 64  # room for one operand or accumulator in the SIMD input buffer

_I64 = ir.IntType(64)


class _BFloat(ir.Type):
    """LLVM's ``bfloat`` (llvmlite.ir has none; only its name is needed)."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _BFloat)

    def __hash__(self) -> int:
        return hash("bfloat")


@dataclass
class Peak:
    """One arithmetic path: what it runs, and what it measured."""

    key: str
    label: str
    instruction: str  # mnemonic and register (or tile shape), for the table
    macs: int  # multiply-adds per instruction
    mnemonic: str = ""  # regular expression the loop's assembly must contain
    register: str = ""  # register class the SIMD instruction must use ("zmm", "ymm")
    refused: str | None = None
    run: Callable[[int], None] | None = None  # run(trip count)
    per_trip: int = 0  # instructions per loop trip
    asm_count: int = 0
    rates: list[float] = field(default_factory=list)  # GMAC/s per round


# ---- SIMD loops, written as LLVM IR ---------------------------------------------------------


def _simd_loop(acc_type: ir.Type, operand_type: ir.Type, step):
    """An intrinsic ``loop(n, src, out)``: 12 accumulators (``acc_type``, initial values from
    ``src`` after two operands x, y of ``operand_type``) each updated ``n`` times by
    ``step(builder, acc, x, y)``, then stored to ``out``."""

    @intrinsic
    def loop(typingctx, n, src, out):
        def codegen(context, builder, sig, args):
            trips, src_array, out_array = args
            src_bytes = context.make_array(sig.args[1])(context, builder, src_array).data
            out_bytes = context.make_array(sig.args[2])(context, builder, out_array).data

            def at(base, offset: int, typ: ir.Type):
                pointer = builder.gep(base, [_I64(offset)])
                return builder.bitcast(pointer, typ.as_pointer())

            x = builder.load(at(src_bytes, 0, operand_type), align=1)
            y = builder.load(at(src_bytes, VECTOR_BYTES, operand_type), align=1)
            initial = [
                builder.load(at(src_bytes, (2 + i) * VECTOR_BYTES, acc_type), align=1)
                for i in range(ACCUMULATORS)
            ]
            entry = builder.block
            body = builder.append_basic_block("peak.body")
            done = builder.append_basic_block("peak.done")
            builder.cbranch(builder.icmp_signed(">", trips, _I64(0)), body, done)

            builder.position_at_end(body)
            counter = builder.phi(_I64)
            accs = [builder.phi(acc_type) for _ in range(ACCUMULATORS)]
            updated = [step(builder, acc, x, y) for acc in accs]
            next_counter = builder.add(counter, _I64(1))
            counter.add_incoming(_I64(0), entry)
            counter.add_incoming(next_counter, body)
            for acc, start, new in zip(accs, initial, updated, strict=True):
                acc.add_incoming(start, entry)
                acc.add_incoming(new, body)
            builder.cbranch(builder.icmp_signed("<", next_counter, trips), body, done)

            builder.position_at_end(done)
            finals = []
            for start, new in zip(initial, updated, strict=True):
                finals.append(builder.phi(acc_type))
                finals[-1].add_incoming(start, entry)
                finals[-1].add_incoming(new, body)
            for i, final in enumerate(finals):
                builder.store(final, at(out_bytes, i * VECTOR_BYTES, acc_type), align=1)
            return context.get_dummy_value()

        return types.void(types.int64, src, out), codegen

    return loop


def _llvm_call(name: str, result: ir.Type, arg_types: list[ir.Type]):
    def call(builder, *args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(result, arg_types), name
        )
        return builder.call(fn, list(args))

    return call


def _fp32_step(width: int):
    vec = ir.VectorType(ir.FloatType(), width)
    fma = _llvm_call(f"llvm.fma.v{width}f32", vec, [vec] * 3)
    return vec, vec, lambda builder, acc, x, y: fma(builder, x, y, acc)


def _bf16_step():
    acc = ir.VectorType(ir.FloatType(), 16)
    pairs = ir.VectorType(_BFloat(), 32)
    dot = _llvm_call("llvm.x86.avx512bf16.dpbf16ps.512", acc, [acc, pairs, pairs])
    return acc, pairs, lambda builder, a, x, y: dot(builder, a, x, y)


def _int8_step(width: int):
    # One intrinsic for both: LLVM picks the EVEX form (AVX512_VNNI) or, on a CPU with
    # AVX-VNNI and no AVX512_VL, the VEX form ("{vex} vpdpbusd") of the 256-bit one.
    acc = ir.VectorType(ir.IntType(32), width)
    quads = ir.VectorType(ir.IntType(8), 4 * width)
    dot = _llvm_call(f"llvm.x86.avx512.vpdpbusd.{32 * width}", acc, [acc, quads, quads])
    return acc, quads, lambda builder, a, x, y: dot(builder, a, x, y)


def _simd_kernel(acc_type, operand_type, step):
    loop = _simd_loop(acc_type, operand_type, step)

    @njit(nogil=True)
    def kernel(n, src, out):
        loop(n, src, out)

    kernel.compile((types.int64, types.uint8[::1], types.uint8[::1]))
    return kernel


def _simd_buffers(key: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Operands and initial accumulators: small normal floats (no overflow, no subnormals in a
    long run), bf16 operands as the top halves of float32 values, random bytes for int8."""
    count = (2 + ACCUMULATORS) * VECTOR_BYTES // 4
    if key == "int8":
        src = rng.integers(0, 256, 4 * count, dtype=np.uint8)
    else:
        values = rng.uniform(1e-3, 2e-3, count).astype(np.float32)
        if key == "bf16":  # both operands as bf16 pairs; accumulators float32
            bits = values.view(np.uint32)
            bits[: 2 * VECTOR_BYTES // 4] &= 0xFFFF0000
            bits[: 2 * VECTOR_BYTES // 4] |= bits[: 2 * VECTOR_BYTES // 4] >> 16
        src = values.view(np.uint8)
    return np.ascontiguousarray(src), np.zeros(ACCUMULATORS * VECTOR_BYTES, np.uint8)


# ---- AMX loops --------------------------------------------------------------------------------


@njit(nogil=True)
def _amx_bf16_loop(n, config_bytes, a, b, c):
    tile_loadconfig(config_bytes)
    tile_zero(0)
    tile_zero(1)
    tile_zero(2)
    tile_zero(3)
    tile_load(4, a, 0, 64)
    tile_load(5, a, 1024, 64)
    tile_load(6, b, 0, 64)
    tile_load(7, b, 1024, 64)
    for _ in range(n):
        tile_dpbf16ps(0, 4, 6)
        tile_dpbf16ps(1, 4, 7)
        tile_dpbf16ps(2, 5, 6)
        tile_dpbf16ps(3, 5, 7)
    tile_store(0, c, 0, 64)
    tile_store(1, c, 1024, 64)
    tile_store(2, c, 2048, 64)
    tile_store(3, c, 3072, 64)
    tile_release()


@njit(nogil=True)
def _amx_int8_loop(n, config_bytes, a, b, c):
    tile_loadconfig(config_bytes)
    tile_zero(0)
    tile_zero(1)
    tile_zero(2)
    tile_zero(3)
    tile_load(4, a, 0, 64)
    tile_load(5, a, 1024, 64)
    tile_load(6, b, 0, 64)
    tile_load(7, b, 1024, 64)
    for _ in range(n):
        tile_dpbusd(0, 4, 6)
        tile_dpbusd(1, 4, 7)
        tile_dpbusd(2, 5, 6)
        tile_dpbusd(3, 5, 7)
    tile_store(0, c, 0, 64)
    tile_store(1, c, 1024, 64)
    tile_store(2, c, 2048, 64)
    tile_store(3, c, 3072, 64)
    tile_release()


def _amx_runner(key: str, rng: np.random.Generator):
    kernel = _amx_bf16_loop if key == "bf16" else _amx_int8_loop
    signature = (
        types.int64,
        types.uint8[::1],
        types.uint8[::1],
        types.uint8[::1],
        types.uint8[::1],
    )
    kernel.compile(signature)
    config_bytes = tile_config([(16, 64)] * 8)
    if key == "bf16":  # bf16 bits of small normal values (high halves of float32)
        values = rng.uniform(1e-3, 2e-3, (2, 1024)).astype(np.float32)
        a, b = ((v.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8) for v in values)
    else:
        a = rng.integers(0, 256, 2048, dtype=np.uint8)
        b = rng.integers(0, 256, 2048, dtype=np.uint8)
    c = np.zeros(4096, np.uint8)

    def run(trips: int) -> None:
        kernel(trips, config_bytes, a, b, c)

    return kernel, signature, run


# ---- the paths ----------------------------------------------------------------------------------


def _paths(features: dict[str, bool], rng: np.random.Generator) -> list[Peak]:
    """The five paths, each compiled (and checked) or refused."""
    wide = bool(features.get("avx512f"))
    width = 16 if wide else 8
    reg = "zmm" if wide else "ymm"
    fp32 = Peak("fp32", "fp32 FMA", f"vfmadd231ps {reg}", width, r"vfmadd(132|213|231)ps", reg)
    if not (wide or (features.get("fma") and features.get("avx"))):
        fp32.refused = "fp32 FMA needs FMA3 with AVX (or AVX-512), which this CPU lacks"
    bf16 = Peak("bf16", "bf16 dot", "vdpbf16ps zmm", 32, r"vdpbf16ps", "zmm")
    if not features.get("avx512bf16"):
        bf16.refused = "vdpbf16ps needs AVX512_BF16, which this CPU lacks"
    if features.get("avx512vnni"):
        int8 = Peak("int8", "int8 dot", "vpdpbusd zmm", 64, r"vpdpbusd", "zmm")
    else:
        int8 = Peak("int8", "int8 dot", "{vex} vpdpbusd ymm", 32, r"vpdpbusd", "ymm")
        if not features.get("avxvnni"):
            int8.refused = "vpdpbusd needs AVX512_VNNI or AVX-VNNI, which this CPU lacks"
    simd_steps = {"fp32": lambda: _fp32_step(width), "bf16": _bf16_step}
    simd_steps["int8"] = lambda: _int8_step(16 if features.get("avx512vnni") else 8)
    for path in (fp32, bf16, int8):
        if path.refused:
            continue
        kernel = _simd_kernel(*simd_steps[path.key]())
        src, out = _simd_buffers(path.key, rng)
        path.run = lambda trips, kernel=kernel, src=src, out=out: kernel(trips, src, out)
        path.per_trip = ACCUMULATORS
        _check_asm(path, kernel.inspect_asm(kernel.signatures[0]))

    amx_paths = [
        Peak("amx_bf16", "AMX bf16", "tdpbf16ps 16x16x32", MACS["bf16"], r"tdpbf16ps"),
        Peak("amx_int8", "AMX int8", "tdpbusd 16x16x64", MACS["int8"], r"tdpbusd"),
    ]
    for path, kind in zip(amx_paths, ("bf16", "int8"), strict=True):
        path.refused = amx_problem(kind)
        if path.refused:
            continue
        kernel, signature, path.run = _amx_runner(kind, rng)
        path.per_trip = AMX_ACCUMULATORS
        _check_asm(path, kernel.inspect_asm(signature))
    return [fp32, bf16, int8, *amx_paths]


def _check_asm(path: Peak, asm: str) -> None:
    """The loop must hold the instruction (at least once per accumulator) on the right
    registers; otherwise the path is refused rather than mis-measured."""
    pattern = re.compile(rf"^\s*(\{{vex\}}\s*)?(?P<op>{path.mnemonic})\s+(?P<args>.*)$")
    hits = [m for m in map(pattern.match, asm.splitlines()) if m]
    path.asm_count = len(hits)
    wrong = [m.group(0).strip() for m in hits if path.register and path.register not in m["args"]]
    if len(hits) < path.per_trip or wrong:
        path.run = None
        path.refused = (
            f"the compiled loop has {len(hits)} {path.mnemonic} (wanted >= {path.per_trip}"
            + (f" on {path.register}; got {wrong[0]!r})" if wrong else ")")
        )
    elif hits:
        path.instruction = path.instruction.replace("vfmadd231ps", hits[0]["op"])


def _rate(path: Peak, trips: int) -> float:
    start = time.perf_counter()
    path.run(trips)
    seconds = time.perf_counter() - start
    return trips * path.per_trip * path.macs / seconds / 1e9


def _calibrate(path: Peak, seconds: float) -> int:
    """Trips for a round of about ``seconds``."""
    trips = 1000
    while True:
        start = time.perf_counter()
        path.run(trips)
        elapsed = time.perf_counter() - start
        if elapsed > 0.02 or trips > 1 << 40:
            return max(1, int(trips * seconds / elapsed))
        trips *= 8


def cpu_description(features: dict[str, bool]) -> dict[str, str]:
    info = {"model_name": platform.processor() or platform.machine(), "llvm_cpu": ""}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for key, name in (("model name", "model_name"), ("cpu family", "family"), ("model", "model")):
        match = re.search(rf"^{key}\s*:\s*(.*)$", text, re.MULTILINE)
        if match:
            info[name] = match.group(1).strip()
    info["llvm_cpu"] = llvm.get_host_cpu_name()
    return info


def measure(rounds: int, seconds: float, quick: bool) -> dict:
    features = dict(llvm.get_host_cpu_features())
    rng = np.random.default_rng(0)
    paths = _paths(features, rng)
    runnable = [p for p in paths if p.run is not None]
    trips = {}
    for path in runnable:
        path.run(10)  # first call: any lazy set-up
        trips[path.key] = (200 if path.key.startswith("amx") else 2000) if quick else None
        if trips[path.key] is None:
            trips[path.key] = _calibrate(path, seconds)
    for _ in range(rounds):  # interleaved, so that a noisy spell hits every path alike
        for path in runnable:
            path.rates.append(_rate(path, trips[path.key]))
    fp32_best = max(paths[0].rates) if paths[0].rates else None
    rows = []
    for path in paths:
        best = max(path.rates) if path.rates else None
        rows.append(
            {
                "path": path.key,
                "label": path.label,
                "instruction": path.instruction,
                "macs_per_instruction": path.macs,
                "best_gmacs": best,
                "median_gmacs": statistics.median(path.rates) if path.rates else None,
                "ratio_to_fp32": best / fp32_best if best and fp32_best else None,
                "rounds_gmacs": path.rates,
                "trips_per_round": trips.get(path.key),
                "asm_instructions": path.asm_count,
                "refused": path.refused,
            }
        )
    return {"cpu": cpu_description(features), "rounds": rounds, "threads": 1, "paths": rows}


def format_table(result: dict) -> str:
    cpu = result["cpu"]
    where = ", ".join(f"{k} {cpu[k]}" for k in ("family", "model") if k in cpu)
    lines = [
        f"CPU: {cpu['model_name']} ({where}; LLVM: {cpu['llvm_cpu']})",
        f"one thread, best and median of {result['rounds']} interleaved rounds, GMAC/s per core",
        f"{'path':<10} {'instruction':<20} {'MAC/instr':>9} "
        f"{'best':>8} {'median':>8} {'vs fp32':>8}",
    ]
    for row in result["paths"]:
        head = f"{row['label']:<10} {row['instruction']:<20} {row['macs_per_instruction']:>9}"
        if row["refused"]:
            lines.append(f"{head}  refused: {row['refused']}")
            continue
        ratio = f"{row['ratio_to_fp32']:.2f}x" if row["ratio_to_fp32"] else "-"
        lines.append(f"{head} {row['best_gmacs']:>8.1f} {row['median_gmacs']:>8.1f} {ratio:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per path (15)")
    parser.add_argument("--seconds", type=float, default=0.1, help="seconds per round (0.1)")
    parser.add_argument("--quick", action="store_true", help="tiny loops, 2 rounds (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else max(1, args.rounds)
    result = measure(rounds, args.seconds, args.quick)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
