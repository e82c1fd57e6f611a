/* HTTP/1.1 server connections on libuv, shared by the worker and the serve
 * router's front: accepts, feeds bytes to the request reader and hands each
 * whole request to the listener's handler, which answers now or later. A
 * connection reads one request at a time and stops reading until it is
 * answered, so pipelined requests are answered in order and no connection
 * buffers more than one request. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/http.h"

#define READ_CHUNK (64u << 10)

struct gs__http_conn_s {
  uv_tcp_t tcp;
  gs__http_listener_t *l;
  gs__http_conn_t *next, *prev; /* the listener's list */
  gs__http_reader_t reader;
  gs_buf_t pending;   /* bytes read, not yet fed to the reader */
  size_t pending_off; /* of them, fed */
  bool busy;          /* a request is being answered */
  bool closing;       /* no more requests: shutting down or closed */
  bool closed;        /* the handle is closed */
  bool in_feed;    /* conn_feed is on the stack: respond() must not recurse */
  bool keep_alive; /* the current request's, read before the handler may
                      move the request away (the worker's infer jobs do) */
  gs__encoding_t accept_encoding; /* the current request's, likewise */
  uv_shutdown_t shutdown;
  unsigned writes;    /* writes in flight */
  max_align_t user[]; /* l->user_size bytes for the handler */
};

typedef struct write_s {
  uv_write_t req;
  gs__http_conn_t *c;
  char head[512];
  char *body;
} write_t;

static void conn_feed(gs__http_conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_maybe_free(gs__http_conn_t *c) {
  if (!c->closed || c->busy || c->writes != 0)
    return;
  gs__http_listener_t *l = c->l;
  if (c->prev)
    c->prev->next = c->next;
  else
    l->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  l->n_conns--;
  gs__http_reader_release(&c->reader);
  gs_buf_free(&c->pending);
  free(c);
}

static void on_closed(uv_handle_t *h) {
  gs__http_conn_t *c = h->data;
  c->closed = true;
  conn_maybe_free(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  gs__http_conn_t *c = req->data;
  (void)status;
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Closes once the writes queued are sent (a shutdown waits for them). */
static void conn_close(gs__http_conn_t *c) {
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
  gs__http_conn_t *c = wr->c;
  free(wr->body);
  free(wr);
  c->writes--;
  if (status < 0)
    conn_close(c);
  conn_maybe_free(c);
}

/* Queues head + body (taking body) on the socket. */
static void conn_write(gs__http_conn_t *c, const char *head, size_t head_len,
                       char *body, size_t body_len) {
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

/* Compresses a successful answer as the request's Accept-Encoding asked
 * (the reader keeps it for infer requests only); errors go plain, as
 * Triton sends them and its clients read them. On failure the body goes
 * as it is (a server may always answer identity). */
static void response_encode(gs__http_response_t *resp, gs__encoding_t e) {
  gs_buf_t out;
  gs_error_t err;
  if (e == GS__ENC_IDENTITY || resp->status != 200 || !resp->body_len ||
      resp->content_encoding)
    return;
  gs_buf_init(&out, GS_LIMIT_COMPRESSED);
  if (gs__compress(e, resp->body, resp->body_len, &out, &err) != GS_OK) {
    gs_buf_free(&out);
    return;
  }
  free(resp->body);
  resp->body = gs_buf_take(&out, &resp->body_len);
  resp->content_encoding = gs__encoding_name(e);
}

void gs__http_conn_respond(gs__http_conn_t *c, gs__http_response_t *resp) {
  bool keep_alive = c->keep_alive && !c->l->draining;
  if (c->closing) { /* the peer left meanwhile: nobody to answer */
    gs__http_response_release(resp);
    c->busy = false;
    conn_maybe_free(c);
    return;
  }
  response_encode(resp, c->accept_encoding);
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
  if (!c->in_feed)
    conn_feed(c);
}

void *gs__http_conn_user(gs__http_conn_t *c) {
  return c->user;
}

/* A busy connection is not read (pipelined requests wait in the socket),
 * so a peer that left is seen by peeking: 0 bytes is its FIN. */
bool gs__http_conn_gone(const gs__http_conn_t *c) {
  uv_os_fd_t fd;
  char byte;
  if (c->closing)
    return true;
  if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0)
    return false;
  ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 ||
         (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

gs__http_listener_t *gs__http_conn_listener(gs__http_conn_t *c) {
  return c->l;
}

static void conn_error(gs__http_conn_t *c) {
  gs__http_response_t resp = {.infer_header_len = -1};
  gs__http_response_error(&resp, c->reader.error_status,
                          c->reader.error_msg ? c->reader.error_msg
                                              : "bad request");
  c->busy = true;
  c->keep_alive = false;
  c->accept_encoding = GS__ENC_IDENTITY;
  gs__http_conn_respond(c, &resp);
}

/* Parses buffered bytes until a request is complete or they run out; a
 * complete request goes to the handler, which may answer at once (then the
 * loop goes on with the next pipelined request). */
static void conn_feed(gs__http_conn_t *c) {
  c->in_feed = true;
  while (!c->busy && !c->closing) {
    if (c->reader.error_status) {
      conn_error(c);
      return;
    }
    if (c->reader.complete) {
      c->busy = true;
      c->keep_alive = c->reader.req.keep_alive;
      c->accept_encoding = c->reader.req.accept_encoding;
      c->l->handler(c->l->ctx, c, &c->reader.req);
      continue; /* answered at once, or later by respond() */
    }
    size_t left = c->pending.len - c->pending_off;
    if (left == 0)
      break;
    size_t n = gs__http_reader_feed(&c->reader,
                                    c->pending.data + c->pending_off, left);
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
  c->in_feed = false;
  if (c->pending_off == c->pending.len) {
    gs_buf_reset(&c->pending);
    c->pending_off = 0;
  }
  if (c->closing)
    return;
  if (c->busy)
    uv_read_stop((uv_stream_t *)&c->tcp);
  else
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  gs__http_conn_t *c = h->data;
  (void)suggested;
  if (c->pending_off && c->pending_off == c->pending.len) {
    gs_buf_reset(&c->pending);
    c->pending_off = 0;
  }
  char *tail = gs_buf_reserve(&c->pending, READ_CHUNK);
  *buf = uv_buf_init(tail, tail ? READ_CHUNK : 0); /* none: UV_ENOBUFS */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  gs__http_conn_t *c = s->data;
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
  gs_buf_commit(&c->pending, (size_t)nread);
  conn_feed(c);
}

/* A connection of l, its handle initialized, not yet connected to a
 * socket. */
static gs__http_conn_t *conn_new(gs__http_listener_t *l) {
  gs__http_conn_t *c = calloc(1, sizeof *c + l->user_size);
  if (!c)
    return NULL;
  c->l = l;
  c->next = l->conns;
  if (l->conns)
    l->conns->prev = c;
  l->conns = c;
  l->n_conns++;
  gs__http_reader_init(&c->reader, l->max_body);
  gs_buf_init(&c->pending, GS_LIMIT_HTTP_READ_AHEAD);
  uv_tcp_init(l->tcp.loop, &c->tcp);
  c->tcp.data = c;
  return c;
}

/* rc: the accept's; the connection reads, or closes when it failed. */
static void conn_begin(gs__http_conn_t *c, int rc) {
  if (rc != 0) {
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_connection(uv_stream_t *server, int status) {
  gs__http_listener_t *l = server->data;
  if (status < 0)
    return;
  gs__http_conn_t *c = conn_new(l);
  if (c)
    conn_begin(c, uv_accept(server, (uv_stream_t *)&c->tcp));
}

/* Takes the connections the kernel completed but the loop has not accepted
 * yet: closing the listener would reset them (with SO_REUSEPORT they do
 * not move to the other listeners of the port either). Each is answered
 * once, as every draining connection is. */
static void accept_queued(gs__http_listener_t *l) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&l->tcp, &fd) != 0)
    return;
  for (;;) {
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0 && (errno == ECONNABORTED || errno == EINTR))
      continue; /* that one is gone; others may wait */
    if (cfd < 0)
      return; /* none left (EAGAIN), or no descriptor to take it with */
    gs__http_conn_t *c = conn_new(l);
    if (!c) {
      close(cfd);
      continue;
    }
    int rc = uv_tcp_open(&c->tcp, cfd);
    if (rc != 0)
      close(cfd);
    conn_begin(c, rc);
  }
}

int gs__tcp_listen(uv_loop_t *loop, uv_tcp_t *server, const char *host,
                   unsigned port, bool reuseport, uv_connection_cb cb,
                   unsigned *bound_port, gs_error_t *err) {
  struct sockaddr_storage addr = {0};
  bool parsed =
      uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr) == 0 ||
      uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr) == 0;
  /* Initialized first, whatever happens next: the caller closes it. With a
   * family the socket exists now, so SO_REUSEPORT can be set before bind. */
  int rc = uv_tcp_init_ex(loop, server,
                          parsed && reuseport ? addr.ss_family : AF_UNSPEC);
  if (rc != 0) {
    uv_tcp_init(loop, server);
    return gs_error_set(err, GS_ESYSTEM, "cannot open a socket: %s",
                        uv_strerror(rc));
  }
  if (!parsed)
    return gs_error_set(err, GS_EINVAL, "'%s' is not an IPv4 or IPv6 address",
                        host);
  if (reuseport) {
    uv_os_fd_t fd;
    int one = 1;
    rc = uv_fileno((uv_handle_t *)server, &fd);
    if (rc == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      rc = uv_translate_sys_error(errno);
    if (rc != 0)
      return gs_error_set(err, GS_ESYSTEM,
                          "cannot share %s port %u between router threads "
                          "(SO_REUSEPORT): %s",
                          host, port, uv_strerror(rc));
  }
  rc = uv_tcp_bind(server, (struct sockaddr *)&addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)server, 511, cb);
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

int gs__http_listen(uv_loop_t *loop, gs__http_listener_t *l, const char *host,
                    unsigned port, gs_error_t *err) {
  l->conns = NULL;
  l->n_conns = 0;
  l->draining = false;
  int rc = gs__tcp_listen(loop, &l->tcp, host, port, l->reuseport,
                          on_connection, &l->port, err);
  l->tcp.data = l;
  l->listening = true; /* the handle exists, even when listen failed */
  return rc;
}

/* No new connections; take_queued: those the kernel completed are served
 * first (a drain), not reset. */
static void stop_listening(gs__http_listener_t *l, bool take_queued) {
  l->draining = true;
  if (l->listening && !uv_is_closing((uv_handle_t *)&l->tcp)) {
    if (take_queued)
      accept_queued(l);
    uv_close((uv_handle_t *)&l->tcp, NULL);
  }
}

void gs__http_listener_drain(gs__http_listener_t *l) {
  stop_listening(l, true);
}

void gs__http_listener_close_idle(gs__http_listener_t *l) {
  for (gs__http_conn_t *c = l->conns; c; c = c->next)
    if (!c->busy)
      conn_close(c);
}

void gs__http_listener_close(gs__http_listener_t *l) {
  stop_listening(l, false);
  for (gs__http_conn_t *c = l->conns; c; c = c->next)
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
      c->closing = true;
      uv_read_stop((uv_stream_t *)&c->tcp);
      uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}
