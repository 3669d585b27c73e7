// CUDA twin of kernels/cpu/attention.c: causal grouped-query attention over packed samples,
// flash-attention style (Dao et al. 2022; FlashAttention-2's split of the backward into a
// key-major pass for dk, dv and a query-major pass for dq). The forward keeps one query tile's
// output in registers while it streams key tiles through an online softmax and saves only lse;
// the backward recomputes the probabilities from q, k and lse. Each output element belongs to
// one thread, summed in a fixed order: no atomics, same bits on every run.
//
// Samples: a query row attends to keys j with start(sample of row) <= j <= row. Tiles are cut
// from the packed token axis without looking at sample boundaries (the host never reads the
// device offsets); a tile that straddles a boundary masks what lies across it.
// All arithmetic is fp32 on CUDA cores (bf16 inputs are widened as they are loaded), so the fp32
// mode is exact fp32 for checking against the CPU twin.
#include <stdint.h>

#include "common.cuh"

namespace {

constexpr int kThreads = 128;  // 16 row groups x 8 column groups
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// offsets[s] and offsets[s + 1] of the sample that holds token i (binary search over the
// (n_samples + 1) offsets; empty samples are skipped because the last s with offsets[s] <= i wins).
__device__ void sample_of(const int64_t* offsets, int n_samples, int64_t i, int64_t* start,
                          int64_t* end) {
    int lo = 0, hi = n_samples;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (offsets[mid] <= i) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    *start = offsets[lo];
    *end = offsets[lo + 1];
}

// Rows [row0, row0 + ROWS) of head `head` of a (N, heads, hd) tensor into shared memory as fp32,
// (ROWS, HD) with row stride HD + 1 (conflict-free column reads); zero past N and past hd.
template <int HD, int ROWS, typename T>
__device__ void load_tile(float* dst, const T* src, int64_t row0, int64_t N, int heads, int head,
                          int hd) {
    for (int e = threadIdx.x; e < ROWS * HD; e += blockDim.x) {
        const int r = e / HD, d = e % HD;
        const int64_t row = row0 + r;
        float v = 0.0f;
        if (row < N && d < hd)
            v = load_f32(src + (static_cast<size_t>(row) * heads + head) * hd + d);
        dst[r * (HD + 1) + d] = v;
    }
}

// Per query row of a tile: the first key it may see (INT64_MAX past N, so it sees none), and for
// the backward lse in log2 units and D = dout . out (one warp per row).
template <int ROWS, typename T>
__device__ void load_row_info(int64_t* start, float* lse2, float* D, const T* dout, const T* out,
                              const float* lse, const int64_t* offsets, int n_samples, int64_t row0,
                              int64_t N, int H, int h, int hd) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int r = warp; r < ROWS; r += kThreads / 32) {
        const int64_t row = row0 + r;
        float dot = 0.0f;
        if (dout != nullptr && row < N) {  // the same row for the whole warp
            const size_t base = (static_cast<size_t>(row) * H + h) * hd;
            for (int d = lane; d < hd; d += 32)
                dot += load_f32(dout + base + d) * load_f32(out + base + d);
        }
        dot = warp_sum(dot);
        if (lane == 0) {
            int64_t s = INT64_MAX, e = 0;
            if (row < N) sample_of(offsets, n_samples, row, &s, &e);
            start[r] = s;
            if (lse != nullptr)
                lse2[r] = row < N ? lse[static_cast<size_t>(row) * H + h] * kLog2e : 0.0f;
            if (D != nullptr) D[r] = dot;
        }
    }
}

// acc[i][j] += sum_d A[(ty + 16 i)][d] * B[(tx + 8 j)][d] over shared tiles of stride HD + 1:
// the (TM x TN) register tile of a thread in a product of row tiles (q k^T, dout v^T).
template <int HD, int TM, int TN>
__device__ __forceinline__ void rows_times_rows(float (&acc)[TM][TN], const float* A,
                                                const float* B, int ty, int tx) {
#pragma unroll 4
    for (int d = 0; d < HD; d++) {
        float a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; i++) a[i] = A[(ty + 16 * i) * (HD + 1) + d];
#pragma unroll
        for (int j = 0; j < TN; j++) b[j] = B[(tx + 8 * j) * (HD + 1) + d];
#pragma unroll
        for (int i = 0; i < TM; i++) {
#pragma unroll
            for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
        }
    }
}

// acc[i][dd] += sum_c P[(ty + 16 i)][c] * B[c][tx + 8 dd] for c < C: a thread's rows of P B, P of
// stride C + 1 and B of stride HD + 1 in shared memory (p v, ds k).
template <int HD, int C, int TM>
__device__ __forceinline__ void probs_times_tile(float (&acc)[TM][HD / 8], const float* P,
                                                 const float* B, int ty, int tx) {
#pragma unroll 2
    for (int c = 0; c < C; c++) {
        float b[HD / 8];
#pragma unroll
        for (int dd = 0; dd < HD / 8; dd++) b[dd] = B[c * (HD + 1) + tx + 8 * dd];
#pragma unroll
        for (int i = 0; i < TM; i++) {
            const float p = P[(ty + 16 * i) * (C + 1) + c];
#pragma unroll
            for (int dd = 0; dd < HD / 8; dd++) acc[i][dd] += p * b[dd];
        }
    }
}

// acc[kc][dd] += sum_r P[r][ty + 16 kc] * B[r][tx + 8 dd] for r < R: a thread's keys of P^T B
// (p^T dout, ds^T q), P of stride C + 1 and B of stride HD + 1.
template <int HD, int C, int R, int TK>
__device__ __forceinline__ void probs_t_times_tile(float (&acc)[TK][HD / 8], const float* P,
                                                   const float* B, int ty, int tx) {
#pragma unroll 2
    for (int r = 0; r < R; r++) {
        float b[HD / 8];
#pragma unroll
        for (int dd = 0; dd < HD / 8; dd++) b[dd] = B[r * (HD + 1) + tx + 8 * dd];
#pragma unroll
        for (int kc = 0; kc < TK; kc++) {
            const float p = P[r * (C + 1) + ty + 16 * kc];
#pragma unroll
            for (int dd = 0; dd < HD / 8; dd++) acc[kc][dd] += p * b[dd];
        }
    }
}

// Max and sum over the 8 threads (tx) that share a row group: lanes 8k .. 8k + 7 of a warp.
__device__ __forceinline__ float row_group_max(float v) {
    for (int o = 1; o < 8; o *= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float row_group_sum(float v) {
    for (int o = 1; o < 8; o *= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Tiles per padded head dimension HD (8, 16, 32, 64, 128), chosen so that every block's dynamic
// shared memory stays within kMaxSmem: two blocks (8 warps) per SM on an A100 (164 KiB), three on
// an H100 (228 KiB). The forward keeps 64 query rows per block (each key tile serves 64 rows) and
// takes 64 keys per tile up to HD = 64, 32 at 128; the backward blocks hold four (dq) or six
// (dk, dv) tiles, so their query or key tiles shrink earlier.
template <int HD>
struct Tiles {
    static constexpr int kFwdRows = 64, kFwdKeys = HD <= 64 ? 64 : 32;
    static constexpr int kDqRows = HD <= 64 ? 64 : 32, kDqKeys = HD <= 32 ? 64 : 32;
    static constexpr int kKvKeys = HD <= 64 ? 64 : 32, kKvRows = 32;
};
constexpr size_t kMaxSmem = 76 * 1024;

template <int HD, int BQ, int BK>
constexpr size_t forward_smem() {  // q (BQ, HD+1), k and v (BK, HD+1), p (BQ, BK+1)
    return sizeof(float) * ((BQ + 2 * BK) * (HD + 1) + BQ * (BK + 1));
}
template <int HD, int BQ, int BK>
constexpr size_t dq_smem() {  // q, dout (BQ, HD+1), k, v (BK, HD+1), ds (BQ, BK+1)
    return sizeof(float) * ((2 * BQ + 2 * BK) * (HD + 1) + BQ * (BK + 1));
}
template <int HD, int BQ, int BK>
constexpr size_t dkdv_smem() {  // k, v (BK, HD+1), q, dout (BQ, HD+1), p, ds (BQ, BK+1)
    return sizeof(float) * ((2 * BQ + 2 * BK) * (HD + 1) + 2 * BQ * (BK + 1));
}

// ---- forward ---------------------------------------------------------------------------------

// One block: BQ query rows x one head. Thread (ty, tx) owns rows ty + 16 i of the scores and the
// output, key columns tx + 8 j of each score tile and head dimensions tx + 8 dd of the output.
template <typename T, int HD, int BQ, int BK>
__global__ void attention_forward_kernel(T* out, float* lse, const T* q, const T* k, const T* v,
                                         const int64_t* offsets, int n_samples, int64_t N, int H,
                                         int KV, int hd, float scale_log2) {
    constexpr int TM = BQ / 16, TN = BK / 8, TD = HD / 8;
    LETHE_DYNAMIC_SMEM(float, smem);
    float* qs = smem;                // (BQ, HD + 1)
    float* ks = qs + BQ * (HD + 1);  // (BK, HD + 1)
    float* vs = ks + BK * (HD + 1);  // (BK, HD + 1)
    float* ps = vs + BK * (HD + 1);  // (BQ, BK + 1)
    __shared__ int64_t start[BQ];

    const int h = blockIdx.y, g = h / (H / KV);
    const int tx = threadIdx.x % 8, ty = threadIdx.x / 8;
    // The last query tiles see the most keys: they go first, so the short ones fill the tail.
    const int64_t row0 = static_cast<int64_t>(gridDim.x - 1 - blockIdx.x) * BQ;
    const int64_t last_row = (row0 + BQ < N ? row0 + BQ : N) - 1;
    load_tile<HD, BQ>(qs, q, row0, N, H, h, hd);
    load_row_info<BQ, T>(start, nullptr, nullptr, nullptr, nullptr, nullptr, offsets, n_samples,
                         row0, N, H, h, hd);
    __syncthreads();

    float o[TM][TD], m[TM], l[TM];
    int64_t row_start[TM];
#pragma unroll
    for (int i = 0; i < TM; i++) {
        m[i] = -INFINITY, l[i] = 0.0f, row_start[i] = start[ty + 16 * i];
#pragma unroll
        for (int dd = 0; dd < TD; dd++) o[i][dd] = 0.0f;
    }
    // Rows are sorted, so the first row's sample starts first: keys before it are never seen.
    for (int64_t key0 = start[0]; key0 <= last_row; key0 += BK) {
        load_tile<HD, BK>(ks, k, key0, N, KV, g, hd);
        load_tile<HD, BK>(vs, v, key0, N, KV, g, hd);
        __syncthreads();
        float s[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; i++) {
#pragma unroll
            for (int j = 0; j < TN; j++) s[i][j] = 0.0f;
        }
        rows_times_rows<HD>(s, qs, ks, ty, tx);
        // Online softmax in log2 units: m is the running max, l the running sum of 2^(s - m).
#pragma unroll
        for (int i = 0; i < TM; i++) {
            const int64_t row = row0 + ty + 16 * i;
            float tile_max = -INFINITY;
#pragma unroll
            for (int j = 0; j < TN; j++) {
                const int64_t key = key0 + tx + 8 * j;
                s[i][j] = key >= row_start[i] && key <= row ? s[i][j] * scale_log2 : -INFINITY;
                tile_max = fmaxf(tile_max, s[i][j]);
            }
            const float new_max = fmaxf(m[i], row_group_max(tile_max));
            const float shift = new_max == -INFINITY ? 0.0f : new_max;  // row with no key yet
            const float rescale = exp2f(m[i] - shift);
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < TN; j++) {
                const float p = exp2f(s[i][j] - shift);
                ps[(ty + 16 * i) * (BK + 1) + tx + 8 * j] = p;
                sum += p;
            }
            l[i] = l[i] * rescale + row_group_sum(sum);
            m[i] = new_max;
#pragma unroll
            for (int dd = 0; dd < TD; dd++) o[i][dd] *= rescale;
        }
        __syncwarp();  // a row of p is written and read by the same 8 lanes
        probs_times_tile<HD, BK>(o, ps, vs, ty, tx);
        __syncthreads();  // k, v and p are overwritten by the next tile
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        const int64_t row = row0 + ty + 16 * i;
        if (row >= N) continue;
        const float inv = 1.0f / l[i];  // l >= 1: every row sees itself
        const size_t base = (static_cast<size_t>(row) * H + h) * hd;
#pragma unroll
        for (int dd = 0; dd < TD; dd++) {
            const int d = tx + 8 * dd;
            if (d < hd) store_f32(out + base + d, o[i][dd] * inv);
        }
        if (tx == 0) lse[static_cast<size_t>(row) * H + h] = (m[i] + log2f(l[i])) * kLn2;
    }
}

// ---- backward: dq ----------------------------------------------------------------------------

// One block: BQ query rows x one head, over the key tiles the rows can see:
// P = exp(s - lse), dS = P (dout v^T - D) scale, dq += dS k. Thread mapping as the forward.
template <typename T, int HD, int BQ, int BK>
__global__ void attention_backward_dq_kernel(T* dq, const T* dout, const T* out, const float* lse,
                                             const T* q, const T* k, const T* v,
                                             const int64_t* offsets, int n_samples, int64_t N,
                                             int H, int KV, int hd, float scale, float scale_log2) {
    constexpr int TM = BQ / 16, TN = BK / 8, TD = HD / 8;
    LETHE_DYNAMIC_SMEM(float, smem);
    float* qs = smem;                 // (BQ, HD + 1)
    float* dos = qs + BQ * (HD + 1);  // (BQ, HD + 1)
    float* ks = dos + BQ * (HD + 1);  // (BK, HD + 1)
    float* vs = ks + BK * (HD + 1);   // (BK, HD + 1)
    float* dss = vs + BK * (HD + 1);  // (BQ, BK + 1)
    __shared__ int64_t start[BQ];
    __shared__ float lse2[BQ], D[BQ];

    const int h = blockIdx.y, g = h / (H / KV);
    const int tx = threadIdx.x % 8, ty = threadIdx.x / 8;
    // The last query tiles see the most keys: they go first, so the short ones fill the tail.
    const int64_t row0 = static_cast<int64_t>(gridDim.x - 1 - blockIdx.x) * BQ;
    const int64_t last_row = (row0 + BQ < N ? row0 + BQ : N) - 1;
    load_tile<HD, BQ>(qs, q, row0, N, H, h, hd);
    load_tile<HD, BQ>(dos, dout, row0, N, H, h, hd);
    load_row_info<BQ>(start, lse2, D, dout, out, lse, offsets, n_samples, row0, N, H, h, hd);
    __syncthreads();

    float dqa[TM][TD], row_lse2[TM], row_D[TM];
    int64_t row_start[TM];
#pragma unroll
    for (int i = 0; i < TM; i++) {
        row_start[i] = start[ty + 16 * i], row_lse2[i] = lse2[ty + 16 * i],
        row_D[i] = D[ty + 16 * i];
#pragma unroll
        for (int dd = 0; dd < TD; dd++) dqa[i][dd] = 0.0f;
    }
    for (int64_t key0 = start[0]; key0 <= last_row; key0 += BK) {
        load_tile<HD, BK>(ks, k, key0, N, KV, g, hd);
        load_tile<HD, BK>(vs, v, key0, N, KV, g, hd);
        __syncthreads();
        float s[TM][TN], dp[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; i++) {
#pragma unroll
            for (int j = 0; j < TN; j++) s[i][j] = dp[i][j] = 0.0f;
        }
        rows_times_rows<HD>(s, qs, ks, ty, tx);
        rows_times_rows<HD>(dp, dos, vs, ty, tx);
#pragma unroll
        for (int i = 0; i < TM; i++) {
            const int64_t row = row0 + ty + 16 * i;
#pragma unroll
            for (int j = 0; j < TN; j++) {
                const int64_t key = key0 + tx + 8 * j;
                const bool seen = key >= row_start[i] && key <= row;
                const float p = seen ? exp2f(s[i][j] * scale_log2 - row_lse2[i]) : 0.0f;
                dss[(ty + 16 * i) * (BK + 1) + tx + 8 * j] = p * (dp[i][j] - row_D[i]) * scale;
            }
        }
        __syncwarp();  // a row of ds is written and read by the same 8 lanes
        probs_times_tile<HD, BK>(dqa, dss, ks, ty, tx);
        __syncthreads();  // k, v and ds are overwritten by the next tile
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        const int64_t row = row0 + ty + 16 * i;
        if (row >= N) continue;
        const size_t base = (static_cast<size_t>(row) * H + h) * hd;
#pragma unroll
        for (int dd = 0; dd < TD; dd++) {
            const int d = tx + 8 * dd;
            if (d < hd) store_f32(dq + base + d, load_f32(dq + base + d) + dqa[i][dd]);
        }
    }
}

// ---- backward: dk, dv ------------------------------------------------------------------------

// One block: BK keys x one KV head, over every query head of its group and every query tile
// that can see the keys (from the first key to the end of the last key's sample):
// dv += P^T dout, dk += dS^T q. Thread (ty, tx) owns keys ty + 16 kc and head dimensions
// tx + 8 dd of dk and dv; the score tiles are mapped as in the forward.
template <typename T, int HD, int BQ, int BK>
__global__ void attention_backward_dkdv_kernel(T* dk, T* dv, const T* dout, const T* out,
                                               const float* lse, const T* q, const T* k, const T* v,
                                               const int64_t* offsets, int n_samples, int64_t N,
                                               int H, int KV, int hd, float scale,
                                               float scale_log2) {
    constexpr int TM = BQ / 16, TN = BK / 8, TD = HD / 8, TK = BK / 16;
    LETHE_DYNAMIC_SMEM(float, smem);
    float* ks = smem;                 // (BK, HD + 1)
    float* vs = ks + BK * (HD + 1);   // (BK, HD + 1)
    float* qs = vs + BK * (HD + 1);   // (BQ, HD + 1)
    float* dos = qs + BQ * (HD + 1);  // (BQ, HD + 1)
    float* ps = dos + BQ * (HD + 1);  // (BQ, BK + 1)
    float* dss = ps + BQ * (BK + 1);  // (BQ, BK + 1)
    __shared__ int64_t start[BQ];
    __shared__ float lse2[BQ], D[BQ];
    __shared__ int64_t query_end;

    const int g = blockIdx.y, group = H / KV;
    const int tx = threadIdx.x % 8, ty = threadIdx.x / 8;
    const int64_t key0 = static_cast<int64_t>(blockIdx.x) * BK;
    load_tile<HD, BK>(ks, k, key0, N, KV, g, hd);
    load_tile<HD, BK>(vs, v, key0, N, KV, g, hd);
    if (threadIdx.x == 0) {
        int64_t s, e;
        sample_of(offsets, n_samples, (key0 + BK < N ? key0 + BK : N) - 1, &s, &e);
        query_end = e;
    }
    float dka[TK][TD], dva[TK][TD];
#pragma unroll
    for (int kc = 0; kc < TK; kc++) {
#pragma unroll
        for (int dd = 0; dd < TD; dd++) dka[kc][dd] = dva[kc][dd] = 0.0f;
    }
    __syncthreads();
    const int64_t end = query_end;
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int64_t row0 = key0; row0 < end; row0 += BQ) {  // earlier queries see none of the keys
            load_tile<HD, BQ>(qs, q, row0, N, H, h, hd);
            load_tile<HD, BQ>(dos, dout, row0, N, H, h, hd);
            load_row_info<BQ>(start, lse2, D, dout, out, lse, offsets, n_samples, row0, N, H, h,
                              hd);
            __syncthreads();
            float s[TM][TN], dp[TM][TN];
#pragma unroll
            for (int i = 0; i < TM; i++) {
#pragma unroll
                for (int j = 0; j < TN; j++) s[i][j] = dp[i][j] = 0.0f;
            }
            rows_times_rows<HD>(s, qs, ks, ty, tx);
            rows_times_rows<HD>(dp, dos, vs, ty, tx);
#pragma unroll
            for (int i = 0; i < TM; i++) {
                const int r = ty + 16 * i;
                const int64_t row = row0 + r;
#pragma unroll
                for (int j = 0; j < TN; j++) {
                    const int64_t key = key0 + tx + 8 * j;
                    const bool seen = key >= start[r] && key <= row;
                    const float p = seen ? exp2f(s[i][j] * scale_log2 - lse2[r]) : 0.0f;
                    ps[r * (BK + 1) + tx + 8 * j] = p;
                    dss[r * (BK + 1) + tx + 8 * j] = p * (dp[i][j] - D[r]) * scale;
                }
            }
            __syncthreads();
            probs_t_times_tile<HD, BK, BQ>(dva, ps, dos, ty, tx);
            probs_t_times_tile<HD, BK, BQ>(dka, dss, qs, ty, tx);
            __syncthreads();  // q, dout, p, ds and the row info are overwritten next
        }
    }
#pragma unroll
    for (int kc = 0; kc < TK; kc++) {
        const int64_t key = key0 + ty + 16 * kc;
        if (key >= N) continue;
        const size_t base = (static_cast<size_t>(key) * KV + g) * hd;
#pragma unroll
        for (int dd = 0; dd < TD; dd++) {
            const int d = tx + 8 * dd;
            if (d >= hd) continue;
            store_f32(dk + base + d, load_f32(dk + base + d) + dka[kc][dd]);
            store_f32(dv + base + d, load_f32(dv + base + d) + dva[kc][dd]);
        }
    }
}

// ---- launchers -------------------------------------------------------------------------------

struct Args {
    const int64_t* offsets;
    int n_samples;
    int64_t N;
    int H, KV, hd;
    float scale, scale_log2;
    cudaStream_t stream;
};

template <typename T, int HD>
int forward(void* out, float* lse, const void* q, const void* k, const void* v, const Args& a) {
    constexpr int BQ = Tiles<HD>::kFwdRows, BK = Tiles<HD>::kFwdKeys;
    constexpr size_t smem = forward_smem<HD, BQ, BK>();
    static_assert(smem <= kMaxSmem, "see Tiles");
    auto kernel = attention_forward_kernel<T, HD, BQ, BK>;
    LETHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
    const dim3 grid(static_cast<unsigned>(ceil_div(a.N, BQ)), a.H);
    LETHE_LAUNCH(kernel, grid, dim3(kThreads), smem, a.stream)
    (static_cast<T*>(out), lse, static_cast<const T*>(q), static_cast<const T*>(k),
     static_cast<const T*>(v), a.offsets, a.n_samples, a.N, a.H, a.KV, a.hd, a.scale_log2);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

template <typename T, int HD>
int backward(void* dq, void* dk, void* dv, const void* dout, const void* out, const float* lse,
             const void* q, const void* k, const void* v, const Args& a) {
    {
        constexpr int BQ = Tiles<HD>::kKvRows, BK = Tiles<HD>::kKvKeys;
        constexpr size_t smem = dkdv_smem<HD, BQ, BK>();
        static_assert(smem <= kMaxSmem, "see Tiles");
        auto kernel = attention_backward_dkdv_kernel<T, HD, BQ, BK>;
        LETHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(smem)));
        const dim3 grid(static_cast<unsigned>(ceil_div(a.N, BK)), a.KV);
        LETHE_LAUNCH(kernel, grid, dim3(kThreads), smem, a.stream)
        (static_cast<T*>(dk), static_cast<T*>(dv), static_cast<const T*>(dout),
         static_cast<const T*>(out), lse, static_cast<const T*>(q), static_cast<const T*>(k),
         static_cast<const T*>(v), a.offsets, a.n_samples, a.N, a.H, a.KV, a.hd, a.scale,
         a.scale_log2);
        LETHE_CUDA_CHECK(cudaGetLastError());
    }
    constexpr int BQ = Tiles<HD>::kDqRows, BK = Tiles<HD>::kDqKeys;
    constexpr size_t smem = dq_smem<HD, BQ, BK>();
    static_assert(smem <= kMaxSmem, "see Tiles");
    auto kernel = attention_backward_dq_kernel<T, HD, BQ, BK>;
    LETHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(smem)));
    const dim3 grid(static_cast<unsigned>(ceil_div(a.N, BQ)), a.H);
    LETHE_LAUNCH(kernel, grid, dim3(kThreads), smem, a.stream)
    (static_cast<T*>(dq), static_cast<const T*>(dout), static_cast<const T*>(out), lse,
     static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), a.offsets,
     a.n_samples, a.N, a.H, a.KV, a.hd, a.scale, a.scale_log2);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

int make_args(Args* a, const int64_t* offsets, int n_samples, size_t N, int H, int KV, int hd,
              LetheStream stream) {
    if (hd < 1 || hd > 128 || KV < 1 || H < KV || H % KV != 0 || H > 65535 || n_samples < 1 ||
        N >= (static_cast<size_t>(1) << 40)) {
        return cudaErrorInvalidValue;
    }
    a->offsets = offsets;
    a->n_samples = n_samples;
    a->N = static_cast<int64_t>(N);
    a->H = H, a->KV = KV, a->hd = hd;
    a->scale = 1.0f / sqrtf(static_cast<float>(hd));  // as the CPU twin
    a->scale_log2 = a->scale * kLog2e;
    a->stream = stream;
    return 0;
}

// The head dimension padded to the next instantiated one; the padding is zeros in q, k and v.
int padded_hd(int hd) { return hd <= 8 ? 8 : hd <= 16 ? 16 : hd <= 32 ? 32 : hd <= 64 ? 64 : 128; }

}  // namespace

// Launch configuration: grid (ceil(N / 64), H), 128 threads; each block one head's 64 query rows
// over key tiles of 64 (32 at hd > 64). 128 threads as 16 x 8 give each thread a 4 x 8 (4 x 4)
// register tile of scores and 4 rows x hd / 8 columns of the output, which stays in registers
// for the whole pass: 12 shared-memory loads per 32 FMAs. Dynamic shared memory 23 KiB (hd 8) to
// 73 KiB (hd 128), above 48 KiB by cudaFuncSetAttribute; 96-128 registers, no spills. Blocks
// are not grouped by KV head: the group's query heads read the same k, v tiles from L2.
extern "C" int cuda_attention_forward(void* out, float* lse, const void* q, const void* k,
                                      const void* v, const int64_t* offsets, int n_samples,
                                      size_t N, int H, int KV, int hd, LetheDtype dtype,
                                      LetheStream stream) {
    // out, q (N, H, hd); k, v (N, KV, hd); lse (N, H)
    Args a;
    LETHE_CUDA_CHECK(
        static_cast<cudaError_t>(make_args(&a, offsets, n_samples, N, H, KV, hd, stream)));
    if (N == 0) return 0;
    const bool bf16 = dtype == LETHE_BF16;
#define LETHE_ATTENTION_FORWARD(HD)                                \
    return bf16 ? forward<__nv_bfloat16, HD>(out, lse, q, k, v, a) \
                : forward<float, HD>(out, lse, q, k, v, a)
    switch (padded_hd(hd)) {
        case 8:
            LETHE_ATTENTION_FORWARD(8);
        case 16:
            LETHE_ATTENTION_FORWARD(16);
        case 32:
            LETHE_ATTENTION_FORWARD(32);
        case 64:
            LETHE_ATTENTION_FORWARD(64);
        default:
            LETHE_ATTENTION_FORWARD(128);
    }
#undef LETHE_ATTENTION_FORWARD
}

// Launch configuration: two kernels of 128 threads (16 x 8, as the forward). First dk, dv: grid
// (ceil(N / BK), KV), BK = 64 keys (32 at hd > 64) per block, iterating over the group's H / KV
// query heads and 32-row query tiles from its first key to the end of its last key's sample, so
// each (key, KV head) gradient is summed by one thread: native GQA without atomics. Then dq:
// grid (ceil(N / BQ), H), BQ = 64 rows (32 at hd > 64) over key tiles of 64 (hd <= 32) or 32.
// Dynamic shared memory at most 73 KiB (dk, dv at hd 128) and 69 KiB (dq at hd 128). D =
// dout . out is recomputed per query tile (one warp per row) rather than stored: no scratch.
extern "C" int cuda_attention_backward(void* dq, void* dk, void* dv, const void* dout,
                                       const void* out, const float* lse, const void* q,
                                       const void* k, const void* v, const int64_t* offsets,
                                       int n_samples, size_t N, int H, int KV, int hd,
                                       LetheDtype dtype, LetheStream stream) {
    // dq, dout, out, q (N, H, hd); dk, dv, k, v (N, KV, hd); lse (N, H)
    Args a;
    LETHE_CUDA_CHECK(
        static_cast<cudaError_t>(make_args(&a, offsets, n_samples, N, H, KV, hd, stream)));
    if (N == 0) return 0;
    const bool bf16 = dtype == LETHE_BF16;
#define LETHE_ATTENTION_BACKWARD(HD)                                                  \
    return bf16 ? backward<__nv_bfloat16, HD>(dq, dk, dv, dout, out, lse, q, k, v, a) \
                : backward<float, HD>(dq, dk, dv, dout, out, lse, q, k, v, a)
    switch (padded_hd(hd)) {
        case 8:
            LETHE_ATTENTION_BACKWARD(8);
        case 16:
            LETHE_ATTENTION_BACKWARD(16);
        case 32:
            LETHE_ATTENTION_BACKWARD(32);
        case 64:
            LETHE_ATTENTION_BACKWARD(64);
        default:
            LETHE_ATTENTION_BACKWARD(128);
    }
#undef LETHE_ATTENTION_BACKWARD
}
