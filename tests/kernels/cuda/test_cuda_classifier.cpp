// The CUDA fused classifier (kernels/cuda/classifier.cu) under the CPU execution harness against
// its CPU twins (kernels/cpu/classifier.c, classifier_soft.c): every output and gradient in fp32
// and bf16, with whole and with small scratch tiles, and the same bits under other schedules.
#include "cuda_test_util.h"

#include <cublas_v2.h>

#include <cmath>
#include <string>
#include <vector>

using namespace cuda_test;

namespace {

cublasHandle_t g_cublas = nullptr;

struct Shape {
    size_t M;
    int D, V;
};

std::string describe(const Shape& s, LetheDtype dtype, bool small) {
    char b[128];
    snprintf(b, sizeof b, "(M %zu, D %d, V %d, %s, %s scratch)", s.M, s.D, s.V, dtype_name(dtype),
             small ? "small" : "whole");
    return b;
}

// One case's inputs as the values the dtype holds (what the CPU twin computes on).
struct Inputs {
    Shape s;
    LetheDtype dtype;
    std::vector<float> x, w, xref, wref, weight, dx0, dw0;
    std::vector<int32_t> targets;
};

// The first index of each row's largest logit.
std::vector<int32_t> argmax_rows(const Inputs& in) {
    std::vector<int32_t> best(in.s.M, 0);
    for (size_t m = 0; m < in.s.M; m++) {
        float best_logit = -INFINITY;
        for (int v = 0; v < in.s.V; v++) {
            float l = 0.0f;
            for (int d = 0; d < in.s.D; d++) {
                l += in.x[m * in.s.D + d] * in.w[static_cast<size_t>(v) * in.s.D + d];
            }
            if (l > best_logit) best_logit = l, best[m] = v;
        }
    }
    return best;
}

Inputs make_inputs(const Shape& s, LetheDtype dtype, uint64_t seed) {
    Inputs in;
    in.s = s;
    in.dtype = dtype;
    const size_t MD = s.M * s.D, VD = static_cast<size_t>(s.V) * s.D;
    in.x = as_stored(random_floats(MD, seed + 1), dtype);
    in.w = as_stored(random_floats(VD, seed + 2), dtype);
    // The reference model is a perturbation of the current one: KL neither 0 nor huge.
    const std::vector<float> nx = random_floats(MD, seed + 3, -0.3f, 0.3f);
    const std::vector<float> nw = random_floats(VD, seed + 4, -0.3f, 0.3f);
    in.xref = in.x, in.wref = in.w;
    for (size_t i = 0; i < MD; i++) in.xref[i] += nx[i];
    for (size_t i = 0; i < VD; i++) in.wref[i] += nw[i];
    in.xref = as_stored(in.xref, dtype), in.wref = as_stored(in.wref, dtype);
    // Weights of both signs (ascent and descent) and exactly 0 on every third row.
    in.weight = random_floats(s.M, seed + 5, -1.5f, 1.5f);
    for (size_t m = 1; m < s.M; m += 3) in.weight[m] = 0.0f;
    // Half of the targets are the row's argmax, so is_argmax sees both answers.
    in.targets = random_tokens(s.M, s.V, seed + 6);
    const std::vector<int32_t> best = argmax_rows(in);
    for (size_t m = 0; m < s.M; m += 2) in.targets[m] = best[m];
    // The last column: alone in the last tile when V = 129 with small tiles (a soft target
    // that leaves it out then has a tile without mass).
    if (s.M > 1) in.targets[1] = s.V - 1;
    // Gradients start non-zero: the backward adds to them.
    in.dx0 = as_stored(random_floats(MD, seed + 7, -0.01f, 0.01f), dtype);
    in.dw0 = random_floats(VD, seed + 8, -0.01f, 0.01f);
    return in;
}

// The soft targets of the methods (kernels/ops.h SoftTarget): the KL retain term, UNDIAL, CE-U.
constexpr int kSoftVariants = 3;
const char* const kSoftNames[kSoftVariants] = {"soft(kl,ref)", "soft(undial)", "soft(ce-u)"};

SoftTarget soft_target(int variant, const void* xref, const void* wref, const int32_t* targets) {
    if (variant == 0) return SoftTarget{xref, wref, targets, 0.0f, 0};
    if (variant == 1) return SoftTarget{xref, wref, targets, -2.5f, 1};
    return SoftTarget{nullptr, nullptr, targets, -INFINITY, 1};
}

// The soft targets' rows: the targets, but row 2 without one (-1: no shift, log-prob NaN), as
// UNDIAL's question positions.
std::vector<int32_t> soft_targets(const Inputs& in) {
    std::vector<int32_t> t = in.targets;
    if (t.size() > 2) t[2] = -1;
    return t;
}

// NaN entries (rows without a target) set to 0, and where they were.
std::vector<float> nan_to_zero(std::vector<float> v, std::vector<size_t>* where) {
    for (size_t i = 0; i < v.size(); i++)
        if (std::isnan(v[i])) v[i] = 0.0f, where->push_back(i);
    return v;
}

struct SoftOutputs {
    std::vector<float> loss, lse, gap, logprob, dx, dw;
};

struct Outputs {
    std::vector<float> logprob, lse, dx, dw, mu, var;
    std::vector<uint8_t> is_argmax;
    SoftOutputs soft[kSoftVariants];
};

Outputs run_cpu(const Inputs& in) {
    const Shape& s = in.s;
    const size_t M = s.M;
    Outputs o;
    o.logprob.resize(M), o.lse.resize(M), o.mu.resize(M), o.var.resize(M), o.is_argmax.resize(M);
    std::vector<float> scratch(classifier_scratch_size(M, s.V));
    std::vector<float> soft_scratch(classifier_soft_scratch_size(M, s.V));
    classifier_forward(o.logprob.data(), o.lse.data(), scratch.data(), in.x.data(), in.w.data(),
                       in.targets.data(), M, s.D, s.V);
    o.dx = in.dx0, o.dw = in.dw0;
    classifier_backward(o.dx.data(), o.dw.data(), scratch.data(), in.x.data(), in.w.data(),
                        in.targets.data(), o.lse.data(), in.weight.data(), M, s.D, s.V);
    classifier_stats(o.is_argmax.data(), o.mu.data(), o.var.data(), scratch.data(), in.x.data(),
                     in.w.data(), in.targets.data(), o.lse.data(), M, s.D, s.V);
    const std::vector<int32_t> targets = soft_targets(in);
    for (int v = 0; v < kSoftVariants; v++) {
        SoftOutputs& so = o.soft[v];
        const SoftTarget q = soft_target(v, in.xref.data(), in.wref.data(), targets.data());
        so.loss.resize(M), so.lse.resize(M), so.gap.resize(M), so.logprob.resize(M);
        classifier_soft_forward(so.loss.data(), so.lse.data(), so.gap.data(), so.logprob.data(),
                                soft_scratch.data(), in.x.data(), in.w.data(), &q, M, s.D, s.V);
        so.dx = in.dx0, so.dw = in.dw0;
        classifier_soft_backward(so.dx.data(), so.dw.data(), soft_scratch.data(), in.x.data(),
                                 in.w.data(), &q, so.lse.data(), so.gap.data(), in.weight.data(),
                                 M, s.D, s.V);
    }
    return o;
}

// Scratch for tiles of about 8 rows x 128 vocabulary entries, so that even these small shapes
// run several row chunks and vocabulary tiles, with partial last ones.
size_t scratch_bytes(const Shape& s, LetheDtype dtype, bool small, bool soft) {
    const size_t M = small && s.M > 8 ? 8 : s.M;
    const int V = small && s.V > 128 ? 128 : s.V;
    return soft ? cuda_classifier_soft_scratch_bytes(M, s.D, V, dtype)
              : cuda_classifier_scratch_bytes(M, s.D, V, dtype);
}

// Every CUDA classifier launcher on one case; `raw` collects the bytes of every output (for the
// determinism check). The backwards and the statistics take the CPU's lse (and gap), so each
// kernel is compared with its twin on the same inputs.
Outputs run_cuda(const Inputs& in, const Outputs& cpu, bool small,
                 std::vector<uint8_t>* raw = nullptr) {
    const std::vector<float>& cpu_lse = cpu.lse;
    const Shape& s = in.s;
    const LetheDtype t = in.dtype;
    const size_t M = s.M;
    DeviceTensor x(in.x, t), w(in.w, t), xref(in.xref, t), wref(in.wref, t), dx(in.dx0, t);
    DeviceBuffer<int32_t> targets(in.targets), targets_soft(soft_targets(in));
    DeviceBuffer<float> weight(in.weight), given_lse(cpu_lse), dw(in.dw0);
    DeviceBuffer<float> lse(M), logprob(M), mu(M), var(M), soft_loss(M), soft_lse(M), soft_gap(M),
        soft_logprob(M);
    DeviceBuffer<uint8_t> is_argmax(M);
    const size_t bytes = scratch_bytes(s, t, small, false);
    const size_t soft_bytes = scratch_bytes(s, t, small, true);
    DeviceBuffer<uint8_t> scratch(bytes), soft_scratch(soft_bytes);
    void* const cublas = g_cublas;
    LetheStream stream = nullptr;

    Outputs o;
    CHECK(cuda_classifier_forward(logprob.get(), lse.get(), scratch.get(), bytes, x.get(), w.get(),
                                  targets.get(), M, s.D, s.V, t, cublas, stream) == 0);
    CHECK(cuda_classifier_backward(dx.get(), dw.get(), scratch.get(), bytes, x.get(), w.get(),
                                   targets.get(), given_lse.get(), weight.get(), M, s.D, s.V, t,
                                   cublas, stream) == 0);
    CHECK(cuda_classifier_stats(is_argmax.get(), mu.get(), var.get(), scratch.get(), bytes, x.get(),
                                w.get(), targets.get(), given_lse.get(), M, s.D, s.V, t, cublas,
                                stream) == 0);
    CHECK_CUDA(cudaDeviceSynchronize());
    o.logprob = logprob.download(), o.lse = lse.download();
    o.dx = dx.download(), o.dw = dw.download();
    o.mu = mu.download(), o.var = var.download(), o.is_argmax = is_argmax.download();
    if (raw != nullptr) {
        for (const DeviceBuffer<float>* b : {&logprob, &lse, &dw, &mu, &var})
            append_bytes(*raw, *b);
        append_bytes(*raw, is_argmax);
        append_bytes(*raw, dx);
    }

    for (int v = 0; v < kSoftVariants; v++) {
        dx.upload(in.dx0);
        dw.upload(in.dw0);
        const SoftTarget q = soft_target(v, xref.get(), wref.get(), targets_soft.get());
        CHECK(cuda_classifier_soft_forward(soft_loss.get(), soft_lse.get(), soft_gap.get(),
                                           soft_logprob.get(), soft_scratch.get(), soft_bytes,
                                           x.get(), w.get(), &q, M, s.D, s.V, t, cublas,
                                           stream) == 0);
        DeviceBuffer<float> cpu_soft_lse(cpu.soft[v].lse), cpu_soft_gap(cpu.soft[v].gap);
        CHECK(cuda_classifier_soft_backward(dx.get(), dw.get(), soft_scratch.get(), soft_bytes,
                                            x.get(), w.get(), &q, cpu_soft_lse.get(),
                                            cpu_soft_gap.get(), weight.get(), M, s.D, s.V, t,
                                            cublas, stream) == 0);
        CHECK_CUDA(cudaDeviceSynchronize());
        SoftOutputs& so = o.soft[v];
        so.loss = soft_loss.download(), so.lse = soft_lse.download(), so.gap = soft_gap.download();
        so.logprob = soft_logprob.download();
        so.dx = dx.download(), so.dw = dw.download();
        if (raw != nullptr) {
            for (const DeviceBuffer<float>* b : {&soft_loss, &soft_lse, &soft_gap, &soft_logprob, &dw})
                append_bytes(*raw, *b);
            append_bytes(*raw, dx);
        }
    }
    return o;
}

// Rows of weight 0 leave dx exactly as it was.
void expect_zero_weight_rows_untouched(const Inputs& in, const std::vector<float>& dx,
                                       const char* kernel, const std::string& where) {
    for (size_t m = 0; m < in.s.M; m++) {
        if (in.weight[m] != 0.0f) continue;
        bool same = true;
        for (int d = 0; d < in.s.D; d++)
            same = same && dx[m * in.s.D + d] == in.dx0[m * in.s.D + d];
        if (!same)
            fprintf(stderr, "  %s %s: row %zu of weight 0 changed dx\n", kernel, where.c_str(), m);
        CHECK(same);
    }
}

void check_case(const Shape& s, LetheDtype dtype, bool small, uint64_t seed) {
    const Inputs in = make_inputs(s, dtype, seed);
    const Outputs ref = run_cpu(in);
    const Outputs got = run_cuda(in, ref, small);
    const std::string where = describe(s, dtype, small);
    // Statistics are float32 computed in float32 from the dtype's exact values: held to the
    // float32 tolerance in both modes. Gradients of a bf16 run pass through bf16 dlogits (the
    // GEMM operands), so there they are held to the bf16 tolerances.
    expect_close("classifier_forward logprob", where, LETHE_F32, got.logprob, ref.logprob);
    expect_close("classifier_forward lse", where, LETHE_F32, got.lse, ref.lse);
    expect_close("classifier_backward dx", where, dtype, got.dx, ref.dx);
    expect_close("classifier_backward dw", where, dtype, got.dw, ref.dw);
    expect_close("classifier_stats mu", where, LETHE_F32, got.mu, ref.mu);
    expect_close("classifier_stats var", where, LETHE_F32, got.var, ref.var);
    int argmax_mismatches = 0;
    for (size_t m = 0; m < s.M; m++) argmax_mismatches += got.is_argmax[m] != ref.is_argmax[m];
    if (argmax_mismatches != 0) {
        fprintf(stderr, "  classifier_stats is_argmax %s: %d rows differ\n", where.c_str(),
                argmax_mismatches);
    }
    CHECK(argmax_mismatches == 0);
    expect_zero_weight_rows_untouched(in, got.dx, "classifier_backward", where);
    for (int v = 0; v < kSoftVariants; v++) {
        const std::string name = kSoftNames[v];
        const SoftOutputs &g = got.soft[v], &r = ref.soft[v];
        expect_close((name + " forward loss").c_str(), where, LETHE_F32, g.loss, r.loss);
        expect_close((name + " forward lse").c_str(), where, LETHE_F32, g.lse, r.lse);
        expect_close((name + " forward gap").c_str(), where, LETHE_F32, g.gap, r.gap);
        std::vector<size_t> nan_got, nan_ref;
        expect_close((name + " forward logprob").c_str(), where, LETHE_F32,
                     nan_to_zero(g.logprob, &nan_got), nan_to_zero(r.logprob, &nan_ref));
        if (nan_got != nan_ref || (s.M > 2 && nan_ref != std::vector<size_t>{2})) {
            fprintf(stderr, "  %s %s: rows without a target differ\n", kSoftNames[v], where.c_str());
            CHECK(false);
        }
        expect_close((name + " backward dx").c_str(), where, dtype, g.dx, r.dx);
        expect_close((name + " backward dw").c_str(), where, dtype, g.dw, r.dw);
        expect_zero_weight_rows_untouched(in, g.dx, kSoftNames[v], where);
    }
}

void test_classifier_matches_cpu_twins() {
    uint64_t seed = 100;
    for (const size_t M : {1, 5, 37}) {
        for (const int D : {8, 72}) {
            for (const int V : {33, 129, 1000}) {
                for (const LetheDtype dtype : {LETHE_F32, LETHE_BF16}) {
                    for (const bool small : {false, true}) {
                        check_case({M, D, V}, dtype, small, seed);
                        seed += 10;
                    }
                }
            }
        }
    }
}

void test_classifier_is_deterministic() {
    const Shape s{37, 72, 1000};
    for (const LetheDtype dtype : {LETHE_F32, LETHE_BF16}) {
        const Inputs in = make_inputs(s, dtype, 7);
        const Outputs ref = run_cpu(in);
        expect_deterministic("classifier " + describe(s, dtype, true), [&] {
            std::vector<uint8_t> raw;
            run_cuda(in, ref, true, &raw);
            return raw;
        });
    }
}

// Scratch below one 1 x 64 tile is refused, not overrun.
void test_classifier_rejects_too_small_scratch() {
    const Shape s{5, 8, 512};
    const Inputs in = make_inputs(s, LETHE_F32, 3);
    DeviceTensor x(in.x, LETHE_F32), w(in.w, LETHE_F32);
    DeviceBuffer<int32_t> targets(in.targets);
    DeviceBuffer<float> lse(s.M), logprob(s.M);
    DeviceBuffer<uint8_t> scratch(256);
    const int e =
        cuda_classifier_forward(logprob.get(), lse.get(), scratch.get(), 256, x.get(), w.get(),
                                targets.get(), s.M, s.D, s.V, LETHE_F32, g_cublas, nullptr);
    CHECK(e == cudaErrorInvalidValue);
}

}  // namespace

int main() {
    skip_without_device();
    CHECK(cublasCreate(&g_cublas) == CUBLAS_STATUS_SUCCESS);
    run_test("classifier_matches_cpu_twins", test_classifier_matches_cpu_twins);
    run_test("classifier_is_deterministic", test_classifier_is_deterministic);
    run_test("classifier_rejects_too_small_scratch", test_classifier_rejects_too_small_scratch);
    cublasDestroy(g_cublas);
    print_worst_errors();
    return test_exit_code();
}
