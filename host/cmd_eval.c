// `lethe eval`: CONFIG.yaml runs the TOFU / MUSE / probes evaluation of several models
// (host/eval_run.c); --model M --data D the teacher-forced per-sample log-prob sums over a token
// dataset, mean NLL per target token and perplexity, as JSON.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "eval_run.h"
#include "llama.h"
#include "sha256.h"
#include "strbuf.h"
#include "textfile.h"

int cmd_eval(int argc, char **argv) {
    CliOption opts[] = {
        {"--model", NULL, 0, "checkpoint.h5"},
        {"--data", NULL, 0, "token dataset .h5 (lethe tokenize)"},
        {"--out", NULL, 0, "with CONFIG: the output directory (overrides out:); with --data: "
                           "the output JSON (default: print to stdout)"},
        {"--batch-tokens", "4096", 0, "tokens per forward pass (samples are packed)"},
        {"--device", "auto", 0, "cpu, cuda or auto (the GPU when there is one)"},
        {"--device-dtype", "bf16", 0, "cuda: bf16 weights and activations, or fp32"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[1];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 1, &npos, &e);
    if (rc == 1) {
        cli_usage("eval", "CONFIG.yaml [--out DIR]  |  --model M.h5 --data D.h5 [--out E.json]",
                  "With CONFIG.yaml (see configs/eval/): evaluates the models it lists on the\n"
                  "TOFU and MUSE sets and probes it names (forget quality, model utility, truth\n"
                  "ratio, ROUGE-L, VerbMem, KnowMem, PrivLeak and MIA AUCs, relearning and\n"
                  "in-context probes, neighbour damage); writes DIR/eval.json and\n"
                  "DIR/report.html and prints the comparison table.\n\n"
                  "With --model and --data: teacher-forced evaluation of a token dataset: for\n"
                  "every sample the sum of log p(target) over its loss-masked target tokens and\n"
                  "their count; overall the mean NLL per target token and its perplexity.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("eval", &e);
    const DeviceRequest dev = {cli_get(opts, n, "--device"), cli_get(opts, n, "--device-dtype")};
    if (npos == 1) {
        if (cli_get(opts, n, "--model") || cli_get(opts, n, "--data")) {
            err_set(&e, "give either CONFIG.yaml or --model/--data, not both");
            return cli_fail("eval", &e);
        }
        if (eval_run_config(pos[0], cli_get(opts, n, "--out"), &dev, &e))
            return cli_fail("eval", &e);
        return 0;
    }
    const char *model_path = cli_get(opts, n, "--model"), *data_path = cli_get(opts, n, "--data");
    const char *out_path = cli_get(opts, n, "--out");
    long budget;
    if (!model_path || !data_path) {
        err_set(&e, "--model M.h5 and --data D.h5 are required");
        return cli_fail("eval", &e);
    }
    if (cli_int("--batch-tokens", cli_get(opts, n, "--batch-tokens"), 1, 1L << 24, &budget, &e))
        return cli_fail("eval", &e);

    LlamaModel m = {0};
    TokenDataset d = {0};
    Engine *engine = NULL;
    double *sums = NULL;
    int *counts = NULL;
    StrBuf js = {0};
    rc = 1;
    if (llama_load_file(&m, model_path, &e)) goto done;
    if (dataset_read(data_path, &d, m.cfg.vocab_size, &e)) goto done;
    if (engine_open(&engine, &dev, &m, NULL, 0, 0, &e)) goto done;
    sums = calloc((size_t)d.n_samples, sizeof(double));
    counts = calloc((size_t)d.n_samples, sizeof(int));
    if (!sums || !counts) {
        err_set(&e, "out of memory");
        goto done;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    // Pack consecutive samples up to the token budget (a longer sample goes alone).
    for (int64_t s0 = 0; s0 < d.n_samples;) {
        int64_t s1 = s0 + 1;
        while (s1 < d.n_samples && d.offsets[s1 + 1] - d.offsets[s0] <= budget) s1++;
        int64_t base = d.offsets[s0];
        int64_t *offs = malloc((size_t)(s1 - s0 + 1) * sizeof(int64_t));
        if (!offs) {
            err_set(&e, "out of memory");
            goto done;
        }
        for (int64_t s = s0; s <= s1; s++) offs[s - s0] = d.offsets[s] - base;
        Batch b = {(int)(s1 - s0), (size_t)(d.offsets[s1] - base), d.tokens + base, offs,
                   d.loss_mask + base};
        int frc = engine->ops->forward(engine, &b, sums + s0, counts + s0, &e);
        free(offs);
        if (frc) {
            err_prefix(&e, "%s: samples %lld..%lld", data_path, (long long)s0, (long long)s1 - 1);
            goto done;
        }
        s0 = s1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    double total = 0.0;
    long long targets = 0;
    for (int64_t s = 0; s < d.n_samples; s++) {
        total += sums[s];
        targets += counts[s];
    }
    double mean_nll = targets ? -total / (double)targets : NAN;
    char mdig[65], ddig[65];
    if (sha256_file(model_path, mdig, &e) || sha256_file(data_path, ddig, &e)) goto done;
    sb_printf(&js, "{\n  \"model\": ");
    sb_json_string(&js, model_path);
    sb_printf(&js, ",\n  \"model_sha256\": \"%s\",\n  \"data\": ", mdig);
    sb_json_string(&js, data_path);
    sb_printf(&js, ",\n  \"data_sha256\": \"%s\",\n  \"device\": ", ddig);
    sb_json_string(&js, engine->description);
    sb_printf(&js, ",\n");
    sb_printf(&js, "  \"n_samples\": %lld,\n  \"n_targets\": %lld,\n", (long long)d.n_samples,
              targets);
    if (targets)
        sb_printf(&js, "  \"mean_nll\": %.9g,\n  \"perplexity\": %.9g,\n", mean_nll,
                  exp(mean_nll));
    else
        sb_printf(&js, "  \"mean_nll\": null,\n  \"perplexity\": null,\n");
    sb_printf(&js, "  \"seconds\": %.3f,\n  \"samples\": [\n", secs);
    for (int64_t s = 0; s < d.n_samples; s++)
        sb_printf(&js, "    {\"sum_logprob\": %.9g, \"n_targets\": %d}%s\n", sums[s], counts[s],
                  s + 1 < d.n_samples ? "," : "");
    sb_printf(&js, "  ]\n}\n");
    if (js.failed) {
        err_set(&e, "out of memory building the JSON");
        goto done;
    }
    if (out_path) {
        if (file_write_atomic(out_path, js.data, js.len, &e)) goto done;
        fprintf(stderr, "%s: %lld samples, %lld targets, mean NLL %.5f, perplexity %.4f (%.2f s)\n",
                out_path, (long long)d.n_samples, targets, mean_nll, exp(mean_nll), secs);
    } else {
        fwrite(js.data, 1, js.len, stdout);
    }
    rc = 0;
done:
    if (rc) cli_fail("eval", &e);
    sb_free(&js);
    free(sums);
    free(counts);
    engine_close(engine);
    dataset_free(&d);
    llama_free(&m);
    return rc;
}
