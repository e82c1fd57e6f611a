/* The HTTP/2 pump (net/h2) and gRPC framing (net/grpc) on a real libuv loop
 * over loopback, both ends on the pump: a unary call is answered with its
 * message and grpc-status 0, also when the message is larger than the
 * stream window and the pump's high water mark, through small socket send
 * buffers (flow control and queued writes); a message larger than the 64 MiB
 * limit is answered RESOURCE_EXHAUSTED by the worker's gRPC server; a peer that
 * vanishes in the middle of a call is an error for the other end, never a crash
 * or a leak (ASan runs this test). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/grpc.h"
#include "net/h2.h"
#include "worker/grpc_int.h"

#define PATH "/test.Echo/Unary"

/* ---- an echo server on the pump ------------------------------------------ */

typedef struct server_s {
  uv_tcp_t listener;
  unsigned port;
  bool vanish; /* close the connection once a call's request is whole */
  int conns_open, streams_open, calls;
} server_t;

typedef struct sstream_s {
  struct sstream_s *next, *prev;
  gs_buf_t req;
  size_t sent;
} sstream_t;

typedef struct sconn_s {
  uv_tcp_t tcp;
  gs_h2_t h2;
  server_t *srv;
  sstream_t *streams; /* nghttp2_session_del calls no stream callback */
  bool closing;
} sconn_t;

static void sstream_free(sconn_t *c, sstream_t *st) {
  if (st->prev)
    st->prev->next = st->next;
  else
    c->streams = st->next;
  if (st->next)
    st->next->prev = st->prev;
  gs_buf_free(&st->req);
  free(st);
  c->srv->streams_open--;
}

static void sconn_closed(uv_handle_t *h) {
  sconn_t *c = h->data;
  gs_h2_release(&c->h2);
  while (c->streams)
    sstream_free(c, c->streams);
  c->srv->conns_open--;
  free(c);
}

static void sconn_close(sconn_t *c) {
  if (!c->closing) {
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, sconn_closed);
  }
}

static void sconn_flush(sconn_t *c) {
  gs_error_t err;
  if (!c->closing &&
      (gs_h2_flush(&c->h2, &err) != GS_OK || gs_h2_finished(&c->h2)))
    sconn_close(c);
}

static void sconn_written(gs_h2_t *h, int status) {
  sconn_t *c = h->data;
  if (status < 0)
    sconn_close(c);
  else
    sconn_flush(c);
}

static ssize_t echo_read(nghttp2_session *session, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  sstream_t *st = source->ptr;
  size_t n = st->req.len - st->sent;
  (void)user;
  n = n < length ? n : length;
  memcpy(buf, st->req.data + st->sent, n);
  st->sent += n;
  if (st->sent == st->req.len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (gs__grpc_submit_ok_trailer(session, id) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

static int s_begin(nghttp2_session *session, const nghttp2_frame *frame,
                   void *user) {
  sconn_t *c = user;
  sstream_t *st = calloc(1, sizeof *st);
  if (!st)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  gs_buf_init(&st->req, GS_LIMIT_GRPC_MESSAGE);
  st->next = c->streams;
  if (c->streams)
    c->streams->prev = st;
  c->streams = st;
  c->srv->streams_open++;
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, st);
  return 0;
}

static int s_data(nghttp2_session *session, uint8_t flags, int32_t id,
                  const uint8_t *data, size_t len, void *user) {
  sstream_t *st = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  (void)user;
  gs_buf_add(&st->req, data, len); /* a failure is answered at the end */
  return 0;
}

/* The request is whole: echo its message, or answer why not. */
static int s_frame(nghttp2_session *session, const nghttp2_frame *frame,
                   void *user) {
  sconn_t *c = user;
  if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
      (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
    return 0;
  sstream_t *st =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  c->srv->calls++;
  if (c->srv->vanish) {
    sconn_close(c);
    return 0;
  }
  const uint8_t *msg;
  size_t len;
  gs_error_t err = {0};
  int status =
      st->req.failed
          ? GS__GRPC_RESOURCE_EXHAUSTED
          : gs__grpc_frame_read((uint8_t *)st->req.data, st->req.len,
                                GS__GRPC_MAX_MESSAGE, &msg, &len, &err);
  if (status != GS__GRPC_OK)
    return gs__grpc_submit_status(session, frame->hd.stream_id, status,
                                  err.msg);
  nghttp2_nv head[] = {GS_H2_NV(":status", "200"),
                       GS_H2_NV("content-type", "application/grpc")};
  nghttp2_data_provider data = {.source.ptr = st, .read_callback = echo_read};
  return nghttp2_submit_response(session, frame->hd.stream_id, head, 2, &data);
}

static int s_close(nghttp2_session *session, int32_t id, uint32_t code,
                   void *user) {
  sconn_t *c = user;
  sstream_t *st = nghttp2_session_get_stream_user_data(session, id);
  (void)code;
  if (st)
    sstream_free(c, st);
  return 0;
}

static void s_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  sconn_t *c = stream->data;
  gs_error_t err;
  if (n < 0 || (n > 0 && !c->closing &&
                gs_h2_feed(&c->h2, buf->base, (size_t)n, &err) != GS_OK))
    sconn_close(c);
  else
    sconn_flush(c);
}

static void s_accept(uv_stream_t *listener, int status) {
  server_t *srv = listener->data;
  static const gs_h2_config_t cfg = {.server = true,
                                     .max_streams = GS__GRPC_MAX_STREAMS,
                                     .window = 1 << 20,
                                     .conn_window = 16 << 20};
  nghttp2_session_callbacks *cb;
  gs_error_t err;
  assert_int_equal(status, 0);
  sconn_t *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->srv = srv;
  c->tcp.data = c;
  uv_tcp_init(listener->loop, &c->tcp);
  srv->conns_open++;
  assert_int_equal(uv_accept(listener, (uv_stream_t *)&c->tcp), 0);
  int small = 256 << 10; /* the socket takes little at once: writes queue */
  uv_send_buffer_size((uv_handle_t *)&c->tcp, &small);
  uv_tcp_nodelay(&c->tcp, 1);
  assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, s_begin);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, s_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, s_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, s_close);
  assert_int_equal(gs_h2_init(&c->h2, (uv_stream_t *)&c->tcp, &cfg, cb, c,
                              sconn_written, &err),
                   GS_OK);
  nghttp2_session_callbacks_del(cb);
  c->h2.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, gs_h2_alloc, s_read);
  sconn_flush(c);
}

static void server_start(uv_loop_t *loop, server_t *srv) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(loop, &srv->listener);
  srv->listener.data = srv;
  assert_int_equal(uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 16, s_accept), 0);
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
  srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

#include "grpc_test_client.h"

static uint8_t *framed(size_t n, size_t *len) {
  uint8_t *m = malloc(n + GS__GRPC_PREFIX);
  gs__grpc_frame_prefix(m, n);
  for (size_t i = 0; i < n; i++)
    m[GS__GRPC_PREFIX + i] = (uint8_t)(i * 31 + 7);
  *len = n + GS__GRPC_PREFIX;
  return m;
}

static void server_stop(uv_loop_t *loop, server_t *srv) {
  uv_close((uv_handle_t *)&srv->listener, NULL);
  while (srv->conns_open > 0 || uv_loop_alive(loop))
    uv_run(loop, UV_RUN_ONCE);
}

/* ---- the rules ------------------------------------------------------------
 */

static void echo(size_t n) {
  uv_loop_t loop;
  server_t srv = {0};
  client_t c = {0};
  uv_loop_init(&loop);
  server_start(&loop, &srv);
  c.msg = framed(n, &c.msg_len);
  c.small_buffer = true;
  call(&loop, srv.port, &c);
  assert_false(c.failed);
  assert_true(c.done);
  assert_int_equal(c.a.http_status, 200);
  assert_true(c.a.have_status);
  assert_int_equal(c.a.status, GS__GRPC_OK);
  assert_int_equal(c.answer.len, c.msg_len);
  assert_memory_equal(c.answer.data, c.msg, c.msg_len);
  server_stop(&loop, &srv);
  assert_int_equal(srv.calls, 1);
  assert_int_equal(srv.streams_open, 0);
  free((void *)c.msg);
  gs_buf_free(&c.answer);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_unary_echo(void **state) {
  (void)state;
  echo(11);
}

/* 6 MiB: more than a stream's window (1 MiB) and the high water mark. */
static void test_unary_echo_larger_than_windows(void **state) {
  (void)state;
  echo((size_t)6 << 20);
}

static void test_message_over_the_limit_is_resource_exhausted(void **state) {
  (void)state;
  uv_loop_t loop;
  static gs__repo_t repo; /* empty: no call may reach inference */
  gs__grpc_server_t *g;
  gs_error_t err;
  client_t c = {0};
  uv_loop_init(&loop);
  assert_int_equal(gs__grpc_listen(&g, &loop, &repo, "127.0.0.1", 0, &err),
                   GS_OK);
  c.msg_len = (size_t)GS__GRPC_MAX_MESSAGE + 1 + GS__GRPC_PREFIX;
  call(&loop, gs__grpc_port(g), &c);
  assert_false(c.failed);
  assert_true(c.a.have_status);
  assert_int_equal(c.a.status, GS__GRPC_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(c.a.message, "larger than"));
  assert_int_equal(c.answer.len, 0);
  gs_buf_free(&c.answer);
  gs__grpc_close(g);
  while (uv_loop_alive(&loop))
    uv_run(&loop, UV_RUN_ONCE);
  gs__grpc_destroy(g);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The client sends half a message and goes: the server frees the call. */
static void test_client_vanishing_mid_stream(void **state) {
  (void)state;
  uv_loop_t loop;
  server_t srv = {0};
  client_t c = {0};
  uv_loop_init(&loop);
  server_start(&loop, &srv);
  c.msg = framed(100000, &c.msg_len);
  c.send_only = 50000;
  call(&loop, srv.port, &c);
  assert_false(c.done);
  while (srv.conns_open > 0)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(srv.calls, 0);
  assert_int_equal(srv.streams_open, 0);
  server_stop(&loop, &srv);
  free((void *)c.msg);
  gs_buf_free(&c.answer);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The same against the worker's gRPC server: the half-read call it holds
 * is freed with the connection (ASan's leak check). */
static void test_client_vanishing_from_the_worker(void **state) {
  (void)state;
  uv_loop_t loop;
  static gs__repo_t repo;
  gs__grpc_server_t *g;
  gs_error_t err;
  client_t c = {0};
  uv_loop_init(&loop);
  assert_int_equal(gs__grpc_listen(&g, &loop, &repo, "127.0.0.1", 0, &err),
                   GS_OK);
  c.msg = framed(100000, &c.msg_len);
  c.send_only = 50000;
  call(&loop, gs__grpc_port(g), &c);
  assert_false(c.done);
  for (int i = 0; i < 100; i++) /* the server reads the end */
    uv_run(&loop, UV_RUN_NOWAIT);
  gs__grpc_close(g);
  while (uv_loop_alive(&loop))
    uv_run(&loop, UV_RUN_ONCE);
  gs__grpc_destroy(g);
  free((void *)c.msg);
  gs_buf_free(&c.answer);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The server reads the call and goes without answering: an error for the
 * client. */
static void test_server_vanishing_mid_call(void **state) {
  (void)state;
  uv_loop_t loop;
  server_t srv = {.vanish = true};
  client_t c = {0};
  uv_loop_init(&loop);
  server_start(&loop, &srv);
  c.msg = framed(1000, &c.msg_len);
  call(&loop, srv.port, &c);
  assert_true(c.failed);
  assert_false(c.done);
  assert_int_equal(srv.calls, 1);
  server_stop(&loop, &srv);
  assert_int_equal(srv.streams_open, 0);
  free((void *)c.msg);
  gs_buf_free(&c.answer);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unary_echo),
      cmocka_unit_test(test_unary_echo_larger_than_windows),
      cmocka_unit_test(test_message_over_the_limit_is_resource_exhausted),
      cmocka_unit_test(test_client_vanishing_mid_stream),
      cmocka_unit_test(test_client_vanishing_from_the_worker),
      cmocka_unit_test(test_server_vanishing_mid_call),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
