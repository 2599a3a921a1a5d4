// srcnn_warp.cuh: every warp-level / tensor-core instruction the srcnn-fast kernels use, each
// behind a small __device__ wrapper, so that the CUDA-on-CPU harness (tests/cudacpu) can
// substitute an emulation written from the PTX ISA (tests/cudacpu/cuda_cpu_warp.h).
//
// Fragment layouts of mma.m16n8k16 (PTX ISA 9.7.14.5.8, "Matrix Fragments for mma.m16n8k16 with
// floating point type"), with g = lane >> 2 (groupID) and t = lane % 4 (threadID_in_group); each
// 32-bit register holds two f16, the lower-indexed element in the low half:
//   A (16 x 16, row-major "row"):  a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//                                  a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8, "col"):             b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   C, D (16 x 8, f32):            c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g+8][2t, 2t+1]
// So the D fragments of two adjacent n-tiles (columns 16s..16s+7 and 16s+8..16s+15) are, once
// packed to f16 pairs, exactly the A fragment of k-step s of a following GEMM: a layer's output
// feeds the next layer's tensor-core input without leaving registers.
//
// mma.m16n8k16 with f16 inputs and cvt.rn.f16x2.f32 need sm_80 or newer.
#pragma once

#ifdef SRCNN_HOST_EMULATION

// f32 pair -> f16x2, round to nearest even; `lo` in bits 0..15.
__device__ __forceinline__ unsigned srcnn_pack_f16x2(float lo, float hi) {
    return cudacpu::pack_f16x2(lo, hi);
}

// D = A B + C for one warp: A 16x16 f16, B 16x8 f16, C and D 16x8 f32 (layouts above).
__device__ __forceinline__ void srcnn_mma_f16_m16n8k16(float d[4], const unsigned a[4],
                                                       const unsigned b[2], const float c[4]) {
    cudacpu::mma_m16n8k16_f32_f16_f16_f32(d, a, b, c);
}

// A B fragment (two registers) from shared memory, 8-byte aligned.
__device__ __forceinline__ void srcnn_load_b_fragment(unsigned b[2], const unsigned* p) {
    b[0] = p[0];
    b[1] = p[1];
}

#else

__device__ __forceinline__ unsigned srcnn_pack_f16x2(float lo, float hi) {
    unsigned r;
    // cvt.rn.f16x2.f32 d, a, b: a -> upper half, b -> lower half.
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ void srcnn_mma_f16_m16n8k16(float d[4], const unsigned a[4],
                                                       const unsigned b[2], const float c[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]),
          "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ void srcnn_load_b_fragment(unsigned b[2], const unsigned* p) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);  // one 64-bit shared-memory load
    b[0] = v.x;
    b[1] = v.y;
}

#endif
