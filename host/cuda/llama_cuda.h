// The Llama model on the "cuda" backend: a device copy of a LlamaModel (weights, fp32 gradients,
// activations, cuBLAS handle, stream) with the forward and backward of host/llama.h's contract.
#ifndef LETHE_LLAMA_CUDA_H
#define LETHE_LLAMA_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "llama.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// Device memory, one allocation per category, every tensor at the offset of the host parameter
// table (ParamTensor.offset, in elements):
//   params   (n_params) float32: the weights in LETHE_F32 mode, the master copy in LETHE_BF16 mode
//   params16 (n_params) bfloat16 bits, LETHE_BF16 mode only: the weights the kernels read,
//            params rounded to nearest even by llama_cuda_create / llama_cuda_upload_params
//   grads    (n_params) float32, always
//   activations of the last forward (dtype; statistics in float32), grown on demand
typedef struct LlamaCuda LlamaCuda;

// Uploads host_model's config, table and weights to device 0. Fails with a message when there is
// no usable CUDA device, or when the weights and gradients do not fit in the device's free memory.
int llama_cuda_create(LlamaCuda **out, const LlamaModel *host_model, LetheDtype dtype, Err *e);
// A frozen copy (a reference model): no gradients and, in LETHE_BF16 mode, only the bfloat16
// weights; it runs forwards (llama_cuda_forward, llama_cuda_forward_rows), never a backward.
int llama_cuda_create_frozen(LlamaCuda **out, const LlamaModel *host_model, LetheDtype dtype,
                             Err *e);
void llama_cuda_free(LlamaCuda *d);
// "CUDA device N (name)".
const char *llama_cuda_device_name(const LlamaCuda *d);

// As llama_forward: sum_logprob[s] = sum over sample s's targets of log p(target), n_targets[s]
// their count (either may be NULL). Keeps on the device what llama_cuda_backward needs.
int llama_cuda_forward(LlamaCuda *d, const Batch *b, double *sum_logprob, int *n_targets, Err *e);
// As llama_forward_rows: the trunk only, keeping the target rows for a llama_cuda_forward_soft of
// another model over the same batch.
int llama_cuda_forward_rows(LlamaCuda *d, const Batch *b, Err *e);
// As llama_forward_soft: the head is a loss against a soft target per target; with
// spec->from_reference its source is ref's rows of the same batch (ref after
// llama_cuda_forward_rows, same dtype and shape, unchanged until the following
// llama_cuda_backward, which then takes dLoss/dloss per target), otherwise ref is NULL.
int llama_cuda_forward_soft(LlamaCuda *d, const Batch *b, const SoftSpec *spec,
                            const LlamaCuda *ref, double *loss_sum, int *n_targets, Err *e);
// As llama_target_stats, after llama_cuda_forward: host arrays of llama_cuda_n_targets() entries.
int llama_cuda_target_stats(LlamaCuda *d, uint8_t *is_argmax, float *mu, float *var, Err *e);
// As llama_backward: weight (host, llama_cuda_n_targets() floats) = dLoss/dNLL of each target of
// the last forward, in order; adds the gradient into the device grads.
int llama_cuda_backward(LlamaCuda *d, const float *weight, Err *e);
int llama_cuda_zero_grads(LlamaCuda *d, Err *e);

// The hidden-state loss of RMU, as llama_forward_hidden / llama_backward_hidden (host/llama.h):
// the targets of llama_cuda_forward (llama_cuda_n_targets, llama_cuda_target_sample), each with
// the residual stream after block `layer` at the target token's own position as its row.
// Runs blocks 0..layer only; layer outside [0, L-1] is an error. Works on a frozen model too (the
// reference model's rows of RMU's retain term).
int llama_cuda_forward_hidden(LlamaCuda *d, const Batch *b, int layer, Err *e);
// Device rows (n_targets, D) of the model's dtype, after llama_cuda_forward_hidden (else NULL);
// valid until the model's next forward.
const void *llama_cuda_hidden_rows(const LlamaCuda *d);
// A device buffer of (n_targets, D) elements of the model's dtype, owned by d, for the caller to
// write dLoss/d(hidden rows) into (e.g. cuda_rows_mse_backward on d's stream, or after syncing
// yours) before llama_cuda_backward_hidden; NULL for a frozen model or without a
// llama_cuda_forward_hidden. Valid until the model's next forward or backward.
void *llama_cuda_hidden_grad_buffer(LlamaCuda *d);
// Backward of the last llama_cuda_forward_hidden: dh (device, (n_targets, D) of the model's
// dtype: llama_cuda_hidden_grad_buffer or any other device buffer) enters at the output of block
// `layer`; blocks layer down to lowest_layer run, and with lowest_layer <= 0 the embedding too
// (lowest_layer > layer: nothing runs). Adds into the device grads; the gradients of the blocks
// below lowest_layer and of the embedding are left as they are. Work queued on the model's
// stream; returns after it finished.
int llama_cuda_backward_hidden(LlamaCuda *d, const void *dh, int lowest_layer, Err *e);

// Host copies in the parameter layout (n_params floats). Uploading sets the float32 weights and,
// in LETHE_BF16 mode, their bfloat16 rounding.
int llama_cuda_download_grads(const LlamaCuda *d, float *grads, Err *e);
int llama_cuda_upload_params(LlamaCuda *d, const float *params, Err *e);
int llama_cuda_download_params(const LlamaCuda *d, float *params, Err *e);

// Targets of the last forward: count, and per target (host arrays of that many entries) the
// sample it belongs to and its log-prob.
size_t llama_cuda_n_targets(const LlamaCuda *d);
const int32_t *llama_cuda_target_sample(const LlamaCuda *d);
const float *llama_cuda_target_logprob(const LlamaCuda *d);
// Per-target losses of the last llama_cuda_forward_soft (host array).
const float *llama_cuda_target_loss(const LlamaCuda *d);

// Decoding over device KV caches: n_slots sequences of `capacity` positions (<= the model's
// context), steps of at most max_rows rows. Reallocates only to grow.
int llama_cuda_decode_reserve(LlamaCuda *d, int n_slots, int capacity, int max_rows, Err *e);
// One step of n rows, as llama_decode_batch: row r feeds tokens[r] to slot slot[r]'s cache at
// position pos[r] (a slot's rows in a step take its next free positions, in row order; the
// caller keeps the lengths). float32 logits (n_wanted, V) of the rows with want[r] != 0 (want
// NULL: every row), in row order.
int llama_cuda_decode(LlamaCuda *d, const int32_t *slot, const int32_t *pos, const int32_t *tokens,
                      const uint8_t *want, int n, float *logits, Err *e);

// The device buffers, for an optimizer running on the device (cuda_adamw_update): all work of a
// LlamaCuda is queued on its stream (a cudaStream_t) and cuBLAS handle (a cublasHandle_t).
typedef struct {
    size_t n_params;
    LetheDtype dtype;
    float *params;      // (n_params) float32
    uint16_t *params16; // (n_params) bfloat16 bits, or NULL in LETHE_F32 mode
    float *grads;       // (n_params) float32
    LetheStream stream;
    void *cublas;
} LlamaCudaBuffers;
LlamaCudaBuffers llama_cuda_buffers(const LlamaCuda *d);

// Device bytes of the activations for a batch of n_tokens tokens in n_samples samples (what a
// forward allocates, before its growth headroom), to size batches against cudaMemGetInfo.
size_t llama_cuda_activation_bytes(const ModelConfig *c, size_t n_tokens, int n_samples,
                                   LetheDtype dtype);

#ifdef __cplusplus
}
#endif
#endif
