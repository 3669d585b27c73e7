// The CUDA engine (host/engine.h): the device model of llama_cuda.c, a frozen device copy for KL
// terms, and AdamW with its moments, the global gradient norm and the clipping on the device.
#include "engine_cuda.h"

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_try.h"
#include "llama_cuda.h"

typedef struct {
    GenDecoder decoder; // first: the decoder's callbacks get the engine back by a cast
    Engine base;
    LlamaCuda *model, *ref;
    LlamaCudaBuffers buf;
    float *m, *v;            // (n_params) Adam moments on the device, NULL without optimizer
    double *norm_partial;    // (CUDA_GRAD_NORM_SLOTS)
    double *norm;            // (1) the last grad_norm, read by the update's clipping
    // the last forward_hidden's head (hidden_layer -1: none): the target (the reference's rows,
    // or the caller's vector copied to target_vec), per-target mse and the backward's weights
    int hidden_layer, lowest_block, with_vec;
    const void *target_rows;
    float *target_vec, *mse, *weight; // device: (D), (cap_rows), (cap_rows)
    float *h_mse;                     // host (cap_rows)
    size_t cap_rows;
} CudaEngine;

static CudaEngine *cu(Engine *g) {
    return (CudaEngine *)((char *)g - offsetof(CudaEngine, base));
}
static const CudaEngine *cu_c(const Engine *g) {
    return (const CudaEngine *)((const char *)g - offsetof(CudaEngine, base));
}


// A seed of its own for each tensor's stochastic rounding, from the run's seed.
static uint64_t tensor_seed(uint64_t seed, int tensor) {
    return seed * 0x9E3779B97F4A7C15ull + (uint64_t)tensor * 0xD1B54A32D192ED03ull + 1;
}

static int e_forward(Engine *g, const Batch *b, double *s, int *n, Err *e) {
    cu(g)->hidden_layer = -1;
    return llama_cuda_forward(cu(g)->model, b, s, n, e);
}

static int hidden_buffers(CudaEngine *c, size_t M, int D, Err *e) {
    if (!c->target_vec) CUDA_TRY(e, cudaMalloc((void **)&c->target_vec, (size_t)D * sizeof(float)));
    if (M <= c->cap_rows) return 0;
    cudaFree(c->mse);
    cudaFree(c->weight);
    free(c->h_mse);
    c->mse = c->weight = NULL;
    c->h_mse = NULL;
    c->cap_rows = 0;
    const size_t cap = M + M / 4;
    CUDA_TRY(e, cudaMalloc((void **)&c->mse, cap * sizeof(float)));
    CUDA_TRY(e, cudaMalloc((void **)&c->weight, cap * sizeof(float)));
    c->h_mse = malloc(cap * sizeof(float));
    if (!c->h_mse) return err_set(e, "out of memory for %zu hidden rows", cap);
    c->cap_rows = cap;
    return 0;
}

static int e_forward_hidden(Engine *g, const Batch *b, int layer, const float *target,
                            double *mse_sum, int *n, Err *e) {
    CudaEngine *c = cu(g);
    c->hidden_layer = -1;
    const void *rows_ref = NULL;
    if (!target) {
        if (!c->ref) return err_set(e, "forward_hidden: the engine was opened without a reference");
        if (llama_cuda_forward_hidden(c->ref, b, layer, e)) return -1; // synchronised
        rows_ref = llama_cuda_hidden_rows(c->ref);
    }
    if (llama_cuda_forward_hidden(c->model, b, layer, e)) return -1;
    const size_t M = llama_cuda_n_targets(c->model);
    const int D = g->model->cfg.hidden_size;
    if (hidden_buffers(c, M, D, e)) return -1;
    cudaStream_t st = (cudaStream_t)c->buf.stream;
    if (target)
        CUDA_TRY(e, cudaMemcpyAsync(c->target_vec, target, (size_t)D * sizeof(float),
                                    cudaMemcpyHostToDevice, st));
    if (M > 0) {
        CUDA_TRY(e, cuda_rows_mse_forward(c->mse, llama_cuda_hidden_rows(c->model), rows_ref,
                                          target ? c->target_vec : NULL, M, D, c->buf.dtype,
                                          c->buf.stream));
        CUDA_TRY(e, cudaMemcpyAsync(c->h_mse, c->mse, M * sizeof(float), cudaMemcpyDeviceToHost,
                                    st));
    }
    CUDA_TRY(e, cudaStreamSynchronize(st));
    llama_sum_per_sample(llama_cuda_target_sample(c->model), c->h_mse, M, b->n_samples, mse_sum,
                         n);
    c->hidden_layer = layer;
    c->target_rows = rows_ref;
    c->with_vec = target != NULL;
    return 0;
}

static int e_forward_soft(Engine *g, const Batch *b, const SoftSpec *spec, double *loss, int *n,
                          Err *e) {
    CudaEngine *c = cu(g);
    c->hidden_layer = -1;
    if (!spec->from_reference)
        return llama_cuda_forward_soft(c->model, b, spec, NULL, loss, n, e);
    if (!c->ref) return err_set(e, "forward_soft: the engine was opened without a reference");
    if (llama_cuda_forward_rows(c->ref, b, e)) return -1;
    return llama_cuda_forward_soft(c->model, b, spec, c->ref, loss, n, e);
}

static size_t e_n_targets(const Engine *g) { return llama_cuda_n_targets(cu_c(g)->model); }
static const int32_t *e_target_sample(const Engine *g) {
    return llama_cuda_target_sample(cu_c(g)->model);
}
static const float *e_target_logprob(const Engine *g) {
    return llama_cuda_target_logprob(cu_c(g)->model);
}
static const float *e_target_loss(const Engine *g) {
    const CudaEngine *c = cu_c(g);
    return c->hidden_layer >= 0 ? c->h_mse : llama_cuda_target_loss(c->model);
}
static int e_target_stats(Engine *g, uint8_t *a, float *mu, float *var, Err *e) {
    return llama_cuda_target_stats(cu(g)->model, a, mu, var, e);
}
static int e_backward(Engine *g, const float *w, Err *e) {
    CudaEngine *c = cu(g);
    if (c->hidden_layer < 0) return llama_cuda_backward(c->model, w, e);
    const size_t M = llama_cuda_n_targets(c->model);
    void *dh = llama_cuda_hidden_grad_buffer(c->model);
    if (M > 0) {
        cudaStream_t st = (cudaStream_t)c->buf.stream;
        CUDA_TRY(e, cudaMemcpyAsync(c->weight, w, M * sizeof(float), cudaMemcpyHostToDevice, st));
        CUDA_TRY(e, cuda_rows_mse_backward(dh, llama_cuda_hidden_rows(c->model), c->target_rows,
                                           c->with_vec ? c->target_vec : NULL, c->weight, M,
                                           g->model->cfg.hidden_size, c->buf.dtype,
                                           c->buf.stream));
    }
    return llama_cuda_backward_hidden(c->model, dh, c->lowest_block, e);
}
static int e_zero_grads(Engine *g, Err *e) { return llama_cuda_zero_grads(cu(g)->model, e); }

// The same tensors, in the same order, as grad_global_norm in host/optim.c.
static int e_grad_norm(Engine *g, double *norm, Err *e) {
    CudaEngine *c = cu(g);
    if (!g->opt) return err_set(e, "grad_norm: the engine has no optimizer");
    cudaStream_t st = (cudaStream_t)c->buf.stream;
    CUDA_TRY(e, cudaMemsetAsync(c->norm_partial, 0, CUDA_GRAD_NORM_SLOTS * sizeof(double), st));
    for (int i = 0; i < g->model->n_tensors; i++) {
        if (!g->opt->trainable[i]) continue;
        const ParamTensor *t = &g->model->tensors[i];
        CUDA_TRY(e, cuda_grad_norm_accumulate(c->norm_partial, c->buf.grads + t->offset,
                                                t->numel, st));
    }
    CUDA_TRY(e, cuda_grad_norm_finish(c->norm, c->norm_partial, st));
    CUDA_TRY(e, cudaMemcpyAsync(norm, c->norm, sizeof(double), cudaMemcpyDeviceToHost, st));
    CUDA_TRY(e, cudaStreamSynchronize(st));
    return 0;
}

// AdamW over the trainable tensors, as optimizer_step; the clipping reads the norm that
// e_grad_norm left on the device (the host's copy `norm` is the same value).
static int e_step(Engine *g, double lr, double norm, double max_norm, Err *e) {
    (void)norm;
    CudaEngine *c = cu(g);
    Optimizer *o = g->opt;
    if (!o) return err_set(e, "step: the engine has no optimizer");
    const OptimConfig *oc = &o->cfg;
    o->step++;
    for (int i = 0; i < g->model->n_tensors; i++) {
        if (!o->trainable[i]) continue;
        const ParamTensor *t = &g->model->tensors[i];
        CUDA_TRY(e, cuda_adamw_update(c->buf.params + t->offset, c->m + t->offset,
                                        c->v + t->offset,
                                        c->buf.params16 ? c->buf.params16 + t->offset : NULL,
                                        c->buf.grads + t->offset, t->numel, lr, oc->beta1,
                                        oc->beta2, oc->eps, o->decay[i] ? oc->weight_decay : 0.0,
                                        o->step, c->norm, max_norm, tensor_seed(g->seed, i),
                                        c->buf.stream));
    }
    CUDA_TRY(e, cudaStreamSynchronize((cudaStream_t)c->buf.stream));
    return 0;
}

static int e_pull(Engine *g, Err *e) {
    CudaEngine *c = cu(g);
    if (llama_cuda_download_params(c->model, g->model->params, e)) return -1;
    if (g->opt && c->m) {
        // On the model's stream (non-blocking: the legacy default stream would not order them).
        cudaStream_t st = (cudaStream_t)c->buf.stream;
        const size_t bytes = g->model->n_params * sizeof(float);
        CUDA_TRY(e, cudaMemcpyAsync(g->opt->m, c->m, bytes, cudaMemcpyDeviceToHost, st));
        CUDA_TRY(e, cudaMemcpyAsync(g->opt->v, c->v, bytes, cudaMemcpyDeviceToHost, st));
        CUDA_TRY(e, cudaStreamSynchronize(st));
    }
    return 0;
}

// Uploads the host's weights and moments. The bfloat16 weights of trained tensors are rounded
// again with the stream of the last update (not to nearest), so that a resumed run has the bits
// of the uninterrupted one.
static int e_push(Engine *g, Err *e) {
    CudaEngine *c = cu(g);
    if (llama_cuda_upload_params(c->model, g->model->params, e)) return -1;
    if (!g->opt || !c->m) return 0;
    cudaStream_t st = (cudaStream_t)c->buf.stream;
    const size_t bytes = g->model->n_params * sizeof(float);
    CUDA_TRY(e, cudaMemcpyAsync(c->m, g->opt->m, bytes, cudaMemcpyHostToDevice, st));
    CUDA_TRY(e, cudaMemcpyAsync(c->v, g->opt->v, bytes, cudaMemcpyHostToDevice, st));
    CUDA_TRY(e, cudaStreamSynchronize(st));
    if (c->buf.params16 && g->opt->step > 0) {
        for (int i = 0; i < g->model->n_tensors; i++) {
            if (!g->opt->trainable[i]) continue;
            const ParamTensor *t = &g->model->tensors[i];
            CUDA_TRY(e, cuda_bf16_round_stochastic(c->buf.params16 + t->offset,
                                                     c->buf.params + t->offset, t->numel,
                                                     tensor_seed(g->seed, i), g->opt->step,
                                                     c->buf.stream));
        }
        CUDA_TRY(e, cudaStreamSynchronize((cudaStream_t)c->buf.stream));
    }
    return 0;
}

static int dec_reserve(GenDecoder *dec, int n_slots, int capacity, int max_rows, Err *e) {
    return llama_cuda_decode_reserve(((CudaEngine *)dec)->model, n_slots, capacity, max_rows, e);
}

static int dec_decode(GenDecoder *dec, const int32_t *slot, const int32_t *pos,
                      const int32_t *tokens, const uint8_t *want, int n, float *logits, Err *e) {
    return llama_cuda_decode(((CudaEngine *)dec)->model, slot, pos, tokens, want, n, logits, e);
}

static GenDecoder *e_decoder(Engine *g) { return &cu(g)->decoder; }

static int e_device_memory(Engine *g, size_t *in_use, Err *e) {
    (void)g;
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(e, cudaMemGetInfo(&free_b, &total_b));
    *in_use = total_b - free_b;
    return 0;
}

static void e_destroy(Engine *g) {
    CudaEngine *c = cu(g);
    llama_cuda_free(c->model);
    llama_cuda_free(c->ref);
    cudaFree(c->m);
    cudaFree(c->v);
    cudaFree(c->norm_partial);
    cudaFree(c->norm);
    cudaFree(c->target_vec);
    cudaFree(c->mse);
    cudaFree(c->weight);
    free(c->h_mse);
    free(c);
}

static const EngineOps cuda_ops = {
    .forward = e_forward,
    .forward_soft = e_forward_soft,
    .forward_hidden = e_forward_hidden,
    .n_targets = e_n_targets,
    .target_sample = e_target_sample,
    .target_logprob = e_target_logprob,
    .target_loss = e_target_loss,
    .target_stats = e_target_stats,
    .backward = e_backward,
    .zero_grads = e_zero_grads,
    .grad_norm = e_grad_norm,
    .step = e_step,
    .pull = e_pull,
    .push = e_push,
    .decoder = e_decoder,
    .device_memory = e_device_memory,
    .destroy = e_destroy,
};

static int alloc_state(CudaEngine *c, size_t n, Err *e) {
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(e, cudaMemGetInfo(&free_b, &total_b));
    const size_t bytes = 2 * n * sizeof(float);
    if (bytes > free_b)
        return err_set(e, "out of device memory: the AdamW moments of %zu parameters need %zu MiB, "
                          "%s has %zu MiB free of %zu MiB; train fewer tensors (optim.train_only), "
                          "use a device with more memory, or --device cpu",
                       n, bytes >> 20, llama_cuda_device_name(c->model), free_b >> 20,
                       total_b >> 20);
    CUDA_TRY(e, cudaMalloc((void **)&c->m, n * sizeof(float)));
    CUDA_TRY(e, cudaMalloc((void **)&c->v, n * sizeof(float)));
    CUDA_TRY(e, cudaMalloc((void **)&c->norm_partial, CUDA_GRAD_NORM_SLOTS * sizeof(double)));
    CUDA_TRY(e, cudaMalloc((void **)&c->norm, sizeof(double)));
    // Zeroed on the model's stream, which is non-blocking: ordered before the first update.
    cudaStream_t st = (cudaStream_t)c->buf.stream;
    CUDA_TRY(e, cudaMemsetAsync(c->m, 0, n * sizeof(float), st));
    CUDA_TRY(e, cudaMemsetAsync(c->v, 0, n * sizeof(float), st));
    CUDA_TRY(e, cudaStreamSynchronize(st));
    return 0;
}

int engine_cuda_available(char *why, size_t why_size) {
    int count = 0;
    const cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        snprintf(why, why_size, "cudaGetDeviceCount failed with %s (%s); check the driver "
                                "(nvidia-smi) and CUDA_VISIBLE_DEVICES",
                 cudaGetErrorName(rc), cudaGetErrorString(rc));
        return 0;
    }
    if (count <= 0) {
        snprintf(why, why_size, "cudaGetDeviceCount found no device; check CUDA_VISIBLE_DEVICES");
        return 0;
    }
    return 1;
}

int engine_cuda_open(Engine **out, LlamaModel *model, Optimizer *opt, int with_ref,
                     LetheDtype dtype, uint64_t seed, Err *e) {
    *out = NULL;
    if (opt && opt->kind != OPT_ADAMW)
        return err_set(e, "the cuda engine's optimizer is AdamW; optim.name sgd runs on the CPU");
    CudaEngine *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, "out of memory");
    c->base = (Engine){&cuda_ops, ENGINE_CUDA, "", model, opt, seed};
    c->decoder = (GenDecoder){dec_reserve, dec_decode};
    c->hidden_layer = -1;
    c->lowest_block = engine_lowest_trained_block(model, opt);
    if (llama_cuda_create(&c->model, model, dtype, e) ||
        (with_ref && llama_cuda_create_frozen(&c->ref, model, dtype, e))) {
        e_destroy(&c->base);
        return -1;
    }
    c->buf = llama_cuda_buffers(c->model);
    if (opt && alloc_state(c, model->n_params, e)) {
        e_destroy(&c->base);
        return -1;
    }
    snprintf(c->base.description, sizeof c->base.description, "%.300s, %s",
             llama_cuda_device_name(c->model), dtype == LETHE_F32 ? "float32" : "bfloat16");
    *out = &c->base;
    return 0;
}

const CudaBackend *engine_cuda_backend(void) {
    static const CudaBackend backend = {engine_cuda_available, engine_cuda_open};
    return &backend;
}
