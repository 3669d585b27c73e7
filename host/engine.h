// The model on a compute backend, as the step scheduler and the evaluation drive it: forward,
// backward, gradient norm, optimizer update and parameter sync, on the CPU or a CUDA device.
#ifndef LETHE_ENGINE_H
#define LETHE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "generate.h"
#include "llama.h"
#include "ops.h"
#include "optim.h"

typedef enum { ENGINE_CPU = 0, ENGINE_CUDA = 1 } EngineKind;

typedef struct Engine Engine;

// Every call returns 0 or -1 with e set. Targets follow host/llama.h's order and contract.
typedef struct {
    // Forward under the model: per-sample target log-prob sums and target counts (either NULL).
    int (*forward)(Engine *g, const Batch *b, double *sum_logprob, int *n_targets, Err *e);
    // Forward whose head is a loss against a soft target per target (llama_forward_soft; a
    // reference source needs an engine opened with_ref: the frozen start model); the next
    // backward takes dLoss/dloss per target.
    int (*forward_soft)(Engine *g, const Batch *b, const SoftSpec *spec, double *loss_sum,
                        int *n_targets, Err *e);
    // Forward through blocks 0..layer only, whose head is, per target, the mean squared error
    // between the residual stream after block `layer` at the target token's position and a
    // target: the vector `target` (D host floats, kept by the caller until the backward) or,
    // target NULL, the frozen start model's states on the same batch (engines opened with_ref).
    // mse_sum per sample; per target target_loss(). The next backward takes dLoss/dmse per target
    // and runs from block `layer` down to the lowest block with a trainable tensor.
    int (*forward_hidden)(Engine *g, const Batch *b, int layer, const float *target,
                          double *mse_sum, int *n_targets, Err *e);
    size_t (*n_targets)(const Engine *g);
    const int32_t *(*target_sample)(const Engine *g);
    const float *(*target_logprob)(const Engine *g);
    // Per-target losses of the last forward_soft or forward_hidden (host floats, n_targets).
    const float *(*target_loss)(const Engine *g);
    // llama_target_stats of the last forward (not forward_soft).
    int (*target_stats)(Engine *g, uint8_t *is_argmax, float *mu, float *var, Err *e);
    // Adds the gradient of the last forward for per-target weights (host floats) to the grads.
    int (*backward)(Engine *g, const float *weight, Err *e);
    int (*zero_grads)(Engine *g, Err *e);
    // L2 norm of the trainable gradients (the optimizer's tensors), in float64.
    int (*grad_norm)(Engine *g, double *norm, Err *e);
    // One optimizer update at lr with the norm of the last grad_norm (clipping at max_norm > 0).
    int (*step)(Engine *g, double lr, double norm, double max_norm, Err *e);
    // pull: the host model's params and the optimizer's moments become the engine's; push: the
    // engine takes them from the host (after a resume). No-ops on the CPU, which works in place.
    int (*pull)(Engine *g, Err *e);
    int (*push)(Engine *g, Err *e);
    // The decoder of generate_batch on this engine (GenerateOptions.decoder), or NULL: decode
    // on the CPU from the host model.
    GenDecoder *(*decoder)(Engine *g);
    // Device memory in use now (CUDA: total - free from cudaMemGetInfo, which includes the
    // context and other processes, as nvidia-smi shows it); 0 on the CPU.
    int (*device_memory)(Engine *g, size_t *in_use, Err *e);
    void (*destroy)(Engine *g);
} EngineOps;

struct Engine {
    const EngineOps *ops;
    EngineKind kind;
    char description[360]; // for logs: "cpu" or "CUDA device 0 (NAME), bfloat16"
    LlamaModel *model;     // the host model: computed on (cpu) or mirrored (cuda)
    Optimizer *opt;        // NULL for an engine that does not train
    uint64_t seed;         // stochastic rounding of bf16 weights (cuda)
};

// What `--device` / device.name and device.dtype ask for.
typedef struct {
    const char *name;  // cpu | cuda | auto
    const char *dtype; // bf16 | fp32 (cuda weights and activations; the CPU is fp32)
} DeviceRequest;

// Opens an engine over model (and opt when training; its trainable and decay flags and moments
// are used). with_ref keeps a frozen copy of the model as it is now, for forward_soft. "auto"
// takes a CUDA device when this build has the backend and one is usable, else the CPU, and says
// which on stderr; "cuda" without one is an error naming why.
int engine_open(Engine **out, const DeviceRequest *req, LlamaModel *model, Optimizer *opt,
                int with_ref, uint64_t seed, Err *e);
void engine_close(Engine *g);

// The lowest block a backward from a hidden state must reach: 0 when the embedding or a tensor of
// block 0 is trained, else the lowest block with a trained tensor (num_hidden_layers when none;
// opt NULL: 0). Tensors after the blocks (final norm, untied head) get no gradient from there.
int engine_lowest_trained_block(const LlamaModel *m, const Optimizer *opt);

// Checks device.name and device.dtype values (for config validation).
int engine_check_request(const DeviceRequest *req, Err *e);

// The CUDA backend plugs in here (host/cuda/engine_cuda.c, registered by main): `available`
// says whether a device is usable (else writes why), `open` opens an engine on it.
typedef struct {
    int (*available)(char *why, size_t why_size);
    int (*open)(Engine **out, LlamaModel *model, Optimizer *opt, int with_ref, LetheDtype dtype,
                uint64_t seed, Err *e);
} CudaBackend;
void engine_register_cuda(const CudaBackend *backend);

#endif
