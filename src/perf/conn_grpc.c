/* gpuslice perf's gRPC client: HTTP/2 with nghttp2 on a connection of
 * conn.c, one unary call at a time on it. The answer's message is kept
 * unframed in c->body, its grpc-status in c->status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf/perf_int.h"

#define WINDOW_BYTES (16 << 20)

/* Everything nghttp2 has queued, in one write: HEADERS and DATA of a call
 * leave in one segment rather than one per frame. */
static int flush(gs__perf_conn_t *c) {
  static uint8_t buf[256 * 1024]; /* one loop thread */
  size_t len = 0;
  for (;;) {
    const uint8_t *chunk;
    ssize_t n = nghttp2_session_mem_send(c->h2, &chunk);
    if (n < 0)
      return GS_ESYSTEM;
    if (n > 0 && len + (size_t)n <= sizeof buf) {
      memcpy(buf + len, chunk, (size_t)n);
      len += (size_t)n;
      continue;
    }
    if (len && gs__perf_conn_write(c, buf, len) != GS_OK)
      return c->err.code;
    len = 0;
    if (n == 0)
      return GS_OK;
    if (gs__perf_conn_write(c, chunk, (size_t)n) != GS_OK)
      return c->err.code;
  }
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame,
                     const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *user) {
  gs__perf_conn_t *c = user;
  (void)s;
  (void)flags;
  if (frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
    c->http_status = atoi((const char *)value);
  } else if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    c->status = atoi((const char *)value);
    c->have_grpc_status = true;
  } else if (nlen == 12 && memcmp(name, "grpc-message", 12) == 0) {
    snprintf(c->message, sizeof c->message, "%.*s", (int)vlen,
             (const char *)value);
  }
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
  if (c->body_len >= 5) {
    memmove(c->body, c->body + 5, c->body_len - 5);
    c->body_len -= 5;
  }
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code,
                           void *user) {
  gs__perf_conn_t *c = user;
  (void)s;
  (void)id;
  if (!c->busy)
    return 0;
  if (!c->have_grpc_status) {
    c->status = 14; /* UNAVAILABLE: no trailers, as gRPC's clients say */
    snprintf(c->message, sizeof c->message,
             "the server ended the call without a grpc-status (HTTP %d, "
             "HTTP/2 error %u)",
             c->http_status, code);
  }
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
  nghttp2_session_callbacks *cb;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return GS_ENOMEM;
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  int rc = nghttp2_session_client_new(&c->h2, cb, c);
  nghttp2_session_callbacks_del(cb);
  if (rc != 0)
    return GS_ENOMEM;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_BYTES}};
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings, 2) != 0 ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
                                            WINDOW_BYTES) != 0 ||
      flush(c) != GS_OK)
    return GS_ESYSTEM;
  return GS_OK;
}

#define NV(n, v)                                                               \
  {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                   \
   NGHTTP2_NV_FLAG_NONE}

int gs__perf_grpc_send(gs__perf_conn_t *c, const gs__perf_req_t *req) {
  nghttp2_nv head[] = {NV(":method", "POST"),
                       NV(":scheme", "http"),
                       NV(":path", req->path),
                       NV(":authority", c->authority),
                       NV("content-type", "application/grpc"),
                       NV("te", "trailers")};
  nghttp2_data_provider data = {.read_callback = read_request};
  c->req = req;
  c->req_off = 0;
  c->have_grpc_status = false;
  c->http_status = 0;
  if (nghttp2_submit_request(c->h2, NULL, head, 6, &data, c) < 0) {
    gs__perf_conn_fail(c, GS_ESYSTEM, "cannot start a gRPC call");
    return GS_ESYSTEM;
  }
  if (flush(c) != GS_OK) {
    if (!c->err.code)
      gs__perf_conn_fail(c, GS_ESYSTEM, "sending a gRPC call failed");
    return c->err.code;
  }
  return GS_OK;
}

int gs__perf_grpc_read(gs__perf_conn_t *c, const uint8_t *data, size_t len) {
  ssize_t n = nghttp2_session_mem_recv(c->h2, data, len);
  if (n < 0 || (size_t)n != len) {
    if (!c->err.code)
      gs__perf_conn_fail(c, GS_EPARSE, "HTTP/2 from the server: %s",
                         nghttp2_strerror((int)n));
    return c->err.code;
  }
  if (flush(c) != GS_OK) {
    if (!c->err.code)
      gs__perf_conn_fail(c, GS_ESYSTEM, "sending to the server failed");
    return c->err.code;
  }
  if (c->complete && c->busy) {
    c->complete = false;
    c->busy = false;
    c->on_done(c, GS_OK);
  }
  return GS_OK;
}

void gs__perf_grpc_release(gs__perf_conn_t *c) {
  nghttp2_session_del(c->h2);
  c->h2 = NULL;
}
