// Tests of the int8 decoding of Q8_0 imports (host/llama_q8, kernels/cpu/runq.c): int8 values and
// scales recovered from dequantised floats are the quantiser's own, for random groups, for a
// model whose q/k rows were permuted after quantisation, and for stories260K_q8.bin's bytes;
// anything else is refused; batched int8 generation equals one request at a time.
// Usage: test_llama_q8 MODELS_DIR
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "llama.h"
#include "llama2c.h"
#include "llama_q8.h"
#include "runq.h"
#include "rng.h"
#include "tokenizer.h"

#include "check.h"

static char g_models[4096];

// Random values for group g: all +0, +0 and -0 mixed, one nonzero value, a negative maximum,
// or normal values of a random magnitude between 2^-30 and 2^10.
static void fill_group(float *x, int gs, size_t g, Rng *rng) {
    const float mag = ldexpf(1.0f, (int)(rng_uniform(rng) * 40.0f) - 30);
    for (int i = 0; i < gs; i++) x[i] = rng_normal(rng) * mag;
    switch (g % 6) {
    case 0:
        memset(x, 0, (size_t)gs * sizeof *x);
        break;
    case 1:
        for (int i = 0; i < gs; i++) x[i] = i % 2 ? -0.0f : 0.0f;
        break;
    case 2:
        for (int i = 0; i < gs; i++) x[i] = i == (int)(g / 6) % gs ? -x[i] * x[i] - mag : 0.0f;
        break;
    case 3: { // the largest magnitude is a negative value
        int at = 0;
        for (int i = 1; i < gs; i++)
            if (fabsf(x[i]) > fabsf(x[at])) at = i;
        x[at] = -fabsf(x[at]);
        break;
    }
    default:
        break;
    }
}

static int test_recover_inverts_runq_quantisation_of_random_groups(void) {
    static const int sizes[] = {2, 4, 8, 32, 64};
    Rng rng;
    rng_seed(&rng, 20240531);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const int gs = sizes[k];
        const size_t groups = 6000, n = groups * (size_t)gs;
        float *x = malloc(n * sizeof *x), *w = malloc(n * sizeof *w);
        float *s = malloc(groups * sizeof *s), *s2 = malloc(groups * sizeof *s2);
        int8_t *q = malloc(n), *q2 = malloc(n);
        REQUIRE(x && w && s && s2 && q && q2, "out of memory");
        for (size_t g = 0; g < groups; g++) fill_group(x + g * gs, gs, g, &rng);
        runq_quantize(q, s, x, n, gs);
        size_t negative_max = 0, zero = 0;
        for (size_t g = 0; g < groups; g++) {
            int at = 0;
            for (int i = 1; i < gs; i++)
                if (abs(q[g * gs + i]) > abs(q[g * gs + at])) at = i;
            negative_max += q[g * gs + at] == -127;
            zero += s[g] == 0.0f;
        }
        for (size_t i = 0; i < n; i++) w[i] = (float)q[i] * s[i / gs]; // what the importer stores
        int tries = -1;
        const int64_t bad = runq_recover_int8(q2, s2, w, n, gs, &tries);
        CHECK(bad == -1, "gs %d: group %lld not recovered", gs, (long long)bad);
        CHECK(!memcmp(q, q2, n), "gs %d: recovered int8 values differ", gs);
        CHECK(!memcmp(s, s2, groups * sizeof *s), "gs %d: recovered scales differ", gs);
        CHECK(tries == 1, "gs %d: some group needed %d candidate scales", gs, tries);
        CHECK(negative_max >= groups / 6 && zero == 2 * ((groups + 5) / 6),
              "gs %d: %zu groups with a negative maximum, %zu all-zero", gs, negative_max, zero);
        // One ulp off in one value of a nonzero group: no scale reproduces that group.
        const size_t g_bad = 6 * 100 + 4, i_bad = g_bad * gs + 1;
        w[i_bad] = nextafterf(w[i_bad], INFINITY);
        CHECK(runq_recover_int8(q2, s2, w, n, gs, NULL) == (int64_t)g_bad,
              "gs %d: a nudged value went unnoticed", gs);
        printf("gs %2d: %zu groups (%zu all-zero, %zu with a negative maximum) recovered "
               "exactly, 1 candidate scale each\n", gs, groups, zero, negative_max);
        free(x);
        free(w);
        free(s);
        free(s2);
        free(q);
        free(q2);
    }
    return g_fail;
}

// Scales that are not max|w0| / 127 of some float w0 (any float, as another exporter might
// write) sometimes need a neighbour of max|w| / 127; every group is still reproduced exactly.
static int test_recover_searches_neighbouring_scales(void) {
    const int gs = 4;
    const size_t groups = 100000, n = groups * gs;
    float *w = malloc(n * sizeof *w), *s2 = malloc(groups * sizeof *s2);
    int8_t *q2 = malloc(n);
    REQUIRE(w && s2 && q2, "out of memory");
    Rng rng;
    rng_seed(&rng, 99);
    for (size_t g = 0; g < groups; g++) {
        const float s = ldexpf(1.0f + rng_uniform(&rng), -12);
        for (int i = 0; i < gs; i++) {
            const int qi = i == 0 ? 127 : (int)(rng_uniform(&rng) * 255.0f) - 127;
            w[g * gs + i] = (float)(rng_next(&rng) & 1 ? qi : -qi) * s;
        }
    }
    size_t nearest = 0;
    int most = 0;
    for (size_t g = 0; g < groups; g++) {
        int tries = 0;
        REQUIRE(runq_recover_int8(q2 + g * gs, s2 + g, w + g * gs, gs, gs, &tries) == -1,
                "group %zu not recovered", g);
        nearest += tries == 1;
        if (tries > most) most = tries;
        for (int i = 0; i < gs; i++) {
            const float back = (float)q2[g * gs + i] * s2[g];
            CHECK(!memcmp(&back, &w[g * gs + i], sizeof back), "group %zu value %d", g, i);
        }
    }
    printf("%zu of %zu groups of arbitrary scales took max|w| / 127, the rest a neighbour (at "
           "most %d candidates)\n", nearest, groups, most);
    CHECK(nearest < groups && nearest > groups * 9 / 10,
          "expected about 1%% of the groups to need a neighbouring scale");
    free(w);
    free(s2);
    free(q2);
    return g_fail;
}

// int8 rows of one head-major matrix permuted like the importer's q/k (HF row j*hd/2 + i holds
// interleaved row 2i + j), through rope_permute_interleaved_to_half on a float copy.
static void permute_int8_rows(int8_t *q, int n_heads, int hd, int64_t cols) {
    const size_t n = (size_t)n_heads * hd * (size_t)cols;
    float *f = malloc(n * sizeof *f);
    if (!f) abort();
    for (size_t i = 0; i < n; i++) f[i] = q[i];
    rope_permute_interleaved_to_half(f, n_heads, hd, cols);
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)f[i];
    free(f);
}

static int test_build_finds_group_size_through_the_rope_permutation(void) {
    const int gs = 8;
    ModelConfig cfg = {.vocab_size = 64, .hidden_size = 32, .intermediate_size = 48,
                       .num_hidden_layers = 2, .num_attention_heads = 4,
                       .num_key_value_heads = 2, .head_dim = 8, .rms_norm_eps = 1e-5f,
                       .rope_theta = 10000.0f, .max_position_embeddings = 32,
                       .tie_word_embeddings = 0, .bos_token_id = 1, .eos_token_id = 2};
    LlamaModel m;
    Err e = {{0}};
    REQUIRE(llama_create(&m, &cfg, &e) == 0, "%s", e.msg);
    llama_init_random(&m, 5, 0.05f);
    // As llama2.c's export and our importer: quantise each matrix in interleaved-RoPE row order,
    // dequantise, then permute q/k rows (values and scales alike) to rotate-half.
    int8_t *q = calloc(m.n_params, 1);
    float *s = calloc(m.n_params / gs, sizeof *s);
    REQUIRE(q && s, "out of memory");
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *t = &m.tensors[i];
        if (t->ndim != 2) continue;
        float *w = m.params + t->offset;
        runq_quantize(q + t->offset, s + t->offset / gs, w, t->numel, gs);
        for (size_t j = 0; j < t->numel; j++)
            w[j] = (float)q[t->offset + j] * s[(t->offset + j) / gs];
        const int is_q = strstr(t->name, "q_proj") != NULL;
        const int is_k = strstr(t->name, "k_proj") != NULL;
        if (!is_q && !is_k) continue;
        const int heads = is_q ? cfg.num_attention_heads : cfg.num_key_value_heads;
        rope_permute_interleaved_to_half(w, heads, cfg.head_dim, t->shape[1]);
        permute_int8_rows(q + t->offset, heads, cfg.head_dim, t->shape[1]);
        rope_permute_interleaved_to_half(s + t->offset / gs, heads, cfg.head_dim,
                                         t->shape[1] / gs);
    }
    LlamaQ8 q8;
    REQUIRE(llama_q8_build(&q8, &m, &e) == 0, "%s", e.msg);
    CHECK(q8.gs == gs, "group size %d found, %d used", q8.gs, gs);
    CHECK(q8.max_tries == 1, "%d candidate scales needed", q8.max_tries);
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor *t = &m.tensors[i];
        if (t->ndim != 2) continue;
        CHECK(!memcmp(q8.q + t->offset, q + t->offset, t->numel), "%s: int8 values", t->name);
        CHECK(!memcmp(q8.s + t->offset / gs, s + t->offset / gs, t->numel / gs * sizeof *s),
              "%s: scales", t->name);
    }
    llama_q8_free(&q8);

    // One value nudged by an ulp: not an unmodified import, and the message says where.
    const ParamTensor *up = llama_find_tensor(&m, "model.layers.1.mlp.up_proj.weight");
    REQUIRE(up, "no up_proj");
    float *v = m.params + up->offset + 3 * gs + 2;
    *v = nextafterf(*v, INFINITY);
    CHECK(llama_q8_build(&q8, &m, &e) != 0, "a nudged weight was accepted");
    CHECK(strstr(e.msg, "with 8, ") && strstr(e.msg, "model.layers.1.mlp.up_proj.weight group "
                                                     "3 (elements 24..31)") &&
              strstr(e.msg, "not an unmodified llama2.c Q8_0 import"),
          "message: %s", e.msg);
    // Plain fp32 weights fit no group size.
    llama_init_random(&m, 6, 0.05f);
    CHECK(llama_q8_build(&q8, &m, &e) != 0 &&
              strstr(e.msg, "the first group of model.embed_tokens.weight fits none"),
          "random fp32 weights: %s", e.msg);
    printf("recovery through the q/k permutation: group size %d found; refusals: %s\n", gs,
           e.msg);
    free(q);
    free(s);
    llama_free(&m);
    return g_fail;
}

// A tensor's int8 values and scales as stories260K_q8.bin stores them, at byte offset at.
static int read_q8_bytes(FILE *f, long at, int8_t *q, float *s, size_t n, int gs) {
    return fseek(f, at, SEEK_SET) != 0 || fread(q, 1, n, f) != n ||
           fread(s, sizeof *s, n / gs, f) != n / gs;
}

static int load_q8_model(LlamaModel *m, const char *path) {
    ImportedModel im = {0};
    Err e = {{0}};
    int rc = llama2c_read(path, &im, &e) || llama_create(m, &im.cfg, &e);
    for (int i = 0; !rc && i < im.n_tensors; i++) {
        const ParamTensor *t = llama_find_tensor(m, im.tensors[i].name);
        if (!t) rc = err_set(&e, "%s: no tensor %s in the table", path, im.tensors[i].name);
        else memcpy(m->params + t->offset, im.tensors[i].data, t->numel * sizeof(float));
    }
    imported_model_free(&im);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    return rc ? -1 : 0;
}

static int test_stories260k_q8_recovers_the_file_and_batches_like_single_requests(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/stories260K/stories260K_q8.bin", g_models);
    LlamaModel m;
    REQUIRE(load_q8_model(&m, path) == 0, "cannot load %s", path);
    LlamaQ8 q8;
    Err e = {{0}};
    REQUIRE(llama_q8_build(&q8, &m, &e) == 0, "%s", e.msg);
    CHECK(q8.gs == 4 && q8.max_tries == 1, "group size %d, %d candidate scales", q8.gs,
          q8.max_tries);
    // The file's bytes: the embedding (first after the header and the fp32 norms), then layer
    // 0's q_proj, whose rows the importer permuted.
    const ModelConfig *c = &m.cfg;
    const int D = c->hidden_size, V = c->vocab_size, H = c->num_attention_heads;
    const int hd = c->head_dim, gs = 4;
    const size_t nv = (size_t)V * D, nq = (size_t)D * D;
    int8_t *fq = malloc(nv);
    float *fs = malloc(nv / gs * sizeof *fs);
    FILE *f = fopen(path, "rb");
    REQUIRE(fq && fs && f, "cannot read %s", path);
    const long embed_at = 256 + (long)(2 * c->num_hidden_layers + 1) * D * 4;
    REQUIRE(read_q8_bytes(f, embed_at, fq, fs, nv, gs) == 0, "short read");
    CHECK(!memcmp(q8.q + m.embed, fq, nv), "embedding int8 values differ from the file's");
    CHECK(!memcmp(q8.s + m.embed / gs, fs, nv / gs * sizeof *fs), "embedding scales differ");
    REQUIRE(read_q8_bytes(f, embed_at + (long)(nv + nv / gs * 4), fq, fs, nq, gs) == 0,
            "short read");
    fclose(f);
    permute_int8_rows(fq, H, hd, D);
    rope_permute_interleaved_to_half(fs, H, hd, D / gs);
    CHECK(!memcmp(q8.q + m.layers[0].wq, fq, nq), "q_proj int8 values differ from the file's");
    CHECK(!memcmp(q8.s + m.layers[0].wq / gs, fs, nq / gs * sizeof *fs), "q_proj scales differ");
    free(fq);
    free(fs);

    // Greedy int8 generation of several prompts: max_batch 1, 3 and 6 give the same tokens.
    Tokenizer tok = {0};
    snprintf(path, sizeof path, "%s/stories260K/tok512.bin", g_models);
    REQUIRE(tokenizer_read_llama2c(&tok, path, V, &e) == 0, "%s", e.msg);
    static const char *const prompts[] = {"Once upon a time", "", "Lily and Ben",
                                          "The cat sat on the mat.", "Sam", "Mom said"};
    enum { N = sizeof prompts / sizeof prompts[0], MAX_NEW = 48 };
    int32_t ids[N][64], out[3][N][MAX_NEW];
    GenerateRequest reqs[3][N];
    for (int i = 0; i < N; i++) {
        int n_ids = 0;
        REQUIRE(tokenizer_encode(&tok, prompts[i], 1, 1, ids[i], &n_ids, &e) == 0, "%s", e.msg);
        for (int b = 0; b < 3; b++)
            reqs[b][i] = (GenerateRequest){ids[i], n_ids, out[b][i], 0, GEN_RUNNING};
    }
    GenerateOptions o = {.max_new_tokens = MAX_NEW, .temperature = 0.0f, .top_p = 1.0f,
                         .stop_token_a = c->eos_token_id, .stop_token_b = c->bos_token_id,
                         .q8 = &q8};
    static const int batches[3] = {1, 3, 6};
    for (int b = 0; b < 3; b++)
        REQUIRE(generate_batch(&m, reqs[b], N, batches[b], &o, NULL, NULL, NULL, &e) == 0, "%s",
                e.msg);
    for (int b = 1; b < 3; b++)
        for (int i = 0; i < N; i++)
            CHECK(reqs[b][i].n_out == reqs[0][i].n_out &&
                      !memcmp(out[b][i], out[0][i], (size_t)reqs[0][i].n_out * sizeof(int32_t)),
                  "prompt %d: max_batch %d differs from one at a time", i, batches[b]);
    CHECK(generate_nocache(&m, &reqs[0][0], 0, &o, NULL, NULL, &e) != 0,
          "generate_nocache accepted int8 decoding");
    printf("stories260K_q8: group size 4, embedding and q_proj equal the file's bytes; %d prompts "
           "decode alike at max_batch 1, 3, 6\n", N);
    tokenizer_free(&tok);
    llama_q8_free(&q8);
    llama_free(&m);
    return g_fail;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODELS_DIR\n", argv[0]);
        return 2;
    }
    snprintf(g_models, sizeof g_models, "%s", argv[1]);
    int rc = test_recover_inverts_runq_quantisation_of_random_groups();
    rc |= test_recover_searches_neighbouring_scales();
    rc |= test_build_finds_group_size_through_the_rope_permutation();
    rc |= test_stories260k_q8_recovers_the_file_and_batches_like_single_requests();
    printf("%s\n", rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
