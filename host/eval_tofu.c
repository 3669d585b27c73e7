// TOFU metrics of one question/answer set (Maini et al. 2024; definitions as in
// locuslab/open-unlearning src/evals/metrics/memorization.py): length-normalised answer
// probability, ROUGE-L recall of the greedy answer, truth ratio, normalised probability against
// perturbed answers, exact memorisation and extraction strength.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "eval_stats.h"
#include "qa.h"
#include "rouge.h"
#include "strbuf.h"

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int qaset_load(QaSet *s, const char *name, const char *path, int max, Err *e) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->path, sizeof s->path, "%s", path);
    JsonValue *all = json_parse_file(path, JSON_FILE_RECORDS, e);
    if (!all) return -1;
    size_t n = json_array_len(all);
    if (max > 0 && (size_t)max < n) n = (size_t)max;
    int rc = 0;
    if (n == 0) rc = err_set(e, "%s: no records", path);
    s->items = calloc(n + 1, sizeof *s->items);
    if (!rc && !s->items) rc = err_set(e, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        const JsonValue *v = json_array_get(all, i);
        QaItem *it = &s->items[i];
        const char *q = json_object_get_string(v, "question");
        const char *a = json_object_get_string(v, "answer");
        if (!q) q = json_object_get_string(v, "prompt");
        if (!a) a = json_object_get_string(v, "response");
        if (!q || !a) {
            rc = err_set(e, "%s: record %zu has no string \"question\" and \"answer\" (or "
                            "\"prompt\" and \"response\")",
                         path, i + 1);
            break;
        }
        it->question = strdup(q);
        it->answer = strdup(a);
        it->paraphrased_answer = dup_or_null(json_object_get_string(v, "paraphrased_answer"));
        const JsonValue *pert = json_object_get(v, "perturbed_answer");
        if (pert && json_is(pert, JSON_STRING)) {
            it->perturbed = calloc(1, sizeof(char *));
            if (it->perturbed) it->perturbed[it->n_perturbed++] = strdup(json_string(pert, NULL));
        } else if (pert && json_is(pert, JSON_ARRAY)) {
            size_t np = json_array_len(pert);
            it->perturbed = calloc(np + 1, sizeof(char *));
            for (size_t k = 0; it->perturbed && k < np; k++) {
                const char *t = json_string(json_array_get(pert, k), NULL);
                if (!t) {
                    rc = err_set(e, "%s: record %zu: perturbed_answer[%zu] is not a string", path,
                                 i + 1, k);
                    break;
                }
                it->perturbed[it->n_perturbed++] = strdup(t);
            }
        } else if (pert && !json_is(pert, JSON_NULL)) {
            rc = err_set(e, "%s: record %zu: perturbed_answer must be a string or a list of "
                            "strings",
                         path, i + 1);
        }
        s->n = (int)i + 1;
        if (!it->question || !it->answer) rc = err_set(e, "out of memory");
    }
    json_free(all);
    if (rc) qaset_free(s);
    return rc;
}

void qaset_free(QaSet *s) {
    for (int i = 0; s->items && i < s->n; i++) {
        QaItem *it = &s->items[i];
        free(it->question);
        free(it->answer);
        free(it->paraphrased_answer);
        for (int k = 0; k < it->n_perturbed; k++) free(it->perturbed[k]);
        free(it->perturbed);
    }
    free(s->items);
    memset(s, 0, sizeof *s);
}

// The prompt of item i: the template's context, after the item's in-context prefix if any.
static int item_context(const EvalCtx *c, const QaItem *it, const char *prefix, StrBuf *ctx,
                        Err *e) {
    StrBuf tgt = {0};
    int rc = qa_format(c->tmpl, it->question, it->answer, ctx, &tgt, e);
    sb_free(&tgt);
    if (rc || !prefix) return rc;
    StrBuf joined = {0};
    sb_printf(&joined, "%s\n%s", prefix, ctx->data);
    sb_free(ctx);
    *ctx = joined;
    return joined.failed ? err_set(e, "out of memory") : 0;
}

// Scores context(i) + answers(i) for every item; answer_of returns NULL to skip nothing.
static int score_answers(EvalCtx *c, const QaSet *s, const char *const *prefixes,
                         const char *(*answer_of)(const QaItem *, int k), int per_item,
                         int per_token, SeqScores *out, Err *e) {
    SeqSet seqs = {0};
    int rc = 0;
    for (int i = 0; i < s->n && !rc; i++) {
        StrBuf ctx = {0};
        rc = item_context(c, &s->items[i], prefixes ? prefixes[i] : NULL, &ctx, e);
        for (int k = 0; k < per_item && !rc; k++)
            rc = seqset_add(&seqs, c->tok, ctx.data, answer_of(&s->items[i], k), e);
        sb_free(&ctx);
    }
    if (!rc) rc = eval_score(c, &seqs, per_token, out, e);
    seqset_free(&seqs);
    return rc;
}

static const char *answer_field(const QaItem *it, int k) { return (void)k, it->answer; }
static const char *paraphrase_field(const QaItem *it, int k) {
    return (void)k, it->paraphrased_answer;
}
static const char *perturbed_field(const QaItem *it, int k) { return it->perturbed[k]; }

static double mean(const double *x, int n) {
    double s = 0.0;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) s += x[i], m++;
    return m ? s / m : NAN;
}

static int put(EvalResult *r, const char *prefix, const char *name, const double *per_item,
               int n, double aggregate, Err *e) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", prefix, name);
    if (eval_result_set(r, key, aggregate) || (per_item && eval_result_set_array(r, key, per_item, (size_t)n)))
        return err_set(e, "out of memory");
    return 0;
}

int tofu_eval_set(EvalCtx *c, const QaSet *s, TofuRole role, const char *const *prefixes,
                  unsigned what, const char *key_prefix, EvalResult *r, Err *e) {
    const int n = s->n;
    int rc = 0;
    double *v = malloc((size_t)n * 4 * sizeof(double));
    if (!v) return err_set(e, "out of memory");
    double *a = v, *b = v + n, *d = v + 2 * n, *f = v + 3 * n;
    SeqScores ans = {0}, cor = {0}, wrong = {0};

    // Answer probability P(a|q)^(1/|a|) = exp(-mean NLL) (open-unlearning evaluate_probability),
    // and from the same forward the per-token argmax hits for memorisation.
    const int want_mem = (what & TOFU_MEMORISATION) != 0;
    if ((rc = score_answers(c, s, prefixes, answer_field, 1, want_mem, &ans, e))) goto done;
    for (int i = 0; i < n; i++) a[i] = exp(-seqscores_avg_loss(&ans, i));
    if ((rc = put(r, key_prefix, "prob", a, n, mean(a, n), e))) goto done;
    if (want_mem) {
        for (int i = 0; i < n; i++) {
            size_t len = (size_t)(ans.tok_offsets[i + 1] - ans.tok_offsets[i]);
            const uint8_t *hit = ans.hit + ans.tok_offsets[i];
            b[i] = len ? exact_memorization(hit, len) : NAN;
            d[i] = len ? extraction_strength(hit, len) : NAN;
        }
        if ((rc = put(r, key_prefix, "exact_memorization", b, n, mean(b, n), e)) ||
            (rc = put(r, key_prefix, "extraction_strength", d, n, mean(d, n), e)))
            goto done;
    }

    // Truth ratio (open-unlearning truth_ratio): R = P(perturbed)/P(correct), both length-
    // normalised, the perturbed side as exp(-mean over perturbations of their mean NLL).
    // Forget sets aggregate mean(min(R, 1/R)) (closer to 1 is better); the others
    // mean(max(0, 1 - R)) (the true answer should win). Correct = the paraphrased answer where
    // the set has one (forget, retain), else the answer (real authors, world facts).
    int np = n > 0 ? s->items[0].n_perturbed : 0;
    for (int i = 0; i < n && (what & TOFU_TRUTH_RATIO); i++)
        if (s->items[i].n_perturbed != np) {
            rc = err_set(e, "%s: record %d has %d perturbed answers, record 1 has %d: the truth "
                            "ratio needs the same number for every question",
                         s->path, i + 1, s->items[i].n_perturbed, np);
            goto done;
        }
    int have_para = 1;
    for (int i = 0; i < n; i++) have_para &= s->items[i].paraphrased_answer != NULL;
    if ((what & TOFU_TRUTH_RATIO) && np > 0) {
        const SeqScores *correct = &ans;
        if (have_para) {
            if ((rc = score_answers(c, s, prefixes, paraphrase_field, 1, 0, &cor, e))) goto done;
            correct = &cor;
        }
        if ((rc = score_answers(c, s, prefixes, perturbed_field, np, 0, &wrong, e))) goto done;
        double agg = 0.0;
        for (int i = 0; i < n; i++) {
            double wl = 0.0, wp = 0.0;
            for (int k = 0; k < np; k++) {
                wl += seqscores_avg_loss(&wrong, i * np + k);
                wp += exp(-seqscores_avg_loss(&wrong, i * np + k));
            }
            double p_correct = exp(-seqscores_avg_loss(correct, i));
            b[i] = exp(-wl / np) / (p_correct + 1e-10);
            // probability_w_options: P(answer) / (P(answer) + sum of P(perturbed)).
            f[i] = a[i] / (a[i] + wp + 1e-10);
            agg += role == TOFU_FORGET ? fmin(b[i], 1.0 / (b[i] + 1e-10)) : fmax(0.0, 1.0 - b[i]);
        }
        if ((rc = put(r, key_prefix, "truth_ratio", NULL, n, agg / n, e)) ||
            (rc = put(r, key_prefix, "truth_ratio_raw", b, n, mean(b, n), e)))
            goto done;
        if (role == TOFU_NEIGHBOUR &&
            (rc = put(r, key_prefix, "prob_normalised", f, n, mean(f, n), e)))
            goto done;
    }

    // ROUGE of the greedy answer against the reference answer (open-unlearning
    // eval_text_similarity: rouge_score with the Porter stemmer; TOFU reports rougeL recall).
    if (what & TOFU_ROUGE) {
        char **ctxs = calloc((size_t)n, sizeof *ctxs);
        char **gens = calloc((size_t)n, sizeof *gens);
        StrBuf *bufs = calloc((size_t)n, sizeof *bufs);
        if (!ctxs || !gens || !bufs) rc = err_set(e, "out of memory");
        for (int i = 0; i < n && !rc; i++) {
            rc = item_context(c, &s->items[i], prefixes ? prefixes[i] : NULL, &bufs[i], e);
            ctxs[i] = bufs[i].data;
        }
        static const char *const stops[] = {"\n", NULL};
        if (!rc)
            rc = eval_generate(c, (const char *const *)ctxs, n, c->max_new_tokens, stops, gens, e);
        for (int i = 0; i < n && !rc; i++) {
            RougeScore r1, rl;
            if (rouge_scores(s->items[i].answer, gens[i], 1, &r1, &rl)) {
                rc = err_set(e, "out of memory");
                break;
            }
            a[i] = rl.recall;
            b[i] = rl.f1;
            d[i] = r1.recall;
        }
        if (!rc) rc = put(r, key_prefix, "rouge_l_recall", a, n, mean(a, n), e);
        if (!rc) rc = put(r, key_prefix, "rouge_l_f1", b, n, mean(b, n), e);
        if (!rc) rc = put(r, key_prefix, "rouge1_recall", d, n, mean(d, n), e);
        char key[96];
        snprintf(key, sizeof key, "%s.generation", key_prefix);
        if (!rc && eval_result_set_texts(r, key, gens, (size_t)n)) rc = err_set(e, "out of memory");
        else if (!rc) gens = NULL; // owned by r now
        for (int i = 0; bufs && i < n; i++) sb_free(&bufs[i]);
        for (int i = 0; gens && i < n; i++) free(gens[i]);
        free(gens);
        free(bufs);
        free(ctxs);
    }
done:
    seqscores_free(&ans);
    seqscores_free(&cor);
    seqscores_free(&wrong);
    free(v);
    return rc;
}
