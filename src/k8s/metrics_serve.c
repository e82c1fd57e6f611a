/* `gpuslice k8s metrics`' HTTP side: GET /metrics on net/http's server,
 * one scrape per request on the loop thread (a scrape takes milliseconds
 * and Prometheus asks every few seconds), until SIGINT or SIGTERM. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/prom.h"
#include "gpuslice/k8s.h"
#include "net/http.h"

typedef struct mx_server_s {
  const gs_k8s_metrics_options_t *opt;
  gs_k8s_metrics_t *m;
  gs__http_listener_t http;
  uv_signal_t sigint, sigterm;
  int stopped_by;
} mx_server_t;

static void mx_log(const mx_server_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void mx_log(const mx_server_t *s, const char *fmt, ...) {
  char line[512];
  va_list ap;
  if (!s->opt->log)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  s->opt->log(s->opt->log_data, line);
}

/* The path without its query ("/metrics?x=1" is /metrics). */
static bool path_is(const char *url, const char *path) {
  size_t n = strlen(path);
  return url && strncmp(url, path, n) == 0 && (url[n] == '\0' || url[n] == '?');
}

static void on_request(void *ctx, gs__http_conn_t *c, gs__http_request_t *req) {
  mx_server_t *s = ctx;
  gs__http_response_t resp = {.infer_header_len = -1};
  gs_error_t err;
  if (!path_is(req->url, "/metrics")) {
    gs__http_response_error(&resp, 404,
                            "not found: the metrics are at "
                            "/metrics");
  } else if (req->method != HTTP_GET) {
    gs__http_response_error(&resp, 405, "/metrics takes GET");
  } else if (gs_k8s_metrics_scrape(s->m, &resp.body, &resp.body_len, &err) !=
             GS_OK) {
    mx_log(s, "scrape failed: %s", err.msg);
    gs__http_response_error(&resp, 500, err.msg);
  } else {
    resp.status = 200;
    resp.content_type = GS_PROM_CONTENT_TYPE;
  }
  gs__http_conn_respond(c, &resp);
}

static void on_signal(uv_signal_t *h, int sig) {
  mx_server_t *s = h->data;
  s->stopped_by = sig;
  uv_signal_stop(&s->sigint);
  uv_signal_stop(&s->sigterm);
  gs__http_listener_close(&s->http);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static int serve(mx_server_t *s, uv_loop_t *loop, gs_error_t *err) {
  const char *host = s->opt->host ? s->opt->host : "0.0.0.0";
  s->http.handler = on_request;
  s->http.ctx = s;
  s->http.max_body = 4096; /* a scrape has no body */
  int rc = gs__http_listen(loop, &s->http, host, s->opt->port, err);
  if (rc != GS_OK) {
    gs__http_listener_close(&s->http);
    uv_run(loop, UV_RUN_DEFAULT);
    return rc;
  }
  uv_signal_init(loop, &s->sigint);
  uv_signal_init(loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = s;
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  mx_log(s, "serving http://%s:%u/metrics", host, s->http.port);
  uv_run(loop, UV_RUN_DEFAULT);
  mx_log(s, "signal %d: stopped", s->stopped_by);
  return GS_OK;
}

int gs_k8s_metrics_run(gs_backend_t *be, const gs_k8s_metrics_options_t *opt,
                       gs_error_t *err) {
  mx_server_t s = {.opt = opt};
  uv_loop_t loop;
  int rc = gs_k8s_metrics_create(&s.m, be, opt, err);
  if (rc != GS_OK)
    return rc;
  if (uv_loop_init(&loop) != 0) {
    gs_k8s_metrics_destroy(s.m);
    return gs_error_set(err, GS_ESYSTEM,
                        "metrics: cannot start an event "
                        "loop");
  }
  signal(SIGPIPE, SIG_IGN);
  rc = serve(&s, &loop, err);
  uv_loop_close(&loop);
  gs_k8s_metrics_destroy(s.m);
  return rc;
}
