// The engine factory (cpu | cuda | auto) and the CPU engine: host/llama.c and host/optim.c
// working in place on the host model.
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

static CudaBackend g_cuda;
static int g_have_cuda;

void engine_register_cuda(const CudaBackend *backend) {
    g_cuda = *backend;
    g_have_cuda = 1;
}

// ---- the CPU engine ---------------------------------------------------------------------------

typedef struct {
    Engine base;
    LlamaActs *acts, *ref_acts;
    LlamaModel ref; // frozen start model (with_ref)
    int have_ref;
    float *grads;
    // the last forward_hidden's head: its per-target mse, its target (ref_rows from the
    // reference's acts, or the caller's vector), and the backward's dh; hidden_layer -1: none
    int hidden_layer, lowest_block;
    const float *target_rows, *target_vec;
    float *mse, *dh;
    size_t cap_rows;
} CpuEngine;

static CpuEngine *cpu(Engine *g) { return (CpuEngine *)g; }
static const CpuEngine *cpu_c(const Engine *g) { return (const CpuEngine *)g; }

static int cpu_forward(Engine *g, const Batch *b, double *s, int *n, Err *e) {
    cpu(g)->hidden_layer = -1;
    return llama_forward(g->model, cpu(g)->acts, b, s, n, e);
}

int engine_lowest_trained_block(const LlamaModel *m, const Optimizer *opt) {
    if (!opt) return 0;
    int lowest = m->cfg.num_hidden_layers, l;
    for (int i = 0; i < m->n_tensors; i++) {
        if (!opt->trainable[i]) continue;
        if (m->tensors[i].offset == m->embed) return 0;
        if (sscanf(m->tensors[i].name, "model.layers.%d.", &l) == 1 && l < lowest) lowest = l;
    }
    return lowest;
}

static int cpu_forward_hidden(Engine *g, const Batch *b, int layer, const float *target,
                              double *mse_sum, int *n, Err *e) {
    CpuEngine *c = cpu(g);
    c->hidden_layer = -1;
    const float *rows_ref = NULL;
    if (!target) {
        if (!c->have_ref)
            return err_set(e, "forward_hidden: the engine was opened without a reference");
        if (llama_forward_hidden(&c->ref, c->ref_acts, b, layer, e)) return -1;
        rows_ref = llama_hidden_rows(c->ref_acts);
    }
    if (llama_forward_hidden(g->model, c->acts, b, layer, e)) return -1;
    const size_t M = llama_n_targets(c->acts), D = (size_t)g->model->cfg.hidden_size;
    if (M > c->cap_rows) {
        free(c->mse);
        free(c->dh);
        c->mse = malloc(M * sizeof(float));
        c->dh = malloc(M * D * sizeof(float));
        c->cap_rows = c->mse && c->dh ? M : 0;
        if (!c->cap_rows) return err_set(e, "out of memory for %zu hidden rows", M);
    }
    timing_start(TIMER_CLASSIFIER_FORWARD);
    rows_mse_forward(c->mse, llama_hidden_rows(c->acts), rows_ref, target, M, (int)D);
    timing_stop(TIMER_CLASSIFIER_FORWARD);
    llama_sum_per_sample(llama_target_sample(c->acts), c->mse, M, b->n_samples, mse_sum, n);
    c->hidden_layer = layer;
    c->target_rows = rows_ref;
    c->target_vec = target;
    return 0;
}

static int cpu_forward_soft(Engine *g, const Batch *b, const SoftSpec *spec, double *loss,
                            int *n, Err *e) {
    CpuEngine *c = cpu(g);
    c->hidden_layer = -1;
    if (!spec->from_reference)
        return llama_forward_soft(g->model, c->acts, b, spec, NULL, NULL, loss, n, e);
    if (!c->have_ref)
        return err_set(e, "forward_soft: the engine was opened without a reference");
    if (llama_forward_rows(&c->ref, c->ref_acts, b, e)) return -1;
    return llama_forward_soft(g->model, c->acts, b, spec, &c->ref, c->ref_acts, loss, n, e);
}

static size_t cpu_n_targets(const Engine *g) { return llama_n_targets(cpu_c(g)->acts); }
static const int32_t *cpu_target_sample(const Engine *g) {
    return llama_target_sample(cpu_c(g)->acts);
}
static const float *cpu_target_logprob(const Engine *g) {
    return llama_target_logprob(cpu_c(g)->acts);
}
static const float *cpu_target_loss(const Engine *g) {
    const CpuEngine *c = cpu_c(g);
    return c->hidden_layer >= 0 ? c->mse : llama_target_loss(c->acts);
}

static int cpu_target_stats(Engine *g, uint8_t *is_argmax, float *mu, float *var, Err *e) {
    (void)e;
    llama_target_stats(g->model, cpu(g)->acts, is_argmax, mu, var);
    return 0;
}

static int need_grads(CpuEngine *c, Err *e) {
    if (c->grads) return 0;
    c->grads = calloc(c->base.model->n_params, sizeof(float));
    return c->grads ? 0 : err_set(e, "out of memory for %zu gradients", c->base.model->n_params);
}

static int cpu_backward(Engine *g, const float *weight, Err *e) {
    CpuEngine *c = cpu(g);
    if (need_grads(c, e)) return -1;
    if (c->hidden_layer < 0) {
        llama_backward(g->model, c->acts, weight, c->grads);
        return 0;
    }
    const size_t M = llama_n_targets(c->acts);
    timing_start(TIMER_CLASSIFIER_BACKWARD);
    rows_mse_backward(c->dh, llama_hidden_rows(c->acts), c->target_rows, c->target_vec, weight, M,
                      g->model->cfg.hidden_size);
    timing_stop(TIMER_CLASSIFIER_BACKWARD);
    llama_backward_hidden(g->model, c->acts, c->dh, c->lowest_block, c->grads);
    return 0;
}

static int cpu_zero_grads(Engine *g, Err *e) {
    if (need_grads(cpu(g), e)) return -1;
    memset(cpu(g)->grads, 0, g->model->n_params * sizeof(float));
    return 0;
}

static int cpu_grad_norm(Engine *g, double *norm, Err *e) {
    if (!g->opt) return err_set(e, "grad_norm: the engine has no optimizer");
    if (need_grads(cpu(g), e)) return -1;
    *norm = grad_global_norm(g->opt, g->model, cpu(g)->grads);
    return 0;
}

static int cpu_step(Engine *g, double lr, double norm, double max_norm, Err *e) {
    if (!g->opt) return err_set(e, "step: the engine has no optimizer");
    if (need_grads(cpu(g), e)) return -1;
    optimizer_step(g->opt, g->model, g->model->params, cpu(g)->grads, lr, norm, max_norm);
    return 0;
}

static int cpu_sync(Engine *g, Err *e) {
    (void)g;
    (void)e;
    return 0;
}

static GenDecoder *cpu_decoder(Engine *g) {
    (void)g;
    return NULL;
}

static int cpu_device_memory(Engine *g, size_t *in_use, Err *e) {
    (void)g, (void)e;
    *in_use = 0;
    return 0;
}

static void cpu_destroy(Engine *g) {
    CpuEngine *c = cpu(g);
    llama_acts_free(c->acts);
    llama_acts_free(c->ref_acts);
    if (c->have_ref) llama_free(&c->ref);
    free(c->grads);
    free(c->mse);
    free(c->dh);
    free(c);
}

static const EngineOps cpu_ops = {
    .forward = cpu_forward,
    .forward_soft = cpu_forward_soft,
    .forward_hidden = cpu_forward_hidden,
    .n_targets = cpu_n_targets,
    .target_sample = cpu_target_sample,
    .target_logprob = cpu_target_logprob,
    .target_loss = cpu_target_loss,
    .target_stats = cpu_target_stats,
    .backward = cpu_backward,
    .zero_grads = cpu_zero_grads,
    .grad_norm = cpu_grad_norm,
    .step = cpu_step,
    .pull = cpu_sync,
    .push = cpu_sync,
    .decoder = cpu_decoder,
    .device_memory = cpu_device_memory,
    .destroy = cpu_destroy,
};

static int cpu_open(Engine **out, LlamaModel *model, Optimizer *opt, int with_ref, uint64_t seed,
                    Err *e) {
    CpuEngine *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, "out of memory");
    c->base = (Engine){&cpu_ops, ENGINE_CPU, "cpu (float32)", model, opt, seed};
    c->hidden_layer = -1;
    c->lowest_block = engine_lowest_trained_block(model, opt);
    c->acts = llama_acts_new();
    c->ref_acts = with_ref ? llama_acts_new() : NULL;
    if (!c->acts || (with_ref && !c->ref_acts)) {
        cpu_destroy(&c->base);
        return err_set(e, "out of memory");
    }
    if (with_ref) {
        if (llama_create(&c->ref, &model->cfg, e)) {
            cpu_destroy(&c->base);
            return -1;
        }
        c->have_ref = 1;
        memcpy(c->ref.params, model->params, model->n_params * sizeof(float));
    }
    *out = &c->base;
    return 0;
}

// ---- the factory --------------------------------------------------------------------------------

int engine_check_request(const DeviceRequest *req, Err *e) {
    if (strcmp(req->name, "cpu") && strcmp(req->name, "cuda") && strcmp(req->name, "auto"))
        return err_set(e, "device.name (--device) must be cpu, cuda or auto (got '%s')",
                       req->name);
    if (strcmp(req->dtype, "bf16") && strcmp(req->dtype, "fp32"))
        return err_set(e, "device.dtype must be bf16 or fp32 (got '%s'): bf16 weights and "
                          "activations with fp32 master weights, or fp32 throughout (to check "
                          "against the CPU)",
                       req->dtype);
    return 0;
}

int engine_open(Engine **out, const DeviceRequest *req, LlamaModel *model, Optimizer *opt,
                int with_ref, uint64_t seed, Err *e) {
    *out = NULL;
    if (engine_check_request(req, e)) return -1;
    const int want_cuda = strcmp(req->name, "cuda") == 0, is_auto = strcmp(req->name, "auto") == 0;
    if (want_cuda || is_auto) {
        char why[512] = "this lethe was built without the CUDA backend (no nvcc when it was "
                        "built; install the CUDA toolkit and rebuild)";
        if (g_have_cuda && opt && opt->kind != OPT_ADAMW) {
            // The device optimizer is AdamW (cuda_adamw_update); SGD has no CUDA twin.
            snprintf(why, sizeof why, "optim.name sgd runs on the CPU only; use "
                                      "optim.name=adamw for the GPU");
        } else if (g_have_cuda && g_cuda.available(why, sizeof why)) {
            const LetheDtype dt = strcmp(req->dtype, "fp32") == 0 ? LETHE_F32 : LETHE_BF16;
            return g_cuda.open(out, model, opt, with_ref, dt, seed, e);
        }
        if (want_cuda) return err_set(e, "--device cuda: %s", why);
        static int said; // once per process: an evaluation opens an engine per model
        if (!said++) fprintf(stderr, "device auto: not the GPU: %s; running on the CPU\n", why);
    }
    return cpu_open(out, model, opt, with_ref, seed, e);
}

void engine_close(Engine *g) {
    if (g) g->ops->destroy(g);
}
