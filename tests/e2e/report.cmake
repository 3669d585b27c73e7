# report.html of `lethe report` (tables, SVG charts, training curves) rendered by headless
# Chromium, and the refusal of bad eval.json files.
add_test(NAME e2e_report_self_contained_values_charts_render_in_chromium
         COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_report.sh $<TARGET_FILE:lethe>
                 ${CMAKE_CURRENT_BINARY_DIR}/report)
set_tests_properties(e2e_report_self_contained_values_charts_render_in_chromium
                     PROPERTIES LABELS "e2e" TIMEOUT 600)
