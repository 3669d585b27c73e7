// Command-line face of host/eval_stats and host/rouge for test_eval_stats_vs_scipy.py: one command
// per stdin line, one result line per command on stdout (doubles as %.17g, so they round-trip).
//
//   ks N M x1..xN y1..yM            -> statistic pvalue
//   kstwo N D                       -> kstwo.sf(D, N)
//   auc NP NN p1..pNP n1..nNN       -> AUC
//   hmean N x1..xN                  -> harmonic mean
//   stem WORD                       -> Porter stem
//   rouge STEMMER REFHEX CANDHEX    -> r1.precision r1.recall r1.f1 rL.precision rL.recall rL.f1
//   zlib HEX                        -> compressed length
//   loss N v1..vN                   -> mia_loss_score (values cast to float)
//   mink K N v1..vN                 -> mia_min_k_score
//   minkpp K N logp1..N mu1..N var1..N -> mia_min_k_pp_score
//   em BITS / es BITS               -> exact_memorization / extraction_strength of a 0/1 string
// Texts are hex-encoded bytes; "-" stands for an empty text or bit string.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval_stats.h"
#include "rouge.h"

static char *save_ptr;

static const char *next_field(void) {
    const char *f = strtok_r(NULL, " \t\r\n", &save_ptr);
    if (!f) {
        fprintf(stderr, "eval_stats_driver: missing field\n");
        exit(2);
    }
    return f;
}

static double next_double(void) {
    const char *f = next_field();
    char *end;
    double v = strtod(f, &end);
    if (*end) {
        fprintf(stderr, "eval_stats_driver: not a number: %s\n", f);
        exit(2);
    }
    return v;
}

static size_t next_size(void) { return (size_t)strtoull(next_field(), NULL, 10); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "eval_stats_driver: out of memory\n");
        exit(2);
    }
    return p;
}

static double *next_doubles(size_t n) {
    double *v = xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = next_double();
    return v;
}

static float *next_floats(size_t n) {
    float *v = xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = (float)next_double();
    return v;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    fprintf(stderr, "eval_stats_driver: bad hex digit %c\n", c);
    exit(2);
}

// Decodes a hex field ("-" = empty) into a NUL-terminated buffer; *len gets its byte count.
static char *next_hex_text(size_t *len) {
    const char *f = next_field();
    size_t n = strcmp(f, "-") == 0 ? 0 : strlen(f) / 2;
    char *s = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)(hex_digit(f[2 * i]) * 16 + hex_digit(f[2 * i + 1]));
    s[n] = '\0';
    *len = n;
    return s;
}

static uint8_t *next_bits(size_t *n) {
    const char *f = next_field();
    *n = strcmp(f, "-") == 0 ? 0 : strlen(f);
    uint8_t *bits = xmalloc(*n);
    for (size_t i = 0; i < *n; i++) bits[i] = f[i] == '1';
    return bits;
}

static void run_command(const char *cmd) {
    if (!strcmp(cmd, "ks")) {
        size_t n = next_size(), m = next_size();
        double *x = next_doubles(n), *y = next_doubles(m), d;
        double p = ks_2samp_pvalue(x, n, y, m, &d);
        printf("%.17g %.17g\n", d, p);
        free(x);
        free(y);
    } else if (!strcmp(cmd, "kstwo")) {
        size_t n = next_size();
        printf("%.17g\n", kstwo_sf(next_double(), n));
    } else if (!strcmp(cmd, "auc")) {
        size_t np = next_size(), nn = next_size();
        double *pos = next_doubles(np), *neg = next_doubles(nn);
        printf("%.17g\n", auc_higher_is_positive(pos, np, neg, nn));
        free(pos);
        free(neg);
    } else if (!strcmp(cmd, "hmean")) {
        size_t n = next_size();
        double *x = next_doubles(n);
        printf("%.17g\n", harmonic_mean(x, n));
        free(x);
    } else if (!strcmp(cmd, "stem")) {
        const char *word = next_field();
        char *out = xmalloc(strlen(word) + 1);
        if (porter_stem(word, out, strlen(word) + 1) < 0) exit(2);
        printf("%s\n", out);
        free(out);
    } else if (!strcmp(cmd, "rouge")) {
        int stemmer = atoi(next_field());
        size_t len;
        char *ref = next_hex_text(&len), *cand = next_hex_text(&len);
        RougeScore r1, rl;
        if (rouge_scores(ref, cand, stemmer, &r1, &rl)) exit(2);
        printf("%.17g %.17g %.17g %.17g %.17g %.17g\n", r1.precision, r1.recall, r1.f1,
               rl.precision, rl.recall, rl.f1);
        free(ref);
        free(cand);
    } else if (!strcmp(cmd, "zlib")) {
        size_t len;
        char *text = next_hex_text(&len);
        printf("%zu\n", zlib_compressed_length(text, len));
        free(text);
    } else if (!strcmp(cmd, "loss")) {
        size_t n = next_size();
        float *v = next_floats(n);
        printf("%.17g\n", mia_loss_score(v, n));
        free(v);
    } else if (!strcmp(cmd, "mink")) {
        double k = next_double();
        size_t n = next_size();
        float *v = next_floats(n);
        printf("%.17g\n", mia_min_k_score(v, n, k));
        free(v);
    } else if (!strcmp(cmd, "minkpp")) {
        double k = next_double();
        size_t n = next_size();
        float *lp = next_floats(n), *mu = next_floats(n), *var = next_floats(n);
        printf("%.17g\n", mia_min_k_pp_score(lp, mu, var, n, k));
        free(lp);
        free(mu);
        free(var);
    } else if (!strcmp(cmd, "em") || !strcmp(cmd, "es")) {
        size_t n;
        uint8_t *bits = next_bits(&n);
        double score = cmd[1] == 'm' ? exact_memorization(bits, n) : extraction_strength(bits, n);
        printf("%.17g\n", score);
        free(bits);
    } else {
        fprintf(stderr, "eval_stats_driver: unknown command %s\n", cmd);
        exit(2);
    }
}

int main(void) {
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        const char *cmd = strtok_r(line, " \t\r\n", &save_ptr);
        if (cmd) run_command(cmd);
    }
    free(line);
    return 0;
}
