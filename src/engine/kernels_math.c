/* Element-wise kernels: the four arithmetic ops with numpy broadcasting,
 * the activations, Clip and Softmax, over every type ONNX gives them (FP16
 * and BF16 computed in FP32 and rounded to nearest even). Integer
 * arithmetic wraps, as ONNX Runtime's does, rather than being undefined;
 * integer division by zero is an error. */
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

/* FP16 and BF16: computed in FP32, rounded to nearest even. */
#define H(v) gs__half_to_float(v)
#define B(v) gs__bf16_to_float(v)

#define FLOAT_ROWS(sfx, T, IN, OUT)                                            \
  ROW(add_##sfx, T, o[i] = OUT(IN(x) + IN(y)))                                 \
  ROW(sub_##sfx, T, o[i] = OUT(IN(x) - IN(y)))                                 \
  ROW(mul_##sfx, T, o[i] = OUT(IN(x) * IN(y)))                                 \
  ROW(div_##sfx, T, o[i] = OUT(IN(x) / IN(y)))
#define SIGNED_ROWS(sfx, T, U, MIN)                                            \
  ROW(add_##sfx, T, WRAP(T, U, +))                                             \
  ROW(sub_##sfx, T, WRAP(T, U, -))                                             \
  ROW(mul_##sfx, T, WRAP(T, U, *))                                             \
  ROW(div_##sfx, T, SDIV(T, MIN))
#define UNSIGNED_ROWS(sfx, T)                                                  \
  ROW(add_##sfx, T, o[i] = (T)(x + y))                                         \
  ROW(sub_##sfx, T, o[i] = (T)(x - y))                                         \
  ROW(mul_##sfx, T, o[i] = (T)((uint64_t)x * y))                               \
  ROW(div_##sfx, T, UDIV(T))
#define SAME(v) (v)

FLOAT_ROWS(f32, float, SAME, SAME)
FLOAT_ROWS(f64, double, SAME, SAME)
FLOAT_ROWS(f16, uint16_t, H, gs__float_to_half)
FLOAT_ROWS(bf16, uint16_t, B, gs__float_to_bf16)
SIGNED_ROWS(i8, int8_t, uint32_t, INT8_MIN)
SIGNED_ROWS(i16, int16_t, uint32_t, INT16_MIN)
SIGNED_ROWS(i32, int32_t, uint32_t, INT32_MIN)
SIGNED_ROWS(i64, int64_t, uint64_t, INT64_MIN)
UNSIGNED_ROWS(u8, uint8_t)
UNSIGNED_ROWS(u16, uint16_t)
UNSIGNED_ROWS(u32, uint32_t)
UNSIGNED_ROWS(u64, uint64_t)

#define ROWS(sfx)                                                              \
  { add_##sfx, sub_##sfx, mul_##sfx, div_##sfx }

static row_fn row_for(gs__op_code_t op, gs_dtype_t t) {
  /* In gs_dtype_t order, BOOL first (never checked in: no row). */
  static const row_fn table[][4] = {
      {NULL, NULL, NULL, NULL},
      ROWS(u8),
      ROWS(u16),
      ROWS(u32),
      ROWS(u64),
      ROWS(i8),
      ROWS(i16),
      ROWS(i32),
      ROWS(i64),
      ROWS(f16),
      ROWS(f32),
      ROWS(f64),
      ROWS(bf16),
  };
  int col = op == GS__OP_ADD   ? 0
            : op == GS__OP_SUB ? 1
            : op == GS__OP_MUL ? 2
                               : 3;
  return table[t - GS_DTYPE_BOOL][col];
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

static double sigmoid_f64(double x) {
  if (x >= 0)
    return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

static float unary_f32(gs__op_code_t op, float x) {
  return op == GS__OP_RELU      ? (x > 0.0f ? x : 0.0f)
         : op == GS__OP_SIGMOID ? sigmoid(x)
                                : tanhf(x);
}

static double unary_f64(gs__op_code_t op, double x) {
  return op == GS__OP_RELU      ? (x > 0.0 ? x : 0.0)
         : op == GS__OP_SIGMOID ? sigmoid_f64(x)
                                : tanh(x);
}

#define UNARY_LOOP(T, EXPR)                                                    \
  do {                                                                         \
    const T *x = in[0].data;                                                   \
    T *y = out->data;                                                          \
    for (size_t i = 0; i < count; i++)                                         \
      y[i] = EXPR;                                                             \
  } while (0)

/* Relu, Sigmoid and Tanh; integers (Relu only) in their own type, FP16
 * and BF16 through FP32. */
int gs__run_unary(const gs__node_t *n, const gs__tensor_t *in,
                  gs__tensor_t *out, gs_error_t *err) {
  (void)err;
  size_t count = out->count;
  gs__op_code_t op = n->op->code;
  switch (out->dtype) {
  case GS_DTYPE_INT8:
    UNARY_LOOP(int8_t, x[i] > 0 ? x[i] : 0);
    break;
  case GS_DTYPE_INT16:
    UNARY_LOOP(int16_t, x[i] > 0 ? x[i] : 0);
    break;
  case GS_DTYPE_INT32:
    UNARY_LOOP(int32_t, x[i] > 0 ? x[i] : 0);
    break;
  case GS_DTYPE_INT64:
    UNARY_LOOP(int64_t, x[i] > 0 ? x[i] : 0);
    break;
  case GS_DTYPE_FP16:
    UNARY_LOOP(uint16_t, gs__float_to_half(unary_f32(op, H(x[i]))));
    break;
  case GS_DTYPE_BF16:
    UNARY_LOOP(uint16_t, gs__float_to_bf16(unary_f32(op, B(x[i]))));
    break;
  case GS_DTYPE_FP64:
    UNARY_LOOP(double, unary_f64(op, x[i]));
    break;
  default:
    UNARY_LOOP(float, unary_f32(op, x[i]));
    break;
  }
  return GS_OK;
}

#define CLIP_LOOP(T, C, LO, HI, IN, OUT)                                       \
  do {                                                                         \
    const T *x = in[0].data;                                                   \
    T *y = out->data;                                                          \
    C lo = (LO), hi = (HI);                                                    \
    if (n->n_in > 1 && in[1].data)                                             \
      lo = IN(*(const T *)in[1].data);                                         \
    if (n->n_in > 2 && in[2].data)                                             \
      hi = IN(*(const T *)in[2].data);                                         \
    for (size_t i = 0; i < out->count; i++) {                                  \
      C v = IN(x[i]) < lo ? lo : IN(x[i]);                                     \
      y[i] = OUT(v > hi ? hi : v);                                             \
    }                                                                          \
  } while (0)

/* Clip: bounds from the attributes (before opset 11, floats) or from the
 * optional inputs; FP16 and BF16 compared in FP32 (a result is an input
 * value or a bound, so exact). NaN passes through. */
int gs__run_clip(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err) {
  (void)err;
  float amin = n->p.act_min, amax = n->p.act_max;
  switch (out->dtype) {
#define INT_CLIP(dt, T, MIN, MAX)                                              \
  case GS_DTYPE_##dt:                                                          \
    CLIP_LOOP(T, T, MIN, MAX, SAME, SAME);                                     \
    break;
    INT_CLIP(INT8, int8_t, INT8_MIN, INT8_MAX)
    INT_CLIP(INT16, int16_t, INT16_MIN, INT16_MAX)
    INT_CLIP(INT32, int32_t, INT32_MIN, INT32_MAX)
    INT_CLIP(INT64, int64_t, INT64_MIN, INT64_MAX)
    INT_CLIP(UINT8, uint8_t, 0, UINT8_MAX)
    INT_CLIP(UINT16, uint16_t, 0, UINT16_MAX)
    INT_CLIP(UINT32, uint32_t, 0, UINT32_MAX)
    INT_CLIP(UINT64, uint64_t, 0, UINT64_MAX)
#undef INT_CLIP
  case GS_DTYPE_FP16:
    CLIP_LOOP(uint16_t, float, amin, amax, H, gs__float_to_half);
    break;
  case GS_DTYPE_BF16:
    CLIP_LOOP(uint16_t, float, amin, amax, B, gs__float_to_bf16);
    break;
  case GS_DTYPE_FP64:
    CLIP_LOOP(double, double, amin, amax, SAME, SAME);
    break;
  default:
    CLIP_LOOP(float, float, amin, amax, SAME, SAME);
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

/* BatchNormalization (inference): one scale and shift per channel; the
 * one left after load, where it was not folded into a Conv. */
int gs__run_batchnorm(const gs__node_t *n, const gs__tensor_t *in,
                      gs__tensor_t *out, gs_error_t *err) {
  (void)err;
  const float *x = in[0].data, *scale = in[1].data, *bias = in[2].data;
  const float *mean = in[3].data, *var = in[4].data;
  float *y = out->data;
  size_t channels = (size_t)in[0].dims[1], inner = 1;
  if (out->count == 0)
    return GS_OK;
  for (unsigned d = 2; d < in[0].rank; d++)
    inner *= (size_t)in[0].dims[d];
  size_t images = out->count / (channels * inner);
  for (size_t i = 0; i < images; i++)
    for (size_t c = 0; c < channels; c++) {
      float a = scale[c] / sqrtf(var[c] + n->p.epsilon);
      float b = bias[c] - mean[c] * a;
      size_t at = (i * channels + c) * inner;
      for (size_t k = 0; k < inner; k++)
        y[at + k] = x[at + k] * a + b;
    }
  return GS_OK;
}
