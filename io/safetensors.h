// Hugging Face safetensors files (https://huggingface.co/docs/safetensors): a header reader that
// treats every byte as hostile, tensor reads to float32 or as stored, sharded directories, and a
// streaming writer that commits atomically (temporary name, fsync, rename).
#ifndef LETHE_SAFETENSORS_H
#define LETHE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#define SAFETENSORS_MAX_DIMS 8
// The reference implementation's limit (MAX_HEADER_SIZE); a longer header is rejected unread.
#define SAFETENSORS_MAX_HEADER 100000000ULL

// Every dtype string of the format with a whole number of bytes per element. Only F32, F16 and
// BF16 convert to float32; the others are indexed and can be read raw.
typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16,
    ST_U8, ST_BOOL, ST_F8_E4M3, ST_F8_E5M2, ST_C64, ST_N_DTYPES
} SafetensorsDtype;

const char *safetensors_dtype_name(SafetensorsDtype dt); // "F32", "BF16", ...
size_t safetensors_dtype_size(SafetensorsDtype dt);      // bytes per element

typedef struct {
    const char *name;
    SafetensorsDtype dtype;
    int ndim;                              // 0 for a scalar
    int64_t shape[SAFETENSORS_MAX_DIMS];
    uint64_t numel;                        // product of shape (1 for a scalar)
    uint64_t nbytes;                       // numel * dtype size
    uint64_t offset;                       // of the first byte from the start of the file
} SafetensorsTensor;

// ---- reading -------------------------------------------------------------------------------

typedef struct SafetensorsFile SafetensorsFile;

// Reads and validates the header only: 8-byte little-endian length N <= SAFETENSORS_MAX_HEADER
// and N <= file size - 8; a JSON object whose members are "__metadata__" (string -> string) and
// tensors {"dtype", "shape", "data_offsets"} with nothing else; known dtype; at most
// SAFETENSORS_MAX_DIMS whole non-negative dims; offsets [begin, end], begin <= end, end inside
// the data region, end - begin == numel * dtype size (all overflow-checked in uint64); no two
// tensors' bytes overlap. Holes and trailing bytes in the data region are tolerated. Errors name
// the file, the tensor and the fault. The file stays open for reads until safetensors_close.
int safetensors_open(SafetensorsFile **out, const char *path, Err *e);
// The same validation on a whole file held in memory (borrowed: it must outlive the handle);
// reads then copy from it. `name` stands for the path in errors. The fuzz target's entry point.
int safetensors_open_memory(SafetensorsFile **out, const void *bytes, size_t len,
                            const char *name, Err *e);
void safetensors_close(SafetensorsFile *f); // NULL is fine

const char *safetensors_path(const SafetensorsFile *f);
size_t safetensors_count(const SafetensorsFile *f);
// Tensor i in header (document) order; NULL when out of range. Valid until close.
const SafetensorsTensor *safetensors_tensor(const SafetensorsFile *f, size_t i);
// Index of the tensor called name, or -1.
long safetensors_find(const SafetensorsFile *f, const char *name);
// "__metadata__" entries in document order (0 when the header has none).
size_t safetensors_metadata_count(const SafetensorsFile *f);
const char *safetensors_metadata_key(const SafetensorsFile *f, size_t i);
const char *safetensors_metadata_value(const SafetensorsFile *f, size_t i);
const char *safetensors_metadata_get(const SafetensorsFile *f, const char *key); // NULL absent

// Tensor i as numel float32 values (F32 as is, F16/BF16 widened exactly); any other dtype is an
// error naming it. A short read (file truncated since open) is an error.
int safetensors_read_f32(SafetensorsFile *f, size_t i, float *out, Err *e);
// Tensor i's nbytes stored bytes, unchanged (little-endian, as in the file).
int safetensors_read_raw(SafetensorsFile *f, size_t i, void *out, Err *e);

// len stored bytes of tensor i from byte byte_off of its data (a part of safetensors_read_raw).
int safetensors_read_raw_range(SafetensorsFile *f, size_t i, uint64_t byte_off, void *out,
                               size_t len, Err *e);
// Asks the kernel to start reading tensor i in the background (posix_fadvise WILLNEED), so a
// reader that handles tensors one by one overlaps the next read with its own work. Advisory.
void safetensors_prefetch(SafetensorsFile *f, size_t i);

// ---- sharded directories --------------------------------------------------------------------

typedef struct SafetensorsIndex SafetensorsIndex;

// DIR/model.safetensors when it exists, else DIR/model.safetensors.index.json: its "weight_map"
// (tensor name -> shard file) must name plain files in DIR (no '/', no ".."), every mapped
// tensor must be in its shard, and no tensor may be in two shards. Tensors a shard holds but
// the map leaves out are still indexed (the map is only checked, not trusted).
int safetensors_index_open(SafetensorsIndex **out, const char *dir, Err *e);
void safetensors_index_close(SafetensorsIndex *x); // NULL is fine
size_t safetensors_index_shard_count(const SafetensorsIndex *x);
size_t safetensors_index_count(const SafetensorsIndex *x); // tensors over all shards
// Tensor k (0 <= k < count, sorted by name): its shard and index there. -1 when out of range.
int safetensors_index_tensor(const SafetensorsIndex *x, size_t k, SafetensorsFile **shard,
                             size_t *i);
// The shard holding name and its index there; -1 when no shard has it.
int safetensors_index_find(const SafetensorsIndex *x, const char *name, SafetensorsFile **shard,
                           size_t *i);

// ---- writing --------------------------------------------------------------------------------

typedef struct SafetensorsWriter SafetensorsWriter;

// Streaming: the header comes first in the file and holds every tensor's offsets, so all tensors
// are declared (safetensors_writer_declare, in data order) before the first data call; each
// data call then writes the next declared tensor straight to disk, so no tensor is held in
// memory. The header lists "__metadata__" first and then the tensors in declaration order
// (deterministic; the reference sorts by dtype then name, which readers do not require), and is
// padded with spaces so the data starts 8-byte aligned. Tensors are packed without gaps, so
// declare wider dtypes first when element alignment matters. The file is "<path>.tmp-<pid>"
// until commit. After any error the writer is dead: the temporary is already removed, later
// calls fail, and commit or abort must still be called to free it.
int safetensors_writer_open(SafetensorsWriter **out, const char *path, Err *e);
int safetensors_writer_metadata(SafetensorsWriter *w, const char *key, const char *value,
                                Err *e);
int safetensors_writer_declare(SafetensorsWriter *w, const char *name, SafetensorsDtype dtype,
                               int ndim, const int64_t *shape, Err *e);
// Data of the next declared tensor, which must be called name: from float32 (to F32 as is, to
// F16/BF16 rounded to nearest even as PyTorch does) or the stored bytes (nbytes of them).
int safetensors_writer_f32(SafetensorsWriter *w, const char *name, const float *data, Err *e);
int safetensors_writer_raw(SafetensorsWriter *w, const char *name, const void *data,
                           size_t nbytes, Err *e);
// Every declared tensor must have had its data. Closes, fsyncs, renames into place, frees w.
int safetensors_writer_commit(SafetensorsWriter *w, Err *e);
// Removes the temporary file and frees w; path is untouched. NULL is fine.
void safetensors_writer_abort(SafetensorsWriter *w);

// ---- sharded writing ------------------------------------------------------------------------

typedef struct SafetensorsShardedWriter SafetensorsShardedWriter;

// The same declare-then-data protocol, split into shards of at most max_shard_bytes of tensor
// data (a single larger tensor gets a shard of its own), in declaration order, the way
// transformers' save_pretrained lays them out: one shard is DIR/model.safetensors with no index;
// N > 1 are DIR/model-0000K-of-0000N.safetensors plus DIR/model.safetensors.index.json with
// {"metadata": {"total_size": bytes}, "weight_map": {name: shard}}. Metadata goes into every
// shard. Each shard is committed (atomically) when its last tensor is written and the index last;
// after an error or an abort the shards already committed are removed again.
int safetensors_sharded_open(SafetensorsShardedWriter **out, const char *dir,
                             uint64_t max_shard_bytes, Err *e);
int safetensors_sharded_metadata(SafetensorsShardedWriter *w, const char *key, const char *value,
                                 Err *e);
int safetensors_sharded_declare(SafetensorsShardedWriter *w, const char *name,
                                SafetensorsDtype dtype, int ndim, const int64_t *shape, Err *e);
int safetensors_sharded_f32(SafetensorsShardedWriter *w, const char *name, const float *data,
                            Err *e);
int safetensors_sharded_raw(SafetensorsShardedWriter *w, const char *name, const void *data,
                            size_t nbytes, Err *e);
// Every declared tensor must have had its data; writes the index; frees w.
int safetensors_sharded_commit(SafetensorsShardedWriter *w, Err *e);
void safetensors_sharded_abort(SafetensorsShardedWriter *w); // NULL is fine

#endif
