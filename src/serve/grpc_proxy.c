/* The router's gRPC front: HTTP/2 with prior knowledge from gRPC clients;
 * each unary call goes to one worker's gRPC port over one multiplexed
 * nghttp2 client connection per worker and its answer comes back unchanged.
 * A call whose worker fails before answering is retried once elsewhere. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc.h"
#include "net/h2.h"
#include "serve/serve_int.h"

/* one header list, as RFC 9113 counts */
#define MAX_HEADER_BYTES ((unsigned)gs_limit_bytes(GS_LIMIT_GRPC_HEADERS))
/* requests + responses, all calls */
#define MAX_BUFFERED gs_limit_bytes(GS_LIMIT_GRPC_PROXY_BUFFERED)
#define DEFAULT_MAX_BODY ((size_t)64 << 20)
#define WINDOW_BYTES (1 << 20)
#define SWEEP_MS 50 /* how often deadlines are checked */

typedef struct front_s front_t;
typedef struct h2_s h2_t;
typedef struct call_s call_t;

/* A header list as name\0value\0 pairs (nghttp2 rejects NULs in both). */
typedef struct hdrs_s {
  gs_buf_t b;
  size_t list_bytes; /* RFC 9113's size: name + value + 32 each */
  unsigned n;
} hdrs_t;

/* One HTTP/2 connection: a client's to us (down) or ours to a worker (up).
 * Both sides share writing and closing; only their callbacks differ. */
struct h2_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  gs_h2_t h2; /* h2.session is NULL until h2_session */
  front_t *f;
  h2_t *next, *prev; /* in f->downs or f->ups */
  bool is_up;
  gs__wk_t *wk;   /* up: the worker, a ref of its own */
  unsigned calls; /* down: calls on it */
  bool connected, closing, dirty;
  bool gone; /* up: its worker died: not a passive failure */
};

struct call_s {
  call_t *next, *prev; /* in f->calls */
  front_t *f;
  h2_t *dc; /* the client's connection: the call lives as its stream */
  int32_t down_id;
  hdrs_t req; /* :path, :authority and the headers to forward */
  gs_buf_t body;
  int error; /* a gRPC status found while reading, answered at its end */
  char error_msg[128];
  /* the attempt in flight: wk is set while it counts in wk->inflight */
  gs__wk_t *wk;
  h2_t *up; /* NULL once its stream is gone */
  int32_t up_id;
  size_t body_sent;
  unsigned attempts;
  bool got_headers; /* the worker began answering: no retry after that */
  bool answered;
  bool pinned; /* a sequence's: its worker or none, never retried */
  /* a stream (ModelStreamInfer): relayed both ways as messages come */
  bool streaming, req_done, resp_done;
  hdrs_t resp, trailers;
  gs_buf_t resp_body;
  size_t resp_sent;
  uint64_t t_attempt, deadline_ns;
  call_t *fail_next; /* in h2_close's list of calls to fail */
  /* fan-outs (repository and shared-memory changes): the client's call has
   * one kid per worker; a kid is never answered to the client itself */
  call_t *parent;
  call_t **kids;
  unsigned n_kids, kids_pending;
  int kid_status;    /* a kid's gRPC status, once it is done */
  gs__wk_t *sent_to; /* a kid's worker (no reference: compared only) */
  bool undo; /* a register's undo (fanout_undo): no client, freed when done */
  char kid_msg[128];
};

struct front_s {
  gs__serve_t *s;
  uv_tcp_t listener;
  uv_prepare_t flusher;
  uv_timer_t sweeper;
  unsigned port;
  unsigned open_handles; /* of the three above, not yet closed */
  h2_t *downs, *ups;
  call_t *calls;
  unsigned n_calls;
  size_t buffered, max_body;
  unsigned timeout_ms;
  bool draining, closing;
};

static void h2_close(h2_t *c);
static void call_send(call_t *call, gs__wk_t *wk);

/* ---- small buffers ------------------------------------------------------ */

/* Appends len bytes unless that passes b's limit or the front's total. */
static int bytes_add(front_t *f, gs_buf_t *b, const uint8_t *data, size_t len) {
  size_t before = b->len;
  if (len > MAX_BUFFERED - f->buffered)
    return -1;
  if (gs_buf_add(b, data, len) != GS_OK) {
    f->buffered -= before; /* a failed buffer lets its bytes go */
    return -1;
  }
  f->buffered += len;
  return 0;
}

static void bytes_release(front_t *f, gs_buf_t *b) {
  if (f)
    f->buffered -= b->len;
  gs_buf_free(b);
}

static int hdrs_add(hdrs_t *h, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen) {
  if (h->list_bytes + nlen + vlen + 32 > MAX_HEADER_BYTES)
    return -1;
  uint8_t *p = gs_buf_reserve(&h->b, nlen + vlen + 2);
  if (!p)
    return -1;
  memcpy(p, name, nlen);
  p[nlen] = '\0';
  memcpy(p + nlen + 1, value, vlen);
  p[nlen + 1 + vlen] = '\0';
  gs_buf_commit(&h->b, nlen + vlen + 2);
  h->list_bytes += nlen + vlen + 32;
  h->n++;
  return 0;
}

/* h's pairs after `first` entries of the caller's; skips pseudo headers
 * other than :status, :path and :authority. Free the array. */
static nghttp2_nv *hdrs_nv(const hdrs_t *h, size_t first, size_t *n) {
  nghttp2_nv *nv = calloc(first + h->n + 1, sizeof *nv);
  const char *p = (const char *)h->b.data;
  *n = first;
  for (unsigned i = 0; nv && i < h->n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    if (p[0] != ':' || strcmp(p, ":status") == 0 || strcmp(p, ":path") == 0 ||
        strcmp(p, ":authority") == 0)
      nv[(*n)++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nlen + 1, nlen,
                                vlen, NGHTTP2_NV_FLAG_NONE};
    p += nlen + vlen + 2;
  }
  return nv;
}

/* ---- calls -------------------------------------------------------------- */

static void call_detach(call_t *call, bool reset);

static void call_free(call_t *call) {
  front_t *f = call->f;
  for (unsigned i = 0; i < call->n_kids; i++)
    if (call->kids[i]) {
      call_detach(call->kids[i], true);
      call_free(call->kids[i]);
    }
  free(call->kids);
  if (call->prev)
    call->prev->next = call->next;
  else
    f->calls = call->next;
  if (call->next)
    call->next->prev = call->prev;
  f->n_calls--;
  if (call->dc)
    call->dc->calls--;
  bytes_release(NULL, &call->req.b);
  bytes_release(NULL, &call->resp.b);
  bytes_release(NULL, &call->trailers.b);
  bytes_release(f, &call->body);
  bytes_release(f, &call->resp_body);
  free(call);
}

/* Keeps a call's first error to answer with; its request bytes go. */
static void call_set_error(call_t *call, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_set_error(call_t *call, int status, const char *fmt, ...) {
  va_list ap;
  if (call->error)
    return;
  call->error = status;
  va_start(ap, fmt);
  vsnprintf(call->error_msg, sizeof call->error_msg, fmt, ap);
  va_end(ap);
  bytes_release(call->f, &call->body);
}

/* Ends the attempt in flight; with reset, its stream is cancelled. */
static void call_detach(call_t *call, bool reset) {
  h2_t *u = call->up;
  if (u && !u->closing) {
    nghttp2_session_set_stream_user_data(u->h2.session, call->up_id, NULL);
    if (reset) {
      nghttp2_submit_rst_stream(u->h2.session, NGHTTP2_FLAG_NONE, call->up_id,
                                NGHTTP2_CANCEL);
      u->dirty = true;
    }
  }
  if (call->wk)
    call->wk->inflight--;
  call->up = NULL;
  call->wk = NULL;
}

/* Records the attempt's outcome on its worker, then ends it. */
static void call_end_attempt(call_t *call, bool ok, bool reset) {
  if (call->wk) {
    gs__wk_count(call->wk, ok);
    gs__wk_observe(call->wk, ok, gs__serve_now_ns() - call->t_attempt);
  }
  call_detach(call, reset);
}

static void call_submit(call_t *call, const nghttp2_nv *nv, size_t n,
                        const nghttp2_data_provider *data) {
  h2_t *dc = call->dc;
  call->answered = true;
  if (nghttp2_submit_response(dc->h2.session, call->down_id, nv, n, data) != 0)
    nghttp2_submit_rst_stream(dc->h2.session, NGHTTP2_FLAG_NONE, call->down_id,
                              NGHTTP2_INTERNAL_ERROR);
  dc->dirty = true;
}

static void kid_done(call_t *kid, int status, const char *msg);

/* Answers with a status of the router's own (a trailers-only response). */
static void call_answer_error(call_t *call, int status, const char *msg) {
  h2_t *dc = call->dc;
  if (call->undo) {
    call_free(call);
    return;
  }
  if (call->parent) {
    kid_done(call, status, msg);
    return;
  }
  call->answered = true;
  if (gs__grpc_submit_status(dc->h2.session, call->down_id, status, msg) != 0)
    nghttp2_submit_rst_stream(dc->h2.session, NGHTTP2_FLAG_NONE, call->down_id,
                              NGHTTP2_INTERNAL_ERROR);
  dc->dirty = true;
}

/* The data provider of both sides: on a worker's session it sends the
 * request, on a client's the response, then the worker's trailers. */
static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *buf,
                         size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)source;
  (void)user;
  if (!call) /* answered or cancelled meanwhile: reset the stream */
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  bool up = !call->dc || session != call->dc->h2.session;
  const gs_buf_t *b = up ? &call->body : &call->resp_body;
  size_t *sent = up ? &call->body_sent : &call->resp_sent;
  size_t n = b->len - *sent < length ? b->len - *sent : length;
  if (n)
    memcpy(buf, b->data + *sent, n);
  *sent += n;
  if (*sent < b->len)
    return (ssize_t)n;
  if (call->streaming && !(up ? call->req_done : call->resp_done)) {
    /* all relayed so far: the buffer starts again, the rest comes later */
    call->f->buffered -= b->len;
    ((gs_buf_t *)b)->len = 0;
    *sent = 0;
    return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
  }
  *flags |= NGHTTP2_DATA_FLAG_EOF;
  if (!up && call->trailers.n) {
    size_t nt;
    nghttp2_nv *nv = hdrs_nv(&call->trailers, 0, &nt);
    int rc = nv ? nghttp2_submit_trailer(session, id, nv, nt) : -1;
    free(nv);
    if (rc != 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  }
  return (ssize_t)n;
}

/* A stream has more to send on the worker's side (up) or the client's. */
static void call_resume(call_t *call, bool up) {
  if (up && call->up && !call->up->closing) {
    nghttp2_session_resume_data(call->up->h2.session, call->up_id);
    call->up->dirty = true;
  } else if (!up && !call->dc->closing) {
    nghttp2_session_resume_data(call->dc->h2.session, call->down_id);
    call->dc->dirty = true;
  }
}

/* Relays the worker's whole answer. A unary answer is small and written at
 * once by the worker, so it is gathered first: then every failure before
 * this point can still be answered as a plain error. */
static int hdrs_status(const hdrs_t *h, const char **msg);

static void call_answer_relay(call_t *call) {
  size_t n;
  if (call->undo) {
    call_free(call);
    return;
  }
  if (call->parent) {
    const char *msg = "";
    int st = hdrs_status(&call->trailers, &msg);
    if (st < 0)
      st = hdrs_status(&call->resp, &msg); /* trailers-only */
    kid_done(call, st < 0 ? GS__GRPC_INTERNAL : st, msg);
    return;
  }
  nghttp2_nv *nv = hdrs_nv(&call->resp, 0, &n);
  if (!nv) {
    call_answer_error(call, GS__GRPC_INTERNAL, "out of memory");
    return;
  }
  nghttp2_data_provider data = {.read_callback = read_body};
  bool trailers_only = call->resp_body.len == 0 && call->trailers.n == 0;
  call_submit(call, nv, n, trailers_only ? NULL : &data);
  free(nv);
}

/* The attempt failed at connection level: retry once, else UNAVAILABLE. */
static void call_attempt_failed(call_t *call, bool passive) {
  gs__serve_t *s = call->f->s;
  gs__wk_t *failed = call->wk;
  call_end_attempt(call, false, true);
  if (passive && failed)
    gs__wk_passive_failure(failed);
  if (call->undo) {
    call_free(call);
    return;
  }
  if (call->answered && !call->parent) { /* a stream, part relayed */
    s->failures++;
    nghttp2_submit_rst_stream(call->dc->h2.session, NGHTTP2_FLAG_NONE,
                              call->down_id, NGHTTP2_INTERNAL_ERROR);
    call->dc->dirty = true;
    return;
  }
  if (call->got_headers || call->attempts >= 2 || call->f->closing ||
      call->parent || call->pinned) {
    s->failures++;
    call_answer_error(call, GS__GRPC_UNAVAILABLE,
                      "the worker's connection failed");
    return;
  }
  gs__wk_t *next = gs__pick(s, failed);
  if (!next) {
    s->failures++;
    call_answer_error(call, GS__GRPC_UNAVAILABLE, "no worker is ready");
    return;
  }
  s->retries++;
  call_send(call, next);
}

/* ---- fan-outs: one call to every worker ---------------------------------- */

static bool call_is(const call_t *call, const char *method);

/* The calls that change every worker's state; the client is answered OK
 * only when every worker said OK, else with the first worker's error. */
static const char *const fanout_methods[] = {
    "RepositoryModelLoad",        "RepositoryModelUnload",
    "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
    "CudaSharedMemoryRegister",   "CudaSharedMemoryUnregister"};

static bool call_is_fanout(const call_t *call) {
  static const char svc[] = "/inference.GRPCInferenceService/";
  const char *p = (const char *)call->req.b.data;
  for (unsigned i = 0; i < call->req.n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    const char *v = p + nlen + 1;
    if (strcmp(p, ":path") == 0 && strncmp(v, svc, sizeof svc - 1) == 0)
      for (size_t m = 0; m < sizeof fanout_methods / sizeof *fanout_methods;
           m++)
        if (strcmp(v + sizeof svc - 1, fanout_methods[m]) == 0)
          return true;
    p += nlen + vlen + 2;
  }
  return false;
}

/* The grpc-status in h (its grpc-message in *msg); -1 when none. */
static int hdrs_status(const hdrs_t *h, const char **msg) {
  const char *p = (const char *)h->b.data;
  int st = -1;
  for (unsigned i = 0; i < h->n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    if (strcmp(p, "grpc-status") == 0)
      st = atoi(p + nlen + 1);
    else if (strcmp(p, "grpc-message") == 0)
      *msg = p + nlen + 1;
    p += nlen + vlen + 2;
  }
  return st;
}

static void swap_buf(gs_buf_t *a, gs_buf_t *b) {
  gs_buf_t t = *a;
  *a = *b;
  *b = t;
}

/* An unregister of what kid registered, on its worker when still there:
 * the register's message serves (the name is field 1 of both; the other
 * fields are unknown to an unregister, which skips them). */
static void undo_send(call_t *kid) {
  front_t *f = kid->f;
  gs__wk_t *wk = f->s->workers;
  while (wk && (wk != kid->sent_to || !gs__wk_routable(wk, gs__serve_now_ns())))
    wk = wk->next;
  call_t *u = wk ? calloc(1, sizeof *u) : NULL;
  if (!u)
    return;
  u->f = f;
  u->undo = u->answered = u->pinned = true;
  u->deadline_ns = UINT64_MAX;
  gs_buf_init_max(&u->body, GS_LIMIT_GRPC_MESSAGE, f->max_body);
  gs_buf_init(&u->resp_body, GS_LIMIT_GRPC_MESSAGE);
  gs_buf_init(&u->req.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&u->resp.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&u->trailers.b, GS_LIMIT_GRPC_HEADERS);
  u->next = f->calls;
  if (f->calls)
    f->calls->prev = u;
  f->calls = u;
  f->n_calls++;
  const char *p = (const char *)kid->req.b.data;
  int bad = 0;
  for (unsigned i = 0; i < kid->req.n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    const char *v = p + nlen + 1;
    char path[160];
    if (strcmp(p, ":path") == 0 && vlen > 8 && vlen + 3 < sizeof path &&
        strcmp(v + vlen - 8, "Register") == 0) {
      snprintf(path, sizeof path, "%.*sUnregister", (int)(vlen - 8), v);
      v = path;
    }
    bad |= hdrs_add(&u->req, (const uint8_t *)p, nlen, (const uint8_t *)v,
                    strlen(v));
    p += nlen + vlen + 2;
  }
  if (bad || bytes_add(f, &u->body, (const uint8_t *)kid->body.data,
                       kid->body.len) != 0) {
    call_free(u);
    return;
  }
  call_send(u, wk);
}

/* A register refused by some workers is undone on those that took it. */
static void fanout_undo(call_t *call) {
  if (!call_is(call, "SystemSharedMemoryRegister") &&
      !call_is(call, "CudaSharedMemoryRegister"))
    return;
  for (unsigned i = 0; i < call->n_kids; i++)
    if (call->kids[i]->kid_status == GS__GRPC_OK)
      undo_send(call->kids[i]);
}

/* Every kid is done: the first error, else the first kid's answer. */
static void fanout_finish(call_t *call) {
  call_t *ok = NULL, *bad = NULL;
  for (unsigned i = 0; i < call->n_kids; i++) {
    call_t *k = call->kids[i];
    if (k->kid_status != GS__GRPC_OK && !bad)
      bad = k;
    if (k->kid_status == GS__GRPC_OK && !ok)
      ok = k;
  }
  if (bad)
    fanout_undo(call);
  if (call->answered) {
    /* answered meanwhile (its deadline): nothing to relay */
  } else if (bad) {
    call->f->s->failures++;
    call_answer_error(call, bad->kid_status, bad->kid_msg);
  } else {
    swap_buf(&call->resp.b, &ok->resp.b);
    call->resp.n = ok->resp.n;
    call->resp.list_bytes = ok->resp.list_bytes;
    swap_buf(&call->trailers.b, &ok->trailers.b);
    call->trailers.n = ok->trailers.n;
    call->trailers.list_bytes = ok->trailers.list_bytes;
    swap_buf(&call->resp_body, &ok->resp_body);
    call_answer_relay(call);
  }
  for (unsigned i = 0; i < call->n_kids; i++) {
    call_detach(call->kids[i], true);
    call_free(call->kids[i]);
    call->kids[i] = NULL;
  }
}

static void kid_done(call_t *kid, int status, const char *msg) {
  call_t *call = kid->parent;
  if (kid->answered)
    return;
  kid->answered = true;
  kid->kid_status = status;
  /* a worker's grpc-message is percent-encoded: answered again, decoded */
  size_t o = 0;
  for (const char *p = msg ? msg : ""; *p && o + 1 < sizeof kid->kid_msg;) {
    unsigned v;
    if (p[0] == '%' && sscanf(p + 1, "%2x", &v) == 1 && p[1] && p[2]) {
      kid->kid_msg[o++] = (char)v;
      p += 3;
    } else {
      kid->kid_msg[o++] = *p++;
    }
  }
  kid->kid_msg[o] = '\0';
  if (--call->kids_pending == 0)
    fanout_finish(call);
}

/* A copy of call's request for one worker, linked with the front's calls
 * (so that a failed connection fails it) but never answered to a client. */
static call_t *kid_new(call_t *call) {
  front_t *f = call->f;
  call_t *kid = calloc(1, sizeof *kid);
  if (!kid)
    return NULL;
  kid->f = f;
  kid->dc = call->dc;
  kid->parent = call;
  kid->deadline_ns = call->deadline_ns;
  gs_buf_init_max(&kid->body, GS_LIMIT_GRPC_MESSAGE, f->max_body);
  gs_buf_init(&kid->resp_body, GS_LIMIT_GRPC_MESSAGE);
  gs_buf_init(&kid->req.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&kid->resp.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&kid->trailers.b, GS_LIMIT_GRPC_HEADERS);
  kid->next = f->calls;
  if (f->calls)
    f->calls->prev = kid;
  f->calls = kid;
  f->n_calls++;
  kid->dc->calls++;
  kid->req.n = call->req.n;
  kid->req.list_bytes = call->req.list_bytes;
  if (gs_buf_add(&kid->req.b, call->req.b.data, call->req.b.len) != GS_OK ||
      bytes_add(f, &kid->body, (const uint8_t *)call->body.data,
                call->body.len) != 0) {
    call_free(kid);
    return NULL;
  }
  return kid;
}

/* Sends call to every routable worker; false when none is. */
static bool fanout_start(call_t *call) {
  gs__serve_t *s = call->f->s;
  uint64_t now = gs__serve_now_ns();
  unsigned n = 0;
  for (gs__wk_t *wk = s->workers; wk; wk = wk->next)
    n += gs__wk_routable(wk, now);
  if (n == 0 || !(call->kids = calloc(n, sizeof *call->kids)))
    return false;
  for (gs__wk_t *wk = s->workers; wk && call->n_kids < n; wk = wk->next) {
    if (!gs__wk_routable(wk, now))
      continue;
    call_t *kid = kid_new(call);
    if (!kid) {
      call_set_error(call, GS__GRPC_INTERNAL, "out of memory");
      break;
    }
    call->kids[call->n_kids++] = kid;
  }
  /* Counted first: a kid that fails at once must not finish the call. */
  call->kids_pending = call->n_kids + 1;
  for (unsigned i = 0; i < call->n_kids; i++) {
    gs__wk_t *wk = s->workers;
    unsigned k = 0;
    for (; wk; wk = wk->next)
      if (gs__wk_routable(wk, now) && k++ == i)
        break;
    if (call->error)
      kid_done(call->kids[i], call->error, call->error_msg);
    else
      call_send(call->kids[i], wk);
  }
  if (--call->kids_pending == 0)
    fanout_finish(call);
  return true;
}

/* Whether call's :path is the service's method. */
static bool call_is(const call_t *call, const char *method) {
  const char *p = (const char *)call->req.b.data;
  for (unsigned i = 0; i < call->req.n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    if (strcmp(p, ":path") == 0)
      return strncmp(p + nlen + 1, "/inference.GRPCInferenceService/", 32) ==
                 0 &&
             strcmp(p + nlen + 1 + 32, method) == 0;
    p += nlen + vlen + 2;
  }
  return false;
}

/* The worker of a ModelInfer's sequence, as seq_pick in front.c: NULL
 * with the call answered when that worker is gone. */
static gs__wk_t *call_seq_pick(call_t *call, bool *answered) {
  gs__serve_t *s = call->f->s;
  gs__rseq_t q;
  *answered = false;
  if (!call_is(call, "ModelInfer") ||
      !gs__rseq_from_grpc((const uint8_t *)call->body.data, call->body.len, &q))
    return gs__pick(s, NULL);
  call->pinned = true;
  unsigned port = 0;
  gs__wk_t *wk = gs__rseq_find(s, &q, &port);
  if (!wk) {
    gs__wk_t *pick = gs__pick(s, NULL);
    if (pick && q.start && !q.end)
      gs__rseq_pin(s, &q, pick, pick->http_port);
    return pick;
  }
  bool gone = wk->http_port != port || !gs__wk_routable(wk, gs__serve_now_ns());
  gs__wk_unref(wk); /* the table's keeps it while it is there */
  if (gone || q.end)
    gs__rseq_drop(s, &q);
  if (!gone)
    return wk;
  if (q.start) {
    gs__wk_t *pick = gs__pick(s, NULL);
    if (pick && !q.end)
      gs__rseq_pin(s, &q, pick, pick->http_port);
    return pick;
  }
  char msg[GS__SEQ_ID + 128];
  snprintf(msg, sizeof msg,
           "sequence %s was on a worker that is gone (restarted or "
           "removed): start the sequence again",
           q.id + 2);
  *answered = true;
  s->failures++;
  call_answer_error(call, GS__GRPC_INVALID_ARGUMENT, msg);
  return NULL;
}

/* The request is whole: route it. */
static void call_dispatch(call_t *call) {
  gs__serve_t *s = call->f->s;
  if (call->error) {
    call_answer_error(call, call->error, call->error_msg);
    return;
  }
  s->requests++;
  if (call_is_fanout(call)) {
    if (!fanout_start(call)) {
      s->failures++;
      call_answer_error(call, GS__GRPC_UNAVAILABLE, "no worker is ready");
    }
    return;
  }
  bool answered = false;
  /* a stream stays on one worker: its sequences with it */
  gs__wk_t *wk =
      call->streaming ? gs__pick(s, NULL) : call_seq_pick(call, &answered);
  if (answered)
    return;
  if (!wk) {
    s->failures++;
    call_answer_error(call, GS__GRPC_UNAVAILABLE, "no worker is ready");
    return;
  }
  call_send(call, wk);
}

/* ---- connections: writing and closing ----------------------------------- */

static void front_maybe_free(front_t *f) {
  if (f->closing && f->open_handles == 0 && !f->downs && !f->ups)
    free(f);
}

static void on_h2_closed(uv_handle_t *h) {
  h2_t *c = h->data;
  front_t *f = c->f;
  gs_h2_release(&c->h2);
  if (c->prev)
    c->prev->next = c->next;
  else if (c->is_up)
    f->ups = c->next;
  else
    f->downs = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (c->wk)
    gs__wk_unref(c->wk);
  free(c);
  front_maybe_free(f);
}

/* Fails what an upstream connection carried. The calls are first taken
 * off it, so the retries (which may fail other connections) never meet
 * a list being walked. */
static void up_fail_calls(h2_t *u) {
  call_t *failing = NULL;
  for (call_t *call = u->f->calls; call; call = call->next)
    if (call->up == u) {
      call->up = NULL;
      call->fail_next = failing;
      failing = call;
    }
  if (failing)
    gs__serve_log(u->f->s, "gRPC: the connection to worker %s failed",
                  u->wk->label);
  while (failing) {
    call_t *call = failing;
    failing = call->fail_next;
    call_attempt_failed(call, !u->gone);
  }
}

/* A client's connection is gone: its calls end, their attempts cancelled. */
static void down_drop_calls(h2_t *c) {
  call_t *call = c->f->calls;
  while (call) {
    if (call->dc == c && !call->parent) {
      call_detach(call, true);
      call_free(call); /* its kids too: start over */
      call = c->f->calls;
    } else {
      call = call->next;
    }
  }
}

static void h2_close(h2_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->is_up) {
    if (c->wk->grpc == c)
      c->wk->grpc = NULL; /* the next call opens a new one */
    up_fail_calls(c);
  } else {
    down_drop_calls(c);
  }
  uv_close((uv_handle_t *)&c->tcp, on_h2_closed);
}

static void on_written(gs_h2_t *h, int status) {
  h2_t *c = h->data;
  if (status < 0)
    h2_close(c);
  else
    c->dirty = true; /* the flusher sends what is still queued */
}

/* Whether c has nothing more to do: closed once its writes are done. */
static bool h2_idle(h2_t *c) {
  if (c->h2.writes || nghttp2_session_want_write(c->h2.session))
    return false;
  if (!nghttp2_session_want_read(c->h2.session))
    return true;
  return !c->is_up && c->f->draining && c->calls == 0;
}

/* Sends what nghttp2 has queued (up to the pump's high water mark, then
 * again after a write completes). */
static void h2_flush(h2_t *c) {
  gs_error_t err;
  c->dirty = false;
  if (c->closing || !c->connected)
    return;
  if (gs_h2_flush(&c->h2, &err) != GS_OK || h2_idle(c))
    h2_close(c);
}

/* nghttp2 callbacks only queue frames and mark their connection dirty;
 * this runs before the loop waits again and sends for every dirty one.
 * One place for sending keeps one session's callbacks from running inside
 * another's (a failed worker's calls are answered on clients' sessions and
 * retried on other workers' sessions). */
static void on_flush(uv_prepare_t *p) {
  front_t *f = p->data;
  bool again = true;
  while (again) {
    again = false;
    for (int side = 0; side < 2; side++)
      for (h2_t *c = side ? f->ups : f->downs; c; c = c->next)
        if (c->dirty) {
          h2_flush(c);
          again = true;
        }
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  h2_t *c = stream->data;
  gs_error_t err;
  if (nread < 0 ||
      (nread > 0 && !c->closing &&
       gs_h2_feed(&c->h2, buf->base, (size_t)nread, &err) != GS_OK))
    h2_close(c);
  else
    c->dirty = true;
}

/* ---- the client side: calls to workers ----------------------------------- */

static int up_on_header(nghttp2_session *session, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user) {
  call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  (void)flags;
  (void)user;
  if (!call || frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  hdrs_t *h = frame->headers.cat == NGHTTP2_HCAT_HEADERS ? &call->trailers
                                                         : &call->resp;
  call->got_headers = true;
  if (hdrs_add(h, name, namelen, value, valuelen) == 0)
    return 0;
  call_set_error(call, GS__GRPC_INTERNAL,
                 "the worker's headers are larger than %u bytes",
                 MAX_HEADER_BYTES);
  return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
}

static int up_on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                      const uint8_t *data, size_t len, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  if (!call || call->error ||
      bytes_add(call->f, &call->resp_body, data, len) == 0)
    return 0;
  call_set_error(call, GS__GRPC_RESOURCE_EXHAUSTED,
                 "the worker's response is too large to relay");
  /* A data callback's nonzero return would end the whole connection (all
   * calls on this worker): reset just this stream. */
  nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id,
                            NGHTTP2_INTERNAL_ERROR);
  ((h2_t *)user)->dirty = true;
  return 0;
}

static int up_on_frame_recv(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user) {
  h2_t *u = user;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    /* Streams past its last id close as refused (and are retried); the
     * others finish here; new calls go to a new connection. */
    if (u->wk->grpc == u)
      u->wk->grpc = NULL;
    return 0;
  }
  call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  if (!call ||
      (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
    return 0;
  bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (call->streaming && !end && !call->answered && !call->error &&
      frame->hd.type == NGHTTP2_HEADERS) {
    /* the stream's response begins: relayed as it comes */
    size_t n;
    nghttp2_nv *nv = hdrs_nv(&call->resp, 0, &n);
    nghttp2_data_provider data = {.read_callback = read_body};
    if (nv)
      call_submit(call, nv, n, &data);
    else
      call_attempt_failed(call, false);
    free(nv);
    return 0;
  }
  if (call->streaming && call->answered && !end) {
    call_resume(call, false); /* more messages */
    return 0;
  }
  if (!end)
    return 0;
  if (call->streaming && call->answered) {
    if (call->error) {
      call_attempt_failed(call, false);
      return 0;
    }
    call_end_attempt(call, true, false);
    call->resp_done = true; /* its trailers follow the last message */
    call_resume(call, false);
    return 0;
  }
  if (call->error) { /* cut short above: never relay a truncated answer */
    call_end_attempt(call, false, true);
    call_answer_error(call, call->error, call->error_msg);
    return 0;
  }
  /* Our request may still be sending: the detached stream is reset. */
  call_end_attempt(call, true, false);
  call_answer_relay(call);
  return 0;
}

static int up_on_stream_close(nghttp2_session *session, int32_t id,
                              uint32_t error_code, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)error_code;
  (void)user;
  if (!call)
    return 0;
  call->up = NULL; /* the stream is gone: nothing to reset */
  if (call->error) {
    call_end_attempt(call, false, false);
    call_answer_error(call, call->error, call->error_msg);
  } else {
    call_attempt_failed(call, true); /* reset or refused by the worker */
  }
  return 0;
}

/* ---- the server side: calls from clients --------------------------------- */

static int down_on_begin_headers(nghttp2_session *session,
                                 const nghttp2_frame *frame, void *user) {
  h2_t *c = user;
  front_t *f = c->f;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  call_t *call = calloc(1, sizeof *call);
  if (!call)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  call->f = f;
  call->dc = c;
  gs_buf_init_max(&call->body, GS_LIMIT_GRPC_MESSAGE, f->max_body);
  gs_buf_init(&call->resp_body, GS_LIMIT_GRPC_MESSAGE);
  gs_buf_init(&call->req.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&call->resp.b, GS_LIMIT_GRPC_HEADERS);
  gs_buf_init(&call->trailers.b, GS_LIMIT_GRPC_HEADERS);
  call->down_id = frame->hd.stream_id;
  call->deadline_ns = gs__serve_now_ns() + (uint64_t)f->timeout_ms * 1000000u;
  call->next = f->calls;
  if (f->calls)
    f->calls->prev = call;
  f->calls = call;
  f->n_calls++;
  c->calls++;
  nghttp2_session_set_stream_user_data(session, call->down_id, call);
  return 0;
}

static int down_on_header(nghttp2_session *session, const nghttp2_frame *frame,
                          const uint8_t *name, size_t namelen,
                          const uint8_t *value, size_t valuelen, uint8_t flags,
                          void *user) {
  call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  (void)flags;
  (void)user;
  if (!call || call->error || frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* request trailers: gRPC sends none, and none are kept */
  if (name[0] == ':' && !(namelen == 5 && memcmp(name, ":path", 5) == 0) &&
      !(namelen == 10 && memcmp(name, ":authority", 10) == 0))
    return 0; /* :method and :scheme are the router's to set */
  if (hdrs_add(&call->req, name, namelen, value, valuelen) != 0)
    call_set_error(call, GS__GRPC_RESOURCE_EXHAUSTED,
                   "the request's headers are larger than %u bytes",
                   MAX_HEADER_BYTES);
  return 0;
}

static int down_on_data(nghttp2_session *session, uint8_t flags, int32_t id,
                        const uint8_t *data, size_t len, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)flags;
  (void)user;
  if (!call || call->error ||
      (call->answered && !(call->streaming && call->wk)))
    return 0;
  if (bytes_add(call->f, &call->body, data, len) != 0) {
    if (call->streaming && call->wk) { /* a stream past the limit: ends */
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id,
                                NGHTTP2_ENHANCE_YOUR_CALM);
      ((h2_t *)user)->dirty = true;
      return 0;
    }
    call_set_error(call, GS__GRPC_RESOURCE_EXHAUSTED,
                   "the request is larger than %zu bytes", call->f->max_body);
  }
  if (call->streaming)
    call_resume(call, true);
  return 0;
}

static int down_on_frame_recv(nghttp2_session *session,
                              const nghttp2_frame *frame, void *user) {
  (void)user;
  if (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS)
    return 0;
  call_t *call =
      nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
  bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (!call)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !call->streaming &&
      call_is(call, "ModelStreamInfer")) {
    /* a stream goes to its worker at once, without a deadline */
    call->streaming = call->pinned = true;
    call->deadline_ns = UINT64_MAX;
    call->req_done = end;
    call_dispatch(call);
    return 0;
  }
  if (call->streaming && end) {
    call->req_done = true; /* the client half-closed */
    call_resume(call, true);
    return 0;
  }
  if (end && !call->answered && !call->wk)
    call_dispatch(call);
  return 0;
}

/* The stream is done: answered and sent, or reset by the client (then its
 * attempt is cancelled on the worker too). */
static int down_on_stream_close(nghttp2_session *session, int32_t id,
                                uint32_t error_code, void *user) {
  call_t *call = nghttp2_session_get_stream_user_data(session, id);
  (void)error_code;
  (void)user;
  if (!call)
    return 0;
  call_detach(call, true);
  call_free(call);
  return 0;
}

/* ---- sessions ----------------------------------------------------------- */

/* c's session: server for a client, client to a worker, with header lists
 * limited both ways. */
static int h2_session(h2_t *c) {
  const gs_h2_config_t cfg = {.server = !c->is_up,
                              .max_streams = GS__GRPC_MAX_STREAMS,
                              .window = WINDOW_BYTES,
                              .conn_window = 16 * WINDOW_BYTES,
                              .max_headers = MAX_HEADER_BYTES};
  nghttp2_session_callbacks *cb = NULL;
  gs_error_t err;
  if (nghttp2_session_callbacks_new(&cb) != 0)
    return -1;
  nghttp2_session_callbacks_set_on_header_callback(
      cb, c->is_up ? up_on_header : down_on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cb, c->is_up ? up_on_data : down_on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cb, c->is_up ? up_on_frame_recv : down_on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(
      cb, c->is_up ? up_on_stream_close : down_on_stream_close);
  if (!c->is_up)
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        cb, down_on_begin_headers);
  int rc =
      gs_h2_init(&c->h2, (uv_stream_t *)&c->tcp, &cfg, cb, c, on_written, &err);
  nghttp2_session_callbacks_del(cb);
  c->h2.data = c;
  return rc == GS_OK ? 0 : -1;
}

static h2_t *h2_new(front_t *f, bool is_up) {
  h2_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->f = f;
  c->is_up = is_up;
  uv_tcp_init(&f->s->loop, &c->tcp);
  c->tcp.data = c;
  h2_t **list = is_up ? &f->ups : &f->downs;
  c->next = *list;
  if (*list)
    (*list)->prev = c;
  *list = c;
  return c;
}

static void on_connect(uv_connect_t *req, int status) {
  h2_t *u = req->handle->data;
  if (u->closing)
    return;
  if (status < 0) {
    gs__serve_log(u->f->s, "gRPC: cannot connect to worker %s: %s",
                  u->wk->label, uv_strerror(status));
    h2_close(u);
    return;
  }
  u->connected = true;
  u->dirty = true;
  uv_tcp_nodelay(&u->tcp, 1);
  if (uv_read_start((uv_stream_t *)&u->tcp, gs_h2_alloc, on_read) != 0)
    h2_close(u);
}

/* wk's connection, opened on first use; NULL when it cannot be. */
static h2_t *up_get(front_t *f, gs__wk_t *wk) {
  if (wk->grpc)
    return wk->grpc;
  if (!wk->grpc_port)
    return NULL;
  h2_t *u = h2_new(f, true);
  if (!u)
    return NULL;
  wk->refs++; /* held until on_h2_closed */
  u->wk = wk;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)wk->grpc_port, &addr);
  if (h2_session(u) != 0 ||
      uv_tcp_connect(&u->connect, &u->tcp, (struct sockaddr *)&addr,
                     on_connect) != 0) {
    h2_close(u); /* no call on it yet */
    return NULL;
  }
  wk->grpc = u;
  return u;
}

/* One attempt of call on wk: a failure to even submit it counts as the
 * worker's connection failing. */
static void call_send(call_t *call, gs__wk_t *wk) {
  h2_t *u = up_get(call->f, wk);
  call->attempts++;
  call->wk = wk;
  call->sent_to = wk;
  wk->inflight++;
  call->t_attempt = gs__serve_now_ns();
  call->body_sent = 0;
  size_t n = 0;
  nghttp2_nv *nv = u ? hdrs_nv(&call->req, 2, &n) : NULL;
  int32_t id = -1;
  if (nv) {
    /* gRPC calls are POSTs over cleartext here; :path and :authority come
     * from the client with its headers. */
    nv[0] = (nghttp2_nv)GS_H2_NV(":method", "POST");
    nv[1] = (nghttp2_nv)GS_H2_NV(":scheme", "http");
    nghttp2_data_provider data = {.read_callback = read_body};
    id = nghttp2_submit_request(u->h2.session, NULL, nv, n, &data, call);
    free(nv);
  }
  if (id < 0) {
    call_attempt_failed(call, true);
    return;
  }
  call->up = u;
  call->up_id = id;
  u->dirty = true;
}

static void on_connection(uv_stream_t *listener, int status) {
  front_t *f = listener->data;
  if (status < 0 || f->draining)
    return;
  h2_t *c = h2_new(f, false);
  if (!c)
    return;
  c->connected = true;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || h2_session(c) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, gs_h2_alloc, on_read) != 0) {
    h2_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->dirty = true; /* our SETTINGS */
}

/* ---- deadlines and the front's life -------------------------------------- */

static void on_sweep(uv_timer_t *t) {
  front_t *f = t->data;
  uint64_t now = gs__serve_now_ns();
  for (call_t *call = f->calls; call; call = call->next) {
    if (call->answered || call->parent || now < call->deadline_ns)
      continue;
    char msg[96];
    snprintf(msg, sizeof msg, "the call took longer than %u ms", f->timeout_ms);
    call_end_attempt(call, false, true); /* RSTs the worker's stream */
    f->s->failures++;
    call_answer_error(call, GS__GRPC_DEADLINE_EXCEEDED, msg);
  }
}

static void on_front_handle_closed(uv_handle_t *h) {
  front_t *f = h->data;
  f->open_handles--;
  front_maybe_free(f);
}

int gs__grpc_proxy_listen(gs__serve_t *s, const char *host, unsigned port,
                          gs_error_t *err) {
  if (port > 65535)
    return gs_error_set(err, GS_EINVAL, "gRPC port %u is not in 0..65535",
                        port);
  front_t *f = calloc(1, sizeof *f);
  if (!f)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  s->grpc = f; /* closed by gs__grpc_proxy_close even when listening fails */
  f->s = s;
  f->max_body =
      s->opt.max_body_bytes ? s->opt.max_body_bytes : DEFAULT_MAX_BODY;
  f->timeout_ms = s->opt.request_timeout_ms ? s->opt.request_timeout_ms : 30000;
  uv_prepare_init(&s->loop, &f->flusher);
  uv_timer_init(&s->loop, &f->sweeper);
  f->flusher.data = f->sweeper.data = f;
  f->open_handles = 3;
  /* Neither keeps the loop alive: connections and calls do. */
  uv_prepare_start(&f->flusher, on_flush);
  uv_unref((uv_handle_t *)&f->flusher);
  uv_timer_start(&f->sweeper, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&f->sweeper);
  int rc = gs__tcp_listen(&s->loop, &f->listener, host ? host : "127.0.0.1",
                          port, false, on_connection, &f->port, err);
  f->listener.data = f;
  if (rc != GS_OK)
    return gs_error_prefix(err, "gRPC: ");
  return GS_OK;
}

unsigned gs__grpc_proxy_port(const gs__serve_t *s) {
  const front_t *f = s->grpc;
  return f ? f->port : 0;
}

void gs__grpc_proxy_drain(gs__serve_t *s) {
  front_t *f = s->grpc;
  if (!f || f->draining)
    return;
  f->draining = true;
  if (!uv_is_closing((uv_handle_t *)&f->listener))
    uv_close((uv_handle_t *)&f->listener, on_front_handle_closed);
  for (h2_t *c = f->downs; c; c = c->next) {
    if (c->closing)
      continue;
    /* Calls already begun finish; the connection closes once they have. */
    nghttp2_submit_goaway(
        c->h2.session, NGHTTP2_FLAG_NONE,
        nghttp2_session_get_last_proc_stream_id(c->h2.session),
        NGHTTP2_NO_ERROR, NULL, 0);
    c->dirty = true;
  }
}

unsigned gs__grpc_proxy_inflight(const gs__serve_t *s) {
  const front_t *f = s->grpc;
  return f ? f->n_calls : 0;
}

void gs__grpc_proxy_worker_gone(gs__wk_t *wk) {
  front_t *f = wk->s->grpc;
  if (!f)
    return;
  /* Its current connection and any it left after a GOAWAY. */
  for (h2_t *u = f->ups; u; u = u->next)
    if (u->wk == wk && !u->closing) {
      u->gone = true;
      h2_close(u);
    }
}

void gs__grpc_proxy_close(gs__serve_t *s) {
  front_t *f = s->grpc;
  if (!f)
    return;
  s->grpc = NULL;
  f->draining = f->closing = true;
  uv_handle_t *handles[] = {(uv_handle_t *)&f->listener,
                            (uv_handle_t *)&f->flusher,
                            (uv_handle_t *)&f->sweeper};
  for (size_t i = 0; i < 3; i++)
    if (!uv_is_closing(handles[i]))
      uv_close(handles[i], on_front_handle_closed);
  /* Clients first: that ends every call, so the workers' connections
   * close with nothing left to retry. */
  for (h2_t *c = f->downs; c; c = c->next)
    h2_close(c);
  for (h2_t *u = f->ups; u; u = u->next)
    h2_close(u);
  front_maybe_free(f);
}
