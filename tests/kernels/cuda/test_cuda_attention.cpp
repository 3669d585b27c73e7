// The CUDA causal GQA attention (kernels/cuda/attention.cu) under the CPU execution harness
// against its CPU twin (kernels/cpu/attention.c): out, lse, dq, dk, dv in fp32 and bf16 over
// packed samples of odd lengths (one token, empty samples, several key tiles), grouped heads and
// head dimensions from 8 to 128, and the same bits under other schedules.
#include "cuda_test_util.h"

#include <string>
#include <vector>

using namespace cuda_test;

namespace {

struct Case {
    std::vector<int64_t> lengths;  // tokens per sample, packed end to end
    int H, KV, hd;
};

std::string describe(const Case& c, LetheDtype dtype) {
    std::string s = "(samples {";
    for (size_t i = 0; i < c.lengths.size(); i++) {
        s += (i ? ", " : "") + std::to_string(c.lengths[i]);
    }
    char b[96];
    snprintf(b, sizeof b, "}, H %d, KV %d, hd %d, %s)", c.H, c.KV, c.hd, dtype_name(dtype));
    return s + b;
}

struct Inputs {
    std::vector<int64_t> offsets;
    size_t N;
    std::vector<float> q, k, v, dout, dq0, dk0, dv0;
};

Inputs make_inputs(const Case& c, LetheDtype dtype, uint64_t seed) {
    Inputs in;
    in.offsets.push_back(0);
    for (int64_t t : c.lengths) in.offsets.push_back(in.offsets.back() + t);
    in.N = static_cast<size_t>(in.offsets.back());
    const size_t nq = in.N * c.H * c.hd, nk = in.N * c.KV * c.hd;
    // Scores of standard deviation about 1: softmaxes neither flat nor one-hot.
    in.q = as_stored(random_floats(nq, seed + 1, -2.0f, 2.0f), dtype);
    in.k = as_stored(random_floats(nk, seed + 2, -2.0f, 2.0f), dtype);
    in.v = as_stored(random_floats(nk, seed + 3), dtype);
    in.dout = as_stored(random_floats(nq, seed + 4), dtype);
    // Gradients start non-zero, as the backward adds to them, and at the scale of the gradients
    // themselves: a one-token sample's dq and dk are exactly zero (a softmax over one key), and
    // what both twins add there is the rounding of dout . v - dout . out (~1e-7), which must not
    // be measured against a tensor of nearly zeros.
    in.dq0 = as_stored(random_floats(nq, seed + 5, -0.5f, 0.5f), dtype);
    in.dk0 = as_stored(random_floats(nk, seed + 6, -0.5f, 0.5f), dtype);
    in.dv0 = as_stored(random_floats(nk, seed + 7, -0.5f, 0.5f), dtype);
    return in;
}

struct Outputs {
    std::vector<float> out, lse, dq, dk, dv;
};

// The CPU twin. Its backward takes its forward's out as the dtype holds it, as the CUDA
// backward does.
Outputs run_cpu(const Case& c, const Inputs& in, LetheDtype dtype) {
    const SampleLayout layout{static_cast<int>(c.lengths.size()), in.offsets.data()};
    Outputs o;
    o.out.resize(in.q.size());
    o.lse.resize(in.N * c.H);
    attention_forward(o.out.data(), o.lse.data(), in.q.data(), in.k.data(), in.v.data(), &layout,
                      c.H, c.KV, c.hd);
    const std::vector<float> out = as_stored(o.out, dtype);
    o.dq = in.dq0, o.dk = in.dk0, o.dv = in.dv0;
    attention_backward(o.dq.data(), o.dk.data(), o.dv.data(), in.dout.data(), out.data(),
                       o.lse.data(), in.q.data(), in.k.data(), in.v.data(), &layout, c.H, c.KV,
                       c.hd);
    return o;
}

// The CUDA twin: the forward on q, k, v; the backward on the CPU's out and lse, so each is
// compared with its twin on the same inputs. `raw` collects the bytes of every output.
Outputs run_cuda(const Case& c, const Inputs& in, const Outputs& cpu, LetheDtype dtype,
                 std::vector<uint8_t>* raw = nullptr) {
    const int n_samples = static_cast<int>(c.lengths.size());
    DeviceBuffer<int64_t> offsets(in.offsets);
    DeviceTensor q(in.q, dtype), k(in.k, dtype), v(in.v, dtype), dout(in.dout, dtype);
    DeviceTensor out(in.q.size(), dtype), cpu_out(cpu.out, dtype);
    DeviceTensor dq(in.dq0, dtype), dk(in.dk0, dtype), dv(in.dv0, dtype);
    DeviceBuffer<float> lse(in.N * c.H), cpu_lse(cpu.lse);
    CHECK(cuda_attention_forward(out.get(), lse.get(), q.get(), k.get(), v.get(), offsets.get(),
                                 n_samples, in.N, c.H, c.KV, c.hd, dtype, nullptr) == 0);
    CHECK(cuda_attention_backward(dq.get(), dk.get(), dv.get(), dout.get(), cpu_out.get(),
                                  cpu_lse.get(), q.get(), k.get(), v.get(), offsets.get(),
                                  n_samples, in.N, c.H, c.KV, c.hd, dtype, nullptr) == 0);
    CHECK_CUDA(cudaDeviceSynchronize());
    if (raw != nullptr) {
        append_bytes(*raw, out);
        append_bytes(*raw, lse);
        for (const DeviceTensor* t : {&dq, &dk, &dv}) append_bytes(*raw, *t);
    }
    return {out.download(), lse.download(), dq.download(), dk.download(), dv.download()};
}

void check_case(const Case& c, LetheDtype dtype, uint64_t seed) {
    const Inputs in = make_inputs(c, dtype, seed);
    const Outputs ref = run_cpu(c, in, dtype);
    const Outputs got = run_cuda(c, in, ref, dtype);
    const std::string where = describe(c, dtype);
    expect_close("attention_forward out", where, dtype, got.out, ref.out);
    // lse is float32 computed in float32 from the dtype's exact values: the float32 tolerance
    // in both modes.
    expect_close("attention_forward lse", where, LETHE_F32, got.lse, ref.lse);
    expect_close("attention_backward dq", where, dtype, got.dq, ref.dq);
    expect_close("attention_backward dk", where, dtype, got.dk, ref.dk);
    expect_close("attention_backward dv", where, dtype, got.dv, ref.dv);
}

void test_attention_matches_cpu_twin() {
    // One token; two samples; a tile-sized sample between odd ones; several key tiles per
    // sample; an empty sample.
    const std::vector<std::vector<int64_t>> layouts = {
        {1}, {5, 17}, {64, 3, 40}, {130, 7}, {9, 0, 20}};
    const int heads[][2] = {{4, 4}, {4, 2}, {6, 1}};
    uint64_t seed = 1000;
    for (const auto& lengths : layouts) {
        for (const auto& hk : heads) {
            for (const int hd : {8, 16, 64}) {
                for (const LetheDtype dtype : {LETHE_F32, LETHE_BF16}) {
                    check_case({lengths, hk[0], hk[1], hd}, dtype, seed);
                    seed += 10;
                }
            }
        }
    }
}

// hd 128 (32-key tiles) and head dimensions between the instantiated ones (zero padded).
void test_attention_other_head_dims_match_cpu_twin() {
    uint64_t seed = 5000;
    for (const Case& c :
         {Case{{64, 3, 40}, 4, 2, 128}, Case{{130, 7}, 2, 1, 128}, Case{{5, 17}, 6, 1, 24},
          Case{{64, 3, 40}, 4, 2, 3}, Case{{33}, 2, 2, 100}}) {
        for (const LetheDtype dtype : {LETHE_F32, LETHE_BF16}) {
            check_case(c, dtype, seed);
            seed += 10;
        }
    }
}

void test_attention_is_deterministic() {
    const Case c{{64, 3, 40}, 6, 1, 16};
    for (const LetheDtype dtype : {LETHE_F32, LETHE_BF16}) {
        const Inputs in = make_inputs(c, dtype, 7);
        const Outputs ref = run_cpu(c, in, dtype);
        expect_deterministic("attention " + describe(c, dtype), [&] {
            std::vector<uint8_t> raw;
            run_cuda(c, in, ref, dtype, &raw);
            return raw;
        });
    }
}

void test_attention_rejects_bad_arguments() {
    DeviceBuffer<int64_t> offsets(std::vector<int64_t>{0, 4});
    DeviceTensor t(4 * 6 * 129, LETHE_F32);
    DeviceBuffer<float> lse(4 * 6);
    auto forward = [&](int H, int KV, int hd) {
        return cuda_attention_forward(t.get(), lse.get(), t.get(), t.get(), t.get(), offsets.get(),
                                      1, 4, H, KV, hd, LETHE_F32, nullptr);
    };
    CHECK(forward(4, 4, 129) == cudaErrorInvalidValue);  // hd over 128
    CHECK(forward(4, 4, 0) == cudaErrorInvalidValue);
    CHECK(forward(6, 4, 8) == cudaErrorInvalidValue);  // H not a multiple of KV
    CHECK(cuda_attention_backward(t.get(), t.get(), t.get(), t.get(), t.get(), lse.get(), t.get(),
                                  t.get(), t.get(), offsets.get(), 1, 4, 4, 0, 8, LETHE_F32,
                                  nullptr) == cudaErrorInvalidValue);  // KV 0
}

}  // namespace

int main() {
    skip_without_device();
    run_test("attention_matches_cpu_twin", test_attention_matches_cpu_twin);
    run_test("attention_other_head_dims_match_cpu_twin",
             test_attention_other_head_dims_match_cpu_twin);
    run_test("attention_is_deterministic", test_attention_is_deterministic);
    run_test("attention_rejects_bad_arguments", test_attention_rejects_bad_arguments);
    print_worst_errors();
    return test_exit_code();
}
