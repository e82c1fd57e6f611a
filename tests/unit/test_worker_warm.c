/* Warm models (issue 12: "planned at load; the worker never allocates on the
 * request path"; "each batch size the worker runs is captured once ...; the
 * dynamic batcher pads to the nearest captured size"). On the CPU provider
 * with config.json "warmup": true, the same logic a CUDA model gets: the
 * sizes planned at load are every size a batch can be padded to; the load
 * makes instance_group count sessions and plans each; a request that finds
 * no idle session waits for one rather than making one; a request without
 * dynamic batching runs padded to a planned size. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/test_hooks.h"
#include "test_onnx_build.h"
#include "test_tmpdir.h"
#include "worker/worker_int.h"

static bool has_size(const uint64_t *sizes, size_t n, uint64_t size) {
  for (size_t i = 0; i < n; i++)
    if (sizes[i] == size)
      return true;
  return false;
}

static void check_sizes(unsigned max, const unsigned *pref, unsigned n_pref,
                        const uint64_t *want, size_t n_want) {
  static const gs_tensor_info_t in[] = {{"x", GS_DTYPE_FP32, 2, {-1, 2}}};
  gs__model_slot_t slot;
  memset(&slot, 0, sizeof slot);
  slot.max_batch_size = max;
  slot.warm = true;
  slot.io = (gs__model_io_t){"m", "1", 1, 1, in, in, NULL, 0};
  slot.batching.n_preferred = n_pref;
  if (n_pref)
    memcpy(slot.batching.preferred, pref, n_pref * sizeof *pref);
  uint64_t sizes[GS__MAX_PLANNED_SIZES];
  size_t n = gs__slot_planned_sizes(&slot, sizes, GS__MAX_PLANNED_SIZES);
  assert_int_equal(n, n_want);
  assert_memory_equal(sizes, want, n * sizeof *want);
  /* Whatever a batch of rows is padded to was planned. */
  for (uint64_t rows = 1; rows <= max; rows++) {
    uint64_t padded = gs__batch_padded_rows(&slot, rows);
    assert_true(padded >= rows);
    if (!has_size(sizes, n, padded))
      fail_msg("max %u: %llu rows run as %llu, which was not planned", max,
               (unsigned long long)rows, (unsigned long long)padded);
  }
}

static void test_planned_sizes_cover_padding(void **state) {
  (void)state;
  static const unsigned demo[] = {8, 16, 32, 64}, six[] = {6};
  static const uint64_t demo_sizes[] = {64, 32, 16, 8, 4, 2, 1},
                        twelve_sizes[] = {12, 8, 6, 4, 2, 1}, one[] = {1};
  check_sizes(64, demo, 4, demo_sizes, 7);
  check_sizes(12, six, 1, twelve_sizes, 6);
  check_sizes(1, NULL, 0, one, 1);
}

/* No batch dimension: the one fixed shape; a variable dimension other than
 * the batch: nothing can be planned ahead. */
static void test_planned_sizes_fixed_and_variable(void **state) {
  (void)state;
  static const gs_tensor_info_t fixed[] = {{"x", GS_DTYPE_FP32, 2, {3, 2}}},
                                vary[] = {{"x", GS_DTYPE_FP32, 2, {-1, -1}}};
  gs__model_slot_t slot;
  memset(&slot, 0, sizeof slot);
  slot.io = (gs__model_io_t){"m", "1", 1, 1, fixed, fixed, NULL, 0};
  uint64_t sizes[GS__MAX_PLANNED_SIZES];
  assert_int_equal(gs__slot_planned_sizes(&slot, sizes, 40), 1);
  assert_int_equal(sizes[0], 0);
  slot.io.inputs = vary;
  slot.max_batch_size = 8;
  assert_int_equal(gs__slot_planned_sizes(&slot, sizes, 40), 0);
}

/* x [N,2] -> Gemm(w [3,2], transB) -> y [N,3]: y = (x0, x1, x0 + x1). */
static void write_model(const char *dir, const char *name, const char *config) {
  static const float w[6] = {1, 0, 0, 1, 1, 1};
  static const int64_t wd[2] = {3, 2}, xd[2] = {-1, 2}, yd[2] = {-1, 3};
  graph_t g = {.n_in = 1, .n_out = 1, .n_init = 1};
  g.nodes[g.n_nodes++] =
      node("Gemm", "fc", "x,w", "y", attr_i("transB", 1), NULL);
  g.init[0] = init_tensor("w", ELEM_F32, 2, wd, w);
  g.in[0] = info("x", ELEM_F32, 2, xd);
  g.out[0] = info("y", ELEM_F32, 2, yd);
  size_t len;
  uint8_t *buf = pack(&g, &len);
  char path[512];
  snprintf(path, sizeof path, "mkdir -p '%s/%s/1'", dir, name);
  assert_int_equal(system(path), 0);
  snprintf(path, sizeof path, "%s/%s/1/model.onnx", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, len, f), len);
  fclose(f);
  snprintf(path, sizeof path, "%s/%s/config.json", dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(config, f);
  fclose(f);
}

typedef struct {
  char dir[256];
  gs__repo_t repo;
} fixture_t;

static int setup(void **state) {
  static fixture_t fx;
  gs_error_t err = {0};
  if (test_tmpdir_make(fx.dir, sizeof fx.dir, "warm") != 0)
    return -1;
  write_model(fx.dir, "warm",
              "{\"max_batch_size\": 8, \"warmup\": true, \"instance_group\": "
              "[{\"kind\": \"KIND_CPU\", \"count\": 2}]}");
  write_model(fx.dir, "cold",
              "{\"max_batch_size\": 8, \"instance_group\": [{\"kind\": "
              "\"KIND_CPU\"}]}");
  if (gs__repo_open(&fx.repo, fx.dir, &err) != GS_OK)
    return -1;
  *state = &fx;
  return 0;
}

static int teardown(void **state) {
  fixture_t *fx = *state;
  gs__repo_close(&fx->repo);
  test_tmpdir_remove(fx->dir);
  return free_kept(state);
}

static gs__model_slot_t *ready_slot(fixture_t *fx, const char *name) {
  gs__model_entry_t *m = gs__repo_find(&fx->repo, name);
  assert_non_null(m);
  if (m->state != GS__MODEL_READY)
    fail_msg("%s is not ready: %s", name, m->reason);
  return m->slot;
}

/* count sessions, made and planned at load (each ran its sizes: it holds a
 * plan); the batcher runs as many batches at once. A model without warmup
 * on the CPU keeps today's behaviour. */
static void test_load_plans_every_session(void **state) {
  fixture_t *fx = *state;
  gs__model_slot_t *s = ready_slot(fx, "warm");
  assert_true(s->warm);
  assert_int_equal(s->n_sessions, 2);
  assert_int_equal(s->n_idle, 2);
  for (unsigned i = 0; i < s->n_idle; i++)
    assert_true(gs_session_planned_bytes(s->idle[i]) > 0);
  assert_int_equal(gs__repo_find(&fx->repo, "warm")->placement.count, 2);
  print_message("load: %s\n", s->load_note);
  const char *want = "2 sessions, batch sizes {1,2,4,8} planned in ";
  assert_memory_equal(s->load_note, want, strlen(want));
  assert_non_null(strstr(s->load_note, " ms"));
  gs__model_slot_t *cold = ready_slot(fx, "cold");
  assert_false(cold->warm);
  assert_string_equal(cold->load_note, "");
}

typedef struct {
  gs__model_slot_t *slot;
  gs_session_t *got;
  volatile int done;
} getter_t;

static void *get_one(void *arg) {
  getter_t *g = arg;
  gs_error_t err = {0};
  g->got = gs__slot_get(g->slot, &err);
  __atomic_store_n(&g->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* Both of the slot's sessions taken (*a, *b) and a third request waiting
 * for one on thread *t (g): it has not got one. */
static void busy_with_waiter(gs__model_slot_t *s, gs_session_t **a,
                             gs_session_t **b, getter_t *g, pthread_t *t) {
  gs_error_t err = {0};
  *a = gs__slot_get(s, &err);
  *b = gs__slot_get(s, &err);
  assert_non_null(*a);
  assert_non_null(*b);
  *g = (getter_t){s, NULL, 0};
  assert_int_equal(pthread_create(t, NULL, get_one, g), 0);
  nanosleep(&(struct timespec){0, 150000000}, NULL);
  assert_int_equal(__atomic_load_n(&g->done, __ATOMIC_SEQ_CST), 0);
}

/* Both sessions busy: a third request waits for one of them and runs on
 * it; it never makes a session of its own. */
static void test_request_waits_for_a_session(void **state) {
  fixture_t *fx = *state;
  gs__model_slot_t *s = ready_slot(fx, "warm");
  gs_session_t *a, *b;
  getter_t g;
  pthread_t t;
  busy_with_waiter(s, &a, &b, &g, &t);
  gs__slot_put(s, b);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_ptr_equal(g.got, b);
  gs__slot_put(s, g.got);
  gs__slot_put(s, a);
  assert_int_equal(s->n_idle, 2);
}

static gs__infer_job_t *infer(fixture_t *fx, const char *body) {
  static gs__infer_job_t job;
  static gs__http_response_t resp;
  gs__http_request_t req = {.method = HTTP_POST,
                            .url = strdup("/v2/models/warm/infer"),
                            .body = strdup(body),
                            .body_len = strlen(body),
                            .infer_header_len = -1};
  memset(&job, 0, sizeof job);
  resp = (gs__http_response_t){.infer_header_len = -1};
  int routed = gs__route(&fx->repo, &req, &resp, &job);
  if (routed != 1)
    fail_msg("route: %d, status %d: %s", routed, resp.status,
             resp.body ? resp.body : "");
  gs__infer_job_run(&job);
  gs__infer_job_finish(&job);
  gs__http_response_release(&resp);
  free(req.url);
  return &job;
}

/* Without dynamic batching, 3 rows run as 4 (a planned size) and the answer
 * holds the 3 rows asked for; 9 rows (over max_batch_size) are a 400. */
static void test_unbatched_request_runs_padded(void **state) {
  fixture_t *fx = *state;
  gs__model_slot_t *s = ready_slot(fx, "warm");
  gs__infer_job_t *job =
      infer(fx, "{\"inputs\":[{\"name\":\"x\",\"shape\":[3,2],\"datatype\":"
                "\"FP32\",\"data\":[1,2,3,4,5,6]}]}");
  if (job->resp.status != 200)
    fail_msg("status %d: %s", job->resp.status, job->resp.body);
  assert_non_null(strstr(job->resp.body, "\"shape\":[3,3]"));
  assert_non_null(strstr(job->resp.body,
                         "\"data\":[1.0,2.0,3.0,3.0,4.0,7.0,5.0,6.0,11.0]"));
  gs__http_response_release(&job->resp);
  /* The session it ran on is back on top of the pool: its last run. */
  const gs_tensor_t *y = gs_session_output(s->idle[s->n_idle - 1], 0);
  assert_non_null(y);
  assert_int_equal(y->shape[0], 4);
  job = infer(fx, "{\"inputs\":[{\"name\":\"x\",\"shape\":[9,2],\"datatype\":"
                  "\"FP32\",\"data\":[1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9]}]}");
  assert_int_equal(job->resp.status, 400);
  gs__http_response_release(&job->resp);
}

/* A run that fails in the driver ends the slot's device: a request waiting
 * for a session is answered at once, and one that comes later is a 503
 * naming the failure, not a run on a dead context (the worker exits to be
 * restarted meanwhile). The slot is made to serve again at the end: the
 * fixture is shared. */
static void test_device_failure_answers_the_waiting(void **state) {
  fixture_t *fx = *state;
  gs__model_slot_t *s = ready_slot(fx, "warm");
  gs_session_t *a, *b;
  getter_t g;
  pthread_t t;
  busy_with_waiter(s, &a, &b, &g, &t);
  gs__infer_job_t failed = {.slot = s};
  gs_error_t derr = {0};
  gs_error_set(&derr, GS_EDRIVER, "CUDA: an illegal memory access");
  gs__infer_job_note_error(&failed, &derr);
  assert_true(failed.device_failed);
  for (int i = 0; i < 200 && !__atomic_load_n(&g.done, __ATOMIC_SEQ_CST); i++)
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  bool woke = __atomic_load_n(&g.done, __ATOMIC_SEQ_CST);
  gs__slot_put(s, b); /* a waiter still there takes it: the test ends */
  assert_int_equal(pthread_join(t, NULL), 0);
  if (!woke)
    fail_msg("a request waiting for a session still waited 2 s after the "
             "device failed");
  assert_null(g.got);
  gs__slot_put(s, a);
  /* The run's own report never reached the repository here (no job of
   * it finished): the next request's 503 makes it hear of the failure. */
  gs__model_entry_t *m = gs__repo_find(&fx->repo, "warm");
  assert_int_equal(m->state, GS__MODEL_READY);
  gs__infer_job_t *job =
      infer(fx, "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,2],\"datatype\":"
                "\"FP32\",\"data\":[1,2]}]}");
  assert_int_equal(job->resp.status, 503);
  assert_non_null(strstr(job->resp.body, "the device failed while serving"));
  assert_non_null(strstr(job->resp.body, "an illegal memory access"));
  assert_false(job->device_failed); /* it did not run: no run's report */
  gs__http_response_release(&job->resp);
  assert_int_equal(m->state, GS__MODEL_UNAVAILABLE); /* the slot is gone */
  assert_non_null(strstr(m->reason, "an illegal memory access"));
}

/* ---- planning after ready ------------------------------------------------ */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cond;
  char line[1400];
  unsigned lines;
} notes_t;

static void take_note(void *ctx, const char *line) {
  notes_t *n = ctx;
  pthread_mutex_lock(&n->mu);
  snprintf(n->line, sizeof n->line, "%s", line);
  n->lines++;
  pthread_cond_broadcast(&n->cond);
  pthread_mutex_unlock(&n->mu);
}

/* The model "late" (max_batch_size 8, two sessions) in a repository of its
 * own (the caller closes and frees it), planned up to before rows before
 * ready, the rest held back delay_ms by the test hook (reset by the
 * caller). */
static gs__repo_t *open_late(char *dir, size_t cap, unsigned before,
                             unsigned delay_ms, notes_t *notes) {
  gs_error_t err = {0};
  gs__repo_t *repo = calloc(1, sizeof *repo);
  assert_non_null(repo);
  gs__test_hooks.late_plan_delay_ms = delay_ms;
  assert_int_equal(test_tmpdir_make(dir, cap, "late"), 0);
  write_model(dir, "late",
              "{\"max_batch_size\": 8, \"warmup\": true, \"instance_group\": "
              "[{\"kind\": \"KIND_CPU\", \"count\": 2}]}");
  gs_worker_options_t opts = {.model_repository = dir,
                              .plan_before_ready = before,
                              .note = take_note,
                              .note_ctx = notes};
  if (gs__repo_open_opts(repo, &opts, &err) != GS_OK)
    fail_msg("open: %s", err.msg);
  return repo;
}

/* plan_before_ready 2: sizes 1 and 2 plan before the model is ready, 4 and
 * 8 after, on the slot's thread (held back here 400 ms by the test hook);
 * meanwhile the batcher's batches stay at 2 rows; then a note says what
 * was planned, every session is back in the pool and batches take 8. */
static void test_large_sizes_plan_after_ready(void **state) {
  (void)state;
  static notes_t notes = {.mu = PTHREAD_MUTEX_INITIALIZER,
                          .cond = PTHREAD_COND_INITIALIZER};
  char dir[256];
  gs__repo_t *repo = open_late(dir, sizeof dir, 2, 400, &notes);
  gs__model_entry_t *m = gs__repo_find(repo, "late");
  assert_non_null(m);
  assert_int_equal(m->state, GS__MODEL_READY);
  gs__model_slot_t *s = m->slot;
  print_message("load: %s\n", s->load_note);
  const char *want = "2 sessions, batch sizes {1,2} planned in ";
  assert_memory_equal(s->load_note, want, strlen(want));
  assert_non_null(strstr(s->load_note, " ms, {4,8} to plan after ready; "));
  assert_int_equal(gs__slot_batch_max(s), 2);
  pthread_mutex_lock(&notes.mu);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 20;
  while (notes.lines == 0 &&
         pthread_cond_timedwait(&notes.cond, &notes.mu, &until) == 0)
    ;
  pthread_mutex_unlock(&notes.mu);
  if (notes.lines != 1)
    fail_msg("%u notes in 20 s, not one", notes.lines);
  print_message("note: %s\n", notes.line);
  want = "model late: batch sizes {4,8} planned after ready in ";
  assert_memory_equal(notes.line, want, strlen(want));
  assert_int_equal(gs__slot_batch_max(s), 8);
  pthread_mutex_lock(&s->lock);
  assert_int_equal(s->n_idle, 2);
  pthread_mutex_unlock(&s->lock);
  gs__repo_close(repo);
  gs__test_hooks.late_plan_delay_ms = 0;
  free(repo);
  test_tmpdir_remove(dir);
}

/* A model unloaded while its large sizes are still to plan: the planning
 * stops (the close does not wait for the sizes), says nothing, and leaks
 * nothing (the sanitizer build checks that). */
static void test_unload_stops_planning_after_ready(void **state) {
  (void)state;
  static notes_t notes = {.mu = PTHREAD_MUTEX_INITIALIZER,
                          .cond = PTHREAD_COND_INITIALIZER};
  char dir[256];
  gs__repo_t *repo = open_late(dir, sizeof dir, 1, 60000, &notes);
  assert_int_equal(gs__slot_batch_max(gs__repo_find(repo, "late")->slot), 1);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  gs__repo_close(repo);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  gs__test_hooks.late_plan_delay_ms = 0;
  double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  if (s > 30)
    fail_msg("closing the repository waited %.1f s for the planning", s);
  assert_int_equal(notes.lines, 0);
  free(repo);
  test_tmpdir_remove(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_planned_sizes_cover_padding),
      cmocka_unit_test(test_planned_sizes_fixed_and_variable),
      cmocka_unit_test(test_load_plans_every_session),
      cmocka_unit_test(test_request_waits_for_a_session),
      cmocka_unit_test(test_unbatched_request_runs_padded),
      cmocka_unit_test(test_device_failure_answers_the_waiting),
      cmocka_unit_test(test_large_sizes_plan_after_ready),
      cmocka_unit_test(test_unload_stops_planning_after_ready),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
