/* gpuslice worker's multi-instance mode (worker_hosted.c): several
 * instances' workers in one process, each on its own green context, and
 * the control channel that adds and removes instances while it runs. */
#ifndef GPUSLICE_WORKER_HOSTED_H
#define GPUSLICE_WORKER_HOSTED_H

#include <stdbool.h>
#include <sys/types.h>

#include "gpuslice/worker.h"

#define WORKER_MAX_HOSTED 16 /* instances one process hosts (a GPU: <= 7) */

/* One hosted instance: "ID=FIRST:COUNT[,rate=N]" of --instance, or an
 * "add". */
typedef struct hosted_s {
  char id[64];
  unsigned sm_first, sm_count;
  unsigned rate_limit; /* its worker's; 0: the process's --rate-limit */
} hosted_t;

/* gs_worker_options_t.note for gpuslice worker: the line on stderr,
 * prefixed with the instance ctx names (a hosted instance's ID) if any. */
void worker_note(void *ctx, const char *line);

/* Serves the n instances on base's options (each on free ports, metrics
 * off) until SIGINT or SIGTERM or one of them stops. ready_fd (> 0) gets
 * "ready id=ID http=P grpc=G" per instance; with control_fd (> 0) the
 * process reads "add ID FIRST COUNT [RATE]" and "remove ID" lines there and
 * answers each on ready_fd ("ready ...", "failed id=ID WHY", "removed
 * id=ID", also for an id not hosted), the other instances serving on. Returns a
 * CLI exit status. */
int worker_host_instances(const gs_worker_options_t *base,
                          const hosted_t *hosted, unsigned n, int ready_fd,
                          int control_fd, pid_t parent);

/* How many instances' inference threads the process's pool is sized for:
 * a full GPU's when instances may be added later (libuv sizes its pool
 * once, at first use). */
unsigned worker_pool_instances(unsigned n_hosted, bool control);

/* Prints each model's state to stderr (shared with the one-worker mode). */
void worker_report_models(const gs_worker_t *w);
/* "ready N ms after the process started", once it serves. */
void worker_report_ready(void);

/* CLI_OK, or CLI_FAIL after saying why on stderr when
 * --exit-on-device-failure stopped w. */
int worker_exit_status(const gs_worker_t *w);

#endif
