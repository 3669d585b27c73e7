// A tokenizer as plain arrays, the way GGUF metadata (tokenizer.ggml.*) holds it: the hand-off
// between the GGUF reader (io/gguf.c fills it, pointing into its own memory) and the tokenizer
// (tokenizer_from_spec copies what it needs), so neither depends on the other.
#ifndef LETHE_TOKENIZER_SPEC_H
#define LETHE_TOKENIZER_SPEC_H

#include <stdint.h>

typedef struct {
    const char *source;         // file name, for messages
    const char *model;          // tokenizer.ggml.model: "llama" (SentencePiece scores) or "gpt2"
    const char *pre;            // tokenizer.ggml.pre, NULL when absent
    int n_tokens;
    const char *const *tokens;  // n_tokens byte strings (not NUL-terminated: see token_len)
    const int *token_len;
    const float *scores;        // n_tokens scores, NULL when absent
    const int32_t *token_type;  // n_tokens GGUF token types (1 normal, 2 unknown, 3 control,
                                // 4 user defined, 5 unused, 6 byte), NULL when absent
    int n_merges;               // byte-level BPE merges "a b", in rank order; 0 when absent
    const char *const *merges;
    const int *merge_len;
    int bos_id, eos_id, unk_id, pad_id;     // -1 when absent
    int add_bos, add_eos, add_space_prefix; // 0/1, or -1 when absent (the model kind's default)
} TokenizerSpec;

#endif
