// Tests of the harness's one-rank NCCL: collectives are copies (or nothing, in place), buffers must
// be device memory, and more than one rank is refused.
#include "harness.h"
#include "test_util.h"

#include <nccl.h>

#include <vector>

namespace {

void test_one_rank_collectives() {
    ncclUniqueId id;
    CHECK(ncclGetUniqueId(&id) == ncclSuccess);
    ncclComm_t comm;
    CHECK(ncclCommInitRank(&comm, 1, id, 0) == ncclSuccess);
    int count = 0, rank = -1;
    CHECK(ncclCommCount(comm, &count) == ncclSuccess && count == 1);
    CHECK(ncclCommUserRank(comm, &rank) == ncclSuccess && rank == 0);

    std::vector<float> host(300);
    for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i) - 7.5f;
    DeviceBuffer<float> send(host), recv(host.size());
    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreate(&s));
    CHECK(ncclGroupStart() == ncclSuccess);
    CHECK(ncclAllReduce(send.get(), recv.get(), host.size(), ncclFloat32, ncclSum, comm, s) ==
          ncclSuccess);
    CHECK(ncclGroupEnd() == ncclSuccess);
    CHECK(recv.download() == host);
    CHECK(ncclAllReduce(recv.get(), recv.get(), host.size(), ncclFloat32, ncclAvg, comm, s) ==
          ncclSuccess);  // in place
    CHECK(recv.download() == host);

    DeviceBuffer<float> other(host.size());
    CHECK(ncclBroadcast(send.get(), other.get(), host.size(), ncclFloat32, 0, comm, s) ==
          ncclSuccess);
    CHECK(other.download() == host);
    CHECK(ncclBroadcast(send.get(), other.get(), host.size(), ncclFloat32, 1, comm, s) ==
          ncclInvalidArgument);
    // Host buffers and overlong counts are refused instead of faulting.
    CHECK(ncclAllReduce(host.data(), recv.get(), host.size(), ncclFloat32, ncclSum, comm, s) ==
          ncclInvalidArgument);
    CHECK(ncclAllReduce(send.get(), recv.get(), host.size() + 1, ncclFloat32, ncclSum, comm, s) ==
          ncclInvalidArgument);
    CHECK(ncclGroupEnd() == ncclInvalidUsage);  // unbalanced
    CHECK_CUDA(cudaStreamSynchronize(s));
    CHECK_CUDA(cudaStreamDestroy(s));
    CHECK(ncclCommDestroy(comm) == ncclSuccess);
}

void test_more_than_one_rank_is_refused() {
    ncclUniqueId id;
    CHECK(ncclGetUniqueId(&id) == ncclSuccess);
    ncclComm_t comm;
    CHECK(ncclCommInitRank(&comm, 2, id, 0) == ncclInvalidArgument);
    CHECK(strcmp(ncclGetErrorString(ncclSuccess), "no error") == 0);
}

// Send to self and receive from self pair up in order inside a group; outside a group, or
// unpaired, they are refused (a real NCCL would hang).
void test_send_recv_to_self() {
    ncclUniqueId id;
    CHECK(ncclGetUniqueId(&id) == ncclSuccess);
    ncclComm_t comm;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    CHECK(ncclCommInitRankConfig(&comm, 1, id, 0, &config) == ncclSuccess);
    ncclResult_t async = ncclInProgress;
    CHECK(ncclCommGetAsyncError(comm, &async) == ncclSuccess && async == ncclSuccess);
    std::vector<float> a = {1, 2, 3}, b = {4, 5};
    DeviceBuffer<float> da(a), db(b), ra(3), rb(2);
    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreate(&s));
    CHECK(ncclGroupStart() == ncclSuccess);
    CHECK(ncclRecv(ra.get(), 3, ncclFloat32, 0, comm, s) == ncclSuccess);  // before its send
    CHECK(ncclSend(da.get(), 3, ncclFloat32, 0, comm, s) == ncclSuccess);
    CHECK(ncclSend(db.get(), 2, ncclFloat32, 0, comm, s) == ncclSuccess);
    CHECK(ncclRecv(rb.get(), 2, ncclFloat32, 0, comm, s) == ncclSuccess);
    CHECK(ncclGroupEnd() == ncclSuccess);
    CHECK(ra.download() == a && rb.download() == b);
    CHECK(ncclSend(da.get(), 3, ncclFloat32, 0, comm, s) == ncclInvalidUsage);  // no group
    CHECK(ncclGroupStart() == ncclSuccess);
    CHECK(ncclSend(da.get(), 3, ncclFloat32, 1, comm, s) == ncclInvalidArgument);  // no peer 1
    CHECK(ncclSend(da.get(), 3, ncclFloat32, 0, comm, s) == ncclSuccess);
    CHECK(ncclRecv(rb.get(), 2, ncclFloat32, 0, comm, s) == ncclSuccess);
    CHECK(ncclGroupEnd() == ncclInvalidUsage);  // 3 values sent, 2 received
    CHECK_CUDA(cudaStreamDestroy(s));
    CHECK(ncclCommFinalize(comm) == ncclSuccess);
    CHECK(ncclCommAbort(comm) == ncclSuccess);
}

}  // namespace

int main() {
    run_test("one_rank_collectives", test_one_rank_collectives);
    run_test("more_than_one_rank_is_refused", test_more_than_one_rank_is_refused);
    run_test("send_recv_to_self", test_send_recv_to_self);
    return test_exit_code();
}
