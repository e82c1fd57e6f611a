/* A gRPC client on net/h2's pump for the connection-layer tests
 * (test_net_h2, test_net_grpc_server): one call a connection over TCP or a
 * unix socket, its request a given framed message (or a generated one), its
 * answer's DATA and status gathered; it can also go mid-request (send_only)
 * or once the request is out (vanish). Include once, after cmocka.h. */
#ifndef GS_TESTS_GRPC_TEST_CLIENT_H
#define GS_TESTS_GRPC_TEST_CLIENT_H

#include "net/grpc.h"
#include "net/h2.h"

#define GS_TEST_CLIENT_PATH "/test.Echo/Unary"

/* One call; what the test set is read, the rest is the client's. */
typedef struct client_s {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  const char *sock;         /* a unix socket's path instead of a port */
  const char *path;         /* NULL: GS_TEST_CLIENT_PATH */
  const char *content_type; /* NULL: application/grpc */
  uv_connect_t connect;
  uv_timer_t timer;
  uv_timer_t deadline; /* a stuck call fails */
  gs_h2_t h2;
  const uint8_t *msg; /* framed request, msg_len bytes */
  size_t msg_len, sent;
  size_t send_only;  /* > 0: send this much, then vanish */
  bool vanish;       /* close the connection once the request is out */
  bool small_buffer; /* a small socket send buffer: writes queue */
  gs_buf_t answer;   /* the response's DATA */
  gs__grpc_answer_t a;
  bool done, failed, closed;
} client_t;

static void c_closed(uv_handle_t *h) {
  client_t *c = h->data;
  c->closed = true;
}

static void c_close(client_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->h)) {
    uv_close((uv_handle_t *)&c->h, c_closed);
    uv_close((uv_handle_t *)&c->timer, NULL);
    uv_close((uv_handle_t *)&c->deadline, NULL);
  }
}

static void c_flush(client_t *c) {
  gs_error_t err;
  if (uv_is_closing((uv_handle_t *)&c->h))
    return;
  if (gs_h2_flush(&c->h2, &err) != GS_OK) {
    c->failed = true;
    c_close(c);
  } else if (c->vanish && c->sent == c->msg_len && c->h2.writes == 0) {
    c_close(c);
  }
}

static void c_written(gs_h2_t *h, int status) {
  client_t *c = h->data;
  if (status < 0)
    c->failed = true;
  else
    c_flush(c);
}

static ssize_t c_body(nghttp2_session *session, int32_t id, uint8_t *buf,
                      size_t length, uint32_t *flags,
                      nghttp2_data_source *source, void *user) {
  client_t *c = user;
  size_t end = c->send_only ? c->send_only : c->msg_len;
  size_t n = end - c->sent < length ? end - c->sent : length;
  (void)session;
  (void)id;
  (void)source;
  if (n == 0 && c->send_only)
    return NGHTTP2_ERR_DEFERRED; /* the rest never comes */
  if (c->msg)
    memcpy(buf, c->msg + c->sent, n);
  else
    memset(buf, 0, n); /* a generated message: zeros after the prefix */
  if (!c->msg && c->sent < GS__GRPC_PREFIX) {
    uint8_t prefix[GS__GRPC_PREFIX];
    gs__grpc_frame_prefix(prefix, c->msg_len - GS__GRPC_PREFIX);
    for (size_t i = c->sent; i < GS__GRPC_PREFIX && i - c->sent < n; i++)
      buf[i - c->sent] = prefix[i];
  }
  c->sent += n;
  if (c->sent == c->msg_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static int c_header(nghttp2_session *s, const nghttp2_frame *frame,
                    const uint8_t *name, size_t nlen, const uint8_t *value,
                    size_t vlen, uint8_t flags, void *user) {
  client_t *c = user;
  (void)s;
  (void)frame;
  (void)flags;
  gs__grpc_answer_header(&c->a, name, nlen, value, vlen);
  return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t id,
                  const uint8_t *data, size_t len, void *user) {
  client_t *c = user;
  (void)s;
  (void)flags;
  (void)id;
  gs_buf_add(&c->answer, data, len);
  return 0;
}

static int c_stream_close(nghttp2_session *s, int32_t id, uint32_t code,
                          void *user) {
  client_t *c = user;
  (void)s;
  (void)id;
  gs__grpc_answer_end(&c->a, code);
  c->done = true;
  c_close(c);
  return 0;
}

static void c_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  client_t *c = stream->data;
  gs_error_t err;
  if (n < 0 ||
      (n > 0 && gs_h2_feed(&c->h2, buf->base, (size_t)n, &err) != GS_OK)) {
    c->failed = !c->done; /* the server went away before answering */
    c_close(c);
    return;
  }
  c_flush(c);
}

static void c_vanish(uv_timer_t *t) {
  c_close(t->data);
}

static void c_connected(uv_connect_t *req, int status) {
  client_t *c = req->data;
  static const gs_h2_config_t cfg = {.window = 1 << 20,
                                     .conn_window = 16 << 20};
  nghttp2_session_callbacks *cb;
  gs_error_t err;
  assert_int_equal(status, 0);
  assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
  nghttp2_session_callbacks_set_on_header_callback(cb, c_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_stream_close);
  assert_int_equal(
      gs_h2_init(&c->h2, (uv_stream_t *)&c->h, &cfg, cb, c, c_written, &err),
      GS_OK);
  nghttp2_session_callbacks_del(cb);
  c->h2.data = c;
  nghttp2_nv head[] = {
      GS_H2_NV(":method", "POST"),
      GS_H2_NV(":scheme", "http"),
      GS_H2_NV(":path", c->path ? c->path : GS_TEST_CLIENT_PATH),
      GS_H2_NV(":authority", "127.0.0.1"),
      GS_H2_NV("content-type",
               c->content_type ? c->content_type : "application/grpc"),
      GS_H2_NV("te", "trailers")};
  nghttp2_data_provider data = {.read_callback = c_body};
  assert_true(
      nghttp2_submit_request(c->h2.session, NULL, head, 6, &data, NULL) > 0);
  int small = 256 << 10;
  if (c->small_buffer)
    uv_send_buffer_size((uv_handle_t *)&c->h, &small);
  if (!c->sock)
    uv_tcp_nodelay(&c->h.tcp, 1);
  uv_read_start((uv_stream_t *)&c->h, gs_h2_alloc, c_read);
  c_flush(c);
  if (c->send_only)
    uv_timer_start(&c->timer, c_vanish, 100, 0);
}

static void stuck(uv_timer_t *t) {
  (void)t;
  fail_msg("the call did not end within 30 s");
}

/* One call to port on loop, run until the client's socket closed. */
static void call(uv_loop_t *loop, unsigned port, client_t *c) {
  gs_buf_init(&c->answer, GS_LIMIT_GRPC_MESSAGE);
  uv_timer_init(loop, &c->timer);
  uv_timer_init(loop, &c->deadline);
  c->h.tcp.data = c->timer.data = c->connect.data = c;
  if (c->sock) {
    uv_pipe_init(loop, &c->h.pipe, 0);
    uv_pipe_connect(&c->connect, &c->h.pipe, c->sock, c_connected);
  } else {
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", (int)port, &addr);
    uv_tcp_init(loop, &c->h.tcp);
    assert_int_equal(uv_tcp_connect(&c->connect, &c->h.tcp,
                                    (struct sockaddr *)&addr, c_connected),
                     0);
  }
  uv_timer_start(&c->deadline, stuck, 30000, 0);
  while (!c->closed)
    uv_run(loop, UV_RUN_ONCE);
  gs_h2_release(&c->h2);
}

#endif
