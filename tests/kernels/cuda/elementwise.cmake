# Tests of the CUDA twins of embedding, RMSNorm, RoPE, SwiGLU, residual, matmul, AdamW and the
# gradient norm (kernels/cuda/) against their CPU twins, under the CPU execution harness.
foreach(name elementwise matmul adamw)
  add_executable(test_cuda_${name} ${CMAKE_CURRENT_LIST_DIR}/test_cuda_${name}.cpp)
  target_link_libraries(test_cuda_${name} PRIVATE lethe_kernels_cuda_harness lethe_cuda_harness
                                                  lethe_kernels)
  set_target_properties(test_cuda_${name} PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  add_test(NAME kernels_cuda_${name} COMMAND test_cuda_${name})
  set_tests_properties(kernels_cuda_${name} PROPERTIES LABELS unit TIMEOUT 300)
endforeach()
# The AdamW and gradient-norm twins are host/optim.c's.
target_link_libraries(test_cuda_adamw PRIVATE lethe_host)
