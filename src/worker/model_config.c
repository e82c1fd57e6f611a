/* config.pbtxt, Triton's model configuration, into the worker's model entry:
 * libprotobuf parses the text (pbtxt.cc) and refuses fields not in
 * `supported` by name; protobuf-c decodes the result here, where values are
 * checked, and later the declared tensors are checked against the model. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_config.pb-c.h"
#include "worker/model_config.h"
#include "worker/pbtxt.h"

typedef Inference__Config__ModelConfig config_pb_t;

#define TRITON_DEFAULT_MAX_BATCH_SIZE 4
#define MAX_QUEUE_DELAY_US 10000000 /* 10 s, as config.json */

/* The fields gpuslice serves; any other field a config.pbtxt sets is
 * refused by name (pbtxt.cc). A message listed without children is
 * accepted whole and checked below. */
static const char *const supported[] = {
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "version_policy",
    "input",
    "input.name",
    "input.data_type",
    "input.format",
    "input.dims",
    "input.reshape",
    "output",
    "output.name",
    "output.data_type",
    "output.dims",
    "output.reshape",
    "output.label_filename",
    "dynamic_batching",
    "dynamic_batching.preferred_batch_size",
    "dynamic_batching.max_queue_delay_microseconds",
    "dynamic_batching.default_queue_policy", /* read_queue_policy */
    "instance_group",
    "instance_group.name",
    "instance_group.kind",
    "instance_group.count",
    "instance_group.gpus",
    "parameters",
    "model_warmup",
    "sequence_batching", /* checked by gs__seq_config_read */
    NULL};

void gs__model_config_init(gs__model_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->placement.warmup = -1;
  cfg->latest_versions = 1;
}

/* Triton's DataType enum names, TYPE_ dropped, are KServe's datatype names
 * (STRING is BYTES); the engine serves those gs_dtype_from_name knows. */
static int config_dtype(int value, const char *file, const char *tensor,
                        gs_dtype_t *dtype, gs_error_t *err) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
      &inference__config__data_type__descriptor, value);
  const char *name = v ? v->name : "TYPE_INVALID";
  const char *kserve = !strcmp(name, "TYPE_STRING") ? "BYTES" : name + 5;
  *dtype = gs_dtype_from_name(kserve);
  if (*dtype == GS_DTYPE_INVALID)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: '%s': data_type %s is not supported by gpuslice",
                        file, tensor, name);
  return GS_OK;
}

static int read_dims(gs__config_tensor_t *t, const int64_t *dims, size_t n,
                     const char *file, gs_error_t *err) {
  if (n > GS_TENSOR_MAX_RANK)
    return gs_error_set(err, GS_ELIMIT, "%s: '%s' has %zu dims, at most %d",
                        file, t->name, n, GS_TENSOR_MAX_RANK);
  for (size_t i = 0; i < n; i++) {
    if (dims[i] < -1 || dims[i] == 0)
      return gs_error_set(err, GS_EINVAL,
                          "%s: '%s': dims hold sizes >= 1 or -1 (variable), "
                          "not %lld",
                          file, t->name, (long long)dims[i]);
    t->dims[i] = dims[i];
  }
  t->rank = (int)n;
  return GS_OK;
}

/* Elements of shape: the product of its fixed sizes, per run between
 * variable (-1) sizes, into runs[] (one more than the -1s); n_runs. */
static int element_runs(const int64_t *shape, int rank, int64_t *runs) {
  int n = 0;
  runs[0] = 1;
  for (int d = 0; d < rank; d++) {
    if (shape[d] < 0)
      runs[++n] = 1;
    else
      runs[n] *= shape[d];
  }
  return n + 1;
}

/* reshape as Triton takes it: sizes >= 1 or -1, the element count of dims
 * (per run between variable sizes when there are some), an empty shape
 * (a scalar per batch row) only for dims [1] of a batching model. */
static int read_reshape(gs__config_tensor_t *t,
                        const Inference__Config__ModelTensorReshape *r,
                        unsigned max_batch_size, const char *file,
                        gs_error_t *err) {
  t->reshape_rank = -1;
  if (!r)
    return GS_OK;
  if (t->rank < 0)
    return gs_error_set(err, GS_EINVAL, "%s: '%s': reshape needs dims", file,
                        t->name);
  if (r->n_shape + (max_batch_size ? 1 : 0) > GS_TENSOR_MAX_RANK)
    return gs_error_set(err, GS_ELIMIT,
                        "%s: '%s': reshape has %zu dims, at "
                        "most %d",
                        file, t->name, r->n_shape,
                        GS_TENSOR_MAX_RANK - (max_batch_size ? 1 : 0));
  if (r->n_shape == 0 && max_batch_size == 0)
    return gs_error_set(err, GS_EINVAL,
                        "%s: '%s': an empty reshape needs max_batch_size > 0 "
                        "(a scalar tensor is not served)",
                        file, t->name);
  for (size_t i = 0; i < r->n_shape; i++) {
    if (r->shape[i] < -1 || r->shape[i] == 0)
      return gs_error_set(err, GS_EINVAL,
                          "%s: '%s': reshape holds sizes >= 1 or -1 "
                          "(variable), not %lld",
                          file, t->name, (long long)r->shape[i]);
    t->reshape[i] = r->shape[i];
  }
  t->reshape_rank = (int)r->n_shape;
  int64_t dr[GS_TENSOR_MAX_RANK + 1], rr[GS_TENSOR_MAX_RANK + 1];
  int nd = element_runs(t->dims, t->rank, dr);
  int nr = element_runs(t->reshape, t->reshape_rank, rr);
  bool same = nd == nr;
  for (int i = 0; same && i < nd; i++)
    same = dr[i] == rr[i];
  if (!same)
    return gs_error_set(err, GS_EINVAL,
                        "%s: '%s': reshape and dims differ in element count "
                        "(%s): a reshape keeps the elements",
                        file, t->name,
                        nd != nr ? "not the same number of variable sizes"
                        : nd > 1 ? "between variable sizes"
                                 : "dims and reshape multiply out differently");
  return GS_OK;
}

static int read_tensor(gs__config_tensor_t *t, const char *name, int dtype,
                       const int64_t *dims, size_t n_dims,
                       const Inference__Config__ModelTensorReshape *reshape,
                       unsigned max_batch_size, const char *file,
                       gs_error_t *err) {
  if (!name[0] || strlen(name) >= sizeof t->name)
    return gs_error_set(err, GS_EINVAL,
                        "%s: each input and output needs a name (under 128 "
                        "bytes)",
                        file);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->rank = -1;
  t->reshape_rank = -1;
  int rc = dtype ? config_dtype(dtype, file, name, &t->dtype, err) : GS_OK;
  if (rc == GS_OK && n_dims)
    rc = read_dims(t, dims, n_dims, file, err);
  if (rc == GS_OK)
    rc = read_reshape(t, reshape, max_batch_size, file, err);
  return rc;
}

/* Triton reads an output's labels from a file in the model directory and
 * refuses a path that leaves it. */
static int read_label_filename(gs__config_tensor_t *t, const char *path,
                               const char *file, gs_error_t *err) {
  if (!path || !path[0])
    return GS_OK;
  if (strlen(path) >= sizeof t->label_filename)
    return gs_error_set(err, GS_ELIMIT,
                        "%s: '%s': label_filename is longer than %zu bytes",
                        file, t->name, sizeof t->label_filename - 1);
  bool escapes = path[0] == '/';
  for (const char *p = path; *p && !escapes; p += strcspn(p, "/"), p += !!*p)
    escapes = !strncmp(p, "..", 2) && (p[2] == '/' || !p[2]);
  if (escapes)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: '%s': label_filename '%s' is outside the model "
                        "directory",
                        file, t->name, path);
  snprintf(t->label_filename, sizeof t->label_filename, "%s", path);
  return GS_OK;
}

static int read_tensors(gs__model_config_t *cfg, const config_pb_t *pb,
                        const char *file, gs_error_t *err) {
  if (pb->n_input > GS__INFER_MAX_TENSORS ||
      pb->n_output > GS__INFER_MAX_TENSORS)
    return gs_error_set(err, GS_ELIMIT, "%s: at most %d inputs and outputs",
                        file, GS__INFER_MAX_TENSORS);
  int rc = GS_OK;
  for (size_t i = 0; rc == GS_OK && i < pb->n_input; i++) {
    const Inference__Config__ModelInput *in = pb->input[i];
    rc = read_tensor(&cfg->inputs[i], in->name, in->data_type, in->dims,
                     in->n_dims, in->reshape, cfg->max_batch_size, file, err);
    cfg->inputs[i].format = (int)in->format; /* shown, e.g. to image_client */
  }
  for (size_t i = 0; rc == GS_OK && i < pb->n_output; i++) {
    const Inference__Config__ModelOutput *out = pb->output[i];
    rc = read_tensor(&cfg->outputs[i], out->name, out->data_type, out->dims,
                     out->n_dims, out->reshape, cfg->max_batch_size, file, err);
    if (rc == GS_OK)
      rc =
          read_label_filename(&cfg->outputs[i], out->label_filename, file, err);
  }
  cfg->n_inputs = pb->n_input;
  cfg->n_outputs = pb->n_output;
  return rc;
}

/* default_queue_policy as Triton's ModelQueuePolicy; every value of its
 * integers means something, only an action outside the enum (a number in
 * the text) is refused. priority_levels and the per-priority policies are
 * not in `supported`: refused by name. */
static int read_queue_policy(gs__queue_policy_t *p,
                             const Inference__Config__ModelQueuePolicy *qp,
                             const char *file, gs_error_t *err) {
  if (!qp)
    return GS_OK;
  bool delay = qp->timeout_action ==
               INFERENCE__CONFIG__MODEL_QUEUE_POLICY__TIMEOUT_ACTION__DELAY;
  if (!delay &&
      qp->timeout_action !=
          INFERENCE__CONFIG__MODEL_QUEUE_POLICY__TIMEOUT_ACTION__REJECT)
    return gs_error_set(err, GS_EINVAL,
                        "%s: default_queue_policy.timeout_action must be "
                        "REJECT or DELAY, not %d",
                        file, (int)qp->timeout_action);
  p->max_queue_size = qp->max_queue_size;
  /* uint64 in Triton's proto; past INT64_MAX us (292,000 years) it is
   * as good as none, and /config reports it as a JSON integer */
  p->default_timeout_us = qp->default_timeout_microseconds > INT64_MAX
                              ? INT64_MAX
                              : qp->default_timeout_microseconds;
  p->allow_timeout_override = qp->allow_timeout_override;
  p->delay = delay;
  return GS_OK;
}

static int read_batching(gs__model_config_t *cfg,
                         const Inference__Config__ModelDynamicBatching *db,
                         const char *file, gs_error_t *err) {
  gs__batching_t *b = &cfg->batching;
  if (cfg->max_batch_size == 0)
    return gs_error_set(err, GS_EINVAL,
                        "%s: dynamic_batching needs max_batch_size > 0", file);
  if (db->max_queue_delay_microseconds > MAX_QUEUE_DELAY_US)
    return gs_error_set(err, GS_EINVAL,
                        "%s: max_queue_delay_microseconds must be 0..%d", file,
                        MAX_QUEUE_DELAY_US);
  if (db->n_preferred_batch_size > GS__MAX_PREFERRED_BATCH)
    return gs_error_set(err, GS_ELIMIT,
                        "%s: at most %d preferred_batch_size values", file,
                        GS__MAX_PREFERRED_BATCH);
  for (size_t i = 0; i < db->n_preferred_batch_size; i++) {
    int32_t size = db->preferred_batch_size[i];
    if (size < 1 || (unsigned)size > cfg->max_batch_size)
      return gs_error_set(err, GS_EINVAL,
                          "%s: preferred_batch_size %d is not in 1..%u "
                          "(max_batch_size)",
                          file, (int)size, cfg->max_batch_size);
    b->preferred[b->n_preferred++] = (unsigned)size;
  }
  b->max_queue_delay_us = db->max_queue_delay_microseconds;
  b->enabled = true;
  return read_queue_policy(&b->policy, db->default_queue_policy, file, err);
}

/* One instance group: a gpuslice worker runs its sessions on one device. */
static int read_instance_group(gs__placement_t *pl, const config_pb_t *pb,
                               const char *file, gs_error_t *err) {
  if (pb->n_instance_group > 1)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: %zu instance_group entries: gpuslice serves one",
                        file, pb->n_instance_group);
  const Inference__Config__ModelInstanceGroup *g = pb->instance_group[0];
  switch (g->kind) {
  case INFERENCE__CONFIG__MODEL_INSTANCE_GROUP__KIND__KIND_AUTO:
    pl->provider = GS_PROVIDER_AUTO;
    break;
  case INFERENCE__CONFIG__MODEL_INSTANCE_GROUP__KIND__KIND_GPU:
    pl->provider = GS_PROVIDER_CUDA;
    break;
  case INFERENCE__CONFIG__MODEL_INSTANCE_GROUP__KIND__KIND_CPU:
    pl->provider = GS_PROVIDER_CPU;
    break;
  default:
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: instance_group kind KIND_MODEL is not supported "
                        "by gpuslice (KIND_GPU, KIND_CPU, KIND_AUTO are)",
                        file);
  }
  if (g->n_gpus > 1)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: instance_group gpus lists %zu GPUs: a gpuslice "
                        "worker serves on one",
                        file, g->n_gpus);
  if (g->n_gpus && (g->gpus[0] < 0 || g->gpus[0] > 1023))
    return gs_error_set(err, GS_EINVAL,
                        "%s: instance_group gpus must be 0..1023", file);
  pl->device = g->n_gpus ? g->gpus[0] : 0;
  if (g->count < 0 || g->count > 64)
    return gs_error_set(err, GS_EINVAL,
                        "%s: instance_group count must be "
                        "1..64",
                        file);
  pl->count = (unsigned)g->count; /* 0: not given */
  return GS_OK;
}

static int read_version_policy(gs__model_config_t *cfg,
                               const Inference__Config__ModelVersionPolicy *vp,
                               const char *file, gs_error_t *err) {
  switch (vp->policy_choice_case) {
  case INFERENCE__CONFIG__MODEL_VERSION_POLICY__POLICY_CHOICE_LATEST:
    cfg->version_policy = GS__VERSIONS_LATEST;
    cfg->latest_versions = vp->latest->num_versions;
    break;
  case INFERENCE__CONFIG__MODEL_VERSION_POLICY__POLICY_CHOICE_ALL:
    cfg->version_policy = GS__VERSIONS_ALL;
    break;
  case INFERENCE__CONFIG__MODEL_VERSION_POLICY__POLICY_CHOICE_SPECIFIC:
    cfg->version_policy = GS__VERSIONS_SPECIFIC;
    if (vp->specific->n_versions > GS__CONFIG_MAX_VERSIONS)
      return gs_error_set(err, GS_ELIMIT,
                          "%s: version_policy specific lists at most %d "
                          "versions",
                          file, GS__CONFIG_MAX_VERSIONS);
    for (size_t i = 0; i < vp->specific->n_versions; i++)
      cfg->versions[cfg->n_versions++] = (long long)vp->specific->versions[i];
    break;
  default:
    break;
  }
  return GS_OK;
}

/* parameters are free-form: Triton hands them to the backend, whose
 * unknown keys are no error (its ONNX Runtime backend ignores
 * execute_delay_ms, which Triton's simple_dyna_sequence example sets).
 * The keys gpuslice does not use are listed, for a warning at load. */
static void note_unused(gs__model_config_t *cfg, const char *key) {
  size_t used = strlen(cfg->unused_parameters);
  size_t room = sizeof cfg->unused_parameters - used;
  int n = snprintf(cfg->unused_parameters + used, room, "%s%.64s",
                   used ? ", " : "", key);
  if (n < 0 || (size_t)n >= room) /* too many to list: end with "..." */
    memcpy(cfg->unused_parameters + sizeof cfg->unused_parameters - 4, "...",
           4);
}

/* gpuslice's own settings, where config.json has them as keys: parameters
 * { key: "precision" value: { string_value: "fp16" } } and so on; other
 * keys are noted, not refused (note_unused). */
static int read_parameter(gs__model_config_t *cfg, const char *key,
                          const char *value, const char *file,
                          gs_error_t *err) {
  char *end;
  if (!strcmp(key, "precision") &&
      (!strcmp(value, "fp16") || !strcmp(value, "fp32"))) {
    cfg->placement.precision =
        value[2] == '1' ? GS_PRECISION_FP16 : GS_PRECISION_FP32;
  } else if (!strcmp(key, "warmup") &&
             (!strcmp(value, "true") || !strcmp(value, "false"))) {
    cfg->placement.warmup = value[0] == 't';
  } else if (!strcmp(key, "instance_memory_budget_bytes")) {
    unsigned long long v = strtoull(value, &end, 10);
    if (!value[0] || *end || v == 0 || value[0] == '-')
      return gs_error_set(err, GS_EINVAL,
                          "%s: parameter instance_memory_budget_bytes must be "
                          "a positive integer",
                          file);
    cfg->memory_budget_bytes = v;
  } else if (!strcmp(key, "precision") || !strcmp(key, "warmup")) {
    return gs_error_set(err, GS_EINVAL,
                        "%s: parameter %s: '%.64s' is not one of %s", file, key,
                        value, key[0] == 'p' ? "fp16, fp32" : "true, false");
  } else {
    note_unused(cfg, key);
  }
  return GS_OK;
}

/* Triton's backends beside ONNX Runtime run models gpuslice cannot. */
static int check_backend(const config_pb_t *pb, const char *model,
                         const char *file, gs_error_t *err) {
  if (pb->name[0] && strcmp(pb->name, model))
    return gs_error_set(err, GS_EINVAL,
                        "%s: name '%.128s' is not the model directory's name "
                        "'%s'",
                        file, pb->name, model);
  if (pb->platform[0] && strcmp(pb->platform, "onnxruntime_onnx"))
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: platform '%.64s' is not supported by gpuslice, "
                        "which runs ONNX models (onnxruntime_onnx)",
                        file, pb->platform);
  if (pb->backend[0] && strcmp(pb->backend, "onnxruntime"))
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: backend '%.64s' is not supported by gpuslice, "
                        "which runs ONNX models (onnxruntime)",
                        file, pb->backend);
  return GS_OK;
}

static int read_pb(gs__model_config_t *cfg, const config_pb_t *pb,
                   const char *model, const char *file, gs_error_t *err) {
  int rc = check_backend(pb, model, file, err);
  if (rc == GS_OK && (pb->max_batch_size < 0 || pb->max_batch_size > 1 << 20))
    rc = gs_error_set(err, GS_EINVAL, "%s: max_batch_size must be 0..%d", file,
                      1 << 20);
  cfg->max_batch_size = (unsigned)pb->max_batch_size;
  if (rc == GS_OK)
    rc = read_tensors(cfg, pb, file, err);
  if (rc == GS_OK &&
      pb->scheduling_choice_case ==
          INFERENCE__CONFIG__MODEL_CONFIG__SCHEDULING_CHOICE_DYNAMIC_BATCHING)
    rc = read_batching(cfg, pb->dynamic_batching, file, err);
  if (rc == GS_OK &&
      pb->scheduling_choice_case ==
          INFERENCE__CONFIG__MODEL_CONFIG__SCHEDULING_CHOICE_SEQUENCE_BATCHING)
    rc = gs__seq_config_read(&cfg->sequence, pb->sequence_batching, file, err);
  if (rc == GS_OK && pb->n_instance_group)
    rc = read_instance_group(&cfg->placement, pb, file, err);
  if (rc == GS_OK && pb->version_policy)
    rc = read_version_policy(cfg, pb->version_policy, file, err);
  for (size_t i = 0; rc == GS_OK && i < pb->n_parameters; i++) {
    const Inference__Config__ModelParameter *v = pb->parameters[i]->value;
    rc = read_parameter(cfg, pb->parameters[i]->key, v ? v->string_value : "",
                        file, err);
  }
  /* Triton runs the warmup samples before the model is ready; gpuslice
   * plans (on a GPU, captures) every batch size at load instead. */
  if (pb->n_model_warmup && cfg->placement.warmup < 0)
    cfg->placement.warmup = 1;
  return rc;
}

/* Length of the valid UTF-8 sequence at s, 0 if there is none. */
static size_t utf8_len(const unsigned char *s) {
  size_t n = s[0] < 0x80                   ? 1
             : s[0] >= 0xc2 && s[0] < 0xe0 ? 2
             : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
             : s[0] >= 0xf0 && s[0] < 0xf5 ? 4
                                           : 0;
  for (size_t i = 1; i < n; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  return n;
}

/* Names from the file end up in JSON error bodies, which must be UTF-8:
 * each byte of an invalid sequence becomes '?'. */
void gs__model_config_sanitize(char *msg) {
  unsigned char *s = (unsigned char *)msg;
  while (*s) {
    size_t n = utf8_len(s);
    if (n == 0)
      *s++ = '?';
    else
      s += n;
  }
}

static int parse_config(gs__model_config_t *cfg, bool json, const char *model,
                        const char *file, const char *text, size_t len,
                        gs_error_t *err) {
  char msg[sizeof err->msg];
  uint8_t *bin = NULL;
  size_t bin_len = 0;
  gs__model_config_init(cfg);
  gs__pbtxt_status_t st =
      json ? gs__pbtxt_model_config_json(text, len, file, supported, &bin,
                                         &bin_len, msg, sizeof msg)
           : gs__pbtxt_model_config(text, len, file, supported, &bin, &bin_len,
                                    msg, sizeof msg);
  gs__model_config_sanitize(msg);
  if (st != GS__PBTXT_OK)
    return gs_error_set(err,
                        st == GS__PBTXT_SYNTAX        ? GS_EPARSE
                        : st == GS__PBTXT_UNSUPPORTED ? GS_EUNSUPPORTED
                                                      : GS_ENOMEM,
                        "%s", msg);
  config_pb_t *pb = inference__config__model_config__unpack(NULL, bin_len, bin);
  free(bin);
  if (!pb)
    return gs_error_set(err, GS_ENOMEM, "%s: cannot decode", file);
  const char *slash = strrchr(file, '/');
  snprintf(cfg->dir, sizeof cfg->dir, "%.*s",
           slash ? (int)(slash - file) + (slash == file) : 1,
           slash ? file : ".");
  int rc = read_pb(cfg, pb, model, file, err);
  inference__config__model_config__free_unpacked(pb, NULL);
  if (rc != GS_OK)
    gs__model_config_sanitize(err->msg);
  return rc;
}

int gs__model_config_parse_pbtxt(gs__model_config_t *cfg, const char *model,
                                 const char *file, const char *text, size_t len,
                                 gs_error_t *err) {
  return parse_config(cfg, false, model, file, text, len, err);
}

int gs__model_config_parse_json(gs__model_config_t *cfg, const char *model,
                                const char *file, const char *text, size_t len,
                                gs_error_t *err) {
  return parse_config(cfg, true, model, file, text, len, err);
}
