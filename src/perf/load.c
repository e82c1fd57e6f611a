/* The load of one level on one libuv loop thread. Concurrency: N
 * connections, each sending its next request the moment its answer is in
 * (closed loop). Request rate: send times fixed before the level starts
 * (constant or exponential gaps), a timerfd waking the loop at each one
 * with nanosecond precision, latency counted from the scheduled time so that
 * a slow answer never hides the requests queued behind it; connections
 * opened as needed. Windows of -p ms follow each other without gaps; the
 * server's statistics are read at each window's end. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "perf/perf_int.h"

typedef struct level_s {
  gs__perf_ctx_t *ctx;
  double level;
  bool rate;
  gs__perf_conn_t *conns; /* every connection of the level */
  gs__perf_conn_t **idle; /* rate mode: open and waiting */
  unsigned n_conns, n_idle, n_opening, n_open_wanted, inflight;
  size_t next_req;
  gs__perf_window_t win[GS__PERF_MAX_WINDOWS + 1];
  double tput[GS__PERF_MAX_WINDOWS], lat[GS__PERF_MAX_WINDOWS];
  unsigned n_win; /* closed windows; win[n_win] is the one running */
  uint64_t cpu_at;
  uv_timer_t window_timer, drain_timer;
  bool begun, started, stopping, handles_closed;
  unsigned n_eval; /* windows evaluated */
  uint64_t *sched, t0;
  size_t n_sched, next_send;
  int tfd;
  uv_poll_t poll;
  bool poll_on;
  gs__perf_conn_t *stats;
  gs__perf_snapshot_t prev;
  bool stable, finished;
  int rc;
  gs_error_t err;
} level_t;

static void finish(level_t *l, bool stable);
static void start_load(level_t *l);

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fail(level_t *l, int code, const char *msg) {
  if (l->rc == GS_OK) {
    l->rc = code ? code : GS_ESYSTEM;
    gs_error_set(&l->err, l->rc, "%s", msg);
  }
  finish(l, false);
}

/* The error of a refused infer: the server's message, with the code of
 * its status (400 / INVALID_ARGUMENT is the input's fault). */
static void fail_answer(level_t *l, gs__perf_conn_t *c) {
  char msg[900], text[1024];
  bool grpc = c->grpc;
  gs__perf_answer_error(c, msg, sizeof msg);
  snprintf(text, sizeof text, "the server refused an infer request (%s %d): %s",
           grpc ? "gRPC status" : "HTTP", c->status, msg);
  int code = (grpc ? c->status == 3 : c->status == 400)   ? GS_EINVAL
             : (grpc ? c->status == 5 : c->status == 404) ? GS_ENOTFOUND
                                                          : GS_ESYSTEM;
  fail(l, code, text);
}

static void send_on(level_t *l, gs__perf_conn_t *c, uint64_t t_sched) {
  gs__perf_ctx_t *ctx = l->ctx;
  c->t_sched = t_sched;
  c->body_limit = GS__PERF_ERR_BODY;
  c->body_truncate = true;
  l->inflight++;
  if (gs__perf_conn_send(c, &ctx->reqs[l->next_req++ % ctx->n_reqs]) != GS_OK) {
    l->inflight--;
    c->busy = false;
    fail(l, c->err.code, c->err.msg);
    return;
  }
  if (l->rate && c->t_start - t_sched > GS__PERF_LATE_NS)
    l->win[l->n_win].late++;
}

static void open_conn(level_t *l);
static void on_conn_closed(gs__perf_conn_t *c);

/* Rate mode: sends every request whose time has come, on idle
 * connections (opening more when none is idle), then sleeps until the
 * next one's time. */
static void dispatch(level_t *l) {
  uint64_t now = gs__perf_now_ns();
  while (!l->stopping && l->next_send < l->n_sched &&
         l->t0 + l->sched[l->next_send] <= now) {
    if (l->n_idle == 0) {
      size_t due = 1;
      while (l->next_send + due < l->n_sched &&
             l->t0 + l->sched[l->next_send + due] <= now)
        due++;
      while (l->n_opening < due && l->n_conns < l->ctx->max_conns)
        open_conn(l);
      return; /* an answer or a new connection calls again */
    }
    send_on(l, l->idle[--l->n_idle], l->t0 + l->sched[l->next_send++]);
  }
  if (!l->stopping && l->next_send < l->n_sched) {
    uint64_t at = l->t0 + l->sched[l->next_send];
    struct itimerspec its = {
        .it_value = {(time_t)(at / 1000000000ull), (long)(at % 1000000000ull)}};
    timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
  }
}

static void on_tick(uv_poll_t *p, int status, int events) {
  level_t *l = p->data;
  uint64_t expirations;
  (void)status;
  (void)events;
  if (read(l->tfd, &expirations, sizeof expirations) < 0) {
    /* EAGAIN: already read; the schedule is checked anyway */
  }
  dispatch(l);
}

static void record(level_t *l, gs__perf_conn_t *c) {
  uint64_t end = gs__perf_now_ns();
  gs__perf_window_t *w = &l->win[l->n_win];
  if (gs__perf_window_add(w, end - c->t_sched) != GS_OK) {
    fail(l, GS_ENOMEM, "out of memory");
    return;
  }
  w->send_ns += c->t_sent > c->t_start ? c->t_sent - c->t_start : 0;
  w->recv_ns += c->t_first && end > c->t_first ? end - c->t_first : 0;
}

static void maybe_done(level_t *l);

static void on_done(gs__perf_conn_t *c, int rc) {
  level_t *l = c->user;
  l->inflight--;
  if (rc != GS_OK && !l->stopping)
    fail(l, rc, c->err.msg);
  else if (rc == GS_OK && c->status != (c->grpc ? 0 : 200) && !l->stopping)
    fail_answer(l, c);
  else if (!l->stopping)
    record(l, c);
  if (l->stopping) {
    gs__perf_conn_close(c);
    maybe_done(l);
  } else if (!l->rate) {
    send_on(l, c, 0);
  } else {
    l->idle[l->n_idle++] = c;
    dispatch(l);
  }
}

static void begin(level_t *l);

static void on_open(gs__perf_conn_t *c, int rc) {
  level_t *l = c->user;
  l->n_opening--;
  if (rc != GS_OK) {
    fail(l, rc, c->err.msg);
    gs__perf_conn_close(c);
    return;
  }
  if (l->stopping) {
    gs__perf_conn_close(c);
    return;
  }
  if (!l->started) {
    l->idle[l->n_idle++] = c;
    if (l->n_opening == 0 && (!l->stats || l->stats->open))
      begin(l);
  } else {
    l->idle[l->n_idle++] = c;
    dispatch(l);
  }
}

static void open_conn(level_t *l) {
  gs__perf_ctx_t *ctx = l->ctx;
  gs__perf_conn_t *c;
  gs_error_t err;
  if (gs__perf_conn_open(&ctx->loop, (const struct sockaddr *)&ctx->addr,
                         ctx->opts->protocol == GS_PERF_GRPC, ctx->authority, l,
                         on_open, on_done, &c, &err) != GS_OK) {
    fail(l, err.code, err.msg);
    return;
  }
  c->on_closed = on_conn_closed;
  c->next = l->conns;
  l->conns = c;
  l->n_conns++;
  l->n_opening++;
}

static void evaluate(level_t *l, unsigned k) {
  gs__perf_window_t *w = &l->win[k];
  unsigned p = l->ctx->opts->percentile;
  l->tput[k] = gs__perf_window_throughput(w, l->ctx->batch);
  l->lat[k] = gs__perf_window_latency(w, p);
  l->n_eval = k + 1;
  if (gs__perf_stable(l->tput, l->lat, k + 1, l->ctx->stability_pct))
    finish(l, true);
  else if (k + 1 >= l->ctx->max_trials)
    finish(l, false);
}

static void server_delta(level_t *l, gs__perf_window_t *w,
                         const gs__perf_snapshot_t *s) {
  const gs__perf_snapshot_t *p = &l->prev;
  w->has_server = true;
  w->s_success = s->success - p->success;
  w->s_inferences = s->inferences - p->inferences;
  w->s_executions = s->executions - p->executions;
  w->s_request_ns = s->request_ns - p->request_ns;
  w->s_queue_ns = s->queue_ns - p->queue_ns;
  w->s_input_ns = s->input_ns - p->input_ns;
  w->s_infer_ns = s->infer_ns - p->infer_ns;
  w->s_output_ns = s->output_ns - p->output_ns;
  l->prev = *s;
}

/* The statistics answer for the window that ended (or the baseline). */
static void on_stats(gs__perf_conn_t *c, int rc) {
  level_t *l = c->user;
  gs__perf_snapshot_t s;
  gs_error_t err;
  if (rc != GS_OK || c->status != (c->grpc ? 0 : 200)) {
    if (rc == GS_OK)
      fail_answer(l, c);
    else
      fail(l, rc, c->err.msg);
  } else if (gs__perf_stats_parse(l->ctx, c->body.data, c->body.len, &s,
                                  &err) != GS_OK) {
    fail(l, err.code, err.msg);
  } else if (!l->started) {
    l->prev = s;
    start_load(l);
    return;
  } else if (!l->stopping) {
    server_delta(l, &l->win[l->n_win - 1], &s);
    evaluate(l, l->n_win - 1);
  }
  if (l->stopping) {
    gs__perf_conn_close(c);
    maybe_done(l);
  }
}

static void stats_send(level_t *l) {
  l->stats->body_limit = GS__PERF_MAX_BODY;
  l->stats->body_truncate = false;
  if (gs__perf_conn_send(l->stats, &l->ctx->stats_req) != GS_OK)
    fail(l, l->stats->err.code, l->stats->err.msg);
}

static void on_window(uv_timer_t *t) {
  level_t *l = t->data;
  uint64_t now = gs__perf_now_ns(), cpu = thread_cpu_ns();
  gs__perf_window_t *w = &l->win[l->n_win];
  w->t_end = now;
  w->cpu_ns = cpu - l->cpu_at;
  l->cpu_at = cpu;
  if (l->n_win + 1 >= GS__PERF_MAX_WINDOWS) {
    finish(l, false);
    return;
  }
  l->win[++l->n_win].t_begin = now;
  if (l->stats && !l->stats->busy)
    stats_send(l);
  else
    evaluate(l, l->n_win - 1);
}

static void start_load(level_t *l) {
  l->started = true;
  l->win[0].t_begin = gs__perf_now_ns();
  l->cpu_at = thread_cpu_ns();
  uv_timer_start(&l->window_timer, on_window, l->ctx->window_ms,
                 l->ctx->window_ms);
  if (!l->rate) {
    while (l->n_idle && !l->stopping)
      send_on(l, l->idle[--l->n_idle], 0);
    return;
  }
  l->t0 = l->win[0].t_begin;
  uv_poll_start(&l->poll, UV_READABLE, on_tick);
  dispatch(l);
}

/* Every connection open: the server's baseline statistics, then the load. */
static void begin(level_t *l) {
  if (l->begun || l->stopping)
    return;
  l->begun = true;
  if (l->stats)
    stats_send(l); /* on_stats starts the load */
  else
    start_load(l);
}

static void on_stats_open(gs__perf_conn_t *c, int rc) {
  level_t *l = c->user;
  if (rc != GS_OK)
    fail(l, rc, c->err.msg);
  else if (l->n_opening == 0)
    begin(l);
}

static void close_handles(level_t *l) {
  if (l->handles_closed)
    return;
  l->handles_closed = true;
  uv_close((uv_handle_t *)&l->window_timer, NULL);
  uv_close((uv_handle_t *)&l->drain_timer, NULL);
  if (l->poll_on)
    uv_close((uv_handle_t *)&l->poll, NULL);
}

/* Once nothing is in flight, everything closes and uv_run returns. */
static void maybe_done(level_t *l) {
  if (!l->stopping || l->inflight || (l->stats && l->stats->busy))
    return;
  for (gs__perf_conn_t *c = l->conns; c; c = c->next)
    gs__perf_conn_close(c);
  if (l->stats)
    gs__perf_conn_close(l->stats);
  close_handles(l);
}

/* Answers that never come: after the grace time, close regardless. */
static void on_drain(uv_timer_t *t) {
  level_t *l = t->data;
  l->inflight = 0;
  if (l->stats)
    l->stats->busy = false;
  maybe_done(l);
}

static void finish(level_t *l, bool stable) {
  if (l->stopping)
    return;
  l->stopping = true;
  l->stable = stable;
  uv_timer_stop(&l->window_timer);
  if (l->poll_on)
    uv_poll_stop(&l->poll);
  while (l->n_idle)
    gs__perf_conn_close(l->idle[--l->n_idle]);
  uv_timer_start(&l->drain_timer, on_drain, 2000 + l->ctx->window_ms, 0);
  maybe_done(l);
}

static void on_conn_closed(gs__perf_conn_t *c) {
  level_t *l = c->user;
  if (c == l->stats) {
    l->stats = NULL;
    return;
  }
  for (gs__perf_conn_t **p = &l->conns; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      l->n_conns--;
      break;
    }
}

static int level_init(gs__perf_ctx_t *ctx, level_t *l, double level,
                      gs_error_t *err) {
  const gs_perf_options_t *o = ctx->opts;
  l->ctx = ctx;
  l->level = level;
  l->rate = o->mode == GS_PERF_RATE;
  l->tfd = -1;
  uv_timer_init(&ctx->loop, &l->window_timer);
  uv_timer_init(&ctx->loop, &l->drain_timer);
  l->window_timer.data = l->drain_timer.data = l;
  unsigned conns = l->rate ? ctx->max_conns : (unsigned)level;
  l->idle = calloc(conns + 1, sizeof *l->idle);
  if (!l->idle)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  if (!l->rate)
    return GS_OK;
  double span = (double)ctx->window_ms * (ctx->max_trials + 2) / 1000.0;
  l->n_sched = (size_t)(level * span * 1.1) + 16;
  if (l->n_sched > GS__PERF_MAX_SCHEDULE)
    return gs_error_set(err, GS_ELIMIT,
                        "request rate %g for %u windows of %u ms is over %zu "
                        "requests",
                        level, ctx->max_trials, ctx->window_ms,
                        GS__PERF_MAX_SCHEDULE);
  l->sched = malloc(l->n_sched * sizeof *l->sched);
  l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (!l->sched || l->tfd < 0)
    return gs_error_sys(err, errno, "cannot set up the send schedule");
  gs__perf_schedule(level, o->distribution, o->seed + (uint64_t)level, l->sched,
                    l->n_sched);
  uv_poll_init(&ctx->loop, &l->poll, l->tfd);
  l->poll.data = l;
  l->poll_on = true;
  return GS_OK;
}

/* Opens the level's first connections (and the statistics one). */
static void level_open(level_t *l) {
  gs__perf_ctx_t *ctx = l->ctx;
  unsigned n =
      l->rate ? (ctx->max_conns < 4 ? ctx->max_conns : 4) : (unsigned)l->level;
  for (unsigned i = 0; i < n && !l->stopping; i++)
    open_conn(l);
  gs_error_t err;
  if (!l->stopping && ctx->model.statistics) {
    if (gs__perf_conn_open(&ctx->loop, (const struct sockaddr *)&ctx->addr,
                           ctx->opts->protocol == GS_PERF_GRPC, ctx->authority,
                           l, on_stats_open, on_stats, &l->stats,
                           &err) != GS_OK)
      fail(l, err.code, err.msg);
    else
      l->stats->on_closed = on_conn_closed;
  }
}

/* Why the client, not the server, may have set the pace. */
static void bottleneck(level_t *l, gs_perf_result_t *r) {
  unsigned first = l->n_eval > 3 ? l->n_eval - 3 : 0;
  uint64_t cpu = 0, wall = 0, late = 0;
  for (unsigned i = first; i < l->n_eval; i++) {
    cpu += l->win[i].cpu_ns;
    wall += l->win[i].t_end - l->win[i].t_begin;
    late += l->win[i].late;
  }
  double busy = wall ? (double)cpu / (double)wall : 0;
  double asked = l->level * l->ctx->batch;
  if (busy > 0.9)
    snprintf(r->bottleneck, sizeof r->bottleneck,
             "the load generator's thread was busy %.0f%% of the time",
             busy * 100);
  else if (l->rate && r->request_count &&
           (double)late > 0.05 * (double)r->request_count)
    snprintf(r->bottleneck, sizeof r->bottleneck,
             "%.0f%% of requests were sent more than 1 ms after their "
             "scheduled time",
             100.0 * (double)late / (double)r->request_count);
  else if (l->rate && r->throughput < 0.9 * asked)
    snprintf(r->bottleneck, sizeof r->bottleneck,
             "%g infer/s achieved of the %g asked", r->throughput, asked);
  r->client_bottleneck = r->bottleneck[0] != '\0';
}

int gs__perf_level_run(gs__perf_ctx_t *ctx, double level, gs_perf_result_t *out,
                       gs_error_t *err) {
  level_t *l = calloc(1, sizeof *l);
  if (!l)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = level_init(ctx, l, level, err);
  if (rc == GS_OK) {
    level_open(l);
    uv_run(&ctx->loop, UV_RUN_DEFAULT);
    rc = l->rc;
    if (rc != GS_OK)
      *err = l->err;
  } else {
    close_handles(l);
    uv_run(&ctx->loop, UV_RUN_DEFAULT);
  }
  if (rc == GS_OK && gs__perf_merge(l->win, l->n_eval, 3, ctx->batch,
                                    ctx->opts->percentile, out) != GS_OK)
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  if (rc == GS_OK) {
    out->level = level;
    out->windows = l->n_eval;
    out->stable = l->stable;
    bottleneck(l, out);
  }
  for (unsigned i = 0; i <= GS__PERF_MAX_WINDOWS; i++)
    gs__perf_window_release(&l->win[i]);
  if (l->tfd >= 0)
    close(l->tfd);
  free(l->sched);
  free(l->idle);
  free(l);
  return rc;
}
