/* Element-wise kernels: the four arithmetic ops with numpy broadcasting,
 * the activations, and Softmax. Integer arithmetic wraps, as ONNX Runtime's
 * does, rather than being undefined; integer division by zero is an error. */
#include <math.h>
#include <string.h>

#include "engine/engine_int.h"

/* One row of a binary op: o[i] = a[i * sa] OP b[i * sb], sa and sb 0 or 1.
 * Returns false on integer division by zero. */
typedef bool (*row_fn)(const void *a, size_t sa, const void *b, size_t sb,
                       void *o, size_t n);

#define ROW(name, T, EXPR)                                                     \
  static bool name(const void *pa, size_t sa, const void *pb, size_t sb,       \
                   void *po, size_t n) {                                       \
    const T *a = pa, *b = pb;                                                  \
    T *o = po;                                                                 \
    for (size_t i = 0; i < n; i++) {                                           \
      T x = a[i * sa], y = b[i * sb];                                          \
      EXPR;                                                                    \
    }                                                                          \
    return true;                                                               \
  }

/* Wrapping signed arithmetic through the unsigned type U. */
#define WRAP(T, U, op) (o[i] = (T)((U)x op(U) y))
/* Signed division: MIN / -1 wraps to MIN. */
#define SDIV(T, MIN)                                                           \
  if (y == 0)                                                                  \
    return false;                                                              \
  o[i] = (x == (MIN) && y == -1) ? (MIN) : (T)(x / y)
#define UDIV(T)                                                                \
  if (y == 0)                                                                  \
    return false;                                                              \
  o[i] = (T)(x / y)

ROW(add_f32, float, o[i] = x + y)
ROW(sub_f32, float, o[i] = x - y)
ROW(mul_f32, float, o[i] = x * y)
ROW(div_f32, float, o[i] = x / y)
ROW(add_i32, int32_t, WRAP(int32_t, uint32_t, +))
ROW(sub_i32, int32_t, WRAP(int32_t, uint32_t, -))
ROW(mul_i32, int32_t, WRAP(int32_t, uint32_t, *))
ROW(div_i32, int32_t, SDIV(int32_t, INT32_MIN))
ROW(add_i64, int64_t, WRAP(int64_t, uint64_t, +))
ROW(sub_i64, int64_t, WRAP(int64_t, uint64_t, -))
ROW(mul_i64, int64_t, WRAP(int64_t, uint64_t, *))
ROW(div_i64, int64_t, SDIV(int64_t, INT64_MIN))
ROW(add_u8, uint8_t, o[i] = (uint8_t)(x + y))
ROW(sub_u8, uint8_t, o[i] = (uint8_t)(x - y))
ROW(mul_u8, uint8_t, o[i] = (uint8_t)(x * y))
ROW(div_u8, uint8_t, UDIV(uint8_t))

static row_fn row_for(gs__op_code_t op, gs_dtype_t t) {
  static const row_fn table[4][4] = {
      {add_f32, sub_f32, mul_f32, div_f32},
      {add_i32, sub_i32, mul_i32, div_i32},
      {add_i64, sub_i64, mul_i64, div_i64},
      {add_u8, sub_u8, mul_u8, div_u8},
  };
  int col = op == GS__OP_ADD   ? 0
            : op == GS__OP_SUB ? 1
            : op == GS__OP_MUL ? 2
                               : 3;
  switch (t) {
  case GS_DTYPE_FP32:
    return table[0][col];
  case GS_DTYPE_INT32:
    return table[1][col];
  case GS_DTYPE_INT64:
    return table[2][col];
  default:
    return table[3][col];
  }
}

/* Element strides of x broadcast to out's shape: 0 along stretched dims. */
static void broadcast_strides(const gs__tensor_t *x, const gs__tensor_t *out,
                              size_t *stride) {
  size_t s = 1;
  for (unsigned i = out->rank; i-- > 0;) {
    unsigned off = out->rank - x->rank;
    int64_t d = i >= off ? x->dims[i - off] : 1;
    stride[i] = d == 1 ? 0 : s;
    s *= (size_t)d;
  }
}

int gs__run_binary(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err) {
  row_fn row = row_for(n->op->code, out->dtype);
  size_t es = gs_dtype_size(out->dtype), total = out->count;
  const char *a = in[0].data, *b = in[1].data;
  char *o = out->data;
  bool ok = true;
  if (total == 0)
    return GS_OK;
  if (in[0].count == total && in[1].count == total) {
    ok = row(a, 1, b, 1, o, total);
  } else if (in[0].count == 1 || in[1].count == 1) {
    ok = row(a, in[0].count != 1, b, in[1].count != 1, o, total);
  } else {
    size_t sa[GS_TENSOR_MAX_RANK], sb[GS_TENSOR_MAX_RANK];
    size_t idx[GS_TENSOR_MAX_RANK] = {0};
    broadcast_strides(&in[0], out, sa);
    broadcast_strides(&in[1], out, sb);
    unsigned last = out->rank - 1;
    size_t len = (size_t)out->dims[last], rows = total / len;
    size_t ia = 0, ib = 0;
    for (size_t r = 0; ok && r < rows; r++) {
      ok = row(a + ia * es, sa[last], b + ib * es, sb[last], o + r * len * es,
               len);
      for (unsigned d = last; d-- > 0;) { /* odometer over the outer dims */
        ia += sa[d];
        ib += sb[d];
        if (++idx[d] < (size_t)out->dims[d])
          break;
        ia -= sa[d] * idx[d];
        ib -= sb[d] * idx[d];
        idx[d] = 0;
      }
    }
  }
  if (!ok) {
    char label[160];
    return gs_error_set(err, GS_EINVAL, "%s: integer division by zero",
                        gs__node_label(n, label, sizeof label));
  }
  return GS_OK;
}

static float sigmoid(float x) {
  if (x >= 0)
    return 1.0f / (1.0f + expf(-x));
  float e = expf(x);
  return e / (1.0f + e);
}

int gs__run_unary(const gs__node_t *n, const gs__tensor_t *in,
                  gs__tensor_t *out, gs_error_t *err) {
  (void)err;
  size_t count = out->count;
  if (out->dtype == GS_DTYPE_INT32) {
    const int32_t *x = in[0].data;
    int32_t *y = out->data;
    for (size_t i = 0; i < count; i++)
      y[i] = x[i] > 0 ? x[i] : 0;
    return GS_OK;
  }
  if (out->dtype == GS_DTYPE_INT64) {
    const int64_t *x = in[0].data;
    int64_t *y = out->data;
    for (size_t i = 0; i < count; i++)
      y[i] = x[i] > 0 ? x[i] : 0;
    return GS_OK;
  }
  const float *x = in[0].data;
  float *y = out->data;
  switch (n->op->code) {
  case GS__OP_RELU:
    for (size_t i = 0; i < count; i++)
      y[i] = x[i] > 0.0f ? x[i] : 0.0f;
    break;
  case GS__OP_SIGMOID:
    for (size_t i = 0; i < count; i++)
      y[i] = sigmoid(x[i]);
    break;
  default:
    for (size_t i = 0; i < count; i++)
      y[i] = tanhf(x[i]);
    break;
  }
  return GS_OK;
}

/* Softmax over n elements spaced inner apart. */
static void softmax_line(const float *x, float *y, size_t n, size_t inner) {
  float max = -INFINITY, sum = 0.0f;
  for (size_t k = 0; k < n; k++)
    if (x[k * inner] > max)
      max = x[k * inner];
  for (size_t k = 0; k < n; k++) {
    y[k * inner] = expf(x[k * inner] - max);
    sum += y[k * inner];
  }
  for (size_t k = 0; k < n; k++)
    y[k * inner] /= sum;
}

int gs__run_softmax(const gs__node_t *n, const gs__tensor_t *in,
                    gs__tensor_t *out, gs_error_t *err) {
  (void)err;
  unsigned axis = (unsigned)gs__axis(n->p.axis, in[0].rank, 0);
  size_t outer = 1, len = 1, inner = 1;
  for (unsigned d = 0; d < in[0].rank; d++) {
    size_t dim = (size_t)in[0].dims[d];
    if (d < axis)
      outer *= dim;
    else if (d == axis || n->p.softmax_2d)
      len *= dim;
    else
      inner *= dim;
  }
  if (out->count == 0)
    return GS_OK;
  const float *x = in[0].data;
  float *y = out->data;
  for (size_t o = 0; o < outer; o++)
    for (size_t j = 0; j < inner; j++)
      softmax_line(x + o * len * inner + j, y + o * len * inner + j, len,
                   inner);
  return GS_OK;
}
