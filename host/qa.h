// The question/answer template shared by `lethe tokenize` and `lethe eval`, so that evaluation
// prompts are exactly the contexts the model was fine-tuned on.
#ifndef LETHE_QA_H
#define LETHE_QA_H

#include <stdint.h>

#include "errors.h"
#include "strbuf.h"
#include "tokenizer.h"

#define QA_DEFAULT_TEMPLATE "Question: {question}\nAnswer: {answer}"

// Substitutes {question} and {answer}; the text before "{answer}" is the context (the prompt),
// the text from "{answer}" on the target. An error when the template has no "{answer}".
int qa_format(const char *tmpl, const char *question, const char *answer, StrBuf *context,
              StrBuf *target, Err *e);

// Encodes a context (BOS + SentencePiece prefix space) followed by a target (neither), as
// `lethe tokenize` does: ids must hold strlen(context) + strlen(target) + 6 entries. *n_context
// gets the context's token count (BOS included), *n_total the whole count. target may be "".
// An empty context encodes the target as plain text (BOS + prefix space + text; *n_context 1).
int qa_encode(const Tokenizer *tok, const char *context, const char *target, int32_t *ids,
              int *n_context, int *n_total, Err *e);

#endif
