/* An infer request's shared-memory tensors: the shared_memory_region,
 * _byte_size and _offset parameters of its inputs and requested outputs
 * (JSON or gRPC), the regions they name held for the request's life, the
 * inputs pointed at the regions' bytes and the outputs written there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "worker/shm.h"

#define BAD(err, ...) gs_error_set(err, GS_EINVAL, __VA_ARGS__)

/* One tensor's region, as the request names it and, once resolved, held. */
typedef struct shm_ref_s {
  bool set;
  char region[GS__SHM_NAME_MAX], tensor[GS__SHM_NAME_MAX];
  uint64_t offset, byte_size;
  gs__shm_region_t *r; /* held from gs__shm_resolve to the release */
  void *copy;          /* an input's bytes copied to the host */
} shm_ref_t;

struct gs__shm_refs_s {
  shm_ref_t in[GS__INFER_MAX_TENSORS], out[GS__INFER_MAX_TENSORS];
};

static shm_ref_t *ref_slot(gs__infer_request_t *req, bool is_input, size_t k,
                           gs_error_t *err) {
  if (k >= GS__INFER_MAX_TENSORS) {
    BAD(err, "more than %d tensors", GS__INFER_MAX_TENSORS);
    return NULL;
  }
  if (!req->shm && !(req->shm = calloc(1, sizeof *req->shm))) {
    gs_error_set(err, GS_ENOMEM, "out of memory");
    return NULL;
  }
  return is_input ? &req->shm->in[k] : &req->shm->out[k];
}

/* The three parameters, however they were read, into a ref of req. */
static int ref_set(gs__infer_request_t *req, bool is_input, size_t k,
                   const char *tensor, const char *region, bool has_size,
                   uint64_t size, uint64_t offset, bool *used,
                   gs_error_t *err) {
  *used = region != NULL;
  if (!region && !has_size)
    return GS_OK;
  if (!region || !has_size)
    return BAD(err,
               "%s '%s': shared_memory_region and shared_memory_byte_size "
               "must be given together",
               is_input ? "input" : "output", tensor);
  if (!region[0] || strlen(region) >= GS__SHM_NAME_MAX)
    return BAD(err, "%s '%s': shared_memory_region must be 1 to %d bytes",
               is_input ? "input" : "output", tensor, GS__SHM_NAME_MAX - 1);
  shm_ref_t *ref = ref_slot(req, is_input, k, err);
  if (!ref)
    return err->code;
  ref->set = true;
  snprintf(ref->region, sizeof ref->region, "%s", region);
  snprintf(ref->tensor, sizeof ref->tensor, "%s", tensor);
  ref->byte_size = size;
  ref->offset = offset;
  return GS_OK;
}

/* A non-negative JSON integer parameter; absent: *has false. */
static int json_u64(json_t *params, const char *key, const char *tensor,
                    uint64_t *v, bool *has, gs_error_t *err) {
  json_t *j = json_object_get(params, key);
  *has = j != NULL;
  *v = 0;
  if (!j)
    return GS_OK;
  if (!json_is_integer(j) || json_integer_value(j) < 0)
    return BAD(err, "'%s': %s must be a non-negative integer", tensor, key);
  *v = (uint64_t)json_integer_value(j);
  return GS_OK;
}

int gs__shm_ref_json(gs__infer_request_t *req, bool is_input, size_t k,
                     const char *tensor, json_t *params, bool *used,
                     gs_error_t *err) {
  *used = false;
  if (!json_is_object(params))
    return GS_OK;
  json_t *jr = json_object_get(params, "shared_memory_region");
  if (jr && !json_is_string(jr))
    return BAD(err, "'%s': shared_memory_region must be a string", tensor);
  uint64_t size, offset;
  bool has_size, has_offset;
  int rc = json_u64(params, "shared_memory_byte_size", tensor, &size, &has_size,
                    err);
  if (rc == GS_OK)
    rc = json_u64(params, "shared_memory_offset", tensor, &offset, &has_offset,
                  err);
  if (rc != GS_OK)
    return rc;
  return ref_set(req, is_input, k, tensor, json_string_value(jr), has_size,
                 size, offset, used, err);
}

typedef Inference__ModelInferRequest__InferInputTensor__ParametersEntry
    param_entry_t;

/* A gRPC parameter's value as an unsigned integer (int64 or uint64). */
static bool grpc_u64(const Inference__InferParameter *p, uint64_t *v) {
  if (p &&
      p->parameter_choice_case ==
          INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM &&
      p->int64_param >= 0)
    return *v = (uint64_t)p->int64_param, true;
  if (p && p->parameter_choice_case ==
               INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM)
    return *v = p->uint64_param, true;
  return false;
}

/* The gRPC parameters named key among entries (input and output entries
 * share one layout: key, then value). */
static const Inference__InferParameter *grpc_param(void *const *entries,
                                                   size_t n, const char *key) {
  for (size_t i = 0; i < n; i++) {
    const param_entry_t *e = entries[i];
    if (e->key && strcmp(e->key, key) == 0)
      return e->value;
  }
  return NULL;
}

typedef Inference__ModelInferRequest__InferInputTensor in_tensor_t;
typedef Inference__ModelInferRequest__InferRequestedOutputTensor out_tensor_t;

/* entries[i] of an input's or output's parameters, as one type. */
static int ref_grpc(gs__infer_request_t *req, bool is_input, size_t k,
                    const char *tensor, void *const *entries, size_t n,
                    bool *used, gs_error_t *err) {
  const Inference__InferParameter *pr =
      grpc_param(entries, n, "shared_memory_region");
  const Inference__InferParameter *ps =
      grpc_param(entries, n, "shared_memory_byte_size");
  const Inference__InferParameter *po =
      grpc_param(entries, n, "shared_memory_offset");
  uint64_t size = 0, offset = 0;
  *used = false;
  if (pr && pr->parameter_choice_case !=
                INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM)
    return BAD(err, "'%s': shared_memory_region must be a string", tensor);
  if ((ps && !grpc_u64(ps, &size)) || (po && !grpc_u64(po, &offset)))
    return BAD(err,
               "'%s': shared_memory_byte_size and shared_memory_offset must "
               "be non-negative integers",
               tensor);
  return ref_set(req, is_input, k, tensor, pr ? pr->string_param : NULL,
                 ps != NULL, size, offset, used, err);
}

bool gs__shm_grpc_input_bytes(const void *msg, size_t i, size_t *bytes) {
  const Inference__ModelInferRequest *m = msg;
  const in_tensor_t *in = m->inputs[i];
  uint64_t v = 0;
  *bytes = 0;
  if (!grpc_param((void *const *)in->parameters, in->n_parameters,
                  "shared_memory_region"))
    return false;
  if (grpc_u64(grpc_param((void *const *)in->parameters, in->n_parameters,
                          "shared_memory_byte_size"),
               &v) &&
      v <= SIZE_MAX)
    *bytes = (size_t)v;
  return true;
}

int gs__shm_grpc_align_raw(void *msg, gs_error_t *err) {
  Inference__ModelInferRequest *m = msg;
  size_t n_shm = 0, bytes, at = 0;
  for (size_t i = 0; i < m->n_inputs; i++)
    n_shm += gs__shm_grpc_input_bytes(m, i, &bytes);
  if (n_shm == 0 || m->n_raw_input_contents == 0)
    return GS_OK;
  if (m->n_raw_input_contents + n_shm != m->n_inputs)
    return BAD(err,
               "expected %zu raw_input_contents (one per input not in shared "
               "memory), got %zu",
               m->n_inputs - n_shm, m->n_raw_input_contents);
  /* protobuf-c frees the array and each entry's data: the new array holds
   * the same data pointers, the old array alone is freed here. */
  ProtobufCBinaryData *raw = calloc(m->n_inputs, sizeof *raw);
  if (!raw)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; i < m->n_inputs; i++)
    if (!gs__shm_grpc_input_bytes(m, i, &bytes))
      raw[i] = m->raw_input_contents[at++];
  free(m->raw_input_contents);
  m->raw_input_contents = raw;
  m->n_raw_input_contents = m->n_inputs;
  return GS_OK;
}

static int find_output(const gs__model_io_t *io, const char *name) {
  for (size_t k = 0; k < io->n_outputs; k++)
    if (io->outputs[k].name && strcmp(io->outputs[k].name, name) == 0)
      return (int)k;
  return -1;
}

int gs__shm_grpc_refs(gs__infer_request_t *req, const void *msg,
                      const gs__model_io_t *io, gs_error_t *err) {
  const Inference__ModelInferRequest *m = msg;
  bool used;
  int rc = GS_OK;
  for (size_t i = 0; rc == GS_OK && i < m->n_inputs; i++) {
    rc = ref_grpc(req, true, i, m->inputs[i]->name,
                  (void *const *)m->inputs[i]->parameters,
                  m->inputs[i]->n_parameters, &used, err);
    if (rc == GS_OK && used && m->inputs[i]->contents)
      rc = BAD(err,
               "input '%s' names shared memory region '%s' and also carries "
               "contents: give one of them",
               m->inputs[i]->name, req->shm->in[i].region);
  }
  for (size_t i = 0; rc == GS_OK && i < m->n_outputs; i++) {
    const out_tensor_t *o = m->outputs[i];
    int k = find_output(io, o->name);
    if (k >= 0)
      rc = ref_grpc(req, false, (size_t)k, o->name,
                    (void *const *)o->parameters, o->n_parameters, &used, err);
  }
  return rc == GS_OK ? 0 : gs_error_http_status(rc);
}

/* A BYTES input's elements, read from its region, checked as an inline
 * one's are when decoded (its shape's count of length-prefixed strings). */
static int check_bytes_input(const gs_tensor_t *t, gs_error_t *err) {
  if (gs_dtype_size(t->dtype) != 0)
    return GS_OK;
  size_t count = 1;
  for (unsigned d = 0; d < t->rank; d++)
    count *= (size_t)t->shape[d];
  return gs__bytes_check(t->data, t->bytes, count, "input", t->name, err);
}

static void count_cuda(gs__shm_region_t *r, bool output, bool on_device) {
  __atomic_fetch_add(&r->reg->cuda_tensors[output][on_device], 1,
                     __ATOMIC_RELAXED);
}

gs__shm_path_t gs__shm_input_path(gs__shm_kind_t kind, bool aligned,
                                  int64_t region_device, int session_device,
                                  bool host_only) {
  if (kind == GS__SHM_SYSTEM)
    return aligned ? GS__SHM_IN_PLACE : GS__SHM_HOST_COPY;
  return session_device >= 0 && region_device == session_device && !host_only
             ? GS__SHM_ON_DEVICE
             : GS__SHM_HOST_COPY;
}

/* Whether the model reads its input called name on the host. */
static bool host_only(const gs_model_t *model, const char *name) {
  size_t n = model ? gs_model_input_count(model) : 0;
  for (size_t i = 0; name && i < n; i++)
    if (strcmp(gs_model_input(model, i)->name, name) == 0)
      return gs_model_input_host_only(model, i);
  return false;
}

/* Points input k at its region's bytes, on gs__shm_input_path's path. */
static int resolve_input(gs__infer_request_t *req, size_t k, shm_ref_t *ref,
                         int device, const gs_model_t *model, gs_error_t *err) {
  gs_tensor_t *t = &req->inputs[k];
  if (gs_dtype_size(t->dtype) == 0) /* BYTES: its size is the region's say */
    t->bytes = (size_t)ref->byte_size;
  if (ref->byte_size != t->bytes)
    return BAD(err,
               "input '%s': shared_memory_byte_size is %llu bytes, its shape "
               "and datatype need %zu",
               t->name, (unsigned long long)ref->byte_size, t->bytes);
  int rc = gs__shm_check_bounds(ref->region, ref->r->byte_size, ref->offset,
                                ref->byte_size, t->name, err);
  if (rc != GS_OK)
    return rc;
  bool aligned =
      ref->r->host && (uintptr_t)(ref->r->host + ref->offset) % 16 == 0;
  gs__shm_path_t path = gs__shm_input_path(
      ref->r->kind, aligned, ref->r->device_id, device,
      gs_dtype_size(t->dtype) == 0 || host_only(model, t->name));
  if (path == GS__SHM_IN_PLACE) {
    t->data = ref->r->host + ref->offset; /* zero copy */
    return check_bytes_input(t, err);
  }
  if (path == GS__SHM_ON_DEVICE) {
    t->data = (void *)(uintptr_t)(ref->r->dptr + ref->offset);
    t->mem = GS_MEM_DEVICE; /* the engine copies it on the GPU */
    return GS_OK;
  }
  if (!(ref->copy = malloc(t->bytes + 1)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  t->data = ref->copy;
  if (ref->r->kind == GS__SHM_CUDA) {
    rc = gs__shm_cuda_read(ref->r, ref->offset, ref->copy, t->bytes, err);
    count_cuda(ref->r, false, false);
  } else if (t->bytes) /* kernels read whole elements: an aligned copy */
    memcpy(ref->copy, ref->r->host + ref->offset, t->bytes);
  return rc == GS_OK ? check_bytes_input(t, err) : rc;
}

int gs__shm_resolve(gs__infer_request_t *req, gs__shm_registry_t *reg,
                    int device, const gs_model_t *model, gs_error_t *err) {
  if (!req->shm)
    return GS_OK;
  int rc = GS_OK;
  for (size_t k = 0; rc == GS_OK && k < 2 * GS__INFER_MAX_TENSORS; k++) {
    bool in = k < GS__INFER_MAX_TENSORS;
    size_t i = in ? k : k - GS__INFER_MAX_TENSORS;
    shm_ref_t *ref = in ? &req->shm->in[i] : &req->shm->out[i];
    if (!ref->set || ref->r)
      continue;
    if (!(ref->r = gs__shm_acquire(reg, ref->region, err)))
      rc = err->code;
    else if (in && i < req->n_inputs)
      rc = resolve_input(req, i, ref, device, model, err);
    else if (!in)
      rc = gs__shm_check_bounds(ref->region, ref->r->byte_size, ref->offset,
                                ref->byte_size, ref->tensor, err);
  }
  return rc;
}

int gs__shm_to_host(gs__infer_request_t *req, gs_error_t *err) {
  for (size_t i = 0; req->shm && i < req->n_inputs; i++) {
    shm_ref_t *ref = &req->shm->in[i];
    gs_tensor_t *t = &req->inputs[i];
    if (t->mem != GS_MEM_DEVICE || !ref->r)
      continue;
    if (!(ref->copy = malloc(t->bytes + 1)))
      return gs_error_set(err, GS_ENOMEM, "out of memory");
    int rc = gs__shm_cuda_read(ref->r, ref->offset, ref->copy, t->bytes, err);
    if (rc != GS_OK)
      return rc;
    count_cuda(ref->r, false, false);
    t->data = ref->copy;
    t->mem = GS_MEM_HOST;
  }
  return GS_OK;
}

/* Counts the inputs a run took from CUDA regions on the device. */
static void count_device_inputs(const gs__infer_request_t *req) {
  for (size_t i = 0; req->shm && i < req->n_inputs; i++)
    if (req->inputs[i].mem == GS_MEM_DEVICE && req->shm->in[i].r)
      count_cuda(req->shm->in[i].r, false, true);
}

int gs__shm_bind_outputs(const gs__infer_request_t *req, gs_session_t *s,
                         int device, gs_error_t *err) {
  count_device_inputs(req);
  for (size_t k = 0; req->shm && device >= 0 && k < GS__INFER_MAX_TENSORS;
       k++) {
    const shm_ref_t *ref = &req->shm->out[k];
    if (!ref->set || !ref->r || ref->r->kind != GS__SHM_CUDA ||
        ref->r->device_id != device || req->class_count[k])
      continue; /* a classification is computed on the host */
    int rc = gs_session_bind_output(
        s, k, (void *)(uintptr_t)(ref->r->dptr + ref->offset),
        (size_t)ref->byte_size, err);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

bool gs__shm_output_wanted(const gs__infer_request_t *req, size_t k) {
  return req->shm && k < GS__INFER_MAX_TENSORS && req->shm->out[k].set;
}

int gs__shm_output_write(const gs__infer_request_t *req, size_t k,
                         const gs_tensor_t *t, gs_error_t *err) {
  const shm_ref_t *ref = &req->shm->out[k];
  if (!ref->r)
    return gs_error_set(err, GS_ENOTFOUND,
                        "Unable to find shared memory region: '%s'",
                        ref->region);
  if (t->bytes > ref->byte_size)
    return BAD(err,
               "shared memory size specified with the request for output "
               "'%s' (%llu bytes) should be at least %zu bytes to hold the "
               "results",
               t->name, (unsigned long long)ref->byte_size, t->bytes);
  if (t->mem == GS_MEM_DEVICE) { /* the run wrote it into the region */
    if (ref->r->kind != GS__SHM_CUDA ||
        (uintptr_t)t->data != ref->r->dptr + ref->offset)
      return gs_error_set(err, GS_EINVAL,
                          "output '%s' is in device memory outside its "
                          "region '%s'",
                          t->name, ref->region);
    count_cuda(ref->r, true, true);
    return GS_OK;
  }
  if (ref->r->kind == GS__SHM_CUDA) {
    count_cuda(ref->r, true, false);
    return gs__shm_cuda_write(ref->r, ref->offset, t->data, t->bytes, err);
  }
  if (t->bytes)
    memcpy(ref->r->host + ref->offset, t->data, t->bytes);
  return GS_OK;
}

int gs__shm_input_json(gs__infer_request_t *req, gs_tensor_t *t, json_t *jin,
                       size_t count, bool *used, gs_error_t *err) {
  json_t *params = json_object_get(jin, "parameters");
  int rc =
      gs__shm_ref_json(req, true, req->n_inputs, t->name, params, used, err);
  if (rc != GS_OK || !*used)
    return rc;
  if (json_object_get(jin, "data") ||
      json_object_get(params, "binary_data_size"))
    return BAD(err,
               "input '%s' names shared memory region '%s' and also carries "
               "data: give one of them",
               t->name, req->shm->in[req->n_inputs].region);
  t->data = NULL; /* gs__shm_resolve points it at the region */
  t->bytes = count * gs_dtype_size(t->dtype);
  return GS_OK;
}

void gs__shm_request_release(gs__infer_request_t *req) {
  if (!req->shm)
    return;
  for (size_t i = 0; i < GS__INFER_MAX_TENSORS; i++) {
    gs__shm_drop(req->shm->in[i].r);
    gs__shm_drop(req->shm->out[i].r);
    free(req->shm->in[i].copy);
  }
  free(req->shm);
  req->shm = NULL;
}
