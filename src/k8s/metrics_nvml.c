/* `gpuslice k8s metrics`' NVML side: GPUs by UUID, MIG devices by GI and
 * CI, and nvmlDeviceGetProcessUtilization's per-process samples, asked
 * once per handle per scrape for what came since the previous scrape. */
#include <stdlib.h>
#include <string.h>

#include "k8s/metrics_int.h"

int gs__mx_nvml_open(gs__mx_nvml_t *x, const char *library, gs_error_t *err) {
  memset(x, 0, sizeof *x);
  int rc = gs__nvml_open(&x->nvml, library, err);
  if (rc != GS_OK)
    return rc;
  x->open = true;
  unsigned n = 0;
  if (x->nvml.DeviceGetCount(&n) != NVML_SUCCESS)
    n = 0;
  for (unsigned i = 0; i < n && x->n_gpu < GS_MAX_DEVICES; i++) {
    nvmlDevice_t h;
    if (x->nvml.DeviceGetHandleByIndex(i, &h) != NVML_SUCCESS ||
        x->nvml.DeviceGetUUID(h, x->gpu[x->n_gpu].uuid,
                              sizeof x->gpu[0].uuid) != NVML_SUCCESS)
      continue;
    x->gpu[x->n_gpu].handle = h;
    x->gpu[x->n_gpu++].index = i;
  }
  return GS_OK;
}

void gs__mx_nvml_close(gs__mx_nvml_t *x) {
  gs__mx_scrape_end(x);
  if (x->open)
    gs__nvml_close(&x->nvml);
  x->open = false;
}

static int gpu_at(const gs__mx_nvml_t *x, const char *uuid) {
  for (unsigned i = 0; i < x->n_gpu; i++)
    if (strcmp(x->gpu[i].uuid, uuid) == 0)
      return (int)i;
  return -1;
}

bool gs__mx_gpu_index(const gs__mx_nvml_t *x, const char *uuid,
                      unsigned *index) {
  int at = gpu_at(x, uuid);
  if (at >= 0)
    *index = x->gpu[at].index;
  return at >= 0;
}

static unsigned long long *last_seen(gs__mx_nvml_t *x, nvmlDevice_t h) {
  for (unsigned i = 0; i < x->n_seen; i++)
    if (x->seen[i].handle == h)
      return &x->seen[i].last_ts;
  if (x->n_seen == GS__MX_MAX_HANDLES)
    x->n_seen = 0; /* stale handles of destroyed instances: start over */
  x->seen[x->n_seen].handle = h;
  x->seen[x->n_seen].last_ts = 0;
  return &x->seen[x->n_seen++].last_ts;
}

/* Asks NVML once: the count first, then the samples. */
static void fetch(gs__mx_nvml_t *x, gs__mx_samples_t *c) {
  unsigned long long since = *last_seen(x, c->handle);
  unsigned n = 0;
  nvmlReturn_t r =
      x->nvml.DeviceGetProcessUtilization(c->handle, NULL, &n, since);
  if (r == NVML_ERROR_NOT_FOUND || (r == NVML_SUCCESS && n == 0)) {
    c->ok = true; /* nothing ran since the last scrape */
    return;
  }
  if (r != NVML_ERROR_INSUFFICIENT_SIZE && r != NVML_SUCCESS)
    return;
  n += 8; /* processes that start between the two calls */
  c->s = calloc(n, sizeof *c->s);
  if (!c->s)
    return;
  r = x->nvml.DeviceGetProcessUtilization(c->handle, c->s, &n, since);
  c->ok = r == NVML_SUCCESS || r == NVML_ERROR_NOT_FOUND;
  c->n = r == NVML_SUCCESS ? n : 0;
}

static const gs__mx_samples_t *samples(gs__mx_nvml_t *x, nvmlDevice_t h) {
  for (unsigned i = 0; i < x->n_cache; i++)
    if (x->cache[i].handle == h)
      return &x->cache[i];
  if (x->n_cache == GS__MX_MAX_HANDLES || !x->nvml.DeviceGetProcessUtilization)
    return NULL;
  gs__mx_samples_t *c = &x->cache[x->n_cache++];
  memset(c, 0, sizeof *c);
  c->handle = h;
  fetch(x, c);
  return c;
}

/* The MIG device of GI gi_id, CI ci_id on gpu, or NULL. */
static nvmlDevice_t mig_handle(gs__mx_nvml_t *x, nvmlDevice_t gpu,
                               unsigned gi_id, unsigned ci_id) {
  unsigned max = 0, g, c;
  nvmlDevice_t h;
  if (x->nvml.DeviceGetMaxMigDeviceCount(gpu, &max) != NVML_SUCCESS)
    return NULL;
  for (unsigned i = 0; i < max; i++)
    if (x->nvml.DeviceGetMigDeviceHandleByIndex(gpu, i, &h) == NVML_SUCCESS &&
        x->nvml.DeviceGetGpuInstanceId(h, &g) == NVML_SUCCESS &&
        x->nvml.DeviceGetComputeInstanceId(h, &c) == NVML_SUCCESS &&
        g == gi_id && c == ci_id)
      return h;
  return NULL;
}

/* Each pid's mean over its samples, summed over the pids. */
static double sum_of(const gs__mx_samples_t *c, const pid_t *pids,
                     size_t n_pids) {
  double total = 0;
  for (size_t p = 0; p < n_pids; p++) {
    unsigned long long sum = 0, k = 0;
    for (unsigned i = 0; i < c->n; i++)
      if ((pid_t)c->s[i].pid == pids[p]) {
        sum += c->s[i].smUtil;
        k++;
      }
    total += k ? (double)sum / (double)k : 0;
  }
  return total;
}

bool gs__mx_sm_percent(gs__mx_nvml_t *x, const char *gpu_uuid, bool mig,
                       unsigned gi_id, unsigned ci_id, const pid_t *pids,
                       size_t n_pids, double *percent) {
  int at = x->open ? gpu_at(x, gpu_uuid) : -1;
  if (at < 0)
    return false;
  const gs__mx_samples_t *c = NULL;
  nvmlDevice_t h = mig ? mig_handle(x, x->gpu[at].handle, gi_id, ci_id) : NULL;
  if (h)
    c = samples(x, h);
  if (!c || !c->ok) /* NVML may sample MIG processes on the GPU only */
    c = samples(x, x->gpu[at].handle);
  if (!c || !c->ok)
    return false;
  double total = sum_of(c, pids, n_pids);
  *percent = total > 100 ? 100 : total;
  return true;
}

void gs__mx_scrape_end(gs__mx_nvml_t *x) {
  for (unsigned i = 0; i < x->n_cache; i++) {
    gs__mx_samples_t *c = &x->cache[i];
    unsigned long long *last = last_seen(x, c->handle);
    for (unsigned k = 0; k < c->n; k++)
      if (c->s[k].timeStamp > *last)
        *last = c->s[k].timeStamp;
    free(c->s);
  }
  x->n_cache = 0;
}
