// The drawing layer of report.html: nice axis ticks, linear and log axes, bars, lines, points,
// text and legends, written as inline SVG into a StrBuf (no scripts, no external assets).
#ifndef LETHE_REPORT_SVG_H
#define LETHE_REPORT_SVG_H

#include "strbuf.h"

#define SVG_MAX_TICKS 24

// One axis: a data range mapped onto [0, 1], linear or log10, and the tick values to label.
typedef struct {
    double lo, hi; // the range shown; log axes: 0 < lo < hi
    int log;
    int n_ticks;
    double ticks[SVG_MAX_TICKS];
} SvgAxis;

// Linear axis over [lo, hi] widened to round tick values (1, 2 or 5 times a power of ten; about
// `target` ticks). An empty range is widened around its value.
void svg_axis_linear(SvgAxis *a, double lo, double hi, int target);
// Log10 axis over whole decades covering [min_pos, max_pos] (both > 0). When min_pos is itself a
// power of ten the floor goes one decade lower, so that a bar of that value keeps a height.
void svg_axis_log(SvgAxis *a, double min_pos, double max_pos);
// A category axis: positions 0 .. n-1, each in the middle of its slot, no numeric ticks.
void svg_axis_categories(SvgAxis *a, int n);
// Position of v along the axis in [0, 1]; values outside the range (log: v <= 0) are clamped.
double svg_axis_frac(const SvgAxis *a, double v);

// A plot area in SVG user units (y grows downwards) with its two axes.
typedef struct {
    double x, y, w, h;
    SvgAxis xa, ya;
} SvgFrame;

double svg_px(const SvgFrame *f, double v);
double svg_py(const SvgFrame *f, double v);

// HTML/SVG text: &, <, >, " and ' as entities; control characters other than tab and newline
// are dropped (they are not allowed in HTML text).
void html_escape(StrBuf *b, const char *s);
// The report's number format: printf "%.4g" (keeps p-values like 1.234e-05 readable).
void svg_format_value(char out[32], double v);
// Estimated width of s in a sans-serif font of font_px (there is no font metrics in C; an
// average advance of 0.6 em per character is close for digits and lowercase Latin).
double svg_text_width(const char *s, double font_px);
// Colour i of the fixed model palette (cycles after 10), as "#rrggbb".
const char *svg_color(int i);

// <svg> with a viewBox of w x h, an accessible <title>, and a visible title line at the top.
void svg_begin(StrBuf *b, double w, double h, const char *title);
void svg_end(StrBuf *b);
// Text at (x, y); anchor "start", "middle" or "end"; cls a class of the page's stylesheet.
void svg_text(StrBuf *b, double x, double y, const char *anchor, const char *cls, const char *text);
// The same, cut with "…" to about max_width units (long user labels must not run into the
// neighbouring panel; the full text is in the page's tables).
void svg_text_fit(StrBuf *b, double x, double y, const char *anchor, const char *cls,
                  const char *text, double max_width, double font_px);
// The same, rotated by deg degrees about (x, y).
void svg_text_rotated(StrBuf *b, double x, double y, double deg, const char *anchor,
                      const char *cls, const char *text);
void svg_line(StrBuf *b, double x1, double y1, double x2, double y2, const char *cls);
void svg_rect(StrBuf *b, double x, double y, double w, double h, const char *fill, const char *cls);
void svg_circle(StrBuf *b, double x, double y, double r, const char *fill);
// A line through n points given in SVG units.
void svg_polyline(StrBuf *b, const double *x, const double *y, int n, const char *stroke,
                  const char *cls);

// Left axis: grid lines and labels at the ticks, the axis line and a rotated label.
void svg_y_axis(StrBuf *b, const SvgFrame *f, const char *label);
// Bottom axis: ticks with labels (categories: names[i] under slot i, slanted when they would
// collide; NULL: the numeric ticks), the axis line and the label under it.
void svg_x_axis(StrBuf *b, const SvgFrame *f, const char *label, const char *const *names,
                int n_names);
// Height svg_x_axis needs under the plot for these category names in slots of slot units.
double svg_category_axis_height(double slot, const char *const *names, int n_names);
// A vertical legend from (x, y): a colour swatch and a name per entry. Returns its height.
double svg_legend(StrBuf *b, double x, double y, const char *const *names, const int *colors,
                  int n);
// Width a legend of these names needs (long names are cut to keep it under about 220 units).
double svg_legend_width(const char *const *names, int n);

#endif
