/* The worker's gRPC calls without sockets: unframes a message, turns each
 * GRPCInferenceService method into the HTTP router's request (ModelInfer
 * into a binary-tensor infer), and the router's JSON answer into the
 * method's protobuf message, so gRPC and HTTP answer alike. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"

#define BAD(err, ...) gs_error_set(err, GS_EINVAL, __VA_ARGS__)
#define MAX_TENSOR_DATA (2 * (size_t)GS__GRPC_MAX_MESSAGE)

static const char *const method_names[] = {
    "ServerLive",    "ServerReady", "ModelReady",  "ServerMetadata",
    "ModelMetadata", "ModelInfer",  "ModelConfig", "ModelStatistics"};

gs__grpc_method_t gs__grpc_method(const char *path) {
  static const char prefix[] = "/inference.GRPCInferenceService/";
  if (strncmp(path, prefix, sizeof prefix - 1) != 0)
    return GS__GRPC_UNKNOWN_METHOD;
  for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++)
    if (strcmp(path + sizeof prefix - 1, method_names[i]) == 0)
      return (gs__grpc_method_t)i;
  return GS__GRPC_UNKNOWN_METHOD;
}

int gs__grpc_frame_read(const uint8_t *buf, size_t len, size_t max,
                        const uint8_t **msg, size_t *msg_len, gs_error_t *err) {
  if (len < 5)
    return BAD(err, "the request holds no whole gRPC message"),
           GS__GRPC_INVALID_ARGUMENT;
  uint32_t n = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 |
               (uint32_t)buf[3] << 8 | buf[4];
  if (buf[0] != 0)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "compressed messages are not supported"),
           GS__GRPC_UNIMPLEMENTED;
  if (n > max)
    return gs_error_set(err, GS_ELIMIT,
                        "message of %u bytes is larger than the limit (%zu)", n,
                        max),
           GS__GRPC_RESOURCE_EXHAUSTED;
  if (len - 5 != n)
    return BAD(err, "the request's message is %u bytes but %zu follow", n,
               len - 5),
           GS__GRPC_INVALID_ARGUMENT;
  *msg = buf + 5;
  *msg_len = n;
  return GS__GRPC_OK;
}

void gs__grpc_reply_release(gs__grpc_reply_t *reply) {
  free(reply->body);
  memset(reply, 0, sizeof *reply);
}

int gs__grpc_status_of_http(int http_status) {
  switch (http_status) {
  case 200:
    return GS__GRPC_OK;
  case 404:
    return GS__GRPC_NOT_FOUND;
  case 413:
    return GS__GRPC_RESOURCE_EXHAUSTED;
  case 501:
    return GS__GRPC_UNIMPLEMENTED;
  case 503:
    return GS__GRPC_UNAVAILABLE;
  default:
    return http_status >= 500 ? GS__GRPC_INTERNAL : GS__GRPC_INVALID_ARGUMENT;
  }
}

void gs__grpc_percent_encode(const char *text, char *out, size_t size) {
  static const char hex[] = "0123456789ABCDEF";
  size_t at = 0;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
    if (at + (plain ? 1 : 3) >= size)
      break;
    if (plain) {
      out[at++] = (char)*p;
    } else {
      out[at++] = '%';
      out[at++] = hex[*p >> 4];
      out[at++] = hex[*p & 15];
    }
  }
  if (size)
    out[at] = '\0';
}

static void reply_error(gs__grpc_reply_t *reply, int status, const char *msg) {
  gs__grpc_reply_release(reply);
  reply->status = status;
  snprintf(reply->message, sizeof reply->message, "%s", msg);
}

/* Packs m behind the 5-byte prefix as the reply. */
static void reply_message(gs__grpc_reply_t *reply, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n + 5);
  if (!buf || n > GS__GRPC_MAX_MESSAGE) {
    free(buf);
    reply_error(reply, !buf ? GS__GRPC_INTERNAL : GS__GRPC_RESOURCE_EXHAUSTED,
                !buf ? "out of memory" : "response larger than 64 MiB");
    return;
  }
  buf[0] = 0;
  buf[1] = (uint8_t)(n >> 24);
  buf[2] = (uint8_t)(n >> 16);
  buf[3] = (uint8_t)(n >> 8);
  buf[4] = (uint8_t)n;
  protobuf_c_message_pack(m, buf + 5);
  gs__grpc_reply_release(reply);
  reply->body = buf;
  reply->body_len = n + 5;
}

/* The router's error response as the reply (its {"error": msg}). */
static void reply_http_error(gs__grpc_reply_t *reply,
                             const gs__http_response_t *resp) {
  json_t *root =
      resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(root, "error"));
  reply_error(reply, gs__grpc_status_of_http(resp->status),
              msg ? msg : gs__http_reason(resp->status));
  json_decref(root);
}

/* Names the router may see in a path: what the repository accepts. */
static bool path_safe(const char *s, bool may_be_empty) {
  size_t n = strlen(s);
  return (n > 0 || may_be_empty) && n < 128 && s[0] != '.' &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789_.-") == n;
}

/* /v2/models/NAME[/versions/VERSION]SUFFIX, or false (with the reply set)
 * for a name the repository cannot hold. */
static bool model_url(char *url, size_t size, const char *name,
                      const char *version, const char *suffix,
                      gs__grpc_reply_t *reply) {
  char msg[256];
  if (!path_safe(name, false) || !path_safe(version, true)) {
    snprintf(msg, sizeof msg,
             "Request for unknown model: '%.128s' is not found", name);
    reply_error(reply, GS__GRPC_NOT_FOUND, msg);
    return false;
  }
  if (version[0])
    snprintf(url, size, "/v2/models/%s/versions/%s%s", name, version, suffix);
  else
    snprintf(url, size, "/v2/models/%s%s", name, suffix);
  return true;
}

/* GET url on the router; resp is the caller's to release. */
static void route_get(gs__repo_t *repo, const char *url,
                      gs__http_response_t *resp) {
  gs__http_request_t req = {.method = HTTP_GET, .infer_header_len = -1};
  gs__infer_job_t job;
  resp->infer_header_len = -1;
  req.url = strdup(url);
  if (!req.url) {
    gs__http_response_error(resp, 500, "out of memory");
    return;
  }
  req.url_len = strlen(url);
  gs__route(repo, &req, resp, &job); /* a GET never makes a job */
  free(req.url);
}

static json_t *body_json(const gs__http_response_t *resp, size_t len) {
  return resp->body ? json_loadb(resp->body, len, 0, NULL) : NULL;
}

static int64_t *int64s(json_t *a, size_t *n) {
  *n = json_array_size(a);
  int64_t *v = calloc(*n + 1, sizeof *v);
  for (size_t i = 0; v && i < *n; i++)
    v[i] = json_integer_value(json_array_get(a, i));
  return v;
}

static char *str(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return (char *)(s ? s : "");
}

/* ---- ModelInfer ---------------------------------------------------------
 */

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
  if (!shape_count(in->shape, in->n_shape, &want) || *bytes != want * es)
    return BAD(err,
               "input '%s': %zu bytes of data, but shape and datatype %s "
               "need %zu",
               in->name, *bytes, in->datatype,
               shape_count(in->shape, in->n_shape, &want) ? want * es : 0);
  return GS_OK;
}

static json_t *
input_json(const Inference__ModelInferRequest__InferInputTensor *in,
           size_t bytes) {
  json_t *shape = json_array();
  for (size_t d = 0; d < in->n_shape; d++)
    json_array_append_new(shape, json_integer(in->shape[d]));
  return json_pack("{s:s, s:s, s:o, s:{s:I}}", "name", in->name, "datatype",
                   in->datatype, "shape", shape, "parameters",
                   "binary_data_size", (json_int_t)bytes);
}

/* The JSON header and the binary data after it, as one body. */
static int infer_body(const Inference__ModelInferRequest *m,
                      gs__http_request_t *req, gs_error_t *err) {
  const uint8_t *data[GS__INFER_MAX_TENSORS];
  size_t bytes[GS__INFER_MAX_TENSORS], total = 0;
  uint8_t *owned[GS__INFER_MAX_TENSORS] = {0};
  json_t *root = json_pack("{s:[], s:[], s:{s:b}}", "inputs", "outputs",
                           "parameters", "binary_data_output", 1);
  int rc = root ? GS_OK : gs_error_set(err, GS_ENOMEM, "out of memory");
  if (rc == GS_OK && m->id[0])
    json_object_set_new(root, "id", json_string(m->id));
  for (size_t i = 0; rc == GS_OK && i < m->n_inputs; i++) {
    rc = input_data(m, i, &data[i], &bytes[i], &owned[i], err);
    if (rc == GS_OK && bytes[i] > MAX_TENSOR_DATA - total)
      rc = gs_error_set(err, GS_ELIMIT, "the inputs are larger than %zu bytes",
                        MAX_TENSOR_DATA);
    if (rc == GS_OK) {
      total += bytes[i];
      json_array_append_new(json_object_get(root, "inputs"),
                            input_json(m->inputs[i], bytes[i]));
    }
  }
  for (size_t i = 0; rc == GS_OK && i < m->n_outputs; i++)
    json_array_append_new(json_object_get(root, "outputs"),
                          json_pack("{s:s, s:{s:b}}", "name",
                                    m->outputs[i]->name, "parameters",
                                    "binary_data", 1));
  char *head = rc == GS_OK ? json_dumps(root, JSON_COMPACT) : NULL;
  size_t hlen = head ? strlen(head) : 0;
  char *body = head ? realloc(head, hlen + total + 1) : NULL;
  if (rc == GS_OK && !body) {
    free(head);
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  if (rc == GS_OK) {
    size_t at = hlen;
    for (size_t i = 0; i < m->n_inputs; i++, at += bytes[i - 1])
      if (bytes[i])
        memcpy(body + at, data[i], bytes[i]);
    body[hlen + total] = '\0';
    req->body = body;
    req->body_len = req->body_cap = hlen + total;
    req->infer_header_len = (long long)hlen;
  }
  for (size_t i = 0; i < m->n_inputs && i < GS__INFER_MAX_TENSORS; i++)
    free(owned[i]);
  json_decref(root);
  return rc;
}

int gs__grpc_infer_request(const uint8_t *msg, size_t len,
                           gs__http_request_t *req, gs_error_t *err) {
  memset(req, 0, sizeof *req);
  req->infer_header_len = -1;
  Inference__ModelInferRequest *m =
      inference__model_infer_request__unpack(NULL, len, msg);
  if (!m)
    return BAD(err, "malformed ModelInferRequest"), GS__GRPC_INVALID_ARGUMENT;
  char url[512];
  gs__grpc_reply_t r = {0};
  int status = GS__GRPC_INVALID_ARGUMENT;
  if (!model_url(url, sizeof url, m->model_name, m->model_version, "/infer",
                 &r)) {
    gs_error_set(err, GS_ENOTFOUND, "%s", r.message);
    status = GS__GRPC_NOT_FOUND;
  } else if (m->n_inputs > GS__INFER_MAX_TENSORS) {
    BAD(err, "more than %d inputs", GS__INFER_MAX_TENSORS);
  } else if (m->n_raw_input_contents &&
             m->n_raw_input_contents != m->n_inputs) {
    BAD(err, "expected %zu raw_input_contents (one per input), got %zu",
        m->n_inputs, m->n_raw_input_contents);
  } else if (infer_body(m, req, err) != GS_OK) {
    status = err->code == GS_ENOMEM   ? GS__GRPC_INTERNAL
             : err->code == GS_ELIMIT ? GS__GRPC_RESOURCE_EXHAUSTED
                                      : GS__GRPC_INVALID_ARGUMENT;
  } else if (!(req->url = strdup(url))) {
    gs_error_set(err, GS_ENOMEM, "out of memory");
    status = GS__GRPC_INTERNAL;
  } else {
    req->url_len = strlen(url);
    req->method = HTTP_POST;
    req->keep_alive = true;
    status = GS__GRPC_OK;
  }
  if (status != GS__GRPC_OK) {
    free(req->body);
    req->body = NULL;
  }
  inference__model_infer_request__free_unpacked(m, NULL);
  return status;
}

void gs__grpc_infer_reply(const gs__http_response_t *resp,
                          gs__grpc_reply_t *reply) {
  if (resp->status != 200) {
    reply_http_error(reply, resp);
    return;
  }
  size_t hlen =
      resp->infer_header_len >= 0 ? (size_t)resp->infer_header_len : 0;
  json_t *root = hlen <= resp->body_len ? body_json(resp, hlen) : NULL;
  json_t *jouts = json_object_get(root, "outputs");
  size_t n = json_array_size(jouts), at = hlen;
  Inference__ModelInferResponse m = INFERENCE__MODEL_INFER_RESPONSE__INIT;
  Inference__ModelInferResponse__InferOutputTensor *outs =
      calloc(n + 1, sizeof *outs);
  Inference__ModelInferResponse__InferOutputTensor **pouts =
      calloc(n + 1, sizeof *pouts);
  ProtobufCBinaryData *raw = calloc(n + 1, sizeof *raw);
  bool ok = root && outs && pouts && raw;
  for (size_t i = 0; ok && i < n; i++) {
    json_t *jo = json_array_get(jouts, i);
    json_t *size =
        json_object_get(json_object_get(jo, "parameters"), "binary_data_size");
    size_t bytes = (size_t)json_integer_value(size);
    ok = json_is_integer(size) && bytes <= resp->body_len - at;
    inference__model_infer_response__infer_output_tensor__init(&outs[i]);
    outs[i].name = str(jo, "name");
    outs[i].datatype = str(jo, "datatype");
    outs[i].shape = int64s(json_object_get(jo, "shape"), &outs[i].n_shape);
    ok = ok && outs[i].shape;
    pouts[i] = &outs[i];
    raw[i] = (ProtobufCBinaryData){bytes, (uint8_t *)resp->body + at};
    at += ok ? bytes : 0;
  }
  if (ok) {
    m.model_name = str(root, "model_name");
    m.model_version = str(root, "model_version");
    m.id = str(root, "id");
    m.n_outputs = m.n_raw_output_contents = n;
    m.outputs = pouts;
    m.raw_output_contents = raw;
    reply_message(reply, &m.base);
  } else {
    reply_error(reply, GS__GRPC_INTERNAL, "cannot encode the infer response");
  }
  for (size_t i = 0; outs && i < n; i++)
    free(outs[i].shape);
  free(outs);
  free(pouts);
  free(raw);
  json_decref(root);
}

/* ---- the other methods --------------------------------------------------
 */

static void
tensors_metadata(json_t *a, size_t *n,
                 Inference__ModelMetadataResponse__TensorMetadata ***out) {
  *n = json_array_size(a);
  *out = calloc(*n + 1, sizeof **out);
  for (size_t i = 0; *out && i < *n; i++) {
    json_t *t = json_array_get(a, i);
    Inference__ModelMetadataResponse__TensorMetadata *tm = malloc(sizeof *tm);
    if (!tm) {
      *n = i;
      return;
    }
    inference__model_metadata_response__tensor_metadata__init(tm);
    tm->name = str(t, "name");
    tm->datatype = str(t, "datatype");
    tm->shape = int64s(json_object_get(t, "shape"), &tm->n_shape);
    (*out)[i] = tm;
  }
}

static void
free_tensors_metadata(size_t n,
                      Inference__ModelMetadataResponse__TensorMetadata **t) {
  for (size_t i = 0; t && i < n; i++) {
    free(t[i]->shape);
    free(t[i]);
  }
  free(t);
}

static void model_metadata(json_t *root, gs__grpc_reply_t *reply) {
  Inference__ModelMetadataResponse m = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
  json_t *versions = json_object_get(root, "versions");
  char *v[1];
  m.name = str(root, "name");
  m.platform = str(root, "platform");
  m.n_versions = json_array_size(versions) ? 1 : 0;
  v[0] = (char *)(m.n_versions ? json_string_value(json_array_get(versions, 0))
                               : "");
  m.versions = v;
  tensors_metadata(json_object_get(root, "inputs"), &m.n_inputs, &m.inputs);
  tensors_metadata(json_object_get(root, "outputs"), &m.n_outputs, &m.outputs);
  if (m.inputs && m.outputs && v[0])
    reply_message(reply, &m.base);
  else
    reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
  free_tensors_metadata(m.n_inputs, m.inputs);
  free_tensors_metadata(m.n_outputs, m.outputs);
}

static Inference__DataType data_type(const char *name) {
  static const char *const names[] = {
      "TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
      "TYPE_UINT64",  "TYPE_INT8", "TYPE_INT16", "TYPE_INT32",  "TYPE_INT64",
      "TYPE_FP16",    "TYPE_FP32", "TYPE_FP64",  "TYPE_STRING", "TYPE_BF16"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i]) == 0)
      return (Inference__DataType)i;
  return INFERENCE__DATA_TYPE__TYPE_INVALID;
}

static void model_config(json_t *root, gs__grpc_reply_t *reply) {
  Inference__ModelConfigResponse r = INFERENCE__MODEL_CONFIG_RESPONSE__INIT;
  Inference__ModelConfig c = INFERENCE__MODEL_CONFIG__INIT;
  json_t *ji = json_object_get(root, "input"),
         *jo = json_object_get(root, "output");
  size_t ni = json_array_size(ji), no = json_array_size(jo);
  Inference__ModelInput *in = calloc(ni + 1, sizeof *in),
                        **pin = calloc(ni + 1, sizeof *pin);
  Inference__ModelOutput *out = calloc(no + 1, sizeof *out),
                         **pout = calloc(no + 1, sizeof *pout);
  bool ok = in && pin && out && pout;
  for (size_t i = 0; ok && i < ni; i++) {
    json_t *t = json_array_get(ji, i);
    inference__model_input__init(&in[i]);
    in[i].name = str(t, "name");
    in[i].data_type = data_type(str(t, "data_type"));
    ok = (in[i].dims = int64s(json_object_get(t, "dims"), &in[i].n_dims));
    pin[i] = &in[i];
  }
  for (size_t i = 0; ok && i < no; i++) {
    json_t *t = json_array_get(jo, i);
    inference__model_output__init(&out[i]);
    out[i].name = str(t, "name");
    out[i].data_type = data_type(str(t, "data_type"));
    ok = (out[i].dims = int64s(json_object_get(t, "dims"), &out[i].n_dims));
    pout[i] = &out[i];
  }
  c.name = str(root, "name");
  c.platform = str(root, "platform");
  c.backend = str(root, "backend");
  c.max_batch_size =
      (int32_t)json_integer_value(json_object_get(root, "max_batch_size"));
  c.n_input = ni;
  c.input = pin;
  c.n_output = no;
  c.output = pout;
  r.config = &c;
  if (ok)
    reply_message(reply, &r.base);
  else
    reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
  for (size_t i = 0; in && i < ni; i++)
    free(in[i].dims);
  for (size_t i = 0; out && i < no; i++)
    free(out[i].dims);
  free(in);
  free(pin);
  free(out);
  free(pout);
}

static void duration(Inference__StatisticDuration *d, json_t *jd) {
  inference__statistic_duration__init(d);
  d->count = (uint64_t)json_integer_value(json_object_get(jd, "count"));
  d->ns = (uint64_t)json_integer_value(json_object_get(jd, "ns"));
}

typedef struct batch_entry_s {
  Inference__InferBatchStatistics b;
  Inference__StatisticDuration input, infer, output;
} batch_entry_t;

/* ms's batch_stats from jb, in one allocation (ms->batch_stats, which the
 * caller frees): the pointers, then the entries. */
static bool batch_stats(json_t *jb, Inference__ModelStatistics *ms) {
  size_t n = json_array_size(jb);
  Inference__InferBatchStatistics **p =
      calloc(1, (n + 1) * sizeof *p + n * sizeof(batch_entry_t));
  if (!p)
    return false;
  batch_entry_t *e = (batch_entry_t *)(p + n + 1);
  for (size_t i = 0; i < n; i++) {
    json_t *j = json_array_get(jb, i);
    inference__infer_batch_statistics__init(&e[i].b);
    e[i].b.batch_size =
        (uint64_t)json_integer_value(json_object_get(j, "batch_size"));
    duration(&e[i].input, json_object_get(j, "compute_input"));
    duration(&e[i].infer, json_object_get(j, "compute_infer"));
    duration(&e[i].output, json_object_get(j, "compute_output"));
    e[i].b.compute_input = &e[i].input;
    e[i].b.compute_infer = &e[i].infer;
    e[i].b.compute_output = &e[i].output;
    p[i] = &e[i].b;
  }
  ms->n_batch_stats = n;
  ms->batch_stats = p;
  return true;
}

static void model_statistics(json_t *root, gs__grpc_reply_t *reply) {
  static const char *const keys[] = {
      "success",       "fail",           "queue",     "compute_input",
      "compute_infer", "compute_output", "cache_hit", "cache_miss"};
  enum { NKEYS = sizeof keys / sizeof keys[0] };
  Inference__ModelStatisticsResponse r =
      INFERENCE__MODEL_STATISTICS_RESPONSE__INIT;
  json_t *a = json_object_get(root, "model_stats");
  size_t n = json_array_size(a);
  Inference__ModelStatistics *ms = calloc(n + 1, sizeof *ms),
                             **pms = calloc(n + 1, sizeof *pms);
  Inference__InferStatistics *is = calloc(n + 1, sizeof *is);
  Inference__StatisticDuration *d = calloc(n * NKEYS + 1, sizeof *d);
  bool ok = ms && pms && is && d;
  for (size_t i = 0; ok && i < n; i++) {
    json_t *j = json_array_get(a, i),
           *js = json_object_get(j, "inference_stats");
    inference__model_statistics__init(&ms[i]);
    inference__infer_statistics__init(&is[i]);
    ms[i].name = str(j, "name");
    ms[i].version = str(j, "version");
    ms[i].last_inference =
        (uint64_t)json_integer_value(json_object_get(j, "last_inference"));
    ms[i].inference_count =
        (uint64_t)json_integer_value(json_object_get(j, "inference_count"));
    ms[i].execution_count =
        (uint64_t)json_integer_value(json_object_get(j, "execution_count"));
    Inference__StatisticDuration **slots[NKEYS] = {
        &is[i].success,       &is[i].fail,          &is[i].queue,
        &is[i].compute_input, &is[i].compute_infer, &is[i].compute_output,
        &is[i].cache_hit,     &is[i].cache_miss};
    for (size_t k = 0; k < NKEYS; k++) {
      duration(&d[i * NKEYS + k], json_object_get(js, keys[k]));
      *slots[k] = &d[i * NKEYS + k];
    }
    ms[i].inference_stats = &is[i];
    pms[i] = &ms[i];
    ok = batch_stats(json_object_get(j, "batch_stats"), &ms[i]);
  }
  r.n_model_stats = n;
  r.model_stats = pms;
  if (ok)
    reply_message(reply, &r.base);
  else
    reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
  for (size_t i = 0; ms && i < n; i++)
    free(ms[i].batch_stats);
  free(ms);
  free(pms);
  free(is);
  free(d);
}
/* The request message's (name, version) for the model methods: ModelReady,
 * ModelMetadata, ModelConfig and ModelStatistics requests share fields 1
 * and 2, so one message type reads them all. */
static Inference__ModelReadyRequest *
model_request(const uint8_t *msg, size_t len, gs__grpc_reply_t *reply) {
  Inference__ModelReadyRequest *m =
      inference__model_ready_request__unpack(NULL, len, msg);
  if (!m)
    reply_error(reply, GS__GRPC_INVALID_ARGUMENT, "malformed request message");
  return m;
}

static void server_call(gs__repo_t *repo, gs__grpc_method_t method,
                        gs__grpc_reply_t *reply) {
  gs__http_response_t resp = {.infer_header_len = -1};
  if (method == GS__GRPC_SERVER_LIVE || method == GS__GRPC_SERVER_READY) {
    bool live = method == GS__GRPC_SERVER_LIVE;
    route_get(repo, live ? "/v2/health/live" : "/v2/health/ready", &resp);
    Inference__ServerLiveResponse l = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
    Inference__ServerReadyResponse r = INFERENCE__SERVER_READY_RESPONSE__INIT;
    l.live = r.ready = resp.status == 200;
    reply_message(reply, live ? &l.base : &r.base);
  } else {
    route_get(repo, "/v2", &resp);
    json_t *root = body_json(&resp, resp.body_len);
    json_t *ext = json_object_get(root, "extensions");
    size_t n = json_array_size(ext);
    char *names[8];
    Inference__ServerMetadataResponse m =
        INFERENCE__SERVER_METADATA_RESPONSE__INIT;
    for (size_t i = 0; i < n && i < 8; i++)
      names[i] = (char *)json_string_value(json_array_get(ext, i));
    m.name = str(root, "name");
    m.version = str(root, "version");
    m.n_extensions = n < 8 ? n : 8;
    m.extensions = names;
    if (root)
      reply_message(reply, &m.base);
    else
      reply_http_error(reply, &resp);
    json_decref(root);
  }
  gs__http_response_release(&resp);
}

static void model_call(gs__repo_t *repo, gs__grpc_method_t method,
                       const uint8_t *msg, size_t len,
                       gs__grpc_reply_t *reply) {
  static const char *const suffix[] = {[GS__GRPC_MODEL_READY] = "/ready",
                                       [GS__GRPC_MODEL_METADATA] = "",
                                       [GS__GRPC_MODEL_CONFIG] = "/config",
                                       [GS__GRPC_MODEL_STATISTICS] = "/stats"};
  Inference__ModelReadyRequest *m = model_request(msg, len, reply);
  gs__http_response_t resp = {.infer_header_len = -1};
  char url[512];
  if (!m)
    return;
  if (method == GS__GRPC_MODEL_STATISTICS && !m->name[0])
    snprintf(url, sizeof url, "/v2/models/stats");
  else if (!model_url(url, sizeof url, m->name, m->version, suffix[method],
                      reply)) {
    if (method == GS__GRPC_MODEL_READY) {
      Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
      reply_message(reply, &r.base);
    }
    inference__model_ready_request__free_unpacked(m, NULL);
    return;
  }
  inference__model_ready_request__free_unpacked(m, NULL);
  route_get(repo, url, &resp);
  json_t *root = resp.status == 200 ? body_json(&resp, resp.body_len) : NULL;
  if (method == GS__GRPC_MODEL_READY) {
    /* A model that is unknown or not ready is answered ready = false. */
    Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
    r.ready = resp.status == 200;
    reply_message(reply, &r.base);
  } else if (!root) {
    reply_http_error(reply, &resp);
  } else if (method == GS__GRPC_MODEL_METADATA) {
    model_metadata(root, reply);
  } else if (method == GS__GRPC_MODEL_CONFIG) {
    model_config(root, reply);
  } else {
    model_statistics(root, reply);
  }
  json_decref(root);
  gs__http_response_release(&resp);
}

int gs__grpc_call(gs__repo_t *repo, gs__grpc_method_t method,
                  const uint8_t *msg, size_t len, gs__grpc_reply_t *reply,
                  gs__infer_job_t *job) {
  gs_error_t err = {0};
  memset(reply, 0, sizeof *reply);
  switch (method) {
  case GS__GRPC_SERVER_LIVE:
  case GS__GRPC_SERVER_READY:
  case GS__GRPC_SERVER_METADATA:
    server_call(repo, method, reply);
    return 0;
  case GS__GRPC_MODEL_READY:
  case GS__GRPC_MODEL_METADATA:
  case GS__GRPC_MODEL_CONFIG:
  case GS__GRPC_MODEL_STATISTICS:
    model_call(repo, method, msg, len, reply);
    return 0;
  case GS__GRPC_MODEL_INFER:
    break;
  default:
    reply_error(reply, GS__GRPC_UNIMPLEMENTED,
                "this method is not implemented by gpuslice's worker");
    return 0;
  }
  gs__http_request_t req;
  gs__http_response_t resp = {.infer_header_len = -1};
  int status = gs__grpc_infer_request(msg, len, &req, &err);
  if (status != GS__GRPC_OK) {
    reply_error(reply, status, err.msg);
    return 0;
  }
  int rc = gs__route(repo, &req, &resp, job);
  free(req.url); /* a job took them (gs__route zeroes req) or not */
  free(req.body);
  if (rc != 1)
    reply_http_error(reply, &resp);
  gs__http_response_release(&resp);
  return rc;
}
