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

// ---- fused classifier with a soft target (kernels/cpu/classifier_soft.c) -------------------
// p = softmax(x[m] @ w^T) against a soft target q per row, a constant in the gradient:
// q = softmax(s), s the source logits: a reference model's rows and head (xref[m] @ wref^T) or,
// with xref NULL, the current logits themselves; `shift` is added to s at the row's target
// token, and -INFINITY leaves the target out of q. The methods' settings:
//   KL retain term: reference, shift 0, KL;  UNDIAL: reference, shift -beta, cross-entropy;
//   CE-U: own logits, shift -inf, cross-entropy.
// Pointers are float32 host memory for the CPU functions and device memory of the call's dtype
// (xref, wref) or int32 (targets) for the CUDA ones.
typedef struct {
    const void *xref, *wref; // (M, D), (V, D) or NULL: q from the current logits
    const int32_t *targets;  // (M) each row's target token (required); < 0: none (no shift)
    float shift;
    int cross_entropy; // loss = H(q, p) = -sum q log p, else KL(q || p)
} SoftTarget;

// Scratch holds two chunks (current and source logits).
size_t classifier_soft_scratch_size(size_t M, int V);
// loss[m] (KL or cross-entropy), lse[m] = logsumexp of x[m] @ w^T, gap[m] = lse[m] - logsumexp
// of the source row (computed in double: the backward's p - q needs it precisely),
// logprob[m] = log p(target) (logprob may be NULL).
void classifier_soft_forward(float *loss, float *lse, float *gap, float *logprob, float *scratch,
                             const float *x, const float *w, const SoftTarget *q, size_t M,
                             int D, int V);
// dlogits[m] = weight[m] * (p - q), i.e. weight[m] = dLoss/dloss_m (either loss: q is constant),
// from the forward's lse and gap. dx (M, D) += dlogits @ w;  dw (V, D) += dlogits^T @ x (dw may
// be NULL).
void classifier_soft_backward(float *dx, float *dw, float *scratch, const float *x,
                              const float *w, const SoftTarget *q, const float *lse,
                              const float *gap, const float *weight, size_t M, int D, int V);

// ---- per-row mean squared error to a target (RMU's hidden-state loss) ------------------
// mse[j] = (1/D) * sum_d (h[j,d] - y[j,d])^2 with y = target_rows (M, D) when it is not NULL,
// else the one vector target_vec (D) for every row. h (M, D), mse (M). The squares are summed in
// double and the mean rounded once to float.
void rows_mse_forward(float *mse, const float *h, const float *target_rows,
                      const float *target_vec, size_t M, int D);
// dh[j,d] = weight[j] * 2/D * (h[j,d] - y[j,d]), weight (M) = dLoss/dmse_j. dh is WRITTEN, not
// accumulated (the exception to the += convention above): it is where a hidden-state loss's
// backward starts, which the caller hands to llama_backward_hidden, so there is nothing to add to.
void rows_mse_backward(float *dh, const float *h, const float *target_rows,
                       const float *target_vec, const float *weight, size_t M, int D);

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
// `void *` tensors hold `dtype` elements; `float *` ones are float32 whatever dtype. Sizes, shapes
// and the accumulate (+=) convention are those of the CPU twin above.

// out (N, D) = wte[tokens] with wte (V, D); tokens (N) in [0, V).
int cuda_embedding_forward(void *out, const int32_t *tokens, const void *wte, size_t N, int D,
                           LetheDtype dtype, LetheStream stream);
// dwte (V, D, float32) += the rows of dout (N, D) gathered by token, each row's contributions
// added in token order, as the CPU twin: the result has the CPU twin's bits in float32 mode.
// The tokens are counting-sorted on the device (stable LSD radix), so scratch holds
// cuda_embedding_backward_scratch_size(N) bytes.
size_t cuda_embedding_backward_scratch_size(size_t N);
int cuda_embedding_backward(float *dwte, void *scratch, const void *dout, const int32_t *tokens,
                            size_t N, int D, int V, LetheDtype dtype, LetheStream stream);

// Fused residual add + RMSNorm: x = a + b (stored to x_out, rounded to dtype) when b is not NULL,
// else x = a (x_out unused, may be NULL); out = w * (x * rstd), rstd (N) = 1/sqrt(mean(x^2) + eps).
// out, x_out, a, b (N, D); w (D).
int cuda_rmsnorm_forward(void *out, float *rstd, void *x_out, const void *a, const void *b,
                         const void *w, size_t N, int D, float eps, LetheDtype dtype,
                         LetheStream stream);
// dx (N, D, dtype) += and dw (D, float32) += as rmsnorm_backward. dw is reduced without atomics:
// per-block partial sums to scratch (cuda_rmsnorm_backward_scratch_size bytes), then summed in
// block order.
size_t cuda_rmsnorm_backward_scratch_size(size_t N, int D);
int cuda_rmsnorm_backward(void *dx, float *dw, void *scratch, const void *dout, const void *x,
                          const void *w, const float *rstd, size_t N, int D, LetheDtype dtype,
                          LetheStream stream);

// RoPE in place on x (N, n_heads, hd) as rope_forward / rope_backward. offsets is the
// SampleLayout's (n_samples + 1) array in DEVICE memory; N = offsets[n_samples].
int cuda_rope_forward(void *x, const int64_t *offsets, int n_samples, size_t N, int n_heads,
                      int hd, float theta, LetheDtype dtype, LetheStream stream);
int cuda_rope_backward(void *dx, const int64_t *offsets, int n_samples, size_t N, int n_heads,
                       int hd, float theta, LetheDtype dtype, LetheStream stream);

int cuda_swiglu_forward(void *out, const void *gate, const void *up, size_t n, LetheDtype dtype,
                        LetheStream stream);
int cuda_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                         const void *up, size_t n, LetheDtype dtype, LetheStream stream);
int cuda_residual_forward(void *out, const void *a, const void *b, size_t n, LetheDtype dtype,
                          LetheStream stream);

// matmul through cuBLAS (cublas: a cublasHandle_t; the launchers set its stream and math mode).
// out (N, OC) = inp (N, C) @ w (OC, C)^T + bias (OC, or NULL); all of dtype. float32 mode
// computes in full fp32 (no TF32); bfloat16 mode multiplies bf16 with fp32 accumulation.
int cuda_matmul_forward(void *out, const void *inp, const void *w, const void *bias, size_t N,
                        int C, int OC, LetheDtype dtype, void *cublas, LetheStream stream);
// dinp (N, C, dtype) += dout @ w; dw (OC, C, float32) += dout^T @ inp; dbias (OC, float32) +=
// column sums of dout. Any of dinp, dw, dbias may be NULL. Returns a cudaError_t, or for a cuBLAS
// failure the closest one (cudaErrorInvalidValue, cudaErrorMemoryAllocation, cudaErrorUnknown)
// after naming the cuBLAS status on stderr.
int cuda_matmul_backward(void *dinp, float *dw, float *dbias, const void *dout, const void *inp,
                         const void *w, size_t N, int C, int OC, LetheDtype dtype, void *cublas,
                         LetheStream stream);

// Global gradient L2 norm in two fixed-order passes: cuda_grad_norm_accumulate adds the squares
// of grads into partial[CUDA_GRAD_NORM_SLOTS] (float64, zeroed by the caller before the first
// range; call once per trainable range, in a fixed order); cuda_grad_norm_finish writes
// *norm = sqrt(sum of partial) (float64, device memory). Same inputs, same bits.
#define CUDA_GRAD_NORM_SLOTS 1024
int cuda_grad_norm_accumulate(double *partial, const float *grads, size_t n, LetheStream stream);
int cuda_grad_norm_finish(double *norm, const double *partial, LetheStream stream);

// One AdamW step (torch.optim.AdamW, as optimizer_step in host/optim.c) over n float32
// parameters with their moments m, v, at the new step count `step` (1 on the first update).
// weight_decay is decoupled (0 for norms and biases). When norm (device, from
// cuda_grad_norm_finish) is not NULL and max_norm > 0, gradients are scaled by
// max_norm / (norm + 1e-6) when norm > max_norm. When params_bf16 (bfloat16 bits) is not NULL it
// receives the updated weights rounded stochastically to bfloat16 with a counter-based hash of
// (seed, step, index): unbiased, and the same bits on every run (give each tensor its own seed).
int cuda_adamw_update(float *params, float *m, float *v, uint16_t *params_bf16,
                      const float *grads, size_t n, double lr, double beta1, double beta2,
                      double eps, double weight_decay, int64_t step, const double *norm,
                      double max_norm, uint64_t seed, LetheStream stream);
// The bfloat16 copy cuda_adamw_update(seed, step) writes, from float32 weights alone: out[i] is
// in[i] rounded stochastically with the same (seed, step, i) stream, so a run resumed from its
// float32 state gets back the bits of the uninterrupted run's bfloat16 weights.
int cuda_bf16_round_stochastic(uint16_t *out, const float *in, size_t n, uint64_t seed,
                               int64_t step, LetheStream stream);

// ---- CUDA twins: classifier, attention ------------------------------------------------------
// Fused classifier (kernels/cuda/classifier.cu). x (M, D), w (V, D) and dx (M, D) are of dtype;
// logprob, lse, kl, mu, var, weight and dw (V, D) are float32. `cublas` is a cublasHandle_t; the
// launchers set its stream and its math mode (CUBLAS_DEFAULT_MATH: fp32 GEMMs in full fp32, bf16
// ones with fp32 accumulation). cuBLAS writes one tile of rows x vocabulary logits at a time into
// `scratch`, so no (M, V) tensor exists: the tiles are the largest that fit in scratch_bytes, starting from
// 1024 x 8192 and halving the vocabulary tile (down to 64), then the rows. The results depend
// on the tiles only through the order of sums; the same inputs and scratch_bytes give the same
// bits. Scratch smaller than one 1 x min(V, 64) tile gives cudaErrorInvalidValue; a cuBLAS
// failure is named on stderr and returned as the closest cudaError_t.
size_t cuda_classifier_scratch_bytes(size_t M, int D, int V, LetheDtype dtype);
int cuda_classifier_forward(float *logprob, float *lse, void *scratch, size_t scratch_bytes,
                            const void *x, const void *w, const int32_t *targets, size_t M, int D,
                            int V, LetheDtype dtype, void *cublas, LetheStream stream);
int cuda_classifier_backward(void *dx, float *dw, void *scratch, size_t scratch_bytes,
                             const void *x, const void *w, const int32_t *targets,
                             const float *lse, const float *weight, size_t M, int D, int V,
                             LetheDtype dtype, void *cublas, LetheStream stream);
int cuda_classifier_stats(uint8_t *is_argmax, float *mu, float *var, void *scratch,
                          size_t scratch_bytes, const void *x, const void *w,
                          const int32_t *targets, const float *lse, size_t M, int D, int V,
                          LetheDtype dtype, void *cublas, LetheStream stream);
// The soft-target variant holds a tile of source logits beside the current one.
size_t cuda_classifier_soft_scratch_bytes(size_t M, int D, int V, LetheDtype dtype);
int cuda_classifier_soft_forward(float *loss, float *lse, float *gap, float *logprob, void *scratch,
                                 size_t scratch_bytes, const void *x, const void *w,
                                 const SoftTarget *q, size_t M, int D, int V, LetheDtype dtype,
                                 void *cublas, LetheStream stream);
int cuda_classifier_soft_backward(void *dx, float *dw, void *scratch, size_t scratch_bytes,
                                  const void *x, const void *w, const SoftTarget *q,
                                  const float *lse, const float *gap, const float *weight, size_t M,
                                  int D, int V, LetheDtype dtype, void *cublas,
                                  LetheStream stream);

// Causal GQA attention (kernels/cuda/attention.cu), flash-attention style. q, out, dout, dq
// (N, H, hd) and k, v, dk, dv (N, KV, hd) are of dtype; lse (N, H) is float32. offsets is the
// SampleLayout's (n_samples + 1) array in DEVICE memory, N = offsets[n_samples]. 1 <= hd <= 128,
// H a multiple of KV. dq, dk, dv accumulate, each element written by one thread: no atomics.
int cuda_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                           const int64_t *offsets, int n_samples, size_t N, int H, int KV, int hd,
                           LetheDtype dtype, LetheStream stream);
int cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v,
                            const int64_t *offsets, int n_samples, size_t N, int H, int KV,
                            int hd, LetheDtype dtype, LetheStream stream);

// ---- CUDA twin: per-row mean squared error (kernels/cuda/rows_mse.cu) ------------------------
// As rows_mse_forward / rows_mse_backward: h, target_rows and dh (M, D) are of dtype; target_vec
// (D), mse and weight (M) are float32. Exactly one of target_rows, target_vec is used
// (target_rows when not NULL; both NULL gives cudaErrorInvalidValue). One block per row, the
// squares summed in double in a fixed tree: no atomics, the same bits on every run, and in float32
// mode the CPU twin's mse up to the last rounding of a double sum. dh is written, as on the CPU.
int cuda_rows_mse_forward(float *mse, const void *h, const void *target_rows,
                          const float *target_vec, size_t M, int D, LetheDtype dtype,
                          LetheStream stream);
int cuda_rows_mse_backward(void *dh, const void *h, const void *target_rows,
                           const float *target_vec, const float *weight, size_t M, int D,
                           LetheDtype dtype, LetheStream stream);

// ---- CUDA twins: decoding over a KV cache ----------------------------------------------------
// kernels/cuda/decode.cu (RoPE at positions in rope.cu, the logits product in matmul.cu). Index
// arrays are in DEVICE memory.
// RoPE in place on x (N, n_heads, hd) where row t is at absolute position pos[t] (int32, N
// entries): rope_forward_at applied to each row, with rope_forward's rounding of the angles.
int cuda_rope_forward_at(void *x, const int32_t *pos, size_t N, int n_heads, int hd, float theta,
                         LetheDtype dtype, LetheStream stream);
// dst[dst_row[r]] = src[r] for r < n: rows of `width` elements of dtype, copied bit for bit
// (dst_row: int64, distinct rows; other rows of dst untouched). Appends K/V rows to a cache.
int cuda_rows_scatter(void *dst, const int64_t *dst_row, const void *src, size_t n, int width,
                      LetheDtype dtype, LetheStream stream);
// Decoding attention: query row r (q: (n, H, hd)) attends to the len[r] cached positions whose
// keys/values are rows cache_row[r], cache_row[r] + 1, ..., cache_row[r] + len[r] - 1 of k and v
// (rows of KV * hd elements). Head h uses kv head h / (H / KV) (grouped-query), scale 1/sqrt(hd),
// softmax in float32; out (n, H, hd). attention_decode applied to each row. cache_row (int64)
// and len (int32, >= 1) hold n entries. 1 <= hd <= 128, H a multiple of KV. No atomics: the
// same inputs give the same bits.
int cuda_attention_decode(void *out, const void *q, const void *k, const void *v,
                          const int64_t *cache_row, const int32_t *len, size_t n, int H, int KV,
                          int hd, LetheDtype dtype, LetheStream stream);
// out (N, OC) float32 = inp (N, C) @ w (OC, C)^T with inp and w of dtype, fp32 accumulation
// (cublasGemmEx with a float32 C): logits for sampling, without a bf16 rounding of the result.
// Handle and errors as cuda_matmul_forward.
int cuda_matmul_forward_f32out(float *out, const void *inp, const void *w, size_t N, int C,
                               int OC, LetheDtype dtype, void *cublas, LetheStream stream);

#ifdef __cplusplus
}
#endif
#endif
