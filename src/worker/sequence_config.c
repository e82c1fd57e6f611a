/* config.pbtxt's sequence_batching (Triton's ModelSequenceBatching) into
 * gs__seq_config_t: the strategy (direct or oldest), the idle timeout, the
 * control inputs and the implicit state; what gpuslice cannot serve
 * (iterative sequences, a STRING CORRID, state from a file) is refused by
 * name. */
#include <stdio.h>
#include <string.h>

#include "model_config.pb-c.h"
#include "worker/sequence.h"

typedef Inference__Config__ModelSequenceBatching seq_pb_t;
typedef Inference__Config__ModelSequenceBatching__Control control_pb_t;

static const char *const kind_names[] = {
    "CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_READY", "CONTROL_SEQUENCE_END",
    "CONTROL_SEQUENCE_CORRID"};

/* The Triton DataType enum value as the engine's dtype. */
static gs_dtype_t pb_dtype(int value) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
      &inference__config__data_type__descriptor, value);
  return v && strncmp(v->name, "TYPE_", 5) == 0
             ? gs_dtype_from_name(v->name + 5)
             : GS_DTYPE_INVALID;
}

static int read_flag(gs__seq_control_t *c, const control_pb_t *p,
                     const char *file, gs_error_t *err) {
  int given = (p->n_int32_false_true > 0) + (p->n_fp32_false_true > 0) +
              (p->n_bool_false_true > 0);
  size_t n =
      p->n_int32_false_true + p->n_fp32_false_true + p->n_bool_false_true;
  if (given != 1 || n != 2)
    return gs_error_set(err, GS_EINVAL,
                        "%s: sequence_batching control_input '%s' (%s) needs "
                        "exactly one of int32_false_true, fp32_false_true, "
                        "bool_false_true with two values",
                        file, c->name, kind_names[c->kind]);
  for (int i = 0; i < 2; i++) {
    if (p->n_int32_false_true) {
      c->dtype = GS_DTYPE_INT32;
      c->values[i] = p->int32_false_true[i];
    } else if (p->n_fp32_false_true) {
      c->dtype = GS_DTYPE_FP32;
      c->values[i] = p->fp32_false_true[i];
    } else {
      c->dtype = GS_DTYPE_BOOL;
      c->values[i] = p->bool_false_true[i] ? 1 : 0;
    }
  }
  return GS_OK;
}

static int read_control(gs__seq_control_t *c, const char *name,
                        const control_pb_t *p, const char *file,
                        gs_error_t *err) {
  if (!name[0] || strlen(name) >= sizeof c->name)
    return gs_error_set(err, GS_EINVAL,
                        "%s: each sequence_batching control_input needs a "
                        "name (under 128 bytes)",
                        file);
  snprintf(c->name, sizeof c->name, "%s", name);
  if ((unsigned)p->kind > GS__SEQ_CTL_CORRID)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: control_input '%s': control kind %d is not "
                        "supported by gpuslice",
                        file, name, (int)p->kind);
  c->kind = (gs__seq_control_kind_t)p->kind;
  if (c->kind != GS__SEQ_CTL_CORRID)
    return read_flag(c, p, file, err);
  c->dtype = pb_dtype(p->data_type);
  if (c->dtype != GS_DTYPE_INT32 && c->dtype != GS_DTYPE_UINT32 &&
      c->dtype != GS_DTYPE_INT64 && c->dtype != GS_DTYPE_UINT64)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: control_input '%s' (CONTROL_SEQUENCE_CORRID): "
                        "data_type must be TYPE_INT32, TYPE_UINT32, TYPE_INT64 "
                        "or TYPE_UINT64 in gpuslice (TYPE_STRING is not "
                        "supported)",
                        file, name);
  return GS_OK;
}

static int read_controls(gs__seq_config_t *cfg, const seq_pb_t *sb,
                         const char *file, gs_error_t *err) {
  for (size_t i = 0; i < sb->n_control_input; i++) {
    const Inference__Config__ModelSequenceBatching__ControlInput *ci =
        sb->control_input[i];
    for (size_t k = 0; k < ci->n_control; k++) {
      if (cfg->n_controls == GS__SEQ_MAX_CONTROLS)
        return gs_error_set(err, GS_ELIMIT,
                            "%s: at most %d sequence_batching controls", file,
                            GS__SEQ_MAX_CONTROLS);
      int rc = read_control(&cfg->controls[cfg->n_controls++], ci->name,
                            ci->control[k], file, err);
      if (rc != GS_OK)
        return rc;
    }
  }
  return GS_OK;
}

static int read_state(gs__seq_state_t *s,
                      const Inference__Config__ModelSequenceBatching__State *p,
                      const char *file, gs_error_t *err) {
  if (!p->input_name[0] || !p->output_name[0] ||
      strlen(p->input_name) >= sizeof s->input ||
      strlen(p->output_name) >= sizeof s->output)
    return gs_error_set(err, GS_EINVAL,
                        "%s: sequence_batching state needs input_name and "
                        "output_name (under 128 bytes)",
                        file);
  snprintf(s->input, sizeof s->input, "%s", p->input_name);
  snprintf(s->output, sizeof s->output, "%s", p->output_name);
  s->dtype = pb_dtype(p->data_type);
  if (s->dtype == GS_DTYPE_INVALID || s->dtype == GS_DTYPE_BYTES)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: sequence_batching state '%s': data_type must be "
                        "a numeric type",
                        file, s->input);
  if (p->n_dims > GS_TENSOR_MAX_RANK)
    return gs_error_set(err, GS_ELIMIT, "%s: state '%s' has too many dims",
                        file, s->input);
  for (size_t d = 0; d < p->n_dims; d++) {
    if (p->dims[d] < 1)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: state '%s': dims must be fixed sizes >= 1 in "
                          "gpuslice (no growable state)",
                          file, s->input);
    s->dims[d] = p->dims[d];
  }
  s->rank = (int)p->n_dims;
  for (size_t i = 0; i < p->n_initial_state; i++)
    if (p->initial_state[i]->state_data_case !=
        INFERENCE__CONFIG__MODEL_SEQUENCE_BATCHING__INITIAL_STATE__STATE_DATA_ZERO_DATA)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: state '%s': initial_state data_file is not "
                          "supported by gpuslice (zero_data is)",
                          file, s->input);
  if (p->use_growable_memory)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: state '%s': use_growable_memory is not supported "
                        "by gpuslice",
                        file, s->input);
  return GS_OK;
}

/* oldest's preferred_batch_size and max_queue_delay_microseconds. */
static int read_oldest_batch(
    gs__seq_config_t *cfg,
    const Inference__Config__ModelSequenceBatching__StrategyOldest *o,
    const char *file, gs_error_t *err) {
  size_t max = sizeof cfg->preferred / sizeof cfg->preferred[0];
  if (o->n_preferred_batch_size > max)
    return gs_error_set(err, GS_ELIMIT,
                        "%s: sequence_batching oldest: at most %zu "
                        "preferred_batch_size values",
                        file, max);
  for (size_t i = 0; i < o->n_preferred_batch_size; i++) {
    if (o->preferred_batch_size[i] < 1)
      return gs_error_set(err, GS_EINVAL,
                          "%s: sequence_batching oldest preferred_batch_size "
                          "%d must be >= 1",
                          file, (int)o->preferred_batch_size[i]);
    cfg->preferred[cfg->n_preferred++] = (unsigned)o->preferred_batch_size[i];
  }
  cfg->delay_us = o->max_queue_delay_microseconds;
  return GS_OK;
}

int gs__seq_config_read(gs__seq_config_t *cfg, const seq_pb_t *sb,
                        const char *file, gs_error_t *err) {
  memset(cfg, 0, sizeof *cfg);
  if (sb->iterative_sequence)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: sequence_batching iterative_sequence is not "
                        "supported by gpuslice",
                        file);
  cfg->idle_us = sb->max_sequence_idle_microseconds
                     ? sb->max_sequence_idle_microseconds
                     : GS__SEQ_DEFAULT_IDLE_US;
  if (sb->strategy_choice_case ==
      INFERENCE__CONFIG__MODEL_SEQUENCE_BATCHING__STRATEGY_CHOICE_OLDEST) {
    int32_t n = sb->oldest->max_candidate_sequences;
    if (n < 0 || n > GS__SEQ_MAX_SLOTS)
      return gs_error_set(err, GS_EINVAL,
                          "%s: sequence_batching oldest "
                          "max_candidate_sequences must be 1..%d",
                          file, GS__SEQ_MAX_SLOTS);
    cfg->oldest = true;
    cfg->max_sequences = n ? (unsigned)n : 1;
    if (read_oldest_batch(cfg, sb->oldest, file, err) != GS_OK)
      return err->code;
  }
  int rc = read_controls(cfg, sb, file, err);
  if (rc == GS_OK && sb->n_state > GS__SEQ_MAX_STATES)
    rc = gs_error_set(err, GS_ELIMIT, "%s: at most %d sequence_batching states",
                      file, GS__SEQ_MAX_STATES);
  for (size_t i = 0; rc == GS_OK && i < sb->n_state; i++)
    rc = read_state(&cfg->states[cfg->n_states++], sb->state[i], file, err);
  cfg->enabled = rc == GS_OK;
  return rc;
}

static const gs_tensor_info_t *find_info(const gs_tensor_info_t *t, size_t n,
                                         const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(t[i].name, name))
      return &t[i];
  return NULL;
}

int gs__seq_config_check(const gs__seq_config_t *cfg, const char *file,
                         const gs_tensor_info_t *inputs, size_t n_inputs,
                         const gs_tensor_info_t *outputs, size_t n_outputs,
                         gs_error_t *err) {
  for (size_t i = 0; cfg->enabled && i < cfg->n_controls; i++) {
    const gs__seq_control_t *c = &cfg->controls[i];
    const gs_tensor_info_t *t = find_info(inputs, n_inputs, c->name);
    bool corrid = c->kind == GS__SEQ_CTL_CORRID;
    if (!t)
      return gs_error_set(err, GS_EINVAL,
                          "%s: sequence_batching control_input '%s' is not "
                          "one of the model's inputs",
                          file, c->name);
    if (t->dtype != c->dtype)
      return gs_error_set(err, GS_EINVAL,
                          "%s: sequence_batching control_input '%s' is %s%s "
                          "but %s in the model",
                          file, c->name, corrid ? "TYPE_" : "",
                          corrid                       ? gs_dtype_name(c->dtype)
                          : c->dtype == GS_DTYPE_INT32 ? "int32_false_true"
                          : c->dtype == GS_DTYPE_FP32  ? "fp32_false_true"
                                                       : "bool_false_true",
                          gs_dtype_name(t->dtype));
  }
  for (size_t i = 0; cfg->enabled && i < cfg->n_states; i++) {
    const gs__seq_state_t *s = &cfg->states[i];
    const gs_tensor_info_t *in = find_info(inputs, n_inputs, s->input);
    const gs_tensor_info_t *out = find_info(outputs, n_outputs, s->output);
    if (!in || !out || in->dtype != s->dtype || out->dtype != s->dtype)
      return gs_error_set(err, GS_EINVAL,
                          "%s: sequence_batching state '%s' -> '%s' needs a "
                          "model input and output of TYPE_%s",
                          file, s->input, s->output, gs_dtype_name(s->dtype));
  }
  return GS_OK;
}
