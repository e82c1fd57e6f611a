/* gpuslice worker: serves a model repository over HTTP and gRPC with the
 * KServe v2 protocol until SIGINT or SIGTERM; with --instance, one process
 * hosts several instances' workers, each on its own green context (the
 * soft backend's green isolation: worker_hosted.c). */
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/test_hooks.h"
#include "gpuslice/engine.h"
#include "gpuslice/worker.h"
#include "worker_hosted.h"

static gs_worker_t *running; /* for the signal handler */

static void on_signal(int sig) {
  (void)sig;
  if (running)
    gs_worker_stop(running);
}

/* Test hook (gs__test_hooks.sigusr2_closes): a death that is slow to be
 * reaped. Its pipes and sockets close, the rest stays open (libuv's epoll
 * and eventfds: the other threads must not fail on them before the stop);
 * async-signal-safe calls only. */
static void on_sigusr2_close(int sig) {
  struct rlimit rl;
  struct stat st;
  (void)sig;
  int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
                ? (int)rl.rlim_cur
                : 65536;
  for (int fd = 3; fd < max; fd++)
    if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
      close(fd);
  raise(SIGSTOP);
}

/* "FIRST:COUNT" of GPUSLICE_SM_PARTITION or --sm-partition. */
static int parse_sms(const char *text, const char *what, unsigned *first,
                     unsigned *count) {
  char tail;
  if (sscanf(text, "%u:%u%c", first, count, &tail) != 2 || *count == 0)
    return cli_usage("worker", "%s is FIRST:COUNT (SMs), not '%s'", what, text);
  return CLI_OK;
}

/* "ID=FIRST:COUNT[,rate=N]" of --instance. */
static int parse_instance(const char *text, hosted_t *h) {
  const char *eq = strchr(text, '=');
  if (!eq || eq == text || (size_t)(eq - text) >= sizeof h->id ||
      strcspn(text, " \n") < (size_t)(eq - text))
    return cli_usage("worker",
                     "--instance is ID=FIRST:COUNT[,rate=N], not '%s'", text);
  memcpy(h->id, text, (size_t)(eq - text));
  h->id[eq - text] = '\0';
  char sms[64];
  const char *comma = strchr(eq + 1, ',');
  size_t len = comma ? (size_t)(comma - eq - 1) : strlen(eq + 1);
  if (len >= sizeof sms)
    return cli_usage("worker", "--instance '%s': FIRST:COUNT is too long",
                     text);
  snprintf(sms, sizeof sms, "%.*s", (int)len, eq + 1);
  h->rate_limit = 0;
  if (comma) {
    char *end = NULL;
    errno = 0;
    unsigned long rate =
        strncmp(comma, ",rate=", 6) == 0 && isdigit((unsigned char)comma[6])
            ? strtoul(comma + 6, &end, 10)
            : 0;
    if (rate == 0 || errno || *end || rate > GS_WORKER_MAX_RATE_LIMIT)
      return cli_usage("worker",
                       "--instance '%s': rate=N is 1..%u inferences a second",
                       text, GS_WORKER_MAX_RATE_LIMIT);
    h->rate_limit = (unsigned)rate;
  }
  return parse_sms(sms, "--instance", &h->sm_first, &h->sm_count);
}

/* ---- options -------------------------------------------------------------
 */

typedef struct worker_cli_s {
  gs_worker_options_t wo;
  unsigned threads;    /* default: the CPUs this process may run on */
  unsigned ready_fd;   /* 0: none (stdin is never the ready fd) */
  unsigned control_fd; /* 0: none */
  unsigned nice_by;
  hosted_t hosted[WORKER_MAX_HOSTED];
  unsigned n_hosted;
  bool sms_given, help;
  const char *conv_cache;      /* NULL: STATE_DIR/conv-cache; "": none */
  const char *load_models[64]; /* --load-model, repeatable */
  char names[4096];            /* their copies, split at commas */
  size_t names_used;
} worker_cli_t;

/* --grpc-port N|any: 0 turns gRPC off; any: a free port (gpuslice serve). */
static int parse_grpc_port(void *ctx, const cli_opts_t *spec,
                           const cli_opt_t *o, const char *val) {
  gs_worker_options_t *wo = &((worker_cli_t *)ctx)->wo;
  if (strcmp(val, "any") == 0) {
    wo->grpc = true;
    wo->grpc_port = 0;
    return CLI_OK;
  }
  int rc = cli_opt_uint(spec, o, val, &wo->grpc_port);
  wo->grpc = wo->grpc_port != 0;
  return rc;
}

/* --plan-before-ready N|all: all is the library's 0. */
static int parse_plan_before_ready(void *ctx, const cli_opts_t *spec,
                                   const cli_opt_t *o, const char *val) {
  gs_worker_options_t *wo = &((worker_cli_t *)ctx)->wo;
  (void)spec;
  (void)o;
  return cli_plan_before_ready("worker", val, &wo->plan_before_ready);
}

/* --metrics-port N: 0 turns the metrics port off. */
static int parse_metrics_port(void *ctx, const cli_opts_t *spec,
                              const cli_opt_t *o, const char *val) {
  gs_worker_options_t *wo = &((worker_cli_t *)ctx)->wo;
  int rc = cli_opt_uint(spec, o, val, &wo->metrics_port);
  wo->metrics = wo->metrics_port != 0;
  return rc;
}

static int parse_sm_partition(void *ctx, const cli_opts_t *spec,
                              const cli_opt_t *o, const char *val) {
  worker_cli_t *w = ctx;
  (void)spec;
  (void)o;
  w->sms_given = true;
  return parse_sms(val, "--sm-partition", &w->wo.sm_first, &w->wo.sm_count);
}

static int parse_hosted(void *ctx, const cli_opts_t *spec, const cli_opt_t *o,
                        const char *val) {
  worker_cli_t *w = ctx;
  (void)spec;
  (void)o;
  if (w->n_hosted == WORKER_MAX_HOSTED)
    return cli_usage("worker", "at most %d --instance", WORKER_MAX_HOSTED);
  memset(&w->hosted[w->n_hosted], 0, sizeof w->hosted[0]);
  if (parse_instance(val, &w->hosted[w->n_hosted]))
    return CLI_USAGE;
  w->n_hosted++;
  return CLI_OK;
}

/* --model-control-mode none|poll|explicit (Triton's names). */
static int parse_control_mode(void *ctx, const cli_opts_t *spec,
                              const cli_opt_t *o, const char *val) {
  gs_worker_options_t *wo = &((worker_cli_t *)ctx)->wo;
  (void)spec;
  (void)o;
  if (strcmp(val, "none") == 0)
    wo->model_control = GS_MODEL_CONTROL_NONE;
  else if (strcmp(val, "poll") == 0)
    wo->model_control = GS_MODEL_CONTROL_POLL;
  else if (strcmp(val, "explicit") == 0)
    wo->model_control = GS_MODEL_CONTROL_EXPLICIT;
  else
    return cli_usage("worker",
                     "--model-control-mode is none, poll or explicit, not "
                     "'%s'",
                     val);
  return CLI_OK;
}

static int parse_load_model(void *ctx, const cli_opts_t *spec,
                            const cli_opt_t *o, const char *val) {
  worker_cli_t *w = ctx;
  (void)spec;
  (void)o;
  size_t max = sizeof w->load_models / sizeof w->load_models[0];
  size_t len = strlen(val);
  if (w->names_used + len + 1 > sizeof w->names)
    return cli_usage("worker", "--load-model: the names are too long");
  char *names = w->names + w->names_used, *save = NULL;
  memcpy(names, val, len + 1);
  w->names_used += len + 1;
  /* NAME, or NAME,NAME,... (what gpuslice serve passes) */
  for (char *t = strtok_r(names, ",", &save); t;
       t = strtok_r(NULL, ",", &save)) {
    if (w->wo.n_load_models == max)
      return cli_usage("worker", "at most %zu --load-model", max);
    w->load_models[w->wo.n_load_models++] = t;
  }
  return CLI_OK;
}

#define W(field) offsetof(worker_cli_t, field)

static const cli_opt_t options[] = {
    {.name = "model-repository",
     .type = CLI_OPT_STRING,
     .arg = "DIR",
     .help = "the models (Triton layout); needed",
     .offset = W(wo.model_repository)},
    {.name = "http-port",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .max = 65535,
     .def = "8000",
     .help = "KServe v2 HTTP; 0: any free port",
     .offset = W(wo.port)},
    {.name = "grpc-port",
     .type = CLI_OPT_CUSTOM,
     .arg = "N|any",
     .max = 65535,
     .def = "8001",
     .help = "KServe v2 gRPC; 0: off; any: a free port",
     .parse = parse_grpc_port},
    {.name = "metrics-port",
     .type = CLI_OPT_CUSTOM,
     .arg = "N",
     .max = 65535,
     .def = "8002",
     .help = "GET /metrics alone on this port; 0: off (/metrics is on the "
             "HTTP port too)",
     .parse = parse_metrics_port},
    {.name = "host",
     .type = CLI_OPT_STRING,
     .arg = "ADDR",
     .help = "the address to listen on (default 127.0.0.1)",
     .offset = W(wo.host)},
    {.name = "threads",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 1024,
     .help = "inference threads (default: the CPUs this process may run "
             "on, sched_getaffinity)",
     .offset = W(threads)},
    {.name = "ready-fd",
     .type = CLI_OPT_UINT,
     .arg = "FD",
     .min = 3,
     .max = 1024,
     .help = "write \"ready http=P grpc=G\" on FD once serving, and stop "
             "when the parent dies (gpuslice serve uses it)",
     .offset = W(ready_fd)},
    {.name = "control-fd",
     .type = CLI_OPT_UINT,
     .arg = "FD",
     .min = 3,
     .max = 1024,
     .help = "with --instance: read \"add ID FIRST COUNT [RATE]\" and \"remove "
             "ID\" lines on FD, answered on the ready fd (gpuslice serve "
             "adds and removes instances without a restart)",
     .offset = W(control_fd)},
    {.name = "nice",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .max = 19,
     .help = "lower this process's priority by N (serve uses it)",
     .offset = W(nice_by)},
    {.name = "sm-partition",
     .type = CLI_OPT_CUSTOM,
     .arg = "FIRST:COUNT",
     .help = "CUDA sessions on a green context over those SMs (default: "
             "$GPUSLICE_SM_PARTITION, which `run -i` sets under --isolation "
             "green)",
     .parse = parse_sm_partition},
    {.name = "instance",
     .type = CLI_OPT_CUSTOM,
     .arg = "ID=FIRST:COUNT[,rate=N]",
     .help = "repeatable: one worker per instance in this process, each on "
             "free ports and its own SMs; rate=N (1..100000000) is its own "
             "--rate-limit, else the process's; the ready fd gets \"ready "
             "id=ID http=P grpc=G\" per instance",
     .parse = parse_hosted},
    {.name = "model-control-mode",
     .type = CLI_OPT_CUSTOM,
     .arg = "none|poll|explicit",
     .def = "none",
     .help = "Triton's: none loads every model at start and refuses load "
             "and unload requests; poll also rescans the repository; "
             "explicit loads the --load-model ones and serves load and "
             "unload",
     .parse = parse_control_mode},
    {.name = "load-model",
     .type = CLI_OPT_CUSTOM,
     .arg = "NAME[,NAME]...",
     .help = "repeatable, with explicit: models to load at start ('*': "
             "all)",
     .parse = parse_load_model},
    {.name = "repository-poll-secs",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 86400,
     .def = "15",
     .help = "with poll: seconds between rescans of the repository",
     .offset = W(wo.poll_secs)},
    {.name = "server-name",
     .type = CLI_OPT_STRING,
     .arg = "NAME",
     .help = "the server name GET /v2 and ServerMetadata give (default "
             "gpuslice; Triton's health examples want triton)",
     .offset = W(wo.server_name)},
    {.name = "busy-poll-us",
     .type = CLI_OPT_UINT,
     .arg = "US",
     .max = GS_WORKER_MAX_BUSY_POLL_US,
     .def = "0",
     .help = "latency for cores: inference threads spin this long on their "
             "queue after a job, the loop spins while one runs and this "
             "long after, CUDA runs are polled (with --gpu-wait auto); 0: "
             "threads sleep",
     .offset = W(wo.busy_poll_us)},
    {.name = "gpu-wait",
     .type = CLI_OPT_CHOICE,
     .choices = GS_WORKER_GPU_WAIT_NAMES,
     .def = "auto",
     .help = "how CUDA runs are waited for: spin (a core polls), block "
             "(the thread sleeps until the GPU's interrupt), driver "
             "(cuStreamSynchronize, which spins while the process has "
             "fewer contexts than cores); auto: spin with --busy-poll-us, "
             "else driver",
     .offset = W(wo.gpu_wait)},
    {.name = "rate-limit",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .max = GS_WORKER_MAX_RATE_LIMIT,
     .def = "0",
     .help = "start N inferences a second at most, on average (a request "
             "of batch 64 counts 64, known when it ends); the rest wait "
             "their turn in arrival order (a sequence's never wait, but "
             "count); it holds a noisy instance to a share of what instances "
             "share (a GPU's L2 and memory bandwidth); 0: none",
     .offset = W(wo.rate_limit)},
    {.name = "plan-before-ready",
     .type = CLI_OPT_CUSTOM,
     .arg = "N|all",
     .def = "1",
     .help = "a GPU model plans batch sizes up to N before it is ready and "
             "the larger ones right after, one session at a time, its "
             "batches kept to the sizes planned so far (a restart serves "
             "sooner: each size's plan costs about as much as the small "
             "ones'); all: every size before ready",
     .parse = parse_plan_before_ready},
    {.name = "exit-on-device-failure",
     .type = CLI_OPT_FLAG,
     .help = "when the device fails under a request (a CUDA error no later "
             "call gets past, such as an MPS server's fatal fault), stop "
             "and exit with status 1 so that a supervisor restarts the "
             "worker at once (serve passes it); without it the model "
             "becomes unavailable and the worker stays up",
     .offset = W(wo.exit_on_device_failure)},
    {.name = "conv-cache",
     .type = CLI_OPT_STRING,
     .arg = "DIR",
     .help = "keep the conv choices CUDA sessions time in DIR (a file per "
             "GPU model and software), so that a restarted worker plans "
             "without timing (default: STATE_DIR/conv-cache; empty: none)",
     .offset = W(conv_cache)},
    {.name = "help",
     .short_name = 'h',
     .type = CLI_OPT_HELP,
     .help = "this text"},
};

const cli_opts_t worker_cli_options = {
    .verb = "worker",
    .synopsis = "usage: gpuslice worker --model-repository DIR [OPTION]...\n",
    .about = "  Serves the repository with the KServe v2 protocol over HTTP "
             "and gRPC\n  until SIGINT or SIGTERM.\n",
    .opt = options,
    .n = sizeof options / sizeof options[0],
    .ctx_size = sizeof(worker_cli_t),
};

/* ---- serving ---------------------------------------------------------------
 */

/* The CPUs this process may run on: under `gpuslice run -i X` those are the
 * instance's cores, so the worker uses what its instance owns. */
static unsigned affinity_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) < 1)
    return 1;
  return CPU_COUNT(&set) > 1024 ? 1024 : (unsigned)CPU_COUNT(&set);
}

/* For gpuslice serve: the ports on the ready fd, once serving; a
 * supervisor that is already gone stops the worker. */
static void tell_ready(gs_worker_t *w, int fd, pid_t parent) {
  char line[64];
  int n = snprintf(line, sizeof line, "ready http=%u grpc=%u\n",
                   gs_worker_port(w), gs_worker_grpc_port(w));
  if (write(fd, line, (size_t)n) != n || getppid() != parent) {
    /* the supervisor is gone (EPIPE, or we were reparented) */
    fprintf(stderr, "gpuslice worker: the supervisor is gone: stopping\n");
    gs_worker_stop(w);
  }
  close(fd);
}

/* --conv-cache, else STATE_DIR/conv-cache; said in the log. */
static int set_conv_cache(const cli_t *cli, const char *dir) {
  char def[4200];
  gs_error_t err;
  if (!dir && cli && cli->state_dir) {
    snprintf(def, sizeof def, "%s/conv-cache", cli->state_dir);
    dir = def;
  }
  if (gs_engine_set_conv_cache(dir, &err) != GS_OK)
    return cli_fail("worker", &err);
  fprintf(stderr, "gpuslice worker: conv cache %s\n",
          dir && *dir ? dir : "off");
  return CLI_OK;
}

int cmd_worker(cli_t *cli, int argc, char **argv) {
  static worker_cli_t args; /* hosted instances: large, run on threads */
  gs_error_t err;
  memset(&args, 0, sizeof args);
  args.threads = affinity_cpus();
  int prc = cli_opts_defaults(&worker_cli_options, &args);
  if (prc == CLI_OK)
    prc = cli_opts_parse(&worker_cli_options, &args, argc, argv, &args.help);
  if (prc != CLI_OK || args.help)
    return prc;
  gs_worker_options_t wo = args.wo;
  wo.load_models = args.load_models;
  wo.note = worker_note;
  if (wo.n_load_models && wo.model_control != GS_MODEL_CONTROL_EXPLICIT)
    return cli_usage("worker",
                     "--load-model needs --model-control-mode explicit");
  if (gs__test_hooks.sigusr2_closes)
    signal(SIGUSR2, on_sigusr2_close);
  unsigned threads = args.threads, ready_fd = args.ready_fd;
  unsigned nice_by = args.nice_by, n_hosted = args.n_hosted;
  unsigned control_fd = args.control_fd;
  hosted_t *hosted = args.hosted;
  bool sms_given = args.sms_given;
  if (!wo.model_repository)
    return cli_usage("worker", "--model-repository DIR is needed");
  const char *env_sms = getenv("GPUSLICE_SM_PARTITION");
  if (!sms_given && !n_hosted && env_sms && *env_sms &&
      parse_sms(env_sms, "GPUSLICE_SM_PARTITION", &wo.sm_first, &wo.sm_count))
    return CLI_USAGE;
  /* Supervised: end with the supervisor, whatever happens from here on
   * (the death signal survives the exec of `gpuslice run`). */
  pid_t parent = getppid();
  if (ready_fd)
    prctl(PR_SET_PDEATHSIG, SIGTERM);
  errno = 0;
  if (nice_by && nice((int)nice_by) == -1 && errno)
    fprintf(stderr, "gpuslice worker: nice %u: %s\n", nice_by, strerror(errno));
  /* libuv sizes its pool from the environment at first use; each inference
   * thread runs single-threaded BLAS, so threads do not oversubscribe. The
   * pool is the process's: hosted instances get --threads each. */
  char n[16];
  unsigned pool = n_hosted ? worker_pool_instances(n_hosted, control_fd) : 1;
  snprintf(n, sizeof n, "%u", threads * pool > 1024 ? 1024 : threads * pool);
  setenv("UV_THREADPOOL_SIZE", n, 1);
  gs_engine_set_threads(1, NULL);
  int crc = set_conv_cache(cli, args.conv_cache);
  if (crc != CLI_OK)
    return crc;
  if (control_fd && !n_hosted)
    return cli_usage("worker", "--control-fd goes with --instance");
  if (n_hosted)
    return worker_host_instances(&wo, hosted, n_hosted, (int)ready_fd,
                                 (int)control_fd, parent);
  gs_worker_t *w;
  if (gs_worker_create(&w, &wo, &err) != GS_OK)
    return cli_fail("worker", &err);
  worker_report_models(w);
  running = w;
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  fprintf(stderr, "gpuslice worker: listening on http://%s:%u\n",
          wo.host ? wo.host : "127.0.0.1", gs_worker_port(w));
  if (wo.grpc)
    fprintf(stderr, "gpuslice worker: listening for gRPC on %s:%u\n",
            wo.host ? wo.host : "127.0.0.1", gs_worker_grpc_port(w));
  if (wo.metrics)
    fprintf(stderr, "gpuslice worker: metrics on http://%s:%u/metrics\n",
            wo.host ? wo.host : "127.0.0.1", gs_worker_metrics_port(w));
  worker_report_ready();
  if (ready_fd)
    tell_ready(w, (int)ready_fd, parent);
  int rc = gs_worker_run(w, &err);
  running = NULL;
  int status = worker_exit_status(w);
  gs_worker_destroy(w);
  if (rc != GS_OK)
    return cli_fail("worker", &err);
  return status;
}
