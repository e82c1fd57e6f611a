/* Router loops. The main loop is router loop 0; loops 1.. run on threads of
 * their own, each with an HTTP listener on the router's port (SO_REUSEPORT:
 * the kernel spreads new connections over them), its own view of the
 * worker table and its own keep-alive connections to the workers, so that
 * proxying takes as many cores as there are loops, as nginx does with a
 * process per core.
 *
 * What crosses threads, and how:
 *  - views (main -> loop): the routing facts of every running worker
 *    (which process, routable, ejected until), published when they change;
 *    a loop turns them into peers. A newer view replaces one not yet read.
 *  - outcomes (loop -> main): each proxied request's result and latency,
 *    for status, p99 and passive ejection, which the main loop decides (and
 *    publishes); batched, sent at most FLUSH_MS after the first one or
 *    at FLUSH_COUNT, so that the main loop is not woken once per request.
 *  - forwarded requests (loop -> main) and their answers (main -> loop):
 *    fan-outs and admin calls, which need the table.
 *  - commands (main -> loop): drain, close idle connections, stop.
 * Each mailbox is a mutex-guarded list and a uv_async_t. Counters the main
 * loop reads (in-flight, connections, requests) are atomics. */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/serve_int.h"

#define FLUSH_MS 5
#define FLUSH_COUNT 256

typedef struct view_entry_s {
  gs__wk_t *wk; /* a reference in views sent to loops; none in last_view */
  unsigned http_port;
  bool routable;
  uint64_t ejected_until_ns;
} view_entry_t;

typedef struct gs__view_s {
  size_t n;
  view_entry_t e[];
} gs__view_t;

/* ---- peers (on their loop) ------------------------------------------------
 */

void gs__peer_unref(gs__peer_t *p) {
  if (--p->refs > 0)
    return;
  gs__wk_unref(p->wk);
  free(p);
}

/* Out of the loop's list: no new requests; idle connections close, those
 * busy close when their request ends. */
static void peer_drop(gs__peer_t *p) {
  p->gone = true;
  gs__upconn_close_idle(p);
  gs__peer_unref(p);
}

gs__peer_t *gs__rloop_peer_of(gs__rloop_t *rl, const gs__wk_t *wk) {
  for (gs__peer_t *p = rl->peers; p; p = p->next)
    if (p->wk == wk && p->http_port == wk->http_port)
      return p;
  return NULL;
}

/* ---- views ----------------------------------------------------------------
 */

static void view_free(gs__view_t *v) {
  if (!v)
    return;
  for (size_t i = 0; i < v->n; i++)
    if (v->e[i].wk)
      gs__wk_unref(v->e[i].wk);
  free(v);
}

/* Peers for v's entries, on rl's thread: kept and updated, or new, in the
 * view's order (every loop then has the same order, which round robin's
 * shared turn needs); peers not in v are dropped. Takes v and its
 * references. */
static void view_apply(gs__rloop_t *rl, gs__view_t *v) {
  gs__peer_t *old = rl->peers, **tail = &rl->peers;
  rl->peers = NULL;
  for (size_t i = 0; i < v->n; i++) {
    view_entry_t *e = &v->e[i];
    gs__peer_t *p = NULL;
    for (gs__peer_t **pp = &old; *pp; pp = &(*pp)->next)
      if ((*pp)->wk == e->wk && (*pp)->http_port == e->http_port) {
        p = *pp;
        *pp = p->next;
        break;
      }
    if (!p) {
      p = calloc(1, sizeof *p);
      if (!p)
        continue; /* out of memory: not routed to by this loop */
      *p = (gs__peer_t){.rl = rl,
                        .wk = e->wk, /* the entry's reference */
                        .http_port = e->http_port,
                        .refs = 1};
      e->wk = NULL;
    }
    p->routable = e->routable;
    if (e->ejected_until_ns > p->ejected_until_ns) /* or its own, later */
      p->ejected_until_ns = e->ejected_until_ns;
    p->next = NULL;
    *tail = p;
    tail = &p->next;
  }
  while (old) {
    gs__peer_t *p = old;
    old = p->next;
    peer_drop(p);
  }
  view_free(v);
}

/* The routing facts of the table now; entries without references. */
static gs__view_t *view_build(const gs__serve_t *s) {
  size_t n = 0;
  for (const gs__wk_t *wk = s->workers; wk; wk = wk->next)
    n += wk->state == GS__PROC_RUNNING && wk->http_port;
  gs__view_t *v = calloc(1, sizeof *v + n * sizeof v->e[0]);
  if (!v)
    return NULL;
  for (gs__wk_t *wk = s->workers; wk && v->n < n; wk = wk->next)
    if (wk->state == GS__PROC_RUNNING && wk->http_port)
      v->e[v->n++] = (view_entry_t){.wk = wk,
                                    .http_port = wk->http_port,
                                    .routable = wk->healthy && !wk->removing,
                                    .ejected_until_ns = wk->ejected_until_ns};
  return v;
}

static bool view_same(const gs__view_t *a, const gs__view_t *b) {
  if (!a || !b || a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (a->e[i].wk != b->e[i].wk || a->e[i].http_port != b->e[i].http_port ||
        a->e[i].routable != b->e[i].routable ||
        a->e[i].ejected_until_ns != b->e[i].ejected_until_ns)
      return false;
  return true;
}

static gs__view_t *view_copy(const gs__view_t *v) {
  size_t size = sizeof *v + v->n * sizeof v->e[0];
  gs__view_t *copy = malloc(size);
  if (!copy)
    return NULL;
  memcpy(copy, v, size);
  for (size_t i = 0; i < copy->n; i++)
    copy->e[i].wk->refs++;
  return copy;
}

void gs__serve_publish(gs__serve_t *s) {
  gs__view_t *v = view_build(s);
  if (!v || view_same(v, s->last_view)) {
    free(v); /* (!v: out of memory; the next health tick tries again) */
    return;
  }
  bool all_sent = true;
  for (unsigned k = 0; k < s->n_rloops; k++) {
    gs__rloop_t *rl = s->rloops[k];
    gs__view_t *copy = view_copy(v);
    if (!copy) {
      all_sent = false;
      continue;
    }
    if (k == 0) {
      view_apply(rl, copy);
      continue;
    }
    uv_mutex_lock(&rl->mu);
    gs__view_t *unread = rl->view;
    rl->view = copy;
    uv_mutex_unlock(&rl->mu);
    view_free(unread);
    uv_async_send(&rl->wake);
  }
  free(s->last_view);
  s->last_view = all_sent ? v : NULL; /* NULL: sent again next time */
  if (!all_sent)
    free(v);
}

/* ---- outcomes and forwarded requests (to the main loop) -------------------
 */

static void apply_outcome(gs__wk_t *wk, bool ok, bool passive_failure,
                          uint64_t latency_ns) {
  if (wk->state == GS__PROC_GONE)
    return;
  gs__wk_observe(wk, ok, latency_ns);
  if (passive_failure)
    gs__wk_passive_failure(wk);
}

static void flush_outcomes(gs__rloop_t *rl);

static void on_flush_timer(uv_timer_t *t) {
  flush_outcomes(t->data);
}

/* The loop stops sending to a peer at once after its consecutive failures,
 * as the main loop will for every loop when the outcomes reach it. */
static void eject_locally(gs__peer_t *p, bool ok, bool passive_failure) {
  const gs_serve_options_t *o = &p->rl->s->opt;
  if (ok || !passive_failure) {
    p->consecutive_failures = ok ? 0 : p->consecutive_failures;
    return;
  }
  if (++p->consecutive_failures < o->eject_failures)
    return;
  p->consecutive_failures = 0;
  p->ejected_until_ns = gs__serve_now_ns() + (uint64_t)o->eject_ms * 1000000u;
}

void gs__rloop_report(gs__rloop_t *rl, gs__peer_t *peer, bool ok,
                      bool passive_failure, uint64_t latency_ns) {
  gs__wk_t *wk = peer->wk;
  gs__wk_count(wk, ok); /* now: status reads it as soon as it is answered */
  eject_locally(peer, ok, passive_failure);
  if (rl->index == 0) {
    apply_outcome(wk, ok, passive_failure, latency_ns);
    return;
  }
  if (rl->n_outcomes == rl->cap_outcomes) {
    size_t cap = rl->cap_outcomes ? rl->cap_outcomes * 2 : 64;
    gs__outcome_t *grown = realloc(rl->outcomes, cap * sizeof *grown);
    if (!grown)
      return; /* out of memory: this request is not counted */
    rl->outcomes = grown;
    rl->cap_outcomes = cap;
  }
  wk->refs++;
  rl->outcomes[rl->n_outcomes++] =
      (gs__outcome_t){.wk = wk,
                      .ok = ok,
                      .passive_failure = passive_failure,
                      .latency_ns = latency_ns};
  if (rl->n_outcomes >= FLUSH_COUNT)
    flush_outcomes(rl);
  else if (!uv_is_active((uv_handle_t *)&rl->flush_timer))
    uv_timer_start(&rl->flush_timer, on_flush_timer, FLUSH_MS, 0);
}

/* Loop k's outcomes go to the main loop. */
static void flush_outcomes(gs__rloop_t *rl) {
  gs__serve_t *s = rl->s;
  uv_timer_stop(&rl->flush_timer);
  if (rl->n_outcomes == 0)
    return;
  uv_mutex_lock(&s->mail_mu);
  size_t need = s->n_mail_outcomes + rl->n_outcomes;
  if (need > s->cap_mail_outcomes) {
    gs__outcome_t *grown = realloc(s->mail_outcomes, need * 2 * sizeof *grown);
    if (grown) {
      s->mail_outcomes = grown;
      s->cap_mail_outcomes = need * 2;
    }
  }
  size_t n = 0;
  if (need <= s->cap_mail_outcomes) {
    memcpy(s->mail_outcomes + s->n_mail_outcomes, rl->outcomes,
           rl->n_outcomes * sizeof *rl->outcomes);
    s->n_mail_outcomes = need;
    n = rl->n_outcomes;
  }
  uv_mutex_unlock(&s->mail_mu);
  for (size_t i = n; i < rl->n_outcomes; i++)
    gs__wk_unref(rl->outcomes[i].wk); /* out of memory: not counted */
  rl->n_outcomes = 0;
  uv_async_send(&s->mail_async);
}

void gs__rloop_forward(gs__rloop_t *rl, gs__front_req_t *f) {
  gs__serve_t *s = rl->s;
  f->forwarded = true;
  uv_mutex_lock(&s->mail_mu);
  f->mail_next = s->mail_forwarded;
  s->mail_forwarded = f;
  uv_mutex_unlock(&s->mail_mu);
  uv_async_send(&s->mail_async);
}

/* The main loop's mailbox. */
static void on_mail(uv_async_t *a) {
  gs__serve_t *s = a->data;
  uv_mutex_lock(&s->mail_mu);
  gs__outcome_t *outcomes = s->mail_outcomes;
  size_t n = s->n_mail_outcomes;
  gs__front_req_t *fwd = s->mail_forwarded;
  s->mail_outcomes = NULL;
  s->n_mail_outcomes = s->cap_mail_outcomes = 0;
  s->mail_forwarded = NULL;
  uv_mutex_unlock(&s->mail_mu);
  for (size_t i = 0; i < n; i++) {
    apply_outcome(outcomes[i].wk, outcomes[i].ok, outcomes[i].passive_failure,
                  outcomes[i].latency_ns);
    gs__wk_unref(outcomes[i].wk);
  }
  free(outcomes);
  gs__front_req_t *in_order = NULL; /* the list is newest first */
  while (fwd) {
    gs__front_req_t *next = fwd->mail_next;
    fwd->mail_next = in_order;
    in_order = fwd;
    fwd = next;
  }
  while (in_order) {
    gs__front_req_t *next = in_order->mail_next;
    gs__front_handle_main(in_order); /* may answer (and free) it now */
    in_order = next;
  }
}

void gs__rloop_answer(gs__front_req_t *f, gs__http_response_t *resp) {
  gs__rloop_t *rl = f->rl;
  f->answer = *resp;
  if (resp->content_type) {
    snprintf(f->answer_type, sizeof f->answer_type, "%s", resp->content_type);
    f->answer.content_type = f->answer_type;
  }
  resp->body = NULL; /* f->answer's now */
  uv_mutex_lock(&rl->mu);
  f->mail_next = rl->answers;
  rl->answers = f;
  uv_mutex_unlock(&rl->mu);
  uv_async_send(&rl->wake);
}

/* ---- loops 1.. ------------------------------------------------------------
 */

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* On rl's thread (or before it started): everything closes; uv_run then
 * returns. */
static void rloop_shutdown(gs__rloop_t *rl) {
  gs__http_listener_close(&rl->front);
  while (rl->peers) {
    gs__peer_t *p = rl->peers;
    rl->peers = p->next;
    peer_drop(p);
  }
  flush_outcomes(rl); /* the main loop applies them after the join */
  /* What is left (requests still in flight when a drain timed out) is
   * closed without its callbacks. */
  uv_walk(rl->loop, close_any, NULL);
}

static void on_wake(uv_async_t *a) {
  gs__rloop_t *rl = a->data;
  uv_mutex_lock(&rl->mu);
  gs__view_t *view = rl->view;
  gs__front_req_t *answers = rl->answers;
  bool drain = rl->cmd_drain, close_idle = rl->cmd_close_idle,
       stop = rl->cmd_stop;
  rl->view = NULL;
  rl->answers = NULL;
  rl->cmd_drain = rl->cmd_close_idle = false;
  uv_mutex_unlock(&rl->mu);
  if (view)
    view_apply(rl, view);
  while (answers) {
    gs__front_req_t *f = answers;
    answers = f->mail_next;
    rl->front_inflight--;
    gs__http_conn_respond(f->c, &f->answer); /* f may be freed */
  }
  if (drain)
    gs__http_listener_drain(&rl->front);
  if (close_idle)
    gs__http_listener_close_idle(&rl->front);
  if (stop)
    rloop_shutdown(rl);
  rl->conns = (unsigned)rl->front.n_conns; /* for the drain */
  if (drain)
    rl->drain_done = true; /* after conns: then the count is never low */
}

static void rloop_main(void *arg) {
  gs__rloop_t *rl = arg;
  uv_run(rl->loop, UV_RUN_DEFAULT);
}

static void rloop_post(gs__rloop_t *rl, bool *cmd) {
  uv_mutex_lock(&rl->mu);
  *cmd = true;
  uv_mutex_unlock(&rl->mu);
  uv_async_send(&rl->wake);
}

static gs__rloop_t *rloop_new(gs__serve_t *s, unsigned index) {
  gs__rloop_t *rl = calloc(1, sizeof *rl);
  if (!rl || uv_mutex_init(&rl->mu) != 0) {
    free(rl);
    return NULL;
  }
  rl->s = s;
  rl->index = index;
  rl->rng = (gs__serve_now_ns() + index * 0x9e3779b97f4a7c15ull) | 1;
  return rl;
}

/* ---- the main loop's side -------------------------------------------------
 */

int gs__rloops_init(gs__serve_t *s, gs_error_t *err) {
  gs__rloop_t *rl = rloop_new(s, 0);
  if (!rl)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  rl->loop = &s->loop;
  s->rloops[0] = rl;
  s->n_rloops = 1;
  if (uv_mutex_init(&s->mail_mu) != 0)
    return gs_error_set(err, GS_ESYSTEM, "cannot create a mutex");
  s->mail_ready = true;
  int rc = uv_async_init(&s->loop, &s->mail_async, on_mail);
  s->mail_async.data = s;
  if (rc != 0)
    return gs_error_set(err, GS_ESYSTEM, "uv_async_init: %s", uv_strerror(rc));
  return GS_OK;
}

/* Loop k, its own libuv loop and mailbox, not yet listening; NULL with err
 * when any part fails (nothing of it is left). */
static gs__rloop_t *rloop_open(gs__serve_t *s, unsigned k, gs_error_t *err) {
  gs__rloop_t *rl = rloop_new(s, k);
  if (!rl) {
    gs_error_set(err, GS_ENOMEM, "out of memory");
    return NULL;
  }
  rl->loop = &rl->own_loop;
  int rc = uv_loop_init(rl->loop);
  if (rc == 0) {
    rc = uv_async_init(rl->loop, &rl->wake, on_wake);
    if (rc != 0)
      uv_loop_close(rl->loop);
  }
  if (rc != 0) {
    gs_error_set(err, GS_ESYSTEM, "router loop %u: %s", k, uv_strerror(rc));
    uv_mutex_destroy(&rl->mu);
    free(rl);
    return NULL;
  }
  uv_timer_init(rl->loop, &rl->flush_timer);
  rl->wake.data = rl->flush_timer.data = rl;
  gs__front_setup(rl);
  return rl;
}

/* With SO_REUSEPORT a port held by another serve of the same user would be
 * shared with it: the port must be free first (a plain bind, as libuv's:
 * SO_REUSEADDR, so that connections in TIME_WAIT do not count). */
static int check_port_free(const char *host, unsigned port, gs_error_t *err) {
  struct sockaddr_storage addr = {0};
  if (port == 0 ||
      (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr) != 0 &&
       uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr) != 0))
    return GS_OK; /* any port, or gs__http_listen names the bad address */
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0)
    return gs_error_sys(err, errno, "cannot open a socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
  int rc = bind(fd, (struct sockaddr *)&addr, len) == 0 ? 0 : errno;
  close(fd);
  if (rc != 0)
    return gs_error_set(err, GS_ESYSTEM, "cannot listen on %s port %u: %s",
                        host, port, strerror(rc));
  return GS_OK;
}

int gs__rloops_listen(gs__serve_t *s, gs_error_t *err) {
  const char *host = s->opt.host ? s->opt.host : "127.0.0.1";
  gs__rloop_t *rl0 = s->rloops[0];
  gs__front_setup(rl0);
  int rc = rl0->front.reuseport ? check_port_free(host, s->opt.http_port, err)
                                : GS_OK;
  if (rc == GS_OK)
    rc = gs__http_listen(&s->loop, &rl0->front, host, s->opt.http_port, err);
  s->http_port = rl0->front.port; /* port 0: the others take the same */
  for (unsigned k = 1; rc == GS_OK && k < s->opt.router_threads; k++) {
    gs__rloop_t *rl = rloop_open(s, k, err);
    if (!rl)
      return GS_ESYSTEM;
    s->rloops[s->n_rloops++] = rl;
    rc = gs__http_listen(rl->loop, &rl->front, host, s->http_port, err);
  }
  if (rc != GS_OK)
    return rc;
  free(s->last_view); /* every loop gets the table now */
  s->last_view = NULL;
  gs__serve_publish(s);
  for (unsigned k = 1; k < s->n_rloops; k++) {
    gs__rloop_t *rl = s->rloops[k];
    rc = uv_thread_create(&rl->thread, rloop_main, rl);
    if (rc != 0)
      return gs_error_set(err, GS_ESYSTEM, "cannot start router thread %u: %s",
                          k, uv_strerror(rc));
    rl->thread_started = true;
  }
  return GS_OK;
}

void gs__rloops_drain(gs__serve_t *s) {
  gs__http_listener_drain(&s->rloops[0]->front);
  for (unsigned k = 1; k < s->n_rloops; k++)
    rloop_post(s->rloops[k], &s->rloops[k]->cmd_drain);
}

void gs__rloops_close_idle(gs__serve_t *s) {
  gs__http_listener_close_idle(&s->rloops[0]->front);
  for (unsigned k = 1; k < s->n_rloops; k++)
    rloop_post(s->rloops[k], &s->rloops[k]->cmd_close_idle);
}

unsigned long long gs__serve_requests(const gs__serve_t *s) {
  unsigned long long n = s->requests;
  for (unsigned k = 0; k < s->n_rloops; k++)
    n += s->rloops[k]->requests;
  return n;
}

unsigned gs__rloops_inflight(const gs__serve_t *s) {
  unsigned n = 0;
  for (unsigned k = 0; k < s->n_rloops; k++)
    n += s->rloops[k]->front_inflight;
  return n;
}

unsigned gs__rloops_conns(gs__serve_t *s) {
  unsigned n = s->n_rloops ? (unsigned)s->rloops[0]->front.n_conns : 0;
  bool known = true;
  for (unsigned k = 1; k < s->n_rloops; k++) {
    known = known && s->rloops[k]->drain_done;
    n += s->rloops[k]->conns;
    uv_async_send(&s->rloops[k]->wake); /* an iteration: a fresh count */
  }
  return known ? n : UINT_MAX;
}

void gs__rloops_stop(gs__serve_t *s) {
  for (unsigned k = 1; k < s->n_rloops; k++) {
    gs__rloop_t *rl = s->rloops[k];
    if (rl->thread_started) {
      rloop_post(rl, &rl->cmd_stop);
      uv_thread_join(&rl->thread);
    } else { /* set up, never started: closed here */
      rloop_shutdown(rl);
      uv_run(rl->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(rl->loop);
    view_free(rl->view); /* published after it stopped reading */
    free(rl->outcomes);
    uv_mutex_destroy(&rl->mu);
    free(rl);
    s->rloops[k] = NULL;
  }
  if (s->n_rloops == 0)
    return;
  s->n_rloops = 1;
  /* Outcomes the loops sent last; forwarded requests not yet handled went
   * with their loops' connections. */
  s->mail_forwarded = NULL;
  if (s->mail_ready)
    on_mail(&s->mail_async);
  gs__rloop_t *rl0 = s->rloops[0];
  gs__http_listener_close(&rl0->front);
  while (rl0->peers) {
    gs__peer_t *p = rl0->peers;
    rl0->peers = p->next;
    peer_drop(p);
  }
}

void gs__rloops_free(gs__serve_t *s) {
  if (s->rloops[0]) {
    uv_mutex_destroy(&s->rloops[0]->mu);
    free(s->rloops[0]);
    s->rloops[0] = NULL;
  }
  s->n_rloops = 0;
  free(s->last_view);
  s->last_view = NULL;
  if (s->mail_ready)
    uv_mutex_destroy(&s->mail_mu);
  s->mail_ready = false;
}

unsigned gs__rloops_auto(void) {
  cpu_set_t set;
  unsigned n = 1;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    n = (unsigned)CPU_COUNT(&set);
  if (n < 1)
    n = 1;
  return n > GS_SERVE_MAX_THREADS ? GS_SERVE_MAX_THREADS : n;
}
