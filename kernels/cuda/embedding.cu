// CUDA twin of kernels/cpu/embedding.c: the row gather, and a deterministic scatter-add backward
// that sorts the tokens on the device so that each vocabulary row owns its gradient row.
#include "common.cuh"

#include <limits.h>

namespace {

// Forward: one block per token (grid-stride past 64K tokens), threads over the row's columns.
constexpr size_t kMaxRowBlocks = 65536;

int row_threads(int D) {
    const int rounded = (D + 31) / 32 * 32;
    return rounded < 256 ? rounded : 256;
}

template <typename T>
__global__ void embedding_forward_kernel(T *__restrict__ out, const int32_t *__restrict__ tokens,
                                         const T *__restrict__ wte, size_t N, int D) {
    for (size_t n = blockIdx.x; n < N; n += gridDim.x) {
        const T *row = wte + (size_t)tokens[n] * D;
        for (int i = threadIdx.x; i < D; i += blockDim.x) out[n * D + i] = row[i];
    }
}

// ---- backward --------------------------------------------------------------------------------
// dwte[v] += dout[n] for every n with tokens[n] == v, in increasing n: the CPU twin's order, so
// float32 results have its bits. No float atomics: the (token, n) pairs are sorted by token with a
// stable LSD radix sort (8-bit digits, ceil(log2(V) / 8) passes: 3 for V = 128K), then one block
// per vocabulary row finds its run of the sorted list by binary search and adds the rows of dout
// in list order, which stability makes token order.
//
// Each pass works on tiles of 256 tokens, one block of 256 threads each: (1) each tile counts its
// digits into hist[digit][tile]; (2) one block turns hist into an exclusive prefix sum in
// digit-major order, i.e. the first output slot of (digit, tile); (3) each thread of a tile writes
// its pair to hist[digit][tile] + the number of earlier tokens of the tile with the same digit.
// Cost for N tokens, V rows of D columns: per pass 3 launches, 4N ints read and 2N written, and
// N * 128 shared-memory compares for the in-tile ranks (ties are counted by a loop rather than
// warp multi-split tricks: 256 compares per thread at most); the scan reads 256 * N / 256 = N ints
// in one block. Then V blocks each do two binary searches (2 log2 N loads) and the non-empty ones
// read their rows of dout once: N * D loads and U * D read-modify-writes of dwte for U distinct
// tokens. For N = 64K, V = 128K, D = 4096 the sort moves ~2 MB and the accumulation reads the
// 0.5 GB (bf16) of dout: the sort is noise. One very frequent token serialises its rows in one
// block (that is the price of the fixed order); its D columns are still spread over 256 threads.
// Scratch: keys and indices, twice (ping-pong), and hist: 4N + 256 * ceil(N / 256) ints.
constexpr int kTile = 256;
constexpr int kRadix = 256;
constexpr int kScanThreads = 1024;

int radix_passes(int V) {
    int bits = 0;
    while (bits < 31 && (V - 1) >> bits) ++bits;
    return (bits + 7) / 8;
}

size_t tile_count(size_t N) { return ceil_div(N, kTile); }

__global__ void sort_init_kernel(int32_t *__restrict__ keys, int32_t *__restrict__ idx,
                                 const int32_t *__restrict__ tokens, int N) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N) {
        keys[n] = tokens[n];
        idx[n] = n;
    }
}

// One block of kTile threads per tile; hist (kRadix, tiles).
__global__ void radix_histogram_kernel(int32_t *__restrict__ hist,
                                       const int32_t *__restrict__ keys, int N, int shift) {
    __shared__ int digits[kTile];
    const int n = blockIdx.x * kTile + threadIdx.x;
    digits[threadIdx.x] = n < N ? (keys[n] >> shift) & (kRadix - 1) : kRadix;  // kRadix: none
    __syncthreads();
    int count = 0;  // thread d counts digit d
    for (int j = 0; j < kTile; ++j) count += digits[j] == (int)threadIdx.x;
    hist[threadIdx.x * (size_t)gridDim.x + blockIdx.x] = count;
}

// Exclusive prefix sum of data[count] in place, one block of kScanThreads: each thread sums a
// contiguous chunk, the chunk sums are scanned in shared memory (Hillis-Steele), then each thread
// rewrites its chunk. Integers: exact in any order.
__global__ void exclusive_scan_kernel(int32_t *data, int count) {
    __shared__ int sums[kScanThreads];
    const int per = (count + kScanThreads - 1) / kScanThreads;
    const int begin = threadIdx.x * per;
    const int end = begin + per < count ? begin + per : count;
    int local = 0;
    for (int i = begin; i < end; ++i) local += data[i];
    sums[threadIdx.x] = local;
    __syncthreads();
    for (int offset = 1; offset < kScanThreads; offset *= 2) {
        const int left = threadIdx.x >= (unsigned)offset ? sums[threadIdx.x - offset] : 0;
        __syncthreads();
        sums[threadIdx.x] += left;
        __syncthreads();
    }
    int running = threadIdx.x > 0 ? sums[threadIdx.x - 1] : 0;
    for (int i = begin; i < end; ++i) {
        const int c = data[i];
        data[i] = running;
        running += c;
    }
}

// Stable scatter of one tile by digit; first_slot (kRadix, tiles) from exclusive_scan_kernel.
__global__ void radix_scatter_kernel(int32_t *__restrict__ keys_out, int32_t *__restrict__ idx_out,
                                     const int32_t *__restrict__ keys_in,
                                     const int32_t *__restrict__ idx_in,
                                     const int32_t *__restrict__ first_slot, int N, int shift) {
    __shared__ int digits[kTile];
    const int n = blockIdx.x * kTile + threadIdx.x;
    const int key = n < N ? keys_in[n] : 0;
    const int digit = n < N ? (key >> shift) & (kRadix - 1) : kRadix;
    digits[threadIdx.x] = digit;
    __syncthreads();
    if (n >= N) return;
    int rank = 0;
    for (int j = 0; j < (int)threadIdx.x; ++j) rank += digits[j] == digit;
    const int slot = first_slot[digit * (size_t)gridDim.x + blockIdx.x] + rank;
    keys_out[slot] = key;
    idx_out[slot] = idx_in[n];
}

// First index of sorted[0, N) holding a key >= v.
__device__ int lower_bound(const int32_t *sorted, int N, int v) {
    int lo = 0, hi = N;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (sorted[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// One block per vocabulary row (grid-stride past 64K rows), threads over columns; dout (N, D).
template <typename T>
__global__ void embedding_accumulate_kernel(float *__restrict__ dwte, const T *__restrict__ dout,
                                            const int32_t *__restrict__ sorted_keys,
                                            const int32_t *__restrict__ sorted_idx, int N, int D,
                                            int V) {
    for (int v = blockIdx.x; v < V; v += gridDim.x) {
        const int first = lower_bound(sorted_keys, N, v), last = lower_bound(sorted_keys, N, v + 1);
        if (first == last) continue;
        float *row = dwte + (size_t)v * D;
        for (int i = threadIdx.x; i < D; i += blockDim.x) {
            float acc = row[i];
            for (int j = first; j < last; ++j)
                acc += load_f32(dout + (size_t)sorted_idx[j] * D + i);
            row[i] = acc;
        }
    }
}

template <typename T>
int embedding_forward(void *out, const int32_t *tokens, const void *wte, size_t N, int D,
                      cudaStream_t stream) {
    if (N == 0 || D <= 0) return 0;
    auto kernel = embedding_forward_kernel<T>;
    const dim3 grid((unsigned)(N < kMaxRowBlocks ? N : kMaxRowBlocks));
    LETHE_LAUNCH(kernel, grid, row_threads(D), 0, stream)(
        static_cast<T *>(out), tokens, static_cast<const T *>(wte), N, D);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

template <typename T>
int embedding_backward(float *dwte, void *scratch, const void *dout, const int32_t *tokens,
                       size_t N, int D, int V, cudaStream_t stream) {
    if (N == 0 || D <= 0) return 0;
    if (N > INT_MAX / 2 || V <= 0) return (int)cudaErrorInvalidValue;
    const int n = (int)N;
    const unsigned tiles = (unsigned)tile_count(N);
    int32_t *keys[2], *idx[2];
    keys[0] = static_cast<int32_t *>(scratch);
    idx[0] = keys[0] + N;
    keys[1] = idx[0] + N;
    idx[1] = keys[1] + N;
    int32_t *hist = idx[1] + N;

    LETHE_LAUNCH(sort_init_kernel, dim3(tiles), kTile, 0, stream)(keys[0], idx[0], tokens, n);
    LETHE_CUDA_CHECK(cudaGetLastError());
    const int passes = radix_passes(V);
    for (int p = 0; p < passes; ++p) {
        const int in = p % 2, shift = 8 * p;
        LETHE_LAUNCH(radix_histogram_kernel, dim3(tiles), kTile, 0, stream)(hist, keys[in], n,
                                                                             shift);
        LETHE_CUDA_CHECK(cudaGetLastError());
        LETHE_LAUNCH(exclusive_scan_kernel, dim3(1), kScanThreads, 0, stream)(
            hist, (int)(kRadix * tiles));
        LETHE_CUDA_CHECK(cudaGetLastError());
        LETHE_LAUNCH(radix_scatter_kernel, dim3(tiles), kTile, 0, stream)(
            keys[1 - in], idx[1 - in], keys[in], idx[in], hist, n, shift);
        LETHE_CUDA_CHECK(cudaGetLastError());
    }
    const int sorted = passes % 2;
    auto kernel = embedding_accumulate_kernel<T>;
    const dim3 grid((unsigned)((size_t)V < kMaxRowBlocks ? (size_t)V : kMaxRowBlocks));
    LETHE_LAUNCH(kernel, grid, row_threads(D), 0, stream)(
        dwte, static_cast<const T *>(dout), keys[sorted], idx[sorted], n, D, V);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

}  // namespace

extern "C" int cuda_embedding_forward(void *out, const int32_t *tokens, const void *wte, size_t N,
                                      int D, LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16 ? embedding_forward<__nv_bfloat16>(out, tokens, wte, N, D, stream)
                               : embedding_forward<float>(out, tokens, wte, N, D, stream);
}

extern "C" size_t cuda_embedding_backward_scratch_size(size_t N) {
    return (4 * N + (size_t)kRadix * tile_count(N)) * sizeof(int32_t);
}

extern "C" int cuda_embedding_backward(float *dwte, void *scratch, const void *dout,
                                       const int32_t *tokens, size_t N, int D, int V,
                                       LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16
               ? embedding_backward<__nv_bfloat16>(dwte, scratch, dout, tokens, N, D, V, stream)
               : embedding_backward<float>(dwte, scratch, dout, tokens, N, D, V, stream);
}
