/* Load-time graph passes every provider sees: a BatchNormalization folded
 * into the Conv before it, and an Add (a residual) and a Relu or Clip fused
 * into the Conv (Relu or Clip into a Gemm), so that y = act(conv(x, w) + b
 * + z) is one node. Only chains whose intermediates have one reader and are
 * not graph outputs fuse; nodes and values left unused then leave the graph.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"

typedef struct {
  gs_model_t *m;
  unsigned *readers; /* per value: node input slots that read it */
  int *reader;       /* per value: the last node that reads it */
  bool *output;      /* per value: a graph output */
  bool *removed;     /* per node */
} fuse_t;

/* The node that alone reads value v (not a graph output), or -1. */
static int sole_reader(const fuse_t *f, int v) {
  if (v < 0 || f->readers[v] != 1 || f->output[v])
    return -1;
  int j = f->reader[v];
  return j >= 0 && !f->removed[j] ? j : -1;
}

static const gs__tensor_t *const_f32(const fuse_t *f, int v, size_t count) {
  if (v < 0 || f->m->values[v].kind != GS__VALUE_CONST)
    return NULL;
  const gs__tensor_t *t = &f->m->values[v].constant;
  return t->dtype == GS_DTYPE_FP32 && t->count == count && t->data ? t : NULL;
}

/* Adds an FP32 constant the model owns, taking data; -1 on no memory. */
static int add_const(fuse_t *f, const char *base, const char *suffix,
                     unsigned rank, const int64_t *dims, float *data) {
  gs_model_t *m = f->m;
  gs__value_t *grown = realloc(m->values, (m->n_values + 1) * sizeof *grown);
  size_t len = strlen(base) + strlen(suffix) + 1;
  char *name = malloc(len);
  if (grown)
    m->values = grown;
  if (!grown || !name) {
    free(name);
    return -1;
  }
  snprintf(name, len, "%s%s", base, suffix);
  gs__value_t *v = &m->values[m->n_values];
  memset(v, 0, sizeof *v);
  v->name = name;
  v->kind = GS__VALUE_CONST;
  v->dtype = GS_DTYPE_FP32;
  v->input_index = v->producer = v->last_use = -1;
  v->constant.dtype = GS_DTYPE_FP32;
  v->constant.rank = rank;
  memcpy(v->constant.dims, dims, rank * sizeof *dims);
  v->constant.data = data;
  v->constant.count = 1;
  for (unsigned i = 0; i < rank; i++)
    v->constant.count *= (size_t)dims[i];
  return (int)m->n_values++;
}

/* Folds BatchNormalization bn into conv: w' = w * a, b' = (b - mean) * a +
 * beta per filter, a = scale / sqrt(var + eps). false when it does not
 * apply (weights not constant, shapes off); rc set on no memory. */
static bool fold_batchnorm(fuse_t *f, gs__node_t *conv, const gs__node_t *bn,
                           int *rc, gs_error_t *err) {
  gs__value_t *wv = &f->m->values[conv->in[1]];
  if (wv->kind != GS__VALUE_CONST || wv->constant.dtype != GS_DTYPE_FP32 ||
      wv->constant.rank < 3 || !wv->constant.data || wv->constant.dims[0] < 1)
    return false;
  size_t mm = (size_t)wv->constant.dims[0], per = wv->constant.count / mm;
  const gs__tensor_t *p[4], *b = NULL;
  for (unsigned k = 0; k < 4; k++)
    if (!(p[k] = const_f32(f, bn->in[k + 1], mm)))
      return false;
  bool has_b = conv->n_in > 2 && conv->in[2] >= 0;
  if (has_b && !(b = const_f32(f, conv->in[2], mm)))
    return false;
  float *w2 = malloc(wv->constant.count * sizeof *w2 + 1);
  float *b2 = malloc(mm * sizeof *b2);
  if (!w2 || !b2) {
    free(w2);
    free(b2);
    *rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    return false;
  }
  const float *w = wv->constant.data, *scale = p[0]->data, *beta = p[1]->data;
  const float *mean = p[2]->data, *var = p[3]->data;
  for (size_t o = 0; o < mm; o++) {
    float a = scale[o] / sqrtf(var[o] + bn->p.epsilon);
    for (size_t i = 0; i < per; i++)
      w2[o * per + i] = w[o * per + i] * a;
    b2[o] = ((b ? ((const float *)b->data)[o] : 0.0f) - mean[o]) * a + beta[o];
  }
  int64_t wdims[GS_TENSOR_MAX_RANK], bdims[1] = {(int64_t)mm};
  unsigned wrank = wv->constant.rank;
  memcpy(wdims, wv->constant.dims, sizeof wdims);
  const char *base = f->m->values[bn->out].name;
  int wi = add_const(f, base, "/folded_W", wrank, wdims, w2);
  int bi = wi < 0 ? -1 : add_const(f, base, "/folded_B", 1, bdims, b2);
  if (wi < 0 || bi < 0) {
    if (wi < 0)
      free(w2);
    free(b2);
    *rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    return false;
  }
  if (!has_b) {
    int *in = realloc(conv->in, 4 * sizeof *in);
    if (!in) {
      *rc = gs_error_set(err, GS_ENOMEM, "out of memory");
      return false;
    }
    conv->in = in;
    conv->n_in = 3;
  }
  conv->in[1] = wi;
  conv->in[2] = bi;
  return true;
}

/* Appends Add's other operand to conv as its residual input (position 3). */
static bool fuse_residual(fuse_t *f, gs__node_t *conv, const gs__node_t *add,
                          int *rc, gs_error_t *err) {
  int v = conv->out, z = add->in[0] == v ? add->in[1] : add->in[0];
  if (z < 0 || z == v || f->m->values[z].kind == GS__VALUE_CONST ||
      f->m->values[z].dtype != GS_DTYPE_FP32)
    return false;
  int *in = realloc(conv->in, 4 * sizeof *in);
  if (!in) {
    *rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    return false;
  }
  conv->in = in;
  if (conv->n_in < 3)
    conv->in[2] = -1;
  conv->in[3] = z;
  conv->n_in = 4;
  conv->p.residual = 3;
  return true;
}

/* Relu or Clip (constant bounds) as the node's activation. */
static bool fuse_act(fuse_t *f, gs__node_t *node, const gs__node_t *act) {
  if (act->op->code == GS__OP_RELU) {
    node->p.act = GS__ACT_RELU;
    return true;
  }
  float bound[2] = {act->p.act_min, act->p.act_max};
  for (unsigned k = 1; k < act->n_in && k < 3; k++) {
    if (act->in[k] < 0)
      continue;
    const gs__tensor_t *t = const_f32(f, act->in[k], 1);
    if (!t)
      return false;
    bound[k - 1] = *(const float *)t->data;
  }
  node->p.act = GS__ACT_CLIP;
  node->p.act_min = bound[0];
  node->p.act_max = bound[1];
  return true;
}

/* Tries to absorb the sole reader r of node's output; true when done. */
static bool absorb(fuse_t *f, gs__node_t *node, const gs__node_t *r, int *rc,
                   gs_error_t *err) {
  bool conv = node->op->code == GS__OP_CONV;
  if (f->m->values[node->out].dtype != GS_DTYPE_FP32 || node->p.act)
    return false;
  switch (r->op->code) {
  case GS__OP_BATCHNORM:
    return conv && !node->p.residual && r->in[0] == node->out &&
           fold_batchnorm(f, node, r, rc, err);
  case GS__OP_ADD:
    return conv && !node->p.residual && fuse_residual(f, node, r, rc, err);
  case GS__OP_RELU:
  case GS__OP_CLIP:
    return r->in[0] == node->out && fuse_act(f, node, r);
  default:
    return false;
  }
}

/* Fuses what follows node i; the node moves to the slot of the last node
 * it absorbs, after every producer of what it now reads. */
static int fuse_from(fuse_t *f, size_t i, gs_error_t *err) {
  gs__node_t *nodes = f->m->nodes;
  size_t cur = i;
  int rc = GS_OK;
  for (;;) {
    int j = sole_reader(f, nodes[cur].out);
    if (j < 0 || !absorb(f, &nodes[cur], &nodes[j], &rc, err))
      return rc;
    nodes[cur].out = nodes[j].out;
    free(nodes[j].name);
    free(nodes[j].in);
    nodes[j] = nodes[cur];
    memset(&nodes[cur], 0, sizeof nodes[cur]);
    f->removed[cur] = true;
    cur = (size_t)j;
    for (unsigned k = 0; k < nodes[cur].n_in; k++)
      if (nodes[cur].in[k] >= 0)
        f->reader[nodes[cur].in[k]] = j;
  }
}

/* Drops removed nodes and the values nothing produces or reads any more,
 * renumbering, then recomputes producers and lifetimes. */
static int compact(fuse_t *f, gs_error_t *err) {
  gs_model_t *m = f->m;
  int *map = malloc((m->n_values + 1) * sizeof *map);
  if (!map)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  size_t nn = 0, nv = 0;
  for (size_t i = 0; i < m->n_nodes; i++)
    if (!f->removed[i])
      m->nodes[nn++] = m->nodes[i];
  m->n_nodes = nn;
  memset(f->readers, 0, m->n_values * sizeof *f->readers);
  for (size_t i = 0; i < nn; i++) {
    for (unsigned k = 0; k < m->nodes[i].n_in; k++)
      if (m->nodes[i].in[k] >= 0)
        f->readers[m->nodes[i].in[k]]++;
    f->readers[m->nodes[i].out]++; /* produced: kept */
  }
  for (size_t v = 0; v < m->n_values; v++) {
    gs__value_t *val = &m->values[v];
    if (f->readers[v] || f->output[v] || val->kind == GS__VALUE_INPUT) {
      map[v] = (int)nv;
      m->values[nv++] = *val;
    } else {
      map[v] = -1;
      free(val->name);
      free(val->constant.data);
    }
  }
  m->n_values = nv;
  for (size_t v = 0; v < nv; v++) {
    m->values[v].producer = -1;
    m->values[v].last_use = -1;
  }
  for (size_t i = 0; i < m->n_inputs; i++)
    m->inputs[i] = map[m->inputs[i]];
  for (size_t o = 0; o < m->n_outputs; o++)
    m->outputs[o] = map[m->outputs[o]];
  m->max_node_inputs = 0;
  for (size_t i = 0; i < nn; i++) {
    gs__node_t *n = &m->nodes[i];
    for (unsigned k = 0; k < n->n_in; k++)
      if (n->in[k] >= 0) {
        n->in[k] = map[n->in[k]];
        m->values[n->in[k]].last_use = (int)i;
      }
    n->out = map[n->out];
    m->values[n->out].producer = (int)i;
    if (n->n_in > m->max_node_inputs)
      m->max_node_inputs = n->n_in;
  }
  for (size_t o = 0; o < m->n_outputs; o++)
    m->values[m->outputs[o]].last_use = (int)nn;
  free(map);
  return GS_OK;
}

int gs__fuse_graph(gs_model_t *m, gs_error_t *err) {
  fuse_t f = {.m = m};
  int rc = GS_OK;
  size_t n_values = m->n_values;
  f.readers = calloc(n_values + 2 * m->n_nodes + 1, sizeof *f.readers);
  f.reader = calloc(n_values + 2 * m->n_nodes + 1, sizeof *f.reader);
  f.output = calloc(n_values + 2 * m->n_nodes + 1, sizeof *f.output);
  f.removed = calloc(m->n_nodes + 1, sizeof *f.removed);
  if (!f.readers || !f.reader || !f.output || !f.removed) {
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < m->n_nodes; i++)
    for (unsigned k = 0; k < m->nodes[i].n_in; k++) {
      int v = m->nodes[i].in[k];
      if (v >= 0) {
        f.readers[v]++;
        f.reader[v] = (int)i;
      }
    }
  for (size_t o = 0; o < m->n_outputs; o++)
    f.output[m->outputs[o]] = true;
  for (size_t i = 0; rc == GS_OK && i < m->n_nodes; i++) {
    gs__op_code_t code = f.removed[i] ? GS__OP_IDENTITY : m->nodes[i].op->code;
    if (code == GS__OP_CONV || code == GS__OP_GEMM)
      rc = fuse_from(&f, i, err);
  }
  /* Each folded BatchNormalization adds two constants past n_values,
   * hence the room for 2 * n_nodes more in the per-value arrays. */
  if (rc == GS_OK)
    rc = compact(&f, err);
out:
  free(f.readers);
  free(f.reader);
  free(f.output);
  free(f.removed);
  return rc;
}
