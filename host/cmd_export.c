// `lethe export --to hf M.h5 DIR`: writes a checkpoint as a Hugging Face directory that
// transformers' from_pretrained loads (host/hf_model.c does the work).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "hf_model.h"

// "5GB", "500MB", "1.5GiB", "4096" (bytes): the spellings transformers' max_shard_size takes.
static int parse_size(const char *s, uint64_t *out, Err *e) {
    char *end;
    double v = strtod(s, &end);
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1},          {"B", 1},          {"KB", 1e3},         {"MB", 1e6},
                 {"GB", 1e9},      {"TB", 1e12},      {"KiB", 1024.0},     {"MiB", 1048576.0},
                 {"GiB", 1073741824.0}};
    if (end != s && v > 0)
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strcmp(end, units[i].unit) == 0 && v * units[i].mult >= 1 &&
                v * units[i].mult < 1e18) {
                *out = (uint64_t)(v * units[i].mult);
                return 0;
            }
    return err_set(e, "--max-shard-size '%s': expected a size such as 5GB, 500MB or 2GiB", s);
}

int cmd_export(int argc, char **argv) {
    CliOption opts[] = {
        {"--to", NULL, 0, "target format: hf"},
        {"--max-shard-size", "5GB", 0, "split the safetensors into shards of at most this size"},
        {"--dtype", NULL, 0,
         "storage dtype: float32, bfloat16, float16 (default: each tensor keeps the "
         "checkpoint's)"},
    };
    const int n = sizeof opts / sizeof opts[0];
    const char *pos[2];
    int npos;
    Err e = {{0}};
    int rc = cli_parse(argc, argv, opts, n, pos, 2, &npos, &e);
    if (rc == 1) {
        cli_usage("export", "--to hf M.h5 DIR",
                  "Writes DIR/config.json, generation_config.json and model.safetensors (or\n"
                  "model-0000K-of-0000N.safetensors + model.safetensors.index.json beyond\n"
                  "--max-shard-size), so transformers' AutoModelForCausalLM.from_pretrained(DIR)\n"
                  "loads the model. The architecture is the one the checkpoint was imported from\n"
                  "(Mistral stays Mistral), else Qwen2ForCausalLM for q/k/v biases and\n"
                  "LlamaForCausalLM otherwise. Each file is written to a temporary name and\n"
                  "renamed; other files in DIR are left alone.",
                  opts, n);
        return 0;
    }
    if (rc) return cli_fail("export", &e);
    const char *to = cli_get(opts, n, "--to"), *dtype = cli_get(opts, n, "--dtype");
    if (!to || strcmp(to, "hf") != 0) {
        err_set(&e, "--to must be 'hf' (got '%s')", to ? to : "nothing");
        return cli_fail("export", &e);
    }
    if (npos != 2) {
        err_set(&e, "give the checkpoint and the output directory: lethe export --to hf M.h5 DIR");
        return cli_fail("export", &e);
    }
    HfExportOptions opt = {0};
    opt.dtype_given = dtype != NULL;
    if ((dtype && dtype_parse(dtype, &opt.dtype, &e)) ||
        parse_size(cli_get(opts, n, "--max-shard-size"), &opt.max_shard_bytes, &e))
        return cli_fail("export", &e);
    return hf_export(pos[0], pos[1], &opt, &e) ? cli_fail("export", &e) : 0;
}
