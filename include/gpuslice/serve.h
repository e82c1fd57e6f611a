/* gpuslice serve: one inference worker per instance (started through the
 * same confinement as `gpuslice run`), a router in front of them speaking
 * the workers' protocol (KServe v2 over HTTP/1.1 and gRPC), and a
 * supervisor that restarts what dies. The supervisor, the gRPC front and
 * everything but plain proxying run on one libuv loop; HTTP requests are
 * proxied by one loop per router thread (SO_REUSEPORT listeners). */
#ifndef GPUSLICE_SERVE_H
#define GPUSLICE_SERVE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "gpuslice/error.h"

typedef enum {
  GS_SERVE_ROUND_ROBIN = 0,
  GS_SERVE_LEAST_REQUEST /* the less busy of two random workers */
} gs_serve_policy_t;

/* An instance to serve, as the caller's backend names it. */
typedef struct gs_serve_instance_s {
  char id[64];   /* "DEV:GI" or "DEV:GI:CI": labels, status, admin calls */
  char uuid[96]; /* the instance UUID `gpuslice run -i` takes */
  char profile[48];
  unsigned long long memory_mib; /* the instance's memory; 0: unknown */
  /* Green isolation: instances of one group (a GPU) share one worker
   * process, each on its SMs [sm_first, sm_first + sm_count); "": a
   * process of its own. */
  char group[32];
  unsigned sm_first, sm_count;
  /* Its workers' rate limit, inferences a second (the worker's rate_limit;
   * a group's process takes it per instance); 0: none. */
  unsigned rate_limit;
  /* Set by serve, not list_instances: how many instances it served when
   * this instance's worker was added (worker_argv and group_argv may size
   * a worker's settings by it; a running worker keeps its settings). */
  unsigned n_served;
} gs_serve_instance_t;

/* Rate limits per instance (serve --rate-limit "[ID=]N[,[ID=]N]..."): N
 * alone for every instance not named, ID=N for one; inferences a second,
 * 0 none. */
#define GS_SERVE_MAX_RATES 64
typedef struct gs_serve_rates_s {
  unsigned rate_default;
  unsigned n;
  struct {
    char id[64];
    unsigned rate;
  } rate[GS_SERVE_MAX_RATES];
} gs_serve_rates_t;

/* Parses text into *out (untouched on error): GS_EINVAL naming the item
 * that is not N or ID=N (N in 0..GS_WORKER_MAX_RATE_LIMIT), a second N
 * alone, or an ID named twice; GS_ELIMIT past GS_SERVE_MAX_RATES IDs. */
int gs_serve_rates_parse(const char *text, gs_serve_rates_t *out,
                         gs_error_t *err);
/* The limit of instance id: its own, else the default. */
unsigned gs_serve_rate_for(const gs_serve_rates_t *r, const char *id);

#define GS_SERVE_MAX_ARGS 48
#define GS_SERVE_MAX_THREADS 16

typedef struct gs_serve_options_s {
  const char *host;              /* front address; NULL: 127.0.0.1 */
  unsigned http_port, grpc_port; /* 0: any free port; grpc_port: see grpc */
  bool grpc;                     /* also route gRPC */
  gs_serve_policy_t policy;
  unsigned workers_per_instance; /* 0: 1 */
  unsigned health_interval_ms;   /* active checks; 0: 200 */
  unsigned health_timeout_ms;    /* 0: 1000 */
  unsigned unhealthy_threshold;  /* failed checks before out; 0: 2 */
  unsigned eject_failures;       /* consecutive request failures; 0: 3 */
  unsigned eject_ms;             /* out at least this long; 0: 1000 */
  unsigned restart_unhealthy_ms; /* unhealthy this long: kill, restart;
                                    0: 10000 */
  unsigned request_timeout_ms;   /* per request; 0: 30000 */
  unsigned start_timeout_ms;     /* first start of all workers; 0: 120000 */
  unsigned drain_timeout_ms;     /* SIGTERM: in-flight requests; 0: 30000 */
  size_t max_body_bytes;         /* front requests; 0: 64 MiB */
  unsigned sequence_idle_ms;     /* a sequence's pin to its worker; 0: 60000 */
  unsigned router_threads;       /* HTTP router loops; 0: one per CPU the serve
                                    may run on, at most GS_SERVE_MAX_THREADS */
  const char *log_dir; /* worker-<instance>-<n>.log files; must exist */
  /* The command that starts worker n of inst: argv (NULL-terminated, at
   * most GS_SERVE_MAX_ARGS-1 strings, written into buf of buf_size bytes
   * plus the pointers) must exec a worker that writes
   * "ready http=P grpc=G\n" on file descriptor 3 once it serves. */
  int (*worker_argv)(void *ctx, const gs_serve_instance_t *inst, unsigned n,
                     char **argv, char *buf, size_t buf_size, gs_error_t *err);
  /* The command of the one process hosting the n instances of a group
   * (oldest first), as worker_argv's; it writes "ready id=ID http=P
   * grpc=G\n" on fd 3 per instance, and takes "add ID FIRST COUNT RATE\n" and
   * "remove ID\n" on fd 4 (answered on fd 3 with "ready ...", "failed
   * id=ID WHY" or "removed id=ID"). NULL: groups are refused. */
  int (*group_argv)(void *ctx, const char *group,
                    const gs_serve_instance_t *insts, size_t n, char **argv,
                    char *buf, size_t buf_size, gs_error_t *err);
  /* Counts a group's process (pid) in inst while it serves inst (on), or
   * no longer (off): the backend then sees the instance busy and its memory
   * held, as for a worker of its own. A failed on refuses inst to the
   * process (tried again later). NULL: not counted. */
  int (*member_hold)(void *ctx, const gs_serve_instance_t *inst, int pid,
                     bool on, gs_error_t *err);
  /* The instances to serve now (at start, after watch_path changes, on an
   * admin sync). */
  int (*list_instances)(void *ctx, gs_serve_instance_t *out, size_t max,
                        size_t *n, gs_error_t *err);
  void *ctx;
  const char *watch_path; /* NULL: no watching */
  /* Set by the caller's signal handler: gs_serve_create gives up waiting
   * for workers (before it returns there is no gs_serve_t to stop). */
  volatile sig_atomic_t *stop_flag;
  /* Progress and events, one line each, without a newline. */
  void (*log)(void *ctx, const char *line);
} gs_serve_options_t;

typedef struct gs_serve_s gs_serve_t;

/* Starts the workers, waits until every one is ready (or fails naming the
 * worker and its log), then binds the front ports. */
int gs_serve_create(gs_serve_t **out, const gs_serve_options_t *opts,
                    gs_error_t *err);
/* Routes until gs_serve_stop, then drains and stops the workers. */
int gs_serve_run(gs_serve_t *s, gs_error_t *err);
/* Async-signal-safe: begins the graceful drain. */
void gs_serve_stop(gs_serve_t *s);
/* Stops any worker still running, frees s. */
void gs_serve_destroy(gs_serve_t *s);

unsigned gs_serve_http_port(const gs_serve_t *s);
unsigned gs_serve_grpc_port(const gs_serve_t *s); /* 0: gRPC off */

#endif
