/* Non-finite inputs through the CPU provider: a NaN or an Inf in a request
 * is computed, never a crash or an error, and never leaks into the other
 * images of a batch. The rules, as onnxruntime's CPU kernels apply them:
 * arithmetic is IEEE 754 (NaN in, NaN out; Inf - Inf is NaN); Relu, Clip
 * and MaxPool compare, and a comparison with NaN is false, so Relu(NaN) is
 * 0 (MLAS computes max(x, 0) with maxps, which returns 0 for a NaN x) and
 * MaxPool skips a NaN (y starts at the lowest float and takes x when
 * x > y; a window of NaNs only gives the lowest float). ONNX's reference
 * implementation (np.maximum) would propagate the NaN; the spec is silent. */
#include <float.h>
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

/* An FP32 initializer, every element v. */
static Onnx__TensorProto *init_fill(const char *name, unsigned rank,
                                    const int64_t *dims, float v) {
  size_t count = count_of(rank, dims);
  float *data = keep(malloc(count * sizeof *data + 1));
  for (size_t i = 0; i < count; i++)
    data[i] = v;
  return init_tensor(name, ELEM_F32, rank, dims, data);
}

/* Runs a one-input model on the CPU; returns a copy of output 0. */
static float *run(const graph_t *g, unsigned rank, const int64_t *dims,
                  const float *x, size_t n_out) {
  gs_model_t *m = load(g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  gs_session_options_t o;
  gs_session_options_default(&o);
  o.provider = GS_PROVIDER_CPU;
  assert_int_equal(gs_session_create(&s, m, &o, &err), GS_OK);
  gs_tensor_t in = tensor(NULL, GS_DTYPE_FP32, rank, dims, x);
  if (gs_session_run(s, &in, 1, &err) != GS_OK)
    fail_msg("run: %s", err.msg);
  const gs_tensor_t *y = gs_session_output(s, 0);
  assert_int_equal(y->bytes, n_out * sizeof(float));
  float *copy = keep(malloc(y->bytes));
  memcpy(copy, y->data, y->bytes);
  gs_session_destroy(s);
  gs_model_destroy(m);
  return copy;
}

static const int64_t vec5[] = {5};

/* Relu and Clip compare: NaN gives 0 (Relu) or the lower bound; Inf keeps
 * its sign's bound. Sigmoid, Tanh and Add are IEEE arithmetic. */
static void test_elementwise(void **state) {
  (void)state;
  const float x[5] = {NAN, -INFINITY, INFINITY, -1.0f, 2.0f};
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1};
  g.in[0] = info("x", ELEM_F32, 1, vec5);
  g.out[0] = info("y", ELEM_F32, 1, vec5);
  g.nodes[0] = node("Relu", "y", "x", "y", NULL);
  float *y = run(&g, 1, vec5, x, 5);
  const float relu[5] = {0.0f, 0.0f, INFINITY, 0.0f, 2.0f};
  assert_memory_equal(y, relu, sizeof relu);

  g.nodes[0] = node("Sigmoid", "y", "x", "y", NULL);
  y = run(&g, 1, vec5, x, 5);
  assert_true(isnan(y[0]));
  assert_true(y[1] == 0.0f && y[2] == 1.0f);

  g.nodes[0] = node("Tanh", "y", "x", "y", NULL);
  y = run(&g, 1, vec5, x, 5);
  assert_true(isnan(y[0]));
  assert_true(y[1] == -1.0f && y[2] == 1.0f);

  /* x + x: NaN stays NaN, Inf + Inf stays Inf; x - x: Inf - Inf is NaN. */
  g.nodes[0] = node("Sub", "y", "x,x", "y", NULL);
  y = run(&g, 1, vec5, x, 5);
  assert_true(isnan(y[0]) && isnan(y[1]) && isnan(y[2]));
  assert_true(y[3] == 0.0f && y[4] == 0.0f);
}

/* MaxPool 2x2 stride 2 over one 2x4 map: windows {NaN, 1, NaN, 3} and
 * {NaN x4}. */
static void test_maxpool_nan(void **state) {
  (void)state;
  static const int64_t xd[] = {1, 1, 2, 4}, yd[] = {1, 1, 1, 2};
  static const int64_t k[] = {2, 2};
  const float x[8] = {NAN, 1.0f, NAN, NAN, NAN, 3.0f, NAN, NAN};
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1};
  g.in[0] = info("x", ELEM_F32, 4, xd);
  g.out[0] = info("y", ELEM_F32, 4, yd);
  g.nodes[0] = node("MaxPool", "y", "x", "y", attr_ints("kernel_shape", 2, k),
                    attr_ints("strides", 2, k), NULL);
  float *y = run(&g, 4, xd, x, 2);
  assert_true(y[0] == 3.0f);
  assert_true(y[1] == -FLT_MAX);
}

/* Conv(1->2, 3x3, pad 1) + Relu + MaxPool(2x2) + Flatten + Gemm(18->3)
 * over [N,1,6,6], every weight positive. Image 0 is finite, image 1 has a
 * NaN pixel, image 2 a +Inf pixel. */
static void test_cnn_nonfinite(void **state) {
  (void)state;
  static const int64_t xd[] = {-1, 1, 6, 6}, yd[] = {-1, 3};
  static const int64_t wd[] = {2, 1, 3, 3}, bd[] = {2}, gd[] = {18, 3},
                       gbd[] = {3}, k2[] = {2, 2}, pads[] = {1, 1, 1, 1};
  graph_t g = {.n_nodes = 5, .n_in = 1, .n_out = 1, .n_init = 4};
  g.in[0] = info("x", ELEM_F32, 4, xd);
  g.out[0] = info("y", ELEM_F32, 2, yd);
  g.init[0] = init_fill("w", 4, wd, 0.1f);
  g.init[1] = init_fill("b", 1, bd, -0.2f);
  g.init[2] = init_fill("gw", 2, gd, 0.05f);
  g.init[3] = init_fill("gb", 1, gbd, 0.5f);
  g.nodes[0] =
      node("Conv", "c", "x,w,b", "c", attr_ints("pads", 4, pads), NULL);
  g.nodes[1] = node("Relu", "r", "c", "r", NULL);
  g.nodes[2] = node("MaxPool", "p", "r", "p", attr_ints("kernel_shape", 2, k2),
                    attr_ints("strides", 2, k2), NULL);
  g.nodes[3] = node("Flatten", "f", "p", "f", NULL);
  g.nodes[4] = node("Gemm", "y", "f,gw,gb", "y", NULL);
  float x[3 * 36];
  for (int i = 0; i < 3 * 36; i++)
    x[i] = (float)((i * 7) % 11) / 11.0f;
  x[36 + 14] = NAN;
  x[72 + 14] = INFINITY;
  static const int64_t one[] = {1, 1, 6, 6}, three[] = {3, 1, 6, 6};
  float *alone = run(&g, 4, one, x, 3);
  float *y = run(&g, 4, three, x, 9);
  for (int j = 0; j < 3; j++) {
    /* The finite image is as it is alone. */
    assert_true(isfinite(y[j]));
    assert_true(fabsf(y[j] - alone[j]) <= 1e-6f * fabsf(alone[j]));
    /* NaN: the conv outputs it reaches are NaN, Relu makes them 0, and
     * the rest of the image still counts: a finite row. */
    assert_true(isfinite(y[3 + j]));
    /* +Inf times positive weights: +Inf through Relu, MaxPool and Gemm. */
    assert_true(isinf(y[6 + j]) && y[6 + j] > 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_elementwise, free_kept),
      cmocka_unit_test_teardown(test_maxpool_nan, free_kept),
      cmocka_unit_test_teardown(test_cnn_nonfinite, free_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
