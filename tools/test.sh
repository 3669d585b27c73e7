#!/usr/bin/env bash
# README command (2): set up, build (release and ASan+UBSan), run the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
t0=$(date +%s)
# ctest runs two multi-threaded programs at once on this 2-core kind of machine: OpenMP's default
# spin-waiting then burns the cores the other process needs (measured 5-10x slower runs).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
stage() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

stage "setup"
bash "$root/tools/setup.sh"
stage "build release"
rel=$(bash "$root/tools/build.sh" release)
stage "test release (all tests)"
(cd "$rel" && ctest --output-on-failure -j2 --timeout 900)
# The GPU suite needs a GPU; say so rather than skip it silently (tools/gpu-suite.sh, docs/gpu.md).
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  stage "GPU suite: skipped: no GPU on this machine (the gpu-labelled tests above show as Skipped)"
fi
stage "build asan (AddressSanitizer + UndefinedBehaviorSanitizer)"
asan=$(bash "$root/tools/build.sh" asan)
stage "test asan (C tests, labels unit and e2e, without the demo)"
# Sanitizers slow the programs down; the PyTorch-oracle tests exercise the same code in release,
# and the demo (label demo) is the same commands as the smaller e2e tests at 10x the size.
(cd "$asan" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
   ctest --output-on-failure -j2 --timeout 900 -L 'unit|e2e' -LE demo)
stage "all tests passed"
