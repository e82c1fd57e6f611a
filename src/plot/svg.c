/* SVG line charts for perf results: throughput and latency against
 * concurrency. Each chart is a fixed-size panel (axes, 1-2-5 or power-of-two
 * ticks, gridlines, legend below the plot, optional budget line); panels sit
 * side by side in one standalone SVG 1.1 document. */
#include "gpuslice/plot.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* unlink */

#include "core/buf.h"

#define CHART_W 560.0
#define CHART_H 400.0
#define DOC_TITLE_H 32.0
#define PLOT_LEFT 66.0 /* room for tick labels and the rotated y label */
#define PLOT_RIGHT 20.0
#define PLOT_TOP 44.0 /* chart title, and the off-scale note under it */
#define LEGEND_ROW_H 18.0
/* Keeps markers at the ends of the x range off the y axis line. */
#define DATA_INSET 10.0
#define CHAR_W 7.0 /* mean glyph width of 12px sans, for layout only */
/* Latency can run hundreds of times past the budget at high concurrency;
 * drawn to scale, the budget line would sink into the x axis. Past this
 * ratio the y range stops at BUDGET_SPAN * budget and the points above are
 * drawn as triangles on the top edge. */
#define BUDGET_CLIP_RATIO 5.0
#define BUDGET_SPAN 4.0
/* Beyond any concurrency, latency or rate; keeps the axis arithmetic (and
 * the tick count) finite. */
#define MAX_VALUE 1e12

/* Okabe-Ito: distinguishable with the common colour-vision deficiencies;
 * its yellow is last because it is faint on white. */
static const char *const palette[] = {"#0072B2", "#E69F00", "#009E73",
                                      "#D55E00", "#CC79A7", "#56B4E9",
                                      "#000000", "#F0E442"};
#define PALETTE_N (sizeof palette / sizeof palette[0])
/* The up-triangle is kept for off-scale points, so no series uses it. */
enum marker { MARK_CIRCLE, MARK_SQUARE, MARK_DIAMOND, MARK_TRI_DOWN, MARK_N };

typedef struct {
  bool log;        /* base 2: positions and ticks in exponent space */
  double lo, hi;   /* tick range, exponents when log */
  double step;     /* tick spacing, in the same units */
  double px0, px1; /* pixels of lo and hi */
} axis_t;

typedef struct {
  double left, right, top, bottom; /* plot area, document pixels */
  axis_t xa, ya;
  bool clipped; /* some points lie above ya.hi */
  double y_max; /* largest y, for the off-scale note */
  size_t index; /* chart number, for unique ids */
} frame_t;

/* Length of the valid UTF-8 sequence at s, or 0: invalid bytes would make
 * the whole document unreadable to an XML parser. */
static size_t utf8_len(const unsigned char *s) {
  unsigned char c = s[0], lo = 0x80, hi = 0xBF;
  size_t n = c < 0x80   ? 1
             : c < 0xC2 ? 0
             : c < 0xE0 ? 2
             : c < 0xF0 ? 3
             : c < 0xF5 ? 4
                        : 0;
  if (c == 0xE0)
    lo = 0xA0; /* overlong */
  else if (c == 0xED)
    hi = 0x9F; /* surrogates */
  else if (c == 0xF0)
    lo = 0x90;
  else if (c == 0xF4)
    hi = 0x8F;
  for (size_t i = 1; i < n; i++, lo = 0x80, hi = 0xBF)
    if (s[i] < lo || s[i] > hi)
      return 0;
  return n;
}

/* User text as XML character data; what XML cannot carry becomes U+FFFD. */
static void buf_text(gs_buf_t *b, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; p && *p;) {
    size_t n = utf8_len(p);
    if (*p == '<' || *p == '>' || *p == '&' || *p == '"' || *p == '\'')
      gs_buf_addf(b, "&#%d;", *p);
    else if (n == 0 || (*p < 0x20 && *p != '\t' && *p != '\n'))
      gs_buf_adds(b, "\xEF\xBF\xBD");
    else
      gs_buf_add(b, p, n);
    p += n ? n : 1;
  }
}

/* A <text> element: the formatted attributes, then text escaped. */
__attribute__((format(printf, 3, 4))) static void
buf_text_elem(gs_buf_t *b, const char *text, const char *attrs, ...) {
  va_list ap;
  va_start(ap, attrs);
  gs_buf_adds(b, "<text ");
  gs_buf_vaddf(b, attrs, ap);
  va_end(ap);
  gs_buf_adds(b, ">");
  buf_text(b, text);
  gs_buf_adds(b, "</text>\n");
}

static double text_width(const char *s) {
  size_t chars = 0;
  for (const unsigned char *p = (const unsigned char *)s; p && *p; p++)
    chars += (*p & 0xC0) != 0x80;
  return (double)chars * CHAR_W;
}

/* Tick and note numbers: 0.5, 15, 250, 1.2k, 3.4M. */
static void format_compact(char *out, size_t size, double v) {
  static const char suffix[] = " kMGT";
  size_t i = 0;
  for (; fabs(v) >= 1000 && i + 2 < sizeof suffix; i++)
    v /= 1000;
  snprintf(out, size, "%.3g%s", v, i ? (char[]){suffix[i], 0} : "");
}

static double nice_step(double span, double intervals) {
  double raw = span / intervals, mag = pow(10, floor(log10(raw)));
  double f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void axis_linear(axis_t *a, double lo, double hi, bool headroom) {
  if (hi <= lo) { /* one value: centre it, or start at it when it is 0 */
    double pad = lo != 0 ? fabs(lo) * 0.5 : 1;
    lo -= lo != 0 ? pad : 0;
    hi = lo + 2 * pad;
  }
  a->log = false;
  a->step = nice_step(hi - lo, 5);
  a->lo = floor(lo / a->step) * a->step;
  double top = ceil(hi / a->step) * a->step;
  /* A maximum right on the top gridline reads as cut off. */
  if (headroom && top - hi < 0.03 * (top - a->lo))
    top += a->step;
  a->hi = top;
}

static void axis_log2(axis_t *a, double lo, double hi) {
  a->log = true;
  a->lo = floor(log2(lo));
  a->hi = ceil(log2(hi));
  if (a->hi <= a->lo) { /* one x value: centre it */
    a->lo -= 1;
    a->hi += 1;
  }
  /* At most ten labels: more would overlap at this width. */
  for (a->step = 1; (a->hi - a->lo) / a->step > 10; a->step *= 2)
    ;
  a->hi = a->lo + ceil((a->hi - a->lo) / a->step) * a->step;
}

static double axis_px(const axis_t *a, double v) {
  double t = a->log ? log2(v) : v;
  return a->px0 + (t - a->lo) / (a->hi - a->lo) * (a->px1 - a->px0);
}

static size_t axis_ticks(const axis_t *a) {
  return (size_t)floor((a->hi - a->lo) / a->step + 1e-9) + 1;
}

/* Data value of tick i; tiny float residue is snapped to 0 so it prints so. */
static double axis_tick(const axis_t *a, size_t i) {
  double t = a->lo + (double)i * a->step;
  if (a->log)
    return exp2(t);
  return fabs(t) < a->step * 1e-9 ? 0 : t;
}

static void tick_label(const axis_t *a, double v, char *out, size_t size) {
  if (a->log && v >= 1)
    snprintf(out, size, "%.0f", v); /* 1024, not 1.02k */
  else
    format_compact(out, size, v);
}

/* The point's fault alone; check_chart says which chart and series. */
static int check_points(const gs_plot_chart_t *c, const gs_plot_series_t *s,
                        gs_error_t *err) {
  if (s->n == 0 || !s->x || !s->y)
    return gs_error_set(err, GS_EINVAL, "no points");
  for (size_t i = 0; i < s->n; i++) {
    if (!(fabs(s->x[i]) <= MAX_VALUE && fabs(s->y[i]) <= MAX_VALUE))
      return gs_error_set(err, GS_EINVAL,
                          "point %zu (%g, %g) is not a finite number of at "
                          "most %g in size",
                          i + 1, s->x[i], s->y[i], MAX_VALUE);
    if (c->log_x && s->x[i] <= 0)
      return gs_error_set(err, GS_EINVAL,
                          "point %zu has x = %g; a log axis shows only x > 0",
                          i + 1, s->x[i]);
  }
  return GS_OK;
}

static int check_chart(const gs_plot_chart_t *c, size_t ci, gs_error_t *err) {
  const char *title = c->title ? c->title : "";
  if (c->n_series == 0 || !c->series)
    return gs_error_set(err, GS_EINVAL, "chart %zu \"%s\": no series", ci + 1,
                        title);
  for (size_t si = 0; si < c->n_series; si++) {
    const char *label = c->series[si].label;
    int rc = check_points(c, &c->series[si], err);
    if (rc != GS_OK) {
      gs_error_prefix(err, "chart %zu \"%s\", series %zu \"%s\": ", ci + 1,
                      title, si + 1, label ? label : "");
      return rc;
    }
  }
  return GS_OK;
}

static bool has_budget(const gs_plot_chart_t *c) {
  return c->budget > 0 && c->budget <= MAX_VALUE; /* false for NaN */
}

static void fit_axes(frame_t *f, const gs_plot_chart_t *c) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = 0, y1 = -INFINITY;
  for (size_t si = 0; si < c->n_series; si++)
    for (size_t i = 0; i < c->series[si].n; i++) {
      x0 = fmin(x0, c->series[si].x[i]);
      x1 = fmax(x1, c->series[si].x[i]);
      y0 = fmin(y0, c->series[si].y[i]); /* y starts at 0 unless negative */
      y1 = fmax(y1, c->series[si].y[i]);
    }
  if (c->log_x)
    axis_log2(&f->xa, x0, x1);
  else
    axis_linear(&f->xa, x0, x1, false);
  f->y_max = y1;
  f->clipped = has_budget(c) && y1 > BUDGET_CLIP_RATIO * c->budget;
  if (f->clipped)
    axis_linear(&f->ya, y0, BUDGET_SPAN * c->budget, false);
  else
    axis_linear(&f->ya, y0, has_budget(c) ? fmax(y1, c->budget) : y1, true);
  f->xa.px0 = f->left + DATA_INSET;
  f->xa.px1 = f->right - DATA_INSET;
  f->ya.px0 = f->bottom;
  f->ya.px1 = f->top;
}

/* Legend items from start that fit on one row of width max_w. */
static size_t legend_row(const gs_plot_chart_t *c, size_t start, double max_w,
                         double *row_w) {
  size_t i = start;
  *row_w = 0;
  for (; i < c->n_series; i++) {
    double w = 28 + text_width(c->series[i].label) + (i > start ? 18 : 0);
    if (i > start && *row_w + w > max_w)
      break;
    *row_w += w;
  }
  return i - start;
}

static size_t legend_rows(const gs_plot_chart_t *c, double max_w) {
  size_t rows = 0;
  double w;
  for (size_t i = 0; i < c->n_series; rows++)
    i += legend_row(c, i, max_w, &w);
  return rows;
}

/* Marker outlines around (0, 0); index MARK_N is the off-scale triangle. */
static const char *const marker_path[MARK_N + 1] = {
    [MARK_CIRCLE] = "M-4 0a4 4 0 1 0 8 0a4 4 0 1 0 -8 0z",
    [MARK_SQUARE] = "M-3.5 -3.5h7v7h-7z",
    [MARK_DIAMOND] = "M0 -4.5l4.5 4.5l-4.5 4.5l-4.5 -4.5z",
    [MARK_TRI_DOWN] = "M-4.5 -4h9l-4.5 8z",
    [MARK_N] = "M-5 4h10l-5 -8z",
};

static void draw_marker(gs_buf_t *b, size_t shape, double x, double y,
                        const char *colour) {
  gs_buf_addf(b,
              "<path transform=\"translate(%.1f %.1f)\" d=\"%s\" fill=\"%s\" "
              "stroke=\"#ffffff\" stroke-width=\"1\"/>\n",
              x, y, marker_path[shape], colour);
}

/* Gridline and label for each tick of one axis. */
static void draw_ticks(gs_buf_t *b, const frame_t *f, const axis_t *a,
                       bool is_x) {
  char label[32];
  for (size_t i = 0; i < axis_ticks(a); i++) {
    double v = axis_tick(a, i), p = axis_px(a, v);
    tick_label(a, v, label, sizeof label);
    gs_buf_addf(b,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" stroke=\"none\" "
                "text-anchor=\"%s\">%s</text>\n",
                is_x ? p : f->left, is_x ? f->top : p, is_x ? p : f->right,
                is_x ? f->bottom : p, is_x ? p : f->left - 6,
                is_x ? f->bottom + 16 : p + 4, is_x ? "middle" : "end", label);
  }
}

static void draw_grid(gs_buf_t *b, const frame_t *f) {
  gs_buf_adds(b, "<g stroke=\"#e3e3e3\" font-size=\"11\" fill=\"#333333\">\n");
  draw_ticks(b, f, &f->ya, false);
  draw_ticks(b, f, &f->xa, true);
  gs_buf_addf(b,
              "</g>\n<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" "
              "stroke=\"#333333\"/>\n",
              f->left, f->top, f->bottom, f->right);
}

static void draw_series(gs_buf_t *b, const frame_t *f,
                        const gs_plot_series_t *s, size_t si) {
  const char *colour = palette[si % PALETTE_N];
  gs_buf_addf(b,
              "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
              "stroke-linejoin=\"round\" clip-path=\"url(#gs-plot-%zu)\" "
              "points=\"",
              colour, f->index);
  for (size_t i = 0; i < s->n; i++)
    gs_buf_addf(b, "%s%.1f,%.1f", i ? " " : "", axis_px(&f->xa, s->x[i]),
                axis_px(&f->ya, s->y[i]));
  gs_buf_adds(b, "\"/>\n");
  for (size_t i = 0; i < s->n; i++) {
    double x = axis_px(&f->xa, s->x[i]);
    if (s->y[i] > f->ya.hi)
      draw_marker(b, MARK_N, x, f->top, colour);
    else
      draw_marker(b, si % MARK_N, x, axis_px(&f->ya, s->y[i]), colour);
  }
}

static void draw_budget(gs_buf_t *b, const frame_t *f,
                        const gs_plot_chart_t *c) {
  if (!has_budget(c))
    return;
  double y = axis_px(&f->ya, c->budget);
  gs_buf_addf(b,
              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
              "stroke=\"#444444\" stroke-width=\"1.5\" "
              "stroke-dasharray=\"6 4\"/>\n",
              f->left, y, f->right, y);
  if (!c->budget_label)
    return;
  /* At the left end, where latency is lowest; a white halo (a stroked copy
   * underneath: SVG 1.1 has no paint-order) keeps it legible over lines. */
  for (int halo = 1; halo >= 0; halo--)
    buf_text_elem(b, c->budget_label,
                  "x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#222222\"%s",
                  f->left + 6, y - 5,
                  halo ? " stroke=\"#ffffff\" stroke-width=\"4\" "
                         "stroke-linejoin=\"round\""
                       : "");
}

static void draw_offscale_note(gs_buf_t *b, const frame_t *f) {
  char top[32], max[32];
  if (!f->clipped)
    return;
  format_compact(top, sizeof top, f->ya.hi);
  format_compact(max, sizeof max, f->y_max);
  gs_buf_addf(b,
              "<path d=\"M%.1f %.1fh8l-4 -7z\" fill=\"#666666\"/>\n"
              "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#444444\">"
              "above %s, off scale (max %s)</text>\n",
              f->left + 2, f->top - 8, f->left + 14, f->top - 8, top, max);
}

static void draw_legend(gs_buf_t *b, const frame_t *f, const gs_plot_chart_t *c,
                        double y) {
  double max_w = f->right - f->left, row_w;
  for (size_t i = 0; i < c->n_series; y += LEGEND_ROW_H) {
    size_t n = legend_row(c, i, max_w, &row_w);
    double x = f->left + (max_w - row_w) / 2;
    for (size_t end = i + n; i < end; i++) {
      const char *colour = palette[i % PALETTE_N];
      gs_buf_addf(b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                  "stroke=\"%s\" stroke-width=\"2\"/>\n",
                  x, y, x + 22, y, colour);
      draw_marker(b, i % MARK_N, x + 11, y, colour);
      buf_text_elem(b, c->series[i].label,
                    "x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#222222\"",
                    x + 28, y + 4);
      x += 28 + text_width(c->series[i].label) + 18;
    }
  }
}

static void draw_labels(gs_buf_t *b, const frame_t *f, const gs_plot_chart_t *c,
                        double chart_x) {
  double mid = (f->top + f->bottom) / 2;
  buf_text_elem(b, c->title,
                "x=\"%.1f\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\" "
                "text-anchor=\"middle\" fill=\"#111111\"",
                chart_x + CHART_W / 2, f->top - 22);
  buf_text_elem(b, c->x_label,
                "x=\"%.1f\" y=\"%.1f\" font-size=\"12\" "
                "text-anchor=\"middle\" fill=\"#222222\"",
                (f->left + f->right) / 2, f->bottom + 34);
  buf_text_elem(b, c->y_label,
                "x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
                "fill=\"#222222\" transform=\"rotate(-90 %.1f %.1f)\"",
                chart_x + 16, mid, chart_x + 16, mid);
}

static void draw_chart(gs_buf_t *b, const gs_plot_chart_t *c, size_t index,
                       double chart_y) {
  frame_t f = {.index = index};
  double chart_x = (double)index * CHART_W;
  f.left = chart_x + PLOT_LEFT;
  f.right = chart_x + CHART_W - PLOT_RIGHT;
  f.top = chart_y + PLOT_TOP;
  size_t rows = legend_rows(c, f.right - f.left);
  f.bottom = chart_y + CHART_H - 10 - (double)rows * LEGEND_ROW_H - 44;
  fit_axes(&f, c);
  gs_buf_addf(b,
              "<defs><clipPath id=\"gs-plot-%zu\"><rect x=\"%.1f\" "
              "y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath></defs>\n",
              index, f.left, f.top, f.right - f.left, f.bottom - f.top);
  draw_grid(b, &f);
  draw_labels(b, &f, c, chart_x);
  draw_offscale_note(b, &f);
  for (size_t si = 0; si < c->n_series; si++)
    draw_series(b, &f, &c->series[si], si);
  draw_budget(b, &f, c); /* over the series, so its label stays on top */
  draw_legend(b, &f, c, f.bottom + 56);
}

static void draw_document(gs_buf_t *b, const gs_plot_chart_t *charts,
                          size_t n_charts, const char *title) {
  double top = title ? DOC_TITLE_H : 0, w = CHART_W * (double)n_charts;
  gs_buf_addf(b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
              "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
              "font-family=\"Helvetica, Arial, sans-serif\">\n"
              "<rect width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n",
              w, top + CHART_H, w, top + CHART_H);
  if (title)
    buf_text_elem(b, title,
                  "x=\"%.1f\" y=\"24\" font-size=\"17\" font-weight=\"bold\" "
                  "text-anchor=\"middle\" fill=\"#111111\"",
                  w / 2);
  for (size_t ci = 0; ci < n_charts; ci++)
    draw_chart(b, &charts[ci], ci, top);
  gs_buf_adds(b, "</svg>\n");
}

int gs_plot_svg(const gs_plot_chart_t *charts, size_t n_charts,
                const char *title, char **svg, size_t *len, gs_error_t *err) {
  *svg = NULL;
  if (len)
    *len = 0;
  if (!charts || n_charts == 0)
    return gs_error_set(err, GS_EINVAL, "no charts to plot");
  for (size_t ci = 0; ci < n_charts; ci++) {
    int rc = check_chart(&charts[ci], ci, err);
    if (rc != GS_OK)
      return rc;
  }
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_SVG);
  draw_document(&b, charts, n_charts, title);
  if (!(*svg = gs_buf_take(&b, len))) { /* never empty: only on failure */
    int rc = gs_buf_error(&b, err);
    gs_error_prefix(err, "rendering the SVG document: ");
    return rc;
  }
  return GS_OK;
}

int gs_plot_svg_write(const char *path, const gs_plot_chart_t *charts,
                      size_t n_charts, const char *title, gs_error_t *err) {
  char *svg = NULL, *tmp = NULL;
  size_t len = 0;
  FILE *f = NULL;
  int rc = gs_plot_svg(charts, n_charts, title, &svg, &len, err);
  if (rc != GS_OK) {
    gs_error_prefix(err, "plotting to %s: ", path);
    return rc;
  }
  if (asprintf(&tmp, "%s.tmp", path) < 0) {
    tmp = NULL;
    rc = gs_error_set(err, GS_ENOMEM, "plotting to %s: no memory", path);
    goto out;
  }
  if (!(f = fopen(tmp, "we"))) {
    rc = gs_error_sys(err, errno, "creating %s", tmp);
    goto out;
  }
  bool written = fwrite(svg, 1, len, f) == len;
  int saved = errno;
  if (fclose(f) != 0 || !written) {
    rc = gs_error_sys(err, written ? errno : saved, "writing %s", tmp);
    goto out;
  }
  /* No fsync: a chart lost to a power cut is simply drawn again; rename
   * alone keeps readers from ever seeing half a file. */
  rc = rename(tmp, path) == 0 ? GS_OK
                              : gs_error_sys(err, errno, "replacing %s", path);
out:
  if (rc != GS_OK && f)
    unlink(tmp); /* only a file we created */
  free(tmp);
  free(svg);
  return rc;
}
