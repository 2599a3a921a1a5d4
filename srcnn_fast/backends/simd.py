"""Explicit SIMD vectors for Numba: an LLVM ``<W x float>`` type and a handful of intrinsics.

LLVM's auto-vectoriser does not find the register blocking a convolution needs (many
independent accumulators held across all taps), so the CPU kernels write it out by hand with
these. ``W`` is 16 (one zmm register) where the CPU has AVX-512, else 8 (ymm, or pairs of xmm);
the kernels are correct for any ``W`` and fast for these two. ``SRCNN_FAST_SIMD_WIDTH`` forces a
width (the tests use it to run the 8-lane code on an AVX-512 machine); compiled kernels are
cached per width (``srcnn_fast.backends.cpu``), so a cached kernel never meets another width.

All memory intrinsics take a 1-D float32 array and an element index; loads and stores are
unaligned (``align=4``), and bounds are the caller's job, as in C.

bfloat16 (``precision="bf16"``): a ``uint32`` array holds *pairs* of bf16 values (the first in
the low half), and the same intrinsics on it give a :class:`PairVector` of W pairs;
``vfma(pairs, pairs, acc)`` is then ``vdpbf16ps`` (AVX512_BF16): each float32 lane of ``acc``
gains the two products of its pair, exact products summed in float32. So kernels written
with ``vload``/``vbroadcast_at``/``vfma`` run in bf16 when handed ``uint32`` pair arrays, and
Numba compiles that variant only where it is used (never on a CPU without AVX512_BF16).
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _host_features() -> dict[str, bool]:
    return dict(llvm.get_host_cpu_features())


def _host_width() -> int:
    forced = os.environ.get("SRCNN_FAST_SIMD_WIDTH", "").strip()
    if forced in ("4", "8", "16"):
        return int(forced)
    return 16 if _host_features().get("avx512f") else 8


#: Lanes per vector on this machine.
W = _host_width()


def bf16_problem() -> str | None:
    """None if this CPU runs the bf16 kernels, else why not (one line)."""
    features = _host_features()
    if not features.get("avx512bf16"):
        return (
            "precision bf16 needs the AVX512_BF16 instruction set (vdpbf16ps), which this CPU lacks"
        )
    if W < 16 and not features.get("avx512vl"):  # the 256-bit forms, for a forced width
        return f"precision bf16 at {W}-lane SIMD needs AVX512_VL, which this CPU lacks"
    return None


class FloatVector(types.Type):
    """Numba type of an LLVM ``<W x float>`` value (lives in a SIMD register)."""

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(name=f"float32x{width}")


@register_model(FloatVector)
class _FloatVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type: FloatVector) -> None:
        super().__init__(dmm, fe_type, ir.VectorType(ir.FloatType(), fe_type.width))


class PairVector(types.Type):
    """Numba type of W lanes of 32 bits, each a pair of bfloat16 values (an LLVM ``<W x i32>``)."""

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(name=f"bf16x2x{width}")


@register_model(PairVector)
class _PairVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type: PairVector) -> None:
        super().__init__(dmm, fe_type, ir.VectorType(ir.IntType(32), fe_type.width))


class _BFloat(ir.Type):
    """LLVM's ``bfloat`` (llvmlite.ir has no such type; only its name is needed)."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _BFloat)

    def __hash__(self) -> int:
        return hash("bfloat")


vector_type = FloatVector(W)
pair_type = PairVector(W)
_LLVM_VECTOR = ir.VectorType(ir.FloatType(), W)
_LLVM_PAIRS = ir.VectorType(ir.IntType(32), W)
_I32 = ir.IntType(32)


def _lanes(array_type) -> tuple[types.Type, ir.Type]:
    """(Numba type, LLVM type) of a vector loaded from ``array_type``: pairs from uint32."""
    if array_type.dtype == types.uint32:
        return pair_type, _LLVM_PAIRS
    return vector_type, _LLVM_VECTOR


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _lanes(array_type)[1].as_pointer())


def _llvm_intrinsic(builder, name: str, n_args: int):
    fn_type = ir.FunctionType(_LLVM_VECTOR, [_LLVM_VECTOR] * n_args)
    return cgutils.get_or_insert_function(builder.module, fn_type, f"llvm.{name}.v{W}f32")


@intrinsic
def vzero(typingctx):
    """All lanes 0.0."""

    def codegen(context, builder, sig, args):
        return ir.Constant(_LLVM_VECTOR, [0.0] * W)

    return vector_type(), codegen


@intrinsic
def vbroadcast(typingctx, value):
    """All lanes ``value`` (a float32)."""

    def codegen(context, builder, sig, args):
        one = builder.insert_element(ir.Constant(_LLVM_VECTOR, ir.Undefined), args[0], _I32(0))
        mask = ir.Constant(ir.VectorType(_I32, W), [0] * W)
        return builder.shuffle_vector(one, ir.Constant(_LLVM_VECTOR, ir.Undefined), mask)

    return vector_type(types.float32), codegen


@intrinsic
def vbroadcast_at(typingctx, array, index):
    """All lanes ``array[index]``: one load, no negative-index wrap-around (unlike ``a[i]``)."""

    result, llvm_type = _lanes(array)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        value = builder.load(builder.gep(data, [args[1]]), align=4)
        one = builder.insert_element(ir.Constant(llvm_type, ir.Undefined), value, _I32(0))
        mask = ir.Constant(ir.VectorType(_I32, W), [0] * W)
        return builder.shuffle_vector(one, ir.Constant(llvm_type, ir.Undefined), mask)

    return result(array, types.intp), codegen


@intrinsic
def vload(typingctx, array, index):
    """Lanes ``array[index : index + W]``."""

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load(ptr, align=4)

    return _lanes(array)[0](array, types.intp), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    """``array[index : index + W] = vector``."""

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], ptr, align=4)
        return context.get_dummy_value()

    return types.void(array, types.intp, _lanes(array)[0]), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane-wise, fused (one rounding). On pairs (``a``, ``b``: PairVector),
    ``c`` + a.lo * b.lo + a.hi * b.hi per lane: ``vdpbf16ps``, the products exact, the sums
    float32 (so the same kernel code is a bf16 kernel when handed pair arrays)."""
    if isinstance(a, PairVector):
        bf16_pairs = ir.VectorType(_BFloat(), 2 * W)
        name = f"llvm.x86.avx512bf16.dpbf16ps.{32 * W}"
        fn_type = ir.FunctionType(_LLVM_VECTOR, [_LLVM_VECTOR, bf16_pairs, bf16_pairs])

        def dot(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, fn_type, name)
            x, y = (builder.bitcast(v, bf16_pairs) for v in args[:2])
            return builder.call(fn, [args[2], x, y])

        return vector_type(pair_type, pair_type, vector_type), dot

    def codegen(context, builder, sig, args):
        return builder.call(_llvm_intrinsic(builder, "fma", 3), args)

    return vector_type(vector_type, vector_type, vector_type), codegen


@intrinsic
def vpack_bf16(typingctx, lo, hi):
    """Pairs (bf16(lo[i]), bf16(hi[i])), rounded to nearest even (``vcvtneps2bf16``)."""

    def codegen(context, builder, sig, args):
        half = ir.VectorType(_BFloat(), W)
        lo, hi = (builder.fptrunc(v, half) for v in args)
        interleave = ir.Constant(
            ir.VectorType(_I32, 2 * W), [i // 2 + (i % 2) * W for i in range(2 * W)]
        )
        return builder.bitcast(builder.shuffle_vector(lo, hi, interleave), _LLVM_PAIRS)

    return pair_type(vector_type, vector_type), codegen


@intrinsic
def vround_bf16(typingctx, a):
    """Each lane rounded to the nearest bfloat16 (ties to even), kept as float32. Integer
    arithmetic (any CPU): bits + 0x7fff + (bit 16), low 16 bits cleared; finite inputs."""

    def codegen(context, builder, sig, args):
        bits = builder.bitcast(args[0], _LLVM_PAIRS)

        def splat(value: int) -> ir.Constant:
            return ir.Constant(_LLVM_PAIRS, [value] * W)

        odd = builder.and_(builder.lshr(bits, splat(16)), splat(1))
        rounded = builder.add(builder.add(bits, splat(0x7FFF)), odd)
        return builder.bitcast(builder.and_(rounded, splat(0xFFFF0000)), _LLVM_VECTOR)

    return vector_type(vector_type), codegen


@intrinsic
def vadd(typingctx, a, b):
    """``a + b`` lane-wise."""

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])

    return vector_type(vector_type, vector_type), codegen


@intrinsic
def vrelu(typingctx, a):
    """``max(a, 0)`` lane-wise."""

    def codegen(context, builder, sig, args):
        zero = ir.Constant(_LLVM_VECTOR, [0.0] * W)
        return builder.call(_llvm_intrinsic(builder, "maxnum", 2), [args[0], zero])

    return vector_type(vector_type), codegen


@intrinsic
def vmax(typingctx, a, b):
    """``max(a, b)`` lane-wise."""

    def codegen(context, builder, sig, args):
        return builder.call(_llvm_intrinsic(builder, "maxnum", 2), args)

    return vector_type(vector_type, vector_type), codegen


@intrinsic
def vany_positive(typingctx, a):
    """Whether some lane is > 0: one compare into a mask register and a test of the mask
    (no horizontal reduction)."""

    def codegen(context, builder, sig, args):
        zero = ir.Constant(_LLVM_VECTOR, [0.0] * W)
        mask = builder.fcmp_ordered(">", args[0], zero)
        bits = builder.bitcast(mask, ir.IntType(W))
        return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(W), 0))

    return types.boolean(vector_type), codegen
