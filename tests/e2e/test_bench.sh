#!/usr/bin/env bash
# `lethe bench`: the JSON of s260k GA and NPO runs has every documented key, positive times, a
# split of the step that adds up to the mean step, the PaLM FLOPs per token recomputed here from
# the preset, MFU = flops_per_token x tokens/s / peak; its temporary directory is gone afterwards;
# bad inputs (an unknown preset, --steps 0, --device tpu, --device cuda without a GPU) fail with clear messages; with
# --peer /usr/bin/python3 (Debian's torch) the peer's tokens/s and lethe's ratio are reported.
# usage: test_bench.sh LETHE CONFIGS_DIR WORKDIR
set -euo pipefail
lethe="$1"; configs="$2"; work="$3"
rm -rf "$work"; mkdir -p "$work/tmp"; work=$(cd "$work" && pwd)
py=/usr/bin/python3
# Sleeping OpenMP waits: spinning ones slow the run several-fold under ctest -j.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
# bench's temporary directory goes here, so the test sees that it is removed.
export TMPDIR="$work/tmp"
fail() { echo "FAIL: $*" >&2; exit 1; }

# check_json FILE METHOD TOKENS_PER_STEP STEPS WARMUP PEER_STATUS
check_json() {
  $py - "$@" "$configs/models/s260k.yaml" <<'PY'
import json, sys
path, method, tokens_per_step, steps, warmup, peer_status, preset = sys.argv[1:]
r = json.load(open(path))
def fail(msg):
    sys.exit(f"FAIL ({method}): {msg}")
keys = ["bench", "version", "device", "device_requested", "device_name", "model", "model_source",
        "config", "method", "batch", "seq", "steps", "warmup", "threads", "seed", "params",
        "matmul_params", "tokens_per_step", "median_ms", "min_ms", "mean_ms", "max_ms", "step_ms",
        "tokens_per_s", "split_ms", "peak_rss_mib", "peak_device_mib", "flops_per_token",
        "peak_flops",
        "peak_source", "sgemm_gflops", "mfu", "openblas_core", "load_avg", "peer", "notes"]
missing = [k for k in keys if k not in r]
if missing:
    fail(f"keys missing: {missing}")
if r["peak_device_mib"] is not None:
    fail(f"peak_device_mib {r['peak_device_mib']} on the CPU (want null)")
split_keys = ["forward", "classifier_forward", "backward", "classifier_backward", "optimizer",
              "data", "other"]
if sorted(r["split_ms"]) != sorted(split_keys):
    fail(f"split_ms keys {sorted(r['split_ms'])}")
if sorted(r["peer"]) != ["message", "python", "status", "variants"]:
    fail(f"peer keys {sorted(r['peer'])}")
if r["bench"] != "lethe" or r["device"] != "cpu" or r["method"] != method or r["model"] != "s260k":
    fail(f"bench/device/method/model: {r['bench']} {r['device']} {r['method']} {r['model']}")
got = (r["steps"], r["warmup"], len(r["step_ms"]), r["threads"])
if got != (int(steps), int(warmup), int(steps), 1):
    fail(f"steps {r['steps']} warmup {r['warmup']} step_ms {r['step_ms']} threads {r['threads']}")
if r["tokens_per_step"] != int(tokens_per_step):
    fail(f"tokens_per_step {r['tokens_per_step']}, expected {tokens_per_step}")
for k in ("median_ms", "min_ms", "mean_ms", "max_ms", "tokens_per_s", "peak_rss_mib",
          "peak_flops", "mfu", "flops_per_token"):
    if not (isinstance(r[k], (int, float)) and r[k] > 0):
        fail(f"{k} = {r[k]} is not positive")
if not all(t > 0 for t in r["step_ms"]) or not all(g > 0 for g in r["sgemm_gflops"].values()):
    fail("a step time or an sgemm rate is not positive")
lo, hi = r["min_ms"], r["max_ms"]
if not (lo <= r["median_ms"] <= hi and lo <= r["mean_ms"] <= hi):
    fail("min <= median, mean <= max does not hold")
if any(v < 0 for v in r["split_ms"].values()):
    fail(f"a negative part: {r['split_ms']}")
for part in ("forward", "classifier_forward", "backward", "classifier_backward", "optimizer"):
    if r["split_ms"][part] <= 0:
        fail(f"split_ms.{part} = {r['split_ms'][part]}: the timers did not run")
measured = sum(v for k, v in r["split_ms"].items() if k != "other")
tol = 0.01 + 1e-6 * r["mean_ms"]
if measured > r["mean_ms"] + tol:
    fail(f"the measured parts ({measured:.4f} ms) exceed the mean step ({r['mean_ms']:.4f} ms)")
if abs(measured + r["split_ms"]["other"] - r["mean_ms"]) > tol:
    fail(f"the split adds up to {measured + r['split_ms']['other']:.4f}, not {r['mean_ms']:.4f}")
rate = r["tokens_per_step"] / (r["median_ms"] / 1e3)
if abs(r["tokens_per_s"] - rate) > 1e-6 * rate:
    fail("tokens_per_s is not tokens_per_step / median step")
# PaLM (Chowdhery et al. 2022, appendix B): 6N + 12 L H hd T per token, N in matmuls.
c = {}
for line in open(preset):
    line = line.split("#", 1)[0].strip()
    if ":" in line:
        k, v = (s.strip() for s in line.split(":", 1))
        c[k] = v
D, F, L = int(c["hidden_size"]), int(c["intermediate_size"]), int(c["num_hidden_layers"])
H, KV, V = int(c["num_attention_heads"]), int(c["num_key_value_heads"]), int(c["vocab_size"])
hd = int(c.get("head_dim", D // H))
T = r["seq"]
N = L * (D * H * hd + 2 * D * KV * hd + H * hd * D + 3 * D * F) + V * D
flops = 6 * N + 12 * L * H * hd * T
if r["matmul_params"] != N or abs(r["flops_per_token"] - flops) > 1e-9 * flops:
    fail(f"flops_per_token {r['flops_per_token']} / N {r['matmul_params']}, "
         f"PaLM gives {flops} / {N}")
mfu = r["flops_per_token"] * r["tokens_per_s"] / r["peak_flops"]
if abs(r["mfu"] - mfu) > 1e-6 * mfu:
    fail(f"mfu {r['mfu']} is not flops_per_token x tokens/s / peak = {mfu}")
if abs(r["peak_flops"] / 1e9 - max(r["sgemm_gflops"].values())) > 1e-6 * r["peak_flops"] / 1e9:
    fail("peak_flops is not the best measured sgemm")
if r["peer"]["status"] != peer_status:
    fail(f"peer status {r['peer']['status']} ({r['peer']['message']}), expected {peer_status}")
if peer_status == "ok":
    own = r["peer"]["variants"].get("own")
    if not own or not own["tokens_per_s"] > 0:
        fail(f"no tokens/s of the own torch model: {r['peer']}")
    ratio = r["tokens_per_s"] / own["tokens_per_s"]
    if abs(own["lethe_ratio"] - ratio) > 1e-6 * ratio:
        fail("lethe_ratio is not lethe's tokens/s over the peer's")
print(f"{method}: {r['tokens_per_s']:.0f} tokens/s, step {r['median_ms']:.1f} ms, MFU "
      f"{100 * r['mfu']:.1f}% of {r['peak_flops'] / 1e9:.0f} GFLOP/s, peer {r['peer']['status']}")
PY
}

no_leftovers() {
  [ -z "$(ls -A "$TMPDIR")" ] || fail "bench left files behind: $(ls -A "$TMPDIR")"
}

for method in ga npo; do
  "$lethe" bench --preset s260k --method "$method" --steps 2 --warmup 1 --threads 1 --peer none \
    --json >"$work/$method.json" 2>"$work/$method.err" ||
    { cat "$work/$method.err"; fail "bench $method"; }
  tokens=2048; [ "$method" = npo ] && tokens=4096 # B x T, and the retain batch for npo
  check_json "$work/$method.json" "$method" "$tokens" 2 1 skipped
  no_leftovers
done

# The readable table names the parts and the MFU.
"$lethe" bench --preset s260k --method ga --batch 2 --seq 64 --steps 1 --warmup 0 --threads 1 \
  --peer none >"$work/table.txt" 2>/dev/null || fail "bench without --json"
for want in "tokens/s" "classifier backward" "MFU" "peak resident memory" "skipped"; do
  grep -q "$want" "$work/table.txt" || { cat "$work/table.txt"; fail "the table lacks '$want'"; }
done

# bad_input WANT ARGS...: fails (non-zero), prints nothing on stdout, names the problem.
bad_input() {
  local want="$1"; shift
  if "$lethe" bench "$@" >"$work/bad.out" 2>"$work/bad.err"; then fail "bench $* succeeded"; fi
  [ ! -s "$work/bad.out" ] || fail "bench $* printed on stdout: $(cat "$work/bad.out")"
  grep -qF -- "$want" "$work/bad.err" || { cat "$work/bad.err"; fail "bench $*: no '$want'"; }
}
bad_input "unknown preset 's260'; did you mean 's260k'?" --preset s260 --peer none
bad_input "--steps 0: give 1 to 1024 timed steps" --steps 0 --peer none
bad_input "device.name (--device) must be cpu, cuda or auto (got 'tpu')" --device tpu --peer none
bad_input "device.dtype must be bf16 or fp32 (got 'fp16')" --device-dtype fp16 --peer none
# Without a GPU, --device cuda names the runtime's reason (tests/e2e/test_cuda_path.sh runs the
# device step under the CPU execution harness).
if ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  bad_input "--device cuda: cudaGetDeviceCount failed" --device cuda --peer none
fi
bad_input "--method npx is not a method" --method npx --peer none
bad_input "--seq 4096 is more than the model's max_position_embeddings 512" --seq 4096 --peer none
no_leftovers

# The peer in the same invocation, one step: Debian's torch 1.13 (own torch.nn model;
# transformers is reported when importable).
"$lethe" bench --preset s260k --method ga --steps 1 --warmup 0 --threads 1 \
  --peer /usr/bin/python3 --json >"$work/peer.json" 2>"$work/peer.err" ||
  { cat "$work/peer.err"; fail "bench with the peer"; }
check_json "$work/peer.json" ga 2048 1 0 ok
no_leftovers
echo "PASS"
