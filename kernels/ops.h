// The compute ops of the Llama model, declared once; kernels/cpu/*.c implement them in fp32.
// Every op knows nothing of files, configs or ranks: plain pointers, sizes and scalars.
#ifndef LETHE_OPS_H
#define LETHE_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Conventions
// - Activations are row-major [N, C]: N = tokens of a packed batch (samples laid end to end),
//   C = channels. Weights are [out, in] like torch.nn.Linear.weight.
// - Backward functions ACCUMULATE (+=) into every gradient they write (dinp, dweight, dbias),
//   so residual branches and tied weights add up without extra copies. Callers zero first.
// - No float atomics and a fixed reduction order: same inputs give identical bits.

// Packed batch of variable-length samples: sample s owns tokens [offsets[s], offsets[s+1]).
// Attention never crosses a sample boundary; positions restart at 0 in every sample.
typedef struct {
    int n_samples;
    const int64_t *offsets; // (n_samples + 1)
} SampleLayout;

// ---- embedding -------------------------------------------------------------------------
// out[n, :] = wte[tokens[n], :]                                    out (N, D), wte (V, D)
void embedding_forward(float *out, const int32_t *tokens, const float *wte, size_t N, int D);
// dwte[tokens[n], :] += dout[n, :], in token order (deterministic)
void embedding_backward(float *dwte, const float *dout, const int32_t *tokens, size_t N, int D);

// ---- RMSNorm (HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w) ----------------------------
// out (N, D), rstd (N) saved for backward
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, size_t N, int D,
                     float eps);
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, size_t N, int D);

// ---- matmul: out = inp @ w^T + bias ------------------------------------------------------
// out (N, OC), inp (N, C), w (OC, C), bias (OC) or NULL.  OpenBLAS sgemm.
void matmul_forward(float *out, const float *inp, const float *w, const float *bias, size_t N,
                    int C, int OC);
// dinp (N, C) += dout @ w; dw (OC, C) += dout^T @ inp; dbias (OC) += sum_n dout.
// Any of dinp, dw, dbias may be NULL (frozen or absent).
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, size_t N, int C, int OC);

// ---- RoPE, HF rotate-half convention -------------------------------------------------------
// x (N, n_heads, hd) rotated in place. For i < hd/2 with inv_freq_i = theta^(-2i/hd) and
// angle = pos * inv_freq_i (pos restarts per sample):
//   x'[i]        = x[i] cos - x[i + hd/2] sin
//   x'[i + hd/2] = x[i + hd/2] cos + x[i] sin
void rope_forward(float *x, const SampleLayout *layout, int n_heads, int hd, float theta);
// The inverse rotation applied to the gradient, in place (dx = R^T dout).
void rope_backward(float *dx, const SampleLayout *layout, int n_heads, int hd, float theta);

// ---- causal grouped-query attention (flash-attention style) -------------------------------
// q (N, H, hd), k and v (N, KV, hd); query head h reads KV head h / (H / KV); within each sample
// only. out (N, H, hd). lse (N, H): the log-sum-exp of each query row's scaled scores
// (scale 1/sqrt(hd)), all the backward needs besides the inputs: no (T, T) tensor is stored.
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                       const SampleLayout *layout, int H, int KV, int hd);
// dq, dk, dv accumulate. dout and out (the forward's output) are (N, H, hd). The softmax is
// recomputed from q, k and lse.
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                        const float *lse, const float *q, const float *k, const float *v,
                        const SampleLayout *layout, int H, int KV, int hd);

// ---- SwiGLU: out = silu(gate) * up ------------------------------------------------------
void swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, size_t n);

// ---- residual: out = a + b (out may alias a) ---------------------------------------------
void residual_forward(float *out, const float *a, const float *b, size_t n);

// ---- fused classifier: LM head + log-softmax + target log-prob --------------------------
// For each of the M rows of x (M, D) (only rows that have a target; the host gathers them):
//   logits = x[m] @ w^T (V), lse[m] = logsumexp(logits), logprob[m] = logits[target[m]] - lse[m].
// Rows are processed in chunks so no (M, V) tensor exists; scratch holds one chunk's logits.
size_t classifier_scratch_size(size_t M, int V);
void classifier_forward(float *logprob, float *lse, float *scratch, const float *x,
                        const float *w, const int32_t *targets, size_t M, int D, int V);
// Weighted backward: dlogits[m] = weight[m] * (softmax(logits[m]) - onehot(target[m])), i.e.
// weight[m] = dLoss/dNLL_m. dx (M, D) += dlogits @ w;  dw (V, D) += dlogits^T @ x (dw may be NULL).
// Rows with weight 0 contribute nothing.
void classifier_backward(float *dx, float *dw, float *scratch, const float *x, const float *w,
                         const int32_t *targets, const float *lse, const float *weight, size_t M,
                         int D, int V);

// Per-row statistics of the same distribution p = softmax(x[m] @ w^T), for the evaluation:
// is_argmax[m] = 1 when target[m] is the most likely token (the lowest id on ties, as
// torch.argmax), mu[m] = sum_v p_v log p_v and var[m] = sum_v p_v (log p_v)^2 - mu[m]^2 (Min-K%++'s
// normalisers). lse from classifier_forward on the same rows. Chunked like the forward.
void classifier_stats(uint8_t *is_argmax, float *mu, float *var, float *scratch, const float *x,
                      const float *w, const int32_t *targets, const float *lse, size_t M, int D,
                      int V);

// ---- fused classifier with a soft target: KL(p_ref || p) per row ------------------------
// p = softmax(x[m] @ w^T), p_ref = softmax(xref[m] @ wref^T) (a frozen reference model's rows
// and head). kl[m] = sum_v p_ref (log p_ref - log p); lse[m] = logsumexp of x[m] @ w^T.
// Chunked like classifier_forward; scratch holds two chunks (current and reference logits).
size_t classifier_kl_scratch_size(size_t M, int V);
void classifier_kl_forward(float *kl, float *lse, float *scratch, const float *x, const float *w,
                           const float *xref, const float *wref, size_t M, int D, int V);
// dlogits[m] = weight[m] * (p - p_ref), i.e. weight[m] = dLoss/dKL_m.
// dx (M, D) += dlogits @ w;  dw (V, D) += dlogits^T @ x (dw may be NULL).
void classifier_kl_backward(float *dx, float *dw, float *scratch, const float *x, const float *w,
                            const float *xref, const float *wref, const float *lse,
                            const float *weight, size_t M, int D, int V);

// ---- single-position decoding over a KV cache (kernels/cpu/decode.c) -------------------
// RoPE of one token at absolute position pos, x (n_heads, hd); same rounding as rope_forward.
void rope_forward_at(float *x, int pos, int n_heads, int hd, float theta);
// One query position attending to T cached positions (causal by construction):
// q (H, hd), k and v (T, KV, hd), out (H, hd), scratch (T) floats.
void attention_decode(float *out, float *scratch, const float *q, const float *k, const float *v,
                      int T, int H, int KV, int hd);

// ==== CUDA twins (kernels/cuda/*.cu) ===========================================================
// Every op above has a CUDA twin behind an extern "C" launcher declared here: device pointers,
// the same sizes, and a stream. They are built twice: by nvcc for the GPU (sm_80/90/100), and by
// g++ against the CPU execution harness (tests/cuda_harness/), where the tests compare each with
// its CPU twin. Activations and weights are float32 or bfloat16 (LetheDtype); gradients of
// weights, statistics (rstd, lse) and optimizer state are float32. Launchers return 0, or a
// cudaError_t value (non-zero) from the launch.
typedef struct CUstream_st *LetheStream; // = cudaStream_t, without including the CUDA headers
typedef enum { LETHE_F32 = 0, LETHE_BF16 = 1 } LetheDtype;

// ---- CUDA twins: embedding, RMSNorm, RoPE, SwiGLU, residual, AdamW, gradient norm ----------

// ---- CUDA twins: classifier, attention ------------------------------------------------------

#ifdef __cplusplus
}
#endif
#endif
