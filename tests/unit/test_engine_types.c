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

#define ELEM_F16 ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16
#define ELEM_BF16 ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16
#define ELEM_F64 ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE
#define ELEM_U8 ONNX__TENSOR_PROTO__DATA_TYPE__UINT8
#define ELEM_I8 ONNX__TENSOR_PROTO__DATA_TYPE__INT8
#define ELEM_I16 ONNX__TENSOR_PROTO__DATA_TYPE__INT16
#define ELEM_U16 ONNX__TENSOR_PROTO__DATA_TYPE__UINT16
#define ELEM_U32 ONNX__TENSOR_PROTO__DATA_TYPE__UINT32
#define ELEM_U64 ONNX__TENSOR_PROTO__DATA_TYPE__UINT64
#define ELEM_BOOL ONNX__TENSOR_PROTO__DATA_TYPE__BOOL

/* A model x [N] of type from -> Cast(to) -> y, at opset (0: 13). */
static gs_model_t *cast_model(int from, int to, int opset) {
  graph_t g = {.n_in = 1, .n_out = 1, .n_nodes = 1, .opset = opset};
  g.in[0] = info("x", from, 1, (int64_t[]){-1});
  g.out[0] = info("y", to, 1, (int64_t[]){-1});
  g.nodes[0] = node("Cast", "cast", "x", "y", attr_i("to", to), NULL);
  return load(&g);
}

/* Runs a one-input model (the caller's session) and returns output 0. */
static const gs_tensor_t *run1(gs_session_t *s, gs_tensor_t in) {
  gs_error_t err = {0};
  if (gs_session_run(s, &in, 1, &err) != GS_OK)
    fail_msg("run failed: %s", err.msg);
  return gs_session_output(s, 0);
}

/* Casts n elements of data (type from) to type to; output 0 (the session
 * stays alive in *sp for the caller to destroy with *mp). */
static const gs_tensor_t *cast_run(int from, gs_dtype_t from_dt, int to,
                                   size_t n, const void *data, gs_model_t **mp,
                                   gs_session_t **sp) {
  gs_error_t err = {0};
  *mp = cast_model(from, to, 0);
  assert_int_equal(gs_session_create(sp, *mp, NULL, &err), GS_OK);
  return run1(*sp, tensor("x", from_dt, 1, (int64_t[]){(int64_t)n}, data));
}

#define CAST_CHECK(from, from_dt, to, T, in_vals, want_vals)                   \
  do {                                                                         \
    gs_model_t *m_;                                                            \
    gs_session_t *s_;                                                          \
    size_t n_ = sizeof(want_vals) / sizeof(want_vals)[0];                      \
    const gs_tensor_t *o_ =                                                    \
        cast_run(from, from_dt, to, n_, in_vals, &m_, &s_);                    \
    assert_int_equal(o_->bytes, n_ * sizeof(T));                               \
    for (size_t i_ = 0; i_ < n_; i_++)                                         \
      if (memcmp(&((const T *)o_->data)[i_], &(want_vals)[i_], sizeof(T)))     \
        fail_msg("%s line %d: element %zu differs", #to, __LINE__, i_);        \
    gs_session_destroy(s_);                                                    \
    gs_model_destroy(m_);                                                      \
  } while (0)

/* FP32 to the other numeric types: FP16 and BF16 round to nearest even
 * (ties to the even significand, overflow to infinity, subnormals), floats
 * truncate toward zero into integers and saturate there (NaN gives 0),
 * BOOL is "not zero". */
static void test_cast_from_float(void **state) {
  (void)state;
  /* 1 + 2^-11 and 1 + 3 * 2^-11 are FP16 ties, 1 + 2^-8 and 1 + 3 * 2^-8
   * BF16 ones. */
  const float x[] = {2049.0f,     2051.0f,    65520.0f,       1e-8f,
                     3e-8f,       -1.5f,      1.00048828125f, 1.00146484375f,
                     1.00390625f, 1.01171875f};
  const uint16_t f16[] = {0x6800, 0x6802, 0x7c00, 0x0000, 0x0001,
                          0xbe00, 0x3c00, 0x3c02, 0x3c04, 0x3c0c};
  const uint16_t bf16[] = {0x4500, 0x4500, 0x4780, 0x322c, 0x3301,
                           0xbfc0, 0x3f80, 0x3f80, 0x3f80, 0x3f82};
  CAST_CHECK(ELEM_F32, GS_DTYPE_FP32, ELEM_F16, uint16_t, x, f16);
  CAST_CHECK(ELEM_F32, GS_DTYPE_FP32, ELEM_BF16, uint16_t, x, bf16);
  const float y[] = {-2.7f, 3.9f, NAN, 1e10f, -1e10f, 300.0f, -5.0f, 0.5f};
  const int32_t i32[] = {-2, 3, 0, INT32_MAX, INT32_MIN, 300, -5, 0};
  const uint8_t u8[] = {0, 3, 0, 255, 0, 255, 0, 0};
  const int8_t i8[] = {-2, 3, 0, 127, -128, 127, -5, 0};
  const uint8_t b[] = {1, 1, 1, 1, 1, 1, 1, 1};
  const double f64[] = {-2.7f, 3.9f, NAN, 1e10f, -1e10f, 300.0f, -5.0f, 0.5f};
  CAST_CHECK(ELEM_F32, GS_DTYPE_FP32, ELEM_I32, int32_t, y, i32);
  CAST_CHECK(ELEM_F32, GS_DTYPE_FP32, ELEM_U8, uint8_t, y, u8);
  CAST_CHECK(ELEM_F32, GS_DTYPE_FP32, ELEM_I8, int8_t, y, i8);
  CAST_CHECK(ELEM_F32, GS_DTYPE_FP32, ELEM_BOOL, uint8_t, y, b);
  CAST_CHECK(ELEM_F32, GS_DTYPE_FP32, ELEM_F64, double, y, f64);
}

/* Integers: a no-op INT32 cast copies; narrowing wraps (200 -> -56, as
 * ONNX's spec says); to FP16 rounds to nearest even; FP16 and BF16 widen
 * exactly. */
static void test_cast_integers(void **state) {
  (void)state;
  const int32_t x[] = {0, -7, 2049, INT32_MAX, INT32_MIN};
  CAST_CHECK(ELEM_I32, GS_DTYPE_INT32, ELEM_I32, int32_t, x, x);
  const int64_t big[] = {200, -129, 65536 + 5, 1};
  const int8_t i8[] = {-56, 127, 5, 1};
  const uint16_t u16[] = {200, 65407, 5, 1};
  CAST_CHECK(ELEM_I64, GS_DTYPE_INT64, ELEM_I8, int8_t, big, i8);
  CAST_CHECK(ELEM_I64, GS_DTYPE_INT64, ELEM_U16, uint16_t, big, u16);
  const uint16_t f16[] = {0x0000, 0xc700, 0x6800, 0x7c00, 0xfc00};
  CAST_CHECK(ELEM_I32, GS_DTYPE_INT32, ELEM_F16, uint16_t, x, f16);
  const float wide[] = {0.0f, -7.0f, 2048.0f, INFINITY, -INFINITY};
  CAST_CHECK(ELEM_F16, GS_DTYPE_FP16, ELEM_F32, float, f16, wide);
  const uint16_t bf[] = {0x3f80, 0xc0e0, 0x0001};
  const float bf_wide[] = {1.0f, -7.0f, 9.18354962e-41f};
  CAST_CHECK(ELEM_BF16, GS_DTYPE_BF16, ELEM_F32, float, bf, bf_wide);
  const uint64_t u64[] = {UINT64_MAX, 3};
  const double u64_f[] = {18446744073709551616.0, 3.0};
  CAST_CHECK(ELEM_U64, GS_DTYPE_UINT64, ELEM_F64, double, u64, u64_f);
}

/* Numbers to STRING as ONNX Runtime writes them (integers in decimal,
 * floats "%.8g", NaN, INF, -INF), and back: leading space skipped, text
 * after the number ignored, "100.5" to an integer is 100. */
static void test_cast_strings(void **state) {
  (void)state;
  gs_model_t *m;
  gs_session_t *s;
  const int32_t ints[] = {-5, 0, 123456789};
  expect_bytes(cast_run(ELEM_I32, GS_DTYPE_INT32, ELEM_STR, 3, ints, &m, &s), 3,
               (const char *const[]){"-5", "0", "123456789"});
  gs_session_destroy(s);
  gs_model_destroy(m);
  const float f[] = {0.1f, 0.60484552f, NAN, INFINITY, -INFINITY, -2.5e-7f};
  expect_bytes(cast_run(ELEM_F32, GS_DTYPE_FP32, ELEM_STR, 6, f, &m, &s), 6,
               (const char *const[]){"0.1", "0.60484552", "NaN", "INF", "-INF",
                                     "-2.5e-07"});
  gs_session_destroy(s);
  gs_model_destroy(m);
  const uint8_t bools[] = {1, 0};
  expect_bytes(cast_run(ELEM_BOOL, GS_DTYPE_BOOL, ELEM_STR, 2, bools, &m, &s),
               2, (const char *const[]){"1", "0"});
  gs_session_destroy(s);
  gs_model_destroy(m);

  static const char *const texts[] = {" 42", "-7", "100.5", "12abc"};
  m = cast_model(ELEM_STR, ELEM_I32, 0);
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  const gs_tensor_t *o =
      run1(s, bytes_tensor("x", 1, (int64_t[]){4}, 4, texts));
  const int32_t want[] = {42, -7, 100, 12};
  assert_memory_equal(o->data, want, sizeof want);
  static const char *const bad[] = {"1", "2", "abc"};
  gs_tensor_t in = bytes_tensor("x", 1, (int64_t[]){3}, 3, bad);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "'cast' (Cast)"));
  assert_non_null(strstr(err.msg, "element 2, 'abc'"));
  static const char *const huge[] = {"99999999999999999999"};
  in = bytes_tensor("x", 1, (int64_t[]){1}, 1, huge);
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_EINVAL);
  gs_session_destroy(s);
  gs_model_destroy(m);

  static const char *const reals[] = {"1e-5", "inf", "-NaN", "0.5"};
  m = cast_model(ELEM_STR, ELEM_F16, 0);
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  o = run1(s, bytes_tensor("x", 1, (int64_t[]){4}, 4, reals));
  const uint16_t *h = o->data;
  assert_int_equal(h[0], 0x00a8); /* 1e-5: a subnormal, rounded */
  assert_int_equal(h[1], 0x7c00);
  assert_true((h[2] & 0x7c00) == 0x7c00 && (h[2] & 0x3ff));
  assert_int_equal(h[3], 0x3800);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* Cast's load checks: 'to' is required; FP8 targets are refused by name;
 * STRING needs opset 9 and BFLOAT16 opset 13. */
static void test_cast_refused(void **state) {
  (void)state;
  static const struct {
    int from, to, opset;
    const char *want;
  } cases[] = {
      {ELEM_F32, 17, 0, "FLOAT8E4M3FN"},
      {ELEM_F32, ELEM_STR, 8, "opset 9"},
      {ELEM_BF16, ELEM_F32, 12, "opset 13"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    graph_t g = {.n_in = 1, .n_out = 1, .n_nodes = 1, .opset = cases[i].opset};
    g.in[0] = info("x", cases[i].from, 1, (int64_t[]){2});
    g.out[0] = info("y", ELEM_F32, 1, (int64_t[]){2});
    g.nodes[0] = node("Cast", "c", "x", "y", attr_i("to", cases[i].to), NULL);
    gs_model_t *m = NULL;
    gs_error_t err = {0};
    assert_int_not_equal(try_load(&g, &m, &err), GS_OK);
    if (!strstr(err.msg, cases[i].want) || !strstr(err.msg, "'c' (Cast)"))
      fail_msg("case %zu: %s", i, err.msg);
  }
  graph_t g = {.n_in = 1, .n_out = 1, .n_nodes = 1};
  g.in[0] = info("x", ELEM_F32, 1, (int64_t[]){2});
  g.out[0] = info("y", ELEM_F32, 1, (int64_t[]){2});
  g.nodes[0] = node("Cast", "c", "x", "y", NULL);
  gs_model_t *m = NULL;
  gs_error_t err = {0};
  assert_int_equal(try_load(&g, &m, &err), GS_EPARSE);
  assert_non_null(strstr(err.msg, "'to' is required"));
}

/* y = op(a, b) over [n] elements of type elem, at opset; output 0 of the
 * run (the caller destroys *sp and *mp), or NULL with the load error. */
static const gs_tensor_t *binary_run(const char *op, int elem, gs_dtype_t dt,
                                     int opset, size_t n, const void *a,
                                     const void *b, gs_model_t **mp,
                                     gs_session_t **sp, gs_error_t *err) {
  graph_t g = {.n_in = 2, .n_out = 1, .n_nodes = 1, .opset = opset};
  g.in[0] = info("a", elem, 1, (int64_t[]){-1});
  g.in[1] = info("b", elem, 1, (int64_t[]){-1});
  g.out[0] = info("y", elem, 1, (int64_t[]){-1});
  g.nodes[0] = node(op, "op", "a,b", "y", NULL);
  *mp = NULL;
  *sp = NULL;
  if (try_load(&g, mp, err) != GS_OK)
    return NULL;
  assert_int_equal(gs_session_create(sp, *mp, NULL, err), GS_OK);
  gs_tensor_t in[2] = {tensor("a", dt, 1, (int64_t[]){(int64_t)n}, a),
                       tensor("b", dt, 1, (int64_t[]){(int64_t)n}, b)};
  if (gs_session_run(*sp, in, 2, err) != GS_OK)
    return NULL;
  return gs_session_output(*sp, 0);
}

#define BINARY_CHECK(op, elem, dt, opset, T, a, b, want)                       \
  do {                                                                         \
    gs_model_t *m_;                                                            \
    gs_session_t *s_;                                                          \
    gs_error_t e_ = {0};                                                       \
    size_t n_ = sizeof(want) / sizeof(want)[0];                                \
    const gs_tensor_t *o_ =                                                    \
        binary_run(op, elem, dt, opset, n_, a, b, &m_, &s_, &e_);              \
    if (!o_)                                                                   \
      fail_msg("%s line %d: %s", op, __LINE__, e_.msg);                        \
    for (size_t i_ = 0; i_ < n_; i_++)                                         \
      if (((const T *)o_->data)[i_] != (want)[i_])                             \
        fail_msg("%s line %d: element %zu is %lld, want %lld", op, __LINE__,   \
                 i_, (long long)((const T *)o_->data)[i_],                     \
                 (long long)(want)[i_]);                                       \
    gs_session_destroy(s_);                                                    \
    gs_model_destroy(m_);                                                      \
  } while (0)

/* FP16 and BF16 arithmetic: computed in FP32, rounded to nearest even (1 +
 * 2^-11 is an FP16 tie that goes to 1, 1 + 3 * 2^-11 one that goes up;
 * likewise 2^-8 for BF16); FP64 stays FP64. */
static void test_elementwise_half(void **state) {
  (void)state;
  const uint16_t ha[] = {0x3c00, 0x3c00, 0x3e00, 0xc000};
  const uint16_t hb[] = {0x1000, 0x1600, 0x3e00, 0x4200};
  const uint16_t h_add[] = {0x3c00, 0x3c02, 0x4200, 0x3c00};
  const uint16_t h_mul[] = {0x1000, 0x1600, 0x4080, 0xc600};
  BINARY_CHECK("Add", ELEM_F16, GS_DTYPE_FP16, 13, uint16_t, ha, hb, h_add);
  BINARY_CHECK("Mul", ELEM_F16, GS_DTYPE_FP16, 7, uint16_t, ha, hb, h_mul);
  const uint16_t ba[] = {0x3f80, 0x3f80, 0x3fc0, 0xc000};
  const uint16_t bb[] = {0x3b80, 0x3c40, 0x3fc0, 0x4040};
  const uint16_t b_add[] = {0x3f80, 0x3f82, 0x4040, 0x3f80};
  const uint16_t b_mul[] = {0x3b80, 0x3c40, 0x4010, 0xc0c0};
  BINARY_CHECK("Add", ELEM_BF16, GS_DTYPE_BF16, 13, uint16_t, ba, bb, b_add);
  BINARY_CHECK("Mul", ELEM_BF16, GS_DTYPE_BF16, 14, uint16_t, ba, bb, b_mul);
  const double da[] = {0.1, 1e300}, db[] = {0.2, 1e300};
  const double d_add[] = {0.1 + 0.2, 2e300};
  BINARY_CHECK("Add", ELEM_F64, GS_DTYPE_FP64, 13, double, da, db, d_add);
  /* BF16 needs opset 13. */
  gs_model_t *m;
  gs_session_t *s;
  gs_error_t err = {0};
  assert_null(
      binary_run("Sub", ELEM_BF16, GS_DTYPE_BF16, 12, 4, ba, bb, &m, &s, &err));
  assert_non_null(strstr(err.msg, "'op' (Sub): type BF16 needs opset 13"));
}

/* Integer arithmetic in every width ONNX allows, wrapping; 8- and 16-bit
 * types from opset 14 (before it, refused saying so); division by zero is
 * an error, INT8_MIN / -1 wraps. */
static void test_elementwise_ints(void **state) {
  (void)state;
  const int8_t a8[] = {100, -128, 7, -7}, b8[] = {100, -1, 2, 2};
  const int8_t add8[] = {-56, 127, 9, -5}, div8[] = {1, -128, 3, -3};
  BINARY_CHECK("Add", ELEM_I8, GS_DTYPE_INT8, 14, int8_t, a8, b8, add8);
  BINARY_CHECK("Div", ELEM_I8, GS_DTYPE_INT8, 14, int8_t, a8, b8, div8);
  const int16_t a16[] = {300, -2}, b16[] = {300, 3}, mul16[] = {24464, -6};
  BINARY_CHECK("Mul", ELEM_I16, GS_DTYPE_INT16, 14, int16_t, a16, b16, mul16);
  const uint16_t au[] = {1, 65535}, bu[] = {2, 65535};
  const uint16_t subu[] = {65535, 0}, mulu[] = {2, 1};
  BINARY_CHECK("Sub", ELEM_U16, GS_DTYPE_UINT16, 14, uint16_t, au, bu, subu);
  BINARY_CHECK("Mul", ELEM_U16, GS_DTYPE_UINT16, 14, uint16_t, au, bu, mulu);
  const uint32_t a32[] = {7, 0}, b32[] = {2, 5}, div32[] = {3, 0};
  BINARY_CHECK("Div", ELEM_U32, GS_DTYPE_UINT32, 7, uint32_t, a32, b32, div32);
  const uint64_t a64[] = {UINT64_MAX}, b64[] = {2}, add64[] = {1};
  BINARY_CHECK("Add", ELEM_U64, GS_DTYPE_UINT64, 13, uint64_t, a64, b64, add64);
  gs_model_t *m;
  gs_session_t *s;
  gs_error_t err = {0};
  assert_null(
      binary_run("Add", ELEM_I8, GS_DTYPE_INT8, 13, 4, a8, b8, &m, &s, &err));
  assert_non_null(strstr(err.msg, "'op' (Add): type INT8 needs opset 14"));
  const uint32_t zero[] = {1, 0};
  assert_null(binary_run("Div", ELEM_U32, GS_DTYPE_UINT32, 13, 2, a32, zero, &m,
                         &s, &err));
  assert_non_null(strstr(err.msg, "division by zero"));
  gs_session_destroy(s);
  gs_model_destroy(m);
  assert_null(
      binary_run("Add", ELEM_BOOL, GS_DTYPE_BOOL, 14, 2, a8, b8, &m, &s, &err));
  assert_non_null(strstr(err.msg, "type BOOL is not supported"));
}

/* Relu, Sigmoid, Tanh and Clip on FP16 and BF16 (through FP32, rounded to
 * nearest even), Relu on INT8 from opset 14. */
static void test_unary_types(void **state) {
  (void)state;
  static const struct {
    const char *op;
    int elem;
    gs_dtype_t dt;
    uint16_t x[3], want[2];
  } cases[] = {
      {"Relu", ELEM_F16, GS_DTYPE_FP16, {0xc000, 0x3c00, 0}, {0, 0x3c00}},
      {"Sigmoid", ELEM_F16, GS_DTYPE_FP16, {0, 0x3c00, 0}, {0x3800, 0x39d9}},
      {"Tanh", ELEM_F16, GS_DTYPE_FP16, {0, 0x3c00, 0}, {0, 0x3a18}},
      {"Relu", ELEM_BF16, GS_DTYPE_BF16, {0xc000, 0x3f80, 0}, {0, 0x3f80}},
      {"Sigmoid", ELEM_BF16, GS_DTYPE_BF16, {0, 0x3f80, 0}, {0x3f00, 0x3f3b}},
      {"Tanh", ELEM_BF16, GS_DTYPE_BF16, {0, 0x3f80, 0}, {0, 0x3f43}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    graph_t g = {.n_in = 1, .n_out = 1, .n_nodes = 1};
    g.in[0] = info("x", cases[c].elem, 1, (int64_t[]){3});
    g.out[0] = info("y", cases[c].elem, 1, (int64_t[]){3});
    g.nodes[0] = node(cases[c].op, "u", "x", "y", NULL);
    gs_model_t *m = load(&g);
    gs_session_t *s = NULL;
    gs_error_t err = {0};
    assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
    const uint16_t *y =
        run1(s, tensor("x", cases[c].dt, 1, (int64_t[]){3}, cases[c].x))->data;
    if (y[0] != cases[c].want[0] || y[1] != cases[c].want[1])
      fail_msg("%s %s: %#x %#x, want %#x %#x", cases[c].op,
               gs_dtype_name(cases[c].dt), y[0], y[1], cases[c].want[0],
               cases[c].want[1]);
    gs_session_destroy(s);
    gs_model_destroy(m);
  }
  /* Clip with bound inputs, FP16: [-2, 1, 3] into [-1, 1.5]. */
  graph_t g = {.n_in = 3, .n_out = 1, .n_nodes = 1};
  g.in[0] = info("x", ELEM_F16, 1, (int64_t[]){3});
  g.in[1] = info("lo", ELEM_F16, 0, NULL);
  g.in[2] = info("hi", ELEM_F16, 0, NULL);
  g.out[0] = info("y", ELEM_F16, 1, (int64_t[]){3});
  g.nodes[0] = node("Clip", "clip", "x,lo,hi", "y", NULL);
  gs_model_t *m = load(&g);
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  const uint16_t x[] = {0xc000, 0x3c00, 0x4200}, lo = 0xbc00, hi = 0x3e00;
  gs_tensor_t in[3] = {tensor("x", GS_DTYPE_FP16, 1, (int64_t[]){3}, x),
                       tensor("lo", GS_DTYPE_FP16, 0, NULL, &lo),
                       tensor("hi", GS_DTYPE_FP16, 0, NULL, &hi)};
  assert_int_equal(gs_session_run(s, in, 3, &err), GS_OK);
  const uint16_t want[] = {0xbc00, 0x3c00, 0x3e00};
  assert_memory_equal(gs_session_output(s, 0)->data, want, sizeof want);
  gs_session_destroy(s);
  gs_model_destroy(m);
  /* Relu on INT8: opset 14, not before. */
  g = (graph_t){.n_in = 1, .n_out = 1, .n_nodes = 1, .opset = 13};
  g.in[0] = info("x", ELEM_I8, 1, (int64_t[]){2});
  g.out[0] = info("y", ELEM_I8, 1, (int64_t[]){2});
  g.nodes[0] = node("Relu", "r", "x", "y", NULL);
  assert_int_equal(try_load(&g, &m, &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "INT8 needs opset 14"));
  g.opset = 14;
  m = load(&g);
  assert_int_equal(gs_session_create(&s, m, NULL, &err), GS_OK);
  const int8_t xi[] = {-5, 5}, yi[] = {0, 5};
  assert_memory_equal(
      run1(s, tensor("x", GS_DTYPE_INT8, 1, (int64_t[]){2}, xi))->data, yi, 2);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* The CUDA provider runs FP32 (and INT32 through a few ops, see
 * test_cuda_provider): a session asked for it on an INT64 Add model, a
 * BYTES model or a Cast fails at creation naming the input or the node
 * (checked before any GPU library loads, so without a GPU too); AUTO takes
 * the CPU for them. */
static void test_cuda_refuses_types(void **state) {
  (void)state;
  gs_session_options_t opts;
  gs_session_options_default(&opts);
  opts.provider = GS_PROVIDER_CUDA;
  static const struct {
    int elem;
    const char *op, *want;
  } cases[] = {{ELEM_I64, "Add", "input 'a' is INT64"},
               {ELEM_STR, "Identity", "input 'a' is BYTES"},
               {ELEM_F32, "Cast", "'op' (Cast): the cuda provider cannot"}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    bool cast = !strcmp(cases[c].op, "Cast"), add = !strcmp(cases[c].op, "Add");
    graph_t g = {.n_in = 1, .n_out = 1, .n_nodes = 1};
    g.in[0] = info("a", cases[c].elem, 1, (int64_t[]){2});
    g.out[0] = info("y", cases[c].elem, 1, (int64_t[]){2});
    g.nodes[0] = node(cases[c].op, "op", add ? "a,a" : "a", "y",
                      cast ? attr_i("to", ELEM_F32) : NULL, NULL);
    gs_model_t *m = load(&g);
    gs_session_t *s = NULL;
    gs_error_t err = {0};
    assert_int_equal(gs_session_create(&s, m, &opts, &err), GS_EUNSUPPORTED);
    if (!strstr(err.msg, cases[c].want))
      fail_msg("%s: %s", cases[c].op, err.msg);
    gs_session_options_t auto_opts = opts;
    auto_opts.provider = GS_PROVIDER_AUTO;
    assert_int_equal(gs_session_create(&s, m, &auto_opts, &err), GS_OK);
    assert_int_equal(gs_session_provider(s), GS_PROVIDER_CPU);
    gs_session_destroy(s);
    gs_model_destroy(m);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_bytes_moves, free_kept),
      cmocka_unit_test_teardown(test_bytes_bad_input, free_kept),
      cmocka_unit_test_teardown(test_bytes_refused, free_kept),
      cmocka_unit_test_teardown(test_cast_from_float, free_kept),
      cmocka_unit_test_teardown(test_cast_integers, free_kept),
      cmocka_unit_test_teardown(test_cast_strings, free_kept),
      cmocka_unit_test_teardown(test_cast_refused, free_kept),
      cmocka_unit_test_teardown(test_elementwise_half, free_kept),
      cmocka_unit_test_teardown(test_elementwise_ints, free_kept),
      cmocka_unit_test_teardown(test_unary_types, free_kept),
      cmocka_unit_test_teardown(test_cuda_refuses_types, free_kept),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
