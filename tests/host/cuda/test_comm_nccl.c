// The NCCL communicator (host/cuda/comm_nccl.c) with world size 1 under the CPU execution harness:
// every collective on device buffers of odd sizes gives back its input bit for bit, host buffers
// are refused, and the unique-id file hand-over (write once, wait, refuse a stale file).
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "comm_nccl.h"

#include "../../io/check.h"

static float *to_device(const float *h, size_t n) {
    float *d = NULL;
    if (cudaMalloc((void **)&d, (n ? n : 1) * sizeof(float)) != cudaSuccess) return NULL;
    if (n) cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice);
    return d;
}

static void from_device(float *h, const float *d, size_t n) {
    if (n) cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost);
}

static int test_collectives(void) {
    comm_register_nccl(comm_nccl_backend());
    const RankInfo one = {.rank = 0, .size = 1, .local_rank = 0, .source = RANK_SOURCE_SINGLE};
    Comm *c = NULL;
    Err e = {{0}};
    // auto with one rank is the single-process communicator even for device buffers
    REQUIRE(comm_open_ranks(&c, &(CommRequest){.backend = "auto", .device = 1}, &one, &e) == 0,
            "%s", e.msg);
    CHECK(c->kind == COMM_SINGLE && c->device_buffers, "auto, one rank: kind %d", (int)c->kind);
    comm_close(c);
    REQUIRE(comm_open_ranks(&c, &(CommRequest){.backend = "nccl", .device = 1}, &one, &e) == 0,
            "%s", e.msg);
    CHECK(c->kind == COMM_NCCL && c->device_buffers && c->size == 1, "kind %d", (int)c->kind);
    printf("  %s\n", c->description);

    const size_t sizes[] = {0, 1, 2, 3, 7, 31, 1001, 65537};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; ++s) {
        const size_t n = sizes[s];
        float *h = malloc((n + 1) * sizeof(float)), *got = malloc((n + 1) * sizeof(float));
        REQUIRE(h && got, "malloc");
        for (size_t i = 0; i < n; ++i)
            h[i] = ldexpf((float)(i * 2654435761u % 1000003u), -(int)(i % 20));
        float *send = to_device(h, n), *recv = to_device(NULL, n), *big = NULL;
        REQUIRE(send && recv, "cudaMalloc");
        for (int op = COMM_SUM; op <= COMM_AVG; ++op) {
            CHECK(comm_all_reduce(c, send, recv, n, (CommOp)op, &e) == 0, "%s", e.msg);
            from_device(got, recv, n);
            CHECK(!n || !memcmp(got, h, n * sizeof(float)), "all-reduce %zu op %d", n, op);
            CHECK(comm_all_reduce(c, recv, recv, n, (CommOp)op, &e) == 0, "%s", e.msg);
            from_device(got, recv, n);
            CHECK(!n || !memcmp(got, h, n * sizeof(float)), "in place %zu op %d", n, op);
            CHECK(comm_reduce_scatter(c, send, (big = to_device(NULL, n)), n, (CommOp)op, &e) == 0,
                  "%s", e.msg);
            from_device(got, big, n);
            CHECK(!n || !memcmp(got, h, n * sizeof(float)), "reduce-scatter %zu op %d", n, op);
            cudaFree(big);
        }
        big = to_device(NULL, n);
        CHECK(comm_all_gather(c, send, big, n, &e) == 0, "%s", e.msg);
        from_device(got, big, n);
        CHECK(!n || !memcmp(got, h, n * sizeof(float)), "all-gather %zu", n);
        CHECK(comm_broadcast(c, big, n, 0, &e) == 0, "%s", e.msg);
        from_device(got, big, n);
        CHECK(!n || !memcmp(got, h, n * sizeof(float)), "broadcast %zu", n);
        cudaFree(big), cudaFree(send), cudaFree(recv);
        free(h), free(got);
    }
    char bytes[13] = "thirteen byt";
    CHECK(comm_broadcast_bytes(c, bytes, sizeof bytes, 0, &e) == 0 &&
              !strcmp(bytes, "thirteen byt"),
          "%s", e.msg);
    CHECK(comm_barrier(c, &e) == 0, "%s", e.msg);

    // host memory where device memory is due: an error value naming the call, not a fault
    float host[5] = {1, 2, 3, 4, 5}, host_out[5];
    CHECK(comm_all_reduce(c, host, host_out, 5, COMM_SUM, &e) == -1 &&
              strstr(e.msg, "all-reduce of 5 values") && strstr(e.msg, "cudaMemcpyAsync"),
          "%s", e.msg);
    printf("  error as expected: %s\n", e.msg);
    CHECK(comm_all_gather(c, host, host_out, 5, &e) == -1 && strstr(e.msg, "ncclAllGather"),
          "%s", e.msg);
    printf("  error as expected: %s\n", e.msg);
    CHECK(comm_broadcast(c, host, 5, 1, &e) == -1 && strstr(e.msg, "root 1 is not a rank"), "%s",
          e.msg);
    comm_close(c);
    return g_fail;
}

static int test_id_file(void) {
    char dir[] = "/tmp/lethe-comm-XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/lethe-nccl-job.id", dir);
    Err e = {{0}};
    unsigned char id[128], back[128];
    for (int i = 0; i < 128; ++i) id[i] = (unsigned char)(i * 37 + 1);
    CHECK(comm_nccl_write_id(path, id, sizeof id, &e) == 0, "%s", e.msg);
    CHECK(comm_nccl_read_id(path, back, sizeof back, 1.0, &e) == 0 && !memcmp(id, back, 128),
          "%s", e.msg);
    // a second writer (a stale file, or two jobs of one name) is refused
    CHECK(comm_nccl_write_id(path, id, sizeof id, &e) == -1 && strstr(e.msg, "exists") &&
              strstr(e.msg, "LETHE_JOB_ID"),
          "%s", e.msg);
    printf("  error as expected: %s\n", e.msg);
    unlink(path);
    // nobody writes: the reader gives up after its timeout with a message
    CHECK(comm_nccl_read_id(path, back, sizeof back, 0.2, &e) == -1 && strstr(e.msg, "waited") &&
              strstr(e.msg, "shared by every node"),
          "%s", e.msg);
    printf("  error as expected: %s\n", e.msg);
    // a file of the wrong size
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "fopen");
    fwrite("short", 1, 5, f);
    fclose(f);
    CHECK(comm_nccl_read_id(path, back, sizeof back, 1.0, &e) == -1 &&
              strstr(e.msg, "holds 5 bytes"),
          "%s", e.msg);
    unlink(path);
    rmdir(dir);
    return g_fail;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_comm_nccl collectives|id_file\n");
        return 2;
    }
    const int rc = !strcmp(argv[1], "collectives") ? test_collectives()
                   : !strcmp(argv[1], "id_file")   ? test_id_file()
                                                   : 2;
    printf("test_comm_nccl %s: %s\n", argv[1], rc ? "FAILED" : "ok");
    return rc;
}
