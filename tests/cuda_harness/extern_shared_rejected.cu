// Must not compile under the harness: `extern __shared__` names a symbol no header can redirect to
// a per-block buffer, so dynamic shared memory goes through LETHE_DYNAMIC_SMEM (launch.cuh).
// The CTest cuda_harness_extern_shared_rejected expects the diagnostic.
__global__ void uses_extern_shared(float* out) {
    extern __shared__ float smem[];
    out[threadIdx.x] = smem[threadIdx.x];
}
