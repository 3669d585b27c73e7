// Tests of the hidden-state loss mechanism of the CPU backend (llama_forward_hidden,
// llama_backward_hidden; RMU): the rows are the residual stream after the chosen block at the
// target tokens, the gradient of sum_j w_j * rows_mse(h_j, y) matches central differences, and a
// backward that stops at a block gives exactly the full backward's gradients above it.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "rng.h"

#include "check.h"

// ---- model and batch ----------------------------------------------------------------------

// A small GQA config with attention biases and an untied head, n_layers blocks; norms and biases
// moved off their init values (ones, zeros) so that their gradients are not at a symmetric point.
static int make_model(LlamaModel *m, int n_layers) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 53;
    c.hidden_size = 24;
    c.intermediate_size = 40;
    c.num_hidden_layers = n_layers;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 6;
    c.rms_norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.max_position_embeddings = 32;
    c.tie_word_embeddings = 0;
    c.attention_bias = 1;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    Err e = {{0}};
    if (llama_create(m, &c, &e)) {
        fprintf(stderr, "llama_create: %s\n", e.msg);
        return 1;
    }
    llama_init_random(m, 4321, 0.2f);
    Rng rng;
    rng_seed(&rng, 77);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (t->ndim != 1) continue;
        for (size_t j = 0; j < t->numel; j++)
            m->params[t->offset + j] += 0.3f * (2.0f * rng_uniform(&rng) - 1.0f);
    }
    return 0;
}

enum { N_SAMPLES = 3, N_TOKENS = 9 + 12 + 7 };
static const int64_t k_offsets[N_SAMPLES + 1] = {0, 9, 21, 28};

typedef struct {
    int32_t tokens[N_TOKENS];
    uint8_t mask[N_TOKENS];
    Batch b;
} TestBatch;

// Sample 0 is all targets, sample 1's first half an unscored prompt, sample 2 skips every third
// token; no sample's last token is a target (test_rows_are_the_residual_stream shifts the mask).
static void make_batch(TestBatch *tb, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int s = 0; s < N_SAMPLES; s++) {
        const int64_t lo = k_offsets[s], hi = k_offsets[s + 1];
        for (int64_t t = lo; t < hi; t++) {
            tb->tokens[t] = (int32_t)(rng_next(&rng) % 53);
            const int64_t i = t - lo;
            int scored = s == 0 ? 1 : s == 1 ? i >= (hi - lo) / 2 : i % 3 != 1;
            if (t == lo || t == hi - 1) scored = 0; // the first token is never a target anyway
            tb->mask[t] = (uint8_t)scored;
        }
    }
    tb->b = (Batch){N_SAMPLES, N_TOKENS, tb->tokens, k_offsets, tb->mask};
}

// ---- (a) the rows ---------------------------------------------------------------------------

// For every layer k: a model of blocks 0..k of m (same embedding, final norm and head) run with
// llama_forward_rows on the batch whose mask is shifted one position right gives, as its target
// rows, the final norm of exactly the residual streams after block k at the original targets'
// own positions. So RMSNorm(llama_forward_hidden(m, k) rows) must equal those bit for bit.
static int test_rows_are_the_residual_stream(void) {
    LlamaModel m;
    REQUIRE(make_model(&m, 4) == 0, "model");
    const ModelConfig *c = &m.cfg;
    const int L = c->num_hidden_layers, D = c->hidden_size;
    TestBatch tb, shifted;
    make_batch(&tb, 11);
    shifted = tb;
    for (int s = 0; s < N_SAMPLES; s++) {
        shifted.mask[k_offsets[s]] = 0;
        for (int64_t t = k_offsets[s] + 1; t < k_offsets[s + 1]; t++)
            shifted.mask[t] = tb.mask[t - 1];
    }
    shifted.b.tokens = shifted.tokens;
    shifted.b.loss_mask = shifted.mask;
    LlamaActs *a = llama_acts_new(), *ar = llama_acts_new(), *af = llama_acts_new();
    Err e = {{0}};
    // The target list is llama_forward's.
    REQUIRE(llama_forward(&m, af, &tb.b, NULL, NULL, &e) == 0, "%s", e.msg);
    const size_t M = llama_n_targets(af);
    REQUIRE(M > 10, "%zu targets", M);
    float *normed = malloc(M * (size_t)D * sizeof(float)), *rstd = malloc(M * sizeof(float));
    for (int k = 0; k < L; k++) {
        REQUIRE(llama_forward_hidden(&m, a, &tb.b, k, &e) == 0, "layer %d: %s", k, e.msg);
        CHECK(llama_n_targets(a) == M, "layer %d: %zu targets, llama_forward has %zu", k,
              llama_n_targets(a), M);
        CHECK(memcmp(llama_target_sample(a), llama_target_sample(af), M * sizeof(int32_t)) == 0,
              "layer %d: target samples differ from llama_forward's", k);
        LlamaModel mk;
        ModelConfig ck = *c;
        ck.num_hidden_layers = k + 1;
        REQUIRE(llama_create(&mk, &ck, &e) == 0, "%s", e.msg);
        for (int i = 0; i < mk.n_tensors; i++) {
            const ParamTensor *t = &mk.tensors[i];
            const ParamTensor *src = llama_find_tensor(&m, t->name);
            REQUIRE(src && src->numel == t->numel, "%s", t->name);
            memcpy(mk.params + t->offset, m.params + src->offset, t->numel * sizeof(float));
        }
        REQUIRE(llama_forward_rows(&mk, ar, &shifted.b, &e) == 0, "%s", e.msg);
        REQUIRE(llama_n_targets(ar) == M, "shifted batch: %zu targets", llama_n_targets(ar));
        rmsnorm_forward(normed, rstd, llama_hidden_rows(a), m.params + m.norm, M, D,
                        c->rms_norm_eps);
        CHECK(memcmp(normed, llama_target_rows(ar), M * (size_t)D * sizeof(float)) == 0,
              "layer %d: the hidden rows are not the residual stream after block %d at the "
              "target tokens", k, k);
        llama_free(&mk);
    }
    printf("rows: llama_forward_hidden at each of %d layers = the residual stream after that "
           "block at the %zu target tokens (bit for bit)\n", L, M);
    // Out-of-range layers.
    for (int bad = -1; bad <= L; bad += L + 1) {
        CHECK(llama_forward_hidden(&m, a, &tb.b, bad, &e) == -1, "layer %d accepted", bad);
        CHECK(strstr(e.msg, "layer") != NULL, "unclear message: %s", e.msg);
    }
    printf("rows: layer -1 and %d refused: %s\n", L, e.msg);
    free(normed);
    free(rstd);
    llama_acts_free(a);
    llama_acts_free(ar);
    llama_acts_free(af);
    llama_free(&m);
    return 0;
}

// ---- (b) finite differences -----------------------------------------------------------------

typedef struct {
    const LlamaModel *m;
    LlamaActs *a;
    const Batch *b;
    int layer;
    const float *y_rows, *y_vec, *weight;
} Loss;

// sum_j weight[j] * mse(h_j, y_j), in double from the float rows: rows_mse_forward's mean rounded
// to float would add noise of 1e-7 relative to the loss to every difference.
static double loss_at(const Loss *l) {
    Err e = {{0}};
    if (llama_forward_hidden(l->m, l->a, l->b, l->layer, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(1);
    }
    const int D = l->m->cfg.hidden_size;
    const size_t M = llama_n_targets(l->a);
    const float *h = llama_hidden_rows(l->a);
    double loss = 0.0;
    for (size_t j = 0; j < M; j++) {
        const float *y = l->y_rows ? l->y_rows + j * (size_t)D : l->y_vec;
        double s = 0.0;
        for (int d = 0; d < D; d++) {
            const double diff = (double)h[j * (size_t)D + d] - y[d];
            s += diff * diff;
        }
        loss += l->weight[j] * s / D;
    }
    return loss;
}

// The gradient of the loss by llama_backward_hidden from lowest_layer, into grads (zeroed here).
static void analytic_grads(const Loss *l, int lowest_layer, float *grads) {
    loss_at(l);
    const int D = l->m->cfg.hidden_size;
    const size_t M = llama_n_targets(l->a);
    float *dh = malloc(M * (size_t)D * sizeof(float));
    rows_mse_backward(dh, llama_hidden_rows(l->a), l->y_rows, l->y_vec, l->weight, M, D);
    memset(grads, 0, l->m->n_params * sizeof(float));
    llama_backward_hidden(l->m, l->a, dh, lowest_layer, grads);
    free(dh);
}

// Central differences of the float model at a few entries of each named tensor (the largest
// analytic gradient and four pseudo-random ones), against the analytic gradient:
// |g - fd| <= 1e-2 * max(|fd|, 10% of the tensor's largest |g|). Returns the worst ratio.
// eps 1e-2: the float forward's rounding moves the loss by ~1e-5 here, 1% of the largest
// gradients' differences at eps 1e-3 and 0.1% at 1e-2, where the O(eps^2) truncation is still
// ~0.1% (measured on q_proj, the most curved); a k_proj bias's gradient nearly cancels over the
// positions and is left to the torch oracle.
static double check_fd(LlamaModel *m, const Loss *l, const float *grads, const char *const *names,
                       int n_names) {
    const float eps = 1e-2f;
    double worst = 0.0;
    for (int i = 0; i < n_names; i++) {
        const ParamTensor *t = llama_find_tensor(m, names[i]);
        if (!t) {
            CHECK(0, "no tensor %s", names[i]);
            continue;
        }
        const float *g = grads + t->offset;
        size_t arg = 0;
        double gmax = 0.0;
        for (size_t k = 0; k < t->numel; k++)
            if (fabs(g[k]) > gmax) gmax = fabs(g[k]), arg = k;
        CHECK(gmax > 0.0, "%s: the analytic gradient is all zero", names[i]);
        size_t idx[5] = {arg};
        for (int k = 1; k < 5; k++) idx[k] = (arg * 31 + (size_t)k * 7919) % t->numel;
        for (int k = 0; k < 5; k++) {
            float *p = m->params + t->offset + idx[k];
            const float old = *p;
            *p = old + eps;
            const double lp = loss_at(l);
            *p = old - eps;
            const double lm = loss_at(l);
            *p = old;
            const double fd = (lp - lm) / (2.0 * (double)eps), an = g[idx[k]];
            const double scale = fmax(fabs(fd), 0.1 * gmax);
            const double ratio = fabs(an - fd) / (1e-2 * scale);
            if (ratio > worst) worst = ratio;
            CHECK(ratio <= 1.0, "%s[%zu]: analytic %.6g, central difference %.6g", names[i],
                  idx[k], an, fd);
        }
    }
    return worst;
}

static int test_gradient_matches_central_differences(void) {
    LlamaModel m;
    REQUIRE(make_model(&m, 4) == 0, "model");
    const int D = m.cfg.hidden_size;
    TestBatch tb;
    make_batch(&tb, 12);
    LlamaActs *a = llama_acts_new();
    Err e = {{0}};
    REQUIRE(llama_forward_hidden(&m, a, &tb.b, 0, &e) == 0, "%s", e.msg);
    const size_t M = llama_n_targets(a);
    Rng rng;
    rng_seed(&rng, 5);
    // RMU's forget term: one control vector for every row (scale of a few units); its retain
    // term: a row per target (here random). Per-target weights of both signs.
    float *y_vec = malloc((size_t)D * sizeof(float)), *y_rows = malloc(M * D * sizeof(float));
    float *weight = malloc(M * sizeof(float)), *grads = malloc(m.n_params * sizeof(float));
    for (int d = 0; d < D; d++) y_vec[d] = 3.0f * rng_normal(&rng);
    for (size_t i = 0; i < M * (size_t)D; i++) y_rows[i] = rng_normal(&rng);
    for (size_t j = 0; j < M; j++) weight[j] = (j % 4 == 0 ? -1.0f : 1.0f) * (0.5f + 0.1f * j);

    // layer 1, a control vector, through the embedding.
    Loss l1 = {&m, a, &tb.b, 1, NULL, y_vec, weight};
    analytic_grads(&l1, 0, grads);
    const char *names1[] = {"model.embed_tokens.weight",
                            "model.layers.0.input_layernorm.weight",
                            "model.layers.0.self_attn.q_proj.weight",
                            "model.layers.0.self_attn.v_proj.bias",
                            "model.layers.0.self_attn.v_proj.weight",
                            "model.layers.0.mlp.up_proj.weight",
                            "model.layers.1.self_attn.o_proj.weight",
                            "model.layers.1.post_attention_layernorm.weight",
                            "model.layers.1.mlp.gate_proj.weight",
                            "model.layers.1.mlp.down_proj.weight"};
    const double w1 = check_fd(&m, &l1, grads, names1, 10);
    printf("central differences, layer 1, target vector, lowest layer 0: worst |g - fd| is %.3f "
           "of the tolerance over 10 tensors\n", w1);
    // The last block, a target row per target, stopping at block 2.
    Loss l3 = {&m, a, &tb.b, 3, y_rows, NULL, weight};
    analytic_grads(&l3, 2, grads);
    const char *names3[] = {"model.layers.2.self_attn.k_proj.weight",
                            "model.layers.2.mlp.down_proj.weight",
                            "model.layers.3.input_layernorm.weight",
                            "model.layers.3.self_attn.q_proj.bias",
                            "model.layers.3.mlp.down_proj.weight"};
    const double w3 = check_fd(&m, &l3, grads, names3, 5);
    printf("central differences, layer 3, target rows, lowest layer 2: worst |g - fd| is %.3f of "
           "the tolerance over 5 tensors\n", w3);
    free(y_vec);
    free(y_rows);
    free(weight);
    free(grads);
    llama_acts_free(a);
    llama_free(&m);
    return 0;
}

// ---- (c) stopping early ----------------------------------------------------------------------

// Layer of a tensor: its block, -1 for the embedding, L for the final norm and the head.
static int tensor_block(const LlamaModel *m, const ParamTensor *t) {
    if (strncmp(t->name, "model.layers.", 13) == 0) return atoi(t->name + 13);
    return t->offset == m->embed ? -1 : m->cfg.num_hidden_layers;
}

static int test_lowest_layer_skips_exactly_the_blocks_below(void) {
    LlamaModel m;
    REQUIRE(make_model(&m, 4) == 0, "model");
    const int D = m.cfg.hidden_size, L = m.cfg.num_hidden_layers;
    TestBatch tb;
    make_batch(&tb, 13);
    LlamaActs *a = llama_acts_new();
    Err e = {{0}};
    float *y = malloc((size_t)D * sizeof(float));
    Rng rng;
    rng_seed(&rng, 6);
    for (int d = 0; d < D; d++) y[d] = 2.0f * rng_normal(&rng);
    float *full = malloc(m.n_params * sizeof(float)), *part = malloc(m.n_params * sizeof(float));
    int cases = 0;
    for (int layer = 0; layer < L; layer++) {
        REQUIRE(llama_forward_hidden(&m, a, &tb.b, layer, &e) == 0, "%s", e.msg);
        const size_t M = llama_n_targets(a);
        float *weight = malloc(M * sizeof(float)), *dh = malloc(M * (size_t)D * sizeof(float));
        for (size_t j = 0; j < M; j++) weight[j] = j % 3 ? 1.0f : -0.5f;
        rows_mse_backward(dh, llama_hidden_rows(a), NULL, y, weight, M, D);
        memset(full, 0, m.n_params * sizeof(float));
        llama_backward_hidden(&m, a, dh, 0, full);
        for (int lowest = 1; lowest <= layer + 1; lowest++, cases++) {
            memset(part, 0, m.n_params * sizeof(float));
            llama_backward_hidden(&m, a, dh, lowest, part);
            for (int i = 0; i < m.n_tensors; i++) {
                const ParamTensor *t = &m.tensors[i];
                const int blk = tensor_block(&m, t);
                const float *gf = full + t->offset, *gp = part + t->offset;
                size_t nonzero_full = 0, nonzero_part = 0;
                for (size_t k = 0; k < t->numel; k++) {
                    nonzero_full += gf[k] != 0.0f;
                    nonzero_part += gp[k] != 0.0f;
                }
                if (blk > layer) { // above the loss: no gradient in either
                    CHECK(nonzero_full == 0 && nonzero_part == 0, "layer %d: %s has a gradient",
                          layer, t->name);
                } else if (blk >= lowest) {
                    CHECK(memcmp(gf, gp, t->numel * sizeof(float)) == 0,
                          "layer %d lowest %d: %s differs from the full backward's", layer,
                          lowest, t->name);
                    CHECK(nonzero_full > 0, "layer %d: %s has no gradient", layer, t->name);
                } else {
                    CHECK(nonzero_part == 0, "layer %d lowest %d: %s was touched", layer, lowest,
                          t->name);
                }
            }
        }
        free(weight);
        free(dh);
    }
    printf("lowest layer: %d (layer, lowest) cases, blocks >= lowest bit-identical to the full "
           "backward, blocks below, embedding, norm and head untouched\n", cases);
    // After a forward with a head there is no hidden backward to run.
    REQUIRE(llama_forward(&m, a, &tb.b, NULL, NULL, &e) == 0, "%s", e.msg);
    memset(part, 0, m.n_params * sizeof(float));
    llama_backward_hidden(&m, a, y, 0, part); // y is not read: nothing runs
    size_t touched = 0;
    for (size_t i = 0; i < m.n_params; i++) touched += part[i] != 0.0f;
    CHECK(touched == 0, "llama_backward_hidden after llama_forward touched %zu gradients", touched);
    free(y);
    free(full);
    free(part);
    llama_acts_free(a);
    llama_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "all";
    int rc = 0;
    if (!strcmp(which, "all") || !strcmp(which, "rows")) rc |= test_rows_are_the_residual_stream();
    if (!strcmp(which, "all") || !strcmp(which, "fd"))
        rc |= test_gradient_matches_central_differences();
    if (!strcmp(which, "all") || !strcmp(which, "lowest"))
        rc |= test_lowest_layer_skips_exactly_the_blocks_below();
    if (rc || g_fail) {
        printf("FAILED\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
