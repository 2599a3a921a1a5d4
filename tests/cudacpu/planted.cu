// planted.cu: small kernels with bugs that the harness must catch (tests/test_cuda_kernels.py).
// neighbour_sum: PLANT_MISSING_BARRIER drops the barrier between the shared-memory writes and
// the neighbours' reads (a race: ThreadSanitizer), PLANT_OVERRUN reads one element past the
// shared array (AddressSanitizer; the fiber build's guard words turn the read into a NaN),
// PLANT_OVERRUN_WRITE writes one element past it (the fiber build's guard check).
// dynamic_neighbour_sum: the same with dynamic shared memory (64 floats).
// running_sum: each block adds the previous block's output, which a GPU may not have written
// yet (an order dependence the block-order check reports).
// Without a PLANT_* macro, neighbour_sum and dynamic_neighbour_sum are correct.
#include "../../kernels/srcnn_common.cuh"

__device__ __forceinline__ void srcnn_planted_sum(float* tile, const float* in, float* out) {
    const int t = threadIdx.x;
    tile[t] = in[blockIdx.x * 64 + t];
#ifdef PLANT_OVERRUN_WRITE
    if (t == 63) tile[t + 1] = 0.0f;
#endif
#ifndef PLANT_MISSING_BARRIER
    __syncthreads();
#endif
#ifdef PLANT_OVERRUN
    const float right = tile[t + 1];
#else
    const float right = tile[(t + 1) % 64];
#endif
    out[blockIdx.x * 64 + t] = tile[t] + right;
}

extern "C" __global__ void neighbour_sum(const float* __restrict__ in, float* __restrict__ out) {
    SRCNN_SHARED(float, tile, 64);
    srcnn_planted_sum(tile, in, out);
}

extern "C" __global__ void dynamic_neighbour_sum(const float* __restrict__ in,
                                                 float* __restrict__ out) {
    SRCNN_DYNAMIC_SHARED(float, tile);
    srcnn_planted_sum(tile, in, out);
}

extern "C" __global__ void running_sum(const float* __restrict__ in, float* __restrict__ out) {
    const int i = blockIdx.x * 64 + threadIdx.x;
    out[i] = in[i] + (blockIdx.x > 0 ? out[i - 64] : 0.0f);
}

// A barrier that only some threads reach: undefined on a GPU (it may hang); the fiber
// scheduler must report it instead of silently merging it.
extern "C" __global__ void divergent_barrier(float* __restrict__ out) {
    if (threadIdx.x < 5) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
