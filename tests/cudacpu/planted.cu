// planted.cu: a small tiled kernel with bugs that the sanitizer builds of the harness must
// catch (tests/test_cuda_kernels.py): PLANT_MISSING_BARRIER drops the barrier between the
// shared-memory writes and the neighbours' reads (a race: ThreadSanitizer), PLANT_OVERRUN reads
// one element past the shared array (AddressSanitizer). Without either it is correct.
#include "../../kernels/srcnn_common.cuh"

extern "C" __global__ void neighbour_sum(const float* __restrict__ in, float* __restrict__ out) {
    SRCNN_SHARED(float, tile, 64);
    const int t = threadIdx.x;
    tile[t] = in[blockIdx.x * 64 + t];
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

// A barrier that only some threads reach: undefined on a GPU (it may hang); the fiber
// scheduler must report it instead of silently merging it.
extern "C" __global__ void divergent_barrier(float* __restrict__ out) {
    if (threadIdx.x < 5) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
