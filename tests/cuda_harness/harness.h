// CPU execution harness for the CUDA backend, force-included (g++ -x c++ -include harness.h) into
// .cu files: the SIMT built-ins, intrinsics and kernel launcher that nvcc would supply. See README.
#ifndef LETHE_CUDA_HARNESS_H
#define LETHE_CUDA_HARNESS_H

#if defined(__CUDACC__)
#error "harness.h is for the host-compiler build of .cu files; nvcc uses the real CUDA built-ins"
#endif
#if !defined(__cplusplus) || __cplusplus < 201703L
#error "the CUDA harness needs C++17 (compile .cu files with g++ -x c++ -std=c++17)"
#endif

#define LETHE_CUDA_HARNESS 1

// host_defines.h keeps an existing __shared__, so this comes before the CUDA headers. One OS thread
// runs one block at a time, all of that block's fibers on it: a thread_local variable is therefore
// exactly "one per running block, seen by every thread of the block". `used` makes
// `extern __shared__ T smem[];` an error ("'used' attribute ignored"): no declaration can be
// redirected to a per-launch buffer, so dynamic shared memory goes through LETHE_DYNAMIC_SMEM.
#define __shared__ thread_local __attribute__((used))

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

// host_defines.h defines __launch_bounds__ only for nvcc; it is an occupancy hint, nothing to run.
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <tuple>
#include <type_traits>
#include <utility>

// ---- harness control (tests and benchmarks) -----------------------------------------------------

namespace lethe_harness {

// Threads of a block resume in an order drawn from this seed after every synchronisation point;
// 0 resumes them in thread-index order. Default: LETHE_HARNESS_SEED, else 1.
void set_schedule_seed(uint64_t seed);
uint64_t schedule_seed();

// OS threads that run the blocks of one launch (default LETHE_HARNESS_THREADS, else 1).
void set_worker_threads(unsigned count);
unsigned worker_threads();

struct Stats {
    uint64_t launches;
    uint64_t blocks;
    uint64_t cuda_threads;
    uint64_t fiber_switches;
};
Stats stats();

}  // namespace lethe_harness

// ---- what the harness library implements for the inline intrinsics below -----------------------

namespace lethe_harness::detail {

// The built-in variables of the running CUDA thread; the scheduler writes them before every resume.
// Inline (C++17) rather than extern: an extern thread_local goes through a TLS wrapper that
// GCC 12's UBSan at -O2 reports as a null reference ("reference binding to null pointer");
// defined here, the compiler sees a trivially initialised variable and needs no wrapper.
inline thread_local uint3 tls_thread_idx{};
inline thread_local uint3 tls_block_idx{};
inline thread_local uint3 tls_block_dim{};
inline thread_local uint3 tls_grid_dim{};

enum class BarrierReduce : int { none, count, all, any };
int block_barrier(BarrierReduce reduce, int predicate, const char* file, int line);

enum class ShuffleMode : int { idx, up, down, bfly };
// PTX shfl.sync semantics: lane_operand is the source lane, offset or xor mask; width the segment.
uint64_t warp_shuffle(unsigned mask, uint64_t value, ShuffleMode mode, int lane_operand, int width,
                      const char* intrinsic, const char* file, int line);
unsigned warp_ballot(unsigned mask, int predicate, const char* intrinsic, const char* file,
                     int line);
void warp_sync(unsigned mask, const char* file, int line);
unsigned active_mask(const char* file, int line);
// Atomics, fences and __nanosleep: let other threads of the block run first, in schedule order.
void yield_point();
[[noreturn]] void trap(const char* file, int line);
void* dynamic_smem();

struct LaunchSpec {
    const void* kernel_id;    // the kernel's address: key of cudaFuncSetAttribute
    const char* kernel_name;  // as written at the launch site
    dim3 grid;
    dim3 block;
    size_t dynamic_smem;
    cudaStream_t stream;
    void (*run_thread)(const void* bound);  // runs the kernel body for the current CUDA thread
    const void* bound;                      // the kernel and its copied arguments
};
// Validates the launch, runs every block, and records the outcome for cudaGetLastError().
void run_launch(const LaunchSpec& spec);

template <typename T>
inline uint64_t to_bits(T value) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof(T));
    return bits;
}

template <typename T>
inline T from_bits(uint64_t bits) {
    T value;
    memcpy(static_cast<void*>(&value), &bits, sizeof(T));  // bf16/half: trivially copyable
    return value;
}

// Read-modify-write through compare-and-swap, correct when blocks run on several OS threads.
template <typename T, typename Update>
inline T atomic_update(T* address, Update update) {
    yield_point();
    T old;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    T desired = update(old);
    while (!__atomic_compare_exchange(address, &old, &desired, false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_RELAXED)) {
        desired = update(old);
    }
    return old;
}

}  // namespace lethe_harness::detail

// ---- built-in variables -------------------------------------------------------------------------

// Read-only views, as in CUDA (assigning to threadIdx.x does not compile).
#define threadIdx (static_cast<const uint3&>(::lethe_harness::detail::tls_thread_idx))
#define blockIdx (static_cast<const uint3&>(::lethe_harness::detail::tls_block_idx))
#define blockDim (static_cast<const uint3&>(::lethe_harness::detail::tls_block_dim))
#define gridDim (static_cast<const uint3&>(::lethe_harness::detail::tls_grid_dim))
inline constexpr int warpSize = 32;

// ---- synchronisation ----------------------------------------------------------------------------
// The hidden file/line arguments name the call site: barrier divergence is detected by comparing
// them, and every diagnostic points at the line in the .cu file.

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::lethe_harness::detail::block_barrier(::lethe_harness::detail::BarrierReduce::none, 0, file,
                                           line);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
    return ::lethe_harness::detail::block_barrier(::lethe_harness::detail::BarrierReduce::count,
                                                  predicate, file, line);
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
    return ::lethe_harness::detail::block_barrier(::lethe_harness::detail::BarrierReduce::all,
                                                  predicate, file, line);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
    return ::lethe_harness::detail::block_barrier(::lethe_harness::detail::BarrierReduce::any,
                                                  predicate, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    ::lethe_harness::detail::warp_sync(mask, file, line);
}
inline void __threadfence() {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ::lethe_harness::detail::yield_point();
}
inline void __threadfence_block() { __threadfence(); }
inline void __threadfence_system() { __threadfence(); }
inline void __nanosleep(unsigned) { ::lethe_harness::detail::yield_point(); }
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::lethe_harness::detail::trap(file, line);
}
[[noreturn]] inline void __brkpt(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ::lethe_harness::detail::trap(file, line);
}

// ---- warp collectives ---------------------------------------------------------------------------

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::lethe_harness::detail;
    return from_bits<T>(warp_shuffle(mask, to_bits(var), ShuffleMode::idx, srcLane, width,
                                     "__shfl_sync", file, line));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::lethe_harness::detail;
    return from_bits<T>(warp_shuffle(mask, to_bits(var), ShuffleMode::up, static_cast<int>(delta),
                                     width, "__shfl_up_sync", file, line));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::lethe_harness::detail;
    return from_bits<T>(warp_shuffle(mask, to_bits(var), ShuffleMode::down,
                                     static_cast<int>(delta), width, "__shfl_down_sync", file,
                                     line));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    using namespace ::lethe_harness::detail;
    return from_bits<T>(warp_shuffle(mask, to_bits(var), ShuffleMode::bfly, laneMask, width,
                                     "__shfl_xor_sync", file, line));
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    return ::lethe_harness::detail::warp_ballot(mask, predicate, "__ballot_sync", file, line);
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return ::lethe_harness::detail::warp_ballot(mask, predicate, "__any_sync", file, line) != 0;
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
    return ::lethe_harness::detail::warp_ballot(mask, predicate, "__all_sync", file, line) == mask;
}
inline unsigned __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::lethe_harness::detail::active_mask(file, line);
}

// ---- atomics ------------------------------------------------------------------------------------

#define LETHE_HARNESS_ATOMIC(name, T, expr)                                    \
    inline T name(T* address, T val) {                                         \
        return ::lethe_harness::detail::atomic_update(address,                 \
                                                      [val](T old) -> T {      \
                                                          return expr;         \
                                                      });                      \
    }
LETHE_HARNESS_ATOMIC(atomicAdd, int, old + val)
LETHE_HARNESS_ATOMIC(atomicAdd, unsigned, old + val)
LETHE_HARNESS_ATOMIC(atomicAdd, unsigned long long, old + val)
LETHE_HARNESS_ATOMIC(atomicAdd, float, old + val)
LETHE_HARNESS_ATOMIC(atomicAdd, double, old + val)
LETHE_HARNESS_ATOMIC(atomicAdd, __half, __hadd(old, val))
LETHE_HARNESS_ATOMIC(atomicAdd, __nv_bfloat16, __hadd(old, val))
LETHE_HARNESS_ATOMIC(atomicAdd, __half2, __hadd2(old, val))
LETHE_HARNESS_ATOMIC(atomicAdd, __nv_bfloat162, __hadd2(old, val))
LETHE_HARNESS_ATOMIC(atomicSub, int, old - val)
LETHE_HARNESS_ATOMIC(atomicSub, unsigned, old - val)
LETHE_HARNESS_ATOMIC(atomicMax, int, old > val ? old : val)
LETHE_HARNESS_ATOMIC(atomicMax, unsigned, old > val ? old : val)
LETHE_HARNESS_ATOMIC(atomicMax, long long, old > val ? old : val)
LETHE_HARNESS_ATOMIC(atomicMax, unsigned long long, old > val ? old : val)
LETHE_HARNESS_ATOMIC(atomicMin, int, old < val ? old : val)
LETHE_HARNESS_ATOMIC(atomicMin, unsigned, old < val ? old : val)
LETHE_HARNESS_ATOMIC(atomicMin, long long, old < val ? old : val)
LETHE_HARNESS_ATOMIC(atomicMin, unsigned long long, old < val ? old : val)
LETHE_HARNESS_ATOMIC(atomicExch, int, ((void)old, val))
LETHE_HARNESS_ATOMIC(atomicExch, unsigned, ((void)old, val))
LETHE_HARNESS_ATOMIC(atomicExch, unsigned long long, ((void)old, val))
LETHE_HARNESS_ATOMIC(atomicExch, float, ((void)old, val))
LETHE_HARNESS_ATOMIC(atomicAnd, int, old & val)
LETHE_HARNESS_ATOMIC(atomicAnd, unsigned, old & val)
LETHE_HARNESS_ATOMIC(atomicAnd, unsigned long long, old & val)
LETHE_HARNESS_ATOMIC(atomicOr, int, old | val)
LETHE_HARNESS_ATOMIC(atomicOr, unsigned, old | val)
LETHE_HARNESS_ATOMIC(atomicOr, unsigned long long, old | val)
LETHE_HARNESS_ATOMIC(atomicXor, int, old ^ val)
LETHE_HARNESS_ATOMIC(atomicXor, unsigned, old ^ val)
LETHE_HARNESS_ATOMIC(atomicXor, unsigned long long, old ^ val)
LETHE_HARNESS_ATOMIC(atomicInc, unsigned, old >= val ? 0u : old + 1u)
LETHE_HARNESS_ATOMIC(atomicDec, unsigned, (old == 0u || old > val) ? val : old - 1u)
#undef LETHE_HARNESS_ATOMIC

#define LETHE_HARNESS_ATOMIC_CAS(T)                                                            \
    inline T atomicCAS(T* address, T compare, T val) {                                         \
        ::lethe_harness::detail::yield_point();                                                \
        __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_SEQ_CST,           \
                                    __ATOMIC_SEQ_CST);                                         \
        return compare; /* the old value, whether or not the swap happened */                  \
    }
LETHE_HARNESS_ATOMIC_CAS(int)
LETHE_HARNESS_ATOMIC_CAS(unsigned)
LETHE_HARNESS_ATOMIC_CAS(unsigned long long)
LETHE_HARNESS_ATOMIC_CAS(unsigned short)
#undef LETHE_HARNESS_ATOMIC_CAS

// ---- math and bit intrinsics --------------------------------------------------------------------
// The fast-math forms keep the GPU's structure (exp2 of a rounded product, log2 times ln 2) but use
// libm's accurate exp2f/log2f instead of the ~2-ulp SFU approximations: tolerances in kernel tests
// must cover the GPU's error, which the harness does not reproduce.

inline float __expf(float x) { return exp2f(x * 1.44269504088896341f); }
inline float __exp10f(float x) { return exp2f(x * 3.32192809488736235f); }
inline float __logf(float x) { return log2f(x) * 0.693147180559945309f; }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log2f(x) * 0.301029995663981195f; }
inline float __powf(float x, float y) { return exp2f(y * log2f(x)); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frsqrt_rn(float x) { return static_cast<float>(1.0 / sqrt(static_cast<double>(x))); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __fdiv_rn(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
inline double __fma_rn(double x, double y, double z) { return fma(x, y, z); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0

namespace lethe_harness::detail {
// cvt.*.s32.f32: NaN gives 0 and out-of-range values saturate, as on the GPU.
inline int saturate_to_int(float rounded) {
    if (rounded != rounded) return 0;
    if (rounded >= 2147483648.0f) return 2147483647;
    if (rounded < -2147483648.0f) return -2147483647 - 1;
    return static_cast<int>(rounded);
}
}  // namespace lethe_harness::detail
inline int __float2int_rn(float x) {
    return ::lethe_harness::detail::saturate_to_int(nearbyintf(x));  // ties to even
}
inline int __float2int_rz(float x) { return ::lethe_harness::detail::saturate_to_int(truncf(x)); }
inline int __float2int_rd(float x) { return ::lethe_harness::detail::saturate_to_int(floorf(x)); }
inline int __float2int_ru(float x) { return ::lethe_harness::detail::saturate_to_int(ceilf(x)); }
inline unsigned __float2uint_rn(float x) {
    const float r = nearbyintf(x);
    if (!(r > 0.0f)) return 0u;  // NaN and negatives
    return r >= 4294967296.0f ? 0xffffffffu : static_cast<unsigned>(r);
}
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }

inline float __int_as_float(int x) { return __builtin_bit_cast(float, x); }
inline int __float_as_int(float x) { return __builtin_bit_cast(int, x); }
inline float __uint_as_float(unsigned x) { return __builtin_bit_cast(float, x); }
inline unsigned __float_as_uint(float x) { return __builtin_bit_cast(unsigned, x); }
inline double __longlong_as_double(long long x) { return __builtin_bit_cast(double, x); }
inline long long __double_as_longlong(double x) { return __builtin_bit_cast(long long, x); }

inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline int __mulhi(int x, int y) {
    return static_cast<int>((static_cast<long long>(x) * y) >> 32);
}
inline unsigned __umulhi(unsigned x, unsigned y) {
    return static_cast<unsigned>((static_cast<unsigned long long>(x) * y) >> 32);
}
inline int __mul24(int x, int y) {  // the low 32 bits of the product of the low 24 bits
    const int x24 = static_cast<int>(static_cast<unsigned>(x) << 8) >> 8;
    const int y24 = static_cast<int>(static_cast<unsigned>(y) << 8) >> 8;
    return static_cast<int>(static_cast<unsigned>(static_cast<long long>(x24) * y24));
}
inline unsigned __umul24(unsigned x, unsigned y) { return (x & 0xffffffu) * (y & 0xffffffu); }
inline long long clock64() {
#if defined(__x86_64__)
    return static_cast<long long>(__builtin_ia32_rdtsc());
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000000000ll + ts.tv_nsec;
#endif
}

// CUDA's global max/min overloads, the same set as crt/math_functions.hpp; std::max is unaffected.
#define LETHE_HARNESS_MINMAX(A, B, R)           \
    inline R max(A a, B b) {                    \
        const R x = static_cast<R>(a);          \
        const R y = static_cast<R>(b);          \
        return x > y ? x : y;                   \
    }                                           \
    inline R min(A a, B b) {                    \
        const R x = static_cast<R>(a);          \
        const R y = static_cast<R>(b);          \
        return x < y ? x : y;                   \
    }
LETHE_HARNESS_MINMAX(int, int, int)
LETHE_HARNESS_MINMAX(unsigned, unsigned, unsigned)
LETHE_HARNESS_MINMAX(int, unsigned, unsigned)
LETHE_HARNESS_MINMAX(unsigned, int, unsigned)
LETHE_HARNESS_MINMAX(long, long, long)
LETHE_HARNESS_MINMAX(unsigned long, unsigned long, unsigned long)
LETHE_HARNESS_MINMAX(long, unsigned long, unsigned long)
LETHE_HARNESS_MINMAX(unsigned long, long, unsigned long)
LETHE_HARNESS_MINMAX(long long, long long, long long)
LETHE_HARNESS_MINMAX(unsigned long long, unsigned long long, unsigned long long)
LETHE_HARNESS_MINMAX(long long, unsigned long long, unsigned long long)
LETHE_HARNESS_MINMAX(unsigned long long, long long, unsigned long long)
#undef LETHE_HARNESS_MINMAX
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }

// Cache-hinted loads and stores are plain memory accesses on the CPU.
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline T __ldcg(const T* p) { return *p; }
template <typename T> inline T __ldca(const T* p) { return *p; }
template <typename T> inline T __ldcs(const T* p) { return *p; }
template <typename T> inline T __ldlu(const T* p) { return *p; }
template <typename T> inline T __ldcv(const T* p) { return *p; }
template <typename T> inline void __stcg(T* p, T v) { *p = v; }
template <typename T> inline void __stcs(T* p, T v) { *p = v; }
template <typename T> inline void __stwb(T* p, T v) { *p = v; }
template <typename T> inline void __stwt(T* p, T v) { *p = v; }

// ---- kernel launch ------------------------------------------------------------------------------

// cuda_runtime.h declares this convenience overload for nvcc only; host code in .cu files calls it
// with the kernel itself.
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* entry, cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(entry), attr, value);
}

namespace lethe_harness {

template <typename T>
inline T* dynamic_shared_memory() {
    return static_cast<T*>(detail::dynamic_smem());
}

// What LETHE_LAUNCH(kernel, grid, block, smem, stream) returns; calling it launches the kernel.
template <typename... Params>
class KernelLaunch {
public:
    KernelLaunch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t dynamic_smem,
                 cudaStream_t stream, const char* name)
        : kernel_(kernel), grid_(grid), block_(block), smem_(dynamic_smem), stream_(stream),
          name_(name) {}

    template <typename... Args>
    void operator()(Args&&... args) const {
        static_assert(sizeof...(Args) == sizeof...(Params),
                      "kernel launched with the wrong number of arguments");
        // CUDA copies the arguments once at launch; each thread then binds its own parameters.
        const Bound bound{kernel_, Arguments(std::forward<Args>(args)...)};
        const detail::LaunchSpec spec{reinterpret_cast<const void*>(kernel_),
                                      name_,
                                      grid_,
                                      block_,
                                      smem_,
                                      stream_,
                                      &run_thread,
                                      &bound};
        detail::run_launch(spec);
    }

private:
    using Arguments = std::tuple<std::decay_t<Params>...>;
    struct Bound {
        void (*kernel)(Params...);
        Arguments arguments;
    };
    static void run_thread(const void* bound) {
        const Bound* b = static_cast<const Bound*>(bound);
        std::apply(b->kernel, b->arguments);
    }

    void (*kernel_)(Params...);
    dim3 grid_;
    dim3 block_;
    size_t smem_;
    cudaStream_t stream_;
    const char* name_;
};

template <typename... Params>
inline KernelLaunch<Params...> launcher(void (*kernel)(Params...), dim3 grid, dim3 block,
                                        size_t dynamic_smem, cudaStream_t stream,
                                        const char* name = "kernel") {
    return KernelLaunch<Params...>(kernel, grid, block, dynamic_smem, stream, name);
}

}  // namespace lethe_harness

#include "harness_wmma.h"

#endif
