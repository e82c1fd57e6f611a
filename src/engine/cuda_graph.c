/* The CUDA provider's run side: per input shape set, where every tensor
 * lives in the activation block, the cuDNN algorithm of every conv (timed
 * once with cudnnFind), and one CUDA graph that copies the inputs up, runs
 * every node and copies the outputs back; a run replays it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_session_int.h"

#define NO_OFFSET ((size_t)-1)

static size_t align256(size_t n) {
  return (n + 255) / 256 * 256;
}

/* Kernel k's _f32 (half false) or _f16 variant, whatever the precision. */
static int launch_as(gs__cuda_session_t *cs, int k, bool half, long n,
                     void **args, gs_error_t *err) {
  long blocks = (n + 255) / 256;
  long cap = (long)cs->sms * 16;
  if (blocks > cap)
    blocks = cap;
  if (blocks < 1)
    blocks = 1;
  CUresult r = cs->l->cuda.LaunchKernel(cs->fn[k][half], (unsigned)blocks, 1, 1,
                                        256, 1, 1, 0, cs->stream, args, NULL);
  return r == CUDA_SUCCESS ? GS_OK
                           : gs__cuda_fail(cs, r, "cuLaunchKernel", err);
}

int gs__cuda_launch(gs__cuda_session_t *cs, int k, long n, void **args,
                    gs_error_t *err) {
  return launch_as(cs, k, cs->fp16, n, args, err);
}

void gs__cuda_graph_release(gs__cuda_session_t *cs, gs__cuda_graph_t *g) {
  const gs__cudnn_t *d = &cs->l->cudnn;
  if (g->exec)
    cs->l->cuda.GraphExecDestroy(g->exec);
  for (size_t i = 0; g->conv && i < cs->m->n_nodes; i++) {
    gs__cuda_conv_t *c = &g->conv[i];
    if (c->x)
      d->DestroyTensorDescriptor(c->x);
    if (c->y)
      d->DestroyTensorDescriptor(c->y);
    if (c->b)
      d->DestroyTensorDescriptor(c->b);
    if (c->w)
      d->DestroyFilterDescriptor(c->w);
    if (c->c)
      d->DestroyConvolutionDescriptor(c->c);
    if (c->a)
      d->DestroyActivationDescriptor(c->a);
    gs__cuda_conv_lt_release(cs, c);
  }
  free(g->conv);
  free(g->in_dims);
  free(g->in_rank);
  free(g->in_raw);
  free(g->in_conv);
  free(g->in_dtype);
  free(g->in_bytes);
  free(g->in_half);
  free(g->out_dev);
  free(g->in_dev);
  free(g->out_bound);
  free(g->pin_out_off);
  memset(g, 0, sizeof *g);
}

/* ---- where tensors live -------------------------------------------------- */

/* Output o goes to its bound device memory: bound and large enough. */
static bool out_bound(const gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                      const gs__cuda_out_bind_t *bind, size_t o) {
  return bind && bind[o].ptr &&
         plan->shapes[cs->m->outputs[o]].count * 4 <= bind[o].bytes;
}

static int layout(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                  const gs_tensor_t **in, const gs__cuda_out_bind_t *bind,
                  gs__cuda_graph_t *g, gs_error_t *err) {
  const gs_model_t *m = cs->m;
  size_t ni = m->n_inputs + 1, no = m->n_outputs + 1, esize = cs->fp16 ? 2 : 4;
  g->in_dims = calloc(ni, sizeof *g->in_dims);
  g->in_rank = calloc(ni, sizeof *g->in_rank);
  g->in_raw = calloc(ni, sizeof *g->in_raw);
  g->in_conv = calloc(ni, sizeof *g->in_conv);
  g->in_dtype = calloc(ni, sizeof *g->in_dtype);
  g->in_bytes = calloc(ni, sizeof *g->in_bytes);
  g->in_half = calloc(ni, sizeof *g->in_half);
  g->out_dev = calloc(no, sizeof *g->out_dev);
  g->in_dev = calloc(ni, sizeof *g->in_dev);
  g->out_bound = calloc(no, sizeof *g->out_bound);
  g->pin_out_off = calloc(no, sizeof *g->pin_out_off);
  g->conv = calloc(m->n_nodes + 1, sizeof *g->conv);
  if (!g->in_dims || !g->in_rank || !g->in_raw || !g->in_conv || !g->in_dtype ||
      !g->in_bytes || !g->in_half || !g->out_dev || !g->in_dev ||
      !g->out_bound || !g->pin_out_off || !g->conv)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t v = 0; v < m->n_values; v++)
    if (plan->shapes[v].count >= (size_t)1 << 31)
      return gs_error_set(err, GS_ELIMIT,
                          "'%s' has %zu elements: the cuda provider takes "
                          "tensors under 2^31 elements",
                          m->values[v].name, plan->shapes[v].count);
  size_t off = align256(plan->arena_bytes), pin = 0;
  for (size_t i = 0; i < m->n_inputs; i++) {
    int v = m->inputs[i];
    const gs__tensor_t *t = &plan->shapes[v];
    memcpy(g->in_dims[i], t->dims, sizeof g->in_dims[i]);
    g->in_rank[i] = t->rank;
    g->in_raw[i] = off;
    off += align256(t->count * 4);
    g->in_dtype[i] = in[i]->dtype;
    g->in_dev[i] = in[i]->mem == GS_MEM_DEVICE;
    g->in_bytes[i] = t->count * gs_dtype_size(in[i]->dtype);
    g->in_half[i] = NO_OFFSET;
    if (in[i]->dtype == GS_DTYPE_FP16) {
      g->in_half[i] = off;
      off += align256(t->count * 2);
    }
    g->in_conv[i] = g->in_raw[i];
    if (cs->nhwc[v]) {
      if (t->rank != 4)
        return gs_error_set(err, GS_EUNSUPPORTED,
                            "input '%s': the cuda provider takes 4-D "
                            "feature maps only (NCHW)",
                            m->input_info[i].name);
      int64_t cp = cs->cpad[v] ? cs->cpad[v] : t->dims[1];
      g->in_conv[i] = off;
      off +=
          align256((size_t)(t->dims[0] * cp * t->dims[2] * t->dims[3]) * esize);
    } else if (cs->fp16 && t->dtype != GS_DTYPE_INT32) {
      g->in_conv[i] = off; /* INT32 stays as it is: in_conv is in_raw */
      off += align256(t->count * esize);
    }
  }
  for (size_t o = 0; o < m->n_outputs; o++) {
    int v = m->outputs[o];
    const gs__tensor_t *t = &plan->shapes[v];
    g->out_dev[o] = NO_OFFSET;
    g->out_bound[o] = out_bound(cs, plan, bind, o);
    if ((cs->fp16 && t->dtype != GS_DTYPE_INT32) ||
        (cs->nhwc[v] && t->rank == 4)) {
      g->out_dev[o] = off;
      off += align256(t->count * 4);
    }
    g->pin_out_off[o] = pin;
    pin += align256(t->count * 4);
  }
  g->pin_out_bytes = pin ? pin : 256;
  g->dnn_ws_off = off;
  g->act_bytes = off + GS__DNN_WS_BYTES;
  return GS_OK;
}

/* The graphs of shape sets other than keep captured addresses that are
 * about to change: they capture again at their next run. */
static void drop_graphs(gs__cuda_session_t *cs, const gs__cuda_graph_t *keep) {
  for (unsigned i = 0; i < cs->n_graphs; i++)
    if (&cs->graphs[i] != keep && cs->graphs[i].exec) {
      cs->l->cuda.GraphExecDestroy(cs->graphs[i].exec);
      cs->graphs[i].exec = NULL;
    }
}

int gs__cuda_stage_reserve(gs__cuda_session_t *cs, size_t i, size_t bytes,
                           gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  if (bytes <= cs->pin_in_cap[i] && cs->pin_in[i])
    return GS_OK;
  drop_graphs(cs, NULL);
  if (cs->pin_in[i])
    cu->MemFreeHost(cs->pin_in[i]);
  cs->pin_in[i] = NULL;
  cs->pin_in_cap[i] = 0;
  size_t size = align256(bytes ? bytes : 1);
  CUresult r = cu->MemAllocHost(&cs->pin_in[i], size);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuMemAllocHost (input staging)", err);
  cs->pin_in_cap[i] = size;
  return GS_OK;
}

/* Grows the shared activation block and staging to this shape set's
 * needs. */
static int reserve(gs__cuda_session_t *cs, gs__cuda_graph_t *keep,
                   gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  bool fits =
      keep->act_bytes <= cs->act_cap && keep->pin_out_bytes <= cs->pin_out_cap;
  for (size_t i = 0; fits && i < cs->m->n_inputs; i++)
    fits = cs->pin_in[i] && keep->in_bytes[i] <= cs->pin_in_cap[i];
  if (fits)
    return GS_OK;
  /* Input staging keeps the buffer of a caller that filled it in place
   * when it is large enough (gs__cuda_session_run checked that). */
  for (size_t i = 0; i < cs->m->n_inputs; i++) {
    if (!cs->pin_in[i] || keep->in_bytes[i] > cs->pin_in_cap[i]) {
      int rc = gs__cuda_stage_reserve(cs, i, keep->in_bytes[i], err);
      if (rc != GS_OK)
        return rc;
    }
  }
  drop_graphs(cs, keep);
  CUresult r;
  if (keep->act_bytes > cs->act_cap) {
    if (cs->act)
      cu->MemFree(cs->act);
    cs->act = 0;
    cs->act_cap = 0;
    int rc = gs__cuda_alloc(cs, &cs->act, keep->act_bytes,
                            "activations and workspace", err);
    if (rc != GS_OK)
      return rc;
    cs->act_cap = keep->act_bytes;
  }
  if (keep->pin_out_bytes > cs->pin_out_cap) {
    if (cs->pin_out)
      cu->MemFreeHost(cs->pin_out);
    cs->pin_out = NULL;
    cs->pin_out_cap = 0;
    if ((r = cu->MemAllocHost(&cs->pin_out, keep->pin_out_bytes)) !=
        CUDA_SUCCESS)
      return gs__cuda_fail(cs, r, "cuMemAllocHost (output staging)", err);
    cs->pin_out_cap = keep->pin_out_bytes;
  }
  return GS_OK;
}

static void bind_values(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                        const gs__cuda_graph_t *g) {
  const gs_model_t *m = cs->m;
  for (size_t v = 0; v < m->n_values; v++) {
    const gs__value_t *val = &m->values[v];
    if (val->kind == GS__VALUE_CONST)
      cs->ptr[v] = cs->form[v] ? cs->weights + cs->woff[v] : 0;
    else if (val->kind == GS__VALUE_INPUT)
      cs->ptr[v] = cs->act + g->in_conv[val->input_index];
    else
      cs->ptr[v] = cs->act + plan->offset[v];
  }
}

static int issue_all(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                     const gs__cuda_graph_t *g, CUevent *marks,
                     gs_error_t *err) {
  const gs_model_t *m = cs->m;
  const gs__cuda_t *cu = &cs->l->cuda;
  CUresult r;
  int rc = GS_OK;
  for (size_t i = 0; rc == GS_OK && i < m->n_inputs; i++) {
    int v = m->inputs[i];
    const gs__tensor_t *t = &plan->shapes[v];
    CUdeviceptr raw = cs->act + g->in_raw[i], conv = cs->act + g->in_conv[i];
    bool half = g->in_dtype[i] == GS_DTYPE_FP16;
    CUdeviceptr land = half ? cs->act + g->in_half[i] : raw;
    if (g->in_bytes[i] && !g->in_dev[i] &&
        (r = cu->MemcpyHtoDAsync(land, cs->pin_in[i], g->in_bytes[i],
                                 cs->stream)) != CUDA_SUCCESS)
      return gs__cuda_fail(cs, r, "cuMemcpyHtoDAsync (input)", err);
    if (half) { /* FP16 from the caller: widened on the GPU, then as FP32 */
      long cnt = (long)t->count;
      void *args[] = {&land, &raw, &cnt};
      rc = launch_as(cs, GS__K_TO_F32, true, cnt, args, err);
    }
    if (rc != GS_OK)
      break;
    if (cs->nhwc[v]) {
      int nb = (int)t->dims[0], c = (int)t->dims[1],
          hw = (int)(t->dims[2] * t->dims[3]);
      int cp = cs->cpad[v] ? (int)cs->cpad[v] : c;
      void *args[] = {&raw, &conv, &nb, &c, &hw, &cp};
      rc = gs__cuda_launch(cs, GS__K_IN_NHWC, (long)nb * cp * hw, args, err);
    } else if (cs->fp16 && t->dtype != GS_DTYPE_INT32) {
      long cnt = (long)t->count;
      void *args[] = {&raw, &conv, &cnt};
      rc = gs__cuda_launch(cs, GS__K_FROM_F32, cnt, args, err);
    }
  }
  if (marks && rc == GS_OK && (r = cu->EventRecord(marks[0], cs->stream)))
    return gs__cuda_fail(cs, r, "cuEventRecord", err);
  for (size_t i = 0; rc == GS_OK && i < m->n_nodes; i++) {
    rc = gs__cuda_issue_node(cs, plan, g, i, err);
    if (marks && rc == GS_OK && (r = cu->EventRecord(marks[i + 1], cs->stream)))
      return gs__cuda_fail(cs, r, "cuEventRecord", err);
  }
  for (size_t o = 0; rc == GS_OK && o < m->n_outputs; o++) {
    int v = m->outputs[o];
    const gs__tensor_t *t = &plan->shapes[v];
    CUdeviceptr src = cs->ptr[v];
    if (g->out_dev[o] != NO_OFFSET) {
      CUdeviceptr dst = cs->act + g->out_dev[o];
      if (cs->nhwc[v] && t->rank == 4) {
        int nb = (int)t->dims[0], c = (int)t->dims[1],
            hw = (int)(t->dims[2] * t->dims[3]);
        void *args[] = {&src, &dst, &nb, &c, &hw};
        rc = gs__cuda_launch(cs, GS__K_OUT_NCHW, (long)t->count, args, err);
      } else {
        long cnt = (long)t->count;
        void *args[] = {&src, &dst, &cnt};
        rc = gs__cuda_launch(cs, GS__K_TO_F32, cnt, args, err);
      }
      src = dst;
    }
    if (rc == GS_OK && !g->out_bound[o] &&
        (r = cu->MemcpyDtoHAsync((char *)cs->pin_out + g->pin_out_off[o], src,
                                 t->count * 4, cs->stream)) != CUDA_SUCCESS)
      return gs__cuda_fail(cs, r, "cuMemcpyDtoHAsync", err);
  }
  return rc;
}

static int capture(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                   gs__cuda_graph_t *g, gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  CUresult r =
      cu->StreamBeginCapture(cs->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuStreamBeginCapture", err);
  int rc = issue_all(cs, plan, g, NULL, err);
  CUgraph graph = NULL;
  r = cu->StreamEndCapture(cs->stream, &graph);
  if (rc == GS_OK && r != CUDA_SUCCESS)
    rc = gs__cuda_fail(cs, r, "cuStreamEndCapture", err);
  if (rc == GS_OK &&
      (r = cu->GraphInstantiate(&g->exec, graph, 0)) != CUDA_SUCCESS)
    rc = gs__cuda_fail(cs, r, "cuGraphInstantiate", err);
  if (graph)
    cu->GraphDestroy(graph);
  cs->captures += rc == GS_OK;
  return rc;
}

static bool graph_matches(const gs__cuda_session_t *cs,
                          const gs__cuda_graph_t *g,
                          const gs__plan_view_t *plan, const gs_tensor_t **in,
                          const gs__cuda_out_bind_t *bind) {
  const gs_model_t *m = cs->m;
  for (size_t i = 0; i < m->n_inputs; i++) {
    const gs__tensor_t *t = &plan->shapes[m->inputs[i]];
    if (g->in_rank[i] != t->rank || g->in_dtype[i] != in[i]->dtype ||
        g->in_dev[i] != (in[i]->mem == GS_MEM_DEVICE) ||
        memcmp(g->in_dims[i], t->dims, t->rank * sizeof *t->dims))
      return false;
  }
  for (size_t o = 0; o < m->n_outputs; o++)
    if (g->out_bound[o] != out_bound(cs, plan, bind, o))
      return false;
  return true;
}

/* The graph for this shape set and input types: cached, captured again
 * (its algorithms kept) when memory it used moved, or made (layout,
 * memory, conv algorithms, capture) in the least recently used slot. */
static int graph_get(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                     const gs_tensor_t **in, const gs__cuda_out_bind_t *bind,
                     gs__cuda_graph_t **out, gs_error_t *err) {
  gs__cuda_graph_t *g = NULL;
  for (unsigned i = 0; i < cs->n_graphs && !g; i++)
    if (graph_matches(cs, &cs->graphs[i], plan, in, bind))
      g = &cs->graphs[i];
  if (g && !g->exec) { /* its memory grew or moved since its capture */
    int rc = reserve(cs, g, err);
    if (rc == GS_OK) {
      bind_values(cs, plan, g);
      rc = capture(cs, plan, g, err);
    }
    if (rc != GS_OK)
      return rc;
  }
  if (!g) {
    if (cs->n_graphs < cs->max_graphs) {
      g = &cs->graphs[cs->n_graphs++];
    } else {
      g = &cs->graphs[0];
      for (unsigned i = 1; i < cs->n_graphs; i++)
        if (cs->graphs[i].used < g->used)
          g = &cs->graphs[i];
      gs__cuda_graph_release(cs, g);
    }
    uint64_t t0 = gs__cuda_now_ns(), t1;
    int rc = layout(cs, plan, in, bind, g, err);
    if (rc == GS_OK)
      rc = reserve(cs, g, err);
    if (rc == GS_OK)
      bind_values(cs, plan, g);
    t1 = gs__cuda_now_ns();
    cs->t_ns[GS__CT_LAYOUT] += t1 - t0;
    if (rc == GS_OK)
      gs__cuda_conv_cache_open(cs); /* once per device and process */
    for (size_t i = 0; rc == GS_OK && i < cs->m->n_nodes; i++)
      if (cs->m->nodes[i].op->code == GS__OP_CONV)
        rc = gs__cuda_conv_prepare(cs, plan, g, i, err);
    if (rc == GS_OK) {
      gs_error_t ignored; /* a cache not saved is logged, not a failure */
      gs__cuda_conv_cache_flush(cs->device, &ignored);
    }
    t0 = gs__cuda_now_ns();
    cs->t_ns[GS__CT_CONVS] += t0 - t1;
    if (rc == GS_OK)
      rc = capture(cs, plan, g, err);
    cs->t_ns[GS__CT_CAPTURE] += gs__cuda_now_ns() - t0;
    if (rc != GS_OK) {
      gs__cuda_graph_release(cs, g);
      *g = cs->graphs[--cs->n_graphs];
      memset(&cs->graphs[cs->n_graphs], 0, sizeof *g);
      return rc;
    }
  }
  g->used = ++cs->tick;
  *out = g;
  return GS_OK;
}

/* Copies each host input into its pinned staging, unless the caller wrote
 * it there (gs_session_input_buffer); a device input is copied on the GPU
 * to where the graph's copy from staging would have put it. */
static int stage_inputs(gs__cuda_session_t *cs, const gs__cuda_graph_t *g,
                        const gs_tensor_t **in, gs_error_t *err) {
  for (size_t i = 0; i < cs->m->n_inputs; i++) {
    if (!in[i]->bytes)
      continue;
    if (!g->in_dev[i]) {
      if (in[i]->data != cs->pin_in[i])
        memcpy(cs->pin_in[i], in[i]->data, g->in_bytes[i]);
      continue;
    }
    size_t at = g->in_dtype[i] == GS_DTYPE_FP16 ? g->in_half[i] : g->in_raw[i];
    CUresult r = cs->l->cuda.MemcpyDtoDAsync(
        cs->act + at, (CUdeviceptr)(uintptr_t)in[i]->data, g->in_bytes[i],
        cs->stream);
    if (r != CUDA_SUCCESS)
      return gs__cuda_fail(cs, r, "cuMemcpyDtoDAsync (a device input)", err);
  }
  return GS_OK;
}

/* After the launch: each bound output copied on the GPU from its FP32
 * form (the graph's copy for FP16 or NHWC, else the node's own output). */
static int unstage_outputs(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                           const gs__cuda_graph_t *g,
                           const gs__cuda_out_bind_t *bind, gs_error_t *err) {
  for (size_t o = 0; o < cs->m->n_outputs; o++) {
    int v = cs->m->outputs[o];
    size_t bytes = plan->shapes[v].count * 4;
    if (!g->out_bound[o] || !bytes)
      continue;
    size_t at = g->out_dev[o] != NO_OFFSET ? g->out_dev[o] : plan->offset[v];
    CUresult r = cs->l->cuda.MemcpyDtoDAsync(bind[o].ptr, cs->act + at, bytes,
                                             cs->stream);
    if (r != CUDA_SUCCESS)
      return gs__cuda_fail(cs, r, "cuMemcpyDtoDAsync (a bound output)", err);
  }
  return GS_OK;
}

/* An input the caller wrote into staging must fit it: growing the staging
 * would free the memory it lies in. */
static int check_staged(const gs__cuda_session_t *cs, const gs_tensor_t **in,
                        gs_error_t *err) {
  for (size_t i = 0; i < cs->m->n_inputs; i++)
    if (in[i]->data && in[i]->data == cs->pin_in[i] &&
        in[i]->bytes > cs->pin_in_cap[i])
      return gs_error_set(err, GS_EINVAL,
                          "input '%s': %zu bytes given in the session's "
                          "input buffer, which holds %zu",
                          cs->m->input_info[i].name, in[i]->bytes,
                          cs->pin_in_cap[i]);
  return GS_OK;
}

int gs__cuda_session_input_buffer(gs__cuda_session_t *cs, size_t i,
                                  size_t bytes, void **out, gs_error_t *err) {
  *out = NULL;
  CUresult r = cs->l->cuda.CtxSetCurrent(cs->ctx);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuCtxSetCurrent", err);
  int rc = gs__cuda_stage_reserve(cs, i, bytes, err);
  if (rc == GS_OK)
    *out = cs->pin_in[i];
  return rc;
}

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* The end of the run on cs's stream, as cs->wait says: polled (this thread
 * spins, no wake-up to wait for), slept on a blocking-sync event (no core
 * held while the GPU works: what lets seven instances' sessions and their
 * clients share a host's cores), or cuStreamSynchronize under the
 * context's scheduling flag. *what: the call that answered. */
static CUresult wait_run(gs__cuda_session_t *cs, const char **what) {
  const gs__cuda_t *cu = &cs->l->cuda;
  CUresult r;
  switch (cs->wait) {
  case GS_GPU_WAIT_SPIN:
    *what = "running the model (cuStreamQuery)";
    while ((r = cu->StreamQuery(cs->stream)) == CUDA_ERROR_NOT_READY)
      relax();
    return r;
  case GS_GPU_WAIT_BLOCK:
    *what = "running the model (cuEventRecord)";
    if ((r = cu->EventRecord(cs->done, cs->stream)) != CUDA_SUCCESS)
      return r;
    *what = "running the model (cuEventSynchronize)";
    return cu->EventSynchronize(cs->done);
  case GS_GPU_WAIT_DRIVER:
    break;
  }
  *what = "running the model (cuStreamSynchronize)";
  return cu->StreamSynchronize(cs->stream);
}

static int run(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
               const gs_tensor_t **in, const gs__cuda_out_bind_t *bind,
               gs_tensor_t *outputs, gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  CUresult r = cu->CtxSetCurrent(cs->ctx);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuCtxSetCurrent", err);
  gs__cuda_graph_t *g;
  int rc = check_staged(cs, in, err);
  if (rc == GS_OK)
    rc = graph_get(cs, plan, in, bind, &g, err);
  if (rc == GS_OK)
    rc = stage_inputs(cs, g, in, err);
  if (rc != GS_OK)
    return rc;
  if ((r = cu->GraphLaunch(g->exec, cs->stream)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuGraphLaunch", err);
  if ((rc = unstage_outputs(cs, plan, g, bind, err)) != GS_OK)
    return rc;
  const char *what;
  if ((r = wait_run(cs, &what)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, what, err);
  for (size_t o = 0; o < cs->m->n_outputs; o++) {
    outputs[o].mem = g->out_bound[o] ? GS_MEM_DEVICE : GS_MEM_HOST;
    outputs[o].data = g->out_bound[o] ? (void *)(uintptr_t)bind[o].ptr
                                      : (char *)cs->pin_out + g->pin_out_off[o];
  }
  return GS_OK;
}

int gs__cuda_session_run(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                         const gs_tensor_t **in,
                         const gs__cuda_out_bind_t *bind, gs_tensor_t *outputs,
                         gs_error_t *err) {
  uint64_t t0 = gs__cuda_now_ns();
  int rc = run(cs, plan, in, bind, outputs, err);
  cs->t_ns[GS__CT_RUNS] += gs__cuda_now_ns() - t0;
  return rc;
}

/* The plan's convs without a choice in the conv cache (the keys the
 * planning would look up: gs__cuda_conv_prepare). */
static unsigned count_uncached(const gs__cuda_session_t *cs,
                               const gs__plan_view_t *plan) {
  unsigned n = 0;
  for (size_t i = 0; i < cs->m->n_nodes; i++) {
    gs__cuda_conv_key_t key;
    gs__cuda_conv_choice_t choice;
    if (cs->m->nodes[i].op->code != GS__OP_CONV)
      continue;
    gs__cuda_conv_key(cs, plan, i, &key);
    n += !gs__cuda_conv_cache_get(&key, &choice);
  }
  return n;
}

int gs__cuda_session_reserve(gs__cuda_session_t *cs,
                             const gs__plan_view_t *plan,
                             const gs_tensor_t **in, gs_error_t *err) {
  CUresult r = cs->l->cuda.CtxSetCurrent(cs->ctx);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuCtxSetCurrent", err);
  gs__cuda_conv_cache_open(cs); /* once per device and process; untimed */
  gs__cuda_graph_t g = {0};
  uint64_t t0 = gs__cuda_now_ns();
  int rc = check_staged(cs, in, err);
  if (rc == GS_OK)
    rc = layout(cs, plan, in, NULL, &g, err);
  if (rc == GS_OK)
    rc = reserve(cs, &g, err);
  cs->uncached = rc == GS_OK ? count_uncached(cs, plan) : 0;
  gs__cuda_graph_release(cs, &g);
  uint64_t ns = gs__cuda_now_ns() - t0;
  cs->t_ns[GS__CT_RUNS] += ns; /* a part of the plans, as layout is */
  cs->t_ns[GS__CT_LAYOUT] += ns;
  return rc;
}

int gs__cuda_session_replay(gs__cuda_session_t *cs, const gs__plan_view_t *plan,
                            const gs_tensor_t **in, int iters, float *ms,
                            gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  CUresult r = cu->CtxSetCurrent(cs->ctx);
  gs__cuda_graph_t *g;
  int rc = r == CUDA_SUCCESS ? graph_get(cs, plan, in, NULL, &g, err)
                             : gs__cuda_fail(cs, r, "cuCtxSetCurrent", err);
  if (rc != GS_OK)
    return rc;
  if ((r = cu->EventRecord(cs->ev[0], cs->stream)) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuEventRecord", err);
  for (int i = 0; i < iters; i++)
    if ((r = cu->GraphLaunch(g->exec, cs->stream)) != CUDA_SUCCESS)
      return gs__cuda_fail(cs, r, "cuGraphLaunch", err);
  if ((r = cu->EventRecord(cs->ev[1], cs->stream)) != CUDA_SUCCESS ||
      (r = cu->EventSynchronize(cs->ev[1])) != CUDA_SUCCESS ||
      (r = cu->EventElapsedTime(ms, cs->ev[0], cs->ev[1])) != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "timing the replays", err);
  return GS_OK;
}

int gs__cuda_session_profile(gs__cuda_session_t *cs,
                             const gs__plan_view_t *plan,
                             const gs_tensor_t **in, float *ms,
                             gs_error_t *err) {
  const gs__cuda_t *cu = &cs->l->cuda;
  size_t nn = cs->m->n_nodes;
  CUresult r = cu->CtxSetCurrent(cs->ctx);
  if (r != CUDA_SUCCESS)
    return gs__cuda_fail(cs, r, "cuCtxSetCurrent", err);
  gs__cuda_graph_t *g;
  int rc = check_staged(cs, in, err);
  if (rc == GS_OK)
    rc = graph_get(cs, plan, in, NULL, &g, err);
  if (rc != GS_OK)
    return rc;
  CUevent *marks = calloc(nn + 1, sizeof *marks);
  if (!marks)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; rc == GS_OK && i <= nn; i++)
    if ((r = cu->EventCreate(&marks[i], CU_EVENT_DEFAULT)) != CUDA_SUCCESS)
      rc = gs__cuda_fail(cs, r, "cuEventCreate", err);
  if (rc == GS_OK)
    rc = stage_inputs(cs, g, in, err);
  bind_values(cs, plan, g);
  if (rc == GS_OK)
    rc = issue_all(cs, plan, g, marks, err);
  if (rc == GS_OK && (r = cu->StreamSynchronize(cs->stream)) != CUDA_SUCCESS)
    rc = gs__cuda_fail(cs, r, "cuStreamSynchronize", err);
  for (size_t i = 0; rc == GS_OK && i < nn; i++)
    if ((r = cu->EventElapsedTime(&ms[i], marks[i], marks[i + 1])) !=
        CUDA_SUCCESS)
      rc = gs__cuda_fail(cs, r, "cuEventElapsedTime", err);
  for (size_t i = 0; i <= nn; i++)
    if (marks[i])
      cu->EventDestroy(marks[i]);
  free(marks);
  return rc;
}
