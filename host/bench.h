// The measuring parts of `lethe bench`: the unlearning step split by the step timers, PaLM FLOPs
// per token, peak FLOP/s (CPU: measured sgemm; GPU: datasheet) and the PyTorch-eager peer.
#ifndef LETHE_BENCH_H
#define LETHE_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "model_config.h"
#include "timing.h"

#define BENCH_PATH_MAX 1024

// ---- FLOPs and peaks --------------------------------------------------------------------------

// PaLM's model FLOPs per token of a training step (Chowdhery et al. 2022, appendix B):
// 6N + 12 L H hd T, N the parameters in matmuls (q/k/v/o and the MLP of every block, and the LM
// head, tied or not; the embedding lookup and the norms excluded), as tools/roofline.py.
double bench_flops_per_token(const ModelConfig *c, int64_t T, double *n_matmul);

// Dense bf16 tensor-core peak in FLOP/s of a GPU named like the CUDA device name ("NVIDIA H100
// 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA B200", "NVIDIA A100-SXM4-80GB"), or 0
// when the name is not in the table.
double bench_gpu_peak_flops(const char *device_name);

// The fp32 matmul peak of this CPU at the current OpenMP thread count: lethe's matmul_forward
// (OpenBLAS sgemm in lethe's tiles) on square n x n x n problems, best of a few calls each.
// gflops[i] per sizes[i]; returns the largest in FLOP/s (0 on allocation failure).
double bench_sgemm_peak(const int *sizes, int n_sizes, double *gflops);

// ---- the step ---------------------------------------------------------------------------------

typedef struct {
    const char *method;     // ga | graddiff | npo | simnpo | finetune
    const char *model_path; // a checkpoint; NULL: a random init of cfg (written to the workdir)
    ModelConfig cfg;        // the model's config (read from the checkpoint by the caller)
    int64_t batch, seq, steps, warmup, seed;
    double simnpo_delta;    // method.delta for simnpo
    const char *device;       // device.name: cpu | cuda | auto
    const char *device_dtype; // device.dtype: bf16 | fp32
} BenchSpec;

typedef struct {
    size_t n_params;
    int64_t tokens_per_step; // the tokens the step learns from: B T, or 2 B T with a retain term
    int steps;               // timed steps recorded
    double step_s[1024];     // the timed steps' seconds (the first 1024)
    double median_s, min_s, mean_s, max_s;
    double part_mean_s[TIMER_COUNT]; // mean seconds per timed step; [TIMER_STEP] = mean_s
    char device[360];                // the engine the steps ran on (train_last_device)
    int on_gpu;
    double peak_device_mib;          // on a GPU: the most device memory in use after a step
} BenchSteps;

// A fresh private directory under $TMPDIR (or /tmp); bench_workdir_remove deletes it and all it
// holds.
int bench_workdir_create(char *dir, size_t cap, Err *e);
void bench_workdir_remove(const char *dir);

// Whether the method's step has a retain term (so a retain batch): graddiff, npo, simnpo.
// RMU's block in a benchmark: as deep as the WMDP recipe's block 7 of 32 (tools/bench_torch.py
// takes the same).
int bench_rmu_layer(const ModelConfig *c);
int bench_method_has_retain(const char *method);

// Writes the model (random init unless spec->model_path) and B random samples of T tokens as the
// forget (finetune: train) set, and as the retain set when the method has one, into workdir;
// runs warmup + steps optimizer steps of `lethe unlearn` / `lethe finetune` there with the step
// timers on (batch_size = micro_batch_size = B, constant lr 1e-5, clip 1.0, AdamW; the run's
// own output goes to workdir/run.log) and summarises the timed steps.
int bench_run_steps(const BenchSpec *spec, const char *workdir, BenchSteps *out, Err *e);

// ---- the PyTorch peer -------------------------------------------------------------------------

typedef struct {
    char variant[32]; // own | transformers
    char label[192];  // the model and attention the script reports
    char torch[48], transformers[48];
    double tokens_per_s, median_ms, fwd_ms, ref_ms, bwd_ms, opt_ms;
} BenchPeerVariant;

typedef struct {
    // ok: at least one variant timed; skipped (--peer none); unavailable: no Python with torch
    // or no tools/bench_torch.py; failed: the script failed.
    char status[16];
    char python[BENCH_PATH_MAX];
    char message[1024];
    int n_variants;
    BenchPeerVariant variants[4];
} BenchPeer;

typedef struct {
    const char *choice;      // "auto", "none", or a Python executable
    const char *repo;        // the repository (tools/bench_torch.py, .venv-bench); may be NULL
    const char *preset_yaml; // the model's sizes as a preset file
    const char *method;
    int64_t batch, seq, steps, warmup, seed;
    int threads;
    double simnpo_delta;
    const char *device; // cpu | cuda (bench_torch.py --device; bf16 autocast on cuda)
} BenchPeerArgs;

// Runs tools/bench_torch.py --method METHOD --json with the same sizes and threads (OMP, MKL
// threads = threads; OpenBLAS single-threaded, Debian torch's best setting) and fills out; never
// fails the benchmark: problems are in out->status and out->message.
void bench_peer_run(const BenchPeerArgs *a, BenchPeer *out);

// The repository holding this executable's sources: the nearest ancestor of the executable's
// directory with tools/bench_torch.py and configs/models. 0 when found.
int bench_find_repository(char *dir, size_t cap);

#endif
