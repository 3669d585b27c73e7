// `lethe bench`: tokens/s, step split, peak memory and MFU of the real unlearning step on a preset
// or a checkpoint, beside the PyTorch-eager peer of the same step (tools/bench_torch.py).
#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "bench.h"
#include "checkpoint.h"
#include "cli.h"
#include "engine.h"
#include "model_yaml.h"
#include "strbuf.h"

static const char *const k_methods[] = {"ga",     "graddiff", "npo",    "simnpo",
                                        "wga",    "satimp",   "undial", "ceu", "rmu",
                                        "idknll", "idkdpo",   "task_vector", "finetune"};
static const int k_sgemm_sizes[] = {1024, 1536, 2048};
#define N_SGEMM_SIZES (int)(sizeof k_sgemm_sizes / sizeof k_sgemm_sizes[0])

// The split of the step as reported: the measured parts in order, then "other" (the rest).
static const TimerId k_parts[] = {TIMER_FORWARD, TIMER_CLASSIFIER_FORWARD, TIMER_BACKWARD,
                                  TIMER_CLASSIFIER_BACKWARD, TIMER_OPTIMIZER, TIMER_DATA};
static const char *const k_part_labels[] = {
    "forward (trunk)", "classifier forward", "backward (trunk)", "classifier backward",
    "optimizer (norm, clip, AdamW)", "data (batches, packing)"};
#define N_PARTS (int)(sizeof k_parts / sizeof k_parts[0])

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// --preset NAME (configs/models/NAME.yaml of the repository) or PATH.yaml: the file and a name.
static int resolve_preset(const char *value, const char *repo, char *path, size_t cap, char *name,
                          size_t name_cap, Err *e) {
    struct stat st;
    if (strchr(value, '/') || ends_with(value, ".yaml") || ends_with(value, ".yml")) {
        if (stat(value, &st) != 0 || !S_ISREG(st.st_mode))
            return err_set(e, "--preset %s: no such file", value);
        snprintf(path, cap, "%s", value);
        const char *base = strrchr(value, '/') ? strrchr(value, '/') + 1 : value;
        snprintf(name, name_cap, "%.*s", (int)strcspn(base, "."), base);
        return 0;
    }
    if (!repo)
        return err_set(e, "--preset %s: the presets are in the repository's configs/models/, "
                          "which is not an ancestor of the lethe executable's directory; give "
                          "the preset's path (--preset path/to/%s.yaml)",
                       value, value);
    snprintf(path, cap, "%s/configs/models/%s.yaml", repo, value);
    snprintf(name, name_cap, "%s", value);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return 0;
    // Unknown: name the nearest preset and list them all.
    char dir[BENCH_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/configs/models", repo);
    DIR *d = opendir(dir);
    StrBuf names = {0};
    char nearest[256] = "";
    int best = 1 << 30;
    struct dirent *ent;
    char *list[64];
    int n = 0;
    while (d && (ent = readdir(d)) != NULL && n < 64)
        if (ends_with(ent->d_name, ".yaml")) list[n++] = strdup(ent->d_name);
    if (d) closedir(d);
    for (int i = 0; i < n; i++) // sorted, for a stable message
        for (int j = i + 1; j < n; j++)
            if (list[i] && list[j] && strcmp(list[i], list[j]) > 0) {
                char *t = list[i];
                list[i] = list[j];
                list[j] = t;
            }
    for (int i = 0; i < n; i++) {
        if (!list[i]) continue;
        list[i][strlen(list[i]) - 5] = 0;
        sb_printf(&names, "%s%s", names.len ? ", " : "", list[i]);
        const int dist = edit_distance(value, list[i]);
        if (dist < best) {
            best = dist;
            snprintf(nearest, sizeof nearest, "%s", list[i]);
        }
        free(list[i]);
    }
    err_set(e, "unknown preset '%s'%s%s%s (presets in %s: %s)", value,
            nearest[0] ? "; did you mean '" : "", nearest, nearest[0] ? "'?" : "", dir,
            names.data ? names.data : "none");
    sb_free(&names);
    return -1;
}

// The model's sizes as a preset file, for the peer of a checkpoint.
static int write_preset_yaml(const char *path, const ModelConfig *c, Err *e) {
    FILE *f = fopen(path, "w");
    if (!f) return err_set(e, "%s: cannot write", path);
    fprintf(f,
            "vocab_size: %d\nhidden_size: %d\nintermediate_size: %d\nnum_hidden_layers: %d\n"
            "num_attention_heads: %d\nnum_key_value_heads: %d\nhead_dim: %d\n"
            "rms_norm_eps: %.9g\nrope_theta: %.9g\nmax_position_embeddings: %d\n"
            "tie_word_embeddings: %s\nattention_bias: %s\nbos_token_id: %d\neos_token_id: %d\n",
            c->vocab_size, c->hidden_size, c->intermediate_size, c->num_hidden_layers,
            c->num_attention_heads, c->num_key_value_heads, c->head_dim, (double)c->rms_norm_eps,
            (double)c->rope_theta, c->max_position_embeddings,
            c->tie_word_embeddings ? "true" : "false", c->attention_bias ? "true" : "false",
            c->bos_token_id, c->eos_token_id);
    return fclose(f) == 0 ? 0 : err_set(e, "%s: write failed", path);
}

static void cpu_model_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            const char *v = strchr(line, ':') + 1;
            while (*v == ' ' || *v == '\t') v++;
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\n"), v);
            break;
        }
    fclose(f);
}

static void load_average(double load[3]) {
    load[0] = load[1] = load[2] = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
        load[0] = load[1] = load[2] = NAN;
    fclose(f);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
    return (double)ru.ru_maxrss / 1024.0; // KiB on Linux
}

// 1234567.8 -> "1,234,568"
static const char *thousands(double v, char *buf, size_t cap) {
    char digits[64];
    snprintf(digits, sizeof digits, "%.0f", v);
    const size_t n = strlen(digits);
    size_t k = 0;
    for (size_t i = 0; i < n && k + 2 < cap; i++) {
        if (i > 0 && digits[i - 1] != '-' && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = 0;
    return buf;
}

static void json_number_or_null(StrBuf *b, double v) {
    if (isfinite(v))
        sb_printf(b, "%.10g", v);
    else
        sb_printf(b, "null");
}

typedef struct {
    // what was asked
    const char *method, *device_requested, *model_label, *model_source;
    int64_t batch, seq, steps, warmup, seed;
    int threads;
    double simnpo_delta;
    ModelConfig cfg;
    // what was measured
    BenchSteps st;
    double tokens_per_s, peak_rss_mib, flops_per_token, n_matmul, peak_flops, mfu;
    double sgemm_gflops[N_SGEMM_SIZES];
    double load[3];
    char device_name[400], openblas_core[64];
    const char *notes[6];
    int n_notes;
    BenchPeer peer;
} Report;

static double part_ms(const Report *r, int i) {
    if (i < N_PARTS) return 1e3 * r->st.part_mean_s[k_parts[i]];
    double measured = 0.0; // "other": the rest of the mean step
    for (int k = 0; k < N_PARTS; k++) measured += r->st.part_mean_s[k_parts[k]];
    const double other = r->st.mean_s - measured;
    return 1e3 * (other > 0 ? other : 0.0);
}

static void print_json(const Report *r) {
    StrBuf b = {0};
    const ModelConfig *c = &r->cfg;
    sb_printf(&b, "{\"bench\": \"lethe\", \"version\": ");
    sb_json_string(&b, LETHE_VERSION);
    sb_printf(&b, ", \"device\": \"%s\", \"device_requested\": ", r->st.on_gpu ? "cuda" : "cpu");
    sb_json_string(&b, r->device_requested);
    sb_printf(&b, ", \"device_name\": ");
    sb_json_string(&b, r->device_name);
    sb_printf(&b, ", \"model\": ");
    sb_json_string(&b, r->model_label);
    sb_printf(&b, ", \"model_source\": ");
    sb_json_string(&b, r->model_source);
    sb_printf(&b,
              ", \"config\": {\"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
              "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": "
              "%d, \"head_dim\": %d, \"tie_word_embeddings\": %s}",
              c->vocab_size, c->hidden_size, c->intermediate_size, c->num_hidden_layers,
              c->num_attention_heads, c->num_key_value_heads, c->head_dim,
              c->tie_word_embeddings ? "true" : "false");
    sb_printf(&b, ", \"method\": ");
    sb_json_string(&b, r->method);
    sb_printf(&b,
              ", \"batch\": %lld, \"seq\": %lld, \"steps\": %lld, \"warmup\": %lld, \"threads\": "
              "%d, \"seed\": %lld",
              (long long)r->batch, (long long)r->seq, (long long)r->steps, (long long)r->warmup,
              r->threads, (long long)r->seed);
    if (strcmp(r->method, "simnpo") == 0) sb_printf(&b, ", \"simnpo_delta\": %g", r->simnpo_delta);
    if (strcmp(r->method, "rmu") == 0) sb_printf(&b, ", \"rmu_layer\": %d", bench_rmu_layer(&r->cfg));
    sb_printf(&b, ", \"params\": %zu, \"matmul_params\": %.0f, \"tokens_per_step\": %lld",
              r->st.n_params, r->n_matmul, (long long)r->st.tokens_per_step);
    sb_printf(&b,
              ", \"median_ms\": %.10g, \"min_ms\": %.10g, \"mean_ms\": %.10g, \"max_ms\": "
              "%.10g",
              1e3 * r->st.median_s, 1e3 * r->st.min_s, 1e3 * r->st.mean_s, 1e3 * r->st.max_s);
    sb_printf(&b, ", \"step_ms\": [");
    for (int i = 0; i < r->st.steps && i < 1024; i++)
        sb_printf(&b, "%s%.10g", i ? ", " : "", 1e3 * r->st.step_s[i]);
    sb_printf(&b, "], \"tokens_per_s\": %.10g, \"split_ms\": {", r->tokens_per_s);
    for (int i = 0; i <= N_PARTS; i++)
        sb_printf(&b, "%s\"%s\": %.10g", i ? ", " : "",
                  i < N_PARTS ? timing_name(k_parts[i]) : "other", part_ms(r, i));
    sb_printf(&b, "}, \"peak_rss_mib\": ");
    json_number_or_null(&b, r->peak_rss_mib);
    sb_printf(&b, ", \"peak_device_mib\": ");
    json_number_or_null(&b, r->st.on_gpu ? r->st.peak_device_mib : NAN);
    sb_printf(&b, ", \"flops_per_token\": %.10g, \"peak_flops\": %.10g, \"peak_source\": ",
              r->flops_per_token, r->peak_flops);
    char source[128];
    if (r->st.on_gpu)
        snprintf(source, sizeof source, "datasheet dense bf16");
    else
        snprintf(source, sizeof source, "measured fp32 sgemm, %d thread%s", r->threads,
                 r->threads == 1 ? "" : "s");
    sb_json_string(&b, source);
    sb_printf(&b, ", \"sgemm_gflops\": {");
    for (int i = 0; i < N_SGEMM_SIZES; i++)
        sb_printf(&b, "%s\"%d\": %.10g", i ? ", " : "", k_sgemm_sizes[i], r->sgemm_gflops[i]);
    sb_printf(&b, "}, \"mfu\": ");
    json_number_or_null(&b, r->mfu);
    sb_printf(&b, ", \"openblas_core\": ");
    sb_json_string(&b, r->openblas_core);
    sb_printf(&b, ", \"load_avg\": [");
    for (int i = 0; i < 3; i++) {
        if (i) sb_printf(&b, ", ");
        json_number_or_null(&b, r->load[i]);
    }
    sb_printf(&b, "], \"peer\": {\"status\": ");
    sb_json_string(&b, r->peer.status);
    sb_printf(&b, ", \"python\": ");
    sb_json_string(&b, r->peer.python);
    sb_printf(&b, ", \"message\": ");
    sb_json_string(&b, r->peer.message);
    sb_printf(&b, ", \"variants\": {");
    for (int i = 0; i < r->peer.n_variants; i++) {
        const BenchPeerVariant *v = &r->peer.variants[i];
        sb_printf(&b, "%s", i ? ", " : "");
        sb_json_string(&b, v->variant);
        sb_printf(&b, ": {\"label\": ");
        sb_json_string(&b, v->label);
        sb_printf(&b, ", \"torch\": ");
        sb_json_string(&b, v->torch);
        sb_printf(&b, ", \"transformers\": ");
        if (v->transformers[0])
            sb_json_string(&b, v->transformers);
        else
            sb_printf(&b, "null");
        const double fields[] = {v->tokens_per_s, v->median_ms, v->fwd_ms, v->ref_ms, v->bwd_ms,
                                 v->opt_ms};
        const char *names[] = {"tokens_per_s", "median_ms", "fwd_ms", "ref_ms", "bwd_ms", "opt_ms"};
        for (int k = 0; k < 6; k++) {
            sb_printf(&b, ", \"%s\": ", names[k]);
            json_number_or_null(&b, fields[k]);
        }
        sb_printf(&b, ", \"mfu\": ");
        json_number_or_null(&b, r->flops_per_token * v->tokens_per_s / r->peak_flops);
        sb_printf(&b, ", \"lethe_ratio\": ");
        json_number_or_null(&b, r->tokens_per_s / v->tokens_per_s);
        sb_printf(&b, "}");
    }
    sb_printf(&b, "}}, \"notes\": [");
    for (int i = 0; i < r->n_notes; i++) {
        if (i) sb_printf(&b, ", ");
        sb_json_string(&b, r->notes[i]);
    }
    sb_printf(&b, "]}\n");
    fputs(b.data ? b.data : "{}\n", stdout);
    sb_free(&b);
}

static void print_table(const Report *r) {
    char t1[64], t2[64];
    const ModelConfig *c = &r->cfg;
    printf("lethe bench: %s (%s), method %s, B x T = %lld x %lld, %d thread%s, device %s (%s)\n",
           r->model_label, r->model_source, r->method, (long long)r->batch, (long long)r->seq,
           r->threads, r->threads == 1 ? "" : "s", r->st.on_gpu ? "cuda" : "cpu",
           r->device_name);
    printf("  D%d L%d H%d KV%d hd%d F%d V%d%s, %s parameters; %lld timed step%s after %lld "
           "warm-up\n",
           c->hidden_size, c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads,
           c->head_dim, c->intermediate_size, c->vocab_size, c->tie_word_embeddings ? " tied" : "",
           thousands((double)r->st.n_params, t1, sizeof t1), (long long)r->steps,
           r->steps == 1 ? "" : "s", (long long)r->warmup);
    printf("  load average %.2f %.2f %.2f at the start (on a shared machine the numbers are "
           "indicative)\n\n",
           r->load[0], r->load[1], r->load[2]);
    printf("  %-30s %s\n", "tokens per step",
           thousands((double)r->st.tokens_per_step, t1, sizeof t1));
    printf("  %-30s %.1f ms (min %.1f, mean %.1f, max %.1f)\n", "step, median",
           1e3 * r->st.median_s, 1e3 * r->st.min_s, 1e3 * r->st.mean_s, 1e3 * r->st.max_s);
    printf("  %-30s %s\n", "tokens/s", thousands(r->tokens_per_s, t1, sizeof t1));
    printf("  %-30s %.1f MiB\n", "peak resident memory", r->peak_rss_mib);
    if (r->st.on_gpu)
        printf("  %-30s %.1f MiB (cudaMemGetInfo: total - free, after each step)\n",
               "peak device memory in use", r->st.peak_device_mib);
    printf("  %-30s %.4g M (6N + 12 L H hd T, N = %s in matmuls)\n", "FLOPs per token (PaLM)",
           r->flops_per_token / 1e6, thousands(r->n_matmul, t2, sizeof t2));
    if (r->st.on_gpu) {
        if (r->peak_flops > 0)
            printf("  %-30s %.1f TFLOP/s (datasheet, dense bf16)\n", "peak", r->peak_flops / 1e12);
        else
            printf("  %-30s unknown: this GPU's name is not in the datasheet table\n", "peak");
    } else {
        printf("  %-30s %.1f GFLOP/s (fp32 sgemm measured now:", "peak", r->peak_flops / 1e9);
        for (int i = 0; i < N_SGEMM_SIZES; i++)
            printf(" %d: %.1f%s", k_sgemm_sizes[i], r->sgemm_gflops[i],
                   i + 1 < N_SGEMM_SIZES ? "," : ")\n");
    }
    printf("  %-30s %.2f%%\n", "MFU", 100 * r->mfu);
    printf("\n  %-30s %10s %7s\n", "split of the mean step", "ms", "share");
    for (int i = 0; i <= N_PARTS; i++) {
        const double ms = part_ms(r, i);
        printf("  %-30s %10.2f %6.1f%%\n",
               i < N_PARTS ? k_part_labels[i] : "other (zeroing, objective)", ms,
               r->st.mean_s > 0 ? 100 * ms / (1e3 * r->st.mean_s) : 0.0);
    }
    printf("  %-30s %10.2f %6.1f%%\n", "total (mean step)", 1e3 * r->st.mean_s, 100.0);

    printf("\n  PyTorch-eager peer (tools/bench_torch.py, same preset, method, B, T, threads, "
           "steps):");
    if (strcmp(r->peer.status, "ok") != 0) {
        printf(" %s%s%s\n", r->peer.status, r->peer.message[0] ? ": " : "", r->peer.message);
    } else {
        printf("\n  %s\n", r->peer.python);
        printf("  %-13s %10s %10s %22s %8s %9s  %s\n", "variant", "tokens/s", "median ms",
               "fwd [ref] / bwd / opt", "MFU", "lethe is", "model");
        for (int i = 0; i < r->peer.n_variants; i++) {
            const BenchPeerVariant *v = &r->peer.variants[i];
            char split[64];
            snprintf(split, sizeof split, "%.1f [%.1f] / %.1f / %.1f", v->fwd_ms, v->ref_ms,
                     v->bwd_ms, v->opt_ms);
            printf("  %-13s %10s %10.1f %22s %7.2f%% %8.2fx  %s, torch %s\n", v->variant,
                   thousands(v->tokens_per_s, t1, sizeof t1), v->median_ms, split,
                   100 * r->flops_per_token * v->tokens_per_s / r->peak_flops,
                   r->tokens_per_s / v->tokens_per_s, v->label, v->torch);
        }
        if (r->peer.message[0]) printf("  (%s)\n", r->peer.message);
    }
    if (r->n_notes) printf("\n");
    for (int i = 0; i < r->n_notes; i++) printf("  note: %s\n", r->notes[i]);
}

static int is_method(const char *m) {
    for (size_t i = 0; i < sizeof k_methods / sizeof k_methods[0]; i++)
        if (strcmp(m, k_methods[i]) == 0) return 1;
    return 0;
}

int cmd_bench(int argc, char **argv) {
    CliOption opts[] = {
        {"--preset", NULL, 0,
         "model preset: a name of configs/models/ or a YAML path (default s260k)"},
        {"--model", NULL, 0, "a checkpoint .h5 instead of a preset (its weights are the start)"},
        {"--method", "npo", 0,
         "ga, graddiff, npo, simnpo, wga, satimp, idknll, idkdpo, task_vector or finetune"},
        {"--batch", "8", 0, "B: samples per step (one forget and one retain micro-batch)"},
        {"--seq", "256", 0, "T: tokens per sample"},
        {"--steps", "10", 0, "timed steps (1 to 1024)"},
        {"--warmup", "2", 0, "warm-up steps before them"},
        {"--threads", "0", 0, "OpenMP threads, lethe's and the peer's (0: OMP_NUM_THREADS or all)"},
        {"--device", "auto", 0, "cpu, cuda or auto (the GPU when there is one)"},
        {"--device-dtype", "bf16", 0, "cuda: bf16 weights and activations (fp32 master), or fp32"},
        {"--peer", "auto", 0, "PyTorch peer: auto (LETHE_BENCH_PYTHON, .venv-bench, "
                              "/usr/bin/python3: the first with torch), none, or a Python"},
        {"--seed", "0", 0, "seeds the random model and the random batches"},
        {"--json", NULL, 1, "print one JSON object (keys in the README) instead of the table"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[1];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 0, &npos, &e);
    if (rc == 1) {
        cli_usage("bench",
                  "[--preset NAME|PATH.yaml | --model M.h5] [--method M] [--batch B] [--seq T] "
                  "[--steps N] [--warmup W] [--threads N] [--device cpu|cuda|auto] "
                  "[--peer auto|none|PYTHON] [--seed S] [--json]",
                  "Times the real unlearning step (the code path of `lethe unlearn`, or of `lethe\n"
                  "finetune` for --method finetune) on random batches: tokens/s, median and min\n"
                  "step, the split of the step, peak resident memory, and MFU with PaLM's\n"
                  "6N + 12 L H hd T FLOPs per token against the peak (CPU: an fp32 sgemm measured\n"
                  "with the same threads; GPUs: dense bf16 H100 SXM 989, H100 PCIe 756, H200 989,\n"
                  "B200 2250, A100 312 TFLOP/s). Then the PyTorch-eager peer of the same step\n"
                  "(tools/bench_torch.py: own torch.nn Llama and transformers) and lethe's ratio.\n"
                  "Files go to a temporary directory that is removed at the end.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("bench", &e);
    Report r;
    memset(&r, 0, sizeof r);
    const char *preset = cli_get(opts, n, "--preset"), *model = cli_get(opts, n, "--model");
    r.method = cli_get(opts, n, "--method");
    r.device_requested = cli_get(opts, n, "--device");
    const char *peer_choice = cli_get(opts, n, "--peer");
    long batch, seq, steps, warmup, threads, seed;
    if (cli_int("--batch", cli_get(opts, n, "--batch"), 1, 1 << 20, &batch, &e) ||
        cli_int("--seq", cli_get(opts, n, "--seq"), 2, 1 << 24, &seq, &e) ||
        cli_int("--warmup", cli_get(opts, n, "--warmup"), 0, 1 << 20, &warmup, &e) ||
        cli_int("--threads", cli_get(opts, n, "--threads"), 0, 4096, &threads, &e) ||
        cli_int("--seed", cli_get(opts, n, "--seed"), 0, 0x7fffffffL, &seed, &e) ||
        cli_int("--steps", cli_get(opts, n, "--steps"), -(1L << 30), 1L << 30, &steps, &e))
        return cli_fail("bench", &e);
    if (steps < 1 || steps > 1024) {
        err_set(&e, "--steps %ld: give 1 to 1024 timed steps", steps);
        return cli_fail("bench", &e);
    }
    if (!is_method(r.method)) {
        err_set(&e, "--method %s is not a method (one of: ga, graddiff, npo, simnpo, wga, satimp, "
                    "undial, ceu, rmu, idknll, idkdpo, task_vector, finetune)",
                r.method);
        return cli_fail("bench", &e);
    }
    const DeviceRequest dev = {r.device_requested, cli_get(opts, n, "--device-dtype")};
    if (engine_check_request(&dev, &e)) return cli_fail("bench", &e);
    if (preset && model) {
        err_set(&e, "give --preset or --model, not both");
        return cli_fail("bench", &e);
    }
    char repo[BENCH_PATH_MAX];
    const int have_repo = bench_find_repository(repo, sizeof repo) == 0;
    char preset_path[BENCH_PATH_MAX + 64], preset_name[256];
    if (model) {
        CkptReader *cr;
        if (ckpt_reader_open(&cr, model, &e)) return cli_fail("bench", &e);
        r.cfg = *ckpt_reader_config(cr);
        ckpt_reader_close(cr);
        r.model_label = model;
        r.model_source = "checkpoint";
    } else {
        if (resolve_preset(preset ? preset : "s260k", have_repo ? repo : NULL, preset_path,
                           sizeof preset_path, preset_name, sizeof preset_name, &e) ||
            model_config_read_yaml(preset_path, &r.cfg, &e))
            return cli_fail("bench", &e);
        r.model_label = preset_name;
        r.model_source = "random init";
    }
    if (seq > r.cfg.max_position_embeddings) {
        err_set(&e, "--seq %ld is more than the model's max_position_embeddings %d", seq,
                r.cfg.max_position_embeddings);
        return cli_fail("bench", &e);
    }
    r.batch = batch, r.seq = seq, r.steps = steps, r.warmup = warmup, r.seed = seed;
    if (threads > 0) omp_set_num_threads((int)threads);
    r.threads = omp_get_max_threads();
    // As tools/bench_unlearn.sh: the NLL of random tokens is about ln V, and with delta 0
    // SimNPO's sigmoid saturates (s15m: x = 4.5 x 10.4), every forget weight is 0 and the
    // classifier backward of the forget batch is skipped, work that real data never skips.
    r.simnpo_delta = floor(log((double)r.cfg.vocab_size));
    load_average(r.load);
    cpu_model_name(r.device_name, sizeof r.device_name);
    snprintf(r.openblas_core, sizeof r.openblas_core, "%s", openblas_get_corename());

    static char note_simnpo[256];
    r.notes[r.n_notes++] =
        strcmp(r.method, "finetune") == 0
            ? "the step is `lethe finetune`'s (train_run): NLL of one batch, backward, global-norm "
              "clip 1.0, AdamW lr 1e-5, on random tokens"
            : "the step is `lethe unlearn`'s (train_run): forget batch with the method's objective "
              "weights (and a retain batch for every method but ga), backward, global-norm clip "
              "1.0, AdamW lr 1e-5, on random tokens";
    if (strcmp(r.method, "npo") == 0)
        r.notes[r.n_notes++] =
            "npo: lethe computes the reference sums s_i^ref once before step 1 and caches them, "
            "as `lethe unlearn` does; the PyTorch peer runs the reference forward every step "
            "(open-unlearning's NPO)";
    if (strcmp(r.method, "idkdpo") == 0)
        r.notes[r.n_notes++] =
            "idkdpo: a third batch of B samples (the preferred answers, paired with the forget "
            "batch) is learnt from; lethe caches both sets' reference sums once before step 1, "
            "the PyTorch peer runs both reference forwards every step (open-unlearning's DPO)";
    if (strcmp(r.method, "simnpo") == 0) {
        snprintf(note_simnpo, sizeof note_simnpo,
                 "simnpo runs with method.delta = floor(ln V) = %g on both sides: the NLL of "
                 "random tokens is about ln V, and with delta 0 the sigmoid saturates and the "
                 "forget batch's LM-head backward is skipped (docs/perf.md)",
                 r.simnpo_delta);
        r.notes[r.n_notes++] = note_simnpo;
    }

    char workdir[BENCH_PATH_MAX];
    if (bench_workdir_create(workdir, sizeof workdir, &e)) return cli_fail("bench", &e);
    fprintf(stderr, "lethe bench: %s %s, B x T = %ld x %ld, %d thread%s: %ld warm-up + %ld timed "
                    "steps...\n",
            r.model_label, r.method, batch, seq, r.threads, r.threads == 1 ? "" : "s", warmup,
            steps);
    BenchSpec spec = {r.method, model, r.cfg, batch, seq, steps, warmup, seed, r.simnpo_delta,
                      dev.name, dev.dtype};
    if (bench_run_steps(&spec, workdir, &r.st, &e)) {
        bench_workdir_remove(workdir);
        return cli_fail("bench", &e);
    }
    r.peak_rss_mib = peak_rss_mib(); // before the sgemm's buffers
    r.tokens_per_s = (double)r.st.tokens_per_step / r.st.median_s;
    r.flops_per_token = bench_flops_per_token(&r.cfg, seq, &r.n_matmul);
    static char note_gpu[1024];
    if (r.st.on_gpu) {
        // The GPU's dense bf16 datasheet peak (also for --device-dtype fp32, whose MFU is then
        // against the bf16 peak).
        snprintf(r.device_name, sizeof r.device_name, "%s", r.st.device);
        r.peak_flops = bench_gpu_peak_flops(r.st.device);
        snprintf(note_gpu, sizeof note_gpu,
                 "device %s: peak = %s; the split times each part with the stream synchronised "
                 "at its end (only while benchmarking)",
                 r.st.device, r.peak_flops > 0 ? "the datasheet's dense bf16 tensor-core FLOP/s"
                                               : "unknown for this GPU name (no MFU)");
        r.notes[r.n_notes++] = note_gpu;
    } else {
        if (strcmp(r.device_requested, "auto") == 0)
            r.notes[r.n_notes++] = "--device auto chose the CPU: no usable CUDA device, or a build "
                                   "without the CUDA backend";
        fprintf(stderr, "lethe bench: measuring the fp32 sgemm peak...\n");
        r.peak_flops = bench_sgemm_peak(k_sgemm_sizes, N_SGEMM_SIZES, r.sgemm_gflops);
    }
    r.mfu = r.peak_flops > 0 ? r.flops_per_token * r.tokens_per_s / r.peak_flops : NAN;

    char peer_yaml[BENCH_PATH_MAX + 64];
    if (model) {
        snprintf(peer_yaml, sizeof peer_yaml, "%s/preset.yaml", workdir);
        if (write_preset_yaml(peer_yaml, &r.cfg, &e)) {
            bench_workdir_remove(workdir);
            return cli_fail("bench", &e);
        }
    } else {
        snprintf(peer_yaml, sizeof peer_yaml, "%s", preset_path);
    }
    if (strcmp(peer_choice, "none") != 0)
        fprintf(stderr, "lethe bench: running the PyTorch peer...\n");
    BenchPeerArgs pa = {peer_choice, have_repo ? repo : NULL, peer_yaml, r.method, batch, seq,
                        steps, warmup, seed, r.threads, r.simnpo_delta,
                        r.st.on_gpu ? "cuda" : "cpu"};
    bench_peer_run(&pa, &r.peer);
    bench_workdir_remove(workdir);

    if (cli_flag(opts, n, "--json"))
        print_json(&r);
    else
        print_table(&r);
    return 0;
}
