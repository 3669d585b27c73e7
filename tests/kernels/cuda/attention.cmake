# Tests of the CUDA fused classifier and causal attention (kernels/cuda/classifier.cu,
# attention.cu) under the CPU execution harness, against their CPU twins in lethe_kernels.
foreach(name classifier attention)
  add_executable(test_cuda_${name} ${CMAKE_CURRENT_LIST_DIR}/test_cuda_${name}.cpp)
  target_link_libraries(test_cuda_${name} PRIVATE lethe_kernels_cuda_harness lethe_cuda_harness
                                                  lethe_kernels)
  set_target_properties(test_cuda_${name} PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  add_test(NAME kernels_cuda_${name} COMMAND test_cuda_${name})
  set_tests_properties(kernels_cuda_${name} PROPERTIES LABELS unit TIMEOUT 300)
endforeach()
