// `lethe generate`: prompt in, text out, with the tokenizer stored in the checkpoint. Output
// follows llama2.c run.c byte for byte: the prompt's pieces, the generated pieces, a newline.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "cli.h"
#include "engine.h"
#include "generate.h"
#include "llama.h"
#include "llama_q8.h"
#include "tokenizer.h"

// The provenance source_format of `lethe convert` from llama2.c's version 2 (Q8_0) export.
#define Q8_0_SOURCE_FORMAT "llama2c-v2-q8_0"

typedef struct {
    const Tokenizer *tok;
    int prev;
} PrintState;

static void print_piece(const Tokenizer *t, int prev, int token) {
    char buf[512];
    size_t len;
    const char *p = tokenizer_decode_piece(t, prev, token, buf, sizeof buf, &len);
    if (!p || len == 0) return;
    // Like run.c's safe_printf: a lone raw byte that is not printable text is dropped.
    if (len == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0]))) return;
    fwrite(p, 1, len, stdout);
}

static void on_token(int32_t token, void *ctx) {
    PrintState *s = ctx;
    print_piece(s->tok, s->prev, token);
    fflush(stdout);
    s->prev = token;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_generate(int argc, char **argv) {
    CliOption opts[] = {
        {"--model", NULL, 0, "checkpoint.h5 (with a tokenizer)"},
        {"--prompt", "", 0, "prompt text"},
        {"--max-new-tokens", "256", 0, "tokens to generate at most"},
        {"--temperature", "0", 0, "0 = greedy; otherwise sampling temperature"},
        {"--top-p", "0.9", 0, "nucleus sampling mass (1 = off), when temperature > 0"},
        {"--seed", "0", 0, "sampling seed"},
        {"--int8-activations", NULL, 1,
         "decode like llama2.c runq: int8 weights (recovered exactly from a Q8_0 import) and "
         "int8 activations; the default for a model converted from a Q8_0 export"},
        {"--no-int8-activations", NULL, 1, "decode in fp32, also for a Q8_0 import"},
        {"--device", "auto", 0, "cpu, cuda or auto (the GPU when there is one)"},
        {"--device-dtype", "bf16", 0, "cuda: bf16 weights and KV caches, or fp32"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[1];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 0, &npos, &e);
    if (rc == 1) {
        cli_usage("generate", "--model M.h5 [--prompt TEXT] [--max-new-tokens N]",
                  "Generates text: greedy (argmax) at temperature 0, otherwise seeded sampling.\n"
                  "Stops at the model's EOS or BOS token, or after max-new-tokens. Statistics go\n"
                  "to stderr. A model converted from llama2.c's Q8_0 export decodes as runq does\n"
                  "(int8 weights and activations), so greedy output equals runq's.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("generate", &e);
    const DeviceRequest dev = {cli_get(opts, n, "--device"), cli_get(opts, n, "--device-dtype")};
    if (engine_check_request(&dev, &e)) return cli_fail("generate", &e);
    const char *model_path = cli_get(opts, n, "--model");
    const char *prompt = cli_get(opts, n, "--prompt");
    long max_new, seed;
    double temperature, top_p;
    if (!model_path) {
        err_set(&e, "--model M.h5 is required");
        return cli_fail("generate", &e);
    }
    if (cli_int("--max-new-tokens", cli_get(opts, n, "--max-new-tokens"), 0, 1 << 24, &max_new,
                &e) ||
        cli_int("--seed", cli_get(opts, n, "--seed"), 0, 0x7fffffffL, &seed, &e) ||
        cli_float("--temperature", cli_get(opts, n, "--temperature"), &temperature, &e) ||
        cli_float("--top-p", cli_get(opts, n, "--top-p"), &top_p, &e))
        return cli_fail("generate", &e);
    if (temperature < 0 || top_p <= 0 || top_p > 1) {
        err_set(&e, "--temperature must be >= 0 and --top-p in (0, 1]");
        return cli_fail("generate", &e);
    }
    const int int8_asked = cli_flag(opts, n, "--int8-activations");
    const int fp32_asked = cli_flag(opts, n, "--no-int8-activations");
    if (int8_asked && fp32_asked) {
        err_set(&e, "--int8-activations and --no-int8-activations exclude each other");
        return cli_fail("generate", &e);
    }

    CkptReader *r;
    if (ckpt_reader_open(&r, model_path, &e)) return cli_fail("generate", &e);
    LlamaModel m = {0};
    Tokenizer tok = {0};
    LlamaQ8 q8 = {0};
    Engine *engine = NULL;
    int present = 0, have_q8 = 0;
    int32_t *ids = NULL, *out = NULL;
    rc = 1;
    if (llama_load(&m, r, &e)) goto done;
    // int8 decoding: asked for, or by default for a Q8_0 import, whose weights are int8 anyway;
    // it runs on the CPU only.
    char *source_format = ckpt_reader_provenance(r, "source_format");
    const int from_q8 = source_format && !strcmp(source_format, Q8_0_SOURCE_FORMAT);
    free(source_format);
    if (int8_asked && strcmp(dev.name, "cuda") == 0) {
        err_set(&e, "--int8-activations decodes like llama2.c runq on the CPU only; use --device "
                    "cpu, or drop --int8-activations to decode on the GPU");
        goto done;
    }
    const DeviceRequest cpu = {"cpu", dev.dtype};
    if (engine_open(&engine, int8_asked ? &cpu : &dev, &m, NULL, 0, 0, &e)) goto done;
    if (engine->kind != ENGINE_CPU && from_q8 && !fp32_asked)
        fprintf(stderr, "%s comes from a llama2.c Q8_0 export: decoding on %s, not like runq "
                        "(--device cpu for that)\n", model_path, engine->description);
    if (engine->kind == ENGINE_CPU && (int8_asked || (from_q8 && !fp32_asked))) {
        Err qe = {{0}};
        if (llama_q8_build(&q8, &m, &qe) == 0) {
            have_q8 = 1;
            fprintf(stderr, "%s%s: quantised decoding like llama2.c runq (int8 groups of %d)%s\n",
                    model_path, int8_asked ? "" : " comes from a llama2.c Q8_0 export", q8.gs,
                    int8_asked ? "" : "; --no-int8-activations for fp32");
        } else if (int8_asked) {
            e = qe;
            err_prefix(&e, "%s: --int8-activations", model_path);
            goto done;
        } else {
            fprintf(stderr, "%s: provenance says %s, but %s; decoding in fp32\n", model_path,
                    Q8_0_SOURCE_FORMAT, qe.msg);
        }
    }
    if (ckpt_reader_tokenizer(r, &tok, &present, &e)) goto done;
    if (!present) {
        err_set(&e, "%s carries no tokenizer; convert it with --tokenizer TOK.bin", model_path);
        goto done;
    }
    ids = malloc((strlen(prompt) + 3) * sizeof(int32_t));
    out = malloc(((size_t)max_new + 1) * sizeof(int32_t));
    if (!ids || !out) {
        err_set(&e, "out of memory");
        goto done;
    }
    int n_ids;
    if (tokenizer_encode(&tok, prompt, 1, 1, ids, &n_ids, &e)) goto done;
    if (n_ids + max_new > m.cfg.max_position_embeddings) max_new = m.cfg.max_position_embeddings - n_ids;
    if (max_new < 0) {
        err_set(&e, "the prompt has %d tokens, more than the model's context of %d", n_ids,
                m.cfg.max_position_embeddings);
        goto done;
    }
    if (n_ids == 0) { // a tokenizer that adds no BOS, and an empty prompt
        err_set(&e, "the prompt is empty and this %s tokenizer adds no BOS token to start from; "
                    "give a prompt", tokenizer_kind_name(&tok));
        goto done;
    }
    int first_text = tok.opt.add_bos ? 1 : 0; // the BOS itself is not printed
    for (int i = first_text; i < n_ids; i++) print_piece(&tok, i > 0 ? ids[i - 1] : -1, ids[i]);
    PrintState ps = {&tok, ids[n_ids - 1]};
    GenerateOptions go = {(int)max_new, (float)temperature, (float)top_p, (uint64_t)seed,
                          m.cfg.eos_token_id, m.cfg.bos_token_id, have_q8 ? &q8 : NULL,
                          engine->ops->decoder(engine)};
    int n_out;
    double t0 = now_seconds();
    if (generate(&m, ids, n_ids, &go, out, &n_out, on_token, &ps, &e)) goto done;
    double dt = now_seconds() - t0;
    printf("\n");
    fprintf(stderr, "generated %d tokens after a %d-token prompt in %.2f s (%.1f tokens/s) on %s\n",
            n_out, n_ids, dt, (n_ids + n_out) / (dt > 0 ? dt : 1e-9), engine->description);
    rc = 0;
done:
    if (rc) cli_fail("generate", &e);
    free(ids);
    free(out);
    if (present) tokenizer_free(&tok);
    llama_q8_free(&q8);
    engine_close(engine);
    llama_free(&m);
    ckpt_reader_close(r);
    return rc;
}
