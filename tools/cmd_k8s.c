/* gpuslice k8s device-plugin and mig-manager: the kubelet device plugin
 * (v1beta1) for this machine's instances and the MIG manager that applies
 * the node label's config, in the foreground until SIGTERM (a DaemonSet's
 * containers). Logs go to stderr, one line each. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_http.h"
#include "cmd_k8s.h"

void cli_k8s_log(void *data, const char *line) {
  char stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
  fprintf(stderr, "%s gpuslice %s: %s\n", stamp,
          data ? (const char *)data : "device-plugin", line);
}

void cli_serve_tick(void *data) {
  cli_serve_health_t *h = data;
  char path[4200], *body = NULL;
  int status = 0;
  gs_error_t err;
  json_decref(h->workers);
  h->workers = NULL;
  snprintf(path, sizeof path, "%s/serve.json", h->state_dir);
  json_t *doc = json_load_file(path, 0, NULL);
  const char *host = json_string_value(json_object_get(doc, "host"));
  json_int_t port = json_integer_value(json_object_get(doc, "http_port"));
  if (host && port > 0 && port < 65536 &&
      cli_http_call(host, (unsigned)port, "GET", "/gpuslice/v1/workers", NULL,
                    500, &status, &body, &err) == GS_OK &&
      status == 200) {
    json_t *answer = json_loads(body, 0, NULL);
    h->workers = json_incref(json_object_get(answer, "workers"));
    json_decref(answer);
  }
  free(body);
  json_decref(doc);
}

/* Down: its worker waits to restart after dying, failed its health
 * checks, or is gone; starting and ejected workers are not (yet) down. */
bool cli_serve_worker_down(void *data, const char *uuid, char *why,
                           size_t size) {
  cli_serve_health_t *h = data;
  size_t i;
  json_t *w;
  json_array_foreach(h->workers, i, w) {
    const char *u = json_string_value(json_object_get(w, "uuid"));
    const char *st = json_string_value(json_object_get(w, "state"));
    if (!u || !st || strcmp(u, uuid) != 0)
      continue;
    if (strcmp(st, "restarting") == 0 || strcmp(st, "unhealthy") == 0 ||
        strcmp(st, "gone") == 0) {
      snprintf(why, size, "its gpuslice serve worker %s is %s",
               json_string_value(json_object_get(w, "worker")), st);
      return true;
    }
  }
  return false;
}

static const char plugin_usage[] =
    "usage: gpuslice k8s device-plugin [--plugin-dir DIR] [--kubelet-socket "
    "PATH]\n"
    "         [--resource-prefix PREFIX] [--cdi-dir DIR] [--interval-ms N]\n"
    "  DIR: " GS_K8S_PLUGIN_DIR "; PREFIX: nvidia.com/mig- (mig),\n"
    "  gpuslice.dev/soft- (soft), gpuslice.dev/host- (host); the profile\n"
    "  follows it (nvidia.com/mig-1g.10gb).\n";

static int device_plugin(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {
      {"plugin-dir", required_argument, NULL, 'd'},
      {"kubelet-socket", required_argument, NULL, 'k'},
      {"resource-prefix", required_argument, NULL, 'p'},
      {"cdi-dir", required_argument, NULL, 'c'},
      {"interval-ms", required_argument, NULL, 'i'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  gs_k8s_device_plugin_options_t opt = {.log = cli_k8s_log};
  gs_error_t err;
  unsigned ms;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      opt.plugin_dir = optarg;
      break;
    case 'k':
      opt.kubelet_socket = optarg;
      break;
    case 'p':
      opt.resource_prefix = optarg;
      break;
    case 'c':
      opt.cdi_dir = optarg;
      break;
    case 'i':
      if (cli_parse_uint(optarg, "--interval-ms", 600000, &ms, &err) != GS_OK ||
          ms < 10)
        return cli_usage("k8s device-plugin",
                         "--interval-ms is 10 to 600000, not '%s'", optarg);
      opt.interval_ms = ms;
      break;
    case 'h':
      fputs(plugin_usage, stdout);
      return CLI_OK;
    default:
      return cli_usage("k8s device-plugin", "bad option");
    }
  }
  if (optind < argc)
    return cli_usage("k8s device-plugin", "unexpected argument '%s'",
                     argv[optind]);
  if (!opt.cdi_dir) {
    const char *env = getenv("GPUSLICE_CDI_DIR");
    opt.cdi_dir = env && *env ? env : NULL;
  }
  cli_k8s_options(cli, &opt.inventory);
  opt.nvml_library = cli->opt.nvml_library;
  cli_serve_health_t health = {cli->state_dir, NULL};
  opt.tick = cli_serve_tick;
  opt.worker_down = cli_serve_worker_down;
  opt.health_data = &health;
  gs_backend_t *be = NULL;
  int rc = cli_open_backend(cli, &be, &err);
  if (rc == GS_OK)
    rc = gs_k8s_device_plugin_run(be, &opt, &err);
  gs_backend_close(be);
  json_decref(health.workers);
  return rc == GS_OK ? CLI_OK : cli_fail("k8s device-plugin", &err);
}

static const char manager_usage[] =
    "usage: gpuslice k8s mig-manager --config FILE [--node NAME]\n"
    "         [--api-server URL] [--token-file PATH] [--ca-file PATH]\n"
    "         [--label-file PATH [--state-file PATH]] [--interval-ms N]\n"
    "  FILE: a mig-parted config. Applies the set named by the node label\n"
    "  " GS_K8S_MIG_CONFIG_LABEL
    " when it changes and writes " GS_K8S_MIG_STATE_LABEL "\n"
    "  (pending, success, failed) and " GS_K8S_MIG_APPLIED_LABEL ".\n"
    "  The labels are node NAME's ($NODE_NAME) on the API server: URL\n"
    "  (https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT), with the\n"
    "  service account's token and CA (" GS_K8S_SA_DIR ").\n"
    "  With --label-file, PATH's KEY=VALUE lines instead, the state written\n"
    "  to the state file (PATH.state).\n";

static char manager_name[] = "mig-manager"; /* the log's prefix */

/* In a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT (an
 * IPv6 host in brackets); NULL outside one. */
static const char *in_cluster_server(char *buf, size_t size) {
  const char *host = getenv("KUBERNETES_SERVICE_HOST");
  const char *port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host)
    return NULL;
  bool v6 = strchr(host, ':') != NULL;
  snprintf(buf, size, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
           port && *port ? port : "443");
  return buf;
}

/* The CDI spec follows the layout, as after `gpuslice apply`. */
static void manager_changed(void *data) {
  (void)cli_cdi_refresh(data);
}

static int mig_manager(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'f'},
      {"label-file", required_argument, NULL, 'l'},
      {"state-file", required_argument, NULL, 's'},
      {"node", required_argument, NULL, 'n'},
      {"interval-ms", required_argument, NULL, 'i'},
      {"api-server", required_argument, NULL, 'a'},
      {"token-file", required_argument, NULL, 't'},
      {"ca-file", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  char server[600];
  gs_k8s_mig_manager_options_t opt = {.log = cli_k8s_log,
                                      .log_data = manager_name,
                                      .changed = manager_changed,
                                      .changed_data = cli};
  gs_error_t err;
  unsigned ms;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'f')
      opt.config_file = optarg;
    else if (c == 'l')
      opt.label_file = optarg;
    else if (c == 's')
      opt.state_file = optarg;
    else if (c == 'n')
      opt.node = optarg;
    else if (c == 'a')
      opt.api_server = optarg;
    else if (c == 't')
      opt.token_file = optarg;
    else if (c == 'c')
      opt.ca_file = optarg;
    else if (c == 'i') {
      if (cli_parse_uint(optarg, "--interval-ms", 600000, &ms, &err) != GS_OK ||
          ms < 10)
        return cli_usage("k8s mig-manager",
                         "--interval-ms is 10 to 600000, not '%s'", optarg);
      opt.interval_ms = ms;
    } else if (c == 'h') {
      fputs(manager_usage, stdout);
      return CLI_OK;
    } else
      return cli_usage("k8s mig-manager", "bad option");
  }
  if (optind < argc)
    return cli_usage("k8s mig-manager", "unexpected argument '%s'",
                     argv[optind]);
  if (!opt.node) {
    const char *env = getenv("NODE_NAME");
    opt.node = env && *env ? env : NULL;
  }
  if (!opt.config_file)
    return cli_usage("k8s mig-manager", "--config FILE is needed");
  if (!opt.label_file && !opt.node)
    return cli_usage("k8s mig-manager",
                     "--node NAME (or $NODE_NAME) or --label-file PATH is "
                     "needed");
  if (!opt.label_file && !opt.api_server) {
    opt.api_server = in_cluster_server(server, sizeof server);
    if (!opt.api_server)
      return cli_usage("k8s mig-manager",
                       "--api-server URL is needed outside a pod "
                       "($KUBERNETES_SERVICE_HOST is not set)");
  }
  if (!opt.label_file && !opt.token_file && !opt.ca_file &&
      strncmp(opt.api_server, "https:", 6) == 0 &&
      access(GS_K8S_SA_CA, R_OK) == 0)
    opt.ca_file = GS_K8S_SA_CA;
  gs_backend_t *be = NULL;
  int rc = cli_open_backend(cli, &be, &err);
  if (rc == GS_OK)
    rc = gs_k8s_mig_manager_run(be, &opt, &err);
  gs_backend_close(be);
  return rc == GS_OK ? CLI_OK : cli_fail("k8s mig-manager", &err);
}

typedef struct shown_s {
  bool json;
  unsigned n;
} shown_t;

/* One list: "list N" then "ID HEALTH" lines, or one JSON line. */
static void show_list(void *data, size_t n, const char *const *ids,
                      const char *const *health) {
  shown_t *s = data;
  s->n++;
  if (s->json) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
      json_array_append_new(
          a, json_pack("{s:s, s:s}", "id", ids[i], "health", health[i]));
    char *text = json_dumps(a, JSON_COMPACT);
    if (text)
      puts(text);
    free(text);
    json_decref(a);
    fflush(stdout);
    return;
  }
  printf("list %u: %zu devices\n", s->n, n);
  for (size_t i = 0; i < n; i++)
    printf("  %s %s\n", ids[i], health[i]);
  fflush(stdout);
}

/* The kubelet's view of one plugin socket: ListAndWatch's lists. */
static int devices(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 's'},
      {"lists", required_argument, NULL, 'n'},
      {"wait-ms", required_argument, NULL, 'w'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  const char *socket = NULL;
  unsigned lists = 1, wait_ms = 5000;
  shown_t shown = {cli->json, 0};
  gs_error_t err;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 's')
      socket = optarg;
    else if (c == 'n' &&
             cli_parse_uint(optarg, "--lists", 1000000, &lists, &err) != GS_OK)
      return cli_fail("k8s devices", &err);
    else if (c == 'w' && cli_parse_uint(optarg, "--wait-ms", 3600000, &wait_ms,
                                        &err) != GS_OK)
      return cli_fail("k8s devices", &err);
    else if (c == 'h') {
      puts("usage: gpuslice k8s devices --socket PATH [--lists N] "
           "[--wait-ms N]\n  ListAndWatch on a device plugin's socket, as "
           "the kubelet calls it:\n  the first N lists (1), waiting at most "
           "N ms (5000)");
      return CLI_OK;
    } else if (c != 'n' && c != 'w')
      return cli_usage("k8s devices", "bad option");
  }
  if (!socket || optind < argc || lists == 0)
    return cli_usage("k8s devices", "usage: gpuslice k8s devices --socket "
                                    "PATH [--lists N] [--wait-ms N]");
  if (gs_k8s_list_devices(socket, lists, wait_ms, show_list, &shown, &err) !=
      GS_OK)
    return cli_fail("k8s devices", &err);
  return CLI_OK;
}

int cmd_k8s(cli_t *cli, int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "device-plugin") == 0)
    return device_plugin(cli, argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "devices") == 0)
    return devices(cli, argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "mig-manager") == 0)
    return mig_manager(cli, argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "metrics") == 0)
    return cmd_k8s_metrics(cli, argc - 1, argv + 1);
  return cli_usage("k8s", "usage: gpuslice k8s device-plugin [OPTIONS] | "
                          "k8s mig-manager [OPTIONS] | "
                          "k8s metrics [OPTIONS] | "
                          "k8s devices --socket PATH (--help for each)");
}
