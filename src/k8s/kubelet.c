/* Registration with the kubelet: one unary gRPC call,
 * /v1beta1.Registration/Register, on kubelet.sock, per resource; the
 * connection closes once the answer is in. A failure is logged and tried
 * again by the watch (plugin_watch.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deviceplugin_v1beta1.pb-c.h"
#include "k8s/plugin_int.h"
#include "net/grpc.h"
#include "net/h2.h"

#define REGISTER_TIMEOUT_MS 10000

typedef struct call_s {
  uv_pipe_t pipe;
  uv_timer_t timer; /* a kubelet that never answers */
  uv_connect_t connect;
  gs_h2_t h2;
  gs__dp_t *dp;
  char resource[160];
  uint8_t *body;
  size_t body_len, sent;
  gs__grpc_answer_t answer;
  bool done, closing;
} call_t;

static gs__dp_resource_t *resource_of(call_t *k) {
  for (unsigned i = 0; i < k->dp->n_res; i++)
    if (strcmp(k->dp->res[i].name, k->resource) == 0)
      return &k->dp->res[i];
  return NULL;
}

static void on_timer_closed(uv_handle_t *h) {
  call_t *k = h->data;
  gs_h2_release(&k->h2);
  free(k->body);
  free(k);
}

static void on_closed(uv_handle_t *h) {
  call_t *k = h->data;
  gs__dp_resource_t *res = resource_of(k);
  bool ok = k->done && k->answer.have_status && k->answer.status == 0;
  if (res) {
    res->registered = ok;
    res->registering = false;
  }
  if (ok)
    gs__dp_log(k->dp, "registered %s with the kubelet", k->resource);
  else
    gs__dp_log(k->dp, "registering %s with the kubelet failed: %s", k->resource,
               k->answer.have_status ? k->answer.message
                                     : "no answer (kubelet gone?)");
  uv_close((uv_handle_t *)&k->timer, on_timer_closed);
}

static void call_close(call_t *k) {
  if (!k->closing) {
    k->closing = true;
    uv_close((uv_handle_t *)&k->pipe, on_closed);
  }
}

static void on_timeout(uv_timer_t *t) {
  call_close(t->data);
}

static void flush(call_t *k) {
  gs_error_t err;
  if (!k->closing && (gs_h2_flush(&k->h2, &err) != GS_OK || k->done))
    call_close(k);
}

static void on_written(gs_h2_t *h, int status) {
  call_t *k = h->data;
  if (status < 0)
    call_close(k);
  else
    flush(k);
}

static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  call_t *k = source->ptr;
  (void)session, (void)id, (void)user;
  size_t n = k->body_len - k->sent;
  if (n > length)
    n = length;
  memcpy(buf, k->body + k->sent, n);
  k->sent += n;
  if (k->sent == k->body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user) {
  call_t *k = user;
  (void)session, (void)frame, (void)flags;
  gs__grpc_answer_header(&k->answer, name, namelen, value, valuelen);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id,
                           uint32_t error_code, void *user) {
  call_t *k = user;
  (void)session, (void)id;
  gs__grpc_answer_end(&k->answer, error_code);
  k->done = true;
  return 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  call_t *k = stream->data;
  gs_error_t err;
  if (nread < 0 || (nread > 0 && gs_h2_feed(&k->h2, buf->base, (size_t)nread,
                                            &err) != GS_OK)) {
    call_close(k);
    return;
  }
  flush(k);
}

static int start(call_t *k) {
  static const gs_h2_config_t cfg = {.window = 1 << 20, .conn_window = 1 << 20};
  nghttp2_session_callbacks *cb;
  gs_error_t err;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  int rc = gs_h2_init(&k->h2, (uv_stream_t *)&k->pipe, &cfg, cb, k, on_written,
                      &err);
  nghttp2_session_callbacks_del(cb);
  k->h2.data = k;
  if (rc != GS_OK)
    return -1;
  nghttp2_data_provider data = {.source.ptr = k, .read_callback = read_body};
  return gs__grpc_submit_call(k->h2.session, "localhost",
                              "/v1beta1.Registration/Register", &data, NULL) < 0
             ? -1
             : 0;
}

static void on_connect(uv_connect_t *req, int status) {
  call_t *k = req->data;
  if (status < 0 || start(k) != 0) {
    call_close(k);
    return;
  }
  uv_read_start((uv_stream_t *)&k->pipe, gs_h2_alloc, on_read);
  flush(k);
}

/* The RegisterRequest, framed. */
static int request_body(gs__dp_t *dp, const gs__dp_resource_t *res, call_t *k) {
  V1beta1__RegisterRequest rq = V1BETA1__REGISTER_REQUEST__INIT;
  V1beta1__DevicePluginOptions o = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
  (void)dp;
  o.get_preferred_allocation_available = true;
  rq.version = GS__DP_API_VERSION;
  rq.endpoint = (char *)res->endpoint;
  rq.resource_name = (char *)res->name;
  rq.options = &o;
  size_t len = v1beta1__register_request__get_packed_size(&rq);
  k->body = malloc(len + GS__GRPC_PREFIX);
  if (!k->body)
    return -1;
  gs__grpc_frame_prefix(k->body, len);
  v1beta1__register_request__pack(&rq, k->body + GS__GRPC_PREFIX);
  k->body_len = len + GS__GRPC_PREFIX;
  return 0;
}

void gs__dp_register(gs__dp_t *dp, gs__dp_resource_t *res) {
  call_t *k = calloc(1, sizeof *k);
  if (!k)
    return;
  k->dp = dp;
  snprintf(k->resource, sizeof k->resource, "%s", res->name);
  if (request_body(dp, res, k) != 0) {
    free(k);
    return;
  }
  uv_pipe_init(dp->loop, &k->pipe, 0);
  k->pipe.data = k;
  uv_timer_init(dp->loop, &k->timer);
  k->timer.data = k;
  uv_timer_start(&k->timer, on_timeout, REGISTER_TIMEOUT_MS, 0);
  res->registering = true;
  k->connect.data = k;
  uv_pipe_connect(&k->connect, &k->pipe, dp->opt.kubelet_socket, on_connect);
}
