// MUSE metrics (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation"; definitions as in
// locuslab/open-unlearning): VerbMem (ROUGE-L F1 of greedy continuations of forget-text
// prefixes) and the membership-inference attacks (loss, zlib, Min-K%, Min-K%++) between a
// forget and a holdout set, as AUCs. KnowMem reuses the question/answer path (eval_tofu.c).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "eval_stats.h"
#include "qa.h"
#include "rouge.h"
#include "strbuf.h"
#include "textfile.h"

static int textset_push(TextSet *s, const char *context, const char *target, Err *e) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        char **c = realloc(s->contexts, (size_t)cap * sizeof *c);
        if (c) s->contexts = c;
        char **t = realloc(s->targets, (size_t)cap * sizeof *t);
        if (t) s->targets = t;
        if (!c || !t) return err_set(e, "out of memory");
        s->cap = cap;
    }
    s->contexts[s->n] = strdup(context);
    s->targets[s->n] = strdup(target);
    if (!s->contexts[s->n] || !s->targets[s->n]) return err_set(e, "out of memory");
    s->n++;
    return 0;
}

static int is_blank_line_break(const char *p) {
    // "\n" followed by optional spaces/tabs and another "\n": a paragraph break
    if (*p != '\n') return 0;
    p++;
    while (*p == ' ' || *p == '\t' || *p == '\r') p++;
    return *p == '\n';
}

static char *strip_inplace(char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

int textset_load(TextSet *s, const char *path, const char *tmpl, int max, Err *e) {
    memset(s, 0, sizeof *s);
    size_t len = strlen(path);
    int rc = 0;
    if (len > 4 && strcmp(path + len - 4, ".txt") == 0) {
        // Plain text: documents separated by "<|endoftext|>" when the file has it (TinyStories),
        // else by blank lines.
        char *text;
        size_t n;
        if (file_read_all(path, &text, &n, e)) return -1;
        const int eot = strstr(text, "<|endoftext|>") != NULL;
        char *p = text;
        while (*p && !rc && (max <= 0 || s->n < max)) {
            char *end = eot ? strstr(p, "<|endoftext|>") : p;
            if (!eot)
                while (*end && !is_blank_line_break(end)) end++;
            if (!end) end = p + strlen(p);
            char saved = *end;
            *end = 0;
            char *doc = strip_inplace(p);
            if (*doc) rc = textset_push(s, "", doc, e);
            *end = saved;
            if (!saved) break;
            p = end + (eot ? strlen("<|endoftext|>") : 1);
        }
        free(text);
    } else {
        JsonValue *all = json_parse_file(path, JSON_FILE_RECORDS, e);
        if (!all) return -1;
        size_t n = json_array_len(all);
        if (max > 0 && (size_t)max < n) n = (size_t)max;
        for (size_t i = 0; i < n && !rc; i++) {
            const JsonValue *v = json_array_get(all, i);
            const char *text = json_object_get_string(v, "text");
            const char *q = json_object_get_string(v, "question");
            const char *a = json_object_get_string(v, "answer");
            if (!q) q = json_object_get_string(v, "prompt");
            if (!a) a = json_object_get_string(v, "response");
            if (text) {
                rc = textset_push(s, "", text, e);
            } else if (q && a) {
                StrBuf ctx = {0}, tgt = {0};
                rc = qa_format(tmpl, q, a, &ctx, &tgt, e) || textset_push(s, ctx.data, tgt.data, e);
                sb_free(&ctx);
                sb_free(&tgt);
            } else {
                rc = err_set(e, "%s: record %zu has neither a string \"text\" nor "
                                "\"question\"+\"answer\" (\"prompt\"+\"response\")",
                             path, i + 1);
            }
        }
        json_free(all);
    }
    if (!rc && s->n == 0) rc = err_set(e, "%s: no texts", path);
    if (rc) textset_free(s);
    return rc ? -1 : 0;
}

void textset_free(TextSet *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->contexts[i]);
        free(s->targets[i]);
    }
    free(s->contexts);
    free(s->targets);
    memset(s, 0, sizeof *s);
}

static int put(EvalResult *r, const char *key, const double *per_item, int n, double aggregate,
               Err *e) {
    if (eval_result_set(r, key, aggregate) ||
        (per_item && eval_result_set_array(r, key, per_item, (size_t)n)))
        return err_set(e, "out of memory");
    return 0;
}

int muse_verbmem(EvalCtx *c, const TextSet *s, int prefix_tokens, int max_new_tokens,
                 const char *key, EvalResult *r, Err *e) {
    const int n = s->n;
    int32_t **prompts = calloc((size_t)n + 1, sizeof *prompts);
    int *lens = calloc((size_t)n + 1, sizeof *lens);
    char **truths = calloc((size_t)n + 1, sizeof *truths);
    char **gens = calloc((size_t)n + 1, sizeof *gens);
    double *f1 = calloc((size_t)n + 1, sizeof *f1);
    int rc = !prompts || !lens || !truths || !gens || !f1 ? err_set(e, "out of memory") : 0;
    // The prompt is the context and the first prefix_tokens tokens of the text; the truth the
    // next max_new_tokens tokens of it (MUSE: 32-token prompts, 128-token continuations).
    for (int i = 0; i < n && !rc; i++) {
        int32_t *ids = malloc((strlen(s->contexts[i]) + strlen(s->targets[i]) + 6) * sizeof *ids);
        int nc, nt;
        if (!ids) {
            rc = err_set(e, "out of memory");
            break;
        }
        if ((rc = qa_encode(c->tok, s->contexts[i], s->targets[i], ids, &nc, &nt, e))) {
            free(ids);
            break;
        }
        int cut = nc + prefix_tokens < nt ? nc + prefix_tokens : nt - 1;
        if (cut < 1) cut = 1;
        int end = cut + max_new_tokens < nt ? cut + max_new_tokens : nt;
        truths[i] = eval_decode(c->tok, ids[cut - 1], ids + cut, end - cut);
        prompts[i] = ids;
        lens[i] = cut;
        if (!truths[i]) rc = err_set(e, "out of memory");
    }
    if (!rc) rc = eval_generate_tokens(c, prompts, lens, n, max_new_tokens, NULL, gens, e);
    for (int i = 0; i < n && !rc; i++) {
        RougeScore rl;
        if (rouge_scores(truths[i], gens[i], 1, NULL, &rl)) rc = err_set(e, "out of memory");
        f1[i] = rl.f1;
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += f1[i];
    if (!rc) rc = put(r, key, f1, n, n ? sum / n : NAN, e);
    if (!rc) {
        char tkey[96];
        snprintf(tkey, sizeof tkey, "%s.generation", key);
        if (eval_result_set_texts(r, tkey, gens, (size_t)n)) rc = err_set(e, "out of memory");
        gens = NULL;
    }
    for (int i = 0; i < n; i++) {
        if (prompts) free(prompts[i]);
        if (truths) free(truths[i]);
        if (gens) free(gens[i]);
    }
    free(prompts);
    free(lens);
    free(truths);
    free(gens);
    free(f1);
    return rc;
}

// The four attack scores of every text of a set; higher = more likely NOT a member.
static int mia_scores(EvalCtx *c, const TextSet *s, double k, double *scores[MIA_ATTACKS],
                      Err *e) {
    SeqSet seqs = {0};
    SeqScores sc = {0};
    int rc = 0;
    for (int i = 0; i < s->n && !rc; i++) rc = seqset_add(&seqs, c->tok, s->contexts[i], s->targets[i], e);
    if (!rc) rc = eval_score(c, &seqs, 1, &sc, e);
    for (int i = 0; i < s->n && !rc; i++) {
        size_t len = (size_t)(sc.tok_offsets[i + 1] - sc.tok_offsets[i]);
        const float *lp = sc.logp + sc.tok_offsets[i];
        double loss = mia_loss_score(lp, len);
        scores[MIA_LOSS][i] = loss;
        scores[MIA_ZLIB][i] = mia_zlib_score(loss, s->targets[i], strlen(s->targets[i]));
        scores[MIA_MIN_K][i] = mia_min_k_score(lp, len, k);
        scores[MIA_MIN_K_PP][i] =
            mia_min_k_pp_score(lp, sc.mu + sc.tok_offsets[i], sc.var + sc.tok_offsets[i], len, k);
    }
    seqscores_free(&sc);
    seqset_free(&seqs);
    return rc;
}

const char *const mia_attack_names[MIA_ATTACKS] = {"loss", "zlib", "min_k", "min_k_pp"};

int muse_mia(EvalCtx *c, const TextSet *forget, const TextSet *holdout, double k, EvalResult *r,
             Err *e) {
    double *buf = malloc(((size_t)forget->n + (size_t)holdout->n) * MIA_ATTACKS * sizeof(double));
    if (!buf) return err_set(e, "out of memory");
    double *fs[MIA_ATTACKS], *hs[MIA_ATTACKS];
    for (int a = 0; a < MIA_ATTACKS; a++) {
        fs[a] = buf + (size_t)a * forget->n;
        hs[a] = buf + (size_t)MIA_ATTACKS * forget->n + (size_t)a * holdout->n;
    }
    int rc = mia_scores(c, forget, k, fs, e) || mia_scores(c, holdout, k, hs, e) ? -1 : 0;
    for (int a = 0; a < MIA_ATTACKS && !rc; a++) {
        // AUC of telling members (forget) from non-members (holdout): the holdout set is the
        // positive class of the non-membership score (open-unlearning mia_auc); 0.5 = no signal.
        double auc = auc_higher_is_positive(hs[a], (size_t)holdout->n, fs[a], (size_t)forget->n);
        char key[96];
        snprintf(key, sizeof key, "muse.mia.%s.auc", mia_attack_names[a]);
        rc = put(r, key, NULL, 0, auc, e);
        snprintf(key, sizeof key, "muse.mia.%s.forget_scores", mia_attack_names[a]);
        if (!rc && eval_result_set_array(r, key, fs[a], (size_t)forget->n)) rc = err_set(e, "out of memory");
        snprintf(key, sizeof key, "muse.mia.%s.holdout_scores", mia_attack_names[a]);
        if (!rc && eval_result_set_array(r, key, hs[a], (size_t)holdout->n)) rc = err_set(e, "out of memory");
    }
    free(buf);
    return rc;
}

double muse_privleak(double auc, double auc_retrain) {
    // MUSE reports AUC with the membership score oriented the other way (1 - ours), and
    // PrivLeak = (AUC_unlearned - AUC_retrain) / AUC_retrain (open-unlearning privleak, in %):
    // near 0 is good, strongly negative = still leaks (under-unlearned), positive = over-unlearned.
    double u = 1.0 - auc, ref = 1.0 - auc_retrain;
    return (u - ref) / (ref + 1e-10) * 100.0;
}
