// CUDA twin of the AdamW update and global gradient norm of host/optim.c: fp32 master weights and
// moments, clipping fused into the update, an optional stochastically rounded bf16 weight copy.
#include "common.cuh"

#include <math.h>

namespace {

// ---- global gradient norm -----------------------------------------------------------------------
// Pass 1 (once per range): block b owns the 256-element chunks b, b + SLOTS, b + 2 SLOTS, ... of
// the range and adds their squares, as exact float products summed in double, to partial[b]. The
// chunk-to-slot map depends only on the index, never on the grid actually launched (at most SLOTS
// blocks; fewer for a short range), so the sums have the same bits on every GPU and run.
// Pass 2: one block of SLOTS threads sums the slots in a fixed tree order and takes the sqrt.
// Float products are exact in double, so the only rounding is the double sums: agreement with
// host/optim.c's sequential double sum is ~1e-15 relative.
constexpr int kNormThreads = 256;
static_assert(CUDA_GRAD_NORM_SLOTS <= 1024 && CUDA_GRAD_NORM_SLOTS % 32 == 0,
              "the finishing pass runs one block of CUDA_GRAD_NORM_SLOTS threads");

__global__ void grad_norm_accumulate_kernel(double *__restrict__ partial,
                                            const float *__restrict__ grads, size_t n) {
    const size_t stride = (size_t)CUDA_GRAD_NORM_SLOTS * kNormThreads;
    double sum = 0.0;
    for (size_t i = blockIdx.x * (size_t)kNormThreads + threadIdx.x; i < n; i += stride) {
        const double g = grads[i];
        sum += g * g;
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0) partial[blockIdx.x] += sum;
}

__global__ void grad_norm_finish_kernel(double *__restrict__ norm,
                                        const double *__restrict__ partial) {
    const double total = block_sum(partial[threadIdx.x]);
    if (threadIdx.x == 0) *norm = sqrt(total);
}

// ---- AdamW --------------------------------------------------------------------------------------
// Elementwise and memory-bound (20 bytes read/written per parameter, 22 with the bf16 copy):
// 256 threads a block, ceil(n / 256) blocks up to 64K, grid-stride beyond.
constexpr int kAdamThreads = 256;
constexpr size_t kMaxAdamBlocks = 65536;

// The update's scalars, computed once on the host exactly as host/optim.c does (bias corrections
// in double, the update in float).
struct AdamScalars {
    float beta1, beta2, eps;
    float step_size;  // lr / (1 - beta1^step)
    float bc2_sqrt;   // sqrt(1 - beta2^step)
    float keep;       // 1 - lr * weight_decay (decoupled decay, Loshchilov & Hutter)
    double max_norm;  // clip when > 0 and *norm > max_norm
    uint64_t key;     // stochastic-rounding stream of (seed, step)
};

// splitmix64's output function: a bijective mix of 64 bits.
__host__ __device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Rounds x to one of its two bf16 neighbours, up (in magnitude) with probability equal to the
// distance from the lower one in units of the gap: adding 16 uniform random bits below the kept
// ones carries into them exactly that often (Gupta et al. 2015). Inf and NaN are rounded plainly.
__device__ __forceinline__ uint16_t bf16_stochastic_round(float x, uint32_t random16) {
    const uint32_t bits = __float_as_uint(x);
    if ((bits & 0x7f800000u) == 0x7f800000u)
        return __bfloat16_as_ushort(__float2bfloat16_rn(x));
    return (uint16_t)((bits + random16) >> 16);
}

__global__ void adamw_kernel(float *__restrict__ params, float *__restrict__ m,
                             float *__restrict__ v, uint16_t *__restrict__ params_bf16,
                             const float *__restrict__ grads, size_t n, AdamScalars s,
                             const double *__restrict__ norm) {
    // torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied when < 1.
    float clip = 1.0f;
    if (norm != nullptr && s.max_norm > 0.0) {
        const double total = *norm;
        if (total > s.max_norm) clip = (float)(s.max_norm / (total + 1e-6));
    }
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = grads[i] * clip;
        float p = params[i] * s.keep;
        const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * g;
        const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * g * g;
        p -= s.step_size * mi / (sqrtf(vi) / s.bc2_sqrt + s.eps);
        m[i] = mi;
        v[i] = vi;
        params[i] = p;
        if (params_bf16 != nullptr) {
            const uint64_t r = mix64(s.key + (i + 1) * 0x9E3779B97F4A7C15ull);
            params_bf16[i] = bf16_stochastic_round(p, (uint32_t)(r >> 48));
        }
    }
}

__global__ void bf16_round_stochastic_kernel(uint16_t *__restrict__ out,
                                             const float *__restrict__ in, size_t n,
                                             uint64_t key) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const uint64_t r = mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull);
        out[i] = bf16_stochastic_round(in[i], (uint32_t)(r >> 48));
    }
}

// The stochastic-rounding stream of (seed, step), shared by the update and the re-rounding.
__host__ uint64_t rounding_key(uint64_t seed, int64_t step) {
    return mix64(seed ^ mix64((uint64_t)step + 0x9E3779B97F4A7C15ull));
}

}  // namespace

extern "C" int cuda_grad_norm_accumulate(double *partial, const float *grads, size_t n,
                                         LetheStream stream) {
    if (n == 0) return 0;
    const size_t chunks = ceil_div(n, kNormThreads);
    const dim3 grid((unsigned)(chunks < CUDA_GRAD_NORM_SLOTS ? chunks : CUDA_GRAD_NORM_SLOTS));
    LETHE_LAUNCH(grad_norm_accumulate_kernel, grid, kNormThreads, 0, stream)(partial, grads, n);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int cuda_grad_norm_finish(double *norm, const double *partial, LetheStream stream) {
    LETHE_LAUNCH(grad_norm_finish_kernel, dim3(1), CUDA_GRAD_NORM_SLOTS, 0, stream)(norm,
                                                                                  partial);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int cuda_adamw_update(float *params, float *m, float *v, uint16_t *params_bf16,
                                 const float *grads, size_t n, double lr, double beta1,
                                 double beta2, double eps, double weight_decay, int64_t step,
                                 const double *norm, double max_norm, uint64_t seed,
                                 LetheStream stream) {
    if (n == 0) return 0;
    if (step < 1) return (int)cudaErrorInvalidValue;
    const double bc1 = 1.0 - pow(beta1, (double)step);
    const double bc2 = 1.0 - pow(beta2, (double)step);
    AdamScalars s;
    s.beta1 = (float)beta1;
    s.beta2 = (float)beta2;
    s.eps = (float)eps;
    s.step_size = (float)(lr / bc1);
    s.bc2_sqrt = (float)sqrt(bc2);
    s.keep = (float)(1.0 - lr * weight_decay);
    s.max_norm = max_norm;
    s.key = rounding_key(seed, step);
    const size_t blocks = ceil_div(n, kAdamThreads);
    const dim3 grid((unsigned)(blocks < kMaxAdamBlocks ? blocks : kMaxAdamBlocks));
    LETHE_LAUNCH(adamw_kernel, grid, kAdamThreads, 0, stream)(params, m, v, params_bf16, grads, n,
                                                               s, norm);
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}

extern "C" int cuda_bf16_round_stochastic(uint16_t *out, const float *in, size_t n,
                                          uint64_t seed, int64_t step, LetheStream stream) {
    if (n == 0) return 0;
    const size_t blocks = ceil_div(n, kAdamThreads);
    const dim3 grid((unsigned)(blocks < kMaxAdamBlocks ? blocks : kMaxAdamBlocks));
    LETHE_LAUNCH(bf16_round_stochastic_kernel, grid, kAdamThreads, 0, stream)(
        out, in, n, rounding_key(seed, step));
    LETHE_CUDA_CHECK(cudaGetLastError());
    return 0;
}
