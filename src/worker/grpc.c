/* The worker's gRPC server: HTTP/2 on the worker's libuv loop through
 * net/h2's pump. Each stream carries one unary call: its message is
 * gathered (64 MiB at most), answered through grpc_call.c, and infers are
 * submitted as HTTP's are (gs__infer_submit: the pool, and the dynamic
 * batcher). Responses end with grpc-status trailers, errors with a
 * trailers-only response. ModelStreamInfer's stream carries many: each
 * message is an infer answered on the stream as soon as it completes (an
 * error as a message with error_message), until the client half-closes
 * and every answer is out (grpc-status 0), or a message cannot be framed
 * (its status in the trailers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/h2.h"
#include "worker/grpc_int.h"

#define WINDOW_BYTES (1 << 20)
/* Infers one ModelStreamInfer stream may have running at once. */
#define STREAM_MAX_PENDING 1024u

typedef struct conn_s conn_t;

typedef struct stream_s {
  struct stream_s *next, *prev; /* in the connection's list */
  conn_t *c;                    /* NULL once the connection is gone */
  int32_t id;
  gs__grpc_method_t method;
  bool grpc_content_type;
  bool in_flight; /* an infer runs on the pool */
  bool closed;    /* nghttp2 is done with the stream */
  gs_buf_t buf;   /* the request's bytes */
  int error;      /* a gRPC status found while reading, 0 if none */
  char error_msg[128];
  gs__grpc_reply_t reply;
  size_t sent; /* bytes of reply.body sent */
  /* compression: grpc-encoding, grpc-accept-encoding, and the reply's */
  gs__encoding_t encoding, reply_encoding;
  char accept[64];
  gs__infer_job_t job;
  /* ModelStreamInfer: many messages each way. */
  bool streaming;
  bool half_closed;  /* the client sent END_STREAM */
  bool headers_sent; /* the response (data provider) is submitted */
  bool trailers;     /* the trailers are queued: nothing more to send */
  int end_status;    /* a framing error ends the stream with this status */
  char end_msg[256];
  unsigned pending; /* its infers running */
  gs_buf_t out;     /* framed responses not yet given to nghttp2 */
  size_t out_at;
} stream_t;

/* One message of a ModelStreamInfer stream while its infer runs. */
typedef struct stream_req_s {
  stream_t *s;
  gs__infer_job_t job;
  gs__grpc_reply_t reply;
} stream_req_t;

struct conn_s {
  uv_tcp_t tcp;
  gs_h2_t h2;
  gs__grpc_server_t *g;
  conn_t *next, *prev;
  stream_t *streams;
  size_t buffered; /* request bytes held by this connection's streams */
  bool closing;
};

struct gs__grpc_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  gs__repo_t *repo;
  unsigned port;
  conn_t *conns;
};

static void stream_free(stream_t *s) {
  gs_buf_free(&s->buf);
  gs_buf_free(&s->out);
  gs__grpc_reply_release(&s->reply);
  gs__grpc_infer_destroy(s->job.grpc);
  free(s);
}

/* Drops the request's bytes, which the connection counted. */
static void stream_drop_request(stream_t *s) {
  if (s->c)
    s->c->buffered -= s->buf.len;
  gs_buf_free(&s->buf);
}

static void stream_unlink(stream_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else if (s->c)
    s->c->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
  stream_drop_request(s);
}

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  gs_h2_release(&c->h2);
  while (c->streams) {
    stream_t *s = c->streams;
    stream_unlink(s);
    s->c = NULL;
    s->closed = true;
    if (!s->in_flight && !s->pending)
      stream_free(s);
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    c->g->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Sends what nghttp2 has queued; closes once neither side wants more. */
static void conn_flush(conn_t *c) {
  gs_error_t err;
  if (c->closing)
    return;
  if (gs_h2_flush(&c->h2, &err) != GS_OK || gs_h2_finished(&c->h2))
    conn_close(c);
}

static void on_written(gs_h2_t *h, int status) {
  conn_t *c = h->data;
  if (status < 0)
    conn_close(c);
  else
    conn_flush(c);
}

static ssize_t read_reply(nghttp2_session *session, int32_t id, uint8_t *buf,
                          size_t length, uint32_t *flags,
                          nghttp2_data_source *source, void *user) {
  stream_t *s = source->ptr;
  size_t n = s->reply.body_len - s->sent;
  (void)user;
  if (n > length)
    n = length;
  memcpy(buf, s->reply.body + s->sent, n);
  s->sent += n;
  if (s->sent == s->reply.body_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (gs__grpc_submit_ok_trailer(session, id) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

/* Compresses the reply's message as the request's was (when the client
 * accepts that coding); on failure the message goes uncompressed. */
static void reply_encode(stream_t *s) {
  gs_buf_t out;
  gs_error_t err;
  gs_buf_init(&out, GS_LIMIT_COMPRESSED);
  if (gs__grpc_frame_compress(
          s->reply_encoding, s->reply.body + GS__GRPC_PREFIX,
          s->reply.body_len - GS__GRPC_PREFIX, &out, &err) != GS_OK) {
    gs_buf_free(&out);
    s->reply_encoding = GS__ENC_IDENTITY;
    return;
  }
  free(s->reply.body);
  s->reply.body = (uint8_t *)gs_buf_take(&out, &s->reply.body_len);
}

/* Queues the reply: the message then trailers, or trailers only. */
static void stream_respond(stream_t *s) {
  conn_t *c = s->c;
  if (s->reply.status == GS__GRPC_OK && s->reply.body) {
    if (s->reply_encoding != GS__ENC_IDENTITY)
      reply_encode(s);
    nghttp2_nv head[] = {
        GS_H2_NV(":status", "200"),
        GS_H2_NV("content-type", "application/grpc"),
        GS_H2_NV("grpc-accept-encoding", GS__GRPC_ACCEPT_ENCODING),
        GS_H2_NV("grpc-encoding", gs__encoding_name(s->reply_encoding))};
    nghttp2_data_provider data = {.source.ptr = s, .read_callback = read_reply};
    nghttp2_submit_response(c->h2.session, s->id, head, 4, &data);
    return;
  }
  gs__grpc_submit_status(c->h2.session, s->id,
                         s->reply.status ? s->reply.status : GS__GRPC_INTERNAL,
                         s->reply.message);
}

static void after_infer(gs__infer_job_t *job) {
  stream_t *s = job->data;
  gs__infer_job_finish(&s->job);
  s->in_flight = false;
  if (!s->closed)
    gs__grpc_infer_reply(&s->job.resp, &s->reply);
  gs__http_response_release(&s->job.resp);
  gs__grpc_infer_destroy(s->job.grpc);
  s->job.grpc = NULL;
  if (s->closed) {
    stream_free(s);
    return;
  }
  stream_respond(s);
  conn_flush(s->c);
}

/* ---- ModelStreamInfer ------------------------------------------------------
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

/* Whether the stream has nothing more to answer: the client is done
 * sending (or a framing error stopped reading) and no infer runs. */
static bool stream_done(const stream_t *s) {
  return (s->half_closed || s->end_status) && s->pending == 0;
}

static ssize_t read_stream(nghttp2_session *session, int32_t id, uint8_t *buf,
                           size_t length, uint32_t *flags,
                           nghttp2_data_source *source, void *user) {
  stream_t *s = source->ptr;
  size_t n = s->out.len - s->out_at;
  (void)user;
  if (n == 0 && !stream_done(s))
    return NGHTTP2_ERR_DEFERRED; /* resumed when an answer is queued */
  if (n > length)
    n = length;
  if (n)
    memcpy(buf, s->out.data + s->out_at, n);
  s->out_at += n;
  if (s->out_at == s->out.len) {
    gs_buf_reset(&s->out);
    s->out_at = 0;
    if (stream_done(s)) {
      *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
      s->trailers = true;
      if (submit_end_trailer(session, id, s->end_status, s->end_msg) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }
  return (ssize_t)n;
}

/* Lets nghttp2 take what the stream has queued (the response headers
 * first); the caller flushes the connection unless inside a callback. */
static void stream_kick(stream_t *s) {
  if (s->closed || s->trailers)
    return;
  nghttp2_session *session = s->c->h2.session;
  if (!s->headers_sent) {
    if (s->out.len == 0 && !stream_done(s))
      return;                               /* nothing to send yet */
    if (s->out.len == 0 && s->end_status) { /* nothing sent: trailers only */
      s->trailers = true;
      gs__grpc_submit_status(session, s->id, s->end_status, s->end_msg);
      return;
    }
    nghttp2_nv head[] = {GS_H2_NV(":status", "200"),
                         GS_H2_NV("content-type", "application/grpc")};
    nghttp2_data_provider data = {.source.ptr = s,
                                  .read_callback = read_stream};
    s->headers_sent = true;
    nghttp2_submit_response(session, s->id, head, 2, &data);
    return;
  }
  nghttp2_session_resume_data(session, s->id); /* fails if not deferred */
}

/* Queues a response on the stream (an error message in its place when it
 * cannot be queued). */
static void stream_out(stream_t *s, uint8_t field, const void *data,
                       size_t len) {
  static const char too_large[] = "the response is too large for the stream";
  size_t before = s->out.len;
  if (gs__grpc_stream_response(&s->out, field, data, len) != GS_OK) {
    s->out.len = before; /* drops the partial message */
    s->out.failed = 0;
    if (gs__grpc_stream_response(&s->out, 1, too_large, sizeof too_large - 1) !=
        GS_OK)
      s->out.len = before;
  }
  stream_kick(s);
}

static void stream_out_error(stream_t *s, const char *msg) {
  stream_out(s, 1, msg, strlen(msg));
}

static void stream_req_free(stream_req_t *r) {
  gs__http_response_release(&r->job.resp);
  gs__grpc_infer_destroy(r->job.grpc);
  gs__grpc_reply_release(&r->reply);
  free(r);
}

static void after_stream_infer(gs__infer_job_t *job) {
  stream_req_t *r = job->data;
  stream_t *s = r->s;
  gs__infer_job_finish(job);
  s->pending--;
  if (s->closed) { /* the client reset the stream: nobody to answer */
    stream_req_free(r);
    if (!s->pending && !s->in_flight)
      stream_free(s);
    return;
  }
  gs__grpc_infer_reply(&job->resp, &r->reply);
  if (r->reply.status == GS__GRPC_OK && r->reply.body)
    stream_out(s, 2, r->reply.body + GS__GRPC_PREFIX,
               r->reply.body_len - GS__GRPC_PREFIX);
  else
    stream_out_error(s, r->reply.message);
  stream_req_free(r);
  stream_kick(s); /* the last answer: the trailers */
  conn_flush(s->c);
}

/* One message of the stream: its infer starts, or its error is queued. */
static void stream_request(stream_t *s, const uint8_t *msg, size_t len) {
  stream_req_t *r = calloc(1, sizeof *r);
  if (!r || s->pending >= STREAM_MAX_PENDING) {
    free(r);
    stream_out_error(s, r ? "too many requests in flight on this stream"
                          : "out of memory");
    return;
  }
  r->s = s;
  if (gs__grpc_call(s->c->g->repo, GS__GRPC_MODEL_INFER, msg, len, &r->reply,
                    &r->job) != 1) {
    stream_out_error(s, r->reply.message);
    stream_req_free(r);
    return;
  }
  r->job.data = r;
  if (gs__infer_submit(s->c->g->loop, &r->job, after_stream_infer) != 0) {
    gs__infer_job_finish(&r->job);
    stream_req_free(r);
    stream_out_error(s, "cannot queue the inference");
    return;
  }
  s->pending++;
}

/* Ends the stream with status once every running infer is answered: what
 * follows cannot be read as messages. */
static void stream_fail(stream_t *s, int status, const char *msg) {
  if (s->end_status)
    return;
  s->end_status = status;
  snprintf(s->end_msg, sizeof s->end_msg, "%.250s", msg);
  stream_drop_request(s);
  stream_kick(s);
}

/* Takes each whole message the stream's bytes hold. */
static void stream_read_messages(stream_t *s) {
  while (!s->end_status && !s->closed) {
    const uint8_t *msg;
    size_t len, used;
    gs_error_t err = {0};
    int status =
        gs__grpc_stream_next((const uint8_t *)s->buf.data, s->buf.len,
                             GS__GRPC_MAX_MESSAGE, &msg, &len, &used, &err);
    if (status == GS__GRPC_STREAM_MORE)
      return;
    if (status != GS__GRPC_OK) {
      stream_fail(s, status, err.msg);
      return;
    }
    stream_request(s, msg, len);
    if (s->closed)
      return;
    s->c->buffered -= used;
    gs_buf_consume(&s->buf, used);
  }
}

/* The client half-closed: a partial message left is an error; the stream
 * ends once every answer is out. */
static void stream_half_close(stream_t *s) {
  s->half_closed = true;
  if (s->buf.len && !s->end_status)
    stream_fail(s, GS__GRPC_INVALID_ARGUMENT,
                "the stream ended inside a message");
  stream_kick(s);
}

/* Starts the job gs__grpc_call filled; false (with the reply set) when it
 * cannot be queued. */
static bool stream_submit(stream_t *s) {
  s->job.data = s;
  if (gs__infer_submit(s->c->g->loop, &s->job, after_infer) == 0)
    return true;
  gs__infer_job_finish(&s->job);
  gs__http_response_release(&s->job.resp);
  gs__grpc_infer_destroy(s->job.grpc);
  s->job.grpc = NULL;
  gs__grpc_reply_error(&s->reply, GS__GRPC_INTERNAL,
                       "cannot queue the inference");
  return false;
}

/* The request is complete: answer it, or start its infer. */
static void stream_dispatch(stream_t *s) {
  conn_t *c = s->c;
  const uint8_t *msg;
  size_t len;
  gs_error_t err = {0};
  gs_buf_t plain = {0}; /* the decompressed message */
  bool compressed = false;
  if (!s->grpc_content_type) {
    nghttp2_nv head[] = {GS_H2_NV(":status", "415")};
    nghttp2_submit_response(c->h2.session, s->id, head, 1, NULL);
    return;
  }
  int status =
      s->error ? s->error
               : gs__grpc_frame_decode((const uint8_t *)s->buf.data, s->buf.len,
                                       GS__GRPC_MAX_MESSAGE, s->encoding,
                                       &plain, &msg, &len, &compressed, &err);
  if (compressed &&
      gs__encoding_listed(s->accept, strlen(s->accept), s->encoding))
    s->reply_encoding = s->encoding;
  if (status != GS__GRPC_OK)
    gs__grpc_reply_error(&s->reply, status, s->error ? s->error_msg : err.msg);
  else if (gs__grpc_call(c->g->repo, s->method, msg, len, &s->reply, &s->job) ==
           1)
    s->in_flight = stream_submit(s);
  gs_buf_free(&plain);
  stream_drop_request(s); /* the job holds the message it needs */
  if (!s->in_flight)
    stream_respond(s);
}

static int on_begin_headers(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user) {
  conn_t *c = user;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  stream_t *s = calloc(1, sizeof *s);
  if (!s)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  s->c = c;
  s->id = frame->hd.stream_id;
  s->method = GS__GRPC_UNKNOWN_METHOD;
  gs_buf_init(&s->buf, GS_LIMIT_GRPC_MESSAGE);
  gs_buf_init(&s->out,
              GS_LIMIT_GRPC_CONN); /* answers a slow reader has not taken */
  s->next = c->streams;
  if (c->streams)
    c->streams->prev = s;
  c->streams = s;
  nghttp2_session_set_stream_user_data(session, s->id, s);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user) {
  stream_t *s =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  (void)flags;
  (void)user;
  if (!s || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)valuelen, (const char *)value);
    s->method = gs__grpc_method(path);
    s->streaming = s->method == GS__GRPC_MODEL_STREAM_INFER;
  } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
    s->grpc_content_type = gs__grpc_content_type(value, valuelen);
  } else if (namelen == 13 && memcmp(name, "grpc-encoding", 13) == 0) {
    s->encoding = gs__encoding_parse((const char *)value, valuelen);
  } else if (namelen == 20 && memcmp(name, "grpc-accept-encoding", 20) == 0) {
    snprintf(s->accept, sizeof s->accept, "%.*s", (int)valuelen,
             (const char *)value);
  }
  return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *user) {
  conn_t *c = user;
  stream_t *s = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  if (!s || s->error || s->end_status)
    return 0;
  size_t conn_max = gs_limit_bytes(GS_LIMIT_GRPC_CONN);
  bool conn_full = len > conn_max - c->buffered;
  size_t before = s->buf.len;
  if (conn_full || gs_buf_add(&s->buf, data, len) != GS_OK) {
    if (!conn_full && s->buf.failed == GS_ENOMEM)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->error = GS__GRPC_RESOURCE_EXHAUSTED;
    snprintf(s->error_msg, sizeof s->error_msg, "%s",
             conn_full ? "the connection holds too many large requests"
                       : "the request message is larger than 64 MiB");
    c->buffered -= before;
    gs_buf_free(&s->buf);
    if (s->streaming) { /* answered on the stream, which ends */
      s->error = 0;
      stream_fail(s, GS__GRPC_RESOURCE_EXHAUSTED, s->error_msg);
    }
    return 0;
  }
  c->buffered += len;
  if (s->streaming && s->grpc_content_type)
    stream_read_messages(s);
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user) {
  (void)user;
  stream_t *st =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (st && st->streaming && st->grpc_content_type) {
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->half_closed)
      stream_half_close(st);
    return 0;
  }
  if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  stream_t *s =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (s && !s->in_flight)
    stream_dispatch(s);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id,
                           uint32_t error_code, void *user) {
  stream_t *s = nghttp2_session_get_stream_user_data(session, id);
  (void)error_code;
  (void)user;
  if (!s)
    return 0;
  stream_unlink(s);
  s->c = NULL;
  s->closed = true;
  if (!s->in_flight && !s->pending)
    stream_free(s);
  return 0;
}

static int conn_start(conn_t *c) {
  static const gs_h2_config_t cfg = {.server = true,
                                     .max_streams = GS__GRPC_MAX_STREAMS,
                                     .window = WINDOW_BYTES,
                                     .conn_window = 16 * WINDOW_BYTES};
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
      gs_h2_init(&c->h2, (uv_stream_t *)&c->tcp, &cfg, cb, c, on_written, &err);
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
  gs__grpc_server_t *g = listener->data;
  if (status < 0)
    return;
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->g = g;
  uv_tcp_init(g->loop, &c->tcp);
  c->tcp.data = c;
  c->next = g->conns;
  if (g->conns)
    g->conns->prev = c;
  g->conns = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || conn_start(c) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, gs_h2_alloc, on_read);
  conn_flush(c);
}

int gs__grpc_listen(gs__grpc_server_t **out, uv_loop_t *loop, gs__repo_t *repo,
                    const char *host, unsigned port, gs_error_t *err) {
  *out = NULL;
  if (port > 65535)
    return gs_error_set(err, GS_EINVAL, "gRPC port %u is not in 0..65535",
                        port);
  gs__grpc_server_t *g = calloc(1, sizeof *g);
  if (!g)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  g->loop = loop;
  g->repo = repo;
  *out = g; /* closed by gs__grpc_close even when listening fails */
  int rc = gs__tcp_listen(loop, &g->listener, host, port, false, on_connection,
                          &g->port, err);
  g->listener.data = g;
  if (rc != GS_OK)
    return gs_error_prefix(err, "gRPC: ");
  return GS_OK;
}

unsigned gs__grpc_port(const gs__grpc_server_t *g) {
  return g ? g->port : 0;
}

void gs__grpc_close(gs__grpc_server_t *g) {
  if (!g)
    return;
  if (!uv_is_closing((uv_handle_t *)&g->listener))
    uv_close((uv_handle_t *)&g->listener, NULL);
  for (conn_t *c = g->conns; c; c = c->next)
    conn_close(c);
}

void gs__grpc_destroy(gs__grpc_server_t *g) {
  free(g);
}
