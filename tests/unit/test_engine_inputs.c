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
#include "onnx.pb-c.h"

#define F32 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT

static void *kept[512];
static size_t n_kept;

static void *keep(void *p) {
  assert_non_null(p);
  assert_true(n_kept < sizeof kept / sizeof kept[0]);
  return kept[n_kept++] = p;
}

static int free_kept(void **state) {
  (void)state;
  while (n_kept > 0)
    free(kept[--n_kept]);
  return 0;
}

#define NEW(T) ((T *)keep(calloc(1, sizeof(T))))

static char *str(const char *s) {
  return keep(strdup(s));
}

/* An FP32 tensor's declared type; a dim of -1 is the symbolic "N". */
static Onnx__ValueInfoProto *info(const char *name, int rank,
                                  const int64_t *dims) {
  Onnx__ValueInfoProto *v = NEW(Onnx__ValueInfoProto);
  Onnx__TypeProto *t = NEW(Onnx__TypeProto);
  Onnx__TypeProto__Tensor *tt = NEW(Onnx__TypeProto__Tensor);
  onnx__value_info_proto__init(v);
  onnx__type_proto__init(t);
  onnx__type_proto__tensor__init(tt);
  v->name = str(name);
  v->type = t;
  t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  t->tensor_type = tt;
  tt->has_elem_type = 1;
  tt->elem_type = F32;
  tt->shape = NEW(Onnx__TensorShapeProto);
  onnx__tensor_shape_proto__init(tt->shape);
  tt->shape->n_dim = (size_t)rank;
  tt->shape->dim = keep(calloc((size_t)rank + 1, sizeof *tt->shape->dim));
  for (int i = 0; i < rank; i++) {
    Onnx__TensorShapeProto__Dimension *d =
        NEW(Onnx__TensorShapeProto__Dimension);
    onnx__tensor_shape_proto__dimension__init(d);
    if (dims[i] < 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = str("N");
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[i];
    }
    tt->shape->dim[i] = d;
  }
  return v;
}

/* An FP32 initializer, every element v. */
static Onnx__TensorProto *init_fill(const char *name, unsigned rank,
                                    const int64_t *dims, float v) {
  Onnx__TensorProto *t = NEW(Onnx__TensorProto);
  onnx__tensor_proto__init(t);
  t->name = str(name);
  t->has_data_type = 1;
  t->data_type = F32;
  t->n_dims = rank;
  t->dims = keep(calloc(rank + 1, sizeof *t->dims));
  size_t count = 1;
  for (unsigned i = 0; i < rank; i++)
    count *= (size_t)(t->dims[i] = dims[i]);
  t->n_float_data = count;
  t->float_data = keep(malloc(count * sizeof(float)));
  for (size_t i = 0; i < count; i++)
    t->float_data[i] = v;
  return t;
}

static Onnx__AttributeProto *attr_ints(const char *name, size_t n,
                                       const int64_t *v) {
  Onnx__AttributeProto *a = NEW(Onnx__AttributeProto);
  onnx__attribute_proto__init(a);
  a->name = str(name);
  a->has_type = 1;
  a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  a->n_ints = n;
  a->ints = keep(calloc(n, sizeof *a->ints));
  memcpy(a->ints, v, n * sizeof *v);
  return a;
}

/* A node with up to three inputs and one attribute list, NULL-ended. */
static Onnx__NodeProto *node(const char *op, const char *in0, const char *in1,
                             const char *in2, const char *out, ...) {
  Onnx__NodeProto *n = NEW(Onnx__NodeProto);
  onnx__node_proto__init(n);
  n->op_type = str(op);
  n->name = str(out);
  n->input = keep(calloc(3, sizeof *n->input));
  const char *ins[3] = {in0, in1, in2};
  for (unsigned i = 0; i < 3 && ins[i]; i++)
    n->input[n->n_input++] = str(ins[i]);
  n->n_output = 1;
  n->output = keep(calloc(1, sizeof *n->output));
  n->output[0] = str(out);
  n->attribute = keep(calloc(4, sizeof *n->attribute));
  va_list ap;
  va_start(ap, out);
  for (Onnx__AttributeProto *a; (a = va_arg(ap, Onnx__AttributeProto *));)
    n->attribute[n->n_attribute++] = a;
  va_end(ap);
  return n;
}

typedef struct {
  Onnx__NodeProto *nodes[8];
  Onnx__ValueInfoProto *in[2], *out[2];
  Onnx__TensorProto *init[8];
  size_t n_nodes, n_in, n_out, n_init;
} graph_t;

static gs_model_t *load(const graph_t *g) {
  Onnx__ModelProto m;
  Onnx__GraphProto graph;
  Onnx__OperatorSetIdProto opset, *opsets[1] = {&opset};
  onnx__model_proto__init(&m);
  onnx__graph_proto__init(&graph);
  onnx__operator_set_id_proto__init(&opset);
  opset.domain = str("");
  opset.has_version = 1;
  opset.version = 13;
  m.has_ir_version = 1;
  m.ir_version = 8;
  m.n_opset_import = 1;
  m.opset_import = opsets;
  m.graph = &graph;
  graph.name = str("test");
  graph.n_node = g->n_nodes;
  graph.node = (Onnx__NodeProto **)g->nodes;
  graph.n_input = g->n_in;
  graph.input = (Onnx__ValueInfoProto **)g->in;
  graph.n_output = g->n_out;
  graph.output = (Onnx__ValueInfoProto **)g->out;
  graph.n_initializer = g->n_init;
  graph.initializer = (Onnx__TensorProto **)g->init;
  size_t len = onnx__model_proto__get_packed_size(&m);
  uint8_t *buf = keep(malloc(len + 1));
  onnx__model_proto__pack(&m, buf);
  gs_model_t *model = NULL;
  gs_error_t err = {0};
  if (gs_model_load_buffer(&model, buf, len, NULL, &err) != GS_OK)
    fail_msg("load: %s", err.msg);
  return model;
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
  gs_tensor_t in = {.dtype = GS_DTYPE_FP32, .rank = rank, .data = x};
  size_t count = 1;
  for (unsigned i = 0; i < rank; i++)
    count *= (size_t)(in.shape[i] = dims[i]);
  in.bytes = count * sizeof(float);
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
  g.in[0] = info("x", 1, vec5);
  g.out[0] = info("y", 1, vec5);
  g.nodes[0] = node("Relu", "x", NULL, NULL, "y", NULL);
  float *y = run(&g, 1, vec5, x, 5);
  const float relu[5] = {0.0f, 0.0f, INFINITY, 0.0f, 2.0f};
  assert_memory_equal(y, relu, sizeof relu);

  g.nodes[0] = node("Sigmoid", "x", NULL, NULL, "y", NULL);
  y = run(&g, 1, vec5, x, 5);
  assert_true(isnan(y[0]));
  assert_true(y[1] == 0.0f && y[2] == 1.0f);

  g.nodes[0] = node("Tanh", "x", NULL, NULL, "y", NULL);
  y = run(&g, 1, vec5, x, 5);
  assert_true(isnan(y[0]));
  assert_true(y[1] == -1.0f && y[2] == 1.0f);

  /* x + x: NaN stays NaN, Inf + Inf stays Inf; x - x: Inf - Inf is NaN. */
  g.nodes[0] = node("Sub", "x", "x", NULL, "y", NULL);
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
  g.in[0] = info("x", 4, xd);
  g.out[0] = info("y", 4, yd);
  g.nodes[0] =
      node("MaxPool", "x", NULL, NULL, "y", attr_ints("kernel_shape", 2, k),
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
  g.in[0] = info("x", 4, xd);
  g.out[0] = info("y", 2, yd);
  g.init[0] = init_fill("w", 4, wd, 0.1f);
  g.init[1] = init_fill("b", 1, bd, -0.2f);
  g.init[2] = init_fill("gw", 2, gd, 0.05f);
  g.init[3] = init_fill("gb", 1, gbd, 0.5f);
  g.nodes[0] =
      node("Conv", "x", "w", "b", "c", attr_ints("pads", 4, pads), NULL);
  g.nodes[1] = node("Relu", "c", NULL, NULL, "r", NULL);
  g.nodes[2] =
      node("MaxPool", "r", NULL, NULL, "p", attr_ints("kernel_shape", 2, k2),
           attr_ints("strides", 2, k2), NULL);
  g.nodes[3] = node("Flatten", "p", NULL, NULL, "f", NULL);
  g.nodes[4] = node("Gemm", "f", "gw", "gb", "y", NULL);
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
