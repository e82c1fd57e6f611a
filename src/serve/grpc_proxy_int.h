/* The router's gRPC front, shared between its files: grpc_proxy.c (calls
 * from clients, served by net/grpc_server: answers, retries, dispatch; the
 * front's life), grpc_proxy_conn.c (the HTTP/2 client connections to the
 * workers) and grpc_fanout.c (calls sent to every worker). */
#ifndef GS_SERVE_GRPC_PROXY_INT_H
#define GS_SERVE_GRPC_PROXY_INT_H

#include <stdarg.h>

#include "net/grpc.h"
#include "net/grpc_server.h"
#include "net/h2.h"
#include "serve/serve_int.h"

/* one header list, as RFC 9113 counts */
#define MAX_HEADER_BYTES ((unsigned)gs_limit_bytes(GS_LIMIT_GRPC_HEADERS))
/* requests + responses, all calls */
#define MAX_BUFFERED gs_limit_bytes(GS_LIMIT_GRPC_PROXY_BUFFERED)
#define WINDOW_BYTES (1 << 20)

typedef struct front_s front_t;
typedef struct h2_s h2_t;
typedef struct call_s call_t;
typedef gs_h2_hdrs_t hdrs_t;

/* Our HTTP/2 client connection to one worker. */
struct h2_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  gs_h2_t h2; /* h2.session is NULL until h2_session */
  front_t *f;
  h2_t *next, *prev; /* in f->ups */
  gs__wk_t *wk;      /* the worker, a ref of its own */
  bool connected, closing, dirty;
  bool gone; /* its worker died: not a passive failure */
};

struct call_s {
  call_t *next, *prev; /* in f->calls */
  front_t *f;
  /* the client's call (the server's state holds this call_t); NULL for a
   * fan-out's kid and an undo, which the front allocates */
  gs_grpc_call_t *gc;
  hdrs_t req; /* :path, :authority and the headers to forward */
  gs_buf_t body;
  int error; /* a gRPC status found while reading, answered at its end */
  char error_msg[128];
  /* the attempt in flight: wk is set while it counts in wk->inflight */
  gs__wk_t *wk;
  h2_t *up; /* NULL once its stream is gone */
  int32_t up_id;
  size_t body_sent;
  unsigned attempts;
  bool got_headers; /* the worker began answering: no retry after that */
  bool answered;
  bool pinned; /* a sequence's: its worker or none, never retried */
  /* a stream (ModelStreamInfer): relayed both ways as messages come */
  bool streaming, req_done, resp_done;
  hdrs_t resp, trailers;
  gs_buf_t resp_body;
  uint64_t t_attempt, deadline_ns;
  call_t *fail_next; /* in h2_close's list of calls to fail */
  /* fan-outs (repository and shared-memory changes): the client's call has
   * one kid per worker; a kid is never answered to the client itself */
  call_t *parent;
  call_t **kids;
  unsigned n_kids, kids_pending;
  int kid_status;    /* a kid's gRPC status, once it is done */
  gs__wk_t *sent_to; /* a kid's worker (no reference: compared only) */
  bool undo; /* a register's undo (fanout_undo): no client, freed when done */
  char kid_msg[128];
};

struct front_s {
  gs__serve_t *s;
  gs_grpc_srv_t *srv; /* the clients' side */
  uv_prepare_t flusher;
  uv_timer_t sweeper;
  unsigned open_handles; /* of the two above, not yet closed */
  h2_t *ups;
  call_t *calls;
  unsigned n_calls;
  size_t buffered, max_body;
  unsigned timeout_ms;
  bool draining, closing;
  char too_large[64]; /* "the request is larger than N bytes" */
};

/* ---- calls (grpc_proxy.c) */

int gs__gp_bytes_add(front_t *f, gs_buf_t *b, const uint8_t *data, size_t len);
void gs__gp_call_answer_error(call_t *call, int status, const char *msg);
void gs__gp_call_answer_relay(call_t *call);
void gs__gp_call_attempt_failed(call_t *call, bool passive);
bool gs__gp_call_retry_not_run(call_t *call, gs__wk_t *tried);
void gs__gp_call_detach(call_t *call, bool reset);
void gs__gp_call_dispatch(call_t *call);
void gs__gp_call_end_attempt(call_t *call, bool ok, bool reset);
void gs__gp_call_free(call_t *call);
void gs__gp_call_init(call_t *call, front_t *f);
bool gs__gp_call_is(const call_t *call, const char *method);
void gs__gp_call_resume(call_t *call, bool up);
void gs__gp_call_relay_head(call_t *call);
void gs__gp_call_set_error(call_t *call, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int gs__gp_hdrs_add(hdrs_t *h, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen);
ssize_t gs__gp_read_body(nghttp2_session *session, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user);

/* ---- connections (grpc_proxy_conn.c) */

void gs__gp_call_send(call_t *call, gs__wk_t *wk);
void gs__gp_front_maybe_free(front_t *f);
void gs__gp_h2_close(h2_t *c);
void gs__gp_on_flush(uv_prepare_t *p);

/* ---- fan-outs (grpc_fanout.c) */

bool gs__gp_call_is_fanout(const call_t *call);
bool gs__gp_fanout_start(call_t *call);
int gs__gp_hdrs_status(const hdrs_t *h, const char **msg);
void gs__gp_kid_done(call_t *kid, int status, const char *msg);

#endif
