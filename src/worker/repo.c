/* The model repository in Triton's layout, DIR/NAME/VERSION/model.onnx with
 * an optional DIR/NAME/config.pbtxt (Triton's, model_config.c) or
 * config.json: loading (the version version_policy picks), the
 * session pool each load keeps, and the metadata, config and statistics
 * documents the protocol returns. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "worker/model_config.h"
#include "worker/worker_int.h"

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A model name is one path component made of letters, digits and "_.-",
 * not starting with '.', so that it is safe in paths and metric labels. */
static bool valid_name(const char *name) {
  size_t n = strlen(name);
  return n > 0 && n < 128 && name[0] != '.' &&
         strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789_.-") == n;
}

/* The version directory holding model.onnx that the config's
 * version_policy selects (by default the highest). */
static int pick_version(const char *model_dir, const gs__model_config_t *cfg,
                        char *version, size_t size, gs_error_t *err) {
  DIR *d = opendir(model_dir);
  if (!d)
    return gs_error_sys(err, errno, "cannot read %s", model_dir);
  long long present[64];
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < sizeof present / sizeof present[0]) {
    char *end;
    long long v = strtoll(e->d_name, &end, 10);
    char path[4400];
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || *end || v > 1000000000)
      continue;
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s/model.onnx", model_dir, e->d_name) <
            (int)sizeof path &&
        stat(path, &st) == 0)
      present[n++] = v;
  }
  closedir(d);
  if (n == 0)
    return gs_error_set(err, GS_ENOTFOUND, "no VERSION/model.onnx under %s",
                        model_dir);
  long long best;
  int rc =
      gs__model_config_pick_version(cfg, present, n, &best, model_dir, err);
  if (rc == GS_OK)
    snprintf(version, size, "%lld", best);
  return rc;
}

#define MAX_QUEUE_DELAY_US 10000000 /* 10 s */

/* "dynamic_batching": {"max_queue_delay_microseconds": D,
 * "preferred_batch_size": [..]}; both optional, as in Triton. */
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
        strcmp(key, "preferred_batch_size"))
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "%s: dynamic_batching.%.64s is not supported "
                          "(max_queue_delay_microseconds and "
                          "preferred_batch_size are)",
                          path, key);
  }
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
  if (rc != GS_OK)
    return rc;
  m->max_batch_size = cfg->max_batch_size;
  m->batching = cfg->batching;
  m->placement = cfg->placement;
  m->memory_budget_bytes = cfg->memory_budget_bytes;
  m->sequence = cfg->sequence;
  return GS_OK;
}

/* config.pbtxt (Triton's) or config.json (gpuslice's first format); a
 * directory with both is refused, never one of them silently ignored.
 * *found: whether there is either (else Triton's autocomplete applies). */
static int read_config(gs__model_entry_t *m, const char *model_dir,
                       gs__model_config_t *cfg, bool *found, gs_error_t *err) {
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

/* With max_batch_size > 0 every input and output must have a variable
 * leading dimension, the batch. */
static int check_batch_dims(const gs__model_entry_t *m, gs_error_t *err) {
  const gs__model_io_t *io = &m->slot->io;
  for (int side = 0; side < 2 && m->max_batch_size; side++) {
    size_t n = side ? io->n_outputs : io->n_inputs;
    const gs_tensor_info_t *t = side ? io->outputs : io->inputs;
    for (size_t i = 0; i < n; i++)
      if (t[i].rank < 1 || t[i].shape[0] >= 0)
        return gs_error_set(err, GS_EINVAL,
                            "max_batch_size is %u but '%s' has no variable "
                            "first dimension",
                            m->max_batch_size, t[i].name);
  }
  return GS_OK;
}

static void slot_destroy(gs__model_slot_t *s) {
  if (!s)
    return;
  for (unsigned i = 0; i < s->n_idle; i++)
    gs_session_destroy(s->idle[i]);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->idle_cond);
  free((void *)s->io.inputs);
  free((void *)s->io.outputs);
  gs_model_destroy(s->model);
  free(s);
}

void gs__slot_unref(gs__model_slot_t *slot) {
  if (slot && --slot->refs == 0)
    slot_destroy(slot);
}

/* The inputs config.json declares FP16: FP32 model inputs, shown and
 * decoded as FP16. */
static int input_types(gs__model_slot_t *s, gs_error_t *err) {
  gs_tensor_info_t *in = (gs_tensor_info_t *)s->io.inputs;
  for (unsigned k = 0; k < s->placement.n_fp16; k++) {
    const char *name = s->placement.fp16_inputs[k];
    size_t i = 0;
    while (i < s->io.n_inputs && strcmp(in[i].name, name))
      i++;
    if (i == s->io.n_inputs)
      return gs_error_set(err, GS_EINVAL,
                          "config.json: input '%s' is not an input of the "
                          "model",
                          name);
    if (in[i].dtype != GS_DTYPE_FP32)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "config.json: input '%s' is %s in the model: only "
                          "an FP32 input can be sent as FP16",
                          name, gs_dtype_name(in[i].dtype));
    in[i].dtype = GS_DTYPE_FP16;
  }
  return GS_OK;
}

/* instance_group count: that many sessions (on a GPU, streams) from the
 * start, so that the first concurrent batches do not make them; first
 * joins the pool either way. */
static int more_sessions(gs__model_slot_t *s, gs_session_t *first,
                         gs_error_t *err) {
  gs_session_t *more[64];
  unsigned n_more = 0;
  int rc = GS_OK;
  while (rc == GS_OK && n_more + 1 < s->placement.count)
    if ((rc = gs__slot_session_create(s, &more[n_more], err)) == GS_OK)
      n_more++;
  gs__slot_put(s, first);
  while (n_more)
    gs__slot_put(s, more[--n_more]);
  return rc;
}

/* The config's inputs and outputs checked against the model's (and
 * narrowing them); without any config, Triton's autocomplete. */
static int complete_config(gs__model_entry_t *m, gs__model_slot_t *s,
                           const gs__model_config_t *cfg, bool found,
                           gs_error_t *err) {
  if (!found) {
    gs__model_config_autocomplete(&m->max_batch_size, &m->batching, &s->io);
    s->max_batch_size = m->max_batch_size;
    s->batching = m->batching;
    return GS_OK;
  }
  char file[160];
  snprintf(file, sizeof file, "%s/config.pbtxt", m->name);
  return gs__model_config_apply(
      cfg, file, (gs_tensor_info_t *)s->io.inputs, s->io.n_inputs,
      (gs_tensor_info_t *)s->io.outputs, s->io.n_outputs, err);
}

static int slot_create(gs__model_entry_t *m, const char *path,
                       const gs__model_config_t *cfg, bool found,
                       gs_error_t *err) {
  gs__model_slot_t *s = calloc(1, sizeof *s);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->idle_cond, NULL);
  s->refs = 1;
  int rc = gs_model_load_file(&s->model, path, NULL, err);
  if (rc != GS_OK) {
    slot_destroy(s);
    return rc;
  }
  size_t ni = gs_model_input_count(s->model);
  size_t no = gs_model_output_count(s->model);
  gs_tensor_info_t *in = calloc(ni + 1, sizeof *in);
  gs_tensor_info_t *out = calloc(no + 1, sizeof *out);
  snprintf(s->name, sizeof s->name, "%s", m->name);
  snprintf(s->version, sizeof s->version, "%s", m->version);
  s->max_batch_size = m->max_batch_size;
  s->batching = m->batching;
  s->memory_budget_bytes = m->memory_budget_bytes;
  s->placement = m->placement;
  s->io = (gs__model_io_t){s->name, s->version, ni, no, in, out};
  if (!in || !out) {
    slot_destroy(s);
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < ni; i++)
    in[i] = *gs_model_input(s->model, i);
  int rc2 = input_types(s, err);
  if (rc2 != GS_OK) {
    slot_destroy(s);
    return rc2;
  }
  for (size_t i = 0; i < no; i++)
    out[i] = *gs_model_output(s->model, i);
  if ((rc2 = complete_config(m, s, cfg, found, err)) != GS_OK) {
    slot_destroy(s);
    return rc2;
  }
  /* One session now: a model the provider cannot run (an op, the GPU's
   * memory) fails its load with the reason, not its first request. */
  gs_session_t *first = NULL;
  int rc3 = gs__slot_session_create(s, &first, err);
  if (rc3 != GS_OK) {
    slot_destroy(s);
    return rc3;
  }
  s->provider = gs_session_provider(first);
  s->precision = gs_session_precision(first);
  s->warm = s->placement.warmup < 0 ? s->provider == GS_PROVIDER_CUDA
                                    : s->placement.warmup == 1;
  /* Warm: count sessions (1 when not given, Triton's one instance per
   * GPU), every batch size planned and captured. Else instance_group
   * count sessions from the start, more made as requests need them. */
  rc3 = s->warm ? gs__slot_warm(s, first, err) : more_sessions(s, first, err);
  if (rc3 != GS_OK) {
    slot_destroy(s);
    return rc3;
  }
  /* The batcher runs as many batches at once as there are sessions. */
  if (s->warm)
    m->placement.count = s->placement.count = s->n_sessions;
  m->slot = s;
  return GS_OK;
}

static int load_entry(gs__repo_t *repo, gs__model_entry_t *m, gs_error_t *err) {
  char dir[4400], path[4500];
  snprintf(dir, sizeof dir, "%s/%s", repo->dir, m->name);
  gs__slot_unref(m->slot);
  m->slot = NULL;
  m->state = GS__MODEL_UNAVAILABLE;
  gs__model_config_t cfg;
  bool found = false;
  int rc = read_config(m, dir, &cfg, &found, err);
  if (rc == GS_OK)
    rc = pick_version(dir, &cfg, m->version, sizeof m->version, err);
  m->placement.sm_first = repo->sm_first;
  m->placement.sm_count = repo->sm_count;
  snprintf(path, sizeof path, "%s/%s/model.onnx", dir, m->version);
  if (rc == GS_OK)
    rc = slot_create(m, path, &cfg, found, err);
  if (rc == GS_OK && (rc = check_batch_dims(m, err)) != GS_OK) {
    gs__slot_unref(m->slot);
    m->slot = NULL;
  }
  if (rc != GS_OK) {
    snprintf(m->reason, sizeof m->reason, "%.500s", err->msg);
    return rc;
  }
  m->state = GS__MODEL_READY;
  m->reason[0] = '\0';
  return GS_OK;
}

gs__model_entry_t *gs__repo_find(gs__repo_t *repo, const char *name) {
  for (unsigned i = 0; i < repo->n; i++)
    if (strcmp(repo->models[i].name, name) == 0)
      return &repo->models[i];
  return NULL;
}

int gs__repo_load(gs__repo_t *repo, const char *name, gs_error_t *err) {
  char dir[4400];
  gs__model_entry_t *m = gs__repo_find(repo, name);
  snprintf(dir, sizeof dir, "%s/%s", repo->dir, name);
  if (!m && (!valid_name(name) || !is_dir(dir)))
    return gs_error_set(err, GS_ENOTFOUND,
                        "failed to load '%s', no version is available", name);
  if (!m) {
    if (repo->n == GS__REPO_MAX_MODELS)
      return gs_error_set(err, GS_ELIMIT,
                          "the repository holds %d models, "
                          "the most a worker serves",
                          GS__REPO_MAX_MODELS);
    m = &repo->models[repo->n++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
  }
  return load_entry(repo, m, err);
}

void gs__repo_unload(gs__repo_t *repo, gs__model_entry_t *m) {
  (void)repo;
  gs__slot_unref(m->slot);
  m->slot = NULL;
  m->state = GS__MODEL_UNLOADED;
  snprintf(m->reason, sizeof m->reason, "unloaded");
}

void gs__repo_device_failed(gs__model_entry_t *m, const gs__model_slot_t *slot,
                            const char *why) {
  if (m->state != GS__MODEL_READY || m->slot != slot)
    return; /* unloaded, or reloaded since: the new load is not at fault */
  gs__slot_unref(m->slot);
  m->slot = NULL;
  m->state = GS__MODEL_UNAVAILABLE;
  snprintf(m->reason, sizeof m->reason,
           "the device failed while serving; restart the worker: %.400s", why);
}

int gs__repo_open(gs__repo_t *repo, const char *dir, gs_error_t *err) {
  return gs__repo_open_sms(repo, dir, 0, 0, err);
}

int gs__repo_open_sms(gs__repo_t *repo, const char *dir, unsigned sm_first,
                      unsigned sm_count, gs_error_t *err) {
  memset(repo, 0, sizeof *repo);
  repo->sm_first = sm_first;
  repo->sm_count = sm_count;
  if (strlen(dir) >= sizeof repo->dir)
    return gs_error_set(err, GS_EINVAL, "repository path is too long");
  snprintf(repo->dir, sizeof repo->dir, "%s", dir);
  DIR *d = opendir(dir);
  if (!d)
    return gs_error_sys(err, errno, "cannot read model repository %s", dir);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (!valid_name(e->d_name) || !is_dir(path))
      continue;
    gs_error_t lerr;
    if (gs__repo_load(repo, e->d_name, &lerr) == GS_ELIMIT)
      break;
  }
  closedir(d);
  return GS_OK;
}

void gs__repo_close(gs__repo_t *repo) {
  for (unsigned i = 0; i < repo->n; i++) {
    gs__slot_unref(repo->models[i].slot);
    free(repo->models[i].stats.batch);
    gs__seq_model_destroy(&repo->models[i]);
  }
  repo->n = 0;
}

int gs__slot_session_create(gs__model_slot_t *slot, gs_session_t **out,
                            gs_error_t *err) {
  gs_session_options_t opts;
  gs_session_options_default(&opts);
  if (slot->memory_budget_bytes)
    opts.max_plan_bytes = (size_t)slot->memory_budget_bytes;
  opts.provider = slot->placement.provider;
  opts.precision = slot->placement.precision;
  opts.device = slot->placement.device;
  opts.sm_first = slot->placement.sm_first;
  opts.sm_count = slot->placement.sm_count;
  /* Room for a plan (on a GPU, a graph) per size planned at load. */
  uint64_t sizes[GS__MAX_PLANNED_SIZES];
  size_t n = gs__slot_planned_sizes(slot, sizes, GS__MAX_PLANNED_SIZES);
  if (opts.max_cached_plans < n)
    opts.max_cached_plans = (unsigned)n;
  /* Once one session has resolved AUTO, the others follow it: a pool
   * never mixes providers. */
  if (slot->provider != GS_PROVIDER_AUTO) {
    opts.provider = slot->provider;
    opts.precision = slot->precision;
  }
  *out = NULL;
  return gs_session_create(out, slot->model, &opts, err);
}

gs_session_t *gs__slot_get(gs__model_slot_t *slot, gs_error_t *err) {
  gs_session_t *s = NULL;
  pthread_mutex_lock(&slot->lock);
  while (slot->warm && slot->n_idle == 0)
    pthread_cond_wait(&slot->idle_cond, &slot->lock);
  if (slot->n_idle)
    s = slot->idle[--slot->n_idle];
  pthread_mutex_unlock(&slot->lock);
  if (!s && gs__slot_session_create(slot, &s, err) != GS_OK)
    return NULL;
  return s;
}

void gs__slot_put(gs__model_slot_t *slot, gs_session_t *s) {
  pthread_mutex_lock(&slot->lock);
  if (slot->n_idle < sizeof slot->idle / sizeof slot->idle[0]) {
    slot->idle[slot->n_idle++] = s;
    s = NULL;
    pthread_cond_signal(&slot->idle_cond);
  }
  pthread_mutex_unlock(&slot->lock);
  gs_session_destroy(s);
}

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
             gs_dtype_name(t[i].dtype));
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
  gs__seq_json(m, j, false);
  return j;
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
  const gs__batching_t *b = &m->slot->batching;
  if (c && b->enabled) {
    json_t *pref = json_array();
    for (unsigned i = 0; i < b->n_preferred; i++)
      json_array_append_new(pref, json_integer(b->preferred[i]));
    json_object_set_new(c, "dynamic_batching",
                        json_pack("{s:o, s:I}", "preferred_batch_size", pref,
                                  "max_queue_delay_microseconds",
                                  (json_int_t)b->max_queue_delay_us));
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
