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

# The oracle (tests/io/check_gguf.py, Debian python re-executed in the interop venv of
# tools/interop_venv.sh under the build tree): (a) dequantisation of every supported type against
# gguf-py, bit for bit; (b) random Llama (GQA) and Qwen2 (biases) GGUFs written by gguf-py's
# GGUFWriter (F32, F16, BF16, quantised) converted by `lethe convert --from gguf` against the
# state dict transformers builds from the same files; (c) the real SmolLM2-135M-Instruct Q4_1
# GGUF (tools/fetch_smollm2.sh): log-probs and greedy tokens of lethe against transformers, and
# the TokenizerSpec against gguf-py. Exit 77 (skipped, with a message) only when the registry
# is unreachable.
add_executable(gguf_lm_driver ${CMAKE_CURRENT_SOURCE_DIR}/gguf_lm_driver.c)
target_link_libraries(gguf_lm_driver PRIVATE lethe_host)
add_test(NAME gguf_import_matches_gguf_py_and_transformers_on_random_and_smollm2_models
         COMMAND ${LETHE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_gguf.py
                 $<TARGET_FILE:lethe> $<TARGET_FILE:test_io_gguf> $<TARGET_FILE:gguf_lm_driver>
                 ${_gguf_tmp}/oracle ${LETHE_INTEROP_DIR})
# Label oracle: release only (minutes; the sanitizer tree runs the C unit tests of the reader).
set_tests_properties(gguf_import_matches_gguf_py_and_transformers_on_random_and_smollm2_models
                     PROPERTIES LABELS "oracle" TIMEOUT 600 SKIP_RETURN_CODE 77)
