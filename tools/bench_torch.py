#!/usr/bin/env python3
"""PyTorch-eager peer of tools/bench_cpu.c: one training step (zero grads + forward + backward of
the mean NLL over every next token) on a Llama preset with random weights and random tokens.

Two models are timed:
  own           an HF-style Llama written with torch.nn (embedding, RMSNorm, q/k/v/o Linear without
                bias, rotate-half RoPE, causal GQA attention through scaled_dot_product_attention
                when torch >= 2 has it, SwiGLU MLP, final norm, tied LM head), cross-entropy loss;
  transformers  transformers.LlamaForCausalLM(LlamaConfig(...same sizes...)) with labels=input_ids,
                which is what users of the public unlearning frameworks run (only if importable).

With --method ga,graddiff,npo,simnpo it times instead one full unlearning step per method, the
peer of `lethe unlearn` (tools/bench_unlearn.sh): forget batch forward, per-sample sums of target
log-probs, the objective of host/objective.c (with lethe's default beta/alpha/gamma/delta), the
retain NLL term (not for ga), one backward, clip_grad_norm_(1.0), an AdamW step. NPO runs a
reference forward of the forget batch every step with a frozen copy of the model under no_grad, as
open-unlearning does (lethe caches those reference sums once per run). `--method finetune` times
`lethe finetune`'s step the same way: the token-mean NLL of one batch, backward, clip, AdamW.
UNDIAL (--method undial) runs the frozen copy's forward every step for the teacher logits, as
open-unlearning's compute_undial_loss does; CE-U (ceu) builds its target from the model's own
logits, skipping each sample's first target as lethe does.
`lethe bench` runs this script as its peer (--method M --json) and reads the JSON lines.

Sizes come from configs/models/PRESET.yaml (a flat mapping of HF config.json keys), the files that
bench_cpu reads. Runs under any torch >= 1.13 (Debian's python3-torch or a PyPI wheel).
"""
import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_preset(name):
    """configs/models/NAME.yaml as a dict; the presets are flat `key: scalar` lines."""
    path = name if name.endswith((".yaml", ".yml")) else os.path.join(ROOT, "configs", "models",
                                                                        name + ".yaml")
    cfg = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            key, val = (s.strip() for s in line.split(":", 1))
            if val in ("true", "false"):
                cfg[key] = val == "true"
            else:
                try:
                    cfg[key] = int(val)
                except ValueError:
                    cfg[key] = float(val)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    return cfg


# ---- the own model: HF LlamaForCausalLM semantics in plain torch.nn -------------------------

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.H, self.KV, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        D = c["hidden_size"]
        self.q_proj = nn.Linear(D, self.H * self.hd, bias=False)
        self.k_proj = nn.Linear(D, self.KV * self.hd, bias=False)
        self.v_proj = nn.Linear(D, self.KV * self.hd, bias=False)
        self.o_proj = nn.Linear(self.H * self.hd, D, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd).transpose(1, 2)   # (B, H, T, hd)
        k = self.k_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)  # (B, KV, T, hd)
        v = self.v_proj(x).view(B, T, self.KV, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.KV != self.H:  # GQA: query head h reads KV head h // (H / KV), like HF repeat_kv
            k = k.repeat_interleave(self.H // self.KV, dim=1)
            v = v.repeat_interleave(self.H // self.KV, dim=1)
        if HAS_SDPA:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / (self.hd ** 0.5)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            y = s.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.H * self.hd))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, Fd, eps = c["hidden_size"], c["intermediate_size"], c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(D, eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(D, eps)
        self.gate_proj = nn.Linear(D, Fd, bias=False)
        self.up_proj = nn.Linear(D, Fd, bias=False)
        self.down_proj = nn.Linear(Fd, D, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        hd = c["head_dim"]
        inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        for mod in self.modules():  # HF's _init_weights with initializer_range 0.02
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)

    def logits(self, tokens):
        # tokens (B, T); returns the logits of positions 0..T-2, i.e. of the targets tokens[:, 1:]
        T = tokens.shape[1]
        freqs = torch.outer(torch.arange(T, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()  # (T, hd), broadcast over (B, H)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        x = self.norm(x)
        return F.linear(x[:, :-1], self.embed_tokens.weight)  # tied LM head

    def forward(self, tokens):
        # tokens (B, T); returns the mean NLL of tokens[:, 1:] (HF labels=input_ids)
        logits = self.logits(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def build_transformers(c):
    import transformers
    kw = dict(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
              intermediate_size=c["intermediate_size"], num_hidden_layers=c["num_hidden_layers"],
              num_attention_heads=c["num_attention_heads"],
              num_key_value_heads=c["num_key_value_heads"], head_dim=c["head_dim"],
              rms_norm_eps=c["rms_norm_eps"], rope_theta=c["rope_theta"],
              max_position_embeddings=c["max_position_embeddings"],
              tie_word_embeddings=c["tie_word_embeddings"], attention_bias=c["attention_bias"],
              bos_token_id=c["bos_token_id"], eos_token_id=c["eos_token_id"])
    cfg = transformers.LlamaConfig(**kw)
    try:  # "sdpa" is the default where it exists; say so explicitly where the API allows
        model = transformers.LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")
    except (TypeError, ValueError, AttributeError):
        model = transformers.LlamaForCausalLM(cfg)
    model.train()  # attention_dropout is 0: the same math as eval, with autograd's bookkeeping
    impl = getattr(model.config, "_attn_implementation", "?")

    def loss_fn(tokens):
        return model(input_ids=tokens, labels=tokens).loss
    return model, loss_fn, f"transformers {transformers.__version__} ({impl})", \
        transformers.__version__


# ---- one unlearning step (--method): what `lethe unlearn` does per optimizer step --------------
#
# Per-sample sums s_i of target log-probs and the token-mean NLL, for each kind of model. For the
# transformers model these are the public framework's own code paths (open-unlearning:
# compute_batch_nll for s_i, `model(**inputs).loss` for the NLL terms); the own model computes the
# same quantities from logits of the T-1 target positions only.

def own_mean_nll(model, tokens):
    return model(tokens)


def own_sums(model, tokens):
    logits = model.logits(tokens)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                          reduction="none")
    return -nll.view(tokens.shape[0], -1).sum(-1)


def hf_mean_nll(model, tokens):
    return model(input_ids=tokens, labels=tokens).loss


def own_token_logp(model, tokens):
    """log p of every target (B, T-1): the token-level methods' per-token terms."""
    logits = model.logits(tokens)
    return -F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                            reduction="none").view(tokens.shape[0], -1)


def hf_token_logp(model, tokens):  # open-unlearning's wga.py / satimp.py lm_loss, negated
    logits = model(input_ids=tokens).logits[..., :-1, :].contiguous()
    return -F.cross_entropy(logits.view(-1, logits.size(-1)), tokens[..., 1:].reshape(-1),
                            reduction="none")


def own_logits(model, tokens):
    """Logits of the T-1 target positions (B, T-1, V): the soft-target methods' inputs."""
    return model.logits(tokens)


def hf_logits(model, tokens):
    return model(input_ids=tokens).logits[..., :-1, :]


def hf_sums(model, tokens):  # open-unlearning's compute_batch_nll, negated
    logits = model(input_ids=tokens).logits
    shifted_labels = tokens[..., 1:].contiguous()
    logits = logits[..., :-1, :].contiguous()
    nll = F.cross_entropy(logits.transpose(-1, -2), shifted_labels, reduction="none").sum(-1)
    return -nll


# lethe's method defaults (host/objective.c): beta, alpha (retain weight), gamma (forget weight),
# delta; every method but ga has the retain NLL term. finetune (`lethe finetune`): NLL of the batch.
# wga and satimp: token weights p^beta (wga) and p^beta (1 - p)^beta2 (satimp, beta2 1), detached.
METHODS = {"ga": (0.1, 0.0, 1.0, 0.0), "graddiff": (0.1, 1.0, 1.0, 0.0),
           "npo": (0.1, 1.0, 1.0, 0.0), "simnpo": (4.5, 1.0, 0.125, 0.0),
           "wga": (1.0, 1.0, 1.0, 0.0), "satimp": (5.0, 1.0, 0.1, 0.0),
           "idknll": (0.1, 1.0, 1.0, 0.0), "idkdpo": (0.1, 1.0, 1.0, 0.0),
           "task_vector": (0.1, 0.0, 1.0, 0.0),  # its steps fine-tune on the forget batch
           "undial": (10.0, 0.0, 1.0, 0.0), "ceu": (0.1, 0.0, 1.0, 0.0),
           "rmu": (0.1, 100.0, 1.0, 0.0),
           "finetune": (0.1, 0.0, 1.0, 0.0)}
SATIMP_BETA2 = 1.0


def soft_target_ce(logits, q_logits, labels):
    """open-unlearning's soft cross-entropy (compute_undial_loss, cross_entropy_unlearning_loss):
    F.cross_entropy with a probability target, mean over the rows."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                           F.softmax(q_logits.reshape(-1, q_logits.shape[-1]), dim=-1))


# RMU (open-unlearning's rmu.py, from the WMDP code): hidden states by a forward hook on one
# block during a full forward (its forward_with_cache), only the mlp.down_proj weights of blocks
# L-2..L trained, the block as deep as lethe bench takes it (bench_rmu_layer: 7 of 32).
RMU_STEERING = 20.0


def rmu_layer(c):
    return c["num_hidden_layers"] * 7 // 32


def blocks(model):
    return model.model.layers if hasattr(model, "model") else model.layers


def rmu_trained(model, layer):
    down = [(b.mlp if hasattr(b, "mlp") else b).down_proj.weight for b in blocks(model)]
    return down[max(0, layer - 2):layer + 1]


def forward_with_cache(model, mean_nll, tokens, layer):
    cache = []
    handle = blocks(model)[layer].register_forward_hook(
        lambda mod, inp, out: cache.append(out[0] if isinstance(out, tuple) else out))
    mean_nll(model, tokens)  # the whole model, as model(**inputs) with labels there
    handle.remove()
    return cache[0]


_RMU_CONTROL = {}


def rmu_control(h):
    """rmu.py's get_control_vector: torch.rand(1, 1, D) normalised times the steering
    coefficient, drawn once per run (here once per hidden size)."""
    if h.shape[-1] not in _RMU_CONTROL:
        u = torch.rand(1, 1, h.shape[-1], device=h.device)
        _RMU_CONTROL[h.shape[-1]] = u / torch.norm(u) * RMU_STEERING
    return _RMU_CONTROL[h.shape[-1]]


def activation_loss(a, b):  # compute_activation_loss with every position a target
    return ((a - b) ** 2).mean(-1).sum(-1).div(a.shape[1]).mean()


def unlearn_loss(method, model, ref, mean_nll, sums, forget, retain, timing, token_logp=None,
                 alt=None, logits_fn=None):
    """The step's loss (host/objective.c). For NPO the frozen reference model's s_i^ref of the
    forget batch is computed here, every step, under no_grad (open-unlearning's NPO does this);
    lethe computes it once per run. timing["ref"] gets the reference forward's seconds."""
    beta, alpha, gamma, delta = METHODS[method]
    if method in ("finetune", "task_vector"):
        loss = mean_nll(model, forget)
    elif method in ("ga", "graddiff"):
        loss = gamma * -mean_nll(model, forget)
    elif method == "npo":
        s = sums(model, forget)
        t0 = clock()
        with torch.no_grad():
            s_ref = sums(ref, forget)
        timing["ref"] = clock() - t0
        loss = gamma * (-2.0 / beta) * F.logsigmoid(-beta * (s - s_ref)).mean()
    elif method == "idkdpo":  # open-unlearning's compute_dpo_loss: both references every step
        s_l, s_w = sums(model, forget), sums(model, alt)
        t0 = clock()
        with torch.no_grad():
            s_l_ref, s_w_ref = sums(ref, forget), sums(ref, alt)
        timing["ref"] = clock() - t0
        loss = gamma * (-2.0 / beta) * F.logsigmoid(beta * ((s_w - s_w_ref) - (s_l - s_l_ref))).mean()
    elif method == "idknll":  # a descent on the forget batch (its answers are refusals)
        loss = gamma * mean_nll(model, forget)
    elif method in ("wga", "satimp"):
        lp = token_logp(model, forget)
        p = lp.detach().exp()
        w = p ** beta if method == "wga" else p ** beta * (1.0 - p) ** SATIMP_BETA2
        loss = gamma * (w * lp).mean()
    elif method == "undial":  # compute_undial_loss: the teacher's forward every step
        logits = logits_fn(model, forget)
        t0 = clock()
        with torch.no_grad():
            teacher = logits_fn(ref, forget)
            mask = torch.zeros_like(teacher)  # as compute_undial_loss builds it
            mask.scatter_(-1, forget[:, 1:].unsqueeze(-1), 1.0)
            teacher = teacher - mask * beta
        timing["ref"] = clock() - t0
        loss = gamma * soft_target_ce(logits, teacher, forget[:, 1:])
    elif method == "ceu":  # cross_entropy_unlearning_loss, the first target ignored as lethe does
        logits = logits_fn(model, forget)[:, 1:]
        q = logits.detach().clone()
        q.scatter_(-1, forget[:, 2:].unsqueeze(-1), float("-inf"))
        loss = gamma * soft_target_ce(logits, q, forget[:, 2:])
    elif method == "rmu":
        layer = rmu_layer(model.config.to_dict() if hasattr(model, "config") else model.c)
        h = forward_with_cache(model, mean_nll, forget, layer)
        forget_loss = activation_loss(h, rmu_control(h).to(h.dtype).expand_as(h))
        h_r = forward_with_cache(model, mean_nll, retain, layer)
        t0 = clock()
        with torch.no_grad():
            h_ref = forward_with_cache(ref, mean_nll, retain, layer)
        timing["ref"] = clock() - t0
        return gamma * forget_loss + alpha * activation_loss(h_r, h_ref.to(h_r.dtype))
    elif method == "simnpo":
        n = forget.shape[1] - 1  # every token after the first is a target
        loss = gamma * (-2.0 / beta) * F.logsigmoid(beta * (-sums(model, forget) / n - delta)).mean()
    else:
        raise ValueError(method)
    if alpha != 0:
        loss = loss + alpha * mean_nll(model, retain)
    return loss


def make_adamw(model, lr=1e-5, weight_decay=0.01):
    """torch.optim.AdamW as HF Trainer builds it: decay on matrices only, fused where the build
    supports it (Trainer's default optim is adamw_torch_fused for torch >= 2.8)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True), "fused"
    except (TypeError, RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8), "for-loop"


# The clock of the timed phases: on a GPU the queued work must finish before the time is read.
DEVICE = "cpu"
AUTOCAST = None  # torch.autocast("cuda", torch.bfloat16) for --device cuda --dtype bf16


def clock():
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def autocast():
    """bf16 mixed precision as HF Trainer's bf16=True: fp32 parameters and AdamW state, the
    forward and backward under autocast."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if AUTOCAST else contextlib.nullcontext()


def time_unlearn_steps(method, model, mean_nll, sums, forget, retain, warmup, steps,
                       token_logp=None, alt=None, logits_fn=None):
    """Median seconds of one step: zero grads, forward(s) and loss, backward, clip_grad_norm_(1.0),
    AdamW step. The split: fwd (forward + loss, including NPO's reference forward), ref (that
    reference forward alone), bwd, opt (clip + AdamW)."""
    import copy
    ref = None
    if method in ("npo", "idkdpo", "undial", "rmu"):
        ref = copy.deepcopy(model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    if method == "rmu":  # the optimizer holds the trained tensors only (rmu.py create_optimizer)
        c = model.config.to_dict() if hasattr(model, "config") else model.c
        trained = {id(w) for w in rmu_trained(model, rmu_layer(c))}
        for p in model.parameters():
            p.requires_grad_(id(p) in trained)
    opt, opt_kind = make_adamw(model)
    params = [p for p in model.parameters() if p.requires_grad]
    fwd, refs, bwd, upd, step, loss = [], [], [], [], [], float("nan")
    for i in range(warmup + steps):
        timing = {"ref": 0.0}
        t0 = clock()
        opt.zero_grad()
        with autocast():
            out = unlearn_loss(method, model, ref, mean_nll, sums, forget, retain, timing,
                               token_logp, alt, logits_fn)
        t1 = clock()
        out.backward()
        t2 = clock()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        t3 = clock()
        loss = out.item()
        if i >= warmup:
            fwd.append(t1 - t0)
            refs.append(timing["ref"])
            bwd.append(t2 - t1)
            upd.append(t3 - t2)
            step.append(t3 - t0)
    for p in model.parameters():  # the next method trains every tensor again
        p.requires_grad_(True)
    med = statistics.median
    return {"median_ms": 1e3 * med(step), "mean_ms": 1e3 * statistics.mean(step),
            "fwd_ms": 1e3 * med(fwd), "ref_ms": 1e3 * med(refs), "bwd_ms": 1e3 * med(bwd),
            "opt_ms": 1e3 * med(upd), "loss": loss}, opt_kind


def time_steps(model, loss_fn, tokens, warmup, steps):
    fwd, bwd, step, loss = [], [], [], float("nan")
    for i in range(warmup + steps):
        t0 = clock()
        model.zero_grad()
        with autocast():
            out = loss_fn(tokens)
        t1 = clock()
        out.backward()
        t2 = clock()
        loss = out.item()
        if i >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
            step.append(t2 - t0)
    return {"median_ms": 1e3 * statistics.median(step), "mean_ms": 1e3 * statistics.mean(step),
            "fwd_ms": 1e3 * statistics.median(fwd), "bwd_ms": 1e3 * statistics.median(bwd),
            "loss": loss}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="s260k", help="s260k, s15m or a YAML path")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--models", default="own,transformers",
                    help="comma list of own, transformers (skipped if not importable)")
    ap.add_argument("--method", default="none",
                    help="none: zero grads + forward + backward of the mean NLL (tools/bench_cpu.c's "
                         "step); or a comma list of ga, graddiff, npo, simnpo: one full unlearning "
                         "step each (forget batch, retain batch, backward, clip, AdamW), as "
                         "`lethe unlearn` (tools/bench_unlearn.sh); finetune: `lethe finetune`'s "
                         "step (NLL of one batch, backward, clip, AdamW)")
    ap.add_argument("--simnpo-delta", type=float, default=0.0,
                    help="SimNPO margin delta (lethe's method.delta; default 0)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per model")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: the model and data on the GPU, timings synchronised")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"],
                    help="cuda: bf16 autocast over fp32 parameters (HF Trainer bf16=True), or "
                         "fp32 (TF32 off)")
    args = ap.parse_args()
    global DEVICE, AUTOCAST
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_torch: --device cuda: torch.cuda.is_available() is False")
        DEVICE = "cuda"
        AUTOCAST = args.dtype == "bf16"
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    beta, alpha, gamma, _ = METHODS["simnpo"]
    METHODS["simnpo"] = (beta, alpha, gamma, args.simnpo_delta)
    methods = [] if args.method == "none" else [m.strip() for m in args.method.split(",")]
    for m in methods:
        if m not in METHODS:
            sys.exit(f"bench_torch: unknown method '{m}' (none, or a list of {', '.join(METHODS)})")

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    c = read_preset(args.preset)
    if args.seq > c["max_position_embeddings"]:
        sys.exit(f"bench_torch: --seq {args.seq} is more than max_position_embeddings "
                 f"{c['max_position_embeddings']}")
    preset = os.path.splitext(os.path.basename(args.preset))[0]
    tokens = torch.randint(0, c["vocab_size"], (args.batch, args.seq)).to(DEVICE)
    # --method: B forget and B retain samples of T random tokens, every token after the first a
    # target (the data tools/bench_unlearn.sh gives lethe).
    forget = tokens
    retain = torch.randint(0, c["vocab_size"], (args.batch, args.seq)).to(DEVICE)
    alt = torch.randint(0, c["vocab_size"], (args.batch, args.seq)).to(DEVICE)  # idkdpo's pairs

    cfg_lines = torch.__config__.show().strip().splitlines()
    m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    blas_info = m.group(1) if m else "?"
    print(f"# python {platform.python_version()} ({sys.executable}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, BLAS_INFO={blas_info}, "
          f"mkl {torch.backends.mkl.is_available()}, mkldnn {torch.backends.mkldnn.is_available()},"
          f" sdpa {HAS_SDPA}")
    for l in cfg_lines[1:6]:
        print("#  " + l.strip())

    for which in args.models.split(","):
        which = which.strip()
        if which == "own":
            model = Llama(c)
            label = f"own torch.nn Llama ({'sdpa' if HAS_SDPA else 'explicit softmax'})"
            loss_fn = model
            tf_version = None
            mean_nll, sums, token_logp, logits_fn = own_mean_nll, own_sums, own_token_logp, own_logits
        elif which == "transformers":
            try:
                model, loss_fn, label, tf_version = build_transformers(c)
            except ImportError as ex:
                print(f"# transformers: not importable ({ex}); skipped")
                continue
            mean_nll, sums, token_logp, logits_fn = hf_mean_nll, hf_sums, hf_token_logp, hf_logits
        else:
            sys.exit(f"bench_torch: unknown model '{which}'")
        model = model.to(DEVICE)
        n_params = sum(p.numel() for p in model.parameters())
        common = {"preset": preset, "batch": args.batch, "seq": args.seq, "steps": args.steps,
                  "warmup": args.warmup, "threads": torch.get_num_threads(), "params": n_params}
        versions = {"torch": torch.__version__, "transformers": tf_version, "blas": blas_info,
                    "label": label}
        if not methods:
            r = time_steps(model, loss_fn, tokens, args.warmup, args.steps)
            tok_s = args.batch * args.seq / (r["median_ms"] / 1e3)
            print(f"torch {which} {preset} B={args.batch} T={args.seq} threads="
                  f"{torch.get_num_threads()} params={n_params}: step median {r['median_ms']:.2f} "
                  f"ms (mean {r['mean_ms']:.2f}; fwd {r['fwd_ms']:.2f}, bwd {r['bwd_ms']:.2f}) -> "
                  f"{tok_s:.0f} tokens/s, loss {r['loss']:.4f} [{label}]")
            if args.json:
                print(json.dumps({"bench": "torch-" + which, **common,
                                  **{k: round(v, 3) for k, v in r.items()},
                                  "tokens_per_s": round(tok_s, 1), **versions}))
            continue
        for method in methods:
            r, opt_kind = time_unlearn_steps(method, model, mean_nll, sums, forget, retain,
                                             args.warmup, args.steps, token_logp, alt, logits_fn)
            # Tokens the step learns from: the forget batch, plus the retain batch but for ga (the
            # NPO reference forward is not counted: lethe does not repeat it).
            n_tok = args.batch * args.seq * ((1 if METHODS[method][1] == 0 else 2) +
                                             (method == "idkdpo"))
            tok_s = n_tok / (r["median_ms"] / 1e3)
            print(f"torch {which} {method} {preset} B={args.batch} T={args.seq} threads="
                  f"{torch.get_num_threads()}: step median {r['median_ms']:.2f} ms (mean "
                  f"{r['mean_ms']:.2f}; fwd {r['fwd_ms']:.2f} [ref {r['ref_ms']:.2f}], bwd "
                  f"{r['bwd_ms']:.2f}, clip+adamw {r['opt_ms']:.2f}) -> {tok_s:.0f} tokens/s, "
                  f"loss {r['loss']:.4f} [{label}, AdamW {opt_kind}]")
            if args.json:
                print(json.dumps({"bench": "torch-" + which, "method": method, **common,
                                  "tokens_per_step": n_tok, "delta": METHODS[method][3],
                                  **{k: round(v, 3) for k, v in r.items()},
                                  "tokens_per_s": round(tok_s, 1), "adamw": opt_kind,
                                  **versions}))


if __name__ == "__main__":
    main()
