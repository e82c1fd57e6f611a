/* The router's HTTP/1.1 client side: keep-alive connections to each worker,
 * pooled per peer (per worker process and router loop), one request at a
 * time each. A request knows whether
 * any response byte came back, which decides whether it may be retried on
 * another worker; a per-connection timer bounds connect and answer. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

#define READ_CHUNK (64u << 10)
#define MAX_RESPONSE_BYTES (256u << 20)
#define MAX_IDLE_PER_PEER 256

struct gs__upconn_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_timer_t timer;
  uv_write_t write;
  gs__peer_t *peer; /* a reference */
  http_parser parser;
  gs__upreq_t *req; /* the request on it; NULL when idle */
  char field[48];   /* header name being read, lower case */
  size_t field_len;
  int header;       /* which wanted header the value belongs to */
  char value[128];
  size_t value_len;
  bool connected, complete, closing, reusable;
  bool writing; /* c->write in flight: the connection may not be reused */
  bool too_big; /* the response went over MAX_RESPONSE_BYTES */
  unsigned handles; /* open libuv handles: freed at 0 */
  gs__upconn_t *next; /* the peer's idle list */
  char rbuf[READ_CHUNK];
};

enum { H_OTHER = 0, H_CONTENT_TYPE, H_INFER_LEN };

static void conn_close(gs__upconn_t *c);
static void conn_start(gs__upconn_t *c);
static void fail_soon(gs__upreq_t *r, gs__up_result_t result);

static void on_handle_closed(uv_handle_t *h) {
  gs__upconn_t *c = h->data;
  if (--c->handles > 0)
    return;
  if (c->peer)
    gs__peer_unref(c->peer);
  free(c);
}

/* Ends c's request with result (c is closed unless it stays reusable). */
static void conn_finish(gs__upconn_t *c, gs__up_result_t result) {
  gs__upreq_t *r = c->req;
  c->req = NULL;
  uv_timer_stop(&c->timer);
  if (result != GS__UP_OK || !c->reusable || c->writing || c->peer->gone ||
      c->peer->n_idle >= MAX_IDLE_PER_PEER) {
    conn_close(c);
  } else {
    c->next = c->peer->idle;
    c->peer->idle = c;
    c->peer->n_idle++;
  }
  if (r) {
    r->conn = NULL;
    r->done(r, result);
  }
}

static void conn_fail(gs__upconn_t *c, gs__up_result_t connect_result) {
  if (!c->req) {
    conn_close(c);
    return;
  }
  conn_finish(c, c->req->got_bytes ? GS__UP_BROKEN : connect_result);
}

static void conn_close(gs__upconn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  for (gs__upconn_t **p = &c->peer->idle; *p; p = &(*p)->next)
    if (*p == c) { /* out of the idle list */
      *p = c->next;
      c->peer->n_idle--;
      break;
    }
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- response parsing ----------------------------------------------------
 */

static gs__upconn_t *conn_of(http_parser *p) {
  return p->data;
}

static void end_value(gs__upconn_t *c) {
  gs__upreq_t *r = c->req;
  c->value[c->value_len] = '\0';
  if (c->header == H_CONTENT_TYPE) {
    snprintf(r->content_type, sizeof r->content_type, "%s", c->value);
    r->resp.content_type = r->content_type;
  } else if (c->header == H_INFER_LEN) {
    char *end;
    long long v = strtoll(c->value, &end, 10);
    r->resp.infer_header_len = end != c->value && !*end && v >= 0 ? v : -1;
  }
  c->header = H_OTHER;
  c->value_len = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  gs__upconn_t *c = conn_of(p);
  if (c->value_len || c->header != H_OTHER)
    end_value(c);
  if (c->field_len == 0 && c->header == H_OTHER)
    c->field[0] = '\0';
  for (size_t i = 0; i < len && c->field_len + 1 < sizeof c->field; i++)
    c->field[c->field_len++] = (char)(at[i] | 0x20);
  c->field[c->field_len] = '\0';
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  gs__upconn_t *c = conn_of(p);
  if (c->field_len) {
    c->header = strcmp(c->field, "content-type") == 0 ? H_CONTENT_TYPE
                : strcmp(c->field, "inference-header-content-length") == 0
                    ? H_INFER_LEN
                    : H_OTHER;
    c->field_len = 0;
  }
  for (size_t i = 0; i < len && c->value_len + 1 < sizeof c->value; i++)
    c->value[c->value_len++] = at[i];
  return 0;
}

static int on_headers_complete(http_parser *p) {
  gs__upconn_t *c = conn_of(p);
  if (c->value_len || c->header != H_OTHER)
    end_value(c);
  c->req->resp.status = (int)p->status_code;
  if (p->content_length != ULLONG_MAX && p->content_length > 0 &&
      p->content_length <= MAX_RESPONSE_BYTES) {
    c->req->resp.body = malloc(p->content_length + 1);
    if (!c->req->resp.body)
      return -1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  gs__upconn_t *c = conn_of(p);
  gs__http_response_t *resp = &c->req->resp;
  if (resp->body_len + len > MAX_RESPONSE_BYTES) {
    c->too_big = true;
    return -1;
  }
  if (p->content_length == ULLONG_MAX || !resp->body) { /* chunked: grow */
    char *grown = realloc(resp->body, resp->body_len + len + 1);
    if (!grown)
      return -1;
    resp->body = grown;
  }
  memcpy(resp->body + resp->body_len, at, len);
  resp->body_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  gs__upconn_t *c = conn_of(p);
  c->complete = true;
  c->reusable = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings response_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  gs__upconn_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  gs__upconn_t *c = st->data;
  if (nread == 0)
    return;
  if (nread < 0 || !c->req) { /* closed, or bytes nobody asked for */
    conn_fail(c, GS__UP_CONNECT);
    return;
  }
  c->req->got_bytes = true;
  size_t n = http_parser_execute(&c->parser, &response_settings, buf->base,
                                 (size_t)nread);
  if (c->complete) {
    if (n != (size_t)nread) /* bytes beyond the response: do not reuse */
      c->reusable = false;
    conn_finish(c, GS__UP_OK);
    return;
  }
  if (n != (size_t)nread || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
    conn_finish(c, c->too_big ? GS__UP_TOOBIG : GS__UP_BROKEN);
}

/* ---- sending ----------------------------------------------------------------
 */

static void on_timeout(uv_timer_t *t) {
  gs__upconn_t *c = t->data;
  if (c->req)
    conn_finish(c, GS__UP_TIMEOUT);
  else
    conn_close(c);
}

static void on_written(uv_write_t *w, int status) {
  gs__upconn_t *c = w->data;
  if (status == UV_ECANCELED)
    return; /* its handle is closing (c->closing, or the serve's end) */
  c->writing = false;
  if (status < 0 && c->req && !c->closing)
    conn_fail(c, GS__UP_CONNECT);
}

/* Writes c->req's head and body and waits for the answer. */
static void conn_start(gs__upconn_t *c) {
  gs__upreq_t *r = c->req;
  http_parser_init(&c->parser, HTTP_RESPONSE);
  c->parser.data = c;
  c->complete = false;
  c->field_len = c->value_len = 0;
  c->header = H_OTHER;
  uv_buf_t bufs[2] = {uv_buf_init(r->head, (unsigned)r->head_len),
                      uv_buf_init((char *)r->body, (unsigned)r->body_len)};
  c->write.data = c;
  int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs,
                    r->body_len ? 2 : 1, on_written);
  c->writing = rc == 0;
  if (rc == 0)
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc != 0 && rc != UV_EALREADY) { /* answered later, never in here */
    c->req = NULL;
    r->conn = NULL;
    conn_close(c);
    fail_soon(r, GS__UP_CONNECT);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, r->timeout_ms, 0);
}

static void on_connected(uv_connect_t *req, int status) {
  gs__upconn_t *c = req->data;
  if (c->closing || status == UV_ECANCELED)
    return; /* its handle is closing (c->closing, or the serve's end) */
  if (status < 0) {
    conn_fail(c, GS__UP_CONNECT);
    return;
  }
  c->connected = true;
  uv_tcp_nodelay(&c->tcp, 1);
  conn_start(c);
}

static gs__upconn_t *conn_new(gs__peer_t *peer, unsigned timeout_ms) {
  gs__upconn_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->peer = peer;
  peer->refs++;
  uv_tcp_init(peer->rl->loop, &c->tcp);
  uv_timer_init(peer->rl->loop, &c->timer);
  c->tcp.data = c->timer.data = c->connect.data = c;
  c->handles = 2;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)peer->http_port, &addr);
  if (uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr,
                     on_connected) != 0) {
    conn_close(c);
    return NULL;
  }
  uv_timer_start(&c->timer, on_timeout, timeout_ms, 0);
  return c;
}

typedef struct fail_timer_s {
  uv_timer_t timer;
  gs__upreq_t *r;
  gs__up_result_t result;
} fail_timer_t;

static void fail_soon_cb(uv_timer_t *t) {
  fail_timer_t *ft = (fail_timer_t *)t;
  gs__upreq_t *r = ft->r;
  gs__up_result_t result = ft->result;
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
  r->done(r, result);
}

/* done must not run inside gs__upreq_send: the caller is mid-way. */
static void fail_soon(gs__upreq_t *r, gs__up_result_t result) {
  fail_timer_t *ft = malloc(sizeof *ft);
  if (!ft) {
    r->done(r, result); /* nothing better left */
    return;
  }
  uv_timer_init(r->peer->rl->loop, &ft->timer);
  ft->r = r;
  ft->result = result;
  uv_timer_start(&ft->timer, fail_soon_cb, 0, 0);
}

/* Appends to r->head; false when it does not fit (nothing is written past
 * the buffer: each step checks before the next one starts). */
static bool head_add(gs__upreq_t *r, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool head_add(gs__upreq_t *r, size_t *len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(r->head + *len, sizeof r->head - *len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof r->head - *len)
    return false;
  *len += (size_t)n;
  return true;
}

static int format_head(gs__upreq_t *r) {
  size_t len = 0;
  bool ok = head_add(r, &len,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Length: %zu\r\n",
                     r->method, r->url, r->body_len);
  if (ok && r->infer_header_len >= 0)
    ok = head_add(r, &len, "Inference-Header-Content-Length: %lld\r\n",
                  r->infer_header_len);
  if (!ok || !head_add(r, &len, "\r\n"))
    return -1;
  r->head_len = len;
  return 0;
}

void gs__upreq_send(gs__upreq_t *r, gs__peer_t *peer) {
  r->peer = peer;
  peer->refs++;
  r->got_bytes = false;
  memset(&r->resp, 0, sizeof r->resp);
  r->resp.infer_header_len = -1;
  r->content_type[0] = '\0';
  r->t_start = gs__serve_now_ns();
  if (format_head(r) != 0) {
    fail_soon(r, GS__UP_LOCAL);
    return;
  }
  gs__upconn_t *c = peer->idle;
  if (c) {
    peer->idle = c->next;
    peer->n_idle--;
    c->next = NULL;
    c->req = r;
    r->conn = c;
    conn_start(c);
    return;
  }
  c = conn_new(peer, r->timeout_ms);
  if (!c) {
    fail_soon(r, GS__UP_CONNECT);
    return;
  }
  c->req = r;
  r->conn = c;
}

void gs__upreq_release(gs__upreq_t *r) {
  gs__http_response_release(&r->resp);
  if (r->peer)
    gs__peer_unref(r->peer);
  r->peer = NULL;
}

void gs__upconn_close_idle(gs__peer_t *peer) {
  while (peer->idle)
    conn_close(peer->idle);
}
