// CUDA twin of kernels/cpu/matmul.c: out = inp @ w^T + bias on cuBLAS (fp32 accumulation), its
// backward, and the bias fill and deterministic bias-gradient column sums as small kernels.
#include "common.cuh"

#include <cublas_v2.h>
#include <limits.h>

namespace {

// cuBLAS is column-major, and a row-major (R, K) matrix is the column-major K x R matrix with
// leading dimension K: its transpose, for free. Every product below is therefore written for the
// transposes (shapes row-major as in the CPU twin; "as m x n" = the column-major view):
//   out = inp @ w^T     ->  out^T (OC x N)  = op_T(w as C x OC)     * op_N(inp as C x N)
//   dinp += dout @ w    ->  dinp^T (C x N)  = op_N(w as C x OC)     * op_N(dout as OC x N)
//   dw += dout^T @ inp  ->  dw^T (C x OC)   = op_N(inp as C x N)    * op_T(dout as OC x N)

// out (N, OC) = bias broadcast over rows. ceil(N * OC / 256) blocks (at most 64K, grid-stride) of
// 256 threads, one element each.
template <typename T>
__global__ void bias_fill_kernel(T *__restrict__ out, const T *__restrict__ bias, size_t total,
                                 int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias[i % OC];
}

// dbias (OC) += column sums of dout (N, OC), without atomics or scratch: a block of 256 threads
// owns 32 columns (one per lane, so a warp reads 32 consecutive elements of a row) and its 8 warps
// take rows w, w + 8, ...; the 8 partial sums are added in warp order. ceil(OC / 32) blocks. Llama
// has no biases (Qwen's q/k/v do), so this simple form is enough.
constexpr int kBiasColumns = 32, kBiasRowGroups = 8;
template <typename T>
__global__ void bias_backward_kernel(float *__restrict__ dbias, const T *__restrict__ dout,
                                     size_t N, int OC) {
    __shared__ float partial[kBiasRowGroups][kBiasColumns];
    const int lane = threadIdx.x % kBiasColumns, group = threadIdx.x / kBiasColumns;
    const int o = blockIdx.x * kBiasColumns + lane;
    float sum = 0.0f;
    if (o < OC) {
        for (size_t n = group; n < N; n += kBiasRowGroups) sum += load_f32(dout + n * OC + o);
    }
    partial[group][lane] = sum;
    __syncthreads();
    if (group == 0 && o < OC) {
        float total = partial[0][lane];
        for (int g = 1; g < kBiasRowGroups; ++g) total += partial[g][lane];
        dbias[o] += total;
    }
}

// A cuBLAS status as the launchers' cudaError_t contract, named on stderr.
int cublas_error(cublasStatus_t status, const char *call, int line) {
    fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, line, call,
            cublasGetStatusName(status), cublasGetStatusString(status));
    if (status == CUBLAS_STATUS_INVALID_VALUE) return (int)cudaErrorInvalidValue;
    if (status == CUBLAS_STATUS_ALLOC_FAILED) return (int)cudaErrorMemoryAllocation;
    return (int)cudaErrorUnknown;
}

#define LETHE_CUBLAS_CHECK(call)                                                          \
    do {                                                                                  \
        const cublasStatus_t lethe_cublas_s = (call);                                     \
        if (lethe_cublas_s != CUBLAS_STATUS_SUCCESS)                                      \
            return cublas_error(lethe_cublas_s, #call, __LINE__);                         \
    } while (0)

// Every GEMM uses CUBLAS_COMPUTE_32F under the default math mode: float32 inputs multiply in true
// fp32 (TF32 and the bf16x9 emulation are only used when a math mode allows them), bfloat16
// inputs on tensor cores with fp32 accumulation. DISALLOW_REDUCED_PRECISION_REDUCTION keeps
// split-K partial sums in fp32 instead of the bf16 output type. Host scalars (alpha, beta).
int prepare_handle(cublasHandle_t handle, cudaStream_t stream) {
    if (handle == nullptr) return (int)cudaErrorInvalidValue;
    LETHE_CUBLAS_CHECK(cublasSetStream(handle, stream));
    LETHE_CUBLAS_CHECK(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST));
    LETHE_CUBLAS_CHECK(cublasSetMathMode(
        handle,
        (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    return 0;
}

cudaDataType data_type(LetheDtype dtype) { return dtype == LETHE_F32 ? CUDA_R_32F : CUDA_R_16BF; }

// cuBLAS takes int dimensions.
bool shapes_fit_int(size_t N, int C, int OC) { return N <= (size_t)INT_MAX && C > 0 && OC > 0; }

}  // namespace

extern "C" int cuda_matmul_forward(void *out, const void *inp, const void *w, const void *bias,
                                   size_t N, int C, int OC, LetheDtype dtype, void *cublas,
                                   LetheStream stream) {
    if (N == 0) return 0;
    if (!shapes_fit_int(N, C, OC)) return (int)cudaErrorInvalidValue;
    cublasHandle_t handle = static_cast<cublasHandle_t>(cublas);
    const int rc = prepare_handle(handle, stream);
    if (rc != 0) return rc;
    float beta = 0.0f;
    if (bias != nullptr) {
        // out starts as the broadcast bias and cuBLAS adds the product to it (beta = 1): one
        // rounding of (product + bias) in bf16 mode, as the fp32 epilogue of the CPU twin.
        const size_t total = N * (size_t)OC;
        const size_t blocks = ceil_div(total, 256);
        const dim3 grid((unsigned)(blocks < 65536 ? blocks : 65536));
        if (dtype == LETHE_F32) {
            auto kernel = bias_fill_kernel<float>;
            LETHE_LAUNCH(kernel, grid, 256, 0, stream)(
                static_cast<float *>(out), static_cast<const float *>(bias), total, OC);
        } else {
            auto kernel = bias_fill_kernel<__nv_bfloat16>;
            LETHE_LAUNCH(kernel, grid, 256, 0, stream)(static_cast<__nv_bfloat16 *>(out),
                                                       static_cast<const __nv_bfloat16 *>(bias),
                                                       total, OC);
        }
        LETHE_CUDA_CHECK(cudaGetLastError());
        beta = 1.0f;
    }
    const float alpha = 1.0f;
    const cudaDataType t = data_type(dtype);
    LETHE_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, (int)N, C, &alpha, w, t,
                                    C, inp, t, C, &beta, out, t, OC, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
    return 0;
}

extern "C" int cuda_matmul_backward(void *dinp, float *dw, float *dbias, const void *dout,
                                    const void *inp, const void *w, size_t N, int C, int OC,
                                    LetheDtype dtype, void *cublas, LetheStream stream) {
    if (N == 0) return 0;
    if (!shapes_fit_int(N, C, OC)) return (int)cudaErrorInvalidValue;
    cublasHandle_t handle = static_cast<cublasHandle_t>(cublas);
    const int rc = prepare_handle(handle, stream);
    if (rc != 0) return rc;
    const float one = 1.0f;
    const cudaDataType t = data_type(dtype);
    if (dinp != nullptr) {
        LETHE_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, C, (int)N, OC, &one, w,
                                        t, C, dout, t, OC, &one, dinp, t, C, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
    }
    if (dw != nullptr) {
        LETHE_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, (int)N, &one, inp,
                                        t, C, dout, t, OC, &one, dw, CUDA_R_32F, C,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    if (dbias != nullptr) {
        const dim3 grid((unsigned)ceil_div(OC, kBiasColumns));
        if (dtype == LETHE_F32) {
            auto kernel = bias_backward_kernel<float>;
            LETHE_LAUNCH(kernel, grid, kBiasColumns * kBiasRowGroups, 0, stream)(
                dbias, static_cast<const float *>(dout), N, OC);
        } else {
            auto kernel = bias_backward_kernel<__nv_bfloat16>;
            LETHE_LAUNCH(kernel, grid, kBiasColumns * kBiasRowGroups, 0, stream)(
                dbias, static_cast<const __nv_bfloat16 *>(dout), N, OC);
        }
        LETHE_CUDA_CHECK(cudaGetLastError());
    }
    return 0;
}

// out^T (OC x N, float32) = op_T(w as C x OC) * op_N(inp as C x N), as cuda_matmul_forward
// without the bias: the logits of a sampling step keep cuBLAS's fp32 accumulator unrounded.
extern "C" int cuda_matmul_forward_f32out(float *out, const void *inp, const void *w, size_t N,
                                          int C, int OC, LetheDtype dtype, void *cublas,
                                          LetheStream stream) {
    if (N == 0) return 0;
    if (!shapes_fit_int(N, C, OC)) return (int)cudaErrorInvalidValue;
    cublasHandle_t handle = static_cast<cublasHandle_t>(cublas);
    const int rc = prepare_handle(handle, stream);
    if (rc != 0) return rc;
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType t = data_type(dtype);
    LETHE_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, OC, (int)N, C, &alpha, w, t,
                                    C, inp, t, C, &beta, out, CUDA_R_32F, OC, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
    return 0;
}
