/* The worker's gRPC transport: HTTP/2 with nghttp2 on the worker's libuv
 * loop. Each stream carries one unary call: its message is gathered (64 MiB
 * at most), answered through grpc_call.c, and infers are submitted as
 * HTTP's are (gs__infer_submit: the pool, and the dynamic batcher). Responses
 * end with grpc-status trailers, errors with a trailers-only response. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/grpc_int.h"

#define MAX_STREAM_BYTES ((size_t)GS__GRPC_MAX_MESSAGE + 5)
#define MAX_CONN_BYTES ((size_t)256 << 20) /* buffered requests, all streams   \
                                            */
#define WINDOW_BYTES (1 << 20)

typedef struct conn_s conn_t;

typedef struct stream_s {
  struct stream_s *next, *prev; /* in the connection's list */
  conn_t *c;                    /* NULL once the connection is gone */
  int32_t id;
  gs__grpc_method_t method;
  bool grpc_content_type;
  bool in_flight; /* an infer runs on the pool */
  bool closed;    /* nghttp2 is done with the stream */
  uint8_t *buf;   /* the request's bytes */
  size_t len, cap;
  int error; /* a gRPC status found while reading, 0 if none */
  char error_msg[128];
  gs__grpc_reply_t reply;
  size_t sent; /* bytes of reply.body sent */
  gs__infer_job_t job;
} stream_t;

struct conn_s {
  uv_tcp_t tcp;
  gs__grpc_server_t *g;
  nghttp2_session *session;
  conn_t *next, *prev;
  stream_t *streams;
  size_t buffered; /* request bytes held by this connection's streams */
  unsigned writes;
  bool closing;
};

struct gs__grpc_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  gs__repo_t *repo;
  unsigned port;
  conn_t *conns;
};

typedef struct write_s {
  uv_write_t req;
  conn_t *c;
  char *data;
} write_t;

#define NV(name, value)                                                        \
  {                                                                            \
    (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),    \
        NGHTTP2_NV_FLAG_NONE                                                   \
  }

static void conn_flush(conn_t *c);

static void stream_free(stream_t *s) {
  free(s->buf);
  gs__grpc_reply_release(&s->reply);
  free(s);
}

static void stream_unlink(stream_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else if (s->c)
    s->c->streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
  if (s->c)
    s->c->buffered -= s->len;
}

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  nghttp2_session_del(c->session); /* calls no callback */
  while (c->streams) {
    stream_t *s = c->streams;
    stream_unlink(s);
    s->c = NULL;
    s->closed = true;
    if (!s->in_flight)
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

static void on_written(uv_write_t *req, int status) {
  write_t *wr = (write_t *)req;
  conn_t *c = wr->c;
  free(wr->data);
  free(wr);
  c->writes--;
  if (status < 0)
    conn_close(c);
  else if (!c->closing)
    conn_flush(c);
}

/* Sends what nghttp2 has queued; closes once neither side wants more. */
static void conn_flush(conn_t *c) {
  char *data = NULL;
  size_t len = 0;
  while (!c->closing && len < (4u << 20)) {
    const uint8_t *chunk;
    ssize_t n = nghttp2_session_mem_send(c->session, &chunk);
    if (n < 0) {
      free(data);
      conn_close(c);
      return;
    }
    if (n == 0)
      break;
    char *grown = realloc(data, len + (size_t)n);
    if (!grown) {
      free(data);
      conn_close(c);
      return;
    }
    data = grown;
    memcpy(data + len, chunk, (size_t)n);
    len += (size_t)n;
  }
  if (len) {
    write_t *wr = calloc(1, sizeof *wr);
    uv_buf_t buf = uv_buf_init(data, (unsigned)len);
    if (!wr || (wr->c = c, wr->data = data,
                uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1,
                         on_written)) != 0) {
      free(wr);
      free(data);
      conn_close(c);
      return;
    }
    c->writes++; /* on_written flushes again: more may be queued */
  }
  if (!c->closing && c->writes == 0 && !nghttp2_session_want_read(c->session) &&
      !nghttp2_session_want_write(c->session))
    conn_close(c);
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
    nghttp2_nv trailers[] = {NV("grpc-status", "0")};
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (nghttp2_submit_trailer(session, id, trailers, 1) != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

/* Queues the reply: the message then trailers, or trailers only. */
static void stream_respond(stream_t *s) {
  conn_t *c = s->c;
  if (s->reply.status == GS__GRPC_OK && s->reply.body) {
    nghttp2_nv head[] = {NV(":status", "200"),
                         NV("content-type", "application/grpc")};
    nghttp2_data_provider data = {.source.ptr = s, .read_callback = read_reply};
    nghttp2_submit_response(c->session, s->id, head, 2, &data);
    return;
  }
  char code[16], msg[1024];
  snprintf(code, sizeof code, "%d",
           s->reply.status ? s->reply.status : GS__GRPC_INTERNAL);
  gs__grpc_percent_encode(s->reply.message, msg, sizeof msg);
  nghttp2_nv head[] = {NV(":status", "200"),
                       NV("content-type", "application/grpc"),
                       NV("grpc-status", code), NV("grpc-message", msg)};
  nghttp2_submit_response(c->session, s->id, head, 4, NULL);
}

static void after_infer(gs__infer_job_t *job) {
  stream_t *s = job->data;
  gs__infer_job_finish(&s->job);
  s->in_flight = false;
  if (s->closed) {
    gs__http_response_release(&s->job.resp);
    stream_free(s);
    return;
  }
  gs__grpc_infer_reply(&s->job.resp, &s->reply);
  gs__http_response_release(&s->job.resp);
  stream_respond(s);
  conn_flush(s->c);
}

/* The request is complete: answer it, or start its infer. */
static void stream_dispatch(stream_t *s) {
  conn_t *c = s->c;
  const uint8_t *msg;
  size_t len;
  gs_error_t err = {0};
  if (!s->grpc_content_type) {
    nghttp2_nv head[] = {NV(":status", "415")};
    nghttp2_submit_response(c->session, s->id, head, 1, NULL);
    return;
  }
  int status = s->error
                   ? s->error
                   : gs__grpc_frame_read(s->buf, s->len, GS__GRPC_MAX_MESSAGE,
                                         &msg, &len, &err);
  if (status != GS__GRPC_OK) {
    s->reply.status = status;
    snprintf(s->reply.message, sizeof s->reply.message, "%s",
             s->error ? s->error_msg : err.msg);
  } else if (gs__grpc_call(c->g->repo, s->method, msg, len, &s->reply,
                           &s->job) == 1) {
    s->job.data = s;
    if (gs__infer_submit(c->g->loop, &s->job, after_infer) == 0) {
      s->in_flight = true;
    } else {
      gs__infer_job_finish(&s->job);
      gs__http_response_release(&s->job.resp);
      s->reply.status = GS__GRPC_INTERNAL;
      snprintf(s->reply.message, sizeof s->reply.message,
               "cannot queue the inference");
    }
  }
  c->buffered -= s->len; /* the job holds its own copy */
  free(s->buf);
  s->buf = NULL;
  s->len = s->cap = 0;
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
  char v[256];
  if (valuelen >= sizeof v)
    valuelen = sizeof v - 1;
  memcpy(v, value, valuelen);
  v[valuelen] = '\0';
  if (namelen == 5 && memcmp(name, ":path", 5) == 0)
    s->method = gs__grpc_method(v);
  else if (namelen == 12 && memcmp(name, "content-type", 12) == 0)
    s->grpc_content_type = strncmp(v, "application/grpc", 16) == 0 &&
                           (v[16] == '\0' || v[16] == '+' || v[16] == ';');
  return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *user) {
  conn_t *c = user;
  stream_t *s = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  if (!s || s->error)
    return 0;
  if (len > MAX_STREAM_BYTES - s->len || len > MAX_CONN_BYTES - c->buffered) {
    s->error = GS__GRPC_RESOURCE_EXHAUSTED;
    snprintf(s->error_msg, sizeof s->error_msg, "%s",
             len > MAX_STREAM_BYTES - s->len
                 ? "the request message is larger than 64 MiB"
                 : "the connection holds too many large requests");
    c->buffered -= s->len;
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
    return 0;
  }
  if (s->len + len > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + len)
      cap *= 2;
    if (cap > MAX_STREAM_BYTES)
      cap = MAX_STREAM_BYTES;
    uint8_t *grown = realloc(s->buf, cap);
    if (!grown)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    s->buf = grown;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, data, len);
  s->len += len;
  c->buffered += len;
  return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                         void *user) {
  (void)user;
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
  s->closed = true;
  if (!s->in_flight)
    stream_free(s);
  return 0;
}

static int session_create(conn_t *c) {
  nghttp2_session_callbacks *cb;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  int rc = nghttp2_session_server_new(&c->session, cb, c);
  nghttp2_session_callbacks_del(cb);
  if (rc != 0)
    return -1;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, GS__GRPC_MAX_STREAMS},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_BYTES}};
  if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2) !=
          0 ||
      nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                            16 * WINDOW_BYTES) != 0)
    return -1;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread < 0) {
    free(buf->base);
    conn_close(c);
    return;
  }
  ssize_t used =
      c->closing ? 0
                 : nghttp2_session_mem_recv(
                       c->session, (const uint8_t *)buf->base, (size_t)nread);
  free(buf->base);
  if (used < 0) {
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
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
      session_create(c) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
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
