// report.html: the self-contained comparison page of an evaluation (tables with the best value
// marked, bar and scatter charts, training curves) rendered from an eval.json document.
#ifndef LETHE_REPORT_H
#define LETHE_REPORT_H

#include "errors.h"
#include "json.h"

#define REPORT_EVAL_FORMAT "lethe-eval/1"

// Renders the parsed eval.json `eval` to out_path, written atomically (a temporary name, then a
// rename): on any error out_path is left as it was. eval_dir is the directory of the eval.json
// (relative "metrics_jsonl" paths are resolved against it; NULL or "" for the current one). A
// training-curve file that is missing or unreadable becomes a note on the page, not an error.
// Errors name the field ("models[2].name: expected a string"); the caller prefixes the file.
int report_write_html(const JsonValue *eval, const char *eval_dir, const char *out_path, Err *e);

#endif
