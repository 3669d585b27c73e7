// Tests of io/tokenizer: llama2.c encode() parity on stories260K's tok512.bin (reference ids and
// per-story token counts), lossless decode of UTF-8 text, clear errors for bad files, invalid
// UTF-8 kept byte for byte by every kind, the GGUF "llama" kind against llama2.c, the llama2.c
// digest layout, and unsupported tokenizer.json / GGUF configurations named in errors.
// (The comparison with Hugging Face tokenizers is check_tokenizers.py.)
// Usage: test_io_tokenizer MODE MODELS_DIR TMP_DIR
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "sha256.h"
#include "unicode.h"
#include "textfile.h"
#include "tokenizer.h"

#include "check.h"

static char g_tok_path[4096], g_ref_path[4096], g_sample_path[4096], g_tmp[4096];

static int load_tok(Tokenizer *t) {
    Err e = {{0}};
    int rc = tokenizer_read_llama2c(t, g_tok_path, 512, &e);
    if (rc) fprintf(stderr, "tokenizer_read_llama2c: %s\n", e.msg);
    return rc;
}

// Decodes ids[1..n) (ids[0] is BOS) the way llama2.c prints them, into a malloc'd string.
static char *decode_all(const Tokenizer *t, const int32_t *ids, int n, size_t *out_len) {
    size_t cap = 16, len = 0;
    char *out = malloc(cap), buf[1024];
    for (int i = 1; i < n && out; i++) {
        size_t pl;
        const char *p = tokenizer_decode_piece(t, ids[i - 1], ids[i], buf, sizeof buf, &pl);
        if (!p) {
            free(out);
            return NULL;
        }
        while (len + pl + 1 > cap) cap *= 2;
        char *grown = realloc(out, cap);
        if (!grown) {
            free(out);
            return NULL;
        }
        out = grown;
        memcpy(out + len, p, pl);
        len += pl;
    }
    if (out) out[len] = '\0';
    *out_len = len;
    return out;
}

static int test_encode_reference(void) {
    Tokenizer t;
    REQUIRE(load_tok(&t) == 0, "cannot load %s", g_tok_path);
    Err e = {{0}};
    JsonValue *ref = json_parse_file(g_ref_path, JSON_FILE_SINGLE, &e);
    REQUIRE(ref, "%s", e.msg);
    const JsonValue *tf = json_array_get(json_object_get(ref, "teacher_forced"), 0);
    const char *text = json_object_get_string(tf, "text");
    const JsonValue *want = json_object_get(tf, "token_ids");
    REQUIRE(text && want, "reference json lacks teacher_forced[0].text / token_ids");
    CHECK(strcmp(text, "One day, a clever fox found a shiny key under the old oak tree.") == 0,
          "unexpected reference text");

    int32_t *ids = malloc((strlen(text) + 3) * sizeof *ids);
    int n = 0;
    CHECK(tokenizer_encode(&t, text, 1, 1, ids, &n, &e) == 0, "%s", e.msg);
    CHECK((size_t)n == json_array_len(want), "got %d tokens, reference has %zu", n,
          json_array_len(want));
    for (int i = 0; i < n && (size_t)i < json_array_len(want); i++)
        CHECK(ids[i] == (int32_t)json_number(json_array_get(want, (size_t)i)),
              "token %d: got %d, reference %d", i, ids[i],
              (int)json_number(json_array_get(want, (size_t)i)));
    printf("reference sentence: %d tokens, ids match llama2.c encode()\n", n);

    // decode of the reference ids gives the sentence back
    size_t dl;
    char *dec = decode_all(&t, ids, n, &dl);
    CHECK(dec && strcmp(dec, text) == 0, "decode gave \"%s\"", dec ? dec : "(null)");
    free(dec);

    // empty text: BOS only (no dummy prefix), and nothing at all without BOS
    CHECK(tokenizer_encode(&t, "", 1, 1, ids, &n, &e) == 0 && n == 1 && ids[0] == 1,
          "empty text gave %d tokens", n);
    CHECK(tokenizer_encode(&t, "", 0, 1, ids, &n, &e) == 0 && n == 0, "empty text, no BOS: %d",
          n);
    // without the prefix space, the first word merges differently (no " One")
    int n2 = 0;
    CHECK(tokenizer_encode(&t, "One", 0, 0, ids, &n2, &e) == 0 && n2 >= 1, "%s", e.msg);
    CHECK(n2 >= 1 && ids[0] != 385, "\"One\" without prefix should not be the \" One\" token");
    free(ids);

    // special ids and the digest: stable, copy-safe, sensitive to a score
    CHECK(t.bos_id == 1 && t.eos_id == 2 && t.byte_fallback_base == 3 && t.max_token_length == 7,
          "bos %d eos %d byte base %d max len %d", t.bos_id, t.eos_id, t.byte_fallback_base,
          t.max_token_length);
    char h1[65], h2[65], h3[65];
    tokenizer_digest(&t, h1);
    Tokenizer c;
    CHECK(tokenizer_init(&c, t.vocab_size, t.max_token_length, (const char *const *)t.pieces,
                         t.piece_len, t.scores, t.bos_id, t.eos_id, &e) == 0,
          "%s", e.msg);
    tokenizer_digest(&c, h2);
    CHECK(strlen(h1) == 64 && strcmp(h1, h2) == 0, "digest of a copy differs: %s vs %s", h1, h2);
    c.scores[300] += 1.0f;
    tokenizer_digest(&c, h3);
    CHECK(strcmp(h1, h3) != 0, "digest ignores scores");
    printf("digest %s\n", h1);
    tokenizer_free(&c);
    json_free(ref);
    tokenizer_free(&t);
    return g_fail;
}

static int test_roundtrip_stories(void) {
    static const int want_counts[5] = {374, 330, 223, 425, 457};
    Tokenizer t;
    REQUIRE(load_tok(&t) == 0, "cannot load %s", g_tok_path);
    Err e = {{0}};
    JsonValue *ref = json_parse_file(g_ref_path, JSON_FILE_SINGLE, &e);
    REQUIRE(ref, "%s", e.msg);
    const JsonValue *per = json_object_get(json_object_get(ref, "tinystories_sample"), "per_story");
    REQUIRE(json_array_len(per) == 5, "reference per_story has %zu entries", json_array_len(per));
    for (int i = 0; i < 5; i++)
        CHECK((int)json_number(json_object_get(json_array_get(per, (size_t)i),
                                               "n_tokens_incl_bos")) == want_counts[i],
              "reference json story %d count differs from the brief", i);

    char *text;
    size_t len;
    REQUIRE(file_read_all(g_sample_path, &text, &len, &e) == 0, "%s", e.msg);
    int story = 0;
    char *cur = text;
    int saw_multibyte = 0;
    while (cur && *cur) {
        char *sep = strstr(cur, "<|endoftext|>");
        if (sep) *sep = '\0';
        char *b = cur, *end = cur + strlen(cur);
        while (*b && isspace((unsigned char)*b)) b++;
        while (end > b && isspace((unsigned char)end[-1])) end--;
        *end = '\0';
        if (*b) {
            REQUIRE(story < 5, "more than 5 stories in %s", g_sample_path);
            for (const char *q = b; *q; q++) saw_multibyte |= (unsigned char)*q >= 0x80;
            int32_t *ids = malloc((strlen(b) + 3) * sizeof *ids);
            int n = 0;
            CHECK(tokenizer_encode(&t, b, 1, 1, ids, &n, &e) == 0, "%s", e.msg);
            int want = (int)json_number(json_object_get(json_array_get(per, (size_t)story),
                                                         "n_tokens_incl_bos"));
            CHECK(n == want, "story %d: %d tokens incl. BOS, reference %d", story, n, want);
            for (int i = 0; i < n; i++)
                CHECK(ids[i] >= 0 && ids[i] < t.vocab_size, "story %d token %d id %d", story, i,
                      ids[i]);
            size_t dl;
            char *dec = decode_all(&t, ids, n, &dl);
            CHECK(dec && dl == strlen(b) && memcmp(dec, b, dl) == 0,
                  "story %d does not round-trip", story);
            printf("story %d: %d tokens incl. BOS (reference %d), round-trips\n", story, n, want);
            free(dec);
            free(ids);
            story++;
        }
        cur = sep ? sep + strlen("<|endoftext|>") : NULL;
    }
    CHECK(story == 5, "found %d stories", story);
    CHECK(saw_multibyte, "the sample should contain multi-byte UTF-8 (curly quotes)");
    free(text);

    // characters outside the vocabulary fall back to <0xXX> bytes and decode losslessly
    const char *cjk = "猫 é \xF0\x9F\x98\x80!";
    int32_t ids[64];
    int n = 0;
    CHECK(tokenizer_encode(&t, cjk, 1, 1, ids, &n, &e) == 0, "%s", e.msg);
    int n_bytes = 0;
    for (int i = 0; i < n; i++) n_bytes += ids[i] >= 3 && ids[i] < 259;
    CHECK(n_bytes >= 4, "expected byte-fallback tokens, got %d", n_bytes);
    size_t dl;
    char *dec = decode_all(&t, ids, n, &dl);
    CHECK(dec && strcmp(dec, cjk) == 0, "byte fallback does not round-trip: \"%s\"",
          dec ? dec : "(null)");
    free(dec);

    // decode_piece rejects invalid ids and a too-small buffer
    char buf[16];
    size_t pl = 99;
    CHECK(tokenizer_decode_piece(&t, 1, -1, buf, sizeof buf, &pl) == NULL && pl == 0, "id -1");
    CHECK(tokenizer_decode_piece(&t, 1, 512, buf, sizeof buf, &pl) == NULL, "id 512");
    CHECK(tokenizer_decode_piece(&t, 1, 259, buf, 1, &pl) == NULL, "buffer of 1 byte");
    const char *p = tokenizer_decode_piece(&t, 5, 3 + 'A', buf, sizeof buf, &pl);
    CHECK(p && pl == 1 && p[0] == 'A', "<0x41> decodes to 'A'");
    p = tokenizer_decode_piece(&t, 1, 259, buf, sizeof buf, &pl); // " t" after BOS
    CHECK(p && pl == 1 && p[0] == 't', "leading space after BOS is dropped");
    p = tokenizer_decode_piece(&t, 5, 259, buf, sizeof buf, &pl);
    CHECK(p && pl == 2 && p[0] == ' ', "leading space kept elsewhere");
    json_free(ref);
    tokenizer_free(&t);
    return g_fail;
}

static int write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(d, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static int test_rejects_bad_files(void) {
    char *data;
    size_t len;
    Err e = {{0}};
    REQUIRE(file_read_all(g_tok_path, &data, &len, &e) == 0, "%s", e.msg);
    char path[4200];
    snprintf(path, sizeof path, "%s/tok_bad_%d.bin", g_tmp, (int)getpid());
    Tokenizer t;

    // truncated in the middle of the pieces
    REQUIRE(write_file(path, data, 3000) == 0, "cannot write %s", path);
    e.msg[0] = '\0';
    CHECK(tokenizer_read_llama2c(&t, path, 512, &e) == -1, "truncated file accepted");
    CHECK(strstr(e.msg, path) && strstr(e.msg, "truncated"), "message: %s", e.msg);
    printf("truncated: %s\n", e.msg);
    CHECK(t.pieces == NULL && t.vocab_size == 0, "failed read must leave an empty tokenizer");

    // too short for the header
    REQUIRE(write_file(path, data, 2) == 0, "cannot write %s", path);
    CHECK(tokenizer_read_llama2c(&t, path, 512, &e) == -1 && strstr(e.msg, "max_token_length"),
          "message: %s", e.msg);

    // a length field pointing far past the end
    char *bad = malloc(len);
    memcpy(bad, data, len);
    int32_t huge = 60000;
    memcpy(bad + 4 + 4, &huge, 4); // token 0's length
    REQUIRE(write_file(path, bad, len) == 0, "cannot write %s", path);
    CHECK(tokenizer_read_llama2c(&t, path, 512, &e) == -1 && strstr(e.msg, "token 0"),
          "message: %s", e.msg);
    printf("bad length: %s\n", e.msg);
    int32_t neg = -5;
    memcpy(bad + 8, &neg, 4);
    REQUIRE(write_file(path, bad, len) == 0, "cannot write %s", path);
    CHECK(tokenizer_read_llama2c(&t, path, 512, &e) == -1 && strstr(e.msg, "out of range"),
          "message: %s", e.msg);
    memcpy(bad, data, len);
    memcpy(bad, &neg, 4); // max_token_length
    REQUIRE(write_file(path, bad, len) == 0, "cannot write %s", path);
    CHECK(tokenizer_read_llama2c(&t, path, 512, &e) == -1 && strstr(e.msg, "max_token_length"),
          "message: %s", e.msg);
    free(bad);

    // the model's vocab does not match the file's token count
    CHECK(tokenizer_read_llama2c(&t, g_tok_path, 500, &e) == -1 && strstr(e.msg, "more tokens"),
          "vocab 500: %s", e.msg);
    printf("vocab mismatch: %s\n", e.msg);
    CHECK(tokenizer_read_llama2c(&t, g_tok_path, 600, &e) == -1 && strstr(e.msg, "fewer tokens"),
          "vocab 600: %s", e.msg);
    CHECK(tokenizer_read_llama2c(&t, g_tok_path, 0, &e) == -1 && strstr(e.msg, "vocab_size"),
          "vocab 0: %s", e.msg);
    snprintf(path, sizeof path, "%s/does_not_exist_%d.bin", g_tmp, (int)getpid());
    CHECK(tokenizer_read_llama2c(&t, path, 512, &e) == -1 && strstr(e.msg, path), "missing: %s",
          e.msg);
    snprintf(path, sizeof path, "%s/tok_bad_%d.bin", g_tmp, (int)getpid());
    remove(path);
    free(data);
    return g_fail;
}


// Encodes and decodes text, requiring the decoded bytes to equal the input (prev starts at -1,
// or at BOS for llama2.c whose decoder drops the dummy prefix after it).
static int round_trips(const Tokenizer *t, const char *text, int prefix) {
    Err e = {{0}};
    size_t n = strlen(text);
    int32_t *ids = malloc((n + 3) * sizeof *ids);
    int count = 0;
    if (tokenizer_encode(t, text, 0, prefix, ids, &count, &e)) {
        fprintf(stderr, "encode failed: %s\n", e.msg);
        free(ids);
        return 0;
    }
    char *out = malloc(n * 4 + 16), buf[1024];
    size_t len = 0;
    int prev = t->opt.kind == TOKENIZER_LLAMA2C ? t->bos_id : -1;
    for (int i = 0; i < count; i++) {
        size_t pl;
        const char *p = tokenizer_decode_piece(t, prev, ids[i], buf, sizeof buf, &pl);
        if (p && len + pl <= n * 4 + 8) memcpy(out + len, p, pl), len += pl;
        prev = ids[i];
    }
    int ok = len == n && memcmp(out, text, n) == 0;
    if (!ok) fprintf(stderr, "round trip of %zu bytes gave %zu bytes back\n", n, len);
    free(out);
    free(ids);
    return ok;
}

// A byte-level BPE over the 256 byte pieces with a few merges, built in memory.
static int byte_level_tokenizer(Tokenizer *t, TokenizerPreTokenizer pre, TokenizerNormalizer norm,
                                int n_merges) {
    static const char *const extra[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "in"};
    const char *pieces[260];
    int lens[260];
    char store[256][4];
    for (int b = 0; b < 256; b++) {
        uint32_t cp = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE) ? (uint32_t)b : 0;
        if (!cp) { // GPT-2's bytes_to_unicode: the others map to U+0100.. in order
            int k = 0;
            for (int c = 0; c < b; c++)
                k += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE));
            cp = 256u + (uint32_t)k;
        }
        lens[b] = utf8_put(cp, store[b]);
        pieces[b] = store[b];
    }
    for (int i = 0; i < 4; i++) {
        pieces[256 + i] = extra[i];
        lens[256 + i] = (int)strlen(extra[i]);
    }
    // merges by id: "Ġ t", "h e", "Ġt he", "i n" (Ġ = byte 0x20's piece)
    int32_t merges[8] = {' ', 't', 'h', 'e', 256, 257, 'i', 'n'};
    TokenizerOptions o = {.kind = TOKENIZER_BPE_BYTELEVEL, .pre = pre, .normalizer = norm,
                          .unk_id = -1, .decode = TOKENIZER_DEC_BYTELEVEL};
    Err e = {{0}};
    int rc = tokenizer_build(t, &o, 260, pieces, lens, NULL, NULL, n_merges, merges, -1, -1, &e);
    if (rc) fprintf(stderr, "tokenizer_build: %s\n", e.msg);
    return rc;
}

static int test_invalid_utf8(void) {
    static const char *const cases[] = {
        "\xff\xfe plain \xc3", "\xc0\xaf overlong", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80",
        "trunc \xe2\x96", "\x80\x80 continuation", "mixed \xe6\x97\xa5\xe6 the\xff in", "\xfe",
        "ok text the in", "caf\xc3\xa9 cafe\xcc\x81 \xcc\x81", ""};
    Tokenizer t;
    REQUIRE(load_tok(&t) == 0, "cannot load %s", g_tok_path);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK(round_trips(&t, cases[i], 1), "llama2c: case %zu does not round-trip", i);
    tokenizer_free(&t);
    TokenizerPreTokenizer pres[] = {TOKENIZER_PRE_GPT2, TOKENIZER_PRE_LLAMA3, TOKENIZER_PRE_QWEN2,
                                    TOKENIZER_PRE_DIGITS_GPT2, TOKENIZER_PRE_NONE};
    for (size_t p = 0; p < sizeof pres / sizeof *pres; p++) {
        for (int nfc = 0; nfc < 2; nfc++) {
            REQUIRE(byte_level_tokenizer(&t, pres[p], nfc ? TOKENIZER_NORM_NFC
                                                          : TOKENIZER_NORM_NONE, 4) == 0,
                    "build");
            for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                // NFC changes "e + U+0301" into "é": compare those cases only without NFC
                if (nfc && strstr(cases[i], "\xcc\x81")) continue;
                CHECK(round_trips(&t, cases[i], 1), "byte-level %s%s: case %zu does not round-trip",
                      tokenizer_pre_name(pres[p]), nfc ? "+nfc" : "", i);
            }
            tokenizer_free(&t);
        }
    }
    // no merges at all (the fuzzer's first finding): every byte its own token
    REQUIRE(byte_level_tokenizer(&t, TOKENIZER_PRE_GPT2, TOKENIZER_NORM_NONE, 0) == 0, "build");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK(round_trips(&t, cases[i], 1), "no merges: case %zu does not round-trip", i);
    tokenizer_free(&t);
    // NFC keeps invalid units in place and composes around them
    size_t n;
    char *s = unicode_nfc("e\xcc\x81\xff" "e\xcc\x81", 7, &n);
    CHECK(s && n == 5 && memcmp(s, "\xc3\xa9\xff\xc3\xa9", 5) == 0, "NFC around an invalid byte");
    free(s);
    uint32_t cp;
    CHECK(utf8_next("\xe2\x96", 2, &cp) == 1 && cp == UNICODE_INVALID_BYTE(0xe2),
          "truncated sequence is one invalid unit per byte");
    printf("invalid UTF-8: %zu cases round-trip byte for byte through llama2c and 11 byte-level "
           "configurations\n", sizeof cases / sizeof *cases);
    return g_fail;
}

// The llama2.c digest is the v1 layout, recomputed here independently.
static int test_digest_v1(void) {
    Tokenizer t;
    REQUIRE(load_tok(&t) == 0, "cannot load %s", g_tok_path);
    Sha256 s;
    sha256_init(&s);
    sha256_update(&s, "lethe-tokenizer-v1", 18);
    int32_t head[3] = {t.vocab_size, t.bos_id, t.eos_id};
    sha256_update(&s, head, sizeof head);
    for (int i = 0; i < t.vocab_size; i++) {
        int32_t len = t.piece_len[i];
        sha256_update(&s, &len, 4);
        sha256_update(&s, t.pieces[i], (size_t)len);
        sha256_update(&s, &t.scores[i], 4);
    }
    uint8_t d[32];
    char want[65], got[65];
    sha256_final(&s, d);
    sha256_hex(d, want);
    tokenizer_digest(&t, got);
    CHECK(strcmp(want, got) == 0, "llama2c digest %s, v1 layout gives %s", got, want);
    CHECK(strcmp(tokenizer_kind_name(&t), "llama2c-bpe") == 0, "kind %s", tokenizer_kind_name(&t));
    printf("llama2c digest %s (v1 layout)\n", got);
    tokenizer_free(&t);
    return g_fail;
}

// tok512 as GGUF "llama" metadata ("▁" pieces, token types) encodes as llama2.c does.
static int test_spec_llama(void) {
    Tokenizer ref, t;
    REQUIRE(load_tok(&ref) == 0, "cannot load %s", g_tok_path);
    int V = ref.vocab_size;
    char **pieces = calloc((size_t)V, sizeof *pieces);
    int *lens = calloc((size_t)V, sizeof *lens);
    int32_t *types = calloc((size_t)V, sizeof *types);
    for (int i = 0; i < V; i++) {
        pieces[i] = malloc((size_t)ref.piece_len[i] * 3 + 1);
        int n = 0;
        for (int k = 0; k < ref.piece_len[i]; k++) {
            if (ref.pieces[i][k] == ' ') memcpy(pieces[i] + n, "\xE2\x96\x81", 3), n += 3;
            else pieces[i][n++] = ref.pieces[i][k];
        }
        lens[i] = n;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    TokenizerSpec spec = {"tok512-as-gguf", "llama", NULL, V, (const char *const *)pieces, lens,
                          ref.scores, types, 0, NULL, NULL, 1, 2, 0, -1, 1, 0, 1};
    Err e = {{0}};
    REQUIRE(tokenizer_from_spec(&t, &spec, &e) == 0, "%s", e.msg);
    CHECK(strcmp(tokenizer_kind_name(&t), "gguf-spm-scores") == 0, "kind %s",
          tokenizer_kind_name(&t));
    char *text;
    size_t len;
    REQUIRE(file_read_all(g_sample_path, &text, &len, &e) == 0, "%s", e.msg);
    int32_t *a = malloc((len + 3) * sizeof *a), *b = malloc((len + 3) * sizeof *b);
    int na = 0, nb = 0, lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        CHECK(tokenizer_encode(&ref, line, 1, 1, a, &na, &e) == 0, "%s", e.msg);
        CHECK(tokenizer_encode(&t, line, 1, 1, b, &nb, &e) == 0, "%s", e.msg);
        CHECK(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0,
              "line %d: %d tokens as llama2c, %d as GGUF llama", lines, na, nb);
        CHECK(round_trips(&t, line, 1), "GGUF llama: line %d does not round-trip", lines);
    }
    printf("GGUF llama spec of tok512: %d lines encode as llama2.c\n", lines);
    free(a);
    free(b);
    free(text);
    for (int i = 0; i < V; i++) free(pieces[i]);
    free(pieces);
    free(lens);
    free(types);
    tokenizer_free(&t);
    tokenizer_free(&ref);
    return g_fail;
}

static int expect_json_error(const char *json, const char *want1, const char *want2) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tok_bad_%d.json", g_tmp, (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(json, f);
    fclose(f);
    Tokenizer t;
    Err e = {{0}};
    int rc = tokenizer_read_hf_json(&t, path, &e);
    remove(path);
    if (rc == 0) {
        tokenizer_free(&t);
        fprintf(stderr, "accepted: %s\n", json);
        return 0;
    }
    int ok = strstr(e.msg, path) && strstr(e.msg, want1) && (!want2 || strstr(e.msg, want2));
    printf("  rejected: %s\n", e.msg);
    return ok;
}

static int test_rejects_unsupported(void) {
#define HEAD "{\"added_tokens\": [], \"normalizer\": null, "
#define BL_PRE "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": true}, "
#define BL_DEC "\"decoder\": {\"type\": \"ByteLevel\"}, \"post_processor\": null, "
#define MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, " \
              "\"merges\": [\"a b\"]}}"
    CHECK(expect_json_error(HEAD BL_PRE BL_DEC "\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
                            "model.type", "Unigram"), "Unigram");
    CHECK(expect_json_error(HEAD "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                                 "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, "
                                 "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": "
                                 "\"ByteLevel\", \"use_regex\": false}]}, " BL_DEC MODEL,
                            "pre_tokenizer", "\\w+"), "unknown Split regex");
    CHECK(expect_json_error(HEAD "\"pre_tokenizer\": {\"type\": \"Whitespace\"}, " BL_DEC MODEL,
                            "pre_tokenizer", "Whitespace"), "Whitespace pre-tokenizer");
    CHECK(expect_json_error("{\"added_tokens\": [], \"normalizer\": {\"type\": \"Lowercase\"}, "
                            BL_PRE BL_DEC MODEL, "normalizer", "Lowercase"), "Lowercase");
    CHECK(expect_json_error("{\"added_tokens\": [{\"id\": 3, \"content\": \"<x>\", "
                            "\"single_word\": true}], \"normalizer\": null, " BL_PRE BL_DEC MODEL,
                            "single_word", NULL), "single_word");
    CHECK(expect_json_error(HEAD BL_PRE "\"decoder\": {\"type\": \"WordPiece\"}, " MODEL,
                            "decoder", "WordPiece"), "WordPiece decoder");
    CHECK(expect_json_error(HEAD BL_PRE BL_DEC "\"model\": {\"type\": \"BPE\", \"vocab\": "
                            "{\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                            "merge", "not in the vocabulary"), "merge result missing");
    CHECK(expect_json_error(HEAD BL_PRE BL_DEC "\"model\": {\"type\": \"BPE\", \"vocab\": "
                            "{\"a\": 0, \"b\": 2}, \"merges\": []}}", "id 1", NULL), "id gap");
    CHECK(expect_json_error("{\"model\": ", "line 1", NULL), "truncated JSON");
    // GGUF: llama.cpp's "default" split is not GPT-2's
    const char *toks[] = {"a", "b", "ab"};
    int tl[] = {1, 1, 2};
    const char *merges[] = {"a b"};
    int ml[] = {3};
    TokenizerSpec s = {"x.gguf", "gpt2", "default", 3, toks, tl, NULL, NULL, 1, merges, ml,
                       -1, -1, -1, -1, -1, -1, -1};
    Tokenizer t;
    Err e = {{0}};
    CHECK(tokenizer_from_spec(&t, &s, &e) != 0 && strstr(e.msg, "x.gguf") &&
              strstr(e.msg, "tokenizer.ggml.pre"), "GGUF pre default: %s", e.msg);
    printf("  rejected: %s\n", e.msg);
    s.pre = "gpt2";
    CHECK(tokenizer_from_spec(&t, &s, &e) == 0, "%s", e.msg);
    int32_t ids[8];
    int n = 0;
    CHECK(tokenizer_encode(&t, "ab", 0, 1, ids, &n, &e) == 0 && n == 1 && ids[0] == 2,
          "GGUF gpt2 spec merges \"ab\": %d tokens", n);
    tokenizer_free(&t);
    s.model = "bert";
    CHECK(tokenizer_from_spec(&t, &s, &e) != 0 && strstr(e.msg, "tokenizer.ggml.model"), "%s",
          e.msg);
    printf("  rejected: %s\n", e.msg);
    return g_fail;
#undef HEAD
#undef BL_PRE
#undef BL_DEC
#undef MODEL
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODE MODELS_DIR TMP_DIR\n", argv[0]);
        return 2;
    }
    snprintf(g_tok_path, sizeof g_tok_path, "%s/stories260K/tok512.bin", argv[2]);
    snprintf(g_ref_path, sizeof g_ref_path, "%s/stories260K/stories260K.reference.json", argv[2]);
    snprintf(g_sample_path, sizeof g_sample_path, "%s/stories260K/tinystories_sample.txt",
             argv[2]);
    snprintf(g_tmp, sizeof g_tmp, "%s", argv[3]);
    const char *mode = argv[1];
    int rc;
    if (!strcmp(mode, "encode_reference")) rc = test_encode_reference();
    else if (!strcmp(mode, "roundtrip_stories")) rc = test_roundtrip_stories();
    else if (!strcmp(mode, "rejects_bad_files")) rc = test_rejects_bad_files();
    else if (!strcmp(mode, "invalid_utf8")) rc = test_invalid_utf8();
    else if (!strcmp(mode, "digest_v1")) rc = test_digest_v1();
    else if (!strcmp(mode, "spec_llama")) rc = test_spec_llama();
    else if (!strcmp(mode, "rejects_unsupported")) rc = test_rejects_unsupported();
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    printf("%s: %s\n", mode, rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
