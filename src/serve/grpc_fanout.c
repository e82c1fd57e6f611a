/* The router's gRPC fan-outs: repository and shared-memory changes go to
 * every worker as one kid call each; the client is answered once all are
 * done (the first error, else the first answer), and a register some
 * workers refused is undone on those that took it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/grpc_proxy_int.h"

/* ---- fan-outs: one call to every worker ---------------------------------- */

/* The calls that change every worker's state; the client is answered OK
 * only when every worker said OK, else with the first worker's error. */
static const char *const fanout_methods[] = {
    "RepositoryModelLoad",        "RepositoryModelUnload",
    "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
    "CudaSharedMemoryRegister",   "CudaSharedMemoryUnregister"};

bool gs__gp_call_is_fanout(const call_t *call) {
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
int gs__gp_hdrs_status(const hdrs_t *h, const char **msg) {
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
  gs__gp_call_init(u, f);
  u->undo = u->answered = u->pinned = true;
  u->deadline_ns = UINT64_MAX;
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
    bad |= gs__gp_hdrs_add(&u->req, (const uint8_t *)p, nlen,
                           (const uint8_t *)v, strlen(v));
    p += nlen + vlen + 2;
  }
  if (bad || gs__gp_bytes_add(f, &u->body, (const uint8_t *)kid->body.data,
                              kid->body.len) != 0) {
    gs__gp_call_free(u);
    return;
  }
  gs__gp_call_send(u, wk);
}

/* A register refused by some workers is undone on those that took it. */
static void fanout_undo(call_t *call) {
  if (!gs__gp_call_is(call, "SystemSharedMemoryRegister") &&
      !gs__gp_call_is(call, "CudaSharedMemoryRegister"))
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
    gs__gp_call_answer_error(call, bad->kid_status, bad->kid_msg);
  } else {
    swap_buf(&call->resp.b, &ok->resp.b);
    call->resp.n = ok->resp.n;
    call->resp.list_bytes = ok->resp.list_bytes;
    swap_buf(&call->trailers.b, &ok->trailers.b);
    call->trailers.n = ok->trailers.n;
    call->trailers.list_bytes = ok->trailers.list_bytes;
    swap_buf(&call->resp_body, &ok->resp_body);
    gs__gp_call_answer_relay(call);
  }
  for (unsigned i = 0; i < call->n_kids; i++) {
    gs__gp_call_detach(call->kids[i], true);
    gs__gp_call_free(call->kids[i]);
    call->kids[i] = NULL;
  }
}

void gs__gp_kid_done(call_t *kid, int status, const char *msg) {
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
  gs__gp_call_init(kid, f);
  kid->parent = call;
  kid->deadline_ns = call->deadline_ns;
  kid->req.n = call->req.n;
  kid->req.list_bytes = call->req.list_bytes;
  if (gs_buf_add(&kid->req.b, call->req.b.data, call->req.b.len) != GS_OK ||
      gs__gp_bytes_add(f, &kid->body, (const uint8_t *)call->body.data,
                       call->body.len) != 0) {
    gs__gp_call_free(kid);
    return NULL;
  }
  return kid;
}

/* Sends call to every routable worker; false when none is. */
bool gs__gp_fanout_start(call_t *call) {
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
      gs__gp_call_set_error(call, GS__GRPC_INTERNAL, "out of memory");
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
      gs__gp_kid_done(call->kids[i], call->error, call->error_msg);
    else
      gs__gp_call_send(call->kids[i], wk);
  }
  if (--call->kids_pending == 0)
    fanout_finish(call);
  return true;
}
