// Named accumulating timers (see timing.h): totals per timer, and one record per step taken as
// the difference of the totals between the start and the stop of TIMER_STEP.
#include "timing.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int g_timing_enabled = 0;

static double g_started[TIMER_COUNT];
static double g_total[TIMER_COUNT];
static int64_t g_calls[TIMER_COUNT];
static double g_total_at_step_start[TIMER_COUNT];
static double *g_records; // (g_cap_records, TIMER_COUNT)
static int g_n_records, g_cap_records;

static const char *const g_names[TIMER_COUNT] = {
    [TIMER_STEP] = "step",
    [TIMER_DATA] = "data",
    [TIMER_FORWARD] = "forward",
    [TIMER_CLASSIFIER_FORWARD] = "classifier_forward",
    [TIMER_BACKWARD] = "backward",
    [TIMER_CLASSIFIER_BACKWARD] = "classifier_backward",
    [TIMER_OPTIMIZER] = "optimizer",
};

static double monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void timing_enable(int on) {
    memset(g_started, 0, sizeof g_started);
    memset(g_total, 0, sizeof g_total);
    memset(g_calls, 0, sizeof g_calls);
    memset(g_total_at_step_start, 0, sizeof g_total_at_step_start);
    free(g_records);
    g_records = NULL;
    g_n_records = g_cap_records = 0;
    g_timing_enabled = on;
}

void timing_start_enabled(TimerId id) {
    if (id == TIMER_STEP) memcpy(g_total_at_step_start, g_total, sizeof g_total);
    g_started[id] = monotonic_seconds();
}

void timing_stop_enabled(TimerId id) {
    const double elapsed = monotonic_seconds() - g_started[id];
    g_total[id] += elapsed;
    g_calls[id]++;
    if (id != TIMER_STEP) return;
    if (g_n_records == g_cap_records) {
        const int cap = g_cap_records ? 2 * g_cap_records : 64;
        double *grown = realloc(g_records, (size_t)cap * TIMER_COUNT * sizeof *grown);
        if (!grown) return; // a record lost to memory pressure; the totals stay right
        g_records = grown;
        g_cap_records = cap;
    }
    double *record = g_records + (size_t)g_n_records++ * TIMER_COUNT;
    for (int k = 0; k < TIMER_COUNT; k++) record[k] = g_total[k] - g_total_at_step_start[k];
}

const char *timing_name(TimerId id) { return id < TIMER_COUNT ? g_names[id] : "?"; }
double timing_total(TimerId id) { return id < TIMER_COUNT ? g_total[id] : 0.0; }
int64_t timing_calls(TimerId id) { return id < TIMER_COUNT ? g_calls[id] : 0; }
int timing_step_count(void) { return g_n_records; }

const double *timing_step_record(int i) {
    return i >= 0 && i < g_n_records ? g_records + (size_t)i * TIMER_COUNT : NULL;
}
