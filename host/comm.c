// Rank resolution from the environment, the checked collective entry points, backend selection
// and the single-process communicator (every collective a copy).
#include "comm.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- rank resolution ----

const char *comm_getenv_process(void *ctx, const char *name) {
    (void)ctx;
    return getenv(name);
}

const char *comm_getenv_array(void *ctx, const char *name) {
    const size_t n = strlen(name);
    for (char **p = (char **)ctx; p && *p; ++p)
        if (strncmp(*p, name, n) == 0 && (*p)[n] == '=') return *p + n + 1;
    return NULL;
}

const char *comm_rank_source_name(RankSource s) {
    switch (s) {
    case RANK_SOURCE_OMPI: return "OMPI_COMM_WORLD_*";
    case RANK_SOURCE_TORCHRUN: return "RANK/WORLD_SIZE/LOCAL_RANK";
    case RANK_SOURCE_SLURM: return "SLURM_*";
    case RANK_SOURCE_SINGLE: return "single process";
    }
    return "?";
}

typedef struct {
    RankSource source;
    const char *rank, *size, *local; // variable names
} SourceVars;

// The documented order (comm.h, docs/distributed.md): mpirun's per-process variables first, since
// an mpirun inside a Slurm allocation inherits the batch step's SLURM_*; torchrun's per-worker
// variables before SLURM_*, since `srun torchrun` gives SLURM_* per node, not per worker.
static const SourceVars k_sources[] = {
    {RANK_SOURCE_OMPI, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK"},
    {RANK_SOURCE_TORCHRUN, "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {RANK_SOURCE_SLURM, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};

// A whole number in [0, INT_MAX], with nothing around it.
static int parse_count(const char *name, const char *v, int *out, Err *e) {
    errno = 0;
    char *end = NULL;
    const long x = strtol(v, &end, 10);
    if (*v == '\0' || end == v || *end != '\0' || errno || x < 0 || x > INT_MAX)
        return err_set(e, "%s=\"%s\" is not a whole number >= 0", name, v);
    *out = (int)x;
    return 0;
}

int comm_resolve_ranks(CommGetenv get, void *ctx, RankInfo *out, Err *e) {
    RankInfo r = {.rank = 0, .size = 1, .local_rank = 0, .source = RANK_SOURCE_SINGLE};
    int found = 0;
    for (size_t i = 0; i < sizeof k_sources / sizeof k_sources[0]; ++i) {
        const SourceVars *s = &k_sources[i];
        const char *vr = get(ctx, s->rank), *vs = get(ctx, s->size), *vl = get(ctx, s->local);
        if (!vr && !vs && !vl) continue;
        if (found) { // a later source is set too: ignored, but said in the start-up line
            r.also_set |= 1u << s->source;
            continue;
        }
        // A source set in part is an error, not a fall-through to the next one: a half-set
        // launcher environment means a wrong launch, and guessing would join the wrong job.
        const char *missing = !vr ? s->rank : !vs ? s->size : !vl ? s->local : NULL;
        if (missing)
            return err_set(e, "rank from %s: %s is not set (%s=%s, %s=%s, %s=%s)",
                           comm_rank_source_name(s->source), missing, s->rank, vr ? vr : "unset",
                           s->size, vs ? vs : "unset", s->local, vl ? vl : "unset");
        if (parse_count(s->rank, vr, &r.rank, e) || parse_count(s->size, vs, &r.size, e) ||
            parse_count(s->local, vl, &r.local_rank, e))
            return err_prefix(e, "rank from %s", comm_rank_source_name(s->source));
        if (r.size < 1)
            return err_set(e, "rank from %s: %s=%d, a world needs at least one rank",
                           comm_rank_source_name(s->source), s->size, r.size);
        if (r.rank >= r.size)
            return err_set(e, "rank from %s: %s=%d is not below %s=%d (ranks are 0 .. %d)",
                           comm_rank_source_name(s->source), s->rank, r.rank, s->size, r.size,
                           r.size - 1);
        if (r.local_rank >= r.size)
            return err_set(e, "rank from %s: %s=%d is not below %s=%d",
                           comm_rank_source_name(s->source), s->local, r.local_rank, s->size,
                           r.size);
        r.source = s->source;
        found = 1;
    }
    *out = r;
    return 0;
}

void comm_describe_ranks(const RankInfo *r, char *buf, size_t size) {
    int n = snprintf(buf, size, "rank %d of %d (local rank %d) from %s", r->rank, r->size,
                     r->local_rank, comm_rank_source_name(r->source));
    for (int s = RANK_SOURCE_OMPI; s <= RANK_SOURCE_SLURM; ++s)
        if (r->also_set & (1u << s) && n >= 0 && (size_t)n < size)
            n += snprintf(buf + n, size - (size_t)n, "; %s also set, ignored",
                          comm_rank_source_name((RankSource)s));
}

// Keeps letters, digits and "._-" (a value from the environment becomes part of a file name).
static void safe_name(char *dst, size_t size, const char *prefix, const char *v,
                      const char *suffix) {
    size_t n = 0;
    for (const char *parts[3] = {prefix, v, suffix}, **p = parts; p < parts + 3; ++p)
        for (const char *c = *p; c && *c && n + 1 < size; ++c)
            if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                *c == '.' || *c == '_' || *c == '-')
                dst[n++] = *c;
    dst[n] = '\0';
}

int comm_job_name(CommGetenv get, void *ctx, char *buf, size_t size, Err *e) {
    const char *v;
    if ((v = get(ctx, "LETHE_JOB_ID")) && *v) {
        safe_name(buf, size, "", v, "");
    } else if ((v = get(ctx, "SLURM_JOB_ID")) && *v) {
        const char *step = get(ctx, "SLURM_STEP_ID");
        char tail[64];
        snprintf(tail, sizeof tail, ".%s", step && *step ? step : "0");
        safe_name(buf, size, "slurm-", v, tail);
    } else if ((v = get(ctx, "TORCHELASTIC_RUN_ID")) && *v) {
        safe_name(buf, size, "torchrun-", v, "");
    } else {
        return err_set(e, "no job name for the NCCL id file: set LETHE_JOB_ID to a name unique "
                          "to this run, the same on every rank (SLURM_JOB_ID and "
                          "TORCHELASTIC_RUN_ID are used when set)");
    }
    if (buf[0] == '\0')
        return err_set(e, "the job name \"%s\" has no letters, digits or \"._-\"", v);
    return 0;
}

// ---- the fixed-order reduction ----

void comm_chunk(size_t count, int size, int r, size_t *off, size_t *len) {
    const size_t per = size > 0 ? (count + (size_t)size - 1) / (size_t)size : count;
    size_t lo = per * (size_t)r;
    if (lo > count) lo = count;
    size_t hi = lo + per;
    if (hi > count) hi = count;
    *off = lo;
    *len = hi - lo;
}

void comm_sum_in_rank_order(const float *base, size_t stride, int n, size_t len, CommOp op,
                            float *out) {
    // Element by element over the ranks, never the other way round: the order of the additions
    // is the definition of the result (no reassociation, no vectorised partial sums across ranks).
    const float inv = 1.0f / (float)n;
    for (size_t i = 0; i < len; ++i) {
        float acc = base[i];
        for (int k = 1; k < n; ++k) acc += base[(size_t)k * stride + i];
        out[i] = op == COMM_AVG ? acc * inv : acc;
    }
}

// ---- checked entry points ----

static int ranges_overlap(const void *a, size_t an, const void *b, size_t bn) {
    const uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return an && bn && x < y + bn && y < x + an;
}

static int check_op(CommOp op, Err *e) {
    if (op != COMM_SUM && op != COMM_AVG)
        return err_set(e, "reduction %d is not COMM_SUM or COMM_AVG", (int)op);
    return 0;
}

static int check_buf(const void *p, size_t count, const char *what, Err *e) {
    if (count && !p) return err_set(e, "%s is NULL with %zu values", what, count);
    return 0;
}

// count * size must fit: the sizes of gathered buffers are computed from it.
static int check_total(const Comm *c, size_t count, Err *e) {
    if (count > SIZE_MAX / sizeof(float) / (size_t)c->size)
        return err_set(e, "%zu values per rank x %d ranks overflows", count, c->size);
    return 0;
}

int comm_all_reduce(Comm *c, const float *send, float *recv, size_t count, CommOp op, Err *e) {
    if (check_op(op, e) || check_buf(send, count, "send", e) || check_buf(recv, count, "recv", e) ||
        check_total(c, count, e) || c->ops->all_reduce(c, send, recv, count, op, e))
        return err_prefix(e, "all-reduce of %zu values", count);
    return 0;
}

int comm_reduce_scatter(Comm *c, const float *send, float *recv, size_t recv_count, CommOp op,
                        Err *e) {
    const size_t n = recv_count * (size_t)c->size;
    if (check_op(op, e) || check_total(c, recv_count, e) || check_buf(send, n, "send", e) ||
        check_buf(recv, recv_count, "recv", e))
        return err_prefix(e, "reduce-scatter of %zu values per rank", recv_count);
    if (ranges_overlap(send, n * sizeof(float), recv, recv_count * sizeof(float)))
        return err_set(e, "reduce-scatter of %zu values per rank: send and recv overlap",
                       recv_count);
    if (c->ops->reduce_scatter(c, send, recv, recv_count, op, e))
        return err_prefix(e, "reduce-scatter of %zu values per rank", recv_count);
    return 0;
}

int comm_all_gather(Comm *c, const float *send, float *recv, size_t send_count, Err *e) {
    const size_t n = send_count * (size_t)c->size;
    if (check_total(c, send_count, e) || check_buf(send, send_count, "send", e) ||
        check_buf(recv, n, "recv", e))
        return err_prefix(e, "all-gather of %zu values per rank", send_count);
    if (ranges_overlap(send, send_count * sizeof(float), recv, n * sizeof(float)))
        return err_set(e, "all-gather of %zu values per rank: send and recv overlap", send_count);
    if (c->ops->all_gather(c, send, recv, send_count, e))
        return err_prefix(e, "all-gather of %zu values per rank", send_count);
    return 0;
}

int comm_broadcast(Comm *c, float *buf, size_t count, int root, Err *e) {
    if (root < 0 || root >= c->size)
        return err_set(e, "broadcast: root %d is not a rank (0 .. %d)", root, c->size - 1);
    if (check_buf(buf, count, "buf", e) || c->ops->broadcast(c, buf, count, root, e))
        return err_prefix(e, "broadcast of %zu values from rank %d", count, root);
    return 0;
}

int comm_broadcast_bytes(Comm *c, void *buf, size_t bytes, int root, Err *e) {
    if (root < 0 || root >= c->size)
        return err_set(e, "broadcast: root %d is not a rank (0 .. %d)", root, c->size - 1);
    if (check_buf(buf, bytes, "buf", e) || c->ops->broadcast_bytes(c, buf, bytes, root, e))
        return err_prefix(e, "broadcast of %zu bytes from rank %d", bytes, root);
    return 0;
}

int comm_barrier(Comm *c, Err *e) {
    if (c->ops->barrier(c, e)) return err_prefix(e, "barrier");
    return 0;
}

void comm_abort(Comm *c, int code, const char *msg) {
    fprintf(stderr, "rank %d: %s\n", c ? c->rank : 0, msg);
    fflush(stderr);
    if (c) c->ops->abort(c, code);
    _exit(code ? code : 1); // abort() of a backend does not return; this is the single process
}

// ---- single process ----

static int single_all_reduce(Comm *c, const float *send, float *recv, size_t count, CommOp op,
                             Err *e) {
    (void)c, (void)op, (void)e; // the sum of one value, and 1.0f / 1 == 1: a copy, bit for bit
    if (send != recv && count) memmove(recv, send, count * sizeof(float));
    return 0;
}
static int single_reduce_scatter(Comm *c, const float *send, float *recv, size_t n, CommOp op,
                                 Err *e) {
    return single_all_reduce(c, send, recv, n, op, e);
}
static int single_all_gather(Comm *c, const float *send, float *recv, size_t n, Err *e) {
    return single_all_reduce(c, send, recv, n, COMM_SUM, e);
}
static int single_broadcast(Comm *c, float *buf, size_t count, int root, Err *e) {
    (void)c, (void)buf, (void)count, (void)root, (void)e;
    return 0;
}
static int single_broadcast_bytes(Comm *c, void *buf, size_t bytes, int root, Err *e) {
    (void)c, (void)buf, (void)bytes, (void)root, (void)e;
    return 0;
}
static int single_barrier(Comm *c, Err *e) {
    (void)c, (void)e;
    return 0;
}
static void single_abort(Comm *c, int code) {
    (void)c;
    _exit(code ? code : 1);
}
static void single_destroy(Comm *c) {
    free(c);
}

static const CommOps k_single_ops = {
    single_all_reduce, single_reduce_scatter, single_all_gather, single_broadcast,
    single_broadcast_bytes, single_barrier, single_abort, single_destroy,
};

static int single_open(Comm **out, const RankInfo *r, Err *e) {
    if (r->size != 1)
        return err_set(e, "the single-process communicator cannot be rank %d of %d", r->rank,
                       r->size);
    Comm *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, "out of memory");
    *c = (Comm){.ops = &k_single_ops, .kind = COMM_SINGLE, .rank = 0, .size = 1,
                .local_rank = r->local_rank, .source = r->source};
    snprintf(c->description, sizeof c->description, "single process");
    *out = c;
    return 0;
}

// ---- backend selection ----

static CommNcclBackend g_nccl;

void comm_register_nccl(const CommNcclBackend *backend) {
    g_nccl = *backend;
}

#ifndef LETHE_WITH_MPI
int comm_have_mpi(void) {
    return 0;
}
int comm_mpi_open(Comm **out, const RankInfo *ranks, Err *e) {
    (void)out;
    return err_set(e, "this build has no MPI (rank %d of %d from %s): install libopenmpi-dev "
                      "(tools/setup.sh) and rebuild",
                   ranks->rank, ranks->size, comm_rank_source_name(ranks->source));
}
#endif

int comm_open_ranks(Comm **out, const CommRequest *req, const RankInfo *r, Err *e) {
    *out = NULL;
    const char *b = req && req->backend ? req->backend : "auto";
    const int device = req ? req->device : 0;
    if (strcmp(b, "auto") == 0) b = r->size == 1 ? "single" : device ? "nccl" : "mpi";
    if (strcmp(b, "single") == 0) {
        if (r->size != 1)
            return err_set(e, "comm backend \"single\" but the environment says rank %d of %d "
                              "(from %s): use \"auto\", \"mpi\" or \"nccl\"",
                           r->rank, r->size, comm_rank_source_name(r->source));
        if (single_open(out, r, e)) return -1;
        (*out)->device_buffers = device;
        return 0;
    }
    if (strcmp(b, "mpi") == 0) {
        if (device)
            return err_set(e, "comm backend \"mpi\" takes host buffers; the cuda engine needs "
                              "\"nccl\"");
        return comm_mpi_open(out, r, e);
    }
    if (strcmp(b, "nccl") == 0) {
        if (!g_nccl.open)
            return err_set(e, "comm backend \"nccl\": this build has no CUDA backend with NCCL");
        // mpirun started us and MPI is built: the unique id travels over MPI, no file needed.
        Comm *boot = NULL;
        if (r->size > 1 && r->source == RANK_SOURCE_OMPI && comm_have_mpi() &&
            comm_mpi_open(&boot, r, e))
            return err_prefix(e, "MPI for the NCCL unique id");
        const char *dir = req && req->id_dir ? req->id_dir : getenv("LETHE_COMM_DIR");
        const double timeout = req && req->timeout_s > 0 ? req->timeout_s : 600.0;
        if (g_nccl.open(out, r, boot, dir ? dir : ".", timeout, e)) {
            // the NCCL open owns boot from the call on and closes it on failure
            return -1;
        }
        return 0;
    }
    return err_set(e, "comm backend \"%s\" is not auto, single, mpi or nccl", b);
}

int comm_open(Comm **out, const CommRequest *req, Err *e) {
    RankInfo r;
    if (comm_resolve_ranks(comm_getenv_process, NULL, &r, e)) return -1;
    if (comm_open_ranks(out, req, &r, e)) return -1;
    const char *verbose = getenv("LETHE_COMM_VERBOSE");
    if ((*out)->rank == 0 || (verbose && strcmp(verbose, "1") == 0)) {
        char line[512];
        comm_describe_ranks(&r, line, sizeof line);
        fprintf(stderr, "comm: %s; %s\n", line, (*out)->description);
    }
    return 0;
}

void comm_close(Comm *c) {
    if (c) c->ops->destroy(c);
}
