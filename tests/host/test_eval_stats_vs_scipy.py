# Oracle for host/eval_stats and host/rouge: random and real-text cases (fixed seed) through
# eval_stats_driver, against independent implementations:
#   - scipy.stats.ks_2samp (p-value and statistic; exact branch, ties, 1-element samples, and
#     sizes above 10000 for the asymptotic branch) and scipy.stats.kstwo.sf over a grid that
#     reaches each of its methods;
#   - the AUC as numpy's pairwise mean of [pos > neg] + 0.5 [pos == neg], and as
#     scipy.stats.mannwhitneyu's U / (np * nn);
#   - scipy.stats.hmean;
#   - NLTK's PorterStemmer on every distinct word of the TOFU files and tiny Shakespeare;
#   - ROUGE-1 / ROUGE-L written here from rouge_score's rules (tokenize: lower(), [^a-z0-9]+ ->
#     space, split, stem tokens longer than 3 with NLTK, keep ^[a-z0-9]+$; n-gram overlap with
#     counts; LCS by dynamic programming; fmeasure) on TOFU answers against other answers and
#     against perturbed copies, with and without the stemmer;
#   - len(zlib.compress(...)) of Python's zlib;
#   - the MIA scores and extraction strength / exact memorisation as open-unlearning writes
#     them, in numpy float64 and plain Python loops.
# Run with Debian's /usr/bin/python3 (python3-scipy, python3-numpy, python3-nltk):
#   test_eval_stats_vs_scipy.py DRIVER TOFU_DIR [TINYSHAKESPEARE_TXT]
import json
import os
import re
import subprocess
import sys
import zlib

import numpy as np
import scipy.stats
from nltk.stem.porter import PorterStemmer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rouge_reference import rouge_scores  # noqa: E402

P_RTOL = 1e-10  # p-values: exact-branch values agree to ~1e-15, kstwo's 1 - cdf to ~1e-12
ROUGE_TOL = 1e-12
MIA_RTOL = 1e-12

failures = []


def fail(msg):
    failures.append(msg)
    if len(failures) <= 20:
        print("FAIL:", msg)


def num(v):
    return repr(float(v))


def nums(vs):
    return " ".join(num(v) for v in vs)


def hexstr(text):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.hex() if data else "-"


def run_driver(driver, commands):
    out = subprocess.run([driver], input="\n".join(commands) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    if len(out) != len(commands):
        sys.exit(f"driver answered {len(out)} lines for {len(commands)} commands")
    return out


def rel_err(got, want):
    if got == want:
        return 0.0
    return abs(got - want) / abs(want) if want != 0 else float("inf")


# ---------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov

def ks_cases(rng):
    sizes = [(1, 1), (1, 2), (2, 1), (1, 7), (2, 2), (3, 3), (3, 4), (7, 7), (5, 40), (40, 40),
             (40, 400), (400, 40), (400, 401), (400, 400), (150, 1000), (999, 1000), (3000, 2000),
             (10001, 30), (10001, 10001), (12000, 80), (20000, 300), (15000, 1), (10500, 2)]
    sizes += [(int(rng.integers(1, 81)), int(rng.integers(1, 81))) for _ in range(150)]
    cases = []
    for i, (n, m) in enumerate(sizes):
        shift = [0.0, 0.2, 0.6, 2.0][i % 4]
        x = rng.normal(size=n)
        y = rng.normal(size=m) + shift
        if i % 3 == 1:  # ties within and across the samples
            x, y = np.round(x, 1), np.round(y, 1)
        if i % 7 == 5:  # heavy ties: a handful of distinct values
            x, y = np.round(x * 2) / 2, np.round(y * 2) / 2
        cases.append((x, y))
    # TOFU-like forget quality: 1/(truth ratio + 1e-10) of two models over 40 questions.
    tr_model, tr_ref = rng.uniform(0.3, 1.2, 40), rng.uniform(0.4, 1.0, 40)
    cases.append((1 / (tr_model + 1e-10), 1 / (tr_ref + 1e-10)))
    return cases


def check_ks(driver, rng):
    cases = ks_cases(rng)
    out = run_driver(driver, [f"ks {len(x)} {len(y)} {nums(x)} {nums(y)}" for x, y in cases])
    worst = 0.0
    for (x, y), line in zip(cases, out):
        d, p = map(float, line.split())
        want = scipy.stats.ks_2samp(x, y)
        if d != want.statistic:
            fail(f"ks_2samp {len(x)}x{len(y)}: statistic {d!r} != scipy {want.statistic!r}")
        e = rel_err(p, want.pvalue)
        worst = max(worst, e)
        if e > P_RTOL:
            fail(f"ks_2samp {len(x)}x{len(y)}: p {p!r} != scipy {want.pvalue!r} (rel {e:.2e})")
    return len(cases), worst


def check_kstwo(driver, rng):
    cases = []
    for n in [1, 2, 3, 5, 10, 30, 100, 139, 140, 141, 300, 1000, 5000, 20000, 100000, 100001,
              2000000]:
        xs = np.concatenate([rng.uniform(0, 1, 5), rng.uniform(0, 3 / np.sqrt(n), 10),
                             [0.5 / n, 0.6 / n, 1 / n, 0.5, 1 - 1 / n, 1.0, 0.0]])
        cases += [(n, float(x)) for x in xs]
    out = run_driver(driver, [f"kstwo {n} {num(x)}" for n, x in cases])
    worst = 0.0
    for (n, x), line in zip(cases, out):
        got, want = float(line), float(scipy.stats.kstwo.sf(x, n))
        e = rel_err(got, want)
        worst = max(worst, e)
        if e > P_RTOL:
            fail(f"kstwo.sf({x!r}, {n}) = {got!r}, scipy {want!r} (rel {e:.2e})")
    return len(cases), worst


# ---------------------------------------------------------------------------------------------
# AUC, harmonic mean

def check_auc(driver, rng):
    cases = []
    for i in range(200):
        np_, nn = int(rng.integers(1, 60)), int(rng.integers(1, 60))
        pos, neg = rng.normal(0.3, 1, np_), rng.normal(0, 1, nn)
        if i % 2:  # ties
            pos, neg = np.round(pos), np.round(neg)
        cases.append((pos, neg))
    out = run_driver(driver, [f"auc {len(p)} {len(n)} {nums(p)} {nums(n)}" for p, n in cases])
    for (pos, neg), line in zip(cases, out):
        got = float(line)
        pairwise = (np.mean(pos[:, None] > neg[None, :]) +
                    0.5 * np.mean(pos[:, None] == neg[None, :]))
        u = scipy.stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg))
        if rel_err(got, pairwise) > 1e-14 or rel_err(got, u) > 1e-14:
            fail(f"AUC {len(pos)}x{len(neg)}: {got!r}, numpy {pairwise!r}, Mann-Whitney {u!r}")
    return len(cases)


def check_hmean(driver, rng):
    cases = [rng.uniform(0.01, 10, int(rng.integers(1, 400))) for _ in range(60)]
    cases += [np.array([1.0, 0.0, 2.0]), np.array([0.0]), np.array([3.0])]
    out = run_driver(driver, [f"hmean {len(x)} {nums(x)}" for x in cases])
    for x, line in zip(cases, out):
        got, want = float(line), float(scipy.stats.hmean(x))
        if rel_err(got, want) > 1e-15:
            fail(f"hmean of {len(x)} values: {got!r}, scipy {want!r}")
    return len(cases)


# ---------------------------------------------------------------------------------------------
# Porter stems and ROUGE

def tofu_texts(tofu_dir):
    answers, texts = [], []
    # the question/answer files (idontknow.jsonl is plain refusal lines, not JSON)
    for path in (os.path.join(tofu_dir, n) for n in ("forget01.jsonl", "retain99_first400.jsonl")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                answers.append(record["answer"])
                texts += [v for v in record.values() if isinstance(v, str)]
    return answers, texts


def check_stems(driver, texts):
    words = set()
    for t in texts:
        words.update(re.split(r"[^a-z0-9]+", t.lower()))
    words.discard("")
    words = sorted(words)
    if len(words) < 2000:
        sys.exit(f"only {len(words)} distinct words to stem; want >= 2000")
    stemmer = PorterStemmer()
    out = run_driver(driver, [f"stem {w}" for w in words])
    for w, got in zip(words, out):
        want = stemmer.stem(w)
        if got != want:
            fail(f"stem({w}) = {got}, NLTK {want}")
    return len(words)


def perturb(text, rng):
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < 0.12:
            continue  # dropped
        if r < 0.20:
            w = w.upper()
        elif r < 0.26:
            w = w + rng.choice(["ing", "s", "ed", "ly", "ness", "ation"])
        elif r < 0.30:
            w = w + rng.choice([",", ".", "\u2019s", "\u2014", "!?", "-x"])
        elif r < 0.33:
            w = rng.choice(["caf\u00e9", "na\u00efve", "M\u00f8ller", "x"]) + " " + w
        out.append(w)
        if rng.random() < 0.05:
            out.append(w)  # repeated word
    for _ in range(len(out) // 8):  # a few swaps of neighbours
        if len(out) > 1:
            i = int(rng.integers(0, len(out) - 1))
            out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out)


def check_rouge(driver, answers, rng):
    pairs = []
    for i in range(200):
        a, b = rng.choice(len(answers), 2, replace=False)
        pairs.append((answers[a], answers[b]))
    for i in range(200):
        a = answers[int(rng.integers(len(answers)))]
        pairs.append((a, perturb(a, rng)))
    pairs += [("", answers[0]), (answers[0], ""), ("", ""), ("...", "!!"), (answers[1], answers[1])]
    long_ref = " ".join(answers[:30])  # about 1000 tokens
    pairs.append((long_ref, perturb(long_ref, rng)))
    cases = [(ref, cand, stem) for ref, cand in pairs for stem in (1, 0)]
    out = run_driver(driver, [f"rouge {s} {hexstr(r)} {hexstr(c)}" for r, c, s in cases])
    exact = 0
    for (ref, cand, stem), line in zip(cases, out):
        got = [float(v) for v in line.split()]
        want = rouge_scores(ref, cand, stem)
        exact += got == want
        if any(abs(g - w) > ROUGE_TOL for g, w in zip(got, want)):
            fail(f"rouge(stem={stem}) {ref[:50]!r} | {cand[:50]!r}: {got} != {want}")
    return len(pairs), len(cases), exact


# ---------------------------------------------------------------------------------------------
# zlib, MIA scores, memorisation

def check_zlib(driver, answers, shakespeare, rng):
    texts = [a.encode("utf-8") for a in answers[:100]]
    texts += [b"", b"a", bytes(rng.integers(0, 256, 1000, dtype=np.uint8)), b"ab" * 5000]
    if shakespeare:
        texts.append(shakespeare[:100000].encode("utf-8"))
    out = run_driver(driver, [f"zlib {hexstr(t)}" for t in texts])
    for t, line in zip(texts, out):
        if int(line) != len(zlib.compress(t)):
            fail(f"zlib length of {t[:40]!r}... = {line}, Python {len(zlib.compress(t))}")
    return len(texts)


def es_open_unlearning(hits):
    n = len(hits)
    if n == 0:
        return 0.0
    for k in range(n):  # as src/evals/metrics/memorization.py, loop variable quirk included
        if all(hits[k:]):
            break
    return 1 - k / n


def check_mia(driver, rng):
    commands, wants = [], []
    for i in range(100):
        n = int(rng.integers(0, 60)) if i else 0
        lp = (-rng.exponential(2.0, n)).astype(np.float32)
        mu = (-rng.exponential(2.0, n)).astype(np.float32)
        var = rng.uniform(0, 3, n).astype(np.float32)
        var[::7] = 1e-9  # below the clamp
        k = float(rng.choice([0.05, 0.1, 0.2, 0.4, 0.6, 1.0]))
        lp64, mu64, var64 = lp.astype(np.float64), mu.astype(np.float64), var.astype(np.float64)
        count = max(1, int(n * k))
        z = (lp64 - mu64) / np.sqrt(np.maximum(var64, 1e-6))
        commands += [f"loss {n} {nums(lp)}", f"mink {num(k)} {n} {nums(lp)}",
                     f"minkpp {num(k)} {n} {nums(lp)} {nums(mu)} {nums(var)}"]
        wants += [-np.mean(lp64) if n else 0.0, -np.mean(np.sort(lp64)[:count]) if n else 0.0,
                  -np.mean(np.sort(z)[:count]) if n else 0.0]
        hits = [int(v) for v in rng.random(n) < rng.choice([0.3, 0.9, 1.0])]
        bits = "".join(map(str, hits)) or "-"
        commands += [f"em {bits}", f"es {bits}"]
        wants += [sum(hits) / n if n else 0.0, es_open_unlearning(hits)]
    out = run_driver(driver, commands)
    for cmd, want, line in zip(commands, wants, out):
        got = float(line)
        if abs(got - want) > MIA_RTOL * max(1.0, abs(want)):
            fail(f"{cmd[:60]}...: {got!r}, want {want!r}")
    return len(commands)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: test_eval_stats_vs_scipy.py DRIVER TOFU_DIR [TINYSHAKESPEARE_TXT]")
    driver, tofu_dir = sys.argv[1], sys.argv[2]
    shakespeare = ""
    if len(sys.argv) > 3 and os.path.exists(sys.argv[3]):
        with open(sys.argv[3], encoding="utf-8") as f:
            shakespeare = f.read()
    rng = np.random.default_rng(20240605)
    answers, texts = tofu_texts(tofu_dir)
    if len(answers) < 100:
        sys.exit(f"{tofu_dir}: only {len(answers)} TOFU answers")

    n_ks, ks_worst = check_ks(driver, rng)
    n_kstwo, kstwo_worst = check_kstwo(driver, rng)
    n_auc = check_auc(driver, rng)
    n_hmean = check_hmean(driver, rng)
    n_stems = check_stems(driver, texts + ([shakespeare] if shakespeare else []))
    n_pairs, n_rouge, n_rouge_exact = check_rouge(driver, answers, rng)
    n_zlib = check_zlib(driver, answers, shakespeare, rng)
    n_mia = check_mia(driver, rng)

    print(f"eval_stats vs scipy/numpy/nltk/zlib: ks_2samp {n_ks} pairs (worst p rel err "
          f"{ks_worst:.1e}), kstwo.sf {n_kstwo} (worst {kstwo_worst:.1e}), AUC {n_auc}, "
          f"hmean {n_hmean}, stems {n_stems} words, ROUGE {n_pairs} pairs x 2 stemmer settings "
          f"({n_rouge_exact}/{n_rouge} bit-identical), zlib {n_zlib}, MIA/EM/ES {n_mia}: "
          f"{len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
