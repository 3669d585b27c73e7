# Hugging Face directory import/export against transformers itself (included by
# tests/io/CMakeLists.txt). The interop venv (tools/interop_venv.sh) lives in the build tree and is
# shared by every oracle test that needs transformers; exit 77 = skipped (PyPI unreachable).
add_test(NAME hf_convert_and_export_match_transformers_logprobs_and_tensors
         COMMAND ${LETHE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/check_hf_interop.py
                 $<TARGET_FILE:lethe> ${CMAKE_CURRENT_BINARY_DIR}/hf-tmp)
set_tests_properties(hf_convert_and_export_match_transformers_logprobs_and_tensors PROPERTIES
                     LABELS "unit" TIMEOUT 600 SKIP_RETURN_CODE 77
                     ENVIRONMENT "LETHE_INTEROP_VENV=${LETHE_INTEROP_DIR}/interop-venv")
