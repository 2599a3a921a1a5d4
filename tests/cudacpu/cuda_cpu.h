// cuda_cpu.h: compile CUDA C kernels with g++ and run them on the CPU (srcnn-fast tests only).
//
// Two execution models, chosen at compile time:
//  * fibers (default): each CUDA thread of a block is a ucontext fiber; __syncthreads() yields
//    to a scheduler that runs every live thread of the block to its next barrier, then releases
//    them all. Blocks run one after another, so __shared__ memory is one static copy, poisoned
//    (NaN) before every block so that a read of data the block never wrote shows up.
//    Every shared array (static and dynamic) sits between two 64-byte guards of canary words
//    (a NaN bit pattern): the launcher checks them after every block and fails the launch if a
//    block wrote past either end; a read past an end returns that NaN, which reaches the
//    output. (The ASan build keeps plain arrays so that ASan itself reports the overrun.)
//    __syncwarp()/warp exchanges wait for the warp's lanes only. A barrier that some threads of
//    the block never reach (divergent __syncthreads) is reported and aborts the launch.
//  * threads (-DCUDACPU_THREADS): each CUDA thread is a std::thread, __syncthreads() a
//    std::barrier. Built with -fsanitize=thread, a missing barrier becomes a reported data
//    race; with -fsanitize=address, a shared-memory overrun a reported buffer overflow.
// Every launch also runs its blocks in three orders and checks which block wrote each byte of
// the kernel's output buffers (cuda_cpu_runtime.h, launch()).
// Warp-level and tensor-core instructions are reached only through the wrappers in
// kernels/srcnn_warp.cuh, which this header emulates from their documented semantics.
#pragma once
#define SRCNN_HOST_EMULATION 1

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

#ifdef CUDACPU_THREADS
#define CUDACPU_TLS thread_local
#else
#define CUDACPU_TLS
#endif

namespace cudacpu {
extern CUDACPU_TLS uint3 thread_index;
extern uint3 block_index;
extern dim3 block_dim, grid_dim;
void sync_block();
void sync_warp();
void register_shared(void* p, size_t bytes, const char* name, bool guarded);

// A static __shared__ array with canary guards on both sides: `after` follows `data` with no
// padding (alignment 1), and `data` starts 64 bytes in (alignas(64) on the struct).
constexpr size_t kGuardBytes = 64;
template <typename T, size_t N> struct alignas(64) GuardedShared {
    unsigned char before[kGuardBytes];
    T data[N];
    unsigned char after[kGuardBytes];
};
void* dynamic_shared();
[[noreturn]] void fail(const char* what);
}  // namespace cudacpu

#define threadIdx (cudacpu::thread_index)
#define blockIdx (cudacpu::block_index)
#define blockDim (cudacpu::block_dim)
#define gridDim (cudacpu::grid_dim)
#define warpSize 32

#define __global__
#define __device__ inline
#define __host__
#define __forceinline__
#define __restrict__ __restrict
#define __constant__
#define __launch_bounds__(...)
#define __syncthreads() cudacpu::sync_block()
#define __syncwarp(...) cudacpu::sync_warp()

// Shared memory: one static copy per declaration, registered so the launcher can poison it
// between blocks and check its guards. Dynamic shared memory is a buffer the launcher
// allocates (and poisons, and guards the same way).
#if defined(__SANITIZE_ADDRESS__)
#define SRCNN_SHARED(type, name, count)                                                       \
    static type name[count];                                                                  \
    cudacpu::register_shared(name, sizeof(name), #name, false)
#else
#define SRCNN_SHARED(type, name, count)                                                       \
    static cudacpu::GuardedShared<type, count> name##_guarded;                                \
    type(&name)[count] = name##_guarded.data;                                                 \
    cudacpu::register_shared(name, sizeof(name), #name, true)
#endif
#define SRCNN_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(cudacpu::dynamic_shared())

using std::fmaf;
using std::fmaxf;
using std::fminf;

inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }  // half even
inline float __saturatef(float x) { return std::fmin(std::fmax(x, 0.0f), 1.0f); }
template <typename T> inline T __ldg(const T* p) { return *p; }
using std::max;
using std::min;
#include "cuda_cpu_warp.h"
