/* The documents the protocol returns for a loaded model version: its
 * metadata, its configuration as Triton shows it, and its statistics. */
#include <stdio.h>
#include <string.h>

#include "worker/classify.h"
#include "worker/reshape.h"
#include "worker/worker_int.h"

/* Shape as metadata or config shows it; config drops the batch dimension
 * when max_batch_size > 0, as Triton's does. */
static json_t *shape_json(const gs_tensor_info_t *t, unsigned skip) {
  json_t *a = json_array();
  if (t->rank < 0)
    json_array_append_new(a, json_integer(-1));
  for (int d = (int)skip; d < t->rank; d++)
    json_array_append_new(a, json_integer(t->shape[d]));
  return a;
}

static json_t *tensors_json(const gs_tensor_info_t *t, size_t n, bool config,
                            unsigned skip) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) {
    char type[32];
    snprintf(type, sizeof type, "%s%s", config ? "TYPE_" : "",
             config && t[i].dtype == GS_DTYPE_BYTES
                 ? "STRING" /* Triton's name in a config */
                 : gs_dtype_name(t[i].dtype));
    json_array_append_new(a, json_pack("{s:s, s:s, s:o}", "name", t[i].name,
                                       config ? "data_type" : "datatype", type,
                                       config ? "dims" : "shape",
                                       shape_json(&t[i], skip)));
  }
  return a;
}

json_t *gs__model_metadata_json(const gs__model_entry_t *m) {
  const gs__model_io_t *io = &m->slot->io;
  json_t *j =
      json_pack("{s:s, s:[s], s:s, s:o, s:o}", "name", m->name, "versions",
                m->version, "platform", "onnxruntime_onnx", "inputs",
                tensors_json(io->inputs, io->n_inputs, false, 0), "outputs",
                tensors_json(io->outputs, io->n_outputs, false, 0));
  gs__seq_json(m, j, false); /* control and state tensors hidden */
  return j;
}

/* A tensor's reshape where the config has one, as Triton shows it. */
static void reshape_json(json_t *c, const gs__reshape_t *r) {
  json_t *a = json_object_get(c, r->input ? "input" : "output"), *t;
  size_t i;
  json_array_foreach(a, i, t) {
    if (strcmp(json_string_value(json_object_get(t, "name")), r->name))
      continue;
    json_t *shape = json_array();
    for (int d = 0; d < r->model_rank; d++)
      json_array_append_new(shape, json_integer(r->model[d]));
    json_object_set_new(t, "reshape", json_pack("{s:o}", "shape", shape));
  }
}

/* default_queue_policy as Triton shows it: always, defaults included. */
static json_t *queue_policy_json(const gs__queue_policy_t *p) {
  return json_pack(
      "{s:s, s:I, s:b, s:I}", "timeout_action", p->delay ? "DELAY" : "REJECT",
      "default_timeout_microseconds", (json_int_t)p->default_timeout_us,
      "allow_timeout_override", p->allow_timeout_override, "max_queue_size",
      (json_int_t)p->max_queue_size);
}

json_t *gs__model_config_json(const gs__model_entry_t *m) {
  const gs__model_io_t *io = &m->slot->io;
  unsigned skip = m->max_batch_size ? 1 : 0;
  json_t *c =
      json_pack("{s:s, s:s, s:s, s:i, s:o, s:o}", "name", m->name, "platform",
                "onnxruntime_onnx", "backend", "onnxruntime", "max_batch_size",
                (int)m->max_batch_size, "input",
                tensors_json(io->inputs, io->n_inputs, true, skip), "output",
                tensors_json(io->outputs, io->n_outputs, true, skip));
  gs__seq_json(m, c, true);
  /* Triton shows every input's format; image_client needs NCHW/NHWC. */
  static const char *const formats[] = {"FORMAT_NONE", "FORMAT_NHWC",
                                        "FORMAT_NCHW"};
  for (size_t k = 0; c && k < io->n_inputs && k < GS__INFER_MAX_TENSORS; k++) {
    int f = m->slot->input_format[k];
    json_t *in = json_array_get(json_object_get(c, "input"), k);
    if (in && f >= 0 && f < 3)
      json_object_set_new(in, "format", json_string(formats[f]));
  }
  for (size_t k = 0; c && k < io->n_outputs; k++) /* classification */
    if (gs__labels_file(m->slot->labels, k))
      json_object_set_new(json_array_get(json_object_get(c, "output"), k),
                          "label_filename",
                          json_string(gs__labels_file(m->slot->labels, k)));
  for (size_t k = 0; c && k < io->n_reshapes; k++)
    reshape_json(c, &io->reshapes[k]);
  const gs__batching_t *b = &m->slot->batching;
  if (c && b->enabled) {
    json_t *pref = json_array();
    for (unsigned i = 0; i < b->n_preferred; i++)
      json_array_append_new(pref, json_integer(b->preferred[i]));
    json_object_set_new(c, "dynamic_batching",
                        json_pack("{s:o, s:I, s:o}", "preferred_batch_size",
                                  pref, "max_queue_delay_microseconds",
                                  (json_int_t)b->max_queue_delay_us,
                                  "default_queue_policy",
                                  queue_policy_json(&b->policy)));
  }
  /* Where it runs, as Triton shows instance_group (AUTO resolved). */
  const gs__model_slot_t *sl = m->slot;
  bool gpu = sl->provider == GS_PROVIDER_CUDA;
  json_t *group =
      json_pack("{s:s, s:i}", "kind", gpu ? "KIND_GPU" : "KIND_CPU", "count",
                (int)(sl->placement.count ? sl->placement.count : 1));
  if (group && gpu)
    json_object_set_new(group, "gpus", json_pack("[i]", sl->placement.device));
  if (c && group)
    json_object_set_new(c, "instance_group", json_pack("[o]", group));
  else
    json_decref(group);
  if (c)
    json_object_set_new(c, "precision",
                        json_string(gs_precision_name(sl->precision)));
  return c;
}

static json_t *stat_json(const gs__stat_t *s) {
  return json_pack("{s:I, s:I}", "count", (json_int_t)s->count, "ns",
                   (json_int_t)s->ns);
}

static json_t *batch_stats_json(const gs__model_stats_t *s) {
  json_t *a = json_array();
  for (size_t i = 0; i < s->n_batch; i++) {
    const gs__batch_stat_t *b = &s->batch[i];
    json_array_append_new(
        a, json_pack("{s:I, s:o, s:o, s:o}", "batch_size",
                     (json_int_t)b->batch_size, "compute_input",
                     stat_json(&b->compute_input), "compute_infer",
                     stat_json(&b->compute_infer), "compute_output",
                     stat_json(&b->compute_output)));
  }
  return a;
}

json_t *gs__model_stats_json(const gs__model_entry_t *m) {
  const gs__model_stats_t *s = &m->stats;
  gs__stat_t zero = {0, 0};
  return json_pack(
      "{s:s, s:s, s:I, s:I, s:I, s:{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o},"
      " s:o}",
      "name", m->name, "version", m->version, "last_inference",
      (json_int_t)s->last_inference_ms, "inference_count",
      (json_int_t)s->inference_count, "execution_count",
      (json_int_t)s->execution_count, "inference_stats", "success",
      stat_json(&s->success), "fail", stat_json(&s->fail), "queue",
      stat_json(&s->queue), "compute_input", stat_json(&s->compute_input),
      "compute_infer", stat_json(&s->compute_infer), "compute_output",
      stat_json(&s->compute_output), "cache_hit", stat_json(&zero),
      "cache_miss", stat_json(&zero), "batch_stats", batch_stats_json(s));
}
