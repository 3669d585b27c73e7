// A YAML file read into the JSON DOM (io/json.h), for configs with lists of mappings (lethe eval):
// plain scalars that read as numbers, true/false or null become those; everything else a string.
#include "yaml_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "strbuf.h"

typedef struct {
    const char *path;
    yaml_parser_t parser;
    StrBuf json;
    Err *e;
} YamlToJson;

static int next_event(YamlToJson *y, yaml_event_t *ev) {
    if (yaml_parser_parse(&y->parser, ev)) return 0;
    return err_set(y->e, "%s:%zu: YAML syntax error: %s", y->path,
                   y->parser.problem_mark.line + 1,
                   y->parser.problem ? y->parser.problem : "unknown");
}

// YAML 1.2 core schema, the subset configs use: null, booleans, decimal numbers.
static void emit_scalar(StrBuf *out, const yaml_event_t *ev) {
    const char *s = (const char *)ev->data.scalar.value;
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
            !strcmp(s, "NULL")) {
            sb_printf(out, "null");
            return;
        }
        if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
            sb_printf(out, "true");
            return;
        }
        if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
            sb_printf(out, "false");
            return;
        }
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        // strtod also takes hex, inf and nan, which JSON cannot hold: numbers start with a digit,
        // a sign or a point, and contain no letters but an exponent's e.
        int plain_number = *end == 0 && errno == 0 && strspn(s, "+-.0123456789eE") == strlen(s);
        if (plain_number) {
            sb_printf(out, "%.17g", v);
            return;
        }
    }
    sb_json_string(out, s);
}

static int convert_node(YamlToJson *y, yaml_event_t *first);

static int convert_children(YamlToJson *y, yaml_event_type_t end, int is_mapping) {
    for (size_t i = 0;; i++) {
        yaml_event_t ev;
        if (next_event(y, &ev)) return -1;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (i > 0) sb_printf(&y->json, ",");
        if (is_mapping && i % 2 == 0) {
            if (ev.type != YAML_SCALAR_EVENT) {
                size_t line = ev.start_mark.line + 1;
                yaml_event_delete(&ev);
                return err_set(y->e, "%s:%zu: a mapping key must be a plain value", y->path,
                               line);
            }
            sb_json_string(&y->json, (const char *)ev.data.scalar.value);
            sb_printf(&y->json, ":");
            yaml_event_delete(&ev);
            i++; // the value follows without a separating comma
            yaml_event_t val;
            if (next_event(y, &val)) return -1;
            if (convert_node(y, &val)) return -1;
            continue;
        }
        if (convert_node(y, &ev)) return -1;
    }
}

// Converts the node whose first event is `first` (consumed here).
static int convert_node(YamlToJson *y, yaml_event_t *first) {
    size_t line = first->start_mark.line + 1;
    yaml_event_type_t type = first->type;
    if (type == YAML_SCALAR_EVENT) emit_scalar(&y->json, first);
    yaml_event_delete(first);
    switch (type) {
    case YAML_SCALAR_EVENT: return 0;
    case YAML_MAPPING_START_EVENT:
        sb_printf(&y->json, "{");
        if (convert_children(y, YAML_MAPPING_END_EVENT, 1)) return -1;
        sb_printf(&y->json, "}");
        return 0;
    case YAML_SEQUENCE_START_EVENT:
        sb_printf(&y->json, "[");
        if (convert_children(y, YAML_SEQUENCE_END_EVENT, 0)) return -1;
        sb_printf(&y->json, "]");
        return 0;
    default:
        return err_set(y->e, "%s:%zu: unsupported YAML node (anchors and aliases are not used)",
                       y->path, line);
    }
}

JsonValue *yaml_parse_file_as_json(const char *path, Err *e) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        err_set(e, "%s: %s", path, strerror(errno));
        return NULL;
    }
    YamlToJson y = {.path = path, .e = e};
    yaml_parser_initialize(&y.parser);
    yaml_parser_set_input_file(&y.parser, fp);
    int rc = 0, done = 0, documents = 0;
    while (!done && !rc) {
        yaml_event_t ev;
        if (next_event(&y, &ev)) {
            rc = -1;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; yaml_event_delete(&ev); break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT: yaml_event_delete(&ev); break;
        default:
            if (documents++ > 0) {
                yaml_event_delete(&ev);
                rc = err_set(e, "%s: holds more than one YAML document", path);
            } else {
                rc = convert_node(&y, &ev);
            }
        }
    }
    yaml_parser_delete(&y.parser);
    fclose(fp);
    JsonValue *root = NULL;
    if (!rc && y.json.failed) err_set(e, "out of memory");
    else if (!rc && documents == 0) err_set(e, "%s: empty YAML file", path);
    else if (!rc) {
        root = json_parse(y.json.data, y.json.len, e);
        if (!root) err_prefix(e, "%s: (converted from YAML)", path);
    }
    sb_free(&y.json);
    return root;
}
