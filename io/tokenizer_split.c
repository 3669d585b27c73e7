// The pre-tokeniser patterns of real tokenizers as hand-written matchers. Each function is the
// leftmost-first alternation of its regex (Oniguruma semantics, which HF tokenizers uses),
// evaluated at one position; comments give the alternative each branch implements.
#include "tokenizer_split.h"

#include <stdint.h>
#include <stdlib.h>

#include "unicode.h"

const char TOKENIZER_REGEX_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char TOKENIZER_REGEX_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char TOKENIZER_REGEX_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Character classes of the patterns: \p{L}, \p{N}, \s, and everything else (invalid bytes too).
enum { CL_L, CL_N, CL_S, CL_O };

typedef struct {
    uint32_t *cp; // code points (or invalid units)
    size_t *off;  // byte offset of each unit; off[n] = byte length
    uint8_t *cl;  // class of each unit
    size_t n;
} Units;

static int units_decode(Units *u, const char *s, size_t len) {
    u->cp = malloc((len + 1) * sizeof *u->cp);
    u->off = malloc((len + 1) * sizeof *u->off);
    u->cl = malloc(len + 1);
    if (!u->cp || !u->off || !u->cl) return -1;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        int k = utf8_next(s + i, len - i, &c);
        u->cp[n] = c;
        u->off[n] = i;
        u->cl[n] = unicode_is_letter(c) ? CL_L
                   : unicode_is_number(c) ? CL_N
                   : unicode_is_space(c)  ? CL_S
                                          : CL_O;
        n++;
        i += (size_t)k;
    }
    u->off[n] = len;
    u->n = n;
    return 0;
}

static void units_free(Units *u) {
    free(u->cp);
    free(u->off);
    free(u->cl);
}

static size_t run_of(const Units *u, size_t i, int cls) {
    while (i < u->n && u->cl[i] == cls) i++;
    return i;
}

// 's 't 're 've 'm 'll 'd at i (u->cp[i] == '\''): the end of the match, or 0. Case-insensitive
// matching follows Unicode simple case folding, under which U+017F (long s) is an 's' too.
static uint32_t fold_case(uint32_t c, int fold) {
    if (!fold) return c;
    if (c == 0x17F) return 's';
    if (c >= 'A' && c <= 'Z') return c + 0x20;
    return c;
}

static size_t contraction(const Units *u, size_t i, int fold) {
    uint32_t a = i + 1 < u->n ? fold_case(u->cp[i + 1], fold) : 0;
    uint32_t b = i + 2 < u->n ? fold_case(u->cp[i + 2], fold) : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

// \s+(?!\S) then \s+, from a whitespace unit i: the run, less its last unit when a non-space
// follows and the run has more than one unit.
static size_t trailing_space(const Units *u, size_t i) {
    size_t j = run_of(u, i, CL_S);
    if (j == u->n || j - i < 2) return j;
    return j - 1;
}

static int is_cr_lf(uint32_t c) { return c == '\r' || c == '\n'; }

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
static size_t match_gpt2(const Units *u, size_t i) {
    size_t c;
    if (u->cp[i] == '\'' && (c = contraction(u, i, 0))) return c;
    int lead_space = u->cp[i] == ' ' && i + 1 < u->n;
    for (int cls = CL_L; cls <= CL_O; cls++) {
        if (cls == CL_S) continue;
        if (lead_space && u->cl[i + 1] == cls) return run_of(u, i + 1, cls); // ` ?X+`
        if (u->cl[i] == cls) return run_of(u, i, cls);                       // `X+`
    }
    return trailing_space(u, i);
}

// Llama 3 (max_digits 3) and Qwen2 (max_digits 1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
static size_t match_llama3(const Units *u, size_t i, size_t max_digits) {
    size_t c;
    if (u->cp[i] == '\'' && (c = contraction(u, i, 1))) return c;
    int cl = u->cl[i];
    if (cl != CL_L && cl != CL_N && !is_cr_lf(u->cp[i]) && i + 1 < u->n && u->cl[i + 1] == CL_L)
        return run_of(u, i + 1, CL_L);
    if (cl == CL_L) return run_of(u, i, CL_L);
    if (cl == CL_N) {
        size_t j = i;
        while (j < u->n && u->cl[j] == CL_N && j - i < max_digits) j++;
        return j;
    }
    size_t start = i;
    if (u->cp[i] == ' ' && i + 1 < u->n && u->cl[i + 1] == CL_O) start = i + 1;
    if (u->cl[start] == CL_O) {
        size_t j = run_of(u, start, CL_O);
        while (j < u->n && is_cr_lf(u->cp[j])) j++;
        return j;
    }
    // \s*[\r\n]+: up to the last \r or \n of the whitespace run.
    size_t j = run_of(u, i, CL_S), last = SIZE_MAX;
    for (size_t k = i; k < j; k++)
        if (is_cr_lf(u->cp[k])) last = k;
    if (last != SIZE_MAX) return last + 1;
    return trailing_space(u, i);
}

static int split_units(TokenizerPreTokenizer pre, const Units *u, size_t from, size_t to,
                       TokenizerSplitEmit emit, void *ctx) {
    // The matchers look at most two units ahead, through u->n; pieces never cross `to` because
    // callers only split [from, to) ranges that end at a class boundary or at u->n.
    for (size_t i = from; i < to;) {
        size_t j = pre == TOKENIZER_PRE_LLAMA3 ? match_llama3(u, i, 3)
                   : pre == TOKENIZER_PRE_QWEN2 ? match_llama3(u, i, 1)
                                                : match_gpt2(u, i);
        if (j > to) j = to;
        int rc = emit(ctx, u->off[i], u->off[j]);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

int tokenizer_split(TokenizerPreTokenizer pre, const char *s, size_t len, TokenizerSplitEmit emit,
                    void *ctx) {
    if (len == 0) return 0;
    if (pre == TOKENIZER_PRE_NONE || pre == TOKENIZER_PRE_METASPACE) return emit(ctx, 0, len);
    Units u = {0};
    int rc = 0;
    if (units_decode(&u, s, len)) {
        rc = -1;
    } else if (pre == TOKENIZER_PRE_DIGITS_GPT2) {
        // Digits(individual_digits) isolates every \p{N} first; the GPT-2 pattern then runs on
        // each stretch between them on its own (so " 1" is " " and "1", and the lookahead of
        // \s+(?!\S) stops at the stretch's end).
        size_t i = 0;
        while (i < u.n && rc == 0) {
            if (u.cl[i] == CL_N) {
                rc = emit(ctx, u.off[i], u.off[i + 1]);
                i++;
                continue;
            }
            size_t j = i;
            while (j < u.n && u.cl[j] != CL_N) j++;
            Units part = u; // the stretch as a text of its own
            part.cp = u.cp + i;
            part.off = u.off + i;
            part.cl = u.cl + i;
            part.n = j - i;
            rc = split_units(TOKENIZER_PRE_GPT2, &part, 0, part.n, emit, ctx);
            i = j;
        }
    } else {
        rc = split_units(pre, &u, 0, u.n, emit, ctx);
    }
    units_free(&u);
    return rc;
}
