// The step scheduler of `lethe unlearn` and `lethe finetune`: epochs over the anchor set
// (forget; finetune: train) paired with retain batches, gradient accumulation over packed
// micro-batches, the optimizer, metrics, evaluation, run state and resume.
#ifndef LETHE_TRAIN_H
#define LETHE_TRAIN_H

#include "errors.h"
#include "run_config.h"

// Exit status of a run stopped by SIGTERM/SIGUSR1 after saving its run state (EX_TEMPFAIL:
// "try again": resubmitting the same command resumes).
#define TRAIN_EXIT_INTERRUPTED 75

// Runs a resolved config (run_config_finish done). resume: continue from OUT/state if a complete
// state is there. Returns 0 when finished, TRAIN_EXIT_INTERRUPTED after a signal, -1 on error.
int train_run(const RunConfig *c, const char *command, int resume, Err *e);

// The engine of the last train_run ("cpu (float32)", "CUDA device 0 (NAME), bfloat16") and
// whether it was a GPU, for `lethe bench`; "" before any run.
const char *train_last_device(int *is_gpu);
// The most device memory in use after any step of the last train_run (bytes; 0 on the CPU).
size_t train_last_device_peak(void);

// Installs SIGTERM/SIGUSR1 handlers that make train_run save its state and stop after the
// current step.
void train_install_signal_handlers(void);

#endif
