// Dequantisation of ggml block formats to float32, each format's layout documented beside its
// dequantiser. The arithmetic is ggml's dequantize_row_* (ggml-quants.c) operation for operation,
// in float32; this file is compiled with -ffp-contract=off so no multiply-add is fused and the
// results are bit-identical to ggml's scalar code and to gguf-py's numpy (gguf.quants).
#include "gguf_quant.h"

#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_quant.c reads little-endian blocks with memcpy; port the loads for a big-endian host"
#endif

#define QK_K 256 // elements of a k-quant super-block

static const struct {
    const char *name;
    uint32_t block, size;
} TYPES[GGML_N_TYPES] = {
    [GGML_F32] = {"F32", 1, 4},
    [GGML_F16] = {"F16", 1, 2},
    [GGML_Q4_0] = {"Q4_0", 32, 2 + 16},
    [GGML_Q4_1] = {"Q4_1", 32, 2 + 2 + 16},
    [GGML_Q5_0] = {"Q5_0", 32, 2 + 4 + 16},
    [GGML_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16},
    [GGML_Q8_0] = {"Q8_0", 32, 2 + 32},
    [GGML_Q8_1] = {"Q8_1", 32, 4 + 4 + 32},
    [GGML_Q2_K] = {"Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4},
    [GGML_Q3_K] = {"Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12},
    [GGML_Q4_K] = {"Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12},
    [GGML_Q5_K] = {"Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12},
    [GGML_Q6_K] = {"Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16},
    [GGML_Q8_K] = {"Q8_K", QK_K, 4 + QK_K + QK_K / 8},
    [GGML_IQ2_XXS] = {"IQ2_XXS", QK_K, 2 + QK_K / 4},
    [GGML_IQ2_XS] = {"IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32},
    [GGML_IQ3_XXS] = {"IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8},
    [GGML_IQ1_S] = {"IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16},
    [GGML_IQ4_NL] = {"IQ4_NL", 32, 2 + 16},
    [GGML_IQ3_S] = {"IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4},
    [GGML_IQ2_S] = {"IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16},
    [GGML_IQ4_XS] = {"IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64},
    [GGML_I8] = {"I8", 1, 1},
    [GGML_I16] = {"I16", 1, 2},
    [GGML_I32] = {"I32", 1, 4},
    [GGML_I64] = {"I64", 1, 8},
    [GGML_F64] = {"F64", 1, 8},
    [GGML_IQ1_M] = {"IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32},
    [GGML_BF16] = {"BF16", 1, 2},
    [GGML_TQ1_0] = {"TQ1_0", QK_K, 2 + 4 * 13},
    [GGML_TQ2_0] = {"TQ2_0", QK_K, 2 + 64},
    [GGML_MXFP4] = {"MXFP4", 32, 1 + 16},
};

uint32_t ggml_block_size(uint32_t t) { return t < GGML_N_TYPES ? TYPES[t].block : 0; }
uint32_t ggml_type_size(uint32_t t) { return t < GGML_N_TYPES ? TYPES[t].size : 0; }
const char *ggml_type_name(uint32_t t) {
    return t < GGML_N_TYPES && TYPES[t].name ? TYPES[t].name : "?";
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float ggml_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return bits_f32(sign | 0x7F800000u | (m << 13));
    if (e) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    if (!m) return bits_f32(sign);
    e = 113; // subnormal half: normalise the mantissa
    while (!(m & 0x400u)) {
        m <<= 1;
        e--;
    }
    return bits_f32(sign | (e << 23) | ((m & 0x3FFu) << 13));
}

static float load_f16(const uint8_t *p) { return ggml_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static float load_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

// ---- unquantised -------------------------------------------------------------------------------

static void deq_f32(const uint8_t *b, float *y) { memcpy(y, b, 4); }
static void deq_f16(const uint8_t *b, float *y) { *y = load_f16(b); }
// bfloat16 is the top half of a float32.
static void deq_bf16(const uint8_t *b, float *y) { *y = bits_f32((uint32_t)(b[0] | b[1] << 8) << 16); }

// ---- 32-element blocks -------------------------------------------------------------------------

// Q4_0 (18 bytes): f16 d, then qs[16]; element j is the low nibble of qs[j], element j+16 the
// high one; value = (nibble - 8) * d.
static void deq_q4_0(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        const int x0 = (qs[j] & 0x0F) - 8, x1 = (qs[j] >> 4) - 8;
        y[j] = (float)x0 * d;
        y[j + 16] = (float)x1 * d;
    }
}

// Q4_1 (20 bytes): f16 d, f16 m (the block minimum), qs[16] as in Q4_0; value = nibble * d + m.
static void deq_q4_1(const uint8_t *b, float *y) {
    const float d = load_f16(b), m = load_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0x0F) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

// Q5_0 (22 bytes): f16 d, uint32 qh (bit j is the fifth bit of element j), qs[16] with the low
// four bits as in Q4_0; value = (5-bit q - 16) * d.
static void deq_q5_0(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
        const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
        const int x0 = ((qs[j] & 0x0F) | xh0) - 16, x1 = ((qs[j] >> 4) | xh1) - 16;
        y[j] = (float)x0 * d;
        y[j + 16] = (float)x1 * d;
    }
}

// Q5_1 (24 bytes): f16 d, f16 m, uint32 qh, qs[16] as in Q5_0; value = 5-bit q * d + m.
static void deq_q5_1(const uint8_t *b, float *y) {
    const float d = load_f16(b), m = load_f16(b + 2);
    uint32_t qh;
    memcpy(&qh, b + 4, 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
        const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
        y[j] = (float)((qs[j] & 0x0F) | xh0) * d + m;
        y[j + 16] = (float)((qs[j] >> 4) | xh1) * d + m;
    }
}

// Q8_0 (34 bytes): f16 d, int8 qs[32]; value = q * d.
static void deq_q8_0(const uint8_t *b, float *y) {
    const float d = load_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

// ---- k-quants: 256-element super-blocks --------------------------------------------------------

// Q2_K (84 bytes): scales[16] (low nibble: 4-bit scale, high nibble: 4-bit min of a 16-element
// group), qs[64] (2-bit quants, four per byte: the byte's bits 2s..2s+1 feed group row s of each
// 128 half), f16 d, f16 dmin; value = d * scale * q - dmin * min.
static void deq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    const float d = load_f16(b + 80), min = load_f16(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            uint8_t sc = scales[is++];
            float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l] >> shift) & 3) - ml;
            sc = scales[is++];
            dl = d * (float)(sc & 0xF);
            ml = min * (float)(sc >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16] >> shift) & 3) - ml;
            shift += 2;
        }
        q += 32;
    }
}

// Q3_K (110 bytes): hmask[32] (the third bit of each quant: a set bit means no -4 offset),
// qs[64] (low two bits as in Q2_K), scales[12] (sixteen 6-bit signed scales, packed: low nibbles
// in bytes 0..7, high two bits in bytes 8..11), f16 d; value = d * (scale - 32) * (q - 4*!hbit).
static void deq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32, *packed = b + 96;
    const float d_all = load_f16(b + 108);
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    memcpy(aux, packed, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    memcpy(scales, aux, 16);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            float dl = d_all * (float)(scales[is++] - 32);
            for (int l = 0; l < 16; l++)
                *y++ = dl * (float)((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            dl = d_all * (float)(scales[is++] - 32);
            for (int l = 0; l < 16; l++)
                *y++ = dl * (float)((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2;
            m = (uint8_t)(m << 1);
        }
        q += 32;
    }
}

// The 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K/Q5_K: bytes 0..3
// hold scales 0..3 (low six bits) and the top two bits of scales 4..7; bytes 4..7 the same for
// the mins; bytes 8..11 the low nibbles of scales 4..7 (low) and mins 4..7 (high).
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

// Q4_K (144 bytes): f16 d, f16 dmin, scales[12] (eight 6-bit scale/min pairs, see scale_min_k4),
// qs[128]; each 64 elements are 32 low nibbles (sub-block 2i) then 32 high nibbles (2i+1) of the
// same 32 bytes; value = d * scale * q - dmin * min.
static void deq_q4_k(const uint8_t *b, float *y) {
    const float d = load_f16(b), min = load_f16(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < QK_K; j += 64) {
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = min * (float)m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

// Q5_K (176 bytes): f16 d, f16 dmin, scales[12] as Q4_K, qh[32] (fifth bits: bit 2i of qh[l]
// for element l of sub-block 2i, bit 2i+1 for sub-block 2i+1), qs[128] as Q4_K.
static void deq_q5_k(const uint8_t *b, float *y) {
    const float d = load_f16(b), min = load_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    int is = 0;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = min * (float)m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32;
        is += 2;
        u1 = (uint8_t)(u1 << 2);
        u2 = (uint8_t)(u2 << 2);
    }
}

// Q6_K (210 bytes): ql[128] (low four bits), qh[64] (high two bits), int8 scales[16] (one per 16
// elements), f16 d; per 128-element half, element l + 32k takes nibble k/2 of ql[l + 32(k%2)]
// and bits 2k..2k+1 of qh[l]; value = d * scale * (q - 32).
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = load_f16(b + 208);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * (float)sc[is + 0] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

// Q8_K (292 bytes): float32 d, int8 qs[256], int16 bsums[16] (group sums for dot products, not
// needed here); value = d * q.
static void deq_q8_k(const uint8_t *b, float *y) {
    const float d = load_f32(b);
    for (int j = 0; j < QK_K; j++) y[j] = d * (float)(int8_t)b[4 + j];
}

typedef void (*BlockDequant)(const uint8_t *block, float *out);

static BlockDequant dequantiser(uint32_t t) {
    switch (t) {
    case GGML_F32: return deq_f32;
    case GGML_F16: return deq_f16;
    case GGML_BF16: return deq_bf16;
    case GGML_Q4_0: return deq_q4_0;
    case GGML_Q4_1: return deq_q4_1;
    case GGML_Q5_0: return deq_q5_0;
    case GGML_Q5_1: return deq_q5_1;
    case GGML_Q8_0: return deq_q8_0;
    case GGML_Q2_K: return deq_q2_k;
    case GGML_Q3_K: return deq_q3_k;
    case GGML_Q4_K: return deq_q4_k;
    case GGML_Q5_K: return deq_q5_k;
    case GGML_Q6_K: return deq_q6_k;
    case GGML_Q8_K: return deq_q8_k;
    default: return NULL;
    }
}

int ggml_can_dequantize(uint32_t t) { return dequantiser(t) != NULL; }

int ggml_dequantize(uint32_t t, const void *src, uint64_t n_blocks, float *dst) {
    BlockDequant f = dequantiser(t);
    if (!f) return -1;
    const uint8_t *b = src;
    const uint32_t bs = TYPES[t].block, sz = TYPES[t].size;
    if (t == GGML_F32) { // the common unquantised case in one copy
        memcpy(dst, src, (size_t)n_blocks * 4);
        return 0;
    }
    for (uint64_t i = 0; i < n_blocks; i++) f(b + i * sz, dst + i * bs);
    return 0;
}
