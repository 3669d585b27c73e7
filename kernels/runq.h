// The arithmetic of llama2.c runq.c (int8 forward pass) for one token on the CPU: the same
// float operations in the same order, so decoding a Q8_0 model gives runq's bits. Q8_0 holds
// int8 values in groups of gs consecutive elements with one float scale each (value = q * s).
// CPU only, with no CUDA twin: decoding like runq is a generation mode, not an op of training.
// kernels/cpu/runq.c is compiled with -ffp-contract=off: runq's reference outputs come from a
// build that rounds every multiply and add on its own, and a fused multiply-add changes them.
#ifndef LETHE_RUNQ_H
#define LETHE_RUNQ_H

#include <stddef.h>
#include <stdint.h>

// Candidate scales runq_recover_int8 tries beyond max|w| / 127: this many floats either side.
#define RUNQ_RECOVER_ULPS 4

// runq's quantize(): per group s = max|x| / 127 and q = round(x / s), halves away from zero.
// An all-zero group gets s = 0 and q = 0 (runq divides 0 by 0 there; its q never matters, as
// every product with the group is multiplied by s = 0). q (n), s (n / gs); n % gs == 0.
void runq_quantize(int8_t *q, float *s, const float *x, size_t n, int gs);

// Inverts llama2.c's Q8_0 export followed by dequantisation, w = fl(q * s) with max|q| = 127
// in every group that is not all zero. Per group the candidate scales are max|w| / 127, then
// its neighbouring floats, nearest first, up to RUNQ_RECOVER_ULPS away; the first for which
// every q = round(w / s) fits in [-127, 127] and fl(q * s) equals w bit for bit is taken. An
// all-zero group (+0 or -0) gets s = 0, q = 0. Returns -1 when every group is recovered,
// otherwise the index of the first group no candidate reproduces (q and s then partly filled).
// *max_tries (may be NULL): the most candidates any group needed (1: max|w| / 127 every time).
// q (n), s (n / gs), w (n); n % gs == 0.
int64_t runq_recover_int8(int8_t *q, float *s, const float *w, size_t n, int gs, int *max_tries);

// out (OC) = W x as runq's matmul(): for row o, over its groups in order,
//   acc += (float)(int32 dot of x's group with the row's group) * ws[group] * xs[group]
// evaluated left to right from acc = 0. xq (C), xs (C / gs), wq (OC, C), ws (OC, C / gs);
// C % gs == 0. Rows in parallel (OpenMP): each row's sum has one order whatever the threads.
void runq_matmul(float *out, const int8_t *xq, const float *xs, const int8_t *wq,
                 const float *ws, int C, int OC, int gs);

// runq's rmsnorm(): out = w * (r * x), r = 1 / sqrt(sum(x^2) / D + eps), the sum in order.
void runq_rmsnorm(float *out, const float *x, const float *w, int D, float eps);

// runq's RoPE of one position, on rows in HF rotate-half order: the pair (i, i + hd/2) of each
// head is llama2.c's interleaved pair (2i, 2i + 1), rotated by pos / theta^(2i / hd).
void runq_rope(float *x, int pos, int n_heads, int hd, float theta);

// runq's attention of one query row over T cached positions, q and k in HF rotate-half order:
// score = (q . k) / sqrt(hd), the dot product summed in llama2.c's interleaved channel order;
// softmax with expf; out_h = sum over t, in order, of p_t v_t. q (H, hd), k and v (T, KV, hd),
// query head h reads KV head h / (H / KV); out (H, hd); scratch (T).
void runq_attention(float *out, float *scratch, const float *q, const float *k, const float *v,
                    int T, int H, int KV, int hd);

// runq's SwiGLU: out = (gate * (1 / (1 + exp(-gate)))) * up. out may be gate.
void runq_swiglu(float *out, const float *gate, const float *up, size_t n);

#endif
