// `lethe eval CONFIG.yaml`: evaluates one or several models on the TOFU and MUSE sets and the
// probes the config names, then writes OUT/eval.json, OUT/report.html and a terminal table.
#include "eval_run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "dataset.h"
#include "eval.h"
#include "eval_stats.h"
#include "model_yaml.h"
#include "qa.h"
#include "report.h"
#include "run_config.h"
#include "sha256.h"
#include "strbuf.h"
#include "textfile.h"
#include "train.h"
#include "yaml_json.h"

// ---- the config ----------------------------------------------------------------------------

#define MAX_MODELS 32

typedef struct {
    char name[64], role[16], path[1024], metrics_jsonl[1024];
} ModelSpec;

enum { TOFU_SET_FORGET, TOFU_SET_RETAIN, TOFU_SET_REAL_AUTHORS, TOFU_SET_WORLD_FACTS, TOFU_SETS };
static const char *const tofu_set_names[TOFU_SETS] = {"forget", "retain", "real_authors",
                                                      "world_facts"};

typedef struct {
    const char *path; // the config file
    char title[256], out[1024], tmpl[512], gold[64], gold_eval[1024];
    int series;
    long batch_tokens;
    int max_new_tokens, gen_batch;
    ModelSpec models[MAX_MODELS];
    int n_models;
    char tofu[TOFU_SETS][1024];
    int tofu_max;
    char muse_forget[1024], muse_holdout[1024], muse_knowmem_forget[1024],
        muse_knowmem_retain[1024];
    int muse_prefix_tokens, muse_max_new_tokens, muse_max;
    double muse_min_k;
    int relearn, relearn_steps, relearn_batch;
    double relearn_fraction, relearn_lr;
    int in_context;
    char in_context_source[32];
    int neighbour[TOFU_SETS]; // TOFU sets reported as neighbours
} EvalConfig;

// Allowed keys of each config mapping; the first entry names the mapping in messages.
static const char *const top_keys[] = {"(top level)", "title", "out", "template", "batch_tokens",
                                       "generation", "models", "gold", "gold_eval", "series",
                                       "tofu", "muse", "probes", NULL};
static const char *const generation_keys[] = {"generation", "max_new_tokens", "batch", NULL};
static const char *const model_keys[] = {"models[]", "name", "path", "role", "metrics_jsonl",
                                         NULL};
static const char *const tofu_keys[] = {"tofu", "forget", "retain", "real_authors",
                                        "world_facts", "max_samples", NULL};
static const char *const muse_keys[] = {"muse", "forget_text", "holdout_text", "knowmem_forget",
                                        "knowmem_retain", "prefix_tokens", "max_new_tokens",
                                        "min_k", "max_samples", NULL};
static const char *const probe_keys[] = {"probes", "relearn", "in_context", "neighbour", NULL};
static const char *const relearn_keys[] = {"probes.relearn", "steps", "fraction", "lr",
                                           "batch_size", NULL};
static const char *const in_context_keys[] = {"probes.in_context", "source", NULL};

static int check_keys(const EvalConfig *c, const JsonValue *obj, const char *const *allowed,
                      Err *e) {
    if (!json_is(obj, JSON_OBJECT))
        return err_set(e, "%s: %s must be a mapping of keys", c->path, allowed[0]);
    for (size_t i = 0; i < json_object_len(obj); i++) {
        const char *key = json_object_key(obj, i);
        int ok = 0;
        for (int k = 1; allowed[k] && !ok; k++) ok = !strcmp(allowed[k], key);
        if (ok) continue;
        const char *best = allowed[1];
        int bestd = 1 << 30;
        for (int k = 1; allowed[k]; k++) {
            int d = edit_distance(key, allowed[k]);
            if (d < bestd) bestd = d, best = allowed[k];
        }
        return err_set(e, "%s: %s: unknown key '%s' (did you mean '%s'?)", c->path, allowed[0],
                       key, best);
    }
    return 0;
}

static int get_string(const EvalConfig *c, const JsonValue *obj, const char *where,
                      const char *key, char *out, size_t cap, Err *e) {
    const JsonValue *v = json_object_get(obj, key);
    if (!v || json_is(v, JSON_NULL)) return 0;
    if (!json_is(v, JSON_STRING))
        return err_set(e, "%s: %s%s%s must be a string", c->path, where, *where ? "." : "", key);
    const char *s = json_string(v, NULL);
    if (strlen(s) >= cap)
        return err_set(e, "%s: %s%s%s is longer than %zu characters", c->path, where,
                       *where ? "." : "", key, cap - 1);
    snprintf(out, cap, "%s", s);
    return 0;
}

static int get_number(const EvalConfig *c, const JsonValue *obj, const char *where,
                      const char *key, double lo, double hi, double *out, Err *e) {
    const JsonValue *v = json_object_get(obj, key);
    if (!v || json_is(v, JSON_NULL)) return 0;
    if (!json_is(v, JSON_NUMBER) || json_number(v) < lo || json_number(v) > hi)
        return err_set(e, "%s: %s.%s must be a number in [%g, %g]", c->path, where, key, lo, hi);
    *out = json_number(v);
    return 0;
}

static int get_int(const EvalConfig *c, const JsonValue *obj, const char *where, const char *key,
                   long lo, long hi, long *out, Err *e) {
    double v = (double)*out;
    if (get_number(c, obj, where, key, (double)lo, (double)hi, &v, e)) return -1;
    if (v != floor(v)) return err_set(e, "%s: %s.%s must be a whole number", c->path, where, key);
    *out = (long)v;
    return 0;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int need_file(const EvalConfig *c, const char *key, const char *path, Err *e) {
    if (*path && !file_exists(path))
        return err_set(e, "%s: %s: no such file '%s'", c->path, key, path);
    return 0;
}

static int parse_config(EvalConfig *c, const JsonValue *root, Err *e) {
    snprintf(c->tmpl, sizeof c->tmpl, "%s", QA_DEFAULT_TEMPLATE);
    c->batch_tokens = 4096;
    c->max_new_tokens = 64;
    c->gen_batch = 16;
    c->muse_prefix_tokens = 32;
    c->muse_max_new_tokens = 64;
    c->muse_min_k = 0.4;
    c->relearn_steps = 5;
    c->relearn_batch = 4;
    c->relearn_fraction = 0.5;
    c->relearn_lr = 1e-3;
    snprintf(c->in_context_source, sizeof c->in_context_source, "paraphrased_answer");
    if (check_keys(c, root, top_keys, e)) return -1;
    long v;
    if (get_string(c, root, "", "title", c->title, sizeof c->title, e) ||
        get_string(c, root, "", "out", c->out, sizeof c->out, e) ||
        get_string(c, root, "", "template", c->tmpl, sizeof c->tmpl, e) ||
        get_string(c, root, "", "gold", c->gold, sizeof c->gold, e) ||
        get_string(c, root, "", "gold_eval", c->gold_eval, sizeof c->gold_eval, e))
        return -1;
    if (!strstr(c->tmpl, "{answer}"))
        return err_set(e, "%s: template must contain {answer}", c->path);
    v = c->batch_tokens;
    if (get_int(c, root, "(top level)", "batch_tokens", 16, 1L << 24, &v, e)) return -1;
    c->batch_tokens = v;
    const JsonValue *series = json_object_get(root, "series");
    if (series && !json_is(series, JSON_BOOL) && !json_is(series, JSON_NULL))
        return err_set(e, "%s: series must be true or false", c->path);
    c->series = json_bool(series);
    const JsonValue *gen = json_object_get(root, "generation");
    if (gen) {
        if (check_keys(c, gen, generation_keys, e)) return -1;
        v = c->max_new_tokens;
        if (get_int(c, gen, "generation", "max_new_tokens", 1, 4096, &v, e)) return -1;
        c->max_new_tokens = (int)v;
        v = c->gen_batch;
        if (get_int(c, gen, "generation", "batch", 1, 1024, &v, e)) return -1;
        c->gen_batch = (int)v;
    }

    const JsonValue *models = json_object_get(root, "models");
    if (!json_is(models, JSON_ARRAY) || json_array_len(models) == 0)
        return err_set(e, "%s: models must be a list of {name, path[, role, metrics_jsonl]}",
                       c->path);
    if (json_array_len(models) > MAX_MODELS)
        return err_set(e, "%s: models: at most %d models per evaluation", c->path, MAX_MODELS);
    for (size_t i = 0; i < json_array_len(models); i++) {
        const JsonValue *m = json_array_get(models, i);
        ModelSpec *s = &c->models[c->n_models++];
        char where[32];
        snprintf(where, sizeof where, "models[%zu]", i);
        if (check_keys(c, m, model_keys, e) ||
            get_string(c, m, where, "name", s->name, sizeof s->name, e) ||
            get_string(c, m, where, "path", s->path, sizeof s->path, e) ||
            get_string(c, m, where, "role", s->role, sizeof s->role, e) ||
            get_string(c, m, where, "metrics_jsonl", s->metrics_jsonl, sizeof s->metrics_jsonl,
                       e))
            return -1;
        if (!*s->path) return err_set(e, "%s: %s.path is required", c->path, where);
        if (!*s->name) snprintf(s->name, sizeof s->name, "model%zu", i + 1);
        // Names become directory names (probes/relearn-NAME) and report labels.
        if (strspn(s->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-+") !=
                strlen(s->name) ||
            s->name[0] == '.')
            return err_set(e, "%s: %s.name '%s': use letters, digits and _ . - + only", c->path,
                           where, s->name);
        if (!*s->role) snprintf(s->role, sizeof s->role, "%s", "other");
        static const char *const roles[] = {"target", "unlearned", "gold", "base", "other", NULL};
        int ok = 0;
        for (int k = 0; roles[k]; k++) ok |= !strcmp(roles[k], s->role);
        if (!ok)
            return err_set(e, "%s: %s.role '%s' is not one of target, unlearned, gold, base, "
                              "other",
                           c->path, where, s->role);
        for (int k = 0; k + 1 < c->n_models; k++)
            if (!strcmp(c->models[k].name, s->name))
                return err_set(e, "%s: %s.name '%s' is used twice", c->path, where, s->name);
        if (!strcmp(s->role, "gold") && !*c->gold) snprintf(c->gold, sizeof c->gold, "%s", s->name);
        if (need_file(c, where, s->path, e)) return -1;
    }
    if (*c->gold) {
        int found = 0;
        for (int k = 0; k < c->n_models; k++) found |= !strcmp(c->models[k].name, c->gold);
        if (!found)
            return err_set(e, "%s: gold: no model named '%s' in models", c->path, c->gold);
    }
    if (need_file(c, "gold_eval", c->gold_eval, e)) return -1;

    const JsonValue *tofu = json_object_get(root, "tofu");
    if (tofu) {
        if (check_keys(c, tofu, tofu_keys, e)) return -1;
        for (int s = 0; s < TOFU_SETS; s++) {
            char key[64];
            snprintf(key, sizeof key, "tofu.%s", tofu_set_names[s]);
            if (get_string(c, tofu, "tofu", tofu_set_names[s], c->tofu[s], sizeof c->tofu[s], e) ||
                need_file(c, key, c->tofu[s], e))
                return -1;
        }
        v = 0;
        if (get_int(c, tofu, "tofu", "max_samples", 0, 1L << 30, &v, e)) return -1;
        c->tofu_max = (int)v;
    }
    const JsonValue *muse = json_object_get(root, "muse");
    if (muse) {
        if (check_keys(c, muse, muse_keys, e) ||
            get_string(c, muse, "muse", "forget_text", c->muse_forget, sizeof c->muse_forget, e) ||
            get_string(c, muse, "muse", "holdout_text", c->muse_holdout, sizeof c->muse_holdout,
                       e) ||
            get_string(c, muse, "muse", "knowmem_forget", c->muse_knowmem_forget,
                       sizeof c->muse_knowmem_forget, e) ||
            get_string(c, muse, "muse", "knowmem_retain", c->muse_knowmem_retain,
                       sizeof c->muse_knowmem_retain, e) ||
            need_file(c, "muse.forget_text", c->muse_forget, e) ||
            need_file(c, "muse.holdout_text", c->muse_holdout, e) ||
            need_file(c, "muse.knowmem_forget", c->muse_knowmem_forget, e) ||
            need_file(c, "muse.knowmem_retain", c->muse_knowmem_retain, e))
            return -1;
        v = c->muse_prefix_tokens;
        if (get_int(c, muse, "muse", "prefix_tokens", 1, 1 << 20, &v, e)) return -1;
        c->muse_prefix_tokens = (int)v;
        v = c->muse_max_new_tokens;
        if (get_int(c, muse, "muse", "max_new_tokens", 1, 4096, &v, e)) return -1;
        c->muse_max_new_tokens = (int)v;
        v = 0;
        if (get_int(c, muse, "muse", "max_samples", 0, 1L << 30, &v, e)) return -1;
        c->muse_max = (int)v;
        if (get_number(c, muse, "muse", "min_k", 1e-6, 1.0, &c->muse_min_k, e)) return -1;
        if (*c->muse_holdout && !*c->muse_forget)
            return err_set(e, "%s: muse.holdout_text needs muse.forget_text (the members)",
                           c->path);
    }
    const JsonValue *probes = json_object_get(root, "probes");
    if (probes) {
        if (check_keys(c, probes, probe_keys, e)) return -1;
        const JsonValue *rl = json_object_get(probes, "relearn");
        if (rl && !json_is(rl, JSON_NULL)) {
            if (check_keys(c, rl, relearn_keys, e)) return -1;
            c->relearn = 1;
            v = c->relearn_steps;
            if (get_int(c, rl, "probes.relearn", "steps", 1, 1000000, &v, e)) return -1;
            c->relearn_steps = (int)v;
            v = c->relearn_batch;
            if (get_int(c, rl, "probes.relearn", "batch_size", 1, 1 << 20, &v, e)) return -1;
            c->relearn_batch = (int)v;
            if (get_number(c, rl, "probes.relearn", "fraction", 1e-6, 0.999999,
                           &c->relearn_fraction, e) ||
                get_number(c, rl, "probes.relearn", "lr", 0.0, 1e3, &c->relearn_lr, e))
                return -1;
            if (!*c->tofu[TOFU_SET_FORGET])
                return err_set(e, "%s: probes.relearn needs tofu.forget (the set to relearn)",
                               c->path);
        }
        const JsonValue *ic = json_object_get(probes, "in_context");
        if (ic && !json_is(ic, JSON_NULL)) {
            if (check_keys(c, ic, in_context_keys, e) ||
                get_string(c, ic, "probes.in_context", "source", c->in_context_source,
                           sizeof c->in_context_source, e))
                return -1;
            if (strcmp(c->in_context_source, "answer") &&
                strcmp(c->in_context_source, "paraphrased_answer"))
                return err_set(e, "%s: probes.in_context.source must be answer or "
                                  "paraphrased_answer",
                               c->path);
            if (!*c->tofu[TOFU_SET_FORGET])
                return err_set(e, "%s: probes.in_context needs tofu.forget", c->path);
            c->in_context = 1;
        }
        const JsonValue *nb = json_object_get(probes, "neighbour");
        for (size_t i = 0; nb && i < json_array_len(nb); i++) {
            const char *name = json_string(json_array_get(nb, i), NULL);
            int found = -1;
            for (int s = 0; name && s < TOFU_SETS; s++)
                if (!strcmp(name, tofu_set_names[s])) found = s;
            if (found < 0 || !*c->tofu[found])
                return err_set(e, "%s: probes.neighbour: '%s' is not a TOFU set of this config "
                                  "(real_authors, world_facts, retain)",
                               c->path, name ? name : "(not a string)");
            c->neighbour[found] = 1;
        }
        if (nb && !json_is(nb, JSON_ARRAY))
            return err_set(e, "%s: probes.neighbour must be a list of TOFU set names", c->path);
    }
    if (!*c->tofu[0] && !*c->tofu[1] && !*c->tofu[2] && !*c->tofu[3] && !*c->muse_forget &&
        !*c->muse_knowmem_forget && !*c->muse_knowmem_retain)
        return err_set(e, "%s: nothing to evaluate: give tofu: and/or muse: sets", c->path);
    return 0;
}

// ---- the metric catalogue: how eval.json and the report present each key ---------------------

typedef struct {
    const char *key, *benchmark, *label, *better;
    int key_metric, log_scale;
} MetricInfo;

static const MetricInfo catalogue[] = {
    {"tofu.forget_quality", "TOFU", "Forget quality (KS-test p-value vs gold)", "higher", 1, 1},
    {"tofu.model_utility", "TOFU", "Model utility (harmonic mean of 9)", "higher", 1, 0},
    {"tofu.forget.prob", "TOFU", "Forget: P(a|q)^(1/|a|)", "gold", 1, 0},
    {"tofu.forget.rouge_l_recall", "TOFU", "Forget: ROUGE-L recall", "gold", 1, 0},
    {"tofu.forget.truth_ratio", "TOFU", "Forget: truth ratio, mean min(R, 1/R)", "gold", 0, 0},
    {"tofu.forget.exact_memorization", "TOFU", "Forget: exact memorisation", "gold", 0, 0},
    {"tofu.forget.extraction_strength", "TOFU", "Forget: extraction strength", "gold", 0, 0},
    {"tofu.retain.prob", "TOFU", "Retain: P(a|q)^(1/|a|)", "higher", 0, 0},
    {"tofu.retain.rouge_l_recall", "TOFU", "Retain: ROUGE-L recall", "higher", 0, 0},
    {"tofu.retain.truth_ratio", "TOFU", "Retain: truth ratio, mean max(0, 1 - R)", "higher", 0, 0},
    {"tofu.real_authors.prob_normalised", "TOFU", "Real authors: normalised P", "higher", 0, 0},
    {"tofu.real_authors.rouge_l_recall", "TOFU", "Real authors: ROUGE-L recall", "higher", 0, 0},
    {"tofu.real_authors.truth_ratio", "TOFU", "Real authors: truth ratio", "higher", 0, 0},
    {"tofu.world_facts.prob_normalised", "TOFU", "World facts: normalised P", "higher", 0, 0},
    {"tofu.world_facts.rouge_l_recall", "TOFU", "World facts: ROUGE-L recall", "higher", 0, 0},
    {"tofu.world_facts.truth_ratio", "TOFU", "World facts: truth ratio", "higher", 0, 0},
    {"muse.verbmem_forget", "MUSE", "VerbMem on forget (ROUGE-L F1)", "gold", 1, 0},
    {"muse.knowmem_forget", "MUSE", "KnowMem on forget (ROUGE-L F1)", "gold", 1, 0},
    {"muse.knowmem_retain", "MUSE", "KnowMem on retain (ROUGE-L F1)", "higher", 1, 0},
    {"muse.privleak", "MUSE", "PrivLeak, Min-K% (%)", "zero", 1, 0},
    {"muse.mia.loss.auc", "MUSE", "MIA AUC, loss attack", "gold", 0, 0},
    {"muse.mia.zlib.auc", "MUSE", "MIA AUC, zlib attack", "gold", 0, 0},
    {"muse.mia.min_k.auc", "MUSE", "MIA AUC, Min-K% attack", "gold", 0, 0},
    {"muse.mia.min_k_pp.auc", "MUSE", "MIA AUC, Min-K%++ attack", "gold", 0, 0},
    {"probe.relearn.before.prob", "Probes", "Relearn: held-out forget P before", "gold", 0, 0},
    {"probe.relearn.after.prob", "Probes", "Relearn: held-out forget P after k steps", "gold", 1, 0},
    {"probe.relearn.before.rouge_l_recall", "Probes", "Relearn: held-out ROUGE-L before", "gold", 0, 0},
    {"probe.relearn.after.rouge_l_recall", "Probes", "Relearn: held-out ROUGE-L after k steps", "gold", 1, 0},
    {"probe.in_context.prob", "Probes", "In context: forget P with the text in the prompt", "gold", 1, 0},
    {"probe.in_context.rouge_l_recall", "Probes", "In context: forget ROUGE-L with the text in the prompt", "gold", 1, 0},
    {"neighbour.utility_retain_only", "Neighbours", "Utility on retain only (harmonic mean of 3)", "higher", 1, 0},
    {"neighbour.real_authors.prob_normalised", "Neighbours", "Real authors: normalised P", "higher", 1, 0},
    {"neighbour.real_authors.rouge_l_recall", "Neighbours", "Real authors: ROUGE-L recall", "higher", 0, 0},
    {"neighbour.real_authors.truth_ratio", "Neighbours", "Real authors: truth ratio", "higher", 0, 0},
    {"neighbour.world_facts.prob_normalised", "Neighbours", "World facts: normalised P", "higher", 1, 0},
    {"neighbour.world_facts.rouge_l_recall", "Neighbours", "World facts: ROUGE-L recall", "higher", 0, 0},
    {"neighbour.world_facts.truth_ratio", "Neighbours", "World facts: truth ratio", "higher", 0, 0},
    {"neighbour.retain.prob", "Neighbours", "Retain: P(a|q)^(1/|a|)", "higher", 0, 0},
    {"neighbour.retain.rouge_l_recall", "Neighbours", "Retain: ROUGE-L recall", "higher", 0, 0},
};
static const int n_catalogue = sizeof catalogue / sizeof catalogue[0];

// ---- evaluating one model ----------------------------------------------------------------

typedef struct {
    EvalConfig cfg;
    QaSet tofu[TOFU_SETS];
    TextSet muse_forget, muse_holdout;
    QaSet knowmem_forget, knowmem_retain;
    EvalResult results[MAX_MODELS + 1];
    int n_results;
    double throughput[MAX_MODELS + 1][4]; // scored samples/s, scored tokens/s, gen tokens/s, s
    DeviceRequest dev;                     // where the models are scored (--device)
    char device[MAX_MODELS + 1][360];      // the engine each model ran on
} EvalRun;

static int copy_value(EvalResult *r, const char *from, const char *to) {
    const double *v = eval_result_value(r, from);
    return v ? eval_result_set(r, to, *v) : 0;
}

static int relearn_probe(EvalRun *run, EvalCtx *c, EvalResult *r, const ModelSpec *spec,
                         Err *e) {
    const QaSet *forget = &run->tofu[TOFU_SET_FORGET];
    int n_learn = (int)ceil(run->cfg.relearn_fraction * forget->n);
    if (n_learn < 1) n_learn = 1;
    if (n_learn >= forget->n)
        return err_set(e, "probes.relearn: fraction %g of %d forget items leaves none to "
                          "measure on",
                       run->cfg.relearn_fraction, forget->n);
    // Learn on the first n_learn items, measure on the rest (which it never saw again).
    QaSet rest = *forget;
    rest.items = forget->items + n_learn;
    rest.n = forget->n - n_learn;
    if (tofu_eval_set(c, &rest, TOFU_FORGET, NULL, TOFU_ROUGE, "probe.relearn.before", r, e))
        return -1;

    char dir[1200], data[1300], model[1300];
    snprintf(dir, sizeof dir, "%s/probes/relearn-%s", run->cfg.out, spec->name);
    snprintf(data, sizeof data, "%s/relearn.h5", dir);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    char mk[1300];
    snprintf(mk, sizeof mk, "%s/probes", run->cfg.out);
    if ((mkdir(mk, 0777) && errno != EEXIST) || (mkdir(dir, 0777) && errno != EEXIST))
        return err_set(e, "%s: %s", dir, strerror(errno));
    SeqSet seqs = {0};
    int rc = 0;
    for (int i = 0; i < n_learn && !rc; i++) {
        StrBuf ctx = {0}, tgt = {0};
        rc = qa_format(c->tmpl, forget->items[i].question, forget->items[i].answer, &ctx, &tgt, e) ||
             seqset_add(&seqs, c->tok, ctx.data, tgt.data, e);
        sb_free(&ctx);
        sb_free(&tgt);
    }
    if (!rc) {
        TokenDataset d = {.n_samples = seqs.n, .n_tokens = (int64_t)seqs.n_tokens,
                          .tokens = seqs.tokens, .offsets = seqs.offsets, .loss_mask = seqs.mask,
                          .vocab_size = c->model->cfg.vocab_size};
        snprintf(d.tokenizer_name, sizeof d.tokenizer_name, "%s", "model");
        tokenizer_digest(c->tok, d.tokenizer_digest);
        rc = dataset_write(data, &d, e);
    }
    seqset_free(&seqs);
    if (rc) return -1;

    RunConfig rcfg;
    run_config_defaults(&rcfg, "finetune");
    char kv[1400];
    const char *fixed[] = {"optim.schedule=constant", "optim.warmup_steps=0",
                           "optim.weight_decay=0", "train.state_every=0", "train.log_every=0",
                           "seed=0", NULL};
    for (int i = 0; fixed[i] && !rc; i++) rc = run_config_override(&rcfg, fixed[i], e);
    snprintf(kv, sizeof kv, "model=%s", spec->path);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "data.train=%s", data);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "out=%s", dir);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "optim.lr=%.17g", run->cfg.relearn_lr);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "train.max_steps=%d", run->cfg.relearn_steps);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "train.batch_size=%d", run->cfg.relearn_batch);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "train.micro_batch_size=%d", run->cfg.relearn_batch);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "device.name=%s", run->dev.name);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    snprintf(kv, sizeof kv, "device.dtype=%s", run->dev.dtype);
    if (!rc) rc = run_config_override(&rcfg, kv, e);
    if (!rc) rc = run_config_finish(&rcfg, "finetune", e);
    if (!rc && train_run(&rcfg, "finetune", 0, e) != 0) rc = -1;
    if (rc) return err_prefix(e, "probes.relearn (model %s)", spec->name);

    LlamaModel relearned = {0};
    if (llama_load_file(&relearned, model, e)) return -1;
    EvalCtx c2 = *c;
    c2.model = &relearned;
    rc = engine_open(&c2.engine, &run->dev, &relearned, NULL, 0, 0, e);
    if (!rc)
        rc = tofu_eval_set(&c2, &rest, TOFU_FORGET, NULL, TOFU_ROUGE, "probe.relearn.after", r,
                           e);
    engine_close(c2.engine);
    c->score_seconds = c2.score_seconds, c->gen_seconds = c2.gen_seconds;
    c->scored_samples = c2.scored_samples, c->scored_tokens = c2.scored_tokens;
    c->generated_tokens = c2.generated_tokens, c->generated_samples = c2.generated_samples;
    llama_free(&relearned);
    return rc;
}

static int in_context_probe(EvalRun *run, EvalCtx *c, EvalResult *r, Err *e) {
    const QaSet *forget = &run->tofu[TOFU_SET_FORGET];
    const char **prefixes = calloc((size_t)forget->n, sizeof *prefixes);
    if (!prefixes) return err_set(e, "out of memory");
    const int para = !strcmp(run->cfg.in_context_source, "paraphrased_answer");
    for (int i = 0; i < forget->n; i++) {
        const QaItem *it = &forget->items[i];
        prefixes[i] = para && it->paraphrased_answer ? it->paraphrased_answer : it->answer;
    }
    int rc = tofu_eval_set(c, forget, TOFU_FORGET, prefixes, TOFU_ROUGE, "probe.in_context", r, e);
    free(prefixes);
    return rc;
}

static int eval_one_model(EvalRun *run, const ModelSpec *spec, EvalResult *r, double tp[4],
                          Err *e) {
    snprintf(r->name, sizeof r->name, "%s", spec->name);
    snprintf(r->role, sizeof r->role, "%s", spec->role);
    snprintf(r->path, sizeof r->path, "%s", spec->path);
    // The report resolves metrics_jsonl from the output directory: keep it absolute.
    char *abs = *spec->metrics_jsonl ? realpath(spec->metrics_jsonl, NULL) : NULL;
    snprintf(r->metrics_jsonl, sizeof r->metrics_jsonl, "%s", abs ? abs : spec->metrics_jsonl);
    free(abs);
    if (sha256_file(spec->path, r->sha256, e)) return -1;
    LlamaModel m = {0};
    Tokenizer tok = {0};
    CkptReader *reader = NULL;
    Engine *engine = NULL;
    int rc = -1;
    int have_tok = 0;
    if (ckpt_reader_open(&reader, spec->path, e)) goto done;
    if (llama_load(&m, reader, e)) goto done;
    if (ckpt_reader_tokenizer(reader, &tok, &have_tok, e)) goto done;
    if (!have_tok) {
        err_set(e, "%s: no /tokenizer in the checkpoint; evaluation needs one to encode the "
                   "questions (lethe convert --tokenizer ...)",
                spec->path);
        goto done;
    }
    if (engine_open(&engine, &run->dev, &m, NULL, 0, 0, e)) goto done;
    EvalCtx c = {.model = &m, .tok = &tok, .engine = engine,
                 .batch_tokens = run->cfg.batch_tokens, .gen_batch = run->cfg.gen_batch,
                 .max_new_tokens = run->cfg.max_new_tokens, .tmpl = run->cfg.tmpl};
    const EvalConfig *cfg = &run->cfg;
    fprintf(stderr, "eval: %s (%s) on %s\n", spec->name, spec->path, engine->description);
    snprintf(run->device[run->n_results], sizeof run->device[0], "%s", engine->description);
    for (int s = 0; s < TOFU_SETS; s++) {
        if (!run->tofu[s].n) continue;
        TofuRole role = s == TOFU_SET_FORGET   ? TOFU_FORGET
                        : s == TOFU_SET_RETAIN ? TOFU_RETAIN
                                               : TOFU_NEIGHBOUR;
        unsigned what = TOFU_TRUTH_RATIO | TOFU_ROUGE | (s <= TOFU_SET_RETAIN ? TOFU_MEMORISATION : 0);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "tofu.%s", tofu_set_names[s]);
        if (tofu_eval_set(&c, &run->tofu[s], role, NULL, what, prefix, r, e)) goto done;
        fprintf(stderr, "  tofu %-12s %d questions\n", tofu_set_names[s], run->tofu[s].n);
    }
    // Model utility (TOFU): the harmonic mean of the nine retain / real-author / world-fact
    // metrics (open-unlearning hm_aggregate over the model_utility pre-computes).
    static const char *const utility_keys[9] = {
        "tofu.retain.prob", "tofu.retain.rouge_l_recall", "tofu.retain.truth_ratio",
        "tofu.real_authors.prob_normalised", "tofu.real_authors.rouge_l_recall",
        "tofu.real_authors.truth_ratio", "tofu.world_facts.prob_normalised",
        "tofu.world_facts.rouge_l_recall", "tofu.world_facts.truth_ratio"};
    double u[9];
    int have = 0;
    for (int k = 0; k < 9; k++) {
        const double *v = eval_result_value(r, utility_keys[k]);
        if (v) u[have++] = *v;
    }
    if (have == 9 && eval_result_set(r, "tofu.model_utility", harmonic_mean(u, 9))) goto oom;
    if (have >= 3 && eval_result_value(r, "tofu.retain.truth_ratio") &&
        eval_result_set(r, "neighbour.utility_retain_only", harmonic_mean(u, 3)))
        goto oom;
    for (int s = 0; s < TOFU_SETS; s++) {
        if (!cfg->neighbour[s]) continue;
        static const char *const fields[] = {"prob", "prob_normalised", "rouge_l_recall",
                                             "truth_ratio"};
        for (int k = 0; k < 4; k++) {
            char from[96], to[96];
            snprintf(from, sizeof from, "tofu.%s.%s", tofu_set_names[s], fields[k]);
            snprintf(to, sizeof to, "neighbour.%s.%s", tofu_set_names[s], fields[k]);
            if (copy_value(r, from, to)) goto oom;
        }
    }

    if (run->muse_forget.n &&
        muse_verbmem(&c, &run->muse_forget, cfg->muse_prefix_tokens, cfg->muse_max_new_tokens,
                     "muse.verbmem_forget", r, e))
        goto done;
    if (run->knowmem_forget.n) {
        if (tofu_eval_set(&c, &run->knowmem_forget, TOFU_FORGET, NULL, TOFU_ROUGE,
                          "muse.knowmem.forget", r, e) ||
            copy_value(r, "muse.knowmem.forget.rouge_l_f1", "muse.knowmem_forget"))
            goto done;
    }
    if (run->knowmem_retain.n) {
        if (tofu_eval_set(&c, &run->knowmem_retain, TOFU_RETAIN, NULL, TOFU_ROUGE,
                          "muse.knowmem.retain", r, e) ||
            copy_value(r, "muse.knowmem.retain.rouge_l_f1", "muse.knowmem_retain"))
            goto done;
    }
    if (run->muse_holdout.n &&
        muse_mia(&c, &run->muse_forget, &run->muse_holdout, cfg->muse_min_k, r, e))
        goto done;
    if (cfg->in_context) {
        if (in_context_probe(run, &c, r, e)) goto done;
        fprintf(stderr, "  probe in_context\n");
    }
    if (cfg->relearn) {
        fprintf(stderr, "  probe relearn: %d steps on %.0f%% of the forget set\n",
                cfg->relearn_steps, 100 * cfg->relearn_fraction);
        if (relearn_probe(run, &c, r, spec, e)) goto done;
    }
    tp[0] = c.score_seconds > 0 ? c.scored_samples / c.score_seconds : 0;
    tp[1] = c.score_seconds > 0 ? c.scored_tokens / c.score_seconds : 0;
    tp[2] = c.gen_seconds > 0 ? c.generated_tokens / c.gen_seconds : 0;
    tp[3] = c.score_seconds + c.gen_seconds;
    fprintf(stderr, "  scored %ld samples (%.0f samples/s, %.0f tokens/s); generated %ld tokens "
                    "(%.0f tokens/s)\n",
            c.scored_samples, tp[0], tp[1], c.generated_tokens, tp[2]);
    rc = 0;
    goto done;
oom:
    err_set(e, "out of memory");
done:
    if (rc) err_prefix(e, "model %s", spec->name);
    tokenizer_free(&tok);
    if (reader) ckpt_reader_close(reader);
    engine_close(engine);
    llama_free(&m);
    return rc;
}

// The gold model of a saved eval.json: its values and per-sample arrays.
static int load_gold_eval(const char *path, const char *want, EvalResult *r, Err *e) {
    JsonValue *root = json_parse_file(path, JSON_FILE_SINGLE, e);
    if (!root) return -1;
    int rc = 0;
    const char *fmt = json_object_get_string(root, "format");
    const JsonValue *models = json_object_get(root, "models");
    const JsonValue *gold = NULL;
    if (!fmt || strcmp(fmt, "lethe-eval/1"))
        rc = err_set(e, "%s: field \"format\" is not \"lethe-eval/1\": not an eval.json of lethe",
                     path);
    for (size_t i = 0; !rc && i < json_array_len(models); i++) {
        const JsonValue *m = json_array_get(models, i);
        const char *name = json_object_get_string(m, "name");
        const char *role = json_object_get_string(m, "role");
        if ((*want && name && !strcmp(name, want)) || (!*want && role && !strcmp(role, "gold")))
            gold = m;
    }
    if (!rc && !gold)
        rc = err_set(e, "%s: no model %s%s in \"models\"", path, *want ? "named " : "with role ",
                     *want ? want : "gold");
    if (!rc) {
        const char *name = json_object_get_string(gold, "name");
        snprintf(r->name, sizeof r->name, "%s", name);
        snprintf(r->role, sizeof r->role, "gold");
        snprintf(r->path, sizeof r->path, "%s", json_object_get_string(gold, "path") ? json_object_get_string(gold, "path") : "");
        snprintf(r->sha256, sizeof r->sha256, "%s", json_object_get_string(gold, "sha256") ? json_object_get_string(gold, "sha256") : "");
        const JsonValue *vals = json_object_get(json_object_get(root, "values"), name);
        for (size_t i = 0; i < json_object_len(vals) && !rc; i++)
            if (json_is(json_object_value(vals, i), JSON_NUMBER) &&
                eval_result_set(r, json_object_key(vals, i), json_number(json_object_value(vals, i))))
                rc = err_set(e, "out of memory");
        const JsonValue *arrays = json_object_get(json_object_get(root, "samples"), name);
        for (size_t i = 0; i < json_object_len(arrays) && !rc; i++) {
            const JsonValue *a = json_object_value(arrays, i);
            size_t n = json_array_len(a);
            double *v = malloc((n + 1) * sizeof *v);
            if (!v) {
                rc = err_set(e, "out of memory");
                break;
            }
            for (size_t k = 0; k < n; k++) {
                const JsonValue *x = json_array_get(a, k);
                v[k] = json_is(x, JSON_NUMBER) ? json_number(x) : NAN;
            }
            if (eval_result_set_array(r, json_object_key(arrays, i), v, n)) rc = err_set(e, "out of memory");
            free(v);
        }
    }
    json_free(root);
    return rc;
}

// Forget quality and PrivLeak of every model against the gold model's statistics.
static int compare_with_gold(EvalRun *run, const EvalResult *gold, Err *e) {
    const EvalArray *g_tr = eval_result_array(gold, "tofu.forget.truth_ratio_raw");
    const double *g_auc = eval_result_value(gold, "muse.mia.min_k.auc");
    for (int i = 0; i < run->n_results; i++) {
        EvalResult *r = &run->results[i];
        const EvalArray *tr = eval_result_array(r, "tofu.forget.truth_ratio_raw");
        if (g_tr && tr) {
            // open-unlearning get_forget_quality: ks_2samp(1/(tr+1e-10), 1/(tr_gold+1e-10)).
            double *x = malloc((tr->n + g_tr->n + 1) * sizeof *x);
            if (!x) return err_set(e, "out of memory");
            for (size_t k = 0; k < tr->n; k++) x[k] = 1.0 / (tr->v[k] + 1e-10);
            for (size_t k = 0; k < g_tr->n; k++) x[tr->n + k] = 1.0 / (g_tr->v[k] + 1e-10);
            double stat;
            double p = ks_2samp_pvalue(x, tr->n, x + tr->n, g_tr->n, &stat);
            free(x);
            if (eval_result_set(r, "tofu.forget_quality", p) ||
                eval_result_set(r, "tofu.forget_quality_ks_statistic", stat))
                return err_set(e, "out of memory");
        }
        const double *auc = eval_result_value(r, "muse.mia.min_k.auc");
        if (g_auc && auc && eval_result_set(r, "muse.privleak", muse_privleak(*auc, *g_auc)))
            return err_set(e, "out of memory");
    }
    return 0;
}

// ---- output --------------------------------------------------------------------------------

static void json_number_or_null(StrBuf *b, double v) {
    if (isfinite(v)) sb_printf(b, "%.17g", v); // round-trips (gold_eval reads them back)
    else sb_printf(b, "null");
}

static int catalogue_present(const EvalRun *run, const char *key) {
    for (int i = 0; i < run->n_results; i++)
        if (eval_result_value(&run->results[i], key)) return 1;
    return 0;
}

static char *build_eval_json(const EvalRun *run, const JsonValue *config_root) {
    StrBuf b = {0};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char created[32];
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    sb_printf(&b, "{\n  \"format\": \"lethe-eval/1\",\n  \"created\": \"%s\",\n", created);
    sb_printf(&b, "  \"lethe_version\": \"%s\",\n  \"title\": ", LETHE_VERSION);
    sb_json_string(&b, *run->cfg.title ? run->cfg.title : "Lethe evaluation");
    sb_printf(&b, ",\n  \"series\": %s,\n  \"config_path\": ", run->cfg.series ? "true" : "false");
    sb_json_string(&b, run->cfg.path);
    char *cfg_json = json_serialize(config_root, NULL);
    sb_printf(&b, ",\n  \"config\": %s,\n", cfg_json ? cfg_json : "null");
    free(cfg_json);
    sb_printf(&b, "  \"notes\": [\n");
    sb_printf(&b, "    \"Definitions follow locuslab/open-unlearning and the TOFU and MUSE papers: "
                  "P(a|q)^(1/|a|) = exp(-mean NLL of the answer); ROUGE with rouge_score's "
                  "tokenizer and Porter stemmer; forget quality = KS-test p-value of the forget "
                  "truth ratios against the gold model's; PrivLeak from Min-K%% (k = %g) AUCs.\",\n",
              run->cfg.muse_min_k);
    sb_printf(&b, "    \"'gold' as the better direction means: closest to the gold-standard "
                  "(retain-only) model is best.\",\n");
    sb_printf(&b, "    \"Probes: relearn = fine-tune %d steps (lr %g) on %.0f%% of the forget set, "
                  "then measure the rest; in context = the forget answer's %s is put before each "
                  "question.\"\n  ],\n",
              run->cfg.relearn_steps, run->cfg.relearn_lr, 100 * run->cfg.relearn_fraction,
              !strcmp(run->cfg.in_context_source, "answer") ? "text" : "paraphrase");
    sb_printf(&b, "  \"models\": [\n");
    for (int i = 0; i < run->n_results; i++) {
        const EvalResult *r = &run->results[i];
        sb_printf(&b, "    {\"name\": ");
        sb_json_string(&b, r->name);
        sb_printf(&b, ", \"role\": ");
        sb_json_string(&b, r->role);
        sb_printf(&b, ", \"path\": ");
        sb_json_string(&b, r->path);
        sb_printf(&b, ", \"sha256\": ");
        sb_json_string(&b, r->sha256);
        sb_printf(&b, ", \"metrics_jsonl\": ");
        if (*r->metrics_jsonl) sb_json_string(&b, r->metrics_jsonl);
        else sb_printf(&b, "null");
        sb_printf(&b, "}%s\n", i + 1 < run->n_results ? "," : "");
    }
    sb_printf(&b, "  ],\n  \"metrics\": [\n");
    int first = 1;
    for (int k = 0; k < n_catalogue; k++) {
        const MetricInfo *mi = &catalogue[k];
        if (!catalogue_present(run, mi->key)) continue;
        sb_printf(&b, "%s    {\"key\": \"%s\", \"benchmark\": \"%s\", \"label\": ", first ? "" : ",\n",
                  mi->key, mi->benchmark);
        sb_json_string(&b, mi->label);
        sb_printf(&b, ", \"better\": \"%s\", \"key_metric\": %s, \"log_scale\": %s}", mi->better,
                  mi->key_metric ? "true" : "false", mi->log_scale ? "true" : "false");
        first = 0;
    }
    sb_printf(&b, "\n  ],\n  \"values\": {\n");
    for (int i = 0; i < run->n_results; i++) {
        const EvalResult *r = &run->results[i];
        sb_printf(&b, "    ");
        sb_json_string(&b, r->name);
        sb_printf(&b, ": {");
        for (int k = 0; k < r->n_values; k++) {
            sb_printf(&b, "%s\"%s\": ", k ? ", " : "", r->values[k].key);
            json_number_or_null(&b, r->values[k].value);
        }
        sb_printf(&b, "}%s\n", i + 1 < run->n_results ? "," : "");
    }
    sb_printf(&b, "  },\n  \"tradeoffs\": [");
    int nt = 0;
    if (catalogue_present(run, "tofu.forget_quality") && catalogue_present(run, "tofu.model_utility"))
        sb_printf(&b, "%s\n    {\"benchmark\": \"TOFU\", \"x\": \"tofu.model_utility\", \"y\": "
                      "\"tofu.forget_quality\", \"y_log\": true, \"title\": \"Forget quality vs "
                      "model utility\"}",
                  nt++ ? "," : "");
    if (catalogue_present(run, "muse.verbmem_forget") && catalogue_present(run, "muse.knowmem_retain"))
        sb_printf(&b, "%s\n    {\"benchmark\": \"MUSE\", \"x\": \"muse.knowmem_retain\", \"y\": "
                      "\"muse.verbmem_forget\", \"y_log\": false, \"title\": \"VerbMem on forget "
                      "vs KnowMem on retain\"}",
                  nt++ ? "," : "");
    sb_printf(&b, "%s],\n  \"throughput\": {\n", nt ? "\n  " : "");
    for (int i = 0; i < run->n_results; i++) {
        const double *tp = run->throughput[i];
        sb_printf(&b, "    ");
        sb_json_string(&b, run->results[i].name);
        sb_printf(&b, ": {\"scored_samples_per_s\": %.1f, \"scored_tokens_per_s\": %.1f, "
                      "\"generated_tokens_per_s\": %.1f, \"seconds\": %.3f, \"device\": ",
                  tp[0], tp[1], tp[2], tp[3]);
        sb_json_string(&b, run->device[i]);
        sb_printf(&b, "}%s\n", i + 1 < run->n_results ? "," : "");
    }
    sb_printf(&b, "  },\n  \"samples\": {\n");
    for (int i = 0; i < run->n_results; i++) {
        const EvalResult *r = &run->results[i];
        sb_printf(&b, "    ");
        sb_json_string(&b, r->name);
        sb_printf(&b, ": {");
        for (int k = 0; k < r->n_arrays; k++) {
            sb_printf(&b, "%s\n      \"%s\": [", k ? "," : "", r->arrays[k].key);
            for (size_t j = 0; j < r->arrays[k].n; j++) {
                if (j) sb_printf(&b, ", ");
                json_number_or_null(&b, r->arrays[k].v[j]);
            }
            sb_printf(&b, "]");
        }
        sb_printf(&b, "%s}%s\n", r->n_arrays ? "\n    " : "", i + 1 < run->n_results ? "," : "");
    }
    sb_printf(&b, "  },\n  \"generations\": {\n");
    for (int i = 0; i < run->n_results; i++) {
        const EvalResult *r = &run->results[i];
        sb_printf(&b, "    ");
        sb_json_string(&b, r->name);
        sb_printf(&b, ": {");
        for (int k = 0; k < r->n_texts; k++) {
            sb_printf(&b, "%s\n      \"%s\": [", k ? "," : "", r->texts[k].key);
            for (size_t j = 0; j < r->texts[k].n; j++) {
                if (j) sb_printf(&b, ", ");
                sb_json_string(&b, r->texts[k].texts[j]);
            }
            sb_printf(&b, "]");
        }
        sb_printf(&b, "%s}%s\n", r->n_texts ? "\n    " : "", i + 1 < run->n_results ? "," : "");
    }
    sb_printf(&b, "  }\n}\n");
    if (b.failed) {
        sb_free(&b);
        return NULL;
    }
    return b.data;
}

static void print_table(const EvalRun *run, FILE *f) {
    const char *bench = "";
    for (int k = 0; k < n_catalogue; k++) {
        const MetricInfo *mi = &catalogue[k];
        if (!catalogue_present(run, mi->key)) continue;
        if (strcmp(bench, mi->benchmark)) {
            bench = mi->benchmark;
            fprintf(f, "\n%-54s", bench);
            for (int i = 0; i < run->n_results; i++) fprintf(f, " %12.12s", run->results[i].name);
            fprintf(f, "\n");
        }
        fprintf(f, "  %-52.52s", mi->label);
        for (int i = 0; i < run->n_results; i++) {
            const double *v = eval_result_value(&run->results[i], mi->key);
            if (v && isfinite(*v)) fprintf(f, " %12.4g", *v);
            else fprintf(f, " %12s", "-");
        }
        fprintf(f, "\n");
    }
}

int eval_run_config(const char *config_path, const char *out_override, const DeviceRequest *dev,
                    Err *e) {
    if (engine_check_request(dev, e)) return -1;
    EvalRun *run = calloc(1, sizeof *run);
    if (!run) return err_set(e, "out of memory");
    run->cfg.path = config_path;
    run->dev = *dev;
    int rc = -1;
    char *json = NULL;
    JsonValue *root = yaml_parse_file_as_json(config_path, e);
    if (!root || parse_config(&run->cfg, root, e)) goto done;
    EvalConfig *cfg = &run->cfg;
    if (out_override) snprintf(cfg->out, sizeof cfg->out, "%s", out_override);
    if (!*cfg->out) {
        err_set(e, "%s: out: the output directory is required (or --out DIR)", config_path);
        goto done;
    }
    if (mkdir(cfg->out, 0777) && errno != EEXIST) {
        err_set(e, "%s: %s", cfg->out, strerror(errno));
        goto done;
    }
    for (int s = 0; s < TOFU_SETS; s++)
        if (*cfg->tofu[s] && qaset_load(&run->tofu[s], tofu_set_names[s], cfg->tofu[s],
                                        cfg->tofu_max, e))
            goto done;
    if (*cfg->muse_forget &&
        textset_load(&run->muse_forget, cfg->muse_forget, cfg->tmpl, cfg->muse_max, e))
        goto done;
    if (*cfg->muse_holdout &&
        textset_load(&run->muse_holdout, cfg->muse_holdout, cfg->tmpl, cfg->muse_max, e))
        goto done;
    if (*cfg->muse_knowmem_forget && qaset_load(&run->knowmem_forget, "knowmem_forget",
                                                cfg->muse_knowmem_forget, cfg->muse_max, e))
        goto done;
    if (*cfg->muse_knowmem_retain && qaset_load(&run->knowmem_retain, "knowmem_retain",
                                                cfg->muse_knowmem_retain, cfg->muse_max, e))
        goto done;

    for (int i = 0; i < cfg->n_models; i++) {
        if (eval_one_model(run, &cfg->models[i], &run->results[run->n_results],
                           run->throughput[run->n_results], e))
            goto done;
        run->n_results++;
    }
    const EvalResult *gold = NULL;
    for (int i = 0; i < run->n_results && *cfg->gold; i++)
        if (!strcmp(run->results[i].name, cfg->gold)) gold = &run->results[i];
    if (!gold && *cfg->gold_eval) {
        if (load_gold_eval(cfg->gold_eval, cfg->gold, &run->results[run->n_results], e)) goto done;
        snprintf(run->device[run->n_results], sizeof run->device[0], "(read from %.300s)",
                 cfg->gold_eval);
        gold = &run->results[run->n_results++];
    }
    if (gold && compare_with_gold(run, gold, e)) goto done;

    char path[1100];
    json = build_eval_json(run, root);
    if (!json) {
        err_set(e, "out of memory building eval.json");
        goto done;
    }
    snprintf(path, sizeof path, "%s/eval.json", cfg->out);
    if (file_write_atomic(path, json, strlen(json), e)) goto done;
    JsonValue *parsed = json_parse(json, strlen(json), e);
    if (!parsed) {
        err_prefix(e, "%s: the eval.json just written does not parse (a bug)", path);
        goto done;
    }
    char html[1100];
    snprintf(html, sizeof html, "%s/report.html", cfg->out);
    int hrc = report_write_html(parsed, cfg->out, html, e);
    json_free(parsed);
    if (hrc) goto done;
    // The table goes to the terminal and to OUT/summary.txt (the demo prints it at its end).
    char summary[1100];
    snprintf(summary, sizeof summary, "%s/summary.txt", cfg->out);
    char *table = NULL;
    size_t table_len = 0;
    FILE *mem = open_memstream(&table, &table_len);
    if (!mem) {
        err_set(e, "out of memory");
        goto done;
    }
    fprintf(mem, "%s\n", *cfg->title ? cfg->title : "Lethe evaluation");
    print_table(run, mem);
    fclose(mem);
    int wrc = file_write_atomic(summary, table, table_len, e);
    fwrite(table, 1, table_len, stdout);
    free(table);
    if (wrc) goto done;
    printf("\neval.json: %s\nreport:    %s\n", path, html);
    rc = 0;
done:
    for (int s = 0; s < TOFU_SETS; s++) qaset_free(&run->tofu[s]);
    textset_free(&run->muse_forget);
    textset_free(&run->muse_holdout);
    qaset_free(&run->knowmem_forget);
    qaset_free(&run->knowmem_retain);
    for (int i = 0; i < MAX_MODELS + 1; i++) eval_result_free(&run->results[i]);
    free(json);
    json_free(root);
    free(run);
    return rc;
}
