# Tests of the CUDA fused classifier and causal attention (kernels/cuda/classifier.cu,
# attention.cu) against their CPU twins in lethe_kernels (lethe_cuda_kernel_test: CMakeLists.txt).
lethe_cuda_kernel_test(classifier NEEDS_BLAS)
lethe_cuda_kernel_test(attention)
