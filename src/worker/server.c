/* The worker's process side on libuv: its loop, the HTTP listeners (the
 * network layer's, net/http.h), whose requests go straight to the routes
 * (router.c), the gRPC listener (grpc.c), repository polling, draining. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "worker/grpc_int.h"
#include "worker/pool.h"
#include "worker/shm.h"
#include "worker/worker_int.h"

struct gs_worker_s {
  uv_loop_t loop;
  gs__http_listener_t http;
  uv_async_t stop;
  gs__repo_t repo;
  gs__route_ctx_t route; /* the listeners' handler's: loop and repo */
  size_t max_body;
  gs__http_listener_t metrics; /* serves GET /metrics only */
  bool metrics_on;
  bool loop_ready;
  gs__grpc_server_t *grpc; /* NULL when gRPC is off */
  uv_timer_t poll;         /* poll mode's rescan of the repository */
  /* gs_worker_drain: from any thread, then on the loop */
  uv_async_t drain;
  uv_timer_t drain_timer;
  uv_async_t slot_failed; /* the repository's wake (gs__loop_wake) */
  _Atomic unsigned drain_ms;
  unsigned drain_elapsed_ms;
  gs__pool_t *pool;         /* busy_poll_us > 0: the inference threads */
  bool stopped;             /* uv_stop was called: gs_worker_run returns */
  char device_failure[512]; /* exit_on_device_failure fired: why */
};

#define DRAIN_TICK_MS 10u
/* After a device failure nothing more can be served: answer what is in
 * flight (it fails fast), close idle keep-alive connections (the
 * router's pool) at half of it, and stop, so the restart comes soon. */
#define DEVICE_FAILURE_DRAIN_MS 100u

static void handle_metrics_only(void *ctx, gs__http_conn_t *c,
                                gs__http_request_t *req) {
  gs__http_response_t resp = {.infer_header_len = -1};
  if (strcmp(req->url, "/metrics") == 0)
    gs__route_http(ctx, c, req);
  else {
    gs__http_response_error(&resp, 404,
                            "the metrics port serves /metrics only");
    gs__http_conn_respond(c, &resp);
  }
}

static void stop_loop(gs_worker_t *w) {
  w->stopped = true;
  uv_stop(&w->loop);
}

static void on_stop(uv_async_t *a) {
  stop_loop(a->data);
}

static void on_poll(uv_timer_t *t) {
  gs_worker_t *w = t->data;
  gs__repo_poll(&w->repo);
}

/* Draining: stops when every HTTP connection got its last answer and
 * every gRPC connection its calls' (after a GOAWAY); idle HTTP ones
 * (keep-alive clients that sent nothing more) are closed halfway through
 * the grace, and whatever is left at its end. */
static void on_drain_tick(uv_timer_t *t) {
  gs_worker_t *w = t->data;
  unsigned limit = atomic_load(&w->drain_ms);
  w->drain_elapsed_ms += DRAIN_TICK_MS;
  size_t left = w->http.n_conns + (w->metrics_on ? w->metrics.n_conns : 0) +
                gs__grpc_conns(w->grpc);
  if (left == 0 || w->drain_elapsed_ms >= limit) {
    uv_timer_stop(t);
    stop_loop(w);
  } else if (w->drain_elapsed_ms >= limit / 2) {
    gs__http_listener_close_idle(&w->http);
    if (w->metrics_on)
      gs__http_listener_close_idle(&w->metrics);
  }
}

static void on_drain(uv_async_t *a) {
  gs_worker_t *w = a->data;
  gs__pace_flush(&w->repo.pace); /* what waits for its turn is answered */
  gs__http_listener_drain(&w->http);
  if (w->metrics_on)
    gs__http_listener_drain(&w->metrics);
  gs__grpc_drain(w->grpc);
  w->drain_elapsed_ms = 0;
  uv_timer_start(&w->drain_timer, on_drain_tick, 0, DRAIN_TICK_MS);
}

/* The repository's device_failed callback under exit_on_device_failure:
 * the process's CUDA context stays unusable, so only a new process serves
 * again; the supervisor restarts it as soon as it exits. */
static void on_device_failed(void *ctx, const char *why) {
  gs_worker_t *w = ctx;
  if (w->device_failure[0])
    return; /* draining already */
  snprintf(w->device_failure, sizeof w->device_failure, "%s", why);
  if (!atomic_load(&w->drain_ms)) /* a drain running keeps its grace */
    gs_worker_drain(w, DEVICE_FAILURE_DRAIN_MS);
}

/* A planning thread found its device failed: the repository hears of it
 * now, not at the next request. */
static void on_slot_failed(uv_async_t *a) {
  gs_worker_t *w = a->data;
  gs__repo_find_failed(&w->repo);
}

/* Points the repository's wake at the loop (the handle open) or at nothing
 * (the handle about to close; a thread's wake then is dropped). */
static void set_wake(gs_worker_t *w, uv_async_t *async) {
  pthread_mutex_lock(&w->repo.wake.lock);
  w->repo.wake.async = async;
  pthread_mutex_unlock(&w->repo.wake.lock);
}

const char *gs_worker_device_failure(const gs_worker_t *w) {
  return w->device_failure[0] ? w->device_failure : NULL;
}

static int listen_http(gs_worker_t *w, gs__http_listener_t *l,
                       gs__http_handler_fn handler, const char *host,
                       unsigned port, gs_error_t *err) {
  l->handler = handler;
  l->ctx = &w->route;
  l->max_body = w->max_body;
  l->user_size = sizeof(gs__infer_job_t);
  return gs__http_listen(&w->loop, l, host, port, err);
}

/* The busy-poll pool's size: libuv's pool's (UV_THREADPOOL_SIZE, 4). */
static unsigned pool_threads(void) {
  const char *env = getenv("UV_THREADPOOL_SIZE");
  long n = env ? strtol(env, NULL, 10) : 0;
  return n < 1 ? 4u : n > 1024 ? 1024u : (unsigned)n;
}

int gs_worker_create(gs_worker_t **out, const gs_worker_options_t *opts,
                     gs_error_t *err) {
  *out = NULL;
  if (!opts->model_repository || opts->port > 65535)
    return gs_error_set(err, GS_EINVAL,
                        "a model repository and a port in "
                        "0..65535 are needed");
  gs_worker_t *w = calloc(1, sizeof *w);
  if (!w)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  w->max_body = opts->max_body_bytes ? opts->max_body_bytes
                                     : gs_limit_bytes(GS_LIMIT_HTTP_BODY);
  int rc = uv_loop_init(&w->loop);
  if (rc != 0) {
    free(w);
    return gs_error_set(err, GS_ESYSTEM, "uv_loop_init: %s", uv_strerror(rc));
  }
  w->loop_ready = true;
  uv_async_init(&w->loop, &w->stop, on_stop);
  w->stop.data = w;
  uv_async_init(&w->loop, &w->drain, on_drain);
  w->drain.data = w;
  uv_timer_init(&w->loop, &w->drain_timer);
  w->drain_timer.data = w;
  uv_async_init(&w->loop, &w->slot_failed, on_slot_failed);
  w->slot_failed.data = w;
  rc = opts->busy_poll_us > GS_WORKER_MAX_BUSY_POLL_US
           ? gs_error_set(err, GS_EINVAL, "busy_poll_us is at most %u, not %u",
                          GS_WORKER_MAX_BUSY_POLL_US, opts->busy_poll_us)
       : (unsigned)opts->gpu_wait > GS_WORKER_GPU_WAIT_BLOCK
           ? gs_error_set(err, GS_EINVAL,
                          "gpu_wait %u is not auto, driver, spin or block",
                          (unsigned)opts->gpu_wait)
       : opts->rate_limit > GS_WORKER_MAX_RATE_LIMIT
           ? gs_error_set(err, GS_EINVAL,
                          "rate_limit is at most %u inferences a second, "
                          "not %u",
                          GS_WORKER_MAX_RATE_LIMIT, opts->rate_limit)
           : GS_OK;
  if (rc == GS_OK && opts->busy_poll_us)
    rc = gs__pool_create(&w->pool, &w->loop, pool_threads(), opts->busy_poll_us,
                         err);
  w->route = (gs__route_ctx_t){.loop = &w->loop, .repo = &w->repo};
  if (rc == GS_OK)
    rc = gs__repo_open_opts(&w->repo, opts, err);
  if (rc == GS_OK)
    gs__pace_init(&w->repo.pace, opts->rate_limit);
  if (rc == GS_OK && opts->exit_on_device_failure) { /* loads are done */
    w->repo.device_failed = on_device_failed;
    w->repo.device_failed_ctx = w;
  }
  if (rc == GS_OK) { /* planning threads may have failed meanwhile: look */
    set_wake(w, &w->slot_failed);
    uv_async_send(&w->slot_failed);
  }
  const char *host = opts->host ? opts->host : "127.0.0.1";
  if (rc == GS_OK)
    rc = listen_http(w, &w->http, gs__route_http, host, opts->port, err);
  if (rc == GS_OK && opts->metrics) {
    w->metrics_on = true;
    rc = listen_http(w, &w->metrics, handle_metrics_only, host,
                     opts->metrics_port, err);
  }
  if (rc == GS_OK && opts->grpc)
    rc = gs__grpc_listen(&w->grpc, &w->loop, &w->repo,
                         opts->host ? opts->host : "127.0.0.1", opts->grpc_port,
                         err);
  if (rc == GS_OK && opts->model_control == GS_MODEL_CONTROL_POLL) {
    uint64_t ms = (opts->poll_secs ? opts->poll_secs : 15) * 1000ull;
    uv_timer_init(&w->loop, &w->poll);
    w->poll.data = w;
    uv_timer_start(&w->poll, on_poll, ms, ms);
    uv_unref((uv_handle_t *)&w->poll);
  }
  if (rc != GS_OK) {
    gs_worker_destroy(w);
    return rc;
  }
  *out = w;
  return GS_OK;
}

int gs_worker_run(gs_worker_t *w, gs_error_t *err) {
  (void)err;
  w->stopped = false;
  gs__pool_run_loop(&w->loop, &w->stopped);
  return GS_OK;
}

void gs_worker_stop(gs_worker_t *w) {
  uv_async_send(&w->stop);
}

void gs_worker_drain(gs_worker_t *w, unsigned timeout_ms) {
  atomic_store(&w->drain_ms, timeout_ms ? timeout_ms : DRAIN_TICK_MS);
  uv_async_send(&w->drain);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

void gs_worker_destroy(gs_worker_t *w) {
  if (!w)
    return;
  if (w->loop_ready) {
    gs__pace_flush(&w->repo.pace); /* into the batcher's queues */
    gs__batcher_flush(&w->repo);
    gs__grpc_close(w->grpc); /* connections of their own kinds */
    gs__http_listener_close(&w->http);
    gs__http_listener_close(&w->metrics);
    /* no new requests now: the jobs in flight end, their answers through
     * the pool's handle, which close_any closes next */
    gs__pool_quiesce(w->pool);
    if (w->repo.wake.async)
      set_wake(w, NULL);
    uv_walk(&w->loop, close_any, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT); /* lets in-flight infers finish */
    gs__pool_destroy(w->pool);
    uv_loop_close(&w->loop);
  }
  gs__grpc_destroy(w->grpc);
  gs__repo_close(&w->repo);
  gs__shm_registry_destroy(w->repo.shm); /* every infer is done */
  free(w);
}

unsigned gs_worker_port(const gs_worker_t *w) {
  return w->http.port;
}

unsigned gs_worker_metrics_port(const gs_worker_t *w) {
  return w->metrics_on ? w->metrics.port : 0;
}

unsigned gs_worker_grpc_port(const gs_worker_t *w) {
  return gs__grpc_port(w->grpc);
}

size_t gs_worker_model_count(const gs_worker_t *w) {
  return w->repo.n;
}

bool gs_worker_model(const gs_worker_t *w, size_t i, const char **name,
                     bool *ready, const char **reason) {
  if (i >= w->repo.n)
    return false;
  const gs__model_entry_t *m = &w->repo.models[i];
  *name = m->name;
  *ready = m->state == GS__MODEL_READY;
  *reason = m->reason;
  return true;
}

const char *gs_worker_model_version(const gs_worker_t *w, size_t i) {
  return i < w->repo.n ? w->repo.models[i].version : "";
}

const char *gs_worker_model_load_note(const gs_worker_t *w, size_t i) {
  if (i >= w->repo.n || w->repo.models[i].state != GS__MODEL_READY)
    return "";
  return w->repo.models[i].slot->load_note;
}
