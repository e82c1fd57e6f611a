/* A worker process as serve started it (supervisor.c, hosted.c): its
 * process handle and its lifeline, a pipe whose write end only the child
 * holds (inherited, never used). The lifeline reads end of file when the
 * kernel closes the child's descriptors, which on a GPU comes 120-140 ms
 * before the child is reaped (its context's teardown runs between): the
 * owner may start the replacement then and leave the old one here,
 * orphaned, to be reaped (and killed if it lingers). Allocated per start,
 * freed when its last handle has closed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

#define ORPHAN_GRACE_MS 5000u /* SIGKILL an orphan still running after this */

static void child_unlink(gs__child_t *c) {
  for (gs__child_t **p = &c->s->orphans; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      c->next = NULL;
      return;
    }
}

static void on_child_handle_closed(uv_handle_t *h) {
  gs__child_t *c = h->data;
  if (--c->handles == 0)
    free(c);
}

static void child_close(uv_handle_t *h, bool *open) {
  if (!*open)
    return;
  *open = false;
  uv_close(h, on_child_handle_closed);
}

static void on_child_exit(uv_process_t *p, int64_t status, int term_signal) {
  gs__child_t *c = p->data;
  c->exited = true;
  child_close((uv_handle_t *)&c->proc, &c->proc_open);
  child_close((uv_handle_t *)&c->life, &c->life_open);
  child_close((uv_handle_t *)&c->timer, &c->timer_open);
  if (c->owner) {
    c->on_exit(c->owner, c, status, term_signal);
    return;
  }
  /* replaced already: its exit is news for the log only */
  gs__serve_log(c->s, "%s (pid %d), replaced already, %s %d", c->label, c->pid,
                term_signal ? "killed by signal" : "exited with status",
                term_signal ? term_signal : (int)status);
  child_unlink(c);
}

static void on_orphan_timer(uv_timer_t *t) {
  gs__child_t *c = t->data;
  gs__serve_log(c->s,
                "%s (pid %d) still runs %u ms after its pipes closed: "
                "killing it",
                c->label, c->pid, ORPHAN_GRACE_MS);
  gs__child_kill(c, SIGKILL);
}

static void on_life_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  gs__child_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->life_buf, sizeof c->life_buf);
}

/* Nothing is ever written: a read is its end (or an error, as good). */
static void on_life_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  gs__child_t *c = st->data;
  (void)b;
  if (nread >= 0)
    return;
  child_close((uv_handle_t *)&c->life, &c->life_open);
  if (c->exited || !c->owner || !c->on_eof(c->owner, c))
    return; /* its exit says the rest */
  c->owner = NULL;
  c->next = c->s->orphans;
  c->s->orphans = c;
  uv_timer_start(&c->timer, on_orphan_timer, ORPHAN_GRACE_MS, 0);
}

int gs__child_spawn(gs__serve_t *s, gs__child_t **out, uv_process_options_t *po,
                    const char *label, void *owner, gs__child_eof_cb on_eof,
                    gs__child_exit_cb on_exit) {
  *out = NULL;
  gs__child_t *c = calloc(1, sizeof *c);
  if (!c)
    return UV_ENOMEM;
  c->s = s;
  c->owner = owner;
  c->on_eof = on_eof;
  c->on_exit = on_exit;
  snprintf(c->label, sizeof c->label, "%s", label);
  uv_timer_init(&s->loop, &c->timer);
  uv_pipe_init(&s->loop, &c->life, 0);
  c->timer.data = c->life.data = c->proc.data = c;
  c->timer_open = c->life_open = true;
  c->handles = 2;
  /* the lifeline is the child's last descriptor (po->stdio has room) */
  po->stdio[po->stdio_count++] =
      (uv_stdio_container_t){.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
                             .data.stream = (uv_stream_t *)&c->life};
  po->exit_cb = on_child_exit;
  int rc = uv_spawn(&s->loop, &c->proc, po);
  c->proc_open = true; /* closed even when spawning failed */
  c->handles++;
  if (rc != 0) {
    child_close((uv_handle_t *)&c->proc, &c->proc_open);
    child_close((uv_handle_t *)&c->life, &c->life_open);
    child_close((uv_handle_t *)&c->timer, &c->timer_open);
    return rc;
  }
  c->pid = c->proc.pid;
  uv_read_start((uv_stream_t *)&c->life, on_life_alloc, on_life_read);
  *out = c;
  return 0;
}

void gs__child_kill(gs__child_t *c, int signum) {
  if (c && !c->exited)
    uv_process_kill(&c->proc, signum);
}

void gs__children_kill_orphans(gs__serve_t *s) {
  for (gs__child_t *c = s->orphans; c; c = c->next)
    gs__child_kill(c, SIGKILL);
}
