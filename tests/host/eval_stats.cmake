# Tests of the evaluation statistics (host/eval_stats, host/rouge), included by
# tests/host/CMakeLists.txt: hand-computed unit cases, and an oracle run against scipy
# (ks_2samp, kstwo, hmean), numpy (AUC, MIA scores), NLTK (Porter stems), Python's zlib and a
# Python ROUGE written from rouge_score's rules.
add_executable(test_eval_stats ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_stats.c)
target_include_directories(test_eval_stats PRIVATE ${CMAKE_SOURCE_DIR}/tests/io) # check.h
target_link_libraries(test_eval_stats PRIVATE lethe_host)
add_test(NAME host_eval_stats_match_hand_computed_values COMMAND test_eval_stats)
set_tests_properties(host_eval_stats_match_hand_computed_values PROPERTIES LABELS "unit" TIMEOUT 60)

add_executable(eval_stats_driver ${CMAKE_CURRENT_SOURCE_DIR}/eval_stats_driver.c)
target_link_libraries(eval_stats_driver PRIVATE lethe_host)
add_test(NAME host_eval_stats_match_scipy_nltk_numpy_zlib
         COMMAND ${LETHE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_stats_vs_scipy.py
                 $<TARGET_FILE:eval_stats_driver> ${CMAKE_SOURCE_DIR}/data/tofu
                 ${CMAKE_SOURCE_DIR}/../shared/data/text/tinyshakespeare.txt)
set_tests_properties(host_eval_stats_match_scipy_nltk_numpy_zlib PROPERTIES LABELS "oracle"
                     TIMEOUT 600)
