// The Llama model on the "cuda" backend: uploads a LlamaModel, queues the CUDA twins of
// kernels/ops.h on one stream, and mirrors host/llama.c's forward and backward step for step.
#include "llama_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_try.h"
#include "timing.h"

// ---- checks ----------------------------------------------------------------------------------

int lethe_cuda_failed(Err *e, const char *file, int line, const char *call, int rc) {
    const cudaError_t err = (cudaError_t)rc;
    return err_set(e, "%s:%d: %s failed: %s (%s)%s", file, line, call, cudaGetErrorName(err),
                   cudaGetErrorString(err),
                   err == cudaErrorMemoryAllocation
                       ? ". HINT: the device is out of memory; use smaller batches or shorter "
                         "sequences"
                       : "");
}

// ---- the device model ------------------------------------------------------------------------

// Activations one block saves for the backward; void * tensors hold dtype elements.
typedef struct {
    void *ln1, *resmid, *ln2; // (N, D)
    void *q, *att;            // (N, H * hd), q after RoPE
    void *k, *v;              // (N, KV * hd), k after RoPE
    void *gate, *up, *hmul;   // (N, F)
    float *rstd1, *rstd2;     // (N)
    float *lse;               // (N, H)
} LayerActs;

// The activation allocation, carved for cap_tokens tokens and cap_samples samples.
typedef struct {
    void *base;
    size_t bytes, cap_tokens;
    int cap_samples;
    void **res;       // (L+1) residual streams (N, D); res[0] = embeddings
    LayerActs *layer; // (L)
    void *lnf;        // (N, D) final-normed hidden states
    float *rstdf;     // (N)
    void *xt;         // (M, D) the rows of lnf that predict a target, or after
                      // llama_cuda_forward_hidden the hidden rows at the target tokens
    float *lse, *logprob, *weight; // (M) per target
    float *soft_loss, *soft_gap;   // (M) per target: llama_cuda_forward_soft's loss, lse gap
    float *mu, *var;               // (M) per target: llama_cuda_target_stats
    uint8_t *is_argmax;            // (M)
    // backward scratch; dres doubles as the forward's o- and down-projection output
    void *dres, *dln;       // (N, D)
    void *datt, *dq;        // (N, H * hd)
    void *dk, *dv;          // (N, KV * hd)
    void *dgate, *dup, *dh; // (N, F)
    void *dxt; // (M + 1, D): row M stays zero, the source of every non-target row of dln (of
               // dres in llama_cuda_backward_hidden, whose dh the caller may write to rows < M)
    void *rms_scratch, *emb_scratch, *cls_scratch;
    size_t cls_scratch_bytes;
    int32_t *tokens, *targets; // (N), (M)
    int32_t *qtargets;         // (M) a soft target's rows' targets under a shift_mask
    int32_t *tpos;             // (M) position of each target's row
    int32_t *scatter;          // (N) target index of each position, M for none
    int64_t *offsets;          // (n_samples + 1)
} DeviceActs;

// KV caches and the row buffers of decoding (llama_cuda_decode), one allocation.
typedef struct {
    void *base;
    int n_slots, capacity, max_rows;
    void *kcache, *vcache;               // (L, n_slots, capacity, KV * hd)
    void *r0, *rmid, *ln, *tmp, *lnf;    // (rows, D)
    void *q, *att;                       // (rows, H * hd)
    void *k, *v;                         // (rows, KV * hd)
    void *gate, *up, *hmul;              // (rows, F)
    float *rstd;                         // (rows)
    float *logits;                       // (rows, V) float32
    int32_t *tokens, *pos, *len, *want;  // (rows)
    int64_t *dst_row, *start_row;        // (rows) cache rows: where each row's K/V goes, and
                                         // where its slot starts
    int32_t *h_len, *h_want;             // host staging (rows)
    int64_t *h_dst_row, *h_start_row;
} DecodeBuffers;

struct LlamaCuda {
    ModelConfig cfg;
    DecodeBuffers dec;
    LetheDtype dtype;
    size_t es; // bytes of one dtype element
    size_t n_params;
    LayerOffsets *layers; // (L) copied from the host model
    size_t embed, norm, lm_head;
    int device;
    char device_name[300]; // "CUDA device N (name)", name up to 256 bytes
    cudaStream_t stream;
    cublasHandle_t cublas;
    int frozen; // no gradients; in LETHE_BF16 mode no float32 copy either (a reference model)
    float *params;
    uint16_t *params16;
    float *grads;
    DeviceActs a;
    // the last forward, on the host; soft: its head was a soft target's (soft_target, whose
    // source rows are soft_ref's or, soft_ref NULL, this model's own logits)
    size_t n_tokens, n_targets, host_cap;
    int n_samples, have_forward, have_rows, soft;
    int hidden_layer; // -1, or the block the last forward (llama_cuda_forward_hidden) stopped after
    SoftTarget soft_target;
    const struct LlamaCuda *soft_ref;
    int32_t *h_targets, *h_tpos, *h_scatter, *h_tsample, *h_qtargets; // (host_cap)
    float *h_logprob, *h_soft_loss;                      // (host_cap)
};

// The weights the kernels read at a parameter offset (dtype), and the gradient there (float32).
static const void *weight_at(const LlamaCuda *d, size_t off) {
    return d->dtype == LETHE_F32 ? (const void *)(d->params + off)
                                 : (const void *)(d->params16 + off);
}
static const void *opt_weight_at(const LlamaCuda *d, size_t off) {
    return off == NO_TENSOR ? NULL : weight_at(d, off);
}
static float *opt_grad_at(const LlamaCuda *d, size_t off) {
    return off == NO_TENSOR ? NULL : d->grads + off;
}

static const char *dtype_label(LetheDtype dtype) {
    return dtype == LETHE_F32 ? "float32" : "bfloat16";
}

// Fails when `bytes` more device memory would not fit in what the device has free: the message
// names what needs it and what to reduce.
static int check_fits(const LlamaCuda *d, size_t bytes, const char *what, const char *hint,
                      Err *e) {
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(e, cudaMemGetInfo(&free_b, &total_b));
    if (bytes > free_b)
        return err_set(e,
                       "out of device memory: %s need %zu MiB (%zu bytes), %s has %zu MiB free "
                       "of %zu MiB; %s",
                       what, bytes >> 20, bytes, d->device_name, free_b >> 20, total_b >> 20,
                       hint);
    return 0;
}

// cudaMalloc; when it fails for lack of memory, a message like check_fits's.
static int device_alloc(const LlamaCuda *d, void **p, size_t bytes, const char *what,
                        const char *hint, Err *e) {
    *p = NULL;
    const cudaError_t rc = cudaMalloc(p, bytes ? bytes : 1);
    if (rc == cudaSuccess) return 0;
    *p = NULL;
    if (rc != cudaErrorMemoryAllocation)
        return lethe_cuda_failed(e, __FILE__, __LINE__, "cudaMalloc(p, bytes)", rc);
    (void)cudaGetLastError(); // the failed allocation is not sticky; clear it
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(e, cudaMemGetInfo(&free_b, &total_b));
    return err_set(e,
                   "out of device memory: cudaMalloc of %zu MiB (%zu bytes) for %s failed with "
                   "%zu MiB free of %zu MiB on %s; %s",
                   bytes >> 20, bytes, what, free_b >> 20, total_b >> 20, d->device_name, hint);
}

// ---- bfloat16 weights ------------------------------------------------------------------------

// Round to nearest even, as __float2bfloat16_rn; NaNs stay quiet NaNs.
static uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// Uploads params (host, n_params) to the float32 weights and, in bf16 mode, their rounding,
// through a bounded staging buffer (a host copy of a large model's bf16 weights would not fit).
static int upload_params(LlamaCuda *d, const float *params, Err *e) {
    if (d->params)
        CUDA_TRY(e, cudaMemcpyAsync(d->params, params, d->n_params * sizeof(float),
                                    cudaMemcpyHostToDevice, d->stream));
    if (d->dtype == LETHE_BF16) {
        enum { CHUNK = 1 << 20 };
        uint16_t *stage = malloc(CHUNK * sizeof *stage);
        if (!stage) return err_set(e, "out of host memory for a %d-element staging buffer", CHUNK);
        for (size_t at = 0; at < d->n_params; at += CHUNK) {
            const size_t n = d->n_params - at < CHUNK ? d->n_params - at : CHUNK;
            for (size_t i = 0; i < n; i++) stage[i] = bf16_bits(params[at + i]);
            const cudaError_t rc = cudaMemcpyAsync(d->params16 + at, stage, n * sizeof *stage,
                                                   cudaMemcpyHostToDevice, d->stream);
            // The staging buffer is refilled next round: wait for the copy.
            const cudaError_t sync = rc == cudaSuccess ? cudaStreamSynchronize(d->stream) : rc;
            if (sync != cudaSuccess) {
                free(stage);
                return lethe_cuda_failed(e, __FILE__, __LINE__,
                                   "cudaMemcpyAsync(params16 + at, stage, ...)", sync);
            }
        }
        free(stage);
    }
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    return 0;
}

// ---- create / free ---------------------------------------------------------------------------

static int create_on_device(LlamaCuda *d, const LlamaModel *m, Err *e) {
    CUDA_TRY(e, cudaGetDevice(&d->device));
    struct cudaDeviceProp prop;
    CUDA_TRY(e, cudaGetDeviceProperties(&prop, d->device));
    snprintf(d->device_name, sizeof d->device_name, "CUDA device %d (%.256s)", d->device,
             prop.name);
    CUDA_TRY(e, cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(e, cublasCreate(&d->cublas));
    CUBLAS_TRY(e, cublasSetStream(d->cublas, d->stream));

    const size_t n = d->n_params;
    const int bf16 = d->dtype == LETHE_BF16, need_f32 = !d->frozen || !bf16;
    const size_t bytes = n * (need_f32 ? sizeof(float) : 0) + n * (bf16 ? sizeof(uint16_t) : 0) +
                         n * (d->frozen ? 0 : sizeof(float));
    char what[224];
    if (d->frozen)
        snprintf(what, sizeof what, "the %s weights of the frozen reference model (%zu "
                 "parameters)", dtype_label(d->dtype), n);
    else
        snprintf(what, sizeof what, "the weights (%s%s) and float32 gradients of %zu parameters",
                 dtype_label(d->dtype), bf16 ? " and a float32 master copy" : "", n);
    const char *hint = "use a device with more memory, or a smaller model";
    if (check_fits(d, bytes, what, hint, e)) return -1;
    if (need_f32 && device_alloc(d, (void **)&d->params, n * sizeof(float), what, hint, e))
        return -1;
    if (bf16 && device_alloc(d, (void **)&d->params16, n * sizeof(uint16_t), what, hint, e))
        return -1;
    if (!d->frozen && device_alloc(d, (void **)&d->grads, n * sizeof(float), what, hint, e))
        return -1;
    if (upload_params(d, m->params, e)) return -1;
    return d->frozen ? 0 : llama_cuda_zero_grads(d, e);
}

static int create(LlamaCuda **out, const LlamaModel *m, LetheDtype dtype, int frozen, Err *e) {
    *out = NULL;
    if (dtype != LETHE_F32 && dtype != LETHE_BF16)
        return err_set(e, "unknown device dtype %d", (int)dtype);
    int count = 0;
    const cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess)
        return err_set(e,
                       "no CUDA device: cudaGetDeviceCount failed with %s (%s); check the driver "
                       "(nvidia-smi) and CUDA_VISIBLE_DEVICES, or use --device cpu",
                       cudaGetErrorName(rc), cudaGetErrorString(rc));
    if (count <= 0)
        return err_set(e, "no CUDA device: cudaGetDeviceCount found none; check "
                          "CUDA_VISIBLE_DEVICES, or use --device cpu");
    LlamaCuda *d = calloc(1, sizeof *d);
    const int L = m->cfg.num_hidden_layers;
    if (!d || !(d->layers = malloc((size_t)L * sizeof *d->layers))) {
        free(d);
        return err_set(e, "out of host memory for the device model's table");
    }
    d->cfg = m->cfg;
    d->dtype = dtype;
    d->frozen = frozen;
    d->hidden_layer = -1;
    d->es = dtype == LETHE_F32 ? sizeof(float) : sizeof(uint16_t);
    d->n_params = m->n_params;
    memcpy(d->layers, m->layers, (size_t)L * sizeof *d->layers);
    d->embed = m->embed;
    d->norm = m->norm;
    d->lm_head = m->lm_head;
    if (create_on_device(d, m, e)) {
        llama_cuda_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

int llama_cuda_create(LlamaCuda **out, const LlamaModel *m, LetheDtype dtype, Err *e) {
    return create(out, m, dtype, 0, e);
}

int llama_cuda_create_frozen(LlamaCuda **out, const LlamaModel *m, LetheDtype dtype, Err *e) {
    return create(out, m, dtype, 1, e);
}

const char *llama_cuda_device_name(const LlamaCuda *d) { return d->device_name; }

static void acts_release(DeviceActs *a) {
    cudaFree(a->base);
    free(a->res);
    free(a->layer);
    memset(a, 0, sizeof *a);
}

static void decode_release(DecodeBuffers *b) {
    cudaFree(b->base);
    free(b->h_len);
    free(b->h_want);
    free(b->h_dst_row);
    free(b->h_start_row);
    memset(b, 0, sizeof *b);
}

void llama_cuda_free(LlamaCuda *d) {
    if (!d) return;
    if (d->stream) cudaStreamSynchronize(d->stream);
    acts_release(&d->a);
    decode_release(&d->dec);
    cudaFree(d->params);
    cudaFree(d->params16);
    cudaFree(d->grads);
    if (d->cublas) cublasDestroy(d->cublas);
    if (d->stream) cudaStreamDestroy(d->stream);
    free(d->layers);
    free(d->h_targets);
    free(d->h_qtargets);
    free(d->h_tpos);
    free(d->h_scatter);
    free(d->h_tsample);
    free(d->h_logprob);
    free(d->h_soft_loss);
    free(d);
}

// ---- activations -----------------------------------------------------------------------------

// Sub-buffers of one allocation, each starting on a 256-byte boundary (cudaMalloc's alignment,
// which vectorised and cuBLAS loads like). With base NULL it only counts the bytes.
typedef struct {
    char *base;
    size_t at;
} Carver;

static void *carve(Carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->at : NULL;
    c->at += (bytes + 255) / 256 * 256;
    return p;
}

// Lays out (or, with base NULL, sizes) the activations for N tokens and n_samples samples; a->res
// and a->layer must be allocated when base is not NULL.
// forward_only (a frozen model): one set of layer activations and one residual stream shared by
// all layers (forward_trunk reads each only until the next layer writes it), and no backward
// buffers but dres, the forward's projection output.
static size_t carve_acts(DeviceActs *a, const ModelConfig *c, size_t N, int n_samples,
                         LetheDtype dtype, int forward_only, char *base) {
    const size_t es = dtype == LETHE_F32 ? sizeof(float) : sizeof(uint16_t), fs = sizeof(float);
    const size_t D = c->hidden_size, F = c->intermediate_size, H = c->num_attention_heads;
    const size_t Q = H * c->head_dim, KVD = (size_t)c->num_key_value_heads * c->head_dim;
    const int L = c->num_hidden_layers;
    Carver cv = {base, 0};
#define CARVE(ptr, bytes)                    \
    do {                                     \
        void *carved_ = carve(&cv, (bytes)); \
        if (cv.base) (ptr) = carved_;        \
    } while (0)
    const int stored = forward_only ? 1 : L;
    for (int l = 0; l <= stored; l++) CARVE(a->res[l], N * D * es);
    for (int l = 0; l < stored; l++) {
        LayerActs *la = base ? &a->layer[l] : NULL;
        CARVE(la->ln1, N * D * es);
        CARVE(la->rstd1, N * fs);
        CARVE(la->q, N * Q * es);
        CARVE(la->k, N * KVD * es);
        CARVE(la->v, N * KVD * es);
        CARVE(la->lse, N * H * fs);
        CARVE(la->att, N * Q * es);
        CARVE(la->resmid, N * D * es);
        CARVE(la->ln2, N * D * es);
        CARVE(la->rstd2, N * fs);
        CARVE(la->gate, N * F * es);
        CARVE(la->up, N * F * es);
        CARVE(la->hmul, N * F * es);
    }
    if (forward_only && base) {
        for (int l = 1; l <= L; l++) a->res[l] = a->res[1];
        for (int l = 1; l < L; l++) a->layer[l] = a->layer[0];
    }
    CARVE(a->lnf, N * D * es);
    CARVE(a->rstdf, N * fs);
    CARVE(a->xt, N * D * es);
    CARVE(a->lse, N * fs);
    CARVE(a->logprob, N * fs);
    CARVE(a->soft_loss, N * fs);
    CARVE(a->soft_gap, N * fs);
    CARVE(a->weight, N * fs);
    CARVE(a->mu, N * fs);
    CARVE(a->var, N * fs);
    CARVE(a->is_argmax, N);
    CARVE(a->dres, N * D * es);
    if (!forward_only) {
        CARVE(a->dln, N * D * es);
        CARVE(a->datt, N * Q * es);
        CARVE(a->dq, N * Q * es);
        CARVE(a->dk, N * KVD * es);
        CARVE(a->dv, N * KVD * es);
        CARVE(a->dgate, N * F * es);
        CARVE(a->dup, N * F * es);
        CARVE(a->dh, N * F * es);
        CARVE(a->dxt, (N + 1) * D * es);
        CARVE(a->rms_scratch, cuda_rmsnorm_backward_scratch_size(N, (int)D));
        CARVE(a->emb_scratch, cuda_embedding_backward_scratch_size(N));
    }
    // Enough for the largest tiles of any M <= N, which the classifier then always takes: its
    // bits depend on the batch alone, not on the capacity earlier batches left.
    const size_t cls_lp = cuda_classifier_scratch_bytes(N, (int)D, c->vocab_size, dtype);
    const size_t cls_soft = cuda_classifier_soft_scratch_bytes(N, (int)D, c->vocab_size, dtype);
    const size_t cls = cls_lp > cls_soft ? cls_lp : cls_soft;
    CARVE(a->cls_scratch, cls);
    CARVE(a->tokens, N * sizeof(int32_t));
    CARVE(a->targets, N * sizeof(int32_t));
    CARVE(a->qtargets, N * sizeof(int32_t));
    CARVE(a->tpos, N * sizeof(int32_t));
    CARVE(a->scatter, N * sizeof(int32_t));
    CARVE(a->offsets, ((size_t)n_samples + 1) * sizeof(int64_t));
#undef CARVE
    if (base) a->cls_scratch_bytes = cls;
    return cv.at;
}

size_t llama_cuda_activation_bytes(const ModelConfig *c, size_t n_tokens, int n_samples,
                                   LetheDtype dtype) {
    DeviceActs sizing = {0};
    return carve_acts(&sizing, c, n_tokens, n_samples, dtype, 0, NULL);
}

static int host_reserve(LlamaCuda *d, size_t N, Err *e) {
    if (N <= d->host_cap) return 0;
    free(d->h_targets);
    free(d->h_qtargets);
    free(d->h_tpos);
    free(d->h_scatter);
    free(d->h_tsample);
    free(d->h_logprob);
    free(d->h_soft_loss);
    d->h_targets = malloc(N * sizeof(int32_t));
    d->h_qtargets = malloc(N * sizeof(int32_t));
    d->h_tpos = malloc(N * sizeof(int32_t));
    d->h_scatter = malloc(N * sizeof(int32_t));
    d->h_tsample = malloc(N * sizeof(int32_t));
    d->h_logprob = malloc(N * sizeof(float));
    d->h_soft_loss = malloc(N * sizeof(float));
    if (!d->h_targets || !d->h_qtargets || !d->h_tpos || !d->h_scatter || !d->h_tsample ||
        !d->h_logprob || !d->h_soft_loss) {
        d->host_cap = 0;
        return err_set(e, "out of host memory for the targets of %zu tokens", N);
    }
    d->host_cap = N;
    return 0;
}

// Carves the activations for N tokens, reallocating (with headroom, so that a run of similar
// batches allocates once) when the current ones are too small.
static int acts_reserve(LlamaCuda *d, size_t N, int n_samples, Err *e) {
    DeviceActs *a = &d->a;
    if (a->base && N <= a->cap_tokens && n_samples <= a->cap_samples) return 0;
    const size_t want = N > a->cap_tokens ? N + N / 4 : a->cap_tokens;
    const int samples = n_samples > a->cap_samples ? n_samples : a->cap_samples;
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    acts_release(a);
    const ModelConfig *c = &d->cfg;
    size_t cap = want, bytes = carve_acts(a, c, cap, samples, d->dtype, d->frozen, NULL);
    size_t free_b = 0, total_b = 0;
    CUDA_TRY(e, cudaMemGetInfo(&free_b, &total_b));
    if (bytes > free_b) { // no headroom then
        cap = N;
        bytes = carve_acts(a, c, cap, samples, d->dtype, d->frozen, NULL);
    }
    char what[160];
    snprintf(what, sizeof what, "the %s activations of a batch of %zu tokens in %d samples",
             dtype_label(d->dtype), N, n_samples);
    const char *hint = "use smaller batches or shorter sequences (activations grow linearly "
                       "with the tokens of a batch)";
    if (check_fits(d, bytes, what, hint, e)) return -1;
    a->res = malloc(((size_t)c->num_hidden_layers + 1) * sizeof *a->res);
    a->layer = malloc((size_t)c->num_hidden_layers * sizeof *a->layer);
    if (!a->res || !a->layer) {
        acts_release(a);
        return err_set(e, "out of host memory for the activation table");
    }
    if (device_alloc(d, &a->base, bytes, what, hint, e)) {
        acts_release(a);
        return -1;
    }
    carve_acts(a, c, cap, samples, d->dtype, d->frozen, a->base);
    a->bytes = bytes;
    a->cap_tokens = cap;
    a->cap_samples = samples;
    if (host_reserve(d, cap, e)) {
        acts_release(a); // the next forward starts over rather than find half a reservation
        return -1;
    }
    return 0;
}

// ---- forward ---------------------------------------------------------------------------------

// The checks of host/llama.c, and what the device kernels take (int32 positions, int sizes).
static int check_batch(const ModelConfig *c, const Batch *b, Err *e) {
    if (llama_check_batch(c, b, e)) return -1;
    if (b->n_tokens > (size_t)INT32_MAX / 2)
        return err_set(e, "a batch of %zu tokens; the cuda backend takes at most %d",
                       b->n_tokens, INT32_MAX / 2);
    return 0;
}

// For `lethe bench`'s split of the step: the queued work of one part finishes before its timer
// stops (only while the timers run; a training step otherwise synchronises once per call).
static int timing_sync(LlamaCuda *d, Err *e) {
    if (g_timing_enabled) CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    return 0;
}

static int upload(LlamaCuda *d, void *dst, const void *src, size_t bytes, Err *e) {
    if (bytes == 0) return 0;
    CUDA_TRY(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, d->stream));
    return 0;
}

// Block l. Its input is *na + *nb (nb NULL: *na alone, already in res[l]): the residual add that
// precedes each norm is fused into it, so res[l] is stored by this block's first norm. On return
// *na + *nb is the block's output res[l+1] (resmid + down-proj), which the next norm stores, or
// forward_trunk when the trunk stops after this block.
static int block_forward(LlamaCuda *d, int l, const void **na, const void **nb, Err *e) {
    const ModelConfig *c = &d->cfg;
    DeviceActs *a = &d->a;
    const int H = c->num_attention_heads, KV = c->num_key_value_heads;
    const int hd = c->head_dim, D = c->hidden_size, F = c->intermediate_size;
    const int Q = H * hd, KVD = KV * hd, S = d->n_samples;
    const size_t N = d->n_tokens;
    const LetheDtype dt = d->dtype;
    cudaStream_t st = d->stream;
    void *tmp = a->dres; // (N, D): the o and down projections' output
    const LayerOffsets *o = &d->layers[l];
    LayerActs *la = &a->layer[l];
    CUDA_TRY(e, cuda_rmsnorm_forward(la->ln1, la->rstd1, a->res[l], *na, *nb,
                                     weight_at(d, o->ln1), N, D, c->rms_norm_eps, dt, st));
    CUDA_TRY(e, cuda_matmul_forward(la->q, la->ln1, weight_at(d, o->wq), opt_weight_at(d, o->bq),
                                    N, D, Q, dt, d->cublas, st));
    CUDA_TRY(e, cuda_matmul_forward(la->k, la->ln1, weight_at(d, o->wk), opt_weight_at(d, o->bk),
                                    N, D, KVD, dt, d->cublas, st));
    CUDA_TRY(e, cuda_matmul_forward(la->v, la->ln1, weight_at(d, o->wv), opt_weight_at(d, o->bv),
                                    N, D, KVD, dt, d->cublas, st));
    CUDA_TRY(e, cuda_rope_forward(la->q, a->offsets, S, N, H, hd, c->rope_theta, dt, st));
    CUDA_TRY(e, cuda_rope_forward(la->k, a->offsets, S, N, KV, hd, c->rope_theta, dt, st));
    CUDA_TRY(e, cuda_attention_forward(la->att, la->lse, la->q, la->k, la->v, a->offsets, S, N, H,
                                       KV, hd, dt, st));
    CUDA_TRY(e, cuda_matmul_forward(tmp, la->att, weight_at(d, o->wo), NULL, N, Q, D, dt,
                                    d->cublas, st));
    // resmid = res[l] + o-proj, ln2 = norm(resmid)
    CUDA_TRY(e, cuda_rmsnorm_forward(la->ln2, la->rstd2, la->resmid, a->res[l], tmp,
                                     weight_at(d, o->ln2), N, D, c->rms_norm_eps, dt, st));
    CUDA_TRY(e, cuda_matmul_forward(la->gate, la->ln2, weight_at(d, o->wgate), NULL, N, D, F, dt,
                                    d->cublas, st));
    CUDA_TRY(e, cuda_matmul_forward(la->up, la->ln2, weight_at(d, o->wup), NULL, N, D, F, dt,
                                    d->cublas, st));
    CUDA_TRY(e, cuda_swiglu_forward(la->hmul, la->gate, la->up, N * (size_t)F, dt, st));
    CUDA_TRY(e, cuda_matmul_forward(tmp, la->hmul, weight_at(d, o->wdown), NULL, N, F, D, dt,
                                    d->cublas, st));
    *na = la->resmid;
    *nb = tmp;
    return 0;
}

// Embedding and blocks, then the targets' rows into a->xt, as forward_trunk in host/llama.c.
// hidden < 0: every block, the final norm, and the rows that predict a target. hidden >= 0:
// blocks 0..hidden, res[hidden+1] materialised (no norm follows to store it), and its rows at the
// target tokens' own positions.
static int forward_trunk(LlamaCuda *d, int hidden, Err *e) {
    const ModelConfig *c = &d->cfg;
    DeviceActs *a = &d->a;
    const int L = c->num_hidden_layers, D = c->hidden_size;
    const size_t N = d->n_tokens;
    const LetheDtype dt = d->dtype;
    cudaStream_t st = d->stream;

    CUDA_TRY(e, cuda_embedding_forward(a->res[0], a->tokens, weight_at(d, d->embed), N, D, dt, st));
    const void *na = a->res[0], *nb = NULL;
    const int n_blocks = hidden < 0 ? L : hidden + 1;
    for (int l = 0; l < n_blocks; l++)
        if (block_forward(d, l, &na, &nb, e)) return -1;
    if (hidden < 0) {
        CUDA_TRY(e, cuda_rmsnorm_forward(a->lnf, a->rstdf, a->res[L], na, nb,
                                         weight_at(d, d->norm), N, D, c->rms_norm_eps, dt, st));
        // The embedding kernel is a row gather: xt[j] = lnf[tpos[j]].
        CUDA_TRY(e, cuda_embedding_forward(a->xt, a->tpos, a->lnf, d->n_targets, D, dt, st));
    } else {
        void *h = a->res[hidden + 1];
        CUDA_TRY(e, cuda_residual_forward(h, na, nb, N * (size_t)D, dt, st));
        // xt[j] = h[tpos[j] + 1]: the same gather from h shifted by one row.
        CUDA_TRY(e, cuda_embedding_forward(a->xt, a->tpos, (const char *)h + (size_t)D * d->es,
                                           d->n_targets, D, dt, st));
    }
    return 0;
}

// Checks and uploads a batch, lists its targets (host/llama.c's order: position t predicts token
// t+1 of its sample) and runs the trunk (forward_trunk's `hidden`): the target rows are in a->xt.
static int forward_rows(LlamaCuda *d, const Batch *b, int hidden, Err *e) {
    d->have_forward = d->have_rows = 0;
    d->soft = 0;
    d->soft_ref = NULL;
    d->hidden_layer = -1;
    if (check_batch(&d->cfg, b, e)) return -1;
    const size_t N = b->n_tokens;
    if (acts_reserve(d, N, b->n_samples, e)) return -1;
    DeviceActs *a = &d->a;
    size_t M = 0;
    for (int s = 0; s < b->n_samples; s++) {
        const int64_t end = b->offsets[s + 1];
        for (int64_t t = b->offsets[s]; t < end; t++) {
            d->h_scatter[t] = -1;
            if (t + 1 >= end || (b->loss_mask && !b->loss_mask[t + 1])) continue;
            d->h_targets[M] = b->tokens[t + 1];
            d->h_tsample[M] = s;
            d->h_tpos[M] = (int32_t)t;
            d->h_scatter[t] = (int32_t)M;
            M++;
        }
    }
    for (size_t t = 0; t < N; t++)
        if (d->h_scatter[t] < 0) d->h_scatter[t] = (int32_t)M; // dxt's zero row
    d->n_tokens = N;
    d->n_targets = M;
    d->n_samples = b->n_samples;
    if (upload(d, a->tokens, b->tokens, N * sizeof(int32_t), e) ||
        upload(d, a->offsets, b->offsets, ((size_t)b->n_samples + 1) * sizeof(int64_t), e) ||
        upload(d, a->targets, d->h_targets, M * sizeof(int32_t), e) ||
        upload(d, a->tpos, d->h_tpos, M * sizeof(int32_t), e) ||
        upload(d, a->scatter, d->h_scatter, N * sizeof(int32_t), e))
        return -1;
    timing_start(TIMER_FORWARD);
    const int trunk = forward_trunk(d, hidden, e) || timing_sync(d, e);
    timing_stop(TIMER_FORWARD);
    if (trunk) return -1;
    d->have_rows = hidden < 0;
    d->hidden_layer = hidden;
    return 0;
}

// Downloads the per-target log-probs (and a soft head's losses) and sums the head's values per
// sample, in target order and in double, as host/llama.c.
static int finish_head(LlamaCuda *d, double *sums, int *counts, Err *e) {
    const size_t M = d->n_targets;
    if (M > 0)
        CUDA_TRY(e, cudaMemcpyAsync(d->h_logprob, d->a.logprob, M * sizeof(float),
                                    cudaMemcpyDeviceToHost, d->stream));
    if (M > 0 && d->soft)
        CUDA_TRY(e, cudaMemcpyAsync(d->h_soft_loss, d->a.soft_loss, M * sizeof(float),
                                    cudaMemcpyDeviceToHost, d->stream));
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    llama_sum_per_sample(d->h_tsample, d->soft ? d->h_soft_loss : d->h_logprob, M, d->n_samples,
                         sums, counts);
    d->have_forward = 1;
    return 0;
}

// The log-prob head over the target rows: logprob and lse per target.
static int logprob_head(LlamaCuda *d, Err *e) {
    DeviceActs *a = &d->a;
    if (d->n_targets > 0)
        CUDA_TRY(e, cuda_classifier_forward(a->logprob, a->lse, a->cls_scratch,
                                            a->cls_scratch_bytes, a->xt,
                                            weight_at(d, d->lm_head), a->targets, d->n_targets,
                                            d->cfg.hidden_size, d->cfg.vocab_size, d->dtype,
                                            d->cublas, d->stream));
    return 0;
}

int llama_cuda_forward(LlamaCuda *d, const Batch *b, double *sum_logprob, int *n_targets,
                       Err *e) {
    if (forward_rows(d, b, -1, e)) return -1;
    timing_start(TIMER_CLASSIFIER_FORWARD);
    const int rc = logprob_head(d, e) || finish_head(d, sum_logprob, n_targets, e);
    timing_stop(TIMER_CLASSIFIER_FORWARD);
    return rc ? -1 : 0;
}

int llama_cuda_forward_rows(LlamaCuda *d, const Batch *b, Err *e) {
    if (forward_rows(d, b, -1, e)) return -1;
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    return 0;
}

// The soft target of the last forward_soft, with device pointers.
static SoftTarget soft_target_of(const LlamaCuda *d, const SoftSpec *spec, const LlamaCuda *ref) {
    SoftTarget q = {NULL, NULL, d->a.targets, spec->target_shift, spec->cross_entropy};
    if (ref) {
        q.xref = ref->a.xt;
        q.wref = weight_at(ref, ref->lm_head);
    }
    return q;
}

int llama_cuda_forward_soft(LlamaCuda *d, const Batch *b, const SoftSpec *spec,
                            const LlamaCuda *ref, double *loss_sum, int *n_targets, Err *e) {
    if (spec->from_reference != (ref != NULL))
        return err_set(e, "llama_cuda_forward_soft: a reference source needs the reference "
                          "model, and only it");
    if (ref && (ref->dtype != d->dtype || ref->cfg.vocab_size != d->cfg.vocab_size ||
                ref->cfg.hidden_size != d->cfg.hidden_size))
        return err_set(e, "llama_cuda_forward_soft: the reference model differs in dtype or "
                          "shape");
    if (forward_rows(d, b, -1, e)) return -1;
    if (ref && (!ref->have_rows || ref->n_targets != d->n_targets))
        return err_set(e, "the reference forward does not match this batch (%zu vs %zu targets)",
                       ref->have_rows ? ref->n_targets : 0, d->n_targets);
    DeviceActs *a = &d->a;
    const int D = d->cfg.hidden_size, V = d->cfg.vocab_size;
    d->soft = 1;
    d->soft_ref = ref;
    d->soft_target = soft_target_of(d, spec, ref);
    if (spec->shift_mask && d->n_targets > 0) {
        for (size_t j = 0; j < d->n_targets; j++)
            d->h_qtargets[j] = spec->shift_mask[d->h_tpos[j] + 1] ? d->h_targets[j] : -1;
        if (upload(d, a->qtargets, d->h_qtargets, d->n_targets * sizeof(int32_t), e)) return -1;
        d->soft_target.targets = a->qtargets;
    }
    if (d->n_targets > 0)
        CUDA_TRY(e, cuda_classifier_soft_forward(a->soft_loss, a->lse, a->soft_gap, a->logprob,
                                                 a->cls_scratch, a->cls_scratch_bytes, a->xt,
                                                 weight_at(d, d->lm_head), &d->soft_target,
                                                 d->n_targets, D, V, d->dtype, d->cublas,
                                                 d->stream));
    return finish_head(d, loss_sum, n_targets, e);
}

int llama_cuda_forward_hidden(LlamaCuda *d, const Batch *b, int layer, Err *e) {
    const int L = d->cfg.num_hidden_layers;
    if (layer < 0 || layer >= L)
        return err_set(e, "llama_cuda_forward_hidden: layer %d is not a block of this model (0 "
                          "to %d)", layer, L - 1);
    if (forward_rows(d, b, layer, e)) return -1;
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    return 0;
}

const void *llama_cuda_hidden_rows(const LlamaCuda *d) {
    return d->hidden_layer >= 0 ? d->a.xt : NULL;
}

void *llama_cuda_hidden_grad_buffer(LlamaCuda *d) {
    return d->hidden_layer >= 0 && !d->frozen ? d->a.dxt : NULL;
}

int llama_cuda_target_stats(LlamaCuda *d, uint8_t *is_argmax, float *mu, float *var, Err *e) {
    if (!d->have_forward || d->soft)
        return err_set(e, "llama_cuda_target_stats: no llama_cuda_forward to take them from");
    const size_t M = d->n_targets;
    if (M == 0) return 0;
    DeviceActs *a = &d->a;
    CUDA_TRY(e, cuda_classifier_stats(a->is_argmax, a->mu, a->var, a->cls_scratch,
                                      a->cls_scratch_bytes, a->xt, weight_at(d, d->lm_head),
                                      a->targets, a->lse, M, d->cfg.hidden_size,
                                      d->cfg.vocab_size, d->dtype, d->cublas, d->stream));
    CUDA_TRY(e, cudaMemcpyAsync(is_argmax, a->is_argmax, M, cudaMemcpyDeviceToHost, d->stream));
    CUDA_TRY(e, cudaMemcpyAsync(mu, a->mu, M * sizeof(float), cudaMemcpyDeviceToHost, d->stream));
    CUDA_TRY(e, cudaMemcpyAsync(var, a->var, M * sizeof(float), cudaMemcpyDeviceToHost,
                                d->stream));
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    return 0;
}

size_t llama_cuda_n_targets(const LlamaCuda *d) {
    return d->have_forward || d->hidden_layer >= 0 ? d->n_targets : 0;
}
const int32_t *llama_cuda_target_sample(const LlamaCuda *d) { return d->h_tsample; }
const float *llama_cuda_target_logprob(const LlamaCuda *d) { return d->h_logprob; }
const float *llama_cuda_target_loss(const LlamaCuda *d) { return d->h_soft_loss; }

// ---- backward --------------------------------------------------------------------------------

static int zero(LlamaCuda *d, void *p, size_t bytes, Err *e) {
    CUDA_TRY(e, cudaMemsetAsync(p, 0, bytes, d->stream));
    return 0;
}

// Backward through block l: a->dres holds dLoss/dres[l+1] on entry and dLoss/dres[l] on exit;
// the block's parameter gradients are added into the device grads.
static int block_backward(LlamaCuda *d, int l, Err *e) {
    const ModelConfig *c = &d->cfg;
    DeviceActs *a = &d->a;
    const int H = c->num_attention_heads, KV = c->num_key_value_heads;
    const int hd = c->head_dim, D = c->hidden_size, F = c->intermediate_size;
    const int Q = H * hd, KVD = KV * hd, S = d->n_samples;
    const size_t N = d->n_tokens, es = d->es;
    const LetheDtype dt = d->dtype;
    cudaStream_t st = d->stream;
    void *cb = d->cublas;
    float *g = d->grads;
    const LayerOffsets *o = &d->layers[l];
    LayerActs *la = &a->layer[l];
    // MLP branch: res[l+1] = resmid + down(silu(gate(ln2)) * up(ln2))
    if (zero(d, a->dh, N * (size_t)F * es, e)) return -1;
    CUDA_TRY(e, cuda_matmul_backward(a->dh, g + o->wdown, NULL, a->dres, la->hmul,
                                     weight_at(d, o->wdown), N, F, D, dt, cb, st));
    if (zero(d, a->dgate, N * (size_t)F * es, e) || zero(d, a->dup, N * (size_t)F * es, e))
        return -1;
    CUDA_TRY(e, cuda_swiglu_backward(a->dgate, a->dup, a->dh, la->gate, la->up,
                                     N * (size_t)F, dt, st));
    if (zero(d, a->dln, N * (size_t)D * es, e)) return -1;
    CUDA_TRY(e, cuda_matmul_backward(a->dln, g + o->wgate, NULL, a->dgate, la->ln2,
                                     weight_at(d, o->wgate), N, D, F, dt, cb, st));
    CUDA_TRY(e, cuda_matmul_backward(a->dln, g + o->wup, NULL, a->dup, la->ln2,
                                     weight_at(d, o->wup), N, D, F, dt, cb, st));
    CUDA_TRY(e, cuda_rmsnorm_backward(a->dres, g + o->ln2, a->rms_scratch, a->dln,
                                      la->resmid, weight_at(d, o->ln2), la->rstd2, N, D, dt,
                                      st));
    // Attention branch: resmid = res[l] + o(attn(rope(q), rope(k), v))
    if (zero(d, a->datt, N * (size_t)Q * es, e)) return -1;
    CUDA_TRY(e, cuda_matmul_backward(a->datt, g + o->wo, NULL, a->dres, la->att,
                                     weight_at(d, o->wo), N, Q, D, dt, cb, st));
    if (zero(d, a->dq, N * (size_t)Q * es, e) || zero(d, a->dk, N * (size_t)KVD * es, e) ||
        zero(d, a->dv, N * (size_t)KVD * es, e))
        return -1;
    CUDA_TRY(e, cuda_attention_backward(a->dq, a->dk, a->dv, a->datt, la->att, la->lse,
                                        la->q, la->k, la->v, a->offsets, S, N, H, KV, hd, dt,
                                        st));
    CUDA_TRY(e, cuda_rope_backward(a->dq, a->offsets, S, N, H, hd, c->rope_theta, dt, st));
    CUDA_TRY(e, cuda_rope_backward(a->dk, a->offsets, S, N, KV, hd, c->rope_theta, dt, st));
    if (zero(d, a->dln, N * (size_t)D * es, e)) return -1;
    CUDA_TRY(e, cuda_matmul_backward(a->dln, g + o->wq, opt_grad_at(d, o->bq), a->dq, la->ln1,
                                     weight_at(d, o->wq), N, D, Q, dt, cb, st));
    CUDA_TRY(e, cuda_matmul_backward(a->dln, g + o->wk, opt_grad_at(d, o->bk), a->dk, la->ln1,
                                     weight_at(d, o->wk), N, D, KVD, dt, cb, st));
    CUDA_TRY(e, cuda_matmul_backward(a->dln, g + o->wv, opt_grad_at(d, o->bv), a->dv, la->ln1,
                                     weight_at(d, o->wv), N, D, KVD, dt, cb, st));
    CUDA_TRY(e, cuda_rmsnorm_backward(a->dres, g + o->ln1, a->rms_scratch, a->dln, a->res[l],
                                      weight_at(d, o->ln1), la->rstd1, N, D, dt, st));
    return 0;
}

int llama_cuda_backward(LlamaCuda *d, const float *weight, Err *e) {
    if (!d->have_forward) return err_set(e, "llama_cuda_backward: no forward to go back through");
    if (d->frozen) return err_set(e, "llama_cuda_backward: the model is frozen (no gradients)");
    const ModelConfig *c = &d->cfg;
    DeviceActs *a = &d->a;
    const int L = c->num_hidden_layers, D = c->hidden_size, V = c->vocab_size;
    const size_t N = d->n_tokens, M = d->n_targets, es = d->es;
    const LetheDtype dt = d->dtype;
    cudaStream_t st = d->stream;
    void *cb = d->cublas;
    float *g = d->grads;

    // Classifier into the target rows, then every position's row of dln: the target's row of
    // dxt, or its zero row M (the embedding kernel as a gather again: one launch, no scatter).
    // (On an error the run ends; the timers are not stopped.)
    timing_start(TIMER_CLASSIFIER_BACKWARD);
    if (zero(d, a->dxt, (M + 1) * (size_t)D * es, e)) return -1;
    if (M > 0) {
        if (upload(d, a->weight, weight, M * sizeof(float), e)) return -1;
        if (d->soft)
            CUDA_TRY(e, cuda_classifier_soft_backward(a->dxt, g + d->lm_head, a->cls_scratch,
                                                      a->cls_scratch_bytes, a->xt,
                                                      weight_at(d, d->lm_head), &d->soft_target,
                                                      a->lse, a->soft_gap, a->weight, M, D, V,
                                                      dt, cb, st));
        else
            CUDA_TRY(e, cuda_classifier_backward(a->dxt, g + d->lm_head, a->cls_scratch,
                                                 a->cls_scratch_bytes, a->xt,
                                                 weight_at(d, d->lm_head), a->targets, a->lse,
                                                 a->weight, M, D, V, dt, cb, st));
    }
    CUDA_TRY(e, cuda_embedding_forward(a->dln, a->scatter, a->dxt, N, D, dt, st));
    if (timing_sync(d, e)) return -1;
    timing_stop(TIMER_CLASSIFIER_BACKWARD);
    timing_start(TIMER_BACKWARD);
    if (zero(d, a->dres, N * (size_t)D * es, e)) return -1;
    CUDA_TRY(e, cuda_rmsnorm_backward(a->dres, g + d->norm, a->rms_scratch, a->dln, a->res[L],
                                      weight_at(d, d->norm), a->rstdf, N, D, dt, st));

    for (int l = L - 1; l >= 0; l--)
        if (block_backward(d, l, e)) return -1;
    // Tied head: the classifier's dw above went to the same rows, as on the CPU.
    CUDA_TRY(e, cuda_embedding_backward(g + d->embed, a->emb_scratch, a->dres, a->tokens, N, D, V,
                                        dt, st));
    CUDA_TRY(e, cudaStreamSynchronize(st));
    timing_stop(TIMER_BACKWARD);
    return 0;
}

int llama_cuda_backward_hidden(LlamaCuda *d, const void *dh, int lowest_layer, Err *e) {
    const int layer = d->hidden_layer;
    if (layer < 0)
        return err_set(e, "llama_cuda_backward_hidden: no llama_cuda_forward_hidden to go back "
                          "through");
    if (d->frozen)
        return err_set(e, "llama_cuda_backward_hidden: the model is frozen (no gradients)");
    DeviceActs *a = &d->a;
    const int D = d->cfg.hidden_size, V = d->cfg.vocab_size;
    const size_t N = d->n_tokens, M = d->n_targets, es = d->es, row = (size_t)D * es;
    const LetheDtype dt = d->dtype;
    cudaStream_t st = d->stream;
    if (M > 0 && !dh) return err_set(e, "llama_cuda_backward_hidden: no dh rows");
    timing_start(TIMER_BACKWARD);
    // dLoss/dres[layer+1]: target j's row at its token's position tpos[j] + 1, zero elsewhere.
    // dh goes to dxt (unless the caller wrote it there), whose row M is zero; then, as in
    // llama_cuda_backward, scatter[t] (target j where tpos[j] = t, else M) gathers the rows, here
    // one row down: dres[t + 1] = dxt[scatter[t]]. Row 0 is no target token's position.
    if (M > 0 && dh != a->dxt)
        CUDA_TRY(e, cudaMemcpyAsync(a->dxt, dh, M * row, cudaMemcpyDeviceToDevice, st));
    if (zero(d, (char *)a->dxt + M * row, row, e) || zero(d, a->dres, row, e)) return -1;
    CUDA_TRY(e, cuda_embedding_forward((char *)a->dres + row, a->scatter, a->dxt, N - 1, D, dt,
                                       st));
    const int lowest = lowest_layer < 0 ? 0 : lowest_layer;
    for (int l = layer; l >= lowest; l--)
        if (block_backward(d, l, e)) return -1;
    if (lowest == 0)
        CUDA_TRY(e, cuda_embedding_backward(d->grads + d->embed, a->emb_scratch, a->dres,
                                            a->tokens, N, D, V, dt, st));
    CUDA_TRY(e, cudaStreamSynchronize(st));
    timing_stop(TIMER_BACKWARD);
    return 0;
}

// ---- parameters and gradients ----------------------------------------------------------------

int llama_cuda_zero_grads(LlamaCuda *d, Err *e) {
    if (d->frozen) return 0;
    CUDA_TRY(e, cudaMemsetAsync(d->grads, 0, d->n_params * sizeof(float), d->stream));
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    return 0;
}

static int download(const LlamaCuda *d, void *dst, const void *src, size_t bytes, Err *e) {
    CUDA_TRY(e, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, d->stream));
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    return 0;
}

int llama_cuda_download_grads(const LlamaCuda *d, float *grads, Err *e) {
    if (d->frozen) return err_set(e, "llama_cuda_download_grads: the model is frozen");
    return download(d, grads, d->grads, d->n_params * sizeof(float), e);
}

int llama_cuda_upload_params(LlamaCuda *d, const float *params, Err *e) {
    return upload_params(d, params, e);
}

int llama_cuda_download_params(const LlamaCuda *d, float *params, Err *e) {
    if (!d->params) return err_set(e, "llama_cuda_download_params: a frozen bfloat16 model keeps "
                                      "no float32 weights");
    return download(d, params, d->params, d->n_params * sizeof(float), e);
}

LlamaCudaBuffers llama_cuda_buffers(const LlamaCuda *d) {
    return (LlamaCudaBuffers){d->n_params, d->dtype, d->params, d->params16, d->grads,
                              d->stream, d->cublas};
}

// ---- decoding over device KV caches ------------------------------------------------------------

// Lays out (or, with base NULL, sizes) the decoding buffers.
static size_t carve_decode(DecodeBuffers *b, const ModelConfig *c, int n_slots, int capacity,
                           int rows, LetheDtype dtype, char *base) {
    const size_t es = dtype == LETHE_F32 ? sizeof(float) : sizeof(uint16_t);
    const size_t D = c->hidden_size, F = c->intermediate_size, R = (size_t)rows;
    const size_t Q = (size_t)c->num_attention_heads * c->head_dim;
    const size_t KVD = (size_t)c->num_key_value_heads * c->head_dim;
    const size_t cache = (size_t)c->num_hidden_layers * n_slots * (size_t)capacity * KVD * es;
    Carver cv = {base, 0};
#define CARVE(ptr, bytes)                    \
    do {                                     \
        void *carved_ = carve(&cv, (bytes)); \
        if (cv.base) (ptr) = carved_;        \
    } while (0)
    CARVE(b->kcache, cache);
    CARVE(b->vcache, cache);
    CARVE(b->r0, R * D * es);
    CARVE(b->rmid, R * D * es);
    CARVE(b->ln, R * D * es);
    CARVE(b->tmp, R * D * es);
    CARVE(b->lnf, R * D * es);
    CARVE(b->q, R * Q * es);
    CARVE(b->att, R * Q * es);
    CARVE(b->k, R * KVD * es);
    CARVE(b->v, R * KVD * es);
    CARVE(b->gate, R * F * es);
    CARVE(b->up, R * F * es);
    CARVE(b->hmul, R * F * es);
    CARVE(b->rstd, R * sizeof(float));
    CARVE(b->logits, R * (size_t)c->vocab_size * sizeof(float));
    CARVE(b->tokens, R * sizeof(int32_t));
    CARVE(b->pos, R * sizeof(int32_t));
    CARVE(b->len, R * sizeof(int32_t));
    CARVE(b->want, R * sizeof(int32_t));
    CARVE(b->dst_row, R * sizeof(int64_t));
    CARVE(b->start_row, R * sizeof(int64_t));
#undef CARVE
    return cv.at;
}

int llama_cuda_decode_reserve(LlamaCuda *d, int n_slots, int capacity, int max_rows, Err *e) {
    DecodeBuffers *b = &d->dec;
    if (n_slots < 1 || capacity < 1 || max_rows < 1 ||
        capacity > d->cfg.max_position_embeddings)
        return err_set(e, "llama_cuda_decode_reserve: %d slots of %d positions, %d rows", n_slots,
                       capacity, max_rows);
    if (b->base && n_slots <= b->n_slots && capacity <= b->capacity && max_rows <= b->max_rows)
        return 0;
    CUDA_TRY(e, cudaStreamSynchronize(d->stream));
    decode_release(b);
    const size_t bytes = carve_decode(b, &d->cfg, n_slots, capacity, max_rows, d->dtype, NULL);
    char what[192];
    snprintf(what, sizeof what, "the %s KV caches of %d sequences of %d positions", 
             dtype_label(d->dtype), n_slots, capacity);
    const char *hint = "decode fewer sequences together (generation.batch) or fewer new tokens";
    if (check_fits(d, bytes, what, hint, e) || device_alloc(d, &b->base, bytes, what, hint, e))
        return -1;
    carve_decode(b, &d->cfg, n_slots, capacity, max_rows, d->dtype, b->base);
    b->h_len = malloc((size_t)max_rows * sizeof *b->h_len);
    b->h_want = malloc((size_t)max_rows * sizeof *b->h_want);
    b->h_dst_row = malloc((size_t)max_rows * sizeof *b->h_dst_row);
    b->h_start_row = malloc((size_t)max_rows * sizeof *b->h_start_row);
    if (!b->h_len || !b->h_want || !b->h_dst_row || !b->h_start_row) {
        decode_release(b);
        return err_set(e, "out of host memory for %d decoding rows", max_rows);
    }
    b->n_slots = n_slots;
    b->capacity = capacity;
    b->max_rows = max_rows;
    return 0;
}

int llama_cuda_decode(LlamaCuda *d, const int32_t *slot, const int32_t *pos, const int32_t *tokens,
                      const uint8_t *want, int n, float *logits, Err *e) {
    DecodeBuffers *b = &d->dec;
    const ModelConfig *c = &d->cfg;
    if (!b->base) return err_set(e, "llama_cuda_decode: no llama_cuda_decode_reserve");
    if (n < 1 || n > b->max_rows)
        return err_set(e, "a decoding step of %d rows; the buffers hold 1 to %d", n, b->max_rows);
    int M = 0;
    for (int r = 0; r < n; r++) {
        if (tokens[r] < 0 || tokens[r] >= c->vocab_size)
            return err_set(e, "row %d: token id %d is not below vocab_size %d", r, tokens[r],
                           c->vocab_size);
        if (slot[r] < 0 || slot[r] >= b->n_slots || pos[r] < 0 || pos[r] >= b->capacity)
            return err_set(e, "row %d: slot %d position %d outside the %d caches of %d positions",
                           r, slot[r], pos[r], b->n_slots, b->capacity);
        b->h_start_row[r] = (int64_t)slot[r] * b->capacity;
        b->h_dst_row[r] = b->h_start_row[r] + pos[r];
        b->h_len[r] = pos[r] + 1;
        if (!want || want[r]) b->h_want[M++] = r;
    }
    const int L = c->num_hidden_layers, H = c->num_attention_heads, KV = c->num_key_value_heads;
    const int hd = c->head_dim, D = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    const int Q = H * hd, KVD = KV * hd;
    const size_t N = (size_t)n, es = d->es;
    const size_t layer_cache = (size_t)b->n_slots * b->capacity * KVD * es;
    const LetheDtype dt = d->dtype;
    cudaStream_t st = d->stream;
    if (upload(d, b->tokens, tokens, N * sizeof(int32_t), e) ||
        upload(d, b->pos, pos, N * sizeof(int32_t), e) ||
        upload(d, b->len, b->h_len, N * sizeof(int32_t), e) ||
        upload(d, b->want, b->h_want, (size_t)M * sizeof(int32_t), e) ||
        upload(d, b->dst_row, b->h_dst_row, N * sizeof(int64_t), e) ||
        upload(d, b->start_row, b->h_start_row, N * sizeof(int64_t), e))
        return -1;

    // As forward_trunk, row by row over the caches: every row's K/V goes into its cache before
    // the attention, so a prompt's rows (consecutive positions of one slot) see each other.
    CUDA_TRY(e, cuda_embedding_forward(b->r0, b->tokens, weight_at(d, d->embed), N, D, dt, st));
    const void *na = b->r0, *nb = NULL;
    for (int l = 0; l < L; l++) {
        const LayerOffsets *o = &d->layers[l];
        char *kc = (char *)b->kcache + (size_t)l * layer_cache;
        char *vc = (char *)b->vcache + (size_t)l * layer_cache;
        CUDA_TRY(e, cuda_rmsnorm_forward(b->ln, b->rstd, b->r0, na, nb, weight_at(d, o->ln1), N,
                                         D, c->rms_norm_eps, dt, st));
        CUDA_TRY(e, cuda_matmul_forward(b->q, b->ln, weight_at(d, o->wq), opt_weight_at(d, o->bq),
                                        N, D, Q, dt, d->cublas, st));
        CUDA_TRY(e, cuda_matmul_forward(b->k, b->ln, weight_at(d, o->wk), opt_weight_at(d, o->bk),
                                        N, D, KVD, dt, d->cublas, st));
        CUDA_TRY(e, cuda_matmul_forward(b->v, b->ln, weight_at(d, o->wv), opt_weight_at(d, o->bv),
                                        N, D, KVD, dt, d->cublas, st));
        CUDA_TRY(e, cuda_rope_forward_at(b->q, b->pos, N, H, hd, c->rope_theta, dt, st));
        CUDA_TRY(e, cuda_rope_forward_at(b->k, b->pos, N, KV, hd, c->rope_theta, dt, st));
        CUDA_TRY(e, cuda_rows_scatter(kc, b->dst_row, b->k, N, KVD, dt, st));
        CUDA_TRY(e, cuda_rows_scatter(vc, b->dst_row, b->v, N, KVD, dt, st));
        CUDA_TRY(e, cuda_attention_decode(b->att, b->q, kc, vc, b->start_row, b->len, N, H, KV,
                                          hd, dt, st));
        CUDA_TRY(e, cuda_matmul_forward(b->tmp, b->att, weight_at(d, o->wo), NULL, N, Q, D, dt,
                                        d->cublas, st));
        CUDA_TRY(e, cuda_rmsnorm_forward(b->ln, b->rstd, b->rmid, b->r0, b->tmp,
                                         weight_at(d, o->ln2), N, D, c->rms_norm_eps, dt, st));
        CUDA_TRY(e, cuda_matmul_forward(b->gate, b->ln, weight_at(d, o->wgate), NULL, N, D, F, dt,
                                        d->cublas, st));
        CUDA_TRY(e, cuda_matmul_forward(b->up, b->ln, weight_at(d, o->wup), NULL, N, D, F, dt,
                                        d->cublas, st));
        CUDA_TRY(e, cuda_swiglu_forward(b->hmul, b->gate, b->up, N * (size_t)F, dt, st));
        CUDA_TRY(e, cuda_matmul_forward(b->tmp, b->hmul, weight_at(d, o->wdown), NULL, N, F, D,
                                        dt, d->cublas, st));
        na = b->rmid; // the next norm's input: rmid + down-proj
        nb = b->tmp;
    }
    // The head on the wanted rows only, with float32 logits for the sampler.
    CUDA_TRY(e, cuda_rmsnorm_forward(b->lnf, b->rstd, b->r0, na, nb, weight_at(d, d->norm), N, D,
                                     c->rms_norm_eps, dt, st));
    if (M > 0) {
        CUDA_TRY(e, cuda_embedding_forward(b->ln, b->want, b->lnf, (size_t)M, D, dt, st));
        CUDA_TRY(e, cuda_matmul_forward_f32out(b->logits, b->ln, weight_at(d, d->lm_head),
                                               (size_t)M, D, V, dt, d->cublas, st));
        CUDA_TRY(e, cudaMemcpyAsync(logits, b->logits, (size_t)M * V * sizeof(float),
                                    cudaMemcpyDeviceToHost, st));
    }
    CUDA_TRY(e, cudaStreamSynchronize(st));
    return 0;
}
