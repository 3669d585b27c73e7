// UTF-8 decoding, general categories and NFC (decompose, canonical order, compose; Hangul
// algorithmically, as UAX #15 specifies) over the generated tables in unicode_tables.h.
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"

int utf8_next(const char *str, size_t len, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    if (len == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) n = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, v = c & 0x07, min = 0x10000;
    else goto invalid;
    if ((size_t)n > len) goto invalid;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) goto invalid;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) goto invalid;
    *cp = v;
    return n;
invalid:
    *cp = UNICODE_INVALID_BYTE(c);
    return 1;
}

int utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp & UNICODE_INVALID_FLAG) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

// Index of the run containing cp in a table of ascending run starts (starts[0] == 0).
static size_t run_index(const uint32_t *starts, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n; // last start <= cp
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (starts[mid] <= cp) lo = mid;
        else hi = mid;
    }
    return lo;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

UnicodeCategory unicode_category(uint32_t cp) {
    if (cp > 0x10FFFF) return UC_Cn; // invalid units too
    if (cp < 0x80) { // the hot path of every splitter
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return cp >= 'a' ? UC_Ll : UC_Lu;
        if (cp >= '0' && cp <= '9') return UC_Nd;
    }
    return (UnicodeCategory)unicode_gc_run_value[run_index(unicode_gc_run_start,
                                                           COUNT(unicode_gc_run_start), cp)];
}

int unicode_is_letter(uint32_t cp) {
    UnicodeCategory c = unicode_category(cp);
    return c >= UC_Lu && c <= UC_Lo;
}

int unicode_is_number(uint32_t cp) {
    UnicodeCategory c = unicode_category(cp);
    return c >= UC_Nd && c <= UC_No;
}

int unicode_is_space(uint32_t cp) {
    if (cp < 0x80) return (cp >= 9 && cp <= 13) || cp == ' ';
    if (cp == 0x85) return 1;
    UnicodeCategory c = unicode_category(cp);
    return c == UC_Zs || c == UC_Zl || c == UC_Zp;
}

int unicode_combining_class(uint32_t cp) {
    if (cp < 0x300 || cp > 0x10FFFF) return 0;
    return unicode_ccc_run_value[run_index(unicode_ccc_run_start, COUNT(unicode_ccc_run_start),
                                           cp)];
}

const char *unicode_version(void) { return UNICODE_TABLES_VERSION; }

// ----------------------------------------------------------------------------------------------
// NFC

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21,
       TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

// Full canonical decomposition of cp into out (at most 4 code points in Unicode 14; 18 is the
// standard's stated bound); returns the count.
static int decompose(uint32_t cp, uint32_t out[18]) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        out[0] = LBASE + s / NCOUNT;
        out[1] = VBASE + (s % NCOUNT) / TCOUNT;
        if (s % TCOUNT == 0) return 2;
        out[2] = TBASE + s % TCOUNT;
        return 3;
    }
    if (cp >= 0xC0 && cp <= 0x10FFFF) {
        size_t lo = 0, hi = COUNT(unicode_decomp_index);
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (unicode_decomp_index[mid][0] < cp) lo = mid + 1;
            else hi = mid;
        }
        if (lo < COUNT(unicode_decomp_index) && unicode_decomp_index[lo][0] == cp) {
            uint32_t off = unicode_decomp_index[lo][1], n = unicode_decomp_index[lo][2];
            for (uint32_t i = 0; i < n && i < 18; i++) out[i] = unicode_decomp_pool[off + i];
            return (int)(n < 18 ? n : 18);
        }
    }
    out[0] = cp;
    return 1;
}

// The primary composite of (a, b), or 0 when there is none.
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    if ((a | b) & UNICODE_INVALID_FLAG) return 0;
    size_t lo = 0, hi = COUNT(unicode_compose_pairs);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *p = unicode_compose_pairs[mid];
        if (p[0] < a || (p[0] == a && p[1] < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < COUNT(unicode_compose_pairs) && unicode_compose_pairs[lo][0] == a &&
        unicode_compose_pairs[lo][1] == b)
        return unicode_compose_pairs[lo][2];
    return 0;
}

int unicode_quick_nfc(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

char *unicode_nfc(const char *s, size_t len, size_t *out_len) {
    // Decomposition can grow the code point count (at most 18x by the standard's bound, far less
    // in practice); grow on demand.
    size_t cap = len + 16, n = 0;
    uint32_t *cps = malloc(cap * sizeof *cps);
    if (!cps) return NULL;
    for (size_t i = 0; i < len;) {
        uint32_t cp, d[18];
        i += (size_t)utf8_next(s + i, len - i, &cp);
        int k = decompose(cp, d);
        if (n + (size_t)k > cap) {
            cap = cap * 2 + (size_t)k;
            uint32_t *grown = realloc(cps, cap * sizeof *cps);
            if (!grown) {
                free(cps);
                return NULL;
            }
            cps = grown;
        }
        // Canonical ordering: insert each non-starter after the code points of higher class
        // (a stable insertion sort of every run of non-starters).
        for (int j = 0; j < k; j++) {
            int cc = unicode_combining_class(d[j]);
            size_t at = n;
            if (cc != 0)
                while (at > 0) {
                    int prev = unicode_combining_class(cps[at - 1]);
                    if (prev <= cc || prev == 0) break;
                    at--;
                }
            memmove(cps + at + 1, cps + at, (n - at) * sizeof *cps);
            cps[at] = d[j];
            n++;
        }
    }
    // Canonical composition (UAX #15, D117): a character combines with the last starter when
    // nothing between them blocks it (no character of equal or higher class in between).
    size_t out = 0;
    long starter = -1;
    int last_class = -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i];
        int cc = unicode_combining_class(c);
        if (starter >= 0 && (last_class < cc || last_class == 0)) {
            uint32_t comp = compose(cps[starter], c);
            if (comp) {
                cps[starter] = comp;
                continue;
            }
        }
        if (cc == 0) {
            starter = (long)out;
            last_class = 0;
        } else {
            last_class = cc;
        }
        cps[out++] = c;
    }
    char *res = malloc(out * 4 + 1);
    if (res) {
        size_t m = 0;
        for (size_t i = 0; i < out; i++) m += (size_t)utf8_put(cps[i], res + m);
        res[m] = '\0';
        if (out_len) *out_len = m;
    }
    free(cps);
    return res;
}
