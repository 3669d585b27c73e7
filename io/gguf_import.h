// Llama-family models from GGUF files (llama.cpp's conventions: `{arch}.*` hyperparameters,
// `blk.N.*` tensor names, `tokenizer.ggml.*`): the model config, a plan mapping every GGUF tensor
// to its HF parameter, and reads of one tensor at a time in HF layout, so a converter holds at
// most one tensor in memory. Architectures: llama (q/k rows permuted back from llama.cpp's
// interleaved-pair RoPE to HF rotate-half) and qwen2 (rotate-half already, q/k/v biases).
#ifndef LETHE_GGUF_IMPORT_H
#define LETHE_GGUF_IMPORT_H

#include <stdint.h>

#include "errors.h"
#include "gguf.h"
#include "model_config.h"
#include "tokenizer_spec.h"

typedef struct {
    char name[96];      // HF parameter name
    int ndim;           // 1 or 2
    int64_t shape[2];   // PyTorch order (GGUF dims reversed)
    size_t src;         // index of the GGUF tensor
    int rope_heads;     // > 0: rows are permuted interleaved -> rotate-half in heads of head_dim
} GgufImportTensor;

typedef struct {
    ModelConfig cfg;
    char arch[16];             // general.architecture: "llama" or "qwen2"
    char source_format[64];    // "gguf-v3 MOSTLY_Q4_1" (general.file_type's llama_ftype name)
    int n_tensors;
    GgufImportTensor *tensors; // in the parameter-table order of host/llama.c
    uint64_t max_numel;        // of the largest tensor: one buffer of this many floats suffices
} GgufImport;

// Reads the config from the metadata and maps every tensor, checking that each expected tensor
// is present with the expected shape and that the file holds no other tensor (naming it).
// Unsupported features are errors that say so: another architecture, mixture-of-experts, RoPE
// scaling (`{arch}.rope.scaling.type` other than none, a linear scale, a `rope_freqs.weight`
// tensor as Llama 3.1 carries), partial rotary dims, or a tensor type without a dequantiser.
int gguf_import_plan(const GgufFile *f, GgufImport *imp, Err *e);
// Tensor k of the plan as float32 in HF layout (row-major, PyTorch shape): dequantised, and for
// llama's q/k weights and biases permuted to rotate-half. dst holds numel floats.
int gguf_import_read(const GgufFile *f, const GgufImport *imp, int k, float *dst, Err *e);
void gguf_import_free(GgufImport *imp);

// The tokenizer as the file holds it (tokenizer.ggml.model, .pre, .tokens, .scores,
// .token_type, .merges, .bos/eos/unknown/padding_token_id, .add_bos/add_eos/add_space_prefix),
// pointing into f's memory: valid until gguf_close. Checks the array lengths agree with the token
// count and the special ids lie below it. A file without tokenizer.ggml.tokens is an error.
int gguf_tokenizer_spec(const GgufFile *f, TokenizerSpec *spec, Err *e);

#endif
