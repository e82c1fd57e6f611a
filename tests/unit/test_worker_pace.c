/* The worker's rate limit arithmetic (src/worker/pace.c, --rate-limit) on
 * a clock the test moves: a request starts when the theoretical arrival
 * time has come, charged the last request's rows; its end settles the
 * charge to its real rows; idle time earns no burst; a failed request
 * gives its charge back; a sequence's request is charged without waiting;
 * no limit at 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "gpuslice/worker.h"
#include "worker/pace.h"

#define MS 1000000ull

/* 100 inferences a second: 10 ms a row. */
static void test_rows_cost_time(void **state) {
  (void)state;
  gs__pacer_t p;
  gs__pace_init(&p, 100);
  assert_int_equal(p.ns_per_row, 10 * MS);
  uint64_t t = 1000 * MS;
  assert_int_equal(gs__pace_admit(&p, t), 1); /* first: one row expected */
  assert_int_equal(gs__pace_wait_ns(&p, t), 10 * MS);
  assert_int_equal(gs__pace_admit(&p, t + 5 * MS), 0); /* not yet */
  /* It ran 64 rows: the next waits 64 rows' time from the start. */
  gs__pace_settle(&p, 1, 64);
  assert_int_equal(gs__pace_wait_ns(&p, t + 5 * MS), 635 * MS);
  assert_int_equal(gs__pace_admit(&p, t + 639 * MS), 0);
  /* At its turn the next is charged 64 (the last one's rows). */
  assert_int_equal(gs__pace_admit(&p, t + 640 * MS), 64);
  assert_int_equal(gs__pace_wait_ns(&p, t + 640 * MS), 640 * MS);
}

/* Over many closed-loop requests of 8 rows at 100/s, the rows started in
 * a window never pass the rate by more than one request's. */
static void test_closed_loop_holds_rate(void **state) {
  (void)state;
  gs__pacer_t p;
  gs__pace_init(&p, 100);
  uint64_t t = 0, started_rows = 0, first = 0;
  unsigned starts = 0;
  for (unsigned i = 0; i < 10000 && starts < 50; i++, t += MS) {
    uint64_t c = gs__pace_admit(&p, t);
    if (!c)
      continue;
    if (!starts)
      first = t;
    starts++;
    started_rows += 8;
    gs__pace_settle(&p, c, 8); /* it ran 8 rows */
  }
  assert_int_equal(starts, 50);
  /* 49 gaps of 8 rows at 10 ms a row */
  uint64_t elapsed = t - MS - first;
  assert_true(elapsed >= 49 * 80 * MS);
  assert_true(elapsed <= 49 * 80 * MS + 2 * 80 * MS);
  assert_int_equal(started_rows, 400);
}

/* An idle pacer starts the next request at once, but only one: idle time
 * is not saved up as a burst. */
static void test_idle_earns_no_burst(void **state) {
  (void)state;
  gs__pacer_t p;
  gs__pace_init(&p, 10);
  assert_int_equal(gs__pace_admit(&p, 0), 1);
  gs__pace_settle(&p, 1, 1);
  uint64_t later = 3600000 * MS; /* an hour idle */
  assert_int_equal(gs__pace_admit(&p, later), 1);
  assert_int_equal(gs__pace_admit(&p, later), 0);
  assert_int_equal(gs__pace_wait_ns(&p, later), 100 * MS);
}

/* A request that failed before running (0 rows) gives its charge back and
 * leaves the next charge as it was. */
static void test_failure_refunds(void **state) {
  (void)state;
  gs__pacer_t p;
  gs__pace_init(&p, 100);
  assert_int_equal(gs__pace_admit(&p, 0), 1);
  gs__pace_settle(&p, 1, 16);
  assert_int_equal(gs__pace_admit(&p, 160 * MS), 16);
  gs__pace_settle(&p, 16, 0); /* it failed */
  assert_int_equal(gs__pace_wait_ns(&p, 160 * MS), 0);
  assert_int_equal(gs__pace_admit(&p, 160 * MS), 16);
}

/* Rates at the ends: 0 is no limit, the most a limit says
 * (GS_WORKER_MAX_RATE_LIMIT) is 10 ns a row, the least a second, and rows
 * so large they would overflow are capped. */
static void test_rate_ends(void **state) {
  (void)state;
  gs__pacer_t p;
  gs__pace_init(&p, 0);
  assert_int_equal(p.ns_per_row, 0);
  gs__pace_init(&p, GS_WORKER_MAX_RATE_LIMIT);
  assert_int_equal(p.ns_per_row, 10);
  gs__pace_init(&p, 1);
  assert_int_equal(p.ns_per_row, 1000000000ull);
  assert_int_equal(gs__pace_admit(&p, 0), 1);
  gs__pace_settle(&p, 1, UINT64_MAX);
  assert_true(gs__pace_wait_ns(&p, 0) >= (1ull << 32) * 1000000000ull - 1);
}

/* A sequence's request starts regardless: it is charged after what is
 * already owed (so the requests that wait are pushed back), or from now
 * when nothing is. */
static void test_charge_regardless(void **state) {
  (void)state;
  gs__pacer_t p;
  gs__pace_init(&p, 100);
  assert_int_equal(gs__pace_admit(&p, 0), 1);
  gs__pace_settle(&p, 1, 8); /* owed until 80 ms */
  assert_int_equal(gs__pace_charge(&p, 10 * MS), 8);
  assert_int_equal(gs__pace_wait_ns(&p, 10 * MS), 150 * MS);
  gs__pace_settle(&p, 8, 1); /* it had 1 row */
  assert_int_equal(gs__pace_wait_ns(&p, 10 * MS), 80 * MS);
  assert_int_equal(gs__pace_charge(&p, 500 * MS), 1); /* nothing owed */
  assert_int_equal(gs__pace_wait_ns(&p, 500 * MS), 10 * MS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rows_cost_time),
      cmocka_unit_test(test_closed_loop_holds_rate),
      cmocka_unit_test(test_idle_earns_no_burst),
      cmocka_unit_test(test_failure_refunds),
      cmocka_unit_test(test_rate_ends),
      cmocka_unit_test(test_charge_regardless),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
