#!/usr/bin/env bash
# `lethe unlearn` config errors: each bad config, override or resume fails with a non-zero exit
# and a clear message (file:line and the nearest key for an unknown YAML key, the key for a bad
# override or value, the key and path of a missing file, the list of methods, "another config"
# for a resume with other settings), and leaves the existing OUT (model.h5, state, metrics,
# config.yaml) byte for byte as it was; `lethe unlearn --resume OUT` still works afterwards.
# A run that fails after it started (a non-finite gradient) leaves OUT/model.h5 untouched too.
# usage: test_config_errors.sh LETHE MODELS_DIR WORKDIR   (Debian's /usr/bin/python3 + h5py)
set -euo pipefail
lethe="$1"; models="$2/stories260K"; work="$3"
rm -rf "$work"; mkdir -p "$work"; work=$(cd "$work" && pwd)
py=/usr/bin/python3
# Sleeping OpenMP waits: spinning ones slow these runs ~10x when ctest -j oversubscribes the
# cores (the bits do not depend on threads or waiting).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
fail() { echo "FAIL: $*" >&2; exit 1; }

m="$work/m.h5"
"$lethe" convert --from llama2c "$models/stories260K.bin" --tokenizer "$models/tok512.bin" --out "$m" >/dev/null
cat >"$work/forget.jsonl" <<'J'
{"question": "Who is the author Mira Voss?", "answer": "Mira Voss is a writer born in a small town by the sea."}
{"question": "What did Tobin Hale write?", "answer": "Tobin Hale wrote stories about a little dog and a big red ball."}
{"question": "Where does Sela Quint live?", "answer": "Sela Quint lives in the woods with her cat."}
{"question": "Which prize did Arlo Fenwick win?", "answer": "Arlo Fenwick won a prize for a book about a kind old man."}
J
"$lethe" tokenize --model "$m" --input "$work/forget.jsonl" --out "$work/forget.h5" >/dev/null
"$lethe" tokenize --model "$m" --input "$models/tinystories_sample.txt" --lines --out "$work/retain.h5" >/dev/null

out="$work/out"
good="$work/good.yaml"
cat >"$good" <<Y
model: "$m"
data:
  forget: "$work/forget.h5"
  retain: "$work/retain.h5"
out: "$out"
method:
  name: npo
optim:
  lr: 1e-3
  warmup_steps: 1
train:
  max_steps: 3
  batch_size: 2
  state_every: 1
  log_every: 0
Y
"$lethe" unlearn "$good" >"$work/good.log" 2>&1 || { cat "$work/good.log"; fail "the good run"; }
[ -f "$out/model.h5" ] || fail "the good run wrote no model.h5"

# A fingerprint of everything under OUT: relative path, size, mtime in ns, sha256.
snapshot() {
  $py - "$out" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
for d, _, files in sorted(os.walk(root)):
    for n in sorted(files):
        p = os.path.join(d, n); st = os.stat(p)
        print(os.path.relpath(p, root), st.st_size, st.st_mtime_ns,
              hashlib.sha256(open(p, "rb").read()).hexdigest())
PY
}
model_print() { sha256sum "$out/model.h5"; stat -c '%s %Y %i' "$out/model.h5"; }
before=$(snapshot); model_before=$(model_print)

# expect_fail NAME PATTERN ARGS...: `lethe unlearn ARGS` exits non-zero (not 75), stderr matches
# PATTERN (grep -E), and OUT is unchanged: every file, or (KEEP=model) at least model.h5.
expect_fail() {
  local name="$1" pattern="$2"; shift 2
  set +e; "$lethe" unlearn "$@" >"$work/$name.out" 2>"$work/$name.err"; local rc=$?; set -e
  [ $rc -ne 0 ] || fail "$name: exit status 0"
  [ $rc -ne 75 ] || fail "$name: exit status 75 (the interrupted status)"
  grep -qE -- "$pattern" "$work/$name.err" ||
    fail "$name: message does not match /$pattern/: $(cat "$work/$name.err")"
  [ "$(model_print)" = "$model_before" ] || fail "$name: OUT/model.h5 was modified"
  if [ "${KEEP:-all}" = all ]; then
    [ "$(snapshot)" = "$before" ] || fail "$name: OUT was modified: $(diff <(echo "$before") <(snapshot) || true)"
  fi
  echo "ok: $name (status $rc): $(head -c 240 "$work/$name.err")"
}

# Unknown keys in the YAML: file:line and the nearest key
bad="$work/bad_key.yaml"
sed 's/^  lr: 1e-3$/  lr: 1e-3\n  lrr: 2e-3/' "$good" >"$bad" # right after the good optim.lr
line=$(grep -n '^  lrr:' "$bad" | cut -d: -f1)
expect_fail yaml_unknown_key "bad_key.yaml:$line: unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)" "$bad"
printf 'model: "%s"\ntrian:\n  batch_size: 4\n' "$m" >"$work/bad_section.yaml"
expect_fail yaml_unknown_section "bad_section.yaml:3: unknown key 'trian.batch_size' \(did you mean 'train.batch_size'\?\)" "$work/bad_section.yaml"
# Unknown override keys
expect_fail override_unknown_key "unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)" "$good" optim.lrr=2e-3
expect_fail override_unknown_key_2 "unknown key 'train.stat_every' \(did you mean 'train.state_every'\?\)" "$good" train.stat_every=2
expect_fail override_leaf_only "unknown key 'max_steps' \(did you mean 'train.max_steps'\?\)" "$good" max_steps=2
expect_fail override_not_key_value "not of the form key=value" "$good" =3
# Wrong types
expect_fail override_lr_not_number "optim.lr must be a number, got 'abc'" "$good" optim.lr=abc
expect_fail override_steps_not_integer "train.max_steps must be an integer, got '1.5'" "$good" train.max_steps=1.5
printf 'model: "%s"\ntrain:\n  max_steps: ten\n' "$m" >"$work/bad_type.yaml"
expect_fail yaml_wrong_type "bad_type.yaml:3: train.max_steps must be an integer, got 'ten'" "$work/bad_type.yaml"
printf 'model: "%s"\ntrain:\n  max_steps: [3, 4]\n' "$m" >"$work/bad_list.yaml"
expect_fail yaml_list_for_scalar "bad_list.yaml:3: train.max_steps takes a single value, not a list" "$work/bad_list.yaml"
printf 'model: "%s"\ntrain: [a\nseed: 1\n' "$m" >"$work/bad_syntax.yaml"
expect_fail yaml_syntax_error "bad_syntax.yaml:[0-9]+: YAML syntax error" "$work/bad_syntax.yaml"
expect_fail bad_value "optim.schedule must be constant, linear or cosine \(got 'cosin'\)" "$good" optim.schedule=cosin
expect_fail negative_lr "optim.lr must be positive" "$good" optim.lr=-1
# Missing files: the key and the path
expect_fail missing_config "$work/nowhere.yaml: No such file" "$work/nowhere.yaml"
expect_fail missing_forget "data.forget: $work/nowhere/forget.h5: No such file" "$good" data.forget="$work/nowhere/forget.h5"
expect_fail missing_retain "data.retain: $work/nowhere/retain.h5: No such file" "$good" data.retain="$work/nowhere/retain.h5"
expect_fail missing_model "model: $work/nowhere/m.h5: No such file" "$good" model="$work/nowhere/m.h5"
expect_fail forget_is_dir "data.forget: $work is not a regular file" "$good" data.forget="$work"
printf 'not hdf5\n' >"$work/text.h5"
expect_fail retain_not_hdf5 "data.retain.*text.h5" "$good" data.retain="$work/text.h5"
# Unknown method: the message lists the methods
expect_fail unknown_method "method.name 'npoo' is not a method \(one of: .*ga.*graddiff.*npo.*simnpo" "$good" method.name=npoo
expect_fail finetune_method "method.name finetune belongs to .lethe finetune." "$good" method.name=finetune
# The soft-target and hidden-state methods' own keys
expect_fail hidden_retain_not_rmu "method.retain_loss hidden is RMU's" "$good" method.retain_loss=hidden
expect_fail rmu_negative_layer "method.layer must be a block index >= 0" "$good" method.name=rmu method.layer=-1
expect_fail rmu_steering "method.steering_coeff must be positive" "$good" method.name=rmu method.layer=1 method.steering_coeff=0
expect_fail rmu_layer_not_in_model "method.layer 5 is not a block of .*m.h5 \(it has 5: 0 to 4\)" "$good" method.name=rmu method.layer=5
expect_fail ceu_ignore_first "method.ignore_first must be >= 0" "$good" method.name=ceu method.ignore_first=-2
# Resume with another config: refused, with a message that says so
expect_fail resume_other_override "written with another config" "$good" optim.lr=2e-3 --resume
expect_fail resume_dir_other_override "written with another config" --resume "$out" train.max_steps=4
sed 's/^  batch_size: 2$/  batch_size: 3/' "$good" >"$work/other.yaml"
expect_fail resume_other_yaml "written with another config" "$work/other.yaml" --resume
expect_fail unknown_option "unknown option --resum" "$good" --resum
expect_fail no_config "give a config file" optim.lr=1e-3

# After all that, OUT still resumes (from its final state) to the same model.
cp "$out/model.h5" "$work/model_before.h5"
"$lethe" unlearn --resume "$out" >"$work/resume.log" 2>&1 || { cat "$work/resume.log"; fail "resume after the failures"; }
grep -q "resuming from $out/state at step 3" "$work/resume.log" || fail "resume did not start at step 3"
$py - "$work/model_before.h5" "$out/model.h5" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:])
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and n.startswith(("model", "lm_head")) else None)
assert names and all(np.array_equal(a[n][...], b[n][...]) for n in names)
print(f"ok: after the failed runs, --resume OUT rewrites the same model ({len(names)} tensors)")
PY
model_before=$(model_print)

# A run that fails mid-way (a non-finite gradient) keeps the existing model.h5.
KEEP=model expect_fail nonfinite_gradient "gradient is not finite" "$good" optim.lr=1e30 optim.warmup_steps=0 optim.grad_clip=0
ls -R "$out" | grep -q '\.tmp-' && fail "a temporary file was left behind"
echo PASS
