/* The model repository in Triton's layout, DIR/NAME/VERSION/model.onnx with
 * an optional DIR/NAME/config.pbtxt or config.json (repo_config.c): one
 * version's load into a slot, the session pool each slot keeps, and the
 * lookups. Which versions load is repo_versions.c's, when repo_control.c's. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "worker/classify.h"
#include "worker/model_config.h"
#include "worker/reshape.h"
#include "worker/worker_int.h"

/* A model name is one path component made of letters, digits and "_.-",
 * not starting with '.', so that it is safe in paths and metric labels. */
bool gs__repo_valid_name(const char *name) {
  size_t n = strlen(name);
  return n > 0 && n < 128 && name[0] != '.' &&
         strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789_.-") == n;
}

/* With max_batch_size > 0 every input and output must have a variable
 * leading dimension, the batch. */
int gs__repo_check_batch_dims(const gs__model_entry_t *m, gs_error_t *err) {
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
  gs__slot_late_join(s); /* it may hold a session */
  for (unsigned i = 0; i < s->n_idle; i++)
    gs_session_destroy(s->idle[i]);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->idle_cond);
  pthread_cond_destroy(&s->late_cond);
  free((void *)s->io.inputs);
  free((void *)s->io.outputs);
  free((void *)s->io.reshapes);
  gs__labels_destroy(s->labels);
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
                           const char *config_name, gs_error_t *err) {
  if (!found) {
    gs__model_config_autocomplete(&m->max_batch_size, &m->batching, &s->io);
    s->max_batch_size = m->max_batch_size;
    s->batching = m->batching;
    return GS_OK;
  }
  char file[160];
  snprintf(file, sizeof file, "%s/%s", m->name,
           config_name ? config_name : "config.pbtxt");
  for (size_t i = 0; i < s->io.n_inputs && i < GS__INFER_MAX_TENSORS; i++)
    for (size_t k = 0; k < cfg->n_inputs; k++)
      if (!strcmp(cfg->inputs[k].name, s->io.inputs[i].name))
        s->input_format[i] = cfg->inputs[k].format;
  gs__reshape_t *reshapes = NULL;
  int rc = gs__model_config_apply(
      cfg, file, (gs_tensor_info_t *)s->io.inputs, s->io.n_inputs,
      (gs_tensor_info_t *)s->io.outputs, s->io.n_outputs, err);
  if (rc == GS_OK)
    rc = gs__reshape_table(cfg, &reshapes, &s->io.n_reshapes, err);
  s->io.reshapes = reshapes;
  return rc;
}

/* The warning for config parameters gpuslice does not use, in the note
 * the worker prints once the model is ready. */
static void note_unused_parameters(gs__model_slot_t *s,
                                   const gs__model_config_t *cfg) {
  if (!cfg || !cfg->unused_parameters[0])
    return;
  size_t used = strlen(s->load_note);
  snprintf(s->load_note + used, sizeof s->load_note - used,
           "%sparameters gpuslice does not use, ignored: %s", used ? "; " : "",
           cfg->unused_parameters);
  gs__model_config_sanitize(s->load_note);
}

static int slot_create(gs__model_entry_t *m, const char *path,
                       const gs__model_config_t *cfg, bool found,
                       const char *config_name, uint64_t t0, gs_error_t *err) {
  gs__model_slot_t *s = calloc(1, sizeof *s);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->idle_cond, NULL);
  pthread_cond_init(&s->late_cond, NULL);
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
  s->io = (gs__model_io_t){.model_name = s->name,
                           .version = s->version,
                           .n_inputs = ni,
                           .n_outputs = no,
                           .inputs = in,
                           .outputs = out};
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
  if ((rc2 = complete_config(m, s, cfg, found, config_name, err)) != GS_OK ||
      (rc2 = gs__labels_load(&s->labels, &s->io, cfg, err)) != GS_OK) {
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
  s->first_session_ns = gs__now_ns() - t0;
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
  note_unused_parameters(s, cfg);
  m->slot = s;
  return GS_OK;
}

void gs__repo_device_failed(gs__repo_t *repo, gs__model_entry_t *m,
                            const gs__model_slot_t *slot, const char *why) {
  if (m->state != GS__MODEL_READY || m->slot != slot)
    return; /* unloaded, or reloaded since: the new load is not at fault */
  gs__slot_unref(m->slot);
  m->slot = NULL;
  m->state = GS__MODEL_UNAVAILABLE;
  snprintf(m->reason, sizeof m->reason,
           "the device failed while serving; restart the worker: %.400s", why);
  if (repo && repo->device_failed)
    repo->device_failed(repo->device_failed_ctx, m->reason);
}

void gs__repo_find_failed(gs__repo_t *repo) {
  for (unsigned i = 0; i < repo->n; i++) {
    gs__model_entry_t *m = &repo->models[i];
    gs_error_t err;
    if (m->state != GS__MODEL_READY || !m->slot ||
        !gs__slot_failed(m->slot, &err))
      continue;
    char why[sizeof m->slot->device_error]; /* the slot may go with it */
    snprintf(why, sizeof why, "%s", m->slot->device_error);
    gs__repo_device_failed(repo, m, m->slot, why);
  }
}

void gs__loop_wake(gs__loop_wake_t *w) {
  if (!w)
    return;
  pthread_mutex_lock(&w->lock);
  if (w->async)
    uv_async_send(w->async);
  pthread_mutex_unlock(&w->lock);
}

/* The GPU's libraries and context opened while the model is read (each
 * takes hundreds of ms on a restart); its outcome is the session's to
 * find: a failure here only means the session pays for it itself. */
typedef struct {
  int device;
  bool opened;
} opener_t;

static void *open_device(void *arg) {
  opener_t *o = arg;
  gs_error_t ignored;
  o->opened = gs_engine_cuda_open(o->device, &ignored) == GS_OK;
  return NULL;
}

int gs__repo_slot_create(gs__model_entry_t *m, const char *path,
                         const gs__model_config_t *cfg, bool found,
                         const char *config_name, gs_error_t *err) {
  uint64_t t0 = gs__now_ns();
  pthread_t thread;
  opener_t o = {.device = m->placement.device};
  bool opening = m->placement.provider != GS_PROVIDER_CPU &&
                 pthread_create(&thread, NULL, open_device, &o) == 0;
  int rc = slot_create(m, path, cfg, found, config_name, t0, err);
  if (opening)
    pthread_join(thread, NULL);
  if (o.opened) /* its sessions hold the context now, if they run there */
    gs_engine_cuda_close(o.device);
  return rc;
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
  opts.gpu_wait = slot->placement.gpu_wait;
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
