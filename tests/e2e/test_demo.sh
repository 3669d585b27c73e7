#!/usr/bin/env bash
# README command (1)'s unlearning demo, end to end on the real stories260K model: runs
# tools/demo.sh itself (with this build's lethe and its own output directory) and checks what it
# shows: the target model learned the forget set (its forget NLL is below the gold-standard
# model's, which never saw it); NPO raises the forget NLL past the gold standard's; the retain
# NLL stays within 10% of the target's. Then every method of configs/methods/ at the same budget
# (tools/compare_methods.sh), compared in one evaluation.
# usage: test_demo.sh LETHE SOURCE_DIR WORKDIR
set -euo pipefail
lethe="$1"; src="$2"; work="$3"
rm -rf "$work"; mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

LETHE="$lethe" LETHE_DEMO_OUT="$work" bash "$src/tools/demo.sh"

results="$work/results.tsv"
[ -s "$results" ] || fail "the demo wrote no $results"
get() { # get MODEL COLUMN (2 forget, 3 retain)
  local v
  v=$(awk -F'\t' -v m="$1" -v c="$2" '$1 == m { print $c }' "$results")
  [[ "$v" =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] ||
    fail "$1: no number in column $2 of $results"
  echo "$v"
}
tf=$(get target 2); tr=$(get target 3)
gf=$(get gold 2)
uf=$(get npo 2); ur=$(get npo 3)
check() { # check DESCRIPTION AWK_CONDITION
  if awk -v tf="$tf" -v tr="$tr" -v gf="$gf" -v uf="$uf" -v ur="$ur" "BEGIN { exit !($2) }"; then
    echo "ok: $1"
  else
    fail "$1 (target forget $tf retain $tr; gold forget $gf; unlearned forget $uf retain $ur)"
  fi
}
check "the target learned the forget set: target forget NLL $tf < gold forget NLL $gf" \
      "tf < gf"
check "NPO unlearned it: unlearned forget NLL $uf > gold forget NLL $gf" "uf > gf"
check "retain kept: |unlearned $ur - target $tr| / target <= 10%" \
      "(ur > tr ? ur - tr : tr - ur) / tr <= 0.10"

# The outputs the demo promises.
for d in target gold npo; do
  for f in model.h5 metrics.jsonl config.yaml state; do
    [ -e "$work/$d/$f" ] || fail "the demo did not write $d/$f"
  done
done
echo "ok: target/, gold/ and npo/ hold model.h5, metrics.jsonl, config.yaml and state/"

# Step 5: the comparison evaluation (lethe eval configs/eval/demo.yaml) and its report.
ev="$work/eval/eval.json"
[ -s "$ev" ] || fail "the demo wrote no $ev"
[ -s "$work/eval/report.html" ] || fail "the demo wrote no eval/report.html"
[ -s "$work/eval/summary.txt" ] || fail "the demo wrote no eval/summary.txt"
/usr/bin/python3 - "$ev" <<'PY' || fail "eval.json does not show what the demo promises"
import json, math, sys
d = json.load(open(sys.argv[1]))
v = d["values"]
def val(m, k):
    x = v[m].get(k)
    assert x is not None and math.isfinite(x), f"{m}: {k} missing"
    return x
checks = [
    # The gold model is the reference of forget quality and PrivLeak: KS of a sample against
    # itself has p = 1, and its PrivLeak is 0 by definition.
    ("gold forget quality is 1", val("gold", "tofu.forget_quality") == 1.0),
    ("gold PrivLeak is 0", abs(val("gold", "muse.privleak")) < 1e-9),
    # The target memorised the forget answers: more likely than under the gold model, and the
    # membership-inference attacks separate forget from held-out authors.
    ("target forget P > gold forget P", val("target", "tofu.forget.prob") > val("gold", "tofu.forget.prob")),
    ("target Min-K% AUC > gold's", val("target", "muse.mia.min_k.auc") > val("gold", "muse.mia.min_k.auc")),
    ("target forget quality < unlearned's", val("target", "tofu.forget_quality") < val("npo", "tofu.forget_quality")),
    # NPO removed most of it: forget probability and VerbMem fall below the target's.
    ("unlearned forget P < target's", val("npo", "tofu.forget.prob") < val("target", "tofu.forget.prob")),
    ("unlearned VerbMem < target's", val("npo", "muse.verbmem_forget") < val("target", "muse.verbmem_forget")),
    # Retain kept within 10% (the retain eval set is the retain training set).
    ("unlearned retain P within 10% of target's",
     abs(val("npo", "tofu.retain.prob") - val("target", "tofu.retain.prob")) <= 0.1 * val("target", "tofu.retain.prob")),
]
for m in ("target", "npo", "gold"):
    for k in ("tofu.model_utility", "probe.relearn.after.prob", "probe.in_context.prob",
              "neighbour.real_authors.prob_normalised", "muse.knowmem_retain"):
        val(m, k)
bad = [name for name, ok in checks if not ok]
for name, ok in checks:
    print(("ok: " if ok else "FAIL: ") + name)
sys.exit(1 if bad else 0)
PY
grep -q "Forget quality" "$work/eval/summary.txt" || fail "summary.txt has no TOFU table"

# The demo's own report, rendered by headless Chromium: the forget quality and PrivLeak of every
# model appear in the rendered text as the report prints them (%.4g).
timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run \
  --user-data-dir="$work/chromium-profile" --no-pdf-header-footer \
  --print-to-pdf="$work/report.pdf" "file://$work/eval/report.html" >"$work/chromium.log" 2>&1 ||
  fail "chromium could not render eval/report.html: $(tail -3 "$work/chromium.log")"
pdftotext "$work/report.pdf" "$work/report.txt"
/usr/bin/python3 - "$ev" "$work/report.txt" <<'PY' || fail "the rendered report lacks numbers of eval.json"
import json, sys
d = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read().replace("\u2212", "-")
missing = [f"{m}: {k} = {d['values'][m][k]:.4g}" for m in d["values"]
           for k in ("tofu.forget_quality", "muse.privleak", "tofu.model_utility")
           if f"{d['values'][m][k]:.4g}" not in text]
print("ok: the rendered report shows forget quality, PrivLeak and model utility of every model"
      if not missing else "missing: " + "; ".join(missing))
sys.exit(1 if missing else 0)
PY
echo "ok: eval.json, report.html and summary.txt written with the expected comparisons"

# Every recipe of configs/methods/ at the demo's budget, side by side (tools/compare_methods.sh):
# each one lowers the forget answers' probability below the target's, and the table has them all.
LETHE="$lethe" bash "$src/tools/compare_methods.sh" "$work" "$work/methods" >"$work/methods.log" 2>&1 ||
  { tail -30 "$work/methods.log"; fail "tools/compare_methods.sh"; }
/usr/bin/python3 - "$work/methods/eval/eval.json" "$src/configs/methods" <<'PY' ||
import json, math, os, sys
v = json.load(open(sys.argv[1]))["values"]
methods = sorted(f[:-5] for f in os.listdir(sys.argv[2]) if f.endswith(".yaml"))
missing = [m for m in methods if m not in v]
assert not missing, f"eval.json lacks {missing}"
target = v["target"]["tofu.forget.prob"]
for m in methods:
    for k in ("tofu.forget_quality", "tofu.model_utility", "muse.verbmem_forget", "muse.privleak"):
        assert math.isfinite(v[m][k]), f"{m}: {k} = {v[m][k]}"
    p = v[m]["tofu.forget.prob"]
    assert p < target, f"{m}: forget P {p:.4g} not below the target's {target:.4g}"
print(f"ok: {len(methods)} methods compared; each one's forget P below the target's {target:.4g}")
PY
  fail "the method comparison"
