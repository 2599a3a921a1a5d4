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

int8 (``precision="int8"``): an ``int32`` array holds *quads* of 8-bit values (the first in the
lowest byte): unsigned activations or signed weights. The same intrinsics on it give a
:class:`QuadVector`, ``vzero_for`` an int32 accumulator (:class:`IntVector`), and
``vfma(u8 quads, s8 quads, acc)`` is ``vpdpbusd`` (AVX512_VNNI, or AVX-VNNI at 8 lanes): each
int32 lane of ``acc`` gains the four products of its quads, exactly. ``vdequant`` takes an
accumulator of either kind to float32 (scale and offset) and ``vpack_u8`` rounds four float
vectors to 0..255 and packs them into quads.
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _host_features() -> dict[str, bool]:
    """The instruction sets Numba compiles for: the host's, or those of ``NUMBA_CPU_FEATURES``
    where it overrides them (an LLVM feature string, ``+avx2,-avx512bf16,...``, which Numba
    then uses alone), so that no kernel is built with an instruction its target lacks."""
    override = os.environ.get("NUMBA_CPU_FEATURES", "").strip()
    if override:
        items = (item.strip() for item in override.split(","))
        return {item[1:]: item[0] == "+" for item in items if len(item) > 1 and item[0] in "+-"}
    return dict(llvm.get_host_cpu_features())


def _host_width() -> int:
    forced = os.environ.get("SRCNN_FAST_SIMD_WIDTH", "").strip()
    if forced in ("4", "8", "16"):
        return int(forced)
    return 16 if _host_features().get("avx512f") else 8


#: Lanes per vector on this machine.
W = _host_width()


def int8_problem() -> str | None:
    """None if this CPU runs the int8 (VNNI) kernels, else why not (one line)."""
    features = _host_features()
    if W >= 16:
        if not features.get("avx512vnni"):
            return (
                "precision int8 needs the AVX512_VNNI instruction set (vpdpbusd), which this "
                "CPU lacks"
            )
    elif not (features.get("avxvnni") or (features.get("avx512vnni") and features.get("avx512vl"))):
        return f"precision int8 at {W}-lane SIMD needs AVX-VNNI (vpdpbusd), which this CPU lacks"
    return None


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


class QuadVector(types.Type):
    """Numba type of W lanes of 32 bits, each four 8-bit values (an LLVM ``<W x i32>``)."""

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(name=f"i8x4x{width}")


@register_model(QuadVector)
class _QuadVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type: QuadVector) -> None:
        super().__init__(dmm, fe_type, ir.VectorType(ir.IntType(32), fe_type.width))


class IntVector(types.Type):
    """Numba type of an LLVM ``<W x i32>`` integer accumulator."""

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(name=f"int32x{width}")


@register_model(IntVector)
class _IntVectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type: IntVector) -> None:
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
quad_type = QuadVector(W)
int_type = IntVector(W)
_LLVM_VECTOR = ir.VectorType(ir.FloatType(), W)
_LLVM_PAIRS = ir.VectorType(ir.IntType(32), W)
_I32 = ir.IntType(32)


def _lanes(array_type) -> tuple[types.Type, ir.Type]:
    """(Numba type, LLVM type) of a vector loaded from ``array_type``: pairs from uint32,
    quads from int32."""
    if array_type.dtype == types.uint32:
        return pair_type, _LLVM_PAIRS
    if array_type.dtype == types.int32:
        return quad_type, _LLVM_PAIRS
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
def vzero_for(typingctx, array):
    """A zero accumulator for products of ``array``'s vectors: int32 lanes for int8 quads
    (an ``int32`` array), float32 lanes otherwise."""
    if array.dtype == types.int32:
        return int_type(array), lambda context, builder, sig, args: ir.Constant(
            _LLVM_PAIRS, [0] * W
        )
    return vector_type(array), lambda context, builder, sig, args: ir.Constant(
        _LLVM_VECTOR, [0.0] * W
    )


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


def _load(context, builder, sig, args):
    ptr = _element_pointer(context, builder, sig.args[0], args[0], args[1])
    return builder.load(ptr, align=4)


@intrinsic
def vload(typingctx, array, index):
    """Lanes ``array[index : index + W]``."""
    return _lanes(array)[0](array, types.intp), _load


@intrinsic
def vload_int(typingctx, array, index):
    """Lanes ``array[index : index + W]`` of an int32 array as an int32 accumulator
    (:class:`IntVector`: ``vload`` reads an int32 array as quads of bytes)."""
    return int_type(array, types.intp), _load


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
    if isinstance(a, QuadVector):
        quads = ir.VectorType(ir.IntType(8), 4 * W)
        name = f"llvm.x86.avx512.vpdpbusd.{32 * W}"
        fn_type = ir.FunctionType(_LLVM_PAIRS, [_LLVM_PAIRS, quads, quads])

        def dot4(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, fn_type, name)
            x, y = (builder.bitcast(v, quads) for v in args[:2])
            return builder.call(fn, [args[2], x, y])

        return int_type(quad_type, quad_type, int_type), dot4
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


def _splat32(value: int) -> ir.Constant:
    return ir.Constant(_LLVM_PAIRS, [value] * W)


def _bf16_rounded_bits(builder, vector):
    """The float32 lanes' bits rounded to the nearest bf16 (ties to even), low 16 bits cleared:
    bits + 0x7fff + (bit 16). Integer arithmetic, any CPU; finite inputs."""
    bits = builder.bitcast(vector, _LLVM_PAIRS)
    odd = builder.and_(builder.lshr(bits, _splat32(16)), _splat32(1))
    rounded = builder.add(builder.add(bits, _splat32(0x7FFF)), odd)
    return builder.and_(rounded, _splat32(0xFFFF0000))


@intrinsic
def vpack_bf16(typingctx, lo, hi):
    """Pairs (bf16(lo[i]), bf16(hi[i])), rounded to nearest even: ``vcvtneps2bf16`` where the
    CPU has AVX512_BF16; elsewhere (the AMX kernel's emulation runs on any CPU) the integer
    rounding of :func:`vround_bf16` and a shift, since LLVM lowers a ``bfloat`` conversion
    there to a call of ``__truncsfbf2``, which Numba's JIT cannot link (the process aborts)."""
    if not _host_features().get("avx512bf16"):

        def portable(context, builder, sig, args):
            low, high = (_bf16_rounded_bits(builder, v) for v in args)
            return builder.or_(builder.lshr(low, _splat32(16)), high)

        return pair_type(vector_type, vector_type), portable

    def codegen(context, builder, sig, args):
        half = ir.VectorType(_BFloat(), W)
        lo, hi = (builder.fptrunc(v, half) for v in args)
        interleave = ir.Constant(
            ir.VectorType(_I32, 2 * W), [i // 2 + (i % 2) * W for i in range(2 * W)]
        )
        return builder.bitcast(builder.shuffle_vector(lo, hi, interleave), _LLVM_PAIRS)

    return pair_type(vector_type, vector_type), codegen


@intrinsic
def vdequant(typingctx, acc, scale, offset):
    """An accumulator to float32: ``float(acc) * scale + offset`` (one fused rounding) for an
    int32 accumulator; ``acc + offset`` for a float32 one (``scale`` unused: the float kernels'
    accumulators are already in output units)."""
    if isinstance(acc, IntVector):

        def codegen(context, builder, sig, args):
            value = builder.sitofp(args[0], _LLVM_VECTOR)
            return builder.call(_llvm_intrinsic(builder, "fma", 3), [value, args[1], args[2]])

    else:

        def codegen(context, builder, sig, args):
            return builder.fadd(args[0], args[2])

    return vector_type(acc, vector_type, vector_type), codegen


#: By vector bits: LLVM's x86 intrinsics for int32 -> int16 and int16 -> uint8 saturating
#: packs and the byte shuffle (each works within 128-bit lanes at every width).
_PACKS = {
    512: ("llvm.x86.avx512.packssdw.512", "llvm.x86.avx512.packuswb.512",
          "llvm.x86.avx512.pshuf.b.512"),
    256: ("llvm.x86.avx2.packssdw", "llvm.x86.avx2.packuswb", "llvm.x86.avx2.pshuf.b"),
    128: ("llvm.x86.sse2.packssdw.128", "llvm.x86.sse2.packuswb.128",
          "llvm.x86.ssse3.pshuf.b.128"),
}  # fmt: skip


@intrinsic
def vpack_u8(typingctx, a, b, c, d):
    """Quads (u8(a[i]), u8(b[i]), u8(c[i]), u8(d[i])), each rounded to the nearest integer
    (ties to even) and clamped to 0..255: four channels of a pixel in one 32-bit lane.

    ``vcvtps2dq`` rounds, the saturating packs clamp (``vpackssdw`` to int16, ``vpackuswb``
    to 0..255: 7 instructions for 4 vectors, against 20 for compares and shifts), and one
    byte shuffle per 128-bit lane moves each pixel's four bytes together (the packs interleave
    by lane: a lane holds pixels 4l..4l+3 of a, then of b, c and d)."""

    def codegen(context, builder, sig, args):
        i32 = ir.VectorType(_I32, W)
        i16 = ir.VectorType(ir.IntType(16), 2 * W)
        i8 = ir.VectorType(ir.IntType(8), 4 * W)
        dwords, words, shuffle = _PACKS[32 * W]
        ints = [
            builder.fptosi(builder.call(_llvm_intrinsic(builder, "rint", 1), [v]), i32)
            for v in args
        ]
        pack32 = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i16, [i32, i32]), dwords
        )
        pack16 = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i8, [i16, i16]), words
        )
        ab = builder.call(pack32, ints[:2])
        cd = builder.call(pack32, ints[2:])
        lanes = builder.call(pack16, [ab, cd])
        order = [4 * (k % 4) + k // 4 for k in range(16)] * (W // 4)
        shuf = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i8, [i8, i8]), shuffle
        )
        packed = builder.call(shuf, [lanes, ir.Constant(i8, order)])
        return builder.bitcast(packed, _LLVM_PAIRS)

    return quad_type(vector_type, vector_type, vector_type, vector_type), codegen


@intrinsic
def vround_u8(typingctx, a):
    """Each lane rounded to the nearest integer (ties to even) and clamped to 0..255, kept as
    float32 (the value :func:`vpack_u8` stores)."""

    def codegen(context, builder, sig, args):
        rounded = builder.call(_llvm_intrinsic(builder, "rint", 1), [args[0]])
        zero = ir.Constant(_LLVM_VECTOR, [0.0] * W)
        top = ir.Constant(_LLVM_VECTOR, [255.0] * W)
        low = builder.call(_llvm_intrinsic(builder, "maxnum", 2), [rounded, zero])
        return builder.call(_llvm_intrinsic(builder, "minnum", 2), [low, top])

    return vector_type(vector_type), codegen


@intrinsic
def vshl8(typingctx, acc):
    """An int32 accumulator times 256 (shifted left by 8 bits); a float32 one unchanged (the
    float kernels never shift: this only lets their code compile)."""
    if isinstance(acc, IntVector):

        def codegen(context, builder, sig, args):
            return builder.shl(args[0], ir.Constant(_LLVM_PAIRS, [8] * W))

    else:

        def codegen(context, builder, sig, args):
            return args[0]

    return acc(acc), codegen


@intrinsic
def vany_nonzero(typingctx, a):
    """Whether some lane of a quad vector is not zero."""

    def codegen(context, builder, sig, args):
        zero = ir.Constant(_LLVM_PAIRS, [0] * W)
        mask = builder.icmp_unsigned("!=", args[0], zero)
        bits = builder.bitcast(mask, ir.IntType(W))
        return builder.icmp_unsigned("!=", bits, ir.Constant(ir.IntType(W), 0))

    return types.boolean(quad_type), codegen


@intrinsic
def vor(typingctx, a, b):
    """Bitwise or of two quad vectors."""

    def codegen(context, builder, sig, args):
        return builder.or_(args[0], args[1])

    return quad_type(quad_type, quad_type), codegen


@intrinsic
def vround_bf16(typingctx, a):
    """Each lane rounded to the nearest bfloat16 (ties to even), kept as float32. Integer
    arithmetic (any CPU): bits + 0x7fff + (bit 16), low 16 bits cleared; finite inputs."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(_bf16_rounded_bits(builder, args[0]), _LLVM_VECTOR)

    return vector_type(vector_type), codegen


@intrinsic
def vadd(typingctx, a, b):
    """``a + b`` lane-wise: float32 vectors, or int32 accumulators (wrapping)."""
    if isinstance(a, IntVector):

        def codegen(context, builder, sig, args):
            return builder.add(args[0], args[1])

        return int_type(int_type, int_type), codegen

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
