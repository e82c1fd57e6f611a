/* gpuslice serve's options: command line and -f serve.yaml (serve_cli.c). */
#ifndef GPUSLICE_SERVE_CLI_H
#define GPUSLICE_SERVE_CLI_H

#include "cli.h"
#include "cli_opts.h"
#include "core/buf.h"
#include "gpuslice/serve.h"

typedef struct serve_cli_s {
  cli_t *cli;
  gs_serve_options_t opt;
  const char *model_repository;
  const char *instances; /* "all", a profile name, or IDs/UUIDs by commas */
  unsigned threads;      /* per worker; 0: the worker's default */
  /* The workers' model control (Triton's): none, poll or explicit; the
   * models explicit loads at start ("a,b" or "*"); poll's period. */
  const char *model_control_mode, *load_models;
  unsigned poll_secs;
  const char *server_name; /* the workers' --server-name; NULL: default */
  unsigned busy_poll_us;   /* the workers' --busy-poll-us; 0: off */
  int gpu_wait;            /* the workers' --gpu-wait (gs_worker_gpu_wait_t) */
  const char *conv_cache;  /* the workers' --conv-cache; NULL: default */
  const char *plan_before_ready; /* the workers' (checked); NULL: default */
  gs_serve_rates_t rates;        /* --rate-limit: the workers' --rate-limit */
  bool rate_used[GS_SERVE_MAX_RATES]; /* an instance listed matched it */
  char rate_twice[160]; /* "as A and B": two IDs named one instance */
  const char *self;     /* this program, for the workers' command */
  bool help, status, sync;
  bool raised; /* the router runs 5 nice levels above its workers */
  const char *add, *remove; /* instance ids for the admin calls */
  const char *file;         /* the last -f (every -f is read first) */
  /* member_hold's backend: opened at its first call and kept while the
   * serve runs (a restart of a green process releases and takes one hold
   * per member, and each open initializes NVML again) */
  gs_backend_t *hold_be;
  gs_buf_t file_strings; /* char * of each value read from -f; kept */
} serve_cli_t;

/* serve's options: command line, usage and serve.yaml keys. */
extern const cli_opts_t serve_cli_options;

/* Parses argv (argv[0] is the verb); CLI_OK, or the exit code after
 * printing what was wrong. */
int serve_cli_parse(serve_cli_t *sc, int argc, char **argv);
/* Frees the values read from -f (once the serve no longer needs them). */
void serve_cli_release(serve_cli_t *sc);

#endif
