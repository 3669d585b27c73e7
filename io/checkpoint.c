// HDF5 model checkpoints, format_version 1 (design: "Checkpoint format"). See checkpoint.h.
//
// Tensors are stored raw: fp32 as IEEE F32LE, bf16/f16 as 2-byte HDF5 float types, always
// read and written with the memory type equal to the file type so HDF5 never converts numbers
// (its soft bf16/f16 conversion is slow and rounds differently from PyTorch); the rounding is
// done here, round-to-nearest-even. Assumes a little-endian host (x86-64, aarch64).
#include "checkpoint.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5util.h"

#define CKPT_FORMAT "lethe-checkpoint"
#define CKPT_FORMAT_VERSION 1
#define CKPT_ARCH "llama"
#define TOKENIZER_TYPE "llama2c-bpe"
// Elements converted per write call: bounds the staging buffer at 8 MiB for any tensor size.
#define WRITE_BLOCK_ELEMS ((size_t)1 << 22)

// ---- dtypes and conversions ---------------------------------------------------------------

const char *dtype_name(StorageDtype dt) {
    switch (dt) {
    case DTYPE_F32: return "float32";
    case DTYPE_BF16: return "bfloat16";
    case DTYPE_F16: return "float16";
    }
    return "unknown";
}

int dtype_parse(const char *s, StorageDtype *dt, Err *e) {
    static const struct { const char *name; StorageDtype dt; } names[] = {
        {"float32", DTYPE_F32}, {"fp32", DTYPE_F32},  {"f32", DTYPE_F32},
        {"bfloat16", DTYPE_BF16}, {"bf16", DTYPE_BF16}, {"float16", DTYPE_F16},
        {"fp16", DTYPE_F16},    {"f16", DTYPE_F16},   {"half", DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (s && strcmp(s, names[i].name) == 0) {
            *dt = names[i].dt;
            return 0;
        }
    return err_set(e, "unknown storage dtype \"%s\" (expected float32, bfloat16 or float16)",
                   s ? s : "(null)");
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// c10::BFloat16 round_to_nearest_even: every NaN becomes the canonical quiet NaN 0x7FC0.
uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

// IEEE binary16 with round-to-nearest-even, in integer arithmetic. Gives the same bits as
// PyTorch's c10::detail::fp16_ieee_from_fp32_value: NaN -> sign | 0x7E00, overflow -> inf,
// gradual underflow to subnormals, ties to even everywhere.
uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7E00u;
    if (a >= 0x47800000u) return sign | 0x7C00u;  // >= 65536 (and inf): past the largest finite
    int e = (int)(a >> 23) - 127;
    uint32_t m = a & 0x7FFFFFu;
    if (e >= -14) {  // normal half: keep 10 of the 23 mantissa bits
        uint32_t h = ((uint32_t)(e + 15) << 10) | (m >> 13);
        uint32_t rem = m & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;  // a carry may reach inf: right
        return sign | (uint16_t)h;
    }
    if (a <= 0x33000000u) return sign;  // <= 2^-25: rounds to zero (2^-25 itself ties to even 0)
    // Subnormal half: value = h * 2^-24 with h = (1.m) * 2^(e + 24) = (m | 2^23) >> (-e - 1).
    m |= 0x800000u;
    int shift = -e - 1;  // 14..24
    uint32_t h = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) h++;  // may become the smallest normal: right
    return sign | (uint16_t)h;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, u;
    if (e == 0x1F) {
        u = sign | 0x7F800000u | (m << 13);
        if (m) u |= 0x400000u;  // PyTorch's conversion quiets NaNs
    } else if (e) {
        u = sign | ((e + 112u) << 23) | (m << 13);
    } else if (!m) {
        u = sign;
    } else {  // subnormal half: normalise
        e = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        u = sign | (e << 23) | ((m & 0x3FFu) << 13);
    }
    return bits_f32(u);
}

void ckpt_set_file_locking(int enabled) { h5util_set_file_locking(enabled); }

// The HDF5 type a dtype is stored as (caller closes).
static hid_t dtype_h5type(StorageDtype dt) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0 || dt == DTYPE_F32) return t;
    herr_t rc;
    if (dt == DTYPE_BF16)
        // bfloat16: float32's sign and exponent with a 7-bit mantissa; h5py reads it as float32.
        rc = (H5Tset_fields(t, 15, 7, 8, 0, 7) < 0 || H5Tset_offset(t, 0) < 0 ||
              H5Tset_precision(t, 16) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 127) < 0)
                 ? -1
                 : 0;
    else
        // IEEE binary16, the same construction h5py uses for numpy float16.
        rc = (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_offset(t, 0) < 0 ||
              H5Tset_precision(t, 16) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0)
                 ? -1
                 : 0;
    if (rc < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

// Which storage dtype a file type is; -1 with a description of the type otherwise.
static int dtype_of_h5type(hid_t t, StorageDtype *dt, int *big_endian, char *desc, size_t n) {
    H5T_class_t cls = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    if (cls != H5T_FLOAT) {
        snprintf(desc, n, "%s type of %zu bytes",
                 cls == H5T_INTEGER  ? "an integer"
                 : cls == H5T_STRING ? "a string"
                                     : "a non-float",
                 size);
        return -1;
    }
    size_t spos, epos, esize, mpos, msize;
    H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
    size_t ebias = H5Tget_ebias(t);
    int prec = (int)H5Tget_precision(t), off = H5Tget_offset(t);
    H5T_order_t order = H5Tget_order(t);
    *big_endian = order == H5T_ORDER_BE;
    int plain = off == 0 && (order == H5T_ORDER_LE || order == H5T_ORDER_BE);
    if (plain && size == 4 && prec == 32 && spos == 31 && epos == 23 && esize == 8 &&
        mpos == 0 && msize == 23 && ebias == 127) {
        *dt = DTYPE_F32;
        return 0;
    }
    if (plain && size == 2 && prec == 16 && spos == 15 && epos == 7 && esize == 8 &&
        mpos == 0 && msize == 7 && ebias == 127) {
        *dt = DTYPE_BF16;
        return 0;
    }
    if (plain && size == 2 && prec == 16 && spos == 15 && epos == 10 && esize == 5 &&
        mpos == 0 && msize == 10 && ebias == 15) {
        *dt = DTYPE_F16;
        return 0;
    }
    snprintf(desc, n,
             "a float type of %zu bytes (exponent %zu bits, mantissa %zu bits, bias %zu)", size,
             esize, msize, ebias);
    return -1;
}

// ---- names ---------------------------------------------------------------------------------

// "model.layers.0.mlp.up_proj.weight" -> "/model/layers/0/mlp/up_proj/weight"; -1 for names
// that are not plain dotted identifiers (they could escape into other groups).
static int tensor_path(const char *name, char *out, size_t n) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len + 2 > n || name[0] == '.' || name[len - 1] == '.' || strstr(name, ".."))
        return -1;
    out[0] = '/';
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.';
        if (!ok) return -1;
        out[i + 1] = c == '.' ? '/' : c;
    }
    out[len + 1] = '\0';
    return 0;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// ---- config attributes ----------------------------------------------------------------------

typedef struct {
    const char *name;
    size_t off;
    int is_float;
} CfgKey;

static const CfgKey CFG_KEYS[] = {
    {"vocab_size", offsetof(ModelConfig, vocab_size), 0},
    {"hidden_size", offsetof(ModelConfig, hidden_size), 0},
    {"intermediate_size", offsetof(ModelConfig, intermediate_size), 0},
    {"num_hidden_layers", offsetof(ModelConfig, num_hidden_layers), 0},
    {"num_attention_heads", offsetof(ModelConfig, num_attention_heads), 0},
    {"num_key_value_heads", offsetof(ModelConfig, num_key_value_heads), 0},
    {"head_dim", offsetof(ModelConfig, head_dim), 0},
    {"rms_norm_eps", offsetof(ModelConfig, rms_norm_eps), 1},
    {"rope_theta", offsetof(ModelConfig, rope_theta), 1},
    {"max_position_embeddings", offsetof(ModelConfig, max_position_embeddings), 0},
    {"tie_word_embeddings", offsetof(ModelConfig, tie_word_embeddings), 0},
    {"attention_bias", offsetof(ModelConfig, attention_bias), 0},
    {"bos_token_id", offsetof(ModelConfig, bos_token_id), 0},
    {"eos_token_id", offsetof(ModelConfig, eos_token_id), 0},
};
#define N_CFG_KEYS (sizeof CFG_KEYS / sizeof CFG_KEYS[0])

// The shortest decimal that reads back as f, as a double: h5py then shows 1e-05, not
// 9.999999747378752e-06, and (float) of the stored double is f again.
static double float_as_short_double(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

// ---- writer --------------------------------------------------------------------------------

struct CkptWriter {
    char *path;
    char *tmp;
    hid_t file;
    hid_t prov;  // /provenance, created on first use
};

static void writer_free(CkptWriter *w) {
    free(w->path);
    free(w->tmp);
    free(w);
}

static void writer_close_h5(CkptWriter *w) {
    if (w->prov >= 0) H5Gclose(w->prov);
    w->prov = H5I_INVALID_HID;
    if (w->file >= 0) H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
}

int ckpt_writer_open(CkptWriter **wp, const char *path, const ModelConfig *cfg, Err *e) {
    *wp = NULL;
    if (model_config_validate(cfg, path, e) != 0) return -1;
    CkptWriter *w = calloc(1, sizeof *w);
    size_t ntmp = strlen(path) + 32;
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(ntmp))) {
        if (w) writer_free(w);
        return err_set(e, "%s: out of memory", path);
    }
    w->prov = H5I_INVALID_HID;
    if (h5util_create_tmp(path, w->tmp, ntmp, &w->file, e) != 0) {
        writer_free(w);
        return -1;
    }
    int rc = 0;
    hid_t g = H5I_INVALID_HID;
    if (h5util_attr_set_str(w->file, "format", CKPT_FORMAT, path, "/", e) ||
        h5util_attr_set_i32(w->file, "format_version", CKPT_FORMAT_VERSION, path, "/", e) ||
        h5util_attr_set_str(w->file, "arch", CKPT_ARCH, path, "/", e))
        rc = -1;
    if (rc == 0 && (g = H5Gcreate2(w->file, "/config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        rc = err_set(e, "%s: cannot create group /config", path);
    for (size_t i = 0; rc == 0 && i < N_CFG_KEYS; i++) {
        const char *p = (const char *)cfg + CFG_KEYS[i].off;
        if (CFG_KEYS[i].is_float) {
            float f;
            memcpy(&f, p, sizeof f);
            rc = h5util_attr_set_f64(g, CFG_KEYS[i].name, float_as_short_double(f), path,
                                     "/config", e);
        } else {
            int v;
            memcpy(&v, p, sizeof v);
            rc = h5util_attr_set_i32(g, CFG_KEYS[i].name, v, path, "/config", e);
        }
    }
    if (g >= 0) H5Gclose(g);
    if (rc != 0) {
        ckpt_writer_abort(w);
        return -1;
    }
    *wp = w;
    return 0;
}

// Writes the row block [r0, r0 + nr) of dimension 0 from a staging buffer of file-type bits.
static int write_rows(hid_t d, hid_t ftype, const void *buf, int ndim, const hsize_t *dims,
                      hsize_t r0, hsize_t nr, size_t row) {
    hid_t fs = H5Dget_space(d);
    hsize_t start[CKPT_MAX_DIMS] = {0}, count[CKPT_MAX_DIMS];
    for (int i = 0; i < ndim; i++) count[i] = dims[i];
    start[0] = r0;
    count[0] = nr;
    hsize_t m = nr * row;
    hid_t ms = H5Screate_simple(1, &m, NULL);
    herr_t rc = (fs < 0 || ms < 0 ||
                 H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0)
                    ? -1
                    : H5Dwrite(d, ftype, ms, fs, H5P_DEFAULT, buf);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc < 0 ? -1 : 0;
}

// Creates the dataset of a tensor (checks name, rank, shape, dtype, uniqueness). *n gets the
// element count; the caller writes and closes d and ftype.
static int create_tensor_dataset(CkptWriter *w, const char *name, int ndim, const int64_t *shape,
                                 StorageDtype dt, char *path, size_t pathlen, hsize_t *dims,
                                 size_t *n, hid_t *ftype_out, hid_t *d_out, Err *e) {
    if (tensor_path(name, path, pathlen) != 0)
        return err_set(e,
                       "%s: tensor name \"%s\" is not a dotted parameter name (letters, digits, "
                       "'_' and single '.' only)",
                       w->path, name ? name : "(null)");
    if (ndim < 1 || ndim > CKPT_MAX_DIMS)
        return err_set(e, "%s: %s has %d dimensions, expected 1..%d", w->path, path, ndim,
                       CKPT_MAX_DIMS);
    if (dt != DTYPE_F32 && dt != DTYPE_BF16 && dt != DTYPE_F16)
        return err_set(e, "%s: %s: unknown storage dtype %d", w->path, path, (int)dt);
    *n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 40)) {
            char s[128];
            shape_str(s, sizeof s, ndim, shape);
            return err_set(e, "%s: %s has shape %s; every dimension must be positive", w->path,
                           path, s);
        }
        dims[i] = (hsize_t)shape[i];
        *n *= (size_t)shape[i];
    }
    if (h5util_path_exists(w->file, path) != 0)
        return err_set(e, "%s: tensor %s is written twice (or its path is taken by a group)",
                       w->path, path);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t ftype = dtype_h5type(dt);
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = h5util_dcpl_contiguous();
    hid_t d = H5I_INVALID_HID;
    if (lcpl >= 0 && ftype >= 0 && sp >= 0 && dcpl >= 0 &&
        H5Pset_create_intermediate_group(lcpl, 1) >= 0)
        d = H5Dcreate2(w->file, path, ftype, sp, lcpl, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (d < 0) {
        char last[512];
        h5util_last_error(last, sizeof last, NULL, 0);
        if (ftype >= 0) H5Tclose(ftype);
        return err_set(e, "%s: cannot create dataset %s (HDF5: %s); check free disk space",
                       w->path, path, last);
    }
    *ftype_out = ftype;
    *d_out = d;
    return 0;
}

static int write_failed(CkptWriter *w, const char *path, Err *e) {
    char last[512];
    h5util_last_error(last, sizeof last, NULL, 0);
    return err_set(e, "%s: writing %s failed (HDF5: %s); check free disk space", w->path, path,
                   last);
}

int ckpt_writer_tensor(CkptWriter *w, const char *name, const float *data, int ndim,
                       const int64_t *shape, StorageDtype dt, Err *e) {
    char path[512];
    hsize_t dims[CKPT_MAX_DIMS];
    size_t n;
    hid_t ftype, d;
    if (create_tensor_dataset(w, name, ndim, shape, dt, path, sizeof path, dims, &n, &ftype, &d,
                              e))
        return -1;
    int rc = 0, h5fail = 0;
    if (dt == DTYPE_F32) {
        h5fail = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
    } else {
        // Stage RNE-rounded bits block by block and write them with the file type as memory
        // type, so HDF5 copies them untouched.
        size_t row = n / dims[0];
        size_t rows = row >= WRITE_BLOCK_ELEMS ? 1 : WRITE_BLOCK_ELEMS / row;
        if (rows > dims[0]) rows = dims[0];
        uint16_t *buf = malloc(rows * row * sizeof *buf);
        if (!buf) {
            rc = err_set(e, "%s: out of memory converting %s to %s", w->path, path,
                         dtype_name(dt));
        } else {
            for (hsize_t r0 = 0; r0 < dims[0] && !h5fail; r0 += rows) {
                hsize_t nr = dims[0] - r0 < rows ? dims[0] - r0 : rows;
                const float *src = data + r0 * row;
                size_t m = nr * row;
                if (dt == DTYPE_BF16)
                    for (size_t i = 0; i < m; i++) buf[i] = f32_to_bf16(src[i]);
                else
                    for (size_t i = 0; i < m; i++) buf[i] = f32_to_f16(src[i]);
                h5fail = write_rows(d, ftype, buf, ndim, dims, r0, nr, row) != 0;
            }
            free(buf);
        }
    }
    if (h5fail) rc = write_failed(w, path, e);
    H5Dclose(d);
    H5Tclose(ftype);
    return rc;
}

int ckpt_writer_tensor_raw(CkptWriter *w, const char *name, const void *bits, int ndim,
                           const int64_t *shape, StorageDtype dt, Err *e) {
    char path[512];
    hsize_t dims[CKPT_MAX_DIMS];
    size_t n;
    hid_t ftype, d;
    if (create_tensor_dataset(w, name, ndim, shape, dt, path, sizeof path, dims, &n, &ftype, &d,
                              e))
        return -1;
    // The file type as memory type: HDF5 copies the bits untouched (little-endian both sides).
    int rc = H5Dwrite(d, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits) < 0 ? write_failed(w, path, e)
                                                                         : 0;
    H5Dclose(d);
    H5Tclose(ftype);
    return rc;
}

// Bytes per row block of ckpt_writer_tensor_stream: small enough to stay in the CPU's cache
// between the read that fills it and the write that drains it.
#define STREAM_BLOCK_BYTES ((size_t)1 << 21)

int ckpt_writer_tensor_stream(CkptWriter *w, const char *name, int ndim, const int64_t *shape,
                              StorageDtype dt, CkptRawSource src, void *ctx, Err *e) {
    char path[512];
    hsize_t dims[CKPT_MAX_DIMS];
    size_t n;
    hid_t ftype, d;
    if (create_tensor_dataset(w, name, ndim, shape, dt, path, sizeof path, dims, &n, &ftype, &d,
                              e))
        return -1;
    const size_t esize = dt == DTYPE_F32 ? 4 : 2, row = n / dims[0], row_bytes = row * esize;
    size_t rows = row_bytes >= STREAM_BLOCK_BYTES ? 1 : STREAM_BLOCK_BYTES / row_bytes;
    if (rows > dims[0]) rows = (size_t)dims[0];
    void *buf = malloc(rows * row_bytes);
    int rc = buf ? 0 : err_set(e, "%s: out of memory staging %s", w->path, path);
    for (hsize_t r0 = 0; rc == 0 && r0 < dims[0]; r0 += rows) {
        hsize_t nr = dims[0] - r0 < rows ? dims[0] - r0 : rows;
        if (src(ctx, (uint64_t)r0 * row_bytes, buf, (size_t)nr * row_bytes, e))
            rc = -1;
        else if (write_rows(d, ftype, buf, ndim, dims, r0, nr, row) != 0)
            rc = write_failed(w, path, e);
    }
    free(buf);
    H5Dclose(d);
    H5Tclose(ftype);
    return rc;
}

static int key_ok(const char *k) {
    if (!k || !*k || strcmp(k, ".") == 0 || strcmp(k, "..") == 0) return 0;
    for (; *k; k++) {
        char c = *k;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int ckpt_writer_provenance(CkptWriter *w, const char *key, const char *value, Err *e) {
    if (!key_ok(key))
        return err_set(e, "%s: provenance key \"%s\" must be letters, digits, '_', '.' or '-'",
                       w->path, key ? key : "(null)");
    if (w->prov < 0) {
        // Track creation order so the keys read back in the order they were written.
        hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
        if (gcpl >= 0 &&
            H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED) >= 0)
            w->prov = H5Gcreate2(w->file, "/provenance", H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (gcpl >= 0) H5Pclose(gcpl);
        if (w->prov < 0) return err_set(e, "%s: cannot create group /provenance", w->path);
    }
    if (H5Lexists(w->prov, key, H5P_DEFAULT) > 0)
        return err_set(e, "%s: provenance key %s is written twice", w->path, key);
    return h5util_write_text(w->prov, key, value ? value : "", w->path, "/provenance", e);
}

// The options and arrays of kinds other than llama2.c (whose layout stays as it was): string
// attributes normalizer and pre_tokenizer, one int attribute per other option, token_flags
// uint8 [V], merge_left/merge_right int32 [n_merges] (token ids of each merge, in rank order).
static const char *const TOK_INT_OPTS[] = {"prepend_scheme", "byte_level_prefix_space",
                                           "ignore_merges", "byte_fallback", "fuse_unk",
                                           "unk_id", "add_bos", "add_eos", "add_prefix_space",
                                           "decode"};

static int *tok_int_opt(TokenizerOptions *o, int i) {
    // prepend_scheme is an enum with int-sized storage; the others are ints.
    int *f[] = {(int *)&o->prepend_scheme, &o->byte_level_prefix_space, &o->ignore_merges,
                &o->byte_fallback, &o->fuse_unk, &o->unk_id, &o->add_bos, &o->add_eos,
                &o->add_prefix_space, &o->decode};
    return f[i];
}

static int write_tokenizer_options(hid_t g, const Tokenizer *t, const char *P, Err *e) {
    TokenizerOptions o = t->opt;
    if (h5util_attr_set_str(g, "normalizer", tokenizer_normalizer_name(o.normalizer), P,
                            "/tokenizer", e) ||
        h5util_attr_set_str(g, "pre_tokenizer", tokenizer_pre_name(o.pre), P, "/tokenizer", e))
        return -1;
    for (int i = 0; i < (int)(sizeof TOK_INT_OPTS / sizeof *TOK_INT_OPTS); i++)
        if (h5util_attr_set_i32(g, TOK_INT_OPTS[i], *tok_int_opt(&o, i), P, "/tokenizer", e))
            return -1;
    int M = t->n_merges;
    int32_t *lr = malloc(((size_t)M * 2 + 1) * sizeof *lr);
    if (!lr) return err_set(e, "%s: out of memory", P);
    for (int r = 0; r < M; r++) {
        lr[r] = t->merges[2 * r];
        lr[M + r] = t->merges[2 * r + 1];
    }
    int rc = h5util_write_1d(g, "token_flags", H5T_STD_U8LE, H5T_NATIVE_UINT8, t->token_flags,
                             t->vocab_size, P, "/tokenizer/", e) ||
             h5util_write_1d(g, "merge_left", H5T_STD_I32LE, H5T_NATIVE_INT32, lr, M, P,
                             "/tokenizer/", e) ||
             h5util_write_1d(g, "merge_right", H5T_STD_I32LE, H5T_NATIVE_INT32, lr + M, M, P,
                             "/tokenizer/", e)
                 ? -1
                 : 0;
    free(lr);
    return rc;
}

// Reads what write_tokenizer_options wrote; *flags and *merges are malloc'd.
static int read_tokenizer_options(hid_t g, const char *P, int64_t V, TokenizerOptions *o,
                                  uint8_t **flags, int32_t **merges, int *n_merges, Err *e) {
    const char *W = "/tokenizer";
    char *norm = NULL, *pre = NULL;
    int rc = 0, got;
    got = h5util_attr_get_str(g, "normalizer", &norm, P, W, e);
    if (got == 0) got = h5util_attr_get_str(g, "pre_tokenizer", &pre, P, W, e);
    if (got != 0) {
        free(norm);
        free(pre);
        return got == 1 ? err_set(e, "%s: /tokenizer attribute normalizer or pre_tokenizer is "
                                     "missing", P)
                        : -1;
    }
    int ni = tokenizer_normalizer_parse(norm), pi = tokenizer_pre_parse(pre);
    if (ni < 0 || pi < 0)
        rc = err_set(e, "%s: /tokenizer normalizer \"%s\" or pre_tokenizer \"%s\" is unknown to "
                        "this version of Lethe", P, norm, pre);
    free(norm);
    free(pre);
    if (rc) return rc;
    o->normalizer = (TokenizerNormalizer)ni;
    o->pre = (TokenizerPreTokenizer)pi;
    for (int i = 0; i < (int)(sizeof TOK_INT_OPTS / sizeof *TOK_INT_OPTS); i++) {
        int64_t v;
        got = h5util_attr_get_i64(g, TOK_INT_OPTS[i], &v, P, W, e);
        if (got == 1) return err_set(e, "%s: /tokenizer attribute %s is missing", P, TOK_INT_OPTS[i]);
        if (got < 0) return -1;
        if (v < -1 || v > (1 << 24)) return err_set(e, "%s: /tokenizer attribute %s = %lld is out "
                                                      "of range", P, TOK_INT_OPTS[i], (long long)v);
        *tok_int_opt(o, i) = (int)v;
    }
    hid_t df = H5I_INVALID_HID, dl = H5I_INVALID_HID, dr = H5I_INVALID_HID;
    int64_t nf = 0, nl = 0, nr = 0;
    if (h5util_open_1d(g, "token_flags", H5T_INTEGER, &df, &nf, P, "/tokenizer/", e) ||
        h5util_open_1d(g, "merge_left", H5T_INTEGER, &dl, &nl, P, "/tokenizer/", e) ||
        h5util_open_1d(g, "merge_right", H5T_INTEGER, &dr, &nr, P, "/tokenizer/", e))
        rc = -1;
    if (rc == 0 && (nf != V || nl != nr || nl >= (1 << 24)))
        rc = err_set(e, "%s: /tokenizer/token_flags has %lld entries (expected %lld) or "
                        "merge_left/merge_right differ in length (%lld, %lld)",
                     P, (long long)nf, (long long)V, (long long)nl, (long long)nr);
    int32_t *lr = NULL;
    if (rc == 0) {
        *flags = malloc((size_t)V);
        lr = malloc(((size_t)nl * 2 + 1) * sizeof *lr);
        *merges = malloc(((size_t)nl * 2 + 1) * sizeof **merges);
        if (!*flags || !lr || !*merges) rc = err_set(e, "%s: out of memory", P);
    }
    if (rc == 0 && (H5Dread(df, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, *flags) < 0 ||
                    (nl > 0 && (H5Dread(dl, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                        lr) < 0 ||
                                H5Dread(dr, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                        lr + nl) < 0))))
        rc = err_set(e, "%s: reading /tokenizer merges or token_flags failed; the file is "
                        "damaged", P);
    if (rc == 0) {
        for (int64_t r = 0; r < nl; r++) {
            (*merges)[2 * r] = lr[r];
            (*merges)[2 * r + 1] = lr[nl + r];
        }
        *n_merges = (int)nl;
    }
    free(lr);
    if (df >= 0) H5Dclose(df);
    if (dl >= 0) H5Dclose(dl);
    if (dr >= 0) H5Dclose(dr);
    return rc;
}

int ckpt_writer_tokenizer(CkptWriter *w, const Tokenizer *t, Err *e) {
    const char *P = w->path;
    int V = t->vocab_size;
    if (V <= 0) return err_set(e, "%s: tokenizer has vocab_size %d", P, V);
    if (H5Lexists(w->file, "/tokenizer", H5P_DEFAULT) > 0)
        return err_set(e, "%s: /tokenizer is written twice", P);
    int64_t *off = malloc(((size_t)V + 1) * sizeof *off);
    if (!off) return err_set(e, "%s: out of memory", P);
    off[0] = 0;
    for (int i = 0; i < V; i++) off[i + 1] = off[i] + t->piece_len[i];
    uint8_t *bytes = malloc(off[V] ? (size_t)off[V] : 1);
    if (!bytes) {
        free(off);
        return err_set(e, "%s: out of memory", P);
    }
    for (int i = 0; i < V; i++) memcpy(bytes + off[i], t->pieces[i], (size_t)t->piece_len[i]);
    char digest[65];
    tokenizer_digest(t, digest);
    int rc = 0;
    hid_t g = H5Gcreate2(w->file, "/tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) rc = err_set(e, "%s: cannot create group /tokenizer", P);
    if (rc == 0 &&
        (h5util_attr_set_str(g, "type", tokenizer_kind_name(t), P, "/tokenizer", e) ||
         h5util_attr_set_i32(g, "vocab_size", V, P, "/tokenizer", e) ||
         h5util_attr_set_i32(g, "max_token_length", t->max_token_length, P, "/tokenizer", e) ||
         h5util_attr_set_i32(g, "bos_id", t->bos_id, P, "/tokenizer", e) ||
         h5util_attr_set_i32(g, "eos_id", t->eos_id, P, "/tokenizer", e) ||
         h5util_attr_set_str(g, "digest", digest, P, "/tokenizer", e) ||
         h5util_write_1d(g, "scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->scores, V, P,
                         "/tokenizer/", e) ||
         h5util_write_1d(g, "piece_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, off, V + 1, P,
                         "/tokenizer/", e) ||
         h5util_write_1d(g, "piece_bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, bytes, off[V], P,
                         "/tokenizer/", e)))
        rc = -1;
    if (rc == 0 && t->opt.kind != TOKENIZER_LLAMA2C) rc = write_tokenizer_options(g, t, P, e);
    if (g >= 0) H5Gclose(g);
    free(bytes);
    free(off);
    return rc;
}

int ckpt_writer_commit(CkptWriter *w, Err *e) {
    if (w->prov >= 0) H5Gclose(w->prov);
    w->prov = H5I_INVALID_HID;
    herr_t rc = H5Fclose(w->file);
    w->file = H5I_INVALID_HID;
    if (rc < 0) {
        char last[512];
        h5util_last_error(last, sizeof last, NULL, 0);
        err_set(e, "%s: closing the temporary file %s failed (HDF5: %s); check free disk space",
                w->path, w->tmp, last);
        unlink(w->tmp);
        writer_free(w);
        return -1;
    }
    int r = h5util_commit(w->tmp, w->path, e);
    writer_free(w);
    return r;
}

void ckpt_writer_abort(CkptWriter *w) {
    if (!w) return;
    writer_close_h5(w);
    unlink(w->tmp);
    writer_free(w);
}

// ---- reader --------------------------------------------------------------------------------

struct CkptReader {
    char *path;
    hid_t file;
    ModelConfig cfg;
};

static int reader_check_root(CkptReader *r, Err *e) {
    const char *P = r->path;
    char *s = NULL;
    int rc = h5util_attr_get_str(r->file, "format", &s, P, "/", e);
    if (rc == 1)
        return err_set(e,
                       "%s: root attribute \"format\" is missing: not a lethe checkpoint "
                       "(expected format = \"%s\"; convert the model with `lethe convert`)",
                       P, CKPT_FORMAT);
    if (rc < 0) return -1;
    if (strcmp(s, CKPT_FORMAT) != 0) {
        err_set(e, "%s: root attribute format is \"%s\", expected \"%s\"%s", P, s, CKPT_FORMAT,
                strcmp(s, "lethe-tokens") == 0 ? " (this is a token dataset, not a checkpoint)"
                                               : "");
        free(s);
        return -1;
    }
    free(s);
    int64_t ver = 0;
    rc = h5util_attr_get_i64(r->file, "format_version", &ver, P, "/", e);
    if (rc == 1) return err_set(e, "%s: root attribute format_version is missing", P);
    if (rc < 0) return -1;
    if (ver > CKPT_FORMAT_VERSION)
        return err_set(e,
                       "%s: format_version %lld was written by a newer lethe (this build reads "
                       "version %d); upgrade lethe",
                       P, (long long)ver, CKPT_FORMAT_VERSION);
    if (ver < 1)
        return err_set(e, "%s: format_version %lld is not valid (expected %d)", P,
                       (long long)ver, CKPT_FORMAT_VERSION);
    rc = h5util_attr_get_str(r->file, "arch", &s, P, "/", e);
    if (rc == 1) return err_set(e, "%s: root attribute arch is missing (expected \"llama\")", P);
    if (rc < 0) return -1;
    if (strcmp(s, CKPT_ARCH) != 0) {
        err_set(e, "%s: arch \"%s\" is not supported (this build reads \"%s\")", P, s, CKPT_ARCH);
        free(s);
        return -1;
    }
    free(s);
    return 0;
}

static int reader_read_config(CkptReader *r, Err *e) {
    const char *P = r->path;
    if (H5Lexists(r->file, "/config", H5P_DEFAULT) <= 0)
        return err_set(e, "%s: group /config is missing; the checkpoint is incomplete", P);
    hid_t g = H5Gopen2(r->file, "/config", H5P_DEFAULT);
    if (g < 0) return err_set(e, "%s: /config is not a group", P);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < N_CFG_KEYS; i++) {
        char *p = (char *)&r->cfg + CFG_KEYS[i].off;
        const char *k = CFG_KEYS[i].name;
        int got;
        if (CFG_KEYS[i].is_float) {
            double d = 0;
            got = h5util_attr_get_f64(g, k, &d, P, "/config", e);
            float f = (float)d;
            if (got == 0) memcpy(p, &f, sizeof f);
        } else {
            int64_t v = 0;
            got = h5util_attr_get_i64(g, k, &v, P, "/config", e);
            if (got == 0 && (v < INT_MIN || v > INT_MAX))
                got = err_set(e, "%s: /config attribute %s = %lld does not fit an int", P, k,
                              (long long)v);
            int iv = (int)v;
            if (got == 0) memcpy(p, &iv, sizeof iv);
        }
        if (got == 1)
            rc = err_set(e,
                         "%s: /config attribute %s is missing (every HF config key of format "
                         "version 1 is required)",
                         P, k);
        else if (got < 0)
            rc = -1;
    }
    H5Gclose(g);
    if (rc != 0) return -1;
    return model_config_validate(&r->cfg, P, e);
}

int ckpt_reader_open(CkptReader **rp, const char *path, Err *e) {
    *rp = NULL;
    CkptReader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return err_set(e, "%s: out of memory", path);
    }
    if (h5util_open_read(path, &r->file, e) != 0) {
        free(r->path);
        free(r);
        return -1;
    }
    if (reader_check_root(r, e) != 0 || reader_read_config(r, e) != 0) {
        ckpt_reader_close(r);
        return -1;
    }
    *rp = r;
    return 0;
}

const ModelConfig *ckpt_reader_config(const CkptReader *r) { return &r->cfg; }

const char *ckpt_reader_path(const CkptReader *r) { return r->path; }

// Opens the dataset at path; 1 when absent (no message), -1 when it is not a dataset.
static int open_dataset(CkptReader *r, const char *path, hid_t *d, Err *e) {
    *d = H5I_INVALID_HID;
    int ex = h5util_path_exists(r->file, path);
    if (ex < 0) {
        char last[512];
        h5util_last_error(last, sizeof last, NULL, 0);
        return err_set(e, "%s: looking up %s: the file is truncated or damaged (HDF5: %s)",
                       r->path, path, last);
    }
    if (ex == 0) return 1;
    hid_t o = H5Oopen(r->file, path, H5P_DEFAULT);
    if (o < 0) return err_set(e, "%s: cannot open %s", r->path, path);
    if (H5Iget_type(o) != H5I_DATASET) {
        H5Oclose(o);
        return err_set(e, "%s: %s is a group, expected a tensor dataset", r->path, path);
    }
    *d = o;
    return 0;
}

int ckpt_reader_has_tensor(CkptReader *r, const char *name) {
    char path[512];
    hid_t d;
    if (tensor_path(name, path, sizeof path) != 0) return 0;
    if (open_dataset(r, path, &d, NULL) != 0) return 0;
    H5Oclose(d);
    return 1;
}

// Rank, dims and storage dtype of an open tensor dataset.
static int dataset_info(CkptReader *r, hid_t d, const char *path, int *ndim, int64_t *shape,
                        StorageDtype *dt, int *big_endian, Err *e) {
    hid_t sp = H5Dget_space(d);
    int rank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    hsize_t dims[H5S_MAX_RANK];
    if (rank > 0 && rank <= CKPT_MAX_DIMS) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (rank < 1 || rank > CKPT_MAX_DIMS)
        return err_set(e, "%s: %s has rank %d, expected 1..%d", r->path, path, rank,
                       CKPT_MAX_DIMS);
    *ndim = rank;
    for (int i = 0; i < rank; i++) shape[i] = (int64_t)dims[i];
    hid_t t = H5Dget_type(d);
    char desc[160];
    int rc = dtype_of_h5type(t, dt, big_endian, desc, sizeof desc);
    H5Tclose(t);
    if (rc != 0)
        return err_set(e,
                       "%s: %s is stored as %s, expected float32, bfloat16 or float16; "
                       "convert the checkpoint again",
                       r->path, path, desc);
    return 0;
}

static int missing_tensor(CkptReader *r, const char *path, int ndim, const int64_t *shape,
                          Err *e) {
    char s[160] = "";
    if (shape && ndim > 0) {
        char sh[128];
        shape_str(sh, sizeof sh, ndim, shape);
        snprintf(s, sizeof s, " (expected shape %s)", sh);
    }
    return err_set(e,
                   "%s: tensor %s is missing%s; the checkpoint is incomplete or was written for "
                   "another config",
                   r->path, path, s);
}

int ckpt_reader_tensor_info(CkptReader *r, const char *name, int *ndim, int64_t *shape,
                            StorageDtype *dt, Err *e) {
    char path[512];
    if (tensor_path(name, path, sizeof path) != 0)
        return err_set(e, "%s: \"%s\" is not a dotted parameter name", r->path, name);
    hid_t d;
    int rc = open_dataset(r, path, &d, e);
    if (rc == 1) return missing_tensor(r, path, 0, NULL, e);
    if (rc < 0) return -1;
    int be;
    rc = dataset_info(r, d, path, ndim, shape, dt, &be, e);
    H5Oclose(d);
    return rc;
}

static void swap16(uint16_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint16_t)(p[i] << 8 | p[i] >> 8);
}

// Checks that the bytes a contiguous dataset needs are allocated and inside the file, so a
// truncated file gets a plain message before HDF5 reads past its end.
static int check_storage(CkptReader *r, hid_t d, const char *path, size_t bytes, Err *e) {
    hid_t dcpl = H5Dget_create_plist(d);
    H5D_layout_t layout = dcpl < 0 ? H5D_LAYOUT_ERROR : H5Pget_layout(dcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    // Chunked or compact datasets (other tools' files) have no single extent; HDF5 checks them.
    if (layout != H5D_CONTIGUOUS) return 0;
    hsize_t stored = H5Dget_storage_size(d);
    haddr_t off = H5Dget_offset(d);
    if (stored == 0 || off == HADDR_UNDEF)
        return err_set(e,
                       "%s: %s has no data (its storage was never written); the checkpoint is "
                       "incomplete",
                       r->path, path);
    if (stored != bytes)
        return err_set(e,
                       "%s: reading %s: the file is truncated or damaged (the dataset stores "
                       "%llu bytes, its shape and type need %zu)",
                       r->path, path, (unsigned long long)stored, bytes);
    struct stat st;
    if (stat(r->path, &st) != 0)
        return err_set(e, "%s: reading %s: %s", r->path, path, strerror(errno));
    if ((unsigned long long)off + bytes > (unsigned long long)st.st_size)
        return err_set(e,
                       "%s: reading %s: the file is truncated or damaged (the tensor's %zu bytes "
                       "at offset %llu end past the end of the file, which is %lld bytes)",
                       r->path, path, bytes, (unsigned long long)off, (long long)st.st_size);
    return 0;
}

// Opens tensor `name` for a read into a buffer of `shape`: it must exist with that shape, a
// storage dtype, and all its bytes inside the file. *d is open on success (the caller closes it).
static int open_tensor_for_read(CkptReader *r, const char *name, int ndim, const int64_t *shape,
                                char *path, size_t pathlen, hid_t *d, StorageDtype *dt,
                                int *big_endian, size_t *numel, Err *e) {
    if (tensor_path(name, path, pathlen) != 0)
        return err_set(e, "%s: \"%s\" is not a dotted parameter name", r->path, name);
    int rc = open_dataset(r, path, d, e);
    if (rc == 1) return missing_tensor(r, path, ndim, shape, e);
    if (rc < 0) return -1;
    int fdim;
    int64_t fshape[CKPT_MAX_DIMS];
    rc = dataset_info(r, *d, path, &fdim, fshape, dt, big_endian, e);
    if (rc == 0) {
        int same = fdim == ndim;
        for (int i = 0; same && i < ndim; i++) same = fshape[i] == shape[i];
        if (!same) {
            char a[128], b[128];
            shape_str(a, sizeof a, fdim, fshape);
            shape_str(b, sizeof b, ndim, shape);
            rc = err_set(e, "%s: %s has shape %s, expected %s", r->path, path, a, b);
        }
    }
    *numel = 1;
    for (int i = 0; rc == 0 && i < ndim; i++) *numel *= (size_t)shape[i];
    if (rc == 0) rc = check_storage(r, *d, path, *numel * (*dt == DTYPE_F32 ? 4 : 2), e);
    if (rc != 0) {
        H5Oclose(*d);
        return -1;
    }
    return 0;
}

int ckpt_reader_tensor(CkptReader *r, const char *name, float *dst, int ndim,
                       const int64_t *shape, Err *e) {
    char path[512];
    hid_t d;
    StorageDtype dt;
    int be, rc = 0;
    size_t n;
    if (open_tensor_for_read(r, name, ndim, shape, path, sizeof path, &d, &dt, &be, &n, e))
        return -1;
    // One read of the raw bits. 2-byte types land in the upper half of dst and are widened in
    // place front to back: float i overwrites only 2-byte slots < i, which are consumed already.
    unsigned char *base = (unsigned char *)dst;
    hid_t mtype = H5Dget_type(d);
    herr_t hr;
    if (dt == DTYPE_F32)
        hr = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
    else
        hr = mtype < 0 ? -1 : H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, base + 2 * n);
    if (hr < 0) {
        char last[512];
        h5util_last_error(last, sizeof last, NULL, 0);
        rc = err_set(e, "%s: reading %s: the file is truncated or damaged (HDF5: %s)", r->path,
                     path, last);
    }
    if (mtype >= 0) H5Tclose(mtype);
    H5Oclose(d);
    if (rc != 0 || dt == DTYPE_F32) return rc;
    if (be) swap16((uint16_t *)(void *)(base + 2 * n), n);
    // Byte copies (not uint16_t/float lvalues) keep the compiler from reordering the
    // overlapping loads and stores.
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, base + 2 * n + 2 * i, 2);
        float f = dt == DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        memcpy(base + 4 * i, &f, 4);
    }
    return 0;
}

int ckpt_reader_tensor_raw(CkptReader *r, const char *name, void *dst, int ndim,
                           const int64_t *shape, StorageDtype *dt_out, Err *e) {
    char path[512];
    hid_t d;
    StorageDtype dt;
    int be, rc = 0;
    size_t n;
    if (open_tensor_for_read(r, name, ndim, shape, path, sizeof path, &d, &dt, &be, &n, e))
        return -1;
    hid_t mtype = H5Dget_type(d);
    if (mtype < 0 || H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        char last[512];
        h5util_last_error(last, sizeof last, NULL, 0);
        rc = err_set(e, "%s: reading %s: the file is truncated or damaged (HDF5: %s)", r->path,
                     path, last);
    }
    if (mtype >= 0) H5Tclose(mtype);
    H5Oclose(d);
    if (rc != 0) return -1;
    if (be && dt == DTYPE_F32) {
        uint32_t *p = dst;
        for (size_t i = 0; i < n; i++) p[i] = __builtin_bswap32(p[i]);
    } else if (be) {
        swap16(dst, n);
    }
    *dt_out = dt;
    return 0;
}

int ckpt_reader_tokenizer(CkptReader *r, Tokenizer *t, int *present, Err *e) {
    const char *P = r->path;
    *present = 0;
    if (H5Lexists(r->file, "/tokenizer", H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(r->file, "/tokenizer", H5P_DEFAULT);
    if (g < 0) return err_set(e, "%s: /tokenizer is not a group", P);
    const char *W = "/tokenizer";
    char *type = NULL, *digest = NULL;
    int64_t V = 0, maxlen = 0, bos = 0, eos = 0, nscores = 0, noff = 0, nbytes = 0;
    hid_t ds = H5I_INVALID_HID, dof = H5I_INVALID_HID, dby = H5I_INVALID_HID;
    float *scores = NULL;
    int64_t *off = NULL;
    char *bytes = NULL, **pieces = NULL;
    int *lens = NULL;
    int rc = 0, got;
    const char *keys[] = {"type", "digest"};
    char **svals[] = {&type, &digest};
    for (int i = 0; rc == 0 && i < 2; i++) {
        got = h5util_attr_get_str(g, keys[i], svals[i], P, W, e);
        if (got == 1) rc = err_set(e, "%s: /tokenizer attribute %s is missing", P, keys[i]);
        else if (got < 0) rc = -1;
    }
    const char *ikeys[] = {"vocab_size", "max_token_length", "bos_id", "eos_id"};
    int64_t *ivals[] = {&V, &maxlen, &bos, &eos};
    for (int i = 0; rc == 0 && i < 4; i++) {
        got = h5util_attr_get_i64(g, ikeys[i], ivals[i], P, W, e);
        if (got == 1) rc = err_set(e, "%s: /tokenizer attribute %s is missing", P, ikeys[i]);
        else if (got < 0) rc = -1;
    }
    int kind = rc == 0 ? tokenizer_kind_parse(type) : -1;
    if (rc == 0 && kind < 0)
        rc = err_set(e, "%s: /tokenizer type \"%s\" is not supported (expected \"%s\", "
                        "\"gguf-spm-scores\", \"hf-bpe-bytelevel\" or \"hf-bpe-sentencepiece\")",
                     P, type, TOKENIZER_TYPE);
    TokenizerOptions opt = {.kind = (TokenizerKind)(kind < 0 ? 0 : kind)};
    uint8_t *flags = NULL;
    int32_t *merges = NULL;
    int n_merges = 0;
    if (rc == 0 && kind != TOKENIZER_LLAMA2C)
        rc = read_tokenizer_options(g, P, V, &opt, &flags, &merges, &n_merges, e);
    if (rc == 0 && (V <= 0 || V > (1 << 24) || maxlen < 0 || maxlen > (1 << 20) ||
                    bos < -1 || bos >= V || eos < -1 || eos >= V))
        rc = err_set(e,
                     "%s: /tokenizer attributes out of range (vocab_size %lld, max_token_length "
                     "%lld, bos_id %lld, eos_id %lld)",
                     P, (long long)V, (long long)maxlen, (long long)bos, (long long)eos);
    if (rc == 0 &&
        (h5util_open_1d(g, "scores", H5T_FLOAT, &ds, &nscores, P, "/tokenizer/", e) ||
         h5util_open_1d(g, "piece_offsets", H5T_INTEGER, &dof, &noff, P, "/tokenizer/", e) ||
         h5util_open_1d(g, "piece_bytes", H5T_INTEGER, &dby, &nbytes, P, "/tokenizer/", e)))
        rc = -1;
    if (rc == 0 && (nscores != V || noff != V + 1))
        rc = err_set(e,
                     "%s: /tokenizer/scores has %lld entries and /tokenizer/piece_offsets %lld, "
                     "expected %lld and %lld (vocab_size)",
                     P, (long long)nscores, (long long)noff, (long long)V, (long long)V + 1);
    if (rc == 0) {
        scores = malloc((size_t)V * sizeof *scores);
        off = malloc((size_t)(V + 1) * sizeof *off);
        bytes = malloc((size_t)nbytes + (size_t)V + 1);
        pieces = malloc((size_t)V * sizeof *pieces);
        lens = malloc((size_t)V * sizeof *lens);
        if (!scores || !off || !bytes || !pieces || !lens)
            rc = err_set(e, "%s: out of memory reading /tokenizer", P);
    }
    if (rc == 0 && (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scores) < 0 ||
                    H5Dread(dof, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off) < 0 ||
                    (nbytes > 0 && H5Dread(dby, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                           bytes) < 0))) {
        char last[512];
        h5util_last_error(last, sizeof last, NULL, 0);
        rc = err_set(e, "%s: reading /tokenizer: the file is truncated or damaged (HDF5: %s)", P,
                     last);
    }
    if (rc == 0 && (off[0] != 0 || off[V] != nbytes))
        rc = err_set(e,
                     "%s: /tokenizer/piece_offsets runs from %lld to %lld, expected 0 to %lld "
                     "(the length of /tokenizer/piece_bytes)",
                     P, (long long)off[0], (long long)off[V], (long long)nbytes);
    for (int64_t i = 0; rc == 0 && i < V; i++)
        if (off[i + 1] < off[i] || off[i + 1] - off[i] > INT_MAX)
            rc = err_set(e, "%s: /tokenizer/piece_offsets[%lld] = %lld is below [%lld] = %lld", P,
                         (long long)i + 1, (long long)off[i + 1], (long long)i,
                         (long long)off[i]);
    if (rc == 0) {
        // NUL-terminated copies: piece i moves right by i bytes to make room for terminators.
        for (int64_t i = V - 1; i >= 0; i--) {
            lens[i] = (int)(off[i + 1] - off[i]);
            memmove(bytes + off[i] + i, bytes + off[i], (size_t)lens[i]);
            bytes[off[i] + i + lens[i]] = '\0';
            pieces[i] = bytes + off[i] + i;
        }
        rc = kind == TOKENIZER_LLAMA2C
                 ? tokenizer_init(t, (int)V, (int)maxlen, (const char *const *)pieces, lens,
                                  scores, (int)bos, (int)eos, e)
                 : tokenizer_build(t, &opt, (int)V, (const char *const *)pieces, lens, scores,
                                   flags, n_merges, merges, (int)bos, (int)eos, e);
        if (rc != 0) err_prefix(e, "%s: /tokenizer", P);
    }
    if (rc == 0) {
        char hex[65];
        tokenizer_digest(t, hex);
        if (strcmp(hex, digest) != 0) {
            tokenizer_free(t);
            rc = err_set(e,
                         "%s: /tokenizer digest %s does not match its contents (%s); the file "
                         "is damaged",
                         P, digest, hex);
        }
    }
    if (ds >= 0) H5Dclose(ds);
    if (dof >= 0) H5Dclose(dof);
    if (dby >= 0) H5Dclose(dby);
    H5Gclose(g);
    free(type);
    free(digest);
    free(scores);
    free(off);
    free(bytes);
    free(pieces);
    free(lens);
    free(flags);
    free(merges);
    if (rc == 0) *present = 1;
    return rc;
}

typedef struct {
    char **keys;
    int max, count;
} KeyList;

static herr_t key_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    KeyList *k = data;
    if (k->count < k->max) k->keys[k->count] = strdup(name);
    k->count++;
    return 0;
}

int ckpt_reader_provenance_keys(CkptReader *r, char **keys, int max) {
    if (H5Lexists(r->file, "/provenance", H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(r->file, "/provenance", H5P_DEFAULT);
    if (g < 0) return 0;
    KeyList k = {keys, max, 0};
    hsize_t idx = 0;
    // Creation order when the group tracks it (our writer), name order otherwise (h5py).
    if (H5Literate(g, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, key_cb, &k) < 0) {
        for (int i = 0; i < k.count && i < max; i++) free(keys[i]);
        k.count = 0;
        idx = 0;
        H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, key_cb, &k);
    }
    H5Gclose(g);
    return k.count;
}

char *ckpt_reader_provenance(CkptReader *r, const char *key) {
    if (!key_ok(key)) return NULL;
    if (H5Lexists(r->file, "/provenance", H5P_DEFAULT) <= 0) return NULL;
    hid_t g = H5Gopen2(r->file, "/provenance", H5P_DEFAULT);
    if (g < 0) return NULL;
    char *s = NULL;
    if (H5Lexists(g, key, H5P_DEFAULT) > 0)
        s = h5util_read_text(g, key, r->path, "/provenance", NULL);
    H5Gclose(g);
    return s;
}

void ckpt_reader_close(CkptReader *r) {
    if (!r) return;
    if (r->file >= 0) H5Fclose(r->file);
    free(r->path);
    free(r);
}
