/* The CUDA provider's convolutions at plan: for each conv and shape set,
 * the fastest of cuDNN's fused call, cudnnConvolutionForward then the
 * provider's epilogue kernel, and (1x1 convs) a cuBLASLt matmul, timed on
 * the real buffers once per process (cuda_conv_cache.c); and what was
 * chosen, for profiles. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_session_int.h"

/* ---- conv and pool geometry ------------------------------------------------
 */

/* A conv's begin pads along spatial dim d, checking that symmetric padding
 * (all cuDNN's convolution takes) gives the planned output size. */
static int begin_pad(const gs__node_t *n, unsigned d, int64_t in, int64_t out,
                     int64_t *pad, gs_error_t *err) {
  const gs__params_t *p = &n->p;
  int64_t k = p->kernel[d], s = p->strides[d] ? p->strides[d] : 1;
  int64_t dil = p->dilations[d] ? p->dilations[d] : 1;
  int64_t span = (k - 1) * dil + 1;
  if (p->auto_pad == GS__PAD_NOTSET) {
    *pad = p->pads[d];
  } else if (p->auto_pad == GS__PAD_VALID) {
    *pad = 0;
  } else {
    int64_t total = (out - 1) * s + span - in;
    total = total > 0 ? total : 0;
    *pad = p->auto_pad == GS__PAD_SAME_UPPER ? total / 2 : (total + 1) / 2;
  }
  int64_t sym = (in + 2 * *pad - span) / s + 1;
  if (sym != out)
    return gs__cuda_node_fail(n, "its padding is not symmetric", err);
  return GS_OK;
}

cublasStatus_t gs__cuda_conv_lt_run(gs__cuda_session_t *cs, const gs__node_t *n,
                                    const gs__cuda_conv_t *c,
                                    const cublasLtMatmulAlgo_t *algo,
                                    size_t ws_bytes, CUdeviceptr ws) {
  float one = 1.f, beta = n->p.residual > 0 ? 1.f : 0.f;
  void *Y = gs__cuda_dp(cs, n->out);
  const void *Z = n->p.residual > 0 ? gs__cuda_dp(cs, n->in[n->p.residual]) : Y;
  return cs->l->cublaslt.Matmul(cs->lt, c->md, &one, gs__cuda_dp(cs, n->in[1]),
                                c->la, gs__cuda_dp(cs, n->in[0]), c->lb, &beta,
                                Z, c->lc, Y, c->lc, algo, (void *)(uintptr_t)ws,
                                ws_bytes, cs->stream);
}

int gs__cuda_conv_epilogue(gs__cuda_session_t *cs, const gs__node_t *n,
                           const gs__tensor_t *y, gs_error_t *err) {
  const gs__params_t *p = &n->p;
  CUdeviceptr Y = cs->ptr[n->out];
  CUdeviceptr B = n->n_in > 2 && n->in[2] >= 0 ? cs->ptr[n->in[2]] : 0;
  CUdeviceptr Z = p->residual > 0 ? cs->ptr[n->in[p->residual]] : 0;
  int a = p->act == GS__ACT_RELU ? 1 : p->act == GS__ACT_CLIP ? 2 : 0;
  if (!B && !Z && !a)
    return GS_OK; /* nothing to add or apply */
  int cnt = (int)y->count, ch = (int)y->dims[1], width = cs->fp16 ? 8 : 4;
  float lo = p->act_min, hi = p->act_max;
  /* 16 bytes a thread when a vector stays inside one pixel's channels and
   * every operand is 16-byte aligned (the arena and weights are 256). */
  bool vec = ch > 0 && ch % width == 0 && ((Y | B | Z) & 15) == 0;
  int len = vec ? cnt / width : cnt;
  void *args[] = {&Y, &B, &Z, &len, &ch, &a, &lo, &hi};
  return gs__cuda_launch(cs, vec ? GS__K_CONV_EPI_VEC : GS__K_CONV_EPI, len,
                         args, err);
}

/* One call of a candidate: FUSED or EPI with cuDNN's algorithm perf
 * (its math type set on c->c by the caller), LT with cuBLASLt's heur. */
typedef struct {
  int kind;
  const cudnnConvolutionFwdAlgoPerf_t *perf;
  const cublasLtMatmulHeuristicResult_t *heur;
} cand_t;

static bool cand_run(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                     const gs__cuda_graph_t *g, size_t i, const cand_t *k) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__cuda_conv_t *c = &g->conv[i];
  const gs__cudnn_t *d = &cs->l->cudnn;
  CUdeviceptr ws = cs->act + g->dnn_ws_off;
  float one = 1.f, zero = 0.f;
  if (k->kind == GS__CONV_LT)
    return gs__cuda_conv_lt_run(cs, n, c, &k->heur->algo,
                                k->heur->workspaceSize,
                                ws) == CUBLAS_STATUS_SUCCESS;
  void *X = gs__cuda_dp(cs, n->in[0]), *W = gs__cuda_dp(cs, n->in[1]),
       *Y = gs__cuda_dp(cs, n->out);
  if (k->kind == GS__CONV_FUSED)
    return d->ConvolutionBiasActivationForward(
               cs->dnn, &one, c->x, X, c->w, W, c->c, k->perf->algo,
               (void *)(uintptr_t)ws, k->perf->memory, &zero, c->y, Y, c->b,
               gs__cuda_dp(cs, n->in[2]), c->a, c->y,
               Y) == CUDNN_STATUS_SUCCESS;
  gs_error_t err = {0};
  return d->ConvolutionForward(cs->dnn, &one, c->x, X, c->w, W, c->c,
                               k->perf->algo, (void *)(uintptr_t)ws,
                               k->perf->memory, &zero, c->y,
                               Y) == CUDNN_STATUS_SUCCESS &&
         gs__cuda_conv_epilogue(cs, n, &plan->shapes[n->out], &err) == GS_OK;
}

/* A candidate's time: GS__TIME_REPS calls in groups of four, the first of
 * each a warm-up, the fastest group's three timed calls (INFINITY when no
 * group could be timed). *ok: every call was taken. */
static float cand_time(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                       const gs__cuda_graph_t *g, size_t i, const cand_t *k,
                       bool *ok) {
  const gs__cuda_t *cu = &cs->l->cuda;
  float ms = INFINITY;
  bool started = false;
  *ok = true;
  for (int rep = 0; rep < GS__TIME_REPS; rep++) {
    if (rep % 4 == 1)
      started = !cu->EventRecord(cs->ev[0], cs->stream);
    if (!cand_run(cs, plan, g, i, k)) {
      *ok = false;
      return INFINITY;
    }
    float t = INFINITY;
    if (rep % 4 == 3 && started && !cu->EventRecord(cs->ev[1], cs->stream) &&
        !cu->EventSynchronize(cs->ev[1]) &&
        !cu->EventElapsedTime(&t, cs->ev[0], cs->ev[1]))
      ms = fminf(ms, t);
  }
  return ms;
}

/* A 1x1, stride-1, unpadded, ungrouped conv with a bias in NHWC is the
 * matmul Y[P,K] = X[P,C] W[K,C]^T (P = N*H*W); in cuBLASLt's column-major
 * terms D[K,P] = W^T' X', the bias per row of D, the residual as C. Its
 * descriptors into c (c->md stays NULL when the conv is not such). */
static int lt_describe(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                       gs__cuda_graph_t *g, size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__params_t *p = &n->p;
  const gs__cublaslt_t *lt = &cs->l->cublaslt;
  gs__cuda_conv_t *c = &g->conv[i];
  const gs__tensor_t *x = &plan->shapes[n->in[0]];
  const gs__tensor_t *w = &cs->m->values[n->in[1]].constant;
  bool eligible = w->dims[2] == 1 && w->dims[3] == 1 && p->group <= 1 &&
                  n->n_in > 2 && n->in[2] >= 0 &&
                  (p->act == GS__ACT_NONE || p->act == GS__ACT_RELU) &&
                  !cs->cpad[n->in[0]];
  for (unsigned k = 0; eligible && k < 2; k++)
    eligible = (p->strides[k] ? p->strides[k] : 1) == 1 && p->pads[k] == 0 &&
               p->pads[2 + k] == 0 && p->auto_pad != GS__PAD_SAME_LOWER &&
               p->auto_pad != GS__PAD_SAME_UPPER;
  if (!eligible)
    return GS_OK;
  uint64_t K = (uint64_t)w->dims[0], C = (uint64_t)w->dims[1];
  uint64_t P = (uint64_t)(x->dims[0] * x->dims[2] * x->dims[3]);
  cudaDataType_t dt = cs->fp16 ? CUDA_R_16F : CUDA_R_32F;
  int ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  int epi = p->act == GS__ACT_RELU ? CUBLASLT_EPILOGUE_RELU_BIAS
                                   : CUBLASLT_EPILOGUE_BIAS;
  void *bias = gs__cuda_dp(cs, n->in[2]);
  cublasStatus_t b;
  if ((b = lt->MatmulDescCreate(&c->md, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ||
      (b = lt->MatmulDescSetAttribute(c->md, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
                                      sizeof ta)) ||
      (b = lt->MatmulDescSetAttribute(c->md, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
                                      sizeof tb)) ||
      (b = lt->MatmulDescSetAttribute(c->md, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                      &epi, sizeof epi)) ||
      (b = lt->MatmulDescSetAttribute(c->md, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                      &bias, sizeof bias)) ||
      (b = lt->MatrixLayoutCreate(&c->la, dt, C, K, (int64_t)C)) ||
      (b = lt->MatrixLayoutCreate(&c->lb, dt, C, P, (int64_t)C)) ||
      (b = lt->MatrixLayoutCreate(&c->lc, dt, K, P, (int64_t)K))) {
    char label[160];
    return gs_error_set(err, GS_EDRIVER, "%s: setting up cuBLASLt failed: %s",
                        gs__node_label(n, label, sizeof label),
                        gs__cublas_strerror(&cs->l->cublas, b));
  }
  return GS_OK;
}

/* The fastest of cuBLASLt's algorithms for the matmul lt_describe set up
 * (timed here) into c->lt_algo, its time c->ms[LT]. */
static int lt_prepare(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                      gs__cuda_graph_t *g, size_t i, gs_error_t *err) {
  const gs__cublaslt_t *lt = &cs->l->cublaslt;
  gs__cuda_conv_t *c = &g->conv[i];
  int rc = lt_describe(cs, plan, g, i, err);
  if (rc != GS_OK || !c->md)
    return rc;
  cublasLtMatmulPreference_t pref = NULL;
  size_t ws_max = GS__DNN_WS_BYTES;
  cublasStatus_t b;
  if ((b = lt->MatmulPreferenceCreate(&pref)) ||
      (b = lt->MatmulPreferenceSetAttribute(
           pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_max,
           sizeof ws_max))) {
    if (pref)
      lt->MatmulPreferenceDestroy(pref);
    char label[160];
    return gs_error_set(err, GS_EDRIVER, "%s: setting up cuBLASLt failed: %s",
                        gs__node_label(&cs->m->nodes[i], label, sizeof label),
                        gs__cublas_strerror(&cs->l->cublas, b));
  }
  cublasLtMatmulHeuristicResult_t heur[8];
  int found = 0;
  b = lt->MatmulAlgoGetHeuristic(cs->lt, c->md, c->la, c->lb, c->lc, c->lc,
                                 pref, 8, heur, &found);
  lt->MatmulPreferenceDestroy(pref);
  if (b != CUBLAS_STATUS_SUCCESS)
    found = 0;
  for (int k = 0; k < found; k++) {
    if (heur[k].state != CUBLAS_STATUS_SUCCESS)
      continue;
    cand_t cand = {.kind = GS__CONV_LT, .heur = &heur[k]};
    bool ok;
    float ms = cand_time(cs, plan, g, i, &cand, &ok);
    if (ok && (!c->ran[GS__CONV_LT] || ms < c->ms[GS__CONV_LT])) {
      c->ran[GS__CONV_LT] = true;
      c->ms[GS__CONV_LT] = ms;
      c->lt_algo = heur[k].algo;
      c->lt_ws = heur[k].workspaceSize;
    }
  }
  return GS_OK;
}

/* Conv node i's descriptors for the plan's shapes. */
static int describe(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                    gs__cuda_graph_t *g, size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__params_t *p = &n->p;
  const gs__cudnn_t *d = &cs->l->cudnn;
  gs__cuda_conv_t *c = &g->conv[i];
  const gs__tensor_t *x = &plan->shapes[n->in[0]], *y = &plan->shapes[n->out];
  const gs__tensor_t *w = &cs->m->values[n->in[1]].constant;
  cudnnDataType_t dt = cs->fp16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
  int64_t cin = cs->cpad[n->in[0]] ? cs->cpad[n->in[0]] : x->dims[1];
  int64_t wc = cs->wpad[n->in[1]] ? cs->wpad[n->in[1]] : w->dims[1];
  int64_t pad[2];
  if (x->rank != 4)
    return gs__cuda_node_fail(n, "its input is not 4-D", err);
  for (unsigned k = 0; k < 2; k++) {
    int rc = begin_pad(n, k, x->dims[2 + k], y->dims[2 + k], &pad[k], err);
    if (rc != GS_OK)
      return rc;
  }
  cudnnStatus_t s;
#define DNN(call, what)                                                        \
  if ((s = (call)) != CUDNN_STATUS_SUCCESS)                                    \
    return gs__cuda_dnn_fail(cs, n, s, what, err);
  DNN(d->CreateTensorDescriptor(&c->x), "cudnnCreateTensorDescriptor");
  DNN(d->CreateTensorDescriptor(&c->y), "cudnnCreateTensorDescriptor");
  DNN(d->CreateTensorDescriptor(&c->b), "cudnnCreateTensorDescriptor");
  DNN(d->CreateFilterDescriptor(&c->w), "cudnnCreateFilterDescriptor");
  DNN(d->CreateConvolutionDescriptor(&c->c),
      "cudnnCreateConvolutionDescriptor");
  DNN(d->CreateActivationDescriptor(&c->a), "cudnnCreateActivationDescriptor");
  DNN(d->SetTensor4dDescriptor(c->x, CUDNN_TENSOR_NHWC, dt, (int)x->dims[0],
                               (int)cin, (int)x->dims[2], (int)x->dims[3]),
      "cudnnSetTensor4dDescriptor (x)");
  DNN(d->SetTensor4dDescriptor(c->y, CUDNN_TENSOR_NHWC, dt, (int)y->dims[0],
                               (int)y->dims[1], (int)y->dims[2],
                               (int)y->dims[3]),
      "cudnnSetTensor4dDescriptor (y)");
  DNN(d->SetTensor4dDescriptor(c->b, CUDNN_TENSOR_NHWC, dt, 1, (int)y->dims[1],
                               1, 1),
      "cudnnSetTensor4dDescriptor (bias)");
  DNN(d->SetFilter4dDescriptor(c->w, dt, CUDNN_TENSOR_NHWC, (int)w->dims[0],
                               (int)wc, (int)w->dims[2], (int)w->dims[3]),
      "cudnnSetFilter4dDescriptor");
  DNN(d->SetConvolution2dDescriptor(
          c->c, (int)pad[0], (int)pad[1],
          (int)(p->strides[0] ? p->strides[0] : 1),
          (int)(p->strides[1] ? p->strides[1] : 1),
          (int)(p->dilations[0] ? p->dilations[0] : 1),
          (int)(p->dilations[1] ? p->dilations[1] : 1), CUDNN_CROSS_CORRELATION,
          CUDNN_DATA_FLOAT),
      "cudnnSetConvolution2dDescriptor");
  DNN(d->SetConvolutionGroupCount(c->c, (int)(p->group > 1 ? p->group : 1)),
      "cudnnSetConvolutionGroupCount");
  cudnnMathType_t math = cs->fp16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
  DNN(d->SetConvolutionMathType(c->c, math), "cudnnSetConvolutionMathType");
  bool clip0 = p->act == GS__ACT_CLIP && p->act_min == 0.f;
  cudnnActivationMode_t mode = p->act == GS__ACT_RELU ? CUDNN_ACTIVATION_RELU
                               : clip0 ? CUDNN_ACTIVATION_CLIPPED_RELU
                                       : CUDNN_ACTIVATION_IDENTITY;
  DNN(d->SetActivationDescriptor(c->a, mode, CUDNN_NOT_PROPAGATE_NAN,
                                 clip0 ? (double)p->act_max : 0.0),
      "cudnnSetActivationDescriptor");
  return GS_OK;
#undef DNN
}

int gs__cuda_conv_pick(const float ms[GS__CONV_PLAIN],
                       const bool ran[GS__CONV_PLAIN]) {
  int best = GS__CONV_PLAIN;
  for (int k = 0; k < GS__CONV_PLAIN; k++)
    if (ran[k] && (best == GS__CONV_PLAIN || ms[k] < ms[best]))
      best = k;
  return best;
}

size_t gs__cuda_conv_ws(const gs__cuda_conv_t *c) {
  return c->kind == GS__CONV_LT ? c->lt_ws : c->ws;
}

/* Whether perf (of cudnnFind's found) is worth timing with the epilogue:
 * the epilogue costs the same after any algorithm, so those cudnnFind
 * timed at over twice the fastest (plus 20 us) cannot win; that keeps the
 * plan short at large batches, where some algorithms take milliseconds. */
static bool epi_worth(const cudnnConvolutionFwdAlgoPerf_t *perf, int found,
                      int k) {
  float fastest = INFINITY;
  for (int j = 0; j < found; j++)
    if (perf[j].status == CUDNN_STATUS_SUCCESS && perf[j].time >= 0.f)
      fastest = fminf(fastest, perf[j].time);
  return !(perf[k].time > 2.f * fastest + 0.02f);
}

/* Times the algorithms cudnnFind found (in its math type; FP32 keeps FMA
 * math for the unfused call: no TF32) as candidate kind, the fastest into
 * c->ms[kind] and *best. */
static void time_dnn(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                     gs__cuda_graph_t *g, size_t i, int kind,
                     const cudnnConvolutionFwdAlgoPerf_t *perf, int found,
                     cudnnConvolutionFwdAlgoPerf_t *best) {
  gs__cuda_conv_t *c = &g->conv[i];
  for (int k = 0; k < found; k++) {
    if (perf[k].status != CUDNN_STATUS_SUCCESS ||
        perf[k].memory > GS__DNN_WS_BYTES ||
        (kind == GS__CONV_EPI && !epi_worth(perf, found, k)))
      continue;
    cudnnConvolutionFwdAlgoPerf_t pk = perf[k];
    if (kind == GS__CONV_EPI && !cs->fp16)
      pk.mathType = CUDNN_FMA_MATH;
    if (cs->l->cudnn.SetConvolutionMathType(c->c, pk.mathType))
      continue;
    cand_t cand = {.kind = kind, .perf = &pk};
    bool ok;
    float ms = cand_time(cs, plan, g, i, &cand, &ok);
    if (ok && (!c->ran[kind] || ms < c->ms[kind])) {
      c->ran[kind] = true;
      c->ms[kind] = ms;
      c->cand_algo[kind] = pk.algo;
      *best = pk;
    }
  }
}

void gs__cuda_conv_key(const gs__cuda_session_t *cs,
                       const gs__plan_view_t *plan, size_t i,
                       gs__cuda_conv_key_t *key) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__params_t *p = &n->p;
  const gs__tensor_t *x = &plan->shapes[n->in[0]], *y = &plan->shapes[n->out];
  const gs__tensor_t *w = &cs->m->values[n->in[1]].constant;
  unsigned k = 0;
  memset(key, 0, sizeof *key);
#define PUT(val) key->v[k++] = (int64_t)(val)
  PUT(cs->device);
  PUT(cs->sms); /* a green context's own: the fastest depends on it */
  PUT(cs->fp16);
  PUT(x->rank);
  for (unsigned d = 0; d < 4 && d < x->rank; d++)
    PUT(x->dims[d]);
  PUT(cs->cpad[n->in[0]]);
  for (unsigned d = 1; d < 4 && d < y->rank; d++)
    PUT(y->dims[d]);
  for (unsigned d = 0; d < 4 && d < w->rank; d++)
    PUT(w->dims[d]);
  PUT(cs->wpad[n->in[1]]);
  for (unsigned d = 0; d < GS__MAX_SPATIAL; d++) {
    PUT(p->strides[d]);
    PUT(p->dilations[d]);
  }
  for (unsigned d = 0; d < 2 * GS__MAX_SPATIAL; d++)
    PUT(p->pads[d]);
  PUT(p->auto_pad);
  PUT(p->group);
  PUT(p->act);
  uint32_t lo, hi;
  memcpy(&lo, &p->act_min, sizeof lo);
  memcpy(&hi, &p->act_max, sizeof hi);
  PUT(lo);
  PUT(hi);
  PUT(n->n_in > 2 && n->in[2] >= 0); /* a bias */
  PUT(p->residual > 0);
#undef PUT
}

static void choice_of(const gs__cuda_conv_t *c, gs__cuda_conv_choice_t *out) {
  memset(out, 0, sizeof *out);
  out->kind = c->kind;
  out->algo = c->algo;
  out->ws = c->ws;
  out->math = c->math;
  memcpy(out->ms, c->ms, sizeof out->ms);
  memcpy(out->ran, c->ran, sizeof out->ran);
  memcpy(out->cand_algo, c->cand_algo, sizeof out->cand_algo);
  out->lt_algo = c->lt_algo;
  out->lt_ws = c->lt_ws;
}

/* One eager call of the chosen way (its kernels load in this context
 * before the capture; a choice that cannot run here is timed again). */
static bool known_runs(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                       const gs__cuda_graph_t *g, size_t i) {
  const gs__cuda_conv_t *c = &g->conv[i];
  cudnnConvolutionFwdAlgoPerf_t perf = {.algo = c->algo,
                                        .status = CUDNN_STATUS_SUCCESS,
                                        .memory = c->ws,
                                        .mathType = c->math};
  cublasLtMatmulHeuristicResult_t heur = {.algo = c->lt_algo,
                                          .workspaceSize = c->lt_ws};
  cand_t k = {.kind = c->kind == GS__CONV_PLAIN ? GS__CONV_EPI : c->kind,
              .perf = &perf,
              .heur = &heur};
  return cand_run(cs, plan, g, i, &k);
}

/* Frees a conv's cuBLASLt descriptors (kept NULL: safe to call again). */
void gs__cuda_conv_lt_release(const gs__cuda_session_t *cs,
                              gs__cuda_conv_t *c) {
  const gs__cublaslt_t *lt = &cs->l->cublaslt;
  if (c->md)
    lt->MatmulDescDestroy(c->md);
  if (c->la)
    lt->MatrixLayoutDestroy(c->la);
  if (c->lb)
    lt->MatrixLayoutDestroy(c->lb);
  if (c->lc)
    lt->MatrixLayoutDestroy(c->lc);
  c->md = NULL;
  c->la = c->lb = c->lc = NULL;
}

/* The process chose how this conv runs before: its descriptors, that
 * choice, no timing. */
static int prepare_known(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                         gs__cuda_graph_t *g, size_t i,
                         const gs__cuda_conv_choice_t *ch, gs_error_t *err) {
  gs__cuda_conv_t *c = &g->conv[i];
  c->kind = ch->kind;
  c->algo = ch->algo;
  c->ws = ch->ws;
  c->math = ch->math;
  memcpy(c->ms, ch->ms, sizeof c->ms);
  memcpy(c->ran, ch->ran, sizeof c->ran);
  memcpy(c->cand_algo, ch->cand_algo, sizeof c->cand_algo);
  c->lt_algo = ch->lt_algo;
  c->lt_ws = ch->lt_ws;
  if (c->kind == GS__CONV_LT) {
    int rc = lt_describe(cs, plan, g, i, err);
    if (rc == GS_OK && !c->md)
      rc = gs__cuda_node_fail(
          &cs->m->nodes[i], "its cached cuBLASLt choice does not fit it", err);
    return rc;
  }
  cudnnStatus_t s = cs->l->cudnn.SetConvolutionMathType(c->c, c->math);
  return s == CUDNN_STATUS_SUCCESS
             ? GS_OK
             : gs__cuda_dnn_fail(cs, &cs->m->nodes[i], s,
                                 "cudnnSetConvolutionMathType", err);
}

static int prepare_timed(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                         gs__cuda_graph_t *g, size_t i, gs_error_t *err);

int gs__cuda_conv_prepare(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                          gs__cuda_graph_t *g, size_t i, gs_error_t *err) {
  gs__cuda_conv_key_t key;
  gs__cuda_conv_choice_t choice;
  int rc = describe(cs, plan, g, i, err);
  if (rc != GS_OK)
    return rc;
  gs__cuda_conv_key(cs, plan, i, &key);
  if (gs__cuda_conv_cache_get(&key, &choice)) {
    /* a choice that does not run here (another process's, from the cache
     * file) is timed again: the cache never fails a plan */
    gs_error_t ignored;
    uint64_t t0 = gs__cuda_now_ns();
    bool runs = prepare_known(cs, plan, g, i, &choice, &ignored) == GS_OK &&
                known_runs(cs, plan, g, i);
    cs->t_ns[GS__CT_CONV_CHECKS] += gs__cuda_now_ns() - t0;
    if (runs)
      return GS_OK;
    gs__cuda_conv_lt_release(cs,
                             &g->conv[i]); /* timed again below, from scratch */
    memset(g->conv[i].ran, 0, sizeof g->conv[i].ran);
  }
  rc = prepare_timed(cs, plan, g, i, err);
  if (rc == GS_OK) {
    choice_of(&g->conv[i], &choice);
    gs__cuda_conv_cache_put(&key, &choice);
  }
  return rc;
}

/* cudnnFind, then each candidate timed (describe has run). */
static int prepare_timed(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                         gs__cuda_graph_t *g, size_t i, gs_error_t *err) {
  const gs__node_t *n = &cs->m->nodes[i];
  const gs__params_t *p = &n->p;
  const gs__cudnn_t *d = &cs->l->cudnn;
  gs__cuda_conv_t *c = &g->conv[i];
  int rc;
  for (int k = 0; k < GS__CONV_PLAIN; k++)
    c->ms[k] = INFINITY;
  /* cudnnFind over every algorithm (tensor-op math in FP16), then each
   * candidate timed as it will run: the fused call's speed is not
   * cudnnFind's ranking of the plain one, and the unfused one pays for
   * its epilogue. */
  cudnnConvolutionFwdAlgoPerf_t perf[16], best[GS__CONV_PLAIN];
  int found = 0;
  void *ws = (void *)(uintptr_t)(cs->act + g->dnn_ws_off);
  cudnnStatus_t s = d->FindConvolutionForwardAlgorithmEx(
      cs->dnn, c->x, gs__cuda_dp(cs, n->in[0]), c->w, gs__cuda_dp(cs, n->in[1]),
      c->c, c->y, gs__cuda_dp(cs, n->out), 16, &found, perf, ws,
      GS__DNN_WS_BYTES);
  if (s != CUDNN_STATUS_SUCCESS)
    return gs__cuda_dnn_fail(cs, n, s, "cudnnFindConvolutionForwardAlgorithmEx",
                             err);
  bool clip0 = p->act == GS__ACT_CLIP && p->act_min == 0.f;
  bool has_bias = n->n_in > 2 && n->in[2] >= 0;
  if (has_bias && (p->act != GS__ACT_CLIP || clip0))
    time_dnn(cs, plan, g, i, GS__CONV_FUSED, perf, found,
             &best[GS__CONV_FUSED]);
  time_dnn(cs, plan, g, i, GS__CONV_EPI, perf, found, &best[GS__CONV_EPI]);
  rc = lt_prepare(cs, plan, g, i, err);
  if (rc != GS_OK)
    return rc;
  c->kind = gs__cuda_conv_pick(c->ms, c->ran);
  if (c->kind == GS__CONV_FUSED || c->kind == GS__CONV_EPI) {
    c->algo = best[c->kind].algo;
    c->ws = best[c->kind].memory;
    c->math = best[c->kind].mathType;
  }
  /* None could be timed: the first algorithm cudnnFind took, unfused, as
   * before the epilogue kernel. */
  bool have = c->kind != GS__CONV_PLAIN;
  for (int k = 0; !have && k < found; k++) {
    if (perf[k].status != CUDNN_STATUS_SUCCESS ||
        perf[k].memory > GS__DNN_WS_BYTES)
      continue;
    have = true;
    c->algo = perf[k].algo;
    c->ws = perf[k].memory;
    c->math = perf[k].mathType;
  }
  if (!have)
    return gs__cuda_node_fail(n, "cuDNN has no algorithm for its shape", err);
  if (c->kind != GS__CONV_LT &&
      (s = d->SetConvolutionMathType(c->c, c->math)) != CUDNN_STATUS_SUCCESS)
    return gs__cuda_dnn_fail(cs, n, s, "cudnnSetConvolutionMathType", err);
  return GS_OK;
}

/* ---- what was chosen ----------------------------------------------------- */

static const char *const kind_name[GS__CONV_KINDS] = {"fused", "conv+epilogue",
                                                      "cuBLASLt", "plain"};

static void put(char *buf, size_t cap, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *at, const char *fmt, ...) {
  if (*at >= cap)
    return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf + *at, cap - *at, fmt, ap);
  va_end(ap);
  *at = w < 0 ? cap : *at + (size_t)w;
}

void gs__cuda_conv_report(const gs_model_t *m, const gs__cuda_graph_t *g,
                          char *buf, size_t cap) {
  size_t count[GS__CONV_KINDS] = {0}, ws = 0, at = 0;
  if (cap)
    buf[0] = '\0';
  for (size_t i = 0; g->conv && i < m->n_nodes; i++) {
    const gs__cuda_conv_t *c = &g->conv[i];
    if (m->nodes[i].op->code != GS__OP_CONV || !c->x)
      continue;
    count[c->kind]++;
    ws = gs__cuda_conv_ws(c) > ws ? gs__cuda_conv_ws(c) : ws;
  }
  put(buf, cap, &at,
      "convs: %zu fused, %zu conv+epilogue, %zu cuBLASLt, %zu plain; "
      "workspace %zu bytes at most (of %zu)\n",
      count[GS__CONV_FUSED], count[GS__CONV_EPI], count[GS__CONV_LT],
      count[GS__CONV_PLAIN], ws, GS__DNN_WS_BYTES);
  for (size_t i = 0; g->conv && i < m->n_nodes; i++) {
    const gs__cuda_conv_t *c = &g->conv[i];
    if (m->nodes[i].op->code != GS__OP_CONV || !c->x)
      continue;
    char label[160];
    put(buf, cap, &at, "  %s: %s",
        gs__node_label(&m->nodes[i], label, sizeof label), kind_name[c->kind]);
    if (c->kind != GS__CONV_LT)
      put(buf, cap, &at, " (algo %d)", (int)c->algo);
    put(buf, cap, &at, "; ms a call:");
    for (int k = 0; k < GS__CONV_PLAIN; k++) {
      if (!c->ran[k])
        put(buf, cap, &at, " %s -", kind_name[k]);
      else if (k == GS__CONV_LT)
        put(buf, cap, &at, " %s %.4f", kind_name[k], (double)c->ms[k] / 3);
      else
        put(buf, cap, &at, " %s %.4f (algo %d)", kind_name[k],
            (double)c->ms[k] / 3, c->cand_algo[k]);
    }
    put(buf, cap, &at, "\n");
  }
}

int gs__cuda_session_conv_report(const gs__cuda_session_t *cs, char *buf,
                                 size_t cap, gs_error_t *err) {
  const gs__cuda_graph_t *g = NULL;
  for (unsigned k = 0; k < cs->n_graphs; k++)
    if (cs->graphs[k].conv && (!g || cs->graphs[k].used > g->used))
      g = &cs->graphs[k];
  if (!g)
    return gs_error_set(err, GS_EINVAL,
                        "no shape set has run on the GPU session yet");
  gs__cuda_conv_report(cs->m, g, buf, cap);
  return GS_OK;
}
