/* The worker's gRPC calls without sockets: the metadata methods become the
 * HTTP router's GET and its JSON answer the method's protobuf message, so
 * gRPC and HTTP answer alike; ModelInfer is routed as HTTP's infer is, its
 * tensors decoded by grpc_infer.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"
#include "worker/repo_files.h"
#include "worker/shm.h"

static const char *const method_names[] = {
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
    "ModelMetadata", "ModelInfer", "ModelConfig", "ModelStatistics",
    "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
    /* the shared-memory extensions (shm_routes.c) */
    "SystemSharedMemoryStatus", "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
    "ModelStreamInfer"};

gs__grpc_method_t gs__grpc_method(const char *path) {
  static const char prefix[] = "/inference.GRPCInferenceService/";
  if (strncmp(path, prefix, sizeof prefix - 1) != 0)
    return GS__GRPC_UNKNOWN_METHOD;
  for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++)
    if (strcmp(path + sizeof prefix - 1, method_names[i]) == 0)
      return (gs__grpc_method_t)i;
  return GS__GRPC_UNKNOWN_METHOD;
}

void gs__grpc_reply_release(gs__grpc_reply_t *reply) {
  free(reply->body);
  memset(reply, 0, sizeof *reply);
}

void gs__grpc_reply_error(gs__grpc_reply_t *reply, int status,
                          const char *msg) {
  gs__grpc_reply_release(reply);
  reply->status = status;
  snprintf(reply->message, sizeof reply->message, "%s", msg);
}

void gs__grpc_reply_message(gs__grpc_reply_t *reply,
                            const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n + GS__GRPC_PREFIX);
  if (!buf || n > GS__GRPC_MAX_MESSAGE) {
    free(buf);
    gs__grpc_reply_error(
        reply, !buf ? GS__GRPC_INTERNAL : GS__GRPC_RESOURCE_EXHAUSTED,
        !buf ? "out of memory" : "response larger than 64 MiB");
    return;
  }
  gs__grpc_frame_prefix(buf, n);
  protobuf_c_message_pack(m, buf + GS__GRPC_PREFIX);
  gs__grpc_reply_release(reply);
  reply->body = buf;
  reply->body_len = n + GS__GRPC_PREFIX;
}

/* The router's error response as the reply (its {"error": msg}). */
void gs__grpc_reply_http_error(gs__grpc_reply_t *reply,
                               const gs__http_response_t *resp) {
  json_t *root =
      resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(root, "error"));
  gs__grpc_reply_error(reply, gs__grpc_status_of_http(resp->status),
                       msg ? msg : gs__http_reason(resp->status));
  json_decref(root);
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
  char *v[GS__REPO_MAX_MODELS] = {""};
  m.name = str(root, "name");
  m.platform = str(root, "platform");
  m.n_versions = json_array_size(versions);
  if (m.n_versions > GS__REPO_MAX_MODELS)
    m.n_versions = GS__REPO_MAX_MODELS;
  for (size_t i = 0; i < m.n_versions; i++) /* every READY version */
    v[i] = (char *)json_string_value(json_array_get(versions, i));
  m.versions = v;
  tensors_metadata(json_object_get(root, "inputs"), &m.n_inputs, &m.inputs);
  tensors_metadata(json_object_get(root, "outputs"), &m.n_outputs, &m.outputs);
  if (m.inputs && m.outputs && v[0])
    gs__grpc_reply_message(reply, &m.base);
  else
    gs__grpc_reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
  free_tensors_metadata(m.n_inputs, m.inputs);
  free_tensors_metadata(m.n_outputs, m.outputs);
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
    gs__grpc_reply_message(reply, &r.base);
  else
    gs__grpc_reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
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
    gs__grpc_reply_error(reply, GS__GRPC_INVALID_ARGUMENT,
                         "malformed request message");
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
    gs__grpc_reply_message(reply, live ? &l.base : &r.base);
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
      gs__grpc_reply_message(reply, &m.base);
    else
      gs__grpc_reply_http_error(reply, &resp);
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
  else if (!gs__grpc_model_url(url, sizeof url, m->name, m->version,
                               suffix[method], reply)) {
    if (method == GS__GRPC_MODEL_READY) {
      Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
      gs__grpc_reply_message(reply, &r.base);
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
    gs__grpc_reply_message(reply, &r.base);
  } else if (!root) {
    gs__grpc_reply_http_error(reply, &resp);
  } else if (method == GS__GRPC_MODEL_METADATA) {
    model_metadata(root, reply);
  } else if (method == GS__GRPC_MODEL_CONFIG) {
    gs__grpc_model_config(root, reply);
  } else {
    model_statistics(root, reply);
  }
  json_decref(root);
  gs__http_response_release(&resp);
}

/* ---- the model repository extension --------------------------------------
 */

/* POST url with body (a JSON document, taken; NULL: none) on the router;
 * resp is the caller's to release. */
static void route_post(gs__repo_t *repo, const char *url, json_t *body,
                       gs__http_response_t *resp) {
  gs__http_request_t req = {.method = HTTP_POST, .infer_header_len = -1};
  gs__infer_job_t job;
  resp->infer_header_len = -1;
  req.url = strdup(url);
  req.body = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!req.url || (body && !req.body)) {
    gs__http_response_error(resp, 500, "out of memory");
  } else {
    req.url_len = strlen(url);
    req.body_len = req.body ? strlen(req.body) : 0;
    gs__route(repo, &req, resp, &job); /* a repository POST makes no job */
  }
  free(req.url);
  free(req.body);
}

/* A ModelRepositoryParameter as the HTTP body's parameter value; a bytes
 * value (a "file:" parameter's model file) as base64, as HTTP sends it. */
static json_t *parameter_json(const Inference__ModelRepositoryParameter *p) {
  switch (p ? p->parameter_choice_case : 0) {
  case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM:
    return json_boolean(p->bool_param);
  case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_INT64_PARAM:
    return json_integer((json_int_t)p->int64_param);
  case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_STRING_PARAM:
    return json_string(p->string_param);
  case INFERENCE__MODEL_REPOSITORY_PARAMETER__PARAMETER_CHOICE_BYTES_PARAM: {
    char *b64 = gs__base64_encode(p->bytes_param.data, p->bytes_param.len);
    json_t *j = b64 ? json_string(b64) : NULL;
    free(b64);
    return j ? j : json_null();
  }
  default:
    return json_null();
  }
}

static void repository_index(gs__repo_t *repo, const uint8_t *msg, size_t len,
                             gs__grpc_reply_t *reply) {
  Inference__RepositoryIndexRequest *q =
      inference__repository_index_request__unpack(NULL, len, msg);
  if (!q) {
    gs__grpc_reply_error(reply, GS__GRPC_INVALID_ARGUMENT,
                         "malformed request message");
    return;
  }
  gs__http_response_t resp = {.infer_header_len = -1};
  route_post(repo, "/v2/repository/index",
             json_pack("{s:b}", "ready", q->ready), &resp);
  inference__repository_index_request__free_unpacked(q, NULL);
  json_t *a = resp.status == 200 ? body_json(&resp, resp.body_len) : NULL;
  size_t n = json_array_size(a);
  Inference__RepositoryIndexResponse r =
      INFERENCE__REPOSITORY_INDEX_RESPONSE__INIT;
  Inference__RepositoryIndexResponse__ModelIndex *mi =
      calloc(n + 1, sizeof *mi);
  Inference__RepositoryIndexResponse__ModelIndex **pmi =
      calloc(n + 1, sizeof *pmi);
  for (size_t i = 0; mi && pmi && i < n; i++) {
    json_t *e = json_array_get(a, i);
    inference__repository_index_response__model_index__init(&mi[i]);
    mi[i].name = str(e, "name");
    mi[i].version = str(e, "version");
    mi[i].state = str(e, "state");
    mi[i].reason = str(e, "reason");
    pmi[i] = &mi[i];
  }
  r.n_models = n;
  r.models = pmi;
  if (!a)
    gs__grpc_reply_http_error(reply, &resp);
  else if (mi && pmi)
    gs__grpc_reply_message(reply, &r.base);
  else
    gs__grpc_reply_error(reply, GS__GRPC_INTERNAL, "out of memory");
  free(mi);
  free(pmi);
  json_decref(a);
  gs__http_response_release(&resp);
}

/* RepositoryModelLoad and RepositoryModelUnload: the HTTP routes, with
 * the parameters map as the body's "parameters". The two requests share
 * their fields (and the map entries theirs), so one type reads both. */
static void repository_call(gs__repo_t *repo, gs__grpc_method_t method,
                            const uint8_t *msg, size_t len,
                            gs__grpc_reply_t *reply) {
  if (method == GS__GRPC_REPOSITORY_INDEX) {
    repository_index(repo, msg, len, reply);
    return;
  }
  bool load = method == GS__GRPC_REPOSITORY_MODEL_LOAD;
  Inference__RepositoryModelLoadRequest *q =
      inference__repository_model_load_request__unpack(NULL, len, msg);
  char url[512];
  if (!q) {
    gs__grpc_reply_error(reply, GS__GRPC_INVALID_ARGUMENT,
                         "malformed request message");
    return;
  }
  json_t *params = json_object();
  for (size_t i = 0; i < q->n_parameters; i++)
    json_object_set_new(params, q->parameters[i]->key,
                        parameter_json(q->parameters[i]->value));
  bool named = gs__grpc_name_safe(q->model_name, false);
  snprintf(url, sizeof url, "/v2/repository/models/%s/%s",
           named ? q->model_name : "-", load ? "load" : "unload");
  if (!named) {
    snprintf(url, sizeof url,
             "failed to %s '%.128s': not a model name (letters, digits, "
             "'_', '.', '-')",
             load ? "load" : "unload", q->model_name);
    gs__grpc_reply_error(reply, GS__GRPC_INVALID_ARGUMENT, url);
    json_decref(params);
  } else {
    gs__http_response_t resp = {.infer_header_len = -1};
    route_post(repo, url, json_pack("{s:o}", "parameters", params), &resp);
    Inference__RepositoryModelLoadResponse r =
        INFERENCE__REPOSITORY_MODEL_LOAD_RESPONSE__INIT;
    if (resp.status == 200)
      gs__grpc_reply_message(reply, &r.base);
    else
      gs__grpc_reply_http_error(reply, &resp);
    gs__http_response_release(&resp);
  }
  inference__repository_model_load_request__free_unpacked(q, NULL);
}

int gs__grpc_call(gs__repo_t *repo, gs__grpc_method_t method,
                  const uint8_t *msg, size_t len, gs__grpc_reply_t *reply,
                  gs__infer_job_t *job) {
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
  case GS__GRPC_REPOSITORY_INDEX:
  case GS__GRPC_REPOSITORY_MODEL_LOAD:
  case GS__GRPC_REPOSITORY_MODEL_UNLOAD:
    repository_call(repo, method, msg, len, reply);
    return 0;
  case GS__GRPC_MODEL_INFER:
    break;
  case GS__GRPC_SYSTEM_SHM_STATUS:
  case GS__GRPC_SYSTEM_SHM_REGISTER:
  case GS__GRPC_SYSTEM_SHM_UNREGISTER:
  case GS__GRPC_CUDA_SHM_STATUS:
  case GS__GRPC_CUDA_SHM_REGISTER:
  case GS__GRPC_CUDA_SHM_UNREGISTER:
    gs__shm_grpc_call(repo, method_names[method], msg, len, reply);
    return 0;
  default:
    gs__grpc_reply_error(reply, GS__GRPC_UNIMPLEMENTED,
                         "this method is not implemented by gpuslice's worker");
    return 0;
  }
  return gs__grpc_infer_job(repo, msg, len, reply, job);
}
