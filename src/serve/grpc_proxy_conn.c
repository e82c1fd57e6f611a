/* The router's gRPC front, its HTTP/2 client connections to the workers on
 * net/h2's pump (one per worker, multiplexed): a call's answer gathered, or
 * relayed as it comes for a stream; these and the clients' connections
 * (net/grpc_server's) are flushed once per loop turn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/grpc_proxy_int.h"

/* ---- connections: writing and closing ----------------------------------- */

void gs__gp_front_maybe_free(front_t *f) {
  if (f->closing && f->open_handles == 0 && !f->ups && f->n_calls == 0)
    free(f);
}

static void on_h2_closed(uv_handle_t *h) {
  h2_t *c = h->data;
  front_t *f = c->f;
  gs_h2_release(&c->h2);
  if (c->prev)
    c->prev->next = c->next;
  else
    f->ups = c->next;
  if (c->next)
    c->next->prev = c->prev;
  gs__wk_unref(c->wk);
  free(c);
  gs__gp_front_maybe_free(f);
}

/* Fails what an upstream connection carried. The calls are first taken
 * off it, so the retries (which may fail other connections) never meet
 * a list being walked. */
static void up_fail_calls(h2_t *u) {
  call_t *failing = NULL;
  for (call_t *call = u->f->calls; call; call = call->next)
    if (call->up == u) {
      call->up = NULL;
      call->fail_next = failing;
      failing = call;
    }
  if (failing)
    gs__serve_log(u->f->s, "gRPC: the connection to worker %s failed",
                  u->wk->label);
  while (failing) {
    call_t *call = failing;
    failing = call->fail_next;
    gs__gp_call_attempt_failed(call, !u->gone);
  }
}

void gs__gp_h2_close(h2_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->wk->grpc == c)
    c->wk->grpc = NULL; /* the next call opens a new one */
  up_fail_calls(c);
  uv_close((uv_handle_t *)&c->tcp, on_h2_closed);
}

static void on_written(gs_h2_t *h, int status) {
  h2_t *c = h->data;
  if (status < 0)
    gs__gp_h2_close(c);
  else
    c->dirty = true; /* the flusher sends what is still queued */
}

/* Sends what nghttp2 has queued (up to the pump's high water mark, then
 * again after a write completes). */
static void h2_flush(h2_t *c) {
  gs_error_t err;
  c->dirty = false;
  if (c->closing || !c->connected)
    return;
  if (gs_h2_flush(&c->h2, &err) != GS_OK || gs_h2_finished(&c->h2))
    gs__gp_h2_close(c);
}

/* nghttp2 callbacks only queue frames and mark their connection dirty;
 * this runs before the loop waits again and sends for every dirty one, the
 * clients' (gs_grpc_srv_flush) and the workers'. One place for sending
 * keeps one session's callbacks from running inside another's (a failed
 * worker's calls are answered on clients' sessions and retried on other
 * workers' sessions). */
void gs__gp_on_flush(uv_prepare_t *p) {
  front_t *f = p->data;
  bool again = true;
  while (again) {
    again = f->srv && gs_grpc_srv_flush(f->srv);
    for (h2_t *c = f->ups; c; c = c->next)
      if (c->dirty) {
        h2_flush(c);
        again = true;
      }
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  h2_t *c = stream->data;
  gs_error_t err;
  if (nread < 0 ||
      (nread > 0 && !c->closing &&
       gs_h2_feed(&c->h2, buf->base, (size_t)nread, &err) != GS_OK))
    gs__gp_h2_close(c);
  else
    c->dirty = true;
}

/* ---- the client side: calls to workers ----------------------------------- */

static int up_on_header(nghttp2_session *session, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user) {
  call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  (void)flags;
  (void)user;
  if (!call || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  hdrs_t *h = frame->headers.cat == NGHTTP2_HCAT_HEADERS ? &call->trailers
                                                         : &call->resp;
  call->got_headers = true;
  if (gs__gp_hdrs_add(h, name, namelen, value, valuelen) == 0)
    return 0;
  gs__gp_call_set_error(call, GS__GRPC_INTERNAL,
                        "the worker's headers are larger than %u bytes",
                        MAX_HEADER_BYTES);
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
}

static int up_on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                      const uint8_t *data, size_t len, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  if (!call || call->error ||
      gs__gp_bytes_add(call->f, &call->resp_body, data, len) == 0)
    return 0;
  gs__gp_call_set_error(call, GS__GRPC_RESOURCE_EXHAUSTED,
                        "the worker's response is too large to relay");
  /* A data callback's nonzero return would end the whole connection (all
   * calls on this worker): reset just this stream. */
  nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id,
                            NGHTTP2_INTERNAL_ERROR);
  ((h2_t *)user)->dirty = true;
  return 0;
}

static int up_on_frame_recv(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user) {
  h2_t *u = user;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    /* Streams past its last id close as refused (and are retried); the
     * others finish here; new calls go to a new connection. */
    if (u->wk->grpc == u)
      u->wk->grpc = NULL;
    return 0;
  }
  call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!call ||
      (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
    return 0;
  bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (call->streaming && !end && !call->answered && !call->error &&
      frame->hd.type == NGHTTP2_HEADERS) {
    gs__gp_call_relay_head(call); /* relayed as it comes from now on */
    return 0;
  }
  if (call->streaming && call->answered && !end) {
    gs__gp_call_resume(call, false); /* more messages */
    return 0;
  }
  if (!end)
    return 0;
  if (call->streaming && call->answered) {
    if (call->error) {
      gs__gp_call_attempt_failed(call, false);
      return 0;
    }
    gs__gp_call_end_attempt(call, true, false);
    call->resp_done = true; /* its trailers follow the last message */
    gs__gp_call_resume(call, false);
    return 0;
  }
  if (call->error) { /* cut short above: never relay a truncated answer */
    gs__gp_call_end_attempt(call, false, true);
    gs__gp_call_answer_error(call, call->error, call->error_msg);
    return 0;
  }
  /* Our request may still be sending: the detached stream is reset. */
  gs__wk_t *wk = call->wk;
  gs__gp_call_end_attempt(call, true, false);
  if (!gs__gp_call_retry_not_run(call, wk))
    gs__gp_call_answer_relay(call);
  return 0;
}

static int up_on_stream_close(nghttp2_session *session, int32_t id,
                              uint32_t error_code, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)error_code;
  (void)user;
  if (!call)
    return 0;
  call->up = NULL; /* the stream is gone: nothing to reset */
  if (call->error) {
    gs__gp_call_end_attempt(call, false, false);
    gs__gp_call_answer_error(call, call->error, call->error_msg);
  } else {
    gs__gp_call_attempt_failed(call, true); /* reset or refused by the worker */
  }
  return 0;
}

/* ---- sessions ----------------------------------------------------------- */

/* c's session: a client to a worker, with header lists limited both ways. */
static int h2_session(h2_t *c) {
  const gs_h2_config_t cfg = {.server = false,
                              .max_streams = GS__GRPC_MAX_STREAMS,
                              .window = WINDOW_BYTES,
                              .conn_window = 16 * WINDOW_BYTES,
                              .max_headers = MAX_HEADER_BYTES};
  nghttp2_session_callbacks *cb = NULL;
  gs_error_t err;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  nghttp2_session_callbacks_set_on_header_callback(cb, up_on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, up_on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, up_on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb,
                                                         up_on_stream_close);
  int rc =
      gs_h2_init(&c->h2, (uv_stream_t *)&c->tcp, &cfg, cb, c, on_written, &err);
  nghttp2_session_callbacks_del(cb);
  c->h2.data = c;
  return rc == GS_OK ? 0 : -1;
}

static h2_t *h2_new(front_t *f) {
  h2_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->f = f;
  uv_tcp_init(&f->s->loop, &c->tcp);
  c->tcp.data = c;
  c->next = f->ups;
  if (f->ups)
    f->ups->prev = c;
  f->ups = c;
  return c;
}

static void on_connect(uv_connect_t *req, int status) {
  h2_t *u = req->handle->data;
  if (u->closing)
    return;
  if (status < 0) {
    gs__serve_log(u->f->s, "gRPC: cannot connect to worker %s: %s",
                  u->wk->label, uv_strerror(status));
    gs__gp_h2_close(u);
    return;
  }
  u->connected = true;
  u->dirty = true;
  uv_tcp_nodelay(&u->tcp, 1);
  if (uv_read_start((uv_stream_t *)&u->tcp, gs_h2_alloc, on_read) != 0)
    gs__gp_h2_close(u);
}

/* wk's connection, opened on first use; NULL when it cannot be. */
static h2_t *up_get(front_t *f, gs__wk_t *wk) {
  if (wk->grpc)
    return wk->grpc;
  if (!wk->grpc_port)
    return NULL;
  h2_t *u = h2_new(f);
  if (!u)
    return NULL;
  wk->refs++; /* held until on_h2_closed */
  u->wk = wk;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)wk->grpc_port, &addr);
  if (h2_session(u) != 0 ||
      uv_tcp_connect(&u->connect, &u->tcp, (struct sockaddr *)&addr,
                     on_connect) != 0) {
    gs__gp_h2_close(u); /* no call on it yet */
    return NULL;
  }
  wk->grpc = u;
  return u;
}

/* One attempt of call on wk: a failure to even submit it counts as the
 * worker's connection failing. */
void gs__gp_call_send(call_t *call, gs__wk_t *wk) {
  h2_t *u = up_get(call->f, wk);
  call->attempts++;
  call->wk = wk;
  call->sent_to = wk;
  wk->inflight++;
  call->t_attempt = gs__serve_now_ns();
  call->body_sent = 0;
  size_t n = 0;
  nghttp2_nv *nv = u ? gs_h2_hdrs_nv(&call->req, 2, &n) : NULL;
  int32_t id = -1;
  if (nv) {
    /* gRPC calls are POSTs over cleartext here; :path and :authority come
     * from the client with its headers. */
    nv[0] = (nghttp2_nv)GS_H2_NV(":method", "POST");
    nv[1] = (nghttp2_nv)GS_H2_NV(":scheme", "http");
    nghttp2_data_provider data = {.read_callback = gs__gp_read_body};
    id = nghttp2_submit_request(u->h2.session, NULL, nv, n, &data, call);
    free(nv);
  }
  if (id < 0) {
    gs__gp_call_attempt_failed(call, true);
    return;
  }
  call->up = u;
  call->up_id = id;
  u->dirty = true;
}
