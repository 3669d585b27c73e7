// Unicode for tokenizers and text matching: UTF-8 decoding with a defined treatment of invalid
// bytes, general categories (and the \p{L}, \p{N}, \s classes of Oniguruma, the regex engine of
// Hugging Face tokenizers), and NFC normalisation. Tables: io/unicode_tables.h (generated).
#ifndef LETHE_UNICODE_H
#define LETHE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

// Invalid UTF-8 is never an error here: every byte that does not start a well-formed sequence
// (overlong forms, surrogates, values above U+10FFFF, stray continuation bytes, truncated
// sequences) is one unit of its own, reported as UNICODE_INVALID_BYTE(b). Such a unit is in no
// category (not a letter, number or space) and NFC leaves it in place, so text round-trips byte
// for byte through splitting and normalisation.
#define UNICODE_INVALID_FLAG 0x80000000u
#define UNICODE_INVALID_BYTE(b) (UNICODE_INVALID_FLAG | (uint32_t)(uint8_t)(b))

// Decodes the unit at s[0..len): returns its length in bytes (1..4; 0 only when len == 0) and
// stores the code point, or UNICODE_INVALID_BYTE(s[0]) with length 1.
int utf8_next(const char *s, size_t len, uint32_t *cp);
// Encodes cp (or an invalid-byte unit, as its byte) into out[0..4); returns the length.
int utf8_put(uint32_t cp, char *out);

// General categories, in the order of io/unicode_tables.h (Cn = unassigned, and invalid units).
typedef enum {
    UC_Cn, UC_Lu, UC_Ll, UC_Lt, UC_Lm, UC_Lo, UC_Mn, UC_Mc, UC_Me, UC_Nd, UC_Nl, UC_No, UC_Pc,
    UC_Pd, UC_Ps, UC_Pe, UC_Pi, UC_Pf, UC_Po, UC_Sm, UC_Sc, UC_Sk, UC_So, UC_Zs, UC_Zl, UC_Zp,
    UC_Cc, UC_Cf, UC_Cs, UC_Co
} UnicodeCategory;

UnicodeCategory unicode_category(uint32_t cp);
int unicode_is_letter(uint32_t cp); // \p{L}: Lu Ll Lt Lm Lo
int unicode_is_number(uint32_t cp); // \p{N}: Nd Nl No (= Rust's char::is_numeric)
// Oniguruma's \s for Unicode text: U+0009..U+000D, U+0085, and categories Zs, Zl, Zp (this is
// also exactly the White_Space property and Rust's char::is_whitespace).
int unicode_is_space(uint32_t cp);
int unicode_combining_class(uint32_t cp); // canonical combining class, 0 for starters
const char *unicode_version(void);        // of the tables, e.g. "14.0.0"

// NFC of s[0..len) into a malloc'd NUL-terminated string (*out_len gets its length); invalid
// units are copied through and act as starters that compose with nothing. NULL on OOM.
char *unicode_nfc(const char *s, size_t len, size_t *out_len);
// 1 when s is already NFC for certain (a fast check: all ASCII, or no code point that NFC could
// change); 0 when unsure.
int unicode_quick_nfc(const char *s, size_t len);

#endif
