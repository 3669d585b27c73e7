// HDF5 model checkpoints (design: "Checkpoint format", format_version 1): config attributes with
// HF names, one contiguous dataset per tensor at the HF name with '.' -> '/', fp32/bf16/f16 storage,
// /provenance, optional /tokenizer. Writes go to a temporary name, are fsynced and renamed.
#ifndef LETHE_CHECKPOINT_H
#define LETHE_CHECKPOINT_H

#include <stdint.h>

#include "errors.h"
#include "model_config.h"
#include "tokenizer.h"

typedef enum { DTYPE_F32 = 0, DTYPE_BF16 = 1, DTYPE_F16 = 2 } StorageDtype;

const char *dtype_name(StorageDtype dt); // "float32", "bfloat16", "float16"
int dtype_parse(const char *s, StorageDtype *dt, Err *e);

// Round-to-nearest-even conversions (NaN stays NaN), the same as PyTorch's.
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);

// Global switch for HDF5 file locking (off for NFS/Lustre mounts where locking fails).
// Also honoured: environment HDF5_USE_FILE_LOCKING=FALSE.
void ckpt_set_file_locking(int enabled);

#define CKPT_MAX_DIMS 4

// ---- writing -----------------------------------------------------------------------------
typedef struct CkptWriter CkptWriter;
// Creates "<path>.tmp-<pid>" beside path; nothing touches path until ckpt_writer_commit.
int ckpt_writer_open(CkptWriter **w, const char *path, const ModelConfig *cfg, Err *e);
// name is the HF parameter name ("model.layers.0.mlp.up_proj.weight").
int ckpt_writer_tensor(CkptWriter *w, const char *name, const float *data, int ndim,
                       const int64_t *shape, StorageDtype dt, Err *e);
// The same from bits already in the storage dtype (float32, or bf16/f16 as little-endian
// uint16): no conversion, e.g. safetensors tensors imported as they are stored.
int ckpt_writer_tensor_raw(CkptWriter *w, const char *name, const void *bits, int ndim,
                           const int64_t *shape, StorageDtype dt, Err *e);
// The same, pulled from a source in blocks of a few MiB (read, then written, while the block
// is still in the CPU's cache): src fills dst with len stored bytes from byte byte_off of the
// tensor. For importers that copy stored bits from another file.
typedef int (*CkptRawSource)(void *ctx, uint64_t byte_off, void *dst, size_t len, Err *e);
int ckpt_writer_tensor_stream(CkptWriter *w, const char *name, int ndim, const int64_t *shape,
                              StorageDtype dt, CkptRawSource src, void *ctx, Err *e);
// A text entry under /provenance (stored as a string dataset, no size limit).
int ckpt_writer_provenance(CkptWriter *w, const char *key, const char *value, Err *e);
int ckpt_writer_tokenizer(CkptWriter *w, const Tokenizer *t, Err *e);
// Closes, fsyncs, renames into place, fsyncs the directory; frees w in every case.
int ckpt_writer_commit(CkptWriter *w, Err *e);
// Removes the temporary file and frees w.
void ckpt_writer_abort(CkptWriter *w);

// ---- reading -----------------------------------------------------------------------------
typedef struct CkptReader CkptReader;
// Opens and validates root attributes (format, format_version, arch) and /config.
int ckpt_reader_open(CkptReader **r, const char *path, Err *e);
const ModelConfig *ckpt_reader_config(const CkptReader *r);
const char *ckpt_reader_path(const CkptReader *r);
int ckpt_reader_has_tensor(CkptReader *r, const char *name);
int ckpt_reader_tensor_info(CkptReader *r, const char *name, int *ndim, int64_t *shape,
                            StorageDtype *dt, Err *e);
// Reads a tensor into fp32 dst after checking that it exists, its shape equals `shape` and its
// type is one of the storage dtypes. Raw read (memory type = file type), conversion here.
int ckpt_reader_tensor(CkptReader *r, const char *name, float *dst, int ndim,
                       const int64_t *shape, Err *e);
// The stored bits (little-endian; 4 or 2 bytes per element, *dt says which) after the same
// checks; dst must hold numel * 4 bytes. For export without a round trip through float32.
int ckpt_reader_tensor_raw(CkptReader *r, const char *name, void *dst, int ndim,
                           const int64_t *shape, StorageDtype *dt, Err *e);
// *present = 0 when the file carries no /tokenizer group.
int ckpt_reader_tokenizer(CkptReader *r, Tokenizer *t, int *present, Err *e);
// Provenance keys in file order; returns count, fills up to max names (malloc'd; caller frees).
int ckpt_reader_provenance_keys(CkptReader *r, char **keys, int max);
// malloc'd text or NULL when absent.
char *ckpt_reader_provenance(CkptReader *r, const char *key);
void ckpt_reader_close(CkptReader *r);

#endif
