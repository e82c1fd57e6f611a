/* ======================================================================
 * TEST-ONLY FAKE of libcuda.so.1 (the CUDA driver API). It is never
 * shipped, never installed and never loaded unless a test points gpuslice
 * at it (gs_backend_options_t.cuda_library, GPUSLICE_CUDA_LIBRARY). It
 * stands in for the driver on machines without a GPU so that the soft
 * backend's SM counts can be exercised.
 * ======================================================================
 *
 * Environment (read at cuInit):
 *   FAKE_CUDA_SMS=132,114    one GPU per entry, with that many SMs
 *                            (default: one GPU with 132)
 *   FAKE_CUDA_UUIDS=GPU-...,GPU-...   their UUIDs (default: the ones the
 *                            fake NVML gives an H100 at that index)
 *   FAKE_CUDA_FAIL_INIT=1    cuInit fails with CUDA_ERROR_NO_DEVICE
 *   FAKE_CUDA_GREEN=8,8      green contexts: minimum partition and
 *                            alignment cuDeviceGetDevResource reports
 *                            (default 8,8, as an H100); "off": the green
 *                            functions fail (a driver without them)
 *   FAKE_CUDA_IPC=off        cuIpcOpenMemHandle fails (see the IPC part)
 *   FAKE_CUDA_LOG=<file>     appends "cuInit CUDA_MPS_PIPE_DIRECTORY=...
 *                            CUDA_VISIBLE_DEVICES=..." per cuInit, so tests
 *                            see the environment the driver ran with
 * The declarations come from gpuslice's own shim (src/gpu/cuda_shim.h). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/cuda_shim.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_GPUS 8

static struct {
  int initialized, n;
  int sms[MAX_GPUS];
  unsigned char uuid[MAX_GPUS][16];
} fc;

static int hex(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* "GPU-xxxxxxxx-xxxx-..." into 16 bytes; 0 on success. */
static int parse_uuid(const char *text, size_t len, unsigned char *out) {
  unsigned k = 0;
  if (len < 4 || strncmp(text, "GPU-", 4) != 0)
    return -1;
  for (size_t i = 4; i < len && k < 32; i++) {
    if (text[i] == '-')
      continue;
    int v = hex(text[i]);
    if (v < 0)
      return -1;
    out[k / 2] = (unsigned char)(k % 2 ? out[k / 2] | v : v << 4);
    k++;
  }
  return k == 32 ? 0 : -1;
}

/* The fake NVML's UUID of an H100 at index i:
 * GPU-fa4e%04x-0000-4000-8000-0000000002330. */
static void default_uuid(int i, unsigned char *out) {
  char text[64];
  snprintf(text, sizeof text, "GPU-fa4e%04x-0000-4000-8000-%012x", i, 0x2330);
  parse_uuid(text, strlen(text), out);
}

static void log_init(void) {
  const char *path = getenv("FAKE_CUDA_LOG");
  FILE *f = path ? fopen(path, "a") : NULL;
  if (!f)
    return;
  const char *pipe = getenv("CUDA_MPS_PIPE_DIRECTORY");
  const char *vis = getenv("CUDA_VISIBLE_DEVICES");
  fprintf(f, "cuInit CUDA_MPS_PIPE_DIRECTORY=%s CUDA_VISIBLE_DEVICES=%s\n",
          pipe ? pipe : "(unset)", vis ? vis : "(unset)");
  fclose(f);
}

EXPORT CUresult cuInit(unsigned flags) {
  (void)flags;
  log_init();
  if (getenv("FAKE_CUDA_FAIL_INIT"))
    return CUDA_ERROR_NO_DEVICE;
  const char *sms = getenv("FAKE_CUDA_SMS");
  const char *uuids = getenv("FAKE_CUDA_UUIDS");
  memset(&fc, 0, sizeof fc);
  for (const char *p = sms && *sms ? sms : "132"; *p && fc.n < MAX_GPUS;) {
    fc.sms[fc.n] = atoi(p);
    default_uuid(fc.n, fc.uuid[fc.n]);
    fc.n++;
    p += strcspn(p, ",");
    p += *p == ',';
  }
  for (int i = 0; uuids && *uuids && i < fc.n; i++) {
    size_t len = strcspn(uuids, ",");
    if (parse_uuid(uuids, len, fc.uuid[i]) != 0)
      return CUDA_ERROR_INVALID_VALUE;
    uuids += len + (uuids[len] == ',');
  }
  fc.initialized = 1;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int *version) {
  if (!version)
    return CUDA_ERROR_INVALID_VALUE;
  *version = 13000;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int *count) {
  if (!fc.initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  *count = fc.n;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *dev, int ordinal) {
  if (!fc.initialized)
    return CUDA_ERROR_NOT_INITIALIZED;
  if (ordinal < 0 || ordinal >= fc.n)
    return CUDA_ERROR_INVALID_DEVICE;
  *dev = ordinal;
  return CUDA_SUCCESS;
}

static int bad(CUdevice dev) {
  return !fc.initialized || dev < 0 || dev >= fc.n;
}

EXPORT CUresult cuDeviceGetAttribute(int *value, CUdevice_attribute attr,
                                     CUdevice dev) {
  if (bad(dev) || !value)
    return CUDA_ERROR_INVALID_DEVICE;
  if (attr != CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
    return CUDA_ERROR_INVALID_VALUE;
  *value = fc.sms[dev];
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
  if (bad(dev) || !name || len <= 0)
    return CUDA_ERROR_INVALID_VALUE;
  snprintf(name, (size_t)len, "Fake CUDA GPU %d", dev);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
  if (bad(dev) || !bytes)
    return CUDA_ERROR_INVALID_VALUE;
  *bytes = (size_t)80 << 30;
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) {
  if (bad(dev) || !uuid)
    return CUDA_ERROR_INVALID_VALUE;
  memcpy(uuid->bytes, fc.uuid[dev], 16);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult error, const char **str) {
  if (!str)
    return CUDA_ERROR_INVALID_VALUE;
  switch (error) {
  case CUDA_SUCCESS:
    *str = "no error";
    break;
  case CUDA_ERROR_NO_DEVICE:
    *str = "no CUDA-capable device is detected";
    break;
  case CUDA_ERROR_NOT_INITIALIZED:
    *str = "initialization error";
    break;
  case CUDA_ERROR_INVALID_DEVICE:
    *str = "invalid device ordinal";
    break;
  default:
    *str = "unknown error";
    break;
  }
  return CUDA_SUCCESS;
}

/* ---- green contexts: the resource queries the soft backend makes ------- */

static int green_off(void) {
  const char *g = getenv("FAKE_CUDA_GREEN");
  return g && strcmp(g, "off") == 0;
}

EXPORT CUresult cuDeviceGetDevResource(CUdevice dev, CUdevResource *res,
                                       CUdevResourceType type) {
  if (bad(dev) || !res || type != CU_DEV_RESOURCE_TYPE_SM)
    return CUDA_ERROR_INVALID_VALUE;
  if (green_off())
    return CUDA_ERROR_UNKNOWN;
  const char *g = getenv("FAKE_CUDA_GREEN");
  unsigned min = 8, align = 8;
  if (g && *g)
    sscanf(g, "%u,%u", &min, &align);
  memset(res, 0, sizeof *res);
  res->type = CU_DEV_RESOURCE_TYPE_SM;
  res->sm.smCount = (unsigned)fc.sms[dev];
  res->sm.minSmPartitionSize = min;
  res->sm.smCoscheduledAlignment = align;
  return CUDA_SUCCESS;
}

/* Groups of max(min_count, the minimum) SMs, as many as fit. */
EXPORT CUresult cuDevSmResourceSplitByCount(CUdevResource *result, unsigned *n,
                                            const CUdevResource *input,
                                            CUdevResource *remaining,
                                            unsigned flags, unsigned count) {
  (void)remaining;
  (void)flags;
  if (!n || !input || input->type != CU_DEV_RESOURCE_TYPE_SM || count == 0)
    return CUDA_ERROR_INVALID_VALUE;
  if (count < input->sm.minSmPartitionSize)
    count = input->sm.minSmPartitionSize;
  unsigned fit = input->sm.smCount / count;
  if (!result) {
    *n = fit;
    return CUDA_SUCCESS;
  }
  if (*n > fit)
    *n = fit;
  for (unsigned i = 0; i < *n; i++) {
    result[i] = *input;
    result[i].sm.smCount = count;
  }
  return CUDA_SUCCESS;
}

/* The rest exists (the shim resolves every green function) and fails: no
 * fake runs kernels. */
EXPORT CUresult cuDevResourceGenerateDesc(CUdevResourceDesc *d,
                                          CUdevResource *r, unsigned n) {
  (void)d, (void)r, (void)n;
  return CUDA_ERROR_UNKNOWN;
}
EXPORT CUresult cuGreenCtxCreate(CUgreenCtx *g, CUdevResourceDesc d,
                                 CUdevice dev, unsigned flags) {
  (void)g, (void)d, (void)dev, (void)flags;
  return CUDA_ERROR_UNKNOWN;
}
EXPORT CUresult cuGreenCtxDestroy(CUgreenCtx g) {
  (void)g;
  return CUDA_ERROR_UNKNOWN;
}
EXPORT CUresult cuCtxFromGreenCtx(CUcontext *c, CUgreenCtx g) {
  (void)c, (void)g;
  return CUDA_ERROR_UNKNOWN;
}
EXPORT CUresult cuGreenCtxStreamCreate(CUstream *st, CUgreenCtx g,
                                       unsigned flags, int prio) {
  (void)st, (void)g, (void)flags, (void)prio;
  return CUDA_ERROR_UNKNOWN;
}

/* ---- CUDA IPC: the worker's CUDA shared memory --------------------------
 * A fake IPC handle is "fakeipc:" and the name of a POSIX shared-memory
 * object (NUL-terminated, within the 64 bytes): cuIpcOpenMemHandle maps
 * that object and its "device pointer" is the host address, so that the
 * copies are memcpy. Contexts are tokens. FAKE_CUDA_IPC=off: the IPC
 * functions fail (a driver that refuses the handle). */

#define MAX_IPC 64
static struct {
  CUdeviceptr ptr;
  size_t len;
} fake_ipc[MAX_IPC];

EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *ptr, CUipcMemHandle h,
                                      unsigned flags) {
  (void)flags;
  const char *off = getenv("FAKE_CUDA_IPC");
  char name[sizeof h.reserved + 1];
  memcpy(name, h.reserved, sizeof h.reserved);
  name[sizeof h.reserved] = '\0';
  if (!fc.initialized || !ptr || (off && strcmp(off, "off") == 0) ||
      strncmp(name, "fakeipc:", 8) != 0)
    return CUDA_ERROR_INVALID_VALUE;
  int fd = shm_open(name + 8, O_RDWR, 0);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) {
    if (fd >= 0)
      close(fd);
    return CUDA_ERROR_INVALID_VALUE;
  }
  void *p =
      mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED)
    return CUDA_ERROR_INVALID_VALUE;
  for (int i = 0; i < MAX_IPC; i++)
    if (!fake_ipc[i].ptr) {
      fake_ipc[i].ptr = (CUdeviceptr)(uintptr_t)p;
      fake_ipc[i].len = (size_t)st.st_size;
      *ptr = fake_ipc[i].ptr;
      return CUDA_SUCCESS;
    }
  munmap(p, (size_t)st.st_size);
  return CUDA_ERROR_UNKNOWN;
}

EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr ptr) {
  for (int i = 0; i < MAX_IPC; i++)
    if (ptr && fake_ipc[i].ptr == ptr) {
      munmap((void *)(uintptr_t)ptr, fake_ipc[i].len);
      fake_ipc[i].ptr = 0;
      return CUDA_SUCCESS;
    }
  return CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) {
  if (bad(dev) || !ctx)
    return CUDA_ERROR_INVALID_VALUE;
  *ctx = (CUcontext)(uintptr_t)(0x1000 + dev);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  return bad(dev) ? CUDA_ERROR_INVALID_DEVICE : CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
  return ctx ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
  if (!dst || !src)
    return CUDA_ERROR_INVALID_VALUE;
  memcpy(dst, (const void *)(uintptr_t)src, n);
  return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
  if (!dst || !src)
    return CUDA_ERROR_INVALID_VALUE;
  memcpy((void *)(uintptr_t)dst, src, n);
  return CUDA_SUCCESS;
}

/* A client's side of IPC, for tests/gpu/shm_cuda_check.sh's dry run: a
 * "device" allocation is a new POSIX shared-memory object, its handle
 * names it (as above). The objects stay in /dev/shm (named
 * /fakecuda_PID_N) for the caller to remove: the worker opens them by name. */
static char fake_ipc_names[MAX_IPC][40];
static CUdeviceptr fake_alloc_ptr[MAX_IPC];
static size_t fake_alloc_len[MAX_IPC];

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
  static int n;
  for (int i = 0; ptr && bytes && i < MAX_IPC; i++) {
    if (fake_alloc_ptr[i])
      continue;
    snprintf(fake_ipc_names[i], sizeof fake_ipc_names[i], "/fakecuda_%d_%d",
             (int)getpid(), n++);
    int fd = shm_open(fake_ipc_names[i], O_RDWR | O_CREAT | O_EXCL, 0600);
    void *p = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, (off_t)bytes) == 0)
      p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fd >= 0)
      close(fd);
    if (p == MAP_FAILED)
      return CUDA_ERROR_UNKNOWN;
    fake_alloc_ptr[i] = *ptr = (CUdeviceptr)(uintptr_t)p;
    fake_alloc_len[i] = bytes;
    return CUDA_SUCCESS;
  }
  return CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr ptr) {
  for (int i = 0; i < MAX_IPC; i++)
    if (ptr && fake_alloc_ptr[i] == ptr) {
      struct stat st;
      int fd = shm_open(fake_ipc_names[i], O_RDONLY, 0);
      if (fd >= 0 && fstat(fd, &st) == 0)
        munmap((void *)(uintptr_t)ptr, (size_t)st.st_size);
      if (fd >= 0)
        close(fd);
      shm_unlink(fake_ipc_names[i]);
      fake_alloc_ptr[i] = 0;
      return CUDA_SUCCESS;
    }
  return CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *h, CUdeviceptr ptr) {
  for (int i = 0; h && i < MAX_IPC; i++)
    if (ptr && fake_alloc_ptr[i] == ptr) {
      memset(h, 0, sizeof *h);
      snprintf(h->reserved, sizeof h->reserved, "fakeipc:%s",
               fake_ipc_names[i]);
      return CUDA_SUCCESS;
    }
  return CUDA_ERROR_INVALID_VALUE;
}

/* The allocation holding ptr (an opened handle's mapping, the whole
 * object, or a cuMemAlloc): its base and size; base or size may be NULL. */
EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr *base, size_t *size,
                                        CUdeviceptr ptr) {
  for (int i = 0; ptr && i < 2 * MAX_IPC; i++) {
    CUdeviceptr b = i < MAX_IPC ? fake_ipc[i].ptr : fake_alloc_ptr[i - MAX_IPC];
    size_t n = i < MAX_IPC ? fake_ipc[i].len : fake_alloc_len[i - MAX_IPC];
    if (b && ptr >= b && ptr - b < n) {
      if (base)
        *base = b;
      if (size)
        *size = n;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_INVALID_VALUE;
}
