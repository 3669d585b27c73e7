# Independent reference: HF LlamaForCausalLM semantics written directly in PyTorch (float64),
# reading weights from a lethe checkpoint with h5py. Run with Debian's /usr/bin/python3
# (python3-torch, python3-h5py, python3-numpy from apt).
import h5py
import numpy as np
import torch

CONFIG_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
               "rope_theta", "max_position_embeddings", "tie_word_embeddings", "attention_bias",
               "bos_token_id", "eos_token_id"]


def read_checkpoint(path, dtype=torch.float64):
    """Returns (config dict, {HF name: tensor requiring grad})."""
    params = {}
    with h5py.File(path, "r") as f:
        cfg = {k: f["config"].attrs[k].item() for k in CONFIG_KEYS}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith(("provenance", "tokenizer")):
                params[name.replace("/", ".")] = torch.tensor(
                    obj[...].astype(np.float64), dtype=dtype, requires_grad=True)
        f.visititems(visit)
    return cfg, params


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope(x, theta):
    # x (T, heads, hd); HF rotate-half with positions 0..T-1
    T, _, hd = x.shape
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None, :].to(x.dtype), emb.sin()[:, None, :].to(x.dtype)
    return x * cos + rotate_half(x) * sin


def forward_logprobs(cfg, p, tokens, states=None):
    """(T, V) log-softmax rows of one sample: row t is the distribution of token t+1. With a list
    `states`, the residual stream after each block (T, D) is appended to it (a full forward, as
    a forward hook on each decoder layer sees it)."""
    D, H, KV, hd = (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
                    cfg["head_dim"])
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    T = len(tokens)
    idx = torch.tensor(tokens, dtype=torch.long)
    x = p["model.embed_tokens.weight"][idx]
    mask = torch.full((T, T), float("-inf"), dtype=x.dtype).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)

        def proj(name):
            y = h @ p[pre + f"self_attn.{name}.weight"].T
            b = pre + f"self_attn.{name}.bias"
            return y + p[b] if b in p else y
        q = rope(proj("q_proj").view(T, H, hd), theta)
        k = rope(proj("k_proj").view(T, KV, hd), theta)
        v = proj("v_proj").view(T, KV, hd)
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / (hd ** 0.5) + mask
        att = torch.einsum("hts,shd->thd", scores.softmax(-1), v).reshape(T, H * hd)
        x = x + att @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = h @ p[pre + "mlp.gate_proj.weight"].T
        up = h @ p[pre + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ p[pre + "mlp.down_proj.weight"].T
        if states is not None:
            states.append(x)
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["lm_head.weight"] if "lm_head.weight" in p else p["model.embed_tokens.weight"]
    return (x @ head.T).log_softmax(-1)


def forward_sample(cfg, p, tokens):
    """Log-probs (T-1,) of tokens[1:] given the prefix, for one sample."""
    idx = torch.tensor(tokens, dtype=torch.long)
    return forward_logprobs(cfg, p, tokens)[:-1].gather(1, idx[1:, None])[:, 0]


def sample_sums(cfg, p, tokens, offsets, loss_mask):
    """Per-sample (sum of target log-probs, number of targets) over the masked targets."""
    sums, counts = [], []
    for s in range(len(offsets) - 1):
        a, b = int(offsets[s]), int(offsets[s + 1])
        m = torch.tensor(loss_mask[a + 1:b].astype(bool))
        if b - a < 2 or not m.any():
            sums.append(torch.zeros((), dtype=torch.float64))
            counts.append(0)
            continue
        lp = forward_sample(cfg, p, [int(t) for t in tokens[a:b]])
        sums.append(lp[m].sum())
        counts.append(int(m.sum()))
    return sums, counts


def make_random_model(lethe, path, sizes, rng, seed, theta=10000.0, eps=1e-5):
    """A random checkpoint from `lethe init` (std 0.3) with norms and biases perturbed so their
    gradients are exercised. sizes: (D, F, L, H, KV, hd, V, tied, bias)."""
    import subprocess
    D, F, L, H, KV, hd, V, tied, bias = sizes
    preset = path[:-3] + ".yaml"
    with open(preset, "w") as f:
        f.write(f"vocab_size: {V}\nhidden_size: {D}\nintermediate_size: {F}\n"
                f"num_hidden_layers: {L}\nnum_attention_heads: {H}\n"
                f"num_key_value_heads: {KV}\nhead_dim: {hd}\nrms_norm_eps: {eps}\n"
                f"rope_theta: {theta}\nmax_position_embeddings: 64\n"
                f"tie_word_embeddings: {tied}\nattention_bias: {bias}\n"
                f"bos_token_id: 1\neos_token_id: 2\n")
    r = subprocess.run([lethe, "init", "--config", preset, "--out", path, "--seed", str(seed),
                        "--std", "0.3"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: lethe init: {r.stderr}")
    with h5py.File(path, "r+") as f:
        def perturb(n, obj):
            if isinstance(obj, h5py.Dataset) and (n.endswith("bias") or "norm" in n):
                obj[...] = rng.normal(1.0 if "norm" in n else 0.0, 0.3, obj.shape)
        f.visititems(perturb)
    return path


def write_dataset(path, tokens, offsets, loss_mask, vocab_size):
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=np.asarray(tokens, dtype=np.int32))
        f.create_dataset("offsets", data=np.asarray(offsets, dtype=np.int64))
        f.create_dataset("loss_mask", data=np.asarray(loss_mask, dtype=np.uint8))
        f.attrs["format"] = "lethe-tokens"
        f.attrs["format_version"] = np.int32(1)
        f.attrs["vocab_size"] = np.int32(vocab_size)
        f.attrs["tokenizer"] = "none"
        f.attrs["tokenizer_digest"] = ""


def read_dataset(path):
    with h5py.File(path, "r") as f:
        return f["tokens"][...], f["offsets"][...], f["loss_mask"][...]
