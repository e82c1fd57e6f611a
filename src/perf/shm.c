/* gpuslice perf's --shared-memory system|cuda, as perf_analyzer's: one
 * region per request (input-data entry) holding its inputs, written once
 * before the load, and room for every output; registered with the server
 * over the run's protocol, named in every request instead of the bytes,
 * unregistered and freed at the end. CUDA regions are device memory on
 * device 0 from the dlopen'd driver, registered by their IPC handle. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gpu/cuda_shim.h"
#include "grpc_service.pb-c.h"
#include "perf/perf_int.h"

#define GRPC_SERVICE "/inference.GRPCInferenceService/"

typedef struct gs__perf_shm_s {
  char name[64]; /* the region's, and the POSIX object's with a '/' */
  size_t size;
  uint8_t *map;    /* system: the mapping */
  CUdeviceptr ptr; /* cuda: the allocation */
  bool registered;
} shm_t;

struct gs__perf_cuda_s {
  gs__cuda_t cuda;
  gs__cuda_ipc_fns_t fn;
  CUcontext ctx;
  CUdevice dev;
};

static size_t align64(size_t n) {
  return (n + 63) / 64 * 64;
}

static bool is_cuda(const gs__perf_ctx_t *ctx) {
  return ctx->opts->shared_memory == GS_PERF_SHM_CUDA;
}

static int cuda_fail(const struct gs__perf_cuda_s *c, CUresult r,
                     const char *call, gs_error_t *err) {
  return gs_error_set(err, GS_EDRIVER, "--shared-memory cuda: %s failed: %s",
                      call, gs__cuda_strerror(&c->cuda, r));
}

/* The driver and device 0's primary context, current on this thread. */
static int cuda_start(gs__perf_ctx_t *ctx, gs_error_t *err) {
  if (ctx->cuda)
    return ctx->cuda->fn.CtxSetCurrent(ctx->cuda->ctx) == CUDA_SUCCESS
               ? GS_OK
               : gs_error_set(err, GS_EDRIVER, "cuCtxSetCurrent failed");
  struct gs__perf_cuda_s *c = calloc(1, sizeof *c);
  if (!c)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = gs__cuda_open(&c->cuda, NULL, err);
  if (rc == GS_OK && (rc = gs__cuda_ipc_load(&c->cuda, &c->fn, err)) != GS_OK)
    gs__cuda_close(&c->cuda);
  if (rc != GS_OK) {
    free(c);
    gs_error_prefix(err, "--shared-memory cuda: ");
    return rc;
  }
  ctx->cuda = c;
  CUresult r = c->cuda.DeviceGet(&c->dev, 0);
  if (r != CUDA_SUCCESS)
    return cuda_fail(c, r, "cuDeviceGet", err);
  if ((r = c->fn.DevicePrimaryCtxRetain(&c->ctx, c->dev)) != CUDA_SUCCESS) {
    c->ctx = NULL;
    return cuda_fail(c, r, "cuDevicePrimaryCtxRetain", err);
  }
  r = c->fn.CtxSetCurrent(c->ctx);
  return r == CUDA_SUCCESS ? GS_OK : cuda_fail(c, r, "cuCtxSetCurrent", err);
}

/* The region's memory, the inputs written into it. */
static int region_alloc(gs__perf_ctx_t *ctx, shm_t *s, uint8_t *const *data,
                        const size_t *len, const size_t *in_off,
                        gs_error_t *err) {
  size_t n = ctx->model.n_inputs;
  if (is_cuda(ctx)) {
    int rc = cuda_start(ctx, err);
    const gs__cuda_ipc_fns_t *fn = &ctx->cuda->fn;
    CUresult r = rc == GS_OK ? fn->MemAlloc(&s->ptr, s->size) : CUDA_SUCCESS;
    if (rc == GS_OK && r != CUDA_SUCCESS)
      return s->ptr = 0, cuda_fail(ctx->cuda, r, "cuMemAlloc", err);
    for (size_t i = 0; rc == GS_OK && i < n; i++)
      if (len[i] && (r = fn->MemcpyHtoD(s->ptr + in_off[i], data[i], len[i])) !=
                        CUDA_SUCCESS)
        rc = cuda_fail(ctx->cuda, r, "cuMemcpyHtoD", err);
    return rc;
  }
  int fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0)
    return gs_error_sys(err, errno, "shm_open %s", s->name);
  void *p = ftruncate(fd, (off_t)s->size) == 0
                ? mmap(NULL, s->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                : MAP_FAILED;
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(s->name);
    return gs_error_sys(err, errno, "mapping %s", s->name);
  }
  s->map = p;
  for (size_t i = 0; i < n; i++)
    if (len[i])
      memcpy(s->map + in_off[i], data[i], len[i]);
  return GS_OK;
}

/* Standard base64 of n bytes (a CUDA IPC handle) into out (cap >= 4n/3+4). */
static void base64(const uint8_t *in, size_t n, char *out) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) |
                 (i + 2 < n ? in[i + 2] : 0);
    out[o++] = t[v >> 18 & 63];
    out[o++] = t[v >> 12 & 63];
    out[o++] = i + 1 < n ? t[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? t[v & 63] : '=';
  }
  out[o] = '\0';
}

/* POST path with a JSON body (HTTP). */
static int http_post(gs__perf_ctx_t *ctx, const char *path, json_t *body,
                     const char *what, gs_error_t *err) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : strdup("{}");
  json_decref(body);
  if (!text)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  size_t tlen = strlen(text);
  char *msg = NULL;
  int n = asprintf(&msg,
                   "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                   "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                   path, ctx->authority, tlen, text);
  free(text);
  if (n < 0)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  gs__perf_req_t req = {path, (const uint8_t *)msg, (size_t)n};
  char *answer = NULL;
  size_t alen = 0;
  int rc = gs__perf_call(ctx, &req, what, &answer, &alen, err);
  free(answer);
  free(msg);
  return rc;
}

static int grpc_call(gs__perf_ctx_t *ctx, const char *method,
                     const ProtobufCMessage *m, const char *what,
                     gs_error_t *err) {
  gs__perf_req_t req;
  uint8_t *data = NULL;
  if (gs__perf_grpc_request(method, m, &req, &data) != GS_OK)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  char *answer = NULL;
  size_t alen = 0;
  int rc = gs__perf_call(ctx, &req, what, &answer, &alen, err);
  free(answer);
  free(data);
  return rc;
}

static int region_register(gs__perf_ctx_t *ctx, shm_t *s, gs_error_t *err) {
  bool grpc = ctx->opts->protocol == GS_PERF_GRPC, cuda = is_cuda(ctx);
  const char *name = s->name + 1; /* without the POSIX object's '/' */
  CUipcMemHandle h = {{0}};
  if (cuda) {
    CUresult r = ctx->cuda->fn.IpcGetMemHandle(&h, s->ptr);
    if (r != CUDA_SUCCESS)
      return cuda_fail(ctx->cuda, r, "cuIpcGetMemHandle", err);
  }
  if (grpc && cuda) {
    Inference__CudaSharedMemoryRegisterRequest m =
        INFERENCE__CUDA_SHARED_MEMORY_REGISTER_REQUEST__INIT;
    m.name = (char *)name;
    m.raw_handle = (ProtobufCBinaryData){sizeof h, (uint8_t *)&h};
    m.byte_size = s->size;
    return grpc_call(ctx, GRPC_SERVICE "CudaSharedMemoryRegister", &m.base,
                     "a CUDA shared memory registration", err);
  }
  if (grpc) {
    Inference__SystemSharedMemoryRegisterRequest m =
        INFERENCE__SYSTEM_SHARED_MEMORY_REGISTER_REQUEST__INIT;
    m.name = (char *)name;
    m.key = s->name;
    m.byte_size = s->size;
    return grpc_call(ctx, GRPC_SERVICE "SystemSharedMemoryRegister", &m.base,
                     "a system shared memory registration", err);
  }
  char path[160], b64[100];
  snprintf(path, sizeof path, "/v2/%ssharedmemory/region/%s/register",
           cuda ? "cuda" : "system", name);
  base64((const uint8_t *)&h, sizeof h, b64);
  json_t *body =
      cuda ? json_pack("{s:{s:s}, s:i, s:I}", "raw_handle", "b64", b64,
                       "device_id", 0, "byte_size", (json_int_t)s->size)
           : json_pack("{s:s, s:i, s:I}", "key", s->name, "offset", 0,
                       "byte_size", (json_int_t)s->size);
  return http_post(ctx, path, body, "a shared memory registration", err);
}

int gs__perf_shm_make(gs__perf_ctx_t *ctx, size_t k, uint8_t *const *data,
                      const size_t *len, size_t *in_off, size_t *out_off,
                      const char **name, gs_error_t *err) {
  size_t out_size = ctx->opts->output_shm_size ? ctx->opts->output_shm_size
                                               : (size_t)100 << 10;
  shm_t *grown = realloc(ctx->shm, (ctx->n_shm + 1) * sizeof *grown);
  if (!grown)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  ctx->shm = grown;
  shm_t *s = &grown[ctx->n_shm];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "/gs_perf_%d_%zu", (int)getpid(), k);
  for (size_t i = 0; i < ctx->model.n_inputs; i++) {
    in_off[i] = s->size;
    s->size += align64(len[i]);
  }
  for (size_t o = 0; o < ctx->model.n_outputs; o++) {
    out_off[o] = s->size;
    s->size += align64(out_size);
  }
  if (s->size == 0)
    s->size = 64;
  int rc = region_alloc(ctx, s, data, len, in_off, err);
  if (rc == GS_OK || s->map || s->ptr)
    ctx->n_shm++; /* released with the others, registered or not */
  if (rc == GS_OK && (rc = region_register(ctx, s, err)) == GS_OK)
    s->registered = true;
  *name = s->name + 1;
  return rc;
}

static void region_unregister(gs__perf_ctx_t *ctx, const shm_t *s) {
  gs_error_t err;
  const char *name = s->name + 1;
  bool cuda = is_cuda(ctx);
  if (ctx->opts->protocol == GS_PERF_GRPC) {
    Inference__SystemSharedMemoryUnregisterRequest m =
        INFERENCE__SYSTEM_SHARED_MEMORY_UNREGISTER_REQUEST__INIT;
    Inference__CudaSharedMemoryUnregisterRequest c =
        INFERENCE__CUDA_SHARED_MEMORY_UNREGISTER_REQUEST__INIT;
    m.name = c.name = (char *)name;
    grpc_call(ctx,
              cuda ? GRPC_SERVICE "CudaSharedMemoryUnregister"
                   : GRPC_SERVICE "SystemSharedMemoryUnregister",
              cuda ? &c.base : &m.base, "an unregistration", &err);
    return;
  }
  char path[160];
  snprintf(path, sizeof path, "/v2/%ssharedmemory/region/%s/unregister",
           cuda ? "cuda" : "system", name);
  http_post(ctx, path, NULL, "an unregistration", &err);
}

void gs__perf_shm_release(gs__perf_ctx_t *ctx) {
  for (size_t i = 0; i < ctx->n_shm; i++) {
    shm_t *s = &ctx->shm[i];
    if (s->registered)
      region_unregister(ctx, s);
    if (s->map) {
      munmap(s->map, s->size);
      shm_unlink(s->name);
    }
    if (s->ptr && ctx->cuda)
      ctx->cuda->fn.MemFree(s->ptr);
  }
  free(ctx->shm);
  ctx->shm = NULL;
  ctx->n_shm = 0;
  if (ctx->cuda) {
    if (ctx->cuda->ctx)
      ctx->cuda->fn.DevicePrimaryCtxRelease(ctx->cuda->dev);
    gs__cuda_close(&ctx->cuda->cuda);
    free(ctx->cuda);
    ctx->cuda = NULL;
  }
}
