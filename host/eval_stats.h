// The numeric statistics of `lethe eval` (TOFU / MUSE): the KS test behind forget quality, ROC
// AUC, harmonic mean, membership-inference scores, exact memorisation and extraction strength.
#ifndef LETHE_EVAL_STATS_H
#define LETHE_EVAL_STATS_H

#include <stddef.h>
#include <stdint.h>

// Inputs never hold NaN (callers compute them from finite log-probabilities); a NaN gives an
// unspecified result. Functions that need scratch memory return NaN when it runs out.

// Two-sided two-sample Kolmogorov-Smirnov test exactly as scipy.stats.ks_2samp(x, y) with its
// defaults (alternative='two-sided', method='auto'; scipy 1.10): the exact null distribution
// when max(n, m) <= 10000 (Hodges 1958, with Viehmann's 2021 recursion for 1 - p when n != m),
// otherwise kstwo.sf(D, round(n*m/(n+m))). TOFU's forget quality is this p-value:
// open-unlearning's get_forget_quality computes
//   ks_2samp(1/(model_tr+1e-10), 1/(reference_tr+1e-10)).pvalue
// on the truth ratios of the unlearned and the retain-only model.
// Returns the p-value and, when statistic is not NULL, stores D = max |F_x - F_y| (in the exact
// branch rounded to a multiple of 1/lcm(n, m), as scipy reports it). NaN when n or m is 0 (scipy
// raises).
double ks_2samp_pvalue(const double *x, size_t n, const double *y, size_t m, double *statistic);

// scipy.stats.kstwo.sf(d, n): P(D_n >= d) for the two-sided one-sample KS statistic of n draws
// (Simard & L'Ecuyer 2011's choice among Durbin/Marsaglia-Tsang-Wang, Pomeranz, Pelz-Good and
// the one-sided Smirnov tail). ks_2samp's asymptotic branch; exposed for the tests.
double kstwo_sf(double d, size_t n);

// ROC AUC of "score is higher for positives": P(pos > neg) + 0.5 P(pos == neg) over all pairs,
// the Mann-Whitney U / (np * nn) (= sklearn roc_auc_score with labels 1 for pos). Ties are
// counted exactly (average ranks); O((np + nn) log(np + nn)). NaN if either side is empty.
double auc_higher_is_positive(const double *pos, size_t np, const double *neg, size_t nn);

// scipy.stats.hmean: n / sum(1/x); 0 if any value is 0; NaN if any value is negative (scipy
// 1.10 raises) or n is 0.
double harmonic_mean(const double *x, size_t n);

// Membership-inference scores of one sample from its n per-token target log-probabilities, as
// locuslab/open-unlearning src/evals/metrics/mia/ computes them (higher = more likely a
// non-member). Each returns 0 for n == 0, as open-unlearning does.
// LOSS: the mean negative log-likelihood.
double mia_loss_score(const float *logp, size_t n);
// Min-K% Prob: minus the mean of the smallest max(1, (size_t)(n*k)) log-probabilities.
double mia_min_k_score(const float *logp, size_t n, double k);
// Min-K%++: per token z = (logp - mu) / sqrt(max(var, 1e-6)) with mu, var the mean and variance
// of log p over the vocabulary at that position; minus the mean of the smallest
// max(1, (size_t)(n*k)) z. Computed in double (open-unlearning: float32).
double mia_min_k_pp_score(const float *logp, const float *mu, const float *var, size_t n,
                          double k);
// zlib: mean_nll / zlib_compressed_length(text) (Carlini et al. 2021).
double mia_zlib_score(double mean_nll, const char *text, size_t len);
// len(zlib.compress(text)) in Python: compress2 at Z_DEFAULT_COMPRESSION. 0 if memory runs out.
size_t zlib_compressed_length(const char *text, size_t len);

// Exact memorisation and extraction strength of one sample from hit[t] = (argmax prediction ==
// target) over its n target tokens. Both return 0 for n == 0.
// EM: the fraction of hits.
double exact_memorization(const uint8_t *hit, size_t n);
// ES: 1 - k/n for the smallest k whose suffix hit[k..n) is all hits (Carlini et al. 2021). When
// even the last token misses, open-unlearning's loop `for k in range(n): ... break` ends with
// k = n - 1 and reports 1/n rather than 0; this reproduces that.
double extraction_strength(const uint8_t *hit, size_t n);

#endif
