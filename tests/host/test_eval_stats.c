// Unit tests of host/rouge and host/eval_stats on cases worked out by hand or computed once with
// scipy / NLTK / Python's zlib (the call is written next to each literal).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_stats.h"
#include "rouge.h"

#include "check.h"

// Relative tolerance (a want of 0 must be met exactly).
#define CLOSE(got, want, tol)                                                                   \
    CHECK(fabs((got) - (want)) <= (tol) * fabs(want), "%s = %.17g, want %.17g", #got,           \
          (double)(got), (double)(want))

static int rouge_score_equal(RougeScore got, RougeScore want) {
    return fabs(got.precision - want.precision) <= 1e-15 &&
           fabs(got.recall - want.recall) <= 1e-15 && fabs(got.f1 - want.f1) <= 1e-15;
}

static void check_rouge(const char *ref, const char *cand, int stem, RougeScore want1,
                        RougeScore wantL) {
    RougeScore r1, rl;
    CHECK(rouge_scores(ref, cand, stem, &r1, &rl) == 0, "rouge_scores failed");
    CHECK(rouge_score_equal(r1, want1),
          "ROUGE-1(%s | %s, stem %d) = %.17g %.17g %.17g, want %.17g %.17g %.17g", ref, cand, stem,
          r1.precision, r1.recall, r1.f1, want1.precision, want1.recall, want1.f1);
    CHECK(rouge_score_equal(rl, wantL),
          "ROUGE-L(%s | %s, stem %d) = %.17g %.17g %.17g, want %.17g %.17g %.17g", ref, cand, stem,
          rl.precision, rl.recall, rl.f1, wantL.precision, wantL.recall, wantL.f1);
}

static void test_rouge_hand_computed(void) {
    // reference: the cat sat on the mat              (6 tokens)
    // candidate: on the mat the cat sat down         (7 tokens)
    // LCS = 3 ("the cat sat", or "on the mat"): P = 3/7, R = 3/6, F = 2PR/(P+R) = 6/13.
    // ROUGE-1 with the repeated "the" counted twice: overlap = the 2 + cat + sat + on + mat = 6,
    // P = 6/7, R = 6/6, F = 12/13.
    check_rouge("The cat sat on the mat.", "On the mat, the cat sat down", 1,
                (RougeScore){6.0 / 7, 1.0, 12.0 / 13}, (RougeScore){3.0 / 7, 0.5, 6.0 / 13});

    // Stemmed: reference the cat were run happili today; candidate today a cat run happili.
    // LCS = cat run happili = 3: P = 3/5, R = 3/6, F = 6/11. Overlap {today, cat, run, happili}
    // = 4: P = 4/5, R = 4/6, F = 8/11.
    const char *ref = "The cats were running happily today", *cand = "Today a cat runs happily";
    check_rouge(ref, cand, 1, (RougeScore){4.0 / 5, 4.0 / 6, 8.0 / 11},
                (RougeScore){3.0 / 5, 3.0 / 6, 6.0 / 11});
    // Unstemmed only "today" and "happily" match; they cross, so LCS = 1: P = 1/5, R = 1/6,
    // F = 2/11; ROUGE-1: P = 2/5, R = 2/6, F = 4/11.
    check_rouge(ref, cand, 0, (RougeScore){2.0 / 5, 2.0 / 6, 4.0 / 11},
                (RougeScore){1.0 / 5, 1.0 / 6, 2.0 / 11});

    // Tokens of <= 3 characters are not stemmed: NLTK stems "was" to "wa", which would match.
    check_rouge("was", "wa", 1, (RougeScore){0, 0, 0}, (RougeScore){0, 0, 0});
    // Empty sides, or only separators, score 0 everywhere.
    RougeScore zero = {0, 0, 0};
    check_rouge("", "anything at all", 1, zero, zero);
    check_rouge("anything at all", "", 1, zero, zero);
    check_rouge("!!! ...", "-- ??", 1, zero, zero);
    // Non-ASCII bytes separate tokens: "naïve" is "na" + "ve" (UTF-8 c3 af).
    check_rouge("na\xc3\xafve", "na ve", 1, (RougeScore){1, 1, 1}, (RougeScore){1, 1, 1});
    // Digits are token characters, punctuation is not: "Sept-8, 1956" = sept 8 1956.
    check_rouge("Sept-8, 1956", "sept 8 1956", 1, (RougeScore){1, 1, 1}, (RougeScore){1, 1, 1});
}

// A 2000-token text against itself with every 10th token changed: LCS = overlap = 1800.
static int test_rouge_long_text(void) {
    size_t n = 2000;
    char *ref = malloc(n * 12), *cand = malloc(n * 12);
    REQUIRE(ref && cand, "out of memory");
    size_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        a += (size_t)sprintf(ref + a, "tok%zu ", i);
        b += (size_t)sprintf(cand + b, i % 10 == 9 ? "other%zu " : "tok%zu ", i);
    }
    RougeScore r1, rl;
    REQUIRE(rouge_scores(ref, cand, 1, &r1, &rl) == 0, "rouge_scores failed");
    CLOSE(rl.recall, 0.9, 1e-15);
    CLOSE(rl.precision, 0.9, 1e-15);
    CLOSE(r1.f1, 0.9, 1e-15);
    // Reversed order: the LCS of a sequence of distinct tokens and its reverse is 1.
    b = 0;
    for (size_t i = n; i-- > 0;) b += (size_t)sprintf(cand + b, "tok%zu ", i);
    REQUIRE(rouge_scores(ref, cand, 1, &r1, &rl) == 0, "rouge_scores failed");
    CLOSE(rl.recall, 1.0 / 2000, 1e-15);
    CLOSE(r1.recall, 1.0, 1e-15);
    free(ref);
    free(cand);
    return 0;
}

static void test_porter_stems(void) {
    // Each checked with /usr/bin/python3 -c "from nltk.stem.porter import PorterStemmer;
    // print(PorterStemmer().stem('WORD'))" (NLTK 3.8).
    static const char *const cases[][2] = {
        {"running", "run"},       {"happiness", "happi"},   {"generously", "gener"},
        {"caresses", "caress"},   {"ponies", "poni"},       {"relational", "relat"},
        {"conditional", "condit"}, {"dying", "die"},        {"skies", "sky"},
        {"agreed", "agre"},       {"hopping", "hop"},       {"falling", "fall"},
        {"filing", "file"},       {"flies", "fli"},         {"dies", "die"},
        {"spied", "spi"},         {"enjoy", "enjoy"},       {"happy", "happi"},
        {"controll", "control"},  {"geology", "geolog"},    {"hopefulness", "hope"},
        {"was", "wa"},            {"were", "were"},         {"today", "today"},
        {"sensibility", "sensibl"}, {"is", "is"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        int n = porter_stem(cases[i][0], out, sizeof out);
        CHECK(n == (int)strlen(cases[i][1]) && strcmp(out, cases[i][1]) == 0,
              "stem(%s) = %s (%d), want %s", cases[i][0], n >= 0 ? out : "?", n, cases[i][1]);
    }
    char small[4];
    CHECK(porter_stem("running", small, sizeof small) == -1, "a too small buffer must be refused");
}

static void test_ks_2samp(void) {
    struct {
        double x[8];
        size_t n;
        double y[8];
        size_t m;
        double d, p;
    } cases[] = {
        // scipy.stats.ks_2samp([1,2,3], [4,5,6,7]): complete separation, p = 2/C(7,3) = 2/35.
        {{1, 2, 3}, 3, {4, 5, 6, 7}, 4, 1.0, 0.05714285714285715},
        // ks_2samp([0.1,0.5,0.9,1.3], [0.2,0.3,0.4,2.0,2.5]) -> (0.4, 0.7460317460317459)
        {{0.1, 0.5, 0.9, 1.3}, 4, {0.2, 0.3, 0.4, 2.0, 2.5}, 5, 0.4, 0.7460317460317459},
        // With ties across the samples: ks_2samp([1,1,2,3], [1,2,2,4,5]) -> (0.4, 0.746...)
        {{1, 1, 2, 3}, 4, {1, 2, 2, 4, 5}, 5, 0.4, 0.7460317460317459},
        // Equal sizes: ks_2samp([1,2,3,4,5], [3,4,5,6,7]) -> (0.4, 0.873015873015873)
        {{1, 2, 3, 4, 5}, 5, {3, 4, 5, 6, 7}, 5, 0.4, 0.873015873015873},
        // One element each: ks_2samp([1.0], [2.0]) -> (1.0, 1.0)
        {{1.0}, 1, {2.0}, 1, 1.0, 1.0},
        // Identical samples: D = 0, p = 1.
        {{1, 2, 3, 4, 5, 6, 7, 8}, 8, {8, 7, 6, 5, 4, 3, 2, 1}, 8, 0.0, 1.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double d;
        double p = ks_2samp_pvalue(cases[i].x, cases[i].n, cases[i].y, cases[i].m, &d);
        CHECK(fabs(d - cases[i].d) <= 1e-15 && fabs(p - cases[i].p) <= 1e-14 * cases[i].p,
              "case %zu: D = %.17g p = %.17g, want %.17g %.17g", i, d, p, cases[i].d, cases[i].p);
    }
    double one = 1.0;
    CHECK(isnan(ks_2samp_pvalue(&one, 1, &one, 0, NULL)), "an empty sample must give NaN");

    // The asymptotic branch's distribution, one case per method scipy picks:
    // scipy.stats.kstwo.sf(d, n).
    CLOSE(kstwo_sf(0.05, 100), 0.9532159710635725, 1e-13);      // n <= 140, n d^2 small: Durbin
    CLOSE(kstwo_sf(0.15, 100), 0.019839242125641813, 1e-12);    // n d^2 in (0.75, 4]: Pomeranz
    CLOSE(kstwo_sf(0.3, 50), 0.00017353260202718738, 1e-13);    // n d^2 > 4: 2 * Smirnov
    CLOSE(kstwo_sf(0.6, 7), 0.006140397691438094, 1e-13);       // d >= 0.5: 2 * Smirnov
    CLOSE(kstwo_sf(0.01, 1000), 0.9999496745370611, 1e-13);     // n d^1.5 <= 1.4: Durbin
    CLOSE(kstwo_sf(0.005, 20000), 0.6974088406327613, 1e-13);   // Pelz-Good
    CLOSE(kstwo_sf(0.1, 200), 0.03411035080315383, 1e-13);      // Pelz-Good
    CLOSE(kstwo_sf(0.02, 10000), 0.0006616848639387309, 1e-13); // n d^2 >= 2.2: 2 * Smirnov
}

static void test_auc_and_hmean(void) {
    // pos {0.9, 0.5, 0.5, 0.1} vs neg {0.5, 0.2, 0.1}: 0.9 beats 3; each 0.5 beats 2 and ties 1
    // (2 x 2.5); 0.1 ties 1 (0.5). (3 + 5 + 0.5) / 12 = 17/24.
    double pos[] = {0.9, 0.5, 0.5, 0.1}, neg[] = {0.5, 0.2, 0.1};
    CLOSE(auc_higher_is_positive(pos, 4, neg, 3), 17.0 / 24, 1e-15);
    CLOSE(auc_higher_is_positive(neg, 3, pos, 4), 1 - 17.0 / 24, 1e-15);
    double same[] = {1, 1};
    CLOSE(auc_higher_is_positive(same, 2, same, 2), 0.5, 0);
    CHECK(isnan(auc_higher_is_positive(pos, 4, neg, 0)), "AUC without negatives must be NaN");

    // scipy.stats.hmean([1, 2, 4]) = 3 / 1.75 = 12/7 = 1.7142857142857142
    double x[] = {1, 2, 4}, with_zero[] = {1, 0, 2}, negative[] = {1, -1};
    CLOSE(harmonic_mean(x, 3), 1.7142857142857142, 1e-16);
    CHECK(harmonic_mean(with_zero, 3) == 0.0, "hmean with a zero must be 0");
    CHECK(isnan(harmonic_mean(negative, 2)), "hmean of a negative must be NaN");
    CHECK(isnan(harmonic_mean(x, 0)), "hmean of nothing must be NaN");
}

static void test_mia_scores(void) {
    float logp[] = {-1, -4, -2, -8, -0.5f};
    CLOSE(mia_loss_score(logp, 5), 3.1, 1e-15); // -(-15.5 / 5)
    // k = 0.4: int(5 * 0.4) = 2 smallest {-8, -4} -> 6; k = 0.1: int(0.5) = 0 -> max(1, 0) = 1
    // smallest {-8} -> 8; k = 1: all five -> 3.1.
    CLOSE(mia_min_k_score(logp, 5, 0.4), 6.0, 1e-15);
    CLOSE(mia_min_k_score(logp, 5, 0.1), 8.0, 1e-15);
    CLOSE(mia_min_k_score(logp, 5, 1.0), 3.1, 1e-15);
    // z = (logp - mu) / sqrt(max(var, 1e-6)): (-1-0)/1 = -1, (-4+2)/2 = -1, (-2+1)/sqrt(1e-6)
    // = -1000 (var 1e-8 clamped), (-8+8)/1 = 0, (-0.5+1)/0.5 = 1. k = 0.4 -> {-1000, -1}: 500.5.
    float mu[] = {0, -2, -1, -8, -1}, var[] = {1, 4, 1e-8f, 1, 0.25f};
    CLOSE(mia_min_k_pp_score(logp, mu, var, 5, 0.4), 500.5, 1e-9);
    CHECK(mia_loss_score(logp, 0) == 0 && mia_min_k_score(logp, 0, 0.2) == 0 &&
              mia_min_k_pp_score(logp, mu, var, 0, 0.2) == 0,
          "empty samples must score 0");

    // len(zlib.compress(b"hello hello hello hello")) == 16; len(zlib.compress(b"")) == 8;
    // len(zlib.compress("The cat sat on the mat.".encode())) == 28
    CHECK(zlib_compressed_length("hello hello hello hello", 23) == 16, "zlib length of hello x4");
    CHECK(zlib_compressed_length("", 0) == 8, "zlib length of the empty text");
    CHECK(zlib_compressed_length("The cat sat on the mat.", 23) == 28, "zlib length of the cat");
    CLOSE(mia_zlib_score(3.2, "hello hello hello hello", 23), 0.2, 1e-15);
}

static void test_memorization(void) {
    uint8_t em[] = {1, 0, 1, 1};
    CLOSE(exact_memorization(em, 4), 0.75, 0);
    CHECK(exact_memorization(em, 0) == 0, "EM of nothing must be 0");
    uint8_t all[] = {1, 1, 1}, tail2[] = {0, 1, 1}, last_miss[] = {1, 1, 0}, single_miss[] = {0};
    CLOSE(extraction_strength(all, 3), 1.0, 0);           // k = 0
    CLOSE(extraction_strength(tail2, 3), 2.0 / 3, 1e-15); // k = 1
    // No suffix matches: open-unlearning's loop leaves k = n - 1, so 1/3 and (n = 1) 1, not 0.
    CLOSE(extraction_strength(last_miss, 3), 1.0 / 3, 1e-15);
    CLOSE(extraction_strength(single_miss, 1), 1.0, 0);
    CHECK(extraction_strength(all, 0) == 0, "ES of nothing must be 0");
}

int main(void) {
    test_rouge_hand_computed();
    if (test_rouge_long_text()) g_fail = 1;
    test_porter_stems();
    test_ks_2samp();
    test_auc_and_hmean();
    test_mia_scores();
    test_memorization();
    if (!g_fail) printf("eval_stats: all checks passed\n");
    return g_fail;
}
