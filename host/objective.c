// The unlearning objectives (design: "Objectives"; the issue's definitions, matching the public
// open-unlearning implementations). Notation: s = sum of target log-probs of one sample, n its
// target count, s_ref the frozen start model's s, |F| the forget batch's sample count,
// sum n the batch's target count.
#include "objective.h"

#include <math.h>
#include <string.h>

double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double z = exp(x);
    return z / (1.0 + z);
}

// GA: L = -NLL(F) = sum_i s_i / sum_i n_i (token mean, the HF loss).
static double ga_sample(const ObjectiveParams *p, double s, int n, double s_ref,
                        const BatchTotals *t, double *dloss_ds) {
    (void)n, (void)s_ref;
    *dloss_ds = p->gamma / (double)t->n_targets;
    return p->gamma * s / (double)t->n_targets;
}

// NPO (Zhang et al. 2024): L = -(2/beta) mean_i log sigmoid(-beta (s_i - s_i^ref)).
// dL/ds_i = (2/|F|) sigmoid(beta (s_i - s_i^ref)).
static double npo_sample(const ObjectiveParams *p, double s, int n, double s_ref,
                         const BatchTotals *t, double *dloss_ds) {
    (void)n;
    const double x = p->beta * (s - s_ref), F = (double)t->n_samples;
    *dloss_ds = p->gamma * 2.0 * sigmoid(x) / F;
    return p->gamma * -(2.0 / p->beta) * log_sigmoid(-x) / F;
}

// SimNPO (Fan et al. 2024): reference-free and length-normalised,
// L = -(2/beta) mean_i log sigmoid(beta (-s_i / n_i - delta)).
// dL/ds_i = (2 / (n_i |F|)) (1 - sigmoid(beta (-s_i / n_i - delta))).
static double simnpo_sample(const ObjectiveParams *p, double s, int n, double s_ref,
                            const BatchTotals *t, double *dloss_ds) {
    (void)s_ref;
    const double F = (double)t->n_samples;
    if (n <= 0) {
        *dloss_ds = 0.0;
        return 0.0; // a sample without targets carries no signal
    }
    const double x = p->beta * (-s / n - p->delta);
    // 1 - sigmoid(x) written as sigmoid(-x): it keeps tiny weights instead of rounding to 0.
    *dloss_ds = p->gamma * 2.0 * sigmoid(-x) / ((double)n * F);
    return p->gamma * -(2.0 / p->beta) * log_sigmoid(x) / F;
}

// Token-level weighted ascent, mean over the forget batch's T targets, the weights w_t treated as
// constants: L = gamma * (1/T) sum_t w_t log p_t, so dL/dNLL_t = -gamma w_t / T.
// WGA (Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go
// Beyond"): w_t = p_t^beta. open-unlearning src/trainer/unlearn/wga.py: forget_loss =
// -(weight_ce * lm_loss)[labels != -100].mean() with weight_ce = exp(-lm_loss)^beta, detached.
static double wga_token(const ObjectiveParams *p, double logp, const BatchTotals *t,
                        double *dloss_dnll) {
    const double w = exp(p->beta * logp), T = (double)t->n_targets;
    *dloss_dnll = -p->gamma * w / T;
    return p->gamma * w * logp / T;
}

// SatImp (Yang et al. 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM
// Unlearning"): w_t = p_t^beta1 (1 - p_t)^beta2 (beta1 = method.beta, beta2 = method.beta2).
// open-unlearning src/trainer/unlearn/satimp.py: weight_sat = exp(-lm_loss)^beta1, weight_imp =
// (1 - exp(-lm_loss))^beta2, both detached, the same token mean.
static double satimp_token(const ObjectiveParams *p, double logp, const BatchTotals *t,
                           double *dloss_dnll) {
    // 1 - p_t as -expm1(log p_t): exact for p_t near 1, where the weight matters most.
    const double w = exp(p->beta * logp) * pow(-expm1(logp), p->beta2);
    const double T = (double)t->n_targets;
    *dloss_dnll = -p->gamma * w / T;
    return p->gamma * w * logp / T;
}

// IdkNLL (TOFU, Maini et al. 2024, "I don't know" fine-tuning; open-unlearning's IdkNLL
// experiments): the forget questions with refusal answers (`lethe tokenize --answers
// data/tofu/idontknow.jsonl`) are learnt, L = gamma * NLL(F_idk) + alpha * R.
// dL/ds_i = -gamma / sum n (the token mean, as the retain term).
static double idknll_sample(const ObjectiveParams *p, double s, int n, double s_ref,
                            const BatchTotals *t, double *dloss_ds) {
    (void)n, (void)s_ref;
    *dloss_ds = -p->gamma / (double)t->n_targets;
    return -p->gamma * s / (double)t->n_targets;
}

// IdkDPO (Rafailov et al. 2023's DPO with TOFU's refusal as the preferred answer and the forget
// answer as the dispreferred one; open-unlearning src/trainer/unlearn/dpo.py, compute_dpo_loss in
// src/trainer/utils.py): x_i = (s_w - s_w^ref) - (s_l - s_l^ref),
// L = -(2/beta) mean_i log sigmoid(beta x_i); dL/ds_w = -(2/|F|) sigmoid(-beta x_i) = -dL/ds_l.
// Both reference sums are fixed per pair: cached once before the first step, as NPO's.
static double idkdpo_pair(const ObjectiveParams *p, double s_l, double s_l_ref, double s_w,
                          double s_w_ref, const BatchTotals *t, double *dloss_dsl,
                          double *dloss_dsw) {
    const double x = (s_w - s_w_ref) - (s_l - s_l_ref), F = (double)t->n_samples;
    *dloss_dsw = -p->gamma * 2.0 * sigmoid(-p->beta * x) / F;
    *dloss_dsl = -*dloss_dsw;
    return p->gamma * -(2.0 / p->beta) * log_sigmoid(p->beta * x) / F;
}

// Task-vector negation (Ilharco et al. 2023, "Editing Models with Task Arithmetic"; MUSE's task
// vector baseline, Shi et al. 2024): the steps fine-tune a copy on the forget set, L = NLL(F),
// and the result is theta0 - gamma (theta_ft - theta0) (train.c applies it after the last step).
static double tv_sample(const ObjectiveParams *p, double s, int n, double s_ref,
                        const BatchTotals *t, double *dloss_ds) {
    (void)p, (void)n, (void)s_ref;
    return finetune_sample(s, t, dloss_ds);
}

// Defaults: open-unlearning's configs/trainer/*.yaml (WGA: beta 1, alpha 1, gamma 1; SatImp:
// beta1 5, beta2 1, alpha 1, gamma 0.1; both with the NLL retain term).
static const Method methods[] = {
    {"ga", "gradient ascent: L = -NLL(F)", 0.1, 0.0, 1.0, 0.0, RETAIN_NONE, 0, ga_sample, NULL,
     0.0, NULL, 0},
    {"graddiff", "gradient difference: L = gamma*(-NLL(F)) + alpha*R", 0.1, 1.0, 1.0, 0.0,
     RETAIN_NLL, 0, ga_sample, NULL, 0.0, NULL, 0},
    {"npo", "NPO: L = gamma*(-(2/beta) mean log sigmoid(-beta(s - s_ref))) + alpha*R", 0.1, 1.0,
     1.0, 0.0, RETAIN_NLL, 1, npo_sample, NULL, 0.0, NULL, 0},
    {"simnpo", "SimNPO: L = gamma*(-(2/beta) mean log sigmoid(beta(-s/n - delta))) + alpha*R",
     4.5, 1.0, 0.125, 0.0, RETAIN_NLL, 0, simnpo_sample, NULL, 0.0, NULL, 0},
    {"wga", "WGA: L = gamma*mean_t(p_t^beta log p_t) (weights constant) + alpha*R", 1.0, 1.0,
     1.0, 0.0, RETAIN_NLL, 0, NULL, wga_token, 0.0, NULL, 0},
    {"satimp",
     "SatImp: L = gamma*mean_t(p_t^beta (1-p_t)^beta2 log p_t) (weights constant) + alpha*R",
     5.0, 1.0, 0.1, 0.0, RETAIN_NLL, 0, NULL, satimp_token, 1.0, NULL, 0},
    {"idknll", "IdkNLL: L = gamma*NLL(F with refusal answers) + alpha*R", 0.1, 1.0, 1.0, 0.0,
     RETAIN_NLL, 0, idknll_sample, NULL, 0.0, NULL, 0},
    {"idkdpo",
     "IdkDPO: L = gamma*(-(2/beta) mean log sigmoid(beta((s_w - s_w_ref) - (s_l - s_l_ref)))) + "
     "alpha*R, w: refusal (data.forget_alt), l: forget answer",
     0.1, 1.0, 1.0, 0.0, RETAIN_NLL, 1, NULL, NULL, 0.0, idkdpo_pair, 0},
    {"task_vector",
     "task-vector negation: fine-tune on F (L = NLL(F)), then theta = theta0 - gamma*(theta - "
     "theta0)",
     0.1, 0.0, 1.0, 0.0, RETAIN_NONE, 0, tv_sample, NULL, 0.0, NULL, 1},
    {"finetune", "fine-tuning: L = NLL(D)", 0.1, 0.0, 0.0, 0.0, RETAIN_NONE, 0, NULL, NULL, 0.0,
     NULL, 0},
};
#define N_METHODS (sizeof methods / sizeof methods[0])

const Method *method_find(const char *name) {
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(methods[i].name, name) == 0) return &methods[i];
    return NULL;
}

int method_unlearns(const Method *m) {
    return m->forget != NULL || m->forget_token != NULL || m->forget_pair != NULL;
}

int method_pairs(const Method *m) { return m->forget_pair != NULL; }

const Method *const *method_all(void) {
    static const Method *all[N_METHODS + 1];
    for (size_t i = 0; i < N_METHODS; i++) all[i] = &methods[i];
    all[N_METHODS] = NULL;
    return all;
}

double retain_nll_sample(const ObjectiveParams *p, double s, const BatchTotals *t,
                         double *dloss_ds) {
    *dloss_ds = -p->alpha / (double)t->n_targets;
    return -p->alpha * s / (double)t->n_targets;
}

double finetune_sample(double s, const BatchTotals *t, double *dloss_ds) {
    *dloss_ds = -1.0 / (double)t->n_targets;
    return -s / (double)t->n_targets;
}
