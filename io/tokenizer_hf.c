// Hugging Face tokenizer.json reader and writer, and tokenizers from GGUF metadata
// (TokenizerSpec). Only configurations that encode exactly as their reference are accepted;
// anything else is an error naming the file, the field and what is supported.
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "strbuf.h"
#include "textfile.h"
#include "tokenizer.h"
#include "tokenizer_split.h"
#include "unicode.h"

static const char SPACE_MARK[] = "\xE2\x96\x81"; // "▁"

// ----------------------------------------------------------------------------------------------
// a piece -> id table for resolving merges while reading

typedef struct {
    const char *const *pieces;
    const int *lens;
    int32_t *slot;
    size_t mask;
} PieceMap;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

// Maps the pieces of ids with include[id] != 0 (all when include is NULL); first id wins.
static int piecemap_init(PieceMap *m, const char *const *pieces, const int *lens, int n,
                         const uint8_t *exclude) {
    size_t size = 16;
    while (size < 2 * (size_t)n) size *= 2;
    m->pieces = pieces;
    m->lens = lens;
    m->mask = size - 1;
    m->slot = malloc(size * sizeof *m->slot);
    if (!m->slot) return -1;
    memset(m->slot, 0xFF, size * sizeof *m->slot);
    for (int id = 0; id < n; id++) {
        if (exclude && exclude[id]) continue;
        size_t h = fnv(pieces[id], (size_t)lens[id]) & m->mask;
        for (;; h = (h + 1) & m->mask) {
            int o = m->slot[h];
            if (o < 0) {
                m->slot[h] = id;
                break;
            }
            if (lens[o] == lens[id] && memcmp(pieces[o], pieces[id], (size_t)lens[id]) == 0) break;
        }
    }
    return 0;
}

static int piecemap_get(const PieceMap *m, const char *s, size_t n) {
    for (size_t h = fnv(s, n) & m->mask;; h = (h + 1) & m->mask) {
        int id = m->slot[h];
        if (id < 0) return -1;
        if ((size_t)m->lens[id] == n && memcmp(m->pieces[id], s, n) == 0) return id;
    }
}

// ----------------------------------------------------------------------------------------------
// tokenizer.json reader

typedef struct {
    const char *path;
    Err *e;
} Ctx;

static const char *type_of(const JsonValue *v) {
    const char *s = json_object_get_string(v, "type");
    return s ? s : "";
}

static int is_type(const JsonValue *v, const char *type) { return strcmp(type_of(v), type) == 0; }

static int get_bool(const JsonValue *v, const char *key, int dflt) {
    const JsonValue *b = json_object_get(v, key);
    return json_is(b, JSON_BOOL) ? json_bool(b) : dflt;
}

// The elements of a (possibly nested) Sequence, flattened into items[0..*n); a null value gives
// none. Returns -1 when there are more than `cap`.
static int flatten(const JsonValue *v, const char *list_key, const JsonValue **items, int *n,
                   int cap) {
    if (!v || json_is(v, JSON_NULL)) return 0;
    if (is_type(v, "Sequence")) {
        const JsonValue *list = json_object_get(v, list_key);
        for (size_t i = 0; i < json_array_len(list); i++)
            if (flatten(json_array_get(list, i), list_key, items, n, cap)) return -1;
        return 0;
    }
    if (*n >= cap) return -1;
    items[(*n)++] = v;
    return 0;
}

static int string_pattern_is(const JsonValue *pattern, const char *s) {
    const char *p = json_object_get_string(pattern, "String");
    return p && strcmp(p, s) == 0;
}

static int str_is(const char *s, const char *want) { return s && strcmp(s, want) == 0; }

static int read_normalizer(Ctx *c, const JsonValue *root, TokenizerOptions *o) {
    const JsonValue *items[8];
    int n = 0;
    if (flatten(json_object_get(root, "normalizer"), "normalizers", items, &n, 8)) n = 99;
    if (n == 0) o->normalizer = TOKENIZER_NORM_NONE;
    else if (n == 1 && is_type(items[0], "NFC")) o->normalizer = TOKENIZER_NORM_NFC;
    else if (n == 2 && is_type(items[0], "Prepend") &&
             str_is(json_object_get_string(items[0], "prepend"), SPACE_MARK) &&
             is_type(items[1], "Replace") &&
             string_pattern_is(json_object_get(items[1], "pattern"), " ") &&
             str_is(json_object_get_string(items[1], "content"), SPACE_MARK))
        o->normalizer = TOKENIZER_NORM_SPM_PREPEND;
    else
        return err_set(c->e, "%s: normalizer (first step \"%s\", %d steps) is not supported; "
                             "supported: none, NFC, Sequence[Prepend(\"\xE2\x96\x81\"), "
                             "Replace(\" \", \"\xE2\x96\x81\")]", c->path,
                       n > 0 && n < 99 ? type_of(items[0]) : "?", n);
    return 0;
}

static int read_pre_tokenizer(Ctx *c, const JsonValue *root, TokenizerOptions *o, int *bytelevel) {
    const JsonValue *items[8];
    int n = 0;
    if (flatten(json_object_get(root, "pre_tokenizer"), "pretokenizers", items, &n, 8)) n = 99;
    *bytelevel = 0;
    const JsonValue *last = n > 0 && n < 99 ? items[n - 1] : NULL;
    if (last && is_type(last, "ByteLevel")) {
        *bytelevel = 1;
        o->byte_level_prefix_space = get_bool(last, "add_prefix_space", 0);
        int regex = get_bool(last, "use_regex", 1);
        if (n == 1 && regex) {
            o->pre = TOKENIZER_PRE_GPT2;
            return 0;
        }
        if (n == 1 && !regex) {
            o->pre = TOKENIZER_PRE_NONE;
            return 0;
        }
        if (n == 2 && regex && is_type(items[0], "Digits") &&
            get_bool(items[0], "individual_digits", 0)) {
            o->pre = TOKENIZER_PRE_DIGITS_GPT2;
            return 0;
        }
        if (n == 2 && !regex && is_type(items[0], "Split")) {
            const char *re = json_object_get_string(json_object_get(items[0], "pattern"), "Regex");
            const char *behavior = json_object_get_string(items[0], "behavior");
            int invert = get_bool(items[0], "invert", 0);
            if (!re || !behavior || strcmp(behavior, "Isolated") != 0 || invert)
                return err_set(c->e, "%s: pre_tokenizer Split must have a Regex pattern, "
                                     "behavior \"Isolated\" and invert false", c->path);
            if (strcmp(re, TOKENIZER_REGEX_GPT2) == 0) o->pre = TOKENIZER_PRE_GPT2;
            else if (strcmp(re, TOKENIZER_REGEX_LLAMA3) == 0) o->pre = TOKENIZER_PRE_LLAMA3;
            else if (strcmp(re, TOKENIZER_REGEX_QWEN2) == 0) o->pre = TOKENIZER_PRE_QWEN2;
            else
                return err_set(c->e, "%s: pre_tokenizer Split regex \"%s\" is not one of the "
                                     "supported patterns (GPT-2, Llama 3, Qwen2; "
                                     "docs/tokenizers.md)", c->path, re);
            return 0;
        }
    }
    if (n == 0) {
        o->pre = TOKENIZER_PRE_NONE;
        return 0;
    }
    if (n == 1 && is_type(items[0], "Metaspace")) {
        const char *rep = json_object_get_string(items[0], "replacement");
        const char *scheme = json_object_get_string(items[0], "prepend_scheme");
        if (!rep || strcmp(rep, SPACE_MARK) != 0 || get_bool(items[0], "split", 1))
            return err_set(c->e, "%s: pre_tokenizer Metaspace is supported with replacement "
                                 "\"\xE2\x96\x81\" and split false", c->path);
        if (!scheme) // older files: add_prefix_space
            scheme = get_bool(items[0], "add_prefix_space", 1) ? "always" : "never";
        if (strcmp(scheme, "always") == 0) o->prepend_scheme = TOKENIZER_PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) o->prepend_scheme = TOKENIZER_PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) o->prepend_scheme = TOKENIZER_PREPEND_NEVER;
        else return err_set(c->e, "%s: pre_tokenizer Metaspace prepend_scheme \"%s\"", c->path, scheme);
        o->pre = TOKENIZER_PRE_METASPACE;
        return 0;
    }
    return err_set(c->e, "%s: pre_tokenizer (first step \"%s\", %d steps) is not supported; "
                         "supported: ByteLevel(use_regex true), Sequence[Split(GPT-2, Llama 3 or "
                         "Qwen2 regex, Isolated), ByteLevel(use_regex false)], "
                         "Sequence[Digits(individual_digits true), ByteLevel], Metaspace, none",
                   c->path, n > 0 && n < 99 ? type_of(items[0]) : "?", n);
}

static int read_decoder(Ctx *c, const JsonValue *root, TokenizerOptions *o) {
    const JsonValue *items[8];
    int n = 0;
    const JsonValue *dec = json_object_get(root, "decoder");
    if (!dec || json_is(dec, JSON_NULL))
        return err_set(c->e, "%s: decoder is null (HF then joins tokens with spaces); only "
                             "ByteLevel, ByteFallback, Fuse, Replace(\"\xE2\x96\x81\", \" \"), "
                             "Strip(\" \", 1, 0) and Metaspace decoders are supported", c->path);
    if (flatten(dec, "decoders", items, &n, 8))
        return err_set(c->e, "%s: decoder has more than 8 steps", c->path);
    o->decode = 0;
    for (int i = 0; i < n; i++) {
        const JsonValue *d = items[i];
        if (is_type(d, "ByteLevel")) o->decode |= TOKENIZER_DEC_BYTELEVEL;
        else if (is_type(d, "ByteFallback")) o->decode |= TOKENIZER_DEC_BYTE_FALLBACK;
        else if (is_type(d, "Fuse")) continue;
        else if (is_type(d, "Replace") &&
                 string_pattern_is(json_object_get(d, "pattern"), SPACE_MARK) &&
                 str_is(json_object_get_string(d, "content"), " "))
            o->decode |= TOKENIZER_DEC_SPACE;
        else if (is_type(d, "Strip") && str_is(json_object_get_string(d, "content"), " ") &&
                 json_number(json_object_get(d, "start")) == 1 &&
                 json_number(json_object_get(d, "stop")) == 0)
            o->decode |= TOKENIZER_DEC_STRIP;
        else if (is_type(d, "Metaspace")) {
            const char *scheme = json_object_get_string(d, "prepend_scheme");
            o->decode |= TOKENIZER_DEC_SPACE;
            if (scheme ? strcmp(scheme, "never") != 0 : get_bool(d, "add_prefix_space", 1))
                o->decode |= TOKENIZER_DEC_STRIP;
        } else
            return err_set(c->e, "%s: decoder step \"%s\" is not supported (supported: "
                                 "ByteLevel, ByteFallback, Fuse, Replace(\"\xE2\x96\x81\", \" \"), "
                                 "Strip(\" \", 1, 0), Metaspace)", c->path, type_of(d));
    }
    return 0;
}

// The single-sequence template: [special?] $A [special?].
static int read_post_processor(Ctx *c, const JsonValue *root, const PieceMap *all,
                               TokenizerOptions *o, int *bos, int *eos) {
    const JsonValue *items[8];
    int n = 0;
    if (flatten(json_object_get(root, "post_processor"), "processors", items, &n, 8))
        return err_set(c->e, "%s: post_processor has more than 8 steps", c->path);
    for (int i = 0; i < n; i++) {
        const JsonValue *p = items[i];
        if (is_type(p, "ByteLevel")) continue; // offsets only
        if (!is_type(p, "TemplateProcessing"))
            return err_set(c->e, "%s: post_processor \"%s\" is not supported (supported: "
                                 "TemplateProcessing, ByteLevel, none)", c->path, type_of(p));
        const JsonValue *single = json_object_get(p, "single");
        size_t m = json_array_len(single);
        int seen_a = 0;
        for (size_t k = 0; k < m; k++) {
            const JsonValue *it = json_array_get(single, k);
            const JsonValue *sp = json_object_get(it, "SpecialToken");
            if (json_object_get(it, "Sequence")) {
                if (seen_a) return err_set(c->e, "%s: post_processor template repeats $A", c->path);
                seen_a = 1;
                continue;
            }
            const char *name = json_object_get_string(sp, "id");
            if (!name) return err_set(c->e, "%s: post_processor single template item %zu is "
                                            "neither SpecialToken nor Sequence", c->path, k);
            const JsonValue *st = json_object_get(json_object_get(p, "special_tokens"), name);
            const JsonValue *ids = json_object_get(st, "ids");
            int id = -1;
            if (json_array_len(ids) == 1) id = (int)json_number(json_array_get(ids, 0));
            else if (!st) id = piecemap_get(all, name, strlen(name));
            if (id < 0 || (st && json_array_len(ids) != 1))
                return err_set(c->e, "%s: post_processor special token \"%s\" must map to one "
                                     "token id", c->path, name);
            if (!seen_a) {
                if (o->add_bos) return err_set(c->e, "%s: post_processor adds two leading tokens; "
                                                     "one is supported", c->path);
                o->add_bos = 1;
                *bos = id;
            } else {
                if (o->add_eos) return err_set(c->e, "%s: post_processor adds two trailing "
                                                     "tokens; one is supported", c->path);
                o->add_eos = 1;
                *eos = id;
            }
        }
        if (!seen_a) return err_set(c->e, "%s: post_processor single template lacks $A", c->path);
    }
    return 0;
}

static int is_int_in(const JsonValue *v, double lo, double hi) {
    double d = json_number(v);
    return json_is(v, JSON_NUMBER) && d >= lo && d <= hi && d == (double)(long long)d;
}

static int read_hf_root(Tokenizer *t, JsonValue *root, const char *path, Err *e);

int tokenizer_read_hf_json(Tokenizer *t, const char *path, Err *e) {
    memset(t, 0, sizeof *t);
    JsonValue *root = json_parse_file(path, JSON_FILE_SINGLE, e);
    if (!root) return -1;
    return read_hf_root(t, root, path, e);
}

int tokenizer_read_hf_json_memory(Tokenizer *t, const char *text, size_t len, const char *name,
                                  Err *e) {
    memset(t, 0, sizeof *t);
    JsonValue *root = json_parse(text, len, e);
    if (!root) return err_prefix(e, "%s", name);
    return read_hf_root(t, root, name, e);
}

// Reads the parsed document (and frees it).
static int read_hf_root(Tokenizer *t, JsonValue *root, const char *path, Err *e) {
    Ctx c = {path, e};
    int rc = -1, V = 0, n_merges = 0, bytelevel = 0, bos = -1, eos = -1;
    const char **pieces = NULL;
    int *lens = NULL;
    uint8_t *flags = NULL, *seen = NULL;
    int32_t *merges = NULL;
    PieceMap vocab_map = {0}, all_map = {0};
    TokenizerOptions o = {.unk_id = -1, .add_prefix_space = 1};

    const JsonValue *model = json_object_get(root, "model");
    const char *mtype = json_object_get_string(model, "type");
    if (!json_is(model, JSON_OBJECT) || (mtype && strcmp(mtype, "BPE") != 0) ||
        (!mtype && !json_object_get(model, "merges"))) {
        err_set(e, "%s: model.type \"%s\" is not supported (supported: BPE)", path,
                mtype ? mtype : "?");
        goto done;
    }
    const JsonValue *vocab = json_object_get(model, "vocab");
    const JsonValue *added = json_object_get(root, "added_tokens");
    if (!json_is(vocab, JSON_OBJECT) || json_object_len(vocab) == 0) {
        err_set(e, "%s: model.vocab must be a non-empty object of piece: id", path);
        goto done;
    }
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const JsonValue *v = json_object_get(model, affixes[i]);
        size_t len = 0;
        if (v && !json_is(v, JSON_NULL) && !(json_string(v, &len) && len == 0)) {
            err_set(e, "%s: model.%s is set; BPE with %s is not supported", path, affixes[i],
                    affixes[i]);
            goto done;
        }
    }
    const JsonValue *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is(dropout, JSON_NULL) && json_number(dropout) != 0.0) {
        err_set(e, "%s: model.dropout is set; BPE dropout is random and not supported", path);
        goto done;
    }
    // Ids: the model's vocabulary and the added tokens together must be 0..V-1.
    for (size_t i = 0; i < json_object_len(vocab); i++) {
        const JsonValue *v = json_object_value(vocab, i);
        if (!is_int_in(v, 0, (1 << 24) - 1)) {
            err_set(e, "%s: model.vocab[\"%s\"] is not a token id in 0..16777215", path,
                    json_object_key(vocab, i));
            goto done;
        }
        if ((int)json_number(v) + 1 > V) V = (int)json_number(v) + 1;
    }
    for (size_t i = 0; i < json_array_len(added); i++) {
        const JsonValue *id = json_object_get(json_array_get(added, i), "id");
        if (!is_int_in(id, 0, (1 << 24) - 1)) {
            err_set(e, "%s: added_tokens[%zu].id is not a token id in 0..16777215", path, i);
            goto done;
        }
        if ((int)json_number(id) + 1 > V) V = (int)json_number(id) + 1;
    }
    pieces = calloc((size_t)V, sizeof *pieces);
    lens = calloc((size_t)V, sizeof *lens);
    flags = calloc((size_t)V, 1);
    seen = calloc((size_t)V, 1);
    if (!pieces || !lens || !flags || !seen) goto oom;
    for (size_t i = 0; i < json_object_len(vocab); i++) {
        int id = (int)json_number(json_object_value(vocab, i));
        if (seen[id]) {
            err_set(e, "%s: model.vocab gives id %d to two pieces", path, id);
            goto done;
        }
        seen[id] = 1;
        pieces[id] = json_object_key(vocab, i);
        lens[id] = (int)strlen(pieces[id]);
    }
    for (size_t i = 0; i < json_array_len(added); i++) {
        const JsonValue *a = json_array_get(added, i);
        int id = (int)json_number(json_object_get(a, "id"));
        size_t clen = 0;
        const char *content = json_string(json_object_get(a, "content"), &clen);
        if (!content || clen == 0 || strlen(content) != clen) {
            err_set(e, "%s: added_tokens[%zu].content must be a non-empty string without NUL",
                    path, i);
            goto done;
        }
        if (get_bool(a, "single_word", 0)) {
            err_set(e, "%s: added_tokens[%zu] (\"%s\") has single_word true, which is not "
                       "supported", path, i, content);
            goto done;
        }
        if (seen[id] == 1 && ((size_t)lens[id] != clen || memcmp(pieces[id], content, clen))) {
            err_set(e, "%s: added_tokens[%zu] gives id %d the content \"%s\" but model.vocab "
                       "has \"%s\" there", path, i, id, content, pieces[id]);
            goto done;
        }
        if (seen[id] == 2) {
            err_set(e, "%s: added_tokens lists id %d twice", path, id);
            goto done;
        }
        uint8_t f = TOKENIZER_TOKEN_ADDED;
        if (!seen[id]) f |= TOKENIZER_TOKEN_NOT_IN_MODEL;
        int special = get_bool(a, "special", 0);
        if (special) f |= TOKENIZER_TOKEN_SPECIAL;
        if (get_bool(a, "normalized", !special)) f |= TOKENIZER_TOKEN_NORMALIZED;
        if (get_bool(a, "lstrip", 0)) f |= TOKENIZER_TOKEN_LSTRIP;
        if (get_bool(a, "rstrip", 0)) f |= TOKENIZER_TOKEN_RSTRIP;
        seen[id] = 2;
        flags[id] = f;
        pieces[id] = content;
        lens[id] = (int)clen;
    }
    for (int id = 0; id < V; id++)
        if (!seen[id]) {
            err_set(e, "%s: no token has id %d (ids must run 0..%d without gaps)", path, id,
                    V - 1);
            goto done;
        }
    if (piecemap_init(&all_map, pieces, lens, V, NULL)) goto oom;
    { // merges and unk name model-vocabulary pieces only
        uint8_t *excl = malloc((size_t)V);
        if (!excl) goto oom;
        for (int id = 0; id < V; id++) excl[id] = (flags[id] & TOKENIZER_TOKEN_NOT_IN_MODEL) != 0;
        int r = piecemap_init(&vocab_map, pieces, lens, V, excl);
        free(excl);
        if (r) goto oom;
    }

    const JsonValue *unk = json_object_get(model, "unk_token");
    if (unk && !json_is(unk, JSON_NULL)) {
        size_t ul = 0;
        const char *us = json_string(unk, &ul);
        o.unk_id = us ? piecemap_get(&vocab_map, us, ul) : -1;
        if (o.unk_id < 0) {
            err_set(e, "%s: model.unk_token \"%s\" is not in model.vocab", path, us ? us : "?");
            goto done;
        }
    }
    o.fuse_unk = get_bool(model, "fuse_unk", 0);
    o.byte_fallback = get_bool(model, "byte_fallback", 0);
    o.ignore_merges = get_bool(model, "ignore_merges", 0);
    if (read_normalizer(&c, root, &o) || read_pre_tokenizer(&c, root, &o, &bytelevel) ||
        read_decoder(&c, root, &o) || read_post_processor(&c, root, &all_map, &o, &bos, &eos))
        goto done;
    o.kind = bytelevel || (o.decode & TOKENIZER_DEC_BYTELEVEL) ? TOKENIZER_BPE_BYTELEVEL
                                                               : TOKENIZER_BPE_SPM;
    if (o.kind == TOKENIZER_BPE_BYTELEVEL && o.normalizer == TOKENIZER_NORM_SPM_PREPEND) {
        err_set(e, "%s: a byte-level BPE with the SentencePiece normaliser is not supported", path);
        goto done;
    }

    const JsonValue *mlist = json_object_get(model, "merges");
    n_merges = (int)json_array_len(mlist);
    merges = malloc((size_t)n_merges * 2 * sizeof *merges + 1);
    if (!merges) goto oom;
    for (int r = 0; r < n_merges; r++) {
        const JsonValue *m = json_array_get(mlist, (size_t)r);
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (json_is(m, JSON_STRING)) { // "a b" (tokenizers < 0.20)
            const char *s = json_string(m, NULL), *sp = strchr(s, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(sp + 1);
            }
        } else if (json_array_len(m) == 2) { // ["a", "b"]
            a = json_string(json_array_get(m, 0), &la);
            b = json_string(json_array_get(m, 1), &lb);
        }
        if (!a || !b) {
            err_set(e, "%s: model.merges[%d] is neither \"a b\" nor [\"a\", \"b\"]", path, r);
            goto done;
        }
        int ia = piecemap_get(&vocab_map, a, la), ib = piecemap_get(&vocab_map, b, lb);
        if (ia < 0 || ib < 0) {
            err_set(e, "%s: model.merges[%d] names \"%.*s\", which is not in model.vocab", path, r,
                    (int)(ia < 0 ? la : lb), ia < 0 ? a : b);
            goto done;
        }
        merges[2 * r] = ia;
        merges[2 * r + 1] = ib;
    }
    if (tokenizer_build(t, &o, V, pieces, lens, NULL, flags, n_merges, merges, bos, eos, e)) {
        err_prefix(e, "%s", path);
        goto done;
    }
    if (bos < 0 || eos < 0) { // no template: name them from the usual special tokens for callers
        static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|im_start|>",
                                                "<|endoftext|>"};
        static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|im_end|>",
                                                "<|endoftext|>"};
        for (int i = 0; i < 4 && t->bos_id < 0; i++)
            t->bos_id = piecemap_get(&all_map, bos_names[i], strlen(bos_names[i]));
        for (int i = 0; i < 4 && t->eos_id < 0; i++)
            t->eos_id = piecemap_get(&all_map, eos_names[i], strlen(eos_names[i]));
    }
    rc = 0;
    goto done;
oom:
    err_set(e, "%s: out of memory", path);
done:
    free(vocab_map.slot);
    free(all_map.slot);
    free(pieces);
    free(lens);
    free(flags);
    free(seen);
    free(merges);
    json_free(root);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// tokenizer.json writer

static int valid_utf8(const char *s, int len) {
    for (int i = 0; i < len;) {
        uint32_t cp;
        i += utf8_next(s + i, (size_t)(len - i), &cp);
        if (cp & UNICODE_INVALID_FLAG) return 0;
    }
    return (int)strlen(s) == len;
}

// A piece as tokenizer.json spells it: score kinds from llama2.c hold " " for "▁".
static char *hf_piece(const Tokenizer *t, int id) {
    const char *p = t->pieces[id];
    int len = t->piece_len[id];
    char *out = malloc((size_t)len * 3 + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (int i = 0; i < len; i++) {
        if (t->opt.kind == TOKENIZER_LLAMA2C && p[i] == ' ') memcpy(out + n, SPACE_MARK, 3), n += 3;
        else out[n++] = p[i];
    }
    out[n] = '\0';
    return out;
}

typedef struct {
    const char *left, *right;
    float score;
    int left_id, right_id;
} ScoreMerge;

static int score_merge_cmp(const void *pa, const void *pb) {
    const ScoreMerge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1; // higher score first
    if (a->left_id != b->left_id) return a->left_id - b->left_id;
    return a->right_id - b->right_id;
}

// transformers' SentencePieceExtractor: for every piece, every split into two pieces of the
// vocabulary (at character boundaries) is a merge; all of them sorted by the piece's score,
// highest first, then by the ids of the two halves (the extractor's stable sort of per-piece
// lists ordered by those ids, taken in id order, gives the same order).
static int score_merges(const Tokenizer *t, char **hp, const PieceMap *map, ScoreMerge **out,
                        int *n_out) {
    size_t cap = 1024, n = 0;
    ScoreMerge *m = malloc(cap * sizeof *m);
    if (!m) return -1;
    for (int id = 0; id < t->vocab_size; id++) {
        const char *p = hp[id];
        size_t len = strlen(p);
        for (size_t k = 0; k < len;) {
            uint32_t cp;
            k += (size_t)utf8_next(p + k, len - k, &cp);
            if (k >= len) break;
            int l = piecemap_get(map, p, k), r = piecemap_get(map, p + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                ScoreMerge *g = realloc(m, (cap *= 2) * sizeof *m);
                if (!g) {
                    free(m);
                    return -1;
                }
                m = g;
            }
            m[n++] = (ScoreMerge){hp[l], hp[r], t->scores[id], l, r};
        }
    }
    // Equal (score, left, right) cannot come from two pieces: the pair determines the piece.
    qsort(m, n, sizeof *m, score_merge_cmp);
    *out = m;
    *n_out = (int)n;
    return 0;
}

static void json_bool_member(StrBuf *b, const char *key, int v, int comma) {
    sb_printf(b, "\"%s\": %s%s", key, v ? "true" : "false", comma ? ", " : "");
}

static void write_pre_tokenizer(StrBuf *b, const TokenizerOptions *o) {
    const char *bl_regex = "{\"type\": \"ByteLevel\", \"add_prefix_space\": %s, "
                           "\"trim_offsets\": true, \"use_regex\": %s}";
    const char *ps = o->byte_level_prefix_space ? "true" : "false";
    switch (o->pre) {
    case TOKENIZER_PRE_NONE:
        if (o->kind == TOKENIZER_BPE_BYTELEVEL) sb_printf(b, bl_regex, ps, "false");
        else sb_printf(b, "null");
        break;
    case TOKENIZER_PRE_GPT2: sb_printf(b, bl_regex, ps, "true"); break;
    case TOKENIZER_PRE_DIGITS_GPT2:
        sb_printf(b, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", "
                     "\"individual_digits\": true}, ");
        sb_printf(b, bl_regex, ps, "true");
        sb_printf(b, "]}");
        break;
    case TOKENIZER_PRE_LLAMA3:
    case TOKENIZER_PRE_QWEN2:
        sb_printf(b, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                     "\"pattern\": {\"Regex\": ");
        sb_json_string(b, o->pre == TOKENIZER_PRE_LLAMA3 ? TOKENIZER_REGEX_LLAMA3
                                                         : TOKENIZER_REGEX_QWEN2);
        sb_printf(b, "}, \"behavior\": \"Isolated\", \"invert\": false}, ");
        sb_printf(b, bl_regex, ps, "false");
        sb_printf(b, "]}");
        break;
    case TOKENIZER_PRE_METASPACE:
        sb_printf(b, "{\"type\": \"Metaspace\", \"replacement\": \"%s\", \"prepend_scheme\": "
                     "\"%s\", \"split\": false}", SPACE_MARK,
                  o->prepend_scheme == TOKENIZER_PREPEND_ALWAYS  ? "always"
                  : o->prepend_scheme == TOKENIZER_PREPEND_FIRST ? "first"
                                                                 : "never");
        break;
    }
}

int tokenizer_write_hf_json(const Tokenizer *t, const char *path, Err *e) {
    int V = t->vocab_size, rc = -1, n_merges = 0;
    int score_kind = t->opt.kind == TOKENIZER_LLAMA2C || t->opt.kind == TOKENIZER_SPM_SCORES;
    char **hp = calloc((size_t)V, sizeof *hp);
    int *hlen = calloc((size_t)V, sizeof *hlen);
    uint8_t *excl = calloc((size_t)V, 1);
    ScoreMerge *sm = NULL;
    PieceMap map = {0};
    StrBuf b = {0};
    if (!hp || !hlen || !excl) goto oom;
    for (int id = 0; id < V; id++) {
        if (!valid_utf8(t->pieces[id], t->piece_len[id])) {
            err_set(e, "%s: token %d is not valid UTF-8 (or holds a NUL); tokenizer.json cannot "
                       "hold it", path, id);
            goto done;
        }
        if (!(hp[id] = hf_piece(t, id))) goto oom;
        hlen[id] = (int)strlen(hp[id]);
        excl[id] = (t->token_flags[id] & TOKENIZER_TOKEN_NOT_IN_MODEL) != 0;
    }
    if (piecemap_init(&map, (const char *const *)hp, hlen, V, excl)) goto oom;
    for (int id = 0; id < V; id++)
        if (!excl[id] && piecemap_get(&map, hp[id], (size_t)hlen[id]) != id) {
            err_set(e, "%s: tokens %d and %d are both \"%s\"; tokenizer.json's vocab cannot "
                       "hold duplicates", path, piecemap_get(&map, hp[id], (size_t)hlen[id]), id,
                    hp[id]);
            goto done;
        }
    if (score_kind) {
        if (score_merges(t, hp, &map, &sm, &n_merges)) goto oom;
    } else {
        n_merges = t->n_merges;
    }

    // Which tokens go to added_tokens: flagged ones, and for score kinds BOS and EOS (special,
    // so decode(skip_special_tokens) drops them). Not unk: llama2.c encodes the text "<unk>" as
    // characters, and an added token would be matched instead.
    int unk = t->opt.unk_id;
    if (score_kind && unk < 0 && V > 0 && strcmp(hp[0], "<unk>") == 0) unk = 0;
    sb_printf(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                  "  \"added_tokens\": [");
    int first = 1;
    for (int id = 0; id < V; id++) {
        uint8_t f = t->token_flags[id];
        if (score_kind && (id == t->bos_id || id == t->eos_id) &&
            !(f & TOKENIZER_TOKEN_ADDED))
            f = TOKENIZER_TOKEN_ADDED | TOKENIZER_TOKEN_SPECIAL;
        if (!(f & TOKENIZER_TOKEN_ADDED)) continue;
        sb_printf(&b, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", id);
        sb_json_string(&b, hp[id]);
        sb_printf(&b, ", ");
        json_bool_member(&b, "single_word", 0, 1);
        json_bool_member(&b, "lstrip", f & TOKENIZER_TOKEN_LSTRIP, 1);
        json_bool_member(&b, "rstrip", f & TOKENIZER_TOKEN_RSTRIP, 1);
        json_bool_member(&b, "normalized", f & TOKENIZER_TOKEN_NORMALIZED, 1);
        json_bool_member(&b, "special", f & TOKENIZER_TOKEN_SPECIAL, 0);
        sb_printf(&b, "}");
        first = 0;
    }
    sb_printf(&b, "\n  ],\n  \"normalizer\": ");
    TokenizerNormalizer norm = score_kind ? TOKENIZER_NORM_SPM_PREPEND : t->opt.normalizer;
    if (score_kind && !t->opt.add_prefix_space) norm = TOKENIZER_NORM_NONE;
    if (norm == TOKENIZER_NORM_NFC) sb_printf(&b, "{\"type\": \"NFC\"}");
    else if (norm == TOKENIZER_NORM_SPM_PREPEND)
        sb_printf(&b, "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", "
                      "\"prepend\": \"%s\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": "
                      "\" \"}, \"content\": \"%s\"}]}", SPACE_MARK, SPACE_MARK);
    else if (score_kind) // spaces still become "▁", without a prefix
        sb_printf(&b, "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": "
                      "\"%s\"}", SPACE_MARK);
    else sb_printf(&b, "null");
    sb_printf(&b, ",\n  \"pre_tokenizer\": ");
    if (score_kind) sb_printf(&b, "null");
    else write_pre_tokenizer(&b, &t->opt);
    sb_printf(&b, ",\n  \"post_processor\": ");
    int add_bos = t->opt.add_bos, add_eos = t->opt.add_eos;
    if (add_bos || add_eos) {
        sb_printf(&b, "{\"type\": \"TemplateProcessing\", \"single\": [");
        if (add_bos) {
            sb_printf(&b, "{\"SpecialToken\": {\"id\": ");
            sb_json_string(&b, hp[t->bos_id]);
            sb_printf(&b, ", \"type_id\": 0}}, ");
        }
        sb_printf(&b, "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}");
        if (add_eos) {
            sb_printf(&b, ", {\"SpecialToken\": {\"id\": ");
            sb_json_string(&b, hp[t->eos_id]);
            sb_printf(&b, ", \"type_id\": 0}}");
        }
        sb_printf(&b, "], \"pair\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
                      "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {");
        for (int k = 0; k < 2; k++) {
            int id = k == 0 ? t->bos_id : t->eos_id;
            if (!(k == 0 ? add_bos : add_eos)) continue;
            if (k == 1 && add_bos && t->eos_id == t->bos_id) continue;
            if (k == 1 && add_bos) sb_printf(&b, ", ");
            sb_json_string(&b, hp[id]);
            sb_printf(&b, ": {\"id\": ");
            sb_json_string(&b, hp[id]);
            sb_printf(&b, ", \"ids\": [%d], \"tokens\": [", id);
            sb_json_string(&b, hp[id]);
            sb_printf(&b, "]}");
        }
        sb_printf(&b, "}}");
    } else {
        sb_printf(&b, "null");
    }
    sb_printf(&b, ",\n  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [");
    int dec = score_kind ? TOKENIZER_DEC_SPACE | TOKENIZER_DEC_BYTE_FALLBACK |
                               (t->opt.add_prefix_space ? TOKENIZER_DEC_STRIP : 0)
                         : t->opt.decode;
    if (dec & TOKENIZER_DEC_SPACE)
        sb_printf(&b, "{\"type\": \"Replace\", \"pattern\": {\"String\": \"%s\"}, \"content\": "
                      "\" \"}, ", SPACE_MARK);
    if (dec & TOKENIZER_DEC_BYTE_FALLBACK) sb_printf(&b, "{\"type\": \"ByteFallback\"}, ");
    sb_printf(&b, "{\"type\": \"Fuse\"}");
    if (dec & TOKENIZER_DEC_STRIP)
        sb_printf(&b, ", {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}");
    if (dec & TOKENIZER_DEC_BYTELEVEL)
        sb_printf(&b, ", {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                      "\"trim_offsets\": true, \"use_regex\": true}");
    sb_printf(&b, "]},\n  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": ");
    if (unk >= 0) sb_json_string(&b, hp[unk]);
    else sb_printf(&b, "null");
    sb_printf(&b, ", \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, ");
    json_bool_member(&b, "fuse_unk", score_kind ? 1 : t->opt.fuse_unk, 1);
    json_bool_member(&b, "byte_fallback", score_kind ? 1 : t->opt.byte_fallback, 1);
    json_bool_member(&b, "ignore_merges", score_kind ? 0 : t->opt.ignore_merges, 1);
    sb_printf(&b, "\n    \"vocab\": {");
    first = 1;
    for (int id = 0; id < V; id++) {
        if (excl[id]) continue;
        sb_printf(&b, "%s\n      ", first ? "" : ",");
        sb_json_string(&b, hp[id]);
        sb_printf(&b, ": %d", id);
        first = 0;
    }
    sb_printf(&b, "\n    },\n    \"merges\": [");
    for (int r = 0; r < n_merges; r++) {
        const char *l = score_kind ? sm[r].left : hp[t->merges[2 * r]];
        const char *rr = score_kind ? sm[r].right : hp[t->merges[2 * r + 1]];
        sb_printf(&b, "%s\n      [", r ? "," : "");
        sb_json_string(&b, l);
        sb_printf(&b, ", ");
        sb_json_string(&b, rr);
        sb_printf(&b, "]");
    }
    sb_printf(&b, "\n    ]\n  }\n}\n");
    if (b.failed) goto oom;
    rc = file_write_atomic(path, b.data, b.len, e);
    goto done;
oom:
    err_set(e, "%s: out of memory writing tokenizer.json", path);
done:
    if (hp)
        for (int id = 0; id < V; id++) free(hp[id]);
    free(hp);
    free(hlen);
    free(excl);
    free(sm);
    free(map.slot);
    sb_free(&b);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// GGUF metadata

int tokenizer_from_spec(Tokenizer *t, const TokenizerSpec *s, Err *e) {
    memset(t, 0, sizeof *t);
    const char *src = s->source ? s->source : "GGUF";
    if (!s->model)
        return err_set(e, "%s: tokenizer.ggml.model is missing", src);
    int gpt2 = strcmp(s->model, "gpt2") == 0, llama = strcmp(s->model, "llama") == 0;
    if (!gpt2 && !llama)
        return err_set(e, "%s: tokenizer.ggml.model \"%s\" is not supported (supported: "
                          "\"llama\" SentencePiece, \"gpt2\" byte-level BPE)", src, s->model);
    if (s->n_tokens <= 0 || !s->tokens || !s->token_len)
        return err_set(e, "%s: tokenizer.ggml.tokens is missing or empty", src);
    TokenizerOptions o = {.unk_id = -1};
    if (gpt2) {
        const char *pre = s->pre ? s->pre : "(absent)";
        o.kind = TOKENIZER_BPE_BYTELEVEL;
        o.decode = TOKENIZER_DEC_BYTELEVEL;
        // llama.cpp's names (llama-vocab.cpp) for the patterns we implement.
        if (strcmp(pre, "gpt2") == 0) o.pre = TOKENIZER_PRE_GPT2;
        else if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-v3") || !strcmp(pre, "llama-bpe"))
            o.pre = TOKENIZER_PRE_LLAMA3;
        else if (strcmp(pre, "qwen2") == 0) o.pre = TOKENIZER_PRE_QWEN2;
        else if (strcmp(pre, "smollm") == 0) o.pre = TOKENIZER_PRE_DIGITS_GPT2;
        else
            return err_set(e, "%s: tokenizer.ggml.pre \"%s\" is not supported (supported: "
                              "gpt2, llama3/llama-v3/llama-bpe, qwen2, smollm; llama.cpp's "
                              "\"default\" is a different, four-pattern split)", src, pre);
        if (s->n_merges <= 0 || !s->merges || !s->merge_len)
            return err_set(e, "%s: tokenizer.ggml.merges is missing; a gpt2 tokenizer needs it",
                           src);
        o.add_bos = s->add_bos > 0;
        o.add_eos = s->add_eos > 0;
    } else {
        if (!s->scores) return err_set(e, "%s: tokenizer.ggml.scores is missing", src);
        o.kind = TOKENIZER_SPM_SCORES;
        o.byte_fallback = 1;
        o.unk_id = s->unk_id >= 0 && s->unk_id < s->n_tokens ? s->unk_id : -1;
        o.add_bos = s->add_bos != 0; // llama.cpp's default for SentencePiece: add BOS
        o.add_eos = s->add_eos > 0;
        o.add_prefix_space = s->add_space_prefix != 0;
        o.decode = TOKENIZER_DEC_BYTE_FALLBACK | TOKENIZER_DEC_SPACE |
                   (o.add_prefix_space ? TOKENIZER_DEC_STRIP : 0);
    }
    int V = s->n_tokens, rc = -1;
    uint8_t *flags = calloc((size_t)V, 1);
    int32_t *merges = malloc((size_t)(gpt2 ? s->n_merges : 0) * 2 * sizeof *merges + 1);
    PieceMap map = {0};
    if (!flags || !merges) goto oom;
    for (int i = 0; i < V; i++) {
        int type = s->token_type ? s->token_type[i] : 1;
        if (type == 3) flags[i] = TOKENIZER_TOKEN_ADDED | TOKENIZER_TOKEN_SPECIAL;
        else if (type == 4) flags[i] = TOKENIZER_TOKEN_ADDED;
    }
    if (gpt2) {
        if (piecemap_init(&map, s->tokens, s->token_len, V, NULL)) goto oom;
        for (int r = 0; r < s->n_merges; r++) {
            const char *m = s->merges[r];
            int len = s->merge_len[r], sp = -1;
            for (int k = 0; k < len && sp < 0; k++)
                if (m[k] == ' ') sp = k;
            int a = sp > 0 ? piecemap_get(&map, m, (size_t)sp) : -1;
            int b = sp > 0 ? piecemap_get(&map, m + sp + 1, (size_t)(len - sp - 1)) : -1;
            if (a < 0 || b < 0) {
                err_set(e, "%s: tokenizer.ggml.merges[%d] \"%.*s\" is not two tokens separated "
                           "by a space", src, r, len, m);
                goto done;
            }
            merges[2 * r] = a;
            merges[2 * r + 1] = b;
        }
    }
    if (tokenizer_build(t, &o, V, s->tokens, s->token_len, s->scores, flags,
                        gpt2 ? s->n_merges : 0, merges, s->bos_id < V ? s->bos_id : -1,
                        s->eos_id < V ? s->eos_id : -1, e)) {
        err_prefix(e, "%s", src);
        goto done;
    }
    rc = 0;
    goto done;
oom:
    err_set(e, "%s: out of memory", src);
done:
    free(flags);
    free(merges);
    free(map.slot);
    return rc;
}
