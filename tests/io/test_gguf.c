// Tests of io/gguf, io/gguf_quant and io/gguf_import on GGUF files built byte by byte here:
// valid v2/v3 files read back value for value (from a file and from memory), each malformed case
// rejected with a message naming the file and the fault, every truncation rejected, and the
// llama import (q/k permutation with GQA, tied embeddings, unsupported features). Also the
// driver modes of the Python oracle (check_gguf.py): dump FILE DIR and tokspec FILE.
// Usage: test_io_gguf MODE DIR | dump FILE DIR | tokspec FILE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "gguf_import.h"

#include "check.h"

static char g_dir[1024];

static const char *in_dir(const char *name) {
    static char buf[4][1200];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

// ---- a byte builder ----------------------------------------------------------------------------

typedef struct {
    uint8_t *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_header(Buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void kv_u32(Buf *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, GGUF_UINT32);
    put_u32(b, v);
}
static void kv_f32(Buf *b, const char *key, float v) {
    put_str(b, key);
    put_u32(b, GGUF_FLOAT32);
    put(b, &v, 4);
}
static void kv_str(Buf *b, const char *key, const char *v) {
    put_str(b, key);
    put_u32(b, GGUF_STRING);
    put_str(b, v);
}
static void tensor_info(Buf *b, const char *name, int nd, const uint64_t *ne, uint32_t type,
                        uint64_t offset) {
    put_str(b, name);
    put_u32(b, (uint32_t)nd);
    for (int d = 0; d < nd; d++) put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}
static void pad(Buf *b, size_t align) {
    static const uint8_t zeros[256] = {0};
    put(b, zeros, (align - b->n % align) % align);
}

static int write_file(const char *path, const Buf *b) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(b->p, 1, b->n, f);
    fclose(f);
    return w == b->n ? 0 : -1;
}

// ---- the valid file ----------------------------------------------------------------------------

// Tensor payloads with values known in closed form (checked in check_tensors).
static void f16_payload(uint8_t *p) { // 1, -2, 0.5, 65504
    static const uint16_t h[4] = {0x3C00, 0xC000, 0x3800, 0x7BFF};
    memcpy(p, h, 8);
}
static void bf16_payload(uint8_t *p) { // 1, -3.5
    static const uint16_t h[2] = {0x3F80, 0xC060};
    memcpy(p, h, 4);
}
static void q8_0_payload(uint8_t *p) { // d = 0.5, q_j = j - 16
    p[0] = 0x00;
    p[1] = 0x38;
    for (int j = 0; j < 32; j++) p[2 + j] = (uint8_t)(int8_t)(j - 16);
}
static void q4_0_payload(uint8_t *p) { // d = 2, low nibble j, high nibble 15 - j
    p[0] = 0x00;
    p[1] = 0x40;
    for (int j = 0; j < 16; j++) p[2 + j] = (uint8_t)(j | (15 - j) << 4);
}

typedef struct {
    const char *name;
    int nd;
    uint64_t ne[4];
    uint32_t type;
    size_t bytes;
} ValidTensor;

static const ValidTensor VALID_TENSORS[] = {
    {"a.f32", 2, {3, 2}, GGML_F32, 24},
    {"b.f16", 1, {4}, GGML_F16, 8},
    {"c.bf16", 1, {2}, GGML_BF16, 4},
    {"d.q8_0", 1, {32}, GGML_Q8_0, 34},
    {"e.q4_0", 3, {32, 1, 1}, GGML_Q4_0, 18},
};
#define N_VALID (sizeof VALID_TENSORS / sizeof VALID_TENSORS[0])

// A GGUF file of the given version with metadata of every value type and the tensors above;
// alignment 0 leaves general.alignment out (default 32).
static void build_valid(Buf *b, uint32_t version, uint32_t alignment) {
    const char *strs[3] = {"alpha", "", "gamma with space"};
    put_header(b, version, N_VALID, 17 + (alignment ? 1 : 0));
    kv_str(b, "general.architecture", "test");
    if (alignment) kv_u32(b, "general.alignment", alignment);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int32_t i32 = -2000000000;
    uint64_t u64 = 18000000000000000000ull;
    int64_t i64 = -9000000000000000000ll;
    double f64 = 3.0e300;
    struct { const char *key; uint32_t type; const void *v; size_t n; } scalars[] = {
        {"t.u8", GGUF_UINT8, &u8, 1},    {"t.i8", GGUF_INT8, &i8, 1},
        {"t.u16", GGUF_UINT16, &u16, 2}, {"t.i16", GGUF_INT16, &i16, 2},
        {"t.i32", GGUF_INT32, &i32, 4},  {"t.u64", GGUF_UINT64, &u64, 8},
        {"t.i64", GGUF_INT64, &i64, 8},  {"t.f64", GGUF_FLOAT64, &f64, 8},
    };
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        put_str(b, scalars[i].key);
        put_u32(b, scalars[i].type);
        put(b, scalars[i].v, scalars[i].n);
    }
    kv_u32(b, "t.u32", 4000000000u);
    kv_f32(b, "t.f32", 0.15625f);
    put_str(b, "t.bool");
    put_u32(b, GGUF_BOOL);
    put(b, "\x01", 1);
    kv_str(b, "t.str", "hello\xe2\x82\xac");
    put_str(b, "t.strs");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_STRING);
    put_u64(b, 3);
    for (int i = 0; i < 3; i++) put_str(b, strs[i]);
    int32_t ints[4] = {7, -8, 9, INT32_MIN};
    put_str(b, "t.i32s");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_INT32);
    put_u64(b, 4);
    put(b, ints, sizeof ints);
    float floats[2] = {-1.25f, 1e-3f};
    put_str(b, "t.f32s");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_FLOAT32);
    put_u64(b, 2);
    put(b, floats, sizeof floats);
    put_str(b, "t.u8s"); // an odd-sized array, so what follows is unaligned
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_UINT8);
    put_u64(b, 3);
    put(b, "\x01\x02\xff", 3);
    const uint32_t align = alignment ? alignment : 32;
    uint64_t off = 0;
    for (size_t i = 0; i < N_VALID; i++) {
        const ValidTensor *t = &VALID_TENSORS[i];
        tensor_info(b, t->name, t->nd, t->ne, t->type, off);
        off += (t->bytes + align - 1) / align * align;
    }
    pad(b, align);
    for (size_t i = 0; i < N_VALID; i++) {
        uint8_t payload[64] = {0};
        switch (i) {
        case 0:
            for (int j = 0; j < 6; j++) {
                float v = (float)(j + 1) * 1.5f;
                memcpy(payload + 4 * j, &v, 4);
            }
            break;
        case 1: f16_payload(payload); break;
        case 2: bf16_payload(payload); break;
        case 3: q8_0_payload(payload); break;
        case 4: q4_0_payload(payload); break;
        }
        put(b, payload, VALID_TENSORS[i].bytes);
        if (i + 1 < N_VALID) pad(b, align);
    }
}

static int check_metadata(const GgufFile *f) {
    Err e = {{0}};
    int64_t iv = 0;
    double dv = 0;
    int bv = 0;
    const char *s = NULL;
    size_t len = 0;
    struct { const char *key; int64_t want; } ints[] = {
        {"t.u8", 200}, {"t.i8", -100}, {"t.u16", 60000}, {"t.i16", -30000},
        {"t.u32", 4000000000ll}, {"t.i32", -2000000000}, {"t.i64", -9000000000000000000ll},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        CHECK(gguf_get_int(f, ints[i].key, &iv, &e) == 0 && iv == ints[i].want,
              "%s: got %lld (%s)", ints[i].key, (long long)iv, e.msg);
    }
    CHECK(gguf_get_int(f, "t.u64", &iv, &e) != 0 && strstr(e.msg, "does not fit"),
          "u64 above INT64_MAX: %s", e.msg);
    CHECK(gguf_get_float(f, "t.f32", &dv, &e) == 0 && dv == 0.15625, "f32: %g", dv);
    CHECK(gguf_get_float(f, "t.f64", &dv, &e) == 0 && dv == 3.0e300, "f64: %g", dv);
    CHECK(gguf_get_bool(f, "t.bool", &bv, &e) == 0 && bv == 1, "bool: %d", bv);
    CHECK(gguf_get_str(f, "t.str", &s, &len, &e) == 0 && len == 8 &&
              !strcmp(s, "hello\xe2\x82\xac"), "str: %s", s ? s : "(null)");
    CHECK(gguf_get_str(f, "t.u8", &s, &len, &e) != 0 && strstr(e.msg, "has type UINT8") &&
              strstr(e.msg, "expected STRING"), "wrong type message: %s", e.msg);
    CHECK(gguf_get_int(f, "no.such.key", &iv, &e) != 0 && strstr(e.msg, "'no.such.key' is missing"),
          "missing key message: %s", e.msg);
    const char *const *strs;
    const int *lens;
    uint64_t n = 0;
    CHECK(gguf_get_str_array(f, "t.strs", &strs, &lens, &n, &e) == 0 && n == 3 &&
              !strcmp(strs[0], "alpha") && lens[1] == 0 && !strcmp(strs[2], "gamma with space") &&
              lens[2] == 16, "string array (%s)", e.msg);
    const int32_t *iv32;
    CHECK(gguf_get_i32_array(f, "t.i32s", &iv32, &n, &e) == 0 && n == 4 && iv32[0] == 7 &&
              iv32[1] == -8 && iv32[3] == INT32_MIN, "int32 array (%s)", e.msg);
    const float *fv;
    CHECK(gguf_get_f32_array(f, "t.f32s", &fv, &n, &e) == 0 && n == 2 && fv[0] == -1.25f &&
              fv[1] == 1e-3f, "float array (%s)", e.msg);
    CHECK(gguf_get_f32_array(f, "t.i32s", &fv, &n, &e) != 0 &&
              strstr(e.msg, "is an array of INT32, expected an array of FLOAT32"),
          "array type message: %s", e.msg);
    long k = gguf_find_key(f, "t.u8s");
    CHECK(k >= 0 && gguf_kv_type(f, (size_t)k) == GGUF_ARRAY &&
              gguf_kv_elem_type(f, (size_t)k) == GGUF_UINT8 && gguf_kv_len(f, (size_t)k) == 3 &&
              gguf_kv_array_number(f, (size_t)k, 2, &dv) == 0 && dv == 255, "u8 array");
    return 0;
}

static int check_tensors(const GgufFile *f) {
    Err e = {{0}};
    REQUIRE(gguf_tensor_count(f) == N_VALID, "tensor count %zu", gguf_tensor_count(f));
    for (size_t i = 0; i < N_VALID; i++) {
        const GgufTensor *t = gguf_tensor(f, i);
        const ValidTensor *v = &VALID_TENSORS[i];
        CHECK(!strcmp(t->name, v->name) && t->type == v->type && t->n_dims == v->nd &&
                  t->nbytes == v->bytes && gguf_find_tensor(f, v->name) == (long)i &&
                  t->offset % gguf_alignment(f) == 0 && t->offset >= gguf_data_offset(f),
              "tensor %zu '%s'", i, t->name);
    }
    float y[32];
    REQUIRE(gguf_read_tensor_f32(f, 0, y, &e) == 0, "%s", e.msg);
    for (int j = 0; j < 6; j++) CHECK(y[j] == (float)(j + 1) * 1.5f, "f32[%d] = %g", j, y[j]);
    REQUIRE(gguf_read_tensor_f32(f, 1, y, &e) == 0, "%s", e.msg);
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0.5f && y[3] == 65504.0f, "f16 %g %g %g %g",
          y[0], y[1], y[2], y[3]);
    REQUIRE(gguf_read_tensor_f32(f, 2, y, &e) == 0, "%s", e.msg);
    CHECK(y[0] == 1.0f && y[1] == -3.5f, "bf16 %g %g", y[0], y[1]);
    REQUIRE(gguf_read_tensor_f32(f, 3, y, &e) == 0, "%s", e.msg);
    for (int j = 0; j < 32; j++) CHECK(y[j] == 0.5f * (float)(j - 16), "q8_0[%d] = %g", j, y[j]);
    REQUIRE(gguf_read_tensor_f32(f, 4, y, &e) == 0, "%s", e.msg);
    for (int j = 0; j < 16; j++)
        CHECK(y[j] == 2.0f * (float)(j - 8) && y[j + 16] == 2.0f * (float)(7 - j),
              "q4_0[%d] = %g, [%d] = %g", j, y[j], j + 16, y[j + 16]);
    uint8_t raw[34];
    REQUIRE(gguf_read_tensor_raw(f, 3, raw, &e) == 0, "%s", e.msg);
    CHECK(raw[1] == 0x38 && (int8_t)raw[2] == -16, "raw Q8_0 bytes");
    return 0;
}

static int test_valid(void) {
    struct { uint32_t version, alignment; } variants[] = {{2, 0}, {3, 0}, {3, 64}};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        Buf b = {0};
        build_valid(&b, variants[v].version, variants[v].alignment);
        char name[64];
        snprintf(name, sizeof name, "valid-v%u-align%u.gguf", variants[v].version,
                 variants[v].alignment ? variants[v].alignment : 32);
        const char *path = in_dir(name);
        REQUIRE(write_file(path, &b) == 0, "cannot write %s", path);
        for (int from_memory = 0; from_memory < 2; from_memory++) {
            Err e = {{0}};
            GgufFile *f = NULL;
            int rc = from_memory ? gguf_open_memory(&f, b.p, b.n, path, &e)
                                 : gguf_open(&f, path, &e);
            REQUIRE(rc == 0, "%s (%s): %s", name, from_memory ? "memory" : "file", e.msg);
            CHECK(gguf_version(f) == variants[v].version, "version %u", gguf_version(f));
            CHECK(gguf_alignment(f) == (variants[v].alignment ? variants[v].alignment : 32),
                  "alignment %u", gguf_alignment(f));
            CHECK(gguf_kv_count(f) == 17 + (variants[v].alignment ? 1u : 0u), "kv count %zu",
                  gguf_kv_count(f));
            check_metadata(f);
            check_tensors(f);
            gguf_close(f);
        }
        // Every proper prefix is rejected cleanly (the sanitizer build catches any overread).
        int accepted = 0;
        for (size_t cut = 0; cut < b.n; cut++) {
            Err e = {{0}};
            GgufFile *f = NULL;
            if (gguf_open_memory(&f, b.p, cut, "prefix", &e) == 0) {
                accepted++;
                gguf_close(f);
            } else if (!strstr(e.msg, "prefix:")) {
                CHECK(0, "prefix %zu: message does not name the file: %s", cut, e.msg);
            }
        }
        CHECK(accepted == 0, "%d truncated prefixes of %s were accepted", accepted, name);
        free(b.p);
    }
    return g_fail;
}

// ---- malformed files -----------------------------------------------------------------------------

typedef void (*Builder)(Buf *b);

static void m_short(Buf *b) { put(b, "GGUF\x03\0\0\0\0\0", 10); }
static void m_magic(Buf *b) {
    put(b, "GGML", 4);
    put_u32(b, 3);
    put_u64(b, 0);
    put_u64(b, 0);
}
static void m_version1(Buf *b) { put_header(b, 1, 0, 0); }
static void m_version9(Buf *b) { put_header(b, 9, 0, 0); }
static void m_big_endian(Buf *b) {
    put(b, "GGUF", 4);
    put_u32(b, __builtin_bswap32(3));
    put_u64(b, __builtin_bswap64(0));
    put_u64(b, __builtin_bswap64(1));
}
static void m_huge_kv_count(Buf *b) {
    put_header(b, 3, 0, 1ull << 62);
    kv_u32(b, "a", 1);
}
static void m_huge_tensor_count(Buf *b) {
    put_header(b, 3, UINT64_MAX, 0);
    put_u64(b, 0);
}
static void m_key_past_eof(Buf *b) {
    put_header(b, 3, 0, 1);
    put_u64(b, 1000);
    put(b, "general.", 8);
}
static void m_string_past_eof(Buf *b) {
    put_header(b, 3, 0, 1);
    put_str(b, "general.name");
    put_u32(b, GGUF_STRING);
    put_u64(b, 1000);
    put(b, "abc", 3);
}
static void m_unknown_type(Buf *b) {
    put_header(b, 3, 0, 1);
    put_str(b, "k");
    put_u32(b, 99);
    put_u64(b, 0);
}
static void m_nested_array(Buf *b) {
    put_header(b, 3, 0, 1);
    put_str(b, "k");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_ARRAY);
    put_u64(b, 1);
    put_u32(b, GGUF_UINT8);
    put_u64(b, 1);
    put(b, "\x01", 1);
}
static void m_array_huge_count(Buf *b) {
    put_header(b, 3, 0, 1);
    put_str(b, "k");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_UINT32);
    put_u64(b, 1ull << 61);
    put_u64(b, 0);
}
static void m_array_string_past_eof(Buf *b) {
    put_header(b, 3, 0, 1);
    put_str(b, "tokenizer.ggml.tokens");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_STRING);
    put_u64(b, 2);
    put_str(b, "a");
    put_u64(b, 500);
    put(b, "bcd", 3);
}
static void m_duplicate_key(Buf *b) {
    put_header(b, 3, 0, 2);
    kv_u32(b, "llama.block_count", 1);
    kv_u32(b, "llama.block_count", 2);
}
static void m_key_with_nul(Buf *b) {
    put_header(b, 3, 0, 1);
    put_u64(b, 3);
    put(b, "a\0b", 3);
    put_u32(b, GGUF_UINT8);
    put(b, "\x01", 1);
}
static void m_alignment_not_pow2(Buf *b) {
    put_header(b, 3, 0, 1);
    kv_u32(b, "general.alignment", 48);
}
static void m_alignment_type(Buf *b) {
    put_header(b, 3, 0, 1);
    kv_str(b, "general.alignment", "32");
}
// One tensor (name, dims, type, offset) and `data` bytes of data after the aligned header.
static void one_tensor(Buf *b, const char *name, int nd, const uint64_t *ne, uint32_t type,
                       uint64_t offset, size_t data) {
    put_header(b, 3, 1, 0);
    tensor_info(b, name, nd, ne, type, offset);
    pad(b, 32);
    for (size_t i = 0; i < data; i++) put(b, "\0", 1);
}
static void m_tensor_misaligned(Buf *b) {
    const uint64_t ne[1] = {4};
    one_tensor(b, "w", 1, ne, GGML_F32, 8, 64);
}
static void m_tensor_outside(Buf *b) {
    const uint64_t ne[1] = {32};
    one_tensor(b, "w", 1, ne, GGML_F32, 0, 64);
}
static void m_tensor_offset_huge(Buf *b) {
    const uint64_t ne[1] = {4};
    one_tensor(b, "w", 1, ne, GGML_F32, UINT64_MAX - 31, 64);
}
static void m_tensors_overlap(Buf *b) {
    const uint64_t ne[1] = {16};
    put_header(b, 3, 2, 0);
    tensor_info(b, "first", 1, ne, GGML_F32, 0);
    tensor_info(b, "second", 1, ne, GGML_F32, 32);
    pad(b, 32);
    for (int i = 0; i < 128; i++) put(b, "\0", 1);
}
static void m_duplicate_tensor(Buf *b) {
    const uint64_t ne[1] = {8};
    put_header(b, 3, 2, 0);
    tensor_info(b, "same", 1, ne, GGML_F32, 0);
    tensor_info(b, "same", 1, ne, GGML_F32, 32);
    pad(b, 32);
    for (int i = 0; i < 64; i++) put(b, "\0", 1);
}
static void m_dims_overflow(Buf *b) {
    const uint64_t ne[4] = {1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20};
    one_tensor(b, "w", 4, ne, GGML_F32, 0, 0);
}
static void m_dim_negative(Buf *b) {
    const uint64_t ne[2] = {4, (uint64_t)-1};
    one_tensor(b, "w", 2, ne, GGML_F32, 0, 0);
}
static void m_bytes_overflow(Buf *b) {
    const uint64_t ne[2] = {1ull << 31, 1ull << 31}; // 2^62 elements * 4 bytes
    one_tensor(b, "w", 2, ne, GGML_F32, 0, 0);
}
static void m_unknown_ggml_type(Buf *b) {
    const uint64_t ne[1] = {4};
    one_tensor(b, "w", 1, ne, 4, 0, 64); // Q4_2, removed from the format
}
static void m_block_size(Buf *b) {
    const uint64_t ne[1] = {48};
    one_tensor(b, "w", 1, ne, GGML_Q4_K, 0, 256);
}
static void m_n_dims(Buf *b) {
    const uint64_t ne[5] = {1, 1, 1, 1, 1};
    one_tensor(b, "w", 5, ne, GGML_F32, 0, 64);
}
static void m_long_name(Buf *b) {
    const uint64_t ne[1] = {4};
    one_tensor(b, "blk.0.a_name_that_is_far_longer_than_sixty_three_bytes_the_ggml_limit.weight",
               1, ne, GGML_F32, 0, 64);
}
static void m_empty_name(Buf *b) {
    const uint64_t ne[1] = {4};
    one_tensor(b, "", 1, ne, GGML_F32, 0, 64);
}

static const struct {
    const char *file;
    Builder build;
    const char *expect[2]; // substrings of the message
} MALFORMED[] = {
    {"truncated-header", m_short, {"shorter than the 24-byte GGUF header", NULL}},
    {"bad-magic", m_magic, {"not \"GGUF\"", NULL}},
    {"version1", m_version1, {"GGUF version 1", "not supported"}},
    {"version9", m_version9, {"GGUF version 9 is not supported", NULL}},
    {"big-endian", m_big_endian, {"big-endian", "gguf_convert_endian"}},
    {"huge-kv-count", m_huge_kv_count, {"kv_count = 4611686018427387904", "cannot hold"}},
    {"huge-tensor-count", m_huge_tensor_count, {"tensor_count = 18446744073709551615", NULL}},
    {"key-past-eof", m_key_past_eof, {"key/value 0 key", "runs past the end"}},
    {"string-past-eof", m_string_past_eof, {"key 'general.name'", "runs past the end"}},
    {"unknown-value-type", m_unknown_type, {"key 'k'", "unknown value type 99"}},
    {"nested-array", m_nested_array, {"key 'k'", "array of arrays"}},
    {"array-huge-count", m_array_huge_count, {"key 'k'", "array of 2305843009213693952 UINT32"}},
    {"array-string-past-eof", m_array_string_past_eof,
     {"key 'tokenizer.ggml.tokens' element 1", "runs past the end"}},
    {"duplicate-key", m_duplicate_key, {"key 'llama.block_count' appears twice", NULL}},
    {"key-with-nul", m_key_with_nul, {"key/value 0", "cut by a NUL"}},
    {"alignment-not-pow2", m_alignment_not_pow2, {"'general.alignment' = 48", "power of two"}},
    {"alignment-type", m_alignment_type, {"'general.alignment' has type STRING", "UINT32"}},
    {"tensor-misaligned", m_tensor_misaligned, {"tensor 'w'", "not a multiple of the alignment 32"}},
    {"tensor-outside-file", m_tensor_outside, {"tensor 'w'", "outside the file"}},
    {"tensor-offset-huge", m_tensor_offset_huge, {"tensor 'w'", "outside the file"}},
    {"tensors-overlap", m_tensors_overlap, {"tensors 'first' and 'second' overlap", NULL}},
    {"duplicate-tensor", m_duplicate_tensor, {"tensor name 'same' appears twice", NULL}},
    {"dims-overflow", m_dims_overflow, {"tensor 'w'", "overflows 63 bits"}},
    {"dim-negative", m_dim_negative, {"tensor 'w': dimension 1", "exceeds 2^63 - 1"}},
    {"bytes-overflow", m_bytes_overflow, {"tensor 'w'", "byte size overflows 64 bits"}},
    {"unknown-ggml-type", m_unknown_ggml_type, {"tensor 'w'", "unknown ggml type 4"}},
    {"block-size", m_block_size, {"dimension 0 = 48", "Q4_K block size 256"}},
    {"n-dims", m_n_dims, {"tensor 'w'", "n_dims = 5, expected 1..4"}},
    {"long-name", m_long_name, {"tensor info 0 name", "exceeds the limit of 63 bytes"}},
    {"empty-name", m_empty_name, {"tensor info 0", "empty"}},
};

static int test_malformed(void) {
    for (size_t i = 0; i < sizeof MALFORMED / sizeof MALFORMED[0]; i++) {
        Buf b = {0};
        MALFORMED[i].build(&b);
        char name[96];
        snprintf(name, sizeof name, "%s.gguf", MALFORMED[i].file);
        const char *path = in_dir(name);
        if (write_file(path, &b) != 0) {
            CHECK(0, "cannot write %s", path);
            continue;
        }
        for (int from_memory = 0; from_memory < 2; from_memory++) {
            Err e = {{0}};
            GgufFile *f = NULL;
            int rc = from_memory ? gguf_open_memory(&f, b.p, b.n, path, &e)
                                 : gguf_open(&f, path, &e);
            if (rc == 0) {
                CHECK(0, "%s was accepted", name);
                gguf_close(f);
                continue;
            }
            int ok = strstr(e.msg, path) == e.msg;
            for (int k = 0; k < 2; k++)
                if (MALFORMED[i].expect[k] && !strstr(e.msg, MALFORMED[i].expect[k])) ok = 0;
            CHECK(ok, "%s: message lacks the file name or '%s' / '%s': %s", name,
                  MALFORMED[i].expect[0], MALFORMED[i].expect[1] ? MALFORMED[i].expect[1] : "",
                  e.msg);
            if (!from_memory) printf("  %-22s %s\n", MALFORMED[i].file, e.msg + strlen(path) + 2);
        }
        free(b.p);
    }
    return g_fail;
}

// ---- llama import ----------------------------------------------------------------------------------

// A llama model with L = 1, D = 8, H = 2, KV = 1 (GQA), hd = 4, F = 6, V = 5, all F32. Weight
// element (r, c) of a PyTorch-shaped [out, in] tensor is base + 100 r + c. Options add or drop
// things for the error cases.
typedef struct {
    const char *arch;
    int drop_output;          // tied embeddings
    int drop_ffn_up;          // a missing tensor
    int extra_tensor;         // a tensor the plan does not know
    int rope_freqs;           // Llama 3.1 frequency tensor
    const char *rope_scaling; // {arch}.rope.scaling.type
    int wrong_k_shape;        // k as [H*hd, D] instead of [KV*hd, D]
    int experts;              // {arch}.expert_count
    uint32_t block_count;     // 0: 1
} ModelOpts;

typedef struct {
    const char *name;
    uint64_t out, in; // PyTorch [out, in]; in = 0 for a vector
} TinyTensor;

static void build_llama(Buf *b, const ModelOpts *o) {
    const char *arch = o->arch ? o->arch : "llama";
    char key[96];
    TinyTensor ts[16];
    int n = 0;
#define ADD(nm, a, c) ts[n++] = (TinyTensor){nm, a, c}
    ADD("token_embd.weight", 5, 8);
    ADD("blk.0.attn_norm.weight", 8, 0);
    ADD("blk.0.attn_q.weight", 8, 8);
    ADD("blk.0.attn_k.weight", o->wrong_k_shape ? 8 : 4, 8);
    ADD("blk.0.attn_v.weight", 4, 8);
    ADD("blk.0.attn_output.weight", 8, 8);
    ADD("blk.0.ffn_norm.weight", 8, 0);
    ADD("blk.0.ffn_gate.weight", 6, 8);
    if (!o->drop_ffn_up) ADD("blk.0.ffn_up.weight", 6, 8);
    ADD("blk.0.ffn_down.weight", 8, 6);
    ADD("output_norm.weight", 8, 0);
    if (!o->drop_output) ADD("output.weight", 5, 8);
    if (o->extra_tensor) ADD("blk.0.attn_rot_embd", 4, 0);
    if (o->rope_freqs) ADD("rope_freqs.weight", 2, 0);
#undef ADD
    int n_kv = 10 + (o->rope_scaling ? 1 : 0) + (o->experts ? 1 : 0);
    put_header(b, 3, (uint64_t)n, (uint64_t)n_kv);
    kv_str(b, "general.architecture", arch);
    kv_u32(b, "general.file_type", 0);
    const struct { const char *suffix; uint32_t v; } ints[] = {
        {"block_count", o->block_count ? o->block_count : 1}, {"embedding_length", 8}, {"feed_forward_length", 6},
        {"attention.head_count", 2}, {"attention.head_count_kv", 1}, {"context_length", 64}};
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, ints[i].suffix);
        kv_u32(b, key, ints[i].v);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    kv_f32(b, key, 1e-6f);
    if (o->rope_scaling) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
        kv_str(b, key, o->rope_scaling);
    }
    if (o->experts) {
        snprintf(key, sizeof key, "%s.expert_count", arch);
        kv_u32(b, key, 8);
    }
    // vocab from the token list (no {arch}.vocab_size)
    put_str(b, "tokenizer.ggml.tokens");
    put_u32(b, GGUF_ARRAY);
    put_u32(b, GGUF_STRING);
    put_u64(b, 5);
    for (int i = 0; i < 5; i++) put_str(b, (const char *[]){"<unk>", "<s>", "</s>", "a", "b"}[i]);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t ne[2] = {ts[i].in ? ts[i].in : ts[i].out, ts[i].out};
        tensor_info(b, ts[i].name, ts[i].in ? 2 : 1, ne, GGML_F32, off);
        off += (ts[i].out * (ts[i].in ? ts[i].in : 1) * 4 + 31) / 32 * 32;
    }
    pad(b, 32);
    for (int i = 0; i < n; i++) {
        uint64_t cols = ts[i].in ? ts[i].in : 1;
        for (uint64_t r = 0; r < ts[i].out; r++)
            for (uint64_t c = 0; c < cols; c++) {
                float v = (float)(1000 * i + 100 * (int)r + (int)c);
                put(b, &v, 4);
            }
        pad(b, 32);
    }
}

static int open_model(const ModelOpts *o, const char *file, GgufFile **f, GgufImport *imp,
                      Err *e) {
    Buf b = {0};
    build_llama(&b, o);
    int rc = write_file(in_dir(file), &b);
    free(b.p);
    if (rc) return err_set(e, "cannot write %s", in_dir(file));
    if (gguf_open(f, in_dir(file), e)) return -1;
    if (gguf_import_plan(*f, imp, e)) {
        gguf_close(*f);
        *f = NULL;
        return -1;
    }
    return 0;
}

static long plan_index(const GgufImport *imp, const char *name) {
    for (int k = 0; k < imp->n_tensors; k++)
        if (!strcmp(imp->tensors[k].name, name)) return k;
    return -1;
}

static int test_import(void) {
    Err e = {{0}};
    GgufFile *f = NULL;
    GgufImport imp;
    ModelOpts base = {0};
    REQUIRE(open_model(&base, "tiny-llama.gguf", &f, &imp, &e) == 0, "%s", e.msg);
    const ModelConfig *c = &imp.cfg;
    CHECK(c->num_hidden_layers == 1 && c->hidden_size == 8 && c->intermediate_size == 6 &&
              c->num_attention_heads == 2 && c->num_key_value_heads == 1 && c->head_dim == 4 &&
              c->vocab_size == 5 && c->max_position_embeddings == 64 &&
              c->rms_norm_eps == 1e-6f && c->rope_theta == 10000.0f &&
              c->tie_word_embeddings == 0 && c->attention_bias == 0 && c->bos_token_id == -1,
          "config");
    CHECK(!strcmp(imp.source_format, "gguf-v3 ALL_F32"), "source format %s", imp.source_format);
    CHECK(imp.n_tensors == 12, "%d tensors", imp.n_tensors);
    float w[64];
    // q: 2 heads of hd 4; within a head HF row k holds GGUF row src(k) = 0, 2, 1, 3.
    static const int src[4] = {0, 2, 1, 3};
    long kq = plan_index(&imp, "model.layers.0.self_attn.q_proj.weight");
    long kk = plan_index(&imp, "model.layers.0.self_attn.k_proj.weight");
    long kv = plan_index(&imp, "model.layers.0.self_attn.v_proj.weight");
    long kd = plan_index(&imp, "model.layers.0.mlp.down_proj.weight");
    REQUIRE(kq >= 0 && kk >= 0 && kv >= 0 && kd >= 0, "plan lacks q/k/v/down");
    CHECK(imp.tensors[kq].shape[0] == 8 && imp.tensors[kq].shape[1] == 8 &&
              imp.tensors[kk].shape[0] == 4 && imp.tensors[kd].shape[0] == 8 &&
              imp.tensors[kd].shape[1] == 6, "shapes");
    REQUIRE(gguf_import_read(f, &imp, (int)kq, w, &e) == 0, "%s", e.msg);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int col = 0; col < 8; col++)
                CHECK(w[(h * 4 + k) * 8 + col] == (float)(2000 + 100 * (h * 4 + src[k]) + col),
                      "q row %d col %d = %g", h * 4 + k, col, w[(h * 4 + k) * 8 + col]);
    // k has one (KV) head: permuted as one head of 4 rows, not as H = 2 heads of 2.
    REQUIRE(gguf_import_read(f, &imp, (int)kk, w, &e) == 0, "%s", e.msg);
    for (int k = 0; k < 4; k++)
        for (int col = 0; col < 8; col++)
            CHECK(w[k * 8 + col] == (float)(3000 + 100 * src[k] + col), "k row %d col %d = %g", k,
                  col, w[k * 8 + col]);
    REQUIRE(gguf_import_read(f, &imp, (int)kv, w, &e) == 0, "%s", e.msg);
    for (int k = 0; k < 4; k++) CHECK(w[k * 8] == (float)(4000 + 100 * k), "v is not permuted");
    REQUIRE(gguf_import_read(f, &imp, (int)kd, w, &e) == 0, "%s", e.msg);
    CHECK(w[1 * 6 + 5] == (float)(9000 + 100 + 5), "down [1, 5] = %g", w[11]);
    gguf_import_free(&imp);
    gguf_close(f);

    ModelOpts tied = {.drop_output = 1};
    REQUIRE(open_model(&tied, "tiny-llama-tied.gguf", &f, &imp, &e) == 0, "%s", e.msg);
    CHECK(imp.cfg.tie_word_embeddings == 1 && imp.n_tensors == 11 &&
              plan_index(&imp, "lm_head.weight") < 0, "tied embeddings");
    gguf_import_free(&imp);
    gguf_close(f);

    static const struct { ModelOpts o; const char *file, *expect; } bad[] = {
        {{.drop_ffn_up = 1}, "missing.gguf", "tensor 'blk.0.ffn_up.weight' (for model.layers.0.mlp.up_proj.weight) is missing"},
        {{.extra_tensor = 1}, "extra.gguf", "tensor 'blk.0.attn_rot_embd' is not part of a llama model"},
        {{.rope_freqs = 1}, "rope-freqs.gguf", "'rope_freqs.weight' (Llama 3.1 \"llama3\" RoPE frequency scaling) is not supported yet"},
        {{.rope_scaling = "linear"}, "rope-linear.gguf", "'llama.rope.scaling.type' = 'linear': RoPE scaling is not supported yet"},
        {{.wrong_k_shape = 1}, "k-shape.gguf", "tensor 'blk.0.attn_k.weight' has shape [8, 8] (PyTorch order), expected [4, 8]"},
        {{.arch = "gpt2"}, "gpt2.gguf", "general.architecture = 'gpt2' is not supported"},
        {{.experts = 1}, "moe.gguf", "'llama.expert_count' = 8: mixture-of-experts"},
        // found by fuzz_gguf: the plan was once sized by the config (gigabytes for this one)
        {{.block_count = 16000000}, "many-blocks.gguf", "tensor 'blk.1.attn_norm.weight' (for model.layers.1.input_layernorm.weight) is missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = open_model(&bad[i].o, bad[i].file, &f, &imp, &e);
        CHECK(rc != 0 && strstr(e.msg, in_dir(bad[i].file)) && strstr(e.msg, bad[i].expect),
              "%s: expected '%s', got: %s", bad[i].file, bad[i].expect, rc ? e.msg : "accepted");
        if (rc == 0) {
            gguf_import_free(&imp);
            gguf_close(f);
        } else {
            printf("  %-16s %s\n", bad[i].file, e.msg + strlen(in_dir(bad[i].file)) + 2);
        }
    }
    // A scaling type of "none" is no scaling.
    ModelOpts none = {.rope_scaling = "none"};
    CHECK(open_model(&none, "rope-none.gguf", &f, &imp, &e) == 0, "rope none: %s", e.msg);
    if (f) {
        gguf_import_free(&imp);
        gguf_close(f);
    }
    return g_fail;
}

// ---- oracle driver modes ---------------------------------------------------------------------------

// Every tensor as float32 into DIR/NAME.f32, and a listing "name type n_dims ne..." on stdout.
static int dump(const char *path, const char *dir) {
    Err e = {{0}};
    GgufFile *f;
    if (gguf_open(&f, path, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    mkdir(dir, 0755);
    int rc = 0;
    for (size_t i = 0; i < gguf_tensor_count(f) && rc == 0; i++) {
        const GgufTensor *t = gguf_tensor(f, i);
        float *y = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        if (!y || gguf_read_tensor_f32(f, i, y, &e)) {
            fprintf(stderr, "%s\n", y ? e.msg : "out of memory");
            rc = 1;
        } else {
            char out[1400];
            snprintf(out, sizeof out, "%s/%s.f32", dir, t->name);
            FILE *o = fopen(out, "wb");
            if (!o || fwrite(y, sizeof(float), (size_t)t->numel, o) != (size_t)t->numel) rc = 1;
            if (o) fclose(o);
            printf("%s %s %d", t->name, ggml_type_name(t->type), t->n_dims);
            for (int d = 0; d < t->n_dims; d++) printf(" %llu", (unsigned long long)t->ne[d]);
            printf("\n");
        }
        free(y);
    }
    gguf_close(f);
    return rc;
}

static void print_hex(const char *s, int n) {
    for (int i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
    printf("\n");
}

// The TokenizerSpec of FILE as text: the scalars, then "token HEX", "type N", "score X",
// "merge HEX" lines.
static int tokspec(const char *path) {
    Err e = {{0}};
    GgufFile *f;
    TokenizerSpec s;
    if (gguf_open(&f, path, &e) || gguf_tokenizer_spec(f, &s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    printf("model %s\npre %s\nn_tokens %d\nn_merges %d\nbos %d\neos %d\nunk %d\npad %d\n"
           "add_bos %d\nadd_eos %d\nadd_space_prefix %d\n",
           s.model, s.pre ? s.pre : "(none)", s.n_tokens, s.n_merges, s.bos_id, s.eos_id,
           s.unk_id, s.pad_id, s.add_bos, s.add_eos, s.add_space_prefix);
    for (int i = 0; i < s.n_tokens; i++) {
        printf("token ");
        print_hex(s.tokens[i], s.token_len[i]);
    }
    for (int i = 0; s.token_type && i < s.n_tokens; i++) printf("type %d\n", s.token_type[i]);
    for (int i = 0; s.scores && i < s.n_tokens; i++) printf("score %.9g\n", s.scores[i]);
    for (int i = 0; i < s.n_merges; i++) {
        printf("merge ");
        print_hex(s.merges[i], s.merge_len[i]);
    }
    gguf_close(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE DIR | dump FILE DIR | tokspec FILE\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "dump") && argc == 4) return dump(argv[2], argv[3]);
    if (!strcmp(mode, "tokspec")) return tokspec(argv[2]);
    snprintf(g_dir, sizeof g_dir, "%s/%s", argv[2], mode);
    mkdir(argv[2], 0755);
    mkdir(g_dir, 0755);
    int rc;
    if (!strcmp(mode, "valid"))
        rc = test_valid();
    else if (!strcmp(mode, "malformed"))
        rc = test_malformed();
    else if (!strcmp(mode, "import"))
        rc = test_import();
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    printf("%s: %s\n", mode, rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
