/* The worker's gRPC server on net/grpc_server's layer: the layer routes
 * ModelInfer straight to grpc_infer.c (a job submitted as HTTP's are: the
 * pool, and the batchers), and every other unary call's message is answered
 * through grpc_call.c; the layer ends replies with grpc-status trailers.
 * ModelStreamInfer is a bidi stream: each message is an infer answered on
 * the stream as soon as it completes (an error as a message with
 * error_message), until the client half-closes and every answer is out
 * (grpc-status 0), or a message cannot be framed (its status in the
 * trailers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc_server.h"
#include "worker/grpc_int.h"

#define WINDOW_BYTES (1 << 20)
/* Infers one ModelStreamInfer stream may have running at once. */
#define STREAM_MAX_PENDING 1024u
#define STREAM_INFER_PATH "/inference.GRPCInferenceService/ModelStreamInfer"

typedef gs__grpc_wcall_t wcall_t;

/* One message of a ModelStreamInfer stream while its infer runs. */
typedef struct stream_req_s {
  gs_grpc_call_t *call;
  gs__infer_job_t job;
  gs__grpc_reply_t reply;
} stream_req_t;

static void wcall_free(gs_grpc_call_t *call) {
  wcall_t *w = gs_grpc_call_state(call);
  gs__grpc_reply_release(&w->reply);
  gs__grpc_infer_destroy(w->job.grpc);
}

/* A unary call's message, answered now (ModelInfer's path is routed to
 * grpc_infer.c; its method here too, should it come another way). */
static void on_unary(gs_grpc_call_t *call, const uint8_t *msg, size_t len) {
  gs__grpc_server_t *g = gs_grpc_call_owner(call);
  wcall_t *w = gs_grpc_call_state(call);
  if (gs__grpc_call(g->repo, gs__grpc_method(gs_grpc_call_path(call)), msg, len,
                    &w->reply, &w->job) == 1) {
    gs__grpc_infer_submit(call, w);
    return;
  }
  gs__grpc_respond(call, &w->reply);
}

/* ---- ModelStreamInfer ------------------------------------------------------
 */

/* Queues a response on the stream (an error message in its place when it
 * cannot be queued). */
static void stream_out(gs_grpc_call_t *call, uint8_t field, const void *data,
                       size_t len) {
  static const char too_large[] = "the response is too large for the stream";
  gs_buf_t *out = gs_grpc_call_out(call);
  size_t before = out->len;
  if (gs__grpc_stream_response(out, field, data, len) != GS_OK) {
    out->len = before; /* drops the partial message */
    out->failed = 0;
    if (gs__grpc_stream_response(out, 1, too_large, sizeof too_large - 1) !=
        GS_OK)
      out->len = before;
  }
  gs_grpc_call_kick(call);
}

static void stream_out_error(gs_grpc_call_t *call, const char *msg) {
  stream_out(call, 1, msg, strlen(msg));
}

static void stream_req_free(stream_req_t *r) {
  gs__http_response_release(&r->job.resp);
  gs__grpc_infer_destroy(r->job.grpc);
  gs__grpc_reply_release(&r->reply);
  free(r);
}

static void after_stream_infer(gs__infer_job_t *job) {
  stream_req_t *r = job->data;
  gs_grpc_call_t *call = r->call;
  wcall_t *w = gs_grpc_call_state(call);
  gs__infer_job_finish(job);
  w->pending--;
  if (!gs_grpc_call_release(call)) { /* reset: nobody to answer */
    stream_req_free(r);
    return;
  }
  gs__grpc_infer_reply(&job->resp, &r->reply);
  if (r->reply.status == GS__GRPC_OK && r->reply.body)
    stream_out(call, 2, r->reply.body + GS__GRPC_PREFIX,
               r->reply.body_len - GS__GRPC_PREFIX);
  else
    stream_out_error(call, r->reply.message);
  stream_req_free(r);
  gs_grpc_call_flush(call); /* the last answer: the trailers */
}

static bool stream_gone(const gs__infer_job_t *job) {
  return gs_grpc_call_closed(((const stream_req_t *)job->data)->call);
}

/* One message of the stream: its infer starts, or its error is queued. */
static void on_stream_message(gs_grpc_call_t *call, const uint8_t *msg,
                              size_t len) {
  gs__grpc_server_t *g = gs_grpc_call_owner(call);
  wcall_t *w = gs_grpc_call_state(call);
  stream_req_t *r = calloc(1, sizeof *r);
  if (!r || w->pending >= STREAM_MAX_PENDING) {
    free(r);
    stream_out_error(call, r ? "too many requests in flight on this stream"
                             : "out of memory");
    return;
  }
  r->call = call;
  if (gs__grpc_infer_job(g->repo, msg, len, &r->reply, &r->job) != 1) {
    stream_out_error(call, r->reply.message);
    stream_req_free(r);
    return;
  }
  r->job.data = r;
  r->job.gone = stream_gone;
  w->pending++;
  gs_grpc_call_hold(call);
  if (gs__infer_submit(g->loop, &r->job, after_stream_infer) != 0) {
    w->pending--;
    gs_grpc_call_release(call); /* still open: inside the layer's callback */
    gs__infer_job_finish(&r->job);
    stream_req_free(r);
    stream_out_error(call, "cannot queue the inference");
  }
}

/* ---- the server ------------------------------------------------------------
 */

static const gs_grpc_route_t routes[] = {
    {GS__GRPC_INFER_PATH, GS_GRPC_UNARY, gs__grpc_on_infer},
    {STREAM_INFER_PATH, GS_GRPC_BIDI_STREAM, on_stream_message},
    {NULL, GS_GRPC_UNARY, on_unary}, /* grpc_call.c knows the others */
};

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
  const gs_grpc_srv_config_t cfg = {
      .routes = routes,
      .n_routes = sizeof routes / sizeof routes[0],
      .owner = g,
      .max_message = GS__GRPC_MAX_MESSAGE,
      .too_large = "the request message is larger than 64 MiB",
      .conn_buffered = gs_limit_bytes(GS_LIMIT_GRPC_CONN),
      .conn_full = "the connection holds too many large requests",
      .out_limit = GS_LIMIT_GRPC_CONN, /* answers a slow reader has not taken */
      .window = WINDOW_BYTES,
      .conn_window = 16 * WINDOW_BYTES,
      .compression = true,
      .http_415 = true,
      .call_state = sizeof(wcall_t),
      .on_call_free = wcall_free};
  if (gs_grpc_srv_listen_tcp(&g->srv, loop, host, port, &cfg, err) != GS_OK)
    return gs_error_prefix(err, "gRPC: ");
  g->port = gs_grpc_srv_port(g->srv);
  return GS_OK;
}

unsigned gs__grpc_port(const gs__grpc_server_t *g) {
  return g ? g->port : 0;
}

void gs__grpc_close(gs__grpc_server_t *g) {
  if (!g)
    return;
  gs_grpc_srv_close(g->srv);
  g->srv = NULL; /* it frees itself once its handles are closed */
}

void gs__grpc_drain(gs__grpc_server_t *g) {
  if (g)
    gs_grpc_srv_drain(g->srv);
}

size_t gs__grpc_conns(const gs__grpc_server_t *g) {
  return g ? gs_grpc_srv_conns(g->srv) : 0;
}

void gs__grpc_destroy(gs__grpc_server_t *g) {
  free(g);
}
