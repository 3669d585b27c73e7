# Tests of the safetensors reader/writer (included by tests/io/CMakeLists.txt). Each ctest runs
# one mode of test_io_safetensors; files go under ${CMAKE_CURRENT_BINARY_DIR}/st-tmp.
set(_st_tmp ${CMAKE_CURRENT_BINARY_DIR}/st-tmp)

add_executable(test_io_safetensors ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.c)
target_link_libraries(test_io_safetensors PRIVATE lethe_io m)

function(lethe_st_test mode name)
  add_test(NAME ${name} COMMAND test_io_safetensors ${mode} ${_st_tmp})
  set_tests_properties(${name} PROPERTIES LABELS "unit" TIMEOUT 120)
endfunction()
lethe_st_test(roundtrip safetensors_round_trip_f32_exact_f16_bf16_rne_with_scalar_and_empty)
lethe_st_test(malformed safetensors_malformed_headers_rejected_with_the_fault_named)
lethe_st_test(index safetensors_sharded_index_finds_tensors_and_rejects_bad_weight_maps)
lethe_st_test(writer_errors safetensors_failed_or_aborted_write_leaves_nothing_behind)
lethe_st_test(sharded_writer
              safetensors_sharded_writer_splits_at_the_size_limit_with_an_index_and_cleans_up)

# The reference implementation (pip `safetensors`, in the interop venv under the build tree that sees
# Debian's numpy and torch) reads what we write and writes what we read, bit for bit. Exit 77
# (skipped, with a message) only when pip cannot reach the registry.
add_test(NAME safetensors_interoperates_bit_exactly_with_the_reference_package
         COMMAND ${LETHE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_safetensors.py
                 $<TARGET_FILE:test_io_safetensors> ${_st_tmp}/oracle
                 ${LETHE_INTEROP_DIR}/interop-venv)
set_tests_properties(safetensors_interoperates_bit_exactly_with_the_reference_package
                     PROPERTIES LABELS "unit" TIMEOUT 300 SKIP_RETURN_CODE 77)
