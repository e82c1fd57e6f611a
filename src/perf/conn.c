/* gpuslice perf's client connections on libuv: TCP, writes that go out at
 * once when the socket takes them, and HTTP/1.1 answers read by the
 * network layer's response reader (net/http.h) on a kept-alive connection
 * (gRPC's HTTP/2 is conn_grpc.c). One request at a time per connection, as
 * perf_analyzer's clients. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf/perf_int.h"

typedef struct write_s {
  uv_write_t req;
  char *data;
} write_t;

void gs__perf_conn_fail(gs__perf_conn_t *c, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
  va_end(ap);
  c->err.code = code;
}

/* Reports a failure once, to the callback waiting: open or answer. */
static void report_failure(gs__perf_conn_t *c) {
  bool was_open = c->open, was_busy = c->busy;
  c->open = c->busy = false;
  if (!was_open && c->on_open)
    c->on_open(c, c->err.code ? c->err.code : GS_ESYSTEM);
  else if (was_busy)
    c->on_done(c, c->err.code ? c->err.code : GS_ESYSTEM);
}

int gs__perf_body_append(gs__perf_conn_t *c, const char *data, size_t len) {
  if (c->body.len + len > c->body_limit) {
    if (c->body_truncate) {
      len = c->body_limit - c->body.len;
    } else {
      gs__perf_conn_fail(c, GS_ELIMIT, "an answer is larger than %zu bytes",
                         c->body_limit);
      return GS_ELIMIT;
    }
  }
  if (gs_buf_add(&c->body, data, len) != GS_OK) {
    gs_error_t why;
    int rc = gs_buf_error(&c->body, &why);
    gs__perf_conn_fail(c, rc, "%s", why.msg);
    return rc;
  }
  return GS_OK;
}

static void on_written(uv_write_t *req, int status) {
  write_t *w = (write_t *)req;
  gs__perf_conn_t *c = req->data;
  free(w->data);
  free(w);
  if (status < 0 && !c->closing) {
    gs__perf_conn_fail(c, GS_ESYSTEM, "sending to the server: %s",
                       uv_strerror(status));
    report_failure(c);
    return;
  }
  if (status == 0 && c->busy && !c->t_sent)
    c->t_sent = gs__perf_now_ns();
}

int gs__perf_conn_write(gs__perf_conn_t *c, const uint8_t *data, size_t len) {
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &buf, 1);
  if (n == (int)len)
    return GS_OK;
  if (n < 0 && n != UV_EAGAIN) {
    gs__perf_conn_fail(c, GS_ESYSTEM, "sending to the server: %s",
                       uv_strerror(n));
    return GS_ESYSTEM;
  }
  size_t done = n > 0 ? (size_t)n : 0;
  write_t *w = malloc(sizeof *w);
  char *rest = malloc(len - done);
  if (!w || !rest) {
    free(w);
    free(rest);
    gs__perf_conn_fail(c, GS_ENOMEM, "out of memory");
    return GS_ENOMEM;
  }
  memcpy(rest, data + done, len - done);
  w->data = rest;
  w->req.data = c;
  buf = uv_buf_init(rest, (unsigned)(len - done));
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
    free(rest);
    free(w);
    gs__perf_conn_fail(c, GS_ESYSTEM, "sending to the server failed");
    return GS_ESYSTEM;
  }
  c->t_sent = 0; /* the write callback sets it */
  return GS_OK;
}

/* The reader's failure as perf's message. */
static int answer_failed(gs__perf_conn_t *c) {
  const gs__http_reply_t *r = &c->reply;
  if (r->error == GS_ELIMIT)
    gs__perf_conn_fail(c, GS_ELIMIT, "an answer is larger than %zu bytes",
                       c->body_limit);
  else if (r->error == GS_ENOMEM)
    gs__perf_conn_fail(c, GS_ENOMEM, "out of memory");
  else if (!c->err.code)
    gs__perf_conn_fail(c, GS_EPARSE, "malformed HTTP answer: %s",
                       http_errno_description(HTTP_PARSER_ERRNO(&r->parser)));
  return c->err.code;
}

static int http_read(gs__perf_conn_t *c, const char *data, size_t len) {
  if (!c->busy) {
    gs__perf_conn_fail(c, GS_EPARSE, "the server sent data unasked");
    return GS_EPARSE;
  }
  gs__http_reply_t *r = &c->reply;
  gs__http_reply_feed(r, data, len);
  if (r->complete) { /* one answer per read: no pipelining */
    c->status = r->status;
    if (r->body.len &&
        gs__perf_body_append(c, r->body.data, r->body.len) != GS_OK)
      return c->err.code;
    c->stale = !r->keep_alive;
    c->busy = false;
    c->on_done(c, GS_OK);
    return GS_OK;
  }
  return r->error ? answer_failed(c) : GS_OK;
}

static void alloc_buf(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char slab[65536]; /* one loop thread: reads never overlap */
  (void)h;
  (void)size;
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  gs__perf_conn_t *c = s->data;
  if (n == 0 || c->closing)
    return;
  if (n == UV_EOF && !c->busy) {
    c->stale = true; /* an idle connection closed: open it again on use */
    uv_read_stop(s);
    return;
  }
  if (n < 0) {
    gs__perf_conn_fail(c, GS_ESYSTEM, "the server closed the connection%s%s",
                       n == UV_EOF ? "" : ": ",
                       n == UV_EOF ? "" : uv_strerror((int)n));
    report_failure(c);
    return;
  }
  if (c->busy && !c->t_first)
    c->t_first = gs__perf_now_ns();
  int rc = c->grpc
               ? gs__perf_grpc_read(c, (const uint8_t *)buf->base, (size_t)n)
               : http_read(c, buf->base, (size_t)n);
  if (rc != GS_OK)
    report_failure(c);
}

static int send_now(gs__perf_conn_t *c, const gs__perf_req_t *req);

static void on_connect(uv_connect_t *req, int status) {
  gs__perf_conn_t *c = req->data;
  if (c->closing)
    return;
  if (status < 0 && c->pending)
    c->open = true; /* so that the request waiting is failed */
  if (status < 0) {
    gs__perf_conn_fail(c, GS_ESYSTEM, "cannot connect to %s: %s", c->authority,
                       uv_strerror(status));
    report_failure(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_read);
  if (rc == 0 && c->grpc && gs__perf_grpc_start(c) != GS_OK)
    rc = -1;
  if (rc != 0) {
    if (!c->err.code)
      gs__perf_conn_fail(c, GS_ESYSTEM, "cannot read from %s", c->authority);
    report_failure(c);
    return;
  }
  c->open = true;
  if (!c->pending) {
    c->on_open(c, GS_OK);
    return;
  }
  const gs__perf_req_t *pending = c->pending;
  c->pending = NULL;
  if (send_now(c, pending) != GS_OK)
    report_failure(c);
}

int gs__perf_conn_open(uv_loop_t *loop, const struct sockaddr *addr, bool grpc,
                       const char *authority, void *user,
                       gs__perf_conn_cb on_open, gs__perf_conn_cb on_done,
                       gs__perf_conn_t **out, gs_error_t *err) {
  gs__perf_conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  c->grpc = grpc;
  c->loop = loop;
  memcpy(&c->addr, addr,
         addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in));
  c->user = user;
  c->on_open = on_open;
  c->on_done = on_done;
  snprintf(c->authority, sizeof c->authority, "%s", authority);
  gs__http_reply_init(&c->reply, GS_LIMIT_PERF_ANSWER, 0);
  gs_buf_init(&c->body, GS_LIMIT_PERF_ANSWER);
  c->tcp.data = c;
  c->connect.data = c;
  uv_tcp_init(loop, &c->tcp);
  int rc = uv_tcp_connect(&c->connect, &c->tcp, addr, on_connect);
  if (rc != 0) {
    c->closing = true;
    gs__http_reply_release(&c->reply);
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return gs_error_set(err, GS_ESYSTEM, "cannot connect to %s: %s", authority,
                        uv_strerror(rc));
  }
  *out = c;
  return GS_OK;
}

static void on_closed(uv_handle_t *h);

/* The old socket is closed: connect again, the request waiting. */
static void on_reclosed(uv_handle_t *h) {
  gs__perf_conn_t *c = h->data;
  c->reconnecting = false;
  gs__perf_grpc_release(c);
  if (c->closing) {
    on_closed(h);
    return;
  }
  uv_tcp_init(c->loop, &c->tcp);
  int rc = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&c->addr,
                          on_connect);
  if (rc != 0) {
    gs__perf_conn_fail(c, GS_ESYSTEM, "cannot connect to %s: %s", c->authority,
                       uv_strerror(rc));
    c->pending = NULL;
    report_failure(c);
  }
}

int gs__perf_conn_send(gs__perf_conn_t *c, const gs__perf_req_t *req) {
  c->busy = true;
  c->complete = false;
  gs_buf_reset(&c->body);
  c->status = 0;
  c->message[0] = '\0';
  c->t_first = 0;
  c->t_start = gs__perf_now_ns();
  c->t_sent = c->t_start;
  if (!c->t_sched)
    c->t_sched = c->t_start;
  if (c->stale) { /* the wait for the new connection counts as latency */
    c->stale = false;
    c->reconnecting = true;
    c->pending = req;
    uv_close((uv_handle_t *)&c->tcp, on_reclosed);
    return GS_OK;
  }
  return send_now(c, req);
}

static int send_now(gs__perf_conn_t *c, const gs__perf_req_t *req) {
  if (c->grpc)
    return gs__perf_grpc_send(c, req);
  gs__http_reply_reset(&c->reply);
  gs__http_reply_limit(&c->reply, c->body_limit, c->body_truncate);
  int rc = gs__perf_conn_write(c, req->data, req->len);
  if (rc == GS_OK && c->t_sent)
    c->t_sent = gs__perf_now_ns();
  return rc;
}

static void on_closed(uv_handle_t *h) {
  gs__perf_conn_t *c = h->data;
  if (c->on_closed)
    c->on_closed(c);
  gs__perf_grpc_release(c);
  gs__http_reply_release(&c->reply);
  gs_buf_free(&c->body);
  free(c);
}

void gs__perf_conn_close(gs__perf_conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->reconnecting)
    return; /* on_reclosed finishes the close */
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

typedef struct fetch_s {
  const gs__perf_req_t *req;
  int rc;
  bool done;
} fetch_t;

static void fetch_done(gs__perf_conn_t *c, int rc) {
  fetch_t *f = c->user;
  f->rc = rc;
  f->done = true;
}

static void fetch_open(gs__perf_conn_t *c, int rc) {
  fetch_t *f = c->user;
  if (rc == GS_OK)
    rc = gs__perf_conn_send(c, f->req);
  if (rc != GS_OK)
    fetch_done(c, rc);
}

/* The answer's body, or for a failed gRPC call its message. */
static char *take_body(gs__perf_conn_t *c, size_t *len) {
  if (c->grpc && c->status != 0) {
    gs_buf_free(&c->body);
    char *body = strdup(c->message);
    *len = body ? strlen(body) : 0;
    return body;
  }
  return gs_buf_take(&c->body, len);
}

int gs__perf_fetch(uv_loop_t *loop, const struct sockaddr *addr, bool grpc,
                   const char *authority, const gs__perf_req_t *req,
                   int *status, char **body, size_t *len, gs_error_t *err) {
  fetch_t f = {req, GS_OK, false};
  gs__perf_conn_t *c;
  int rc = gs__perf_conn_open(loop, addr, grpc, authority, &f, fetch_open,
                              fetch_done, &c, err);
  if (rc != GS_OK)
    return rc;
  c->body_limit = GS__PERF_MAX_BODY;
  while (!f.done && uv_run(loop, UV_RUN_ONCE))
    ;
  rc = f.done ? f.rc : GS_ESYSTEM;
  if (rc != GS_OK) {
    *err = c->err;
    rc = err->code ? err->code : GS_ESYSTEM;
  } else {
    *status = c->status;
    *body = take_body(c, len);
    if (!*body)
      rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  gs__perf_conn_close(c);
  uv_run(loop, UV_RUN_DEFAULT);
  return rc;
}
