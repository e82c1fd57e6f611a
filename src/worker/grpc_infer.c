/* ModelInfer: the layer routes the call here; its message is read on the
 * loop, the model it names found and a job submitted as HTTP's are. The
 * message decodes into the infer request that HTTP's bodies decode into
 * (gs__infer_decode_tensors checks both alike), and the outputs encode
 * straight into a ModelInferResponse; the tensors never pass through JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "net/grpc_server.h"
#include "worker/grpc_int.h"
#include "worker/shm.h"

#define BAD(err, ...) gs_error_set(err, GS_EINVAL, __VA_ARGS__)
#define MAX_TENSOR_DATA (2 * (size_t)GS__GRPC_MAX_MESSAGE)

/* Narrows 32-bit contents to size-byte elements in lo..hi. */
static bool narrow_int32(const int32_t *src, size_t n, int32_t lo, int32_t hi,
                         size_t size, uint8_t *dst) {
  for (size_t i = 0; i < n; i++) {
    if (src[i] < lo || src[i] > hi)
      return false;
    int8_t i8 = (int8_t)src[i];
    int16_t i16 = (int16_t)src[i];
    if (dst)
      memcpy(dst + i * size,
             size == 1   ? (void *)&i8
             : size == 2 ? (void *)&i16
                         : (const void *)&src[i],
             size);
  }
  return true;
}

static bool narrow_uint32(const uint32_t *src, size_t n, uint32_t hi,
                          size_t size, uint8_t *dst) {
  for (size_t i = 0; i < n; i++) {
    if (src[i] > hi)
      return false;
    uint8_t u8 = (uint8_t)src[i];
    uint16_t u16 = (uint16_t)src[i];
    if (dst)
      memcpy(dst + i * size,
             size == 1   ? (void *)&u8
             : size == 2 ? (void *)&u16
                         : (const void *)&src[i],
             size);
  }
  return true;
}

static bool copy_same(const void *src, size_t n, size_t size, uint8_t *dst) {
  if (dst && n)
    memcpy(dst, src, n * size);
  return true;
}

/* The contents' values as dtype elements at dst (NULL: count only); false
 * when the contents are of another type or a value does not fit. */
static bool contents_bytes(const Inference__InferTensorContents *c,
                           gs_dtype_t dt, uint8_t *dst, size_t *count) {
  switch (dt) {
  case GS_DTYPE_BOOL:
    *count = c->n_bool_contents;
    for (size_t i = 0; dst && i < c->n_bool_contents; i++)
      dst[i] = c->bool_contents[i] ? 1 : 0;
    return true;
  case GS_DTYPE_INT8:
    *count = c->n_int_contents;
    return narrow_int32(c->int_contents, *count, INT8_MIN, INT8_MAX, 1, dst);
  case GS_DTYPE_INT16:
    *count = c->n_int_contents;
    return narrow_int32(c->int_contents, *count, INT16_MIN, INT16_MAX, 2, dst);
  case GS_DTYPE_INT32:
    *count = c->n_int_contents;
    return copy_same(c->int_contents, *count, 4, dst);
  case GS_DTYPE_UINT8:
    *count = c->n_uint_contents;
    return narrow_uint32(c->uint_contents, *count, UINT8_MAX, 1, dst);
  case GS_DTYPE_UINT16:
    *count = c->n_uint_contents;
    return narrow_uint32(c->uint_contents, *count, UINT16_MAX, 2, dst);
  case GS_DTYPE_UINT32:
    *count = c->n_uint_contents;
    return copy_same(c->uint_contents, *count, 4, dst);
  case GS_DTYPE_INT64:
    *count = c->n_int64_contents;
    return copy_same(c->int64_contents, *count, 8, dst);
  case GS_DTYPE_UINT64:
    *count = c->n_uint64_contents;
    return copy_same(c->uint64_contents, *count, 8, dst);
  case GS_DTYPE_FP32:
    *count = c->n_fp32_contents;
    return copy_same(c->fp32_contents, *count, 4, dst);
  case GS_DTYPE_FP64:
    *count = c->n_fp64_contents;
    return copy_same(c->fp64_contents, *count, 8, dst);
  default:
    return false; /* FP16 travels in raw_input_contents only */
  }
}

/* Element count of an input's shape, or false when it overflows. */
static bool shape_count(const int64_t *shape, size_t rank, size_t *count) {
  size_t n = 1;
  for (size_t d = 0; d < rank; d++) {
    if (shape[d] < 0)
      return false;
    if (shape[d] && n > MAX_TENSOR_DATA / (size_t)shape[d])
      return false;
    n *= (size_t)shape[d];
  }
  *count = n;
  return true;
}

/* bytes_contents as a BYTES tensor's data (each element a 4-byte
 * little-endian length, then its bytes) in *owned. */
static int
bytes_contents(const Inference__ModelInferRequest__InferInputTensor *in,
               const uint8_t **data, size_t *bytes, uint8_t **owned,
               gs_error_t *err) {
  const Inference__InferTensorContents *c = in->contents;
  size_t total = 0;
  for (size_t i = 0; i < c->n_bytes_contents; i++) {
    if (c->bytes_contents[i].len > UINT32_MAX ||
        c->bytes_contents[i].len + 4 > MAX_TENSOR_DATA - total)
      return gs_error_set(err, GS_ELIMIT, "input '%s' is too large", in->name);
    total += 4 + c->bytes_contents[i].len;
  }
  if (!(*owned = malloc(total + 1)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  size_t at = 0;
  for (size_t i = 0; i < c->n_bytes_contents; i++) {
    uint32_t len = (uint32_t)c->bytes_contents[i].len; /* little-endian */
    memcpy(*owned + at, &len, 4);
    if (len)
      memcpy(*owned + at + 4, c->bytes_contents[i].data, len);
    at += 4 + len;
  }
  *data = *owned;
  *bytes = total;
  return GS_OK;
}

/* One input's data: raw bytes (the request's) or its contents converted
 * into *owned. */
static int input_data(const Inference__ModelInferRequest *m, size_t i,
                      const uint8_t **data, size_t *bytes, uint8_t **owned,
                      gs_error_t *err) {
  const Inference__ModelInferRequest__InferInputTensor *in = m->inputs[i];
  gs_dtype_t dt = gs_dtype_from_name(in->datatype);
  size_t es = gs_dtype_size(dt), count = 0, want;
  if (m->n_raw_input_contents) {
    if (in->contents)
      return BAD(err, "input '%s' has both contents and raw_input_contents",
                 in->name);
    *data = m->raw_input_contents[i].data;
    *bytes = m->raw_input_contents[i].len;
  } else if (in->contents && dt == GS_DTYPE_BYTES) {
    int rc = bytes_contents(in, data, bytes, owned, err);
    if (rc != GS_OK)
      return rc;
  } else if (in->contents && dt != GS_DTYPE_INVALID) {
    if (!contents_bytes(in->contents, dt, NULL, &count))
      return BAD(err, "input '%s': contents do not hold %s values", in->name,
                 in->datatype);
    if (count > MAX_TENSOR_DATA / es)
      return gs_error_set(err, GS_ELIMIT, "input '%s' is too large", in->name);
    if (!(*owned = malloc(count * es + 1)))
      return gs_error_set(err, GS_ENOMEM, "out of memory");
    contents_bytes(in->contents, dt, *owned, &count);
    *data = *owned;
    *bytes = count * es;
  } else {
    *data = NULL;
    *bytes = 0;
  }
  if (dt == GS_DTYPE_INVALID)
    return GS_OK; /* the router names the datatype in its error */
  if (dt == GS_DTYPE_BYTES && !shape_count(in->shape, in->n_shape, &want))
    return BAD(err, "input '%s': its shape is too large", in->name);
  if (dt == GS_DTYPE_BYTES && in->contents &&
      in->contents->n_bytes_contents != want)
    return BAD(err,
               "input '%s': %zu elements in bytes_contents, but its shape "
               "needs %zu",
               in->name, in->contents->n_bytes_contents, want);
  if (dt == GS_DTYPE_BYTES) /* elements carry their lengths */
    return gs__bytes_check(*data, *bytes, want, "input", in->name, err);
  if (!shape_count(in->shape, in->n_shape, &want) || *bytes != want * es)
    return BAD(err,
               "input '%s': %zu bytes of data, but shape and datatype %s "
               "need %zu",
               in->name, *bytes, in->datatype,
               shape_count(in->shape, in->n_shape, &want) ? want * es : 0);
  return GS_OK;
}

void gs__grpc_infer_release(gs__grpc_infer_t *gi) {
  for (size_t i = 0; i < GS__INFER_MAX_TENSORS; i++)
    free(gi->owned[i]);
  if (gi->m)
    inference__model_infer_request__free_unpacked(gi->m, NULL);
  memset(gi, 0, sizeof *gi);
}

void gs__grpc_infer_destroy(gs__grpc_infer_t *gi) {
  if (!gi)
    return;
  gs__grpc_infer_release(gi);
  free(gi);
}

/* Names the router may see in a path: what the repository accepts. */
bool gs__grpc_name_safe(const char *s, bool may_be_empty) {
  size_t n = strlen(s);
  return (n > 0 || may_be_empty) && n < 128 && s[0] != '.' &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789_.-") == n;
}

/* Triton's NOT_FOUND for a name or version the repository cannot hold. */
bool gs__grpc_model_name_ok(const char *name, const char *version,
                            gs__grpc_reply_t *reply) {
  if (gs__grpc_name_safe(name, false) && gs__grpc_name_safe(version, true))
    return true;
  char msg[256];
  snprintf(msg, sizeof msg, "Request for unknown model: '%.128s' is not found",
           name);
  gs__grpc_reply_error(reply, GS__GRPC_NOT_FOUND, msg);
  return false;
}

/* /v2/models/NAME[/versions/VERSION]SUFFIX, or false (with the reply set)
 * for a name the repository cannot hold. */
bool gs__grpc_model_url(char *url, size_t size, const char *name,
                        const char *version, const char *suffix,
                        gs__grpc_reply_t *reply) {
  if (!gs__grpc_model_name_ok(name, version, reply))
    return false;
  if (version[0])
    snprintf(url, size, "/v2/models/%s/versions/%s%s", name, version, suffix);
  else
    snprintf(url, size, "/v2/models/%s%s", name, suffix);
  return true;
}

int gs__grpc_infer_read(gs__grpc_infer_t *gi, const uint8_t *msg, size_t len,
                        gs_error_t *err) {
  memset(gi, 0, sizeof *gi);
  Inference__ModelInferRequest *m = gi->m =
      inference__model_infer_request__unpack(NULL, len, msg);
  if (!m)
    return BAD(err, "malformed ModelInferRequest"), GS__GRPC_INVALID_ARGUMENT;
  gs__grpc_reply_t r = {0};
  if (!gs__grpc_model_name_ok(m->model_name, m->model_version, &r))
    return gs_error_set(err, GS_ENOTFOUND, "%s", r.message), GS__GRPC_NOT_FOUND;
  if (m->n_inputs > GS__INFER_MAX_TENSORS)
    return BAD(err, "more than %d inputs", GS__INFER_MAX_TENSORS),
           GS__GRPC_INVALID_ARGUMENT;
  if (gs__shm_grpc_align_raw(m, err) != GS_OK) /* shm_infer.c */
    return GS__GRPC_INVALID_ARGUMENT;
  if (m->n_raw_input_contents && m->n_raw_input_contents != m->n_inputs)
    return BAD(err, "expected %zu raw_input_contents (one per input), got %zu",
               m->n_inputs, m->n_raw_input_contents),
           GS__GRPC_INVALID_ARGUMENT;
  size_t total = 0;
  for (size_t i = 0; i < m->n_inputs; i++) {
    if (gs__shm_grpc_input_bytes(m, i, &gi->bytes[i]))
      continue; /* its data is in shared memory (gs__shm_resolve) */
    int rc = input_data(m, i, &gi->data[i], &gi->bytes[i], &gi->owned[i], err);
    if (rc == GS_OK && gi->bytes[i] > MAX_TENSOR_DATA - total)
      rc = gs_error_set(err, GS_ELIMIT, "the inputs are larger than %zu bytes",
                        MAX_TENSOR_DATA);
    if (rc != GS_OK)
      return gs_error_grpc_status(rc);
    total += gi->bytes[i];
  }
  return GS__GRPC_OK;
}

/* The output's "classification" parameter (Triton's: an int64_param), 0
 * when absent; false when it is not a count. */
static bool
class_count(const Inference__ModelInferRequest__InferRequestedOutputTensor *o,
            uint32_t *count) {
  *count = 0;
  for (size_t i = 0; i < o->n_parameters; i++) {
    const Inference__InferParameter *v = o->parameters[i]->value;
    if (strcmp(o->parameters[i]->key, "classification"))
      continue;
    if (!v ||
        v->parameter_choice_case !=
            INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM ||
        v->int64_param < 0 || v->int64_param > UINT32_MAX)
      return false;
    *count = (uint32_t)v->int64_param;
  }
  return true;
}

/* The request's "timeout" parameter (Triton's: an int64_param of
 * microseconds, what tritonclient's infer(timeout=N) sends), 0 when
 * absent; false when it is not one. */
static bool request_timeout(const Inference__ModelInferRequest *m,
                            uint64_t *timeout_us) {
  *timeout_us = 0;
  for (size_t i = 0; i < m->n_parameters; i++) {
    const Inference__InferParameter *v = m->parameters[i]->value;
    if (strcmp(m->parameters[i]->key, "timeout"))
      continue;
    if (!v ||
        v->parameter_choice_case !=
            INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM ||
        v->int64_param < 0)
      return false;
    *timeout_us = (uint64_t)v->int64_param;
  }
  return true;
}

int gs__grpc_infer_decode(gs__infer_request_t *req, const gs__model_io_t *io,
                          const gs__grpc_infer_t *gi, gs_error_t *err) {
  const Inference__ModelInferRequest *m = gi->m;
  gs__infer_tensors_t t = {.grpc = true};
  uint64_t timeout_us;
  if (!request_timeout(m, &timeout_us)) {
    memset(req, 0, sizeof *req);
    return BAD(err, "parameter 'timeout' must be a non-negative int64_param "
                    "(microseconds)"),
           400;
  }
  t.id = m->id[0] ? m->id : NULL;
  t.n_inputs = m->n_inputs;
  for (size_t i = 0; i < m->n_inputs; i++)
    t.inputs[i] =
        (gs__infer_input_t){m->inputs[i]->name,  m->inputs[i]->datatype,
                            m->inputs[i]->shape, m->inputs[i]->n_shape,
                            gi->data[i],         gi->bytes[i]};
  if (m->n_outputs > GS__INFER_MAX_TENSORS) {
    memset(req, 0, sizeof *req);
    return BAD(err, "more than %d outputs", GS__INFER_MAX_TENSORS), 400;
  }
  t.n_outputs = m->n_outputs;
  for (size_t i = 0; i < m->n_outputs; i++) {
    t.outputs[i] = m->outputs[i]->name;
    if (!class_count(m->outputs[i], &t.class_counts[i])) {
      memset(req, 0, sizeof *req);
      return BAD(err,
                 "output '%s': classification must be an int64_param "
                 "class count (0..%u)",
                 m->outputs[i]->name, UINT32_MAX),
             400;
    }
  }
  int status = gs__infer_decode_tensors(req, io, &t, err);
  req->timeout_us = timeout_us;
  return status == 0 ? gs__shm_grpc_refs(req, m, io, err) : status;
}

int gs__grpc_infer_encode(gs__http_response_t *resp,
                          const gs__infer_request_t *req,
                          const gs__model_io_t *io, const gs_tensor_t *outputs,
                          gs_error_t *err) {
  Inference__ModelInferResponse m = INFERENCE__MODEL_INFER_RESPONSE__INIT;
  Inference__ModelInferResponse__InferOutputTensor o[GS__INFER_MAX_TENSORS],
      *po[GS__INFER_MAX_TENSORS];
  ProtobufCBinaryData raw[GS__INFER_MAX_TENSORS];
  int64_t shapes[GS__INFER_MAX_TENSORS][GS_TENSOR_MAX_RANK];
  size_t n = 0;
  for (size_t i = 0; i < io->n_outputs && i < GS__INFER_MAX_TENSORS; i++) {
    if (!req->want_output[i])
      continue;
    const gs_tensor_t *t = &outputs[i];
    inference__model_infer_response__infer_output_tensor__init(&o[n]);
    o[n].name = (char *)t->name;
    o[n].datatype = (char *)gs_dtype_name(t->dtype);
    for (unsigned d = 0; d < t->rank; d++)
      shapes[n][d] = t->shape[d];
    o[n].n_shape = t->rank;
    o[n].shape = shapes[n];
    po[n] = &o[n];
    raw[n] = (ProtobufCBinaryData){t->bytes, (uint8_t *)t->data};
    if (gs__shm_output_wanted(req, i)) { /* in its region: no raw bytes */
      int rc = gs__shm_output_write(req, i, t, err);
      if (rc != GS_OK)
        return rc;
      raw[n] = (ProtobufCBinaryData){0, NULL};
    }
    n++;
  }
  m.model_name = (char *)io->model_name;
  m.model_version = (char *)io->version;
  m.id = req->id ? req->id : "";
  m.n_outputs = m.n_raw_output_contents = n;
  m.outputs = po;
  m.raw_output_contents = raw;
  size_t len = inference__model_infer_response__get_packed_size(&m);
  if (len > GS__GRPC_MAX_MESSAGE)
    return gs_error_set(err, GS_ELIMIT, "response larger than 64 MiB");
  uint8_t *body = malloc(len + GS__GRPC_PREFIX);
  if (!body)
    return gs_error_set(err, GS_ENOMEM, "out of memory encoding outputs");
  gs__grpc_frame_prefix(body, len);
  inference__model_infer_response__pack(&m, body + GS__GRPC_PREFIX);
  gs__http_response_release(resp);
  resp->status = 200;
  resp->body = (char *)body;
  resp->body_len = len + GS__GRPC_PREFIX;
  resp->content_type = "application/grpc";
  return GS_OK;
}

void gs__grpc_infer_reply(gs__http_response_t *resp, gs__grpc_reply_t *reply) {
  if (resp->status != 200) {
    gs__grpc_reply_http_error(reply, resp);
    return;
  }
  gs__grpc_reply_release(reply);
  reply->body = (uint8_t *)resp->body;
  reply->body_len = resp->body_len;
  resp->body = NULL;
  resp->body_len = 0;
}

/* ---- the call: a job on the model it names --------------------------------
 */

int gs__grpc_infer_job(gs__repo_t *repo, const uint8_t *msg, size_t len,
                       gs__grpc_reply_t *reply, gs__infer_job_t *job) {
  gs_error_t err = {0};
  memset(reply, 0, sizeof *reply);
  gs__grpc_infer_t *gi = calloc(1, sizeof *gi);
  if (!gi) {
    gs__grpc_reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
    return 0;
  }
  int status = gs__grpc_infer_read(gi, msg, len, &err);
  if (status == GS__GRPC_OK) {
    const Inference__ModelInferRequest *m = gi->m;
    int http;
    if (!gs__repo_ready(repo, m->model_name,
                        m->model_version[0] ? m->model_version : NULL, 503, job,
                        &http, &err))
      status = gs__grpc_status_of_http(http); /* as HTTP's infer answers */
  }
  if (status != GS__GRPC_OK) {
    gs__grpc_reply_error(reply, status, err.msg);
    gs__grpc_infer_destroy(gi);
    return 0;
  }
  /* the request HTTP's route would have made: no URL, no body */
  job->req = (gs__http_request_t){
      .method = HTTP_POST, .infer_header_len = -1, .keep_alive = true};
  job->grpc = gi;
  return 1;
}

void gs__grpc_respond(gs_grpc_call_t *call, gs__grpc_reply_t *reply) {
  if (reply->status == GS__GRPC_OK && reply->body) {
    gs_grpc_call_reply(call, reply->body, reply->body_len);
    reply->body = NULL;
    return;
  }
  gs_grpc_call_fail(call, reply->status, reply->message);
}

static void after_infer(gs__infer_job_t *job) {
  gs_grpc_call_t *call = job->data;
  gs__grpc_wcall_t *w = gs_grpc_call_state(call);
  gs__infer_job_finish(&w->job);
  bool open = !gs_grpc_call_closed(call);
  if (open)
    gs__grpc_infer_reply(&w->job.resp, &w->reply);
  gs__http_response_release(&w->job.resp);
  gs__grpc_infer_destroy(w->job.grpc);
  w->job.grpc = NULL;
  if (!gs_grpc_call_release(call))
    return; /* the client is gone (the call freed with its last hold) */
  gs__grpc_respond(call, &w->reply);
  gs_grpc_call_flush(call);
}

static bool call_gone(const gs__infer_job_t *job) {
  return gs_grpc_call_closed(job->data);
}

bool gs__grpc_infer_submit(gs_grpc_call_t *call, gs__grpc_wcall_t *w) {
  gs__grpc_server_t *g = gs_grpc_call_owner(call);
  w->job.data = call;
  w->job.gone = call_gone;
  gs_grpc_call_hold(call);
  int qrc = gs__infer_submit(g->loop, &w->job, after_infer);
  if (qrc == 0)
    return true;
  char msg[256];
  gs__infer_queue_msg(&w->job, qrc, msg, sizeof msg);
  gs_grpc_call_release(call);
  gs__infer_job_finish(&w->job);
  gs__http_response_release(&w->job.resp);
  gs__grpc_infer_destroy(w->job.grpc);
  w->job.grpc = NULL;
  gs__grpc_reply_error(&w->reply, GS__GRPC_INTERNAL, msg);
  gs__grpc_respond(call, &w->reply);
  return false;
}

void gs__grpc_on_infer(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  gs__grpc_server_t *g = gs_grpc_call_owner(call);
  gs__grpc_wcall_t *w = gs_grpc_call_state(call);
  if (gs__grpc_infer_job(g->repo, msg, len, &w->reply, &w->job) == 1)
    gs__grpc_infer_submit(call, w);
  else
    gs__grpc_respond(call, &w->reply);
}
