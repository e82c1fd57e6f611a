/* A model configuration against its model: which version directory the
 * version_policy selects, the declared inputs and outputs against the ONNX
 * graph's (names, data types, dims), and Triton's autocomplete of the
 * batching fields when there is no config at all. */
#include <stdio.h>
#include <string.h>

#include "worker/model_config.h"

/* Versions present under the model directory that policy selects, highest
 * first, into picked (at most max). */
static size_t select_versions(const gs__model_config_t *cfg,
                              const long long *present, size_t n,
                              long long *picked, size_t max) {
  long long sorted[GS__CONFIG_MAX_VERSIONS * 4];
  size_t ns = 0;
  for (size_t i = 0; i < n && ns < sizeof sorted / sizeof sorted[0]; i++) {
    size_t j = ns++;
    for (; j > 0 && sorted[j - 1] < present[i]; j--)
      sorted[j] = sorted[j - 1];
    sorted[j] = present[i];
  }
  size_t np = 0;
  for (size_t i = 0; i < ns && np < max; i++) {
    bool take = cfg->version_policy == GS__VERSIONS_ALL ||
                (cfg->version_policy == GS__VERSIONS_LATEST &&
                 i < cfg->latest_versions);
    for (size_t k = 0;
         cfg->version_policy == GS__VERSIONS_SPECIFIC && k < cfg->n_versions;
         k++)
      take = take || cfg->versions[k] == sorted[i];
    if (take)
      picked[np++] = sorted[i];
  }
  return np;
}

int gs__model_config_pick_versions(const gs__model_config_t *cfg,
                                   const long long *present, size_t n,
                                   long long *picked, size_t cap,
                                   size_t *n_picked, const char *file,
                                   gs_error_t *err) {
  *n_picked = 0;
  if (cfg->version_policy == GS__VERSIONS_LATEST && cfg->latest_versions == 0)
    return gs_error_set(err, GS_EINVAL,
                        "%s: version_policy latest num_versions must be at "
                        "least 1",
                        file);
  long long all[GS__CONFIG_MAX_VERSIONS * 4];
  size_t np = select_versions(cfg, present, n, all, sizeof all / sizeof all[0]);
  if (np > cap)
    return gs_error_set(err, GS_ELIMIT,
                        "%s: version_policy selects %zu versions; gpuslice "
                        "serves at most %zu of a model",
                        file, np, cap);
  memcpy(picked, all, np * sizeof all[0]);
  *n_picked = np;
  if (*n_picked == 0)
    return gs_error_set(err, GS_ENOTFOUND,
                        "%s: version_policy selects none of the versions "
                        "present",
                        file);
  return GS_OK;
}

static gs_tensor_info_t *find_tensor(gs_tensor_info_t *t, size_t n,
                                     const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(t[i].name, name))
      return &t[i];
  return NULL;
}

static void list_names(char *buf, size_t size, const gs_tensor_info_t *t,
                       size_t n) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "",
                             t[i].name);
}

static int check_dtype(const gs__config_tensor_t *c, gs_tensor_info_t *t,
                       bool input, const char *file, gs_error_t *err) {
  if (c->dtype == GS_DTYPE_INVALID || c->dtype == t->dtype)
    return GS_OK;
  /* gpuslice's own: an FP32 input that clients send as FP16. */
  if (input && c->dtype == GS_DTYPE_FP16 && t->dtype == GS_DTYPE_FP32) {
    t->dtype = GS_DTYPE_FP16;
    return GS_OK;
  }
  return gs_error_set(err, GS_EINVAL,
                      "%s: %s '%s' is TYPE_%s in the config but %s in the "
                      "model",
                      file, input ? "input" : "output", c->name,
                      gs_dtype_name(c->dtype), gs_dtype_name(t->dtype));
}

/* The shape the model must have per the config (its reshape, else its
 * dims; the batch dimension first when max_batch_size > 0) against the
 * model's: equal where both are fixed. A size the config fixes where the
 * model's is variable narrows what requests may send. Then the model's
 * tensor takes the shape requests use: the dims. */
static int check_dims(const gs__config_tensor_t *c, gs_tensor_info_t *t,
                      unsigned max_batch_size, const char *file,
                      gs_error_t *err) {
  int64_t full[GS_TENSOR_MAX_RANK + 1];
  bool reshaped = c->reshape_rank >= 0;
  int skip = max_batch_size ? 1 : 0;
  int crank = reshaped ? c->reshape_rank : c->rank, rank = crank + skip;
  const int64_t *cdims = reshaped ? c->reshape : c->dims;
  if (c->rank < 0)
    return GS_OK;
  full[0] = -1;
  memcpy(full + skip, cdims, (size_t)crank * sizeof cdims[0]);
  bool ok = t->rank < 0 || t->rank == rank;
  for (int d = 0; ok && t->rank >= 0 && d < rank; d++)
    ok = full[d] == -1 || t->shape[d] == -1 || full[d] == t->shape[d];
  if (!ok || rank > GS_TENSOR_MAX_RANK || c->rank + skip > GS_TENSOR_MAX_RANK) {
    char want[160] = "", have[160] = "";
    for (int d = skip, u = 0; d < rank; d++)
      u += snprintf(want + u, sizeof want - (size_t)u, "%s%lld",
                    d > skip ? "," : "", (long long)full[d]);
    for (int d = skip, u = 0; d < t->rank; d++)
      u += snprintf(have + u, sizeof have - (size_t)u, "%s%lld",
                    d > skip ? "," : "", (long long)t->shape[d]);
    return gs_error_set(err, GS_EINVAL,
                        "%s: '%s' has %s [%s] in the config but [%s] in the "
                        "model%s",
                        file, c->name, reshaped ? "reshape" : "dims", want,
                        have, skip ? " (without the batch dimension)" : "");
  }
  int64_t batch = t->rank > 0 && skip ? t->shape[0] : -1;
  for (int d = 0; d < rank; d++)
    if (t->rank < 0 || t->shape[d] == -1)
      t->shape[d] = full[d];
  t->rank = rank;
  if (reshaped) { /* requests send and get the dims */
    t->shape[0] = batch;
    memcpy(t->shape + skip, c->dims, (size_t)c->rank * sizeof c->dims[0]);
    t->rank = c->rank + skip;
  }
  return GS_OK;
}

static int apply_side(const gs__model_config_t *cfg, bool input,
                      const char *file, gs_tensor_info_t *t, size_t n,
                      gs_error_t *err) {
  size_t nc = input ? cfg->n_inputs : cfg->n_outputs;
  const gs__config_tensor_t *cs = input ? cfg->inputs : cfg->outputs;
  for (size_t i = 0; i < nc; i++) {
    gs_tensor_info_t *m = find_tensor(t, n, cs[i].name);
    char names[256];
    if (!m) {
      list_names(names, sizeof names, t, n);
      return gs_error_set(err, GS_EINVAL,
                          "%s: %s '%s' is not one of the model's (%s)", file,
                          input ? "input" : "output", cs[i].name, names);
    }
    int rc = check_dtype(&cs[i], m, input, file, err);
    if (rc == GS_OK)
      rc = check_dims(&cs[i], m, cfg->max_batch_size, file, err);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

int gs__model_config_apply(const gs__model_config_t *cfg, const char *file,
                           gs_tensor_info_t *inputs, size_t n_inputs,
                           gs_tensor_info_t *outputs, size_t n_outputs,
                           gs_error_t *err) {
  int rc = apply_side(cfg, true, file, inputs, n_inputs, err);
  if (rc == GS_OK)
    rc = apply_side(cfg, false, file, outputs, n_outputs, err);
  if (rc == GS_OK)
    rc = gs__seq_config_check(&cfg->sequence, file, inputs, n_inputs, outputs,
                              n_outputs, err);
  if (rc != GS_OK)
    gs__model_config_sanitize(err->msg);
  return rc;
}

static bool batch_first(const gs_tensor_info_t *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (t[i].rank < 1 || t[i].shape[0] != -1)
      return false;
  return true;
}

void gs__model_config_autocomplete(unsigned *max_batch_size,
                                   gs__batching_t *batching,
                                   const gs__model_io_t *io) {
  if (*max_batch_size || io->n_inputs == 0 ||
      !batch_first(io->inputs, io->n_inputs) ||
      !batch_first(io->outputs, io->n_outputs))
    return;
  *max_batch_size = 4; /* Triton's --backend-config default-max-batch-size */
  memset(batching, 0, sizeof *batching);
  batching->enabled = true;
}
