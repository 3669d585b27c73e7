// Host-side launchers for the harness's test kernels (test_kernels.cu). Each launches one kernel
// and returns cudaGetLastError(); pointers are device pointers unless named host_*.
#ifndef LETHE_CUDA_HARNESS_TEST_KERNELS_H
#define LETHE_CUDA_HARNESS_TEST_KERNELS_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>

// Sums each of `rows` rows of n floats (one block of `threads` per row) into out[row].
// with_barrier = false omits the __syncthreads between writing the warps' sums and reading them.
cudaError_t launch_row_sum(const float* in, float* out, int rows, int n, int threads,
                           bool with_barrier);
// out[i] = in[i - 1] within each block of 256 (0 for the first), through shared memory;
// with_barrier = false omits the barrier between the write and the read.
cudaError_t launch_shift(const int* in, int* out, int blocks, bool with_barrier);
// Even and odd lanes vote separately (masks 0x55555555, 0xaaaaaaaa); lanes below 16 also take a
// ballot over mask 0xffff after lanes 16-31 have exited; two branches read __activemask.
cudaError_t launch_votes(const int* predicates, unsigned* ballots, int* anys, int* alls,
                         unsigned* low_ballots, unsigned* active, int threads);
// __shfl_sync(.., 3, 16), __shfl_up_sync(.., 2, 16), __shfl_down_sync(.., 3, 16),
// __shfl_xor_sync(.., 5, 16) of 100 + thread index; a double and a bf16 through __shfl_xor_sync(1).
cudaError_t launch_shuffles(int* idx, int* up, int* down, int* xr, double* xr_double,
                            __nv_bfloat16* xr_bf16, int threads);
// Reverses each block's n floats through n * 4 bytes of dynamic shared memory.
cudaError_t launch_reverse(const float* in, float* out, int blocks, int n, int threads);
cudaError_t allow_reverse_smem(int bytes);
// Reads buf[n] of a dynamic shared buffer of n floats: one past its end.
cudaError_t launch_smem_overrun(float* out, int n);
// Every thread of blocks x threads adds to the counters (see test_simt.cpp for the sums).
struct AtomicCounters {
    int i_sum;
    unsigned u_sum;
    float f_sum;
    double d_sum;
    int i_max;
    int i_min;
    int cas_sum;
    int exch;
    unsigned long long ull_sum;
    __nv_bfloat16 bf16_sum;
};
cudaError_t launch_atomics(AtomicCounters* counters, int blocks, int threads);
// Every thread increments *counter non-atomically inside a spin lock taken with atomicCAS.
cudaError_t launch_spinlock(int* lock, int* counter, int threads);
// bits[i] = __float2bfloat16_rn(in[i]) as raw bits, back[i] its float value, square[i] the float
// value of __hmul of it with itself.
cudaError_t launch_bf16_round_trip(const float* in, unsigned short* bits, float* back,
                                   float* square, int n);
// out[0] = in[n]: one element past the end of an n-element buffer.
cudaError_t launch_read_past_end(const float* in, float* out, int n);
// Deliberately broken synchronisation, each expected to fail the launch with a report.
cudaError_t launch_divergent_barrier(int* out);
cudaError_t launch_shuffle_with_exited_lane(int* out);
cudaError_t launch_shuffle_waits_for_barrier(int* out);
cudaError_t launch_ballot_without_own_lane(int* out);
cudaError_t launch_trap();
// Threads 64 and up return at once; the rest exchange values through a barrier.
cudaError_t launch_early_exit_barrier(int* out, int threads);
// __syncthreads_count/and/or over predicate = (threadIdx.x % 3 == 0).
cudaError_t launch_barrier_reductions(int* out, int threads);
// 512 x 256 threads, 4 barriers, shared memory: the harness's benchmark shape.
cudaError_t launch_four_barriers(const float* in, float* out, int blocks);
// `rounds` rounds of __syncwarp: almost nothing but fiber switches.
cudaError_t launch_sync_rounds(int* out, int blocks, int threads, int rounds);
// A stack frame far larger than a fiber's stack.
cudaError_t launch_stack_overflow(float* out);
// d = a (16x16, row-major bf16) x b (16x16, column-major bf16) + c (16x16 row-major fp32) through
// nvcuda::wmma, one warp.
cudaError_t launch_wmma_16x16x16(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c,
                                 float* d);
// A two-parameter kernel template launched through a pointer (the documented comma workaround).
cudaError_t launch_scale_template(float* data, int n, float factor);
// Launches with a deliberately bad configuration: 2048 threads per block.
cudaError_t launch_too_many_threads(int* out);

#endif
