#!/usr/bin/env bash
# Every method of configs/methods/ side by side on the demo's data: each recipe unlearns TOFU
# forget01 from the demo's target model (stories260K fine-tuned on retain + forget) with the same
# budget, then one `lethe eval` scores the target, every unlearned model and the gold standard on
# TOFU, MUSE and the probes: the comparison table (summary.txt), eval.json and report.html.
# usage: tools/compare_methods.sh [DEMO_OUT [OUT]]   after tools/demo.sh (default demo-out/;
#        OUT default DEMO_OUT/methods). LETHE=path/to/lethe (default: build/lethe).
# The budget is the demo's NPO run's (stories260K needs ~100x a 7B model's learning rate):
# optim.lr 1e-3, 10 epochs of batch 16 over the 40 forget pairs, one epoch of warm-up; every
# other key is the recipe's own (configs/methods/M.yaml), so the methods keep their published
# defaults. rmu steers block 1 of the 5 (as deep as the WMDP recipe's 7 of 32).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
demo="${1:-$root/demo-out}"
out="${2:-$demo/methods}"
lethe="${LETHE:-$root/build/lethe}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
for f in "$demo/target/model.h5" "$demo/gold/model.h5" "$demo/data/forget.h5" \
         "$demo/data/retain.h5" "$demo/stories260K.h5"; do
  [ -s "$f" ] || { echo "compare_methods: $f is missing: run tools/demo.sh first" >&2; exit 2; }
done
mkdir -p "$out"
log="$out/compare.log"
: >"$log"
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# idknll learns the forget questions with refusal answers; idkdpo prefers them (paired by index).
"$lethe" tokenize --model "$demo/stories260K.h5" --input "$demo/data/forget.jsonl" \
  --answers "$root/data/tofu/idontknow.jsonl" --out "$out/forget_idk.h5" >>"$log" 2>&1

methods=()
for cfg in "$root"/configs/methods/*.yaml; do
  name=$(basename "$cfg" .yaml)
  forget="$demo/data/forget.h5"
  extra=()
  case "$name" in
    idknll) forget="$out/forget_idk.h5" ;;
    idkdpo) extra=(data.forget_alt="$out/forget_idk.h5") ;;
    rmu) extra=(method.layer=1) ;;
  esac
  t0=$(date +%s.%N)
  printf '%-12s' "$name"
  if ! "$lethe" unlearn "$cfg" model="$demo/target/model.h5" data.forget="$forget" \
      data.retain="$demo/data/retain.h5" out="$out/$name" "${extra[@]}" optim.lr=1e-3 \
      train.epochs=10 train.batch_size=16 train.micro_batch_size=8 optim.warmup_epochs=1 \
      train.state_every=0 train.log_every=0 --device cpu >>"$log" 2>&1; then
    echo "FAILED"; tail -n 20 "$log" >&2; exit 1
  fi
  echo "$(secs "$t0" "$(date +%s.%N)") s"
  methods+=("$name")
done

# The demo's eval config with every model: target first, the unlearned ones, gold last.
{
  echo "title: \"TOFU forget01 from stories260K: every method (configs/methods/) at one budget\""
  echo "out: $out/eval"
  echo "models:"
  echo "  - {name: target, role: target, path: $demo/target/model.h5}"
  for name in "${methods[@]}"; do
    echo "  - {name: $name, role: unlearned, path: $out/$name/model.h5, metrics_jsonl: $out/$name/metrics.jsonl}"
  done
  echo "  - {name: gold, role: gold, path: $demo/gold/model.h5}"
  sed -n '/^generation:/,$p' "$root/configs/eval/demo.yaml" | sed -e "s#data/tofu/#$root/data/tofu/#g"
} >"$out/eval.yaml"
t0=$(date +%s.%N)
printf '%-12s' "eval"
"$lethe" eval "$out/eval.yaml" --out "$out/eval" --device cpu >>"$log" 2>&1 ||
  { echo "FAILED"; tail -n 20 "$log" >&2; exit 1; }
echo "$(secs "$t0" "$(date +%s.%N)") s"
echo
cat "$out/eval/summary.txt"
echo
echo "report: $out/eval/report.html; every command's output: $log"
