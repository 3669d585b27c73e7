// The communicator of data-parallel runs: which rank this process is, and the collectives over
// fp32 buffers (single process; MPI, host buffers; NCCL, device buffers) with a fixed sum order.
#ifndef LETHE_COMM_H
#define LETHE_COMM_H

#include <stddef.h>

#include "errors.h"

// ---- rank resolution ----

// Where the rank came from. The sources are tried in this order and the first that is set wins
// (docs/distributed.md says why):
//   1. OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK  (mpirun of OpenMPI, set per process)
//   2. RANK / WORLD_SIZE / LOCAL_RANK              (torchrun-style launchers, also under srun)
//   3. SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (srun)
//   4. none of them: a single process (rank 0 of 1)
typedef enum {
    RANK_SOURCE_SINGLE = 0,
    RANK_SOURCE_OMPI = 1,
    RANK_SOURCE_TORCHRUN = 2,
    RANK_SOURCE_SLURM = 3,
} RankSource;

typedef struct {
    int rank, size, local_rank;
    RankSource source;
    unsigned also_set; // bit (1 << source) for each later source that was set too and ignored
} RankInfo;

// An environment to read from: returns the value of name or NULL when it is not set.
typedef const char *(*CommGetenv)(void *ctx, const char *name);

// The process environment (ctx unused) and a NULL-terminated "NAME=value" array (ctx = the
// array, as `char **`), for comm_resolve_ranks.
const char *comm_getenv_process(void *ctx, const char *name);
const char *comm_getenv_array(void *ctx, const char *name);

// Resolves (rank, size, local_rank, source) from an environment. A pure function of what get
// returns. Errors name the variables: a source set only in part, a value that is not a whole
// number, size < 1, rank or local rank outside [0, size).
int comm_resolve_ranks(CommGetenv get, void *ctx, RankInfo *out, Err *e);

// "OMPI_COMM_WORLD_*", "RANK/WORLD_SIZE/LOCAL_RANK", "SLURM_*", "single process".
const char *comm_rank_source_name(RankSource s);

// One line for the start-up log: "rank 1 of 4 (local rank 1) from OMPI_COMM_WORLD_*" plus the
// sources that were also set and ignored.
void comm_describe_ranks(const RankInfo *r, char *buf, size_t size);

// The name of this job for the NCCL id file, the same on every rank: $LETHE_JOB_ID, else
// "slurm-$SLURM_JOB_ID.$SLURM_STEP_ID" (step 0 when unset), else
// "torchrun-$TORCHELASTIC_RUN_ID"; none set is an error saying to set LETHE_JOB_ID. Only
// letters, digits and "._-" are kept from the value, so it is safe in a file name.
int comm_job_name(CommGetenv get, void *ctx, char *buf, size_t size, Err *e);

// ---- the communicator ----

typedef enum { COMM_SUM = 0, COMM_AVG = 1 } CommOp;
typedef enum { COMM_SINGLE = 0, COMM_MPI = 1, COMM_NCCL = 2 } CommKind;

typedef struct Comm Comm;

// The collectives. Every rank must issue the same collectives with the same counts in the same
// order; every call blocks until its result is in recv (on this rank). Buffers are host memory
// (single, MPI) or CUDA device memory (NCCL: Comm.device_buffers). Sums are computed per element
// in rank order, (((r0 + r1) + r2) + ...), and every rank ends with the same bits; COMM_AVG then
// multiplies by the fp32 value 1.0f / size.
typedef struct {
    // recv[i] = sum over ranks of send[i], i < count. send == recv is allowed.
    int (*all_reduce)(Comm *c, const float *send, float *recv, size_t count, CommOp op, Err *e);
    // send holds size * recv_count values; rank r gets the reduction of block r:
    // recv[i] = sum over ranks of send[r * recv_count + i]. Buffers must not overlap.
    int (*reduce_scatter)(Comm *c, const float *send, float *recv, size_t recv_count, CommOp op,
                          Err *e);
    // recv (size * send_count) = every rank's send, in rank order. Buffers must not overlap.
    int (*all_gather)(Comm *c, const float *send, float *recv, size_t send_count, Err *e);
    // buf on every rank = buf on root.
    int (*broadcast)(Comm *c, float *buf, size_t count, int root, Err *e);
    // bytes in host memory (on every backend): buf on every rank = buf on root.
    int (*broadcast_bytes)(Comm *c, void *buf, size_t bytes, int root, Err *e);
    int (*barrier)(Comm *c, Err *e);
    // Ends every rank of the job with exit status code (MPI_Abort; NCCL aborts its communicator
    // and exits); what a rank calls when it fails, so that the others do not wait for it.
    void (*abort)(Comm *c, int code);
    void (*destroy)(Comm *c);
} CommOps;

struct Comm {
    const CommOps *ops;
    CommKind kind;
    int rank, size, local_rank;
    RankSource source;
    int device_buffers;    // 1: the collectives take CUDA device pointers
    char description[256]; // for logs: "single process", "MPI (Open MPI v4.1.4), rank 1 of 3"
};

// What a run asks for. backend: "auto" (size 1: single; else nccl for device buffers, mpi for
// host buffers), "single", "mpi" or "nccl". device: the collectives' buffers live on the CUDA
// device (the cuda engine). id_dir: where NCCL's unique id is handed over through a file when
// the job was not started by mpirun (NULL: $LETHE_COMM_DIR, else the current directory).
// timeout_s: the longest a NCCL collective may wait before the run gives up (<= 0: 600 s).
typedef struct {
    const char *backend;
    int device;
    const char *id_dir;
    double timeout_s;
} CommRequest;

// Resolves the ranks from the process environment, opens the communicator, checks that the
// backend sees the same rank and size, and logs one line on stderr (rank 0, or every rank with
// LETHE_COMM_VERBOSE=1). Errors: a world size > 1 with no backend built for it, MPI's world
// disagreeing with the environment, NCCL set-up failures.
int comm_open(Comm **out, const CommRequest *req, Err *e);
// Opens from resolved ranks (tests; comm_open calls it).
int comm_open_ranks(Comm **out, const CommRequest *req, const RankInfo *ranks, Err *e);
void comm_close(Comm *c);

// The checked entry points: argument checks common to every backend (NULL buffers with a
// non-zero count, a root outside [0, size), an unknown op, overlapping buffers), then the
// backend. Errors are prefixed with the collective's name.
int comm_all_reduce(Comm *c, const float *send, float *recv, size_t count, CommOp op, Err *e);
int comm_reduce_scatter(Comm *c, const float *send, float *recv, size_t recv_count, CommOp op,
                        Err *e);
int comm_all_gather(Comm *c, const float *send, float *recv, size_t send_count, Err *e);
int comm_broadcast(Comm *c, float *buf, size_t count, int root, Err *e);
int comm_broadcast_bytes(Comm *c, void *buf, size_t bytes, int root, Err *e);
int comm_barrier(Comm *c, Err *e);
// Prints "rank R: MSG" on stderr and ends every rank with status code (never returns).
void comm_abort(Comm *c, int code, const char *msg) __attribute__((noreturn));

// The part of a count-element buffer that rank r owns in an all-reduce: [*off, *off + *len),
// ceil(count / size) elements per rank, the last ones shorter or empty (count < size).
void comm_chunk(size_t count, int size, int r, size_t *off, size_t *len);

// The fixed-order sum of the reduce step, shared by the backends and the tests' reference:
// out[i] = (((parts[0][i] + parts[1][i]) + parts[2][i]) + ...), n parts, then * (1.0f / n)
// for COMM_AVG. parts[k] = base + k * stride.
void comm_sum_in_rank_order(const float *base, size_t stride, int n, size_t len, CommOp op,
                            float *out);

// ---- backends ----

// Built when MPI was found (LETHE_WITH_MPI): host buffers over MPI_COMM_WORLD.
int comm_mpi_open(Comm **out, const RankInfo *ranks, Err *e);
// Whether this build has MPI.
int comm_have_mpi(void);

// The NCCL backend plugs in here (host/cuda/comm_nccl.c, registered by main with the CUDA
// backend). bootstrap: an open MPI communicator to broadcast the unique id over (owned by the
// NCCL communicator from then on), or NULL to hand it over through a file in id_dir named
// after the job.
typedef struct {
    int (*open)(Comm **out, const RankInfo *ranks, Comm *bootstrap, const char *id_dir,
                double timeout_s, Err *e);
} CommNcclBackend;
void comm_register_nccl(const CommNcclBackend *backend);

#endif
