// Single-position decoding ops over a KV cache: RoPE at an absolute position (bit-identical to
// rope_forward) and one query row of causal grouped-query attention (the same formula as
// attention_forward, with vecmath's exp and fixed-order sums: equal to it up to float rounding).
#include <math.h>

#include "ops.h"
#include "vecmath.h"

void rope_forward_at(float *x, int pos, int n_heads, int hd, float theta) {
    const int half = hd / 2;
    for (int i = 0; i < half; i++) {
        // Same rounding as rope_forward (and llama2.c run.c): float powf, cosf, sinf.
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        float angle = (float)pos * inv_freq;
        float c = cosf(angle), s = sinf(angle);
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (size_t)h * hd;
            float a = xh[i], b = xh[i + half];
            xh[i] = a * c - b * s;
            xh[i + half] = b * c + a * s;
        }
    }
}

#define PV_PARTS 4  // independent accumulators of the probability-weighted sum of values (the
                    // combination below is written for 4)
#define PV_CHUNK 64 // head channels per pass (hd may be larger)

void attention_decode(float *out, float *scratch, const float *q, const float *k, const float *v,
                      int T, int H, int KV, int hd) {
    const int group = H / KV;
    const size_t KVD = (size_t)KV * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * hd;
        const int kvh = h / group;
        for (int t = 0; t < T; t++)
            scratch[t] = vec_dot(qh, k + (size_t)t * KVD + (size_t)kvh * hd, hd) * scale;
        const float maxv = vec_max(scratch, T);
        const float inv = 1.0f / vec_exp_shift_sum(scratch, T, maxv);
        // out_h = sum_t p_t v_t in PV_PARTS partial sums over interleaved t, combined in a fixed
        // order: with one accumulator every FMA waits for the previous one (for hd = 8, one
        // vector, the loop ran at the FMA's latency).
        const float *vh = v + (size_t)kvh * hd;
        for (int i0 = 0; i0 < hd; i0 += PV_CHUNK) {
            const int w = hd - i0 < PV_CHUNK ? hd - i0 : PV_CHUNK;
            float acc[PV_PARTS][PV_CHUNK];
            for (int u = 0; u < PV_PARTS; u++)
                for (int i = 0; i < w; i++) acc[u][i] = 0.0f;
            for (int t = 0; t < T; t += PV_PARTS)
                for (int u = 0; u < PV_PARTS && t + u < T; u++) {
                    const float p = scratch[t + u] * inv;
                    const float *vt = vh + (size_t)(t + u) * KVD + i0;
                    for (int i = 0; i < w; i++) acc[u][i] += p * vt[i];
                }
            float *oh = out + (size_t)h * hd + i0;
            for (int i = 0; i < w; i++) oh[i] = (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]);
        }
    }
}
