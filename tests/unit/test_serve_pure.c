/* gpuslice serve rules that need no sockets. The router answers
 * /v2/health/live itself, /v2/health/ready from its workers, sums Triton's
 * statistics (GET /v2/models[/{m}[/versions/{v}]]/stats) over workers,
 * serves /metrics from every worker, sends repository load/unload (POST) to
 * every worker and owns /gpuslice/v1/... (405 for a wrong method, 404 for
 * an unknown path); everything else goes to one worker, whose answer
 * (404 for an unknown path, as Triton) passes through. Statistics add up
 * counts and ns, keep the latest last_inference and match models by name
 * and version, batch_stats by batch_size. Prometheus samples gain the
 * label instance="worker". */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "serve/serve_int.h"
#include "worker/worker_int.h" /* real worker statistics and metrics */

/* ---- choosing a worker -----------------------------------------------------
 */

/* Round robin: one turn for every router loop, so requests alternate
 * whichever loop takes them. */
static void test_round_robin_turn_is_shared(void **state) {
  (void)state;
  gs__serve_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->opt.policy = GS_SERVE_ROUND_ROBIN;
  unsigned inflight[3] = {0, 0, 0}, count[3] = {0};
  uint64_t rng_a = 1, rng_b = 7; /* two loops' own generators */
  for (unsigned i = 0; i < 300; i++)
    count[gs__choose(s, 3, inflight, i % 2 ? &rng_a : &rng_b)]++;
  assert_int_equal(count[0], 100);
  assert_int_equal(count[1], 100);
  assert_int_equal(count[2], 100);
  assert_int_equal(gs__choose(s, 1, inflight, &rng_a), 0);
  free(s);
}

/* Least request: of two distinct random candidates, the one with fewer
 * requests in flight; so the busiest is never taken while two are idle,
 * and every idle one gets a share. */
static void test_least_request_takes_the_less_busy_of_two(void **state) {
  (void)state;
  gs__serve_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->opt.policy = GS_SERVE_LEAST_REQUEST;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  unsigned inflight[3] = {0, 50, 0}, count[3] = {0};
  for (unsigned i = 0; i < 3000; i++)
    count[gs__choose(s, 3, inflight, &rng)]++;
  assert_int_equal(count[1], 0);
  assert_true(count[0] > 1000 && count[2] > 1000);
  unsigned two[2] = {9, 3}; /* two candidates: always both compared */
  for (unsigned i = 0; i < 100; i++)
    assert_int_equal(gs__choose(s, 2, two, &rng), 1);
  free(s);
}

/* ---- passive ejection
 * -------------------------------------------------------- A worker whose
 * proxied requests fail eject_failures times in a row (no answer, a broken or
 * oversized answer, a timeout) leaves the rotation for eject_ms, on the loop
 * that saw the failures at once and in the table (for every loop); a success in
 * between resets the count; the ejection ends by itself after eject_ms. */

typedef struct ejection_fixture_s {
  gs__serve_t *s;
  gs__rloop_t rl;
  gs__wk_t *wk;
  gs__peer_t peer;
} ejection_fixture_t;

static ejection_fixture_t *ejection_fixture(void) {
  ejection_fixture_t *x = calloc(1, sizeof *x);
  assert_non_null(x);
  x->s = calloc(1, sizeof *x->s);
  x->wk = calloc(1, sizeof *x->wk);
  assert_non_null(x->s);
  assert_non_null(x->wk);
  x->s->opt.eject_failures = 3;
  x->s->opt.eject_ms = 1000;
  x->rl = (gs__rloop_t){.s = x->s, .index = 0}; /* the main loop */
  x->wk->s = x->s;
  x->wk->state = GS__PROC_RUNNING;
  x->wk->healthy = true;
  x->wk->http_port = 8000;
  x->wk->refs = 1;
  snprintf(x->wk->label, sizeof x->wk->label, "0:1");
  x->peer = (gs__peer_t){.rl = &x->rl,
                         .wk = x->wk,
                         .http_port = 8000,
                         .routable = true,
                         .refs = 1};
  return x;
}

static void ejection_fixture_free(ejection_fixture_t *x) {
  free(x->s->last_view);
  free(x->wk);
  free(x->s);
  free(x);
}

static bool in_rotation(const ejection_fixture_t *x, uint64_t now) {
  return gs__peer_routable(&x->peer, now) && gs__wk_routable(x->wk, now);
}

static void
test_ejection_after_consecutive_failures_and_for_a_while(void **state) {
  (void)state;
  ejection_fixture_t *x = ejection_fixture();
  for (unsigned i = 0; i < 2; i++) {
    gs__rloop_report(&x->rl, &x->peer, false, true, 1000);
    assert_true(in_rotation(x, gs__serve_now_ns()));
  }
  uint64_t before = gs__serve_now_ns();
  gs__rloop_report(&x->rl, &x->peer, false, true, 1000); /* the third */
  uint64_t after = gs__serve_now_ns();
  assert_false(gs__peer_routable(&x->peer, after));
  assert_false(gs__wk_routable(x->wk, after));
  assert_int_equal(x->wk->ejections, 1);
  /* Out for eject_ms from the failure, not less and not for ever. */
  uint64_t eject_ns = (uint64_t)x->s->opt.eject_ms * 1000000u;
  uint64_t peer_until = x->peer.ejected_until_ns;
  uint64_t wk_until = x->wk->ejected_until_ns;
  assert_true(peer_until >= before + eject_ns &&
              peer_until <= after + eject_ns);
  assert_true(wk_until >= before + eject_ns && wk_until <= after + eject_ns);
  assert_false(gs__peer_routable(&x->peer, peer_until - 1));
  assert_false(gs__wk_routable(x->wk, wk_until - 1));
  assert_true(gs__peer_routable(&x->peer, peer_until));
  assert_true(gs__wk_routable(x->wk, wk_until));
  ejection_fixture_free(x);
}

static void test_a_success_resets_the_failure_count(void **state) {
  (void)state;
  ejection_fixture_t *x = ejection_fixture();
  for (unsigned round = 0; round < 3; round++) {
    gs__rloop_report(&x->rl, &x->peer, false, true, 1000);
    gs__rloop_report(&x->rl, &x->peer, false, true, 1000);
    gs__rloop_report(&x->rl, &x->peer, true, false, 1000);
  }
  assert_true(in_rotation(x, gs__serve_now_ns()));
  assert_int_equal(x->wk->ejections, 0);
  assert_int_equal(x->wk->requests, 9);
  assert_int_equal(x->wk->failures, 6);
  ejection_fixture_free(x);
}

/* Outcomes that arrive after a worker stopped running do not eject it
 * (its next process starts in rotation). */
static void test_only_running_workers_are_ejected(void **state) {
  (void)state;
  ejection_fixture_t *x = ejection_fixture();
  x->wk->state = GS__PROC_WAITING;
  for (unsigned i = 0; i < 5; i++)
    gs__wk_passive_failure(x->wk);
  assert_int_equal(x->wk->ejections, 0);
  assert_int_equal(x->wk->ejected_until_ns, 0);
  ejection_fixture_free(x);
}

/* ---- request classes ------------------------------------------------------
 */

static gs__route_t classify(enum http_method method, const char *url) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", url);
  gs__http_request_t req = {.method = method,
                            .url = buf,
                            .url_len = strlen(buf),
                            .infer_header_len = -1};
  gs__route_t r;
  gs__classify(&req, &r);
  return r;
}

static gs__route_kind_t kind(enum http_method method, const char *url) {
  return classify(method, url).kind;
}

static void test_health_is_answered_by_the_router(void **state) {
  (void)state;
  assert_int_equal(kind(HTTP_GET, "/v2/health/live"), GS__RT_LIVE);
  assert_int_equal(kind(HTTP_GET, "/v2/health/ready"), GS__RT_READY);
  /* Only GET is the health API; the worker answers anything else. */
  assert_int_equal(kind(HTTP_POST, "/v2/health/live"), GS__RT_PROXY);
  assert_int_equal(kind(HTTP_GET, "/v2/health/other"), GS__RT_PROXY);
  assert_int_equal(kind(HTTP_GET, "/v2/health"), GS__RT_PROXY);
}

static void test_stats_of_every_shape_are_summed(void **state) {
  (void)state;
  /* GET /v2/models[/{m}[/versions/{v}]]/stats */
  assert_int_equal(kind(HTTP_GET, "/v2/models/stats"), GS__RT_STATS);
  assert_int_equal(kind(HTTP_GET, "/v2/models/simple/stats"), GS__RT_STATS);
  assert_int_equal(kind(HTTP_GET, "/v2/models/simple/versions/1/stats"),
                   GS__RT_STATS);
  /* Other shapes and methods are the worker's to refuse. */
  assert_int_equal(kind(HTTP_POST, "/v2/models/simple/stats"), GS__RT_PROXY);
  assert_int_equal(kind(HTTP_GET, "/v2/models/simple/versions/stats"),
                   GS__RT_PROXY);
  assert_int_equal(kind(HTTP_GET, "/v2/models/a/b/c/stats"), GS__RT_PROXY);
}

static void test_metrics_come_from_every_worker(void **state) {
  (void)state;
  assert_int_equal(kind(HTTP_GET, "/metrics"), GS__RT_METRICS);
  assert_int_equal(kind(HTTP_POST, "/metrics"), GS__RT_PROXY);
  assert_int_equal(kind(HTTP_GET, "/metrics/x"), GS__RT_PROXY);
}

static void test_repository_load_unload_go_to_every_worker(void **state) {
  (void)state;
  /* POST /v2/repository/models/{m}/load and /unload */
  assert_int_equal(kind(HTTP_POST, "/v2/repository/models/simple/load"),
                   GS__RT_BROADCAST);
  assert_int_equal(kind(HTTP_POST, "/v2/repository/models/simple/unload"),
                   GS__RT_BROADCAST);
  /* The index is one worker's; a GET of load is its 400 "use POST". */
  assert_int_equal(kind(HTTP_POST, "/v2/repository/index"), GS__RT_PROXY);
  assert_int_equal(kind(HTTP_GET, "/v2/repository/models/simple/load"),
                   GS__RT_PROXY);
  assert_int_equal(kind(HTTP_POST, "/v2/repository/models/simple/delete"),
                   GS__RT_PROXY);
}

static void test_everything_else_goes_to_one_worker(void **state) {
  (void)state;
  static const struct {
    enum http_method method;
    const char *url;
  } proxied[] = {
      {HTTP_GET, "/v2"},
      {HTTP_GET, "/v2/models/simple"},
      {HTTP_GET, "/v2/models/simple/versions/1"},
      {HTTP_GET, "/v2/models/simple/ready"},
      {HTTP_GET, "/v2/models/simple/config"},
      {HTTP_POST, "/v2/models/simple/infer"},
      {HTTP_POST, "/v2/models/simple/versions/1/infer"},
      {HTTP_GET, "/nothing/here"}, /* the worker's 404 passes through */
      {HTTP_GET, "/"},
      {HTTP_GET, ""},
      {HTTP_GET, "/gpuslicex/v1/workers"}, /* not the admin prefix */
      {HTTP_GET, "/v2/a/b/c/d/e/f/g/h/i/j"},
  };
  for (size_t i = 0; i < sizeof proxied / sizeof proxied[0]; i++) {
    gs__route_t r = classify(proxied[i].method, proxied[i].url);
    if (r.kind != GS__RT_PROXY)
      fail_msg("%s is not proxied", proxied[i].url);
  }
  gs__http_request_t req = {.method = HTTP_GET, .url = NULL};
  gs__route_t r;
  gs__classify(&req, &r);
  assert_int_equal(r.kind, GS__RT_PROXY);
}

static void test_query_strings_do_not_change_the_route(void **state) {
  (void)state;
  assert_int_equal(kind(HTTP_GET, "/v2/health/live?verbose=1"), GS__RT_LIVE);
  assert_int_equal(kind(HTTP_GET, "/v2/models/m/stats?x=/y"), GS__RT_STATS);
  assert_int_equal(kind(HTTP_GET, "/metrics?name[]=up"), GS__RT_METRICS);
  assert_int_equal(kind(HTTP_POST, "/gpuslice/v1/sync?now"), GS__RT_ADMIN_SYNC);
  gs__route_t r = classify(HTTP_POST, "/gpuslice/v1/instances/0:1?force=1");
  assert_int_equal(r.kind, GS__RT_ADMIN_ADD);
  assert_string_equal(r.arg, "0:1");
  /* The query's own path-looking text is not the path. */
  assert_int_equal(kind(HTTP_GET, "/v2?/health/live"), GS__RT_PROXY);
}

static void test_paths_split_as_the_worker_splits_them(void **state) {
  (void)state;
  /* The worker collapses empty segments: the router must agree, or a
   * stats request would reach one worker only. */
  assert_int_equal(kind(HTTP_GET, "//v2//health/live/"), GS__RT_LIVE);
  assert_int_equal(kind(HTTP_GET, "/v2/models//stats"), GS__RT_STATS);
}

static void test_admin_api(void **state) {
  (void)state;
  assert_int_equal(kind(HTTP_GET, "/gpuslice/v1/workers"), GS__RT_ADMIN_LIST);
  assert_int_equal(kind(HTTP_POST, "/gpuslice/v1/sync"), GS__RT_ADMIN_SYNC);
  gs__route_t r = classify(HTTP_POST, "/gpuslice/v1/instances/0:1");
  assert_int_equal(r.kind, GS__RT_ADMIN_ADD);
  assert_string_equal(r.arg, "0:1");
  r = classify(HTTP_DELETE, "/gpuslice/v1/instances/1:2:0");
  assert_int_equal(r.kind, GS__RT_ADMIN_REMOVE);
  assert_string_equal(r.arg, "1:2:0");
}

static void test_admin_wrong_method_is_405_naming_the_method(void **state) {
  (void)state;
  gs__route_t r = classify(HTTP_POST, "/gpuslice/v1/workers");
  assert_int_equal(r.kind, GS__RT_BAD);
  assert_int_equal(r.status, 405);
  assert_non_null(strstr(r.message, "GET"));
  r = classify(HTTP_GET, "/gpuslice/v1/sync");
  assert_int_equal(r.status, 405);
  assert_non_null(strstr(r.message, "POST"));
  r = classify(HTTP_PUT, "/gpuslice/v1/instances/0:1");
  assert_int_equal(r.status, 405);
  assert_non_null(strstr(r.message, "POST"));
  assert_non_null(strstr(r.message, "DELETE"));
}

static void test_unknown_admin_path_is_404(void **state) {
  (void)state;
  static const char *const urls[] = {
      "/gpuslice",
      "/gpuslice/v1",
      "/gpuslice/v2/workers",
      "/gpuslice/v1/instances", /* no id */
      "/gpuslice/v1/instances/a/b",
      "/gpuslice/v1/workers/extra",
      "/gpuslice/v1/Workers",
      "/gpuslice/v1/a/b/c/d/e/f/g/h/i",
  };
  for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
    gs__route_t r = classify(HTTP_GET, urls[i]);
    if (r.kind != GS__RT_BAD || r.status != 404)
      fail_msg("%s: kind %d status %d", urls[i], r.kind, r.status);
    assert_non_null(strstr(r.message, "unknown admin path"));
  }
}

static void test_admin_id_is_percent_decoded(void **state) {
  (void)state;
  gs__route_t r = classify(HTTP_POST, "/gpuslice/v1/instances/0%3A1");
  assert_int_equal(r.kind, GS__RT_ADMIN_ADD);
  assert_string_equal(r.arg, "0:1");
  r = classify(HTTP_DELETE, "/gpuslice/v1/instances/a%2fb%20c");
  assert_int_equal(r.kind, GS__RT_ADMIN_REMOVE);
  assert_string_equal(r.arg, "a/b c");
  /* '+' is a plus in a path, not a space (that is forms only). */
  r = classify(HTTP_POST, "/gpuslice/v1/instances/a+b");
  assert_string_equal(r.arg, "a+b");
}

static void test_bad_admin_ids_are_400(void **state) {
  (void)state;
  static const char *const urls[] = {
      "/gpuslice/v1/instances/a%0Ab",   /* newline */
      "/gpuslice/v1/instances/%00",     /* NUL */
      "/gpuslice/v1/instances/%7f",     /* DEL */
      "/gpuslice/v1/instances/%1b[31m", /* ESC */
      "/gpuslice/v1/instances/%zz",     /* not hex */
      "/gpuslice/v1/instances/a%4",     /* cut short */
      "/gpuslice/v1/instances/a%",      /* cut short */
  };
  for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
    gs__route_t r = classify(HTTP_POST, urls[i]);
    if (r.kind != GS__RT_BAD || r.status != 400)
      fail_msg("%s: kind %d status %d", urls[i], r.kind, r.status);
    assert_non_null(r.message);
    assert_string_equal(r.arg, ""); /* no half-decoded id */
  }
}

static void test_admin_id_must_fit_the_buffer(void **state) {
  (void)state;
  gs__route_t r;
  char url[512];
  size_t max = sizeof r.arg - 1; /* the id plus its NUL */
  int n = snprintf(url, sizeof url, "/gpuslice/v1/instances/");
  memset(url + n, 'x', max);
  url[(size_t)n + max] = '\0';
  r = classify(HTTP_POST, url);
  assert_int_equal(r.kind, GS__RT_ADMIN_ADD);
  assert_int_equal(strlen(r.arg), max);
  strcat(url, "x");
  r = classify(HTTP_POST, url);
  assert_int_equal(r.kind, GS__RT_BAD);
  assert_int_equal(r.status, 400);
  /* Length counts decoded bytes: 3 URL bytes per %41. */
  n = snprintf(url, sizeof url, "/gpuslice/v1/instances/");
  for (size_t i = 0; i < max; i++)
    n += snprintf(url + n, sizeof url - (size_t)n, "%%41");
  r = classify(HTTP_POST, url);
  assert_int_equal(r.kind, GS__RT_ADMIN_ADD);
  assert_int_equal(strlen(r.arg), max);
  assert_int_equal(r.arg[0], 'A');
}

/* ---- statistics merge -----------------------------------------------------
 */

/* A worker's statistics JSON for one model, made by the worker's own code
 * so that the shape is exactly what workers send. */
static json_t *model_stats(const char *name, const char *version,
                           uint64_t success, uint64_t success_ns,
                           uint64_t last_ms, const uint64_t *batches,
                           size_t n_batches) {
  gs__model_entry_t *m = calloc(1, sizeof *m);
  assert_non_null(m);
  snprintf(m->name, sizeof m->name, "%s", name);
  snprintf(m->version, sizeof m->version, "%s", version);
  gs__model_stats_t *st = &m->stats;
  st->success = (gs__stat_t){success, success_ns};
  st->queue = (gs__stat_t){success, success_ns / 10};
  st->fail = (gs__stat_t){1, 7};
  st->inference_count = success;
  st->execution_count = success;
  st->last_inference_ms = last_ms;
  for (size_t i = 0; i < n_batches; i++)
    gs__batch_stats_add(st, batches[i], 100, 1000, 10);
  json_t *j = gs__model_stats_json(m);
  free(st->batch);
  free(m);
  return j;
}

static json_t *doc_of(json_t *a, json_t *b) {
  json_t *list = json_array();
  if (a)
    json_array_append_new(list, a);
  if (b)
    json_array_append_new(list, b);
  return json_pack("{s:o}", "model_stats", list);
}

static json_int_t at(json_t *j, const char *path) {
  json_t *v = NULL;
  char key[64];
  const char *p = path;
  v = j;
  while (*p) {
    size_t len = strcspn(p, ".");
    snprintf(key, sizeof key, "%.*s", (int)len, p);
    char *end;
    long idx = strtol(key, &end, 10);
    v = *end == '\0' ? json_array_get(v, (size_t)idx) : json_object_get(v, key);
    p += len + (p[len] == '.');
  }
  if (!json_is_integer(v))
    fail_msg("%s is not an integer", path);
  return json_integer_value(v);
}

static void test_two_workers_add_up(void **state) {
  (void)state;
  const uint64_t b0[] = {1, 4, 4}, b1[] = {2, 4};
  json_t *docs[2] = {
      doc_of(model_stats("simple", "1", 3, 3000, 1700000000000, b0, 3), NULL),
      doc_of(model_stats("simple", "1", 5, 5000, 1700000000999, b1, 2), NULL)};
  json_t *before = json_deep_copy(docs[0]);
  gs_error_t err = {0};
  json_t *sum = gs__stats_merge(docs, 2, &err);
  assert_non_null(sum);
  json_t *list = json_object_get(sum, "model_stats");
  assert_int_equal(json_array_size(list), 1);
  json_t *m = json_array_get(list, 0);
  assert_string_equal(json_string_value(json_object_get(m, "name")), "simple");
  assert_string_equal(json_string_value(json_object_get(m, "version")), "1");
  /* Counts and ns add up; last_inference is the latest. */
  assert_int_equal(at(m, "inference_stats.success.count"), 8);
  assert_int_equal(at(m, "inference_stats.success.ns"), 8000);
  assert_int_equal(at(m, "inference_stats.queue.ns"), 800);
  assert_int_equal(at(m, "inference_stats.fail.count"), 2);
  assert_int_equal(at(m, "inference_stats.cache_hit.count"), 0);
  assert_int_equal(at(m, "inference_count"), 8);
  assert_int_equal(at(m, "execution_count"), 8);
  assert_int_equal(at(m, "last_inference"), 1700000000999);
  /* batch_stats match by batch_size and come sorted by it. */
  json_t *b = json_object_get(m, "batch_stats");
  assert_int_equal(json_array_size(b), 3);
  assert_int_equal(at(b, "0.batch_size"), 1);
  assert_int_equal(at(b, "1.batch_size"), 2);
  assert_int_equal(at(b, "2.batch_size"), 4);
  assert_int_equal(at(b, "2.compute_infer.count"), 3);
  assert_int_equal(at(b, "2.compute_infer.ns"), 3000);
  assert_int_equal(at(b, "1.compute_input.count"), 1);
  /* The workers' documents are left as they were. */
  assert_true(json_equal(before, docs[0]));
  json_decref(before);
  json_decref(sum);
  json_decref(docs[0]);
  json_decref(docs[1]);
}

static void test_models_of_different_workers_are_all_listed(void **state) {
  (void)state;
  const uint64_t b[] = {1};
  json_t *docs[3] = {doc_of(model_stats("resnet", "1", 2, 20, 5, b, 1),
                            model_stats("bert", "1", 1, 10, 9, b, 1)),
                     doc_of(model_stats("bert", "1", 4, 40, 7, b, 1), NULL),
                     doc_of(model_stats("resnet", "2", 6, 60, 3, b, 1), NULL)};
  gs_error_t err = {0};
  json_t *sum = gs__stats_merge(docs, 3, &err);
  assert_non_null(sum);
  json_t *list = json_object_get(sum, "model_stats");
  /* (name, version) is the identity: resnet 1 and resnet 2 stay apart. */
  assert_int_equal(json_array_size(list), 3);
  for (size_t i = 0; i < 3; i++) {
    json_t *m = json_array_get(list, i);
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *version = json_string_value(json_object_get(m, "version"));
    json_int_t count = at(m, "inference_stats.success.count");
    if (strcmp(name, "bert") == 0) {
      assert_int_equal(count, 5);
      assert_int_equal(at(m, "last_inference"), 9);
      assert_int_equal(at(m, "batch_stats.0.compute_infer.count"), 2);
    } else {
      assert_string_equal(name, "resnet");
      assert_int_equal(count, strcmp(version, "1") == 0 ? 2 : 6);
      assert_int_equal(json_array_size(json_object_get(m, "batch_stats")), 1);
    }
  }
  json_decref(sum);
  for (size_t i = 0; i < 3; i++)
    json_decref(docs[i]);
}

static void test_no_workers_and_one_worker(void **state) {
  (void)state;
  gs_error_t err = {0};
  json_t *sum = gs__stats_merge(NULL, 0, &err);
  json_t *empty = json_pack("{s:[]}", "model_stats");
  assert_true(json_equal(sum, empty));
  json_decref(sum);
  json_decref(empty);
  const uint64_t b[] = {8, 2};
  json_t *doc = doc_of(model_stats("m", "3", 1, 2, 3, b, 2), NULL);
  sum = gs__stats_merge(&doc, 1, &err);
  assert_true(json_equal(sum, doc)); /* a sum of one is itself */
  json_decref(sum);
  json_decref(doc);
}

static void
test_a_document_that_is_not_statistics_names_the_worker(void **state) {
  (void)state;
  static const char *const bad_docs[] = {
      "[]",
      "{\"model_stats\": {}}",
      "{\"models\": []}",
      "{\"model_stats\": [{}, 3]}",
  };
  for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
    json_t *docs[3] = {json_pack("{s:[]}", "model_stats"),
                       json_pack("{s:[]}", "model_stats"),
                       json_loads(bad_docs[i], 0, NULL)};
    gs_error_t err = {0};
    assert_null(gs__stats_merge(docs, 3, &err));
    assert_int_equal(err.code, GS_EPARSE);
    if (!strstr(err.msg, "worker 2"))
      fail_msg("%s: '%s' does not name worker 2", bad_docs[i], err.msg);
    for (size_t d = 0; d < 3; d++)
      json_decref(docs[d]);
  }
  json_t *none = NULL;
  gs_error_t err = {0};
  assert_null(gs__stats_merge(&none, 1, &err));
  assert_non_null(strstr(err.msg, "worker 0"));
}

static void test_odd_numbers_saturate_and_extra_fields_merge(void **state) {
  (void)state;
  json_t *docs[2];
  docs[0] = json_loads(
      "{\"model_stats\":[{\"name\":\"m\",\"version\":\"1\","
      "\"inference_count\":9223372036854775000,\"execution_count\":-5,"
      "\"last_inference\":-1,\"ratio\":0.5,\"note\":\"first\",\"extra\":2,"
      "\"batch_stats\":[{\"batch_size\":2,\"compute_infer\":"
      "{\"count\":1,\"ns\":-9223372036854775800}}]}]}",
      0, NULL);
  docs[1] = json_loads(
      "{\"model_stats\":[{\"name\":\"m\",\"version\":\"1\","
      "\"inference_count\":9223372036854775000,\"execution_count\":-7,"
      "\"last_inference\":-3,\"ratio\":0.25,\"note\":\"second\",\"extra\":3,"
      "\"more\":4,\"batch_stats\":[{\"batch_size\":2,\"compute_infer\":"
      "{\"count\":1,\"ns\":-9223372036854775800}}]}]}",
      0, NULL);
  assert_non_null(docs[0]);
  assert_non_null(docs[1]);
  gs_error_t err = {0};
  json_t *sum = gs__stats_merge(docs, 2, &err);
  assert_non_null(sum);
  json_t *m = json_array_get(json_object_get(sum, "model_stats"), 0);
  assert_int_equal(at(m, "inference_count"), LLONG_MAX);
  assert_int_equal(at(m, "execution_count"), -12);
  assert_int_equal(at(m, "last_inference"), -1);
  assert_int_equal(at(m, "batch_stats.0.compute_infer.ns"), LLONG_MIN);
  /* Unknown fields: integers add, anything else keeps the first. */
  assert_int_equal(at(m, "extra"), 5);
  assert_int_equal(at(m, "more"), 4);
  assert_string_equal(json_string_value(json_object_get(m, "note")), "first");
  assert_true(json_real_value(json_object_get(m, "ratio")) == 0.5);
  json_decref(sum);
  json_decref(docs[0]);
  json_decref(docs[1]);
}

/* ---- metrics labels -------------------------------------------------------
 */

static char *relabel(const char *text, const char *label, bool with_help) {
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_METRICS);
  assert_int_equal(
      gs__metrics_relabel_buf(text, strlen(text), label, with_help, &b), 0);
  size_t len = 0;
  char *out = gs_buf_take(&b, &len);
  assert_non_null(out);
  assert_int_equal(strlen(out), len);
  return out;
}

static void expect_relabel(const char *text, const char *label, bool with_help,
                           const char *want) {
  char *got = relabel(text, label, with_help);
  assert_string_equal(got, want);
  free(got);
}

static void test_worker_metrics_gain_the_instance_label(void **state) {
  (void)state;
  gs__repo_t *repo = calloc(1, sizeof *repo);
  assert_non_null(repo);
  repo->n = 2;
  snprintf(repo->models[0].name, sizeof repo->models[0].name, "simple");
  snprintf(repo->models[0].version, sizeof repo->models[0].version, "1");
  repo->models[0].stats.success = (gs__stat_t){3, 4000};
  snprintf(repo->models[1].name, sizeof repo->models[1].name, "bert");
  snprintf(repo->models[1].version, sizeof repo->models[1].version, "2");
  size_t len;
  char *text = gs__metrics_text(repo, &len);
  assert_non_null(text);
  char *with = relabel(text, "0:1", true);
  /* HELP and TYPE stay; every sample has instance first. */
  assert_non_null(strstr(with, "# HELP nv_inference_request_success "));
  assert_non_null(
      strstr(with, "# TYPE nv_inference_request_success counter\n"));
  assert_non_null(strstr(with, "nv_inference_request_success{instance=\"0:1\","
                               "model=\"simple\",version=\"1\"} 3\n"));
  assert_non_null(strstr(with, "nv_inference_request_duration_us{instance="
                               "\"0:1\",model=\"simple\",version=\"1\"} 4\n"));
  assert_non_null(strstr(with, "nv_inference_request_failure{instance=\"0:1\","
                               "model=\"bert\",version=\"2\"} 0\n"));
  assert_non_null(strstr(with, "gpuslice_queue_full_requests{instance=\"0:1\","
                               "model=\"bert\",version=\"2\"} 0\n"));
  /* Without help, only the samples: 9 families (Triton's 7, the queue
   * policy's 2) x 2 models. */
  char *samples = relabel(text, "0:1", false);
  size_t lines = 0;
  for (const char *p = samples; (p = strchr(p, '\n')); p++)
    lines++;
  assert_int_equal(lines, 18);
  assert_null(strchr(samples, '#'));
  for (const char *p = samples; *p; p = strchr(p, '\n') + 1)
    assert_non_null(strstr(p, "{instance=\"0:1\",model="));
  free(samples);
  free(with);
  free(text);
  free(repo);
}

static void test_relabel_sample_forms(void **state) {
  (void)state;
  /* With labels, without, empty, spaces, timestamp kept. */
  expect_relabel("a{b=\"c\"} 1\n", "L", false, "a{instance=\"L\",b=\"c\"} 1\n");
  expect_relabel("up 1\n", "L", false, "up{instance=\"L\"} 1\n");
  expect_relabel("up{} 1 1700000000\n", "L", false,
                 "up{instance=\"L\"} 1 1700000000\n");
  expect_relabel("x_y:z  {a=\"1\"}\t2.5e3\n", "L", false,
                 "x_y:z{instance=\"L\",a=\"1\"} 2.5e3\n");
  /* Braces and escaped quotes inside values are part of the value. */
  expect_relabel("m{p=\"}{\",q=\"a\\\"}\"} 3\n", "L", false,
                 "m{instance=\"L\",p=\"}{\",q=\"a\\\"}\"} 3\n");
}

static void test_relabel_lines(void **state) {
  (void)state;
  /* CRLF and a last line without a newline. */
  expect_relabel("a 1\r\nb{c=\"d\"} 2", "L", false,
                 "a{instance=\"L\"} 1\nb{instance=\"L\",c=\"d\"} 2\n");
  /* Only HELP and TYPE comments survive, and only with_help. */
  expect_relabel("# HELP a doc\n# TYPE a gauge\n# just a note\n\n  \na 1\n",
                 "L", true,
                 "# HELP a doc\n# TYPE a gauge\na{instance=\"L\"} 1\n");
  /* Blanks between the tokens are any spaces or tabs (Prometheus's
   * parser); they come out in the usual spelling. */
  expect_relabel("#HELP\ta doc\n  #  TYPE  a gauge\r\n# HELPER x\n", "L", true,
                 "# HELP a doc\n# TYPE a gauge\n");
  expect_relabel("# HELP a doc\n# TYPE a gauge\na 1\n", "L", false,
                 "a{instance=\"L\"} 1\n");
  /* Lines that are not samples are dropped. */
  expect_relabel("{a=\"b\"} 1\n123 4\nm{a=\"b\" 1\nnovalue\nm{a=\"b\"}\n"
                 "bad-name 1\nok 1\n",
                 "L", false, "ok{instance=\"L\"} 1\n");
  expect_relabel("", "L", true, "");
}

static void test_relabel_escapes_the_label(void **state) {
  (void)state;
  /* Label values escape backslash, double quote and newline. */
  expect_relabel("a 1\n", "x\\y\"z\nw", false,
                 "a{instance=\"x\\\\y\\\"z\\nw\"} 1\n");
}

static void test_relabel_appends(void **state) {
  (void)state;
  gs_buf_t out;
  gs_buf_init(&out, GS_LIMIT_METRICS);
  assert_int_equal(gs_buf_adds(&out, "router_requests 5\n"), GS_OK);
  assert_int_equal(gs__metrics_relabel_buf("a 1\n", 4, "0:0", false, &out), 0);
  assert_int_equal(gs__metrics_relabel_buf("a 2", 3, "0:1", false, &out), 0);
  assert_string_equal(out.data, "router_requests 5\na{instance=\"0:0\"} 1\n"
                                "a{instance=\"0:1\"} 2\n");
  assert_int_equal(out.len, strlen(out.data));
  assert_true(out.cap > out.len);
  gs_buf_free(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_health_is_answered_by_the_router),
      cmocka_unit_test(test_stats_of_every_shape_are_summed),
      cmocka_unit_test(test_metrics_come_from_every_worker),
      cmocka_unit_test(test_repository_load_unload_go_to_every_worker),
      cmocka_unit_test(test_everything_else_goes_to_one_worker),
      cmocka_unit_test(test_query_strings_do_not_change_the_route),
      cmocka_unit_test(test_paths_split_as_the_worker_splits_them),
      cmocka_unit_test(test_admin_api),
      cmocka_unit_test(test_admin_wrong_method_is_405_naming_the_method),
      cmocka_unit_test(test_unknown_admin_path_is_404),
      cmocka_unit_test(test_admin_id_is_percent_decoded),
      cmocka_unit_test(test_bad_admin_ids_are_400),
      cmocka_unit_test(test_admin_id_must_fit_the_buffer),
      cmocka_unit_test(test_two_workers_add_up),
      cmocka_unit_test(test_models_of_different_workers_are_all_listed),
      cmocka_unit_test(test_no_workers_and_one_worker),
      cmocka_unit_test(test_a_document_that_is_not_statistics_names_the_worker),
      cmocka_unit_test(test_odd_numbers_saturate_and_extra_fields_merge),
      cmocka_unit_test(test_worker_metrics_gain_the_instance_label),
      cmocka_unit_test(test_relabel_sample_forms),
      cmocka_unit_test(test_relabel_lines),
      cmocka_unit_test(test_relabel_escapes_the_label),
      cmocka_unit_test(test_relabel_appends),
      cmocka_unit_test(test_round_robin_turn_is_shared),
      cmocka_unit_test(test_least_request_takes_the_less_busy_of_two),
      cmocka_unit_test(
          test_ejection_after_consecutive_failures_and_for_a_while),
      cmocka_unit_test(test_a_success_resets_the_failure_count),
      cmocka_unit_test(test_only_running_workers_are_ejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
