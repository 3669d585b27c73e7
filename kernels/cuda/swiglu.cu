// CUDA twins of kernels/cpu/swiglu.c: the SwiGLU gate out = silu(gate) * up, its backward, and the
// residual add, elementwise in float32 or bfloat16 (arithmetic in float, as the CPU twin).
#include "common.cuh"

namespace {

// Elementwise launches: 256 threads a block, at most 64K blocks, grid-stride beyond (an element's
// thread changes with n, its result does not). Each element is independent: no reduction order.
constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 65536;

dim3 elementwise_grid(size_t n) {
    const size_t blocks = ceil_div(n, kThreads);
    return dim3(static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks));
}

template <typename T>
__global__ void swiglu_forward_kernel(T *__restrict__ out, const T *__restrict__ gate,
                                      const T *__restrict__ up, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = load_f32(gate + i);
        store_f32(out + i, g / (1.0f + expf(-g)) * load_f32(up + i));
    }
}

template <typename T>
__global__ void swiglu_backward_kernel(T *__restrict__ dgate, T *__restrict__ dup,
                                       const T *__restrict__ dout, const T *__restrict__ gate,
                                       const T *__restrict__ up, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        // silu'(g) = sig(g) * (1 + g * (1 - sig(g)))
        const float g = load_f32(gate + i), d = load_f32(dout + i);
        const float sig = 1.0f / (1.0f + expf(-g));
        const float dsilu = sig * (1.0f + g * (1.0f - sig));
        store_f32(dgate + i, load_f32(dgate + i) + d * load_f32(up + i) * dsilu);
        store_f32(dup + i, load_f32(dup + i) + d * (g * sig));
    }
}

// out may alias a (no __restrict__): each element is read before it is written, by one thread.
template <typename T>
__global__ void residual_forward_kernel(T *out, const T *a, const T *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        store_f32(out + i, load_f32(a + i) + load_f32(b + i));
    }
}

template <typename T>
int swiglu_forward(void *out, const void *gate, const void *up, size_t n, cudaStream_t stream) {
    if (n == 0) return 0;
    auto kernel = swiglu_forward_kernel<T>;
    LETHE_LAUNCH(kernel, elementwise_grid(n), kThreads, 0, stream)(
        static_cast<T *>(out), static_cast<const T *>(gate), static_cast<const T *>(up), n);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

template <typename T>
int swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                    size_t n, cudaStream_t stream) {
    if (n == 0) return 0;
    auto kernel = swiglu_backward_kernel<T>;
    LETHE_LAUNCH(kernel, elementwise_grid(n), kThreads, 0, stream)(
        static_cast<T *>(dgate), static_cast<T *>(dup), static_cast<const T *>(dout),
        static_cast<const T *>(gate), static_cast<const T *>(up), n);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

template <typename T>
int residual_forward(void *out, const void *a, const void *b, size_t n, cudaStream_t stream) {
    if (n == 0) return 0;
    auto kernel = residual_forward_kernel<T>;
    LETHE_LAUNCH(kernel, elementwise_grid(n), kThreads, 0, stream)(
        static_cast<T *>(out), static_cast<const T *>(a), static_cast<const T *>(b), n);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

}  // namespace

extern "C" int cuda_swiglu_forward(void *out, const void *gate, const void *up, size_t n,
                                   LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16 ? swiglu_forward<__nv_bfloat16>(out, gate, up, n, stream)
                               : swiglu_forward<float>(out, gate, up, n, stream);
}

extern "C" int cuda_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                                    const void *up, size_t n, LetheDtype dtype,
                                    LetheStream stream) {
    return dtype == LETHE_BF16
               ? swiglu_backward<__nv_bfloat16>(dgate, dup, dout, gate, up, n, stream)
               : swiglu_backward<float>(dgate, dup, dout, gate, up, n, stream);
}

extern "C" int cuda_residual_forward(void *out, const void *a, const void *b, size_t n,
                                     LetheDtype dtype, LetheStream stream) {
    return dtype == LETHE_BF16 ? residual_forward<__nv_bfloat16>(out, a, b, n, stream)
                               : residual_forward<float>(out, a, b, n, stream);
}
