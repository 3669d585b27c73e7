// CUDA twin of kernels/cpu/rope.c: HF rotate-half RoPE in place, positions restarting in every
// sample of the packed batch, and its transpose for the backward; and of rope_forward_at
// (kernels/cpu/decode.c): explicit positions, for decoding.
#include "common.cuh"

#include <math.h>

namespace {

constexpr int kMaxHalf = 128;  // hd <= 256

// The inverse frequencies, computed on the host with the CPU twin's very expression
// (1 / powf(theta, 2i / hd) in float): the GPU's powf may differ by an ulp, and at position 4096
// one ulp of a frequency near 1 moves the angle by 2e-4 rad. Passed by value as a kernel
// parameter (512 bytes at most).
struct InvFreq {
    float v[kMaxHalf];
};

// One block per token (grid-stride past 64K tokens). Thread t always rotates pair i = t % half of
// heads t / half, t / half + heads_per_block, ...: it computes its cos/sin once per token and
// needs neither shared memory nor barriers. blockDim = half * heads_per_block <= 256.
constexpr size_t kMaxTokenBlocks = 65536;

// x (N, n_heads, hd); token n is at position positions[n] when positions is not NULL, else at
// its place in its sample (offsets, n_samples + 1). sign = -1 rotates by the transpose.
template <typename T>
__global__ void rope_kernel(T *__restrict__ x, const int64_t *__restrict__ offsets, int n_samples,
                            const int32_t *__restrict__ positions, size_t N, int n_heads, int hd,
                            InvFreq inv_freq, float sign) {
    const int half = hd / 2;
    const int i = threadIdx.x % half, h0 = threadIdx.x / half;
    const int heads_per_block = blockDim.x / half;
    for (size_t n = blockIdx.x; n < N; n += gridDim.x) {
        int pos;
        if (positions != nullptr) {
            pos = positions[n];
        } else {
            // The sample holding token n: the last s with offsets[s] <= n (binary search).
            int lo = 0, hi = n_samples - 1;
            while (lo < hi) {
                const int mid = (lo + hi + 1) / 2;
                if ((size_t)offsets[mid] <= n) lo = mid;
                else hi = mid - 1;
            }
            pos = (int)(n - (size_t)offsets[lo]);
        }
        const float angle = (float)pos * inv_freq.v[i];
        const float c = cosf(angle), s = sign * sinf(angle);
        for (int h = h0; h < n_heads; h += heads_per_block) {
            T *xh = x + (n * n_heads + h) * (size_t)hd;
            const float a = load_f32(xh + i), b = load_f32(xh + i + half);
            store_f32(xh + i, a * c - b * s);
            store_f32(xh + i + half, b * c + a * s);
        }
    }
}

template <typename T>
int rope(void *x, const int64_t *offsets, int n_samples, const int32_t *positions, size_t N,
         int n_heads, int hd, float theta, float sign, cudaStream_t stream) {
    if (N == 0 || n_heads <= 0) return 0;
    if (hd <= 0 || hd % 2 != 0 || hd / 2 > kMaxHalf || (positions == nullptr && n_samples <= 0))
        return (int)cudaErrorInvalidValue;
    const int half = hd / 2;
    InvFreq inv_freq = {};
    for (int i = 0; i < half; i++) inv_freq.v[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    int heads_per_block = 256 / half;
    if (heads_per_block > n_heads) heads_per_block = n_heads;
    const dim3 grid((unsigned)(N < kMaxTokenBlocks ? N : kMaxTokenBlocks));
    auto kernel = rope_kernel<T>;
    LETHE_LAUNCH(kernel, grid, half * heads_per_block, 0, stream)(
        static_cast<T *>(x), offsets, n_samples, positions, N, n_heads, hd, inv_freq, sign);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

}  // namespace

extern "C" int cuda_rope_forward(void *x, const int64_t *offsets, int n_samples, size_t N,
                                 int n_heads, int hd, float theta, LetheDtype dtype,
                                 LetheStream stream) {
    return dtype == LETHE_BF16 ? rope<__nv_bfloat16>(x, offsets, n_samples, nullptr, N, n_heads,
                                                     hd, theta, 1.0f, stream)
                               : rope<float>(x, offsets, n_samples, nullptr, N, n_heads, hd,
                                             theta, 1.0f, stream);
}

// A rotation's inverse is its transpose: the same angles with sin negated.
extern "C" int cuda_rope_backward(void *dx, const int64_t *offsets, int n_samples, size_t N,
                                  int n_heads, int hd, float theta, LetheDtype dtype,
                                  LetheStream stream) {
    return dtype == LETHE_BF16 ? rope<__nv_bfloat16>(dx, offsets, n_samples, nullptr, N, n_heads,
                                                     hd, theta, -1.0f, stream)
                               : rope<float>(dx, offsets, n_samples, nullptr, N, n_heads, hd,
                                             theta, -1.0f, stream);
}

// Decoding: row n at absolute position pos[n] (device int32).
extern "C" int cuda_rope_forward_at(void *x, const int32_t *pos, size_t N, int n_heads, int hd,
                                    float theta, LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16
               ? rope<__nv_bfloat16>(x, nullptr, 0, pos, N, n_heads, hd, theta, 1.0f, stream)
               : rope<float>(x, nullptr, 0, pos, N, n_heads, hd, theta, 1.0f, stream);
}
