/* gpuslice perf's gRPC client: HTTP/2 on a connection of conn.c through
 * net/h2's pump, one unary call at a time on it. The answer's message is
 * kept unframed in c->body, its grpc-status in c->status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf/perf_int.h"

#define WINDOW_BYTES (16 << 20)

/* Sends what nghttp2 queued: HEADERS and DATA of a call leave in one
 * write. */
static int flush(gs__perf_conn_t *c, const char *what) {
  gs_error_t err;
  if (gs_h2_flush(&c->h2, &err) == GS_OK)
    return GS_OK;
  if (!c->err.code)
    gs__perf_conn_fail(c, err.code, "%s: %s", what, err.msg);
  return c->err.code;
}

/* A write completed. A failed one ends the call waiting (as conn.c's
 * writes do): the connection is not used again. */
static void on_written(gs_h2_t *h, int status) {
  gs__perf_conn_t *c = h->data;
  if (c->closing)
    return;
  if (status == 0 && c->busy && !c->t_sent)
    c->t_sent = gs__perf_now_ns();
  if (status < 0)
    gs__perf_conn_fail(c, GS_ESYSTEM, "sending to the server: %s",
                       uv_strerror(status));
  if ((status < 0 || flush(c, "sending to the server failed") != GS_OK) &&
      c->open) {
    bool was_busy = c->busy;
    c->open = c->busy = false;
    if (was_busy)
      c->on_done(c, c->err.code);
  }
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame,
                     const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *user) {
  gs__perf_conn_t *c = user;
  (void)s;
  (void)flags;
  if (frame->hd.type == NGHTTP2_HEADERS)
    gs__grpc_answer_header(&c->answer, name, nlen, value, vlen);
  return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *user) {
  gs__perf_conn_t *c = user;
  (void)s;
  (void)flags;
  (void)id;
  return gs__perf_body_append(c, (const char *)data, len) == GS_OK
             ? 0
             : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* Drops the 5-byte frame prefix so that body is the message alone. */
static void unframe(gs__perf_conn_t *c) {
  if (c->body.len >= GS__GRPC_PREFIX)
    gs_buf_consume(&c->body, GS__GRPC_PREFIX);
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code,
                           void *user) {
  gs__perf_conn_t *c = user;
  (void)s;
  (void)id;
  if (!c->busy)
    return 0;
  gs__grpc_answer_end(&c->answer, code);
  c->status = c->answer.status;
  snprintf(c->message, sizeof c->message, "%s", c->answer.message);
  unframe(c);
  c->complete = true;
  return 0;
}

static ssize_t read_request(nghttp2_session *s, int32_t id, uint8_t *buf,
                            size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user) {
  gs__perf_conn_t *c = user;
  (void)s;
  (void)id;
  (void)source;
  size_t n = c->req->len - c->req_off;
  n = n < length ? n : length;
  memcpy(buf, c->req->data + c->req_off, n);
  c->req_off += n;
  if (c->req_off == c->req->len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

int gs__perf_grpc_start(gs__perf_conn_t *c) {
  static const gs_h2_config_t cfg = {.window = WINDOW_BYTES,
                                     .conn_window = WINDOW_BYTES};
  nghttp2_session_callbacks *cb;
  gs_error_t err;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return GS_ENOMEM;
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  int rc =
      gs_h2_init(&c->h2, (uv_stream_t *)&c->tcp, &cfg, cb, c, on_written, &err);
  nghttp2_session_callbacks_del(cb);
  c->h2.data = c;
  if (rc != GS_OK)
    return rc;
  return flush(c, "sending to the server failed");
}

int gs__perf_grpc_send(gs__perf_conn_t *c, const gs__perf_req_t *req) {
  nghttp2_data_provider data = {.read_callback = read_request};
  c->req = req;
  c->req_off = 0;
  memset(&c->answer, 0, sizeof c->answer);
  if (gs__grpc_submit_call(c->h2.session, c->authority, req->path, &data, c) <
      0) {
    gs__perf_conn_fail(c, GS_ESYSTEM, "cannot start a gRPC call");
    return GS_ESYSTEM;
  }
  int rc = flush(c, "sending a gRPC call failed");
  if (rc == GS_OK && c->h2.writes)
    c->t_sent = 0; /* queued: the write callback sets it */
  return rc;
}

int gs__perf_grpc_read(gs__perf_conn_t *c, const uint8_t *data, size_t len) {
  gs_error_t err;
  if (gs_h2_feed(&c->h2, data, len, &err) != GS_OK) {
    if (!c->err.code)
      gs__perf_conn_fail(c, GS_EPARSE, "%s from the server", err.msg);
    return c->err.code;
  }
  int rc = flush(c, "sending to the server failed");
  if (rc != GS_OK)
    return rc;
  if (c->complete && c->busy) {
    c->complete = false;
    c->busy = false;
    c->on_done(c, GS_OK);
  }
  return GS_OK;
}

void gs__perf_grpc_release(gs__perf_conn_t *c) {
  gs_h2_release(&c->h2);
}
