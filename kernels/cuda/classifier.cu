// CUDA twin of kernels/cpu/classifier.c and classifier_kl.c: the fused LM head + log-softmax
// (target log-prob, per-row statistics, KL to a reference model) without (M, V) logits.
// cuBLAS writes one tile of rows x vocabulary logits at a time into scratch; small kernels fold
// each tile into per-row running statistics (online log-sum-exp, Milakov & Gimelshein 2018) or,
// in the backward, turn it into dlogits that two more GEMMs take to dx and dw. Tiles are visited
// in a fixed order and every reduction has a fixed shape: no atomics, same bits on every run.
#include <cublas_v2.h>
#include <stdint.h>

#include "common.cuh"

namespace {

constexpr int kRowWarps = 8;  // rows of a tile per block of the row kernels, one warp each
constexpr int kRowThreads = 32 * kRowWarps;
constexpr size_t kMaxTileRows = 1024;
constexpr int kMaxVocabTile = 8192;
constexpr int kMinVocabTile = 64;

// What one row carries from one vocabulary tile to the next.
struct RowState {
    float max, ref_max;   // running maxima of the current and the reference logits
    float target;         // the target's logit (NaN until its tile has passed)
    int best;             // index of the first maximum (stats)
    double sum, ref_sum;  // running sums of exp(logit - max)
    double acc, acc2;     // KL: sum exp(lr - ref_max) (lr - l); stats: sum p log p, sum p log^2 p
};

// Merges a tile's (max, sum of exp(l - max)) into a running pair.
__device__ void merge_lse(float* max, double* sum, float tile_max, double tile_sum) {
    const float m = fmaxf(*max, tile_max);
    *sum = *sum * exp(static_cast<double>(*max) - m) +
           tile_sum * exp(static_cast<double>(tile_max) - m);
    *max = m;
}

__device__ RowState fresh_state() {
    RowState s;
    s.max = s.ref_max = -INFINITY;
    s.target = NAN;
    s.best = -1;
    s.sum = s.ref_sum = s.acc = s.acc2 = 0.0;
    return s;
}

// The row of a tile this warp works on (one warp per row, kRowWarps rows per block), or -1.
__device__ __forceinline__ int64_t warp_row(size_t rows) {
    const size_t r = static_cast<size_t>(blockIdx.x) * kRowWarps + threadIdx.x / 32;
    return r < rows ? static_cast<int64_t>(r) : -1;
}

// Folds one tile of logits (rows, vt) into each row's running log-sum-exp and picks up the
// target's logit; the last tile writes lse and, with targets, logprob, or (norm) the row's max
// and 1 / sum exp(l - max), with which softmax = exp(l - max) / sum as the CPU twin computes it.
__global__ void classifier_fold_lse(RowState* state, float* lse, float* logprob, float2* norm,
                                    const float* logits, const int32_t* targets, size_t rows,
                                    int v0, int vt, int first, int last) {
    const int64_t r = warp_row(rows);
    if (r < 0) return;  // the whole warp
    const int lane = threadIdx.x % 32;
    const float* l = logits + r * vt;
    float m = -INFINITY;
    for (int j = lane; j < vt; j += 32) m = fmaxf(m, l[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j < vt; j += 32) s += expf(l[j] - m);
    s = warp_sum(s);
    if (lane != 0) return;
    RowState st = first ? fresh_state() : state[r];
    merge_lse(&st.max, &st.sum, m, s);
    if (targets != nullptr) {
        const int t = targets[r] - v0;
        if (t >= 0 && t < vt) st.target = l[t];
    }
    if (last) {
        const float row_lse = static_cast<float>(st.max + log(st.sum));
        if (lse != nullptr) lse[r] = row_lse;
        if (logprob != nullptr) logprob[r] = st.target - row_lse;
        if (norm != nullptr) norm[r] = make_float2(st.max, static_cast<float>(1.0 / st.sum));
    } else {
        state[r] = st;
    }
}

// classifier_stats over one tile: the first index of the maximum, sum p log p and
// sum p (log p)^2 with p = exp(l - lse) (lse known from the forward). Sums in double, as the
// variance is a difference of two of them.
__global__ void classifier_fold_stats(RowState* state, uint8_t* is_argmax, float* mu, float* var,
                                      const float* logits, const int32_t* targets, const float* lse,
                                      size_t rows, int v0, int vt, int first, int last) {
    const int64_t r = warp_row(rows);
    if (r < 0) return;
    const int lane = threadIdx.x % 32;
    const float* l = logits + r * vt;
    const float row_lse = lse[r];
    float best_val = -INFINITY;
    int best = vt;  // ties go to the lower index; vt loses to every real one
    double s1 = 0.0, s2 = 0.0;
    for (int j = lane; j < vt; j += 32) {
        if (l[j] > best_val) best_val = l[j], best = j;  // j grows: the first maximum stays
        const double logp = static_cast<double>(l[j]) - row_lse;
        const double p = exp(logp);
        s1 += p * logp;
        s2 += p * logp * logp;
    }
    // The larger value wins, then the lower index: a total order, so every lane ends the
    // butterfly with the same pair.
    for (int o = 16; o > 0; o /= 2) {
        const float v = __shfl_xor_sync(0xffffffffu, best_val, o);
        const int i = __shfl_xor_sync(0xffffffffu, best, o);
        if (v > best_val || (v == best_val && i < best)) best_val = v, best = i;
    }
    s1 = warp_sum(s1);
    s2 = warp_sum(s2);
    if (lane != 0) return;
    RowState st = first ? fresh_state() : state[r];
    if (best < vt && best_val > st.max)
        st.max = best_val, st.best = v0 + best;  // earlier tiles win ties
    st.acc += s1;
    st.acc2 += s2;
    if (last) {
        is_argmax[r] = st.best == targets[r];
        mu[r] = static_cast<float>(st.acc);
        var[r] = static_cast<float>(st.acc2 - st.acc * st.acc);
    } else {
        state[r] = st;
    }
}

// classifier_kl_forward over one tile of current logits l and reference logits lr: running
// log-sum-exps of both and sum exp(lr - ref_max) (lr - l), with which
// KL = sum_v p_ref (lr - l) - lse_ref + lse. Sums in double: the KL is a small difference of large
// terms.
__global__ void classifier_fold_kl(RowState* state, float* kl, float* lse, const float* logits,
                                   const float* ref_logits, size_t rows, int vt, int first,
                                   int last) {
    const int64_t r = warp_row(rows);
    if (r < 0) return;
    const int lane = threadIdx.x % 32;
    const float* l = logits + r * vt;
    const float* lr = ref_logits + r * vt;
    float m = -INFINITY, mr = -INFINITY;
    for (int j = lane; j < vt; j += 32) m = fmaxf(m, l[j]), mr = fmaxf(mr, lr[j]);
    m = warp_max(m);
    mr = warp_max(mr);
    double s = 0.0, sr = 0.0, acc = 0.0;
    for (int j = lane; j < vt; j += 32) {
        s += expf(l[j] - m);
        const double er = expf(lr[j] - mr);
        sr += er;
        acc += er * (static_cast<double>(lr[j]) - l[j]);
    }
    s = warp_sum(s);
    sr = warp_sum(sr);
    acc = warp_sum(acc);
    if (lane != 0) return;
    RowState st = first ? fresh_state() : state[r];
    merge_lse(&st.max, &st.sum, m, s);
    // The reference's sum and acc share the same shift, so they rescale together.
    const float new_ref_max = fmaxf(st.ref_max, mr);
    const double keep = exp(static_cast<double>(st.ref_max) - new_ref_max);
    const double add = exp(static_cast<double>(mr) - new_ref_max);
    st.ref_sum = st.ref_sum * keep + sr * add;
    st.acc = st.acc * keep + acc * add;
    st.ref_max = new_ref_max;
    if (last) {
        const double lse_cur = st.max + log(st.sum), lse_ref = st.ref_max + log(st.ref_sum);
        lse[r] = static_cast<float>(lse_cur);
        kl[r] = static_cast<float>(st.acc / st.ref_sum - lse_ref + lse_cur);
    } else {
        state[r] = st;
    }
}

// dlogits = weight * (softmax - onehot(target)) for one tile, in the form of the CPU twin
// (w p, then - w at the target). T = float may write in place over logits.
template <typename T>
__global__ void classifier_dlogits(T* dlogits, const float* logits, const float* lse,
                                   const float* weight, const int32_t* targets, size_t rows, int v0,
                                   int vt) {
    const int64_t r = warp_row(rows);
    if (r < 0) return;
    const float wr = weight[r], row_lse = lse[r];
    const int t = targets[r] - v0;
    for (int j = threadIdx.x % 32; j < vt; j += 32) {
        float d = 0.0f;  // rows of weight 0 contribute exactly nothing
        if (wr != 0.0f) {
            d = wr * expf(logits[r * vt + j] - row_lse);
            if (j == t) d -= wr;
        }
        store_f32(&dlogits[r * vt + j], d);
    }
}

// dlogits = weight * (p - p_ref) for one tile of the KL variant.
template <typename T>
__global__ void classifier_kl_dlogits(T* dlogits, const float* logits, const float* ref_logits,
                                      const float* lse, const float2* ref_norm, const float* weight,
                                      size_t rows, int vt) {
    const int64_t r = warp_row(rows);
    if (r < 0) return;
    const float wr = weight[r], row_lse = lse[r];
    const float2 ref = ref_norm[r];  // p_ref = exp(lr - ref.x) * ref.y
    for (int j = threadIdx.x % 32; j < vt; j += 32) {
        float d = 0.0f;
        if (wr != 0.0f) {
            d = wr *
                (expf(logits[r * vt + j] - row_lse) - expf(ref_logits[r * vt + j] - ref.x) * ref.y);
        }
        store_f32(&dlogits[r * vt + j], d);
    }
}

// dst += src, rounding once: the bf16 dx of a row chunk from its fp32 sum over vocabulary tiles.
__global__ void add_to_bf16(__nv_bfloat16* dst, const float* src, size_t n) {
    const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
    for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        dst[i] = __float2bfloat16_rn(__bfloat162float(dst[i]) + src[i]);
    }
}

// ---- host side ---------------------------------------------------------------------------------

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// Byte offsets of one tiling's buffers in scratch.
struct Tiling {
    size_t rows;
    int vt;
    size_t logits, ref_logits, ref_norm, dlogits, dx_acc, state;
    size_t bytes;
};

Tiling layout_for(size_t rows, int vt, int D, LetheDtype dtype, bool kl) {
    Tiling t{};
    t.rows = rows;
    t.vt = vt;
    const size_t cells = rows * static_cast<size_t>(vt);
    size_t at = 0;
    t.logits = at, at += align256(cells * sizeof(float));  // (rows, vt)
    if (kl) {
        t.ref_logits = at, at += align256(cells * sizeof(float));  // (rows, vt)
        t.ref_norm = at, at += align256(rows * sizeof(float2));    // (rows)
    }
    if (dtype == LETHE_BF16) {  // the backward's GEMM operands, and dx summed in fp32
        t.dlogits = at, at += align256(cells * sizeof(__nv_bfloat16));                 // (rows, vt)
        t.dx_acc = at, at += align256(rows * static_cast<size_t>(D) * sizeof(float));  // (rows, D)
    }
    t.state = at, at += align256(rows * sizeof(RowState));  // (rows)
    t.bytes = at;
    return t;
}

Tiling largest_tiling(size_t M, int D, int V, LetheDtype dtype, bool kl) {
    const size_t rows = M < kMaxTileRows ? M : kMaxTileRows;
    return layout_for(rows > 0 ? rows : 1, V < kMaxVocabTile ? V : kMaxVocabTile, D, dtype, kl);
}

// The largest tiles that fit: the vocabulary tile halves first (to powers of two, not below
// 64), the rows last, because every row chunk reads all of w once: the rows of a chunk are what
// that read is shared over.
int choose_tiling(Tiling* t, size_t scratch_bytes, size_t M, int D, int V, LetheDtype dtype,
                  bool kl) {
    *t = largest_tiling(M, D, V, dtype, kl);
    size_t rows = t->rows;
    int vt = t->vt;
    while (t->bytes > scratch_bytes) {
        if (vt > kMinVocabTile) {
            int p = 1;
            while (2 * p < vt) p *= 2;
            vt = p > kMinVocabTile ? p : kMinVocabTile;
        } else if (rows > 1) {
            rows = (rows + 1) / 2;
        } else {
            fprintf(stderr,
                    "%s:%d: classifier scratch of %zu bytes is less than one 1 x %d tile "
                    "(%zu bytes)\n",
                    __FILE__, __LINE__, scratch_bytes, vt, t->bytes);
            return cudaErrorInvalidValue;
        }
        *t = layout_for(rows, vt, D, dtype, kl);
    }
    return 0;
}

// A cuBLAS status as the closest cudaError_t, named on stderr when it is a failure.
int from_cublas(cublasStatus_t s, const char* call, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, line, call, cublasGetStatusName(s));
    switch (s) {
        case CUBLAS_STATUS_NOT_INITIALIZED:
            return cudaErrorInitializationError;
        case CUBLAS_STATUS_ALLOC_FAILED:
            return cudaErrorMemoryAllocation;
        case CUBLAS_STATUS_INVALID_VALUE:
            return cudaErrorInvalidValue;
        case CUBLAS_STATUS_ARCH_MISMATCH:
        case CUBLAS_STATUS_NOT_SUPPORTED:
            return cudaErrorNotSupported;
        case CUBLAS_STATUS_EXECUTION_FAILED:
            return cudaErrorLaunchFailure;
        default:
            return cudaErrorUnknown;
    }
}

#define RETURN_IF_ERROR(call)                               \
    do {                                                    \
        const int return_if_error_ = (call);                \
        if (return_if_error_ != 0) return return_if_error_; \
    } while (0)

// The GEMMs of a classifier call, in row-major terms (cuBLAS is column-major: a row-major
// (m, n) matrix is its (n, m) transpose, so every call below swaps its operands).
struct Gemms {
    cublasHandle_t handle;
    cudaDataType_t ab;  // x, w and the bf16 dlogits
    size_t elt;         // bytes per element of ab
    int D;

    const void* rows_of(const void* base, size_t row) const {
        return static_cast<const char*>(base) + row * static_cast<size_t>(D) * elt;
    }
    // logits (rows, vt) = x[m0 : m0 + rows] @ w[v0 : v0 + vt]^T
    int logits(float* out, const void* x, const void* w, size_t m0, size_t rows, int v0,
               int vt) const {
        const float one = 1.0f, zero = 0.0f;
        return from_cublas(
            cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, vt, static_cast<int>(rows), D, &one,
                         rows_of(w, v0), ab, D, rows_of(x, m0), ab, D, &zero, out, CUDA_R_32F, vt,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx (logits)", __LINE__);
    }
    // dx (rows, D) = beta dx + dlogits (rows, vt) @ w[v0 : v0 + vt]; dx of type dx_type
    int dx(void* dx, cudaDataType_t dx_type, float beta, const void* dlogits, const void* w,
           size_t rows, int v0, int vt) const {
        const float one = 1.0f;
        return from_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, D, static_cast<int>(rows),
                                        vt, &one, rows_of(w, v0), ab, D, dlogits, ab, vt, &beta, dx,
                                        dx_type, D, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "cublasGemmEx (dx)", __LINE__);
    }
    // dw[v0 : v0 + vt] (vt, D) += dlogits^T (vt, rows) @ x[m0 : m0 + rows]
    int dw(float* dw, const void* dlogits, const void* x, size_t m0, size_t rows, int v0,
           int vt) const {
        const float one = 1.0f;
        return from_cublas(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_T, D, vt,
                                        static_cast<int>(rows), &one, rows_of(x, m0), ab, D,
                                        dlogits, ab, vt, &one, dw + static_cast<size_t>(v0) * D,
                                        CUDA_R_32F, D, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "cublasGemmEx (dw)", __LINE__);
    }
};

int valid_sizes(size_t M, int D, int V) {
    // cuBLAS takes int sizes and leading dimensions.
    return M <= INT32_MAX && D > 0 && V > 0 ? 0 : static_cast<int>(cudaErrorInvalidValue);
}

int prepare(Gemms* g, Tiling* t, void* cublas, cudaStream_t stream, size_t scratch_bytes, size_t M,
            int D, int V, LetheDtype dtype, bool kl) {
    RETURN_IF_ERROR(valid_sizes(M, D, V));
    RETURN_IF_ERROR(choose_tiling(t, scratch_bytes, M, D, V, dtype, kl));
    g->handle = static_cast<cublasHandle_t>(cublas);
    g->ab = dtype == LETHE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    g->elt = dtype == LETHE_BF16 ? sizeof(__nv_bfloat16) : sizeof(float);
    g->D = D;
    RETURN_IF_ERROR(from_cublas(cublasSetStream(g->handle, stream), "cublasSetStream", __LINE__));
    // Not TF32 for fp32 operands: the fp32 mode is the one that checks the GPU against the CPU.
    return from_cublas(cublasSetMathMode(g->handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode",
                       __LINE__);
}

dim3 row_grid(size_t rows) { return dim3(static_cast<unsigned>(ceil_div(rows, kRowWarps))); }

template <typename P>
P* scratch_at(void* scratch, size_t offset) {
    return reinterpret_cast<P*>(static_cast<char*>(scratch) + offset);
}

// The backward's per-tile tail, shared by both variants: dx and dw from one tile's dlogits
// (in place over the fp32 logits, or bf16 in t.dlogits).
int backward_tile_gemms(const Gemms& g, const Tiling& t, void* scratch, void* dx, float* dw,
                        const void* x, const void* w, LetheDtype dtype, size_t m0, size_t rows,
                        int v0, int vt) {
    if (dtype == LETHE_BF16) {
        const void* dl = scratch_at<void>(scratch, t.dlogits);
        RETURN_IF_ERROR(g.dx(scratch_at<float>(scratch, t.dx_acc), CUDA_R_32F,
                             v0 == 0 ? 0.0f : 1.0f, dl, w, rows, v0, vt));
        if (dw != nullptr) RETURN_IF_ERROR(g.dw(dw, dl, x, m0, rows, v0, vt));
    } else {
        const float* dl = scratch_at<float>(scratch, t.logits);
        RETURN_IF_ERROR(
            g.dx(static_cast<float*>(dx) + m0 * g.D, CUDA_R_32F, 1.0f, dl, w, rows, v0, vt));
        if (dw != nullptr) RETURN_IF_ERROR(g.dw(dw, dl, x, m0, rows, v0, vt));
    }
    return 0;
}

// After a row chunk's last tile: bf16 dx += its fp32 sum.
int finish_dx(const Gemms& g, const Tiling& t, void* scratch, void* dx, LetheDtype dtype, size_t m0,
              size_t rows, cudaStream_t stream) {
    if (dtype != LETHE_BF16) return 0;
    const size_t n = rows * static_cast<size_t>(g.D);
    const size_t blocks = (n + kRowThreads - 1) / kRowThreads;
    LETHE_LAUNCH(add_to_bf16, dim3(static_cast<unsigned>(blocks < 4096 ? blocks : 4096)),
                 dim3(kRowThreads), 0, stream)
    (static_cast<__nv_bfloat16*>(dx) + m0 * g.D, scratch_at<float>(scratch, t.dx_acc), n);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

}  // namespace

extern "C" size_t cuda_classifier_scratch_bytes(size_t M, int D, int V, LetheDtype dtype) {
    return largest_tiling(M, D, V, dtype, false).bytes;
}

extern "C" size_t cuda_classifier_kl_scratch_bytes(size_t M, int D, int V, LetheDtype dtype) {
    return largest_tiling(M, D, V, dtype, true).bytes;
}

// Launch configuration of all the fold and dlogits kernels: one warp per row of a tile, 8 rows
// (256 threads) per block, ceil(rows / 8) blocks (128 for a full 1024-row tile, about one per
// SM, each SM streaming 8 rows of up to 32 KiB). A warp per row needs only shuffles to reduce,
// no barriers, and its lanes read consecutive logits; the row's second pass (exp after the max)
// hits L1/L2. The GEMMs are cuBLAS's; these kernels read each logit two or three times against
// the GEMM's 2 D flops, so they stay a small fraction of the time.
extern "C" int cuda_classifier_forward(float* logprob, float* lse, void* scratch,
                                       size_t scratch_bytes, const void* x, const void* w,
                                       const int32_t* targets, size_t M, int D, int V,
                                       LetheDtype dtype, void* cublas, LetheStream stream) {
    // logprob, lse, targets (M); x (M, D); w (V, D)
    Gemms g;
    Tiling t;
    RETURN_IF_ERROR(prepare(&g, &t, cublas, stream, scratch_bytes, M, D, V, dtype, false));
    float* logits = scratch_at<float>(scratch, t.logits);
    RowState* state = scratch_at<RowState>(scratch, t.state);
    for (size_t m0 = 0; m0 < M; m0 += t.rows) {
        const size_t rows = M - m0 < t.rows ? M - m0 : t.rows;
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            RETURN_IF_ERROR(g.logits(logits, x, w, m0, rows, v0, vt));
            LETHE_LAUNCH(classifier_fold_lse, row_grid(rows), dim3(kRowThreads), 0, stream)
            (state, lse + m0, logprob + m0, nullptr, logits, targets + m0, rows, v0, vt, v0 == 0,
             v0 + vt == V);
            LETHE_CUDA_CHECK(cudaGetLastError());
        }
    }
    return 0;
}

// Launch configuration: as cuda_classifier_forward; the dlogits kernels likewise one warp per
// row (elementwise over the row's vt logits). bf16 dx is summed over the vocabulary tiles in
// fp32 scratch and added once per row chunk (add_to_bf16: grid-stride, at most 4096 blocks).
extern "C" int cuda_classifier_backward(void* dx, float* dw, void* scratch, size_t scratch_bytes,
                                        const void* x, const void* w, const int32_t* targets,
                                        const float* lse, const float* weight, size_t M, int D,
                                        int V, LetheDtype dtype, void* cublas, LetheStream stream) {
    // dx, x (M, D); dw (V, D) or NULL; w (V, D); targets, lse, weight (M)
    Gemms g;
    Tiling t;
    RETURN_IF_ERROR(prepare(&g, &t, cublas, stream, scratch_bytes, M, D, V, dtype, false));
    float* logits = scratch_at<float>(scratch, t.logits);
    for (size_t m0 = 0; m0 < M; m0 += t.rows) {
        const size_t rows = M - m0 < t.rows ? M - m0 : t.rows;
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            // The forward's GEMM on the same tile: the logits match the saved lse.
            RETURN_IF_ERROR(g.logits(logits, x, w, m0, rows, v0, vt));
            if (dtype == LETHE_BF16) {
                auto kernel = classifier_dlogits<__nv_bfloat16>;
                LETHE_LAUNCH(kernel, row_grid(rows), dim3(kRowThreads), 0, stream)
                (scratch_at<__nv_bfloat16>(scratch, t.dlogits), logits, lse + m0, weight + m0,
                 targets + m0, rows, v0, vt);
            } else {
                auto kernel = classifier_dlogits<float>;
                LETHE_LAUNCH(kernel, row_grid(rows), dim3(kRowThreads), 0, stream)
                (logits, logits, lse + m0, weight + m0, targets + m0, rows, v0, vt);
            }
            LETHE_CUDA_CHECK(cudaGetLastError());
            RETURN_IF_ERROR(
                backward_tile_gemms(g, t, scratch, dx, dw, x, w, dtype, m0, rows, v0, vt));
        }
        RETURN_IF_ERROR(finish_dx(g, t, scratch, dx, dtype, m0, rows, stream));
    }
    return 0;
}

// Launch configuration: as cuda_classifier_forward.
extern "C" int cuda_classifier_stats(uint8_t* is_argmax, float* mu, float* var, void* scratch,
                                     size_t scratch_bytes, const void* x, const void* w,
                                     const int32_t* targets, const float* lse, size_t M, int D,
                                     int V, LetheDtype dtype, void* cublas, LetheStream stream) {
    // is_argmax, mu, var, targets, lse (M); x (M, D); w (V, D)
    Gemms g;
    Tiling t;
    RETURN_IF_ERROR(prepare(&g, &t, cublas, stream, scratch_bytes, M, D, V, dtype, false));
    float* logits = scratch_at<float>(scratch, t.logits);
    RowState* state = scratch_at<RowState>(scratch, t.state);
    for (size_t m0 = 0; m0 < M; m0 += t.rows) {
        const size_t rows = M - m0 < t.rows ? M - m0 : t.rows;
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            RETURN_IF_ERROR(g.logits(logits, x, w, m0, rows, v0, vt));
            LETHE_LAUNCH(classifier_fold_stats, row_grid(rows), dim3(kRowThreads), 0, stream)
            (state, is_argmax + m0, mu + m0, var + m0, logits, targets + m0, lse + m0, rows, v0, vt,
             v0 == 0, v0 + vt == V);
            LETHE_CUDA_CHECK(cudaGetLastError());
        }
    }
    return 0;
}

// Launch configuration: as cuda_classifier_forward, two GEMMs (current, reference) per tile.
extern "C" int cuda_classifier_kl_forward(float* kl, float* lse, void* scratch,
                                          size_t scratch_bytes, const void* x, const void* w,
                                          const void* xref, const void* wref, size_t M, int D,
                                          int V, LetheDtype dtype, void* cublas,
                                          LetheStream stream) {
    // kl, lse (M); x, xref (M, D); w, wref (V, D)
    Gemms g;
    Tiling t;
    RETURN_IF_ERROR(prepare(&g, &t, cublas, stream, scratch_bytes, M, D, V, dtype, true));
    float* logits = scratch_at<float>(scratch, t.logits);
    float* ref_logits = scratch_at<float>(scratch, t.ref_logits);
    RowState* state = scratch_at<RowState>(scratch, t.state);
    for (size_t m0 = 0; m0 < M; m0 += t.rows) {
        const size_t rows = M - m0 < t.rows ? M - m0 : t.rows;
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            RETURN_IF_ERROR(g.logits(logits, x, w, m0, rows, v0, vt));
            RETURN_IF_ERROR(g.logits(ref_logits, xref, wref, m0, rows, v0, vt));
            LETHE_LAUNCH(classifier_fold_kl, row_grid(rows), dim3(kRowThreads), 0, stream)
            (state, kl + m0, lse + m0, logits, ref_logits, rows, vt, v0 == 0, v0 + vt == V);
            LETHE_CUDA_CHECK(cudaGetLastError());
        }
    }
    return 0;
}

// Launch configuration: as cuda_classifier_backward. The forward saves only the current lse, so
// each row chunk first runs over the vocabulary once for the reference's lse (one GEMM per
// tile), then once more for the gradients (two GEMMs for the logits, two for dx and dw).
extern "C" int cuda_classifier_kl_backward(void* dx, float* dw, void* scratch, size_t scratch_bytes,
                                           const void* x, const void* w, const void* xref,
                                           const void* wref, const float* lse, const float* weight,
                                           size_t M, int D, int V, LetheDtype dtype, void* cublas,
                                           LetheStream stream) {
    // dx, x, xref (M, D); dw (V, D) or NULL; w, wref (V, D); lse, weight (M)
    Gemms g;
    Tiling t;
    RETURN_IF_ERROR(prepare(&g, &t, cublas, stream, scratch_bytes, M, D, V, dtype, true));
    float* logits = scratch_at<float>(scratch, t.logits);
    float* ref_logits = scratch_at<float>(scratch, t.ref_logits);
    float2* ref_norm = scratch_at<float2>(scratch, t.ref_norm);
    RowState* state = scratch_at<RowState>(scratch, t.state);
    for (size_t m0 = 0; m0 < M; m0 += t.rows) {
        const size_t rows = M - m0 < t.rows ? M - m0 : t.rows;
        const dim3 grid = row_grid(rows);
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            RETURN_IF_ERROR(g.logits(ref_logits, xref, wref, m0, rows, v0, vt));
            LETHE_LAUNCH(classifier_fold_lse, grid, dim3(kRowThreads), 0, stream)
            (state, nullptr, nullptr, ref_norm, ref_logits, nullptr, rows, v0, vt, v0 == 0,
             v0 + vt == V);
            LETHE_CUDA_CHECK(cudaGetLastError());
        }
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            RETURN_IF_ERROR(g.logits(logits, x, w, m0, rows, v0, vt));
            RETURN_IF_ERROR(g.logits(ref_logits, xref, wref, m0, rows, v0, vt));
            if (dtype == LETHE_BF16) {
                auto kernel = classifier_kl_dlogits<__nv_bfloat16>;
                LETHE_LAUNCH(kernel, grid, dim3(kRowThreads), 0, stream)
                (scratch_at<__nv_bfloat16>(scratch, t.dlogits), logits, ref_logits, lse + m0,
                 ref_norm, weight + m0, rows, vt);
            } else {
                auto kernel = classifier_kl_dlogits<float>;
                LETHE_LAUNCH(kernel, grid, dim3(kRowThreads), 0, stream)
                (logits, logits, ref_logits, lse + m0, ref_norm, weight + m0, rows, vt);
            }
            LETHE_CUDA_CHECK(cudaGetLastError());
            RETURN_IF_ERROR(
                backward_tile_gemms(g, t, scratch, dx, dw, x, w, dtype, m0, rows, v0, vt));
        }
        RETURN_IF_ERROR(finish_dx(g, t, scratch, dx, dtype, m0, rows, stream));
    }
    return 0;
}
