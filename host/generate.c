// Autoregressive decoding over KV caches (llama_decode_batch): many requests in continuous
// batches, greedy or seeded sampling; and the same without a cache, the tests' reference.
#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"

// Prompt rows a step may carry beyond the running sequences' rows. GEMMs of this many rows are
// already compute-bound, and a step stays short enough not to hold the running sequences up.
#define GEN_PREFILL_ROWS 128

int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    float p;
    int id;
} ProbIndex;

static int by_prob_desc(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

// Samples from softmax(logits / temperature) restricted to the smallest set of most likely
// tokens whose mass reaches top_p (Holtzman et al. 2019).
static int sample(float *logits, int V, float temperature, float top_p, Rng *rng,
                  ProbIndex *work) {
    float maxv = logits[argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        logits[i] = expf((logits[i] - maxv) / temperature);
        sum += logits[i];
    }
    int n = V;
    for (int i = 0; i < V; i++) work[i] = (ProbIndex){(float)(logits[i] / sum), i};
    if (top_p < 1.0f) {
        qsort(work, (size_t)V, sizeof *work, by_prob_desc);
        double cum = 0.0;
        for (n = 0; n < V;) {
            cum += work[n++].p;
            if (cum >= top_p) break;
        }
        sum = cum;
    } else {
        sum = 1.0;
    }
    double r = (double)rng_uniform(rng) * sum, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += work[i].p;
        if (r < cum) return work[i].id;
    }
    return work[n - 1].id;
}

// Request i's own stream: seed ^ mix(i), mix being splitmix64's finaliser, a bijection with
// mix(0) = 0, so request 0 draws what generate() always drew with the same seed, and streams of
// neighbouring requests are not shifted copies of each other (seed + i would be: rng_seed steps
// splitmix64 by the same increment).
static void request_rng(Rng *rng, uint64_t seed, int index) {
    uint64_t z = (uint64_t)index;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    rng_seed(rng, seed ^ (z ^ (z >> 31)));
}

static int check_request(const ModelConfig *cfg, const GenerateRequest *r, int index,
                         const GenerateOptions *o, Err *e) {
    if (r->n_prompt <= 0 || !r->prompt)
        return err_set(e, "request %d has an empty prompt; it needs at least BOS", index);
    if (r->n_prompt > cfg->max_position_embeddings)
        return err_set(e,
                       "request %d: the prompt has %d tokens, more than the model's context of "
                       "%d positions",
                       index, r->n_prompt, cfg->max_position_embeddings);
    for (int t = 0; t < r->n_prompt; t++)
        if (r->prompt[t] < 0 || r->prompt[t] >= cfg->vocab_size)
            return err_set(e, "request %d: prompt token %d has id %d, not below vocab_size %d",
                           index, t, r->prompt[t], cfg->vocab_size);
    if (o->max_new_tokens > 0 && !r->out)
        return err_set(e, "request %d has no output buffer", index);
    return 0;
}

// Whether a request can produce a token at all; if not, it is finished before any work.
static GenerateStop stop_before_start(const GenerateRequest *r, const GenerateOptions *o,
                                      int context) {
    if (o->max_new_tokens <= 0) return GEN_STOP_MAX_TOKENS;
    if (r->n_prompt >= context) return GEN_STOP_CONTEXT;
    return GEN_RUNNING;
}

// Picks r's next token from its logits (overwritten when sampling) and applies the stops.
static GenerateStop advance(GenerateRequest *r, int index, float *logits, int V,
                            const GenerateOptions *o, int context, Rng *rng, ProbIndex *work,
                            GenerateStopFn stop_fn, void *ctx) {
    int next = o->temperature <= 0.0f ? argmax(logits, V)
                                      : sample(logits, V, o->temperature, o->top_p, rng, work);
    if (next == o->stop_token_a || next == o->stop_token_b) return r->stop = GEN_STOP_EOS;
    r->out[r->n_out++] = next;
    if (stop_fn && stop_fn(r, index, ctx)) return r->stop = GEN_STOP_CALLBACK;
    if (r->n_out >= o->max_new_tokens) return r->stop = GEN_STOP_MAX_TOKENS;
    if (r->n_prompt + r->n_out >= context) return r->stop = GEN_STOP_CONTEXT;
    return r->stop = GEN_RUNNING;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// A batch slot: the request it decodes (-1: free) and how much of its prompt is in the cache.
typedef struct {
    int req;
    int fed;
    Rng rng;
} Slot;

int generate_batch(const LlamaModel *m, GenerateRequest *reqs, int n, int max_batch,
                   const GenerateOptions *o, GenerateStopFn stop_fn, void *ctx,
                   GenerateStats *stats, Err *e) {
    const double t0 = now_seconds();
    const int V = m->cfg.vocab_size, context = m->cfg.max_position_embeddings;
    GenerateStats st = {0};
    if (n < 0 || max_batch < 1)
        return err_set(e, "generation of %d requests with max_batch %d: want n >= 0 and "
                          "max_batch >= 1", n, max_batch);
    // Caches are sized once for the longest sequence any request can reach.
    int need = 0;
    for (int i = 0; i < n; i++) {
        if (check_request(&m->cfg, &reqs[i], i, o, e)) return -1;
        reqs[i].n_out = 0;
        reqs[i].stop = stop_before_start(&reqs[i], o, context);
        if (reqs[i].stop != GEN_RUNNING) continue;
        const int room = context - reqs[i].n_prompt;
        const int len = reqs[i].n_prompt + (o->max_new_tokens < room ? o->max_new_tokens : room);
        if (len > need) need = len;
    }
    const int n_slots = n < max_batch ? n : max_batch;
    const int max_rows = n_slots + GEN_PREFILL_ROWS;
    Slot *slots = NULL;
    KVCache *caches = NULL;
    KVCache **row_cache = NULL;
    int32_t *row_token = NULL;
    uint8_t *row_want = NULL;
    int *row_slot = NULL;
    int32_t *row_pos = NULL;
    float *logits = NULL;
    ProbIndex *work = NULL;
    DecodeScratch scratch = {0};
    int rc = 0;
    if (need == 0) goto done; // nothing to decode
    slots = malloc((size_t)n_slots * sizeof *slots);
    caches = calloc((size_t)n_slots, sizeof *caches);
    row_cache = malloc((size_t)max_rows * sizeof *row_cache);
    row_token = malloc((size_t)max_rows * sizeof *row_token);
    row_want = malloc((size_t)max_rows);
    row_slot = malloc((size_t)max_rows * sizeof *row_slot);
    row_pos = malloc((size_t)max_rows * sizeof *row_pos);
    logits = malloc((size_t)n_slots * (size_t)V * sizeof(float));
    work = malloc((size_t)V * sizeof *work);
    if (!slots || !caches || !row_cache || !row_token || !row_want || !row_slot || !row_pos ||
        !logits || !work) {
        rc = err_set(e, "out of memory for a generation batch of %d", n_slots);
        goto done;
    }
    if (o->decoder && o->q8) {
        rc = err_set(e, "int8 decoding (q8) runs on the CPU only");
        goto done;
    }
    // With an external decoder the caches here only count positions (k, v stay NULL).
    for (int s = 0; s < n_slots; s++) {
        slots[s].req = -1;
        if (o->decoder)
            caches[s].capacity = need;
        else if ((rc = kvcache_init(&caches[s], m, need, e)))
            goto done;
    }
    if (o->decoder)
        rc = o->decoder->reserve(o->decoder, n_slots, need, max_rows, e);
    else
        rc = decode_scratch_init(&scratch, m, max_rows, e);
    if (rc) goto done;

    int next = 0, running = 0;
    for (;;) {
        for (int s = 0; s < n_slots; s++) {
            while (slots[s].req < 0 && next < n) {
                const int i = next++;
                if (reqs[i].stop != GEN_RUNNING) continue; // finished before starting
                slots[s].req = i;
                slots[s].fed = 0;
                caches[s].length = 0;
                request_rng(&slots[s].rng, o->seed, i);
                running++;
            }
        }
        if (running == 0) break;
        // Rows: each running sequence's last token, then prompt chunks of the starting ones.
        int rows = 0;
        for (int s = 0; s < n_slots; s++) {
            const GenerateRequest *r = slots[s].req >= 0 ? &reqs[slots[s].req] : NULL;
            if (!r || slots[s].fed < r->n_prompt) continue;
            row_cache[rows] = &caches[s];
            row_token[rows] = r->out[r->n_out - 1];
            row_want[rows] = 1;
            row_slot[rows++] = s;
        }
        for (int s = 0; s < n_slots && rows < max_rows; s++) {
            const GenerateRequest *r = slots[s].req >= 0 ? &reqs[slots[s].req] : NULL;
            if (!r || slots[s].fed == r->n_prompt) continue;
            int k = r->n_prompt - slots[s].fed;
            if (k > max_rows - rows) k = max_rows - rows;
            for (int j = 0; j < k; j++) {
                const int t = slots[s].fed++;
                row_cache[rows] = &caches[s];
                row_token[rows] = r->prompt[t];
                row_want[rows] = t + 1 == r->n_prompt; // the prompt's last row predicts
                row_slot[rows++] = s;
            }
            st.prompt_tokens += k;
        }
        if (o->decoder) {
            // Positions as llama_decode_batch takes them: each row its cache's next free one.
            for (int r = 0; r < rows; r++) {
                row_pos[r] = row_cache[r]->length++;
                if (row_pos[r] >= row_cache[r]->capacity) {
                    rc = err_set(e, "row %d: the sequence reached %d positions, its cache's "
                                    "capacity", r, row_cache[r]->capacity);
                    goto done;
                }
            }
            rc = o->decoder->decode(o->decoder, row_slot, row_pos, row_token, row_want, rows,
                                    logits, e);
        } else if (o->q8) {
            rc = llama_q8_decode_batch(m, o->q8, row_cache, row_token, row_want, rows, logits, e);
        } else {
            rc = llama_decode_batch(m, row_cache, row_token, row_want, rows, logits, &scratch, e);
        }
        if (rc) goto done;
        st.steps++;
        st.rows += rows;
        // The wanted rows, in row order, are one slot each: its next-token distribution.
        int li = 0;
        for (int r = 0; r < rows; r++) {
            if (!row_want[r]) continue;
            Slot *sl = &slots[row_slot[r]];
            const int i = sl->req;
            if (advance(&reqs[i], i, logits + (size_t)li++ * V, V, o, context, &sl->rng, work,
                        stop_fn, ctx) != GEN_RUNNING) {
                sl->req = -1;
                running--;
            }
        }
    }
done:
    if (caches)
        for (int s = 0; s < n_slots; s++) kvcache_free(&caches[s]);
    decode_scratch_free(&scratch);
    free(slots);
    free(caches);
    free(row_cache);
    free(row_token);
    free(row_want);
    free(row_slot);
    free(row_pos);
    free(logits);
    free(work);
    if (stats) {
        for (int i = 0; i < n; i++) st.generated_tokens += reqs[i].n_out;
        st.seconds = now_seconds() - t0;
        *stats = st;
    }
    return rc;
}

int generate_nocache(const LlamaModel *m, GenerateRequest *r, int index, const GenerateOptions *o,
                     GenerateStopFn stop_fn, void *ctx, Err *e) {
    const int V = m->cfg.vocab_size, context = m->cfg.max_position_embeddings;
    if (check_request(&m->cfg, r, index, o, e)) return -1;
    if (o->q8) return err_set(e, "int8 decoding has no reference without a KV cache");
    r->n_out = 0;
    r->stop = stop_before_start(r, o, context);
    if (r->stop != GEN_RUNNING) return 0;
    // The prefix grows by each emitted token; the last one is never fed.
    int32_t *seq = malloc(((size_t)r->n_prompt + (size_t)o->max_new_tokens) * sizeof(int32_t));
    float *logits = malloc((size_t)V * sizeof(float));
    ProbIndex *work = malloc((size_t)V * sizeof *work);
    LlamaActs *acts = llama_acts_new();
    int rc = 0;
    if (!seq || !logits || !work || !acts) {
        rc = err_set(e, "out of memory");
        goto done;
    }
    memcpy(seq, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    Rng rng;
    request_rng(&rng, o->seed, index);
    while (r->stop == GEN_RUNNING) {
        if ((rc = llama_next_logits_nocache(m, acts, seq, r->n_prompt + r->n_out, logits, e)))
            goto done;
        advance(r, index, logits, V, o, context, &rng, work, stop_fn, ctx);
        if (r->n_out > 0) seq[r->n_prompt + r->n_out - 1] = r->out[r->n_out - 1];
    }
done:
    free(seq);
    free(logits);
    free(work);
    llama_acts_free(acts);
    return rc;
}

// generate()'s per-token callback, carried by the stop function of a batch of one.
typedef struct {
    GenerateCallback on_token;
    void *ctx;
} TokenSink;

static int emit_token(const GenerateRequest *r, int index, void *ctx) {
    (void)index;
    const TokenSink *sink = ctx;
    sink->on_token(r->out[r->n_out - 1], sink->ctx);
    return 0;
}

int generate(const LlamaModel *m, const int32_t *prompt, int n_prompt, const GenerateOptions *o,
             int32_t *out, int *n_out, GenerateCallback on_token, void *ctx, Err *e) {
    GenerateRequest r = {prompt, n_prompt, out, 0, GEN_RUNNING};
    TokenSink sink = {on_token, ctx};
    int rc = generate_batch(m, &r, 1, 1, o, on_token ? emit_token : NULL, &sink, NULL, e);
    *n_out = r.n_out;
    return rc;
}
