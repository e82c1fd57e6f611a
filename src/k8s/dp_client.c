/* A client of a device plugin's socket, as the kubelet sees it: one
 * ListAndWatch call whose lists are handed to a callback, for
 * `gpuslice k8s devices` (checking a node, and the GPU machine's check
 * without a kubelet). Blocking: it runs its own libuv loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deviceplugin_v1beta1.pb-c.h"
#include "gpuslice/k8s.h"
#include "net/grpc.h"
#include "net/h2.h"

typedef struct client_s {
  uv_loop_t loop;
  uv_pipe_t pipe;
  uv_connect_t connect;
  uv_timer_t timer;
  gs_h2_t h2;
  gs_buf_t in; /* DATA bytes not yet read as messages */
  gs__grpc_answer_t answer;
  gs_k8s_list_fn on_list;
  void *data;
  unsigned lists, max_lists;
  int rc;
  char why[512];
  bool closing;
} client_t;

static void on_closed(uv_handle_t *h) {
  (void)h;
}

static void stop(client_t *k) {
  if (k->closing)
    return;
  k->closing = true;
  uv_close((uv_handle_t *)&k->pipe, on_closed);
  uv_close((uv_handle_t *)&k->timer, on_closed);
}

static void fail(client_t *k, const char *why) {
  if (k->rc == GS_OK) {
    k->rc = GS_ESYSTEM;
    snprintf(k->why, sizeof k->why, "%.500s", why);
  }
  stop(k);
}

static void flush(client_t *k) {
  gs_error_t err;
  if (!k->closing && gs_h2_flush(&k->h2, &err) != GS_OK)
    fail(k, err.msg);
}

static void on_written(gs_h2_t *h, int status) {
  client_t *k = h->data;
  if (status < 0)
    fail(k, "write to the plugin failed");
  else
    flush(k);
}

/* Hands each whole message in k->in to the callback. */
static void read_messages(client_t *k) {
  while (k->in.len >= GS__GRPC_PREFIX && !k->closing) {
    const uint8_t *p = (const uint8_t *)k->in.data;
    size_t len = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 |
                 (size_t)p[4];
    if (k->in.len < GS__GRPC_PREFIX + len)
      return;
    V1beta1__ListAndWatchResponse *r = v1beta1__list_and_watch_response__unpack(
        NULL, len, p + GS__GRPC_PREFIX);
    if (!r) {
      fail(k, "the plugin sent a malformed ListAndWatchResponse");
      return;
    }
    const char **ids = calloc(r->n_devices + 1, sizeof *ids);
    const char **health = calloc(r->n_devices + 1, sizeof *health);
    for (size_t i = 0; ids && health && i < r->n_devices; i++) {
      ids[i] = r->devices[i]->id;
      health[i] = r->devices[i]->health;
    }
    if (ids && health)
      k->on_list(k->data, r->n_devices, ids, health);
    free(ids);
    free(health);
    v1beta1__list_and_watch_response__free_unpacked(r, NULL);
    gs_buf_consume(&k->in, GS__GRPC_PREFIX + len);
    if (++k->lists == k->max_lists)
      stop(k);
  }
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                   const uint8_t *data, size_t len, void *user) {
  client_t *k = user;
  (void)session, (void)flags, (void)id;
  if (gs_buf_add(&k->in, data, len) != GS_OK)
    fail(k, "a ListAndWatchResponse over the limit");
  else
    read_messages(k);
  return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user) {
  client_t *k = user;
  (void)session, (void)frame, (void)flags;
  gs__grpc_answer_header(&k->answer, name, namelen, value, valuelen);
  return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id,
                           uint32_t error_code, void *user) {
  client_t *k = user;
  char why[600];
  (void)session, (void)id;
  gs__grpc_answer_end(&k->answer, error_code);
  snprintf(why, sizeof why, "ListAndWatch ended: grpc-status %d %s",
           k->answer.status, k->answer.message);
  fail(k, why);
  return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client_t *k = s->data;
  gs_error_t err;
  if (nread < 0)
    fail(k, "the plugin closed the connection");
  else if (nread > 0 && !k->closing &&
           gs_h2_feed(&k->h2, buf->base, (size_t)nread, &err) != GS_OK)
    fail(k, err.msg);
  else
    flush(k);
}

/* Empty has no fields: its message is the 5-byte prefix of length 0. */
static ssize_t read_empty(nghttp2_session *session, int32_t id, uint8_t *buf,
                          size_t length, uint32_t *flags,
                          nghttp2_data_source *source, void *user) {
  (void)session, (void)id, (void)source, (void)user;
  if (length < GS__GRPC_PREFIX)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  memset(buf, 0, GS__GRPC_PREFIX);
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  return GS__GRPC_PREFIX;
}

static int start_call(client_t *k) {
  static const gs_h2_config_t cfg = {.window = 1 << 20, .conn_window = 1 << 20};
  nghttp2_session_callbacks *cb;
  gs_error_t err;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  int rc = gs_h2_init(&k->h2, (uv_stream_t *)&k->pipe, &cfg, cb, k, on_written,
                      &err);
  nghttp2_session_callbacks_del(cb);
  k->h2.data = k;
  if (rc != GS_OK)
    return -1;
  nghttp2_data_provider body = {.read_callback = read_empty};
  return gs__grpc_submit_call(k->h2.session, "localhost",
                              "/v1beta1.DevicePlugin/ListAndWatch", &body,
                              k) < 0
             ? -1
             : 0;
}

static void on_connect(uv_connect_t *req, int status) {
  client_t *k = req->data;
  if (status < 0) {
    char why[256];
    snprintf(why, sizeof why, "connecting: %s", uv_strerror(status));
    fail(k, why);
    return;
  }
  if (start_call(k) != 0) {
    fail(k, "cannot start the ListAndWatch call");
    return;
  }
  uv_read_start((uv_stream_t *)&k->pipe, gs_h2_alloc, on_read);
  flush(k);
}

static void on_timeout(uv_timer_t *t) {
  client_t *k = t->data;
  if (k->lists == 0)
    fail(k, "no device list within the time given");
  else
    stop(k);
}

int gs_k8s_list_devices(const char *socket, unsigned max_lists,
                        unsigned wait_ms, gs_k8s_list_fn on_list, void *data,
                        gs_error_t *err) {
  client_t *k = calloc(1, sizeof *k);
  if (!k)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  k->on_list = on_list;
  k->data = data;
  k->max_lists = max_lists;
  gs_buf_init(&k->in, GS_LIMIT_GRPC_MESSAGE);
  uv_loop_init(&k->loop);
  uv_pipe_init(&k->loop, &k->pipe, 0);
  uv_timer_init(&k->loop, &k->timer);
  k->pipe.data = k->connect.data = k->timer.data = k;
  uv_timer_start(&k->timer, on_timeout, wait_ms, 0);
  uv_pipe_connect(&k->connect, &k->pipe, socket, on_connect);
  uv_run(&k->loop, UV_RUN_DEFAULT);
  uv_loop_close(&k->loop);
  int rc = k->lists > 0 ? GS_OK
                        : gs_error_set(err, k->rc ? k->rc : GS_ESYSTEM,
                                       "%s: %s", socket, k->why);
  gs_h2_release(&k->h2);
  gs_buf_free(&k->in);
  free(k);
  return rc;
}
