/* The NVML loader: dlopen, one dlsym per listed function (newest name
 * first), nvmlInit; and readers that hide which struct version of the
 * profile queries the installed driver speaks. */
#include "gpu/nvml_shim.h"

#include "gpu/dl_int.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* Layouts as nvml.h lays them out on LP64, checked so that a slip in the
 * copied declarations fails the build rather than the driver call. */
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t");
_Static_assert(sizeof(nvmlProcessInfo_t) == 24, "nvmlProcessInfo_t");
_Static_assert(sizeof(nvmlProcessUtilizationSample_t) == 32 &&
                   offsetof(nvmlProcessUtilizationSample_t, smUtil) == 16,
               "nvmlProcessUtilizationSample_t");
_Static_assert(offsetof(nvmlGpuInstanceProfileInfo_t, memorySizeMB) == 40,
               "nvmlGpuInstanceProfileInfo_t");
_Static_assert(offsetof(nvmlGpuInstanceProfileInfo_v2_t, name) == 56,
               "nvmlGpuInstanceProfileInfo_v2_t");
_Static_assert(offsetof(nvmlGpuInstanceProfileInfo_v3_t, name) == 48 &&
                   offsetof(nvmlGpuInstanceProfileInfo_v3_t, capabilities) ==
                       144 &&
                   sizeof(nvmlGpuInstanceProfileInfo_v3_t) == 152,
               "nvmlGpuInstanceProfileInfo_v3_t");
_Static_assert(offsetof(nvmlComputeInstanceProfileInfo_v3_t, capabilities) ==
                   136,
               "nvmlComputeInstanceProfileInfo_v3_t");
_Static_assert(offsetof(nvmlGpuInstanceInfo_t, placement) == 16 &&
                   sizeof(nvmlGpuInstanceInfo_t) == 24,
               "nvmlGpuInstanceInfo_t");
_Static_assert(offsetof(nvmlComputeInstanceInfo_t, placement) == 24 &&
                   sizeof(nvmlComputeInstanceInfo_t) == 32,
               "nvmlComputeInstanceInfo_t");

_Static_assert(sizeof(nvmlEventData_t) == 32 &&
                   offsetof(nvmlEventData_t, gpuInstanceId) == 24,
               "nvmlEventData_t");

static int load_symbols(gs__nvml_t *n, gs_error_t *err) {
#define GS__NVML_LOAD(field, req, ret, params, sym, old)                       \
  if (!gs__dl_resolve(n->dl, &n->field, sym, old) && (req))                    \
    return gs_error_set(err, GS_EUNSUPPORTED,                                  \
                        "%s lacks %s%s%s%s: the NVIDIA driver is too old for " \
                        "gpuslice's MIG backend",                              \
                        n->path, sym, old ? " (and " : "", old ? old : "",     \
                        old ? ")" : "");
  GS__NVML_FUNCS(GS__NVML_LOAD)
#undef GS__NVML_LOAD
  if (!n->DeviceGetGpuInstanceProfileInfoV &&
      !n->DeviceGetGpuInstanceProfileInfo)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s lacks nvmlDeviceGetGpuInstanceProfileInfoV (and "
                        "nvmlDeviceGetGpuInstanceProfileInfo)",
                        n->path);
  if (!n->GpuInstanceGetComputeInstanceProfileInfoV &&
      !n->GpuInstanceGetComputeInstanceProfileInfo)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "%s lacks nvmlGpuInstanceGetComputeInstanceProfileInfoV"
                        " (and nvmlGpuInstanceGetComputeInstanceProfileInfo)",
                        n->path);
  return GS_OK;
}

int gs__nvml_open(gs__nvml_t *nvml, const char *path, gs_error_t *err) {
  memset(nvml, 0, sizeof *nvml);
  if (!path || !path[0])
    path = GS__NVML_DEFAULT_LIBRARY;
  if (strlen(path) >= sizeof nvml->path)
    return gs_error_set(err, GS_EINVAL, "NVML library path is too long");
  snprintf(nvml->path, sizeof nvml->path, "%s", path);
  int rc = gs__dl_open(&nvml->dl, path, "NVIDIA driver", err);
  if (rc != GS_OK)
    return rc;
  rc = load_symbols(nvml, err);
  if (rc == GS_OK) {
    nvmlReturn_t r = nvml->Init();
    if (r == NVML_ERROR_DRIVER_NOT_LOADED)
      rc = gs_error_set(err, GS_ENODEV, "NVIDIA driver not loaded: %s: %s",
                        path, gs__nvml_strerror(nvml, r));
    else if (r != NVML_SUCCESS)
      rc = gs__nvml_fail(nvml, r, "nvmlInit", err, "starting NVML");
  }
  if (rc != GS_OK) {
    dlclose(nvml->dl);
    memset(nvml, 0, sizeof *nvml);
    return rc;
  }
  nvml->initialized = true;
  return GS_OK;
}

void gs__nvml_close(gs__nvml_t *nvml) {
  if (!nvml || !nvml->dl)
    return;
  if (nvml->initialized)
    nvml->Shutdown();
  dlclose(nvml->dl);
  memset(nvml, 0, sizeof *nvml);
}

const char *gs__nvml_strerror(const gs__nvml_t *nvml, nvmlReturn_t rc) {
  const char *s = nvml && nvml->ErrorString ? nvml->ErrorString(rc) : NULL;
  return s ? s : "unknown NVML error";
}

int gs__nvml_fail(const gs__nvml_t *nvml, nvmlReturn_t rc, const char *call,
                  gs_error_t *err, const char *what) {
  int code;
  switch (rc) {
  case NVML_ERROR_IN_USE:
    code = GS_EBUSY;
    break;
  case NVML_ERROR_INSUFFICIENT_RESOURCES:
    code = GS_ENOFIT;
    break;
  case NVML_ERROR_NO_PERMISSION:
    code = GS_EPERM;
    break;
  case NVML_ERROR_NOT_FOUND:
    code = GS_ENOTFOUND;
    break;
  case NVML_ERROR_NOT_SUPPORTED:
    code = GS_EUNSUPPORTED;
    break;
  default:
    code = GS_EDRIVER;
    break;
  }
  return gs_error_set(err, code, "%s: %s failed: %s", what, call,
                      gs__nvml_strerror(nvml, rc));
}

/* ---- profile queries across struct versions ---------------------------- */

static void name_copy(char *dst, const char *src) {
  memcpy(dst, src, NVML_DEVICE_NAME_V2_BUFFER_SIZE);
  dst[NVML_DEVICE_NAME_V2_BUFFER_SIZE - 1] = '\0';
}

/* Copies the fields the v2 and v3 profile structs share (same names; v3
 * adds capabilities). */
#define PROFILE_FROM(out, p)                                                   \
  do {                                                                         \
    *(out) = (gs__nvml_gi_profile_t){(p)->id,                                  \
                                     (p)->sliceCount,                          \
                                     (p)->instanceCount,                       \
                                     (p)->multiprocessorCount,                 \
                                     (p)->copyEngineCount,                     \
                                     (p)->decoderCount,                        \
                                     (p)->encoderCount,                        \
                                     (p)->jpegCount,                           \
                                     (p)->ofaCount,                            \
                                     (p)->memorySizeMB,                        \
                                     ""};                                      \
    name_copy((out)->name, (p)->name);                                         \
  } while (0)

nvmlReturn_t gs__nvml_gi_profile(const gs__nvml_t *nvml, nvmlDevice_t dev,
                                 unsigned index, gs__nvml_gi_profile_t *out) {
  memset(out, 0, sizeof *out);
  nvmlReturn_t r = NVML_ERROR_FUNCTION_NOT_FOUND;
  if (nvml->DeviceGetGpuInstanceProfileInfoV) {
    /* The V call takes a v2 pointer but writes the version asked for. */
    union {
      nvmlGpuInstanceProfileInfo_v2_t v2;
      nvmlGpuInstanceProfileInfo_v3_t v3;
    } u;
    memset(&u, 0, sizeof u);
    u.v3.version = nvmlGpuInstanceProfileInfo_v3;
    r = nvml->DeviceGetGpuInstanceProfileInfoV(dev, index, &u.v2);
    if (r == NVML_SUCCESS) {
      const nvmlGpuInstanceProfileInfo_v3_t *p = &u.v3;
      PROFILE_FROM(out, p);
      return r;
    }
    if (r != NVML_ERROR_ARGUMENT_VERSION_MISMATCH &&
        r != NVML_ERROR_INVALID_ARGUMENT)
      return r;
    memset(&u, 0, sizeof u);
    u.v2.version = nvmlGpuInstanceProfileInfo_v2;
    r = nvml->DeviceGetGpuInstanceProfileInfoV(dev, index, &u.v2);
    if (r == NVML_SUCCESS) {
      const nvmlGpuInstanceProfileInfo_v2_t *p = &u.v2;
      PROFILE_FROM(out, p);
      return r;
    }
    if (!nvml->DeviceGetGpuInstanceProfileInfo)
      return r;
  }
  nvmlGpuInstanceProfileInfo_t v1;
  memset(&v1, 0, sizeof v1);
  r = nvml->DeviceGetGpuInstanceProfileInfo(dev, index, &v1);
  if (r == NVML_SUCCESS)
    *out = (gs__nvml_gi_profile_t){v1.id,
                                   v1.sliceCount,
                                   v1.instanceCount,
                                   v1.multiprocessorCount,
                                   v1.copyEngineCount,
                                   v1.decoderCount,
                                   v1.encoderCount,
                                   v1.jpegCount,
                                   v1.ofaCount,
                                   v1.memorySizeMB,
                                   ""};
  return r;
}

nvmlReturn_t gs__nvml_ci_profile(const gs__nvml_t *nvml, nvmlGpuInstance_t gi,
                                 unsigned index, gs__nvml_ci_profile_t *out) {
  const unsigned eng = NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED;
  memset(out, 0, sizeof *out);
  nvmlReturn_t r = NVML_ERROR_FUNCTION_NOT_FOUND;
  if (nvml->GpuInstanceGetComputeInstanceProfileInfoV) {
    /* v2 and v3 agree up to name; v3 only appends capabilities. */
    union {
      nvmlComputeInstanceProfileInfo_v2_t v2;
      nvmlComputeInstanceProfileInfo_v3_t v3;
    } u;
    unsigned versions[2] = {nvmlComputeInstanceProfileInfo_v3,
                            nvmlComputeInstanceProfileInfo_v2};
    for (unsigned k = 0; k < 2; k++) {
      memset(&u, 0, sizeof u);
      u.v3.version = versions[k];
      r = nvml->GpuInstanceGetComputeInstanceProfileInfoV(gi, index, eng,
                                                          &u.v2);
      if (r == NVML_SUCCESS) {
        const nvmlComputeInstanceProfileInfo_v2_t *p = &u.v2;
        *out = (gs__nvml_ci_profile_t){p->id, p->sliceCount, p->instanceCount,
                                       p->multiprocessorCount, ""};
        name_copy(out->name, p->name);
        return r;
      }
      if (r != NVML_ERROR_ARGUMENT_VERSION_MISMATCH &&
          r != NVML_ERROR_INVALID_ARGUMENT)
        return r;
    }
    if (!nvml->GpuInstanceGetComputeInstanceProfileInfo)
      return r;
  }
  nvmlComputeInstanceProfileInfo_t v1;
  memset(&v1, 0, sizeof v1);
  r = nvml->GpuInstanceGetComputeInstanceProfileInfo(gi, index, eng, &v1);
  if (r == NVML_SUCCESS)
    *out = (gs__nvml_ci_profile_t){v1.id, v1.sliceCount, v1.instanceCount,
                                   v1.multiprocessorCount, ""};
  return r;
}
