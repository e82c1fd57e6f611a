/* The CNN ops' half of the op set: Conv, BatchNormalization, MaxPool,
 * AveragePool, GlobalAveragePool and Clip attributes read at load, and the
 * one geometry rule (gs__conv_geometry) every provider sizes outputs by. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/engine_int.h"

/* Largest kernel, stride, dilation or pad accepted: keeps the geometry's
 * int64 arithmetic far from overflow. */
#define GEOM_MAX ((int64_t)1 << 31)

static const gs_dtype_t float_only[] = {GS_DTYPE_FP32, GS_DTYPE_INVALID};
static const gs_dtype_t maxpool_types[] = {GS_DTYPE_FP32, GS_DTYPE_UINT8,
                                           GS_DTYPE_INT8, GS_DTYPE_INVALID};
/* Clip: floats before opset 12, every number from 12, BF16 too from 13. */
static const gs_dtype_t clip_floats[] = {GS_DTYPE_FP16, GS_DTYPE_FP32,
                                         GS_DTYPE_FP64, GS_DTYPE_INVALID};
#define CLIP_NUMBERS                                                           \
  GS_DTYPE_FP16, GS_DTYPE_FP32, GS_DTYPE_FP64, GS_DTYPE_INT8, GS_DTYPE_INT16,  \
      GS_DTYPE_INT32, GS_DTYPE_INT64, GS_DTYPE_UINT8, GS_DTYPE_UINT16,         \
      GS_DTYPE_UINT32, GS_DTYPE_UINT64
static const gs_dtype_t clip_types[] = {CLIP_NUMBERS, GS_DTYPE_INVALID};
static const gs_dtype_t clip_types_13[] = {CLIP_NUMBERS, GS_DTYPE_BF16,
                                           GS_DTYPE_INVALID};

static int attr_error(const gs__node_t *n, int code, const char *name,
                      const char *what, gs_error_t *err) {
  char label[160];
  return gs_error_set(err, code, "%s: attribute '%s' %s",
                      gs__node_label(n, label, sizeof label), name, what);
}

/* A list attribute of count entries, each in [lo, GEOM_MAX]; count must
 * agree with the spatial rank the other lists gave (n->p.n_spatial; per is
 * 2 for pads, which list begins then ends). Absent leaves v alone. */
static int attr_dims(gs__node_t *n, const Onnx__NodeProto *np, const char *name,
                     unsigned per, int64_t lo, int64_t *v, gs_error_t *err) {
  const Onnx__AttributeProto *a = gs__attr_find(np, name);
  char what[96];
  if (!a)
    return GS_OK;
  if (a->has_type ? a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
                  : a->n_ints == 0)
    return attr_error(n, GS_EPARSE, name, "must be a list of ints", err);
  if (a->n_ints == 0 || a->n_ints % per || a->n_ints / per > GS__MAX_SPATIAL)
    return attr_error(n, GS_EUNSUPPORTED, name,
                      per == 2 ? "must have 2, 4 or 6 entries (1-D to 3-D)"
                               : "must have 1 to 3 entries (1-D to 3-D)",
                      err);
  unsigned dims = (unsigned)(a->n_ints / per);
  if (n->p.n_spatial && dims != n->p.n_spatial) {
    snprintf(what, sizeof what, "is for %u spatial dims, another for %u", dims,
             n->p.n_spatial);
    return attr_error(n, GS_EPARSE, name, what, err);
  }
  n->p.n_spatial = dims;
  for (size_t i = 0; i < a->n_ints; i++) {
    if (a->ints[i] < lo || a->ints[i] > GEOM_MAX) {
      snprintf(what, sizeof what, "has %lld; entries must be in %lld..%lld",
               (long long)a->ints[i], (long long)lo, (long long)GEOM_MAX);
      return attr_error(n, GS_EPARSE, name, what, err);
    }
    v[i] = a->ints[i];
  }
  return GS_OK;
}

static int attr_auto_pad(gs__node_t *n, const Onnx__NodeProto *np,
                         gs_error_t *err) {
  static const char *const names[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER",
                                      "VALID"};
  const Onnx__AttributeProto *a = gs__attr_find(np, "auto_pad");
  char what[160];
  n->p.auto_pad = GS__PAD_NOTSET;
  if (!a)
    return GS_OK;
  if (a->has_type ? a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING
                  : !a->has_s)
    return attr_error(n, GS_EPARSE, "auto_pad", "must be a string", err);
  for (unsigned i = 0; i < 4; i++)
    if (a->s.len == strlen(names[i]) &&
        memcmp(a->s.data, names[i], a->s.len) == 0) {
      n->p.auto_pad = (gs__auto_pad_t)i;
      return GS_OK;
    }
  /* s is not NUL-terminated: print at most 40 bytes of it. */
  snprintf(what, sizeof what,
           "value '%.*s' is not supported (NOTSET, SAME_UPPER, SAME_LOWER, "
           "VALID)",
           (int)(a->s.len < 40 ? a->s.len : 40),
           a->s.data ? (const char *)a->s.data : "");
  return attr_error(n, GS_EUNSUPPORTED, "auto_pad", what, err);
}

/* The attributes Conv and the pools share. */
static int read_window(gs__node_t *n, const Onnx__NodeProto *np,
                       gs_error_t *err) {
  gs__params_t *p = &n->p;
  int rc;
  for (unsigned i = 0; i < GS__MAX_SPATIAL; i++)
    p->strides[i] = p->dilations[i] = 1;
  p->n_spatial = 0;
  if ((rc = attr_dims(n, np, "kernel_shape", 1, 1, p->kernel, err)) != GS_OK ||
      (rc = attr_dims(n, np, "strides", 1, 1, p->strides, err)) != GS_OK ||
      (rc = attr_dims(n, np, "dilations", 1, 1, p->dilations, err)) != GS_OK)
    return rc;
  /* pads is [begin..., end...], the layout gs__params_t keeps. */
  if ((rc = attr_dims(n, np, "pads", 2, 0, p->pads, err)) != GS_OK)
    return rc;
  return attr_auto_pad(n, np, err);
}

int gs__check_conv(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err) {
  (void)opset;
  int rc = read_window(n, np, err);
  if (rc == GS_OK)
    rc = gs__attr_int(n, np, "group", 1, &n->p.group, err);
  if (rc != GS_OK)
    return rc;
  if (n->p.group < 1 || n->p.group > GEOM_MAX)
    return attr_error(n, GS_EPARSE, "group", "must be at least 1", err);
  if (in[0] == GS_DTYPE_INVALID || in[1] == GS_DTYPE_INVALID)
    return gs__omitted_input(n, in[0] == GS_DTYPE_INVALID ? 0 : 1, err);
  *out = in[0];
  return gs__check_types(n, in, 3, float_only, err);
}

int gs__check_pool(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err) {
  int64_t ceil_mode = 0, include = 0, order = 0;
  (void)opset;
  int rc = read_window(n, np, err);
  if (rc == GS_OK)
    rc = gs__attr_int(n, np, "ceil_mode", 0, &ceil_mode, err);
  if (rc == GS_OK)
    rc = gs__attr_int(n, np, "count_include_pad", 0, &include, err);
  if (rc == GS_OK)
    rc = gs__attr_int(n, np, "storage_order", 0, &order, err);
  if (rc != GS_OK)
    return rc;
  if (ceil_mode != 0 && ceil_mode != 1)
    return attr_error(n, GS_EPARSE, "ceil_mode", "must be 0 or 1", err);
  if (include != 0 && include != 1)
    return attr_error(n, GS_EPARSE, "count_include_pad", "must be 0 or 1", err);
  if (order != 0 && order != 1) /* it orders only the Indices output */
    return attr_error(n, GS_EPARSE, "storage_order", "must be 0 or 1", err);
  if (!gs__attr_find(np, "kernel_shape"))
    return attr_error(n, GS_EPARSE, "kernel_shape", "is required", err);
  n->p.ceil_mode = ceil_mode == 1;
  n->p.count_include_pad = include == 1;
  *out = in[0];
  return gs__check_types(
      n, in, 1, n->op->code == GS__OP_MAXPOOL ? maxpool_types : float_only,
      err);
}

int gs__check_globalpool(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                         const gs_dtype_t *in, gs_dtype_t *out,
                         gs_error_t *err) {
  (void)np, (void)opset;
  *out = in[0];
  return gs__check_types(n, in, 1, float_only, err);
}

int gs__check_batchnorm(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                        const gs_dtype_t *in, gs_dtype_t *out,
                        gs_error_t *err) {
  int64_t training = 0, spatial = 1;
  float momentum;
  int rc = gs__attr_float(n, np, "epsilon", 1e-5f, &n->p.epsilon, err);
  if (rc == GS_OK)
    rc = gs__attr_float(n, np, "momentum", 0.9f, &momentum, err);
  if (rc == GS_OK)
    rc = gs__attr_int(n, np, "training_mode", 0, &training, err);
  if (rc == GS_OK)
    rc = gs__attr_int(n, np, "spatial", 1, &spatial, err);
  if (rc != GS_OK)
    return rc;
  if (training != 0)
    return attr_error(n, GS_EUNSUPPORTED, "training_mode",
                      "is not supported (inference only)", err);
  if (spatial != 1 && opset < 9)
    return attr_error(n, GS_EUNSUPPORTED, "spatial",
                      "0 is not supported (per-element statistics)", err);
  for (unsigned k = 0; k < 5; k++)
    if (in[k] == GS_DTYPE_INVALID)
      return gs__omitted_input(n, k, err);
  *out = in[0];
  return gs__check_types(n, in, 5, float_only, err);
}

int gs__check_clip(gs__node_t *n, const Onnx__NodeProto *np, int opset,
                   const gs_dtype_t *in, gs_dtype_t *out, gs_error_t *err) {
  char label[160];
  int rc = gs__attr_float(n, np, "min", -FLT_MAX, &n->p.act_min, err);
  if (rc == GS_OK)
    rc = gs__attr_float(n, np, "max", FLT_MAX, &n->p.act_max, err);
  if (rc != GS_OK)
    return rc;
  if (opset >= 11 && (gs__attr_find(np, "min") || gs__attr_find(np, "max")))
    return attr_error(n, GS_EPARSE, gs__attr_find(np, "min") ? "min" : "max",
                      "is an input from opset 11 on", err);
  if (opset >= 11) { /* an omitted bound input is no bound */
    n->p.act_min = -INFINITY;
    n->p.act_max = INFINITY;
  }
  if (opset < 11 && n->n_in > 1)
    return gs_error_set(err, GS_EPARSE,
                        "%s has %u inputs; before opset 11 Clip takes 1",
                        gs__node_label(n, label, sizeof label), n->n_in);
  if (in[0] == GS_DTYPE_INVALID)
    return gs__omitted_input(n, 0, err);
  *out = in[0];
  return gs__check_types(n, in, 3,
                         opset < 12   ? clip_floats
                         : opset < 13 ? clip_types
                                      : clip_types_13,
                         err);
}

/* Geometry. */

static int geom_error(const gs__node_t *n, const char *what,
                      const gs__tensor_t *x, const gs__tensor_t *w,
                      gs_error_t *err) {
  char label[160], sx[128], sw[128];
  gs__dims_str(x->dims, x->rank, sx, sizeof sx);
  if (w)
    gs__dims_str(w->dims, w->rank, sw, sizeof sw);
  return gs_error_set(err, GS_EINVAL, "%s: %s (input X %s%s%s)",
                      gs__node_label(n, label, sizeof label), what, sx,
                      w ? ", W " : "", w ? sw : "");
}

/* Output length and pads applied along one spatial dim. */
static bool geom_dim(const gs__params_t *p, unsigned i, gs__conv_geom_t *g) {
  unsigned k = g->n_spatial;
  int64_t in = g->in[i], s = g->strides[i];
  int64_t eff = g->dilations[i] * (g->kernel[i] - 1) + 1;
  int64_t *pb = &g->pads[i], *pe = &g->pads[k + i];
  switch (p->auto_pad) {
  case GS__PAD_SAME_UPPER:
  case GS__PAD_SAME_LOWER: {
    int64_t out = (in + s - 1) / s;
    int64_t total = (out - 1) * s + eff - in;
    if (total < 0)
      total = 0;
    *pb = p->auto_pad == GS__PAD_SAME_UPPER ? total / 2 : total - total / 2;
    *pe = total - *pb;
    g->out[i] = out;
    return out >= 1;
  }
  case GS__PAD_VALID:
    *pb = *pe = 0;
    break;
  case GS__PAD_NOTSET:
    *pb = p->pads[i];
    *pe = p->pads[p->n_spatial + i];
    break;
  }
  int64_t span = in + *pb + *pe - eff;
  if (span < 0)
    return false;
  int64_t out = (p->ceil_mode ? span + s - 1 : span) / s + 1;
  /* ceil_mode: the last window must start inside the input or its left
   * padding (PyTorch's and ONNX Runtime's rule). */
  if (p->ceil_mode && (out - 1) * s >= in + *pb)
    out--;
  g->out[i] = out;
  return true;
}

int gs__conv_geometry(const gs__node_t *n, const gs__tensor_t *x,
                      const gs__tensor_t *w, gs__conv_geom_t *g,
                      gs_error_t *err) {
  const gs__params_t *p = &n->p;
  char what[160];
  memset(g, 0, sizeof *g);
  if (x->rank < 3 || x->rank > 2 + GS__MAX_SPATIAL)
    return geom_error(n, "X must have 1 to 3 spatial dims (rank 3 to 5)", x,
                      NULL, err);
  unsigned k = x->rank - 2;
  if (p->n_spatial && p->n_spatial != k) {
    snprintf(what, sizeof what,
             "the attributes are for %u spatial dims, X has %u", p->n_spatial,
             k);
    return geom_error(n, what, x, w, err);
  }
  g->n_spatial = k;
  g->batch = x->dims[0];
  g->in_channels = g->out_channels = x->dims[1];
  g->group = 1;
  for (unsigned i = 0; i < k; i++) {
    g->in[i] = x->dims[2 + i];
    g->kernel[i] = p->kernel[i];
    g->strides[i] = p->strides[i];
    g->dilations[i] = p->dilations[i];
  }
  if (w) {
    if (w->rank != x->rank)
      return geom_error(n, "W's rank differs from X's", x, w, err);
    g->group = p->group;
    g->out_channels = w->dims[0];
    if (w->dims[1] * p->group != x->dims[1] || w->dims[0] % p->group) {
      snprintf(what, sizeof what,
               "group %lld does not split X's %lld channels into W's %lld "
               "per group and W's %lld filters evenly",
               (long long)p->group, (long long)x->dims[1],
               (long long)w->dims[1], (long long)w->dims[0]);
      return geom_error(n, what, x, w, err);
    }
    for (unsigned i = 0; i < k; i++) {
      if (p->kernel[i] && p->kernel[i] != w->dims[2 + i]) /* given */
        return geom_error(n, "kernel_shape disagrees with W's shape", x, w,
                          err);
      if (w->dims[2 + i] < 1 || w->dims[2 + i] > GEOM_MAX)
        return geom_error(n, "W has an empty or oversized kernel", x, w, err);
      g->kernel[i] = w->dims[2 + i];
    }
  }
  for (unsigned i = 0; i < k; i++)
    if (!geom_dim(p, i, g)) {
      snprintf(what, sizeof what,
               "the kernel (dilated) is larger than the padded input along "
               "spatial dim %u",
               i);
      return geom_error(n, what, x, w, err);
    }
  return GS_OK;
}

/* Shapes. */

static void geom_out(const gs__conv_geom_t *g, gs__tensor_t *out) {
  out->rank = g->n_spatial + 2;
  out->dims[0] = g->batch;
  out->dims[1] = g->out_channels;
  for (unsigned i = 0; i < g->n_spatial; i++)
    out->dims[2 + i] = g->out[i];
}

/* The same dims once leading 1s are dropped (the same memory layout). */
static bool same_layout(const gs__tensor_t *a, const gs__tensor_t *b) {
  unsigned i = 0, j = 0;
  while (i < a->rank && a->dims[i] == 1)
    i++;
  while (j < b->rank && b->dims[j] == 1)
    j++;
  if (a->rank - i != b->rank - j)
    return false;
  return memcmp(a->dims + i, b->dims + j, (a->rank - i) * sizeof *a->dims) == 0;
}

int gs__shape_conv(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err) {
  gs__conv_geom_t g;
  int rc = gs__conv_geometry(n, &in[0], &in[1], &g, err);
  if (rc != GS_OK)
    return rc;
  geom_out(&g, out);
  const gs__tensor_t *b = n->n_in > 2 ? &in[2] : NULL;
  if (b && b->dtype != GS_DTYPE_INVALID &&
      (b->rank != 1 || b->dims[0] != g.out_channels))
    return gs__shape_error(n, b, &in[1],
                           "B must be 1-D, one per filter of W:", err);
  if (n->p.residual > 0) {
    const gs__tensor_t *z = &in[n->p.residual];
    if (out->rank < z->rank || !same_layout(z, out))
      return gs__shape_error(n, z, out,
                             "the fused Add's other operand does not have "
                             "the conv output's shape:",
                             err);
  }
  return GS_OK;
}

int gs__shape_pool(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err) {
  gs__conv_geom_t g;
  int rc = gs__conv_geometry(n, &in[0], NULL, &g, err);
  if (rc == GS_OK)
    geom_out(&g, out);
  return rc;
}

int gs__shape_globalpool(const gs__node_t *n, const gs__tensor_t *in,
                         gs__tensor_t *out, gs_error_t *err) {
  if (in[0].rank < 3)
    return gs__shape_error(n, &in[0], NULL,
                           "X must have spatial dims (rank 3 or more):", err);
  *out = in[0];
  for (unsigned i = 2; i < out->rank; i++)
    out->dims[i] = 1;
  return GS_OK;
}

int gs__shape_batchnorm(const gs__node_t *n, const gs__tensor_t *in,
                        gs__tensor_t *out, gs_error_t *err) {
  if (in[0].rank < 2)
    return gs__shape_error(n, &in[0], NULL,
                           "X must have channels (rank >= 2):", err);
  for (unsigned k = 1; k < 5; k++)
    if (in[k].rank != 1 || in[k].dims[0] != in[0].dims[1])
      return gs__shape_error(n, &in[k], &in[0],
                             "scale, B, mean and var must be 1-D, one per "
                             "channel of X:",
                             err);
  out->rank = in[0].rank;
  memcpy(out->dims, in[0].dims, sizeof out->dims);
  return GS_OK;
}

int gs__shape_clip(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err) {
  for (unsigned k = 1; k < n->n_in; k++)
    if (in[k].dtype != GS_DTYPE_INVALID && in[k].count != 1)
      return gs__shape_error(
          n, &in[k], NULL,
          k == 1 ? "min must be a scalar:" : "max must be a scalar:", err);
  out->rank = in[0].rank;
  memcpy(out->dims, in[0].dims, sizeof out->dims);
  return GS_OK;
}
