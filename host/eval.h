// The evaluation engine of `lethe eval`: scoring of question/answer and text sets (per-sample and
// per-token log-probs), batched generation with ROUGE, the TOFU and MUSE metrics, the probes of
// what unlearning does not do, and the results store that becomes eval.json.
#ifndef LETHE_EVAL_H
#define LETHE_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "errors.h"
#include "generate.h"
#include "json.h"
#include "llama.h"
#include "tokenizer.h"

// ---- sequences to score: packed tokens with a loss mask, as in a token dataset -------------
typedef struct {
    int n;
    size_t n_tokens;
    int32_t *tokens;
    uint8_t *mask;
    int64_t *offsets; // (n + 1)
    int *n_context;   // per sequence: tokens before the first target (BOS included)
    size_t cap_tokens;
    int cap;
} SeqSet;

// context + target through qa_encode: only the target's tokens are scored.
int seqset_add(SeqSet *s, const Tokenizer *tok, const char *context, const char *target, Err *e);
void seqset_free(SeqSet *s);

// Per-sequence results of scoring; per-token arrays only when asked for.
typedef struct {
    int n;
    double *sum_logprob; // (n) sum of log p(target)
    int *n_targets;      // (n)
    int64_t *tok_offsets; // (n + 1) into the per-token arrays, NULL unless per-token
    float *logp, *mu, *var; // per target token: log p, Min-K%++'s mean and variance of log p
    uint8_t *hit;           // per target token: the target is the argmax
} SeqScores;

void seqscores_free(SeqScores *s);
// Mean NLL per target token of sequence i (NaN when it has no target).
double seqscores_avg_loss(const SeqScores *s, int i);

// ---- what a model is evaluated with ------------------------------------------------------
typedef struct {
    const LlamaModel *model; // the host copy: generation decodes with it on the CPU
    const Tokenizer *tok;
    Engine *engine;          // scoring runs here (cpu, or a CUDA device)
    long batch_tokens;       // token budget of one scoring forward
    int gen_batch;           // sequences decoded together
    int max_new_tokens;      // generation length cap
    const char *tmpl;        // question/answer template
    // throughput, accumulated over the calls
    double score_seconds, gen_seconds;
    long scored_samples, scored_tokens, generated_tokens, generated_samples;
} EvalCtx;

int eval_score(EvalCtx *c, const SeqSet *s, int per_token, SeqScores *out, Err *e);

// Greedy generation from each context (encoded with BOS + prefix space): the decoded text, cut
// at the first stop string and stripped of surrounding whitespace (open-unlearning's
// eval_text_similarity). stops: NULL-terminated list or NULL. texts[i] are malloc'd.
int eval_generate(EvalCtx *c, const char *const *contexts, int n, int max_new_tokens,
                  const char *const *stops, char **texts, Err *e);
// The same from token prompts (each starting with BOS).
int eval_generate_tokens(EvalCtx *c, int32_t *const *prompts, const int *n_prompt, int n,
                         int max_new_tokens, const char *const *stops, char **texts, Err *e);

// text with each ill-formed UTF-8 subpart replaced by U+FFFD, exactly as Python's
// bytes.decode("utf-8", errors="replace"); malloc'd, NULL on out of memory.
char *utf8_replace_invalid(const char *text, size_t len);
// Decodes ids (continuing after `prev`) to malloc'd UTF-8 text; bytes that do not form valid
// UTF-8 (a character cut by byte-fallback tokens) become U+FFFD.
char *eval_decode(const Tokenizer *tok, int prev, const int32_t *ids, int n);

// ---- results: flat "group.metric" values and per-sample arrays, per model ------------------
typedef struct {
    char key[96];
    double value;
} EvalValue;

typedef struct {
    char key[96];
    double *v;
    size_t n;
} EvalArray;

typedef struct {
    char key[96];
    char **texts;
    size_t n;
} EvalTexts;

typedef struct {
    char name[64];
    char role[16]; // target | unlearned | gold | base | other
    char path[1024];
    char sha256[65];
    char metrics_jsonl[1024];
    EvalValue *values;
    int n_values, cap_values;
    EvalArray *arrays;
    int n_arrays, cap_arrays;
    EvalTexts *texts;
    int n_texts, cap_texts;
} EvalResult;

int eval_result_set(EvalResult *r, const char *key, double value);
int eval_result_set_array(EvalResult *r, const char *key, const double *v, size_t n);
// Takes ownership of texts (each and the array).
int eval_result_set_texts(EvalResult *r, const char *key, char **texts, size_t n);
// NULL when absent.
const double *eval_result_value(const EvalResult *r, const char *key);
const EvalArray *eval_result_array(const EvalResult *r, const char *key);
void eval_result_free(EvalResult *r);

// ---- TOFU --------------------------------------------------------------------------------
typedef struct {
    char *question, *answer, *paraphrased_answer; // paraphrased_answer may be NULL
    char **perturbed;                             // perturbed_answer list (may be empty)
    int n_perturbed;
} QaItem;

typedef struct {
    char name[32];
    char path[1024];
    QaItem *items;
    int n;
} QaSet;

// Reads TOFU-style records ({"question","answer"} or {"prompt","response"}, optional
// "paraphrased_answer" and "perturbed_answer" list) from any of TOFU's layouts; max 0 = all.
int qaset_load(QaSet *s, const char *name, const char *path, int max, Err *e);
void qaset_free(QaSet *s);

typedef enum { TOFU_FORGET, TOFU_RETAIN, TOFU_NEIGHBOUR } TofuRole;

enum {
    TOFU_PROB = 0,             // always computed
    TOFU_TRUTH_RATIO = 1u << 0,
    TOFU_ROUGE = 1u << 1,
    TOFU_MEMORISATION = 1u << 2,
    TOFU_ALL = TOFU_TRUTH_RATIO | TOFU_ROUGE | TOFU_MEMORISATION,
};

// The metrics of one set into r under "<key_prefix>.": prob, and as `what` asks truth_ratio
// (aggregated by role; truth_ratio_raw per sample), prob_normalised (neighbour sets),
// rouge_l_recall / rouge_l_f1 / rouge1_recall (+ the generations), exact_memorization,
// extraction_strength; each also as a per-sample array. prefixes (may be NULL): per item text
// put before the prompt (the in-context probe).
int tofu_eval_set(EvalCtx *c, const QaSet *s, TofuRole role, const char *const *prefixes,
                  unsigned what, const char *key_prefix, EvalResult *r, Err *e);

// ---- MUSE --------------------------------------------------------------------------------
// Texts to continue or to attack: context (may be "") + target; only the target is scored.
typedef struct {
    char **contexts, **targets;
    int n, cap;
} TextSet;

// .txt: documents separated by "<|endoftext|>" (when present) or blank lines; JSON records:
// {"text"} or question/answer pairs through tmpl. max 0 = all.
int textset_load(TextSet *s, const char *path, const char *tmpl, int max, Err *e);
void textset_free(TextSet *s);

// VerbMem: ROUGE-L F1 of the greedy continuation of each text's first prefix_tokens tokens
// against its next max_new_tokens tokens, into r under key (+ per sample, + generations).
int muse_verbmem(EvalCtx *c, const TextSet *s, int prefix_tokens, int max_new_tokens,
                 const char *key, EvalResult *r, Err *e);

enum { MIA_LOSS, MIA_ZLIB, MIA_MIN_K, MIA_MIN_K_PP, MIA_ATTACKS };
extern const char *const mia_attack_names[MIA_ATTACKS];
// "muse.mia.<attack>.auc" for each attack (k: Min-K%'s fraction, MUSE 0.4), and the per-sample
// scores of both sets.
int muse_mia(EvalCtx *c, const TextSet *forget, const TextSet *holdout, double k, EvalResult *r,
             Err *e);
// PrivLeak in % from our member-detection AUCs of the unlearned and the retrained model.
double muse_privleak(double auc, double auc_retrain);

#endif
