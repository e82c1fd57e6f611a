/* gpuslice serve's supervisor restarts its workers: at once after a worker
 * that ran a while exits, then with a backoff that doubles from 100 ms (up
 * to 5 s) while it keeps exiting within 10 s of its start; a worker that
 * does not say it is ready within the start timeout is killed and
 * restarted. Real child processes (sh) on a libuv loop; the delays are
 * read from the restart timer, never waited for. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "serve/serve_int.h"
#include "test_tmpdir.h"

static char tmpdir[256];
static const char *child_script = "exit 3";

static int worker_argv(void *ctx, const gs_serve_instance_t *inst, unsigned n,
                       char **argv, char *buf, size_t buf_size,
                       gs_error_t *err) {
  (void)ctx, (void)inst, (void)n, (void)buf, (void)buf_size, (void)err;
  argv[0] = "/bin/sh";
  argv[1] = "-c";
  argv[2] = (char *)child_script;
  argv[3] = NULL;
  return GS_OK;
}

static gs__serve_t *serve_new(void) {
  gs__serve_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  assert_int_equal(uv_loop_init(&s->loop), 0);
  s->opt.worker_argv = worker_argv;
  s->opt.log_dir = tmpdir;
  s->opt.workers_per_instance = 1;
  s->opt.start_timeout_ms = 1000;
  s->opt.restart_unhealthy_ms = 1000;
  s->started = true; /* past the first start: exits are not start errors */
  return s;
}

static void serve_free(gs__serve_t *s) {
  s->draining = true; /* exits are not restarted */
  for (gs__wk_t *wk = s->workers, *next; wk; wk = next) {
    next = wk->next;
    gs__wk_stop(wk, SIGKILL);
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&s->loop), 0);
  free(s->last_view);
  free(s);
}

static gs__wk_t *add_worker(gs__serve_t *s) {
  gs_serve_instance_t inst = {.id = "0:1", .uuid = "GPU-test"};
  gs_error_t err;
  assert_int_equal(gs__wk_add(s, &inst, 0, &err), GS_OK);
  return s->workers;
}

/* Runs the loop until the worker's process has exited and its restart is
 * scheduled; the restart delay in ms. */
static uint64_t until_restart_scheduled(gs__serve_t *s, gs__wk_t *wk) {
  /* NOWAIT: UV_RUN_ONCE would also run a restart due at once */
  while (wk->state != GS__PROC_WAITING) {
    uv_run(&s->loop, UV_RUN_NOWAIT);
    if (wk->state != GS__PROC_WAITING)
      usleep(1000);
  }
  assert_true(uv_is_active((uv_handle_t *)&wk->restart_timer));
  return uv_timer_get_due_in(&wk->restart_timer);
}

/* Restarts it now instead of after the delay. */
static void restart_now(gs__wk_t *wk) {
  uv_timer_stop(&wk->restart_timer);
  gs__wk_start(wk);
  assert_int_equal(wk->state, GS__PROC_STARTING);
}

static void test_quick_exits_back_off_doubling_up_to_5s(void **state) {
  (void)state;
  static const uint64_t want_ms[] = {100,  200,  400,  800,
                                     1600, 3200, 5000, 5000};
  gs__serve_t *s = serve_new();
  gs__wk_t *wk = add_worker(s);
  for (size_t i = 0; i < sizeof want_ms / sizeof want_ms[0]; i++) {
    if (i > 0)
      restart_now(wk);
    uint64_t delay = until_restart_scheduled(s, wk);
    /* the timer was armed at most one loop turn before it was read */
    assert_true(delay <= want_ms[i]);
    assert_true(delay + 50 >= want_ms[i]);
    assert_int_equal(wk->restarts, i + 1);
  }
  serve_free(s);
}

static void test_an_exit_after_a_long_run_restarts_at_once(void **state) {
  (void)state;
  gs__serve_t *s = serve_new();
  gs__wk_t *wk = add_worker(s);
  until_restart_scheduled(s, wk);
  restart_now(wk);
  until_restart_scheduled(s, wk); /* two quick exits: backing off */
  restart_now(wk);
  wk->started_ns -= 11ull * 1000000000ull; /* as if it had run 11 s */
  assert_int_equal(until_restart_scheduled(s, wk), 0);
  restart_now(wk);
  uint64_t delay = until_restart_scheduled(s, wk); /* from the start */
  assert_true(delay <= 100 && delay + 50 >= 100);
  serve_free(s);
}

/* A worker that never says "ready" is killed once the start timeout has
 * passed, and then restarted like any worker that exits. */
static void test_a_worker_not_ready_in_time_is_killed(void **state) {
  (void)state;
  child_script = "exec sleep 30";
  gs__serve_t *s = serve_new();
  gs__wk_t *wk = add_worker(s);
  child_script = "exit 3";
  uint64_t stale = gs__serve_now_ns() - 2ull * 1000000000ull;
  wk->started_ns = stale; /* started 2 s ago; the timeout is 1 s */
  gs__health_tick(s);
  bool killed = wk->started_ns != stale; /* it notes the kill's time */
  if (!killed)
    kill(wk->pid, SIGKILL); /* no 30 s wait for the failure */
  assert_true(killed);
  until_restart_scheduled(s, wk);
  assert_int_equal(wk->restarts, 1);
  serve_free(s);
}

/* Not yet out of time: left alone. */
static void test_a_worker_within_its_start_timeout_is_left_alone(void **state) {
  (void)state;
  child_script = "exec sleep 30";
  gs__serve_t *s = serve_new();
  gs__wk_t *wk = add_worker(s);
  child_script = "exit 3";
  uint64_t started = gs__serve_now_ns() - 500ull * 1000000ull; /* 0.5 s */
  wk->started_ns = started;
  gs__health_tick(s);
  assert_int_equal(wk->started_ns, started);
  assert_int_equal(wk->state, GS__PROC_STARTING);
  kill(wk->pid, SIGKILL);
  until_restart_scheduled(s, wk);
  serve_free(s);
}

static int setup(void **state) {
  (void)state;
  return test_tmpdir_make(tmpdir, sizeof tmpdir, "serve_supervisor");
}

static int teardown(void **state) {
  (void)state;
  return test_tmpdir_remove(tmpdir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quick_exits_back_off_doubling_up_to_5s),
      cmocka_unit_test(test_an_exit_after_a_long_run_restarts_at_once),
      cmocka_unit_test(test_a_worker_not_ready_in_time_is_killed),
      cmocka_unit_test(test_a_worker_within_its_start_timeout_is_left_alone),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
