// The Llama model on the CPU backend: parameter table, activations, forward over a packed batch
// returning per-sample target log-prob sums, backward from per-target weights, KV-cache decoding.
#ifndef LETHE_LLAMA_H
#define LETHE_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "errors.h"
#include "model_config.h"
#include "ops.h"

// One parameter tensor of the table: HF name, shape and where it lives in the one allocation.
typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    size_t offset; // floats from the start of the parameter (or gradient) buffer
    size_t numel;
} ParamTensor;

#define NO_TENSOR ((size_t)-1)

// Offsets (in floats) of one block's tensors inside a parameter-shaped buffer.
typedef struct {
    size_t ln1, wq, bq, wk, bk, wv, bv, wo, ln2, wgate, wup, wdown; // bq/bk/bv: NO_TENSOR if absent
} LayerOffsets;

typedef struct {
    ModelConfig cfg;
    int n_tensors;
    ParamTensor *tensors;
    size_t n_params;
    float *params;         // (n_params): every weight, one allocation
    LayerOffsets *layers;  // (L)
    size_t embed, norm, lm_head; // lm_head == embed when tied
} LlamaModel;

// A packed batch: sample s owns tokens [offsets[s], offsets[s+1]). Position t predicts token t+1
// of the same sample when loss_mask[t+1] = 1 (HF labels shifted by one).
typedef struct {
    int n_samples;
    size_t n_tokens;
    const int32_t *tokens;
    const int64_t *offsets;
    const uint8_t *loss_mask; // NULL: every token after the first of a sample is a target
} Batch;

// Activations saved by the forward for the backward; sized for a batch and grown on demand.
typedef struct LlamaActs LlamaActs;

// Allocates the parameter table for cfg (parameters zeroed).
int llama_create(LlamaModel *m, const ModelConfig *cfg, Err *e);
// The table only (names, shapes, offsets; params stays NULL): for code that streams tensors one
// by one, such as the importers. llama_free releases it.
int llama_create_table(LlamaModel *m, const ModelConfig *cfg, Err *e);
void llama_free(LlamaModel *m);
const ParamTensor *llama_find_tensor(const LlamaModel *m, const char *name);
// Seeded init like HF's: normal(0, std) for matrices, ones for norms, zeros for biases.
void llama_init_random(LlamaModel *m, uint64_t seed, float std);
// Reads every tensor of the table from an open checkpoint (strict names, shapes, dtypes).
int llama_load(LlamaModel *m, CkptReader *r, Err *e);
int llama_load_file(LlamaModel *m, const char *path, Err *e);
// Writes the config and every tensor (in table order) to an open writer.
int llama_write_tensors(const LlamaModel *m, CkptWriter *w, StorageDtype dt, Err *e);

LlamaActs *llama_acts_new(void);
void llama_acts_free(LlamaActs *a);

// Checks a packed batch against the model: offsets start at 0 and cover the tokens, no sample is
// empty or longer than max_position_embeddings, every token id is below vocab_size.
int llama_check_batch(const ModelConfig *c, const Batch *b, Err *e);

// Forward over a packed batch. sum_logprob[s] = sum over targets of log p(target), n_targets[s]
// their count (either may be NULL). Keeps what backward needs in a.
int llama_forward(const LlamaModel *m, LlamaActs *a, const Batch *b, double *sum_logprob,
                  int *n_targets, Err *e);
// The trunk only (no head): fills the target rows (final-normed hidden states of the positions
// that predict a target), e.g. for a frozen reference model whose rows feed llama_forward_soft.
int llama_forward_rows(const LlamaModel *m, LlamaActs *a, const Batch *b, Err *e);
const float *llama_target_rows(const LlamaActs *a); // (n_targets, D)
// What the soft target q of llama_forward_soft is made of (kernels/ops.h SoftTarget): the
// source logits are the reference model's (from_reference) or the model's own, target_shift is
// added to the source logit of each target token (-INFINITY: left out), and the loss is the
// cross-entropy H(q, p) or KL(q || p).
typedef struct {
    int from_reference;
    float target_shift;
    int cross_entropy;
    // NULL: every row's target is shifted. Else per token of the batch: a row is shifted when
    // its target token has shift_mask 1, and a row without has no target (its log-prob NaN):
    // UNDIAL's every position (a batch packed without loss_mask) with the shift on the answer.
    const uint8_t *shift_mask;
} SoftSpec;

// Forward whose head is a loss against a soft target per target row (the KL retain term, UNDIAL,
// CE-U). With from_reference, q comes from the reference model's rows of the same batch
// (ref_acts after llama_forward_rows; ref and ref_acts stay unchanged until the backward),
// otherwise ref and ref_acts may be NULL. loss_sum[s] = sum over sample s's targets; the
// per-target losses are llama_target_loss() and the log-probs llama_target_logprob(). The
// following llama_backward takes weight[j] = dLoss/dloss_j.
int llama_forward_soft(const LlamaModel *m, LlamaActs *a, const Batch *b, const SoftSpec *spec,
                       const LlamaModel *ref, const LlamaActs *ref_acts, double *loss_sum,
                       int *n_targets, Err *e);
const float *llama_target_loss(const LlamaActs *a);
// sums[s] (and counts[s]) over the targets of each of n_samples samples of the per-target values
// v (M of them; tsample[j] the sample of target j), in target order and in double: how every
// head's per-sample sums are formed (either output may be NULL).
void llama_sum_per_sample(const int32_t *tsample, const float *v, size_t M, int n_samples,
                          double *sums, int *counts);
// Targets of the last forward, in order: count, and the sample each belongs to, and its log-prob.
size_t llama_n_targets(const LlamaActs *a);
const int32_t *llama_target_sample(const LlamaActs *a);
const float *llama_target_logprob(const LlamaActs *a);
// Per-target statistics of the last llama_forward (not llama_forward_soft), for the evaluation's
// memorisation and membership-inference metrics: whether the target is the argmax, and the mean
// and variance of log p over the vocabulary under p (see classifier_stats). Arrays of
// llama_n_targets() entries.
void llama_target_stats(const LlamaModel *m, LlamaActs *a, uint8_t *is_argmax, float *mu,
                        float *var);
// Backward of the last forward. weight[j] = dLoss/dNLL of target j (NLL = -log p; after
// llama_forward_soft: dLoss/dloss_j), so every
// objective of the GA/NPO family is a per-target weight. grads has the parameter layout and is
// accumulated into (+=).
void llama_backward(const LlamaModel *m, LlamaActs *a, const float *weight, float *grads);

// ---- a hidden-state loss at one block (RMU) -------------------------------------------------
// The targets are those of llama_forward (same count, order and samples, so per-target weights
// carry over); target j's hidden row is the residual stream after block `layer` (0-based) at the
// position of the target token itself (the position after the one that predicts it), as RMU
// takes the hidden states of the answer tokens.
// Runs the embedding and blocks 0..layer only (no later block, final norm or head) and gathers
// those rows; layer outside [0, L-1] is an error. The rows share the storage of
// llama_target_rows: this forward replaces them.
int llama_forward_hidden(const LlamaModel *m, LlamaActs *a, const Batch *b, int layer, Err *e);
const float *llama_hidden_rows(const LlamaActs *a); // (n_targets, D), after llama_forward_hidden
// Backward of the last llama_forward_hidden, with dh (n_targets, D) = dLoss/d(hidden row j)
// entering at the output of block `layer`: blocks layer down to lowest_layer run, and with
// lowest_layer <= 0 the embedding too; the gradients of the blocks below lowest_layer and of the
// embedding are left as they are (lowest_layer > layer: nothing runs). grads has the parameter
// layout and is accumulated into (+=). Does nothing after any other forward. llama_backward must
// not follow llama_forward_hidden (it has no head to go back through).
void llama_backward_hidden(const LlamaModel *m, LlamaActs *a, const float *dh, int lowest_layer,
                           float *grads);

// ---- decoding with a KV cache (one sequence) -------------------------------------------------
typedef struct {
    int capacity; // positions
    int length;   // positions filled
    float *k, *v; // (L, capacity, KV*hd)
    float *buf;   // scratch for one position
} KVCache;

int kvcache_init(KVCache *c, const LlamaModel *m, int capacity, Err *e);
void kvcache_free(KVCache *c);
// Runs one token at position c->length, appends its K/V, writes logits (V) of the next token.
int llama_decode_step(const LlamaModel *m, KVCache *c, int32_t token, float *logits, Err *e);

// ---- batched decoding: several sequences, each over its own KV cache ------------------------
// Scratch of llama_decode_batch for at most max_rows rows a step, allocated once and reused.
typedef struct {
    int max_rows;
    float *buf; // per row: x, xn, tmp (D), q, att (Q), k, v (KVD), gate, up (F), scores (P)
    int *pos;   // (max_rows) the position each row takes in its cache
} DecodeScratch;

int decode_scratch_init(DecodeScratch *s, const LlamaModel *m, int max_rows, Err *e);
void decode_scratch_free(DecodeScratch *s);
// One step over n rows: row r feeds tokens[r] to caches[r] at that cache's next free position.
// A cache may take several consecutive rows (a prompt fed at once: positions length, length+1,
// ...) as well as other caches' rows. Projections, MLP and LM head are GEMMs of n rows; RoPE
// and attention run per row over its own cache once every row's K/V is in place, so each row
// sees its sequence up to and including itself. logits (n_wanted, V): one row for each r with
// want_logits[r] != 0 (want_logits NULL: every row), in row order. Each cache's length grows
// by its row count; on error (a bad token, a full cache) no cache changes.
int llama_decode_batch(const LlamaModel *m, KVCache *const *caches, const int32_t *tokens,
                       const uint8_t *want_logits, int n, float *logits, DecodeScratch *s,
                       Err *e);

// The reference without a cache, for the tests: a full forward over tokens[0, n) (n below
// max_position_embeddings) and logits (V) of the token that follows them.
int llama_next_logits_nocache(const LlamaModel *m, LlamaActs *a, const int32_t *tokens, int n,
                              float *logits, Err *e);

#endif
