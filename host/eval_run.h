// `lethe eval CONFIG.yaml`: the multi-model TOFU / MUSE / probes evaluation (host/eval_run.c).
#ifndef LETHE_EVAL_RUN_H
#define LETHE_EVAL_RUN_H

#include "engine.h"
#include "errors.h"

// Runs the evaluation a config describes; writes OUT/eval.json and OUT/report.html and prints
// the comparison table. out_override (may be NULL) replaces the config's out.
int eval_run_config(const char *config_path, const char *out_override, const DeviceRequest *dev,
                    Err *e);

#endif
