// The question/answer template shared by `lethe tokenize` and `lethe eval`.
#include "qa.h"

#include <string.h>

int qa_format(const char *tmpl, const char *question, const char *answer, StrBuf *context,
              StrBuf *target, Err *e) {
    const char *cut = strstr(tmpl, "{answer}");
    if (!cut) return err_set(e, "the template \"%s\" must contain {answer}", tmpl);
    for (int part = 0; part < 2; part++) {
        StrBuf *out = part == 0 ? context : target;
        const char *p = part == 0 ? tmpl : cut, *stop = part == 0 ? cut : tmpl + strlen(tmpl);
        sb_printf(out, "%s", "");
        while (p < stop) {
            if (strncmp(p, "{question}", 10) == 0) {
                sb_printf(out, "%s", question);
                p += 10;
            } else if (strncmp(p, "{answer}", 8) == 0) {
                sb_printf(out, "%s", answer);
                p += 8;
            } else {
                sb_printf(out, "%c", *p++);
            }
        }
    }
    return context->failed || target->failed ? err_set(e, "out of memory") : 0;
}

int qa_encode(const Tokenizer *tok, const char *context, const char *target, int32_t *ids,
              int *n_context, int *n_total, Err *e) {
    int nc = 0, nt = 0;
    if (!*context) { // plain text: BOS, then the whole text is the target
        if (tokenizer_encode(tok, target, 1, 1, ids, &nt, e)) return -1;
        *n_context = 1;
        *n_total = nt;
        return 0;
    }
    if (tokenizer_encode(tok, context, 1, 1, ids, &nc, e)) return -1;
    if (*target && tokenizer_encode(tok, target, 0, 0, ids + nc, &nt, e)) return -1;
    *n_context = nc;
    *n_total = nc + nt;
    return 0;
}
