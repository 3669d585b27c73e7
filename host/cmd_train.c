// `lethe unlearn` and `lethe finetune`: a YAML config plus dotted key=value overrides, or
// --resume OUT to continue a run from its last complete state.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "objective.h"
#include "run_config.h"
#include "train.h"

static void usage(const char *command) {
    const int un = strcmp(command, "unlearn") == 0;
    printf("usage: lethe %s CONFIG.yaml [key=value ...] [--device cpu|cuda|auto] [--resume]\n"
           "       lethe %s --resume OUT\n\n",
           command, command);
    if (un) {
        printf("Unlearns the forget set from the model: epochs over the forget set, each forget\n"
               "batch paired with a retain batch; writes OUT/model.h5, OUT/metrics.jsonl,\n"
               "OUT/config.yaml and OUT/state/.\n\nmethods (method.name):\n");
        for (const Method *const *m = method_all(); *m; m++)
            if (method_unlearns(*m)) {
                printf("  %-11s %s\n              defaults: beta %g, alpha %g, gamma %g, delta %g, ",
                       (*m)->name, (*m)->summary, (*m)->beta, (*m)->alpha, (*m)->gamma,
                       (*m)->delta);
                if ((*m)->beta2 != 0) printf("beta2 %g, ", (*m)->beta2);
                if ((*m)->ignore_first != 0) printf("ignore_first %d, ", (*m)->ignore_first);
                if ((*m)->forget_soft)
                    printf("positions %s, ", (*m)->all_positions ? "all" : "answer");
                if ((*m)->hidden)
                    printf("layer %d, steering_coeff %g, ", (*m)->layer, (*m)->steering);
                printf("retain_loss %s\n", (*m)->retain == RETAIN_KL       ? "kl"
                                           : (*m)->retain == RETAIN_NLL    ? "nll"
                                           : (*m)->retain == RETAIN_HIDDEN ? "hidden"
                                                                           : "none");
            }
        printf("  the retain term R is NLL(retain batch) (method.retain_loss: nll), the mean\n"
               "  KL(p_ref || p) over retain targets (kl; keeps the start model as reference),\n"
               "  or (rmu: hidden) the mean squared error of the hidden states at method.layer\n"
               "  to the start model's.\n");
    } else {
        printf("Fine-tunes the model on data.train with the token-mean NLL: builds the target\n"
               "model of an unlearning experiment and its gold standard (retain set only).\n");
    }
    printf("\nconfig keys (YAML sections, or dotted overrides such as optim.lr=2e-5):\n");
    run_config_print_keys(stdout);
    printf("\n--resume continues from OUT/state when a complete state is there; SIGTERM or SIGUSR1\n"
           "save a state and exit with status %d.\n",
           TRAIN_EXIT_INTERRUPTED);
}

static int run(const char *command, int argc, char **argv) {
    Err e = {{0}};
    RunConfig c;
    run_config_defaults(&c, command);
    const char *config = NULL;
    const char *resume_dir = NULL, *device = NULL;
    int resume = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(command);
            return 0;
        }
        if (strcmp(argv[i], "--resume") == 0) {
            resume = 1;
            // `--resume OUT` (a directory) instead of a config
            if (i + 1 < argc && !strchr(argv[i + 1], '=')) {
                struct stat st;
                if (stat(argv[i + 1], &st) == 0 && S_ISDIR(st.st_mode)) resume_dir = argv[++i];
            }
        }
    }
    if (resume_dir) {
        char path[RUN_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/config.yaml", resume_dir);
        if (run_config_load_yaml(&c, path, &e)) return cli_fail(command, &e);
        // The directory given is the run's home, also when it was moved or copied.
        snprintf(c.out, sizeof c.out, "%s", resume_dir);
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--resume") == 0) {
            if (resume_dir && i + 1 < argc && argv[i + 1] == resume_dir) i++;
            continue;
        }
        if (strcmp(a, "--device") == 0 || strncmp(a, "--device=", 9) == 0) {
            device = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!device) {
                err_set(&e, "--device needs cpu, cuda or auto");
                return cli_fail(command, &e);
            }
            continue;
        }
        if (strncmp(a, "--", 2) == 0) {
            err_set(&e, "unknown option %s (see --help)", a);
            return cli_fail(command, &e);
        }
        if (strchr(a, '=')) {
            if (run_config_override(&c, a, &e)) return cli_fail(command, &e);
        } else if (!config && !resume_dir) {
            config = a;
            if (run_config_load_yaml(&c, config, &e)) return cli_fail(command, &e);
        } else {
            err_set(&e, "unexpected argument '%s' (see --help)", a);
            return cli_fail(command, &e);
        }
    }
    if (!config && !resume_dir) {
        err_set(&e, "give a config file (see configs/) or --resume OUT");
        return cli_fail(command, &e);
    }
    if (device) { // --device wins over the config file, wherever it stands
        char assignment[64];
        snprintf(assignment, sizeof assignment, "device.name=%.40s", device);
        if (run_config_override(&c, assignment, &e)) return cli_fail(command, &e);
    }
    if (run_config_finish(&c, command, &e)) return cli_fail(command, &e);
    train_install_signal_handlers();
    int rc = train_run(&c, command, resume, &e);
    if (rc < 0) return cli_fail(command, &e);
    return rc;
}

int cmd_unlearn(int argc, char **argv) { return run("unlearn", argc, argv); }
int cmd_finetune(int argc, char **argv) { return run("finetune", argc, argv); }
