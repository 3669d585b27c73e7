# Tests of the CUDA twins of embedding, RMSNorm, RoPE, SwiGLU, residual, matmul, AdamW and the
# gradient norm (kernels/cuda/) against their CPU twins (lethe_cuda_kernel_test: CMakeLists.txt).
lethe_cuda_kernel_test(elementwise)
lethe_cuda_kernel_test(matmul NEEDS_BLAS)
# The AdamW and gradient-norm twins are host/optim.c's.
lethe_cuda_kernel_test(adamw LIBRARIES ${LETHE_OPTIM_LIBRARY})
