/* Internals of gpuslice serve: the worker table the supervisor keeps, the
 * router loops and their views of that table, upstream HTTP connections to
 * workers, the front door, and the pure pieces (request classes, stats
 * merge, metrics labels) that are tested and fuzzed without sockets.
 *
 * Threads: the main loop (s->loop) owns the worker table, the supervisor,
 * the gRPC front, admin calls and fan-outs. Each router loop (the main loop
 * is router loop 0) owns its HTTP listener, its peers (its view of the
 * table) and their connections. Of a worker, router loops read the label
 * (written before the worker is first published, never after) and update
 * atomics: refs, inflight, requests and failures; every other worker field
 * is the main loop's. Router loops learn of the table through views the
 * main loop publishes, and report each request's outcome back to it. */
#ifndef GPUSLICE_SERVE_INT_H
#define GPUSLICE_SERVE_INT_H

#include <http_parser.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "gpuslice/serve.h"
#include "net/http.h"

typedef struct gs_serve_s gs__serve_t; /* gs_serve_t, seen from inside */
typedef struct gs__wk_s gs__wk_t;
typedef struct gs__host_s gs__host_t;
typedef struct gs__upreq_s gs__upreq_t;
typedef struct gs__peer_s gs__peer_t;
typedef struct gs__rloop_s gs__rloop_t;
typedef struct gs__front_req_s gs__front_req_t;

/* ---- a started process and its lifeline (child.c) ------------------------
 */

typedef struct gs__child_s gs__child_t;
/* Its lifeline closed before it was reaped: true takes that as its death
 * (the owner lets go of it: it is orphaned, reaped later, SIGKILLed if it
 * still runs 5 s on); false waits for on_exit. */
typedef bool (*gs__child_eof_cb)(void *owner, gs__child_t *c);
/* Reaped while the owner still held it: the owner lets go of it (its
 * handles are closing; it frees itself). */
typedef void (*gs__child_exit_cb)(void *owner, gs__child_t *c, int64_t status,
                                  int term_signal);

struct gs__child_s {
  gs__serve_t *s;
  uv_process_t proc;
  uv_pipe_t life;   /* reads EOF once the child's descriptors are closed */
  uv_timer_t timer; /* an orphan's SIGKILL */
  bool proc_open, life_open, timer_open;
  unsigned handles; /* not yet closed: freed at 0 */
  bool exited;      /* reaped */
  int pid;
  char label[96]; /* "worker 0:1", "workers of GPU-..." */
  char life_buf[16];
  void *owner; /* NULL once orphaned */
  gs__child_eof_cb on_eof;
  gs__child_exit_cb on_exit;
  gs__child_t *next; /* serve's orphans */
};

/* Spawns po (its stdio with room for one more: the lifeline, the child's
 * last descriptor; its exit_cb is set here) for owner; a libuv error
 * (nothing is left to release then). */
int gs__child_spawn(gs__serve_t *s, gs__child_t **out, uv_process_options_t *po,
                    const char *label, void *owner, gs__child_eof_cb on_eof,
                    gs__child_exit_cb on_exit);
/* Signals it unless reaped; c may be NULL. */
void gs__child_kill(gs__child_t *c, int signum);
/* Shutdown: every orphan still running gets SIGKILL. */
void gs__children_kill_orphans(gs__serve_t *s);

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
  unsigned n;     /* worker n of its instance */
  char label[80]; /* "0:1" or "0:1/2" with several workers per instance */
  char log_path[4200];
  atomic_uint refs; /* the table's, handles', peers', requests' (any thread) */
  /* process */
  gs__proc_state_t state;
  gs__child_t *child; /* its process; NULL when none runs (or it died and
                         only waits to be reaped) */
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
  bool healthy_this_start; /* healthy once since its process started */
  unsigned check_failures;
  uint64_t unhealthy_since_ns; /* 0 when healthy */
  uint64_t healthy_since_ns;   /* 0 when not healthy */
  gs__upreq_t *check;          /* the check in flight */
  /* passive ejection */
  unsigned consecutive_failures, ejections;
  uint64_t ejected_until_ns;
  /* traffic */
  atomic_uint inflight; /* HTTP (every router loop) and gRPC requests */
  atomic_ullong requests, failures; /* counted where answered (any loop) */
  uint32_t lat_us[GS__LAT_RING];
  unsigned lat_n, lat_next;
  void *grpc;       /* the gRPC proxy's connection (grpc_proxy.c) */
  gs__host_t *host; /* the process it lives in with its group; NULL: its
                       own (the process fields above) */
  gs__wk_t *next;
};

/* One process hosting a group's workers (hosted.c): green isolation, where
 * a GPU's green contexts only run side by side inside one process. Its
 * members are the table's workers whose host it is; it starts with all of
 * them. A member that joins or leaves while it runs is added or removed
 * through its control pipe, the others untouched; its exit, or a control
 * write that fails, restarts it whole. */
struct gs__host_s {
  gs__serve_t *s;
  char group[32];
  char log_path[4200];
  unsigned refs; /* the list's and each open handle's (main loop only) */
  gs__proc_state_t state;
  gs__child_t *child; /* as a worker's */
  int pid;
  uv_pipe_t ready_pipe; /* its lines: ready, failed, removed */
  bool pipe_open;
  uv_pipe_t ctl_pipe; /* to it: "add ID FIRST COUNT", "remove ID" */
  bool ctl_open;
  /* ids sent "remove" and not yet "removed": their earlier add's answer
   * may still come, and belongs to no member (one re-added meanwhile
   * waits for its own) */
  char removing[16][64];
  unsigned n_removing;
  char ready_buf[2048];
  size_t ready_len;
  uint64_t started_ns;
  unsigned quick_exits;
  bool changed;     /* stopped to restart: start again at once */
  uv_timer_t timer; /* restart (backoff), or SIGKILL after the grace */
  gs__host_t *next;
};

/* wk (just added to the table, inst.group set) joins its group's process:
 * added to it when it runs, else it starts with it. */
int gs__host_join(gs__wk_t *wk, gs_error_t *err);
/* wk leaves its process: removed from it (it stops with the last). */
void gs__host_leave(gs__wk_t *wk);
/* Kills wk's process (stuck worker): every member restarts. */
void gs__host_kill(gs__host_t *h);

/* Routable: running, healthy, not ejected, not leaving. */
bool gs__wk_routable(const gs__wk_t *wk, uint64_t now_ns);
void gs__wk_unref(gs__wk_t *wk); /* any thread */
/* Counts one proxied request (any thread). */
void gs__wk_count(gs__wk_t *wk, bool ok);
/* Notes one proxied request's latency and success for p99 and ejection
 * (main loop). */
void gs__wk_observe(gs__wk_t *wk, bool ok, uint64_t latency_ns);
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
  gs__peer_t *peer;         /* a reference until gs__upreq_release */
  gs__http_response_t resp; /* its body is the caller's after done */
  char content_type[128];
  uint64_t t_start;
  bool got_bytes;
  /* internal */
  gs__http_call_t call; /* on the peer's pool */
};

/* Sends r to peer on a pooled (or new) connection on the peer's loop;
 * r->done runs later, on that loop, exactly once (also when sending fails
 * at once). */
void gs__upreq_send(gs__upreq_t *r, gs__peer_t *peer);
/* gs__upreq_send to the peer the policy picks on rl (gs__rloop_pick, not
 * avoid), counted in its worker's inflight; false when none is routable. */
bool gs__upreq_send_any(gs__upreq_t *r, gs__rloop_t *rl,
                        const gs__peer_t *avoid);
/* Frees r->resp's body and drops r->peer. */
void gs__upreq_release(gs__upreq_t *r);
/* Closes peer's idle connections (it left its loop's view). */
void gs__upconn_close_idle(gs__peer_t *peer);

/* ---- router loops and their views of the table (loops.c) -----------------
 */

/* One worker process as one router loop sees it. Only that loop's thread
 * touches it. A worker's restart is a new peer (a new port). */
struct gs__peer_s {
  gs__rloop_t *rl;
  gs__wk_t *wk;       /* a reference: the label and the in-flight count */
  unsigned http_port; /* the process this peer reaches */
  bool routable;      /* running, healthy, not leaving: as last published */
  uint64_t ejected_until_ns;     /* the main loop's or this loop's own */
  unsigned consecutive_failures; /* this loop's: it ejects at once */
  bool gone;     /* left the view: no new requests, connections not kept */
  unsigned refs; /* the loop's list's, each connection's and request's */
  gs__http_pool_t pool; /* keep-alive connections (set up at first use) */
  gs__peer_t *next;
};

typedef struct gs__outcome_s {
  gs__wk_t *wk; /* a reference */
  bool ok, passive_failure;
  uint64_t latency_ns;
} gs__outcome_t;

struct gs__rloop_s {
  gs__serve_t *s;
  unsigned index; /* 0: the main loop */
  uv_loop_t *loop;
  uv_loop_t own_loop; /* index > 0 */
  uv_thread_t thread;
  bool thread_started;
  uv_async_t wake;        /* index > 0: the mailbox has something */
  uv_timer_t flush_timer; /* index > 0: outcomes go to the main loop */
  gs__http_listener_t front;
  gs__peer_t *peers;
  uint64_t rng;
  gs__outcome_t *outcomes; /* index > 0: not yet sent to the main loop */
  size_t n_outcomes, cap_outcomes;
  /* read by the main loop (drain, status) */
  atomic_uint front_inflight, conns;
  atomic_bool drain_done; /* drained its listener; conns counted since */
  atomic_ullong requests;
  /* the mailbox, under mu */
  uv_mutex_t mu;
  struct gs__view_s *view;  /* published, not yet applied */
  gs__front_req_t *answers; /* answered by the main loop */
  bool cmd_drain, cmd_close_idle, cmd_stop;
};

/* Routable as this loop knows it. */
bool gs__peer_routable(const gs__peer_t *p, uint64_t now_ns);
void gs__peer_unref(gs__peer_t *p);
/* Picks a routable peer by the policy, not `avoid`; NULL when none
 * (upstream.c, as the routable checks and gs__pick, gs__choose are). */
gs__peer_t *gs__rloop_pick(gs__rloop_t *rl, const gs__peer_t *avoid);
bool gs__rloop_routable_other(const gs__rloop_t *rl, const gs__peer_t *avoid);
/* The main loop's peer for wk's current process; NULL when none. */
gs__peer_t *gs__rloop_peer_of(gs__rloop_t *rl, const gs__wk_t *wk);
/* One proxied request's outcome, for the worker's status and passive
 * ejection (applied on the main loop). */
void gs__rloop_report(gs__rloop_t *rl, gs__peer_t *peer, bool ok,
                      bool passive_failure, uint64_t latency_ns);
/* Sends the table's routing facts to every router loop when they changed
 * since the last time (main loop). */
void gs__serve_publish(gs__serve_t *s);
/* Router loop 0 (the main loop): at create, before any worker starts. */
int gs__rloops_init(gs__serve_t *s, gs_error_t *err);
/* Opens every router loop's HTTP listener on one port and starts the
 * threads of loops 1.. (main loop). */
int gs__rloops_listen(gs__serve_t *s, gs_error_t *err);
/* Commands to every router loop (main loop). */
void gs__rloops_drain(gs__serve_t *s);
void gs__rloops_close_idle(gs__serve_t *s);
/* Stops loops 1.. and joins their threads; closes loop 0's front. */
void gs__rloops_stop(gs__serve_t *s);
/* After gs__rloops_stop and the main loop's last run. */
void gs__rloops_free(gs__serve_t *s);
/* Router loops by default: the CPUs this process may run on, at most
 * GS_SERVE_MAX_THREADS. */
unsigned gs__rloops_auto(void);
/* Requests the router took to route: each loop's HTTP and the gRPC
 * front's. */
unsigned long long gs__serve_requests(const gs__serve_t *s);
/* Sums over the router loops: front requests not yet answered, and open
 * front connections. Loops 1.. count theirs when woken (this wakes them):
 * UINT_MAX until each has drained its listener; after that, no connection
 * is added, so the count is at most one call old and never too low. */
unsigned gs__rloops_inflight(const gs__serve_t *s);
unsigned gs__rloops_conns(gs__serve_t *s);
/* Hands a request that needs the main loop over to it (from loop > 0). */
void gs__rloop_forward(gs__rloop_t *rl, gs__front_req_t *f);
/* Gives the main loop's answer to f back to f's loop (main loop). */
void gs__rloop_answer(gs__front_req_t *f, gs__http_response_t *resp);

/* ---- pure request handling (front.c's gs__classify; merge.c): no sockets --
 */

typedef enum {
  GS__RT_PROXY = 0,    /* to one worker, by the policy */
  GS__RT_LIVE,         /* GET /v2/health/live: the router itself */
  GS__RT_READY,        /* GET /v2/health/ready: any worker ready */
  GS__RT_STATS,        /* GET .../stats: summed over workers */
  GS__RT_METRICS,      /* GET /metrics: router's + workers' with labels */
  GS__RT_BROADCAST,    /* repository load/unload: to every worker */
  GS__RT_ADMIN_LIST,   /* GET /gpuslice/v1/workers */
  GS__RT_ADMIN_ADD,    /* POST /gpuslice/v1/instances/{id} */
  GS__RT_ADMIN_REMOVE, /* DELETE /gpuslice/v1/instances/{id} */
  GS__RT_ADMIN_SYNC,   /* POST /gpuslice/v1/sync */
  GS__RT_BAD           /* answered by the router with status and message */
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
 * with_help. Returns GS_OK or out's failure (gs_buf_error says which). */
struct gs_buf_s;
int gs__metrics_relabel_buf(const char *text, size_t len, const char *label,
                            bool with_help, struct gs_buf_s *out);

/* Prometheus text with each metric family's lines together (HELP and TYPE
 * first, then samples in their order), as the text format requires when
 * several workers' samples were appended one worker after another. The
 * result is malloc'd; NULL when out of memory. */
char *gs__metrics_group(const char *text, size_t len, size_t *out_len);

/* ---- sequences (sequence.c) ----------------------------------------------
 */

#define GS__SEQ_ID 80
/* What a request says of its sequence; id[0] == 0: none. */
typedef struct gs__rseq_s {
  char id[GS__SEQ_ID]; /* "i:<number>" or "s:<string>" */
  bool start, end;
} gs__rseq_t;
typedef struct gs__rseqs_s gs__rseqs_t;

int gs__rseqs_init(gs__serve_t *s, gs_error_t *err);
void gs__rseqs_free(gs__serve_t *s);
/* The worker q's sequence is pinned to (a reference) and the HTTP port of
 * its process then; NULL when none (never started, ended, idle too long).
 * Any thread. */
gs__wk_t *gs__rseq_find(gs__serve_t *s, const gs__rseq_t *q, unsigned *port);
void gs__rseq_pin(gs__serve_t *s, const gs__rseq_t *q, gs__wk_t *wk,
                  unsigned port);
void gs__rseq_drop(gs__serve_t *s, const gs__rseq_t *q);
/* The sequence parameters of a KServe JSON request (header_len >= 0: the
 * JSON part of a binary one), or of a gRPC ModelInferRequest (with its
 * 5-byte prefix). false when it names no sequence. */
bool gs__rseq_from_json(const char *body, size_t len, long long header_len,
                        gs__rseq_t *q);
bool gs__rseq_from_grpc(const uint8_t *msg, size_t len, gs__rseq_t *q);

/* ---- the serve (serve.c) ---------------------------------------------------
 */

/* One front HTTP request; lives in the front connection's user bytes. When
 * it needs the main loop (admin, fan-outs) and came in on another loop, it
 * travels there and its answer comes back through the mailboxes. */
struct gs__front_req_s {
  gs__serve_t *s;
  gs__rloop_t *rl; /* the loop of its connection */
  gs__http_conn_t *c;
  gs__http_request_t *req;
  gs__route_t route;
  gs__upreq_t up;
  const gs__peer_t *tried; /* the first attempt's peer: compared, never
                              read (it may be gone by now) */
  char tried_label[80];
  unsigned attempts;
  gs__rseq_t seq; /* its sequence: pinned to one worker, never retried */
  bool forwarded; /* in the main loop's hands (it came from another loop) */
  /* the main loop's answer on its way back */
  gs__http_response_t answer;
  char answer_type[128];
  gs__front_req_t *mail_next;
};

/* Handles a request that needs the main loop, on the main loop. */
void gs__front_handle_main(gs__front_req_t *f);

struct gs_serve_s {
  gs_serve_options_t opt;
  uv_loop_t loop;
  bool loop_ready;
  uv_async_t stop_async;
  gs__rloop_t *rloops[GS_SERVE_MAX_THREADS]; /* [0]: the main loop's */
  unsigned n_rloops;
  unsigned http_port; /* the router loops' common port */
  /* the main loop's mailbox (outcomes, forwarded requests), under mail_mu */
  uv_mutex_t mail_mu;
  bool mail_ready;
  uv_async_t mail_async;
  gs__outcome_t *mail_outcomes;
  size_t n_mail_outcomes, cap_mail_outcomes;
  gs__front_req_t *mail_forwarded;
  struct gs__view_s *last_view; /* what was published last */
  gs__wk_t *workers;            /* the table, newest first */
  gs__host_t *hosts;            /* processes hosting a group's workers */
  gs__child_t *orphans;         /* processes replaced already, not yet reaped */
  atomic_uint rr_next;          /* round robin's turn: every loop's */
  uv_timer_t health_timer, drain_timer;
  uv_fs_poll_t watch;
  bool watching;
  bool draining, started;
  bool workers_stopping; /* drain: requests done, workers told to stop */
  unsigned drain_elapsed_ms;
  int start_rc;
  gs_error_t start_err;
  char removed[64][96]; /* instance ids removed by admin calls */
  unsigned n_removed;
  /* router counters for /metrics */
  /* router counters; requests: the gRPC front's (HTTP: each loop's) */
  atomic_ullong requests, retries, failures, ejections, restarts;
  void *grpc;        /* the gRPC front (grpc_proxy.c) */
  gs__rseqs_t *seqs; /* sequence id -> worker (sequence.c) */
};

uint64_t gs__serve_now_ns(void);
void gs__serve_log(gs__serve_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Picks a routable worker by the policy, not `avoid`, as router loop 0
 * sees them (the gRPC front's pick: it runs on that loop); NULL when
 * none. */
gs__wk_t *gs__pick(gs__serve_t *s, const gs__wk_t *avoid);
/* Index of the one to take among n > 0 candidates with these in-flight
 * counts: the next in turn (round robin, one turn shared by every loop and
 * the gRPC front) or the less busy of two distinct random ones (least
 * request). */
unsigned gs__choose(gs__serve_t *s, unsigned n, const unsigned *inflight,
                    uint64_t *rng);
/* Instance bookkeeping for the supervisor (supervisor.c). */
int gs__wk_add(gs__serve_t *s, const gs_serve_instance_t *inst, unsigned n,
               gs_error_t *err);
void gs__wk_remove(gs__wk_t *wk);
void gs__wk_start(gs__wk_t *wk);
void gs__wk_stop(gs__wk_t *wk, int signum);
/* Shared by the hosted processes (hosted.c): wk's worker said it serves
 * on these ports; wk's process is gone; wk leaves the table. */
void gs__wk_ready(gs__wk_t *wk, unsigned http, unsigned grpc);
void gs__wk_gone(gs__wk_t *wk);
void gs__wk_unlink(gs__wk_t *wk);
/* The delay before restart number quick_exits (backoff). */
unsigned gs__restart_delay_ms(unsigned quick_exits);
/* Opens LOG_DIR/worker-NAME.log into path (':' and '/' become '-'). */
int gs__open_log(gs__serve_t *s, const char *name, char *path, size_t size);
/* Adds workers for new instances and removes those whose instance left. */
int gs__sync_instances(gs__serve_t *s, gs_error_t *err);
void gs__health_tick(gs__serve_t *s);
/* Called by the router when a request on wk failed at connection level. */
void gs__wk_passive_failure(gs__wk_t *wk);

/* The front door of one router loop (front.c): its listener's handler. */
void gs__front_setup(gs__rloop_t *rl);
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
