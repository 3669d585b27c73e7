// The CUDA engine of host/engine.h, registered by the `lethe` executables built with the backend
// (engine_register_cuda(engine_cuda_backend())).
#ifndef LETHE_ENGINE_CUDA_H
#define LETHE_ENGINE_CUDA_H

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

int engine_cuda_available(char *why, size_t why_size);
int engine_cuda_open(Engine **out, LlamaModel *model, Optimizer *opt, int with_ref,
                     LetheDtype dtype, uint64_t seed, Err *e);
const CudaBackend *engine_cuda_backend(void);

#ifdef __cplusplus
}
#endif
#endif
