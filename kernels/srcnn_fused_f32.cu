// srcnn_fused_f32.cu: the whole SRCNN network, from the LR luma plane to the HR luma plane, in
// one FP32 kernel (DESIGN.md section 1: bicubic, then three "same" convolutions that each read
// their input edge-replicated).
//
// Tiling. A block owns a TILE_H x TILE_W tile of HR output pixels. conv3 (F3 x F3) needs conv2
// output on the tile plus an R3 = (F3-1)/2 halo; conv1 (F1 x F1) needs the upscaled image on
// that region plus an R1 halo. So a block
//   1. upscales its (TILE_H + 2 R3 + 2 R1) x (TILE_W + 2 R3 + 2 R1) input window into shared
//      memory (bicubic from the LR plane; HR coordinates clamped, which is conv1's replicate
//      padding of the upscaled image),
//   2. computes conv1 (N1 maps) and conv2 (1x1, N2 maps) per pixel of the conv2 region entirely
//      in registers (N1 + N2 accumulators) and stores the N2 maps in shared memory; a region
//      pixel outside the image is computed at its clamped position (conv2's replicate
//      padding as conv3 reads it),
//   3. computes conv3 for each output pixel from shared memory and writes it.
// Weights live in constant memory: every thread of a warp reads the same weight at the same
// time, so each FMA takes its weight straight from the constant bank (loops fully unrolled).
//
// Resource budget (defaults, 9-1-5 with 64/32 maps, 16 x 32 tile, 256 threads):
//   shared memory (dynamic): N2 * (TILE_H+2R3)(TILE_W+2R3) * 4 B = 92,160 B for conv2 output
//                           + (TILE_H+2R3+2R1)(TILE_W+2R3+2R1) * 4 B = 4,928 B input window;
//   registers: N1 + N2 accumulators + addressing: 128 per thread on sm_75-sm_90 (the compile gate
//   reports the exact count and fails on spills); constant memory: 32,256 B of weights.
//   sm_75 allows only 64 KB of shared memory per block: use TILE_H 8 there (55 KB).
// Work: (TILE_H+4)(TILE_W+4)/(TILE_H TILE_W) = 1.41x the conv1/conv2 work of an untiled
// network for the 16 x 32 tile (the halo is recomputed by neighbouring blocks).
#include "srcnn_common.cuh"

#include "srcnn_fused_config.cuh"

// Dynamic shared memory the host must provide for one block (bytes): features + window below.
#define SRCNN_F32_SMEM_BYTES (4 * (N2 * REGION_H * REGION_W + WINDOW_H * WINDOW_W))
SRCNN_CHECK_SMEM_BYTES(SRCNN_F32_SMEM_BYTES);

__constant__ float c_w1[F1 * F1 * N1];  // HWIO with I = 1: [dy][dx][c]
__constant__ float c_b1[N1];
__constant__ float c_w2[N1 * N2];       // [k][c]
__constant__ float c_b2[N2];
__constant__ float c_w3[F3 * F3 * N2];  // [dy][dx][c]
__constant__ float c_b3[1];

// lr: h x w LR luma (row pitch lr_pitch floats); out: (scale h) x (scale w) HR luma (row pitch
// out_pitch floats). blockIdx.z indexes frames of a batch, each `lr_frame` / `out_frame`
// floats apart.
extern "C" __global__ void __launch_bounds__(THREADS)
srcnn_fused_f32(const float* __restrict__ lr, int lr_pitch, long long lr_frame, int h, int w,
                int scale, float* __restrict__ out, int out_pitch, long long out_frame) {
    SRCNN_DYNAMIC_SHARED(float, smem);
    float* features = smem;                               // [N2][REGION_H][REGION_W]
    float* window = smem + N2 * REGION_H * REGION_W;      // [WINDOW_H][WINDOW_W]

    const int H = h * scale, W = w * scale;
    const int y0 = blockIdx.y * TILE_H, x0 = blockIdx.x * TILE_W;
    lr += blockIdx.z * lr_frame;
    out += blockIdx.z * out_frame;

    // 1. Upscaled input window (HR coordinates clamped: conv1's replicate padding).
    for (int i = threadIdx.x; i < WINDOW_H * WINDOW_W; i += THREADS) {
        const int y = srcnn_clamp(y0 - R3 - R1 + i / WINDOW_W, 0, H - 1);
        const int x = srcnn_clamp(x0 - R3 - R1 + i % WINDOW_W, 0, W - 1);
        window[i] = srcnn_bicubic(lr, lr_pitch, h, w, scale, y, x);
    }
    __syncthreads();

    // 2. conv1 + ReLU + conv2 + ReLU per pixel of the conv2 region, in registers.
    for (int p = threadIdx.x; p < REGION_H * REGION_W; p += THREADS) {
        // Clamped position: outside the image, conv2's output is its edge pixel's output.
        const int ry = srcnn_clamp(y0 - R3 + p / REGION_W, 0, H - 1) - (y0 - R3);
        const int rx = srcnn_clamp(x0 - R3 + p % REGION_W, 0, W - 1) - (x0 - R3);
        float f1[N1];
#pragma unroll
        for (int c = 0; c < N1; ++c) f1[c] = c_b1[c];
#pragma unroll
        for (int dy = 0; dy < F1; ++dy) {
#pragma unroll
            for (int dx = 0; dx < F1; ++dx) {
                const float v = window[(ry + dy) * WINDOW_W + rx + dx];
#pragma unroll
                for (int c = 0; c < N1; ++c) f1[c] = fmaf(v, c_w1[(dy * F1 + dx) * N1 + c], f1[c]);
            }
        }
        float f2[N2];
#pragma unroll
        for (int c = 0; c < N2; ++c) f2[c] = c_b2[c];
#pragma unroll
        for (int k = 0; k < N1; ++k) {
            const float v = fmaxf(f1[k], 0.0f);
#pragma unroll
            for (int c = 0; c < N2; ++c) f2[c] = fmaf(v, c_w2[k * N2 + c], f2[c]);
        }
#pragma unroll
        for (int c = 0; c < N2; ++c) features[c * REGION_H * REGION_W + p] = fmaxf(f2[c], 0.0f);
    }
    __syncthreads();

    // 3. conv3 for each output pixel of the tile.
    for (int o = threadIdx.x; o < TILE_H * TILE_W; o += THREADS) {
        const int ty = o / TILE_W, tx = o % TILE_W;
        const int y = y0 + ty, x = x0 + tx;
        float acc = c_b3[0];
#pragma unroll
        for (int dy = 0; dy < F3; ++dy) {
#pragma unroll
            for (int dx = 0; dx < F3; ++dx) {
                const float* f = features + (ty + dy) * REGION_W + tx + dx;
#pragma unroll
                for (int c = 0; c < N2; ++c)
                    acc = fmaf(f[c * REGION_H * REGION_W], c_w3[(dy * F3 + dx) * N2 + c], acc);
            }
        }
        if (y < H && x < W) out[(long long)y * out_pitch + x] = acc;
    }
}
