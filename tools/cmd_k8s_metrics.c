/* gpuslice k8s metrics: this node's instances for Prometheus (GET
 * /metrics), in the foreground until SIGTERM (a DaemonSet's container).
 * Its own verb, not a route of the device plugin: it runs where no kubelet
 * is, fails apart from the plugin, and a scrape never waits on the
 * kubelet's gRPC. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_k8s.h"

/* dcgm-exporter, which GPU nodes often run beside, listens on 9400. */
#define METRICS_DEFAULT_PORT 9402

static const char metrics_usage[] =
    "usage: gpuslice k8s metrics [--listen [HOST:]PORT]\n"
    "  Serves GET /metrics: each instance's info, health, processes, memory\n"
    "  and SM (host: CPU) use in Prometheus' text format. HOST: 0.0.0.0\n"
    "  (an IPv6 address in brackets); PORT: 9402 (0: any free port, said\n"
    "  in the log).\n";

static char metrics_name[] = "metrics"; /* the log's prefix */

/* "[HOST:]PORT", HOST "[v6]" or v4; *host NULL when not given. Writes
 * into buf. */
static int parse_listen(char *buf, const char *text, const char **host,
                        unsigned *port) {
  gs_error_t err;
  char *colon = strrchr(buf, ':');
  const char *port_text = colon ? colon + 1 : buf;
  *host = NULL;
  if (colon) {
    *colon = '\0';
    char *h = buf;
    size_t len = strlen(h);
    if (len >= 2 && h[0] == '[' && h[len - 1] == ']') {
      h[len - 1] = '\0';
      h++;
    }
    *host = *h ? h : NULL;
  }
  if (!*port_text ||
      cli_parse_uint(port_text, "--listen's port", 65535, port, &err) != GS_OK)
    return cli_usage("k8s metrics",
                     "--listen is [HOST:]PORT with PORT 0 to 65535, not '%s'",
                     text);
  return CLI_OK;
}

int cmd_k8s_metrics(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  gs_k8s_metrics_options_t opt = {.port = METRICS_DEFAULT_PORT,
                                  .log = cli_k8s_log,
                                  .log_data = metrics_name};
  char listen[300];
  gs_error_t err;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'l') {
      snprintf(listen, sizeof listen, "%s", optarg);
      int rc = parse_listen(listen, optarg, &opt.host, &opt.port);
      if (rc != CLI_OK)
        return rc;
    } else if (c == 'h') {
      fputs(metrics_usage, stdout);
      return CLI_OK;
    } else {
      return cli_usage("k8s metrics", "bad option (see gpuslice k8s metrics "
                                      "--help)");
    }
  }
  if (optind < argc)
    return cli_usage("k8s metrics", "unexpected argument '%s'", argv[optind]);
  cli_k8s_options(cli, &opt.inventory);
  cli_serve_health_t health = {cli->state_dir, NULL};
  opt.tick = cli_serve_tick;
  opt.worker_down = cli_serve_worker_down;
  opt.health_data = &health;
  opt.nvml_library = cli->opt.nvml_library;
  gs_backend_t *be = NULL;
  int rc = cli_open_backend(cli, &be, &err);
  if (rc == GS_OK)
    rc = gs_k8s_metrics_run(be, &opt, &err);
  gs_backend_close(be);
  json_decref(health.workers);
  return rc == GS_OK ? CLI_OK : cli_fail("k8s metrics", &err);
}
