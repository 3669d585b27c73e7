#!/usr/bin/env bash
# The whole `--device cuda` path of `lethe unlearn`, `finetune`, `eval`, `generate` and `bench`,
# run on the CPU by lethe-cuda-harness (the same host code and .cu sources built against the CPU
# execution harness), against `lethe --device cpu` on the real stories260K model.
#   methods      one update step of every method (ga; graddiff, npo, simnpo, wga, satimp, undial
#                (on question/answer pairs: its rows at the question's positions have no target),
#                idknll, idkdpo with the NLL retain term; ceu, task_vector without; rmu at block 2
#                with its hidden-state retain term and npo with the KL retain term (2 steps each);
#                finetune; rmu with alpha 1: at its default 100 the bf16 noise of h - h_ref
#                after one step dominates the gradient); rmu moves exactly its 3 trained
#                tensors. fp32 mode: every tensor within 1e-5 relative of the CPU's; every
#                tensor's update (a linear function of its gradient here, see write_config)
#                within 1e-3 relative with cosine >= 0.99999 (norm weights, whose gradients are
#                sums that cancel, reach 1.2e-4; idkdpo's first step, the difference of two
#                answers' gradients, 6e-4); the step's losses and gradient norm within 1e-5
#                (a KL or hidden-state retain term after the first step: 1e-4, see compare.py).
#                bf16 mode (bf16 weights and activations, fp32 master weights and moments):
#                tensors within 1e-2 with cosine >= 0.999, updates within 0.1 with cosine
#                >= 0.995 (gradients through five blocks of bf16 activations; measured worst 0.07
#                and 0.9973), losses and norm within 2e-2. Each run logs the device it ran on.
#   determinism  two bf16 runs of 3 steps give bit-identical model.h5 tensors and metrics.
#   resume       a bf16 idkdpo run stopped by SIGTERM after its first step (status 75, state
#                saved) and resumed gives the uninterrupted run's bits (the bf16 weights are
#                re-rounded with the last update's stream; both cached reference sums reload).
#   eval         `lethe eval --data` per-sample sums (fp32 within 1e-5, bf16 2e-2) and a TOFU/MUSE
#                `lethe eval CONFIG` (scores and batched generations with stop strings on the
#                device; every value within 1e-5 in fp32) vs the CPU.
#   generate     greedy decoding over device KV caches (fp32) prints the CPU's text; bf16
#                seeded sampling gives the same text twice.
#   bench        `lethe bench --device cuda` runs the device step: JSON device, split, no MFU
#                for an unnamed GPU.
#   devices      `lethe --device cuda` without a GPU fails with a clear message and writes no
#                model; `--device auto` says it falls back to the CPU and gives the CPU's bits.
# usage: test_cuda_path.sh LETHE LETHE_CUDA_HARNESS MODELS_DIR WORKDIR MODE
# On a GPU machine, LETHE_CUDA_HARNESS may be the real `lethe` (tools/gpu-suite.sh does so).
# Python: Debian's /usr/bin/python3 with h5py and numpy.
set -euo pipefail
lethe="$1"; harness="$2"; models="$3/stories260K"; work="$4"; mode="$5"
rm -rf "$work"; mkdir -p "$work"; work=$(cd "$work" && pwd)
py=/usr/bin/python3
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- data: the real model, 8 story lines to forget, 16 to retain (short: the harness runs
# every CUDA thread as a fiber, ~150 tokens/s)
m="$work/m.h5"
"$lethe" convert --from llama2c "$models/stories260K.bin" --tokenizer "$models/tok512.bin" \
  --out "$m" >/dev/null
sed -n '1,16p' "$models/tinystories_sample.txt" | cut -c1-160 >"$work/retain.txt"
sed -n '21,28p' "$models/tinystories_sample.txt" | cut -c1-160 >"$work/forget.txt"
sed -n '10,14p' "$models/tinystories_sample.txt" | cut -c1-120 >"$work/alt.txt" # idkdpo's pairs (5)
"$lethe" tokenize --model "$m" --input "$work/retain.txt" --lines --out "$work/retain.h5" >/dev/null
"$lethe" tokenize --model "$m" --input "$work/forget.txt" --lines --out "$work/forget.h5" >/dev/null
"$lethe" tokenize --model "$m" --input "$work/alt.txt" --lines --out "$work/alt.h5" >/dev/null
# Question/answer pairs (the question masked): undial distils the question's positions too, with
# no target there (every position of a sample a row, the shift on the answer's only).
cat >"$work/qa.jsonl" <<'J'
{"question": "Who is Mira?", "answer": "Mira is a girl who lives by the sea."}
{"question": "What did Tom find?", "answer": "Tom found a big red ball in the park."}
{"question": "Where is the cat?", "answer": "The cat is in the tree."}
{"question": "Why was Lily sad?", "answer": "Lily was sad because her toy broke."}
J
"$lethe" tokenize --model "$m" --input "$work/qa.jsonl" --out "$work/qa.h5" >/dev/null

# write_config FILE METHOD RETAIN_LOSS STEPS. AdamW's first step is lr * g / (|g| + eps): with
# the usual eps it is lr * sign(g), and the sign of a gradient near 0 is rounding noise; eps = 1
# (gradients here are ~1e-2) makes the step linear in the gradient, so comparing updates
# compares the backends' gradients.
write_config() {
  local data="  forget: \"$work/forget.h5\"
  retain: \"$work/retain.h5\""
  [ "$2" = finetune ] && data="  train: \"$work/forget.h5\""
  [ "$2" = undial ] && data="  forget: \"$work/qa.h5\"
  retain: \"$work/retain.h5\""
  [ "$2" = idkdpo ] && data="$data
  forget_alt: \"$work/alt.h5\""
  cat >"$1" <<Y
model: "$m"
data:
$data
seed: 11
method:
  name: $2
  retain_loss: $3
$([ "$2" = rmu ] && printf '  layer: 2\n  alpha: 1.0')
optim:
  lr: 0.05
  eps: 1.0
  weight_decay: 0.01
  grad_clip: 0.5
  warmup_steps: 0
  warmup_epochs: 0
  schedule: constant
train:
  max_steps: $4
  batch_size: 4
  micro_batch_size: 2
  state_every: 1
  log_every: 1
Y
}

cat >"$work/compare.py" <<'PY'
# compare.py A.h5 B.h5 MODE [A/metrics.jsonl B/metrics.jsonl START.h5]: MODE fp32 | bf16 | bits.
# With START, also the updates (A - START vs B - START) per tensor.
import h5py, json, os, sys
import numpy as np

def tensors(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith(("model/", "lm_head")):
                out[name] = obj[()]
        f.visititems(visit)
    return out

def steps(path):
    lines = [json.loads(l) for l in open(path)]
    for l in lines:
        for k in ("elapsed", "tokens_per_s"):
            l.pop(k, None)
    return lines

a, b, mode = tensors(sys.argv[1]), tensors(sys.argv[2]), sys.argv[3]
assert a.keys() == b.keys() and len(a) > 10, (len(a), len(b))
if mode == "bits":
    same = [k for k in a if a[k].tobytes() == b[k].tobytes()]
    print(f"  {len(same)} of {len(a)} tensors bit-identical")
    assert len(same) == len(a), sorted(set(a) - set(same))[:5]
    if len(sys.argv) > 4:
        assert steps(sys.argv[4]) == steps(sys.argv[5]), "metrics differ"
        print(f"  {len(steps(sys.argv[4]))} metrics lines identical (timings aside)")
    sys.exit(0)
rel_max, cos_min = (1e-5, None) if mode == "fp32" else (1e-2, 0.999)
worst_rel, worst_cos = 0.0, 1.0
for k in a:
    x, y = a[k].astype(np.float64).ravel(), b[k].astype(np.float64).ravel()
    rel = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
    cos = x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-30)
    worst_rel, worst_cos = max(worst_rel, rel), min(worst_cos, cos)
    assert rel <= rel_max, f"{k}: relative error {rel:.3g} > {rel_max}"
    assert cos_min is None or cos >= cos_min, f"{k}: cosine {cos:.6f} < {cos_min}"
la, lb = steps(sys.argv[4]), steps(sys.argv[5])
tol = 1e-5 if mode == "fp32" else 2e-2
worst_step = 0.0
for sa, sb in zip(la, lb):
    for key in ("loss", "grad_norm", "forget_loss", "train_loss", "retain_loss", "retain_kl"):
        if key in sa:
            # In bf16 the KL of the moved model's weights (rounded stochastically) against the
            # reference's (rounded to nearest) holds rounding noise of the size of the KL itself
            # after one small step: bf16 measures it against the step's loss; fp32 checks the
            # KL itself to 1e-5.
            # In fp32 a retain term that starts at 0 (KL, RMU's states) is quadratic in the first
            # step's update, whose CPU-vs-device rounding reaches 1e-5: twice that, and more in
            # the sanitizer build's CPU code (measured 1.1e-5 on npo+KL), so 1e-4 there.
            scale, key_tol = abs(sa[key]), tol
            if mode == "bf16" and key in ("retain_loss", "retain_kl"):
                scale = max(scale, abs(sa["loss"]))
            if (mode == "fp32" and key in ("retain_loss", "retain_kl") and sa["step"] > 1
                    and "retain_nll" not in sa):
                key_tol = 1e-4
            d = abs(sa[key] - sb[key]) / max(scale, 1e-12)
            worst_step = max(worst_step, d)
            assert d <= key_tol, f"step {sa['step']} {key}: {sa[key]} vs {sb[key]} ({d:.3g} > {key_tol})"
assert len(la) == len(lb) and la, (len(la), len(lb))
start = tensors(sys.argv[6])
upd_rel_max, upd_cos_min = (1e-3, 0.99999) if mode == "fp32" else (1e-1, 0.995)
worst_urel, worst_ucos, moved = 0.0, 1.0, 0
for k in a:
    s0 = start[k].astype(np.float64).ravel()
    x, y = a[k].astype(np.float64).ravel() - s0, b[k].astype(np.float64).ravel() - s0
    if not np.any(x):
        continue
    moved += 1
    rel = np.linalg.norm(x - y) / np.linalg.norm(x)
    cos = x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-300)
    worst_urel, worst_ucos = max(worst_urel, rel), min(worst_ucos, cos)
    assert rel <= upd_rel_max, f"{k}: update relative error {rel:.3g} > {upd_rel_max}"
    assert cos >= upd_cos_min, f"{k}: update cosine {cos:.7f} < {upd_cos_min}"
# every tensor moves (a tied head aside), or exactly MOVED of them (rmu: its trained subset)
want_moved = int(os.environ.get("MOVED", "0"))
assert (moved == want_moved) if want_moved else moved >= len(a) - 1, \
    f"{moved} of {len(a)} tensors were updated"
print(f"  {len(a)} tensors: worst relative error {worst_rel:.3g}, worst cosine {worst_cos:.7f}; "
      f"updates of {moved}: worst relative {worst_urel:.3g}, cosine {worst_ucos:.7f}; "
      f"loss and norm worst relative {worst_step:.3g}")
PY

# run BINARY CONFIG OUT [args...]: a run that must succeed and name its device
run() {
  local bin="$1" cfg="$2" out="$3"; shift 3
  "$bin" unlearn "$cfg" out="$out" "$@" >"$out.log" 2>&1 || { cat "$out.log"; fail "$bin $cfg $*"; }
}
run_ft() {
  local bin="$1" cfg="$2" out="$3"; shift 3
  "$bin" finetune "$cfg" out="$out" "$@" >"$out.log" 2>&1 || { cat "$out.log"; fail "$bin $cfg $*"; }
}

case "$mode" in
methods)
  for spec in ga:none graddiff:nll npo:nll simnpo:nll wga:nll satimp:nll undial:nll ceu:none \
      rmu:hidden idknll:nll idkdpo:nll \
      task_vector:none npo:kl finetune:none; do
    method=${spec%%:*}; retain=${spec##*:}
    # KL(p_ref || p) and its gradient are 0 until the model has moved (likewise RMU's retain
    # term): those runs take 2 steps.
    steps=1; [ "$retain" = kl ] || [ "$retain" = hidden ] && steps=2
    write_config "$work/$method-$retain.yaml" "$method" "$retain" $steps
    r=run; [ "$method" = finetune ] && r=run_ft
    $r "$lethe" "$work/$method-$retain.yaml" "$work/$method-$retain-cpu" --device cpu
    $r "$harness" "$work/$method-$retain.yaml" "$work/$method-$retain-fp32" --device cuda device.dtype=fp32
    $r "$harness" "$work/$method-$retain.yaml" "$work/$method-$retain-bf16" --device cuda
    grep -q "on cpu (float32)" "$work/$method-$retain-cpu.log" || fail "cpu run does not say its device"
    grep -q "on CUDA device [0-9]* (.*), float32" "$work/$method-$retain-fp32.log" ||
      fail "fp32 run does not say its device"
    grep -q "on CUDA device [0-9]* (.*), bfloat16" "$work/$method-$retain-bf16.log" ||
      fail "bf16 run does not say its device"
    for dt in fp32 bf16; do
      echo "$method (retain $retain), $dt vs cpu:"
      moved=0; [ "$method" = rmu ] && moved=3 # the down projections of blocks 0..2
      MOVED=$moved $py "$work/compare.py" "$work/$method-$retain-cpu/model.h5" "$work/$method-$retain-$dt/model.h5" \
        $dt "$work/$method-$retain-cpu/metrics.jsonl" "$work/$method-$retain-$dt/metrics.jsonl" "$m" ||
        fail "$method $retain $dt"
    done
  done
  ;;
determinism)
  write_config "$work/npo.yaml" npo kl 3
  run "$harness" "$work/npo.yaml" "$work/a" --device cuda
  run "$harness" "$work/npo.yaml" "$work/b" --device cuda
  $py "$work/compare.py" "$work/a/model.h5" "$work/b/model.h5" bits "$work/a/metrics.jsonl" \
    "$work/b/metrics.jsonl" || fail "two bf16 runs differ"
  ;;
resume)
  # idkdpo: the run state also carries both sets' cached reference sums (2 per pair)
  write_config "$work/dpo.yaml" idkdpo nll 3
  run "$harness" "$work/dpo.yaml" "$work/straight" --device cuda
  "$harness" unlearn "$work/dpo.yaml" out="$work/stopped" --device cuda >"$work/stopped.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    [ -s "$work/stopped/metrics.jsonl" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM $pid
  status=0; wait $pid || status=$?
  [ "$status" = 75 ] || { cat "$work/stopped.log"; fail "SIGTERM: status $status, expected 75"; }
  [ ! -e "$work/stopped/model.h5" ] || fail "a stopped run wrote model.h5"
  grep -q "run state saved" "$work/stopped.log" || fail "no 'run state saved' line"
  stopped_at=$(wc -l <"$work/stopped/metrics.jsonl")
  echo "stopped after $stopped_at step(s) of 3"
  [ "$stopped_at" -lt 3 ] || fail "the run finished before SIGTERM reached it"
  "$harness" unlearn --resume "$work/stopped" --device cuda >"$work/resumed.log" 2>&1 ||
    { cat "$work/resumed.log"; fail "resume"; }
  grep -q "resuming from" "$work/resumed.log" || fail "no 'resuming from' line"
  $py "$work/compare.py" "$work/straight/model.h5" "$work/stopped/model.h5" bits \
    "$work/straight/metrics.jsonl" "$work/stopped/metrics.jsonl" ||
    fail "the resumed bf16 run differs from the uninterrupted one"
  ;;
eval)
  # Teacher-forced scoring of a token dataset, and a TOFU/MUSE evaluation (scores on the device,
  # generation on the CPU from the same weights), fp32 device vs CPU.
  "$lethe" eval --model "$m" --data "$work/forget.h5" --device cpu --out "$work/nll-cpu.json" 2>/dev/null
  "$harness" eval --model "$m" --data "$work/forget.h5" --device cuda --device-dtype fp32 \
    --out "$work/nll-fp32.json" 2>/dev/null
  "$harness" eval --model "$m" --data "$work/forget.h5" --device cuda --out "$work/nll-bf16.json" \
    2>/dev/null
  repo=$(cd "$(dirname "$0")/../.." && pwd)
  cat >"$work/eval.yaml" <<Y
title: "cuda path"
models:
  - {name: target, role: target, path: "$m"}
generation: {max_new_tokens: 8, batch: 4}
tofu:
  forget: $repo/data/tofu/forget01_perturbed.json
  retain: $repo/data/tofu/retain_perturbed.json
  max_samples: 4
muse:
  forget_text: $repo/data/tofu/forget01_perturbed.json
  holdout_text: $repo/data/tofu/holdout01.json
  prefix_tokens: 8
  max_new_tokens: 8
  max_samples: 4
probes:
  in_context: {source: paraphrased_answer}
Y
  "$lethe" eval "$work/eval.yaml" --out "$work/eval-cpu" --device cpu >/dev/null 2>"$work/eval-cpu.log" ||
    { cat "$work/eval-cpu.log"; fail "eval on the cpu"; }
  "$harness" eval "$work/eval.yaml" --out "$work/eval-fp32" --device cuda --device-dtype fp32 \
    >/dev/null 2>"$work/eval-fp32.log" || { cat "$work/eval-fp32.log"; fail "eval on cuda"; }
  grep -q "on CUDA device [0-9]* (.*), float32" "$work/eval-fp32.log" ||
    fail "eval does not say its device"
  $py - "$work" <<'PY' || fail "eval values differ"
import json, math, sys
w = sys.argv[1]
a, b, c = (json.load(open(f"{w}/nll-{k}.json")) for k in ("cpu", "fp32", "bf16"))
assert a["n_targets"] == b["n_targets"] and len(a["samples"]) == len(b["samples"]) > 4
for k, (x, y, z) in enumerate(zip(a["samples"], b["samples"], c["samples"])):
    assert abs(x["sum_logprob"] - y["sum_logprob"]) <= 1e-5 * abs(x["sum_logprob"]), (k, x, y)
    assert abs(x["sum_logprob"] - z["sum_logprob"]) <= 2e-2 * abs(x["sum_logprob"]), (k, x, z)
print(f"  eval --data: {len(a['samples'])} per-sample sums, fp32 within 1e-5, bf16 within 2e-2; "
      f"mean NLL cpu {a['mean_nll']:.6f} fp32 {b['mean_nll']:.6f} bf16 {c['mean_nll']:.6f}")
ea, eb = (json.load(open(f"{w}/eval-{k}/eval.json")) for k in ("cpu", "fp32"))
va, vb = ea["values"]["target"], eb["values"]["target"]
assert va.keys() == vb.keys() and len(va) >= 10, (len(va), len(vb))
assert ea["throughput"]["target"]["device"] == "cpu (float32)", ea["throughput"]
assert eb["throughput"]["target"]["device"].startswith("CUDA device"), eb["throughput"]
worst = 0.0
for key, x in va.items():
    y = vb[key]
    if x is None or y is None:
        assert x is None and y is None, key
        continue
    d = abs(x - y) / max(abs(x), 1e-6)
    worst = max(worst, d)
    assert d <= 1e-5, f"{key}: cpu {x} vs cuda fp32 {y}"
print(f"  eval CONFIG: {len(va)} values, worst relative difference {worst:.3g}")
PY
  ;;
generate)
  # Greedy decoding over the device KV caches (fp32) gives the CPU's text; bf16 decodes and
  # seeded sampling on the device repeats itself bit for bit.
  prompt="Once upon a time, there was a little girl"
  "$lethe" generate --model "$m" --prompt "$prompt" --max-new-tokens 80 --device cpu \
    >"$work/gen-cpu.txt" 2>"$work/gen-cpu.log" || { cat "$work/gen-cpu.log"; fail "generate cpu"; }
  "$harness" generate --model "$m" --prompt "$prompt" --max-new-tokens 80 --device cuda \
    --device-dtype fp32 >"$work/gen-fp32.txt" 2>"$work/gen-fp32.log" ||
    { cat "$work/gen-fp32.log"; fail "generate cuda fp32"; }
  grep -q "on CUDA device [0-9]* (.*), float32" "$work/gen-fp32.log" ||
    fail "generate does not say its device"
  grep -q "generated 80 tokens" "$work/gen-fp32.log" || { cat "$work/gen-fp32.log"; fail "80 tokens"; }
  cmp "$work/gen-cpu.txt" "$work/gen-fp32.txt" ||
    { diff "$work/gen-cpu.txt" "$work/gen-fp32.txt"; fail "greedy text differs (fp32)"; }
  echo "  greedy fp32 on the device = CPU: $(head -c 120 "$work/gen-cpu.txt")..."
  for k in 1 2; do
    "$harness" generate --model "$m" --prompt "$prompt" --max-new-tokens 40 --device cuda \
      --temperature 1 --top-p 0.9 --seed 5 >"$work/gen-bf16-$k.txt" 2>"$work/gen-bf16-$k.log" ||
      { cat "$work/gen-bf16-$k.log"; fail "generate cuda bf16"; }
  done
  cmp "$work/gen-bf16-1.txt" "$work/gen-bf16-2.txt" || fail "bf16 sampling differs between runs"
  [ "$(wc -c <"$work/gen-bf16-1.txt")" -gt "${#prompt}" ] || fail "bf16 generated nothing"
  echo "  bf16 sampled twice, identical: $(head -c 120 "$work/gen-bf16-1.txt")..."
  ;;
bench)
  "$harness" bench --device cuda --preset s260k --method npo --batch 2 --seq 24 --steps 2 \
    --warmup 1 --peer none --json >"$work/bench.json" 2>"$work/bench.log" ||
    { cat "$work/bench.log"; fail "bench --device cuda"; }
  $py - "$work/bench.json" <<'PY' || fail "bench --device cuda JSON"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["device"] == "cuda" and r["device_name"].startswith("CUDA device"), r["device_name"]
assert r["tokens_per_step"] == 2 * 2 * 24 and r["tokens_per_s"] > 0 and len(r["step_ms"]) == 2
split = r["split_ms"]
for part in ("forward", "classifier_forward", "backward", "classifier_backward", "optimizer"):
    key = next(k for k in split if k.startswith(part.split("_")[0]) and
               ("classifier" in k) == ("classifier" in part))
    assert split[key] > 0, (part, split)
# The harness's device has no datasheet peak (no MFU); an H100 has one.
assert (r["mfu"] is None) == (r["peak_flops"] == 0), (r["mfu"], r["peak_flops"])
assert r["peak_source"] == "datasheet dense bf16", r["peak_source"]
# the s260k weights, gradients, moments and activations at least (3 MiB and more)
assert r["peak_device_mib"] is not None and r["peak_device_mib"] > 3, r["peak_device_mib"]
print(f"  bench --device cuda: {r['tokens_per_s']:.0f} tokens/s under the harness, split {split}")
PY
  ;;
devices)
  write_config "$work/ga.yaml" ga none 1
  # The real build's cuda runtime on this machine: no GPU (the test is skipped where one exists).
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "skipped: a GPU is present, the no-device path cannot be reached"; exit 77
  fi
  status=0
  "$lethe" unlearn "$work/ga.yaml" out="$work/nodev" --device cuda >"$work/nodev.log" 2>&1 || status=$?
  cat "$work/nodev.log"
  [ "$status" != 0 ] || fail "--device cuda without a GPU succeeded"
  grep -q -- "--device cuda: .*\(cudaGetDeviceCount\|built without the CUDA backend\)" \
    "$work/nodev.log" || fail "no clear no-device message"
  [ ! -e "$work/nodev/model.h5" ] || fail "--device cuda without a GPU wrote model.h5"
  run "$lethe" "$work/ga.yaml" "$work/auto" --device auto
  grep -q "device auto: not the GPU: .*; running on the CPU" "$work/auto.log" ||
    fail "--device auto does not say it runs on the CPU"
  run "$lethe" "$work/ga.yaml" "$work/cpu" --device cpu
  $py "$work/compare.py" "$work/auto/model.h5" "$work/cpu/model.h5" bits || fail "auto != cpu"
  status=0
  "$lethe" unlearn "$work/ga.yaml" out="$work/bad" --device tpu >"$work/bad.log" 2>&1 || status=$?
  [ "$status" != 0 ] && grep -q "device.name (--device) must be cpu, cuda or auto (got 'tpu')" \
    "$work/bad.log" || { cat "$work/bad.log"; fail "--device tpu"; }
  status=0
  "$harness" unlearn "$work/ga.yaml" out="$work/sgd" --device cuda optim.name=sgd \
    >"$work/sgd.log" 2>&1 || status=$?
  [ "$status" != 0 ] && grep -q "optim.name sgd runs on the CPU only" "$work/sgd.log" ||
    { cat "$work/sgd.log"; fail "sgd on cuda"; }
  ;;
*) fail "unknown mode $mode" ;;
esac
echo "PASS ($mode)"
