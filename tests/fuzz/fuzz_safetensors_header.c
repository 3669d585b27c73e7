// libFuzzer target: arbitrary bytes as a whole safetensors file through the same validation as
// safetensors_open (safetensors_open_memory); whatever is accepted is then fully read.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Err e = {{0}};
    SafetensorsFile *f;
    if (safetensors_open_memory(&f, data, size, "fuzz", &e) != 0) {
        // Every rejection must say something: an empty message would be a bug.
        if (e.msg[0] == '\0') abort();
        return 0;
    }
    for (size_t m = 0; m < safetensors_metadata_count(f); m++)
        if (safetensors_metadata_get(f, safetensors_metadata_key(f, m)) == NULL) abort();
    for (size_t i = 0; i < safetensors_count(f); i++) {
        const SafetensorsTensor *t = safetensors_tensor(f, i);
        // Validation promises the tensor's bytes lie inside the input, so these sizes are bounded.
        if (t->offset > size || t->nbytes > size - t->offset) abort();
        if (safetensors_find(f, t->name) < 0) abort();
        uint8_t *raw = malloc(t->nbytes + 1);
        float *val = malloc(t->numel * sizeof(float) + 1);
        if (raw && safetensors_read_raw(f, i, raw, &e) != 0) abort();
        if (val && (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) &&
            safetensors_read_f32(f, i, val, &e) != 0)
            abort();
        free(raw);
        free(val);
    }
    safetensors_close(f);
    return 0;
}
