// NCCL with one rank, for the CPU harness: a communicator of size 1, where every reduction is the
// identity and every collective a copy. Multi-rank runs use the host communicator instead.
#include "internal.h"

#include <nccl.h>

#include <stdio.h>
#include <string.h>

#include <atomic>
#include <mutex>
#include <vector>

struct ncclComm {
    int nranks;
    int rank;
};

using namespace lethe_harness::detail;

namespace {

std::atomic<int> g_group_depth{0};

// Point-to-point with one rank is a send to self, which NCCL only completes inside a group: the
// sends and receives of the group are queued here and matched in order at the outer ncclGroupEnd.
struct P2p {
    const void* send;
    void* recv;
    size_t bytes;
};
std::mutex g_p2p_mutex;
std::vector<P2p> g_sends, g_recvs;

size_t type_bytes(ncclDataType_t t) {
    switch (t) {
        case ncclInt8:
        case ncclUint8:
        case ncclFloat8e4m3:
        case ncclFloat8e5m2: return 1;
        case ncclFloat16:
        case ncclBfloat16: return 2;
        case ncclInt32:
        case ncclUint32:
        case ncclFloat32: return 4;
        case ncclInt64:
        case ncclUint64:
        case ncclFloat64: return 8;
        default: return 0;
    }
}

// With one rank, a collective leaves recvbuff equal to sendbuff (sum, prod, min, max and avg of one
// value are that value): check both lie in device memory, then copy unless in place.
ncclResult_t one_rank_copy(const char* api, const void* send, void* recv, size_t count,
                           ncclDataType_t type, ncclComm_t comm, cudaStream_t stream) {
    if (comm == nullptr) {
        report("%s: null communicator", api);
        return ncclInvalidArgument;
    }
    const size_t bytes = type_bytes(type);
    if (bytes == 0) {
        report("%s: data type %d does not exist", api, static_cast<int>(type));
        return ncclInvalidArgument;
    }
    if (!stream_is_valid(stream)) {
        report("%s: the stream does not exist", api);
        return ncclInvalidArgument;
    }
    if (count == 0) return ncclSuccess;
    for (const void* p : {send, static_cast<const void*>(recv)}) {
        if (classify_range(p, count * bytes).kind != RangeKind::device) {
            report("%s: buffer %p of %zu bytes is not (entirely) in device memory", api, p,
                   count * bytes);
            return ncclInvalidArgument;
        }
    }
    if (send != recv) {
        DeviceAccess access{send, recv};
        memmove(recv, send, count * bytes);
    }
    return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
    if (version == nullptr) return ncclInvalidArgument;
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
    if (uniqueId == nullptr) return ncclInvalidArgument;
    memset(uniqueId, 0, sizeof *uniqueId);
    snprintf(uniqueId->internal, sizeof uniqueId->internal, "lethe CPU harness, one rank");
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
    (void)commId;
    if (comm == nullptr) return ncclInvalidArgument;
    if (nranks != 1 || rank != 0) {
        report("ncclCommInitRank(nranks=%d, rank=%d): the CUDA harness emulates one rank only",
               nranks, rank);
        return ncclInvalidArgument;
    }
    *comm = new ncclComm{1, 0};
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (comm == nullptr) return ncclInvalidArgument;
    delete comm;
    return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
    if (comm == nullptr || count == nullptr) return ncclInvalidArgument;
    *count = comm->nranks;
    return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
    if (comm == nullptr || rank == nullptr) return ncclInvalidArgument;
    *rank = comm->rank;
    return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
    if (comm == nullptr || device == nullptr) return ncclInvalidArgument;
    *device = 0;
    return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
    if (static_cast<int>(op) < 0 || op >= ncclNumOps) {
        report("ncclAllReduce: reduction %d is not a built-in one", static_cast<int>(op));
        return ncclInvalidArgument;
    }
    return one_rank_copy("ncclAllReduce", sendbuff, recvbuff, count, datatype, comm, stream);
}

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                        ncclRedOp_t op, int root, ncclComm_t comm, cudaStream_t stream) {
    if (static_cast<int>(op) < 0 || op >= ncclNumOps || root != 0) return ncclInvalidArgument;
    return one_rank_copy("ncclReduce", sendbuff, recvbuff, count, datatype, comm, stream);
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm,
                           cudaStream_t stream) {
    if (root != 0) {
        report("ncclBroadcast: root %d does not exist in a one-rank communicator", root);
        return ncclInvalidArgument;
    }
    return one_rank_copy("ncclBroadcast", sendbuff, recvbuff, count, datatype, comm, stream);
}

ncclResult_t ncclBcast(void* buff, size_t count, ncclDataType_t datatype, int root, ncclComm_t comm,
                       cudaStream_t stream) {
    return ncclBroadcast(buff, buff, count, datatype, root, comm, stream);
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream) {
    return one_rank_copy("ncclAllGather", sendbuff, recvbuff, sendcount, datatype, comm, stream);
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               cudaStream_t stream) {
    if (static_cast<int>(op) < 0 || op >= ncclNumOps) return ncclInvalidArgument;
    return one_rank_copy("ncclReduceScatter", sendbuff, recvbuff, recvcount, datatype, comm,
                         stream);
}

ncclResult_t ncclGroupStart() {
    ++g_group_depth;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
    const int depth = g_group_depth.fetch_sub(1);
    if (depth <= 0) {
        ++g_group_depth;
        report("ncclGroupEnd without ncclGroupStart");
        return ncclInvalidUsage;
    }
    if (depth > 1) return ncclSuccess;
    std::lock_guard<std::mutex> lock(g_p2p_mutex);
    ncclResult_t rc = ncclSuccess;
    if (g_sends.size() != g_recvs.size()) {
        report("ncclGroupEnd: %zu sends to self and %zu receives from self do not pair up (a "
               "real NCCL would hang)", g_sends.size(), g_recvs.size());
        rc = ncclInvalidUsage;
    }
    for (size_t i = 0; rc == ncclSuccess && i < g_sends.size(); ++i) {
        if (g_sends[i].bytes != g_recvs[i].bytes) {
            report("ncclGroupEnd: send %zu to self has %zu bytes, the matching receive %zu", i,
                   g_sends[i].bytes, g_recvs[i].bytes);
            rc = ncclInvalidUsage;
        } else if (g_sends[i].bytes) {
            DeviceAccess access{g_sends[i].send, g_recvs[i].recv};
            memmove(g_recvs[i].recv, g_sends[i].send, g_sends[i].bytes);
        }
    }
    g_sends.clear();
    g_recvs.clear();
    return rc;
}

// ncclSend/ncclRecv to and from self (peer 0), queued until the group ends; the buffers are
// checked like the collectives' (one_rank_copy with send == recv only checks).
static ncclResult_t p2p(const char* api, const void* buf, size_t count, ncclDataType_t type,
                        int peer, ncclComm_t comm, cudaStream_t stream, bool is_send) {
    if (peer != 0) {
        report("%s: peer %d does not exist in a one-rank communicator", api, peer);
        return ncclInvalidArgument;
    }
    if (g_group_depth.load() <= 0) {
        report("%s: a send to or receive from self outside ncclGroupStart/ncclGroupEnd never "
               "completes", api);
        return ncclInvalidUsage;
    }
    const ncclResult_t rc =
        one_rank_copy(api, buf, const_cast<void*>(buf), count, type, comm, stream);
    if (rc != ncclSuccess) return rc;
    std::lock_guard<std::mutex> lock(g_p2p_mutex);
    const P2p op{buf, const_cast<void*>(buf), count * type_bytes(type)};
    (is_send ? g_sends : g_recvs).push_back(op);
    return ncclSuccess;
}

ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
    return p2p("ncclSend", sendbuff, count, datatype, peer, comm, stream, true);
}

ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
                      ncclComm_t comm, cudaStream_t stream) {
    return p2p("ncclRecv", recvbuff, count, datatype, peer, comm, stream, false);
}

// A non-blocking communicator (config->blocking = 0) behaves as a blocking one here: every call
// completes before it returns, so ncclCommGetAsyncError never reports ncclInProgress.
ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank,
                                    ncclConfig_t* config) {
    (void)config;
    return ncclCommInitRank(comm, nranks, commId, rank);
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
    if (comm == nullptr || asyncError == nullptr) return ncclInvalidArgument;
    *asyncError = ncclSuccess;
    return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
    return comm == nullptr ? ncclInvalidArgument : ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
    return ncclCommDestroy(comm);
}

const char* ncclGetErrorString(ncclResult_t result) {
    switch (result) {
        case ncclSuccess: return "no error";
        case ncclUnhandledCudaError:
            return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
        case ncclSystemError:
            return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
        case ncclInternalError:
            return "internal error - please report this issue to the NCCL developers";
        case ncclInvalidArgument: return "invalid argument (see the harness's message on stderr)";
        case ncclInvalidUsage: return "invalid usage (see the harness's message on stderr)";
        case ncclRemoteError: return "remote process exited or there was a network error";
        case ncclInProgress: return "NCCL operation in progress";
        default: return "unknown result code";
    }
}

const char* ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return "";  // the harness reports on stderr as it goes
}

}  // extern "C"
