// The evaluation's building blocks: packed scoring of context/target sequences (per-sample sums
// and per-token statistics), greedy generation to stripped text, and the per-model results store.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval.h"
#include "qa.h"
#include "strbuf.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- SeqSet ------------------------------------------------------------------------------

int seqset_add(SeqSet *s, const Tokenizer *tok, const char *context, const char *target,
               Err *e) {
    size_t need = strlen(context) + strlen(target) + 6;
    if (s->n_tokens + need > s->cap_tokens) {
        size_t cap = s->cap_tokens ? s->cap_tokens : 4096;
        while (cap < s->n_tokens + need) cap *= 2;
        int32_t *t = realloc(s->tokens, cap * sizeof *t);
        if (t) s->tokens = t;
        uint8_t *m = realloc(s->mask, cap);
        if (m) s->mask = m;
        if (!t || !m) return err_set(e, "out of memory");
        s->cap_tokens = cap;
    }
    if (s->n + 2 > s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        int64_t *o = realloc(s->offsets, (size_t)(cap + 1) * sizeof *o);
        if (o) s->offsets = o;
        int *nc = realloc(s->n_context, (size_t)cap * sizeof *nc);
        if (nc) s->n_context = nc;
        if (!o || !nc) return err_set(e, "out of memory");
        s->cap = cap;
    }
    if (s->n == 0) s->offsets[0] = 0;
    int n_context, n_total;
    if (qa_encode(tok, context, target, s->tokens + s->n_tokens, &n_context, &n_total, e))
        return -1;
    for (int i = 0; i < n_total; i++) s->mask[s->n_tokens + i] = i >= n_context;
    s->n_context[s->n] = n_context;
    s->n_tokens += (size_t)n_total;
    s->offsets[++s->n] = (int64_t)s->n_tokens;
    return 0;
}

void seqset_free(SeqSet *s) {
    free(s->tokens);
    free(s->mask);
    free(s->offsets);
    free(s->n_context);
    memset(s, 0, sizeof *s);
}

// ---- scoring -----------------------------------------------------------------------------

void seqscores_free(SeqScores *s) {
    free(s->sum_logprob);
    free(s->n_targets);
    free(s->tok_offsets);
    free(s->logp);
    free(s->mu);
    free(s->var);
    free(s->hit);
    memset(s, 0, sizeof *s);
}

double seqscores_avg_loss(const SeqScores *s, int i) {
    return s->n_targets[i] > 0 ? -s->sum_logprob[i] / s->n_targets[i] : NAN;
}

int eval_score(EvalCtx *c, const SeqSet *s, int per_token, SeqScores *out, Err *e) {
    memset(out, 0, sizeof *out);
    out->n = s->n;
    out->sum_logprob = calloc((size_t)s->n + 1, sizeof(double));
    out->n_targets = calloc((size_t)s->n + 1, sizeof(int));
    size_t total_targets = 0;
    for (int i = 0; i < s->n; i++)
        for (int64_t t = s->offsets[i] + 1; t < s->offsets[i + 1]; t++) total_targets += s->mask[t];
    if (per_token) {
        out->tok_offsets = calloc((size_t)s->n + 1, sizeof(int64_t));
        out->logp = malloc((total_targets + 1) * sizeof(float));
        out->mu = malloc((total_targets + 1) * sizeof(float));
        out->var = malloc((total_targets + 1) * sizeof(float));
        out->hit = malloc(total_targets + 1);
    }
    if (!out->sum_logprob || !out->n_targets ||
        (per_token && (!out->tok_offsets || !out->logp || !out->mu || !out->var || !out->hit))) {
        seqscores_free(out);
        return err_set(e, "out of memory");
    }
    const int max_len = c->model->cfg.max_position_embeddings;
    for (int i = 0; i < s->n; i++)
        if (s->offsets[i + 1] - s->offsets[i] > max_len) {
            seqscores_free(out);
            return err_set(e,
                           "sample %d has %lld tokens, more than the model's context of %d "
                           "positions; shorten it",
                           i + 1, (long long)(s->offsets[i + 1] - s->offsets[i]), max_len);
        }
    double t0 = now_seconds();
    size_t written = 0;
    for (int first = 0; first < s->n;) {
        // Pack whole sequences up to the token budget (at least one per forward).
        int last = first;
        size_t tokens = 0;
        while (last < s->n) {
            size_t len = (size_t)(s->offsets[last + 1] - s->offsets[last]);
            if (last > first && tokens + len > (size_t)c->batch_tokens) break;
            tokens += len;
            last++;
        }
        int64_t offsets[last - first + 1];
        for (int i = first; i <= last; i++) offsets[i - first] = s->offsets[i] - s->offsets[first];
        Batch b = {last - first, tokens, s->tokens + s->offsets[first], offsets,
                   s->mask + s->offsets[first]};
        if (c->engine->ops->forward(c->engine, &b, out->sum_logprob + first,
                                    out->n_targets + first, e)) {
            seqscores_free(out);
            return -1;
        }
        if (per_token) {
            size_t M = c->engine->ops->n_targets(c->engine);
            memcpy(out->logp + written, c->engine->ops->target_logprob(c->engine),
                   M * sizeof(float));
            if (c->engine->ops->target_stats(c->engine, out->hit + written, out->mu + written,
                                             out->var + written, e)) {
                seqscores_free(out);
                return -1;
            }
            written += M;
        }
        first = last;
    }
    if (per_token)
        for (int i = 0; i < s->n; i++) out->tok_offsets[i + 1] = out->tok_offsets[i] + out->n_targets[i];
    c->score_seconds += now_seconds() - t0;
    c->scored_samples += s->n;
    c->scored_tokens += (long)s->n_tokens;
    return 0;
}

// ---- generation --------------------------------------------------------------------------

// At s: the length of a valid UTF-8 character (> 0), or minus the length of the "maximal
// subpart" of an ill-formed one (the lead byte and the continuation bytes that could still have
// been valid, at least 1), which Unicode (and Python's errors="replace") turns into one U+FFFD.
static int utf8_scan(const unsigned char *s, size_t avail) {
    if (s[0] < 0x80) return 1;
    int n = s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
            : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (n == 0) return -1;
    // The second byte's range depends on the lead (no overlongs, surrogates or > U+10FFFF).
    unsigned char lo = 0x80, hi = 0xBF;
    if (s[0] == 0xE0) lo = 0xA0;
    if (s[0] == 0xED) hi = 0x9F;
    if (s[0] == 0xF0) lo = 0x90;
    if (s[0] == 0xF4) hi = 0x8F;
    int k = 1;
    for (; k < n && (size_t)k < avail; k++) {
        unsigned char c = s[k];
        if (k == 1 ? c < lo || c > hi : (c & 0xC0) != 0x80) break;
    }
    return k == n ? n : -k;
}

// Byte-fallback tokens can leave a partial character: each ill-formed subpart becomes one
// U+FFFD, as Python's bytes.decode(errors="replace") and HF tokenizers do.
static void append_valid_utf8(StrBuf *b, const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        int n = utf8_scan(s + i, len - i);
        if (n > 0) {
            sb_printf(b, "%.*s", n, (const char *)s + i);
            i += (size_t)n;
        } else {
            sb_printf(b, "\xEF\xBF\xBD");
            i += (size_t)-n;
        }
    }
}

char *utf8_replace_invalid(const char *text, size_t len) {
    StrBuf b = {0};
    sb_printf(&b, "%s", "");
    append_valid_utf8(&b, text, len);
    if (b.failed) {
        sb_free(&b);
        return NULL;
    }
    return b.data;
}

char *eval_decode(const Tokenizer *tok, int prev, const int32_t *ids, int n) {
    StrBuf raw = {0}, b = {0};
    sb_printf(&raw, "%s", "");
    sb_printf(&b, "%s", "");
    char buf[512];
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *piece = tokenizer_decode_piece(tok, prev, ids[i], buf, sizeof buf, &len);
        sb_printf(&raw, "%.*s", (int)len, piece);
        prev = ids[i];
    }
    if (!raw.failed) append_valid_utf8(&b, raw.data, raw.len);
    int failed = raw.failed || b.failed;
    sb_free(&raw);
    if (failed) {
        sb_free(&b);
        return NULL;
    }
    return b.data;
}

typedef struct {
    const Tokenizer *tok;
    const int *last_prompt_token;
    const char *const *stops;
} StopCheck;

// Stops a request once its decoded text contains a stop string.
static int stop_on_strings(const GenerateRequest *r, int index, void *ctx) {
    const StopCheck *sc = ctx;
    if (!sc->stops || !sc->stops[0]) return 0;
    // The stop string can only have appeared in the last few tokens' text: decode a tail.
    int from = r->n_out > 8 ? r->n_out - 8 : 0;
    int prev = from > 0 ? r->out[from - 1] : sc->last_prompt_token[index];
    char *tail = eval_decode(sc->tok, prev, r->out + from, r->n_out - from);
    int hit = 0;
    for (int k = 0; tail && sc->stops[k] && !hit; k++) hit = strstr(tail, sc->stops[k]) != NULL;
    free(tail);
    return hit;
}

static char *strip_dup(const char *s, size_t n) {
    while (n > 0 && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        n--;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = 0;
    }
    return out;
}

int eval_generate_tokens(EvalCtx *c, int32_t *const *prompts, const int *n_prompt, int n,
                         int max_new_tokens, const char *const *stops, char **texts, Err *e) {
    for (int i = 0; i < n; i++) texts[i] = NULL;
    if (n <= 0) return 0;
    GenerateRequest *reqs = calloc((size_t)n, sizeof *reqs);
    int *last = calloc((size_t)n, sizeof *last);
    int32_t *outs = malloc((size_t)n * (size_t)max_new_tokens * sizeof(int32_t));
    int rc = 0;
    if (!reqs || !last || !outs) {
        rc = err_set(e, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        reqs[i].prompt = prompts[i];
        reqs[i].n_prompt = n_prompt[i];
        reqs[i].out = outs + (size_t)i * max_new_tokens;
        last[i] = prompts[i][n_prompt[i] - 1];
    }
    GenerateOptions o = {.max_new_tokens = max_new_tokens, .temperature = 0.0f, .top_p = 1.0f,
                         .seed = 0, .stop_token_a = c->tok->eos_id, .stop_token_b = -1,
                         .decoder = c->engine->ops->decoder(c->engine)};
    StopCheck sc = {c->tok, last, stops};
    GenerateStats st = {0};
    if ((rc = generate_batch(c->model, reqs, n, c->gen_batch, &o, stop_on_strings, &sc, &st, e)))
        goto done;
    c->gen_seconds += st.seconds;
    c->generated_tokens += st.generated_tokens;
    c->generated_samples += n;
    for (int i = 0; i < n && !rc; i++) {
        char *text = eval_decode(c->tok, last[i], reqs[i].out, reqs[i].n_out);
        if (!text) {
            rc = err_set(e, "out of memory");
            break;
        }
        size_t len = strlen(text);
        for (int k = 0; stops && stops[k]; k++) {
            char *hit = *stops[k] ? strstr(text, stops[k]) : NULL;
            if (hit && (size_t)(hit - text) < len) len = (size_t)(hit - text);
        }
        texts[i] = strip_dup(text, len);
        free(text);
        if (!texts[i]) rc = err_set(e, "out of memory");
    }
done:
    free(reqs);
    free(last);
    free(outs);
    if (rc)
        for (int i = 0; i < n; i++) free(texts[i]), texts[i] = NULL;
    return rc;
}

int eval_generate(EvalCtx *c, const char *const *contexts, int n, int max_new_tokens,
                  const char *const *stops, char **texts, Err *e) {
    int32_t **prompts = calloc((size_t)n + 1, sizeof *prompts);
    int *lens = calloc((size_t)n + 1, sizeof *lens);
    int rc = !prompts || !lens ? err_set(e, "out of memory") : 0;
    for (int i = 0; i < n && !rc; i++) {
        int nt;
        prompts[i] = malloc((strlen(contexts[i]) + 6) * sizeof(int32_t));
        if (!prompts[i]) rc = err_set(e, "out of memory");
        else rc = qa_encode(c->tok, contexts[i], "", prompts[i], &lens[i], &nt, e);
    }
    if (!rc) rc = eval_generate_tokens(c, prompts, lens, n, max_new_tokens, stops, texts, e);
    for (int i = 0; prompts && i < n; i++) free(prompts[i]);
    free(prompts);
    free(lens);
    return rc;
}

// ---- results store -----------------------------------------------------------------------

#define GROW(arr, n, cap)                                                                      \
    do {                                                                                       \
        if ((n) == (cap)) {                                                                    \
            int grown = (cap) ? 2 * (cap) : 16;                                                \
            void *p = realloc((arr), (size_t)grown * sizeof *(arr));                           \
            if (!p) return -1;                                                                 \
            (arr) = p;                                                                         \
            (cap) = grown;                                                                     \
        }                                                                                      \
    } while (0)

int eval_result_set(EvalResult *r, const char *key, double value) {
    for (int i = 0; i < r->n_values; i++)
        if (!strcmp(r->values[i].key, key)) {
            r->values[i].value = value;
            return 0;
        }
    GROW(r->values, r->n_values, r->cap_values);
    EvalValue *v = &r->values[r->n_values++];
    snprintf(v->key, sizeof v->key, "%s", key);
    v->value = value;
    return 0;
}

int eval_result_set_array(EvalResult *r, const char *key, const double *v, size_t n) {
    double *copy = malloc((n + 1) * sizeof *copy);
    if (!copy) return -1;
    if (n) memcpy(copy, v, n * sizeof *copy);
    for (int i = 0; i < r->n_arrays; i++)
        if (!strcmp(r->arrays[i].key, key)) {
            free(r->arrays[i].v);
            r->arrays[i].v = copy;
            r->arrays[i].n = n;
            return 0;
        }
    if (r->n_arrays == r->cap_arrays) {
        int grown = r->cap_arrays ? 2 * r->cap_arrays : 16;
        void *p = realloc(r->arrays, (size_t)grown * sizeof *r->arrays);
        if (!p) {
            free(copy);
            return -1;
        }
        r->arrays = p;
        r->cap_arrays = grown;
    }
    EvalArray *a = &r->arrays[r->n_arrays++];
    snprintf(a->key, sizeof a->key, "%s", key);
    a->v = copy;
    a->n = n;
    return 0;
}

int eval_result_set_texts(EvalResult *r, const char *key, char **texts, size_t n) {
    if (r->n_texts == r->cap_texts) {
        int grown = r->cap_texts ? 2 * r->cap_texts : 8;
        void *p = realloc(r->texts, (size_t)grown * sizeof *r->texts);
        if (!p) {
            for (size_t i = 0; i < n; i++) free(texts[i]);
            free(texts);
            return -1;
        }
        r->texts = p;
        r->cap_texts = grown;
    }
    EvalTexts *t = &r->texts[r->n_texts++];
    snprintf(t->key, sizeof t->key, "%s", key);
    t->texts = texts;
    t->n = n;
    return 0;
}

const double *eval_result_value(const EvalResult *r, const char *key) {
    for (int i = 0; i < r->n_values; i++)
        if (!strcmp(r->values[i].key, key)) return &r->values[i].value;
    return NULL;
}

const EvalArray *eval_result_array(const EvalResult *r, const char *key) {
    for (int i = 0; i < r->n_arrays; i++)
        if (!strcmp(r->arrays[i].key, key)) return &r->arrays[i];
    return NULL;
}

void eval_result_free(EvalResult *r) {
    free(r->values);
    for (int i = 0; i < r->n_arrays; i++) free(r->arrays[i].v);
    free(r->arrays);
    for (int i = 0; i < r->n_texts; i++) {
        for (size_t k = 0; k < r->texts[i].n; k++) free(r->texts[i].texts[k]);
        free(r->texts[i].texts);
    }
    free(r->texts);
    memset(r, 0, sizeof *r);
}
