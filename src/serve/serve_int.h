/* Internals of gpuslice serve: the worker table the supervisor keeps and the
 * router reads, upstream HTTP connections to workers, the front door, and
 * the pure pieces (request classes, stats merge, metrics labels) that are
 * tested and fuzzed without sockets. */
#ifndef GPUSLICE_SERVE_INT_H
#define GPUSLICE_SERVE_INT_H

#include <http_parser.h>
#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "gpuslice/serve.h"
#include "worker/worker_int.h"

typedef struct gs_serve_s gs__serve_t; /* gs_serve_t, seen from inside */
typedef struct gs__wk_s gs__wk_t;
typedef struct gs__upconn_s gs__upconn_t;
typedef struct gs__upreq_s gs__upreq_t;

/* ---- the worker table (supervisor.c) --------------------------------------
 */

typedef enum {
  GS__PROC_WAITING = 0, /* not running: a restart is due */
  GS__PROC_STARTING,    /* spawned, not yet said it is ready */
  GS__PROC_RUNNING,     /* serving (routable when healthy) */
  GS__PROC_STOPPING,    /* asked to stop (SIGTERM) */
  GS__PROC_GONE         /* removed and exited: freed with its last ref */
} gs__proc_state_t;

#define GS__LAT_RING 1024

struct gs__wk_s {
  gs__serve_t *s;
  gs_serve_instance_t inst;
  unsigned n; /* worker n of its instance */
  char label[80]; /* "0:1" or "0:1/2" with several workers per instance */
  char log_path[4200];
  unsigned refs;  /* the table's and each connection's */
  /* process */
  gs__proc_state_t state;
  uv_process_t proc;
  bool proc_open; /* proc's handle is not yet closed */
  int pid;
  uv_pipe_t ready_pipe;
  bool pipe_open;
  char ready_buf[128];
  size_t ready_len;
  unsigned http_port, grpc_port;
  uint64_t started_ns, ready_ns;
  unsigned restarts, quick_exits;
  uv_timer_t restart_timer;
  bool removing; /* an admin call or the layout dropped it: no restarts */
  /* health */
  bool healthy;
  unsigned check_failures;
  uint64_t unhealthy_since_ns; /* 0 when healthy */
  uint64_t healthy_since_ns;   /* 0 when not healthy */
  gs__upreq_t *check;          /* the check in flight */
  /* passive ejection */
  unsigned consecutive_failures, ejections;
  uint64_t ejected_until_ns;
  /* traffic */
  unsigned inflight;
  uint64_t requests, failures;
  uint32_t lat_us[GS__LAT_RING];
  unsigned lat_n, lat_next;
  /* HTTP connections to the worker: idle ones wait in the pool */
  gs__upconn_t *idle;
  unsigned n_idle;
  void *grpc; /* the gRPC proxy's connection (grpc_proxy.c) */
  gs__wk_t *next;
};

/* Routable: running, healthy, not ejected, not leaving. */
bool gs__wk_routable(const gs__wk_t *wk, uint64_t now_ns);
void gs__wk_unref(gs__wk_t *wk);
/* Records one proxied request's outcome for status, p99 and ejection. */
void gs__wk_record(gs__wk_t *wk, bool ok, uint64_t latency_ns);
/* p99 of the latest requests in microseconds; 0 with none. */
unsigned gs__wk_p99_us(const gs__wk_t *wk);

/* ---- upstream HTTP requests (upstream.c) ----------------------------------
 */

typedef enum {
  GS__UP_OK = 0,
  GS__UP_CONNECT, /* failed before any response byte: safe to retry */
  GS__UP_BROKEN,  /* failed after response bytes */
  GS__UP_TIMEOUT,
  GS__UP_TOOBIG, /* the response is over the limit */
  GS__UP_LOCAL   /* the router could not form the request: not the
                    worker's fault, never retried */
} gs__up_result_t;

struct gs__upreq_s {
  /* in: the request (borrowed until done) */
  const char *method, *url;
  const char *body;
  size_t body_len;
  long long infer_header_len; /* -1: none */
  unsigned timeout_ms;
  void (*done)(gs__upreq_t *r, gs__up_result_t result);
  void *data;
  /* out */
  gs__wk_t *wk;
  gs__http_response_t resp; /* its body is the caller's after done */
  char content_type[128];
  uint64_t t_start;
  /* internal */
  gs__upconn_t *conn;
  bool got_bytes;
  char head[(8u << 10) + 512]; /* the longest URL the reader takes + headers */
  size_t head_len;
};

/* Sends r to wk on a pooled (or new) connection; r->done runs later, on the
 * loop, exactly once (also when sending fails at once). */
void gs__upreq_send(gs__upreq_t *r, gs__wk_t *wk);
/* Frees r->resp's body. */
void gs__upreq_release(gs__upreq_t *r);
/* Closes wk's idle connections (its process is gone). */
void gs__upconn_close_idle(gs__wk_t *wk);

/* ---- pure request handling (classify.c): no sockets -----------------------
 */

typedef enum {
  GS__RT_PROXY = 0,   /* to one worker, by the policy */
  GS__RT_LIVE,        /* GET /v2/health/live: the router itself */
  GS__RT_READY,       /* GET /v2/health/ready: any worker ready */
  GS__RT_STATS,       /* GET .../stats: summed over workers */
  GS__RT_METRICS,     /* GET /metrics: router's + workers' with labels */
  GS__RT_BROADCAST,   /* repository load/unload: to every worker */
  GS__RT_ADMIN_LIST,  /* GET /gpuslice/v1/workers */
  GS__RT_ADMIN_ADD,   /* POST /gpuslice/v1/instances/{id} */
  GS__RT_ADMIN_REMOVE, /* DELETE /gpuslice/v1/instances/{id} */
  GS__RT_ADMIN_SYNC,  /* POST /gpuslice/v1/sync */
  GS__RT_BAD          /* answered by the router with status and message */
} gs__route_kind_t;

typedef struct gs__route_s {
  gs__route_kind_t kind;
  int status;          /* GS__RT_BAD */
  const char *message; /* GS__RT_BAD */
  char arg[96];        /* admin: the instance id, URL-decoded */
} gs__route_t;

void gs__classify(const gs__http_request_t *req, gs__route_t *out);

/* Sums Triton's statistics JSON of several workers into one document:
 * counts and ns add up, last_inference is the latest, model_stats match by
 * name and version, batch_stats by batch_size. Takes nothing; returns a
 * new reference, or NULL with err when a document is not statistics. */
json_t *gs__stats_merge(json_t *const *docs, size_t n, gs_error_t *err);
/* Appends Prometheus text from one worker to out with label
 * instance="label" on every sample; # HELP / # TYPE lines only when
 * with_help. Returns 0, or -1 when out of memory. */
int gs__metrics_relabel(const char *text, size_t len, const char *label,
                        bool with_help, char **out, size_t *out_len,
                        size_t *out_cap);

/* Prometheus text with each metric family's lines together (HELP and TYPE
 * first, then samples in their order), as the text format requires when
 * several workers' samples were appended one worker after another. The
 * result is malloc'd; NULL when out of memory. */
char *gs__metrics_group(const char *text, size_t len, size_t *out_len);

/* ---- the serve (serve.c) ---------------------------------------------------
 */

struct gs_serve_s {
  gs_serve_options_t opt;
  uv_loop_t loop;
  bool loop_ready;
  uv_async_t stop_async;
  gs__http_listener_t front;
  gs__wk_t *workers; /* the table, newest first */
  unsigned rr_next;
  uint64_t rng;
  uv_timer_t health_timer, drain_timer;
  uv_fs_poll_t watch;
  bool watching;
  bool draining, started;
  bool workers_stopping; /* drain: requests done, workers told to stop */
  unsigned drain_elapsed_ms;
  int start_rc;
  gs_error_t start_err;
  unsigned front_inflight;
  char removed[64][96]; /* instance ids removed by admin calls */
  unsigned n_removed;
  /* router counters for /metrics */
  uint64_t requests, retries, failures, ejections, restarts;
  void *grpc; /* the gRPC front (grpc_proxy.c) */
};

uint64_t gs__serve_now_ns(void);
void gs__serve_log(gs__serve_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Whether a worker other than avoid is routable (does not move the round
 * robin, as a pick would). */
bool gs__routable_other(const gs__serve_t *s, const gs__wk_t *avoid);
/* Picks a routable worker by the policy, not `avoid`; NULL when none. */
gs__wk_t *gs__pick(gs__serve_t *s, const gs__wk_t *avoid);
/* Instance bookkeeping for the supervisor (supervisor.c). */
int gs__wk_add(gs__serve_t *s, const gs_serve_instance_t *inst, unsigned n,
               gs_error_t *err);
void gs__wk_remove(gs__wk_t *wk);
void gs__wk_start(gs__wk_t *wk);
void gs__wk_stop(gs__wk_t *wk, int signum);
/* Adds workers for new instances and removes those whose instance left. */
int gs__sync_instances(gs__serve_t *s, gs_error_t *err);
void gs__health_tick(gs__serve_t *s);
/* Called by the router when a request on wk failed at connection level. */
void gs__wk_passive_failure(gs__wk_t *wk);

/* The front door (front.c). */
int gs__front_listen(gs__serve_t *s, gs_error_t *err);
/* Answers an admin route (ADMIN_*) into resp (admin.c). */
void gs__admin_handle(gs__serve_t *s, const gs__route_t *route,
                      gs__http_response_t *resp);
/* Status of every worker as JSON (admin.c). */
json_t *gs__status_json(gs__serve_t *s);
/* The router's own Prometheus text (admin.c). */
char *gs__router_metrics(gs__serve_t *s, size_t *len);

/* The gRPC front (grpc_proxy.c): routes each call to a worker's gRPC port.
 */
int gs__grpc_proxy_listen(gs__serve_t *s, const char *host, unsigned port,
                          gs_error_t *err);
unsigned gs__grpc_proxy_port(const gs__serve_t *s);
void gs__grpc_proxy_drain(gs__serve_t *s);
/* In-flight gRPC calls (drain waits for 0). */
unsigned gs__grpc_proxy_inflight(const gs__serve_t *s);
/* wk's process is gone: its gRPC connection fails its calls (retried). */
void gs__grpc_proxy_worker_gone(gs__wk_t *wk);
void gs__grpc_proxy_close(gs__serve_t *s);

#endif
