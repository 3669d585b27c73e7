# Tests of the GGUF reader, dequantisers and Llama-family import (included by
# tests/io/CMakeLists.txt). Files go under ${CMAKE_CURRENT_BINARY_DIR}/gguf-tmp.
set(_gguf_tmp ${CMAKE_CURRENT_BINARY_DIR}/gguf-tmp)

add_executable(test_io_gguf ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf.c)
target_link_libraries(test_io_gguf PRIVATE lethe_io m)

function(lethe_gguf_test mode name)
  add_test(NAME ${name} COMMAND test_io_gguf ${mode} ${_gguf_tmp})
  set_tests_properties(${name} PROPERTIES LABELS "unit" TIMEOUT 120)
endfunction()
lethe_gguf_test(valid gguf_v2_v3_metadata_of_every_type_and_tensors_read_back_every_prefix_rejected)
lethe_gguf_test(malformed gguf_malformed_files_rejected_with_the_file_and_fault_named)
lethe_gguf_test(import gguf_llama_import_permutes_q_with_heads_k_with_kv_heads_and_refuses_unsupported)
