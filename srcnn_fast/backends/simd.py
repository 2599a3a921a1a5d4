"""Explicit SIMD vectors for Numba: an LLVM ``<W x float>`` type and a handful of intrinsics.

LLVM's auto-vectoriser does not find the register blocking a convolution needs (many
independent accumulators held across all taps), so the CPU kernels write it out by hand with
these. ``W`` is 16 (one zmm register) where the CPU has AVX-512, else 8 (ymm, or pairs of xmm);
the kernels are correct for any ``W`` and fast for these two. ``SRCNN_FAST_SIMD_WIDTH`` forces a
width (the tests use it to run the 8-lane code on an AVX-512 machine); compiled kernels are
cached per width (``srcnn_fast.backends.cpu``), so a cached kernel never meets another width.

All memory intrinsics take a 1-D float32 array and an element index; loads and stores are
unaligned (``align=4``), and bounds are the caller's job, as in C.
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _host_width() -> int:
    forced = os.environ.get("SRCNN_FAST_SIMD_WIDTH", "").strip()
    if forced in ("4", "8", "16"):
        return int(forced)
    features = llvm.get_host_cpu_features()
    return 16 if features.get("avx512f") else 8


#: Lanes per vector on this machine.
W = _host_width()


class FloatVector(types.Type):
    """Numba type of an LLVM ``<W x float>`` value (lives in a SIMD register)."""

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(name=f"float32x{width}")


@register_model(FloatVector)
class _FloatVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type: FloatVector) -> None:
        super().__init__(dmm, fe_type, ir.VectorType(ir.FloatType(), fe_type.width))


vector_type = FloatVector(W)
_LLVM_VECTOR = ir.VectorType(ir.FloatType(), W)
_I32 = ir.IntType(32)


def _element_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _LLVM_VECTOR.as_pointer())


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

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        value = builder.load(builder.gep(data, [args[1]]), align=4)
        one = builder.insert_element(ir.Constant(_LLVM_VECTOR, ir.Undefined), value, _I32(0))
        mask = ir.Constant(ir.VectorType(_I32, W), [0] * W)
        return builder.shuffle_vector(one, ir.Constant(_LLVM_VECTOR, ir.Undefined), mask)

    return vector_type(array, types.intp), codegen


@intrinsic
def vload(typingctx, array, index):
    """Lanes ``array[index : index + W]``."""

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load(ptr, align=4)

    return vector_type(array, types.intp), codegen


@intrinsic
def vstore(typingctx, array, index, vector):
    """``array[index : index + W] = vector``."""

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], ptr, align=4)
        return context.get_dummy_value()

    return types.void(array, types.intp, vector_type), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane-wise, fused (one rounding)."""

    def codegen(context, builder, sig, args):
        return builder.call(_llvm_intrinsic(builder, "fma", 3), args)

    return vector_type(vector_type, vector_type, vector_type), codegen


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
