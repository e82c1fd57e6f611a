/* net/grpc_server's layer on a real libuv loop over loopback (TCP and a unix
 * socket), a client on net/h2's pump: a unary echo, an answer given later
 * (a held call), a server stream, a bidi stream echoed message by message,
 * a malformed frame (INVALID_ARGUMENT), a message over the limit
 * (RESOURCE_EXHAUSTED, unary and bidi), an unknown path (UNIMPLEMENTED), a
 * request that is not gRPC, and a client that goes while its call is held
 * (freed with the last hold: ASan's leak check runs this test). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/grpc.h"
#include "net/grpc_server.h"
#include "net/h2.h"

#define MAX_MESSAGE 1024u
#define TOO_LARGE "the test's message is too large"

/* ---- the server: handlers ------------------------------------------------ */

typedef struct later_s {
  uv_timer_t timer;
  gs_grpc_call_t *call;
  const uint8_t *msgs; /* Count: the messages still to send */
  size_t n;
} later_t;

static int calls_freed, calls_made;

static void on_call_free(gs_grpc_call_t *call) {
  (void)call;
  calls_freed++;
}

static void echo(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  calls_made++;
  gs_grpc_call_reply_msg(call, msg, len);
}

static void later_closed(uv_handle_t *h) {
  free(h->data);
}

/* The timer fired: the held call is answered (if its client is still
 * there) and let go. */
static void later_fire(uv_timer_t *t) {
  later_t *l = t->data;
  gs_grpc_call_t *call = l->call;
  uv_close((uv_handle_t *)t, later_closed);
  if (!gs_grpc_call_release(call))
    return;
  if (l->msgs) {
    for (size_t i = 0; i < l->n; i++)
      gs_grpc_call_send(call, l->msgs + i, 1);
    gs_grpc_call_end(call, GS__GRPC_OK, NULL);
  } else {
    gs_grpc_call_reply_msg(call, "later", 5);
  }
  gs_grpc_call_flush(call);
}

static void hold_for(gs_grpc_call_t *call, unsigned ms, const uint8_t *msgs,
                     size_t n) {
  later_t *l = calloc(1, sizeof *l);
  assert_non_null(l);
  l->call = call;
  l->msgs = msgs;
  l->n = n;
  uv_timer_init(uv_default_loop(), &l->timer);
  l->timer.data = l;
  gs_grpc_call_hold(call);
  uv_timer_start(&l->timer, later_fire, ms, 0);
}

static void later(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  calls_made++;
  hold_for(call, 20, NULL, 0);
}

/* "0123456789": the first message now, the other nine 20 ms later. */
static void count(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  static const uint8_t digits[] = "0123456789";
  (void)msg;
  (void)len;
  calls_made++;
  assert_int_equal(gs_grpc_call_send(call, digits, 1), GS_OK);
  hold_for(call, 20, digits + 1, 9);
}

static void bidi_echo(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  calls_made++;
  assert_int_equal(gs_grpc_call_send(call, msg, len), GS_OK);
}

static const gs_grpc_route_t routes[] = {
    {"/t.T/Echo", GS_GRPC_UNARY, echo},
    {"/t.T/Later", GS_GRPC_UNARY, later},
    {"/t.T/Count", GS_GRPC_SERVER_STREAM, count},
    {"/t.T/Bidi", GS_GRPC_BIDI_STREAM, bidi_echo},
};

static const gs_grpc_srv_config_t config = {.routes = routes,
                                            .n_routes = sizeof routes /
                                                        sizeof routes[0],
                                            .max_message = MAX_MESSAGE,
                                            .too_large = TOO_LARGE,
                                            .out_limit = GS_LIMIT_GRPC_MESSAGE,
                                            .window = 1 << 20,
                                            .conn_window = 4 << 20,
                                            .call_state = 16,
                                            .on_call_free = on_call_free};

/* ---- a client on the pump ------------------------------------------------ */

typedef struct client_s {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_connect_t connect;
  uv_timer_t deadline;
  gs_h2_t h2;
  const char *path, *content_type;
  const uint8_t *body; /* what the request's DATA carries */
  size_t body_len, sent;
  bool vanish; /* close the connection once the request is sent */
  gs_buf_t answer;
  gs__grpc_answer_t a;
  bool done, closed;
} client_t;

static void c_closed(uv_handle_t *h) {
  client_t *c = h->data;
  c->closed = true;
}

static void c_close(client_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->h)) {
    uv_close((uv_handle_t *)&c->h, c_closed);
    uv_close((uv_handle_t *)&c->deadline, NULL);
  }
}

/* Writes what is queued; a vanishing client closes once its request is
 * out. */
static void c_flush(client_t *c) {
  gs_error_t err;
  if (uv_is_closing((uv_handle_t *)&c->h))
    return;
  if (gs_h2_flush(&c->h2, &err) != GS_OK ||
      (c->vanish && c->sent == c->body_len && c->h2.writes == 0))
    c_close(c);
}

static void c_written(gs_h2_t *h, int status) {
  client_t *c = h->data;
  if (status >= 0)
    c_flush(c);
}

static ssize_t c_body(nghttp2_session *session, int32_t id, uint8_t *buf,
                      size_t length, uint32_t *flags,
                      nghttp2_data_source *source, void *user) {
  client_t *c = user;
  size_t n = c->body_len - c->sent < length ? c->body_len - c->sent : length;
  (void)session;
  (void)id;
  (void)source;
  memcpy(buf, c->body + c->sent, n);
  c->sent += n;
  if (c->sent == c->body_len)
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
      (n > 0 && gs_h2_feed(&c->h2, buf->base, (size_t)n, &err) != GS_OK))
    c_close(c);
  else
    c_flush(c);
}

static void c_connected(uv_connect_t *req, int status) {
  client_t *c = req->data;
  static const gs_h2_config_t cfg = {.window = 1 << 20, .conn_window = 4 << 20};
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
  nghttp2_nv head[] = {GS_H2_NV(":method", "POST"),
                       GS_H2_NV(":scheme", "http"),
                       GS_H2_NV(":path", c->path),
                       GS_H2_NV(":authority", "localhost"),
                       GS_H2_NV("content-type", c->content_type),
                       GS_H2_NV("te", "trailers")};
  nghttp2_data_provider data = {.read_callback = c_body};
  assert_true(
      nghttp2_submit_request(c->h2.session, NULL, head, 6, &data, NULL) > 0);
  uv_read_start((uv_stream_t *)&c->h, gs_h2_alloc, c_read);
  c_flush(c);
}

static void stuck(uv_timer_t *t) {
  (void)t;
  fail_msg("the call did not end within 30 s");
}

/* One call (port, or the unix socket sock), run until the client closed. */
static void call(unsigned port, const char *sock, client_t *c) {
  uv_loop_t *loop = uv_default_loop();
  if (!c->content_type)
    c->content_type = "application/grpc";
  gs_buf_init(&c->answer, GS_LIMIT_GRPC_MESSAGE);
  uv_timer_init(loop, &c->deadline);
  c->h.tcp.data = c->connect.data = c;
  if (sock) {
    uv_pipe_init(loop, &c->h.pipe, 0);
    uv_pipe_connect(&c->connect, &c->h.pipe, sock, c_connected);
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

/* ---- fixtures ------------------------------------------------------------ */

static gs_grpc_srv_t *srv;

static int start_tcp(void **state) {
  gs_error_t err;
  (void)state;
  calls_made = calls_freed = 0;
  assert_int_equal(gs_grpc_srv_listen_tcp(&srv, uv_default_loop(), "127.0.0.1",
                                          0, &config, &err),
                   GS_OK);
  assert_true(gs_grpc_srv_port(srv) > 0);
  return 0;
}

/* Closes the server; every call made is freed, every handle closed. */
static int stop(void **state) {
  (void)state;
  gs_grpc_srv_close(srv);
  while (uv_loop_alive(uv_default_loop()))
    uv_run(uv_default_loop(), UV_RUN_ONCE);
  return 0;
}

static uint8_t *framed(const void *msg, size_t n, size_t *len) {
  uint8_t *m = malloc(n + GS__GRPC_PREFIX);
  assert_non_null(m);
  gs__grpc_frame_prefix(m, n);
  if (n)
    memcpy(m + GS__GRPC_PREFIX, msg, n);
  *len = n + GS__GRPC_PREFIX;
  return m;
}

static void assert_status(const client_t *c, int status, const char *msg) {
  assert_true(c->done);
  assert_int_equal(c->a.http_status, 200);
  assert_true(c->a.have_status);
  assert_int_equal(c->a.status, status);
  if (msg)
    assert_string_equal(c->a.message, msg);
}

/* ---- the rules ----------------------------------------------------------- */

static void test_unary_echo(void **state) {
  client_t c = {.path = "/t.T/Echo"};
  uint8_t *req = framed("hello", 5, &c.body_len);
  (void)state;
  c.body = req;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_OK, NULL);
  assert_int_equal(c.answer.len, c.body_len);
  assert_memory_equal(c.answer.data, req, c.body_len);
  assert_int_equal(calls_made, 1);
  free(req);
  gs_buf_free(&c.answer);
}

static void test_unary_answered_later(void **state) {
  client_t c = {.path = "/t.T/Later"};
  size_t want_len;
  uint8_t *req = framed("", 0, &c.body_len);
  uint8_t *want = framed("later", 5, &want_len);
  (void)state;
  c.body = req;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_OK, NULL);
  assert_int_equal(c.answer.len, want_len);
  assert_memory_equal(c.answer.data, want, want_len);
  free(req);
  free(want);
  gs_buf_free(&c.answer);
}

/* Ten one-byte messages, the first at once and nine once the hold ends. */
static void test_server_stream(void **state) {
  client_t c = {.path = "/t.T/Count"};
  uint8_t *req = framed("", 0, &c.body_len);
  (void)state;
  c.body = req;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_OK, NULL);
  assert_int_equal(c.answer.len, 10 * (GS__GRPC_PREFIX + 1));
  for (size_t i = 0; i < 10; i++) {
    const uint8_t *m = (const uint8_t *)c.answer.data + i * 6;
    const uint8_t *msg;
    size_t len;
    gs_error_t err;
    assert_int_equal(gs__grpc_frame_read(m, 6, 1, &msg, &len, &err),
                     GS__GRPC_OK);
    assert_int_equal(msg[0], '0' + i);
  }
  free(req);
  gs_buf_free(&c.answer);
}

/* Three messages in one body: each echoed as it is read, then status 0. */
static void test_bidi_stream_echo(void **state) {
  client_t c = {.path = "/t.T/Bidi"};
  gs_buf_t body;
  (void)state;
  gs_buf_init(&body, GS_LIMIT_GRPC_MESSAGE);
  for (int i = 0; i < 3; i++) {
    char msg[16];
    size_t n = (size_t)snprintf(msg, sizeof msg, "message %d", i);
    uint8_t prefix[GS__GRPC_PREFIX];
    gs__grpc_frame_prefix(prefix, n);
    gs_buf_add(&body, prefix, sizeof prefix);
    gs_buf_add(&body, msg, n);
  }
  c.body = (const uint8_t *)body.data;
  c.body_len = body.len;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_OK, NULL);
  assert_int_equal(calls_made, 3);
  assert_int_equal(c.answer.len, body.len);
  assert_memory_equal(c.answer.data, body.data, body.len);
  gs_buf_free(&body);
  gs_buf_free(&c.answer);
}

/* A whole message, then half of one: the first is answered, the stream
 * ends INVALID_ARGUMENT. */
static void test_bidi_stream_ending_inside_a_message(void **state) {
  client_t c = {.path = "/t.T/Bidi"};
  uint8_t body[GS__GRPC_PREFIX * 2 + 2 + 3];
  (void)state;
  gs__grpc_frame_prefix(body, 2);
  memcpy(body + GS__GRPC_PREFIX, "ok", 2);
  gs__grpc_frame_prefix(body + GS__GRPC_PREFIX + 2, 10); /* 3 of 10 come */
  memcpy(body + GS__GRPC_PREFIX * 2 + 2, "abc", 3);
  c.body = body;
  c.body_len = sizeof body;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_INVALID_ARGUMENT,
                "the stream ended inside a message");
  assert_int_equal(c.answer.len, GS__GRPC_PREFIX + 2);
  assert_memory_equal(c.answer.data, body, GS__GRPC_PREFIX + 2);
  gs_buf_free(&c.answer);
}

static void test_malformed_frame_is_invalid_argument(void **state) {
  client_t c = {.path = "/t.T/Echo"};
  uint8_t body[GS__GRPC_PREFIX + 3];
  (void)state;
  gs__grpc_frame_prefix(body, 10); /* says 10 bytes, 3 follow */
  memcpy(body + GS__GRPC_PREFIX, "abc", 3);
  c.body = body;
  c.body_len = sizeof body;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_INVALID_ARGUMENT, NULL);
  assert_int_equal(c.answer.len, 0);
  assert_int_equal(calls_made, 0);
  gs_buf_free(&c.answer);
}

static void test_oversize_message_is_resource_exhausted(void **state) {
  static uint8_t big[MAX_MESSAGE + 1];
  client_t c = {.path = "/t.T/Echo"};
  uint8_t *req = framed(big, sizeof big, &c.body_len);
  (void)state;
  c.body = req;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_RESOURCE_EXHAUSTED, TOO_LARGE);
  assert_int_equal(calls_made, 0);
  gs_buf_free(&c.answer);
  /* the limit itself passes */
  client_t ok = {.path = "/t.T/Echo"};
  uint8_t *fits = framed(big, MAX_MESSAGE, &ok.body_len);
  ok.body = fits;
  call(gs_grpc_srv_port(srv), NULL, &ok);
  assert_status(&ok, GS__GRPC_OK, NULL);
  assert_int_equal(ok.answer.len, ok.body_len);
  free(req);
  free(fits);
  gs_buf_free(&ok.answer);
}

static void test_oversize_message_on_a_bidi_stream(void **state) {
  static uint8_t big[MAX_MESSAGE * 2];
  client_t c = {.path = "/t.T/Bidi"};
  uint8_t *req = framed(big, sizeof big, &c.body_len);
  (void)state;
  c.body = req;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_RESOURCE_EXHAUSTED, TOO_LARGE);
  assert_int_equal(calls_made, 0);
  free(req);
  gs_buf_free(&c.answer);
}

static void test_unknown_path_and_content_type(void **state) {
  client_t c = {.path = "/t.T/Nothing"};
  uint8_t *req = framed("x", 1, &c.body_len);
  (void)state;
  c.body = req;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_status(&c, GS__GRPC_UNIMPLEMENTED, "unknown method /t.T/Nothing");
  client_t j = {.path = "/t.T/Echo", .content_type = "application/json"};
  j.body = req;
  j.body_len = c.body_len;
  call(gs_grpc_srv_port(srv), NULL, &j);
  assert_status(&j, GS__GRPC_INVALID_ARGUMENT, "not a gRPC request");
  assert_int_equal(calls_made, 0);
  free(req);
  gs_buf_free(&c.answer);
  gs_buf_free(&j.answer);
}

/* The client goes while its call is held: the call is freed with its last
 * hold, after the timer that held it. */
static void test_client_gone_while_held(void **state) {
  client_t c = {.path = "/t.T/Later", .vanish = true};
  uint8_t *req = framed("", 0, &c.body_len);
  (void)state;
  c.body = req;
  call(gs_grpc_srv_port(srv), NULL, &c);
  assert_false(c.done);
  while (calls_freed < 1 && uv_loop_alive(uv_default_loop()))
    uv_run(uv_default_loop(), UV_RUN_ONCE);
  assert_int_equal(calls_made, 1);
  assert_int_equal(calls_freed, 1);
  free(req);
  gs_buf_free(&c.answer);
}

static void test_unix_socket_echo(void **state) {
  char sock[] = "/tmp/gs_grpc_srv_XXXXXX";
  gs_grpc_srv_t *u;
  gs_error_t err;
  client_t c = {.path = "/t.T/Echo"};
  uint8_t *req = framed("unix", 4, &c.body_len);
  (void)state;
  int fd = mkstemp(sock); /* a name; the server replaces the file */
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(
      gs_grpc_srv_listen_unix(&u, uv_default_loop(), sock, &config, &err),
      GS_OK);
  c.body = req;
  call(0, sock, &c);
  assert_status(&c, GS__GRPC_OK, NULL);
  assert_memory_equal(c.answer.data, req, c.body_len);
  gs_grpc_srv_close(u);
  unlink(sock);
  free(req);
  gs_buf_free(&c.answer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_unary_echo, start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_unary_answered_later, start_tcp,
                                      stop),
      cmocka_unit_test_setup_teardown(test_server_stream, start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_bidi_stream_echo, start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_bidi_stream_ending_inside_a_message,
                                      start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_malformed_frame_is_invalid_argument,
                                      start_tcp, stop),
      cmocka_unit_test_setup_teardown(
          test_oversize_message_is_resource_exhausted, start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_oversize_message_on_a_bidi_stream,
                                      start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_unknown_path_and_content_type,
                                      start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_client_gone_while_held, start_tcp,
                                      stop),
      cmocka_unit_test_setup_teardown(test_unix_socket_echo, start_tcp, stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
