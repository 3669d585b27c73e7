#!/usr/bin/env bash
# The GPU suite: on a machine with an NVIDIA GPU, builds Lethe with the nvcc it finds and runs what
# only a GPU can check, in one run of under 10 minutes; a table of steps at the end (docs/gpu.md).
#
# usage: tools/gpu-suite.sh LOG_DIR
#   LOG_DIR receives summary.txt (the table), suite.log (everything printed) and steps.tar.gz (one
#   log per step; LETHE_GPU_SUITE_KEEP_STEP_LOGS=1 also keeps them unpacked in LOG_DIR/steps/).
#   Builds go to build-gpu-suite/ in the repository (LETHE_GPU_SUITE_BUILD to change), never into
#   LOG_DIR: the device tool brings back at most 8 files from it.
# Steps: inventory; build (whole project, or only the CUDA kernels' tests when HDF5, libyaml,
# zlib or OpenBLAS is missing: it says which); every kernel against its CPU twin on the GPU; the
# whole-model checks against the CPU (CTest label gpu outside the kernel tests: host/cuda); the
# kernel tests under compute-sanitizer memcheck and racecheck; the `--device cuda` path of the
# commands against `--device cpu` (tests/e2e/test_cuda_path.sh with the real lethe on both
# sides); `lethe bench --device cuda` (with the PyTorch peer when the machine's Python has torch);
# the demo (tools/demo.sh). Nothing is installed. Without a GPU it prints "skipped: no GPU (...)" and
# exits 0. Exit status: 0 when every step that ran passed.
# Environment: LETHE_GPU_SUITE_BUDGET (seconds for the whole run, default 560),
#   LETHE_GPU_SUITE_ARCHS (sm numbers, default the GPU's own), LETHE_GPU_SUITE_NVIDIA_SMI (the
#   nvidia-smi to ask; the CTest tools_gpu_suite_skips_without_gpu points it at nothing).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -ne 1 ]; then
  echo "usage: tools/gpu-suite.sh LOG_DIR" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
logdir="$(cd "$1" && pwd)"
rm -rf "$logdir/steps" "$logdir/steps.tar.gz" "$logdir/summary.txt" "$logdir/suite.log" \
  "$logdir/bench.json"

# ---- is there a GPU? ----------------------------------------------------------------------------
smi="${LETHE_GPU_SUITE_NVIDIA_SMI:-nvidia-smi}"
reason=""
if ! command -v "$smi" >/dev/null 2>&1; then
  reason="nvidia-smi not found"
elif ! gpus=$("$smi" -L 2>&1) || ! grep -q '^GPU [0-9]' <<<"$gpus"; then
  reason="no device: '$smi -L' listed none${gpus:+: $(head -n 1 <<<"$gpus")}"
fi
if [ -n "$reason" ]; then
  echo "skipped: no GPU ($reason)" | tee "$logdir/summary.txt"
  exit 0
fi

exec > >(tee -a "$logdir/suite.log") 2>&1
tee_pid=$!
mkdir -p "$logdir/steps"
budget="${LETHE_GPU_SUITE_BUDGET:-560}"
build="${LETHE_GPU_SUITE_BUILD:-$root/build-gpu-suite}"
jobs="$(nproc 2>/dev/null || echo 4)"
t_start=$(date +%s.%N)
elapsed() { awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", b - a }'; }
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# ---- steps: run_step NAME CAP_SECONDS COMMAND... -------------------------------------------------
# Runs the command with its output in steps/NN-NAME.log, under `timeout` (the smaller of CAP and
# what is left of the budget); records PASS, FAIL or TIMEOUT. A command may write a status of its
# own (NOT BUILT, SKIPPED ..., PASS (...)) into $status_file; exit 0 with such a status is not a
# failure. note_step records a step that was not run.
names=(); statuses=(); seconds=(); failed=0; n=0; unrun=0
status_file="$logdir/steps/.status"
note_step() { # note_step NAME STATUS
  names+=("$1"); statuses+=("$2"); seconds+=("0.0")
  printf '== %-34s %s\n' "$1" "$2"
}
run_step() {
  local name="$1" cap="$2"; shift 2
  n=$((n + 1))
  local file="${name//[^A-Za-z0-9._-]/-}" log
  while [[ "$file" == *--* ]]; do file="${file//--/-}"; done
  log="$logdir/steps/$(printf '%02d' "$n")-${file%-}.log"
  local left=$((budget - $(elapsed) - 10))
  if [ "$left" -lt 20 ]; then
    note_step "$name" "NOT RUN (time budget of ${budget}s spent)"
    unrun=$((unrun + 1))
    return 0
  fi
  local limit=$((cap < left ? cap : left))
  printf '== %-34s (up to %ds; log %s)\n' "$name" "$limit" "${log#"$logdir"/}"
  : >"$status_file"
  local t0 rc st; t0=$(date +%s.%N)
  # A child bash runs the step: the step bodies below are exported functions.
  STEP_LIMIT="$limit" timeout --kill-after=10 "$limit" bash -c '"$@"' step "$@" >"$log" 2>&1
  rc=$?
  st="$(cat "$status_file" 2>/dev/null)"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    st="TIMEOUT after ${limit}s"; failed=1
  elif [ "$rc" -ne 0 ]; then
    st="FAIL${st:+ ($st)}"; failed=1
  else
    st="${st:-PASS}"
  fi
  names+=("$name"); statuses+=("$st")
  seconds+=("$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')")
  printf '   %s\n' "$st"
  if [ "$rc" -ne 0 ]; then
    echo "   last lines of ${log#"$logdir"/}:"
    tail -n 25 "$log" | sed 's/^/   | /'
  fi
}
say() { printf '%s\n' "$*" >"$status_file"; } # a step's own status line

export root logdir build jobs status_file
export -f say

# ---- what is here -------------------------------------------------------------------------------
find_nvcc() {
  local c
  for c in "${CUDACXX:-}" "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}
nvcc="$(find_nvcc)"
cuda_home=""
[ -n "$nvcc" ] && cuda_home="$(cd "$(dirname "$nvcc")/.." && pwd)"
find_tool() { # find_tool NAME: on PATH, in the toolkit, or in Nsight Compute's folder
  local c
  for c in "$(command -v "$1" 2>/dev/null)" "$cuda_home/bin/$1" \
           "$cuda_home/compute-sanitizer/$1" /opt/nvidia/nsight-compute/*/"$1"; do
    [ -n "$c" ] && [ -f "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}
find_lib() { # find_lib NAME: libNAME.so from the loader cache, the toolkit, or pip's nvidia-*
  local hit dirs=("$cuda_home/lib64" "$cuda_home/lib")
  hit=$(ldconfig -p 2>/dev/null | awk -v l="lib$1.so" '$1 ~ "^"l { print $NF; exit }')
  [ -n "$hit" ] && { echo "$hit"; return 0; }
  dirs+=("$cuda_home"/targets/*/lib)
  while IFS= read -r d; do dirs+=("$d"); done < <(python3 -c \
    'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null)
  for d in "${dirs[@]}"; do
    [ -d "$d" ] || continue
    hit=$(find "$d" -maxdepth 3 -name "lib$1.so*" 2>/dev/null | sort | head -n 1)
    [ -n "$hit" ] && { echo "$hit"; return 0; }
  done
  return 1
}
sanitizer="$(find_tool compute-sanitizer)"
export nvcc sanitizer

# Dependencies of the whole project (top-level CMakeLists.txt): pkg-config module, Debian package.
declare -A deb=([openblas]=libopenblas-dev [hdf5]=libhdf5-dev [yaml-0.1]=libyaml-dev
                [zlib]=zlib1g-dev)
missing=()
for m in openblas hdf5 yaml-0.1 zlib; do
  if ! command -v pkg-config >/dev/null 2>&1; then
    missing+=("$m (pkg-config not found; Debian: pkg-config ${deb[$m]})")
  elif ! pkg-config --exists "$m"; then
    missing+=("$m (pkg-config $m; Debian: ${deb[$m]})")
  fi
done

archs="${LETHE_GPU_SUITE_ARCHS:-}"
if [ -z "$archs" ]; then
  archs=$("$smi" --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
  [[ "$archs" =~ ^[0-9]+$ ]] || archs="80;90;100"
fi
export archs

inventory() {
  echo "# nvidia-smi"; "$smi"
  "$smi" --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
  echo; echo "# nvcc: ${nvcc:-not found}"; [ -n "$nvcc" ] && "$nvcc" --version
  echo; echo "# CUDA libraries and tools"
  for l in cudart cublas nccl; do
    printf '%-18s %s\n' "lib$l" "$(find_lib "$l" || echo 'not found')"
  done
  for t in compute-sanitizer ncu cuobjdump; do
    printf '%-18s %s\n' "$t" "$(find_tool "$t" || echo 'not found')"
  done
  echo; echo "# build tools"
  for t in cmake cc c++ pkg-config python3; do
    printf '%-18s %s\n' "$t" "$(command -v "$t" || echo 'not found')"
  done
  command -v cmake >/dev/null && cmake --version | head -n 1
  for m in openblas hdf5 yaml-0.1 zlib; do
    printf '%-18s %s\n' "$m" "$(pkg-config --modversion "$m" 2>/dev/null || echo 'not found')"
  done
  echo "GPU architectures to build: sm_${archs//;/, sm_}; CPU cores: $jobs"
  echo "host: $(uname -srm); repository: $root at" \
    "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'an unknown revision')"
}
export smi cuda_home
export -f find_lib find_tool inventory
echo "Lethe GPU suite: $(head -n 1 <<<"$gpus"); logs in $logdir; time budget ${budget}s"
run_step "inventory" 60 inventory
cat "$logdir"/steps/01-*.log

# ---- build --------------------------------------------------------------------------------------
full_build=0     # the whole project (lethe, host/cuda) was built
kbuild=""        # the build tree holding the GPU kernel tests
build_whole() {
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLETHE_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DLETHE_CUDA_ARCHS="$archs" -DLETHE_KERNEL_TESTS_ON_GPU=ON &&
    cmake --build "$build" -j "$jobs"
}
build_kernel_tests() { # tests/kernels/cuda alone: nvcc, a C/C++ compiler, OpenMP (OpenBLAS if any)
  local cfg="$build-kernels.configure.log" left_out
  mkdir -p "$build-kernels"
  cmake -S "$root/tests/kernels/cuda" -B "$build-kernels" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DLETHE_CUDA_ARCHS="$archs" 2>&1 | tee "$cfg"
  [ "${PIPESTATUS[0]}" -eq 0 ] && cmake --build "$build-kernels" -j "$jobs" || return 1
  left_out=$(sed -n 's/.*\(test_cuda_gpu_[a-z_]*\) NOT BUILT.*/\1/p' "$cfg" | tr '\n' ' ')
  [ -z "$left_out" ] || say "PASS (not built, no OpenBLAS: ${left_out% })"
}
export -f build_whole build_kernel_tests
if [ -z "$nvcc" ]; then
  note_step "build" "FAIL (no nvcc: set CUDACXX or put nvcc on PATH)"
  failed=1
elif [ ${#missing[@]} -eq 0 ]; then
  run_step "build (whole project)" 330 build_whole
  if [[ "${statuses[-1]}" == PASS* ]]; then
    full_build=1; kbuild="$build"
  else
    echo "   the whole project did not build: building the CUDA kernels' tests alone"
    run_step "build (kernel tests alone)" 240 build_kernel_tests
    [[ "${statuses[-1]}" == PASS* ]] && kbuild="$build-kernels"
  fi
else
  echo "   the whole project needs what this machine lacks:"
  printf '     %s\n' "${missing[@]}"
  echo "   (the suite installs nothing; docs/gpu.md says what to do)"
  lacking="$(printf '%s ' "${missing[@]%% *}")"
  note_step "build (whole project)" "NOT RUN: missing ${lacking% }"
  run_step "build (kernel tests alone)" 240 build_kernel_tests
  [[ "${statuses[-1]}" == PASS* ]] && kbuild="$build-kernels"
fi
export kbuild full_build

# ---- tests --------------------------------------------------------------------------------------
# ctest_gpu DIR ARGS...: runs the selected tests; a skipped test (exit 77: no device) fails here,
# where nvidia-smi has just listed a GPU.
ctest_gpu() {
  local dir="$1"; shift
  local listed; listed=$(cd "$dir" && ctest -N "$@" | sed -n 's/^Total Tests: //p')
  if [ "${listed:-0}" -eq 0 ]; then say "NOT BUILT (no test matches ctest $*)"; return 0; fi
  local out="$dir/ctest-gpu.out" rc skipped
  (cd "$dir" && ctest --output-on-failure --timeout 300 -j 4 "$@") 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  skipped=$(grep -c '(Skipped)$' "$out")
  if [ "$rc" -ne 0 ]; then say "$listed tests, see the log"; return 1; fi
  if [ "$skipped" -ne 0 ]; then say "$skipped of $listed tests skipped: no device?"; return 1; fi
  say "PASS ($listed tests)"
}
export -f ctest_gpu
kernel_tests() { ctest_gpu "$kbuild" -L gpu -R '^kernels_cuda_gpu_'; }
model_tests() {
  if [ ! -e "$root/host/cuda/CMakeLists.txt" ]; then
    say "NOT BUILT (no host/cuda yet)"; return 0
  fi
  ctest_gpu "$build" -L gpu -LE kernels
}
# sanitize TOOL: every GPU kernel test under compute-sanitizer --tool TOOL, each with an equal
# share of the step's time, so that one slow test does not hide the others' results.
sanitize() {
  local tool="$1" exe exes=() bad=() rc per
  for exe in "$kbuild"/tests/kernels/cuda/test_cuda_gpu_* "$kbuild"/test_cuda_gpu_*; do
    [ -x "$exe" ] && exes+=("$exe")
  done
  [ ${#exes[@]} -gt 0 ] || { say "no kernel test executables in $kbuild"; return 1; }
  per=$(( (STEP_LIMIT - 5) / ${#exes[@]} ))
  for exe in "${exes[@]}"; do
    echo "== compute-sanitizer --tool $tool $(basename "$exe") (up to ${per}s)"
    timeout --kill-after=5 "$per" "$sanitizer" --tool "$tool" --error-exitcode 86 \
      --print-limit 50 "$exe"
    rc=$?
    case $rc in
      0) ;;
      124 | 137) bad+=("$(basename "$exe") timed out") ;;
      86) bad+=("$(basename "$exe"): $tool errors") ;;
      *) bad+=("$(basename "$exe") exit $rc") ;;
    esac
  done
  if [ ${#bad[@]} -gt 0 ]; then
    say "$(printf '%s; ' "${bad[@]}" | sed 's/; $//')"; return 1
  fi
  say "PASS (${#exes[@]} tests, no $tool errors)"
}
bench() {
  local out="$build/bench.json" rc
  # --peer auto: the PyTorch peer on the GPU when the machine's Python has torch (never installed)
  "$build/lethe" bench --preset l1b --seq 2048 --batch 1 --steps 5 --warmup 2 --device cuda \
    --peer auto --json >"$out" 2>"$out.err"
  rc=$?
  cat "$out" "$out.err"
  [ "$rc" -eq 0 ] && cp "$out" "$logdir/bench.json" && say "PASS (bench.json)"
  return "$rc"
}
demo() { LETHE="$build/lethe" LETHE_DEMO_OUT="$build/demo-out" bash "$root/tools/demo.sh"; }
# The --device cuda path of the commands against --device cpu, as CI runs it under the harness.
cuda_path() {
  local mode bad=()
  for mode in methods determinism resume eval generate bench; do
    echo "== test_cuda_path.sh $mode"
    bash "$root/tests/e2e/test_cuda_path.sh" "$build/lethe" "$build/lethe" "$root/models" \
      "$build/cuda_path_$mode" "$mode" || bad+=("$mode")
  done
  if [ ${#bad[@]} -gt 0 ]; then say "FAILED: ${bad[*]}"; return 1; fi
  say "PASS (methods, determinism, resume, eval, generate, bench)"
}
export -f kernel_tests model_tests sanitize bench demo cuda_path

if [ -z "$kbuild" ]; then
  note_step "kernels vs CPU twins on the GPU" "NOT RUN (nothing built)"
else
  run_step "kernels vs CPU twins on the GPU" 150 kernel_tests
fi
if [ "$full_build" -eq 1 ]; then
  run_step "whole model vs CPU (host/cuda)" 180 model_tests
else
  note_step "whole model vs CPU (host/cuda)" "NOT BUILT (the whole project was not built)"
fi
for tool in memcheck racecheck; do
  if [ -z "$kbuild" ]; then
    note_step "compute-sanitizer $tool" "NOT RUN (nothing built)"
  elif [ -z "$sanitizer" ]; then
    note_step "compute-sanitizer $tool" "NOT RUN (compute-sanitizer not found)"
  else
    run_step "compute-sanitizer $tool" 200 sanitize "$tool"
  fi
done
if [ "$full_build" -eq 1 ]; then
  run_step "--device cuda path vs cpu" 150 cuda_path
  run_step "lethe bench --device cuda (l1b)" 150 bench
  run_step "demo (tools/demo.sh)" 240 demo
else
  note_step "--device cuda path vs cpu" "NOT BUILT (the whole project was not built)"
  note_step "lethe bench --device cuda (l1b)" "NOT BUILT (the whole project was not built)"
  note_step "demo (tools/demo.sh)" "NOT BUILT (the whole project was not built)"
fi

# ---- the table ----------------------------------------------------------------------------------
{
  w=6
  for st in "${statuses[@]}"; do [ "${#st}" -gt "$w" ] && w=${#st}; done
  [ "$w" -le 72 ] || w=72
  echo
  printf '%-34s  %-*s  %7s\n' "step" "$w" "status" "seconds"
  for i in "${!names[@]}"; do
    printf '%-34s  %-*s  %7s\n' "${names[$i]}" "$w" "${statuses[$i]}" "${seconds[$i]}"
  done
  echo
  if [ "$failed" -eq 0 ]; then
    echo "result: PASS (every step that ran passed), $(elapsed)s"
  else
    echo "result: FAIL, $(elapsed)s"
  fi
  [ "$unrun" -eq 0 ] || echo "incomplete: $unrun step(s) not run within the ${budget}s budget"
  echo "logs: $logdir (suite.log, summary.txt, steps.tar.gz)"
} | tee "$logdir/summary.txt"
rm -f "$status_file"
tar -C "$logdir" -czf "$logdir/steps.tar.gz" steps
[ "${LETHE_GPU_SUITE_KEEP_STEP_LOGS:-0}" = 1 ] || rm -rf "$logdir/steps"
exec >&- 2>&-
wait "$tee_pid" # suite.log complete before the exit
exit "$failed"
