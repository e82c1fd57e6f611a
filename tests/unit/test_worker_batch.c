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

int main(void) {
  const struct CMUnitTest tests[] = {
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
