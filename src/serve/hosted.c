/* Workers that share one process: under green isolation a GPU's green
 * contexts only run side by side inside one process, so the instances of
 * a group (a GPU) get one `gpuslice worker --instance ID=FIRST:COUNT ...`
 * together. It announces one ready line per instance; an instance that
 * joins or leaves later (any of them, the one it started with included)
 * is added or removed over its control pipe while the others serve on.
 * Its exit, a stuck member or a control write that fails restarts it
 * whole, and every member with it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/serve_int.h"

#define QUICK_EXIT_NS (10ull * 1000000000ull) /* ran less: back off */
#define STOP_GRACE_MS 5000u /* SIGTERM, then SIGKILL after this */
#define MAX_MEMBERS 64

static void host_start(gs__host_t *h);
static void host_restart(gs__host_t *h, const char *why);

static void host_unref(gs__host_t *h) {
  if (--h->refs == 0)
    free(h);
}

static void on_host_handle_closed(uv_handle_t *hd) {
  host_unref(hd->data);
}

static void host_close(uv_handle_t *hd, bool *open) {
  if (!*open)
    return;
  *open = false;
  uv_close(hd, on_host_handle_closed);
}

/* Members, oldest first (the table is newest first); returns how many. */
static size_t members(gs__host_t *h, gs__wk_t **out, size_t max) {
  size_t n = 0;
  for (gs__wk_t *wk = h->s->workers; wk; wk = wk->next)
    if (wk->host == h && n < max)
      out[n++] = wk;
  for (size_t i = 0; i < n / 2; i++) {
    gs__wk_t *t = out[i];
    out[i] = out[n - 1 - i];
    out[n - 1 - i] = t;
  }
  return n;
}

static void host_unlink(gs__host_t *h) {
  for (gs__host_t **p = &h->s->hosts; *p; p = &(*p)->next)
    if (*p == h) {
      *p = h->next;
      break;
    }
  h->state = GS__PROC_GONE;
  if (!uv_is_closing((uv_handle_t *)&h->timer))
    uv_close((uv_handle_t *)&h->timer, on_host_handle_closed);
  host_unref(h); /* the list's */
}

static void set_members(gs__host_t *h, gs__proc_state_t state) {
  gs__wk_t *m[MAX_MEMBERS];
  size_t n = members(h, m, MAX_MEMBERS);
  for (size_t i = 0; i < n; i++) {
    m[i]->state = state;
    if (state != GS__PROC_RUNNING)
      m[i]->healthy = false;
  }
  gs__serve_publish(h->s);
}

static void on_host_timer(uv_timer_t *t) {
  gs__host_t *h = t->data;
  if (h->state == GS__PROC_WAITING && !h->s->draining)
    host_start(h);
  else if (h->state == GS__PROC_STOPPING)
    gs__child_kill(h->child, SIGKILL); /* the stop grace ran out */
}

static void host_stop(gs__host_t *h) {
  h->state = GS__PROC_STOPPING;
  set_members(h, GS__PROC_STOPPING);
  gs__child_kill(h->child, SIGTERM);
  uv_timer_start(&h->timer, on_host_timer, STOP_GRACE_MS, 0);
}

/* Restarts the running process with its members (at once; several
 * reasons in a row coalesce into one start). */
static void host_restart(gs__host_t *h, const char *why) {
  h->changed = true;
  if (h->state == GS__PROC_STOPPING)
    return;
  gs__serve_log(h->s,
                "workers of %s (pid %d) restart with the set of "
                "instances: %s",
                h->group, h->pid, why);
  host_stop(h);
}

/* ---- the control pipe -------------------------------------------------- */

/* Running and reachable: members join and leave it without a restart. */
static bool host_live(const gs__host_t *h) {
  return h->child && h->ctl_open && h->state != GS__PROC_STOPPING &&
         !h->changed && !h->s->draining;
}

typedef struct ctl_write_s {
  uv_write_t req; /* first: the callback's pointer is the whole */
  gs__host_t *h;
  char line[160];
} ctl_write_t;

static void on_ctl_written(uv_write_t *req, int status) {
  ctl_write_t *cw = (ctl_write_t *)req;
  gs__host_t *h = cw->h;
  char why[300];
  /* ECANCELED: the pipe closed as the process exited (restarted anyway) */
  if (status < 0 && status != UV_ECANCELED && h->child) {
    snprintf(why, sizeof why, "cannot send it \"%.*s\": %s",
             (int)strcspn(cw->line, "\n"), cw->line, uv_strerror(status));
    host_restart(h, why);
  }
  free(cw);
  host_unref(h);
}

/* Sends one control line; a failure restarts the process (with wk). */
static void host_tell(gs__host_t *h, const char *line) {
  ctl_write_t *cw = calloc(1, sizeof *cw);
  char why[300];
  int rc = cw ? 0 : UV_ENOMEM;
  if (cw) {
    cw->h = h;
    snprintf(cw->line, sizeof cw->line, "%s", line);
    uv_buf_t buf = uv_buf_init(cw->line, (unsigned)strlen(cw->line));
    rc = uv_write(&cw->req, (uv_stream_t *)&h->ctl_pipe, &buf, 1,
                  on_ctl_written);
  }
  if (rc == 0) {
    h->refs++;
    return;
  }
  free(cw);
  snprintf(why, sizeof why, "cannot send it \"%.*s\": %s",
           (int)strcspn(line, "\n"), line, uv_strerror(rc));
  host_restart(h, why);
}

/* The process counted in wk's instance (on) or no longer: the backend
 * sees the instance busy and its memory held while the process serves it
 * (`run --group` counts it in none). false (why set) when on failed. */
static bool member_hold(gs__host_t *h, gs__wk_t *wk, bool on, char *why,
                        size_t size) {
  gs_error_t err = {0};
  if (!h->s->opt.member_hold || !h->child ||
      h->s->opt.member_hold(h->s->opt.ctx, &wk->inst, h->pid, on, &err) ==
          GS_OK)
    return true;
  snprintf(why, size, "cannot count the workers of %s (pid %d) in it: %.300s",
           h->group, h->pid, err.msg);
  if (!on)
    gs__serve_log(h->s, "instance %s: %s", wk->inst.id, why);
  return !on;
}

static void member_failed(gs__host_t *h, const char *id, const char *why);

/* The running process takes wk: it loads wk's models on wk's SMs and
 * answers "ready id=..." (or "failed id=..."). */
static void member_add(gs__wk_t *wk) {
  gs__host_t *h = wk->host;
  char line[160];
  wk->state = GS__PROC_STARTING;
  wk->ready_ns = 0;
  wk->healthy = wk->healthy_this_start = false;
  wk->check_failures = 0;
  wk->started_ns = gs__serve_now_ns();
  snprintf(wk->log_path, sizeof wk->log_path, "%s", h->log_path);
  gs__serve_publish(h->s);
  gs__serve_log(h->s, "instance %s joins the workers of %s (pid %d)",
                wk->inst.id, h->group, h->pid);
  char why[400];
  if (!member_hold(h, wk, true, why, sizeof why)) {
    member_failed(h, wk->inst.id, why);
    return;
  }
  snprintf(line, sizeof line, "add %s %u %u %u\n", wk->inst.id,
           wk->inst.sm_first, wk->inst.sm_count, wk->inst.rate_limit);
  host_tell(h, line);
}

/* A failed add is tried again with backoff; the process restarts it
 * anyway when it restarts. */
static void on_member_retry(uv_timer_t *t) {
  gs__wk_t *wk = t->data;
  if (wk->host && wk->state == GS__PROC_WAITING && host_live(wk->host))
    member_add(wk);
}

static gs__wk_t *member_named(gs__host_t *h, const char *id) {
  for (gs__wk_t *wk = h->s->workers; wk; wk = wk->next)
    if (wk->host == h && strcmp(wk->inst.id, id) == 0)
      return wk;
  return NULL;
}

/* "failed id=ID WHY": the process could not take it; the others serve on. */
static void member_failed(gs__host_t *h, const char *id, const char *why) {
  gs__wk_t *wk = member_named(h, id);
  if (!wk || wk->state != GS__PROC_STARTING) {
    gs__serve_log(h->s, "workers of %s (pid %d): %s: %s", h->group, h->pid, id,
                  why);
    return;
  }
  char ignored[8];
  member_hold(h, wk, false, ignored, sizeof ignored);
  wk->quick_exits++;
  unsigned delay = gs__restart_delay_ms(wk->quick_exits);
  gs__serve_log(h->s,
                "instance %s could not join the workers of %s (pid %d): %s; "
                "trying again in %u ms",
                id, h->group, h->pid, why, delay);
  wk->state = GS__PROC_WAITING;
  gs__serve_publish(h->s);
  uv_timer_start(&wk->restart_timer, on_member_retry, delay, 0);
}

/* The set changed while nothing runs, or the last member left. */
static void host_changed(gs__host_t *h) {
  gs__wk_t *m[1];
  bool any = members(h, m, 1) > 0;
  if (h->child) {
    h->changed = true;
    if (h->state == GS__PROC_STOPPING)
      return;
    if (any && !h->s->draining)
      gs__serve_log(h->s,
                    "workers of %s (pid %d) restart with the new set of "
                    "instances",
                    h->group, h->pid);
    host_stop(h);
  } else if (!any) {
    host_unlink(h);
  } else {
    /* not running: a process that keeps dying keeps its backoff (0 when
     * it has not been dying) */
    h->state = GS__PROC_WAITING;
    uv_timer_start(&h->timer, on_host_timer,
                   gs__restart_delay_ms(h->quick_exits), 0);
  }
}

/* Its members' readiness: some ready (any), every one (all). */
static void members_ready(gs__host_t *h, bool *any, bool *all) {
  gs__wk_t *m[MAX_MEMBERS];
  size_t n = members(h, m, MAX_MEMBERS);
  *any = false;
  *all = true;
  for (size_t i = 0; i < n; i++) {
    *any = *any || m[i]->ready_ns != 0;
    *all = *all && m[i]->ready_ns != 0;
  }
}

/* Its process is gone (reaped, or its pipes closed first), every member
 * with it: restarted (at once when it stopped to change its set) unless
 * the serve drains. */
static void host_gone(gs__host_t *h, bool intended) {
  gs__serve_t *s = h->s;
  gs__wk_t *m[MAX_MEMBERS];
  size_t n = members(h, m, MAX_MEMBERS);
  h->child = NULL;
  host_close((uv_handle_t *)&h->ready_pipe, &h->pipe_open);
  host_close((uv_handle_t *)&h->ctl_pipe, &h->ctl_open);
  h->n_removing = 0;
  uv_timer_stop(&h->timer);
  for (size_t i = 0; i < n; i++) {
    gs__wk_gone(m[i]);
    m[i]->state = GS__PROC_WAITING;
    if (!intended) {
      m[i]->restarts++;
      s->restarts++;
    }
  }
  if (n == 0 || s->draining) {
    for (size_t i = 0; i < n; i++) {
      m[i]->host = NULL;
      gs__wk_unlink(m[i]);
    }
    host_unlink(h);
    return;
  }
  if (intended && h->changed)
    h->quick_exits = 0;
  else
    h->quick_exits = gs__serve_now_ns() - h->started_ns < QUICK_EXIT_NS
                         ? h->quick_exits + 1
                         : 0;
  h->changed = false;
  h->state = GS__PROC_WAITING;
  uv_timer_start(&h->timer, on_host_timer, gs__restart_delay_ms(h->quick_exits),
                 0);
}

static void on_host_exit(void *owner, gs__child_t *c, int64_t status,
                         int term_signal) {
  gs__host_t *h = owner;
  gs__serve_t *s = h->s;
  bool intended = h->state == GS__PROC_STOPPING, any_ready, all_ready;
  (void)c;
  members_ready(h, &any_ready, &all_ready);
  if (!intended)
    gs__serve_log(s, "workers of %s (pid %d) %s %d", h->group, h->pid,
                  term_signal ? "killed by signal" : "exited with status",
                  term_signal ? term_signal : (int)status);
  if (!s->started && !all_ready && !intended && s->start_rc == GS_OK)
    s->start_rc = gs_error_set(
        &s->start_err, GS_ESYSTEM,
        "the workers of %s exited (%s %d) before they were ready; their "
        "log is %s",
        h->group, term_signal ? "signal" : "status",
        term_signal ? term_signal : (int)status, h->log_path);
  host_gone(h, intended);
  host_unref(h); /* the child's */
}

/* Its pipes closed before it was reaped: a process that serves (some
 * member ready; all of them before the serve's start, whose failure its
 * exit reports) and was not asked to stop is dying; the members' new
 * process starts now (see on_worker_eof in supervisor.c). */
static bool on_host_eof(void *owner, gs__child_t *c) {
  gs__host_t *h = owner;
  bool any_ready, all_ready;
  members_ready(h, &any_ready, &all_ready);
  if (h->state == GS__PROC_STOPPING || h->s->draining || !any_ready ||
      (!h->s->started && !all_ready))
    return false;
  gs__serve_log(h->s,
                "workers of %s (pid %d): its pipes closed; starting its "
                "replacement before it is reaped",
                h->group, c->pid);
  /* the instances are the new process's to hold: the old one, not yet
   * reaped, would still count in them */
  gs__wk_t *m[MAX_MEMBERS];
  size_t n = members(h, m, MAX_MEMBERS);
  char ignored[8];
  for (size_t i = 0; i < n; i++)
    if (m[i]->state == GS__PROC_STARTING || m[i]->state == GS__PROC_RUNNING)
      member_hold(h, m[i], false, ignored, sizeof ignored);
  host_gone(h, false);
  host_unref(h); /* the child's */
  return true;
}

static void on_host_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
  gs__host_t *h = hd->data;
  (void)suggested;
  *buf = uv_buf_init(h->ready_buf + h->ready_len,
                     (unsigned)(sizeof h->ready_buf - 1 - h->ready_len));
}

static bool removing_has(const gs__host_t *h, const char *id) {
  for (unsigned i = 0; i < h->n_removing; i++)
    if (strcmp(h->removing[i], id) == 0)
      return true;
  return false;
}

static void removing_done(gs__host_t *h, const char *id) {
  for (unsigned i = 0; i < h->n_removing; i++)
    if (strcmp(h->removing[i], id) == 0) {
      memmove(h->removing[i], h->removing[i + 1],
              (h->n_removing - i - 1) * sizeof h->removing[0]);
      h->n_removing--;
      return;
    }
}

/* One complete line from the process: "ready id=ID http=P grpc=G",
 * "failed id=ID WHY" or "removed id=ID". */
static void take_line(gs__host_t *h, const char *line) {
  char id[64];
  unsigned http = 0, grpc = 0;
  int used = 0;
  if (sscanf(line, "removed id=%63s", id) == 1) {
    removing_done(h, id);
    gs__serve_log(h->s, "instance %s left the workers of %s (pid %d)", id,
                  h->group, h->pid);
    return;
  }
  if (sscanf(line, "failed id=%63s %n", id, &used) == 1 && used > 0 &&
      !removing_has(h, id)) {
    member_failed(h, id, line + used);
    return;
  }
  if (sscanf(line, "ready id=%63s http=%u grpc=%u", id, &http, &grpc) < 2 ||
      http == 0 || http > 65535 || grpc > 65535 || removing_has(h, id))
    return;
  gs__wk_t *wk = member_named(h, id);
  if (wk && wk->state == GS__PROC_STARTING) {
    wk->quick_exits = 0;
    gs__wk_ready(wk, http, grpc);
  }
}

static void on_host_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  gs__host_t *h = st->data;
  (void)b;
  if (nread > 0)
    h->ready_len += (size_t)nread;
  h->ready_buf[h->ready_len] = '\0';
  char *nl;
  while ((nl = strchr(h->ready_buf, '\n')) != NULL) {
    *nl = '\0';
    take_line(h, h->ready_buf);
    size_t used = (size_t)(nl + 1 - h->ready_buf);
    memmove(h->ready_buf, nl + 1, h->ready_len - used + 1);
    h->ready_len -= used;
  }
  if (nread < 0 || h->ready_len + 1 >= sizeof h->ready_buf)
    host_close((uv_handle_t *)&h->ready_pipe, &h->pipe_open);
}

static int host_spawn(gs__host_t *h, char **argv, int log_fd) {
  gs__serve_t *s = h->s;
  uv_pipe_init(&s->loop, &h->ready_pipe, 0);
  h->ready_pipe.data = h;
  h->pipe_open = true;
  h->refs++;
  uv_pipe_init(&s->loop, &h->ctl_pipe, 0);
  h->ctl_pipe.data = h;
  h->ctl_open = true;
  h->refs++;
  /* fd 3: its lines to us; fd 4: our control lines to it */
  uv_stdio_container_t stdio[6] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = log_fd},
      {.flags = UV_INHERIT_FD, .data.fd = log_fd},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
       .data.stream = (uv_stream_t *)&h->ready_pipe},
      {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE,
       .data.stream = (uv_stream_t *)&h->ctl_pipe}};
  /* its own session, as a worker's: see spawn() in supervisor.c */
  uv_process_options_t po = {.file = argv[0],
                             .args = argv,
                             .flags = UV_PROCESS_DETACHED,
                             .stdio_count = 5,
                             .stdio = stdio};
  char label[96];
  snprintf(label, sizeof label, "workers of %s", h->group);
  int rc =
      gs__child_spawn(s, &h->child, &po, label, h, on_host_eof, on_host_exit);
  if (rc != 0) {
    host_close((uv_handle_t *)&h->ready_pipe, &h->pipe_open);
    host_close((uv_handle_t *)&h->ctl_pipe, &h->ctl_open);
    return rc;
  }
  h->refs++; /* the child's */
  h->pid = h->child->pid;
  uv_read_start((uv_stream_t *)&h->ready_pipe, on_host_alloc, on_host_read);
  return 0;
}

/* The argv of the group's process and its log; spawns it. */
static int host_exec(gs__host_t *h, gs__wk_t **m, size_t n, gs_error_t *err) {
  gs__serve_t *s = h->s;
  gs_serve_instance_t insts[MAX_MEMBERS];
  char *argv[GS_SERVE_MAX_ARGS];
  char buf[8192];
  int log_fd = -1;
  for (size_t i = 0; i < n; i++)
    insts[i] = m[i]->inst;
  int rc = s->opt.group_argv(s->opt.ctx, h->group, insts, n, argv, buf,
                             sizeof buf, err);
  if (rc == GS_OK &&
      (log_fd = gs__open_log(s, h->group, h->log_path, sizeof h->log_path)) < 0)
    rc = gs_error_sys(err, errno, "cannot open the log of %s in %s", h->group,
                      s->opt.log_dir);
  if (rc == GS_OK && (rc = host_spawn(h, argv, log_fd)) != 0)
    rc = gs_error_set(err, GS_ESYSTEM,
                      "cannot start the workers of %s (%s): "
                      "%s",
                      h->group, argv[0], uv_strerror(rc));
  if (log_fd >= 0)
    close(log_fd);
  return rc;
}

static void host_start(gs__host_t *h) {
  gs__serve_t *s = h->s;
  gs__wk_t *m[MAX_MEMBERS];
  size_t n = members(h, m, MAX_MEMBERS);
  gs_error_t err;
  if (n == 0) {
    host_unlink(h);
    return;
  }
  h->ready_len = 0;
  h->started_ns = gs__serve_now_ns();
  h->state = GS__PROC_STARTING;
  for (size_t i = 0; i < n; i++) {
    m[i]->ready_ns = 0;
    m[i]->check_failures = 0;
    m[i]->healthy_this_start = false;
    m[i]->started_ns = h->started_ns;
    uv_timer_stop(&m[i]->restart_timer); /* a failed add's retry */
  }
  set_members(h, GS__PROC_STARTING);
  int rc = host_exec(h, m, n, &err);
  if (rc == GS_OK) {
    char why[400];
    for (size_t i = 0; i < n; i++) {
      snprintf(m[i]->log_path, sizeof m[i]->log_path, "%s", h->log_path);
      if (!member_hold(h, m[i], true, why, sizeof why)) /* it serves anyway */
        gs__serve_log(s, "instance %s: %s", m[i]->inst.id, why);
    }
    gs__serve_log(s, "workers of %s starting (pid %d, %zu instances)", h->group,
                  h->pid, n);
    return;
  }
  gs__serve_log(s, "%s", err.msg);
  if (!s->started && s->start_rc == GS_OK) {
    s->start_rc = rc;
    s->start_err = err;
  }
  h->quick_exits++;
  h->state = GS__PROC_WAITING;
  set_members(h, GS__PROC_WAITING);
  uv_timer_start(&h->timer, on_host_timer, gs__restart_delay_ms(h->quick_exits),
                 0);
}

static gs__host_t *host_find_or_add(gs__serve_t *s, const char *group) {
  for (gs__host_t *h = s->hosts; h; h = h->next)
    if (strcmp(h->group, group) == 0)
      return h;
  gs__host_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->s = s;
  snprintf(h->group, sizeof h->group, "%s", group);
  h->refs = 2; /* the list's and the timer's */
  h->state = GS__PROC_WAITING;
  uv_timer_init(&s->loop, &h->timer);
  h->timer.data = h;
  h->next = s->hosts;
  s->hosts = h;
  return h;
}

int gs__host_join(gs__wk_t *wk, gs_error_t *err) {
  gs__serve_t *s = wk->s;
  int rc = GS_OK;
  if (!s->opt.group_argv)
    rc = gs_error_set(err, GS_EINVAL,
                      "instance %s shares a process with "
                      "its group %s, and this serve cannot start one",
                      wk->inst.id, wk->inst.group);
  else if (s->opt.workers_per_instance > 1)
    rc = gs_error_set(err, GS_EINVAL,
                      "instance %s runs under green isolation: its GPU's "
                      "instances share one worker process, one worker "
                      "each (--workers-per-instance 1; --threads gives "
                      "each more inference threads)",
                      wk->inst.id);
  gs__host_t *h = rc == GS_OK ? host_find_or_add(s, wk->inst.group) : NULL;
  if (rc == GS_OK && !h)
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  if (rc != GS_OK) {
    gs__wk_unlink(wk);
    return rc;
  }
  wk->host = h;
  wk->state = GS__PROC_WAITING;
  if (host_live(h))
    member_add(wk); /* the others serve on */
  else
    host_changed(h);
  return GS_OK;
}

void gs__host_leave(gs__wk_t *wk) {
  gs__host_t *h = wk->host;
  char line[160];
  bool hosted = wk->state == GS__PROC_STARTING || wk->state == GS__PROC_RUNNING;
  /* released now, not at its "removed": whoever destroys the instance
   * next (apply) need not wait for the drain */
  char ignored[8];
  if (hosted)
    member_hold(h, wk, false, ignored, sizeof ignored);
  gs__wk_gone(wk);
  uv_timer_stop(&wk->restart_timer);
  wk->host = NULL;
  gs__wk_t *m[1];
  /* any member, the first included: the process is counted in none
   * (group_argv's run --group) */
  bool live = host_live(h) && members(h, m, 1) > 0;
  if (live) {
    /* it drains wk's requests, closes its ports, frees its sessions */
    if (hosted && h->n_removing == sizeof h->removing / sizeof h->removing[0])
      host_restart(h, "too many removals in flight");
    else if (hosted) {
      snprintf(h->removing[h->n_removing++], sizeof h->removing[0], "%s",
               wk->inst.id);
      snprintf(line, sizeof line, "remove %s\n", wk->inst.id);
      host_tell(h, line);
    }
    return;
  }
  host_changed(h);
}

void gs__host_kill(gs__host_t *h) {
  gs__child_kill(h->child, SIGKILL);
}
