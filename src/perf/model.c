/* What gpuslice perf learns from the server before it loads it: whether it
 * keeps statistics (GET /v2's extensions), the model's inputs and outputs
 * (metadata) and max_batch_size (config), over HTTP or their gRPC calls;
 * and the server's statistics as they change during a measurement. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_service.pb-c.h"
#include "perf/perf_int.h"

#define GRPC_SERVICE "/inference.GRPCInferenceService/"

void gs__perf_answer_error(const gs__perf_conn_t *c, char *out, size_t size) {
  if (c->grpc) {
    snprintf(out, size, "%s", c->message[0] ? c->message : "(no message)");
    return;
  }
  json_t *root =
      c->body.data ? json_loadb(c->body.data, c->body.len, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(root, "error"));
  snprintf(out, size, "%.*s", msg ? (int)strlen(msg) : (int)c->body.len,
           msg ? msg : (c->body.data ? c->body.data : ""));
  json_decref(root);
}

int gs__perf_get_request(const char *path, const char *authority,
                         gs__perf_req_t *req, uint8_t **data) {
  int n =
      snprintf(NULL, 0, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, authority);
  *data = malloc((size_t)n + 1);
  if (!*data)
    return GS_ENOMEM;
  snprintf((char *)*data, (size_t)n + 1, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n",
           path, authority);
  *req = (gs__perf_req_t){path, *data, (size_t)n};
  return GS_OK;
}

/* A gRPC call's message framed (uncompressed, 4-byte length). */
int gs__perf_grpc_request(const char *path, const ProtobufCMessage *msg,
                          gs__perf_req_t *req, uint8_t **data) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  *data = malloc(len + 5);
  if (!*data)
    return GS_ENOMEM;
  (*data)[0] = 0;
  for (int i = 0; i < 4; i++)
    (*data)[1 + i] = (uint8_t)(len >> (24 - 8 * i));
  protobuf_c_message_pack(msg, *data + 5);
  *req = (gs__perf_req_t){path, *data, len + 5};
  return GS_OK;
}

/* The model's URL: /v2/models/NAME[/versions/V]SUFFIX. */
static void model_path(const gs__perf_ctx_t *ctx, const char *suffix, char *out,
                       size_t size) {
  const char *v = ctx->opts->version;
  if (v && *v)
    snprintf(out, size, "/v2/models/%s/versions/%s%s", ctx->opts->model, v,
             suffix);
  else
    snprintf(out, size, "/v2/models/%s%s", ctx->opts->model, suffix);
}

/* One request, its answer's body on success (status 200 / gRPC OK), or an
 * error naming what failed with the server's message. */
int gs__perf_call(gs__perf_ctx_t *ctx, gs__perf_req_t *req, const char *what,
                  char **body, size_t *len, gs_error_t *err) {
  int status = 0;
  bool grpc = ctx->opts->protocol == GS_PERF_GRPC;
  int rc = gs__perf_fetch(&ctx->loop, (const struct sockaddr *)&ctx->addr, grpc,
                          ctx->authority, req, &status, body, len, err);
  if (rc != GS_OK)
    return rc;
  if (grpc ? status == 0 : status == 200)
    return GS_OK;
  json_t *root = grpc ? NULL : json_loadb(*body, *len, 0, NULL);
  const char *msg = json_string_value(json_object_get(root, "error"));
  int code = (grpc ? status == 5 : status == 404)   ? GS_ENOTFOUND
             : (grpc ? status == 3 : status == 400) ? GS_EINVAL
                                                    : GS_ESYSTEM;
  rc = gs_error_set(err, code, "failed to get %s: %s (%s %d)", what,
                    msg ? msg : *body, grpc ? "gRPC status" : "HTTP", status);
  json_decref(root);
  free(*body);
  *body = NULL;
  return rc;
}

static int tensor_add(gs__perf_model_t *m, const char *name, const char *dt,
                      const int64_t *shape, size_t rank, gs_error_t *err) {
  if (m->n_inputs == GS__PERF_MAX_TENSORS || rank > GS_PERF_MAX_DIMS + 1 ||
      strlen(name) >= sizeof m->inputs[0].name ||
      strlen(dt) >= sizeof m->inputs[0].datatype)
    return gs_error_set(err, GS_ELIMIT,
                        "model input '%s': more than %u inputs or %u dims",
                        name, GS__PERF_MAX_TENSORS, GS_PERF_MAX_DIMS);
  gs__perf_tensor_t *t = &m->inputs[m->n_inputs++];
  snprintf(t->name, sizeof t->name, "%s", name);
  snprintf(t->datatype, sizeof t->datatype, "%s", dt);
  t->rank = (unsigned)rank;
  memcpy(t->shape, shape, rank * sizeof *shape);
  return GS_OK;
}

static int http_metadata(gs__perf_model_t *m, json_t *root, gs_error_t *err) {
  json_t *in = json_object_get(root, "inputs"), *out, *v;
  size_t i;
  const char *ver =
      json_string_value(json_array_get(json_object_get(root, "versions"), 0));
  if (ver && !m->version[0])
    snprintf(m->version, sizeof m->version, "%s", ver);
  json_array_foreach(in, i, v) {
    int64_t shape[GS_PERF_MAX_DIMS + 2];
    json_t *js = json_object_get(v, "shape"), *d;
    size_t k, rank = json_array_size(js);
    json_array_foreach(js, k, d) if (k < GS_PERF_MAX_DIMS + 2) shape[k] =
        json_integer_value(d);
    const char *name = json_string_value(json_object_get(v, "name"));
    const char *dt = json_string_value(json_object_get(v, "datatype"));
    if (!name || !dt)
      return gs_error_set(err, GS_EPARSE,
                          "model metadata: input %zu has no "
                          "name or datatype",
                          i);
    int rc = tensor_add(m, name, dt, shape, rank, err);
    if (rc != GS_OK)
      return rc;
  }
  out = json_object_get(root, "outputs");
  json_array_foreach(out, i, v) {
    const char *name = json_string_value(json_object_get(v, "name"));
    if (name && m->n_outputs < GS__PERF_MAX_TENSORS)
      snprintf(m->outputs[m->n_outputs++], sizeof m->outputs[0], "%s", name);
  }
  return GS_OK;
}

static int http_fetch(gs__perf_ctx_t *ctx, const char *path, const char *what,
                      json_t **root, gs_error_t *err) {
  gs__perf_req_t req;
  uint8_t *data;
  char *body = NULL;
  size_t len = 0;
  if (gs__perf_get_request(path, ctx->authority, &req, &data) != GS_OK)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = gs__perf_call(ctx, &req, what, &body, &len, err);
  free(data);
  if (rc == GS_OK && !(*root = json_loadb(body, len, 0, NULL)))
    rc = gs_error_set(err, GS_EPARSE, "%s: the server's answer is not JSON",
                      what);
  free(body);
  return rc;
}

static bool has_statistics(json_t *ext) {
  size_t i;
  json_t *v;
  json_array_foreach(ext, i, v) if (json_string_value(v) &&
                                    strcmp(json_string_value(v),
                                           "statistics") == 0) return true;
  return false;
}

static int http_model(gs__perf_ctx_t *ctx, gs_error_t *err) {
  json_t *server = NULL, *meta = NULL, *config = NULL;
  char path[600];
  int rc = http_fetch(ctx, "/v2", "server metadata", &server, err);
  if (rc == GS_OK) {
    ctx->model.statistics =
        has_statistics(json_object_get(server, "extensions"));
    model_path(ctx, "", path, sizeof path);
    rc = http_fetch(ctx, path, "model metadata", &meta, err);
  }
  if (rc == GS_OK)
    rc = http_metadata(&ctx->model, meta, err);
  if (rc == GS_OK) {
    model_path(ctx, "/config", path, sizeof path);
    rc = http_fetch(ctx, path, "model config", &config, err);
  }
  if (rc == GS_OK)
    ctx->model.max_batch_size =
        (unsigned)json_integer_value(json_object_get(config, "max_batch_size"));
  json_decref(server);
  json_decref(meta);
  json_decref(config);
  return rc;
}

/* A gRPC call whose request has the model's name and version (fields 1 and
 * 2 of ModelMetadata-, ModelConfig- and ModelStatisticsRequest alike). */
static int grpc_model_call(gs__perf_ctx_t *ctx, const char *method,
                           const char *what, char **body, size_t *len,
                           gs_error_t *err) {
  Inference__ModelMetadataRequest m = INFERENCE__MODEL_METADATA_REQUEST__INIT;
  gs__perf_req_t req;
  uint8_t *data;
  m.name = (char *)ctx->opts->model;
  m.version = (char *)(ctx->opts->version ? ctx->opts->version : "");
  if (gs__perf_grpc_request(method, &m.base, &req, &data) != GS_OK)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = gs__perf_call(ctx, &req, what, body, len, err);
  free(data);
  return rc;
}

static int grpc_metadata(gs__perf_model_t *m, const char *body, size_t len,
                         gs_error_t *err) {
  Inference__ModelMetadataResponse *r =
      inference__model_metadata_response__unpack(NULL, len,
                                                 (const uint8_t *)body);
  if (!r)
    return gs_error_set(err, GS_EPARSE, "model metadata: malformed answer");
  int rc = GS_OK;
  if (r->n_versions && !m->version[0])
    snprintf(m->version, sizeof m->version, "%s", r->versions[0]);
  for (size_t i = 0; rc == GS_OK && i < r->n_inputs; i++)
    rc = tensor_add(m, r->inputs[i]->name, r->inputs[i]->datatype,
                    r->inputs[i]->shape, r->inputs[i]->n_shape, err);
  for (size_t i = 0; i < r->n_outputs && m->n_outputs < GS__PERF_MAX_TENSORS;
       i++)
    snprintf(m->outputs[m->n_outputs++], sizeof m->outputs[0], "%s",
             r->outputs[i]->name);
  inference__model_metadata_response__free_unpacked(r, NULL);
  return rc;
}

static int grpc_server(gs__perf_ctx_t *ctx, gs_error_t *err) {
  Inference__ServerMetadataRequest m = INFERENCE__SERVER_METADATA_REQUEST__INIT;
  gs__perf_req_t req;
  uint8_t *data;
  char *body = NULL;
  size_t len = 0;
  if (gs__perf_grpc_request(GRPC_SERVICE "ServerMetadata", &m.base, &req,
                            &data))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = gs__perf_call(ctx, &req, "server metadata", &body, &len, err);
  free(data);
  Inference__ServerMetadataResponse *r =
      rc == GS_OK ? inference__server_metadata_response__unpack(
                        NULL, len, (const uint8_t *)body)
                  : NULL;
  for (size_t i = 0; r && i < r->n_extensions; i++)
    if (strcmp(r->extensions[i], "statistics") == 0)
      ctx->model.statistics = true;
  if (rc == GS_OK && !r)
    rc = gs_error_set(err, GS_EPARSE, "server metadata: malformed answer");
  if (r)
    inference__server_metadata_response__free_unpacked(r, NULL);
  free(body);
  return rc;
}

static int grpc_model(gs__perf_ctx_t *ctx, gs_error_t *err) {
  char *body = NULL;
  size_t len = 0;
  int rc = grpc_server(ctx, err);
  if (rc == GS_OK)
    rc = grpc_model_call(ctx, GRPC_SERVICE "ModelMetadata", "model metadata",
                         &body, &len, err);
  if (rc == GS_OK)
    rc = grpc_metadata(&ctx->model, body, len, err);
  free(body);
  body = NULL;
  if (rc == GS_OK)
    rc = grpc_model_call(ctx, GRPC_SERVICE "ModelConfig", "model config", &body,
                         &len, err);
  Inference__ModelConfigResponse *r =
      rc == GS_OK ? inference__model_config_response__unpack(
                        NULL, len, (const uint8_t *)body)
                  : NULL;
  if (r && r->config)
    ctx->model.max_batch_size = (unsigned)r->config->max_batch_size;
  else if (rc == GS_OK)
    rc = gs_error_set(err, GS_EPARSE, "model config: malformed answer");
  if (r)
    inference__model_config_response__free_unpacked(r, NULL);
  free(body);
  return rc;
}

/* The statistics request of the load loop, built once. */
static int stats_request(gs__perf_ctx_t *ctx) {
  if (ctx->opts->protocol == GS_PERF_GRPC) {
    Inference__ModelStatisticsRequest m =
        INFERENCE__MODEL_STATISTICS_REQUEST__INIT;
    m.name = ctx->model.name;
    m.version = ctx->model.version;
    return gs__perf_grpc_request(GRPC_SERVICE "ModelStatistics", &m.base,
                                 &ctx->stats_req, &ctx->stats_data);
  }
  char path[600];
  snprintf(path, sizeof path, "/v2/models/%s/versions/%s/stats",
           ctx->model.name, ctx->model.version);
  return gs__perf_get_request(path, ctx->authority, &ctx->stats_req,
                              &ctx->stats_data);
}

int gs__perf_model_fetch(gs__perf_ctx_t *ctx, gs_error_t *err) {
  gs__perf_model_t *m = &ctx->model;
  snprintf(m->name, sizeof m->name, "%s", ctx->opts->model);
  snprintf(m->version, sizeof m->version, "%s",
           ctx->opts->version ? ctx->opts->version : "");
  int rc = ctx->opts->protocol == GS_PERF_GRPC ? grpc_model(ctx, err)
                                               : http_model(ctx, err);
  if (rc == GS_OK && m->statistics && stats_request(ctx) != GS_OK)
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  return rc;
}

static void json_duration(json_t *stats, const char *key, uint64_t *ns) {
  *ns = (uint64_t)json_integer_value(
      json_object_get(json_object_get(stats, key), "ns"));
}

static int http_stats(const char *body, size_t len, gs__perf_snapshot_t *s,
                      gs_error_t *err) {
  json_t *root = json_loadb(body, len, 0, NULL);
  json_t *m = json_array_get(json_object_get(root, "model_stats"), 0);
  json_t *is = json_object_get(m, "inference_stats");
  if (!is) {
    json_decref(root);
    return gs_error_set(err, GS_EPARSE,
                        "the server's statistics are not "
                        "{\"model_stats\":[{\"inference_stats\":...}]}");
  }
  s->success = (uint64_t)json_integer_value(
      json_object_get(json_object_get(is, "success"), "count"));
  s->inferences =
      (uint64_t)json_integer_value(json_object_get(m, "inference_count"));
  s->executions =
      (uint64_t)json_integer_value(json_object_get(m, "execution_count"));
  json_duration(is, "success", &s->request_ns);
  json_duration(is, "queue", &s->queue_ns);
  json_duration(is, "compute_input", &s->input_ns);
  json_duration(is, "compute_infer", &s->infer_ns);
  json_duration(is, "compute_output", &s->output_ns);
  json_decref(root);
  return GS_OK;
}

static uint64_t ns_of(const Inference__StatisticDuration *d) {
  return d ? d->ns : 0;
}

static int grpc_stats(const char *body, size_t len, gs__perf_snapshot_t *s,
                      gs_error_t *err) {
  Inference__ModelStatisticsResponse *r =
      inference__model_statistics_response__unpack(NULL, len,
                                                   (const uint8_t *)body);
  if (!r || r->n_model_stats == 0 || !r->model_stats[0]->inference_stats) {
    if (r)
      inference__model_statistics_response__free_unpacked(r, NULL);
    return gs_error_set(err, GS_EPARSE, "malformed ModelStatistics answer");
  }
  const Inference__ModelStatistics *m = r->model_stats[0];
  const Inference__InferStatistics *is = m->inference_stats;
  s->success = is->success ? is->success->count : 0;
  s->inferences = m->inference_count;
  s->executions = m->execution_count;
  s->request_ns = ns_of(is->success);
  s->queue_ns = ns_of(is->queue);
  s->input_ns = ns_of(is->compute_input);
  s->infer_ns = ns_of(is->compute_infer);
  s->output_ns = ns_of(is->compute_output);
  inference__model_statistics_response__free_unpacked(r, NULL);
  return GS_OK;
}

int gs__perf_stats_parse(const gs__perf_ctx_t *ctx, const char *body,
                         size_t len, gs__perf_snapshot_t *s, gs_error_t *err) {
  memset(s, 0, sizeof *s);
  return ctx->opts->protocol == GS_PERF_GRPC ? grpc_stats(body, len, s, err)
                                             : http_stats(body, len, s, err);
}
