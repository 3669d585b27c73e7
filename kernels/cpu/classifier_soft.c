// Fused LM head against a soft target per row (the KL retain term, UNDIAL, CE-U): the loss
// (KL or cross-entropy) and the backward's dlogits = weight * (p - q) without holding (M, V)
// logits. Chunked like classifier.c, with the source logits of q beside the current ones.
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "vecmath.h"

static size_t soft_chunk_rows(size_t M, int V) {
    // As classifier.c's chunk (~8 MiB of logits): the GEMMs of dw take the rows as their inner
    // dimension: a half-height chunk made CE-U's classifier backward 1.4x slower at V = 32000
    // (s15m, B x T = 4 x 256: 450 vs 315 ms). Two of them (current and source logits).
    size_t rows = ((size_t)1 << 21) / (size_t)V;
    if (rows > M) rows = M;
    return rows > 0 ? rows : 1;
}

size_t classifier_soft_scratch_size(size_t M, int V) {
    return 2 * soft_chunk_rows(M, V) * (size_t)V;
}

// Both chunks' logits: cur (rows, V) = x @ w^T and src (rows, V), the logits q is the softmax
// of: xref @ wref^T, or a copy of cur (q from the model's own distribution). Then the shift of
// each row's target logit; -inf leaves the target out of q altogether.
static void chunk_logits(float *cur, float *src, const float *x, const float *w,
                         const SoftTarget *q, size_t m0, size_t rows, int D, int V) {
    gemm_tiled(CblasNoTrans, CblasTrans, (int)rows, V, D, 1.0f, x + m0 * D, D, w, D, 0.0f, cur,
               V);
    if (q->xref)
        gemm_tiled(CblasNoTrans, CblasTrans, (int)rows, V, D, 1.0f,
                   (const float *)q->xref + m0 * D, D, (const float *)q->wref, D, 0.0f, src, V);
    else
        memcpy(src, cur, rows * (size_t)V * sizeof(float));
    if (q->shift != 0.0f)
        for (size_t r = 0; r < rows; r++)
            if (q->targets[m0 + r] >= 0) src[r * V + q->targets[m0 + r]] += q->shift;
}

// One row's sums: sum exp(l - maxv), and over q's support (s > -inf) sum exp(s - maxs) and that
// weight times (s - l) and times l. Per-element terms in float (vectorised: a scalar loop with
// double arithmetic per element took as long as the logits' GEMM at V = 32000), accumulated in
// VEC_LANES double lanes in a fixed order: the KL is a small difference of large terms.
static void soft_row_sums(const float *l, const float *s, float maxv, float maxs, int V,
                          double *sum, double *sums, double *acc_kl, double *acc_ce) {
    double a_c[VEC_LANES] = {0}, a_s[VEC_LANES] = {0}, a_kl[VEC_LANES] = {0},
           a_ce[VEC_LANES] = {0};
    int j = 0;
    for (; j + VEC_LANES <= V; j += VEC_LANES) {
        // Float lanes first (each of these loops is one vector operation), then the sums.
        float ec[VEC_LANES], es[VEC_LANES], ds[VEC_LANES];
        for (int u = 0; u < VEC_LANES; u++) ec[u] = vec_exp_neg(l[j + u] - maxv);
        for (int u = 0; u < VEC_LANES; u++) {
            const int in = s[j + u] != -INFINITY; // vec_exp_neg clamps -inf: not 0
            es[u] = in ? vec_exp_neg(s[j + u] - maxs) : 0.0f;
            ds[u] = in ? s[j + u] - l[j + u] : 0.0f;
        }
        for (int u = 0; u < VEC_LANES; u++) {
            a_c[u] += ec[u];
            a_s[u] += es[u];
            a_kl[u] += (double)es[u] * ds[u];
            a_ce[u] += (double)es[u] * l[j + u];
        }
    }
    for (int u = 0; j < V; j++, u++) {
        const float lj = l[j], sj = s[j];
        const int in = sj != -INFINITY;
        const float es = in ? vec_exp_neg(sj - maxs) : 0.0f;
        a_c[u] += vec_exp_neg(lj - maxv);
        a_s[u] += es;
        a_kl[u] += es * (in ? sj - lj : 0.0f);
        a_ce[u] += es * lj;
    }
    *sum = *sums = *acc_kl = *acc_ce = 0.0;
    for (int u = 0; u < VEC_LANES; u++) {
        *sum += a_c[u];
        *sums += a_s[u];
        *acc_kl += a_kl[u];
        *acc_ce += a_ce[u];
    }
}

void classifier_soft_forward(float *loss, float *lse, float *gap, float *logprob, float *scratch,
                             const float *x, const float *w, const SoftTarget *q, size_t M,
                             int D, int V) {
    const size_t chunk = soft_chunk_rows(M, V);
    float *cur = scratch, *src = scratch + chunk * (size_t)V;
    for (size_t m0 = 0; m0 < M; m0 += chunk) {
        size_t rows = m0 + chunk < M ? chunk : M - m0;
        chunk_logits(cur, src, x, w, q, m0, rows, D, V);
        #pragma omp parallel for schedule(static) if (rows * (size_t)V >= (1u << 15))
        for (size_t r = 0; r < rows; r++) {
            const float *l = cur + r * V, *s = src + r * V;
            const float maxv = vec_max(l, V), maxs = vec_max(s, V);
            double sum, sums, acc_kl, acc_ce;
            soft_row_sums(l, s, maxv, maxs, V, &sum, &sums, &acc_kl, &acc_ce);
            const double lse_c = maxv + log(sum), lse_s = maxs + log(sums);
            lse[m0 + r] = (float)lse_c;
            gap[m0 + r] = (float)(lse_c - lse_s);
            // KL = sum_v q (s - l) - lse_s + lse_c; H(q, p) = lse_c - sum_v q l (sum_v q = 1)
            loss[m0 + r] = (float)(q->cross_entropy ? lse_c - acc_ce / sums
                                                    : acc_kl / sums - lse_s + lse_c);
            const int t = q->targets[m0 + r];
            if (logprob) logprob[m0 + r] = t >= 0 ? (float)(l[t] - lse_c) : NAN;
        }
    }
}

// p_j - q_j without the cancellation of two close exps: with d_j = (l_j - s_j) - (lse - lse_s),
// p_j = q_j e^d_j, so p_j - q_j = q_j expm1(d_j), and expm1 of a small d_j is a polynomial.
// Far from 0 the difference of the exps has no cancellation (nor where q_j = 0: d_j = +inf).
// The KL retain term starts at p = q exactly, and UNDIAL moves q from p by one token.
static inline float p_minus_q(float l, float s, float lse, float gap) {
    const float p = vec_exp_neg(l - lse), q = vec_exp_neg(s - (lse - gap));
    const float d = (l - s) - gap;
    // expm1(d) for |d| < 0.5: Taylor to d^7, relative error below 2e-7.
    const float e = d * (1.0f + d * (0.5f + d * (1.0f / 6 + d * (1.0f / 24 + d * (1.0f / 120 +
                    d * (1.0f / 720 + d * (1.0f / 5040)))))));
    return fabsf(d) < 0.5f ? q * e : p - q;
}

void classifier_soft_backward(float *dx, float *dw, float *scratch, const float *x,
                              const float *w, const SoftTarget *q, const float *lse,
                              const float *gap, const float *weight, size_t M, int D, int V) {
    const size_t chunk = soft_chunk_rows(M, V);
    float *cur = scratch, *src = scratch + chunk * (size_t)V;
    for (size_t m0 = 0; m0 < M; m0 += chunk) {
        size_t rows = m0 + chunk < M ? chunk : M - m0;
        int any = 0;
        for (size_t r = 0; r < rows; r++) any |= weight[m0 + r] != 0.0f;
        if (!any) continue;
        chunk_logits(cur, src, x, w, q, m0, rows, D, V);
        #pragma omp parallel for schedule(static) if (rows * (size_t)V >= (1u << 15))
        for (size_t r = 0; r < rows; r++) {
            float *l = cur + r * V, *s = src + r * V;
            const float wr = weight[m0 + r];
            if (wr == 0.0f) {
                for (int j = 0; j < V; j++) l[j] = 0.0f;
                continue;
            }
            const float lse_c = lse[m0 + r], gap_r = gap[m0 + r];
            if (q->xref) {
                for (int j = 0; j < V; j++) l[j] = wr * p_minus_q(l[j], s[j], lse_c, gap_r);
                continue;
            }
            // q from the model's own logits: s_j = l_j but at the target t, so there
            // q_j = p_j e^gap and p_j - q_j = -p_j expm1(gap): one exp per logit, as GA's.
            const int t = q->targets[m0 + r];
            const float dt = t >= 0 ? p_minus_q(l[t], s[t], lse_c, gap_r) : 0.0f;
            const float k = -expm1f(gap_r);
            for (int j = 0; j < V; j++) l[j] = wr * k * vec_exp_neg(l[j] - lse_c);
            if (t >= 0) l[t] = wr * dt;
        }
        gemm_tiled(CblasNoTrans, CblasNoTrans, (int)rows, D, V, 1.0f, cur, V, w, D, 1.0f,
                   dx + m0 * D, D);
        if (dw != NULL)
            gemm_tiled(CblasTrans, CblasNoTrans, V, D, (int)rows, 1.0f, cur, V, x + m0 * D, D,
                       1.0f, dw, D);
    }
}
