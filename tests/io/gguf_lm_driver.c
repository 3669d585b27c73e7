// Test driver of the GGUF oracle (check_gguf.py): per-token log-probs of given token ids and
// greedy continuations from a converted checkpoint, so the oracle needs no tokenizer of ours.
// Usage: gguf_lm_driver MODEL.h5 IDS.txt N_NEW   (IDS.txt: one sample of token ids per line)
// Prints "lp S v..." (log p of tokens 1..n-1 of sample S) and "greedy S id..." per sample.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "llama.h"

#define MAX_TOKENS 4096

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.h5 IDS.txt N_NEW\n", argv[0]);
        return 2;
    }
    Err e = {{0}};
    LlamaModel m;
    if (llama_load_file(&m, argv[1], &e)) {
        fprintf(stderr, "error: %s\n", e.msg);
        return 1;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        fprintf(stderr, "error: cannot open %s\n", argv[2]);
        return 1;
    }
    int n_new = atoi(argv[3]);
    int32_t *tokens = malloc(MAX_TOKENS * sizeof *tokens), *out = malloc(((size_t)n_new + 1) * 4);
    int64_t offsets[64] = {0};
    int n_samples = 0;
    size_t n_tokens = 0;
    char line[65536];
    while (n_samples < 63 && fgets(line, sizeof line, f)) {
        char *p = line, *end;
        for (long v = strtol(p, &end, 10); end != p && n_tokens < MAX_TOKENS;
             v = strtol(p, &end, 10)) {
            tokens[n_tokens++] = (int32_t)v;
            p = end;
        }
        if ((size_t)offsets[n_samples] == n_tokens) continue; // a blank line
        offsets[++n_samples] = (int64_t)n_tokens;
    }
    fclose(f);
    LlamaActs *a = llama_acts_new();
    Batch b = {n_samples, n_tokens, tokens, offsets, NULL};
    int rc = llama_forward(&m, a, &b, NULL, NULL, &e);
    if (rc == 0) {
        // Targets come in order: every token after the first of each sample.
        const float *lp = llama_target_logprob(a);
        size_t j = 0;
        for (int s = 0; s < n_samples; s++) {
            printf("lp %d", s);
            for (int64_t t = offsets[s] + 1; t < offsets[s + 1]; t++) printf(" %.9g", lp[j++]);
            printf("\n");
        }
    }
    GenerateOptions o = {.max_new_tokens = n_new, .temperature = 0.0f, .top_p = 1.0f,
                         .stop_token_a = -1, .stop_token_b = -1};
    for (int s = 0; s < n_samples && rc == 0; s++) {
        int n_out = 0;
        rc = generate(&m, tokens + offsets[s], (int)(offsets[s + 1] - offsets[s]), &o, out, &n_out,
                      NULL, NULL, &e);
        printf("greedy %d", s);
        for (int i = 0; i < n_out; i++) printf(" %d", out[i]);
        printf("\n");
    }
    if (rc) fprintf(stderr, "error: %s\n", e.msg);
    llama_acts_free(a);
    llama_free(&m);
    free(tokens);
    free(out);
    return rc ? 1 : 0;
}
