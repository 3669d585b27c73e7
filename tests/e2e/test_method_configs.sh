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
  # stories260K has 5 blocks: rmu's default block 7 is not one (its error is tested below)
  [ "$name" = rmu ] && alt=(method.layer=2)
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
[ "$n" -ge 12 ] || fail "only $n method configs"
# rmu trains only the down projections of blocks layer-2..layer by default, and says when its
# block is not one of the model's
$py - "$m" "$work/rmu/model.h5" <<'PY' || fail "rmu: trained tensors"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
changed = []
def visit(name, obj):
    if isinstance(obj, h5py.Dataset) and name in b and obj.ndim >= 1 and obj.dtype.kind == "f":
        if not np.array_equal(obj[()], b[name][()]):
            changed.append(name.replace("/", "."))  # HDF5 groups: model/layers/0/...
a.visititems(visit)
want = {f"model.layers.{l}.mlp.down_proj.weight" for l in (0, 1, 2)}
assert set(changed) == want, changed
print(f"ok: rmu changed exactly {sorted(changed)}")
PY
if "$lethe" unlearn "$repo/configs/methods/rmu.yaml" model="$m" data.forget="$work/forget.h5" \
    data.retain="$work/retain.h5" out="$work/rmu_bad" train.max_steps=1 --device cpu \
    >"$work/rmu_bad.log" 2>&1; then
  fail "rmu with method.layer 7 on a 5-block model ran"
fi
grep -q "method.layer 7 is not a block of" "$work/rmu_bad.log" ||
  { cat "$work/rmu_bad.log"; fail "rmu: no clear error for a missing block"; }
# task_vector keeps its fine-tuned copy and names both steps in the result's provenance
[ -s "$work/task_vector/finetuned.h5" ] || fail "task_vector: no finetuned.h5"
"$lethe" info "$work/task_vector/model.h5" | grep -q "task_vector_scale *1$" ||
  fail "task_vector: no task_vector_scale in the provenance"
echo "PASS: $n method configs run end to end"
