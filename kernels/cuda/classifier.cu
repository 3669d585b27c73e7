// CUDA twin of kernels/cpu/classifier.c and classifier_soft.c: the fused LM head + log-softmax
// (target log-prob, per-row statistics, loss against a soft target) without (M, V) logits.
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
    double acc, acc2;     // soft: sum exp(s - ref_max) (s - l) and (l); stats: sum p log p, p log^2 p
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

// Logit j of a tile with `shift` added at the row's target t (tile-relative; outside: none).
__device__ __forceinline__ float shifted(const float* l, int j, int t, float shift) {
    return j == t ? l[j] + shift : l[j];
}

// exp(v - m) that is 0 for v = -inf (also when m = -inf: a tile of left-out values only).
__device__ __forceinline__ float exp_or_zero(float v, float m) {
    return v == -INFINITY ? 0.0f : expf(v - m);
}

// Folds one tile of logits (rows, vt) into each row's running log-sum-exp and picks up the
// target's logit; the last tile writes lse and logprob.
__global__ void classifier_fold_lse(RowState* state, float* lse, float* logprob,
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
    const int t = targets[r] - v0;
    if (t >= 0 && t < vt) st.target = l[t];
    if (last) {
        const float row_lse = static_cast<float>(st.max + log(st.sum));
        lse[r] = row_lse;
        logprob[r] = st.target - row_lse;
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

// classifier_soft_forward over one tile of current logits l and source logits src (the same
// pointer when q is the model's own distribution), src shifted at the target: running
// log-sum-exps of both, sum exp(s - ref_max) (s - l) for the KL and sum exp(s - ref_max) l for
// the cross-entropy, and the target's logit: KL = sum_v q (s - l) - lse_s + lse,
// H(q, p) = lse - sum_v q l. Sums in double: the KL is a small difference of large terms.
__global__ void classifier_fold_soft(RowState* state, float* loss, float* lse, float* gap,
                                     float* logprob,
                                     const float* logits, const float* src_logits,
                                     const int32_t* targets, float shift, int cross_entropy,
                                     size_t rows, int v0, int vt, int first, int last) {
    const int64_t r = warp_row(rows);
    if (r < 0) return;
    const int lane = threadIdx.x % 32;
    const float* l = logits + r * vt;
    const float* src = src_logits + r * vt;
    const int t = targets[r] - v0;
    float m = -INFINITY, ms = -INFINITY;
    for (int j = lane; j < vt; j += 32) m = fmaxf(m, l[j]), ms = fmaxf(ms, shifted(src, j, t, shift));
    m = warp_max(m);
    ms = warp_max(ms);
    double sum = 0.0, sums = 0.0, acc_kl = 0.0, acc_ce = 0.0;
    for (int j = lane; j < vt; j += 32) {
        sum += expf(l[j] - m);
        const float sj = shifted(src, j, t, shift);
        if (sj == -INFINITY) continue;  // left out of q
        const double es = expf(sj - ms);
        sums += es;
        acc_kl += es * (static_cast<double>(sj) - l[j]);
        acc_ce += es * l[j];
    }
    sum = warp_sum(sum);
    sums = warp_sum(sums);
    acc_kl = warp_sum(acc_kl);
    acc_ce = warp_sum(acc_ce);
    if (lane != 0) return;
    RowState st = first ? fresh_state() : state[r];
    merge_lse(&st.max, &st.sum, m, sum);
    if (t >= 0 && t < vt) st.target = l[t];
    // The source's sum and accumulators share the same shift, so they rescale together.
    if (ms != -INFINITY) {
        const float new_ref_max = fmaxf(st.ref_max, ms);
        const double keep = exp(static_cast<double>(st.ref_max) - new_ref_max);
        const double add = exp(static_cast<double>(ms) - new_ref_max);
        st.ref_sum = st.ref_sum * keep + sums * add;
        st.acc = st.acc * keep + acc_kl * add;
        st.acc2 = st.acc2 * keep + acc_ce * add;
        st.ref_max = new_ref_max;
    }
    if (last) {
        const double lse_cur = st.max + log(st.sum), lse_src = st.ref_max + log(st.ref_sum);
        lse[r] = static_cast<float>(lse_cur);
        gap[r] = static_cast<float>(lse_cur - lse_src);
        loss[r] = static_cast<float>(cross_entropy ? lse_cur - st.acc2 / st.ref_sum
                                                   : st.acc / st.ref_sum - lse_src + lse_cur);
        if (logprob != nullptr) logprob[r] = static_cast<float>(st.target - lse_cur);
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

// p_j - q_j as the CPU twin computes it (kernels/cpu/classifier_soft.c p_minus_q): with
// d_j = (l_j - s_j) - gap, p_j = q_j e^d_j, so near d_j = 0 the difference is q_j expm1(d_j)
// (the same Taylor polynomial) instead of a cancellation of two close exps.
__device__ __forceinline__ float p_minus_q(float l, float s, float lse, float gap) {
    const float p = expf(l - lse), q = exp_or_zero(s, lse - gap);
    const float d = (l - s) - gap;
    const float e = d * (1.0f + d * (0.5f + d * (1.0f / 6 + d * (1.0f / 24 + d * (1.0f / 120 +
                    d * (1.0f / 720 + d * (1.0f / 5040)))))));
    return fabsf(d) < 0.5f ? q * e : p - q;
}

// dlogits = weight * (p - q) for one tile of the soft-target variant, s the shifted source
// logits; from the forward's lse and gap alone, so the backward needs no pass of its own over
// the source's log-sum-exp.
template <typename T>
__global__ void classifier_soft_dlogits(T* dlogits, const float* logits, const float* src_logits,
                                        const float* lse, const float* gap,
                                        const int32_t* targets, float shift, const float* weight,
                                        size_t rows, int v0, int vt) {
    const int64_t r = warp_row(rows);
    if (r < 0) return;
    const float wr = weight[r], row_lse = lse[r], row_gap = gap[r];
    const int t = targets[r] - v0;
    for (int j = threadIdx.x % 32; j < vt; j += 32) {
        // In place (T = float, src_logits == logits for q from the model's own logits): both
        // values of column j are read before it is written, by the same thread.
        const float sj = shifted(src_logits + r * vt, j, t, shift);
        const float d = wr != 0.0f ? wr * p_minus_q(logits[r * vt + j], sj, row_lse, row_gap) : 0.0f;
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
    size_t logits, ref_logits, dlogits, dx_acc, state;
    size_t bytes;
};

Tiling layout_for(size_t rows, int vt, int D, LetheDtype dtype, bool soft) {
    Tiling t{};
    t.rows = rows;
    t.vt = vt;
    const size_t cells = rows * static_cast<size_t>(vt);
    size_t at = 0;
    t.logits = at, at += align256(cells * sizeof(float));  // (rows, vt)
    if (soft) {
        t.ref_logits = at, at += align256(cells * sizeof(float));  // (rows, vt)
    }
    if (dtype == LETHE_BF16) {  // the backward's GEMM operands, and dx summed in fp32
        t.dlogits = at, at += align256(cells * sizeof(__nv_bfloat16));                 // (rows, vt)
        t.dx_acc = at, at += align256(rows * static_cast<size_t>(D) * sizeof(float));  // (rows, D)
    }
    t.state = at, at += align256(rows * sizeof(RowState));  // (rows)
    t.bytes = at;
    return t;
}

Tiling largest_tiling(size_t M, int D, int V, LetheDtype dtype, bool soft) {
    const size_t rows = M < kMaxTileRows ? M : kMaxTileRows;
    return layout_for(rows > 0 ? rows : 1, V < kMaxVocabTile ? V : kMaxVocabTile, D, dtype, soft);
}

// The largest tiles that fit: the vocabulary tile halves first (to powers of two, not below
// 64), the rows last, because every row chunk reads all of w once: the rows of a chunk are what
// that read is shared over.
int choose_tiling(Tiling* t, size_t scratch_bytes, size_t M, int D, int V, LetheDtype dtype,
                  bool soft) {
    *t = largest_tiling(M, D, V, dtype, soft);
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
        *t = layout_for(rows, vt, D, dtype, soft);
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
            int D, int V, LetheDtype dtype, bool soft) {
    RETURN_IF_ERROR(valid_sizes(M, D, V));
    RETURN_IF_ERROR(choose_tiling(t, scratch_bytes, M, D, V, dtype, soft));
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

extern "C" size_t cuda_classifier_soft_scratch_bytes(size_t M, int D, int V, LetheDtype dtype) {
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
            (state, lse + m0, logprob + m0, logits, targets + m0, rows, v0, vt, v0 == 0,
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

// Launch configuration: as cuda_classifier_forward, two GEMMs (current, reference) per tile, or
// one when q comes from the current logits.
extern "C" int cuda_classifier_soft_forward(float* loss, float* lse, float* gap, float* logprob,
                                            void* scratch,
                                            size_t scratch_bytes, const void* x, const void* w,
                                            const SoftTarget* q, size_t M, int D, int V,
                                            LetheDtype dtype, void* cublas, LetheStream stream) {
    // loss, lse, gap, logprob (or NULL), q->targets (M); x, q->xref (M, D); w, q->wref (V, D)
    Gemms g;
    Tiling t;
    RETURN_IF_ERROR(prepare(&g, &t, cublas, stream, scratch_bytes, M, D, V, dtype, true));
    float* logits = scratch_at<float>(scratch, t.logits);
    float* src = q->xref != nullptr ? scratch_at<float>(scratch, t.ref_logits) : logits;
    RowState* state = scratch_at<RowState>(scratch, t.state);
    for (size_t m0 = 0; m0 < M; m0 += t.rows) {
        const size_t rows = M - m0 < t.rows ? M - m0 : t.rows;
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            RETURN_IF_ERROR(g.logits(logits, x, w, m0, rows, v0, vt));
            if (q->xref != nullptr) RETURN_IF_ERROR(g.logits(src, q->xref, q->wref, m0, rows, v0, vt));
            LETHE_LAUNCH(classifier_fold_soft, row_grid(rows), dim3(kRowThreads), 0, stream)
            (state, loss + m0, lse + m0, gap + m0, logprob != nullptr ? logprob + m0 : nullptr,
             logits, src,
             q->targets + m0, q->shift, q->cross_entropy, rows, v0, vt, v0 == 0, v0 + vt == V);
            LETHE_CUDA_CHECK(cudaGetLastError());
        }
    }
    return 0;
}

// Launch configuration: as cuda_classifier_backward; per tile one or two GEMMs for the logits
// (current, and the reference's when q comes from it), two for dx and dw.
extern "C" int cuda_classifier_soft_backward(void* dx, float* dw, void* scratch,
                                             size_t scratch_bytes, const void* x, const void* w,
                                             const SoftTarget* q, const float* lse,
                                             const float* gap, const float* weight, size_t M,
                                             int D, int V, LetheDtype dtype, void* cublas,
                                             LetheStream stream) {
    // dx, x, q->xref (M, D); dw (V, D) or NULL; w, q->wref (V, D); lse, gap, weight, targets (M)
    Gemms g;
    Tiling t;
    RETURN_IF_ERROR(prepare(&g, &t, cublas, stream, scratch_bytes, M, D, V, dtype, true));
    float* logits = scratch_at<float>(scratch, t.logits);
    float* src = q->xref == nullptr ? logits : scratch_at<float>(scratch, t.ref_logits);
    for (size_t m0 = 0; m0 < M; m0 += t.rows) {
        const size_t rows = M - m0 < t.rows ? M - m0 : t.rows;
        const dim3 grid = row_grid(rows);
        for (int v0 = 0; v0 < V; v0 += t.vt) {
            const int vt = V - v0 < t.vt ? V - v0 : t.vt;
            RETURN_IF_ERROR(g.logits(logits, x, w, m0, rows, v0, vt));
            if (q->xref != nullptr) RETURN_IF_ERROR(g.logits(src, q->xref, q->wref, m0, rows, v0, vt));
            if (dtype == LETHE_BF16) {
                auto kernel = classifier_soft_dlogits<__nv_bfloat16>;
                LETHE_LAUNCH(kernel, grid, dim3(kRowThreads), 0, stream)
                (scratch_at<__nv_bfloat16>(scratch, t.dlogits), logits, src, lse + m0, gap + m0,
                 q->targets + m0, q->shift, weight + m0, rows, v0, vt);
            } else {
                auto kernel = classifier_soft_dlogits<float>;
                LETHE_LAUNCH(kernel, grid, dim3(kRowThreads), 0, stream)
                (logits, logits, src, lse + m0, gap + m0, q->targets + m0, q->shift, weight + m0,
                 rows, v0, vt);
            }
            LETHE_CUDA_CHECK(cudaGetLastError());
            RETURN_IF_ERROR(
                backward_tile_gemms(g, t, scratch, dx, dw, x, w, dtype, m0, rows, v0, vt));
        }
        RETURN_IF_ERROR(finish_dx(g, t, scratch, dx, dtype, m0, rows, stream));
    }
    return 0;
}
