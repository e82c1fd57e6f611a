/* A model's configuration as the repository reads it: Triton's
 * config.pbtxt (model_config.c), gpuslice's first format config.json, or a
 * load request's "config" override (Triton's ModelConfig as JSON). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "worker/model_config.h"
#include "worker/worker_int.h"

#define MAX_QUEUE_DELAY_US 10000000 /* 10 s */

/* A non-negative integer of at most max, into *out; false otherwise. */
static bool json_count(json_t *v, json_int_t max, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) > max)
    return false;
  *out = (uint64_t)json_integer_value(v);
  return true;
}

/* One key of "default_queue_policy", as config.pbtxt's ModelQueuePolicy. */
static int read_queue_policy_key(gs__queue_policy_t *p, const char *key,
                                 json_t *v, const char *path, gs_error_t *err) {
  uint64_t n = 0;
  const char *action = json_string_value(v);
  const char *want = NULL; /* what the value must be, when it is not */
  if (!strcmp(key, "max_queue_size")) {
    if (json_count(v, UINT32_MAX, &n))
      p->max_queue_size = (uint32_t)n;
    else
      want = "an integer 0..4294967295";
  } else if (!strcmp(key, "default_timeout_microseconds")) {
    if (json_count(v, INT64_MAX, &n))
      p->default_timeout_us = n;
    else
      want = "a non-negative integer";
  } else if (!strcmp(key, "allow_timeout_override")) {
    if (json_is_boolean(v))
      p->allow_timeout_override = json_is_true(v);
    else
      want = "true or false";
  } else if (!strcmp(key, "timeout_action")) {
    if (action && (!strcmp(action, "REJECT") || !strcmp(action, "DELAY")))
      p->delay = action[0] == 'D';
    else
      want = "\"REJECT\" or \"DELAY\"";
  } else {
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: dynamic_batching.default_queue_policy.%.64s is "
                        "not supported (max_queue_size, "
                        "default_timeout_microseconds, allow_timeout_override "
                        "and timeout_action are)",
                        path, key);
  }
  if (want)
    return gs_error_set(err, GS_EINVAL,
                        "%s: dynamic_batching.default_queue_policy.%s must be "
                        "%s",
                        path, key, want);
  return GS_OK;
}

/* "default_queue_policy": {"max_queue_size", "default_timeout_microseconds",
 * "allow_timeout_override", "timeout_action"}, each optional, as Triton's
 * ModelQueuePolicy. */
static int read_queue_policy(gs__queue_policy_t *p, json_t *qp,
                             const char *path, gs_error_t *err) {
  const char *key;
  json_t *v;
  if (!json_is_object(qp))
    return gs_error_set(err, GS_EINVAL,
                        "%s: dynamic_batching.default_queue_policy must be "
                        "an object",
                        path);
  json_object_foreach(qp, key, v) {
    int rc = read_queue_policy_key(p, key, v, path, err);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

/* "dynamic_batching": {"max_queue_delay_microseconds": D,
 * "preferred_batch_size": [..], "default_queue_policy": {..}}; each
 * optional, as in Triton. */
static int read_batching(gs__batching_t *b, json_t *db, unsigned max_batch,
                         const char *path, gs_error_t *err) {
  const char *key;
  json_t *v;
  if (!json_is_object(db))
    return gs_error_set(err, GS_EINVAL,
                        "%s: dynamic_batching must be an object", path);
  if (max_batch == 0)
    return gs_error_set(err, GS_EINVAL,
                        "%s: dynamic_batching needs max_batch_size > 0", path);
  json_object_foreach(db, key, v) {
    if (strcmp(key, "max_queue_delay_microseconds") &&
        strcmp(key, "preferred_batch_size") &&
        strcmp(key, "default_queue_policy"))
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: dynamic_batching.%.64s is not supported "
                          "(max_queue_delay_microseconds, "
                          "preferred_batch_size and default_queue_policy "
                          "are)",
                          path, key);
  }
  json_t *qp = json_object_get(db, "default_queue_policy");
  int rc = qp ? read_queue_policy(&b->policy, qp, path, err) : GS_OK;
  if (rc != GS_OK)
    return rc;
  json_t *delay = json_object_get(db, "max_queue_delay_microseconds");
  if (delay && (!json_is_integer(delay) || json_integer_value(delay) < 0 ||
                json_integer_value(delay) > MAX_QUEUE_DELAY_US))
    return gs_error_set(err, GS_EINVAL,
                        "%s: max_queue_delay_microseconds must be 0..%d", path,
                        MAX_QUEUE_DELAY_US);
  b->max_queue_delay_us = delay ? (uint64_t)json_integer_value(delay) : 0;
  json_t *pref = json_object_get(db, "preferred_batch_size");
  if (pref &&
      (!json_is_array(pref) || json_array_size(pref) > GS__MAX_PREFERRED_BATCH))
    return gs_error_set(err, GS_EINVAL,
                        "%s: preferred_batch_size must be an array of at most "
                        "%d sizes",
                        path, GS__MAX_PREFERRED_BATCH);
  size_t i;
  json_array_foreach(pref, i, v) {
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > max_batch)
      return gs_error_set(err, GS_EINVAL,
                          "%s: preferred_batch_size holds sizes 1..%u "
                          "(max_batch_size)",
                          path, max_batch);
    b->preferred[b->n_preferred++] = (unsigned)json_integer_value(v);
  }
  b->enabled = true;
  return GS_OK;
}

/* "instance_group": [{"kind": "KIND_GPU" | "KIND_CPU" | "KIND_AUTO",
 * "count": n, "gpus": [ordinal]}] as Triton writes it; the first group
 * decides. count is how many executions of the model run at once (each
 * its own session: on a GPU its own stream, so that one batch's copies
 * overlap another's compute). */
static int read_instance_group(gs__placement_t *pl, json_t *ig,
                               const char *path, gs_error_t *err) {
  json_t *g = json_array_get(ig, 0);
  if (!json_is_array(ig) || !json_is_object(g))
    return gs_error_set(err, GS_EINVAL,
                        "%s: instance_group must be an array of objects", path);
  const char *key;
  json_t *v;
  json_object_foreach(g, key, v) {
    if (strcmp(key, "kind") && strcmp(key, "count") && strcmp(key, "gpus") &&
        strcmp(key, "name"))
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: instance_group.%.64s is not supported (kind, "
                          "count, gpus and name are)",
                          path, key);
  }
  const char *kind = json_string_value(json_object_get(g, "kind"));
  if (json_object_get(g, "kind") && !kind)
    return gs_error_set(err, GS_EINVAL,
                        "%s: instance_group kind must be a "
                        "string",
                        path);
  if (!kind || !strcmp(kind, "KIND_AUTO"))
    pl->provider = GS_PROVIDER_AUTO;
  else if (!strcmp(kind, "KIND_GPU"))
    pl->provider = GS_PROVIDER_CUDA;
  else if (!strcmp(kind, "KIND_CPU"))
    pl->provider = GS_PROVIDER_CPU;
  else
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s: instance_group kind %.64s is not supported "
                        "(KIND_GPU, KIND_CPU, KIND_AUTO are)",
                        path, kind);
  json_t *gpus = json_object_get(g, "gpus");
  if (gpus) {
    json_t *first = json_array_get(gpus, 0);
    if (!json_is_integer(first) || json_integer_value(first) < 0 ||
        json_integer_value(first) > 1023)
      return gs_error_set(err, GS_EINVAL,
                          "%s: instance_group gpus must list GPU ordinals "
                          "(0..1023)",
                          path);
    pl->device = (int)json_integer_value(first);
  }
  json_t *count = json_object_get(g, "count");
  if (count && (!json_is_integer(count) || json_integer_value(count) < 1 ||
                json_integer_value(count) > 64))
    return gs_error_set(err, GS_EINVAL,
                        "%s: instance_group count must be 1..64", path);
  if (count)
    pl->count = (unsigned)json_integer_value(count);
  return GS_OK;
}

/* "input": [{"name": "x", "data_type": "TYPE_FP16"}]: an FP32 input that
 * clients send as FP16 (TYPE_FP32 keeps the model's type). Checked against
 * the model when it loads (check_input_types). */
static int read_inputs(gs__placement_t *pl, json_t *inputs, const char *path,
                       gs_error_t *err) {
  if (!json_is_array(inputs) || json_array_size(inputs) > GS__INFER_MAX_TENSORS)
    return gs_error_set(err, GS_EINVAL,
                        "%s: input must be an array of at most %d objects",
                        path, GS__INFER_MAX_TENSORS);
  for (size_t i = 0; i < json_array_size(inputs); i++) {
    json_t *in = json_array_get(inputs, i);
    const char *key, *name = json_string_value(json_object_get(in, "name"));
    const char *type = json_string_value(json_object_get(in, "data_type"));
    json_t *v;
    json_object_foreach(in, key, v) {
      if (strcmp(key, "name") && strcmp(key, "data_type"))
        return gs_error_set(err, GS_EUNSUPPORTED,
                            "%s: input.%.64s is not supported (name and "
                            "data_type are)",
                            path, key);
    }
    if (!name || !type || strlen(name) >= sizeof pl->fp16_inputs[0])
      return gs_error_set(err, GS_EINVAL,
                          "%s: each input needs a name (under 128 bytes) and "
                          "a data_type",
                          path);
    if (!strcmp(type, "TYPE_FP16"))
      snprintf(pl->fp16_inputs[pl->n_fp16++], sizeof pl->fp16_inputs[0], "%s",
               name);
    else if (strcmp(type, "TYPE_FP32"))
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: input '%.64s': data_type %.32s is not supported "
                          "(TYPE_FP16 for an FP32 input, or TYPE_FP32)",
                          path, name, type);
  }
  return GS_OK;
}

static int read_precision(gs__placement_t *pl, json_t *p, const char *path,
                          gs_error_t *err) {
  const char *s = json_string_value(p);
  if (s && !strcmp(s, "fp16"))
    pl->precision = GS_PRECISION_FP16;
  else if (s && !strcmp(s, "fp32"))
    pl->precision = GS_PRECISION_FP32;
  else
    return gs_error_set(err, GS_EINVAL,
                        "%s: precision must be \"fp16\" or \"fp32\"", path);
  return GS_OK;
}

/* A config file read whole within GS_LIMIT_CONFIG_FILE into text. A file
 * that cannot be read is GS_EPARSE, as it was when jansson opened it. */
static int read_config_text(const char *path, gs_buf_t *text, gs_error_t *err) {
  gs_buf_init(text, GS_LIMIT_CONFIG_FILE);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int rc = fd < 0 ? GS_ESYSTEM : gs_buf_read_fd(text, fd);
  if (rc == GS_ESYSTEM) {
    gs_error_sys(err, errno, "%s: cannot read it", path);
    rc = gs_error_code(err, GS_EPARSE);
  } else if (rc != GS_OK) {
    gs_buf_error(text, err);
    gs_error_prefix(err, "%s: ", path);
  }
  if (fd >= 0)
    close(fd);
  return rc;
}

static int read_config_json(gs__model_entry_t *m, const char *path,
                            gs_error_t *err) {
  gs_buf_t text;
  int rc = read_config_text(path, &text, err);
  json_t *root = NULL;
  if (rc == GS_OK) {
    json_error_t jerr;
    root = json_loadb(text.data ? text.data : "", text.len,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root))
      rc =
          gs_error_set(err, GS_EPARSE, "%s:%d: %s", path, jerr.line, jerr.text);
  }
  gs_buf_free(&text);
  if (rc != GS_OK) {
    json_decref(root);
    return rc;
  }
  json_t *mbs = json_object_get(root, "max_batch_size");
  json_t *db = json_object_get(root, "dynamic_batching");
  if (mbs && (!json_is_integer(mbs) || json_integer_value(mbs) < 0 ||
              json_integer_value(mbs) > 1 << 20))
    rc = gs_error_set(err, GS_EINVAL, "%s: max_batch_size must be 0..%d", path,
                      1 << 20);
  else if (mbs)
    m->max_batch_size = (unsigned)json_integer_value(mbs);
  if (rc == GS_OK && db)
    rc = read_batching(&m->batching, db, m->max_batch_size, path, err);
  /* The instance's memory budget for this model: the most the engine may
   * plan for one batch's intermediate tensors (a larger batch is refused). */
  json_t *budget = json_object_get(root, "instance_memory_budget_bytes");
  if (rc == GS_OK && budget &&
      (!json_is_integer(budget) || json_integer_value(budget) <= 0))
    rc = gs_error_set(err, GS_EINVAL,
                      "%s: instance_memory_budget_bytes must be a positive "
                      "integer",
                      path);
  else if (rc == GS_OK && budget)
    m->memory_budget_bytes = (uint64_t)json_integer_value(budget);
  json_t *ig = json_object_get(root, "instance_group");
  if (rc == GS_OK && ig)
    rc = read_instance_group(&m->placement, ig, path, err);
  json_t *prec = json_object_get(root, "precision");
  if (rc == GS_OK && prec)
    rc = read_precision(&m->placement, prec, path, err);
  json_t *inputs = json_object_get(root, "input");
  if (rc == GS_OK && inputs)
    rc = read_inputs(&m->placement, inputs, path, err);
  /* gpuslice's own: plan every batch size at load (default on a GPU). */
  json_t *warmup = json_object_get(root, "warmup");
  if (rc == GS_OK && warmup && !json_is_boolean(warmup))
    rc = gs_error_set(err, GS_EINVAL, "%s: warmup must be true or false", path);
  else if (rc == GS_OK && warmup)
    m->placement.warmup = json_is_true(warmup);
  json_decref(root);
  return rc;
}

/* What cfg says, where config.json's keys land. */
static void take_config(gs__model_entry_t *m, const gs__model_config_t *cfg) {
  m->max_batch_size = cfg->max_batch_size;
  m->batching = cfg->batching;
  m->sequence = cfg->sequence;
  m->placement = cfg->placement;
  m->memory_budget_bytes = cfg->memory_budget_bytes;
}

/* Triton's config.pbtxt: what it sets lands where config.json's keys do;
 * its inputs and outputs are checked against the model once it loads. */
static int read_config_pbtxt(gs__model_entry_t *m, const char *path,
                             gs__model_config_t *cfg, gs_error_t *err) {
  gs_buf_t text;
  int rc = read_config_text(path, &text, err);
  if (rc == GS_OK)
    rc = gs__model_config_parse_pbtxt(
        cfg, m->name, path, text.data ? text.data : "", text.len, err);
  gs_buf_free(&text);
  if (rc == GS_OK)
    take_config(m, cfg);
  return rc;
}

int gs__repo_read_config(gs__model_entry_t *m, const char *model_dir,
                         const char *override, size_t override_len,
                         gs__model_config_t *cfg, bool *found,
                         gs_error_t *err) {
  char json[4400], pbtxt[4400];
  struct stat st;
  if (snprintf(json, sizeof json, "%s/config.json", model_dir) >=
          (int)sizeof json ||
      snprintf(pbtxt, sizeof pbtxt, "%s/config.pbtxt", model_dir) >=
          (int)sizeof pbtxt)
    return gs_error_set(err, GS_EINVAL, "model path is too long");
  m->max_batch_size = 0;
  m->memory_budget_bytes = 0;
  memset(&m->batching, 0, sizeof m->batching);
  memset(&m->sequence, 0, sizeof m->sequence);
  memset(&m->placement, 0, sizeof m->placement);
  m->placement.warmup = -1;
  gs__model_config_init(cfg);
  if (override) {
    *found = true;
    int rc = gs__model_config_parse_json(cfg, m->name, "config override",
                                         override, override_len, err);
    /* its label files are the model directory's */
    snprintf(cfg->dir, sizeof cfg->dir, "%s", model_dir);
    if (rc == GS_OK)
      take_config(m, cfg);
    return rc;
  }
  bool has_json = stat(json, &st) == 0, has_pbtxt = stat(pbtxt, &st) == 0;
  *found = has_json || has_pbtxt;
  if (has_json && has_pbtxt)
    return gs_error_set(err, GS_EINVAL,
                        "%s has both config.pbtxt and config.json: keep one",
                        model_dir);
  if (has_pbtxt)
    return read_config_pbtxt(m, pbtxt, cfg, err);
  return has_json ? read_config_json(m, json, err) : GS_OK;
}
