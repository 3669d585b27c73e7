// The cuBLAS calls the backend makes, over OpenBLAS: column-major GEMMs, plain, strided-batched and
// Ex (fp32/bf16/fp16 storage, fp32 compute; 16-bit inputs widen exactly, outputs round to even).
#include "internal.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cblas.h>
#include <math.h>

#include <vector>

// cublas_api.h leaves the handle opaque.
struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math_mode;
    cublasPointerMode_t pointer_mode;
};

using namespace lethe_harness::detail;

namespace {

size_t element_bytes(cudaDataType t) {
    switch (t) {
        case CUDA_R_32F: return 4;
        case CUDA_R_16BF: return 2;
        case CUDA_R_16F: return 2;
        default: return 0;
    }
}

float load_element(const void* base, cudaDataType t, size_t i) {
    switch (t) {
        case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
        case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
        default: return static_cast<const float*>(base)[i];
    }
}

void store_element(void* base, cudaDataType t, size_t i, float v) {
    switch (t) {
        case CUDA_R_16BF: static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v); break;
        case CUDA_R_16F: static_cast<__half*>(base)[i] = __float2half_rn(v); break;
        default: static_cast<float*>(base)[i] = v; break;
    }
}

// A column-major matrix as stored: rows x cols with leading dimension ld, `batch` of them `stride`
// elements apart.
struct Stored {
    const char* name;
    const void* data;
    cudaDataType type;
    int rows, cols, ld;
    long long stride;
};

cublasStatus_t check_stored(const char* api, const Stored& s, int batch) {
    if (s.ld < (s.rows > 1 ? s.rows : 1)) {
        report("%s: ld%s = %d is less than the %d rows of %s as stored", api, s.name, s.ld, s.rows,
               s.name);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (s.stride < 0) {
        report("%s: negative stride for %s is not emulated", api, s.name);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (s.rows == 0 || s.cols == 0) return CUBLAS_STATUS_SUCCESS;
    const size_t elements = static_cast<size_t>(s.cols - 1) * static_cast<size_t>(s.ld) +
                            static_cast<size_t>(s.rows) +
                            static_cast<size_t>(s.stride) * static_cast<size_t>(batch - 1);
    const size_t bytes = elements * element_bytes(s.type);
    const RangeInfo r = classify_range(s.data, bytes);
    if (r.kind != RangeKind::device) {
        // cuBLAS would read out of bounds (or host memory) and fault later; say it here.
        report("%s: %s (%d x %d, ld %d, %zu bytes in all) is %s", api, s.name, s.rows, s.cols, s.ld,
               bytes,
               r.kind == RangeKind::host ? "not in device memory"
                                         : "larger than the device allocation it starts in");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// Packs one stored matrix into a dense fp32 column-major copy with ld = rows.
void widen(const Stored& s, size_t offset, std::vector<float>& out) {
    out.resize(static_cast<size_t>(s.rows) * static_cast<size_t>(s.cols));
    for (int c = 0; c < s.cols; ++c) {
        for (int r = 0; r < s.rows; ++r) {
            out[static_cast<size_t>(c) * s.rows + r] =
                load_element(s.data, s.type, offset + static_cast<size_t>(c) * s.ld + r);
        }
    }
}

bool read_scalar(cublasContext* h, const void* p, float* out) {
    if (h->pointer_mode == CUBLAS_POINTER_MODE_HOST) {
        *out = *static_cast<const float*>(p);
        return true;
    }
    if (classify_range(p, sizeof(float)).kind != RangeKind::device) return false;
    DeviceAccess access{p};
    *out = *static_cast<const float*>(p);
    return true;
}

CBLAS_TRANSPOSE to_cblas(cublasOperation_t op) {
    return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;  // C (conjugate) is T for real types
}

cublasStatus_t gemm(const char* api, cublasContext* h, cublasOperation_t transa,
                    cublasOperation_t transb, int m, int n, int k, const void* alpha, const void* A,
                    cudaDataType Atype, int lda, long long strideA, const void* B,
                    cudaDataType Btype, int ldb, long long strideB, const void* beta, void* C,
                    cudaDataType Ctype, int ldc, long long strideC, int batch,
                    cublasComputeType_t compute) {
    if (h == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    for (cublasOperation_t op : {transa, transb}) {
        if (op != CUBLAS_OP_N && op != CUBLAS_OP_T && op != CUBLAS_OP_C) {
            report("%s: operation %d is not N, T or C", api, static_cast<int>(op));
            return CUBLAS_STATUS_INVALID_VALUE;
        }
    }
    if (m < 0 || n < 0 || k < 0 || batch < 0) {
        report("%s: negative size m=%d n=%d k=%d batch=%d", api, m, n, k, batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    switch (compute) {
        case CUBLAS_COMPUTE_32F:
        case CUBLAS_COMPUTE_32F_PEDANTIC:
        case CUBLAS_COMPUTE_32F_FAST_16F:
        case CUBLAS_COMPUTE_32F_FAST_16BF:
        case CUBLAS_COMPUTE_32F_FAST_TF32: break;  // all computed in full fp32 here
        default:
            report("%s: compute type %d is not emulated (only the 32F family)", api,
                   static_cast<int>(compute));
            return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    const bool ab_ok = Atype == Btype && element_bytes(Atype) != 0;
    const bool c_ok = Ctype == CUDA_R_32F || Ctype == Atype;
    if (!ab_ok || !c_ok) {
        report(
            "%s: types A=%d B=%d C=%d are not a supported combination (A = B in {32F, 16BF, "
            "16F}; C = 32F or the type of A)",
            api, static_cast<int>(Atype), static_cast<int>(Btype), static_cast<int>(Ctype));
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    const Stored a{"A", A,      Atype, transa == CUBLAS_OP_N ? m : k, transa == CUBLAS_OP_N ? k : m,
                   lda, strideA};
    const Stored b{"B", B,      Btype, transb == CUBLAS_OP_N ? k : n, transb == CUBLAS_OP_N ? n : k,
                   ldb, strideB};
    const Stored c{"C", C, Ctype, m, n, ldc, strideC};
    for (const Stored* s : {&a, &b, &c}) {
        if (s->ld < (s->rows > 1 ? s->rows : 1)) return check_stored(api, *s, batch);
    }
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    float alpha_f, beta_f;
    if (!read_scalar(h, alpha, &alpha_f) || !read_scalar(h, beta, &beta_f)) {
        report("%s: alpha/beta are not readable in the handle's pointer mode", api);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    for (const Stored* s : {&a, &b, &c}) {
        if (k == 0 && s != &c) continue;  // A and B are not read
        const cublasStatus_t st = check_stored(api, *s, batch);
        if (st != CUBLAS_STATUS_SUCCESS) return st;
    }

    DeviceAccess access{A, B, C};
    std::vector<float> a32, b32, c32;
    for (int i = 0; i < batch; ++i) {
        const size_t oa = static_cast<size_t>(strideA) * i;
        const size_t ob = static_cast<size_t>(strideB) * i;
        const size_t oc = static_cast<size_t>(strideC) * i;
        // beta = 0 means C is not read (it may hold NaN), as in cuBLAS.
        c32.assign(static_cast<size_t>(m) * n, 0.0f);
        if (beta_f != 0.0f) {
            for (int col = 0; col < n; ++col) {
                for (int row = 0; row < m; ++row) {
                    c32[static_cast<size_t>(col) * m + row] =
                        load_element(C, Ctype, oc + static_cast<size_t>(col) * ldc + row);
                }
            }
        }
        if (k > 0) {
            widen(a, oa, a32);
            widen(b, ob, b32);
            cblas_sgemm(CblasColMajor, to_cblas(transa), to_cblas(transb), m, n, k, alpha_f,
                        a32.data(), a.rows, b32.data(), b.rows, beta_f, c32.data(), m);
        } else {
            for (float& v : c32) v *= beta_f;
        }
        for (int col = 0; col < n; ++col) {
            for (int row = 0; row < m; ++row) {
                store_element(C, Ctype, oc + static_cast<size_t>(col) * ldc + row,
                              c32[static_cast<size_t>(col) * m + row]);
            }
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
    if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH, CUBLAS_POINTER_MODE_HOST};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_is_valid(streamId)) return CUBLAS_STATUS_INVALID_VALUE;
    handle->stream = streamId;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (streamId == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *streamId = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                                  size_t workspaceSizeInBytes) {
    (void)workspace;
    (void)workspaceSizeInBytes;  // OpenBLAS brings its own
    return handle == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : CUBLAS_STATUS_SUCCESS;
}

// TF32 modes are accepted and ignored: the harness multiplies in full fp32, so GPU results under
// TF32 differ more from the CPU twins than harness results do.
cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->math_mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSetPointerMode_v2(cublasHandle_t handle,
                                                    cublasPointerMode_t mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->pointer_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasGetPointerMode_v2(cublasHandle_t handle,
                                                    cublasPointerMode_t* mode) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = handle->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}

// Level-1 fp32 with unit increments (what the NCCL communicator's fixed-order sum uses): each
// element on its own, y = alpha * x + y as one fused multiply-add (a GPU's FFMA), x = alpha * x.
static cublasStatus_t check_vector(const char* api, const char* name, const void* p, int n,
                                   int inc) {
    if (inc != 1) {
        report("%s: inc%s = %d is not emulated (1 only)", api, name, inc);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (n > 0 && classify_range(p, static_cast<size_t>(n) * sizeof(float)).kind !=
                     RangeKind::device) {
        report("%s: %s (%d floats) is not (entirely) in device memory", api, name, n);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSaxpy_v2(cublasHandle_t handle, int n, const float* alpha,
                                           const float* x, int incx, float* y, int incy) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    cublasStatus_t st = check_vector("cublasSaxpy", "x", x, n, incx);
    if (st == CUBLAS_STATUS_SUCCESS) st = check_vector("cublasSaxpy", "y", y, n, incy);
    if (st != CUBLAS_STATUS_SUCCESS || n <= 0) return st;
    float a;
    if (!read_scalar(handle, alpha, &a)) return CUBLAS_STATUS_INVALID_VALUE;
    DeviceAccess access{x, y};
    for (int i = 0; i < n; ++i) y[i] = fmaf(a, x[i], y[i]);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSscal_v2(cublasHandle_t handle, int n, const float* alpha,
                                           float* x, int incx) {
    if (handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
    const cublasStatus_t st = check_vector("cublasSscal", "x", x, n, incx);
    if (st != CUBLAS_STATUS_SUCCESS || n <= 0) return st;
    float a;
    if (!read_scalar(handle, alpha, &a)) return CUBLAS_STATUS_INVALID_VALUE;
    DeviceAccess access{x};
    for (int i = 0; i < n; ++i) x[i] = a * x[i];
    return CUBLAS_STATUS_SUCCESS;
}

const char* CUBLASWINAPI cublasGetStatusName(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
        case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
        case CUBLAS_STATUS_SUCCESS: return "success";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
        case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
        case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
        case CUBLAS_STATUS_ARCH_MISMATCH:
            return "an absent device architectural feature is required";
        case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
        case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
    }
    return "unknown error";
}

cublasStatus_t CUBLASWINAPI cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k,
                                           const float* alpha, const float* A, int lda,
                                           const float* B, int ldb, const float* beta, float* C,
                                           int ldc) {
    return gemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B,
                CUDA_R_32F, ldb, 0, beta, C, CUDA_R_32F, ldc, 0, 1, CUBLAS_COMPUTE_32F);
}

cublasStatus_t CUBLASWINAPI cublasSgemmStridedBatched(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const float* alpha, const float* A, int lda, long long int strideA, const float* B, int ldb,
    long long int strideB, const float* beta, float* C, int ldc, long long int strideC,
    int batchCount) {
    return gemm("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, alpha, A, CUDA_R_32F,
                lda, strideA, B, CUDA_R_32F, ldb, strideB, beta, C, CUDA_R_32F, ldc, strideC,
                batchCount, CUBLAS_COMPUTE_32F);
}

cublasStatus_t CUBLASWINAPI cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const void* alpha, const void* A, cudaDataType Atype,
                                         int lda, const void* B, cudaDataType Btype, int ldb,
                                         const void* beta, void* C, cudaDataType Ctype, int ldc,
                                         cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    (void)algo;
    return gemm("cublasGemmEx", handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype,
                ldb, 0, beta, C, Ctype, ldc, 0, 1, computeType);
}

cublasStatus_t CUBLASWINAPI cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const void* alpha, const void* A, cudaDataType Atype, int lda, long long int strideA,
    const void* B, cudaDataType Btype, int ldb, long long int strideB, const void* beta, void* C,
    cudaDataType Ctype, int ldc, long long int strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    (void)algo;
    return gemm("cublasGemmStridedBatchedEx", handle, transa, transb, m, n, k, alpha, A, Atype, lda,
                strideA, B, Btype, ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount,
                computeType);
}

}  // extern "C"
