/* The shared-memory extensions' calls: HTTP's /v2/systemsharedmemory and
 * /v2/cudasharedmemory (status, register, unregister, per region or for
 * all) and gRPC's SystemSharedMemory* and CudaSharedMemory* methods, both
 * onto the registry the worker's repository holds (made at first use). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"
#include "worker/shm.h"

#define BAD(err, ...) gs_error_set(err, GS_EINVAL, __VA_ARGS__)

static gs__shm_registry_t *registry(gs__repo_t *repo, gs_error_t *err) {
  if (!repo->shm && !(repo->shm = gs__shm_registry_create()))
    gs_error_set(err, GS_ENOMEM, "out of memory");
  return repo->shm;
}

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int gs__shm_base64_decode(const char *text, size_t len, uint8_t *out,
                          size_t cap, size_t *n, gs_error_t *err) {
  *n = 0;
  if (len % 4 != 0)
    return BAD(err, "base64 text of %zu characters is not a multiple of 4",
               len);
  for (size_t i = 0; i < len; i += 4) {
    int v[4], pad = 0;
    for (int j = 0; j < 4; j++) {
      bool last = i + 4 == len;
      v[j] = text[i + j] == '=' && last && j >= 2 ? 0 : b64_value(text[i + j]);
      pad += text[i + j] == '=' && last && j >= 2;
      if (v[j] < 0 || (pad && text[i + j] != '='))
        return BAD(err, "bad base64 character at %zu", i + (size_t)j);
    }
    uint32_t w = (uint32_t)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    uint8_t b[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
    if (*n + 3 - (size_t)pad > cap)
      return gs_error_set(err, GS_ELIMIT, "base64 data longer than %zu bytes",
                          cap);
    memcpy(out + *n, b, 3 - (size_t)pad);
    *n += 3 - (size_t)pad;
  }
  return GS_OK;
}

/* A non-negative integer member of root; absent is an error when needed. */
static int member_u64(json_t *root, const char *key, bool needed, uint64_t *v,
                      gs_error_t *err) {
  json_t *j = json_object_get(root, key);
  *v = 0;
  if (!j && !needed)
    return GS_OK;
  if (!json_is_integer(j) || json_integer_value(j) < 0)
    return BAD(err,
               "the register request needs \"%s\": a non-negative "
               "integer",
               key);
  *v = (uint64_t)json_integer_value(j);
  return GS_OK;
}

static int parse_cuda(json_t *root, gs__shm_register_req_t *out,
                      gs_error_t *err) {
  json_t *b64 = json_object_get(json_object_get(root, "raw_handle"), "b64");
  uint64_t device;
  int rc = member_u64(root, "device_id", true, &device, err);
  if (rc != GS_OK)
    return rc;
  out->device_id = device > INT32_MAX ? INT32_MAX : (int64_t)device;
  if (!json_is_string(b64))
    return BAD(err, "the register request needs \"raw_handle\": {\"b64\": "
                    "base64 of a cudaIpcMemHandle_t}");
  return gs__shm_base64_decode(json_string_value(b64), json_string_length(b64),
                               out->handle, sizeof out->handle,
                               &out->handle_len, err);
}

int gs__shm_parse_register(gs__shm_kind_t kind, const char *body, size_t len,
                           gs__shm_register_req_t *out, gs_error_t *err) {
  memset(out, 0, sizeof *out);
  json_error_t jerr;
  json_t *root =
      json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
  int rc = json_is_object(root)
               ? GS_OK
               : BAD(err, "failed to parse the register request: %s",
                     root ? "not an object" : jerr.text);
  if (rc == GS_OK)
    rc = member_u64(root, "byte_size", true, &out->byte_size, err);
  if (rc == GS_OK && kind == GS__SHM_CUDA)
    rc = parse_cuda(root, out, err);
  else if (rc == GS_OK) {
    const char *key = json_string_value(json_object_get(root, "key"));
    if (!key || !key[0] || strlen(key) >= sizeof out->key)
      rc = BAD(err,
               "the register request needs \"key\": the name of a "
               "shared memory object, 1 to %zu bytes",
               sizeof out->key - 1);
    else {
      snprintf(out->key, sizeof out->key, "%s", key);
      rc = member_u64(root, "offset", false, &out->offset, err);
    }
  }
  json_decref(root);
  return rc;
}

static int do_register(gs__shm_registry_t *reg, gs__shm_kind_t kind,
                       const char *name, const gs__shm_register_req_t *r,
                       gs_error_t *err) {
  if (kind == GS__SHM_CUDA)
    return gs__shm_register_cuda(reg, name, r->handle, r->handle_len,
                                 r->device_id, r->byte_size, err);
  return gs__shm_register_system(reg, name, r->key, r->offset, r->byte_size,
                                 err);
}

/* [region/NAME/]ACTION after /v2/{system,cuda}sharedmemory. */
void gs__shm_route(gs__repo_t *repo, const gs__http_request_t *req, char **seg,
                   unsigned n, gs__http_response_t *resp) {
  gs__shm_kind_t kind =
      strcmp(seg[1], "cudasharedmemory") == 0 ? GS__SHM_CUDA : GS__SHM_SYSTEM;
  const char *name = n == 5 && strcmp(seg[2], "region") == 0 ? seg[3] : NULL;
  const char *action = n == 3 || name ? seg[n - 1] : "";
  bool get = req->method == HTTP_GET, post = req->method == HTTP_POST;
  gs_error_t err = {0};
  int rc = GS_OK;
  if (strcmp(action, "status") && strcmp(action, "register") &&
      strcmp(action, "unregister")) {
    gs__http_response_error(resp, 404, "Not Found");
    return;
  }
  bool status = strcmp(action, "status") == 0;
  if ((status && !get) || (!status && !post)) {
    gs__http_response_error(resp, 400, status ? "use GET" : "use POST");
    return;
  }
  gs__shm_registry_t *reg = registry(repo, &err);
  if (!reg)
    rc = err.code;
  else if (status) {
    json_t *a = gs__shm_status_json(reg, kind, name, &err);
    if (a) {
      gs__http_response_json(resp, 200, a);
      return;
    }
    rc = err.code;
  } else if (strcmp(action, "unregister") == 0) {
    rc = gs__shm_unregister(reg, kind, name, &err);
  } else if (!name) {
    rc = BAD(&err, "register needs a region: /v2/%s/region/NAME/register",
             seg[1]);
  } else {
    gs__shm_register_req_t r;
    rc = gs__shm_parse_register(kind, req->body, req->body_len, &r, &err);
    if (rc == GS_OK)
      rc = do_register(reg, kind, name, &r, &err);
  }
  if (rc != GS_OK) { /* Triton answers a name taken 400 (gRPC: 6) */
    gs__http_response_error(
        resp, rc == GS_EEXISTS ? 400 : gs_error_http_status(rc), err.msg);
    return;
  }
  gs__http_response_release(resp);
  resp->status = 200;
}

/* ---- gRPC ------------------------------------------------------------ */

static void reply_pack(gs__grpc_reply_t *reply, const ProtobufCMessage *m) {
  size_t len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf =
      len <= GS__GRPC_MAX_MESSAGE ? malloc(len + GS__GRPC_PREFIX) : NULL;
  if (!buf) {
    gs__grpc_reply_error(reply, GS__GRPC_RESOURCE_EXHAUSTED,
                         "shared memory status larger than the limit");
    return;
  }
  gs__grpc_frame_prefix(buf, len);
  protobuf_c_message_pack(m, buf + GS__GRPC_PREFIX);
  gs__grpc_reply_release(reply);
  reply->body = buf;
  reply->body_len = len + GS__GRPC_PREFIX;
}

typedef Inference__SystemSharedMemoryStatusResponse__RegionStatus sys_status_t;
typedef Inference__SystemSharedMemoryStatusResponse__RegionsEntry sys_entry_t;
typedef Inference__CudaSharedMemoryStatusResponse__RegionStatus cuda_status_t;
typedef Inference__CudaSharedMemoryStatusResponse__RegionsEntry cuda_entry_t;

/* One status entry per element of a (Triton's map, keyed by name). */
typedef struct status_slot_s {
  sys_status_t sys;
  sys_entry_t sys_e;
  cuda_status_t cuda;
  cuda_entry_t cuda_e;
  void *p;
} status_slot_t;

static void status_reply(gs__shm_kind_t kind, json_t *a,
                         gs__grpc_reply_t *reply) {
  size_t n = json_array_size(a);
  status_slot_t *s = calloc(n + 1, sizeof *s);
  if (!s) {
    gs__grpc_reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
    return;
  }
  Inference__SystemSharedMemoryStatusResponse sr =
      INFERENCE__SYSTEM_SHARED_MEMORY_STATUS_RESPONSE__INIT;
  Inference__CudaSharedMemoryStatusResponse cr =
      INFERENCE__CUDA_SHARED_MEMORY_STATUS_RESPONSE__INIT;
  void **p = calloc(n + 1, sizeof *p);
  for (size_t i = 0; p && i < n; i++) {
    json_t *j = json_array_get(a, i);
    char *name = (char *)json_string_value(json_object_get(j, "name"));
    uint64_t size =
        (uint64_t)json_integer_value(json_object_get(j, "byte_size"));
    if (kind == GS__SHM_SYSTEM) {
      inference__system_shared_memory_status_response__region_status__init(
          &s[i].sys);
      inference__system_shared_memory_status_response__regions_entry__init(
          &s[i].sys_e);
      s[i].sys.name = name;
      s[i].sys.key = (char *)json_string_value(json_object_get(j, "key"));
      s[i].sys.offset =
          (uint64_t)json_integer_value(json_object_get(j, "offset"));
      s[i].sys.byte_size = size;
      s[i].sys_e.key = name;
      s[i].sys_e.value = &s[i].sys;
      p[i] = &s[i].sys_e;
    } else {
      inference__cuda_shared_memory_status_response__region_status__init(
          &s[i].cuda);
      inference__cuda_shared_memory_status_response__regions_entry__init(
          &s[i].cuda_e);
      s[i].cuda.name = name;
      s[i].cuda.device_id =
          (uint64_t)json_integer_value(json_object_get(j, "device_id"));
      s[i].cuda.byte_size = size;
      s[i].cuda_e.key = name;
      s[i].cuda_e.value = &s[i].cuda;
      p[i] = &s[i].cuda_e;
    }
  }
  if (!p)
    gs__grpc_reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
  else if (kind == GS__SHM_SYSTEM) {
    sr.n_regions = n;
    sr.regions = (sys_entry_t **)p;
    reply_pack(reply, &sr.base);
  } else {
    cr.n_regions = n;
    cr.regions = (cuda_entry_t **)p;
    reply_pack(reply, &cr.base);
  }
  free(p);
  free(s);
}

/* The request messages' name field (1) is common to all six requests. */
static int grpc_shm(gs__shm_registry_t *reg, gs__shm_kind_t kind,
                    const char *op, const uint8_t *msg, size_t len,
                    gs__grpc_reply_t *reply, gs_error_t *err) {
  Inference__SystemSharedMemoryStatusResponse none =
      INFERENCE__SYSTEM_SHARED_MEMORY_STATUS_RESPONSE__INIT; /* empty */
  int rc = GS_OK;
  if (strcmp(op, "Register") == 0 && kind == GS__SHM_SYSTEM) {
    Inference__SystemSharedMemoryRegisterRequest *m =
        inference__system_shared_memory_register_request__unpack(NULL, len,
                                                                 msg);
    rc = !m ? BAD(err, "malformed SystemSharedMemoryRegisterRequest")
            : gs__shm_register_system(reg, m->name, m->key, m->offset,
                                      m->byte_size, err);
    inference__system_shared_memory_register_request__free_unpacked(m, NULL);
  } else if (strcmp(op, "Register") == 0) {
    Inference__CudaSharedMemoryRegisterRequest *m =
        inference__cuda_shared_memory_register_request__unpack(NULL, len, msg);
    rc = !m ? BAD(err, "malformed CudaSharedMemoryRegisterRequest")
            : gs__shm_register_cuda(reg, m->name, m->raw_handle.data,
                                    m->raw_handle.len, m->device_id,
                                    m->byte_size, err);
    inference__cuda_shared_memory_register_request__free_unpacked(m, NULL);
  } else {
    Inference__SystemSharedMemoryStatusRequest *m =
        inference__system_shared_memory_status_request__unpack(NULL, len, msg);
    const char *name = m && m->name[0] ? m->name : NULL;
    json_t *a = NULL;
    if (!m)
      rc = BAD(err, "malformed %sSharedMemory%sRequest",
               kind == GS__SHM_CUDA ? "Cuda" : "System", op);
    else if (strcmp(op, "Unregister") == 0)
      rc = gs__shm_unregister(reg, kind, name, err);
    else if (!(a = gs__shm_status_json(reg, kind, name, err)))
      rc = err->code;
    if (a)
      status_reply(kind, a, reply);
    json_decref(a);
    inference__system_shared_memory_status_request__free_unpacked(m, NULL);
    if (a)
      return GS_OK;
  }
  if (rc == GS_OK) /* register's and unregister's answers are empty */
    reply_pack(reply, &none.base);
  return rc;
}

bool gs__shm_grpc_call(gs__repo_t *repo, const char *method, const uint8_t *msg,
                       size_t len, gs__grpc_reply_t *reply) {
  gs__shm_kind_t kind;
  const char *op;
  if (strncmp(method, "SystemSharedMemory", 18) == 0)
    kind = GS__SHM_SYSTEM, op = method + 18;
  else if (strncmp(method, "CudaSharedMemory", 16) == 0)
    kind = GS__SHM_CUDA, op = method + 16;
  else
    return false;
  if (strcmp(op, "Status") && strcmp(op, "Register") &&
      strcmp(op, "Unregister"))
    return false;
  gs_error_t err = {0};
  gs__shm_registry_t *reg = registry(repo, &err);
  int rc = reg ? grpc_shm(reg, kind, op, msg, len, reply, &err) : err.code;
  if (rc != GS_OK)
    gs__grpc_reply_error(reply, gs_error_grpc_status(rc), err.msg);
  return true;
}
