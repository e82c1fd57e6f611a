/* The router's front door for HTTP/1.1, on every router loop: what each
 * request is (gs__classify, pure), then it is proxied to one worker (retried
 * once elsewhere when the worker's connection failed before any response
 * byte, or when the worker answered 503: a request it did not run)
 * by the loop it came in on, answered by the router itself (health) or rejected
 * with the workers' error format. What needs the worker table (fan-outs to
 * every worker: statistics, metrics, repository changes; admin calls) runs on
 * the main loop: a request from another loop is handed over and its answer
 * handed back. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "serve/serve_int.h"

typedef struct fanout_s fanout_t;
typedef gs__front_req_t front_req_t;

struct fanout_s {
  front_req_t *f;
  unsigned n, pending;
  gs__upreq_t *ups;
  gs__up_result_t *results;
  void (*finish)(fanout_t *fo);
};

/* ---- what a request is (pure: unit tested and fuzzed) ---------------------
 */

/* One more than the deepest route (/v2/models/m/versions/v/stats), so that
 * a longer path is seen as longer instead of being cut. */
#define MAX_SEGMENTS 8

typedef struct {
  const char *p;
  size_t len;
} seg_t;

/* Splits the path (query dropped) into segments the way the worker does:
 * empty segments collapse, so "//v2/health//live/" is /v2/health/live.
 * Returns the count, MAX_SEGMENTS + 1 when there are more. */
static unsigned split_path(const char *url, size_t len, seg_t *seg) {
  const char *q = memchr(url, '?', len);
  const char *end = q ? q : url + len;
  unsigned n = 0;
  for (const char *p = url; p < end;) {
    if (*p == '/') {
      p++;
      continue;
    }
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *stop = slash ? slash : end;
    if (n == MAX_SEGMENTS)
      return MAX_SEGMENTS + 1;
    seg[n].p = p;
    seg[n++].len = (size_t)(stop - p);
    p = stop;
  }
  return n;
}

static bool seg_is(const seg_t *s, const char *word) {
  size_t len = strlen(word);
  return s->len == len && memcmp(s->p, word, len) == 0;
}

static void bad(gs__route_t *out, int status, const char *message) {
  out->kind = GS__RT_BAD;
  out->status = status;
  out->message = message;
}

/* Percent-decodes the instance id into out->arg; 400 for a broken escape,
 * a control character (ids end up in logs and JSON) or an id too long. */
static void decode_id(const seg_t *s, gs__route_t *out) {
  char id[sizeof out->arg];
  size_t n = 0;
  for (size_t i = 0; i < s->len; i++) {
    int c = (unsigned char)s->p[i];
    if (c == '%') {
      char hex[3] = {0};
      if (i + 2 < s->len)
        memcpy(hex, s->p + i + 1, 2);
      if (!isxdigit((unsigned char)hex[0]) ||
          !isxdigit((unsigned char)hex[1])) {
        bad(out, 400, "bad percent-encoding in the instance id");
        return;
      }
      c = (int)strtol(hex, NULL, 16);
      i += 2;
    }
    if (c < 0x20 || c == 0x7f) {
      bad(out, 400, "control character in the instance id");
      return;
    }
    if (n + 1 >= sizeof id) {
      bad(out, 400, "instance id too long");
      return;
    }
    id[n++] = (char)c;
  }
  memcpy(out->arg, id, n);
  out->arg[n] = '\0';
}

static const char unknown_admin[] =
    "unknown admin path: the admin API is GET /gpuslice/v1/workers, "
    "POST or DELETE /gpuslice/v1/instances/{id} and POST /gpuslice/v1/sync";

/* /gpuslice/...: the router's own API, never proxied. */
static void classify_admin(enum http_method method, const seg_t *seg,
                           unsigned n, gs__route_t *out) {
  bool v1 = n >= 3 && n <= 4 && seg_is(&seg[1], "v1");
  if (v1 && n == 3 && seg_is(&seg[2], "workers")) {
    if (method == HTTP_GET)
      out->kind = GS__RT_ADMIN_LIST;
    else
      bad(out, 405, "use GET for /gpuslice/v1/workers");
  } else if (v1 && n == 3 && seg_is(&seg[2], "sync")) {
    if (method == HTTP_POST)
      out->kind = GS__RT_ADMIN_SYNC;
    else
      bad(out, 405, "use POST for /gpuslice/v1/sync");
  } else if (v1 && n == 4 && seg_is(&seg[2], "instances")) {
    if (method != HTTP_POST && method != HTTP_DELETE) {
      bad(out, 405, "use POST or DELETE for /gpuslice/v1/instances/{id}");
      return;
    }
    out->kind = method == HTTP_POST ? GS__RT_ADMIN_ADD : GS__RT_ADMIN_REMOVE;
    decode_id(&seg[3], out);
  } else {
    bad(out, 404, unknown_admin);
  }
}

/* /v2/...: the few requests that concern every worker; the rest go to
 * one worker, which answers them (its 404 and 400 included). */
static gs__route_kind_t classify_v2(enum http_method method, const seg_t *seg,
                                    unsigned n) {
  bool get = method == HTTP_GET;
  if (get && n == 3 && seg_is(&seg[1], "health"))
    return seg_is(&seg[2], "live")    ? GS__RT_LIVE
           : seg_is(&seg[2], "ready") ? GS__RT_READY
                                      : GS__RT_PROXY;
  if (n >= 3 && seg_is(&seg[1], "models") && seg_is(&seg[n - 1], "stats")) {
    /* /v2/models/stats, /v2/models/m/stats, /v2/models/m/versions/v/stats */
    bool shape = n == 3 || n == 4 || (n == 6 && seg_is(&seg[3], "versions"));
    return get && shape ? GS__RT_STATS : GS__RT_PROXY;
  }
  if (method == HTTP_POST && n == 5 && seg_is(&seg[1], "repository") &&
      seg_is(&seg[2], "models") &&
      (seg_is(&seg[4], "load") || seg_is(&seg[4], "unload")))
    return GS__RT_BROADCAST;
  /* shared-memory regions: registered on every worker a request naming
   * one may reach (POST .../region/R/register|unregister, .../unregister) */
  bool shm = n >= 3 && (seg_is(&seg[1], "systemsharedmemory") ||
                        seg_is(&seg[1], "cudasharedmemory"));
  if (method == HTTP_POST && shm &&
      ((n == 5 && seg_is(&seg[2], "region") &&
        (seg_is(&seg[4], "register") || seg_is(&seg[4], "unregister"))) ||
       (n == 3 && seg_is(&seg[2], "unregister"))))
    return GS__RT_BROADCAST;
  return GS__RT_PROXY;
}

void gs__classify(const gs__http_request_t *req, gs__route_t *out) {
  memset(out, 0, sizeof *out);
  out->kind = GS__RT_PROXY;
  const char *url = req->url ? req->url : "";
  size_t len = req->url ? req->url_len : 0;
  seg_t seg[MAX_SEGMENTS];
  unsigned n = split_path(url, len, seg);
  if (n == 0)
    return;
  if (seg_is(&seg[0], "gpuslice"))
    classify_admin(req->method, seg, n, out);
  else if (n > MAX_SEGMENTS)
    return; /* the worker answers 404 */
  else if (n == 1 && seg_is(&seg[0], "metrics") && req->method == HTTP_GET)
    out->kind = GS__RT_METRICS;
  else if (seg_is(&seg[0], "v2"))
    out->kind = classify_v2(req->method, seg, n);
}

/* ---- answers --------------------------------------------------------------
 */

/* Answers f on its own loop; f may be freed when this returns (its
 * connection closed meanwhile). */
static void respond(front_req_t *f, gs__http_response_t *resp) {
  if (f->forwarded) {
    gs__rloop_answer(f, resp); /* back to f's own loop */
    return;
  }
  f->rl->front_inflight--;
  gs__http_conn_respond(f->c, resp);
}

static void respond_error(front_req_t *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void respond_error(front_req_t *f, int status, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  gs__http_response_t resp = {.infer_header_len = -1};
  gs__http_response_error(&resp, status, msg);
  respond(f, &resp);
}

/* ---- proxy to one worker ------------------------------------------------- */

static void proxy_start(front_req_t *f);

static void proxy_failed(front_req_t *f, const char *label,
                         gs__up_result_t res) {
  gs__serve_t *s = f->s;
  s->failures++;
  if (res == GS__UP_LOCAL)
    respond_error(f, 414, "the request URL is too long to forward");
  else if (res == GS__UP_TIMEOUT)
    respond_error(f, 504, "worker %s did not answer within %u ms", label,
                  s->opt.request_timeout_ms);
  else if (res == GS__UP_TOOBIG)
    respond_error(f, 502, "worker %s answered with more than %zu MiB", label,
                  gs_limit_bytes(GS_LIMIT_UPSTREAM_RESPONSE) >> 20);
  else if (res == GS__UP_BROKEN)
    respond_error(f, 502, "worker %s broke off its response", label);
  else if (f->attempts > 1)
    respond_error(f, 502,
                  "worker %s failed before answering (the request was "
                  "tried on worker %s first)",
                  label, f->tried_label);
  else
    respond_error(f, 502,
                  "worker %s failed before answering, and no other "
                  "worker is ready",
                  label);
}

static void proxy_done(gs__upreq_t *r, gs__up_result_t res) {
  front_req_t *f = r->data;
  gs__peer_t *peer = r->peer;
  gs__wk_t *wk = peer->wk;
  uint64_t latency = gs__serve_now_ns() - r->t_start;
  wk->inflight--;
  /* A worker's 503 is a request it did not run (its device failed, the
   * model is not ready there, its queue refused it): as Envoy's
   * retriable-status-codes, tried once on another worker. It is not a
   * failure toward ejection: a model unloaded everywhere would eject
   * every worker, and the other models with them. */
  bool not_run = res == GS__UP_OK && r->resp.status == 503;
  if (res != GS__UP_LOCAL) /* that one is the router's failure */
    gs__rloop_report(f->rl, peer, res == GS__UP_OK, res != GS__UP_OK, latency);
  if (not_run && f->attempts == 1 && !f->seq.id[0] &&
      gs__rloop_routable_other(f->rl, peer)) {
    f->tried = peer;
    snprintf(f->tried_label, sizeof f->tried_label, "%s", wk->label);
    gs__upreq_release(r); /* drops the peer and the 503's body */
    f->s->retries++;
    proxy_start(f);
    return;
  }
  if (res == GS__UP_OK) {
    r->peer = NULL; /* kept until f is answered: f may go with its answer */
    respond(f, &r->resp); /* takes the body */
    gs__peer_unref(peer);
    return;
  }
  char label[80];
  snprintf(label, sizeof label, "%s", wk->label);
  bool retry = res == GS__UP_CONNECT && f->attempts == 1 && !f->seq.id[0] &&
               gs__rloop_routable_other(f->rl, peer);
  f->tried = peer;
  snprintf(f->tried_label, sizeof f->tried_label, "%s", label);
  gs__upreq_release(r); /* drops the peer */
  if (retry) {
    f->s->retries++;
    proxy_start(f);
  } else {
    proxy_failed(f, label, res);
  }
}

/* This loop's peer for wk's process on port; NULL when it is gone. */
static gs__peer_t *peer_on(gs__rloop_t *rl, const gs__wk_t *wk, unsigned port) {
  uint64_t now = gs__serve_now_ns();
  for (gs__peer_t *p = rl->peers; p; p = p->next)
    if (p->wk == wk && p->http_port == port && !p->gone &&
        gs__peer_routable(p, now))
      return p;
  return NULL;
}

/* A request of a sequence goes to the worker of its start; a start is
 * pinned to the worker the policy picks. NULL with *answered when the
 * sequence's worker is gone. */
static gs__peer_t *seq_pick(front_req_t *f, bool *answered) {
  gs__serve_t *s = f->s;
  unsigned port = 0;
  gs__wk_t *wk = gs__rseq_find(s, &f->seq, &port);
  if (!wk) {
    gs__peer_t *peer = gs__rloop_pick(f->rl, NULL);
    if (peer && f->seq.start && !f->seq.end)
      gs__rseq_pin(s, &f->seq, peer->wk, peer->http_port);
    return peer;
  }
  gs__peer_t *peer = peer_on(f->rl, wk, port);
  if (!peer || f->seq.end)
    gs__rseq_drop(s, &f->seq);
  if (!peer && f->seq.start) { /* a new start: any worker */
    gs__wk_unref(wk);
    return seq_pick(f, answered);
  }
  if (!peer) {
    *answered = true;
    s->failures++;
    respond_error(f, 400,
                  "sequence %s was on worker %s, which is gone (restarted "
                  "or removed): start the sequence again",
                  f->seq.id + 2, wk->label);
  }
  gs__wk_unref(wk);
  return peer;
}

static void proxy_start(front_req_t *f) {
  bool answered = false;
  if (f->attempts == 0)
    gs__rseq_from_json(f->req->body, f->req->body_len, f->req->infer_header_len,
                       &f->seq);
  gs__peer_t *peer = f->seq.id[0] ? seq_pick(f, &answered) : NULL;
  if (answered)
    return;
  f->up = (gs__upreq_t){.method = http_method_str(f->req->method),
                        .url = f->req->url,
                        .body = f->req->body,
                        .body_len = f->req->body_len,
                        .infer_header_len = f->req->infer_header_len,
                        .timeout_ms = f->s->opt.request_timeout_ms,
                        .done = proxy_done,
                        .data = f};
  f->attempts++; /* before the send: done may run before it returns */
  if (peer) {    /* the sequence's worker */
    peer->wk->inflight++;
    gs__upreq_send(&f->up, peer);
  } else if (f->seq.id[0] || !gs__upreq_send_any(&f->up, f->rl, f->tried)) {
    f->attempts--;
    f->s->failures++;
    respond_error(f, 503, "no worker is ready to serve");
  }
}

/* ---- fan-out to every worker (main loop) --------------------------------- */

static void fanout_free(fanout_t *fo) {
  for (unsigned i = 0; i < fo->n; i++)
    gs__upreq_release(&fo->ups[i]);
  free(fo->ups);
  free(fo->results);
  free(fo); /* not fo->f: the answer may have freed its connection */
}

static void fanout_done(gs__upreq_t *r, gs__up_result_t res) {
  fanout_t *fo = r->data;
  fo->results[r - fo->ups] = res;
  if (--fo->pending > 0)
    return;
  fo->finish(fo);
  fanout_free(fo);
}

/* Sends the request (method, url, body of f->req) to every worker routable
 * on the main loop and calls finish with all answers. false when no worker
 * is routable. */
static bool fanout_start(front_req_t *f, const char *url,
                         void (*finish)(fanout_t *fo)) {
  gs__serve_t *s = f->s;
  gs__rloop_t *main_rl = s->rloops[0];
  uint64_t now = gs__serve_now_ns();
  unsigned n = 0;
  for (gs__peer_t *p = main_rl->peers; p; p = p->next)
    n += gs__peer_routable(p, now);
  if (n == 0)
    return false;
  fanout_t *fo = calloc(1, sizeof *fo);
  if (fo) {
    fo->ups = calloc(n, sizeof *fo->ups);
    fo->results = calloc(n, sizeof *fo->results);
  }
  if (!fo || !fo->ups || !fo->results) {
    if (fo) {
      free(fo->ups);
      free(fo->results);
    }
    free(fo);
    return false;
  }
  fo->f = f;
  fo->n = fo->pending = n;
  fo->finish = finish;
  unsigned i = 0;
  for (gs__peer_t *p = main_rl->peers; p && i < n; p = p->next) {
    if (!gs__peer_routable(p, now))
      continue;
    fo->ups[i] = (gs__upreq_t){.method = http_method_str(f->req->method),
                               .url = url,
                               .body = f->req->body,
                               .body_len = f->req->body_len,
                               .infer_header_len = -1,
                               .timeout_ms = s->opt.request_timeout_ms,
                               .done = fanout_done,
                               .data = fo};
    gs__upreq_send(&fo->ups[i++], p);
  }
  return true;
}

/* The first answer that is not 200, passed through; NULL when all are. */
static gs__upreq_t *fanout_first_error(fanout_t *fo) {
  for (unsigned i = 0; i < fo->n; i++)
    if (fo->results[i] == GS__UP_OK && fo->ups[i].resp.status != 200)
      return &fo->ups[i];
  return NULL;
}

static unsigned fanout_answered(fanout_t *fo) {
  unsigned n = 0;
  for (unsigned i = 0; i < fo->n; i++)
    n += fo->results[i] == GS__UP_OK;
  return n;
}

static void finish_stats(fanout_t *fo) {
  json_t *docs[256];
  size_t n = 0;
  gs__upreq_t *bad = fanout_first_error(fo);
  if (bad || fanout_answered(fo) == 0) {
    if (bad)
      respond(fo->f, &bad->resp);
    else
      respond_error(fo->f, 502, "no worker answered the statistics request");
    return;
  }
  for (unsigned i = 0; i < fo->n && n < 256; i++)
    if (fo->results[i] == GS__UP_OK)
      docs[n++] =
          json_loadb(fo->ups[i].resp.body, fo->ups[i].resp.body_len, 0, NULL);
  gs_error_t err;
  json_t *merged = NULL;
  bool parsed = true;
  for (size_t i = 0; i < n; i++)
    parsed = parsed && docs[i];
  if (parsed)
    merged = gs__stats_merge(docs, n, &err);
  for (size_t i = 0; i < n; i++)
    json_decref(docs[i]);
  if (!merged) {
    respond_error(fo->f, 502, "workers' statistics do not merge: %s",
                  parsed ? err.msg : "a worker sent malformed JSON");
    return;
  }
  gs__http_response_t resp = {.infer_header_len = -1};
  gs__http_response_json(&resp, 200, merged);
  respond(fo->f, &resp);
}

static void undo_done(gs__upreq_t *r, gs__up_result_t res) {
  (void)res;
  gs__upreq_release(r);
  free(r->data); /* its URL */
  free(r);
}

/* A shared-memory region registered on some workers but refused by others
 * is unregistered where it was registered, so that the client's failed
 * register leaves no worker holding it. */
static void undo_register(fanout_t *fo) {
  static const char tail[] = "/register";
  const char *url = fo->f->req->url;
  size_t len = strlen(url);
  if (!strstr(url, "sharedmemory/region/") || len < sizeof tail - 1 ||
      strcmp(url + len - (sizeof tail - 1), tail) != 0)
    return;
  for (unsigned i = 0; i < fo->n; i++) {
    if (fo->results[i] != GS__UP_OK || fo->ups[i].resp.status != 200)
      continue;
    gs__upreq_t *r = calloc(1, sizeof *r);
    char *undo = malloc(len + 3);
    if (!r || !undo) {
      free(r);
      free(undo);
      return;
    }
    snprintf(undo, len + 3, "%.*s/unregister", (int)(len - (sizeof tail - 1)),
             url);
    *r = (gs__upreq_t){.method = "POST",
                       .url = undo,
                       .infer_header_len = -1,
                       .timeout_ms = fo->f->s->opt.request_timeout_ms,
                       .done = undo_done,
                       .data = undo};
    gs__upreq_send(r, fo->ups[i].peer);
  }
}

static void finish_broadcast(fanout_t *fo) {
  gs__upreq_t *bad = fanout_first_error(fo);
  if (bad || fanout_answered(fo) < fo->n)
    undo_register(fo);
  if (bad) {
    respond(fo->f, &bad->resp);
  } else if (fanout_answered(fo) < fo->n) {
    respond_error(fo->f, 502, "%u of %u workers did not answer",
                  fo->n - fanout_answered(fo), fo->n);
  } else {
    respond(fo->f, &fo->ups[0].resp);
  }
}

static void finish_metrics(fanout_t *fo) {
  size_t len = 0;
  char *router = gs__router_metrics(fo->f->s, &len);
  gs_buf_t text;
  gs_buf_init(&text, GS_LIMIT_METRICS);
  bool ok = router && gs_buf_add(&text, router, len) == GS_OK;
  free(router);
  bool help = true;
  for (unsigned i = 0; ok && i < fo->n; i++) {
    gs__upreq_t *u = &fo->ups[i];
    if (fo->results[i] != GS__UP_OK || u->resp.status != 200)
      continue;
    ok = gs__metrics_relabel_buf(u->resp.body, u->resp.body_len,
                                 u->peer->wk->label, help, &text) == GS_OK;
    help = false;
  }
  char *grouped = ok ? gs__metrics_group(text.data, text.len, &len) : NULL;
  gs_buf_free(&text);
  if (!grouped) {
    respond_error(fo->f, 500, "out of memory");
    return;
  }
  gs__http_response_t resp = {.status = 200,
                              .body = grouped,
                              .body_len = len,
                              .infer_header_len = -1,
                              .content_type = "text/plain; version=0.0.4"};
  respond(fo->f, &resp);
}

static void answer_metrics_alone(front_req_t *f) {
  size_t len = 0;
  char *text = gs__router_metrics(f->s, &len);
  gs__http_response_t resp = {.status = 200,
                              .body = text,
                              .body_len = len,
                              .infer_header_len = -1,
                              .content_type = "text/plain; version=0.0.4"};
  if (!text)
    gs__http_response_error(&resp, 500, "out of memory");
  respond(f, &resp);
}

/* ---- dispatch ---------------------------------------------------------------
 */

static void handle_fanout(front_req_t *f) {
  gs__route_kind_t kind = f->route.kind;
  void (*finish)(fanout_t *) = kind == GS__RT_STATS     ? finish_stats
                               : kind == GS__RT_METRICS ? finish_metrics
                                                        : finish_broadcast;
  if (fanout_start(f, f->req->url, finish))
    return;
  if (kind == GS__RT_METRICS)
    answer_metrics_alone(f);
  else
    respond_error(f, 503, "no worker is ready to serve");
}

void gs__front_handle_main(front_req_t *f) {
  if (f->route.kind == GS__RT_STATS || f->route.kind == GS__RT_METRICS ||
      f->route.kind == GS__RT_BROADCAST) {
    handle_fanout(f);
    return;
  }
  gs__http_response_t resp = {.infer_header_len = -1};
  gs__admin_handle(f->s, &f->route, &resp);
  respond(f, &resp);
}

static void handle_request(void *ctx, gs__http_conn_t *c,
                           gs__http_request_t *req) {
  gs__rloop_t *rl = ctx;
  front_req_t *f = gs__http_conn_user(c);
  memset(f, 0, sizeof *f);
  f->s = rl->s;
  f->rl = rl;
  f->c = c;
  f->req = req;
  rl->front_inflight++;
  gs__classify(req, &f->route);
  gs__http_response_t resp = {.infer_header_len = -1};
  switch (f->route.kind) {
  case GS__RT_PROXY:
    rl->requests++;
    proxy_start(f);
    return;
  case GS__RT_LIVE:
    resp.status = 200;
    break;
  case GS__RT_READY:
    if (gs__rloop_routable_other(rl, NULL) && !rl->front.draining)
      resp.status = 200;
    else
      gs__http_response_error(&resp, 400, "no worker is ready to serve");
    break;
  case GS__RT_BAD:
    gs__http_response_error(&resp, f->route.status, f->route.message);
    break;
  default: /* fan-outs and admin calls: the main loop's */
    if (rl->index == 0)
      gs__front_handle_main(f);
    else
      gs__rloop_forward(rl, f);
    return;
  }
  respond(f, &resp);
}

void gs__front_setup(gs__rloop_t *rl) {
  rl->front.handler = handle_request;
  rl->front.ctx = rl;
  rl->front.max_body = rl->s->opt.max_body_bytes;
  rl->front.user_size = sizeof(front_req_t);
  rl->front.reuseport = rl->s->opt.router_threads > 1;
}
