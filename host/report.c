// report.html from eval.json (see report.h): the document's checks, then the page: header and
// models, a table and key-metric bar chart per benchmark, trade-off scatter plots, series line
// charts, training curves and throughput.
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_svg.h"
#include "strbuf.h"
#include "textfile.h"

#ifndef LETHE_VERSION
#define LETHE_VERSION "unknown"
#endif

// A training-curve line keeps at most this many points: a long run would otherwise make the page
// megabytes of coordinates that no screen can resolve.
#define CURVE_MAX_POINTS 2000

typedef enum { BETTER_NONE, BETTER_HIGHER, BETTER_LOWER, BETTER_GOLD, BETTER_ZERO } Better;

typedef struct {
    const char *name, *role, *path, *sha256;
    const char *metrics_jsonl; // NULL when the model has no training curves
    const JsonValue *values;   // values[name], an object, or NULL
} ReportModel;

typedef struct {
    const char *key, *benchmark, *label;
    Better better;
    int key_metric, log_scale;
} ReportMetric;

typedef struct {
    const char *x, *y, *title, *benchmark;
    int x_log, y_log;
} ReportTradeoff;

typedef struct {
    const JsonValue *eval;
    ReportModel *models;
    int n_models;
    ReportMetric *metrics;
    int n_metrics;
    ReportTradeoff *tradeoffs;
    int n_tradeoffs;
    const char **benchmarks; // distinct, in order of first appearance
    int n_benchmarks;
    int gold; // the first model of role "gold", or -1
    int series;
    int *all_colors;          // 0 .. n_models-1: model i is drawn in palette colour i
    const char **model_names; // (n_models) for legends and category axes
} Report;

// ---- reading and checking eval.json --------------------------------------------------------

static const char *type_name(JsonType t) {
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "?";
}

// obj[key] when present and not null, which must then be of type t; NULL otherwise (an error
// when required). where names obj in messages ("models[2]"; "" for the root).
static int get_member(const JsonValue *obj, const char *where, const char *key, JsonType t,
                      int required, const JsonValue **out, Err *e) {
    const JsonValue *v = json_object_get(obj, key);
    const char *dot = *where ? "." : "";
    *out = NULL;
    if (!v || json_is(v, JSON_NULL)) {
        if (required)
            return err_set(e, "%s%s\"%s\": missing (expected %s)", where, dot, key, type_name(t));
        return 0;
    }
    if (!json_is(v, t))
        return err_set(e, "%s%s\"%s\": expected %s, got %s", where, dot, key, type_name(t),
                       type_name(json_type(v)));
    *out = v;
    return 0;
}

static int get_string(const JsonValue *obj, const char *where, const char *key, int required,
                      const char *fallback, const char **out, Err *e) {
    const JsonValue *v;
    if (get_member(obj, where, key, JSON_STRING, required, &v, e)) return -1;
    *out = v ? json_string(v, NULL) : fallback;
    return 0;
}

static int get_flag(const JsonValue *obj, const char *where, const char *key, int *out, Err *e) {
    const JsonValue *v;
    if (get_member(obj, where, key, JSON_BOOL, 0, &v, e)) return -1;
    *out = json_bool(v);
    return 0;
}

static int parse_better(const char *s, Better *out) {
    static const struct {
        const char *name;
        Better b;
    } names[] = {{"higher", BETTER_HIGHER},
                 {"lower", BETTER_LOWER},
                 {"gold", BETTER_GOLD},
                 {"zero", BETTER_ZERO},
                 {"none", BETTER_NONE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].b;
            return 0;
        }
    return -1;
}

static void report_free(Report *r) {
    free(r->models);
    free(r->metrics);
    free(r->tradeoffs);
    free(r->benchmarks);
    free(r->all_colors);
    free(r->model_names);
    memset(r, 0, sizeof *r);
}

static int load_models(Report *r, const JsonValue *eval, Err *e) {
    const JsonValue *models, *values;
    if (get_member(eval, "", "models", JSON_ARRAY, 1, &models, e)) return -1;
    if (get_member(eval, "", "values", JSON_OBJECT, 0, &values, e)) return -1;
    size_t n = json_array_len(models);
    if (n == 0) return err_set(e, "\"models\": empty (a report compares at least one model)");
    if (n > 1000) return err_set(e, "\"models\": %zu models; at most 1000 fit a report", n);
    r->n_models = (int)n;
    r->models = calloc(n, sizeof *r->models);
    r->all_colors = calloc(n, sizeof *r->all_colors);
    r->model_names = calloc(n, sizeof *r->model_names);
    if (!r->models || !r->all_colors || !r->model_names) return err_set(e, "out of memory");
    for (int i = 0; i < r->n_models; i++) {
        const JsonValue *m = json_array_get(models, (size_t)i);
        ReportModel *rm = &r->models[i];
        char where[48];
        snprintf(where, sizeof where, "models[%d]", i);
        if (!json_is(m, JSON_OBJECT))
            return err_set(e, "%s: expected an object, got %s", where, type_name(json_type(m)));
        if (get_string(m, where, "name", 1, NULL, &rm->name, e) ||
            get_string(m, where, "role", 0, "", &rm->role, e) ||
            get_string(m, where, "path", 0, "", &rm->path, e) ||
            get_string(m, where, "sha256", 0, "", &rm->sha256, e) ||
            get_string(m, where, "metrics_jsonl", 0, NULL, &rm->metrics_jsonl, e))
            return -1;
        if (!*rm->name) return err_set(e, "%s.\"name\": empty", where);
        for (int j = 0; j < i; j++)
            if (strcmp(r->models[j].name, rm->name) == 0)
                return err_set(e, "%s.\"name\": \"%.100s\" is also the name of models[%d]", where,
                               rm->name, j);
        if (r->gold < 0 && strcmp(rm->role, "gold") == 0) r->gold = i;
        r->all_colors[i] = i;
        r->model_names[i] = rm->name;
        // A value is a number or null (not computed); anything else is a bug of the writer.
        const JsonValue *mv = json_object_get(values, rm->name);
        if (mv && !json_is(mv, JSON_NULL)) {
            if (!json_is(mv, JSON_OBJECT))
                return err_set(e, "\"values\".\"%.100s\": expected an object, got %s", rm->name,
                               type_name(json_type(mv)));
            for (size_t k = 0; k < json_object_len(mv); k++) {
                JsonType t = json_type(json_object_value(mv, k));
                if (t != JSON_NUMBER && t != JSON_NULL)
                    return err_set(
                        e, "\"values\".\"%.100s\".\"%.100s\": expected a number or null, got %s",
                        rm->name, json_object_key(mv, k), type_name(t));
            }
            rm->values = mv;
        }
    }
    return 0;
}

static int load_metrics(Report *r, const JsonValue *eval, Err *e) {
    const JsonValue *metrics;
    if (get_member(eval, "", "metrics", JSON_ARRAY, 1, &metrics, e)) return -1;
    size_t n = json_array_len(metrics);
    if (n > 100000) return err_set(e, "\"metrics\": %zu metrics is more than a report shows", n);
    r->n_metrics = (int)n;
    r->metrics = calloc(n ? n : 1, sizeof *r->metrics);
    r->benchmarks = calloc(n ? n : 1, sizeof *r->benchmarks);
    if (!r->metrics || !r->benchmarks) return err_set(e, "out of memory");
    for (int i = 0; i < r->n_metrics; i++) {
        const JsonValue *m = json_array_get(metrics, (size_t)i);
        ReportMetric *rm = &r->metrics[i];
        char where[48];
        const char *better;
        snprintf(where, sizeof where, "metrics[%d]", i);
        if (!json_is(m, JSON_OBJECT))
            return err_set(e, "%s: expected an object, got %s", where, type_name(json_type(m)));
        if (get_string(m, where, "key", 1, NULL, &rm->key, e) ||
            get_string(m, where, "benchmark", 0, "Other", &rm->benchmark, e) ||
            get_string(m, where, "label", 0, rm->key, &rm->label, e) ||
            get_string(m, where, "better", 0, "none", &better, e) ||
            get_flag(m, where, "key_metric", &rm->key_metric, e) ||
            get_flag(m, where, "log_scale", &rm->log_scale, e))
            return -1;
        if (parse_better(better, &rm->better))
            return err_set(e,
                           "%s.\"better\": \"%.60s\" is not one of higher, lower, gold, zero, none",
                           where, better);
        for (int j = 0; j < i; j++)
            if (strcmp(r->metrics[j].key, rm->key) == 0)
                return err_set(e, "%s.\"key\": \"%.100s\" is also the key of metrics[%d]", where,
                               rm->key, j);
        int seen = 0;
        for (int j = 0; j < r->n_benchmarks && !seen; j++)
            seen = strcmp(r->benchmarks[j], rm->benchmark) == 0;
        if (!seen) r->benchmarks[r->n_benchmarks++] = rm->benchmark;
    }
    return 0;
}

static int load_tradeoffs(Report *r, const JsonValue *eval, Err *e) {
    const JsonValue *list;
    if (get_member(eval, "", "tradeoffs", JSON_ARRAY, 0, &list, e)) return -1;
    size_t n = json_array_len(list);
    if (n > 1000) return err_set(e, "\"tradeoffs\": %zu plots is more than a report shows", n);
    r->n_tradeoffs = (int)n;
    r->tradeoffs = calloc(n ? n : 1, sizeof *r->tradeoffs);
    if (!r->tradeoffs) return err_set(e, "out of memory");
    for (int i = 0; i < r->n_tradeoffs; i++) {
        const JsonValue *t = json_array_get(list, (size_t)i);
        ReportTradeoff *rt = &r->tradeoffs[i];
        char where[48];
        snprintf(where, sizeof where, "tradeoffs[%d]", i);
        if (!json_is(t, JSON_OBJECT))
            return err_set(e, "%s: expected an object, got %s", where, type_name(json_type(t)));
        if (get_string(t, where, "x", 1, NULL, &rt->x, e) ||
            get_string(t, where, "y", 1, NULL, &rt->y, e) ||
            get_string(t, where, "title", 0, NULL, &rt->title, e) ||
            get_string(t, where, "benchmark", 0, NULL, &rt->benchmark, e) ||
            get_flag(t, where, "x_log", &rt->x_log, e) ||
            get_flag(t, where, "y_log", &rt->y_log, e))
            return -1;
    }
    return 0;
}

static int report_load(Report *r, const JsonValue *eval, Err *e) {
    memset(r, 0, sizeof *r);
    r->eval = eval;
    r->gold = -1;
    if (!json_is(eval, JSON_OBJECT))
        return err_set(e, "expected a JSON object with \"format\": \"%s\", got %s",
                       REPORT_EVAL_FORMAT, type_name(json_type(eval)));
    const JsonValue *format = json_object_get(eval, "format");
    if (!format)
        return err_set(e, "\"format\": missing (expected \"%s\"; is this an eval.json?)",
                       REPORT_EVAL_FORMAT);
    if (!json_is(format, JSON_STRING))
        return err_set(e, "\"format\": expected \"%s\", got %s", REPORT_EVAL_FORMAT,
                       type_name(json_type(format)));
    if (strcmp(json_string(format, NULL), REPORT_EVAL_FORMAT) != 0)
        return err_set(e, "\"format\": \"%.60s\" is not \"%s\"", json_string(format, NULL),
                       REPORT_EVAL_FORMAT);
    const JsonValue *v;
    const char *s;
    if (get_string(eval, "", "title", 0, NULL, &s, e) ||
        get_string(eval, "", "created", 0, NULL, &s, e) ||
        get_string(eval, "", "lethe_version", 0, NULL, &s, e) ||
        get_flag(eval, "", "series", &r->series, e) ||
        get_member(eval, "", "notes", JSON_ARRAY, 0, &v, e))
        return -1;
    for (size_t i = 0; i < json_array_len(v); i++)
        if (!json_is(json_array_get(v, i), JSON_STRING))
            return err_set(e, "\"notes\"[%zu]: expected a string, got %s", i,
                           type_name(json_type(json_array_get(v, i))));
    if (load_models(r, eval, e) || load_metrics(r, eval, e) || load_tradeoffs(r, eval, e))
        return -1;
    return 0;
}

// values[model][key] when it is a number.
static int model_value(const Report *r, int m, const char *key, double *v) {
    const JsonValue *x = json_object_get(r->models[m].values, key);
    if (!json_is(x, JSON_NUMBER)) return 0;
    *v = json_number(x);
    return 1;
}

static const char *metric_label(const Report *r, const char *key) {
    for (int i = 0; i < r->n_metrics; i++)
        if (strcmp(r->metrics[i].key, key) == 0) return r->metrics[i].label;
    return key;
}

// How good model m is on metric mt (larger is better); 0 when it does not compete. For "gold"
// the gold model itself stays out: its distance to itself is 0 by definition.
static int metric_score(const Report *r, const ReportMetric *mt, int m, double gold_value,
                        double *score) {
    double v;
    if (!model_value(r, m, mt->key, &v)) return 0;
    switch (mt->better) {
    case BETTER_HIGHER: *score = v; return 1;
    case BETTER_LOWER: *score = -v; return 1;
    case BETTER_ZERO: *score = -fabs(v); return 1;
    case BETTER_GOLD:
        if (m == r->gold) return 0;
        *score = -fabs(v - gold_value);
        return 1;
    case BETTER_NONE: return 0;
    }
    return 0;
}

// best[m] = 1 for the models holding the best value of mt (ties all marked); nothing is marked
// when fewer than two models compete, or for "gold" without a gold value.
static void mark_best(const Report *r, const ReportMetric *mt, unsigned char *best) {
    memset(best, 0, (size_t)r->n_models);
    double gold_value = 0, top = -INFINITY, s;
    if (mt->better == BETTER_GOLD &&
        (r->gold < 0 || !model_value(r, r->gold, mt->key, &gold_value)))
        return;
    int competing = 0;
    for (int m = 0; m < r->n_models; m++)
        if (metric_score(r, mt, m, gold_value, &s)) {
            competing++;
            if (s > top) top = s;
        }
    if (competing < 2) return;
    for (int m = 0; m < r->n_models; m++)
        if (metric_score(r, mt, m, gold_value, &s) && s == top) best[m] = 1;
}

// ---- charts ---------------------------------------------------------------------------------

// The value axis of a chart over the values v[i] with has[i]: log10 when asked and some value is
// positive (values <= 0 are then drawn at the axis floor; *clamped counts them), else linear;
// with_zero keeps 0 in a linear range so that bars grow from it. *log_refused: log was asked
// but no value is positive.
static void value_axis(SvgAxis *a, const double *v, const unsigned char *has, int n, int want_log,
                       int with_zero, int *clamped, int *log_refused) {
    double lo = INFINITY, hi = -INFINITY, min_pos = INFINITY, max_pos = -INFINITY;
    *clamped = *log_refused = 0;
    for (int i = 0; i < n; i++) {
        if (!has[i]) continue;
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
        if (v[i] > 0 && v[i] < min_pos) min_pos = v[i];
        if (v[i] > 0 && v[i] > max_pos) max_pos = v[i];
        if (v[i] <= 0) (*clamped)++;
    }
    if (want_log && max_pos > 0) {
        svg_axis_log(a, min_pos, max_pos);
        return;
    }
    *log_refused = want_log && hi >= lo; // some values, none positive
    *clamped = 0;
    if (hi < lo) lo = hi = 0; // no values at all
    if (with_zero) {
        if (lo > 0) lo = 0;
        if (hi < 0) hi = 0;
        if (lo == 0 && hi == 0) hi = 1;
    }
    svg_axis_linear(a, lo, hi, 6);
}

static void chart_note(StrBuf *b, double x, double y, const char *text) {
    svg_text(b, x, y, "start", "ch-note", text);
}

// Bars of one metric in one panel at (ox, oy): one bar per model, value labels, its own axis.
static void bar_panel(StrBuf *b, const Report *r, const ReportMetric *mt, double ox, double oy,
                      double slot, double plot_h, double panel_w, double *vals,
                      unsigned char *has) {
    for (int m = 0; m < r->n_models; m++)
        has[m] = (unsigned char)model_value(r, m, mt->key, &vals[m]);
    SvgFrame f = {.x = ox + 72, .y = oy + 40, .w = slot * r->n_models, .h = plot_h};
    int clamped, log_refused;
    value_axis(&f.ya, vals, has, r->n_models, mt->log_scale, 1, &clamped, &log_refused);
    svg_axis_categories(&f.xa, r->n_models);
    svg_text_fit(b, ox + 72 + f.w / 2, oy + 18, "middle", "ch-panel", mt->label, panel_w - 16, 12);
    svg_y_axis(b, &f, f.ya.log ? "log scale" : "value");
    const double bottom = f.y + f.h, zero_y = f.ya.log ? bottom : svg_py(&f, 0);
    char text[32];
    for (int m = 0; m < r->n_models; m++) {
        const double cx = svg_px(&f, m), bw = slot * 0.7, bx = cx - bw / 2;
        if (!has[m]) {
            svg_text(b, cx, zero_y - 5, "middle", "ch-missing", "\xE2\x80\x94"); // em dash
            continue;
        }
        svg_format_value(text, vals[m]);
        if (f.ya.log && vals[m] <= 0) { // off a log axis: a dashed stub on the floor
            svg_rect(b, bx, bottom - 3, bw, 3, svg_color(m), "ch-clamped");
            svg_text(b, cx, bottom - 7, "middle", "ch-value", text);
            continue;
        }
        const double y = svg_py(&f, vals[m]);
        const double top = y < zero_y ? y : zero_y, h = fabs(zero_y - y);
        svg_rect(b, bx, top, bw, h > 0.5 ? h : 0.5, svg_color(m), "ch-bar");
        double label_y = vals[m] >= 0 || f.ya.log ? y - 4 : y + 12;
        if (label_y > bottom - 2) label_y = bottom - 2; // a bar down to the floor: label inside
        svg_text(b, cx, label_y, "middle", "ch-value", text);
    }
    if (!f.ya.log) svg_line(b, f.x, zero_y, f.x + f.w, zero_y, "ch-zero");
    svg_x_axis(b, &f, "model", r->model_names, r->n_models);
    const double note_y = bottom + svg_category_axis_height(slot, r->model_names, r->n_models) + 8;
    if (clamped)
        chart_note(b, f.x - 60, note_y,
                   "dashed: value \xE2\x89\xA4 0, drawn at the log axis floor");
    else if (log_refused)
        chart_note(b, f.x - 60, note_y, "no positive value: linear axis instead of log");
}

// One chart per benchmark: a panel per key metric (each with its own linear or log axis, since
// the metrics have different units), a bar per model in the model's colour, one legend.
static void chart_key_bars(StrBuf *b, const Report *r, const char *bench) {
    int n = 0;
    for (int k = 0; k < r->n_metrics; k++)
        n += r->metrics[k].key_metric && strcmp(r->metrics[k].benchmark, bench) == 0;
    if (n == 0) return;
    double *vals = calloc((size_t)r->n_models, sizeof *vals);
    unsigned char *has = calloc((size_t)r->n_models, 1);
    if (!vals || !has) {
        b->failed = 1;
        free(vals);
        free(has);
        return;
    }
    // The slot of a bar fits its widest value label.
    double slot = 44;
    char text[32];
    for (int k = 0; k < r->n_metrics; k++) {
        const ReportMetric *mt = &r->metrics[k];
        if (!mt->key_metric || strcmp(mt->benchmark, bench) != 0) continue;
        for (int m = 0; m < r->n_models; m++) {
            double v;
            if (!model_value(r, m, mt->key, &v)) continue;
            svg_format_value(text, v);
            double w = svg_text_width(text, 10) + 10;
            if (w > slot) slot = w;
        }
    }
    // Model names stay level under their bars when a modest slot holds them.
    for (int m = 0; m < r->n_models; m++) {
        double w = svg_text_width(r->model_names[m], 11) + 10;
        if (w > slot && w <= 100) slot = w;
    }
    const double plot_h = 180, plot_w = slot * r->n_models, panel_w = 72 + plot_w + 28;
    const double panel_h =
        40 + plot_h + svg_category_axis_height(slot, r->model_names, r->n_models) + 22;
    const double legend_w = svg_legend_width(r->model_names, r->n_models);
    int per_row = (int)((1100 - legend_w) / panel_w);
    if (per_row < 1) per_row = 1;
    if (per_row > n) per_row = n;
    const int rows = (n + per_row - 1) / per_row;
    const double width = per_row * panel_w + legend_w + 24, height = 36 + rows * panel_h;

    StrBuf title = {0};
    sb_printf(&title, "%s: key metrics", bench);
    sb_printf(b, "<figure>\n");
    svg_begin(b, width, height, title.data ? title.data : bench);
    svg_legend(b, per_row * panel_w + 16, 48, r->model_names, r->all_colors, r->n_models);
    int j = 0;
    for (int k = 0; k < r->n_metrics; k++) {
        const ReportMetric *mt = &r->metrics[k];
        if (!mt->key_metric || strcmp(mt->benchmark, bench) != 0) continue;
        bar_panel(b, r, mt, (j % per_row) * panel_w, 36 + (j / per_row) * panel_h, slot, plot_h,
                  panel_w, vals, has);
        j++;
    }
    svg_end(b);
    sb_printf(b, "</figure>\n");
    sb_free(&title);
    free(vals);
    free(has);
}

// Axis label of a metric: its label, with the scale when log.
static void axis_label(StrBuf *out, const Report *r, const char *key, const SvgAxis *a) {
    sb_printf(out, "%s%s", metric_label(r, key), a->log ? " (log scale)" : "");
}

// A scatter plot of two metrics: one labelled point per model that has both values.
static void chart_tradeoff(StrBuf *b, const Report *r, const ReportTradeoff *t) {
    const int n = r->n_models;
    double *xs = calloc((size_t)n, sizeof *xs), *ys = calloc((size_t)n, sizeof *ys);
    unsigned char *has = calloc((size_t)n, 1);
    StrBuf title = {0}, xlabel = {0}, ylabel = {0}, missing = {0};
    if (!xs || !ys || !has) {
        b->failed = 1;
        goto done;
    }
    for (int m = 0; m < n; m++) {
        has[m] = model_value(r, m, t->x, &xs[m]) && model_value(r, m, t->y, &ys[m]);
        if (!has[m]) sb_printf(&missing, "%s%s", missing.len ? ", " : "", r->models[m].name);
    }
    SvgFrame f = {.x = 84, .y = 48, .w = 520, .h = 320};
    int x_clamped, y_clamped, x_refused, y_refused;
    value_axis(&f.xa, xs, has, n, t->x_log, 0, &x_clamped, &x_refused);
    value_axis(&f.ya, ys, has, n, t->y_log, 0, &y_clamped, &y_refused);
    if (t->title)
        sb_printf(&title, "%s", t->title);
    else
        sb_printf(&title, "%s vs %s", metric_label(r, t->y), metric_label(r, t->x));
    axis_label(&xlabel, r, t->x, &f.xa);
    axis_label(&ylabel, r, t->y, &f.ya);
    const double legend_w = svg_legend_width(r->model_names, n);
    const double width = f.x + f.w + 110 + legend_w, height = f.y + f.h + 96;
    sb_printf(b, "<figure>\n");
    svg_begin(b, width, height, title.data ? title.data : "trade-off");
    svg_y_axis(b, &f, ylabel.data ? ylabel.data : t->y);
    svg_x_axis(b, &f, xlabel.data ? xlabel.data : t->x, NULL, 0);
    for (int m = 0; m < n; m++) {
        if (!has[m]) continue;
        const double x = svg_px(&f, xs[m]), y = svg_py(&f, ys[m]);
        svg_circle(b, x, y, 5, svg_color(m));
        svg_text(b, x + 8, y - 7, "start", "ch-point-label", r->models[m].name);
    }
    svg_legend(b, f.x + f.w + 100, f.y, r->model_names, r->all_colors, n);
    double note_y = f.y + f.h + 56;
    if (missing.len) {
        StrBuf note = {0};
        sb_printf(&note, "not plotted (a value is missing): %s", missing.data);
        svg_text_fit(b, f.x - 60, note_y, "start", "ch-note", note.data ? note.data : "",
                     width - 30, 11);
        sb_free(&note);
        note_y += 16;
    }
    if (x_clamped || y_clamped)
        chart_note(b, f.x - 60, note_y,
                   "values \xE2\x89\xA4 0 are drawn at the floor of the log axis");
    else if (x_refused || y_refused)
        chart_note(b, f.x - 60, note_y, "no positive value: linear axis instead of log");
    svg_end(b);
    sb_printf(b, "</figure>\n");
done:
    sb_free(&title);
    sb_free(&xlabel);
    sb_free(&ylabel);
    sb_free(&missing);
    free(xs);
    free(ys);
    free(has);
}

// A series (scalability, sustainability): a key metric along the models' order.
static void chart_series(StrBuf *b, const Report *r, const ReportMetric *mt) {
    const int n = r->n_models;
    double *vals = calloc((size_t)n, sizeof *vals), *px = calloc((size_t)n, sizeof *px),
           *py = calloc((size_t)n, sizeof *py);
    unsigned char *has = calloc((size_t)n, 1);
    StrBuf title = {0};
    if (!vals || !px || !py || !has) {
        b->failed = 1;
        goto done;
    }
    for (int m = 0; m < n; m++) has[m] = (unsigned char)model_value(r, m, mt->key, &vals[m]);
    double slot = 560.0 / n;
    if (slot < 56) slot = 56;
    for (int m = 0; m < n; m++) {
        double w = svg_text_width(r->model_names[m], 11) + 10;
        if (w > slot && w <= 100) slot = w;
    }
    SvgFrame f = {.x = 84, .y = 48, .w = slot * n, .h = 260};
    int clamped, refused;
    value_axis(&f.ya, vals, has, n, mt->log_scale, 0, &clamped, &refused);
    svg_axis_categories(&f.xa, n);
    sb_printf(&title, "%s: %s along the series", mt->benchmark, mt->label);
    const double legend_w = svg_legend_width(r->model_names, n);
    const double axis_h = svg_category_axis_height(slot, r->model_names, n);
    const double width = f.x + f.w + 40 + legend_w, height = f.y + f.h + axis_h + 30;
    sb_printf(b, "<figure>\n");
    svg_begin(b, width, height, title.data ? title.data : mt->key);
    svg_y_axis(b, &f, f.ya.log ? "log scale" : "value");
    svg_x_axis(b, &f, "model (series order)", r->model_names, n);
    int np = 0;
    for (int m = 0; m < n; m++)
        if (has[m]) {
            px[np] = svg_px(&f, m);
            py[np++] = svg_py(&f, vals[m]);
        }
    svg_polyline(b, px, py, np, "#8a8a8a", "ch-series");
    char text[32];
    for (int m = 0; m < n; m++) {
        const double x = svg_px(&f, m);
        if (!has[m]) {
            svg_text(b, x, f.y + f.h - 6, "middle", "ch-missing", "\xE2\x80\x94");
            continue;
        }
        const double y = svg_py(&f, vals[m]);
        svg_circle(b, x, y, 4.5, svg_color(m));
        svg_format_value(text, vals[m]);
        svg_text(b, x, y - 9, "middle", "ch-value", text);
    }
    svg_legend(b, f.x + f.w + 30, f.y, r->model_names, r->all_colors, n);
    if (clamped)
        chart_note(b, 12, height - 8,
                   "values \xE2\x89\xA4 0 are drawn at the floor of the log axis");
    else if (refused)
        chart_note(b, 12, height - 8, "no positive value: linear axis instead of log");
    svg_end(b);
    sb_printf(b, "</figure>\n");
done:
    sb_free(&title);
    free(vals);
    free(px);
    free(py);
    free(has);
}

// ---- training curves ------------------------------------------------------------------------

// metrics.jsonl fields of `lethe unlearn` and `lethe finetune` (train_*: fine-tuning runs,
// eval_*: held-out evaluations every train.eval_every steps).
static const char *const curve_fields[] = {
    "loss",       "forget_loss", "retain_loss",     "forget_nll",      "retain_nll", "train_loss",
    "train_nll",  "grad_norm",   "eval_forget_nll", "eval_retain_nll", "lr"};
#define N_CURVE_FIELDS (int)(sizeof curve_fields / sizeof curve_fields[0])

// The records of metrics.jsonl of each model (NULL: none or unreadable).
typedef struct {
    JsonValue **runs; // (n_models)
    StrBuf notes;     // <li> items for what could not be read
} Curves;

static int record_point(const JsonValue *rec, const char *field, double *step, double *v) {
    const JsonValue *s = json_object_get(rec, "step"), *x = json_object_get(rec, field);
    if (!json_is(s, JSON_NUMBER) || !json_is(x, JSON_NUMBER)) return 0;
    *step = json_number(s);
    *v = json_number(x);
    return 1;
}

static void curves_load(Curves *c, const Report *r, const char *eval_dir) {
    c->runs = calloc((size_t)r->n_models, sizeof *c->runs);
    if (!c->runs) {
        c->notes.failed = 1;
        return;
    }
    for (int m = 0; m < r->n_models; m++) {
        const char *rel = r->models[m].metrics_jsonl;
        if (!rel) continue;
        StrBuf path = {0};
        if (rel[0] == '/' || !eval_dir || !*eval_dir)
            sb_printf(&path, "%s", rel);
        else
            sb_printf(&path, "%s/%s", eval_dir, rel);
        Err le = {{0}};
        JsonValue *run = path.data ? json_parse_file(path.data, JSON_FILE_LINES, &le) : NULL;
        if (!path.data) snprintf(le.msg, sizeof le.msg, "out of memory");
        sb_free(&path);
        if (!run) {
            sb_printf(&c->notes, "<li>");
            html_escape(&c->notes, r->models[m].name);
            sb_printf(&c->notes, ": training curves not shown, metrics file could not be read: ");
            html_escape(&c->notes, le.msg);
            sb_printf(&c->notes, "</li>\n");
            continue;
        }
        int usable = 0;
        for (size_t i = 0; i < json_array_len(run) && !usable; i++)
            for (int k = 0; k < N_CURVE_FIELDS && !usable; k++) {
                double s, v;
                usable = record_point(json_array_get(run, i), curve_fields[k], &s, &v);
            }
        if (!usable) {
            sb_printf(&c->notes, "<li>");
            html_escape(&c->notes, r->models[m].name);
            sb_printf(&c->notes, ": ");
            html_escape(&c->notes, rel);
            sb_printf(&c->notes,
                      " has no records with \"step\" and one of the plotted fields</li>\n");
            json_free(run);
            continue;
        }
        c->runs[m] = run;
    }
}

static void curves_free(Curves *c, int n_models) {
    for (int m = 0; c->runs && m < n_models; m++) json_free(c->runs[m]);
    free(c->runs);
    sb_free(&c->notes);
}

// One chart of `field` against step: a line per model whose metrics file has the field.
static void chart_curve(StrBuf *b, const Report *r, const Curves *c, const char *field) {
    const int n = r->n_models;
    double lo_x = INFINITY, hi_x = -INFINITY, lo_y = INFINITY, hi_y = -INFINITY, s, v;
    size_t *count = calloc((size_t)n, sizeof *count);
    const char **names = calloc((size_t)n, sizeof *names);
    int *colors = calloc((size_t)n, sizeof *colors);
    double *px = NULL, *py = NULL;
    int n_lines = 0;
    if (!count || !names || !colors) {
        b->failed = 1;
        goto done;
    }
    for (int m = 0; m < n; m++) {
        for (size_t i = 0; c->runs[m] && i < json_array_len(c->runs[m]); i++) {
            if (!record_point(json_array_get(c->runs[m], i), field, &s, &v)) continue;
            count[m]++;
            if (s < lo_x) lo_x = s;
            if (s > hi_x) hi_x = s;
            if (v < lo_y) lo_y = v;
            if (v > hi_y) hi_y = v;
        }
        if (count[m]) {
            names[n_lines] = r->models[m].name;
            colors[n_lines++] = m;
        }
    }
    if (n_lines == 0) goto done;
    px = calloc(CURVE_MAX_POINTS + 1, sizeof *px);
    py = calloc(CURVE_MAX_POINTS + 1, sizeof *py);
    if (!px || !py) {
        b->failed = 1;
        goto done;
    }
    SvgFrame f = {.x = 84, .y = 48, .w = 560, .h = 260};
    svg_axis_linear(&f.xa, lo_x, hi_x, 8);
    svg_axis_linear(&f.ya, lo_y, hi_y, 6);
    const double legend_w = svg_legend_width(names, n_lines);
    const double width = f.x + f.w + 40 + legend_w, height = f.y + f.h + 56;
    StrBuf title = {0};
    sb_printf(&title, "%s vs step", field);
    sb_printf(b, "<figure>\n");
    svg_begin(b, width, height, title.data ? title.data : field);
    sb_free(&title);
    svg_y_axis(b, &f, field);
    svg_x_axis(b, &f, "step", NULL, 0);
    for (int m = 0; m < n; m++) {
        if (!count[m]) continue;
        const size_t stride = (count[m] + CURVE_MAX_POINTS - 1) / CURVE_MAX_POINTS;
        size_t seen = 0;
        int np = 0;
        double last_x = 0, last_y = 0;
        for (size_t i = 0; i < json_array_len(c->runs[m]); i++) {
            if (!record_point(json_array_get(c->runs[m], i), field, &s, &v)) continue;
            last_x = svg_px(&f, s);
            last_y = svg_py(&f, v);
            if (seen++ % stride == 0 && np < CURVE_MAX_POINTS) {
                px[np] = last_x;
                py[np++] = last_y;
            }
        }
        if (px[np - 1] != last_x || py[np - 1] != last_y) { // the final step is always drawn
            px[np] = last_x;
            py[np++] = last_y;
        }
        if (np == 1)
            svg_circle(b, px[0], py[0], 3, svg_color(m));
        else
            svg_polyline(b, px, py, np, svg_color(m), "ch-curve");
    }
    svg_legend(b, f.x + f.w + 30, f.y, names, colors, n_lines);
    svg_end(b);
    sb_printf(b, "</figure>\n");
done:
    free(count);
    free(names);
    free(colors);
    free(px);
    free(py);
}

// ---- the page -----------------------------------------------------------------------------

static const char page_css[] =
    "body{font-family:\"DejaVu Sans\",\"Liberation Sans\",Arial,Helvetica,sans-serif;color:#222;"
    "max-width:1200px;margin:1.5em auto;padding:0 1.5em;line-height:1.45;font-size:15px}\n"
    "h1{font-size:1.6em;margin:.2em 0}\n"
    "h2{font-size:1.25em;border-bottom:1px solid #d8d8d8;padding-bottom:.2em;margin-top:1.8em;"
    "break-after:avoid;page-break-after:avoid}\n"
    ".meta{color:#666;margin:0 0 1em}\n"
    "table{border-collapse:collapse;margin:.6em 0 1em;font-size:.9em}\n"
    "th,td{border:1px solid #c8c8c8;padding:.3em .6em;text-align:left;vertical-align:top}\n"
    "th{background:#f3f4f6;font-weight:600}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\n"
    "td.best{font-weight:700;background:#dff0d8}\n"
    "td.missing{color:#999;text-align:center}\n"
    "td.dir{color:#555;white-space:nowrap}\n"
    "td.path{word-break:break-all;font-family:monospace;font-size:.9em}\n"
    ".key{display:block;color:#777;font-size:.8em;font-family:monospace}\n"
    ".role{display:block;color:#777;font-size:.8em;font-weight:400}\n"
    ".swatch{display:inline-block;width:.75em;height:.75em;border-radius:2px;margin-right:.35em}\n"
    ".notes li{margin:.15em 0}\n"
    ".warn{color:#7a4d00;background:#fff6e0;border-left:3px solid #e0a030;padding:.4em .8em;"
    "list-style:none}\n"
    ".scroll{overflow-x:auto}\n"
    "figure{margin:.8em 0 1.4em;break-inside:avoid;page-break-inside:avoid}\n"
    "svg.chart{max-width:100%;height:auto;border:1px solid #e4e4e4;border-radius:3px}\n"
    "svg text{font-family:\"DejaVu Sans\",\"Liberation Sans\",Arial,Helvetica,sans-serif;"
    "fill:#333}\n"
    ".ch-title{font-size:15px;font-weight:700}\n"
    ".ch-panel{font-size:12px;font-weight:600}\n"
    ".ch-tick{font-size:11px;fill:#555}\n"
    ".ch-label{font-size:12px;fill:#333}\n"
    ".ch-value{font-size:10px;fill:#222}\n"
    ".ch-missing{font-size:11px;fill:#999}\n"
    ".ch-legend{font-size:12px}\n"
    ".ch-point-label{font-size:11px}\n"
    ".ch-note{font-size:11px;fill:#7a4d00}\n"
    ".ch-grid{stroke:#ececec;stroke-width:1}\n"
    ".ch-axis{stroke:#777;stroke-width:1}\n"
    ".ch-zero{stroke:#333;stroke-width:1.2}\n"
    ".ch-bar{stroke:none}\n"
    ".ch-clamped{stroke:#333;stroke-dasharray:3 2;stroke-width:1}\n"
    ".ch-point{stroke:#fff;stroke-width:1}\n"
    ".ch-curve{stroke-width:1.6;stroke-linejoin:round}\n"
    ".ch-series{stroke-width:1.5;stroke-dasharray:4 3}\n"
    "footer{margin-top:2.5em;color:#888;font-size:.85em}\n"
    "@media print{body{max-width:none;margin:0;font-size:12px}table{font-size:.85em}}\n";

static void page_header(StrBuf *b, const Report *r) {
    const char *title = json_object_get_string(r->eval, "title");
    const char *created = json_object_get_string(r->eval, "created");
    const char *version = json_object_get_string(r->eval, "lethe_version");
    if (!title) title = "Lethe evaluation";
    sb_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                 "<title>");
    html_escape(b, title);
    sb_printf(b, " \xE2\x80\x94 Lethe report</title>\n<style>\n%s</style>\n</head>\n<body>\n",
              page_css);
    sb_printf(b, "<header>\n<h1>");
    html_escape(b, title);
    sb_printf(b, "</h1>\n<p class=\"meta\">");
    if (created) {
        sb_printf(b, "created ");
        html_escape(b, created);
        sb_printf(b, " \xC2\xB7 ");
    }
    sb_printf(b, "evaluated with lethe ");
    html_escape(b, version ? version : "(unknown version)");
    sb_printf(b, " \xC2\xB7 %d models, %d metrics</p>\n", r->n_models, r->n_metrics);
    const JsonValue *notes = json_object_get(r->eval, "notes");
    if (json_array_len(notes)) {
        sb_printf(b, "<ul class=\"notes\">\n");
        for (size_t i = 0; i < json_array_len(notes); i++) {
            sb_printf(b, "<li>");
            html_escape(b, json_string(json_array_get(notes, i), NULL));
            sb_printf(b, "</li>\n");
        }
        sb_printf(b, "</ul>\n");
    }
    sb_printf(b, "</header>\n");
}

static void swatch(StrBuf *b, int m) {
    sb_printf(b, "<span class=\"swatch\" style=\"background:%s\"></span>", svg_color(m));
}

static void page_models(StrBuf *b, const Report *r) {
    sb_printf(b, "<section id=\"models\">\n<h2>Models</h2>\n<div class=\"scroll\"><table>\n"
                 "<thead><tr><th>model</th><th>role</th><th>checkpoint</th><th>sha256</th>"
                 "<th>training metrics</th></tr></thead>\n<tbody>\n");
    for (int m = 0; m < r->n_models; m++) {
        const ReportModel *rm = &r->models[m];
        sb_printf(b, "<tr><td>");
        swatch(b, m);
        html_escape(b, rm->name);
        sb_printf(b, "</td><td>");
        html_escape(b, rm->role);
        sb_printf(b, "</td><td class=\"path\">");
        html_escape(b, rm->path);
        // the first 12 hex digits identify a checkpoint among those of one study
        char hex[13];
        size_t len = 0;
        while (len < 12 && rm->sha256[len] && (unsigned char)rm->sha256[len] < 0x80) len++;
        memcpy(hex, rm->sha256, len);
        hex[len] = 0;
        sb_printf(b, "</td><td class=\"path\">");
        html_escape(b, hex);
        sb_printf(b, "</td><td class=\"path\">");
        html_escape(b, rm->metrics_jsonl ? rm->metrics_jsonl : "\xE2\x80\x94");
        sb_printf(b, "</td></tr>\n");
    }
    sb_printf(b, "</tbody>\n</table></div>\n</section>\n");
}

static const char *better_html(Better b) {
    switch (b) {
    case BETTER_HIGHER: return "&uarr; higher";
    case BETTER_LOWER: return "&darr; lower";
    case BETTER_GOLD: return "&asymp; closest to gold";
    case BETTER_ZERO: return "&rarr; closest to 0";
    case BETTER_NONE: return "";
    }
    return "";
}

static void page_benchmark(StrBuf *b, const Report *r, int bi, unsigned char *best) {
    const char *bench = r->benchmarks[bi];
    sb_printf(b, "<section class=\"benchmark\" id=\"benchmark-%d\">\n<h2>", bi + 1);
    html_escape(b, bench);
    sb_printf(b, "</h2>\n<div class=\"scroll\"><table class=\"metrics\">\n<thead><tr>"
                 "<th>metric</th><th>better</th>");
    for (int m = 0; m < r->n_models; m++) {
        sb_printf(b, "<th>");
        swatch(b, m);
        html_escape(b, r->models[m].name);
        if (*r->models[m].role) {
            sb_printf(b, "<span class=\"role\">");
            html_escape(b, r->models[m].role);
            sb_printf(b, "</span>");
        }
        sb_printf(b, "</th>");
    }
    sb_printf(b, "</tr></thead>\n<tbody>\n");
    char text[32];
    for (int k = 0; k < r->n_metrics; k++) {
        const ReportMetric *mt = &r->metrics[k];
        if (strcmp(mt->benchmark, bench) != 0) continue;
        mark_best(r, mt, best);
        sb_printf(b, "<tr data-key=\"");
        html_escape(b, mt->key);
        sb_printf(b, "\"><td class=\"metric\">");
        html_escape(b, mt->label);
        sb_printf(b, "<span class=\"key\">");
        html_escape(b, mt->key);
        sb_printf(b, "%s</span></td><td class=\"dir\">%s</td>", mt->log_scale ? " (log)" : "",
                  better_html(mt->better));
        for (int m = 0; m < r->n_models; m++) {
            double v;
            if (!model_value(r, m, mt->key, &v)) {
                sb_printf(b, "<td class=\"missing\">&mdash;</td>");
                continue;
            }
            svg_format_value(text, v);
            sb_printf(b, "<td class=\"num%s\" data-model=\"", best[m] ? " best" : "");
            html_escape(b, r->models[m].name);
            sb_printf(b, "\">%s</td>", text);
        }
        sb_printf(b, "</tr>\n");
    }
    sb_printf(b, "</tbody>\n</table></div>\n");
    chart_key_bars(b, r, bench);
    sb_printf(b, "</section>\n");
}

static void page_curves(StrBuf *b, const Report *r, const char *eval_dir) {
    int any = 0;
    for (int m = 0; m < r->n_models; m++) any |= r->models[m].metrics_jsonl != NULL;
    if (!any) return;
    Curves c = {0};
    curves_load(&c, r, eval_dir);
    if (c.notes.failed || !c.runs) {
        b->failed = 1;
        curves_free(&c, r->n_models);
        return;
    }
    sb_printf(b, "<section id=\"curves\">\n<h2>Training curves</h2>\n");
    if (c.notes.len) sb_printf(b, "<ul class=\"warn\">\n%s</ul>\n", c.notes.data);
    for (int k = 0; k < N_CURVE_FIELDS; k++) chart_curve(b, r, &c, curve_fields[k]);
    sb_printf(b, "</section>\n");
    curves_free(&c, r->n_models);
}

// throughput: a small table of its numbers (one level of nested objects flattened as "a.b").
static void page_throughput(StrBuf *b, const Report *r) {
    const JsonValue *t = json_object_get(r->eval, "throughput");
    if (!json_is(t, JSON_OBJECT)) return;
    StrBuf rows = {0};
    char text[32];
    for (size_t i = 0; i < json_object_len(t); i++) {
        const JsonValue *v = json_object_value(t, i);
        const char *key = json_object_key(t, i);
        if (json_is(v, JSON_NUMBER)) {
            svg_format_value(text, json_number(v));
            sb_printf(&rows, "<tr><td>");
            html_escape(&rows, key);
            sb_printf(&rows, "</td><td class=\"num\">%s</td></tr>\n", text);
        } else if (json_is(v, JSON_OBJECT)) {
            for (size_t j = 0; j < json_object_len(v); j++) {
                const JsonValue *x = json_object_value(v, j);
                const int number = json_is(x, JSON_NUMBER);
                if (!number && !json_is(x, JSON_STRING)) continue;
                sb_printf(&rows, "<tr><td>");
                html_escape(&rows, key);
                sb_printf(&rows, ".");
                html_escape(&rows, json_object_key(v, j));
                if (number) {
                    svg_format_value(text, json_number(x));
                    sb_printf(&rows, "</td><td class=\"num\">%s</td></tr>\n", text);
                } else { // the device a model ran on
                    sb_printf(&rows, "</td><td>");
                    html_escape(&rows, json_string(x, NULL));
                    sb_printf(&rows, "</td></tr>\n");
                }
            }
        }
    }
    if (rows.failed) b->failed = 1;
    if (rows.len)
        sb_printf(b,
                  "<section id=\"throughput\">\n<h2>Throughput</h2>\n<table>\n"
                  "<thead><tr><th>measure</th><th>value</th></tr></thead>\n<tbody>\n%s"
                  "</tbody>\n</table>\n</section>\n",
                  rows.data);
    sb_free(&rows);
}

static void page_build(StrBuf *b, const Report *r, const char *eval_dir) {
    page_header(b, r);
    page_models(b, r);
    unsigned char *best = calloc((size_t)r->n_models, 1);
    if (!best) {
        b->failed = 1;
        return;
    }
    for (int i = 0; i < r->n_benchmarks; i++) page_benchmark(b, r, i, best);
    free(best);
    if (r->n_tradeoffs) {
        sb_printf(b, "<section id=\"tradeoffs\">\n<h2>Trade-offs</h2>\n");
        for (int i = 0; i < r->n_tradeoffs; i++) chart_tradeoff(b, r, &r->tradeoffs[i]);
        sb_printf(b, "</section>\n");
    }
    if (r->series) {
        sb_printf(b, "<section id=\"series\">\n<h2>Series</h2>\n"
                     "<p>Key metrics along the order of the models.</p>\n");
        for (int k = 0; k < r->n_metrics; k++)
            if (r->metrics[k].key_metric) chart_series(b, r, &r->metrics[k]);
        sb_printf(b, "</section>\n");
    }
    page_curves(b, r, eval_dir);
    page_throughput(b, r);
    sb_printf(b,
              "<footer>Rendered by lethe %s from an eval.json of format %s. Best values per "
              "row are in bold on green; &mdash; marks a value that was not computed.</footer>\n"
              "</body>\n</html>\n",
              LETHE_VERSION, REPORT_EVAL_FORMAT);
}

int report_write_html(const JsonValue *eval, const char *eval_dir, const char *out_path, Err *e) {
    Report r;
    StrBuf page = {0};
    int rc = -1;
    if (report_load(&r, eval, e)) goto done;
    page_build(&page, &r, eval_dir);
    if (page.failed || !page.data) {
        err_set(e, "%s: out of memory while building the page", out_path);
        goto done;
    }
    rc = file_write_atomic(out_path, page.data, page.len, e);
done:
    report_free(&r);
    sb_free(&page);
    return rc;
}
