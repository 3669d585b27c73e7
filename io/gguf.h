// GGUF files (ggml's model format, versions 2 and 3, little-endian): a reader that checks every
// count, length, offset and shape against the file before trusting it, typed metadata getters,
// and tensor reads as stored or dequantised to float32 (gguf_quant.h).
#ifndef LETHE_GGUF_H
#define LETHE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "gguf_quant.h"

#define GGUF_MAX_DIMS 4           // GGML_MAX_DIMS
#define GGUF_MAX_NAME 64          // GGML_MAX_NAME: a tensor name is at most 63 bytes
#define GGUF_MAX_KEY 65535        // bytes of a metadata key
#define GGUF_DEFAULT_ALIGNMENT 32 // when general.alignment is absent

// Metadata value types (gguf_type in ggml's gguf.h).
typedef enum {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4,
    GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9,
    GGUF_UINT64 = 10, GGUF_INT64 = 11, GGUF_FLOAT64 = 12, GGUF_N_VALUE_TYPES = 13
} GgufValueType;

const char *gguf_value_type_name(uint32_t t); // "UINT8", ..., "?" for an unknown id

typedef struct {
    const char *name;             // NUL-terminated, at most GGUF_MAX_NAME - 1 bytes
    uint32_t type;                // GgmlType
    int n_dims;                   // 1..GGUF_MAX_DIMS
    uint64_t ne[GGUF_MAX_DIMS];   // GGUF order: innermost (contiguous) first; unused dims are 1
    uint64_t numel, nbytes;
    uint64_t offset;              // of the first byte from the start of the file
} GgufTensor;

typedef struct GgufFile GgufFile;

// Reads and validates everything before the tensor data: magic "GGUF"; version 2 or 3 (a
// big-endian file, version 1 or an unknown version is rejected with a message saying which);
// tensor and key/value counts that the remaining bytes could hold; keys and strings whose
// lengths lie inside the file; known value types; arrays of scalars or strings (arrays of arrays
// are rejected, as ggml rejects them); no duplicate key; general.alignment, when present, a
// UINT32 power of two; per tensor: a unique name of 1..63 bytes without NUL, 1..4 dims whose
// element count and byte size do not overflow, a known ggml type whose block size divides ne[0],
// an offset that is a multiple of the alignment, and bytes that lie inside the file and overlap
// no other tensor's. Errors name the file, the key or tensor, and the fault.
// The file stays open (read with pread) until gguf_close; nothing is mapped or read twice.
int gguf_open(GgufFile **out, const char *path, Err *e);
// The same on bytes held in memory (borrowed: they must outlive the handle); `name` stands for
// the path in errors. The fuzz target's entry point.
int gguf_open_memory(GgufFile **out, const void *bytes, size_t len, const char *name, Err *e);
void gguf_close(GgufFile *f); // NULL is fine

const char *gguf_path(const GgufFile *f);
uint32_t gguf_version(const GgufFile *f);
uint64_t gguf_file_size(const GgufFile *f);
uint32_t gguf_alignment(const GgufFile *f);
uint64_t gguf_data_offset(const GgufFile *f); // start of the (aligned) tensor data section

// ---- metadata -------------------------------------------------------------------------------
size_t gguf_kv_count(const GgufFile *f);
const char *gguf_kv_key(const GgufFile *f, size_t i);    // NULL when out of range
uint32_t gguf_kv_type(const GgufFile *f, size_t i);      // GgufValueType
uint32_t gguf_kv_elem_type(const GgufFile *f, size_t i); // element type of an array
uint64_t gguf_kv_len(const GgufFile *f, size_t i);       // array length; 1 for a scalar
long gguf_find_key(const GgufFile *f, const char *key);  // -1 when absent

// Scalar getters. Each returns 0, or -1 with a message naming the file and key when the key is
// absent or its value does not fit: gguf_get_int takes any integer type (a UINT64 above
// INT64_MAX is an error), gguf_get_float FLOAT32/FLOAT64, gguf_get_bool BOOL (0/1),
// gguf_get_str STRING (NUL-terminated copy; *len, when not NULL, its length, which may be
// shorter than strlen when the value holds a NUL).
int gguf_get_int(const GgufFile *f, const char *key, int64_t *v, Err *e);
int gguf_get_float(const GgufFile *f, const char *key, double *v, Err *e);
int gguf_get_bool(const GgufFile *f, const char *key, int *v, Err *e);
int gguf_get_str(const GgufFile *f, const char *key, const char **s, size_t *len, Err *e);

// Array getters, pointing into the handle's memory (valid until gguf_close). Strings: n
// NUL-terminated copies and their byte lengths. Numbers: the elements of a FLOAT32 or an INT32
// array as stored (aligned copies); another element type is an error naming it.
int gguf_get_str_array(const GgufFile *f, const char *key, const char *const **strs,
                       const int **lens, uint64_t *n, Err *e);
int gguf_get_f32_array(const GgufFile *f, const char *key, const float **v, uint64_t *n, Err *e);
int gguf_get_i32_array(const GgufFile *f, const char *key, const int32_t **v, uint64_t *n,
                       Err *e);
// Element j of array i as a number, whatever the numeric or bool element type (-1 for a string
// array or j out of range). For dumps and the fuzz target.
int gguf_kv_array_number(const GgufFile *f, size_t i, uint64_t j, double *v);
// The value of scalar key i as a number (-1 for a string or an array).
int gguf_kv_number(const GgufFile *f, size_t i, double *v);

// ---- tensors -----------------------------------------------------------------------------------
size_t gguf_tensor_count(const GgufFile *f);
const GgufTensor *gguf_tensor(const GgufFile *f, size_t i); // in file order; NULL out of range
long gguf_find_tensor(const GgufFile *f, const char *name); // -1 when absent
// Tensor i's nbytes stored bytes, unchanged.
int gguf_read_tensor_raw(const GgufFile *f, size_t i, void *dst, Err *e);
// Tensor i as numel float32 values in GGUF element order (ne[0] fastest), dequantised exactly as
// ggml does. A type without a dequantiser is an error naming it. Reads in chunks: besides dst
// this needs at most a few MiB.
int gguf_read_tensor_f32(const GgufFile *f, size_t i, float *dst, Err *e);

#endif
