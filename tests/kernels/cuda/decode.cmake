# Tests of the CUDA twins of KV-cache decoding (kernels/cuda/decode.cu, and the float32 logits
# product of matmul.cu, whose CPU twin calls sgemm) (lethe_cuda_kernel_test: CMakeLists.txt).
lethe_cuda_kernel_test(decode NEEDS_BLAS)
