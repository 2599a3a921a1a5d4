// srcnn_fused_config.cuh: the compile-time configuration shared by the fused network kernels
// (srcnn_fused_f32.cu, srcnn_fused_tc.cu). Every value has a default (9-1-5, 64/32 maps, a
// 16 x 32 output tile, 256 threads) so each file compiles on its own; the host passes -D...
// (srcnn_fast.backends.cuda_common.fused_options).
#pragma once

#ifndef F1
#define F1 9
#endif
#ifndef N1
#define N1 64
#endif
#ifndef N2
#define N2 32
#endif
#ifndef F3
#define F3 5
#endif
#ifndef TILE_H
#define TILE_H 16
#endif
#ifndef TILE_W
#define TILE_W 32
#endif
#ifndef THREADS
#define THREADS 256
#endif

// conv1 and conv3 radii; conv2 is 1x1.
#define R1 ((F1 - 1) / 2)
#define R3 ((F3 - 1) / 2)
// conv2 output a tile needs (tile + conv3 halo), and the upscaled input that needs (+ conv1 halo).
#define REGION_H (TILE_H + 2 * R3)
#define REGION_W (TILE_W + 2 * R3)
#define WINDOW_H (REGION_H + 2 * R1)
#define WINDOW_W (REGION_W + 2 * R1)

// SRCNN_SMEM_BYTES is the dynamic shared memory the host launches a block with: the host
// computes it (srcnn_fast.backends.cuda_fp32 / cuda_tensorcore) to pick the largest tile that
// fits the device, and the kernel lays that memory out from the macros above. Each kernel
// checks the host's number against its own layout with SRCNN_CHECK_SMEM_BYTES, so a host and
// a kernel that disagree fail every compile (NVRTC, the compile gate, the CPU harness) rather
// than overrun or waste shared memory. Compiled on its own (no -D), there is nothing to check.
#ifdef SRCNN_SMEM_BYTES
#define SRCNN_CHECK_SMEM_BYTES(layout)                                               \
    static_assert(SRCNN_SMEM_BYTES == (layout),                                      \
                  "SRCNN_SMEM_BYTES (the host's shared memory per block) differs from " \
                  "this kernel's layout")
#else
#define SRCNN_CHECK_SMEM_BYTES(layout) static_assert(true, "")
#endif
