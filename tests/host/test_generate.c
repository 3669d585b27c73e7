// Tests of host/generate: batched generation over KV caches gives, token for token, what a full
// forward without a cache gives (stories260K), for every max_batch; sampling is per request;
// every stop reason; plus a `bench` mode that reports tokens/s for docs/perf.md.
// Usage: test_generate MODE MODELS_DIR
//        test_generate bench MODELS_DIR MODEL(.bin|.h5) N_PROMPTS MAX_NEW MAX_BATCH...
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "llama.h"
#include "llama2c.h"
#include "tokenizer.h"

#include "check.h"

static char g_models[4096];
static LlamaModel g_model;
static Tokenizer g_tok;

// Prompts of different lengths and shapes; "" is BOS alone.
static const char *const PROMPTS[] = {
    "Once upon a time",
    "Lily and Ben",
    "",
    "The cat sat on the mat.",
    "Tom had a red ball. He liked to",
    "One day, a little girl named Sue went to the park with her mom. She saw a big",
    "Sam",
    "The sun was hot and the birds sang. A small dog ran",
    "Mom said",
    "Once there was a big tree in the forest. Many animals lived in it. One day, a bird",
    "Ben wanted a cookie",
    "The little boat",
    "Anna found a shiny stone",
    "It was a rainy day and Tim could not go outside. He was sad. His mom gave him a box of "
    "crayons and",
};
enum { N_PROMPTS = sizeof PROMPTS / sizeof PROMPTS[0], MAX_PROMPT = 512 };

static int32_t g_ids[N_PROMPTS][MAX_PROMPT];
static int g_n_ids[N_PROMPTS];

static int load_model(const char *path, LlamaModel *m) {
    Err e = {{0}};
    size_t len = strlen(path);
    if (len > 4 && !strcmp(path + len - 4, ".bin")) {
        ImportedModel im = {0};
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
    if (llama_load_file(m, path, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    return 0;
}

// stories260K and its tokenizer; the prompts encoded with BOS and the dummy prefix space.
static int setup(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/stories260K/stories260K.bin", g_models);
    if (load_model(path, &g_model)) return -1;
    snprintf(path, sizeof path, "%s/stories260K/tok512.bin", g_models);
    Err e = {{0}};
    if (tokenizer_read_llama2c(&g_tok, path, g_model.cfg.vocab_size, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    for (int i = 0; i < N_PROMPTS; i++) {
        if (strlen(PROMPTS[i]) + 3 > MAX_PROMPT) return -1;
        if (tokenizer_encode(&g_tok, PROMPTS[i], 1, 1, g_ids[i], &g_n_ids[i], &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return -1;
        }
    }
    return 0;
}

static void teardown(void) {
    llama_free(&g_model);
    tokenizer_free(&g_tok);
}

// n requests over the prompts (request i: prompt order[i]), each with max_new slots of output.
typedef struct {
    int n, max_new;
    GenerateRequest *r;
    int32_t *buf;
} Requests;

static int requests_make(Requests *q, const int *order, int n, int max_new) {
    q->n = n;
    q->max_new = max_new;
    q->r = calloc((size_t)n, sizeof *q->r);
    q->buf = calloc((size_t)n * (size_t)(max_new > 0 ? max_new : 1), sizeof(int32_t));
    if (!q->r || !q->buf) return -1;
    for (int i = 0; i < n; i++) {
        int p = order ? order[i] : i % N_PROMPTS;
        q->r[i] = (GenerateRequest){g_ids[p], g_n_ids[p], q->buf + (size_t)i * max_new, 0,
                                    GEN_RUNNING};
    }
    return 0;
}

static void requests_free(Requests *q) {
    free(q->r);
    free(q->buf);
}

static int same_output(const GenerateRequest *a, const GenerateRequest *b) {
    return a->n_out == b->n_out && a->stop == b->stop &&
           !memcmp(a->out, b->out, (size_t)a->n_out * sizeof(int32_t));
}

static int run_batch(Requests *q, int max_batch, const GenerateOptions *o, GenerateStopFn fn,
                     void *ctx, GenerateStats *st) {
    Err e = {{0}};
    if (generate_batch(&g_model, q->r, q->n, max_batch, o, fn, ctx, st, &e)) {
        fprintf(stderr, "generate_batch(max_batch %d): %s\n", max_batch, e.msg);
        return -1;
    }
    return 0;
}

static int run_nocache(Requests *q, const GenerateOptions *o, GenerateStopFn fn, void *ctx) {
    Err e = {{0}};
    for (int i = 0; i < q->n; i++)
        if (generate_nocache(&g_model, &q->r[i], i, o, fn, ctx, &e)) {
            fprintf(stderr, "generate_nocache(request %d): %s\n", i, e.msg);
            return -1;
        }
    return 0;
}

static GenerateOptions greedy_options(int max_new) {
    return (GenerateOptions){max_new, 0.0f, 1.0f, 0, g_model.cfg.eos_token_id,
                             g_model.cfg.bos_token_id, NULL, NULL};
}

static float max_abs_diff(const float *a, const float *b, int n) {
    float d = 0.0f;
    for (int i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

// Logits of the last position of tokens[0, n) through the cache: the prompt (n_prompt rows) in
// one step, then one row a step, as generate_batch feeds it.
static int cached_last_logits(const int32_t *tokens, int n_prompt, int n, float *logits) {
    Err e = {{0}};
    KVCache c;
    DecodeScratch s;
    if (kvcache_init(&c, &g_model, n, &e) || decode_scratch_init(&s, &g_model, n, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    KVCache *rows[MAX_PROMPT];
    uint8_t want[MAX_PROMPT] = {0};
    for (int i = 0; i < n_prompt; i++) rows[i] = &c;
    want[n_prompt - 1] = 1;
    int rc = llama_decode_batch(&g_model, rows, tokens, want, n_prompt, logits, &s, &e);
    for (int t = n_prompt; !rc && t < n; t++)
        rc = llama_decode_batch(&g_model, rows, tokens + t, NULL, 1, logits, &s, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    kvcache_free(&c);
    decode_scratch_free(&s);
    return rc;
}

// ---- greedy: every max_batch and generate() equal the generation without a cache ---------------

// Stops request i after limits[i] tokens: lengths that differ, so slots free up at different
// steps and continuous batching refills them.
static int stop_at_limit(const GenerateRequest *r, int index, void *ctx) {
    const int *limits = ctx;
    return r->n_out >= limits[index];
}

static int test_greedy_matches_nocache(void) {
    const int max_new = 96;
    GenerateOptions o = greedy_options(max_new);
    int limits[N_PROMPTS], shortest = MAX_PROMPT, longest = 0;
    for (int i = 0; i < N_PROMPTS; i++) {
        limits[i] = 48 + (i * 37) % 49; // 48 to 96
        shortest = g_n_ids[i] < shortest ? g_n_ids[i] : shortest;
        longest = g_n_ids[i] > longest ? g_n_ids[i] : longest;
    }
    Requests ref;
    REQUIRE(!requests_make(&ref, NULL, N_PROMPTS, max_new), "out of memory");
    REQUIRE(!run_nocache(&ref, &o, stop_at_limit, limits), "the reference generation failed");
    long ref_tokens = 0;
    int n_eos = 0;
    for (int i = 0; i < N_PROMPTS; i++) {
        ref_tokens += ref.r[i].n_out;
        n_eos += ref.r[i].stop == GEN_STOP_EOS;
    }
    printf("reference without a cache: %d prompts of %d to %d tokens, %ld tokens generated "
           "(%d stopped at EOS/BOS, the others at their 48 to 96 tokens)\n",
           N_PROMPTS, shortest, longest, ref_tokens, n_eos);

    const int batches[] = {1, 3, 8, 16};
    long compared = 0;
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        Requests q;
        GenerateStats st;
        REQUIRE(!requests_make(&q, NULL, N_PROMPTS, max_new), "out of memory");
        REQUIRE(!run_batch(&q, batches[b], &o, stop_at_limit, limits, &st),
                "generate_batch failed");
        int equal = 0;
        for (int i = 0; i < N_PROMPTS; i++) {
            CHECK(same_output(&q.r[i], &ref.r[i]),
                  "max_batch %d, request %d (\"%s\"): %d tokens (stop %d), the reference %d "
                  "(stop %d)",
                  batches[b], i, PROMPTS[i], q.r[i].n_out, q.r[i].stop, ref.r[i].n_out,
                  ref.r[i].stop);
            equal += same_output(&q.r[i], &ref.r[i]);
            compared += q.r[i].n_out;
        }
        CHECK(st.generated_tokens == ref_tokens, "stats count %ld tokens, not %ld",
              st.generated_tokens, ref_tokens);
        printf("max_batch %2d: %d/%d requests equal the reference token for token; %ld steps, "
               "%.1f rows a step\n",
               batches[b], equal, N_PROMPTS, st.steps, (double)st.rows / (double)st.steps);
        requests_free(&q);
    }
    // generate(), the single-prompt API of `lethe generate`, is a batch of one.
    for (int i = 0; i < N_PROMPTS; i++) {
        int32_t out[96];
        int n_out;
        Err e = {{0}};
        GenerateOptions go = o;
        go.max_new_tokens = limits[i];
        REQUIRE(!generate(&g_model, g_ids[i], g_n_ids[i], &go, out, &n_out, NULL, NULL, &e),
                "%s", e.msg);
        CHECK(n_out == ref.r[i].n_out && !memcmp(out, ref.r[i].out, (size_t)n_out * sizeof *out),
              "generate() on request %d differs from the reference", i);
        compared += n_out;
    }
    printf("ok: %ld generated tokens compared with the reference, all equal\n", compared);

    // Not luck: the logits of each request's last step, with and without the cache.
    const int V = g_model.cfg.vocab_size;
    float *cached = malloc((size_t)V * sizeof(float)), *full = malloc((size_t)V * sizeof(float));
    LlamaActs *acts = llama_acts_new();
    REQUIRE(cached && full && acts, "out of memory");
    float worst = 0.0f;
    for (int i = 0; i < N_PROMPTS; i++) {
        int32_t seq[MAX_PROMPT + 96];
        const GenerateRequest *r = &ref.r[i];
        int n = r->n_prompt + r->n_out; // the emitted tokens too: one step past the last one fed
        memcpy(seq, r->prompt, (size_t)r->n_prompt * sizeof *seq);
        memcpy(seq + r->n_prompt, r->out, (size_t)r->n_out * sizeof *seq);
        Err e = {{0}};
        REQUIRE(!cached_last_logits(seq, r->n_prompt, n, cached), "cached logits failed");
        REQUIRE(!llama_next_logits_nocache(&g_model, acts, seq, n, full, &e), "%s", e.msg);
        worst = fmaxf(worst, max_abs_diff(cached, full, V));
    }
    CHECK(worst < 1e-4f, "cached and uncached logits differ by %g", worst);
    printf("ok: final-step logits with and without the cache differ by at most %.3g (%d "
           "requests, %d logits each)\n",
           worst, N_PROMPTS, V);
    free(cached);
    free(full);
    llama_acts_free(acts);
    requests_free(&ref);
    return g_fail;
}

// ---- what the other rows of a step do to a row's logits ---------------------------------------

// dst becomes a copy of src (same capacity).
static void kvcache_copy(KVCache *dst, const KVCache *src, const ModelConfig *c) {
    size_t n = (size_t)c->num_hidden_layers * (size_t)src->capacity *
               (size_t)(c->num_key_value_heads * c->head_dim);
    memcpy(dst->k, src->k, n * sizeof(float));
    memcpy(dst->v, src->v, n * sizeof(float));
    dst->length = src->length;
}

typedef struct {
    int same_bits;
    float diff;
} RowCompare;

static void row_compare(RowCompare *rc, const float *a, const float *b, int V) {
    rc->same_bits += !memcmp(a, b, (size_t)V * sizeof(float));
    rc->diff = fmaxf(rc->diff, max_abs_diff(a, b, V));
}

// A one-row llama_decode_batch is llama_decode_step bit for bit. Rows of a bigger step are
// computed by OpenBLAS sgemm calls of more rows, whose kernels round differently depending on
// the row count and a row's place in it: the differences are reported and bounded, not zero.
static int test_rows_and_batch_size(void) {
    const int V = g_model.cfg.vocab_size, n = N_PROMPTS;
    const ModelConfig *cfg = &g_model.cfg;
    Err e = {{0}};
    // Each prompt: all prompts' rows in one step (together), the prompt alone in one step
    // (alone), token by token with llama_decode_step (stepped) and with one-row batches (single).
    KVCache together[N_PROMPTS], alone[N_PROMPTS], stepped[N_PROMPTS], single[N_PROMPTS];
    DecodeScratch s;
    REQUIRE(!decode_scratch_init(&s, &g_model, MAX_PROMPT, &e), "%s", e.msg);
    float *lt = malloc((size_t)n * V * sizeof(float)), *la = malloc((size_t)V * sizeof(float));
    float *ls = malloc((size_t)V * sizeof(float)), *l1 = malloc((size_t)V * sizeof(float));
    REQUIRE(lt && la && ls && l1, "out of memory");
    KVCache *rows[MAX_PROMPT];
    int32_t tok[MAX_PROMPT];
    uint8_t want[MAX_PROMPT];
    int m = 0;
    for (int i = 0; i < n; i++) {
        REQUIRE(!kvcache_init(&together[i], &g_model, 128, &e) &&
                    !kvcache_init(&alone[i], &g_model, 128, &e) &&
                    !kvcache_init(&stepped[i], &g_model, 128, &e) &&
                    !kvcache_init(&single[i], &g_model, 128, &e),
                "%s", e.msg);
        for (int t = 0; t < g_n_ids[i]; t++) {
            rows[m] = &together[i];
            tok[m] = g_ids[i][t];
            want[m++] = t + 1 == g_n_ids[i];
        }
    }
    REQUIRE(!llama_decode_batch(&g_model, rows, tok, want, m, lt, &s, &e), "%s", e.msg);
    RowCompare prompt_together = {0}, prompt_alone = {0}, decode = {0};
    int single_exact = 0, single_total = 0;
    for (int i = 0; i < n; i++) {
        KVCache *mine[MAX_PROMPT];
        for (int t = 0; t < g_n_ids[i]; t++) mine[t] = &alone[i];
        memset(want, 0, sizeof want);
        want[g_n_ids[i] - 1] = 1;
        REQUIRE(!llama_decode_batch(&g_model, mine, g_ids[i], want, g_n_ids[i], la, &s, &e),
                "%s", e.msg);
        for (int t = 0; t < g_n_ids[i]; t++) {
            KVCache *one = &single[i];
            REQUIRE(!llama_decode_step(&g_model, &stepped[i], g_ids[i][t], ls, &e), "%s", e.msg);
            REQUIRE(!llama_decode_batch(&g_model, &one, &g_ids[i][t], NULL, 1, l1, &s, &e), "%s",
                    e.msg);
            single_exact += !memcmp(ls, l1, (size_t)V * sizeof(float));
            single_total++;
        }
        row_compare(&prompt_together, lt + (size_t)i * V, la, V);
        row_compare(&prompt_alone, la, ls, V);
    }
    CHECK(single_exact == single_total, "one-row batches equal llama_decode_step at %d of %d "
          "positions", single_exact, single_total);
    printf("one-row llama_decode_batch vs llama_decode_step: %d/%d positions bit-identical\n",
           single_exact, single_total);
    printf("last prompt row, all %d prompts in one %d-row step vs the prompt alone in one step: "
           "%d/%d bit-identical, max |diff| %.3g\n",
           n, m, prompt_together.same_bits, n, prompt_together.diff);
    printf("last prompt row, the prompt in one step vs token by token: %d/%d bit-identical, max "
           "|diff| %.3g\n",
           prompt_alone.same_bits, n, prompt_alone.diff);
    // One decoding step over identical caches: n rows together vs one row each.
    for (int i = 0; i < n; i++) {
        kvcache_copy(&alone[i], &together[i], cfg);
        rows[i] = &together[i];
        tok[i] = 5 + i;
    }
    REQUIRE(!llama_decode_batch(&g_model, rows, tok, NULL, n, lt, &s, &e), "%s", e.msg);
    for (int i = 0; i < n; i++) {
        KVCache *one = &alone[i];
        REQUIRE(!llama_decode_batch(&g_model, &one, &tok[i], NULL, 1, la, &s, &e), "%s", e.msg);
        row_compare(&decode, lt + (size_t)i * V, la, V);
    }
    printf("a decoding step over the same caches, %d rows vs one row each: %d/%d bit-identical, "
           "max |diff| %.3g\n",
           n, decode.same_bits, n, decode.diff);
    CHECK(prompt_together.diff < 1e-4f && prompt_alone.diff < 1e-4f && decode.diff < 1e-4f,
          "a row's logits depend on the rest of the step by more than rounding");
    // A full cache refuses the step and keeps every cache as it was.
    KVCache small;
    REQUIRE(!kvcache_init(&small, &g_model, 2, &e), "%s", e.msg);
    rows[0] = &together[0];
    rows[1] = rows[2] = rows[3] = &small;
    int rc = llama_decode_batch(&g_model, rows, tok, NULL, 4, lt, &s, &e);
    CHECK(rc != 0 && strstr(e.msg, "row 3") && small.length == 0 &&
              together[0].length == g_n_ids[0] + 1,
          "overflow: rc %d, \"%s\", lengths %d and %d", rc, e.msg, small.length,
          together[0].length);
    printf("ok: an overflowing step fails (\"%s\") and changes no cache\n", e.msg);
    kvcache_free(&small);
    for (int i = 0; i < n; i++) {
        kvcache_free(&together[i]);
        kvcache_free(&alone[i]);
        kvcache_free(&stepped[i]);
        kvcache_free(&single[i]);
    }
    decode_scratch_free(&s);
    free(lt);
    free(la);
    free(ls);
    free(l1);
    return g_fail;
}

// ---- sampling: each request's stream is its own ------------------------------------------------

static int test_sampled_per_request(void) {
    const int max_new = 64;
    GenerateOptions o = {max_new, 0.8f, 0.9f, 1234, g_model.cfg.eos_token_id,
                         g_model.cfg.bos_token_id, NULL, NULL};
    // Requests 0 and 1 share a prompt: their streams must still differ.
    int order[N_PROMPTS + 1];
    order[0] = 0;
    for (int i = 1; i <= N_PROMPTS; i++) order[i] = i - 1;
    const int n = N_PROMPTS + 1;
    Requests one, eight, three, ref;
    REQUIRE(!requests_make(&one, order, n, max_new) && !requests_make(&eight, order, n, max_new) &&
                !requests_make(&three, order, n, max_new) &&
                !requests_make(&ref, order, n, max_new),
            "out of memory");
    REQUIRE(!run_batch(&one, 1, &o, NULL, NULL, NULL) &&
                !run_batch(&eight, 8, &o, NULL, NULL, NULL),
            "generate_batch failed");
    REQUIRE(!run_nocache(&ref, &o, NULL, NULL), "the reference generation failed");
    long tokens = 0;
    for (int i = 0; i < n; i++) {
        CHECK(same_output(&one.r[i], &eight.r[i]), "request %d: max_batch 1 and 8 differ", i);
        CHECK(same_output(&one.r[i], &ref.r[i]), "request %d: sampled with and without the cache "
              "differ", i);
        tokens += one.r[i].n_out;
    }
    printf("ok: sampled (T 0.8, top-p 0.9): max_batch 1, 8 and no cache give the same %ld tokens "
           "for %d requests\n", tokens, n);
    CHECK(!same_output(&one.r[0], &one.r[1]), "two requests with one prompt drew the same tokens");

    // Request 5 among other neighbours (every other prompt rotated), max_batch 3: same tokens.
    const int probe = 5;
    for (int i = 0; i < n; i++)
        if (i != probe) {
            int p = (order[i] + 7) % N_PROMPTS;
            three.r[i].prompt = g_ids[p];
            three.r[i].n_prompt = g_n_ids[p];
        }
    REQUIRE(!run_batch(&three, 3, &o, NULL, NULL, NULL), "generate_batch failed");
    CHECK(same_output(&three.r[probe], &one.r[probe]),
          "request %d changed with its neighbours in the batch", probe);
    printf("ok: request %d draws the same %d tokens among other requests at max_batch 3\n", probe,
           three.r[probe].n_out);

    // Another seed: other tokens.
    o.seed = 1235;
    REQUIRE(!run_batch(&eight, 8, &o, NULL, NULL, NULL), "generate_batch failed");
    int differ = 0;
    for (int i = 0; i < n; i++) differ += !same_output(&eight.r[i], &one.r[i]);
    CHECK(differ >= n - 1, "seed 1235 changed only %d of %d requests", differ, n);
    printf("ok: seed 1235 changes %d of %d requests\n", differ, n);
    requests_free(&one);
    requests_free(&eight);
    requests_free(&three);
    requests_free(&ref);
    return g_fail;
}

// ---- stops -----------------------------------------------------------------------------------

// Stops request i once it has 3 + i tokens.
static int stop_at_count(const GenerateRequest *r, int index, void *ctx) {
    int *calls = ctx;
    (*calls)++;
    return r->n_out >= 3 + index;
}

static int test_stops(void) {
    const int max_new = 40;
    GenerateOptions o = greedy_options(max_new);
    Requests ref, q;
    REQUIRE(!requests_make(&ref, NULL, N_PROMPTS, max_new), "out of memory");
    REQUIRE(!run_batch(&ref, 4, &o, NULL, NULL, NULL), "generate_batch failed");

    // The callback: request i stops at 3 + i tokens (unless EOS comes first).
    REQUIRE(!requests_make(&q, NULL, N_PROMPTS, max_new), "out of memory");
    int calls = 0;
    REQUIRE(!run_batch(&q, 5, &o, stop_at_count, &calls, NULL), "generate_batch failed");
    int expect_calls = 0;
    for (int i = 0; i < N_PROMPTS; i++) {
        const GenerateRequest *r = &q.r[i], *f = &ref.r[i];
        int want = f->n_out < 3 + i ? f->n_out : 3 + i;
        GenerateStop why = f->n_out < 3 + i ? f->stop : GEN_STOP_CALLBACK;
        CHECK(r->n_out == want && r->stop == why && !memcmp(r->out, f->out, (size_t)want * 4),
              "callback: request %d has %d tokens (stop %d), want %d (stop %d)", i, r->n_out,
              r->stop, want, why);
        expect_calls += r->n_out;
    }
    CHECK(calls == expect_calls, "the callback ran %d times for %d tokens", calls, expect_calls);
    requests_free(&q);
    printf("ok: a stop callback stops request i at 3 + i tokens, called once per token\n");

    // EOS: a token of request 0's greedy text as the stop token ends it just before.
    REQUIRE(ref.r[0].n_out > 12, "request 0 made only %d tokens", ref.r[0].n_out);
    int32_t stop_tok = ref.r[0].out[12];
    int first = 0;
    while (ref.r[0].out[first] != stop_tok) first++;
    GenerateOptions eo = o;
    eo.stop_token_a = -1;
    eo.stop_token_b = stop_tok;
    REQUIRE(!requests_make(&q, NULL, 1, max_new), "out of memory");
    REQUIRE(!run_batch(&q, 1, &eo, NULL, NULL, NULL), "generate_batch failed");
    CHECK(q.r[0].stop == GEN_STOP_EOS && q.r[0].n_out == first &&
              !memcmp(q.r[0].out, ref.r[0].out, (size_t)first * 4),
          "stop token %d: %d tokens (stop %d), want %d (EOS)", stop_tok, q.r[0].n_out, q.r[0].stop,
          first);
    requests_free(&q);
    int natural = 0;
    for (int i = 0; i < N_PROMPTS; i++) natural += ref.r[i].stop == GEN_STOP_EOS;
    printf("ok: stop token %d ends request 0 after %d tokens, not emitted (%d of %d requests "
           "stopped at the model's own EOS/BOS within %d tokens)\n",
           stop_tok, first, natural, N_PROMPTS, max_new);

    // Max tokens, and max_new_tokens 0.
    GenerateOptions mo = o;
    mo.max_new_tokens = 7;
    REQUIRE(!requests_make(&q, NULL, N_PROMPTS, 7), "out of memory");
    REQUIRE(!run_batch(&q, 16, &mo, NULL, NULL, NULL), "generate_batch failed");
    for (int i = 0; i < N_PROMPTS; i++)
        if (ref.r[i].n_out >= 7)
            CHECK(q.r[i].n_out == 7 && q.r[i].stop == GEN_STOP_MAX_TOKENS &&
                      !memcmp(q.r[i].out, ref.r[i].out, 7 * 4),
                  "max tokens: request %d has %d tokens, stop %d", i, q.r[i].n_out, q.r[i].stop);
    mo.max_new_tokens = 0;
    REQUIRE(!run_batch(&q, 16, &mo, NULL, NULL, NULL), "generate_batch failed");
    for (int i = 0; i < N_PROMPTS; i++)
        CHECK(q.r[i].n_out == 0 && q.r[i].stop == GEN_STOP_MAX_TOKENS,
              "max_new_tokens 0: request %d has %d tokens", i, q.r[i].n_out);
    requests_free(&q);
    printf("ok: max_new_tokens 7 stops at 7 tokens, 0 at none\n");

    // The context: prompts of context-3 and context tokens, greedy without stop tokens.
    const int P = g_model.cfg.max_position_embeddings;
    int32_t *longp = malloc((size_t)(P + 5) * sizeof(int32_t));
    REQUIRE(longp, "out of memory");
    longp[0] = g_model.cfg.bos_token_id;
    for (int t = 1; t < P + 5; t++) longp[t] = g_ids[13][1 + (t - 1) % (g_n_ids[13] - 1)];
    GenerateOptions co = o;
    co.max_new_tokens = 10;
    co.stop_token_a = co.stop_token_b = -1;
    int32_t out[3][10];
    GenerateRequest cr[3] = {{longp, P - 3, out[0], 0, GEN_RUNNING},
                             {g_ids[0], g_n_ids[0], out[1], 0, GEN_RUNNING},
                             {longp, P, out[2], 0, GEN_RUNNING}};
    Err e = {{0}};
    REQUIRE(!generate_batch(&g_model, cr, 3, 2, &co, NULL, NULL, NULL, &e), "%s", e.msg);
    CHECK(cr[0].n_out == 3 && cr[0].stop == GEN_STOP_CONTEXT,
          "a %d-token prompt: %d tokens, stop %d (want 3, context)", P - 3, cr[0].n_out,
          cr[0].stop);
    CHECK(cr[1].n_out == 10 && cr[1].stop == GEN_STOP_MAX_TOKENS,
          "its neighbour: %d tokens, stop %d", cr[1].n_out, cr[1].stop);
    CHECK(cr[2].n_out == 0 && cr[2].stop == GEN_STOP_CONTEXT,
          "a prompt of the whole context: %d tokens, stop %d", cr[2].n_out, cr[2].stop);
    int32_t nc_out[10];
    GenerateRequest nc = {longp, P - 3, nc_out, 0, GEN_RUNNING};
    REQUIRE(!generate_nocache(&g_model, &nc, 0, &co, NULL, NULL, &e), "%s", e.msg);
    CHECK(same_output(&nc, &cr[0]), "at the context's end the cache and the reference differ");
    printf("ok: prompts of %d and %d tokens stop at the %d-position context after 3 and 0 "
           "tokens (as without the cache)\n", P - 3, P, P);

    // A prompt longer than the context, and an empty one: errors naming the request.
    GenerateRequest bad[3] = {cr[1], cr[1], {longp, P + 5, out[2], 0, GEN_RUNNING}};
    int rc = generate_batch(&g_model, bad, 3, 2, &co, NULL, NULL, NULL, &e);
    char want_msg[128];
    snprintf(want_msg, sizeof want_msg, "request 2: the prompt has %d tokens, more than the "
             "model's context of %d positions", P + 5, P);
    CHECK(rc != 0 && !strcmp(e.msg, want_msg), "got \"%s\"", e.msg);
    printf("ok: %s\n", e.msg);
    bad[1].n_prompt = 0;
    rc = generate_batch(&g_model, bad, 2, 2, &co, NULL, NULL, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "request 1 has an empty prompt"), "got \"%s\"", e.msg);
    printf("ok: %s\n", e.msg);
    free(longp);
    requests_free(&ref);
    return g_fail;
}

// ---- tokens/s for docs/perf.md ---------------------------------------------------------------

// Greedy, no stop tokens: every request makes max_new tokens (capped by the context). Checks
// that every max_batch gives the tokens of the first.
static int bench(const char *model_path, int n, int max_new, const int *batches, int nb) {
    LlamaModel m = {0};
    REQUIRE(!load_model(model_path, &m), "cannot load %s", model_path);
    llama_free(&g_model);
    g_model = m;
    GenerateOptions o = greedy_options(max_new);
    o.stop_token_a = o.stop_token_b = -1;
    Requests first = {0};
    for (int b = 0; b < nb; b++) {
        Requests q;
        GenerateStats st;
        REQUIRE(!requests_make(&q, NULL, n, max_new), "out of memory");
        REQUIRE(!run_batch(&q, batches[b], &o, NULL, NULL, &st), "generate_batch failed");
        int same = 0;
        if (b == 0) first = q;
        for (int i = 0; i < n; i++) same += same_output(&q.r[i], &first.r[i]);
        printf("%s: %d prompts (%ld prompt tokens), max_batch %2d: %ld tokens in %.3f s = %.1f "
               "generated tokens/s (%.1f incl. prompt), %.1f rows/step; %d/%d outputs equal "
               "max_batch %d's\n",
               model_path, n, st.prompt_tokens, batches[b], st.generated_tokens, st.seconds,
               (double)st.generated_tokens / st.seconds,
               (double)(st.generated_tokens + st.prompt_tokens) / st.seconds,
               (double)st.rows / (double)st.steps, same, n, batches[0]);
        CHECK(same == n, "max_batch %d changed %d outputs", batches[b], n - same);
        if (b > 0) requests_free(&q);
    }
    requests_free(&first);
    return g_fail;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE MODELS_DIR [bench: MODEL N_PROMPTS MAX_NEW BATCH...]\n",
                argv[0]);
        return 2;
    }
    snprintf(g_models, sizeof g_models, "%s", argv[2]);
    const char *mode = argv[1];
    if (setup()) return 1;
    int rc;
    if (!strcmp(mode, "greedy_matches_nocache")) rc = test_greedy_matches_nocache();
    else if (!strcmp(mode, "rows_and_batch_size")) rc = test_rows_and_batch_size();
    else if (!strcmp(mode, "sampled_per_request")) rc = test_sampled_per_request();
    else if (!strcmp(mode, "stops")) rc = test_stops();
    else if (!strcmp(mode, "bench") && argc >= 7) {
        int batches[16], nb = 0;
        for (int i = 6; i < argc && nb < 16; i++) batches[nb++] = atoi(argv[i]);
        rc = bench(argv[3], atoi(argv[4]), atoi(argv[5]), batches, nb);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        teardown();
        return 2;
    }
    teardown();
    printf("%s: %s\n", mode, rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
