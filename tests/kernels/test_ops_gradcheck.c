// Proves every op of kernels/ops.h against naive double-precision references written here:
// forward values, backward by central differences of the reference, += semantics, determinism.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "ops.h"

// ---- bookkeeping ---------------------------------------------------------------------------

static int g_failures;

typedef struct {
    double fwd_abs, fwd_tol; // worst forward |error| and worst |error| / tolerance
    double bwd_abs, bwd_tol; // the same for gradients
    int fails;
} Stat;

static void stat_print(const char *op, const Stat *st) {
    printf("%-12s fwd max|err| %.2e (%.3f of tol)  bwd max|err| %.2e (%.3f of tol)  %s\n", op,
           st->fwd_abs, st->fwd_tol, st->bwd_abs, st->bwd_tol, st->fails ? "FAILED" : "ok");
}

// Compares got (minus base, when given: the backward's accumulate check) with the reference.
// Passes when |got - exp| <= atol + rtol * |exp| for every element.
static void check(Stat *st, int is_bwd, const char *op, const char *tensor, const float *got,
                  const float *base, const double *exp, size_t n, double atol, double rtol) {
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        double g = (double)got[i] - (base ? (double)base[i] : 0.0);
        double e = exp[i];
        double err = fabs(g - e), tol = atol + rtol * fabs(e);
        if (!(err <= tol)) { // NaN fails too
            if (shown++ < 5) {
                fprintf(stderr, "FAIL %s %s[%zu]: got %.9g expected %.9g (|err| %.3g > tol %.3g)\n",
                        op, tensor, i, g, e, err, tol);
            }
            st->fails++;
            g_failures++;
        }
        if (!isfinite(err)) continue;
        double frac = tol > 0.0 ? err / tol : (err > 0.0 ? INFINITY : 0.0);
        double *ma = is_bwd ? &st->bwd_abs : &st->fwd_abs;
        double *mt = is_bwd ? &st->bwd_tol : &st->fwd_tol;
        if (err > *ma) *ma = err;
        if (frac > *mt) *mt = frac;
    }
    if (shown > 5) fprintf(stderr, "FAIL %s %s: %d elements out of tolerance\n", op, tensor, shown);
}

static void check_true(Stat *st, int ok, const char *op, const char *what) {
    if (!ok) {
        fprintf(stderr, "FAIL %s: %s\n", op, what);
        st->fails++;
        g_failures++;
    }
}

#define FWD_ATOL 2e-5
#define FWD_RTOL 2e-5
#define BWD_ATOL 1e-4
#define BWD_RTOL 1e-4

// ---- data ------------------------------------------------------------------------------------

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;

static double urand(void) { // uniform in [-1, 1)
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}

static float *randf(size_t n, double scale) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * urand());
    return x;
}

static float *copyf(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static float *nanf_buf(size_t n) { // output and scratch buffers: any read before write shows
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    return x;
}

static double *to_double(const float *x, size_t n) {
    double *y = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static double *zerod(size_t n) {
    double *y = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = 0.0;
    return y;
}

static double dot_d(const double *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// ---- finite differences ----------------------------------------------------------------------

typedef double (*LossFn)(void *ctx);

// Central differences of the double reference loss for every element of p (which ctx reads).
static double *fd_grad(double *p, size_t n, LossFn loss, void *ctx) {
    const double h = 1e-5;
    double *g = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double old = p[i];
        p[i] = old + h;
        double lp = loss(ctx);
        p[i] = old - h;
        double lm = loss(ctx);
        p[i] = old;
        g[i] = (lp - lm) / (2.0 * h);
    }
    return g;
}

// ---- embedding -------------------------------------------------------------------------------

typedef struct {
    double *wte, *out;
    const float *R;
    const int32_t *tokens;
    size_t N;
    int D;
} EmbCtx;

static void ref_embedding(double *out, const int32_t *tokens, const double *wte, size_t N, int D) {
    for (size_t n = 0; n < N; n++)
        for (int i = 0; i < D; i++) out[n * D + i] = wte[(size_t)tokens[n] * D + i];
}

static double emb_loss(void *p) {
    EmbCtx *c = p;
    ref_embedding(c->out, c->tokens, c->wte, c->N, c->D);
    return dot_d(c->out, c->R, c->N * c->D);
}

static void test_embedding(Stat *st, size_t N, int D, int V) {
    const char *op = "embedding";
    int32_t *tokens = xmalloc(N * sizeof(int32_t));
    for (size_t n = 0; n < N; n++) tokens[n] = (int32_t)((urand() + 1.0) * 0.5 * V) % V;
    tokens[N - 1] = tokens[0]; // repeated tokens sum into one row
    tokens[N / 2] = tokens[0];
    float *wte = randf((size_t)V * D, 1.0);
    float *out = nanf_buf(N * D);
    embedding_forward(out, tokens, wte, N, D);
    double *wte_d = to_double(wte, (size_t)V * D), *out_d = zerod(N * D);
    ref_embedding(out_d, tokens, wte_d, N, D);
    check(st, 0, op, "out", out, NULL, out_d, N * D, 0.0, 0.0);

    float *R = randf(N * D, 1.0);
    float *dwte0 = randf((size_t)V * D, 1.0), *dwte = copyf(dwte0, (size_t)V * D);
    embedding_backward(dwte, R, tokens, N, D);
    EmbCtx c = {wte_d, out_d, R, tokens, N, D};
    double *g = fd_grad(wte_d, (size_t)V * D, emb_loss, &c);
    check(st, 1, op, "dwte", dwte, dwte0, g, (size_t)V * D, BWD_ATOL, BWD_RTOL);
    free(tokens); free(wte); free(out); free(wte_d); free(out_d); free(R); free(dwte0);
    free(dwte); free(g);
}

// ---- rmsnorm ---------------------------------------------------------------------------------

typedef struct {
    double *x, *w, *out;
    const float *R;
    size_t N;
    int D;
    double eps;
} RmsCtx;

static void ref_rmsnorm(double *out, double *rstd, const double *x, const double *w, size_t N,
                        int D, double eps) {
    for (size_t n = 0; n < N; n++) {
        double ss = 0.0;
        for (int i = 0; i < D; i++) ss += x[n * D + i] * x[n * D + i];
        double r = 1.0 / sqrt(ss / D + eps);
        if (rstd) rstd[n] = r;
        for (int i = 0; i < D; i++) out[n * D + i] = x[n * D + i] * r * w[i];
    }
}

static double rms_loss(void *p) {
    RmsCtx *c = p;
    ref_rmsnorm(c->out, NULL, c->x, c->w, c->N, c->D, c->eps);
    return dot_d(c->out, c->R, c->N * c->D);
}

static void test_rmsnorm(Stat *st, size_t N, int D) {
    const char *op = "rmsnorm";
    float eps = 1e-5f;
    float *x = randf(N * D, 2.0), *w = randf(D, 0.5);
    for (int i = 0; i < D; i++) w[i] += 1.0f;
    float *out = nanf_buf(N * D), *rstd = nanf_buf(N);
    rmsnorm_forward(out, rstd, x, w, N, D, eps);
    double *x_d = to_double(x, N * D), *w_d = to_double(w, D);
    double *out_d = zerod(N * D), *rstd_d = zerod(N);
    ref_rmsnorm(out_d, rstd_d, x_d, w_d, N, D, eps);
    check(st, 0, op, "out", out, NULL, out_d, N * D, FWD_ATOL, FWD_RTOL);
    check(st, 0, op, "rstd", rstd, NULL, rstd_d, N, FWD_ATOL, FWD_RTOL);

    float *R = randf(N * D, 1.0);
    float *dx0 = randf(N * D, 1.0), *dw0 = randf(D, 1.0);
    float *dx = copyf(dx0, N * D), *dw = copyf(dw0, D);
    rmsnorm_backward(dx, dw, R, x, w, rstd, N, D);
    RmsCtx c = {x_d, w_d, out_d, R, N, D, eps};
    double *gx = fd_grad(x_d, N * D, rms_loss, &c);
    double *gw = fd_grad(w_d, D, rms_loss, &c);
    check(st, 1, op, "dx", dx, dx0, gx, N * D, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dw", dw, dw0, gw, D, BWD_ATOL, BWD_RTOL);
    free(x); free(w); free(out); free(rstd); free(x_d); free(w_d); free(out_d); free(rstd_d);
    free(R); free(dx0); free(dw0); free(dx); free(dw); free(gx); free(gw);
}

// ---- matmul ----------------------------------------------------------------------------------

typedef struct {
    double *inp, *w, *bias, *out;
    const float *R;
    size_t N;
    int C, OC;
} MmCtx;

static void ref_matmul(double *out, const double *inp, const double *w, const double *bias,
                       size_t N, int C, int OC) {
    for (size_t n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) s += inp[n * C + c] * w[(size_t)o * C + c];
            out[n * OC + o] = s;
        }
}

static double mm_loss(void *p) {
    MmCtx *c = p;
    ref_matmul(c->out, c->inp, c->w, c->bias, c->N, c->C, c->OC);
    return dot_d(c->out, c->R, c->N * c->OC);
}

static void test_matmul(Stat *st, size_t N, int C, int OC) {
    const char *op = "matmul";
    float *inp = randf(N * C, 1.0), *w = randf((size_t)OC * C, 0.5), *bias = randf(OC, 1.0);
    float *out = nanf_buf(N * OC);
    matmul_forward(out, inp, w, bias, N, C, OC);
    double *inp_d = to_double(inp, N * C), *w_d = to_double(w, (size_t)OC * C);
    double *bias_d = to_double(bias, OC), *out_d = zerod(N * OC);
    ref_matmul(out_d, inp_d, w_d, bias_d, N, C, OC);
    check(st, 0, op, "out", out, NULL, out_d, N * OC, FWD_ATOL, FWD_RTOL);
    float *out_nb = nanf_buf(N * OC);
    matmul_forward(out_nb, inp, w, NULL, N, C, OC);
    ref_matmul(out_d, inp_d, w_d, NULL, N, C, OC);
    check(st, 0, op, "out(no bias)", out_nb, NULL, out_d, N * OC, FWD_ATOL, FWD_RTOL);

    float *R = randf(N * OC, 1.0);
    float *dinp0 = randf(N * C, 1.0), *dw0 = randf((size_t)OC * C, 1.0), *db0 = randf(OC, 1.0);
    float *dinp = copyf(dinp0, N * C), *dw = copyf(dw0, (size_t)OC * C), *db = copyf(db0, OC);
    matmul_backward(dinp, dw, db, R, inp, w, N, C, OC);
    MmCtx c = {inp_d, w_d, bias_d, out_d, R, N, C, OC};
    double *gi = fd_grad(inp_d, N * C, mm_loss, &c);
    double *gw = fd_grad(w_d, (size_t)OC * C, mm_loss, &c);
    double *gb = fd_grad(bias_d, OC, mm_loss, &c);
    check(st, 1, op, "dinp", dinp, dinp0, gi, N * C, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dw", dw, dw0, gw, (size_t)OC * C, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dbias", db, db0, gb, OC, BWD_ATOL, BWD_RTOL);
    // Frozen inputs: NULL gradients are skipped, the others still right.
    float *dw2 = copyf(dw0, (size_t)OC * C);
    matmul_backward(NULL, dw2, NULL, R, inp, w, N, C, OC);
    check(st, 1, op, "dw(dinp,dbias NULL)", dw2, dw0, gw, (size_t)OC * C, BWD_ATOL, BWD_RTOL);
    float *dinp2 = copyf(dinp0, N * C);
    matmul_backward(dinp2, NULL, NULL, R, inp, w, N, C, OC);
    check(st, 1, op, "dinp(dw,dbias NULL)", dinp2, dinp0, gi, N * C, BWD_ATOL, BWD_RTOL);
    free(inp); free(w); free(bias); free(out); free(inp_d); free(w_d); free(bias_d); free(out_d);
    free(out_nb); free(R); free(dinp0); free(dw0); free(db0); free(dinp); free(dw); free(db);
    free(gi); free(gw); free(gb); free(dw2); free(dinp2);
}

// Sizes that split every sgemm into tiles both ways and engage threads; the analytic double
// reference (the formulas the small case proved by finite differences) replaces FD here.
static void test_matmul_tiled(Stat *st, size_t N, int C, int OC) {
    const char *op = "matmul";
    float *inp = randf(N * C, 1.0), *w = randf((size_t)OC * C, 0.5), *bias = randf(OC, 1.0);
    float *out = nanf_buf(N * OC);
    matmul_forward(out, inp, w, bias, N, C, OC);
    double *inp_d = to_double(inp, N * C), *w_d = to_double(w, (size_t)OC * C);
    double *bias_d = to_double(bias, OC), *out_d = zerod(N * OC);
    ref_matmul(out_d, inp_d, w_d, bias_d, N, C, OC);
    check(st, 0, op, "out(tiled)", out, NULL, out_d, N * OC, FWD_ATOL, FWD_RTOL);

    float *R = randf(N * OC, 1.0);
    float *dinp0 = randf(N * C, 1.0), *dw0 = randf((size_t)OC * C, 1.0), *db0 = randf(OC, 1.0);
    float *dinp = copyf(dinp0, N * C), *dw = copyf(dw0, (size_t)OC * C), *db = copyf(db0, OC);
    matmul_backward(dinp, dw, db, R, inp, w, N, C, OC);
    double *gi = zerod(N * C), *gw = zerod((size_t)OC * C), *gb = zerod(OC);
    for (size_t n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double r = R[n * OC + o];
            gb[o] += r;
            for (int c = 0; c < C; c++) {
                gi[n * C + c] += r * w_d[(size_t)o * C + c];
                gw[(size_t)o * C + c] += r * inp_d[n * C + c];
            }
        }
    check(st, 1, op, "dinp(tiled)", dinp, dinp0, gi, N * C, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dw(tiled)", dw, dw0, gw, (size_t)OC * C, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dbias(tiled)", db, db0, gb, OC, BWD_ATOL, BWD_RTOL);
    free(inp); free(w); free(bias); free(out); free(inp_d); free(w_d); free(bias_d); free(out_d);
    free(R); free(dinp0); free(dw0); free(db0); free(dinp); free(dw); free(db); free(gi);
    free(gw); free(gb);
}

// ---- packed layouts --------------------------------------------------------------------------

typedef struct {
    int n;
    int64_t off[8];
} Layout;

static Layout make_layout(int n, const int *lens) {
    if (n > 7) {
        fprintf(stderr, "make_layout: at most 7 samples\n");
        exit(2);
    }
    Layout l = {n, {0}};
    for (int s = 0; s < n; s++) l.off[s + 1] = l.off[s] + lens[s];
    return l;
}

// ---- rope ------------------------------------------------------------------------------------

typedef struct {
    double *x, *out, *cs, *sn; // cs, sn (N, hd/2): angles do not depend on x
    const float *R;
    size_t N;
    int nh, hd;
} RopeCtx;

static void ref_rope_angles(double *cs, double *sn, const Layout *l, int hd, double theta) {
    int half = hd / 2;
    for (int s = 0; s < l->n; s++)
        for (int64_t t = l->off[s]; t < l->off[s + 1]; t++)
            for (int i = 0; i < half; i++) {
                double a = (double)(t - l->off[s]) * pow(theta, -2.0 * i / hd);
                cs[t * half + i] = cos(a);
                sn[t * half + i] = sin(a);
            }
}

static void ref_rope(double *out, const double *x, const double *cs, const double *sn, size_t N,
                     int nh, int hd) {
    int half = hd / 2;
    for (size_t n = 0; n < N; n++)
        for (int h = 0; h < nh; h++) {
            const double *xh = x + (n * nh + h) * hd;
            double *oh = out + (n * nh + h) * hd;
            for (int i = 0; i < half; i++) {
                double c = cs[n * half + i], s = sn[n * half + i];
                oh[i] = xh[i] * c - xh[i + half] * s;
                oh[i + half] = xh[i + half] * c + xh[i] * s;
            }
        }
}

static double rope_loss(void *p) {
    RopeCtx *c = p;
    ref_rope(c->out, c->x, c->cs, c->sn, c->N, c->nh, c->hd);
    return dot_d(c->out, c->R, c->N * c->nh * c->hd);
}

// use_fd = 0 (sizes too big for finite differences): the backward is checked against the
// transposed rotation applied in double.
static void test_rope(Stat *st, int ns, const int *lens, int nh, int hd, float theta,
                      int use_fd) {
    const char *op = "rope";
    Layout l = make_layout(ns, lens);
    SampleLayout sl = {l.n, l.off};
    size_t N = (size_t)l.off[ns], n = N * nh * hd;
    int half = hd / 2;
    float *x = randf(n, 1.0), *y = copyf(x, n);
    rope_forward(y, &sl, nh, hd, theta);
    double *x_d = to_double(x, n), *out_d = zerod(n);
    double *cs = zerod(N * half), *sn = zerod(N * half);
    ref_rope_angles(cs, sn, &l, hd, theta);
    ref_rope(out_d, x_d, cs, sn, N, nh, hd);
    check(st, 0, op, "x", y, NULL, out_d, n, FWD_ATOL, FWD_RTOL);
    // The float recipe of ops.h/llama2.c, bit for bit: greedy generation depends on it.
    double *exact = zerod(n);
    for (int s = 0; s < ns; s++)
        for (int64_t t = l.off[s]; t < l.off[s + 1]; t++)
            for (int h = 0; h < nh; h++)
                for (int i = 0; i < half; i++) {
                    float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
                    float angle = (float)(int)(t - l.off[s]) * inv_freq;
                    float c = cosf(angle), sgn = sinf(angle);
                    float a = x[(t * nh + h) * hd + i], b = x[(t * nh + h) * hd + i + half];
                    exact[(t * nh + h) * hd + i] = a * c - b * sgn;
                    exact[(t * nh + h) * hd + i + half] = b * c + a * sgn;
                }
    check(st, 0, op, "x(float recipe, exact)", y, NULL, exact, n, 0.0, 0.0);

    // Backward is in place: dx holds dout on entry and R^T dout on return.
    float *R = randf(n, 1.0), *dx = copyf(R, n);
    rope_backward(dx, &sl, nh, hd, theta);
    double *g;
    if (use_fd) {
        RopeCtx c = {x_d, out_d, cs, sn, R, N, nh, hd};
        g = fd_grad(x_d, n, rope_loss, &c);
    } else {
        double *R_d = to_double(R, n), *sn_neg = zerod(N * half);
        for (size_t i = 0; i < N * (size_t)half; i++) sn_neg[i] = -sn[i];
        g = zerod(n);
        ref_rope(g, R_d, cs, sn_neg, N, nh, hd);
        free(R_d);
        free(sn_neg);
    }
    check(st, 1, op, "dx", dx, NULL, g, n, BWD_ATOL, BWD_RTOL);
    free(x); free(y); free(x_d); free(out_d); free(cs); free(sn); free(exact); free(R); free(dx);
    free(g);
}

// ---- attention -------------------------------------------------------------------------------

typedef struct {
    double *q, *k, *v, *out;
    const float *R;
    const Layout *l;
    int H, KV, hd;
} AttCtx;

// lse (optional): each query row's log-sum-exp, as attention_forward saves it.
static void ref_attention(double *out, double *lse, const double *q, const double *k,
                          const double *v, const Layout *l, int H, int KV, int hd) {
    double scale = 1.0 / sqrt((double)hd);
    double p[256];
    for (int s = 0; s < l->n; s++) {
        int T = (int)(l->off[s + 1] - l->off[s]);
        if (T > 256) {
            fprintf(stderr, "ref_attention: samples of at most 256 tokens\n");
            exit(2);
        }
        for (int h = 0; h < H; h++) {
            int g = h / (H / KV);
            for (int t = 0; t < T; t++) {
                const double *qt = q + ((l->off[s] + t) * H + h) * hd;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j <= t; j++) {
                    const double *kj = k + ((l->off[s] + j) * KV + g) * hd;
                    double d = 0.0;
                    for (int i = 0; i < hd; i++) d += qt[i] * kj[i];
                    p[j] = d * scale;
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - mx));
                if (lse) lse[(l->off[s] + t) * H + h] = mx + log(sum);
                double *ot = out + ((l->off[s] + t) * H + h) * hd;
                for (int i = 0; i < hd; i++) ot[i] = 0.0;
                for (int j = 0; j <= t; j++) {
                    p[j] /= sum;
                    const double *vj = v + ((l->off[s] + j) * KV + g) * hd;
                    for (int i = 0; i < hd; i++) ot[i] += p[j] * vj[i];
                }
            }
        }
    }
}

static double att_loss(void *p) {
    AttCtx *c = p;
    ref_attention(c->out, NULL, c->q, c->k, c->v, c->l, c->H, c->KV, c->hd);
    return dot_d(c->out, c->R, (size_t)c->l->off[c->l->n] * c->H * c->hd);
}

static void test_attention(Stat *st, int ns, const int *lens, int H, int KV, int hd) {
    char op[64];
    snprintf(op, sizeof op, "attention(H=%d,KV=%d,hd=%d)", H, KV, hd);
    Layout l = make_layout(ns, lens);
    SampleLayout sl = {l.n, l.off};
    size_t N = (size_t)l.off[ns];
    size_t nq = N * H * hd, nk = N * KV * hd;
    size_t nl = N * H;
    float *q = randf(nq, 1.5), *k = randf(nk, 1.5), *v = randf(nk, 1.0);
    float *out = nanf_buf(nq), *lse = nanf_buf(nl);
    attention_forward(out, lse, q, k, v, &sl, H, KV, hd);
    double *q_d = to_double(q, nq), *k_d = to_double(k, nk), *v_d = to_double(v, nk);
    double *out_d = zerod(nq), *lse_d = zerod(nl);
    ref_attention(out_d, lse_d, q_d, k_d, v_d, &l, H, KV, hd);
    check(st, 0, op, "out", out, NULL, out_d, nq, FWD_ATOL, FWD_RTOL);
    check(st, 0, op, "lse", lse, NULL, lse_d, nl, FWD_ATOL, FWD_RTOL);

    float *R = randf(nq, 1.0);
    float *dq0 = randf(nq, 1.0), *dk0 = randf(nk, 1.0), *dv0 = randf(nk, 1.0);
    float *dq = copyf(dq0, nq), *dk = copyf(dk0, nk), *dv = copyf(dv0, nk);
    attention_backward(dq, dk, dv, R, out, lse, q, k, v, &sl, H, KV, hd);
    AttCtx c = {q_d, k_d, v_d, out_d, R, &l, H, KV, hd};
    double *gq = fd_grad(q_d, nq, att_loss, &c);
    double *gk = fd_grad(k_d, nk, att_loss, &c);
    double *gv = fd_grad(v_d, nk, att_loss, &c);
    check(st, 1, op, "dq", dq, dq0, gq, nq, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dk", dk, dk0, gk, nk, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dv", dv, dv0, gv, nk, BWD_ATOL, BWD_RTOL);
    free(q); free(k); free(v); free(out); free(lse); free(q_d); free(k_d); free(v_d);
    free(out_d); free(lse_d); free(R); free(dq0); free(dk0); free(dv0); free(dq); free(dk);
    free(dv); free(gq); free(gk); free(gv);
}

// ---- swiglu and residual ---------------------------------------------------------------------

typedef struct {
    double *gate, *up, *out;
    const float *R;
    size_t n;
} SwiCtx;

static void ref_swiglu(double *out, const double *gate, const double *up, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = gate[i] / (1.0 + exp(-gate[i])) * up[i];
}

static double swi_loss(void *p) {
    SwiCtx *c = p;
    ref_swiglu(c->out, c->gate, c->up, c->n);
    return dot_d(c->out, c->R, c->n);
}

static void test_swiglu(Stat *st, size_t n) {
    const char *op = "swiglu";
    float *gate = randf(n, 5.0), *up = randf(n, 1.0);
    gate[0] = -100.0f; // exp(-g) overflows to inf: silu must still be (-)0
    gate[1] = 30.0f;
    float *out = nanf_buf(n);
    swiglu_forward(out, gate, up, n);
    double *gate_d = to_double(gate, n), *up_d = to_double(up, n), *out_d = zerod(n);
    ref_swiglu(out_d, gate_d, up_d, n);
    check(st, 0, op, "out", out, NULL, out_d, n, FWD_ATOL, FWD_RTOL);

    float *R = randf(n, 1.0);
    float *dg0 = randf(n, 1.0), *du0 = randf(n, 1.0);
    float *dg = copyf(dg0, n), *du = copyf(du0, n);
    swiglu_backward(dg, du, R, gate, up, n);
    SwiCtx c = {gate_d, up_d, out_d, R, n};
    double *gg = fd_grad(gate_d, n, swi_loss, &c);
    double *gu = fd_grad(up_d, n, swi_loss, &c);
    check(st, 1, op, "dgate", dg, dg0, gg, n, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dup", du, du0, gu, n, BWD_ATOL, BWD_RTOL);
    free(gate); free(up); free(out); free(gate_d); free(up_d); free(out_d); free(R); free(dg0);
    free(du0); free(dg); free(du); free(gg); free(gu);
}

static void test_residual(Stat *st, size_t n) {
    const char *op = "residual";
    float *a = randf(n, 1.0), *b = randf(n, 1.0), *out = nanf_buf(n);
    residual_forward(out, a, b, n);
    double *e = zerod(n);
    // The exact sum rounded once to float: what one float add must give.
    for (size_t i = 0; i < n; i++) e[i] = (float)((double)a[i] + (double)b[i]);
    check(st, 0, op, "out", out, NULL, e, n, 0.0, 0.0);
    residual_forward(a, a, b, n); // out aliases a
    check_true(st, memcmp(a, out, n * sizeof(float)) == 0, op, "out aliasing a differs");
    free(a); free(b); free(out); free(e);
}

// ---- per-row mean squared error ---------------------------------------------------------------

typedef struct {
    double *h;
    const double *y; // (M, D), or (D) shared when per_row is 0
    const float *weight;
    size_t M;
    int D, per_row;
} MseCtx;

// sum_j weight[j] * mse_j; fills mse when given.
static double ref_rows_mse(double *mse, const MseCtx *c) {
    double loss = 0.0;
    for (size_t j = 0; j < c->M; j++) {
        const double *y = c->per_row ? c->y + j * c->D : c->y;
        double s = 0.0;
        for (int d = 0; d < c->D; d++) {
            const double diff = c->h[j * c->D + d] - y[d];
            s += diff * diff;
        }
        if (mse) mse[j] = s / c->D;
        loss += c->weight[j] * (s / c->D);
    }
    return loss;
}

static double mse_loss(void *p) { return ref_rows_mse(NULL, p); }

static void test_rows_mse(Stat *st, size_t M, int D, int per_row) {
    const char *op = "rows_mse";
    const size_t ny = per_row ? M * D : (size_t)D;
    float *h = randf(M * D, 3.0), *y = randf(ny, 3.0), *weight = randf(M, 2.0);
    float *mse = nanf_buf(M), *dh = nanf_buf(M * D);
    rows_mse_forward(mse, h, per_row ? y : NULL, per_row ? NULL : y, M, D);
    rows_mse_backward(dh, h, per_row ? y : NULL, per_row ? NULL : y, weight, M, D);
    double *h_d = to_double(h, M * D), *y_d = to_double(y, ny), *mse_d = zerod(M);
    MseCtx c = {h_d, y_d, weight, M, D, per_row};
    ref_rows_mse(mse_d, &c);
    check(st, 0, op, "mse", mse, NULL, mse_d, M, FWD_ATOL, FWD_RTOL);
    // dh is written, not accumulated: compared without a base.
    double *gh = fd_grad(h_d, M * D, mse_loss, &c);
    check(st, 1, op, "dh", dh, NULL, gh, M * D, BWD_ATOL, BWD_RTOL);
    free(h); free(y); free(weight); free(mse); free(dh); free(h_d); free(y_d); free(mse_d);
    free(gh);
}

// ---- classifier ------------------------------------------------------------------------------

typedef struct {
    double *x, *w, *logits;
    const int32_t *targets;
    const float *weight;
    size_t M;
    int D, V;
} ClsCtx;

// logits scratch (V); returns sum_m weight[m] * NLL_m, fills logprob and lse when given.
static double ref_classifier(double *logprob, double *lse, double *logits, const double *x,
                             const double *w, const int32_t *targets, const float *weight,
                             size_t M, int D, int V) {
    double loss = 0.0;
    for (size_t m = 0; m < M; m++) {
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) {
            double s = 0.0;
            for (int i = 0; i < D; i++) s += x[m * D + i] * w[(size_t)j * D + i];
            logits[j] = s;
            if (s > mx) mx = s;
        }
        for (int j = 0; j < V; j++) sum += exp(logits[j] - mx);
        double l = mx + log(sum), lp = logits[targets[m]] - l;
        if (logprob) logprob[m] = lp;
        if (lse) lse[m] = l;
        if (weight) loss -= weight[m] * lp;
    }
    return loss;
}

static double cls_loss(void *p) {
    ClsCtx *c = p;
    return ref_classifier(NULL, NULL, c->logits, c->x, c->w, c->targets, c->weight, c->M, c->D,
                          c->V);
}

// Analytic double reference of the weighted backward, for sizes too big for finite differences.
static void ref_classifier_backward(double *dx, double *dw, const double *x, const double *w,
                                    const int32_t *targets, const float *weight, size_t M, int D,
                                    int V) {
    double *dl = zerod(V);
    for (size_t m = 0; m < M; m++) {
        if (weight[m] == 0.0f) continue;
        double lse;
        ref_classifier(NULL, &lse, dl, x + m * D, w, targets + m, NULL, 1, D, V);
        for (int j = 0; j < V; j++) dl[j] = weight[m] * (exp(dl[j] - lse) - (j == targets[m]));
        for (int j = 0; j < V; j++)
            for (int i = 0; i < D; i++) {
                dx[m * D + i] += dl[j] * w[(size_t)j * D + i];
                dw[(size_t)j * D + i] += dl[j] * x[m * D + i];
            }
    }
    free(dl);
}

static void test_classifier(Stat *st, size_t M, int D, int V, int use_fd) {
    const char *op = "classifier";
    float *x = randf(M * D, 1.0), *w = randf((size_t)V * D, 1.0);
    int32_t *targets = xmalloc(M * sizeof(int32_t));
    float *weight = xmalloc(M * sizeof(float));
    for (size_t m = 0; m < M; m++) {
        targets[m] = (int32_t)((urand() + 1.0) * 0.5 * V) % V;
        weight[m] = (float)(0.3 + urand()); // mixed signs, as gradient ascent produces
    }
    targets[0] = 0;
    targets[M - 1] = V - 1;
    weight[1] = 0.0f; // a row that must contribute nothing
    size_t nscr = classifier_scratch_size(M, V);
    check_true(st, nscr >= (size_t)V, op, "classifier_scratch_size smaller than one row");
    float *scratch = nanf_buf(nscr), *logprob = nanf_buf(M), *lse = nanf_buf(M);
    classifier_forward(logprob, lse, scratch, x, w, targets, M, D, V);
    double *x_d = to_double(x, M * D), *w_d = to_double(w, (size_t)V * D);
    double *logits = zerod(V), *logprob_d = zerod(M), *lse_d = zerod(M);
    ref_classifier(logprob_d, lse_d, logits, x_d, w_d, targets, NULL, M, D, V);
    check(st, 0, op, "logprob", logprob, NULL, logprob_d, M, FWD_ATOL, FWD_RTOL);
    check(st, 0, op, "lse", lse, NULL, lse_d, M, FWD_ATOL, FWD_RTOL);

    float *dx0 = randf(M * D, 1.0), *dw0 = randf((size_t)V * D, 1.0);
    float *dx = copyf(dx0, M * D), *dw = copyf(dw0, (size_t)V * D);
    for (size_t i = 0; i < nscr; i++) scratch[i] = NAN;
    classifier_backward(dx, dw, scratch, x, w, targets, lse, weight, M, D, V);
    double *gx, *gw;
    if (use_fd) {
        ClsCtx c = {x_d, w_d, logits, targets, weight, M, D, V};
        gx = fd_grad(x_d, M * D, cls_loss, &c);
        gw = fd_grad(w_d, (size_t)V * D, cls_loss, &c);
    } else {
        gx = zerod(M * D);
        gw = zerod((size_t)V * D);
        ref_classifier_backward(gx, gw, x_d, w_d, targets, weight, M, D, V);
    }
    check(st, 1, op, "dx", dx, dx0, gx, M * D, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dw", dw, dw0, gw, (size_t)V * D, BWD_ATOL, BWD_RTOL);
    float *dx2 = copyf(dx0, M * D);
    classifier_backward(dx2, NULL, scratch, x, w, targets, lse, weight, M, D, V);
    check(st, 1, op, "dx(dw NULL)", dx2, dx0, gx, M * D, BWD_ATOL, BWD_RTOL);
    free(x); free(w); free(targets); free(weight); free(scratch); free(logprob); free(lse);
    free(x_d); free(w_d); free(logits); free(logprob_d); free(lse_d); free(dx0); free(dw0);
    free(dx); free(dw); free(gx); free(gw); free(dx2);
}

// ---- classifier with a soft target -------------------------------------------------------------

// log-softmax of one row's logits x[m] @ w^T into out (V).
static void ref_log_softmax(double *out, const double *x, const double *w, int D, int V) {
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < V; j++) {
        double s = 0.0;
        for (int i = 0; i < D; i++) s += x[i] * w[(size_t)j * D + i];
        out[j] = s;
        if (s > mx) mx = s;
    }
    for (int j = 0; j < V; j++) sum += exp(out[j] - mx);
    for (int j = 0; j < V; j++) out[j] -= mx + log(sum);
}

// The soft target q (M, V) of classifier_soft in double: softmax of the source logits
// xs @ ws^T with shift added at each row's target; -inf leaves the target out (q = 0 there).
static void ref_soft_q(double *q, const double *xs, const double *ws, const int32_t *targets,
                       float shift, size_t M, int D, int V) {
    for (size_t m = 0; m < M; m++) {
        double *row = q + m * V, mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++) {
            double s = 0.0;
            for (int i = 0; i < D; i++) s += xs[m * D + i] * ws[(size_t)j * D + i];
            row[j] = j == targets[m] ? s + shift : s;
            if (row[j] > mx) mx = row[j];
        }
        for (int j = 0; j < V; j++) sum += row[j] == -INFINITY ? 0.0 : exp(row[j] - mx);
        for (int j = 0; j < V; j++) row[j] = row[j] == -INFINITY ? 0.0 : exp(row[j] - mx) / sum;
    }
}

// The loss of the soft-target head with q held fixed (it is a constant in the gradient), so that
// finite differences over x and w check dlogits = weight * (p - q).
typedef struct {
    double *x, *w;
    const double *q;
    const float *weight;
    size_t M;
    int D, V, cross_entropy;
} SoftCtx;

// Fills loss (M) when given; returns sum_m weight[m] * loss_m.
static double ref_soft_loss(double *loss, const SoftCtx *c) {
    double *lp = zerod(c->V), total = 0.0;
    for (size_t m = 0; m < c->M; m++) {
        ref_log_softmax(lp, c->x + m * c->D, c->w, c->D, c->V);
        const double *q = c->q + m * c->V;
        double l = 0.0;
        for (int j = 0; j < c->V; j++)
            if (q[j] > 0.0) l += c->cross_entropy ? -q[j] * lp[j] : q[j] * (log(q[j]) - lp[j]);
        if (loss) loss[m] = l;
        if (c->weight) total += c->weight[m] * l;
    }
    free(lp);
    return total;
}

static double soft_loss(void *p) { return ref_soft_loss(NULL, p); }

// Analytic double reference of the backward, for sizes too big for finite differences.
static void ref_soft_backward(double *dx, double *dw, const SoftCtx *c) {
    const int D = c->D, V = c->V;
    double *lp = zerod(V);
    for (size_t m = 0; m < c->M; m++) {
        if (c->weight[m] == 0.0f) continue;
        ref_log_softmax(lp, c->x + m * D, c->w, D, V);
        for (int j = 0; j < V; j++) {
            double dl = c->weight[m] * (exp(lp[j]) - c->q[m * V + j]);
            for (int i = 0; i < D; i++) {
                dx[m * D + i] += dl * c->w[(size_t)j * D + i];
                dw[(size_t)j * D + i] += dl * c->x[m * D + i];
            }
        }
    }
    free(lp);
}

// The three soft targets the methods use: KL to a reference model (the KL retain term), the
// reference with the target's logit lowered and the cross-entropy (UNDIAL), and the model's own
// distribution without the target and the cross-entropy (CE-U).
typedef enum { SOFT_KL_REF, SOFT_UNDIAL, SOFT_CEU } SoftVariant;

static void test_classifier_soft(Stat *st, size_t M, int D, int V, int use_fd,
                                 SoftVariant variant) {
    const char *ops[] = {"soft(kl,ref)", "soft(undial)", "soft(ce-u)"};
    const char *op = ops[variant];
    float *x = randf(M * D, 1.0), *w = randf((size_t)V * D, 1.0);
    float *xr = randf(M * D, 1.0), *wr = randf((size_t)V * D, 1.0);
    float *weight = xmalloc(M * sizeof(float));
    int32_t *targets = xmalloc(M * sizeof(int32_t));
    for (size_t m = 0; m < M; m++) {
        weight[m] = (float)(0.3 + urand());
        targets[m] = (int32_t)((urand() + 1.0) * 0.5 * V) % V; // urand is in [-1, 1)
    }
    weight[M / 2] = 0.0f;
    targets[0] = V - 1; // the last column: alone in the last tile of some tilings
    const int own = variant == SOFT_CEU;
    SoftTarget q = {own ? NULL : xr, own ? NULL : wr, targets,
                    variant == SOFT_UNDIAL ? -2.5f : variant == SOFT_CEU ? -INFINITY : 0.0f,
                    variant != SOFT_KL_REF};
    size_t nscr = classifier_soft_scratch_size(M, V);
    check_true(st, nscr >= 2 * (size_t)V, op, "scratch smaller than two rows");
    float *scratch = nanf_buf(nscr), *loss = nanf_buf(M), *lse = nanf_buf(M);
    float *logprob = nanf_buf(M), *gap = nanf_buf(M);
    classifier_soft_forward(loss, lse, gap, logprob, scratch, x, w, &q, M, D, V);
    double *x_d = to_double(x, M * D), *w_d = to_double(w, (size_t)V * D);
    double *xr_d = to_double(xr, M * D), *wr_d = to_double(wr, (size_t)V * D);
    double *q_d = zerod(M * (size_t)V);
    ref_soft_q(q_d, own ? x_d : xr_d, own ? w_d : wr_d, targets, q.shift, M, D, V);
    SoftCtx c = {x_d, w_d, q_d, weight, M, D, V, q.cross_entropy};
    double *loss_d = zerod(M), *lse_d = zerod(M), *logprob_d = zerod(M), *logits = zerod(V);
    ref_soft_loss(loss_d, &c);
    ref_classifier(logprob_d, lse_d, logits, x_d, w_d, targets, NULL, M, D, V);
    check(st, 0, op, "loss", loss, NULL, loss_d, M, FWD_ATOL, FWD_RTOL);
    check(st, 0, op, "lse", lse, NULL, lse_d, M, FWD_ATOL, FWD_RTOL);
    check(st, 0, op, "logprob", logprob, NULL, logprob_d, M, FWD_ATOL, FWD_RTOL);
    if (variant == SOFT_KL_REF) {
        // KL of a distribution with itself is zero: the reference equal to the current model.
        SoftTarget self = {x, w, targets, 0.0f, 0};
        float *kl_self = nanf_buf(M);
        classifier_soft_forward(kl_self, lse, gap, NULL, scratch, x, w, &self, M, D, V);
        double worst = 0.0;
        for (size_t m = 0; m < M; m++) worst = fmax(worst, fabs(kl_self[m]));
        check_true(st, worst < 1e-5, op, "KL(p || p) is not zero");
        free(kl_self);
        classifier_soft_forward(loss, lse, gap, logprob, scratch, x, w, &q, M, D, V);
    }

    float *dx0 = randf(M * D, 1.0), *dw0 = randf((size_t)V * D, 1.0);
    float *dx = copyf(dx0, M * D), *dw = copyf(dw0, (size_t)V * D);
    for (size_t i = 0; i < nscr; i++) scratch[i] = NAN;
    classifier_soft_backward(dx, dw, scratch, x, w, &q, lse, gap, weight, M, D, V);
    double *gx, *gw;
    if (use_fd) {
        gx = fd_grad(x_d, M * D, soft_loss, &c);
        gw = fd_grad(w_d, (size_t)V * D, soft_loss, &c);
    } else {
        gx = zerod(M * D);
        gw = zerod((size_t)V * D);
        ref_soft_backward(gx, gw, &c);
    }
    check(st, 1, op, "dx", dx, dx0, gx, M * D, BWD_ATOL, BWD_RTOL);
    check(st, 1, op, "dw", dw, dw0, gw, (size_t)V * D, BWD_ATOL, BWD_RTOL);
    float *dx2 = copyf(dx0, M * D);
    classifier_soft_backward(dx2, NULL, scratch, x, w, &q, lse, gap, weight, M, D, V);
    check(st, 1, op, "dx(dw NULL)", dx2, dx0, gx, M * D, BWD_ATOL, BWD_RTOL);
    free(x); free(w); free(xr); free(wr); free(weight); free(targets); free(scratch);
    free(loss); free(lse); free(logprob); free(gap); free(x_d); free(w_d); free(xr_d); free(wr_d); free(q_d);
    free(loss_d); free(lse_d); free(logprob_d); free(logits); free(dx0); free(dw0); free(dx);
    free(dw); free(gx); free(gw); free(dx2);
}

// ---- determinism -----------------------------------------------------------------------------

typedef struct {
    float *buf[16];
    size_t n[16];
    int count;
} Outputs;

static void outputs_add(Outputs *o, const float *x, size_t n) {
    if (o->count == (int)(sizeof o->buf / sizeof o->buf[0])) {
        fprintf(stderr, "outputs_add: more outputs than Outputs holds\n");
        exit(2);
    }
    o->buf[o->count] = copyf(x, n);
    o->n[o->count++] = n;
}

static void outputs_free(Outputs *o) {
    for (int i = 0; i < o->count; i++) free(o->buf[i]);
}

// Runs the reducing ops at sizes where OpenMP engages; every output is kept for comparison.
static Outputs run_reducing_ops(uint64_t seed) {
    Outputs o = {{0}, {0}, 0};
    g_rng = seed;
    int lens[] = {70, 33, 1, 128};
    Layout l = make_layout(4, lens);
    SampleLayout sl = {l.n, l.off};
    int H = 8, KV = 2, hd = 16;
    size_t N = (size_t)l.off[4], nq = N * H * hd, nk = N * KV * hd;
    float *q = randf(nq, 1.5), *k = randf(nk, 1.5), *v = randf(nk, 1.0), *dout = randf(nq, 1.0);
    float *out = nanf_buf(nq), *att_lse = nanf_buf(N * H);
    float *dq = randf(nq, 1.0), *dk = randf(nk, 1.0), *dv = randf(nk, 1.0);
    attention_forward(out, att_lse, q, k, v, &sl, H, KV, hd);
    attention_backward(dq, dk, dv, dout, out, att_lse, q, k, v, &sl, H, KV, hd);
    outputs_add(&o, out, nq);
    outputs_add(&o, dq, nq);
    outputs_add(&o, dk, nk);
    outputs_add(&o, dv, nk);
    free(q); free(k); free(v); free(dout); free(out); free(att_lse); free(dq);
    free(dk); free(dv);

    size_t M = 300;
    int D = 32, V = 20000; // several chunks
    float *x = randf(M * D, 1.0), *w = randf((size_t)V * D, 1.0);
    int32_t *targets = xmalloc(M * sizeof(int32_t));
    float *weight = xmalloc(M * sizeof(float));
    for (size_t m = 0; m < M; m++) {
        targets[m] = (int32_t)(m * 7919 % (size_t)V);
        weight[m] = m % 5 == 0 ? 0.0f : (float)urand();
    }
    float *cs = nanf_buf(classifier_scratch_size(M, V)), *lp = nanf_buf(M), *lse = nanf_buf(M);
    float *dx = randf(M * D, 1.0), *dw = randf((size_t)V * D, 1.0);
    classifier_forward(lp, lse, cs, x, w, targets, M, D, V);
    classifier_backward(dx, dw, cs, x, w, targets, lse, weight, M, D, V);
    outputs_add(&o, lse, M);
    outputs_add(&o, dx, M * D);
    outputs_add(&o, dw, (size_t)V * D);
    free(w); free(targets); free(weight); free(cs); free(lp); free(lse); free(dx); free(dw);

    // rmsnorm dw and matmul dbias reduce over rows.
    size_t Nr = 500;
    int Dr = 200;
    float *xr = randf(Nr * Dr, 1.0), *wr = randf(Dr, 1.0), *outr = nanf_buf(Nr * Dr);
    float *rstd = nanf_buf(Nr), *g = randf(Nr * Dr, 1.0), *dxr = randf(Nr * Dr, 1.0);
    float *dwr = randf(Dr, 1.0), *db = randf(Dr, 1.0);
    rmsnorm_forward(outr, rstd, xr, wr, Nr, Dr, 1e-5f);
    rmsnorm_backward(dxr, dwr, g, xr, wr, rstd, Nr, Dr);
    outputs_add(&o, dxr, Nr * Dr);
    outputs_add(&o, dwr, Dr);
    // matmul (Dr -> Dr): big enough for several sgemm tiles on several threads
    float *wm = randf((size_t)Dr * Dr, 0.1), *dwm = randf((size_t)Dr * Dr, 1.0);
    matmul_forward(outr, xr, wm, wr, Nr, Dr, Dr);
    outputs_add(&o, outr, Nr * Dr);
    matmul_backward(dxr, dwm, db, g, xr, wm, Nr, Dr, Dr);
    outputs_add(&o, dxr, Nr * Dr);
    outputs_add(&o, dwm, (size_t)Dr * Dr);
    free(wm); free(dwm);
    // embedding: Nr tokens over 7 rows of dwte, each row hit ~70 times
    int32_t *tok = xmalloc(Nr * sizeof(int32_t));
    for (size_t n = 0; n < Nr; n++) tok[n] = (int32_t)(n * 31 % 7);
    float *dwte = randf((size_t)7 * Dr, 1.0);
    embedding_backward(dwte, g, tok, Nr, Dr);
    outputs_add(&o, db, Dr);
    outputs_add(&o, dwte, (size_t)7 * Dr);
    free(x); free(xr); free(wr); free(outr); free(rstd); free(g); free(dxr); free(dwr); free(db);
    free(tok); free(dwte);
    return o;
}

static void test_determinism(Stat *st) {
    const char *op = "determinism";
    const char *names[] = {"attention out", "attention dq", "attention dk", "attention dv",
                           "classifier lse", "classifier dx", "classifier dw", "rmsnorm dx",
                           "rmsnorm dw", "matmul out", "matmul dinp", "matmul dw",
                           "matmul dbias", "embedding dwte"};
    int blas_threads = openblas_get_num_threads();
    // The kernels hold OpenBLAS to one thread themselves; a caller's setting must not matter.
    struct { int omp, blas; } runs[] = {{1, 1}, {2, 1}, {2, 1}, {3, 1}, {1, 2}, {2, 2}};
    omp_set_num_threads(runs[0].omp);
    openblas_set_num_threads(runs[0].blas);
    Outputs ref = run_reducing_ops(12345);
    for (size_t r = 1; r < sizeof runs / sizeof runs[0]; r++) {
        omp_set_num_threads(runs[r].omp);
        openblas_set_num_threads(runs[r].blas);
        Outputs o = run_reducing_ops(12345);
        for (int i = 0; i < o.count; i++) {
            if (memcmp(o.buf[i], ref.buf[i], o.n[i] * sizeof(float)) != 0) {
                char what[160];
                snprintf(what, sizeof what,
                         "%s differs between (omp 1, blas 1) and (omp %d, blas %d) threads",
                         names[i], runs[r].omp, runs[r].blas);
                check_true(st, 0, op, what);
            }
        }
        outputs_free(&o);
    }
    outputs_free(&ref);
    openblas_set_num_threads(blas_threads);
}

// ---- main ------------------------------------------------------------------------------------

int main(void) {
    Stat st;

    memset(&st, 0, sizeof st);
    test_embedding(&st, 15, 13, 37);
    test_embedding(&st, 9, 150, 11); // several column blocks in the backward
    stat_print("embedding", &st);

    memset(&st, 0, sizeof st);
    test_rmsnorm(&st, 7, 13);
    test_rmsnorm(&st, 5, 150);
    stat_print("rmsnorm", &st);

    memset(&st, 0, sizeof st);
    test_matmul(&st, 7, 13, 11);
    test_matmul(&st, 5, 9, 150);
    test_matmul_tiled(&st, 401, 390, 450);
    stat_print("matmul", &st);

    memset(&st, 0, sizeof st);
    int lens_a[] = {5, 1, 9};
    test_rope(&st, 3, lens_a, 3, 10, 10000.0f, 1);
    int lens_b[] = {40};
    test_rope(&st, 1, lens_b, 2, 64, 500000.0f, 1);
    int lens_e[] = {100, 1, 0, 77}; // threads start mid-sample; an empty sample
    test_rope(&st, 4, lens_e, 4, 64, 10000.0f, 0);
    stat_print("rope", &st);

    memset(&st, 0, sizeof st);
    test_attention(&st, 3, lens_a, 6, 2, 6);
    test_attention(&st, 3, lens_a, 6, 3, 10);
    int lens_c[] = {4, 7};
    test_attention(&st, 2, lens_c, 3, 3, 8); // multi-head
    test_attention(&st, 2, lens_c, 4, 1, 6); // multi-query
    int lens_d[] = {70, 3}; // longer than one row block, and past the threading threshold
    test_attention(&st, 2, lens_d, 4, 2, 4);
    stat_print("attention", &st);

    memset(&st, 0, sizeof st);
    test_swiglu(&st, 37);
    stat_print("swiglu", &st);

    memset(&st, 0, sizeof st);
    test_residual(&st, 37);
    test_residual(&st, 100003);
    stat_print("residual", &st);

    memset(&st, 0, sizeof st);
    test_rows_mse(&st, 7, 13, 1);
    test_rows_mse(&st, 5, 150, 0);
    test_rows_mse(&st, 300, 130, 1); // past the threading threshold
    stat_print("rows_mse", &st);

    memset(&st, 0, sizeof st);
    test_classifier(&st, 9, 13, 37, 1);
    test_classifier(&st, 70, 8, 60000, 0); // several chunks
    stat_print("classifier", &st);

    memset(&st, 0, sizeof st);
    for (SoftVariant v = SOFT_KL_REF; v <= SOFT_CEU; v++) {
        test_classifier_soft(&st, 9, 13, 37, 1, v);
        test_classifier_soft(&st, 7, 5, 200000, 0, v); // chunks of 5 rows: two chunks
    }
    stat_print("classifier_soft", &st);

    memset(&st, 0, sizeof st);
    test_determinism(&st);
    printf("%-12s attention, classifier, rmsnorm, matmul, embedding bit-identical over OpenMP "
           "1/2/3 and OpenBLAS 1/2 threads  %s\n", "determinism", st.fails ? "FAILED" : "ok");

    if (g_failures) {
        printf("%d check(s) FAILED\n", g_failures);
        return 1;
    }
    printf("all ops ok\n");
    return 0;
}
