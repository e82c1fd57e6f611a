/* Sessions: shape inference and a memory plan per input shape set (kept in
 * a small cache, so that a batch size seen before costs nothing to plan),
 * and the run that walks the nodes in topological order over one arena. */
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_int.h"
#include "engine/engine_int.h"

#define ARENA_ALIGN 64

/* One input shape set: every value's shape, and arena offsets. */
typedef struct {
  gs__tensor_t *shapes;   /* per value; data NULL */
  size_t *offset;         /* per value; arena offset of NODE values */
  size_t *out_offset;     /* per output; a copy of an INPUT or CONST output */
  size_t *scratch;        /* per node; bytes of scratch its kernel needs */
  size_t *scratch_offset; /* per node; arena offset of that scratch */
  size_t arena_bytes;
  void **key_data; /* per input: a copy of needs_data inputs */
  unsigned long long used;
} plan_t;

struct gs_session_s {
  const gs_model_t *model;
  gs_session_options_t opts;
  plan_t *plans;
  unsigned n_plans;
  plan_t *current;
  unsigned long long tick;
  void *arena;
  size_t arena_bytes;
  gs__tensor_t *bound;    /* per value, shapes plus data for the current run */
  gs__tensor_t *args;     /* max_node_inputs scratch */
  const gs_tensor_t **in; /* the caller's inputs in model order */
  gs_tensor_t *outputs;
  gs__cuda_session_t *gpu;   /* the CUDA provider's part; NULL on the CPU */
  gs__cuda_out_bind_t *bind; /* per output: the next run's device binding */
  /* CPU provider, per input: an FP16 input widened to FP32 (its tensor and
   * buffer), and the buffer gs_session_input_buffer hands out. */
  gs_tensor_t *wide;
  void **wide_buf, **user_buf;
  size_t *wide_cap, *user_cap;
  /* Per value: the heap buffer of a BYTES node output (or of a BYTES
   * input or initializer given back as an output), sized at run time. */
  void **bytes_buf;
  size_t *bytes_cap;
};

static void plan_release(plan_t *p, size_t n_inputs) {
  free(p->shapes);
  free(p->offset);
  free(p->out_offset);
  free(p->scratch);
  free(p->scratch_offset);
  for (size_t i = 0; p->key_data && i < n_inputs; i++)
    free(p->key_data[i]);
  free(p->key_data);
  memset(p, 0, sizeof *p);
}

static int provider_start(gs_session_t *s, gs_error_t *err);

int gs_session_create(gs_session_t **out, const gs_model_t *model,
                      const gs_session_options_t *opts, gs_error_t *err) {
  *out = NULL;
  gs_session_t *s = calloc(1, sizeof *s);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  s->model = model;
  gs_session_options_t def;
  gs_session_options_default(&def);
  s->opts = opts ? *opts : def;
  if (s->opts.max_plan_bytes == 0)
    s->opts.max_plan_bytes = def.max_plan_bytes;
  if (s->opts.max_cached_plans == 0)
    s->opts.max_cached_plans = def.max_cached_plans;
  if (s->opts.max_cached_plans > 1024)
    s->opts.max_cached_plans = 1024;
  s->plans = calloc(s->opts.max_cached_plans, sizeof *s->plans);
  s->bound = calloc(model->n_values + 1, sizeof *s->bound);
  s->args = calloc(model->max_node_inputs + 1, sizeof *s->args);
  s->in = calloc(model->n_inputs + 1, sizeof *s->in);
  s->outputs = calloc(model->n_outputs + 1, sizeof *s->outputs);
  s->bind = calloc(model->n_outputs + 1, sizeof *s->bind);
  size_t ni = model->n_inputs + 1;
  s->wide = calloc(ni, sizeof *s->wide);
  s->wide_buf = calloc(ni, sizeof *s->wide_buf);
  s->user_buf = calloc(ni, sizeof *s->user_buf);
  s->wide_cap = calloc(ni, sizeof *s->wide_cap);
  s->user_cap = calloc(ni, sizeof *s->user_cap);
  s->bytes_buf = calloc(model->n_values + 1, sizeof *s->bytes_buf);
  s->bytes_cap = calloc(model->n_values + 1, sizeof *s->bytes_cap);
  if (!s->plans || !s->bound || !s->args || !s->in || !s->outputs || !s->bind ||
      !s->wide || !s->wide_buf || !s->user_buf || !s->wide_cap ||
      !s->user_cap || !s->bytes_buf || !s->bytes_cap) {
    gs_session_destroy(s);
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  int rc = provider_start(s, err);
  if (rc != GS_OK) {
    gs_session_destroy(s);
    return rc;
  }
  *out = s;
  return GS_OK;
}

/* CUDA asked for: the GPU or an error. AUTO: the GPU when it is usable
 * here (driver, GPU, libraries, kernels) and runs every node, else the
 * CPU. */
static int provider_start(gs_session_t *s, gs_error_t *err) {
  gs_provider_t want = s->opts.provider;
  if (want == GS_PROVIDER_CPU) {
    if (s->opts.precision == GS_PRECISION_FP16)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "the cpu provider computes in FP32 only");
    s->opts.precision = GS_PRECISION_FP32;
    return GS_OK;
  }
  gs_error_t gpu_err = {0};
  int rc = gs__cuda_session_create(&s->gpu, s->model, &s->opts, &gpu_err);
  if (rc == GS_OK) {
    s->opts.provider = GS_PROVIDER_CUDA;
    if (s->opts.precision == GS_PRECISION_DEFAULT)
      s->opts.precision = GS_PRECISION_FP16;
    return GS_OK;
  }
  if (want == GS_PROVIDER_CUDA || (rc != GS_ENODEV && rc != GS_EUNSUPPORTED)) {
    if (err)
      *err = gpu_err;
    return rc;
  }
  s->opts.provider = GS_PROVIDER_CPU;
  s->opts.precision = GS_PRECISION_FP32;
  return GS_OK;
}

gs_provider_t gs_session_provider(const gs_session_t *s) {
  return s->opts.provider;
}

gs_precision_t gs_session_precision(const gs_session_t *s) {
  return s->opts.precision;
}

void gs_session_destroy(gs_session_t *s) {
  if (!s)
    return;
  gs__cuda_session_destroy(s->gpu);
  for (unsigned i = 0; s->plans && i < s->n_plans; i++)
    plan_release(&s->plans[i], s->model->n_inputs);
  free(s->plans);
  free(s->arena);
  free(s->bound);
  free(s->args);
  free(s->in);
  free(s->outputs);
  free(s->bind);
  for (size_t i = 0; i < s->model->n_inputs; i++) {
    free(s->wide_buf ? s->wide_buf[i] : NULL);
    free(s->user_buf ? s->user_buf[i] : NULL);
  }
  free(s->wide);
  free(s->wide_buf);
  free(s->user_buf);
  free(s->wide_cap);
  free(s->user_cap);
  for (size_t v = 0; s->bytes_buf && v < s->model->n_values; v++)
    free(s->bytes_buf[v]);
  free(s->bytes_buf);
  free(s->bytes_cap);
  free(s);
}

/* Puts the caller's inputs in model input order, checking each against
 * the model's declaration. */
static int match_inputs(const gs_model_t *m, const gs_tensor_t *inputs,
                        size_t n, const gs_tensor_t **by_index,
                        gs_error_t *err) {
  if (n != m->n_inputs)
    return gs_error_set(err, GS_EINVAL, "the model takes %zu inputs, got %zu",
                        m->n_inputs, n);
  bool named = false;
  for (size_t i = 0; i < n; i++)
    named = named || inputs[i].name;
  memset(by_index, 0, n * sizeof *by_index);
  for (size_t i = 0; i < n; i++) {
    size_t k = i;
    if (named) {
      if (!inputs[i].name)
        return gs_error_set(err, GS_EINVAL,
                            "input %zu has no name while "
                            "others do",
                            i);
      for (k = 0; k < n; k++)
        if (strcmp(m->input_info[k].name, inputs[i].name) == 0)
          break;
      if (k == n)
        return gs_error_set(err, GS_EINVAL, "the model has no input '%s'",
                            inputs[i].name);
      if (by_index[k])
        return gs_error_set(err, GS_EINVAL, "input '%s' is given twice",
                            inputs[i].name);
    }
    by_index[k] = &inputs[i];
  }
  return GS_OK;
}

/* A BYTES input: count elements, each a 4-byte length and its bytes, that
 * fill t->bytes exactly. */
static int check_bytes_input(const gs_model_t *m, const gs_tensor_info_t *info,
                             const gs_tensor_t *t, size_t count,
                             gs_error_t *err) {
  size_t bad = 0;
  if (t->bytes > m->limits.max_tensor_bytes)
    return gs_error_set(err, GS_ELIMIT,
                        "input '%s' has %zu bytes, over the limit of %zu",
                        info->name, t->bytes, m->limits.max_tensor_bytes);
  if ((t->bytes && !t->data) ||
      !gs__bytes_valid(t->data, t->bytes, count, &bad))
    return gs_error_set(err, GS_EINVAL,
                        "input '%s': %zu bytes of BYTES data do not hold %zu "
                        "elements (each a 4-byte length and its bytes): "
                        "element %zu %s",
                        info->name, t->bytes, count, bad,
                        bad < count ? "runs past the end" : "is extra data");
  return GS_OK;
}

/* An input in device memory: a CUDA session's, read on the GPU only. */
static int check_device_input(const gs_session_t *s, size_t i,
                              const gs_tensor_t *t, gs_error_t *err) {
  const char *name = s->model->input_info[i].name, *why = NULL;
  if (t->mem != GS_MEM_HOST && t->mem != GS_MEM_DEVICE)
    return gs_error_set(err, GS_EINVAL, "input '%s': mem %d is unknown", name,
                        (int)t->mem);
  if (t->mem == GS_MEM_DEVICE)
    why = !s->gpu ? "the cpu provider reads host memory only"
          : t->dtype == GS_DTYPE_BYTES ? "a BYTES input must be in host memory"
          : gs_model_input_host_only(s->model, i) /* the worker's test */
              ? "a shape (Reshape) input must be in host memory"
              : NULL;
  return why ? gs_error_set(err, GS_EUNSUPPORTED,
                            "input '%s' is in device memory: %s", name, why)
             : GS_OK;
}

static int check_input(const gs_session_t *s, size_t i, const gs_tensor_t *t,
                       gs_error_t *err) {
  const gs_model_t *m = s->model;
  const gs_tensor_info_t *info = &m->input_info[i];
  char have[128], want[128];
  size_t count;
  int rc = check_device_input(s, i, t, err);
  if (rc != GS_OK)
    return rc;
  /* FP16 for FP32: converted at the edge (gs_session_run). */
  if (t->dtype != info->dtype &&
      !(t->dtype == GS_DTYPE_FP16 && info->dtype == GS_DTYPE_FP32))
    return gs_error_set(err, GS_EINVAL,
                        "input '%s' is %s; the model takes %s%s", info->name,
                        gs_dtype_name(t->dtype), gs_dtype_name(info->dtype),
                        info->dtype == GS_DTYPE_FP32 ? " (or FP16)" : "");
  bool ok = t->rank <= GS_TENSOR_MAX_RANK &&
            (info->rank < 0 || (unsigned)info->rank == t->rank);
  for (unsigned d = 0; ok && info->rank >= 0 && d < t->rank; d++)
    ok = info->shape[d] < 0 || info->shape[d] == t->shape[d];
  if (!ok)
    return gs_error_set(
        err, GS_EINVAL, "input '%s' has shape %s; the model takes %s",
        info->name,
        gs__dims_str(t->shape, t->rank > GS_TENSOR_MAX_RANK ? 0 : t->rank, have,
                     sizeof have),
        info->rank < 0 ? "any shape"
                       : gs__dims_str(info->shape, (unsigned)info->rank, want,
                                      sizeof want));
  if (!gs__count(t->shape, t->rank, gs_dtype_size(t->dtype),
                 m->limits.max_tensor_bytes, &count))
    return gs_error_set(err, GS_ELIMIT,
                        "input '%s' of shape %s is over the limit of %zu "
                        "bytes",
                        info->name,
                        gs__dims_str(t->shape, t->rank, have, sizeof have),
                        m->limits.max_tensor_bytes);
  if (t->dtype == GS_DTYPE_BYTES)
    return check_bytes_input(m, info, t, count, err);
  if (t->bytes != count * gs_dtype_size(t->dtype) || (count && !t->data))
    return gs_error_set(err, GS_EINVAL,
                        "input '%s' has %zu bytes of data for %zu elements "
                        "of %s",
                        info->name, t->bytes, count, gs_dtype_name(t->dtype));
  return GS_OK;
}

static bool plan_matches(const gs_model_t *m, const plan_t *p,
                         const gs_tensor_t **in) {
  for (size_t i = 0; i < m->n_inputs; i++) {
    const gs__tensor_t *have = &p->shapes[m->inputs[i]];
    if (have->rank != in[i]->rank ||
        memcmp(have->dims, in[i]->shape, in[i]->rank * sizeof *have->dims))
      return false;
    if (p->key_data[i] && in[i]->bytes &&
        memcmp(p->key_data[i], in[i]->data, in[i]->bytes))
      return false;
  }
  return true;
}

/* Binds a value's tensor view for shape inference or a run. */
static void bind_value(gs_session_t *s, const plan_t *p, int v,
                       const gs_tensor_t **in) {
  const gs__value_t *val = &s->model->values[v];
  gs__tensor_t *t = &s->bound[v];
  *t = p->shapes[v];
  if (val->kind == GS__VALUE_CONST) {
    t->data = val->constant.data;
    t->bytes = val->constant.bytes;
  } else if (val->kind == GS__VALUE_INPUT) {
    /* Kernels never write their inputs; the caller's buffer stays const. */
    t->data = (void *)in[val->input_index]->data;
    t->bytes = val->dtype == GS_DTYPE_BYTES ? in[val->input_index]->bytes : 0;
  } else {
    t->data = (char *)s->arena + p->offset[v];
  }
}

/* Grows value v's BYTES buffer to at least size bytes. */
static int bytes_reserve(gs_session_t *s, int v, size_t size, gs_error_t *err) {
  if (size <= s->bytes_cap[v] && s->bytes_buf[v])
    return GS_OK;
  void *grown = realloc(s->bytes_buf[v], size ? size : 1);
  if (!grown)
    return gs_error_set(err, GS_ENOMEM, "%zu bytes for BYTES tensor '%s'", size,
                        s->model->values[v].name);
  s->bytes_buf[v] = grown;
  s->bytes_cap[v] = size ? size : 1;
  return GS_OK;
}

/* Gives a node's BYTES output a buffer big enough for what its op writes:
 * the length of its BYTES inputs (ops that move elements), or a decimal
 * number per element (Cast to BYTES). The kernel sets bytes. */
static int bytes_output(gs_session_t *s, const gs__node_t *n, gs_error_t *err) {
  gs__tensor_t *o = &s->bound[n->out];
  size_t size = 0;
  bool from_bytes = false;
  for (unsigned k = 0; k < n->n_in; k++)
    if (n->in[k] >= 0 && s->bound[n->in[k]].dtype == GS_DTYPE_BYTES) {
      from_bytes = true;
      size += s->bound[n->in[k]].bytes;
    }
  if (!from_bytes)
    size = o->count * (4 + GS__NUM_STR_MAX);
  int rc = bytes_reserve(s, n->out, size, err);
  o->data = s->bytes_buf[n->out];
  o->bytes = 0;
  return rc;
}

static void node_args(gs_session_t *s, const gs__node_t *n) {
  for (unsigned k = 0; k < n->n_in; k++) {
    if (n->in[k] >= 0)
      s->args[k] = s->bound[n->in[k]];
    else
      memset(&s->args[k], 0, sizeof s->args[k]);
  }
}

/* Every value's shape, node by node. */
static int infer_shapes(gs_session_t *s, plan_t *p, const gs_tensor_t **in,
                        gs_error_t *err) {
  const gs_model_t *m = s->model;
  for (size_t v = 0; v < m->n_values; v++) {
    const gs__value_t *val = &m->values[v];
    gs__tensor_t *t = &p->shapes[v];
    t->dtype = val->dtype;
    if (val->kind == GS__VALUE_CONST) {
      *t = val->constant;
      t->data = NULL;
      s->bound[v] = val->constant;
    } else if (val->kind == GS__VALUE_INPUT) {
      const gs_tensor_t *x = in[val->input_index];
      t->rank = x->rank;
      memcpy(t->dims, x->shape, sizeof t->dims);
      /* check_input made sure that the shape's count fits. */
      gs__count(x->shape, x->rank, gs_dtype_size(x->dtype), SIZE_MAX,
                &t->count);
      s->bound[v] = *t;
      s->bound[v].data = val->needs_data ? (void *)x->data : NULL;
    }
  }
  for (size_t i = 0; i < m->n_nodes; i++) {
    const gs__node_t *n = &m->nodes[i];
    gs__tensor_t *t = &p->shapes[n->out];
    char label[160], dims[128];
    node_args(s, n);
    int rc = n->op->shape(n, s->args, t, err);
    if (rc != GS_OK)
      return rc;
    if (!gs__count(t->dims, t->rank, gs_dtype_size(t->dtype),
                   m->limits.max_tensor_bytes, &t->count))
      return gs_error_set(err, GS_ELIMIT,
                          "%s: output of shape %s is over the limit of %zu "
                          "bytes",
                          gs__node_label(n, label, sizeof label),
                          gs__dims_str(t->dims, t->rank, dims, sizeof dims),
                          m->limits.max_tensor_bytes);
    s->bound[n->out] = *t;
    /* The CPU kernels' scratch (im2col); the GPU needs none of it. */
    p->scratch[i] =
        n->op->scratch && !s->gpu ? n->op->scratch(n, s->args, t) : 0;
  }
  return GS_OK;
}

typedef struct {
  size_t size, first, last;
  int value;
} slot_t;

static int slot_cmp(const void *a, const void *b) {
  const slot_t *x = a, *y = b;
  if (x->size != y->size)
    return x->size > y->size ? -1 : 1;
  return x->value - y->value;
}

static size_t align_up(size_t n) {
  return (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

static int span_cmp(const void *a, const void *b) {
  const size_t *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Greedy by size: the largest tensors are placed first, each at the lowest
 * offset that does not overlap a placed tensor alive at the same time.
 * spans is scratch room for two words per slot. */
static int place_slots(slot_t *slots, size_t n, size_t *offsets, size_t *spans,
                       size_t *total, size_t max_bytes, gs_error_t *err) {
  qsort(slots, n, sizeof *slots, slot_cmp);
  *total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t n_spans = 0, at = 0;
    for (size_t j = 0; j < i; j++) {
      if (slots[j].last < slots[i].first || slots[i].last < slots[j].first)
        continue;
      spans[2 * n_spans] = offsets[j];
      spans[2 * n_spans++ + 1] = offsets[j] + slots[j].size;
    }
    qsort(spans, n_spans, 2 * sizeof *spans, span_cmp);
    for (size_t k = 0; k < n_spans && at + slots[i].size > spans[2 * k]; k++)
      if (spans[2 * k + 1] > at)
        at = spans[2 * k + 1];
    offsets[i] = at;
    if (at + slots[i].size > *total)
      *total = at + slots[i].size;
    if (*total > max_bytes)
      return gs_error_set(err, GS_ELIMIT,
                          "the plan needs more than %zu "
                          "bytes of memory (limit)",
                          max_bytes);
  }
  return GS_OK;
}

static int plan_memory(gs_session_t *s, plan_t *p, gs_error_t *err) {
  const gs_model_t *m = s->model;
  size_t n = 0;
  int rc = GS_OK;
  size_t cap = m->n_values + m->n_outputs + m->n_nodes + 1;
  slot_t *slots = calloc(cap, sizeof *slots);
  size_t *offsets = calloc(cap, sizeof *offsets);
  size_t *spans = calloc(2 * cap, sizeof *spans);
  if (!slots || !offsets || !spans) {
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t v = 0; v < m->n_values; v++) {
    const gs__value_t *val = &m->values[v];
    if (val->kind != GS__VALUE_NODE)
      continue;
    size_t last = val->last_use < val->producer ? (size_t)val->producer
                                                : (size_t)val->last_use;
    /* A GPU session in FP16 stores every node output (all float there)
     * in 2 bytes. */
    size_t esize = s->gpu && s->opts.precision == GS_PRECISION_FP16
                       ? 2
                       : gs_dtype_size(val->dtype);
    slots[n++] = (slot_t){align_up(p->shapes[v].count * esize),
                          (size_t)val->producer, last, (int)v};
  }
  for (size_t o = 0; o < m->n_outputs; o++) {
    int v = m->outputs[o];
    if (m->values[v].kind != GS__VALUE_NODE)
      slots[n++] = (slot_t){
          align_up(p->shapes[v].count * gs_dtype_size(m->values[v].dtype)),
          m->n_nodes, m->n_nodes, -1 - (int)o};
  }
  /* A kernel's scratch lives during its node only; value n_values + i. */
  for (size_t i = 0; i < m->n_nodes; i++)
    if (p->scratch[i])
      slots[n++] =
          (slot_t){align_up(p->scratch[i]), i, i, (int)(m->n_values + i)};
  rc = place_slots(slots, n, offsets, spans, &p->arena_bytes,
                   s->opts.max_plan_bytes, err);
  for (size_t i = 0; rc == GS_OK && i < n; i++) {
    if ((size_t)slots[i].value >= m->n_values && slots[i].value >= 0)
      p->scratch_offset[slots[i].value - (int)m->n_values] = offsets[i];
    else if (slots[i].value >= 0)
      p->offset[slots[i].value] = offsets[i];
    else
      p->out_offset[-1 - slots[i].value] = offsets[i];
  }
out:
  free(slots);
  free(offsets);
  free(spans);
  return rc;
}

static int plan_make(gs_session_t *s, plan_t *p, const gs_tensor_t **in,
                     gs_error_t *err) {
  const gs_model_t *m = s->model;
  p->shapes = calloc(m->n_values + 1, sizeof *p->shapes);
  p->offset = calloc(m->n_values + 1, sizeof *p->offset);
  p->out_offset = calloc(m->n_outputs + 1, sizeof *p->out_offset);
  p->key_data = calloc(m->n_inputs + 1, sizeof *p->key_data);
  p->scratch = calloc(m->n_nodes + 1, sizeof *p->scratch);
  p->scratch_offset = calloc(m->n_nodes + 1, sizeof *p->scratch_offset);
  if (!p->shapes || !p->offset || !p->out_offset || !p->key_data ||
      !p->scratch || !p->scratch_offset)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; i < m->n_inputs; i++) {
    if (!m->values[m->inputs[i]].needs_data)
      continue;
    if (!(p->key_data[i] = malloc(in[i]->bytes + 1)))
      return gs_error_set(err, GS_ENOMEM, "out of memory");
    if (in[i]->bytes)
      memcpy(p->key_data[i], in[i]->data, in[i]->bytes);
  }
  int rc = infer_shapes(s, p, in, err);
  return rc != GS_OK ? rc : plan_memory(s, p, err);
}

/* The plan for these inputs: a cached one, or a new one that replaces the
 * least recently used. */
static int plan_get(gs_session_t *s, const gs_tensor_t **in, gs_error_t *err) {
  const gs_model_t *m = s->model;
  plan_t *p = NULL;
  s->current = NULL;
  for (unsigned i = 0; i < s->n_plans && !p; i++)
    if (plan_matches(m, &s->plans[i], in))
      p = &s->plans[i];
  if (!p) {
    if (s->n_plans < s->opts.max_cached_plans) {
      p = &s->plans[s->n_plans++];
    } else {
      p = &s->plans[0];
      for (unsigned i = 1; i < s->n_plans; i++)
        if (s->plans[i].used < p->used)
          p = &s->plans[i];
      plan_release(p, m->n_inputs);
    }
    int rc = plan_make(s, p, in, err);
    if (rc != GS_OK) {
      plan_release(p, m->n_inputs);
      s->n_plans--;
      *p = s->plans[s->n_plans]; /* keep the cache dense */
      memset(&s->plans[s->n_plans], 0, sizeof *p);
      return rc;
    }
  }
  /* Never empty, so that every bound pointer points into an object. The
   * CUDA provider keeps its activations on the GPU. */
  size_t need = p->arena_bytes ? p->arena_bytes : ARENA_ALIGN;
  if (s->gpu)
    need = ARENA_ALIGN;
  if (need > s->arena_bytes) {
    free(s->arena);
    s->arena_bytes = 0;
    if (!(s->arena = aligned_alloc(ARENA_ALIGN, need)))
      return gs_error_set(err, GS_ENOMEM,
                          "cannot allocate %zu bytes for "
                          "the plan",
                          need);
    s->arena_bytes = need;
  }
  p->used = ++s->tick;
  s->current = p;
  return GS_OK;
}

static int plan_inputs(gs_session_t *s, const gs_tensor_t *inputs, size_t n,
                       const gs_tensor_t **in, gs_error_t *err) {
  const gs_model_t *m = s->model;
  int rc = match_inputs(m, inputs, n, in, err);
  for (size_t i = 0; rc == GS_OK && i < m->n_inputs; i++)
    rc = check_input(s, i, in[i], err);
  if (rc == GS_OK)
    rc = plan_get(s, in, err);
  for (size_t o = 0; rc == GS_OK && o < m->n_outputs; o++) {
    const gs__tensor_t *t = &s->current->shapes[m->outputs[o]];
    gs_tensor_t *x = &s->outputs[o];
    x->name = m->output_info[o].name;
    x->dtype = t->dtype;
    x->rank = t->rank;
    memcpy(x->shape, t->dims, sizeof x->shape);
    x->bytes = t->count * gs_dtype_size(t->dtype); /* BYTES: set by a run */
    x->data = NULL;
    x->mem = GS_MEM_HOST;
  }
  return rc;
}

int gs_session_plan(gs_session_t *s, const gs_tensor_t *inputs, size_t n,
                    gs_error_t *err) {
  return plan_inputs(s, inputs, n, s->in, err);
}

int gs_session_reserve(gs_session_t *s, const gs_tensor_t *inputs, size_t n,
                       gs_error_t *err) {
  int rc = plan_inputs(s, inputs, n, s->in, err);
  if (rc != GS_OK || !s->gpu)
    return rc;
  const plan_t *p = s->current;
  gs__plan_view_t view = {p->shapes, p->offset, p->arena_bytes};
  return gs__cuda_session_reserve(s->gpu, &view, s->in, err);
}

/* The CPU provider's kernels read FP32: FP16 inputs are widened into the
 * session's buffers and s->in points at those. */
static int widen_inputs(gs_session_t *s, gs_error_t *err) {
  for (size_t i = 0; i < s->model->n_inputs; i++) {
    const gs_tensor_t *x = s->in[i];
    if (x->dtype != GS_DTYPE_FP16 ||
        s->model->input_info[i].dtype != GS_DTYPE_FP32)
      continue;
    size_t count = x->bytes / 2;
    if (count * 4 + 4 > s->wide_cap[i]) {
      free(s->wide_buf[i]);
      s->wide_cap[i] = 0;
      if (!(s->wide_buf[i] =
                aligned_alloc(ARENA_ALIGN, align_up(count * 4 + 4))))
        return gs_error_set(err, GS_ENOMEM, "out of memory");
      s->wide_cap[i] = count * 4 + 4;
    }
    float *dst = s->wide_buf[i];
    const uint8_t *src = x->data;
    for (size_t k = 0; k < count; k++)
      dst[k] = gs__half_to_float((uint16_t)(src[2 * k] | src[2 * k + 1] << 8));
    s->wide[i] = *x;
    s->wide[i].dtype = GS_DTYPE_FP32;
    s->wide[i].data = dst;
    s->wide[i].bytes = count * 4;
    s->in[i] = &s->wide[i];
  }
  return GS_OK;
}

int gs_session_input_buffer(gs_session_t *s, size_t i, size_t bytes, void **out,
                            gs_error_t *err) {
  *out = NULL;
  if (i >= s->model->n_inputs)
    return gs_error_set(err, GS_EINVAL, "the model has %zu inputs, not %zu",
                        s->model->n_inputs, i + 1);
  if (s->gpu)
    return gs__cuda_session_input_buffer(s->gpu, i, bytes, out, err);
  if (bytes > s->user_cap[i] || !s->user_buf[i]) {
    size_t size = align_up(bytes ? bytes : 1);
    void *grown = aligned_alloc(ARENA_ALIGN, size);
    if (!grown)
      return gs_error_set(err, GS_ENOMEM,
                          "cannot allocate %zu bytes for input '%s'", size,
                          s->model->input_info[i].name);
    if (s->user_buf[i])
      memcpy(grown, s->user_buf[i], s->user_cap[i]);
    free(s->user_buf[i]);
    s->user_buf[i] = grown;
    s->user_cap[i] = size;
  }
  *out = s->user_buf[i];
  return GS_OK;
}

/* Output o's data after a run: a node output where it lies; a copy of an
 * input or initializer, as outputs belong to the session. */
static int output_data(gs_session_t *s, const plan_t *p, size_t o,
                       gs_error_t *err) {
  const gs_model_t *m = s->model;
  int v = m->outputs[o];
  const gs__tensor_t *t = &s->bound[v];
  if (t->dtype == GS_DTYPE_BYTES) {
    s->outputs[o].bytes = t->bytes;
    if (m->values[v].kind == GS__VALUE_NODE) {
      s->outputs[o].data = t->data;
      return GS_OK;
    }
    int rc = bytes_reserve(s, v, t->bytes, err);
    if (rc == GS_OK && t->bytes)
      memcpy(s->bytes_buf[v], t->data, t->bytes);
    s->outputs[o].data = s->bytes_buf[v];
    return rc;
  }
  if (m->values[v].kind == GS__VALUE_NODE) {
    s->outputs[o].data = t->data;
    return GS_OK;
  }
  void *copy = (char *)s->arena + p->out_offset[o];
  if (s->outputs[o].bytes)
    memcpy(copy, t->data, s->outputs[o].bytes);
  s->outputs[o].data = copy;
  return GS_OK;
}

int gs_session_run(gs_session_t *s, const gs_tensor_t *inputs, size_t n_inputs,
                   gs_error_t *err) {
  const gs_model_t *m = s->model;
  int rc = plan_inputs(s, inputs, n_inputs, s->in, err);
  if (rc == GS_OK && !s->gpu)
    rc = widen_inputs(s, err);
  const plan_t *p = s->current;
  if (rc == GS_OK && s->gpu) {
    gs__plan_view_t view = {p->shapes, p->offset, p->arena_bytes};
    rc = gs__cuda_session_run(s->gpu, &view, s->in, s->bind, s->outputs, err);
  }
  if (rc != GS_OK || s->gpu) {
    memset(s->bind, 0, m->n_outputs * sizeof *s->bind); /* one run only */
    return rc;
  }
  for (size_t v = 0; v < m->n_values; v++)
    bind_value(s, p, (int)v, s->in);
  for (size_t i = 0; rc == GS_OK && i < m->n_nodes; i++) {
    const gs__node_t *n = &m->nodes[i];
    node_args(s, n);
    s->args[n->n_in] = (gs__tensor_t){
        .dtype = GS_DTYPE_UINT8,
        .rank = 1,
        .dims = {(int64_t)p->scratch[i]},
        .count = p->scratch[i],
        .data = p->scratch[i] ? (char *)s->arena + p->scratch_offset[i] : NULL};
    if (s->bound[n->out].dtype == GS_DTYPE_BYTES)
      rc = bytes_output(s, n, err);
    if (rc == GS_OK)
      rc = n->op->run(n, s->args, &s->bound[n->out], err);
  }
  for (size_t o = 0; rc == GS_OK && o < m->n_outputs; o++)
    rc = output_data(s, p, o, err);
  return rc;
}

int gs__session_gpu_profile(gs_session_t *s, const gs_tensor_t *inputs,
                            size_t n_inputs, float *ms, gs_error_t *err) {
  if (!s->gpu)
    return gs_error_set(err, GS_EINVAL, "the session does not run on a GPU");
  int rc = plan_inputs(s, inputs, n_inputs, s->in, err);
  if (rc != GS_OK)
    return rc;
  const plan_t *p = s->current;
  gs__plan_view_t view = {p->shapes, p->offset, p->arena_bytes};
  return gs__cuda_session_profile(s->gpu, &view, s->in, ms, err);
}

int gs__session_gpu_conv_report(const gs_session_t *s, char *buf, size_t cap,
                                gs_error_t *err) {
  if (!s->gpu)
    return gs_error_set(err, GS_EINVAL, "the session does not run on a GPU");
  return gs__cuda_session_conv_report(s->gpu, buf, cap, err);
}

void gs_session_timing(const gs_session_t *s, char *buf, size_t cap) {
  if (cap)
    buf[0] = '\0';
  if (s->gpu)
    gs__cuda_session_timing(s->gpu, buf, cap);
}

uintptr_t gs__session_gpu_weights(const gs_session_t *s, size_t *bytes) {
  *bytes = 0;
  return s->gpu ? gs__cuda_session_weights(s->gpu, bytes) : 0;
}

unsigned gs_session_uncached_convs(const gs_session_t *s) {
  return s->gpu ? gs__cuda_session_uncached(s->gpu) : 0;
}

unsigned gs__session_gpu_captures(const gs_session_t *s) {
  return s->gpu ? gs__cuda_session_captures(s->gpu) : 0;
}

int gs__session_gpu_replay(gs_session_t *s, const gs_tensor_t *inputs,
                           size_t n_inputs, int iters, float *ms,
                           gs_error_t *err) {
  if (!s->gpu)
    return gs_error_set(err, GS_EINVAL, "the session does not run on a GPU");
  int rc = plan_inputs(s, inputs, n_inputs, s->in, err);
  if (rc != GS_OK)
    return rc;
  const plan_t *p = s->current;
  gs__plan_view_t view = {p->shapes, p->offset, p->arena_bytes};
  return gs__cuda_session_replay(s->gpu, &view, s->in, iters, ms, err);
}

int gs_session_device(const gs_session_t *s) {
  return s->gpu ? s->opts.device : -1;
}

int gs_session_bind_output(gs_session_t *s, size_t i, void *data, size_t bytes,
                           gs_error_t *err) {
  if (i >= s->model->n_outputs || !data || !s->gpu)
    return gs_error_set(
        err, i < s->model->n_outputs && data ? GS_EUNSUPPORTED : GS_EINVAL,
        "binding output %zu (of %zu) to device memory at %p: %s", i,
        s->model->n_outputs, data,
        !s->gpu ? "the cpu provider writes host memory only" : "no output");
  s->bind[i] = (gs__cuda_out_bind_t){(CUdeviceptr)(uintptr_t)data, bytes};
  return GS_OK;
}

const gs_tensor_t *gs_session_output(const gs_session_t *s, size_t i) {
  return s->current && i < s->model->n_outputs ? &s->outputs[i] : NULL;
}

size_t gs_session_planned_bytes(const gs_session_t *s) {
  return s->current ? s->current->arena_bytes : 0;
}
