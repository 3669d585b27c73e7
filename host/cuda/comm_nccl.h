// The NCCL communicator of host/comm.h (device fp32 buffers), registered by the executables built
// with the CUDA backend: comm_register_nccl(comm_nccl_backend()).
#ifndef LETHE_COMM_NCCL_H
#define LETHE_COMM_NCCL_H

#include <stddef.h>

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

const CommNcclBackend *comm_nccl_backend(void);

// The unique-id hand-over through a shared directory, when no MPI is there to broadcast it.
// Rank 0 writes the file (a temporary name, then rename, so a reader never sees half of it) and
// refuses to replace an existing one, which would be a stale id from an earlier run or another
// job of the same name; the other ranks wait up to timeout_s for it to appear.
int comm_nccl_write_id(const char *path, const void *id, size_t bytes, Err *e);
int comm_nccl_read_id(const char *path, void *id, size_t bytes, double timeout_s, Err *e);

#ifdef __cplusplus
}
#endif

#endif
