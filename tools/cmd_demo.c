/* gpuslice demo: NVIDIA's MIG flower demo, end to end, on whatever this
 * machine is. Partition the device into its smallest instances, serve the
 * demo model on one of them and then on all of them behind the router,
 * sweep concurrency with the perf engine, print one table and draw the
 * throughput and p99 curves with the latency budget across. Every step
 * runs this same program (create, serve, destroy) so the demo uses exactly
 * what users run; its instances live in a state directory of its own and
 * are gone at the end, also after Ctrl-C. */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_http.h"
#include "gpuslice/perf.h"
#include "gpuslice/plot.h"

#define MAX_LEVELS 16

typedef struct demo_run_s {
  char label[96];
  unsigned instances;
  size_t n;
  gs_perf_result_t levels[MAX_LEVELS];
} demo_run_t;

typedef struct demo_s {
  cli_t *cli;
  const char *models, *model, *out_dir, *backend;
  char self[4096], state_dir[4096], profile[64];
  char shape[160];
  unsigned n_instances, window_ms;
  unsigned levels[MAX_LEVELS];
  size_t n_levels;
  double budget_ms;
  demo_run_t runs[2];
} demo_t;

static volatile sig_atomic_t interrupted;
static volatile pid_t serve_pid;

static void on_interrupt(int sig) {
  (void)sig;
  interrupted = 1;
  if (serve_pid > 0)
    kill(serve_pid, SIGTERM); /* the perf run in progress then fails fast */
}

/* Runs `self --backend B --state-dir D ARGS...`; its output goes to
 * log (NULL: inherited). Returns its exit status, -1 when it did not run. */
static int run_self(demo_t *d, const char *log, char *const args[]) {
  char *argv[64];
  char backend[64], state[4200];
  size_t n = 0;
  snprintf(backend, sizeof backend, "--backend=%s", d->backend);
  snprintf(state, sizeof state, "--state-dir=%s", d->state_dir);
  argv[n++] = d->self;
  argv[n++] = backend;
  argv[n++] = state;
  for (size_t i = 0; args[i] && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    if (log && !freopen(log, "a", stdout))
      _exit(127);
    if (log)
      dup2(fileno(stdout), 2);
    signal(SIGINT, SIG_IGN); /* Ctrl-C is the demo's to handle */
    execv(d->self, argv);
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- steps --------------------------------------------------------------- */

/* The smallest profile of device 0 (no +me variant) and how many fit. */
static int pick_profile(demo_t *d, gs_backend_t *be, gs_error_t *err) {
  gs_device_t *dev = calloc(1, sizeof *dev);
  if (!dev)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = be->ops->device_get(be, 0, dev, err);
  for (unsigned i = 0; rc == GS_OK && i < dev->catalog.n_gi; i++) {
    const gs_gi_profile_t *p = &dev->catalog.gi[i]; /* fewest slices first */
    if (p->media_extensions || p->max_count == 0)
      continue;
    snprintf(d->profile, sizeof d->profile, "%s", p->name);
    if (!d->n_instances)
      d->n_instances = p->max_count;
    break;
  }
  if (rc == GS_OK && !d->profile[0])
    rc = gs_error_set(err, GS_ENOTFOUND, "device 0 has no profile to use");
  free(dev);
  return rc;
}

static int start_serve(demo_t *d, unsigned *port) {
  char log[4200], models[4200];
  if (interrupted)
    return -1;
  snprintf(log, sizeof log, "%s/serve.log", d->state_dir);
  snprintf(models, sizeof models, "--model-repository=%s", d->models);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    char backend[64], state[4200];
    snprintf(backend, sizeof backend, "--backend=%s", d->backend);
    snprintf(state, sizeof state, "--state-dir=%s", d->state_dir);
    if (!freopen(log, "a", stderr))
      _exit(127);
    signal(SIGINT, SIG_IGN);
    execl(d->self, d->self, backend, state, "serve", models, "--http-port=0",
          "--grpc-port=0", (char *)NULL);
    _exit(127);
  }
  serve_pid = pid;
  char path[4200];
  snprintf(path, sizeof path, "%s/serve.json", d->state_dir);
  for (int i = 0; i < 1200 && !interrupted; i++) { /* 120 s */
    json_t *doc = json_load_file(path, 0, NULL);
    int p = (int)json_integer_value(json_object_get(doc, "http_port"));
    json_decref(doc);
    if (p > 0) {
      *port = (unsigned)p;
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
  fprintf(stderr, "    concurrency %3.0f: %8.1f infer/s, p50 %7.2f ms, p99 "
                  "%7.2f ms%s\n",
          r->level, r->throughput, r->p50_us / 1000, r->p99_us / 1000,
          r->stable ? "" : "  (not stable)");
}

/* One concurrency at a time, so a level that does not stabilise is kept
 * (marked) rather than ending the sweep. */
static int sweep(demo_t *d, unsigned port, demo_run_t *run) {
  gs_perf_options_t o = {.host = "127.0.0.1",
                         .port = port,
                         .model = d->model,
                         .window_ms = d->window_ms,
                         .stability_pct = 15,
                         .max_trials = 6,
                         .n_shapes = 1};
  gs_error_t err;
  if (gs_perf_parse_shape(d->shape, &o.shapes[0], &err) != GS_OK) {
    fprintf(stderr, "gpuslice: demo: %s\n", err.msg);
    return -1;
  }
  for (size_t i = 0; i < d->n_levels && !interrupted; i++) {
    gs_perf_report_t rep = {0};
    o.range = (gs_perf_range_t){d->levels[i], d->levels[i], 1};
    int rc = gs_perf_run(&o, on_level, NULL, &rep, &err);
    if (rep.n > 0)
      run->levels[run->n++] = rep.levels[rep.n - 1];
    gs_perf_report_release(&rep);
    if (rc != GS_OK && rc != GS_ELIMIT) {
      if (!interrupted)
        fprintf(stderr, "gpuslice: demo: %s\n", err.msg);
      return -1;
    }
  }
  return interrupted ? -1 : 0;
}

/* One configuration: create `count` instances, serve, sweep, tear down. */
static int measure(demo_t *d, unsigned count, demo_run_t *run) {
  char *destroy[] = {"destroy", "--all", NULL};
  char *create[80] = {"create"};
  for (unsigned i = 0; i < count && i < 70; i++)
    create[i + 1] = d->profile;
  create[count + 1] = NULL;
  snprintf(run->label, sizeof run->label, "%u x %s", count, d->profile);
  run->instances = count;
  fprintf(stderr, "  %s: creating instances, starting gpuslice serve\n",
          run->label);
  char log[4200];
  snprintf(log, sizeof log, "%s/steps.log", d->state_dir);
  unsigned port = 0;
  int rc = run_self(d, log, create) == 0 ? 0 : -1;
  if (rc == 0 && (rc = start_serve(d, &port)) != 0 && !interrupted)
    fprintf(stderr, "gpuslice: demo: gpuslice serve did not start; see "
                    "%s/serve.log\n", d->state_dir);
  if (rc == 0) {
    fprintf(stderr, "  %s: sweeping concurrency (%u ms windows)\n",
            run->label, d->window_ms);
    rc = sweep(d, port, run);
  }
  stop_serve();
  run_self(d, log, destroy);
  return rc;
}

/* ---- report ---------------------------------------------------------------
 */

/* The highest concurrency whose p99 is within the budget; -1 none. */
static long within_budget(const demo_t *d, const demo_run_t *run) {
  long best = -1;
  for (size_t i = 0; i < run->n; i++)
    if (run->levels[i].p99_us <= d->budget_ms * 1000)
      best = (long)i;
  return best;
}

static void print_table(const demo_t *d) {
  const demo_run_t *a = &d->runs[0], *b = &d->runs[1];
  printf("\n%-12s | %-30s | %-30s\n", "", a->label, b->label);
  printf("%-12s | %9s %9s %9s | %9s %9s %9s\n", "concurrency", "infer/s",
         "p50 ms", "p99 ms", "infer/s", "p50 ms", "p99 ms");
  printf("-------------+--------------------------------+-------------------"
         "-------------\n");
  size_t n = a->n > b->n ? a->n : b->n;
  for (size_t i = 0; i < n; i++) {
    printf("%-12u |", d->levels[i]);
    for (const demo_run_t *r = a; r <= b; r++) {
      if (i < r->n)
        printf(" %9.1f %9.2f %9.2f%s|", r->levels[i].throughput,
               r->levels[i].p50_us / 1000, r->levels[i].p99_us / 1000,
               r->levels[i].stable ? " " : "*");
      else
        printf(" %9s %9s %9s |", "-", "-", "-");
    }
    printf("\n");
  }
  for (const demo_run_t *r = a; r <= b; r++) {
    long k = within_budget(d, r);
    if (k < 0)
      printf("%s: no concurrency keeps p99 within %.0f ms\n", r->label,
             d->budget_ms);
    else
      printf("%s: within the %.0f ms p99 budget up to concurrency %.0f, "
             "%.1f infer/s\n",
             r->label, d->budget_ms, r->levels[k].level,
             r->levels[k].throughput);
  }
  double best_a = 0, best_b = 0;
  for (size_t i = 0; i < a->n; i++)
    best_a = fmax(best_a, a->levels[i].throughput);
  for (size_t i = 0; i < b->n; i++)
    best_b = fmax(best_b, b->levels[i].throughput);
  if (best_a > 0)
    printf("peak throughput: %.1f vs %.1f infer/s (%.2fx)\n", best_a, best_b,
           best_b / best_a);
  printf("(* = not stable within the trials: noisy machine)\n");
}

static int write_plots(const demo_t *d, char *path, size_t size) {
  double x[2][MAX_LEVELS], thr[2][MAX_LEVELS], p99[2][MAX_LEVELS];
  gs_plot_series_t t_series[2], l_series[2];
  for (int r = 0; r < 2; r++) {
    const demo_run_t *run = &d->runs[r];
    for (size_t i = 0; i < run->n; i++) {
      x[r][i] = run->levels[i].level;
      thr[r][i] = run->levels[i].throughput;
      p99[r][i] = run->levels[i].p99_us / 1000;
    }
    t_series[r] = (gs_plot_series_t){run->label, run->n, x[r], thr[r]};
    l_series[r] = (gs_plot_series_t){run->label, run->n, x[r], p99[r]};
  }
  char budget[64], title[256];
  snprintf(budget, sizeof budget, "budget %.0f ms", d->budget_ms);
  gs_plot_chart_t charts[2] = {
      {.title = "Throughput",
       .x_label = "concurrency (requests in flight)",
       .y_label = "inferences/s",
       .log_x = true,
       .n_series = 2,
       .series = t_series},
      {.title = "p99 latency",
       .x_label = "concurrency (requests in flight)",
       .y_label = "p99 latency (ms)",
       .log_x = true,
       .n_series = 2,
       .series = l_series,
       .budget = d->budget_ms,
       .budget_label = budget}};
  snprintf(title, sizeof title, "gpuslice demo: %s on the %s backend, 1 vs %u "
           "instances", d->model, d->backend, d->n_instances);
  snprintf(path, size, "%s/gpuslice-demo.svg", d->out_dir);
  gs_error_t err;
  if (d->runs[0].n == 0 || d->runs[1].n == 0 ||
      gs_plot_svg_write(path, charts, 2, title, &err) != GS_OK) {
    fprintf(stderr, "gpuslice: demo: no plot: %s\n",
            d->runs[0].n && d->runs[1].n ? err.msg : "a run has no results");
    return -1;
  }
  return 0;
}

/* ---- setup and main -------------------------------------------------------
 */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int parse_levels(demo_t *d, const char *text) {
  char copy[256];
  snprintf(copy, sizeof copy, "%s", text);
  d->n_levels = 0;
  for (char *save, *tok = strtok_r(copy, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    gs_error_t err;
    unsigned v;
    if (d->n_levels == MAX_LEVELS ||
        cli_parse_uint(tok, "--concurrency", 4096, &v, &err) != GS_OK ||
        v == 0 || (d->n_levels && v <= d->levels[d->n_levels - 1]))
      return cli_usage("demo", "--concurrency takes up to %d rising numbers "
                       "1..4096 separated by commas, not '%s'",
                       MAX_LEVELS, text);
    d->levels[d->n_levels++] = v;
  }
  return d->n_levels ? CLI_OK : cli_usage("demo", "--concurrency is empty");
}

static const char usage[] =
    "usage: gpuslice demo [--model-repository DIR] [--model NAME] "
    "[--shape NAME:DIMS]\n"
    "         [--instances N] [--concurrency C1,C2,...] [--window MS]\n"
    "         [--latency-budget MS] [--out DIR]\n"
    "  NVIDIA's MIG flower demo on this machine: the device cut into its\n"
    "  smallest instances; the model served on 1 of them, then on N behind\n"
    "  the router; throughput and p99 against concurrency; a table on\n"
    "  stdout and DIR/gpuslice-demo.svg (default: the current directory).\n"
    "  Defaults: models/ (python3 scripts/make_models.py), model classifier,\n"
    "  N = how many of the smallest profile fit, concurrency\n"
    "  1,2,4,8,16,32,64,128, 1000 ms windows, budget 50 ms. The backend is\n"
    "  --backend's, else the first that works (mig, soft, host); its\n"
    "  instances live in a temporary state directory and are destroyed at\n"
    "  the end, also on Ctrl-C.\n";

static int parse(demo_t *d, int argc, char **argv) {
  static const struct option opts[] = {
      {"model-repository", required_argument, NULL, 'm'},
      {"model", required_argument, NULL, 'M'},
      {"shape", required_argument, NULL, 's'},
      {"instances", required_argument, NULL, 'n'},
      {"concurrency", required_argument, NULL, 'c'},
      {"window", required_argument, NULL, 'w'},
      {"latency-budget", required_argument, NULL, 'b'},
      {"out", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  gs_error_t err;
  unsigned v;
  int c, rc = CLI_OK;
  optind = 0;
  while (rc == CLI_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'm': d->models = optarg; break;
    case 'M': d->model = optarg; break;
    case 's': snprintf(d->shape, sizeof d->shape, "%s", optarg); break;
    case 'o': d->out_dir = optarg; break;
    case 'c': rc = parse_levels(d, optarg); break;
    case 'n':
      if (cli_parse_uint(optarg, "--instances", 64, &d->n_instances, &err) ||
          d->n_instances < 2)
        rc = cli_usage("demo", "--instances is 2..64");
      break;
    case 'w':
      if (cli_parse_uint(optarg, "--window", 60000, &d->window_ms, &err) ||
          d->window_ms < 100)
        rc = cli_usage("demo", "--window is 100..60000 ms");
      break;
    case 'b':
      if (cli_parse_uint(optarg, "--latency-budget", 100000, &v, &err) || !v)
        rc = cli_usage("demo", "--latency-budget is 1..100000 ms");
      d->budget_ms = v;
      break;
    case 'h': fputs(usage, stdout); return -1;
    default: rc = cli_usage("demo", "bad option (gpuslice demo --help)");
    }
  }
  if (rc == CLI_OK && optind < argc)
    rc = cli_usage("demo", "unexpected argument '%s'", argv[optind]);
  return rc;
}

/* The backend to run on and a private state directory for its instances. */
static int prepare(demo_t *d) {
  gs_error_t err;
  gs_backend_t *be;
  if (cli_open_backend(d->cli, &be, &err) != GS_OK)
    return cli_fail("demo", &err);
  d->backend = be->ops->name; /* a static string: outlives be */
  int rc = pick_profile(d, be, &err);
  gs_backend_close(be);
  if (rc != GS_OK)
    return cli_fail("demo", &err);
  if (strcmp(d->backend, "mig") == 0) {
    fprintf(stderr, "gpuslice: demo: on MIG hardware the demo would change the "
            "GPU's real layout; run the steps by hand (create, serve, perf) "
            "or use --backend soft\n");
    return CLI_FAIL;
  }
  struct stat st;
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/%s/1", d->models, d->model);
  if (stat(probe, &st) != 0) {
    fprintf(stderr, "gpuslice: demo: no model '%s' in %s (make it with: "
            "python3 scripts/make_models.py --out %s)\n", d->model,
            d->models, d->models);
    return CLI_USAGE;
  }
  ssize_t n = readlink("/proc/self/exe", d->self, sizeof d->self - 1);
  const char *tmpdir = getenv("TMPDIR");
  snprintf(d->state_dir, sizeof d->state_dir, "%s/gpuslice-demo-XXXXXX",
           tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (n <= 0 || !mkdtemp(d->state_dir)) {
    perror("gpuslice: demo: setting up");
    return CLI_FAIL;
  }
  d->self[n] = '\0';
  return CLI_OK;
}

static void print_header(const demo_t *d) {
  time_t now = time(NULL);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  printf("gpuslice demo, %s: %s backend, model %s, %u x %s vs 1 x %s\n",
         date, d->backend, d->model, d->n_instances, d->profile, d->profile);
}

int cmd_demo(cli_t *cli, int argc, char **argv) {
  demo_t d = {.cli = cli,
              .models = "models",
              .model = "classifier",
              .out_dir = ".",
              .window_ms = 1000,
              .budget_ms = 50};
  parse_levels(&d, "1,2,4,8,16,32,64,128");
  int rc = parse(&d, argc, argv);
  if (rc != CLI_OK)
    return rc < 0 ? CLI_OK : rc;
  if (!d.shape[0])
    snprintf(d.shape, sizeof d.shape, "input:1,%s",
             strcmp(d.model, "mlp") == 0 ? "64" : "512");
  if ((rc = prepare(&d)) != CLI_OK)
    return rc;
  struct sigaction sa = {.sa_handler = on_interrupt};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  rc = CLI_FAIL;
  print_header(&d);
  fflush(stdout);
  fprintf(stderr, "[1/2] one instance\n");
  if (measure(&d, 1, &d.runs[0]) == 0) {
    fprintf(stderr, "[2/2] %u instances\n", d.n_instances);
    if (measure(&d, d.n_instances, &d.runs[1]) == 0)
      rc = CLI_OK;
  }
  if (rc == CLI_OK) {
    char plot[4200];
    print_table(&d);
    if (write_plots(&d, plot, sizeof plot) == 0)
      printf("plot: %s\n", plot);
  } else if (interrupted) {
    fprintf(stderr, "gpuslice: demo: interrupted; instances destroyed\n");
  } else {
    fprintf(stderr, "gpuslice: demo: failed; its logs are in %s\n",
            d.state_dir);
    return rc; /* the logs stay; the instances are destroyed */
  }
  nftw(d.state_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return interrupted ? 130 : rc;
}
