/* The supervisor: one worker process per instance (and per --workers-per-
 * instance), started through the caller's command (`gpuslice run -i ...
 * -- gpuslice worker ...`), restarted with backoff when it exits or stops
 * answering health checks, and the bookkeeping the router reads: health,
 * passive ejection, in-flight counts and recent latencies. Workers of a
 * group (green isolation) live in one shared process instead: hosted.c. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "serve/serve_int.h"

#define QUICK_EXIT_NS (10ull * 1000000000ull) /* ran less: back off */
#define MAX_BACKOFF_MS 5000u
#define STOP_GRACE_MS 5000u /* SIGTERM, then SIGKILL after this */

static void on_handle_closed(uv_handle_t *h);

/* Out of the table: its restart timer goes too (it was the table's). */
void gs__wk_unlink(gs__wk_t *wk) {
  gs__serve_t *s = wk->s;
  if (!uv_is_closing((uv_handle_t *)&wk->restart_timer))
    uv_close((uv_handle_t *)&wk->restart_timer, on_handle_closed);
  for (gs__wk_t **p = &s->workers; *p; p = &(*p)->next)
    if (*p == wk) {
      *p = wk->next;
      wk->next = NULL;
      wk->state = GS__PROC_GONE;
      gs__wk_unref(wk); /* the table's reference */
      return;
    }
}

void gs__wk_unref(gs__wk_t *wk) {
  /* The last reference may be a router loop's: a worker with no handle
   * left (they hold references too) is plain memory, freed anywhere. */
  if (atomic_fetch_sub(&wk->refs, 1) == 1)
    free(wk);
}

static void on_handle_closed(uv_handle_t *h) {
  gs__wk_unref(h->data);
}

/* Closes one of wk's handles (h->data is wk); its reference goes with it. */
static void close_handle(uv_handle_t *h, bool *open) {
  if (!*open)
    return;
  *open = false;
  uv_close(h, on_handle_closed);
}

bool gs__wk_routable(const gs__wk_t *wk, uint64_t now_ns) {
  return wk->state == GS__PROC_RUNNING && wk->healthy && !wk->removing &&
         now_ns >= wk->ejected_until_ns;
}

void gs__wk_count(gs__wk_t *wk, bool ok) {
  wk->requests++;
  if (!ok)
    wk->failures++;
}

void gs__wk_observe(gs__wk_t *wk, bool ok, uint64_t latency_ns) {
  if (!ok)
    return;
  wk->consecutive_failures = 0;
  uint64_t us = latency_ns / 1000;
  wk->lat_us[wk->lat_next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
  wk->lat_next = (wk->lat_next + 1) % GS__LAT_RING;
  if (wk->lat_n < GS__LAT_RING)
    wk->lat_n++;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

unsigned gs__wk_p99_us(const gs__wk_t *wk) {
  uint32_t sorted[GS__LAT_RING];
  if (wk->lat_n == 0)
    return 0;
  memcpy(sorted, wk->lat_us, wk->lat_n * sizeof sorted[0]);
  qsort(sorted, wk->lat_n, sizeof sorted[0], cmp_u32);
  size_t rank = (wk->lat_n * 99 + 99) / 100; /* nearest rank */
  return sorted[rank - 1];
}

void gs__wk_passive_failure(gs__wk_t *wk) {
  gs__serve_t *s = wk->s;
  if (wk->state != GS__PROC_RUNNING ||
      ++wk->consecutive_failures < s->opt.eject_failures)
    return;
  wk->consecutive_failures = 0;
  wk->ejections++;
  s->ejections++;
  wk->ejected_until_ns =
      gs__serve_now_ns() + (uint64_t)s->opt.eject_ms * 1000000u;
  gs__serve_log(s, "worker %s ejected for %u ms after %u failed requests",
                wk->label, s->opt.eject_ms, s->opt.eject_failures);
  gs__serve_publish(s);
}

/* ---- processes --------------------------------------------------------- */

static void on_restart_timer(uv_timer_t *t) {
  gs__wk_t *wk = t->data;
  if (wk->state == GS__PROC_WAITING && !wk->removing && !wk->s->draining)
    gs__wk_start(wk);
  else if (wk->state == GS__PROC_STOPPING)
    gs__child_kill(wk->child, SIGKILL); /* the stop grace ran out */
}

unsigned gs__restart_delay_ms(unsigned quick_exits) {
  if (quick_exits == 0)
    return 0;
  unsigned delay = 100u << (quick_exits > 6 ? 6 : quick_exits - 1);
  return delay > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : delay;
}

static void schedule_restart(gs__wk_t *wk) {
  wk->state = GS__PROC_WAITING;
  uv_timer_start(&wk->restart_timer, on_restart_timer,
                 gs__restart_delay_ms(wk->quick_exits), 0);
}

void gs__wk_gone(gs__wk_t *wk) {
  wk->healthy = false;
  wk->healthy_since_ns = 0;
  wk->http_port = wk->grpc_port = 0;
  gs__serve_publish(wk->s); /* the router loops drop its connections */
  gs__grpc_proxy_worker_gone(wk);
  close_handle((uv_handle_t *)&wk->ready_pipe, &wk->pipe_open);
}

/* Its process died unasked (exited, or its pipes closed): counted, and
 * restarted with the backoff. */
static void worker_restart(gs__wk_t *wk) {
  gs__serve_t *s = wk->s;
  uint64_t now = gs__serve_now_ns();
  wk->quick_exits =
      now - wk->started_ns < QUICK_EXIT_NS ? wk->quick_exits + 1 : 0;
  wk->restarts++;
  s->restarts++;
  schedule_restart(wk);
}

static void on_worker_exit(void *owner, gs__child_t *c, int64_t status,
                           int term_signal) {
  gs__wk_t *wk = owner;
  gs__serve_t *s = wk->s;
  bool was_ready = wk->ready_ns != 0;
  (void)c;
  wk->child = NULL;
  gs__wk_gone(wk);
  if (term_signal)
    gs__serve_log(s, "worker %s (pid %d) killed by signal %d", wk->label,
                  wk->pid, term_signal);
  else if (wk->state != GS__PROC_STOPPING)
    gs__serve_log(s, "worker %s (pid %d) exited with status %d", wk->label,
                  wk->pid, (int)status);
  if (!s->started && !was_ready && !wk->removing && s->start_rc == GS_OK)
    s->start_rc = gs_error_set(
        &s->start_err, GS_ESYSTEM,
        "worker %s exited (%s %d) before it was ready; its log is %s",
        wk->label, term_signal ? "signal" : "status",
        term_signal ? term_signal : (int)status, wk->log_path);
  uv_timer_stop(&wk->restart_timer);
  if (wk->removing || s->draining)
    gs__wk_unlink(wk);
  else
    worker_restart(wk);
  gs__wk_unref(wk); /* the child's */
}

/* Its pipes closed before it was reaped: a worker that was serving and was
 * not asked to stop is dying (a GPU context's teardown can take it 100 ms
 * and more to be reaped): its replacement starts now. One not yet ready
 * waits for its exit, as a failed start always has. */
static bool on_worker_eof(void *owner, gs__child_t *c) {
  gs__wk_t *wk = owner;
  if (wk->state != GS__PROC_RUNNING || wk->removing || wk->s->draining)
    return false;
  gs__serve_log(wk->s,
                "worker %s (pid %d): its pipes closed; starting its "
                "replacement before it is reaped",
                wk->label, c->pid);
  wk->child = NULL;
  gs__wk_gone(wk);
  worker_restart(wk);
  gs__wk_unref(wk); /* the child's */
  return true;
}

static void on_ready_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  gs__wk_t *wk = h->data;
  (void)suggested;
  *buf = uv_buf_init(wk->ready_buf + wk->ready_len,
                     (unsigned)(sizeof wk->ready_buf - 1 - wk->ready_len));
}

void gs__wk_ready(gs__wk_t *wk, unsigned http, unsigned grpc) {
  wk->http_port = http;
  wk->grpc_port = grpc;
  wk->state = GS__PROC_RUNNING;
  wk->ready_ns = gs__serve_now_ns();
  wk->unhealthy_since_ns = wk->ready_ns;
  wk->ejected_until_ns = 0;
  wk->consecutive_failures = 0;
  close_handle((uv_handle_t *)&wk->ready_pipe, &wk->pipe_open);
  gs__health_tick(wk->s); /* check it now, not at the next tick */
}

/* The worker says "ready http=P grpc=G" on fd 3 once it serves. */
static void on_ready_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  gs__wk_t *wk = st->data;
  (void)b;
  if (nread > 0)
    wk->ready_len += (size_t)nread;
  wk->ready_buf[wk->ready_len] = '\0';
  unsigned http = 0, grpc = 0;
  if (strchr(wk->ready_buf, '\n') &&
      sscanf(wk->ready_buf, "ready http=%u grpc=%u", &http, &grpc) >= 1 &&
      http > 0 && http < 65536 && grpc < 65536 &&
      wk->state == GS__PROC_STARTING) {
    gs__wk_ready(wk, http, grpc);
    return;
  }
  if (nread < 0 || wk->ready_len + 1 >= sizeof wk->ready_buf)
    close_handle((uv_handle_t *)&wk->ready_pipe, &wk->pipe_open);
}

int gs__open_log(gs__serve_t *s, const char *name, char *path, size_t size) {
  size_t dir_len = strlen(s->opt.log_dir);
  snprintf(path, size, "%s/worker-%s.log", s->opt.log_dir, name);
  for (char *p = path + dir_len + 1; *p; p++)
    if (*p == '/' || *p == ':')
      *p = '-'; /* "0:1/2" names a file, not a directory */
  return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static int spawn(gs__wk_t *wk, char **argv, int log_fd) {
  gs__serve_t *s = wk->s;
  uv_pipe_init(&s->loop, &wk->ready_pipe, 0);
  wk->ready_pipe.data = wk;
  wk->pipe_open = true;
  wk->refs++;
  uv_stdio_container_t stdio[5] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = log_fd},
      {.flags = UV_INHERIT_FD, .data.fd = log_fd},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE,
       .data.stream = (uv_stream_t *)&wk->ready_pipe}};
  /* Its own session: a terminal's Ctrl-C goes to the serve, which drains
   * and then stops the workers, not to the workers mid-request. They still
   * end with the serve (the worker sets PR_SET_PDEATHSIG). */
  uv_process_options_t po = {.file = argv[0],
                             .args = argv,
                             .flags = UV_PROCESS_DETACHED,
                             .stdio_count = 4,
                             .stdio = stdio};
  char label[96];
  snprintf(label, sizeof label, "worker %s", wk->label);
  int rc = gs__child_spawn(s, &wk->child, &po, label, wk, on_worker_eof,
                           on_worker_exit);
  if (rc != 0) {
    close_handle((uv_handle_t *)&wk->ready_pipe, &wk->pipe_open);
    return rc;
  }
  wk->refs++; /* the child's */
  wk->pid = wk->child->pid;
  uv_read_start((uv_stream_t *)&wk->ready_pipe, on_ready_alloc, on_ready_read);
  return 0;
}

void gs__wk_start(gs__wk_t *wk) {
  gs__serve_t *s = wk->s;
  char *argv[GS_SERVE_MAX_ARGS];
  char buf[8192];
  gs_error_t err;
  int log_fd = -1;
  wk->ready_len = 0;
  wk->ready_ns = 0;
  wk->healthy = wk->healthy_this_start = false;
  wk->check_failures = 0;
  wk->started_ns = gs__serve_now_ns();
  wk->state = GS__PROC_STARTING;
  int rc = s->opt.worker_argv(s->opt.ctx, &wk->inst, wk->n, argv, buf,
                              sizeof buf, &err);
  if (rc == GS_OK && (log_fd = gs__open_log(s, wk->label, wk->log_path,
                                            sizeof wk->log_path)) < 0)
    rc = gs_error_sys(&err, errno, "cannot open the log of worker %s in %s",
                      wk->label, s->opt.log_dir);
  if (rc == GS_OK && (rc = spawn(wk, argv, log_fd)) != 0)
    rc = gs_error_set(&err, GS_ESYSTEM, "cannot start worker %s (%s): %s",
                      wk->label, argv[0], uv_strerror(rc));
  if (log_fd >= 0)
    close(log_fd);
  if (rc == GS_OK) {
    gs__serve_log(s, "worker %s starting (pid %d)", wk->label, wk->pid);
    return;
  }
  gs__serve_log(s, "%s", err.msg);
  if (!s->started && s->start_rc == GS_OK) {
    s->start_rc = rc;
    s->start_err = err;
  }
  wk->quick_exits++;
  schedule_restart(wk);
}

void gs__wk_stop(gs__wk_t *wk, int signum) {
  if (wk->host) { /* its process restarts without it: it leaves at once */
    gs__host_leave(wk);
    gs__wk_unlink(wk);
    return;
  }
  if (wk->state == GS__PROC_WAITING) {
    uv_timer_stop(&wk->restart_timer);
    gs__wk_unlink(wk);
    return;
  }
  if (!wk->child)
    return;
  wk->state = GS__PROC_STOPPING;
  wk->healthy = false;
  gs__serve_publish(wk->s);
  gs__child_kill(wk->child, signum);
  uv_timer_start(&wk->restart_timer, on_restart_timer, STOP_GRACE_MS, 0);
}

int gs__wk_add(gs__serve_t *s, const gs_serve_instance_t *inst, unsigned n,
               gs_error_t *err) {
  gs__wk_t *wk = calloc(1, sizeof *wk);
  if (!wk)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  wk->s = s;
  wk->inst = *inst;
  wk->n = n;
  if (s->opt.workers_per_instance > 1)
    snprintf(wk->label, sizeof wk->label, "%s/%u", inst->id, n);
  else
    snprintf(wk->label, sizeof wk->label, "%s", inst->id);
  wk->refs = 2; /* the table's and the restart timer's */
  uv_timer_init(&s->loop, &wk->restart_timer);
  wk->restart_timer.data = wk;
  wk->next = s->workers;
  s->workers = wk;
  if (inst->group[0])
    return gs__host_join(wk, err);
  gs__wk_start(wk);
  return GS_OK;
}

void gs__wk_remove(gs__wk_t *wk) {
  wk->removing = true;
  gs__wk_stop(wk, SIGTERM);
}

/* ---- health checks ---------------------------------------------------- */

/* A (re)started process's first healthy check says how long its start
 * took; a worker back in rotation in the same process says only that. */
static void log_healthy(gs__wk_t *wk) {
  if (wk->healthy_this_start)
    gs__serve_log(wk->s, "worker %s is healthy again", wk->label);
  else
    gs__serve_log(
        wk->s, "worker %s is healthy, %llu ms after its start", wk->label,
        (unsigned long long)((gs__serve_now_ns() - wk->started_ns) / 1000000u));
}

static void check_done(gs__upreq_t *r, gs__up_result_t res) {
  gs__wk_t *wk = r->data;
  gs__serve_t *s = wk->s;
  bool ok = res == GS__UP_OK && r->resp.status == 200;
  gs__upreq_release(r);
  free(r);
  wk->check = NULL;
  bool was_healthy = wk->healthy;
  if (wk->state == GS__PROC_RUNNING && ok) {
    if (!wk->healthy && wk->restarts + wk->ejections > 0 && s->started)
      log_healthy(wk);
    if (!wk->healthy)
      wk->healthy_since_ns = gs__serve_now_ns();
    wk->healthy_this_start = true;
    wk->healthy = true;
    wk->check_failures = 0;
    wk->unhealthy_since_ns = 0;
  } else if (wk->state == GS__PROC_RUNNING &&
             ++wk->check_failures >= s->opt.unhealthy_threshold &&
             wk->healthy) {
    wk->healthy = false;
    wk->healthy_since_ns = 0;
    wk->unhealthy_since_ns = gs__serve_now_ns();
    gs__serve_log(s, "worker %s failed %u health checks: out of rotation",
                  wk->label, wk->check_failures);
  }
  if (wk->healthy != was_healthy)
    gs__serve_publish(s);
  gs__wk_unref(wk);
}

static void check_send(gs__wk_t *wk) {
  gs__peer_t *peer = gs__rloop_peer_of(wk->s->rloops[0], wk);
  gs__upreq_t *r = peer ? calloc(1, sizeof *r) : NULL;
  if (!r)
    return;
  *r = (gs__upreq_t){.method = "GET",
                     .url = "/v2/health/ready",
                     .infer_header_len = -1,
                     .timeout_ms = wk->s->opt.health_timeout_ms,
                     .done = check_done,
                     .data = wk};
  wk->check = r;
  wk->refs++;
  gs__upreq_send(r, peer);
}

/* Starts checks that are due and acts on workers stuck too long. */
void gs__health_tick(gs__serve_t *s) {
  uint64_t now = gs__serve_now_ns();
  gs__serve_publish(s); /* changes are published where they happen; this
                           one catches a publish that ran out of memory */
  for (gs__wk_t *wk = s->workers; wk; wk = wk->next) {
    if (wk->state == GS__PROC_RUNNING && !wk->check)
      check_send(wk);
    uint64_t since = wk->state == GS__PROC_STARTING ? wk->started_ns
                     : wk->state == GS__PROC_RUNNING && !wk->healthy
                         ? wk->unhealthy_since_ns
                         : 0;
    uint64_t limit_ms = wk->state == GS__PROC_STARTING
                            ? s->opt.start_timeout_ms
                            : s->opt.restart_unhealthy_ms;
    if (since && now - since > limit_ms * 1000000ull &&
        (wk->child || (wk->host && wk->host->child))) {
      gs__serve_log(s, "worker %s %s for %llu ms: restarting it", wk->label,
                    wk->state == GS__PROC_STARTING ? "not ready"
                                                   : "not answering",
                    (unsigned long long)limit_ms);
      if (wk->host)
        gs__host_kill(wk->host); /* the group's process: all restart */
      else
        gs__child_kill(wk->child, SIGKILL);
      wk->unhealthy_since_ns = 0;
      wk->started_ns = now; /* once per stuck spell, not every tick */
    }
  }
}
