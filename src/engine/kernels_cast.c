/* Element conversions: BYTES elements (KServe's 4-byte length + bytes form),
 * FP16 and BF16 to and from float with rounding to nearest even, and the
 * Cast op between every engine type, numbers and decimal strings included. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

bool gs__bytes_valid(const void *data, size_t size, size_t count, size_t *bad) {
  const uint8_t *p = data;
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t len;
    if (size - at < 4) {
      *bad = i;
      return false;
    }
    memcpy(&len, p + at, 4);
    at += 4;
    if (len > size - at) {
      *bad = i;
      return false;
    }
    at += len;
  }
  *bad = count;
  return at == size;
}

/* IEEE binary16 to binary32, exact (subnormals, infinities, NaN). */
float gs__half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f,
           man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | man << 13;
  } else if (exp) {
    bits = sign | (exp + 112) << 23 | man << 13;
  } else if (man == 0) {
    bits = sign;
  } else { /* subnormal: normalize */
    int e = -1;
    do {
      man <<= 1;
      e++;
    } while (!(man & 0x400));
    bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t gs__float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) /* NaN: quiet, top payload bits kept */
    return (uint16_t)(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
  if (abs >= 0x477ff000u) /* 65520 and up round to infinity */
    return sign | 0x7c00;
  if (abs < 0x38800000u) { /* under 2^-14: a subnormal in units of 2^-24 */
    float a, r;
    memcpy(&a, &abs, sizeof a);
    r = a * 16777216.0f; /* exact: a power of two */
    uint32_t m = (uint32_t)r;
    float frac = r - (float)m;
    if (frac > 0.5f || (frac == 0.5f && (m & 1)))
      m++;
    return (uint16_t)(sign | m);
  }
  uint32_t h = ((abs >> 23) - 112) << 10 | (abs & 0x7fffff) >> 13;
  uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
    h++; /* a carry into the exponent is right */
  return (uint16_t)(sign | h);
}

float gs__bf16_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t gs__float_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fffu + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

/* Cast. Each element is read as one of three carriers (a signed integer,
 * an unsigned one, or a double, which holds every FP16, BF16, FP32 and FP64
 * value exactly) and written from it, so that a conversion rounds once as
 * C's does (ONNX Runtime's static_cast): floats to integers truncate toward
 * zero (saturating here, NaN to 0, where C leaves it undefined), integers
 * wrap, FP16 and BF16 round to nearest even from FP32. */
typedef enum { NUM_INT, NUM_UINT, NUM_FLOAT } num_kind_t;

typedef struct {
  num_kind_t kind;
  int64_t i;
  uint64_t u;
  double f;
} num_t;

static num_t num_load(gs_dtype_t t, const void *p, size_t k) {
  num_t v = {NUM_INT, 0, 0, 0.0};
  switch (t) {
#define INT_CASE(dt, T)                                                        \
  case GS_DTYPE_##dt:                                                          \
    v.i = ((const T *)p)[k];                                                   \
    break;
    INT_CASE(INT8, int8_t)
    INT_CASE(INT16, int16_t)
    INT_CASE(INT32, int32_t)
    INT_CASE(INT64, int64_t)
#undef INT_CASE
  case GS_DTYPE_BOOL:
    v.i = ((const uint8_t *)p)[k] != 0;
    break;
#define UINT_CASE(dt, T)                                                       \
  case GS_DTYPE_##dt:                                                          \
    v.kind = NUM_UINT, v.u = ((const T *)p)[k];                                \
    break;
    UINT_CASE(UINT8, uint8_t)
    UINT_CASE(UINT16, uint16_t)
    UINT_CASE(UINT32, uint32_t)
    UINT_CASE(UINT64, uint64_t)
#undef UINT_CASE
  case GS_DTYPE_FP16:
    v.kind = NUM_FLOAT, v.f = gs__half_to_float(((const uint16_t *)p)[k]);
    break;
  case GS_DTYPE_BF16:
    v.kind = NUM_FLOAT, v.f = gs__bf16_to_float(((const uint16_t *)p)[k]);
    break;
  case GS_DTYPE_FP32:
    v.kind = NUM_FLOAT, v.f = ((const float *)p)[k];
    break;
  default: /* FP64 */
    v.kind = NUM_FLOAT, v.f = ((const double *)p)[k];
    break;
  }
  return v;
}

/* A double truncated toward zero into a bits-wide integer's range,
 * saturating at its ends (NaN gives 0). */
static int64_t trunc_signed(double f, unsigned bits) {
  double lim = ldexp(1.0, (int)bits - 1);
  if (isnan(f))
    return 0;
  if (f <= -lim)
    return bits == 64 ? INT64_MIN : -(int64_t)lim;
  if (f >= lim)
    return bits == 64 ? INT64_MAX : (int64_t)lim - 1;
  return (int64_t)f;
}

static uint64_t trunc_unsigned(double f, unsigned bits) {
  double lim = ldexp(1.0, (int)bits);
  if (isnan(f) || f <= 0.0)
    return 0;
  if (f >= lim)
    return bits == 64 ? UINT64_MAX : (uint64_t)lim - 1;
  return (uint64_t)f;
}

/* The value as an integer of the target's width, bit pattern in the low
 * bits: integers wrap, floats truncate and saturate. */
static uint64_t num_bits(num_t v, bool is_signed, unsigned bits) {
  if (v.kind == NUM_INT)
    return (uint64_t)v.i;
  if (v.kind == NUM_UINT)
    return v.u;
  return is_signed ? (uint64_t)trunc_signed(v.f, bits)
                   : trunc_unsigned(v.f, bits);
}

static double num_double(num_t v) {
  return v.kind == NUM_INT    ? (double)v.i
         : v.kind == NUM_UINT ? (double)v.u
                              : v.f;
}

static float num_float(num_t v) {
  return v.kind == NUM_INT    ? (float)v.i
         : v.kind == NUM_UINT ? (float)v.u
                              : (float)v.f;
}

static void num_store(gs_dtype_t t, void *p, size_t k, num_t v) {
  switch (t) {
#define BITS_CASE(dt, T, sgn, bits)                                            \
  case GS_DTYPE_##dt:                                                          \
    ((T *)p)[k] = (T)num_bits(v, sgn, bits);                                   \
    break;
    BITS_CASE(INT8, uint8_t, true, 8)
    BITS_CASE(INT16, uint16_t, true, 16)
    BITS_CASE(INT32, uint32_t, true, 32)
    BITS_CASE(INT64, uint64_t, true, 64)
    BITS_CASE(UINT8, uint8_t, false, 8)
    BITS_CASE(UINT16, uint16_t, false, 16)
    BITS_CASE(UINT32, uint32_t, false, 32)
    BITS_CASE(UINT64, uint64_t, false, 64)
#undef BITS_CASE
  case GS_DTYPE_BOOL:
    ((uint8_t *)p)[k] = v.kind == NUM_INT    ? v.i != 0
                        : v.kind == NUM_UINT ? v.u != 0
                                             : v.f != 0.0;
    break;
  case GS_DTYPE_FP16:
    ((uint16_t *)p)[k] = gs__float_to_half(num_float(v));
    break;
  case GS_DTYPE_BF16:
    ((uint16_t *)p)[k] = gs__float_to_bf16(num_float(v));
    break;
  case GS_DTYPE_FP32:
    ((float *)p)[k] = num_float(v);
    break;
  default: /* FP64 */
    ((double *)p)[k] = num_double(v);
    break;
  }
}

/* A number as ONNX Runtime writes it: integers in decimal, floats with
 * "%.8g" (FP16, BF16 and FP32 through float), "NaN", "INF", "-INF". */
static int num_format(gs_dtype_t from, num_t v, char *buf) {
  if (v.kind == NUM_INT)
    return snprintf(buf, GS__NUM_STR_MAX, "%lld", (long long)v.i);
  if (v.kind == NUM_UINT)
    return snprintf(buf, GS__NUM_STR_MAX, "%llu", (unsigned long long)v.u);
  double f = from == GS_DTYPE_FP64 ? v.f : (double)(float)v.f;
  if (isnan(f))
    return snprintf(buf, GS__NUM_STR_MAX, "NaN");
  if (isinf(f))
    return snprintf(buf, GS__NUM_STR_MAX, f < 0 ? "-INF" : "INF");
  return snprintf(buf, GS__NUM_STR_MAX, "%.8g", f);
}

static bool is_float_type(gs_dtype_t t) {
  return t == GS_DTYPE_FP16 || t == GS_DTYPE_BF16 || t == GS_DTYPE_FP32 ||
         t == GS_DTYPE_FP64;
}

static bool is_signed_type(gs_dtype_t t) {
  return t == GS_DTYPE_INT8 || t == GS_DTYPE_INT16 || t == GS_DTYPE_INT32 ||
         t == GS_DTYPE_INT64;
}

/* s (len bytes, not NUL-ended) parsed for target t as ONNX Runtime does:
 * floats with std::stod (then rounded to the target), signed integers with
 * std::stoll, unsigned ones and BOOL with std::stoull (then wrapped):
 * leading space skipped, text after the number ignored, "INF" and "NaN" in
 * any case; false when no number starts it or it is out of range (ERANGE,
 * where those throw). */
static bool num_parse(gs_dtype_t t, const char *s, size_t len, num_t *v) {
  char small[128], *buf = len < sizeof small ? small : malloc(len + 1), *end;
  if (!buf)
    return false;
  memcpy(buf, s, len);
  buf[len] = '\0';
  errno = 0;
  if (is_float_type(t)) {
    v->kind = NUM_FLOAT;
    v->f = strtod(buf, &end);
  } else if (is_signed_type(t)) {
    v->kind = NUM_INT;
    v->i = strtoll(buf, &end, 10);
  } else {
    v->kind = NUM_UINT;
    v->u = strtoull(buf, &end, 10);
  }
  bool ok = end != buf && errno != ERANGE;
  if (buf != small)
    free(buf);
  return ok;
}

static int cast_from_bytes(const gs__node_t *n, const gs__tensor_t *in,
                           gs__tensor_t *out, gs_error_t *err) {
  const uint8_t *p = in[0].data;
  for (size_t k = 0; k < out->count; k++) {
    uint32_t len;
    memcpy(&len, p, 4);
    num_t v = {NUM_INT, 0, 0, 0.0};
    if (!num_parse(out->dtype, (const char *)p + 4, len, &v)) {
      char label[160];
      return gs_error_set(err, GS_EINVAL,
                          "%s: element %zu, '%.*s', is not a number "
                          "that fits %s",
                          gs__node_label(n, label, sizeof label), k,
                          (int)(len > 64 ? 64 : len), (const char *)p + 4,
                          gs_dtype_name(out->dtype));
    }
    num_store(out->dtype, out->data, k, v);
    p += 4 + len;
  }
  return GS_OK;
}

static void cast_to_bytes(const gs__tensor_t *in, gs__tensor_t *out) {
  uint8_t *p = out->data;
  char buf[GS__NUM_STR_MAX];
  for (size_t k = 0; k < out->count; k++) {
    int len =
        num_format(in[0].dtype, num_load(in[0].dtype, in[0].data, k), buf);
    uint32_t l = len < 0 ? 0 : (uint32_t)len;
    memcpy(p, &l, 4);
    memcpy(p + 4, buf, l);
    p += 4 + l;
  }
  out->bytes = (size_t)(p - (uint8_t *)out->data);
}

int gs__run_cast(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err) {
  gs_dtype_t from = in[0].dtype, to = out->dtype;
  if (from == GS_DTYPE_BYTES && to == GS_DTYPE_BYTES)
    return gs__run_copy(n, in, out, err);
  if (from == GS_DTYPE_BYTES)
    return cast_from_bytes(n, in, out, err);
  if (to == GS_DTYPE_BYTES) {
    cast_to_bytes(in, out); /* the session sized data for it */
    return GS_OK;
  }
  if (from == to)
    return gs__run_copy(n, in, out, err);
  for (size_t k = 0; k < out->count; k++)
    num_store(to, out->data, k, num_load(from, in[0].data, k));
  return GS_OK;
}

/* Cast-6 (numbers), 9 (STRING), 13 (BF16); FP8 (19) and 4-bit (21) types
 * are refused by name, and with them 'saturate', which concerns only FP8. */
int gs__check_cast(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err) {
  char label[160];
  int64_t to = 0;
  gs__node_label(n, label, sizeof label);
  if (!gs__attr_find(np, "to"))
    return gs_error_set(err, GS_EPARSE, "%s: attribute 'to' is required",
                        label);
  int rc = gs__attr_int(n, np, "to", 0, &to, err);
  if (rc != GS_OK)
    return rc;
  if (in[0] == GS_DTYPE_INVALID)
    return gs__omitted_input(n, 0, err);
  *out = to >= INT32_MIN && to <= INT32_MAX ? gs__dtype_from_onnx((int32_t)to)
                                            : GS_DTYPE_INVALID;
  static const char *const newer[] = {
      "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
      "UINT4",        "INT4",           "FLOAT4E2M1"}; /* types 17 to 23 */
  if (*out == GS_DTYPE_INVALID)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: casting to %s (%lld) is not supported", label,
                        to >= 17 && to <= 23 ? newer[to - 17]
                                             : gs__onnx_type_name((int32_t)to),
                        (long long)to);
  gs_dtype_t ends[2] = {in[0], *out};
  for (int k = 0; k < 2; k++) {
    if (ends[k] == GS_DTYPE_BYTES && opset < 9)
      return gs_error_set(err, GS_EPARSE,
                          "%s: STRING casts need opset 9 (the model "
                          "imports %d)",
                          label, opset);
    if (ends[k] == GS_DTYPE_BF16 && opset < 13)
      return gs_error_set(err, GS_EPARSE,
                          "%s: BFLOAT16 casts need opset 13 (the model "
                          "imports %d)",
                          label, opset);
  }
  return GS_OK;
}
