/* gpuslice worker: serves a model repository over HTTP and gRPC with the
 * KServe v2 protocol until SIGINT or SIGTERM; with --instance, one process
 * hosts several instances' workers, each on its own green context (the
 * soft backend's green isolation). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cli.h"
#include "gpuslice/engine.h"
#include "gpuslice/worker.h"

#define MAX_HOSTED 16 /* instances one process hosts (a GPU has <= 7) */

static gs_worker_t *running[MAX_HOSTED];
static unsigned n_running;

static void on_signal(int sig) {
  (void)sig;
  for (unsigned i = 0; i < n_running; i++)
    if (running[i])
      gs_worker_stop(running[i]);
}

/* "FIRST:COUNT" of GPUSLICE_SM_PARTITION or --sm-partition. */
static int parse_sms(const char *text, const char *what, unsigned *first,
                     unsigned *count) {
  char tail;
  if (sscanf(text, "%u:%u%c", first, count, &tail) != 2 || *count == 0)
    return cli_usage("worker", "%s is FIRST:COUNT (SMs), not '%s'", what, text);
  return CLI_OK;
}

/* One hosted instance: "ID=FIRST:COUNT". */
typedef struct hosted_s {
  char id[64];
  unsigned sm_first, sm_count;
  gs_worker_options_t opts; /* for the creating thread */
  gs_worker_t *w;
  pthread_t thread;
  gs_error_t err;
  int rc;
} hosted_t;

static int parse_instance(const char *text, hosted_t *h) {
  const char *eq = strchr(text, '=');
  if (!eq || eq == text || (size_t)(eq - text) >= sizeof h->id ||
      strcspn(text, " \n") < (size_t)(eq - text))
    return cli_usage("worker", "--instance is ID=FIRST:COUNT, not '%s'", text);
  memcpy(h->id, text, (size_t)(eq - text));
  h->id[eq - text] = '\0';
  return parse_sms(eq + 1, "--instance", &h->sm_first, &h->sm_count);
}

static void report_models(const gs_worker_t *w) {
  const char *name, *reason;
  bool ready;
  for (size_t i = 0; gs_worker_model(w, i, &name, &ready, &reason); i++) {
    if (ready && gs_worker_model_load_note(w, i)[0])
      fprintf(stderr, "gpuslice worker: model %s: %s\n", name,
              gs_worker_model_load_note(w, i));
    if (ready)
      fprintf(stderr, "gpuslice worker: model '%s' is ready\n", name);
    else
      fprintf(stderr, "gpuslice worker: model '%s' is not ready: %s\n", name,
              reason);
  }
}

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

/* Creates one hosted worker: its models load (a GPU model plans every
 * batch size at load: seconds), so the instances load side by side. */
static void *create_hosted(void *arg) {
  hosted_t *h = arg;
  h->rc = gs_worker_create(&h->w, &h->opts, &h->err);
  return NULL;
}

static void *run_hosted(void *arg) {
  hosted_t *h = arg;
  h->rc = gs_worker_run(h->w, &h->err);
  on_signal(0); /* one ends: all end, the supervisor restarts the process */
  return NULL;
}

/* Several instances' workers in this process (green isolation: their
 * green contexts only run side by side inside one process). Each gets
 * free ports; the ready fd gets one line per instance. */
static int host_instances(const gs_worker_options_t *base, hosted_t *hosted,
                          unsigned n, int ready_fd, pid_t parent) {
  int rc = CLI_OK;
  char lines[MAX_HOSTED * 96] = "";
  size_t len = 0;
  gs_error_t err;
  unsigned made = 0;
  for (; made < n; made++) {
    hosted_t *h = &hosted[made];
    h->opts = *base;
    h->opts.port = 0;
    h->opts.grpc_port = 0;
    h->opts.metrics = false;
    h->opts.sm_first = h->sm_first;
    h->opts.sm_count = h->sm_count;
    h->w = NULL;
    if (pthread_create(&h->thread, NULL, create_hosted, h) != 0)
      break;
  }
  for (unsigned i = 0; i < made; i++)
    pthread_join(hosted[i].thread, NULL);
  for (unsigned i = 0; i < n && rc == CLI_OK; i++) {
    if (i >= made)
      gs_error_set(&err, GS_ESYSTEM, "cannot start a thread to load it");
    else if (hosted[i].rc != GS_OK)
      err = hosted[i].err;
    if (i >= made || hosted[i].rc != GS_OK) {
      gs_error_prefix(&err, "instance %s: ", hosted[i].id);
      rc = cli_fail("worker", &err);
      for (unsigned j = i + 1; j < made; j++) /* loaded, never run */
        if (hosted[j].w)
          gs_worker_destroy(hosted[j].w);
      break;
    }
    fprintf(stderr, "gpuslice worker: instance %s (SMs %u+%u) on http %u\n",
            hosted[i].id, hosted[i].sm_first, hosted[i].sm_count,
            gs_worker_port(hosted[i].w));
    report_models(hosted[i].w);
    len += (size_t)snprintf(lines + len, sizeof lines - len,
                            "ready id=%s http=%u grpc=%u\n", hosted[i].id,
                            gs_worker_port(hosted[i].w),
                            gs_worker_grpc_port(hosted[i].w));
    running[i] = hosted[i].w;
    n_running = i + 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  unsigned started = 0;
  for (; rc == CLI_OK && started < n; started++)
    if (pthread_create(&hosted[started].thread, NULL, run_hosted,
                       &hosted[started]) != 0) {
      fprintf(stderr, "gpuslice worker: cannot start a thread\n");
      rc = CLI_FAIL;
      on_signal(0);
    }
  if (rc == CLI_OK && ready_fd > 0) {
    if (write(ready_fd, lines, len) != (ssize_t)len || getppid() != parent) {
      fprintf(stderr, "gpuslice worker: the supervisor is gone: stopping\n");
      on_signal(0);
    }
    close(ready_fd);
  }
  for (unsigned i = 0; i < started; i++)
    pthread_join(hosted[i].thread, NULL);
  for (unsigned i = 0; i < n_running; i++) {
    running[i] = NULL;
    if (hosted[i].rc != GS_OK && rc == CLI_OK)
      rc = cli_fail("worker", &hosted[i].err);
    gs_worker_destroy(hosted[i].w);
  }
  n_running = 0;
  return rc;
}

int cmd_worker(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {
      {"model-repository", required_argument, NULL, 'm'},
      {"http-port", required_argument, NULL, 'p'},
      {"grpc-port", required_argument, NULL, 'g'},
      {"metrics-port", required_argument, NULL, 'M'},
      {"host", required_argument, NULL, 'H'},
      {"threads", required_argument, NULL, 't'},
      {"ready-fd", required_argument, NULL, 'r'},
      {"nice", required_argument, NULL, 'n'},
      {"sm-partition", required_argument, NULL, 'S'},
      {"instance", required_argument, NULL, 'I'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  gs_worker_options_t wo = {.port = 8000,
                            .grpc = true,
                            .grpc_port = 8001,
                            .metrics = true,
                            .metrics_port = 8002};
  unsigned threads = affinity_cpus();
  unsigned ready_fd = 0; /* 0: none (stdin is never the ready fd) */
  unsigned nice_by = 0;
  static hosted_t hosted[MAX_HOSTED];
  unsigned n_hosted = 0;
  bool sms_given = false;
  gs_error_t err;
  int c;
  (void)cli;
  optind = 0;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'm':
      wo.model_repository = optarg;
      break;
    case 'H':
      wo.host = optarg;
      break;
    case 'p':
      if (cli_parse_uint(optarg, "--http-port", 65535, &wo.port, &err))
        return cli_fail("worker", &err);
      break;
    case 'g':
      if (strcmp(optarg, "any") == 0) { /* a free port (gpuslice serve) */
        wo.grpc = true;
        wo.grpc_port = 0;
        break;
      }
      if (cli_parse_uint(optarg, "--grpc-port", 65535, &wo.grpc_port, &err))
        return cli_fail("worker", &err);
      wo.grpc = wo.grpc_port != 0;
      break;
    case 'M':
      if (cli_parse_uint(optarg, "--metrics-port", 65535, &wo.metrics_port,
                         &err))
        return cli_fail("worker", &err);
      wo.metrics = wo.metrics_port != 0;
      break;
    case 't':
      if (cli_parse_uint(optarg, "--threads", 1024, &threads, &err) ||
          threads == 0)
        return cli_usage("worker", "--threads is 1..1024");
      break;
    case 'n': /* gpuslice serve: back to the priority it raised itself from */
      if (cli_parse_uint(optarg, "--nice", 19, &nice_by, &err))
        return cli_fail("worker", &err);
      break;
    case 'S':
      if (parse_sms(optarg, "--sm-partition", &wo.sm_first, &wo.sm_count))
        return CLI_USAGE;
      sms_given = true;
      break;
    case 'I':
      if (n_hosted == MAX_HOSTED)
        return cli_usage("worker", "at most %d --instance", MAX_HOSTED);
      memset(&hosted[n_hosted], 0, sizeof hosted[0]);
      if (parse_instance(optarg, &hosted[n_hosted]))
        return CLI_USAGE;
      n_hosted++;
      break;
    case 'r':
      if (cli_parse_uint(optarg, "--ready-fd", 1024, &ready_fd, &err) ||
          ready_fd < 3)
        return cli_usage("worker", "--ready-fd is 3..1024");
      break;
    case 'h':
      puts("usage: gpuslice worker --model-repository DIR [--http-port N]\n"
           "         [--grpc-port N] [--metrics-port N] [--host ADDR] "
           "[--threads N]\n"
           "  KServe v2 HTTP on ADDR:N (default 127.0.0.1:8000; 0 = any free\n"
           "  port), gRPC on --grpc-port (default 8001; 0 = off; any = a\n"
           "  free port), GET /metrics\n"
           "  alone on --metrics-port (default 8002; 0 = off; /metrics is on\n"
           "  the HTTP port too);\n"
           "  N inference threads (default: the CPUs this process\n"
           "  may run on, sched_getaffinity);\n"
           "  --ready-fd FD (used by gpuslice serve): write \"ready http=P\n"
           "  grpc=G\" on FD once serving, and stop when the parent dies;\n"
           "  --nice N: lower this process's priority by N (serve uses it);\n"
           "  --sm-partition FIRST:COUNT: CUDA sessions on a green context\n"
           "  over those SMs (default: $GPUSLICE_SM_PARTITION, which `run -i`\n"
           "  sets under --isolation green);\n"
           "  --instance ID=FIRST:COUNT (repeatable): one worker per instance\n"
           "  in this process, each on free ports and its own SMs; the ready\n"
           "  fd gets \"ready id=ID http=P grpc=G\" per instance");
      return CLI_OK;
    default:
      return cli_usage("worker", "bad option");
    }
  }
  if (optind < argc)
    return cli_usage("worker", "unexpected argument '%s'", argv[optind]);
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
  snprintf(n, sizeof n, "%u", threads * (n_hosted ? (unsigned)n_hosted : 1u));
  setenv("UV_THREADPOOL_SIZE", n, 1);
  gs_engine_set_threads(1, NULL);
  if (n_hosted)
    return host_instances(&wo, hosted, n_hosted, (int)ready_fd, parent);
  gs_worker_t *w;
  if (gs_worker_create(&w, &wo, &err) != GS_OK)
    return cli_fail("worker", &err);
  report_models(w);
  running[0] = w;
  n_running = 1;
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
  if (ready_fd)
    tell_ready(w, (int)ready_fd, parent);
  int rc = gs_worker_run(w, &err);
  running[0] = NULL;
  gs_worker_destroy(w);
  return rc == GS_OK ? CLI_OK : cli_fail("worker", &err);
}
