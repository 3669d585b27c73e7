// libFuzzer target: arbitrary bytes as "tokenizer.json, a NUL byte, text": the JSON goes through
// tokenizer_read_hf_json_memory, and an accepted tokenizer encodes the text (every add_bos /
// add_prefix_space combination) and decodes the ids back.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    char *text = malloc(size - json_len + 1); // the tail, NUL-terminated (may be empty)
    if (!text) return 0;
    size_t tlen = nul ? size - json_len - 1 : 0;
    if (tlen) memcpy(text, nul + 1, tlen);
    text[tlen] = '\0';
    tlen = strlen(text); // the text stops at a further NUL, as a C string does
    Err e = {{0}};
    Tokenizer t;
    if (tokenizer_read_hf_json_memory(&t, (const char *)data, json_len, "fuzz", &e) != 0) {
        if (e.msg[0] == '\0') abort(); // every rejection says why
        free(text);
        return 0;
    }
    int32_t *ids = malloc((tlen + 3) * sizeof *ids);
    char buf[1 << 17];
    for (int mode = 0; ids && mode < 4; mode++) {
        int n = -1;
        if (tokenizer_encode(&t, text, mode & 1, mode >> 1, ids, &n, &e) != 0) {
            if (e.msg[0] == '\0') abort();
            continue;
        }
        if (n < 0 || (size_t)n > tlen + 3) abort(); // the documented bound of ids
        int prev = -1;
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= t.vocab_size) abort();
            size_t len;
            if (!tokenizer_decode_piece(&t, prev, ids[i], buf, sizeof buf, &len)) abort();
            prev = ids[i];
        }
    }
    char hex[65];
    tokenizer_digest(&t, hex);
    free(ids);
    free(text);
    tokenizer_free(&t);
    return 0;
}
