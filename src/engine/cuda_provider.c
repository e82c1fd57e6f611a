/* The CUDA provider's load side: the GPU libraries (once per process), the
 * check that every node can run on the GPU, the layout each value takes
 * (NHWC for feature maps, the model's own layout for the rest), and the
 * weights, converted once to that layout and precision and uploaded into
 * one device allocation. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_green_int.h"
#include "engine/cuda_int.h"
#include "engine/cuda_session_int.h"

static struct {
  pthread_once_t once;
  int rc;
  gs_error_t err;
  gs__cuda_libs_t libs;
} g_libs = {.once = PTHREAD_ONCE_INIT};

static void libs_load(void) {
  gs__cuda_libs_t *l = &g_libs.libs;
  gs_error_t *err = &g_libs.err;
  int rc = GS_OK;
  if (gs__cuda_fatbin_size == 0)
    rc = gs_error_set(err, GS_ENODEV,
                      "this gpuslice was built without GPU kernels (no nvcc "
                      "at build time)");
  if (rc == GS_OK)
    rc = gs__cuda_open(&l->cuda, NULL, err);
  if (rc == GS_OK)
    rc = gs__cuda_load_compute(&l->cuda, err);
  if (rc == GS_OK)
    rc = gs__cudnn_open(&l->cudnn, NULL, err);
  if (rc == GS_OK)
    rc = gs__cublas_open(&l->cublas, NULL, err);
  if (rc == GS_OK)
    rc = gs__cublaslt_open(&l->cublaslt, NULL, err);
  if (rc != GS_OK) {
    gs__cublaslt_close(&l->cublaslt);
    gs__cublas_close(&l->cublas);
    gs__cudnn_close(&l->cudnn);
    gs__cuda_close(&l->cuda);
    /* A library that is absent means no usable GPU here, as does a driver
     * without the functions: both let AUTO fall back to the CPU. */
    if (rc == GS_EUNSUPPORTED)
      err->code = rc = GS_ENODEV;
  }
  g_libs.rc = rc;
}

int gs__cuda_libs(const gs__cuda_libs_t **out, gs_error_t *err) {
  pthread_once(&g_libs.once, libs_load);
  *out = NULL;
  if (g_libs.rc != GS_OK) {
    if (err)
      *err = g_libs.err;
    return g_libs.rc;
  }
  *out = &g_libs.libs;
  return GS_OK;
}

int gs__cuda_fail(gs__cuda_session_t *cs, CUresult r, const char *call,
                  gs_error_t *err) {
  return gs_error_set(err, GS_EDRIVER, "CUDA device %d: %s failed: %s",
                      cs->device, call, gs__cuda_strerror(&cs->l->cuda, r));
}

static const char *const kernel_names[GS__K_COUNT] = {
    "gs_in_nhwc",  "gs_out_nchw", "gs_from_f32",     "gs_to_f32", "gs_binary",
    "gs_unary",    "gs_maxpool",  "gs_avgpool",      "gs_gap",    "gs_softmax",
    "gs_maxpool8", "gs_conv_epi", "gs_conv_epi_vec", "gs_binary"};

static int load_kernels(gs__cuda_session_t *cs, gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  CUresult r = cu->ModuleLoadData(&cs->module, gs__cuda_fatbin);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuModuleLoadData (the provider's kernels)",
                         err);
  for (int k = 0; k < GS__K_COUNT; k++)
    for (int t = 0; t < 2; t++) {
      if (k == GS__K_MAXPOOL8 && !t)
        continue; /* FP16 only */
      char name[64];
      snprintf(name, sizeof name, "%s_%s", kernel_names[k],
               k == GS__K_BINARY_I32 ? "i32"
               : t                   ? "f16"
                                     : "f32");
      if ((r = cu->ModuleGetFunction(&cs->fn[k][t], cs->module, name)) !=
          CUDA_SUCCESS)
        return gs_error_set(err, GS_EDRIVER,
                            "the provider's kernels lack %s: %s", name,
                            gs__cuda_strerror(cu, r));
    }
  return GS_OK;
}

static bool is_float(gs_dtype_t t) {
  return t == GS_DTYPE_FP32;
}

/* Tensors the provider moves: FP32, and INT32 through the ops below. */
static bool is_io_type(gs_dtype_t t) {
  return t == GS_DTYPE_FP32 || t == GS_DTYPE_INT32;
}

/* An INT32 node output: Add, Sub, Mul and the ops that move bytes. */
static bool int_op(int code) {
  return code == GS__OP_ADD || code == GS__OP_SUB || code == GS__OP_MUL ||
         code == GS__OP_IDENTITY || code == GS__OP_RESHAPE ||
         code == GS__OP_FLATTEN;
}

static int refuse(const gs__node_t *n, const char *why, gs_error_t *err) {
  char label[160];
  return gs_error_set(err, GS_EUNSUPPORTED,
                      "%s: the cuda provider cannot run it: %s",
                      gs__node_label(n, label, sizeof label), why);
}

/* Marks how const value v is uploaded; a second, different use fails. */
static int want_const(gs__cuda_session_t *cs, const gs__node_t *n, int v,
                      int form, gs_error_t *err) {
  const gs__value_t *val = &cs->m->values[v];
  if (val->kind != GS__VALUE_CONST)
    return GS_OK;
  if (!is_float(val->dtype))
    return refuse(n, "a float operand is not FP32", err);
  if (cs->form[v] && cs->form[v] != form)
    return refuse(n,
                  "an initializer used both as conv weights and as "
                  "a plain tensor",
                  err);
  cs->form[v] = form;
  return GS_OK;
}

/* The layout of every value and the form of every initializer, node by
 * node; refuses what the GPU path does not run. */
static int check_nodes(gs__cuda_session_t *cs, gs_error_t *err) {
  const gs_model_t *m = cs->m;
  int rc = GS_OK;
  for (size_t i = 0; i < m->n_inputs; i++)
    if (!is_io_type(m->input_info[i].dtype))
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "input '%s' is %s: the cuda provider takes FP32 "
                          "and INT32 inputs only",
                          m->input_info[i].name,
                          gs_dtype_name(m->input_info[i].dtype));
  for (size_t o = 0; o < m->n_outputs; o++)
    if (m->values[m->outputs[o]].kind != GS__VALUE_NODE ||
        !is_io_type(m->output_info[o].dtype))
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "output '%s': the cuda provider gives FP32 and "
                          "INT32 node outputs only",
                          m->output_info[o].name);
  for (size_t i = 0; rc == GS_OK && i < m->n_nodes; i++) {
    const gs__node_t *n = &m->nodes[i];
    const gs__params_t *p = &n->p;
    int x = n->in[0];
    bool x_nhwc = x >= 0 && cs->nhwc[x];
    switch (n->op->code) {
    case GS__OP_CONV:
      if (m->values[n->in[1]].kind != GS__VALUE_CONST)
        return refuse(n, "its weights are not an initializer", err);
      if (m->values[n->in[1]].constant.rank != 4)
        return refuse(n, "only 2-D convolutions run on the GPU", err);
      if (n->n_in > 2 && n->in[2] >= 0 &&
          m->values[n->in[2]].kind != GS__VALUE_CONST)
        return refuse(n, "its bias is not an initializer", err);
      if (m->values[x].kind == GS__VALUE_INPUT)
        cs->nhwc[x] = true; /* converted on the way in */
      else if (!x_nhwc)
        return refuse(n,
                      "its input is not a feature map the GPU path "
                      "made",
                      err);
      rc = want_const(cs, n, n->in[1], GS__FORM_CONV_W, err);
      if (rc == GS_OK && n->n_in > 2 && n->in[2] >= 0)
        rc = want_const(cs, n, n->in[2], GS__FORM_PLAIN, err);
      if (rc == GS_OK && p->residual > 0 && !cs->nhwc[n->in[p->residual]])
        return refuse(n, "its fused residual is not a feature map", err);
      cs->nhwc[n->out] = true;
      break;
    case GS__OP_MAXPOOL:
    case GS__OP_AVGPOOL:
    case GS__OP_GLOBALAVGPOOL:
      if (m->values[x].kind == GS__VALUE_INPUT)
        cs->nhwc[x] = true;
      else if (!x_nhwc)
        return refuse(n,
                      "its input is not a feature map the GPU path "
                      "made",
                      err);
      if (n->op->code != GS__OP_GLOBALAVGPOOL && p->n_spatial &&
          p->n_spatial != 2)
        return refuse(n, "only 2-D pooling runs on the GPU", err);
      /* A global pool's [N, C, 1, 1] is the same bytes in both layouts. */
      cs->nhwc[n->out] = n->op->code != GS__OP_GLOBALAVGPOOL;
      break;
    case GS__OP_ADD:
    case GS__OP_SUB:
    case GS__OP_MUL:
    case GS__OP_DIV:
      for (unsigned k = 0; rc == GS_OK && k < 2; k++)
        rc = want_const(cs, n, n->in[k], GS__FORM_PLAIN, err);
      cs->nhwc[n->out] = cs->nhwc[n->in[0]] || cs->nhwc[n->in[1]];
      break;
    case GS__OP_RELU:
    case GS__OP_CLIP:
    case GS__OP_SIGMOID:
    case GS__OP_TANH:
    case GS__OP_IDENTITY:
      if (m->values[x].kind == GS__VALUE_CONST)
        return refuse(n, "its input is an initializer", err);
      cs->nhwc[n->out] = x_nhwc;
      break;
    case GS__OP_FLATTEN:
    case GS__OP_RESHAPE:
      /* Plain data: an NHWC map is accepted at plan time only when its
       * spatial size is 1 (the bytes are then the same). */
      break;
    case GS__OP_GEMM:
      if (m->values[n->in[1]].kind != GS__VALUE_CONST)
        return refuse(n, "B is not an initializer", err);
      rc = want_const(cs, n, n->in[1], GS__FORM_PLAIN, err);
      if (rc == GS_OK && n->n_in > 2 && n->in[2] >= 0)
        rc = want_const(cs, n, n->in[2], GS__FORM_PLAIN, err);
      if (rc == GS_OK && x_nhwc)
        return refuse(n, "its input is an NHWC feature map", err);
      break;
    case GS__OP_MATMUL:
      if (m->values[n->in[1]].kind != GS__VALUE_CONST ||
          m->values[n->in[1]].constant.rank != 2)
        return refuse(n, "B is not a 2-D initializer", err);
      rc = want_const(cs, n, n->in[1], GS__FORM_PLAIN, err);
      if (rc == GS_OK && x_nhwc)
        return refuse(n, "its input is an NHWC feature map", err);
      break;
    case GS__OP_SOFTMAX:
      if (x_nhwc)
        return refuse(n, "its input is an NHWC feature map", err);
      break;
    default:
      return refuse(n,
                    "the op is not in the provider's op set (Conv, "
                    "MaxPool, AveragePool, GlobalAveragePool, Gemm, "
                    "MatMul, Add, Sub, Mul, Div, Relu, Clip, Sigmoid, "
                    "Tanh, Softmax, Flatten, Reshape, Identity)",
                    err);
    }
    gs_dtype_t out = m->values[n->out].dtype;
    if (rc == GS_OK && out == GS_DTYPE_INT32 && !int_op(n->op->code))
      return refuse(n,
                    "INT32 runs through Add, Sub, Mul, Identity, Reshape "
                    "and Flatten only",
                    err);
    if (rc == GS_OK && out == GS_DTYPE_INT32 && cs->nhwc[n->out])
      return refuse(n, "an INT32 feature map", err);
    if (rc == GS_OK && !is_io_type(out))
      return refuse(n, "its output is neither FP32 nor INT32", err);
  }
  return rc;
}

/* The stem conv's input channels, padded to 8 in FP16 so that its
 * convolution runs on tensor cores (the extra channels are zero). */
static int64_t padded_channels(const gs__cuda_session_t *cs, int64_t c) {
  return cs->fp16 && c % 8 ? (c + 7) / 8 * 8 : c;
}

/* The FP32 host form of const v: plain, or conv weights KCRS -> KRSC with
 * the input channels padded when the conv reads a graph input. */
static float *const_host(gs__cuda_session_t *cs, int v, size_t *count) {
  const gs__tensor_t *t = &cs->m->values[v].constant;
  const float *src = t->data;
  if (cs->form[v] != GS__FORM_CONV_W) {
    float *dst = malloc((t->count + 1) * sizeof *dst);
    if (dst && t->count)
      memcpy(dst, src, t->count * sizeof *dst);
    *count = t->count;
    return dst;
  }
  int64_t k = t->dims[0], c = t->dims[1], rs = t->dims[2] * t->dims[3];
  int64_t cp = cs->wpad[v] ? cs->wpad[v] : c;
  *count = (size_t)(k * rs * cp);
  float *dst = calloc(*count + 1, sizeof *dst);
  for (int64_t o = 0; dst && o < k; o++)
    for (int64_t q = 0; q < rs; q++)
      for (int64_t ch = 0; ch < c; ch++)
        dst[(o * rs + q) * cp + ch] = src[(o * c + ch) * rs + q];
  return dst;
}

static size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

/* Fails with what the model needs against what the GPU has free. */
int gs__cuda_alloc(gs__cuda_session_t *cs, CUdeviceptr *p, size_t bytes,
                   const char *what, gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  size_t free_b = 0, total_b = 0;
  CUresult r = cu->MemGetInfo(&free_b, &total_b);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuMemGetInfo", err);
  if (bytes > free_b)
    return gs_error_set(err, GS_ENOMEM,
                        "the model's %s need %zu bytes on GPU %d; the "
                        "instance has %zu free of %zu",
                        what, bytes, cs->device, free_b, total_b);
  if ((r = cu->MemAlloc(p, bytes ? bytes : 256)) != CUDA_SUCCESS)
    return gs_error_set(err, GS_ENOMEM,
                        "the model's %s need %zu bytes on GPU %d: "
                        "cuMemAlloc: %s (%zu free of %zu)",
                        what, bytes, cs->device, gs__cuda_strerror(cu, r),
                        free_b, total_b);
  return GS_OK;
}

/* Weights on the GPU are shared by every session of the same model, device
 * and precision in the process (the worker keeps a session per concurrent
 * request; a MIG slice's memory holds one copy of the weights, not one per
 * thread). Keyed by the model's file digest (model_digest.c: keyed
 * SipHash, so no uploaded file can be made to collide with another), so
 * that instances in one green process, each loading its copy of the
 * repository, hold one copy too, and by the layout's size; equal files give
 * equal graphs, so the same layout. A model without a digest (no random key
 * could be drawn) shares by its address only, which outlives its sessions. */
typedef struct shared_weights_s {
  const gs_model_t *model;
  uint64_t digest[2];
  size_t bytes; /* the layout's size (weights_layout) */
  int device;
  bool fp16;
  CUdeviceptr ptr;
  unsigned refs;
  struct shared_weights_s *next;
} shared_weights_t;

static pthread_mutex_t g_weights_lock = PTHREAD_MUTEX_INITIALIZER;
static shared_weights_t *g_weights;

static void weights_release(gs__cuda_session_t *cs) {
  pthread_mutex_lock(&g_weights_lock);
  for (shared_weights_t **p = &g_weights; *p; p = &(*p)->next) {
    shared_weights_t *w = *p;
    if (w->ptr != cs->weights)
      continue;
    if (--w->refs == 0) {
      cs->l->cuda.MemFree(w->ptr);
      *p = w->next;
      free(w);
    }
    break;
  }
  pthread_mutex_unlock(&g_weights_lock);
  cs->weights = 0;
}

static int upload_weights(gs__cuda_session_t *cs, gs_error_t *err);

/* By digest where the model has one; by address only between models
 * without (an address may be reused once its model is gone, while another
 * model's sessions keep the copy alive). */
static bool same_model(const shared_weights_t *w,
                       const gs__cuda_session_t *cs) {
  const gs_model_t *m = cs->m;
  if (w->bytes != cs->weights_bytes)
    return false;
  if (m->digest[0] || m->digest[1])
    return !memcmp(w->digest, m->digest, sizeof m->digest);
  return w->model == m && !w->digest[0] && !w->digest[1];
}

/* The shared copy when there is one, else a new upload that others share. */
static int weights_acquire(gs__cuda_session_t *cs, gs_error_t *err) {
  int rc = GS_OK;
  pthread_mutex_lock(&g_weights_lock);
  shared_weights_t *w = g_weights;
  while (w &&
         (!same_model(w, cs) || w->device != cs->device || w->fp16 != cs->fp16))
    w = w->next;
  if (w) {
    w->refs++;
    cs->weights = w->ptr;
  } else if ((w = calloc(1, sizeof *w)) == NULL) {
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  } else if ((rc = upload_weights(cs, err)) != GS_OK) {
    free(w);
  } else {
    *w = (shared_weights_t){.model = cs->m,
                            .digest = {cs->m->digest[0], cs->m->digest[1]},
                            .bytes = cs->weights_bytes,
                            .device = cs->device,
                            .fp16 = cs->fp16,
                            .ptr = cs->weights,
                            .refs = 1,
                            .next = g_weights};
    g_weights = w;
  }
  pthread_mutex_unlock(&g_weights_lock);
  return rc;
}

void gs__cuda_session_timing(const gs__cuda_session_t *cs, char *buf,
                             size_t cap) {
  unsigned ms[GS__CT_N];
  for (int i = 0; i < GS__CT_N; i++)
    ms[i] = (unsigned)(cs->t_ns[i] / 1000000u);
  snprintf(
      buf, cap,
      "libraries %u, context %u, cuDNN and cuBLAS %u, weights %u; runs "
      "%u (layout %u, conv choices %u of which cached ones' eager calls %u, "
      "captures %u)",
      ms[GS__CT_LIBS], ms[GS__CT_CONTEXT], ms[GS__CT_HANDLES],
      ms[GS__CT_WEIGHTS], ms[GS__CT_RUNS], ms[GS__CT_LAYOUT], ms[GS__CT_CONVS],
      ms[GS__CT_CONV_CHECKS], ms[GS__CT_CAPTURE]);
}

unsigned gs__cuda_session_captures(const gs__cuda_session_t *cs) {
  return cs->captures;
}

unsigned gs__cuda_session_uncached(const gs__cuda_session_t *cs) {
  return cs->uncached;
}

uintptr_t gs__cuda_session_weights(const gs__cuda_session_t *cs,
                                   size_t *bytes) {
  *bytes = cs->weights_bytes;
  return (uintptr_t)cs->weights;
}

/* Where each initializer sits in the weights allocation (the same in every
 * session of a model and precision) and the allocation's size. */
static size_t weights_layout(gs__cuda_session_t *cs, size_t *max_count) {
  const gs_model_t *m = cs->m;
  size_t esize = cs->fp16 ? 2 : 4, total = 0;
  *max_count = 0;
  for (size_t v = 0; v < m->n_values; v++) {
    if (!cs->form[v])
      continue;
    const gs__tensor_t *t = &m->values[v].constant;
    size_t count = t->count;
    if (cs->form[v] == GS__FORM_CONV_W)
      count = (size_t)(t->dims[0] * t->dims[2] * t->dims[3] *
                       (cs->wpad[v] ? cs->wpad[v] : t->dims[1]));
    cs->woff[v] = total;
    total += align256(count * esize);
    if (count > *max_count)
      *max_count = count;
  }
  return total;
}

/* Every marked initializer, converted on the host to its FP32 form, copied
 * up once, then cast into the weights allocation by the provider's own
 * kernel (FP16) or copied (FP32). */
static int upload_weights(gs__cuda_session_t *cs, gs_error_t *err) {
  const gs_model_t *m = cs->m;
  const gs__cuda_t *cu = &cs->l->cuda;
  size_t max_count;
  size_t total = weights_layout(cs, &max_count);
  int rc = gs__cuda_alloc(cs, &cs->weights, total, "weights", err);
  if (rc != GS_OK)
    return rc;
  cs->weights_bytes = total;
  CUdeviceptr tmp = 0;
  if (cs->fp16)
    rc = gs__cuda_alloc(cs, &tmp, max_count * 4, "weights (FP32 staging)", err);
  for (size_t v = 0; rc == GS_OK && v < m->n_values; v++) {
    if (!cs->form[v])
      continue;
    size_t count;
    float *host = const_host(cs, (int)v, &count);
    CUdeviceptr dst = cs->weights + cs->woff[v];
    CUresult r;
    if (!host) {
      rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    } else if ((r = cu->MemcpyHtoDAsync(cs->fp16 ? tmp : dst, host, count * 4,
                                        cs->stream)) != CUDA_SUCCESS) {
      /* On the session's stream: a plain cuMemcpyHtoD may return before
       * its DMA lands, and the non-blocking stream would not wait for it. */
      rc = gs__cuda_fail(cs, r, "cuMemcpyHtoDAsync (weights)", err);
    } else if (!cs->fp16) {
      if ((r = cu->StreamSynchronize(cs->stream)) != CUDA_SUCCESS)
        rc = gs__cuda_fail(cs, r, "cuStreamSynchronize (weights)", err);
    } else {
      long n = (long)count;
      void *args[] = {&tmp, &dst, &n};
      rc = gs__cuda_launch(cs, GS__K_FROM_F32, n, args, err);
      if (rc == GS_OK &&
          (r = cu->StreamSynchronize(cs->stream)) != CUDA_SUCCESS)
        rc = gs__cuda_fail(cs, r, "cuStreamSynchronize (weights)", err);
    }
    free(host);
  }
  if (tmp)
    cu->MemFree(tmp);
  if (rc != GS_OK && cs->weights) {
    cu->MemFree(cs->weights);
    cs->weights = 0;
  }
  return rc;
}

/* Which initializers are conv weights read from a graph input (their
 * input channels get padded with the input). */
static void mark_padding(gs__cuda_session_t *cs) {
  const gs_model_t *m = cs->m;
  for (size_t i = 0; i < m->n_nodes; i++) {
    const gs__node_t *n = &m->nodes[i];
    if (n->op->code != GS__OP_CONV ||
        m->values[n->in[0]].kind != GS__VALUE_INPUT || n->p.group > 1)
      continue;
    const gs__tensor_t *w = &m->values[n->in[1]].constant;
    int64_t cp = padded_channels(cs, w->dims[1]);
    if (cp != w->dims[1]) {
      cs->wpad[n->in[1]] = cp;
      cs->cpad[n->in[0]] = cp;
    }
  }
}

static int make_handles(gs__cuda_session_t *cs, gs_error_t *err) {
  const gs__cuda_libs_t *l = cs->l;
  uint64_t t0 = gs__cuda_now_ns();
  CUresult r;
  int count = 0;
  if ((r = l->cuda.DeviceGetCount(&count)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuDeviceGetCount", err);
  if (cs->device < 0 || cs->device >= count)
    return gs_error_set(err, GS_ENODEV,
                        "CUDA device %d does not exist (%d visible)",
                        cs->device, count);
  if ((r = l->cuda.DeviceGet(&cs->dev, cs->device)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuDeviceGet", err);
  if ((r = l->cuda.DevicePrimaryCtxRetain(&cs->ctx, cs->dev)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuDevicePrimaryCtxRetain", err);
  cs->ctx_held = true;
  if ((r = l->cuda.CtxSetCurrent(cs->ctx)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuCtxSetCurrent", err);
  int sms = 0;
  l->cuda.DeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                             cs->dev);
  cs->sms = sms > 0 ? sms : 1;
  int grc = cs->sm_count
                ? gs__cuda_green_open(&cs->green, &l->cuda, cs->dev, cs->device,
                                      cs->sm_first, cs->sm_count, &cs->ctx,
                                      &cs->stream, err)
                : GS_OK;
  if (grc != GS_OK)
    return grc;
  cs->sms = cs->green ? (int)cs->sm_count : cs->sms;
  if (!cs->green && (r = l->cuda.StreamCreate(
                         &cs->stream, CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuStreamCreate", err);
  for (int i = 0; i < 2; i++)
    if ((r = l->cuda.EventCreate(&cs->ev[i], CU_EVENT_DEFAULT)) != CUDA_SUCCESS)
      return gs__cuda_fail(cs, r, "cuEventCreate", err);
  if (cs->wait == GS_GPU_WAIT_BLOCK &&
      (r = l->cuda.EventCreate(&cs->done, CU_EVENT_BLOCKING_SYNC |
                                              CU_EVENT_DISABLE_TIMING)) !=
          CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuEventCreate (blocking sync)", err);
  uint64_t t = gs__cuda_now_ns();
  cs->t_ns[GS__CT_CONTEXT] = t - t0;
  t0 = t;
  cudnnStatus_t s = l->cudnn.Create(&cs->dnn);
  if (s != CUDNN_STATUS_SUCCESS)
    return gs_error_set(err, GS_EDRIVER, "cudnnCreate failed: %s",
                        gs__cudnn_strerror(&l->cudnn, s));
  if ((s = l->cudnn.SetStream(cs->dnn, cs->stream)) != CUDNN_STATUS_SUCCESS)
    return gs_error_set(err, GS_EDRIVER, "cudnnSetStream failed: %s",
                        gs__cudnn_strerror(&l->cudnn, s));
  cublasStatus_t b = l->cublaslt.Create(&cs->lt);
  if (b != CUBLAS_STATUS_SUCCESS)
    return gs_error_set(err, GS_EDRIVER, "cublasLtCreate failed: %s",
                        gs__cublas_strerror(&l->cublas, b));
  b = l->cublas.Create(&cs->blas);
  if (b != CUBLAS_STATUS_SUCCESS)
    return gs_error_set(err, GS_EDRIVER, "cublasCreate failed: %s",
                        gs__cublas_strerror(&l->cublas, b));
  int rc = gs__cuda_alloc(cs, &cs->blas_ws, GS__BLAS_WS_BYTES,
                          "cuBLAS workspace", err);
  if (rc != GS_OK)
    return rc;
  /* A fixed workspace and stream: nothing is allocated inside a capture. */
  if ((b = l->cublas.SetStream(cs->blas, cs->stream)) !=
          CUBLAS_STATUS_SUCCESS ||
      (b = l->cublas.SetWorkspace(cs->blas, (void *)(uintptr_t)cs->blas_ws,
                                  GS__BLAS_WS_BYTES)) !=
          CUBLAS_STATUS_SUCCESS ||
      (b = l->cublas.SetMathMode(cs->blas, cs->fp16 ? CUBLAS_DEFAULT_MATH
                                                    : CUBLAS_PEDANTIC_MATH)) !=
          CUBLAS_STATUS_SUCCESS)
    return gs_error_set(err, GS_EDRIVER, "setting up cuBLAS failed: %s",
                        gs__cublas_strerror(&l->cublas, b));
  rc = load_kernels(cs, err);
  cs->t_ns[GS__CT_HANDLES] = gs__cuda_now_ns() - t0;
  return rc;
}

int gs__cuda_session_create(gs__cuda_session_t **out, const gs_model_t *model,
                            const gs_session_options_t *opts, gs_error_t *err) {
  *out = NULL;
  if ((unsigned)opts->gpu_wait > GS_GPU_WAIT_BLOCK)
    return gs_error_set(err, GS_EINVAL,
                        "gpu_wait %u is not driver, spin or block",
                        (unsigned)opts->gpu_wait);
  int rc = GS_OK;
  gs__cuda_session_t *cs = calloc(1, sizeof *cs);
  if (!cs)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  cs->m = model;
  cs->device = opts->device;
  cs->sm_first = opts->sm_first;
  cs->sm_count = opts->sm_count;
  cs->wait = opts->gpu_wait;
  cs->fp16 = opts->precision != GS_PRECISION_FP32;
  cs->max_graphs = opts->max_cached_plans ? opts->max_cached_plans : 16;
  size_t nv = model->n_values + 1;
  cs->nhwc = calloc(nv, sizeof *cs->nhwc);
  cs->form = calloc(nv, sizeof *cs->form);
  cs->woff = calloc(nv, sizeof *cs->woff);
  cs->wpad = calloc(nv, sizeof *cs->wpad);
  cs->cpad = calloc(nv, sizeof *cs->cpad);
  cs->graphs = calloc(cs->max_graphs, sizeof *cs->graphs);
  cs->ptr = calloc(nv, sizeof *cs->ptr);
  cs->pin_in = calloc(model->n_inputs + 1, sizeof *cs->pin_in);
  cs->pin_in_cap = calloc(model->n_inputs + 1, sizeof *cs->pin_in_cap);
  if (!cs->nhwc || !cs->form || !cs->woff || !cs->wpad || !cs->cpad ||
      !cs->graphs || !cs->ptr || !cs->pin_in || !cs->pin_in_cap)
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  /* The model first: a node the provider cannot run is named the same way
   * with or without a GPU here. */
  if (rc == GS_OK)
    rc = check_nodes(cs, err);
  uint64_t t0 = gs__cuda_now_ns();
  if (rc == GS_OK)
    rc = gs__cuda_libs(&cs->l, err);
  cs->t_ns[GS__CT_LIBS] = gs__cuda_now_ns() - t0;
  if (rc == GS_OK) {
    mark_padding(cs);
    rc = make_handles(cs, err);
  }
  if (rc == GS_OK) {
    size_t unused;
    t0 = gs__cuda_now_ns();
    cs->weights_bytes = weights_layout(cs, &unused);
    rc = weights_acquire(cs, err);
    cs->t_ns[GS__CT_WEIGHTS] = gs__cuda_now_ns() - t0;
  }
  if (rc != GS_OK) {
    gs__cuda_session_destroy(cs);
    return rc;
  }
  *out = cs;
  return GS_OK;
}

void gs__cuda_session_destroy(gs__cuda_session_t *cs) {
  if (!cs)
    return;
  const gs__cuda_libs_t *l = cs->l;
  if (cs->ctx_held) {
    l->cuda.CtxSetCurrent(cs->ctx);
    if (cs->stream)
      l->cuda.StreamSynchronize(cs->stream);
    for (unsigned i = 0; i < cs->n_graphs; i++)
      gs__cuda_graph_release(cs, &cs->graphs[i]);
    if (cs->act)
      l->cuda.MemFree(cs->act);
    for (size_t i = 0; cs->pin_in && i < cs->m->n_inputs; i++)
      if (cs->pin_in[i])
        l->cuda.MemFreeHost(cs->pin_in[i]);
    if (cs->pin_out)
      l->cuda.MemFreeHost(cs->pin_out);
    if (cs->weights)
      weights_release(cs);
    if (cs->blas)
      l->cublas.Destroy(cs->blas);
    if (cs->lt)
      l->cublaslt.Destroy(cs->lt);
    if (cs->blas_ws)
      l->cuda.MemFree(cs->blas_ws);
    if (cs->dnn)
      l->cudnn.Destroy(cs->dnn);
    if (cs->module)
      l->cuda.ModuleUnload(cs->module);
    for (int i = 0; i < 2; i++)
      if (cs->ev[i])
        l->cuda.EventDestroy(cs->ev[i]);
    if (cs->done)
      l->cuda.EventDestroy(cs->done);
    if (cs->stream)
      l->cuda.StreamDestroy(cs->stream);
    gs__cuda_green_close(cs->green); /* after its stream */
    l->cuda.DevicePrimaryCtxRelease(cs->dev);
  }
  free(cs->graphs);
  free(cs->nhwc);
  free(cs->form);
  free(cs->woff);
  free(cs->wpad);
  free(cs->cpad);
  free(cs->ptr);
  free(cs->pin_in);
  free(cs->pin_in_cap);
  free(cs);
}

int gs_engine_cuda_open(int device, gs_error_t *err) {
  const gs__cuda_libs_t *l;
  int rc = gs__cuda_libs(&l, err);
  if (rc != GS_OK)
    return rc;
  int count = 0;
  CUdevice dev;
  CUcontext ctx;
  CUresult r = l->cuda.DeviceGetCount(&count);
  if (r == CUDA_SUCCESS && (device < 0 || device >= count))
    return gs_error_set(err, GS_ENODEV,
                        "CUDA device %d does not exist (%d visible)", device,
                        count);
  if (r == CUDA_SUCCESS &&
      (r = l->cuda.DeviceGet(&dev, device)) == CUDA_SUCCESS)
    r = l->cuda.DevicePrimaryCtxRetain(&ctx, dev);
  if (r != CUDA_SUCCESS)
    return gs_error_set(err, GS_EDRIVER,
                        "CUDA device %d: opening its context failed (error %d)",
                        device, (int)r);
  return GS_OK;
}

void gs_engine_cuda_close(int device) {
  const gs__cuda_libs_t *l;
  CUdevice dev;
  if (gs__cuda_libs(&l, NULL) == GS_OK &&
      l->cuda.DeviceGet(&dev, device) == CUDA_SUCCESS)
    l->cuda.DevicePrimaryCtxRelease(dev);
}

int gs_engine_cuda_describe(char *buf, size_t size, gs_error_t *err) {
  const gs__cuda_libs_t *l;
  if (size)
    buf[0] = '\0';
  int rc = gs__cuda_libs(&l, err);
  if (rc != GS_OK)
    return rc;
  int count = 0;
  l->cuda.DeviceGetCount(&count);
  snprintf(buf, size,
           "cuda: driver %d (%s), %d GPU(s); cuDNN %zu (%s); cuBLAS (%s, "
           "%s); kernels %zu bytes",
           l->cuda.driver_version, l->cuda.path, count, l->cudnn.version,
           l->cudnn.path, l->cublas.path, l->cublaslt.path,
           gs__cuda_fatbin_size);
  return GS_OK;
}
