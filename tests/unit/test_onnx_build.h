/* Builders of small ONNX models for the engine's unit tests (test-only):
 * value infos, initializers, attributes and nodes made with protobuf-c,
 * serialized and loaded. Everything they allocate is kept in one arena that
 * free_kept, each test's teardown, frees. */
#ifndef GPUSLICE_TEST_ONNX_BUILD_H
#define GPUSLICE_TEST_ONNX_BUILD_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gpuslice/engine.h"
#include "onnx.pb-c.h"

/* Everything the builders allocate, freed after each test. */
static void *kept[4096];
static size_t n_kept;

static inline void *keep(void *p) {
  assert_non_null(p);
  assert_true(n_kept < sizeof kept / sizeof kept[0]);
  return kept[n_kept++] = p;
}

static inline int free_kept(void **state) {
  (void)state;
  while (n_kept > 0)
    free(kept[--n_kept]);
  return 0;
}

#define NEW(T) ((T *)keep(calloc(1, sizeof(T))))
#define ELEM_F32 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define ELEM_I32 ONNX__TENSOR_PROTO__DATA_TYPE__INT32
#define ELEM_I64 ONNX__TENSOR_PROTO__DATA_TYPE__INT64

static inline char *str(const char *s) {
  return keep(strdup(s));
}

static inline size_t count_of(unsigned rank, const int64_t *dims) {
  size_t n = 1;
  for (unsigned i = 0; i < rank; i++)
    n *= (size_t)dims[i];
  return n;
}

/* A tensor's declared type; dims of -1 become the symbolic "N"; a rank of
 * -1 declares no shape. */
static inline Onnx__ValueInfoProto *info(const char *name, int elem, int rank,
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
  tt->elem_type = elem;
  if (rank < 0)
    return v;
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

/* An initializer: FP32 in float_data, INT64 in raw_data (both encodings). */
static inline Onnx__TensorProto *init_tensor(const char *name, int elem,
                                             unsigned rank, const int64_t *dims,
                                             const void *data) {
  Onnx__TensorProto *t = NEW(Onnx__TensorProto);
  onnx__tensor_proto__init(t);
  t->name = str(name);
  t->has_data_type = 1;
  t->data_type = elem;
  t->n_dims = rank;
  t->dims = keep(calloc(rank + 1, sizeof *t->dims));
  size_t count = 1;
  for (unsigned i = 0; i < rank; i++)
    count *= (size_t)(t->dims[i] = dims[i]);
  if (elem == ELEM_F32) {
    t->n_float_data = count;
    t->float_data = keep(malloc(count * 4 + 1));
    memcpy(t->float_data, data, count * 4);
  } else {
    t->has_raw_data = 1;
    t->raw_data.len = count * 8;
    t->raw_data.data = keep(malloc(count * 8 + 1));
    memcpy(t->raw_data.data, data, count * 8);
  }
  return t;
}

static inline Onnx__AttributeProto *attr(const char *name, int type) {
  Onnx__AttributeProto *a = NEW(Onnx__AttributeProto);
  onnx__attribute_proto__init(a);
  a->name = str(name);
  a->has_type = 1;
  a->type = type;
  return a;
}

static inline Onnx__AttributeProto *attr_i(const char *name, int64_t v) {
  Onnx__AttributeProto *a =
      attr(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = 1;
  a->i = v;
  return a;
}

static inline Onnx__AttributeProto *attr_f(const char *name, float v) {
  Onnx__AttributeProto *a =
      attr(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = 1;
  a->f = v;
  return a;
}

static inline Onnx__AttributeProto *attr_ints(const char *name, size_t n,
                                              const int64_t *v) {
  Onnx__AttributeProto *a =
      attr(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  a->n_ints = n;
  a->ints = keep(calloc(n + 1, sizeof *a->ints));
  memcpy(a->ints, v, n * sizeof *v);
  return a;
}

#define INTS(name, ...)                                                        \
  attr_ints(name, sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t),          \
            (int64_t[]){__VA_ARGS__})

static inline Onnx__AttributeProto *attr_s(const char *name, const char *v) {
  Onnx__AttributeProto *a =
      attr(name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  a->has_s = 1;
  a->s.len = strlen(v);
  a->s.data = (uint8_t *)str(v);
  return a;
}

/* "a,b" -> {"a", "b"}; "" entries stay (omitted optional inputs). */
static inline size_t split(const char *list, char ***out) {
  size_t n = *list ? 1 : 0;
  for (const char *p = list; *p; p++)
    n += *p == ',';
  *out = keep(calloc(n + 1, sizeof **out));
  char *copy = str(list);
  for (size_t i = 0; i < n; i++) {
    char *comma = strchr(copy, ',');
    if (comma)
      *comma = '\0';
    (*out)[i] = copy;
    copy = comma ? comma + 1 : copy;
  }
  return n;
}

/* A node; inputs and outputs are comma lists; attributes follow,
 * NULL-ended (at most 8). */
static inline Onnx__NodeProto *node(const char *op, const char *name,
                                    const char *inputs, const char *output,
                                    ...) {
  Onnx__NodeProto *n = NEW(Onnx__NodeProto);
  onnx__node_proto__init(n);
  n->op_type = str(op);
  n->name = str(name);
  n->n_input = split(inputs, &n->input);
  n->n_output = split(output, &n->output);
  n->attribute = keep(calloc(8, sizeof *n->attribute));
  va_list ap;
  va_start(ap, output);
  for (Onnx__AttributeProto *a; (a = va_arg(ap, Onnx__AttributeProto *));)
    n->attribute[n->n_attribute++] = a;
  va_end(ap);
  return n;
}

/* A model's graph; opset 0 is opset 13. */
typedef struct {
  int opset;
  Onnx__NodeProto *nodes[16];
  Onnx__ValueInfoProto *in[8], *out[8];
  Onnx__TensorProto *init[8];
  size_t n_nodes, n_in, n_out, n_init;
} graph_t;

/* The serialized model, *len bytes (kept). */
static inline uint8_t *pack(const graph_t *g, size_t *len) {
  Onnx__ModelProto m;
  Onnx__GraphProto graph;
  Onnx__OperatorSetIdProto opset, *opsets[1] = {&opset};
  onnx__model_proto__init(&m);
  onnx__graph_proto__init(&graph);
  onnx__operator_set_id_proto__init(&opset);
  opset.domain = str("");
  opset.has_version = 1;
  opset.version = g->opset ? g->opset : 13;
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
  *len = onnx__model_proto__get_packed_size(&m);
  uint8_t *buf = keep(malloc(*len + 1));
  onnx__model_proto__pack(&m, buf);
  return buf;
}

static inline int try_load(const graph_t *g, gs_model_t **m, gs_error_t *err) {
  size_t len;
  uint8_t *buf = pack(g, &len);
  return gs_model_load_buffer(m, buf, len, NULL, err);
}

/* The loaded model (the caller destroys it); a failed load fails the test. */
static inline gs_model_t *load(const graph_t *g) {
  gs_model_t *m = NULL;
  gs_error_t err = {0};
  int rc = try_load(g, &m, &err);
  if (rc != GS_OK)
    fail_msg("load failed: %s", err.msg);
  return m;
}

/* An input tensor over data (not copied). */
static inline gs_tensor_t tensor(const char *name, gs_dtype_t dt, unsigned rank,
                                 const int64_t *dims, const void *data) {
  gs_tensor_t t = {.name = name, .dtype = dt, .rank = rank, .data = data};
  size_t count = 1;
  for (unsigned i = 0; i < rank; i++)
    count *= (size_t)(t.shape[i] = dims[i]);
  t.bytes = count * gs_dtype_size(dt);
  return t;
}

#endif
