/* Backend selection by name or by what this machine has, and the one close
 * for every backend. */
#include "gpuslice/backend.h"

#include <string.h>

#include "backend/mig_int.h"

int gs_backend_mig_open(gs_backend_t **out, const gs_backend_options_t *opt,
                        gs_error_t *err) {
  return gs__backend_mig_open(out, opt, opt ? opt->nvml_library : NULL, err);
}

/* mig when NVML loads and some GPU has MIG mode on; else soft when NVML
 * loads and lists a GPU (and, for GPUs without a MIG table, CUDA answers);
 * else host. */
static int open_auto(gs_backend_t **out, const gs_backend_options_t *opt,
                     gs_error_t *err) {
  gs_backend_t *be = NULL;
  unsigned n = 0;
  if (gs_backend_mig_open(&be, opt, NULL) == GS_OK &&
      be->ops->device_count(be, &n, NULL) == GS_OK && n > 0) {
    *out = be;
    return GS_OK;
  }
  gs_backend_close(be);
  if (gs_backend_soft_open(out, opt, NULL) == GS_OK)
    return GS_OK;
  return gs_backend_host_open(out, opt, err);
}

int gs_backend_open(gs_backend_t **out, const char *name,
                    const gs_backend_options_t *opt, gs_error_t *err) {
  *out = NULL;
  if (!name)
    return open_auto(out, opt, err);
  if (strcmp(name, "host") == 0)
    return gs_backend_host_open(out, opt, err);
  if (strcmp(name, "mig") == 0)
    return gs_backend_mig_open(out, opt, err);
  if (strcmp(name, "soft") == 0)
    return gs_backend_soft_open(out, opt, err);
  return gs_error_set(err, GS_EINVAL,
                      "unknown backend '%s' (backends: host, soft, mig)", name);
}

void gs_backend_close(gs_backend_t *be) {
  if (be)
    be->ops->close(be);
}
