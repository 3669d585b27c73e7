// Llama-family import from GGUF: hyperparameters from `{arch}.*` metadata, the tensor plan from
// llama.cpp's names (`token_embd`, `blk.N.attn_q`, ...) with GGUF dims reversed to PyTorch order,
// q/k permuted back to rotate-half for arch llama, and the tokenizer arrays as a TokenizerSpec.
#include "gguf_import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama2c.h" // rope_permute_interleaved_to_half

#define MAX_CONFIG_INT (1 << 24) // model_config_validate's bound

// llama_ftype names (llama.h; gguf-py LlamaFileType) by general.file_type value.
static const char *file_type_name(int64_t t) {
    static const char *names[] = {
        [0] = "ALL_F32",         [1] = "MOSTLY_F16",      [2] = "MOSTLY_Q4_0",
        [3] = "MOSTLY_Q4_1",     [7] = "MOSTLY_Q8_0",     [8] = "MOSTLY_Q5_0",
        [9] = "MOSTLY_Q5_1",     [10] = "MOSTLY_Q2_K",    [11] = "MOSTLY_Q3_K_S",
        [12] = "MOSTLY_Q3_K_M",  [13] = "MOSTLY_Q3_K_L",  [14] = "MOSTLY_Q4_K_S",
        [15] = "MOSTLY_Q4_K_M",  [16] = "MOSTLY_Q5_K_S",  [17] = "MOSTLY_Q5_K_M",
        [18] = "MOSTLY_Q6_K",    [19] = "MOSTLY_IQ2_XXS", [20] = "MOSTLY_IQ2_XS",
        [21] = "MOSTLY_Q2_K_S",  [22] = "MOSTLY_IQ3_XS",  [23] = "MOSTLY_IQ3_XXS",
        [24] = "MOSTLY_IQ1_S",   [25] = "MOSTLY_IQ4_NL",  [26] = "MOSTLY_IQ3_S",
        [27] = "MOSTLY_IQ3_M",   [28] = "MOSTLY_IQ2_S",   [29] = "MOSTLY_IQ2_M",
        [30] = "MOSTLY_IQ4_XS",  [31] = "MOSTLY_IQ1_M",   [32] = "MOSTLY_BF16",
        [36] = "MOSTLY_TQ1_0",   [37] = "MOSTLY_TQ2_0",   [38] = "MOSTLY_MXFP4_MOE",
    };
    if (t >= 0 && t < (int64_t)(sizeof names / sizeof names[0]) && names[t]) return names[t];
    return NULL;
}

// ---- metadata helpers ----------------------------------------------------------------------------

static const char *arch_key(char *buf, size_t n, const char *arch, const char *suffix) {
    snprintf(buf, n, "%s.%s", arch, suffix);
    return buf;
}

// An integer key in 1..MAX_CONFIG_INT (or 0..: allow_zero); absent: *v = dflt, or an error when
// dflt < 0.
static int config_int(const GgufFile *f, const char *key, int dflt, int *v, Err *e) {
    if (gguf_find_key(f, key) < 0) {
        if (dflt < 0)
            return err_set(e, "%s: metadata key '%s' is missing; it is required for the model "
                              "config", gguf_path(f), key);
        *v = dflt;
        return 0;
    }
    int64_t x;
    if (gguf_get_int(f, key, &x, e)) return -1;
    if (x < 1 || x > MAX_CONFIG_INT)
        return err_set(e, "%s: metadata key '%s' = %lld is out of range (expected 1..%d)",
                       gguf_path(f), key, (long long)x, MAX_CONFIG_INT);
    *v = (int)x;
    return 0;
}

static int config_float(const GgufFile *f, const char *key, double dflt, float *v, Err *e) {
    if (gguf_find_key(f, key) < 0) {
        if (dflt < 0)
            return err_set(e, "%s: metadata key '%s' is missing; it is required for the model "
                              "config", gguf_path(f), key);
        *v = (float)dflt;
        return 0;
    }
    double x;
    if (gguf_get_float(f, key, &x, e)) return -1;
    if (!(x > 0) || !isfinite(x) || x > 3.4e38)
        return err_set(e, "%s: metadata key '%s' = %g must be a positive finite number",
                       gguf_path(f), key, x);
    *v = (float)x;
    return 0;
}

// An optional token id: -1 when absent.
static int token_id(const GgufFile *f, const char *key, int *v, Err *e) {
    *v = -1;
    if (gguf_find_key(f, key) < 0) return 0;
    int64_t x;
    if (gguf_get_int(f, key, &x, e)) return -1;
    if (x < 0 || x > INT32_MAX)
        return err_set(e, "%s: metadata key '%s' = %lld is not a token id", gguf_path(f), key,
                       (long long)x);
    *v = (int)x;
    return 0;
}

// Features the model cannot run faithfully are refused rather than silently dropped.
static int check_unsupported(const GgufFile *f, const char *arch, Err *e) {
    char k[160];
    const char *P = gguf_path(f);
    if (gguf_find_key(f, arch_key(k, sizeof k, arch, "rope.scaling.type")) >= 0) {
        const char *s;
        if (gguf_get_str(f, k, &s, NULL, e)) return -1;
        if (strcmp(s, "none") != 0)
            return err_set(e, "%s: metadata key '%s' = '%.64s': RoPE scaling is not supported "
                              "yet (only 'none')", P, k, s);
    }
    if (gguf_find_key(f, arch_key(k, sizeof k, arch, "rope.scale_linear")) >= 0) {
        double s;
        if (gguf_get_float(f, k, &s, e)) return -1;
        if (s != 1.0)
            return err_set(e, "%s: metadata key '%s' = %g: linear RoPE scaling is not supported "
                              "yet", P, k, s);
    }
    if (gguf_find_tensor(f, "rope_freqs.weight") >= 0)
        return err_set(e, "%s: tensor 'rope_freqs.weight' (Llama 3.1 \"llama3\" RoPE frequency "
                          "scaling) is not supported yet", P);
    if (gguf_find_key(f, arch_key(k, sizeof k, arch, "expert_count")) >= 0) {
        int64_t n;
        if (gguf_get_int(f, k, &n, e)) return -1;
        if (n > 0)
            return err_set(e, "%s: metadata key '%s' = %lld: mixture-of-experts models are not "
                              "supported", P, k, (long long)n);
    }
    return 0;
}

static int read_config(const GgufFile *f, const char *arch, ModelConfig *c, Err *e) {
    char k[160];
    const char *P = gguf_path(f);
    memset(c, 0, sizeof *c);
    if (config_int(f, arch_key(k, sizeof k, arch, "block_count"), -1, &c->num_hidden_layers, e) ||
        config_int(f, arch_key(k, sizeof k, arch, "embedding_length"), -1, &c->hidden_size, e) ||
        config_int(f, arch_key(k, sizeof k, arch, "feed_forward_length"), -1,
                   &c->intermediate_size, e) ||
        config_int(f, arch_key(k, sizeof k, arch, "attention.head_count"), -1,
                   &c->num_attention_heads, e) ||
        config_int(f, arch_key(k, sizeof k, arch, "attention.head_count_kv"),
                   c->num_attention_heads, &c->num_key_value_heads, e) ||
        config_int(f, arch_key(k, sizeof k, arch, "context_length"), -1,
                   &c->max_position_embeddings, e) ||
        config_float(f, arch_key(k, sizeof k, arch, "attention.layer_norm_rms_epsilon"), -1,
                     &c->rms_norm_eps, e) ||
        // llama.cpp's and transformers' default base when the key is absent
        config_float(f, arch_key(k, sizeof k, arch, "rope.freq_base"), 10000.0, &c->rope_theta,
                     e))
        return -1;

    // head_dim: attention.key_length when given (it may differ from D / H), else D / H.
    int hd = 0, vd = 0, rot = 0;
    if (config_int(f, arch_key(k, sizeof k, arch, "attention.key_length"), 0, &hd, e) ||
        config_int(f, arch_key(k, sizeof k, arch, "attention.value_length"), 0, &vd, e) ||
        config_int(f, arch_key(k, sizeof k, arch, "rope.dimension_count"), 0, &rot, e))
        return -1;
    if (hd == 0) {
        if (c->hidden_size % c->num_attention_heads != 0)
            return err_set(e, "%s: %s.attention.head_count = %d does not divide "
                              "%s.embedding_length = %d and %s.attention.key_length is absent",
                           P, arch, c->num_attention_heads, arch, c->hidden_size, arch);
        hd = c->hidden_size / c->num_attention_heads;
    }
    if (vd != 0 && vd != hd)
        return err_set(e, "%s: %s.attention.value_length = %d differs from the key length %d; "
                          "not supported", P, arch, vd, hd);
    if (rot != 0 && rot != hd)
        return err_set(e, "%s: %s.rope.dimension_count = %d differs from head_dim %d: partial "
                          "rotary embeddings are not supported", P, arch, rot, hd);
    c->head_dim = hd;

    // vocab: {arch}.vocab_size, else the token list's length.
    if (gguf_find_key(f, arch_key(k, sizeof k, arch, "vocab_size")) >= 0) {
        if (config_int(f, k, -1, &c->vocab_size, e)) return -1;
    } else if (gguf_find_key(f, "tokenizer.ggml.tokens") >= 0) {
        const char *const *toks;
        uint64_t n;
        if (gguf_get_str_array(f, "tokenizer.ggml.tokens", &toks, NULL, &n, e)) return -1;
        if (n < 1 || n > MAX_CONFIG_INT)
            return err_set(e, "%s: tokenizer.ggml.tokens has %llu entries (expected 1..%d)", P,
                           (unsigned long long)n, MAX_CONFIG_INT);
        c->vocab_size = (int)n;
    } else {
        return err_set(e, "%s: neither %s.vocab_size nor tokenizer.ggml.tokens gives the "
                          "vocabulary size", P, arch);
    }
    if (token_id(f, "tokenizer.ggml.bos_token_id", &c->bos_token_id, e) ||
        token_id(f, "tokenizer.ggml.eos_token_id", &c->eos_token_id, e))
        return -1;
    c->attention_bias = strcmp(arch, "qwen2") == 0;
    return 0;
}

// ---- the tensor plan --------------------------------------------------------------------------

typedef struct {
    const GgufFile *f;
    GgufImport *imp;
    uint8_t *used; // per GGUF tensor: claimed by the plan
} Planner;

// Adds HF tensor `hf` from GGUF tensor `gg` with PyTorch shape (d0[, d1]).
static int plan_tensor(Planner *p, const char *gg, const char *hf, int ndim, int64_t d0,
                       int64_t d1, int rope_heads, Err *e) {
    const char *P = gguf_path(p->f);
    long i = gguf_find_tensor(p->f, gg);
    if (i < 0)
        return err_set(e, "%s: tensor '%s' (for %s) is missing", P, gg, hf);
    const GgufTensor *t = gguf_tensor(p->f, (size_t)i);
    // GGUF lists dims innermost first: [in, out] is PyTorch's [out, in].
    int ok = t->n_dims == ndim &&
             (ndim == 1 ? t->ne[0] == (uint64_t)d0
                        : t->ne[0] == (uint64_t)d1 && t->ne[1] == (uint64_t)d0);
    if (!ok) {
        char got[128] = "", want[64];
        size_t n = 0;
        for (int d = t->n_dims - 1; d >= 0 && n < sizeof got; d--)
            n += (size_t)snprintf(got + n, sizeof got - n, "%s%llu", d == t->n_dims - 1 ? "" : ", ",
                                  (unsigned long long)t->ne[d]);
        if (ndim == 1) snprintf(want, sizeof want, "[%lld]", (long long)d0);
        else snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        return err_set(e, "%s: tensor '%s' has shape [%s] (PyTorch order), expected %s for %s "
                          "from the config", P, gg, got, want, hf);
    }
    if (!ggml_can_dequantize(t->type))
        return err_set(e, "%s: tensor '%s' has type %s, which this reader cannot dequantise yet "
                          "(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, "
                          "Q8_K)", P, gg, ggml_type_name(t->type));
    if (p->used[i]) // keeps n_tensors within the table's size
        return err_set(e, "%s: tensor '%s' is mapped twice", P, gg);
    p->used[i] = 1;
    GgufImportTensor *it = &p->imp->tensors[p->imp->n_tensors++];
    snprintf(it->name, sizeof it->name, "%s", hf);
    it->ndim = ndim;
    it->shape[0] = d0;
    it->shape[1] = ndim == 2 ? d1 : 0;
    it->src = (size_t)i;
    it->rope_heads = rope_heads;
    if (t->numel > p->imp->max_numel) p->imp->max_numel = t->numel;
    return 0;
}

static int build_plan(Planner *p, Err *e) {
    GgufImport *imp = p->imp;
    const ModelConfig *c = &imp->cfg;
    const int64_t D = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    const int64_t Q = (int64_t)c->num_attention_heads * c->head_dim;
    const int64_t KVD = (int64_t)c->num_key_value_heads * c->head_dim;
    // llama.cpp stores llama q/k in Meta's interleaved-pair order; k has KV heads (design.md).
    const int permute = strcmp(imp->arch, "llama") == 0;
    const int qh = permute ? c->num_attention_heads : 0, kh = permute ? c->num_key_value_heads : 0;
    // Sized by the file, not the config: each plan entry claims a distinct GGUF tensor (see
    // plan_tensor), so a hostile block_count cannot ask for gigabytes; the first tensor it
    // implies and the file lacks is reported by name.
    if (!(imp->tensors = calloc(gguf_tensor_count(p->f) + 1, sizeof *imp->tensors)))
        return err_set(e, "%s: out of memory for the tensor plan", gguf_path(p->f));
    if (plan_tensor(p, "token_embd.weight", "model.embed_tokens.weight", 2, V, D, 0, e))
        return -1;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        char gg[96], hf[96];
#define T(gsuf, hsuf, nd, d0, d1, heads)                                          \
    snprintf(gg, sizeof gg, "blk.%d.%s", l, gsuf);                                \
    snprintf(hf, sizeof hf, "model.layers.%d.%s", l, hsuf);                       \
    if (plan_tensor(p, gg, hf, nd, d0, d1, heads, e)) return -1
        T("attn_norm.weight", "input_layernorm.weight", 1, D, 0, 0);
        T("attn_q.weight", "self_attn.q_proj.weight", 2, Q, D, qh);
        if (c->attention_bias) { T("attn_q.bias", "self_attn.q_proj.bias", 1, Q, 0, qh); }
        T("attn_k.weight", "self_attn.k_proj.weight", 2, KVD, D, kh);
        if (c->attention_bias) { T("attn_k.bias", "self_attn.k_proj.bias", 1, KVD, 0, kh); }
        T("attn_v.weight", "self_attn.v_proj.weight", 2, KVD, D, 0);
        if (c->attention_bias) { T("attn_v.bias", "self_attn.v_proj.bias", 1, KVD, 0, 0); }
        T("attn_output.weight", "self_attn.o_proj.weight", 2, D, Q, 0);
        T("ffn_norm.weight", "post_attention_layernorm.weight", 1, D, 0, 0);
        T("ffn_gate.weight", "mlp.gate_proj.weight", 2, F, D, 0);
        T("ffn_up.weight", "mlp.up_proj.weight", 2, F, D, 0);
        T("ffn_down.weight", "mlp.down_proj.weight", 2, D, F, 0);
#undef T
    }
    if (plan_tensor(p, "output_norm.weight", "model.norm.weight", 1, D, 0, 0, e)) return -1;
    if (!c->tie_word_embeddings &&
        plan_tensor(p, "output.weight", "lm_head.weight", 2, V, D, 0, e))
        return -1;
    size_t n = gguf_tensor_count(p->f);
    for (size_t i = 0; i < n; i++)
        if (!p->used[i])
            return err_set(e, "%s: tensor '%s' is not part of a %s model with this config (%d "
                              "layers%s); refusing to drop it", gguf_path(p->f),
                           gguf_tensor(p->f, i)->name, imp->arch, c->num_hidden_layers,
                           c->attention_bias ? ", q/k/v biases" : ", no biases");
    return 0;
}

void gguf_import_free(GgufImport *imp) {
    if (!imp) return;
    free(imp->tensors);
    memset(imp, 0, sizeof *imp);
}

int gguf_import_plan(const GgufFile *f, GgufImport *imp, Err *e) {
    memset(imp, 0, sizeof *imp);
    const char *P = gguf_path(f), *arch;
    if (gguf_get_str(f, "general.architecture", &arch, NULL, e)) return -1;
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0)
        return err_set(e, "%s: general.architecture = '%.64s' is not supported (llama, qwen2)", P,
                       arch);
    snprintf(imp->arch, sizeof imp->arch, "%s", arch);
    if (check_unsupported(f, arch, e) || read_config(f, arch, &imp->cfg, e)) return -1;
    imp->cfg.tie_word_embeddings = gguf_find_tensor(f, "output.weight") < 0;
    if (model_config_validate(&imp->cfg, P, e)) return -1;

    const char *ft = "(no general.file_type)";
    if (gguf_find_key(f, "general.file_type") >= 0) {
        int64_t t;
        if (gguf_get_int(f, "general.file_type", &t, e)) return -1;
        ft = file_type_name(t);
        if (!ft) ft = "(unknown general.file_type)";
    }
    snprintf(imp->source_format, sizeof imp->source_format, "gguf-v%u %s", gguf_version(f), ft);

    Planner p = {f, imp, calloc(gguf_tensor_count(f) + 1, 1)};
    int rc = p.used ? build_plan(&p, e) : err_set(e, "%s: out of memory", P);
    free(p.used);
    if (rc) gguf_import_free(imp);
    return rc;
}

int gguf_import_read(const GgufFile *f, const GgufImport *imp, int k, float *dst, Err *e) {
    if (k < 0 || k >= imp->n_tensors)
        return err_set(e, "%s: import tensor index %d out of range", gguf_path(f), k);
    const GgufImportTensor *t = &imp->tensors[k];
    if (gguf_read_tensor_f32(f, t->src, dst, e)) return -1;
    if (t->rope_heads > 0)
        rope_permute_interleaved_to_half(dst, t->rope_heads, imp->cfg.head_dim,
                                         t->ndim == 2 ? t->shape[1] : 1);
    return 0;
}

// ---- tokenizer --------------------------------------------------------------------------------------

// An optional 0/1 flag: -1 when absent.
static int flag(const GgufFile *f, const char *key, int *v, Err *e) {
    *v = -1;
    return gguf_find_key(f, key) < 0 ? 0 : gguf_get_bool(f, key, v, e);
}

int gguf_tokenizer_spec(const GgufFile *f, TokenizerSpec *s, Err *e) {
    memset(s, 0, sizeof *s);
    const char *P = gguf_path(f);
    s->source = P;
    uint64_t n, m;
    if (gguf_get_str(f, "tokenizer.ggml.model", &s->model, NULL, e) ||
        gguf_get_str_array(f, "tokenizer.ggml.tokens", &s->tokens, &s->token_len, &n, e))
        return -1;
    if (n < 1 || n > INT32_MAX)
        return err_set(e, "%s: tokenizer.ggml.tokens has %llu entries", P, (unsigned long long)n);
    s->n_tokens = (int)n;
    if (gguf_find_key(f, "tokenizer.ggml.pre") >= 0 &&
        gguf_get_str(f, "tokenizer.ggml.pre", &s->pre, NULL, e))
        return -1;
    if (gguf_find_key(f, "tokenizer.ggml.scores") >= 0) {
        if (gguf_get_f32_array(f, "tokenizer.ggml.scores", &s->scores, &m, e)) return -1;
        if (m != n)
            return err_set(e, "%s: tokenizer.ggml.scores has %llu entries, tokenizer.ggml.tokens "
                              "%llu", P, (unsigned long long)m, (unsigned long long)n);
    }
    if (gguf_find_key(f, "tokenizer.ggml.token_type") >= 0) {
        if (gguf_get_i32_array(f, "tokenizer.ggml.token_type", &s->token_type, &m, e)) return -1;
        if (m != n)
            return err_set(e, "%s: tokenizer.ggml.token_type has %llu entries, "
                              "tokenizer.ggml.tokens %llu", P, (unsigned long long)m,
                           (unsigned long long)n);
    }
    if (gguf_find_key(f, "tokenizer.ggml.merges") >= 0) {
        if (gguf_get_str_array(f, "tokenizer.ggml.merges", &s->merges, &s->merge_len, &m, e))
            return -1;
        if (m > INT32_MAX)
            return err_set(e, "%s: tokenizer.ggml.merges has %llu entries", P,
                           (unsigned long long)m);
        s->n_merges = (int)m;
    }
    static const char *ids[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                 "tokenizer.ggml.unknown_token_id",
                                 "tokenizer.ggml.padding_token_id"};
    int *dst[4] = {&s->bos_id, &s->eos_id, &s->unk_id, &s->pad_id};
    for (int i = 0; i < 4; i++) {
        if (token_id(f, ids[i], dst[i], e)) return -1;
        if (*dst[i] >= s->n_tokens)
            return err_set(e, "%s: %s = %d is not below the token count %d", P, ids[i], *dst[i],
                           s->n_tokens);
    }
    return flag(f, "tokenizer.ggml.add_bos_token", &s->add_bos, e) ||
                   flag(f, "tokenizer.ggml.add_eos_token", &s->add_eos, e) ||
                   flag(f, "tokenizer.ggml.add_space_prefix", &s->add_space_prefix, e)
               ? -1
               : 0;
}
