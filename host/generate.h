// Text generation with a KV cache: greedy at temperature 0, otherwise seeded sampling with
// temperature and nucleus (top-p) truncation; one prompt, or many decoded together.
#ifndef LETHE_GENERATE_H
#define LETHE_GENERATE_H

#include <stdint.h>

#include "errors.h"
#include "llama.h"
#include "llama_q8.h"

// A decoder that keeps its KV caches elsewhere (the cuda engine's device caches): `reserve`
// prepares n_slots caches of `capacity` positions and steps of up to max_rows rows; `decode`
// runs one step as llama_decode_batch, row r feeding tokens[r] to slot slot[r] at position
// pos[r], and writes float32 logits of the wanted rows (want NULL: all) in row order.
typedef struct GenDecoder GenDecoder;
struct GenDecoder {
    int (*reserve)(GenDecoder *d, int n_slots, int capacity, int max_rows, Err *e);
    int (*decode)(GenDecoder *d, const int32_t *slot, const int32_t *pos, const int32_t *tokens,
                  const uint8_t *want, int n, float *logits, Err *e);
};

typedef struct {
    int max_new_tokens;
    float temperature; // 0: greedy (argmax, lowest id on ties)
    float top_p;       // 1: no truncation
    uint64_t seed;
    int stop_token_a, stop_token_b; // generation stops at either, not emitted (-1: none)
    const LlamaQ8 *q8; // NULL: fp32; else int8 weights and activations like llama2.c runq
    GenDecoder *decoder; // NULL: llama_decode_batch on the CPU; else this (q8 must be NULL)
} GenerateOptions;

// Why a request stopped.
typedef enum {
    GEN_RUNNING,         // still decoding (no request is left so when generate_batch succeeds)
    GEN_STOP_EOS,        // it produced stop_token_a or stop_token_b (not emitted)
    GEN_STOP_MAX_TOKENS, // it has max_new_tokens tokens
    GEN_STOP_CALLBACK,   // the stop function returned nonzero
    GEN_STOP_CONTEXT,    // prompt + generated tokens fill the model's context
} GenerateStop;

typedef struct {
    const int32_t *prompt; // must start with BOS for llama-style models
    int n_prompt;
    int32_t *out; // capacity: options.max_new_tokens
    int n_out;    // generated tokens (the stop token excluded)
    GenerateStop stop;
} GenerateRequest;

// Called after each token appended to r->out (index: r's place in the array); nonzero stops r
// with GEN_STOP_CALLBACK. The evaluation stops on strings with it (decoding r->out itself).
typedef int (*GenerateStopFn)(const GenerateRequest *r, int index, void *ctx);

typedef struct {
    double seconds;          // wall time of the call
    long prompt_tokens;      // prompt tokens fed through the model
    long generated_tokens;   // tokens emitted (sum of n_out)
    long steps, rows;        // decoding steps and the rows (sequence positions) they carried
} GenerateStats;

// Generates for n requests, up to max_batch of them decoding together: each step is one
// llama_decode_batch over the running sequences (one row each) and prompt chunks of newly
// started ones; a finished request's slot goes to the next pending one (continuous batching).
// Request i samples from its own RNG, seeded from (o->seed, i), so its tokens do not depend on
// max_batch or on the other requests. Stops: EOS (stop tokens), max_new_tokens, stop_fn (may be
// NULL), and the context (total tokens reaching max_position_embeddings: GEN_STOP_CONTEXT). A
// prompt longer than the context, or empty, is an error naming the request. stats may be NULL.
// Memory: max_batch KV caches of the longest prompt + max_new_tokens positions (capped at the
// context), allocated once per call.
int generate_batch(const LlamaModel *m, GenerateRequest *reqs, int n, int max_batch,
                   const GenerateOptions *o, GenerateStopFn stop_fn, void *ctx,
                   GenerateStats *stats, Err *e);

// The same generation for request r (with its index, for the RNG) without a KV cache: every
// token from a full forward over the whole prefix (llama_next_logits_nocache). For the tests;
// fp32 only (o->q8 must be NULL).
int generate_nocache(const LlamaModel *m, GenerateRequest *r, int index, const GenerateOptions *o,
                     GenerateStopFn stop_fn, void *ctx, Err *e);

typedef void (*GenerateCallback)(int32_t token, void *ctx);

// One prompt (a batch of one): out receives the generated ids (capacity max_new_tokens), *n_out
// their count; on_token (may be NULL) is called for each as it is produced. Stops at the stop
// tokens, after max_new_tokens, or when the context is full.
int generate(const LlamaModel *m, const int32_t *prompt, int n_prompt, const GenerateOptions *o,
             int32_t *out, int *n_out, GenerateCallback on_token, void *ctx, Err *e);

// Index of the largest logit (the first on ties).
int argmax(const float *x, int n);

#endif
