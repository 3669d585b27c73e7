// `lethe convert --from gguf`: streams a llama/qwen2 GGUF file's tensors (dequantised, q/k
// permuted to rotate-half for llama) into the checkpoint writer, with its tokenizer
// (tokenizer.ggml.* through tokenizer_from_spec) and provenance.
#include "convert_gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_import.h"
#include "model_file.h"
#include "sha256.h"
#include "tokenizer.h"

// Without --dtype a tensor keeps the type it has in the file when the checkpoint can store that
// type as is; dequantised values are float32 (exactly what ggml computes).
static StorageDtype storage_for(uint32_t ggml_type) {
    switch (ggml_type) {
    case GGML_F16: return DTYPE_F16;
    case GGML_BF16: return DTYPE_BF16;
    default: return DTYPE_F32;
    }
}

int convert_gguf(const char *in, const char *out, const StorageDtype *dtype, const char *command,
                 Err *e) {
    GgufFile *f = NULL;
    GgufImport imp = {0};
    CkptWriter *w = NULL;
    float *buf = NULL;
    char digest[65];
    TokenizerSpec spec = {0};
    Tokenizer tok = {0};
    int rc = -1, n_by_dtype[3] = {0, 0, 0}, have_tok = 0;
    char tokdigest[65] = "", toknote[600] = "no tokenizer metadata in the file";
    if (gguf_open(&f, in, e) || gguf_import_plan(f, &imp, e) || sha256_file(in, digest, e))
        goto done;
    // A tokenizer lethe cannot reproduce exactly (an unknown pre-tokenizer, say) does not stop
    // the import of the weights: the model converts without /tokenizer, and the note says why.
    if (gguf_find_key(f, "tokenizer.ggml.tokens") >= 0) {
        Err te = {{0}};
        if (gguf_tokenizer_spec(f, &spec, &te) == 0 && tokenizer_from_spec(&tok, &spec, &te) == 0) {
            have_tok = 1;
            if (tok.vocab_size > imp.cfg.vocab_size) {
                snprintf(toknote, sizeof toknote, "%.500s: the tokenizer has %d tokens but the "
                         "model %d embedding rows", in, tok.vocab_size, imp.cfg.vocab_size);
                tokenizer_free(&tok);
                have_tok = 0;
            }
        } else {
            snprintf(toknote, sizeof toknote, "%.590s", te.msg);
        }
        if (!have_tok)
            fprintf(stderr, "lethe convert: note: no tokenizer stored: %s\n", toknote);
    }
    if (!(buf = malloc((size_t)(imp.max_numel ? imp.max_numel : 1) * sizeof(float)))) {
        err_set(e, "%s: out of memory for a %llu-float tensor buffer", in,
                (unsigned long long)imp.max_numel);
        goto done;
    }
    if (ckpt_writer_open(&w, out, &imp.cfg, e)) goto done;
    for (int k = 0; k < imp.n_tensors; k++) {
        const GgufImportTensor *t = &imp.tensors[k];
        StorageDtype dt = dtype ? *dtype : storage_for(gguf_tensor(f, t->src)->type);
        if (gguf_import_read(f, &imp, k, buf, e) ||
            ckpt_writer_tensor(w, t->name, buf, t->ndim, t->shape, dt, e))
            goto done;
        n_by_dtype[dt]++;
    }

    if (have_tok) {
        if (ckpt_writer_tokenizer(w, &tok, e)) goto done;
        tokenizer_digest(&tok, tokdigest);
    }
    ProvenanceEntry prov[] = {
        {"source", in},
        {"source_format", imp.source_format},
        {"source_sha256", digest},
        {"tokenizer_source", have_tok ? "tokenizer.ggml.* metadata" : NULL},
        {"tokenizer_digest", have_tok ? tokdigest : NULL},
        {"command", command},
    };
    if (model_file_provenance(w, prov, sizeof prov / sizeof prov[0], e)) goto done;
    rc = ckpt_writer_commit(w, e);
    w = NULL;
    if (rc == 0)
        printf("wrote %s: %s %s, %d tensors (%d float32, %d bfloat16, %d float16)%s, %s%s\n",
               out, imp.source_format, imp.arch, imp.n_tensors, n_by_dtype[DTYPE_F32],
               n_by_dtype[DTYPE_BF16], n_by_dtype[DTYPE_F16],
               imp.cfg.tie_word_embeddings ? ", tied embeddings" : "",
               have_tok ? "tokenizer " : "no tokenizer", have_tok ? tokenizer_kind_name(&tok) : "");
done:
    if (w) ckpt_writer_abort(w);
    free(buf);
    if (have_tok) tokenizer_free(&tok);
    gguf_import_free(&imp);
    gguf_close(f);
    return rc;
}
