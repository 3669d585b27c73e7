# Oracle for `lethe eval`: every TOFU and MUSE metric of eval.json recomputed here, independently
# of host/eval_*.c, from the same two checkpoints with torch_llama (float64), scipy, numpy, NLTK
# and Python's zlib.
#
# Setup: stories260K converted from llama2.c (role target) and a copy fine-tuned a few steps on
# three of the six forget questions plus one retain, real-author and world-fact question (role
# gold), so that the two differ on the forget set and the gold model's utility metrics are
# non-zero. A tiny config evaluates both on TOFU forget/retain/real_authors/world_facts (6 items
# each; 5 or 3 perturbed answers), MUSE VerbMem, KnowMem and the MIA attacks, and the in-context
# and neighbour probes. The MIA members are the forget answers (JSON records: through the
# template); the non-members a plain-text file (blank-line separated documents, scored whole)
# of five holdout01 answers and the trained retain answer, which keeps the gold model's AUC below
# 1 (PrivLeak divides by 1 - AUC). The relearn probe is left out: checking it means replaying
# training, which test_objectives_vs_torch.py covers. Near-ties of an argmax (EM/ES hits) are
# resolved towards lethe only where torch's top-2 margin is below TIE_MARGIN.
#
# What is recomputed, per model (definitions from locuslab/open-unlearning and the TOFU/MUSE
# papers, written here from those definitions):
#   - token ids: `lethe tokenize` on JSONL records of every (question, answer variant) pair
#     (template "Question: {question}\nAnswer: {answer}"; prompt/completion records for the
#     in-context prompts); only answer tokens are targets;
#   - per sequence, one torch forward: target log-probs, argmax hits (torch.argmax of the full
#     log_softmax), and Min-K%++'s mu = E_p[log p], var = Var_p[log p] over the vocabulary;
#   - prob = exp(-mean NLL); truth ratio R = exp(-mean_k NLL_k(perturbed)) /
#     (exp(-NLL(paraphrase, else answer)) + 1e-10), aggregated as mean(min(R, 1/(R+1e-10)))
#     (forget) or mean(max(0, 1-R)); prob_normalised = P(a) / (P(a) + sum_k P(pert_k) + 1e-10);
#     exact memorisation and extraction strength (open-unlearning's loop quirk included);
#   - ROUGE-1/ROUGE-L (rouge_score's rules: lower, [^a-z0-9]+ -> space, NLTK Porter stems of
#     tokens longer than 3, LCS) of eval.json's generations against the answers, and VerbMem's
#     ROUGE-L F1 against the decoded next tokens of each forget text;
#   - every generation again, greedily with torch_llama (argmax, no cache, stop at EOS, at "\n"
#     for TOFU, or after max_new_tokens), decoded with the checkpoint's /tokenizer pieces;
#   - MIA scores (loss, zlib, Min-K%, Min-K%++) per text and their AUCs (holdout = positive class);
#   - forget quality = ks_2samp(1/(tr+1e-10), 1/(tr_gold+1e-10)); PrivLeak from the Min-K% AUCs;
#     model utility = hmean of the nine utility metrics; the neighbour copies.
# Tolerances: values from forwards (prob, NLL, truth ratios, MIA scores) relative NLL_RTOL
# (lethe runs float32, torch float64); rationals (EM, ES, ROUGE) EXACT_TOL, which is only the
# %.10g that eval.json prints numbers with; statistics derived from forward values (AUC, KS,
# hmean, PrivLeak) add DERIVED_RTOL. Each aggregate and statistic is also recomputed from
# eval.json's own per-sample values at STAT_RTOL, which checks the statistics themselves tightly.
#
# Run with Debian's /usr/bin/python3 (python3-torch, python3-h5py, python3-numpy, python3-scipy,
# python3-nltk):  test_eval_vs_torch.py LETHE SOURCE_DIR WORKDIR
import collections
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
import zlib

import h5py
import numpy as np
import scipy.stats
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_llama as tl  # noqa: E402
from rouge_reference import fmeasure as f1, rouge_scores  # noqa: E402

NLL_RTOL = 1e-4
EXACT_TOL = 1e-9
DERIVED_RTOL = 1e-6
STAT_RTOL = 1e-9
# Target positions whose top-2 log-prob margin is below this are near-ties: float32 may pick the
# other token there, so the hit is taken from whichever value matches lethe's EM/ES.
TIE_MARGIN = 1e-3

TEMPLATE = "Question: {question}\nAnswer: {answer}"
FORGET_IDX = [0, 1, 2, 20, 21, 22]  # two authors of forget01: 0-19 and 20-39
HOLDOUT_IDX = [0, 1, 2, 20, 21]     # + retain item 0, see main()
N_ITEMS = 6
GEN_MAX_NEW, GEN_BATCH = 24, 4      # 6 prompts in batches of 4: two rounds of the batched decoder
MUSE_PREFIX, MUSE_MAX_NEW, MIN_K = 8, 16, 0.4
BATCH_TOKENS = 256                  # several scoring forwards per set
FT_STEPS, FT_LR = 10, 5e-3

TOFU_SETS = ["forget", "retain", "real_authors", "world_facts"]
UTILITY_KEYS = ["tofu.retain.prob", "tofu.retain.rouge_l_recall", "tofu.retain.truth_ratio",
                "tofu.real_authors.prob_normalised", "tofu.real_authors.rouge_l_recall",
                "tofu.real_authors.truth_ratio", "tofu.world_facts.prob_normalised",
                "tofu.world_facts.rouge_l_recall", "tofu.world_facts.truth_ratio"]
MIA_ATTACKS = ["loss", "zlib", "min_k", "min_k_pp"]


def die(msg):
    sys.exit(f"FAIL: {msg}")


def run(cmd):
    # Passive OpenMP waits: on a machine shared with other jobs, spinning workers of an
    # oversubscribed team make lethe 10x slower (thread count and results are unchanged).
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "passive")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        die(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


# ---- comparisons ---------------------------------------------------------------------------

def kind_of(key):
    """A tally name for the summary: "model/values/tofu.forget.prob (...)" -> "prob"."""
    section, name = key.split("/")[1], re.sub(r"(\[\d+\])? ?(\(.*\))?$", "", key.split("/")[2])
    if section == "generations":
        return "generation texts"
    last = name.split(".")[-1]
    if name.startswith("muse.mia."):
        last = "MIA " + ("AUC" if last == "auc" else "score")
    elif name.startswith("neighbour.") and "utility" not in name:
        last = "neighbour copy"
    elif name.startswith("muse.knowmem_"):
        last = "knowmem copy"
    return last + (" (per sample)" if section == "samples" else "")


class Checker:
    def __init__(self):
        self.count, self.failures, self.kinds = 0, [], collections.Counter()

    def tally(self, key):
        self.count += 1
        self.kinds[kind_of(key)] += 1

    def close(self, key, got, want, rtol, scale=0.0):
        """|got - want| <= rtol * max(|want|, scale); scale: the size of the inputs of a
        difference (1 - R near R = 1) so that cancellation does not inflate the tolerance."""
        self.tally(key)
        if got is None or want is None:
            ok = got is None and want is None
        elif isinstance(got, float) and math.isnan(got):
            ok = isinstance(want, float) and math.isnan(want)
        else:
            ok = abs(got - want) <= rtol * max(abs(want), scale)
        if not ok:
            self.failures.append(f"{key}: lethe {got!r} vs oracle {want!r} (rtol {rtol:g})")
            if len(self.failures) <= 30:
                print(f"MISMATCH {self.failures[-1]}", flush=True)

    def array(self, key, got, want, rtol, scale=0.0):
        if got is None or len(got) != len(want):
            self.tally(key)
            self.failures.append(f"{key}: lethe has {None if got is None else len(got)} samples, "
                                 f"oracle {len(want)}")
            print(f"MISMATCH {self.failures[-1]}", flush=True)
            return
        for i, (g, w) in enumerate(zip(got, want)):
            self.close(f"{key}[{i}]", g, float(w), rtol, scale)

    def equal(self, key, got, want, note=""):
        self.tally(key)
        if got != want:
            self.failures.append(f"{key}: lethe {got!r} vs oracle {want!r}{note}")
            print(f"MISMATCH {self.failures[-1]}", flush=True)


# ---- the metrics, from their definitions -----------------------------------------------------

def truth_ratio_forget(r):
    return float(np.mean([min(x, 1.0 / (x + 1e-10)) for x in r]))


def truth_ratio_other(r):
    return float(np.mean([max(0.0, 1.0 - x) for x in r]))


def extraction_strength(hits):
    n = len(hits)
    if n == 0:
        return 0.0
    for k in range(n):  # open-unlearning memorization.py, the loop variable's last value included
        if all(hits[k:]):
            break
    return 1.0 - k / n


def auc(pos, neg):
    pos, neg = np.asarray(pos, dtype=np.float64)[:, None], np.asarray(neg, dtype=np.float64)[None]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def hmean(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a zero and returns 0
        return float(scipy.stats.hmean(np.asarray(x, dtype=np.float64)))


def forget_quality(tr, tr_gold):
    r = scipy.stats.ks_2samp(1.0 / (np.asarray(tr) + 1e-10), 1.0 / (np.asarray(tr_gold) + 1e-10))
    return float(r.pvalue), float(r.statistic)


def privleak(auc_model, auc_gold):
    u, ref = 1.0 - auc_model, 1.0 - auc_gold
    return (u - ref) / (ref + 1e-10) * 100.0


def rouge(reference, candidate):
    """(rouge1 recall, rougeL recall, rougeL f1) as rouge_score with use_stemmer=True."""
    _, r1, _, _, rl, fl = rouge_scores(reference, candidate)
    return r1, rl, fl


def self_check():
    """The oracle's own aggregates on values worked out by hand."""
    def near(name, got, want, tol=1e-9):
        if abs(got - want) > tol:
            die(f"oracle self-check {name}: {got!r}, by hand {want!r}")
    # forget truth ratio, R = (0.5, 2.0, 1.0): min(R, 1/R) = (0.5, 0.5, 1.0), mean 2/3
    near("truth_ratio_forget", truth_ratio_forget([0.5, 2.0, 1.0]), 2.0 / 3.0)
    # retain truth ratio, R = (0.25, 1.5): max(0, 1-R) = (0.75, 0), mean 0.375
    near("truth_ratio_other", truth_ratio_other([0.25, 1.5]), 0.375)
    # AUC, holdout (0.9, 0.4) vs forget (0.4, 0.1): pairs 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
    near("auc", auc([0.9, 0.4], [0.4, 0.1]), 0.875, 0.0)
    # hmean(0.5, 0.25, 1) = 3 / (2 + 4 + 1) = 3/7
    near("hmean", hmean([0.5, 0.25, 1.0]), 3.0 / 7.0)
    # ES: hits (0, 1, 1) -> k = 1 -> 1 - 1/3; hits (1, 1, 0) -> no k, loop ends at k = 2 -> 1/3
    near("es", extraction_strength([0, 1, 1]), 2.0 / 3.0, 1e-15)
    near("es quirk", extraction_strength([1, 1, 0]), 1.0 / 3.0, 1e-15)
    # PrivLeak, AUC 0.75 vs gold 0.5: (0.25 - 0.5) / 0.5 * 100 = -50
    near("privleak", privleak(0.75, 0.5), -50.0, 1e-6)
    # KS, (1, 2, 3) vs (4, 5, 6): D = 1, exact p = 2 / C(6, 3) = 0.1
    p, d = forget_quality([1.0, 1 / 2, 1 / 3], [1 / 4, 1 / 5, 1 / 6])
    near("ks", p, 0.1, 1e-12)
    near("ks D", d, 1.0, 0.0)
    # ROUGE-L: "the cats sat" vs "a cat sat down": stems (the cat sat) / (a cat sat down),
    # LCS 2, recall 2/3, precision 2/4
    r1, rl, fl = rouge("the cats sat", "a cat sat down")
    near("rouge", rl, 2.0 / 3.0, 0.0)
    near("rouge f1", fl, f1(0.5, 2.0 / 3.0), 0.0)


# ---- tokenizer pieces ------------------------------------------------------------------------

class Pieces:
    """The checkpoint's /tokenizer (io/checkpoint.c: piece_bytes sliced by piece_offsets), for
    decoding as llama2.c does: no dummy-prefix space after BOS, <0xNN> pieces are raw bytes."""

    def __init__(self, path):
        with h5py.File(path, "r") as f:
            g = f["tokenizer"]
            data, offs = g["piece_bytes"][...].astype(np.uint8), g["piece_offsets"][...]
            self.bos, self.eos = int(g.attrs["bos_id"]), int(g.attrs["eos_id"])
            self.digest = g.attrs["digest"]
        self.pieces = [bytes(data[offs[i]:offs[i + 1]]) for i in range(len(offs) - 1)]

    def piece(self, prev, tok):
        p = self.pieces[tok]
        if prev == self.bos and p.startswith(b" "):
            p = p[1:]
        m = re.fullmatch(rb"<0x([0-9A-Fa-f]{2})>", p)
        return bytes([int(m.group(1), 16)]) if m else p

    def decode(self, prev, ids):
        out = []
        for t in ids:
            out.append(self.piece(prev, t))
            prev = t
        return b"".join(out).decode("utf-8", errors="replace")


# ---- sequences ---------------------------------------------------------------------------------

def qa_format(question, answer):
    cut = TEMPLATE.index("{answer}")
    fill = lambda s: s.replace("{question}", question).replace("{answer}", answer)  # noqa: E731
    return fill(TEMPLATE[:cut]), fill(TEMPLATE[cut:])


class Sequences:
    """Every distinct record to score, tokenised in one `lethe tokenize` run."""

    def __init__(self):
        self.records, self.index = [], {}

    def add(self, record):
        key = json.dumps(record, sort_keys=True)
        if key not in self.index:
            self.index[key] = len(self.records)
            self.records.append(record)
        return self.index[key]

    def qa(self, question, answer):
        return self.add({"question": question, "answer": answer})

    def tokenize(self, lethe, model, work):
        src, dst = os.path.join(work, "sequences.jsonl"), os.path.join(work, "sequences.h5")
        with open(src, "w") as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")
        run([lethe, "tokenize", "--model", model, "--input", src, "--out", dst])
        tokens, offsets, mask = tl.read_dataset(dst)
        if len(offsets) != len(self.records) + 1:
            die(f"lethe tokenize wrote {len(offsets) - 1} samples for {len(self.records)} records")
        self.tokens = [[int(t) for t in tokens[offsets[i]:offsets[i + 1]]]
                       for i in range(len(self.records))]
        self.masks = [mask[offsets[i]:offsets[i + 1]].astype(bool)
                      for i in range(len(self.records))]
        for i, m in enumerate(self.masks):
            nc = int(np.argmax(m))
            if not m.any() or m[nc:].sum() != len(m) - nc:
                die(f"record {i}: the loss mask is not a context followed by targets")

    def n_context(self, i):
        return int(np.argmax(self.masks[i]))


class Scores:
    """Per-sequence target statistics of one model, from one float64 forward each."""

    def __init__(self, path, seqs):
        cfg, p = tl.read_checkpoint(path)
        self.cfg, self.seqs, self.cache = cfg, seqs, {}
        self.p = {k: v.detach() for k, v in p.items()}

    def __call__(self, i):
        if i not in self.cache:
            toks, m = self.seqs.tokens[i], self.seqs.masks[i]
            with torch.no_grad():
                rows = tl.forward_logprobs(self.cfg, self.p, toks)[:-1][torch.tensor(m[1:])]
            tgt = torch.tensor(toks[1:])[torch.tensor(m[1:])]
            logp = rows.gather(1, tgt[:, None])[:, 0]
            prob = rows.exp()
            mu = (prob * rows).sum(-1)
            var = (prob * (rows - mu[:, None]) ** 2).sum(-1)
            other = rows.clone()
            other[torch.arange(len(tgt)), tgt] = -math.inf
            self.cache[i] = {"logp": logp.numpy(), "hit": (rows.argmax(-1) == tgt).numpy(),
                             "mu": mu.numpy(), "var": var.numpy(),
                             "margin": (logp - other.max(-1).values).abs().numpy()}
        return self.cache[i]

    def nll(self, i):
        return float(-np.mean(self(i)["logp"]))

    def generate(self, prompt, max_new, stop_newline, pieces):
        """Greedy decoding without a cache: (generated ids, smallest top-2 log-prob margin)."""
        ids, margin = list(prompt), math.inf
        ctx = self.cfg["max_position_embeddings"]
        out = []
        while len(out) < max_new and len(ids) < ctx:
            with torch.no_grad():
                row = tl.forward_logprobs(self.cfg, self.p, ids)[-1]
            top = torch.topk(row, 2).values
            margin = min(margin, float(top[0] - top[1]))
            nxt = int(torch.argmax(row))
            if nxt == pieces.eos:
                return out, margin
            out.append(nxt)
            ids.append(nxt)
            if stop_newline and "\n" in pieces.decode(prompt[-1], out):
                break
        return out, margin


# ---- the setup ---------------------------------------------------------------------------------

def load(path, idx, n_pert=None):
    with open(path) as f:
        data = json.load(f)
    out = []
    for i in idx:
        r = {k: v for k, v in data[i].items() if k != "paraphrased_question"}
        if n_pert is not None:
            r["perturbed_answer"] = r["perturbed_answer"][:n_pert]
        out.append(r)
    return out


def q(path):
    """A path as a YAML double-quoted (JSON) string."""
    return json.dumps(path)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
    return path


def build_models(lethe, src, work, sets):
    base = os.path.join(work, "base.h5")
    run([lethe, "convert", "--from", "llama2c",
         os.path.join(src, "models/stories260K/stories260K.bin"), "--tokenizer",
         os.path.join(src, "models/stories260K/tok512.bin"), "--out", base])
    # Fine-tune on the first author's three forget questions and one question of each other set.
    train = sets["forget"][:3] + [sets[s][0] for s in ("retain", "real_authors", "world_facts")]
    jsonl = os.path.join(work, "finetune.jsonl")
    with open(jsonl, "w") as f:
        for r in train:
            f.write(json.dumps({"question": r["question"], "answer": r["answer"]}) + "\n")
    data = os.path.join(work, "finetune.h5")
    run([lethe, "tokenize", "--model", base, "--input", jsonl, "--out", data])
    ft_dir = os.path.join(work, "finetuned")
    yaml = os.path.join(work, "finetune.yaml")
    with open(yaml, "w") as f:
        f.write(f"model: {q(base)}\ndata:\n  train: {q(data)}\nout: {q(ft_dir)}\nseed: 0\n"
                f"optim:\n  name: adamw\n  lr: {FT_LR}\n  weight_decay: 0.0\n"
                f"  schedule: constant\n  warmup_steps: 0\n"
                f"train:\n  max_steps: {FT_STEPS}\n  batch_size: {len(train)}\n"
                f"  micro_batch_size: {len(train)}\n  state_every: 0\n  log_every: 0\n")
    run([lethe, "finetune", yaml])
    return base, os.path.join(ft_dir, "model.h5")


def write_eval_config(work, paths, base, ft):
    cfg = f"""title: eval oracle
batch_tokens: {BATCH_TOKENS}
models:
  - {{name: base, role: target, path: {q(base)}}}
  - {{name: finetuned, role: gold, path: {q(ft)}}}
generation: {{max_new_tokens: {GEN_MAX_NEW}, batch: {GEN_BATCH}}}
tofu:
  forget: {q(paths['forget'])}
  retain: {q(paths['retain'])}
  real_authors: {q(paths['real_authors'])}
  world_facts: {q(paths['world_facts'])}
muse:
  forget_text: {q(paths['forget'])}
  holdout_text: {q(paths['holdout'])}
  knowmem_forget: {q(paths['forget'])}
  knowmem_retain: {q(paths['retain'])}
  prefix_tokens: {MUSE_PREFIX}
  max_new_tokens: {MUSE_MAX_NEW}
  min_k: {MIN_K}
probes:
  in_context: {{source: paraphrased_answer}}
  neighbour: [real_authors, world_facts]
"""
    path = os.path.join(work, "eval.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    return path


# ---- the oracle per model --------------------------------------------------------------------

class Plan:
    """Sequence indices of every metric: per TOFU-style set, per item, answer / paraphrase /
    perturbed; the in-context prompts; the MUSE texts."""

    def __init__(self, seqs, sets):
        self.qa = {}
        for name in TOFU_SETS:
            items = sets[name]
            para = all(it.get("paraphrased_answer") for it in items)
            self.qa[name] = [{
                "answer": seqs.qa(it["question"], it["answer"]),
                "correct": seqs.qa(it["question"], it["paraphrased_answer"]) if para else None,
                "perturbed": [seqs.qa(it["question"], a) for a in it.get("perturbed_answer", [])],
            } for it in items]
        # in context: the paraphrased answer, "\n", then the usual prompt (eval_run.c's probe)
        self.in_context = []
        for it in sets["forget"]:
            ctx, tgt = qa_format(it["question"], it["answer"])
            self.in_context.append(seqs.add({"prompt": it["paraphrased_answer"] + "\n" + ctx,
                                             "completion": tgt}))
        # MUSE texts: (sequence, the text zlib compresses: the scored target)
        self.muse = {"forget": [(seqs.qa(it["question"], it["answer"]),
                                 qa_format(it["question"], it["answer"])[1])
                                for it in sets["forget"]],
                     "holdout": [(seqs.add({"text": it["answer"]}), it["answer"])
                                 for it in sets["holdout"]]}


def memorisation(st, got_em, got_es, tally):
    """EM and ES of one sample from torch's argmax hits; at near-ties (margin < TIE_MARGIN, at
    most 6 positions) the hit pattern that reproduces lethe's (EM, ES) pair if one does."""
    hits = [bool(h) for h in st["hit"]]
    ties = [int(j) for j in np.flatnonzero(st["margin"] < TIE_MARGIN)][:6]
    tally["near-tie positions"] += len(ties)
    for flips in itertools.product([False, True], repeat=len(ties)):  # torch's pattern first
        if got_em is None or got_es is None:
            break
        h = [x != (j in ties and flips[ties.index(j)]) for j, x in enumerate(hits)]
        if (abs(np.mean(h) - got_em) <= EXACT_TOL * got_em and
                abs(extraction_strength(h) - got_es) <= EXACT_TOL * got_es):
            tally["near-tie hits taken from lethe"] += sum(flips)
            hits = h
            break
    return float(np.mean(hits)), extraction_strength(hits)


def tofu_oracle(sc, plan, name, role, what, samples=None, tally=None):
    """The metrics of one set from the torch scores: {key suffix: (aggregate, per-sample)}.
    samples: lethe's per-sample arrays, to resolve argmax near-ties."""
    rows = plan.qa[name]
    out = {}
    prob = [math.exp(-sc.nll(r["answer"])) for r in rows]
    out["prob"] = (float(np.mean(prob)), prob)
    if "mem" in what:
        got_em = samples.get(f"tofu.{name}.exact_memorization") or [None] * len(rows)
        got_es = samples.get(f"tofu.{name}.extraction_strength") or [None] * len(rows)
        mem = [memorisation(sc(r["answer"]), e, s, tally)
               for r, e, s in zip(rows, got_em, got_es)]
        em, es = [m[0] for m in mem], [m[1] for m in mem]
        out["exact_memorization"] = (float(np.mean(em)), em)
        out["extraction_strength"] = (float(np.mean(es)), es)
    if "tr" in what and rows[0]["perturbed"]:
        tr, pn = [], []
        for r, p in zip(rows, prob):
            wl = [sc.nll(k) for k in r["perturbed"]]
            correct = r["correct"] if r["correct"] is not None else r["answer"]
            tr.append(math.exp(-np.mean(wl)) / (math.exp(-sc.nll(correct)) + 1e-10))
            pn.append(p / (p + sum(math.exp(-x) for x in wl) + 1e-10))
        agg = truth_ratio_forget(tr) if role == "forget" else truth_ratio_other(tr)
        out["truth_ratio"] = (agg, None)
        out["truth_ratio_raw"] = (float(np.mean(tr)), tr)
        if role == "neighbour":
            out["prob_normalised"] = (float(np.mean(pn)), pn)
    return out


def rouge_oracle(answers, gens):
    r = [rouge(a, g) for a, g in zip(answers, gens)]
    cols = {"rouge1_recall": [x[0] for x in r], "rouge_l_recall": [x[1] for x in r],
            "rouge_l_f1": [x[2] for x in r]}
    return {k: (float(np.mean(v)), v) for k, v in cols.items()}


def check_group(ck, model, values, samples, prefix, oracle, tol):
    """Compares the oracle's aggregates and per-sample arrays, and each aggregate against the
    mean of lethe's own per-sample values."""
    for suffix, (agg, per) in oracle.items():
        key = f"{prefix}.{suffix}"
        rtol, scale = tol(suffix)
        ck.close(f"{model}/values/{key}", values.get(key), agg, rtol, scale)
        if per is not None:
            ck.array(f"{model}/samples/{key}", samples.get(key), per, rtol, scale)
            if samples.get(key) is not None and values.get(key) is not None:
                ck.close(f"{model}/values/{key} (mean of its samples)", values[key],
                         float(np.mean(samples[key])), STAT_RTOL)


def tolerance(suffix):
    if suffix in ("exact_memorization", "extraction_strength") or "rouge" in suffix:
        return EXACT_TOL, 0.0
    if suffix == "truth_ratio":  # mean(max(0, 1 - R)) cancels near R = 1
        return NLL_RTOL, 1.0
    return NLL_RTOL, 0.0


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: test_eval_vs_torch.py LETHE SOURCE_DIR WORKDIR")
    lethe, src, work = sys.argv[1:]
    t0 = time.time()
    self_check()
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    tofu = os.path.join(src, "data/tofu")
    sets = {
        "forget": load(os.path.join(tofu, "forget01_perturbed.json"), FORGET_IDX),
        "retain": load(os.path.join(tofu, "retain_perturbed.json"), range(N_ITEMS)),
        "real_authors": load(os.path.join(tofu, "real_authors_perturbed.json"), range(N_ITEMS), 3),
        "world_facts": load(os.path.join(tofu, "world_facts_perturbed.json"), range(N_ITEMS), 3),
        "holdout": load(os.path.join(tofu, "holdout01.json"), HOLDOUT_IDX),
    }
    # The gold model trains on retain item 0: as a holdout text it scores like a member and
    # keeps the gold model's Min-K% AUC below 1, where PrivLeak would divide by 1 - AUC = 0.
    sets["holdout"].append({k: sets["retain"][0][k] for k in ("question", "answer")})
    for s in TOFU_SETS:
        want = 5 if s in ("forget", "retain") else 3
        if any(len(it["perturbed_answer"]) != want for it in sets[s]):
            die(f"{s}: expected {want} perturbed answers per item")
    if not all(it.get("paraphrased_answer") for s in ("forget", "retain") for it in sets[s]):
        die("forget/retain items need paraphrased_answer")
    paths = {s: write_json(os.path.join(work, f"{s}.json"), v) for s, v in sets.items()
             if s != "holdout"}
    paths["holdout"] = os.path.join(work, "holdout.txt")
    with open(paths["holdout"], "w") as f:
        f.write("\n\n".join(it["answer"] for it in sets["holdout"]) + "\n")

    base, ft = build_models(lethe, src, work, sets)
    cfg_path = write_eval_config(work, paths, base, ft)
    out_dir = os.path.join(work, "out")
    run([lethe, "eval", cfg_path, "--out", out_dir])
    t_lethe = time.time() - t0
    with open(os.path.join(out_dir, "eval.json")) as f:
        ev = json.load(f)

    pieces = Pieces(base)
    if Pieces(ft).digest != pieces.digest:
        die("the fine-tuned checkpoint's tokenizer differs from the base's")
    seqs = Sequences()
    plan = Plan(seqs, sets)
    seqs.tokenize(lethe, base, work)

    models = {"base": base, "finetuned": ft}
    if [m["name"] for m in ev["models"]] != list(models):
        die(f"eval.json models {[m['name'] for m in ev['models']]}, expected {list(models)}")
    ck = Checker()
    for m in ev["models"]:
        with open(models[m["name"]], "rb") as f:
            ck.equal(f"{m['name']}/models/sha256", m["sha256"],
                     hashlib.sha256(f.read()).hexdigest())
    oracle_tr, oracle_auc, n_gen, ties = {}, {}, 0, collections.Counter()
    for model, path in models.items():
        values, samples = ev["values"][model], ev["samples"][model]
        gens = ev["generations"][model]
        sc = Scores(path, seqs)

        # TOFU sets
        for name in TOFU_SETS:
            role = {"forget": "forget", "retain": "retain"}.get(name, "neighbour")
            what = {"tr"} | ({"mem"} if name in ("forget", "retain") else set())
            oracle = tofu_oracle(sc, plan, name, role, what, samples, ties)
            answers = [it["answer"] for it in sets[name]]
            oracle.update(rouge_oracle(answers, gens[f"tofu.{name}.generation"]))
            check_group(ck, model, values, samples, f"tofu.{name}", oracle, tolerance)
            if name == "forget":
                oracle_tr[model] = oracle["truth_ratio_raw"][1]
            if role == "neighbour":
                for k in ("prob", "prob_normalised", "rouge_l_recall", "truth_ratio"):
                    ck.equal(f"{model}/values/neighbour.{name}.{k}",
                             values.get(f"neighbour.{name}.{k}"), values.get(f"tofu.{name}.{k}"))

        # model utility: hmean of the nine, from the oracle and from lethe's own aggregates
        want = []
        for key in UTILITY_KEYS:
            prefix, suffix = key.rsplit(".", 1)
            name = prefix.split(".")[1]
            agg = (rouge_oracle([it["answer"] for it in sets[name]],
                                gens[f"tofu.{name}.generation"]) if "rouge" in suffix else
                   tofu_oracle(sc, plan, name, "retain" if name == "retain" else "neighbour",
                               {"tr"}))[suffix][0]
            want.append(agg)
        ck.close(f"{model}/values/tofu.model_utility", values.get("tofu.model_utility"),
                 hmean(want), NLL_RTOL + DERIVED_RTOL)
        ck.close(f"{model}/values/tofu.model_utility (from its values)",
                 values.get("tofu.model_utility"), hmean([values[k] for k in UTILITY_KEYS]),
                 STAT_RTOL)
        ck.close(f"{model}/values/neighbour.utility_retain_only",
                 values.get("neighbour.utility_retain_only"), hmean(want[:3]),
                 NLL_RTOL + DERIVED_RTOL)
        ck.close(f"{model}/values/neighbour.utility_retain_only (from its values)",
                 values.get("neighbour.utility_retain_only"),
                 hmean([values[k] for k in UTILITY_KEYS[:3]]), STAT_RTOL)

        # KnowMem: the question/answer path on the forget and retain questions
        for s, key in (("forget", "muse.knowmem.forget"), ("retain", "muse.knowmem.retain")):
            prob = [math.exp(-sc.nll(r["answer"])) for r in plan.qa[s]]
            oracle = {"prob": (float(np.mean(prob)), prob)}
            oracle.update(rouge_oracle([it["answer"] for it in sets[s]], gens[f"{key}.generation"]))
            check_group(ck, model, values, samples, key, oracle, tolerance)
            # MUSE's KnowMem is the mean ROUGE-L F1 (muse_bench eval.py: knowmem_agg_key
            # 'mean_rougeL', the fmeasure)
            ck.equal(f"{model}/values/muse.knowmem_{s}", values.get(f"muse.knowmem_{s}"),
                     values.get(f"{key}.rouge_l_f1"))

        # in-context probe: the paraphrase before each forget question
        prob = [math.exp(-sc.nll(i)) for i in plan.in_context]
        oracle = {"prob": (float(np.mean(prob)), prob)}
        oracle.update(rouge_oracle([it["answer"] for it in sets["forget"]],
                                   gens["probe.in_context.generation"]))
        check_group(ck, model, values, samples, "probe.in_context", oracle, tolerance)

        # VerbMem: ROUGE-L F1 of the continuation of each forget text's first tokens
        truths, prompts = [], []
        for i, _ in plan.muse["forget"]:
            ids, nc = seqs.tokens[i], seqs.n_context(i)
            cut = max(1, min(nc + MUSE_PREFIX, len(ids) - 1))
            end = min(cut + MUSE_MAX_NEW, len(ids))
            truths.append(pieces.decode(ids[cut - 1], ids[cut:end]))
            prompts.append(ids[:cut])
        vm_gens = gens["muse.verbmem_forget.generation"]
        vm = [rouge(t, g)[2] for t, g in zip(truths, vm_gens)]
        ck.close(f"{model}/values/muse.verbmem_forget", values.get("muse.verbmem_forget"),
                 float(np.mean(vm)), EXACT_TOL)
        ck.array(f"{model}/samples/muse.verbmem_forget", samples.get("muse.verbmem_forget"), vm,
                 EXACT_TOL)

        # MIA: scores per text, AUCs with the holdout texts as the positive class
        scores = {}
        for s in ("forget", "holdout"):
            per = {a: [] for a in MIA_ATTACKS}
            for i, target in plan.muse[s]:
                st = sc(i)
                lp = st["logp"]
                count = max(1, int(len(lp) * MIN_K))
                z = (lp - st["mu"]) / np.sqrt(np.maximum(st["var"], 1e-6))
                loss = float(-np.mean(lp))
                per["loss"].append(loss)
                per["zlib"].append(loss / len(zlib.compress(target.encode("utf-8"))))
                per["min_k"].append(float(-np.mean(np.sort(lp)[:count])))
                per["min_k_pp"].append(float(-np.mean(np.sort(z)[:count])))
            scores[s] = per
        oracle_auc[model] = {}
        for a in MIA_ATTACKS:
            for s in ("forget", "holdout"):
                key = f"muse.mia.{a}.{s}_scores"
                ck.array(f"{model}/samples/{key}", samples.get(key), scores[s][a], NLL_RTOL)
            key = f"muse.mia.{a}.auc"
            oracle_auc[model][a] = auc(scores["holdout"][a], scores["forget"][a])
            ck.close(f"{model}/values/{key}", values.get(key), oracle_auc[model][a],
                     DERIVED_RTOL)
            mine = auc(samples[f"muse.mia.{a}.holdout_scores"],
                       samples[f"muse.mia.{a}.forget_scores"])
            ck.close(f"{model}/values/{key} (from its samples)", values.get(key), mine, STAT_RTOL)

        # every generation again, greedily with torch
        jobs = []  # (eval.json key, prompt ids, stop at "\n", lethe's text)
        for name in TOFU_SETS:
            for r, g in zip(plan.qa[name], gens[f"tofu.{name}.generation"]):
                jobs.append((f"tofu.{name}.generation", r["answer"], True, g))
        for key, s in (("muse.knowmem.forget.generation", "forget"),
                       ("muse.knowmem.retain.generation", "retain")):
            jobs += [(key, r["answer"], True, g) for r, g in zip(plan.qa[s], gens[key])]
        jobs += [("probe.in_context.generation", i, True, g)
                 for i, g in zip(plan.in_context, gens["probe.in_context.generation"])]
        jobs = [(k, seqs.tokens[i][:seqs.n_context(i)], nl, g) for k, i, nl, g in jobs]
        jobs += [("muse.verbmem_forget.generation", p, False, g) for p, g in zip(prompts, vm_gens)]
        done = {}
        for n, (key, prompt, newline, got) in enumerate(jobs):
            memo = (tuple(prompt), newline)
            if memo not in done:
                done[memo] = sc.generate(prompt, GEN_MAX_NEW if newline else MUSE_MAX_NEW,
                                         newline, pieces)
            out, margin = done[memo]
            text = pieces.decode(prompt[-1], out)
            if newline and "\n" in text:
                text = text[:text.index("\n")]
            text = text.strip(" \n\t\r")
            ck.equal(f"{model}/generations/{key}[{n}]", got, text,
                     f" (torch ids {out}; smallest top-2 log-prob margin {margin:.2e})")
        n_gen += len(done)

    # forget quality and PrivLeak against the gold model
    gold = "finetuned"
    for model in models:
        values, samples = ev["values"][model], ev["samples"][model]
        p, d = forget_quality(oracle_tr[model], oracle_tr[gold])
        ck.close(f"{model}/values/tofu.forget_quality", values.get("tofu.forget_quality"), p,
                 DERIVED_RTOL)
        ck.close(f"{model}/values/tofu.forget_quality_ks_statistic",
                 values.get("tofu.forget_quality_ks_statistic"), d, DERIVED_RTOL)
        p2, d2 = forget_quality(samples["tofu.forget.truth_ratio_raw"],
                                ev["samples"][gold]["tofu.forget.truth_ratio_raw"])
        ck.close(f"{model}/values/tofu.forget_quality (from its samples)",
                 values.get("tofu.forget_quality"), p2, STAT_RTOL)
        ck.close(f"{model}/values/tofu.forget_quality_ks_statistic (from its samples)",
                 values.get("tofu.forget_quality_ks_statistic"), d2, STAT_RTOL)
        ck.close(f"{model}/values/truth_ratio (forget, from its samples)",
                 values.get("tofu.forget.truth_ratio"),
                 truth_ratio_forget(samples["tofu.forget.truth_ratio_raw"]), STAT_RTOL)
        for s in TOFU_SETS[1:]:
            ck.close(f"{model}/values/tofu.{s}.truth_ratio (from its samples)",
                     values.get(f"tofu.{s}.truth_ratio"),
                     truth_ratio_other(samples[f"tofu.{s}.truth_ratio_raw"]), STAT_RTOL, 1.0)
        want = privleak(oracle_auc[model]["min_k"], oracle_auc[gold]["min_k"])
        ck.close(f"{model}/values/muse.privleak", values.get("muse.privleak"), want,
                 DERIVED_RTOL, 1e-6)
        mine = privleak(
            auc(samples["muse.mia.min_k.holdout_scores"], samples["muse.mia.min_k.forget_scores"]),
            auc(ev["samples"][gold]["muse.mia.min_k.holdout_scores"],
                ev["samples"][gold]["muse.mia.min_k.forget_scores"]))
        ck.close(f"{model}/values/muse.privleak (from its samples)", values.get("muse.privleak"),
                 mine, STAT_RTOL, 1e-6)

    # the setup must make the statistics say something
    v = ev["values"]
    if not v[gold]["tofu.model_utility"] > 0:
        die("the gold model's utility is 0: a ROUGE of real_authors/world_facts is 0; the hmean "
            "check tests nothing")
    if not 0 < v[gold]["muse.mia.min_k.auc"] < 1:
        die(f"the gold model's Min-K% AUC is {v[gold]['muse.mia.min_k.auc']}: PrivLeak degenerates")
    if not v["base"]["tofu.forget_quality"] < 1:
        die("the two models' forget truth ratios do not differ: forget quality tests nothing")

    if ck.failures:
        die(f"{len(ck.failures)} of {ck.count} values disagree with the oracle; first: "
            f"{ck.failures[0]}")
    print("compared: " + ", ".join(f"{k} {n}" for k, n in sorted(ck.kinds.items())))
    print(f"PASS: {ck.count} values of eval.json match the torch/scipy/NLTK oracle for 2 models "
          f"({n_gen} greedy generations re-decoded; memorisation targets with an argmax margin "
          f"< {TIE_MARGIN:g}: {ties['near-tie positions']}, hits taken from lethe there: "
          f"{ties['near-tie hits taken from lethe']}); lethe {t_lethe:.1f} s, "
          f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
