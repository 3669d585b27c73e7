// Writing model checkpoints with provenance (see model_file.h).
#include "model_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef LETHE_VERSION
#define LETHE_VERSION "dev"
#endif

int model_file_provenance(CkptWriter *w, const ProvenanceEntry *prov, int n_prov, Err *e) {
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (ckpt_writer_provenance(w, "engine", "lethe " LETHE_VERSION, e) ||
        ckpt_writer_provenance(w, "created", when, e))
        return -1;
    for (int i = 0; i < n_prov; i++)
        if (prov[i].value && ckpt_writer_provenance(w, prov[i].key, prov[i].value, e)) return -1;
    return 0;
}

int model_file_write(const char *path, const LlamaModel *m, const Tokenizer *tok, StorageDtype dt,
                     const ProvenanceEntry *prov, int n_prov, Err *e) {
    CkptWriter *w;
    if (ckpt_writer_open(&w, path, &m->cfg, e)) return -1;
    if (llama_write_tensors(m, w, dt, e) || (tok && ckpt_writer_tokenizer(w, tok, e)) ||
        model_file_provenance(w, prov, n_prov, e))
        goto fail;
    return ckpt_writer_commit(w, e);
fail:
    ckpt_writer_abort(w);
    return -1;
}

char *model_file_command_line(int argc, char **argv, const char *prefix) {
    size_t n = strlen(prefix) + 1;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 3;
    char *s = malloc(n);
    if (!s) return NULL;
    strcpy(s, prefix);
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        int quote = strchr(argv[i], ' ') != NULL;
        if (quote) strcat(s, "'");
        strcat(s, argv[i]);
        if (quote) strcat(s, "'");
    }
    return s;
}
