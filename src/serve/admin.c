/* What the serve says about itself: each worker's status (for `gpuslice
 * serve --status`), the router's Prometheus counters, and the admin calls
 * that add or remove an instance's workers without touching the others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "serve/serve_int.h"

static const char *state_name(const gs__wk_t *wk, uint64_t now) {
  switch (wk->state) {
  case GS__PROC_WAITING:
    return "restarting";
  case GS__PROC_STARTING:
    return "starting";
  case GS__PROC_RUNNING:
    if (!wk->healthy)
      return "unhealthy";
    return now < wk->ejected_until_ns ? "ejected" : "ready";
  case GS__PROC_STOPPING:
    return "stopping";
  default:
    return "gone";
  }
}

static json_t *worker_json(const gs__wk_t *wk, uint64_t now) {
  json_t *o = json_object();
  json_object_set_new(o, "worker", json_string(wk->label));
  json_object_set_new(o, "instance", json_string(wk->inst.id));
  json_object_set_new(o, "uuid", json_string(wk->inst.uuid));
  json_object_set_new(o, "profile", json_string(wk->inst.profile));
  json_object_set_new(o, "state", json_string(state_name(wk, now)));
  int pid = wk->child ? wk->pid : 0;
  if (wk->host) /* a group's process: each of its instances names it */
    pid = wk->host->child ? wk->host->pid : 0;
  json_object_set_new(o, "pid", json_integer(pid));
  json_object_set_new(o, "process",
                      json_string(wk->host ? wk->host->group : wk->label));
  if (wk->inst.sm_count)
    json_object_set_new(o, "sm_partition",
                        json_pack("{s:i, s:i}", "first", (int)wk->inst.sm_first,
                                  "count", (int)wk->inst.sm_count));
  json_object_set_new(o, "http_port", json_integer(wk->http_port));
  json_object_set_new(o, "grpc_port", json_integer(wk->grpc_port));
  json_object_set_new(o, "requests", json_integer((json_int_t)wk->requests));
  json_object_set_new(o, "failures", json_integer((json_int_t)wk->failures));
  json_object_set_new(o, "in_flight", json_integer(wk->inflight));
  json_object_set_new(o, "p99_us", json_integer(gs__wk_p99_us(wk)));
  json_object_set_new(o, "restarts", json_integer(wk->restarts));
  /* how long it has been healthy: tests date a recovery with it */
  json_object_set_new(
      o, "healthy_ms",
      json_integer(wk->healthy && wk->healthy_since_ns
                       ? (json_int_t)((now - wk->healthy_since_ns) / 1000000)
                       : 0));
  json_object_set_new(o, "ejections", json_integer(wk->ejections));
  json_object_set_new(o, "log", json_string(wk->log_path));
  return o;
}

json_t *gs__status_json(gs__serve_t *s) {
  uint64_t now = gs__serve_now_ns();
  json_t *workers = json_array();
  /* oldest first: the table is newest first */
  for (gs__wk_t *wk = s->workers; wk; wk = wk->next)
    json_array_insert_new(workers, 0, worker_json(wk, now));
  json_t *doc = json_object();
  json_object_set_new(doc, "policy",
                      json_string(s->opt.policy == GS_SERVE_LEAST_REQUEST
                                      ? "least_request"
                                      : "round_robin"));
  json_object_set_new(doc, "http_port", json_integer(s->http_port));
  json_object_set_new(doc, "grpc_port", json_integer(gs_serve_grpc_port(s)));
  json_object_set_new(doc, "draining", json_boolean(s->draining));
  json_object_set_new(doc, "requests",
                      json_integer((json_int_t)gs__serve_requests(s)));
  json_object_set_new(doc, "retries", json_integer((json_int_t)s->retries));
  json_object_set_new(doc, "failures", json_integer((json_int_t)s->failures));
  /* requests each router loop took: connections spread over them */
  json_t *loops = json_array();
  for (unsigned k = 0; k < s->n_rloops; k++)
    json_array_append_new(loops,
                          json_integer((json_int_t)s->rloops[k]->requests));
  json_object_set_new(doc, "router_loop_requests", loops);
  json_object_set_new(doc, "workers", workers);
  return doc;
}

/* One metric's HELP and TYPE, then one sample per worker. Appends to buf
 * (a gs_buf_t); a failure sticks and is looked at once at the end. */
#define WORKER_METRIC(name, help, type, expr)                                  \
  gs_buf_adds(&buf, "# HELP " name " " help "\n# TYPE " name " " type "\n");   \
  for (gs__wk_t *wk = s->workers; wk; wk = wk->next)                           \
    gs_buf_addf(&buf, name "{instance=\"%s\"} %llu\n", wk->label,              \
                (unsigned long long)(expr));

char *gs__router_metrics(gs__serve_t *s, size_t *out_len) {
  gs_buf_t buf;
  gs_buf_init(&buf, GS_LIMIT_TEXT);
  uint64_t now = gs__serve_now_ns();
  WORKER_METRIC("gpuslice_worker_up", "1 when the worker takes requests",
                "gauge", gs__wk_routable(wk, now))
  WORKER_METRIC("gpuslice_worker_requests_total",
                "Requests the router sent to the worker", "counter",
                wk->requests)
  WORKER_METRIC("gpuslice_worker_failures_total",
                "Requests that failed at the connection level", "counter",
                wk->failures)
  WORKER_METRIC("gpuslice_worker_in_flight", "Requests on the worker now",
                "gauge", wk->inflight)
  WORKER_METRIC("gpuslice_worker_restarts_total", "Restarts of the worker",
                "counter", wk->restarts)
  WORKER_METRIC("gpuslice_worker_ejections_total",
                "Times the worker was ejected after failures", "counter",
                wk->ejections)
  gs_buf_addf(&buf,
              "# HELP gpuslice_router_retries_total Requests retried on "
              "another worker\n# TYPE gpuslice_router_retries_total "
              "counter\ngpuslice_router_retries_total %llu\n",
              (unsigned long long)s->retries);
  gs_buf_adds(&buf, "# HELP gpuslice_router_loop_requests_total Requests each "
                    "router loop took to proxy\n# TYPE "
                    "gpuslice_router_loop_requests_total counter\n");
  for (unsigned k = 0; k < s->n_rloops; k++)
    gs_buf_addf(&buf, "gpuslice_router_loop_requests_total{loop=\"%u\"} %llu\n",
                k, (unsigned long long)s->rloops[k]->requests);
  return gs_buf_take(&buf, out_len); /* NULL when the buffer failed */
}

/* ---- metric families ---------------------------------------------------- */

typedef struct metric_line_s {
  const char *text;
  size_t len;
  size_t family; /* index of first appearance of its metric name */
  bool meta;     /* # HELP or # TYPE */
} metric_line_t;

/* The metric name a line is about: a sample's first token, or the third
 * of "# HELP name ..." / "# TYPE name ...". */
static void line_name(const char *line, size_t len, const char **name,
                      size_t *name_len, bool *meta) {
  size_t i = 0;
  *meta = len > 7 && (strncmp(line, "# HELP ", 7) == 0 ||
                      strncmp(line, "# TYPE ", 7) == 0);
  if (*meta)
    i = 7;
  size_t start = i;
  while (i < len && line[i] != ' ' && line[i] != '{')
    i++;
  *name = line + start;
  *name_len = i - start;
}

static int cmp_family(const void *a, const void *b) {
  const metric_line_t *x = a, *y = b;
  if (x->family != y->family)
    return x->family < y->family ? -1 : 1;
  if (x->meta != y->meta)
    return x->meta ? -1 : 1;
  return x->text < y->text ? -1 : x->text > y->text; /* stable: by position */
}

char *gs__metrics_group(const char *text, size_t len, size_t *out_len) {
  size_t n = 0, n_fam = 0;
  for (size_t i = 0; i < len; i++)
    n += text[i] == '\n';
  metric_line_t *lines = calloc(n + 1, sizeof *lines);
  const char **fam = calloc(n + 1, sizeof *fam);
  size_t *fam_len = calloc(n + 1, sizeof *fam_len);
  char *out = malloc(len + 1);
  if (!lines || !fam || !fam_len || !out) {
    free(out);
    out = NULL;
    goto done;
  }
  n = 0;
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(text + at, '\n', len - at);
    size_t l = nl ? (size_t)(nl - text - at) + 1 : len - at;
    metric_line_t *ml = &lines[n++];
    const char *name;
    size_t name_len, f = 0;
    ml->text = text + at;
    ml->len = l;
    line_name(ml->text, l, &name, &name_len, &ml->meta);
    while (f < n_fam &&
           !(fam_len[f] == name_len && memcmp(fam[f], name, name_len) == 0))
      f++;
    if (f == n_fam) {
      fam[n_fam] = name;
      fam_len[n_fam++] = name_len;
    }
    ml->family = f;
    at += l;
  }
  qsort(lines, n, sizeof *lines, cmp_family);
  *out_len = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(out + *out_len, lines[i].text, lines[i].len);
    *out_len += lines[i].len;
  }
  out[*out_len] = '\0';
done:
  free(lines);
  free(fam);
  free(fam_len);
  return out;
}

/* ---- admin calls -----------------------------------------------------------
 */

static void admin_remove(gs__serve_t *s, const char *id,
                         gs__http_response_t *resp) {
  unsigned stopped = 0;
  for (gs__wk_t *wk = s->workers, *next; wk; wk = next) {
    next = wk->next;
    if (strcmp(wk->inst.id, id) == 0 && !wk->removing) {
      gs__wk_remove(wk);
      stopped++;
    }
  }
  if (stopped == 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "instance '%s' is not served", id);
    gs__http_response_error(resp, 404, msg);
    return;
  }
  bool listed = false;
  for (unsigned i = 0; i < s->n_removed && !listed; i++)
    listed = strcmp(s->removed[i], id) == 0;
  if (!listed && s->n_removed < sizeof s->removed / sizeof s->removed[0])
    snprintf(s->removed[s->n_removed++], sizeof s->removed[0], "%s", id);
  gs__serve_log(s, "admin: instance %s removed (%u workers stopping)", id,
                stopped);
  gs__http_response_json(
      resp, 200,
      json_pack("{s:s, s:i}", "removed", id, "workers", (int)stopped));
}

static void admin_add(gs__serve_t *s, const char *id,
                      gs__http_response_t *resp) {
  for (unsigned i = 0; i < s->n_removed; i++)
    if (strcmp(s->removed[i], id) == 0) {
      memmove(s->removed[i], s->removed[i + 1],
              (s->n_removed - i - 1) * sizeof s->removed[0]);
      s->n_removed--;
      break;
    }
  gs_error_t err;
  unsigned before = 0, after = 0;
  for (gs__wk_t *wk = s->workers; wk; wk = wk->next)
    before += strcmp(wk->inst.id, id) == 0 && !wk->removing;
  if (gs__sync_instances(s, &err) != GS_OK) {
    gs__http_response_error(resp, 500, err.msg);
    return;
  }
  for (gs__wk_t *wk = s->workers; wk; wk = wk->next)
    after += strcmp(wk->inst.id, id) == 0 && !wk->removing;
  if (after == 0) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "instance '%s' is not in the layout (see gpuslice list)", id);
    gs__http_response_error(resp, 404, msg);
    return;
  }
  gs__http_response_json(resp, 200,
                         json_pack("{s:s, s:i, s:b}", "added", id, "workers",
                                   (int)after, "already", before > 0));
}

void gs__admin_handle(gs__serve_t *s, const gs__route_t *route,
                      gs__http_response_t *resp) {
  gs_error_t err;
  if (s->draining && route->kind != GS__RT_ADMIN_LIST) {
    gs__http_response_error(resp, 503, "the serve is draining");
    return;
  }
  switch (route->kind) {
  case GS__RT_ADMIN_LIST:
    gs__http_response_json(resp, 200, gs__status_json(s));
    break;
  case GS__RT_ADMIN_ADD:
    admin_add(s, route->arg, resp);
    break;
  case GS__RT_ADMIN_REMOVE:
    admin_remove(s, route->arg, resp);
    break;
  case GS__RT_ADMIN_SYNC:
    if (gs__sync_instances(s, &err) == GS_OK)
      gs__http_response_json(resp, 200, gs__status_json(s));
    else
      gs__http_response_error(resp, 500, err.msg);
    break;
  default:
    gs__http_response_error(resp, 404, "unknown admin call");
    break;
  }
}
