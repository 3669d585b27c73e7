// `lethe bench`'s measuring parts (see bench.h). The step is train_run itself, not a copy of it:
// what is timed is what `lethe unlearn` runs, and its files live in a temporary directory.
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "json.h"
#include "llama.h"
#include "model_file.h"
#include "objective.h"
#include "ops.h"
#include "rng.h"
#include "run_config.h"
#include "strbuf.h"
#include "train.h"

extern char **environ;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// ---- FLOPs and peaks --------------------------------------------------------------------------

double bench_flops_per_token(const ModelConfig *c, int64_t T, double *n_matmul) {
    const double D = c->hidden_size, F = c->intermediate_size, L = c->num_hidden_layers;
    const double H = c->num_attention_heads, KV = c->num_key_value_heads, hd = c->head_dim;
    const double V = c->vocab_size;
    // q and o: D x H hd each; k and v: D x KV hd each; gate, up, down: D x F each; the LM head.
    const double n = L * (2 * D * H * hd + 2 * D * KV * hd + 3 * D * F) + V * D;
    if (n_matmul) *n_matmul = n;
    return 6 * n + 12 * L * H * hd * (double)T;
}

double bench_gpu_peak_flops(const char *name) {
    // Dense (no 2:4 sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s.
    static const struct {
        const char *key, *also; // both must occur in the device name (also may be NULL)
        double tflops;
    } table[] = {
        {"H100", "PCIe", 756}, {"H100", NULL, 989}, // SXM5 unless the name says PCIe
        {"H200", NULL, 989},   {"B200", NULL, 2250}, {"A100", NULL, 312},
    };
    for (size_t i = 0; name && i < sizeof table / sizeof table[0]; i++)
        if (strstr(name, table[i].key) && (!table[i].also || strstr(name, table[i].also)))
            return table[i].tflops * 1e12;
    return 0.0;
}

double bench_sgemm_peak(const int *sizes, int n_sizes, double *gflops) {
    int n_max = 0;
    for (int i = 0; i < n_sizes; i++)
        if (sizes[i] > n_max) n_max = sizes[i];
    const size_t nn = (size_t)n_max * (size_t)n_max;
    float *x = malloc(nn * sizeof *x), *w = malloc(nn * sizeof *w), *y = malloc(nn * sizeof *y);
    double peak = 0.0;
    if (x && w && y) {
        Rng r;
        rng_seed(&r, 1);
        for (size_t i = 0; i < nn; i++) {
            x[i] = rng_uniform(&r) - 0.5f;
            w[i] = rng_uniform(&r) - 0.5f;
        }
        matmul_forward(y, x, w, NULL, (size_t)sizes[0], sizes[0], sizes[0]); // warms the threads
        for (int i = 0; i < n_sizes; i++) {
            const int n = sizes[i];
            double best = INFINITY;
            for (int rep = 0; rep < 3; rep++) {
                const double t0 = now_seconds();
                matmul_forward(y, x, w, NULL, (size_t)n, n, n);
                const double dt = now_seconds() - t0;
                if (dt < best) best = dt;
            }
            const double flops = 2.0 * n * (double)n * n / best;
            gflops[i] = flops / 1e9;
            if (flops > peak) peak = flops;
        }
    }
    free(x);
    free(w);
    free(y);
    return peak;
}

// ---- the working directory --------------------------------------------------------------------

int bench_workdir_create(char *dir, size_t cap, Err *e) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    if ((size_t)snprintf(dir, cap, "%s/lethe-bench-XXXXXX", tmp) >= cap)
        return err_set(e, "TMPDIR is too long: %s", tmp);
    if (!mkdtemp(dir))
        return err_set(e, "cannot create a directory in %s: %s", tmp, strerror(errno));
    return 0;
}

void bench_workdir_remove(const char *dir) {
    if (!dir || !*dir) return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL) {
            if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
            char path[BENCH_PATH_MAX + 256];
            snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
                bench_workdir_remove(path);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

// ---- the step ---------------------------------------------------------------------------------

int bench_rmu_layer(const ModelConfig *c) { return c->num_hidden_layers * 7 / 32; }

int bench_method_has_retain(const char *method) {
    const Method *m = method_find(method);
    return m && method_unlearns(m) && m->retain != RETAIN_NONE && m->alpha != 0; // alpha 0: no R
}

// B samples of T uniform random tokens, every token after a sample's first a target.
static int write_random_dataset(const char *path, int64_t B, int64_t T, int vocab, uint64_t seed,
                                Err *e) {
    TokenDataset d = {0};
    d.n_samples = B;
    d.n_tokens = B * T;
    d.vocab_size = vocab;
    snprintf(d.tokenizer_name, sizeof d.tokenizer_name, "none");
    d.tokens = malloc((size_t)d.n_tokens * sizeof *d.tokens);
    d.offsets = malloc(((size_t)B + 1) * sizeof *d.offsets);
    d.loss_mask = malloc((size_t)d.n_tokens);
    int rc = -1;
    if (!d.tokens || !d.offsets || !d.loss_mask) {
        err_set(e, "out of memory for %lld x %lld tokens", (long long)B, (long long)T);
        goto done;
    }
    Rng r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < d.n_tokens; i++) {
        d.tokens[i] = (int32_t)(rng_next(&r) % (uint64_t)vocab);
        d.loss_mask[i] = 1;
    }
    for (int64_t s = 0; s <= B; s++) d.offsets[s] = s * T;
    rc = dataset_write(path, &d, e);
done:
    free(d.tokens);
    free(d.offsets);
    free(d.loss_mask);
    return rc;
}

static int override(RunConfig *c, Err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int override(RunConfig *c, Err *e, const char *fmt, ...) {
    char assignment[BENCH_PATH_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(assignment, sizeof assignment, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof assignment) return err_set(e, "a path is too long");
    return run_config_override(c, assignment, e);
}

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Runs train_run with stdout and stderr in log_path, so `lethe bench --json` prints one object.
static int train_run_quietly(const RunConfig *c, const char *command, const char *log_path,
                             Err *e) {
    fflush(stdout);
    fflush(stderr);
    const int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log < 0) return err_set(e, "%s: %s", log_path, strerror(errno));
    const int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    dup2(log, STDOUT_FILENO);
    dup2(log, STDERR_FILENO);
    close(log);
    const int rc = train_run(c, command, 0, e);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    return rc;
}

int bench_run_steps(const BenchSpec *s, const char *workdir, BenchSteps *out, Err *e) {
    memset(out, 0, sizeof *out);
    const int finetune = strcmp(s->method, "finetune") == 0;
    const int has_retain = bench_method_has_retain(s->method);
    char model[BENCH_PATH_MAX], forget[BENCH_PATH_MAX], retain[BENCH_PATH_MAX],
        alt[BENCH_PATH_MAX], run_out[BENCH_PATH_MAX], log_path[BENCH_PATH_MAX];
    const Method *method = method_find(s->method);
    const int paired = method && method_pairs(method);
    snprintf(alt, sizeof alt, "%s/forget_alt.h5", workdir);
    snprintf(model, sizeof model, "%s/model.h5", workdir);
    snprintf(forget, sizeof forget, "%s/forget.h5", workdir);
    snprintf(retain, sizeof retain, "%s/retain.h5", workdir);
    snprintf(run_out, sizeof run_out, "%s/run", workdir);
    snprintf(log_path, sizeof log_path, "%s/run.log", workdir);

    LlamaModel m;
    if (llama_create(&m, &s->cfg, e)) return -1;
    out->n_params = m.n_params;
    int rc = 0;
    if (!s->model_path) {
        llama_init_random(&m, (uint64_t)s->seed, 0.02f);
        const ProvenanceEntry prov[] = {{"source", "random init (lethe bench)"}};
        rc = model_file_write(model, &m, NULL, DTYPE_F32, prov, 1, e);
    }
    llama_free(&m);
    if (rc) return -1;
    const uint64_t data_seed = (uint64_t)s->seed * 0x9E3779B97F4A7C15ull;
    if (write_random_dataset(forget, s->batch, s->seq, s->cfg.vocab_size, data_seed ^ 1, e) ||
        (has_retain &&
         write_random_dataset(retain, s->batch, s->seq, s->cfg.vocab_size, data_seed ^ 2, e)) ||
        (paired && write_random_dataset(alt, s->batch, s->seq, s->cfg.vocab_size, data_seed ^ 3, e)))
        return -1;

    // The step of a `lethe unlearn` recipe with one forget (and one retain) micro-batch of B
    // samples: the data of tools/bench_unlearn.sh. No state saves before the end, no logging.
    const char *command = finetune ? "finetune" : "unlearn";
    RunConfig c;
    run_config_defaults(&c, command);
    if (override(&c, e, "model=%s", s->model_path ? s->model_path : model) ||
        override(&c, e, "%s=%s", finetune ? "data.train" : "data.forget", forget) ||
        (has_retain && override(&c, e, "data.retain=%s", retain)) ||
        (paired && override(&c, e, "data.forget_alt=%s", alt)) ||
        override(&c, e, "out=%s", run_out) || override(&c, e, "method.name=%s", s->method) ||
        override(&c, e, "seed=%lld", (long long)s->seed) ||
        override(&c, e, "optim.name=adamw") || override(&c, e, "optim.lr=1e-5") ||
        override(&c, e, "optim.schedule=constant") || override(&c, e, "optim.warmup_epochs=0") ||
        override(&c, e, "optim.warmup_steps=0") || override(&c, e, "optim.grad_clip=1.0") ||
        override(&c, e, "train.max_steps=%lld", (long long)(s->warmup + s->steps)) ||
        override(&c, e, "train.batch_size=%lld", (long long)s->batch) ||
        override(&c, e, "train.micro_batch_size=%lld", (long long)s->batch) ||
        override(&c, e, "train.max_batch_tokens=%lld", (long long)(s->batch * s->seq)) ||
        override(&c, e, "train.state_every=0") || override(&c, e, "train.log_every=0") ||
        override(&c, e, "device.name=%s", s->device ? s->device : "cpu") ||
        override(&c, e, "device.dtype=%s", s->device_dtype ? s->device_dtype : "bf16") ||
        (strcmp(s->method, "simnpo") == 0 &&
         override(&c, e, "method.delta=%.17g", s->simnpo_delta)) ||
        (strcmp(s->method, "rmu") == 0 &&
         override(&c, e, "method.layer=%d", bench_rmu_layer(&s->cfg))) ||
        run_config_finish(&c, command, e))
        return err_prefix(e, "the benchmark's run config");

    timing_enable(1);
    rc = train_run_quietly(&c, command, log_path, e);
    const int recorded = timing_step_count();
    const int first = (int)s->warmup;
    if (rc == 0 && recorded != s->warmup + s->steps)
        rc = err_set(e, "%d steps were recorded, not %lld (out of memory?)", recorded,
                     (long long)(s->warmup + s->steps));
    if (rc == 0) {
        out->steps = recorded - first;
        for (int i = 0; i < out->steps; i++) {
            const double *record = timing_step_record(first + i);
            if (i < (int)(sizeof out->step_s / sizeof out->step_s[0]))
                out->step_s[i] = record[TIMER_STEP];
            for (int k = 0; k < TIMER_COUNT; k++) out->part_mean_s[k] += record[k] / out->steps;
        }
        const int n = out->steps < 1024 ? out->steps : 1024;
        double sorted[1024];
        memcpy(sorted, out->step_s, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, compare_doubles);
        out->median_s = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
        out->min_s = sorted[0];
        out->max_s = sorted[n - 1];
        out->mean_s = out->part_mean_s[TIMER_STEP];
    }
    timing_enable(0);
    snprintf(out->device, sizeof out->device, "%s", train_last_device(&out->on_gpu));
    out->peak_device_mib = (double)train_last_device_peak() / (1024.0 * 1024.0);
    out->tokens_per_step = s->batch * s->seq * (1 + has_retain + paired);
    return rc ? err_prefix(e, "the %s run", command) : 0;
}

// ---- the PyTorch peer -------------------------------------------------------------------------

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int bench_find_repository(char *dir, size_t cap) {
    char path[BENCH_PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return -1;
    path[n] = 0;
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(path, '/');
        if (!slash || slash == path) return -1;
        *slash = 0; // the parent directory
        char probe[BENCH_PATH_MAX + 64];
        snprintf(probe, sizeof probe, "%s/tools/bench_torch.py", path);
        if (is_file(probe)) {
            snprintf(probe, sizeof probe, "%s/configs/models", path);
            struct stat st;
            if (stat(probe, &st) == 0 && S_ISDIR(st.st_mode) && strlen(path) < cap) {
                snprintf(dir, cap, "%s", path);
                return 0;
            }
        }
    }
    return -1;
}

// A command name without a slash is looked up on PATH, as a shell would.
static int resolve_executable(const char *name, char *out, size_t cap) {
    if (strchr(name, '/')) {
        snprintf(out, cap, "%s", name);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        const size_t len = strcspn(path, ":");
        snprintf(out, cap, "%.*s/%s", (int)len, path, name);
        if (len && access(out, X_OK) == 0 && is_file(out)) return 0;
        path += len + (path[len] == ':');
    }
    return -1;
}

// Runs argv with envp, stdout and stderr into *output; returns the exit status (-1: not run,
// 128 + N: killed by signal N).
static int run_capture(char *const argv[], char *const envp[], StrBuf *output) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        const int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof buf)) != 0) {
        if (got < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (output) sb_printf(output, "%.*s", (int)got, buf);
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The environment of the peer: ours, with the thread counts replaced.
static char **peer_environment(int threads, char store[3][64]) {
    size_t n = 0;
    while (environ[n]) n++;
    char **env = malloc((n + 4) * sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "OMP_NUM_THREADS=", 16) &&
            strncmp(environ[i], "MKL_NUM_THREADS=", 16) &&
            strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21))
            env[k++] = environ[i];
    snprintf(store[0], 64, "OMP_NUM_THREADS=%d", threads);
    snprintf(store[1], 64, "MKL_NUM_THREADS=%d", threads);
    // Debian's torch links a pthread OpenBLAS that runs 3-4x slower inside torch's OpenMP pool
    // unless held to one thread (docs/perf.md); the PyPI wheels use MKL and do not read it.
    snprintf(store[2], 64, "OPENBLAS_NUM_THREADS=1");
    for (int i = 0; i < 3; i++) env[k++] = store[i];
    env[k] = NULL;
    return env;
}

static int python_has_torch(const char *python) {
    char exe[BENCH_PATH_MAX];
    if (resolve_executable(python, exe, sizeof exe)) return 0;
    char *argv[] = {exe, "-c", "import torch", NULL};
    return run_capture(argv, environ, NULL) == 0;
}

// The last non-empty line of text that does not start with '{' or '#' (an error's summary).
static void last_message_line(const char *text, char *out, size_t cap) {
    out[0] = 0;
    for (const char *line = text; line && *line;) {
        const size_t len = strcspn(line, "\n");
        if (len > 0 && line[0] != '{' && line[0] != '#')
            snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), line);
        line += len + (line[len] == '\n');
    }
}

static void copy_json_string(const JsonValue *obj, const char *key, char *out, size_t cap) {
    const char *v = json_object_get_string(obj, key);
    snprintf(out, cap, "%s", v ? v : "");
}

static double json_get_number(const JsonValue *obj, const char *key) {
    const JsonValue *v = json_object_get(obj, key);
    return json_is(v, JSON_NUMBER) ? json_number(v) : NAN;
}

void bench_peer_run(const BenchPeerArgs *a, BenchPeer *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(a->choice, "none") == 0) {
        snprintf(out->status, sizeof out->status, "skipped");
        snprintf(out->message, sizeof out->message, "--peer none");
        return;
    }
    snprintf(out->status, sizeof out->status, "unavailable");
    char script[BENCH_PATH_MAX + 32];
    if (!a->repo) {
        snprintf(out->message, sizeof out->message,
                 "tools/bench_torch.py not found: the repository is not an ancestor of the "
                 "lethe executable's directory");
        return;
    }
    snprintf(script, sizeof script, "%s/tools/bench_torch.py", a->repo);
    if (!is_file(script)) {
        snprintf(out->message, sizeof out->message, "%.900s does not exist", script);
        return;
    }

    // The Python: the one given, or the first with torch of LETHE_BENCH_PYTHON, the repository's
    // .venv-bench (tools/bench_venv.sh) and Debian's /usr/bin/python3.
    char python[BENCH_PATH_MAX];
    if (strcmp(a->choice, "auto") != 0) {
        if (resolve_executable(a->choice, python, sizeof python)) {
            snprintf(out->message, sizeof out->message, "--peer %s: not an executable", a->choice);
            return;
        }
    } else {
        char venv[BENCH_PATH_MAX + 32];
        snprintf(venv, sizeof venv, "%s/.venv-bench/bin/python", a->repo);
        const char *env_python = getenv("LETHE_BENCH_PYTHON");
        const char *candidates[] = {env_python && *env_python ? env_python : NULL, venv,
                                    "/usr/bin/python3"};
        StrBuf tried = {0};
        python[0] = 0;
        for (size_t i = 0; i < 3 && !python[0]; i++) {
            if (!candidates[i]) continue;
            if (python_has_torch(candidates[i]))
                resolve_executable(candidates[i], python, sizeof python);
            else
                sb_printf(&tried, "%s%s", tried.len ? ", " : "", candidates[i]);
        }
        if (!python[0]) {
            snprintf(out->message, sizeof out->message, "no Python with torch found (tried %s)",
                     tried.data ? tried.data : "nothing");
            sb_free(&tried);
            return;
        }
        if (tried.len) // an earlier choice, e.g. LETHE_BENCH_PYTHON, was passed over: say so
            snprintf(out->message, sizeof out->message, "without torch, passed over: %.900s",
                     tried.data);
        sb_free(&tried);
    }
    snprintf(out->python, sizeof out->python, "%s", python);

    char args[7][32];
    snprintf(args[0], 32, "%lld", (long long)a->batch);
    snprintf(args[1], 32, "%lld", (long long)a->seq);
    snprintf(args[2], 32, "%lld", (long long)a->steps);
    snprintf(args[3], 32, "%lld", (long long)a->warmup);
    snprintf(args[4], 32, "%d", a->threads);
    snprintf(args[5], 32, "%lld", (long long)a->seed);
    snprintf(args[6], 32, "%.17g", a->simnpo_delta);
    char *argv[] = {python, script, "--preset", (char *)a->preset_yaml, "--method",
                    (char *)a->method, "--batch", args[0], "--seq", args[1], "--steps", args[2],
                    "--warmup", args[3], "--threads", args[4], "--seed", args[5],
                    "--simnpo-delta", args[6], "--models", "own,transformers", "--json",
                    "--device", (char *)(a->device ? a->device : "cpu"), NULL};
    char store[3][64];
    char **env = peer_environment(a->threads, store);
    StrBuf output = {0};
    const int status = env ? run_capture(argv, env, &output) : -1;
    free(env);
    const char *text = output.data ? output.data : "";
    for (const char *line = text; *line;) {
        const size_t len = strcspn(line, "\n");
        const int room = out->n_variants < (int)(sizeof out->variants / sizeof out->variants[0]);
        if (line[0] == '{' && room) {
            Err ignore;
            JsonValue *v = json_parse(line, len, &ignore);
            const char *bench = v ? json_object_get_string(v, "bench") : NULL;
            if (bench && strncmp(bench, "torch-", 6) == 0) {
                BenchPeerVariant *pv = &out->variants[out->n_variants++];
                snprintf(pv->variant, sizeof pv->variant, "%s", bench + 6);
                copy_json_string(v, "label", pv->label, sizeof pv->label);
                copy_json_string(v, "torch", pv->torch, sizeof pv->torch);
                copy_json_string(v, "transformers", pv->transformers, sizeof pv->transformers);
                pv->tokens_per_s = json_get_number(v, "tokens_per_s");
                pv->median_ms = json_get_number(v, "median_ms");
                pv->fwd_ms = json_get_number(v, "fwd_ms");
                pv->ref_ms = json_get_number(v, "ref_ms");
                pv->bwd_ms = json_get_number(v, "bwd_ms");
                pv->opt_ms = json_get_number(v, "opt_ms");
            }
            json_free(v);
        } else if (strncmp(line, "# transformers: not importable", 30) == 0) {
            const size_t used = strlen(out->message);
            snprintf(out->message + used, sizeof out->message - used, "%stransformers is not "
                     "importable there", used ? "; " : "");
        }
        line += len + (line[len] == '\n');
    }
    if (status != 0) {
        char why[512];
        last_message_line(text, why, sizeof why);
        snprintf(out->status, sizeof out->status, "failed");
        snprintf(out->message, sizeof out->message, "tools/bench_torch.py exited with %d: %s",
                 status, why[0] ? why : "no output");
    } else if (out->n_variants == 0) {
        snprintf(out->status, sizeof out->status, "failed");
        snprintf(out->message, sizeof out->message, "tools/bench_torch.py printed no result");
    } else {
        snprintf(out->status, sizeof out->status, "ok");
    }
    sb_free(&output);
}
