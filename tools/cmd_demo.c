/* gpuslice demo: NVIDIA's MIG flower demo, end to end, on whatever this
 * machine is: the device cut into its smallest instances, the model served
 * on one, on all of them behind the router, and (GPU engine) on the whole
 * GPU as one instance; concurrency swept, one table, one SVG. The pieces:
 * demo_plan.c, demo_run.c, demo_report.c; here the options and the order. */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

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
    if (d->n_levels == DEMO_MAX_LEVELS ||
        cli_parse_uint(tok, "--concurrency", 4096, &v, &err) != GS_OK ||
        v == 0 || (d->n_levels && v <= d->levels[d->n_levels - 1]))
      return cli_usage("demo",
                       "--concurrency takes up to %d rising numbers "
                       "1..4096 separated by commas, not '%s'",
                       DEMO_MAX_LEVELS, text);
    d->levels[d->n_levels++] = v;
  }
  return d->n_levels ? CLI_OK : cli_usage("demo", "--concurrency is empty");
}

static const char usage[] =
    "usage: gpuslice demo [--model-repository DIR] [--model NAME] "
    "[--shape NAME:DIMS]\n"
    "         [--instances N] [--concurrency C1,C2,...] [--window MS]\n"
    "         [--latency-budget MS] [--engine auto|gpu|cpu]\n"
    "         [--isolation MODE] [--out DIR] [--dry-run]\n"
    "  NVIDIA's MIG flower demo on this machine: the device cut into its\n"
    "  smallest instances; the model served on 1 of them, then on N behind\n"
    "  the router, and with the GPU engine on the whole GPU as one instance\n"
    "  (7g); throughput, p50 and p99 against concurrency; a table on stdout\n"
    "  and DIR/gpuslice-demo.svg (default: the current directory).\n"
    "  The backend is --backend's, else the first that works (mig, soft,\n"
    "  host). The engine (auto): the GPU's (CUDA provider, KIND_GPU, FP16)\n"
    "  on the mig and soft backends when it loads here, else the CPU's.\n"
    "  Defaults: models/ (python3 scripts/make_models.py [--models\n"
    "  resnet50]); model resnet50 on the GPU, classifier on the CPU; N = how\n"
    "  many of the smallest profile fit; concurrency 1,2,4,...,256 on the\n"
    "  GPU, 1,2,...,128 on the CPU; 1000 ms windows; budget 50 ms.\n"
    "  soft and host: the instances live in a temporary state directory and\n"
    "  are destroyed at the end, also on Ctrl-C; --isolation (soft: mps,\n"
    "  the default, or another the soft backend offers) is passed on.\n"
    "  mig: the MIG instances that exist are used and never changed (1 and\n"
    "  all of the smallest profile, and a whole-GPU one if it exists); with\n"
    "  none it says what to create and exits 1.\n"
    "  --dry-run prints the plan and runs nothing.\n";

static int parse_engine(demo_t *d, const char *text) {
  if (strcmp(text, "auto") == 0)
    d->engine = DEMO_ENGINE_AUTO;
  else if (strcmp(text, "gpu") == 0)
    d->engine = DEMO_ENGINE_GPU;
  else if (strcmp(text, "cpu") == 0)
    d->engine = DEMO_ENGINE_CPU;
  else
    return cli_usage("demo", "--engine is auto, gpu or cpu, not '%s'", text);
  return CLI_OK;
}

static int parse_number(const char *text, const char *what, unsigned lo,
                        unsigned hi, unsigned *out) {
  gs_error_t err;
  if (cli_parse_uint(text, what, hi, out, &err) != GS_OK || *out < lo)
    return cli_usage("demo", "%s is %u..%u, not '%s'", what, lo, hi, text);
  return CLI_OK;
}

static int parse_option(demo_t *d, int c, bool *levels_given) {
  unsigned v;
  int rc = CLI_OK;
  switch (c) {
  case 'm':
    d->models = optarg;
    break;
  case 'M':
    d->model = optarg;
    break;
  case 's':
    snprintf(d->shape, sizeof d->shape, "%s", optarg);
    break;
  case 'o':
    d->out_dir = optarg;
    break;
  case 'c':
    *levels_given = true;
    rc = parse_levels(d, optarg);
    break;
  case 'n':
    rc = parse_number(optarg, "--instances", 2, DEMO_MAX_INSTANCES,
                      &d->n_instances);
    break;
  case 'w':
    rc = parse_number(optarg, "--window", 100, 60000, &d->window_ms);
    break;
  case 'b':
    if ((rc = parse_number(optarg, "--latency-budget", 1, 100000, &v)) == 0)
      d->budget_ms = v;
    break;
  case 'e':
    rc = parse_engine(d, optarg);
    break;
  case 'i':
    if (!*optarg || strchr(optarg, '/'))
      rc = cli_usage("demo", "--isolation takes a mode's name");
    d->isolation = optarg;
    break;
  case 'd':
    d->dry_run = true;
    break;
  default:
    rc = cli_usage("demo", "bad option (gpuslice demo --help)");
  }
  return rc;
}

/* -1 for --help (printed), else the exit status of a usage error. */
static int parse(demo_t *d, int argc, char **argv, bool *levels_given) {
  static const struct option opts[] = {
      {"model-repository", required_argument, NULL, 'm'},
      {"model", required_argument, NULL, 'M'},
      {"shape", required_argument, NULL, 's'},
      {"instances", required_argument, NULL, 'n'},
      {"concurrency", required_argument, NULL, 'c'},
      {"window", required_argument, NULL, 'w'},
      {"latency-budget", required_argument, NULL, 'b'},
      {"engine", required_argument, NULL, 'e'},
      {"isolation", required_argument, NULL, 'i'},
      {"out", required_argument, NULL, 'o'},
      {"dry-run", no_argument, NULL, 'd'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  int c, rc = CLI_OK;
  optind = 0;
  while (rc == CLI_OK && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'h') {
      fputs(usage, stdout);
      return -1;
    }
    rc = parse_option(d, c, levels_given);
  }
  if (rc == CLI_OK && optind < argc)
    rc = cli_usage("demo", "unexpected argument '%s'", argv[optind]);
  return rc;
}

/* The model in the repository, this program's path, a private state
 * directory and (GPU engine) the repository serve gets. */
static int prepare(demo_t *d) {
  struct stat st;
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/%s", d->models, d->model);
  if (stat(probe, &st) != 0) {
    bool made = !strcmp(d->model, "resnet50") || !strcmp(d->model, "cnn_small");
    fprintf(stderr,
            "gpuslice: demo: no model '%s' in %s (make it with: "
            "python3 scripts/make_models.py --out %s%s%s)\n",
            d->model, d->models, d->models, made ? " --models " : "",
            made ? d->model : "");
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
  /* The soft backend's isolation for every step: its children read it. */
  if (d->isolation)
    setenv("GPUSLICE_ISOLATION", d->isolation, 1);
  else if (d->cli->opt.soft_isolation == GS_SOFT_ISOLATION_PROCESS)
    setenv("GPUSLICE_ISOLATION", "process", 1);
  return demo_model_repository(d);
}

static void print_header(const demo_t *d) {
  time_t now = time(NULL);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  printf("gpuslice demo, %s: %s backend, %s engine, model %s:", date,
         d->backend, d->engine == DEMO_ENGINE_GPU ? "GPU (FP16)" : "CPU",
         d->model);
  for (size_t i = 0; i < d->n_phases; i++)
    printf("%s%s", i ? " vs " : " ", d->phases[i].label);
  printf("\n");
  if (d->engine == DEMO_ENGINE_GPU)
    printf("engine: %s\n", d->engine_why);
}

/* Defaults that depend on the plan: the levels and the input shape. */
static void plan_defaults(demo_t *d, bool levels_given) {
  bool gpu = d->engine == DEMO_ENGINE_GPU;
  if (!levels_given)
    parse_levels(d, gpu ? "1,2,4,8,16,32,64,128,256" : "1,2,4,8,16,32,64,128");
  if (d->shape[0])
    return;
  if (!strcmp(d->model, "mlp") || !strcmp(d->model, "classifier"))
    snprintf(d->shape, sizeof d->shape, "input:1,%s",
             strcmp(d->model, "mlp") == 0 ? "64" : "512");
  else if (!strcmp(d->model, "cnn_small"))
    snprintf(d->shape, sizeof d->shape, "input:1,3,32,32");
}

static int run_phases(demo_t *d) {
  struct sigaction sa = {.sa_handler = demo_on_interrupt};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  print_header(d);
  fflush(stdout);
  for (size_t i = 0; i < d->n_phases; i++)
    if (demo_measure(d, i) != 0)
      return CLI_FAIL;
  return CLI_OK;
}

int cmd_demo(cli_t *cli, int argc, char **argv) {
  demo_t d = {.cli = cli,
              .models = "models",
              .out_dir = ".",
              .window_ms = 1000,
              .budget_ms = 50};
  bool levels_given = false;
  int rc = parse(&d, argc, argv, &levels_given);
  if (rc != CLI_OK)
    return rc < 0 ? CLI_OK : rc;
  if ((rc = demo_plan(&d)) != CLI_OK)
    return rc;
  plan_defaults(&d, levels_given);
  if (d.dry_run) {
    demo_print_plan(&d, stdout);
    return CLI_OK;
  }
  if ((rc = prepare(&d)) != CLI_OK) {
    if (d.state_dir[0])
      nftw(d.state_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
  }
  rc = run_phases(&d);
  if (rc == CLI_OK) {
    char plot[4200];
    demo_print_table(&d);
    if (demo_write_plots(&d, plot, sizeof plot) == 0)
      printf("plot: %s\n", plot);
  } else if (demo_interrupted) {
    fprintf(stderr, "gpuslice: demo: interrupted; %s\n",
            d.existing ? "the MIG instances are left as they were"
                       : "instances destroyed");
  } else {
    fprintf(stderr, "gpuslice: demo: failed; its logs are in %s\n",
            d.state_dir);
    return rc; /* the logs stay; the instances are destroyed */
  }
  nftw(d.state_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return demo_interrupted ? 130 : rc;
}
