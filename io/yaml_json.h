// A YAML file read into the JSON DOM (io/json.h), for configs whose shape a flat key schema
// cannot hold (lists of mappings, as in `lethe eval`'s model lists).
#ifndef LETHE_YAML_JSON_H
#define LETHE_YAML_JSON_H

#include "errors.h"
#include "json.h"

// One YAML document. Plain scalars that read as decimal numbers, true/false or null become those
// JSON types; quoted scalars and everything else are strings. Anchors/aliases are rejected.
// Errors carry the path and the line. NULL on error.
JsonValue *yaml_parse_file_as_json(const char *path, Err *e);

#endif
