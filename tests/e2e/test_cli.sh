#!/usr/bin/env bash
# The command line on the real model: JSONL tokenization masks only completion tokens, seeded
# sampling is reproducible, init is deterministic, bf16/f16 storage keeps the model's quality,
# and every subcommand answers --help.
# usage: test_cli.sh LETHE MODELS_DIR CONFIGS_DIR WORKDIR   (uses Debian's /usr/bin/python3)
set -euo pipefail
lethe="$1"; models="$2/stories260K"; configs="$3"; work="$4"
rm -rf "$work"; mkdir -p "$work"
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }

m="$work/s.h5"
"$lethe" convert --from llama2c "$models/stories260K.bin" --tokenizer "$models/tok512.bin" --out "$m" >/dev/null

for c in info init convert tokenize eval generate; do
  "$lethe" "$c" --help | grep -q "usage: lethe $c" || fail "lethe $c --help"
done
echo "ok: every subcommand answers --help"

# JSONL: prompt tokens are context, completion tokens are targets; {"text"} is all targets.
cat >"$work/qa.jsonl" <<'J'
{"prompt": "Question: Who found the key?\nAnswer:", "completion": " The fox found it."}
{"text": "Once upon a time there was a cat."}

{"prompt": "Lily saw a", "completion": " big red ball"}
J
"$lethe" tokenize --model "$m" --input "$work/qa.jsonl" --out "$work/qa.h5" >/dev/null
$py - "$work/qa.h5" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
tok, off, mask = f["tokens"][...], f["offsets"][...], f["loss_mask"][...]
assert len(off) == 4, off
assert f.attrs["vocab_size"] == 512
for s in range(3):
    a, b = off[s], off[s + 1]
    assert tok[a] == 1 and mask[a] == 0, "each sample starts with a BOS that is not a target"
# sample 0: targets are exactly the trailing completion tokens, context the leading prompt ones
m0 = mask[off[0]:off[1]]
first = int(np.argmax(m0))
assert first > 5 and m0[first:].all() and not m0[:first].any(), m0
assert mask[off[1] + 1:off[2]].all(), "text samples: every token after BOS is a target"
print(f"ok: JSONL prompt/completion masks ({int(m0.sum())} completion targets of {len(m0)} tokens)")
PY
"$lethe" eval --model "$m" --data "$work/qa.h5" --out "$work/qa.json" 2>/dev/null
$py -c "
import json,sys; d=json.load(open(sys.argv[1]))
import h5py; f=h5py.File(sys.argv[2]); mask=f['loss_mask'][...]
assert d['n_targets']==int(mask.sum()), (d['n_targets'], mask.sum())
print('ok: eval counts exactly the masked targets:', d['n_targets'])" "$work/qa.json" "$work/qa.h5"

# Seeded sampling: same seed, same text; another seed, another text.
gen() { "$lethe" generate --model "$m" --prompt "Once upon a time" --max-new-tokens 60 --temperature 1.0 --seed "$1" 2>/dev/null; }
a=$(gen 1); b=$(gen 1); c=$(gen 2)
[ "$a" = "$b" ] || fail "sampling with the same seed differs"
[ "$a" != "$c" ] || fail "sampling with different seeds gives the same text"
echo "ok: seeded sampling is reproducible and seed-dependent"

# init: same preset and seed give identical tensors; another seed differs.
"$lethe" init --config "$configs/models/s260k.yaml" --seed 3 --out "$work/i1.h5" >/dev/null
"$lethe" init --config "$configs/models/s260k.yaml" --seed 3 --out "$work/i2.h5" >/dev/null
"$lethe" init --config "$configs/models/s260k.yaml" --seed 4 --out "$work/i3.h5" >/dev/null
$py - "$work/i1.h5" "$work/i2.h5" "$work/i3.h5" <<'PY'
import sys, h5py, numpy as np
def tensors(p):
    out = {}
    with h5py.File(p, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) and n.startswith("model") else None)
    return out
a, b, c = (tensors(p) for p in sys.argv[1:])
assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), "same seed differs"
assert not np.array_equal(a["model/layers/0/mlp/up_proj/weight"], c["model/layers/0/mlp/up_proj/weight"])
print("ok: init is deterministic per seed")
PY

# bf16 / f16 storage: the stories' mean NLL stays within 1% of fp32.
"$lethe" tokenize --model "$m" --input "$models/tinystories_sample.txt" --separator '<|endoftext|>' --out "$work/st.h5" >/dev/null
"$lethe" eval --model "$m" --data "$work/st.h5" --out "$work/f32.json" 2>/dev/null
for dt in bfloat16 float16; do
  "$lethe" convert --from llama2c "$models/stories260K.bin" --tokenizer "$models/tok512.bin" --dtype $dt --out "$work/$dt.h5" >/dev/null
  "$lethe" info "$work/$dt.h5" | grep -q "stored as $dt" || fail "$dt: info does not report the storage dtype"
  "$lethe" eval --model "$work/$dt.h5" --data "$work/st.h5" --out "$work/$dt.json" 2>/dev/null
  $py -c "
import json,sys; a=json.load(open(sys.argv[1]))['mean_nll']; b=json.load(open(sys.argv[2]))['mean_nll']
assert abs(a-b)/a < 0.01, (a,b); print(f'ok: {sys.argv[3]} storage mean NLL {b:.5f} vs float32 {a:.5f}')" "$work/f32.json" "$work/$dt.json" $dt
done

# TOFU's real file shapes give the same samples: one JSON array with prompt/response (forget01),
# one JSON array per line with question/answer (retain90, full), and the _perturbed records with
# extra fields; only the answer part (from the template's {answer} on) is a target.
cat >"$work/tofu_array.json" <<'J'
[
  {"prompt": "Who wrote The Blue Fox?", "response": "The Blue Fox was written by Ana Lopez."},
  {"prompt": "Where was Ana Lopez born?", "response": "Ana Lopez was born in Lima, Peru."},
  {"prompt": "What genre does Ana write?", "response": "She writes fantasy for children."}
]
J
cat >"$work/tofu_lines.json" <<'J'
[{"question":"Who wrote The Blue Fox?","answer":"The Blue Fox was written by Ana Lopez."},{"question":"Where was Ana Lopez born?","answer":"Ana Lopez was born in Lima, Peru."}]
[{"question":"What genre does Ana write?","answer":"She writes fantasy for children."}]
J
cat >"$work/tofu_perturbed.json" <<'J'
[{"question":"Who wrote The Blue Fox?","answer":"The Blue Fox was written by Ana Lopez.","paraphrased_answer":"Ana Lopez is its author.","perturbed_answer":["Tom Hill wrote it.","Mia Chen wrote it."],"paraphrased_question":"Who is the author of The Blue Fox?"},
 {"question":"Where was Ana Lopez born?","answer":"Ana Lopez was born in Lima, Peru.","paraphrased_answer":"Lima.","perturbed_answer":["Quito."],"paraphrased_question":"Birthplace?"},
 {"question":"What genre does Ana write?","answer":"She writes fantasy for children.","paraphrased_answer":"Fantasy.","perturbed_answer":["Horror."],"paraphrased_question":"Genre?"}]
J
for f in tofu_array tofu_lines tofu_perturbed; do
  "$lethe" tokenize --model "$m" --input "$work/$f.json" --out "$work/$f.h5" >/dev/null
done
$py - "$work" "$m" <<'PY'
import sys, h5py, numpy as np
w = sys.argv[1]
sets = {n: h5py.File(f"{w}/{n}.h5", "r") for n in ("tofu_array", "tofu_lines", "tofu_perturbed")}
ref = sets["tofu_array"]
for n, f in sets.items():
    for k in ("tokens", "offsets", "loss_mask"):
        assert np.array_equal(f[k][...], ref[k][...]), f"{n}: /{k} differs from the array file"
tok, off, mask = ref["tokens"][...], ref["offsets"][...], ref["loss_mask"][...]
assert len(off) == 4
for s in range(3):
    m = mask[off[s]:off[s + 1]]
    first = int(np.argmax(m))
    # "Question: ...\nAnswer:" is context; the answer tokens after it are all targets
    assert first > 8 and m[first:].all() and not m[:first].any(), (s, m)
print("ok: TOFU array, array-per-line and _perturbed files give identical samples; "
      "only answer tokens are targets")
PY
# --answers: each forget answer replaced by a seeded pick among TOFU's refusal lines (idknll).
repo=$(cd "$configs/.." && pwd)
for seed in 3 3 4; do
  "$lethe" tokenize --model "$m" --input "$repo/data/tofu/forget01.jsonl" \
    --answers "$repo/data/tofu/idontknow.jsonl" --answers-seed $seed --out "$work/idk$seed.h5" \
    >/dev/null
  [ "$seed" = 3 ] && cp "$work/idk3.h5" "$work/idk3a.h5"
done
if "$lethe" tokenize --model "$m" --input "$work/qa.jsonl" --answers "$repo/data/tofu/idontknow.jsonl" \
    --out "$work/idk_bad.h5" 2>"$work/idk_bad.err"; then
  echo "FAIL: --answers on prompt/completion records succeeded"; exit 1
fi
grep -q "record 1 is not a question/answer pair; --answers replaces" "$work/idk_bad.err" ||
  { cat "$work/idk_bad.err"; echo "FAIL: no clear --answers error"; exit 1; }
[ ! -e "$work/idk_bad.h5" ] || { echo "FAIL: a failed tokenize wrote its output"; exit 1; }
$py - "$work" "$repo" "$m" <<'PY'
import json, sys, h5py, numpy as np
w, repo, m = sys.argv[1:4]
lines = [l.rstrip("\r\n") for l in open(f"{repo}/data/tofu/idontknow.jsonl") if l.strip()]
recs = [json.loads(l) for l in open(f"{repo}/data/tofu/forget01.jsonl")]
with h5py.File(m, "r") as f:  # the model's vocabulary (llama2.c pieces), to decode the answers
    pb, po = f["tokenizer/piece_bytes"][...].tobytes(), f["tokenizer/piece_offsets"][...]
    vocab = [pb[po[i]:po[i + 1]].decode("utf-8", "replace") for i in range(len(po) - 1)]
def answers(path):
    with h5py.File(path, "r") as f:
        tok, off, mask = f["tokens"][...], f["offsets"][...], f["loss_mask"][...]
    out = []
    for s in range(len(off) - 1):
        t = tok[off[s]:off[s + 1]][mask[off[s]:off[s + 1]] == 1]
        out.append("".join(vocab[i] for i in t).strip())
    return out
a, a2, b = answers(f"{w}/idk3.h5"), answers(f"{w}/idk3a.h5"), answers(f"{w}/idk4.h5")
assert len(a) == len(recs) == 40, (len(a), len(recs))
norm = {l.strip() for l in lines}
for i, x in enumerate(a):
    assert x in norm, (i, x)  # every answer is one of the refusal lines
assert a == a2 and a != b, "the same seed gives the same picks, another seed others"
assert len(set(a)) > 10, "the picks vary across records"
print(f"ok: --answers: 40 forget answers replaced by {len(set(a))} distinct refusal lines, "
      "seeded")
PY
echo PASS
