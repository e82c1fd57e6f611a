/* CUDA shared-memory regions: a client's cudaIpcMemHandle_t opened with
 * the driver's cuIpcOpenMemHandle through the dlopen'd shim (no CUDA
 * library is linked), and the copies between such a region and the host
 * that the worker's inputs and outputs make. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/cuda_shim.h"
#include "worker/shm.h"

_Static_assert(sizeof(CUipcMemHandle) == GS__SHM_CUDA_HANDLE_BYTES,
               "cudaIpcMemHandle_t is 64 bytes");

#define MAX_DEVICES 64

struct gs__shm_cuda_s {
  gs__cuda_t cuda;
  gs__cuda_ipc_fns_t fn;
  pthread_mutex_t lock;       /* guards ctx */
  CUcontext ctx[MAX_DEVICES]; /* primary contexts retained, by device */
};

static int cuda_fail(const struct gs__shm_cuda_s *c, CUresult r,
                     const char *call, const char *region, gs_error_t *err) {
  return gs_error_set(err, GS_EDRIVER,
                      "CUDA shared memory region '%s': %s failed: %s", region,
                      call, gs__cuda_strerror(&c->cuda, r));
}

/* The driver, opened once: without one, CUDA shared memory is refused. */
static int driver_open(struct gs__shm_cuda_s **out, const char *region,
                       gs_error_t *err) {
  if (*out)
    return GS_OK;
  struct gs__shm_cuda_s *c = calloc(1, sizeof *c);
  if (!c)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  gs_error_t why = {0};
  int rc = gs__cuda_open(&c->cuda, NULL, &why);
  if (rc == GS_OK && (rc = gs__cuda_ipc_load(&c->cuda, &c->fn, &why)) != GS_OK)
    gs__cuda_close(&c->cuda);
  if (rc != GS_OK) {
    free(c);
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "cannot register CUDA shared memory region '%s': "
                        "CUDA is not available on this worker (%s)",
                        region, why.msg);
  }
  pthread_mutex_init(&c->lock, NULL);
  *out = c;
  return GS_OK;
}

/* Makes device's primary context current on this thread. */
static int use_device(struct gs__shm_cuda_s *c, int64_t device,
                      const char *region, gs_error_t *err) {
  if (device < 0 || device >= MAX_DEVICES)
    return gs_error_set(err, GS_EINVAL,
                        "CUDA shared memory region '%s': device_id %lld is "
                        "not a device of this worker",
                        region, (long long)device);
  CUresult r = CUDA_SUCCESS;
  const char *call = "cuDeviceGet";
  pthread_mutex_lock(&c->lock);
  CUdevice dev;
  if (!c->ctx[device] &&
      (r = c->cuda.DeviceGet(&dev, (int)device)) == CUDA_SUCCESS) {
    call = "cuDevicePrimaryCtxRetain";
    r = c->fn.DevicePrimaryCtxRetain(&c->ctx[device], dev);
  }
  CUcontext ctx = c->ctx[device];
  pthread_mutex_unlock(&c->lock);
  if (r != CUDA_SUCCESS)
    return cuda_fail(c, r, call, region, err);
  if ((r = c->fn.CtxSetCurrent(ctx)) != CUDA_SUCCESS)
    return cuda_fail(c, r, "cuCtxSetCurrent", region, err);
  return GS_OK;
}

/* The region's byte_size must fit the client's allocation from the
 * address the handle opened at, as Triton checks at register: else a
 * tensor inside the region could reach past the allocation. */
static int check_size(struct gs__shm_cuda_s *c, const gs__shm_region_t *r,
                      gs_error_t *err) {
  CUdeviceptr base = 0;
  size_t size = 0;
  /* A driver that cannot tell (not yet run on a real one with an IPC
   * mapping) leaves the region as registered before this check: only a
   * size the driver gives refuses it. */
  if (c->fn.MemGetAddressRange(&base, &size, r->dptr) != CUDA_SUCCESS)
    return GS_OK;
  uint64_t have = size - (uint64_t)(r->dptr - base);
  if (r->byte_size > have)
    return gs_error_set(err, GS_EINVAL,
                        "failed to register shared memory region '%s': "
                        "byte_size %llu is larger than the CUDA allocation "
                        "its handle opens (%llu bytes)",
                        r->name, (unsigned long long)r->byte_size,
                        (unsigned long long)have);
  return GS_OK;
}

int gs__shm_cuda_open(struct gs__shm_cuda_s **cuda, gs__shm_region_t *r,
                      const void *handle, gs_error_t *err) {
  int rc = driver_open(cuda, r->name, err);
  if (rc == GS_OK)
    rc = use_device(*cuda, r->device_id, r->name, err);
  if (rc == GS_OK) {
    CUipcMemHandle h;
    memcpy(&h, handle, sizeof h);
    CUresult res = (*cuda)->fn.IpcOpenMemHandle(
        &r->dptr, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    if (res != CUDA_SUCCESS)
      rc = cuda_fail(*cuda, res, "cuIpcOpenMemHandle", r->name, err);
    else if ((rc = check_size(*cuda, r, err)) != GS_OK)
      gs__shm_cuda_close(*cuda, r);
  }
  /* a handle or device the driver refuses is the client's: a 400 */
  if (rc == GS_EDRIVER)
    err->code = rc = GS_EINVAL;
  return rc;
}

void gs__shm_cuda_close(struct gs__shm_cuda_s *c, gs__shm_region_t *r) {
  gs_error_t err;
  if (c && r->dptr && use_device(c, r->device_id, r->name, &err) == GS_OK)
    c->fn.IpcCloseMemHandle(r->dptr); /* nothing to do if it fails */
  r->dptr = 0;
}

void gs__shm_cuda_destroy(struct gs__shm_cuda_s *c) {
  if (!c)
    return;
  for (int d = 0; d < MAX_DEVICES; d++)
    if (c->ctx[d])
      c->fn.DevicePrimaryCtxRelease(d);
  gs__cuda_close(&c->cuda);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

int gs__shm_cuda_read(gs__shm_region_t *r, uint64_t offset, void *dst,
                      size_t bytes, gs_error_t *err) {
  struct gs__shm_cuda_s *c = r->reg->cuda;
  int rc = use_device(c, r->device_id, r->name, err);
  CUresult res = CUDA_SUCCESS;
  if (rc == GS_OK && bytes &&
      (res = c->fn.MemcpyDtoH(dst, r->dptr + offset, bytes)) != CUDA_SUCCESS)
    rc = cuda_fail(c, res, "cuMemcpyDtoH", r->name, err);
  return rc;
}

int gs__shm_cuda_write(gs__shm_region_t *r, uint64_t offset, const void *src,
                       size_t bytes, gs_error_t *err) {
  struct gs__shm_cuda_s *c = r->reg->cuda;
  int rc = use_device(c, r->device_id, r->name, err);
  CUresult res = CUDA_SUCCESS;
  if (rc == GS_OK && bytes &&
      (res = c->fn.MemcpyHtoD(r->dptr + offset, src, bytes)) != CUDA_SUCCESS)
    rc = cuda_fail(c, res, "cuMemcpyHtoD", r->name, err);
  return rc;
}
