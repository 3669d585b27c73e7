# Tests of the CUDA twin of the per-row mean squared error (kernels/cuda/rows_mse.cu, RMU's
# hidden-state loss) against kernels/cpu/rows_mse.c (lethe_cuda_kernel_test: CMakeLists.txt).
lethe_cuda_kernel_test(rows_mse)
