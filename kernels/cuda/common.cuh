// Device helpers shared by kernels/cuda/*.cu: fp32/bf16 loads and stores through float, warp and
// block reductions in a fixed order, and the check macro through which launchers return errors.
#ifndef LETHE_KERNELS_CUDA_COMMON_CUH
#define LETHE_KERNELS_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "launch.cuh"
#include "ops.h"

// Evaluates a CUDA runtime call; on failure names the call, file and line on stderr and returns
// the cudaError_t (as int) from the enclosing launcher. After a launch, check
// LETHE_CUDA_CHECK(cudaGetLastError()).
#define LETHE_CUDA_CHECK(call)                                                        \
    do {                                                                              \
        const cudaError_t lethe_cuda_check_e = (call);                                \
        if (lethe_cuda_check_e != cudaSuccess) {                                      \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call, \
                    cudaGetErrorName(lethe_cuda_check_e),                             \
                    cudaGetErrorString(lethe_cuda_check_e));                          \
            return (int)lethe_cuda_check_e;                                           \
        }                                                                             \
    } while (0)

__host__ __device__ constexpr size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

// Activations and weights are float or __nv_bfloat16; arithmetic is always in float.
__device__ __forceinline__ float load_f32(const float *p) { return *p; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store_f32(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_f32(__nv_bfloat16 *p, float v) {
    *p = __float2bfloat16_rn(v);
}

// Reductions over the 32 lanes of a full warp by xor butterfly. Every lane combines the same two
// values at every level (a + b == b + a in IEEE), so all lanes return identical bits.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset /= 2)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum of v over the block, returned to every thread. blockDim.x must be a multiple of 32 (at most
// 1024) and every thread must call it (two __syncthreads). The order is fixed (lanes, then the
// warp sums, by butterfly) whatever the schedule: the same inputs give the same bits. The first
// barrier lets the readers of a previous call finish before warp_sums is overwritten.
template <typename T>
__device__ T block_sum(T v) {
    __shared__ T warp_sums[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    return warp_sum(lane < (int)(blockDim.x / 32) ? warp_sums[lane] : T(0));
}

// Maximum of v over the block, returned to every thread; same contract as block_sum.
__device__ inline float block_max(float v) {
    __shared__ float warp_maxes[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) warp_maxes[warp] = v;
    __syncthreads();
    return warp_max(lane < (int)(blockDim.x / 32) ? warp_maxes[lane] : -INFINITY);
}

#endif
