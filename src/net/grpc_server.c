/* The gRPC server connection layer (net/grpc_server.h): listener, one
 * nghttp2 server session per connection on net/h2's pump, each stream's
 * request gathered (one message, or message by message for a bidi stream)
 * and routed by :path; unary replies end with grpc-status 0 trailers,
 * streamed replies are a deferred DATA source resumed as messages queue
 * (a relay's answers: grpc_relay.c). */
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/grpc.h"
#include "net/grpc_server_int.h"
#include "net/h2.h"
#include "net/http.h"

static void srv_maybe_free(gs_grpc_srv_t *s);

/* ---- calls ----------------------------------------------------------------
 */

static void call_free(gs_grpc_call_t *call) {
  gs_grpc_srv_t *s = call->srv;
  if (call->cfg->on_call_free)
    call->cfg->on_call_free(call);
  gs_buf_free(&call->in);
  gs_buf_free(&call->out);
  gs_buf_free(&call->relay_trailers.b);
  free(call->body);
  free(call);
  s->live_calls--;
  srv_maybe_free(s); /* closed while this call was held */
}

/* Drops the request's bytes, which the connection counted. */
static void call_drop_request(gs_grpc_call_t *call) {
  if (call->c)
    call->c->buffered -= call->in.len;
  gs_buf_free(&call->in);
}

/* The stream is gone: no more answers; freed now unless held. */
static void call_gone(gs_grpc_call_t *call) {
  conn_t *c = call->c;
  if (call->prev)
    call->prev->next = call->next;
  else if (c)
    c->calls = call->next;
  if (call->next)
    call->next->prev = call->prev;
  call->next = call->prev = NULL;
  call_drop_request(call);
  call->c = NULL;
  call->closed = true;
  if (!call->holds)
    call_free(call);
}

static bool call_bidi(const gs_grpc_call_t *call) {
  return call->route && call->route->kind == GS_GRPC_BIDI_STREAM && call->grpc;
}

static bool call_is(const gs_grpc_call_t *call, gs_grpc_kind_t kind) {
  return call->route && call->route->kind == kind;
}

/* An answer was queued on call's session: written by the next flush. */
void gs__grpc_call_dirty(gs_grpc_call_t *call) {
  if (call->c)
    call->c->dirty = true;
}

/* Whether a streaming call has nothing more to answer. */
static bool call_done(const gs_grpc_call_t *call) {
  return (call->half_closed || call->ended) && call->holds == 0;
}

void *gs_grpc_call_state(gs_grpc_call_t *call) {
  return call->state;
}

void *gs_grpc_call_owner(const gs_grpc_call_t *call) {
  return call->cfg->owner;
}

const char *gs_grpc_call_path(const gs_grpc_call_t *call) {
  return call->path;
}

bool gs_grpc_call_closed(const gs_grpc_call_t *call) {
  return call->closed;
}

void gs_grpc_call_hold(gs_grpc_call_t *call) {
  call->holds++;
}

bool gs_grpc_call_release(gs_grpc_call_t *call) {
  call->holds--;
  if (!call->closed)
    return true;
  if (!call->holds)
    call_free(call);
  return false;
}

/* ---- answers --------------------------------------------------------------
 */

static ssize_t read_reply(nghttp2_session *session, int32_t id, uint8_t *buf,
                          size_t length, uint32_t *flags,
                          nghttp2_data_source *source, void *user) {
  gs_grpc_call_t *call = source->ptr;
  size_t n = call->body_len - call->sent;
  (void)user;
  if (n > length)
    n = length;
  memcpy(buf, call->body + call->sent, n);
  call->sent += n;
  if (call->sent == call->body_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (gs__grpc_submit_ok_trailer(session, id) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

/* Compresses the reply's message as the request's was; on failure it goes
 * uncompressed. */
static void reply_encode(gs_grpc_call_t *call) {
  gs_buf_t out;
  gs_error_t err;
  gs_buf_init(&out, GS_LIMIT_COMPRESSED);
  if (gs__grpc_frame_compress(
          call->reply_encoding, call->body + GS__GRPC_PREFIX,
          call->body_len - GS__GRPC_PREFIX, &out, &err) != GS_OK) {
    gs_buf_free(&out);
    call->reply_encoding = GS__ENC_IDENTITY;
    return;
  }
  free(call->body);
  call->body = (uint8_t *)gs_buf_take(&out, &call->body_len);
}

void gs_grpc_call_reply(gs_grpc_call_t *call, uint8_t *framed, size_t len) {
  if (call->closed || call->trailers || call->headers_sent) {
    free(framed);
    return;
  }
  call->body = framed;
  call->body_len = len;
  call->headers_sent = call->trailers = true;
  if (call->cfg->compression && call->reply_encoding != GS__ENC_IDENTITY)
    reply_encode(call);
  nghttp2_nv head[] = {
      GS_H2_NV(":status", "200"), GS_H2_NV("content-type", "application/grpc"),
      GS_H2_NV("grpc-accept-encoding", GS__GRPC_ACCEPT_ENCODING),
      GS_H2_NV("grpc-encoding", gs__encoding_name(call->reply_encoding))};
  nghttp2_data_provider data = {.source.ptr = call,
                                .read_callback = read_reply};
  nghttp2_submit_response(call->c->h2.session, call->id, head,
                          call->cfg->compression ? 4 : 2, &data);
  gs__grpc_call_dirty(call);
}

void gs_grpc_call_reply_msg(gs_grpc_call_t *call, const void *msg, size_t len) {
  uint8_t *framed = malloc(GS__GRPC_PREFIX + len);
  if (!framed) {
    gs_grpc_call_fail(call, GS__GRPC_INTERNAL, "out of memory");
    return;
  }
  gs__grpc_frame_prefix(framed, len);
  if (len)
    memcpy(framed + GS__GRPC_PREFIX, msg, len);
  gs_grpc_call_reply(call, framed, GS__GRPC_PREFIX + len);
}

void gs_grpc_call_fail(gs_grpc_call_t *call, int status, const char *msg) {
  if (call->closed || call->trailers || call->headers_sent)
    return;
  call->headers_sent = call->trailers = true;
  gs__grpc_submit_status(call->c->h2.session, call->id,
                         status ? status : GS__GRPC_INTERNAL, msg);
  gs__grpc_call_dirty(call);
}

void gs_grpc_call_fail_error(gs_grpc_call_t *call, const gs_error_t *err) {
  gs_grpc_call_fail(call, gs_error_grpc_status(err->code), err->msg);
}

/* ---- streamed answers -----------------------------------------------------
 */

/* The trailers that end a stream: grpc-status and, for an error, its
 * message. */
static int submit_end_trailer(nghttp2_session *session, int32_t id, int status,
                              const char *text) {
  char code[16], msg[512];
  if (status == GS__GRPC_OK)
    return gs__grpc_submit_ok_trailer(session, id);
  snprintf(code, sizeof code, "%d", status);
  gs__grpc_percent_encode(text, msg, sizeof msg);
  nghttp2_nv trailers[] = {GS_H2_NV("grpc-status", code),
                           GS_H2_NV("grpc-message", msg)};
  return nghttp2_submit_trailer(session, id, trailers, 2);
}

ssize_t gs__grpc_read_stream(nghttp2_session *session, int32_t id, uint8_t *buf,
                             size_t length, uint32_t *flags,
                             nghttp2_data_source *source, void *user) {
  gs_grpc_call_t *call = source->ptr;
  size_t n = call->out.len - call->out_at;
  (void)user;
  if (n == 0 && !call_done(call))
    return NGHTTP2_ERR_DEFERRED; /* resumed when a reply is queued */
  if (n > length)
    n = length;
  if (n)
    memcpy(buf, call->out.data + call->out_at, n);
  call->out_at += n;
  if (call->out_at == call->out.len) {
    gs_buf_reset(&call->out);
    call->out_at = 0;
    if (call_done(call)) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      call->trailers = true;
      if (call->relayed ? gs__grpc_relay_trailer(session, id, call, flags)
                        : submit_end_trailer(session, id, call->end_status,
                                             call->end_msg)) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      if (!call->relayed)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  return (ssize_t)n;
}

void gs_grpc_call_kick(gs_grpc_call_t *call) {
  if (call->closed || call->trailers)
    return;
  nghttp2_session *session = call->c->h2.session;
  if (!call->headers_sent) {
    if (call->out.len == 0 && !call_done(call))
      return;                                     /* nothing to send yet */
    if (call->out.len == 0 && call->end_status) { /* trailers only */
      gs_grpc_call_fail(call, call->end_status, call->end_msg);
      return;
    }
    nghttp2_nv head[] = {GS_H2_NV(":status", "200"),
                         GS_H2_NV("content-type", "application/grpc")};
    nghttp2_data_provider data = {.source.ptr = call,
                                  .read_callback = gs__grpc_read_stream};
    call->headers_sent = true;
    nghttp2_submit_response(session, call->id, head, 2, &data);
    gs__grpc_call_dirty(call);
    return;
  }
  nghttp2_session_resume_data(session, call->id); /* fails if not deferred */
  gs__grpc_call_dirty(call);
}

gs_buf_t *gs_grpc_call_out(gs_grpc_call_t *call) {
  return &call->out;
}

int gs_grpc_call_send(gs_grpc_call_t *call, const void *msg, size_t len) {
  uint8_t prefix[GS__GRPC_PREFIX];
  gs__grpc_frame_prefix(prefix, len);
  if (gs_buf_add(&call->out, prefix, sizeof prefix) != GS_OK ||
      (len && gs_buf_add(&call->out, msg, len) != GS_OK))
    return call->out.failed;
  gs_grpc_call_kick(call);
  return GS_OK;
}

void gs_grpc_call_end(gs_grpc_call_t *call, int status, const char *msg) {
  if (call->ended)
    return;
  call->ended = true;
  call->end_status = status;
  snprintf(call->end_msg, sizeof call->end_msg, "%.250s", msg ? msg : "");
  call_drop_request(call);
  gs_grpc_call_kick(call);
}

/* ---- connections ----------------------------------------------------------
 */

static void srv_maybe_free(gs_grpc_srv_t *s) {
  if (s->closing && s->listener_closed && !s->conns && !s->live_calls)
    free(s);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  gs_grpc_srv_t *s = c->s;
  gs_h2_release(&c->h2);
  while (c->calls)
    call_gone(c->calls);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c);
  srv_maybe_free(s);
}

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->h, on_conn_closed);
}

/* Sends what nghttp2 has queued; closes once neither side wants more. */
static void conn_flush(conn_t *c) {
  gs_error_t err;
  c->dirty = false;
  if (c->closing)
    return;
  if (gs_h2_flush(&c->h2, &err) != GS_OK || gs_h2_finished(&c->h2))
    conn_close(c);
}

void gs_grpc_call_flush(gs_grpc_call_t *call) {
  gs_grpc_call_kick(call);
  if (call->c)
    conn_flush(call->c);
}

static void on_written(gs_h2_t *h, int status) {
  conn_t *c = h->data;
  if (status < 0)
    conn_close(c);
  else
    conn_flush(c);
}

/* ---- requests -------------------------------------------------------------
 */

/* Takes each whole message a bidi call's bytes hold. */
static void call_read_messages(gs_grpc_call_t *call) {
  while (!call->ended && !call->closed) {
    const uint8_t *msg;
    size_t len, used;
    gs_error_t err = {0};
    int status =
        gs__grpc_stream_next((const uint8_t *)call->in.data, call->in.len,
                             call->cfg->max_message, &msg, &len, &used, &err);
    if (status == GS__GRPC_STREAM_MORE)
      return;
    if (status != GS__GRPC_OK) {
      gs_grpc_call_end(call, status, err.msg);
      return;
    }
    call->route->handler(call, msg, len);
    if (call->closed || call->ended)
      return; /* the handler ended it: its bytes are dropped already */
    call->c->buffered -= used;
    gs_buf_consume(&call->in, used);
  }
}

/* A bidi call's client half-closed: a partial message left is an error;
 * the call ends once every answer is out. */
static void call_half_close(gs_grpc_call_t *call) {
  call->half_closed = true;
  if (call->in.len && !call->ended)
    gs_grpc_call_end(call, GS__GRPC_INVALID_ARGUMENT,
                     "the stream ended inside a message");
  gs_grpc_call_kick(call);
}

/* The request's one message (into plain when it was compressed), or the
 * status it is refused with (err says why). */
static int request_message(gs_grpc_call_t *call, gs_buf_t *plain,
                           const uint8_t **msg, size_t *len, gs_error_t *err) {
  const gs_grpc_srv_config_t *cfg = call->cfg;
  const uint8_t *in = (const uint8_t *)call->in.data;
  bool compressed = false;
  int status;
  if (call->error) {
    snprintf(err->msg, sizeof err->msg, "%s", call->error_msg);
    return call->error;
  }
  if (!call->grpc) {
    snprintf(err->msg, sizeof err->msg, "not a gRPC request");
    return GS__GRPC_INVALID_ARGUMENT;
  }
  if (!call->route) {
    snprintf(err->msg, sizeof err->msg, "unknown method %s", call->path);
    return GS__GRPC_UNIMPLEMENTED;
  }
  if (!cfg->compression)
    return gs__grpc_frame_read(in, call->in.len, cfg->max_message, msg, len,
                               err);
  status =
      gs__grpc_frame_decode(in, call->in.len, cfg->max_message, call->encoding,
                            plain, msg, len, &compressed, err);
  if (compressed &&
      gs__encoding_listed(call->accept, strlen(call->accept), call->encoding))
    call->reply_encoding = call->encoding; /* answered in kind */
  return status;
}

/* The request is whole: refused, or its message goes to the handler. */
static void call_dispatch(gs_grpc_call_t *call) {
  const uint8_t *msg = NULL;
  size_t len = 0;
  gs_error_t err = {0};
  gs_buf_t plain = {0}; /* the decompressed message */
  call->dispatched = true;
  if (call_is(call, GS_GRPC_RAW)) {
    if (call->error)
      gs_grpc_call_fail(call, call->error, call->error_msg);
    else
      call->route->handler(
          call, (const uint8_t *)(call->in.data ? call->in.data : ""),
          call->in.len);
  } else if (!call->grpc && call->cfg->http_415) {
    nghttp2_nv head[] = {GS_H2_NV(":status", "415")};
    call->headers_sent = call->trailers = true;
    nghttp2_submit_response(call->c->h2.session, call->id, head, 1, NULL);
  } else {
    int status = request_message(call, &plain, &msg, &len, &err);
    if (status != GS__GRPC_OK)
      gs_grpc_call_fail(call, status, err.msg);
    else
      call->route->handler(call, msg, len);
  }
  gs_buf_free(&plain);
  call_drop_request(call); /* the handler kept what it needs */
}

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user) {
  conn_t *c = user;
  const gs_grpc_srv_config_t *cfg = &c->s->cfg;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  gs_grpc_call_t *call = calloc(1, sizeof *call + cfg->call_state);
  if (!call)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  call->c = c;
  call->srv = c->s;
  c->s->live_calls++;
  call->cfg = cfg;
  call->id = frame->hd.stream_id;
  gs_buf_init_max(&call->in, GS_LIMIT_GRPC_MESSAGE,
                  cfg->max_message + GS__GRPC_PREFIX);
  gs_buf_init(&call->out, cfg->out_limit);
  call->next = c->calls;
  if (c->calls)
    c->calls->prev = call;
  c->calls = call;
  nghttp2_session_set_stream_user_data(session, call->id, call);
  return 0;
}

static const gs_grpc_route_t *route_find(const gs_grpc_srv_config_t *cfg,
                                         const char *path) {
  for (size_t i = 0; i < cfg->n_routes; i++)
    if (!cfg->routes[i].path || strcmp(cfg->routes[i].path, path) == 0)
      return &cfg->routes[i];
  return NULL;
}

static bool named(const uint8_t *name, size_t len, const char *want) {
  return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user) {
  gs_grpc_call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  bool compression = call && call->cfg->compression;
  (void)flags;
  (void)user;
  if (!call || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  if (named(name, namelen, ":path")) {
    snprintf(call->path, sizeof call->path, "%.*s", (int)valuelen,
             (const char *)value);
    call->route = route_find(call->cfg, call->path);
    if (call_is(call, GS_GRPC_RAW)) /* the bytes as sent, framed */
      gs_buf_init_max(&call->in, GS_LIMIT_GRPC_MESSAGE, call->cfg->max_message);
  } else if (named(name, namelen, "content-type")) {
    call->grpc = gs__grpc_content_type(value, valuelen);
  } else if (compression && named(name, namelen, "grpc-encoding")) {
    call->encoding = gs__encoding_parse((const char *)value, valuelen);
  } else if (compression && named(name, namelen, "grpc-accept-encoding")) {
    snprintf(call->accept, sizeof call->accept, "%.*s", (int)valuelen,
             (const char *)value);
  }
  if (call->cfg->on_header && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
    call->cfg->on_header(call, name, namelen, value, valuelen);
  return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *user) {
  conn_t *c = user;
  gs_grpc_call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  if (!call || call->error || call->ended)
    return 0;
  if (call_is(call, GS_GRPC_RAW_STREAM)) { /* the owner keeps the bytes */
    if (call->dispatched && !call->closed)
      call->route->handler(call, data, len);
    return 0;
  }
  const gs_grpc_srv_config_t *cfg = call->cfg;
  bool conn_full = cfg->conn_buffered && len > cfg->conn_buffered - c->buffered;
  size_t before = call->in.len;
  if (conn_full || gs_buf_add(&call->in, data, len) != GS_OK) {
    if (!conn_full && call->in.failed == GS_ENOMEM)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    const char *why = conn_full ? cfg->conn_full : cfg->too_large;
    c->buffered -= before;
    gs_buf_free(&call->in);
    if (call_bidi(call)) { /* answered on the stream, which ends */
      gs_grpc_call_end(call, GS__GRPC_RESOURCE_EXHAUSTED, why);
      return 0;
    }
    call->error = GS__GRPC_RESOURCE_EXHAUSTED;
    snprintf(call->error_msg, sizeof call->error_msg, "%s", why);
    return 0;
  }
  c->buffered += len;
  if (call_bidi(call))
    call_read_messages(call);
  return 0;
}

/* A relayed stream goes to its handler once its headers are in, and is
 * told when the client half-closes. */
static void raw_stream_frame(gs_grpc_call_t *call, const nghttp2_frame *frame) {
  if (frame->hd.type == NGHTTP2_HEADERS && !call->dispatched) {
    call->dispatched = true;
    call->route->handler(call, NULL, 0);
  }
  if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !call->closed &&
      call->cfg->on_half_close)
    call->cfg->on_half_close(call);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user) {
  (void)user;
  if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  gs_grpc_call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!call)
    return 0;
  if (call_is(call, GS_GRPC_RAW_STREAM)) {
    raw_stream_frame(call, frame);
    return 0;
  }
  if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  if (call_bidi(call)) {
    if (!call->half_closed)
      call_half_close(call);
  } else if (!call->dispatched) {
    call_dispatch(call);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id,
                           uint32_t error_code, void *user) {
  gs_grpc_call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)error_code;
  (void)user;
  if (call)
    call_gone(call);
  return 0;
}

static int conn_start(conn_t *c) {
  const gs_grpc_srv_config_t *cfg = &c->s->cfg;
  gs_h2_config_t h2cfg = {.server = true,
                          .max_streams = GS__GRPC_MAX_STREAMS,
                          .window = cfg->window,
                          .conn_window = cfg->conn_window,
                          .max_headers = cfg->max_headers};
  nghttp2_session_callbacks *cb;
  gs_error_t err;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  int rc =
      gs_h2_init(&c->h2, (uv_stream_t *)&c->h, &h2cfg, cb, c, on_written, &err);
  nghttp2_session_callbacks_del(cb);
  c->h2.data = c;
  return rc == GS_OK ? 0 : -1;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  gs_error_t err;
  if (nread < 0 ||
      (nread > 0 && !c->closing &&
       gs_h2_feed(&c->h2, buf->base, (size_t)nread, &err) != GS_OK)) {
    conn_close(c);
    return;
  }
  conn_flush(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  gs_grpc_srv_t *s = listener->data;
  if (status < 0 || s->closing || s->draining)
    return;
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->s = s;
  if (s->is_unix)
    uv_pipe_init(s->loop, &c->h.pipe, 0);
  else
    uv_tcp_init(s->loop, &c->h.tcp);
  c->h.tcp.data = c;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  if (uv_accept(listener, (uv_stream_t *)&c->h) != 0 || conn_start(c) != 0) {
    conn_close(c);
    return;
  }
  if (!s->is_unix)
    uv_tcp_nodelay(&c->h.tcp, 1);
  uv_read_start((uv_stream_t *)&c->h, gs_h2_alloc, on_read);
  conn_flush(c);
}

/* ---- the server -----------------------------------------------------------
 */

static gs_grpc_srv_t *srv_new(uv_loop_t *loop, const gs_grpc_srv_config_t *cfg,
                              bool is_unix) {
  gs_grpc_srv_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->loop = loop;
  s->cfg = *cfg;
  s->is_unix = is_unix;
  return s;
}

int gs_grpc_srv_listen_tcp(gs_grpc_srv_t **out, uv_loop_t *loop,
                           const char *host, unsigned port,
                           const gs_grpc_srv_config_t *cfg, gs_error_t *err) {
  gs_grpc_srv_t *s = *out = srv_new(loop, cfg, false);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = gs__tcp_listen(loop, &s->listener.tcp, host, port, false,
                          on_connection, &s->port, err);
  s->listener.tcp.data = s;
  return rc;
}

int gs_grpc_srv_listen_unix(gs_grpc_srv_t **out, uv_loop_t *loop,
                            const char *path, const gs_grpc_srv_config_t *cfg,
                            gs_error_t *err) {
  gs_grpc_srv_t *s = *out = srv_new(loop, cfg, true);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  uv_pipe_init(loop, &s->listener.pipe, 0);
  s->listener.pipe.data = s;
  unlink(path); /* a socket left by an earlier run */
  int rc = uv_pipe_bind(&s->listener.pipe, path);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener.pipe, 16, on_connection);
  if (rc != 0)
    return gs_error_set(err, GS_ESYSTEM, "listening on %s: %s", path,
                        uv_strerror(rc));
  return GS_OK;
}

unsigned gs_grpc_srv_port(const gs_grpc_srv_t *s) {
  return s ? s->port : 0;
}

static void on_listener_closed(uv_handle_t *h) {
  gs_grpc_srv_t *s = h->data;
  s->listener_closed = true;
  srv_maybe_free(s);
}

void gs_grpc_srv_close(gs_grpc_srv_t *s) {
  if (!s || s->closing)
    return;
  s->closing = true;
  for (conn_t *c = s->conns; c; c = c->next)
    conn_close(c);
  if (!uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  srv_maybe_free(s); /* drained before: everything may be closed already */
}

void gs_grpc_srv_drain(gs_grpc_srv_t *s) {
  if (!s || s->closing || s->draining)
    return;
  s->draining = true;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  for (conn_t *c = s->conns; c; c = c->next) {
    if (c->closing)
      continue;
    nghttp2_submit_goaway(
        c->h2.session, NGHTTP2_FLAG_NONE,
        nghttp2_session_get_last_proc_stream_id(c->h2.session),
        NGHTTP2_NO_ERROR, NULL, 0);
    c->dirty = true;
  }
}

size_t gs_grpc_srv_conns(const gs_grpc_srv_t *s) {
  size_t n = 0;
  for (const conn_t *c = s ? s->conns : NULL; c; c = c->next)
    n++;
  return n;
}

bool gs_grpc_srv_flush(gs_grpc_srv_t *s) {
  bool any = false;
  for (conn_t *c = s->conns; c; c = c->next)
    if (c->dirty) {
      conn_flush(c);
      any = true;
    }
  return any;
}

void gs_grpc_srv_each(gs_grpc_srv_t *s,
                      void (*fn)(gs_grpc_call_t *call, void *arg), void *arg) {
  for (conn_t *c = s->conns; c; c = c->next) {
    for (gs_grpc_call_t *call = c->calls, *next; call; call = next) {
      next = call->next;
      fn(call, arg);
    }
    conn_flush(c);
  }
}
