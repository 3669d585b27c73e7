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
