/* gpuslice serve's life: start the workers and wait until all are ready,
 * open the front doors, keep the worker set in line with the layout
 * (watching the state file), and on stop drain: stop accepting, let
 * in-flight requests finish, then stop the workers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve_int.h"

#define DRAIN_POLL_MS 20
/* Draining: how long connections get to send one last request. */
#define DRAIN_IDLE_GRACE_MS 1000u
#define MAX_INSTANCES 512

uint64_t gs__serve_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void gs__serve_log(gs__serve_t *s, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (!s->opt.log)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  s->opt.log(s->opt.ctx, line);
}

static bool removed_by_admin(const gs__serve_t *s, const char *id) {
  for (unsigned i = 0; i < s->n_removed; i++)
    if (strcmp(s->removed[i], id) == 0)
      return true;
  return false;
}

static bool instance_served(const gs__serve_t *s, const char *id) {
  for (const gs__wk_t *wk = s->workers; wk; wk = wk->next)
    if (strcmp(wk->inst.id, id) == 0 && !wk->removing)
      return true;
  return false;
}

int gs__sync_instances(gs__serve_t *s, gs_error_t *err) {
  gs_serve_instance_t *list = calloc(MAX_INSTANCES, sizeof *list);
  size_t n = 0;
  if (!list)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = s->opt.list_instances(s->opt.ctx, list, MAX_INSTANCES, &n, err);
  if (rc != GS_OK) {
    free(list);
    return rc;
  }
  for (gs__wk_t *wk = s->workers, *next; wk; wk = next) {
    next = wk->next;
    bool present = false;
    for (size_t i = 0; i < n && !present; i++)
      present = strcmp(list[i].id, wk->inst.id) == 0;
    if ((!present || removed_by_admin(s, wk->inst.id)) && !wk->removing) {
      gs__serve_log(s, "instance %s is gone: stopping worker %s", wk->inst.id,
                    wk->label);
      gs__wk_remove(wk);
    }
  }
  unsigned served = 0;
  for (size_t i = 0; i < n; i++)
    served += !removed_by_admin(s, list[i].id);
  for (size_t i = 0; i < n && rc == GS_OK; i++) {
    list[i].n_served = served;
    if (removed_by_admin(s, list[i].id) || instance_served(s, list[i].id))
      continue;
    if (s->started)
      gs__serve_log(s, "instance %s (%s) appeared: starting its worker",
                    list[i].id, list[i].profile);
    for (unsigned w = 0; w < s->opt.workers_per_instance && rc == GS_OK; w++)
      rc = gs__wk_add(s, &list[i], w, err);
  }
  free(list);
  return rc;
}

static void on_health_timer(uv_timer_t *t) {
  gs__health_tick(t->data);
}

static void on_watch(uv_fs_poll_t *h, int status, const uv_stat_t *prev,
                     const uv_stat_t *curr) {
  gs__serve_t *s = h->data;
  gs_error_t err;
  (void)status;
  (void)prev;
  (void)curr;
  if (s->draining)
    return;
  if (gs__sync_instances(s, &err) != GS_OK)
    gs__serve_log(s, "cannot read the layout: %s", err.msg);
}

/* ---- drain and stop ------------------------------------------------------
 */

static bool all_gone(const gs__serve_t *s) {
  /* processes exited, the replaced ones too */
  return s->workers == NULL && s->hosts == NULL && s->orphans == NULL;
}

static void on_drain_timer(uv_timer_t *t) {
  gs__serve_t *s = t->data;
  bool requests_done =
      gs__rloops_inflight(s) == 0 && gs__grpc_proxy_inflight(s) == 0;
  bool conns_done =
      gs__rloops_conns(s) == 0 || s->drain_elapsed_ms >= DRAIN_IDLE_GRACE_MS;
  s->drain_elapsed_ms += DRAIN_POLL_MS;
  if (!s->workers_stopping &&
      ((requests_done && conns_done) ||
       s->drain_elapsed_ms >= s->opt.drain_timeout_ms)) {
    if (!requests_done)
      gs__serve_log(s, "drain timeout: %u requests still in flight",
                    gs__rloops_inflight(s) + gs__grpc_proxy_inflight(s));
    gs__rloops_close_idle(s);
    s->workers_stopping = true;
    for (gs__wk_t *wk = s->workers, *next; wk; wk = next) {
      next = wk->next;
      gs__wk_remove(wk);
    }
    gs__children_kill_orphans(s); /* dying anyway: no wait */
  }
  if (s->workers_stopping && all_gone(s))
    uv_stop(&s->loop);
}

static void on_stop(uv_async_t *a) {
  gs__serve_t *s = a->data;
  if (s->draining)
    return;
  s->draining = true;
  gs__serve_log(s, "draining: no new connections, finishing %u requests",
                gs__rloops_inflight(s) + gs__grpc_proxy_inflight(s));
  gs__rloops_drain(s);
  gs__grpc_proxy_drain(s);
  if (s->watching)
    uv_fs_poll_stop(&s->watch);
  uv_timer_start(&s->drain_timer, on_drain_timer, 0, DRAIN_POLL_MS);
}

void gs_serve_stop(gs_serve_t *s) {
  uv_async_send(&s->stop_async);
}

/* ---- create, run, destroy ------------------------------------------------
 */

static void set_defaults(gs_serve_options_t *o) {
#define DEFAULT(field, value)                                                  \
  if (!o->field)                                                               \
  o->field = value
  DEFAULT(workers_per_instance, 1);
  DEFAULT(health_interval_ms, 200);
  DEFAULT(health_timeout_ms, 1000);
  DEFAULT(unhealthy_threshold, 2);
  DEFAULT(eject_failures, 3);
  DEFAULT(eject_ms, 1000);
  DEFAULT(restart_unhealthy_ms, 10000);
  DEFAULT(request_timeout_ms, 30000);
  DEFAULT(start_timeout_ms, 120000);
  DEFAULT(drain_timeout_ms, 30000);
  DEFAULT(max_body_bytes, 64u << 20);
  DEFAULT(router_threads, gs__rloops_auto());
#undef DEFAULT
  if (o->router_threads > GS_SERVE_MAX_THREADS)
    o->router_threads = GS_SERVE_MAX_THREADS;
}

static bool all_ready(const gs__serve_t *s) {
  for (const gs__wk_t *wk = s->workers; wk; wk = wk->next)
    if (!(wk->state == GS__PROC_RUNNING && wk->healthy))
      return false;
  return true;
}

/* Runs the loop until every worker is ready, one failed, or time ran out. */
static int wait_for_workers(gs__serve_t *s, gs_error_t *err) {
  uint64_t deadline =
      gs__serve_now_ns() + (uint64_t)s->opt.start_timeout_ms * 1000000ull;
  while (s->start_rc == GS_OK && !all_ready(s) && !s->draining) {
    if (s->opt.stop_flag && *s->opt.stop_flag)
      return gs_error_set(err, GS_ESYSTEM, "stopped while starting");
    if (gs__serve_now_ns() > deadline)
      return gs_error_set(err, GS_ESYSTEM,
                          "workers not ready after %u ms (see their logs in "
                          "%s)",
                          s->opt.start_timeout_ms, s->opt.log_dir);
    uv_run(&s->loop, UV_RUN_ONCE);
  }
  if (s->start_rc != GS_OK) {
    *err = s->start_err;
    return s->start_rc;
  }
  if (s->draining)
    return gs_error_set(err, GS_ESYSTEM, "stopped while starting");
  return GS_OK;
}

static int serve_start(gs__serve_t *s, gs_error_t *err) {
  int rc = gs__sync_instances(s, err);
  if (rc == GS_OK && !s->workers)
    rc = gs_error_set(err, GS_ENOTFOUND,
                      "no instance to serve (create some, or check "
                      "--instances)");
  if (rc == GS_OK)
    rc = wait_for_workers(s, err);
  if (rc == GS_OK)
    rc = gs__rloops_listen(s, err);
  if (rc == GS_OK && s->opt.grpc)
    rc = gs__grpc_proxy_listen(s, s->opt.host ? s->opt.host : "127.0.0.1",
                               s->opt.grpc_port, err);
  if (rc == GS_OK && s->opt.watch_path) {
    uv_fs_poll_init(&s->loop, &s->watch);
    s->watch.data = s;
    s->watching = true;
    uv_fs_poll_start(&s->watch, on_watch, s->opt.watch_path, 500);
  }
  s->started = rc == GS_OK;
  return rc;
}

int gs_serve_create(gs_serve_t **out, const gs_serve_options_t *opts,
                    gs_error_t *err) {
  *out = NULL;
  if (!opts->worker_argv || !opts->list_instances || !opts->log_dir)
    return gs_error_set(err, GS_EINVAL,
                        "serve needs worker_argv, list_instances and log_dir");
  gs__serve_t *s = calloc(1, sizeof *s);
  if (!s)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  s->opt = *opts;
  set_defaults(&s->opt);
  int rc = uv_loop_init(&s->loop);
  if (rc != 0) {
    free(s);
    return gs_error_set(err, GS_ESYSTEM, "uv_loop_init: %s", uv_strerror(rc));
  }
  s->loop_ready = true;
  uv_async_init(&s->loop, &s->stop_async, on_stop);
  s->stop_async.data = s;
  uv_timer_init(&s->loop, &s->health_timer);
  uv_timer_init(&s->loop, &s->drain_timer);
  s->health_timer.data = s->drain_timer.data = s;
  uv_timer_start(&s->health_timer, on_health_timer, s->opt.health_interval_ms,
                 s->opt.health_interval_ms);
  rc = gs__rloops_init(s, err);
  if (rc == GS_OK)
    rc = gs__rseqs_init(s, err);
  if (rc == GS_OK)
    rc = serve_start(s, err);
  if (rc != GS_OK) {
    gs_serve_destroy(s);
    return rc;
  }
  *out = s;
  return GS_OK;
}

int gs_serve_run(gs_serve_t *s, gs_error_t *err) {
  (void)err;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  return GS_OK;
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* Stops every worker still running (SIGKILL after the grace) and waits for
 * them, so that no worker outlives the serve. */
static void stop_all_workers(gs__serve_t *s) {
  s->draining = true;
  for (gs__wk_t *wk = s->workers, *next; wk; wk = next) {
    next = wk->next;
    gs__wk_remove(wk);
  }
  gs__children_kill_orphans(s);
  while (!all_gone(s))
    uv_run(&s->loop, UV_RUN_ONCE);
}

void gs_serve_destroy(gs_serve_t *s) {
  if (!s)
    return;
  if (s->loop_ready) {
    stop_all_workers(s);
    gs__rloops_stop(s);
    gs__grpc_proxy_close(s);
    uv_walk(&s->loop, close_any, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
  }
  gs__rloops_free(s);
  gs__rseqs_free(s);
  free(s);
}

unsigned gs_serve_http_port(const gs_serve_t *s) {
  return s->http_port;
}

unsigned gs_serve_grpc_port(const gs_serve_t *s) {
  return s->opt.grpc ? gs__grpc_proxy_port(s) : 0;
}
