/* The CUDA provider's nodes: issuing each node's work on the session's
 * stream (at capture), convolutions the way cuda_conv.c chose at plan;
 * the pooling geometry the kernels take. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_session_int.h"

int gs__cuda_node_fail(const gs__node_t *n, const char *why, gs_error_t *err) {
  char label[160];
  return gs_error_set(err, GS_EUNSUPPORTED,
                      "%s: the cuda provider cannot run it: %s",
                      gs__node_label(n, label, sizeof label), why);
}

int gs__cuda_dnn_fail(gs__cuda_session_t *cs, const gs__node_t *n,
                      cudnnStatus_t s, const char *call, gs_error_t *err) {
  char label[160];
  return gs_error_set(err, GS_EDRIVER, "%s: %s failed: %s",
                      gs__node_label(n, label, sizeof label), call,
                      gs__cudnn_strerror(&cs->l->cudnn, s));
}

void *gs__cuda_dp(const gs__cuda_session_t *cs, int v) {
  return (void *)(uintptr_t)cs->ptr[v];
}

/* ---- issuing a node ------------------------------------------------------ */

static int binary(gs__cuda_session_t *cs, CUdeviceptr a, CUdeviceptr b,
                  CUdeviceptr y, long n, long amod, long bmod, int op, int act,
                  float lo, float hi, gs_error_t *err) {
  void *args[] = {&a, &b, &y, &n, &amod, &bmod, &op, &act, &lo, &hi};
  return gs__cuda_launch(cs, GS__K_BINARY, n, args, err);
}

/* y = op(x) over n elements: 0 relu, 1 clip, 2 sigmoid, 3 tanh. Clip's
 * bounds are lo and hi, or read on the device from lo_p / hi_p when those
 * are not 0 (bounds computed in the graph: a replay reads their new
 * values). */
static int unary(gs__cuda_session_t *cs, CUdeviceptr x, CUdeviceptr y, long n,
                 int op, float lo, float hi, CUdeviceptr lo_p, CUdeviceptr hi_p,
                 gs_error_t *err) {
  void *args[] = {&x, &y, &n, &op, &lo, &hi, &lo_p, &hi_p};
  return gs__cuda_launch(cs, GS__K_UNARY, n, args, err);
}

static int act_code(const gs__params_t *p) {
  return p->act == GS__ACT_RELU ? 1 : p->act == GS__ACT_CLIP ? 2 : 0;
}

static int issue_conv(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                      const gs__cuda_graph_t *g, size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__params_t *p = &n->p;
  const gs__cuda_conv_t *c = &g->conv[i];
  const gs__cudnn_t *d = &cs->l->cudnn;
  void *ws = (void *)(uintptr_t)(cs->act + g->dnn_ws_off);
  float one = 1.f, zero = 0.f, a2 = p->residual > 0 ? 1.f : 0.f;
  void *Y = gs__cuda_dp(cs, n->out);
  const void *Z = p->residual > 0 ? gs__cuda_dp(cs, n->in[p->residual]) : Y;
  const gs__tensor_t *y = &plan->shapes[n->out];
  cudnnStatus_t s;
  if (c->kind == GS__CONV_LT) {
    cublasStatus_t b = gs__cuda_conv_lt_run(cs, n, c, &c->lt_algo, c->lt_ws,
                                            cs->act + g->dnn_ws_off);
    char label[160];
    return b == CUBLAS_STATUS_SUCCESS
               ? GS_OK
               : gs_error_set(err, GS_EDRIVER, "%s: cublasLtMatmul failed: %s",
                              gs__node_label(n, label, sizeof label),
                              gs__cublas_strerror(&cs->l->cublas, b));
  }
  if (c->kind == GS__CONV_FUSED) {
    s = d->ConvolutionBiasActivationForward(
        cs->dnn, &one, c->x, gs__cuda_dp(cs, n->in[0]), c->w,
        gs__cuda_dp(cs, n->in[1]), c->c, c->algo, ws, c->ws, &a2, c->y, Z, c->b,
        gs__cuda_dp(cs, n->in[2]), c->a, c->y, Y);
    return s == CUDNN_STATUS_SUCCESS
               ? GS_OK
               : gs__cuda_dnn_fail(
                     cs, n, s, "cudnnConvolutionBiasActivationForward", err);
  }
  s = d->ConvolutionForward(cs->dnn, &one, c->x, gs__cuda_dp(cs, n->in[0]),
                            c->w, gs__cuda_dp(cs, n->in[1]), c->c, c->algo, ws,
                            c->ws, &zero, c->y, Y);
  if (s != CUDNN_STATUS_SUCCESS)
    return gs__cuda_dnn_fail(cs, n, s, "cudnnConvolutionForward", err);
  if (c->kind == GS__CONV_EPI)
    return gs__cuda_conv_epilogue(cs, n, y, err);
  /* GS__CONV_PLAIN: bias, residual and activation as elementwise ops. */
  long cnt = (long)y->count, k = (long)y->dims[1];
  int rc = GS_OK;
  bool has_bias = n->n_in > 2 && n->in[2] >= 0;
  int last_act = act_code(p);
  if (has_bias)
    rc = binary(cs, cs->ptr[n->out], cs->ptr[n->in[2]], cs->ptr[n->out], cnt,
                cnt, k, 0, p->residual > 0 ? 0 : last_act, p->act_min,
                p->act_max, err);
  if (rc == GS_OK && p->residual > 0)
    rc = binary(cs, cs->ptr[n->out], cs->ptr[n->in[p->residual]],
                cs->ptr[n->out], cnt, cnt, cnt, 0, last_act, p->act_min,
                p->act_max, err);
  else if (rc == GS_OK && !has_bias && last_act) {
    int op = last_act == 1 ? 0 : 1;
    CUdeviceptr yp = cs->ptr[n->out];
    rc = unary(cs, yp, yp, cnt, op, p->act_min, p->act_max, 0, 0, err);
  }
  return rc;
}

/* The kernels take the struct by value as cuda_kernels.cu's pool_geom. */
_Static_assert(sizeof(gs__cuda_pool_geom_t) == 17 * sizeof(int),
               "gs__cuda_pool_geom_t must match pool_geom in cuda_kernels.cu");

int gs__cuda_pool_geom(const gs__node_t *n, const gs__tensor_t *x,
                       const gs__tensor_t *y, gs__cuda_pool_geom_t *out,
                       gs_error_t *err) {
  const gs__params_t *p = &n->p;
  if (x->rank != 4 || y->rank != 4)
    return gs__cuda_node_fail(n, "its input is not 4-D", err);
  /* The pads and output size as the CPU provider resolves them. */
  gs__conv_geom_t g;
  int rc = gs__conv_geometry(n, x, NULL, &g, err);
  if (rc != GS_OK)
    return rc;
  if (g.n_spatial != 2 || g.out[0] != y->dims[2] || g.out[1] != y->dims[3])
    return gs__cuda_node_fail(n, "its window does not give the planned output",
                              err);
  *out = (gs__cuda_pool_geom_t){.n = (int)x->dims[0],
                                .h = (int)x->dims[2],
                                .w = (int)x->dims[3],
                                .c = (int)x->dims[1],
                                .oh = (int)y->dims[2],
                                .ow = (int)y->dims[3],
                                .kh = (int)g.kernel[0],
                                .kw = (int)g.kernel[1],
                                .sh = (int)g.strides[0],
                                .sw = (int)g.strides[1],
                                .ph = (int)g.pads[0],
                                .pw = (int)g.pads[1],
                                .dh = (int)g.dilations[0],
                                .dw = (int)g.dilations[1],
                                .count_include_pad = p->count_include_pad,
                                .ph_end = (int)g.pads[2],
                                .pw_end = (int)g.pads[3]};
  return GS_OK;
}

static int issue_pool(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                      size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__tensor_t *x = &plan->shapes[n->in[0]], *y = &plan->shapes[n->out];
  CUdeviceptr X = cs->ptr[n->in[0]], Y = cs->ptr[n->out];
  if (n->op->code == GS__OP_GLOBALAVGPOOL) {
    if (x->rank != 4)
      return gs__cuda_node_fail(n, "its input is not 4-D", err);
    int nb = (int)x->dims[0], hw = (int)(x->dims[2] * x->dims[3]),
        c = (int)x->dims[1];
    void *args[] = {&X, &Y, &nb, &hw, &c};
    return gs__cuda_launch(cs, GS__K_GAP, (long)nb * c, args, err);
  }
  /* The provider's own kernels for any padding (cuDNN's pooling takes
   * symmetric pads only): a thread per output (per 8 channels for FP16
   * MaxPool), taps outside the input skipped. */
  gs__cuda_pool_geom_t geom;
  int rc = gs__cuda_pool_geom(n, x, y, &geom, err);
  if (rc != GS_OK)
    return rc;
  void *args[] = {&X, &Y, &geom};
  if (n->op->code == GS__OP_MAXPOOL && cs->fp16 && geom.c % 8 == 0)
    return gs__cuda_launch(cs, GS__K_MAXPOOL8, (long)y->count / 8, args, err);
  return gs__cuda_launch(
      cs, n->op->code == GS__OP_MAXPOOL ? GS__K_MAXPOOL : GS__K_AVGPOOL,
      (long)y->count, args, err);
}

/* How often operand t repeats across y (trailing broadcasting), or 0. */
static long period(const gs__tensor_t *t, const gs__tensor_t *y, bool nhwc) {
  if (t->count == 1)
    return 1;
  if (t->count == y->count)
    return (long)y->count;
  if (nhwc)
    return 0;
  unsigned r = t->rank;
  while (r > 0 && t->dims[t->rank - r] == 1)
    r--;
  for (unsigned k = 1; k <= r; k++)
    if (r > y->rank || t->dims[t->rank - k] != y->dims[y->rank - k])
      return 0;
  return (long)t->count;
}

static int issue_binary(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                        size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__tensor_t *y = &plan->shapes[n->out];
  bool nhwc = cs->nhwc[n->out];
  /* On a feature map both operands must be in its layout (or scalars):
   * an NCHW tensor of the same size would line up element by element with
   * the wrong pixels. */
  for (unsigned k = 0; nhwc && k < 2; k++)
    if (!cs->nhwc[n->in[k]] && plan->shapes[n->in[k]].count != 1)
      return gs__cuda_node_fail(n,
                                "it mixes an NHWC feature map with a tensor in "
                                "the model's layout",
                                err);
  long amod = period(&plan->shapes[n->in[0]], y, nhwc);
  long bmod = period(&plan->shapes[n->in[1]], y, nhwc);
  if (!amod || !bmod)
    return gs__cuda_node_fail(n,
                              "its broadcasting is not trailing (or not "
                              "elementwise on a feature map)",
                              err);
  int op = n->op->code == GS__OP_ADD   ? 0
           : n->op->code == GS__OP_SUB ? 1
           : n->op->code == GS__OP_MUL ? 2
                                       : 3;
  if (y->dtype == GS_DTYPE_INT32) { /* Add, Sub, Mul (cuda_provider.c) */
    CUdeviceptr a = cs->ptr[n->in[0]], b = cs->ptr[n->in[1]],
                o = cs->ptr[n->out];
    long cnt = (long)y->count;
    void *args[] = {&a, &b, &o, &cnt, &amod, &bmod, &op};
    return gs__cuda_launch(cs, GS__K_BINARY_I32, cnt, args, err);
  }
  return binary(cs, cs->ptr[n->in[0]], cs->ptr[n->in[1]], cs->ptr[n->out],
                (long)y->count, amod, bmod, op, act_code(&n->p), n->p.act_min,
                n->p.act_max, err);
}

/* Clip's bound input k: absent (def), an FP32 scalar initializer (its
 * value into *val), or a tensor computed at run time (its address into
 * *dev). Shape inference has checked that a bound is a scalar. */
static int clip_bound(const gs__cuda_session_t *cs, const gs__node_t *n,
                      unsigned k, float def, float *val, CUdeviceptr *dev,
                      gs_error_t *err) {
  *val = def;
  *dev = 0;
  if (n->n_in <= k || n->in[k] < 0)
    return GS_OK;
  const gs__value_t *v = &cs->m->values[n->in[k]];
  if (v->kind != GS__VALUE_CONST) {
    *dev = cs->ptr[n->in[k]];
    return GS_OK;
  }
  if (v->constant.count != 1 || v->dtype != GS_DTYPE_FP32)
    return gs__cuda_node_fail(
        n, "a bound is an initializer but not an FP32 scalar", err);
  *val = *(const float *)v->constant.data;
  return GS_OK;
}

static int issue_unary(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                       size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  long cnt = (long)plan->shapes[n->out].count;
  CUdeviceptr X = cs->ptr[n->in[0]], Y = cs->ptr[n->out], lo_p = 0, hi_p = 0;
  float lo = -INFINITY, hi = INFINITY;
  int op, rc = GS_OK;
  switch (n->op->code) {
  case GS__OP_RELU:
    op = 0;
    break;
  case GS__OP_SIGMOID:
    op = 2;
    break;
  case GS__OP_TANH:
    op = 3;
    break;
  default:
    op = 1; /* Clip: attribute bounds (opset < 11, else +-inf), or inputs */
    rc = clip_bound(cs, n, 1, n->p.act_min, &lo, &lo_p, err);
    if (rc == GS_OK)
      rc = clip_bound(cs, n, 2, n->p.act_max, &hi, &hi_p, err);
  }
  return rc == GS_OK ? unary(cs, X, Y, cnt, op, lo, hi, lo_p, hi_p, err) : rc;
}

static int issue_copy(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                      size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__tensor_t *x = &plan->shapes[n->in[0]];
  if (cs->nhwc[n->in[0]] && !cs->nhwc[n->out] && x->rank == 4 &&
      x->dims[2] * x->dims[3] != 1)
    return gs__cuda_node_fail(
        n, "it reshapes an NHWC feature map larger than 1x1", err);
  const gs__tensor_t *y = &plan->shapes[n->out];
  size_t bytes = y->count * (cs->fp16 && y->dtype != GS_DTYPE_INT32 ? 2 : 4);
  if (cs->ptr[n->in[0]] == cs->ptr[n->out] || !bytes)
    return GS_OK;
  CUresult r = cs->l->cuda.MemcpyDtoDAsync(cs->ptr[n->out], cs->ptr[n->in[0]],
                                           bytes, cs->stream);
  return r == CUDA_SUCCESS ? GS_OK
                           : gs__cuda_fail(cs, r, "cuMemcpyDtoDAsync", err);
}

/* Gemm and MatMul: Y[M,N] = alpha A[M,K] B[K,N] (+ C, act), row-major, as
 * cuBLAS's column-major Y^T = B^T A^T. */
static int issue_gemm(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                      size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__params_t *p = &n->p;
  bool gemm = n->op->code == GS__OP_GEMM;
  const gs__tensor_t *a = &plan->shapes[n->in[0]], *y = &plan->shapes[n->out];
  const gs__tensor_t *b = &cs->m->values[n->in[1]].constant;
  bool ta = gemm && p->trans_a, tb = gemm && p->trans_b;
  int64_t K = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
  int64_t M = (int64_t)a->count / (K ? K : 1);
  if (gemm && a->rank != 2)
    return gs__cuda_node_fail(n, "A is not 2-D", err);
  if (gemm && n->n_in > 2 && n->in[2] >= 0 && p->beta != 1.f)
    return gs__cuda_node_fail(n, "beta is not 1", err);
  cudaDataType_t dt = cs->fp16 ? CUDA_R_16F : CUDA_R_32F;
  float alpha = gemm ? p->alpha : 1.f, beta = 0.f;
  cublasStatus_t s = cs->l->cublas.GemmEx(
      cs->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
      (int)N, (int)M, (int)K, &alpha, gs__cuda_dp(cs, n->in[1]), dt,
      (int)(tb ? K : N), gs__cuda_dp(cs, n->in[0]), dt, (int)(ta ? M : K),
      &beta, gs__cuda_dp(cs, n->out), dt, (int)N, CUBLAS_COMPUTE_32F,
      CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) {
    char label[160];
    return gs_error_set(err, GS_EDRIVER, "%s: cublasGemmEx failed: %s",
                        gs__node_label(n, label, sizeof label),
                        gs__cublas_strerror(&cs->l->cublas, s));
  }
  long cnt = (long)y->count;
  if (gemm && n->n_in > 2 && n->in[2] >= 0) {
    long cmod = period(&cs->m->values[n->in[2]].constant, y, false);
    if (!cmod)
      return gs__cuda_node_fail(n, "C does not broadcast as a trailing operand",
                                err);
    return binary(cs, cs->ptr[n->out], cs->ptr[n->in[2]], cs->ptr[n->out], cnt,
                  cnt, cmod, 0, act_code(p), p->act_min, p->act_max, err);
  }
  if (act_code(p)) {
    CUdeviceptr yp = cs->ptr[n->out];
    int op = act_code(p) == 1 ? 0 : 1;
    return unary(cs, yp, yp, cnt, op, p->act_min, p->act_max, 0, 0, err);
  }
  return GS_OK;
}

void gs__cuda_softmax_dims(const gs__node_t *n, const gs__tensor_t *x,
                           int *outer, int *len, int *inner) {
  unsigned a = (unsigned)gs__axis(n->p.axis, x->rank, 0);
  int64_t o = 1, l = 1, in = 1;
  for (unsigned d = 0; d < x->rank; d++) {
    if (d < a)
      o *= x->dims[d];
    else if (d == a || n->p.softmax_2d)
      l *= x->dims[d];
    else
      in *= x->dims[d];
  }
  *outer = (int)o;
  *len = (int)l;
  *inner = (int)in;
}

/* Softmax over len elements spaced inner apart, outer times: contiguous
 * rows (inner 1) a block of 256 threads per row; otherwise a thread per
 * (outer, inner) column, neighbouring threads on neighbouring columns. */
static int issue_softmax(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                         size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__tensor_t *x = &plan->shapes[n->in[0]];
  if (gs__axis(n->p.axis, x->rank, 0) < 0)
    return gs__cuda_node_fail(n, "its axis is out of range", err);
  int outer, len, inner;
  gs__cuda_softmax_dims(n, x, &outer, &len, &inner);
  CUdeviceptr X = cs->ptr[n->in[0]], Y = cs->ptr[n->out];
  void *args[] = {&X, &Y, &outer, &len, &inner};
  if (inner != 1)
    return gs__cuda_launch(cs, GS__K_SOFTMAX, (long)outer * inner, args, err);
  unsigned blocks = outer > 65535 ? 65535 : (unsigned)(outer ? outer : 1);
  CUresult r =
      cs->l->cuda.LaunchKernel(cs->fn[GS__K_SOFTMAX][cs->fp16], blocks, 1, 1,
                               256, 1, 1, 0, cs->stream, args, NULL);
  return r == CUDA_SUCCESS ? GS_OK
                           : gs__cuda_fail(cs, r, "cuLaunchKernel", err);
}

int gs__cuda_issue_node(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                        const gs__cuda_graph_t *g, size_t i, gs_error_t *err) {
  switch (cs->m->nodes[i].op->code) {
  case GS__OP_CONV:
    return issue_conv(cs, plan, g, i, err);
  case GS__OP_MAXPOOL:
  case GS__OP_AVGPOOL:
  case GS__OP_GLOBALAVGPOOL:
    return issue_pool(cs, plan, i, err);
  case GS__OP_ADD:
  case GS__OP_SUB:
  case GS__OP_MUL:
  case GS__OP_DIV:
    return issue_binary(cs, plan, i, err);
  case GS__OP_RELU:
  case GS__OP_CLIP:
  case GS__OP_SIGMOID:
  case GS__OP_TANH:
    return issue_unary(cs, plan, i, err);
  case GS__OP_GEMM:
  case GS__OP_MATMUL:
    return issue_gemm(cs, plan, i, err);
  case GS__OP_SOFTMAX:
    return issue_softmax(cs, plan, i, err);
  default:
    return issue_copy(cs, plan, i, err);
  }
}

/* Inputs up and converted, every node, outputs converted and down. */
