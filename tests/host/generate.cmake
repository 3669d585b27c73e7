# Batched generation over KV caches against generation without a cache, on stories260K
# (included by tests/host/CMakeLists.txt). test_generate's `bench` mode measures tokens/s.
add_executable(test_generate ${CMAKE_CURRENT_SOURCE_DIR}/test_generate.c)
target_link_libraries(test_generate PRIVATE lethe_host)
target_include_directories(test_generate PRIVATE ${CMAKE_SOURCE_DIR}/tests/io)

function(lethe_generate_test mode name)
  add_test(NAME ${name} COMMAND test_generate ${mode} ${LETHE_MODELS})
  set_tests_properties(${name} PROPERTIES LABELS "e2e" TIMEOUT 300)
endfunction()

lethe_generate_test(greedy_matches_nocache
                    host_generate_batch_greedy_equals_nocache_for_every_max_batch)
lethe_generate_test(rows_and_batch_size
                    host_generate_one_row_step_is_decode_step_bigger_steps_within_rounding)
lethe_generate_test(sampled_per_request
                    host_generate_sampling_is_per_request_whatever_the_batch)
lethe_generate_test(stops host_generate_stops_on_eos_max_tokens_callback_and_context)
