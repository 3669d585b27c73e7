// ROUGE-1 and ROUGE-L exactly as Google's rouge_score package computes them, with its tokenizer
// and NLTK's Porter stemmer: the text-similarity scores of the TOFU and MUSE benchmarks.
#ifndef LETHE_ROUGE_H
#define LETHE_ROUGE_H

#include <stddef.h>

// open-unlearning scores generations with
//   rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
//       .score(target=ground_truth, prediction=generated)
// and this module reproduces that, value for value:
//
// Tokens: ASCII letters are lowercased; every run of bytes outside [a-z0-9] separates tokens (so
// any non-ASCII byte is a separator); with the stemmer, tokens longer than 3 characters are
// replaced by their Porter stem; empty tokens are dropped.
//
// ROUGE-1: overlap = sum over distinct tokens of min(count in reference, count in candidate);
//   precision = overlap / max(len(candidate), 1), recall = overlap / max(len(reference), 1).
// ROUGE-L: lcs = length of the longest common subsequence of the two token sequences;
//   precision = lcs / len(candidate), recall = lcs / len(reference); all three are 0 when
//   either side has no token.
// Both: f1 = 2 * precision * recall / (precision + recall), or 0 when precision + recall is 0
//   (rouge_score's scoring.fmeasure).
typedef struct {
    double precision, recall, f1;
} RougeScore;

// Scores candidate (the model's generation) against reference (the ground truth). Either out
// pointer may be NULL. The LCS takes O(n*m) time and O(min(n, m)) memory for n and m tokens.
// Returns 0, or -1 when memory runs out (the outputs are then unspecified).
int rouge_scores(const char *reference, const char *candidate, int use_stemmer,
                 RougeScore *rouge1, RougeScore *rougeL);

// NLTK's PorterStemmer().stem(word) in its default mode (NLTK_EXTENSIONS), for a lowercase
// [a-z0-9] word as the tokenizer above produces (it does not lowercase). out must hold
// strlen(word) + 1 bytes, as a stem is never longer than its word. Returns the stem's length, or
// -1 when cap is too small.
int porter_stem(const char *word, char *out, size_t cap);

#endif
