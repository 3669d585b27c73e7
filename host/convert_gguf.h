// `lethe convert --from gguf`: a llama/qwen2 GGUF file into checkpoint.h5, one tensor at a time.
#ifndef LETHE_CONVERT_GGUF_H
#define LETHE_CONVERT_GGUF_H

#include "checkpoint.h"
#include "errors.h"

// Converts in (GGUF) to out (checkpoint.h5, written atomically). dtype NULL: F32/F16/BF16
// tensors keep their own type and dequantised tensors are stored as float32 (exact); else every
// tensor is stored as *dtype. command: the "command" provenance entry (may be NULL). Prints a
// one-line summary on stdout.
int convert_gguf(const char *in, const char *out, const StorageDtype *dtype, const char *command,
                 Err *e);

#endif
