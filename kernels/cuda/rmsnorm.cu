// CUDA twin of kernels/cpu/rmsnorm.c (HF LlamaRMSNorm), fused with the residual add that precedes
// every norm of the model; float32 or bfloat16 activations and weights, statistics in float32.
#include "common.cuh"

namespace {

// One block per row (grid-stride past 64K rows); the row is read twice (sum of squares, then
// scale), the second time from L1/L2. 256 threads cover D = 4096 in 16 strided loads each;
// narrower rows get one thread per element, rounded up to a warp.
constexpr size_t kMaxRowBlocks = 65536;
// Backward: a fixed number of blocks (a function of N only, so the dw reduction order does not
// depend on the GPU), each owning rows blockIdx.x, blockIdx.x + G, ... and a float32 partial dw in
// shared memory; a second kernel adds the G partials to dw in block order.
constexpr size_t kMaxBackwardBlocks = 512;

int row_threads(int D) {
    const int rounded = (D + 31) / 32 * 32;
    return rounded < 256 ? rounded : 256;
}

size_t backward_blocks(size_t N) { return N < kMaxBackwardBlocks ? N : kMaxBackwardBlocks; }

// The value a T holds: the norm is computed from the x the backward will read back.
__device__ __forceinline__ float stored_value(float x, const float *) { return x; }
__device__ __forceinline__ float stored_value(float x, const __nv_bfloat16 *) {
    return __bfloat162float(__float2bfloat16_rn(x));
}

// out (N, D), rstd (N); x_out may alias a (each element is read, then written, by one thread).
template <typename T>
__global__ void rmsnorm_forward_kernel(T *__restrict__ out, float *__restrict__ rstd, T *x_out,
                                       const T *a, const T *__restrict__ b,
                                       const T *__restrict__ w, size_t N, int D, float eps) {
    for (size_t row = blockIdx.x; row < N; row += gridDim.x) {
        const size_t base = row * D;
        // With a residual, x = a + b is stored first; the second loop reads it back from x_out.
        const T *x = b != nullptr ? x_out + base : a + base;
        float ss = 0.0f;
        for (int i = threadIdx.x; i < D; i += blockDim.x) {
            float xi = load_f32(a + base + i);
            if (b != nullptr) {
                xi = stored_value(xi + load_f32(b + base + i), x_out);
                store_f32(x_out + base + i, xi);
            }
            ss += xi * xi;
        }
        ss = block_sum(ss);
        const float r = 1.0f / sqrtf(ss / (float)D + eps);
        for (int i = threadIdx.x; i < D; i += blockDim.x)
            store_f32(out + base + i, load_f32(w + i) * (r * load_f32(x + i)));
        if (threadIdx.x == 0) rstd[row] = r;
    }
}

// With g = dout * w: dx += r * g - x * r^3 * mean(g * x); the partial dw of this block's rows
// goes to partial_dw (G, D).
template <typename T>
__global__ void rmsnorm_backward_kernel(T *__restrict__ dx, float *__restrict__ partial_dw,
                                        const T *__restrict__ dout, const T *__restrict__ x,
                                        const T *__restrict__ w, const float *__restrict__ rstd,
                                        size_t N, int D) {
    LETHE_DYNAMIC_SMEM(float, dw_block);  // (D): column i belongs to thread i % blockDim.x
    for (int i = threadIdx.x; i < D; i += blockDim.x) dw_block[i] = 0.0f;
    for (size_t row = blockIdx.x; row < N; row += gridDim.x) {
        const size_t base = row * D;
        const float r = rstd[row];
        float dot = 0.0f;
        for (int i = threadIdx.x; i < D; i += blockDim.x)
            dot += load_f32(dout + base + i) * load_f32(w + i) * load_f32(x + base + i);
        dot = block_sum(dot);
        const float c = dot * r * r * r / (float)D;
        for (int i = threadIdx.x; i < D; i += blockDim.x) {
            const float g = load_f32(dout + base + i), xi = load_f32(x + base + i);
            store_f32(dx + base + i, load_f32(dx + base + i) + (r * g * load_f32(w + i) - c * xi));
            dw_block[i] += g * (r * xi);
        }
    }
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        partial_dw[blockIdx.x * (size_t)D + i] = dw_block[i];
}

// dw (D) += sum over b of partial_dw (G, D), b in increasing order: one thread per column.
__global__ void rmsnorm_dw_sum_kernel(float *__restrict__ dw, const float *__restrict__ partial_dw,
                                      int G, int D) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D) return;
    float sum = 0.0f;
    for (int b = 0; b < G; ++b) sum += partial_dw[(size_t)b * D + i];
    dw[i] += sum;
}

template <typename T>
int rmsnorm_forward(void *out, float *rstd, void *x_out, const void *a, const void *b,
                    const void *w, size_t N, int D, float eps, cudaStream_t stream) {
    if (N == 0 || D <= 0) return 0;
    if (b != nullptr && x_out == nullptr) return (int)cudaErrorInvalidValue;
    auto kernel = rmsnorm_forward_kernel<T>;
    const dim3 grid((unsigned)(N < kMaxRowBlocks ? N : kMaxRowBlocks));
    LETHE_LAUNCH(kernel, grid, row_threads(D), 0, stream)(
        static_cast<T *>(out), rstd, static_cast<T *>(x_out), static_cast<const T *>(a),
        static_cast<const T *>(b), static_cast<const T *>(w), N, D, eps);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

template <typename T>
int rmsnorm_backward(void *dx, float *dw, void *scratch, const void *dout, const void *x,
                     const void *w, const float *rstd, size_t N, int D, cudaStream_t stream) {
    if (N == 0 || D <= 0) return 0;
    const size_t G = backward_blocks(N);
    const size_t smem = (size_t)D * sizeof(float);
    auto kernel = rmsnorm_backward_kernel<T>;
    // Rows wider than 12K floats need the opt-in to more than 48 KiB of shared memory.
    if (smem > 48 * 1024)
        LETHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              (int)smem));
    float *partial_dw = static_cast<float *>(scratch);
    LETHE_LAUNCH(kernel, dim3((unsigned)G), row_threads(D), smem, stream)(
        static_cast<T *>(dx), partial_dw, static_cast<const T *>(dout), static_cast<const T *>(x),
        static_cast<const T *>(w), rstd, N, D);
    LETHE_CUDA_CHECK(cudaGetLastError());
    LETHE_LAUNCH(rmsnorm_dw_sum_kernel, dim3((unsigned)ceil_div(D, 256)), 256, 0, stream)(
        dw, partial_dw, (int)G, D);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

}  // namespace

extern "C" int cuda_rmsnorm_forward(void *out, float *rstd, void *x_out, const void *a,
                                    const void *b, const void *w, size_t N, int D, float eps,
                                    LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16
               ? rmsnorm_forward<__nv_bfloat16>(out, rstd, x_out, a, b, w, N, D, eps, stream)
               : rmsnorm_forward<float>(out, rstd, x_out, a, b, w, N, D, eps, stream);
}

extern "C" size_t cuda_rmsnorm_backward_scratch_size(size_t N, int D) {
    return backward_blocks(N) * (size_t)(D > 0 ? D : 0) * sizeof(float);
}

extern "C" int cuda_rmsnorm_backward(void *dx, float *dw, void *scratch, const void *dout,
                                     const void *x, const void *w, const float *rstd, size_t N,
                                     int D, LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16
               ? rmsnorm_backward<__nv_bfloat16>(dx, dw, scratch, dout, x, w, rstd, N, D, stream)
               : rmsnorm_backward<float>(dx, dw, scratch, dout, x, w, rstd, N, D, stream);
}
