/* The router's requests to workers: which worker (the policy over the
 * peers routable on this loop: round robin or least request), and sending
 * to it: each peer (a worker process as one router loop sees it) keeps a
 * pool of keep-alive HTTP/1.1 connections (net/http.h), one request at a
 * time each. Whether any response byte came back decides whether a failed
 * request may be retried on another worker. */
#include <stdatomic.h>
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

/* ---- which worker: the policy over this loop's routable peers -----------
 */

bool gs__peer_routable(const gs__peer_t *p, uint64_t now_ns) {
  return !p->gone && p->routable && now_ns >= p->ejected_until_ns;
}

static uint64_t rng_next(uint64_t *rng) {
  *rng ^= *rng << 13; /* xorshift64 */
  *rng ^= *rng >> 7;
  *rng ^= *rng << 17;
  return *rng;
}

unsigned gs__choose(gs__serve_t *s, unsigned n, const unsigned *inflight,
                    uint64_t *rng) {
  if (n == 1)
    return 0;
  if (s->opt.policy == GS_SERVE_ROUND_ROBIN)
    return atomic_fetch_add_explicit(&s->rr_next, 1, memory_order_relaxed) % n;
  /* least request: the less busy of two distinct random candidates */
  unsigned a = (unsigned)(rng_next(rng) % n);
  unsigned b = (unsigned)(rng_next(rng) % (n - 1));
  b += b >= a;
  return inflight[b] < inflight[a] ? b : a;
}

bool gs__rloop_routable_other(const gs__rloop_t *rl, const gs__peer_t *avoid) {
  uint64_t now = gs__serve_now_ns();
  for (const gs__peer_t *p = rl->peers; p; p = p->next)
    if (p != avoid && gs__peer_routable(p, now))
      return true;
  return false;
}

gs__peer_t *gs__rloop_pick(gs__rloop_t *rl, const gs__peer_t *avoid) {
  gs__peer_t *cand[512];
  unsigned inflight[512];
  unsigned n = 0;
  uint64_t now = gs__serve_now_ns();
  for (gs__peer_t *p = rl->peers; p && n < 512; p = p->next)
    if (p != avoid && gs__peer_routable(p, now)) {
      inflight[n] = p->wk->inflight; /* every loop's and gRPC's */
      cand[n++] = p;
    }
  if (n == 0)
    return NULL;
  return cand[gs__choose(rl->s, n, inflight, &rl->rng)];
}

gs__wk_t *gs__pick(gs__serve_t *s, const gs__wk_t *avoid) {
  gs__rloop_t *rl0 = s->rloops[0];
  const gs__peer_t *skip = avoid ? gs__rloop_peer_of(rl0, avoid) : NULL;
  gs__peer_t *p = gs__rloop_pick(rl0, skip);
  return p ? p->wk : NULL;
}

bool gs__upreq_send_any(gs__upreq_t *r, gs__rloop_t *rl,
                        const gs__peer_t *avoid) {
  gs__peer_t *peer = gs__rloop_pick(rl, avoid);
  if (!peer)
    return false;
  peer->wk->inflight++;
  gs__upreq_send(r, peer);
  return true;
}

/* ---- sending: the peer's keep-alive pool ----------------------------------
 */

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
