// srcnn_fused_tc.cu: the whole SRCNN network (bicubic, then three "same" convolutions that each
// read their input edge-replicated; DESIGN.md section 1) in one kernel, with the three
// convolutions as GEMMs on tensor cores: f16 inputs and weights, FP32 accumulation, bias and
// ReLU in FP32. Same parameters, #defines and border semantics as srcnn_fused_f32.cu; only the
// arithmetic differs (operands rounded to f16, to nearest even). Needs sm_80+ (mma.m16n8k16 with
// f16 inputs, cvt.rn.f16x2.f32); the host (srcnn_fast/backends/cuda_tensorcore.py) refuses
// older GPUs.
//
// Tiling. A block owns a TILE_H x TILE_W tile of HR output pixels; as in the FP32 kernel it
//   1. upscales its (TILE_H + 2 R3 + 2 R1) x (TILE_W + 2 R3 + 2 R1) input window into shared
//      memory (HR coordinates clamped: conv1's replicate padding), and copies the f16 weight
//      fragments (prepared by the host in mma B-fragment order) from constant to shared memory;
//   2. splits the REGION_H x REGION_W conv2 region (tile + R3 halo; a pixel outside the image is
//      computed at its clamped position, conv2's replicate padding as conv3 reads it) into
//      groups of 16 pixels, one group per warp at a time, and runs per group, in registers:
//        conv1  [16 px x K1P] x [K1P x N1P]: A = im2col of the window on the fly (81 taps
//               padded to 96 with zeros), B = w1; D initialised with b1; ReLU;
//        conv2  [16 px x N1P] x [N1P x N2P]: A = conv1's D fragments packed to f16 (the D
//               fragments of n-tiles 2s, 2s+1 are the A fragment of k-step s); b2; ReLU;
//        conv3  [16 px x N2P] x [N2P x T3P]: B[c][dy F3 + dx] = w3[dy][dx][c], so row p of D is
//               pixel p's contribution to each of the F3 x F3 output pixels around it;
//      and stores the F3 x F3 contributions per region pixel in shared memory;
//   3. gathers, for each output pixel, the F3 x F3 contributions that land on it (+ b3), FP32.
// The padded rows/columns of the GEMMs carry zero weights (and zero A entries for conv1's
// padded taps), so padding changes no result.
//
// Per 16 pixels (9-1-5, 64/32 maps): 6 x 8 + 4 x 4 + 2 x 4 = 72 mma.m16n8k16.
//
// Resource budget (defaults: 9-1-5, 64/32 maps, 16 x 32 tile, 256 threads = 8 warps; 720
// region pixels = 45 groups of 16):
//   shared memory (dynamic): contributions T3 x CSTRIDE x 4 B = 25 x 724 x 4 = 72,400 B
//     (stride 724 = 4 mod 16 words: conflict-free stores from the D fragments)
//   + input window 28 x 44 x 4 B = 4,928 B + weight fragments (48 + 16 + 8) x 256 B = 18,432 B
//   + biases (64 + 32) x 4 B = 384 B; total 96,144 B (SRCNN_TC_SMEM_BYTES; the host computes the
//   same number and passes it as SRCNN_SMEM_BYTES, which this file checks). Fits sm_86/sm_89
//   (99 KB per block); sm_80 and sm_90 run 1 and 2 blocks per SM.
//   registers: 32 conv1 accumulators + 16 conv2 accumulators/A fragments + addressing; the
//   compile gate (NVRTC 12.9) reports 98 on sm_86/89/90 and 123 on sm_80, no spills;
//   constant memory: 18,432 B of f16 fragments + 388 B of biases + the bicubic weights.
#include "srcnn_common.cuh"
#include "srcnn_warp.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "srcnn_fused_tc needs sm_80 or newer (mma.m16n8k16 with f16 inputs)"
#endif

#include "srcnn_fused_config.cuh"

#define REGION_PIXELS (REGION_H * REGION_W)
#define WARPS (THREADS / 32)
#define GROUPS ((REGION_PIXELS + 15) / 16)

// GEMM sizes, padded to the mma shape (k-steps of 16, n-tiles of 8; N1P and N2P are also the K
// of the next GEMM, so they are padded to 16).
#define T1 (F1 * F1)
#define K1P ((T1 + 15) / 16 * 16)
#define N1P ((N1 + 15) / 16 * 16)
#define N2P ((N2 + 15) / 16 * 16)
#define T3 (F3 * F3)
#define T3P ((T3 + 7) / 8 * 8)
#define KS1 (K1P / 16)
#define NT1 (N1P / 8)
#define KS2 (N1P / 16)
#define NT2 (N2P / 8)
#define KS3 (N2P / 16)
#define NT3 (T3P / 8)
// Words (2 f16 each) of each layer's B fragments: 2 per lane per (k-step, n-tile).
#define W1_WORDS (KS1 * NT1 * 64)
#define W2_WORDS (KS2 * NT2 * 64)
#define W3_WORDS (KS3 * NT3 * 64)
// Row stride of the contribution planes: >= REGION_PIXELS and = 4 (mod 16) words, so that the
// stores of a D fragment (8 pixels x taps 2t + {0, 1}) hit 32 different banks.
#define CSTRIDE ((REGION_PIXELS + 11) / 16 * 16 + 4)
// Dynamic shared memory the host must provide for one block (bytes).
#define SRCNN_TC_SMEM_BYTES \
    (4 * (W1_WORDS + W2_WORDS + W3_WORDS + N1P + N2P + WINDOW_H * WINDOW_W + T3 * CSTRIDE))
SRCNN_CHECK_SMEM_BYTES(SRCNN_TC_SMEM_BYTES);

static_assert(THREADS % 32 == 0, "THREADS must be a whole number of warps");

// B fragments in f16 pairs, ordered [k-step][n-tile][lane][2] (see srcnn_warp.cuh):
//   c_w1h: B1[k][n] = w1[k / F1][k % F1][0][n] (k < T1, n < N1; zero elsewhere)
//   c_w2h: B2[k][n] = w2[0][0][k][n]
//   c_w3h: B3[k][n] = w3[n / F3][n % F3][k][0] (n < T3)
__constant__ unsigned c_w1h[W1_WORDS];
__constant__ unsigned c_w2h[W2_WORDS];
__constant__ unsigned c_w3h[W3_WORDS];
__constant__ float c_b1[N1P];  // zero-padded
__constant__ float c_b2[N2P];
__constant__ float c_b3[1];

// Value of conv1's A matrix at tap k for the pixel whose window row starts at `base`.
__device__ __forceinline__ float srcnn_tc_tap(const float* window, int base, int k) {
    return k < T1 ? window[base + (k / F1) * WINDOW_W + k % F1] : 0.0f;
}

// Register of conv1's A fragment: taps k and k + 1 of the pixel whose window starts at `base`.
__device__ __forceinline__ unsigned srcnn_tc_taps(const float* window, int base, int k) {
    return srcnn_pack_f16x2(srcnn_tc_tap(window, base, k), srcnn_tc_tap(window, base, k + 1));
}

// A fragment of k-step s of the next GEMM from this GEMM's D fragments of n-tiles 2s (d0) and
// 2s + 1 (d1): ReLU, then f16 (layouts in srcnn_warp.cuh).
__device__ __forceinline__ void srcnn_tc_relu_fragment(unsigned a[4], const float d0[4],
                                                       const float d1[4]) {
    a[0] = srcnn_pack_f16x2(fmaxf(d0[0], 0.0f), fmaxf(d0[1], 0.0f));
    a[1] = srcnn_pack_f16x2(fmaxf(d0[2], 0.0f), fmaxf(d0[3], 0.0f));
    a[2] = srcnn_pack_f16x2(fmaxf(d1[0], 0.0f), fmaxf(d1[1], 0.0f));
    a[3] = srcnn_pack_f16x2(fmaxf(d1[2], 0.0f), fmaxf(d1[3], 0.0f));
}

// lr: h x w LR luma (row pitch lr_pitch floats); out: (scale h) x (scale w) HR luma (row pitch
// out_pitch floats). blockIdx.z indexes frames of a batch, each `lr_frame` / `out_frame`
// floats apart.
extern "C" __global__ void __launch_bounds__(THREADS)
srcnn_fused_tc(const float* __restrict__ lr, int lr_pitch, long long lr_frame, int h, int w,
               int scale, float* __restrict__ out, int out_pitch, long long out_frame) {
    SRCNN_DYNAMIC_SHARED(float, smem);
    unsigned* w1s = reinterpret_cast<unsigned*>(smem);     // [KS1][NT1][32][2]
    unsigned* w2s = w1s + W1_WORDS;                        // [KS2][NT2][32][2]
    unsigned* w3s = w2s + W2_WORDS;                        // [KS3][NT3][32][2]
    float* b1s = reinterpret_cast<float*>(w3s + W3_WORDS);  // [N1P]
    float* b2s = b1s + N1P;                                // [N2P]
    float* window = b2s + N2P;                             // [WINDOW_H][WINDOW_W]
    float* contrib = window + WINDOW_H * WINDOW_W;         // [T3][CSTRIDE]

    const int H = h * scale, W = w * scale;
    const int y0 = blockIdx.y * TILE_H, x0 = blockIdx.x * TILE_W;
    lr += blockIdx.z * lr_frame;
    out += blockIdx.z * out_frame;

    // 1. Weights to shared memory; upscaled input window (HR coordinates clamped).
    for (int i = threadIdx.x; i < W1_WORDS; i += THREADS) w1s[i] = c_w1h[i];
    for (int i = threadIdx.x; i < W2_WORDS; i += THREADS) w2s[i] = c_w2h[i];
    for (int i = threadIdx.x; i < W3_WORDS; i += THREADS) w3s[i] = c_w3h[i];
    for (int i = threadIdx.x; i < N1P; i += THREADS) b1s[i] = c_b1[i];
    for (int i = threadIdx.x; i < N2P; i += THREADS) b2s[i] = c_b2[i];
    for (int i = threadIdx.x; i < WINDOW_H * WINDOW_W; i += THREADS) {
        const int y = srcnn_clamp(y0 - R3 - R1 + i / WINDOW_W, 0, H - 1);
        const int x = srcnn_clamp(x0 - R3 - R1 + i % WINDOW_W, 0, W - 1);
        window[i] = srcnn_bicubic(lr, lr_pitch, h, w, scale, y, x);
    }
    __syncthreads();

    // 2. conv1 -> conv2 -> conv3 contributions, 16 region pixels per warp at a time.
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane >> 2, t = lane & 3;
    for (int group = warp; group < GROUPS; group += WARPS) {  // warp-uniform
        // This lane's two pixels: rows g and g + 8 of the group (a tail pixel past the region
        // repeats the last one and is not stored).
        const int p0 = group * 16 + g, p1 = p0 + 8;
        int base0, base1;
        {
            const int q0 = min(p0, REGION_PIXELS - 1), q1 = min(p1, REGION_PIXELS - 1);
            const int ry0 = srcnn_clamp(y0 - R3 + q0 / REGION_W, 0, H - 1) - (y0 - R3);
            const int rx0 = srcnn_clamp(x0 - R3 + q0 % REGION_W, 0, W - 1) - (x0 - R3);
            const int ry1 = srcnn_clamp(y0 - R3 + q1 / REGION_W, 0, H - 1) - (y0 - R3);
            const int rx1 = srcnn_clamp(x0 - R3 + q1 % REGION_W, 0, W - 1) - (x0 - R3);
            base0 = ry0 * WINDOW_W + rx0;
            base1 = ry1 * WINDOW_W + rx1;
        }

        // conv1: D = im2col(window) x B1 + b1.
        float acc1[NT1][4];
#pragma unroll
        for (int j = 0; j < NT1; ++j) {
            const float lo = b1s[8 * j + 2 * t], hi = b1s[8 * j + 2 * t + 1];
            acc1[j][0] = lo, acc1[j][1] = hi, acc1[j][2] = lo, acc1[j][3] = hi;
        }
#pragma unroll
        for (int s = 0; s < KS1; ++s) {
            const int k = 16 * s + 2 * t;
            unsigned a[4];
            a[0] = srcnn_tc_taps(window, base0, k);
            a[1] = srcnn_tc_taps(window, base1, k);
            a[2] = srcnn_tc_taps(window, base0, k + 8);
            a[3] = srcnn_tc_taps(window, base1, k + 8);
#pragma unroll
            for (int j = 0; j < NT1; ++j) {
                unsigned b[2];
                srcnn_load_b_fragment(b, w1s + ((s * NT1 + j) * 32 + lane) * 2);
                srcnn_mma_f16_m16n8k16(acc1[j], a, b, acc1[j]);
            }
        }

        // conv2: A = f16(ReLU(conv1)), straight from the D fragments; D = A x B2 + b2.
        float acc2[NT2][4];
#pragma unroll
        for (int j = 0; j < NT2; ++j) {
            const float lo = b2s[8 * j + 2 * t], hi = b2s[8 * j + 2 * t + 1];
            acc2[j][0] = lo, acc2[j][1] = hi, acc2[j][2] = lo, acc2[j][3] = hi;
        }
#pragma unroll
        for (int s = 0; s < KS2; ++s) {
            unsigned a[4];
            srcnn_tc_relu_fragment(a, acc1[2 * s], acc1[2 * s + 1]);
#pragma unroll
            for (int j = 0; j < NT2; ++j) {
                unsigned b[2];
                srcnn_load_b_fragment(b, w2s + ((s * NT2 + j) * 32 + lane) * 2);
                srcnn_mma_f16_m16n8k16(acc2[j], a, b, acc2[j]);
            }
        }

        // conv3 contributions: A = f16(ReLU(conv2)); D[p][dy F3 + dx] = sum_c A[p][c] w3[dy][dx][c]
        float acc3[NT3][4];
#pragma unroll
        for (int j = 0; j < NT3; ++j) acc3[j][0] = acc3[j][1] = acc3[j][2] = acc3[j][3] = 0.0f;
#pragma unroll
        for (int s = 0; s < KS3; ++s) {
            unsigned a[4];
            srcnn_tc_relu_fragment(a, acc2[2 * s], acc2[2 * s + 1]);
#pragma unroll
            for (int j = 0; j < NT3; ++j) {
                unsigned b[2];
                srcnn_load_b_fragment(b, w3s + ((s * NT3 + j) * 32 + lane) * 2);
                srcnn_mma_f16_m16n8k16(acc3[j], a, b, acc3[j]);
            }
        }
#pragma unroll
        for (int j = 0; j < NT3; ++j) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int tap = 8 * j + 2 * t + (i & 1), p = i < 2 ? p0 : p1;
                if (tap < T3 && p < REGION_PIXELS) contrib[tap * CSTRIDE + p] = acc3[j][i];
            }
        }
    }
    __syncthreads();

    // 3. conv3: each output pixel gathers the F3 x F3 contributions that land on it (FP32).
    for (int o = threadIdx.x; o < TILE_H * TILE_W; o += THREADS) {
        const int ty = o / TILE_W, tx = o % TILE_W;
        const int y = y0 + ty, x = x0 + tx;
        float acc = 0.0f;
#pragma unroll
        for (int dy = 0; dy < F3; ++dy) {
#pragma unroll
            for (int dx = 0; dx < F3; ++dx)
                acc += contrib[(dy * F3 + dx) * CSTRIDE + (ty + dy) * REGION_W + tx + dx];
        }
        acc += c_b3[0];
        if (y < H && x < W) out[(long long)y * out_pitch + x] = acc;
    }
}
