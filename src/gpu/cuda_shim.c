/* The CUDA driver loader: dlopen, one dlsym per listed function (newest
 * name first), cuInit; and a reader of what gpuslice asks of each GPU. */
#include "gpu/cuda_shim.h"

#include "gpu/dl_int.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(CUuuid) == 16, "CUuuid");
/* cuda.h of CUDA 12.4-13.0: type, 92 bytes of padding, a 48-byte union. */
_Static_assert(sizeof(CUdevResource) == 144, "CUdevResource");

static int load_symbols(gs__cuda_t *c, gs_error_t *err) {
#define GS__CUDA_LOAD(field, ret, params, sym, old)                            \
  if (!gs__dl_resolve(c->dl, &c->field, sym, old))                             \
    return gs_error_set(err, GS_EUNSUPPORTED,                                  \
                        "%s lacks %s%s%s%s: the CUDA driver is too old for "   \
                        "gpuslice",                                            \
                        c->path, sym, old ? " (and " : "", old ? old : "",     \
                        old ? ")" : "");
  GS__CUDA_FUNCS(GS__CUDA_LOAD)
  return GS_OK;
}

int gs__cuda_load_compute(gs__cuda_t *c, gs_error_t *err) {
  if (c->compute)
    return GS_OK;
  GS__CUDA_COMPUTE_FUNCS(GS__CUDA_LOAD)
  c->compute = true;
  return GS_OK;
}

#undef GS__CUDA_LOAD

int gs__cuda_green_load(const gs__cuda_t *c, gs__cuda_green_fns_t *out,
                        gs_error_t *err) {
  memset(out, 0, sizeof *out);
#define GS__CUDA_LOAD_GREEN(field, ret, params, sym, old)                      \
  if (!c->dl || !gs__dl_resolve(c->dl, &out->field, sym, old))                 \
    return gs_error_set(err, GS_EDRIVER,                                       \
                        "%s lacks %s: green contexts (SM partitions) need a "  \
                        "CUDA 12.4 or newer driver",                           \
                        c->path[0] ? c->path : "the CUDA driver", sym);
  GS__CUDA_GREEN_FUNCS(GS__CUDA_LOAD_GREEN)
#undef GS__CUDA_LOAD_GREEN
  return GS_OK;
}

int gs__cuda_ipc_load(const gs__cuda_t *c, gs__cuda_ipc_fns_t *out,
                      gs_error_t *err) {
  memset(out, 0, sizeof *out);
#define GS__CUDA_LOAD_IPC(field, ret, params, sym, old)                        \
  if (!c->dl || !gs__dl_resolve(c->dl, &out->field, sym, old))                 \
    return gs_error_set(err, GS_EUNSUPPORTED,                                  \
                        "%s lacks %s: CUDA shared memory needs CUDA IPC",      \
                        c->path[0] ? c->path : "the CUDA driver", sym);
  GS__CUDA_IPC_FUNCS(GS__CUDA_LOAD_IPC)
#undef GS__CUDA_LOAD_IPC
  return GS_OK;
}

unsigned gs__cuda_green_unit(unsigned min_partition, unsigned alignment) {
  if (min_partition == 0 && alignment == 0)
    return 8;
  unsigned step = alignment ? alignment : 1, unit = step;
  while (unit < min_partition)
    unit += step;
  return unit;
}

int gs__cuda_open(gs__cuda_t *cuda, const char *path, gs_error_t *err) {
  memset(cuda, 0, sizeof *cuda);
  if (!path || !path[0])
    path = GS__CUDA_DEFAULT_LIBRARY;
  if (strlen(path) >= sizeof cuda->path)
    return gs_error_set(err, GS_EINVAL, "CUDA library path is too long");
  snprintf(cuda->path, sizeof cuda->path, "%s", path);
  int rc = gs__dl_open(&cuda->dl, path, "CUDA driver", err);
  if (rc != GS_OK)
    return rc;
  rc = load_symbols(cuda, err);
  if (rc == GS_OK) {
    CUresult r = cuda->Init(0);
    if (r == CUDA_ERROR_NO_DEVICE)
      rc = gs_error_set(err, GS_ENODEV, "CUDA finds no GPU: cuInit: %s",
                        gs__cuda_strerror(cuda, r));
    else if (r != CUDA_SUCCESS)
      rc = gs_error_set(err, GS_EDRIVER, "starting CUDA: cuInit failed: %s",
                        gs__cuda_strerror(cuda, r));
    else if ((r = cuda->DriverGetVersion(&cuda->driver_version)) !=
             CUDA_SUCCESS)
      rc = gs_error_set(err, GS_EDRIVER, "cuDriverGetVersion failed: %s",
                        gs__cuda_strerror(cuda, r));
  }
  if (rc != GS_OK) {
    dlclose(cuda->dl);
    memset(cuda, 0, sizeof *cuda);
  }
  return rc;
}

void gs__cuda_close(gs__cuda_t *cuda) {
  if (cuda && cuda->dl)
    dlclose(cuda->dl);
  if (cuda)
    memset(cuda, 0, sizeof *cuda);
}

const char *gs__cuda_strerror(const gs__cuda_t *cuda, CUresult rc) {
  const char *s = NULL;
  if (cuda && cuda->GetErrorString &&
      cuda->GetErrorString(rc, &s) != CUDA_SUCCESS)
    s = NULL;
  return s ? s : "unknown CUDA error";
}

void gs__cuda_uuid_format(const CUuuid *uuid, char *buf, size_t size) {
  const unsigned char *b = (const unsigned char *)uuid->bytes;
  size_t len = (size_t)snprintf(buf, size, "GPU-");
  for (unsigned i = 0; i < 16 && len < size; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      len += (size_t)snprintf(buf + len, size - len, "-");
    len += (size_t)snprintf(buf + len, size - len, "%02x", b[i]);
  }
}

static int fail(const gs__cuda_t *cuda, CUresult r, const char *call, int index,
                gs_error_t *err) {
  return gs_error_set(err, GS_EDRIVER, "CUDA device %d: %s failed: %s", index,
                      call, gs__cuda_strerror(cuda, r));
}

int gs__cuda_list(const gs__cuda_t *cuda, gs__cuda_gpu_t *out, unsigned max,
                  unsigned *n, gs_error_t *err) {
  *n = 0;
  int count = 0;
  CUresult r = cuda->DeviceGetCount(&count);
  if (r != CUDA_SUCCESS)
    return gs_error_set(err, GS_EDRIVER, "cuDeviceGetCount failed: %s",
                        gs__cuda_strerror(cuda, r));
  for (int i = 0; i < count && *n < max; i++) {
    gs__cuda_gpu_t *g = &out[*n];
    CUdevice dev;
    CUuuid uuid;
    int sms = 0;
    size_t bytes = 0;
    memset(g, 0, sizeof *g);
    if ((r = cuda->DeviceGet(&dev, i)) != CUDA_SUCCESS)
      return fail(cuda, r, "cuDeviceGet", i, err);
    if ((r = cuda->DeviceGetUuid(&uuid, dev)) != CUDA_SUCCESS)
      return fail(cuda, r, "cuDeviceGetUuid", i, err);
    if ((r = cuda->DeviceGetAttribute(&sms,
                                      CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                                      dev)) != CUDA_SUCCESS)
      return fail(cuda, r, "cuDeviceGetAttribute", i, err);
    if ((r = cuda->DeviceGetName(g->name, (int)sizeof g->name, dev)) !=
        CUDA_SUCCESS)
      return fail(cuda, r, "cuDeviceGetName", i, err);
    if ((r = cuda->DeviceTotalMem(&bytes, dev)) != CUDA_SUCCESS)
      return fail(cuda, r, "cuDeviceTotalMem", i, err);
    g->name[sizeof g->name - 1] = '\0';
    gs__cuda_uuid_format(&uuid, g->uuid, sizeof g->uuid);
    g->sms = sms > 0 ? (unsigned)sms : 0;
    g->memory_bytes = bytes;
    (*n)++;
  }
  return GS_OK;
}
