/* HTTP/1.1 client connections on libuv, kept alive in a pool per address
 * and loop, one request at a time each; the response is read by the one
 * response reader (http_reply.c). A call knows whether any response byte
 * came back, which decides whether the caller may retry it elsewhere; a
 * per-connection timer bounds connect and answer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"

#define READ_CHUNK (64u << 10)

struct gs__http_client_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_timer_t timer;
  uv_write_t write;
  gs__http_pool_t *pool; /* its owner held while the connection lives */
  gs__http_reply_t reply;
  gs_buf_t head;         /* the request's head, formatted */
  gs__http_call_t *call; /* the call on it; NULL when idle */
  bool closing, reusable;
  bool writing;     /* write in flight: the connection may not be reused */
  unsigned handles; /* open libuv handles: freed at 0 */
  gs__http_client_t *next; /* the pool's idle list */
  char rbuf[READ_CHUNK];
};

static void conn_close(gs__http_client_t *c);
static void pool_keep(gs__http_pool_t *pool, gs__http_client_t *c);
static void fail_soon(uv_loop_t *loop, gs__http_call_t *call,
                      gs__http_result_t result);

static void on_handle_closed(uv_handle_t *h) {
  gs__http_client_t *c = h->data;
  if (--c->handles > 0)
    return;
  gs__http_pool_t *pool = c->pool;
  gs__http_reply_release(&c->reply);
  gs_buf_free(&c->head);
  free(c);
  if (pool->drop)
    pool->drop(pool->owner); /* may free the pool: last */
}

/* Ends c's call with result (c is closed unless it stays reusable). */
static void conn_finish(gs__http_client_t *c, gs__http_result_t result) {
  gs__http_call_t *call = c->call;
  gs__http_pool_t *pool = c->pool;
  c->call = NULL;
  uv_timer_stop(&c->timer);
  if (call) {
    call->got_bytes = c->reply.got_bytes;
    if (result == GS__HTTP_OK) {
      gs__http_reply_take(&c->reply, &call->resp);
      snprintf(call->content_type, sizeof call->content_type, "%s",
               c->reply.content_type);
      call->resp.content_type =
          call->content_type[0] ? call->content_type : NULL;
    }
  }
  if (result != GS__HTTP_OK || !c->reusable || c->writing || pool->closed ||
      pool->n_idle >= pool->max_idle)
    conn_close(c);
  else
    pool_keep(pool, c);
  if (call) {
    call->conn = NULL;
    call->done(call, result);
  }
}

static void conn_fail(gs__http_client_t *c, gs__http_result_t connect_result) {
  if (!c->call) {
    conn_close(c);
    return;
  }
  conn_finish(c, c->reply.got_bytes ? GS__HTTP_BROKEN : connect_result);
}

static void conn_close(gs__http_client_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  gs__http_pool_t *pool = c->pool;
  for (gs__http_client_t **p = &pool->idle; *p; p = &(*p)->next)
    if (*p == c) { /* out of the idle list */
      *p = c->next;
      pool->n_idle--;
      break;
    }
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- reading the answer ------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  gs__http_client_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  gs__http_client_t *c = st->data;
  if (nread == 0)
    return;
  if (!c->call) { /* closed while idle, or bytes nobody asked for */
    conn_close(c);
    return;
  }
  if (nread == UV_EOF && c->reply.got_bytes) /* ends a body that runs to */
    gs__http_reply_feed(&c->reply, NULL, 0); /* the close */
  if (nread < 0) {
    c->reusable = false;
    if (c->reply.complete)
      conn_finish(c, GS__HTTP_OK);
    else
      conn_fail(c, GS__HTTP_CONNECT);
    return;
  }
  size_t n = gs__http_reply_feed(&c->reply, buf->base, (size_t)nread);
  if (c->reply.complete) {
    /* bytes beyond the response, or the server closes: do not reuse */
    c->reusable = c->reply.keep_alive && n == (size_t)nread;
    conn_finish(c, GS__HTTP_OK);
    return;
  }
  if (c->reply.error)
    conn_finish(c, c->reply.error == GS_ELIMIT ? GS__HTTP_TOOBIG
                                               : GS__HTTP_BROKEN);
}

/* ---- sending ------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t) {
  gs__http_client_t *c = t->data;
  if (c->call)
    conn_finish(c, GS__HTTP_TIMEOUT);
  else
    conn_close(c);
}

static void on_written(uv_write_t *w, int status) {
  gs__http_client_t *c = w->data;
  if (status == UV_ECANCELED)
    return; /* its handle is closing (c->closing, or the loop's end) */
  c->writing = false;
  if (status < 0 && c->call && !c->closing)
    conn_fail(c, GS__HTTP_CONNECT);
}

/* The call's head in c->head, formatted in one pass (this runs for every
 * proxied request); false when it does not fit the limit. */
static bool format_head(gs__http_client_t *c, const gs__http_call_t *call) {
  static const char fixed[] = " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Content-Length: \r\n"
                              "Inference-Header-Content-Length: \r\n\r\n";
  size_t most = strlen(call->method) + 1 + strlen(call->url) + sizeof fixed +
                2 * 20; /* two numbers */
  gs_buf_reset(&c->head);
  char *tail = gs_buf_reserve(&c->head, most);
  if (!tail)
    return false;
  int n = call->infer_header_len >= 0
              ? snprintf(tail, most + 1,
                         "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Length: %zu\r\n"
                         "Inference-Header-Content-Length: %lld\r\n\r\n",
                         call->method, call->url, call->body_len,
                         call->infer_header_len)
              : snprintf(tail, most + 1,
                         "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         call->method, call->url, call->body_len);
  if (n < 0 || (size_t)n > most)
    return false;
  gs_buf_commit(&c->head, (size_t)n);
  return true;
}

/* Writes c->call's head and body and waits for the answer. */
static void conn_start(gs__http_client_t *c) {
  gs__http_call_t *call = c->call;
  gs__http_reply_reset(&c->reply);
  uv_buf_t bufs[2] = {
      uv_buf_init(c->head.data, (unsigned)c->head.len),
      uv_buf_init((char *)call->body, (unsigned)call->body_len)};
  c->write.data = c;
  int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs,
                    call->body_len ? 2 : 1, on_written);
  c->writing = rc == 0;
  if (rc == 0)
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc != 0 && rc != UV_EALREADY) { /* answered later, never in here */
    c->call = NULL;
    call->conn = NULL;
    conn_close(c);
    fail_soon(c->pool->loop, call, GS__HTTP_CONNECT);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, call->timeout_ms, 0);
}

static void on_connected(uv_connect_t *req, int status) {
  gs__http_client_t *c = req->data;
  if (c->closing || status == UV_ECANCELED)
    return; /* its handle is closing (c->closing, or the loop's end) */
  if (status < 0) {
    conn_fail(c, GS__HTTP_CONNECT);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  conn_start(c);
}

/* A new connection of pool, not yet connecting (no socket yet). */
static gs__http_client_t *conn_alloc(gs__http_pool_t *pool) {
  gs__http_client_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->pool = pool;
  if (pool->hold)
    pool->hold(pool->owner);
  gs__http_reply_init(&c->reply, pool->limit, 0);
  gs_buf_init(&c->head, GS_LIMIT_HTTP_REQUEST_HEAD);
  uv_tcp_init(pool->loop, &c->tcp);
  uv_timer_init(pool->loop, &c->timer);
  c->tcp.data = c->timer.data = c->connect.data = c;
  c->handles = 2;
  return c;
}

static int conn_connect(gs__http_client_t *c, unsigned timeout_ms) {
  int rc = uv_tcp_connect(&c->connect, &c->tcp,
                          (struct sockaddr *)&c->pool->addr, on_connected);
  if (rc == 0)
    uv_timer_start(&c->timer, on_timeout, timeout_ms, 0);
  return rc;
}

static void pool_keep(gs__http_pool_t *pool, gs__http_client_t *c) {
  c->next = pool->idle;
  pool->idle = c;
  pool->n_idle++;
}

typedef struct fail_timer_s {
  uv_timer_t timer;
  gs__http_call_t *call;
  gs__http_result_t result;
} fail_timer_t;

static void fail_soon_cb(uv_timer_t *t) {
  fail_timer_t *ft = (fail_timer_t *)t;
  gs__http_call_t *call = ft->call;
  gs__http_result_t result = ft->result;
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
  call->done(call, result);
}

/* done must not run inside gs__http_pool_send: the caller is mid-way. */
static void fail_soon(uv_loop_t *loop, gs__http_call_t *call,
                      gs__http_result_t result) {
  fail_timer_t *ft = malloc(sizeof *ft);
  if (!ft) {
    call->done(call, result); /* nothing better left */
    return;
  }
  uv_timer_init(loop, &ft->timer);
  ft->call = call;
  ft->result = result;
  uv_timer_start(&ft->timer, fail_soon_cb, 0, 0);
}

void gs__http_pool_init(gs__http_pool_t *pool, uv_loop_t *loop,
                        const struct sockaddr *addr, unsigned max_idle,
                        gs_limit_t limit) {
  memset(pool, 0, sizeof *pool);
  pool->loop = loop;
  memcpy(&pool->addr, addr,
         addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                     : sizeof(struct sockaddr_in));
  pool->max_idle = max_idle;
  pool->limit = limit;
}

void gs__http_pool_send(gs__http_pool_t *pool, gs__http_call_t *call) {
  call->got_bytes = false;
  memset(&call->resp, 0, sizeof call->resp);
  call->resp.infer_header_len = -1;
  call->content_type[0] = '\0';
  call->conn = NULL;
  gs__http_client_t *c = pool->idle;
  bool fresh = c == NULL;
  if (c) {
    pool->idle = c->next;
    pool->n_idle--;
    c->next = NULL;
  } else if (!(c = conn_alloc(pool))) {
    fail_soon(pool->loop, call, GS__HTTP_CONNECT);
    return;
  }
  if (!format_head(c, call)) {
    if (fresh)
      conn_close(c);
    else
      pool_keep(pool, c); /* fine for the next call */
    fail_soon(pool->loop, call, GS__HTTP_LOCAL);
    return;
  }
  c->call = call;
  call->conn = c;
  if (!fresh) {
    conn_start(c);
  } else if (conn_connect(c, call->timeout_ms) != 0) {
    c->call = NULL;
    call->conn = NULL;
    conn_close(c);
    fail_soon(pool->loop, call, GS__HTTP_CONNECT);
  } /* else on_connected starts it */
}

void gs__http_pool_close(gs__http_pool_t *pool) {
  pool->closed = true;
  while (pool->idle)
    conn_close(pool->idle);
}

void gs__http_call_release(gs__http_call_t *call) {
  gs__http_response_release(&call->resp);
}
