// The step scheduler (see train.h). The data order is a pure function of (seed, step): anchor
// batches walk a seeded permutation per epoch, retain batches walk seeded permutations that
// cycle the retain set. So a run state needs only parameters, moments and the step, and a
// resumed run computes exactly what the uninterrupted one would have.
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dataset.h"
#include "engine.h"
#include "llama.h"
#include "model_file.h"
#include "objective.h"
#include "optim.h"
#include "rng.h"
#include "run_state.h"
#include "sha256.h"
#include "strbuf.h"
#include "textfile.h"
#include "timing.h"

static volatile sig_atomic_t g_stop_signal = 0;
static char g_last_device[360];
static int g_last_device_gpu;
static size_t g_last_device_peak;

size_t train_last_device_peak(void) { return g_last_device_peak; }

const char *train_last_device(int *is_gpu) {
    if (is_gpu) *is_gpu = g_last_device_gpu;
    return g_last_device;
}

static void on_stop_signal(int sig) { g_stop_signal = sig; }

void train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ---- data order -------------------------------------------------------------------------------

// Fisher-Yates permutation of 0..n-1 from a stream seeded by (seed, stream, index).
static void seeded_permutation(int64_t *perm, int64_t n, int64_t seed, uint64_t stream,
                               int64_t index) {
    Rng r;
    rng_seed(&r, (uint64_t)seed * 0x9E3779B97F4A7C15ull ^ stream * 0xD1B54A32D192ED03ull ^
                     (uint64_t)index);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(&r) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

enum { STREAM_ANCHOR = 1, STREAM_RETAIN = 2 };

// The samples of the anchor batch of `step`: the epoch's permutation, batch j of it.
static int64_t anchor_batch(int64_t *out, int64_t *perm, int64_t n, int64_t bs, int64_t seed,
                            int64_t step) {
    const int64_t per_epoch = (n + bs - 1) / bs;
    const int64_t epoch = step / per_epoch, j = step % per_epoch;
    seeded_permutation(perm, n, seed, STREAM_ANCHOR, epoch);
    int64_t k = 0;
    for (int64_t i = j * bs; i < n && i < (j + 1) * bs; i++) out[k++] = perm[i];
    return k;
}

// `count` retain samples at positions [step*bs, step*bs + count) of the endless sequence of
// seeded permutations of the retain set (cycle c uses permutation c).
static void retain_batch(int64_t *out, int64_t *perm, int64_t n, int64_t bs, int64_t count,
                         int64_t seed, int64_t step) {
    int64_t cycle = -1;
    for (int64_t k = 0; k < count; k++) {
        int64_t pos = step * bs + k, c = pos / n;
        if (c != cycle) {
            seeded_permutation(perm, n, seed, STREAM_RETAIN, c);
            cycle = c;
        }
        out[k] = perm[pos % n];
    }
}

// ---- packed micro-batches ---------------------------------------------------------------------

typedef struct {
    int32_t *tokens;
    uint8_t *mask;
    int64_t *offsets;
    size_t cap_tokens;
    int cap_samples;
} PackBuf;

static int64_t sample_len(const TokenDataset *d, int64_t i) {
    return d->offsets[i + 1] - d->offsets[i];
}

// Target count of a sample: positions t (not the first) with loss_mask[t] = 1.
static int sample_targets(const TokenDataset *d, int64_t i) {
    int n = 0;
    for (int64_t t = d->offsets[i] + 1; t < d->offsets[i + 1]; t++) n += d->loss_mask[t];
    return n;
}

// Packs samples idx[0..count) of d into pb and describes them in b; with d2 (pairs), the same
// samples of d2 follow: batch sample count + k is d2's sample idx[k].
static int pack2(PackBuf *pb, const TokenDataset *d, const TokenDataset *d2, const int64_t *idx,
                 int count, Batch *b, Err *e) {
    size_t total = 0;
    for (int k = 0; k < count; k++)
        total += (size_t)sample_len(d, idx[k]) + (d2 ? (size_t)sample_len(d2, idx[k]) : 0);
    const int samples = d2 ? 2 * count : count;
    if (total > pb->cap_tokens || samples > pb->cap_samples) {
        size_t ct = total > pb->cap_tokens ? total : pb->cap_tokens;
        int cs = samples > pb->cap_samples ? samples : pb->cap_samples;
        int32_t *t = realloc(pb->tokens, ct * sizeof *t);
        if (t) pb->tokens = t;
        uint8_t *m = realloc(pb->mask, ct);
        if (m) pb->mask = m;
        int64_t *o = realloc(pb->offsets, ((size_t)cs + 1) * sizeof *o);
        if (o) pb->offsets = o;
        if (!t || !m || !o) return err_set(e, "out of memory packing a batch");
        pb->cap_tokens = ct;
        pb->cap_samples = cs;
    }
    size_t at = 0;
    pb->offsets[0] = 0;
    for (int k = 0; k < samples; k++) {
        const TokenDataset *from = k < count ? d : d2;
        const int64_t i = idx[k < count ? k : k - count];
        int64_t a = from->offsets[i], n = sample_len(from, i);
        memcpy(pb->tokens + at, from->tokens + a, (size_t)n * sizeof(int32_t));
        memcpy(pb->mask + at, from->loss_mask + a, (size_t)n);
        at += (size_t)n;
        pb->offsets[k + 1] = (int64_t)at;
    }
    *b = (Batch){samples, at, pb->tokens, pb->offsets, pb->mask};
    return 0;
}

static int pack(PackBuf *pb, const TokenDataset *d, const int64_t *idx, int count, Batch *b,
                Err *e) {
    return pack2(pb, d, NULL, idx, count, b, e);
}

static void pack_free(PackBuf *pb) {
    free(pb->tokens);
    free(pb->mask);
    free(pb->offsets);
}

// How many of idx[0..count) go into the next micro-batch: at most micro samples and at most
// budget tokens (a single longer sample still goes alone). With d2, a sample counts with its
// pair's tokens.
static int micro_take2(const TokenDataset *d, const TokenDataset *d2, const int64_t *idx,
                       int count, int64_t micro, int64_t budget) {
    int k = 0;
    int64_t tokens = 0;
    while (k < count && k < micro) {
        int64_t n = sample_len(d, idx[k]) + (d2 ? sample_len(d2, idx[k]) : 0);
        if (k > 0 && tokens + n > budget) break;
        tokens += n;
        k++;
    }
    return k;
}

static int micro_take(const TokenDataset *d, const int64_t *idx, int count, int64_t micro,
                      int64_t budget) {
    return micro_take2(d, NULL, idx, count, micro, budget);
}

// ---- the run ----------------------------------------------------------------------------------

typedef struct {
    const RunConfig *c;
    const Method *method;
    ObjectiveParams op;
    LlamaModel model; // the host copy: what the engine computes on (cpu) or mirrors (cuda)
    Engine *engine;
    TokenDataset anchor, retain, eval_forget, eval_retain;
    TokenDataset alt; // data.forget_alt: the preferred answers of paired methods (idkdpo)
    int have_retain, have_eval_forget, have_eval_retain, have_alt;
    double *ref_sums; // cached s_i^ref of the anchor set (NPO family); paired methods: then the
                      // alt set's, (2 anchor.n_samples) in all
    float *control;   // rmu: the forget states' target c * u (hidden_size floats)
    float *weights;   // per-target weights of one micro-batch
    size_t cap_weights;
    double *s;        // per-sample sums of one micro-batch
    int *n;
    int cap_samples;
    int64_t *idx, *perm, *ridx, *rperm;
    PackBuf pack;
    Optimizer opt;
} Run;

static int ensure_micro_buffers(Run *r, int samples, size_t targets, Err *e) {
    if (samples > r->cap_samples) {
        double *s = realloc(r->s, (size_t)samples * sizeof *s);
        if (s) r->s = s;
        int *n = realloc(r->n, (size_t)samples * sizeof *n);
        if (n) r->n = n;
        if (!s || !n) return err_set(e, "out of memory");
        r->cap_samples = samples;
    }
    if (targets > r->cap_weights) {
        float *w = realloc(r->weights, targets * sizeof *w);
        if (!w) return err_set(e, "out of memory");
        r->weights = w;
        r->cap_weights = targets;
    }
    return 0;
}

// Forward of samples 0..n-1 of a dataset in packed micro-batches under r->model: each sample's
// target log-prob sum into sums[i] and (when counts is not NULL) its target count.
static int forward_samples(Run *r, const TokenDataset *d, int64_t n, double *sums, int *counts,
                           Err *e) {
    for (int64_t i0 = 0; i0 < n;) {
        int64_t idx[256];
        int count = 0;
        for (int64_t i = i0; i < n && count < 256; i++) idx[count++] = i;
        count = micro_take(d, idx, count, r->c->micro_batch_size, r->c->max_batch_tokens);
        Batch b;
        if (pack(&r->pack, d, idx, count, &b, e) ||
            r->engine->ops->forward(r->engine, &b, sums + i0, counts ? counts + i0 : NULL, e))
            return -1;
        i0 += count;
    }
    return 0;
}

// Mean NLL per target token of a dataset (or its first `limit` samples) under r->model.
static int dataset_nll(Run *r, const TokenDataset *d, int64_t limit, double *nll, Err *e) {
    const int64_t n = d->n_samples < limit ? d->n_samples : limit;
    double *sums = malloc((size_t)n * sizeof *sums);
    int *counts = malloc((size_t)n * sizeof *counts);
    int rc = !sums || !counts ? err_set(e, "out of memory")
                              : forward_samples(r, d, n, sums, counts, e);
    if (rc == 0) {
        double total = 0.0;
        int64_t targets = 0;
        for (int64_t i = 0; i < n; i++) total += sums[i], targets += counts[i];
        *nll = targets ? -total / (double)targets : NAN;
    }
    free(sums);
    free(counts);
    return rc;
}

// s_i^ref of every anchor sample (and of every alt sample, after them) under the (still
// unchanged) start model.
static int compute_ref_sums(Run *r, Err *e) {
    const int64_t n = r->anchor.n_samples;
    r->ref_sums = calloc((size_t)n * (r->have_alt ? 2 : 1), sizeof(double));
    if (!r->ref_sums) return err_set(e, "out of memory");
    return forward_samples(r, &r->anchor, n, r->ref_sums, NULL, e) ||
                   (r->have_alt && forward_samples(r, &r->alt, n, r->ref_sums + n, NULL, e))
               ? -1
               : 0;
}

typedef struct {
    double loss, forget_loss, retain_loss;
    double forget_logprob, retain_logprob; // sums, for the NLL metrics
    int64_t forget_targets, retain_targets;
    double retain_kl;
    int64_t tokens;
} StepStats;

// Forward + backward of every micro-batch of one side of a step. kind: 0 anchor (forget or
// finetune data), 1 retain (NLL or KL).
static int accumulate(Run *r, const TokenDataset *d, const int64_t *idx, int count, int kind,
                      StepStats *st, Err *e) {
    const RunConfig *c = r->c;
    // Paired methods: forget sample i and data.forget_alt's sample i share a micro-batch, the
    // alt samples after the forget ones, so that pair i's loss can weight both.
    const TokenDataset *d2 = kind == 0 && r->have_alt ? &r->alt : NULL;
    // A soft-target forget term counts each sample's targets after its first ignore_first.
    // With method.positions all, every position of a sample (its length - 1) counts.
    const int soft = kind == 0 && r->method->forget_soft != NULL;
    const int skip = soft ? r->op.ignore_first : 0, all = soft && r->op.all_positions;
    BatchTotals totals = {count, 0};
    for (int k = 0; k < count; k++) {
        const int64_t i = idx[k];
        const int n = all ? (int)(d->offsets[i + 1] - d->offsets[i] - 1) : sample_targets(d, i);
        totals.n_targets += n > skip ? n - skip : 0;
    }
    if (totals.n_targets == 0) return 0; // nothing to learn from (all targets masked)
    for (int done = 0; done < count;) {
        int take = micro_take2(d, d2, idx + done, count - done, c->micro_batch_size,
                               c->max_batch_tokens);
        Batch b;
        timing_start(TIMER_DATA);
        const int packed = pack2(&r->pack, d, d2, idx + done, take, &b, e);
        timing_stop(TIMER_DATA);
        if (packed) return -1;
        st->tokens += (int64_t)b.n_tokens;
        if (ensure_micro_buffers(r, b.n_samples, b.n_tokens, e)) return -1;
        if (d2) {
            if (r->engine->ops->forward(r->engine, &b, r->s, r->n, e)) return -1;
            double *dl_ds = malloc((size_t)b.n_samples * sizeof(double));
            if (!dl_ds) return err_set(e, "out of memory");
            const int64_t n_anchor = r->anchor.n_samples;
            for (int k = 0; k < take; k++) {
                const int64_t i = idx[done + k];
                st->forget_loss += r->method->forget_pair(
                    &r->op, r->s[k], r->ref_sums[i], r->s[take + k], r->ref_sums[n_anchor + i],
                    &totals, &dl_ds[k], &dl_ds[take + k]);
                st->forget_logprob += r->s[k];
                st->forget_targets += r->n[k];
            }
            const size_t M = r->engine->ops->n_targets(r->engine);
            const int32_t *ts = r->engine->ops->target_sample(r->engine);
            for (size_t j = 0; j < M; j++) r->weights[j] = (float)-dl_ds[ts[j]];
            free(dl_ds);
            if (r->engine->ops->backward(r->engine, r->weights, e)) return -1;
            done += take;
            continue;
        }
        if ((kind == 0 && r->method->hidden) || (kind == 1 && r->op.retain == RETAIN_HIDDEN)) {
            // RMU: per sample the mean of its targets' mse, then the mean over the samples.
            const float *target = kind == 0 ? r->control : NULL; // NULL: the start model's
            if (r->engine->ops->forward_hidden(r->engine, &b, r->op.layer, target, r->s, r->n, e))
                return -1;
            const double scale = (kind == 0 ? r->op.gamma : r->op.alpha) / (double)count;
            const size_t M = r->engine->ops->n_targets(r->engine);
            const int32_t *ts = r->engine->ops->target_sample(r->engine);
            for (size_t j = 0; j < M; j++) r->weights[j] = (float)(scale / r->n[ts[j]]);
            for (int k = 0; k < take; k++) {
                const double part = r->n[k] > 0 ? scale * r->s[k] / r->n[k] : 0.0;
                *(kind == 0 ? &st->forget_loss : &st->retain_loss) += part;
            }
        } else if (soft) {
            SoftSpec spec;
            r->method->forget_soft(&r->op, &spec);
            Batch every = b; // all positions: every token after a sample's first is a row
            if (all) {
                spec.shift_mask = b.loss_mask;
                every.loss_mask = NULL;
            }
            if (r->engine->ops->forward_soft(r->engine, &every, &spec, r->s, r->n, e)) return -1;
            const size_t M = r->engine->ops->n_targets(r->engine);
            const int32_t *ts = r->engine->ops->target_sample(r->engine);
            const float *loss = r->engine->ops->target_loss(r->engine);
            const float *lp = r->engine->ops->target_logprob(r->engine);
            // gamma * mean over the counted targets; a sample's targets come in order.
            const double w = r->op.gamma / (double)totals.n_targets;
            int rank = 0;
            for (size_t j = 0; j < M; j++) {
                rank = j > 0 && ts[j] == ts[j - 1] ? rank + 1 : 0;
                r->weights[j] = rank < skip ? 0.0f : (float)w;
                if (rank >= skip) st->forget_loss += w * loss[j];
                if (isnan(lp[j])) continue; // a question position: not an answer target
                st->forget_logprob += lp[j];
                st->forget_targets++;
            }
        } else if (kind == 1 && r->op.retain == RETAIN_KL) {
            const SoftSpec kl = {1, 0.0f, 0, NULL}; // KL(p_ref || p)
            if (r->engine->ops->forward_soft(r->engine, &b, &kl, r->s, r->n, e)) return -1;
            // alpha * mean over the retain targets of KL(p_ref || p)
            const size_t M = r->engine->ops->n_targets(r->engine);
            for (size_t j = 0; j < M; j++) r->weights[j] = (float)(r->op.alpha / totals.n_targets);
            for (int k = 0; k < take; k++) {
                st->retain_kl += r->s[k] / totals.n_targets;
                st->retain_loss += r->op.alpha * r->s[k] / totals.n_targets;
            }
        } else {
            if (r->engine->ops->forward(r->engine, &b, r->s, r->n, e)) return -1;
            double *dl_ds = malloc((size_t)take * sizeof(double));
            if (!dl_ds) return err_set(e, "out of memory");
            for (int k = 0; k < take; k++) {
                const int64_t i = idx[done + k];
                double part;
                if (kind == 1) {
                    part = retain_nll_sample(&r->op, r->s[k], &totals, &dl_ds[k]);
                    st->retain_loss += part;
                    st->retain_logprob += r->s[k];
                    st->retain_targets += r->n[k];
                } else if (r->method->forget) {
                    part = r->method->forget(&r->op, r->s[k], r->n[k],
                                             r->ref_sums ? r->ref_sums[i] : 0.0, &totals,
                                             &dl_ds[k]);
                    st->forget_loss += part;
                    st->forget_logprob += r->s[k];
                    st->forget_targets += r->n[k];
                } else if (r->method->forget_token) { // the weights come per target below
                    dl_ds[k] = 0.0;
                    st->forget_logprob += r->s[k];
                    st->forget_targets += r->n[k];
                } else { // finetune
                    part = finetune_sample(r->s[k], &totals, &dl_ds[k]);
                    st->forget_loss += part;
                    st->forget_logprob += r->s[k];
                    st->forget_targets += r->n[k];
                }
            }
            // Per-target weight dLoss/dNLL_t = -dLoss/ds of the target's sample.
            const size_t M = r->engine->ops->n_targets(r->engine);
            const int32_t *ts = r->engine->ops->target_sample(r->engine);
            for (size_t j = 0; j < M; j++) r->weights[j] = (float)-dl_ds[ts[j]];
            if (kind == 0 && r->method->forget_token) {
                // Token-level methods: each target's own weight from its log-prob.
                const float *lp = r->engine->ops->target_logprob(r->engine);
                for (size_t j = 0; j < M; j++) {
                    double w;
                    st->forget_loss += r->method->forget_token(&r->op, lp[j], &totals, &w);
                    r->weights[j] = (float)w;
                }
            }
            free(dl_ds);
        }
        if (r->engine->ops->backward(r->engine, r->weights, e)) return -1;
        done += take;
    }
    return 0;
}

static int load_dataset(TokenDataset *d, const char *path, const char *key, int vocab, Err *e) {
    if (dataset_read(path, d, vocab, e)) return err_prefix(e, "%s", key);
    return 0;
}

// Rewrites metrics.jsonl keeping only the lines of steps <= step (a resumed run continues it).
static int truncate_metrics(const char *path, int64_t step, Err *e) {
    char *text;
    size_t len;
    Err ignore;
    if (file_read_all(path, &text, &len, &ignore) != 0) return 0;
    StrBuf keep = {0};
    sb_printf(&keep, "%s", "");
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        long long s = -1;
        if (sscanf(line, "{\"step\": %lld", &s) == 1 && s <= step)
            sb_printf(&keep, "%.*s\n", (int)n, line);
        line += n + (nl ? 1 : 0);
    }
    int rc = file_write_atomic(path, keep.data, keep.len, e);
    sb_free(&keep);
    free(text);
    return rc;
}

// Equal resolved configs, the `out` line aside: a run directory that was moved or copied resumes
// where it now is.
static int same_config_but_out(const char *a, const char *b) {
    for (;;) {
        if (strncmp(a, "out: ", 5) == 0) a += strcspn(a, "\n");
        if (strncmp(b, "out: ", 5) == 0) b += strcspn(b, "\n");
        size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || strncmp(a, b, la) != 0) return 0;
        a += la;
        b += lb;
        if (!*a || !*b) return *a == *b;
        a++;
        b++;
    }
}

// Temporary files of a killed process (`*.tmp-PID` whose PID is not alive) are removed on resume.
static void remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        const char *tmp = strstr(ent->d_name, ".tmp-");
        if (!tmp) continue;
        long pid = strtol(tmp + 5, NULL, 10);
        if (pid <= 0 || pid == (long)getpid() || (kill((pid_t)pid, 0) == 0 || errno == EPERM))
            continue;
        char path[RUN_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        unlink(path);
    }
    closedir(d);
}

static void run_free(Run *r) {
    engine_close(r->engine);
    free(r->control);
    llama_free(&r->model);
    dataset_free(&r->anchor);
    if (r->have_retain) dataset_free(&r->retain);
    if (r->have_alt) dataset_free(&r->alt);
    if (r->have_eval_forget) dataset_free(&r->eval_forget);
    if (r->have_eval_retain) dataset_free(&r->eval_retain);
    free(r->ref_sums);
    free(r->weights);
    free(r->s);
    free(r->n);
    free(r->idx);
    free(r->perm);
    free(r->ridx);
    free(r->rperm);
    pack_free(&r->pack);
    optimizer_free(&r->opt);
}

// Takes the engine's weights and moments to the host first.
static int save_state(Run *r, const char *state_dir, int64_t step, const char *config_yaml,
                      Err *e) {
    if (r->engine->ops->pull(r->engine, e)) return -1;
    int64_t nm = r->opt.m ? (int64_t)(r->opt.v ? 2 : 1) * (int64_t)r->model.n_params : 0;
    const int64_t n_ref = r->ref_sums ? r->anchor.n_samples * (r->have_alt ? 2 : 1) : 0;
    RunState s = {step, r->opt.step, (int64_t)r->model.n_params, r->model.params, nm, r->opt.m,
                  n_ref, r->ref_sums, (char *)config_yaml};
    return run_state_save(state_dir, &s, e);
}

int train_run(const RunConfig *c, const char *command, int resume, Err *e) {
    Run run;
    memset(&run, 0, sizeof run);
    Run *r = &run;
    r->c = c;
    r->method = method_find(c->method);
    r->op = (ObjectiveParams){c->beta, c->alpha, c->gamma, c->delta,
                              strcmp(c->retain_loss, "kl") == 0    ? RETAIN_KL
                              : strcmp(c->retain_loss, "nll") == 0 ? RETAIN_NLL
                                                                   : RETAIN_NONE,
                              c->beta2, (int)c->ignore_first, strcmp(c->positions, "all") == 0,
                              (int)c->layer, c->steering};
    if (strcmp(c->retain_loss, "hidden") == 0) r->op.retain = RETAIN_HIDDEN;
    if (c->alpha == 0) r->op.retain = RETAIN_NONE;
    const int finetune = !method_unlearns(r->method);
    char *config_yaml = run_config_to_yaml(c);
    char state_dir[RUN_PATH_MAX + 16], metrics_path[RUN_PATH_MAX + 32], path[RUN_PATH_MAX + 32];
    snprintf(state_dir, sizeof state_dir, "%s/state", c->out);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", c->out);
    int rc = -1;
    FILE *metrics = NULL;
    RunState st0 = {0};
    int found = 0;
    StorageDtype in_dtype = DTYPE_F32;

    if (!config_yaml) {
        err_set(e, "out of memory");
        goto done;
    }
    if (mkdir(c->out, 0755) != 0 && errno != EEXIST) {
        err_set(e, "out: cannot create %s: %s", c->out, strerror(errno));
        goto done;
    }
    // ---- model, data
    if (llama_load_file(&r->model, c->model, e)) goto done;
    if (r->method->hidden || r->op.retain == RETAIN_HIDDEN) {
        const int L = r->model.cfg.num_hidden_layers, D = r->model.cfg.hidden_size;
        if (r->op.layer >= L) {
            err_set(e, "method.layer %d is not a block of %s (it has %d: 0 to %d); set "
                       "method.layer (RMU's reference recipes take a block about a quarter deep)",
                    r->op.layer, c->model, L, L - 1);
            goto done;
        }
        // u uniform in [0, 1)^D, normalised, times c (the WMDP code's torch.rand), seeded by the
        // run's seed so that a resumed run has the same vector.
        r->control = malloc((size_t)D * sizeof(float));
        if (!r->control) {
            err_set(e, "out of memory");
            goto done;
        }
        Rng rng;
        rng_seed(&rng, (uint64_t)c->seed ^ 0x524D55u); // "RMU"
        double norm2 = 0.0;
        for (int d = 0; d < D; d++) {
            r->control[d] = rng_uniform(&rng);
            norm2 += (double)r->control[d] * r->control[d];
        }
        for (int d = 0; d < D; d++)
            r->control[d] = (float)(r->op.steering * r->control[d] / sqrt(norm2));
    }
    {
        int nd;
        int64_t shape[CKPT_MAX_DIMS];
        CkptReader *cr;
        if (ckpt_reader_open(&cr, c->model, e)) goto done;
        ckpt_reader_tensor_info(cr, r->model.tensors[0].name, &nd, shape, &in_dtype, e);
        ckpt_reader_close(cr);
    }
    const int V = r->model.cfg.vocab_size;
    if (load_dataset(&r->anchor, finetune ? c->train : c->forget,
                     finetune ? "data.train" : "data.forget", V, e))
        goto done;
    if (method_pairs(r->method)) {
        if (load_dataset(&r->alt, c->forget_alt, "data.forget_alt", V, e)) goto done;
        r->have_alt = 1;
        if (r->alt.n_samples != r->anchor.n_samples) {
            err_set(e, "data.forget_alt: %s has %lld samples and data.forget %s %lld; %s pairs "
                       "sample i of each (the same question, with the preferred and the "
                       "dispreferred answer)",
                    c->forget_alt, (long long)r->alt.n_samples, c->forget,
                    (long long)r->anchor.n_samples, c->method);
            goto done;
        }
    }
    if (r->op.retain != RETAIN_NONE && !finetune) {
        if (load_dataset(&r->retain, c->retain, "data.retain", V, e)) goto done;
        r->have_retain = 1;
    }
    if (*c->eval_forget) {
        if (load_dataset(&r->eval_forget, c->eval_forget, "eval.forget", V, e)) goto done;
        r->have_eval_forget = 1;
    }
    if (*c->eval_retain) {
        if (load_dataset(&r->eval_retain, c->eval_retain, "eval.retain", V, e)) goto done;
        r->have_eval_retain = 1;
    }
    const int64_t bs = c->batch_size;
    r->idx = malloc((size_t)bs * sizeof(int64_t));
    r->perm = malloc((size_t)r->anchor.n_samples * sizeof(int64_t));
    r->ridx = malloc((size_t)bs * sizeof(int64_t));
    r->rperm = malloc((size_t)(r->have_retain ? r->retain.n_samples : 1) * sizeof(int64_t));
    if (!r->idx || !r->perm || !r->ridx || !r->rperm) {
        err_set(e, "out of memory");
        goto done;
    }
    OptimConfig oc = {0, c->lr, c->weight_decay, c->adam_beta1, c->adam_beta2, c->adam_eps,
                      c->momentum};
    ScheduleKind sched;
    if (optimizer_parse(c->optimizer, &oc.kind, e) || schedule_parse(c->schedule, &sched, e) ||
        optimizer_create(&r->opt, &oc, &r->model, c->freeze, c->train_only, e))
        goto done;
    // The KL retain term's reference is the start model: the engine keeps a frozen copy now.
    const DeviceRequest dev = {c->device, c->device_dtype};
    if (engine_open(&r->engine, &dev, &r->model, &r->opt,
                    r->op.retain == RETAIN_KL || r->op.retain == RETAIN_HIDDEN ||
                        method_soft_needs_reference(r->method, &r->op),
                    (uint64_t)c->seed, e))
        goto done;
    snprintf(g_last_device, sizeof g_last_device, "%s", r->engine->description);
    g_last_device_gpu = r->engine->kind == ENGINE_CUDA;
    g_last_device_peak = 0;

    // ---- the "before" numbers (start model) and the cached reference sums
    double before_anchor = NAN, before_retain = NAN;
    const int64_t summary_limit = 256;
    if (dataset_nll(r, &r->anchor, summary_limit, &before_anchor, e)) goto done;
    if (r->have_retain && dataset_nll(r, &r->retain, summary_limit, &before_retain, e)) goto done;

    // ---- resume
    int64_t start_step = 0;
    if (resume && run_state_load(state_dir, &st0, &found, e)) goto done;
    if (found) {
        if (!same_config_but_out(st0.config_yaml, config_yaml)) {
            err_set(e, "%s: the run state was written with another config; resume with the "
                       "same config and overrides (see %s/config.yaml), or use a new out",
                    state_dir, c->out);
            goto done;
        }
        if (st0.n_params != (int64_t)r->model.n_params ||
            st0.n_moments != (r->opt.m ? (int64_t)(r->opt.v ? 2 : 1) * st0.n_params : 0) ||
            (st0.n_ref && st0.n_ref != r->anchor.n_samples * (r->have_alt ? 2 : 1))) {
            err_set(e, "%s: the run state does not match this model and data", state_dir);
            goto done;
        }
        memcpy(r->model.params, st0.params, r->model.n_params * sizeof(float));
        if (st0.n_moments) memcpy(r->opt.m, st0.moments, (size_t)st0.n_moments * sizeof(float));
        r->opt.step = st0.optim_step;
        if (r->engine->ops->push(r->engine, e)) goto done;
        if (st0.n_ref) {
            r->ref_sums = st0.ref_sums;
            st0.ref_sums = NULL;
        }
        start_step = st0.step;
        remove_stale_temporaries(state_dir);
        remove_stale_temporaries(c->out);
        if (truncate_metrics(metrics_path, start_step, e)) goto done;
        fprintf(stderr, "resuming from %s at step %lld\n", state_dir, (long long)start_step);
    } else {
        // A fresh run: the reference sums come from the start model, before any update.
        if (r->method->needs_ref_sums && compute_ref_sums(r, e)) goto done;
        unlink(metrics_path);
    }
    snprintf(path, sizeof path, "%s/config.yaml", c->out);
    if (file_write_atomic(path, config_yaml, strlen(config_yaml), e)) goto done;
    metrics = fopen(metrics_path, "a");
    if (!metrics) {
        err_set(e, "%s: %s", metrics_path, strerror(errno));
        goto done;
    }

    // ---- the steps
    const int64_t n_anchor = r->anchor.n_samples;
    const int64_t per_epoch = (n_anchor + bs - 1) / bs;
    const int64_t total = c->max_steps > 0 ? c->max_steps : c->epochs * per_epoch;
    const int64_t warmup = c->warmup_steps > 0 ? c->warmup_steps
                                               : (int64_t)llround(c->warmup_epochs * per_epoch);
    const int tty = isatty(STDERR_FILENO);
    const double t_start = now_seconds();
    int64_t step = start_step, tokens_done = 0;
    int64_t saved_at = found ? start_step : -1; // the step of the last state on disk
    int stopped_early = 0;
    fprintf(stderr, "%s %s: %lld steps (%lld per epoch), batch %lld, %zu of %zu parameters "
                    "trained, on %s\n",
            command, c->method, (long long)total, (long long)per_epoch, (long long)bs,
            optimizer_trainable_count(&r->opt, &r->model), r->model.n_params,
            r->engine->description);
    while (step < total && !g_stop_signal && !stopped_early) {
        const double t0 = now_seconds();
        timing_start(TIMER_STEP);
        StepStats st = {0};
        if (r->engine->ops->zero_grads(r->engine, e)) goto done;
        timing_start(TIMER_DATA);
        int64_t count = anchor_batch(r->idx, r->perm, n_anchor, bs, c->seed, step);
        timing_stop(TIMER_DATA);
        if (accumulate(r, &r->anchor, r->idx, (int)count, 0, &st, e)) goto done;
        if (r->have_retain) {
            timing_start(TIMER_DATA);
            retain_batch(r->ridx, r->rperm, r->retain.n_samples, bs, count, c->seed, step);
            timing_stop(TIMER_DATA);
            if (accumulate(r, &r->retain, r->ridx, (int)count, 1, &st, e)) goto done;
        }
        timing_start(TIMER_OPTIMIZER);
        double norm;
        if (r->engine->ops->grad_norm(r->engine, &norm, e)) goto done;
        const double lr = lr_schedule(sched, c->lr, step, warmup, total);
        if (!isfinite(norm)) {
            err_set(e, "step %lld: the gradient is not finite (loss %g); lower optim.lr or "
                       "check the data",
                    (long long)step + 1, st.forget_loss + st.retain_loss);
            goto done;
        }
        if (r->engine->ops->step(r->engine, lr, norm, c->grad_clip, e)) goto done;
        timing_stop(TIMER_OPTIMIZER);
        timing_stop(TIMER_STEP);
        size_t in_use;
        if (r->engine->ops->device_memory(r->engine, &in_use, e)) goto done;
        if (in_use > g_last_device_peak) g_last_device_peak = in_use;
        step++;
        tokens_done += st.tokens;
        const double dt = now_seconds() - t0, elapsed = now_seconds() - t_start;
        const double fnll = st.forget_targets ? -st.forget_logprob / st.forget_targets : NAN;
        const double rnll = st.retain_targets ? -st.retain_logprob / st.retain_targets : NAN;
        StrBuf line = {0};
        sb_printf(&line, "{\"step\": %lld, \"epoch\": %.4f, \"lr\": %.6g, \"loss\": %.8g",
                  (long long)step, (double)step / per_epoch, lr, st.forget_loss + st.retain_loss);
        sb_printf(&line, ", \"%s\": %.8g", finetune ? "train_loss" : "forget_loss", st.forget_loss);
        if (r->have_retain) sb_printf(&line, ", \"retain_loss\": %.8g", st.retain_loss);
        if (isfinite(fnll)) sb_printf(&line, ", \"%s\": %.8g", finetune ? "train_nll" : "forget_nll", fnll);
        if (isfinite(rnll)) sb_printf(&line, ", \"retain_nll\": %.8g", rnll);
        if (r->op.retain == RETAIN_KL) sb_printf(&line, ", \"retain_kl\": %.8g", st.retain_kl);
        sb_printf(&line, ", \"grad_norm\": %.6g, \"tokens\": %lld, \"tokens_per_s\": %.1f",
                  norm, (long long)st.tokens, st.tokens / (dt > 0 ? dt : 1e-9));
        if (c->eval_every > 0 && (step % c->eval_every == 0 || step == total)) {
            double ef, er;
            if (r->have_eval_forget) {
                if (dataset_nll(r, &r->eval_forget, INT64_MAX, &ef, e)) goto done;
                sb_printf(&line, ", \"eval_forget_nll\": %.8g", ef);
            }
            if (r->have_eval_retain) {
                if (dataset_nll(r, &r->eval_retain, INT64_MAX, &er, e)) goto done;
                sb_printf(&line, ", \"eval_retain_nll\": %.8g", er);
            }
        }
        sb_printf(&line, ", \"elapsed\": %.3f}\n", elapsed);
        if (line.failed) {
            err_set(e, "out of memory");
            goto done;
        }
        fputs(line.data, metrics);
        fflush(metrics);
        sb_free(&line);
        if (c->log_every > 0 && (step % c->log_every == 0 || step == total)) {
            const double rate = tokens_done / (elapsed > 0 ? elapsed : 1e-9);
            const double eta = (double)(total - step) * elapsed / (double)(step - start_step);
            if (tty)
                fprintf(stderr, "\rstep %lld/%lld  loss %.4f  %s %.4f  %.0f tok/s  ETA %02d:%02d  ",
                        (long long)step, (long long)total, st.forget_loss + st.retain_loss,
                        finetune ? "nll" : "forget_nll", fnll, rate, (int)eta / 60, (int)eta % 60);
            else if (r->have_retain)
                fprintf(stderr, "step %lld/%lld loss %.6f forget_nll %.6f retain_nll %.6f "
                                "tok/s %.0f eta %.0fs\n",
                        (long long)step, (long long)total, st.forget_loss + st.retain_loss, fnll,
                        rnll, rate, eta);
            else
                fprintf(stderr, "step %lld/%lld loss %.6f %s %.6f tok/s %.0f eta %.0fs\n",
                        (long long)step, (long long)total, st.forget_loss + st.retain_loss,
                        finetune ? "nll" : "forget_nll", fnll, rate, eta);
        }
        if (c->early_stop_forget_nll > 0 && !finetune && fnll >= c->early_stop_forget_nll) {
            fprintf(stderr, "%sforget NLL %.4f reached train.early_stop_forget_nll %.4f at step "
                            "%lld: stopping\n",
                    tty ? "\n" : "", fnll, c->early_stop_forget_nll, (long long)step);
            stopped_early = 1;
        }
        if ((c->state_every > 0 && step % c->state_every == 0 && step < total) || g_stop_signal) {
            if (save_state(r, state_dir, step, config_yaml, e)) goto done;
            saved_at = step;
        }
    }
    if (tty) fprintf(stderr, "\n");
    fclose(metrics);
    metrics = NULL;
    if (g_stop_signal && step < total && !stopped_early) {
        // A signal before the first step, or after the last check in the loop, still saves.
        if (saved_at != step && save_state(r, state_dir, step, config_yaml, e)) goto done;
        fprintf(stderr, "%s at step %lld: run state saved in %s; run the same command with "
                        "--resume to continue\n",
                g_stop_signal == SIGTERM ? "SIGTERM" : "SIGUSR1", (long long)step, state_dir);
        rc = TRAIN_EXIT_INTERRUPTED;
        goto done;
    }
    if (save_state(r, state_dir, step, config_yaml, e)) goto done;

    // ---- the unlearned model, with its provenance
    StorageDtype out_dtype = in_dtype;
    if (strcmp(c->out_dtype, "same") != 0 && dtype_parse(c->out_dtype, &out_dtype, e)) goto done;
    char dig_model[65], dig_anchor[65], dig_retain[65] = "", dig_alt[65] = "";
    if (sha256_file(c->model, dig_model, e) ||
        sha256_file(finetune ? c->train : c->forget, dig_anchor, e) ||
        (r->have_retain && sha256_file(c->retain, dig_retain, e)) ||
        (r->have_alt && sha256_file(c->forget_alt, dig_alt, e)))
        goto done;
    char steps_txt[32], scale_txt[32], finetuned_path[RUN_PATH_MAX + 32];
    snprintf(steps_txt, sizeof steps_txt, "%lld", (long long)step);
    snprintf(scale_txt, sizeof scale_txt, "%.17g", c->gamma);
    snprintf(finetuned_path, sizeof finetuned_path, "%s/finetuned.h5", c->out);
    ProvenanceEntry prov[] = {
        {"source", c->model},
        {"source_sha256", dig_model},
        {"method", c->method},
        {finetune ? "train_sha256" : "forget_sha256", dig_anchor},
        {"retain_sha256", r->have_retain ? dig_retain : NULL},
        {"forget_alt_sha256", r->have_alt ? dig_alt : NULL},
        {"steps", steps_txt},
        {"config", config_yaml},
        // the result of task_vector only (the fine-tuned copy takes the entries above)
        {"task_vector_finetuned", r->method->task_vector ? finetuned_path : NULL},
        {"task_vector_scale", r->method->task_vector ? scale_txt : NULL},
    };
    Tokenizer tok;
    int have_tok = 0;
    {
        CkptReader *cr;
        if (ckpt_reader_open(&cr, c->model, e)) goto done;
        int trc = ckpt_reader_tokenizer(cr, &tok, &have_tok, e);
        ckpt_reader_close(cr);
        if (trc) goto done;
    }
    int wrc = 0;
    if (r->method->task_vector) {
        // The fine-tuned copy is kept beside the result (its provenance stops at the steps), and
        // the task vector theta_ft - theta0 is subtracted from the start model, gamma times.
        wrc = model_file_write(finetuned_path, &r->model, have_tok ? &tok : NULL, out_dtype, prov,
                               sizeof prov / sizeof prov[0] - 2, e);
        LlamaModel start = {0};
        if (!wrc) wrc = llama_load_file(&start, c->model, e);
        if (!wrc) {
            float *p = r->model.params;
            const float *p0 = start.params;
            for (size_t k = 0; k < r->model.n_params; k++)
                p[k] = (float)((double)p0[k] - c->gamma * ((double)p[k] - (double)p0[k]));
            wrc = r->engine->ops->push(r->engine, e); // the summary below measures the result
        }
        llama_free(&start);
    }
    snprintf(path, sizeof path, "%s/model.h5", c->out);
    if (!wrc)
        wrc = model_file_write(path, &r->model, have_tok ? &tok : NULL, out_dtype, prov,
                               sizeof prov / sizeof prov[0], e);
    if (have_tok) tokenizer_free(&tok);
    if (wrc) goto done;

    // ---- summary: NLL before and after
    double after_anchor, after_retain = NAN;
    if (dataset_nll(r, &r->anchor, summary_limit, &after_anchor, e)) goto done;
    if (r->have_retain && dataset_nll(r, &r->retain, summary_limit, &after_retain, e)) goto done;
    const double secs = now_seconds() - t_start;
    printf("\n%s done: %lld steps in %.1f s (%.0f tokens/s); wrote %s\n", command,
           (long long)step, secs, tokens_done / (secs > 0 ? secs : 1e-9), path);
    printf("  %-28s %10s %10s\n", "mean NLL per target token", "before", "after");
    printf("  %-28s %10.4f %10.4f\n", finetune ? "train set" : "forget set", before_anchor,
           after_anchor);
    if (r->have_retain)
        printf("  %-28s %10.4f %10.4f\n", "retain set", before_retain, after_retain);
    if (r->anchor.n_samples > summary_limit || (r->have_retain && r->retain.n_samples > summary_limit))
        printf("  (over the first %lld samples of each set)\n", (long long)summary_limit);
    rc = 0;
done:
    if (metrics) fclose(metrics);
    free(config_yaml);
    run_state_free(&st0);
    run_free(r);
    return rc;
}
