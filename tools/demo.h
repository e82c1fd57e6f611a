/* gpuslice demo's pieces: the plan (which instances each phase serves on,
 * which model and engine), the runs (create, serve, sweep, destroy) and
 * the report (table and SVG). cmd_demo.c ties them together. */
#ifndef GPUSLICE_DEMO_H
#define GPUSLICE_DEMO_H

#include <signal.h>
#include <stdbool.h>

#include "cli.h"
#include "gpuslice/perf.h"

#define DEMO_MAX_LEVELS 16
#define DEMO_MAX_PHASES 3
#define DEMO_MAX_INSTANCES 64

/* One configuration measured: `count` instances of `profile`, made by the
 * demo (select empty) or existing MIG instances (select: serve's
 * --instances list, "0:3,0:4"). */
typedef struct demo_phase_s {
  char label[96]; /* "7 x 1g.10gb" */
  char profile[64];
  unsigned count;
  char select[1024];
  size_t n;
  gs_perf_result_t levels[DEMO_MAX_LEVELS];
} demo_phase_t;

typedef enum {
  DEMO_ENGINE_AUTO = 0,
  DEMO_ENGINE_GPU,
  DEMO_ENGINE_CPU
} demo_engine_t;

typedef struct demo_s {
  cli_t *cli;
  const char *models, *model, *out_dir, *backend, *isolation;
  char self[4096], state_dir[4096];
  char serve_models[4200]; /* the repository serve gets */
  char shape[160];
  char engine_why[1100]; /* why the GPU engine is or is not used */
  demo_engine_t engine;  /* as asked; after planning GPU or CPU */
  bool existing;         /* MIG: the instances that exist, read-only */
  bool dry_run;
  unsigned n_instances, window_ms;
  unsigned levels[DEMO_MAX_LEVELS];
  size_t n_levels;
  double budget_ms;
  size_t n_phases;
  demo_phase_t phases[DEMO_MAX_PHASES];
} demo_t;

extern volatile sig_atomic_t demo_interrupted;

/* demo_plan.c. Reads the backend's devices and fills d->phases: on a
 * backend that makes instances, the smallest profile x 1 and x N (and the
 * whole-GPU profile x 1 with the GPU engine); on MIG, the instances that
 * exist. CLI_FAIL with advice printed when MIG has none to use. */
int demo_plan(demo_t *d);
void demo_print_plan(const demo_t *d, FILE *out);
/* The repository serve gets: d->models itself, or (GPU engine) a private
 * one in the state directory whose config asks for KIND_GPU. */
int demo_model_repository(demo_t *d);

/* demo_run.c: one phase from creation to destruction. 0 done, -1 failed
 * or interrupted (the instances are destroyed either way). */
int demo_measure(demo_t *d, size_t phase);
/* SIGINT/SIGTERM: stop the serve in flight; demo_interrupted set. */
void demo_on_interrupt(int sig);

/* demo_report.c */
void demo_print_table(const demo_t *d);
int demo_write_plots(const demo_t *d, char *path, size_t size);
/* The highest throughput whose p99 is within the budget; its index in
 * *at (-1: none, and 0 returned). */
double demo_best_within(const demo_t *d, const demo_phase_t *p, long *at);

#endif
