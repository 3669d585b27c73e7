// Hugging Face model directories in and out (see hf_model.h): config.json parsing and writing,
// the streaming safetensors -> HDF5 import and the HDF5 -> safetensors export.
#include "hf_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "llama.h"
#include "model_file.h"
#include "safetensors.h"
#include "sha256.h"
#include "strbuf.h"
#include "textfile.h"
#include "tokenizer.h"

static const struct {
    HfArch arch;
    const char *cls, *model_type;
} ARCHS[] = {
    {HF_ARCH_LLAMA, "LlamaForCausalLM", "llama"},
    {HF_ARCH_MISTRAL, "MistralForCausalLM", "mistral"},
    {HF_ARCH_QWEN2, "Qwen2ForCausalLM", "qwen2"},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

const char *hf_arch_class(HfArch a) {
    for (size_t i = 0; i < N_ARCHS; i++)
        if (ARCHS[i].arch == a) return ARCHS[i].cls;
    return "?";
}

// The buffer's text, now owned by the caller (NULL when an append failed).
static char *sb_steal(StrBuf *b) {
    char *s = b->failed ? NULL : b->data;
    if (!s) sb_free(b);
    memset(b, 0, sizeof *b);
    return s;
}

// ---- config.json ----------------------------------------------------------------------------

typedef struct {
    const char *path;
    const JsonValue *root;
    Err *e;
} ConfigJson;

// An integer member: *out = default when absent or null (required: absence is an error).
static int cfg_int(ConfigJson *c, const char *key, int required, long lo, long hi, int dflt,
                   int *out) {
    const JsonValue *v = json_object_get(c->root, key);
    if (!v || json_is(v, JSON_NULL)) {
        if (required) return err_set(c->e, "%s: \"%s\" is missing; it is required", c->path, key);
        *out = dflt;
        return 0;
    }
    double d = json_number(v);
    if (!json_is(v, JSON_NUMBER) || d != floor(d) || d < (double)lo || d > (double)hi)
        return err_set(c->e, "%s: \"%s\" must be an integer in [%ld, %ld]", c->path, key, lo, hi);
    *out = (int)d;
    return 0;
}

static int cfg_float(ConfigJson *c, const JsonValue *obj, const char *key, float dflt,
                     float *out) {
    const JsonValue *v = json_object_get(obj, key);
    if (!v || json_is(v, JSON_NULL)) {
        *out = dflt;
        return 0;
    }
    double d = json_number(v);
    if (!json_is(v, JSON_NUMBER) || !(d > 0) || !isfinite((float)d))
        return err_set(c->e, "%s: \"%s\" must be a positive number", c->path, key);
    *out = (float)d;
    return 0;
}

static int cfg_bool(ConfigJson *c, const char *key, int dflt, int *out) {
    const JsonValue *v = json_object_get(c->root, key);
    if (!v || json_is(v, JSON_NULL)) {
        *out = dflt;
        return 0;
    }
    if (!json_is(v, JSON_BOOL)) return err_set(c->e, "%s: \"%s\" must be true or false", c->path, key);
    *out = json_bool(v);
    return 0;
}

// A token id member: an int, a list of ints (the first is used: lethe stops on one EOS) or null.
static int cfg_token_id(ConfigJson *c, const char *key, int *out, int *list_len) {
    const JsonValue *v = json_object_get(c->root, key);
    *out = -1;
    *list_len = 0;
    if (!v || json_is(v, JSON_NULL)) return 0;
    if (json_is(v, JSON_ARRAY)) {
        *list_len = (int)json_array_len(v);
        if (*list_len == 0) return 0;
        v = json_array_get(v, 0);
    }
    double d = json_number(v);
    if (!json_is(v, JSON_NUMBER) || d != floor(d) || d < 0 || d > 1e9)
        return err_set(c->e, "%s: \"%s\" must be a token id (or a list of them)", c->path, key);
    *out = (int)d;
    return 0;
}

// rope_scaling (v4) or rope_parameters (v5): only the plain RoPE is computed by lethe.
static int cfg_rope(ConfigJson *c, float *theta) {
    const JsonValue *params = json_object_get(c->root, "rope_parameters");
    const JsonValue *scaling = json_object_get(c->root, "rope_scaling");
    if (cfg_float(c, c->root, "rope_theta", 10000.0f, theta)) return -1;
    if (params && json_is(params, JSON_OBJECT) &&
        cfg_float(c, params, "rope_theta", *theta, theta))
        return -1;
    const JsonValue *which[2] = {scaling, params};
    const char *names[2] = {"rope_scaling", "rope_parameters"};
    for (int i = 0; i < 2; i++) {
        const JsonValue *s = which[i];
        if (!s || json_is(s, JSON_NULL)) continue;
        if (!json_is(s, JSON_OBJECT))
            return err_set(c->e, "%s: \"%s\" must be an object or null", c->path, names[i]);
        const char *type = json_object_get_string(s, "rope_type");
        if (!type) type = json_object_get_string(s, "type");
        if (!type || strcmp(type, "default") == 0) continue;
        if (strcmp(type, "llama3") == 0)
            return err_set(c->e,
                           "%s: \"%s\" has rope_type \"llama3\" (Llama 3.1/3.2 frequency "
                           "scaling), which lethe does not compute yet; only the plain RoPE "
                           "(rope_type \"default\" or no %s) is supported, so this model cannot "
                           "be imported without changing its outputs",
                           c->path, names[i], names[i]);
        return err_set(c->e,
                       "%s: \"%s\" has rope_type \"%s\", which lethe does not compute; only the "
                       "plain RoPE (rope_type \"default\" or no %s) is supported",
                       c->path, names[i], type, names[i]);
    }
    return 0;
}

int hf_config_read(const char *dir, ModelConfig *cfg, HfArch *arch, char **notes, Err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    *notes = NULL;
    JsonValue *root = json_parse_file(path, JSON_FILE_SINGLE, e);
    if (!root) return -1;
    ConfigJson c = {path, root, e};
    StrBuf nb = {0};
    int rc = -1;
    memset(cfg, 0, sizeof *cfg);
    if (!json_is(root, JSON_OBJECT)) {
        err_set(e, "%s: expected a JSON object", path);
        goto done;
    }
    // The architecture: "architectures"[0], else "model_type".
    const JsonValue *archs = json_object_get(root, "architectures");
    const char *cls = json_is(archs, JSON_ARRAY) ? json_string(json_array_get(archs, 0), NULL)
                                                 : NULL;
    const char *mt = json_object_get_string(root, "model_type");
    int found = -1;
    for (size_t i = 0; i < N_ARCHS && found < 0; i++)
        if ((cls && strcmp(cls, ARCHS[i].cls) == 0) ||
            (!cls && mt && strcmp(mt, ARCHS[i].model_type) == 0))
            found = (int)i;
    if (found < 0) {
        err_set(e,
                "%s: architecture \"%s\" is not supported; lethe imports LlamaForCausalLM, "
                "MistralForCausalLM and Qwen2ForCausalLM (\"architectures\" or \"model_type\")",
                path, cls ? cls : mt ? mt : "(none given)");
        goto done;
    }
    *arch = ARCHS[found].arch;
    const char *act = json_object_get_string(root, "hidden_act");
    if (act && strcmp(act, "silu") != 0) {
        err_set(e, "%s: \"hidden_act\" is \"%s\"; lethe's MLP is SwiGLU with silu", path, act);
        goto done;
    }
    int mlp_bias, attn_bias, tie, eos_list, bos_list;
    const long BIG = 1L << 30;
    if (cfg_int(&c, "vocab_size", 1, 1, BIG, 0, &cfg->vocab_size) ||
        cfg_int(&c, "hidden_size", 1, 1, BIG, 0, &cfg->hidden_size) ||
        cfg_int(&c, "intermediate_size", 1, 1, BIG, 0, &cfg->intermediate_size) ||
        cfg_int(&c, "num_hidden_layers", 1, 1, 100000, 0, &cfg->num_hidden_layers) ||
        cfg_int(&c, "num_attention_heads", 1, 1, 100000, 0, &cfg->num_attention_heads) ||
        cfg_int(&c, "num_key_value_heads", 0, 1, 100000, cfg->num_attention_heads,
                &cfg->num_key_value_heads) ||
        cfg_int(&c, "head_dim", 0, 1, 100000, cfg->hidden_size / cfg->num_attention_heads,
                &cfg->head_dim) ||
        cfg_int(&c, "max_position_embeddings", 0, 1, BIG, 2048, &cfg->max_position_embeddings) ||
        cfg_float(&c, root, "rms_norm_eps", 1e-6f, &cfg->rms_norm_eps) || cfg_rope(&c, &cfg->rope_theta) ||
        cfg_bool(&c, "tie_word_embeddings", 0, &tie) ||
        cfg_bool(&c, "attention_bias", 0, &attn_bias) || cfg_bool(&c, "mlp_bias", 0, &mlp_bias) ||
        cfg_token_id(&c, "bos_token_id", &cfg->bos_token_id, &bos_list) ||
        cfg_token_id(&c, "eos_token_id", &cfg->eos_token_id, &eos_list))
        goto done;
    if (mlp_bias) {
        err_set(e, "%s: \"mlp_bias\" is true; lethe's MLP projections have no bias", path);
        goto done;
    }
    if (*arch == HF_ARCH_QWEN2) {
        attn_bias = 1; // Qwen2's q/k/v projections always carry a bias, o_proj never
    } else if (attn_bias) {
        err_set(e,
                "%s: \"attention_bias\" is true: %s then puts a bias on q, k, v and o_proj; "
                "lethe supports the q/k/v biases of Qwen2ForCausalLM only",
                path, ARCHS[found].cls);
        goto done;
    }
    if (*arch == HF_ARCH_QWEN2 && cfg->head_dim != cfg->hidden_size / cfg->num_attention_heads) {
        err_set(e, "%s: Qwen2 derives head_dim from hidden_size / num_attention_heads = %d; "
                   "\"head_dim\" %d disagrees",
                path, cfg->hidden_size / cfg->num_attention_heads, cfg->head_dim);
        goto done;
    }
    cfg->tie_word_embeddings = tie;
    cfg->attention_bias = attn_bias;
    if (eos_list > 1)
        sb_printf(&nb, "eos_token_id lists %d ids; lethe stops generation on the first, %d\n",
                  eos_list, cfg->eos_token_id);
    // A sliding window that a sample can exceed changes attention: cap the positions instead
    // (lethe rejects longer samples with a clear error rather than compute another model).
    int window = 0, use_window = *arch == HF_ARCH_MISTRAL;
    if (*arch == HF_ARCH_QWEN2 && cfg_bool(&c, "use_sliding_window", 0, &use_window)) goto done;
    if (use_window && cfg_int(&c, "sliding_window", 0, 1, BIG, 0, &window)) goto done;
    if (window > 0 && window < cfg->max_position_embeddings) {
        sb_printf(&nb,
                  "sliding_window %d < max_position_embeddings %d: lethe's attention is fully "
                  "causal, so samples are limited to %d tokens (max_position_embeddings)\n",
                  window, cfg->max_position_embeddings, window);
        cfg->max_position_embeddings = window;
    }
    if (model_config_validate(cfg, path, e)) goto done;
    if (nb.len) *notes = sb_steal(&nb);
    rc = 0;
done:
    sb_free(&nb);
    json_free(root);
    return rc;
}

static void json_num(StrBuf *b, const char *key, double v, int last) {
    char num[64];
    // The shortest decimal that reads back as the same float (json_serialize's rule).
    for (int p = 6; p <= 9; p++) {
        snprintf(num, sizeof num, "%.*g", p, v);
        if ((float)strtod(num, NULL) == (float)v) break;
    }
    if (!strpbrk(num, ".eEn")) strcat(num, ".0");
    sb_printf(b, "  \"%s\": %s%s\n", key, num, last ? "" : ",");
}

char *hf_config_json(const ModelConfig *c, HfArch arch, StorageDtype dtype) {
    StrBuf b = {0};
    const char *cls = hf_arch_class(arch), *mt = "llama";
    for (size_t i = 0; i < N_ARCHS; i++)
        if (ARCHS[i].arch == arch) mt = ARCHS[i].model_type;
    const char *torch_dtype = dtype == DTYPE_F32 ? "float32" : dtype == DTYPE_BF16 ? "bfloat16"
                                                                                    : "float16";
    sb_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", cls, mt);
    sb_printf(&b,
              "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
              "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
              "  \"num_key_value_heads\": %d,\n",
              c->vocab_size, c->hidden_size, c->intermediate_size, c->num_hidden_layers,
              c->num_attention_heads, c->num_key_value_heads);
    if (arch != HF_ARCH_QWEN2) sb_printf(&b, "  \"head_dim\": %d,\n", c->head_dim);
    sb_printf(&b, "  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": %d,\n",
              c->max_position_embeddings);
    json_num(&b, "rms_norm_eps", c->rms_norm_eps, 0);
    json_num(&b, "rope_theta", c->rope_theta, 0);
    sb_printf(&b, "  \"rope_scaling\": null,\n  \"tie_word_embeddings\": %s,\n",
              c->tie_word_embeddings ? "true" : "false");
    if (arch == HF_ARCH_LLAMA)
        sb_printf(&b, "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n");
    if (arch == HF_ARCH_QWEN2) sb_printf(&b, "  \"use_sliding_window\": false,\n");
    if (arch == HF_ARCH_MISTRAL) sb_printf(&b, "  \"sliding_window\": null,\n");
    sb_printf(&b, "  \"attention_dropout\": 0.0,\n  \"initializer_range\": 0.02,\n");
    if (c->bos_token_id >= 0) sb_printf(&b, "  \"bos_token_id\": %d,\n", c->bos_token_id);
    if (c->eos_token_id >= 0) sb_printf(&b, "  \"eos_token_id\": %d,\n", c->eos_token_id);
    sb_printf(&b, "  \"torch_dtype\": \"%s\",\n  \"use_cache\": true\n}\n", torch_dtype);
    return sb_steal(&b);
}

// ---- import ---------------------------------------------------------------------------------

static int st_to_storage(SafetensorsDtype d, StorageDtype *out) {
    switch (d) {
    case ST_F32: *out = DTYPE_F32; return 0;
    case ST_BF16: *out = DTYPE_BF16; return 0;
    case ST_F16: *out = DTYPE_F16; return 0;
    default: return -1;
    }
}

// Tensors a checkpoint may carry that are not parameters of the model: computed buffers.
static int ignorable_tensor(const char *name) {
    const char *s = strstr(name, "rotary_emb.inv_freq");
    return s && s[strlen("rotary_emb.inv_freq")] == '\0';
}

// The digest that names the source in the provenance: config.json and every shard's header
// (names, dtypes, shapes, offsets), not the tensor bytes: hashing gigabytes would cost more than
// the import itself. The tensor bytes are in the output, whose own digest `lethe info` shows.
static int source_digest(const char *dir, const SafetensorsIndex *x, char hex[65], Err *e) {
    Sha256 s;
    sha256_init(&s);
    char path[4096], cfghex[65];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (sha256_file(path, cfghex, e)) return -1;
    sha256_update(&s, cfghex, 64);
    for (size_t k = 0; k < safetensors_index_count(x); k++) {
        SafetensorsFile *f;
        size_t i;
        safetensors_index_tensor(x, k, &f, &i);
        const SafetensorsTensor *t = safetensors_tensor(f, i);
        char line[512];
        int n = snprintf(line, sizeof line, "%s %s %d", t->name, safetensors_dtype_name(t->dtype),
                         t->ndim);
        sha256_update(&s, line, (size_t)n);
        for (int d = 0; d < t->ndim; d++) {
            n = snprintf(line, sizeof line, " %lld", (long long)t->shape[d]);
            sha256_update(&s, line, (size_t)n);
        }
        n = snprintf(line, sizeof line, " %llu %llu\n", (unsigned long long)t->offset,
                     (unsigned long long)t->nbytes);
        sha256_update(&s, line, (size_t)n);
    }
    uint8_t d[32];
    sha256_final(&s, d);
    sha256_hex(d, hex);
    return 0;
}

typedef struct {
    SafetensorsFile *f;
    size_t i;
} StSource;

static int read_st_range(void *ctx, uint64_t byte_off, void *dst, size_t len, Err *e) {
    StSource *s = ctx;
    return safetensors_read_raw_range(s->f, s->i, byte_off, dst, len, e);
}

// Where a parameter lives, for visiting the parameters in file order.
typedef struct {
    int table_index;
    const char *shard;
    uint64_t offset;
} FilePos;

static int by_file_position(const void *a, const void *b) {
    const FilePos *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    if (c) return c;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// DIR/tokenizer.json into t. 1: stored; 0: none (absent, or one lethe cannot reproduce exactly:
// the weights still import, and the note says why); -1 never (the import goes on either way).
static int import_tokenizer(const char *dir, const ModelConfig *cfg, Tokenizer *t) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "lethe convert: note: %s is absent: no tokenizer stored\n", path);
        return 0;
    }
    Err te = {{0}};
    if (tokenizer_read_hf_json(t, path, &te)) {
        fprintf(stderr, "lethe convert: note: no tokenizer stored: %s\n", te.msg);
        return 0;
    }
    if (t->vocab_size > cfg->vocab_size) {
        fprintf(stderr,
                "lethe convert: note: no tokenizer stored: %s has %d tokens but the model only "
                "%d embedding rows\n",
                path, t->vocab_size, cfg->vocab_size);
        tokenizer_free(t);
        return 0;
    }
    return 1;
}

int hf_import(const char *dir, const char *out, const HfImportOptions *opt, Err *e) {
    ModelConfig cfg;
    HfArch arch;
    char *notes = NULL;
    if (hf_config_read(dir, &cfg, &arch, &notes, e)) return -1;
    if (notes) fprintf(stderr, "lethe convert: note: %s", notes);
    Tokenizer tok = {0};
    const int have_tok = import_tokenizer(dir, &cfg, &tok);
    char tokdigest[65] = "";
    SafetensorsIndex *x = NULL;
    CkptWriter *w = NULL;
    LlamaModel table = {0};
    void *buf = NULL;
    FilePos *order = NULL;
    int rc = -1;
    char digest[65], format[96];
    if (safetensors_index_open(&x, dir, e) || llama_create_table(&table, &cfg, e) ||
        source_digest(dir, x, digest, e))
        goto done;
    // Every tensor of the file must be a parameter of the model (or a known buffer): a tensor
    // left over means the config describes another model.
    for (size_t k = 0; k < safetensors_index_count(x); k++) {
        SafetensorsFile *f;
        size_t i;
        safetensors_index_tensor(x, k, &f, &i);
        const char *name = safetensors_tensor(f, i)->name;
        if (llama_find_tensor(&table, name) || ignorable_tensor(name)) continue;
        if (cfg.tie_word_embeddings && strcmp(name, "lm_head.weight") == 0) {
            fprintf(stderr,
                    "lethe convert: note: %s holds lm_head.weight although the embeddings are "
                    "tied; it is ignored, as transformers does\n",
                    safetensors_path(f));
            continue;
        }
        err_set(e,
                "%s: tensor %s is not a parameter of %s with this config.json (%d layers%s); "
                "the checkpoint and its config.json disagree",
                safetensors_path(f), name, hf_arch_class(arch), cfg.num_hidden_layers,
                cfg.tie_word_embeddings ? ", tied embeddings" : "");
        goto done;
    }
    size_t max_numel = 0;
    for (int t = 0; t < table.n_tensors; t++)
        if (table.tensors[t].numel > max_numel) max_numel = table.tensors[t].numel;
    // Parameters in the order their bytes lie in the files (shard, offset), so the reads are
    // sequential and the kernel's read-ahead works; a missing one is reported in table order.
    order = malloc((size_t)table.n_tensors * sizeof *order);
    if (!order) {
        err_set(e, "out of memory");
        goto done;
    }
    for (int t = 0; t < table.n_tensors; t++) {
        SafetensorsFile *f;
        size_t i;
        if (safetensors_index_find(x, table.tensors[t].name, &f, &i) != 0) {
            err_set(e, "%s: tensor %s is missing (%s with this config.json needs it)", dir,
                    table.tensors[t].name, hf_arch_class(arch));
            goto done;
        }
        order[t] = (FilePos){t, safetensors_path(f), safetensors_tensor(f, i)->offset};
    }
    qsort(order, (size_t)table.n_tensors, sizeof *order, by_file_position);
    if (ckpt_writer_open(&w, out, &cfg, e)) goto done;
    for (int k = 0; k < table.n_tensors; k++) {
        const ParamTensor *p = &table.tensors[order[k].table_index];
        SafetensorsFile *f;
        size_t i;
        if (k + 1 < table.n_tensors &&
            safetensors_index_find(x, table.tensors[order[k + 1].table_index].name, &f, &i) == 0)
            safetensors_prefetch(f, i);
        safetensors_index_find(x, p->name, &f, &i);
        const SafetensorsTensor *st = safetensors_tensor(f, i);
        int same = st->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = st->shape[d] == p->shape[d];
        if (!same) {
            char a[96] = "", b[96] = "";
            for (int d = 0; d < st->ndim; d++)
                snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", d ? ", " : "",
                         (long long)st->shape[d]);
            for (int d = 0; d < p->ndim; d++)
                snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", d ? ", " : "",
                         (long long)p->shape[d]);
            err_set(e, "%s: tensor %s has shape [%s]; config.json implies [%s]",
                    safetensors_path(f), p->name, a, b);
            goto done;
        }
        StorageDtype src;
        if (st_to_storage(st->dtype, &src)) {
            err_set(e, "%s: tensor %s is %s; lethe imports F32, F16 and BF16 tensors",
                    safetensors_path(f), p->name, safetensors_dtype_name(st->dtype));
            goto done;
        }
        StorageDtype dst = opt->dtype_given ? opt->dtype : src;
        if (dst == src) {
            // The stored bits as they are, in cache-sized blocks: no conversion, no copy of the
            // whole tensor through memory.
            StSource ss = {f, i};
            if (ckpt_writer_tensor_stream(w, p->name, p->ndim, p->shape, dst, read_st_range, &ss,
                                          e))
                goto done;
        } else {
            if (!buf && !(buf = malloc(max_numel * sizeof(float)))) {
                err_set(e, "out of memory: the largest tensor needs %zu MiB",
                        max_numel * sizeof(float) >> 20);
                goto done;
            }
            if (safetensors_read_f32(f, i, buf, e) ||
                ckpt_writer_tensor(w, p->name, buf, p->ndim, p->shape, dst, e))
                goto done;
        }
    }
    if (have_tok) {
        if (ckpt_writer_tokenizer(w, &tok, e)) goto done;
        tokenizer_digest(&tok, tokdigest);
    }
    snprintf(format, sizeof format, "hf-safetensors %s (%zu shard%s)", hf_arch_class(arch),
             safetensors_index_shard_count(x), safetensors_index_shard_count(x) == 1 ? "" : "s");
    ProvenanceEntry prov[] = {
        {"source", dir},
        {"source_format", format},
        {"source_architecture", hf_arch_class(arch)},
        {"source_headers_sha256", digest},
        {"import_notes", notes},
        {"tokenizer_source", have_tok ? "tokenizer.json" : NULL},
        {"tokenizer_digest", have_tok ? tokdigest : NULL},
        {"command", opt->command},
    };
    if (model_file_provenance(w, prov, sizeof prov / sizeof prov[0], e))
        goto done;
    rc = ckpt_writer_commit(w, e);
    w = NULL;
    if (rc == 0)
        printf("wrote %s: %s, %zu parameters%s, %s%s\n", out, format, table.n_params,
               opt->dtype_given ? "" : ", dtypes as stored", have_tok ? "tokenizer " : "no tokenizer",
               have_tok ? tokenizer_kind_name(&tok) : "");
done:
    if (w) ckpt_writer_abort(w);
    if (have_tok) tokenizer_free(&tok);
    free(order);
    free(buf);
    llama_free(&table);
    safetensors_index_close(x);
    free(notes);
    return rc;
}

// ---- export ---------------------------------------------------------------------------------

static SafetensorsDtype storage_to_st(StorageDtype d) {
    return d == DTYPE_F32 ? ST_F32 : d == DTYPE_BF16 ? ST_BF16 : ST_F16;
}

// Writes text to DIR/name atomically (temporary name, fsync, rename, fsync of DIR).
static int write_text_file(const char *dir, const char *name, const char *text, Err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return file_write_atomic(path, text, strlen(text), e);
}

// The architecture to write: the one the model was imported from when it is compatible, else
// Qwen2 for q/k/v biases and Llama otherwise.
static HfArch export_arch(CkptReader *r) {
    const ModelConfig *c = ckpt_reader_config(r);
    char *src = ckpt_reader_provenance(r, "source_architecture");
    HfArch a = c->attention_bias ? HF_ARCH_QWEN2 : HF_ARCH_LLAMA;
    if (src && strcmp(src, "MistralForCausalLM") == 0 && !c->attention_bias) a = HF_ARCH_MISTRAL;
    free(src);
    return a;
}

// DIR/tokenizer.json and a tokenizer_config.json that makes AutoTokenizer load it as a
// PreTrainedTokenizerFast with the model's BOS/EOS. 0 when the checkpoint has no tokenizer.
static int export_tokenizer(CkptReader *r, const char *dir, int *written, Err *e) {
    Tokenizer t;
    int present = 0;
    *written = 0;
    if (ckpt_reader_tokenizer(r, &t, &present, e)) return -1;
    if (!present) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int rc = tokenizer_write_hf_json(&t, path, e);
    StrBuf b = {0};
    sb_printf(&b, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n");
    const struct {
        const char *key;
        int id;
    } specials[] = {{"bos_token", t.bos_id}, {"eos_token", t.eos_id}};
    for (int i = 0; i < 2; i++) {
        if (specials[i].id < 0 || specials[i].id >= t.vocab_size) continue;
        sb_printf(&b, "  \"%s\": ", specials[i].key);
        sb_json_string(&b, t.pieces[specials[i].id]);
        sb_printf(&b, ",\n");
    }
    sb_printf(&b, "  \"model_max_length\": %d,\n  \"clean_up_tokenization_spaces\": false\n}\n",
              ckpt_reader_config(r)->max_position_embeddings);
    char *cfg = sb_steal(&b);
    if (rc == 0 && !cfg) rc = err_set(e, "out of memory");
    if (rc == 0) rc = write_text_file(dir, "tokenizer_config.json", cfg, e);
    free(cfg);
    tokenizer_free(&t);
    *written = rc == 0;
    return rc;
}

int hf_export(const char *ckpt, const char *dir, const HfExportOptions *opt, Err *e) {
    CkptReader *r = NULL;
    SafetensorsShardedWriter *sw = NULL;
    LlamaModel table = {0};
    void *buf = NULL;
    char *config = NULL;
    int rc = -1;
    if (ckpt_reader_open(&r, ckpt, e)) return -1;
    const ModelConfig *cfg = ckpt_reader_config(r);
    HfArch arch = export_arch(r);
    if (arch == HF_ARCH_QWEN2 && cfg->head_dim * cfg->num_attention_heads != cfg->hidden_size) {
        err_set(e,
                "%s: head_dim %d x %d heads != hidden_size %d: Qwen2ForCausalLM (the HF class "
                "with q/k/v biases) cannot express this model",
                ckpt, cfg->head_dim, cfg->num_attention_heads, cfg->hidden_size);
        goto done;
    }
    if (llama_create_table(&table, cfg, e)) goto done;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        err_set(e, "%s: cannot create the directory: %s", dir, strerror(errno));
        goto done;
    }
    // Storage dtypes first: the declarations (the header) precede all data.
    StorageDtype *dts = calloc((size_t)table.n_tensors, sizeof *dts);
    size_t max_numel = 0;
    if (!dts) {
        err_set(e, "out of memory");
        goto done;
    }
    StorageDtype cfg_dtype = DTYPE_F32;
    for (int t = 0; t < table.n_tensors; t++) {
        int nd;
        int64_t sh[CKPT_MAX_DIMS];
        if (ckpt_reader_tensor_info(r, table.tensors[t].name, &nd, sh, &dts[t], e)) {
            free(dts);
            goto done;
        }
        if (table.tensors[t].numel > max_numel) max_numel = table.tensors[t].numel;
        if (t == 0) cfg_dtype = opt->dtype_given ? opt->dtype : dts[t];
    }
    buf = malloc(max_numel * sizeof(float));
    if (!buf || safetensors_sharded_open(&sw, dir, opt->max_shard_bytes, e) ||
        safetensors_sharded_metadata(sw, "format", "pt", e)) {
        if (!buf) err_set(e, "out of memory: the largest tensor needs %zu MiB",
                          max_numel * sizeof(float) >> 20);
        free(dts);
        goto done;
    }
    for (int t = 0; t < table.n_tensors; t++) {
        const ParamTensor *p = &table.tensors[t];
        StorageDtype out = opt->dtype_given ? opt->dtype : dts[t];
        if (safetensors_sharded_declare(sw, p->name, storage_to_st(out), p->ndim, p->shape, e)) {
            free(dts);
            goto done;
        }
    }
    for (int t = 0; t < table.n_tensors; t++) {
        const ParamTensor *p = &table.tensors[t];
        StorageDtype stored, out = opt->dtype_given ? opt->dtype : dts[t];
        int fail;
        if (out == dts[t])
            fail = ckpt_reader_tensor_raw(r, p->name, buf, p->ndim, p->shape, &stored, e) ||
                   safetensors_sharded_raw(sw, p->name, buf,
                                           p->numel * safetensors_dtype_size(storage_to_st(out)), e);
        else
            fail = ckpt_reader_tensor(r, p->name, buf, p->ndim, p->shape, e) ||
                   safetensors_sharded_f32(sw, p->name, buf, e);
        if (fail) {
            free(dts);
            goto done;
        }
    }
    free(dts);
    config = hf_config_json(cfg, arch, cfg_dtype);
    char gen[256] = "{\n";
    if (cfg->bos_token_id >= 0)
        snprintf(gen + strlen(gen), sizeof gen - strlen(gen), "  \"bos_token_id\": %d%s\n",
                 cfg->bos_token_id, cfg->eos_token_id >= 0 ? "," : "");
    if (cfg->eos_token_id >= 0)
        snprintf(gen + strlen(gen), sizeof gen - strlen(gen), "  \"eos_token_id\": %d\n",
                 cfg->eos_token_id);
    strcat(gen, "}\n");
    if (!config) {
        err_set(e, "out of memory");
        goto done;
    }
    rc = safetensors_sharded_commit(sw, e);
    sw = NULL;
    if (rc == 0) rc = write_text_file(dir, "config.json", config, e);
    if (rc == 0) rc = write_text_file(dir, "generation_config.json", gen, e);
    int tok_written = 0;
    if (rc == 0) rc = export_tokenizer(r, dir, &tok_written, e);
    if (rc == 0)
        printf("wrote %s: %s, %zu parameters, %s\n", dir, hf_arch_class(arch), table.n_params,
               tok_written ? "tokenizer.json" : "no tokenizer (the checkpoint has none)");
done:
    if (sw) safetensors_sharded_abort(sw);
    free(config);
    free(buf);
    llama_free(&table);
    ckpt_reader_close(r);
    return rc;
}
