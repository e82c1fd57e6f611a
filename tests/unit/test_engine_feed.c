/* Feeding a session: FP16 data for an FP32 input (widened exactly on the
 * CPU provider, as a CUDA session widens it on the GPU) and the session's
 * own input buffer, which a run reads in place. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gpuslice/engine.h"
#include "test_onnx_build.h"

static const int64_t dims6[] = {2, 3};

/* y = x * 2 over a [2, 3] FP32 input. */
static gs_session_t *open_mul2(gs_model_t **m) {
  static const float two[6] = {2, 2, 2, 2, 2, 2};
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1};
  g.in[0] = info("x", ELEM_F32, 2, dims6);
  g.out[0] = info("y", ELEM_F32, 2, dims6);
  g.init[0] = init_tensor("two", ELEM_F32, 2, dims6, two);
  g.nodes[0] = node("Mul", "m", "x,two", "y", NULL);
  *m = load(&g);
  gs_session_options_t o;
  gs_session_options_default(&o);
  o.provider = GS_PROVIDER_CPU;
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, *m, &o, &err), GS_OK);
  return s;
}

/* Every class of half: normal, negative, the largest, the smallest
 * subnormal, negative zero, infinity, and what they are as floats. */
static const uint16_t halves[6] = {0x3e00, 0xb400, 0x7bff,
                                   0x0001, 0x8000, 0x7c00};
static const float widened[6] = {1.5f,     -0.25f, 65504.0f,
                                 0x1p-24f, -0.0f,  INFINITY};

static void test_fp16_input_widened(void **state) {
  (void)state;
  gs_model_t *m;
  gs_session_t *s = open_mul2(&m);
  gs_error_t err = {0};
  gs_tensor_t in = tensor("x", GS_DTYPE_FP16, 2, dims6, halves);
  if (gs_session_run(s, &in, 1, &err) != GS_OK)
    fail_msg("run: %s", err.msg);
  const gs_tensor_t *y = gs_session_output(s, 0);
  assert_int_equal(y->dtype, GS_DTYPE_FP32);
  assert_int_equal(y->bytes, sizeof widened);
  for (int i = 0; i < 6; i++) {
    float want = widened[i] * 2;
    assert_memory_equal(&((const float *)y->data)[i], &want, sizeof want);
  }
  /* FP32 again in the same session: the plan is shared, the data not. */
  in = tensor("x", GS_DTYPE_FP32, 2, dims6, widened);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_OK);
  assert_true(((const float *)gs_session_output(s, 0)->data)[0] == 3.0f);
  /* Other types stay refused, naming what the input takes. */
  in = tensor("x", GS_DTYPE_INT16, 2, dims6, halves);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "FP32 (or FP16)"));
  in = tensor("x", GS_DTYPE_FP16, 2, dims6, halves);
  in.bytes = 6 * 4; /* FP32's size with FP16's type */
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_EINVAL);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

static void test_input_buffer_in_place(void **state) {
  (void)state;
  gs_model_t *m;
  gs_session_t *s = open_mul2(&m);
  gs_error_t err = {0};
  void *buf = NULL, *again = NULL;
  assert_int_equal(gs_session_input_buffer(s, 0, 6 * 4, &buf, &err), GS_OK);
  assert_non_null(buf);
  assert_int_equal((uintptr_t)buf % 16, 0);
  memcpy(buf, widened, sizeof widened);
  gs_tensor_t in = tensor("x", GS_DTYPE_FP32, 2, dims6, buf);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_OK);
  assert_true(((const float *)gs_session_output(s, 0)->data)[1] == -0.5f);
  /* Fewer bytes: the same buffer; more: contents kept. */
  assert_int_equal(gs_session_input_buffer(s, 0, 8, &again, &err), GS_OK);
  assert_ptr_equal(again, buf);
  assert_int_equal(gs_session_input_buffer(s, 0, 1 << 20, &again, &err), GS_OK);
  assert_memory_equal(again, widened, sizeof widened);
  /* FP16 written in place is widened like any FP16 input. */
  memcpy(again, halves, sizeof halves);
  in = tensor("x", GS_DTYPE_FP16, 2, dims6, again);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_OK);
  assert_true(((const float *)gs_session_output(s, 0)->data)[0] == 3.0f);
  assert_int_equal(gs_session_input_buffer(s, 1, 8, &again, &err), GS_EINVAL);
  assert_null(again);
  assert_non_null(strstr(err.msg, "1 inputs"));
  gs_session_destroy(s);
  gs_model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_fp16_input_widened, free_kept),
      cmocka_unit_test_teardown(test_input_buffer_in_place, free_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
