/* gpuslice demo's runs: one phase is `gpuslice create` (not on MIG, whose
 * instances are used as they are), `gpuslice serve` on the phase's
 * instances, a perf sweep one concurrency at a time, then serve stopped
 * and `gpuslice destroy --all`. Every step is this same program, so the
 * demo uses exactly what users run. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "demo.h"

volatile sig_atomic_t demo_interrupted;
static volatile pid_t serve_pid;

void demo_on_interrupt(int sig) {
  (void)sig;
  demo_interrupted = 1;
  if (serve_pid > 0)
    kill(serve_pid, SIGTERM); /* the perf run in progress then fails fast */
}

/* argv for `self --backend=B --state-dir=D ARGS...` in argv (64 slots). */
static void self_argv(demo_t *d, char **argv, char *backend, char *state,
                      char *const args[]) {
  size_t n = 0;
  snprintf(backend, 64, "--backend=%s", d->backend);
  snprintf(state, 4200, "--state-dir=%s", d->state_dir);
  argv[n++] = d->self;
  argv[n++] = backend;
  argv[n++] = state;
  for (size_t i = 0; args[i] && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
}

/* Starts `self ...` with stdout and stderr to log (NULL: inherited; serve:
 * stderr only). Returns the pid, -1 when it did not start. */
static pid_t spawn_self(demo_t *d, const char *log, bool stderr_only,
                        char *const args[]) {
  char *argv[64];
  char backend[64], state[4200];
  self_argv(d, argv, backend, state, args);
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  if (log && !freopen(log, "a", stderr_only ? stderr : stdout))
    _exit(127);
  if (log && !stderr_only)
    dup2(fileno(stdout), 2);
  signal(SIGINT, SIG_IGN); /* Ctrl-C is the demo's to handle */
  execv(d->self, argv);
  _exit(127);
}

/* Runs `self ...` to its end: its exit status, -1 when it did not run. */
static int run_self(demo_t *d, const char *log, char *const args[]) {
  pid_t pid = spawn_self(d, log, false, args);
  int status;
  if (pid < 0)
    return -1;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define START_TIMEOUT_MS "600000"
#define START_WAIT_TICKS 6600 /* 100 ms each: 660 s */

static int start_serve(demo_t *d, const demo_phase_t *p, unsigned *port) {
  char log[4200], models[4300], select[1100];
  /* A GPU worker plans and captures every batch size of its model at
   * load: several seconds per size for ResNet-50 (cuDNN's algorithm
   * timing), seven instances at once. All before ready: the demo
   * measures steady serving, which planning after ready would disturb. */
  char *args[] = {"serve",
                  models,
                  "--http-port=0",
                  "--grpc-port=0",
                  "--start-timeout=" START_TIMEOUT_MS,
                  "--plan-before-ready=all",
                  p->select[0] ? select : NULL,
                  NULL};
  if (demo_interrupted)
    return -1;
  snprintf(log, sizeof log, "%s/serve.log", d->state_dir);
  snprintf(models, sizeof models, "--model-repository=%s", d->serve_models);
  snprintf(select, sizeof select, "--instances=%s", p->select);
  pid_t pid = spawn_self(d, log, true, args);
  if (pid < 0)
    return -1;
  serve_pid = pid;
  char path[4200];
  snprintf(path, sizeof path, "%s/serve.json", d->state_dir);
  unlink(path); /* the last phase's */
  /* Its start timeout, and a minute for serve to give up and write. */
  for (int i = 0; i < START_WAIT_TICKS && !demo_interrupted; i++) {
    json_t *doc = json_load_file(path, 0, NULL);
    int port_n = (int)json_integer_value(json_object_get(doc, "http_port"));
    json_decref(doc);
    if (port_n > 0) {
      *port = (unsigned)port_n;
      return 0;
    }
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      serve_pid = 0;
      return -1;
    }
    usleep(100000);
  }
  return -1;
}

/* SIGTERM (the serve drains and stops its workers), SIGKILL after 60 s. */
static void stop_serve(void) {
  pid_t pid = serve_pid;
  if (pid <= 0)
    return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 600; i++) {
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      serve_pid = 0;
      return;
    }
    usleep(100000);
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
    ;
  serve_pid = 0;
}

static void on_level(const gs_perf_result_t *r, void *user) {
  (void)user;
  fprintf(stderr,
          "    concurrency %3.0f: %8.1f infer/s, p50 %7.2f ms, p99 "
          "%7.2f ms%s\n",
          r->level, r->throughput, r->p50_us / 1000, r->p99_us / 1000,
          r->stable ? "" : "  (not stable)");
}

/* One concurrency at a time, so a level that does not stabilise is kept
 * (marked) rather than ending the sweep. */
static int sweep(demo_t *d, unsigned port, size_t phase) {
  demo_phase_t *p = &d->phases[phase];
  gs_perf_options_t o = {.host = "127.0.0.1",
                         .port = port,
                         .model = d->model,
                         .window_ms = d->window_ms,
                         .stability_pct = 15,
                         .max_trials = 6};
  gs_error_t err;
  if (d->shape[0] && gs_perf_parse_shape(d->shape, &o.shapes[0], &err)) {
    fprintf(stderr, "gpuslice: demo: %s\n", err.msg);
    return -1;
  }
  o.n_shapes = d->shape[0] ? 1 : 0;
  for (size_t i = 0; i < d->n_levels && !demo_interrupted; i++) {
    gs_perf_report_t rep = {0};
    fprintf(stderr, "  [%zu/%zu %s] concurrency %u (%zu of %zu)\n", phase + 1,
            d->n_phases, p->label, d->levels[i], i + 1, d->n_levels);
    o.range = (gs_perf_range_t){d->levels[i], d->levels[i], 1};
    int rc = gs_perf_run(&o, on_level, NULL, &rep, &err);
    if (rep.n > 0)
      p->levels[p->n++] = rep.levels[rep.n - 1];
    gs_perf_report_release(&rep);
    if (rc != GS_OK && rc != GS_ELIMIT) {
      if (!demo_interrupted)
        fprintf(stderr, "gpuslice: demo: %s\n", err.msg);
      return -1;
    }
  }
  return demo_interrupted ? -1 : 0;
}

int demo_measure(demo_t *d, size_t phase) {
  demo_phase_t *p = &d->phases[phase];
  char *destroy[] = {"destroy", "--all", NULL};
  char *create[DEMO_MAX_INSTANCES + 2] = {"create"};
  for (unsigned i = 0; i < p->count && i < DEMO_MAX_INSTANCES; i++)
    create[i + 1] = p->profile;
  char log[4200];
  snprintf(log, sizeof log, "%s/steps.log", d->state_dir);
  fprintf(stderr, "[%zu/%zu] %s: %s, starting gpuslice serve\n", phase + 1,
          d->n_phases, p->label,
          d->existing ? "existing instances" : "creating instances");
  unsigned port = 0;
  int rc = d->existing || run_self(d, log, create) == 0 ? 0 : -1;
  if (rc != 0 && !demo_interrupted)
    fprintf(stderr,
            "gpuslice: demo: gpuslice create failed; see "
            "%s/steps.log\n",
            d->state_dir);
  if (rc == 0 && (rc = start_serve(d, p, &port)) != 0 && !demo_interrupted)
    fprintf(stderr,
            "gpuslice: demo: gpuslice serve did not start; see "
            "%s/serve.log\n",
            d->state_dir);
  if (rc == 0) {
    fprintf(stderr, "[%zu/%zu] %s: sweeping concurrency (%u ms windows)\n",
            phase + 1, d->n_phases, p->label, d->window_ms);
    rc = sweep(d, port, phase);
  }
  stop_serve();
  if (!d->existing && run_self(d, log, destroy) != 0) {
    fprintf(stderr,
            "gpuslice: demo: gpuslice destroy --all failed; see "
            "%s/steps.log\n",
            d->state_dir);
    rc = -1;
  }
  return rc;
}
