// Driver of the tokenizer oracle test (check_tokenizers.py): loads a tokenizer from a
// tokenizer.json, a llama2.c tokenizer.bin or a GGUF-metadata dump, optionally passes it through
// an HDF5 checkpoint and tokenizer.json writer, and encodes/decodes texts for comparison.
// Usage:
//   tokenizer_driver encode FORMAT SOURCE TEXTS.jsonl OUT.jsonl [--via-ckpt F.h5] [--write-hf F]
//       FORMAT: hf (tokenizer.json), llama2c (tokenizer.bin, vocab 512), spec (JSON dump of a
//       GGUF's tokenizer.ggml.* keys). TEXTS: one JSON string per line. OUT: per text
//       {"ids": encode(add_bos 0), "bos": encode(add_bos 1), "dec": decode of ids skipping
//       special tokens, "all": decode of ids}; invalid UTF-8 from decoding is replaced with
//       U+FFFD per maximal ill-formed subpart (as Rust's from_utf8_lossy).
//   tokenizer_driver nfc TEXTS.jsonl OUT.jsonl       (NFC of each text, one JSON string a line)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "json.h"
#include "strbuf.h"
#include "textfile.h"
#include "tokenizer.h"
#include "unicode.h"

static int fail(const char *what, const Err *e) {
    fprintf(stderr, "tokenizer_driver: %s: %s\n", what, e->msg);
    return 1;
}

static int load_spec(Tokenizer *t, const char *path, Err *e) {
    JsonValue *j = json_parse_file(path, JSON_FILE_SINGLE, e);
    if (!j) return -1;
    const JsonValue *toks = json_object_get(j, "tokens"), *types = json_object_get(j, "token_type");
    const JsonValue *merges = json_object_get(j, "merges"), *scores = json_object_get(j, "scores");
    int n = (int)json_array_len(toks), m = (int)json_array_len(merges);
    const char **tp = calloc((size_t)n + 1, sizeof *tp), **mp = calloc((size_t)m + 1, sizeof *mp);
    int *tl = calloc((size_t)n + 1, sizeof *tl), *ml = calloc((size_t)m + 1, sizeof *ml);
    int32_t *ty = calloc((size_t)n + 1, sizeof *ty);
    float *sc = calloc((size_t)n + 1, sizeof *sc);
    for (int i = 0; i < n; i++) {
        size_t len;
        tp[i] = json_string(json_array_get(toks, (size_t)i), &len);
        tl[i] = (int)len;
        ty[i] = (int32_t)json_number(json_array_get(types, (size_t)i));
        sc[i] = (float)json_number(json_array_get(scores, (size_t)i));
    }
    for (int i = 0; i < m; i++) {
        size_t len;
        mp[i] = json_string(json_array_get(merges, (size_t)i), &len);
        ml[i] = (int)len;
    }
#define INT_OR(key, d)                                                                          \
    (json_is(json_object_get(j, key), JSON_NUMBER) ? (int)json_number(json_object_get(j, key)) \
     : json_is(json_object_get(j, key), JSON_BOOL) ? json_bool(json_object_get(j, key))        \
                                                   : (d))
    TokenizerSpec s = {path,
                       json_object_get_string(j, "model"),
                       json_object_get_string(j, "pre"),
                       n,
                       tp,
                       tl,
                       scores ? sc : NULL,
                       types ? ty : NULL,
                       m,
                       mp,
                       ml,
                       INT_OR("bos_id", -1),
                       INT_OR("eos_id", -1),
                       INT_OR("unk_id", -1),
                       INT_OR("pad_id", -1),
                       INT_OR("add_bos", -1),
                       INT_OR("add_eos", -1),
                       INT_OR("add_space_prefix", -1)};
#undef INT_OR
    int rc = tokenizer_from_spec(t, &s, e);
    free(tp);
    free(tl);
    free(mp);
    free(ml);
    free(ty);
    free(sc);
    json_free(j);
    return rc;
}

// Writes t into a checkpoint (with a small valid config and no tensors), reads it back.
static int via_checkpoint(Tokenizer *t, const char *path, Err *e) {
    ModelConfig cfg = {.vocab_size = t->vocab_size, .hidden_size = 8, .intermediate_size = 16,
                       .num_hidden_layers = 1, .num_attention_heads = 2,
                       .num_key_value_heads = 1, .head_dim = 4, .rms_norm_eps = 1e-5f,
                       .rope_theta = 10000.0f, .max_position_embeddings = 64,
                       .tie_word_embeddings = 1, .bos_token_id = 1, .eos_token_id = 2};
    CkptWriter *w;
    if (ckpt_writer_open(&w, path, &cfg, e)) return -1;
    if (ckpt_writer_tokenizer(w, t, e)) {
        ckpt_writer_abort(w);
        return -1;
    }
    if (ckpt_writer_commit(w, e)) return -1;
    CkptReader *r;
    if (ckpt_reader_open(&r, path, e)) return -1;
    Tokenizer back;
    int present = 0;
    int rc = ckpt_reader_tokenizer(r, &back, &present, e);
    ckpt_reader_close(r);
    if (rc) return -1;
    if (!present) return err_set(e, "%s: no /tokenizer after writing one", path);
    char h1[65], h2[65];
    tokenizer_digest(t, h1);
    tokenizer_digest(&back, h2);
    if (strcmp(h1, h2) != 0 || strcmp(tokenizer_kind_name(t), tokenizer_kind_name(&back)) != 0) {
        tokenizer_free(&back);
        return err_set(e, "%s: the tokenizer read back differs (digest %s, wrote %s)", path, h2, h1);
    }
    printf("checkpoint round trip: %s, digest %.16s equal\n", tokenizer_kind_name(t), h1);
    tokenizer_free(t);
    *t = back;
    return 0;
}

// Appends s[0..len) as a JSON string, each maximal ill-formed UTF-8 subpart as one U+FFFD.
static void json_lossy(StrBuf *b, const char *s, size_t len) {
    StrBuf v = {0};
    sb_printf(&v, "%s", "");
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = utf8_next(s + i, len - i, &cp);
        if (!(cp & UNICODE_INVALID_FLAG)) {
            if (cp == 0) sb_printf(&v, "%s", "\xEF\xBF\xBD"); // NUL cannot travel in a C string
            else sb_printf(&v, "%.*s", k, s + i);
            i += (size_t)k;
            continue;
        }
        // Maximal subpart: a lead byte and the continuation bytes that could still complete it.
        uint8_t c0 = (uint8_t)s[i];
        size_t need = c0 >= 0xC2 && c0 <= 0xDF ? 1 : c0 >= 0xE0 && c0 <= 0xEF ? 2
                      : c0 >= 0xF0 && c0 <= 0xF4 ? 3 : 0;
        size_t j = 1;
        while (j <= need && i + j < len) {
            uint8_t c = (uint8_t)s[i + j];
            uint8_t lo = 0x80, hi = 0xBF;
            if (j == 1) {
                if (c0 == 0xE0) lo = 0xA0;
                if (c0 == 0xED) hi = 0x9F;
                if (c0 == 0xF0) lo = 0x90;
                if (c0 == 0xF4) hi = 0x8F;
            }
            if (c < lo || c > hi) break;
            j++;
        }
        sb_printf(&v, "%s", "\xEF\xBF\xBD");
        i += j;
    }
    sb_json_string(b, v.data);
    sb_free(&v);
}

static void decode_ids(const Tokenizer *t, const int32_t *ids, int n, int skip_special,
                       StrBuf *out) {
    StrBuf raw = {0};
    sb_printf(&raw, "%s", "");
    char buf[1 << 17];
    // llama2.c decodes what follows BOS; the other kinds' decoders see the start of the text.
    int prev = t->opt.kind == TOKENIZER_LLAMA2C ? t->bos_id : -1;
    for (int i = 0; i < n; i++) {
        if (skip_special && (t->token_flags[ids[i]] & TOKENIZER_TOKEN_SPECIAL)) continue;
        size_t len;
        const char *p = tokenizer_decode_piece(t, prev, ids[i], buf, sizeof buf, &len);
        if (p) {
            size_t at = raw.len;
            sb_printf(&raw, "%*s", (int)len, ""); // room, then the bytes (may hold NUL)
            if (!raw.failed) memcpy(raw.data + at, p, len);
        }
        prev = ids[i];
    }
    json_lossy(out, raw.data, raw.len);
    sb_free(&raw);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void json_ids(StrBuf *b, const int32_t *ids, int n) {
    sb_printf(b, "[");
    for (int i = 0; i < n; i++) sb_printf(b, "%s%d", i ? "," : "", ids[i]);
    sb_printf(b, "]");
}

static int mode_encode(int argc, char **argv) {
    const char *format = argv[2], *source = argv[3], *in = argv[4], *outp = argv[5];
    const char *ckpt = NULL, *hf_out = NULL;
    for (int i = 6; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--via-ckpt")) ckpt = argv[i + 1];
        else if (!strcmp(argv[i], "--write-hf")) hf_out = argv[i + 1];
    }
    Err e = {{0}};
    Tokenizer t;
    int rc = !strcmp(format, "hf")        ? tokenizer_read_hf_json(&t, source, &e)
             : !strcmp(format, "llama2c") ? tokenizer_read_llama2c(&t, source, 512, &e)
             : !strcmp(format, "spec")    ? load_spec(&t, source, &e)
                                          : err_set(&e, "unknown format %s", format);
    if (rc) return fail("load", &e);
    char hex[65];
    tokenizer_digest(&t, hex);
    printf("loaded %s: %s, %d tokens, %d merges, digest %.16s\n", source,
           tokenizer_kind_name(&t), t.vocab_size, t.n_merges, hex);
    if (ckpt && via_checkpoint(&t, ckpt, &e)) return fail("checkpoint", &e);
    if (hf_out && tokenizer_write_hf_json(&t, hf_out, &e)) return fail("write tokenizer.json", &e);
    JsonValue *texts = json_parse_file(in, JSON_FILE_LINES, &e);
    if (!texts) return fail("texts", &e);
    size_t n = json_array_len(texts), total = 0, max_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        json_string(json_array_get(texts, i), &len);
        total += len;
        if (len > max_len) max_len = len;
    }
    int32_t *ids = malloc((max_len + 3) * sizeof *ids), *ids2 = malloc((max_len + 3) * sizeof *ids);
    int *counts = calloc(n + 1, sizeof *counts);
    int32_t **all = calloc(n + 1, sizeof *all);
    // Timed pass: encode only (the throughput figure), add_bos = 0.
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string(json_array_get(texts, i), NULL);
        if (tokenizer_encode(&t, s, 0, 1, ids, &counts[i], &e)) return fail("encode", &e);
        all[i] = malloc(((size_t)counts[i] + 1) * sizeof **all);
        memcpy(all[i], ids, (size_t)counts[i] * sizeof *ids);
    }
    double dt = now() - t0;
    printf("encoded %zu texts, %zu bytes in %.3f s: %.2f MB/s\n", n, total, dt,
           total / 1e6 / (dt > 0 ? dt : 1e-9));
    FILE *f = fopen(outp, "w");
    if (!f) return fail("output", &(Err){"cannot open the output file"});
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string(json_array_get(texts, i), NULL);
        int nb;
        if (tokenizer_encode(&t, s, 1, 1, ids2, &nb, &e)) return fail("encode", &e);
        StrBuf b = {0};
        sb_printf(&b, "{\"ids\": ");
        json_ids(&b, all[i], counts[i]);
        sb_printf(&b, ", \"bos\": ");
        json_ids(&b, ids2, nb);
        sb_printf(&b, ", \"dec\": ");
        decode_ids(&t, all[i], counts[i], 1, &b);
        sb_printf(&b, ", \"all\": ");
        decode_ids(&t, all[i], counts[i], 0, &b);
        sb_printf(&b, "}\n");
        fwrite(b.data, 1, b.len, f);
        sb_free(&b);
        free(all[i]);
    }
    fclose(f);
    free(all);
    free(counts);
    free(ids);
    free(ids2);
    json_free(texts);
    tokenizer_free(&t);
    return 0;
}

static int mode_nfc(const char *in, const char *outp) {
    Err e = {{0}};
    JsonValue *texts = json_parse_file(in, JSON_FILE_LINES, &e);
    if (!texts) return fail("texts", &e);
    FILE *f = fopen(outp, "w");
    if (!f) return 1;
    for (size_t i = 0; i < json_array_len(texts); i++) {
        size_t len, out_len;
        const char *s = json_string(json_array_get(texts, i), &len);
        char *nfc = unicode_nfc(s, len, &out_len);
        StrBuf b = {0};
        sb_json_string(&b, nfc);
        fprintf(f, "%s\n", b.data);
        sb_free(&b);
        free(nfc);
    }
    fclose(f);
    json_free(texts);
    printf("unicode tables: Unicode %s\n", unicode_version());
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 6 && !strcmp(argv[1], "encode")) return mode_encode(argc, argv);
    if (argc == 4 && !strcmp(argv[1], "nfc")) return mode_nfc(argv[2], argv[3]);
    fprintf(stderr, "usage: tokenizer_driver encode FORMAT SOURCE TEXTS OUT [--via-ckpt F] "
                    "[--write-hf F] | nfc TEXTS OUT\n");
    return 2;
}
