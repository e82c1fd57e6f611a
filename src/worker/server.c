/* The worker's network side on libuv: accepts connections, feeds their
 * bytes to the request reader, answers through the router, and runs infers
 * on libuv's thread pool. A connection reads one request at a time and
 * stops reading until it is answered, so pipelined requests are answered in
 * order and no connection buffers more than one request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "worker/grpc_int.h"
#include "worker/worker_int.h"

#define READ_CHUNK (64u << 10)

struct gs_worker_s {
  uv_loop_t loop;
  uv_tcp_t server;
  uv_async_t stop;
  gs__repo_t repo;
  size_t max_body;
  unsigned port;
  uv_tcp_t metrics_server; /* serves GET /metrics only */
  unsigned metrics_port;   /* 0: not listening */
  bool loop_ready;
  gs__grpc_server_t *grpc; /* NULL when gRPC is off */
};

typedef struct conn_s {
  uv_tcp_t tcp;
  gs_worker_t *w;
  gs__http_reader_t reader;
  char *pending; /* bytes read beyond the request being answered */
  size_t pending_len, pending_off;
  bool metrics_only; /* accepted on the metrics port */
  bool busy;    /* a request is being answered */
  bool closing; /* no more requests: shutting down or closed */
  bool closed;  /* the handle is closed */
  uv_shutdown_t shutdown;
  unsigned writes; /* writes in flight */
  gs__infer_job_t job;
} conn_t;

typedef struct write_s {
  uv_write_t req;
  conn_t *c;
  char head[512];
  char *body;
} write_t;

static void conn_feed(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_maybe_free(conn_t *c) {
  if (c->closed && !c->busy && c->writes == 0) {
    gs__http_reader_release(&c->reader);
    free(c->pending);
    free(c);
  }
}

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  c->closed = true;
  conn_maybe_free(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  (void)status;
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Closes once the writes queued are sent (a shutdown waits for them). */
static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status) {
  write_t *wr = (write_t *)req;
  conn_t *c = wr->c;
  free(wr->body);
  free(wr);
  c->writes--;
  if (status < 0)
    conn_close(c);
  conn_maybe_free(c);
}

/* Queues head + body (taking body) on the socket. */
static void conn_write(conn_t *c, const char *head, size_t head_len, char *body,
                       size_t body_len) {
  write_t *wr = calloc(1, sizeof *wr);
  if (!wr || head_len >= sizeof wr->head || c->closing) {
    free(wr);
    free(body);
    conn_close(c);
    return;
  }
  memcpy(wr->head, head, head_len);
  wr->c = c;
  wr->body = body;
  uv_buf_t bufs[2] = {uv_buf_init(wr->head, (unsigned)head_len),
                      uv_buf_init(body, (unsigned)body_len)};
  if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, body_len ? 2 : 1,
               on_written) != 0) {
    free(wr->body);
    free(wr);
    conn_close(c);
    return;
  }
  c->writes++;
}

/* Sends resp (taking its body) and readies the reader for the next
 * request; the caller feeds it (conn_feed's loop, or after_infer). */
static void conn_respond(conn_t *c, gs__http_response_t *resp,
                         bool keep_alive) {
  char head[512];
  int n = gs__http_response_head(resp, keep_alive, head, sizeof head);
  if (n > 0)
    conn_write(c, head, (size_t)n, resp->body, resp->body_len);
  else
    free(resp->body);
  resp->body = NULL;
  gs__http_response_release(resp);
  c->busy = false;
  if (!keep_alive || n <= 0) {
    conn_close(c);
    return;
  }
  gs__http_reader_next(&c->reader);
}

static void after_infer(gs__infer_job_t *job) {
  conn_t *c = job->data;
  gs__infer_job_finish(&c->job);
  if (c->closing) {
    gs__http_response_release(&c->job.resp);
    c->busy = false;
    conn_maybe_free(c);
    return;
  }
  conn_respond(c, &c->job.resp, c->job.req.keep_alive);
  conn_feed(c);
}

static void conn_error(conn_t *c) {
  gs__http_response_t resp = {.infer_header_len = -1};
  gs__http_response_error(&resp, c->reader.error_status,
                          c->reader.error_msg ? c->reader.error_msg
                                              : "bad request");
  c->busy = true;
  conn_respond(c, &resp, false);
}

/* Handles one complete request in c->reader. */
static void conn_dispatch(conn_t *c) {
  gs__http_response_t resp = {.infer_header_len = -1};
  bool keep_alive = c->reader.req.keep_alive;
  c->busy = true;
  memset(&c->job, 0, sizeof c->job);
  c->job.resp.infer_header_len = -1;
  if (c->metrics_only && strcmp(c->reader.req.url, "/metrics") != 0) {
    gs__http_response_error(&resp, 404, "the metrics port serves /metrics only");
  } else if (gs__route(&c->w->repo, &c->reader.req, &resp, &c->job) == 1) {
    c->job.data = c;
    if (gs__infer_submit(&c->w->loop, &c->job, after_infer) == 0)
      return;
    gs__infer_job_finish(&c->job);
    gs__http_response_error(&resp, 500, "cannot queue the inference");
  }
  conn_respond(c, &resp, keep_alive);
}

/* Parses buffered bytes until a request is complete or they run out. */
static void conn_feed(conn_t *c) {
  while (!c->busy && !c->closing) {
    if (c->reader.error_status) {
      conn_error(c);
      return;
    }
    if (c->reader.complete) {
      conn_dispatch(c);
      continue;
    }
    size_t left = c->pending_len - c->pending_off;
    if (left == 0)
      break;
    size_t n =
        gs__http_reader_feed(&c->reader, c->pending + c->pending_off, left);
    c->pending_off += n;
    if (c->reader.expect_continue && !c->reader.complete &&
        !c->reader.error_status) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      c->reader.expect_continue = false;
      conn_write(c, cont, sizeof cont - 1, NULL, 0);
    }
    if (!c->reader.complete && !c->reader.error_status && n < left)
      c->reader.error_status = 400;
  }
  if (c->pending_off == c->pending_len)
    c->pending_off = c->pending_len = 0;
  if (c->closing)
    return;
  if (c->busy)
    uv_read_stop((uv_stream_t *)&c->tcp);
  else
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  (void)suggested;
  if (c->pending_off && c->pending_off == c->pending_len)
    c->pending_off = c->pending_len = 0;
  char *grown = realloc(c->pending, c->pending_len + READ_CHUNK);
  if (!grown) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  c->pending = grown;
  *buf = uv_buf_init(grown + c->pending_len, READ_CHUNK);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  (void)buf;
  if (nread < 0) {
    if (nread == UV_EOF && !c->busy) {
      gs__http_reader_feed(&c->reader, NULL, 0);
      if (c->reader.error_status) {
        conn_error(c);
        return;
      }
    }
    conn_close(c);
    return;
  }
  c->pending_len += (size_t)nread;
  conn_feed(c);
}

static void on_connection(uv_stream_t *server, int status) {
  gs_worker_t *w = server->data;
  if (status < 0)
    return;
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->w = w;
  c->metrics_only = server == (uv_stream_t *)&w->metrics_server;
  gs__http_reader_init(&c->reader, w->max_body);
  uv_tcp_init(&w->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_stop(uv_async_t *a) {
  gs_worker_t *w = a->data;
  uv_stop(&w->loop);
}

static int listen_on(gs_worker_t *w, uv_tcp_t *server, const char *host,
                     unsigned port, unsigned *bound_port, gs_error_t *err) {
  struct sockaddr_storage addr;
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr) != 0)
    return gs_error_set(err, GS_EINVAL, "'%s' is not an IPv4 or IPv6 address",
                        host);
  uv_tcp_init(&w->loop, server);
  server->data = w;
  int rc = uv_tcp_bind(server, (struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)server, 511, on_connection);
  if (rc != 0)
    return gs_error_set(err, GS_ESYSTEM, "cannot listen on %s port %u: %s",
                        host, port, uv_strerror(rc));
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(server, (struct sockaddr *)&bound, &len);
  *bound_port = ntohs(bound.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&bound)->sin6_port
                      : ((struct sockaddr_in *)&bound)->sin_port);
  return GS_OK;
}

int gs_worker_create(gs_worker_t **out, const gs_worker_options_t *opts,
                     gs_error_t *err) {
  *out = NULL;
  if (!opts->model_repository || opts->port > 65535)
    return gs_error_set(err, GS_EINVAL,
                        "a model repository and a port in "
                        "0..65535 are needed");
  gs_worker_t *w = calloc(1, sizeof *w);
  if (!w)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  w->max_body = opts->max_body_bytes ? opts->max_body_bytes : 64u << 20;
  int rc = uv_loop_init(&w->loop);
  if (rc != 0) {
    free(w);
    return gs_error_set(err, GS_ESYSTEM, "uv_loop_init: %s", uv_strerror(rc));
  }
  w->loop_ready = true;
  uv_async_init(&w->loop, &w->stop, on_stop);
  w->stop.data = w;
  rc = gs__repo_open(&w->repo, opts->model_repository, err);
  const char *host = opts->host ? opts->host : "127.0.0.1";
  if (rc == GS_OK)
    rc = listen_on(w, &w->server, host, opts->port, &w->port, err);
  if (rc == GS_OK && opts->metrics)
    rc = listen_on(w, &w->metrics_server, host, opts->metrics_port,
                   &w->metrics_port, err);
  if (rc == GS_OK && opts->grpc)
    rc = gs__grpc_listen(&w->grpc, &w->loop, &w->repo,
                         opts->host ? opts->host : "127.0.0.1", opts->grpc_port,
                         err);
  if (rc != GS_OK) {
    gs_worker_destroy(w);
    return rc;
  }
  *out = w;
  return GS_OK;
}

int gs_worker_run(gs_worker_t *w, gs_error_t *err) {
  int rc = uv_run(&w->loop, UV_RUN_DEFAULT);
  (void)rc;
  (void)err;
  return GS_OK;
}

void gs_worker_stop(gs_worker_t *w) {
  uv_async_send(&w->stop);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  if (h->type == UV_TCP && h->data && h->data != arg) {
    conn_t *c = h->data;
    c->closing = true;
    uv_close(h, on_closed);
  } else {
    uv_close(h, NULL);
  }
}

void gs_worker_destroy(gs_worker_t *w) {
  if (!w)
    return;
  if (w->loop_ready) {
    gs__batcher_flush(&w->repo);
    gs__grpc_close(w->grpc); /* its connections are not close_any's */
    uv_walk(&w->loop, close_any, w);
    uv_run(&w->loop, UV_RUN_DEFAULT); /* lets in-flight infers finish */
    uv_loop_close(&w->loop);
  }
  gs__grpc_destroy(w->grpc);
  gs__repo_close(&w->repo);
  free(w);
}

unsigned gs_worker_port(const gs_worker_t *w) {
  return w->port;
}

unsigned gs_worker_metrics_port(const gs_worker_t *w) {
  return w->metrics_port;
}

unsigned gs_worker_grpc_port(const gs_worker_t *w) {
  return gs__grpc_port(w->grpc);
}

size_t gs_worker_model_count(const gs_worker_t *w) {
  return w->repo.n;
}

bool gs_worker_model(const gs_worker_t *w, size_t i, const char **name,
                     bool *ready, const char **reason) {
  if (i >= w->repo.n)
    return false;
  const gs__model_entry_t *m = &w->repo.models[i];
  *name = m->name;
  *ready = m->state == GS__MODEL_READY;
  *reason = m->reason;
  return true;
}
