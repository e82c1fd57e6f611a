/* net/grpc_server's layer on a real libuv loop over loopback (TCP and a unix
 * socket), a client on net/h2's pump: a unary echo, an answer given later
 * (a held call), a server stream, a bidi stream echoed message by message,
 * a malformed frame (INVALID_ARGUMENT), a message over the limit
 * (RESOURCE_EXHAUSTED, unary and bidi), an unknown path (UNIMPLEMENTED), a
 * request that is not gRPC, and a client that goes while its call is held
 * (freed with the last hold: ASan's leak check runs this test). The relay
 * routes (the router's): a request's bytes as sent, answered with headers
 * and trailers as given, a relayed stream chunk by chunk, and a drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

static int calls_freed, calls_made, held_released;

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
  held_released++;
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

/* Held for 200 ms of real time (the loop's cached clock may be stale). */
static void slow(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  calls_made++;
  uv_update_time(uv_default_loop());
  hold_for(call, 200, NULL, 0);
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

/* ---- the relay routes (the router's) ------------------------------------- */

static gs_buf_t raw_seen; /* the request bytes a raw route was given */
static unsigned headers_seen, stream_starts, half_closes;

static void on_header(gs_grpc_call_t *call, const uint8_t *name, size_t nlen,
                      const uint8_t *value, size_t vlen) {
  (void)call;
  (void)value;
  (void)vlen;
  headers_seen++;
  assert_true(nlen > 0 && name[0]);
}

static void hdrs_put(gs_h2_hdrs_t *h, const char *name, const char *value) {
  if (h->n == 0)
    gs_buf_init(&h->b, GS_LIMIT_GRPC_HEADERS);
  assert_int_equal(gs_h2_hdrs_add(h, 1024, (const uint8_t *)name, strlen(name),
                                  (const uint8_t *)value, strlen(value)),
                   0);
}

/* Keeps the bytes as sent; answers a message and status 7 as a relay
 * would, its grpc-message passed on as it is (already percent-encoded). */
static void raw_relay(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  gs_h2_hdrs_t head = {0}, trailers = {0};
  calls_made++;
  gs_buf_reset(&raw_seen);
  gs_buf_add(&raw_seen, msg, len);
  hdrs_put(&head, ":status", "200");
  hdrs_put(&head, "content-type", "application/grpc");
  hdrs_put(&trailers, "grpc-status", "7");
  hdrs_put(&trailers, "grpc-message", "relayed%20as%20is");
  gs_grpc_call_relay_head(call, &head, false);
  assert_int_equal(gs_buf_add(gs_grpc_call_out(call), "\0\0\0\0\2hi", 7),
                   GS_OK);
  gs_grpc_call_relay_end(call, &trailers);
  gs_buf_free(&head.b);
  gs_buf_free(&trailers.b);
}

/* Relays the request's chunks back as they come; the headers first. */
static void raw_stream(gs_grpc_call_t *call, const uint8_t *data, size_t len) {
  if (!data) {
    gs_h2_hdrs_t head = {0};
    stream_starts++;
    hdrs_put(&head, ":status", "200");
    gs_grpc_call_relay_head(call, &head, false);
    gs_buf_free(&head.b);
    return;
  }
  calls_made++;
  assert_int_equal(gs_buf_add(gs_grpc_call_out(call), data, len), GS_OK);
  gs_grpc_call_kick(call);
}

static void raw_half_close(gs_grpc_call_t *call) {
  gs_h2_hdrs_t trailers = {0};
  half_closes++;
  hdrs_put(&trailers, "grpc-status", "0");
  gs_grpc_call_relay_end(call, &trailers);
  gs_buf_free(&trailers.b);
}

static const gs_grpc_route_t routes[] = {
    {"/t.T/Echo", GS_GRPC_UNARY, echo},
    {"/t.T/Later", GS_GRPC_UNARY, later},
    {"/t.T/Slow", GS_GRPC_UNARY, slow},
    {"/t.T/Count", GS_GRPC_SERVER_STREAM, count},
    {"/t.T/Bidi", GS_GRPC_BIDI_STREAM, bidi_echo},
    {"/t.T/Raw", GS_GRPC_RAW, raw_relay},
    {"/t.T/RawStream", GS_GRPC_RAW_STREAM, raw_stream},
};

static const gs_grpc_srv_config_t config = {.routes = routes,
                                            .n_routes = sizeof routes /
                                                        sizeof routes[0],
                                            .max_message = MAX_MESSAGE,
                                            .too_large = TOO_LARGE,
                                            .out_limit = GS_LIMIT_GRPC_MESSAGE,
                                            .window = 1 << 20,
                                            .conn_window = 4 << 20,
                                            .on_header = on_header,
                                            .on_half_close = raw_half_close,
                                            .call_state = 16,
                                            .on_call_free = on_call_free};

#include "grpc_test_client.h"

/* ---- fixtures ------------------------------------------------------------ */

static gs_grpc_srv_t *srv;

static int start_tcp(void **state) {
  gs_error_t err;
  (void)state;
  calls_made = calls_freed = held_released = 0;
  headers_seen = stream_starts = half_closes = 0;
  gs_buf_init(&raw_seen, GS_LIMIT_GRPC_MESSAGE);
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
  gs_buf_free(&raw_seen);
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

/* A call on path whose request is body, sent as it is (a copy the client
 * owns), to the TCP server or c->sock. */
static void ask_raw(client_t *c, const char *path, const void *body,
                    size_t len) {
  uint8_t *copy = malloc(len + 1);
  assert_non_null(copy);
  memcpy(copy, body, len);
  c->path = path;
  c->msg = copy;
  c->msg_len = len;
  call(uv_default_loop(), c->sock ? 0 : gs_grpc_srv_port(srv), c);
}

/* The same with msg framed as one message. */
static void ask(client_t *c, const char *path, const void *msg, size_t n) {
  size_t len;
  uint8_t *m = framed(msg, n, &len);
  ask_raw(c, path, m, len);
  free(m);
}

static void client_free(client_t *c) {
  free((void *)c->msg);
  gs_buf_free(&c->answer);
}

/* The call ended with status (and msg, unless NULL), having received the
 * answer's len bytes of want (NULL: none). */
static void assert_answer(client_t *c, int status, const char *msg,
                          const void *want, size_t len) {
  assert_true(c->done);
  assert_int_equal(c->a.http_status, 200);
  assert_true(c->a.have_status);
  assert_int_equal(c->a.status, status);
  if (msg)
    assert_string_equal(c->a.message, msg);
  assert_int_equal(c->answer.len, len);
  if (len)
    assert_memory_equal(c->answer.data, want, len);
  client_free(c);
}

/* ---- the rules ----------------------------------------------------------- */

static void test_unary_echo(void **state) {
  client_t c = {0};
  (void)state;
  ask(&c, "/t.T/Echo", "hello", 5);
  assert_answer(&c, GS__GRPC_OK, NULL, c.msg, c.msg_len);
  assert_int_equal(calls_made, 1);
}

static void test_unary_answered_later(void **state) {
  client_t c = {0};
  (void)state;
  ask(&c, "/t.T/Later", "", 0);
  assert_answer(&c, GS__GRPC_OK, NULL, "\0\0\0\0\5later", 10);
}

/* Ten one-byte messages, the first at once and nine once the hold ends. */
static void test_server_stream(void **state) {
  char want[10 * 6];
  client_t c = {0};
  (void)state;
  for (size_t i = 0; i < 10; i++) {
    gs__grpc_frame_prefix((uint8_t *)want + i * 6, 1);
    want[i * 6 + GS__GRPC_PREFIX] = (char)('0' + i);
  }
  ask(&c, "/t.T/Count", "", 0);
  assert_answer(&c, GS__GRPC_OK, NULL, want, sizeof want);
}

/* Three messages in one body: each echoed as it is read, then status 0. */
static void test_bidi_stream_echo(void **state) {
  client_t c = {0};
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
  ask_raw(&c, "/t.T/Bidi", body.data, body.len);
  assert_int_equal(calls_made, 3);
  assert_answer(&c, GS__GRPC_OK, NULL, body.data, body.len);
  gs_buf_free(&body);
}

/* A whole message, then 3 bytes of a 10-byte one: the first is answered,
 * the stream ends INVALID_ARGUMENT. */
static void test_bidi_stream_ending_inside_a_message(void **state) {
  static const char body[] = "\0\0\0\0\2ok\0\0\0\0\12abc";
  client_t c = {0};
  (void)state;
  ask_raw(&c, "/t.T/Bidi", body, sizeof body - 1);
  assert_answer(&c, GS__GRPC_INVALID_ARGUMENT,
                "the stream ended inside a message", body, 7);
}

static void test_malformed_frame_is_invalid_argument(void **state) {
  client_t c = {0};
  (void)state;
  ask_raw(&c, "/t.T/Echo", "\0\0\0\0\12abc", 8); /* 3 of 10 bytes */
  assert_answer(&c, GS__GRPC_INVALID_ARGUMENT, NULL, NULL, 0);
  assert_int_equal(calls_made, 0);
}

static void test_oversize_message_is_resource_exhausted(void **state) {
  static uint8_t big[MAX_MESSAGE + 1];
  client_t c = {0}, ok = {0};
  (void)state;
  ask(&c, "/t.T/Echo", big, sizeof big);
  assert_answer(&c, GS__GRPC_RESOURCE_EXHAUSTED, TOO_LARGE, NULL, 0);
  assert_int_equal(calls_made, 0);
  ask(&ok, "/t.T/Echo", big, MAX_MESSAGE); /* the limit itself passes */
  assert_answer(&ok, GS__GRPC_OK, NULL, ok.msg, ok.msg_len);
}

static void test_oversize_message_on_a_bidi_stream(void **state) {
  static uint8_t big[MAX_MESSAGE * 2];
  client_t c = {0};
  (void)state;
  ask(&c, "/t.T/Bidi", big, sizeof big);
  assert_answer(&c, GS__GRPC_RESOURCE_EXHAUSTED, TOO_LARGE, NULL, 0);
  assert_int_equal(calls_made, 0);
}

static void test_unknown_path_and_content_type(void **state) {
  client_t c = {0}, j = {.content_type = "application/json"};
  (void)state;
  ask(&c, "/t.T/Nothing", "x", 1);
  assert_answer(&c, GS__GRPC_UNIMPLEMENTED, "unknown method /t.T/Nothing", NULL,
                0);
  ask(&j, "/t.T/Echo", "x", 1);
  assert_answer(&j, GS__GRPC_INVALID_ARGUMENT, "not a gRPC request", NULL, 0);
  assert_int_equal(calls_made, 0);
}

/* The client goes while its call is held: the call is freed with its last
 * hold, after the timer that held it. */
static void test_client_gone_while_held(void **state) {
  client_t c = {.vanish = true};
  (void)state;
  ask(&c, "/t.T/Later", "", 0);
  assert_false(c.done);
  while (held_released < 1)
    uv_run(uv_default_loop(), UV_RUN_ONCE);
  assert_int_equal(calls_made, 1);
  assert_int_equal(calls_freed, 1);
  client_free(&c);
}

/* The server closed (a worker's drain) while a call is held: the call
 * still answers into nothing and is freed, and the server's memory with it
 * (ASan: no use after free of the server's config). */
static int run_to_end(void **state) {
  (void)state;
  while (uv_loop_alive(uv_default_loop()))
    uv_run(uv_default_loop(), UV_RUN_ONCE);
  return 0;
}

static void test_server_closed_while_held(void **state) {
  client_t c = {.vanish = true}; /* call() returns once the request is out */
  (void)state;
  ask(&c, "/t.T/Slow", "", 0);
  while (calls_made < 1)
    uv_run(uv_default_loop(), UV_RUN_ONCE);
  gs_grpc_srv_close(srv);
  srv = NULL;
  run_to_end(NULL);
  assert_int_equal(held_released, 1);
  assert_int_equal(calls_freed, 1);
  client_free(&c);
}

static void test_unix_socket_echo(void **state) {
  char sock[] = "/tmp/gs_grpc_srv_XXXXXX";
  gs_grpc_srv_t *u;
  gs_error_t err;
  client_t c = {.sock = sock};
  (void)state;
  int fd = mkstemp(sock); /* a name; the server replaces the file */
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(
      gs_grpc_srv_listen_unix(&u, uv_default_loop(), sock, &config, &err),
      GS_OK);
  ask(&c, "/t.T/Echo", "unix", 4);
  assert_answer(&c, GS__GRPC_OK, NULL, c.msg, c.msg_len);
  gs_grpc_srv_close(u);
  unlink(sock);
}

/* A relay route takes the bytes as sent (a compressed flag, a content-type
 * that is not gRPC's: neither is refused) and answers with the headers and
 * trailers it was given. */
static void test_raw_route_relays_as_given(void **state) {
  static const char body[] = "\1\0\0\0\3abc";
  client_t c = {.content_type = "text/plain"};
  (void)state;
  ask_raw(&c, "/t.T/Raw", body, sizeof body - 1);
  assert_int_equal(calls_made, 1);
  assert_int_equal(raw_seen.len, sizeof body - 1);
  assert_memory_equal(raw_seen.data, body, sizeof body - 1);
  assert_true(headers_seen >= 6); /* :method ... te */
  assert_answer(&c, 7, "relayed%20as%20is", "\0\0\0\0\2hi", 7);
}

/* A relayed stream: the headers go out before any request byte, each chunk
 * comes back, the half-close ends it with the given trailers. */
static void test_raw_stream_relays_chunks(void **state) {
  static const char body[] = "\0\0\0\0\2ab\0\0\0\0\1c";
  client_t c = {0};
  (void)state;
  ask_raw(&c, "/t.T/RawStream", body, sizeof body - 1);
  assert_int_equal(stream_starts, 1);
  assert_true(calls_made >= 1);
  assert_int_equal(half_closes, 1);
  assert_answer(&c, GS__GRPC_OK, NULL, body, sizeof body - 1);
}

static size_t conns_at_drain;

static void drain_now(uv_timer_t *t) {
  conns_at_drain = gs_grpc_srv_conns(t->data);
  gs_grpc_srv_drain(t->data);
  uv_close((uv_handle_t *)t, NULL);
}

/* A drain while a call is held: the call is still answered, then its
 * connection closes (gs_grpc_srv_conns, what a worker's drain waits on,
 * goes from 1 to 0); closing the drained server later frees it once
 * (ASan: the listener closed once). */
static void test_drain_lets_calls_finish(void **state) {
  uv_timer_t t;
  client_t c = {0};
  (void)state;
  uv_timer_init(uv_default_loop(), &t);
  t.data = srv;
  uv_timer_start(&t, drain_now, 50, 0);
  ask(&c, "/t.T/Slow", "", 0);
  assert_answer(&c, GS__GRPC_OK, NULL, "\0\0\0\0\5later", 10);
  assert_int_equal(calls_freed, 1);
  assert_int_equal(conns_at_drain, 1);
  for (int i = 0; i < 500 && gs_grpc_srv_conns(srv); i++) {
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    nanosleep(&(struct timespec){0, 2000000}, NULL);
  }
  assert_int_equal(gs_grpc_srv_conns(srv), 0);
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
      cmocka_unit_test_setup_teardown(test_server_closed_while_held, start_tcp,
                                      run_to_end),
      cmocka_unit_test_setup_teardown(test_unix_socket_echo, start_tcp, stop),
      cmocka_unit_test_setup_teardown(test_raw_route_relays_as_given, start_tcp,
                                      stop),
      cmocka_unit_test_setup_teardown(test_raw_stream_relays_chunks, start_tcp,
                                      stop),
      cmocka_unit_test_setup_teardown(test_drain_lets_calls_finish, start_tcp,
                                      stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
