/* The worker's router: maps one HTTP request to one response for every
 * endpoint of the protocol, and runs an infer (decode, run, encode) as a
 * job that the server hands to a thread. No sockets here. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/grpc_int.h" /* gs__grpc_infer_decode */
#include "worker/worker_int.h"

#define MAX_SEGMENTS 8

uint64_t gs__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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

static json_t *server_metadata(void) {
  return json_pack("{s:s, s:s, s:[s,s,s]}", "name", "gpuslice", "version",
                   GS_WORKER_VERSION, "extensions", "binary_tensor_data",
                   "statistics", "model_repository");
}

/* The model a request names, or an error response (404 unknown model or
 * version, 400/503 not ready per need_ready). */
static gs__model_entry_t *model_for(gs__repo_t *repo, const char *name,
                                    const char *version, int not_ready_status,
                                    gs__http_response_t *resp) {
  char msg[1024];
  gs__model_entry_t *m = gs__repo_find(repo, name);
  if (!m) {
    snprintf(msg, sizeof msg,
             "Request for unknown model: '%.128s' is not "
             "found",
             name);
    gs__http_response_error(resp, 404, msg);
    return NULL;
  }
  if (version && m->state == GS__MODEL_READY &&
      strcmp(version, m->version) != 0) {
    snprintf(msg, sizeof msg,
             "Request for unknown model: '%.128s' version "
             "%.24s is not found",
             name, version);
    gs__http_response_error(resp, 404, msg);
    return NULL;
  }
  if (m->state != GS__MODEL_READY) {
    snprintf(msg, sizeof msg,
             "Request for unknown model: '%.128s' is not "
             "ready%s%.400s",
             name, m->reason[0] ? ": " : "", m->reason);
    gs__http_response_error(resp, not_ready_status, msg);
    return NULL;
  }
  return m;
}

static json_t *repository_index(const gs__repo_t *repo) {
  json_t *a = json_array();
  for (unsigned i = 0; i < repo->n; i++) {
    const gs__model_entry_t *m = &repo->models[i];
    json_t *e =
        json_pack("{s:s, s:s}", "name", m->name, "state",
                  m->state == GS__MODEL_READY ? "READY" : "UNAVAILABLE");
    if (m->version[0])
      json_object_set_new(e, "version", json_string(m->version));
    if (m->state != GS__MODEL_READY)
      json_object_set_new(e, "reason", json_string(m->reason));
    json_array_append_new(a, e);
  }
  return a;
}

static json_t *stats_doc(gs__repo_t *repo, const gs__model_entry_t *only) {
  json_t *a = json_array();
  for (unsigned i = 0; i < repo->n; i++)
    if ((!only || only == &repo->models[i]) &&
        repo->models[i].state == GS__MODEL_READY)
      json_array_append_new(a, gs__model_stats_json(&repo->models[i]));
  return json_pack("{s:o}", "model_stats", a);
}

static int route_repository(gs__repo_t *repo, char **seg, unsigned n, bool post,
                            gs__http_response_t *resp) {
  if (n == 3 && strcmp(seg[2], "index") == 0) {
    if (!post)
      return gs__http_response_error(resp, 400, "use POST"), 0;
    gs__http_response_json(resp, 200, repository_index(repo));
    return 0;
  }
  if (n != 5 || strcmp(seg[2], "models") != 0 ||
      (strcmp(seg[4], "load") != 0 && strcmp(seg[4], "unload") != 0))
    return not_found(resp), 0;
  if (!post)
    return gs__http_response_error(resp, 400, "use POST"), 0;
  if (strcmp(seg[4], "unload") == 0) {
    gs__model_entry_t *m = gs__repo_find(repo, seg[3]);
    if (!m)
      return gs__http_response_error(resp, 404,
                                     "failed to unload: no such "
                                     "model"),
             0;
    gs__repo_unload(repo, m);
    return empty(resp, 200), 0;
  }
  gs_error_t err;
  int rc = gs__repo_load(repo, seg[3], &err);
  if (rc == GS_OK)
    empty(resp, 200);
  else
    gs__http_response_error(resp, rc == GS_ENOTFOUND ? 404 : 400, err.msg);
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
  gs__model_entry_t *m =
      model_for(repo, seg[2], version, infer ? 503 : 400, resp);
  if (!m)
    return 0;
  if (!action)
    gs__http_response_json(resp, 200, gs__model_metadata_json(m));
  else if (strcmp(action, "ready") == 0)
    empty(resp, 200);
  else if (strcmp(action, "config") == 0)
    gs__http_response_json(resp, 200, gs__model_config_json(m));
  else if (strcmp(action, "stats") == 0)
    gs__http_response_json(resp, 200, stats_doc(repo, m));
  else {
    memset(job, 0, sizeof *job);
    job->entry = m;
    job->slot = m->slot;
    m->slot->refs++;
    job->req = *req;
    memset(req, 0, sizeof *req); /* the job owns url and body now */
    job->t_received = gs__now_ns();
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
      gs__http_response_json(resp, 200, server_metadata());
    else
      gs__http_response_error(resp, 400, "use GET");
  } else if (strcmp(seg[1], "health") == 0 && n == 3 && get &&
             strcmp(seg[2], "live") == 0) {
    empty(resp, 200);
  } else if (strcmp(seg[1], "health") == 0 && n == 3 && get &&
             strcmp(seg[2], "ready") == 0) {
    empty(resp, server_ready(repo) ? 200 : 400);
  } else if (strcmp(seg[1], "repository") == 0) {
    rc = route_repository(repo, seg, n, post, resp);
  } else if (strcmp(seg[1], "models") == 0 && n == 3 &&
             strcmp(seg[2], "stats") == 0 && get) {
    gs__http_response_json(resp, 200, stats_doc(repo, NULL));
  } else if (strcmp(seg[1], "models") == 0 && n >= 3) {
    rc = route_model(repo, req, seg, n, resp, job);
  } else {
    not_found(resp);
  }
  free(url);
  return rc;
}

/* The rows every input gives as dim 0; they must agree. */
static int batch_rows(const gs__infer_request_t *ir, const char *model,
                      uint64_t *rows, gs_error_t *err) {
  for (size_t i = 0; i < ir->n_inputs; i++) {
    const gs_tensor_t *t = &ir->inputs[i];
    if (t->rank == 0)
      return gs_error_set(err, GS_EINVAL,
                          "input '%s' for model '%s' has no batch dimension",
                          t->name, model);
    if (i > 0 && (uint64_t)t->shape[0] != *rows)
      return gs_error_set(err, GS_EINVAL,
                          "inputs for model '%s' disagree on the batch size "
                          "(%llu and %lld)",
                          model, (unsigned long long)*rows,
                          (long long)t->shape[0]);
    *rows = (uint64_t)t->shape[0];
  }
  return GS_OK;
}

int gs__infer_job_decode(gs__infer_job_t *job, gs_error_t *err) {
  const gs__model_slot_t *slot = job->slot;
  int status =
      job->grpc
          ? gs__grpc_infer_decode(&job->ir, &slot->io, job->grpc, err)
          : gs__infer_decode(&job->ir, &slot->io, job->req.body,
                             job->req.body_len, job->req.infer_header_len, err);
  job->batch = 1;
  if (status != 0 || slot->max_batch_size == 0)
    return status;
  if (batch_rows(&job->ir, slot->name, &job->batch, err) != GS_OK)
    return 400;
  /* Triton refuses a request larger than the model's batch. */
  if (job->batch > slot->max_batch_size)
    return gs_error_set(err, GS_EINVAL,
                        "inference request batch-size must be <= %u for "
                        "'%s'",
                        slot->max_batch_size, slot->name),
           400;
  return 0;
}

/* Runs the request on s. A warm model with a batch dimension runs it
 * padded with zero rows to a planned size, as a batch would (a new shape
 * would plan, and on a GPU capture, on this request); *rows is the rows
 * run. */
static int run_padded(gs__infer_job_t *job, gs_session_t *s, uint64_t *rows,
                      gs_error_t *err) {
  const gs__model_slot_t *slot = job->slot;
  gs__infer_request_t *ir = &job->ir;
  *rows = job->batch;
  if (!slot->warm || slot->max_batch_size == 0 || job->batch == 0)
    return gs_session_run(s, ir->inputs, ir->n_inputs, err);
  const gs__infer_request_t *reqs[1] = {ir};
  gs_tensor_t ins[GS__INFER_MAX_TENSORS];
  *rows = gs__batch_padded_rows(slot, job->batch);
  int rc = gs__batch_concat_to(ins, gs__batch_session_buf, s, reqs, 1,
                               &slot->io, *rows, err);
  return rc == GS_OK ? gs_session_run(s, ins, slot->io.n_inputs, err) : rc;
}

/* On a thread of the pool: decode, run, encode. */
void gs__infer_job_run(gs__infer_job_t *job) {
  gs_error_t err = {0};
  int rc;
  gs__infer_request_t *ir = &job->ir;
  gs__model_io_t *io = &job->slot->io;
  job->t_started = gs__now_ns();
  int status = gs__infer_job_decode(job, &err);
  job->t_input_done = gs__now_ns();
  gs_session_t *s = NULL;
  if (status == 0 && !(s = gs__slot_get(job->slot, &err)))
    status = 500;
  uint64_t rows = 0;
  if (status == 0 && (rc = run_padded(job, s, &rows, &err)) != GS_OK) {
    status = rc == GS_EINVAL || rc == GS_ELIMIT ? 400 : 500;
    gs__infer_job_note_error(job, &err);
  }
  job->t_infer_done = gs__now_ns();
  gs_tensor_t outs[GS__INFER_MAX_TENSORS], run_outs[GS__INFER_MAX_TENSORS];
  for (size_t i = 0; status == 0 && i < io->n_outputs; i++) {
    const gs_tensor_t *t = gs_session_output(s, i);
    if (!t)
      status = 500;
    else
      outs[i] = run_outs[i] = *t;
  }
  /* A padded run: the request's rows of each output. */
  if (status == 0 && rows != job->batch &&
      gs__batch_split(outs, run_outs, io->n_outputs, 0, job->batch, rows,
                      &err) != GS_OK)
    status = 500;
  if (status == 0 && gs__infer_encode(&job->resp, ir, io, outs, &err) != 0)
    status = err.code == GS_EINVAL ? 400 : 500;
  if (s)
    gs__slot_put(job->slot, s);
  if (status != 0)
    gs__http_response_error(&job->resp, status,
                            err.msg[0] ? err.msg : "inference failed");
  job->ok = status == 0;
  job->t_done = gs__now_ns();
  gs__infer_request_release(ir);
}

static void add(gs__stat_t *s, uint64_t ns) {
  s->count++;
  s->ns += ns;
}

void gs__batch_stats_add(gs__model_stats_t *st, uint64_t rows,
                         uint64_t input_ns, uint64_t infer_ns,
                         uint64_t output_ns) {
  size_t i = 0;
  while (i < st->n_batch && st->batch[i].batch_size < rows)
    i++;
  if (i == st->n_batch || st->batch[i].batch_size != rows) {
    gs__batch_stat_t *grown =
        realloc(st->batch, (st->n_batch + 1) * sizeof *grown);
    if (!grown)
      return; /* statistics only: the answer is not affected */
    st->batch = grown;
    memmove(&grown[i + 1], &grown[i], (st->n_batch - i) * sizeof *grown);
    memset(&grown[i], 0, sizeof *grown);
    grown[i].batch_size = rows;
    st->n_batch++;
  }
  add(&st->batch[i].compute_input, input_ns);
  add(&st->batch[i].compute_infer, infer_ns);
  add(&st->batch[i].compute_output, output_ns);
}

void gs__infer_job_note_error(gs__infer_job_t *job, const gs_error_t *err) {
  job->device_failed = err->code == GS_EDRIVER;
  if (job->device_failed)
    snprintf(job->device_error, sizeof job->device_error, "%.250s", err->msg);
}

void gs__infer_job_finish(gs__infer_job_t *job) {
  gs__model_stats_t *st = &job->entry->stats;
  if (job->device_failed)
    gs__repo_device_failed(job->entry, job->slot, job->device_error);
  uint64_t total = job->t_done - job->t_received;
  if (job->ok) {
    /* A batched request decodes before it queues: that is input work. */
    uint64_t input = job->decode_ns + job->t_input_done - job->t_started;
    add(&st->success, total);
    add(&st->queue, job->t_started - job->t_received - job->decode_ns);
    add(&st->compute_input, input);
    add(&st->compute_infer, job->t_infer_done - job->t_input_done);
    add(&st->compute_output, job->t_done - job->t_infer_done);
    /* Triton counts a batched request as dim 0 inferences. */
    st->inference_count += job->batch;
    if (!job->batched) { /* the batcher counts a batch's execution */
      st->execution_count++;
      gs__batch_stats_add(st, job->batch, input,
                          job->t_infer_done - job->t_input_done,
                          job->t_done - job->t_infer_done);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    st->last_inference_ms =
        (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  } else {
    add(&st->fail, total);
  }
  gs__infer_request_release(&job->ir);
  gs__slot_unref(job->slot);
  job->slot = NULL;
  free(job->req.url);
  free(job->req.body);
  job->req.url = job->req.body = NULL;
}

/* Appends to a growing text buffer; false when out of memory. */
static bool append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0)
      return false;
    if ((size_t)n < *cap - *len) {
      *len += (size_t)n;
      return true;
    }
    char *grown = realloc(*buf, *cap * 2 + (size_t)n);
    if (!grown)
      return false;
    *buf = grown;
    *cap = *cap * 2 + (size_t)n;
  }
}

char *gs__metrics_text(const gs__repo_t *repo, size_t *len) {
  static const struct {
    const char *name, *help;
    size_t off; /* offsetof a gs__stat_t in the stats */
    bool us;    /* the ns total, in microseconds; else the count */
  } rows[] = {
      {"nv_inference_request_success",
       "Number of successful inference "
       "requests",
       offsetof(gs__model_stats_t, success), false},
      {"nv_inference_request_failure", "Number of failed inference requests",
       offsetof(gs__model_stats_t, fail), false},
      {"nv_inference_request_duration_us",
       "Cumulative inference request "
       "duration in microseconds",
       offsetof(gs__model_stats_t, success), true},
      {"nv_inference_queue_duration_us",
       "Cumulative inference queuing "
       "duration in microseconds",
       offsetof(gs__model_stats_t, queue), true},
      {"nv_inference_compute_input_duration_us",
       "Cumulative compute input "
       "duration in microseconds",
       offsetof(gs__model_stats_t, compute_input), true},
      {"nv_inference_compute_infer_duration_us",
       "Cumulative compute "
       "inference duration in microseconds",
       offsetof(gs__model_stats_t, compute_infer), true},
      {"nv_inference_compute_output_duration_us",
       "Cumulative inference "
       "compute output duration in microseconds",
       offsetof(gs__model_stats_t, compute_output), true},
  };
  size_t cap = 4096;
  char *buf = malloc(cap);
  bool ok = buf != NULL;
  *len = 0;
  for (size_t r = 0; ok && r < sizeof rows / sizeof rows[0]; r++) {
    ok = append(&buf, len, &cap, "# HELP %s %s\n# TYPE %s counter\n",
                rows[r].name, rows[r].help, rows[r].name);
    for (unsigned i = 0; ok && i < repo->n; i++) {
      const gs__model_entry_t *m = &repo->models[i];
      const gs__stat_t *s =
          (const gs__stat_t *)((const char *)&m->stats + rows[r].off);
      ok = append(&buf, len, &cap, "%s{model=\"%s\",version=\"%s\"} %llu\n",
                  rows[r].name, m->name, m->version,
                  (unsigned long long)(rows[r].us ? s->ns / 1000 : s->count));
    }
  }
  if (!ok) {
    free(buf);
    return NULL;
  }
  return buf;
}
