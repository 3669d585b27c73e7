// The CUDA twin of the per-row mean squared error (kernels/cuda/rows_mse.cu) against its CPU twin
// (kernels/cpu/rows_mse.c) under the CPU execution harness: float32 and bfloat16 rows, a target
// row per row or one shared vector, odd widths, and the same bits under other schedules.
#include "cuda_test_util.h"

#include <string>
#include <tuple>
#include <vector>

using namespace cuda_test;

namespace {

constexpr LetheDtype kDtypes[] = {LETHE_F32, LETHE_BF16};

struct MseInputs {
    std::vector<float> h, rows, vec, weight;  // rows empty: the shared vector is the target
};

// Hidden states and targets of different scales (RMU steers towards c * a random unit vector,
// c of a few units) and per-row weights of both signs.
MseInputs mse_inputs(LetheDtype dtype, size_t M, int D, bool per_row, uint64_t seed) {
    MseInputs in;
    in.h = as_stored(random_floats(M * D, seed, -3.0f, 3.0f), dtype);
    if (per_row) in.rows = as_stored(random_floats(M * D, seed + 1, -3.0f, 3.0f), dtype);
    in.vec = random_floats(D, seed + 2, -6.0f, 6.0f);  // float32 in both modes
    in.weight = random_floats(M, seed + 3, -2.0f, 2.0f);
    return in;
}

struct MseOutputs {
    std::vector<float> mse, dh;
};

MseOutputs mse_on_cpu(const MseInputs& in, size_t M, int D) {
    MseOutputs out{std::vector<float>(M), std::vector<float>(M * D)};
    const float* rows = in.rows.empty() ? nullptr : in.rows.data();
    rows_mse_forward(out.mse.data(), in.h.data(), rows, in.vec.data(), M, D);
    rows_mse_backward(out.dh.data(), in.h.data(), rows, in.vec.data(), in.weight.data(), M, D);
    return out;
}

MseOutputs mse_on_device(const MseInputs& in, size_t M, int D, LetheDtype dtype) {
    DeviceTensor d_h(in.h, dtype), d_dh(M * D, dtype);
    // A rows tensor of one element when unused: the launcher must not read it.
    DeviceTensor d_rows(in.rows.empty() ? std::vector<float>(1, NAN) : in.rows, dtype);
    DeviceBuffer<float> d_vec(in.vec), d_weight(in.weight), d_mse(M);
    const void* rows = in.rows.empty() ? nullptr : d_rows.get();
    // With a per-row target the vector is passed too (NaN-free but wrong): it must be ignored.
    CHECK(cuda_rows_mse_forward(d_mse.get(), d_h.get(), rows, d_vec.get(), M, D, dtype,
                                nullptr) == 0);
    CHECK(cuda_rows_mse_backward(d_dh.get(), d_h.get(), rows, d_vec.get(), d_weight.get(), M, D,
                                 dtype, nullptr) == 0);
    return {d_mse.download(), d_dh.download()};
}

void test_rows_mse_matches_cpu_twin() {
    uint64_t seed = 100;
    for (const LetheDtype dtype : kDtypes) {
        for (const bool per_row : {true, false}) {
            for (const size_t M : {1ul, 7ul, 70ul}) {
                // Under one warp, odd, a warp plus one, several strided loads per thread.
                for (const int D : {1, 13, 33, 64, 257, 1000}) {
                    const MseInputs in = mse_inputs(dtype, M, D, per_row, seed += 10);
                    const MseOutputs ref = mse_on_cpu(in, M, D);
                    const MseOutputs got = mse_on_device(in, M, D, dtype);
                    const std::string what = std::string(dtype_name(dtype)) +
                                             (per_row ? " target rows" : " target vector") +
                                             " M=" + std::to_string(M) +
                                             " D=" + std::to_string(D);
                    // mse is float32 in both modes, from the same stored inputs.
                    expect_close("rows_mse_forward", "mse " + what, LETHE_F32, got.mse, ref.mse);
                    expect_close("rows_mse_backward", "dh " + what, dtype, got.dh, ref.dh);
                    // The same float expression on both sides: dh is the CPU's, rounded once to
                    // the dtype.
                    if (got.dh != as_stored(ref.dh, dtype)) {
                        fprintf(stderr, "  rows_mse_backward dh %s: not the CPU twin's values "
                                "rounded to %s\n", what.c_str(), dtype_name(dtype));
                        ++g_test_failures;
                    }
                }
            }
        }
    }
}

void test_rows_mse_rejects_a_missing_target() {
    DeviceBuffer<float> h(8), dh(8), mse(2), w(2);
    CHECK(cuda_rows_mse_forward(mse.get(), h.get(), nullptr, nullptr, 2, 4, LETHE_F32, nullptr) ==
          cudaErrorInvalidValue);
    CHECK(cuda_rows_mse_backward(dh.get(), h.get(), nullptr, nullptr, w.get(), 2, 4, LETHE_F32,
                                 nullptr) == cudaErrorInvalidValue);
    // No rows: nothing to do, and no launch.
    CHECK(cuda_rows_mse_forward(mse.get(), h.get(), nullptr, h.get(), 0, 4, LETHE_F32, nullptr) ==
          0);
}

void test_rows_mse_is_deterministic() {
    for (const LetheDtype dtype : kDtypes) {
        const MseInputs a = mse_inputs(dtype, 9, 1000, true, 11);
        const MseInputs b = mse_inputs(dtype, 5, 257, false, 12);
        expect_deterministic(std::string("rows_mse ") + dtype_name(dtype), [&] {
            std::vector<uint8_t> bytes;
            for (const auto& [in, M, D] : {std::tuple<const MseInputs&, size_t, int>{a, 9, 1000},
                                           std::tuple<const MseInputs&, size_t, int>{b, 5, 257}}) {
                const MseOutputs o = mse_on_device(in, M, D, dtype);
                for (const std::vector<float>* v : {&o.mse, &o.dh}) {
                    const uint8_t* p = reinterpret_cast<const uint8_t*>(v->data());
                    bytes.insert(bytes.end(), p, p + v->size() * 4);
                }
            }
            return bytes;
        });
    }
}

}  // namespace

int main() {
    skip_without_device();
    run_test("rows_mse_matches_cpu_twin", test_rows_mse_matches_cpu_twin);
    run_test("rows_mse_rejects_a_missing_target", test_rows_mse_rejects_a_missing_target);
    run_test("rows_mse_is_deterministic", test_rows_mse_is_deterministic);
    print_worst_errors();
    return test_exit_code();
}
