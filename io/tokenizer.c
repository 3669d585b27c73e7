// Tokenizer core: construction and lookup tables, the llama2.c tokenizer.bin reader, encoding
// (added-token split, normalisation, pre-tokenisation, score or rank merges with a priority
// queue), decoding, and the digest. Readers of other formats: tokenizer_hf.c.
#include "tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "tokenizer_split.h"
#include "unicode.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tokenizer.c reads little-endian files with memcpy; port the loads for a big-endian host"
#endif

#define TOK_MAX_PIECE_LEN (1 << 16) // real pieces are a few bytes; 64 KiB is plainly corrupt
#define TOK_MAX_VOCAB (1 << 24)     // ranks and ids stay exact in a float priority
static const char SPACE_MARK[] = "\xE2\x96\x81"; // "▁" U+2581, SentencePiece's space

struct TokenizerIndex {
    // piece -> id over the model's vocabulary (not NOT_IN_MODEL tokens), lowest id on duplicates;
    // open addressing, slot = id or -1.
    int32_t *piece_slot;
    size_t piece_mask;
    // (left id, right id) -> rank and result id, for rank-merged kinds.
    uint64_t *merge_key; // left << 32 | right, UINT64_MAX for empty
    int32_t *merge_rank, *merge_result;
    size_t merge_mask;
    // added tokens in matching order: by first byte, then longest first, then lowest id
    int32_t *added;
    int n_added, n_added_normalized;
    int added_start[257]; // added[added_start[b] .. added_start[b + 1]) start with byte b
    int32_t byte_token[256];    // byte-level: the one-character token of each byte, or -1
    int32_t byte_fallback[256]; // the <0xXX> token of each byte, or -1
    char **decoded;             // each token's bytes as the decoder gives them
    int *decoded_len;
    int space_id; // llama2.c: the " " piece (dummy prefix), or -1
};

// ----------------------------------------------------------------------------------------------
// names

static const char *const KIND_NAMES[] = {"llama2c-bpe", "gguf-spm-scores", "hf-bpe-bytelevel",
                                         "hf-bpe-sentencepiece"};
static const char *const NORM_NAMES[] = {"none", "nfc", "spm-prepend-replace"};
static const char *const PRE_NAMES[] = {"none",   "gpt2",        "llama3",
                                        "qwen2", "digits-gpt2", "metaspace"};
#define COUNT(a) (int)(sizeof(a) / sizeof((a)[0]))

const char *tokenizer_kind_name(const Tokenizer *t) {
    return (unsigned)t->opt.kind < (unsigned)COUNT(KIND_NAMES) ? KIND_NAMES[t->opt.kind] : "?";
}
const char *tokenizer_normalizer_name(TokenizerNormalizer n) {
    return (unsigned)n < (unsigned)COUNT(NORM_NAMES) ? NORM_NAMES[n] : "?";
}
const char *tokenizer_pre_name(TokenizerPreTokenizer p) {
    return (unsigned)p < (unsigned)COUNT(PRE_NAMES) ? PRE_NAMES[p] : "?";
}
static int parse_name(const char *const *names, int n, const char *name) {
    for (int i = 0; name && i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}
int tokenizer_kind_parse(const char *name) { return parse_name(KIND_NAMES, COUNT(KIND_NAMES), name); }
int tokenizer_normalizer_parse(const char *name) {
    return parse_name(NORM_NAMES, COUNT(NORM_NAMES), name);
}
int tokenizer_pre_parse(const char *name) { return parse_name(PRE_NAMES, COUNT(PRE_NAMES), name); }

// ----------------------------------------------------------------------------------------------
// lookup tables

static uint64_t hash_bytes(const char *s, size_t n) { // FNV-1a
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) { // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t table_size(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

// The id of the model-vocabulary piece equal to s[0..len), or -1.
static int piece_lookup(const Tokenizer *t, const char *s, size_t len) {
    const TokenizerIndex *x = t->index;
    for (size_t h = hash_bytes(s, len) & x->piece_mask;; h = (h + 1) & x->piece_mask) {
        int id = x->piece_slot[h];
        if (id < 0) return -1;
        if ((size_t)t->piece_len[id] == len && memcmp(t->pieces[id], s, len) == 0) return id;
    }
}

static int merge_lookup(const Tokenizer *t, int a, int b, int *rank, int *result) {
    const TokenizerIndex *x = t->index;
    if (!x->merge_key) return 0; // no merges at all (a vocabulary of single characters)
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t h = hash_u64(key) & x->merge_mask;; h = (h + 1) & x->merge_mask) {
        if (x->merge_key[h] == UINT64_MAX) return 0;
        if (x->merge_key[h] == key) {
            *rank = x->merge_rank[h];
            *result = x->merge_result[h];
            return 1;
        }
    }
}

// "<0xXX>" with two uppercase-or-lowercase hex digits -> the byte, else -1.
static int parse_byte_piece(const char *p, int len) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// for U+0100.. in byte order, so every byte is one visible character.
static uint32_t byte_to_cp(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

static uint32_t g_byte_cp[256];      // byte -> code point
static int16_t g_cp_byte[324];       // code point (< 324) -> byte, or -1
static void byte_map_init(void) {    // idempotent; tables are constant once filled
    if (g_byte_cp[0]) return;
    for (int i = 0; i < 324; i++) g_cp_byte[i] = -1;
    for (int b = 255; b >= 0; b--) {
        g_byte_cp[b] = byte_to_cp(b);
        g_cp_byte[g_byte_cp[b]] = (int16_t)b;
    }
}

// A piece's bytes through the decoder steps (before the start-of-text strip).
static int decode_token(const Tokenizer *t, int id, char **out, int *out_len) {
    const char *p = t->pieces[id];
    int len = t->piece_len[id], dec = t->opt.decode;
    char *d = malloc((size_t)len * 3 + 2);
    if (!d) return -1;
    int n = 0, byte = parse_byte_piece(p, len);
    if (t->opt.kind == TOKENIZER_LLAMA2C || (dec & TOKENIZER_DEC_BYTE_FALLBACK)) {
        if (byte >= 0) {
            d[0] = (char)byte;
            *out = d;
            *out_len = 1;
            return 0;
        }
    }
    if (dec & TOKENIZER_DEC_BYTELEVEL) { // all characters mapped, or else the raw bytes (as HF)
        int ok = 1;
        for (int i = 0; i < len && ok;) {
            uint32_t cp;
            i += utf8_next(p + i, (size_t)(len - i), &cp);
            if (cp < 324 && g_cp_byte[cp] >= 0) d[n++] = (char)g_cp_byte[cp];
            else ok = 0;
        }
        if (ok) {
            *out = d;
            *out_len = n;
            return 0;
        }
        n = 0;
    }
    for (int i = 0; i < len; i++) {
        if ((dec & TOKENIZER_DEC_SPACE) && i + 3 <= len && memcmp(p + i, SPACE_MARK, 3) == 0) {
            d[n++] = ' ';
            i += 2;
        } else {
            d[n++] = p[i];
        }
    }
    *out = d;
    *out_len = n;
    return 0;
}

static void index_free(TokenizerIndex *x, int vocab_size) {
    if (!x) return;
    free(x->piece_slot);
    free(x->merge_key);
    free(x->merge_rank);
    free(x->merge_result);
    free(x->added);
    if (x->decoded)
        for (int i = 0; i < vocab_size; i++) free(x->decoded[i]);
    free(x->decoded);
    free(x->decoded_len);
    free(x);
}

// qsort has no context argument; the vocabulary is passed through this static. Construction is
// not reentrant across threads for that reason alone.
static const Tokenizer *g_sort_tok;
static int added_cmp(const void *pa, const void *pb) {
    const Tokenizer *t = g_sort_tok;
    int a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    int na = (t->token_flags[a] & TOKENIZER_TOKEN_NORMALIZED) != 0;
    int nb = (t->token_flags[b] & TOKENIZER_TOKEN_NORMALIZED) != 0;
    if (na != nb) return na - nb; // raw-matched tokens first: they are a separate pass
    int fa = (uint8_t)t->pieces[a][0], fb = (uint8_t)t->pieces[b][0];
    if (fa != fb) return fa - fb;
    if (t->piece_len[a] != t->piece_len[b]) return t->piece_len[b] - t->piece_len[a];
    return a - b;
}

static int index_build(Tokenizer *t, Err *e) {
    byte_map_init();
    TokenizerIndex *x = calloc(1, sizeof *x);
    if (!x) return err_set(e, "tokenizer: out of memory");
    t->index = x;
    int V = t->vocab_size;
    x->piece_mask = table_size((size_t)V) - 1;
    x->piece_slot = malloc((x->piece_mask + 1) * sizeof *x->piece_slot);
    x->decoded = calloc((size_t)V, sizeof *x->decoded);
    x->decoded_len = calloc((size_t)V, sizeof *x->decoded_len);
    x->added = malloc((size_t)V * sizeof *x->added);
    if (!x->piece_slot || !x->decoded || !x->decoded_len || !x->added) goto oom;
    memset(x->piece_slot, 0xFF, (x->piece_mask + 1) * sizeof *x->piece_slot);
    for (int id = 0; id < V; id++) {
        if (t->token_flags[id] & TOKENIZER_TOKEN_NOT_IN_MODEL) continue;
        size_t h = hash_bytes(t->pieces[id], (size_t)t->piece_len[id]) & x->piece_mask;
        for (;; h = (h + 1) & x->piece_mask) {
            int o = x->piece_slot[h];
            if (o < 0) {
                x->piece_slot[h] = id;
                break;
            }
            if (t->piece_len[o] == t->piece_len[id] &&
                memcmp(t->pieces[o], t->pieces[id], (size_t)t->piece_len[id]) == 0)
                break; // duplicate piece: the lowest id wins lookups
        }
    }
    for (int id = 0; id < V; id++)
        if (decode_token(t, id, &x->decoded[id], &x->decoded_len[id])) goto oom;
    for (int b = 0; b < 256; b++) {
        char s[8];
        x->byte_token[b] = piece_lookup(t, s, (size_t)utf8_put(g_byte_cp[b], s));
        snprintf(s, sizeof s, "<0x%02X>", b);
        x->byte_fallback[b] = piece_lookup(t, s, 6);
    }
    x->space_id = piece_lookup(t, " ", 1);

    for (int id = 0; id < V; id++)
        if ((t->token_flags[id] & TOKENIZER_TOKEN_ADDED) && t->piece_len[id] > 0) {
            x->added[x->n_added++] = id;
            if (t->token_flags[id] & TOKENIZER_TOKEN_NORMALIZED) x->n_added_normalized++;
        }
    g_sort_tok = t;
    qsort(x->added, (size_t)x->n_added, sizeof *x->added, added_cmp);
    g_sort_tok = NULL;

    if (t->n_merges > 0) {
        x->merge_mask = table_size((size_t)t->n_merges) - 1;
        size_t ns = x->merge_mask + 1;
        x->merge_key = malloc(ns * sizeof *x->merge_key);
        x->merge_rank = malloc(ns * sizeof *x->merge_rank);
        x->merge_result = malloc(ns * sizeof *x->merge_result);
        if (!x->merge_key || !x->merge_rank || !x->merge_result) goto oom;
        memset(x->merge_key, 0xFF, ns * sizeof *x->merge_key);
        char *cat = malloc(2 * (size_t)t->max_token_length + 1);
        if (!cat) goto oom;
        for (int r = 0; r < t->n_merges; r++) {
            int a = t->merges[2 * r], b = t->merges[2 * r + 1];
            int la = t->piece_len[a], lb = t->piece_len[b];
            memcpy(cat, t->pieces[a], (size_t)la);
            memcpy(cat + la, t->pieces[b], (size_t)lb);
            int result = piece_lookup(t, cat, (size_t)(la + lb));
            if (result < 0) {
                free(cat);
                return err_set(e, "tokenizer: merge %d (\"%s\" \"%s\") makes a piece that is not "
                                  "in the vocabulary", r, t->pieces[a], t->pieces[b]);
            }
            uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
            size_t h = hash_u64(key) & x->merge_mask;
            while (x->merge_key[h] != UINT64_MAX && x->merge_key[h] != key)
                h = (h + 1) & x->merge_mask;
            // A pair listed twice keeps its later rank, as HF's merge map (a HashMap filled in
            // order) does.
            x->merge_key[h] = key;
            x->merge_rank[h] = r;
            x->merge_result[h] = result;
        }
        free(cat);
    }
    return 0;
oom:
    return err_set(e, "tokenizer: out of memory for the lookup tables of %d tokens", V);
}

// ----------------------------------------------------------------------------------------------
// construction

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    index_free(t->index, t->vocab_size);
    if (t->pieces)
        for (int i = 0; i < t->vocab_size; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->token_flags);
    free(t->merges);
    memset(t, 0, sizeof *t);
}

int tokenizer_build(Tokenizer *t, const TokenizerOptions *opt, int vocab_size,
                    const char *const *pieces, const int *piece_len, const float *scores,
                    const uint8_t *token_flags, int n_merges, const int32_t *merges, int bos_id,
                    int eos_id, Err *e) {
    memset(t, 0, sizeof *t);
    if (vocab_size <= 0 || vocab_size > TOK_MAX_VOCAB)
        return err_set(e, "tokenizer: vocab_size = %d is out of range (expected 1..16777216)",
                       vocab_size);
    if ((unsigned)opt->kind > TOKENIZER_BPE_SPM || (unsigned)opt->normalizer > 2 ||
        (unsigned)opt->pre > TOKENIZER_PRE_METASPACE || (unsigned)opt->prepend_scheme > 2)
        return err_set(e, "tokenizer: options out of range (kind %d, normalizer %d, "
                          "pre-tokenizer %d, prepend scheme %d)", (int)opt->kind,
                       (int)opt->normalizer, (int)opt->pre, (int)opt->prepend_scheme);
    int rank_kind = opt->kind == TOKENIZER_BPE_BYTELEVEL || opt->kind == TOKENIZER_BPE_SPM;
    if (n_merges < 0 || n_merges >= TOK_MAX_VOCAB || (n_merges > 0 && !merges) ||
        (!rank_kind && n_merges > 0))
        return err_set(e, "tokenizer: %d merges given for a %s tokenizer", n_merges,
                       KIND_NAMES[opt->kind]);
    const int *ids[] = {&bos_id, &eos_id, &opt->unk_id};
    const char *id_names[] = {"bos_id", "eos_id", "unk_id"};
    for (int i = 0; i < 3; i++)
        if (*ids[i] < -1 || *ids[i] >= vocab_size)
            return err_set(e, "tokenizer: %s = %d is not a token id below vocab_size %d",
                           id_names[i], *ids[i], vocab_size);
    if ((opt->add_bos && bos_id < 0) || (opt->add_eos && eos_id < 0))
        return err_set(e, "tokenizer: the post-processor adds %s but the tokenizer has none",
                       opt->add_bos && bos_id < 0 ? "BOS" : "EOS");
    if (!pieces || !piece_len) return err_set(e, "tokenizer: pieces and piece_len must be given");
    int maxlen = 0;
    for (int i = 0; i < vocab_size; i++) {
        if (piece_len[i] < 0 || piece_len[i] >= TOK_MAX_PIECE_LEN)
            return err_set(e, "tokenizer: token %d has length %d, outside 0..65535", i,
                           piece_len[i]);
        if (piece_len[i] > 0 && !pieces[i])
            return err_set(e, "tokenizer: token %d has length %d but no bytes", i, piece_len[i]);
        if (scores && isnan(scores[i]))
            return err_set(e, "tokenizer: token %d has a NaN merge score", i);
        if (piece_len[i] > maxlen) maxlen = piece_len[i];
    }
    for (int r = 0; r < n_merges; r++)
        for (int k = 0; k < 2; k++)
            if (merges[2 * r + k] < 0 || merges[2 * r + k] >= vocab_size)
                return err_set(e, "tokenizer: merge %d names token %d, outside 0..%d", r,
                               (int)merges[2 * r + k], vocab_size - 1);

    size_t n = (size_t)vocab_size;
    t->vocab_size = vocab_size;
    t->max_token_length = maxlen;
    t->bos_id = bos_id;
    t->eos_id = eos_id;
    t->opt = *opt;
    t->n_merges = n_merges;
    t->pieces = calloc(n, sizeof *t->pieces);
    t->piece_len = malloc(n * sizeof *t->piece_len);
    t->scores = calloc(n, sizeof *t->scores);
    t->token_flags = calloc(n, 1);
    t->merges = malloc((size_t)n_merges * 2 * sizeof *t->merges + 1);
    if (!t->pieces || !t->piece_len || !t->scores || !t->token_flags || !t->merges) goto oom;
    for (int i = 0; i < vocab_size; i++) {
        t->pieces[i] = malloc((size_t)piece_len[i] + 1);
        if (!t->pieces[i]) goto oom;
        if (piece_len[i] > 0) memcpy(t->pieces[i], pieces[i], (size_t)piece_len[i]);
        t->pieces[i][piece_len[i]] = '\0';
        t->piece_len[i] = piece_len[i];
        if (scores) t->scores[i] = scores[i];
        if (token_flags) t->token_flags[i] = token_flags[i];
    }
    if (n_merges > 0) memcpy(t->merges, merges, (size_t)n_merges * 2 * sizeof *t->merges);
    if (index_build(t, e)) {
        tokenizer_free(t);
        return -1;
    }
    // Byte fallback needs the 256 pieces <0x00>..<0xFF>; llama2.c has them at 3.. in order.
    t->byte_fallback_base = -1;
    int b0 = t->index->byte_fallback[0];
    if (b0 >= 0 && b0 <= vocab_size - 256) {
        int ok = 1;
        for (int b = 0; b < 256 && ok; b++) ok = t->index->byte_fallback[b] == b0 + b;
        if (ok) t->byte_fallback_base = b0;
    }
    return 0;
oom:
    tokenizer_free(t);
    return err_set(e, "tokenizer: out of memory for %d tokens", vocab_size);
}

int tokenizer_init(Tokenizer *t, int vocab_size, int max_token_length, const char *const *pieces,
                   const int *piece_len, const float *scores, int bos_id, int eos_id, Err *e) {
    memset(t, 0, sizeof *t);
    if (max_token_length < 0 || max_token_length >= TOK_MAX_PIECE_LEN)
        return err_set(e, "tokenizer: max_token_length = %d is out of range (expected 0..65535)",
                       max_token_length);
    if (!scores) return err_set(e, "tokenizer: pieces, piece_len and scores must all be given");
    for (int i = 0; piece_len && i < vocab_size; i++)
        if (piece_len[i] < 0 || piece_len[i] > max_token_length)
            return err_set(e,
                           "tokenizer: token %d has length %d, outside 0..max_token_length (%d)",
                           i, piece_len[i], max_token_length);
    TokenizerOptions opt = {.kind = TOKENIZER_LLAMA2C, .unk_id = -1, .add_bos = 1,
                            .add_prefix_space = 1, .decode = TOKENIZER_DEC_BYTE_FALLBACK};
    if (tokenizer_build(t, &opt, vocab_size, pieces, piece_len, scores, NULL, 0, NULL, bos_id,
                        eos_id, e))
        return -1;
    t->max_token_length = max_token_length; // the file's header value, stored as it was
    return 0;
}

int tokenizer_read_llama2c(Tokenizer *t, const char *path, int vocab_size, Err *e) {
    memset(t, 0, sizeof *t);
    if (vocab_size <= 0 || vocab_size > (1 << 24))
        return err_set(e, "%s: vocab_size = %d is out of range (expected 1..16777216); pass the "
                          "model's vocab_size", path, vocab_size);
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, "%s: cannot open: %s", path, strerror(errno));
    unsigned char *buf = NULL;
    long fsize = -1;
    if (fseek(f, 0, SEEK_END) == 0) fsize = ftell(f);
    if (fsize < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return err_set(e, "%s: cannot determine the file size", path);
    }
    // 4 + vocab * (4 + 4 + 65535) bounds any valid file; refuse to slurp anything larger.
    if ((unsigned long long)fsize > 4ull + (unsigned long long)vocab_size * (8ull + 65535ull)) {
        fclose(f);
        return err_set(e, "%s: file is %ld bytes, too large for a %d-token llama2.c tokenizer",
                       path, fsize, vocab_size);
    }
    buf = malloc(fsize > 0 ? (size_t)fsize : 1);
    if (!buf) {
        fclose(f);
        return err_set(e, "%s: out of memory reading %ld bytes", path, fsize);
    }
    size_t got = fread(buf, 1, (size_t)fsize, f);
    fclose(f);
    if (got != (size_t)fsize) {
        free(buf);
        return err_set(e, "%s: read %zu of %ld bytes", path, got, fsize);
    }

    size_t size = (size_t)fsize, off = 0;
    int rc = -1;
    const char **pieces = calloc((size_t)vocab_size, sizeof *pieces);
    int *lens = malloc((size_t)vocab_size * sizeof *lens);
    float *scores = malloc((size_t)vocab_size * sizeof *scores);
    if (!pieces || !lens || !scores) {
        err_set(e, "%s: out of memory for %d tokens", path, vocab_size);
        goto done;
    }
    int32_t max_len;
    if (size < 4) {
        err_set(e, "%s: file is %zu bytes, too short for the int32 max_token_length header; "
                   "truncated or not a llama2.c tokenizer.bin", path, size);
        goto done;
    }
    memcpy(&max_len, buf, 4);
    off = 4;
    if (max_len <= 0 || max_len >= TOK_MAX_PIECE_LEN) {
        err_set(e, "%s: header max_token_length = %d is out of range (expected 1..65535); not a "
                   "llama2.c tokenizer.bin", path, (int)max_len);
        goto done;
    }
    for (int i = 0; i < vocab_size; i++) {
        int32_t len;
        if (size - off < 8) {
            err_set(e, "%s: file ends at byte %zu inside the header of token %d of %d; truncated, "
                       "or the tokenizer has fewer tokens than the model's vocab_size", path,
                    size, i, vocab_size);
            goto done;
        }
        memcpy(&scores[i], buf + off, 4);
        memcpy(&len, buf + off + 4, 4);
        off += 8;
        if (len < 0 || len >= TOK_MAX_PIECE_LEN) {
            err_set(e, "%s: token %d length = %d is out of range (expected 0..65535); corrupt "
                       "file", path, i, (int)len);
            goto done;
        }
        if (len > max_len) {
            err_set(e, "%s: token %d length = %d exceeds the header's max_token_length = %d; "
                       "corrupt file", path, i, (int)len, (int)max_len);
            goto done;
        }
        if ((size_t)len > size - off) {
            err_set(e, "%s: token %d claims %d bytes but only %zu remain in the file; truncated",
                    path, i, (int)len, size - off);
            goto done;
        }
        if (!isfinite(scores[i])) {
            err_set(e, "%s: token %d has a non-finite score; corrupt file", path, i);
            goto done;
        }
        pieces[i] = (const char *)buf + off;
        lens[i] = len;
        off += (size_t)len;
    }
    if (off != size) {
        err_set(e, "%s: %zu bytes remain after %d tokens; the tokenizer has more tokens than the "
                   "model's vocab_size (%d) -- wrong tokenizer for this model?", path,
                size - off, vocab_size, vocab_size);
        goto done;
    }
    // llama2.c tokenizers: 0 <unk>, 1 <s>, 2 </s> (run.c hard-codes BOS = 1, EOS = 2).
    if (tokenizer_init(t, vocab_size, max_len, pieces, lens, scores, vocab_size > 1 ? 1 : -1,
                       vocab_size > 2 ? 2 : -1, e) != 0) {
        err_prefix(e, "%s", path);
        goto done;
    }
    rc = 0;
done:
    free(pieces);
    free(lens);
    free(scores);
    free(buf);
    return rc;
}

// ----------------------------------------------------------------------------------------------
// merging: a linked list of symbols and a binary heap of candidate pairs (sentencepiece's and
// HF's algorithm), O(n log n) in the symbol count

typedef struct {
    int id, prev, next; // id -1: absorbed into its left neighbour
} Sym;

typedef struct {
    float prio; // lower first: the rank, or minus the joined piece's score
    int pos, right, left_id, right_id, new_id;
} Cand;

typedef struct {
    Sym *sym;
    Cand *heap;
    size_t n_heap, cap_heap, cap_sym;
    char *cat; // scratch for joined pieces
} Work;

static int cand_before(const Cand *a, const Cand *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->pos < b->pos);
}

static int heap_push(Work *w, const Cand *c) {
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        Cand *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0 && cand_before(c, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = *c;
    return 0;
}

static Cand heap_pop(Work *w) {
    Cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

// Queues the pair (symbol l, symbol r) when it can merge.
static int push_pair(const Tokenizer *t, Work *w, int l, int r) {
    int a = w->sym[l].id, b = w->sym[r].id;
    Cand c = {0, l, r, a, b, -1};
    if (t->opt.kind == TOKENIZER_BPE_BYTELEVEL || t->opt.kind == TOKENIZER_BPE_SPM) {
        int rank;
        if (!merge_lookup(t, a, b, &rank, &c.new_id)) return 0;
        c.prio = (float)rank;
    } else {
        // Score merges: the joined piece must be a token; nothing at or below -1e10 merges and
        // ties go to the leftmost pair (run.c's strict '>').
        int la = t->piece_len[a], lb = t->piece_len[b];
        if (la + lb > t->max_token_length) return 0;
        memcpy(w->cat, t->pieces[a], (size_t)la);
        memcpy(w->cat + la, t->pieces[b], (size_t)lb);
        c.new_id = piece_lookup(t, w->cat, (size_t)(la + lb));
        if (c.new_id < 0 || !(t->scores[c.new_id] > -1e10f)) return 0;
        c.prio = -t->scores[c.new_id];
    }
    return heap_push(w, &c);
}

// Merges sym[0..n) (a chain) to the end; appends the resulting ids to out.
typedef struct {
    int32_t *v;
    size_t n, cap;
} IdVec;

static int idvec_push(IdVec *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *g = realloc(v->v, cap * sizeof *g);
        if (!g) return -1;
        v->v = g;
        v->cap = cap;
    }
    v->v[v->n++] = id;
    return 0;
}

static int merge_all(const Tokenizer *t, Work *w, int n, IdVec *out) {
    w->n_heap = 0;
    for (int i = 0; i < n; i++) {
        w->sym[i].prev = i - 1;
        w->sym[i].next = i + 1 < n ? i + 1 : -1;
    }
    for (int i = 0; i + 1 < n; i++)
        if (push_pair(t, w, i, i + 1)) return -1;
    while (w->n_heap > 0) {
        Cand c = heap_pop(w);
        Sym *l = &w->sym[c.pos];
        if (l->id != c.left_id || l->next != c.right || w->sym[c.right].id != c.right_id)
            continue; // stale: one side has merged since
        Sym *r = &w->sym[c.right];
        l->id = c.new_id;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = c.pos;
        r->id = -1;
        if (l->prev >= 0 && push_pair(t, w, l->prev, c.pos)) return -1;
        if (l->next >= 0 && push_pair(t, w, c.pos, l->next)) return -1;
    }
    for (int i = 0; i >= 0 && n > 0; i = w->sym[i].next)
        if (idvec_push(out, w->sym[i].id)) return -1;
    return 0;
}

static int work_reserve(Work *w, size_t n) {
    if (n <= w->cap_sym) return 0;
    size_t cap = n < 64 ? 64 : n;
    Sym *s = realloc(w->sym, cap * sizeof *s);
    if (!s) return -1;
    w->sym = s;
    w->cap_sym = cap;
    return 0;
}

// ----------------------------------------------------------------------------------------------
// encode

typedef struct {
    const Tokenizer *t;
    Work w;
    IdVec out;
    char *buf; // scratch: a pre-token in the byte alphabet
    size_t cap_buf;
    const char *segment; // the normalised text being split
    int prefix_ok;       // add_prefix_space of the call
    Err *e;
} Enc;

static int buf_reserve(Enc *c, size_t n) {
    if (n <= c->cap_buf) return 0;
    size_t cap = n * 2 + 64;
    char *b = realloc(c->buf, cap);
    if (!b) return -1;
    c->buf = b;
    c->cap_buf = cap;
    return 0;
}

// SentencePiece score merges over s[0..len) (llama2.c encode(): one symbol per UTF-8 character as
// run.c groups bytes, unknown characters as <0xXX> byte tokens). `lead` symbols already in
// c->out (llama2.c's BOS and dummy prefix) take part in the merges, as in run.c.
static int spm_encode(Enc *c, const char *s, size_t len, int lead) {
    const Tokenizer *t = c->t;
    if (work_reserve(&c->w, len + (size_t)lead + 1)) return -1;
    int n = 0;
    for (int i = 0; i < lead; i++) c->w.sym[n++].id = c->out.v[c->out.n - (size_t)lead + (size_t)i];
    c->out.n -= (size_t)lead;
    for (size_t i = 0; i < len;) {
        // A non-continuation byte starts a character; up to 3 continuation bytes join it.
        size_t k = 1;
        while (i + k < len && ((uint8_t)s[i + k] & 0xC0) == 0x80 && k < 4) k++;
        int id = piece_lookup(t, s + i, k);
        if (id >= 0) {
            c->w.sym[n++].id = id;
        } else {
            for (size_t b = 0; b < k; b++) {
                int fb = t->index->byte_fallback[(uint8_t)s[i + b]];
                if (fb < 0)
                    return err_set(c->e, "tokenizer_encode: byte %zu of the text has no token "
                                         "and the vocabulary has no <0xXX> byte-fallback piece "
                                         "for it", i + b);
                c->w.sym[n++].id = fb;
            }
        }
        i += k;
    }
    return merge_all(t, &c->w, n, &c->out);
}

// Rank merges over one pre-token (HF BPE.merge_word): one symbol per character of the piece
// (byte-level: per byte, through the byte alphabet), unknown characters to <0xXX> tokens with
// byte_fallback, else to unk (fused when fuse_unk).
static int bpe_word(Enc *c, const char *s, size_t len) {
    const Tokenizer *t = c->t;
    const TokenizerIndex *x = t->index;
    int bytelevel = t->opt.kind == TOKENIZER_BPE_BYTELEVEL;
    const char *word = s;
    size_t wlen = len;
    if (bytelevel) { // the piece spelled in the byte alphabet
        if (buf_reserve(c, len * 2 + 1)) return -1;
        wlen = 0;
        for (size_t i = 0; i < len; i++)
            wlen += (size_t)utf8_put(g_byte_cp[(uint8_t)s[i]], c->buf + wlen);
        word = c->buf;
    }
    if (t->opt.ignore_merges) {
        int id = piece_lookup(t, word, wlen);
        if (id >= 0) return idvec_push(&c->out, id);
    }
    if (work_reserve(&c->w, wlen + 1)) return -1;
    int n = 0, last_unk = 0;
    for (size_t i = 0; i < wlen;) {
        uint32_t cp;
        size_t k = (size_t)utf8_next(word + i, wlen - i, &cp);
        int id = bytelevel && k <= 2 && cp < 324 && g_cp_byte[cp] >= 0
                     ? x->byte_token[g_cp_byte[cp]]
                     : piece_lookup(t, word + i, k);
        if (id >= 0) {
            c->w.sym[n++].id = id;
            last_unk = 0;
        } else {
            int all = t->opt.byte_fallback;
            for (size_t b = 0; b < k && all; b++) all = x->byte_fallback[(uint8_t)word[i + b]] >= 0;
            if (all) {
                if (work_reserve(&c->w, (size_t)n + k + (wlen - i) + 1)) return -1;
                for (size_t b = 0; b < k; b++)
                    c->w.sym[n++].id = x->byte_fallback[(uint8_t)word[i + b]];
                last_unk = 0;
            } else if (t->opt.unk_id >= 0) {
                if (!(t->opt.fuse_unk && last_unk)) c->w.sym[n++].id = t->opt.unk_id;
                last_unk = 1;
            } else {
                return err_set(c->e, "tokenizer_encode: the character at byte %zu of a word has "
                                     "no token, and the tokenizer has neither byte fallback nor "
                                     "an unk token", i);
            }
        }
        i += k;
    }
    return merge_all(t, &c->w, n, &c->out);
}

static int emit_piece(void *ctx, size_t start, size_t end) {
    Enc *c = ctx;
    return bpe_word(c, c->segment + start, end - start);
}

// The longest added token of the raw-matched (pass 0) or normalised-matched (pass 1) set at
// s[0..len), or -1.
static int added_at(const Tokenizer *t, const char *s, size_t len, int pass) {
    const TokenizerIndex *x = t->index;
    int lo = pass ? x->n_added - x->n_added_normalized : 0;
    int hi = pass ? x->n_added : x->n_added - x->n_added_normalized;
    for (int i = lo; i < hi; i++) {
        int id = x->added[i];
        if ((uint8_t)t->pieces[id][0] != (uint8_t)s[0]) continue;
        if ((size_t)t->piece_len[id] <= len &&
            memcmp(t->pieces[id], s, (size_t)t->piece_len[id]) == 0)
            return id; // sorted longest first within a first byte
    }
    return -1;
}

// Splits text[0..len) on the added tokens of `pass` (leftmost, then longest; lstrip/rstrip
// swallow adjacent whitespace) and calls `part` on each stretch between them.
typedef int (*PartFn)(Enc *c, const char *s, size_t len, int first);
static int split_added(Enc *c, const char *text, size_t len, int pass, int first, PartFn part) {
    const Tokenizer *t = c->t;
    const TokenizerIndex *x = t->index;
    int have = pass ? x->n_added_normalized : x->n_added - x->n_added_normalized;
    size_t seg = 0;
    if (have > 0) {
        uint8_t starts[256] = {0}; // bytes that start some added token, for a quick skip
        int lo = pass ? x->n_added - x->n_added_normalized : 0;
        for (int i = lo; i < lo + have; i++) starts[(uint8_t)t->pieces[x->added[i]][0]] = 1;
        for (size_t p = 0; p < len;) {
            int id = starts[(uint8_t)text[p]] ? added_at(t, text + p, len - p, pass) : -1;
            if (id < 0) {
                p++;
                continue;
            }
            size_t a = p, b = p + (size_t)t->piece_len[id];
            uint8_t f = t->token_flags[id];
            if (f & TOKENIZER_TOKEN_LSTRIP)
                while (a > seg) {
                    size_t k = a - 1;
                    while (k > seg && ((uint8_t)text[k] & 0xC0) == 0x80) k--;
                    uint32_t cp;
                    utf8_next(text + k, a - k, &cp);
                    if (!unicode_is_space(cp)) break;
                    a = k;
                }
            if (f & TOKENIZER_TOKEN_RSTRIP)
                while (b < len) {
                    uint32_t cp;
                    int k = utf8_next(text + b, len - b, &cp);
                    if (!unicode_is_space(cp)) break;
                    b += (size_t)k;
                }
            if (a > seg) {
                int rc = part(c, text + seg, a - seg, first && seg == 0);
                if (rc) return rc;
            }
            if (idvec_push(&c->out, id)) return err_set(c->e, "tokenizer_encode: out of memory");
            seg = p = b;
        }
    }
    if (len > seg) return part(c, text + seg, len - seg, first && seg == 0);
    return 0;
}

// s with every " " replaced by "▁" (SPACE_MARK), led by one "▁" when prefix: SentencePiece's
// space marking (HF Metaspace / Prepend + Replace, llama.cpp's SPM). malloc'd, *out_len bytes.
static char *mark_spaces(const char *s, size_t len, int prefix, size_t *out_len) {
    size_t n_sp = 0;
    for (size_t i = 0; i < len; i++) n_sp += s[i] == ' ';
    char *alt = malloc(len + 2 * n_sp + 4);
    if (!alt) return NULL;
    size_t m = 0;
    if (prefix) memcpy(alt, SPACE_MARK, 3), m = 3;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') memcpy(alt + m, SPACE_MARK, 3), m += 3;
        else alt[m++] = s[i];
    }
    *out_len = m;
    return alt;
}

// Pre-tokenises and merges one stretch of normalised text. `first`: it starts the input text.
static int encode_part(Enc *c, const char *s, size_t len, int first) {
    const TokenizerOptions *o = &c->t->opt;
    char *alt = NULL;
    int suppress = first && !c->prefix_ok;
    if (o->pre == TOKENIZER_PRE_METASPACE) { // " " -> "▁", and the prefix unless one is there
        // HF prepends unless the replaced text already starts with "▁" (a space or a "▁").
        int marked = len > 0 && (s[0] == ' ' || (len >= 3 && memcmp(s, SPACE_MARK, 3) == 0));
        int prefix = len > 0 && !marked && !suppress &&
                     (o->prepend_scheme == TOKENIZER_PREPEND_ALWAYS ||
                      (o->prepend_scheme == TOKENIZER_PREPEND_FIRST && first));
        if (!(alt = mark_spaces(s, len, prefix, &len))) goto oom;
        s = alt;
    } else if (o->byte_level_prefix_space && len > 0 && s[0] != ' ' && !suppress) {
        if (!(alt = malloc(len + 1))) goto oom;
        alt[0] = ' ';
        memcpy(alt + 1, s, len);
        s = alt;
        len++;
    }
    c->segment = s;
    int rc = tokenizer_split(o->pre, s, len, emit_piece, c);
    if (rc < 0 && c->e && !c->e->msg[0]) goto oom;
    free(alt);
    return rc ? -1 : 0;
oom:
    free(alt);
    return err_set(c->e, "tokenizer_encode: out of memory");
}

// Encodes one stretch of raw text between added tokens: normalise, split on the added tokens
// matched in normalised text, then pre-tokenise and merge each part.
static int encode_segment(Enc *c, const char *s, size_t len, int first) {
    const Tokenizer *t = c->t;
    const TokenizerOptions *o = &t->opt;
    char *norm = NULL, *alt = NULL;
    int rc;
    if (o->normalizer == TOKENIZER_NORM_NFC && !unicode_quick_nfc(s, len)) {
        if (!(norm = unicode_nfc(s, len, &len))) goto oom;
        s = norm;
    }
    if (o->normalizer == TOKENIZER_NORM_SPM_PREPEND || o->kind == TOKENIZER_SPM_SCORES) {
        // " " -> "▁" with the SentencePiece prefix: HF's Prepend("▁") on every non-empty
        // stretch; llama.cpp's add_space_prefix at the start and after every special token.
        int prefix = len > 0 && (o->kind == TOKENIZER_SPM_SCORES ? o->add_prefix_space : 1);
        if (first && !c->prefix_ok) prefix = 0;
        if (!(alt = mark_spaces(s, len, prefix, &len))) goto oom;
        s = alt;
    }
    if (o->kind == TOKENIZER_SPM_SCORES) rc = spm_encode(c, s, len, 0);
    else if (t->index->n_added_normalized > 0) rc = split_added(c, s, len, 1, first, encode_part);
    else rc = encode_part(c, s, len, first);
    free(norm);
    free(alt);
    return rc;
oom:
    free(norm);
    free(alt);
    return err_set(c->e, "tokenizer_encode: out of memory");
}

int tokenizer_encode(const Tokenizer *t, const char *text, int add_bos, int add_prefix_space,
                     int32_t *ids, int *n_out, Err *e) {
    *n_out = 0;
    if (!text) return err_set(e, "tokenizer_encode: text is NULL");
    size_t tlen = strlen(text);
    if (tlen > (size_t)(1 << 30))
        return err_set(e, "tokenizer_encode: text of %zu bytes is too long (max 1 GiB)", tlen);
    if (e) e->msg[0] = '\0';
    Enc c = {.t = t, .e = e};
    c.w.cat = malloc(2 * (size_t)t->max_token_length + 8);
    int rc = c.w.cat ? 0 : -1;
    int bos = add_bos && t->opt.add_bos, eos = add_bos && t->opt.add_eos;
    if (rc == 0 && bos) {
        if (t->bos_id < 0) {
            rc = err_set(e, "tokenizer_encode: this tokenizer has no BOS token");
            goto done;
        }
        rc = idvec_push(&c.out, t->bos_id);
    }
    if (rc == 0 && t->opt.kind == TOKENIZER_LLAMA2C) {
        // llama2.c encode(): BOS and the dummy prefix " " (non-empty text only) are symbols of
        // the one merge over the whole text.
        int lead = bos;
        if (add_prefix_space && tlen > 0) {
            if (t->index->space_id < 0) {
                rc = err_set(e, "tokenizer_encode: the vocabulary has no \" \" piece for the "
                                "dummy prefix; encode with add_prefix_space = 0");
                goto done;
            }
            rc = idvec_push(&c.out, t->index->space_id);
            lead++;
        }
        if (rc == 0) rc = spm_encode(&c, text, tlen, lead);
    } else if (rc == 0) {
        c.prefix_ok = add_prefix_space;
        rc = split_added(&c, text, tlen, 0, 1, encode_segment);
    }
    if (rc == 0 && eos) rc = idvec_push(&c.out, t->eos_id);
    if (rc == 0 && c.out.n > tlen + 3)
        rc = err_set(e, "tokenizer_encode: %zu tokens for %zu bytes of text exceed the "
                        "strlen + 3 the caller's buffer holds", c.out.n, tlen);
    if (rc == 0 && c.out.n > 0) memcpy(ids, c.out.v, c.out.n * sizeof *ids);
    if (rc == 0) *n_out = (int)c.out.n;
done:
    if (rc && e && !e->msg[0]) err_set(e, "tokenizer_encode: out of memory");
    free(c.out.v);
    free(c.w.sym);
    free(c.w.heap);
    free(c.w.cat);
    free(c.buf);
    return rc ? -1 : 0;
}

// ----------------------------------------------------------------------------------------------
// decode and digest

const char *tokenizer_decode_piece(const Tokenizer *t, int prev, int token, char *buf,
                                   size_t buflen, size_t *len_out) {
    if (len_out) *len_out = 0;
    if (!t || !buf || token < 0 || token >= t->vocab_size) return NULL;
    const char *p = t->index->decoded[token];
    int len = t->index->decoded_len[token];
    // SentencePiece's decoder drops the dummy-prefix space after BOS (llama2.c PR #89) and, for
    // HF's Strip / Metaspace decoders, at the start of the text.
    int strip = (prev == t->bos_id && t->bos_id >= 0 &&
                 (t->opt.kind == TOKENIZER_LLAMA2C || (t->opt.decode & TOKENIZER_DEC_STRIP))) ||
                (prev < 0 && (t->opt.decode & TOKENIZER_DEC_STRIP));
    if (strip && len > 0 && p[0] == ' ' && parse_byte_piece(t->pieces[token], t->piece_len[token]) < 0) {
        p++;
        len--;
    }
    if (buflen < (size_t)len + 1) return NULL;
    memcpy(buf, p, (size_t)len);
    buf[len] = '\0';
    if (len_out) *len_out = (size_t)len;
    return buf;
}

static void put_u32(Sha256 *s, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    sha256_update(s, b, 4);
}

// Digest layout (fixed; changing it renames every tokenizer). llama2.c kind ("v1", as before):
// the ASCII tag "lethe-tokenizer-v1", then little-endian int32 vocab_size, bos_id, eos_id, then
// per token in id order: int32 byte length, the bytes, the float32 score's bit pattern.
// Other kinds ("v2"): tag "lethe-tokenizer-v2", the kind name and its length, every option as
// int32 in TokenizerOptions order, vocab_size, bos_id, eos_id, per token the v1 fields plus its
// flags, then n_merges and the merge pairs.
void tokenizer_digest(const Tokenizer *t, char hex[65]) {
    Sha256 s;
    sha256_init(&s);
    int v2 = t->opt.kind != TOKENIZER_LLAMA2C;
    static const char tag1[] = "lethe-tokenizer-v1", tag2[] = "lethe-tokenizer-v2";
    sha256_update(&s, v2 ? tag2 : tag1, sizeof tag1 - 1);
    if (v2) {
        const char *k = tokenizer_kind_name(t);
        put_u32(&s, (uint32_t)strlen(k));
        sha256_update(&s, k, strlen(k));
        const TokenizerOptions *o = &t->opt;
        int fields[] = {o->kind,          o->normalizer, o->pre,       o->prepend_scheme,
                        o->byte_level_prefix_space, o->ignore_merges, o->byte_fallback,
                        o->fuse_unk,      o->unk_id,     o->add_bos,   o->add_eos,
                        o->add_prefix_space,  o->decode};
        for (int i = 0; i < COUNT(fields); i++) put_u32(&s, (uint32_t)fields[i]);
    }
    put_u32(&s, (uint32_t)t->vocab_size);
    put_u32(&s, (uint32_t)t->bos_id);
    put_u32(&s, (uint32_t)t->eos_id);
    for (int i = 0; i < t->vocab_size; i++) {
        put_u32(&s, (uint32_t)t->piece_len[i]);
        sha256_update(&s, t->pieces[i], (size_t)t->piece_len[i]);
        uint32_t bits;
        memcpy(&bits, &t->scores[i], 4);
        put_u32(&s, bits);
        if (v2) put_u32(&s, t->token_flags[i]);
    }
    if (v2) {
        put_u32(&s, (uint32_t)t->n_merges);
        for (int i = 0; i < 2 * t->n_merges; i++) put_u32(&s, (uint32_t)t->merges[i]);
    }
    uint8_t d[32];
    sha256_final(&s, d);
    sha256_hex(d, hex);
}
