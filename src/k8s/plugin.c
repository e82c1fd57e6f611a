/* The device plugin's gRPC server on one resource's unix socket, on net/h2's
 * pump: unary calls are gathered and answered by plugin_rpc.c; each
 * ListAndWatch stream stays open and gets the resource's device list again
 * whenever it changes (a deferred DATA source resumed on publish). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8s/plugin_int.h"
#include "net/grpc.h"
#include "net/h2.h"

#define WINDOW_BYTES (1 << 20)
#define MAX_REQUEST ((size_t)1 << 20) /* kubelet's requests are small */
#define LIST_AND_WATCH "/v1beta1.DevicePlugin/ListAndWatch"

typedef struct conn_s conn_t;

typedef struct stream_s {
  struct stream_s *next;
  conn_t *c;
  int32_t id;
  char path[128];
  bool grpc, watch, too_big;
  gs_buf_t in;  /* request bytes */
  gs_buf_t out; /* framed messages not yet taken by nghttp2 */
  size_t sent;
} stream_t;

struct conn_s {
  uv_pipe_t pipe;
  gs_h2_t h2;
  gs__dp_server_t *s;
  conn_t *next;
  stream_t *streams;
  bool closing;
};

struct gs__dp_server_s {
  gs__dp_t *dp;
  gs__dp_resource_t *res;
  uv_pipe_t listener;
  conn_t *conns;
  bool closing, listener_closed;
};

static void stream_free(stream_t *st) {
  gs_buf_free(&st->in);
  gs_buf_free(&st->out);
  free(st);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  gs_h2_release(&c->h2);
  while (c->streams) {
    stream_t *st = c->streams;
    c->streams = st->next;
    stream_free(st);
  }
  gs__dp_server_t *s = c->s;
  for (conn_t **p = &s->conns; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  free(c);
  if (s->listener_closed && !s->conns)
    free(s); /* the last of a stopped server */
}

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void conn_flush(conn_t *c) {
  gs_error_t err;
  if (!c->closing &&
      (gs_h2_flush(&c->h2, &err) != GS_OK || gs_h2_finished(&c->h2)))
    conn_close(c);
}

static void on_written(gs_h2_t *h, int status) {
  conn_t *c = h->data;
  if (status < 0)
    conn_close(c);
  else
    conn_flush(c);
}

/* Frames msg (a serialized message) into the stream's outgoing bytes. */
static int queue_message(stream_t *st, const gs_buf_t *msg) {
  uint8_t prefix[GS__GRPC_PREFIX];
  gs__grpc_frame_prefix(prefix, msg->len);
  if (gs_buf_add(&st->out, prefix, sizeof prefix) != GS_OK ||
      gs_buf_add(&st->out, msg->data, msg->len) != GS_OK)
    return -1;
  return 0;
}

static ssize_t read_out(nghttp2_session *session, int32_t id, uint8_t *buf,
                        size_t length, uint32_t *flags,
                        nghttp2_data_source *source, void *user) {
  stream_t *st = source->ptr;
  (void)user;
  size_t n = st->out.len - st->sent;
  if (n == 0 && st->watch)
    return NGHTTP2_ERR_DEFERRED; /* until the list changes */
  if (n > length)
    n = length;
  memcpy(buf, st->out.data + st->sent, n);
  st->sent += n;
  if (st->sent == st->out.len) {
    gs_buf_reset(&st->out);
    st->sent = 0;
    if (!st->watch) {
      *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
      if (gs__grpc_submit_ok_trailer(session, id) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }
  return (ssize_t)n;
}

static void respond_data(conn_t *c, stream_t *st) {
  nghttp2_nv head[] = {GS_H2_NV(":status", "200"),
                       GS_H2_NV("content-type", "application/grpc")};
  nghttp2_data_provider data = {.source.ptr = st, .read_callback = read_out};
  nghttp2_submit_response(c->h2.session, st->id, head, 2, &data);
}

static void dispatch(conn_t *c, stream_t *st) {
  gs__dp_t *dp = c->s->dp;
  const uint8_t *msg = NULL;
  size_t len = 0;
  char why[512];
  gs_error_t err = {0};
  gs_buf_t reply;
  gs_buf_init(&reply, GS_LIMIT_GRPC_MESSAGE);
  int status = st->too_big ? GS__GRPC_RESOURCE_EXHAUSTED
               : !st->grpc ? GS__GRPC_INVALID_ARGUMENT
                           : gs__grpc_frame_read((const uint8_t *)st->in.data,
                                                 st->in.len, MAX_REQUEST, &msg,
                                                 &len, &err);
  snprintf(why, sizeof why, "%s",
           st->too_big ? "request too large"
           : !st->grpc ? "not a gRPC request"
                       : "");
  if (status != GS__GRPC_OK && st->grpc && !st->too_big)
    snprintf(why, sizeof why, "%.500s", err.msg);
  if (status == GS__GRPC_OK && strcmp(st->path, LIST_AND_WATCH) == 0) {
    st->watch = true;
    status = gs__dp_list(dp, c->s->res, &reply);
  } else if (status == GS__GRPC_OK) {
    status =
        gs__dp_call(dp, c->s->res, st->path, msg, len, &reply, why, sizeof why);
    if (status != GS__GRPC_OK)
      gs__dp_log(dp, "%s %s: %s", c->s->res->name, st->path, why);
  }
  if (status == GS__GRPC_OK && queue_message(st, &reply) == 0)
    respond_data(c, st);
  else
    gs__grpc_submit_status(c->h2.session, st->id,
                           status ? status : GS__GRPC_INTERNAL, why);
  gs_buf_free(&reply);
  gs_buf_free(&st->in);
}

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user) {
  conn_t *c = user;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  stream_t *st = calloc(1, sizeof *st);
  if (!st)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  st->c = c;
  st->id = frame->hd.stream_id;
  gs_buf_init(&st->in, GS_LIMIT_GRPC_MESSAGE);
  gs_buf_init(&st->out, GS_LIMIT_GRPC_MESSAGE);
  st->next = c->streams;
  c->streams = st;
  nghttp2_session_set_stream_user_data(session, st->id, st);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user) {
  stream_t *st =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  (void)flags;
  (void)user;
  if (!st)
    return 0;
  if (namelen == 5 && memcmp(name, ":path", 5) == 0)
    snprintf(st->path, sizeof st->path, "%.*s", (int)valuelen,
             (const char *)value);
  else if (namelen == 12 && memcmp(name, "content-type", 12) == 0)
    st->grpc = gs__grpc_content_type(value, valuelen);
  return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *user) {
  stream_t *st = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  (void)user;
  if (!st || st->too_big)
    return 0;
  if (len > MAX_REQUEST + GS__GRPC_PREFIX - st->in.len ||
      gs_buf_add(&st->in, data, len) != GS_OK) {
    st->too_big = true;
    gs_buf_free(&st->in);
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user) {
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  stream_t *st =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (st)
    dispatch(user, st);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id,
                           uint32_t error_code, void *user) {
  conn_t *c = user;
  stream_t *st = nghttp2_session_get_stream_user_data(session, id);
  (void)error_code;
  if (!st)
    return 0;
  for (stream_t **p = &c->streams; *p; p = &(*p)->next)
    if (*p == st) {
      *p = st->next;
      break;
    }
  stream_free(st);
  return 0;
}

static int conn_start(conn_t *c) {
  static const gs_h2_config_t cfg = {.server = true,
                                     .max_streams = GS__GRPC_MAX_STREAMS,
                                     .window = WINDOW_BYTES,
                                     .conn_window = 4 * WINDOW_BYTES};
  nghttp2_session_callbacks *cb;
  gs_error_t err;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  int rc = gs_h2_init(&c->h2, (uv_stream_t *)&c->pipe, &cfg, cb, c, on_written,
                      &err);
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
  gs__dp_server_t *s = listener->data;
  if (status < 0 || s->closing)
    return;
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->s = s;
  uv_pipe_init(s->dp->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->next = s->conns;
  s->conns = c;
  if (uv_accept(listener, (uv_stream_t *)&c->pipe) != 0 || conn_start(c) != 0) {
    conn_close(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->pipe, gs_h2_alloc, on_read);
  conn_flush(c);
}

int gs__dp_server_start(gs__dp_t *dp, gs__dp_resource_t *res, gs_error_t *err) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dp->opt.plugin_dir, res->endpoint);
  gs__dp_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  s->dp = dp;
  s->res = res;
  uv_pipe_init(dp->loop, &s->listener, 0);
  s->listener.data = s;
  res->server = s;
  unlink(path); /* a socket left by an earlier run */
  int rc = uv_pipe_bind(&s->listener, path);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, 16, on_connection);
  if (rc != 0) {
    gs__dp_server_stop(res);
    return gs_error_set(err, GS_ESYSTEM, "listening on %s: %s", path,
                        uv_strerror(rc));
  }
  return GS_OK;
}

static void on_listener_closed(uv_handle_t *h) {
  gs__dp_server_t *s = h->data;
  s->listener_closed = true;
  if (!s->conns)
    free(s);
}

void gs__dp_server_stop(gs__dp_resource_t *res) {
  gs__dp_server_t *s = res->server;
  if (!s)
    return;
  res->server = NULL;
  s->closing = true;
  for (conn_t *c = s->conns; c; c = c->next)
    conn_close(c);
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

void gs__dp_server_publish(gs__dp_t *dp, gs__dp_resource_t *res) {
  gs_buf_t list;
  gs_buf_init(&list, GS_LIMIT_GRPC_MESSAGE);
  if (gs__dp_list(dp, res, &list) != GS__GRPC_OK ||
      (list.len == res->last_list.len &&
       (list.len == 0 ||
        memcmp(list.data, res->last_list.data, list.len) == 0))) {
    gs_buf_free(&list);
    return;
  }
  gs_buf_free(&res->last_list);
  res->last_list = list;
  for (conn_t *c = res->server ? res->server->conns : NULL; c; c = c->next) {
    for (stream_t *st = c->streams; st; st = st->next)
      if (st->watch && queue_message(st, &list) == 0)
        nghttp2_session_resume_data(c->h2.session, st->id);
    conn_flush(c);
  }
}
