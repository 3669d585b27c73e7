// Unlearning objectives as small table entries: each maps one sample's target log-prob sum
// s_i (and n_i targets, the frozen start model's s_i^ref) to its share of the loss and to
// dLoss/ds_i. The model's backward takes per-target weights dLoss/dNLL_t = -dLoss/ds_i, so a new
// method touches neither the model nor the kernels (design: "Objectives").
#ifndef LETHE_OBJECTIVE_H
#define LETHE_OBJECTIVE_H

#include <stdint.h>

#include "errors.h"
#include "llama.h"

// The retain term: NLL, KL to the start model, or (RETAIN_HIDDEN, RMU's) the mean squared error
// of the hidden states at method.layer to the start model's.
typedef enum { RETAIN_NONE = 0, RETAIN_NLL = 1, RETAIN_KL = 2, RETAIN_HIDDEN = 3 } RetainLoss;

typedef struct {
    double beta, alpha, gamma, delta;
    RetainLoss retain;
    double beta2;     // SatImp's second exponent
    int ignore_first; // soft-target forget terms: each sample's first n targets left out
    int all_positions; // soft-target forget terms: every position of a sample, not the answer's
    int layer;        // hidden-state terms (RMU): the block whose output they see
    double steering;  // RMU: the length c of the forget states' target c * u
} ObjectiveParams;

// Normalisers of one optimizer step's effective batch, known from the data before any forward:
// the number of samples and the number of target tokens.
typedef struct {
    int64_t n_samples;
    int64_t n_targets;
} BatchTotals;

// One sample's share of the forget term (already scaled by gamma) and its derivative by s_i.
typedef double (*ForgetSampleFn)(const ObjectiveParams *p, double s, int n, double s_ref,
                                 const BatchTotals *t, double *dloss_ds);

// A forget term made of per-target terms (token-level weights on the ascent): one target's share
// of the loss from its log-prob, and dLoss/dNLL of that target (the backward's weight).
typedef double (*ForgetTokenFn)(const ObjectiveParams *p, double logp, const BatchTotals *t,
                                double *dloss_dnll);

// A forget term over pairs (DPO): forget sample i's dispreferred answer (data.forget, sums s_l,
// s_l_ref) and its preferred one (data.forget_alt, s_w, s_w_ref): pair i's share of the loss and
// dLoss/ds_l, dLoss/ds_w.
typedef double (*ForgetPairFn)(const ObjectiveParams *p, double s_l, double s_l_ref, double s_w,
                               double s_w_ref, const BatchTotals *t, double *dloss_dsl,
                               double *dloss_dsw);

// A forget term against a soft target per target (llama_forward_soft): the target from the
// parameters. The loss is gamma times the mean of the per-target losses over the forget batch's
// targets, each sample's first p->ignore_first targets left out (train.c weights them).
typedef void (*ForgetSoftFn)(const ObjectiveParams *p, SoftSpec *spec);

typedef struct {
    const char *name;
    const char *summary;     // the formula, for --help and the README
    double beta, alpha, gamma, delta; // defaults (public benchmark recipes)
    RetainLoss retain;       // default retain term
    int needs_ref_sums;      // caches s_i^ref of the whole forget set before the first step
    ForgetSampleFn forget;   // per-sample forget term; NULL for finetune and token-level methods
    ForgetTokenFn forget_token; // per-target forget term (forget NULL), or NULL
    double beta2;            // default method.beta2 (SatImp)
    ForgetPairFn forget_pair; // per-pair forget term over data.forget and data.forget_alt, or NULL
    int task_vector;         // the steps fine-tune on F; the result is theta0 - gamma (theta - theta0)
    ForgetSoftFn forget_soft; // per-target soft-target forget term, or NULL
    int ignore_first;        // default method.ignore_first (soft-target terms)
    int all_positions;       // default method.positions: all (1) or answer (0)
    // RMU: the forget term is the hidden-state MSE to the control vector c * u at method.layer
    // (train.c), per sample the mean over its targets, then the mean over the samples
    int hidden;
    int layer;               // default method.layer
    double steering;         // default method.steering_coeff
} Method;

const Method *method_find(const char *name);
// Whether the method has a forget term (every method but finetune).
int method_unlearns(const Method *m);
// Whether the forward of the forget term needs the frozen start model's rows (UNDIAL).
int method_soft_needs_reference(const Method *m, const ObjectiveParams *p);
// Whether the method reads pairs: data.forget (dispreferred) with data.forget_alt (preferred).
int method_pairs(const Method *m);
// All methods, NULL-terminated (for help texts).
const Method *const *method_all(void);

// Retain term alpha * NLL(R) = -alpha * sum_i s_i / sum_i n_i: one sample's share and dL/ds_i.
double retain_nll_sample(const ObjectiveParams *p, double s, const BatchTotals *t,
                         double *dloss_ds);
// Finetune's loss NLL(D), the same shape with alpha = 1.
double finetune_sample(double s, const BatchTotals *t, double *dloss_ds);

// log(sigmoid(x)) without overflow, and sigmoid(x).
double log_sigmoid(double x);
double sigmoid(double x);

#endif
