// The run configuration's schema (one table: dotted key, type, default, help), YAML loading with
// libyaml, `key=value` overrides, method defaults, validation, and the resolved YAML text.
#include "run_config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "engine.h"
#include "model_yaml.h"
#include "objective.h"
#include "strbuf.h"

typedef enum { K_STR, K_INT, K_FLOAT, K_LIST } KeyType;

typedef struct {
    const char *key;
    KeyType type;
    size_t offset, size; // size: capacity of a string field
    const char *def;     // default as text ("" for an empty string)
    const char *help;
} Key;

#define S(k, f, d, h) {k, K_STR, offsetof(RunConfig, f), sizeof(((RunConfig *)0)->f), d, h}
#define L(k, f, d, h) {k, K_LIST, offsetof(RunConfig, f), sizeof(((RunConfig *)0)->f), d, h}
#define I(k, f, d, h) {k, K_INT, offsetof(RunConfig, f), 0, d, h}
#define F(k, f, d, h) {k, K_FLOAT, offsetof(RunConfig, f), 0, d, h}

static const Key keys[] = {
    S("model", model, "", "starting checkpoint.h5"),
    S("data.forget", forget, "", "forget set: token dataset .h5"),
    S("data.retain", retain, "", "retain set: token dataset .h5"),
    S("data.forget_alt", forget_alt, "",
      "idkdpo: the forget questions with the preferred (refusal) answers, sample i paired with "
      "data.forget's sample i"),
    S("data.train", train, "", "finetune: training set .h5"),
    S("eval.forget", eval_forget, "", "held-out forget set evaluated every eval_every steps"),
    S("eval.retain", eval_retain, "", "held-out retain set evaluated every eval_every steps"),
    S("out", out, "", "output directory"),
    S("output.dtype", out_dtype, "same", "same | float32 | bfloat16 | float16"),
    I("seed", seed, "0", "seed of the data order (and of the GPU's bf16 rounding)"),
    S("device.name", device, "auto", "cpu | cuda | auto (the GPU when there is one)"),
    S("device.dtype", device_dtype, "bf16",
      "cuda: bf16 weights/activations (fp32 master, moments) | fp32 (to check against the CPU)"),
    S("method.name", method, "npo",
      "ga | graddiff | npo | simnpo | wga | satimp | undial | ceu | rmu | idknll | idkdpo | "
      "task_vector (finetune: finetune)"),
    F("method.beta", beta, "0.1", "inverse temperature (npo 0.1, simnpo 4.5)"),
    F("method.alpha", alpha, "1.0", "weight of the retain term"),
    F("method.gamma", gamma, "1.0", "weight of the forget term (simnpo 0.125)"),
    F("method.delta", delta, "0.0", "simnpo margin"),
    F("method.beta2", beta2, "1.0", "satimp: exponent of (1 - p_t) in the token weight"),
    S("method.positions", positions, "answer",
      "undial, ceu: the positions of the forget term: all (every position of a sample, the "
      "question's with an unshifted target: undial's default, as its reference code) | answer"),
    I("method.ignore_first", ignore_first, "0",
      "undial, ceu: each forget sample's first n answer tokens left out of the forget term "
      "(ceu 1)"),
    I("method.layer", layer, "7",
      "rmu: the block (0-based) whose output the hidden-state terms see; the default "
      "optim.train_only is the mlp.down_proj of blocks layer-2..layer"),
    F("method.steering_coeff", steering, "20", "rmu: length c of the forget states' target c*u"),
    S("method.retain_loss", retain_loss, "nll", "nll | kl | hidden (rmu) | none"),
    S("optim.name", optimizer, "adamw", "adamw | sgd"),
    F("optim.lr", lr, "1e-5", "peak learning rate"),
    F("optim.weight_decay", weight_decay, "0.01", "decoupled weight decay (not norms, biases)"),
    F("optim.beta1", adam_beta1, "0.9", "Adam beta1"),
    F("optim.beta2", adam_beta2, "0.999", "Adam beta2"),
    F("optim.eps", adam_eps, "1e-8", "Adam epsilon"),
    F("optim.momentum", momentum, "0.0", "SGD momentum"),
    F("optim.grad_clip", grad_clip, "1.0", "max global gradient L2 norm (0 = off)"),
    S("optim.schedule", schedule, "linear", "constant | linear | cosine decay after warm-up"),
    I("optim.warmup_steps", warmup_steps, "0", "warm-up steps (wins over warmup_epochs)"),
    F("optim.warmup_epochs", warmup_epochs, "1.0", "warm-up in epochs of the anchor set"),
    L("optim.freeze", freeze, "", "name patterns of parameters kept fixed"),
    L("optim.train_only", train_only, "", "name patterns of the only parameters trained"),
    I("train.epochs", epochs, "10", "epochs over the anchor set (forget; finetune: train)"),
    I("train.max_steps", max_steps, "0", "stop after this many steps (0 = epochs decide)"),
    I("train.batch_size", batch_size, "32", "samples per optimizer step"),
    I("train.micro_batch_size", micro_batch_size, "8", "samples per forward (accumulation)"),
    I("train.max_batch_tokens", max_batch_tokens, "16384", "token budget of one forward"),
    F("train.early_stop_forget_nll", early_stop_forget_nll, "0",
      "stop once the forget NLL reaches this (0 = off)"),
    I("train.eval_every", eval_every, "0", "steps between held-out evaluations (0 = off)"),
    I("train.state_every", state_every, "50", "steps between run-state saves (0 = end only)"),
    I("train.log_every", log_every, "1", "steps between log lines"),
};
#define N_KEYS (int)(sizeof keys / sizeof keys[0])
_Static_assert(N_KEYS <= (int)sizeof(((RunConfig *)0)->is_set), "is_set too small");

static int find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].key, name) == 0) return i;
    return -1;
}

static const char *nearest_key(const char *name) {
    int best = 0, bestd = 1 << 30;
    for (int i = 0; i < N_KEYS; i++) {
        int d = edit_distance(keys[i].key, name);
        // a key that ends the same way ("lr" for "optim.lr") is a strong hint
        const char *dot = strrchr(keys[i].key, '.');
        if (dot && strcmp(dot + 1, name) == 0) d = 0;
        if (d < bestd) bestd = d, best = i;
    }
    return keys[best].key;
}

// Stores text into field i; `where` prefixes messages ("config.yaml:12" or "override").
static int set_value(RunConfig *c, int i, const char *text, const char *where, Err *e) {
    const Key *k = &keys[i];
    char *field = (char *)c + k->offset;
    char *end;
    errno = 0;
    switch (k->type) {
    case K_STR:
    case K_LIST:
        if (strlen(text) >= k->size)
            return err_set(e, "%s: %s is longer than %zu characters", where, k->key, k->size - 1);
        memcpy(field, text, strlen(text) + 1);
        break;
    case K_INT: {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end)
            return err_set(e, "%s: %s must be an integer, got '%s'", where, k->key, text);
        *(int64_t *)field = v;
        break;
    }
    case K_FLOAT: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v))
            return err_set(e, "%s: %s must be a number, got '%s'", where, k->key, text);
        *(double *)field = v;
        break;
    }
    }
    c->is_set[i] = 1;
    return 0;
}

void run_config_defaults(RunConfig *c, const char *command) {
    memset(c, 0, sizeof *c);
    Err e;
    for (int i = 0; i < N_KEYS; i++) set_value(c, i, keys[i].def, "default", &e);
    memset(c->is_set, 0, sizeof c->is_set);
    if (strcmp(command, "finetune") == 0) {
        snprintf(c->method, sizeof c->method, "finetune");
        snprintf(c->retain_loss, sizeof c->retain_loss, "none");
    }
}

// ---- YAML ---------------------------------------------------------------------------------

typedef struct {
    RunConfig *c;
    const char *path;
    char prefix[256];   // dotted path of the enclosing mappings
    Err *e;
} YamlCtx;

static int parse_node(YamlCtx *y, yaml_parser_t *p, yaml_event_t *first);

// Reads the next event, with a located error message on a syntax error.
static int next_event(YamlCtx *y, yaml_parser_t *p, yaml_event_t *ev) {
    if (yaml_parser_parse(p, ev)) return 0;
    return err_set(y->e, "%s:%zu: YAML syntax error: %s", y->path, p->problem_mark.line + 1,
                   p->problem ? p->problem : "unknown");
}

static int assign(YamlCtx *y, const char *key, const char *value, size_t line, int is_list) {
    char where[1200];
    snprintf(where, sizeof where, "%s:%zu", y->path, line);
    int i = find_key(key);
    if (i < 0)
        return err_set(y->e, "%s: unknown key '%s' (did you mean '%s'?)", where, key,
                       nearest_key(key));
    if (is_list && keys[i].type != K_LIST)
        return err_set(y->e, "%s: %s takes a single value, not a list", where, key);
    return set_value(y->c, i, value, where, y->e);
}

// A mapping: key scalars followed by a scalar, a list of scalars, or a nested mapping.
static int parse_mapping(YamlCtx *y, yaml_parser_t *p) {
    for (;;) {
        yaml_event_t ev;
        if (next_event(y, p, &ev)) return -1;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            size_t line = ev.start_mark.line + 1;
            yaml_event_delete(&ev);
            return err_set(y->e, "%s:%zu: expected a key", y->path, line);
        }
        char saved[256], key[256];
        snprintf(saved, sizeof saved, "%s", y->prefix);
        int n = snprintf(key, sizeof key, "%s%s%s", y->prefix, *y->prefix ? "." : "",
                         (const char *)ev.data.scalar.value);
        yaml_event_delete(&ev);
        if (n >= (int)sizeof key) return err_set(y->e, "%s: key path too long", y->path);
        snprintf(y->prefix, sizeof y->prefix, "%s", key);
        yaml_event_t val;
        if (next_event(y, p, &val)) return -1;
        int rc = parse_node(y, p, &val);
        snprintf(y->prefix, sizeof y->prefix, "%s", saved);
        if (rc) return -1;
    }
}

// The value at y->prefix, whose first event is `first` (consumed here).
static int parse_node(YamlCtx *y, yaml_parser_t *p, yaml_event_t *first) {
    size_t line = first->start_mark.line + 1;
    int rc = 0;
    if (first->type == YAML_SCALAR_EVENT) {
        rc = assign(y, y->prefix, (const char *)first->data.scalar.value, line, 0);
        yaml_event_delete(first);
        return rc;
    }
    if (first->type == YAML_MAPPING_START_EVENT) {
        yaml_event_delete(first);
        return parse_mapping(y, p);
    }
    if (first->type == YAML_SEQUENCE_START_EVENT) {
        yaml_event_delete(first);
        StrBuf joined = {0};
        sb_printf(&joined, "%s", "");
        for (;;) {
            yaml_event_t ev;
            if (next_event(y, p, &ev)) {
                sb_free(&joined);
                return -1;
            }
            if (ev.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&ev);
                break;
            }
            if (ev.type != YAML_SCALAR_EVENT) {
                yaml_event_delete(&ev);
                sb_free(&joined);
                return err_set(y->e, "%s:%zu: %s: a list may hold only plain values", y->path,
                               line, y->prefix);
            }
            sb_printf(&joined, "%s%s", joined.len ? "," : "", (const char *)ev.data.scalar.value);
            yaml_event_delete(&ev);
        }
        rc = assign(y, y->prefix, joined.data ? joined.data : "", line, 1);
        sb_free(&joined);
        return rc;
    }
    yaml_event_delete(first);
    return err_set(y->e, "%s:%zu: %s: unsupported YAML node (anchors and aliases are not used)",
                   y->path, line, y->prefix);
}

int run_config_load_yaml(RunConfig *c, const char *path, Err *e) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_set(e, "%s: %s", path, strerror(errno));
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, fp);
    YamlCtx y = {c, path, "", e};
    int rc = 0, done = 0;
    while (!done && !rc) {
        yaml_event_t ev;
        if (next_event(&y, &p, &ev)) {
            rc = -1;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_MAPPING_START_EVENT: rc = parse_mapping(&y, &p); break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT: break;
        default:
            rc = err_set(e, "%s:%zu: the config must be a mapping of keys", path,
                         ev.start_mark.line + 1);
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    fclose(fp);
    return rc;
}

int run_config_override(RunConfig *c, const char *assignment, Err *e) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return err_set(e, "override '%s' is not of the form key=value (e.g. optim.lr=2e-5)",
                       assignment);
    char key[256];
    size_t n = (size_t)(eq - assignment);
    if (n >= sizeof key) return err_set(e, "override key too long");
    memcpy(key, assignment, n);
    key[n] = 0;
    int i = find_key(key);
    if (i < 0)
        return err_set(e, "override: unknown key '%s' (did you mean '%s'?)", key,
                       nearest_key(key));
    char where[300];
    snprintf(where, sizeof where, "override %s", key);
    return set_value(c, i, eq + 1, where, e);
}

// ---- method defaults and validation ---------------------------------------------------------

static int is_set(const RunConfig *c, const char *key) {
    int i = find_key(key);
    return i >= 0 && c->is_set[i];
}

static int need_file(const char *key, const char *path, Err *e) {
    struct stat st;
    if (!*path) return err_set(e, "%s is required", key);
    if (stat(path, &st) != 0)
        return err_set(e, "%s: %s: %s", key, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return err_set(e, "%s: %s is not a regular file", key, path);
    return 0;
}

int run_config_finish(RunConfig *c, const char *command, Err *e) {
    const int finetune = strcmp(command, "finetune") == 0;
    const Method *m = method_find(c->method);
    if (!m) {
        StrBuf names = {0};
        for (const Method *const *it = method_all(); *it; it++)
            if (strcmp((*it)->name, "finetune") != 0)
                sb_printf(&names, "%s%s", names.len ? ", " : "", (*it)->name);
        err_set(e, "method.name '%s' is not a method (one of: %s)", c->method,
                names.data ? names.data : "");
        sb_free(&names);
        return -1;
    }
    if (finetune != (strcmp(c->method, "finetune") == 0))
        return err_set(e, finetune ? "lethe finetune trains with method.name finetune"
                                   : "method.name finetune belongs to `lethe finetune`");
    if (!is_set(c, "method.beta")) c->beta = m->beta;
    if (!is_set(c, "method.alpha")) c->alpha = m->alpha;
    if (!is_set(c, "method.gamma")) c->gamma = m->gamma;
    if (!is_set(c, "method.delta")) c->delta = m->delta;
    if (!is_set(c, "method.beta2")) c->beta2 = m->beta2;
    if (!is_set(c, "method.ignore_first")) c->ignore_first = m->ignore_first;
    if (!is_set(c, "method.positions"))
        snprintf(c->positions, sizeof c->positions, "%s", m->all_positions ? "all" : "answer");
    if (strcmp(c->positions, "all") && strcmp(c->positions, "answer"))
        return err_set(e, "method.positions must be all or answer (got '%s')", c->positions);
    if (strcmp(c->positions, "all") == 0 && !m->forget_soft)
        return err_set(e, "method.positions all is for the soft-target methods (undial, ceu); "
                          "%s learns from the answer's targets",
                       m->name);
    if (strcmp(c->positions, "all") == 0 && c->ignore_first > 0)
        return err_set(e, "method.ignore_first counts answer tokens: it needs method.positions "
                          "answer");
    if (!is_set(c, "method.layer")) c->layer = m->layer;
    if (!is_set(c, "method.steering_coeff")) c->steering = m->steering;
    if (!is_set(c, "method.retain_loss"))
        snprintf(c->retain_loss, sizeof c->retain_loss, "%s",
                 m->retain == RETAIN_KL       ? "kl"
                 : m->retain == RETAIN_NLL    ? "nll"
                 : m->retain == RETAIN_HIDDEN ? "hidden"
                                              : "none");
    if (strcmp(c->retain_loss, "nll") && strcmp(c->retain_loss, "kl") &&
        strcmp(c->retain_loss, "hidden") && strcmp(c->retain_loss, "none"))
        return err_set(e, "method.retain_loss must be nll, kl, hidden or none (got '%s')",
                       c->retain_loss);
    if (m->hidden && (c->layer < 0 || c->layer > 100000))
        return err_set(e, "method.layer must be a block index >= 0 (got %lld)",
                       (long long)c->layer);
    if (m->hidden && !(c->steering > 0))
        return err_set(e, "method.steering_coeff must be positive");
    if (!m->hidden && strcmp(c->retain_loss, "hidden") == 0)
        return err_set(e, "method.retain_loss hidden is RMU's (the hidden states at "
                          "method.layer); method %s takes nll, kl or none",
                       m->name);
    // RMU trains the down projections of blocks layer-2..layer unless told otherwise.
    if (m->hidden && !is_set(c, "optim.train_only")) {
        int n = 0;
        for (int64_t l = c->layer >= 2 ? c->layer - 2 : 0; l <= c->layer; l++)
            n += snprintf(c->train_only + n, sizeof c->train_only - (size_t)n,
                          "%smodel.layers.%lld.mlp.down_proj.weight", n ? "," : "",
                          (long long)l);
    }
    if (strcmp(c->out_dtype, "same") && strcmp(c->out_dtype, "float32") &&
        strcmp(c->out_dtype, "bfloat16") && strcmp(c->out_dtype, "float16"))
        return err_set(e, "output.dtype must be same, float32, bfloat16 or float16 (got '%s')",
                       c->out_dtype);
    const DeviceRequest dev = {c->device, c->device_dtype};
    if (engine_check_request(&dev, e)) return -1;
    if (strcmp(c->optimizer, "adamw") && strcmp(c->optimizer, "sgd"))
        return err_set(e, "optim.name must be adamw or sgd (got '%s')", c->optimizer);
    if (strcmp(c->schedule, "constant") && strcmp(c->schedule, "linear") &&
        strcmp(c->schedule, "cosine"))
        return err_set(e, "optim.schedule must be constant, linear or cosine (got '%s')",
                       c->schedule);
    if (!(c->lr > 0)) return err_set(e, "optim.lr must be positive (got %g)", c->lr);
    if (c->weight_decay < 0 || c->grad_clip < 0 || c->adam_eps <= 0 || c->adam_beta1 < 0 ||
        c->adam_beta1 >= 1 || c->adam_beta2 < 0 || c->adam_beta2 >= 1 || c->momentum < 0)
        return err_set(e, "optim: weight_decay, grad_clip, momentum >= 0; eps > 0; betas in "
                          "[0, 1)");
    if ((m->forget || m->forget_token) && !(c->beta > 0))
        return err_set(e, "method.beta must be positive");
    if (m->forget_token && !(c->beta2 >= 0)) return err_set(e, "method.beta2 must be >= 0");
    if (m->forget_soft && !(c->beta >= 0)) return err_set(e, "method.beta must be >= 0");
    if (c->ignore_first < 0) return err_set(e, "method.ignore_first must be >= 0");
    if (c->batch_size <= 0 || c->micro_batch_size <= 0 || c->max_batch_tokens <= 0)
        return err_set(e, "train.batch_size, micro_batch_size and max_batch_tokens must be "
                          "positive");
    if (c->epochs <= 0 && c->max_steps <= 0)
        return err_set(e, "give train.epochs or train.max_steps (> 0)");
    if (c->epochs < 0 || c->max_steps < 0 || c->warmup_steps < 0 || c->warmup_epochs < 0 ||
        c->eval_every < 0 || c->state_every < 0 || c->log_every < 0)
        return err_set(e, "train.* counts and optim warm-up must not be negative");
    if (!*c->out) return err_set(e, "out (the output directory) is required");
    if (need_file("model", c->model, e)) return -1;
    if (finetune) {
        if (need_file("data.train", c->train, e)) return -1;
    } else {
        if (need_file("data.forget", c->forget, e)) return -1;
        if (method_pairs(m) && need_file("data.forget_alt", c->forget_alt, e))
            return err_prefix(e, "%s pairs each forget answer with a preferred one (lethe "
                                 "tokenize --answers data/tofu/idontknow.jsonl)", m->name);
        if (strcmp(c->retain_loss, "none") && c->alpha != 0 && need_file("data.retain", c->retain, e))
            return err_prefix(e, "the %s retain term needs a retain set", c->retain_loss);
    }
    if (*c->eval_forget && need_file("eval.forget", c->eval_forget, e)) return -1;
    if (*c->eval_retain && need_file("eval.retain", c->eval_retain, e)) return -1;
    return 0;
}

void run_config_print_keys(FILE *f) {
    for (int i = 0; i < N_KEYS; i++)
        fprintf(f, "  %-28s %-9s %s\n", keys[i].key,
                keys[i].type == K_LIST ? "[]" : *keys[i].def ? keys[i].def : "\"\"", keys[i].help);
}

char *run_config_to_yaml(const RunConfig *c) {
    StrBuf b = {0};
    sb_printf(&b, "# resolved lethe run config (every key, defaults included)\n");
    char section[64] = "";
    for (int i = 0; i < N_KEYS; i++) {
        const Key *k = &keys[i];
        const char *dot = strchr(k->key, '.');
        const char *leaf = k->key;
        const char *indent = "";
        if (dot) {
            size_t n = (size_t)(dot - k->key);
            if (strlen(section) != n || strncmp(section, k->key, n) != 0) {
                snprintf(section, sizeof section, "%.*s", (int)n, k->key);
                sb_printf(&b, "%s:\n", section);
            }
            leaf = dot + 1;
            indent = "  ";
        } else {
            section[0] = 0;
        }
        const char *field = (const char *)c + k->offset;
        sb_printf(&b, "%s%s: ", indent, leaf);
        switch (k->type) {
        case K_STR: sb_json_string(&b, field); break; // a JSON string is a valid YAML scalar
        case K_LIST: {
            sb_printf(&b, "[");
            const char *p = field;
            int first = 1;
            while (*p) {
                size_t n = strcspn(p, ",");
                char item[512];
                snprintf(item, sizeof item, "%.*s", (int)n, p);
                sb_printf(&b, "%s", first ? "" : ", ");
                sb_json_string(&b, item);
                first = 0;
                p += n + (p[n] == ',');
            }
            sb_printf(&b, "]");
            break;
        }
        case K_INT: sb_printf(&b, "%lld", (long long)*(const int64_t *)field); break;
        case K_FLOAT: { // the shortest text that reads back as the same double
            double v = *(const double *)field;
            char num[40];
            for (int prec = 6; prec <= 17; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, v);
                if (strtod(num, NULL) == v) break;
            }
            sb_printf(&b, "%s", num);
            break;
        }
        }
        sb_printf(&b, "\n");
    }
    return b.failed ? (sb_free(&b), NULL) : b.data;
}
