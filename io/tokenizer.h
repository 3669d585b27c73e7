// Tokenizers of the checkpoints users bring, encoding and decoding token for token like their
// reference implementations: llama2.c's tokenizer.bin and GGUF "llama" (SentencePiece scores
// with byte fallback), Hugging Face tokenizer.json BPE (byte-level, or SentencePiece-style with
// byte_fallback) and GGUF "gpt2" (byte-level BPE). No regex engine and no Python at run time:
// the pre-tokenizer patterns real files use are recognised and hand-coded (docs/tokenizers.md).
#ifndef LETHE_TOKENIZER_H
#define LETHE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "tokenizer_spec.h"

typedef enum {
    TOKENIZER_LLAMA2C = 0,   // llama2.c tokenizer.bin: score merges, pieces hold " " for "▁"
    TOKENIZER_SPM_SCORES,    // GGUF "llama": score merges, pieces hold "▁" (llama.cpp SPM)
    TOKENIZER_BPE_BYTELEVEL, // merges by rank over the bytes->unicode alphabet (GPT-2 family)
    TOKENIZER_BPE_SPM,       // merges by rank over text with "▁", byte_fallback (HF Llama 2)
} TokenizerKind;

typedef enum {
    TOKENIZER_NORM_NONE = 0,
    TOKENIZER_NORM_NFC,         // {"type": "NFC"} (Qwen2)
    TOKENIZER_NORM_SPM_PREPEND, // Sequence[Prepend("▁"), Replace(" ", "▁")] (HF Llama 2 legacy)
} TokenizerNormalizer;

typedef enum {
    TOKENIZER_PRE_NONE = 0,    // the whole (normalised) text is one word
    TOKENIZER_PRE_GPT2,        // ByteLevel(use_regex) / Split(GPT-2 pattern)
    TOKENIZER_PRE_LLAMA3,      // Split(Llama 3 pattern: \p{N}{1,3}, punctuation joins letters)
    TOKENIZER_PRE_QWEN2,       // Split(Qwen2 pattern: the Llama 3 one with single \p{N})
    TOKENIZER_PRE_DIGITS_GPT2, // Digits(individual_digits) then the GPT-2 pattern (SmolLM)
    TOKENIZER_PRE_METASPACE,   // Metaspace(replacement "▁", split false): " " -> "▁", prefix
} TokenizerPreTokenizer;

typedef enum { TOKENIZER_PREPEND_ALWAYS = 0, TOKENIZER_PREPEND_FIRST, TOKENIZER_PREPEND_NEVER }
    TokenizerPrependScheme;

// Decoder steps, applied to each token's piece (HF applies them to the token list; the pieces
// of real files give the same bytes either way, see docs/tokenizers.md).
enum {
    TOKENIZER_DEC_BYTELEVEL = 1,     // ByteLevel: unicode alphabet -> bytes
    TOKENIZER_DEC_BYTE_FALLBACK = 2, // ByteFallback: "<0xXX>" -> that byte
    TOKENIZER_DEC_SPACE = 4,         // Replace("▁", " ") / Metaspace
    TOKENIZER_DEC_STRIP = 8,         // Strip(" ", 1, 0) / Metaspace prefix: the first piece of a
                                     // text (prev < 0 or prev == bos_id) loses one leading space
};

// Per-token flags (token_flags[id]).
enum {
    TOKENIZER_TOKEN_ADDED = 1,      // in added_tokens / GGUF control or user-defined: matched in
                                    // the raw text before normalisation and never split
    TOKENIZER_TOKEN_SPECIAL = 2,    // special (skipped by decode(skip_special_tokens=True))
    TOKENIZER_TOKEN_NORMALIZED = 4, // matched in normalised text (only without a normaliser)
    TOKENIZER_TOKEN_LSTRIP = 8,     // swallows the whitespace on its left
    TOKENIZER_TOKEN_RSTRIP = 16,    // swallows the whitespace on its right
    TOKENIZER_TOKEN_NOT_IN_MODEL = 32, // an added token absent from the model's vocabulary
};

// Everything besides the vocabulary that changes how text is encoded or decoded.
typedef struct {
    TokenizerKind kind;
    TokenizerNormalizer normalizer;
    TokenizerPreTokenizer pre;
    TokenizerPrependScheme prepend_scheme; // Metaspace only
    int byte_level_prefix_space; // ByteLevel add_prefix_space: " " before text not starting so
    int ignore_merges;           // a word that is a whole token is not merged (Llama 3)
    int byte_fallback;           // unknown characters become <0xXX> tokens
    int fuse_unk;                // consecutive unknown characters become one unk
    int unk_id;                  // -1: none
    int add_bos, add_eos;        // what the post-processor adds (tokenizer_encode add_bos = 1)
    int add_prefix_space;        // the SentencePiece dummy prefix (SPM kinds; llama2.c: 1)
    int decode;                  // TOKENIZER_DEC_* flags
} TokenizerOptions;

typedef struct TokenizerIndex TokenizerIndex; // lookup tables built at load (tokenizer.c)

typedef struct {
    int vocab_size;
    int max_token_length;
    char **pieces;      // vocab_size NUL-terminated byte strings as the file spells them
                        // (llama2.c: " " for "▁"; byte-level: the unicode alphabet)
    int *piece_len;     // byte length of each piece (pieces may not contain NUL, but be safe)
    float *scores;      // merge score of each piece (0 for rank-merged kinds)
    uint8_t *token_flags; // TOKENIZER_TOKEN_* per token
    int n_merges;       // rank-merged kinds: merges[2r], merges[2r+1] = the ids of rank r's pair
    int32_t *merges;
    int bos_id, eos_id; // -1 when absent
    int byte_fallback_base; // id of <0x00> when <0x00>..<0xFF> are consecutive, else -1
    TokenizerOptions opt;
    TokenizerIndex *index;
} Tokenizer;

// Reads a llama2.c tokenizer.bin (int32 max_token_length, then per token: float32 score,
// int32 length, bytes). vocab_size must be given (it is not stored in the file).
int tokenizer_read_llama2c(Tokenizer *t, const char *path, int vocab_size, Err *e);
// Builds a llama2.c tokenizer from arrays already in memory (copies them).
int tokenizer_init(Tokenizer *t, int vocab_size, int max_token_length, const char *const *pieces,
                   const int *piece_len, const float *scores, int bos_id, int eos_id, Err *e);
// Builds any kind (copies everything). scores and token_flags may be NULL (zeros); merges holds
// n_merges id pairs in rank order. Used by the readers below and the checkpoint reader.
int tokenizer_build(Tokenizer *t, const TokenizerOptions *opt, int vocab_size,
                    const char *const *pieces, const int *piece_len, const float *scores,
                    const uint8_t *token_flags, int n_merges, const int32_t *merges, int bos_id,
                    int eos_id, Err *e);
// Hugging Face tokenizer.json (model BPE). Anything it cannot reproduce exactly is an error
// naming the file, the field and what is supported.
int tokenizer_read_hf_json(Tokenizer *t, const char *path, Err *e);
// The same from text in memory (need not be NUL-terminated); name is used in messages.
int tokenizer_read_hf_json_memory(Tokenizer *t, const char *text, size_t len, const char *name,
                                  Err *e);
// Writes tokenizer.json (temporary name, renamed into place) that HF `tokenizers` loads and
// encodes identically. Score kinds become BPE with merges derived from the scores, the way
// transformers' SentencePiece converter derives them.
int tokenizer_write_hf_json(const Tokenizer *t, const char *path, Err *e);
// From GGUF metadata (io/tokenizer_spec.h): model "llama" or "gpt2" with tokenizer.ggml.pre.
int tokenizer_from_spec(Tokenizer *t, const TokenizerSpec *spec, Err *e);
void tokenizer_free(Tokenizer *t);

// "llama2c-bpe", "gguf-spm-scores", "hf-bpe-bytelevel", "hf-bpe-sentencepiece".
const char *tokenizer_kind_name(const Tokenizer *t);
// Names of the enum values as the checkpoint stores them; the parse functions return -1 for an
// unknown name.
const char *tokenizer_normalizer_name(TokenizerNormalizer n);
const char *tokenizer_pre_name(TokenizerPreTokenizer p);
int tokenizer_kind_parse(const char *name);
int tokenizer_normalizer_parse(const char *name);
int tokenizer_pre_parse(const char *name);

// Encodes UTF-8 text (invalid bytes are kept: byte-level and byte-fallback kinds encode them as
// their byte, so decoding gives them back). ids must hold at least strlen(text) + 3 entries;
// *n_out gets the count.
// add_bos = 1: add the special tokens the tokenizer's own post-processor adds, as HF
//   encode(add_special_tokens=True) does (llama2.c: always BOS; GGUF: add_bos_token and
//   add_eos_token). add_bos = 0: none (add_special_tokens=False).
// add_prefix_space = 0: no SentencePiece dummy prefix at the start of the text (for text that
//   continues earlier text); 1: as the tokenizer does (llama2.c: a " " token for non-empty text;
//   HF Prepend/Metaspace "▁"; GGUF add_space_prefix). Byte-level kinds with ByteLevel
//   add_prefix_space honour it the same way; others ignore it.
// Added/special token strings inside the text are matched and become their ids, as in HF.
int tokenizer_encode(const Tokenizer *t, const char *text, int add_bos, int add_prefix_space,
                     int32_t *ids, int *n_out, Err *e);
// The bytes of one token as the tokenizer's decoder gives them after `prev` (-1: the start of
// the text): byte-level pieces decode to their bytes, "<0xXX>" pieces to that byte, "▁" to " ";
// a piece after BOS (and, for decoders that strip, at the start) loses one leading space.
// Concatenating pieces gives the text (partial UTF-8 sequences join up). Returns a pointer valid
// until the next call with the same buf (buf must hold >= 2 bytes + max piece length), or NULL
// for an id out of range or a buffer too small.
const char *tokenizer_decode_piece(const Tokenizer *t, int prev, int token, char *buf,
                                   size_t buflen, size_t *len_out);
// SHA-256 hex digest of everything that changes encoding: names the tokenizer in token datasets
// so data and model cannot be mixed up silently. Unchanged from v1 for llama2.c tokenizers.
void tokenizer_digest(const Tokenizer *t, char hex[65]);

#endif
