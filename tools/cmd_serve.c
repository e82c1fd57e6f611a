/* gpuslice serve: a worker per instance (each through `gpuslice run -i`, so
 * it is confined exactly as run confines; under green isolation one worker
 * process per GPU hosting its instances), the router on the front ports,
 * the supervisor behind; and the client side of a running serve: --status,
 * --add, --remove, --sync. Options come from the command line and from
 * -f serve.yaml (the same names, with underscores). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_http.h"
#include "gpuslice/run.h"
#include "gpuslice/serve.h"
#include "gpuslice/worker.h"
#include "serve_cli.h"

#define ROUTER_BOOST 5 /* nice levels between the router and its workers */
#define CHECK_MAX_INSTANCES 512 /* listed to check --rate-limit's IDs */

static gs_serve_t *running;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1; /* seen by a serve still starting, or just started */
  if (running)
    gs_serve_stop(running);
}

static void log_line(void *ctx, const char *line) {
  (void)ctx;
  fprintf(stderr, "gpuslice serve: %s\n", line);
}

/* ---- which instances --------------------------------------------------- */

/* Whether text (GI, DEV:GI, DEV:GI:CI or a UUID) names this instance. */
static bool names(gs_backend_t *be, const char *text, const gs_device_t *dev,
                  const gs_gi_t *gi, const gs_ci_t *ci) {
  gs_instance_ref_t ref;
  gs_error_t err;
  return gs_instance_ref_parse(be, text, &ref, &err) == GS_OK &&
         ref.dev == dev->index && ref.gi_id == gi->id &&
         (ref.ci_id < 0 || (unsigned)ref.ci_id == ci->id);
}

static bool selected(serve_cli_t *sc, gs_backend_t *be, const gs_device_t *dev,
                     const gs_gi_t *gi, const gs_ci_t *ci,
                     const char *profile) {
  const char *sel = sc->instances;
  if (!sel || strcmp(sel, "all") == 0)
    return true;
  if (strcmp(sel, profile) == 0)
    return true;
  char copy[1024];
  snprintf(copy, sizeof copy, "%s", sel);
  for (char *save, *tok = strtok_r(copy, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save))
    if (names(be, tok, dev, gi, ci))
      return true;
  return false;
}

/* The instance's --rate-limit: the ID=N naming it (in any form
 * --instances takes), else N alone. Every ID naming it is marked used; a
 * second one is noted in rate_twice (check_rates refuses it). */
static unsigned rate_of(serve_cli_t *sc, gs_backend_t *be,
                        const gs_device_t *dev, const gs_gi_t *gi,
                        const gs_ci_t *ci) {
  const gs_serve_rates_t *r = &sc->rates;
  int first = -1;
  for (unsigned i = 0; i < r->n; i++)
    if (names(be, r->rate[i].id, dev, gi, ci)) {
      sc->rate_used[i] = true;
      if (first < 0)
        first = (int)i;
      else
        snprintf(sc->rate_twice, sizeof sc->rate_twice, "as %s and %s",
                 r->rate[first].id, r->rate[i].id);
    }
  return first < 0 ? r->rate_default : r->rate[first].rate;
}

static void describe(gs_serve_instance_t *out, const gs_device_t *dev,
                     const gs_gi_t *gi, const gs_ci_t *ci,
                     const gs_gi_profile_t *p) {
  const char *name = p ? p->name : "?";
  out->memory_mib = p ? p->memory_mib : 0;
  if (gi->n_ci > 1)
    snprintf(out->id, sizeof out->id, "%u:%u:%u", dev->index, gi->id, ci->id);
  else
    snprintf(out->id, sizeof out->id, "%u:%u", dev->index, gi->id);
  snprintf(out->uuid, sizeof out->uuid, "%s",
           ci->uuid[0] ? ci->uuid : gi->uuid);
  snprintf(out->profile, sizeof out->profile, "%s", name);
}

/* Green isolation (the GI has an SM range): the instance joins its GPU's
 * one process, on its SMs. A CI's own range is not in the device's view:
 * GIs of several CIs are refused. */
static int green_group(const gs_device_t *dev, unsigned g,
                       gs_serve_instance_t *inst, gs_error_t *err) {
  const gs_gi_t *gi = &dev->layout.gi[g];
  if (!dev->sm_count[g])
    return GS_OK;
  if (gi->n_ci > 1)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "GPU instance %u on device %u has %u compute "
                        "instances: serve under green isolation serves GPU "
                        "instances of one compute instance",
                        gi->id, dev->index, gi->n_ci);
  snprintf(inst->group, sizeof inst->group, "gpu%u", dev->index);
  inst->sm_first = dev->sm_first[g];
  inst->sm_count = dev->sm_count[g];
  return GS_OK;
}

/* Every CI of every GI the selection takes, from the backend's layout. */
static int list_instances(void *ctx, gs_serve_instance_t *out, size_t max,
                          size_t *n, gs_error_t *err) {
  serve_cli_t *sc = ctx;
  gs_backend_t *be;
  gs_device_t *devs;
  unsigned n_dev;
  *n = 0;
  int rc = cli_open_devices(sc->cli, &be, &devs, &n_dev, err);
  if (rc != GS_OK)
    return rc;
  for (unsigned d = 0; d < n_dev && rc == GS_OK; d++) {
    const gs_layout_t *l = &devs[d].layout;
    for (unsigned g = 0; g < l->n_gi && rc == GS_OK; g++) {
      const gs_gi_t *gi = &l->gi[g];
      const gs_gi_profile_t *p =
          gs_catalog_gi(&devs[d].catalog, gi->profile_id);
      for (unsigned c = 0; c < gi->n_ci && *n < max && rc == GS_OK; c++)
        if (selected(sc, be, &devs[d], gi, &gi->ci[c], p ? p->name : "?")) {
          describe(&out[*n], &devs[d], gi, &gi->ci[c], p);
          out[*n].rate_limit = rate_of(sc, be, &devs[d], gi, &gi->ci[c]);
          rc = green_group(&devs[d], g, &out[(*n)++], err);
        }
    }
  }
  free(devs);
  gs_backend_close(be);
  return rc;
}

/* ---- how a worker starts ----------------------------------------------- */

typedef struct argv_builder_s {
  char **argv;
  unsigned n;
  char *buf;
  size_t used, size;
  bool full;
} argv_builder_t;

static void arg(argv_builder_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void arg(argv_builder_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(b->buf + b->used, b->size - b->used, fmt, ap);
  va_end(ap);
  if (len < 0 || b->used + (size_t)len + 1 > b->size ||
      b->n + 1 >= GS_SERVE_MAX_ARGS) {
    b->full = true;
    return;
  }
  b->argv[b->n++] = b->buf + b->used;
  b->argv[b->n] = NULL;
  b->used += (size_t)len + 1;
}

/* serve's model control (busy-poll, GPU wait) options, as the worker takes
 * them, for a worker added while the serve served n_served instances.
 * --gpu-wait auto blocks when the serve runs several workers: a run's
 * waiting thread then sleeps instead of spinning a core, which the driver's
 * cuStreamSynchronize does while a process has fewer contexts than cores,
 * so that seven instances' sessions, their loops and their clients share
 * the host's cores (docs/BENCHMARKS.md, run 16); one worker alone keeps the
 * driver's spin, a wake-up shorter. A worker keeps the wait it started
 * with. */
static void model_control_args(argv_builder_t *b, const serve_cli_t *sc,
                               unsigned n_served) {
  if (sc->model_control_mode)
    arg(b, "--model-control-mode=%s", sc->model_control_mode);
  if (sc->load_models)
    arg(b, "--load-model=%s", sc->load_models);
  if (sc->poll_secs)
    arg(b, "--repository-poll-secs=%u", sc->poll_secs);
  if (sc->server_name)
    arg(b, "--server-name=%s", sc->server_name);
  if (sc->busy_poll_us)
    arg(b, "--busy-poll-us=%u", sc->busy_poll_us);
  static const char *const waits[] = GS_WORKER_GPU_WAIT_NAMES;
  if (sc->gpu_wait != GS_WORKER_GPU_WAIT_AUTO)
    arg(b, "--gpu-wait=%s", waits[sc->gpu_wait]);
  else if (!sc->busy_poll_us &&
           (n_served > 1 || sc->opt.workers_per_instance > 1))
    arg(b, "--gpu-wait=block");
  /* a worker whose device failed exits, and is restarted, at once */
  arg(b, "--exit-on-device-failure");
  if (sc->plan_before_ready)
    arg(b, "--plan-before-ready=%s", sc->plan_before_ready);
  if (sc->conv_cache)
    arg(b, "--conv-cache=%s", sc->conv_cache);
  else /* run's worker does not see serve's --state-dir */
    arg(b, "--conv-cache=%s/conv-cache", sc->cli->state_dir);
}

/* self --backend B --state-dir D run -i UUID [--memory M] -- self worker
 * --model-repository R --http-port 0 --grpc-port 0|.. --metrics-port 0
 * --ready-fd 3 [--threads N] */
static int worker_argv(void *ctx, const gs_serve_instance_t *inst, unsigned n,
                       char **argv, char *buf, size_t size, gs_error_t *err) {
  serve_cli_t *sc = ctx;
  argv_builder_t b = {.argv = argv, .buf = buf, .size = size};
  (void)n;
  arg(&b, "%s", sc->self);
  if (sc->cli->backend)
    arg(&b, "--backend=%s", sc->cli->backend);
  arg(&b, "--state-dir=%s", sc->cli->state_dir);
  arg(&b, "run");
  arg(&b, "-i");
  arg(&b, "%s", inst->uuid);
  /* the soft backend splits an instance's memory among its processes */
  if (sc->opt.workers_per_instance > 1 && inst->memory_mib)
    arg(&b, "--memory=%lluM", inst->memory_mib / sc->opt.workers_per_instance);
  arg(&b, "--");
  arg(&b, "%s", sc->self);
  arg(&b, "worker");
  arg(&b, "--model-repository=%s", sc->model_repository);
  arg(&b, "--http-port=0");
  arg(&b, "--grpc-port=%s", sc->opt.grpc ? "any" : "0");
  arg(&b, "--metrics-port=0");
  arg(&b, "--ready-fd=3");
  if (sc->threads)
    arg(&b, "--threads=%u", sc->threads);
  if (sc->raised)
    arg(&b, "--nice=%d", ROUTER_BOOST);
  if (inst->rate_limit) { /* the instance's limit, split among its workers */
    unsigned k =
        sc->opt.workers_per_instance ? sc->opt.workers_per_instance : 1;
    arg(&b, "--rate-limit=%u", (inst->rate_limit + k - 1) / k);
  }
  model_control_args(&b, sc, inst->n_served);
  if (b.full)
    return gs_error_set(err, GS_ELIMIT,
                        "the worker's command line for %s "
                        "is too long",
                        inst->id);
  return GS_OK;
}

/* One process for a GPU's instances under green isolation: self ... run
 * --group -i UUID -- self worker ... --control-fd 4 --instance
 * ID=FIRST:COUNT per instance (instances joining later come over fd 4).
 * Through `run` as every worker: its environment gives the process its GPU
 * (CUDA_VISIBLE_DEVICES) and no MPS; --group counts it in no instance (UUID,
 * any member's, names the GPU), so any member can leave and be destroyed
 * while the others serve on; each instance's SMs come from --instance. */
static int group_argv(void *ctx, const char *group,
                      const gs_serve_instance_t *insts, size_t n, char **argv,
                      char *buf, size_t size, gs_error_t *err) {
  serve_cli_t *sc = ctx;
  argv_builder_t b = {.argv = argv, .buf = buf, .size = size};
  arg(&b, "%s", sc->self);
  if (sc->cli->backend)
    arg(&b, "--backend=%s", sc->cli->backend);
  arg(&b, "--state-dir=%s", sc->cli->state_dir);
  arg(&b, "run");
  arg(&b, "--group");
  arg(&b, "-i");
  arg(&b, "%s", insts[0].uuid);
  arg(&b, "--");
  arg(&b, "%s", sc->self);
  arg(&b, "worker");
  arg(&b, "--model-repository=%s", sc->model_repository);
  arg(&b, "--grpc-port=%s", sc->opt.grpc ? "any" : "0");
  arg(&b, "--ready-fd=3");
  arg(&b, "--control-fd=4");
  if (sc->threads)
    arg(&b, "--threads=%u", sc->threads);
  if (sc->raised)
    arg(&b, "--nice=%d", ROUTER_BOOST);
  unsigned n_served = 0;
  for (size_t i = 0; i < n; i++)
    n_served = insts[i].n_served > n_served ? insts[i].n_served : n_served;
  model_control_args(&b, sc, n_served);
  for (size_t i = 0; i < n; i++) {
    char rate[32] = "";
    if (insts[i].rate_limit)
      snprintf(rate, sizeof rate, ",rate=%u", insts[i].rate_limit);
    arg(&b, "--instance=%s=%u:%u%s", insts[i].id, insts[i].sm_first,
        insts[i].sm_count, rate);
  }
  if (b.full)
    return gs_error_set(err, GS_ELIMIT,
                        "the worker's command line for %s "
                        "is too long",
                        group);
  return GS_OK;
}

#define FD_LIMIT 4096

/* The descriptors open now (below FD_LIMIT), as a bitmap; the listing's
 * own left out. */
static void open_fds(unsigned char set[FD_LIMIT / 8]) {
  memset(set, 0, FD_LIMIT / 8);
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    char *end;
    long fd = strtol(e->d_name, &end, 10);
    if (e->d_name[0] != '.' && *end == '\0' && fd >= 0 && fd < FD_LIMIT &&
        fd != dirfd(d))
      set[fd / 8] |= (unsigned char)(1u << (fd % 8));
  }
  if (d)
    closedir(d);
}

/* member_hold's backend, opened once and kept while the serve runs. The
 * descriptors its open made (NVML's device files) are marked
 * close-on-exec, so that the workers spawned later do not inherit them. */
static int hold_backend(serve_cli_t *sc, gs_error_t *err) {
  unsigned char before[FD_LIMIT / 8], after[FD_LIMIT / 8];
  if (sc->hold_be)
    return GS_OK;
  open_fds(before);
  int rc = cli_open_backend(sc->cli, &sc->hold_be, err);
  open_fds(after);
  for (int fd = 0; fd < FD_LIMIT; fd++) {
    int flags;
    if ((after[fd / 8] & ~before[fd / 8]) & (1u << (fd % 8)) &&
        (flags = fcntl(fd, F_GETFD)) >= 0 && !(flags & FD_CLOEXEC))
      fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
  return rc;
}

/* The group's process counted in inst (or no longer): busy while it
 * serves inst, holding its memory (the backend's hold). */
static int member_hold(void *ctx, const gs_serve_instance_t *inst, int pid,
                       bool on, gs_error_t *err) {
  serve_cli_t *sc = ctx;
  gs_instance_ref_t ref;
  int rc = hold_backend(sc, err);
  gs_backend_t *be = sc->hold_be;
  if (rc == GS_OK)
    rc = gs_instance_ref_parse(be, inst->uuid, &ref, err);
  if (rc == GS_OK && !be->ops->hold)
    rc = gs_error_set(err, GS_EUNSUPPORTED,
                      "the %s backend cannot count one process in several "
                      "instances",
                      be->ops->name);
  if (rc == GS_OK)
    rc = be->ops->hold(be, ref.dev, ref.gi_id,
                       ref.ci_id >= 0 ? (unsigned)ref.ci_id : 0, (pid_t)pid, on,
                       err);
  return rc;
}

/* ---- the running serve, from the outside ------------------------------- */

static int write_serve_file(serve_cli_t *sc, gs_serve_t *s, gs_error_t *err) {
  char path[PATH_MAX], tmp[PATH_MAX + 8];
  snprintf(path, sizeof path, "%s/serve.json", sc->cli->state_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  json_t *doc = json_pack("{s:i, s:s, s:i, s:i, s:s}", "pid", (int)getpid(),
                          "host", sc->opt.host ? sc->opt.host : "127.0.0.1",
                          "http_port", (int)gs_serve_http_port(s), "grpc_port",
                          (int)gs_serve_grpc_port(s), "logs", sc->opt.log_dir);
  int rc =
      json_dump_file(doc, tmp, JSON_INDENT(2)) == 0 && rename(tmp, path) == 0
          ? GS_OK
          : gs_error_sys(err, errno, "cannot write %s", path);
  json_decref(doc);
  return rc;
}

/* Finds the running serve through STATE_DIR/serve.json. */
static int find_serve(serve_cli_t *sc, char *host, size_t host_size,
                      unsigned *port, gs_error_t *err) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/serve.json", sc->cli->state_dir);
  json_error_t jerr;
  json_t *doc = json_load_file(path, 0, &jerr);
  const char *h = NULL;
  int p = 0, pid = 0;
  if (!doc ||
      json_unpack(doc, "{s:s, s:i, s:i}", "host", &h, "http_port", &p, "pid",
                  &pid) != 0 ||
      kill(pid, 0) != 0) {
    json_decref(doc);
    return gs_error_set(err, GS_ENOTFOUND,
                        "no gpuslice serve is running for state directory %s",
                        sc->cli->state_dir);
  }
  snprintf(host, host_size, "%s", h);
  *port = (unsigned)p;
  json_decref(doc);
  return GS_OK;
}

static void print_status(json_t *doc) {
  json_t *workers = json_object_get(doc, "workers"), *w;
  size_t i;
  printf("router: http %lld, grpc %lld, policy %s, %lld requests, %lld "
         "retried, %lld failed%s\n",
         json_integer_value(json_object_get(doc, "http_port")),
         json_integer_value(json_object_get(doc, "grpc_port")),
         json_string_value(json_object_get(doc, "policy")),
         json_integer_value(json_object_get(doc, "requests")),
         json_integer_value(json_object_get(doc, "retries")),
         json_integer_value(json_object_get(doc, "failures")),
         json_is_true(json_object_get(doc, "draining")) ? ", draining" : "");
  cli_table_t t = {0};
  static const char *const cols[] = {
      "WORKER", "INSTANCE", "PROFILE", "STATE", "PID",     "PROCESS",
      "SMS",    "REQUESTS", "FAILED",  "P99",   "RESTARTS"};
  cli_table_header(&t, 11, cols);
  json_array_foreach(workers, i, w) {
    char pid[16], req[24], fail[24], p99[24], rst[16], sms[32] = "-";
#define I(key) json_integer_value(json_object_get(w, key))
#define S(key) json_string_value(json_object_get(w, key))
    snprintf(pid, sizeof pid, "%lld", I("pid"));
    snprintf(req, sizeof req, "%lld", I("requests"));
    snprintf(fail, sizeof fail, "%lld", I("failures"));
    snprintf(p99, sizeof p99, "%.2f ms", (double)I("p99_us") / 1000.0);
    snprintf(rst, sizeof rst, "%lld", I("restarts"));
    json_t *part = json_object_get(w, "sm_partition");
    if (part) /* green isolation: the instance's SMs in its GPU's process */
      snprintf(sms, sizeof sms, "%lld@%lld",
               json_integer_value(json_object_get(part, "count")),
               json_integer_value(json_object_get(part, "first")));
    cli_table_row(&t, S("worker"), S("instance"), S("profile"), S("state"), pid,
                  S("process"), sms, req, fail, p99, rst);
#undef I
#undef S
  }
  cli_table_print(&t, stdout);
}

static int client_call(serve_cli_t *sc) {
  char host[64], path[256];
  unsigned port = 0;
  gs_error_t err;
  int status;
  char *body = NULL;
  const char *method = "GET";
  snprintf(path, sizeof path, "/gpuslice/v1/workers");
  if (sc->add || sc->remove) {
    method = sc->add ? "POST" : "DELETE";
    snprintf(path, sizeof path, "/gpuslice/v1/instances/%s",
             sc->add ? sc->add : sc->remove);
  } else if (sc->sync) {
    method = "POST";
    snprintf(path, sizeof path, "/gpuslice/v1/sync");
  }
  if (find_serve(sc, host, sizeof host, &port, &err) != GS_OK ||
      cli_http_call(host, port, method, path, NULL, 10000, &status, &body,
                    &err) != GS_OK)
    return cli_fail("serve", &err);
  json_t *doc = json_loads(body, 0, NULL);
  int rc = CLI_OK;
  if (status != 200) {
    json_t *e = json_object_get(doc, "error");
    fprintf(stderr, "gpuslice: serve: %s\n",
            json_is_string(e) ? json_string_value(e) : body);
    rc = status == 404 ? CLI_USAGE : CLI_FAIL;
  } else if (!sc->cli->json && (json_object_get(doc, "added") ||
                                json_object_get(doc, "removed"))) {
    /* an add or remove answers with the instance and the worker count */
    json_t *id = json_object_get(doc, "added");
    printf("%s %s: %lld workers\n", id ? "added" : "removed",
           json_string_value(id ? id : json_object_get(doc, "removed")),
           json_integer_value(json_object_get(doc, "workers")));
  } else if (sc->cli->json || !json_is_array(json_object_get(doc, "workers"))) {
    char *text = json_dumps(doc, JSON_INDENT(2));
    puts(text ? text : body);
    free(text);
  } else {
    print_status(doc);
  }
  json_decref(doc);
  free(body);
  return rc;
}

/* ---- serving ----------------------------------------------------------- */

static int prepare(serve_cli_t *sc, gs_error_t *err) {
  static char log_dir[PATH_MAX], self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return gs_error_sys(err, errno,
                        "cannot find this program (/proc/self/exe)");
  self[n] = '\0';
  sc->self = self;
  /* checked before anything is created: bad input changes nothing */
  struct stat st;
  if (stat(sc->model_repository, &st) != 0 || !S_ISDIR(st.st_mode))
    return gs_error_set(err, GS_EINVAL,
                        "--model-repository %s is not a directory",
                        sc->model_repository);
  if (!sc->opt.log_dir) {
    snprintf(log_dir, sizeof log_dir, "%s/serve-logs", sc->cli->state_dir);
    sc->opt.log_dir = log_dir;
  }
  if (mkdir(sc->cli->state_dir, 0755) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "cannot create %s", sc->cli->state_dir);
  if (mkdir(sc->opt.log_dir, 0755) != 0 && errno != EEXIST)
    return gs_error_sys(err, errno, "cannot create %s", sc->opt.log_dir);
  static char watch[PATH_MAX];
  snprintf(watch, sizeof watch, "%s/state.json", sc->cli->state_dir);
  sc->opt.watch_path = watch;
  return GS_OK;
}

/* The router is the one door to every worker: when a busy worker holds the
 * core the router wakes on, every request waits. So the serve raises its
 * own priority where it may (root) and its workers go back to where they
 * were (worker --nice): the router sits above its workers and nothing else
 * on the machine moves. Measured: docs/BENCHMARKS.md, router vs nginx. */
static bool raise_router(void) {
  errno = 0;
  int now = getpriority(PRIO_PROCESS, 0);
  if (errno)
    return false;
  return setpriority(PRIO_PROCESS, 0, now - ROUTER_BOOST) == 0;
}

/* GI, DEV:GI or DEV:GI:CI: numbers, one to three. */
static bool numeric_id(const char *id) {
  unsigned fields = 0;
  for (const char *p = id; *p; p += *p == ':') {
    size_t digits = strspn(p, "0123456789");
    if (!digits || ++fields > 3 || (p[digits] && p[digits] != ':'))
      return false;
    p += digits;
    if (*p == ':' && !p[1])
      return false;
  }
  return fields > 0;
}

/* An ID of --rate-limit that names no instance served now: said when it
 * is a numeric ID (GI, DEV:GI, DEV:GI:CI: the instance may be created
 * later) or the UUID of an instance not served; else refused. */
static int check_unused_rate(serve_cli_t *sc, unsigned i) {
  const char *id = sc->rates.rate[i].id;
  if (!numeric_id(id)) {
    gs_backend_t *be;
    gs_error_t err;
    gs_instance_ref_t ref;
    if (cli_open_backend(sc->cli, &be, &err) != GS_OK)
      return cli_fail("serve", &err);
    int rc = gs_instance_ref_parse(be, id, &ref, &err);
    gs_backend_close(be);
    if (rc != GS_OK)
      return cli_usage("serve", "--rate-limit names %s: %s", id, err.msg);
  }
  fprintf(stderr,
          "gpuslice serve: --rate-limit names %s, which is no instance "
          "served now; its limit applies if it is created\n",
          id);
  return CLI_OK;
}

/* --rate-limit's IDs against the instances served now: one that is no
 * instance ID at all, or two IDs of one instance, are refused; a
 * well-formed ID of no instance served now is said (serve follows the
 * layout: the instance may be created later), so that a typo does not pass
 * silently. */
static int check_rates(serve_cli_t *sc) {
  size_t n = 0;
  gs_error_t err;
  gs_serve_instance_t *list = calloc(CHECK_MAX_INSTANCES, sizeof *list);
  if (!list)
    return cli_fail("serve",
                    &(gs_error_t){.code = GS_ENOMEM, .msg = "out of memory"});
  memset(sc->rate_used, 0, sizeof sc->rate_used);
  sc->rate_twice[0] = '\0';
  int rc = list_instances(sc, list, CHECK_MAX_INSTANCES, &n, &err);
  free(list);
  if (rc != GS_OK)
    return cli_fail("serve", &err);
  if (sc->rate_twice[0])
    return cli_usage("serve", "--rate-limit names one instance twice (%s)",
                     sc->rate_twice);
  for (unsigned i = 0; i < sc->rates.n; i++)
    if (!sc->rate_used[i] && (rc = check_unused_rate(sc, i)) != CLI_OK)
      return rc;
  return CLI_OK;
}

static int serve(serve_cli_t *sc) {
  gs_error_t err;
  int rc;
  sc->raised = raise_router();
  sc->opt.worker_argv = worker_argv;
  sc->opt.group_argv = group_argv;
  sc->opt.member_hold = member_hold;
  sc->opt.list_instances = list_instances;
  sc->opt.log = log_line;
  sc->opt.ctx = sc;
  sc->opt.stop_flag = &stop_requested;
  if (prepare(sc, &err) != GS_OK)
    return cli_fail("serve", &err);
  if (sc->rates.n && (rc = check_rates(sc)) != CLI_OK)
    return rc;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  gs_serve_t *s;
  if (gs_serve_create(&s, &sc->opt, &err) != GS_OK)
    return cli_fail("serve", &err);
  running = s;
  if (stop_requested) /* the signal came between create and here */
    gs_serve_stop(s);
  if (write_serve_file(sc, s, &err) != GS_OK)
    fprintf(stderr,
            "gpuslice: serve: %s (serve --status will not find "
            "it)\n",
            err.msg);
  fprintf(stderr, "gpuslice serve: ready: http://%s:%u",
          sc->opt.host ? sc->opt.host : "127.0.0.1", gs_serve_http_port(s));
  if (sc->opt.grpc)
    fprintf(stderr, ", gRPC %s:%u", sc->opt.host ? sc->opt.host : "127.0.0.1",
            gs_serve_grpc_port(s));
  fprintf(stderr, " (logs in %s)\n", sc->opt.log_dir);
  rc = gs_serve_run(s, &err);
  running = NULL;
  gs_serve_destroy(s);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/serve.json", sc->cli->state_dir);
  unlink(path);
  fprintf(stderr, "gpuslice serve: stopped\n");
  return rc == GS_OK ? CLI_OK : cli_fail("serve", &err);
}

int cmd_serve(cli_t *cli, int argc, char **argv) {
  serve_cli_t sc = {.cli = cli};
  int rc = serve_cli_parse(&sc, argc, argv);
  if (rc == CLI_OK && !sc.help)
    rc = sc.status || sc.add || sc.remove || sc.sync ? client_call(&sc)
                                                     : serve(&sc);
  serve_cli_release(&sc);
  return rc;
}
