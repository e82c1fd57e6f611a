/* The worker's busy-poll pool (src/worker/pool.c, --busy-poll-us): jobs run
 * and answer on the loop thread; a job that follows the last one within
 * busy_poll_us is taken by the spinning thread without a wake-up; a burst
 * is not lost to the spinners; teardown waits for what is in flight and
 * refuses more; an idle pool and loop sleep; without a pool libuv's runs. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/pool.h"

typedef struct ctx_s {
  uv_loop_t *loop;
  bool stopped;
  unsigned chain_left; /* jobs the after callback still queues */
  unsigned want;       /* after callbacks to see before stopping */
  unsigned afters;
  _Atomic unsigned ran;
  unsigned sleep_us; /* each job's length */
  pthread_t first_thread;
  _Atomic unsigned other_thread; /* jobs on another thread than the first */
  bool bad_after;                /* a status other than 0, or a wrong loop */
} ctx_t;

typedef struct job_s {
  uv_work_t w;
  ctx_t *c;
} job_t;

static job_t jobs[256];

static void work(uv_work_t *w) {
  ctx_t *c = ((job_t *)w->data)->c;
  if (c->sleep_us)
    usleep(c->sleep_us);
  if (atomic_fetch_add(&c->ran, 1) == 0)
    c->first_thread = pthread_self();
  else if (!pthread_equal(c->first_thread, pthread_self()))
    atomic_fetch_add(&c->other_thread, 1);
}

static int submit(ctx_t *c, unsigned i);

static void after(uv_work_t *w, int status) {
  ctx_t *c = ((job_t *)w->data)->c;
  if (status != 0 || w->loop != c->loop)
    c->bad_after = true;
  c->afters++;
  if (c->chain_left) {
    c->chain_left--;
    assert_int_equal(submit(c, c->afters), 0);
  }
  if (c->afters == c->want)
    c->stopped = true;
}

static int submit(ctx_t *c, unsigned i) {
  jobs[i].c = c;
  jobs[i].w.data = &jobs[i];
  return gs__queue_work(c->loop, &jobs[i].w, work, after);
}

static void close_all(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* Until every thread of p sleeps (started and past its spin; a thread's
 * start is slow under ASan), at most 10 s. */
static void all_asleep(gs__pool_t *p, unsigned threads) {
  for (int i = 0; i < 10000 && gs__pool_sleepers(p) < threads; i++)
    usleep(1000);
  assert_int_equal(gs__pool_sleepers(p), threads);
}

static gs__pool_t *pool_on(uv_loop_t *loop, unsigned threads, unsigned us) {
  gs__pool_t *p = NULL;
  gs_error_t err = {0};
  assert_int_equal(uv_loop_init(loop), 0);
  assert_int_equal(gs__pool_create(&p, loop, threads, us, &err), GS_OK);
  assert_ptr_equal(loop->data, p);
  all_asleep(p, threads);
  return p;
}

static void pool_off(uv_loop_t *loop, gs__pool_t *p) {
  gs__pool_quiesce(p);
  uv_walk(loop, close_all, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  gs__pool_destroy(p);
  assert_null(loop->data);
  assert_int_equal(uv_loop_close(loop), 0);
}

/* c=1: each job queued from the last one's answer; the thread that ran it
 * is still spinning, so no thread sleeps or wakes between them. */
static void test_chain_needs_no_wakeup(void **state) {
  (void)state;
  uv_loop_t loop;
  gs__pool_t *p = pool_on(&loop, 2, 200000);
  ctx_t c = {.loop = &loop, .chain_left = 49, .want = 50};
  uint64_t before = gs__pool_wakeups(p);
  assert_int_equal(submit(&c, 0), 0);
  gs__pool_run_loop(&loop, &c.stopped);
  assert_int_equal(c.afters, 50);
  assert_int_equal(atomic_load(&c.ran), 50);
  assert_false(c.bad_after);
  assert_int_equal(gs__pool_in_flight(p), 0);
  /* the first job may wake a thread; none of the 49 after it */
  assert_true(gs__pool_wakeups(p) - before <= 1);
  assert_int_equal(atomic_load(&c.other_thread), 0);
  pool_off(&loop, p);
}

/* Many jobs at once: the spinners take some, sleepers are woken for the
 * rest, none is lost. */
static void test_burst_all_done(void **state) {
  (void)state;
  uv_loop_t loop;
  gs__pool_t *p = pool_on(&loop, 4, 1000);
  ctx_t c = {.loop = &loop, .want = 200, .sleep_us = 50};
  for (unsigned i = 0; i < 200; i++)
    assert_int_equal(submit(&c, i), 0);
  assert_int_equal(gs__pool_in_flight(p), 200);
  gs__pool_run_loop(&loop, &c.stopped);
  assert_int_equal(c.afters, 200);
  assert_int_equal(atomic_load(&c.ran), 200);
  assert_false(c.bad_after);
  assert_int_equal(gs__pool_in_flight(p), 0);
  pool_off(&loop, p);
}

/* Teardown: quiesce answers what is in flight, then refuses new jobs. */
static void test_quiesce_then_refuse(void **state) {
  (void)state;
  uv_loop_t loop;
  gs__pool_t *p = pool_on(&loop, 2, 500);
  ctx_t c = {.loop = &loop, .want = 5, .sleep_us = 20000};
  for (unsigned i = 0; i < 5; i++)
    assert_int_equal(submit(&c, i), 0);
  gs__pool_quiesce(p);
  assert_int_equal(c.afters, 5);
  assert_int_equal(gs__pool_in_flight(p), 0);
  assert_int_equal(submit(&c, 5), UV_ECANCELED);
  pool_off(&loop, p);
}

/* The loop thread's (this one's) CPU time. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_timer(uv_timer_t *t) {
  *(bool *)t->data = true;
}

/* Idle: busy_poll_us after the last job the threads and the loop sleep;
 * 500 ms of waiting for a timer then costs the loop thread a few ms of CPU
 * (a spinning loop, even one that yields on a loaded machine, takes a
 * share of the 500) and the threads stay asleep. */
static void test_idle_sleeps(void **state) {
  (void)state;
  uv_loop_t loop;
  gs__pool_t *p = pool_on(&loop, 2, 1000);
  ctx_t c = {.loop = &loop, .want = 2};
  for (unsigned i = 0; i < 2; i++)
    assert_int_equal(submit(&c, i), 0);
  gs__pool_run_loop(&loop, &c.stopped);
  assert_int_equal(c.afters, 2);
  all_asleep(p, 2); /* past the spin */
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  c.stopped = false;
  t.data = &c.stopped;
  uv_timer_start(&t, on_timer, 500, 0);
  uint64_t woke = gs__pool_wakeups(p);
  double cpu0 = cpu_s();
  gs__pool_run_loop(&loop, &c.stopped);
  double used = cpu_s() - cpu0;
  if (used > 0.025)
    fail_msg("500 ms idle: the loop used %.0f ms of CPU: it spins", used * 1e3);
  /* and the pool's threads slept through it */
  assert_int_equal(gs__pool_wakeups(p), woke);
  assert_int_equal(gs__pool_sleepers(p), 2);
  pool_off(&loop, p);
}

/* No pool: libuv's, and the loop runs as uv_run(UV_RUN_DEFAULT). */
static void test_no_pool_is_libuv(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  loop.data = NULL;
  ctx_t c = {.loop = &loop, .want = 3};
  for (unsigned i = 0; i < 3; i++)
    assert_int_equal(submit(&c, i), 0);
  gs__pool_run_loop(&loop, &c.stopped); /* returns: nothing left */
  assert_int_equal(c.afters, 3);
  assert_false(c.bad_after);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_needs_no_wakeup),
      cmocka_unit_test(test_burst_all_done),
      cmocka_unit_test(test_quiesce_then_refuse),
      cmocka_unit_test(test_idle_sleeps),
      cmocka_unit_test(test_no_pool_is_libuv),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
