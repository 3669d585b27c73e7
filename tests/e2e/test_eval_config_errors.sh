#!/usr/bin/env bash
# `lethe eval CONFIG.yaml` errors: each bad config fails with a non-zero exit and a message naming
# the config file and the key (the nearest valid key for a typo, the path of a missing file),
# and leaves an existing OUT/eval.json and OUT/report.html byte for byte as they were. A good
# config still runs afterwards and rewrites them.
# usage: test_eval_config_errors.sh LETHE SOURCE_DIR WORKDIR
set -euo pipefail
shopt -s lastpipe # expect_error runs at the end of pipes and counts in this shell
lethe="$1"; src="$2"; work="$3"
rm -rf "$work"; mkdir -p "$work"; work=$(cd "$work" && pwd)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
fail() { echo "FAIL: $*" >&2; exit 1; }

m="$work/m.h5"
"$lethe" convert --from llama2c "$src/models/stories260K/stories260K.bin" \
  --tokenizer "$src/models/stories260K/tok512.bin" --out "$m" >/dev/null
tofu="$src/data/tofu"
out="$work/out"
good() { # good [EXTRA YAML LINES]: a small valid config on the TOFU sets
  cat <<Y
title: "config errors"
out: "$out"
models:
  - {name: base, role: target, path: "$m"}
tofu:
  forget: "$tofu/forget01_perturbed.json"
  world_facts: "$tofu/world_facts_perturbed.json"
  max_samples: 3
generation: {max_new_tokens: 8}
Y
}
good >"$work/good.yaml"
# The good config also runs every part of the evaluation once on a few samples (MUSE sets and
# attacks, the three probes), so the sanitizer build covers them.
cat >>"$work/good.yaml" <<Y
muse:
  forget_text: "$tofu/forget01_perturbed.json"
  holdout_text: "$tofu/holdout01.json"
  knowmem_retain: "$tofu/retain_perturbed.json"
  prefix_tokens: 8
  max_new_tokens: 8
  max_samples: 4
probes:
  relearn: {steps: 1, fraction: 0.5, batch_size: 2}
  in_context: {source: answer}
  neighbour: [world_facts]
Y
"$lethe" eval "$work/good.yaml" >"$work/good.log" 2>&1 || { cat "$work/good.log"; fail "the good config failed"; }
[ -s "$out/eval.json" ] && [ -s "$out/report.html" ] || fail "the good config wrote no eval.json/report.html"
for key in tofu.forget.truth_ratio muse.verbmem_forget muse.mia.min_k_pp.auc muse.knowmem_retain \
           probe.relearn.after.prob probe.in_context.rouge_l_recall neighbour.world_facts.truth_ratio; do
  grep -q "\"$key\": [-0-9]" "$out/eval.json" || fail "the good config's eval.json has no number for $key"
done
sum_before=$(cat "$out/eval.json" "$out/report.html" | sha256sum)

n=0
expect_error() { # expect_error NAME "FRAGMENT" < config
  local name="$1" want="$2" cfg="$work/$1.yaml"
  cat >"$cfg"
  if "$lethe" eval "$cfg" >"$work/$name.log" 2>&1; then fail "$name: succeeded"; fi
  grep -qF -- "$want" "$work/$name.log" ||
    fail "$name: the message does not contain '$want': $(cat "$work/$name.log")"
  grep -qF -- "$cfg" "$work/$name.log" || fail "$name: the message does not name $cfg"
  [ "$(cat "$out/eval.json" "$out/report.html" | sha256sum)" = "$sum_before" ] ||
    fail "$name: eval.json or report.html changed"
  n=$((n + 1))
}
{ good; echo "probs: {}"; } | expect_error typo_top "unknown key 'probs' (did you mean 'probes'?)"
good | sed 's/max_samples/max_sample/' | expect_error typo_tofu "tofu: unknown key 'max_sample' (did you mean 'max_samples'?)"
good | sed "s#world_facts_perturbed.json#nowhere.json#" | expect_error missing_set "tofu.world_facts: no such file"
good | sed "s#path: \"$m\"#path: \"$work/none.h5\"#" | expect_error missing_model "models[0]: no such file"
good | sed 's/role: target/role: teacher/' | expect_error bad_role "models[0].role 'teacher' is not one of"
good | sed 's/name: base/name: "a\/b"/' | expect_error bad_name "models[0].name 'a/b'"
printf 'title: x\nout: "%s"\nmodels: []\n' "$out" | expect_error no_models "models must be a list"
printf 'title: x\nout: "%s"\nmodels:\n  - {name: a, path: "%s"}\n' "$out" "$m" | expect_error nothing "nothing to evaluate"
{ good; echo "gold: nobody"; } | expect_error bad_gold "gold: no model named 'nobody'"
{ good; printf 'probes:\n  relearn: {steps: 0}\n'; } | expect_error relearn_steps "probes.relearn.steps must be a number in [1,"
printf 'models: [\n' | expect_error not_yaml "YAML syntax error"
{ good; echo "template: \"Q: {question}\""; } | expect_error bad_template "template must contain {answer}"
cat >"$work/uneven.json" <<'J'
[{"question": "Q1?", "answer": "A one.", "paraphrased_answer": "One A.", "perturbed_answer": ["B one.", "C one."]},
 {"question": "Q2?", "answer": "A two.", "paraphrased_answer": "Two A.", "perturbed_answer": ["B two."]}]
J
echo "ok: $n bad configs fail clearly and leave eval.json and report.html unchanged"
# A data file whose records disagree on the number of perturbed answers: the message names it.
good | sed "s#$tofu/forget01_perturbed.json#$work/uneven.json#" >"$work/uneven.yaml"
if "$lethe" eval "$work/uneven.yaml" >"$work/uneven.log" 2>&1; then fail "uneven: succeeded"; fi
grep -qF "$work/uneven.json: record 2 has 1 perturbed answers, record 1 has 2" "$work/uneven.log" ||
  fail "uneven: $(cat "$work/uneven.log")"
[ "$(cat "$out/eval.json" "$out/report.html" | sha256sum)" = "$sum_before" ] ||
  fail "uneven: eval.json or report.html changed"
echo "ok: a set with uneven perturbed answers is refused, naming the file and the record"

# A model name used twice.
cat >"$work/dup.yaml" <<Y
out: "$out"
models:
  - {name: base, path: "$m"}
  - {name: base, path: "$m"}
tofu: {forget: "$tofu/forget01_perturbed.json", max_samples: 2}
Y
if "$lethe" eval "$work/dup.yaml" >"$work/dup.log" 2>&1; then fail "dup: succeeded"; fi
grep -qF "models[1].name 'base' is used twice" "$work/dup.log" || fail "dup: $(cat "$work/dup.log")"
echo "ok: a duplicate model name is refused"
