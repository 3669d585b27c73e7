// Named accumulating timers on the monotonic clock: where a training step's time goes, for
// `lethe bench`. Off unless timing_enable(1); off, a start or stop costs one branch on a global.
#ifndef LETHE_TIMING_H
#define LETHE_TIMING_H

#include <stdint.h>

// The parts of one optimizer step. The parts do not overlap; TIMER_STEP encloses them all, and
// what it holds beyond their sum (zeroing the gradients, the objective's weights, bookkeeping)
// is the step's "other".
typedef enum {
    TIMER_STEP,                // one step of train_run: zeroing the gradients to the update's end
    TIMER_DATA,                // choosing the step's samples and packing micro-batches
    TIMER_FORWARD,             // the trunk: embedding, blocks, final norm, gather of target rows
    TIMER_CLASSIFIER_FORWARD,  // LM head, log-softmax at the targets, per-sample sums
    TIMER_BACKWARD,            // the trunk's backward, final norm to embedding
    TIMER_CLASSIFIER_BACKWARD, // LM head backward and the scatter of the target rows' gradients
    TIMER_OPTIMIZER,           // global gradient norm, clip, optimizer update
    TIMER_COUNT
} TimerId;

// Read by the inline start/stop below; set only through timing_enable.
extern int g_timing_enabled;

void timing_start_enabled(TimerId id);
void timing_stop_enabled(TimerId id);

// Not thread-safe: call from the thread that runs the step (the OpenMP regions are inside).
static inline void timing_start(TimerId id) {
    if (g_timing_enabled) timing_start_enabled(id);
}
static inline void timing_stop(TimerId id) {
    if (g_timing_enabled) timing_stop_enabled(id);
}

// Turns the timers on (totals and step records cleared) or off (step records freed).
void timing_enable(int on);
const char *timing_name(TimerId id); // "step", "data", "forward", ...
double timing_total(TimerId id);     // seconds accumulated since timing_enable(1)
int64_t timing_calls(TimerId id);    // completed start/stop pairs

// One record per completed TIMER_STEP: record[TIMER_STEP] the step's seconds, record[k] the
// seconds timer k accumulated during that step. Records in step order; NULL past the end.
int timing_step_count(void);
const double *timing_step_record(int i); // (TIMER_COUNT)

#endif
