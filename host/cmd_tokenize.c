// `lethe tokenize`: plain text or JSONL into a token dataset with the checkpoint's tokenizer.
// Text: every token after BOS is a target. {"prompt","completion"}: only completion tokens are
// targets (the prompt is context). {"text"}: like plain text.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "json.h"
#include "qa.h"
#include "strbuf.h"
#include "textfile.h"
#include "tokenizer.h"

typedef struct {
    int32_t *tokens;
    uint8_t *mask;
    int64_t *offsets;
    int64_t n_tokens, cap_tokens, n_samples, cap_samples;
} Builder;

static int builder_reserve(Builder *b, int64_t more_tokens, Err *e) {
    if (b->n_tokens + more_tokens > b->cap_tokens) {
        int64_t cap = b->cap_tokens ? b->cap_tokens : 4096;
        while (cap < b->n_tokens + more_tokens) cap *= 2;
        int32_t *t = realloc(b->tokens, (size_t)cap * sizeof *t);
        if (t) b->tokens = t;
        uint8_t *m = realloc(b->mask, (size_t)cap);
        if (m) b->mask = m;
        if (!t || !m) return err_set(e, "out of memory");
        b->cap_tokens = cap;
    }
    if (b->n_samples + 2 > b->cap_samples) {
        int64_t cap = b->cap_samples ? b->cap_samples * 2 : 256;
        int64_t *o = realloc(b->offsets, (size_t)cap * sizeof *o);
        if (!o) return err_set(e, "out of memory");
        b->offsets = o;
        b->cap_samples = cap;
    }
    return 0;
}

// Appends encode(text) to the current sample with loss mask `target`; starts the sample with BOS
// when `first` and the tokenizer adds one. The first token is never a target either way: nothing
// precedes it to predict it from.
static int append_text(Builder *b, const Tokenizer *tok, const char *text, int first, int target,
                       Err *e) {
    size_t n = strlen(text);
    if (builder_reserve(b, (int64_t)n + 3, e)) return -1;
    int count;
    if (tokenizer_encode(tok, text, first, first, b->tokens + b->n_tokens, &count, e)) return -1;
    for (int i = 0; i < count; i++)
        b->mask[b->n_tokens + i] = (first && i == 0) ? 0 : (uint8_t)target;
    b->n_tokens += count;
    return 0;
}

static void end_sample(Builder *b) { b->offsets[++b->n_samples] = b->n_tokens; }

// Strips leading/trailing whitespace in place.
static char *strip(char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

static int add_document(Builder *b, const Tokenizer *tok, char *doc, Err *e) {
    doc = strip(doc);
    if (!*doc) return 0;
    if (builder_reserve(b, 0, e) || append_text(b, tok, doc, 1, 1, e)) return -1;
    end_sample(b);
    return 0;
}

static int tokenize_text(Builder *b, const Tokenizer *tok, char *text, const char *separator,
                         int lines, Err *e) {
    if (lines) separator = "\n";
    if (!separator || !*separator) return add_document(b, tok, text, e);
    size_t seplen = strlen(separator);
    char *p = text;
    for (;;) {
        char *hit = strstr(p, separator);
        if (hit) *hit = 0;
        if (add_document(b, tok, p, e)) return -1;
        if (!hit) break;
        p = hit + seplen;
    }
    return 0;
}

// Appends the template with its fields substituted; the text from "{answer}" on is the target.
static int append_template(Builder *b, const Tokenizer *tok, const char *tmpl,
                           const char *question, const char *answer, Err *e) {
    StrBuf ctx = {0}, tgt = {0};
    int rc = qa_format(tmpl, question, answer, &ctx, &tgt, e) ||
             append_text(b, tok, ctx.data, 1, 0, e) || append_text(b, tok, tgt.data, 0, 1, e);
    sb_free(&ctx);
    sb_free(&tgt);
    return rc ? -1 : 0;
}

// Replacement answers (--answers): one per non-empty line, e.g. TOFU's idontknow.jsonl refusals.
typedef struct {
    char *text;    // the file, its line ends overwritten with NULs
    char **line;   // (n)
    size_t n;
    uint64_t seed;
} Answers;

static int answers_load(Answers *a, const char *path, uint64_t seed, Err *e) {
    size_t len;
    if (file_read_all(path, &a->text, &len, e)) return -1;
    if (strlen(a->text) != len) return err_set(e, "%s contains NUL bytes; expected text", path);
    for (char *p = a->text; *p; p++) a->n += *p == '\n';
    a->line = malloc((a->n + 1) * sizeof *a->line);
    if (!a->line) return err_set(e, "out of memory");
    a->n = 0;
    for (char *p = a->text; *p;) {
        char *end = p + strcspn(p, "\n");
        const int last = *end == 0;
        *end = 0;
        if (end > p && end[-1] == '\r') end[-1] = 0;
        if (*p) a->line[a->n++] = p;
        p = last ? end : end + 1;
    }
    if (a->n == 0) return err_set(e, "%s (--answers) holds no non-empty line", path);
    a->seed = seed;
    return 0;
}

// Record i's replacement: a seeded pick, the same for the same (seed, i) whatever the order.
static const char *answers_pick(const Answers *a, size_t i) {
    uint64_t z = a->seed ^ ((uint64_t)i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return a->line[(z ^ (z >> 31)) % a->n];
}

// JSON records in any of the layouts the TOFU files use (one array, JSON Lines, one array per
// line): {"text"}; {"prompt", "completion"} concatenated as they are; or question/answer pairs
// ({"question", "answer"} or TOFU's renamed {"prompt", "response"}) through the template. With
// answers, every record must be a question/answer pair, whose answer is replaced.
static int tokenize_records(Builder *b, const Tokenizer *tok, const char *path,
                            const char *tmpl, long first, const Answers *answers, Err *e) {
    JsonValue *all = json_parse_file(path, JSON_FILE_RECORDS, e);
    if (!all) return -1;
    int rc = 0;
    size_t n = json_array_len(all);
    if (first > 0 && (size_t)first < n) n = (size_t)first;
    for (size_t i = 0; i < n && !rc; i++) {
        const JsonValue *v = json_array_get(all, i);
        const char *txt = json_object_get_string(v, "text");
        const char *pr = json_object_get_string(v, "prompt");
        const char *co = json_object_get_string(v, "completion");
        const char *q = json_object_get_string(v, "question");
        const char *a = json_object_get_string(v, "answer");
        if (!q && pr && !co) q = pr;
        if (!a) a = json_object_get_string(v, "response");
        if ((rc = builder_reserve(b, 0, e))) break;
        if (answers) {
            if (!q || !a) {
                rc = err_set(e, "%s: record %zu is not a question/answer pair; --answers replaces "
                                "the answers of question/answer records only",
                             path, i + 1);
                break;
            }
            rc = append_template(b, tok, tmpl, q, answers_pick(answers, i), e);
        } else if (txt)
            rc = append_text(b, tok, txt, 1, 1, e);
        else if (pr && co)
            rc = append_text(b, tok, pr, 1, 0, e) || append_text(b, tok, co, 0, 1, e);
        else if (q && a)
            rc = append_template(b, tok, tmpl, q, a, e);
        else
            rc = err_set(e, "%s: record %zu has no string \"text\", \"prompt\"+\"completion\", "
                            "or \"question\"+\"answer\" (\"prompt\"+\"response\") fields",
                         path, i + 1);
        if (!rc) end_sample(b);
    }
    json_free(all);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    CliOption opts[] = {
        {"--model", NULL, 0, "checkpoint.h5 whose tokenizer to use"},
        {"--input", NULL, 0, "input file (text or JSONL)"},
        {"--out", NULL, 0, "output token dataset .h5"},
        {"--format", "auto", 0, "text, json (records: array, JSON Lines, array per line), or "
                                "auto (json for .json/.jsonl)"},
        {"--template", QA_DEFAULT_TEMPLATE, 0,
         "question/answer records: the text from {answer} on is the target"},
        {"--first", "0", 0, "json: only the first N records (0 = all)"},
        {"--separator", NULL, 0, "text: split documents on this string (e.g. '<|endoftext|>')"},
        {"--lines", NULL, 1, "text: one document per non-empty line"},
        {"--answers", NULL, 0,
         "question/answer records: replace each answer by a seeded pick among this file's "
         "non-empty lines (e.g. data/tofu/idontknow.jsonl, for idknll/idkdpo)"},
        {"--answers-seed", "0", 0, "the seed of the --answers picks"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[1];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 0, &npos, &e);
    if (rc == 1) {
        cli_usage("tokenize", "--model M.h5 --input FILE --out D.h5",
                  "Tokenizes with the checkpoint's tokenizer into a token dataset. Each sample\n"
                  "starts with BOS. Text (whole file, --separator, or --lines) and JSON {\"text\"}\n"
                  "samples have every token as a target; {\"prompt\", \"completion\"} samples only\n"
                  "the completion tokens; question/answer records (TOFU: question/answer or\n"
                  "prompt/response) go through --template and only the answer part is a target.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("tokenize", &e);
    const char *model = cli_get(opts, n, "--model"), *in = cli_get(opts, n, "--input");
    const char *out = cli_get(opts, n, "--out"), *fmt = cli_get(opts, n, "--format");
    if (!model || !in || !out) {
        err_set(&e, "--model, --input and --out are required");
        return cli_fail("tokenize", &e);
    }
    int json;
    size_t inlen = strlen(in);
    long first;
    if (strcmp(fmt, "auto") == 0)
        json = (inlen > 6 && strcmp(in + inlen - 6, ".jsonl") == 0) ||
               (inlen > 5 && strcmp(in + inlen - 5, ".json") == 0);
    else if (strcmp(fmt, "text") == 0 || strcmp(fmt, "json") == 0 || strcmp(fmt, "jsonl") == 0)
        json = strcmp(fmt, "text") != 0;
    else {
        err_set(&e, "--format must be text, json or auto (got '%s')", fmt);
        return cli_fail("tokenize", &e);
    }
    long answers_seed;
    if (cli_int("--first", cli_get(opts, n, "--first"), 0, 1L << 40, &first, &e) ||
        cli_int("--answers-seed", cli_get(opts, n, "--answers-seed"), 0, 0x7fffffffL,
                &answers_seed, &e))
        return cli_fail("tokenize", &e);
    const char *answers_path = cli_get(opts, n, "--answers");
    if (answers_path && !json) {
        err_set(&e, "--answers replaces the answers of question/answer records: give a .json or "
                    ".jsonl input (or --format json)");
        return cli_fail("tokenize", &e);
    }
    CkptReader *r;
    if (ckpt_reader_open(&r, model, &e)) return cli_fail("tokenize", &e);
    Tokenizer tok;
    int present = 0;
    Builder b = {0};
    Answers answers = {0};
    char *text = NULL;
    size_t len;
    rc = 1;
    if (answers_path && answers_load(&answers, answers_path, (uint64_t)answers_seed, &e))
        goto done;
    if (ckpt_reader_tokenizer(r, &tok, &present, &e)) goto done;
    if (!present) {
        err_set(&e,
                "%s carries no tokenizer; convert it again with its tokenizer (llama2c: "
                "--tokenizer TOK.bin; hf: DIR/tokenizer.json; gguf: tokenizer.ggml.* metadata)",
                model);
        goto done;
    }
    // Models often pad the embedding past the tokenizer's last id (Qwen2: 151936 rows for 151665
    // tokens): the data set is for the model, so it records the model's vocabulary size.
    const int model_vocab = ckpt_reader_config(r)->vocab_size;
    if (tok.vocab_size > model_vocab) {
        err_set(&e, "%s: the tokenizer has %d tokens but the model only %d embedding rows", model,
                tok.vocab_size, model_vocab);
        goto done;
    }
    if (builder_reserve(&b, 0, &e)) goto done;
    b.offsets[0] = 0;
    if (json) {
        if (tokenize_records(&b, &tok, in, cli_get(opts, n, "--template"), first,
                             answers_path ? &answers : NULL, &e))
            goto done;
    } else {
        if (file_read_all(in, &text, &len, &e)) goto done;
        if (strlen(text) != len) {
            err_set(&e, "%s contains NUL bytes; expected UTF-8 text", in);
            goto done;
        }
        if (tokenize_text(&b, &tok, text, cli_get(opts, n, "--separator"),
                          cli_flag(opts, n, "--lines"), &e))
            goto done;
    }
    if (b.n_samples == 0) {
        err_set(&e, "%s holds no non-empty documents; nothing to write", in);
        goto done;
    }
    TokenDataset d = {.n_samples = b.n_samples, .n_tokens = b.n_tokens, .tokens = b.tokens,
                      .offsets = b.offsets, .loss_mask = b.mask, .vocab_size = model_vocab};
    snprintf(d.tokenizer_name, sizeof d.tokenizer_name, "%s", tokenizer_kind_name(&tok));
    tokenizer_digest(&tok, d.tokenizer_digest);
    if (dataset_write(out, &d, &e)) goto done;
    int64_t targets = 0;
    for (int64_t i = 0; i < b.n_tokens; i++) targets += b.mask[i];
    printf("wrote %s: %lld samples, %lld tokens, %lld targets\n", out, (long long)b.n_samples,
           (long long)b.n_tokens, (long long)targets);
    rc = 0;
done:
    if (rc) cli_fail("tokenize", &e);
    free(text);
    free(answers.text);
    free(answers.line);
    free(b.tokens);
    free(b.mask);
    free(b.offsets);
    if (present) tokenizer_free(&tok);
    ckpt_reader_close(r);
    return rc;
}
