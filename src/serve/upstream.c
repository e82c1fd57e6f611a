/* The router's requests to workers: each peer (a worker process as one
 * router loop sees it) keeps a pool of keep-alive HTTP/1.1 connections
 * (net/http.h), one request at a time each. Whether any response byte came
 * back decides whether a failed request may be retried on another
 * worker. */
#include <stdio.h>
#include <string.h>

#include "serve/serve_int.h"

#define MAX_IDLE_PER_PEER 256

_Static_assert((int)GS__UP_OK == (int)GS__HTTP_OK &&
                   (int)GS__UP_CONNECT == (int)GS__HTTP_CONNECT &&
                   (int)GS__UP_BROKEN == (int)GS__HTTP_BROKEN &&
                   (int)GS__UP_TIMEOUT == (int)GS__HTTP_TIMEOUT &&
                   (int)GS__UP_TOOBIG == (int)GS__HTTP_TOOBIG &&
                   (int)GS__UP_LOCAL == (int)GS__HTTP_LOCAL,
               "the router's results are the client's");

static void peer_hold(void *owner) {
  ((gs__peer_t *)owner)->refs++;
}

static void peer_drop(void *owner) {
  gs__peer_unref(owner);
}

/* The peer's pool, set up at its first request. */
static gs__http_pool_t *peer_pool(gs__peer_t *peer) {
  if (!peer->pool.loop) {
    bool closed = peer->pool.closed;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", (int)peer->http_port, &addr);
    gs__http_pool_init(&peer->pool, peer->rl->loop, (struct sockaddr *)&addr,
                       MAX_IDLE_PER_PEER, GS_LIMIT_UPSTREAM_RESPONSE);
    peer->pool.owner = peer;
    peer->pool.hold = peer_hold;
    peer->pool.drop = peer_drop;
    peer->pool.closed = closed;
  }
  return &peer->pool;
}

static void call_done(gs__http_call_t *call, gs__http_result_t result) {
  gs__upreq_t *r = call->data;
  r->got_bytes = call->got_bytes;
  r->resp = call->resp; /* the body moves to the caller */
  memset(&call->resp, 0, sizeof call->resp);
  if (result == GS__HTTP_OK && r->resp.content_type) {
    snprintf(r->content_type, sizeof r->content_type, "%s", call->content_type);
    r->resp.content_type = r->content_type;
  }
  r->done(r, (gs__up_result_t)result);
}

void gs__upreq_send(gs__upreq_t *r, gs__peer_t *peer) {
  r->peer = peer;
  peer->refs++;
  r->got_bytes = false;
  memset(&r->resp, 0, sizeof r->resp);
  r->resp.infer_header_len = -1;
  r->content_type[0] = '\0';
  r->t_start = gs__serve_now_ns();
  r->call = (gs__http_call_t){.method = r->method,
                              .url = r->url,
                              .body = r->body,
                              .body_len = r->body_len,
                              .infer_header_len = r->infer_header_len,
                              .timeout_ms = r->timeout_ms,
                              .done = call_done,
                              .data = r};
  gs__http_pool_send(peer_pool(peer), &r->call);
}

void gs__upreq_release(gs__upreq_t *r) {
  gs__http_response_release(&r->resp);
  if (r->peer)
    gs__peer_unref(r->peer);
  r->peer = NULL;
}

void gs__upconn_close_idle(gs__peer_t *peer) {
  peer->pool.closed = true; /* also before its first request */
  if (peer->pool.loop)
    gs__http_pool_close(&peer->pool);
}
