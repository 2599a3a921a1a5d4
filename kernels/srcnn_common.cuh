// srcnn_common.cuh: what every srcnn-fast kernel shares.
//
// * Shared-memory declarations go through SRCNN_SHARED / SRCNN_DYNAMIC_SHARED so that the
//   CUDA-on-CPU test harness (tests/cudacpu/) can give each block fresh, poisoned memory.
// * The bicubic upscale of DESIGN.md section 1 (Keys a = -0.5, half-pixel centres, LR edge
//   replicate), from per-phase weights the host computes with srcnn_fast.imageops and puts in
//   constant memory, so GPU and CPU use bit-identical weights.
// * BT.601 studio-range colour conversion, exactly srcnn_fast.imageops.
#pragma once

#ifndef SRCNN_HOST_EMULATION
#define SRCNN_SHARED(type, name, count) __shared__ type name[count]
#define SRCNN_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#ifndef SRCNN_MAX_SCALE
#define SRCNN_MAX_SCALE 8
#endif

// Per phase p of the upscale: the 4 tap weights, and floor(source position) of phase p's pixel
// in LR block 0 (see imageops.bicubic_phase_weights / bicubic_phase_origin).
__constant__ float c_bicubic_weight[SRCNN_MAX_SCALE * 4];
__constant__ int c_bicubic_origin[SRCNN_MAX_SCALE];

__device__ __forceinline__ int srcnn_clamp(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

// Bicubic value of LR plane `src` (h x w, row pitch `pitch`) at HR pixel (y, x) for `scale`;
// rows first, then columns, as imageops.bicubic_upscale.
__device__ __forceinline__ float srcnn_bicubic(const float* __restrict__ src, int pitch, int h,
                                               int w, int scale, int y, int x) {
    const int py = y % scale, px = x % scale;
    const int y0 = y / scale + c_bicubic_origin[py] - 1;
    const int x0 = x / scale + c_bicubic_origin[px] - 1;
    float cols[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) cols[j] = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float wy = c_bicubic_weight[py * 4 + i];
        const float* row = src + srcnn_clamp(y0 + i, 0, h - 1) * pitch;
#pragma unroll
        for (int j = 0; j < 4; ++j) cols[j] += wy * row[srcnn_clamp(x0 + j, 0, w - 1)];
    }
    float v = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) v += c_bicubic_weight[px * 4 + j] * cols[j];
    return v;
}
