// Evaluation statistics: scipy's two-sample KS test (exact and asymptotic), ROC AUC, harmonic mean,
// and the per-sample MIA / memorisation scores of open-unlearning, in plain double precision.
#include "eval_stats.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

// ---------------------------------------------------------------------------------------------
// Helpers

// numpy's pairwise summation (add.reduce over a contiguous float64 array), so that means and the
// harmonic mean round exactly as numpy's do: 8 running sums in blocks of up to 128 elements,
// halves (multiples of 8) above that.
static double pairwise_sum(const double *a, size_t n) {
    if (n < 8) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        size_t i;
        for (i = 8; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += a[i];
        return s;
    }
    size_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

// numpy's a.sum(): the first element is the reduction's start value, the rest summed pairwise.
static double numpy_sum(const double *a, size_t n) {
    return n == 0 ? 0.0 : a[0] + pairwise_sum(a + 1, n - 1);
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double *sorted_copy(const double *x, size_t n) {
    double *s = malloc((n ? n : 1) * sizeof *s);
    if (!s) return NULL;
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, compare_doubles);
    return s;
}

static double clip01(double p) { return p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p; }

// ---------------------------------------------------------------------------------------------
// Two-sample KS: the exact null distribution (scipy.stats._stats_py._attempt_exact_2kssamp).

// scipy's D: with F(v) = #{sample <= v} / size (searchsorted side='right'), the largest
// |F_x(v) - F_y(v)| over the pooled values v, each difference rounded as scipy rounds it.
static double ks_statistic(const double *x, size_t n, const double *y, size_t m) {
    double d = 0.0;
    size_t i = 0, j = 0;
    while (i < n || j < m) {
        double v = (j == m || (i < n && x[i] <= y[j])) ? x[i] : y[j];
        while (i < n && x[i] <= v) i++;
        while (j < m && y[j] <= v) j++;
        double diff = fabs((double)i / (double)n - (double)j / (double)m);
        if (diff > d) d = diff;
    }
    return d;
}

// P(D_{n,n} >= h/n) = 2 * (C(2n, n-h) - C(2n, n-2h) + C(2n, n-3h) - ...) / C(2n, n), each ratio
// a product of h factors, nested Horner-like to avoid the alternating sum's cancellation
// (scipy's _compute_prob_outside_square).
static double prob_outside_square(int64_t n, int64_t h) {
    double P = 0.0;
    for (int64_t k = (int64_t)floor((double)n / (double)h); k >= 0; k--) {
        double p1 = 1.0;
        for (int64_t j = 0; j < h; j++)
            p1 = (double)(n - k * h - j) * p1 / (double)(n + k * h + j + 1);
        P = p1 * (1.0 - P);
    }
    return 2 * P;
}

// P(D_{m,n} >= h/lcm(m,n)) for m != n: the lattice paths from (0,0) to (m,n) that leave the band
// |x/m - y/n| < h/lcm, counted column by column as probabilities (Hodges 1958; the recursion for
// 1 - p directly is Viehmann 2021, arXiv:2102.08037), in a sliding window of one column. A port of
// scipy's _compute_outer_prob_inside_method, including its float divisions. NaN when memory runs
// out.
static double outer_prob_inside(int64_t m, int64_t n, int64_t g, int64_t h) {
    if (m < n) {
        int64_t t = m;
        m = n;
        n = t;
    }
    int64_t mg = m / g, ng = n / g;
    int64_t minj = 0, maxj = (int64_t)ceil((double)h / (double)mg);
    if (maxj > n + 1) maxj = n + 1;
    int64_t curlen = maxj - minj;
    int64_t lenA = 2 * maxj + 2 < n + 1 ? 2 * maxj + 2 : n + 1;
    double *A = malloc((size_t)lenA * sizeof *A);
    if (!A) return NAN;
    for (int64_t j = 0; j < lenA; j++) A[j] = j < maxj ? 0.0 : 1.0;
    double result = NAN;
    for (int64_t i = 1; i <= m; i++) {
        int64_t lastminj = minj, lastlen = curlen;
        minj = (int64_t)floor((double)(ng * i - h) / (double)mg) + 1;
        if (minj < 0) minj = 0;
        if (minj > n) minj = n;
        maxj = (int64_t)ceil((double)(ng * i + h) / (double)mg);
        if (maxj > n + 1) maxj = n + 1;
        if (maxj <= minj) {
            result = 1.0;
            goto done;
        }
        double val = minj == 0 ? 0.0 : 1.0;
        for (int64_t jj = 0; jj < maxj - minj; jj++) {
            int64_t j = jj + minj, src = jj + minj - lastminj;
            if (src >= lenA || jj >= lenA) goto done; // scipy would raise: not reached
            val = (A[src] * (double)i + val * (double)j) / (double)(i + j);
            A[jj] = val;
        }
        curlen = maxj - minj;
        // Entries carried over from a longer previous column lie outside the band: set to 1.
        for (int64_t j = curlen; j < curlen + (lastlen - curlen) && j < lenA; j++) A[j] = 1.0;
    }
    result = A[maxj - minj - 1];
done:
    free(A);
    return result;
}

// ---------------------------------------------------------------------------------------------
// One-sample two-sided KS distribution, scipy.stats.kstwo (scipy/stats/_ksstats.py), for the
// asymptotic branch of ks_2samp.

#define KS_EP128 0x1p128
#define KS_EM128 0x1p-128
#define CEPHES_MINLOG (-7.08396418532264106224E2) // log(2^-1022)

// log(n! / n^n) by Stirling's series with n log n removed up front.
static double log_nfactorial_div_n_pow_n(double n) {
    static const double stirling[] = {
        -2.955065359477124183e-2, 6.4102564102564102564e-3, -1.9175269175269175269e-3,
        8.4175084175084175084e-4, -5.952380952380952381e-4, 7.9365079365079365079e-4,
        -2.7777777777777777778e-3, 8.3333333333333333333e-2,
    };
    double rn = 1.0 / n, x = rn / n, poly = 0.0;
    for (size_t i = 0; i < sizeof stirling / sizeof stirling[0]; i++) poly = poly * x + stirling[i];
    return log(n) / 2 - n + log(2 * M_PI) / 2 + rn * poly;
}

// Smirnov's one-sided tail P(D+_n >= x) by the Birnbaum-Tingey sum
//   x * sum_{v=0}^{v < n(1-x)} C(n,v) (x + v/n)^(v-1) (1 - x - v/n)^(n-v)
// (scipy.special.smirnov, cephes/kolmogorov.c). Every term is positive; they are summed from
// their logarithms in long double, which keeps the relative error near 1e-15 where scipy uses
// double-double arithmetic. kstwo only asks for the tail where n*x^2 >= 2.2 or x >= 0.5, where
// scipy also takes this lower sum (its alternating upper sum serves n*x^2 <= 0.25).
static double smirnov_sf(int64_t n, double x) {
    if (!(n > 0 && x >= 0.0 && x <= 1.0)) return NAN;
    if (n == 1) return 1.0 - x;
    if (x == 0.0) return 1.0;
    if (x == 1.0) return 0.0;
    // floor(n*x) and its remainder from the exactly represented product.
    double nx = (double)n * x, nx_err = fma((double)n, x, -nx);
    double nx_floor = floor(nx);
    if (nx_floor == nx && nx_err < 0) nx_floor -= 1.0;
    double alpha = (nx - nx_floor) + nx_err;
    if (alpha >= 1.0) {
        nx_floor += 1.0;
        alpha = 0.0;
    }
    int64_t nxfl = (int64_t)nx_floor;
    if (nxfl == 0 || (nxfl == 1 && alpha == 0)) return 1.0 - x * pow(1.0 + x, (double)(n - 1));
    if (-2.0 * (double)n * x * x < CEPHES_MINLOG) return 0.0;
    if (nxfl >= n - 1) return pow(1.0 - x, (double)n);
    if (n > 1000000) { // scipy's approximation for huge n: p ~ exp(-(6nx+1)^2 / 18n)
        double logp = -pow(6.0 * (double)n * x + 1, 2) / 18.0 / (double)n;
        return logp < -M_LN2 ? exp(logp) : 1.0 - -expm1(logp);
    }
    long double lg_n1 = lgammal((long double)n + 1), sum = 0.0L;
    for (int64_t v = 0; v <= n - nxfl - 1; v++) {
        long double up = (long double)v / (long double)n + x;               // x + v/n
        long double down = (long double)(n - v) / (long double)n - x;       // 1 - x - v/n
        if (down <= 0) break;
        long double log_binomial =
            lg_n1 - lgammal((long double)v + 1) - lgammal((long double)(n - v) + 1);
        long double log_term =
            log_binomial + (long double)(v - 1) * logl(up) + (long double)(n - v) * logl(down);
        sum += expl(log_term);
    }
    return clip01((double)(x * sum));
}

// P(D_n <= d) by Durbin's matrix: with d = (k - h)/n, the (k,k) entry of H^n times n!/n^n, H the
// (2k-1)x(2k-1) matrix of Marsaglia, Tsang & Wang (2003); powers by squaring, rescaled by 2^128
// as they grow. Suits small k = ceil(n d). NaN when memory runs out.
static double kolmogn_dmtw_cdf(int64_t n, double d) {
    if (d >= 1.0) return 1.0;
    double nd = (double)n * d;
    if (nd <= 0.5) return 0.0;
    int64_t k = (int64_t)ceil(nd);
    double h = (double)k - nd;
    size_t m = (size_t)(2 * k - 1);
    double *H = calloc(4 * m * m + 2 * m, sizeof *H);
    if (!H) return NAN;
    double *Hpwr = H + m * m, *prod = Hpwr + m * m, *sq = prod + m * m, *v = sq + m * m, *w = v + m;
    double fac = 1.0;
    for (size_t j = 1; j <= m; j++) {
        v[j - 1] = 1.0 - pow(h, (double)j);
        w[j - 1] = fac;
        fac /= (double)j; // may underflow: harmless
        v[j - 1] *= fac;
    }
    double tt = pow(fmax(2 * h - 1.0, 0), (double)m) - 2 * pow(h, (double)m);
    v[m - 1] = (1.0 + tt) * fac;
    for (size_t i = 1; i < m; i++)
        for (size_t r = i - 1; r < m; r++) H[r * m + i] = w[r - (i - 1)];
    for (size_t r = 0; r < m; r++) H[r * m] = v[r];
    for (size_t c = 0; c < m; c++) H[(m - 1) * m + c] = v[m - 1 - c];
    for (size_t r = 0; r < m; r++) Hpwr[r * m + r] = 1.0;

    int64_t expnt = 0, Hexpnt = 0;
    for (int64_t nn = n; nn > 0; nn /= 2) {
        if (nn % 2) {
            memset(prod, 0, m * m * sizeof *prod);
            for (size_t r = 0; r < m; r++)
                for (size_t l = 0; l < m; l++)
                    for (size_t c = 0; c < m; c++)
                        prod[r * m + c] += Hpwr[r * m + l] * H[l * m + c];
            memcpy(Hpwr, prod, m * m * sizeof *prod);
            expnt += Hexpnt;
        }
        memset(sq, 0, m * m * sizeof *sq);
        for (size_t r = 0; r < m; r++)
            for (size_t l = 0; l < m; l++)
                for (size_t c = 0; c < m; c++) sq[r * m + c] += H[r * m + l] * H[l * m + c];
        memcpy(H, sq, m * m * sizeof *sq);
        Hexpnt *= 2;
        if (fabs(H[(k - 1) * m + (k - 1)]) > KS_EP128) {
            for (size_t i = 0; i < m * m; i++) H[i] /= KS_EP128;
            Hexpnt += 128;
        }
    }
    long double p = Hpwr[(k - 1) * m + (k - 1)];
    free(H);
    for (int64_t i = 1; i <= n; i++) { // times n!/n^n
        p = (long double)i * p / (long double)n;
        if (fabsl(p) < KS_EM128) {
            p *= KS_EP128;
            expnt -= 128;
        }
    }
    if (expnt != 0) p = ldexpl(p, (int)expnt);
    return clip01((double)p);
}

// Row interval [j1, j2] of the Pomeranz recursion at step i (scipy's _pomeranz_compute_j1j2).
static void pomeranz_j1j2(int64_t i, int64_t n, int64_t ll, int64_t ceilf, int64_t roundf,
                          int64_t *j1, int64_t *j2) {
    int64_t a, b;
    if (i == 0) {
        a = -ll - ceilf - 1;
        b = ll + ceilf - 1;
    } else {
        int64_t half = (i + 1) / 2;
        if ((i + 1) % 2 == 0) { // i odd
            if (half == n + 1) {
                a = n - ll - ceilf - 1;
                b = n + ll + ceilf - 1;
            } else {
                a = half - 1 - ll - roundf - 1;
                b = half + ll - 1 + ceilf - 1;
            }
        } else {
            a = half - 1 - ll - 1;
            b = half + ll + roundf - 1;
        }
    }
    *j1 = a + 2 > 0 ? a + 2 : 0;
    *j2 = b < n ? b : n;
}

// P(D_n <= x) by Pomeranz's recursion (1974): 2n+1 convolutions of a row with Poisson-like
// weights, n! times the last entry, with 2^128 rescaling. NaN when memory runs out.
static double kolmogn_pomeranz_cdf(int64_t n, double x) {
    double t = (double)n * x;
    int64_t ll = (int64_t)floor(t);
    double f = t - (double)ll;
    double g = fmin(f, 1.0 - f);
    int64_t ceilf = f > 0 ? 1 : 0, roundf = f > 0.5 ? 1 : 0;
    int64_t npwrs = 2 * (ll + 1);
    double *mem = calloc((size_t)(5 * npwrs), sizeof *mem);
    if (!mem) return NAN;
    // (g/n)^m/m!, (2g/n)^m/m!, ((1-2g)/n)^m/m!: Poisson probabilities without their factor.
    double *gpower = mem, *twogpower = gpower + npwrs, *onem2gpower = twogpower + npwrs;
    double *V0 = onem2gpower + npwrs, *V1 = V0 + npwrs;
    gpower[0] = twogpower[0] = onem2gpower[0] = 1.0;
    double g_n = g / (double)n, two_g_n = 2 * g / (double)n, one_m2g_n = (1 - 2 * g) / (double)n;
    for (int64_t m = 1; m < npwrs; m++) {
        gpower[m] = gpower[m - 1] * g_n / (double)m;
        twogpower[m] = twogpower[m - 1] * two_g_n / (double)m;
        onem2gpower[m] = onem2gpower[m - 1] * one_m2g_n / (double)m;
    }
    V1[0] = 1.0;
    int64_t V0s = 0, V1s = 0, expnt = 0, j1, j2;
    pomeranz_j1j2(0, n, ll, ceilf, roundf, &j1, &j2);
    for (int64_t i = 1; i < 2 * n + 2; i++) {
        int64_t k1 = j1;
        double *swap = V0;
        V0 = V1;
        V1 = swap;
        int64_t swaps = V0s;
        V0s = V1s;
        V1s = swaps;
        memset(V1, 0, (size_t)npwrs * sizeof *V1);
        pomeranz_j1j2(i, n, ll, ceilf, roundf, &j1, &j2);
        const double *pwrs =
            (i == 1 || i == 2 * n + 1) ? gpower : (i % 2 ? twogpower : onem2gpower);
        int64_t ln2 = j2 - k1 + 1;
        if (ln2 <= 0) continue;
        // conv = full convolution of V0[k1-V0s ..][0..ln2) with pwrs[0..ln2); keep
        // conv[j1-k1 .. j1-k1 + (j2-j1+1)).
        const double *src = V0 + (k1 - V0s);
        int64_t src_len = npwrs - (k1 - V0s) < ln2 ? npwrs - (k1 - V0s) : ln2;
        int64_t conv_start = j1 - k1, conv_len = j2 - j1 + 1;
        double vmax = 0.0;
        for (int64_t c = 0; c < conv_len && c < npwrs; c++) {
            int64_t idx = conv_start + c;
            double s = 0.0;
            for (int64_t a = 0; a < src_len; a++) {
                int64_t b = idx - a;
                if (b >= 0 && b < ln2) s += src[a] * pwrs[b];
            }
            V1[c] = s;
            if (s > vmax) vmax = s;
        }
        if (vmax > 0 && vmax < KS_EM128) {
            for (int64_t c = 0; c < npwrs; c++) V1[c] *= KS_EP128;
            expnt -= 128;
        }
        V1s = V0s + j1 - k1;
    }
    long double ans = V1[n - V1s];
    free(mem);
    for (int64_t m = 1; m <= n; m++) { // times n!
        if (fabsl(ans) > KS_EP128) {
            ans *= KS_EM128;
            expnt += 128;
        }
        ans *= (long double)m;
    }
    if (expnt != 0) ans = ldexpl(ans, (int)expnt);
    return clip01((double)ans);
}

// P(D_n <= x) by Pelz & Good (1976): the Li-Chien/Korolyuk expansion
// K0(z) + K1(z)/sqrt(n) + K2(z)/n + K3(z)/n^1.5 (z = x sqrt(n)) in its Jacobi-theta form for
// small z.
static double kolmogn_pelz_good_cdf(int64_t n, double x) {
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    const double pi2 = M_PI * M_PI, pi4 = pi2 * pi2, pi6 = pi4 * pi2;
    const double sqrt2pi = sqrt(2 * M_PI);
    double z = sqrt((double)n) * x;
    double z2 = pow(z, 2), z3 = pow(z, 3), z4 = pow(z, 4), z6 = pow(z, 6);
    double qlog = -pi2 / 8 / z2;
    if (qlog < -708) return 0.0;
    double q = exp(qlog);
    double k1a = -z2, k1b = pi2 / 4;
    double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4, k2c = pi4 * (1 - 2 * z2) / 16;
    double k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16;
    double k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * pow(z, 8);
    double K[4] = {0, 0, 0, 0};
    // Horner scheme over q^((2k-1)^2), the odd squares.
    int64_t maxk = (int64_t)ceil(16 * z / M_PI);
    for (int64_t k = maxk; k >= 1; k--) {
        double m = (double)(2 * k - 1), m2 = m * m, m4 = m2 * m2, m6 = m4 * m2;
        double qpower = pow(q, (double)(8 * k));
        double coeffs[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                            k3a + k3b * m2 + k3c * m4 + k3d * m6};
        for (int i = 0; i < 4; i++) K[i] = K[i] * qpower + coeffs[i];
    }
    double denom[4] = {z, 6 * z4, 72 * pow(z, 7), 6480 * pow(z, 10)};
    for (int i = 0; i < 4; i++) K[i] = K[i] * q * sqrt2pi / denom[i];
    // The terms of K2 and K3 over all integers k: q^(k^2) with q = exp(-pi^2/2z^2).
    q = exp(-pi2 / 2 / z2);
    double sqrt3z = sqrt(3.0) * z, k2extra = 0.0, k3extra = 0.0;
    for (int64_t k = maxk; k >= 1; k--) {
        double kk = (double)k, k2 = kk * kk, kpi = M_PI * kk, qk = pow(q, k2);
        k2extra += k2 * qk;
        k3extra += (sqrt3z + kpi) * (sqrt3z - kpi) * k2 * qk;
    }
    K[2] += k2extra * (pi2 * sqrt2pi / (-36 * z3));
    K[3] += k3extra * (pi2 * sqrt2pi / (216 * z6));
    double sum = 0.0;
    for (int i = 0; i < 4; i++) sum += K[i] / pow((double)n, i / 2.0);
    return sum;
}

double kstwo_sf(double d, size_t n_) {
    if (n_ == 0 || isnan(d)) return NAN;
    int64_t n = (int64_t)n_;
    if (d >= 1.0) return 0.0;
    if (d <= 0.0) return 1.0;
    double t = (double)n * d;
    if (t <= 1.0) { // Ruben & Gambino: P(D_n <= d) = n!/n^n (2t-1)^n for 1/2n <= d <= 1/n
        if (t <= 0.5) return 1.0;
        double cdf;
        if (n <= 140) {
            cdf = 1.0;
            for (int64_t i = 1; i <= n; i++) cdf *= (double)i * (1.0 / (double)n) * (2 * t - 1);
        } else {
            cdf = exp(log_nfactorial_div_n_pow_n((double)n) + (double)n * log(2 * t - 1));
        }
        return clip01(1.0 - cdf);
    }
    if (t >= (double)(n - 1)) return clip01(2 * pow(1.0 - d, (double)n)); // Ruben & Gambino
    if (d >= 0.5) return clip01(2 * smirnov_sf(n, d)); // D+ and D- cannot both reach d
    double nxsquared = t * d, cdf;
    if (n <= 140) {
        if (nxsquared <= 0.754693)
            cdf = kolmogn_dmtw_cdf(n, d);
        else if (nxsquared <= 4)
            cdf = kolmogn_pomeranz_cdf(n, d);
        else
            return clip01(2 * smirnov_sf(n, d)); // Miller's approximation
        return clip01(1.0 - cdf);
    }
    if (nxsquared >= 370.0) return 0.0;
    if (nxsquared >= 2.2) return clip01(2 * smirnov_sf(n, d));
    if (n <= 100000 && (double)n * pow(d, 1.5) <= 1.4)
        cdf = kolmogn_dmtw_cdf(n, d);
    else
        cdf = kolmogn_pelz_good_cdf(n, d);
    return clip01(1.0 - cdf);
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

double ks_2samp_pvalue(const double *x, size_t n, const double *y, size_t m, double *statistic) {
    if (statistic) *statistic = NAN;
    if (n == 0 || m == 0) return NAN;
    double *xs = sorted_copy(x, n), *ys = sorted_copy(y, m);
    if (!xs || !ys) {
        free(xs);
        free(ys);
        return NAN;
    }
    double d = ks_statistic(xs, n, ys, m);
    free(xs);
    free(ys);

    double p = NAN;
    int exact_done = 0;
    if (n <= 10000 && m <= 10000) { // scipy's MAX_AUTO_N
        int64_t n1 = (int64_t)n, n2 = (int64_t)m, g = gcd64(n1, n2), lcm = (n1 / g) * n2;
        // The exact distribution lives on multiples of 1/lcm; scipy reports D snapped to them.
        int64_t h = (int64_t)nearbyint(d * (double)lcm);
        d = (double)h / (double)lcm;
        if (h == 0)
            p = 1.0;
        else if (n1 == n2)
            p = prob_outside_square(n1, h);
        else
            p = outer_prob_inside(n1, n2, g, h);
        exact_done = p >= 0 && p <= 1; // else scipy warns and falls back to the asymptotic one
    }
    if (!exact_done) {
        double big = (double)(n > m ? n : m), small = (double)(n > m ? m : n);
        double en = big * small / (big + small);
        // np.round: halves to even, as nearbyint in the default rounding mode.
        p = kstwo_sf(d, (size_t)nearbyint(en));
    }
    if (statistic) *statistic = d;
    return clip01(p);
}

// ---------------------------------------------------------------------------------------------
// AUC, harmonic mean

double auc_higher_is_positive(const double *pos, size_t np, const double *neg, size_t nn) {
    if (np == 0 || nn == 0) return NAN;
    double *ps = sorted_copy(pos, np), *ns = sorted_copy(neg, nn);
    if (!ps || !ns) {
        free(ps);
        free(ns);
        return NAN;
    }
    // 2U = sum over positives of 2 * #(neg below) + #(neg equal): an exact integer, so the AUC is
    // rounded once.
    uint64_t twice_u = 0;
    size_t i = 0, below = 0;
    while (i < np) {
        double v = ps[i];
        size_t run = 0;
        while (i < np && ps[i] == v) {
            i++;
            run++;
        }
        while (below < nn && ns[below] < v) below++;
        size_t equal = 0;
        while (below + equal < nn && ns[below + equal] == v) equal++;
        twice_u += (uint64_t)run * (2 * (uint64_t)below + (uint64_t)equal);
    }
    free(ps);
    free(ns);
    return (double)twice_u / (2.0 * (double)np * (double)nn);
}

double harmonic_mean(const double *x, size_t n) {
    if (n == 0) return NAN;
    double *inv = malloc(n * sizeof *inv);
    if (!inv) return NAN;
    for (size_t i = 0; i < n; i++) {
        if (x[i] < 0) {
            free(inv);
            return NAN;
        }
        inv[i] = 1.0 / x[i]; // +inf for a zero, and the mean of the inverses is then inf: 0
    }
    double mean_inv = numpy_sum(inv, n) / (double)n;
    free(inv);
    return 1.0 / mean_inv;
}

// ---------------------------------------------------------------------------------------------
// Per-sample scores

double mia_loss_score(const float *logp, size_t n) {
    if (n == 0) return 0.0;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)logp[i];
    return -s / (double)n;
}

// Python's max(1, int(n * k)), at most n (a slice longer than the list takes all of it).
static size_t min_k_count(size_t n, double k) {
    double nk = (double)n * k;
    if (!(nk >= 1.0)) return 1;
    if (nk >= (double)n) return n;
    return (size_t)nk;
}

// Minus the mean of the smallest min_k_count(n, k) values of v (sorted in place).
static double minus_mean_of_smallest(double *v, size_t n, double k) {
    qsort(v, n, sizeof *v, compare_doubles);
    size_t count = min_k_count(n, k);
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += v[i];
    return -s / (double)count;
}

double mia_min_k_score(const float *logp, size_t n, double k) {
    if (n == 0) return 0.0;
    double *v = malloc(n * sizeof *v);
    if (!v) return NAN;
    for (size_t i = 0; i < n; i++) v[i] = (double)logp[i];
    double score = minus_mean_of_smallest(v, n, k);
    free(v);
    return score;
}

double mia_min_k_pp_score(const float *logp, const float *mu, const float *var, size_t n,
                          double k) {
    if (n == 0) return 0.0;
    double *z = malloc(n * sizeof *z);
    if (!z) return NAN;
    for (size_t i = 0; i < n; i++) {
        double sigma2 = (double)var[i] > 1e-6 ? (double)var[i] : 1e-6; // open-unlearning's clamp
        z[i] = ((double)logp[i] - (double)mu[i]) / sqrt(sigma2);
    }
    double score = minus_mean_of_smallest(z, n, k);
    free(z);
    return score;
}

size_t zlib_compressed_length(const char *text, size_t len) {
    uLongf cap = compressBound((uLong)len);
    Bytef *buf = malloc(cap);
    if (!buf) return 0;
    int rc = compress2(buf, &cap, (const Bytef *)text, (uLong)len, Z_DEFAULT_COMPRESSION);
    free(buf);
    return rc == Z_OK ? (size_t)cap : 0;
}

double mia_zlib_score(double mean_nll, const char *text, size_t len) {
    size_t z = zlib_compressed_length(text, len); // >= 8 bytes even for an empty text
    return z ? mean_nll / (double)z : NAN;
}

double exact_memorization(const uint8_t *hit, size_t n) {
    if (n == 0) return 0.0;
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) hits += hit[i] != 0;
    return (double)hits / (double)n;
}

double extraction_strength(const uint8_t *hit, size_t n) {
    if (n == 0) return 0.0;
    size_t k = n; // start of the all-hit suffix
    while (k > 0 && hit[k - 1]) k--;
    if (k == n) k = n - 1; // no suffix matched: open-unlearning's loop variable stops at n - 1
    return 1.0 - (double)k / (double)n;
}
