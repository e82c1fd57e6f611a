/* gpuslice serve's side of a worker connection, against a fake worker on
 * loopback (a libuv server in this process that answers each request with
 * fixed bytes and then closes):
 * - a request may be retried on another worker only when the worker sent
 *   no response byte: a connection closed before any byte (or refused) is
 *   a connect failure, one closed mid-response is a broken answer; and it
 *   is retried once, on another worker, not again;
 * - the active health check is GET /v2/health/ready and only a 200 is
 *   healthy: a worker answering 400 (a model not ready, as Triton says)
 *   leaves the rotation after the unhealthy threshold of checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/serve_int.h"

/* ---- the fake workers ---------------------------------------------------- */

typedef struct fake_s {
  uv_tcp_t tcp;
  unsigned port;
  const char *reply; /* sent after the first bytes of a request; "": none */
  unsigned accepted;
} fake_t;

static uv_loop_t loop;
static fake_t fakes[2]; /* [0]: one_request's and the health checks' */
static unsigned server_port;
static const char *reply;

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
  const char *answer = c->fake == &fakes[0] ? reply : c->fake->reply;
  (void)buf;
  if (n == 0)
    return;
  uv_read_stop(st);
  if (n < 0 || !answer[0]) {
    uv_close((uv_handle_t *)&c->tcp, fake_closed);
    return;
  }
  uv_buf_t out = uv_buf_init((char *)answer, (unsigned)strlen(answer));
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
  c->fake->accepted++;
  uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
}

static int fake_listen(fake_t *f) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_init(&loop, &f->tcp);
  f->tcp.data = f;
  f->reply = "";
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_bind(&f->tcp, (struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&f->tcp, 16, fake_connection) != 0 ||
      uv_tcp_getsockname(&f->tcp, (struct sockaddr *)&bound, &len) != 0)
    return -1;
  f->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  for (unsigned i = 0; i < 2; i++)
    if (fake_listen(&fakes[i]) != 0)
      return -1;
  server_port = fakes[0].port;
  return 0;
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static int teardown(void **state) {
  (void)state;
  /* everything, also what a failed test left open */
  uv_walk(&loop, close_any, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : -1;
}

/* ---- one request through a peer ------------------------------------------ */

static bool finished;
static gs__up_result_t outcome;

static void request_done(gs__upreq_t *r, gs__up_result_t result) {
  (void)r;
  finished = true;
  outcome = result;
}

/* The result of one GET to the fake worker (or to port, if not 0). */
static gs__up_result_t one_request(const char *answer, unsigned port,
                                   int *status) {
  gs__rloop_t rl = {.loop = &loop};
  gs__wk_t *wk = calloc(1, sizeof *wk);
  gs__peer_t *peer = calloc(1, sizeof *peer);
  assert_non_null(wk);
  assert_non_null(peer);
  wk->refs = 1; /* the peer's */
  *peer = (gs__peer_t){.rl = &rl,
                       .wk = wk,
                       .routable = true,
                       .refs = 1,
                       .http_port = port ? port : server_port};
  reply = answer;
  finished = false;
  gs__upreq_t r = {.method = "GET",
                   .url = "/v2/models/m",
                   .infer_header_len = -1,
                   .timeout_ms = 10000,
                   .done = request_done};
  gs__upreq_send(&r, peer);
  while (!finished)
    uv_run(&loop, UV_RUN_ONCE);
  *status = r.resp.status;
  gs__upreq_release(&r);
  peer->gone = true;
  gs__upconn_close_idle(peer);
  gs__peer_unref(peer); /* ours; connections closing hold theirs */
  uv_run(&loop, UV_RUN_NOWAIT);
  return outcome;
}

static void test_no_byte_back_is_a_connect_failure(void **state) {
  (void)state;
  int status;
  unsigned before = fakes[0].accepted;
  assert_int_equal(one_request("", 0, &status), GS__UP_CONNECT);
  assert_int_equal(fakes[0].accepted, before + 1); /* it did connect */
  /* a port nobody listens on (the fake's, closed for a moment, would race
   * with other tests: port 1 is privileged and unused here) */
  assert_int_equal(one_request("", 1, &status), GS__UP_CONNECT);
}

static void test_a_response_cut_short_is_broken_not_retryable(void **state) {
  (void)state;
  int status;
  assert_int_equal(
      one_request("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", 0,
                  &status),
      GS__UP_BROKEN);
  assert_int_equal(one_request("HTTP/1.1 200 O", 0, &status), GS__UP_BROKEN);
}

static void test_a_whole_response_is_ok(void **state) {
  (void)state;
  int status;
  assert_int_equal(
      one_request("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", 0,
                  &status),
      GS__UP_OK);
  assert_int_equal(status, 404);
}

/* ---- health checks ------------------------------------------------------- */

static void check_once(gs__serve_t *s, gs__wk_t *wk) {
  gs__health_tick(s);
  assert_non_null(wk->check);
  while (wk->check)
    uv_run(&loop, UV_RUN_ONCE);
}

static void test_only_200_is_healthy(void **state) {
  (void)state;
  gs__serve_t *s = calloc(1, sizeof *s);
  gs__rloop_t *rl = calloc(1, sizeof *rl);
  gs__wk_t *wk = calloc(1, sizeof *wk);
  assert_non_null(s);
  assert_non_null(rl);
  assert_non_null(wk);
  s->opt.unhealthy_threshold = 2;
  s->opt.health_timeout_ms = 10000;
  s->opt.restart_unhealthy_ms = 600000;
  s->started = true;
  *rl = (gs__rloop_t){.s = s, .index = 0, .loop = &loop};
  s->rloops[0] = rl;
  s->n_rloops = 1;
  *wk = (gs__wk_t){.s = s,
                   .state = GS__PROC_RUNNING,
                   .healthy = true,
                   .http_port = server_port,
                   .refs = 1 /* the table's */};
  snprintf(wk->label, sizeof wk->label, "0:1");
  s->workers = wk;
  gs__serve_publish(s); /* loop 0 gets its peer */
  assert_non_null(rl->peers);

  const char *not_ready = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n"
                          "Content-Length: 0\r\n\r\n";
  reply = not_ready;
  check_once(s, wk);
  assert_true(wk->healthy); /* one failed check is not yet enough */
  check_once(s, wk);
  assert_false(wk->healthy);
  assert_false(gs__wk_routable(wk, gs__serve_now_ns()));
  assert_false(gs__peer_routable(rl->peers, gs__serve_now_ns()));

  reply = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
  check_once(s, wk);
  assert_true(wk->healthy);
  assert_true(gs__peer_routable(rl->peers, gs__serve_now_ns()));

  s->workers = NULL;
  gs__serve_publish(s); /* loop 0 drops its peer */
  gs__wk_unref(wk);     /* the table's reference */
  uv_run(&loop, UV_RUN_NOWAIT);
  free(s->last_view);
  free(rl);
  free(s);
}

/* ---- the router's retry ---------------------------------------------------
 */

typedef struct client_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  char buf[8192];
  size_t len;
  bool done;
} client_t;

static void client_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  client_t *c = h->data;
  (void)size;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - 1 - c->len));
}

/* Done once the head and Content-Length bytes of body are in. */
static void client_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  client_t *c = st->data;
  (void)buf;
  if (n < 0) {
    c->done = true;
    return;
  }
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  const char *end = strstr(c->buf, "\r\n\r\n");
  const char *cl = strstr(c->buf, "Content-Length: ");
  if (end && cl &&
      (size_t)(end + 4 - c->buf) + strtoul(cl + 16, NULL, 10) <= c->len)
    c->done = true;
}

static void client_connected(uv_connect_t *req, int status) {
  client_t *c = req->data;
  static char request[] = "GET /v2/models/m HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Content-Length: 0\r\n\r\n";
  assert_int_equal(status, 0);
  uv_buf_t out = uv_buf_init(request, sizeof request - 1);
  assert_int_equal(uv_write(&c->write, (uv_stream_t *)&c->tcp, &out, 1, NULL),
                   0);
  uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read);
}

/* One request through the router; the answer's text. */
static void router_request(gs__rloop_t *rl, char *answer, size_t size) {
  client_t *c = calloc(1, sizeof *c);
  assert_non_null(c);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)rl->front.port, &addr);
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c->connect.data = c;
  assert_int_equal(uv_tcp_connect(&c->connect, &c->tcp,
                                  (struct sockaddr *)&addr, client_connected),
                   0);
  while (!c->done)
    uv_run(&loop, UV_RUN_ONCE);
  snprintf(answer, size, "%s", c->buf);
  uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
}

/* Two workers in rotation whose connections both close before any byte:
 * each request goes to one, is retried once on the other, and is then
 * answered 502 naming both; never a third attempt, never the same worker
 * twice. The failures are forgotten between requests (no ejection). */
static void check_retries(gs_serve_policy_t policy, unsigned requests) {
  gs__serve_t *s = calloc(1, sizeof *s);
  gs__rloop_t *rl = calloc(1, sizeof *rl);
  assert_non_null(s);
  assert_non_null(rl);
  s->opt.policy = policy;
  s->opt.eject_failures = 3;
  s->opt.eject_ms = 1000;
  s->opt.request_timeout_ms = 10000;
  s->opt.max_body_bytes = 1 << 20;
  s->opt.router_threads = 1;
  s->started = true;
  *rl = (gs__rloop_t){.s = s, .index = 0, .loop = &loop, .rng = 1};
  s->rloops[0] = rl;
  s->n_rloops = 1;
  gs__wk_t *wk[2];
  for (unsigned i = 0; i < 2; i++) {
    wk[i] = calloc(1, sizeof *wk[i]);
    assert_non_null(wk[i]);
    *wk[i] = (gs__wk_t){.s = s,
                        .state = GS__PROC_RUNNING,
                        .healthy = true,
                        .http_port = fakes[i].port,
                        .refs = 1,
                        .next = i ? wk[0] : NULL};
    snprintf(wk[i]->label, sizeof wk[i]->label, "0:%u", i + 1);
    fakes[i].accepted = 0;
  }
  reply = ""; /* fakes[0] too: close without a byte */
  s->workers = wk[1];
  gs__serve_publish(s);
  gs__front_setup(rl);
  gs_error_t err;
  assert_int_equal(gs__http_listen(&loop, &rl->front, "127.0.0.1", 0, &err),
                   GS_OK);

  for (unsigned n = 1; n <= requests; n++) {
    char answer[8192];
    router_request(rl, answer, sizeof answer);
    if (!strstr(answer, "HTTP/1.1 502") ||
        !strstr(answer, "was tried on worker"))
      fail_msg("request %u: %s", n, answer);
    if (fakes[0].accepted != n || fakes[1].accepted != n)
      fail_msg("request %u: worker 0:1 saw %u connections, 0:2 %u", n,
               fakes[0].accepted, fakes[1].accepted);
    assert_int_equal(s->retries, n);
    for (unsigned i = 0; i < 2; i++)
      wk[i]->consecutive_failures = 0;
    for (gs__peer_t *p = rl->peers; p; p = p->next)
      p->consecutive_failures = 0;
  }

  gs__http_listener_close(&rl->front);
  s->workers = NULL;
  gs__serve_publish(s);
  for (unsigned i = 0; i < 2; i++)
    gs__wk_unref(wk[i]);
  for (unsigned i = 0; i < 4; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  free(s->last_view);
  free(rl);
  free(s);
}

static void test_a_request_is_retried_once_on_another_worker(void **state) {
  (void)state;
  check_retries(GS_SERVE_ROUND_ROBIN, 4);
  check_retries(GS_SERVE_LEAST_REQUEST, 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_byte_back_is_a_connect_failure),
      cmocka_unit_test(test_a_response_cut_short_is_broken_not_retryable),
      cmocka_unit_test(test_a_whole_response_is_ok),
      cmocka_unit_test(test_only_200_is_healthy),
      cmocka_unit_test(test_a_request_is_retried_once_on_another_worker),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
