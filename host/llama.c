// The Llama model on the CPU backend (HF LlamaForCausalLM semantics): parameter table in one
// allocation, forward over packed variable-length samples, backward from per-target weights.
#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "timing.h"

// ---- parameter table -------------------------------------------------------------------

static size_t add_tensor(LlamaModel *m, const char *name, int64_t d0, int64_t d1) {
    ParamTensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 0;
    t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    t->offset = m->n_params;
    m->n_params += t->numel;
    return t->offset;
}

int llama_create_table(LlamaModel *m, const ModelConfig *cfg, Err *e) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(cfg, "model config", e)) return -1;
    m->cfg = *cfg;
    const int64_t D = cfg->hidden_size, F = cfg->intermediate_size, V = cfg->vocab_size;
    const int64_t Q = (int64_t)cfg->num_attention_heads * cfg->head_dim;
    const int64_t KVD = (int64_t)cfg->num_key_value_heads * cfg->head_dim;
    const int L = cfg->num_hidden_layers;
    m->tensors = calloc((size_t)L * 12 + 3, sizeof *m->tensors);
    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->tensors || !m->layers) return err_set(e, "out of memory for the parameter table");
    char name[96];
    m->embed = add_tensor(m, "model.embed_tokens.weight", V, D);
    for (int l = 0; l < L; l++) {
        LayerOffsets *o = &m->layers[l];
#define T(field, suffix, d0, d1)                                          \
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);         \
    o->field = add_tensor(m, name, d0, d1)
        T(ln1, "input_layernorm.weight", D, 0);
        T(wq, "self_attn.q_proj.weight", Q, D);
        o->bq = o->bk = o->bv = NO_TENSOR;
        if (cfg->attention_bias) { T(bq, "self_attn.q_proj.bias", Q, 0); }
        T(wk, "self_attn.k_proj.weight", KVD, D);
        if (cfg->attention_bias) { T(bk, "self_attn.k_proj.bias", KVD, 0); }
        T(wv, "self_attn.v_proj.weight", KVD, D);
        if (cfg->attention_bias) { T(bv, "self_attn.v_proj.bias", KVD, 0); }
        T(wo, "self_attn.o_proj.weight", D, Q);
        T(ln2, "post_attention_layernorm.weight", D, 0);
        T(wgate, "mlp.gate_proj.weight", F, D);
        T(wup, "mlp.up_proj.weight", F, D);
        T(wdown, "mlp.down_proj.weight", D, F);
#undef T
    }
    m->norm = add_tensor(m, "model.norm.weight", D, 0);
    m->lm_head = cfg->tie_word_embeddings ? m->embed : add_tensor(m, "lm_head.weight", V, D);
    return 0;
}

int llama_create(LlamaModel *m, const ModelConfig *cfg, Err *e) {
    if (llama_create_table(m, cfg, e)) return -1;
    m->params = calloc(m->n_params, sizeof(float));
    if (!m->params)
        return err_set(e, "out of memory: the model needs %zu MiB of parameters",
                       m->n_params * sizeof(float) >> 20);
    return 0;
}

void llama_free(LlamaModel *m) {
    free(m->params);
    free(m->tensors);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

const ParamTensor *llama_find_tensor(const LlamaModel *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

static int is_norm_weight(const char *name) {
    return strstr(name, "layernorm.weight") || strcmp(name, "model.norm.weight") == 0;
}

void llama_init_random(LlamaModel *m, uint64_t seed, float std) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (is_norm_weight(t->name))
            for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
        else if (t->ndim == 1)
            memset(p, 0, t->numel * sizeof(float));
        else
            for (size_t j = 0; j < t->numel; j++) p[j] = std * rng_normal(&rng);
    }
}

int llama_load(LlamaModel *m, CkptReader *r, Err *e) {
    if (llama_create(m, ckpt_reader_config(r), e)) return err_prefix(e, "%s", ckpt_reader_path(r));
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (ckpt_reader_tensor(r, t->name, m->params + t->offset, t->ndim, t->shape, e)) {
            llama_free(m);
            return -1;
        }
    }
    return 0;
}

int llama_load_file(LlamaModel *m, const char *path, Err *e) {
    CkptReader *r;
    if (ckpt_reader_open(&r, path, e)) return -1;
    int rc = llama_load(m, r, e);
    ckpt_reader_close(r);
    return rc;
}

int llama_write_tensors(const LlamaModel *m, CkptWriter *w, StorageDtype dt, Err *e) {
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (ckpt_writer_tensor(w, t->name, m->params + t->offset, t->ndim, t->shape, dt, e))
            return -1;
    }
    return 0;
}

// ---- activations -------------------------------------------------------------------------

typedef struct {
    float *ln1, *rstd1, *q, *k, *v, *lse, *att, *resmid, *ln2, *rstd2, *gate, *up, *hmul;
} LayerActs;

struct LlamaActs {
    // capacity the buffer was carved for
    size_t cap_tokens;
    int cap_layers, cap_samples;
    float *buf;
    float **res;        // (L+1) residual streams, each (N, D); res[0] = embeddings
    LayerActs *layer;   // (L)
    float *lnf, *rstdf; // (N, D), (N)
    float *xt;          // (M, D) the targets' rows: final-normed (predicting them), or after
                        // llama_forward_hidden the hidden rows at their own positions
    float *lse, *logprob;
    float *cls_scratch;
    int32_t *targets, *tsample;
    int64_t *tpos;
    // backward scratch
    float *dres, *dln, *datt, *dq, *dk, *dv, *dgate, *dup, *dh, *dxt;
    // the last forward
    const int32_t *tokens;
    size_t n_tokens, n_targets;
    int n_samples;
    int hidden_layer; // -1, or the block llama_forward_hidden stopped after
    int64_t *offsets; // (n_samples + 1), a copy
    SampleLayout layout;
    // set by llama_forward_soft: the head's soft target (xref, wref owned by the reference)
    int soft;
    SoftTarget soft_target;
    int32_t *qtargets; // (M) the soft target's rows' targets under a shift_mask (-1: none)
    float *soft_loss, *soft_gap; // (M) per-target loss of that head, and its lse gap
};

LlamaActs *llama_acts_new(void) {
    LlamaActs *a = calloc(1, sizeof(LlamaActs));
    if (a) a->hidden_layer = -1;
    return a;
}

void llama_acts_free(LlamaActs *a) {
    if (!a) return;
    free(a->buf);
    free(a->res);
    free(a->layer);
    free(a->targets);
    free(a->qtargets);
    free(a->tsample);
    free(a->tpos);
    free(a->offsets);
    free(a);
}

// Carves the one activation buffer for N tokens.
static int acts_reserve(LlamaActs *a, const ModelConfig *c, size_t N, int n_samples, Err *e) {
    const int L = c->num_hidden_layers;
    if (a->buf && N <= a->cap_tokens && L == a->cap_layers && n_samples <= a->cap_samples)
        return 0;
    // Grow with headroom so a sequence of similar batches allocates once.
    N = N > a->cap_tokens ? N + N / 4 : a->cap_tokens;
    if (n_samples < a->cap_samples) n_samples = a->cap_samples;
    const size_t D = c->hidden_size, F = c->intermediate_size;
    const size_t Q = (size_t)c->num_attention_heads * c->head_dim;
    const size_t KVD = (size_t)c->num_key_value_heads * c->head_dim;
    const size_t H = (size_t)c->num_attention_heads;
    const size_t per_layer = N * (4 * D + 2 + 2 * Q + 2 * KVD + 3 * F + H);
    const size_t cls_lp = classifier_scratch_size(N, c->vocab_size);
    const size_t cls_soft = classifier_soft_scratch_size(N, c->vocab_size);
    const size_t cls = cls_lp > cls_soft ? cls_lp : cls_soft;
    const size_t wide = Q > F ? Q : F;
    const size_t total = (size_t)L * per_layer + (size_t)(L + 1) * N * D // residual streams
                         + N * D + N                                     // lnf, rstdf
                         + N * D + 4 * N + cls // xt, lse, logprob, soft_loss, soft_gap
                         + 2 * N * D + 2 * N * Q + 2 * N * KVD + 3 * N * wide // backward
                         + N * D;                                         // dxt
    free(a->buf);
    free(a->res);
    free(a->layer);
    free(a->targets);
    free(a->qtargets);
    free(a->tsample);
    free(a->tpos);
    free(a->offsets);
    a->buf = malloc(total * sizeof(float));
    a->res = malloc((size_t)(L + 1) * sizeof(float *));
    a->layer = malloc((size_t)L * sizeof(LayerActs));
    a->targets = malloc(N * sizeof(int32_t));
    a->qtargets = malloc(N * sizeof(int32_t));
    a->tsample = malloc(N * sizeof(int32_t));
    a->tpos = malloc(N * sizeof(int64_t));
    a->offsets = malloc(((size_t)n_samples + 1) * sizeof(int64_t));
    if (!a->buf || !a->res || !a->layer || !a->targets || !a->qtargets || !a->tsample ||
        !a->tpos || !a->offsets) {
        a->cap_tokens = 0;
        return err_set(e, "out of memory: activations for %zu tokens need %zu MiB; use smaller "
                          "batches or shorter sequences", N, total * sizeof(float) >> 20);
    }
    float *p = a->buf;
#define CARVE(ptr, n) (ptr = p, p += (n))
    for (int l = 0; l <= L; l++) CARVE(a->res[l], N * D);
    for (int l = 0; l < L; l++) {
        LayerActs *la = &a->layer[l];
        CARVE(la->ln1, N * D);
        CARVE(la->rstd1, N);
        CARVE(la->q, N * Q);
        CARVE(la->k, N * KVD);
        CARVE(la->v, N * KVD);
        CARVE(la->lse, N * H);
        CARVE(la->att, N * Q);
        CARVE(la->resmid, N * D);
        CARVE(la->ln2, N * D);
        CARVE(la->rstd2, N);
        CARVE(la->gate, N * F);
        CARVE(la->up, N * F);
        CARVE(la->hmul, N * F);
    }
    CARVE(a->lnf, N * D);
    CARVE(a->rstdf, N);
    CARVE(a->xt, N * D);
    CARVE(a->lse, N);
    CARVE(a->logprob, N);
    CARVE(a->soft_loss, N);
    CARVE(a->soft_gap, N);
    CARVE(a->cls_scratch, cls);
    CARVE(a->dres, N * D);
    CARVE(a->dln, N * D);
    CARVE(a->datt, N * Q);
    CARVE(a->dq, N * Q);
    CARVE(a->dk, N * KVD);
    CARVE(a->dv, N * KVD);
    CARVE(a->dgate, N * wide);
    CARVE(a->dup, N * wide);
    CARVE(a->dh, N * wide);
    CARVE(a->dxt, N * D);
#undef CARVE
    a->cap_tokens = N;
    a->cap_layers = L;
    a->cap_samples = n_samples;
    return 0;
}

size_t llama_n_targets(const LlamaActs *a) { return a->n_targets; }
const int32_t *llama_target_sample(const LlamaActs *a) { return a->tsample; }
const float *llama_target_logprob(const LlamaActs *a) { return a->logprob; }

// ---- forward -----------------------------------------------------------------------------

int llama_check_batch(const ModelConfig *c, const Batch *b, Err *e) {
    if (b->n_samples <= 0 || b->n_tokens == 0) return err_set(e, "empty batch");
    if (b->offsets[0] != 0 || (size_t)b->offsets[b->n_samples] != b->n_tokens)
        return err_set(e, "batch offsets do not cover the %zu tokens", b->n_tokens);
    for (int s = 0; s < b->n_samples; s++) {
        int64_t len = b->offsets[s + 1] - b->offsets[s];
        if (len <= 0) return err_set(e, "batch sample %d is empty", s);
        if (len > c->max_position_embeddings)
            return err_set(e,
                           "batch sample %d has %lld tokens, more than max_position_embeddings "
                           "%d; truncate or split it",
                           s, (long long)len, c->max_position_embeddings);
    }
    for (size_t t = 0; t < b->n_tokens; t++)
        if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab_size)
            return err_set(e, "token %zu of the batch has id %d, not below vocab_size %d", t,
                           b->tokens[t], c->vocab_size);
    return 0;
}

// One block: res[l+1] = block_l(res[l]), keeping what the backward needs in a->layer[l].
static void block_forward(const LlamaModel *m, LlamaActs *a, int l, float *tmp) {
    const ModelConfig *c = &m->cfg;
    const int H = c->num_attention_heads, KV = c->num_key_value_heads;
    const int hd = c->head_dim, D = c->hidden_size, F = c->intermediate_size;
    const int Q = H * hd, KVD = KV * hd;
    const size_t N = a->n_tokens;
    const float *w = m->params;
    const LayerOffsets *o = &m->layers[l];
    LayerActs *la = &a->layer[l];
    rmsnorm_forward(la->ln1, la->rstd1, a->res[l], w + o->ln1, N, D, c->rms_norm_eps);
    matmul_forward(la->q, la->ln1, w + o->wq, o->bq == NO_TENSOR ? NULL : w + o->bq, N, D, Q);
    matmul_forward(la->k, la->ln1, w + o->wk, o->bk == NO_TENSOR ? NULL : w + o->bk, N, D, KVD);
    matmul_forward(la->v, la->ln1, w + o->wv, o->bv == NO_TENSOR ? NULL : w + o->bv, N, D, KVD);
    rope_forward(la->q, &a->layout, H, hd, c->rope_theta);
    rope_forward(la->k, &a->layout, KV, hd, c->rope_theta);
    attention_forward(la->att, la->lse, la->q, la->k, la->v, &a->layout, H, KV, hd);
    matmul_forward(tmp, la->att, w + o->wo, NULL, N, Q, D);
    residual_forward(la->resmid, a->res[l], tmp, N * (size_t)D);
    rmsnorm_forward(la->ln2, la->rstd2, la->resmid, w + o->ln2, N, D, c->rms_norm_eps);
    matmul_forward(la->gate, la->ln2, w + o->wgate, NULL, N, D, F);
    matmul_forward(la->up, la->ln2, w + o->wup, NULL, N, D, F);
    swiglu_forward(la->hmul, la->gate, la->up, N * (size_t)F);
    matmul_forward(tmp, la->hmul, w + o->wdown, NULL, N, F, D);
    residual_forward(a->res[l + 1], la->resmid, tmp, N * (size_t)D);
}

// Embedding and blocks, then the rows of the targets into a->xt. hidden < 0: every block, the
// final norm, and the rows that predict a target (position t predicts token t+1 of its sample).
// hidden >= 0: blocks 0..hidden only, and the residual stream after block `hidden` at each
// target token's own position (t+1). Either way the same target list, in the same order.
static int forward_trunk(const LlamaModel *m, LlamaActs *a, const Batch *b, int hidden,
                         Err *e) {
    const ModelConfig *c = &m->cfg;
    if (llama_check_batch(c, b, e)) return -1;
    const int L = c->num_hidden_layers, D = c->hidden_size;
    const size_t N = b->n_tokens;
    if (acts_reserve(a, c, N, b->n_samples, e)) return -1;
    memcpy(a->offsets, b->offsets, ((size_t)b->n_samples + 1) * sizeof(int64_t));
    a->layout = (SampleLayout){b->n_samples, a->offsets};
    a->tokens = b->tokens;
    a->n_tokens = N;
    a->n_samples = b->n_samples;
    a->soft = 0;
    a->hidden_layer = hidden;
    const float *w = m->params;
    float *tmp = a->dres; // (N, D) scratch during the forward

    embedding_forward(a->res[0], b->tokens, w + m->embed, N, D);
    const int n_blocks = hidden < 0 ? L : hidden + 1;
    for (int l = 0; l < n_blocks; l++) block_forward(m, a, l, tmp);
    if (hidden < 0)
        rmsnorm_forward(a->lnf, a->rstdf, a->res[L], w + m->norm, N, D, c->rms_norm_eps);

    const float *src = hidden < 0 ? a->lnf : a->res[hidden + 1];
    const int64_t shift = hidden < 0 ? 0 : 1;
    size_t M = 0;
    for (int s = 0; s < b->n_samples; s++) {
        for (int64_t t = b->offsets[s]; t + 1 < b->offsets[s + 1]; t++) {
            if (b->loss_mask && !b->loss_mask[t + 1]) continue;
            a->targets[M] = b->tokens[t + 1];
            a->tsample[M] = s;
            a->tpos[M] = t;
            memcpy(a->xt + M * (size_t)D, src + (size_t)(t + shift) * D,
                   (size_t)D * sizeof(float));
            M++;
        }
    }
    a->n_targets = M;
    return 0;
}

// Per-sample sums of a per-target value (log-probs or KL terms) and target counts.
void llama_sum_per_sample(const int32_t *tsample, const float *v, size_t M, int n_samples,
                          double *sums, int *counts) {
    for (int s = 0; s < n_samples; s++) {
        if (sums) sums[s] = 0.0;
        if (counts) counts[s] = 0;
    }
    for (size_t j = 0; j < M; j++) {
        if (sums) sums[tsample[j]] += v[j];
        if (counts) counts[tsample[j]]++;
    }
}

int llama_forward(const LlamaModel *m, LlamaActs *a, const Batch *b, double *sum_logprob,
                  int *n_targets, Err *e) {
    timing_start(TIMER_FORWARD);
    const int trunk = forward_trunk(m, a, b, -1, e);
    timing_stop(TIMER_FORWARD);
    if (trunk) return -1;
    timing_start(TIMER_CLASSIFIER_FORWARD);
    const int D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (a->n_targets > 0)
        classifier_forward(a->logprob, a->lse, a->cls_scratch, a->xt, m->params + m->lm_head,
                           a->targets, a->n_targets, D, V);
    llama_sum_per_sample(a->tsample, a->logprob, a->n_targets, a->n_samples, sum_logprob,
                         n_targets);
    timing_stop(TIMER_CLASSIFIER_FORWARD);
    return 0;
}

void llama_target_stats(const LlamaModel *m, LlamaActs *a, uint8_t *is_argmax, float *mu,
                        float *var) {
    if (a->n_targets > 0)
        classifier_stats(is_argmax, mu, var, a->cls_scratch, a->xt, m->params + m->lm_head,
                         a->targets, a->lse, a->n_targets, m->cfg.hidden_size,
                         m->cfg.vocab_size);
}

int llama_forward_rows(const LlamaModel *m, LlamaActs *a, const Batch *b, Err *e) {
    timing_start(TIMER_FORWARD);
    const int trunk = forward_trunk(m, a, b, -1, e);
    timing_stop(TIMER_FORWARD);
    return trunk;
}

const float *llama_target_rows(const LlamaActs *a) { return a->xt; }

const float *llama_target_loss(const LlamaActs *a) { return a->soft_loss; }

int llama_forward_soft(const LlamaModel *m, LlamaActs *a, const Batch *b, const SoftSpec *spec,
                       const LlamaModel *ref, const LlamaActs *ref_acts, double *loss_sum,
                       int *n_targets, Err *e) {
    timing_start(TIMER_FORWARD);
    const int trunk = forward_trunk(m, a, b, -1, e);
    timing_stop(TIMER_FORWARD);
    if (trunk) return -1;
    const int D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    SoftTarget q = {NULL, NULL, a->targets, spec->target_shift, spec->cross_entropy};
    if (spec->shift_mask) {
        for (size_t j = 0; j < a->n_targets; j++)
            a->qtargets[j] = spec->shift_mask[a->tpos[j] + 1] ? a->targets[j] : -1;
        q.targets = a->qtargets;
    }
    if (spec->from_reference) {
        if (!ref || !ref_acts || ref_acts->n_targets != a->n_targets ||
            ref->cfg.vocab_size != V || ref->cfg.hidden_size != D)
            return err_set(e,
                           "the reference forward does not match this batch (%zu vs %zu targets)",
                           ref_acts ? ref_acts->n_targets : 0, a->n_targets);
        q.xref = ref_acts->xt;
        q.wref = ref->params + ref->lm_head;
    }
    a->soft = 1;
    a->soft_target = q;
    timing_start(TIMER_CLASSIFIER_FORWARD);
    if (a->n_targets > 0)
        classifier_soft_forward(a->soft_loss, a->lse, a->soft_gap, a->logprob, a->cls_scratch,
                                a->xt, m->params + m->lm_head, &q, a->n_targets, D, V);
    llama_sum_per_sample(a->tsample, a->soft_loss, a->n_targets, a->n_samples, loss_sum,
                         n_targets);
    timing_stop(TIMER_CLASSIFIER_FORWARD);
    return 0;
}

int llama_forward_hidden(const LlamaModel *m, LlamaActs *a, const Batch *b, int layer, Err *e) {
    const int L = m->cfg.num_hidden_layers;
    if (layer < 0 || layer >= L)
        return err_set(e, "llama_forward_hidden: layer %d is not a block of this model (0 to %d)",
                       layer, L - 1);
    timing_start(TIMER_FORWARD);
    const int trunk = forward_trunk(m, a, b, layer, e);
    timing_stop(TIMER_FORWARD);
    return trunk;
}

const float *llama_hidden_rows(const LlamaActs *a) { return a->xt; }

// ---- backward ----------------------------------------------------------------------------

// Backward through block l: a->dres holds dLoss/dres[l+1] on entry and dLoss/dres[l] on exit;
// the block's parameter gradients are added into g.
static void block_backward(const LlamaModel *m, LlamaActs *a, int l, float *g) {
    const ModelConfig *c = &m->cfg;
    const int H = c->num_attention_heads, KV = c->num_key_value_heads;
    const int hd = c->head_dim, D = c->hidden_size, F = c->intermediate_size;
    const int Q = H * hd, KVD = KV * hd;
    const size_t N = a->n_tokens, ND = N * (size_t)D;
    const float *w = m->params;
    const LayerOffsets *o = &m->layers[l];
    LayerActs *la = &a->layer[l];
    // MLP branch: res[l+1] = resmid + down(silu(gate(ln2)) * up(ln2))
    memset(a->dh, 0, N * (size_t)F * sizeof(float));
    matmul_backward(a->dh, g + o->wdown, NULL, a->dres, la->hmul, w + o->wdown, N, F, D);
    memset(a->dgate, 0, N * (size_t)F * sizeof(float));
    memset(a->dup, 0, N * (size_t)F * sizeof(float));
    swiglu_backward(a->dgate, a->dup, a->dh, la->gate, la->up, N * (size_t)F);
    memset(a->dln, 0, ND * sizeof(float));
    matmul_backward(a->dln, g + o->wgate, NULL, a->dgate, la->ln2, w + o->wgate, N, D, F);
    matmul_backward(a->dln, g + o->wup, NULL, a->dup, la->ln2, w + o->wup, N, D, F);
    rmsnorm_backward(a->dres, g + o->ln2, a->dln, la->resmid, w + o->ln2, la->rstd2, N, D);
    // Attention branch: resmid = res[l] + o(attn(rope(q), rope(k), v))
    memset(a->datt, 0, N * (size_t)Q * sizeof(float));
    matmul_backward(a->datt, g + o->wo, NULL, a->dres, la->att, w + o->wo, N, Q, D);
    memset(a->dq, 0, N * (size_t)Q * sizeof(float));
    memset(a->dk, 0, N * (size_t)KVD * sizeof(float));
    memset(a->dv, 0, N * (size_t)KVD * sizeof(float));
    attention_backward(a->dq, a->dk, a->dv, a->datt, la->att, la->lse, la->q, la->k, la->v,
                       &a->layout, H, KV, hd);
    rope_backward(a->dq, &a->layout, H, hd, c->rope_theta);
    rope_backward(a->dk, &a->layout, KV, hd, c->rope_theta);
    memset(a->dln, 0, ND * sizeof(float));
    matmul_backward(a->dln, g + o->wq, o->bq == NO_TENSOR ? NULL : g + o->bq, a->dq, la->ln1,
                    w + o->wq, N, D, Q);
    matmul_backward(a->dln, g + o->wk, o->bk == NO_TENSOR ? NULL : g + o->bk, a->dk, la->ln1,
                    w + o->wk, N, D, KVD);
    matmul_backward(a->dln, g + o->wv, o->bv == NO_TENSOR ? NULL : g + o->bv, a->dv, la->ln1,
                    w + o->wv, N, D, KVD);
    rmsnorm_backward(a->dres, g + o->ln1, a->dln, a->res[l], w + o->ln1, la->rstd1, N, D);
}

void llama_backward(const LlamaModel *m, LlamaActs *a, const float *weight, float *grads) {
    const ModelConfig *c = &m->cfg;
    const int L = c->num_hidden_layers, D = c->hidden_size, V = c->vocab_size;
    const size_t N = a->n_tokens, M = a->n_targets;
    const float *w = m->params;
    float *g = grads;
    const size_t ND = N * (size_t)D;

    // Classifier, then scatter the target rows' gradients back to their positions.
    timing_start(TIMER_CLASSIFIER_BACKWARD);
    memset(a->dln, 0, ND * sizeof(float));
    if (M > 0) {
        memset(a->dxt, 0, M * (size_t)D * sizeof(float));
        if (a->soft)
            classifier_soft_backward(a->dxt, g + m->lm_head, a->cls_scratch, a->xt,
                                     w + m->lm_head, &a->soft_target, a->lse, a->soft_gap,
                                     weight, M, D, V);
        else
            classifier_backward(a->dxt, g + m->lm_head, a->cls_scratch, a->xt, w + m->lm_head,
                                a->targets, a->lse, weight, M, D, V);
        for (size_t j = 0; j < M; j++)
            memcpy(a->dln + (size_t)a->tpos[j] * D, a->dxt + j * (size_t)D,
                   (size_t)D * sizeof(float));
    }
    timing_stop(TIMER_CLASSIFIER_BACKWARD);
    timing_start(TIMER_BACKWARD);
    memset(a->dres, 0, ND * sizeof(float));
    rmsnorm_backward(a->dres, g + m->norm, a->dln, a->res[L], w + m->norm, a->rstdf, N, D);
    for (int l = L - 1; l >= 0; l--) block_backward(m, a, l, g);
    embedding_backward(g + m->embed, a->dres, a->tokens, N, D);
    timing_stop(TIMER_BACKWARD);
}

void llama_backward_hidden(const LlamaModel *m, LlamaActs *a, const float *dh, int lowest_layer,
                           float *grads) {
    const int D = m->cfg.hidden_size, layer = a->hidden_layer;
    const size_t N = a->n_tokens, M = a->n_targets;
    if (layer < 0) return; // no llama_forward_hidden: nothing to go back through
    timing_start(TIMER_BACKWARD);
    // dLoss/dres[layer+1]: each target's row at its token's own position (distinct positions),
    // zero elsewhere.
    memset(a->dres, 0, N * (size_t)D * sizeof(float));
    for (size_t j = 0; j < M; j++)
        memcpy(a->dres + (size_t)(a->tpos[j] + 1) * D, dh + j * (size_t)D,
               (size_t)D * sizeof(float));
    const int lowest = lowest_layer < 0 ? 0 : lowest_layer;
    for (int l = layer; l >= lowest; l--) block_backward(m, a, l, grads);
    if (lowest == 0) embedding_backward(grads + m->embed, a->dres, a->tokens, N, D);
    timing_stop(TIMER_BACKWARD);
}

// ---- decoding with a KV cache --------------------------------------------------------------

int kvcache_init(KVCache *c, const LlamaModel *m, int capacity, Err *e) {
    memset(c, 0, sizeof *c);
    const ModelConfig *cfg = &m->cfg;
    if (capacity <= 0 || capacity > cfg->max_position_embeddings)
        capacity = cfg->max_position_embeddings;
    const size_t KVD = (size_t)cfg->num_key_value_heads * cfg->head_dim;
    const size_t per = (size_t)cfg->num_hidden_layers * (size_t)capacity * KVD;
    const size_t Q = (size_t)cfg->num_attention_heads * cfg->head_dim;
    const size_t D = cfg->hidden_size, F = cfg->intermediate_size;
    // scratch: x, xn, tmp (D each), q, att (Q each), gate, up (F each), scores (capacity)
    const size_t scratch = 3 * D + 2 * Q + 2 * F + (size_t)capacity;
    c->k = malloc(per * sizeof(float));
    c->v = malloc(per * sizeof(float));
    c->buf = malloc(scratch * sizeof(float));
    if (!c->k || !c->v || !c->buf) {
        kvcache_free(c);
        return err_set(e, "out of memory for a KV cache of %d positions", capacity);
    }
    c->capacity = capacity;
    return 0;
}

void kvcache_free(KVCache *c) {
    free(c->k);
    free(c->v);
    free(c->buf);
    memset(c, 0, sizeof *c);
}

int llama_decode_step(const LlamaModel *m, KVCache *c, int32_t token, float *logits, Err *e) {
    const ModelConfig *cfg = &m->cfg;
    if (c->length >= c->capacity)
        return err_set(e, "the sequence reached %d positions, the model's context", c->capacity);
    if (token < 0 || token >= cfg->vocab_size)
        return err_set(e, "token id %d is not below vocab_size %d", token, cfg->vocab_size);
    const int L = cfg->num_hidden_layers, H = cfg->num_attention_heads;
    const int KV = cfg->num_key_value_heads, hd = cfg->head_dim;
    const int D = cfg->hidden_size, F = cfg->intermediate_size, Q = H * hd, KVD = KV * hd;
    const float *w = m->params;
    const int pos = c->length;
    float *x = c->buf, *xn = x + D, *tmp = xn + D, *q = tmp + D, *att = q + Q, *gate = att + Q,
          *up = gate + F, *scores = up + F;
    float rstd;
    embedding_forward(x, &token, w + m->embed, 1, D);
    for (int l = 0; l < L; l++) {
        const LayerOffsets *o = &m->layers[l];
        float *kc = c->k + ((size_t)l * c->capacity) * KVD, *vc = c->v + ((size_t)l * c->capacity) * KVD;
        float *kpos = kc + (size_t)pos * KVD, *vpos = vc + (size_t)pos * KVD;
        rmsnorm_forward(xn, &rstd, x, w + o->ln1, 1, D, cfg->rms_norm_eps);
        matmul_forward(q, xn, w + o->wq, o->bq == NO_TENSOR ? NULL : w + o->bq, 1, D, Q);
        matmul_forward(kpos, xn, w + o->wk, o->bk == NO_TENSOR ? NULL : w + o->bk, 1, D, KVD);
        matmul_forward(vpos, xn, w + o->wv, o->bv == NO_TENSOR ? NULL : w + o->bv, 1, D, KVD);
        rope_forward_at(q, pos, H, hd, cfg->rope_theta);
        rope_forward_at(kpos, pos, KV, hd, cfg->rope_theta);
        attention_decode(att, scores, q, kc, vc, pos + 1, H, KV, hd);
        matmul_forward(tmp, att, w + o->wo, NULL, 1, Q, D);
        residual_forward(x, x, tmp, (size_t)D);
        rmsnorm_forward(xn, &rstd, x, w + o->ln2, 1, D, cfg->rms_norm_eps);
        matmul_forward(gate, xn, w + o->wgate, NULL, 1, D, F);
        matmul_forward(up, xn, w + o->wup, NULL, 1, D, F);
        swiglu_forward(gate, gate, up, (size_t)F);
        matmul_forward(tmp, gate, w + o->wdown, NULL, 1, F, D);
        residual_forward(x, x, tmp, (size_t)D);
    }
    rmsnorm_forward(xn, &rstd, x, w + m->norm, 1, D, cfg->rms_norm_eps);
    matmul_forward(logits, xn, w + m->lm_head, NULL, 1, D, cfg->vocab_size);
    c->length++;
    return 0;
}

// ---- batched decoding ----------------------------------------------------------------------

int decode_scratch_init(DecodeScratch *s, const LlamaModel *m, int max_rows, Err *e) {
    memset(s, 0, sizeof *s);
    const ModelConfig *cfg = &m->cfg;
    if (max_rows <= 0)
        return err_set(e, "a decoding step needs at least one row, not %d", max_rows);
    const size_t D = cfg->hidden_size, F = cfg->intermediate_size;
    const size_t Q = (size_t)cfg->num_attention_heads * cfg->head_dim;
    const size_t KVD = (size_t)cfg->num_key_value_heads * cfg->head_dim;
    const size_t P = (size_t)cfg->max_position_embeddings;
    // Per row: x, xn, tmp (D), q, att (Q), k, v (KVD), gate, up (F), attention scores (P): each
    // row has its own scores so rows of one cache can attend in parallel.
    const size_t per_row = 3 * D + 2 * Q + 2 * KVD + 2 * F + P;
    s->buf = malloc((size_t)max_rows * per_row * sizeof(float));
    s->pos = malloc((size_t)max_rows * sizeof(int));
    if (!s->buf || !s->pos) {
        decode_scratch_free(s);
        return err_set(e, "out of memory for a decoding step of %d rows (%zu MiB)", max_rows,
                       (size_t)max_rows * per_row * sizeof(float) >> 20);
    }
    s->max_rows = max_rows;
    return 0;
}

void decode_scratch_free(DecodeScratch *s) {
    free(s->buf);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

// Below this many multiply-adds of attention (summed over the rows) one thread does them all:
// at 2^15, stories260K at max_batch 8 (~10^5 a layer) ran 15% slower on 2 threads than on 1.
#define DECODE_ATT_PAR_MIN ((size_t)1 << 17)

int llama_decode_batch(const LlamaModel *m, KVCache *const *caches, const int32_t *tokens,
                       const uint8_t *want_logits, int n, float *logits, DecodeScratch *s,
                       Err *e) {
    const ModelConfig *cfg = &m->cfg;
    if (n <= 0 || n > s->max_rows)
        return err_set(e, "a decoding step of %d rows; the scratch holds 1 to %d", n, s->max_rows);
    for (int r = 0; r < n; r++)
        if (tokens[r] < 0 || tokens[r] >= cfg->vocab_size)
            return err_set(e, "row %d: token id %d is not below vocab_size %d", r, tokens[r],
                           cfg->vocab_size);
    // Positions: each row takes the next free one of its cache (a cache on several rows gets
    // consecutive positions in row order). Undone if any cache overflows.
    int full = -1;
    for (int r = 0; r < n; r++) {
        s->pos[r] = caches[r]->length++;
        if (s->pos[r] >= caches[r]->capacity && full < 0) full = r;
    }
    if (full >= 0) {
        for (int r = 0; r < n; r++) caches[r]->length--;
        return err_set(e, "row %d: the sequence reached %d positions, its cache's capacity", full,
                       caches[full]->capacity);
    }
    const int L = cfg->num_hidden_layers, H = cfg->num_attention_heads;
    const int KV = cfg->num_key_value_heads, hd = cfg->head_dim;
    const int D = cfg->hidden_size, F = cfg->intermediate_size, Q = H * hd, KVD = KV * hd;
    const size_t P = (size_t)cfg->max_position_embeddings, N = (size_t)n;
    const float *w = m->params;
    float *x = s->buf, *xn = x + N * D, *tmp = xn + N * D, *q = tmp + N * D, *att = q + N * Q,
          *k = att + N * Q, *v = k + N * KVD, *gate = v + N * KVD, *up = gate + N * F,
          *scores = up + N * F;
    float *rstd = scores; // (n), only outside attention
    size_t att_work = 0;
    for (int r = 0; r < n; r++) att_work += (size_t)(s->pos[r] + 1) * (size_t)Q * 2;

    embedding_forward(x, tokens, w + m->embed, N, D);
    for (int l = 0; l < L; l++) {
        const LayerOffsets *o = &m->layers[l];
        rmsnorm_forward(xn, rstd, x, w + o->ln1, N, D, cfg->rms_norm_eps);
        matmul_forward(q, xn, w + o->wq, o->bq == NO_TENSOR ? NULL : w + o->bq, N, D, Q);
        matmul_forward(k, xn, w + o->wk, o->bk == NO_TENSOR ? NULL : w + o->bk, N, D, KVD);
        matmul_forward(v, xn, w + o->wv, o->bv == NO_TENSOR ? NULL : w + o->bv, N, D, KVD);
        // Every row's K/V into its cache first: a prompt's rows attend to each other.
        for (int r = 0; r < n; r++) {
            const KVCache *c = caches[r];
            const size_t at = ((size_t)l * c->capacity + (size_t)s->pos[r]) * KVD;
            rope_forward_at(q + (size_t)r * Q, s->pos[r], H, hd, cfg->rope_theta);
            rope_forward_at(k + (size_t)r * KVD, s->pos[r], KV, hd, cfg->rope_theta);
            memcpy(c->k + at, k + (size_t)r * KVD, (size_t)KVD * sizeof(float));
            memcpy(c->v + at, v + (size_t)r * KVD, (size_t)KVD * sizeof(float));
        }
        #pragma omp parallel for schedule(dynamic) if (n > 1 && att_work >= DECODE_ATT_PAR_MIN)
        for (int r = 0; r < n; r++) {
            const KVCache *c = caches[r];
            const size_t layer = (size_t)l * c->capacity * KVD;
            attention_decode(att + (size_t)r * Q, scores + (size_t)r * P, q + (size_t)r * Q,
                             c->k + layer, c->v + layer, s->pos[r] + 1, H, KV, hd);
        }
        matmul_forward(tmp, att, w + o->wo, NULL, N, Q, D);
        residual_forward(x, x, tmp, N * D);
        rmsnorm_forward(xn, rstd, x, w + o->ln2, N, D, cfg->rms_norm_eps);
        matmul_forward(gate, xn, w + o->wgate, NULL, N, D, F);
        matmul_forward(up, xn, w + o->wup, NULL, N, D, F);
        swiglu_forward(gate, gate, up, N * F);
        matmul_forward(tmp, gate, w + o->wdown, NULL, N, F, D);
        residual_forward(x, x, tmp, N * D);
    }
    // The head only on the rows whose next token is wanted (a prompt needs its last row's).
    size_t M = 0;
    for (int r = 0; r < n; r++)
        if (!want_logits || want_logits[r])
            memcpy(tmp + M++ * D, x + (size_t)r * D, (size_t)D * sizeof(float));
    if (M > 0) {
        rmsnorm_forward(xn, rstd, tmp, w + m->norm, M, D, cfg->rms_norm_eps);
        matmul_forward(logits, xn, w + m->lm_head, NULL, M, D, cfg->vocab_size);
    }
    return 0;
}

int llama_next_logits_nocache(const LlamaModel *m, LlamaActs *a, const int32_t *tokens, int n,
                              float *logits, Err *e) {
    const ModelConfig *cfg = &m->cfg;
    if (n <= 0 || n >= cfg->max_position_embeddings)
        return err_set(e, "the reference forward takes 1 to %d tokens, not %d (one position is "
                          "left for the dummy target)", cfg->max_position_embeddings - 1, n);
    // One sample of the n tokens and a dummy one whose mask makes position n-1 the only target:
    // its final-normed row is the one the LM head needs.
    int32_t *ids = malloc(((size_t)n + 1) * sizeof(int32_t));
    uint8_t *mask = calloc((size_t)n + 1, 1);
    int rc = 0;
    if (!ids || !mask) {
        rc = err_set(e, "out of memory");
        goto done;
    }
    memcpy(ids, tokens, (size_t)n * sizeof(int32_t));
    ids[n] = 0;
    mask[n] = 1;
    int64_t offsets[2] = {0, (int64_t)n + 1};
    Batch b = {1, (size_t)n + 1, ids, offsets, mask};
    if ((rc = llama_forward_rows(m, a, &b, e))) goto done;
    matmul_forward(logits, llama_target_rows(a), m->params + m->lm_head, NULL, 1,
                   cfg->hidden_size, cfg->vocab_size);
done:
    free(ids);
    free(mask);
    return rc;
}
