// Support shared by the CUDA-twin tests: seeded random inputs, bf16 conversions, dtype-generic
// device tensors, tolerance checks against the CPU twins (with a table of the worst errors seen),
// and a determinism runner (two harness schedule seeds; on a GPU, repeated runs).
#ifndef LETHE_TESTS_CUDA_TEST_UTIL_H
#define LETHE_TESTS_CUDA_TEST_UTIL_H

// The same test sources build two ways (tests/kernels/cuda/CMakeLists.txt): against the CPU
// execution harness (default), or with LETHE_KERNEL_TESTS_ON_GPU against the nvcc build of
// kernels/cuda and the real CUDA runtime. harness.h defines LETHE_CUDA_HARNESS; code that only
// the harness can run (its schedule controls, its range checks) sits behind that macro.
#ifdef LETHE_KERNEL_TESTS_ON_GPU
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#else
#include "harness.h"    // lethe_harness::set_schedule_seed / set_worker_threads
#endif
#include "ops.h"        // LetheDtype, the launchers
#include "test_util.h"  // CHECK, CHECK_CUDA, run_test, DeviceBuffer, test_exit_code

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace cuda_test {

// Under the harness there is always a device. On a GPU build without a usable device the test
// exits 77 (CTest's SKIP_RETURN_CODE) with the runtime's reason, instead of failing every check;
// with one it names the device in the log.
inline void skip_without_device() {
#ifndef LETHE_CUDA_HARNESS
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        printf("skipped: no CUDA device (%s)\n",
               e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
        exit(77);
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("device 0: %s, compute capability %d.%d\n", prop.name, prop.major, prop.minor);
#endif
}

// splitmix64: the same seed gives the same inputs on every machine and compiler.
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed) {}
    uint64_t next() {
        uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [lo, hi), from 24 random bits.
    float uniform(float lo, float hi) {
        return lo + (hi - lo) * static_cast<float>(next() >> 40) * 0x1p-24f;
    }
    int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }

private:
    uint64_t state_;
};

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
    Rng rng(seed);
    std::vector<float> v(n);
    for (float& x : v) x = rng.uniform(lo, hi);
    return v;
}

inline std::vector<int32_t> random_tokens(size_t n, int V, uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> v(n);
    for (int32_t& t : v) t = rng.below(V);
    return v;
}

inline float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// The values a tensor of `dtype` holds after an upload of v (identity for float32).
inline std::vector<float> as_stored(const std::vector<float>& v, LetheDtype dtype) {
    if (dtype == LETHE_F32) return v;
    std::vector<float> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = round_bf16(v[i]);
    return r;
}

inline const char* dtype_name(LetheDtype dtype) { return dtype == LETHE_F32 ? "f32" : "bf16"; }
inline size_t dtype_size(LetheDtype dtype) { return dtype == LETHE_F32 ? 4 : 2; }

// A device tensor of n float32 or bfloat16 elements, written and read as float. A tensor made
// from a size alone keeps the harness's NaN poison (on a GPU: whatever the memory held) until
// written.
class DeviceTensor {
public:
    DeviceTensor(size_t n, LetheDtype dtype) : n_(n), dtype_(dtype) {
        CHECK_CUDA(cudaMalloc(&p_, bytes_size() ? bytes_size() : 1));
    }
    DeviceTensor(const std::vector<float>& values, LetheDtype dtype)
        : DeviceTensor(values.size(), dtype) {
        upload(values);
    }
    ~DeviceTensor() { CHECK_CUDA(cudaFree(p_)); }
    DeviceTensor(const DeviceTensor&) = delete;
    DeviceTensor& operator=(const DeviceTensor&) = delete;

    void* get() const { return p_; }
    size_t size() const { return n_; }
    size_t bytes_size() const { return n_ * dtype_size(dtype_); }
    void upload(const std::vector<float>& values) {
        CHECK(values.size() == n_);
        if (dtype_ == LETHE_F32) {
            CHECK_CUDA(cudaMemcpy(p_, values.data(), bytes_size(), cudaMemcpyHostToDevice));
            return;
        }
        std::vector<__nv_bfloat16> b(n_);
        for (size_t i = 0; i < n_; ++i) b[i] = __float2bfloat16_rn(values[i]);
        CHECK_CUDA(cudaMemcpy(p_, b.data(), bytes_size(), cudaMemcpyHostToDevice));
    }
    std::vector<uint8_t> bytes() const {
        std::vector<uint8_t> raw(bytes_size());
        CHECK_CUDA(cudaMemcpy(raw.data(), p_, raw.size(), cudaMemcpyDeviceToHost));
        return raw;
    }
    std::vector<float> download() const {
        const std::vector<uint8_t> raw = bytes();
        std::vector<float> v(n_);
        if (dtype_ == LETHE_F32) {
            memcpy(v.data(), raw.data(), raw.size());
        } else {
            for (size_t i = 0; i < n_; ++i) {
                __nv_bfloat16 b;
                memcpy(&b, raw.data() + 2 * i, 2);
                v[i] = __bfloat162float(b);
            }
        }
        return v;
    }

private:
    void* p_ = nullptr;
    size_t n_;
    LetheDtype dtype_;
};

// ---- comparisons --------------------------------------------------------------------------------

// float32 mode: max_i |got_i - ref_i| / max_i |ref_i|, the error relative to the tensor's scale
// (an element near zero is not held to its own relative precision). 0 when both are all zeros;
// infinite for a size mismatch; NaN when got holds a NaN.
inline double max_rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
    if (got.size() != ref.size()) return INFINITY;
    double max_diff = 0.0, max_ref = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double d = fabs(static_cast<double>(got[i]) - ref[i]);
        if (d != d) return NAN;
        max_diff = d > max_diff ? d : max_diff;
        max_ref = fabs(ref[i]) > max_ref ? fabs(ref[i]) : max_ref;
    }
    if (max_diff == 0.0) return 0.0;
    return max_ref > 0.0 ? max_diff / max_ref : INFINITY;
}

// bfloat16 mode: cosine similarity and ||got - ref|| / ||ref||, per tensor.
struct Bf16Error {
    double cosine;
    double rel_norm;
};
inline Bf16Error bf16_error(const std::vector<float>& got, const std::vector<float>& ref) {
    if (got.size() != ref.size()) return {0.0, INFINITY};
    double dot = 0.0, gg = 0.0, rr = 0.0, dd = 0.0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double g = got[i], r = ref[i];
        dot += g * r;
        gg += g * g;
        rr += r * r;
        dd += (g - r) * (g - r);
    }
    if (rr == 0.0 && gg == 0.0) return {1.0, 0.0};
    if (rr == 0.0 || gg == 0.0) return {0.0, INFINITY};
    return {dot / sqrt(gg * rr), sqrt(dd / rr)};
}

constexpr double kF32Tolerance = 1e-5;        // max relative error, float32 mode
constexpr double kBf16MinCosine = 0.999;      // bfloat16 mode, per tensor
constexpr double kBf16MaxRelNorm = 1e-2;

// Worst errors seen per kernel and mode, printed by print_worst_errors().
struct WorstError {
    double f32_rel = 0.0;
    double bf16_cosine = 1.0;
    double bf16_rel_norm = 0.0;
    bool has_f32 = false, has_bf16 = false;
};
inline std::map<std::string, WorstError>& worst_errors() {
    static std::map<std::string, WorstError> table;
    return table;
}

// Compares one output tensor of `kernel` with its CPU reference at the tolerance of the mode and
// records the error; prints the case on failure. `what` names the case (tensor and shape).
inline bool expect_close(const char* kernel, const std::string& what, LetheDtype dtype,
                         const std::vector<float>& got, const std::vector<float>& ref,
                         double f32_tolerance = kF32Tolerance) {
    WorstError& w = worst_errors()[kernel];
    bool ok;
    if (dtype == LETHE_F32) {
        const double e = max_rel_error(got, ref);
        ok = e <= f32_tolerance;
        w.has_f32 = true;
        if (!(e <= w.f32_rel)) w.f32_rel = e;
        if (!ok) fprintf(stderr, "  %s %s f32: max relative error %.3g > %.3g\n", kernel,
                         what.c_str(), e, f32_tolerance);
    } else {
        const Bf16Error e = bf16_error(got, ref);
        ok = e.cosine >= kBf16MinCosine && e.rel_norm <= kBf16MaxRelNorm;
        w.has_bf16 = true;
        if (!(e.cosine >= w.bf16_cosine)) w.bf16_cosine = e.cosine;
        if (!(e.rel_norm <= w.bf16_rel_norm)) w.bf16_rel_norm = e.rel_norm;
        if (!ok) fprintf(stderr, "  %s %s bf16: cosine %.6f, relative norm error %.3g\n", kernel,
                         what.c_str(), e.cosine, e.rel_norm);
    }
    if (!ok) ++g_test_failures;
    return ok;
}

inline void print_worst_errors() {
    printf("worst errors against the CPU twins. f32: max|got-ref| / max|ref| over the tensors\n"
           "compared at float32 precision (every output of a float32 run; the float32 outputs,\n"
           "e.g. statistics and weight gradients, of a bfloat16 run). bf16: cosine and\n"
           "||got-ref|| / ||ref|| over the bfloat16 outputs of bfloat16 runs.\n");
    for (const auto& [kernel, w] : worst_errors()) {
        printf("  %-28s", kernel.c_str());
        if (w.has_f32) printf("  f32 %.2e", w.f32_rel);
        if (w.has_bf16) printf("  bf16 cos %.7f rel %.2e", w.bf16_cosine, w.bf16_rel_norm);
        printf("\n");
    }
}

// ---- determinism --------------------------------------------------------------------------------

// Runs `run` (which launches the kernels on fresh copies of fixed inputs and returns the bytes of
// every output) four times and checks that all four give identical bits. Under the harness the
// runs differ in schedule: two schedule seeds, each with blocks on one and on two OS threads. On a
// GPU the hardware picks the block and warp order afresh for every launch.
inline bool expect_deterministic(const std::string& what,
                                 const std::function<std::vector<uint8_t>()>& run,
                                 uint64_t seed_a = 1, uint64_t seed_b = 0x5eed) {
    struct Schedule {
        uint64_t seed;
        unsigned threads;
    };
    const Schedule schedules[] = {{seed_a, 1}, {seed_a, 2}, {seed_b, 1}, {seed_b, 2}};
#ifdef LETHE_CUDA_HARNESS
    const uint64_t saved_seed = lethe_harness::schedule_seed();
    const unsigned saved_threads = lethe_harness::worker_threads();
#endif
    std::vector<uint8_t> first;
    bool ok = true;
    for (const Schedule& s : schedules) {
#ifdef LETHE_CUDA_HARNESS
        lethe_harness::set_schedule_seed(s.seed);
        lethe_harness::set_worker_threads(s.threads);
#endif
        const std::vector<uint8_t> bytes = run();
        if (&s == &schedules[0]) {
            first = bytes;
        } else if (bytes != first) {
            size_t at = 0;
            while (at < bytes.size() && at < first.size() && bytes[at] == first[at]) ++at;
#ifdef LETHE_CUDA_HARNESS
            fprintf(stderr, "  %s: schedule seed %llu, %u worker thread(s): output differs "
                    "from the first run at byte %zu of %zu\n", what.c_str(),
                    static_cast<unsigned long long>(s.seed), s.threads, at, first.size());
#else
            fprintf(stderr, "  %s: run %d on the GPU: output differs from the first run at byte "
                    "%zu of %zu\n", what.c_str(), static_cast<int>(&s - schedules) + 1, at,
                    first.size());
#endif
            ok = false;
        }
    }
#ifdef LETHE_CUDA_HARNESS
    lethe_harness::set_schedule_seed(saved_seed);
    lethe_harness::set_worker_threads(saved_threads);
#endif
    if (first.empty()) {
        fprintf(stderr, "  %s: the determinism run returned no bytes\n", what.c_str());
        ok = false;
    }
    if (!ok) ++g_test_failures;
    return ok;
}

// Appends the bytes of a device tensor to a determinism record.
inline void append_bytes(std::vector<uint8_t>& record, const std::vector<uint8_t>& bytes) {
    record.insert(record.end(), bytes.begin(), bytes.end());
}
template <typename T>
inline void append_bytes(std::vector<uint8_t>& record, const DeviceBuffer<T>& buffer) {
    const std::vector<T> v = buffer.download();
    const uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
    record.insert(record.end(), p, p + v.size() * sizeof(T));
}
inline void append_bytes(std::vector<uint8_t>& record, const DeviceTensor& tensor) {
    append_bytes(record, tensor.bytes());
}

}  // namespace cuda_test

#endif
