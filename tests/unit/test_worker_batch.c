/* Dynamic batching rules, without the loop: requests concatenate along the
 * batch dimension (dim 0) in queue order, whatever order each names its
 * inputs in; outputs split back by each request's rows; only requests with
 * the same non-batch dimensions share a batch, so a mismatched one starts
 * its own; a batch never exceeds max_batch_size and starts at once when it
 * is full, at a preferred size, or cannot grow, otherwise at the oldest
 * request's queue delay. A queue policy's timeout is its
 * default_timeout_microseconds, or with allow_timeout_override the
 * request's own "timeout" when that is non-zero and smaller (Triton's
 * PolicyQueue::Enqueue). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/worker_int.h"

static const gs_tensor_info_t infos[2] = {
    {"A", GS_DTYPE_FP32, 2, {-1, 2}},
    {"B", GS_DTYPE_INT32, 2, {-1, -1}},
};
static const gs__model_io_t io = {"m", "1", 2, 1, infos, infos, NULL, 0};

static gs_tensor_t tensor(const char *name, gs_dtype_t dt, int64_t rows,
                          int64_t cols, const void *data) {
  gs_tensor_t t = {name,       dt,
                   2,          {rows, cols},
                   data,       (size_t)(rows * cols) * gs_dtype_size(dt),
                   GS_MEM_HOST};
  return t;
}

static void test_concat_fp32_and_int32_in_queue_order(void **state) {
  (void)state;
  static const float a1[] = {1, 2}, a2[] = {3, 4, 5, 6};
  static const int32_t b1[] = {10, 11, 12}, b2[] = {20, 21, 22, 23, 24, 25};
  gs__infer_request_t r1 = {0}, r2 = {0};
  r1.n_inputs = r2.n_inputs = 2;
  r1.inputs[0] = tensor("A", GS_DTYPE_FP32, 1, 2, a1);
  r1.inputs[1] = tensor("B", GS_DTYPE_INT32, 1, 3, b1);
  /* The second request names its inputs the other way round. */
  r2.inputs[0] = tensor("B", GS_DTYPE_INT32, 2, 3, b2);
  r2.inputs[1] = tensor("A", GS_DTYPE_FP32, 2, 2, a2);
  assert_true(gs__batch_compatible(&r1, &r2, &io));
  const gs__infer_request_t *reqs[] = {&r1, &r2};
  gs_tensor_t out[2];
  void *bufs[2];
  gs_error_t err;
  assert_int_equal(gs__batch_concat(out, bufs, reqs, 2, &io, &err), GS_OK);
  static const float want_a[] = {1, 2, 3, 4, 5, 6};
  static const int32_t want_b[] = {10, 11, 12, 20, 21, 22, 23, 24, 25};
  assert_string_equal(out[0].name, "A");
  assert_int_equal(out[0].shape[0], 3);
  assert_int_equal(out[0].shape[1], 2);
  assert_int_equal(out[0].bytes, sizeof want_a);
  assert_memory_equal(out[0].data, want_a, sizeof want_a);
  assert_string_equal(out[1].name, "B");
  assert_int_equal(out[1].dtype, GS_DTYPE_INT32);
  assert_int_equal(out[1].shape[0], 3);
  assert_int_equal(out[1].shape[1], 3);
  assert_memory_equal(out[1].data, want_b, sizeof want_b);
  free(bufs[0]);
  free(bufs[1]);
}

/* A fixed buffer per input, poisoned, as a session's input buffer is. */
static uint8_t dest[2][256];
static void *fixed_buf(void *ctx, size_t k, size_t bytes, gs_error_t *err) {
  (void)ctx;
  if (bytes > sizeof dest[k]) {
    gs_error_set(err, GS_ELIMIT, "too large");
    return NULL;
  }
  return dest[k];
}

/* Into the caller's buffers, padded to 4 rows with zeros in one pass. */
static void test_concat_into_buffers_padded(void **state) {
  (void)state;
  static const float a1[] = {1, 2}, a2[] = {3, 4};
  static const int32_t b1[] = {7}, b2[] = {8};
  gs__infer_request_t r1 = {0}, r2 = {0};
  r1.n_inputs = r2.n_inputs = 2;
  r1.inputs[0] = tensor("A", GS_DTYPE_FP32, 1, 2, a1);
  r1.inputs[1] = tensor("B", GS_DTYPE_INT32, 1, 1, b1);
  r2.inputs[0] = tensor("A", GS_DTYPE_FP32, 1, 2, a2);
  r2.inputs[1] = tensor("B", GS_DTYPE_INT32, 1, 1, b2);
  const gs__infer_request_t *reqs[] = {&r1, &r2};
  gs_tensor_t out[2];
  gs_error_t err = {0};
  memset(dest, 0xff, sizeof dest);
  assert_int_equal(
      gs__batch_concat_to(out, fixed_buf, NULL, reqs, 2, &io, 4, &err), GS_OK);
  static const float want_a[] = {1, 2, 3, 4, 0, 0, 0, 0};
  static const int32_t want_b[] = {7, 8, 0, 0};
  assert_ptr_equal(out[0].data, dest[0]);
  assert_int_equal(out[0].shape[0], 4);
  assert_int_equal(out[0].bytes, sizeof want_a);
  assert_memory_equal(out[0].data, want_a, sizeof want_a);
  assert_int_equal(out[1].shape[0], 4);
  assert_memory_equal(out[1].data, want_b, sizeof want_b);
  /* A buffer that cannot be had fails the batch with its reason. */
  assert_int_equal(
      gs__batch_concat_to(out, fixed_buf, NULL, reqs, 2, &io, 64, &err),
      GS_ELIMIT);
  assert_string_equal(err.msg, "too large");
}

static void test_split_gives_each_request_its_rows(void **state) {
  (void)state;
  static const float y[] = {1, 2, 3, 4, 5, 6}; /* 3 rows of 2 */
  static const int32_t z[] = {7, 8, 9};        /* 3 rows of 1 */
  gs_tensor_t outs[2] = {tensor("Y", GS_DTYPE_FP32, 3, 2, y),
                         tensor("Z", GS_DTYPE_INT32, 3, 1, z)};
  gs_tensor_t s[2];
  gs_error_t err;
  assert_int_equal(gs__batch_split(s, outs, 2, 0, 1, 3, &err), GS_OK);
  assert_int_equal(s[0].shape[0], 1);
  assert_int_equal(s[0].bytes, 2 * sizeof(float));
  assert_memory_equal(s[0].data, y, 2 * sizeof(float));
  assert_memory_equal(s[1].data, z, sizeof(int32_t));
  assert_int_equal(gs__batch_split(s, outs, 2, 1, 2, 3, &err), GS_OK);
  assert_int_equal(s[0].shape[0], 2);
  assert_int_equal(s[0].shape[1], 2);
  assert_memory_equal(s[0].data, y + 2, 4 * sizeof(float));
  assert_int_equal(s[1].bytes, 2 * sizeof(int32_t));
  assert_memory_equal(s[1].data, z + 1, 2 * sizeof(int32_t));
  /* An output whose dim 0 is not the batch cannot be split. */
  assert_int_not_equal(gs__batch_split(s, outs, 2, 0, 1, 4, &err), GS_OK);
  assert_int_not_equal(gs__batch_split(s, outs, 2, 2, 2, 3, &err), GS_OK);
}

static void test_mismatched_dims_start_a_new_batch(void **state) {
  (void)state;
  static const float a[4] = {0};
  static const int32_t b[8] = {0};
  gs__infer_request_t r1 = {0}, r2 = {0};
  r1.n_inputs = r2.n_inputs = 2;
  r1.inputs[0] = r2.inputs[0] = tensor("A", GS_DTYPE_FP32, 1, 2, a);
  r1.inputs[1] = tensor("B", GS_DTYPE_INT32, 1, 3, b);
  r2.inputs[1] = tensor("B", GS_DTYPE_INT32, 1, 4, b);
  assert_false(gs__batch_compatible(&r1, &r2, &io));
  const gs__infer_request_t *reqs[] = {&r1, &r2};
  gs_tensor_t out[2];
  void *bufs[2];
  gs_error_t err;
  assert_int_not_equal(gs__batch_concat(out, bufs, reqs, 2, &io, &err), GS_OK);
  free(bufs[0]);
  free(bufs[1]);
  /* In the queue: the first goes alone, now, without waiting. */
  gs__batching_t cfg = {.enabled = true};
  uint64_t rows[] = {1, 1, 1}, n_rows;
  bool compat[] = {true, false, true};
  assert_int_equal(gs__batch_pick(rows, compat, 3, 8, &cfg, false, &n_rows), 1);
  assert_int_equal(n_rows, 1);
}

static void test_batches_stay_within_max_batch_size(void **state) {
  (void)state;
  gs__batching_t cfg = {.enabled = true};
  bool compat[] = {true, true, true, true};
  uint64_t n_rows;
  /* 3 + 3 fit in 8, the next 3 do not: the batch cannot grow, so it
   * starts now with 6 rows. */
  uint64_t threes[] = {3, 3, 3};
  assert_int_equal(gs__batch_pick(threes, compat, 3, 8, &cfg, false, &n_rows),
                   2);
  assert_int_equal(n_rows, 6);
  /* Exactly full starts now. */
  uint64_t fours[] = {4, 4};
  assert_int_equal(gs__batch_pick(fours, compat, 2, 8, &cfg, false, &n_rows),
                   2);
  assert_int_equal(n_rows, 8);
  /* Not full: wait until the oldest is due, then take all. */
  uint64_t ones[] = {1, 1, 1};
  assert_int_equal(gs__batch_pick(ones, compat, 3, 8, &cfg, false, &n_rows), 0);
  assert_int_equal(gs__batch_pick(ones, compat, 3, 8, &cfg, true, &n_rows), 3);
  assert_int_equal(n_rows, 3);
  assert_int_equal(gs__batch_pick(ones, compat, 0, 8, &cfg, true, &n_rows), 0);
}

static void test_preferred_size_starts_without_waiting(void **state) {
  (void)state;
  gs__batching_t cfg = {.enabled = true, .n_preferred = 1, .preferred = {2}};
  bool compat[] = {true, true, true};
  uint64_t ones[] = {1, 1, 1}, n_rows;
  assert_int_equal(gs__batch_pick(ones, compat, 1, 8, &cfg, false, &n_rows), 0);
  assert_int_equal(gs__batch_pick(ones, compat, 3, 8, &cfg, false, &n_rows), 2);
  assert_int_equal(n_rows, 2);
}

static void test_queue_timeout_override_only_shortens(void **state) {
  (void)state;
  gs__queue_policy_t p = {.default_timeout_us = 1000000};
  assert_int_equal(gs__queue_timeout_us(&p, 0), 1000000);
  assert_int_equal(gs__queue_timeout_us(&p, 5000), 1000000); /* not allowed */
  p.allow_timeout_override = true;
  assert_int_equal(gs__queue_timeout_us(&p, 5000), 5000);
  assert_int_equal(gs__queue_timeout_us(&p, 0), 1000000);
  assert_int_equal(gs__queue_timeout_us(&p, 3000000), 1000000); /* larger */
  assert_int_equal(gs__queue_timeout_us(&p, 1000000), 1000000);
  p.default_timeout_us = 0; /* no default: no timeout at all */
  assert_int_equal(gs__queue_timeout_us(&p, 5000), 0);
}

/* The queue's shape after every step: queue_len jobs from head to tail,
 * the fresh ones (a timeout or not) up to queue_fresh_tail, then only
 * DELAY's (no timeout left); order: the names in want. */
static void check_queue(const gs__model_entry_t *m, const char *want) {
  char got[32] = "";
  size_t n = 0, at = 0;
  bool fresh = m->queue_fresh_tail != NULL;
  const gs__infer_job_t *last = NULL;
  for (const gs__infer_job_t *j = m->queue_head; j; j = j->next) {
    got[at++] = *(const char *)j->data;
    if (!fresh)
      assert_int_equal(j->timeout_ns, 0); /* behind the fresh: DELAY's */
    if (j == m->queue_fresh_tail)
      fresh = false;
    last = j;
    n++;
  }
  assert_string_equal(got, want);
  assert_int_equal(n, m->queue_len);
  assert_ptr_equal(last, m->queue_tail);
  assert_false(fresh); /* queue_fresh_tail was on the list */
}

static gs__infer_job_t *queued(gs__model_entry_t *m, gs__infer_job_t *j,
                               const char *name, gs__model_slot_t *slot,
                               uint64_t timeout_ns) {
  memset(j, 0, sizeof *j);
  j->data = (void *)name;
  j->slot = slot;
  j->timeout_ns = timeout_ns;
  gs__queue_add(m, j);
  m->queue_len++;
  return j;
}

/* REJECT: an expired request leaves the queue (to be answered) and the
 * rest keep their order; the first timeout left is the next to wake for. */
static void test_queue_reject_takes_out_the_expired(void **state) {
  (void)state;
  static gs__model_entry_t m;
  static gs__model_slot_t reject;
  gs__infer_job_t j[3];
  memset(&m, 0, sizeof m);
  queued(&m, &j[0], "a", &reject, 100);
  queued(&m, &j[1], "b", &reject, 0); /* no timeout */
  queued(&m, &j[2], "c", &reject, 50);
  check_queue(&m, "abc");
  assert_int_equal(m.queue_expiry_ns, 50);
  assert_null(gs__queue_expire(&m, 49));
  check_queue(&m, "abc");
  gs__infer_job_t *gone = gs__queue_expire(&m, 50);
  assert_ptr_equal(gone, &j[2]);
  assert_null(gone->next);
  check_queue(&m, "ab");
  assert_int_equal(m.queue_expiry_ns, 100);
  assert_int_equal(m.stats.queue_timeout, 1);
  gone = gs__queue_expire(&m, 1000);
  assert_ptr_equal(gone, &j[0]);
  check_queue(&m, "b");
  assert_int_equal(m.queue_expiry_ns, 0);
}

/* DELAY: an expired request goes behind every fresh one, later arrivals
 * included, and a batch may take fresh and delayed ones together. */
static void test_queue_delay_moves_behind_the_fresh(void **state) {
  (void)state;
  static gs__model_entry_t m;
  static gs__model_slot_t delay;
  delay.batching.policy.delay = true;
  gs__infer_job_t j[5];
  memset(&m, 0, sizeof m);
  queued(&m, &j[0], "d", &delay, 10);
  queued(&m, &j[1], "e", &delay, 0);
  queued(&m, &j[2], "f", &delay, 30);
  assert_null(gs__queue_expire(&m, 20)); /* DELAY answers none */
  check_queue(&m, "efd");
  assert_ptr_equal(m.queue_fresh_tail, &j[2]);
  assert_int_equal(m.queue_expiry_ns, 30);
  queued(&m, &j[3], "g", &delay, 0);
  check_queue(&m, "efgd");               /* fresh before delayed */
  assert_null(gs__queue_expire(&m, 40)); /* f's turn */
  check_queue(&m, "egdf");
  assert_int_equal(m.stats.queue_timeout, 2);
  gs__infer_job_t *b = gs__queue_take(&m, 2);
  assert_ptr_equal(b, &j[1]);
  assert_ptr_equal(b->next, &j[3]);
  assert_null(b->next->next);
  check_queue(&m, "df");
  assert_null(m.queue_fresh_tail); /* only delayed ones are left */
  assert_int_equal(m.queue_expiry_ns, 0);
  queued(&m, &j[4], "h", &delay, 0);
  check_queue(&m, "hdf"); /* a new arrival goes ahead of them */
  b = gs__queue_take(&m, 3);
  assert_ptr_equal(b, &j[4]);
  check_queue(&m, "");
  assert_null(m.queue_head);
  assert_null(m.queue_fresh_tail);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_queue_reject_takes_out_the_expired),
      cmocka_unit_test(test_queue_delay_moves_behind_the_fresh),
      cmocka_unit_test(test_concat_fp32_and_int32_in_queue_order),
      cmocka_unit_test(test_concat_into_buffers_padded),
      cmocka_unit_test(test_split_gives_each_request_its_rows),
      cmocka_unit_test(test_mismatched_dims_start_a_new_batch),
      cmocka_unit_test(test_batches_stay_within_max_batch_size),
      cmocka_unit_test(test_preferred_size_starts_without_waiting),
      cmocka_unit_test(test_queue_timeout_override_only_shortens),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
