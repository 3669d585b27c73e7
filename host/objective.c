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

// UNDIAL (Dong et al., NAACL 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust
// Unlearning in Large Language Models"): self-distillation towards the frozen start model's
// distribution with the target token's logit lowered by beta, q_t = softmax(z_ref,t - beta
// onehot(y_t)), L = gamma * mean_t H(q_t, p_t). As open-unlearning's compute_undial_loss
// (src/trainer/utils.py) the mean runs over every position of each sample, the question's too,
// where q_t is the start model's distribution unshifted (method.positions: all, the default;
// `answer` takes the answer's targets only). Two details of that code are not followed: its
// mean also counts the padding of the batch (lethe packs samples: there is none), and at a
// question position its label -100 lowers vocabulary entry V - 100 of the teacher (an indexing
// accident; lethe shifts nothing there).
static void undial_soft(const ObjectiveParams *p, SoftSpec *spec) {
    *spec = (SoftSpec){1, (float)-p->beta, 1, NULL};
}

// CE-U (Yang et al. 2025, "CE-U: Cross Entropy Unlearning", arXiv:2503.01224): cross-entropy
// towards the model's own distribution with the target token removed, detached:
// q_t = softmax(z_t with z_t[y_t] = -inf), L = gamma * mean_t H(q_t, p_t) over the targets after
// each sample's first ignore_first (the paper's footnote; open-unlearning
// src/trainer/unlearn/ceu.py, ignore_first_n_answer_tokens = 1; no retain term there).
static void ceu_soft(const ObjectiveParams *p, SoftSpec *spec) {
    (void)p;
    *spec = (SoftSpec){0, -INFINITY, 1, NULL};
}

// RMU, representation misdirection (Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing
// Malicious Use With Unlearning", section 5; their rmu/unlearn.py, which open-unlearning's
// src/trainer/unlearn/rmu.py borrows): at block L the forget tokens' hidden states are pushed
// towards c * u, u uniform in [0, 1)^D then normalised (seeded), and the retain tokens' states
// held at the frozen start model's: L = gamma * mean_i (sum_t mse(h_t, c u)) / n_i
// + alpha * mean_i (sum_t mse(h_t, h_t^ref)) / n_i, mse the mean over the D features, the tokens t
// the answer tokens (open-unlearning's labels != -100), only the mlp.down_proj weights of blocks
// L-2..L trained (optim.train_only). Defaults: the WMDP code's (layer 7, steering 20, alpha 100);
// open-unlearning's RMU.yaml says to tune them per model. No classifier runs: the forward stops
// after block L and the backward starts there (train.c, engine forward_hidden).

// Defaults: open-unlearning's configs/trainer/*.yaml (WGA: beta 1, alpha 1, gamma 1; SatImp:
// beta1 5, beta2 1, alpha 1, gamma 0.1; both with the NLL retain term; UNDIAL: beta 10,
// gamma 1, alpha 0; CE-U: gamma 1, no retain term, first answer token ignored).
static const Method methods[] = {
    {.name = "ga", .summary = "gradient ascent: L = -NLL(F)", .beta = 0.1, .gamma = 1.0,
     .retain = RETAIN_NONE, .forget = ga_sample},
    {.name = "graddiff", .summary = "gradient difference: L = gamma*(-NLL(F)) + alpha*R",
     .beta = 0.1, .alpha = 1.0, .gamma = 1.0, .retain = RETAIN_NLL, .forget = ga_sample},
    {.name = "npo",
     .summary = "NPO: L = gamma*(-(2/beta) mean log sigmoid(-beta(s - s_ref))) + alpha*R",
     .beta = 0.1, .alpha = 1.0, .gamma = 1.0, .retain = RETAIN_NLL, .needs_ref_sums = 1,
     .forget = npo_sample},
    {.name = "simnpo",
     .summary = "SimNPO: L = gamma*(-(2/beta) mean log sigmoid(beta(-s/n - delta))) + alpha*R",
     .beta = 4.5, .alpha = 1.0, .gamma = 0.125, .retain = RETAIN_NLL, .forget = simnpo_sample},
    {.name = "wga",
     .summary = "WGA: L = gamma*mean_t(p_t^beta log p_t) (weights constant) + alpha*R",
     .beta = 1.0, .alpha = 1.0, .gamma = 1.0, .retain = RETAIN_NLL, .forget_token = wga_token},
    {.name = "satimp",
     .summary =
         "SatImp: L = gamma*mean_t(p_t^beta (1-p_t)^beta2 log p_t) (weights constant) + alpha*R",
     .beta = 5.0, .alpha = 1.0, .gamma = 0.1, .retain = RETAIN_NLL,
     .forget_token = satimp_token, .beta2 = 1.0},
    {.name = "undial",
     .summary = "UNDIAL: L = gamma*mean_t H(softmax(z_ref,t - beta onehot(y_t)), p_t) + alpha*R, "
                "t every position (the shift on the answer's; method.positions)",
     .beta = 10.0, .alpha = 0.0, .gamma = 1.0, .retain = RETAIN_NLL, .forget_soft = undial_soft,
     .all_positions = 1},
    {.name = "ceu",
     .summary = "CE-U: L = gamma*mean_t H(softmax(z_t without y_t) (constant), p_t) + alpha*R, "
                "each sample's first ignore_first targets left out",
     .beta = 0.1, .alpha = 0.0, .gamma = 1.0, .retain = RETAIN_NONE, .forget_soft = ceu_soft,
     .ignore_first = 1},
    {.name = "rmu",
     .summary = "RMU: L = gamma*mean_i mean_t |h_t - c u|^2/D + alpha*mean_i mean_t |h_t - "
                "h_t^ref|^2/D, h_t the output of block method.layer at target token t, u a "
                "seeded unit vector; trains the mlp.down_proj of blocks layer-2..layer",
     .beta = 0.1, .alpha = 100.0, .gamma = 1.0, .retain = RETAIN_HIDDEN, .hidden = 1,
     .layer = 7, .steering = 20.0},
    {.name = "idknll", .summary = "IdkNLL: L = gamma*NLL(F with refusal answers) + alpha*R",
     .beta = 0.1, .alpha = 1.0, .gamma = 1.0, .retain = RETAIN_NLL, .forget = idknll_sample},
    {.name = "idkdpo",
     .summary =
         "IdkDPO: L = gamma*(-(2/beta) mean log sigmoid(beta((s_w - s_w_ref) - (s_l - s_l_ref)))) "
         "+ alpha*R, w: refusal (data.forget_alt), l: forget answer",
     .beta = 0.1, .alpha = 1.0, .gamma = 1.0, .retain = RETAIN_NLL, .needs_ref_sums = 1,
     .forget_pair = idkdpo_pair},
    {.name = "task_vector",
     .summary = "task-vector negation: fine-tune on F (L = NLL(F)), then theta = theta0 - "
                "gamma*(theta - theta0)",
     .beta = 0.1, .gamma = 1.0, .retain = RETAIN_NONE, .forget = tv_sample, .task_vector = 1},
    {.name = "finetune", .summary = "fine-tuning: L = NLL(D)", .beta = 0.1,
     .retain = RETAIN_NONE},
};
#define N_METHODS (sizeof methods / sizeof methods[0])

const Method *method_find(const char *name) {
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(methods[i].name, name) == 0) return &methods[i];
    return NULL;
}

int method_unlearns(const Method *m) {
    return m->forget != NULL || m->forget_token != NULL || m->forget_pair != NULL ||
           m->forget_soft != NULL || m->hidden;
}

int method_soft_needs_reference(const Method *m, const ObjectiveParams *p) {
    if (!m->forget_soft) return 0;
    SoftSpec spec;
    m->forget_soft(p, &spec);
    return spec.from_reference;
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
