/* Loading a model: the ONNX protobuf becomes a checked graph of values and
 * nodes in topological order, with every op, attribute and type checked
 * against what the engine runs, and the inputs and outputs as metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "engine/model_digest.h"

void gs_model_limits_default(gs_model_limits_t *limits) {
  limits->max_file_bytes = (size_t)2 << 30;
  limits->max_nodes = 100000;
  limits->max_values = 400000;
  limits->max_tensor_bytes = (size_t)2 << 30;
}

/* Name -> value index, open addressing; built once per load. */
typedef struct {
  int *slot; /* -1 empty */
  size_t mask;
  const gs__value_t *values;
} name_table_t;

static size_t name_hash(const char *s) {
  size_t h = 1469598103934665603u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

static int name_find(const name_table_t *t, const char *name) {
  for (size_t i = name_hash(name) & t->mask;; i = (i + 1) & t->mask) {
    int v = t->slot[i];
    if (v < 0 || strcmp(t->values[v].name, name) == 0)
      return v;
  }
}

static void name_insert(name_table_t *t, const char *name, int v) {
  size_t i = name_hash(name) & t->mask;
  while (t->slot[i] >= 0)
    i = (i + 1) & t->mask;
  t->slot[i] = v;
}

typedef struct {
  gs_model_t *m;
  const Onnx__GraphProto *g;
  name_table_t names;
  const Onnx__NodeProto **order; /* node protos, topologically sorted */
  unsigned *position;            /* their index in the file */
} build_t;

static char *copy_name(const char *s) {
  return strdup(s ? s : "");
}

/* Adds a named value; fails if the name is empty or taken. */
static int value_add(build_t *b, const char *name, gs__value_kind_t kind,
                     const char *what, gs_error_t *err) {
  gs_model_t *m = b->m;
  if (!name || !*name)
    return gs_error_set(err, GS_EPARSE, "%s has no name", what);
  if (m->n_values >= m->limits.max_values)
    return gs_error_set(err, GS_ELIMIT,
                        "graph has more than %zu named tensors (limit)",
                        m->limits.max_values);
  if (name_find(&b->names, name) >= 0)
    return gs_error_set(err, GS_EPARSE, "%s '%s' reuses a tensor name", what,
                        name);
  gs__value_t *v = &m->values[m->n_values];
  memset(v, 0, sizeof *v);
  if (!(v->name = strdup(name)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  v->kind = kind;
  v->producer = -1;
  v->last_use = -1;
  v->input_index = -1;
  name_insert(&b->names, v->name, (int)m->n_values++);
  return GS_OK;
}

static int add_initializers(build_t *b, gs_error_t *err) {
  gs_model_t *m = b->m;
  if (b->g->n_sparse_initializer > 0)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "sparse initializers are not supported");
  for (size_t i = 0; i < b->g->n_initializer; i++) {
    Onnx__TensorProto *tp = b->g->initializer[i];
    int rc = value_add(b, tp->name, GS__VALUE_CONST, "initializer", err);
    if (rc != GS_OK)
      return rc;
    gs__value_t *v = &m->values[m->n_values - 1];
    rc = gs__tensor_from_proto(&v->constant, tp, m->limits.max_tensor_bytes,
                               err);
    if (rc != GS_OK)
      return gs_error_prefix(err, "initializer '%s' ", v->name);
    v->dtype = v->constant.dtype;
  }
  return GS_OK;
}

static int add_inputs(build_t *b, gs_error_t *err) {
  gs_model_t *m = b->m;
  m->inputs = calloc(b->g->n_input + 1, sizeof *m->inputs);
  m->input_info = calloc(b->g->n_input + 1, sizeof *m->input_info);
  if (!m->inputs || !m->input_info)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; i < b->g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = b->g->input[i];
    /* Before IR 4 initializers were listed as inputs too: they stay
     * constants, as other runtimes keep them. */
    int known = vi->name ? name_find(&b->names, vi->name) : -1;
    if (known >= 0 && m->values[known].kind == GS__VALUE_CONST)
      continue;
    int rc = value_add(b, vi->name, GS__VALUE_INPUT, "graph input", err);
    if (rc != GS_OK)
      return rc;
    gs__value_t *v = &m->values[m->n_values - 1];
    gs_tensor_info_t *info = &m->input_info[m->n_inputs];
    rc = gs__info_from_value(info, vi, err);
    if (rc != GS_OK)
      return gs_error_prefix(err, "graph input '%s' ", v->name);
    info->name = v->name;
    v->dtype = info->dtype;
    v->input_index = (int)m->n_inputs;
    m->inputs[m->n_inputs++] = (int)(m->n_values - 1);
  }
  return GS_OK;
}

/* The error for a node whose op the engine does not run. */
static int check_op(const Onnx__NodeProto *np, unsigned pos, size_t n_nodes,
                    gs_error_t *err) {
  const char *op = np->op_type ? np->op_type : "";
  const char *domain = np->domain ? np->domain : "";
  bool onnx = !*domain || strcmp(domain, "ai.onnx") == 0;
  if (onnx && gs__op_find(op))
    return GS_OK;
  char where[160];
  if (np->name && *np->name)
    snprintf(where, sizeof where, "node '%.100s' (node %u of %zu)", np->name,
             pos, n_nodes);
  else
    snprintf(where, sizeof where, "node #%u (of %zu, unnamed)", pos, n_nodes);
  return gs_error_set(err, GS_EUNSUPPORTED,
                      "unsupported op '%s%s%.100s' at %s; the engine runs: %s",
                      onnx ? "" : domain, onnx ? "" : ":", op, where,
                      gs__op_list());
}

/* Registers node outputs, resolving nothing yet so that nodes may appear
 * in any order in the file. */
static int add_node_outputs(build_t *b, gs_error_t *err) {
  const Onnx__GraphProto *g = b->g;
  for (size_t i = 0; i < g->n_node; i++) {
    int rc = check_op(g->node[i], (unsigned)i, g->n_node, err);
    if (rc != GS_OK)
      return rc;
  }
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *np = g->node[i];
    if (np->n_output != 1)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "node '%s' (%s) has %zu outputs; the op has one",
                          np->name ? np->name : "", np->op_type, np->n_output);
    int rc = value_add(b, np->output[0], GS__VALUE_NODE, "node output", err);
    if (rc != GS_OK)
      return gs_error_prefix(err, "node '%s' (%s): ", np->name ? np->name : "",
                             np->op_type);
    b->m->values[b->m->n_values - 1].producer = (int)i;
  }
  return GS_OK;
}

/* Kahn's algorithm over the file's node indexes; a leftover node is on a
 * cycle (or after one). */
static int sort_nodes(build_t *b, gs_error_t *err) {
  const Onnx__GraphProto *g = b->g;
  size_t n = g->n_node, edges = 0;
  int rc = GS_OK;
  unsigned *indeg = calloc(n + 1, sizeof *indeg);
  size_t *first = calloc(n + 2, sizeof *first);
  unsigned *queue = calloc(n + 1, sizeof *queue), *succ = NULL;
  if (!indeg || !first || !queue) {
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < g->node[i]->n_input; k++) {
      const char *in = g->node[i]->input[k];
      int v = in && *in ? name_find(&b->names, in) : -1;
      if (in && *in && v < 0) {
        rc = gs_error_set(err, GS_EPARSE,
                          "node '%s' (%s): input '%s' is not a graph input, "
                          "initializer or node output",
                          g->node[i]->name ? g->node[i]->name : "",
                          g->node[i]->op_type, in);
        goto out;
      }
      if (v >= 0 && b->m->values[v].kind == GS__VALUE_NODE) {
        indeg[i]++;
        first[b->m->values[v].producer + 1]++;
        edges++;
      }
    }
  for (size_t i = 0; i < n; i++)
    first[i + 1] += first[i];
  if (!(succ = calloc(edges + 1, sizeof *succ))) {
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < g->node[i]->n_input; k++) {
      const char *in = g->node[i]->input[k];
      int v = in && *in ? name_find(&b->names, in) : -1;
      if (v >= 0 && b->m->values[v].kind == GS__VALUE_NODE)
        succ[first[b->m->values[v].producer]++] = (unsigned)i;
    }
  for (size_t i = n; i > 0; i--) /* filling moved each start to its end */
    first[i] = first[i - 1];
  first[0] = 0;
  size_t head = 0, tail = 0;
  for (size_t i = 0; i < n; i++)
    if (indeg[i] == 0)
      queue[tail++] = (unsigned)i;
  while (head < tail) {
    unsigned u = queue[head++];
    b->order[head - 1] = g->node[u];
    b->position[head - 1] = u;
    for (size_t e = first[u]; e < first[u + 1]; e++)
      if (--indeg[succ[e]] == 0)
        queue[tail++] = succ[e];
  }
  if (tail < n) {
    for (size_t i = 0; i < n; i++)
      if (indeg[i] > 0) {
        rc = gs_error_set(
            err, GS_EPARSE, "node '%s' (%s) is on a cycle of the graph",
            g->node[i]->name ? g->node[i]->name : "", g->node[i]->op_type);
        break;
      }
  }
out:
  free(indeg);
  free(first);
  free(queue);
  free(succ);
  return rc;
}

static int check_attributes(const gs__node_t *n, const Onnx__NodeProto *np,
                            gs_error_t *err) {
  char label[160];
  for (size_t a = 0; a < np->n_attribute; a++) {
    const char *name = np->attribute[a]->name ? np->attribute[a]->name : "";
    bool known = false;
    for (const char *const *k = n->op->attrs; k && *k; k++)
      known = known || strcmp(*k, name) == 0;
    if (!known)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: attribute '%s' is not supported",
                          gs__node_label(n, label, sizeof label), name);
  }
  return GS_OK;
}

/* Fills node i (topological position) and types its output. */
static int build_node(build_t *b, size_t i, gs_error_t *err) {
  gs_model_t *m = b->m;
  const Onnx__NodeProto *np = b->order[i];
  gs__node_t *n = &m->nodes[i];
  char label[160];
  n->position = b->position[i];
  n->op = gs__op_find(np->op_type);
  n->n_in = (unsigned)np->n_input;
  if (!(n->name = copy_name(np->name)) ||
      !(n->in = calloc(n->n_in + 1, sizeof *n->in)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  gs__node_label(n, label, sizeof label);
  if (n->n_in < n->op->min_in || n->n_in > n->op->max_in)
    return gs_error_set(err, GS_EPARSE,
                        "%s has %u inputs; the op takes %u to "
                        "%u",
                        label, n->n_in, n->op->min_in, n->op->max_in);
  if (n->n_in > m->max_node_inputs)
    m->max_node_inputs = n->n_in;
  gs_dtype_t *types = calloc(n->n_in + 1, sizeof *types);
  if (!types)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (unsigned k = 0; k < n->n_in; k++) {
    const char *in = np->input[k];
    n->in[k] = in && *in ? name_find(&b->names, in) : -1;
    if (n->in[k] >= 0) {
      types[k] = m->values[n->in[k]].dtype;
      m->values[n->in[k]].last_use = (int)i;
    }
  }
  n->out = name_find(&b->names, np->output[0]);
  int rc = check_attributes(n, np, err);
  if (rc == GS_OK)
    rc = n->op->check(n, np, m->opset, types, &m->values[n->out].dtype, err);
  free(types);
  if (rc != GS_OK)
    return rc;
  m->values[n->out].producer = (int)i;
  int d = n->op->data_input;
  if (d >= 0 && (unsigned)d < n->n_in && n->in[d] >= 0) {
    gs__value_t *v = &m->values[n->in[d]];
    if (v->kind == GS__VALUE_NODE)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: input '%s' must be an initializer or a graph "
                          "input (computed shapes are not supported)",
                          label, v->name);
    v->needs_data = true;
  }
  return GS_OK;
}

static int add_outputs(build_t *b, gs_error_t *err) {
  gs_model_t *m = b->m;
  const Onnx__GraphProto *g = b->g;
  if (g->n_output == 0)
    return gs_error_set(err, GS_EPARSE, "graph has no outputs");
  m->outputs = calloc(g->n_output, sizeof *m->outputs);
  m->output_info = calloc(g->n_output, sizeof *m->output_info);
  if (!m->outputs || !m->output_info)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; i < g->n_output; i++) {
    const Onnx__ValueInfoProto *vi = g->output[i];
    int v = vi->name ? name_find(&b->names, vi->name) : -1;
    if (v < 0)
      return gs_error_set(err, GS_EPARSE,
                          "graph output '%s' is not produced by the graph",
                          vi->name ? vi->name : "");
    gs_tensor_info_t *info = &m->output_info[i];
    int rc = gs__info_from_value(info, vi, err);
    if (rc != GS_OK)
      return gs_error_prefix(err, "graph output '%s' ", vi->name);
    if (info->dtype != m->values[v].dtype)
      return gs_error_set(err, GS_EPARSE,
                          "graph output '%s' is declared %s but computed %s",
                          vi->name, gs_dtype_name(info->dtype),
                          gs_dtype_name(m->values[v].dtype));
    info->name = m->values[v].name;
    m->values[v].last_use = (int)m->n_nodes;
    m->outputs[m->n_outputs++] = v;
  }
  return GS_OK;
}

static int find_opset(gs_model_t *m, const Onnx__ModelProto *mp,
                      gs_error_t *err) {
  m->opset = 0;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
    const char *d = o->domain ? o->domain : "";
    if ((!*d || strcmp(d, "ai.onnx") == 0) && o->has_version)
      m->opset = o->version > INT32_MAX ? INT32_MAX : (int)o->version;
  }
  if (m->opset == 0)
    return gs_error_set(err, GS_EPARSE, "model imports no ai.onnx opset");
  if (m->opset < GS__OPSET_MIN || m->opset > GS__OPSET_MAX)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "model uses opset %d; the engine implements opsets "
                        "%d to %d",
                        m->opset, GS__OPSET_MIN, GS__OPSET_MAX);
  return GS_OK;
}

static int build_graph(gs_model_t *m, const Onnx__ModelProto *mp,
                       gs_error_t *err) {
  const Onnx__GraphProto *g = mp->graph;
  build_t b = {.m = m, .g = g};
  if (!g)
    return gs_error_set(err, GS_EPARSE, "model has no graph");
  int rc = find_opset(m, mp, err);
  if (rc != GS_OK)
    return rc;
  if (g->n_node > m->limits.max_nodes)
    return gs_error_set(err, GS_ELIMIT,
                        "graph has %zu nodes, over the limit "
                        "of %zu",
                        g->n_node, m->limits.max_nodes);
  size_t max = g->n_initializer + g->n_input + g->n_node;
  if (max > m->limits.max_values)
    max = m->limits.max_values;
  size_t cap = 16;
  while (cap < 2 * max)
    cap *= 2;
  b.names.slot = malloc(cap * sizeof *b.names.slot);
  b.names.mask = cap - 1;
  m->values = calloc(max + 1, sizeof *m->values);
  m->nodes = calloc(g->n_node + 1, sizeof *m->nodes);
  b.order = calloc(g->n_node + 1, sizeof *b.order);
  b.position = calloc(g->n_node + 1, sizeof *b.position);
  if (!b.names.slot || !m->values || !m->nodes || !b.order || !b.position) {
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    goto out;
  }
  memset(b.names.slot, 0xff, cap * sizeof *b.names.slot);
  b.names.values = m->values;
  if ((rc = add_initializers(&b, err)) != GS_OK ||
      (rc = add_inputs(&b, err)) != GS_OK ||
      (rc = add_node_outputs(&b, err)) != GS_OK ||
      (rc = sort_nodes(&b, err)) != GS_OK)
    goto out;
  for (size_t i = 0; i < g->n_node; i++, m->n_nodes++)
    if ((rc = build_node(&b, i, err)) != GS_OK) {
      m->n_nodes++; /* so that destroy frees the half-built node */
      goto out;
    }
  rc = add_outputs(&b, err);
out:
  free(b.names.slot);
  free(b.order);
  free(b.position);
  return rc;
}

int gs_model_load_buffer(gs_model_t **out, const void *data, size_t size,
                         const gs_model_limits_t *limits, gs_error_t *err) {
  gs__pb_budget_t budget;
  ProtobufCMessage *msg = NULL;
  gs_model_t *m = NULL;
  int rc = GS_OK;
  *out = NULL;
  if (!(m = calloc(1, sizeof *m)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  if (limits)
    m->limits = *limits;
  else
    gs_model_limits_default(&m->limits);
  if (size > m->limits.max_file_bytes) {
    rc = gs_error_set(err, GS_ELIMIT,
                      "model is %zu bytes, over the limit of %zu bytes", size,
                      m->limits.max_file_bytes);
    goto out;
  }
  if (size == 0) {
    rc = gs_error_set(err, GS_EPARSE, "model is empty");
    goto out;
  }
  rc = gs__pb_unpack(&onnx__model_proto__descriptor, data, size, &budget, &msg,
                     err);
  if (rc != GS_OK) {
    gs_error_prefix(err, "not an ONNX model: ");
    goto out;
  }
  rc = build_graph(m, (const Onnx__ModelProto *)msg, err);
  if (rc == GS_OK)
    rc = gs__fuse_graph(m, err);
  if (rc == GS_OK)
    rc = gs__conv_prepack(m, err);
  if (rc == GS_OK)
    gs__model_digest(data, size, m->digest);
out:
  if (msg)
    protobuf_c_message_free_unpacked(msg, &budget.allocator);
  if (rc == GS_OK)
    *out = m;
  else
    gs_model_destroy(m);
  return rc;
}

int gs_model_load_file(gs_model_t **out, const char *path,
                       const gs_model_limits_t *limits, gs_error_t *err) {
  gs_model_limits_t lim;
  uint8_t *data = NULL;
  size_t size = 0;
  if (limits)
    lim = *limits;
  else
    gs_model_limits_default(&lim);
  *out = NULL;
  int rc = gs__read_file(path, lim.max_file_bytes, &data, &size, err);
  if (rc != GS_OK)
    return rc;
  rc = gs_model_load_buffer(out, data, size, &lim, err);
  free(data);
  if (rc != GS_OK)
    gs_error_prefix(err, "loading '%s': ", path);
  return rc;
}

void gs_model_destroy(gs_model_t *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->n_values; i++) {
    free(m->values[i].name);
    free(m->values[i].constant.data);
  }
  for (size_t i = 0; i < m->n_nodes; i++) {
    free(m->nodes[i].name);
    free(m->nodes[i].in);
    free(m->nodes[i].cpu_weights);
  }
  free(m->values);
  free(m->nodes);
  free(m->inputs);
  free(m->outputs);
  free(m->input_info);
  free(m->output_info);
  free(m);
}

size_t gs_model_input_count(const gs_model_t *m) {
  return m->n_inputs;
}

size_t gs_model_output_count(const gs_model_t *m) {
  return m->n_outputs;
}

const gs_tensor_info_t *gs_model_input(const gs_model_t *m, size_t i) {
  return i < m->n_inputs ? &m->input_info[i] : NULL;
}

const gs_tensor_info_t *gs_model_output(const gs_model_t *m, size_t i) {
  return i < m->n_outputs ? &m->output_info[i] : NULL;
}

bool gs_model_input_host_only(const gs_model_t *m, size_t i) {
  return i < m->n_inputs && (m->input_info[i].dtype == GS_DTYPE_BYTES ||
                             m->values[m->inputs[i]].needs_data);
}

size_t gs_model_node_count(const gs_model_t *m) {
  return m->n_nodes;
}

const char *gs__node_label(const gs__node_t *n, char *buf, size_t size) {
  if (n->name && *n->name)
    snprintf(buf, size, "node '%.100s' (%s)", n->name, n->op->name);
  else
    snprintf(buf, size, "node #%u (%s)", n->position, n->op->name);
  return buf;
}
