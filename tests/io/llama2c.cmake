# Tests of the llama2.c importer, the tokenizer and the JSON reader (included by
# tests/io/CMakeLists.txt). Model files are the vendored copies under models/stories260K.
set(LETHE_TOFU_DIR ${CMAKE_SOURCE_DIR}/../shared/data/tofu CACHE PATH
    "TOFU data (shared/data/tofu); the JSON tests that read it skip when it is absent")

# One ctest per mode of a test executable; the test name says what it proves.
function(lethe_l2c_test exe mode name)
  add_test(NAME ${name} COMMAND ${exe} ${mode} ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS "unit" TIMEOUT 120 SKIP_RETURN_CODE 77)
endfunction()

add_executable(test_io_tokenizer ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c)
target_link_libraries(test_io_tokenizer PRIVATE lethe_io)
set(_l2c_args ${LETHE_MODELS} ${CMAKE_CURRENT_BINARY_DIR})
lethe_l2c_test(test_io_tokenizer encode_reference
               tokenizer_encodes_reference_sentence_like_llama2c ${_l2c_args})
lethe_l2c_test(test_io_tokenizer roundtrip_stories
               tokenizer_round_trips_tinystories_with_reference_token_counts ${_l2c_args})
lethe_l2c_test(test_io_tokenizer rejects_bad_files
               tokenizer_rejects_truncated_or_mismatched_files_clearly ${_l2c_args})
lethe_l2c_test(test_io_tokenizer invalid_utf8
               tokenizer_keeps_invalid_utf8_byte_for_byte_in_every_kind ${_l2c_args})
lethe_l2c_test(test_io_tokenizer digest_v1
               tokenizer_llama2c_digest_keeps_the_v1_layout ${_l2c_args})
lethe_l2c_test(test_io_tokenizer spec_llama
               tokenizer_gguf_llama_spec_encodes_like_llama2c ${_l2c_args})
lethe_l2c_test(test_io_tokenizer rejects_unsupported
               tokenizer_rejects_unsupported_hf_and_gguf_configurations_by_name ${_l2c_args})

add_executable(test_io_llama2c ${CMAKE_CURRENT_SOURCE_DIR}/test_llama2c.c)
target_link_libraries(test_io_llama2c PRIVATE lethe_io m)
lethe_l2c_test(test_io_llama2c config_and_shapes
               llama2c_reads_stories260K_config_and_hf_shapes ${_l2c_args})
lethe_l2c_test(test_io_llama2c qk_permutation_rope
               llama2c_qk_permutation_turns_interleaved_rope_into_rotate_half ${_l2c_args})
lethe_l2c_test(test_io_llama2c q8_within_error
               llama2c_q8_dequantises_within_quantisation_error_of_float_file ${_l2c_args})
lethe_l2c_test(test_io_llama2c rejects_bad_files
               llama2c_rejects_truncated_files_and_insane_headers_clearly ${_l2c_args})

add_executable(test_io_json ${CMAKE_CURRENT_SOURCE_DIR}/test_json.c)
target_link_libraries(test_io_json PRIVATE lethe_io)
lethe_l2c_test(test_io_json round_trip json_parses_and_round_trips_in_key_order)
lethe_l2c_test(test_io_json escapes_surrogates
               json_decodes_escapes_and_surrogate_pairs_and_rejects_invalid_utf8)
lethe_l2c_test(test_io_json errors_with_position json_reports_errors_with_line_and_column)
lethe_l2c_test(test_io_json deep_nesting json_rejects_nesting_beyond_depth_limit)
# Exit code 77 (shown as skipped, with a message) when shared/data/tofu is absent.
lethe_l2c_test(test_io_json tofu_files json_reads_tofu_files_with_record_counts ${LETHE_TOFU_DIR})

# The tokenizer oracle: every kind against Hugging Face `tokenizers` (and transformers' GGUF
# conversion of the real SmolLM2 tokenizer), encode and decode token for token on the shared
# corpus plus edge cases, through the checkpoint and the tokenizer.json writer. The oracle venv
# is built under the build tree by tools/interop_venv.sh; exit 77 (skipped, with "SKIP:") only
# when PyPI is unreachable.
add_executable(tokenizer_driver ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_driver.c)
target_link_libraries(tokenizer_driver PRIVATE lethe_io)
set(LETHE_SHARED_DATA_DIR ${CMAKE_SOURCE_DIR}/../shared/data CACHE PATH
    "shared/data (TOFU and text corpora) for the tokenizer oracle")
add_test(NAME tokenizers_match_hf_token_for_token_on_corpus_and_edge_cases
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/check_tokenizers.py
                 $<TARGET_FILE:tokenizer_driver> ${CMAKE_CURRENT_BINARY_DIR}/tok-oracle
                 ${LETHE_INTEROP_DIR}/interop-venv ${LETHE_INTEROP_DIR}/smollm2
                 ${LETHE_SHARED_DATA_DIR} ${LETHE_MODELS})
# Label oracle: release only (minutes; the sanitizer tree runs the C unit tests of the tokenizer).
set_tests_properties(tokenizers_match_hf_token_for_token_on_corpus_and_edge_cases
                     PROPERTIES LABELS "oracle" TIMEOUT 900 SKIP_RETURN_CODE 77)
