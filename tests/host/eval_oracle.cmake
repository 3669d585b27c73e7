# `lethe eval` against an independent recomputation, included by tests/host/CMakeLists.txt: two
# real models (stories260K and a fine-tuned copy) on tiny TOFU/MUSE sets; every value and
# per-sample array of eval.json recomputed with torch_llama (float64), scipy, numpy, NLTK and
# Python's zlib, and every generation re-decoded greedily with torch.
add_test(NAME host_eval_metrics_match_torch_recomputation
         COMMAND ${LETHE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_vs_torch.py
                 $<TARGET_FILE:lethe> ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_BINARY_DIR}/oracle_eval)
set_tests_properties(host_eval_metrics_match_torch_recomputation PROPERTIES LABELS "oracle"
                     TIMEOUT 600)

# Generated text with a character cut by byte-fallback tokens: U+FFFD as Python inserts them.
add_executable(utf8_replace_driver utf8_replace_driver.c)
target_link_libraries(utf8_replace_driver PRIVATE lethe_host)
add_test(NAME host_utf8_replacement_matches_python
         COMMAND ${LETHE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_utf8_replace.py
                 $<TARGET_FILE:utf8_replace_driver>)
set_tests_properties(host_utf8_replacement_matches_python PROPERTIES LABELS "oracle")
