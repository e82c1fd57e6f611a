/* gpuslice worker: serves a model repository over HTTP and gRPC with the
 * KServe v2 protocol until SIGINT or SIGTERM. */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpuslice/engine.h"
#include "gpuslice/worker.h"

static gs_worker_t *running;

static void on_signal(int sig) {
  (void)sig;
  if (running)
    gs_worker_stop(running);
}

static void report_models(const gs_worker_t *w) {
  const char *name, *reason;
  bool ready;
  for (size_t i = 0; gs_worker_model(w, i, &name, &ready, &reason); i++)
    if (ready)
      fprintf(stderr, "gpuslice worker: model '%s' is ready\n", name);
    else
      fprintf(stderr, "gpuslice worker: model '%s' is not ready: %s\n", name,
              reason);
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
           "  --nice N: lower this process's priority by N (serve uses it)");
      return CLI_OK;
    default:
      return cli_usage("worker", "bad option");
    }
  }
  if (optind < argc)
    return cli_usage("worker", "unexpected argument '%s'", argv[optind]);
  if (!wo.model_repository)
    return cli_usage("worker", "--model-repository DIR is needed");
  /* Supervised: end with the supervisor, whatever happens from here on
   * (the death signal survives the exec of `gpuslice run`). */
  pid_t parent = getppid();
  if (ready_fd)
    prctl(PR_SET_PDEATHSIG, SIGTERM);
  errno = 0;
  if (nice_by && nice((int)nice_by) == -1 && errno)
    fprintf(stderr, "gpuslice worker: nice %u: %s\n", nice_by, strerror(errno));
  /* libuv sizes its pool from the environment at first use; each inference
   * thread runs single-threaded BLAS, so threads do not oversubscribe. */
  char n[16];
  snprintf(n, sizeof n, "%u", threads);
  setenv("UV_THREADPOOL_SIZE", n, 1);
  gs_engine_set_threads(1, NULL);
  gs_worker_t *w;
  if (gs_worker_create(&w, &wo, &err) != GS_OK)
    return cli_fail("worker", &err);
  report_models(w);
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
  if (ready_fd)
    tell_ready(w, (int)ready_fd, parent);
  int rc = gs_worker_run(w, &err);
  running = NULL;
  gs_worker_destroy(w);
  return rc == GS_OK ? CLI_OK : cli_fail("worker", &err);
}
