// Runs under mpirun (tests/mpi/test_comm_mpi.sh): every collective of host/comm.h on random fp32
// buffers of odd sizes against a reference summed in rank order, or one rank failing mid-run.
// Usage: comm_driver collectives SEED | comm_driver fail exit|kill|error
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"

// Rank r's input value i of collective call k: stateless, so every rank can compute every other
// rank's input for the reference. Magnitudes span 2^-16 .. 2^15 so that the order of the additions
// shows in the bits.
static float input(uint64_t seed, int k, int r, size_t i) {
    uint64_t z = seed ^ (uint64_t)k * 0x9E3779B97F4A7C15ull ^ (uint64_t)r * 0xD1B54A32D192ED03ull ^
                 (uint64_t)i * 0x8CB92BA72F3D8DD7ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float m = 1.0f + (float)(z >> 40) / 16777216.0f;
    return ldexpf(z & 1 ? -m : m, (int)((z >> 1) & 31) - 16);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static Comm *g_comm;
static int g_fail;
static uint64_t g_replicated = 0xCBF29CE484222325ull, g_own = 0xCBF29CE484222325ull;
static size_t g_sensitive, g_elements;

#define TRY(call)                                                                              \
    do {                                                                                       \
        Err e_ = {{0}};                                                                        \
        if ((call) != 0) {                                                                     \
            char msg_[2300];                                                                   \
            snprintf(msg_, sizeof msg_, "%s:%d: %s", __FILE__, __LINE__, e_.msg);              \
            comm_abort(g_comm, 3, msg_);                                                       \
        }                                                                                      \
    } while (0)
#define E (&e_)

static float *alloc(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) comm_abort(g_comm, 3, "out of memory");
    for (size_t i = 0; i < n; ++i) p[i] = NAN;
    return p;
}

static void expect_same(const char *what, size_t n, const float *got, const float *want) {
    if (n && memcmp(got, want, n * sizeof(float)) != 0) {
        size_t i = 0;
        while (!memcmp(&got[i], &want[i], sizeof(float))) ++i;
        fprintf(stderr, "rank %d: %s: value %zu is %.9g, the rank-order reference %.9g\n",
                g_comm->rank, what, i, got[i], want[i]);
        g_fail = 1;
    }
}

// Reference for one element: rank 0 + rank 1 + ... in that order, written out here (not
// comm_sum_in_rank_order) so that the test does not use the code it checks.
static float ref_sum(uint64_t seed, int k, size_t i, CommOp op, float *reverse) {
    const int n = g_comm->size;
    float acc = input(seed, k, 0, i), rev = input(seed, k, n - 1, i);
    for (int r = 1; r < n; ++r) acc = acc + input(seed, k, r, i);
    for (int r = n - 2; r >= 0; --r) rev = rev + input(seed, k, r, i);
    if (op == COMM_AVG) acc *= 1.0f / (float)n, rev *= 1.0f / (float)n;
    *reverse = rev;
    return acc;
}

static void all_reduce(uint64_t seed, int k, size_t count, CommOp op, int in_place) {
    const int me = g_comm->rank;
    float *send = alloc(count), *recv = in_place ? send : alloc(count), *want = alloc(count);
    for (size_t i = 0; i < count; ++i) {
        send[i] = input(seed, k, me, i);
        float rev;
        want[i] = ref_sum(seed, k, i, op, &rev);
        g_sensitive += memcmp(&rev, &want[i], sizeof rev) != 0;
    }
    g_elements += count;
    TRY(comm_all_reduce(g_comm, send, recv, count, op, E));
    char what[96];
    snprintf(what, sizeof what, "all-reduce %s of %zu%s", op == COMM_AVG ? "avg" : "sum", count,
             in_place ? " in place" : "");
    expect_same(what, count, recv, want);
    g_replicated = fnv(g_replicated, recv, count * sizeof(float));
    if (!in_place) free(recv);
    free(send), free(want);
}

static void reduce_scatter(uint64_t seed, int k, size_t rc, CommOp op) {
    const int me = g_comm->rank, n = g_comm->size;
    float *send = alloc(rc * (size_t)n), *recv = alloc(rc), *want = alloc(rc);
    for (size_t i = 0; i < rc * (size_t)n; ++i) send[i] = input(seed, k, me, i);
    for (size_t i = 0; i < rc; ++i) {
        float rev;
        want[i] = ref_sum(seed, k, (size_t)me * rc + i, op, &rev);
    }
    TRY(comm_reduce_scatter(g_comm, send, recv, rc, op, E));
    char what[96];
    snprintf(what, sizeof what, "reduce-scatter %s of %zu per rank", op == COMM_AVG ? "avg" : "sum",
             rc);
    expect_same(what, rc, recv, want);
    g_own = fnv(g_own, recv, rc * sizeof(float));
    free(send), free(recv), free(want);
}

static void all_gather(uint64_t seed, int k, size_t sc) {
    const int me = g_comm->rank, n = g_comm->size;
    float *send = alloc(sc), *recv = alloc(sc * (size_t)n), *want = alloc(sc * (size_t)n);
    for (size_t i = 0; i < sc; ++i) send[i] = input(seed, k, me, i);
    for (int r = 0; r < n; ++r)
        for (size_t i = 0; i < sc; ++i) want[(size_t)r * sc + i] = input(seed, k, r, i);
    TRY(comm_all_gather(g_comm, send, recv, sc, E));
    char what[64];
    snprintf(what, sizeof what, "all-gather of %zu per rank", sc);
    expect_same(what, sc * (size_t)n, recv, want);
    g_replicated = fnv(g_replicated, recv, sc * (size_t)n * sizeof(float));
    free(send), free(recv), free(want);
}

static void broadcast(uint64_t seed, int k, size_t count, int root) {
    float *buf = alloc(count), *want = alloc(count);
    for (size_t i = 0; i < count; ++i)
        buf[i] = input(seed, k, g_comm->rank, i), want[i] = input(seed, k, root, i);
    TRY(comm_broadcast(g_comm, buf, count, root, E));
    char what[64];
    snprintf(what, sizeof what, "broadcast of %zu from rank %d", count, root);
    expect_same(what, count, buf, want);
    g_replicated = fnv(g_replicated, buf, count * sizeof(float));
    free(buf), free(want);
}

static int collectives(uint64_t seed) {
    const int n = g_comm->size;
    // odd sizes, sizes below the world size, zero, and sizes over the MPI backend's slab (4 Mi
    // values) so that the slabbing is exercised
    const size_t sizes[] = {0, 1, 2, 3, 5, 7, 31, 1000, 65537, ((size_t)1 << 22) + 13};
    const size_t nsizes = sizeof sizes / sizeof sizes[0];
    int k = 0;
    for (size_t s = 0; s < nsizes; ++s) {
        all_reduce(seed, k++, sizes[s], COMM_SUM, 0);
        all_reduce(seed, k++, sizes[s], COMM_AVG, s % 2);
        all_reduce(seed, k++, sizes[s], COMM_SUM, 1);
    }
    const size_t per_rank[] = {0, 1, 2, 3, 7, 1001, ((size_t)1 << 22) / (size_t)n + 3};
    for (size_t s = 0; s < sizeof per_rank / sizeof per_rank[0]; ++s) {
        reduce_scatter(seed, k++, per_rank[s], COMM_SUM);
        reduce_scatter(seed, k++, per_rank[s], COMM_AVG);
        all_gather(seed, k++, per_rank[s]);
    }
    for (int root = 0; root < n; ++root)
        for (size_t s = 0; s < 6; ++s) broadcast(seed, k++, sizes[s * 2 % nsizes], root);
    char bytes[13];
    memset(bytes, g_comm->rank == n - 1 ? 'x' : 'y', sizeof bytes);
    TRY(comm_broadcast_bytes(g_comm, bytes, sizeof bytes, n - 1, E));
    if (memchr(bytes, 'y', sizeof bytes)) g_fail = 1, fprintf(stderr, "broadcast_bytes\n");
    TRY(comm_barrier(g_comm, E));

    // every rank must hold the same bits: rank 0's digest of the replicated results to all
    uint64_t d = g_replicated;
    TRY(comm_broadcast_bytes(g_comm, &d, sizeof d, 0, E));
    if (d != g_replicated) {
        fprintf(stderr, "rank %d: replicated results differ from rank 0's (%016llx vs %016llx)\n",
                g_comm->rank, (unsigned long long)g_replicated, (unsigned long long)d);
        g_fail = 1;
    }
    if (g_comm->rank == 0)
        printf("order check: %zu of %zu all-reduce values would differ if summed in reverse rank "
               "order\n",
               g_sensitive, g_elements);
    printf("rank %d of %d: %d collectives, replicated digest %016llx, own digest %016llx: %s\n",
           g_comm->rank, n, k, (unsigned long long)g_replicated, (unsigned long long)g_own,
           g_fail ? "MISMATCH" : "bit-identical to the rank-order reference");
    fflush(stdout);
    return g_fail;
}

// Every rank all-reduces in a loop; rank 1 fails at iteration 20 in the way asked for. The others
// must not wait for it forever.
static int fail(const char *how) {
    if (g_comm->size < 2) comm_abort(g_comm, 2, "fail needs two ranks or more");
    float buf[1001];
    for (int it = 0; it < 100000; ++it) {
        if (g_comm->rank == 1 && it == 20) {
            fprintf(stderr, "rank 1: failing on purpose (%s) at iteration %d\n", how, it);
            fflush(stderr);
            if (!strcmp(how, "exit")) _exit(5);
            if (!strcmp(how, "kill")) raise(SIGKILL);
            comm_abort(g_comm, 4, "simulated failure: a step returned an error");
        }
        for (size_t i = 0; i < 1001; ++i) buf[i] = input(1, it, g_comm->rank, i);
        TRY(comm_all_reduce(g_comm, buf, buf, 1001, COMM_SUM, E));
        usleep(1000);
    }
    printf("rank %d finished\n", g_comm->rank); // never reached: rank 1 fails first
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "collectives") && strcmp(argv[1], "fail"))) {
        fprintf(stderr, "usage: comm_driver collectives SEED | comm_driver fail exit|kill|error\n");
        return 2;
    }
    Err e = {{0}};
    if (comm_open(&g_comm, &(CommRequest){.backend = "auto"}, &e)) {
        fprintf(stderr, "comm_driver: %s\n", e.msg);
        return 1;
    }
    const int rc = !strcmp(argv[1], "fail") ? fail(argv[2])
                                            : collectives(strtoull(argv[2], NULL, 10));
    comm_close(g_comm);
    return rc;
}
