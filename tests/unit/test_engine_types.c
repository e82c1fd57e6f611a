/* The engine's element types beyond FP32: BYTES tensors (ONNX STRING) moved
 * by Identity, Reshape and Flatten and refused by the other ops, with
 * outputs sized at run time; Cast between every type; FP16, BF16 and the
 * integer types on the elementwise ops, computed in FP32 and rounded to
 * nearest even. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gpuslice/engine.h"
#include "test_onnx_build.h"

#define ELEM_STR ONNX__TENSOR_PROTO__DATA_TYPE__STRING

/* strs in the BYTES form (4-byte little-endian length, bytes), kept. */
static uint8_t *bytes_of(size_t n, const char *const *strs, size_t *len) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += 4 + strlen(strs[i]);
  uint8_t *buf = keep(malloc(total + 1)), *p = buf;
  for (size_t i = 0; i < n; i++) {
    uint32_t l = (uint32_t)strlen(strs[i]);
    memcpy(p, &l, 4);
    memcpy(p + 4, strs[i], l);
    p += 4 + l;
  }
  *len = total;
  return buf;
}

static gs_tensor_t bytes_tensor(const char *name, unsigned rank,
                                const int64_t *dims, size_t n,
                                const char *const *strs) {
  gs_tensor_t t = tensor(name, GS_DTYPE_BYTES, rank, dims, NULL);
  t.data = bytes_of(n, strs, &t.bytes);
  return t;
}

/* A STRING initializer. */
static Onnx__TensorProto *init_strings(const char *name, unsigned rank,
                                       const int64_t *dims, size_t n,
                                       const char *const *strs) {
  Onnx__TensorProto *t = NEW(Onnx__TensorProto);
  onnx__tensor_proto__init(t);
  t->name = str(name);
  t->has_data_type = 1;
  t->data_type = ELEM_STR;
  t->n_dims = rank;
  t->dims = keep(calloc(rank + 1, sizeof *t->dims));
  memcpy(t->dims, dims, rank * sizeof *dims);
  t->n_string_data = n;
  t->string_data = keep(calloc(n + 1, sizeof *t->string_data));
  for (size_t i = 0; i < n; i++) {
    t->string_data[i].len = strlen(strs[i]);
    t->string_data[i].data = (uint8_t *)str(strs[i]);
  }
  return t;
}

static void expect_bytes(const gs_tensor_t *out, size_t n,
                         const char *const *strs) {
  size_t len;
  const uint8_t *want = bytes_of(n, strs, &len);
  assert_int_equal(out->dtype, GS_DTYPE_BYTES);
  assert_int_equal(out->bytes, len);
  assert_memory_equal(out->data, want, len);
}

/* STRING [N,3] -> Identity -> Reshape [3,N] -> Flatten: the elements come
 * out as they went in, the output's bytes set by each run (longer strings
 * on the second run of the same shape, so one plan). A STRING initializer
 * given back as an output is copied. */
static void test_bytes_moves(void **state) {
  (void)state;
  static const char *const words[] = {"", "a", "hello", "\xff\x00z", "xy", "q"};
  static const char *const longer[] = {
      "a much longer string than before", "b", "", "c", "d", "e"};
  static const char *const labels[] = {"cat", "dog"};
  graph_t g = {.n_in = 1, .n_out = 3, .n_nodes = 3, .n_init = 2};
  g.in[0] = info("in", ELEM_STR, 2, (int64_t[]){-1, 3});
  g.out[0] = info("flat", ELEM_STR, -1, NULL);
  g.out[1] = info("labels", ELEM_STR, 1, (int64_t[]){2});
  g.out[2] = info("in", ELEM_STR, 2, (int64_t[]){-1, 3});
  g.init[0] =
      init_tensor("shape", ELEM_I64, 1, (int64_t[]){2}, (int64_t[]){3, -1});
  g.init[1] = init_strings("labels", 1, (int64_t[]){2}, 2, labels);
  g.nodes[0] = node("Identity", "id", "in", "same", NULL);
  g.nodes[1] = node("Reshape", "rs", "same,shape", "t", NULL);
  g.nodes[2] = node("Flatten", "fl", "t", "flat", attr_i("axis", 0), NULL);
  gs_model_t *m = load(&g);
  assert_int_equal(gs_model_input(m, 0)->dtype, GS_DTYPE_BYTES);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  for (int run = 0; run < 2; run++) {
    const char *const *strs = run ? longer : words;
    gs_tensor_t in = bytes_tensor("in", 2, (int64_t[]){2, 3}, 6, strs);
    if (gs_session_run(s, &in, 1, &err) != GS_OK)
      fail_msg("run failed: %s", err.msg);
    const gs_tensor_t *flat = gs_session_output(s, 0);
    assert_int_equal(flat->rank, 2);
    assert_int_equal(flat->shape[0], 1);
    assert_int_equal(flat->shape[1], 6);
    expect_bytes(flat, 6, strs);
    expect_bytes(gs_session_output(s, 1), 2, labels);
    expect_bytes(gs_session_output(s, 2), 6, strs);
    assert_ptr_not_equal(gs_session_output(s, 2)->data, in.data);
  }
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* BYTES data must hold exactly its elements: a length that runs past the
 * end, or bytes left after the last element, is refused naming the input. */
static void test_bytes_bad_input(void **state) {
  (void)state;
  static const char *const two[] = {"ab", "cde"};
  graph_t g = {.n_in = 1, .n_out = 1, .n_nodes = 1};
  g.in[0] = info("in", ELEM_STR, 1, (int64_t[]){-1});
  g.out[0] = info("out", ELEM_STR, 1, (int64_t[]){-1});
  g.nodes[0] = node("Identity", "id", "in", "out", NULL);
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  gs_tensor_t in = bytes_tensor("in", 1, (int64_t[]){2}, 2, two);
  in.bytes -= 1; /* the second element's last byte is missing */
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "'in'"));
  assert_non_null(strstr(err.msg, "element 1 runs past the end"));
  in.bytes += 2; /* one byte too many */
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "extra data"));
  in = bytes_tensor("in", 1, (int64_t[]){1}, 2, two); /* 2 for 1 element */
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_EINVAL);
  in = bytes_tensor("in", 1, (int64_t[]){2}, 2, two);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_OK);
  expect_bytes(gs_session_output(s, 0), 2, two);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Every op but those that move BYTES elements refuses them at load,
 * naming the node and the op. */
static void test_bytes_refused(void **state) {
  (void)state;
  static const struct {
    const char *op, *inputs;
  } cases[] = {{"Add", "a,a"},    {"Mul", "a,a"},     {"Relu", "a"},
               {"Concat", "a,a"}, {"Transpose", "a"}, {"Softmax", "a"},
               {"Clip", "a"},     {"MatMul", "a,a"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    graph_t g = {.n_in = 1, .n_out = 1, .n_nodes = 1};
    g.in[0] = info("a", ELEM_STR, 2, (int64_t[]){2, 2});
    g.out[0] = info("y", ELEM_STR, -1, NULL);
    g.nodes[0] =
        node(cases[i].op, "the_node", cases[i].inputs, "y",
             strcmp(cases[i].op, "Concat") ? NULL : attr_i("axis", 0), NULL);
    gs_model_t *m = NULL;
    gs_error_t err = {0};
    assert_int_equal(try_load(&g, &m, &err), GS_EUNSUPPORTED);
    char want[64];
    snprintf(want, sizeof want, "'the_node' (%s)", cases[i].op);
    if (!strstr(err.msg, want) || !strstr(err.msg, "BYTES"))
      fail_msg("%s: %s", cases[i].op, err.msg);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_bytes_moves, free_kept),
      cmocka_unit_test_teardown(test_bytes_bad_input, free_kept),
      cmocka_unit_test_teardown(test_bytes_refused, free_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
