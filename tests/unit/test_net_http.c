/* The HTTP/1.1 network layer (src/net/) on a real libuv loop on loopback:
 * - a request the server layer reads reaches the handler whole (method,
 *   URL, body, Inference-Header-Content-Length) and the client layer reads
 *   the answer whole (status, body, Content-Type and that header back);
 * - a kept-alive connection goes back to the pool and carries the next
 *   request (RFC 9112 section 9.3: persistence is the default in 1.1);
 * - pipelined requests are answered in the order they came (RFC 9112
 *   section 9.3.2), even when the first is answered later than the second
 *   could be;
 * - a header block over the limit (16 KiB) is answered 431 and the
 *   connection closed;
 * - a server that closes in the middle of its response is an error on the
 *   client's side, BROKEN (not retryable) once any byte came, CONNECT
 *   before; a client that leaves before its answer costs the server
 *   nothing (no crash, the connection freed). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/http.h"

static uv_loop_t loop;
static gs__http_listener_t server;
static uv_timer_t tick; /* wakes the loop while a test waits */

static void tick_cb(uv_timer_t *t) {
  (void)t;
}

/* Runs the loop until cond(arg) or ms pass (a broken layer fails the
 * test instead of hanging it). */
static bool wait_until(bool (*cond)(void *), void *arg, unsigned ms) {
  uv_update_time(&loop);
  uint64_t end = uv_now(&loop) + ms;
  uv_timer_start(&tick, tick_cb, 10, 10);
  while (!cond(arg) && uv_now(&loop) < end)
    uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&tick);
  return cond(arg);
}

static bool is_true(void *flag) {
  return *(bool *)flag;
}

static bool no_server_conns(void *arg) {
  (void)arg;
  return server.n_conns == 0;
}

/* ---- the server: echoes "METHOD URL|BODY"; /slow answers 30 ms later ---- */

static unsigned handled;
static gs__http_conn_t *conns_seen[8];
static unsigned n_conns_seen;

typedef struct later_s {
  uv_timer_t timer;
  gs__http_conn_t *c;
  gs__http_response_t resp;
} later_t;

static void later_fire(uv_timer_t *t) {
  later_t *l = t->data;
  gs__http_conn_respond(l->c, &l->resp);
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void note_conn(gs__http_conn_t *c) {
  for (unsigned i = 0; i < n_conns_seen; i++)
    if (conns_seen[i] == c)
      return;
  if (n_conns_seen < 8)
    conns_seen[n_conns_seen++] = c;
}

static void echo(void *ctx, gs__http_conn_t *c, gs__http_request_t *req) {
  (void)ctx;
  handled++;
  note_conn(c);
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_HTTP_BODY);
  gs_buf_addf(&b, "%s %s|", http_method_str(req->method), req->url);
  gs_buf_add(&b, req->body ? req->body : "", req->body_len);
  gs__http_response_t resp = {.status = 200,
                              .infer_header_len = req->infer_header_len,
                              .content_type = "text/plain"};
  resp.body = gs_buf_take(&b, &resp.body_len);
  if (strcmp(req->url, "/slow") != 0) {
    gs__http_conn_respond(c, &resp);
    return;
  }
  later_t *l = calloc(1, sizeof *l);
  assert_non_null(l);
  l->c = c;
  l->resp = resp;
  uv_timer_init(&loop, &l->timer);
  l->timer.data = l;
  uv_timer_start(&l->timer, later_fire, 30, 0);
}

/* ---- the pool's client -------------------------------------------------- */

typedef struct call_s {
  gs__http_call_t call;
  bool done;
  gs__http_result_t result;
} call_t;

static void call_done(gs__http_call_t *call, gs__http_result_t result) {
  call_t *x = call->data;
  x->done = true;
  x->result = result;
}

static gs__http_result_t run_call(gs__http_pool_t *p, call_t *x,
                                  const char *method, const char *url,
                                  const char *body) {
  *x = (call_t){.call = {.method = method,
                         .url = url,
                         .body = body,
                         .body_len = body ? strlen(body) : 0,
                         .infer_header_len = -1,
                         .timeout_ms = 10000,
                         .done = call_done}};
  x->call.data = x;
  gs__http_pool_send(p, &x->call);
  assert_true(wait_until(is_true, &x->done, 5000));
  return x->result;
}

/* The tests' pool: static, so that what a failed test left open still
 * points at valid memory when the next test closes it. */
static gs__http_pool_t pool;

static void pool_to(gs__http_pool_t *p, unsigned port) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)port, &addr);
  gs__http_pool_init(p, &loop, (struct sockaddr *)&addr, 4,
                     GS_LIMIT_UPSTREAM_RESPONSE);
}

static void pool_done(gs__http_pool_t *p) {
  gs__http_pool_close(p);
  for (int i = 0; i < 10; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* ---- a raw client: bytes out, every byte in until the server closes ---- */

typedef struct raw_s {
  uv_tcp_t tcp;
  uv_timer_t timer; /* a server that never closes fails the test, late */
  uv_connect_t connect;
  uv_write_t write;
  const char *out;
  size_t out_len;
  gs_buf_t in;
  char rbuf[65536];
  uv_shutdown_t shutdown;
  bool ended, leave_early, half_close;
} raw_t;

static void raw_closed(uv_handle_t *h) {
  raw_t *r = h->data;
  uv_close((uv_handle_t *)&r->timer, NULL);
  r->ended = true;
}

static void raw_timeout(uv_timer_t *t) {
  raw_t *r = t->data;
  if (!uv_is_closing((uv_handle_t *)&r->tcp))
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
}

static void raw_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  raw_t *r = h->data;
  (void)size;
  *buf = uv_buf_init(r->rbuf, sizeof r->rbuf);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  raw_t *r = s->data;
  if (n > 0)
    assert_int_equal(gs_buf_add(&r->in, buf->base, (size_t)n), GS_OK);
  if (n < 0 && !uv_is_closing((uv_handle_t *)&r->tcp))
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
}

static void raw_written(uv_write_t *w, int status) {
  raw_t *r = w->data;
  assert_int_equal(status, 0);
  if (r->half_close) /* done sending, still reading */
    uv_shutdown(&r->shutdown, (uv_stream_t *)&r->tcp, NULL);
  if (r->leave_early && !uv_is_closing((uv_handle_t *)&r->tcp))
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
}

static void raw_connected(uv_connect_t *c, int status) {
  raw_t *r = c->data;
  assert_int_equal(status, 0);
  uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)r->out_len);
  r->write.data = r;
  assert_int_equal(
      uv_write(&r->write, (uv_stream_t *)&r->tcp, &b, 1, raw_written), 0);
  if (!r->leave_early)
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
}

/* Sends out to port and collects everything until the server closes. */
static void raw_exchange(raw_t *r, unsigned port, const char *out,
                         size_t out_len) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)port, &addr);
  r->out = out;
  r->out_len = out_len;
  gs_buf_init(&r->in, GS_LIMIT_HTTP_BODY);
  uv_tcp_init(&loop, &r->tcp);
  uv_timer_init(&loop, &r->timer);
  r->tcp.data = r->connect.data = r->timer.data = r;
  uv_timer_start(&r->timer, raw_timeout, 5000, 0);
  assert_int_equal(uv_tcp_connect(&r->connect, &r->tcp,
                                  (struct sockaddr *)&addr, raw_connected),
                   0);
  while (!r->ended)
    uv_run(&loop, UV_RUN_ONCE); /* r->timer bounds it */
  uv_run(&loop, UV_RUN_NOWAIT); /* the timer's close */
}

/* The next response in *data (advanced past it), read by the client's
 * reader: its status and body into out. */
static void next_response(const char **data, size_t *len, int *status,
                          char *body, size_t body_size) {
  gs__http_reply_t r;
  gs__http_reply_init(&r, GS_LIMIT_UPSTREAM_RESPONSE, 0);
  size_t used = gs__http_reply_feed(&r, *data, *len);
  assert_true(r.complete);
  *data += used;
  *len -= used;
  *status = r.status;
  snprintf(body, body_size, "%s", r.body.data ? r.body.data : "");
  gs__http_reply_release(&r);
}

/* ---- a fake server that sends fixed bytes and closes -------------------- */

typedef struct fake_s {
  uv_tcp_t tcp;
  unsigned port;
  const char *reply;
} fake_t;

typedef struct fake_conn_s {
  uv_tcp_t tcp;
  uv_write_t write;
  fake_t *fake;
  char buf[4096];
} fake_conn_t;

static void fake_closed(uv_handle_t *h) {
  free(h->data);
}

static void fake_written(uv_write_t *w, int status) {
  (void)status;
  fake_conn_t *c = w->data;
  uv_close((uv_handle_t *)&c->tcp, fake_closed);
}

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  fake_conn_t *c = h->data;
  (void)size;
  *buf = uv_buf_init(c->buf, sizeof c->buf);
}

static void fake_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  fake_conn_t *c = st->data;
  (void)buf;
  if (n == 0)
    return;
  uv_read_stop(st);
  if (n < 0 || !c->fake->reply[0]) {
    uv_close((uv_handle_t *)&c->tcp, fake_closed);
    return;
  }
  uv_buf_t out =
      uv_buf_init((char *)c->fake->reply, (unsigned)strlen(c->fake->reply));
  c->write.data = c;
  assert_int_equal(uv_write(&c->write, st, &out, 1, fake_written), 0);
}

static void fake_connection(uv_stream_t *srv, int status) {
  assert_int_equal(status, 0);
  fake_conn_t *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->fake = srv->data;
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  assert_int_equal(uv_accept(srv, (uv_stream_t *)&c->tcp), 0);
  uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
}

static fake_t fake;

/* ---- fixtures ----------------------------------------------------------- */

static int setup(void **state) {
  (void)state;
  gs_error_t err;
  if (uv_loop_init(&loop) != 0)
    return -1;
  server = (gs__http_listener_t){
      .handler = echo, .max_body = 1u << 20, .user_size = 0};
  if (gs__http_listen(&loop, &server, "127.0.0.1", 0, &err) != GS_OK)
    return -1;
  fake.reply = "";
  uv_timer_init(&loop, &tick);
  return gs__tcp_listen(&loop, &fake.tcp, "127.0.0.1", 0, false,
                        fake_connection, &fake.port, &err) == GS_OK
             ? 0
             : -1;
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static int teardown(void **state) {
  (void)state;
  gs__http_listener_close(&server);
  uv_walk(&loop, close_any, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : -1;
}

static int before_each(void **state) {
  (void)state;
  if (pool.loop) /* what a failed test left */
    gs__http_pool_close(&pool);
  gs__http_listener_close_idle(&server);
  wait_until(no_server_conns, NULL, 1000);
  handled = 0;
  n_conns_seen = 0;
  fake.tcp.data = &fake;
  return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_echo_through_server_and_client(void **state) {
  (void)state;
  pool_to(&pool, server.port);
  call_t x = {.call = {.method = "POST",
                       .url = "/v2/echo",
                       .body = "hello",
                       .body_len = 5,
                       .infer_header_len = 3,
                       .timeout_ms = 10000,
                       .done = call_done}};
  x.call.data = &x;
  gs__http_pool_send(&pool, &x.call);
  assert_true(wait_until(is_true, &x.done, 5000));
  assert_int_equal(x.result, GS__HTTP_OK);
  assert_true(x.call.got_bytes);
  assert_int_equal(x.call.resp.status, 200);
  assert_int_equal(x.call.resp.body_len, strlen("POST /v2/echo|hello"));
  assert_memory_equal(x.call.resp.body, "POST /v2/echo|hello",
                      x.call.resp.body_len);
  assert_string_equal(x.call.resp.content_type, "text/plain");
  assert_int_equal(x.call.resp.infer_header_len, 3);
  gs__http_call_release(&x.call);
  pool_done(&pool);
}

static void test_keep_alive_reuses_the_pooled_connection(void **state) {
  (void)state;
  pool_to(&pool, server.port);
  call_t a, b;
  assert_int_equal(run_call(&pool, &a, "GET", "/one", NULL), GS__HTTP_OK);
  assert_int_equal(pool.n_idle, 1); /* back in the pool */
  assert_int_equal(run_call(&pool, &b, "GET", "/two", NULL), GS__HTTP_OK);
  assert_memory_equal(b.call.resp.body, "GET /two|", b.call.resp.body_len);
  assert_int_equal(handled, 2);
  assert_int_equal(n_conns_seen, 1); /* both on one server connection */
  assert_int_equal(server.n_conns, 1);
  gs__http_call_release(&a.call);
  gs__http_call_release(&b.call);
  pool_done(&pool);
  assert_int_equal(pool.n_idle, 0);
  assert_true(wait_until(no_server_conns, NULL, 5000)); /* saw the close */
}

static void test_pipelined_requests_are_answered_in_order(void **state) {
  (void)state;
  /* The first is answered 30 ms later; the second could go at once. */
  static const char out[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
                            "POST /fast HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 2\r\n\r\nhi"
                            "GET /last HTTP/1.1\r\nHost: x\r\n"
                            "Connection: close\r\n\r\n";
  raw_t r = {0};
  raw_exchange(&r, server.port, out, sizeof out - 1);
  const char *data = r.in.data;
  size_t len = r.in.len;
  int status;
  char body[128];
  next_response(&data, &len, &status, body, sizeof body);
  assert_int_equal(status, 200);
  assert_string_equal(body, "GET /slow|");
  next_response(&data, &len, &status, body, sizeof body);
  assert_string_equal(body, "POST /fast|hi");
  next_response(&data, &len, &status, body, sizeof body);
  assert_string_equal(body, "GET /last|");
  assert_int_equal(len, 0);
  assert_int_equal(handled, 3);
  gs_buf_free(&r.in);
}

static void test_a_header_block_over_the_limit_is_431(void **state) {
  (void)state;
  size_t big = 17000; /* over 16 KiB */
  char *out = malloc(big + 64);
  assert_non_null(out);
  int n = snprintf(out, 64, "GET /v2 HTTP/1.1\r\nX-Big: ");
  memset(out + n, 'a', big);
  memcpy(out + n + big, "\r\n\r\n", 4);
  raw_t r = {0};
  raw_exchange(&r, server.port, out, (size_t)n + big + 4);
  const char *data = r.in.data;
  size_t len = r.in.len;
  int status;
  char body[256];
  next_response(&data, &len, &status, body, sizeof body);
  assert_int_equal(status, 431);
  assert_non_null(strstr(body, "larger than 16 KiB"));
  assert_int_equal(handled, 0); /* never reached the handler */
  gs_buf_free(&r.in);
  free(out);
}

static void test_a_server_closing_mid_response_is_an_error(void **state) {
  (void)state;
  pool_to(&pool, fake.port);
  call_t x;
  fake.reply = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc";
  assert_int_equal(run_call(&pool, &x, "GET", "/", NULL), GS__HTTP_BROKEN);
  assert_true(x.call.got_bytes);
  gs__http_call_release(&x.call);
  fake.reply = "HTTP/1.1 200 O";
  assert_int_equal(run_call(&pool, &x, "GET", "/", NULL), GS__HTTP_BROKEN);
  gs__http_call_release(&x.call);
  fake.reply = ""; /* closes before any byte: safe to retry elsewhere */
  assert_int_equal(run_call(&pool, &x, "GET", "/", NULL), GS__HTTP_CONNECT);
  assert_false(x.call.got_bytes);
  gs__http_call_release(&x.call);
  assert_int_equal(pool.n_idle, 0); /* none of them is kept */
  pool_done(&pool);
}

static void test_a_client_leaving_before_its_answer(void **state) {
  (void)state;
  static const char out[] = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
  raw_t r = {.leave_early = true};
  raw_exchange(&r, server.port, out, sizeof out - 1);
  /* the answer comes 30 ms later, to nobody; the connection is freed */
  assert_true(wait_until(no_server_conns, NULL, 5000));
  assert_int_equal(handled, 1);
  gs_buf_free(&r.in);
}

static void test_a_client_done_sending_gets_only_its_answers(void **state) {
  (void)state;
  /* A client may close its sending side after its last request and read
   * on (RFC 9112 section 9.6): it gets its answer, then the close, and no
   * error for the request it did not start. */
  static const char out[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  raw_t r = {.half_close = true};
  raw_exchange(&r, server.port, out, sizeof out - 1);
  const char *data = r.in.data;
  size_t len = r.in.len;
  int status;
  char body[128];
  next_response(&data, &len, &status, body, sizeof body);
  assert_int_equal(status, 200);
  assert_string_equal(body, "GET /a|");
  assert_int_equal(len, 0); /* nothing after it */
  gs_buf_free(&r.in);
}

/* {"error": msg} stays JSON when the message quotes bytes that are not
 * UTF-8 (a BYTES element in a Cast error): they become U+FFFD; json_pack
 * refused such a message and the answer had no body. */
static void test_error_body_with_bytes_not_utf8(void **state) {
  (void)state;
  gs__http_response_t resp = {0};
  gs__http_response_error(&resp, 400, "cannot cast 'a\xc3z' to INT32");
  assert_int_equal(resp.status, 400);
  assert_non_null(resp.body);
  assert_string_equal(resp.body,
                      "{\"error\":\"cannot cast 'a\\uFFFDz' to INT32\"}");
  assert_int_equal(resp.body_len, strlen(resp.body));
  assert_string_equal(resp.content_type, "application/json");
  gs__http_response_error(&resp, 404, "plain \"quoted\"");
  assert_string_equal(resp.body, "{\"error\":\"plain \\\"quoted\\\"\"}");
  gs__http_response_release(&resp);
}

static void test_reply_reader_limit_and_truncation(void **state) {
  (void)state;
  static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
                           "0123456789";
  gs__http_reply_t r;
  gs_error_t err;
  gs__http_reply_init(&r, GS_LIMIT_CLI_RESPONSE, 4);
  gs__http_reply_feed(&r, in, sizeof in - 1);
  assert_false(r.complete);
  assert_int_equal(r.error, GS_ELIMIT);
  assert_int_equal(gs__http_reply_error(&r, &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "larger than 4 bytes"));
  gs__http_reply_reset(&r);
  gs__http_reply_limit(&r, 4, true);
  gs__http_reply_feed(&r, in, sizeof in - 1);
  assert_true(r.complete);
  assert_int_equal(r.body.len, 4);
  assert_string_equal(r.body.data, "0123");
  gs__http_reply_release(&r);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* as every gpuslice server does */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_echo_through_server_and_client, before_each),
      cmocka_unit_test_setup(test_keep_alive_reuses_the_pooled_connection,
                             before_each),
      cmocka_unit_test_setup(test_pipelined_requests_are_answered_in_order,
                             before_each),
      cmocka_unit_test_setup(test_a_header_block_over_the_limit_is_431,
                             before_each),
      cmocka_unit_test_setup(test_a_server_closing_mid_response_is_an_error,
                             before_each),
      cmocka_unit_test_setup(test_a_client_leaving_before_its_answer,
                             before_each),
      cmocka_unit_test_setup(test_a_client_done_sending_gets_only_its_answers,
                             before_each),
      cmocka_unit_test(test_reply_reader_limit_and_truncation),
      cmocka_unit_test(test_error_body_with_bytes_not_utf8),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
