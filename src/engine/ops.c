/* The op set: for each op its arity, attributes, the types it runs (checked
 * at load) and how its output shape follows from its inputs (at plan). The
 * kernels that run them are in kernels_*.c. */
#include <stdio.h>
#include <string.h>

#include "engine/engine_int.h"

bool gs__count(const int64_t *dims, unsigned rank, size_t esize,
               size_t max_bytes, size_t *count) {
  size_t max_elems = max_bytes / (esize ? esize : 1), n = 1;
  bool zero = false;
  for (unsigned i = 0; i < rank; i++) {
    if (dims[i] < 0)
      return false;
    if (dims[i] == 0) {
      zero = true;
      continue;
    }
    if ((uint64_t)dims[i] > max_elems / n)
      return false;
    n *= (size_t)dims[i];
  }
  *count = zero ? 0 : n;
  return true;
}

const char *gs__dims_str(const int64_t *dims, unsigned rank, char *buf,
                         size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i <= rank && len < size; i++) {
    int n = i == rank ? snprintf(buf + len, size - len, "]")
                      : snprintf(buf + len, size - len, "%s%lld", i ? "," : "[",
                                 (long long)dims[i]);
    if (n < 0)
      break;
    len += (size_t)n;
  }
  if (rank == 0)
    snprintf(buf, size, "[]");
  return buf;
}

int gs__axis(int64_t axis, unsigned rank, unsigned extra) {
  int64_t hi = (int64_t)rank + extra;
  if (axis < -(int64_t)rank || axis >= hi)
    return -1;
  return (int)(axis < 0 ? axis + rank : axis);
}

/* Attribute readers: absent gives the default; a wrong type is an error. */

static const Onnx__AttributeProto *attr_get(const Onnx__NodeProto *np,
                                            const char *name) {
  for (size_t i = 0; i < np->n_attribute; i++)
    if (np->attribute[i]->name && strcmp(np->attribute[i]->name, name) == 0)
      return np->attribute[i];
  return NULL;
}

static bool attr_is(const Onnx__AttributeProto *a,
                    Onnx__AttributeProto__AttributeType type, bool has) {
  return a->has_type ? a->type == type : has;
}

static int attr_type_error(const gs__node_t *n, const char *name,
                           const char *type, gs_error_t *err) {
  char label[160];
  return gs_error_set(err, GS_EPARSE, "%s: attribute '%s' must be %s",
                      gs__node_label(n, label, sizeof label), name, type);
}

static int attr_int(const gs__node_t *n, const Onnx__NodeProto *np,
                    const char *name, int64_t def, int64_t *v,
                    gs_error_t *err) {
  const Onnx__AttributeProto *a = attr_get(np, name);
  *v = def;
  if (!a)
    return GS_OK;
  if (!attr_is(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, a->has_i))
    return attr_type_error(n, name, "an int", err);
  *v = a->i;
  return GS_OK;
}

static int attr_float(const gs__node_t *n, const Onnx__NodeProto *np,
                      const char *name, float def, float *v, gs_error_t *err) {
  const Onnx__AttributeProto *a = attr_get(np, name);
  *v = def;
  if (!a)
    return GS_OK;
  if (!attr_is(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, a->has_f))
    return attr_type_error(n, name, "a float", err);
  *v = a->f;
  return GS_OK;
}

static int attr_bool(const gs__node_t *n, const Onnx__NodeProto *np,
                     const char *name, bool *v, gs_error_t *err) {
  int64_t i;
  int rc = attr_int(n, np, name, 0, &i, err);
  if (rc == GS_OK && i != 0 && i != 1)
    return attr_type_error(n, name, "0 or 1", err);
  *v = i == 1;
  return rc;
}

const Onnx__AttributeProto *gs__attr_find(const Onnx__NodeProto *np,
                                          const char *name) {
  return attr_get(np, name);
}

int gs__attr_int(const gs__node_t *n, const Onnx__NodeProto *np,
                 const char *name, int64_t def, int64_t *v, gs_error_t *err) {
  return attr_int(n, np, name, def, v, err);
}

int gs__attr_float(const gs__node_t *n, const Onnx__NodeProto *np,
                   const char *name, float def, float *v, gs_error_t *err) {
  return attr_float(n, np, name, def, v, err);
}

/* The ops that move BYTES elements as they are (the rest refuse them). */
static bool moves_bytes(gs__op_code_t code) {
  return code == GS__OP_IDENTITY || code == GS__OP_RESHAPE ||
         code == GS__OP_FLATTEN || code == GS__OP_CAST;
}

/* Checks that every present input has one of the allowed types (a
 * GS_DTYPE_INVALID-ended list; NULL allows any but BYTES, which only the
 * ops of moves_bytes take) and that all agree. */
static int check_types(const gs__node_t *n, const gs_dtype_t *in,
                       unsigned n_check, const gs_dtype_t *allowed,
                       gs_error_t *err) {
  char label[160];
  for (unsigned k = 0; k < n_check && k < n->n_in; k++) {
    if (in[k] == GS_DTYPE_INVALID)
      continue;
    bool ok = !allowed && (in[k] != GS_DTYPE_BYTES || moves_bytes(n->op->code));
    for (const gs_dtype_t *t = allowed; t && *t; t++)
      ok = ok || *t == in[k];
    if (!ok)
      return gs_error_set(
          err, GS_EUNSUPPORTED, "%s: type %s is not supported for this op",
          gs__node_label(n, label, sizeof label), gs_dtype_name(in[k]));
    if (in[k] != in[0])
      return gs_error_set(err, GS_EPARSE, "%s: inputs have types %s and %s",
                          gs__node_label(n, label, sizeof label),
                          gs_dtype_name(in[0]), gs_dtype_name(in[k]));
  }
  return GS_OK;
}

int gs__check_types(const gs__node_t *n, const gs_dtype_t *in, unsigned n_check,
                    const gs_dtype_t *allowed, gs_error_t *err) {
  return check_types(n, in, n_check, allowed, err);
}

/* The elementwise ops' types as ONNX's schemas give them, by opset: the
 * arithmetic ops take 32/64-bit integers and floats, BF16 from opset 13,
 * 8/16-bit integers from 14; Relu takes floats, BF16 from 13, signed
 * integers from 14; Sigmoid and Tanh take floats, BF16 from 13. */
#define FLOATS GS_DTYPE_FP16, GS_DTYPE_FP32, GS_DTYPE_FP64
#define WIDE_INTS                                                              \
  GS_DTYPE_INT32, GS_DTYPE_INT64, GS_DTYPE_UINT32, GS_DTYPE_UINT64
#define NARROW_INTS                                                            \
  GS_DTYPE_INT8, GS_DTYPE_INT16, GS_DTYPE_UINT8, GS_DTYPE_UINT16
static const gs_dtype_t arith_types[3][13] = {
    {FLOATS, WIDE_INTS, GS_DTYPE_INVALID},
    {FLOATS, GS_DTYPE_BF16, WIDE_INTS, GS_DTYPE_INVALID},
    {FLOATS, GS_DTYPE_BF16, WIDE_INTS, NARROW_INTS, GS_DTYPE_INVALID}};
static const gs_dtype_t relu_types[3][9] = {
    {FLOATS, GS_DTYPE_INVALID},
    {FLOATS, GS_DTYPE_BF16, GS_DTYPE_INVALID},
    {FLOATS, GS_DTYPE_BF16, GS_DTYPE_INT8, GS_DTYPE_INT16, GS_DTYPE_INT32,
     GS_DTYPE_INT64, GS_DTYPE_INVALID}};
static const gs_dtype_t act_types[3][5] = {
    {FLOATS, GS_DTYPE_INVALID},
    {FLOATS, GS_DTYPE_BF16, GS_DTYPE_INVALID},
    {FLOATS, GS_DTYPE_BF16, GS_DTYPE_INVALID}};

static bool type_in(const gs_dtype_t *list, gs_dtype_t t) {
  for (; *list; list++)
    if (*list == t)
      return true;
  return false;
}

/* check_types against the list for the model's opset (13 and 14 are where
 * types were added); a type a later opset allows says so. */
static int check_opset_types(const gs__node_t *n, const gs_dtype_t *in,
                             unsigned n_check, int opset,
                             const gs_dtype_t *lists, size_t stride,
                             gs_error_t *err) {
  int i = opset >= 14 ? 2 : opset >= 13 ? 1 : 0;
  char label[160];
  for (int later = i + 1; later < 3; later++)
    for (unsigned k = 0; k < n_check && k < n->n_in; k++)
      if (in[k] != GS_DTYPE_INVALID && !type_in(lists + i * stride, in[k]) &&
          type_in(lists + later * stride, in[k]))
        return gs_error_set(err, GS_EUNSUPPORTED,
                            "%s: type %s needs opset %d (the model imports "
                            "%d)",
                            gs__node_label(n, label, sizeof label),
                            gs_dtype_name(in[k]), later == 1 ? 13 : 14, opset);
  return check_types(n, in, n_check, lists + i * stride, err);
}

static const gs_dtype_t float_types[] = {GS_DTYPE_FP32, GS_DTYPE_INVALID};

static int omitted_input(const gs__node_t *n, unsigned k, gs_error_t *err) {
  char label[160];
  return gs_error_set(err, GS_EPARSE, "%s: input %u may not be omitted",
                      gs__node_label(n, label, sizeof label), k);
}

int gs__omitted_input(const gs__node_t *n, unsigned k, gs_error_t *err) {
  return omitted_input(n, k, err);
}

static int check_binary(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                        const gs_dtype_t *in, gs_dtype_t *out,
                        gs_error_t *err) {
  (void)np;
  if (in[0] == GS_DTYPE_INVALID || in[1] == GS_DTYPE_INVALID)
    return omitted_input(n, in[0] == GS_DTYPE_INVALID ? 0 : 1, err);
  *out = in[0];
  return check_opset_types(n, in, 2, opset, arith_types[0],
                           sizeof arith_types[0] / sizeof(gs_dtype_t), err);
}

static int check_unary(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                       const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err) {
  (void)np;
  if (in[0] == GS_DTYPE_INVALID)
    return omitted_input(n, 0, err);
  *out = in[0];
  if (n->op->code == GS__OP_RELU)
    return check_opset_types(n, in, 1, opset, relu_types[0],
                             sizeof relu_types[0] / sizeof(gs_dtype_t), err);
  if (n->op->code == GS__OP_SOFTMAX)
    return check_types(n, in, 1, float_types, err);
  return check_opset_types(n, in, 1, opset, act_types[0],
                           sizeof act_types[0] / sizeof(gs_dtype_t), err);
}

static int check_softmax(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                         const gs_dtype_t *in, gs_dtype_t *out,
                         gs_error_t *err) {
  n->p.softmax_2d = opset < 13;
  int rc = attr_int(n, np, "axis", opset < 13 ? 1 : -1, &n->p.axis, err);
  return rc != GS_OK ? rc : check_unary(n, np, opset, in, out, err);
}

static int check_matmul(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                        const gs_dtype_t *in, gs_dtype_t *out,
                        gs_error_t *err) {
  (void)np, (void)opset;
  if (in[0] == GS_DTYPE_INVALID || in[1] == GS_DTYPE_INVALID)
    return omitted_input(n, in[0] == GS_DTYPE_INVALID ? 0 : 1, err);
  *out = in[0];
  return check_types(n, in, 2, float_types, err);
}

static int check_gemm(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                      const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err) {
  int rc;
  if ((rc = attr_float(n, np, "alpha", 1.0f, &n->p.alpha, err)) != GS_OK ||
      (rc = attr_float(n, np, "beta", 1.0f, &n->p.beta, err)) != GS_OK ||
      (rc = attr_bool(n, np, "transA", &n->p.trans_a, err)) != GS_OK ||
      (rc = attr_bool(n, np, "transB", &n->p.trans_b, err)) != GS_OK)
    return rc;
  if (opset < 11 && n->n_in < 3)
    return omitted_input(n, 2, err);
  rc = check_matmul(n, np, opset, in, out, err);
  return rc != GS_OK ? rc : check_types(n, in, 3, float_types, err);
}

static int check_any(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                     const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err) {
  (void)np, (void)opset;
  for (unsigned k = 0; k < n->n_in; k++)
    if (in[k] == GS_DTYPE_INVALID)
      return omitted_input(n, k, err);
  *out = in[0];
  return check_types(n, in, n->n_in, NULL, err);
}

static int check_reshape(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                         const gs_dtype_t *in, gs_dtype_t *out,
                         gs_error_t *err) {
  char label[160];
  int rc = attr_bool(n, np, "allowzero", &n->p.allowzero, err);
  if (rc != GS_OK)
    return rc;
  if (in[0] == GS_DTYPE_INVALID || in[1] == GS_DTYPE_INVALID)
    return omitted_input(n, in[0] == GS_DTYPE_INVALID ? 0 : 1, err);
  if (in[1] != GS_DTYPE_INT64)
    return gs_error_set(err, GS_EPARSE, "%s: the shape input is %s, not INT64",
                        gs__node_label(n, label, sizeof label),
                        gs_dtype_name(in[1]));
  (void)opset;
  *out = in[0];
  return GS_OK;
}

static int check_flatten(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                         const gs_dtype_t *in, gs_dtype_t *out,
                         gs_error_t *err) {
  int rc = attr_int(n, np, "axis", 1, &n->p.axis, err);
  return rc != GS_OK ? rc : check_any(n, np, opset, in, out, err);
}

static int check_concat(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                        const gs_dtype_t *in, gs_dtype_t *out,
                        gs_error_t *err) {
  char label[160];
  if (!attr_get(np, "axis"))
    return gs_error_set(err, GS_EPARSE, "%s: attribute 'axis' is required",
                        gs__node_label(n, label, sizeof label));
  int rc = attr_int(n, np, "axis", 0, &n->p.axis, err);
  return rc != GS_OK ? rc : check_any(n, np, opset, in, out, err);
}

static int check_transpose(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                           const gs_dtype_t *in, gs_dtype_t *out,
                           gs_error_t *err) {
  char label[160];
  const Onnx__AttributeProto *a = attr_get(np, "perm");
  if (a) {
    if (!attr_is(a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, a->n_ints))
      return attr_type_error(n, "perm", "a list of ints", err);
    if (a->n_ints > GS_TENSOR_MAX_RANK)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: perm has %zu entries, "
                          "over %d",
                          gs__node_label(n, label, sizeof label), a->n_ints,
                          GS_TENSOR_MAX_RANK);
    n->p.n_perm = (unsigned)a->n_ints;
    unsigned seen = 0;
    for (unsigned i = 0; i < n->p.n_perm; i++) {
      int64_t v = a->ints[i];
      if (v < 0 || v >= (int64_t)n->p.n_perm || (seen & (1u << v)))
        return gs_error_set(
            err, GS_EPARSE, "%s: perm is not a permutation of 0..%u",
            gs__node_label(n, label, sizeof label), n->p.n_perm - 1);
      seen |= 1u << v;
      n->p.perm[i] = v;
    }
  }
  return check_any(n, np, opset, in, out, err);
}

/* Shapes. */

static int shape_error(const gs__node_t *n, const gs__tensor_t *a,
                       const gs__tensor_t *b, const char *what,
                       gs_error_t *err) {
  char label[160], sa[128], sb[128];
  gs__dims_str(a->dims, a->rank, sa, sizeof sa);
  if (b)
    gs__dims_str(b->dims, b->rank, sb, sizeof sb);
  return gs_error_set(err, GS_EINVAL, "%s: %s %s%s%s",
                      gs__node_label(n, label, sizeof label), what, sa,
                      b ? " and " : "", b ? sb : "");
}

int gs__shape_error(const gs__node_t *n, const gs__tensor_t *a,
                    const gs__tensor_t *b, const char *what, gs_error_t *err) {
  return shape_error(n, a, b, what, err);
}

static int shape_same(const gs__node_t *n, const gs__tensor_t *in,
                      gs__tensor_t *out, gs_error_t *err) {
  (void)n, (void)err;
  out->rank = in[0].rank;
  memcpy(out->dims, in[0].dims, sizeof out->dims);
  return GS_OK;
}

static int shape_broadcast(const gs__node_t *n, const gs__tensor_t *in,
                           gs__tensor_t *out, gs_error_t *err) {
  const gs__tensor_t *a = &in[0], *b = &in[1];
  out->rank = a->rank > b->rank ? a->rank : b->rank;
  for (unsigned i = 0; i < out->rank; i++) {
    int64_t da = i < a->rank ? a->dims[a->rank - 1 - i] : 1;
    int64_t db = i < b->rank ? b->dims[b->rank - 1 - i] : 1;
    if (da != db && da != 1 && db != 1)
      return shape_error(n, a, b, "shapes do not broadcast:", err);
    out->dims[out->rank - 1 - i] = da == 1 ? db : da;
  }
  return GS_OK;
}

static int shape_softmax(const gs__node_t *n, const gs__tensor_t *in,
                         gs__tensor_t *out, gs_error_t *err) {
  if (in[0].rank == 0 || gs__axis(n->p.axis, in[0].rank, 0) < 0)
    return shape_error(n, &in[0], NULL, "axis is out of range for shape", err);
  return shape_same(n, in, out, err);
}

static int shape_matmul(const gs__node_t *n, const gs__tensor_t *in,
                        gs__tensor_t *out, gs_error_t *err) {
  const gs__tensor_t *a = &in[0], *b = &in[1];
  if (a->rank == 0 || b->rank == 0)
    return shape_error(n, a, b, "inputs must not be scalars:", err);
  int64_t k_a = a->dims[a->rank - 1];
  int64_t k_b = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
  if (k_a != k_b)
    return shape_error(n, a, b, "inner dimensions differ:", err);
  gs__tensor_t ba = *a, bb = *b;
  ba.rank = a->rank > 2 ? a->rank - 2 : 0;
  bb.rank = b->rank > 2 ? b->rank - 2 : 0;
  int rc = shape_broadcast(n, (gs__tensor_t[2]){ba, bb}, out, err);
  if (rc != GS_OK)
    return shape_error(n, a, b, "batch dimensions do not broadcast:", err);
  if (a->rank > 1)
    out->dims[out->rank++] = a->dims[a->rank - 2];
  if (b->rank > 1)
    out->dims[out->rank++] = b->dims[b->rank - 1];
  return GS_OK;
}

static int shape_gemm(const gs__node_t *n, const gs__tensor_t *in,
                      gs__tensor_t *out, gs_error_t *err) {
  const gs__tensor_t *a = &in[0], *b = &in[1], *c = &in[2];
  if (a->rank != 2 || b->rank != 2)
    return shape_error(n, a, b, "inputs must be matrices:", err);
  int64_t m = a->dims[n->p.trans_a ? 1 : 0], k = a->dims[n->p.trans_a ? 0 : 1];
  int64_t k_b = b->dims[n->p.trans_b ? 1 : 0];
  if (k != k_b)
    return shape_error(n, a, b, "inner dimensions differ:", err);
  out->rank = 2;
  out->dims[0] = m;
  out->dims[1] = b->dims[n->p.trans_b ? 0 : 1];
  if (n->n_in < 3 || c->dtype == GS_DTYPE_INVALID)
    return GS_OK;
  bool ok = c->rank <= 2;
  for (unsigned i = 0; ok && i < c->rank; i++) {
    int64_t d = c->dims[c->rank - 1 - i];
    ok = d == 1 || d == out->dims[1 - i];
  }
  return ok ? GS_OK
            : shape_error(n, c, out,
                          "C does not broadcast to the output:", err);
}

static int shape_reshape(const gs__node_t *n, const gs__tensor_t *in,
                         gs__tensor_t *out, gs_error_t *err) {
  const gs__tensor_t *s = &in[1];
  char label[160];
  gs__node_label(n, label, sizeof label);
  if (s->rank != 1 || s->count > GS_TENSOR_MAX_RANK || (s->count && !s->data))
    return gs_error_set(err, GS_EINVAL,
                        "%s: the shape input must be 1-D with "
                        "at most %d entries",
                        label, GS_TENSOR_MAX_RANK);
  const int64_t *want = s->data;
  int infer = -1;
  int64_t known = 1;
  out->rank = (unsigned)s->count;
  for (unsigned i = 0; i < out->rank; i++) {
    int64_t d = want[i];
    if (d == 0 && !n->p.allowzero)
      d = i < in[0].rank ? in[0].dims[i] : -2;
    if (d == -1 && infer < 0) {
      infer = (int)i;
      continue;
    }
    if (d < 0 || __builtin_mul_overflow(known, d, &known))
      return gs_error_set(err, GS_EINVAL, "%s: bad target dimension %lld",
                          label, (long long)want[i]);
    out->dims[i] = d;
  }
  if (infer >= 0) {
    if (known == 0 || in[0].count % (uint64_t)known != 0)
      return shape_error(n, &in[0], NULL, "cannot infer -1 when reshaping",
                         err);
    out->dims[infer] = (int64_t)(in[0].count / (uint64_t)known);
    known = (int64_t)in[0].count;
  }
  if ((uint64_t)known != in[0].count)
    return shape_error(n, &in[0], out, "cannot reshape", err);
  return GS_OK;
}

static int shape_flatten(const gs__node_t *n, const gs__tensor_t *in,
                         gs__tensor_t *out, gs_error_t *err) {
  int axis = gs__axis(n->p.axis, in[0].rank, 1);
  if (axis < 0)
    return shape_error(n, &in[0], NULL, "axis is out of range for shape", err);
  /* Parts of a planned input's shape: their products cannot overflow. */
  out->rank = 2;
  out->dims[0] = out->dims[1] = 1;
  for (unsigned d = 0; d < in[0].rank; d++)
    out->dims[d < (unsigned)axis ? 0 : 1] *= in[0].dims[d];
  return GS_OK;
}

static int shape_concat(const gs__node_t *n, const gs__tensor_t *in,
                        gs__tensor_t *out, gs_error_t *err) {
  int axis = gs__axis(n->p.axis, in[0].rank, 0);
  if (in[0].rank == 0 || axis < 0)
    return shape_error(n, &in[0], NULL, "axis is out of range for shape", err);
  *out = in[0];
  for (unsigned k = 1; k < n->n_in; k++) {
    bool ok = in[k].rank == in[0].rank;
    for (unsigned i = 0; ok && i < in[0].rank; i++)
      ok = (int)i == axis || in[k].dims[i] == in[0].dims[i];
    if (!ok)
      return shape_error(n, &in[0], &in[k], "cannot concatenate shapes", err);
    if (__builtin_add_overflow(out->dims[axis], in[k].dims[axis],
                               &out->dims[axis]))
      return shape_error(n, &in[0], &in[k], "cannot concatenate shapes", err);
  }
  return GS_OK;
}

static int shape_transpose(const gs__node_t *n, const gs__tensor_t *in,
                           gs__tensor_t *out, gs_error_t *err) {
  if (n->p.n_perm > 0 && n->p.n_perm != in[0].rank)
    return shape_error(n, &in[0], NULL, "perm does not match shape", err);
  out->rank = in[0].rank;
  for (unsigned i = 0; i < out->rank; i++)
    out->dims[i] = in[0].dims[n->p.n_perm ? n->p.perm[i] : out->rank - 1 - i];
  return GS_OK;
}

static const char *const no_attrs[] = {NULL};
static const char *const axis_attrs[] = {"axis", NULL};
static const char *const gemm_attrs[] = {"alpha", "beta", "transA", "transB",
                                         NULL};
static const char *const reshape_attrs[] = {"allowzero", NULL};
static const char *const perm_attrs[] = {"perm", NULL};

static const char *const conv_attrs[] = {
    "auto_pad", "dilations", "group", "kernel_shape", "pads", "strides", NULL};
static const char *const maxpool_attrs[] = {
    "auto_pad", "ceil_mode",     "dilations", "kernel_shape",
    "pads",     "storage_order", "strides",   NULL};
static const char *const avgpool_attrs[] = {
    "auto_pad",     "ceil_mode", "count_include_pad", "dilations",
    "kernel_shape", "pads",      "strides",           NULL};
static const char *const batchnorm_attrs[] = {"epsilon", "momentum", "spatial",
                                              "training_mode", NULL};
static const char *const clip_attrs[] = {"min", "max", NULL};
static const char *const cast_attrs[] = {"to", "saturate", NULL};

#define OP(name, code, min, max, attrs, data, check, shape, run)               \
  { #name, GS__OP_##code, min, max, attrs, data, check, shape, run, NULL }
#define OP_SCRATCH(name, code, min, max, attrs, check, shape, run, scratch)    \
  { #name, GS__OP_##code, min, max, attrs, -1, check, shape, run, scratch }

static const gs__op_t ops[] = {
    OP(MatMul, MATMUL, 2, 2, no_attrs, -1, check_matmul, shape_matmul,
       gs__run_matmul),
    OP(Gemm, GEMM, 2, 3, gemm_attrs, -1, check_gemm, shape_gemm, gs__run_gemm),
    OP(Add, ADD, 2, 2, no_attrs, -1, check_binary, shape_broadcast,
       gs__run_binary),
    OP(Sub, SUB, 2, 2, no_attrs, -1, check_binary, shape_broadcast,
       gs__run_binary),
    OP(Mul, MUL, 2, 2, no_attrs, -1, check_binary, shape_broadcast,
       gs__run_binary),
    OP(Div, DIV, 2, 2, no_attrs, -1, check_binary, shape_broadcast,
       gs__run_binary),
    OP(Relu, RELU, 1, 1, no_attrs, -1, check_unary, shape_same, gs__run_unary),
    OP(Sigmoid, SIGMOID, 1, 1, no_attrs, -1, check_unary, shape_same,
       gs__run_unary),
    OP(Tanh, TANH, 1, 1, no_attrs, -1, check_unary, shape_same, gs__run_unary),
    OP(Softmax, SOFTMAX, 1, 1, axis_attrs, -1, check_softmax, shape_softmax,
       gs__run_softmax),
    OP(Reshape, RESHAPE, 2, 2, reshape_attrs, 1, check_reshape, shape_reshape,
       gs__run_copy),
    OP(Flatten, FLATTEN, 1, 1, axis_attrs, -1, check_flatten, shape_flatten,
       gs__run_copy),
    OP(Identity, IDENTITY, 1, 1, no_attrs, -1, check_any, shape_same,
       gs__run_copy),
    OP(Concat, CONCAT, 1, 65535, axis_attrs, -1, check_concat, shape_concat,
       gs__run_concat),
    OP(Transpose, TRANSPOSE, 1, 1, perm_attrs, -1, check_transpose,
       shape_transpose, gs__run_transpose),
    OP_SCRATCH(Conv, CONV, 2, 3, conv_attrs, gs__check_conv, gs__shape_conv,
               gs__run_conv, gs__scratch_conv),
    OP(BatchNormalization, BATCHNORM, 5, 5, batchnorm_attrs, -1,
       gs__check_batchnorm, gs__shape_batchnorm, gs__run_batchnorm),
    OP(MaxPool, MAXPOOL, 1, 1, maxpool_attrs, -1, gs__check_pool,
       gs__shape_pool, gs__run_maxpool),
    OP(AveragePool, AVGPOOL, 1, 1, avgpool_attrs, -1, gs__check_pool,
       gs__shape_pool, gs__run_avgpool),
    OP(GlobalAveragePool, GLOBALAVGPOOL, 1, 1, no_attrs, -1,
       gs__check_globalpool, gs__shape_globalpool, gs__run_globalavgpool),
    OP(Clip, CLIP, 1, 3, clip_attrs, -1, gs__check_clip, gs__shape_clip,
       gs__run_clip),
    OP(Cast, CAST, 1, 1, cast_attrs, -1, gs__check_cast, shape_same,
       gs__run_cast),
};

#define N_OPS (sizeof ops / sizeof ops[0])

const gs__op_t *gs__op_find(const char *name) {
  for (size_t i = 0; name && i < N_OPS; i++)
    if (strcmp(ops[i].name, name) == 0)
      return &ops[i];
  return NULL;
}

const char *gs__op_list(void) {
  static const char list[] =
      "MatMul, Gemm, Add, Sub, Mul, Div, Relu, Sigmoid, Tanh, Softmax, "
      "Reshape, Flatten, Identity, Concat, Transpose, Conv, "
      "BatchNormalization, MaxPool, AveragePool, GlobalAveragePool, Clip, Cast";
  return list;
}

size_t gs_engine_op_count(void) {
  return N_OPS;
}

const char *gs_engine_op_name(size_t i) {
  return i < N_OPS ? ops[i].name : NULL;
}
