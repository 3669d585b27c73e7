// Decoding like llama2.c runq.c, for models imported from its Q8_0 export: the int8 weights and
// group scales recovered exactly from the dequantised fp32 parameters, every activation vector
// quantised to int8 before its matmul. Training and evaluation stay in fp32.
#ifndef LETHE_LLAMA_Q8_H
#define LETHE_LLAMA_Q8_H

#include <stdint.h>

#include "errors.h"
#include "llama.h"

// The int8 copy of a model's matrices, built once. Group g of the matrix at parameter offset o
// covers q[o + g*gs, o + (g+1)*gs) and has scale s[o/gs + g] (norm slots are left unused).
typedef struct LlamaQ8 {
    int gs;        // the export's group size, found by the recovery
    int max_tries; // the most candidate scales any group needed (1: max|w| / 127 every time)
    int8_t *q;     // (n_params)
    float *s;      // (n_params / gs)
} LlamaQ8;

// Recovers every matrix of m (embedding, projections, MLP, LM head) as int8 times one float
// scale per group of gs inputs (runq_recover_int8), trying gs from the largest common divisor
// of the matrices' input widths (at most 256) down to 2: the export's own group size is the
// largest that reproduces every value bit for bit (a larger one mixes groups of two scales; a
// smaller one has groups whose max|q| is not 127). Fails, naming the first group that does not
// fit, when none does: the model is not an unmodified Q8_0 import (trained, or stored in 16
// bits).
int llama_q8_build(LlamaQ8 *q, const LlamaModel *m, Err *e);
void llama_q8_free(LlamaQ8 *q);

// llama_decode_batch's contract, computed as runq computes one token (kernels/runq.h): the
// token's dequantised embedding; before each matmul its input quantised to int8 in groups of gs
// and the int8 product; RMSNorm, RoPE, attention and SwiGLU in fp32, operation for operation
// as runq. Rows run one after the other, each over its cache, so a row's logits do not depend
// on the other rows.
int llama_q8_decode_batch(const LlamaModel *m, const LlamaQ8 *q, KVCache *const *caches,
                          const int32_t *tokens, const uint8_t *want_logits, int n, float *logits,
                          Err *e);

#endif
