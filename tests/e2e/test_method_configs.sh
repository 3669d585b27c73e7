#!/usr/bin/env bash
# Every recipe of configs/methods/ runs end to end on the demo data (the real stories260K model,
# TOFU's forget01 and the first 40 retain99 pairs; idknll's forget set, and idkdpo's preferred
# set, with refusal answers from `lethe tokenize --answers`): 2 steps each, model.h5 written, finite losses in metrics.jsonl;
# and `lethe unlearn --help` lists every method with its defaults.
# usage: test_method_configs.sh LETHE MODELS_DIR REPO WORKDIR   (Debian's /usr/bin/python3)
set -euo pipefail
lethe="$1"; models="$2/stories260K"; repo="$3"; work="$4"
rm -rf "$work"; mkdir -p "$work"; work=$(cd "$work" && pwd)
py=/usr/bin/python3
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
fail() { echo "FAIL: $*" >&2; exit 1; }

m="$work/m.h5"
"$lethe" convert --from llama2c "$models/stories260K.bin" --tokenizer "$models/tok512.bin" \
  --out "$m" >/dev/null
"$lethe" tokenize --model "$m" --input "$repo/data/tofu/forget01.jsonl" --out "$work/forget.h5" \
  >/dev/null
"$lethe" tokenize --model "$m" --input "$repo/data/tofu/forget01.jsonl" \
  --answers "$repo/data/tofu/idontknow.jsonl" --out "$work/forget_idk.h5" >/dev/null
"$lethe" tokenize --model "$m" --input "$repo/data/tofu/retain99_first400.jsonl" --first 40 \
  --out "$work/retain.h5" >/dev/null

help=$("$lethe" unlearn --help)
n=0
for cfg in "$repo"/configs/methods/*.yaml; do
  name=$(basename "$cfg" .yaml)
  grep -q "^  $name " <<<"$help" || fail "lethe unlearn --help does not list $name"
  forget="$work/forget.h5"; [ "$name" = idknll ] && forget="$work/forget_idk.h5"
  alt=(); [ "$name" = idkdpo ] && alt=(data.forget_alt="$work/forget_idk.h5")
  "$lethe" unlearn "$cfg" model="$m" data.forget="$forget" data.retain="$work/retain.h5" \
    "${alt[@]}" out="$work/$name" train.max_steps=2 train.batch_size=8 --device cpu \
    >"$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; fail "configs/methods/$name.yaml"; }
  [ -s "$work/$name/model.h5" ] || fail "$name: no model.h5"
  $py - "$work/$name/metrics.jsonl" "$name" <<'PY' || fail "$name: metrics"
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 2, len(lines)
for l in lines:
    assert all(math.isfinite(l[k]) for k in ("loss", "forget_loss", "grad_norm")), l
print(f"ok: {sys.argv[2]:9s} 2 steps, loss {lines[0]['loss']:.4f} -> {lines[1]['loss']:.4f}")
PY
  n=$((n + 1))
done
[ "$n" -ge 9 ] || fail "only $n method configs"
# task_vector keeps its fine-tuned copy and names both steps in the result's provenance
[ -s "$work/task_vector/finetuned.h5" ] || fail "task_vector: no finetuned.h5"
"$lethe" info "$work/task_vector/model.h5" | grep -q "task_vector_scale *1$" ||
  fail "task_vector: no task_vector_scale in the provenance"
echo "PASS: $n method configs run end to end"
