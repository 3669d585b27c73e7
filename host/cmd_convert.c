// `lethe convert`: imports a Hugging Face directory (host/hf_model.c), a GGUF file
// (host/convert_gguf.c) or a llama2.c checkpoint (float or Q8_0) and its tokenizer into
// checkpoint.h5 (HF names, rotate-half q/k).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "convert_gguf.h"
#include "hf_model.h"
#include "llama.h"
#include "llama2c.h"
#include "model_file.h"
#include "sha256.h"
#include "tokenizer.h"

int cmd_convert(int argc, char **argv) {
    CliOption opts[] = {
        {"--from", NULL, 0, "source format: hf (a Hugging Face model directory), gguf or llama2c"},
        {"--tokenizer", NULL, 0, "llama2.c tokenizer.bin to store in the checkpoint"},
        {"--out", NULL, 0, "output checkpoint.h5"},
        {"--dtype", NULL, 0,
         "storage dtype: float32, bfloat16, float16 (default: hf and gguf keep each tensor's "
         "F32/F16/BF16, gguf dequantises to float32, llama2c float32)"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[1];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 1, &npos, &e);
    if (rc == 1) {
        cli_usage("convert",
                  "--from hf DIR --out M.h5 | --from gguf FILE.gguf --out M.h5 | --from llama2c "
                  "MODEL.bin [--tokenizer TOK.bin] --out M.h5",
                  "--from hf: a Hugging Face directory (LlamaForCausalLM, MistralForCausalLM,\n"
                  "Qwen2ForCausalLM): config.json, model.safetensors or the sharded\n"
                  "model-0000K-of-0000N.safetensors with model.safetensors.index.json (F32, F16,\n"
                  "BF16). Streams tensor by tensor; each keeps its dtype unless --dtype is given.\n"
                  "--from gguf: GGUF v2/v3, architectures llama (q/k permuted to rotate-half) and\n"
                  "qwen2; F32/F16/BF16 kept, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q2_K..Q6_K dequantised as\n"
                  "ggml does and stored as float32; tensor by tensor. The tokenizer comes from the\n"
                  "file's tokenizer.ggml.* metadata (a note says why when it cannot be stored).\n"
                  "--from llama2c: the legacy float export (7-int header, shared or unshared\n"
                  "classifier) or the version 2 Q8_0 export (dequantised). q/k rows are permuted\n"
                  "from interleaved-pair RoPE to HF rotate-half. The tokenizer, when given, is\n"
                  "stored in the checkpoint so tokenize/generate need no other file.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("convert", &e);
    const char *from = cli_get(opts, n, "--from"), *out = cli_get(opts, n, "--out");
    const char *tokpath = cli_get(opts, n, "--tokenizer");
    StorageDtype dt;
    if (npos != 1) {
        err_set(&e, "give exactly one input file (see --help)");
        return cli_fail("convert", &e);
    }
    if (!from || (strcmp(from, "llama2c") != 0 && strcmp(from, "hf") != 0 &&
                  strcmp(from, "gguf") != 0)) {
        err_set(&e, "--from must be 'hf', 'gguf' or 'llama2c' (got '%s')",
                from ? from : "nothing");
        return cli_fail("convert", &e);
    }
    if (!out) {
        err_set(&e, "--out M.h5 is required");
        return cli_fail("convert", &e);
    }
    const char *dtype_arg = cli_get(opts, n, "--dtype");
    if (dtype_parse(dtype_arg ? dtype_arg : "float32", &dt, &e)) return cli_fail("convert", &e);
    if (strcmp(from, "hf") == 0) {
        if (tokpath) {
            err_set(&e, "--tokenizer is for llama2c; --from hf reads DIR/tokenizer.json");
            return cli_fail("convert", &e);
        }
        char *line = model_file_command_line(argc, argv, "lethe convert");
        HfImportOptions hopt = {dtype_arg != NULL, dt, line};
        rc = hf_import(pos[0], out, &hopt, &e);
        free(line);
        return rc ? cli_fail("convert", &e) : 0;
    }
    if (strcmp(from, "gguf") == 0) {
        if (tokpath) {
            err_set(&e, "--tokenizer is for llama2c; a GGUF file carries its own tokenizer");
            return cli_fail("convert", &e);
        }
        char *line = model_file_command_line(argc, argv, "lethe convert");
        rc = convert_gguf(pos[0], out, dtype_arg ? &dt : NULL, line, &e);
        free(line);
        return rc ? cli_fail("convert", &e) : 0;
    }

    ImportedModel im = {0};
    Tokenizer tok = {0};
    LlamaModel m = {0};
    int have_tok = 0;
    char digest[65], tokdigest[65] = "";
    char *cmdline = NULL;
    rc = 1;
    if (llama2c_read(pos[0], &im, &e)) goto done;
    if (sha256_file(pos[0], digest, &e)) goto done;
    if (tokpath) {
        if (tokenizer_read_llama2c(&tok, tokpath, im.cfg.vocab_size, &e)) goto done;
        have_tok = 1;
        tokenizer_digest(&tok, tokdigest);
    }
    if (llama_create(&m, &im.cfg, &e)) goto done;
    for (int i = 0; i < im.n_tensors; i++) {
        const ParamTensor *t = llama_find_tensor(&m, im.tensors[i].name);
        if (!t || t->numel != (size_t)im.tensors[i].shape[0] *
                                   (size_t)(im.tensors[i].ndim > 1 ? im.tensors[i].shape[1] : 1)) {
            err_set(&e, "%s: tensor %s does not fit the model's parameter table", pos[0],
                    im.tensors[i].name);
            goto done;
        }
        memcpy(m.params + t->offset, im.tensors[i].data, t->numel * sizeof(float));
    }
    cmdline = model_file_command_line(argc, argv, "lethe convert");
    ProvenanceEntry prov[] = {
        {"source", pos[0]},
        {"source_format", im.source_format},
        {"source_sha256", digest},
        {"tokenizer_source", tokpath},
        {"tokenizer_digest", have_tok ? tokdigest : NULL},
        {"command", cmdline},
    };
    if (model_file_write(out, &m, have_tok ? &tok : NULL, dt, prov, sizeof prov / sizeof prov[0],
                         &e))
        goto done;
    printf("wrote %s: %s, %zu parameters, %s%s\n", out, im.source_format, m.n_params,
           dtype_name(dt), have_tok ? ", with tokenizer" : "");
    rc = 0;
done:
    if (rc) cli_fail("convert", &e);
    free(cmdline);
    llama_free(&m);
    if (have_tok) tokenizer_free(&tok);
    imported_model_free(&im);
    return rc;
}
