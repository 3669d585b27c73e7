// Fused LM head + log-softmax: log p(target) per row without ever holding (M, V) logits.
// Rows go in chunks; one chunk's logits live in scratch and the backward recomputes them.
#include <math.h>

#include "gemm.h"
#include "ops.h"
#include "vecmath.h"

// A chunk's logits stay near 8 MiB (2^21 floats): big enough for efficient sgemms, small
// enough to stay out of the way of the activations.
static size_t classifier_chunk_rows(size_t M, int V) {
    size_t rows = ((size_t)1 << 21) / (size_t)V;
    if (rows > M) rows = M;
    return rows > 0 ? rows : 1;
}

size_t classifier_scratch_size(size_t M, int V) {
    return classifier_chunk_rows(M, V) * (size_t)V;
}

void classifier_forward(float *logprob, float *lse, float *scratch, const float *x,
                        const float *w, const int32_t *targets, size_t M, int D, int V) {
    // logprob (M), lse (M), x (M, D), w (V, D), targets (M), scratch (chunk, V)
    size_t chunk = classifier_chunk_rows(M, V);
    for (size_t m0 = 0; m0 < M; m0 += chunk) {
        size_t rows = m0 + chunk < M ? chunk : M - m0;
        gemm_tiled(CblasNoTrans, CblasTrans, (int)rows, V, D, 1.0f, x + m0 * D, D, w, D, 0.0f,
                   scratch, V);
        #pragma omp parallel for schedule(static) if (rows * (size_t)V >= (1u << 15))
        for (size_t r = 0; r < rows; r++) {
            float *l = scratch + r * V;
            float target_logit = l[targets[m0 + r]];
            float maxv = vec_max(l, V);
            float lse_r = maxv + logf(vec_exp_shift_sum(l, V, maxv)); // l now holds exps
            lse[m0 + r] = lse_r;
            logprob[m0 + r] = target_logit - lse_r;
        }
    }
}

void classifier_backward(float *dx, float *dw, float *scratch, const float *x, const float *w,
                         const int32_t *targets, const float *lse, const float *weight, size_t M,
                         int D, int V) {
    // dx (M, D), dw (V, D) or NULL, x (M, D), w (V, D), lse and weight (M), scratch (chunk, V)
    size_t chunk = classifier_chunk_rows(M, V);
    for (size_t m0 = 0; m0 < M; m0 += chunk) {
        size_t rows = m0 + chunk < M ? chunk : M - m0;
        int any = 0;
        for (size_t r = 0; r < rows; r++) any |= weight[m0 + r] != 0.0f;
        if (!any) continue;
        // Same sgemm as the forward, so the logits match the saved lse bit for bit.
        gemm_tiled(CblasNoTrans, CblasTrans, (int)rows, V, D, 1.0f, x + m0 * D, D, w, D, 0.0f,
                   scratch, V);
        #pragma omp parallel for schedule(static) if (rows * (size_t)V >= (1u << 15))
        for (size_t r = 0; r < rows; r++) {
            float *l = scratch + r * V;
            float wr = weight[m0 + r];
            float lse_r = lse[m0 + r];
            if (wr == 0.0f) {
                for (int j = 0; j < V; j++) l[j] = 0.0f;
                continue;
            }
            // l <= lse, so the argument stays in vec_exp_neg's domain.
            for (int j = 0; j < V; j++) l[j] = wr * vec_exp_neg(l[j] - lse_r);
            l[targets[m0 + r]] -= wr;
        }
        // (rows, D) += dlogits @ w
        gemm_tiled(CblasNoTrans, CblasNoTrans, (int)rows, D, V, 1.0f, scratch, V, w, D, 1.0f,
                   dx + m0 * D, D);
        if (dw != NULL) { // (V, D) += dlogits^T @ x[m0:m0+rows]
            gemm_tiled(CblasTrans, CblasNoTrans, V, D, (int)rows, 1.0f, scratch, V, x + m0 * D, D,
                       1.0f, dw, D);
        }
    }
}

void classifier_stats(uint8_t *is_argmax, float *mu, float *var, float *scratch, const float *x,
                      const float *w, const int32_t *targets, const float *lse, size_t M, int D,
                      int V) {
    size_t chunk = classifier_chunk_rows(M, V);
    for (size_t m0 = 0; m0 < M; m0 += chunk) {
        size_t rows = m0 + chunk < M ? chunk : M - m0;
        // Same sgemm as the forward, so the logits match the saved lse bit for bit.
        gemm_tiled(CblasNoTrans, CblasTrans, (int)rows, V, D, 1.0f, x + m0 * D, D, w, D, 0.0f,
                   scratch, V);
        #pragma omp parallel for schedule(static) if (rows * (size_t)V >= (1u << 15))
        for (size_t r = 0; r < rows; r++) {
            const float *l = scratch + r * V;
            const int32_t target = targets[m0 + r];
            const float lse_r = lse[m0 + r];
            int best = 0;
            double s1 = 0.0, s2 = 0.0; // in double: the variance is a difference of two sums
            for (int j = 0; j < V; j++) {
                if (l[j] > l[best]) best = j;
                double logp = (double)l[j] - lse_r;
                double p = exp(logp);
                s1 += p * logp;
                s2 += p * logp * logp;
            }
            is_argmax[m0 + r] = best == target; // best: the first index of the maximum
            mu[m0 + r] = (float)s1;
            var[m0 + r] = (float)(s2 - s1 * s1);
        }
    }
}
