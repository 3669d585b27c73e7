// Pre-tokenisation (the regex splits of HF tokenizers and llama.cpp), hand-coded per pattern;
// internal to io/tokenizer*.c.
#ifndef LETHE_TOKENIZER_SPLIT_H
#define LETHE_TOKENIZER_SPLIT_H

#include <stddef.h>

#include "tokenizer.h"

// Called for each pre-token s[start..end) in order; a non-zero return stops the split and is
// returned by tokenizer_split.
typedef int (*TokenizerSplitEmit)(void *ctx, size_t start, size_t end);

// Splits s[0..len) the way the pattern of `pre` does (every byte lands in exactly one
// pre-token). Returns 0, the callback's non-zero value, or -1 when out of memory.
int tokenizer_split(TokenizerPreTokenizer pre, const char *s, size_t len, TokenizerSplitEmit emit,
                    void *ctx);

// The exact regex strings of the patterns, as tokenizer.json's Split pre-tokenizer spells them.
extern const char TOKENIZER_REGEX_GPT2[];
extern const char TOKENIZER_REGEX_LLAMA3[];
extern const char TOKENIZER_REGEX_QWEN2[];

#endif
