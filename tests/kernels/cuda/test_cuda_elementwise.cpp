// The CUDA twins of the embedding, RMSNorm (with the fused residual), RoPE, SwiGLU and residual ops
// against their CPU twins under the CPU execution harness: float32 and bfloat16, odd shapes,
// accumulating backwards, and identical bits under two thread schedules.
#include "cuda_test_util.h"

#include <string>
#include <vector>

using namespace cuda_test;

namespace {

constexpr LetheDtype kDtypes[] = {LETHE_F32, LETHE_BF16};
constexpr size_t kRows[] = {1, 7, 33, 130};
constexpr int kWidths[] = {8, 64, 96, 257};

std::string describe(const char* tensor, LetheDtype dtype, const std::string& shape) {
    return std::string(tensor) + " " + dtype_name(dtype) + " " + shape;
}

// ---- embedding ----------------------------------------------------------------------------------

struct EmbeddingRun {
    std::vector<float> out, dwte;
};

// Runs forward and backward on the device; dwte starts from dwte0 (the backward accumulates).
EmbeddingRun embedding_on_device(LetheDtype dtype, const std::vector<int32_t>& tokens,
                                 const std::vector<float>& wte, const std::vector<float>& dout,
                                 const std::vector<float>& dwte0, int D, int V) {
    const size_t N = tokens.size();
    DeviceBuffer<int32_t> d_tokens(tokens);
    DeviceTensor d_wte(wte, dtype), d_out(N * D, dtype), d_dout(dout, dtype);
    DeviceTensor d_dwte(dwte0, LETHE_F32);
    DeviceBuffer<uint8_t> scratch(cuda_embedding_backward_scratch_size(N));
    CHECK(cuda_embedding_forward(d_out.get(), d_tokens.get(), d_wte.get(), N, D, dtype,
                                 nullptr) == 0);
    CHECK(cuda_embedding_backward(static_cast<float*>(d_dwte.get()), scratch.get(), d_dout.get(),
                                  d_tokens.get(), N, D, V, dtype, nullptr) == 0);
    return {d_out.download(), d_dwte.download()};
}

void embedding_case(LetheDtype dtype, const std::vector<int32_t>& tokens, int D, int V,
                    uint64_t seed) {
    const size_t N = tokens.size();
    const std::string shape = "N=" + std::to_string(N) + " D=" + std::to_string(D) +
                              " V=" + std::to_string(V);
    const std::vector<float> wte = as_stored(random_floats((size_t)V * D, seed), dtype);
    const std::vector<float> dout = as_stored(random_floats(N * D, seed + 1), dtype);
    const std::vector<float> dwte0 = random_floats((size_t)V * D, seed + 2);
    const EmbeddingRun got = embedding_on_device(dtype, tokens, wte, dout, dwte0, D, V);

    std::vector<float> out(N * D), dwte = dwte0;
    embedding_forward(out.data(), tokens.data(), wte.data(), N, D);
    embedding_backward(dwte.data(), dout.data(), tokens.data(), N, D);
    // A gather copies bits, and the backward adds in the CPU twin's order: both are exact.
    CHECK(got.out == out);
    CHECK(got.dwte == dwte);
    expect_close("embedding_forward", describe("out", dtype, shape), dtype, got.out, out);
    // dwte is float32 in both modes, accumulated from dout as stored.
    expect_close("embedding_backward", describe("dwte", dtype, shape), LETHE_F32, got.dwte, dwte);
}

void test_embedding_matches_cpu_twin() {
    uint64_t seed = 100;
    for (const LetheDtype dtype : kDtypes) {
        for (const size_t N : kRows) {
            for (const int D : kWidths) {
                // V = 300: two radix passes, few repeats; V = 5: nearly every token repeats.
                for (const int V : {300, 5}) {
                    seed += 10;
                    embedding_case(dtype, random_tokens(N, V, seed), D, V, seed);
                }
            }
        }
        // Several 256-token tiles: 3 radix passes (V > 65536), one token repeated 700 times, V = 1.
        seed += 10;
        embedding_case(dtype, random_tokens(1000, 70000, seed), 8, 70000, seed);
        std::vector<int32_t> skewed = random_tokens(900, 40, seed);
        for (size_t n = 0; n < skewed.size(); n += 4) skewed[n] = 17;
        for (size_t n = 1; n < skewed.size(); n += 3) skewed[n] = 17;
        embedding_case(dtype, skewed, 33, 40, seed += 10);
        embedding_case(dtype, std::vector<int32_t>(77, 0), 9, 1, seed += 10);
    }
}

void test_embedding_backward_is_deterministic() {
    for (const LetheDtype dtype : kDtypes) {
        const int D = 40, V = 600;
        std::vector<int32_t> tokens = random_tokens(700, 20, 7);  // 3 tiles, heavy repeats
        for (size_t n = 0; n < tokens.size(); n += 5) tokens[n] = 599;
        const std::vector<float> wte = random_floats((size_t)V * D, 8);
        const std::vector<float> dout = random_floats(tokens.size() * D, 9);
        const std::vector<float> dwte0 = random_floats((size_t)V * D, 10);
        expect_deterministic(std::string("embedding ") + dtype_name(dtype), [&] {
            const EmbeddingRun r = embedding_on_device(dtype, tokens, wte, dout, dwte0, D, V);
            std::vector<uint8_t> bytes(r.dwte.size() * 4 + r.out.size() * 4);
            memcpy(bytes.data(), r.dwte.data(), r.dwte.size() * 4);
            memcpy(bytes.data() + r.dwte.size() * 4, r.out.data(), r.out.size() * 4);
            return bytes;
        });
    }
}

// ---- RMSNorm ------------------------------------------------------------------------------------

struct RmsnormInputs {
    size_t N;
    int D;
    bool residual;
    std::vector<float> a, b, w, dout, dx0, dw0;  // as stored in the dtype
};

RmsnormInputs rmsnorm_inputs(LetheDtype dtype, size_t N, int D, bool residual, uint64_t seed) {
    RmsnormInputs in{N, D, residual, {}, {}, {}, {}, {}, {}};
    in.a = as_stored(random_floats(N * D, seed, -2.0f, 2.0f), dtype);
    if (residual) in.b = as_stored(random_floats(N * D, seed + 1), dtype);
    in.w = as_stored(random_floats(D, seed + 2, 0.5f, 1.5f), dtype);
    in.dout = as_stored(random_floats(N * D, seed + 3), dtype);
    in.dx0 = as_stored(random_floats(N * D, seed + 4), dtype);
    in.dw0 = random_floats(D, seed + 5);
    return in;
}

struct RmsnormRun {
    std::vector<float> out, rstd, x, dx, dw;
};

// Forward (fused residual when in.b is set), then backward from the forward's own x and rstd.
RmsnormRun rmsnorm_on_device(LetheDtype dtype, const RmsnormInputs& in) {
    const size_t N = in.N, ND = in.N * in.D;
    const float eps = 1e-5f;
    DeviceTensor d_a(in.a, dtype), d_w(in.w, dtype), d_out(ND, dtype), d_xout(ND, dtype);
    DeviceTensor d_b(in.residual ? in.b : std::vector<float>(1), dtype);
    DeviceTensor d_dout(in.dout, dtype), d_dx(in.dx0, dtype), d_dw(in.dw0, LETHE_F32);
    DeviceBuffer<float> d_rstd(N);
    DeviceBuffer<uint8_t> scratch(cuda_rmsnorm_backward_scratch_size(N, in.D));
    CHECK(cuda_rmsnorm_forward(d_out.get(), d_rstd.get(), in.residual ? d_xout.get() : nullptr,
                               d_a.get(), in.residual ? d_b.get() : nullptr, d_w.get(), N, in.D,
                               eps, dtype, nullptr) == 0);
    const void* x = in.residual ? d_xout.get() : d_a.get();
    CHECK(cuda_rmsnorm_backward(d_dx.get(), static_cast<float*>(d_dw.get()), scratch.get(),
                                d_dout.get(), x, d_w.get(), d_rstd.get(), N, in.D, dtype,
                                nullptr) == 0);
    RmsnormRun r;
    r.out = d_out.download();
    r.rstd = d_rstd.download();
    r.x = in.residual ? d_xout.download() : in.a;
    r.dx = d_dx.download();
    r.dw = d_dw.download();
    return r;
}

void rmsnorm_case(LetheDtype dtype, size_t N, int D, bool residual, uint64_t seed) {
    const std::string shape = "N=" + std::to_string(N) + " D=" + std::to_string(D) +
                              (residual ? " +residual" : "");
    const RmsnormInputs in = rmsnorm_inputs(dtype, N, D, residual, seed);
    const RmsnormRun got = rmsnorm_on_device(dtype, in);

    // The CPU twin on the stored values; x = a + b is rounded to the dtype as x_out stores it.
    std::vector<float> x = in.a;
    if (residual) {
        residual_forward(x.data(), in.a.data(), in.b.data(), N * D);
        x = as_stored(x, dtype);
    }
    std::vector<float> out(N * D), rstd(N), dx = in.dx0, dw = in.dw0;
    rmsnorm_forward(out.data(), rstd.data(), x.data(), in.w.data(), N, D, 1e-5f);
    rmsnorm_backward(dx.data(), dw.data(), in.dout.data(), x.data(), in.w.data(), rstd.data(), N,
                     D);
    const char* fwd = residual ? "rmsnorm_forward+residual" : "rmsnorm_forward";
    expect_close(fwd, describe("out", dtype, shape), dtype, got.out, out);
    expect_close(fwd, describe("rstd", dtype, shape), LETHE_F32, got.rstd, rstd);
    if (residual) expect_close(fwd, describe("x_out", dtype, shape), dtype, got.x, x);
    expect_close("rmsnorm_backward", describe("dx", dtype, shape), dtype, got.dx, dx);
    // dw and rstd are float32 in both modes, computed from the same stored values.
    expect_close("rmsnorm_backward", describe("dw", dtype, shape), LETHE_F32, got.dw, dw);
}

void test_rmsnorm_matches_cpu_twin() {
    uint64_t seed = 2000;
    for (const LetheDtype dtype : kDtypes) {
        for (const size_t N : kRows) {
            for (const int D : kWidths) {
                for (const bool residual : {false, true}) rmsnorm_case(dtype, N, D, residual,
                                                                       seed += 10);
            }
        }
        // More rows than backward blocks (512): blocks own several rows.
        rmsnorm_case(dtype, 1100, 40, true, seed += 10);
    }
}

void test_rmsnorm_is_deterministic() {
    for (const LetheDtype dtype : kDtypes) {
        const RmsnormInputs in = rmsnorm_inputs(dtype, 1030, 72, true, 77);
        expect_deterministic(std::string("rmsnorm ") + dtype_name(dtype), [&] {
            const RmsnormRun r = rmsnorm_on_device(dtype, in);
            std::vector<uint8_t> bytes;
            for (const std::vector<float>* v : {&r.out, &r.rstd, &r.x, &r.dx, &r.dw}) {
                const uint8_t* p = reinterpret_cast<const uint8_t*>(v->data());
                bytes.insert(bytes.end(), p, p + v->size() * 4);
            }
            return bytes;
        });
    }
}

// ---- RoPE ---------------------------------------------------------------------------------------

std::vector<float> rope_on_device(LetheDtype dtype, const std::vector<float>& x,
                                  const std::vector<int64_t>& offsets, int n_heads, int hd,
                                  float theta, bool backward) {
    const int S = (int)offsets.size() - 1;
    const size_t N = (size_t)offsets.back();
    DeviceTensor d_x(x, dtype);
    DeviceBuffer<int64_t> d_offsets(offsets);
    const int rc = backward ? cuda_rope_backward(d_x.get(), d_offsets.get(), S, N, n_heads, hd,
                                                 theta, dtype, nullptr)
                            : cuda_rope_forward(d_x.get(), d_offsets.get(), S, N, n_heads, hd,
                                                theta, dtype, nullptr);
    CHECK(rc == 0);
    return d_x.download();
}

void rope_case(LetheDtype dtype, const std::vector<int64_t>& offsets, int n_heads, int hd,
               float theta, uint64_t seed) {
    const size_t N = (size_t)offsets.back();
    std::string shape = "N=" + std::to_string(N) + " samples=" +
                        std::to_string(offsets.size() - 1) + " heads=" +
                        std::to_string(n_heads) + " hd=" + std::to_string(hd);
    const SampleLayout layout = {(int)offsets.size() - 1, offsets.data()};
    const std::vector<float> x = as_stored(random_floats(N * n_heads * hd, seed), dtype);
    for (const bool backward : {false, true}) {
        const std::vector<float> got = rope_on_device(dtype, x, offsets, n_heads, hd, theta,
                                                      backward);
        std::vector<float> ref = x;
        if (backward) rope_backward(ref.data(), &layout, n_heads, hd, theta);
        else rope_forward(ref.data(), &layout, n_heads, hd, theta);
        expect_close(backward ? "rope_backward" : "rope_forward", describe("x", dtype, shape),
                     dtype, got, ref);
    }
}

void test_rope_matches_cpu_twin() {
    uint64_t seed = 3000;
    for (const LetheDtype dtype : kDtypes) {
        for (const size_t N : kRows) {
            for (const int hd : {2, 8, 64, 96, 256}) {
                for (const int heads : {1, 3}) {
                    // One sample, and the same tokens cut into samples (one of them empty).
                    rope_case(dtype, {0, (int64_t)N}, heads, hd, 10000.0f, seed += 10);
                    rope_case(dtype, {0, (int64_t)N / 3, (int64_t)N / 3, (int64_t)N}, heads, hd,
                              500000.0f, seed += 10);
                }
            }
        }
        // Positions up to 5000: large angles, where one ulp of a frequency would show.
        rope_case(dtype, {0, 5000, 5003}, 2, 16, 10000.0f, seed += 10);
    }
}

void test_rope_is_deterministic() {
    const std::vector<int64_t> offsets = {0, 40, 41, 130};
    const std::vector<float> x = random_floats(130 * 4 * 64, 5);
    for (const LetheDtype dtype : kDtypes) {
        expect_deterministic(std::string("rope ") + dtype_name(dtype), [&] {
            const std::vector<float> f = rope_on_device(dtype, x, offsets, 4, 64, 1e4f, false);
            const std::vector<float> b = rope_on_device(dtype, x, offsets, 4, 64, 1e4f, true);
            std::vector<uint8_t> bytes((f.size() + b.size()) * 4);
            memcpy(bytes.data(), f.data(), f.size() * 4);
            memcpy(bytes.data() + f.size() * 4, b.data(), b.size() * 4);
            return bytes;
        });
    }
}

// ---- SwiGLU and residual ------------------------------------------------------------------------

struct SwigluRun {
    std::vector<float> out, dgate, dup, sum, sum_in_place;
};

SwigluRun swiglu_on_device(LetheDtype dtype, const std::vector<float>& gate,
                           const std::vector<float>& up, const std::vector<float>& dout,
                           const std::vector<float>& dgate0, const std::vector<float>& dup0) {
    const size_t n = gate.size();
    DeviceTensor d_gate(gate, dtype), d_up(up, dtype), d_dout(dout, dtype), d_out(n, dtype);
    DeviceTensor d_dgate(dgate0, dtype), d_dup(dup0, dtype), d_sum(n, dtype);
    CHECK(cuda_swiglu_forward(d_out.get(), d_gate.get(), d_up.get(), n, dtype, nullptr) == 0);
    CHECK(cuda_swiglu_backward(d_dgate.get(), d_dup.get(), d_dout.get(), d_gate.get(), d_up.get(),
                               n, dtype, nullptr) == 0);
    CHECK(cuda_residual_forward(d_sum.get(), d_gate.get(), d_up.get(), n, dtype, nullptr) == 0);
    SwigluRun r{d_out.download(), d_dgate.download(), d_dup.download(), d_sum.download(), {}};
    // out may alias a: the residual stream updated in place.
    CHECK(cuda_residual_forward(d_gate.get(), d_gate.get(), d_up.get(), n, dtype, nullptr) == 0);
    r.sum_in_place = d_gate.download();
    return r;
}

void test_swiglu_and_residual_match_cpu_twin() {
    uint64_t seed = 4000;
    for (const LetheDtype dtype : kDtypes) {
        for (const size_t n : {1ul, 7ul, 33ul, 130ul, 257ul * 96ul, 70001ul}) {
            const std::string shape = "n=" + std::to_string(n);
            const std::vector<float> gate = as_stored(random_floats(n, seed, -6, 6), dtype);
            const std::vector<float> up = as_stored(random_floats(n, seed + 1), dtype);
            const std::vector<float> dout = as_stored(random_floats(n, seed + 2), dtype);
            const std::vector<float> dgate0 = as_stored(random_floats(n, seed + 3), dtype);
            const std::vector<float> dup0 = as_stored(random_floats(n, seed + 4), dtype);
            seed += 10;
            const SwigluRun got = swiglu_on_device(dtype, gate, up, dout, dgate0, dup0);
            std::vector<float> out(n), dgate = dgate0, dup = dup0, sum(n);
            swiglu_forward(out.data(), gate.data(), up.data(), n);
            swiglu_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), n);
            residual_forward(sum.data(), gate.data(), up.data(), n);
            expect_close("swiglu_forward", describe("out", dtype, shape), dtype, got.out, out);
            expect_close("swiglu_backward", describe("dgate", dtype, shape), dtype, got.dgate,
                         dgate);
            expect_close("swiglu_backward", describe("dup", dtype, shape), dtype, got.dup, dup);
            expect_close("residual_forward", describe("out", dtype, shape), dtype, got.sum, sum);
            // An add rounds once: the same bits as the CPU twin's, rounded to the dtype.
            CHECK(got.sum == as_stored(sum, dtype));
            CHECK(got.sum_in_place == got.sum);
        }
    }
}

void test_swiglu_and_residual_are_deterministic() {
    const size_t n = 5000;
    const std::vector<float> gate = random_floats(n, 1, -6, 6), up = random_floats(n, 2);
    const std::vector<float> dout = random_floats(n, 3), d0 = random_floats(n, 4);
    for (const LetheDtype dtype : kDtypes) {
        expect_deterministic(std::string("swiglu ") + dtype_name(dtype), [&] {
            const SwigluRun r = swiglu_on_device(dtype, gate, up, dout, d0, d0);
            std::vector<uint8_t> bytes;
            for (const std::vector<float>* v : {&r.out, &r.dgate, &r.dup, &r.sum}) {
                const uint8_t* p = reinterpret_cast<const uint8_t*>(v->data());
                bytes.insert(bytes.end(), p, p + v->size() * 4);
            }
            return bytes;
        });
    }
}

}  // namespace

int main() {
    skip_without_device();
    run_test("embedding_matches_cpu_twin", test_embedding_matches_cpu_twin);
    run_test("embedding_backward_is_deterministic", test_embedding_backward_is_deterministic);
    run_test("rmsnorm_matches_cpu_twin", test_rmsnorm_matches_cpu_twin);
    run_test("rmsnorm_is_deterministic", test_rmsnorm_is_deterministic);
    run_test("rope_matches_cpu_twin", test_rope_matches_cpu_twin);
    run_test("rope_is_deterministic", test_rope_is_deterministic);
    run_test("swiglu_and_residual_match_cpu_twin", test_swiglu_and_residual_match_cpu_twin);
    run_test("swiglu_and_residual_are_deterministic", test_swiglu_and_residual_are_deterministic);
    print_worst_errors();
    return test_exit_code();
}
