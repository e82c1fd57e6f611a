/* gpuslice perf: a load generator that speaks to a KServe v2 server as
 * Triton's perf_analyzer does (HTTP/1.1 with binary tensors, or gRPC), at a
 * sweep of concurrencies (closed loop) or request rates (open loop), one
 * level at a time, each measured in windows until it is stable. */
#ifndef GPUSLICE_PERF_H
#define GPUSLICE_PERF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuslice/error.h"

typedef enum { GS_PERF_HTTP = 0, GS_PERF_GRPC } gs_perf_protocol_t;
/* Concurrency: N requests always in flight. Rate: requests sent at times
 * fixed in advance, whatever the answers do. */
typedef enum { GS_PERF_CONCURRENCY = 0, GS_PERF_RATE } gs_perf_mode_t;
typedef enum {
  GS_PERF_SHM_NONE = 0,
  GS_PERF_SHM_SYSTEM,
  GS_PERF_SHM_CUDA
} gs_perf_shm_t;
typedef enum { GS_PERF_CONSTANT = 0, GS_PERF_POISSON } gs_perf_dist_t;
/* perf_analyzer's --input-tensor-format / --output-tensor-format (HTTP). */
typedef enum {
  GS_PERF_FORMAT_BINARY = 0,
  GS_PERF_FORMAT_JSON
} gs_perf_format_t;
typedef enum {
  GS_PERF_DATA_RANDOM = 0,
  GS_PERF_DATA_ZERO,
  GS_PERF_DATA_FILE
} gs_perf_data_t;

/* start, start + step, ... up to end (inclusive). */
typedef struct gs_perf_range_s {
  double start, end, step;
} gs_perf_range_t;

#define GS_PERF_MAX_SHAPES 16
#define GS_PERF_MAX_DIMS 8
/* --shape NAME:d1,d2: the dims of a variable-shape input, batch excluded. */
typedef struct gs_perf_shape_s {
  char name[128];
  unsigned rank;
  int64_t dims[GS_PERF_MAX_DIMS];
} gs_perf_shape_t;

typedef struct gs_perf_options_s {
  const char *host; /* NULL: "localhost" */
  unsigned port;    /* 0: 8000 for HTTP, 8001 for gRPC */
  gs_perf_protocol_t protocol;
  const char *model;
  const char *version; /* NULL or "": the server's choice */
  unsigned batch;      /* 0: 1 */
  size_t n_shapes;
  gs_perf_shape_t shapes[GS_PERF_MAX_SHAPES];
  gs_perf_data_t data;
  const char *data_file; /* with GS_PERF_DATA_FILE: perf_analyzer's JSON */
  gs_perf_mode_t mode;
  gs_perf_range_t range;
  gs_perf_dist_t distribution;
  unsigned window_ms;       /* 0: 5000 */
  double stability_pct;     /* 0: 10 */
  unsigned percentile;      /* 0: stabilise on the average latency */
  unsigned max_trials;      /* 0: 10; at least 3 */
  bool async;               /* accepted for perf_analyzer's -a; all sends are */
  unsigned max_threads;     /* rate mode: connections at most; 0: 64 */
  double latency_budget_ms; /* <= 0: none */
  uint64_t seed;            /* random data and Poisson gaps; 0: fixed */
  /* perf_analyzer's --shared-memory: inputs written once into a region per
   * request (POSIX shm, or CUDA device memory on device 0 registered by
   * its IPC handle) and outputs asked into it, output_shm_size bytes each
   * (0: 100 KiB, as perf_analyzer's --output-shared-memory-size). */
  gs_perf_shm_t shared_memory;
  unsigned output_shm_size;
  /* HTTP only, as perf_analyzer's: inputs as JSON "data" arrays instead of
   * binary data after the JSON; outputs asked as JSON (no
   * binary_data_output). gRPC ignores both. */
  gs_perf_format_t input_format, output_format;
} gs_perf_options_t;

/* The server's own statistics over a measurement (deltas of its /stats). */
typedef struct gs_perf_server_s {
  uint64_t success, inferences, executions;
  double request_us, queue_us, input_us, infer_us, output_us; /* averages */
  double overhead_us; /* request minus queue and compute, >= 0 */
  double network_us;  /* client wait minus server time (perf_analyzer's
                         Network+Server Send/Recv), >= 0 */
} gs_perf_server_t;

typedef struct gs_perf_result_s {
  double level; /* the concurrency or the request rate */
  uint64_t request_count;
  double duration_s; /* of the windows merged */
  double throughput; /* inferences/s: requests x batch / duration */
  double avg_us, stddev_us, p50_us, p90_us, p95_us, p99_us;
  double pct_us;           /* the chosen --percentile, or avg_us without one */
  double send_us, recv_us; /* client averages: writing, and reading */
  unsigned windows;        /* measured for this level */
  bool stable;
  bool has_server; /* the server lists the "statistics" extension */
  gs_perf_server_t server;
  bool client_bottleneck;
  char bottleneck[256]; /* why, when client_bottleneck */
} gs_perf_result_t;

typedef struct gs_perf_report_s {
  gs_perf_result_t *levels; /* malloc'd; gs_perf_report_release frees */
  size_t n;
  bool has_server;
  unsigned batch;
  long budget_index; /* highest level within the budget; -1 none */
} gs_perf_report_t;

/* Called after each level is measured, stable or not, before the next. */
typedef void (*gs_perf_level_cb)(const gs_perf_result_t *r, void *user);

/* Fetches the model's metadata and config, then measures every level of
 * opts->range. Fails on the first level that does not stabilise (GS_ELIMIT,
 * with perf_analyzer's sentence), on a request the server rejects (its
 * message), or an unreachable server (GS_ESYSTEM); levels measured so far
 * stay in *report. The caller releases *report in every case. */
int gs_perf_run(const gs_perf_options_t *opts, gs_perf_level_cb cb, void *user,
                gs_perf_report_t *report, gs_error_t *err);
void gs_perf_report_release(gs_perf_report_t *report);

/* "start[:end[:step]]" (end defaults to start, step to 1). Concurrencies
 * are whole numbers >= 1; rates > 0. GS_EINVAL naming what is wrong for
 * start > end, a step <= 0 or a malformed number. */
int gs_perf_parse_range(const char *text, bool rate, gs_perf_range_t *out,
                        gs_error_t *err);
/* "NAME:d1,d2,..." into *out. */
int gs_perf_parse_shape(const char *text, gs_perf_shape_t *out,
                        gs_error_t *err);
/* The report as perf_analyzer's CSV (-f): its columns in its order, server
 * columns only with has_server, times in microseconds. *csv is malloc'd. */
int gs_perf_csv(const gs_perf_report_t *report, gs_perf_mode_t mode, char **csv,
                gs_error_t *err);

#endif
