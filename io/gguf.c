// GGUF reader: every header field is bounds- and overflow-checked against the file before it is
// used, metadata is copied out as it is parsed, tensor data is read on demand with pread (or
// from the caller's memory); see gguf.h for the contract.
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "textfile.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian fields with memcpy; port the loads for a big-endian host"
#endif

#define GGUF_MAGIC "GGUF"
#define WINDOW_BYTES (1u << 20)    // pread window of the header parser
#define CHUNK_BYTES (4u << 20)     // quantised bytes dequantised per step of a tensor read
// The fewest bytes one key/value pair or one tensor info can take: key length (8), a 1-byte key,
// type (4), a 1-byte value; name length (8), a 1-byte name, n_dims (4), one dim (8), type (4),
// offset (8). Counts above remaining bytes / these are rejected before anything is allocated.
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_INFO_BYTES 33u

static const struct {
    const char *name;
    uint32_t size; // bytes of a scalar; 0 for STRING and ARRAY
} VALUE_TYPES[GGUF_N_VALUE_TYPES] = {
    [GGUF_UINT8] = {"UINT8", 1},     [GGUF_INT8] = {"INT8", 1},
    [GGUF_UINT16] = {"UINT16", 2},   [GGUF_INT16] = {"INT16", 2},
    [GGUF_UINT32] = {"UINT32", 4},   [GGUF_INT32] = {"INT32", 4},
    [GGUF_FLOAT32] = {"FLOAT32", 4}, [GGUF_BOOL] = {"BOOL", 1},
    [GGUF_STRING] = {"STRING", 0},   [GGUF_ARRAY] = {"ARRAY", 0},
    [GGUF_UINT64] = {"UINT64", 8},   [GGUF_INT64] = {"INT64", 8},
    [GGUF_FLOAT64] = {"FLOAT64", 8},
};

const char *gguf_value_type_name(uint32_t t) {
    return t < GGUF_N_VALUE_TYPES ? VALUE_TYPES[t].name : "?";
}

typedef struct {
    char *key;
    uint32_t type, elem_type; // elem_type: of an array; == type for a scalar
    uint64_t n;               // array length; 1 for a scalar
    uint8_t scalar[8];        // a numeric scalar's bytes, little-endian
    char *str;                // STRING scalar (NUL-terminated copy)
    int str_len;
    void *numbers;            // numeric array: n elements as stored, in aligned memory
    char *blob;               // string array: the strings, each NUL-terminated
    char **strs;              // string array: n pointers into blob
    int *lens;
} Kv;

struct GgufFile {
    char *path;
    int fd;                   // -1 for bytes in memory
    const uint8_t *mem;
    uint64_t size;
    uint32_t version, alignment;
    uint64_t data_offset;
    Kv *kvs;
    size_t n_kv;
    size_t *kv_by_key;        // kv indices sorted by key
    GgufTensor *tensors;
    char (*names)[GGUF_MAX_NAME];
    size_t n_tensors;
    size_t *tensor_by_name;   // tensor indices sorted by name
};

// ---- raw reads -------------------------------------------------------------------------------

static int read_at(const GgufFile *f, uint64_t off, void *dst, size_t len, const char *what,
                   Err *e) {
    if (off > f->size || len > f->size - off)
        return err_set(e, "%s: %s: %zu bytes at offset %llu lie past the end of the file (%llu "
                          "bytes); truncated or corrupt", f->path, what, len,
                       (unsigned long long)off, (unsigned long long)f->size);
    if (f->fd < 0) {
        memcpy(dst, f->mem + off, len);
        return 0;
    }
    return file_pread_exact(f->fd, f->path, what, off, dst, len, e);
}

// The header parser's sequential reader: small fields come from a window refilled with pread.
typedef struct {
    GgufFile *f;
    uint64_t pos;
    uint8_t *win;
    uint64_t win_off;
    size_t win_len;
} Cursor;

static uint64_t remaining(const Cursor *c) { return c->f->size - c->pos; }

// n bytes at the cursor; `what` names them in the error.
static int take(Cursor *c, void *dst, size_t n, const char *what, Err *e) {
    GgufFile *f = c->f;
    if (n > remaining(c))
        return err_set(e, "%s: %s: needs %zu bytes at offset %llu but only %llu remain; "
                          "truncated or corrupt", f->path, what, n, (unsigned long long)c->pos,
                       (unsigned long long)remaining(c));
    if (f->fd < 0) {
        memcpy(dst, f->mem + c->pos, n);
    } else if (n >= WINDOW_BYTES / 2) {
        if (read_at(f, c->pos, dst, n, what, e)) return -1;
    } else {
        if (c->pos < c->win_off || c->pos + n > c->win_off + c->win_len) {
            uint64_t want = remaining(c) < WINDOW_BYTES ? remaining(c) : WINDOW_BYTES;
            if (read_at(f, c->pos, c->win, (size_t)want, what, e)) return -1;
            c->win_off = c->pos;
            c->win_len = (size_t)want;
        }
        memcpy(dst, c->win + (c->pos - c->win_off), n);
    }
    c->pos += n;
    return 0;
}

static int take_u32(Cursor *c, uint32_t *v, const char *what, Err *e) {
    return take(c, v, 4, what, e);
}
static int take_u64(Cursor *c, uint64_t *v, const char *what, Err *e) {
    return take(c, v, 8, what, e);
}

// A GGUF string: uint64 length, then the bytes (no terminator). Returns a malloc'd
// NUL-terminated copy; `max` bounds the length besides the remaining bytes.
static int take_string(Cursor *c, uint64_t max, char **out, uint64_t *len, const char *what,
                       Err *e) {
    *out = NULL;
    char w[320];
    snprintf(w, sizeof w, "%s length", what);
    if (take_u64(c, len, w, e)) return -1;
    if (*len > max)
        return err_set(e, "%s: %s: length %llu exceeds the limit of %llu bytes", c->f->path,
                       what, (unsigned long long)*len, (unsigned long long)max);
    if (*len > remaining(c))
        return err_set(e, "%s: %s: length %llu at offset %llu runs past the end of the file "
                          "(%llu bytes remain); truncated or corrupt", c->f->path, what,
                       (unsigned long long)*len, (unsigned long long)(c->pos - 8),
                       (unsigned long long)remaining(c));
    if (!(*out = malloc((size_t)*len + 1)))
        return err_set(e, "%s: %s: out of memory for %llu bytes", c->f->path, what,
                       (unsigned long long)*len);
    if (take(c, *out, (size_t)*len, what, e)) {
        free(*out);
        *out = NULL;
        return -1;
    }
    (*out)[*len] = 0;
    return 0;
}

// ---- metadata --------------------------------------------------------------------------------

static void kv_free(Kv *kv) {
    free(kv->key);
    free(kv->str);
    free(kv->numbers);
    free(kv->blob);
    free(kv->strs);
    free(kv->lens);
}

// An array of n strings: lengths are checked one by one against the bytes left, so a hostile
// count or length fails before it is allocated for (n is already bounded by remaining / 8).
static int take_string_array(Cursor *c, Kv *kv, const char *what, Err *e) {
    uint64_t n = kv->n, cap = 4096, used = 0;
    uint64_t *offs = malloc((size_t)(n ? n : 1) * sizeof *offs);
    kv->lens = malloc((size_t)(n ? n : 1) * sizeof *kv->lens);
    kv->strs = malloc((size_t)(n ? n : 1) * sizeof *kv->strs);
    kv->blob = malloc(cap);
    if (!offs || !kv->lens || !kv->strs || !kv->blob) {
        free(offs);
        return err_set(e, "%s: %s: out of memory for %llu strings", c->f->path, what,
                       (unsigned long long)n);
    }
    for (uint64_t j = 0; j < n; j++) {
        uint64_t len;
        char w[320];
        snprintf(w, sizeof w, "%s element %llu", what, (unsigned long long)j);
        if (take_u64(c, &len, w, e)) goto fail;
        if (len > remaining(c) || len > INT32_MAX) {
            err_set(e, "%s: %s: string length %llu runs past the end of the file (%llu bytes "
                       "remain) or exceeds 2^31 - 1; truncated or corrupt", c->f->path, w,
                    (unsigned long long)len, (unsigned long long)remaining(c));
            goto fail;
        }
        if (used + len + 1 > cap) {
            while (used + len + 1 > cap) cap *= 2;
            char *nb = realloc(kv->blob, cap);
            if (!nb) {
                err_set(e, "%s: %s: out of memory", c->f->path, w);
                goto fail;
            }
            kv->blob = nb;
        }
        if (take(c, kv->blob + used, (size_t)len, w, e)) goto fail;
        kv->blob[used + len] = 0;
        offs[j] = used;
        kv->lens[j] = (int)len;
        used += len + 1;
    }
    for (uint64_t j = 0; j < n; j++) kv->strs[j] = kv->blob + offs[j];
    free(offs);
    return 0;
fail:
    free(offs);
    return -1;
}

static int take_value(Cursor *c, Kv *kv, const char *what, Err *e) {
    GgufFile *f = c->f;
    if (kv->type >= GGUF_N_VALUE_TYPES)
        return err_set(e, "%s: %s: unknown value type %u (known: 0..%d)", f->path, what,
                       kv->type, GGUF_N_VALUE_TYPES - 1);
    if (kv->type == GGUF_STRING) {
        uint64_t len;
        if (take_string(c, INT32_MAX, &kv->str, &len, what, e)) return -1;
        kv->str_len = (int)len;
        return 0;
    }
    if (kv->type != GGUF_ARRAY) return take(c, kv->scalar, VALUE_TYPES[kv->type].size, what, e);

    char w[320];
    snprintf(w, sizeof w, "%s array element type", what);
    if (take_u32(c, &kv->elem_type, w, e)) return -1;
    if (kv->elem_type >= GGUF_N_VALUE_TYPES)
        return err_set(e, "%s: %s: array of unknown value type %u (known: 0..%d)", f->path, what,
                       kv->elem_type, GGUF_N_VALUE_TYPES - 1);
    if (kv->elem_type == GGUF_ARRAY)
        return err_set(e, "%s: %s: array of arrays (nesting depth 2 or more) is not supported; "
                          "ggml's reader rejects them too", f->path, what);
    snprintf(w, sizeof w, "%s array length", what);
    if (take_u64(c, &kv->n, w, e)) return -1;
    // Each element takes at least its scalar size, or 8 bytes (a length) for a string.
    uint64_t min_elem = kv->elem_type == GGUF_STRING ? 8 : VALUE_TYPES[kv->elem_type].size;
    if (kv->n > remaining(c) / min_elem)
        return err_set(e, "%s: %s: array of %llu %s elements needs at least %llu bytes but only "
                          "%llu remain; truncated or corrupt", f->path, what,
                       (unsigned long long)kv->n, VALUE_TYPES[kv->elem_type].name,
                       (unsigned long long)(kv->n > UINT64_MAX / min_elem ? UINT64_MAX
                                                                         : kv->n * min_elem),
                       (unsigned long long)remaining(c));
    if (kv->elem_type == GGUF_STRING) return take_string_array(c, kv, what, e);
    size_t bytes = (size_t)(kv->n * min_elem);
    if (!(kv->numbers = malloc(bytes ? bytes : 1)))
        return err_set(e, "%s: %s: out of memory for %zu bytes", f->path, what, bytes);
    return take(c, kv->numbers, bytes, what, e);
}

static int take_kv(Cursor *c, size_t index, Kv *kv, Err *e) {
    char what[200];
    snprintf(what, sizeof what, "key/value %zu key", index);
    uint64_t len;
    if (take_string(c, GGUF_MAX_KEY, &kv->key, &len, what, e)) return -1;
    if (len == 0 || strlen(kv->key) != len)
        return err_set(e, "%s: key/value %zu: the key is %s", c->f->path, index,
                       len == 0 ? "empty" : "cut by a NUL byte");
    snprintf(what, sizeof what, "key '%.120s'", kv->key);
    char w[240];
    snprintf(w, sizeof w, "%s value type", what);
    if (take_u32(c, &kv->type, w, e)) return -1;
    kv->elem_type = kv->type;
    kv->n = 1;
    return take_value(c, kv, what, e);
}

// ---- sorting and lookups ----------------------------------------------------------------------

static _Thread_local const GgufFile *g_sort_file; // qsort context (no qsort_r in C11)

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp(g_sort_file->kvs[*(const size_t *)a].key,
                  g_sort_file->kvs[*(const size_t *)b].key);
}
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(g_sort_file->tensors[*(const size_t *)a].name,
                  g_sort_file->tensors[*(const size_t *)b].name);
}
static int cmp_tensor_offset(const void *a, const void *b) {
    const GgufTensor *x = &g_sort_file->tensors[*(const size_t *)a];
    const GgufTensor *y = &g_sort_file->tensors[*(const size_t *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

long gguf_find_key(const GgufFile *f, const char *key) {
    size_t lo = 0, hi = f->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->kvs[f->kv_by_key[mid]].key, key);
        if (c == 0) return (long)f->kv_by_key[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

long gguf_find_tensor(const GgufFile *f, const char *name) {
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->tensor_by_name[mid]].name, name);
        if (c == 0) return (long)f->tensor_by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

// ---- the header --------------------------------------------------------------------------------

static int parse_alignment(GgufFile *f, Err *e) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    long k = gguf_find_key(f, "general.alignment");
    if (k < 0) return 0;
    const Kv *kv = &f->kvs[k];
    if (kv->type != GGUF_UINT32)
        return err_set(e, "%s: key 'general.alignment' has type %s, expected UINT32", f->path,
                       gguf_value_type_name(kv->type));
    uint32_t a;
    memcpy(&a, kv->scalar, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return err_set(e, "%s: key 'general.alignment' = %u is not a power of two", f->path, a);
    f->alignment = a;
    return 0;
}

static int take_tensor_info(Cursor *c, size_t i, Err *e) {
    GgufFile *f = c->f;
    GgufTensor *t = &f->tensors[i];
    char what[200];
    snprintf(what, sizeof what, "tensor info %zu name", i);
    char *name;
    uint64_t len;
    if (take_string(c, GGUF_MAX_NAME - 1, &name, &len, what, e)) return -1;
    int bad = len == 0 || strlen(name) != len;
    memcpy(f->names[i], name, (size_t)len + 1);
    free(name);
    t->name = f->names[i];
    if (bad)
        return err_set(e, "%s: tensor info %zu: the name is %s", f->path, i,
                       len == 0 ? "empty" : "cut by a NUL byte");
    snprintf(what, sizeof what, "tensor '%s'", t->name);
    char w[260];
    uint32_t nd;
    snprintf(w, sizeof w, "%s n_dims", what);
    if (take_u32(c, &nd, w, e)) return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return err_set(e, "%s: %s: n_dims = %u, expected 1..%d", f->path, what, nd,
                       GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    t->numel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) {
        snprintf(w, sizeof w, "%s dimension %d", what, d);
        if (take_u64(c, &t->ne[d], w, e)) return -1;
        if (t->ne[d] > INT64_MAX)
            return err_set(e, "%s: %s: dimension %d = %llu exceeds 2^63 - 1", f->path, what, d,
                           (unsigned long long)t->ne[d]);
        if (__builtin_mul_overflow(t->numel, t->ne[d], &t->numel) || t->numel > INT64_MAX)
            return err_set(e, "%s: %s: the element count of its dimensions overflows 63 bits",
                           f->path, what);
    }
    snprintf(w, sizeof w, "%s type", what);
    if (take_u32(c, &t->type, w, e)) return -1;
    uint32_t bs = ggml_block_size(t->type), ts = ggml_type_size(t->type);
    if (bs == 0)
        return err_set(e, "%s: %s: unknown ggml type %u", f->path, what, t->type);
    if (t->ne[0] % bs != 0)
        return err_set(e, "%s: %s: dimension 0 = %llu is not a multiple of the %s block size %u",
                       f->path, what, (unsigned long long)t->ne[0], ggml_type_name(t->type), bs);
    if (__builtin_mul_overflow(t->numel / bs, (uint64_t)ts, &t->nbytes))
        return err_set(e, "%s: %s: its byte size overflows 64 bits", f->path, what);
    snprintf(w, sizeof w, "%s offset", what);
    return take_u64(c, &t->offset, w, e); // relative to the data section until it is known
}

static int check_tensor_placement(GgufFile *f, Err *e) {
    for (size_t i = 0; i < f->n_tensors; i++) {
        GgufTensor *t = &f->tensors[i];
        if (t->offset % f->alignment != 0)
            return err_set(e, "%s: tensor '%s': offset %llu is not a multiple of the alignment "
                              "%u", f->path, t->name, (unsigned long long)t->offset,
                           f->alignment);
        uint64_t end;
        if (__builtin_add_overflow(t->offset, f->data_offset, &t->offset) ||
            __builtin_add_overflow(t->offset, t->nbytes, &end) || end > f->size)
            return err_set(e, "%s: tensor '%s': its %llu bytes at data offset %llu lie outside "
                              "the file (%llu bytes, data section at %llu); truncated or corrupt",
                           f->path, t->name, (unsigned long long)t->nbytes,
                           (unsigned long long)(t->offset - f->data_offset),
                           (unsigned long long)f->size, (unsigned long long)f->data_offset);
    }
    g_sort_file = f;
    qsort(f->tensor_by_name, f->n_tensors, sizeof *f->tensor_by_name, cmp_tensor_offset);
    const GgufTensor *prev = NULL; // the last non-empty tensor
    for (size_t k = 0; k < f->n_tensors; k++) {
        const GgufTensor *t = &f->tensors[f->tensor_by_name[k]];
        if (t->nbytes == 0) continue; // an empty range overlaps nothing
        if (prev && t->offset < prev->offset + prev->nbytes)
            return err_set(e, "%s: tensors '%s' and '%s' overlap in the data section", f->path,
                           prev->name, t->name);
        prev = t;
    }
    qsort(f->tensor_by_name, f->n_tensors, sizeof *f->tensor_by_name, cmp_tensor_name);
    for (size_t k = 1; k < f->n_tensors; k++)
        if (!strcmp(f->tensors[f->tensor_by_name[k - 1]].name,
                    f->tensors[f->tensor_by_name[k]].name))
            return err_set(e, "%s: tensor name '%s' appears twice", f->path,
                           f->tensors[f->tensor_by_name[k]].name);
    return 0;
}

static int parse(GgufFile *f, Err *e) {
    Cursor c = {.f = f};
    if (f->fd >= 0 && !(c.win = malloc(WINDOW_BYTES)))
        return err_set(e, "%s: out of memory", f->path);
    int rc = -1;
    char magic[4];
    uint64_t n_tensors, n_kv;
    if (f->size < 4 + 4 + 8 + 8) {
        err_set(e, "%s: file is %llu bytes, shorter than the 24-byte GGUF header; truncated or "
                   "not a GGUF file", f->path, (unsigned long long)f->size);
        goto done;
    }
    if (take(&c, magic, 4, "magic", e) || take_u32(&c, &f->version, "version", e)) goto done;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0) {
        err_set(e, "%s: magic is %02x %02x %02x %02x, not \"GGUF\"; not a GGUF file", f->path,
                (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
        goto done;
    }
    uint32_t swapped = __builtin_bswap32(f->version);
    if ((f->version & 0xFFFFu) == 0 && swapped >= 1 && swapped <= 3) {
        err_set(e, "%s: version field reads %u little-endian but %u big-endian: a big-endian "
                   "GGUF file, which this reader does not support; convert it to little-endian "
                   "(gguf-py's gguf_convert_endian.py)", f->path, f->version, swapped);
        goto done;
    }
    if (f->version == 1) {
        err_set(e, "%s: GGUF version 1 (32-bit counts and lengths) is not supported; re-convert "
                   "the model with a current llama.cpp", f->path);
        goto done;
    }
    if (f->version != 2 && f->version != 3) {
        err_set(e, "%s: GGUF version %u is not supported (2 and 3 are)", f->path, f->version);
        goto done;
    }
    if (take_u64(&c, &n_tensors, "tensor_count", e) || take_u64(&c, &n_kv, "kv_count", e))
        goto done;
    if (n_kv > remaining(&c) / MIN_KV_BYTES) {
        err_set(e, "%s: kv_count = %llu: the %llu bytes after the header cannot hold that many "
                   "key/value pairs; corrupt", f->path, (unsigned long long)n_kv,
                (unsigned long long)remaining(&c));
        goto done;
    }
    if (n_tensors > remaining(&c) / MIN_TENSOR_INFO_BYTES) {
        err_set(e, "%s: tensor_count = %llu: the %llu bytes after the header cannot hold that "
                   "many tensor infos; corrupt", f->path, (unsigned long long)n_tensors,
                (unsigned long long)remaining(&c));
        goto done;
    }
    f->kvs = calloc((size_t)n_kv + 1, sizeof *f->kvs);
    f->kv_by_key = calloc((size_t)n_kv + 1, sizeof *f->kv_by_key);
    f->tensors = calloc((size_t)n_tensors + 1, sizeof *f->tensors);
    f->names = calloc((size_t)n_tensors + 1, sizeof *f->names);
    f->tensor_by_name = calloc((size_t)n_tensors + 1, sizeof *f->tensor_by_name);
    if (!f->kvs || !f->kv_by_key || !f->tensors || !f->names || !f->tensor_by_name) {
        err_set(e, "%s: out of memory for %llu key/value pairs and %llu tensors", f->path,
                (unsigned long long)n_kv, (unsigned long long)n_tensors);
        goto done;
    }
    for (size_t i = 0; i < n_kv; i++) {
        f->n_kv = i + 1; // so that gguf_close frees a partly read pair
        f->kv_by_key[i] = i;
        if (take_kv(&c, i, &f->kvs[i], e)) goto done;
    }
    g_sort_file = f;
    qsort(f->kv_by_key, f->n_kv, sizeof *f->kv_by_key, cmp_kv_key);
    for (size_t k = 1; k < f->n_kv; k++)
        if (!strcmp(f->kvs[f->kv_by_key[k - 1]].key, f->kvs[f->kv_by_key[k]].key)) {
            err_set(e, "%s: key '%s' appears twice", f->path, f->kvs[f->kv_by_key[k]].key);
            goto done;
        }
    if (parse_alignment(f, e)) goto done;
    f->n_tensors = (size_t)n_tensors;
    for (size_t i = 0; i < f->n_tensors; i++) {
        f->tensor_by_name[i] = i;
        if (take_tensor_info(&c, i, e)) goto done;
    }
    f->data_offset = c.pos + (f->alignment - c.pos % f->alignment) % f->alignment;
    rc = check_tensor_placement(f, e);
done:
    free(c.win);
    return rc;
}

// ---- open / close --------------------------------------------------------------------------------

void gguf_close(GgufFile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (size_t i = 0; i < f->n_kv; i++) kv_free(&f->kvs[i]);
    free(f->kvs);
    free(f->kv_by_key);
    free(f->tensors);
    free(f->names);
    free(f->tensor_by_name);
    free(f->path);
    free(f);
}

static GgufFile *file_new(const char *name) {
    GgufFile *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fd = -1;
    if (!(f->path = strdup(name))) {
        free(f);
        return NULL;
    }
    return f;
}

int gguf_open(GgufFile **out, const char *path, Err *e) {
    *out = NULL;
    GgufFile *f = file_new(path);
    if (!f) return err_set(e, "%s: out of memory", path);
    if (file_open_read(path, &f->fd, &f->size, e)) {
        gguf_close(f);
        return -1;
    }
    if (parse(f, e)) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int gguf_open_memory(GgufFile **out, const void *bytes, size_t len, const char *name, Err *e) {
    *out = NULL;
    GgufFile *f = file_new(name);
    if (!f) return err_set(e, "%s: out of memory", name);
    f->mem = bytes;
    f->size = len;
    if (parse(f, e)) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

const char *gguf_path(const GgufFile *f) { return f->path; }
uint32_t gguf_version(const GgufFile *f) { return f->version; }
uint64_t gguf_file_size(const GgufFile *f) { return f->size; }
uint32_t gguf_alignment(const GgufFile *f) { return f->alignment; }
uint64_t gguf_data_offset(const GgufFile *f) { return f->data_offset; }

// ---- metadata access ----------------------------------------------------------------------------

size_t gguf_kv_count(const GgufFile *f) { return f->n_kv; }
const char *gguf_kv_key(const GgufFile *f, size_t i) { return i < f->n_kv ? f->kvs[i].key : NULL; }
uint32_t gguf_kv_type(const GgufFile *f, size_t i) {
    return i < f->n_kv ? f->kvs[i].type : GGUF_N_VALUE_TYPES;
}
uint32_t gguf_kv_elem_type(const GgufFile *f, size_t i) {
    return i < f->n_kv ? f->kvs[i].elem_type : GGUF_N_VALUE_TYPES;
}
uint64_t gguf_kv_len(const GgufFile *f, size_t i) { return i < f->n_kv ? f->kvs[i].n : 0; }

// A numeric element of type t at p (little-endian) as a double; integers above 2^53 round.
static double number_at(uint32_t t, const uint8_t *p) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } v;
    memcpy(&v, p, VALUE_TYPES[t].size);
    switch (t) {
    case GGUF_UINT8: return v.u8;
    case GGUF_INT8: return v.i8;
    case GGUF_UINT16: return v.u16;
    case GGUF_INT16: return v.i16;
    case GGUF_UINT32: return v.u32;
    case GGUF_INT32: return v.i32;
    case GGUF_FLOAT32: return v.f32;
    case GGUF_BOOL: return v.u8 != 0;
    case GGUF_UINT64: return (double)v.u64;
    case GGUF_INT64: return (double)v.i64;
    case GGUF_FLOAT64: return v.f64;
    default: return 0;
    }
}

int gguf_kv_number(const GgufFile *f, size_t i, double *v) {
    if (i >= f->n_kv || f->kvs[i].type == GGUF_STRING || f->kvs[i].type == GGUF_ARRAY) return -1;
    *v = number_at(f->kvs[i].type, f->kvs[i].scalar);
    return 0;
}

int gguf_kv_array_number(const GgufFile *f, size_t i, uint64_t j, double *v) {
    if (i >= f->n_kv || f->kvs[i].type != GGUF_ARRAY || !f->kvs[i].numbers || j >= f->kvs[i].n)
        return -1;
    const Kv *kv = &f->kvs[i];
    *v = number_at(kv->elem_type, (const uint8_t *)kv->numbers + j * VALUE_TYPES[kv->elem_type].size);
    return 0;
}

static const Kv *kv_for(const GgufFile *f, const char *key, Err *e) {
    long k = gguf_find_key(f, key);
    if (k < 0) {
        err_set(e, "%s: metadata key '%s' is missing", f->path, key);
        return NULL;
    }
    return &f->kvs[k];
}

static int wrong_type(const GgufFile *f, const char *key, const Kv *kv, const char *expected,
                      Err *e) {
    if (kv->type == GGUF_ARRAY)
        return err_set(e, "%s: metadata key '%s' is an array of %s, expected %s", f->path, key,
                       gguf_value_type_name(kv->elem_type), expected);
    return err_set(e, "%s: metadata key '%s' has type %s, expected %s", f->path, key,
                   gguf_value_type_name(kv->type), expected);
}

int gguf_get_int(const GgufFile *f, const char *key, int64_t *v, Err *e) {
    const Kv *kv = kv_for(f, key, e);
    if (!kv) return -1;
    switch (kv->type) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_UINT16: case GGUF_INT16: case GGUF_UINT32:
    case GGUF_INT32:
        *v = (int64_t)number_at(kv->type, kv->scalar);
        return 0;
    case GGUF_INT64: memcpy(v, kv->scalar, 8); return 0;
    case GGUF_UINT64: {
        uint64_t u;
        memcpy(&u, kv->scalar, 8);
        if (u > INT64_MAX)
            return err_set(e, "%s: metadata key '%s' = %llu does not fit a signed 64-bit integer",
                           f->path, key, (unsigned long long)u);
        *v = (int64_t)u;
        return 0;
    }
    default: return wrong_type(f, key, kv, "an integer", e);
    }
}

int gguf_get_float(const GgufFile *f, const char *key, double *v, Err *e) {
    const Kv *kv = kv_for(f, key, e);
    if (!kv) return -1;
    if (kv->type != GGUF_FLOAT32 && kv->type != GGUF_FLOAT64)
        return wrong_type(f, key, kv, "FLOAT32 or FLOAT64", e);
    *v = number_at(kv->type, kv->scalar);
    return 0;
}

int gguf_get_bool(const GgufFile *f, const char *key, int *v, Err *e) {
    const Kv *kv = kv_for(f, key, e);
    if (!kv) return -1;
    if (kv->type != GGUF_BOOL) return wrong_type(f, key, kv, "BOOL", e);
    *v = kv->scalar[0] != 0;
    return 0;
}

int gguf_get_str(const GgufFile *f, const char *key, const char **s, size_t *len, Err *e) {
    const Kv *kv = kv_for(f, key, e);
    if (!kv) return -1;
    if (kv->type != GGUF_STRING) return wrong_type(f, key, kv, "STRING", e);
    *s = kv->str;
    if (len) *len = (size_t)kv->str_len;
    return 0;
}

static const Kv *array_for(const GgufFile *f, const char *key, uint32_t elem, Err *e) {
    const Kv *kv = kv_for(f, key, e);
    if (!kv) return NULL;
    if (kv->type != GGUF_ARRAY || kv->elem_type != elem) {
        char want[64];
        snprintf(want, sizeof want, "an array of %s", gguf_value_type_name(elem));
        wrong_type(f, key, kv, want, e);
        return NULL;
    }
    return kv;
}

int gguf_get_str_array(const GgufFile *f, const char *key, const char *const **strs,
                       const int **lens, uint64_t *n, Err *e) {
    const Kv *kv = array_for(f, key, GGUF_STRING, e);
    if (!kv) return -1;
    *strs = (const char *const *)kv->strs;
    if (lens) *lens = kv->lens;
    *n = kv->n;
    return 0;
}

int gguf_get_f32_array(const GgufFile *f, const char *key, const float **v, uint64_t *n,
                       Err *e) {
    const Kv *kv = array_for(f, key, GGUF_FLOAT32, e);
    if (!kv) return -1;
    *v = kv->numbers;
    *n = kv->n;
    return 0;
}

int gguf_get_i32_array(const GgufFile *f, const char *key, const int32_t **v, uint64_t *n,
                       Err *e) {
    const Kv *kv = array_for(f, key, GGUF_INT32, e);
    if (!kv) return -1;
    *v = kv->numbers;
    *n = kv->n;
    return 0;
}

// ---- tensors --------------------------------------------------------------------------------------

size_t gguf_tensor_count(const GgufFile *f) { return f->n_tensors; }
const GgufTensor *gguf_tensor(const GgufFile *f, size_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

static int tensor_for_read(const GgufFile *f, size_t i, const GgufTensor **t, Err *e) {
    if (i >= f->n_tensors)
        return err_set(e, "%s: tensor index %zu out of range (%zu tensors)", f->path, i,
                       f->n_tensors);
    *t = &f->tensors[i];
    if ((*t)->nbytes > SIZE_MAX || (*t)->numel > SIZE_MAX / sizeof(float))
        return err_set(e, "%s: tensor '%s' is too large for this machine", f->path, (*t)->name);
    return 0;
}

int gguf_read_tensor_raw(const GgufFile *f, size_t i, void *dst, Err *e) {
    const GgufTensor *t = NULL;
    if (tensor_for_read(f, i, &t, e)) return -1;
    char what[100];
    snprintf(what, sizeof what, "tensor '%s'", t->name);
    return read_at(f, t->offset, dst, (size_t)t->nbytes, what, e);
}

int gguf_read_tensor_f32(const GgufFile *f, size_t i, float *dst, Err *e) {
    const GgufTensor *t = NULL;
    if (tensor_for_read(f, i, &t, e)) return -1;
    if (!ggml_can_dequantize(t->type))
        return err_set(e, "%s: tensor '%s' has type %s, which this reader cannot dequantise yet "
                          "(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, "
                          "Q8_K); re-quantise the model to one of those", f->path, t->name,
                       ggml_type_name(t->type));
    char what[100];
    snprintf(what, sizeof what, "tensor '%s'", t->name);
    const uint64_t bs = ggml_block_size(t->type), ts = ggml_type_size(t->type);
    const uint64_t n_blocks = t->numel / bs;
    if (f->fd < 0) {
        ggml_dequantize(t->type, f->mem + t->offset, n_blocks, dst);
        return 0;
    }
    if (t->type == GGML_F32) return read_at(f, t->offset, dst, (size_t)t->nbytes, what, e);
    const uint64_t per_chunk = CHUNK_BYTES / ts;
    uint64_t first = n_blocks < per_chunk ? n_blocks : per_chunk;
    uint8_t *buf = malloc((size_t)(first ? first : 1) * ts);
    if (!buf) return err_set(e, "%s: %s: out of memory for a read buffer", f->path, what);
    int rc = 0;
    for (uint64_t b = 0; b < n_blocks && rc == 0; b += per_chunk) {
        uint64_t nb = n_blocks - b < per_chunk ? n_blocks - b : per_chunk;
        rc = read_at(f, t->offset + b * ts, buf, (size_t)(nb * ts), what, e);
        if (rc == 0) ggml_dequantize(t->type, buf, nb, dst + b * bs);
    }
    free(buf);
    return rc;
}
