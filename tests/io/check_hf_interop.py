#!/usr/bin/python3
# Oracle test of `lethe convert --from hf` and `lethe export --to hf` against transformers itself:
# random small models saved by transformers (Llama with GQA, tied embeddings, bf16 and sharded;
# Qwen2 with q/k/v biases; Mistral) -> lethe convert -> lethe eval gives the per-sample target
# log-prob sums transformers computes (fp32, relative 1e-4), and lethe export -> transformers
# from_pretrained reloads bit-identical tensors and the same config. Also: the bad inputs users
# hit (Llama 3.1 rope scaling, a config that does not fit the weights, a missing shard) fail with
# the file and the field named, leaving an existing output untouched.
#
# Usage: check_hf_interop.py LETHE WORKDIR   (Debian's /usr/bin/python3; it re-executes itself in
# the interop venv of tools/interop_venv.sh, exit 77 = skipped when PyPI is unreachable)
import json
import os
import shutil
import subprocess
import sys

lethe, workdir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if not os.environ.get("LETHE_IN_INTEROP_VENV"):
    venv = os.environ.get("LETHE_INTEROP_VENV",
                          os.path.join(os.path.dirname(lethe), "interop-venv"))
    r = subprocess.run(["bash", os.path.join(root, "tools", "interop_venv.sh"), venv],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode == 77:
        print("SKIP: the interop venv could not be created (PyPI unreachable)")
        sys.exit(77)
    if r.returncode != 0:
        sys.exit("FAIL: tools/interop_venv.sh failed")
    py = r.stdout.strip().splitlines()[-1]
    os.environ["LETHE_IN_INTEROP_VENV"] = "1"
    os.execv(py, [py] + sys.argv)

import h5py  # noqa: E402  (Debian's, through --system-site-packages)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
transformers.logging.disable_progress_bar()
from safetensors import safe_open  # noqa: E402

torch.manual_seed(0)
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def run(args, expect_ok=True):
    r = subprocess.run([lethe] + args, capture_output=True, text=True)
    if expect_ok and r.returncode != 0:
        raise SystemExit(f"FAIL: lethe {' '.join(args)}\n{r.stdout}{r.stderr}")
    return r


def write_dataset(path, samples, vocab):
    tokens = np.concatenate(samples).astype(np.int32)
    offsets = np.cumsum([0] + [len(s) for s in samples]).astype(np.int64)
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=tokens)
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("loss_mask", data=np.ones(len(tokens), np.uint8))
        f.attrs["format"] = "lethe-tokens"
        f.attrs["format_version"] = np.int32(1)
        f.attrs["vocab_size"] = np.int32(vocab)
        f.attrs["tokenizer"] = "none"
        f.attrs["tokenizer_digest"] = ""


def torch_sums(model, samples):
    out = []
    with torch.no_grad():
        for s in samples:
            ids = torch.tensor(s, dtype=torch.long)[None]
            logp = torch.log_softmax(model(ids).logits.double()[0], -1)
            # lethe's packing: every token after the first of a sample is a target.
            out.append(float(logp[:-1].gather(1, ids[0, 1:, None]).sum()))
    return out


def make_model(kind, dtype, **extra):
    common = dict(vocab_size=96, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-5, rope_theta=5000.0, bos_token_id=1, eos_token_id=2)
    common.update(extra)
    cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
           "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM)}[kind]
    model = cls[1](cls[0](**common)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Non-trivial norms and biases (the default init leaves them 1 and 0).
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    return model.to(dtype)


def train_tokenizer(path, vocab):
    """A byte-level BPE (GPT-2 split) trained by the tokenizers library on the shared corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    t.train_from_iterator(CORPUS, trainer)
    t.save(path)


CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: Who wrote the book?\nAnswer: Its author, a Nobel laureate, wrote it in 1984.",
    "Unlearning removes what a model learned from specific data; suppression hides it.",
] * 20
# One text per line of a `--lines` file (lines are whole samples).
TEXTS = ["Who wrote the book in 1984?", "inner  spaces\tand tabs", "Überraschung! 数字 42"]

CASES = [
    # name, kind, storage dtype, save_pretrained shard size, export shard size, config extras
    ("llama_gqa_f32", "llama", torch.float32, "5GB", "5GB", {"vocab_size": 320}),
    ("llama_tied_bf16_sharded", "llama", torch.bfloat16, "60KB", "40KB",
     {"tie_word_embeddings": True, "head_dim": 12}),
    ("qwen2_bias_f32", "qwen2", torch.float32, "5GB", "100KB", {"tie_word_embeddings": True}),
    ("qwen2_bias_f16", "qwen2", torch.float16, "5GB", "5GB", {}),
    ("mistral_f32", "mistral", torch.float32, "5GB", "5GB", {"sliding_window": None}),
]

os.makedirs(workdir, exist_ok=True)
rng = np.random.default_rng(1)
for name, kind, dtype, shard, export_shard, extra in CASES:
    d = os.path.join(workdir, name)
    shutil.rmtree(d, ignore_errors=True)
    model = make_model(kind, dtype, **extra)
    model.save_pretrained(os.path.join(d, "hf"), max_shard_size=shard, safe_serialization=True)
    with_tok = model.config.vocab_size >= 300
    if with_tok:
        train_tokenizer(os.path.join(d, "hf", "tokenizer.json"), model.config.vocab_size)
    shards = sorted(f for f in os.listdir(os.path.join(d, "hf")) if f.endswith(".safetensors"))
    h5 = os.path.join(d, "m.h5")
    run(["convert", "--from", "hf", os.path.join(d, "hf"), "--out", h5])

    # The stored dtypes are the source's (no --dtype).
    want = {torch.float32: "<f4", torch.bfloat16: None, torch.float16: "<f2"}[dtype]
    with h5py.File(h5, "r") as f:
        ds = f["model/layers/0/mlp/up_proj/weight"]
        got = ds.dtype.str if dtype != torch.bfloat16 else ds.id.get_type().get_size()
        if (dtype == torch.bfloat16 and got != 2) or (dtype != torch.bfloat16 and got != want):
            fail(f"{name}: stored dtype {got}, expected the source's {dtype}")

    # Per-sample target log-prob sums: lethe eval vs transformers in fp32.
    V = model.config.vocab_size
    samples = [rng.integers(0, V, size=n) for n in (2, 7, 19, 33, 64)]
    data = os.path.join(d, "data.h5")
    write_dataset(data, samples, V)
    ev = os.path.join(d, "eval.json")
    run(["eval", "--model", h5, "--data", data, "--out", ev, "--device", "cpu"])
    lethe_sums = [s["sum_logprob"] for s in json.load(open(ev))["samples"]]
    # The reference is transformers loading the saved directory in fp32: casting the in-memory
    # model would also round its RoPE inv_freq buffer to the storage dtype.
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(d, "hf"),
                                                                  torch_dtype=torch.float32)
    ref = torch_sums(ref_model, samples)
    worst = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(lethe_sums, ref))
    print(f"{name}: {len(shards)} shard(s); eval log-prob sums vs transformers: "
          f"max relative difference {worst:.2e}")
    if worst > 1e-4:
        fail(f"{name}: log-probs differ from transformers by {worst:.2e} (> 1e-4): "
             f"lethe {lethe_sums} torch {ref}")

    # Export and reload with transformers: identical tensors, dtypes and config.
    out = os.path.join(d, "export")
    run(["export", "--to", "hf", h5, out, "--max-shard-size", export_shard])
    auto = transformers.AutoModelForCausalLM.from_pretrained(out, torch_dtype="auto")
    if type(auto) is not type(model):
        fail(f"{name}: export reloads as {type(auto).__name__}, not {type(model).__name__}")
    sd_a, sd_b = model.state_dict(), auto.state_dict()
    if set(sd_a) != set(sd_b):
        fail(f"{name}: export tensor names differ: {set(sd_a) ^ set(sd_b)}")
    for k in sd_a:
        if k in sd_b and (sd_a[k].dtype != sd_b[k].dtype or not torch.equal(sd_a[k], sd_b[k])):
            fail(f"{name}: exported {k} differs ({sd_a[k].dtype} vs {sd_b[k].dtype})")
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "rope_theta",
                "tie_word_embeddings", "bos_token_id", "eos_token_id", "max_position_embeddings"):
        a, b = getattr(model.config, key), getattr(auto.config, key)
        if a != b:
            fail(f"{name}: exported config {key} = {b}, source {a}")
    out_shards = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    for f in out_shards:
        with safe_open(os.path.join(out, f), "pt") as st:
            if st.metadata() != {"format": "pt"}:
                fail(f"{name}: {f} metadata {st.metadata()}")
    print(f"{name}: export -> {len(out_shards)} shard(s), {len(sd_a)} tensors reload identical")

    if with_tok:
        # The tokenizer travels too: `lethe tokenize` with the imported tokenizer gives HF's ids
        # (BOS from the post-processor), and the exported directory's AutoTokenizer agrees.
        from tokenizers import Tokenizer
        ref_tok = Tokenizer.from_file(os.path.join(d, "hf", "tokenizer.json"))
        src = os.path.join(d, "texts.txt")
        with open(src, "w") as f:
            f.write("\n".join(TEXTS) + "\n")
        tds = os.path.join(d, "texts.h5")
        run(["tokenize", "--model", h5, "--input", src, "--lines", "--out", tds])
        with h5py.File(tds, "r") as f:
            toks, offs = f["tokens"][...], f["offsets"][...]
        ours = [toks[offs[i]:offs[i + 1]].tolist() for i in range(len(offs) - 1)]
        want = [ref_tok.encode(t).ids for t in TEXTS]
        if ours != want:
            fail(f"{name}: lethe tokenize {ours} vs tokenizers {want}")
        auto_tok = transformers.AutoTokenizer.from_pretrained(out)
        exported = [auto_tok(t).input_ids for t in TEXTS]
        if exported != want:
            fail(f"{name}: exported tokenizer gives {exported}, source {want}")
        if auto_tok.decode(want[2], skip_special_tokens=True) != TEXTS[2]:
            fail(f"{name}: exported tokenizer decodes {auto_tok.decode(want[2])!r}")
        print(f"{name}: tokenizer.json imported and exported: {sum(map(len, want))} ids equal")

# ---- bad input ------------------------------------------------------------------------------
base = os.path.join(workdir, "llama_gqa_f32", "hf")
existing = os.path.join(workdir, "existing.h5")
with open(existing, "wb") as f:
    f.write(b"keep me")


def expect_error(label, src, *needles):
    r = run(["convert", "--from", "hf", src, "--out", existing], expect_ok=False)
    msg = r.stderr
    if r.returncode == 0:
        fail(f"{label}: convert succeeded")
    for n in needles:
        if n not in msg:
            fail(f"{label}: message lacks {n!r}: {msg.strip()}")
    if open(existing, "rb").read() != b"keep me":
        fail(f"{label}: the existing output was changed")
    leftovers = [f for f in os.listdir(workdir) if ".tmp-" in f]
    if leftovers:
        fail(f"{label}: temporary files left behind: {leftovers}")
    print(f"{label}: rejected: {msg.strip().splitlines()[-1]}")


def variant(label, edit_config=None, drop=None):
    d = os.path.join(workdir, "bad-" + label)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(base, d)
    if edit_config:
        cfg = json.load(open(os.path.join(d, "config.json")))
        edit_config(cfg)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    if drop:
        os.remove(os.path.join(d, drop))
    return d


expect_error("rope_scaling llama3",
             variant("llama3", lambda c: c.update(rope_scaling={
                 "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})),
             "config.json", "rope_scaling", "llama3")
expect_error("layers beyond the weights", variant("layers", lambda c: c.update(num_hidden_layers=3)),
             "model.layers.2", "missing")
expect_error("fewer layers than the weights",
             variant("fewer", lambda c: c.update(num_hidden_layers=1)),
             "model.layers.1", "not a parameter")
expect_error("wrong intermediate_size",
             variant("inter", lambda c: c.update(intermediate_size=64)), "shape", "config.json")
expect_error("unsupported architecture",
             variant("arch", lambda c: c.update(architectures=["GPT2LMHeadModel"])),
             "GPT2LMHeadModel", "LlamaForCausalLM")
expect_error("no weights", variant("noweights", drop="model.safetensors"),
             "model.safetensors")

# transformers v5 spelling: rope_theta inside rope_parameters, dtype for torch_dtype, and
# eos_token_id as a list (lethe stops on the first).
def v5_config(c):
    theta = c.pop("rope_theta")
    c.pop("rope_scaling", None)
    c["rope_parameters"] = {"rope_type": "default", "rope_theta": theta * 2}
    c["dtype"] = c.pop("torch_dtype", "float32")
    c["eos_token_id"] = [2, 5]


v5 = variant("v5", v5_config)
v5_out = os.path.join(workdir, "v5.h5")
r = run(["convert", "--from", "hf", v5, "--out", v5_out])
with h5py.File(v5_out, "r") as f:
    theta, eos = float(f["config"].attrs["rope_theta"]), int(f["config"].attrs["eos_token_id"])
if theta != 10000.0 or eos != 2:
    fail(f"v5 config: rope_theta {theta} (want 10000 from rope_parameters), eos {eos} (want 2)")
if "eos_token_id lists 2 ids" not in r.stderr:
    fail(f"v5 config: no note about the eos list: {r.stderr.strip()}")
print(f"transformers v5 config: rope_parameters.rope_theta {theta:g}, first eos {eos}, noted")
expect_error("rope_parameters llama3 (v5)",
             variant("v5llama3", lambda c: (v5_config(c), c["rope_parameters"].update(
                 rope_type="llama3", factor=8.0))),
             "rope_parameters", "llama3")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("all HF interop checks passed")
