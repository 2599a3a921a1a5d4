// cuda_cpu_warp.h: the warp-level / tensor-core instructions of kernels/srcnn_warp.cuh, emulated
// for the CUDA-on-CPU harness (included at the end of cuda_cpu.h).
//
// Semantics followed: NVIDIA PTX ISA,
//  * section 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type"
//    https://docs.nvidia.com/cuda/parallel-thread-execution/
//    #warp-level-matrix-fragment-mma-16816-float
//    for which lane holds which element of A (16x16, row), B (16x8, col) and C/D (16x8, f32):
//        groupID = laneid >> 2, threadID_in_group = laneid % 4
//        A  a_i (i = 0..7, two .f16 per .f16x2 register, low half = lower i):
//             row = groupID + 8 * ((i / 2) % 2),  col = 2 threadID_in_group + (i & 1) + 8 (i >= 4)
//        B  b_i (i = 0..3):  row = 2 threadID_in_group + (i & 1) + 8 (i >= 2),  col = groupID
//        C/D c_i (i = 0..3): row = groupID + 8 (i >= 2),  col = 2 threadID_in_group + (i & 1)
//  * the cvt instruction ("Data Movement and Conversion Instructions: cvt"): cvt.rn.f16x2.f32
//    d, a, b converts a and b rounding to nearest even and stores a in the upper half of d, b in
//    the lower half.
//
// mma.sync: every lane publishes its fragment registers to its warp's scratch area, waits for
// the warp (cudacpu::sync_warp), checks that all 32 lanes made the same call (fibers: a lane
// that exited or skipped the call is reported, as mma.sync needs the whole warp), rebuilds A, B and C from all 32 lanes, computes its own D
// elements in float (products of two f16 values are exact in float; the sum is accumulated in
// float, k ascending, starting from C), and waits for the warp again before the scratch can be
// reused. The hardware's accumulation order inside one mma is unspecified: the emulation is
// exact up to that order.
#pragma once

namespace cudacpu {

// ---- IEEE binary16 <-> binary32, round to nearest even (what cvt.rn does) --------------------
inline std::uint16_t f32_to_f16_rn(float f) {
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t mag = x & 0x7fffffffu;
    if (mag > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7fffu);  // canonical NaN
    if (mag >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520: inf
    if (mag < 0x38800000u) {
        // Below 2^-14: an f16 subnormal (or zero, or 2^-14 itself after rounding up). Scaling by
        // 2^24 is exact, and nearbyint rounds half to even in the default rounding mode.
        float v;
        std::memcpy(&v, &mag, sizeof v);
        const float scaled = std::nearbyint(v * 16777216.0f);
        return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(scaled));
    }
    // Normal: rebias the exponent (127 -> 15), then round the 13 dropped mantissa bits to even;
    // a carry out of the mantissa correctly bumps the exponent.
    const std::uint32_t r = mag - 0x38000000u;
    return static_cast<std::uint16_t>(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
}

inline float f16_to_f32(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    std::uint32_t bits;
    if (exp == 0) {
        const float v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal, exact
        std::memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// cvt.rn.f16x2.f32: `lo` in bits 0..15, `hi` in bits 16..31.
inline unsigned pack_f16x2(float lo, float hi) {
    return static_cast<unsigned>(f32_to_f16_rn(lo)) |
           (static_cast<unsigned>(f32_to_f16_rn(hi)) << 16);
}

// ---- mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 ---------------------------------------
struct MmaScratch {
    unsigned a[32][4];
    unsigned b[32][2];
    float c[32][4];
    unsigned long long calls[32];  // mma.sync calls per lane: equal when the warp converges
};
// One scratch area per warp of a block (blocks of up to 1024 threads). Blocks run one after
// another in both execution models, so the warps of one block are the only users. Internal
// linkage: each compiled kernel library has its own.
static MmaScratch mma_scratch[32];

inline unsigned linear_thread_index() {
    return thread_index.x + block_dim.x * (thread_index.y + block_dim.y * thread_index.z);
}

inline void mma_m16n8k16_f32_f16_f16_f32(float d[4], const unsigned a[4], const unsigned b[2],
                                         const float c[4]) {
    if ((block_dim.x * block_dim.y * block_dim.z) % 32 != 0)
        fail("mma.sync needs whole warps: the block size is not a multiple of 32");
    const unsigned thread = linear_thread_index(), lane = thread % 32;
    MmaScratch& s = mma_scratch[thread / 32];
    for (int i = 0; i < 4; ++i) s.a[lane][i] = a[i], s.c[lane][i] = c[i];
    for (int i = 0; i < 2; ++i) s.b[lane][i] = b[i];
    const unsigned long long call = ++s.calls[lane];
    sync_warp();
    for (unsigned l = 0; l < 32; ++l) {
        if (s.calls[l] != call) {  // a lane exited or diverged: undefined on a GPU
            for (auto& warp : mma_scratch)
                for (auto& c : warp.calls) c = 0;  // a clean slate for the next launch
            fail("mma.sync reached by only some lanes of a warp (inactive or divergent lanes)");
        }
    }

    float A[16][16], B[16][8], C[16][8];
    for (unsigned l = 0; l < 32; ++l) {
        const unsigned group = l >> 2, tig = l % 4;
        for (unsigned i = 0; i < 8; ++i) {  // a_i is half (i & 1) of register i / 2
            const unsigned row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
            const unsigned col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
            A[row][col] = f16_to_f32(static_cast<std::uint16_t>(s.a[l][i / 2] >> (16 * (i & 1))));
        }
        for (unsigned i = 0; i < 4; ++i) {
            const unsigned row = tig * 2 + (i & 1) + (i >= 2 ? 8 : 0);
            B[row][group] = f16_to_f32(static_cast<std::uint16_t>(s.b[l][i / 2] >> (16 * (i & 1))));
        }
        for (unsigned i = 0; i < 4; ++i) C[group + (i >= 2 ? 8 : 0)][tig * 2 + (i & 1)] = s.c[l][i];
    }
    float out[4];
    const unsigned group = lane >> 2, tig = lane % 4;
    for (unsigned i = 0; i < 4; ++i) {
        const unsigned row = group + (i >= 2 ? 8 : 0), col = tig * 2 + (i & 1);
        float acc = C[row][col];
        for (unsigned k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];  // product exact
        out[i] = acc;
    }
    sync_warp();  // every lane has read the scratch: it may be overwritten by the next mma
    for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace cudacpu
