// Hugging Face model directories in and out: config.json <-> ModelConfig, and the streaming
// import (safetensors -> checkpoint.h5) and export (checkpoint.h5 -> safetensors + config.json).
#ifndef LETHE_HF_MODEL_H
#define LETHE_HF_MODEL_H

#include <stdint.h>

#include "checkpoint.h"
#include "errors.h"
#include "model_config.h"

// Architectures with the Llama block lethe computes. Mistral is Llama with a sliding window
// (lethe checks that samples stay inside it); Qwen2 has q/k/v biases.
typedef enum { HF_ARCH_LLAMA, HF_ARCH_MISTRAL, HF_ARCH_QWEN2 } HfArch;

const char *hf_arch_class(HfArch a); // "LlamaForCausalLM", ...

// Reads DIR/config.json (transformers v4 and v5 spellings: rope_theta or rope_parameters,
// torch_dtype or dtype, eos_token_id an int or a list). Unsupported settings (rope_scaling other
// than "default", mlp_bias, Llama's attention_bias with its o_proj bias, an activation other
// than silu) are errors naming the file, the key and what lethe supports. *notes gets a
// malloc'd human-readable list of adjustments (e.g. the sliding window), or NULL.
int hf_config_read(const char *dir, ModelConfig *cfg, HfArch *arch, char **notes, Err *e);

// config.json text for cfg (malloc'd), as transformers writes it; dtype names torch_dtype.
char *hf_config_json(const ModelConfig *cfg, HfArch arch, StorageDtype dtype);

typedef struct {
    int dtype_given;    // 0: every tensor keeps its safetensors dtype (F32/F16/BF16)
    StorageDtype dtype; // when dtype_given
    const char *command; // for the provenance
} HfImportOptions;

// DIR (config.json, model.safetensors or the sharded index, tokenizer.json when present) ->
// out. Tensor by tensor: at most one tensor is in memory. out is written atomically.
int hf_import(const char *dir, const char *out, const HfImportOptions *opt, Err *e);

typedef struct {
    uint64_t max_shard_bytes; // transformers' default is 5 GB
    int dtype_given;          // 0: every tensor keeps the checkpoint's storage dtype
    StorageDtype dtype;
} HfExportOptions;

// ckpt -> DIR (created if missing; existing model files there are replaced atomically, file by
// file): config.json, generation_config.json, safetensors (sharded at the limit, with the
// index), tokenizer.json + tokenizer_config.json when the checkpoint has a tokenizer.
int hf_export(const char *ckpt, const char *dir, const HfExportOptions *opt, Err *e);

#endif
