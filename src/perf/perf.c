/* gs_perf_run: checks the options, resolves the server, learns the model,
 * builds the request once, then measures one level after another and keeps
 * each result; the latency budget is judged over all of them at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf/perf_int.h"

static int check_range(const gs_perf_options_t *o, gs_error_t *err) {
  const gs_perf_range_t *r = &o->range;
  bool rate = o->mode == GS_PERF_RATE;
  if (!(r->start > 0) || !(r->end >= r->start) || !(r->step > 0))
    return gs_error_set(
        err, GS_EINVAL, "%s range %g:%g:%g: need 0 < start <= end and step > 0",
        rate ? "request rate" : "concurrency", r->start, r->end, r->step);
  if (!rate && r->end > 4096)
    return gs_error_set(err, GS_EINVAL, "concurrency %g is above 4096", r->end);
  return GS_OK;
}

/* Options with perf_analyzer's defaults filled in, into ctx. */
static int check_options(const gs_perf_options_t *o, gs__perf_ctx_t *ctx,
                         gs_error_t *err) {
  if (!o->model || !*o->model)
    return gs_error_set(err, GS_EINVAL, "no model given (-m)");
  ctx->batch = o->batch ? o->batch : 1;
  ctx->window_ms = o->window_ms ? o->window_ms : 5000;
  ctx->max_trials = o->max_trials ? o->max_trials : 10;
  ctx->stability_pct = o->stability_pct > 0 ? o->stability_pct : 10;
  ctx->max_conns = o->max_threads ? o->max_threads : 64;
  if (ctx->max_trials < 3 || ctx->max_trials > GS__PERF_MAX_WINDOWS)
    return gs_error_set(err, GS_EINVAL,
                        "max trials %u: stability needs 3 windows; 3 to %u",
                        ctx->max_trials, GS__PERF_MAX_WINDOWS);
  if (o->percentile > 99)
    return gs_error_set(err, GS_EINVAL, "percentile %u: 1 to 99",
                        o->percentile);
  if (ctx->window_ms < 10 || ctx->window_ms > 3600000)
    return gs_error_set(err, GS_EINVAL,
                        "measurement interval %u ms: 10 to 3600000",
                        ctx->window_ms);
  if (o->data == GS_PERF_DATA_FILE && !o->data_file)
    return gs_error_set(err, GS_EINVAL, "input data from a file: no file");
  return check_range(o, err);
}

static int resolve(gs__perf_ctx_t *ctx, gs_error_t *err) {
  const gs_perf_options_t *o = ctx->opts;
  const char *host = o->host && *o->host ? o->host : "localhost";
  unsigned port = o->port ? o->port : o->protocol == GS_PERF_GRPC ? 8001 : 8000;
  char service[16];
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  uv_getaddrinfo_t req;
  snprintf(service, sizeof service, "%u", port);
  snprintf(ctx->authority, sizeof ctx->authority, "%s:%u", host, port);
  int rc = uv_getaddrinfo(&ctx->loop, &req, NULL, host, service, &hints);
  if (rc != 0)
    return gs_error_set(err, GS_ESYSTEM, "cannot resolve '%s': %s", host,
                        uv_strerror(rc));
  memcpy(&ctx->addr, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
  uv_freeaddrinfo(req.addrinfo);
  return GS_OK;
}

static int check_batch(const gs__perf_ctx_t *ctx, gs_error_t *err) {
  unsigned max = ctx->model.max_batch_size;
  if (max == 0 && ctx->batch > 1)
    return gs_error_set(err, GS_EINVAL,
                        "model '%s' does not batch (max_batch_size 0): -b "
                        "must be 1, not %u",
                        ctx->model.name, ctx->batch);
  if (max && ctx->batch > max)
    return gs_error_set(err, GS_EINVAL,
                        "-b %u is above the max_batch_size of model '%s' (%u)",
                        ctx->batch, ctx->model.name, max);
  if (ctx->model.n_inputs == 0)
    return gs_error_set(err, GS_EINVAL, "model '%s' lists no inputs",
                        ctx->model.name);
  return GS_OK;
}

static void judge_budget(const gs_perf_options_t *o, gs_perf_report_t *r) {
  r->budget_index = -1;
  if (!(o->latency_budget_ms > 0))
    return;
  for (size_t i = 0; i < r->n; i++) {
    const gs_perf_result_t *x = &r->levels[i];
    double lat = o->percentile ? x->pct_us : x->p99_us;
    if (lat <= o->latency_budget_ms * 1000.0 &&
        (r->budget_index < 0 || x->level > r->levels[r->budget_index].level))
      r->budget_index = (long)i;
  }
}

static int measure(gs__perf_ctx_t *ctx, gs_perf_level_cb cb, void *user,
                   gs_perf_report_t *report, gs_error_t *err) {
  const gs_perf_options_t *o = ctx->opts;
  double levels[10001];
  size_t n = gs__perf_levels(&o->range, levels, 10001);
  report->levels = calloc(n ? n : 1, sizeof *report->levels);
  if (!report->levels)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    gs_perf_result_t *r = &report->levels[report->n];
    int rc = gs__perf_level_run(ctx, levels[i], r, err);
    if (rc != GS_OK)
      return rc;
    report->n++;
    if (cb)
      cb(r, user);
    if (!r->stable)
      return gs_error_set(
          err, GS_ELIMIT,
          "Failed to obtain stable measurement within %u measurement windows "
          "for %s %g. Please try to increase the --measurement-interval.",
          r->windows, o->mode == GS_PERF_RATE ? "request rate" : "concurrency",
          r->level);
  }
  return GS_OK;
}

int gs_perf_run(const gs_perf_options_t *opts, gs_perf_level_cb cb, void *user,
                gs_perf_report_t *report, gs_error_t *err) {
  gs__perf_ctx_t *ctx = calloc(1, sizeof *ctx);
  memset(report, 0, sizeof *report);
  report->budget_index = -1;
  if (!ctx)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  ctx->opts = opts;
  int rc = check_options(opts, ctx, err);
  bool loop_ok = false;
  if (rc == GS_OK && uv_loop_init(&ctx->loop) != 0)
    rc = gs_error_set(err, GS_ESYSTEM, "cannot start an event loop");
  else if (rc == GS_OK)
    loop_ok = true;
  if (rc == GS_OK)
    rc = resolve(ctx, err);
  if (rc == GS_OK)
    rc = gs__perf_model_fetch(ctx, err);
  if (rc == GS_OK)
    rc = check_batch(ctx, err);
  if (rc == GS_OK)
    rc = gs__perf_requests_build(ctx, err);
  report->has_server = ctx->model.statistics;
  report->batch = ctx->batch;
  if (rc == GS_OK)
    rc = measure(ctx, cb, user, report, err);
  judge_budget(opts, report);
  gs__perf_requests_release(ctx);
  if (loop_ok) {
    uv_run(&ctx->loop, UV_RUN_DEFAULT);
    uv_loop_close(&ctx->loop);
  }
  free(ctx);
  return rc;
}
