/* The router's gRPC front: gRPC clients' calls come in through
 * net/grpc_server (raw routes: the bytes as sent); each goes to one
 * worker's gRPC port over one multiplexed nghttp2 client connection per
 * worker and its answer comes back unchanged. A call whose worker fails
 * before answering is retried once elsewhere. This file: the calls
 * (buffers, answers, retries, dispatch) and the front's life; the worker
 * connections are grpc_proxy_conn.c's, fan-outs grpc_fanout.c's. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/grpc_proxy_int.h"

#define DEFAULT_MAX_BODY ((size_t)64 << 20)
#define SWEEP_MS 50 /* how often deadlines are checked */

/* ---- small buffers ------------------------------------------------------ */

/* Appends len bytes unless that passes b's limit or the front's total. */
int gs__gp_bytes_add(front_t *f, gs_buf_t *b, const uint8_t *data, size_t len) {
  size_t before = b->len;
  if (len > MAX_BUFFERED - f->buffered)
    return -1;
  if (gs_buf_add(b, data, len) != GS_OK) {
    f->buffered -= before; /* a failed buffer lets its bytes go */
    return -1;
  }
  f->buffered += len;
  return 0;
}

static void bytes_release(front_t *f, gs_buf_t *b) {
  if (f)
    f->buffered -= b->len;
  gs_buf_free(b);
}

int gs__gp_hdrs_add(hdrs_t *h, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen) {
  return gs_h2_hdrs_add(h, MAX_HEADER_BYTES, name, nlen, value, vlen);
}

/* ---- calls -------------------------------------------------------------- */

/* A new call's buffers and deadline, linked with the front's calls (so
 * that a failed worker connection fails it). */
void gs__gp_call_init(call_t *call, front_t *f) {
  call->f = f;
  gs_buf_init_max(&call->body, GS_LIMIT_GRPC_MESSAGE, f->max_body);
  gs_buf_init(&call->resp_body, GS_LIMIT_GRPC_MESSAGE);
  gs_buf_init(&call->req.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&call->resp.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&call->trailers.b, GS_LIMIT_GRPC_HEADERS);
  call->deadline_ns = gs__serve_now_ns() + (uint64_t)f->timeout_ms * 1000000u;
  call->next = f->calls;
  if (f->calls)
    f->calls->prev = call;
  f->calls = call;
  f->n_calls++;
}

/* Unlinks call and lets its buffers go; a kid's or an undo's memory too
 * (a client's call_t is the server's call state). */
void gs__gp_call_free(call_t *call) {
  front_t *f = call->f;
  for (unsigned i = 0; i < call->n_kids; i++)
    if (call->kids[i]) {
      gs__gp_call_detach(call->kids[i], true);
      gs__gp_call_free(call->kids[i]);
    }
  free(call->kids);
  if (call->prev)
    call->prev->next = call->next;
  else
    f->calls = call->next;
  if (call->next)
    call->next->prev = call->prev;
  f->n_calls--;
  bytes_release(NULL, &call->req.b);
  bytes_release(NULL, &call->resp.b);
  bytes_release(NULL, &call->trailers.b);
  bytes_release(f, &call->body);
  bytes_release(f, &call->resp_body);
  if (!call->gc)
    free(call);
  gs__gp_front_maybe_free(f); /* the last call of a closed front */
}

/* Keeps a call's first error to answer with; its request bytes go. */
void gs__gp_call_set_error(call_t *call, int status, const char *fmt, ...) {
  va_list ap;
  if (call->error)
    return;
  call->error = status;
  va_start(ap, fmt);
  vsnprintf(call->error_msg, sizeof call->error_msg, fmt, ap);
  va_end(ap);
  bytes_release(call->f, &call->body);
}

/* Ends the attempt in flight; with reset, its stream is cancelled. */
void gs__gp_call_detach(call_t *call, bool reset) {
  h2_t *u = call->up;
  if (u && !u->closing) {
    nghttp2_session_set_stream_user_data(u->h2.session, call->up_id, NULL);
    if (reset) {
      nghttp2_submit_rst_stream(u->h2.session, NGHTTP2_FLAG_NONE, call->up_id,
                                NGHTTP2_CANCEL);
      u->dirty = true;
    }
  }
  if (call->wk)
    call->wk->inflight--;
  call->up = NULL;
  call->wk = NULL;
}

/* Records the attempt's outcome on its worker, then ends it. */
void gs__gp_call_end_attempt(call_t *call, bool ok, bool reset) {
  if (call->wk) {
    gs__wk_count(call->wk, ok);
    gs__wk_observe(call->wk, ok, gs__serve_now_ns() - call->t_attempt);
  }
  gs__gp_call_detach(call, reset);
}

/* Answers with a status of the router's own (a trailers-only response). */
void gs__gp_call_answer_error(call_t *call, int status, const char *msg) {
  if (call->undo) {
    gs__gp_call_free(call);
    return;
  }
  if (call->parent) {
    gs__gp_kid_done(call, status, msg);
    return;
  }
  call->answered = true;
  gs_grpc_call_fail(call->gc, status, msg);
}

/* The data provider of a worker's stream: the request, as it comes for a
 * stream (ModelStreamInfer). */
ssize_t gs__gp_read_body(nghttp2_session *session, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)source;
  (void)user;
  if (!call) /* answered or cancelled meanwhile: reset the stream */
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  gs_buf_t *b = &call->body;
  size_t n =
      b->len - call->body_sent < length ? b->len - call->body_sent : length;
  if (n)
    memcpy(buf, b->data + call->body_sent, n);
  call->body_sent += n;
  if (call->body_sent < b->len)
    return (ssize_t)n;
  if (call->streaming && !call->req_done) {
    /* all relayed so far: the buffer starts again, the rest comes later */
    call->f->buffered -= b->len;
    b->len = 0;
    call->body_sent = 0;
    return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
  }
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* The worker's answer so far goes to the client's queue; once the worker
 * is done, its trailers end the relay. */
static void call_relay_body(call_t *call) {
  front_t *f = call->f;
  gs_buf_t *out = gs_grpc_call_out(call->gc);
  f->buffered -= call->resp_body.len;
  if (out->len == 0) { /* moved, not copied */
    gs_buf_t t = *out;
    *out = call->resp_body;
    call->resp_body = t;
    gs_buf_reset(&call->resp_body);
  } else if (call->resp_body.len) {
    int rc = gs_buf_add(out, call->resp_body.data, call->resp_body.len);
    gs_buf_reset(&call->resp_body);
    if (rc != GS_OK) {
      gs_grpc_call_reset(call->gc, NGHTTP2_INTERNAL_ERROR);
      return;
    }
  }
  if (call->resp_done)
    gs_grpc_call_relay_end(call->gc, &call->trailers);
  else
    gs_grpc_call_kick(call->gc);
}

/* A stream has more to send on the worker's side (up) or the client's. */
void gs__gp_call_resume(call_t *call, bool up) {
  if (up && call->up && !call->up->closing) {
    nghttp2_session_resume_data(call->up->h2.session, call->up_id);
    call->up->dirty = true;
  } else if (!up && call->gc) {
    call_relay_body(call);
  }
}

/* The worker's response headers go to the client as they are. */
void gs__gp_call_relay_head(call_t *call) {
  bool only = call->resp_body.len == 0 && call->trailers.n == 0 &&
              (call->resp_done || !call->streaming);
  call->answered = true;
  gs_grpc_call_relay_head(call->gc, &call->resp, only);
}

/* Relays the worker's whole answer. A unary answer is small and written at
 * once by the worker, so it is gathered first: then every failure before
 * this point can still be answered as a plain error. */
void gs__gp_call_answer_relay(call_t *call) {
  if (call->undo) {
    gs__gp_call_free(call);
    return;
  }
  if (call->parent) {
    const char *msg = "";
    int st = gs__gp_hdrs_status(&call->trailers, &msg);
    if (st < 0)
      st = gs__gp_hdrs_status(&call->resp, &msg); /* trailers-only */
    gs__gp_kid_done(call, st < 0 ? GS__GRPC_INTERNAL : st, msg);
    return;
  }
  call->resp_done = true;
  gs__gp_call_relay_head(call);
  if (call->resp_body.len || call->trailers.n)
    call_relay_body(call);
}

/* The attempt failed at connection level: retry once, else UNAVAILABLE. */
void gs__gp_call_attempt_failed(call_t *call, bool passive) {
  gs__serve_t *s = call->f->s;
  gs__wk_t *failed = call->wk;
  gs__gp_call_end_attempt(call, false, true);
  if (passive && failed)
    gs__wk_passive_failure(failed);
  if (call->undo) {
    gs__gp_call_free(call);
    return;
  }
  if (call->answered && !call->parent) { /* a stream, part relayed */
    s->failures++;
    gs_grpc_call_reset(call->gc, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  if (call->got_headers || call->attempts >= 2 || call->f->closing ||
      call->parent || call->pinned) {
    s->failures++;
    gs__gp_call_answer_error(call, GS__GRPC_UNAVAILABLE,
                             "the worker's connection failed");
    return;
  }
  gs__wk_t *next = gs__pick(s, failed);
  if (!next) {
    s->failures++;
    gs__gp_call_answer_error(call, GS__GRPC_UNAVAILABLE, "no worker is ready");
    return;
  }
  s->retries++;
  gs__gp_call_send(call, next);
}

/* A unary call its worker answered UNAVAILABLE was not run there (device
 * failed, model not ready there, queue or rate limit refused it; the
 * worker's 503 over HTTP): tried once on another worker, as front.c does
 * with a 503, and not counted toward ejection (the attempt ended as a
 * success). False when it is to be relayed as it is. */
bool gs__gp_call_retry_not_run(call_t *call, gs__wk_t *tried) {
  front_t *f = call->f;
  const char *msg = "";
  if (!tried || call->parent || call->undo || call->streaming || call->pinned ||
      call->attempts >= 2 || f->closing)
    return false;
  int st = gs__gp_hdrs_status(&call->trailers, &msg);
  if (st < 0)
    st = gs__gp_hdrs_status(&call->resp, &msg); /* trailers-only */
  if (st != GS__GRPC_UNAVAILABLE)
    return false;
  gs__wk_t *next = gs__pick(f->s, tried);
  if (!next)
    return false;
  /* the refusal's answer goes; the request's bytes were kept */
  gs_h2_hdrs_clear(&call->resp);
  gs_h2_hdrs_clear(&call->trailers);
  f->buffered -= call->resp_body.len;
  gs_buf_reset(&call->resp_body);
  call->got_headers = false;
  call->resp_done = false;
  f->s->retries++;
  gs__gp_call_send(call, next);
  return true;
}

/* Whether call's :path is the service's method. */
bool gs__gp_call_is(const call_t *call, const char *method) {
  const char *p = (const char *)call->req.b.data;
  for (unsigned i = 0; i < call->req.n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    if (strcmp(p, ":path") == 0)
      return strncmp(p + nlen + 1, "/inference.GRPCInferenceService/", 32) ==
                 0 &&
             strcmp(p + nlen + 1 + 32, method) == 0;
    p += nlen + vlen + 2;
  }
  return false;
}

/* The worker of a ModelInfer's sequence, as seq_pick in front.c: NULL
 * with the call answered when that worker is gone. */
static gs__wk_t *call_seq_pick(call_t *call, bool *answered) {
  gs__serve_t *s = call->f->s;
  gs__rseq_t q;
  *answered = false;
  if (!gs__gp_call_is(call, "ModelInfer") ||
      !gs__rseq_from_grpc((const uint8_t *)call->body.data, call->body.len, &q))
    return gs__pick(s, NULL);
  call->pinned = true;
  unsigned port = 0;
  gs__wk_t *wk = gs__rseq_find(s, &q, &port);
  if (!wk) {
    gs__wk_t *pick = gs__pick(s, NULL);
    if (pick && q.start && !q.end)
      gs__rseq_pin(s, &q, pick, pick->http_port);
    return pick;
  }
  bool gone = wk->http_port != port || !gs__wk_routable(wk, gs__serve_now_ns());
  gs__wk_unref(wk); /* the table's keeps it while it is there */
  if (gone || q.end)
    gs__rseq_drop(s, &q);
  if (!gone)
    return wk;
  if (q.start) {
    gs__wk_t *pick = gs__pick(s, NULL);
    if (pick && !q.end)
      gs__rseq_pin(s, &q, pick, pick->http_port);
    return pick;
  }
  char msg[GS__SEQ_ID + 128];
  snprintf(msg, sizeof msg,
           "sequence %s was on a worker that is gone (restarted or "
           "removed): start the sequence again",
           q.id + 2);
  *answered = true;
  s->failures++;
  gs__gp_call_answer_error(call, GS__GRPC_INVALID_ARGUMENT, msg);
  return NULL;
}

/* The request is whole: route it. */
void gs__gp_call_dispatch(call_t *call) {
  gs__serve_t *s = call->f->s;
  if (call->error) {
    gs__gp_call_answer_error(call, call->error, call->error_msg);
    return;
  }
  s->requests++;
  if (gs__gp_call_is_fanout(call)) {
    if (!gs__gp_fanout_start(call)) {
      s->failures++;
      gs__gp_call_answer_error(call, GS__GRPC_UNAVAILABLE,
                               "no worker is ready");
    }
    return;
  }
  bool answered = false;
  /* a stream stays on one worker: its sequences with it */
  gs__wk_t *wk =
      call->streaming ? gs__pick(s, NULL) : call_seq_pick(call, &answered);
  if (answered)
    return;
  if (!wk) {
    s->failures++;
    gs__gp_call_answer_error(call, GS__GRPC_UNAVAILABLE, "no worker is ready");
    return;
  }
  gs__gp_call_send(call, wk);
}

/* ---- the clients' calls (net/grpc_server's callbacks) ------------------- */

/* The call_t a client's call holds, set up on first use. */
static call_t *front_call(gs_grpc_call_t *gc) {
  call_t *call = gs_grpc_call_state(gc);
  if (!call->f) {
    call->gc = gc;
    gs__gp_call_init(call, gs_grpc_call_owner(gc));
  }
  return call;
}

/* Keeps :path, :authority and the headers to forward (:method and :scheme
 * are the router's to set). */
static void on_header(gs_grpc_call_t *gc, const uint8_t *name, size_t nlen,
                      const uint8_t *value, size_t vlen) {
  call_t *call = front_call(gc);
  if (call->error ||
      (name[0] == ':' && !(nlen == 5 && memcmp(name, ":path", 5) == 0) &&
       !(nlen == 10 && memcmp(name, ":authority", 10) == 0)))
    return;
  if (gs__gp_hdrs_add(&call->req, name, nlen, value, vlen) != 0)
    gs__gp_call_set_error(call, GS__GRPC_RESOURCE_EXHAUSTED,
                          "the request's headers are larger than %u bytes",
                          MAX_HEADER_BYTES);
}

/* A unary call's request is whole: its bytes are kept (for a retry) and it
 * goes to a worker. */
static void on_unary(gs_grpc_call_t *gc, const uint8_t *msg, size_t len) {
  call_t *call = front_call(gc);
  front_t *f = call->f;
  (void)msg;
  if (!call->error && len > MAX_BUFFERED - f->buffered)
    gs__gp_call_set_error(call, GS__GRPC_RESOURCE_EXHAUSTED, "%s",
                          f->too_large);
  if (!call->error) {
    gs_grpc_call_take_request(gc, &call->body);
    f->buffered += call->body.len;
  }
  gs__gp_call_dispatch(call);
}

/* A stream (ModelStreamInfer) goes to its worker at once, without a
 * deadline; its request bytes are relayed as they come. */
static void on_stream(gs_grpc_call_t *gc, const uint8_t *data, size_t len) {
  call_t *call = front_call(gc);
  if (!data) {
    call->streaming = call->pinned = true;
    call->deadline_ns = UINT64_MAX;
    gs__gp_call_dispatch(call);
    return;
  }
  if (call->error || (call->answered && !call->wk))
    return;
  if (gs__gp_bytes_add(call->f, &call->body, data, len) != 0) {
    if (call->wk) { /* a stream past the limit: ends */
      gs_grpc_call_reset(gc, NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    gs__gp_call_set_error(call, GS__GRPC_RESOURCE_EXHAUSTED, "%s",
                          call->f->too_large);
  }
  gs__gp_call_resume(call, true);
}

/* The client half-closed a stream: the worker's request ends too. */
static void on_stream_end(gs_grpc_call_t *gc) {
  call_t *call = front_call(gc);
  call->req_done = true;
  gs__gp_call_resume(call, true);
}

/* The client's stream is done (answered and sent, reset by the client, or
 * its connection gone): an attempt still on a worker is cancelled. */
static void on_call_free(gs_grpc_call_t *gc) {
  call_t *call = gs_grpc_call_state(gc);
  if (!call->f)
    return;
  gs__gp_call_detach(call, true);
  gs__gp_call_free(call);
}

static const gs_grpc_route_t routes[] = {
    {"/inference.GRPCInferenceService/ModelStreamInfer", GS_GRPC_RAW_STREAM,
     on_stream},
    {NULL, GS_GRPC_RAW, on_unary}};

/* ---- deadlines and the front's life -------------------------------------- */

static void on_sweep(uv_timer_t *t) {
  front_t *f = t->data;
  uint64_t now = gs__serve_now_ns();
  for (call_t *call = f->calls; call; call = call->next) {
    if (call->answered || call->parent || now < call->deadline_ns)
      continue;
    char msg[96];
    snprintf(msg, sizeof msg, "the call took longer than %u ms", f->timeout_ms);
    gs__gp_call_end_attempt(call, false, true); /* RSTs the worker's stream */
    f->s->failures++;
    gs__gp_call_answer_error(call, GS__GRPC_DEADLINE_EXCEEDED, msg);
  }
}

static void on_front_handle_closed(uv_handle_t *h) {
  front_t *f = h->data;
  f->open_handles--;
  gs__gp_front_maybe_free(f);
}

int gs__grpc_proxy_listen(gs__serve_t *s, const char *host, unsigned port,
                          gs_error_t *err) {
  if (port > 65535)
    return gs_error_set(err, GS_EINVAL, "gRPC port %u is not in 0..65535",
                        port);
  front_t *f = calloc(1, sizeof *f);
  if (!f)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  s->grpc = f; /* closed by gs__grpc_proxy_close even when listening fails */
  f->s = s;
  f->max_body =
      s->opt.max_body_bytes ? s->opt.max_body_bytes : DEFAULT_MAX_BODY;
  f->timeout_ms = s->opt.request_timeout_ms ? s->opt.request_timeout_ms : 30000;
  snprintf(f->too_large, sizeof f->too_large,
           "the request is larger than %zu bytes", f->max_body);
  uv_prepare_init(&s->loop, &f->flusher);
  uv_timer_init(&s->loop, &f->sweeper);
  f->flusher.data = f->sweeper.data = f;
  f->open_handles = 2;
  /* Neither keeps the loop alive: connections and calls do. */
  uv_prepare_start(&f->flusher, gs__gp_on_flush);
  uv_unref((uv_handle_t *)&f->flusher);
  uv_timer_start(&f->sweeper, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&f->sweeper);
  const gs_grpc_srv_config_t cfg = {.routes = routes,
                                    .n_routes = sizeof routes / sizeof *routes,
                                    .owner = f,
                                    .max_message = f->max_body,
                                    .too_large = f->too_large,
                                    .conn_buffered = MAX_BUFFERED,
                                    .conn_full = f->too_large,
                                    .out_limit = GS_LIMIT_GRPC_MESSAGE,
                                    .window = WINDOW_BYTES,
                                    .conn_window = 16 * WINDOW_BYTES,
                                    .max_headers = MAX_HEADER_BYTES,
                                    .on_header = on_header,
                                    .on_half_close = on_stream_end,
                                    .call_state = sizeof(call_t),
                                    .on_call_free = on_call_free};
  int rc = gs_grpc_srv_listen_tcp(&f->srv, &s->loop, host ? host : "127.0.0.1",
                                  port, &cfg, err);
  if (rc != GS_OK)
    return gs_error_prefix(err, "gRPC: ");
  return GS_OK;
}

unsigned gs__grpc_proxy_port(const gs__serve_t *s) {
  const front_t *f = s->grpc;
  return f ? gs_grpc_srv_port(f->srv) : 0;
}

void gs__grpc_proxy_drain(gs__serve_t *s) {
  front_t *f = s->grpc;
  if (!f || f->draining)
    return;
  f->draining = true;
  /* Calls already begun finish; a connection closes once they have. */
  gs_grpc_srv_drain(f->srv);
}

unsigned gs__grpc_proxy_inflight(const gs__serve_t *s) {
  const front_t *f = s->grpc;
  return f ? f->n_calls : 0;
}

void gs__grpc_proxy_worker_gone(gs__wk_t *wk) {
  front_t *f = wk->s->grpc;
  if (!f)
    return;
  /* Its current connection and any it left after a GOAWAY. */
  for (h2_t *u = f->ups; u; u = u->next)
    if (u->wk == wk && !u->closing) {
      u->gone = true;
      gs__gp_h2_close(u);
    }
}

void gs__grpc_proxy_close(gs__serve_t *s) {
  front_t *f = s->grpc;
  if (!f)
    return;
  s->grpc = NULL;
  f->draining = f->closing = true;
  uv_close((uv_handle_t *)&f->flusher, on_front_handle_closed);
  uv_close((uv_handle_t *)&f->sweeper, on_front_handle_closed);
  /* Every attempt ends first, so the workers' connections close with
   * nothing left to retry; the clients' calls end as their connections
   * close (on_call_free), an undo now. */
  for (call_t *call = f->calls, *next; call; call = next) {
    next = call->next;
    gs__gp_call_detach(call, false);
    if (call->undo)
      gs__gp_call_free(call);
  }
  gs_grpc_srv_close(f->srv);
  f->srv = NULL;
  for (h2_t *u = f->ups; u; u = u->next)
    gs__gp_h2_close(u);
  gs__gp_front_maybe_free(f);
}
