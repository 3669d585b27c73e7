// Kernels that exercise the CPU harness. This file is plain CUDA: the tests build it with g++
// through the harness, and cuda_harness_nvcc_same_source builds the very same file with nvcc.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "launch.cuh"
#include "test_kernels.h"

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
    return v;
}

// One block per row: strided per-thread sums, a shuffle reduction per warp, the warps' sums through
// shared memory, and a last shuffle reduction in warp 0. The sum's association order is fixed by
// the code, so the result is the same under every schedule.
template <bool kWithBarrier>
__global__ void row_sum_kernel(const float* in, float* out, int n) {
    __shared__ float warp_sums[32];
    const float* row = in + static_cast<size_t>(blockIdx.x) * n;
    float v = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) v += row[i];
    v = warp_sum(v);
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    if (lane == 0) warp_sums[warp] = v;
    // Without this barrier warp 0 may read the sums of warps that have not written them yet.
    if (kWithBarrier) __syncthreads();
    if (warp == 0) {
        v = lane < static_cast<int>(blockDim.x / 32) ? warp_sums[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) out[blockIdx.x] = v;
    }
}

// Without the barrier this is right only when thread t - 1 happens to run before thread t, which
// is the case in thread-index order: only a shuffled schedule catches it.
template <bool kWithBarrier>
__global__ void shift_kernel(const int* in, int* out) {
    __shared__ int tile[256];
    const int t = threadIdx.x;
    const int g = blockIdx.x * blockDim.x + t;
    tile[t] = in[g];
    if (kWithBarrier) __syncthreads();
    out[g] = t > 0 ? tile[t - 1] : 0;
}

__global__ void vote_kernel(const int* predicates, unsigned* ballots, int* anys, int* alls,
                            unsigned* low_ballots, unsigned* active) {
    const int t = threadIdx.x;
    const int lane = t % 32;
    const int p = predicates[t];
    const unsigned half = lane % 2 == 0 ? 0x55555555u : 0xaaaaaaaau;
    ballots[t] = __ballot_sync(half, p);
    anys[t] = __any_sync(half, p);
    alls[t] = __all_sync(half, p);
    if (lane < 8) {
        active[t] = __activemask();
    } else if (lane < 20) {
        active[t] = __activemask();
    } else {
        active[t] = 0;
    }
    if (lane >= 16) return;
    low_ballots[t] = __ballot_sync(0x0000ffffu, p);
}

__global__ void shuffle_kernel(int* idx, int* up, int* down, int* xr, double* xr_double,
                               __nv_bfloat16* xr_bf16) {
    const int t = threadIdx.x;
    const int v = 100 + t;
    idx[t] = __shfl_sync(kFullMask, v, 3, 16);
    up[t] = __shfl_up_sync(kFullMask, v, 2, 16);
    down[t] = __shfl_down_sync(kFullMask, v, 3, 16);
    xr[t] = __shfl_xor_sync(kFullMask, v, 5, 16);
    xr_double[t] = __shfl_xor_sync(kFullMask, 0.5 + v, 1);
    xr_bf16[t] = __shfl_xor_sync(kFullMask, __float2bfloat16_rn(static_cast<float>(v)), 1);
}

__global__ void reverse_kernel(const float* in, float* out, int n) {
    LETHE_DYNAMIC_SMEM(float, buf);
    const size_t base = static_cast<size_t>(blockIdx.x) * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = in[base + i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[base + i] = buf[n - 1 - i];
}

__global__ void smem_overrun_kernel(float* out, int n) {
    LETHE_DYNAMIC_SMEM(float, buf);
    out[0] = buf[n];
}

__global__ void atomics_kernel(AtomicCounters* c) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&c->i_sum, 1);
    atomicAdd(&c->u_sum, 2u);
    atomicAdd(&c->f_sum, 0.5f);
    atomicAdd(&c->d_sum, 0.25);
    atomicAdd(&c->ull_sum, 3ull);
    atomicAdd(&c->bf16_sum, __float2bfloat16_rn(1.0f));
    atomicMax(&c->i_max, g);
    atomicMin(&c->i_min, -g);
    // The compare-and-swap loop that operations without a native atomic are built from.
    int old = c->cas_sum;
    int assumed;
    do {
        assumed = old;
        old = atomicCAS(&c->cas_sum, assumed, assumed + g);
    } while (old != assumed);
    atomicExch(&c->exch, g);
}

// Terminates only if a spinning thread lets the lock holder run: on Volta and later independent
// thread scheduling guarantees that, and in the harness every atomic is a scheduling point.
__global__ void spinlock_kernel(int* lock, int* counter) {
    while (atomicCAS(lock, 0, 1) != 0) {}
    *counter += 1;
    __threadfence();
    atomicExch(lock, 0);
}

__global__ void bf16_round_trip_kernel(const float* in, unsigned short* bits, float* back,
                                       float* square, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const __nv_bfloat16 b = __float2bfloat16_rn(in[i]);
    bits[i] = __bfloat16_as_ushort(b);
    back[i] = __bfloat162float(b);
    square[i] = __bfloat162float(__hmul(b, b));
}

__global__ void read_past_end_kernel(const float* in, float* out, int n) { out[0] = in[n]; }

// Undefined on a GPU (a hang or silent garbage): half of the block waits at one barrier, half at
// another.
__global__ void divergent_barrier_kernel(int* out) {
    if (threadIdx.x < 32) {
        __syncthreads();
        out[threadIdx.x] = 1;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2;
    }
}

__global__ void shuffle_with_exited_lane_kernel(int* out) {
    if (threadIdx.x == 1) return;
    if (threadIdx.x == 0) out[0] = __shfl_sync(0x3u, static_cast<int>(threadIdx.x), 1);
}

// Lane 0 waits in a full-warp shuffle for lanes that wait at a barrier for lane 0.
__global__ void shuffle_waits_for_barrier_kernel(int* out) {
    if (threadIdx.x == 0) out[0] = __shfl_sync(kFullMask, 1, 0);
    __syncthreads();
}

__global__ void ballot_without_own_lane_kernel(int* out) {
    out[threadIdx.x] = static_cast<int>(__ballot_sync(0x2u, 1));
}

__global__ void trap_kernel() {
    if (threadIdx.x == 5) __trap();
}

__global__ void early_exit_barrier_kernel(int* out) {
    __shared__ int s[64];
    if (threadIdx.x >= 64) return;
    s[threadIdx.x] = static_cast<int>(threadIdx.x);
    __syncthreads();
    out[threadIdx.x] = s[63 - threadIdx.x];
}

__global__ void barrier_reductions_kernel(int* out) {
    const int p = threadIdx.x % 3 == 0;
    const int count = __syncthreads_count(p);
    const int all = __syncthreads_and(p);
    const int any = __syncthreads_or(p);
    const int all_true = __syncthreads_and(1);
    if (threadIdx.x == 0) {
        out[0] = count;
        out[1] = all;
        out[2] = any;
        out[3] = all_true;
    }
}

__global__ void four_barriers_kernel(const float* in, float* out) {
    __shared__ float s[256];
    const int t = threadIdx.x;
    const int g = blockIdx.x * blockDim.x + t;
    s[t] = in[g];
    __syncthreads();
    float v = s[(t + 1) % 256];
    __syncthreads();
    s[t] = 2.0f * v;
    __syncthreads();
    v = s[255 - t];
    __syncthreads();
    out[g] = v;
}

__global__ void sync_rounds_kernel(int* out, int rounds) {
    int v = 0;
    for (int r = 0; r < rounds; ++r) {
        __syncwarp();
        v += r;
    }
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

__device__ float deep_recursion(int depth, float x) {
    volatile float frame[256];  // 1 KiB per level, so the stack grows a page at a time
    for (int i = 0; i < 256; ++i) frame[i] = x + static_cast<float>(i);
    if (depth == 0) return frame[255];
    return deep_recursion(depth - 1, frame[depth % 256]) + frame[0];
}

__global__ void stack_overflow_kernel(float* out) { out[0] = deep_recursion(100000, 1.0f); }

__global__ void wmma_16x16x16_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c,
                                     float* d) {
    namespace wmma = nvcuda::wmma;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
    wmma::mma_sync(acc, fa, fb, acc);
    for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= 2.0f;  // elementwise: layout-free
    wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

template <typename T, int kStride>
__global__ void scale_kernel(T* data, int n, T factor) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += kStride) data[i] *= factor;
}

__global__ void too_many_threads_kernel(int* out) { out[0] = 1; }

}  // namespace

cudaError_t launch_row_sum(const float* in, float* out, int rows, int n, int threads,
                           bool with_barrier) {
    if (with_barrier) {
        LETHE_LAUNCH(row_sum_kernel<true>, rows, threads, 0, 0)(in, out, n);
    } else {
        LETHE_LAUNCH(row_sum_kernel<false>, rows, threads, 0, 0)(in, out, n);
    }
    return cudaGetLastError();
}

cudaError_t launch_shift(const int* in, int* out, int blocks, bool with_barrier) {
    if (with_barrier) {
        LETHE_LAUNCH(shift_kernel<true>, blocks, 256, 0, 0)(in, out);
    } else {
        LETHE_LAUNCH(shift_kernel<false>, blocks, 256, 0, 0)(in, out);
    }
    return cudaGetLastError();
}

cudaError_t launch_votes(const int* predicates, unsigned* ballots, int* anys, int* alls,
                         unsigned* low_ballots, unsigned* active, int threads) {
    LETHE_LAUNCH(vote_kernel, 1, threads, 0, 0)
    (predicates, ballots, anys, alls, low_ballots, active);
    return cudaGetLastError();
}

cudaError_t launch_shuffles(int* idx, int* up, int* down, int* xr, double* xr_double,
                            __nv_bfloat16* xr_bf16, int threads) {
    LETHE_LAUNCH(shuffle_kernel, 1, threads, 0, 0)(idx, up, down, xr, xr_double, xr_bf16);
    return cudaGetLastError();
}

cudaError_t launch_reverse(const float* in, float* out, int blocks, int n, int threads) {
    LETHE_LAUNCH(reverse_kernel, blocks, threads, static_cast<size_t>(n) * sizeof(float), 0)
    (in, out, n);
    return cudaGetLastError();
}

cudaError_t allow_reverse_smem(int bytes) {
    return cudaFuncSetAttribute(reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

cudaError_t launch_smem_overrun(float* out, int n) {
    LETHE_LAUNCH(smem_overrun_kernel, 1, 1, static_cast<size_t>(n) * sizeof(float), 0)(out, n);
    return cudaGetLastError();
}

cudaError_t launch_atomics(AtomicCounters* counters, int blocks, int threads) {
    LETHE_LAUNCH(atomics_kernel, blocks, threads, 0, 0)(counters);
    return cudaGetLastError();
}

cudaError_t launch_spinlock(int* lock, int* counter, int threads) {
    LETHE_LAUNCH(spinlock_kernel, 1, threads, 0, 0)(lock, counter);
    return cudaGetLastError();
}

cudaError_t launch_bf16_round_trip(const float* in, unsigned short* bits, float* back,
                                   float* square, int n) {
    LETHE_LAUNCH(bf16_round_trip_kernel, (n + 63) / 64, 64, 0, 0)(in, bits, back, square, n);
    return cudaGetLastError();
}

cudaError_t launch_read_past_end(const float* in, float* out, int n) {
    LETHE_LAUNCH(read_past_end_kernel, 1, 1, 0, 0)(in, out, n);
    return cudaGetLastError();
}

cudaError_t launch_divergent_barrier(int* out) {
    LETHE_LAUNCH(divergent_barrier_kernel, 1, 64, 0, 0)(out);
    return cudaGetLastError();
}

cudaError_t launch_shuffle_with_exited_lane(int* out) {
    LETHE_LAUNCH(shuffle_with_exited_lane_kernel, 1, 32, 0, 0)(out);
    return cudaGetLastError();
}

cudaError_t launch_shuffle_waits_for_barrier(int* out) {
    LETHE_LAUNCH(shuffle_waits_for_barrier_kernel, 1, 32, 0, 0)(out);
    return cudaGetLastError();
}

cudaError_t launch_ballot_without_own_lane(int* out) {
    LETHE_LAUNCH(ballot_without_own_lane_kernel, 1, 32, 0, 0)(out);
    return cudaGetLastError();
}

cudaError_t launch_trap() {
    LETHE_LAUNCH(trap_kernel, 1, 32, 0, 0)();
    return cudaGetLastError();
}

cudaError_t launch_early_exit_barrier(int* out, int threads) {
    LETHE_LAUNCH(early_exit_barrier_kernel, 1, threads, 0, 0)(out);
    return cudaGetLastError();
}

cudaError_t launch_barrier_reductions(int* out, int threads) {
    LETHE_LAUNCH(barrier_reductions_kernel, 1, threads, 0, 0)(out);
    return cudaGetLastError();
}

cudaError_t launch_four_barriers(const float* in, float* out, int blocks) {
    LETHE_LAUNCH(four_barriers_kernel, blocks, 256, 0, 0)(in, out);
    return cudaGetLastError();
}

cudaError_t launch_sync_rounds(int* out, int blocks, int threads, int rounds) {
    LETHE_LAUNCH(sync_rounds_kernel, blocks, threads, 0, 0)(out, rounds);
    return cudaGetLastError();
}

cudaError_t launch_stack_overflow(float* out) {
    LETHE_LAUNCH(stack_overflow_kernel, 1, 1, 0, 0)(out);
    return cudaGetLastError();
}

cudaError_t launch_wmma_16x16x16(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c,
                                 float* d) {
    LETHE_LAUNCH(wmma_16x16x16_kernel, 1, 32, 0, 0)(a, b, c, d);
    return cudaGetLastError();
}

cudaError_t launch_scale_template(float* data, int n, float factor) {
    auto kernel = scale_kernel<float, 64>;
    LETHE_LAUNCH(kernel, 1, 64, 0, 0)(data, n, factor);
    return cudaGetLastError();
}

cudaError_t launch_too_many_threads(int* out) {
    LETHE_LAUNCH(too_many_threads_kernel, 1, 2048, 0, 0)(out);
    return cudaGetLastError();
}
