// The AdamW and global-gradient-norm twins against host/optim.c (optimizer_step,
// grad_global_norm) under the harness, over several steps with clipping; stochastic rounding of
// the bf16 weight copy: always a neighbour, unbiased on average, the same bits on every run.
#include "cuda_test_util.h"

extern "C" {
#include "optim.h"
}

#include <string>
#include <vector>

using namespace cuda_test;

namespace {

// A parameter table with a decayed matrix, a norm weight (no decay), a frozen matrix, and a
// matrix large enough to span several 256-element chunks of the norm.
struct Table {
    std::vector<ParamTensor> tensors;
    size_t n_params = 0;
};

Table make_table() {
    Table t;
    const struct {
        const char* name;
        int64_t rows, cols;
    } shapes[] = {{"model.layers.0.mlp.up_proj.weight", 17, 33},
                  {"model.layers.0.input_layernorm.weight", 33, 0},
                  {"model.layers.0.self_attn.q_proj.weight", 5, 7},
                  {"lm_head.weight", 130, 257}};
    for (const auto& s : shapes) {
        ParamTensor p = {};
        snprintf(p.name, sizeof p.name, "%s", s.name);
        p.ndim = s.cols ? 2 : 1;
        p.shape[0] = s.rows;
        p.shape[1] = s.cols;
        p.offset = t.n_params;
        p.numel = (size_t)s.rows * (s.cols ? s.cols : 1);
        t.n_params += p.numel;
        t.tensors.push_back(p);
    }
    return t;
}

constexpr int kFrozen = 2;  // the tensor optim.freeze would exclude
constexpr double kLr = 1e-3, kWeightDecay = 0.1, kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
constexpr double kMaxNorm = 1.0;
// Gradient scale per step: the second step's norm exceeds kMaxNorm (clipped), the others do not.
constexpr float kGradScale[] = {0.004f, 0.5f, 0.002f};

std::vector<float> step_grads(const Table& t, int step) {
    return random_floats(t.n_params, 900 + step, -kGradScale[step], kGradScale[step]);
}

struct AdamState {
    std::vector<float> params, m, v;
    std::vector<uint16_t> params_bf16;
    std::vector<double> norms;
};

// The CPU twin: host/optim.c over the same table.
AdamState adamw_on_cpu(const Table& t, const std::vector<float>& params0, int steps) {
    LlamaModel model = {};
    model.n_tensors = (int)t.tensors.size();
    model.tensors = const_cast<ParamTensor*>(t.tensors.data());
    model.n_params = t.n_params;
    std::vector<float> moments(2 * t.n_params, 0.0f);
    std::vector<uint8_t> trainable(t.tensors.size(), 1), decay(t.tensors.size());
    trainable[kFrozen] = 0;
    for (size_t i = 0; i < t.tensors.size(); ++i) decay[i] = t.tensors[i].ndim == 2;
    Optimizer o = {};
    o.kind = OPT_ADAMW;
    o.cfg = {OPT_ADAMW, kLr, kWeightDecay, kBeta1, kBeta2, kEps, 0.0};
    o.n_params = t.n_params;
    o.m = moments.data();
    o.v = moments.data() + t.n_params;
    o.trainable = trainable.data();
    o.decay = decay.data();
    o.n_tensors = model.n_tensors;
    AdamState s;
    s.params = params0;
    for (int step = 0; step < steps; ++step) {
        const std::vector<float> grads = step_grads(t, step);
        const double norm = grad_global_norm(&o, &model, grads.data());
        optimizer_step(&o, &model, s.params.data(), grads.data(), kLr, norm, kMaxNorm);
        s.norms.push_back(norm);
    }
    s.m.assign(moments.begin(), moments.begin() + t.n_params);
    s.v.assign(moments.begin() + t.n_params, moments.end());
    return s;
}

// The CUDA twin, driven as a trainer would: per step, zero the norm slots, accumulate every
// trainable tensor's squares, finish the norm, then update each trainable tensor with it.
AdamState adamw_on_device(const Table& t, const std::vector<float>& params0, int steps,
                          uint64_t seed) {
    DeviceBuffer<float> params(params0), m(t.n_params), v(t.n_params), grads(t.n_params);
    DeviceBuffer<uint16_t> params_bf16(t.n_params);
    DeviceBuffer<double> partial(CUDA_GRAD_NORM_SLOTS), norm(1);
    CHECK_CUDA(cudaMemset(m.get(), 0, t.n_params * sizeof(float)));
    CHECK_CUDA(cudaMemset(v.get(), 0, t.n_params * sizeof(float)));
    CHECK_CUDA(cudaMemset(params_bf16.get(), 0, t.n_params * sizeof(uint16_t)));
    AdamState s;
    for (int step = 0; step < steps; ++step) {
        grads.upload(step_grads(t, step));
        CHECK_CUDA(cudaMemset(partial.get(), 0, CUDA_GRAD_NORM_SLOTS * sizeof(double)));
        for (size_t i = 0; i < t.tensors.size(); ++i) {
            if ((int)i == kFrozen) continue;
            CHECK(cuda_grad_norm_accumulate(partial.get(), grads.get() + t.tensors[i].offset,
                                            t.tensors[i].numel, nullptr) == 0);
        }
        CHECK(cuda_grad_norm_finish(norm.get(), partial.get(), nullptr) == 0);
        for (size_t i = 0; i < t.tensors.size(); ++i) {
            if ((int)i == kFrozen) continue;
            const size_t off = t.tensors[i].offset;
            const double wd = t.tensors[i].ndim == 2 ? kWeightDecay : 0.0;
            CHECK(cuda_adamw_update(params.get() + off, m.get() + off, v.get() + off,
                                    params_bf16.get() + off, grads.get() + off,
                                    t.tensors[i].numel, kLr, kBeta1, kBeta2, kEps, wd, step + 1,
                                    norm.get(), kMaxNorm, seed * 1000 + i, nullptr) == 0);
        }
        s.norms.push_back(norm.download()[0]);
    }
    s.params = params.download();
    s.m = m.download();
    s.v = v.download();
    s.params_bf16 = params_bf16.download();
    return s;
}

float bf16_bits_to_float(uint16_t b) {
    const uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// The two bf16 values around x: x with its low 16 bits cleared, and the next one in magnitude.
void bf16_neighbours(float x, uint16_t* low, uint16_t* high) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    *low = (uint16_t)(bits >> 16);
    *high = (bits & 0xffffu) ? (uint16_t)(*low + 1) : *low;
}

void test_adamw_matches_host_optimizer() {
    const Table t = make_table();
    const std::vector<float> params0 = random_floats(t.n_params, 77);
    const int steps = 3;
    const AdamState cpu = adamw_on_cpu(t, params0, steps);
    const AdamState gpu = adamw_on_device(t, params0, steps, 1);
    double worst_norm = 0.0;
    for (int step = 0; step < steps; ++step) {
        const double rel = fabs(gpu.norms[step] - cpu.norms[step]) / cpu.norms[step];
        worst_norm = rel > worst_norm ? rel : worst_norm;
        CHECK(rel <= 1e-6);
    }
    // The second step clips, the others do not: both paths of the coefficient are covered.
    CHECK(cpu.norms[0] < kMaxNorm && cpu.norms[1] > kMaxNorm && cpu.norms[2] < kMaxNorm);
    printf("  grad norm: worst relative difference from grad_global_norm %.2e (norms %.4f %.4f "
           "%.4f)\n", worst_norm, cpu.norms[0], cpu.norms[1], cpu.norms[2]);
    WorstError& w = worst_errors()["grad_norm (rel. to host)"];
    w.has_f32 = true;
    w.f32_rel = worst_norm > w.f32_rel ? worst_norm : w.f32_rel;

    expect_close("adamw_update", "params", LETHE_F32, gpu.params, cpu.params);
    expect_close("adamw_update", "m", LETHE_F32, gpu.m, cpu.m);
    expect_close("adamw_update", "v", LETHE_F32, gpu.v, cpu.v);
    // The frozen tensor is untouched; every bf16 copy is a neighbour of its fp32 master weight.
    const ParamTensor& frozen = t.tensors[kFrozen];
    for (size_t j = frozen.offset; j < frozen.offset + frozen.numel; ++j)
        CHECK(gpu.params[j] == params0[j] && gpu.m[j] == 0.0f && gpu.params_bf16[j] == 0);
    size_t not_neighbour = 0;
    for (size_t j = 0; j < t.n_params; ++j) {
        if (j >= frozen.offset && j < frozen.offset + frozen.numel) continue;
        uint16_t low, high;
        bf16_neighbours(gpu.params[j], &low, &high);
        not_neighbour += gpu.params_bf16[j] != low && gpu.params_bf16[j] != high;
    }
    CHECK(not_neighbour == 0);
}

void test_grad_norm_matches_host_over_many_chunks() {
    // 300,000 elements: more 256-element chunks than slots, so slots wrap; two ranges.
    Table t;
    ParamTensor a = {}, b = {};
    a.ndim = b.ndim = 2;
    a.numel = 300000;
    b.offset = a.numel;
    b.numel = 1001;
    t.tensors = {a, b};
    t.n_params = a.numel + b.numel;
    std::vector<float> grads = random_floats(t.n_params, 31, -3.0f, 3.0f);
    for (size_t j = 0; j < grads.size(); j += 97) grads[j] *= 1e-4f;  // a spread of magnitudes
    LlamaModel model = {};
    model.n_tensors = 2;
    model.tensors = t.tensors.data();
    model.n_params = t.n_params;
    uint8_t trainable[2] = {1, 1};
    Optimizer o = {};
    o.trainable = trainable;
    o.n_tensors = 2;
    const double want = grad_global_norm(&o, &model, grads.data());

    DeviceBuffer<float> d_grads(grads);
    DeviceBuffer<double> partial(CUDA_GRAD_NORM_SLOTS), norm(1);
    std::vector<uint8_t> first;
    expect_deterministic("grad_norm", [&] {
        CHECK_CUDA(cudaMemset(partial.get(), 0, CUDA_GRAD_NORM_SLOTS * sizeof(double)));
        CHECK(cuda_grad_norm_accumulate(partial.get(), d_grads.get(), a.numel, nullptr) == 0);
        CHECK(cuda_grad_norm_accumulate(partial.get(), d_grads.get() + b.offset, b.numel,
                                        nullptr) == 0);
        CHECK(cuda_grad_norm_finish(norm.get(), partial.get(), nullptr) == 0);
        std::vector<uint8_t> bytes;
        append_bytes(bytes, norm);
        return bytes;
    });
    const double got = norm.download()[0];
    const double rel = fabs(got - want) / want;
    printf("  grad norm over %zu elements: %.17g, host %.17g, relative difference %.2e\n",
           t.n_params, got, want, rel);
    CHECK(rel <= 1e-6);
    WorstError& w = worst_errors()["grad_norm (rel. to host)"];
    w.has_f32 = true;
    w.f32_rel = rel > w.f32_rel ? rel : w.f32_rel;
}

void test_adamw_is_deterministic() {
    const Table t = make_table();
    const std::vector<float> params0 = random_floats(t.n_params, 78);
    expect_deterministic("adamw + grad norm, 3 steps", [&] {
        const AdamState s = adamw_on_device(t, params0, 3, 5);
        std::vector<uint8_t> bytes;
        for (const std::vector<float>* v : {&s.params, &s.m, &s.v}) {
            const uint8_t* p = reinterpret_cast<const uint8_t*>(v->data());
            bytes.insert(bytes.end(), p, p + v->size() * 4);
        }
        const uint8_t* p = reinterpret_cast<const uint8_t*>(s.params_bf16.data());
        bytes.insert(bytes.end(), p, p + s.params_bf16.size() * 2);
        p = reinterpret_cast<const uint8_t*>(s.norms.data());
        bytes.insert(bytes.end(), p, p + s.norms.size() * 8);
        return bytes;
    });
}

// With lr = 0 the update leaves every weight at x, and the bf16 copy is x rounded stochastically,
// independently per element: over n elements the copies must all be one of x's two neighbours,
// and the fraction rounded up must be the fraction of the gap x covers (5 sigma).
void test_stochastic_rounding_is_unbiased() {
    const size_t n = 65536;
    DeviceBuffer<float> params(n), m(n), v(n), grads(n);
    DeviceBuffer<uint16_t> params_bf16(n);
    const uint32_t subnormal_bits = 0x000c4321u;  // 1.1e-39: below float's smallest normal
    float subnormal;
    memcpy(&subnormal, &subnormal_bits, 4);
    const float values[] = {1.0f + 0x1p-9f + 0x1p-12f, -0.3337f, 1e-3f, 12345.678f, subnormal,
                            0.75f /* exact in bf16 */};
    std::vector<uint16_t> previous;
    for (const float x : values) {
        params.upload(std::vector<float>(n, x));
        grads.upload(std::vector<float>(n, 0.0f));
        m.upload(std::vector<float>(n, 0.0f));
        v.upload(std::vector<float>(n, 0.0f));
        CHECK(cuda_adamw_update(params.get(), m.get(), v.get(), params_bf16.get(), grads.get(), n,
                                0.0, kBeta1, kBeta2, kEps, kWeightDecay, 1, nullptr, 0.0, 42,
                                nullptr) == 0);
        CHECK(params.download() == std::vector<float>(n, x));
        const std::vector<uint16_t> got = params_bf16.download();
        uint16_t low, high;
        bf16_neighbours(x, &low, &high);
        size_t ups = 0, others = 0;
        double mean = 0.0;
        for (const uint16_t b : got) {
            ups += b == high && high != low;
            others += b != low && b != high;
            mean += bf16_bits_to_float(b);
        }
        mean /= (double)n;
        uint32_t bits;
        memcpy(&bits, &x, 4);
        const double q = (double)(bits & 0xffffu) / 65536.0;  // probability of rounding up
        const double sigma = sqrt(q * (1.0 - q) / (double)n);
        const double gap = fabs((double)bf16_bits_to_float(high) - bf16_bits_to_float(low));
        printf("  x = %-14.8g rounded up %.5f of %zu (expected %.5f), mean - x = %.3g gap\n", x,
               (double)ups / n, n, q, gap > 0 ? (mean - x) / gap : 0.0);
        CHECK(others == 0);
        CHECK(fabs((double)ups / n - q) <= 5.0 * sigma + 1e-12);
        CHECK(fabs(mean - x) <= (5.0 * sigma + 1e-12) * gap);
        if (!previous.empty()) CHECK(got != previous);  // a new value draws afresh
        previous = got;
    }
    // The same seed and step give the same bits; another seed or step gives other ones.
    const float x = values[0];
    params.upload(std::vector<float>(n, x));
    std::vector<std::vector<uint16_t>> draws;
    for (const auto& [seed, step] : {std::pair<uint64_t, int64_t>{42, 1}, {42, 1}, {43, 1},
                                     {42, 2}}) {
        CHECK(cuda_adamw_update(params.get(), m.get(), v.get(), params_bf16.get(), grads.get(), n,
                                0.0, kBeta1, kBeta2, kEps, 0.0, step, nullptr, 0.0, seed,
                                nullptr) == 0);
        draws.push_back(params_bf16.download());
    }
    CHECK(draws[0] == draws[1]);
    CHECK(draws[0] != draws[2]);
    CHECK(draws[0] != draws[3]);
}

// A resumed run has only the float32 weights: cuda_bf16_round_stochastic(seed, step) must give
// back exactly the bf16 copy the update of that (seed, step) wrote, on a multi-block range.
void test_rerounding_reproduces_the_update_copy() {
    const Table t = make_table();
    const std::vector<float> params0 = random_floats(t.n_params, 91);
    const AdamState s = adamw_on_device(t, params0, 2, 7);
    DeviceBuffer<float> params(s.params);
    DeviceBuffer<uint16_t> again(t.n_params);
    CHECK_CUDA(cudaMemset(again.get(), 0, t.n_params * sizeof(uint16_t)));
    for (size_t i = 0; i < t.tensors.size(); ++i) {
        if ((int)i == kFrozen) continue;
        const size_t off = t.tensors[i].offset;
        CHECK(cuda_bf16_round_stochastic(again.get() + off, params.get() + off,
                                         t.tensors[i].numel, 7 * 1000 + i, 2, nullptr) == 0);
    }
    const std::vector<uint16_t> got = again.download();
    size_t differ = 0, compared = 0;
    for (size_t i = 0; i < t.tensors.size(); ++i) {
        if ((int)i == kFrozen) continue;
        for (size_t j = 0; j < t.tensors[i].numel; ++j, ++compared)
            differ += got[t.tensors[i].offset + j] != s.params_bf16[t.tensors[i].offset + j];
    }
    printf("  re-rounded %zu weights: %zu differ from the update's copy\n", compared, differ);
    CHECK(compared > 0 && differ == 0);
    // Another step's stream gives other bits (the test would pass vacuously otherwise).
    const size_t off = t.tensors[0].offset;
    CHECK(cuda_bf16_round_stochastic(again.get() + off, params.get() + off, t.tensors[0].numel,
                                     7 * 1000, 3, nullptr) == 0);
    const std::vector<uint16_t> other = again.download();
    size_t changed = 0;
    for (size_t j = 0; j < t.tensors[0].numel; ++j)
        changed += other[off + j] != s.params_bf16[off + j];
    CHECK(changed > 0);
}

}  // namespace

int main() {
    skip_without_device();
    run_test("adamw_matches_host_optimizer", test_adamw_matches_host_optimizer);
    run_test("grad_norm_matches_host_over_many_chunks",
             test_grad_norm_matches_host_over_many_chunks);
    run_test("adamw_is_deterministic", test_adamw_is_deterministic);
    run_test("stochastic_rounding_is_unbiased", test_stochastic_rounding_is_unbiased);
    run_test("rerounding_reproduces_the_update_copy", test_rerounding_reproduces_the_update_copy);
    print_worst_errors();
    return test_exit_code();
}
