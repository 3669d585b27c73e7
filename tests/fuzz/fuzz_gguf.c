// libFuzzer target: arbitrary bytes as a whole GGUF file through the same validation as gguf_open
// (gguf_open_memory); whatever is accepted is then fully read: every metadata value, every
// tensor raw and dequantised, and the llama import and tokenizer spec on top.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// A rejection must say something, and name the file.
static void check_message(const Err *e) {
    if (strncmp(e->msg, "fuzz", 4) != 0) abort();
}

static void read_metadata(const GgufFile *f) {
    Err e = {{0}};
    for (size_t i = 0; i < gguf_kv_count(f); i++) {
        const char *key = gguf_kv_key(f, i);
        if (gguf_find_key(f, key) != (long)i) abort(); // keys are unique and findable
        uint32_t t = gguf_kv_type(f, i);
        double v;
        const char *s;
        size_t len;
        if (t == GGUF_STRING) {
            if (gguf_get_str(f, key, &s, &len, &e) != 0 || strlen(s) > len) abort();
        } else if (t == GGUF_ARRAY) {
            uint64_t n = gguf_kv_len(f, i), m = 0;
            if (gguf_kv_elem_type(f, i) == GGUF_STRING) {
                const char *const *strs;
                const int *lens;
                if (gguf_get_str_array(f, key, &strs, &lens, &m, &e) != 0 || m != n) abort();
                for (uint64_t j = 0; j < n; j++)
                    if (strlen(strs[j]) > (size_t)lens[j]) abort();
            } else {
                for (uint64_t j = 0; j < n; j++)
                    if (gguf_kv_array_number(f, i, j, &v) != 0) abort();
            }
        } else if (gguf_kv_number(f, i, &v) != 0) {
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Err e = {{0}};
    GgufFile *f;
    if (gguf_open_memory(&f, data, size, "fuzz", &e) != 0) {
        check_message(&e);
        return 0;
    }
    read_metadata(f);
    for (size_t i = 0; i < gguf_tensor_count(f); i++) {
        const GgufTensor *t = gguf_tensor(f, i);
        // Validation promises the bytes lie inside the input, so these sizes are bounded.
        if (t->offset > size || t->nbytes > size - t->offset) abort();
        if (gguf_find_tensor(f, t->name) != (long)i) abort();
        uint8_t *raw = malloc(t->nbytes + 1);
        float *val = malloc(t->numel * sizeof(float) + 1);
        if (raw && gguf_read_tensor_raw(f, i, raw, &e) != 0) abort();
        if (val && ggml_can_dequantize(t->type) && gguf_read_tensor_f32(f, i, val, &e) != 0)
            abort();
        free(raw);
        free(val);
    }
    GgufImport imp;
    if (gguf_import_plan(f, &imp, &e) == 0) {
        float *buf = malloc(imp.max_numel * sizeof(float) + 1);
        for (int k = 0; buf && k < imp.n_tensors; k++)
            if (gguf_import_read(f, &imp, k, buf, &e) != 0) abort();
        free(buf);
        gguf_import_free(&imp);
    } else {
        check_message(&e);
    }
    TokenizerSpec spec;
    if (gguf_tokenizer_spec(f, &spec, &e) == 0) {
        for (int i = 0; i < spec.n_tokens; i++)
            if (spec.token_len[i] < 0 || strlen(spec.tokens[i]) > (size_t)spec.token_len[i])
                abort();
    } else {
        check_message(&e);
    }
    gguf_close(f);
    return 0;
}
