/* The ModelConfig reply: the HTTP config document (repo_docs.c) as
 * inference.config.ModelConfig, every field the document and the proto both
 * have, so that one source answers both protocols alike. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"

typedef Inference__Config__ModelSequenceBatching seq_batching_t;
typedef Inference__Config__ModelSequenceBatching__Control seq_control_t;
typedef Inference__Config__ModelSequenceBatching__ControlInput seq_input_t;
typedef Inference__Config__ModelSequenceBatching__State seq_state_t;

/* The message is a tree of many small parts: each part is chained to the
 * reply's list, so one walk frees them all whatever failed half-way. */
typedef struct part_s {
  struct part_s *next;
  max_align_t data[];
} part_t;

typedef struct parts_s {
  part_t *head;
  bool failed; /* a part was out of memory: answer INTERNAL */
} parts_t;

/* n zeroed elements of size bytes, freed by parts_free; NULL (and
 * p->failed) when out of memory. */
static void *part(parts_t *p, size_t n, size_t size) {
  part_t *c = NULL;
  if (size == 0 || n <= (SIZE_MAX - sizeof *c) / size)
    c = calloc(1, sizeof *c + n * size);
  if (!c) {
    p->failed = true;
    return NULL;
  }
  c->next = p->head;
  p->head = c;
  return c->data;
}

static void parts_free(parts_t *p) {
  while (p->head) {
    part_t *c = p->head;
    p->head = c->next;
    free(c);
  }
}

/* o[key] as a string; "" (protobuf's default) when absent. The reply only
 * borrows it: the document outlives the packing. */
static char *text(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return (char *)(s ? s : "");
}

static uint64_t u64(json_t *o, const char *key) {
  return (uint64_t)json_integer_value(json_object_get(o, key));
}

/* o[key], an enum value's name ("KIND_GPU", "DELAY"), as its number; the
 * enum's 0 when absent or unknown, as protobuf reads an unset field. */
static int enum_value(json_t *o, const char *key,
                      const ProtobufCEnumDescriptor *d) {
  const ProtobufCEnumValue *v =
      protobuf_c_enum_descriptor_get_value_by_name(d, text(o, key));
  return v ? v->value : 0;
}

static int64_t *int64s(parts_t *p, json_t *a, size_t *n) {
  *n = json_array_size(a);
  int64_t *v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++)
    v[i] = json_integer_value(json_array_get(a, i));
  return v;
}

static int32_t *int32s(parts_t *p, json_t *a, size_t *n) {
  *n = json_array_size(a);
  int32_t *v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++)
    v[i] = (int32_t)json_integer_value(json_array_get(a, i));
  return v;
}

static float *floats(parts_t *p, json_t *a, size_t *n) {
  *n = json_array_size(a);
  float *v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++)
    v[i] = (float)json_number_value(json_array_get(a, i));
  return v;
}

static protobuf_c_boolean *bools(parts_t *p, json_t *a, size_t *n) {
  *n = json_array_size(a);
  protobuf_c_boolean *v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++)
    v[i] = json_is_true(json_array_get(a, i));
  return v;
}

/* ---- inputs and outputs ---------------------------------------------------
 */

/* t's reshape, NULL where the document shows none (as Triton's). */
static Inference__Config__ModelTensorReshape *reshape(parts_t *p, json_t *t) {
  json_t *j = json_object_get(t, "reshape");
  Inference__Config__ModelTensorReshape *r = j ? part(p, 1, sizeof *r) : NULL;
  if (!r)
    return NULL;
  inference__config__model_tensor_reshape__init(r);
  r->shape = int64s(p, json_object_get(j, "shape"), &r->n_shape);
  return r;
}

static Inference__Config__ModelInput **inputs(parts_t *p, json_t *a,
                                              size_t *n) {
  *n = json_array_size(a);
  Inference__Config__ModelInput **v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++) {
    json_t *t = json_array_get(a, i);
    Inference__Config__ModelInput *in = v[i] = part(p, 1, sizeof *in);
    if (!in)
      break;
    inference__config__model_input__init(in);
    in->name = text(t, "name");
    in->data_type =
        enum_value(t, "data_type", &inference__config__data_type__descriptor);
    in->format = enum_value(
        t, "format", &inference__config__model_input__format__descriptor);
    in->dims = int64s(p, json_object_get(t, "dims"), &in->n_dims);
    in->reshape = reshape(p, t);
  }
  return v;
}

static Inference__Config__ModelOutput **outputs(parts_t *p, json_t *a,
                                                size_t *n) {
  *n = json_array_size(a);
  Inference__Config__ModelOutput **v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++) {
    json_t *t = json_array_get(a, i);
    Inference__Config__ModelOutput *out = v[i] = part(p, 1, sizeof *out);
    if (!out)
      break;
    inference__config__model_output__init(out);
    out->name = text(t, "name");
    out->data_type =
        enum_value(t, "data_type", &inference__config__data_type__descriptor);
    out->dims = int64s(p, json_object_get(t, "dims"), &out->n_dims);
    out->label_filename = text(t, "label_filename");
    out->reshape = reshape(p, t);
  }
  return v;
}

/* ---- where it runs ---------------------------------------------------------
 */

static Inference__Config__ModelInstanceGroup **
instance_groups(parts_t *p, json_t *a, size_t *n) {
  *n = json_array_size(a);
  Inference__Config__ModelInstanceGroup **v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++) {
    json_t *j = json_array_get(a, i);
    Inference__Config__ModelInstanceGroup *g = v[i] = part(p, 1, sizeof *g);
    if (!g)
      break;
    inference__config__model_instance_group__init(g);
    g->name = text(j, "name");
    g->kind = enum_value(
        j, "kind", &inference__config__model_instance_group__kind__descriptor);
    g->count = (int32_t)json_integer_value(json_object_get(j, "count"));
    g->gpus = int32s(p, json_object_get(j, "gpus"), &g->n_gpus);
  }
  return v;
}

/* ---- the schedulers --------------------------------------------------------
 */

static Inference__Config__ModelQueuePolicy *queue_policy(parts_t *p,
                                                         json_t *j) {
  Inference__Config__ModelQueuePolicy *q = j ? part(p, 1, sizeof *q) : NULL;
  if (!q)
    return NULL;
  inference__config__model_queue_policy__init(q);
  q->timeout_action = enum_value(
      j, "timeout_action",
      &inference__config__model_queue_policy__timeout_action__descriptor);
  q->default_timeout_microseconds = u64(j, "default_timeout_microseconds");
  q->allow_timeout_override =
      json_is_true(json_object_get(j, "allow_timeout_override"));
  q->max_queue_size = (uint32_t)u64(j, "max_queue_size");
  return q;
}

static Inference__Config__ModelDynamicBatching *dynamic_batching(parts_t *p,
                                                                 json_t *j) {
  Inference__Config__ModelDynamicBatching *b = part(p, 1, sizeof *b);
  if (!b)
    return NULL;
  inference__config__model_dynamic_batching__init(b);
  b->preferred_batch_size =
      int32s(p, json_object_get(j, "preferred_batch_size"),
             &b->n_preferred_batch_size);
  b->max_queue_delay_microseconds = u64(j, "max_queue_delay_microseconds");
  b->default_queue_policy =
      queue_policy(p, json_object_get(j, "default_queue_policy"));
  return b;
}

/* One control of a control input: its kind and the false/true pair in the
 * type the document gives (or CORRID's data_type). */
static seq_control_t *seq_control(parts_t *p, json_t *j) {
  seq_control_t *c = part(p, 1, sizeof *c);
  if (!c)
    return NULL;
  inference__config__model_sequence_batching__control__init(c);
  c->kind = enum_value(
      j, "kind",
      &inference__config__model_sequence_batching__control__kind__descriptor);
  c->data_type =
      enum_value(j, "data_type", &inference__config__data_type__descriptor);
  c->int32_false_true =
      int32s(p, json_object_get(j, "int32_false_true"), &c->n_int32_false_true);
  c->fp32_false_true =
      floats(p, json_object_get(j, "fp32_false_true"), &c->n_fp32_false_true);
  c->bool_false_true =
      bools(p, json_object_get(j, "bool_false_true"), &c->n_bool_false_true);
  return c;
}

static seq_input_t **seq_inputs(parts_t *p, json_t *a, size_t *n) {
  *n = json_array_size(a);
  seq_input_t **v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++) {
    json_t *j = json_array_get(a, i), *controls = json_object_get(j, "control");
    seq_input_t *in = v[i] = part(p, 1, sizeof *in);
    if (!in)
      break;
    inference__config__model_sequence_batching__control_input__init(in);
    in->name = text(j, "name");
    in->n_control = json_array_size(controls);
    in->control = part(p, in->n_control, sizeof *in->control);
    for (size_t k = 0; in->control && k < in->n_control; k++)
      in->control[k] = seq_control(p, json_array_get(controls, k));
  }
  return v;
}

static seq_state_t **seq_states(parts_t *p, json_t *a, size_t *n) {
  *n = json_array_size(a);
  seq_state_t **v = part(p, *n, sizeof *v);
  for (size_t i = 0; v && i < *n; i++) {
    json_t *j = json_array_get(a, i);
    seq_state_t *s = v[i] = part(p, 1, sizeof *s);
    if (!s)
      break;
    inference__config__model_sequence_batching__state__init(s);
    s->input_name = text(j, "input_name");
    s->output_name = text(j, "output_name");
    s->data_type =
        enum_value(j, "data_type", &inference__config__data_type__descriptor);
    s->dims = int64s(p, json_object_get(j, "dims"), &s->n_dims);
  }
  return v;
}

/* The strategy the document names ("oldest" or "direct"; the oneof). */
static void seq_strategy(parts_t *p, json_t *j, seq_batching_t *b) {
  if (json_object_get(j, "oldest")) {
    b->oldest = part(p, 1, sizeof *b->oldest);
    if (b->oldest) {
      inference__config__model_sequence_batching__strategy_oldest__init(
          b->oldest);
      b->strategy_choice_case =
          INFERENCE__CONFIG__MODEL_SEQUENCE_BATCHING__STRATEGY_CHOICE_OLDEST;
    }
  } else if (json_object_get(j, "direct")) {
    b->direct = part(p, 1, sizeof *b->direct);
    if (b->direct) {
      inference__config__model_sequence_batching__strategy_direct__init(
          b->direct);
      b->strategy_choice_case =
          INFERENCE__CONFIG__MODEL_SEQUENCE_BATCHING__STRATEGY_CHOICE_DIRECT;
    }
  }
}

static seq_batching_t *sequence_batching(parts_t *p, json_t *j) {
  seq_batching_t *b = part(p, 1, sizeof *b);
  if (!b)
    return NULL;
  inference__config__model_sequence_batching__init(b);
  b->max_sequence_idle_microseconds = u64(j, "max_sequence_idle_microseconds");
  b->control_input =
      seq_inputs(p, json_object_get(j, "control_input"), &b->n_control_input);
  b->state = seq_states(p, json_object_get(j, "state"), &b->n_state);
  seq_strategy(p, j, b);
  return b;
}

/* The scheduler the document shows: a model has at most one (the proto's
 * oneof; a gpuslice config is read through the same proto). */
static void scheduling(parts_t *p, json_t *root,
                       Inference__Config__ModelConfig *c) {
  json_t *seq = json_object_get(root, "sequence_batching"),
         *dyn = json_object_get(root, "dynamic_batching");
  if (seq && (c->sequence_batching = sequence_batching(p, seq)))
    c->scheduling_choice_case =
        INFERENCE__CONFIG__MODEL_CONFIG__SCHEDULING_CHOICE_SEQUENCE_BATCHING;
  else if (!seq && dyn && (c->dynamic_batching = dynamic_batching(p, dyn)))
    c->scheduling_choice_case =
        INFERENCE__CONFIG__MODEL_CONFIG__SCHEDULING_CHOICE_DYNAMIC_BATCHING;
}

void gs__grpc_model_config(json_t *root, gs__grpc_reply_t *reply) {
  parts_t p = {NULL, false};
  Inference__ModelConfigResponse r = INFERENCE__MODEL_CONFIG_RESPONSE__INIT;
  Inference__Config__ModelConfig c = INFERENCE__CONFIG__MODEL_CONFIG__INIT;
  c.name = text(root, "name");
  c.platform = text(root, "platform");
  c.backend = text(root, "backend");
  c.max_batch_size =
      (int32_t)json_integer_value(json_object_get(root, "max_batch_size"));
  c.input = inputs(&p, json_object_get(root, "input"), &c.n_input);
  c.output = outputs(&p, json_object_get(root, "output"), &c.n_output);
  c.instance_group = instance_groups(
      &p, json_object_get(root, "instance_group"), &c.n_instance_group);
  scheduling(&p, root, &c);
  r.config = &c;
  if (p.failed)
    gs__grpc_reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
  else
    gs__grpc_reply_message(reply, &r.base);
  parts_free(&p);
}
