// llama2.c runq.c's arithmetic for one token (see runq.h): int8 quantisation and matmul, the
// exact recovery of int8 weights from their dequantised floats, and runq's fp32 ops.
// Built with -ffp-contract=off (CMakeLists.txt): every multiply and add is rounded on its own.
#include "runq.h"

#include <math.h>
#include <string.h>

// Below this many multiply-adds one thread does a whole matmul.
#define RUNQ_PAR_MIN ((size_t)1 << 17)

// round(v) as int8. Only non-finite activations land outside [-127, 127] (runq's conversion is
// undefined there); saturating keeps that defined.
static int8_t to_int8(float r) {
    if (r > 127.0f) return 127;
    if (r < -127.0f) return -127;
    return r == r ? (int8_t)r : 0;
}

void runq_quantize(int8_t *q, float *s, const float *x, size_t n, int gs) {
    const size_t groups = n / (size_t)gs;
    for (size_t g = 0; g < groups; g++) {
        const float *xg = x + g * gs;
        int8_t *qg = q + g * gs;
        float amax = 0.0f;
        for (int i = 0; i < gs; i++)
            if (fabsf(xg[i]) > amax) amax = fabsf(xg[i]);
        const float scale = amax / 127.0f;
        s[g] = scale;
        if (scale == 0.0f) {
            memset(qg, 0, (size_t)gs);
            continue;
        }
        // Divided, not multiplied by 1 / scale: runq's rounding.
        for (int i = 0; i < gs; i++) qg[i] = to_int8(roundf(xg[i] / scale));
    }
}

// Whether scale s reproduces the group: every fl(round(w / s) * s) equals w bit for bit.
static int reproduces(int8_t *q, const float *w, int gs, float s) {
    for (int i = 0; i < gs; i++) {
        const float r = roundf(w[i] / s);
        if (!(r >= -127.0f && r <= 127.0f)) return 0;
        const float back = r * s;
        if (memcmp(&back, &w[i], sizeof back) != 0) return 0;
        q[i] = (int8_t)r;
    }
    return 1;
}

// Recovers one group; returns the candidates tried, or 0 when none reproduces it.
static int recover_group(int8_t *q, float *s, const float *w, int gs) {
    float amax = 0.0f;
    for (int i = 0; i < gs; i++) {
        if (!isfinite(w[i])) return 0;
        if (fabsf(w[i]) > amax) amax = fabsf(w[i]);
    }
    if (amax == 0.0f) {
        *s = 0.0f;
        memset(q, 0, (size_t)gs);
        return 1;
    }
    // The export's max|q| is round(max|w0| / (max|w0| / 127)) = 127, so max|w| / 127 is the
    // scale up to the roundings of that divide and of the dequantising multiply: the scale
    // itself in every group of the real exports, otherwise a float or two beside it.
    const float s0 = amax / 127.0f;
    float up = s0, down = s0;
    int tries = 0;
    for (int k = 0; k <= 2 * RUNQ_RECOVER_ULPS; k++) {
        float c = s0;
        if (k % 2 == 1) c = up = nextafterf(up, INFINITY);
        if (k > 0 && k % 2 == 0) c = down = nextafterf(down, 0.0f);
        if (!(c > 0.0f) || !isfinite(c)) continue;
        tries++;
        if (reproduces(q, w, gs, c)) {
            *s = c;
            return tries;
        }
    }
    return 0;
}

int64_t runq_recover_int8(int8_t *q, float *s, const float *w, size_t n, int gs,
                          int *max_tries) {
    const size_t groups = n / (size_t)gs;
    int most = 0;
    int64_t bad = -1;
    for (size_t g = 0; g < groups && bad < 0; g++) {
        const int tries = recover_group(q + g * gs, s + g, w + g * gs, gs);
        if (tries == 0) bad = (int64_t)g;
        if (tries > most) most = tries;
    }
    if (max_tries) *max_tries = most;
    return bad;
}

void runq_matmul(float *out, const int8_t *xq, const float *xs, const int8_t *wq,
                 const float *ws, int C, int OC, int gs) {
    const int groups = C / gs;
    #pragma omp parallel for schedule(static) if ((size_t)OC * (size_t)C >= RUNQ_PAR_MIN)
    for (int o = 0; o < OC; o++) {
        const int8_t *wr = wq + (size_t)o * C;
        const float *wsr = ws + (size_t)o * groups;
        float acc = 0.0f;
        for (int g = 0; g < groups; g++) {
            int32_t dot = 0;
            for (int i = 0; i < gs; i++)
                dot += (int32_t)xq[g * gs + i] * (int32_t)wr[g * gs + i];
            acc += (float)dot * wsr[g] * xs[g];
        }
        out[o] = acc;
    }
}

void runq_rmsnorm(float *out, const float *x, const float *w, int D, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    ss /= (float)D;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int i = 0; i < D; i++) out[i] = w[i] * (ss * x[i]);
}

void runq_rope(float *x, int pos, int n_heads, int hd, float theta) {
    const int half = hd / 2;
    for (int i = 0; i < half; i++) {
        const float freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        const float angle = (float)pos * freq;
        const float fcr = cosf(angle), fci = sinf(angle);
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (size_t)h * hd;
            const float v0 = xh[i], v1 = xh[i + half];
            xh[i] = v0 * fcr - v1 * fci;
            xh[i + half] = v0 * fci + v1 * fcr;
        }
    }
}

void runq_attention(float *out, float *scratch, const float *q, const float *k, const float *v,
                    int T, int H, int KV, int hd) {
    const int group = H / KV, half = hd / 2;
    const size_t KVD = (size_t)KV * hd;
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * hd;
        const size_t kvh = (size_t)(h / group) * hd;
        for (int t = 0; t < T; t++) {
            const float *kt = k + (size_t)t * KVD + kvh;
            float score = 0.0f;
            // llama2.c's channel 2i + j is rotate-half channel j * hd/2 + i.
            for (int c = 0; c < hd; c++) {
                const int at = (c % 2) * half + c / 2;
                score += qh[at] * kt[at];
            }
            scratch[t] = score / sqrtf((float)hd);
        }
        float maxv = scratch[0];
        for (int t = 1; t < T; t++)
            if (scratch[t] > maxv) maxv = scratch[t];
        float sum = 0.0f;
        for (int t = 0; t < T; t++) {
            scratch[t] = expf(scratch[t] - maxv);
            sum += scratch[t];
        }
        for (int t = 0; t < T; t++) scratch[t] /= sum;
        float *oh = out + (size_t)h * hd;
        memset(oh, 0, (size_t)hd * sizeof *oh);
        for (int t = 0; t < T; t++) {
            const float *vt = v + (size_t)t * KVD + kvh;
            const float p = scratch[t];
            for (int i = 0; i < hd; i++) oh[i] += p * vt[i];
        }
    }
}

void runq_swiglu(float *out, const float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float val = gate[i];
        val *= 1.0f / (1.0f + expf(-val));
        val *= up[i];
        out[i] = val;
    }
}
