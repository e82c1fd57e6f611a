/* Shared pieces of the gpuslice CLI: options every verb takes, backend and
 * device loading, tables, JSON output, errors and exit codes. */
#ifndef GPUSLICE_CLI_H
#define GPUSLICE_CLI_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "cli_opts.h"
#include "gpuslice/apply.h"
#include "gpuslice/backend.h"
#include "gpuslice/catalog.h"

typedef struct cli_s {
  const char *backend;   /* --backend or $GPUSLICE_BACKEND; NULL = auto */
  const char *state_dir; /* --state-dir or $GPUSLICE_STATE_DIR or default */
  bool json;
  gs_backend_options_t opt;
} cli_t;

/* Exit codes: 0 done, 1 the operation failed, 2 usage or input error. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Prints "gpuslice: <verb>: <message>" to stderr and returns the exit
 * status for the error's code. */
int cli_fail(const char *verb, const gs_error_t *err);
long cli_process_age_ms(void); /* -1: unknown */
/* --plan-before-ready's value (worker and serve): N in 1..2^20, or "all"
 * (*n = 0, gs_worker_options_t's every size); CLI_OK, or the usage exit
 * after saying what was wrong, for verb. */
#define CLI_PLAN_BEFORE_READY_MAX (1u << 20)
int cli_plan_before_ready(const char *verb, const char *val, unsigned *n);
int cli_usage(const char *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int cli_open_backend(cli_t *cli, gs_backend_t **be, gs_error_t *err);
/* A decimal number made of digits only, at most max: device indices and
 * instance IDs. GS_EINVAL naming `what` otherwise. */
int cli_parse_uint(const char *text, const char *what, unsigned max,
                   unsigned *out, gs_error_t *err);
/* All devices of the backend, as it reports them now. */
int cli_load_devices(gs_backend_t *be, gs_device_t *devs, unsigned *n,
                     gs_error_t *err);
/* Opens the backend and reads every device into *devs (calloc'd). On
 * failure nothing stays open. Caller frees *devs and closes *be. */
int cli_open_devices(cli_t *cli, gs_backend_t **be, gs_device_t **devs,
                     unsigned *n, gs_error_t *err);
/* A catalog-only device (--gpu MODEL) with an empty layout. */
int cli_virtual_device(const char *model, gs_device_t *dev, gs_error_t *err);

/* A left-aligned text table, printed with column widths fitted. */
#define CLI_TABLE_MAX_COLS 12
#define CLI_TABLE_MAX_ROWS 256
typedef struct cli_table_s {
  unsigned n_cols, n_rows;
  char *cell[CLI_TABLE_MAX_ROWS][CLI_TABLE_MAX_COLS];
} cli_table_t;

void cli_table_header(cli_table_t *t, unsigned n, const char *const *names);
void cli_table_row(cli_table_t *t, ...);         /* n_cols char* values */
void cli_table_print(cli_table_t *t, FILE *out); /* and releases */
void cli_table_release(cli_table_t *t);

void cli_print_json(json_t *doc); /* prints and releases doc */

json_t *cli_layout_json(const gs_device_t *dev, const gs_layout_t *layout);
void cli_print_layout(const gs_device_t *dev, const gs_layout_t *layout,
                      FILE *out);
/* The plan against `before`, the layout it was made from. */
void cli_print_plan(const gs_device_t *dev, const gs_layout_t *before,
                    const gs_plan_t *plan, FILE *out);
void cli_format_mib(uint64_t mib, char *buf, size_t size);

/* Verbs. argv[0] is the verb. */
int cmd_info(cli_t *cli, int argc, char **argv);
int cmd_profiles(cli_t *cli, int argc, char **argv);
int cmd_create(cli_t *cli, int argc, char **argv);
int cmd_destroy(cli_t *cli, int argc, char **argv);
int cmd_list(cli_t *cli, int argc, char **argv);
int cmd_apply(cli_t *cli, int argc, char **argv);
int cmd_assert(cli_t *cli, int argc, char **argv);
int cmd_export(cli_t *cli, int argc, char **argv);
int cmd_run(cli_t *cli, int argc, char **argv);
int cmd_worker(cli_t *cli, int argc, char **argv);
int cmd_serve(cli_t *cli, int argc, char **argv);
int cmd_perf(cli_t *cli, int argc, char **argv);
int cmd_demo(cli_t *cli, int argc, char **argv);

/* The option tables of the verbs that have one (serve's: serve_cli.h). */
extern const cli_opts_t worker_cli_options, perf_cli_options;

#endif
