// The configuration of `lethe unlearn` and `lethe finetune`: a typed schema with defaults, read
// from YAML (nested mappings, dotted names) plus `key=value` overrides, written back resolved.
#ifndef LETHE_RUN_CONFIG_H
#define LETHE_RUN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "errors.h"

#define RUN_PATH_MAX 1024

typedef struct {
    // ---- data and output
    char model[RUN_PATH_MAX];       // model: the starting checkpoint.h5
    char forget[RUN_PATH_MAX];      // data.forget: token dataset (unlearn: required)
    char retain[RUN_PATH_MAX];      // data.retain: token dataset (required by retain terms)
    char forget_alt[RUN_PATH_MAX];  // data.forget_alt: idkdpo's preferred answers, paired by index
    char train[RUN_PATH_MAX];       // data.train: finetune's dataset
    char eval_forget[RUN_PATH_MAX]; // eval.forget: held-out forget eval set (optional)
    char eval_retain[RUN_PATH_MAX]; // eval.retain: held-out retain eval set (optional)
    char out[RUN_PATH_MAX];         // out: output directory
    char out_dtype[16];             // output.dtype: same | float32 | bfloat16 | float16
    int64_t seed;                   // seed
    char device[16];                // device.name: cpu | cuda | auto
    char device_dtype[8];           // device.dtype: bf16 | fp32 (cuda)

    // ---- method (see host/objective.h for the formulas)
    char method[32];       // method.name: ga .. idkdpo | task_vector | finetune (objective.c)
    double beta;           // method.beta (npo 0.1, simnpo 4.5)
    double alpha;          // method.alpha: weight of the retain term
    double gamma;          // method.gamma: weight of the forget term (simnpo 0.125)
    double delta;          // method.delta: simnpo margin
    double beta2;          // method.beta2: satimp's exponent of (1 - p_t)
    int64_t ignore_first;  // method.ignore_first: soft-target terms skip each sample's first n
    char positions[16];    // method.positions: all | answer (soft-target terms)
    int64_t layer;         // method.layer: rmu's block
    double steering;       // method.steering_coeff: rmu's c
    char retain_loss[16];  // method.retain_loss: nll | kl | none

    // ---- optimisation
    char optimizer[16];    // optim.name: adamw | sgd
    double lr;             // optim.lr
    double weight_decay;   // optim.weight_decay (decoupled; not on norms and biases)
    double adam_beta1;     // optim.beta1
    double adam_beta2;     // optim.beta2
    double adam_eps;       // optim.eps
    double momentum;       // optim.momentum (sgd)
    double grad_clip;      // optim.grad_clip: max global L2 norm, 0 = off
    char schedule[16];     // optim.schedule: constant | linear | cosine (after warm-up)
    int64_t warmup_steps;  // optim.warmup_steps (wins over warmup_epochs when > 0)
    double warmup_epochs;  // optim.warmup_epochs
    char freeze[512];      // optim.freeze: comma-separated name patterns kept fixed
    char train_only[512];  // optim.train_only: comma-separated patterns; others frozen

    // ---- schedule of steps
    int64_t epochs;            // train.epochs over the anchor set (forget; finetune: train)
    int64_t max_steps;         // train.max_steps: 0 = epochs decide
    int64_t batch_size;        // train.batch_size: samples per optimizer step (effective)
    int64_t micro_batch_size;  // train.micro_batch_size: samples per forward (accumulation)
    int64_t max_batch_tokens;  // train.max_batch_tokens: token budget of one forward
    double early_stop_forget_nll; // train.early_stop_forget_nll: stop once forget NLL >= this (0 = off)
    int64_t eval_every;        // train.eval_every: steps between held-out evals (0 = off)
    int64_t state_every;       // train.state_every: steps between run-state saves (0 = end only)
    int64_t log_every;         // train.log_every: steps between terminal log lines

    uint8_t is_set[96]; // per schema entry: given by the YAML file or an override
} RunConfig;

// Defaults of every key for a command ("unlearn" or "finetune"). Method-dependent defaults
// (beta, gamma) are applied by run_config_finish once the method is known.
void run_config_defaults(RunConfig *c, const char *command);
// Reads a YAML file (nested mappings; lists of strings for freeze/train_only). An unknown key is
// an error naming the nearest valid one; a value of the wrong type names the key and the type.
int run_config_load_yaml(RunConfig *c, const char *path, Err *e);
// Applies one `dotted.key=value` override.
int run_config_override(RunConfig *c, const char *assignment, Err *e);
// Applies method defaults for keys the user did not set, and checks ranges and combinations
// (e.g. npo needs data.forget; kl needs data.retain). Paths that must exist are checked.
int run_config_finish(RunConfig *c, const char *command, Err *e);
// Every key with its default and meaning, one per line (for --help).
void run_config_print_keys(FILE *f);
// The fully resolved config as YAML text (malloc'd).
char *run_config_to_yaml(const RunConfig *c);

#endif
