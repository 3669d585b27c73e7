// Writing a model checkpoint with its provenance and tokenizer in one call, for every
// subcommand that produces a model file.
#ifndef LETHE_MODEL_FILE_H
#define LETHE_MODEL_FILE_H

#include "checkpoint.h"
#include "llama.h"
#include "tokenizer.h"

typedef struct {
    const char *key;
    const char *value;
} ProvenanceEntry;

// Writes cfg + tensors (dt) + tokenizer (may be NULL) + provenance entries, adding "engine" and
// "created" entries; temporary name, fsync, rename. Nothing is left behind on failure.
int model_file_write(const char *path, const LlamaModel *m, const Tokenizer *tok, StorageDtype dt,
                     const ProvenanceEntry *prov, int n_prov, Err *e);
// The provenance entries of model_file_write ("engine", "created", then prov, skipping NULL
// values) on an open writer, for converters that stream tensors into the writer themselves.
int model_file_provenance(CkptWriter *w, const ProvenanceEntry *prov, int n_prov, Err *e);
// Joins argv into one shell-like line (for the "command" provenance entry); caller frees.
char *model_file_command_line(int argc, char **argv, const char *prefix);

#endif
