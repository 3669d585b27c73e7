// The NCCL communicator (device fp32 buffers): reductions as a chunk exchange (ncclSend/ncclRecv)
// and a sum in rank order on the chunk's owner; every collective waits with a timeout.
#include "comm_nccl.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cuda_try.h"

// ncclAllReduce/ncclReduceScatter sum in an order NCCL chooses (ring or tree, channels, protocol
// all depend on the topology and the message size): not the project's rank order. So, as in the
// MPI backend, each rank receives every rank's contribution to its chunk (grouped
// ncclSend/ncclRecv) and adds them in rank order with cublasSaxpy (alpha 1: x + y rounded once,
// element by element); an all-reduce then gathers the chunks. Slabs of at most SLAB values bound
// the staging buffer.
enum { SLAB = 1 << 24 };

typedef struct {
    Comm base;
    ncclComm_t nccl;
    cudaStream_t stream;
    cublasHandle_t blas;
    float *stage;    // device (size * ceil(SLAB / size)), at least SLAB
    Comm *boot;      // the MPI communicator the id came over, or NULL
    double timeout_s;
    int device;
    size_t *off, *len; // (size)
    char id_path[PATH_MAX]; // the id file rank 0 removes once every rank has joined ("" none)
} NcclComm;

static NcclComm *nc(Comm *c) {
    return (NcclComm *)c;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int nccl_failed(Err *e, const char *file, int line, const char *call, ncclResult_t rc,
                       ncclComm_t comm) {
    const char *last = comm ? ncclGetLastError(comm) : "";
    return err_set(e, "%s:%d: %s failed: %s%s%s", file, line, call, ncclGetErrorString(rc),
                   last && *last ? ": " : "", last ? last : "");
}

// The communicator is non-blocking (so that a wait can give up): a call may return ncclInProgress,
// and then completes in the background.
#define NCCL_TRY(e, n, call)                                                                  \
    do {                                                                                      \
        const ncclResult_t nccl_try_rc = (call);                                              \
        if (nccl_try_rc != ncclSuccess && nccl_try_rc != ncclInProgress)                      \
            return nccl_failed(e, __FILE__, __LINE__, #call, nccl_try_rc, (n)->nccl);         \
    } while (0)

static int timed_out(NcclComm *n, const char *what, Err *e) {
    ncclCommAbort(n->nccl);
    n->nccl = NULL;
    return err_set(e, "rank %d: %s did not complete within %.0f s: another rank has probably "
                      "failed or stopped issuing collectives (the communicator is aborted; "
                      "comm.timeout_s sets the limit)",
                   n->base.rank, what, n->timeout_s);
}

// Waits until NCCL's background work for the last calls is done (non-blocking communicator).
static int settle(NcclComm *n, const char *what, Err *e) {
    const double t0 = now_s();
    for (;;) {
        ncclResult_t st = ncclSuccess;
        NCCL_TRY(e, n, ncclCommGetAsyncError(n->nccl, &st));
        if (st == ncclSuccess) return 0;
        if (st != ncclInProgress)
            return nccl_failed(e, __FILE__, __LINE__, what, st, n->nccl);
        if (now_s() - t0 > n->timeout_s) return timed_out(n, what, e);
        usleep(100);
    }
}

// Waits for the stream (the collectives enqueued on it) with the timeout, watching NCCL's errors.
static int wait_stream(NcclComm *n, const char *what, Err *e) {
    if (settle(n, what, e)) return -1;
    const double t0 = now_s();
    for (;;) {
        const cudaError_t q = cudaStreamQuery(n->stream);
        if (q == cudaSuccess) return 0;
        if (q != cudaErrorNotReady) CUDA_TRY(e, q);
        ncclResult_t st = ncclSuccess;
        NCCL_TRY(e, n, ncclCommGetAsyncError(n->nccl, &st));
        if (st != ncclSuccess && st != ncclInProgress)
            return nccl_failed(e, __FILE__, __LINE__, what, st, n->nccl);
        if (now_s() - t0 > n->timeout_s) return timed_out(n, what, e);
        usleep(100);
    }
}

static int check_live(NcclComm *n, Err *e) {
    if (!n->nccl) return err_set(e, "the NCCL communicator was aborted by an earlier timeout");
    return 0;
}

// Every rank p sends its values [off[q], off[q] + len[q]) of src to rank q; afterwards
// stage[p * my_len ..] holds rank p's contribution to this rank's part. Empty messages are not
// posted (both sides know the lengths).
static int exchange_to_owners(NcclComm *n, const float *src, size_t my_len, Err *e) {
    const int me = n->base.rank, size = n->base.size;
    NCCL_TRY(e, n, ncclGroupStart());
    for (int p = 0; p < size; ++p) {
        if (p == me) continue;
        if (my_len)
            NCCL_TRY(e, n, ncclRecv(n->stage + (size_t)p * my_len, my_len, ncclFloat32, p,
                                    n->nccl, n->stream));
        if (n->len[p])
            NCCL_TRY(e, n, ncclSend(src + n->off[p], n->len[p], ncclFloat32, p, n->nccl,
                                    n->stream));
    }
    NCCL_TRY(e, n, ncclGroupEnd());
    if (my_len)
        CUDA_TRY(e, cudaMemcpyAsync(n->stage + (size_t)me * my_len, src + n->off[me],
                                    my_len * sizeof(float), cudaMemcpyDeviceToDevice, n->stream));
    return settle(n, "the chunk exchange", e);
}

// out = stage[0] + stage[1] + ... in rank order, then * (1.0f / size) for COMM_AVG.
static int sum_in_rank_order(NcclComm *n, size_t len, CommOp op, float *out, Err *e) {
    if (!len) return 0;
    CUDA_TRY(e, cudaMemcpyAsync(out, n->stage, len * sizeof(float), cudaMemcpyDeviceToDevice,
                                n->stream));
    const float one = 1.0f, inv = 1.0f / (float)n->base.size;
    for (int p = 1; p < n->base.size; ++p)
        CUBLAS_TRY(e, cublasSaxpy(n->blas, (int)len, &one, n->stage + (size_t)p * len, 1, out, 1));
    if (op == COMM_AVG) CUBLAS_TRY(e, cublasSscal(n->blas, (int)len, &inv, out, 1));
    return 0;
}

static int nccl_all_reduce(Comm *c, const float *send, float *recv, size_t count, CommOp op,
                           Err *e) {
    NcclComm *n = nc(c);
    const int me = c->rank, size = c->size;
    if (check_live(n, e)) return -1;
    for (size_t at = 0; at < count; at += SLAB) {
        const size_t slab = count - at < SLAB ? count - at : SLAB;
        for (int p = 0; p < size; ++p) comm_chunk(slab, size, p, &n->off[p], &n->len[p]);
        if (exchange_to_owners(n, send + at, n->len[me], e)) return -1;
        // send may be recv: the stream runs the exchange before the sum overwrites this part
        if (sum_in_rank_order(n, n->len[me], op, recv + at + n->off[me], e)) return -1;
        NCCL_TRY(e, n, ncclGroupStart());
        for (int p = 0; p < size; ++p) {
            if (p == me) continue;
            if (n->len[p])
                NCCL_TRY(e, n, ncclRecv(recv + at + n->off[p], n->len[p], ncclFloat32, p, n->nccl,
                                        n->stream));
            if (n->len[me])
                NCCL_TRY(e, n, ncclSend(recv + at + n->off[me], n->len[me], ncclFloat32, p,
                                        n->nccl, n->stream));
        }
        NCCL_TRY(e, n, ncclGroupEnd());
        if (wait_stream(n, "all-reduce", e)) return -1;
    }
    return 0;
}

static int nccl_reduce_scatter(Comm *c, const float *send, float *recv, size_t rc, CommOp op,
                               Err *e) {
    NcclComm *n = nc(c);
    const int size = c->size;
    if (check_live(n, e)) return -1;
    const size_t piece_max = SLAB / (size_t)size > 0 ? SLAB / (size_t)size : 1;
    for (size_t at = 0; at < rc; at += piece_max) {
        const size_t piece = rc - at < piece_max ? rc - at : piece_max;
        for (int p = 0; p < size; ++p) n->off[p] = (size_t)p * rc + at, n->len[p] = piece;
        if (exchange_to_owners(n, send, piece, e)) return -1;
        if (sum_in_rank_order(n, piece, op, recv + at, e)) return -1;
        if (wait_stream(n, "reduce-scatter", e)) return -1;
    }
    return 0;
}

static int nccl_all_gather(Comm *c, const float *send, float *recv, size_t sc, Err *e) {
    NcclComm *n = nc(c);
    if (check_live(n, e)) return -1;
    if (!sc) return 0;
    NCCL_TRY(e, n, ncclAllGather(send, recv, sc, ncclFloat32, n->nccl, n->stream));
    return wait_stream(n, "all-gather", e);
}

static int nccl_broadcast(Comm *c, float *buf, size_t count, int root, Err *e) {
    NcclComm *n = nc(c);
    if (check_live(n, e)) return -1;
    if (!count) return 0;
    NCCL_TRY(e, n, ncclBroadcast(buf, buf, count, ncclFloat32, root, n->nccl, n->stream));
    return wait_stream(n, "broadcast", e);
}

// Host bytes: over the bootstrap MPI communicator when there is one, else through the device.
static int nccl_broadcast_bytes(Comm *c, void *buf, size_t bytes, int root, Err *e) {
    NcclComm *n = nc(c);
    if (n->boot) return comm_broadcast_bytes(n->boot, buf, bytes, root, e);
    if (check_live(n, e)) return -1;
    const size_t piece_max = (size_t)SLAB * sizeof(float);
    for (size_t at = 0; at < bytes; at += piece_max) {
        const size_t piece = bytes - at < piece_max ? bytes - at : piece_max;
        char *h = (char *)buf + at;
        if (c->rank == root)
            CUDA_TRY(e, cudaMemcpyAsync(n->stage, h, piece, cudaMemcpyHostToDevice, n->stream));
        NCCL_TRY(e, n, ncclBroadcast(n->stage, n->stage, piece, ncclUint8, root, n->nccl,
                                     n->stream));
        CUDA_TRY(e, cudaMemcpyAsync(h, n->stage, piece, cudaMemcpyDeviceToHost, n->stream));
        if (wait_stream(n, "broadcast", e)) return -1;
    }
    return 0;
}

static int nccl_barrier(Comm *c, Err *e) {
    NcclComm *n = nc(c);
    if (check_live(n, e)) return -1;
    NCCL_TRY(e, n, ncclAllReduce(n->stage, n->stage, 1, ncclFloat32, ncclSum, n->nccl,
                                 n->stream));
    return wait_stream(n, "barrier", e);
}

static void nccl_abort(Comm *c, int code) {
    NcclComm *n = nc(c);
    if (n->nccl) ncclCommAbort(n->nccl);
    n->nccl = NULL;
    if (n->boot) n->boot->ops->abort(n->boot, code); // MPI_Abort ends every rank now
    // Without MPI the other ranks notice at their next collective's timeout.
    _exit(code ? code : 1);
}

static void nccl_destroy(Comm *c) {
    NcclComm *n = nc(c);
    if (n->nccl) {
        Err e;
        if (ncclCommFinalize(n->nccl) == ncclInProgress) settle(n, "ncclCommFinalize", &e);
        if (n->nccl) ncclCommDestroy(n->nccl);
    }
    if (n->blas) cublasDestroy(n->blas);
    if (n->stage) cudaFree(n->stage);
    if (n->stream) cudaStreamDestroy(n->stream);
    if (n->id_path[0]) unlink(n->id_path);
    comm_close(n->boot);
    free(n->off);
    free(n->len);
    free(n);
}

static const CommOps k_nccl_ops = {
    nccl_all_reduce,      nccl_reduce_scatter, nccl_all_gather, nccl_broadcast,
    nccl_broadcast_bytes, nccl_barrier,        nccl_abort,      nccl_destroy,
};

// ---- the unique id through a file ----

int comm_nccl_write_id(const char *path, const void *id, size_t bytes, Err *e) {
    struct stat st;
    if (stat(path, &st) == 0)
        return err_set(e, "%s exists: a stale NCCL id from an earlier run, or another job with "
                          "the same name; remove it, or give this run its own LETHE_JOB_ID",
                       path);
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return err_set(e, "cannot create %s: %s", tmp, strerror(errno));
    const ssize_t w = write(fd, id, bytes);
    const int sync_rc = fsync(fd);
    close(fd);
    if (w != (ssize_t)bytes || sync_rc != 0 || rename(tmp, path) != 0) {
        const int err = errno;
        unlink(tmp);
        return err_set(e, "cannot write the NCCL id to %s: %s", path, strerror(err));
    }
    return 0;
}

int comm_nccl_read_id(const char *path, void *id, size_t bytes, double timeout_s, Err *e) {
    const double t0 = now_s();
    for (;;) {
        const int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            const ssize_t r = read(fd, id, bytes);
            close(fd);
            if (r == (ssize_t)bytes) return 0;
            return err_set(e, "%s holds %zd bytes, not an NCCL id of %zu", path, r, bytes);
        }
        if (errno != ENOENT) return err_set(e, "cannot read %s: %s", path, strerror(errno));
        if (now_s() - t0 > timeout_s)
            return err_set(e, "waited %.1f s for rank 0 to write the NCCL id to %s: is rank 0 "
                              "running, and is the directory shared by every node?",
                           timeout_s, path);
        usleep(20000);
    }
}

// ---- opening ----

static int open_device_side(NcclComm *n, Err *e) {
    int ndev = 0;
    CUDA_TRY(e, cudaGetDeviceCount(&ndev));
    if (ndev < 1) return err_set(e, "no CUDA device for NCCL");
    // One process per GPU: the local rank picks the device (the engine then uses the current one).
    n->device = n->base.local_rank % ndev;
    CUDA_TRY(e, cudaSetDevice(n->device));
    CUDA_TRY(e, cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
    // size chunks of ceil(SLAB / size) values: up to size - 1 more than SLAB
    const size_t size = (size_t)n->base.size;
    const size_t stage_bytes = size * ((SLAB + size - 1) / size) * sizeof(float);
    CUDA_TRY(e, cudaMalloc((void **)&n->stage, stage_bytes));
    CUBLAS_TRY(e, cublasCreate(&n->blas));
    CUBLAS_TRY(e, cublasSetStream(n->blas, n->stream));
    CUBLAS_TRY(e, cublasSetPointerMode(n->blas, CUBLAS_POINTER_MODE_HOST));
    // fp32 FMA only: no TF32 or reduced-precision paths in the reductions.
    CUBLAS_TRY(e, cublasSetMathMode(n->blas, CUBLAS_PEDANTIC_MATH));
    return 0;
}

static int share_id(NcclComm *n, const char *id_dir, ncclUniqueId *id, Err *e) {
    if (n->base.rank == 0) NCCL_TRY(e, n, ncclGetUniqueId(id));
    if (n->base.size == 1) return 0;
    if (n->boot) return comm_broadcast_bytes(n->boot, id, sizeof *id, 0, e);
    char job[128];
    if (comm_job_name(comm_getenv_process, NULL, job, sizeof job, e)) return -1;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/lethe-nccl-%s.id", id_dir, job) >= (int)sizeof path)
        return err_set(e, "the NCCL id path under %s is too long", id_dir);
    if (n->base.rank == 0) {
        if (comm_nccl_write_id(path, id, sizeof *id, e)) return -1;
        snprintf(n->id_path, sizeof n->id_path, "%s", path);
        return 0;
    }
    return comm_nccl_read_id(path, id, sizeof *id, n->timeout_s, e);
}

static int nccl_open(Comm **out, const RankInfo *r, Comm *boot, const char *id_dir,
                     double timeout_s, Err *e) {
    *out = NULL;
    NcclComm *n = calloc(1, sizeof *n);
    if (!n) {
        comm_close(boot);
        return err_set(e, "out of memory");
    }
    n->base = (Comm){.ops = &k_nccl_ops, .kind = COMM_NCCL, .rank = r->rank, .size = r->size,
                     .local_rank = r->local_rank, .source = r->source, .device_buffers = 1};
    n->boot = boot;
    n->timeout_s = timeout_s;
    n->off = calloc((size_t)r->size, sizeof *n->off);
    n->len = calloc((size_t)r->size, sizeof *n->len);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    int rc = !n->off || !n->len ? err_set(e, "out of memory") : 0;
    if (!rc) rc = open_device_side(n, e);
    if (!rc) rc = share_id(n, id_dir, &id, e);
    if (!rc) {
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0; // so that waits can time out instead of hanging on a dead rank
        const ncclResult_t ir = ncclCommInitRankConfig(&n->nccl, r->size, id, r->rank, &config);
        if (ir != ncclSuccess && ir != ncclInProgress) {
            n->nccl = NULL;
            rc = nccl_failed(e, __FILE__, __LINE__, "ncclCommInitRankConfig", ir, NULL);
        }
        else
            rc = settle(n, "ncclCommInitRankConfig (every rank joining)", e);
    }
    if (rc) {
        err_prefix(e, "NCCL communicator, rank %d of %d", r->rank, r->size);
        nccl_destroy(&n->base);
        return -1;
    }
    // Every rank has joined: the id file has served its purpose.
    if (n->id_path[0]) unlink(n->id_path), n->id_path[0] = '\0';
    int version = 0;
    ncclGetVersion(&version);
    snprintf(n->base.description, sizeof n->base.description,
             "NCCL %d.%d.%d on CUDA device %d, rank %d of %d, unique id %s", version / 10000,
             version / 100 % 100, version % 100, n->device, r->rank, r->size,
             r->size == 1 ? "local" : boot ? "over MPI" : "through a file");
    *out = &n->base;
    return 0;
}

static const CommNcclBackend k_backend = {nccl_open};

const CommNcclBackend *comm_nccl_backend(void) {
    return &k_backend;
}
