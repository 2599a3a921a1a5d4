// srcnn_pixels.cu: the pre- and post-processing around the network, on the GPU, so that only
// packed pixels cross the bus (DESIGN.md section 1, steps 1, 2 and 4).
//
// srcnn_unpack: packed 8-bit, 16-bit or float32 pixels (1 to 4 interleaved channels) ->
//   float planes in [0, 1]: luma (BT.601 studio range; a gray channel mapped into it as the
//   equal-channel RGB pixel would be, srcnn_fast.imageops.gray_to_luma) and, for colour, Cb and
//   Cr; the alpha channel (2 or 4 channels) as its own plane.
// srcnn_pack: HR luma (the network's output) + LR chroma/alpha planes, bicubically upscaled on
//   the fly -> RGB(A) -> clipped and rounded half to even (integer outputs) -> packed pixels.
//   Float32 outputs are not clipped, as in srcnn_fast.imageops.
//
// One thread per pixel, 256 threads per block, no shared memory; registers are few (the compile
// gate reports them). `bits` is 8, 16 or 32 (float).
#include "srcnn_common.cuh"

__device__ __forceinline__ float srcnn_load_sample(const void* p, long long i, int bits) {
    if (bits == 8) return static_cast<const unsigned char*>(p)[i] * (1.0f / 255.0f);
    if (bits == 16) return static_cast<const unsigned short*>(p)[i] * (1.0f / 65535.0f);
    return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void srcnn_store_sample(void* p, long long i, int bits, float v) {
    if (bits == 32) {
        static_cast<float*>(p)[i] = v;
        return;
    }
    const float full = bits == 8 ? 255.0f : 65535.0f;
    const int q = __float2int_rn(fminf(fmaxf(v, 0.0f), 1.0f) * full);  // half to even
    if (bits == 8) static_cast<unsigned char*>(p)[i] = static_cast<unsigned char>(q);
    else static_cast<unsigned short*>(p)[i] = static_cast<unsigned short>(q);
}

// BT.601 studio range, both ways, row-major 3x3, from srcnn_fast.imageops (computed on the host
// so that GPU and CPU use the same constants): ycc = offset + M rgb, rgb = M^-1 (ycc - offset).
__constant__ float c_rgb_to_ycc[9];
__constant__ float c_ycc_offset[3];
__constant__ float c_ycc_to_rgb[9];

// planes: [0] luma, [1] Cb, [2] Cr (colour only), [3] alpha (if any); each n floats apart.
extern "C" __global__ void srcnn_unpack(const void* __restrict__ pixels, int bits, int channels,
                                        long long n, float* __restrict__ planes) {
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s[4];
    for (int c = 0; c < channels; ++c) s[c] = srcnn_load_sample(pixels, i * channels + c, bits);
    if (channels >= 3) {
        for (int c = 0; c < 3; ++c)
            planes[c * n + i] = c_ycc_offset[c] + c_rgb_to_ycc[3 * c] * s[0] +
                                c_rgb_to_ycc[3 * c + 1] * s[1] + c_rgb_to_ycc[3 * c + 2] * s[2];
    } else {
        // The luma row summed: Y of (g, g, g), the range the network was trained on.
        const float gain = c_rgb_to_ycc[0] + c_rgb_to_ycc[1] + c_rgb_to_ycc[2];
        planes[i] = c_ycc_offset[0] + gain * s[0];
    }
    if (channels == 2 || channels == 4) planes[3 * n + i] = s[channels - 1];
}

// luma: HR (H x W); planes: the LR planes of srcnn_unpack (h x w each, n = h w apart).
extern "C" __global__ void srcnn_pack(const float* __restrict__ luma,
                                      const float* __restrict__ planes, int h, int w, int scale,
                                      int channels, int bits, void* __restrict__ pixels) {
    const int W = w * scale, H = h * scale;
    const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i >= (long long)H * W) return;
    const int y = static_cast<int>(i / W), x = static_cast<int>(i % W);
    const long long n = (long long)h * w;
    const float Y = luma[i];
    if (channels >= 3) {
        const float cb = srcnn_bicubic(planes + n, w, h, w, scale, y, x) - c_ycc_offset[1];
        const float cr = srcnn_bicubic(planes + 2 * n, w, h, w, scale, y, x) - c_ycc_offset[2];
        const float yy = Y - c_ycc_offset[0];
        for (int c = 0; c < 3; ++c) {
            const float v = c_ycc_to_rgb[3 * c] * yy + c_ycc_to_rgb[3 * c + 1] * cb +
                            c_ycc_to_rgb[3 * c + 2] * cr;
            srcnn_store_sample(pixels, i * channels + c, bits, v);
        }
    } else {
        // Back from studio range: R of (Y, 128, 128), 255/219 (Y - 16/255).
        srcnn_store_sample(pixels, i * channels, bits, c_ycc_to_rgb[0] * (Y - c_ycc_offset[0]));
    }
    if (channels == 2 || channels == 4) {
        const float a = srcnn_bicubic(planes + 3 * n, w, h, w, scale, y, x);
        srcnn_store_sample(pixels, i * channels + channels - 1, bits, a);
    }
}
