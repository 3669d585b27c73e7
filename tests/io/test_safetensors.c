// Tests of io/safetensors: writer/reader round trips (F32 bit-exact, F16/BF16 equal to RNE
// rounding), a battery of malformed headers each rejected with a message naming the fault,
// sharded directories, and writer failures that leave nothing behind. Also the driver modes the
// Python oracle (check_safetensors.py) runs: dump FILE and convert IN OUT.
// Usage: test_io_safetensors MODE DIR | dump FILE | convert IN OUT
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "safetensors.h"

#include "check.h"

static char g_dir[1024];

static const char *in_dir(const char *name) {
    static char buf[4][1200];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// Deterministic values with the awkward cases up front: signed zero, infinities, a subnormal,
// an f16 overflow, an exact bf16 tie and values that round.
static void fill(float *x, size_t n, unsigned seed) {
    static const float special[] = {0.0f,     -0.0f,       INFINITY,    -INFINITY, 1e-40f,
                                    70000.0f, 1.00390625f, 3.14159265f, -2.5e-8f,  65519.0f};
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = i < 10 ? special[i] : ((float)(s >> 8) / 16777216.0f - 0.5f) * 8.0f;
    }
}

// ---- round trip --------------------------------------------------------------------------------

typedef struct {
    const char *name;
    SafetensorsDtype dt;
    int ndim;
    int64_t shape[4];
} Case;

static const Case CASES[] = {
    {"model.embed.weight", ST_F32, 2, {7, 5}},
    {"scalar", ST_F32, 0, {0}},
    {"empty", ST_F16, 2, {0, 4}},
    {"half.w", ST_F16, 3, {2, 3, 4}},
    {"brain.w", ST_BF16, 1, {37}},
    {"big.bf16", ST_BF16, 2, {300, 301}}, // > one conversion chunk
    {"odd.f16", ST_F16, 1, {3}},          // leaves the next tensor 2-byte aligned only
    {"after.f32", ST_F32, 1, {9}},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

static size_t numel(const Case *c) {
    size_t n = 1;
    for (int d = 0; d < c->ndim; d++)
        n *= (size_t)c->shape[d];
    return n;
}

static float expect(SafetensorsDtype dt, float x) {
    return dt == ST_F16    ? f16_to_f32(f32_to_f16(x))
           : dt == ST_BF16 ? bf16_to_f32(f32_to_bf16(x))
                           : x;
}

static int test_roundtrip(void) {
    const char *path = in_dir("rt.safetensors");
    Err e = {{0}};
    SafetensorsWriter *w;
    REQUIRE(safetensors_writer_open(&w, path, &e) == 0, "%s", e.msg);
    REQUIRE(safetensors_writer_metadata(w, "format", "pt", &e) == 0, "%s", e.msg);
    REQUIRE(safetensors_writer_metadata(w, "note", "quote \" and ü", &e) == 0, "%s", e.msg);
    for (size_t c = 0; c < N_CASES; c++)
        REQUIRE(safetensors_writer_declare(w, CASES[c].name, CASES[c].dt, CASES[c].ndim,
                                           CASES[c].shape, &e) == 0,
                "%s", e.msg);
    float *buf = malloc(300 * 301 * sizeof(float)), *got = malloc(300 * 301 * sizeof(float));
    REQUIRE(buf && got, "oom");
    for (size_t c = 0; c < N_CASES; c++) {
        fill(buf, numel(&CASES[c]), (unsigned)c);
        REQUIRE(safetensors_writer_f32(w, CASES[c].name, buf, &e) == 0, "%s", e.msg);
    }
    REQUIRE(safetensors_writer_commit(w, &e) == 0, "%s", e.msg);

    // Layout: header length a multiple of 8, padded with spaces.
    FILE *fp = fopen(path, "rb");
    REQUIRE(fp, "cannot reopen %s", path);
    uint8_t lb[8];
    REQUIRE(fread(lb, 1, 8, fp) == 8, "short");
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--)
        hlen = hlen << 8 | lb[b];
    fclose(fp);
    CHECK(hlen % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)hlen);

    SafetensorsFile *f;
    REQUIRE(safetensors_open(&f, path, &e) == 0, "%s", e.msg);
    CHECK(safetensors_count(f) == N_CASES, "%zu tensors", safetensors_count(f));
    CHECK(safetensors_metadata_count(f) == 2, "%zu metadata", safetensors_metadata_count(f));
    const char *note = safetensors_metadata_get(f, "note");
    CHECK(note && !strcmp(note, "quote \" and ü"), "note = %s", note ? note : "(null)");
    CHECK(safetensors_find(f, "nope") == -1, "found a missing tensor");
    for (size_t c = 0; c < N_CASES; c++) {
        long i = safetensors_find(f, CASES[c].name);
        REQUIRE(i == (long)c, "%s at %ld (declaration order %zu)", CASES[c].name, i, c);
        const SafetensorsTensor *t = safetensors_tensor(f, (size_t)i);
        CHECK(t->dtype == CASES[c].dt && t->ndim == CASES[c].ndim && t->numel == numel(&CASES[c]),
              "%s: dtype %s ndim %d numel %llu", t->name, safetensors_dtype_name(t->dtype), t->ndim,
              (unsigned long long)t->numel);
        for (int d = 0; d < t->ndim; d++)
            CHECK(t->shape[d] == CASES[c].shape[d], "%s dim %d", t->name, d);
        size_t n = numel(&CASES[c]);
        fill(buf, n, (unsigned)c);
        REQUIRE(safetensors_read_f32(f, (size_t)i, got, &e) == 0, "%s", e.msg);
        size_t bad = 0;
        for (size_t k = 0; k < n; k++)
            if (bits(got[k]) != bits(expect(CASES[c].dt, buf[k]))) bad++;
        CHECK(bad == 0, "%s: %zu of %zu values differ from RNE rounding", t->name, bad, n);
        // Raw bytes are the stored encoding.
        if (CASES[c].dt == ST_BF16 && n > 0) {
            uint16_t *raw = malloc(n * 2);
            REQUIRE(raw && safetensors_read_raw(f, (size_t)i, raw, &e) == 0, "%s", e.msg);
            CHECK(raw[7] == f32_to_bf16(buf[7]), "raw bf16 %04x", raw[7]);
            free(raw);
        }
    }
    safetensors_close(f);
    free(buf);
    free(got);
    return g_fail;
}

// ---- malformed files
// -----------------------------------------------------------------------------

// A file: the 8-byte length `declared` (the header's own length when UINT64_MAX), the header
// text, then data_len bytes.
static const char *write_raw_file(const char *name, const char *header, uint64_t declared,
                                  size_t data_len) {
    const char *path = in_dir(name);
    FILE *fp = fopen(path, "wb");
    if (!fp) return path;
    size_t hl = strlen(header);
    uint64_t n = declared == UINT64_MAX ? hl : declared;
    uint8_t lb[8];
    for (int k = 0; k < 8; k++)
        lb[k] = (uint8_t)(n >> (8 * k));
    fwrite(lb, 1, 8, fp);
    fwrite(header, 1, hl, fp);
    for (size_t k = 0; k < data_len; k++)
        fputc(k & 0xff, fp);
    fclose(fp);
    return path;
}

// Opening must fail with a message holding the file's name and every `want` fragment.
static void expect_rejected(const char *label, const char *path, const char *want1,
                            const char *want2) {
    Err e = {{0}};
    SafetensorsFile *f = NULL;
    int rc = safetensors_open(&f, path, &e);
    CHECK(rc != 0 && f == NULL, "%s: accepted", label);
    if (rc == 0) {
        safetensors_close(f);
        return;
    }
    CHECK(strstr(e.msg, path) != NULL, "%s: message does not name the file: %s", label, e.msg);
    CHECK(!want1 || strstr(e.msg, want1), "%s: '%s' not in: %s", label, want1, e.msg);
    CHECK(!want2 || strstr(e.msg, want2), "%s: '%s' not in: %s", label, want2, e.msg);
    printf("  %-28s %s\n", label, e.msg);
}

#define T(body) "{\"t\":{" body "}}"
#define OK_F32 "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"

static int test_malformed(void) {
    const uint64_t AS_IS = UINT64_MAX;
    // Sanity: the base case is accepted.
    {
        Err e = {{0}};
        SafetensorsFile *f;
        const char *p = write_raw_file("ok.st", T(OK_F32), AS_IS, 8);
        REQUIRE(safetensors_open(&f, p, &e) == 0, "base case rejected: %s", e.msg);
        safetensors_close(f);
    }
    // Too short to hold the length.
    {
        const char *p = in_dir("short.st");
        FILE *fp = fopen(p, "wb");
        REQUIRE(fp, "create");
        fwrite("\x10\0\0", 1, 3, fp);
        fclose(fp);
        expect_rejected("truncated length", p, "too short", NULL);
    }
    expect_rejected("N larger than the file", write_raw_file("big-n.st", T(OK_F32), 4096, 8),
                    "header length 4096", "larger than");
    expect_rejected("header not JSON", write_raw_file("notjson.st", "{\"t\": nope}", AS_IS, 0),
                    "not valid JSON", "line 1");
    expect_rejected("header not an object", write_raw_file("array.st", "[1,2]", AS_IS, 0),
                    "not a JSON object", NULL);
    expect_rejected("entry not an object", write_raw_file("entry.st", "{\"t\":3}", AS_IS, 0),
                    "tensor 't'", "not a JSON object");
    expect_rejected(
        "missing dtype",
        write_raw_file("nodtype.st", T("\"shape\":[2],\"data_offsets\":[0,8]"), AS_IS, 8),
        "tensor 't'", "missing field \"dtype\"");
    expect_rejected("missing data_offsets",
                    write_raw_file("nooffs.st", T("\"dtype\":\"F32\",\"shape\":[2]"), AS_IS, 8),
                    "tensor 't'", "missing field \"data_offsets\"");
    expect_rejected("extra field", write_raw_file("extra.st", T(OK_F32 ",\"x\":1"), AS_IS, 8),
                    "tensor 't'", "unexpected field \"x\"");
    expect_rejected(
        "dtype not a string",
        write_raw_file("dtnum.st", T("\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]"), AS_IS, 8),
        "tensor 't'", "dtype is not a string");
    expect_rejected("unknown dtype string",
                    write_raw_file("dtq.st",
                                   T("\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "unknown dtype \"Q4_K\"");
    expect_rejected("shape not an array",
                    write_raw_file("shp.st",
                                   T("\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), AS_IS,
                                   8),
                    "tensor 't'", "shape is not an array");
    expect_rejected("negative shape",
                    write_raw_file("neg.st",
                                   T("\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "shape entry 0");
    expect_rejected("fractional shape",
                    write_raw_file("frac.st",
                                   T("\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "shape entry 1");
    expect_rejected("string shape entry",
                    write_raw_file("sshape.st",
                                   T("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "shape entry 0");
    expect_rejected("too many dimensions",
                    write_raw_file("ndim.st",
                                   T("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],"
                                     "\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "9 dimensions");
    expect_rejected("shape product overflow",
                    write_raw_file("ovf.st",
                                   T("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],"
                                     "\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "overflows 64 bits");
    expect_rejected("byte size overflow",
                    write_raw_file("ovf2.st",
                                   T("\"dtype\":\"F64\",\"shape\":[4294967296,4294967295],"
                                     "\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "byte size of");
    expect_rejected("shape entry above 2^53",
                    write_raw_file("huge.st",
                                   T("\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]"),
                                   AS_IS, 8),
                    "tensor 't'", "shape entry 0");
    expect_rejected("offsets wrong type",
                    write_raw_file("offty.st",
                                   T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":\"0\""),
                                   AS_IS, 8),
                    "tensor 't'", "data_offsets is not");
    expect_rejected("offsets of three",
                    write_raw_file("off3.st",
                                   T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]"),
                                   AS_IS, 8),
                    "tensor 't'", "data_offsets is not");
    expect_rejected("offsets reversed",
                    write_raw_file("rev.st",
                                   T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]"),
                                   AS_IS, 8),
                    "tensor 't'", "reversed");
    expect_rejected("offsets out of range",
                    write_raw_file("oor.st",
                                   T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]"),
                                   AS_IS, 8),
                    "tensor 't'", "past the data region");
    expect_rejected("data region truncated", write_raw_file("trunc.st", T(OK_F32), AS_IS, 5),
                    "tensor 't'", "past the data region (5 bytes");
    expect_rejected("size mismatch",
                    write_raw_file("size.st",
                                   T("\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]"),
                                   AS_IS, 12),
                    "tensor 't'", "hold 8 bytes but shape [3] of F32 needs 12");
    expect_rejected(
        "overlapping tensors",
        write_raw_file("overlap.st",
                       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[6,10]}}",
                       AS_IS, 10),
        "'a' and 'b' overlap", NULL);
    expect_rejected("metadata not strings",
                    write_raw_file("meta.st", "{\"__metadata__\":{\"k\":1}}", AS_IS, 0),
                    "__metadata__ entry 'k'", "not a string");
    expect_rejected("duplicate tensor name",
                    write_raw_file("dup.st", "{\"t\":{" OK_F32 "},\"t\":{" OK_F32 "}}", AS_IS, 8),
                    "duplicate", NULL);
    expect_rejected("names equal up to a NUL",
                    write_raw_file("nul.st",
                                   "{\"a\\u0000x\":{" OK_F32 "},\"a\\u0000y\":{\"dtype\":\"F32\","
                                   "\"shape\":[0],\"data_offsets\":[8,8]}}",
                                   AS_IS, 8),
                    "tensor name 'a' appears twice", NULL);
    expect_rejected("header of 100 MB + 1 (claimed)", write_raw_file("hdr.st", "{}", 100000001, 0),
                    "100000001", "exceeds");
    {
        // A sparse file really holding 100 MB + 1 of header: rejected before anything is read.
        const char *p = write_raw_file("hdr-sparse.st", "{}", 100000001, 0);
        REQUIRE(truncate(p, 8 + 100000001) == 0, "truncate %s", p);
        expect_rejected("header of 100 MB + 1 (present)", p, "exceeds the 100000000-byte limit",
                        NULL);
        unlink(p);
    }
    {
        const char *p = in_dir("absent.st");
        expect_rejected("missing file", p, "cannot open", NULL);
    }

    // Accepted in the index, refused (clearly) when read as float32; raw read works.
    {
        const char *p = write_raw_file("i64.st",
                                       "{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],"
                                       "\"data_offsets\":[0,8]}}   ",
                                       AS_IS, 8);
        Err e = {{0}};
        SafetensorsFile *f;
        REQUIRE(safetensors_open(&f, p, &e) == 0, "I64 file rejected at open: %s", e.msg);
        float v;
        CHECK(safetensors_read_f32(f, 0, &v, &e) != 0 &&
                  strstr(e.msg, "tensor 'ids' has dtype I64") && strstr(e.msg, "not supported"),
              "unknown-dtype read: %s", e.msg);
        printf("  %-28s %s\n", "unsupported dtype read", e.msg);
        uint8_t raw[8];
        CHECK(safetensors_read_raw(f, 0, raw, &e) == 0 && raw[1] == 1 && raw[7] == 7, "raw: %s",
              e.msg);
        // The file shrinks after open: the read reports truncation instead of reading garbage.
        REQUIRE(truncate(p, 8 +
                                (off_t)strlen("{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],"
                                              "\"data_offsets\":[0,8]}}   ") +
                                4) == 0,
                "truncate");
        CHECK(safetensors_read_raw(f, 0, raw, &e) != 0 && strstr(e.msg, "truncated") &&
                  strstr(e.msg, "tensor 'ids'"),
              "read after truncation: %s", e.msg);
        printf("  %-28s %s\n", "truncated after open", e.msg);
        safetensors_close(f);
    }
    // Memory entry point: same validation.
    {
        Err e = {{0}};
        SafetensorsFile *f;
        const char bytes[] = "\x02\0\0\0\0\0\0\0[]";
        CHECK(safetensors_open_memory(&f, bytes, 10, "mem", &e) != 0 &&
                  strstr(e.msg, "mem: header is not a JSON object"),
              "memory: %s", e.msg);
    }
    return g_fail;
}

// ---- sharded directories
// -------------------------------------------------------------------------

static int write_tensor_file(const char *path, const char *const *names, size_t n, Err *e) {
    SafetensorsWriter *w;
    if (safetensors_writer_open(&w, path, e) != 0) return -1;
    int64_t shape[1] = {3};
    for (size_t i = 0; i < n; i++)
        if (safetensors_writer_declare(w, names[i], ST_F32, 1, shape, e) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        float v[3] = {(float)i, (float)i + 0.5f, (float)names[i][0]};
        if (safetensors_writer_f32(w, names[i], v, e) != 0) return -1;
    }
    return safetensors_writer_commit(w, e);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
}

static int test_index(void) {
    Err e = {{0}};
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/sharded", g_dir);
    mkdir(sub, 0755);
    char p1[1300], p2[1300], pj[1300];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", sub);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", sub);
    snprintf(pj, sizeof pj, "%s/model.safetensors.index.json", sub);
    char single[1300];
    snprintf(single, sizeof single, "%s/model.safetensors", sub);
    unlink(single); // left by an earlier run's last step; it would win over the index
    const char *s1[] = {"a.weight", "b.weight"}, *s2[] = {"c.weight"};
    REQUIRE(write_tensor_file(p1, s1, 2, &e) == 0, "%s", e.msg);
    REQUIRE(write_tensor_file(p2, s2, 1, &e) == 0, "%s", e.msg);
    const char *good = "{\"metadata\":{\"total_size\":36},\"weight_map\":{"
                       "\"a.weight\":\"model-00001-of-00002.safetensors\","
                       "\"c.weight\":\"model-00002-of-00002.safetensors\","
                       "\"b.weight\":\"model-00001-of-00002.safetensors\"}}";
    write_text(pj, good);
    SafetensorsIndex *x;
    REQUIRE(safetensors_index_open(&x, sub, &e) == 0, "%s", e.msg);
    CHECK(safetensors_index_shard_count(x) == 2 && safetensors_index_count(x) == 3,
          "%zu shards, %zu tensors", safetensors_index_shard_count(x), safetensors_index_count(x));
    SafetensorsFile *sf;
    size_t i;
    REQUIRE(safetensors_index_find(x, "c.weight", &sf, &i) == 0, "c.weight not found");
    float v[3];
    REQUIRE(safetensors_read_f32(sf, i, v, &e) == 0, "%s", e.msg);
    CHECK(v[0] == 0.0f && v[1] == 0.5f && v[2] == (float)'c', "c.weight = %g %g %g", v[0], v[1],
          v[2]);
    CHECK(strstr(safetensors_path(sf), "00002") != NULL, "c.weight in %s", safetensors_path(sf));
    CHECK(safetensors_index_find(x, "d.weight", &sf, &i) == -1, "found a missing tensor");
    safetensors_index_close(x);

    struct {
        const char *label, *json, *want;
    } bad[] = {
        {"shard path with '/'", "{\"weight_map\":{\"a.weight\":\"../x.safetensors\"}}",
         "not a plain file name"},
        {"shard path with '..'", "{\"weight_map\":{\"a.weight\":\"..\"}}", "not a plain file name"},
        {"mapped tensor missing",
         "{\"weight_map\":{\"z.weight\":\"model-00001-of-00002.safetensors\"}}", "lacks it"},
        {"tensor in the wrong shard",
         "{\"weight_map\":{\"a.weight\":\"model-00002-of-00002.safetensors\","
         "\"c.weight\":\"model-00001-of-00002.safetensors\"}}",
         "but it is in"},
        {"missing shard file", "{\"weight_map\":{\"a.weight\":\"gone.safetensors\"}}",
         "cannot open"},
        {"no weight_map", "{\"metadata\":{}}", "no \"weight_map\""},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_text(pj, bad[k].json);
        x = NULL;
        int rc = safetensors_index_open(&x, sub, &e);
        CHECK(rc != 0 && !x && strstr(e.msg, bad[k].want), "%s: rc %d: %s", bad[k].label, rc,
              e.msg);
        printf("  %-28s %s\n", bad[k].label, e.msg);
        safetensors_index_close(x);
    }
    // The same tensor in two shards.
    const char *dup[] = {"a.weight"};
    REQUIRE(write_tensor_file(p2, dup, 1, &e) == 0, "%s", e.msg);
    write_text(pj, "{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\","
                   "\"b.weight\":\"model-00002-of-00002.safetensors\"}}");
    CHECK(safetensors_index_open(&x, sub, &e) != 0 && strstr(e.msg, "'a.weight' is in two shards"),
          "duplicate across shards: %s", e.msg);
    printf("  %-28s %s\n", "tensor in two shards", e.msg);
    // A single model.safetensors wins over an index.
    REQUIRE(write_tensor_file(single, s2, 1, &e) == 0, "%s", e.msg);
    REQUIRE(safetensors_index_open(&x, sub, &e) == 0, "%s", e.msg);
    CHECK(safetensors_index_count(x) == 1, "single file: %zu tensors", safetensors_index_count(x));
    safetensors_index_close(x);
    return g_fail;
}

// ---- writer failures
// ------------------------------------------------------------------------------

// No "<name>.tmp-*" file and no final file in g_dir.
static int leftovers(const char *name) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *de;
    size_t len = strlen(name);
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, name, len)) n++;
    if (d) closedir(d);
    return n;
}

static int test_writer_errors(void) {
    Err e = {{0}};
    SafetensorsWriter *w;
    int64_t shape[2] = {2, 2};
    float v[4] = {1, 2, 3, 4};
    struct {
        const char *label, *want;
    } cases[] = {
        {"data out of declared order", "declared order expects 'first'"},
        {"tensor never given data", "never given data"},
        {"duplicate tensor name", "declared twice"},
        {"negative dimension", "negative"},
        {"float data for an I32 tensor", "float32 data converts only"},
        {"raw bytes of the wrong size", "3 bytes given"},
        {"metadata after data", "comes after tensor data"},
    };
    for (int k = 0; k < (int)(sizeof cases / sizeof cases[0]); k++) {
        REQUIRE(safetensors_writer_open(&w, in_dir("werr.safetensors"), &e) == 0, "%s", e.msg);
        int rc = 0;
        int64_t neg[1] = {-1};
        switch (k) {
        case 0:
            safetensors_writer_declare(w, "first", ST_F32, 2, shape, &e);
            safetensors_writer_declare(w, "second", ST_F32, 2, shape, &e);
            rc = safetensors_writer_f32(w, "second", v, &e);
            break;
        case 1:
            safetensors_writer_declare(w, "first", ST_F32, 2, shape, &e);
            rc = safetensors_writer_commit(w, &e);
            w = NULL;
            break;
        case 2:
            safetensors_writer_declare(w, "x", ST_F32, 2, shape, &e);
            rc = safetensors_writer_declare(w, "x", ST_BF16, 2, shape, &e);
            break;
        case 3:
            rc = safetensors_writer_declare(w, "x", ST_F32, 1, neg, &e);
            break;
        case 4:
            safetensors_writer_declare(w, "x", ST_I32, 2, shape, &e);
            rc = safetensors_writer_f32(w, "x", v, &e);
            break;
        case 5:
            safetensors_writer_declare(w, "x", ST_U8, 2, shape, &e);
            rc = safetensors_writer_raw(w, "x", v, 3, &e);
            break;
        case 6:
            safetensors_writer_declare(w, "x", ST_F32, 2, shape, &e);
            safetensors_writer_f32(w, "x", v, &e);
            rc = safetensors_writer_metadata(w, "k", "v", &e);
            break;
        }
        CHECK(rc != 0 && strstr(e.msg, cases[k].want), "%s: rc %d: %s", cases[k].label, rc, e.msg);
        printf("  %-28s %s\n", cases[k].label, e.msg);
        if (w) {
            // Dead writer: commit fails without creating the file.
            CHECK(safetensors_writer_commit(w, &e) != 0, "%s: commit of a dead writer succeeded",
                  cases[k].label);
        }
        CHECK(leftovers("werr.safetensors") == 0, "%s: files left behind", cases[k].label);
    }
    // Abort leaves an existing file untouched.
    const char *names[] = {"keep"};
    REQUIRE(write_tensor_file(in_dir("keep.safetensors"), names, 1, &e) == 0, "%s", e.msg);
    REQUIRE(safetensors_writer_open(&w, in_dir("keep.safetensors"), &e) == 0, "%s", e.msg);
    safetensors_writer_declare(w, "other", ST_F32, 2, shape, &e);
    safetensors_writer_f32(w, "other", v, &e);
    safetensors_writer_abort(w);
    CHECK(leftovers("keep.safetensors") == 1, "abort left a temporary file");
    SafetensorsFile *f;
    REQUIRE(safetensors_open(&f, in_dir("keep.safetensors"), &e) == 0, "%s", e.msg);
    CHECK(safetensors_find(f, "keep") == 0 && safetensors_count(f) == 1, "file was changed");
    safetensors_close(f);
    // An unwritable place is reported at open.
    CHECK(safetensors_writer_open(&w, "/nonexistent-dir/x.safetensors", &e) != 0 &&
              strstr(e.msg, "cannot create the temporary file"),
          "bad dir: %s", e.msg);
    return g_fail;
}

// ---- sharded writer --------------------------------------------------------------------------------

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

// Five 12-byte tensors under a 30-byte limit make shards {a, b}, {c, d}, {e}.
static int write_sharded(const char *dir, uint64_t limit, const char *bad_name, Err *e) {
    SafetensorsShardedWriter *w;
    if (safetensors_sharded_open(&w, dir, limit, e) != 0) return -1;
    const char *names[] = {"a", "b", "c", "d", "e"};
    int64_t shape[1] = {3};
    if (safetensors_sharded_metadata(w, "format", "pt", e) != 0) return -1;
    for (int i = 0; i < 5; i++)
        if (safetensors_sharded_declare(w, names[i], ST_F32, 1, shape, e) != 0) return -1;
    for (int i = 0; i < 5; i++) {
        float v[3] = {(float)i, 1.0f, 2.0f};
        const char *name = bad_name && i == 3 ? bad_name : names[i];
        if (safetensors_sharded_f32(w, name, v, e) != 0) {
            safetensors_sharded_abort(w);
            return -1;
        }
    }
    return safetensors_sharded_commit(w, e);
}

static int test_sharded_writer(void) {
    Err e = {{0}};
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/three", g_dir);
    mkdir(dir, 0755);
    REQUIRE(write_sharded(dir, 30, NULL, &e) == 0, "%s", e.msg);
    CHECK(count_files(dir) == 4, "%d files, want 3 shards and an index", count_files(dir));
    SafetensorsIndex *x;
    REQUIRE(safetensors_index_open(&x, dir, &e) == 0, "%s", e.msg);
    CHECK(safetensors_index_shard_count(x) == 3 && safetensors_index_count(x) == 5,
          "%zu shards, %zu tensors", safetensors_index_shard_count(x), safetensors_index_count(x));
    const char *where[] = {"00001-of-00003", "00001-of-00003", "00002-of-00003", "00002-of-00003",
                           "00003-of-00003"};
    for (int k = 0; k < 5; k++) {
        char name[2] = {(char)('a' + k), 0};
        SafetensorsFile *sf;
        size_t i;
        float v[3];
        REQUIRE(safetensors_index_find(x, name, &sf, &i) == 0, "%s missing", name);
        CHECK(strstr(safetensors_path(sf), where[k]), "%s in %s", name, safetensors_path(sf));
        CHECK(safetensors_read_f32(sf, i, v, &e) == 0 && v[0] == (float)k && v[2] == 2.0f,
              "%s: %s", name, e.msg);
        CHECK(safetensors_metadata_get(sf, "format") != NULL, "shard without metadata");
    }
    safetensors_index_close(x);
    char idx[1300];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    FILE *fp = fopen(idx, "r");
    char text[1024] = {0};
    if (fp) {
        size_t got = fread(text, 1, sizeof text - 1, fp);
        text[got] = 0;
        fclose(fp);
    }
    CHECK(strstr(text, "\"total_size\": 60"), "index lacks total_size 60: %s", text);

    // Everything fits: one model.safetensors and no index.
    snprintf(dir, sizeof dir, "%s/one", g_dir);
    mkdir(dir, 0755);
    REQUIRE(write_sharded(dir, 1 << 20, NULL, &e) == 0, "%s", e.msg);
    CHECK(count_files(dir) == 1, "%d files, want model.safetensors alone", count_files(dir));
    REQUIRE(safetensors_index_open(&x, dir, &e) == 0, "%s", e.msg);
    CHECK(safetensors_index_count(x) == 5, "%zu tensors", safetensors_index_count(x));
    safetensors_index_close(x);

    // A failure in the second shard removes the first one again.
    snprintf(dir, sizeof dir, "%s/failed", g_dir);
    mkdir(dir, 0755);
    CHECK(write_sharded(dir, 30, "zzz", &e) != 0 && strstr(e.msg, "expects 'd'"), "%s", e.msg);
    printf("  %-28s %s\n", "failed sharded save", e.msg);
    CHECK(count_files(dir) == 0, "%d files left behind", count_files(dir));
    return g_fail;
}

// ---- oracle driver modes
// --------------------------------------------------------------------------

// One line per tensor: name dtype ndim dims... then the float32 bits (hex) of each value, or
// "unsupported" for dtypes that do not convert; metadata as "meta key value" lines.
static int dump(const char *path) {
    Err e = {{0}};
    SafetensorsFile *f;
    if (safetensors_open(&f, path, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    for (size_t m = 0; m < safetensors_metadata_count(f); m++)
        printf("meta %s %s\n", safetensors_metadata_key(f, m), safetensors_metadata_value(f, m));
    for (size_t i = 0; i < safetensors_count(f); i++) {
        const SafetensorsTensor *t = safetensors_tensor(f, i);
        printf("tensor %s %s %d", t->name, safetensors_dtype_name(t->dtype), t->ndim);
        for (int d = 0; d < t->ndim; d++)
            printf(" %lld", (long long)t->shape[d]);
        float *v = malloc(t->numel * sizeof(float) + 1);
        if (!v) return 1;
        if (safetensors_read_f32(f, i, v, &e) != 0)
            printf(" : unsupported");
        else {
            printf(" :");
            for (uint64_t k = 0; k < t->numel; k++)
                printf(" %08x", bits(v[k]));
        }
        printf("\n");
        free(v);
    }
    safetensors_close(f);
    return 0;
}

// Copies IN to OUT: tensors named "f32/..", "f16/..", "bf16/.." are read as float32 and written
// in that dtype; others are copied raw in their own dtype. Metadata is copied.
static int convert(const char *in, const char *out) {
    Err e = {{0}};
    SafetensorsFile *f;
    SafetensorsWriter *w;
    if (safetensors_open(&f, in, &e) != 0 || safetensors_writer_open(&w, out, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int rc = 0;
    for (size_t m = 0; m < safetensors_metadata_count(f) && rc == 0; m++)
        rc = safetensors_writer_metadata(w, safetensors_metadata_key(f, m),
                                         safetensors_metadata_value(f, m), &e);
    size_t n = safetensors_count(f);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const SafetensorsTensor *t = safetensors_tensor(f, i);
        SafetensorsDtype dt = !strncmp(t->name, "f32/", 4)    ? ST_F32
                              : !strncmp(t->name, "f16/", 4)  ? ST_F16
                              : !strncmp(t->name, "bf16/", 5) ? ST_BF16
                                                              : t->dtype;
        rc = safetensors_writer_declare(w, t->name, dt, t->ndim, t->shape, &e);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const SafetensorsTensor *t = safetensors_tensor(f, i);
        int as_float = strchr(t->name, '/') != NULL;
        void *buf = malloc((as_float ? t->numel * 4 : t->nbytes) + 1);
        if (!buf) return 1;
        if (as_float)
            rc = safetensors_read_f32(f, i, buf, &e) || safetensors_writer_f32(w, t->name, buf, &e);
        else
            rc = safetensors_read_raw(f, i, buf, &e) ||
                 safetensors_writer_raw(w, t->name, buf, (size_t)t->nbytes, &e);
        free(buf);
    }
    safetensors_close(f);
    if (rc != 0) {
        safetensors_writer_abort(w);
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    if (safetensors_writer_commit(w, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE DIR | dump FILE | convert IN OUT\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "dump")) return dump(argv[2]);
    if (!strcmp(mode, "convert") && argc == 4) return convert(argv[2], argv[3]);
    snprintf(g_dir, sizeof g_dir, "%s/%s", argv[2], mode);
    mkdir(argv[2], 0755);
    mkdir(g_dir, 0755);
    int rc;
    if (!strcmp(mode, "roundtrip"))
        rc = test_roundtrip();
    else if (!strcmp(mode, "malformed"))
        rc = test_malformed();
    else if (!strcmp(mode, "index"))
        rc = test_index();
    else if (!strcmp(mode, "writer_errors"))
        rc = test_writer_errors();
    else if (!strcmp(mode, "sharded_writer"))
        rc = test_sharded_writer();
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    printf("%s: %s\n", mode, rc ? "FAIL" : "ok");
    return rc ? 1 : 0;
}
