/* gpuslice demo's report: one table with a column group per phase
 * (throughput, p50, p99 and marks for over the budget or not stable), the
 * budget line per phase, the ratios NVIDIA's demo reads off (N small
 * instances over one, and over the whole GPU as one instance, within the
 * latency budget), and the SVG with throughput and p99 against
 * concurrency. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"
#include "gpuslice/plot.h"

double demo_best_within(const demo_t *d, const demo_phase_t *p, long *at) {
  double best = 0;
  *at = -1;
  for (size_t i = 0; i < p->n; i++)
    if (p->levels[i].p99_us <= d->budget_ms * 1000 &&
        p->levels[i].throughput > best) {
      best = p->levels[i].throughput;
      *at = (long)i;
    }
  return best;
}

static double peak(const demo_phase_t *p) {
  double best = 0;
  for (size_t i = 0; i < p->n; i++)
    best = fmax(best, p->levels[i].throughput);
  return best;
}

static void print_rows(const demo_t *d, const char *unit) {
  printf("\n%-12s", "");
  for (size_t k = 0; k < d->n_phases; k++)
    printf(" | %-30s", d->phases[k].label);
  printf("\n%-12s", "concurrency");
  for (size_t k = 0; k < d->n_phases; k++)
    printf(" | %9s %9s %9s ", unit, "p50 ms", "p99 ms");
  printf("\n-------------");
  for (size_t k = 0; k < d->n_phases; k++)
    printf("+--------------------------------");
  printf("\n");
  for (size_t i = 0; i < d->n_levels; i++) {
    printf("%-12u |", d->levels[i]);
    for (size_t k = 0; k < d->n_phases; k++) {
      const demo_phase_t *p = &d->phases[k];
      if (i >= p->n) {
        printf(" %9s %9s %9s  |", "-", "-", "-");
        continue;
      }
      const gs_perf_result_t *r = &p->levels[i];
      printf(" %9.1f %9.2f %9.2f%c%c|", r->throughput, r->p50_us / 1000,
             r->p99_us / 1000, r->p99_us > d->budget_ms * 1000 ? '>' : ' ',
             r->stable ? ' ' : '*');
    }
    printf("\n");
  }
}

/* "7 x 1g over 1 x 1g: 6.52x" within the budget; "-" where either has no
 * level within it. */
static void print_ratio(const demo_t *d, size_t a, size_t b) {
  long at_a, at_b;
  double ta = demo_best_within(d, &d->phases[a], &at_a);
  double tb = demo_best_within(d, &d->phases[b], &at_b);
  printf("%s over %s within the budget: ", d->phases[a].label,
         d->phases[b].label);
  if (at_a < 0 || at_b < 0)
    printf("- (a run has no level within it)\n");
  else
    printf("%.2fx (%.1f vs %.1f)\n", ta / tb, ta, tb);
}

void demo_print_table(const demo_t *d) {
  bool gpu = d->engine == DEMO_ENGINE_GPU;
  print_rows(d, gpu ? "img/s" : "infer/s");
  for (size_t k = 0; k < d->n_phases; k++) {
    const demo_phase_t *p = &d->phases[k];
    long at;
    double best = demo_best_within(d, p, &at);
    if (at < 0)
      printf("%s: no concurrency keeps p99 within %.0f ms\n", p->label,
             d->budget_ms);
    else
      printf("%s: within the %.0f ms p99 budget: %.1f %s at concurrency "
             "%.0f\n",
             p->label, d->budget_ms, best, gpu ? "img/s" : "infer/s",
             p->levels[at].level);
  }
  if (d->n_phases >= 2) {
    print_ratio(d, 1, 0);
    if (d->n_phases == 3)
      print_ratio(d, 1, 2);
    double a = peak(&d->phases[0]), b = peak(&d->phases[1]);
    if (a > 0)
      printf("peak throughput: %.1f vs %.1f (%.2fx)\n", a, b, b / a);
  }
  printf("(> = p99 over the %.0f ms budget; * = not stable within the "
         "trials: noisy machine)\n",
         d->budget_ms);
}

int demo_write_plots(const demo_t *d, char *path, size_t size) {
  double x[DEMO_MAX_PHASES][DEMO_MAX_LEVELS];
  double thr[DEMO_MAX_PHASES][DEMO_MAX_LEVELS];
  double p99[DEMO_MAX_PHASES][DEMO_MAX_LEVELS];
  gs_plot_series_t t_series[DEMO_MAX_PHASES], l_series[DEMO_MAX_PHASES];
  bool empty = false;
  for (size_t k = 0; k < d->n_phases; k++) {
    const demo_phase_t *p = &d->phases[k];
    for (size_t i = 0; i < p->n; i++) {
      x[k][i] = p->levels[i].level;
      thr[k][i] = p->levels[i].throughput;
      p99[k][i] = p->levels[i].p99_us / 1000;
    }
    t_series[k] = (gs_plot_series_t){p->label, p->n, x[k], thr[k]};
    l_series[k] = (gs_plot_series_t){p->label, p->n, x[k], p99[k]};
    empty = empty || p->n == 0;
  }
  char budget[64], title[256];
  snprintf(budget, sizeof budget, "budget %.0f ms", d->budget_ms);
  gs_plot_chart_t charts[2] = {
      {.title = "Throughput",
       .x_label = "concurrency (requests in flight)",
       .y_label = d->engine == DEMO_ENGINE_GPU ? "images/s" : "inferences/s",
       .log_x = true,
       .n_series = d->n_phases,
       .series = t_series},
      {.title = "p99 latency",
       .x_label = "concurrency (requests in flight)",
       .y_label = "p99 latency (ms)",
       .log_x = true,
       .n_series = d->n_phases,
       .series = l_series,
       .budget = d->budget_ms,
       .budget_label = budget}};
  snprintf(title, sizeof title,
           "gpuslice demo: %s on the %s backend (%s "
           "engine), %s vs %s%s%s",
           d->model, d->backend, d->engine == DEMO_ENGINE_GPU ? "GPU" : "CPU",
           d->phases[0].label, d->phases[d->n_phases > 1].label,
           d->n_phases > 2 ? " vs " : "",
           d->n_phases > 2 ? d->phases[2].label : "");
  snprintf(path, size, "%s/gpuslice-demo.svg", d->out_dir);
  gs_error_t err;
  if (empty || gs_plot_svg_write(path, charts, 2, title, &err) != GS_OK) {
    fprintf(stderr, "gpuslice: demo: no plot: %s\n",
            empty ? "a run has no results" : err.msg);
    return -1;
  }
  return 0;
}
