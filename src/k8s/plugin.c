/* The device plugin's gRPC server on one resource's unix socket, on
 * net/grpc_server's layer: unary calls are answered by plugin_rpc.c; each
 * ListAndWatch stream stays open and gets the resource's device list again
 * whenever it changes (gs__dp_server_publish). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8s/plugin_int.h"
#include "net/grpc.h"
#include "net/grpc_server.h"

#define WINDOW_BYTES (1 << 20)
#define MAX_REQUEST ((size_t)1 << 20) /* kubelet's requests are small */
#define LIST_AND_WATCH "/v1beta1.DevicePlugin/ListAndWatch"

struct gs__dp_server_s {
  gs__dp_t *dp;
  gs__dp_resource_t *res;
  gs_grpc_srv_t *srv;
};

/* A call's state (the layer's call_state). */
typedef struct dp_call_s {
  bool watch; /* a ListAndWatch stream */
} dp_call_t;

static void on_list_and_watch(gs_grpc_call_t *call, const uint8_t *msg,
                              size_t len) {
  gs__dp_server_t *s = gs_grpc_call_owner(call);
  dp_call_t *st = gs_grpc_call_state(call);
  gs_buf_t list;
  (void)msg;
  (void)len;
  st->watch = true;
  gs_buf_init(&list, GS_LIMIT_GRPC_MESSAGE);
  int status = gs__dp_list(s->dp, s->res, &list);
  if (status != GS__GRPC_OK ||
      gs_grpc_call_send(call, list.data, list.len) != GS_OK)
    gs_grpc_call_fail(call, status, "");
  gs_buf_free(&list);
}

static void on_unary(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  gs__dp_server_t *s = gs_grpc_call_owner(call);
  const char *path = gs_grpc_call_path(call);
  char why[512] = "";
  gs_buf_t reply;
  gs_buf_init(&reply, GS_LIMIT_GRPC_MESSAGE);
  int status =
      gs__dp_call(s->dp, s->res, path, msg, len, &reply, why, sizeof why);
  if (status == GS__GRPC_OK) {
    gs_grpc_call_reply_msg(call, reply.data, reply.len);
  } else {
    gs__dp_log(s->dp, "%s %s: %s", s->res->name, path, why);
    gs_grpc_call_fail(call, status, why);
  }
  gs_buf_free(&reply);
}

static const gs_grpc_route_t routes[] = {
    {LIST_AND_WATCH, GS_GRPC_SERVER_STREAM, on_list_and_watch},
    {NULL, GS_GRPC_UNARY, on_unary}, /* plugin_rpc.c knows the others */
};

int gs__dp_server_start(gs__dp_t *dp, gs__dp_resource_t *res, gs_error_t *err) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dp->opt.plugin_dir, res->endpoint);
  gs__dp_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  s->dp = dp;
  s->res = res;
  res->server = s;
  const gs_grpc_srv_config_t cfg = {.routes = routes,
                                    .n_routes =
                                        sizeof routes / sizeof routes[0],
                                    .owner = s,
                                    .max_message = MAX_REQUEST,
                                    .too_large = "request too large",
                                    .out_limit = GS_LIMIT_GRPC_MESSAGE,
                                    .window = WINDOW_BYTES,
                                    .conn_window = 4 * WINDOW_BYTES,
                                    .call_state = sizeof(dp_call_t)};
  int rc = gs_grpc_srv_listen_unix(&s->srv, dp->loop, path, &cfg, err);
  if (rc != GS_OK)
    gs__dp_server_stop(res);
  return rc;
}

void gs__dp_server_stop(gs__dp_resource_t *res) {
  gs__dp_server_t *s = res->server;
  if (!s)
    return;
  res->server = NULL;
  gs_grpc_srv_close(s->srv); /* frees itself once its handles are closed */
  free(s); /* no handler runs after the close: its connections read no more */
}

static void publish_to(gs_grpc_call_t *call, void *list) {
  const dp_call_t *st = gs_grpc_call_state(call);
  const gs_buf_t *l = list;
  if (st->watch)
    gs_grpc_call_send(call, l->data, l->len);
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
  if (res->server)
    gs_grpc_srv_each(res->server->srv, publish_to, &res->last_list);
}
