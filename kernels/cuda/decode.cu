// CUDA twin of kernels/cpu/decode.c, for generation on the device: the append of K/V rows to a
// cache, and one query row per sequence attending to its cache (RoPE at positions: rope.cu).
#include "common.cuh"

#include <limits.h>
#include <math.h>

namespace {

// ---- row scatter -----------------------------------------------------------------------------
// One block per source row (grid-stride past 64K rows), threads over its columns. The elements
// are copied as unsigned integers of their width: bits, not values.
constexpr size_t kMaxRowBlocks = 65536;

int row_threads(int width) {
    const int rounded = (width + 31) / 32 * 32;
    return rounded < 256 ? rounded : 256;
}

template <typename T>
__global__ void rows_scatter_kernel(T *__restrict__ dst, const int64_t *__restrict__ dst_row,
                                    const T *__restrict__ src, size_t n, int width) {
    for (size_t r = blockIdx.x; r < n; r += gridDim.x) {
        T *to = dst + (size_t)dst_row[r] * width;
        const T *from = src + r * width;
        for (int i = threadIdx.x; i < width; i += blockDim.x) to[i] = from[i];
    }
}

template <typename T>
int rows_scatter(void *dst, const int64_t *dst_row, const void *src, size_t n, int width,
                 cudaStream_t stream) {
    if (n == 0 || width <= 0) return 0;
    const dim3 grid((unsigned)(n < kMaxRowBlocks ? n : kMaxRowBlocks));
    auto kernel = rows_scatter_kernel<T>;
    LETHE_LAUNCH(kernel, grid, row_threads(width), 0, stream)(
        static_cast<T *>(dst), dst_row, static_cast<const T *>(src), n, width);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

// ---- decoding attention ----------------------------------------------------------------------
// One block of 4 warps per (query row, head): the grid is n * H blocks, the heads of a row
// adjacent so that the H / KV heads reading one KV head's cache find it in L2. The block's lanes
// form groups of L lanes (L = 32; for hd <= 32 the smallest power of two >= hd); a group scores
// one cached key at a time, lane j holding head dimensions j, j + L, ..., j + (DPL - 1) L (so a
// group reads a key's row as consecutive elements), the dot product summed over the group by xor
// butterfly. Warp w takes the chunks w, w + 4, ... of 32 / L * kUnroll keys, group g of the warp
// keys g, g + 32 / L, ... of a chunk. The K and V rows of a group's kUnroll keys (4; 2 at DPL 4,
// to stay within 64 registers) are loaded before any is used: 2 * kUnroll * DPL loads in flight.
//
// Each group keeps an online softmax (Milakov & Gimelshein 2018) in log2 units: the running
// maximum m of its scores, l = sum 2^(s - m), o = sum 2^(s - m) v over its own keys; a chunk's
// kUnroll scores rescale (m, l, o) at most once. At the end the 4 * 32 / L groups' (m, l, o)
// are combined through shared memory in group order by the thread of each head dimension:
// out = sum_g 2^(m_g - M) o_g / sum_g 2^(m_g - M) l_g, M = max_g m_g. Every sum runs in a fixed
// order whatever the schedule, in fp32 (bf16 inputs widened as loaded; the output rounded once).
//
// Cost per (row, head) and cached key: hd K and hd V elements read (from L2 for all but one head
// of a group), 2 hd FMAs, log2(L) shuffles and about 1 exp2 per lane: memory-bound, as decoding
// is. No tensor cores: a head has one query row, no matrix product to feed them.
constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / 32;
constexpr float kLog2e = 1.4426950408889634f;

template <int DPL>
struct DecodeUnroll {
    static constexpr int kUnroll = DPL == 4 ? 2 : 4;  // keys per group per step
};

// q, out (n, H, hd); k, v (cache rows, KV, hd). L: lanes per group (32 when DPL > 1).
template <typename T, int DPL>
__global__ void __launch_bounds__(kDecodeThreads)
    attention_decode_kernel(T *__restrict__ out, const T *__restrict__ q, const T *__restrict__ k,
                            const T *__restrict__ v, const int64_t *__restrict__ cache_row,
                            const int32_t *__restrict__ len, int H, int KV, int hd, int L,
                            float scale_log2) {
    constexpr int U = DecodeUnroll<DPL>::kUnroll;
    // Group g's o at [g * hd, (g + 1) * hd): 128 / L groups of hd <= L * DPL floats.
    __shared__ float part_o[kDecodeThreads * DPL];
    __shared__ float part_m[kDecodeThreads], part_l[kDecodeThreads];

    const size_t row = blockIdx.x / H;
    const int h = blockIdx.x % H, kvh = h / (H / KV);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int j = lane % L, group_in_warp = lane / L, groups_per_warp = 32 / L;
    const int n_keys = len[row];
    const size_t key_stride = (size_t)KV * hd;
    const size_t first = (size_t)cache_row[row] * key_stride + (size_t)kvh * hd;
    const T *kh = k + first, *vh = v + first;

    float qr[DPL], o[DPL];
    const T *qh = q + (row * H + h) * (size_t)hd;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        const int d = j + L * i;
        qr[i] = d < hd ? load_f32(qh + d) : 0.0f;
        o[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;

    const int chunk = groups_per_warp * U;
    for (int key0 = warp * chunk; key0 < n_keys; key0 += kDecodeWarps * chunk) {
        float kr[U][DPL], vr[U][DPL];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int key = key0 + group_in_warp + groups_per_warp * u;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                const int d = j + L * i;
                const bool in = key < n_keys && d < hd;
                kr[u][i] = in ? load_f32(kh + key * key_stride + d) : 0.0f;
                vr[u][i] = in ? load_f32(vh + key * key_stride + d) : 0.0f;
            }
        }
        float s[U], chunk_max = -INFINITY;
#pragma unroll
        for (int u = 0; u < U; u++) {
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < DPL; i++) dot += qr[i] * kr[u][i];
            // Lanes of a group differ in their low log2(L) bits: the butterfly stays inside
            // the group and leaves the same bits in each of its lanes.
            for (int offset = L / 2; offset > 0; offset /= 2)
                dot += __shfl_xor_sync(0xffffffffu, dot, offset);
            const int key = key0 + group_in_warp + groups_per_warp * u;
            s[u] = key < n_keys ? dot * scale_log2 : -INFINITY;
            chunk_max = fmaxf(chunk_max, s[u]);
        }
        if (chunk_max > m) {  // uniform in the group; m = -INFINITY before its first key
            const float rescale = exp2f(m - chunk_max);
            l *= rescale;
#pragma unroll
            for (int i = 0; i < DPL; i++) o[i] *= rescale;
            m = chunk_max;
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float p = s[u] == -INFINITY ? 0.0f : exp2f(s[u] - m);
            l += p;
#pragma unroll
            for (int i = 0; i < DPL; i++) o[i] += p * vr[u][i];
        }
    }

    const int g = threadIdx.x / L;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        const int d = j + L * i;
        if (d < hd) part_o[g * hd + d] = o[i];
    }
    if (j == 0) {
        part_m[g] = m;
        part_l[g] = l;
    }
    __syncthreads();
    const int d = threadIdx.x;
    if (d < hd) {
        const int groups = kDecodeThreads / L;
        float M = -INFINITY;
        for (int gg = 0; gg < groups; gg++) M = fmaxf(M, part_m[gg]);
        float total = 0.0f, acc = 0.0f;
        for (int gg = 0; gg < groups; gg++) {
            if (part_m[gg] == -INFINITY) continue;  // a group that saw no key
            const float w = exp2f(part_m[gg] - M);
            total += part_l[gg] * w;
            acc += part_o[gg * hd + d] * w;
        }
        store_f32(out + (row * H + h) * (size_t)hd + d, acc / total);
    }
}

template <typename T, int DPL>
int attention_decode(void *out, const void *q, const void *k, const void *v,
                     const int64_t *cache_row, const int32_t *len, size_t n, int H, int KV,
                     int hd, cudaStream_t stream) {
    int L = 32;  // hd <= 32: the smallest power of two >= hd, one dimension per lane
    if (DPL == 1)
        while (L / 2 >= hd) L /= 2;
    const float scale_log2 = 1.0f / sqrtf((float)hd) * kLog2e;  // scale as the CPU twin's
    auto kernel = attention_decode_kernel<T, DPL>;
    LETHE_LAUNCH(kernel, dim3((unsigned)(n * H)), kDecodeThreads, 0, stream)(
        static_cast<T *>(out), static_cast<const T *>(q), static_cast<const T *>(k),
        static_cast<const T *>(v), cache_row, len, H, KV, hd, L, scale_log2);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

// Dimensions per lane: 1 for hd <= 32, 2 up to 64, 4 up to 128.
template <typename T>
int attention_decode_hd(void *out, const void *q, const void *k, const void *v,
                        const int64_t *cache_row, const int32_t *len, size_t n, int H, int KV,
                        int hd, cudaStream_t stream) {
    if (hd <= 32)
        return attention_decode<T, 1>(out, q, k, v, cache_row, len, n, H, KV, hd, stream);
    if (hd <= 64)
        return attention_decode<T, 2>(out, q, k, v, cache_row, len, n, H, KV, hd, stream);
    return attention_decode<T, 4>(out, q, k, v, cache_row, len, n, H, KV, hd, stream);
}

}  // namespace

// Launch configuration: grid min(n, 64K) blocks of min(width rounded up to 32, 256) threads.
extern "C" int cuda_rows_scatter(void *dst, const int64_t *dst_row, const void *src, size_t n,
                                 int width, LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16
               ? rows_scatter<unsigned short>(dst, dst_row, src, n, width, stream)
               : rows_scatter<unsigned int>(dst, dst_row, src, n, width, stream);
}

// Launch configuration: grid n * H blocks of 128 threads, no dynamic shared memory (3 KiB static
// at most).
extern "C" int cuda_attention_decode(void *out, const void *q, const void *k, const void *v,
                                     const int64_t *cache_row, const int32_t *len, size_t n,
                                     int H, int KV, int hd, LetheDtype dtype,
                                     LetheStream stream) {
    // out, q (n, H, hd); k, v (cache rows, KV, hd); cache_row, len (n)
    if (hd < 1 || hd > 128 || KV < 1 || H < KV || H % KV != 0 ||
        (H > 0 && n > (size_t)INT_MAX / (size_t)H))
        return (int)cudaErrorInvalidValue;
    if (n == 0) return 0;
    return dtype == LETHE_BF16 ? attention_decode_hd<__nv_bfloat16>(out, q, k, v, cache_row, len,
                                                                     n, H, KV, hd, stream)
                               : attention_decode_hd<float>(out, q, k, v, cache_row, len, n, H,
                                                            KV, hd, stream);
}
