/* The router's gRPC front: HTTP/2 with prior knowledge from gRPC clients;
 * each unary call goes to one worker's gRPC port over one multiplexed
 * nghttp2 client connection per worker and its answer comes back unchanged.
 * A call whose worker fails before answering is retried once elsewhere.
 * This file: the calls (buffers, answers, retries, dispatch) and the front's
 * life; the connections are grpc_proxy_conn.c's, fan-outs grpc_fanout.c's. */
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
  if (h->list_bytes + nlen + vlen + 32 > MAX_HEADER_BYTES)
    return -1;
  uint8_t *p = gs_buf_reserve(&h->b, nlen + vlen + 2);
  if (!p)
    return -1;
  memcpy(p, name, nlen);
  p[nlen] = '\0';
  memcpy(p + nlen + 1, value, vlen);
  p[nlen + 1 + vlen] = '\0';
  gs_buf_commit(&h->b, nlen + vlen + 2);
  h->list_bytes += nlen + vlen + 32;
  h->n++;
  return 0;
}

/* h's pairs after `first` entries of the caller's; skips pseudo headers
 * other than :status, :path and :authority. Free the array. */
nghttp2_nv *gs__gp_hdrs_nv(const hdrs_t *h, size_t first, size_t *n) {
  nghttp2_nv *nv = calloc(first + h->n + 1, sizeof *nv);
  const char *p = (const char *)h->b.data;
  *n = first;
  for (unsigned i = 0; nv && i < h->n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    if (p[0] != ':' || strcmp(p, ":status") == 0 || strcmp(p, ":path") == 0 ||
        strcmp(p, ":authority") == 0)
      nv[(*n)++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nlen + 1, nlen,
                                vlen, NGHTTP2_NV_FLAG_NONE};
    p += nlen + vlen + 2;
  }
  return nv;
}

/* ---- calls -------------------------------------------------------------- */

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
  if (call->dc)
    call->dc->calls--;
  bytes_release(NULL, &call->req.b);
  bytes_release(NULL, &call->resp.b);
  bytes_release(NULL, &call->trailers.b);
  bytes_release(f, &call->body);
  bytes_release(f, &call->resp_body);
  free(call);
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

void gs__gp_call_submit(call_t *call, const nghttp2_nv *nv, size_t n,
                        const nghttp2_data_provider *data) {
  h2_t *dc = call->dc;
  call->answered = true;
  if (nghttp2_submit_response(dc->h2.session, call->down_id, nv, n, data) != 0)
    nghttp2_submit_rst_stream(dc->h2.session, NGHTTP2_FLAG_NONE, call->down_id,
                              NGHTTP2_INTERNAL_ERROR);
  dc->dirty = true;
}

/* Answers with a status of the router's own (a trailers-only response). */
void gs__gp_call_answer_error(call_t *call, int status, const char *msg) {
  h2_t *dc = call->dc;
  if (call->undo) {
    gs__gp_call_free(call);
    return;
  }
  if (call->parent) {
    gs__gp_kid_done(call, status, msg);
    return;
  }
  call->answered = true;
  if (gs__grpc_submit_status(dc->h2.session, call->down_id, status, msg) != 0)
    nghttp2_submit_rst_stream(dc->h2.session, NGHTTP2_FLAG_NONE, call->down_id,
                              NGHTTP2_INTERNAL_ERROR);
  dc->dirty = true;
}

/* The data provider of both sides: on a worker's session it sends the
 * request, on a client's the response, then the worker's trailers. */
ssize_t gs__gp_read_body(nghttp2_session *session, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)source;
  (void)user;
  if (!call) /* answered or cancelled meanwhile: reset the stream */
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  bool up = !call->dc || session != call->dc->h2.session;
  const gs_buf_t *b = up ? &call->body : &call->resp_body;
  size_t *sent = up ? &call->body_sent : &call->resp_sent;
  size_t n = b->len - *sent < length ? b->len - *sent : length;
  if (n)
    memcpy(buf, b->data + *sent, n);
  *sent += n;
  if (*sent < b->len)
    return (ssize_t)n;
  if (call->streaming && !(up ? call->req_done : call->resp_done)) {
    /* all relayed so far: the buffer starts again, the rest comes later */
    call->f->buffered -= b->len;
    ((gs_buf_t *)b)->len = 0;
    *sent = 0;
    return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
  }
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!up && call->trailers.n) {
    size_t nt;
    nghttp2_nv *nv = gs__gp_hdrs_nv(&call->trailers, 0, &nt);
    int rc = nv ? nghttp2_submit_trailer(session, id, nv, nt) : -1;
    free(nv);
    if (rc != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  }
  return (ssize_t)n;
}

/* A stream has more to send on the worker's side (up) or the client's. */
void gs__gp_call_resume(call_t *call, bool up) {
  if (up && call->up && !call->up->closing) {
    nghttp2_session_resume_data(call->up->h2.session, call->up_id);
    call->up->dirty = true;
  } else if (!up && !call->dc->closing) {
    nghttp2_session_resume_data(call->dc->h2.session, call->down_id);
    call->dc->dirty = true;
  }
}

/* Relays the worker's whole answer. A unary answer is small and written at
 * once by the worker, so it is gathered first: then every failure before
 * this point can still be answered as a plain error. */

void gs__gp_call_answer_relay(call_t *call) {
  size_t n;
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
  nghttp2_nv *nv = gs__gp_hdrs_nv(&call->resp, 0, &n);
  if (!nv) {
    gs__gp_call_answer_error(call, GS__GRPC_INTERNAL, "out of memory");
    return;
  }
  nghttp2_data_provider data = {.read_callback = gs__gp_read_body};
  bool trailers_only = call->resp_body.len == 0 && call->trailers.n == 0;
  gs__gp_call_submit(call, nv, n, trailers_only ? NULL : &data);
  free(nv);
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
    nghttp2_submit_rst_stream(call->dc->h2.session, NGHTTP2_FLAG_NONE,
                              call->down_id, NGHTTP2_INTERNAL_ERROR);
    call->dc->dirty = true;
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
  uv_prepare_init(&s->loop, &f->flusher);
  uv_timer_init(&s->loop, &f->sweeper);
  f->flusher.data = f->sweeper.data = f;
  f->open_handles = 3;
  /* Neither keeps the loop alive: connections and calls do. */
  uv_prepare_start(&f->flusher, gs__gp_on_flush);
  uv_unref((uv_handle_t *)&f->flusher);
  uv_timer_start(&f->sweeper, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&f->sweeper);
  int rc = gs__tcp_listen(&s->loop, &f->listener, host ? host : "127.0.0.1",
                          port, false, gs__gp_on_connection, &f->port, err);
  f->listener.data = f;
  if (rc != GS_OK)
    return gs_error_prefix(err, "gRPC: ");
  return GS_OK;
}

unsigned gs__grpc_proxy_port(const gs__serve_t *s) {
  const front_t *f = s->grpc;
  return f ? f->port : 0;
}

void gs__grpc_proxy_drain(gs__serve_t *s) {
  front_t *f = s->grpc;
  if (!f || f->draining)
    return;
  f->draining = true;
  if (!uv_is_closing((uv_handle_t *)&f->listener))
    uv_close((uv_handle_t *)&f->listener, on_front_handle_closed);
  for (h2_t *c = f->downs; c; c = c->next) {
    if (c->closing)
      continue;
    /* Calls already begun finish; the connection closes once they have. */
    nghttp2_submit_goaway(
        c->h2.session, NGHTTP2_FLAG_NONE,
        nghttp2_session_get_last_proc_stream_id(c->h2.session),
        NGHTTP2_NO_ERROR, NULL, 0);
    c->dirty = true;
  }
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
  uv_handle_t *handles[] = {(uv_handle_t *)&f->listener,
                            (uv_handle_t *)&f->flusher,
                            (uv_handle_t *)&f->sweeper};
  for (size_t i = 0; i < 3; i++)
    if (!uv_is_closing(handles[i]))
      uv_close(handles[i], on_front_handle_closed);
  /* Clients first: that ends every call, so the workers' connections
   * close with nothing left to retry. */
  for (h2_t *c = f->downs; c; c = c->next)
    gs__gp_h2_close(c);
  for (h2_t *u = f->ups; u; u = u->next)
    gs__gp_h2_close(u);
  gs__gp_front_maybe_free(f);
}
