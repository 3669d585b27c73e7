// Tests of host/comm: rank resolution from every source and its errors, the job name of the NCCL
// id file, the chunking and the fixed-order sum, and the single-process communicator.
// Usage: test_comm MODE (ranks | job | sum | single)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

#include "../io/check.h"

// Resolves env (NULL-terminated "NAME=value" strings); returns 0/-1 and fills r and e.
static int resolve(const char **env, RankInfo *r, Err *e) {
    memset(r, 0xab, sizeof *r);
    e->msg[0] = '\0';
    return comm_resolve_ranks(comm_getenv_array, (void *)env, r, e);
}

static void expect_ok(const char **env, int rank, int size, int local, RankSource src,
                      unsigned also, int line) {
    RankInfo r;
    Err e;
    const int rc = resolve(env, &r, &e);
    CHECK(rc == 0, "line %d: %s", line, e.msg);
    if (rc) return;
    CHECK(r.rank == rank && r.size == size && r.local_rank == local && r.source == src &&
              r.also_set == also,
          "line %d: got rank %d size %d local %d source %d also 0x%x", line, r.rank, r.size,
          r.local_rank, (int)r.source, r.also_set);
}

// Resolution fails and the message contains every fragment given.
static void expect_err(const char **env, const char *frag1, const char *frag2, int line) {
    RankInfo r;
    Err e;
    const int rc = resolve(env, &r, &e);
    CHECK(rc == -1, "line %d: resolution succeeded (rank %d of %d)", line, r.rank, r.size);
    CHECK(strstr(e.msg, frag1) && (!frag2 || strstr(e.msg, frag2)),
          "line %d: message \"%s\" lacks \"%s\"/\"%s\"", line, e.msg, frag1, frag2 ? frag2 : "");
    printf("  error as expected: %s\n", e.msg);
}

static int test_ranks(void) {
    const unsigned T = 1u << RANK_SOURCE_TORCHRUN, S = 1u << RANK_SOURCE_SLURM;
    // nothing set (and unrelated variables): one process
    expect_ok((const char *[]){"PATH=/usr/bin", "RANKING=3", NULL}, 0, 1, 0, RANK_SOURCE_SINGLE,
              0, __LINE__);
    expect_ok((const char *[]){NULL}, 0, 1, 0, RANK_SOURCE_SINGLE, 0, __LINE__);
    // each source alone
    expect_ok((const char *[]){"OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=3",
                               "OMPI_COMM_WORLD_LOCAL_RANK=0", NULL},
              2, 3, 0, RANK_SOURCE_OMPI, 0, __LINE__);
    expect_ok((const char *[]){"RANK=5", "WORLD_SIZE=8", "LOCAL_RANK=1", NULL}, 5, 8, 1,
              RANK_SOURCE_TORCHRUN, 0, __LINE__);
    expect_ok((const char *[]){"SLURM_PROCID=7", "SLURM_NTASKS=16", "SLURM_LOCALID=3", NULL}, 7,
              16, 3, RANK_SOURCE_SLURM, 0, __LINE__);
    expect_ok((const char *[]){"RANK=0", "WORLD_SIZE=1", "LOCAL_RANK=0", NULL}, 0, 1, 0,
              RANK_SOURCE_TORCHRUN, 0, __LINE__);
    // the order: OMPI over torchrun over Slurm, the ignored ones recorded
    expect_ok((const char *[]){"SLURM_PROCID=0", "SLURM_NTASKS=4", "SLURM_LOCALID=0",
                               "OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=2",
                               "OMPI_COMM_WORLD_LOCAL_RANK=1", NULL},
              1, 2, 1, RANK_SOURCE_OMPI, S, __LINE__);
    expect_ok((const char *[]){"SLURM_PROCID=1", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "RANK=6",
                               "WORLD_SIZE=8", "LOCAL_RANK=2", NULL},
              6, 8, 2, RANK_SOURCE_TORCHRUN, S, __LINE__);
    expect_ok((const char *[]){"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "OMPI_COMM_WORLD_RANK=1",
                               "OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_LOCAL_RANK=1",
                               "SLURM_PROCID=0", "SLURM_NTASKS=1", "SLURM_LOCALID=0", NULL},
              1, 2, 1, RANK_SOURCE_OMPI, T | S, __LINE__);
    // a later source that is broken does not matter once an earlier one is complete
    expect_ok((const char *[]){"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=2",
                               "OMPI_COMM_WORLD_LOCAL_RANK=0", "RANK=9", NULL},
              0, 2, 0, RANK_SOURCE_OMPI, T, __LINE__);

    // inconsistent settings
    expect_err((const char *[]){"RANK=4", "WORLD_SIZE=4", "LOCAL_RANK=0", NULL},
               "RANK=4 is not below WORLD_SIZE=4", "0 .. 3", __LINE__);
    expect_err((const char *[]){"SLURM_PROCID=9", "SLURM_NTASKS=2", "SLURM_LOCALID=0", NULL},
               "SLURM_PROCID=9 is not below SLURM_NTASKS=2", NULL, __LINE__);
    expect_err((const char *[]){"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=0",
                                "OMPI_COMM_WORLD_LOCAL_RANK=0", NULL},
               "OMPI_COMM_WORLD_SIZE=0", "at least one rank", __LINE__);
    expect_err((const char *[]){"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=2", NULL},
               "LOCAL_RANK=2 is not below WORLD_SIZE=2", NULL, __LINE__);
    // set in part: named, and no fall-through to a later source
    expect_err((const char *[]){"RANK=1", "SLURM_PROCID=0", "SLURM_NTASKS=1", "SLURM_LOCALID=0",
                                NULL},
               "WORLD_SIZE is not set", "RANK=1", __LINE__);
    expect_err((const char *[]){"RANK=1", "WORLD_SIZE=2", NULL}, "LOCAL_RANK is not set", NULL,
               __LINE__);
    expect_err((const char *[]){"SLURM_NTASKS=4", NULL}, "SLURM_PROCID is not set", NULL,
               __LINE__);
    expect_err((const char *[]){"OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_LOCAL_RANK=0", NULL},
               "OMPI_COMM_WORLD_RANK is not set", NULL, __LINE__);
    // not whole numbers
    expect_err((const char *[]){"RANK=one", "WORLD_SIZE=2", "LOCAL_RANK=0", NULL},
               "RANK=\"one\" is not a whole number", "RANK/WORLD_SIZE/LOCAL_RANK", __LINE__);
    expect_err((const char *[]){"RANK=1", "WORLD_SIZE=2x", "LOCAL_RANK=0", NULL},
               "WORLD_SIZE=\"2x\"", NULL, __LINE__);
    expect_err((const char *[]){"RANK=-1", "WORLD_SIZE=2", "LOCAL_RANK=0", NULL}, "RANK=\"-1\"",
               NULL, __LINE__);
    expect_err((const char *[]){"RANK=", "WORLD_SIZE=2", "LOCAL_RANK=0", NULL}, "RANK=\"\"", NULL,
               __LINE__);
    expect_err((const char *[]){"RANK=1", "WORLD_SIZE=99999999999", "LOCAL_RANK=0", NULL},
               "WORLD_SIZE=\"99999999999\"", NULL, __LINE__);

    // the start-up line
    RankInfo r;
    Err e;
    const char *env[] = {"RANK=6", "WORLD_SIZE=8", "LOCAL_RANK=2", "SLURM_PROCID=1",
                         "SLURM_NTASKS=2", "SLURM_LOCALID=0", NULL};
    REQUIRE(resolve(env, &r, &e) == 0, "%s", e.msg);
    char line[256];
    comm_describe_ranks(&r, line, sizeof line);
    CHECK(!strcmp(line, "rank 6 of 8 (local rank 2) from RANK/WORLD_SIZE/LOCAL_RANK; SLURM_* "
                        "also set, ignored"),
          "%s", line);
    printf("  %s\n", line);
    char tiny[8];
    comm_describe_ranks(&r, tiny, sizeof tiny); // truncates, never overruns
    CHECK(!strcmp(tiny, "rank 6 "), "%s", tiny);
    // the process environment is one of the environments
    setenv("RANK", "1", 1), setenv("WORLD_SIZE", "3", 1), setenv("LOCAL_RANK", "1", 1);
    unsetenv("OMPI_COMM_WORLD_RANK"), unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
    CHECK(comm_resolve_ranks(comm_getenv_process, NULL, &r, &e) == 0 && r.rank == 1 &&
              r.size == 3 && r.source == RANK_SOURCE_TORCHRUN,
          "%s", e.msg);
    return g_fail;
}

static int test_job(void) {
    char name[64];
    Err e;
    const char *a[] = {"LETHE_JOB_ID=unlearn/7 b", "SLURM_JOB_ID=12", NULL};
    CHECK(comm_job_name(comm_getenv_array, (void *)a, name, sizeof name, &e) == 0 &&
              !strcmp(name, "unlearn7b"),
          "%s", name);
    const char *b[] = {"SLURM_JOB_ID=4242", "SLURM_STEP_ID=3", "TORCHELASTIC_RUN_ID=x", NULL};
    CHECK(comm_job_name(comm_getenv_array, (void *)b, name, sizeof name, &e) == 0 &&
              !strcmp(name, "slurm-4242.3"),
          "%s", name);
    const char *c[] = {"SLURM_JOB_ID=4242", NULL};
    CHECK(comm_job_name(comm_getenv_array, (void *)c, name, sizeof name, &e) == 0 &&
              !strcmp(name, "slurm-4242.0"),
          "%s", name);
    const char *d[] = {"TORCHELASTIC_RUN_ID=abc-1", NULL};
    CHECK(comm_job_name(comm_getenv_array, (void *)d, name, sizeof name, &e) == 0 &&
              !strcmp(name, "torchrun-abc-1"),
          "%s", name);
    const char *none[] = {NULL};
    CHECK(comm_job_name(comm_getenv_array, (void *)none, name, sizeof name, &e) == -1 &&
              strstr(e.msg, "set LETHE_JOB_ID"),
          "%s", e.msg);
    const char *bad[] = {"LETHE_JOB_ID=//", NULL};
    CHECK(comm_job_name(comm_getenv_array, (void *)bad, name, sizeof name, &e) == -1 &&
              strstr(e.msg, "no letters"),
          "%s", e.msg);
    return g_fail;
}

static int test_sum(void) {
    // chunks tile [0, count) in rank order, ceil(count / size) each, empty ones at the end
    for (size_t count = 0; count < 40; ++count)
        for (int size = 1; size <= 7; ++size) {
            size_t next = 0;
            for (int r = 0; r < size; ++r) {
                size_t off, len;
                comm_chunk(count, size, r, &off, &len);
                CHECK(off == next || len == 0, "count %zu size %d rank %d off %zu", count, size,
                      r, off);
                CHECK(len <= (count + (size_t)size - 1) / (size_t)size, "len %zu", len);
                next = off + len;
            }
            CHECK(next == count, "count %zu size %d: chunks end at %zu", count, size, next);
        }
    // the order is rank order: 1e8 + 1 - 1e8 is 0 in fp32 ((1e8 + 1) rounds to 1e8), while
    // 1e8 - 1e8 + 1 would be 1
    const float parts[3] = {1e8f, 1.0f, -1e8f};
    float out = -1;
    comm_sum_in_rank_order(parts, 1, 3, 1, COMM_SUM, &out);
    CHECK(out == 0.0f, "%g", out);
    const float two[4] = {1, 2, 3, 5}; // parts of length 2, stride 2
    float avg[2];
    comm_sum_in_rank_order(two, 2, 2, 2, COMM_AVG, avg);
    CHECK(avg[0] == 2.0f && avg[1] == 3.5f, "%g %g", avg[0], avg[1]);
    // avg is the sum times the fp32 value 1/3 (not a division by 3)
    const float t[3] = {1, 1, 8388609.0f};
    float a3;
    comm_sum_in_rank_order(t, 1, 3, 1, COMM_AVG, &a3);
    CHECK(a3 == (1.0f + 1.0f + 8388609.0f) * (1.0f / 3.0f), "%.9g", a3);
    return g_fail;
}

static int test_single(void) {
    Comm *c = NULL;
    Err e = {{0}};
    const RankInfo one = {.rank = 0, .size = 1, .local_rank = 0, .source = RANK_SOURCE_SINGLE};
    REQUIRE(comm_open_ranks(&c, &(CommRequest){.backend = "auto"}, &one, &e) == 0, "%s", e.msg);
    CHECK(c->kind == COMM_SINGLE && c->size == 1 && c->rank == 0 && !c->device_buffers, "kind");
    float a[5] = {1.5f, -2, 3, NAN, 1e-40f}, b[5] = {0}, g[5] = {0};
    CHECK(comm_all_reduce(c, a, b, 5, COMM_AVG, &e) == 0 && !memcmp(a, b, sizeof a), "%s", e.msg);
    CHECK(comm_all_reduce(c, b, b, 5, COMM_SUM, &e) == 0 && !memcmp(a, b, sizeof a), "in place");
    CHECK(comm_reduce_scatter(c, a, g, 5, COMM_SUM, &e) == 0 && !memcmp(a, g, sizeof a), "%s",
          e.msg);
    memset(g, 0, sizeof g);
    CHECK(comm_all_gather(c, a, g, 5, &e) == 0 && !memcmp(a, g, sizeof a), "%s", e.msg);
    CHECK(comm_broadcast(c, a, 5, 0, &e) == 0 && comm_barrier(c, &e) == 0, "%s", e.msg);
    CHECK(comm_all_reduce(c, NULL, NULL, 0, COMM_SUM, &e) == 0, "zero values: %s", e.msg);
    // refusals, with the collective named
    CHECK(comm_broadcast(c, a, 5, 1, &e) == -1 && strstr(e.msg, "root 1 is not a rank"), "%s",
          e.msg);
    CHECK(comm_all_reduce(c, NULL, b, 5, COMM_SUM, &e) == -1 &&
              strstr(e.msg, "all-reduce of 5 values: send is NULL"),
          "%s", e.msg);
    CHECK(comm_all_reduce(c, a, b, 5, (CommOp)7, &e) == -1 && strstr(e.msg, "reduction 7"), "%s",
          e.msg);
    CHECK(comm_reduce_scatter(c, a, a + 1, 3, COMM_SUM, &e) == -1 && strstr(e.msg, "overlap"),
          "%s", e.msg);
    CHECK(comm_all_gather(c, a, a, 2, &e) == -1 && strstr(e.msg, "overlap"), "%s", e.msg);
    CHECK(comm_all_reduce(c, a, b, SIZE_MAX / 2, COMM_SUM, &e) == -1 &&
              strstr(e.msg, "overflows"),
          "%s", e.msg);
    comm_close(c);

    // a world of more than one rank with the single backend, or nccl without CUDA: refused
    const RankInfo two = {.rank = 1, .size = 2, .local_rank = 1, .source = RANK_SOURCE_TORCHRUN};
    CHECK(comm_open_ranks(&c, &(CommRequest){.backend = "single"}, &two, &e) == -1 &&
              strstr(e.msg, "rank 1 of 2 (from RANK/WORLD_SIZE/LOCAL_RANK)"),
          "%s", e.msg);
    printf("  error as expected: %s\n", e.msg);
    CHECK(comm_open_ranks(&c, &(CommRequest){.backend = "nccl"}, &one, &e) == -1 &&
              strstr(e.msg, "no CUDA backend with NCCL"),
          "%s", e.msg);
    CHECK(comm_open_ranks(&c, &(CommRequest){.backend = "gloo"}, &one, &e) == -1 &&
              strstr(e.msg, "\"gloo\" is not"),
          "%s", e.msg);
    CHECK(comm_open_ranks(&c, &(CommRequest){.backend = "mpi", .device = 1}, &two, &e) == -1 &&
              strstr(e.msg, "needs \"nccl\""),
          "%s", e.msg);
    if (!comm_have_mpi()) {
        CHECK(comm_open_ranks(&c, &(CommRequest){.backend = "auto"}, &two, &e) == -1 &&
                  strstr(e.msg, "this build has no MPI"),
              "%s", e.msg);
        printf("  error as expected: %s\n", e.msg);
    }
    return g_fail;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_comm ranks|job|sum|single\n");
        return 2;
    }
    const char *m = argv[1];
    const int rc = !strcmp(m, "ranks")    ? test_ranks()
                   : !strcmp(m, "job")    ? test_job()
                   : !strcmp(m, "sum")    ? test_sum()
                   : !strcmp(m, "single") ? test_single()
                                          : 2;
    printf("test_comm %s: %s\n", m, rc ? "FAILED" : "ok");
    return rc;
}
