// ggml tensor types as GGUF files store them: the size table of every type id (so a reader can
// check any tensor's byte size) and dequantisers to float32 for the common ones, computed the way
// ggml's dequantize_row_* functions (ggml-quants.c) compute them.
#ifndef LETHE_GGUF_QUANT_H
#define LETHE_GGUF_QUANT_H

#include <stddef.h>
#include <stdint.h>

// ggml_type ids (ggml.h); ids 4, 5 and 31..33, 36..38 were removed from the format.
typedef enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7,
    GGML_Q8_0 = 8, GGML_Q8_1 = 9, GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12,
    GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_Q8_K = 15, GGML_IQ2_XXS = 16, GGML_IQ2_XS = 17,
    GGML_IQ3_XXS = 18, GGML_IQ1_S = 19, GGML_IQ4_NL = 20, GGML_IQ3_S = 21, GGML_IQ2_S = 22,
    GGML_IQ4_XS = 23, GGML_I8 = 24, GGML_I16 = 25, GGML_I32 = 26, GGML_I64 = 27,
    GGML_F64 = 28, GGML_IQ1_M = 29, GGML_BF16 = 30, GGML_TQ1_0 = 34, GGML_TQ2_0 = 35,
    GGML_MXFP4 = 39, GGML_N_TYPES = 40
} GgmlType;

// Elements per block and bytes per block of type t; 0 for an id that is not a ggml type.
// Unquantised types have blocks of one element.
uint32_t ggml_block_size(uint32_t t);
uint32_t ggml_type_size(uint32_t t);
// "Q4_K", "F16", ...; "?" for an unknown id.
const char *ggml_type_name(uint32_t t);
// 1 when ggml_dequantize handles t: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, Q8_K.
int ggml_can_dequantize(uint32_t t);
// n_blocks blocks of type t at src (any alignment) to n_blocks * ggml_block_size(t) floats.
// Returns -1 (writing nothing) when t cannot be dequantised.
int ggml_dequantize(uint32_t t, const void *src, uint64_t n_blocks, float *dst);

// IEEE binary16 to float32, exact; NaN payloads kept as they are (like numpy, which the gguf-py
// oracle uses; ggml's F16C path gives the same bits for every non-NaN half).
float ggml_f16_to_f32(uint16_t h);

#endif
