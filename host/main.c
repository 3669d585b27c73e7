// The `lethe` command line: dispatches to the subcommands (host/cmd_*.c).
#include <stdio.h>
#include <string.h>

#include "cli.h"
#if LETHE_WITH_CUDA
#include "engine_cuda.h"
#endif
#if LETHE_WITH_NCCL
#include "comm_nccl.h"
#endif

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Subcommand;

static const Subcommand commands[] = {
    {"info", cmd_info, "show a checkpoint's config, parameter count, dtypes and provenance"},
    {"init", cmd_init, "create a seeded random model from a YAML preset"},
    {"convert", cmd_convert, "import a Hugging Face directory, a GGUF file or a llama2.c checkpoint into checkpoint.h5"},
    {"export", cmd_export, "write a checkpoint as a Hugging Face directory (safetensors + config.json)"},
    {"tokenize", cmd_tokenize, "turn text or JSONL into a token dataset (.h5)"},
    {"eval", cmd_eval, "per-sample log-probs, mean NLL and perplexity of a model on a dataset"},
    {"generate", cmd_generate, "generate text (greedy at temperature 0, else seeded sampling)"},
    {"unlearn", cmd_unlearn, "unlearn a forget set: GA, GradDiff, NPO, SimNPO (YAML config)"},
    {"finetune", cmd_finetune, "fine-tune on a dataset (target and gold-standard models)"},
    {"report", cmd_report, "render report.html again from a saved eval.json"},
    {"bench", cmd_bench, "time the unlearning step: tokens/s, split, memory, MFU, PyTorch peer"},
};

static void usage(FILE *f) {
    fprintf(f, "lethe %s: approximate machine unlearning for Llama-family checkpoints\n\n",
            LETHE_VERSION);
    fprintf(f, "usage: lethe COMMAND [options]   (lethe COMMAND --help for details)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
#if LETHE_WITH_CUDA
    engine_register_cuda(engine_cuda_backend());
#endif
#if LETHE_WITH_NCCL
    comm_register_nccl(comm_nccl_backend()); // data-parallel runs over GPUs (host/comm.h)
#endif
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lethe %s\n", LETHE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "lethe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
