/* HTTP/1.1 for every part of gpuslice that speaks it, over http-parser and
 * libuv: the request reader and server connections (http_request.c,
 * http_server.c), the response reader, client connections and keep-alive
 * pools (http_client.c). It knows nothing of models, workers or routing;
 * the one header it reads beyond HTTP's own is KServe's
 * Inference-Header-Content-Length, which both sides of a proxy carry. */
#ifndef GPUSLICE_NET_HTTP_H
#define GPUSLICE_NET_HTTP_H

#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/buf.h"
#include "gpuslice/error.h"
#include "net/compress.h"

/* ---- HTTP request reader (http_request.c) -------------------------------- */

typedef struct gs__http_request_s {
  enum http_method method;
  char *url; /* NUL-terminated, owned */
  size_t url_len;
  char *body; /* owned; body_len bytes plus a NUL */
  size_t body_len, body_cap;
  long long infer_header_len; /* Inference-Header-Content-Length; -1 absent */
  bool keep_alive;
  /* Content-Encoding as sent (the body is already decoded when whole), and
   * the coding Accept-Encoding asks an infer's response in (identity if
   * none, and for every other path: Triton compresses infers only) */
  gs__encoding_t content_encoding, accept_encoding;
} gs__http_request_t;

typedef struct gs__http_reader_s {
  http_parser parser;
  size_t max_body;
  size_t header_bytes;
  gs__http_request_t req;
  gs_buf_t url, body; /* read so far; moved into req when whole */
  char field[40];     /* the header name being read, lower case, truncated */
  size_t field_len;
  char value[128]; /* the value of a header we read, truncated */
  size_t value_len;
  bool value_wanted, value_too_long;
  int header_kind;      /* which header field/value is being read */
  bool in_value;        /* last callback was a header value */
  bool expect_continue; /* the client waits for "100 Continue" */
  bool complete;        /* req holds a whole request; call _next */
  int error_status;     /* 400, 413, 414 or 431 once the stream is unusable */
  const char *error_msg;
  char error_text[192]; /* error_msg when it is formatted */
} gs__http_reader_t;

void gs__http_reader_init(gs__http_reader_t *r, size_t max_body);
void gs__http_reader_release(gs__http_reader_t *r);
/* Feeds bytes (len 0 = the peer closed). Returns how many were consumed:
 * it stops after a complete request (r->complete) or an error
 * (r->error_status set; the connection must be answered and closed). */
size_t gs__http_reader_feed(gs__http_reader_t *r, const char *data, size_t len);
/* Frees the request read and gets ready for the next one. */
void gs__http_reader_next(gs__http_reader_t *r);

/* A response: status, body, and for binary tensor data the JSON header's
 * length (-1 when the body is all JSON or empty). */
typedef struct gs__http_response_s {
  int status;
  char *body; /* owned (malloc) */
  size_t body_len;
  long long infer_header_len;
  const char *content_type;
  const char *content_encoding; /* NULL: identity (gs__http_conn_respond
                                   sets it when it compresses the body) */
} gs__http_response_t;

void gs__http_response_release(gs__http_response_t *resp);
/* {"error": msg} with the status (KServe's and the router's error form). */
void gs__http_response_error(gs__http_response_t *resp, int status,
                             const char *msg);
/* Takes json (decref'd). */
void gs__http_response_json(gs__http_response_t *resp, int status,
                            json_t *json);
/* The status line and headers, NUL-terminated in buf. */
int gs__http_response_head(const gs__http_response_t *resp, bool keep_alive,
                           char *buf, size_t size);
const char *gs__http_reason(int status);

/* ---- HTTP/1.1 server connections (http_server.c) ------------------------- */

typedef struct gs__http_conn_s gs__http_conn_t;
/* Called on the loop thread with each whole request; the handler answers
 * with gs__http_conn_respond exactly once, now or later (req stays valid
 * until then). */
typedef void (*gs__http_handler_fn)(void *ctx, gs__http_conn_t *c,
                                    gs__http_request_t *req);

typedef struct gs__http_listener_s {
  /* set by the caller before gs__http_listen */
  gs__http_handler_fn handler;
  void *ctx;
  size_t max_body;  /* a larger body is answered 413 */
  size_t user_size; /* bytes per connection for the handler (conn_user) */
  bool reuseport;   /* SO_REUSEPORT: several loops share the port */
  /* the listener's own */
  uv_tcp_t tcp;
  unsigned port; /* bound */
  bool listening, draining;
  gs__http_conn_t *conns;
  size_t n_conns;
} gs__http_listener_t;

/* Binds host:port (0: any free port, then l->port) and accepts. The handle
 * is initialized even on failure: close it with gs__http_listener_close. */
int gs__http_listen(uv_loop_t *loop, gs__http_listener_t *l, const char *host,
                    unsigned port, gs_error_t *err);
/* Stops accepting; each connection is answered once more (a request in
 * flight, or the next one a client sends) with Connection: close, then
 * closes. l->n_conns reaches 0 when all did. Closing idle connections at
 * once would race clients that are sending their next request. */
void gs__http_listener_drain(gs__http_listener_t *l);
/* Closes the connections with no request in progress. */
void gs__http_listener_close_idle(gs__http_listener_t *l);
/* Drains and closes every connection now, answered or not. */
void gs__http_listener_close(gs__http_listener_t *l);
/* Sends resp (taking its body) for the connection's current request. */
void gs__http_conn_respond(gs__http_conn_t *c, gs__http_response_t *resp);
/* Whether the peer left (its FIN or a reset is waiting in the socket) or
 * the connection is closing: an answer now reaches nobody. A peer that
 * only shut down its sending side counts as left. */
bool gs__http_conn_gone(const gs__http_conn_t *c);
/* The listener's user_size bytes for this connection (zeroed at accept). */
void *gs__http_conn_user(gs__http_conn_t *c);
gs__http_listener_t *gs__http_conn_listener(gs__http_conn_t *c);
/* uv_tcp_init + bind + listen; the handle is initialized even on failure.
 * reuseport: SO_REUSEPORT before bind (listeners of one user on one port
 * share its connections). */
int gs__tcp_listen(uv_loop_t *loop, uv_tcp_t *server, const char *host,
                   unsigned port, bool reuseport, uv_connection_cb cb,
                   unsigned *bound_port, gs_error_t *err);

/* ---- HTTP response reader (http_client.c) -------------------------------- */

/* One response at a time, bytes in (no sockets): status, the headers a
 * proxy carries on, the body under a hard limit. The one reader of the
 * router's upstream connections, perf and the CLI. */
typedef struct gs__http_reply_s {
  http_parser parser;
  int status;
  gs_buf_t body;
  bool truncate; /* past the limit: keep the first bytes, not an error */
  char content_type[128];
  long long infer_header_len; /* -1 absent */
  bool complete, keep_alive;
  bool got_bytes; /* any byte of the response came */
  int error;      /* GS_EPARSE, GS_ELIMIT, GS_ENOMEM once unusable */
  char field[48]; /* header name being read, lower case, truncated */
  size_t field_len;
  int header; /* which wanted header the value belongs to */
  char value[128];
  size_t value_len;
} gs__http_reply_t;

/* A reader whose body holds at most the limit's bytes (max: 0 for the
 * table's value). */
void gs__http_reply_init(gs__http_reply_t *r, gs_limit_t limit, size_t max);
/* Ready for the next response; keeps the body's memory. */
void gs__http_reply_reset(gs__http_reply_t *r);
/* The body's limit from now on (max bytes), and whether bytes past it are
 * dropped (truncate) rather than an error. */
void gs__http_reply_limit(gs__http_reply_t *r, size_t max, bool truncate);
void gs__http_reply_release(gs__http_reply_t *r);
/* Feeds bytes (len 0: the peer closed, which ends a body that runs to the
 * close). Returns how many were used: it stops after a whole response
 * (r->complete) or on an error (r->error). */
size_t gs__http_reply_feed(gs__http_reply_t *r, const char *data, size_t len);
/* The error as a message naming what went wrong ("" context): GS_OK when
 * none. */
int gs__http_reply_error(const gs__http_reply_t *r, gs_error_t *err);
/* Moves the whole response into resp (body NULL when empty; content_type
 * points into r: copy it if r is reused). */
void gs__http_reply_take(gs__http_reply_t *r, gs__http_response_t *resp);

/* ---- HTTP client connections and keep-alive pools (http_client.c) -------- */

typedef enum {
  GS__HTTP_OK = 0,
  GS__HTTP_CONNECT, /* failed before any response byte: safe to retry */
  GS__HTTP_BROKEN,  /* failed after response bytes */
  GS__HTTP_TIMEOUT,
  GS__HTTP_TOOBIG, /* the response is over the limit */
  GS__HTTP_LOCAL   /* the request could not be formed (URL too long) */
} gs__http_result_t;

typedef struct gs__http_pool_s gs__http_pool_t;
typedef struct gs__http_client_s gs__http_client_t;
typedef struct gs__http_call_s gs__http_call_t;

/* One request on a pool's connection. */
struct gs__http_call_s {
  /* in (borrowed until done) */
  const char *method, *url;
  const char *body;
  size_t body_len;
  long long infer_header_len; /* -1: none */
  unsigned timeout_ms;        /* connect and answer */
  void (*done)(gs__http_call_t *call, gs__http_result_t result);
  void *data;
  /* out: the response, its body the caller's after done */
  gs__http_response_t resp;
  char content_type[128];
  bool got_bytes;
  /* internal */
  gs__http_client_t *conn;
};

/* Keep-alive connections to one address, on one loop, one request at a
 * time each. Each open connection holds the owner (hold/drop), so that an
 * owner embedding the pool outlives its connections. */
struct gs__http_pool_s {
  uv_loop_t *loop;
  struct sockaddr_storage addr;
  unsigned max_idle; /* connections kept waiting; more are closed */
  gs_limit_t limit;  /* a response's body */
  void *owner;
  void (*hold)(void *owner);
  void (*drop)(void *owner);
  bool closed; /* connections are no longer kept */
  gs__http_client_t *idle;
  unsigned n_idle;
};

/* Sets up pool (caller memory) for loop and addr; nothing opens yet. */
void gs__http_pool_init(gs__http_pool_t *pool, uv_loop_t *loop,
                        const struct sockaddr *addr, unsigned max_idle,
                        gs_limit_t limit);
/* Sends call on an idle connection of pool or a new one; call->done runs
 * later on the pool's loop, exactly once (also when sending fails at
 * once). A connection whose answer was whole and kept alive goes back to
 * the pool. */
void gs__http_pool_send(gs__http_pool_t *pool, gs__http_call_t *call);
/* Closes the idle connections and keeps no more (busy ones close when
 * their call ends). */
void gs__http_pool_close(gs__http_pool_t *pool);
/* Frees call->resp's body. */
void gs__http_call_release(gs__http_call_t *call);

#endif
