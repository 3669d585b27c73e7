// The "cuda" backend's failures under the CPU execution harness: no device, out of device memory
// (weights, activations, a failing cudaMalloc), misuse. The harness always has one 80 GiB device,
// so this binary is linked with -Wl,--wrap for cudaGetDeviceCount, cudaMemGetInfo and cudaMalloc:
// llama_cuda.c's calls reach the fakes below, which defer to the harness unless told otherwise.
extern "C" {
#include "llama.h"
#include "llama_cuda.h"
}

#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

namespace {

int g_fake_devices = -1;                 // >= 0: the count to report; -2: cudaErrorNoDevice
size_t g_fake_free = SIZE_MAX;           // < SIZE_MAX: the free bytes to report
size_t g_fail_malloc_above = SIZE_MAX;   // cudaMalloc of more bytes fails as out of memory
int g_failures = 0;

#define EXPECT(cond, ...)                                              \
    do {                                                               \
        if (!(cond)) {                                                 \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                              \
            fprintf(stderr, "\n");                                     \
            ++g_failures;                                              \
        }                                                              \
    } while (0)

}  // namespace

extern "C" {
cudaError_t __real_cudaGetDeviceCount(int* count);
cudaError_t __real_cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t __real_cudaMalloc(void** p, size_t bytes);

cudaError_t __wrap_cudaGetDeviceCount(int* count) {
    if (g_fake_devices == -2) return cudaErrorNoDevice;
    if (g_fake_devices >= 0) {
        *count = g_fake_devices;
        return cudaSuccess;
    }
    return __real_cudaGetDeviceCount(count);
}

cudaError_t __wrap_cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    const cudaError_t rc = __real_cudaMemGetInfo(free_bytes, total_bytes);
    if (rc == cudaSuccess && g_fake_free != SIZE_MAX) *free_bytes = g_fake_free;
    return rc;
}

cudaError_t __wrap_cudaMalloc(void** p, size_t bytes) {
    if (bytes > g_fail_malloc_above) return cudaErrorMemoryAllocation;
    return __real_cudaMalloc(p, bytes);
}
}

namespace {

bool small_model(LlamaModel* m) {
    ModelConfig c{};
    c.vocab_size = 97;
    c.hidden_size = 48;
    c.intermediate_size = 96;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 6;
    c.num_key_value_heads = 2;
    c.head_dim = 8;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.max_position_embeddings = 64;
    c.tie_word_embeddings = 1;
    c.attention_bias = 0;
    Err e{};
    if (llama_create(m, &c, &e)) {
        EXPECT(false, "llama_create: %s", e.msg);
        return false;
    }
    llama_init_random(m, 5, 0.05f);
    return true;
}

bool contains_all(const char* msg, const std::vector<const char*>& parts) {
    for (const char* p : parts)
        if (!strstr(msg, p)) return false;
    return true;
}

// Creating fails, leaves *out NULL, and says why; returns the message.
std::string expect_create_fails(const LlamaModel* m, LetheDtype dtype,
                                const std::vector<const char*>& parts) {
    LlamaCuda* d = reinterpret_cast<LlamaCuda*>(&g_failures);  // any non-NULL value
    Err e{};
    EXPECT(llama_cuda_create(&d, m, dtype, &e) == -1, "created");
    EXPECT(d == nullptr, "*out not reset to NULL");
    EXPECT(contains_all(e.msg, parts), "unexpected message: %s", e.msg);
    printf("  -> %s\n", e.msg);
    return e.msg;
}

void test_no_device(const LlamaModel* m) {
    printf("no device (cudaGetDeviceCount reports 0):\n");
    g_fake_devices = 0;
    expect_create_fails(m, LETHE_F32, {"no CUDA device", "found none", "--device cpu"});
    printf("no device (cudaGetDeviceCount fails, as without a driver):\n");
    g_fake_devices = -2;
    expect_create_fails(m, LETHE_BF16, {"no CUDA device", "cudaErrorNoDevice", "--device cpu"});
    g_fake_devices = -1;
}

void test_weights_do_not_fit(const LlamaModel* m) {
    printf("weights larger than the free memory:\n");
    g_fake_free = 4096;
    char need[64];
    snprintf(need, sizeof need, "need 0 MiB (%zu bytes)", m->n_params * 10);
    expect_create_fails(m, LETHE_BF16,
                        {"out of device memory", "weights (bfloat16 and a float32 master copy)",
                         need, "0 MiB free of 81920 MiB", "lethe CPU harness", "smaller model"});
    g_fake_free = SIZE_MAX;
    printf("cudaMalloc of the weights fails:\n");
    g_fail_malloc_above = m->n_params * sizeof(float) - 1;
    snprintf(need, sizeof need, "cudaMalloc of 0 MiB (%zu bytes) for", m->n_params * 4);
    expect_create_fails(m, LETHE_F32,
                        {"out of device memory", need, "weights (float32)", "failed with"});
    g_fail_malloc_above = SIZE_MAX;
}

Batch batch_of(const std::vector<int32_t>& tokens, const std::vector<int64_t>& offsets) {
    return Batch{(int)offsets.size() - 1, tokens.size(), tokens.data(), offsets.data(), nullptr};
}

void test_activations_do_not_fit_and_misuse(const LlamaModel* m) {
    LlamaCuda* d = nullptr;
    Err e{};
    if (llama_cuda_create(&d, m, LETHE_F32, &e)) {
        EXPECT(false, "llama_cuda_create: %s", e.msg);
        return;
    }
    const std::vector<float> w(64, 0.1f);
    printf("backward before any forward:\n");
    EXPECT(llama_cuda_backward(d, w.data(), &e) == -1 && strstr(e.msg, "no forward"), "%s",
           e.msg);
    printf("  -> %s\n", e.msg);

    std::vector<int32_t> tokens(40);
    for (size_t i = 0; i < tokens.size(); i++) tokens[i] = (int32_t)(i * 7 % 97);
    const std::vector<int64_t> offsets = {0, 25, 40};
    const Batch b = batch_of(tokens, offsets);
    const size_t need = llama_cuda_activation_bytes(&m->cfg, 40, 2, LETHE_F32);
    printf("activations larger than the free memory (%zu bytes needed):\n", need);
    g_fake_free = need - 1;
    double sums[2];
    EXPECT(llama_cuda_forward(d, &b, sums, nullptr, &e) == -1, "forward ran");
    EXPECT(contains_all(e.msg, {"out of device memory", "activations of a batch of 40 tokens in 2",
                                "smaller batches or shorter sequences"}),
           "unexpected message: %s", e.msg);
    printf("  -> %s\n", e.msg);
    EXPECT(llama_cuda_backward(d, w.data(), &e) == -1, "backward after a failed forward");
    printf("the same batch when it fits exactly (no growth headroom):\n");
    g_fake_free = need;
    EXPECT(llama_cuda_forward(d, &b, sums, nullptr, &e) == 0, "%s", e.msg);
    g_fake_free = SIZE_MAX;
    EXPECT(llama_cuda_backward(d, w.data(), &e) == 0, "%s", e.msg);

    printf("a token out of the vocabulary:\n");
    tokens[30] = 97;
    const Batch bad = batch_of(tokens, offsets);
    EXPECT(llama_cuda_forward(d, &bad, sums, nullptr, &e) == -1 &&
               strstr(e.msg, "token 30 of the batch has id 97"),
           "%s", e.msg);
    printf("  -> %s\n", e.msg);
    EXPECT(llama_cuda_backward(d, w.data(), &e) == -1, "backward after a failed forward");
    llama_cuda_free(d);
}

}  // namespace

int main() {
    LlamaModel m;
    if (!small_model(&m)) return 1;
    test_no_device(&m);
    test_weights_do_not_fit(&m);
    test_activations_do_not_fit_and_misuse(&m);
    llama_free(&m);
    printf("%d failure(s)\n", g_failures);
    return g_failures == 0 ? 0 : 1;
}
