// Decoding like llama2.c runq.c (see llama_q8.h): the int8 weights recovered once from a
// dequantised Q8_0 import, then one token at a time with int8 activations before every matmul.
#include "llama_q8.h"

#include <stdlib.h>
#include <string.h>

#include "runq.h"

// Largest group size tried; llama2.c's export uses 64 at most.
#define Q8_MAX_GROUP 256

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// Where a recovery attempt stopped: the tensor and group, and how many groups came before.
typedef struct {
    int gs;
    const char *tensor;
    int64_t group;
    size_t done;
} Q8Miss;

// Recovers every matrix with group size gs into q (q->s sized for it); 0, or -1 with *miss.
static int recover_all(LlamaQ8 *q, const LlamaModel *m, int gs, Q8Miss *miss) {
    int most = 0;
    size_t done = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ParamTensor *t = &m->tensors[i];
        if (t->ndim != 2) continue; // norms stay in fp32, as in runq
        int tries = 0;
        const int64_t bad = runq_recover_int8(q->q + t->offset, q->s + t->offset / (size_t)gs,
                                              m->params + t->offset, t->numel, gs, &tries);
        if (tries > most) most = tries;
        if (bad >= 0) {
            *miss = (Q8Miss){gs, t->name, bad, done + (size_t)bad};
            return -1;
        }
        done += t->numel / (size_t)gs;
    }
    q->gs = gs;
    q->max_tries = most;
    return 0;
}

int llama_q8_build(LlamaQ8 *q, const LlamaModel *m, Err *e) {
    memset(q, 0, sizeof *q);
    if (m->cfg.attention_bias)
        return err_set(e, "int8 decoding follows llama2.c runq, whose attention has no biases; "
                          "this model has them");
    // Each matmul of runq takes whole groups of its input row, so gs divides every input width.
    // Every tensor's size is then a multiple of gs (a matrix's of its input width, a norm's of
    // D, q_proj's input width), and so is every offset: o / gs indexes the scales.
    int64_t width = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ndim == 2) width = gcd64(width, m->tensors[i].shape[1]);
    q->q = malloc(m->n_params);
    if (!q->q) return err_set(e, "out of memory for %zu MiB of int8 weights", m->n_params >> 20);
    Q8Miss best = {0, NULL, 0, 0};
    int tried = 0;
    for (int gs = width < Q8_MAX_GROUP ? (int)width : Q8_MAX_GROUP; gs >= 2; gs--) {
        if (width % gs != 0) continue;
        free(q->s);
        q->s = malloc((m->n_params / (size_t)gs + 1) * sizeof(float));
        if (!q->s) {
            llama_q8_free(q);
            return err_set(e, "out of memory for the int8 weights' scales");
        }
        tried++;
        Q8Miss miss;
        if (recover_all(q, m, gs, &miss) == 0) return 0;
        if (!best.tensor || miss.done > best.done) best = miss;
    }
    llama_q8_free(q);
    if (!best.tensor)
        return err_set(e, "the matrices' input widths have no common divisor from 2 to %d, so no "
                          "llama2.c Q8_0 group size fits them", Q8_MAX_GROUP);
    if (best.done == 0)
        return err_set(e, "the weights are not int8 times one scale per group for any of %d group "
                          "sizes (the first group of %s fits none): not an unmodified llama2.c "
                          "Q8_0 import (trained, or stored in 16 bits)", tried, best.tensor);
    return err_set(e, "the weights are not int8 times one scale per group for any of %d group "
                      "sizes; with %d, %zu groups fit, then %s group %lld (elements %lld..%lld) "
                      "does not: not an unmodified llama2.c Q8_0 import (trained, or stored in "
                      "16 bits)", tried, best.gs, best.done, best.tensor, (long long)best.group,
                   (long long)best.group * best.gs, (long long)(best.group + 1) * best.gs - 1);
}

void llama_q8_free(LlamaQ8 *q) {
    free(q->q);
    free(q->s);
    memset(q, 0, sizeof *q);
}

// Activations quantised for the next matmul: values (max input width) and scales.
typedef struct {
    int8_t *q;
    float *s;
} Q8Input;

// out (OC) = W x for the matrix at parameter offset w, x already in `in` (C inputs).
static void q8_linear(float *out, const LlamaQ8 *q, size_t w, const Q8Input *in, int C, int OC) {
    runq_matmul(out, in->q, in->s, q->q + w, q->s + w / (size_t)q->gs, C, OC, q->gs);
}

// One token at position pos of cache c, as runq's forward() (runq.h); logits (V) unless NULL.
static void decode_row(const LlamaModel *m, const LlamaQ8 *q, KVCache *c, int pos, int32_t token,
                       float *logits, const Q8Input *in) {
    const ModelConfig *cfg = &m->cfg;
    const int L = cfg->num_hidden_layers, H = cfg->num_attention_heads;
    const int KV = cfg->num_key_value_heads, hd = cfg->head_dim;
    const int D = cfg->hidden_size, F = cfg->intermediate_size, Q = H * hd, KVD = KV * hd;
    const int gs = q->gs;
    const float eps = cfg->rms_norm_eps, theta = cfg->rope_theta;
    const float *w = m->params;
    float *x = c->buf, *xn = x + D, *tmp = xn + D, *qv = tmp + D, *att = qv + Q, *gate = att + Q,
          *up = gate + F, *scores = up + F;
    // The embedding row is already runq's dequantised one: the importer computed q * s too.
    embedding_forward(x, &token, w + m->embed, 1, D);
    for (int l = 0; l < L; l++) {
        const LayerOffsets *o = &m->layers[l];
        const size_t layer = (size_t)l * c->capacity * KVD;
        float *kc = c->k + layer, *vc = c->v + layer;
        float *kpos = kc + (size_t)pos * KVD, *vpos = vc + (size_t)pos * KVD;
        runq_rmsnorm(xn, x, w + o->ln1, D, eps);
        runq_quantize(in->q, in->s, xn, (size_t)D, gs);
        // q/k rows are in rotate-half order here, interleaved in runq: a row permutation, and
        // groups run along a row, so each output is the same number in another place.
        q8_linear(qv, q, o->wq, in, D, Q);
        q8_linear(kpos, q, o->wk, in, D, KVD);
        q8_linear(vpos, q, o->wv, in, D, KVD);
        runq_rope(qv, pos, H, hd, theta);
        runq_rope(kpos, pos, KV, hd, theta);
        runq_attention(att, scores, qv, kc, vc, pos + 1, H, KV, hd);
        runq_quantize(in->q, in->s, att, (size_t)Q, gs);
        q8_linear(tmp, q, o->wo, in, Q, D);
        residual_forward(x, x, tmp, (size_t)D);
        runq_rmsnorm(xn, x, w + o->ln2, D, eps);
        runq_quantize(in->q, in->s, xn, (size_t)D, gs);
        q8_linear(gate, q, o->wgate, in, D, F);
        q8_linear(up, q, o->wup, in, D, F);
        runq_swiglu(gate, gate, up, (size_t)F);
        runq_quantize(in->q, in->s, gate, (size_t)F, gs);
        q8_linear(tmp, q, o->wdown, in, F, D);
        residual_forward(x, x, tmp, (size_t)D);
    }
    if (!logits) return;
    runq_rmsnorm(xn, x, w + m->norm, D, eps);
    runq_quantize(in->q, in->s, xn, (size_t)D, gs);
    q8_linear(logits, q, m->lm_head, in, D, cfg->vocab_size);
}

int llama_q8_decode_batch(const LlamaModel *m, const LlamaQ8 *q, KVCache *const *caches,
                          const int32_t *tokens, const uint8_t *want_logits, int n, float *logits,
                          Err *e) {
    const ModelConfig *cfg = &m->cfg;
    if (n <= 0) return err_set(e, "a decoding step of %d rows", n);
    for (int r = 0; r < n; r++)
        if (tokens[r] < 0 || tokens[r] >= cfg->vocab_size)
            return err_set(e, "row %d: token id %d is not below vocab_size %d", r, tokens[r],
                           cfg->vocab_size);
    const int D = cfg->hidden_size, F = cfg->intermediate_size;
    const int Q = cfg->num_attention_heads * cfg->head_dim;
    const int widest = D > F ? (D > Q ? D : Q) : (F > Q ? F : Q);
    int *pos = malloc((size_t)n * sizeof *pos);
    Q8Input in = {malloc((size_t)widest), malloc((size_t)(widest / q->gs) * sizeof(float))};
    int rc = 0;
    if (!pos || !in.q || !in.s) {
        rc = err_set(e, "out of memory for a decoding step of %d rows", n);
        goto done;
    }
    // Positions as llama_decode_batch gives them: a cache's rows take consecutive ones.
    int full = -1;
    for (int r = 0; r < n; r++) {
        pos[r] = caches[r]->length++;
        if (pos[r] >= caches[r]->capacity && full < 0) full = r;
    }
    if (full >= 0) {
        for (int r = 0; r < n; r++) caches[r]->length--;
        rc = err_set(e, "row %d: the sequence reached %d positions, its cache's capacity", full,
                     caches[full]->capacity);
        goto done;
    }
    size_t M = 0;
    for (int r = 0; r < n; r++) {
        const int want = !want_logits || want_logits[r];
        decode_row(m, q, caches[r], pos[r], tokens[r],
                   want ? logits + M++ * (size_t)cfg->vocab_size : NULL, &in);
    }
done:
    free(pos);
    free(in.q);
    free(in.s);
    return rc;
}
