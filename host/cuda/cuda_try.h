// The checks every CUDA runtime call, kernel launcher and cuBLAS call of the cuda backend's host
// side goes through: on failure the message names the file, line and call (and a hint for an
// out-of-memory error), and the enclosing function returns -1.
#ifndef LETHE_CUDA_TRY_H
#define LETHE_CUDA_TRY_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

// Sets e from a cudaError_t (as int) and returns -1.
int lethe_cuda_failed(Err *e, const char *file, int line, const char *call, int rc);

#ifdef __cplusplus
}
#endif

// Runtime calls and kernel launchers return 0 or a cudaError_t; launchers name their own details
// on stderr.
#define CUDA_TRY(e, call)                                                           \
    do {                                                                            \
        const int cuda_try_rc = (int)(call);                                        \
        if (cuda_try_rc != 0)                                                       \
            return lethe_cuda_failed(e, __FILE__, __LINE__, #call, cuda_try_rc);    \
    } while (0)

#define CUBLAS_TRY(e, call)                                                             \
    do {                                                                                \
        const cublasStatus_t cublas_try_s = (call);                                     \
        if (cublas_try_s != CUBLAS_STATUS_SUCCESS)                                      \
            return err_set(e, "%s:%d: %s failed: %s (%s)", __FILE__, __LINE__, #call,   \
                           cublasGetStatusName(cublas_try_s),                           \
                           cublasGetStatusString(cublas_try_s));                        \
    } while (0)

#endif
