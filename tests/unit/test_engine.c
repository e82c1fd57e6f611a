/* ONNX engine rules, on small graphs built with protobuf-c: ops follow
 * the ONNX operator spec (numpy broadcasting, Gemm's alpha/beta/trans,
 * Softmax's axis before and after opset 13, Reshape's 0 and -1); a model
 * with an op outside the set fails to load naming the op and the node;
 * corrupt, hostile or over-limit files fail with a clear error; inputs that
 * do not match the model's metadata are refused; intermediate tensors whose
 * lifetimes do not overlap share memory; a batch of N runs like N rows. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/engine_int.h"
#include "engine/kernels_gemm.h"
#include "engine/model_digest.h"
#include "gpuslice/engine.h"
#include "test_onnx_build.h"

/* Runs a one-input, one-output FP32 model and compares with want. */
static void run_f32(const graph_t *g, unsigned rank, const int64_t *dims,
                    const float *x, const float *want, size_t n_want) {
  gs_model_t *m = load(g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  gs_tensor_t in = tensor(NULL, GS_DTYPE_FP32, rank, dims, x);
  if (gs_session_run(s, &in, 1, &err) != GS_OK)
    fail_msg("run failed: %s", err.msg);
  const gs_tensor_t *out = gs_session_output(s, 0);
  assert_int_equal(out->bytes, n_want * sizeof(float));
  for (size_t i = 0; i < n_want; i++)
    if (fabsf(((const float *)out->data)[i] - want[i]) > 1e-5f)
      fail_msg("element %zu: %g, want %g", i, ((const float *)out->data)[i],
               want[i]);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

static const int64_t batch16[] = {-1, 16};

/* Triton's `simple`: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1
 * over INT32 [N,16]; metadata shows KServe type names and -1 for N. */
static graph_t simple_graph(void) {
  graph_t g = {.n_nodes = 2, .n_in = 2, .n_out = 2};
  g.nodes[0] = node("Add", "add", "INPUT0,INPUT1", "OUTPUT0", NULL);
  g.nodes[1] = node("Sub", "sub", "INPUT0,INPUT1", "OUTPUT1", NULL);
  g.in[0] = info("INPUT0", ELEM_I32, 2, batch16);
  g.in[1] = info("INPUT1", ELEM_I32, 2, batch16);
  g.out[0] = info("OUTPUT0", ELEM_I32, 2, batch16);
  g.out[1] = info("OUTPUT1", ELEM_I32, 2, batch16);
  return g;
}

static void test_simple_model_batches(void **state) {
  (void)state;
  graph_t g = simple_graph();
  gs_model_t *m = load(&g);
  assert_int_equal(gs_model_input_count(m), 2);
  assert_int_equal(gs_model_output_count(m), 2);
  const gs_tensor_info_t *i0 = gs_model_input(m, 0);
  assert_string_equal(i0->name, "INPUT0");
  assert_string_equal(gs_dtype_name(i0->dtype), "INT32");
  assert_int_equal(i0->rank, 2);
  assert_int_equal(i0->shape[0], -1);
  assert_int_equal(i0->shape[1], 16);
  assert_string_equal(gs_model_output(m, 1)->name, "OUTPUT1");
  assert_null(gs_model_input(m, 2));

  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  int32_t a[4 * 16], b[4 * 16];
  for (int i = 0; i < 4 * 16; i++)
    a[i] = i * 1000, b[i] = 7 - i;
  a[0] = INT32_MAX, b[0] = 1; /* wraps, as ONNX Runtime does */
  for (int64_t n = 1; n <= 4; n += 3) {
    int64_t dims[2] = {n, 16};
    /* By name, in the other order: names decide, not positions. */
    gs_tensor_t in[2] = {tensor("INPUT1", GS_DTYPE_INT32, 2, dims, b),
                         tensor("INPUT0", GS_DTYPE_INT32, 2, dims, a)};
    assert_int_equal(gs_session_run(s, in, 2, &err), GS_OK);
    const gs_tensor_t *sum = gs_session_output(s, 0);
    const gs_tensor_t *diff = gs_session_output(s, 1);
    assert_string_equal(sum->name, "OUTPUT0");
    assert_int_equal(sum->shape[0], n);
    assert_int_equal(diff->bytes, (size_t)n * 16 * 4);
    for (int i = 1; i < n * 16; i++) {
      assert_int_equal(((const int32_t *)sum->data)[i], a[i] + b[i]);
      assert_int_equal(((const int32_t *)diff->data)[i], a[i] - b[i]);
    }
    assert_int_equal(((const int32_t *)sum->data)[0], INT32_MIN);
  }
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Device memory (GS_MEM_DEVICE) is a CUDA session's: the CPU provider has
 * no device (gs_session_device -1), refuses a device input by name and
 * refuses to bind an output to device memory; a bad mem value is refused;
 * host inputs still run after a refusal. */
static void test_cpu_refuses_device_memory(void **state) {
  (void)state;
  graph_t g = simple_graph();
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  assert_int_equal(gs_session_device(s), -1);
  int32_t buf[16] = {1}, out[16];
  int64_t dims[2] = {1, 16};
  gs_tensor_t in[2] = {tensor("INPUT0", GS_DTYPE_INT32, 2, dims, buf),
                       tensor("INPUT1", GS_DTYPE_INT32, 2, dims, buf)};
  in[1].mem = GS_MEM_DEVICE;
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "'INPUT1' is in device memory"));
  in[1].mem = (gs_mem_t)7;
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "'INPUT1': mem 7"));
  assert_int_equal(gs_session_bind_output(s, 1, out, sizeof out, &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "output 1 (of 2)"));
  assert_int_equal(gs_session_bind_output(s, 2, out, sizeof out, &err),
                   GS_EINVAL);
  in[1].mem = GS_MEM_HOST;
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_OK);
  assert_int_equal(gs_session_output(s, 0)->mem, GS_MEM_HOST);
  assert_int_equal(((const int32_t *)gs_session_output(s, 0)->data)[0], 2);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Inputs that do not match the metadata are refused before running. */
static void test_input_mismatch(void **state) {
  (void)state;
  graph_t g = simple_graph();
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  int32_t buf[2 * 16] = {0};
  int64_t bad[2] = {2, 15}, good[2] = {2, 16};
  gs_tensor_t in[2] = {tensor("INPUT0", GS_DTYPE_INT32, 2, bad, buf),
                       tensor("INPUT1", GS_DTYPE_INT32, 2, good, buf)};
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "[2,15]"));
  assert_non_null(strstr(err.msg, "[-1,16]"));
  in[0] = tensor("INPUT0", GS_DTYPE_FP32, 2, good, buf);
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "FP32"));
  in[0] = tensor("INPUT0", GS_DTYPE_INT32, 2, good, buf);
  in[0].bytes -= 4;
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EINVAL);
  in[0].bytes += 4;
  in[1].name = "INPUT7";
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "INPUT7"));
  assert_int_equal(gs_session_run(s, in, 1, &err), GS_EINVAL);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Gemm: Y = alpha * A' * B' + beta * C, C broadcast to [M,N]; then Relu
 * and Softmax over the last axis: each row of the output sums to 1. */
static void test_gemm_relu_softmax(void **state) {
  (void)state;
  const int64_t wd[2] = {3, 2}, cd[1] = {3}, xd[2] = {2, 2};
  const float w[6] = {1, 0, 0, 1, 1, 1}; /* [N=3,K=2], used transposed */
  const float c[3] = {0.5f, -10, 0};
  graph_t g = {.n_nodes = 3, .n_in = 1, .n_out = 1, .n_init = 2};
  g.init[0] = init_tensor("w", ELEM_F32, 2, wd, w);
  g.init[1] = init_tensor("c", ELEM_F32, 1, cd, c);
  g.nodes[0] = node("Gemm", "fc", "x,w,c", "h", attr_i("transB", 1),
                    attr_f("alpha", 2.0f), attr_f("beta", 1.0f), NULL);
  g.nodes[1] = node("Relu", "relu", "h", "r", NULL);
  g.nodes[2] = node("Softmax", "sm", "r", "y", attr_i("axis", -1), NULL);
  g.in[0] = info("x", ELEM_F32, 2, (int64_t[]){-1, 2});
  g.out[0] = info("y", ELEM_F32, 2, (int64_t[]){-1, 3});
  const float x[4] = {1, 2, -3, 1};
  /* h = 2*x*w' + c: row 0 = {2.5, -6, 6}, row 1 = {-5.5, -8, -4}. */
  float r[2][3] = {{2.5f, 0, 6}, {0, 0, 0}}, want[6];
  for (int i = 0; i < 2; i++) {
    float sum = 0;
    for (int j = 0; j < 3; j++)
      sum += expf(r[i][j]);
    for (int j = 0; j < 3; j++)
      want[i * 3 + j] = expf(r[i][j]) / sum;
  }
  run_f32(&g, 2, xd, x, want, 6);
}

/* MatMul follows numpy.matmul: batch dims broadcast, a 2-D B applies to
 * every batch, a 1-D operand gains and loses a unit dimension. */
static void test_matmul_broadcast(void **state) {
  (void)state;
  float a[2 * 2 * 3], b[2 * 3 * 2];
  for (int i = 0; i < 12; i++)
    a[i] = (float)i, b[i] = (float)(i % 5) - 2;
  const int64_t ad[3] = {2, 2, 3}, b2[2] = {3, 2}, b3[3] = {2, 3, 2};
  float want2[8], want3[8];
  for (int bt = 0; bt < 2; bt++)
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        float s2 = 0, s3 = 0;
        for (int k = 0; k < 3; k++) {
          s2 += a[bt * 6 + i * 3 + k] * b[k * 2 + j];
          s3 += a[bt * 6 + i * 3 + k] * b[bt * 6 + k * 2 + j];
        }
        want2[bt * 4 + i * 2 + j] = s2;
        want3[bt * 4 + i * 2 + j] = s3;
      }
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1};
  g.init[0] = init_tensor("b", ELEM_F32, 2, b2, b);
  g.nodes[0] = node("MatMul", "mm", "a,b", "y", NULL);
  g.in[0] = info("a", ELEM_F32, 3, ad);
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  run_f32(&g, 3, ad, a, want2, 8);
  g.init[0] = init_tensor("b", ELEM_F32, 3, b3, b);
  run_f32(&g, 3, ad, a, want3, 8);
  /* [3] x [3,2] -> [2]: row 0 of a times b. */
  g.init[0] = init_tensor("b", ELEM_F32, 2, b2, b);
  g.in[0] = info("a", ELEM_F32, 1, (int64_t[]){3});
  run_f32(&g, 1, (int64_t[]){3}, a, want2, 2);
}

/* Softmax before opset 13 normalises over all dims from axis on (the input
 * coerced to 2-D); from 13 on over the one axis. */
static void test_softmax_opsets(void **state) {
  (void)state;
  const int64_t d[3] = {1, 2, 2};
  const float x[4] = {0, 0, 0, 0};
  const float old_want[4] = {0.25f, 0.25f, 0.25f, 0.25f};
  const float new_want[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  graph_t g = {.opset = 11, .n_nodes = 1, .n_in = 1, .n_out = 1};
  g.nodes[0] = node("Softmax", "sm", "x", "y", attr_i("axis", 1), NULL);
  g.in[0] = info("x", ELEM_F32, 3, d);
  g.out[0] = info("y", ELEM_F32, 3, d);
  run_f32(&g, 3, d, x, old_want, 4);
  g.opset = 13;
  run_f32(&g, 3, d, x, new_want, 4);
}

/* Reshape: 0 copies the input dim, -1 is inferred; then Transpose and
 * Concat move INT64 data, and Flatten folds dims from axis on. */
static void test_layout_ops(void **state) {
  (void)state;
  const int64_t shape[3] = {0, -1, 2}, sd[1] = {3}, xd[2] = {2, 4};
  graph_t g = {.n_nodes = 4, .n_in = 1, .n_out = 1, .n_init = 1};
  g.init[0] = init_tensor("shape", ELEM_I64, 1, sd, shape);
  g.nodes[0] = node("Reshape", "r", "x,shape", "r", NULL); /* [2,2,2] */
  g.nodes[1] = node("Transpose", "t", "r", "t", NULL);     /* reversed */
  g.nodes[2] = node("Concat", "c", "t,t", "c", attr_i("axis", 1), NULL);
  g.nodes[3] = node("Flatten", "f", "c", "y", attr_i("axis", 2), NULL);
  g.in[0] = info("x", ELEM_I64, 2, xd);
  g.out[0] = info("y", ELEM_I64, 2, (int64_t[]){-1, -1});
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  int64_t x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  gs_tensor_t in = tensor("x", GS_DTYPE_INT64, 2, xd, x);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_OK);
  const gs_tensor_t *y = gs_session_output(s, 0);
  assert_int_equal(y->rank, 2);
  assert_int_equal(y->shape[0], 8);
  assert_int_equal(y->shape[1], 2);
  /* t[i][j][k] = x[k][j][i]; c = [t, t] along axis 1. */
  const int64_t want[16] = {0, 4, 2, 6, 0, 4, 2, 6, 1, 5, 3, 7, 1, 5, 3, 7};
  assert_memory_equal(y->data, want, sizeof want);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* A chain of Relus needs only two live intermediates at any time, so the
 * plan holds two buffers, not four; a larger batch gets a larger plan and
 * the first shape's plan is reused when it comes back. */
static void test_memory_plan_reuse(void **state) {
  (void)state;
  graph_t g = {.n_nodes = 4, .n_in = 1, .n_out = 1};
  g.nodes[0] = node("Relu", "r1", "x", "a", NULL);
  g.nodes[1] = node("Relu", "r2", "a", "b", NULL);
  g.nodes[2] = node("Relu", "r3", "b", "c", NULL);
  g.nodes[3] = node("Relu", "r4", "c", "y", NULL);
  g.in[0] = info("x", ELEM_F32, 2, (int64_t[]){-1, 1024});
  g.out[0] = info("y", ELEM_F32, 2, (int64_t[]){-1, 1024});
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  float *x = calloc(4 * 1024, sizeof *x);
  assert_non_null(x);
  x[5] = -1, x[6] = 2;
  gs_tensor_t in1 = tensor("x", GS_DTYPE_FP32, 2, (int64_t[]){1, 1024}, x);
  gs_tensor_t in4 = tensor("x", GS_DTYPE_FP32, 2, (int64_t[]){4, 1024}, x);
  assert_int_equal(gs_session_run(s, &in1, 1, &err), GS_OK);
  assert_int_equal(gs_session_planned_bytes(s), 2 * 1024 * sizeof(float));
  assert_int_equal(gs_session_run(s, &in4, 1, &err), GS_OK);
  assert_int_equal(gs_session_planned_bytes(s), 2 * 4 * 1024 * sizeof(float));
  assert_int_equal(gs_session_plan(s, &in1, 1, &err), GS_OK);
  assert_int_equal(gs_session_output(s, 0)->shape[0], 1);
  assert_int_equal(gs_session_run(s, &in1, 1, &err), GS_OK);
  const float *y = gs_session_output(s, 0)->data;
  assert_true(y[5] == 0.0f && y[6] == 2.0f);
  gs_session_destroy(s);
  /* The plan's size limit holds; one cached plan still serves any shape. */
  gs_session_options_t opts = {.max_plan_bytes = 4096, .max_cached_plans = 1};
  assert_int_equal(gs_session_create(&s, m, &opts, &err), GS_OK);
  assert_int_equal(gs_session_run(s, &in1, 1, &err), GS_ELIMIT);
  gs_session_destroy(s);
  opts.max_plan_bytes = 0;
  assert_int_equal(gs_session_create(&s, m, &opts, &err), GS_OK);
  assert_int_equal(gs_session_run(s, &in4, 1, &err), GS_OK);
  assert_int_equal(gs_session_run(s, &in1, 1, &err), GS_OK);
  assert_int_equal(gs_session_output(s, 0)->shape[0], 1);
  free(x);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* A Reshape whose target is a graph input is planned from the target's
 * values: the same input shapes with other values give another plan. */
static void test_reshape_target_input(void **state) {
  (void)state;
  graph_t g = {.n_nodes = 1, .n_in = 2, .n_out = 1};
  g.nodes[0] = node("Reshape", "rs", "x,shape", "y", NULL);
  g.in[0] = info("x", ELEM_F32, 1, (int64_t[]){4});
  g.in[1] = info("shape", ELEM_I64, 1, (int64_t[]){2});
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  float x[4] = {1, 2, 3, 4};
  int64_t to22[2] = {2, 2}, to41[2] = {-1, 1};
  gs_tensor_t in[2] = {
      tensor("x", GS_DTYPE_FP32, 1, (int64_t[]){4}, x),
      tensor("shape", GS_DTYPE_INT64, 1, (int64_t[]){2}, to22)};
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_OK);
  assert_int_equal(gs_session_output(s, 0)->shape[0], 2);
  in[1].data = to41;
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_OK);
  assert_int_equal(gs_session_output(s, 0)->shape[0], 4);
  assert_memory_equal(gs_session_output(s, 0)->data, x, sizeof x);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* An op outside the set fails the load, naming the op and the node. */
static void test_unsupported_op(void **state) {
  (void)state;
  graph_t g = {.n_nodes = 2, .n_in = 1, .n_out = 1};
  g.nodes[0] = node("Relu", "relu_0", "x", "h", NULL);
  g.nodes[1] = node("LSTM", "lstm_1", "h", "y", NULL);
  g.in[0] = info("x", ELEM_F32, 1, (int64_t[]){4});
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  gs_model_t *m = NULL;
  gs_error_t err = {0};
  assert_int_equal(try_load(&g, &m, &err), GS_EUNSUPPORTED);
  assert_null(m);
  assert_non_null(strstr(err.msg, "'LSTM'"));
  assert_non_null(strstr(err.msg, "'lstm_1'"));
  /* Attributes the engine does not implement are refused too. */
  g.nodes[1] = node("Add", "add_1", "h,h", "y", attr_i("broadcast", 1), NULL);
  assert_int_equal(try_load(&g, &m, &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "'broadcast'"));
  /* And types: MatMul is FP32 only. */
  g.in[0] = info("x", ELEM_I32, 2, (int64_t[]){2, 2});
  g.nodes[1] = node("MatMul", "mm", "h,h", "y", NULL);
  assert_int_equal(try_load(&g, &m, &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "INT32"));
  /* An opset newer than the engine knows is refused, not guessed at. */
  g = simple_graph();
  g.opset = 99;
  assert_int_equal(try_load(&g, &m, &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "opset 99"));
}

/* Graph structure: nodes may come in any order; a cycle, an undefined
 * input or a duplicate name is an error naming the tensor or node. */
static void test_graph_structure(void **state) {
  (void)state;
  graph_t g = {.n_nodes = 2, .n_in = 1, .n_out = 1};
  g.nodes[0] = node("Relu", "second", "h", "y", NULL);
  g.nodes[1] = node("Sigmoid", "first", "x", "h", NULL);
  g.in[0] = info("x", ELEM_F32, 1, (int64_t[]){1});
  g.out[0] = info("y", ELEM_F32, 1, (int64_t[]){1});
  const float x[1] = {0}, want[1] = {0.5f};
  run_f32(&g, 1, (int64_t[]){1}, x, want, 1);
  gs_model_t *m = NULL;
  gs_error_t err = {0};
  g.nodes[1] = node("Sigmoid", "first", "y", "h", NULL);
  assert_int_equal(try_load(&g, &m, &err), GS_EPARSE);
  assert_non_null(strstr(err.msg, "cycle"));
  g.nodes[1] = node("Sigmoid", "first", "nowhere", "h", NULL);
  assert_int_equal(try_load(&g, &m, &err), GS_EPARSE);
  assert_non_null(strstr(err.msg, "'nowhere'"));
  g.nodes[1] = node("Sigmoid", "first", "x", "x", NULL);
  assert_int_equal(try_load(&g, &m, &err), GS_EPARSE);
  /* A Reshape target computed by the graph cannot be planned ahead. */
  g.nodes[0] = node("Identity", "id", "s", "s2", NULL);
  g.nodes[1] = node("Reshape", "rs", "x,s2", "y", NULL);
  g.in[1] = info("s", ELEM_I64, 1, (int64_t[]){1});
  g.n_in = 2;
  assert_int_equal(try_load(&g, &m, &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "'rs'"));
}

/* Shapes that do not fit an op fail the plan naming the node. */
static void test_shape_errors(void **state) {
  (void)state;
  graph_t g = {.n_nodes = 1, .n_in = 2, .n_out = 1};
  g.nodes[0] = node("MatMul", "proj", "a,b", "y", NULL);
  g.in[0] = info("a", ELEM_F32, 2, (int64_t[]){-1, -1});
  g.in[1] = info("b", ELEM_F32, 2, (int64_t[]){-1, -1});
  g.out[0] = info("y", ELEM_F32, 2, (int64_t[]){-1, -1});
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  float buf[12] = {0};
  gs_tensor_t in[2] = {tensor("a", GS_DTYPE_FP32, 2, (int64_t[]){2, 3}, buf),
                       tensor("b", GS_DTYPE_FP32, 2, (int64_t[]){4, 3}, buf)};
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "'proj'"));
  assert_non_null(strstr(err.msg, "[2,3]"));
  assert_null(gs_session_output(s, 0));
  /* The same session recovers with shapes that fit. */
  in[1] = tensor("b", GS_DTYPE_FP32, 2, (int64_t[]){3, 4}, buf);
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_OK);
  assert_int_equal(gs_session_output(s, 0)->shape[1], 4);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Integer division by zero is an error, not a crash. */
static void test_int_div_by_zero(void **state) {
  (void)state;
  graph_t g = {.n_nodes = 1, .n_in = 2, .n_out = 1};
  g.nodes[0] = node("Div", "div", "a,b", "y", NULL);
  g.in[0] = info("a", ELEM_I32, 1, (int64_t[]){2});
  g.in[1] = info("b", ELEM_I32, 1, (int64_t[]){2});
  g.out[0] = info("y", ELEM_I32, 1, (int64_t[]){2});
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  int32_t a[2] = {INT32_MIN, 7}, b[2] = {-1, 2}, z[2] = {1, 0};
  gs_tensor_t in[2] = {tensor(NULL, GS_DTYPE_INT32, 1, (int64_t[]){2}, a),
                       tensor(NULL, GS_DTYPE_INT32, 1, (int64_t[]){2}, b)};
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_OK);
  assert_int_equal(((const int32_t *)gs_session_output(s, 0)->data)[1], 3);
  in[1].data = z;
  assert_int_equal(gs_session_run(s, in, 2, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "division by zero"));
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Corrupt files: garbage, truncation, nesting bombs and empty input fail
 * with a clear message; nothing crashes. */
static void test_corrupt_files(void **state) {
  (void)state;
  graph_t g = simple_graph();
  size_t len;
  uint8_t *good = pack(&g, &len);
  gs_model_t *m = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_model_load_buffer(&m, good, len / 2, NULL, &err),
                   GS_EPARSE);
  assert_non_null(strstr(err.msg, "not an ONNX model"));
  const char junk[] = "this is not a protobuf at all \xff\xff\xff";
  assert_int_not_equal(gs_model_load_buffer(&m, junk, sizeof junk, NULL, &err),
                       GS_OK);
  assert_int_equal(gs_model_load_buffer(&m, junk, 0, NULL, &err), GS_EPARSE);
  /* ModelProto.graph (field 7) -> GraphProto.node (1) -> NodeProto
   * .attribute (5) -> AttributeProto.g (6) -> GraphProto.node ... 3000
   * messages deep: refused before protobuf-c recurses. */
  enum { LEVELS = 3000, CAP = LEVELS * 6 };
  static const uint8_t cycle[3] = {0x0a, 0x2a, 0x32};
  uint8_t *bomb = keep(calloc(CAP, 1));
  size_t at = CAP; /* built from the innermost message outwards */
  for (int i = LEVELS - 1; i >= 0; i--) {
    size_t inner = CAP - at;
    uint8_t varint[10];
    size_t vn = 0;
    do
      varint[vn++] = (uint8_t)((inner & 0x7f) | (inner > 0x7f ? 0x80 : 0));
    while ((inner >>= 7) != 0);
    at -= vn;
    memcpy(bomb + at, varint, vn);
    bomb[--at] = i == 0 ? 0x3a : cycle[(i - 1) % 3];
  }
  assert_int_equal(gs_model_load_buffer(&m, bomb + at, CAP - at, NULL, &err),
                   GS_ELIMIT);
  assert_non_null(strstr(err.msg, "nest"));
  /* A model without a graph. */
  const uint8_t ir_only[] = {0x08, 0x08};
  assert_int_equal(gs_model_load_buffer(&m, ir_only, 2, NULL, &err), GS_EPARSE);
  assert_null(m);
}

/* Models loaded from equal bytes get equal digests (the CUDA provider
 * shares their weights: two green instances' copies of a repository hold
 * one copy); a one-bit change in a weight gives another digest. The hash
 * is SipHash-2-4: both lanes give the reference vectors of its paper (key
 * 00..0f; the empty message, and 00..0e). */
static void test_model_digest(void **state) {
  (void)state;
  uint64_t key[4], got[2];
  uint8_t bytes16[16];
  for (int i = 0; i < 16; i++)
    bytes16[i] = (uint8_t)i;
  memcpy(key, bytes16, 16);
  memcpy(key + 2, bytes16, 16);
  gs__siphash24_x2(key, bytes16, 0, got);
  assert_true(got[0] == 0x726fdb47dd0e0e31ull && got[1] == got[0]);
  gs__siphash24_x2(key, bytes16, 15, got);
  assert_true(got[0] == 0xa129ca6149be45e5ull && got[1] == got[0]);
  static const float w[6] = {1.25f, 0, 0, 1, 1, 1};
  static const int64_t wd[2] = {3, 2}, xd[2] = {-1, 2}, yd[2] = {-1, 3};
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1};
  g.nodes[0] = node("Gemm", "fc", "x,w", "y", attr_i("transB", 1), NULL);
  g.init[0] = init_tensor("w", ELEM_F32, 2, wd, w);
  g.in[0] = info("x", ELEM_F32, 2, xd);
  g.out[0] = info("y", ELEM_F32, 2, yd);
  size_t len;
  uint8_t *bytes = pack(&g, &len);
  gs_model_t *a = NULL, *b = NULL, *c = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_model_load_buffer(&a, bytes, len, NULL, &err), GS_OK);
  assert_int_equal(gs_model_load_buffer(&b, bytes, len, NULL, &err), GS_OK);
  assert_true(a->digest[0] || a->digest[1]);
  assert_memory_equal(a->digest, b->digest, sizeof a->digest);
  float first = w[0];
  uint8_t *at = memmem(bytes, len, &first, sizeof first);
  assert_non_null(at);
  at[0] ^= 1; /* 1.25 -> 1.25 + 2^-23: still a valid model */
  assert_int_equal(gs_model_load_buffer(&c, bytes, len, NULL, &err), GS_OK);
  assert_memory_not_equal(a->digest, c->digest, sizeof a->digest);
  gs_model_destroy(a);
  gs_model_destroy(b);
  gs_model_destroy(c);
}

/* Hard limits: file size, node count, initializer size. */
static void test_limits(void **state) {
  (void)state;
  graph_t g = simple_graph();
  size_t len;
  uint8_t *buf = pack(&g, &len);
  gs_model_limits_t lim;
  gs_model_t *m = NULL;
  gs_error_t err = {0};
  gs_model_limits_default(&lim);
  lim.max_file_bytes = len - 1;
  assert_int_equal(gs_model_load_buffer(&m, buf, len, &lim, &err), GS_ELIMIT);
  gs_model_limits_default(&lim);
  lim.max_nodes = 1;
  assert_int_equal(gs_model_load_buffer(&m, buf, len, &lim, &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "nodes"));
  graph_t w = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1};
  float big[64] = {0};
  w.init[0] = init_tensor("w", ELEM_F32, 1, (int64_t[]){64}, big);
  w.nodes[0] = node("Add", "add", "x,w", "y", NULL);
  w.in[0] = info("x", ELEM_F32, 1, (int64_t[]){64});
  w.out[0] = info("y", ELEM_F32, 1, (int64_t[]){64});
  buf = pack(&w, &len);
  gs_model_limits_default(&lim);
  lim.max_tensor_bytes = 255;
  assert_int_equal(gs_model_load_buffer(&m, buf, len, &lim, &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "'w'"));
  assert_int_equal(
      gs_model_load_file(&m, "/nonexistent/model.onnx", NULL, &err),
      GS_ESYSTEM);
  assert_non_null(strstr(err.msg, "/nonexistent/model.onnx"));
  assert_null(m);
}

/* KServe type names round-trip; the thread count is OpenBLAS's. */
static void test_names_and_threads(void **state) {
  (void)state;
  for (int t = 1; t < GS_DTYPE_MAX; t++)
    assert_int_equal(gs_dtype_from_name(gs_dtype_name((gs_dtype_t)t)), t);
  assert_int_equal(gs_dtype_size(GS_DTYPE_FP32), 4);
  assert_int_equal(gs_dtype_from_name("FLOAT"), GS_DTYPE_INVALID);
  assert_int_equal(gs_engine_op_count(), 22);
  assert_string_equal(gs_engine_op_name(21), "Cast");
  assert_string_equal(gs_engine_op_name(20), "Clip");
  assert_string_equal(gs_engine_op_name(0), "MatMul");
  gs_error_t err = {0};
  assert_int_equal(gs_engine_set_threads(2, &err), GS_OK);
  assert_int_equal(gs_engine_threads(), 2);
  assert_int_equal(gs_engine_set_threads(0, &err), GS_EINVAL);
  assert_int_equal(gs_engine_set_threads(1, &err), GS_OK);
}

/* --- CNN ops ------------------------------------------------------------ */

/* Deterministic test data in [-1, 1). */
static float *ramp(size_t n, unsigned seed) {
  float *v = keep(malloc(n * sizeof *v + 1));
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    v[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
  }
  return v;
}

/* Runs g on FP32 inputs named x0, x1, ... and returns a copy of output
 * `out` (its shape in *shape); *nodes is the node count after loading. */
static float *run_graph(const graph_t *g, size_t n_in, const gs_tensor_t *in,
                        size_t out, gs_tensor_t *shape, size_t *nodes) {
  gs_model_t *m = load(g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  if (gs_session_run(s, in, n_in, &err) != GS_OK)
    fail_msg("run failed: %s", err.msg);
  const gs_tensor_t *y = gs_session_output(s, out);
  float *copy = keep(malloc(y->bytes + 1));
  memcpy(copy, y->data, y->bytes);
  if (shape)
    *shape = *y;
  if (nodes)
    *nodes = gs_model_node_count(m);
  gs_session_destroy(s);
  gs_model_destroy(m);
  return copy;
}

static void assert_close(const float *got, const float *want, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fabsf(got[i] - want[i]) > 1e-4f * (1.0f + fabsf(want[i])))
      fail_msg("element %zu: %g, want %g", i, got[i], want[i]);
}

/* The output shape a one-node model plans for input dims xd. */
static void plan_shape(const graph_t *g, unsigned rank, const int64_t *xd,
                       unsigned want_rank, const int64_t *want) {
  gs_model_t *m = load(g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  gs_tensor_t in =
      tensor("x", GS_DTYPE_FP32, rank, xd, ramp(count_of(rank, xd), 1));
  if (gs_session_plan(s, &in, 1, &err) != GS_OK)
    fail_msg("plan failed: %s", err.msg);
  const gs_tensor_t *y = gs_session_output(s, 0);
  assert_int_equal(y->rank, want_rank);
  for (unsigned i = 0; i < want_rank; i++)
    if (y->shape[i] != want[i])
      fail_msg("dim %u: %lld, want %lld", i, (long long)y->shape[i],
               (long long)want[i]);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

static graph_t pool_graph(const char *op, Onnx__AttributeProto *a0,
                          Onnx__AttributeProto *a1, Onnx__AttributeProto *a2,
                          Onnx__AttributeProto *a3) {
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1};
  g.nodes[0] = node(op, "pool", "x", "y", a0, a1, a2, a3, NULL);
  g.in[0] = info("x", ELEM_F32, -1, NULL);
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  return g;
}

/* Output size per ONNX's Conv/MaxPool spec: floor((in + pad_begin + pad_end
 * - dilation * (kernel - 1) - 1) / stride) + 1; ceil instead of floor with
 * ceil_mode, where a window that would start in the right padding is
 * dropped; SAME_* gives ceil(in / stride) with the odd pad at the end
 * (UPPER) or the beginning (LOWER); VALID pads nothing. */
static void test_conv_geometry(void **state) {
  (void)state;
  graph_t g = pool_graph("MaxPool", INTS("kernel_shape", 3), INTS("pads", 1, 1),
                         INTS("strides", 2), NULL);
  /* (7 + 2 - 2 - 1) / 2 + 1 = 4 */
  plan_shape(&g, 3, (int64_t[]){1, 2, 7}, 3, (int64_t[]){1, 2, 4});
  g = pool_graph("MaxPool", INTS("kernel_shape", 3), INTS("pads", 1, 1),
                 INTS("strides", 2), INTS("dilations", 2));
  /* (7 + 2 - 4 - 1) / 2 + 1 = 3 */
  plan_shape(&g, 3, (int64_t[]){1, 2, 7}, 3, (int64_t[]){1, 2, 3});
  /* 4, k 3, s 2: floor 1, ceil 2. */
  g = pool_graph("MaxPool", INTS("kernel_shape", 3, 3), INTS("strides", 2, 2),
                 attr_i("ceil_mode", 1), NULL);
  plan_shape(&g, 4, (int64_t[]){1, 1, 4, 4}, 4, (int64_t[]){1, 1, 2, 2});
  /* 4, k 2, s 3, pads 0/2: ceil(4 / 3) + 1 = 3, but the third window would
   * start at 6, in the right padding: 2. */
  g = pool_graph("AveragePool", INTS("kernel_shape", 2), INTS("strides", 3),
                 INTS("pads", 0, 2), attr_i("ceil_mode", 1));
  plan_shape(&g, 3, (int64_t[]){1, 1, 4}, 3, (int64_t[]){1, 1, 2});
  /* VALID: (7 - 3) / 2 + 1 = 3 per dim, 3-D. */
  g = pool_graph("MaxPool", INTS("kernel_shape", 3, 3, 3),
                 INTS("strides", 2, 2, 2), attr_s("auto_pad", "VALID"), NULL);
  plan_shape(&g, 5, (int64_t[]){2, 3, 7, 7, 8}, 5, (int64_t[]){2, 3, 3, 3, 3});
  /* SAME: 6 / 2 = 3 outputs, 1 pad: at the end (UPPER) or the beginning
   * (LOWER); on the ramp 0..5, max windows are {0,1,2},{2,3,4},{4,5,pad}
   * or {pad,0,1},{1,2,3},{3,4,5}. */
  const float x[6] = {0, 1, 2, 3, 4, 5}, upper[3] = {2, 4, 5},
              lower[3] = {1, 3, 5};
  const int64_t xd[3] = {1, 1, 6};
  g = pool_graph("MaxPool", INTS("kernel_shape", 3), INTS("strides", 2),
                 attr_s("auto_pad", "SAME_UPPER"), NULL);
  run_f32(&g, 3, xd, x, upper, 3);
  g = pool_graph("MaxPool", INTS("kernel_shape", 3), INTS("strides", 2),
                 attr_s("auto_pad", "SAME_LOWER"), NULL);
  run_f32(&g, 3, xd, x, lower, 3);
  /* On 0..6 with pads 1/0, k 3, s 2, ceil_mode: windows {pad,0,1},
   * {1,2,3}, {3,4,5} and the partial {5,6}. count_include_pad counts the
   * pad in the first (1/3, not 1/2), never what lies past the padded
   * input (the last stays 5.5). */
  const float x7[7] = {0, 1, 2, 3, 4, 5, 6};
  const float incl[4] = {1.0f / 3, 2, 4, 5.5f}, excl[4] = {0.5f, 2, 4, 5.5f};
  g = pool_graph("AveragePool", INTS("kernel_shape", 3), INTS("strides", 2),
                 INTS("pads", 1, 0), attr_i("ceil_mode", 1));
  run_f32(&g, 3, (int64_t[]){1, 1, 7}, x7, excl, 4);
  g.nodes[0]->attribute[g.nodes[0]->n_attribute++] =
      attr_i("count_include_pad", 1);
  run_f32(&g, 3, (int64_t[]){1, 1, 7}, x7, incl, 4);
  /* Conv: channels out from W; 2-D, stride 2, asymmetric pads. */
  graph_t c = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1};
  const int64_t wd[4] = {5, 3, 3, 2};
  c.init[0] = init_tensor("w", ELEM_F32, 4, wd, ramp(90, 1));
  c.nodes[0] = node("Conv", "conv", "x,w", "y", INTS("strides", 2, 1),
                    INTS("pads", 1, 0, 0, 1), NULL);
  c.in[0] = info("x", ELEM_F32, 4, (int64_t[]){-1, 3, -1, -1});
  c.out[0] = info("y", ELEM_F32, -1, NULL);
  /* H: (9 + 1 - 3) / 2 + 1 = 4; W: (5 + 1 - 2) / 1 + 1 = 5 */
  plan_shape(&c, 4, (int64_t[]){2, 3, 9, 5}, 4, (int64_t[]){2, 5, 4, 5});
}

/* MaxPool along rows by its definition (1-D, pads lo/hi, NaN never
 * wins) against the engine's row passes: on AVX-512 CPUs 16 outputs at a
 * time for strides 1 and 2 (two whole vectors and a tail of 5 here, and
 * rows shorter than one vector), the rest scalar. */
static void check_maxpool_row(int64_t len, int64_t k, int64_t stride,
                              int64_t pad) {
  float x[80], want[80];
  size_t n = (size_t)((len + 2 * pad - k) / stride + 1);
  for (int64_t i = 0; i < len; i++)
    x[i] = (float)((i * 37) % 23) - 11.0f;
  x[len / 2] = NAN;
  for (size_t o = 0; o < n; o++) {
    want[o] = -FLT_MAX;
    for (int64_t j = 0; j < k; j++) {
      int64_t at = (int64_t)o * stride - pad + j;
      if (at >= 0 && at < len && x[at] > want[o])
        want[o] = x[at];
    }
  }
  graph_t g = pool_graph("MaxPool", INTS("kernel_shape", k),
                         INTS("strides", stride), INTS("pads", pad, pad), NULL);
  run_f32(&g, 3, (int64_t[]){1, 1, len}, x, want, n);
}

static void test_maxpool_rows(void **state) {
  (void)state;
  check_maxpool_row(75, 2, 2, 0); /* 37 outputs: 16, 16 and 5 */
  check_maxpool_row(75, 3, 2, 1); /* 38, with a pad at each end */
  check_maxpool_row(40, 3, 1, 1);
  check_maxpool_row(9, 3, 2, 1);
  check_maxpool_row(50, 4, 3, 2); /* stride 3: the scalar loop */
}

/* Conv by its definition, over 3 spatial dims (leading ones of size 1):
 * y[n][m][o] = b[m] + sum over c of the group of m and over kernel taps k
 * of w[m][c][k] * x[n][g*C/G + c][o*stride - pad_begin + k*dilation]. */
typedef struct {
  int64_t n, c, m, group, in[3], k[3], s[3], d[3], pb[3], out[3];
} ref_conv_t;

static float *ref_conv(const ref_conv_t *r, const float *x, const float *w,
                       const float *b) {
  int64_t cg = r->c / r->group, mg = r->m / r->group;
  size_t osz = (size_t)(r->out[0] * r->out[1] * r->out[2]);
  float *y = keep(calloc((size_t)(r->n * r->m) * osz + 1, sizeof *y));
  for (int64_t n = 0; n < r->n; n++)
    for (int64_t m = 0; m < r->m; m++)
      for (size_t o = 0; o < osz; o++) {
        int64_t od[3] = {(int64_t)o / (r->out[1] * r->out[2]),
                         (int64_t)o / r->out[2] % r->out[1],
                         (int64_t)o % r->out[2]};
        float sum = b ? b[m] : 0.0f;
        for (int64_t c = 0; c < cg; c++)
          for (int64_t k0 = 0; k0 < r->k[0]; k0++)
            for (int64_t k1 = 0; k1 < r->k[1]; k1++)
              for (int64_t k2 = 0; k2 < r->k[2]; k2++) {
                int64_t kk[3] = {k0, k1, k2}, at[3];
                bool inside = true;
                for (int i = 0; i < 3; i++) {
                  at[i] = od[i] * r->s[i] - r->pb[i] + kk[i] * r->d[i];
                  inside = inside && at[i] >= 0 && at[i] < r->in[i];
                }
                if (!inside)
                  continue;
                int64_t xc = (m / mg) * cg + c;
                sum += w[((m * cg + c) * r->k[0] + k0) * r->k[1] * r->k[2] +
                         k1 * r->k[2] + k2] *
                       x[(((n * r->c + xc) * r->in[0] + at[0]) * r->in[1] +
                          at[1]) *
                             r->in[2] +
                         at[2]];
              }
        y[(size_t)(n * r->m + m) * osz + o] = sum;
      }
  return y;
}

/* Runs a Conv node with the given attributes against ref_conv. */
static void check_conv(const ref_conv_t *r, unsigned spatial, bool bias,
                       Onnx__AttributeProto *a0, Onnx__AttributeProto *a1,
                       Onnx__AttributeProto *a2, Onnx__AttributeProto *a3) {
  int64_t xd[5] = {r->n, r->c}, wd[5] = {r->m, r->c / r->group};
  for (unsigned i = 0; i < spatial; i++) {
    xd[2 + i] = r->in[3 - spatial + i];
    wd[2 + i] = r->k[3 - spatial + i];
  }
  size_t nx = count_of(spatial + 2, xd), nw = count_of(spatial + 2, wd);
  const float *x = ramp(nx, 2), *w = ramp(nw, 3), *b = ramp((size_t)r->m, 4);
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1 + bias};
  g.init[0] = init_tensor("w", ELEM_F32, spatial + 2, wd, w);
  if (bias)
    g.init[1] = init_tensor("b", ELEM_F32, 1, (int64_t[]){r->m}, b);
  g.nodes[0] =
      node("Conv", "conv", bias ? "x,w,b" : "x,w", "y", a0, a1, a2, a3, NULL);
  g.in[0] = info("x", ELEM_F32, -1, NULL);
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  gs_tensor_t in = tensor("x", GS_DTYPE_FP32, spatial + 2, xd, x), shape;
  float *y = run_graph(&g, 1, &in, 0, &shape, NULL);
  for (unsigned i = 0; i < spatial; i++)
    assert_int_equal(shape.shape[2 + i], r->out[3 - spatial + i]);
  assert_close(y, ref_conv(r, x, w, bias ? b : NULL),
               (size_t)(r->n * r->m * r->out[0] * r->out[1] * r->out[2]));
}

/* Conv values against the definition: grouped with strides, dilations and
 * asymmetric pads (im2col), depthwise and a channel multiplier (direct),
 * 1x1 (the direct sgemm), 1-D, 3-D. */
static void test_conv_values(void **state) {
  (void)state;
  /* H: (7 + 1 + 2 - 1 * (2 - 1) - 1) / 2 + 1 = 5;
   * W: (6 + 0 + 1 - 2 * (2 - 1) - 1) / 1 + 1 = 5 */
  ref_conv_t grouped = {.n = 2,
                        .c = 4,
                        .m = 6,
                        .group = 2,
                        .in = {1, 7, 6},
                        .k = {1, 2, 2},
                        .s = {1, 2, 1},
                        .d = {1, 1, 2},
                        .pb = {0, 1, 0},
                        .out = {1, 5, 5}};
  check_conv(&grouped, 2, true, attr_i("group", 2), INTS("strides", 2, 1),
             INTS("dilations", 1, 2), INTS("pads", 1, 0, 2, 1));
  ref_conv_t depthwise = {.n = 1,
                          .c = 3,
                          .m = 3,
                          .group = 3,
                          .in = {1, 5, 5},
                          .k = {1, 3, 3},
                          .s = {1, 1, 1},
                          .d = {1, 1, 1},
                          .pb = {0, 1, 1},
                          .out = {1, 5, 5}};
  check_conv(&depthwise, 2, false, attr_i("group", 3),
             INTS("kernel_shape", 3, 3), INTS("pads", 1, 1, 1, 1), NULL);
  /* Depthwise with a channel multiplier of 2, stride 2, dilation 2:
   * (9 + 2 + 2 - 2 * (3 - 1) - 1) / 2 + 1 = 5. */
  ref_conv_t multiplier = {.n = 2,
                           .c = 4,
                           .m = 8,
                           .group = 4,
                           .in = {1, 9, 9},
                           .k = {1, 3, 3},
                           .s = {1, 2, 2},
                           .d = {1, 2, 2},
                           .pb = {0, 2, 2},
                           .out = {1, 5, 5}};
  check_conv(&multiplier, 2, true, attr_i("group", 4), INTS("strides", 2, 2),
             INTS("dilations", 2, 2), INTS("pads", 2, 2, 2, 2));
  ref_conv_t pointwise = {.n = 2,
                          .c = 5,
                          .m = 4,
                          .group = 1,
                          .in = {1, 3, 3},
                          .k = {1, 1, 1},
                          .s = {1, 1, 1},
                          .d = {1, 1, 1},
                          .out = {1, 3, 3}};
  check_conv(&pointwise, 2, true, NULL, NULL, NULL, NULL);
  ref_conv_t one_d = {.n = 1,
                      .c = 2,
                      .m = 3,
                      .group = 1,
                      .in = {1, 1, 9},
                      .k = {1, 1, 3},
                      .s = {1, 1, 2},
                      .d = {1, 1, 1},
                      .pb = {0, 0, 1},
                      .out = {1, 1, 5}};
  check_conv(&one_d, 1, true, attr_s("auto_pad", "SAME_UPPER"),
             INTS("strides", 2), NULL, NULL);
  ref_conv_t three_d = {.n = 1,
                        .c = 2,
                        .m = 2,
                        .group = 1,
                        .in = {4, 3, 5},
                        .k = {2, 2, 2},
                        .s = {2, 1, 1},
                        .d = {1, 1, 1},
                        .pb = {0, 0, 0},
                        .out = {2, 2, 4}};
  check_conv(&three_d, 3, false, INTS("strides", 2, 1, 1), NULL, NULL, NULL);
  /* Sizes for the packed GEMM (AVX-512): 20 filters (a 12-row panel and
   * an 8-row one), K = 40 * 9 = 360 (two 256-step passes), N = 9 * 7 = 63
   * (a full and a 31-column panel); grouped with 9 filters per group; a
   * 1x1 over 300 channels with 35 outputs. */
  ref_conv_t wide = {.n = 2,
                     .c = 40,
                     .m = 20,
                     .group = 1,
                     .in = {1, 9, 7},
                     .k = {1, 3, 3},
                     .s = {1, 1, 1},
                     .d = {1, 1, 1},
                     .pb = {0, 1, 1},
                     .out = {1, 9, 7}};
  check_conv(&wide, 2, true, INTS("pads", 1, 1, 1, 1), NULL, NULL, NULL);
  ref_conv_t wide_grouped = {.n = 1,
                             .c = 16,
                             .m = 18,
                             .group = 2,
                             .in = {1, 8, 8},
                             .k = {1, 3, 3},
                             .s = {1, 2, 2},
                             .d = {1, 1, 1},
                             .pb = {0, 0, 0},
                             .out = {1, 3, 3}};
  check_conv(&wide_grouped, 2, true, attr_i("group", 2), INTS("strides", 2, 2),
             NULL, NULL);
  ref_conv_t wide_pointwise = {.n = 1,
                               .c = 300,
                               .m = 9,
                               .group = 1,
                               .in = {1, 5, 7},
                               .k = {1, 1, 1},
                               .s = {1, 1, 1},
                               .d = {1, 1, 1},
                               .out = {1, 5, 7}};
  check_conv(&wide_pointwise, 2, false, NULL, NULL, NULL, NULL);
}

/* The packed GEMM's W panels (12 rows; a rest of 13 to 16 rows as two
 * 8-row panels, other rests rounded up to 4) give the definition's values
 * whatever the filter count and thread count, and so does the path of a
 * CPU without AVX-512F (forced): 28 filters (12 + 8 + 8), 13 (8 + 8, the
 * last 5 rows used), 40 (12 + 12 + 16 as 8 + 8), 64 (ResNet's: four 12s
 * and 8 + 8), 21 (12 + a 9-row rest in a 12-row panel); a batch whose
 * images go to the threads one each; stride-2 packing, and packing that
 * the threads share. */
static void test_conv_packed_panels(void **state) {
  (void)state;
  const int64_t filters[] = {28, 13, 40, 64, 21};
  gs_error_t err = {0};
  for (int off = 0; off < 2; off++) {
    gs__gemm_set_off(off == 1);
    for (unsigned threads = 1; threads <= 2; threads++) {
      assert_int_equal(gs_engine_set_threads(threads, &err), GS_OK);
      for (size_t i = 0; i < 2 * sizeof filters / sizeof filters[0]; i++) {
        ref_conv_t r = {.n = 1 + (int64_t)(i % 2), /* 2: images merged */
                        .c = 5,
                        .m = filters[i / 2],
                        .group = 1,
                        .in = {1, 6, 7},
                        .k = {1, 3, 3},
                        .s = {1, 1, 1},
                        .d = {1, 1, 1},
                        .pb = {0, 1, 1},
                        .out = {1, 6, 7}};
        check_conv(&r, 2, true, INTS("pads", 1, 1, 1, 1), NULL, NULL, NULL);
      }
      /* 3 images of a product too small to share (8 x 256 x 27): with 2
       * threads they go to the threads one each. */
      ref_conv_t apart = {.n = 3,
                          .c = 3,
                          .m = 8,
                          .group = 1,
                          .in = {1, 16, 16},
                          .k = {1, 3, 3},
                          .s = {1, 1, 1},
                          .d = {1, 1, 1},
                          .pb = {0, 1, 1},
                          .out = {1, 16, 16}};
      check_conv(&apart, 2, true, INTS("pads", 1, 1, 1, 1), NULL, NULL, NULL);
      /* Stride 2 over rows of 71 (36 outputs a row: the packing's
       * 16-wide stride-2 moves, whole and cut at a panel's edge), and
       * 8 channels of 64x64 at stride 2 (72 x 1024 floats packed: over
       * the size where 2 threads share the packing). */
      ref_conv_t strided = {.n = 1,
                            .c = 3,
                            .m = 10,
                            .group = 1,
                            .in = {1, 9, 71},
                            .k = {1, 3, 3},
                            .s = {1, 2, 2},
                            .d = {1, 1, 1},
                            .pb = {0, 1, 1},
                            .out = {1, 5, 36}};
      check_conv(&strided, 2, true, INTS("strides", 2, 2),
                 INTS("pads", 1, 1, 1, 1), NULL, NULL);
      ref_conv_t shared = {.n = 1,
                           .c = 8,
                           .m = 12,
                           .group = 1,
                           .in = {1, 64, 64},
                           .k = {1, 3, 3},
                           .s = {1, 2, 2},
                           .d = {1, 1, 1},
                           .pb = {0, 1, 1},
                           .out = {1, 32, 32}};
      check_conv(&shared, 2, true, INTS("strides", 2, 2),
                 INTS("pads", 1, 1, 1, 1), NULL, NULL);
    }
  }
  gs__gemm_set_off(false);
  assert_int_equal(gs_engine_set_threads(1, &err), GS_OK);
}

/* A conv whose output rows are cut into chunks (kernels_conv.c's
 * conv_chunked, chunks made small here) gives the definition's values at
 * 1 and 2 threads: a 7x7 stride-2 conv over 3 channels (ResNet's first)
 * with 13 output rows, cut at 5 rows (5 + 5 + 3; at 2 threads the run
 * cuts at 4 for an even count of chunks: 4 + 4 + 4 + 1) and at 1 row; two
 * images of 41 rows (a product too large to go to the threads image by
 * image) cut at 3 rows; a 1x1 over 24 channels (its input moved by the
 * chunk's rows, not its pads). */
static void test_conv_chunked(void **state) {
  (void)state;
  gs_error_t err = {0};
  ref_conv_t first = {.n = 1,
                      .c = 3,
                      .m = 16,
                      .group = 1,
                      .in = {1, 25, 29},
                      .k = {1, 7, 7},
                      .s = {1, 2, 2},
                      .d = {1, 1, 1},
                      .pb = {0, 3, 3},
                      .out = {1, 13, 15}};
  ref_conv_t big = first;
  big.n = 2;
  big.in[1] = 81;
  big.in[2] = 89;
  big.out[1] = 41;
  big.out[2] = 45;
  ref_conv_t point = {.n = 1,
                      .c = 24,
                      .m = 10,
                      .group = 1,
                      .in = {1, 9, 11},
                      .k = {1, 1, 1},
                      .s = {1, 1, 1},
                      .d = {1, 1, 1},
                      .out = {1, 9, 11}};
  for (unsigned threads = 1; threads <= 2; threads++) {
    assert_int_equal(gs_engine_set_threads(threads, &err), GS_OK);
    gs__conv_set_chunk_bytes(147 * 15 * 4 * 5); /* 5 rows of the 7x7 */
    check_conv(&first, 2, true, INTS("strides", 2, 2), INTS("pads", 3, 3, 3, 3),
               NULL, NULL);
    gs__conv_set_chunk_bytes(147 * 45 * 4 * 3); /* 3 rows of the big one */
    check_conv(&big, 2, false, INTS("strides", 2, 2), INTS("pads", 3, 3, 3, 3),
               NULL, NULL);
    gs__conv_set_chunk_bytes(64); /* 1 row */
    check_conv(&first, 2, true, INTS("strides", 2, 2), INTS("pads", 3, 3, 3, 3),
               NULL, NULL);
    check_conv(&point, 2, true, NULL, NULL, NULL, NULL);
    gs__conv_set_chunk_bytes(24 * 11 * 4 * 2); /* 2 rows of the 1x1 */
    check_conv(&point, 2, false, NULL, NULL, NULL, NULL);
  }
  gs__conv_set_chunk_bytes(0);
  assert_int_equal(gs_engine_set_threads(1, &err), GS_OK);
}

/* Conv [-> BatchNormalization] [-> Add z] [-> Relu], with every step
 * also a graph output when unfused (a graph output is never fused away). */
static graph_t conv_chain(int64_t m, bool bn, bool add, const char *act,
                          bool unfused) {
  const int64_t wd[4] = {m, 3, 3, 3}, cd[1] = {m};
  graph_t g = {.n_in = 1 + add, .n_out = 1, .n_init = bn ? 6 : 2};
  g.init[0] = init_tensor("w", ELEM_F32, 4, wd, ramp((size_t)m * 27, 5));
  g.init[1] = init_tensor("b", ELEM_F32, 1, cd, ramp((size_t)m, 6));
  if (bn) {
    const char *names[4] = {"scale", "beta", "mean", "var"};
    for (int i = 0; i < 4; i++) {
      float *v = ramp((size_t)m, 7 + (unsigned)i);
      for (int64_t k = 0; i == 3 && k < m; k++)
        v[k] += 1.5f; /* a variance is positive */
      g.init[2 + i] = init_tensor(names[i], ELEM_F32, 1, cd, v);
    }
  }
  const char *last = "c";
  g.nodes[g.n_nodes++] =
      node("Conv", "conv", "x,w,b", "c", INTS("pads", 1, 1, 1, 1), NULL);
  if (bn) {
    g.nodes[g.n_nodes++] =
        node("BatchNormalization", "bn", "c,scale,beta,mean,var", "n",
             attr_f("epsilon", 1e-3f), NULL);
    last = "n";
  }
  if (add) {
    char in[8];
    snprintf(in, sizeof in, "z,%s", last); /* the residual comes first */
    g.nodes[g.n_nodes++] = node("Add", "add", in, "s", NULL);
    last = "s";
  }
  if (act) {
    g.nodes[g.n_nodes++] = node(act, "act", last, "r", NULL);
    last = "r";
  }
  const int64_t yd[4] = {-1, m, 5, 5};
  g.out[0] = info(last, ELEM_F32, 4, yd);
  const char *steps[4] = {"c", "n", "s", "r"};
  for (int i = 0; unfused && i < 4; i++)
    if (strcmp(steps[i], last) != 0 &&
        (i == 0 || (i == 1 && bn) || (i == 2 && add) || (i == 3 && act)))
      g.out[g.n_out++] = info(steps[i], ELEM_F32, 4, yd);
  g.in[0] = info("x", ELEM_F32, 4, (int64_t[]){-1, 3, 5, 5});
  if (add)
    g.in[1] = info("z", ELEM_F32, 4, yd);
  return g;
}

static void check_conv_fusion(int64_t m) {
  const int64_t xd[4] = {2, 3, 5, 5}, zd[4] = {2, m, 5, 5};
  const size_t ny = 2 * (size_t)m * 5 * 5;
  gs_tensor_t in[2] = {tensor("x", GS_DTYPE_FP32, 4, xd, ramp(150, 11)),
                       tensor("z", GS_DTYPE_FP32, 4, zd, ramp(ny, 12))};
  struct {
    bool bn, add;
    const char *act;
    size_t fused_nodes, unfused_nodes;
  } cases[] = {{true, false, NULL, 1, 2},   {true, true, "Relu", 1, 4},
               {false, true, NULL, 1, 2},   {false, false, "Relu", 1, 2},
               {true, false, "Relu", 1, 3}, {false, true, "Relu", 1, 3}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n_fused, n_unfused;
    graph_t f = conv_chain(m, cases[i].bn, cases[i].add, cases[i].act, false);
    graph_t u = conv_chain(m, cases[i].bn, cases[i].add, cases[i].act, true);
    float *yf = run_graph(&f, f.n_in, in, 0, NULL, &n_fused);
    float *yu = run_graph(&u, u.n_in, in, 0, NULL, &n_unfused);
    assert_int_equal(n_fused, cases[i].fused_nodes);
    assert_int_equal(n_unfused, cases[i].unfused_nodes);
    assert_close(yf, yu, ny);
  }
  /* Clip(0, 0.5) with constant bounds fuses; a bound that is a graph
   * input does not, and both compute the same. */
  graph_t g = conv_chain(m, false, false, NULL, false);
  g.nodes[g.n_nodes++] = node("Clip", "clip", "c,lo,hi", "y", NULL);
  g.init[g.n_init++] = init_tensor("lo", ELEM_F32, 0, NULL, (float[]){0});
  g.init[g.n_init++] = init_tensor("hi", ELEM_F32, 0, NULL, (float[]){0.5f});
  g.out[0] = info("y", ELEM_F32, 4, (int64_t[]){-1, m, 5, 5});
  size_t n_fused, n_plain;
  float *yf = run_graph(&g, 1, in, 0, NULL, &n_fused);
  g.n_init--;
  g.in[g.n_in++] = info("hi", ELEM_F32, 0, NULL);
  gs_tensor_t in2[2] = {in[0],
                        tensor("hi", GS_DTYPE_FP32, 0, NULL, (float[]){0.5f})};
  float *yp = run_graph(&g, 2, in2, 0, NULL, &n_plain);
  assert_int_equal(n_fused, 1);
  assert_int_equal(n_plain, 2);
  assert_close(yf, yp, ny);
}

/* The fusion passes keep the result: a BatchNormalization folded into the
 * Conv's weights equals the BatchNormalization run; Add and Relu fused
 * into the Conv equal them run as nodes, y = relu(conv(x, w) + b + z).
 * 4 filters run the BLAS path, 12 the packed GEMM (where AVX-512 is),
 * whose tile applies bias, residual and activation as it stores. */
static void test_conv_fusion(void **state) {
  (void)state;
  check_conv_fusion(4);
  check_conv_fusion(12);
}

/* A residual produced after the Conv in topological order (ResNet's
 * projection shortcut): the fused node still runs after its producer. */
static void test_conv_fusion_order(void **state) {
  (void)state;
  const int64_t wd[4] = {2, 2, 1, 1}, xd[4] = {1, 2, 3, 3};
  graph_t g = {.n_nodes = 4, .n_in = 1, .n_out = 1, .n_init = 2};
  g.init[0] = init_tensor("wa", ELEM_F32, 4, wd, ramp(4, 21));
  g.init[1] = init_tensor("wb", ELEM_F32, 4, wd, ramp(4, 22));
  g.nodes[0] = node("Conv", "main", "x,wa", "a", NULL);
  g.nodes[1] = node("Conv", "shortcut", "x,wb", "b", NULL);
  g.nodes[2] = node("Add", "add", "a,b", "s", NULL);
  g.nodes[3] = node("Relu", "relu", "s", "y", NULL);
  g.in[0] = info("x", ELEM_F32, 4, xd);
  g.out[0] = info("y", ELEM_F32, 4, xd);
  gs_tensor_t in = tensor("x", GS_DTYPE_FP32, 4, xd, ramp(18, 23));
  size_t fused, unfused;
  float *yf = run_graph(&g, 1, &in, 0, NULL, &fused);
  g.out[g.n_out++] = info("a", ELEM_F32, 4, xd);
  g.out[g.n_out++] = info("b", ELEM_F32, 4, xd);
  g.out[g.n_out++] = info("s", ELEM_F32, 4, xd);
  float *yu = run_graph(&g, 1, &in, 0, NULL, &unfused);
  assert_int_equal(fused, 2);
  assert_int_equal(unfused, 4);
  assert_close(yf, yu, 18);
  /* Gemm + Relu fuses too. */
  graph_t m = {.n_nodes = 2, .n_in = 1, .n_out = 1, .n_init = 1};
  m.init[0] = init_tensor("w", ELEM_F32, 2, (int64_t[]){3, 2}, ramp(6, 24));
  m.nodes[0] = node("Gemm", "fc", "x,w", "h", NULL);
  m.nodes[1] = node("Relu", "relu", "h", "y", NULL);
  m.in[0] = info("x", ELEM_F32, 2, (int64_t[]){2, 3});
  m.out[0] = info("y", ELEM_F32, 2, (int64_t[]){2, 2});
  gs_tensor_t mx =
      tensor("x", GS_DTYPE_FP32, 2, (int64_t[]){2, 3}, ramp(6, 25));
  float *ym = run_graph(&m, 1, &mx, 0, NULL, &fused);
  m.out[m.n_out++] = info("h", ELEM_F32, 2, (int64_t[]){2, 2});
  float *hm = run_graph(&m, 1, &mx, 1, NULL, &unfused);
  assert_int_equal(fused, 1);
  assert_int_equal(unfused, 2);
  for (int i = 0; i < 4; i++)
    assert_true(ym[i] == (hm[i] > 0 ? hm[i] : 0));
}

/* Two sessions of one model run Convs at once from two threads, with the
 * engine at two threads: the conv's thread pool serves one caller at a
 * time and the other runs its parts itself; both get the one-thread
 * result. (Sized over the pool's thresholds: 32 x 216 x 960 per image.) */
typedef struct {
  const gs_model_t *m;
  const gs_tensor_t *in;
  const float *want;
  size_t n;
  int bad;
} concurrent_t;

static void *run_concurrent(void *arg) {
  concurrent_t *c = arg;
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  if (gs_session_create(&s, c->m, NULL, &err) != GS_OK) {
    c->bad = 1;
    return NULL;
  }
  for (int i = 0; i < 20 && !c->bad; i++)
    if (gs_session_run(s, c->in, 1, &err) != GS_OK ||
        memcmp(gs_session_output(s, 0)->data, c->want, c->n * sizeof(float)) !=
            0)
      c->bad = 1;
  gs_session_destroy(s);
  return NULL;
}

static void test_conv_threads(void **state) {
  (void)state;
  const int64_t xd[4] = {2, 24, 24, 40}, wd[4] = {32, 24, 3, 3};
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1};
  g.init[0] = init_tensor("w", ELEM_F32, 4, wd, ramp(32 * 24 * 9, 41));
  g.nodes[0] = node("Conv", "conv", "x,w", "y", INTS("pads", 1, 1, 1, 1), NULL);
  g.in[0] = info("x", ELEM_F32, 4, xd);
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  gs_tensor_t in = tensor("x", GS_DTYPE_FP32, 4, xd, ramp(2 * 24 * 960, 42));
  gs_error_t err = {0};
  assert_int_equal(gs_engine_set_threads(1, &err), GS_OK);
  const size_t n = 2 * 32 * 24 * 40;
  float *want = run_graph(&g, 1, &in, 0, NULL, NULL);
  assert_int_equal(gs_engine_set_threads(2, &err), GS_OK);
  gs_model_t *m = load(&g);
  concurrent_t c[2] = {{m, &in, want, n, 0}, {m, &in, want, n, 0}};
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&t[i], NULL, run_concurrent, &c[i]), 0);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(gs_engine_set_threads(1, &err), GS_OK);
  gs_model_destroy(m);
  assert_int_equal(c[0].bad, 0);
  assert_int_equal(c[1].bad, 0);
}

/* Expects loading g to fail with code, naming the node and the words. */
static void load_fails(const graph_t *g, int code, const char *node_name,
                       const char *word) {
  gs_model_t *m = NULL;
  gs_error_t err = {0};
  int rc = try_load(g, &m, &err);
  if (rc != code)
    fail_msg("load gave %d, want %d (%s)", rc, code, err.msg);
  assert_null(m);
  if (!strstr(err.msg, node_name) || !strstr(err.msg, word))
    fail_msg("'%s' or '%s' not in: %s", node_name, word, err.msg);
}

/* Expects planning g for x of dims xd to fail naming the node and words. */
static void plan_fails(const graph_t *g, unsigned rank, const int64_t *xd,
                       const char *node_name, const char *word) {
  gs_model_t *m = load(g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  gs_tensor_t in =
      tensor("x", GS_DTYPE_FP32, rank, xd, ramp(count_of(rank, xd), 1));
  int rc = gs_session_plan(s, &in, 1, &err);
  if (rc != GS_EINVAL)
    fail_msg("plan gave %d, want GS_EINVAL (%s)", rc, err.msg);
  if (!strstr(err.msg, node_name) || !strstr(err.msg, word))
    fail_msg("'%s' or '%s' not in: %s", node_name, word, err.msg);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Attributes or shapes that do not fit are clear errors naming the node:
 * kernel_shape against W, group against the channels, negative pads, a
 * rank-5 input to a node whose attributes are 2-D, an auto_pad value or a
 * training-mode BatchNormalization the engine does not run. */
static void test_cnn_bad_input(void **state) {
  (void)state;
  graph_t g = {.n_nodes = 1, .n_in = 1, .n_out = 1, .n_init = 1};
  g.init[0] =
      init_tensor("w", ELEM_F32, 4, (int64_t[]){2, 2, 2, 2}, ramp(16, 31));
  g.in[0] = info("x", ELEM_F32, -1, NULL);
  g.out[0] = info("y", ELEM_F32, -1, NULL);
  const int64_t x4[4] = {1, 2, 5, 5};
  g.nodes[0] = node("Conv", "c1", "x,w", "y", INTS("kernel_shape", 3, 3), NULL);
  plan_fails(&g, 4, x4, "'c1'", "kernel_shape");
  g.nodes[0] = node("Conv", "c2", "x,w", "y", attr_i("group", 2), NULL);
  plan_fails(&g, 4, x4, "'c2'", "group 2");
  plan_fails(&g, 4, (int64_t[]){1, 3, 5, 5}, "'c2'", "group 2");
  g.nodes[0] = node("Conv", "c3", "x,w", "y", INTS("pads", 0, -1, 0, 0), NULL);
  load_fails(&g, GS_EPARSE, "'c3'", "'pads'");
  g.nodes[0] = node("Conv", "c4", "x,w", "y", INTS("kernel_shape", 2, 2), NULL);
  plan_fails(&g, 5, (int64_t[]){1, 2, 5, 5, 5}, "'c4'", "2 spatial dims");
  plan_fails(&g, 6, (int64_t[]){1, 2, 5, 5, 5, 5}, "'c4'", "1 to 3 spatial");
  g.nodes[0] =
      node("Conv", "c5", "x,w", "y", attr_s("auto_pad", "SAME_ODD"), NULL);
  load_fails(&g, GS_EUNSUPPORTED, "'c5'", "'auto_pad'");
  g.nodes[0] =
      node("Conv", "c6", "x,w", "y", INTS("strides", 1, 1, 1, 1), NULL);
  load_fails(&g, GS_EUNSUPPORTED, "'c6'", "'strides'");
  g.nodes[0] = node("Conv", "c8", "x,w", "y", NULL);
  plan_fails(&g, 4, (int64_t[]){1, 2, 1, 5}, "'c8'", "larger than");
  g.n_init = 0;
  g.nodes[0] = node("MaxPool", "p1", "x", "y", INTS("strides", 2, 2), NULL);
  load_fails(&g, GS_EPARSE, "'p1'", "'kernel_shape'");
  g.nodes[0] = node("AveragePool", "p2", "x", "y", INTS("kernel_shape", 2),
                    attr_i("ceil_mode", 2), NULL);
  load_fails(&g, GS_EPARSE, "'p2'", "'ceil_mode'");
  g.nodes[0] = node("GlobalAveragePool", "p3", "x", "y", NULL);
  plan_fails(&g, 2, (int64_t[]){1, 2}, "'p3'", "rank 3");
  g.nodes[0] = node("BatchNormalization", "bn", "x,x,x,x,x", "y",
                    attr_i("training_mode", 1), NULL);
  load_fails(&g, GS_EUNSUPPORTED, "'bn'", "'training_mode'");
  /* A fused residual must have the Conv output's shape. */
  g = conv_chain(4, false, true, NULL, false);
  g.in[1] = info("z", ELEM_F32, -1, NULL);
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  gs_tensor_t in[2] = {
      tensor("x", GS_DTYPE_FP32, 4, (int64_t[]){1, 3, 5, 5}, ramp(75, 1)),
      tensor("z", GS_DTYPE_FP32, 4, (int64_t[]){1, 4, 1, 5}, ramp(20, 1))};
  assert_int_equal(gs_session_plan(s, in, 2, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "'conv'"));
  assert_non_null(strstr(err.msg, "fused Add"));
  gs_session_destroy(s);
  gs_model_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_simple_model_batches, free_kept),
      cmocka_unit_test_teardown(test_input_mismatch, free_kept),
      cmocka_unit_test_teardown(test_cpu_refuses_device_memory, free_kept),
      cmocka_unit_test_teardown(test_gemm_relu_softmax, free_kept),
      cmocka_unit_test_teardown(test_matmul_broadcast, free_kept),
      cmocka_unit_test_teardown(test_softmax_opsets, free_kept),
      cmocka_unit_test_teardown(test_layout_ops, free_kept),
      cmocka_unit_test_teardown(test_memory_plan_reuse, free_kept),
      cmocka_unit_test_teardown(test_reshape_target_input, free_kept),
      cmocka_unit_test_teardown(test_unsupported_op, free_kept),
      cmocka_unit_test_teardown(test_graph_structure, free_kept),
      cmocka_unit_test_teardown(test_shape_errors, free_kept),
      cmocka_unit_test_teardown(test_int_div_by_zero, free_kept),
      cmocka_unit_test_teardown(test_corrupt_files, free_kept),
      cmocka_unit_test_teardown(test_model_digest, free_kept),
      cmocka_unit_test_teardown(test_limits, free_kept),
      cmocka_unit_test_teardown(test_names_and_threads, free_kept),
      cmocka_unit_test_teardown(test_conv_geometry, free_kept),
      cmocka_unit_test_teardown(test_maxpool_rows, free_kept),
      cmocka_unit_test_teardown(test_conv_values, free_kept),
      cmocka_unit_test_teardown(test_conv_packed_panels, free_kept),
      cmocka_unit_test_teardown(test_conv_chunked, free_kept),
      cmocka_unit_test_teardown(test_conv_fusion, free_kept),
      cmocka_unit_test_teardown(test_conv_fusion_order, free_kept),
      cmocka_unit_test_teardown(test_cnn_bad_input, free_kept),
      cmocka_unit_test_teardown(test_conv_threads, free_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
