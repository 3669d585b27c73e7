// `lethe info`: a checkpoint's config, parameter count, storage dtypes, tokenizer, provenance.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "llama.h"

int cmd_info(int argc, char **argv) {
    CliOption opts[] = {
        {"--full", NULL, 1, "print provenance texts in full (default: first line, 100 chars)"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[1];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 1, &npos, &e);
    if (rc == 1) {
        cli_usage("info", "M.h5", "Shows a checkpoint's config, parameters, dtypes and provenance.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("info", &e);
    if (npos != 1) {
        err_set(&e, "give one checkpoint file (see --help)");
        return cli_fail("info", &e);
    }
    CkptReader *r;
    if (ckpt_reader_open(&r, pos[0], &e)) return cli_fail("info", &e);
    const ModelConfig *c = ckpt_reader_config(r);
    LlamaModel m;
    if (llama_create(&m, c, &e)) {
        ckpt_reader_close(r);
        return cli_fail("info", &e);
    }
    printf("%s\n", pos[0]);
    printf("  arch                    llama\n");
    printf("  vocab_size              %d\n", c->vocab_size);
    printf("  hidden_size             %d\n", c->hidden_size);
    printf("  intermediate_size       %d\n", c->intermediate_size);
    printf("  num_hidden_layers       %d\n", c->num_hidden_layers);
    printf("  num_attention_heads     %d\n", c->num_attention_heads);
    printf("  num_key_value_heads     %d\n", c->num_key_value_heads);
    printf("  head_dim                %d\n", c->head_dim);
    printf("  rms_norm_eps            %g\n", (double)c->rms_norm_eps);
    printf("  rope_theta              %g\n", (double)c->rope_theta);
    printf("  max_position_embeddings %d\n", c->max_position_embeddings);
    printf("  tie_word_embeddings     %d\n", c->tie_word_embeddings);
    printf("  attention_bias          %d\n", c->attention_bias);
    printf("  bos_token_id            %d\n", c->bos_token_id);
    printf("  eos_token_id            %d\n", c->eos_token_id);
    size_t per_dtype[3] = {0, 0, 0}, missing = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        int nd;
        int64_t shape[CKPT_MAX_DIMS];
        StorageDtype dt;
        if (ckpt_reader_tensor_info(r, m.tensors[i].name, &nd, shape, &dt, &e))
            missing++;
        else
            per_dtype[dt] += m.tensors[i].numel;
    }
    size_t embed = (size_t)c->vocab_size * c->hidden_size;
    printf("  parameters              %zu (%.2f M; %.2f M without embeddings)\n", m.n_params,
           m.n_params / 1e6, (m.n_params - embed) / 1e6);
    for (int d = 0; d < 3; d++)
        if (per_dtype[d]) printf("  stored as %-13s %zu parameters\n", dtype_name(d), per_dtype[d]);
    if (missing) printf("  MISSING tensors         %zu (the file is incomplete)\n", missing);
    Tokenizer tok;
    int present = 0;
    if (ckpt_reader_tokenizer(r, &tok, &present, &e)) {
        printf("  tokenizer               unreadable: %s\n", e.msg);
    } else if (present) {
        char digest[65];
        tokenizer_digest(&tok, digest);
        printf("  tokenizer               %s, %d pieces, digest %.16s\n", tokenizer_kind_name(&tok),
               tok.vocab_size,
               digest);
        tokenizer_free(&tok);
    } else {
        printf("  tokenizer               none\n");
    }
    char *keys[64];
    int nk = ckpt_reader_provenance_keys(r, keys, 64);
    if (nk > 0) printf("provenance\n");
    for (int i = 0; i < nk && i < 64; i++) {
        char *v = ckpt_reader_provenance(r, keys[i]);
        const char *text = v ? v : "";
        size_t cut = strlen(text);
        if (!cli_flag(opts, n, "--full")) {
            cut = strcspn(text, "\n");
            if (cut > 100) cut = 100;
        }
        printf("  %-23s %.*s%s\n", keys[i], (int)cut, text, text[cut] ? " ..." : "");
        free(v);
        free(keys[i]);
    }
    llama_free(&m);
    ckpt_reader_close(r);
    return missing ? 1 : 0;
}
