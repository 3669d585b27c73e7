# Oracle for whole unlearning/finetuning steps: `lethe unlearn` / `lethe finetune` runs two
# optimizer steps of every objective (ga; graddiff with nll and kl retain terms; npo; simnpo;
# wga; satimp; undial; ceu; idknll; idkdpo; task_vector; finetune) with SGD and AdamW (decoupled weight decay on 2-D weights only, gradient clipping),
# and PyTorch autograd (float64) does the same two steps from the same start model and data with
# torch.optim.SGD / torch.optim.AdamW / torch.nn.utils.clip_grad_norm_. The losses are written
# here from the definitions, independently of host/objective.c:
#   NLL(B) = -sum_i s_i / sum_i n_i                       (token mean; s_i: sum of target log-probs)
#   ga       L = gamma * (-NLL(F))
#   graddiff L = gamma * (-NLL(F)) + alpha * R
#   npo      L = gamma * (-(2/beta) mean_i log sigmoid(-beta (s_i - s_i^ref))) + alpha * R
#   simnpo   L = gamma * (-(2/beta) mean_i log sigmoid(beta (-s_i/n_i - delta))) + alpha * R
#   wga      L = gamma * mean_t(w_t log p_t) + alpha * R, w_t = p_t^beta, detached (mean over all
#            forget targets t of the batch; open-unlearning's wga.py)
#   satimp   the same with w_t = p_t^beta (1 - p_t)^beta2 (open-unlearning's satimp.py)
#   undial   L = gamma * mean_t H(q_t, p_t) + alpha * R, q_t = softmax(z_ref,t - beta onehot(y_t))
#            from the frozen start model, detached; the mean over every position of each forget
#            sample (the question's unshifted: open-unlearning's compute_undial_loss), or with
#            positions: answer over the forget targets only
#   ceu      L = gamma * mean_t H(q_t, p_t) + alpha * R, q_t = softmax(z_t with z_t[y_t] = -inf),
#            detached, the mean over each sample's targets after its first ignore_first
#   rmu      L = gamma * mean_i (sum_t |h_t - c u|^2 / D) / n_i
#              + alpha * mean_i (sum_t |h_t - h0_t|^2 / D) / n_i over the retain batch,
#            h_t the residual stream after block `layer` at target token t, taken from a FULL
#            forward (lethe's stops after that block: equal results show the early stop exact),
#            h0 the frozen start model's, u lethe's seeded uniform vector normalised (the
#            generator re-implemented here), a sample without targets adding 0 to the mean;
#            only the trained tensors move (default: mlp.down_proj of blocks layer-2..layer)
#   idknll   L = gamma * NLL(F) + alpha * R (F holds the refusal answers: a descent on it)
#   idkdpo   L = gamma * (-(2/beta) mean_i log sigmoid(beta ((s_w,i - s_w,i^ref) - (s_i - s_i^ref))))
#            + alpha * R, s_w,i: sample i of the alternate (preferred) set; the torch side
#            recomputes both reference sums every step (open-unlearning's compute_dpo_loss)
#   task_vector  the steps minimise NLL(F) (+ alpha * R); the model written is
#            w0 - gamma * (w_steps - w0), compared here after applying the same negation
#   finetune L = NLL(D)
#   R = NLL(retain batch), or the mean over the retain targets of KL(p_ref || p_theta) with p_ref
#   the frozen start model. The torch side recomputes s_i^ref with the frozen start model at
#   every step, so matching lethe's losses proves its cached reference sums equivalent.
# Every step uses the whole forget and retain set (set sizes == train.batch_size), so lethe's
# data order does not matter; micro_batch_size 3 of 7 exercises gradient accumulation.
# Checks, per case: every tensor's two-step update (w2 - w0) within relative error 1e-4 of
# torch's and the whole tensor within 1e-6; per step, metrics.jsonl's loss, forget_loss,
# retain_loss, forget_nll, retain_nll, retain_kl (rel 1e-5 of the value, or of a tenth of the
# step's largest metric for a far smaller one: the KL near the start model), grad_norm before
# clipping (rel 1e-4) and lr. Clipping must trigger in the AdamW cases; NPO's step 2 must see
# s_i != s_i^ref.
#
# Run with Debian's /usr/bin/python3 (python3-torch 1.13, python3-h5py, python3-numpy from apt):
#   test_objectives_vs_torch.py LETHE WORKDIR [CASE_SUBSTRING]
import json
import math
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_llama as tl  # noqa: E402

BATCH, MICRO, STEPS = 7, 3, 2
UPDATE_TOL, TENSOR_TOL, METRIC_TOL, NORM_TOL = 1e-4, 1e-6, 1e-5, 1e-4

MODELS = {
    # name: D, F, L, H, KV, hd, V, tied, bias
    "gqa_untied_bias": (24, 37, 2, 6, 2, 6, 53, 0, 1),
    "mqa_tied_bias": (20, 33, 2, 4, 1, 10, 47, 1, 1),
}

# name, model, command, method keys, optimizer keys. Keys left out take lethe's method defaults
# (ga: gamma 1, no retain term; graddiff/npo: beta 0.1, alpha 1, gamma 1, nll; simnpo: beta 4.5,
# gamma 0.125, alpha 1, delta 0), which the torch side resolves from METHOD_DEFAULTS below.
# "delta": "auto" centres simnpo's sigmoid argument on the start model's mean -s_i/n_i so that
# the forget gradient does not vanish.
SGD = {"name": "sgd", "lr": 0.05, "weight_decay": 0, "grad_clip": 0}
SGD_NPO = dict(SGD, lr=0.01)  # NPO's gradients are ~|targets|/|F| times larger than GA's
# CE-U's dlogits (p - q) are ~p_t times GA's at a random start model: the update must stand well
# above the float32 rounding of the weights it is measured from (w2 - w0), so CE-U takes a
# larger step (and UNDIAL's defaults a slightly larger one).
SGD_SOFT = dict(SGD, lr=0.5)
ADAMW = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "grad_clip": 0.5}
CASES = [
    ("ga_untied_sgd", "gqa_untied_bias", "unlearn", {"name": "ga", "gamma": 1.5}, SGD),
    ("ga_tied_sgd", "mqa_tied_bias", "unlearn", {"name": "ga"}, SGD),
    ("graddiff_nll_sgd", "gqa_untied_bias", "unlearn",
     {"name": "graddiff", "gamma": 0.8, "alpha": 1.7, "retain_loss": "nll"}, SGD),
    ("graddiff_kl_sgd", "gqa_untied_bias", "unlearn",
     {"name": "graddiff", "gamma": 1.2, "alpha": 2.5, "retain_loss": "kl"}, SGD),
    ("npo_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "npo", "beta": 0.3, "alpha": 0.7, "gamma": 1.3}, SGD_NPO),
    ("npo_tied_sgd_defaults", "mqa_tied_bias", "unlearn", {"name": "npo"}, SGD_NPO),
    ("npo_kl_tied_sgd", "mqa_tied_bias", "unlearn",
     {"name": "npo", "beta": 0.5, "alpha": 1.5, "retain_loss": "kl"}, SGD_NPO),
    ("simnpo_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "simnpo", "beta": 0.8, "gamma": 0.6, "alpha": 0.4, "delta": "auto"}, SGD),
    ("simnpo_tied_sgd_defaults", "mqa_tied_bias", "unlearn", {"name": "simnpo"}, SGD),
    ("finetune_untied_sgd", "gqa_untied_bias", "finetune", {}, SGD),
    ("wga_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "wga", "beta": 0.5, "gamma": 2.0, "alpha": 0.5}, SGD),
    ("wga_tied_sgd_defaults", "mqa_tied_bias", "unlearn", {"name": "wga"}, SGD),
    ("satimp_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "satimp", "beta": 0.5, "beta2": 1.5, "gamma": 2.0, "alpha": 0.8}, SGD),
    ("idknll_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "idknll", "gamma": 1.4, "alpha": 0.6}, SGD),
    ("idknll_kl_tied_sgd_defaults", "mqa_tied_bias", "unlearn",
     {"name": "idknll", "retain_loss": "kl"}, SGD),
    ("idkdpo_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "idkdpo", "beta": 0.4, "gamma": 1.2, "alpha": 0.5}, SGD_NPO),
    ("idkdpo_tied_sgd_defaults", "mqa_tied_bias", "unlearn", {"name": "idkdpo"}, SGD_NPO),
    ("satimp_kl_tied_sgd", "mqa_tied_bias", "unlearn",
     {"name": "satimp", "beta": 0.4, "beta2": 2.0, "gamma": 3.0, "alpha": 0.7,
      "retain_loss": "kl"}, SGD),
    ("npo_untied_adamw_clip", "gqa_untied_bias", "unlearn",
     {"name": "npo", "beta": 0.3, "alpha": 0.7, "gamma": 1.3}, ADAMW),
    ("graddiff_kl_tied_adamw_clip", "mqa_tied_bias", "unlearn",
     {"name": "graddiff", "alpha": 0.9, "retain_loss": "kl"}, ADAMW),
    ("finetune_tied_adamw_clip", "mqa_tied_bias", "finetune", {}, ADAMW),
    ("idkdpo_kl_tied_adamw_clip", "mqa_tied_bias", "unlearn",
     {"name": "idkdpo", "beta": 0.3, "retain_loss": "kl"}, ADAMW),
    ("task_vector_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "task_vector", "gamma": 0.7}, SGD),
    ("task_vector_tied_adamw_clip", "mqa_tied_bias", "unlearn", {"name": "task_vector"}, ADAMW),
    ("wga_untied_adamw_clip", "gqa_untied_bias", "unlearn",
     {"name": "wga", "beta": 0.5, "gamma": 8.0, "alpha": 0.5}, ADAMW),
    ("undial_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "undial", "beta": 3.0, "gamma": 1.5, "alpha": 0.6}, SGD),
    ("undial_answer_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "undial", "beta": 3.0, "gamma": 1.5, "alpha": 0.6, "positions": "answer"}, SGD),
    # beta 10 at the start model: a tiny first gradient, then a steep one; SGD's update is either
    # lost in the weights' float32 rounding or amplifies it in the second step, so AdamW. Its
    # second step distils the question positions towards a model one step away: float32 logits
    # of two so close models differ by little more than their rounding, so the step is larger
    # than the other AdamW cases' (at lr 5e-4 that difference reaches 3e-4 of the update).
    ("undial_tied_adamw_defaults", "mqa_tied_bias", "unlearn", {"name": "undial"},
     dict(ADAMW, grad_clip=0, lr=2e-3)),
    ("undial_kl_tied_adamw_clip", "mqa_tied_bias", "unlearn",
     {"name": "undial", "beta": 5.0, "gamma": 6.0, "alpha": 0.8, "retain_loss": "kl"}, ADAMW),
    ("ceu_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "ceu", "gamma": 2.0, "ignore_first": 2, "alpha": 0.5, "retain_loss": "kl"},
     SGD_SOFT),
    ("ceu_tied_sgd_defaults", "mqa_tied_bias", "unlearn", {"name": "ceu"}, SGD_SOFT),
    ("ceu_untied_adamw_clip", "gqa_untied_bias", "unlearn",
     {"name": "ceu", "gamma": 8.0, "ignore_first": 0}, ADAMW),
    ("rmu_untied_sgd", "gqa_untied_bias", "unlearn",
     {"name": "rmu", "layer": 1, "steering_coeff": 3.0, "alpha": 2.0, "gamma": 1.5}, SGD),
    ("rmu_tied_sgd_layer0", "mqa_tied_bias", "unlearn",
     {"name": "rmu", "layer": 0, "steering_coeff": 2.0, "alpha": 5.0}, SGD),
    # the gradient through attention, norms and the embedding to the hidden-state loss
    ("rmu_untied_sgd_block0_embed", "gqa_untied_bias", "unlearn",
     {"name": "rmu", "layer": 1, "steering_coeff": 3.0, "alpha": 2.0},
     dict(SGD, lr=0.02, train_only=["model.layers.0.", "model.embed_tokens.weight",
                                    "model.layers.1.mlp.down_proj.weight"])),
    ("rmu_tied_adamw_clip_defaults", "mqa_tied_bias", "unlearn", {"name": "rmu", "layer": 1},
     ADAMW),
]

# The defaults (public benchmark recipes): beta, alpha, gamma, delta, retain_loss.
METHOD_DEFAULTS = {
    "ga": (0.1, 0.0, 1.0, 0.0, "none"),
    "graddiff": (0.1, 1.0, 1.0, 0.0, "nll"),
    "npo": (0.1, 1.0, 1.0, 0.0, "nll"),
    "simnpo": (4.5, 1.0, 0.125, 0.0, "nll"),
    "wga": (1.0, 1.0, 1.0, 0.0, "nll"),
    "satimp": (5.0, 1.0, 0.1, 0.0, "nll"),
    "idknll": (0.1, 1.0, 1.0, 0.0, "nll"),
    "idkdpo": (0.1, 1.0, 1.0, 0.0, "nll"),
    "task_vector": (0.1, 0.0, 1.0, 0.0, "none"),
    "undial": (10.0, 0.0, 1.0, 0.0, "nll"),
    "ceu": (0.1, 0.0, 1.0, 0.0, "none"),
    "rmu": (0.1, 100.0, 1.0, 0.0, "hidden"),
}
RMU_STEERING_DEFAULT = 20.0


def lethe_uniforms(seed, n):
    """rng_uniform of host/rng.c: xoshiro256** seeded by splitmix64, 24-bit floats."""
    M = (1 << 64) - 1
    x, s = seed & M, []
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & M
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        s.append(z ^ (z >> 31))
    rotl = lambda v, k: ((v << k) | (v >> (64 - k))) & M
    out = []
    for _ in range(n):
        result = (rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 17) & M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        out.append(np.float32(result >> 40) * np.float32(1.0 / 16777216.0))
    return np.array(out, dtype=np.float32)


def rmu_control(seed, D, c):
    """train.c's control vector c * u / |u|, u from rng_seed(seed ^ "RMU"), as float32."""
    u = lethe_uniforms(seed ^ 0x524D55, D)
    norm = math.sqrt(sum(float(v) * float(v) for v in u))
    return torch.tensor(np.array([np.float32(c * float(v) / norm) for v in u]),
                        dtype=torch.float64)


def hidden_mse_sums(cfg, p, data, layer, target):
    """Per sample: the sum over its targets of mean_d (h_t - y_t)^2 with h_t the residual stream
    after block `layer` at the target token's position (from a full forward), y_t the vector
    `target` or (a callable) its row of another model's states; and the target count."""
    tokens, offsets, mask = data
    sums, counts = [], []
    for s in range(len(offsets) - 1):
        a, b = int(offsets[s]), int(offsets[s + 1])
        m = torch.tensor(mask[a + 1:b].astype(bool))
        if b - a < 2 or not m.any():
            sums.append(torch.zeros((), dtype=torch.float64))
            counts.append(0)
            continue
        toks = [int(t) for t in tokens[a:b]]
        states = []
        tl.forward_logprobs(cfg, p, toks, states)
        h = states[layer][1:][m]  # the target tokens' own positions
        y = target(toks)[1:][m] if callable(target) else target
        sums.append(((h - y) ** 2).mean(-1).sum())
        counts.append(int(m.sum()))
    return sums, counts


def rmu_term(sums, counts):
    return sum(s / n for s, n in zip(sums, counts) if n > 0) / len(counts)
BETA2_DEFAULTS = {"satimp": 1.0}  # method.beta2, SatImp's exponent of (1 - p_t)
IGNORE_FIRST_DEFAULTS = {"ceu": 1}  # method.ignore_first


def token_logprobs(cfg, p, tokens, offsets, loss_mask):
    """log p of every masked target of every sample, in order (T,)."""
    out = []
    for s in range(len(offsets) - 1):
        a, b = int(offsets[s]), int(offsets[s + 1])
        m = torch.tensor(loss_mask[a + 1:b].astype(bool))
        if b - a < 2 or not m.any():
            continue
        out.append(tl.forward_sample(cfg, p, [int(t) for t in tokens[a:b]])[m])
    return torch.cat(out)


def fail(msg):
    sys.exit(f"FAIL: {msg}")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def rel(a, b, floor=1e-30):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) /
                 max(float(np.linalg.norm(np.asarray(b))), floor))


def kl_sum(cfg, p, p0, data):
    """Sum over the retain targets of KL(p_ref || p_theta) and the target count."""
    tokens, offsets, mask = data
    total, count = torch.zeros((), dtype=torch.float64), 0
    for s in range(len(offsets) - 1):
        a, b = int(offsets[s]), int(offsets[s + 1])
        m = torch.tensor(mask[a + 1:b].astype(bool))
        if b - a < 2 or not m.any():
            continue
        toks = [int(t) for t in tokens[a:b]]
        lp = tl.forward_logprobs(cfg, p, toks)[:-1][m]
        with torch.no_grad():
            lq = tl.forward_logprobs(cfg, p0, toks)[:-1][m]
        total = total + (lq.exp() * (lq - lp)).sum()
        count += int(m.sum())
    return total, count


def soft_target_ce(cfg, p, p0, data, kind, beta, ignore_first, all_positions):
    """Per-row cross-entropies H(q_t, p_t) of the soft-target methods, q_t detached: undial's
    from the frozen start model with the target's logit lowered by beta, ceu's from the model's
    own logits without the target; each sample's first ignore_first targets left out. With
    all_positions, every position of each sample is a row (the question's too, as
    open-unlearning's compute_undial_loss), shifted only where the mask has an answer target."""
    tokens, offsets, mask = data
    out = []
    for s in range(len(offsets) - 1):
        a, b = int(offsets[s]), int(offsets[s + 1])
        m = torch.tensor(mask[a + 1:b].astype(bool))
        rows_mask = torch.ones_like(m) if all_positions else m
        if b - a < 2 or not rows_mask.any():
            continue
        toks = [int(t) for t in tokens[a:b]]
        y = torch.tensor(toks[1:])[rows_mask]
        shifted = m[rows_mask]  # the rows whose target is an answer token
        lp = tl.forward_logprobs(cfg, p, toks)[:-1][rows_mask]  # (rows, V) log p
        with torch.no_grad():
            # log-softmax differs from the logits by a per-row constant: same softmax
            src = (tl.forward_logprobs(cfg, p0, toks)[:-1][rows_mask] if kind == "undial"
                   else lp.detach()).clone()
            rows = torch.arange(len(y))[shifted]
            if kind == "undial":
                src[rows, y[shifted]] -= beta
            else:
                src[rows, y[shifted]] = float("-inf")
            q = torch.softmax(src, dim=-1)
        out.append((-(q * lp).sum(-1))[ignore_first:])
    return torch.cat(out)


# ---- the objectives, from the definitions -------------------------------------------

def torch_loss(kind, mp, cfg, p, p0, forget, retain, alt):
    """Loss and the metrics lethe logs for one step (every sample of both sets)."""
    met = {}
    if kind == "rmu":  # no classifier: no NLL metrics
        layer, control = mp[7]
        forget_loss = mp[2] * rmu_term(*hidden_mse_sums(cfg, p, forget, layer, control))

        def ref_states(toks):
            with torch.no_grad():
                states = []
                tl.forward_logprobs(cfg, p0, toks, states)
                return states[layer]
        R = rmu_term(*hidden_mse_sums(cfg, p, retain, layer, ref_states))
        met["forget_loss"] = forget_loss
        met["retain_loss"] = mp[1] * R
        met["loss"] = forget_loss + mp[1] * R
        return met["loss"], met, None
    s, n = tl.sample_sums(cfg, p, *forget)
    S, N = torch.stack(s), torch.tensor(n, dtype=torch.float64)
    nll_f = -S.sum() / N.sum()
    if kind == "finetune":
        met["train_loss"] = nll_f
        met["train_nll"] = nll_f
        met["loss"] = nll_f
        return nll_f, met, None
    beta, alpha, gamma, delta, retain_loss, beta2, ignore_first, rmu = mp[:8]
    extra = None
    if kind in ("ga", "graddiff"):
        forget_loss = gamma * (-nll_f)
    elif kind == "npo":
        with torch.no_grad():  # s_i^ref recomputed from the frozen start model every step
            s_ref = torch.stack(tl.sample_sums(cfg, p0, *forget)[0])
        forget_loss = gamma * (-(2.0 / beta) *
                               torch.nn.functional.logsigmoid(-beta * (S - s_ref)).mean())
        extra = float((S - s_ref).detach().abs().max())
    elif kind == "simnpo":
        forget_loss = gamma * (-(2.0 / beta) *
                               torch.nn.functional.logsigmoid(beta * (-S / N - delta)).mean())
    elif kind == "idknll":
        forget_loss = gamma * nll_f
    elif kind == "task_vector":  # gamma scales the negation, not this loss
        forget_loss = nll_f
    elif kind == "idkdpo":
        Sw = torch.stack(tl.sample_sums(cfg, p, *alt)[0])
        with torch.no_grad():  # both reference sums recomputed every step
            s_ref = torch.stack(tl.sample_sums(cfg, p0, *forget)[0])
            sw_ref = torch.stack(tl.sample_sums(cfg, p0, *alt)[0])
        x = (Sw - sw_ref) - (S - s_ref)
        forget_loss = gamma * (-(2.0 / beta) * torch.nn.functional.logsigmoid(beta * x).mean())
        extra = float(x.detach().abs().max())
    elif kind in ("undial", "ceu"):
        all_positions = mp[8]
        forget_loss = gamma * soft_target_ce(cfg, p, p0, forget, kind, beta, ignore_first,
                                             all_positions).mean()
    elif kind in ("wga", "satimp"):
        lp = token_logprobs(cfg, p, *forget)
        prob = lp.detach().exp()
        w = prob ** beta if kind == "wga" else prob ** beta * (1.0 - prob) ** beta2
        forget_loss = gamma * (w * lp).mean()
    else:
        fail(f"unknown method {kind}")
    met["forget_loss"] = forget_loss
    met["forget_nll"] = nll_f
    loss = forget_loss
    if alpha != 0 and retain_loss != "none":
        if retain_loss == "nll":
            rs, rn = tl.sample_sums(cfg, p, *retain)
            nll_r = -torch.stack(rs).sum() / sum(rn)
            R = nll_r
            met["retain_nll"] = nll_r
        else:
            kl, cnt = kl_sum(cfg, p, p0, retain)
            R = kl / cnt
            met["retain_kl"] = R
        met["retain_loss"] = alpha * R
        loss = loss + alpha * R
    met["loss"] = loss
    return loss, met, extra


def trained_names(names, patterns):
    """The tensors optim.train_only's patterns select (substrings of the name)."""
    return {k for k in names if any(pat in k for pat in patterns)}


def torch_run(case_kind, mp, opt, cfg, w0, forget, retain, alt, trained=None):
    """Two optimizer steps in float64; returns final params and per-step metrics. trained: the
    only tensors that train (None: all)."""
    p = {k: v.detach().clone().requires_grad_(trained is None or k in trained)
         for k, v in w0.items()}
    p0 = {k: v.detach().clone() for k, v in w0.items()}
    names = sorted(k for k in p if p[k].requires_grad)
    params = [p[k] for k in names]
    if opt["name"] == "sgd":
        o = torch.optim.SGD(params, lr=opt["lr"])
    else:  # HF Trainer grouping: decay only on 2-D weight matrices
        o = torch.optim.AdamW([{"params": [x for x in params if x.dim() == 2],
                                "weight_decay": opt["weight_decay"]},
                               {"params": [x for x in params if x.dim() != 2],
                                "weight_decay": 0.0}], lr=opt["lr"])
    steps, extras = [], []
    for _ in range(STEPS):
        o.zero_grad()
        loss, met, extra = torch_loss(case_kind, mp, cfg, p, p0, forget, retain, alt)
        loss.backward()
        norm = float(torch.sqrt(sum((x.grad ** 2).sum() for x in params)))
        if opt["grad_clip"] > 0:
            if not norm > opt["grad_clip"]:
                fail(f"grad norm {norm:.3g} <= grad_clip {opt['grad_clip']}: clipping untested")
            torch.nn.utils.clip_grad_norm_(params, opt["grad_clip"])
        o.step()
        met = {k: float(v) for k, v in met.items()}
        met["grad_norm"] = norm
        steps.append(met)
        extras.append(extra)
    return {k: v.detach() for k, v in p.items()}, steps, extras


# ---- setup --------------------------------------------------------------------------------

def make_model(work, name, rng, lethe):
    return tl.make_random_model(lethe, os.path.join(work, name + ".h5"), MODELS[name], rng,
                                seed=11)


def make_data(path, rng, V, lengths, empty=()):
    """Variable-length samples; a masked prompt of 1-3 positions, then ~85% of the answer
    positions are targets; every sample keeps >= 1 target except those listed in empty."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(0, V, offsets[-1])
    mask = np.zeros(offsets[-1], dtype=np.uint8)
    for s, n in enumerate(lengths):
        a = offsets[s]
        prompt = int(rng.integers(1, min(3, n - 1) + 1))
        m = (rng.random(n) < 0.85).astype(np.uint8)
        m[:prompt] = 0
        m[n - 1] = 1
        mask[a:a + n] = 0 if s in empty else m
    tl.write_dataset(path, tokens, offsets, mask, V)
    return tokens, offsets, mask


def write_config(path, case, model, forget, retain, out, method, opt, alt=None):
    name, _, command, _, _ = case
    lines = [f"model: {model}", f"out: {out}", "output:", "  dtype: float32", "data:"]
    if command == "finetune":
        lines.append(f"  train: {forget}")
    else:
        lines += [f"  forget: {forget}", f"  retain: {retain}"]
        lines += [f"  forget_alt: {alt}"] if alt else []
        lines += ["method:"]
        lines += [f"  {k}: {v}" for k, v in method.items()]
    lines += ["optim:", f"  name: {opt['name']}", f"  weight_decay: {opt['weight_decay']}",
              *([f"  train_only: [{', '.join(opt['train_only'])}]"] if "train_only" in opt else []),
              f"  grad_clip: {opt['grad_clip']}", "  schedule: constant", "  warmup_steps: 0",
              "  warmup_epochs: 0",
              "train:", f"  max_steps: {STEPS}", f"  batch_size: {BATCH}",
              f"  micro_batch_size: {MICRO}", "  state_every: 0", "  log_every: 0", "seed: 5"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    lethe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    t_start = time.time()
    rng = np.random.default_rng(2024)
    alt_rng = np.random.default_rng(7)  # its own stream: the other sets stay as they were
    models, data = {}, {}
    for name in MODELS:
        V = MODELS[name][6]
        models[name] = make_model(work, name, rng, lethe)
        fpath, rpath = (os.path.join(work, f"{name}_{k}.h5") for k in ("forget", "retain"))
        forget = make_data(fpath, rng, V, [9, 4, 13, 6, 11, 3, 8])
        retain = make_data(rpath, rng, V, [7, 12, 5, 10, 4, 14, 6], empty=(4,))
        apath = os.path.join(work, f"{name}_alt.h5")  # idkdpo's preferred answers, paired by index
        alt = make_data(apath, alt_rng, V, [5, 10, 7, 12, 4, 9, 6])
        data[name] = (fpath, forget, rpath, retain, apath, alt)

    failures = []
    cases = [c for c in CASES if len(sys.argv) < 4 or sys.argv[3] in c[0]]  # optional filter
    for case in cases:
        cname, mname, command, method, opt = case
        fpath, forget, rpath, retain, apath, alt = data[mname]
        cfg, w0 = tl.read_checkpoint(models[mname])
        method = dict(method)
        kind = "finetune" if command == "finetune" else method["name"]
        mp = None
        if kind != "finetune":
            b, a, g, d, r = METHOD_DEFAULTS[kind]
            if method.get("delta") == "auto":
                with torch.no_grad():
                    s, n = tl.sample_sums(cfg, w0, *forget)
                method["delta"] = round(float(np.mean([-float(x) / k for x, k in zip(s, n)])), 3)
            mp = (float(method.get("beta", b)), float(method.get("alpha", a)),
                  float(method.get("gamma", g)), float(method.get("delta", d)),
                  method.get("retain_loss", r),
                  float(method.get("beta2", BETA2_DEFAULTS.get(kind, 0.0))),
                  int(method.get("ignore_first", IGNORE_FIRST_DEFAULTS.get(kind, 0))),
                  None,
                  method.get("positions", "all" if kind == "undial" else "answer") == "all")
            if kind == "rmu":
                layer = int(method["layer"])
                mp = mp[:7] + ((layer, rmu_control(5, cfg["hidden_size"], float(
                    method.get("steering_coeff", RMU_STEERING_DEFAULT)))),) + mp[8:]
        out = os.path.join(work, cname)
        yaml_path = os.path.join(work, cname + ".yaml")
        train_data = rpath if kind == "finetune" else fpath  # finetune: a set with an empty sample
        write_config(yaml_path, case, models[mname], train_data, rpath, out, method, opt,
                     apath if kind == "idkdpo" else None)
        run([lethe, command, yaml_path, f"optim.lr={opt['lr']}"])  # an override, too
        with open(os.path.join(out, "metrics.jsonl")) as f:
            got_steps = [json.loads(line) for line in f if line.strip()]
        _, w_lethe = tl.read_checkpoint(os.path.join(out, "model.h5"))

        t_data = retain if kind == "finetune" else forget
        trained = None
        if kind == "rmu":
            layer = mp[7][0]
            trained = trained_names(w0, opt.get("train_only", [
                f"model.layers.{l}.mlp.down_proj.weight" for l in range(max(0, layer - 2),
                                                                         layer + 1)]))
        w_torch, want_steps, extras = torch_run(kind, mp, opt, cfg, w0, t_data, retain, alt,
                                                trained)
        if kind == "task_vector":
            w_torch = {k: w0[k] - mp[2] * (w_torch[k] - w0[k]) for k in w_torch}

        errs = []
        if len(got_steps) != STEPS:
            errs.append(f"metrics.jsonl has {len(got_steps)} steps, expected {STEPS}")
        if set(w_lethe) != set(w_torch):
            errs.append(f"tensor names differ: {set(w_lethe) ^ set(w_torch)}")
        worst_upd, worst_full, worst_met, worst_norm = 0.0, 0.0, 0.0, 0.0
        worst_name = ""
        for k in sorted(set(w_lethe) & set(w_torch)):
            a, b, z = (x.detach().numpy() for x in (w_lethe[k], w_torch[k], w0[k]))
            if trained is not None and k not in trained:  # frozen: lethe must not move it
                if not np.array_equal(a, z):
                    errs.append(f"{k}: frozen, but lethe changed it")
                continue
            if not np.linalg.norm(b - z) > 0:
                errs.append(f"{k}: torch's update is zero; the case tests nothing")
                continue
            eu, ef = rel(a - z, b - z), rel(a, b)
            if eu > worst_upd:
                worst_upd, worst_name = eu, k
            worst_full = max(worst_full, ef)
            if eu > UPDATE_TOL:
                errs.append(f"{k}: update rel error {eu:.2e} > {UPDATE_TOL:g}")
            if ef > TENSOR_TOL:
                errs.append(f"{k}: tensor rel error {ef:.2e} > {TENSOR_TOL:g}")
        for step, (got, want) in enumerate(zip(got_steps, want_steps), 1):
            if abs(got.get("lr", -1) - opt["lr"]) > 1e-6 * opt["lr"]:
                errs.append(f"step {step}: lr {got.get('lr')} != {opt['lr']} (constant, no warm-up)")
            scale = max(abs(v) for k, v in want.items() if k != "grad_norm")
            for key, v in want.items():
                if key not in got:
                    errs.append(f"step {step}: metrics.jsonl lacks {key}")
                    continue
                if key == "grad_norm":
                    e = abs(got[key] - v) / abs(v)
                    worst_norm = max(worst_norm, e)
                    if e > NORM_TOL:
                        errs.append(f"step {step}: grad_norm {got[key]} vs torch {v} (rel {e:.2e})")
                    continue
                # relative to the value, or, for a value far below the step's largest metric (the
                # KL term near the start model, a near-cancelling total), to a tenth of that:
                # lethe sums float32 per-token terms of the loss's size
                e = abs(got[key] - v) / max(abs(v), 0.1 * scale, 1e-12)
                worst_met = max(worst_met, e)
                if e > METRIC_TOL:
                    errs.append(f"step {step}: {key} {got[key]!r} vs torch {v!r} (rel {e:.2e})")
        note = ""
        if kind in ("npo", "idkdpo"):
            # step 2 must see s_i != s_i^ref, or the reference sums were not exercised
            if not extras[1] > 0.05:
                errs.append(f"step 2: max |s_i - s_i^ref| = {extras[1]:.3g}; raise the lr")
            note = f", step-2 max|s-s_ref| {extras[1]:.3g}"
        if opt["grad_clip"] > 0:
            note += f", grad_norm {want_steps[0]['grad_norm']:.3g}/{want_steps[1]['grad_norm']:.3g}" \
                    f" clipped to {opt['grad_clip']}"
        status = "ok  " if not errs else "FAIL"
        print(f"{status} {cname:30s} update {worst_upd:.2e} ({worst_name})  tensor {worst_full:.2e}  "
              f"metrics {worst_met:.2e}  grad_norm {worst_norm:.2e}{note}", flush=True)
        for e in errs:
            print(f"       {e}")
        if errs:
            failures.append(cname)
    if failures:
        fail(f"{len(failures)} case(s) disagree with torch autograd: {', '.join(failures)}")
    print(f"PASS: {len(cases)} cases, {STEPS} steps each, match torch within update {UPDATE_TOL:g}, "
          f"tensor {TENSOR_TOL:g}, metrics {METRIC_TOL:g} ({time.time() - t_start:.1f} s)")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
