// CUDA twin of kernels/cpu/rows_mse.c: per-row mean squared error of hidden states to a target
// row or vector (RMU's hidden-state loss), float32 or bfloat16 rows, sums in double.
#include "common.cuh"

namespace {

// One block per row (grid-stride past 64K rows), one thread per column rounded up to a warp, at
// most 256 (rmsnorm.cu's layout): a 4096-wide row is 16 strided loads per thread.
constexpr size_t kMaxRowBlocks = 65536;

int row_threads(int D) {
    const int rounded = (D + 31) / 32 * 32;
    return rounded < 256 ? rounded : 256;
}

dim3 row_grid(size_t M) { return dim3((unsigned)(M < kMaxRowBlocks ? M : kMaxRowBlocks)); }

// Row `row`'s target at column i: its own row, or the shared float32 vector.
template <typename T>
__device__ __forceinline__ float target_at(const T *target_rows, const float *target_vec,
                                           size_t row, int D, int i) {
    return target_rows != nullptr ? load_f32(target_rows + row * D + i) : target_vec[i];
}

// Every thread of a block walks the same rows (row depends on blockIdx alone), so the barriers
// of block_sum are reached uniformly.
template <typename T>
__global__ void rows_mse_forward_kernel(float *__restrict__ mse, const T *__restrict__ h,
                                        const T *__restrict__ target_rows,
                                        const float *__restrict__ target_vec, size_t M, int D) {
    for (size_t row = blockIdx.x; row < M; row += gridDim.x) {
        double s = 0.0;
        for (int i = threadIdx.x; i < D; i += blockDim.x) {
            const double diff = (double)load_f32(h + row * D + i) -
                                (double)target_at(target_rows, target_vec, row, D, i);
            s += diff * diff;
        }
        s = block_sum(s);
        if (threadIdx.x == 0) mse[row] = (float)(s / D);
    }
}

// dh = weight * 2/D * (h - y) in float, the CPU twin's expression: the same bits in float32.
template <typename T>
__global__ void rows_mse_backward_kernel(T *__restrict__ dh, const T *__restrict__ h,
                                         const T *__restrict__ target_rows,
                                         const float *__restrict__ target_vec,
                                         const float *__restrict__ weight, size_t M, int D) {
    for (size_t row = blockIdx.x; row < M; row += gridDim.x) {
        const float scale = 2.0f * weight[row] / (float)D;
        for (int i = threadIdx.x; i < D; i += blockDim.x)
            store_f32(dh + row * D + i, scale * (load_f32(h + row * D + i) -
                                                 target_at(target_rows, target_vec, row, D, i)));
    }
}

template <typename T>
int rows_mse_forward(float *mse, const void *h, const void *target_rows, const float *target_vec,
                     size_t M, int D, cudaStream_t stream) {
    if (target_rows == nullptr && target_vec == nullptr) return (int)cudaErrorInvalidValue;
    if (M == 0 || D <= 0) return 0;
    auto kernel = rows_mse_forward_kernel<T>;
    LETHE_LAUNCH(kernel, row_grid(M), row_threads(D), 0, stream)(
        mse, static_cast<const T *>(h), static_cast<const T *>(target_rows), target_vec, M, D);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

template <typename T>
int rows_mse_backward(void *dh, const void *h, const void *target_rows, const float *target_vec,
                      const float *weight, size_t M, int D, cudaStream_t stream) {
    if (target_rows == nullptr && target_vec == nullptr) return (int)cudaErrorInvalidValue;
    if (M == 0 || D <= 0) return 0;
    auto kernel = rows_mse_backward_kernel<T>;
    LETHE_LAUNCH(kernel, row_grid(M), row_threads(D), 0, stream)(
        static_cast<T *>(dh), static_cast<const T *>(h), static_cast<const T *>(target_rows),
        target_vec, weight, M, D);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

}  // namespace

extern "C" int cuda_rows_mse_forward(float *mse, const void *h, const void *target_rows,
                                     const float *target_vec, size_t M, int D, LetheDtype dtype,
                                     LetheStream stream) {
    return dtype == LETHE_BF16
               ? rows_mse_forward<__nv_bfloat16>(mse, h, target_rows, target_vec, M, D, stream)
               : rows_mse_forward<float>(mse, h, target_rows, target_vec, M, D, stream);
}

extern "C" int cuda_rows_mse_backward(void *dh, const void *h, const void *target_rows,
                                      const float *target_vec, const float *weight, size_t M,
                                      int D, LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16 ? rows_mse_backward<__nv_bfloat16>(dh, h, target_rows, target_vec,
                                                                  weight, M, D, stream)
                               : rows_mse_backward<float>(dh, h, target_rows, target_vec, weight,
                                                          M, D, stream);
}
