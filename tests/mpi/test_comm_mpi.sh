#!/usr/bin/env bash
# The MPI communicator under mpirun: collectives bit-identical to a rank-order reference on every
# rank and across two runs, and a failing rank ending the whole job quickly with a clear message.
# Usage: test_comm_mpi.sh DRIVER NP collectives | DRIVER NP fail exit|kill|error
set -uo pipefail
driver="$1" np="$2" mode="$3" how="${4:-}"

if ! command -v mpirun >/dev/null 2>&1; then
  echo "SKIP: mpirun not found (install openmpi-bin, tools/setup.sh)"
  exit 77
fi
if [ "${LETHE_TEST_HAVE_MPI:-1}" = 0 ]; then
  echo "SKIP: this build has no MPI (configure found no libopenmpi-dev)"
  exit 77
fi
# Open MPI refuses root without these; containers have no ptrace for single-copy shared memory.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
# LeakSanitizer (LETHE_SANITIZE builds): Open MPI's start-up allocations live until exit. The
# suppressions match library names, which needs the slow unwinder (Open MPI has no frame
# pointers) and components kept loaded (a dlclose'd one shows as <unknown module>).
export LSAN_OPTIONS="suppressions=$(dirname "$0")/lsan_openmpi.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
export OMPI_MCA_mca_base_component_disable_dlclose=1
run=(mpirun -np "$np" --oversubscribe "$driver")
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

case "$mode" in
collectives)
  for i in 1 2; do
    if ! timeout 300 "${run[@]}" collectives 20240607 >"$tmp/out$i" 2>"$tmp/err$i"; then
      echo "FAIL: run $i exited non-zero"; cat "$tmp/out$i" "$tmp/err$i"; exit 1
    fi
    cat "$tmp/out$i"
    grep -v '^comm:' "$tmp/err$i" >&2 || true
  done
  grep -h '^rank' "$tmp/out1" | sort >"$tmp/r1"
  grep -h '^rank' "$tmp/out2" | sort >"$tmp/r2"
  [ "$(wc -l <"$tmp/r1")" -eq "$np" ] || { echo "FAIL: expected $np rank lines"; exit 1; }
  grep -q MISMATCH "$tmp/r1" "$tmp/r2" && { echo "FAIL: a result differs from the reference"; exit 1; }
  # every rank the same replicated digest
  [ "$(awk '{print $9}' "$tmp/r1" | sort -u | wc -l)" -eq 1 ] || {
    echo "FAIL: ranks hold different bits"; exit 1; }
  cmp -s "$tmp/r1" "$tmp/r2" || { echo "FAIL: the two runs differ"; diff "$tmp/r1" "$tmp/r2"; exit 1; }
  grep -q 'from OMPI_COMM_WORLD_\*' "$tmp/err1" || { echo "FAIL: no start-up line"; cat "$tmp/err1"; exit 1; }
  grep -h '^comm:' "$tmp/err1"
  echo "PASS: $np ranks, bit-identical to the rank-order reference on every rank and across two runs"
  ;;
fail)
  start=$(date +%s)
  timeout 120 "${run[@]}" fail "$how" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  took=$(( $(date +%s) - start ))
  cat "$tmp/out" "$tmp/err"
  [ "$rc" -ne 124 ] || { echo "FAIL: the job hung (killed by timeout after 120 s)"; exit 1; }
  [ "$rc" -ne 0 ] || { echo "FAIL: mpirun exited 0 although rank 1 failed"; exit 1; }
  [ "$took" -le 60 ] || { echo "FAIL: took $took s to end"; exit 1; }
  grep -q 'finished' "$tmp/out" && { echo "FAIL: a rank ran to the end"; exit 1; }
  case "$how" in
    # comm_abort's own line; Open MPI 4.1's "MPI_ABORT was invoked" help text is sometimes lost
    # to its show_help race ("Data unpack would read past end of buffer").
    error) want='rank 1: simulated failure: a step returned an error' ;;
    *)     want='exited on signal 9|non-zero status|returned[[:space:]]+a non-zero exit code' ;;
  esac
  tr '\n' ' ' <"$tmp/err" | grep -Eq "$want" || { echo "FAIL: no message matching /$want/"; exit 1; }
  grep -q 'rank 1: failing on purpose' "$tmp/err" || { echo "FAIL: rank 1 did not say"; exit 1; }
  echo "PASS: rank 1 failed ($how); mpirun exited $rc after $took s with a message matching /$want/"
  ;;
*) echo "usage: $0 DRIVER NP collectives|fail HOW" >&2; exit 2 ;;
esac
