/* The engine's names and process-wide settings: element type names and
 * sizes (KServe's), provider, precision and GPU wait names, session option
 * defaults, and OpenBLAS's thread count. */
#include <string.h>

#include <cblas.h>

#include "engine/engine_int.h"

static const struct {
  const char *name;
  size_t size;
} dtypes[] = {{"INVALID", 0},
#define XX(name, size) {#name, size},
              GS_DTYPE_MAP(XX)
#undef XX
};

const char *gs_dtype_name(gs_dtype_t dtype) {
  return dtype > 0 && dtype < GS_DTYPE_MAX ? dtypes[dtype].name : "INVALID";
}

gs_dtype_t gs_dtype_from_name(const char *name) {
  for (int i = 1; name && i < GS_DTYPE_MAX; i++)
    if (strcmp(dtypes[i].name, name) == 0)
      return (gs_dtype_t)i;
  return GS_DTYPE_INVALID;
}

size_t gs_dtype_size(gs_dtype_t dtype) {
  return dtype > 0 && dtype < GS_DTYPE_MAX ? dtypes[dtype].size : 0;
}

int gs_engine_set_threads(unsigned n, gs_error_t *err) {
  if (n < 1 || n > 1024)
    return gs_error_set(err, GS_EINVAL, "thread count %u is not in 1..1024", n);
  openblas_set_num_threads((int)n);
  return GS_OK;
}

unsigned gs_engine_threads(void) {
  int n = openblas_get_num_threads();
  return n > 0 ? (unsigned)n : 1;
}

const char *gs_provider_name(gs_provider_t provider) {
  switch (provider) {
  case GS_PROVIDER_AUTO:
    return "auto";
  case GS_PROVIDER_CPU:
    return "cpu";
  case GS_PROVIDER_CUDA:
    return "cuda";
  }
  return "invalid";
}

const char *gs_precision_name(gs_precision_t precision) {
  switch (precision) {
  case GS_PRECISION_DEFAULT:
    return "default";
  case GS_PRECISION_FP32:
    return "fp32";
  case GS_PRECISION_FP16:
    return "fp16";
  }
  return "invalid";
}

static const char *const gpu_waits[] = {[GS_GPU_WAIT_DRIVER] = "driver",
                                        [GS_GPU_WAIT_SPIN] = "spin",
                                        [GS_GPU_WAIT_BLOCK] = "block"};
#define N_GPU_WAITS (sizeof gpu_waits / sizeof gpu_waits[0])

const char *gs_gpu_wait_name(gs_gpu_wait_t wait) {
  return (unsigned)wait < N_GPU_WAITS ? gpu_waits[wait] : "invalid";
}

int gs_gpu_wait_parse(const char *s, const char *what, gs_gpu_wait_t *out,
                      gs_error_t *err) {
  for (unsigned i = 0; s && i < N_GPU_WAITS; i++)
    if (strcmp(s, gpu_waits[i]) == 0) {
      *out = (gs_gpu_wait_t)i;
      return GS_OK;
    }
  return gs_error_set(err, GS_EINVAL, "%s: \"%s\" is not driver, spin or block",
                      what, s ? s : "");
}

void gs_session_options_default(gs_session_options_t *opts) {
  memset(opts, 0, sizeof *opts);
  opts->max_plan_bytes = (size_t)1 << 30;
  opts->max_cached_plans = 16;
}
