// safetensors reader (header validated field by field before any tensor byte is trusted),
// sharded-directory index and streaming atomic writer; see safetensors.h for the contracts.
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "json.h"
#include "strbuf.h"
#include "textfile.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader copies it without swapping"
#endif

static const struct {
    const char *name;
    size_t size;
} DTYPES[ST_N_DTYPES] = {
    [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},         [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},         [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},   [ST_I8] = {"I8", 1},           [ST_U64] = {"U64", 8},
    [ST_U32] = {"U32", 4},   [ST_U16] = {"U16", 2},         [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_C64] = {"C64", 8},
};

const char *safetensors_dtype_name(SafetensorsDtype dt) {
    return (unsigned)dt < ST_N_DTYPES ? DTYPES[dt].name : "?";
}
size_t safetensors_dtype_size(SafetensorsDtype dt) {
    return (unsigned)dt < ST_N_DTYPES ? DTYPES[dt].size : 0;
}

static int dtype_from_name(const char *s, SafetensorsDtype *dt) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (!strcmp(s, DTYPES[i].name)) {
            *dt = (SafetensorsDtype)i;
            return 0;
        }
    return -1;
}

// ---- reading -------------------------------------------------------------------------------

struct SafetensorsFile {
    char *path;
    int fd;                   // -1 for a file held in memory
    const uint8_t *mem;
    uint64_t file_size;
    SafetensorsTensor *tensors;
    size_t n;
    size_t *by_name;          // tensor indices sorted by name, for safetensors_find
    char **meta;              // key, value, key, value, ...
    size_t n_meta;
};

void safetensors_close(SafetensorsFile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (size_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    for (size_t i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->path);
    free(f);
}

// Reads exactly len bytes at off; a short read is reported as truncation.
// `what` names the bytes in errors ("tensor 'x'", "header").
static int read_at(SafetensorsFile *f, const char *what, uint64_t off, void *dst, size_t len,
                   Err *e) {
    if (off > f->file_size || len > f->file_size - off)
        return err_set(e, "%s: %s: file is truncated: %zu bytes at offset %llu lie past its end "
                          "(%llu bytes)", f->path, what, len, (unsigned long long)off,
                       (unsigned long long)f->file_size);
    if (f->fd < 0) {
        memcpy(dst, f->mem + off, len);
        return 0;
    }
    return file_pread_exact(f->fd, f->path, what, off, dst, len, e);
}

// A JSON number that is a whole number in [0, 2^53] (every such integer is exact in a double).
static int json_whole(const JsonValue *v, uint64_t *out) {
    if (!json_is(v, JSON_NUMBER)) return -1;
    double d = json_number(v);
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static void format_shape(char *buf, size_t cap, const SafetensorsTensor *t) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static int parse_tensor(const char *path, const char *name, const JsonValue *v,
                        uint64_t data_start, uint64_t data_len, SafetensorsTensor *t, Err *e) {
    if (!json_is(v, JSON_OBJECT))
        return err_set(e, "%s: tensor '%s': entry is not a JSON object", path, name);
    for (size_t k = 0; k < json_object_len(v); k++) {
        const char *key = json_object_key(v, k);
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return err_set(e, "%s: tensor '%s': unexpected field \"%s\" (only dtype, shape and "
                              "data_offsets are allowed)", path, name, key);
    }
    const JsonValue *dt = json_object_get(v, "dtype");
    const JsonValue *shape = json_object_get(v, "shape");
    const JsonValue *offs = json_object_get(v, "data_offsets");
    if (!dt || !shape || !offs)
        return err_set(e, "%s: tensor '%s': missing field \"%s\"", path, name,
                       !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    const char *dts = json_string(dt, NULL);
    if (!dts) return err_set(e, "%s: tensor '%s': dtype is not a string", path, name);
    if (dtype_from_name(dts, &t->dtype) != 0)
        return err_set(e, "%s: tensor '%s': unknown dtype \"%.64s\"", path, name, dts);
    if (!json_is(shape, JSON_ARRAY))
        return err_set(e, "%s: tensor '%s': shape is not an array", path, name);
    size_t nd = json_array_len(shape);
    if (nd > SAFETENSORS_MAX_DIMS)
        return err_set(e, "%s: tensor '%s': shape has %zu dimensions, at most %d are supported",
                       path, name, nd, SAFETENSORS_MAX_DIMS);
    t->ndim = (int)nd;
    t->numel = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t dim;
        if (json_whole(json_array_get(shape, d), &dim) != 0)
            return err_set(e, "%s: tensor '%s': shape entry %zu is not a non-negative whole "
                              "number below 2^53", path, name, d);
        t->shape[d] = (int64_t)dim;
        if (__builtin_mul_overflow(t->numel, dim, &t->numel))
            return err_set(e, "%s: tensor '%s': shape's element count overflows 64 bits", path,
                           name);
    }
    if (__builtin_mul_overflow(t->numel, (uint64_t)DTYPES[t->dtype].size, &t->nbytes))
        return err_set(e, "%s: tensor '%s': byte size of %llu %s elements overflows 64 bits",
                       path, name, (unsigned long long)t->numel, dts);
    uint64_t begin, end;
    if (!json_is(offs, JSON_ARRAY) || json_array_len(offs) != 2 ||
        json_whole(json_array_get(offs, 0), &begin) != 0 ||
        json_whole(json_array_get(offs, 1), &end) != 0)
        return err_set(e, "%s: tensor '%s': data_offsets is not an array of two non-negative "
                          "whole numbers", path, name);
    if (begin > end)
        return err_set(e, "%s: tensor '%s': data_offsets [%llu, %llu] are reversed", path, name,
                       (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return err_set(e, "%s: tensor '%s': data_offsets [%llu, %llu] end past the data region "
                          "(%llu bytes; file truncated?)", path, name, (unsigned long long)begin,
                       (unsigned long long)end, (unsigned long long)data_len);
    if (end - begin != t->nbytes) {
        char sh[256];
        format_shape(sh, sizeof sh, t);
        return err_set(e, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape "
                          "%s of %s needs %llu", path, name, (unsigned long long)begin,
                       (unsigned long long)end, (unsigned long long)(end - begin), sh, dts,
                       (unsigned long long)t->nbytes);
    }
    t->offset = data_start + begin;
    return 0;
}

// qsort contexts: a file's tensors (no qsort_r in C11, and one parse runs at a time per thread).
static _Thread_local const SafetensorsTensor *g_sort_tensors;

static int cmp_by_offset(const void *a, const void *b) {
    const SafetensorsTensor *x = &g_sort_tensors[*(const size_t *)a];
    const SafetensorsTensor *y = &g_sort_tensors[*(const size_t *)b];
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}
static int cmp_by_name(const void *a, const void *b) {
    return strcmp(g_sort_tensors[*(const size_t *)a].name,
                  g_sort_tensors[*(const size_t *)b].name);
}

static int check_no_overlap(SafetensorsFile *f, Err *e) {
    g_sort_tensors = f->tensors;
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_by_offset);
    const SafetensorsTensor *prev = NULL; // the last non-empty tensor
    for (size_t k = 0; k < f->n; k++) {
        const SafetensorsTensor *t = &f->tensors[f->by_name[k]];
        if (t->nbytes == 0) continue; // an empty range overlaps nothing
        if (prev && t->offset < prev->offset + prev->nbytes)
            return err_set(e, "%s: tensors '%s' and '%s' overlap in the data region", f->path,
                           prev->name, t->name);
        prev = t;
    }
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_by_name);
    // The JSON parser rejects duplicate keys, but two keys differing only after a \u0000 are the
    // same C string here.
    for (size_t k = 1; k < f->n; k++)
        if (!strcmp(f->tensors[f->by_name[k - 1]].name, f->tensors[f->by_name[k]].name))
            return err_set(e, "%s: tensor name '%s' appears twice (names cut at an embedded NUL)",
                           f->path, f->tensors[f->by_name[k]].name);
    return 0;
}

// Validates the header text (N bytes that follow the length) against a file of file_size bytes.
static int parse_header(SafetensorsFile *f, const char *text, uint64_t hlen, Err *e) {
    const char *path = f->path;
    JsonValue *root = json_parse(text, (size_t)hlen, e);
    if (!root) return err_prefix(e, "%s: header is not valid JSON", path);
    int rc = 0;
    if (!json_is(root, JSON_OBJECT)) {
        rc = err_set(e, "%s: header is not a JSON object", path);
        goto done;
    }
    uint64_t data_start = 8 + hlen, data_len = f->file_size - data_start;
    size_t members = json_object_len(root);
    f->tensors = calloc(members ? members : 1, sizeof *f->tensors);
    f->by_name = calloc(members ? members : 1, sizeof *f->by_name);
    if (!f->tensors || !f->by_name) {
        rc = err_set(e, "%s: out of memory for %zu header entries", path, members);
        goto done;
    }
    for (size_t k = 0; k < members && rc == 0; k++) {
        const char *key = json_object_key(root, k);
        const JsonValue *v = json_object_value(root, k);
        if (!strcmp(key, "__metadata__")) {
            if (!json_is(v, JSON_OBJECT)) {
                rc = err_set(e, "%s: __metadata__ is not a JSON object", path);
                break;
            }
            size_t m = json_object_len(v);
            if (!(f->meta = calloc(2 * m + 1, sizeof *f->meta))) {
                rc = err_set(e, "%s: out of memory", path);
                break;
            }
            for (size_t j = 0; j < m; j++) {
                const char *val = json_string(json_object_value(v, j), NULL);
                if (!val) {
                    rc = err_set(e, "%s: __metadata__ entry '%s' is not a string", path,
                                 json_object_key(v, j));
                    break;
                }
                f->meta[2 * j] = strdup(json_object_key(v, j));
                f->meta[2 * j + 1] = strdup(val);
                f->n_meta = j + 1;
                if (!f->meta[2 * j] || !f->meta[2 * j + 1]) {
                    rc = err_set(e, "%s: out of memory", path);
                    break;
                }
            }
            continue;
        }
        SafetensorsTensor *t = &f->tensors[f->n];
        if (parse_tensor(path, key, v, data_start, data_len, t, e) != 0) {
            rc = -1;
            break;
        }
        if (!(t->name = strdup(key))) {
            rc = err_set(e, "%s: out of memory", path);
            break;
        }
        f->by_name[f->n] = f->n;
        f->n++;
    }
    if (rc == 0) rc = check_no_overlap(f, e);
done:
    json_free(root);
    return rc;
}

static int open_common(SafetensorsFile *f, Err *e) {
    uint8_t lenbuf[8];
    if (f->file_size < 8)
        return err_set(e, "%s: file is %llu bytes, too short for the 8-byte header length",
                       f->path, (unsigned long long)f->file_size);
    if (read_at(f, "header length", 0, lenbuf, 8, e) != 0) return -1;
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--) hlen = hlen << 8 | lenbuf[b];
    if (hlen > SAFETENSORS_MAX_HEADER)
        return err_set(e, "%s: header length %llu exceeds the %llu-byte limit (not a "
                          "safetensors file?)", f->path, (unsigned long long)hlen,
                       SAFETENSORS_MAX_HEADER);
    if (hlen > f->file_size - 8)
        return err_set(e, "%s: header length %llu is larger than the %llu bytes after it "
                          "(truncated or not a safetensors file)", f->path,
                       (unsigned long long)hlen, (unsigned long long)(f->file_size - 8));
    char *text = malloc(hlen ? hlen : 1);
    if (!text) return err_set(e, "%s: out of memory for a %llu-byte header", f->path,
                              (unsigned long long)hlen);
    int rc = read_at(f, "header", 8, text, (size_t)hlen, e);
    if (rc == 0) rc = parse_header(f, text, hlen, e);
    free(text);
    return rc;
}

static SafetensorsFile *file_new(const char *name) {
    SafetensorsFile *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fd = -1;
    if (!(f->path = strdup(name))) {
        free(f);
        return NULL;
    }
    return f;
}

int safetensors_open(SafetensorsFile **out, const char *path, Err *e) {
    *out = NULL;
    SafetensorsFile *f = file_new(path);
    if (!f) return err_set(e, "%s: out of memory", path);
    if (file_open_read(path, &f->fd, &f->file_size, e)) {
        safetensors_close(f);
        return -1;
    }
    if (open_common(f, e) != 0) {
        safetensors_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int safetensors_open_memory(SafetensorsFile **out, const void *bytes, size_t len,
                            const char *name, Err *e) {
    *out = NULL;
    SafetensorsFile *f = file_new(name);
    if (!f) return err_set(e, "%s: out of memory", name);
    f->mem = bytes;
    f->file_size = len;
    if (open_common(f, e) != 0) {
        safetensors_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

const char *safetensors_path(const SafetensorsFile *f) { return f->path; }
size_t safetensors_count(const SafetensorsFile *f) { return f->n; }
const SafetensorsTensor *safetensors_tensor(const SafetensorsFile *f, size_t i) {
    return i < f->n ? &f->tensors[i] : NULL;
}

long safetensors_find(const SafetensorsFile *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) return (long)f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

size_t safetensors_metadata_count(const SafetensorsFile *f) { return f->n_meta; }
const char *safetensors_metadata_key(const SafetensorsFile *f, size_t i) {
    return i < f->n_meta ? f->meta[2 * i] : NULL;
}
const char *safetensors_metadata_value(const SafetensorsFile *f, size_t i) {
    return i < f->n_meta ? f->meta[2 * i + 1] : NULL;
}
const char *safetensors_metadata_get(const SafetensorsFile *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

static int tensor_for_read(SafetensorsFile *f, size_t i, const SafetensorsTensor **t, Err *e) {
    if (i >= f->n)
        return err_set(e, "%s: tensor index %zu out of range (%zu tensors)", f->path, i, f->n);
    *t = &f->tensors[i];
    if ((*t)->nbytes > SIZE_MAX)
        return err_set(e, "%s: tensor '%s' is too large for this machine", f->path, (*t)->name);
    return 0;
}

int safetensors_read_raw(SafetensorsFile *f, size_t i, void *out, Err *e) {
    const SafetensorsTensor *t = NULL;
    if (tensor_for_read(f, i, &t, e) != 0) return -1;
    char what[300];
    snprintf(what, sizeof what, "tensor '%.256s'", t->name);
    return read_at(f, what, t->offset, out, (size_t)t->nbytes, e);
}

int safetensors_read_raw_range(SafetensorsFile *f, size_t i, uint64_t byte_off, void *out,
                               size_t len, Err *e) {
    const SafetensorsTensor *t = NULL;
    if (tensor_for_read(f, i, &t, e) != 0) return -1;
    if (byte_off > t->nbytes || len > t->nbytes - byte_off)
        return err_set(e, "%s: tensor '%s': bytes [%llu, +%zu) lie outside its %llu bytes",
                       f->path, t->name, (unsigned long long)byte_off, len,
                       (unsigned long long)t->nbytes);
    char what[300];
    snprintf(what, sizeof what, "tensor '%.256s'", t->name);
    return read_at(f, what, t->offset + byte_off, out, len, e);
}

void safetensors_prefetch(SafetensorsFile *f, size_t i) {
    if (!f || f->fd < 0 || i >= f->n) return;
    // Advisory: the kernel starts reading while the caller is busy writing the previous tensor.
    (void)posix_fadvise(f->fd, (off_t)f->tensors[i].offset, (off_t)f->tensors[i].nbytes,
                        POSIX_FADV_WILLNEED);
}

#define CONVERT_CHUNK 32768 // 16-bit elements widened per read: 64 KiB of reads at a time

int safetensors_read_f32(SafetensorsFile *f, size_t i, float *out, Err *e) {
    const SafetensorsTensor *t = NULL;
    if (tensor_for_read(f, i, &t, e) != 0) return -1;
    if (t->dtype == ST_F32) return safetensors_read_raw(f, i, out, e);
    if (t->dtype != ST_F16 && t->dtype != ST_BF16)
        return err_set(e, "%s: tensor '%s' has dtype %s, which is not supported for reading as "
                          "float32 (only F32, F16, BF16)", f->path, t->name,
                       DTYPES[t->dtype].name);
    char what[300];
    snprintf(what, sizeof what, "tensor '%.256s'", t->name);
    uint16_t buf[CONVERT_CHUNK];
    for (uint64_t done = 0; done < t->numel;) {
        size_t k = t->numel - done < CONVERT_CHUNK ? (size_t)(t->numel - done) : CONVERT_CHUNK;
        if (read_at(f, what, t->offset + 2 * done, buf, 2 * k, e) != 0) return -1;
        for (size_t j = 0; j < k; j++)
            out[done + j] = t->dtype == ST_F16 ? f16_to_f32(buf[j]) : bf16_to_f32(buf[j]);
        done += k;
    }
    return 0;
}

// ---- sharded directories --------------------------------------------------------------------

typedef struct {
    const char *name;
    size_t shard, index;
} IndexEntry;

struct SafetensorsIndex {
    SafetensorsFile **shards;
    size_t n_shards;
    IndexEntry *entries; // sorted by name
    size_t n;
};

void safetensors_index_close(SafetensorsIndex *x) {
    if (!x) return;
    for (size_t s = 0; s < x->n_shards; s++) safetensors_close(x->shards[s]);
    free(x->shards);
    free(x->entries);
    free(x);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const IndexEntry *)a)->name, ((const IndexEntry *)b)->name);
}

static char *join_path(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static int index_add_shard(SafetensorsIndex *x, const char *path, Err *e) {
    SafetensorsFile **s = realloc(x->shards, (x->n_shards + 1) * sizeof *s);
    if (!s) return err_set(e, "%s: out of memory", path);
    x->shards = s;
    if (safetensors_open(&x->shards[x->n_shards], path, e) != 0) return -1;
    x->n_shards++;
    return 0;
}

// Builds the sorted name table over all shards; a name in two shards is an error.
static int index_build_table(SafetensorsIndex *x, const char *where, Err *e) {
    size_t total = 0;
    for (size_t s = 0; s < x->n_shards; s++) total += x->shards[s]->n;
    if (!(x->entries = calloc(total ? total : 1, sizeof *x->entries)))
        return err_set(e, "%s: out of memory", where);
    for (size_t s = 0; s < x->n_shards; s++)
        for (size_t i = 0; i < x->shards[s]->n; i++)
            x->entries[x->n++] = (IndexEntry){x->shards[s]->tensors[i].name, s, i};
    qsort(x->entries, x->n, sizeof *x->entries, cmp_entry);
    for (size_t k = 1; k < x->n; k++)
        if (!strcmp(x->entries[k - 1].name, x->entries[k].name))
            return err_set(e, "%s: tensor '%s' is in two shards: %s and %s", where,
                           x->entries[k].name, x->shards[x->entries[k - 1].shard]->path,
                           x->shards[x->entries[k].shard]->path);
    return 0;
}

static int index_from_json(SafetensorsIndex *x, const char *dir, const char *jpath, Err *e) {
    JsonValue *root = json_parse_file(jpath, JSON_FILE_SINGLE, e);
    if (!root) return -1;
    int rc = 0;
    const JsonValue *map = json_object_get(root, "weight_map");
    if (!json_is(map, JSON_OBJECT)) {
        rc = err_set(e, "%s: no \"weight_map\" object", jpath);
        goto done;
    }
    // Open each distinct shard once, in order of first mention.
    const char **names = calloc(json_object_len(map) + 1, sizeof *names);
    if (!names) {
        rc = err_set(e, "%s: out of memory", jpath);
        goto done;
    }
    for (size_t k = 0; k < json_object_len(map) && rc == 0; k++) {
        const char *shard = json_string(json_object_value(map, k), NULL);
        const char *tensor = json_object_key(map, k);
        if (!shard) {
            rc = err_set(e, "%s: weight_map entry '%s' is not a string", jpath, tensor);
            break;
        }
        if (!*shard || strchr(shard, '/') || strstr(shard, "..")) {
            rc = err_set(e, "%s: weight_map entry '%s' names shard \"%s\", which is not a plain "
                            "file name in the directory", jpath, tensor, shard);
            break;
        }
        size_t s = 0;
        while (s < x->n_shards && strcmp(names[s], shard)) s++;
        if (s < x->n_shards) continue;
        char *p = join_path(dir, shard);
        if (!p) rc = err_set(e, "%s: out of memory", jpath);
        else {
            names[x->n_shards] = shard;
            rc = index_add_shard(x, p, e);
            free(p);
        }
    }
    if (rc == 0) rc = index_build_table(x, jpath, e);
    for (size_t k = 0; k < json_object_len(map) && rc == 0; k++) {
        const char *tensor = json_object_key(map, k);
        const char *shard = json_string(json_object_value(map, k), NULL);
        IndexEntry key = {tensor, 0, 0};
        IndexEntry *hit = bsearch(&key, x->entries, x->n, sizeof *x->entries, cmp_entry);
        size_t s = 0;
        while (strcmp(names[s], shard)) s++;
        if (!hit)
            rc = err_set(e, "%s: weight_map puts '%s' in %s, which lacks it", jpath, tensor,
                         shard);
        else if (hit->shard != s)
            rc = err_set(e, "%s: weight_map puts '%s' in %s, but it is in %s", jpath, tensor,
                         shard, x->shards[hit->shard]->path);
    }
    free(names);
done:
    json_free(root);
    return rc;
}

int safetensors_index_open(SafetensorsIndex **out, const char *dir, Err *e) {
    *out = NULL;
    SafetensorsIndex *x = calloc(1, sizeof *x);
    char *single = join_path(dir, "model.safetensors");
    char *json = join_path(dir, "model.safetensors.index.json");
    int rc = 0;
    if (!x || !single || !json) rc = err_set(e, "%s: out of memory", dir);
    else if (access(single, F_OK) == 0) {
        rc = index_add_shard(x, single, e);
        if (rc == 0) rc = index_build_table(x, single, e);
    } else if (access(json, F_OK) == 0) rc = index_from_json(x, dir, json, e);
    else rc = err_set(e, "%s: neither model.safetensors nor model.safetensors.index.json is there",
                      dir);
    free(single);
    free(json);
    if (rc != 0) {
        safetensors_index_close(x);
        return -1;
    }
    *out = x;
    return 0;
}

size_t safetensors_index_shard_count(const SafetensorsIndex *x) { return x->n_shards; }
size_t safetensors_index_count(const SafetensorsIndex *x) { return x->n; }

int safetensors_index_tensor(const SafetensorsIndex *x, size_t k, SafetensorsFile **shard,
                             size_t *i) {
    if (k >= x->n) return -1;
    *shard = x->shards[x->entries[k].shard];
    *i = x->entries[k].index;
    return 0;
}

int safetensors_index_find(const SafetensorsIndex *x, const char *name, SafetensorsFile **shard,
                           size_t *i) {
    IndexEntry key = {name, 0, 0};
    IndexEntry *hit = bsearch(&key, x->entries, x->n, sizeof *x->entries, cmp_entry);
    if (!hit) return -1;
    *shard = x->shards[hit->shard];
    *i = hit->index;
    return 0;
}

// ---- writing --------------------------------------------------------------------------------

typedef struct {
    char *name;
    SafetensorsDtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    uint64_t nbytes;
} Decl;

struct SafetensorsWriter {
    char *path, *tmp;
    int fd;          // -1 once dead (error) or closed
    int dead;
    Decl *decls;
    size_t n_decls, cap_decls, next; // next: the declared tensor whose data comes next
    uint64_t data_bytes;
    char **meta;     // key, value, ...
    size_t n_meta;
    int header_written;
};

static void writer_free(SafetensorsWriter *w) {
    for (size_t i = 0; i < w->n_decls; i++) free(w->decls[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->decls);
    free(w->meta);
    free(w->path);
    free(w->tmp);
    free(w);
}

// Any error kills the writer: the temporary goes at once so that nothing is left behind even
// if the caller forgets to abort.
static int writer_fail(SafetensorsWriter *w) {
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
    }
    w->fd = -1;
    w->dead = 1;
    return -1;
}

static int writer_usable(SafetensorsWriter *w, Err *e) {
    if (w->dead) return err_set(e, "%s: writer already failed; nothing more is written", w->path);
    return 0;
}

int safetensors_writer_open(SafetensorsWriter **out, const char *path, Err *e) {
    *out = NULL;
    SafetensorsWriter *w = calloc(1, sizeof *w);
    size_t ntmp = strlen(path) + 32;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(ntmp))) {
        if (w) writer_free(w);
        return err_set(e, "%s: out of memory", path);
    }
    snprintf(w->tmp, ntmp, "%s.tmp-%ld", path, (long)getpid());
    if ((w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        err_set(e, "%s: cannot create the temporary file %s: %s", path, w->tmp, strerror(errno));
        writer_free(w);
        return -1;
    }
    *out = w;
    return 0;
}

int safetensors_writer_metadata(SafetensorsWriter *w, const char *key, const char *value,
                                Err *e) {
    if (writer_usable(w, e)) return -1;
    if (w->header_written)
        return err_set(e, "%s: metadata '%s' comes after tensor data; add it first", w->path, key),
               writer_fail(w);
    for (size_t i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[2 * i], key))
            return err_set(e, "%s: metadata key '%s' given twice", w->path, key), writer_fail(w);
    char **m = realloc(w->meta, 2 * (w->n_meta + 1) * sizeof *m);
    if (!m) return err_set(e, "%s: out of memory", w->path), writer_fail(w);
    w->meta = m;
    m[2 * w->n_meta] = strdup(key);
    m[2 * w->n_meta + 1] = strdup(value);
    w->n_meta++;
    if (!m[2 * w->n_meta - 2] || !m[2 * w->n_meta - 1])
        return err_set(e, "%s: out of memory", w->path), writer_fail(w);
    return 0;
}

int safetensors_writer_declare(SafetensorsWriter *w, const char *name, SafetensorsDtype dtype,
                               int ndim, const int64_t *shape, Err *e) {
    if (writer_usable(w, e)) return -1;
    if (w->header_written)
        return err_set(e, "%s: tensor '%s' declared after tensor data; declare all first",
                       w->path, name), writer_fail(w);
    if ((unsigned)dtype >= ST_N_DTYPES)
        return err_set(e, "%s: tensor '%s': invalid dtype %d", w->path, name, (int)dtype),
               writer_fail(w);
    if (ndim < 0 || ndim > SAFETENSORS_MAX_DIMS)
        return err_set(e, "%s: tensor '%s': %d dimensions (0..%d allowed)", w->path, name, ndim,
                       SAFETENSORS_MAX_DIMS), writer_fail(w);
    if (!strcmp(name, "__metadata__"))
        return err_set(e, "%s: '__metadata__' is reserved and cannot name a tensor", w->path),
               writer_fail(w);
    for (size_t i = 0; i < w->n_decls; i++)
        if (!strcmp(w->decls[i].name, name))
            return err_set(e, "%s: tensor '%s' declared twice", w->path, name), writer_fail(w);
    Decl d = {.dtype = dtype, .ndim = ndim};
    uint64_t numel = 1;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0 || __builtin_mul_overflow(numel, (uint64_t)shape[k], &numel))
            return err_set(e, "%s: tensor '%s': shape entry %d (%lld) is negative or overflows",
                           w->path, name, k, (long long)shape[k]), writer_fail(w);
        d.shape[k] = shape[k];
    }
    if (__builtin_mul_overflow(numel, (uint64_t)DTYPES[dtype].size, &d.nbytes) ||
        d.nbytes > SIZE_MAX || __builtin_add_overflow(w->data_bytes, d.nbytes, &w->data_bytes))
        return err_set(e, "%s: tensor '%s' is too large", w->path, name), writer_fail(w);
    if (w->n_decls == w->cap_decls) {
        size_t cap = w->cap_decls ? 2 * w->cap_decls : 16;
        Decl *nd = realloc(w->decls, cap * sizeof *nd);
        if (!nd) return err_set(e, "%s: out of memory", w->path), writer_fail(w);
        w->decls = nd;
        w->cap_decls = cap;
    }
    if (!(d.name = strdup(name))) return err_set(e, "%s: out of memory", w->path), writer_fail(w);
    w->decls[w->n_decls++] = d;
    return 0;
}

static int write_all(SafetensorsWriter *w, const void *data, size_t len, Err *e) {
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t r = write(w->fd, p, len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return err_set(e, "%s: write to %s failed: %s", w->path, w->tmp, strerror(errno)),
                   writer_fail(w);
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static int write_header(SafetensorsWriter *w, Err *e) {
    StrBuf b = {0};
    sb_printf(&b, "{");
    if (w->n_meta) {
        sb_printf(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) sb_printf(&b, ",");
            sb_json_string(&b, w->meta[2 * i]);
            sb_printf(&b, ":");
            sb_json_string(&b, w->meta[2 * i + 1]);
        }
        sb_printf(&b, "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_decls; i++) {
        const Decl *d = &w->decls[i];
        if (i || w->n_meta) sb_printf(&b, ",");
        sb_json_string(&b, d->name);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", DTYPES[d->dtype].name);
        for (int k = 0; k < d->ndim; k++)
            sb_printf(&b, "%s%lld", k ? "," : "", (long long)d->shape[k]);
        sb_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + d->nbytes));
        off += d->nbytes;
    }
    sb_printf(&b, "}");
    while (!b.failed && b.len % 8) sb_printf(&b, " "); // data then starts at 8 + len, aligned
    if (b.failed) {
        sb_free(&b);
        return err_set(e, "%s: out of memory for the header", w->path), writer_fail(w);
    }
    if (b.len > SAFETENSORS_MAX_HEADER) {
        sb_free(&b);
        return err_set(e, "%s: header of %zu bytes exceeds the format's limit", w->path, b.len),
               writer_fail(w);
    }
    uint8_t lenbuf[8];
    for (int k = 0; k < 8; k++) lenbuf[k] = (uint8_t)((uint64_t)b.len >> (8 * k));
    int rc = write_all(w, lenbuf, 8, e);
    if (rc == 0) rc = write_all(w, b.data, b.len, e);
    sb_free(&b);
    w->header_written = 1;
    return rc;
}

static int next_tensor(SafetensorsWriter *w, const char *name, const Decl **d, Err *e) {
    if (writer_usable(w, e)) return -1;
    if (w->next >= w->n_decls)
        return err_set(e, "%s: data for '%s' but every declared tensor already has its data",
                       w->path, name), writer_fail(w);
    *d = &w->decls[w->next];
    if (strcmp((*d)->name, name))
        return err_set(e, "%s: data for '%s' where the declared order expects '%s'", w->path,
                       name, (*d)->name), writer_fail(w);
    if (!w->header_written && write_header(w, e) != 0) return -1;
    return 0;
}

int safetensors_writer_raw(SafetensorsWriter *w, const char *name, const void *data,
                           size_t nbytes, Err *e) {
    const Decl *d;
    if (next_tensor(w, name, &d, e) != 0) return -1;
    if (nbytes != d->nbytes)
        return err_set(e, "%s: tensor '%s': %zu bytes given, its declaration needs %llu", w->path,
                       name, nbytes, (unsigned long long)d->nbytes), writer_fail(w);
    if (write_all(w, data, nbytes, e) != 0) return -1;
    w->next++;
    return 0;
}

int safetensors_writer_f32(SafetensorsWriter *w, const char *name, const float *data, Err *e) {
    const Decl *d;
    if (next_tensor(w, name, &d, e) != 0) return -1;
    if (d->dtype == ST_F32) {
        if (write_all(w, data, (size_t)d->nbytes, e) != 0) return -1;
    } else if (d->dtype == ST_F16 || d->dtype == ST_BF16) {
        uint16_t buf[CONVERT_CHUNK];
        size_t numel = (size_t)(d->nbytes / 2);
        for (size_t done = 0; done < numel;) {
            size_t k = numel - done < CONVERT_CHUNK ? numel - done : CONVERT_CHUNK;
            for (size_t j = 0; j < k; j++)
                buf[j] = d->dtype == ST_F16 ? f32_to_f16(data[done + j])
                                            : f32_to_bf16(data[done + j]);
            if (write_all(w, buf, 2 * k, e) != 0) return -1;
            done += k;
        }
    } else
        return err_set(e, "%s: tensor '%s' is declared %s; float32 data converts only to F32, "
                          "F16 or BF16", w->path, name, DTYPES[d->dtype].name), writer_fail(w);
    w->next++;
    return 0;
}

int safetensors_writer_commit(SafetensorsWriter *w, Err *e) {
    int rc = writer_usable(w, e);
    if (rc == 0 && w->next < w->n_decls)
        rc = err_set(e, "%s: tensor '%s' was declared but never given data", w->path,
                     w->decls[w->next].name), writer_fail(w);
    if (rc == 0 && !w->header_written) rc = write_header(w, e);
    if (rc == 0) {
        int fd = w->fd;
        w->fd = -1;
        if (close(fd) != 0) {
            rc = err_set(e, "%s: close of %s failed: %s", w->path, w->tmp, strerror(errno));
            unlink(w->tmp);
        } else rc = file_commit(w->tmp, w->path, e); // removes the temporary on failure
    }
    if (rc != 0) writer_fail(w);
    writer_free(w);
    return rc;
}

void safetensors_writer_abort(SafetensorsWriter *w) {
    if (!w) return;
    writer_fail(w);
    writer_free(w);
}

// ---- sharded writing ------------------------------------------------------------------------

struct SafetensorsShardedWriter {
    char *dir;
    uint64_t max_bytes;
    Decl *decls;          // every tensor, in declaration (= data) order
    size_t n_decls, cap_decls, next;
    size_t *shard_of;     // shard number of each tensor, planned at the first data call
    size_t n_shards, current; // current: the shard the open writer writes
    SafetensorsWriter *w; // the current shard's, NULL between shards
    char **meta;
    size_t n_meta;
    int dead;
};

// "model.safetensors" for a single shard, else "model-0000K-of-0000N.safetensors" (1-based).
static void shard_name(const SafetensorsShardedWriter *w, size_t k, char *buf, size_t cap) {
    if (w->n_shards == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05zu-of-%05zu.safetensors", k + 1, w->n_shards);
}

static void sharded_free(SafetensorsShardedWriter *w) {
    for (size_t i = 0; i < w->n_decls; i++) free(w->decls[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->decls);
    free(w->shard_of);
    free(w->meta);
    free(w->dir);
    free(w);
}

// Kills the writer and removes every shard committed so far, so that a failed save leaves
// no partial model behind.
static int sharded_fail(SafetensorsShardedWriter *w) {
    safetensors_writer_abort(w->w);
    w->w = NULL;
    if (!w->dead)
        for (size_t k = 0; k < w->current && k < w->n_shards; k++) {
            char name[64], *p;
            shard_name(w, k, name, sizeof name);
            if ((p = join_path(w->dir, name))) unlink(p);
            free(p);
        }
    w->dead = 1;
    return -1;
}

int safetensors_sharded_open(SafetensorsShardedWriter **out, const char *dir,
                             uint64_t max_shard_bytes, Err *e) {
    *out = NULL;
    if (max_shard_bytes == 0) return err_set(e, "%s: shard size limit must be positive", dir);
    SafetensorsShardedWriter *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return err_set(e, "%s: out of memory", dir);
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        sharded_free(w);
        return err_set(e, "%s: not an existing directory", dir);
    }
    w->max_bytes = max_shard_bytes;
    *out = w;
    return 0;
}

int safetensors_sharded_metadata(SafetensorsShardedWriter *w, const char *key, const char *value,
                                 Err *e) {
    if (w->dead) return err_set(e, "%s: sharded writer already failed", w->dir);
    if (w->shard_of)
        return err_set(e, "%s: metadata '%s' comes after tensor data", w->dir, key),
               sharded_fail(w);
    char **m = realloc(w->meta, 2 * (w->n_meta + 1) * sizeof *m);
    if (!m) return err_set(e, "%s: out of memory", w->dir), sharded_fail(w);
    w->meta = m;
    m[2 * w->n_meta] = strdup(key);
    m[2 * w->n_meta + 1] = strdup(value);
    w->n_meta++;
    if (!m[2 * w->n_meta - 2] || !m[2 * w->n_meta - 1])
        return err_set(e, "%s: out of memory", w->dir), sharded_fail(w);
    return 0;
}

int safetensors_sharded_declare(SafetensorsShardedWriter *w, const char *name,
                                SafetensorsDtype dtype, int ndim, const int64_t *shape, Err *e) {
    if (w->dead) return err_set(e, "%s: sharded writer already failed", w->dir);
    if (w->shard_of)
        return err_set(e, "%s: tensor '%s' declared after tensor data", w->dir, name),
               sharded_fail(w);
    // Shape, dtype and name checks are the shard writer's; here only the size is needed.
    if ((unsigned)dtype >= ST_N_DTYPES || ndim < 0 || ndim > SAFETENSORS_MAX_DIMS)
        return err_set(e, "%s: tensor '%s': invalid dtype or dimension count", w->dir, name),
               sharded_fail(w);
    Decl d = {.dtype = dtype, .ndim = ndim};
    uint64_t numel = 1;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0 || __builtin_mul_overflow(numel, (uint64_t)shape[k], &numel))
            return err_set(e, "%s: tensor '%s': shape entry %d (%lld) is negative or overflows",
                           w->dir, name, k, (long long)shape[k]), sharded_fail(w);
        d.shape[k] = shape[k];
    }
    if (__builtin_mul_overflow(numel, (uint64_t)DTYPES[dtype].size, &d.nbytes))
        return err_set(e, "%s: tensor '%s' is too large", w->dir, name), sharded_fail(w);
    if (w->n_decls == w->cap_decls) {
        size_t cap = w->cap_decls ? 2 * w->cap_decls : 16;
        Decl *nd = realloc(w->decls, cap * sizeof *nd);
        if (!nd) return err_set(e, "%s: out of memory", w->dir), sharded_fail(w);
        w->decls = nd;
        w->cap_decls = cap;
    }
    if (!(d.name = strdup(name))) return err_set(e, "%s: out of memory", w->dir), sharded_fail(w);
    w->decls[w->n_decls++] = d;
    return 0;
}

// Greedy in declaration order: a tensor that would push the shard past the limit starts the next.
static int sharded_plan(SafetensorsShardedWriter *w, Err *e) {
    if (!(w->shard_of = calloc(w->n_decls ? w->n_decls : 1, sizeof *w->shard_of)))
        return err_set(e, "%s: out of memory", w->dir), sharded_fail(w);
    uint64_t in_shard = 0;
    size_t k = 0;
    for (size_t i = 0; i < w->n_decls; i++) {
        if (in_shard > 0 && w->decls[i].nbytes > w->max_bytes - in_shard) {
            k++;
            in_shard = 0;
        }
        w->shard_of[i] = k;
        in_shard = w->decls[i].nbytes > w->max_bytes ? w->max_bytes : in_shard + w->decls[i].nbytes;
    }
    w->n_shards = k + 1;
    return 0;
}

// Opens the writer of shard w->current with its tensors declared and the metadata added.
static int sharded_open_shard(SafetensorsShardedWriter *w, Err *e) {
    char name[64];
    shard_name(w, w->current, name, sizeof name);
    char *p = join_path(w->dir, name);
    if (!p) return err_set(e, "%s: out of memory", w->dir), sharded_fail(w);
    int rc = safetensors_writer_open(&w->w, p, e);
    free(p);
    for (size_t m = 0; rc == 0 && m < w->n_meta; m++)
        rc = safetensors_writer_metadata(w->w, w->meta[2 * m], w->meta[2 * m + 1], e);
    for (size_t i = 0; rc == 0 && i < w->n_decls; i++)
        if (w->shard_of[i] == w->current)
            rc = safetensors_writer_declare(w->w, w->decls[i].name, w->decls[i].dtype,
                                            w->decls[i].ndim, w->decls[i].shape, e);
    return rc == 0 ? 0 : sharded_fail(w);
}

// Before tensor data: plan on the first call, then make sure the right shard is open.
static int sharded_before_data(SafetensorsShardedWriter *w, const char *name, Err *e) {
    if (w->dead) return err_set(e, "%s: sharded writer already failed", w->dir);
    if (!w->shard_of && sharded_plan(w, e) != 0) return -1;
    if (w->next >= w->n_decls)
        return err_set(e, "%s: data for '%s' but every declared tensor already has its data",
                       w->dir, name), sharded_fail(w);
    if (!w->w && sharded_open_shard(w, e) != 0) return -1;
    return 0;
}

// After tensor data: commit the shard when its last tensor is in.
static int sharded_after_data(SafetensorsShardedWriter *w, int rc, Err *e) {
    if (rc != 0) {
        w->w = NULL; // the shard writer is dead and its temporary removed; commit frees it
        return sharded_fail(w);
    }
    w->next++;
    if (w->next == w->n_decls || w->shard_of[w->next] != w->current) {
        SafetensorsWriter *sw = w->w;
        w->w = NULL;
        if (safetensors_writer_commit(sw, e) != 0) return sharded_fail(w);
        w->current++;
    }
    return 0;
}

int safetensors_sharded_f32(SafetensorsShardedWriter *w, const char *name, const float *data,
                            Err *e) {
    if (sharded_before_data(w, name, e) != 0) return -1;
    SafetensorsWriter *sw = w->w;
    int rc = safetensors_writer_f32(sw, name, data, e);
    if (rc != 0) safetensors_writer_abort(sw);
    return sharded_after_data(w, rc, e);
}

int safetensors_sharded_raw(SafetensorsShardedWriter *w, const char *name, const void *data,
                            size_t nbytes, Err *e) {
    if (sharded_before_data(w, name, e) != 0) return -1;
    SafetensorsWriter *sw = w->w;
    int rc = safetensors_writer_raw(sw, name, data, nbytes, e);
    if (rc != 0) safetensors_writer_abort(sw);
    return sharded_after_data(w, rc, e);
}

int safetensors_sharded_commit(SafetensorsShardedWriter *w, Err *e) {
    int rc = 0;
    if (w->dead) rc = err_set(e, "%s: sharded writer already failed", w->dir);
    else if (w->next < w->n_decls)
        rc = err_set(e, "%s: tensor '%s' was declared but never given data", w->dir,
                     w->decls[w->next].name), sharded_fail(w);
    else if (w->n_decls == 0) { // nothing declared: one empty model.safetensors
        if (sharded_plan(w, e) != 0 || sharded_open_shard(w, e) != 0) rc = -1;
        else {
            SafetensorsWriter *sw = w->w;
            w->w = NULL;
            rc = safetensors_writer_commit(sw, e) == 0 ? 0 : sharded_fail(w);
        }
    } else if (w->n_shards > 1) {
        uint64_t total = 0;
        for (size_t i = 0; i < w->n_decls; i++) total += w->decls[i].nbytes;
        StrBuf b = {0};
        sb_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {",
                  (unsigned long long)total);
        for (size_t i = 0; i < w->n_decls; i++) {
            char name[64];
            shard_name(w, w->shard_of[i], name, sizeof name);
            sb_printf(&b, "%s\n    ", i ? "," : "");
            sb_json_string(&b, w->decls[i].name);
            sb_printf(&b, ": \"%s\"", name);
        }
        sb_printf(&b, "\n  }\n}\n");
        char *p = join_path(w->dir, "model.safetensors.index.json");
        if (b.failed || !p) rc = err_set(e, "%s: out of memory", w->dir);
        else rc = file_write_atomic(p, b.data, b.len, e);
        if (rc != 0) sharded_fail(w);
        free(p);
        sb_free(&b);
    }
    sharded_free(w);
    return rc;
}

void safetensors_sharded_abort(SafetensorsShardedWriter *w) {
    if (!w) return;
    sharded_fail(w);
    sharded_free(w);
}
