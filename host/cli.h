// Shared pieces of the `lethe` subcommands: option parsing, error exit, progress output.
#ifndef LETHE_CLI_H
#define LETHE_CLI_H

#include <stddef.h>

#include "errors.h"

// One option of a subcommand: "--name" with a value (is_flag = 0) or a flag (is_flag = 1).
typedef struct {
    const char *name;
    const char *value;   // default on input, the given value on output; flags: NULL or "1"
    int is_flag;
    const char *help;
} CliOption;

// Parses argv (after the subcommand) into opts; positional arguments are collected into
// positional (up to max_positional). Returns 0, 1 if --help was asked (usage printed), -1 on
// error (message in e).
int cli_parse(int argc, char **argv, CliOption *opts, int n_opts, const char **positional,
              int max_positional, int *n_positional, Err *e);
void cli_usage(const char *cmd, const char *synopsis, const char *description,
               const CliOption *opts, int n_opts);
const char *cli_get(const CliOption *opts, int n_opts, const char *name);
int cli_flag(const CliOption *opts, int n_opts, const char *name);
// Parses an integer / float option value with range checks; message names the option.
int cli_int(const char *opt, const char *s, long lo, long hi, long *out, Err *e);
int cli_float(const char *opt, const char *s, double *out, Err *e);

// The subcommands (each returns the process exit status).
int cmd_info(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_unlearn(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_bench(int argc, char **argv);

// Prints "lethe CMD: message" to stderr and returns the exit status 1.
int cli_fail(const char *cmd, const Err *e);

#endif
