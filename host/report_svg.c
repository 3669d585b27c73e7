// Inline SVG primitives of report.html (see report_svg.h).
#include "report_svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// Log axes stay inside the decades a double can hold with room to spare.
#define LOG_DECADE_MIN (-300)
#define LOG_DECADE_MAX 300
#define LEGEND_MAX_CHARS 30
#define CATEGORY_MAX_CHARS 20

// Tableau 10: distinguishable, print-safe, not garish.
static const char *const palette[10] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                        "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

const char *svg_color(int i) { return palette[(i % 10 + 10) % 10]; }

// 1, 2 or 5 times a power of ten, the smallest not below raw (> 0).
static double nice_step(double raw) {
    double p = pow(10.0, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

void svg_axis_linear(SvgAxis *a, double lo, double hi, int target) {
    a->log = 0;
    if (!(hi > lo)) {
        double pad = lo != 0 ? fabs(lo) * 0.5 : 1.0;
        lo -= pad;
        hi += pad;
    }
    if (target < 2) target = 2;
    // Differences are taken of halves: hi - lo overflows for values near +-DBL_MAX.
    double step = nice_step((0.5 * hi - 0.5 * lo) / (target - 1) * 2);
    double first = 0, last = 0;
    int n = 0;
    while (isfinite(step) && step > 0) {
        first = floor(lo / step) * step;
        last = ceil(hi / step) * step;
        double count = last / step - first / step + 1;
        if (!isfinite(first) || !isfinite(last) || !isfinite(count)) break;
        n = (int)lround(count);
        if (n <= SVG_MAX_TICKS) break;
        step *= 2;
    }
    if (n < 2 || n > SVG_MAX_TICKS) { // no round ticks within a double's range: label the ends
        a->lo = lo;
        a->hi = hi;
        a->n_ticks = 2;
        a->ticks[0] = lo;
        a->ticks[1] = hi;
        return;
    }
    a->lo = first;
    a->hi = last;
    a->n_ticks = n;
    for (int i = 0; i < n; i++) {
        double t = first + i * step;
        // first + i*step leaves rounding residue such as 5.55e-17 where 0 is meant
        a->ticks[i] = fabs(t) < step * 1e-9 ? 0.0 : t;
    }
}

void svg_axis_log(SvgAxis *a, double min_pos, double max_pos) {
    a->log = 1;
    int d0 = (int)floor(log10(min_pos)), d1 = (int)ceil(log10(max_pos));
    if (d0 < LOG_DECADE_MIN) d0 = LOG_DECADE_MIN;
    if (d1 > LOG_DECADE_MAX) d1 = LOG_DECADE_MAX;
    if (pow(10.0, d0) >= min_pos) d0--;
    if (d1 <= d0) d1 = d0 + 1;
    a->lo = pow(10.0, d0);
    a->hi = pow(10.0, d1);
    int every = 1;
    while ((d1 - d0) / every + 1 > 8) every++;
    a->n_ticks = 0;
    for (int d = d0; d <= d1 && a->n_ticks < SVG_MAX_TICKS; d += every)
        a->ticks[a->n_ticks++] = pow(10.0, d);
}

void svg_axis_categories(SvgAxis *a, int n) {
    a->log = 0;
    a->lo = -0.5;
    a->hi = (n > 0 ? n : 1) - 0.5;
    a->n_ticks = 0;
}

double svg_axis_frac(const SvgAxis *a, double v) {
    double f;
    if (a->log)
        f = v > 0 ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : 0.0;
    else
        f = (0.5 * v - 0.5 * a->lo) / (0.5 * a->hi - 0.5 * a->lo); // halves: no overflow
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

double svg_px(const SvgFrame *f, double v) { return f->x + svg_axis_frac(&f->xa, v) * f->w; }
double svg_py(const SvgFrame *f, double v) { return f->y + f->h - svg_axis_frac(&f->ya, v) * f->h; }

void html_escape(StrBuf *b, const char *s) {
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        switch (c) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        case '\'': sb_printf(b, "&#39;"); break;
        default:
            if (c >= 0x20 || c == '\t' || c == '\n') sb_printf(b, "%c", c);
        }
    }
}

void svg_format_value(char out[32], double v) { snprintf(out, 32, "%.4g", v); }

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) n += (*p & 0xC0) != 0x80;
    return n;
}

double svg_text_width(const char *s, double font_px) { return 0.6 * font_px * utf8_chars(s); }

// s cut to at most max_chars characters (on a UTF-8 boundary) with "…" when cut.
static void cut_text(char *out, size_t cap, const char *s, size_t max_chars) {
    size_t chars = 0, i = 0;
    for (; s[i]; i++) {
        if ((s[i] & 0xC0) != 0x80 && chars++ == max_chars) break;
    }
    if (!s[i]) {
        snprintf(out, cap, "%s", s);
        return;
    }
    if (i + 4 > cap) i = 0;
    memcpy(out, s, i);
    snprintf(out + i, cap - i, "\xE2\x80\xA6");
}

void svg_begin(StrBuf *b, double w, double h, const char *title) {
    sb_printf(b,
              "<svg class=\"chart\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
              "role=\"img\" aria-label=\"",
              w, h, w, h);
    html_escape(b, title);
    sb_printf(b, "\"><title>");
    html_escape(b, title);
    sb_printf(b, "</title>\n<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>\n",
              w, h);
    svg_text(b, 12, 22, "start", "ch-title", title);
}

void svg_end(StrBuf *b) { sb_printf(b, "</svg>\n"); }

void svg_text(StrBuf *b, double x, double y, const char *anchor, const char *cls,
              const char *text) {
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" class=\"%s\">", x, y, anchor, cls);
    html_escape(b, text);
    sb_printf(b, "</text>\n");
}

void svg_text_fit(StrBuf *b, double x, double y, const char *anchor, const char *cls,
                  const char *text, double max_width, double font_px) {
    char cut[512];
    double chars = max_width / (0.6 * font_px);
    cut_text(cut, sizeof cut, text, chars < 4 ? 4 : chars > 120 ? 120 : (size_t)chars);
    svg_text(b, x, y, anchor, cls, cut);
}

void svg_text_rotated(StrBuf *b, double x, double y, double deg, const char *anchor,
                      const char *cls, const char *text) {
    sb_printf(b,
              "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" class=\"%s\" "
              "transform=\"rotate(%.0f %.1f %.1f)\">",
              x, y, anchor, cls, deg, x, y);
    html_escape(b, text);
    sb_printf(b, "</text>\n");
}

void svg_line(StrBuf *b, double x1, double y1, double x2, double y2, const char *cls) {
    sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"%s\"/>\n", x1, y1,
              x2, y2, cls);
}

void svg_rect(StrBuf *b, double x, double y, double w, double h, const char *fill,
              const char *cls) {
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"", x, y, w,
              h, fill);
    if (cls) sb_printf(b, " class=\"%s\"", cls);
    sb_printf(b, "/>\n");
}

void svg_circle(StrBuf *b, double x, double y, double r, const char *fill) {
    sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" class=\"ch-point\"/>\n", x,
              y, r, fill);
}

void svg_polyline(StrBuf *b, const double *x, const double *y, int n, const char *stroke,
                  const char *cls) {
    if (n <= 0) return;
    sb_printf(b, "<polyline fill=\"none\" stroke=\"%s\" class=\"%s\" points=\"", stroke, cls);
    for (int i = 0; i < n; i++) sb_printf(b, "%s%.1f,%.1f", i ? " " : "", x[i], y[i]);
    sb_printf(b, "\"/>\n");
}

static void format_tick(char out[32], double t) {
    snprintf(out, 32, "%g", t == 0 ? 0.0 : t); // no "-0"
}

void svg_y_axis(StrBuf *b, const SvgFrame *f, const char *label) {
    char text[32];
    for (int i = 0; i < f->ya.n_ticks; i++) {
        double y = svg_py(f, f->ya.ticks[i]);
        svg_line(b, f->x, y, f->x + f->w, y, "ch-grid");
        svg_line(b, f->x - 4, y, f->x, y, "ch-axis");
        format_tick(text, f->ya.ticks[i]);
        svg_text(b, f->x - 7, y + 4, "end", "ch-tick", text);
    }
    svg_line(b, f->x, f->y, f->x, f->y + f->h, "ch-axis");
    svg_text_rotated(b, f->x - 50, f->y + f->h / 2, -90, "middle", "ch-label", label);
}

// Widest category name (as cut for the axis) and whether the names must be slanted to fit.
static double category_widest(double slot, const char *const *names, int n, int *slant) {
    char text[128];
    double widest = 0;
    for (int i = 0; i < n; i++) {
        cut_text(text, sizeof text, names[i], CATEGORY_MAX_CHARS);
        double w = svg_text_width(text, 11);
        if (w > widest) widest = w;
    }
    *slant = widest > slot - 6;
    return widest;
}

double svg_category_axis_height(double slot, const char *const *names, int n_names) {
    int slant;
    double widest = category_widest(slot, names, n_names, &slant);
    // slanted by 30 degrees, a name drops by half its length
    return slant ? 14 + 0.5 * widest + 22 : 42;
}

void svg_x_axis(StrBuf *b, const SvgFrame *f, const char *label, const char *const *names,
                int n_names) {
    const double bottom = f->y + f->h;
    double label_y = bottom + 36;
    char text[128];
    if (names) {
        const double slot = f->w / (n_names > 0 ? n_names : 1);
        int slant;
        category_widest(slot, names, n_names, &slant);
        for (int i = 0; i < n_names; i++) {
            double x = svg_px(f, i);
            cut_text(text, sizeof text, names[i], CATEGORY_MAX_CHARS);
            svg_line(b, x, bottom, x, bottom + 4, "ch-axis");
            if (slant)
                svg_text_rotated(b, x + 4, bottom + 14, -30, "end", "ch-tick", text);
            else
                svg_text(b, x, bottom + 16, "middle", "ch-tick", text);
        }
        label_y = bottom + svg_category_axis_height(slot, names, n_names) - 6;
    } else {
        for (int i = 0; i < f->xa.n_ticks; i++) {
            double x = svg_px(f, f->xa.ticks[i]);
            svg_line(b, x, bottom, x, bottom + 4, "ch-axis");
            format_tick(text, f->xa.ticks[i]);
            svg_text(b, x, bottom + 16, "middle", "ch-tick", text);
        }
    }
    svg_line(b, f->x, bottom, f->x + f->w, bottom, "ch-axis");
    svg_text(b, f->x + f->w / 2, label_y, "middle", "ch-label", label);
}

double svg_legend(StrBuf *b, double x, double y, const char *const *names, const int *colors,
                  int n) {
    char text[160];
    for (int i = 0; i < n; i++) {
        double row = y + 18 * i;
        svg_rect(b, x, row, 12, 12, svg_color(colors[i]), NULL);
        cut_text(text, sizeof text, names[i], LEGEND_MAX_CHARS);
        svg_text(b, x + 18, row + 10.5, "start", "ch-legend", text);
    }
    return 18.0 * n;
}

double svg_legend_width(const char *const *names, int n) {
    double w = 0;
    char text[160];
    for (int i = 0; i < n; i++) {
        cut_text(text, sizeof text, names[i], LEGEND_MAX_CHARS);
        double t = svg_text_width(text, 12);
        if (t > w) w = t;
    }
    w += 30;
    return w < 70 ? 70 : w;
}
