/* Internals of gpuslice perf: measurement arithmetic (stats.c), client
 * connections for HTTP/1.1 and gRPC on libuv (conn.c, conn_grpc.c), the
 * model's description and the request built once (model.c, request.c), and
 * the load of one level (load.c). */
#ifndef GPUSLICE_PERF_INT_H
#define GPUSLICE_PERF_INT_H

#include <http_parser.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "gpuslice/perf.h"
#include "net/grpc.h"
#include "net/h2.h"
#include "net/http.h"

#define GS__PERF_MAX_BODY ((size_t)64 << 20) /* a fetched answer */
#define GS__PERF_ERR_BODY ((size_t)4096)     /* kept of an infer's answer */
#define GS__PERF_MAX_WINDOWS 100u
#define GS__PERF_MAX_SCHEDULE ((size_t)50 << 20) /* rate-mode send times */
#define GS__PERF_LATE_NS 1000000ull /* a send this late is the client's */

uint64_t gs__perf_now_ns(void); /* CLOCK_MONOTONIC */

/* ---- measurement arithmetic (stats.c) ------------------------------------ */

/* perf_analyzer's percentile of n sorted values: the element at index
 * round(p/100 * (n - 1)). 0 when n is 0. */
uint64_t gs__perf_percentile(const uint64_t *sorted, size_t n, unsigned p);

/* One measurement window of one level. */
typedef struct gs__perf_window_s {
  uint64_t *lat; /* latencies (ns) of the requests completed in it */
  size_t n, cap;
  uint64_t send_ns, recv_ns; /* sums */
  uint64_t t_begin, t_end;   /* monotonic ns */
  uint64_t cpu_ns;           /* load thread CPU time spent in it */
  uint64_t late;             /* rate mode: sends later than LATE_NS */
  bool has_server;
  uint64_t s_success, s_inferences, s_executions; /* server deltas */
  uint64_t s_request_ns, s_queue_ns, s_input_ns, s_infer_ns, s_output_ns;
} gs__perf_window_t;

int gs__perf_window_add(gs__perf_window_t *w, uint64_t lat_ns);
void gs__perf_window_release(gs__perf_window_t *w);

/* The stabilising latency of a window: its average, or percentile p. */
double gs__perf_window_latency(gs__perf_window_t *w, unsigned p);
double gs__perf_window_throughput(const gs__perf_window_t *w, unsigned batch);

/* perf_analyzer's rule over the last 3 of n windows: every throughput > 0
 * and max/min <= 1 + pct/100 for throughput and for the latency. */
bool gs__perf_stable(const double *tput, const double *lat, size_t n,
                     double pct);

/* The last k windows of w[0..n) merged into one result (its latencies
 * sorted in place). Level, stable and bottleneck are left to the caller. */
int gs__perf_merge(gs__perf_window_t *w, size_t n, size_t k, unsigned batch,
                   unsigned percentile, gs_perf_result_t *out);

/* Send offsets (ns from the level's start) of n requests at `rate`/s:
 * constant spacing, or exponential gaps (Poisson arrivals) drawn from a
 * generator seeded with seed. */
void gs__perf_schedule(double rate, gs_perf_dist_t dist, uint64_t seed,
                       uint64_t *offsets, size_t n);

/* The levels of a range; n_out <= max. */
size_t gs__perf_levels(const gs_perf_range_t *r, double *out, size_t max);

/* ---- connections (conn.c, conn_grpc.c) ---------------------------------- */

typedef struct gs__perf_conn_s gs__perf_conn_t;
/* rc GS_OK: the connection opened, or an answer came (status, body);
 * otherwise the connection failed and c->err says why. */
typedef void (*gs__perf_conn_cb)(gs__perf_conn_t *c, int rc);

/* One request as sent: HTTP: data is the whole request; gRPC: path is the
 * method and data the framed message. Lives as long as the level. */
typedef struct gs__perf_req_s {
  const char *path;
  const uint8_t *data;
  size_t len;
} gs__perf_req_t;

struct gs__perf_conn_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  bool grpc, open, busy, closing;
  void *user;
  gs__perf_conn_cb on_open, on_done;
  void (*on_closed)(gs__perf_conn_t *c); /* may be NULL; c is freed after */
  char authority[300];
  uv_loop_t *loop;
  struct sockaddr_storage addr;
  bool stale;        /* the server closes it: reconnect before the next */
  bool reconnecting; /* tcp is closing to be opened again */
  const gs__perf_req_t *pending; /* sent once reconnected */
  /* the request in flight */
  uint64_t t_sched, t_start, t_sent, t_first;
  size_t body_limit;  /* kept of the body; beyond: error or truncation */
  bool body_truncate; /* truncate at body_limit instead of failing */
  /* its answer */
  int status;        /* HTTP status, or gRPC status */
  gs_buf_t body;     /* at most body_limit bytes of it */
  char message[512]; /* grpc-message */
  gs_error_t err;
  /* HTTP: the answer's reader (net/http.h) */
  gs__http_reply_t reply;
  bool complete; /* gRPC: the call ended */
  /* gRPC */
  gs_h2_t h2; /* its session is NULL until gs__perf_grpc_start */
  const gs__perf_req_t *req;
  size_t req_off;
  gs__grpc_answer_t answer;
  gs__perf_conn_t *next; /* the owner's list */
};

/* Allocates and connects; on_open reports the outcome. */
int gs__perf_conn_open(uv_loop_t *loop, const struct sockaddr *addr, bool grpc,
                       const char *authority, void *user,
                       gs__perf_conn_cb on_open, gs__perf_conn_cb on_done,
                       gs__perf_conn_t **out, gs_error_t *err);
/* Sends one request on an open, idle connection; on_done reports. */
int gs__perf_conn_send(gs__perf_conn_t *c, const gs__perf_req_t *req);
/* Closes (once) and frees c after on_closed. */
void gs__perf_conn_close(gs__perf_conn_t *c);
/* Bytes for the socket (try_write, the rest queued). */
int gs__perf_conn_write(gs__perf_conn_t *c, const uint8_t *data, size_t len);
void gs__perf_conn_fail(gs__perf_conn_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int gs__perf_body_append(gs__perf_conn_t *c, const char *data, size_t len);

int gs__perf_grpc_start(gs__perf_conn_t *c);
int gs__perf_grpc_send(gs__perf_conn_t *c, const gs__perf_req_t *req);
int gs__perf_grpc_read(gs__perf_conn_t *c, const uint8_t *data, size_t len);
void gs__perf_grpc_release(gs__perf_conn_t *c);

/* One request on a fresh connection, run to completion on loop (for
 * metadata). *status, *body (malloc'd, caller frees) and *len. */
int gs__perf_fetch(uv_loop_t *loop, const struct sockaddr *addr, bool grpc,
                   const char *authority, const gs__perf_req_t *req,
                   int *status, char **body, size_t *len, gs_error_t *err);

/* ---- the model and its request (model.c, request.c) --------------------- */

#define GS__PERF_MAX_TENSORS 32
typedef struct gs__perf_tensor_s {
  char name[128];
  char datatype[16];
  unsigned rank; /* batch included when max_batch_size > 0 */
  int64_t shape[GS_PERF_MAX_DIMS + 1];
} gs__perf_tensor_t;

typedef struct gs__perf_model_s {
  char name[256], version[64];
  unsigned max_batch_size;
  size_t n_inputs, n_outputs;
  gs__perf_tensor_t inputs[GS__PERF_MAX_TENSORS];
  char outputs[GS__PERF_MAX_TENSORS][128];
  bool statistics; /* the server lists the extension */
} gs__perf_model_t;

/* Everything a level needs, set up by gs_perf_run. */
typedef struct gs__perf_ctx_s {
  const gs_perf_options_t *opts;
  uv_loop_t loop;
  struct sockaddr_storage addr;
  char authority[300];
  gs__perf_model_t model;
  gs__perf_req_t *reqs; /* one per input-data entry, cycled */
  uint8_t **req_data;
  size_t n_reqs;
  gs__perf_req_t stats_req;
  uint8_t *stats_data;
  unsigned batch, window_ms, max_trials, max_conns;
  double stability_pct;
  struct gs__perf_shm_s *shm; /* --shared-memory: one region per request */
  size_t n_shm;
  struct gs__perf_cuda_s *cuda; /* --shared-memory cuda: the driver */
} gs__perf_ctx_t;

/* One call on a fresh connection: its body on success (HTTP 200, gRPC
 * OK), else an error naming what with the server's message (model.c). */
int gs__perf_call(struct gs__perf_ctx_s *ctx, gs__perf_req_t *req,
                  const char *what, char **body, size_t *len, gs_error_t *err);
/* A gRPC call's message framed (uncompressed, 4-byte length). */
struct ProtobufCMessage;
int gs__perf_grpc_request(const char *path, const struct ProtobufCMessage *msg,
                          gs__perf_req_t *req, uint8_t **data);
/* --shared-memory (shm.c): request k's region, made and registered, its
 * inputs (data[i], len[i]) written once at in_off[i] and room for every
 * output (output_shm_size each) at out_off[o]; *name is the region's. */
int gs__perf_shm_make(struct gs__perf_ctx_s *ctx, size_t k,
                      uint8_t *const *data, const size_t *len, size_t *in_off,
                      size_t *out_off, const char **name, gs_error_t *err);
/* Unregisters and frees every region (errors ignored: the end of a run). */
void gs__perf_shm_release(struct gs__perf_ctx_s *ctx);

/* Reads /v2, the model's metadata and config (or their gRPC calls). */
int gs__perf_model_fetch(gs__perf_ctx_t *ctx, gs_error_t *err);
/* The server's cumulative statistics for the model, from a stats answer. */
typedef struct gs__perf_snapshot_s {
  uint64_t success, inferences, executions;
  uint64_t request_ns, queue_ns, input_ns, infer_ns, output_ns;
} gs__perf_snapshot_t;
int gs__perf_stats_parse(const gs__perf_ctx_t *ctx, const char *body,
                         size_t len, gs__perf_snapshot_t *s, gs_error_t *err);
/* The message of a failed answer: the body's "error", or the gRPC message. */
void gs__perf_answer_error(const gs__perf_conn_t *c, char *out, size_t size);
/* Builds the infer request(s) and the stats request. */
int gs__perf_requests_build(gs__perf_ctx_t *ctx, gs_error_t *err);
void gs__perf_requests_release(gs__perf_ctx_t *ctx);
/* A GET of path (HTTP) or a call of method with message (gRPC), framed. */
int gs__perf_get_request(const char *path, const char *authority,
                         gs__perf_req_t *req, uint8_t **data);

/* ---- one level (load.c) ------------------------------------------------- */

/* Measures level until stable or max_trials windows; out is filled in
 * both cases (stable says which). Fails on a request error. */
int gs__perf_level_run(gs__perf_ctx_t *ctx, double level, gs_perf_result_t *out,
                       gs_error_t *err);

#endif
