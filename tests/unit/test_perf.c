/* gpuslice perf's measurement rules, from perf_analyzer's definitions
 * (docs: serving-protocol.md): a percentile is the element at index
 * round(p/100 * (n-1)) of the sorted latencies; a level is stable when over
 * the last 3 windows max/min <= 1 + s/100 for throughput and for latency;
 * the result merges the last 3 windows; the CSV has perf_analyzer's
 * columns in its order (server columns only with the statistics extension,
 * "Request Rate" first in rate mode, whole microseconds); ranges are
 * start:end:step with end >= start > 0 and step > 0; Poisson arrivals have
 * exponential gaps (mean 1/rate, standard deviation equal to the mean). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "perf/perf_int.h"

static void test_percentile_is_nearest_rank_over_n_minus_1(void **state) {
  (void)state;
  uint64_t v[100];
  for (int i = 0; i < 100; i++)
    v[i] = (uint64_t)i + 1;
  assert_int_equal(gs__perf_percentile(v, 100, 50), 51); /* round(49.5) */
  assert_int_equal(gs__perf_percentile(v, 100, 90), 90); /* round(89.1) */
  assert_int_equal(gs__perf_percentile(v, 100, 99), 99); /* round(98.01) */
  assert_int_equal(gs__perf_percentile(v, 1, 99), 1);
  assert_int_equal(gs__perf_percentile(v, 0, 50), 0);
}

static void test_stable_needs_3_windows_within_the_percentage(void **state) {
  (void)state;
  double lat[] = {100, 100, 100, 100};
  double ok[] = {100, 105, 109.9}, bad[] = {100, 105, 110.1};
  assert_true(gs__perf_stable(ok, lat, 3, 10));
  assert_false(gs__perf_stable(bad, lat, 3, 10));
  assert_false(gs__perf_stable(ok, lat, 2, 10));
  /* latency too */
  double tput[] = {50, 50, 50}, lbad[] = {100, 120, 100};
  assert_false(gs__perf_stable(tput, lbad, 3, 10));
  /* only the last 3 windows count */
  double early[] = {1, 100, 100, 100};
  assert_true(gs__perf_stable(early, lat, 4, 10));
  /* a window with no throughput is never stable */
  double zero[] = {0, 0, 0};
  assert_false(gs__perf_stable(zero, lat, 3, 10));
}

static void fill(gs__perf_window_t *w, uint64_t first, size_t n, uint64_t begin,
                 uint64_t ns) {
  for (size_t i = 0; i < n; i++)
    assert_int_equal(gs__perf_window_add(w, first + i * 1000), GS_OK);
  w->t_begin = begin;
  w->t_end = begin + ns;
  w->send_ns = n * 2000;
}

static void test_merge_takes_the_last_3_windows(void **state) {
  (void)state;
  gs__perf_window_t w[4] = {0};
  fill(&w[0], 999000000, 10, 0, 1000000000); /* dropped: not in the last 3 */
  for (int i = 1; i < 4; i++)
    fill(&w[i], 1000, 100, (uint64_t)i * 1000000000ull, 1000000000);
  gs_perf_result_t r;
  assert_int_equal(gs__perf_merge(w, 4, 3, 2, 95, &r), GS_OK);
  assert_int_equal(r.request_count, 300);
  assert_true(fabs(r.duration_s - 3.0) < 1e-9);
  assert_true(fabs(r.throughput - 200.0) < 1e-9); /* 300 x batch 2 / 3 s */
  /* latencies 1..100 us three times: average 50.5 us */
  assert_true(fabs(r.avg_us - 50.5) < 1e-9);
  assert_true(fabs(r.p50_us - 51.0) < 1e-9); /* index round(149.5) */
  assert_true(fabs(r.p99_us - 99.0) < 1e-9); /* index round(296.01) */
  assert_true(fabs(r.pct_us - r.p95_us) < 1e-9);
  assert_true(fabs(r.send_us - 2.0) < 1e-9);
  for (int i = 0; i < 4; i++)
    gs__perf_window_release(&w[i]);
}

static void test_csv_columns_as_perf_analyzer(void **state) {
  (void)state;
  gs_perf_result_t lv = {.level = 4,
                         .throughput = 1234.5,
                         .send_us = 12.9,
                         .recv_us = 1.2,
                         .p50_us = 100.7,
                         .p90_us = 200,
                         .p95_us = 300,
                         .p99_us = 400};
  lv.server = (gs_perf_server_t){.network_us = 50,
                                 .queue_us = 20,
                                 .input_us = 5,
                                 .infer_us = 0.4,
                                 .output_us = 6};
  gs_perf_report_t rep = {.levels = &lv, .n = 1, .has_server = true};
  char *csv;
  assert_int_equal(gs_perf_csv(&rep, GS_PERF_CONCURRENCY, &csv, NULL), GS_OK);
  assert_string_equal(
      csv, "Concurrency,Inferences/Second,Client Send,Network+Server "
           "Send/Recv,Server Queue,Server Compute Input,Server Compute "
           "Infer,Server Compute Output,Client Recv,p50 latency,p90 "
           "latency,p95 latency,p99 latency\n"
           "4,1234.5,12,50,20,5,0,6,1,100,200,300,400\n");
  free(csv);
  rep.has_server = false;
  assert_int_equal(gs_perf_csv(&rep, GS_PERF_RATE, &csv, NULL), GS_OK);
  assert_string_equal(csv, "Request Rate,Inferences/Second,Client Send,Client "
                           "Recv,p50 latency,p90 latency,p95 latency,p99 "
                           "latency\n4,1234.5,12,1,100,200,300,400\n");
  free(csv);
}

static void test_ranges(void **state) {
  (void)state;
  gs_perf_range_t r;
  gs_error_t err;
  assert_int_equal(gs_perf_parse_range("1:8:2", false, &r, &err), GS_OK);
  assert_true(r.start == 1 && r.end == 8 && r.step == 2);
  assert_int_equal(gs_perf_parse_range("4", false, &r, &err), GS_OK);
  assert_true(r.start == 4 && r.end == 4 && r.step == 1);
  assert_int_equal(gs_perf_parse_range("100.5:200", true, &r, &err), GS_OK);
  assert_int_equal(gs_perf_parse_range("4:2", false, &r, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "above end"));
  assert_int_equal(gs_perf_parse_range("1:4:0", false, &r, &err), GS_EINVAL);
  assert_int_equal(gs_perf_parse_range("0:10", true, &r, &err), GS_EINVAL);
  assert_int_equal(gs_perf_parse_range("-5", true, &r, &err), GS_EINVAL);
  assert_int_equal(gs_perf_parse_range("1.5", false, &r, &err), GS_EINVAL);
  assert_int_equal(gs_perf_parse_range("a:b", false, &r, &err), GS_EINVAL);
  assert_int_equal(gs_perf_parse_range("1:2:3:4", false, &r, &err), GS_EINVAL);
  double lv[8];
  r = (gs_perf_range_t){1, 8, 3};
  assert_int_equal(gs__perf_levels(&r, lv, 8), 3); /* 1 4 7 */
  assert_true(lv[2] == 7);
}

static void test_shapes(void **state) {
  (void)state;
  gs_perf_shape_t s;
  gs_error_t err;
  assert_int_equal(gs_perf_parse_shape("INPUT0:1,16", &s, &err), GS_OK);
  assert_string_equal(s.name, "INPUT0");
  assert_int_equal(s.rank, 2);
  assert_int_equal(s.dims[1], 16);
  assert_int_equal(gs_perf_parse_shape("INPUT0", &s, &err), GS_EINVAL);
  assert_int_equal(gs_perf_parse_shape("INPUT0:0", &s, &err), GS_EINVAL);
  assert_int_equal(gs_perf_parse_shape("INPUT0:4,x", &s, &err), GS_EINVAL);
}

static void test_poisson_gaps_are_exponential(void **state) {
  (void)state;
  enum { N = 200000 };
  uint64_t *t = malloc(N * sizeof *t), *u = malloc(N * sizeof *u);
  assert_non_null(t);
  assert_non_null(u);
  gs__perf_schedule(1000, GS_PERF_POISSON, 42, t, N);
  double sum = 0, sq = 0;
  for (size_t i = 1; i < N; i++) {
    double g = (double)(t[i] - t[i - 1]);
    sum += g;
    sq += g * g;
  }
  double mean = sum / (N - 1), sd = sqrt(sq / (N - 1) - mean * mean);
  assert_true(fabs(mean - 1e6) < 0.01e6); /* 1/rate = 1 ms */
  assert_true(fabs(sd / mean - 1.0) < 0.02);
  gs__perf_schedule(1000, GS_PERF_POISSON, 42, u, N);
  assert_memory_equal(t, u, N * sizeof *t); /* the seed fixes it */
  gs__perf_schedule(250, GS_PERF_CONSTANT, 42, t, 5);
  for (size_t i = 0; i < 5; i++)
    assert_int_equal(t[i], i * 4000000ull);
  free(t);
  free(u);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_percentile_is_nearest_rank_over_n_minus_1),
      cmocka_unit_test(test_stable_needs_3_windows_within_the_percentage),
      cmocka_unit_test(test_merge_takes_the_last_3_windows),
      cmocka_unit_test(test_csv_columns_as_perf_analyzer),
      cmocka_unit_test(test_ranges),
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_poisson_gaps_are_exponential),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
