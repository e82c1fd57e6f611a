/* SVG line charts: throughput and latency against concurrency for
 * `gpuslice perf --plot` and `gpuslice demo`. Standalone SVG 1.1 that any
 * browser shows, with axes, ticks, units, a legend and an optional
 * horizontal budget line. */
#ifndef GPUSLICE_PLOT_H
#define GPUSLICE_PLOT_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuslice/error.h"

/* One line on a chart: n points (x[i], y[i]), drawn in order. */
typedef struct gs_plot_series_s {
  const char *label; /* legend text, e.g. "7 instances" */
  size_t n;
  const double *x, *y;
} gs_plot_series_t;

typedef struct gs_plot_chart_s {
  const char *title;   /* e.g. "Throughput" */
  const char *x_label; /* with its unit, e.g. "concurrency (requests)" */
  const char *y_label; /* e.g. "infer/s" or "p99 latency (ms)" */
  bool log_x;          /* base-2 axis: concurrency 1, 2, 4 ... 256 */
  size_t n_series;
  const gs_plot_series_t *series;
  /* A dashed horizontal line at this y; <= 0 or NaN: none. When data run
   * past 5x the budget, the y range stops near 4x it so the line stays
   * readable, and the points above are drawn as triangles on the top edge. */
  double budget;
  const char *budget_label; /* e.g. "budget 50 ms"; NULL: none */
} gs_plot_chart_t;

/* Renders n_charts charts (560x400 each) side by side under one title
 * (NULL: none) as a standalone SVG document. Labels are UTF-8 (bad bytes show
 * as U+FFFD); NULL labels are left out. *svg is malloc'd and NUL-terminated;
 * the caller frees it; len may be NULL. Fails (GS_EINVAL, naming the chart
 * and series) on no charts, a chart with no series, a series with no points,
 * a value that is not finite or beyond 1e12 in size, or x <= 0 on a log
 * axis. */
int gs_plot_svg(const gs_plot_chart_t *charts, size_t n_charts,
                const char *title, char **svg, size_t *len, gs_error_t *err);

/* gs_plot_svg written to path (replaced atomically: temp file + rename). */
int gs_plot_svg_write(const char *path, const gs_plot_chart_t *charts,
                      size_t n_charts, const char *title, gs_error_t *err);

#endif
