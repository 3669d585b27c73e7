// The one place where kernels/cuda/*.cu differ between the nvcc build and the CPU-harness build
// (tests/cuda_harness/, which g++ force-includes as harness.h): how a kernel is launched, and how
// dynamic shared memory is declared.
#ifndef LETHE_KERNELS_CUDA_LAUNCH_CUH
#define LETHE_KERNELS_CUDA_LAUNCH_CUH

// Usage:   LETHE_LAUNCH(my_kernel, grid, block, smem_bytes, stream)(arg1, arg2);
//          then check cudaGetLastError().
// A kernel template with several arguments contains a comma the preprocessor would split on:
// name it through a pointer first (auto k = my_kernel<float, 4>; LETHE_LAUNCH(k, ...)).
//
// Dynamic shared memory: write   LETHE_DYNAMIC_SMEM(float, smem);   inside the kernel instead of
// `extern __shared__ float smem[];`. Under nvcc it is exactly that declaration (16-byte aligned);
// under the harness it is a pointer to this block's buffer of the launch's smem_bytes. A plain
// `extern __shared__` does not compile under the harness ("'used' attribute ignored"): such a
// declaration names a symbol of the kernel's choosing, which no header can redirect to a
// per-block buffer.
#ifdef __CUDACC__
#define LETHE_LAUNCH(kernel, grid, block, smem, stream) \
    kernel<<<(grid), (block), (smem), (stream)>>>
#define LETHE_DYNAMIC_SMEM(T, name) extern __shared__ __align__(16) T name[]
#else
#ifndef LETHE_CUDA_HARNESS
#error "kernels/cuda/*.cu are built by nvcc, or by g++ with -include tests/cuda_harness/harness.h"
#endif
#define LETHE_LAUNCH(kernel, grid, block, smem, stream) \
    ::lethe_harness::launcher((kernel), (grid), (block), (smem), (stream), #kernel)
#define LETHE_DYNAMIC_SMEM(T, name) T* const name = ::lethe_harness::dynamic_shared_memory<T>()
#endif

#endif
