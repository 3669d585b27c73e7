#!/usr/bin/env python3
# Roofline prediction of one CUDA training step (forward + backward + AdamW, gradient ascent) of a
# Llama preset on an H100 SXM: FLOPs and bytes of every launch the backend makes, time =
# max(FLOPs / peak, bytes / bandwidth) per launch. A PREDICTION, not a measurement.
# usage: /usr/bin/python3 tools/roofline.py [--seq 2048] [--batch 1] [--markdown] PRESET.yaml...
import argparse
import os
import sys

# H100 SXM5 (NVIDIA datasheet): dense bf16 tensor-core peak and HBM3 bandwidth.
PEAK_FLOPS = 989e12
PEAK_BYTES = 3.35e12
LAUNCH_S = 2e-6  # fixed cost per kernel launch (queueing + tail), a typical order of magnitude

# What a well-tuned kernel of each kind reaches on H100, for the "achievable" column (sources:
# cuBLAS bf16 GEMMs of these shapes ~75-80% of peak; FlashAttention-2 forward ~50%, backward
# ~40% of peak on H100; bandwidth-bound kernels ~85% of HBM bandwidth).
EFFICIENCY = {"gemm": 0.78, "attention_fwd": 0.50, "attention_bwd": 0.40, "memory": 0.85}

BF16, F32 = 2, 4


def read_preset(path):
    cfg = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                cfg[k] = v
    ints = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads"]
    c = {k: int(cfg[k]) for k in ints}
    c["head_dim"] = int(cfg.get("head_dim", c["hidden_size"] // c["num_attention_heads"]))
    c["tied"] = cfg.get("tie_word_embeddings", "false").lower() == "true"
    c["name"] = os.path.splitext(os.path.basename(path))[0]
    return c


class Step:
    def __init__(self):
        self.launches = []  # (group, name, kind, flops, bytes)

    def add(self, group, name, kind, flops, nbytes, count=1):
        for _ in range(count):
            self.launches.append((group, name, kind, float(flops), float(nbytes)))


def gemm(step, group, name, m, n, k, backward):
    """C[m,n] = A[m,k] B[k,n] in bf16 with fp32 accumulation; backward = dA and dB."""
    if not backward:
        step.add(group, name, "gemm", 2 * m * n * k, BF16 * (m * k + k * n + m * n))
    else:  # dA = dC B^T (bf16 out), dB = A^T dC (fp32 gradient accumulated: read + write)
        step.add(group, name + " dX", "gemm", 2 * m * n * k, BF16 * (m * n + k * n + m * k))
        step.add(group, name + " dW", "gemm", 2 * m * n * k, BF16 * (m * n + m * k) + 2 * F32 * k * n)


def model_step(c, T, B):
    D, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, KV, hd, V = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["vocab_size"]
    Q, KVD, N = H * hd, KV * hd, B * T
    s = Step()
    # attention FLOPs of one causal sample of T tokens: QK^T and PV over the lower triangle
    att_fwd = B * 2 * 2 * (T * (T + 1) / 2) * hd * H
    s.add("embedding", "embedding gather", "memory", 0, N * 4 + N * D * BF16)
    for backward in (False, True):
        for _ in range(L):
            # fused residual + RMSNorm: read x (and the residual), write x and y, fp32 rstd
            s.add("norm", "residual+rmsnorm" + (" bwd" if backward else ""), "memory", 8 * N * D,
                  N * D * BF16 * (3 if not backward else 5) + N * F32, count=2)
            gemm(s, "gemm", "qkv proj", N, Q + 2 * KVD, D, backward)
            s.add("rope", "rope" + (" bwd" if backward else ""), "memory", 6 * N * (Q + KVD),
                  2 * N * (Q + KVD) * BF16)
            if not backward:
                s.add("attention", "attention fwd", "attention_fwd", att_fwd,
                      BF16 * N * (2 * Q + 2 * KVD) + F32 * N * H)
            else:  # recompute P, then dV, dP, dS -> dQ, dK: 2.5x the forward's matmuls
                s.add("attention", "attention bwd", "attention_bwd", 2.5 * att_fwd,
                      BF16 * N * (4 * Q + 4 * KVD) + F32 * N * H * 2)
            gemm(s, "gemm", "out proj", N, D, Q, backward)
            gemm(s, "gemm", "gate+up proj", N, 2 * F, D, backward)
            s.add("swiglu", "swiglu" + (" bwd" if backward else ""), "memory", 8 * N * F,
                  N * F * BF16 * (3 if not backward else 5))
            gemm(s, "gemm", "down proj", N, D, F, backward)
        s.add("norm", "final rmsnorm" + (" bwd" if backward else ""), "memory", 8 * N * D,
              N * D * BF16 * 3)
        # fused classifier: logits tile by tile, online log-sum-exp; the backward recomputes the
        # logits, then dx and dW (3 GEMMs of the forward's size)
        cls = 2 * N * D * V
        if not backward:
            s.add("classifier", "classifier fwd", "gemm", cls, BF16 * (N * D + V * D) + F32 * N * 2)
        else:
            s.add("classifier", "classifier bwd", "gemm", 3 * cls,
                  BF16 * (2 * N * D + 2 * V * D) + F32 * V * D * 2)
    s.add("embedding", "embedding bwd", "memory", 0, N * D * BF16 + N * 4 + N * D * F32 * 2)
    n_params = param_count(c)
    # deterministic global norm (two passes over the fp32 gradients), then fused AdamW with the
    # clip scale: read w, g, m, v (fp32), write w, m, v and the bf16 copy
    s.add("optimizer", "grad norm", "memory", 2 * n_params, F32 * n_params)
    s.add("optimizer", "adamw", "memory", 12 * n_params, n_params * (4 * F32 + 3 * F32 + BF16))
    return s


def param_count(c):
    D, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, KV, hd, V = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["vocab_size"]
    block = D * H * hd + 2 * D * KV * hd + H * hd * D + 3 * D * F + 2 * D
    return L * block + D + V * D * (1 if c["tied"] else 2)


def model_flops_per_token(c, T):
    """PaLM (Chowdhery et al. 2022, appendix B): 6N + 12 L H Q T per token, N the parameters that
    take part in a matmul (the blocks and the LM head; the input embedding lookup costs none)."""
    D, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, KV, hd, V = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"], c["vocab_size"]
    n = L * (D * H * hd + 2 * D * KV * hd + H * hd * D + 3 * D * F) + V * D
    return 6 * n + 12 * L * H * hd * T, n


def predict(s, achievable):
    rows = []
    for group, name, kind, flops, nbytes in s.launches:
        eff_f = EFFICIENCY[kind] if achievable and kind != "memory" else 1.0
        eff_b = EFFICIENCY["memory"] if achievable else 1.0
        t_compute = flops / (PEAK_FLOPS * eff_f)
        t_memory = nbytes / (PEAK_BYTES * eff_b)
        rows.append((group, name, kind, flops, nbytes, max(t_compute, t_memory) + LAUNCH_S,
                     "compute" if t_compute >= t_memory else "memory"))
    return rows


def report(c, T, B, markdown):
    s = model_step(c, T, B)
    mf, n_matmul = model_flops_per_token(c, T)
    tokens = B * T
    out = []
    out.append(f"### {c['name']}: {param_count(c) / 1e6:.0f}M parameters "
               f"(N = {n_matmul / 1e6:.0f}M in matmuls), T = {T}, batch {B} -> {tokens} tokens/step")
    for achievable in (False, True):
        rows = predict(s, achievable)
        total = sum(r[5] for r in rows)
        mfu = mf * tokens / total / PEAK_FLOPS
        label = "achievable efficiencies" if achievable else "ideal roofline (100% of peak)"
        out.append("")
        out.append(f"{label}: step {total * 1e3:.2f} ms, {tokens / total:,.0f} tokens/s, "
                   f"predicted MFU {100 * mfu:.1f}% ({len(rows)} launches)")
        if not markdown and not achievable:
            continue
        groups = {}
        for g, _, _, f, b, t, bound in rows:
            e = groups.setdefault(g, [0, 0.0, 0.0, 0.0, {"compute": 0.0, "memory": 0.0}])
            e[0] += 1
            e[1] += f
            e[2] += b
            e[3] += t
            e[4][bound] += t
        out.append("")
        out.append("| kernels | launches | GFLOP | GB moved | time (ms) | share | bound by |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for g, (n, f, b, t, bound) in sorted(groups.items(), key=lambda kv: -kv[1][3]):
            by = max(bound, key=bound.get)
            out.append(f"| {g} | {n} | {f / 1e9:,.1f} | {b / 1e9:,.2f} | {t * 1e3:.3f} | "
                       f"{100 * t / total:.1f}% | {by} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("presets", nargs="+")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--markdown", action="store_true", help="tables for both columns")
    a = ap.parse_args()
    print(f"PREDICTED (roofline, not measured): H100 SXM {PEAK_FLOPS / 1e12:.0f} TFLOP/s bf16 "
          f"dense, {PEAK_BYTES / 1e12:.2f} TB/s, {LAUNCH_S * 1e6:.0f} us per launch; one GA step "
          f"(forward + backward + grad norm + AdamW), bf16 activations/weights, fp32 master "
          f"weights, gradients and Adam state.\n")
    for p in a.presets:
        print(report(read_preset(p), a.seq, a.batch, a.markdown))
        print()


if __name__ == "__main__":
    sys.exit(main())
