/* The worker's routes: the HTTP listener's handler. Maps one request (URL
 * and method) to one response for every endpoint of the protocol, or to an
 * infer job on the model it names, submitted to the thread pool (jobs.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/repo_files.h"
#include "worker/shm.h"
#include "worker/worker_int.h"

#define MAX_SEGMENTS 8

/* Splits the path (query dropped) into segments, in place. strtok_r: one
 * process may run several workers' loops at once (green instances). */
static unsigned split_path(char *url, char **seg) {
  unsigned n = 0;
  char *q = strchr(url, '?'), *save = NULL;
  if (q)
    *q = '\0';
  for (char *s = strtok_r(url, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
    if (n == MAX_SEGMENTS)
      return MAX_SEGMENTS + 1;
    seg[n++] = s;
  }
  return n;
}

static void not_found(gs__http_response_t *resp) {
  gs__http_response_error(resp, 404, "Not Found");
}

static void empty(gs__http_response_t *resp, int status) {
  gs__http_response_release(resp);
  resp->status = status;
}

static bool server_ready(const gs__repo_t *repo) {
  for (unsigned i = 0; i < repo->n; i++)
    if (repo->models[i].state == GS__MODEL_UNAVAILABLE)
      return false;
  return true;
}

static json_t *server_metadata(const gs__repo_t *repo) {
  return json_pack("{s:s, s:s, s:[s,s,s,s,s]}", "name", repo->server_name,
                   "version", GS_WORKER_VERSION, "extensions",
                   "binary_tensor_data", "statistics", "model_repository",
                   "system_shared_memory", "cuda_shared_memory");
}

/* The model a request names, or an error response (404 unknown model or
 * version, not_ready_status not ready); with job, the job starts on it. */
static gs__model_entry_t *model_for(gs__repo_t *repo, const char *name,
                                    const char *version, int not_ready_status,
                                    gs__infer_job_t *job,
                                    gs__http_response_t *resp) {
  gs_error_t err = {0};
  int status;
  gs__model_entry_t *m =
      gs__repo_ready(repo, name, version, not_ready_status, job, &status, &err);
  if (!m)
    gs__http_response_error(resp, status, err.msg);
  return m;
}

/* Every READY version's statistics, of one model (only) when given, of one
 * version when given too. */
static json_t *stats_doc(gs__repo_t *repo, const char *only,
                         const char *version) {
  json_t *a = json_array();
  for (unsigned i = 0; i < repo->n; i++) {
    gs__model_entry_t *m = &repo->models[i];
    if ((!only || !strcmp(only, m->name)) &&
        (!version || m == gs__repo_find_version(repo, m->name, version)) &&
        m->state == GS__MODEL_READY)
      json_array_append_new(a, gs__model_stats_json(m));
  }
  return json_pack("{s:o}", "model_stats", a);
}

/* The body's "parameters" object (NULL when absent); false with the
 * response set when the body is not a JSON object. */
static bool body_parameters(const gs__http_request_t *req, json_t **root,
                            json_t **params, gs__http_response_t *resp) {
  json_error_t jerr;
  *root = NULL;
  *params = NULL;
  if (!req->body_len)
    return true;
  *root = json_loadb(req->body, req->body_len, 0, &jerr);
  *params = json_object_get(*root, "parameters");
  if (json_is_object(*root) && (!*params || json_is_object(*params)))
    return true;
  char msg[256];
  snprintf(msg, sizeof msg,
           "the body must be a JSON object with an object \"parameters\": "
           "%.160s",
           *root ? "parameters is not an object" : jerr.text);
  gs__http_response_error(resp, 400, msg);
  json_decref(*root);
  return false;
}

/* POST load with {"parameters": {"config": JSON string}}: Triton's
 * override; with "file:VERSION/NAME" keys (base64) the model's files come
 * in the request (repo_files.c). */
static void repository_load(gs__repo_t *repo, const char *name, json_t *params,
                            gs__http_response_t *resp) {
  json_t *config = json_object_get(params, "config");
  char msg[512];
  if (config && !json_is_string(config)) {
    snprintf(msg, sizeof msg,
             "failed to load '%.128s': the parameter 'config' must be a "
             "string holding the model configuration as JSON",
             name);
    gs__http_response_error(resp, 400, msg);
    return;
  }
  gs_error_t err;
  if (gs__repo_has_files(params)) {
    int status =
        gs__repo_load_files(repo, name, params, json_string_value(config),
                            json_string_length(config), &err);
    if (status == 200)
      empty(resp, 200);
    else
      gs__http_response_error(resp, status, err.msg);
    return;
  }
  int rc = gs__repo_load_config(repo, name, json_string_value(config),
                                json_string_length(config), &err);
  if (rc == GS_OK)
    empty(resp, 200);
  else
    gs__http_response_error(resp, rc == GS_ENOTFOUND && !config ? 500 : 400,
                            err.msg);
}

static int route_repository(gs__repo_t *repo, gs__http_request_t *req,
                            char **seg, unsigned n, bool post,
                            gs__http_response_t *resp) {
  bool index = n == 3 && strcmp(seg[2], "index") == 0;
  if (!index &&
      (n != 5 || strcmp(seg[2], "models") != 0 ||
       (strcmp(seg[4], "load") != 0 && strcmp(seg[4], "unload") != 0)))
    return not_found(resp), 0;
  if (!post)
    return gs__http_response_error(resp, 400, "use POST"), 0;
  json_t *root, *params;
  if (!body_parameters(req, &root, &params, resp))
    return 0;
  if (index) {
    json_t *ready = json_object_get(root, "ready");
    if (ready && !json_is_boolean(ready))
      gs__http_response_error(resp, 400, "\"ready\" must be true or false");
    else
      gs__http_response_json(resp, 200,
                             gs__repo_index_json(repo, json_is_true(ready)));
  } else if (repo->mode != GS_MODEL_CONTROL_EXPLICIT) {
    /* Triton's words and status (UNAVAILABLE) in modes none and poll. */
    gs__http_response_error(resp, 503,
                            "explicit model load / unload is not allowed if "
                            "polling is enabled (start the worker with "
                            "--model-control-mode explicit)");
  } else if (strcmp(seg[4], "load") == 0) {
    repository_load(repo, seg[3], params, resp);
  } else if (!gs__repo_find(repo, seg[3])) {
    gs__http_response_error(resp, 404, "failed to unload: no such model");
  } else {
    /* unload_dependents: no model here has dependents (no ensembles). */
    gs__repo_unload_name(repo, seg[3]);
    empty(resp, 200);
  }
  json_decref(root);
  return 0;
}

/* /v2/models/{m}[/versions/{v}][/ready|/config|/stats|/infer] */
static int route_model(gs__repo_t *repo, gs__http_request_t *req, char **seg,
                       unsigned n, gs__http_response_t *resp,
                       gs__infer_job_t *job) {
  const char *version = NULL, *action = NULL;
  bool get = req->method == HTTP_GET, post = req->method == HTTP_POST;
  if (n >= 5 && strcmp(seg[3], "versions") == 0) {
    version = seg[4];
    action = n == 6 ? seg[5] : NULL;
    if (n > 6)
      return not_found(resp), 0;
  } else if (n <= 4) {
    action = n == 4 ? seg[3] : NULL;
  } else {
    return not_found(resp), 0;
  }
  if (action && strcmp(action, "ready") && strcmp(action, "config") &&
      strcmp(action, "stats") && strcmp(action, "infer"))
    return not_found(resp), 0;
  bool infer = action && strcmp(action, "infer") == 0;
  if ((infer && !post) || (!infer && !get))
    return gs__http_response_error(resp, 400, infer ? "use POST" : "use GET"),
           0;
  gs__model_entry_t *m = model_for(repo, seg[2], version, infer ? 503 : 400,
                                   infer ? job : NULL, resp);
  if (!m)
    return 0;
  if (!action) {
    json_t *doc = gs__model_metadata_json(m);
    if (doc) /* every READY version, as Triton lists them */
      json_object_set_new(doc, "versions",
                          gs__repo_versions_json(repo, m->name));
    gs__http_response_json(resp, 200, doc);
  } else if (strcmp(action, "ready") == 0)
    empty(resp, 200);
  else if (strcmp(action, "config") == 0)
    gs__http_response_json(resp, 200, gs__model_config_json(m));
  else if (strcmp(action, "stats") == 0)
    gs__http_response_json(resp, 200, stats_doc(repo, m->name, version));
  else {
    job->req = *req;
    memset(req, 0, sizeof *req); /* the job owns url and body now */
    return 1;
  }
  return 0;
}

int gs__route(gs__repo_t *repo, gs__http_request_t *req,
              gs__http_response_t *resp, gs__infer_job_t *job) {
  char *seg[MAX_SEGMENTS];
  char *url = strdup(req->url ? req->url : "");
  if (!url)
    return gs__http_response_error(resp, 500, "out of memory"), 0;
  unsigned n = split_path(url, seg);
  bool get = req->method == HTTP_GET, post = req->method == HTTP_POST;
  int rc = 0;
  if (n == 0 || n > MAX_SEGMENTS || strcmp(seg[0], "v2") != 0) {
    if (n == 1 && strcmp(seg[0], "metrics") == 0 && get) {
      gs__http_response_release(resp);
      resp->status = 200;
      resp->body = gs__metrics_text(repo, &resp->body_len);
      resp->content_type = "text/plain; version=0.0.4";
      if (!resp->body)
        gs__http_response_error(resp, 500, "out of memory");
    } else {
      not_found(resp);
    }
  } else if (n == 1) {
    if (get)
      gs__http_response_json(resp, 200, server_metadata(repo));
    else
      gs__http_response_error(resp, 400, "use GET");
  } else if (strcmp(seg[1], "health") == 0 && n == 3 && get &&
             strcmp(seg[2], "live") == 0) {
    empty(resp, 200);
  } else if (strcmp(seg[1], "health") == 0 && n == 3 && get &&
             strcmp(seg[2], "ready") == 0) {
    empty(resp, server_ready(repo) ? 200 : 400);
  } else if (n >= 3 && (strcmp(seg[1], "systemsharedmemory") == 0 ||
                        strcmp(seg[1], "cudasharedmemory") == 0)) {
    gs__shm_route(repo, req, seg, n, resp);
  } else if (strcmp(seg[1], "repository") == 0) {
    rc = route_repository(repo, req, seg, n, post, resp);
  } else if (strcmp(seg[1], "models") == 0 && n == 3 &&
             strcmp(seg[2], "stats") == 0 && get) {
    gs__http_response_json(resp, 200, stats_doc(repo, NULL, NULL));
  } else if (strcmp(seg[1], "models") == 0 && n >= 3) {
    rc = route_model(repo, req, seg, n, resp, job);
  } else {
    not_found(resp);
  }
  free(url);
  return rc;
}

static bool http_gone(const gs__infer_job_t *job) {
  return gs__http_conn_gone(job->data);
}

static void after_infer(gs__infer_job_t *job) {
  gs__http_conn_t *c = job->data;
  gs__infer_job_finish(job);
  gs__http_conn_respond(c, &job->resp);
}

void gs__route_http(void *ctx, gs__http_conn_t *c, gs__http_request_t *req) {
  gs__route_ctx_t *rc = ctx;
  gs__infer_job_t *job = gs__http_conn_user(c); /* the connection's bytes */
  gs__http_response_t resp = {.infer_header_len = -1};
  memset(job, 0, sizeof *job);
  job->resp.infer_header_len = -1;
  if (gs__route(rc->repo, req, &resp, job) == 1) {
    job->data = c;
    job->gone = http_gone;
    int qrc = gs__infer_submit(rc->loop, job, after_infer);
    if (qrc == 0)
      return;
    char msg[256];
    gs__infer_queue_msg(job, qrc, msg, sizeof msg);
    gs__infer_job_finish(job);
    gs__http_response_error(&resp, 500, msg);
  }
  gs__http_conn_respond(c, &resp);
}
