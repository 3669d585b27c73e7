"""ROUGE-1 and ROUGE-L as Google's rouge_score computes them, written from its documented rules,
shared by the evaluation oracle tests (rouge_score itself is not packaged by Debian): lowercase,
every run of [^a-z0-9] a separator, NLTK's Porter stemmer on tokens longer than 3 characters,
tokens that are not all [a-z0-9] dropped; ROUGE-1 counts unigram overlap, ROUGE-L the LCS;
fmeasure = 2PR/(P+R), 0 when a side has no tokens."""
import collections
import re

from nltk.stem.porter import PorterStemmer

STEMMER = PorterStemmer()


def rouge_tokens(text, use_stemmer=True):
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    tokens = re.split(r"\s+", text)
    if use_stemmer:
        tokens = [STEMMER.stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if re.match(r"^[a-z0-9]+$", t)]


def lcs_length(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def fmeasure(p, r):
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def rouge_scores(target, prediction, use_stemmer=True):
    """[rouge1 precision, recall, f1, rougeL precision, recall, f1] of prediction against target."""
    t, p = rouge_tokens(target, use_stemmer), rouge_tokens(prediction, use_stemmer)
    tc, pc = collections.Counter(t), collections.Counter(p)
    overlap = sum(min(c, pc[g]) for g, c in tc.items())
    p1, r1 = overlap / max(len(p), 1), overlap / max(len(t), 1)
    if not t or not p:
        pl = rl = 0.0
    else:
        lcs = lcs_length(t, p)
        pl, rl = lcs / len(p), lcs / len(t)
    return [p1, r1, fmeasure(p1, r1), pl, rl, fmeasure(pl, rl)]
