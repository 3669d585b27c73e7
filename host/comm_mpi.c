// The MPI communicator (host fp32 buffers): reductions as a point-to-point exchange of chunks and
// a sum in rank order on the chunk's owner, so the bits never depend on Open MPI's algorithms.
#include "comm.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// MPI_Allreduce(MPI_SUM) on floats is not used: Open MPI picks its algorithm (and so the order of
// the additions, and whether every rank gets the same bits) from the message size, the world
// size and the tuning files. Here the owner of each chunk receives that chunk from every rank
// and adds the contributions in rank order (comm_sum_in_rank_order); the result travels as
// bytes. Reductions run in slabs of at most SLAB values so the staging buffer stays small;
// slabs do not change the order of the additions of any element.
enum { SLAB = 1 << 22, TAG = 7 };

typedef struct {
    Comm base;
    MPI_Comm world; // a duplicate of MPI_COMM_WORLD, errors returned
    float *stage;   // (size * ceil(SLAB / size)) every rank's contribution to this rank's chunk
    MPI_Request *req; // (2 * size)
    size_t *off, *len; // (size) each rank's part of the current slab
    int owns_init; // this communicator called MPI_Init, and finalizes
} MpiComm;

static MpiComm *mc(Comm *c) {
    return (MpiComm *)c;
}

static int mpi_failed(Err *e, const char *call, int rc) {
    char s[MPI_MAX_ERROR_STRING] = "";
    int n = 0;
    MPI_Error_string(rc, s, &n);
    return err_set(e, "%s failed: %s", call, s);
}

#define MPI_TRY(e, call)                                                                   \
    do {                                                                                   \
        const int mpi_try_rc = (call);                                                     \
        if (mpi_try_rc != MPI_SUCCESS) return mpi_failed(e, #call, mpi_try_rc);            \
    } while (0)

int comm_have_mpi(void) {
    return 1;
}

// Posts the receive or send of len bytes with peer. Messages are at most SLAB values (every
// collective cuts its buffers in slabs), so the count fits MPI's int.
static int post(MpiComm *m, int recv, void *buf, size_t len, int peer, int *nreq, Err *e) {
    if (recv)
        MPI_TRY(e, MPI_Irecv(buf, (int)len, MPI_BYTE, peer, TAG, m->world, &m->req[(*nreq)++]));
    else
        MPI_TRY(e, MPI_Isend(buf, (int)len, MPI_BYTE, peer, TAG, m->world, &m->req[(*nreq)++]));
    return 0;
}

// Sends src[off[q] .. off[q] + len[q]) to each rank q (every rank does the same with its src):
// afterwards stage[p * my_len ..] holds rank p's contribution to this rank's part.
static int exchange_to_owners(MpiComm *m, const float *src, const size_t *off, const size_t *len,
                              size_t my_len, Err *e) {
    const int me = m->base.rank, n = m->base.size;
    int nreq = 0;
    for (int p = 0; p < n; ++p) {
        if (p == me) continue;
        if (post(m, 1, m->stage + (size_t)p * my_len, my_len * sizeof(float), p, &nreq, e))
            return -1;
    }
    for (int p = 0; p < n; ++p) {
        if (p == me) continue;
        if (post(m, 0, (void *)(src + off[p]), len[p] * sizeof(float), p, &nreq, e)) return -1;
    }
    if (my_len) memcpy(m->stage + (size_t)me * my_len, src + off[me], my_len * sizeof(float));
    MPI_TRY(e, MPI_Waitall(nreq, m->req, MPI_STATUSES_IGNORE));
    return 0;
}

// Every rank's part (dst + off[p], len[p]) to every rank; this rank's part is already in place.
static int gather_parts(MpiComm *m, float *dst, const size_t *off, const size_t *len, Err *e) {
    const int me = m->base.rank, n = m->base.size;
    int nreq = 0;
    for (int p = 0; p < n; ++p)
        if (p != me && post(m, 1, dst + off[p], len[p] * sizeof(float), p, &nreq, e)) return -1;
    for (int p = 0; p < n; ++p)
        if (p != me && post(m, 0, dst + off[me], len[me] * sizeof(float), p, &nreq, e)) return -1;
    MPI_TRY(e, MPI_Waitall(nreq, m->req, MPI_STATUSES_IGNORE));
    return 0;
}

static int mpi_all_reduce(Comm *c, const float *send, float *recv, size_t count, CommOp op,
                          Err *e) {
    MpiComm *m = mc(c);
    const int n = c->size, me = c->rank;
    size_t *off = m->off, *len = m->len;
    for (size_t at = 0; at < count; at += SLAB) {
        const size_t slab = count - at < SLAB ? count - at : SLAB;
        for (int p = 0; p < n; ++p) comm_chunk(slab, n, p, &off[p], &len[p]);
        if (exchange_to_owners(m, send + at, off, len, len[me], e)) return -1;
        // send may be recv: the exchange has copied all of this slab's values that are needed
        comm_sum_in_rank_order(m->stage, len[me], n, len[me], op, recv + at + off[me]);
        if (gather_parts(m, recv + at, off, len, e)) return -1;
    }
    return 0;
}

static int mpi_reduce_scatter(Comm *c, const float *send, float *recv, size_t rc, CommOp op,
                              Err *e) {
    MpiComm *m = mc(c);
    const int n = c->size;
    const size_t piece_max = SLAB / (size_t)n > 0 ? SLAB / (size_t)n : 1;
    size_t *off = m->off, *len = m->len;
    for (size_t at = 0; at < rc; at += piece_max) {
        const size_t piece = rc - at < piece_max ? rc - at : piece_max;
        for (int p = 0; p < n; ++p) off[p] = (size_t)p * rc + at, len[p] = piece;
        if (exchange_to_owners(m, send, off, len, piece, e)) return -1;
        comm_sum_in_rank_order(m->stage, piece, n, piece, op, recv + at);
    }
    return 0;
}

static int mpi_all_gather(Comm *c, const float *send, float *recv, size_t sc, Err *e) {
    MpiComm *m = mc(c);
    const int n = c->size;
    if (sc) memcpy(recv + (size_t)c->rank * sc, send, sc * sizeof(float));
    for (size_t at = 0; at < sc; at += SLAB) {
        const size_t piece = sc - at < SLAB ? sc - at : SLAB;
        for (int p = 0; p < n; ++p) m->off[p] = (size_t)p * sc + at, m->len[p] = piece;
        if (gather_parts(m, recv, m->off, m->len, e)) return -1;
    }
    return 0;
}

static int mpi_broadcast_bytes(Comm *c, void *buf, size_t bytes, int root, Err *e) {
    const size_t piece_max = (size_t)SLAB * sizeof(float);
    for (size_t at = 0; at < bytes; at += piece_max) {
        const size_t n = bytes - at < piece_max ? bytes - at : piece_max;
        MPI_TRY(e, MPI_Bcast((char *)buf + at, (int)n, MPI_BYTE, root, mc(c)->world));
    }
    return 0;
}

static int mpi_broadcast(Comm *c, float *buf, size_t count, int root, Err *e) {
    return mpi_broadcast_bytes(c, buf, count * sizeof(float), root, e);
}

static int mpi_barrier(Comm *c, Err *e) {
    MPI_TRY(e, MPI_Barrier(mc(c)->world));
    return 0;
}

static void mpi_abort(Comm *c, int code) {
    MPI_Abort(mc(c)->world, code ? code : 1);
    exit(code ? code : 1);
}

static int g_refs; // open MPI communicators (the NCCL bootstrap and a host one may coexist)

static void mpi_destroy(Comm *c) {
    MpiComm *m = mc(c);
    if (m->world != MPI_COMM_NULL) MPI_Comm_free(&m->world);
    free(m->stage);
    free(m->req);
    free(m->off);
    free(m->len);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (--g_refs == 0 && m->owns_init && !finalized) MPI_Finalize();
    free(m);
}

static const CommOps k_mpi_ops = {
    mpi_all_reduce,      mpi_reduce_scatter, mpi_all_gather, mpi_broadcast,
    mpi_broadcast_bytes, mpi_barrier,        mpi_abort,      mpi_destroy,
};

static int g_owns_init;

int comm_mpi_open(Comm **out, const RankInfo *r, Err *e) {
    *out = NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        // Without MPI_THREAD_MULTIPLE: one thread (the step scheduler's) issues every collective.
        int provided = 0;
        const int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_failed(e, "MPI_Init_thread", rc);
        g_owns_init = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = -1, size = 0;
    MPI_TRY(e, MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_TRY(e, MPI_Comm_size(MPI_COMM_WORLD, &size));
    if (rank != r->rank || size != r->size)
        return err_set(e, "MPI_COMM_WORLD says rank %d of %d but %s says rank %d of %d: this "
                          "process was not started by the MPI launcher that set %s (launch with "
                          "mpirun, or srun --mpi=pmix)",
                       rank, size, comm_rank_source_name(r->source), r->rank, r->size,
                       comm_rank_source_name(r->source));
    MpiComm *m = calloc(1, sizeof *m);
    if (!m) return err_set(e, "out of memory");
    m->world = MPI_COMM_NULL;
    m->owns_init = g_owns_init;
    ++g_refs;
    m->base = (Comm){.ops = &k_mpi_ops, .kind = COMM_MPI, .rank = rank, .size = size,
                     .local_rank = r->local_rank, .source = r->source};
    // size chunks of ceil(SLAB / size) values: up to size - 1 more than SLAB
    m->stage = malloc((size_t)size * (((size_t)SLAB + (size_t)size - 1) / (size_t)size) *
                      sizeof(float));
    m->req = malloc(2 * (size_t)size * sizeof *m->req);
    m->off = malloc((size_t)size * sizeof *m->off);
    m->len = malloc((size_t)size * sizeof *m->len);
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->world);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(m->world, MPI_ERRORS_RETURN);
    if (!m->stage || !m->req || !m->off || !m->len || rc != MPI_SUCCESS) {
        if (rc != MPI_SUCCESS) mpi_failed(e, "MPI_Comm_dup", rc);
        else err_set(e, "out of memory for the MPI staging buffer");
        mpi_destroy(&m->base);
        return -1;
    }
    char version[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int vn = 0;
    MPI_Get_library_version(version, &vn);
    version[strcspn(version, ",\n")] = '\0'; // "Open MPI v4.1.4, package: ..." -> first part
    snprintf(m->base.description, sizeof m->base.description, "MPI (%s), rank %d of %d", version,
             rank, size);
    *out = &m->base;
    return 0;
}
