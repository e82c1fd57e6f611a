/* gpuslice serve's options, declared once in a cli_opts table. -f
 * serve.yaml holds the same options as the command line (model_repository:
 * ..., http_port: 8000, instances: [0:1, 0:2]); the file is read first and
 * the command line wins. The YAML is libyaml's; each key is its option's,
 * so one check covers both. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "gpuslice/worker.h"
#include "serve_cli.h"

#define S(field) offsetof(serve_cli_t, field)
#define O(field) offsetof(serve_cli_t, opt.field)

/* --grpc-port N: 0 turns the router's gRPC off. */
static int parse_grpc_port(void *ctx, const cli_opts_t *spec,
                           const cli_opt_t *o, const char *val) {
  serve_cli_t *sc = ctx;
  sc->opt.grpc = strcmp(val, "0") != 0;
  return cli_opt_uint(spec, o, val, &sc->opt.grpc_port);
}

/* Checked here, so that a typo fails serve, not every worker it starts. */
static int parse_control_mode(void *ctx, const cli_opts_t *spec,
                              const cli_opt_t *o, const char *val) {
  (void)spec;
  (void)o;
  if (strcmp(val, "none") && strcmp(val, "poll") && strcmp(val, "explicit"))
    return cli_usage("serve",
                     "--model-control-mode is none, poll or explicit, not "
                     "'%s'",
                     val);
  ((serve_cli_t *)ctx)->model_control_mode = val;
  return CLI_OK;
}

/* --rate-limit [ID=]N,...: checked whole (gs_serve_rates_parse) before it
 * replaces an earlier one. */
static int parse_rate_limit(void *ctx, const cli_opts_t *spec,
                            const cli_opt_t *o, const char *val) {
  serve_cli_t *sc = ctx;
  gs_error_t err;
  (void)spec;
  (void)o;
  if (gs_serve_rates_parse(val, &sc->rates, &err) != GS_OK)
    return cli_usage("serve", "%s", err.msg);
  return CLI_OK;
}

/* N (1..2^20) or all, passed to each worker as it is. */
static int parse_plan_before_ready(void *ctx, const cli_opts_t *spec,
                                   const cli_opt_t *o, const char *val) {
  serve_cli_t *sc = ctx;
  unsigned n;
  (void)spec;
  (void)o;
  int rc = cli_plan_before_ready("serve", val, &n);
  if (rc == CLI_OK)
    sc->plan_before_ready = val;
  return rc;
}

static const cli_opt_t options[] = {
    {.name = "model-repository",
     .type = CLI_OPT_STRING,
     .arg = "DIR",
     .help = "the models (Triton layout); needed to serve",
     .key = "model_repository",
     .offset = S(model_repository)},
    {.name = "instances",
     .type = CLI_OPT_STRING,
     .arg = "all|PROFILE|ID,...",
     .help = "the instances to serve: all (default), a profile name, or IDs "
             "and UUIDs by commas",
     .key = "instances",
     .offset = S(instances)},
    {.name = "workers-per-instance",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 64,
     .help = "worker processes per instance, default 1 (the soft backend "
             "splits the instance's memory among them)",
     .key = "workers_per_instance",
     .offset = O(workers_per_instance)},
    {.name = "http-port",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .max = 65535,
     .def = "8000",
     .help = "the router's HTTP port; 0: any free port",
     .key = "http_port",
     .offset = O(http_port)},
    {.name = "grpc-port",
     .type = CLI_OPT_CUSTOM,
     .arg = "N",
     .max = 65535,
     .def = "8001",
     .help = "the router's gRPC port; 0: no gRPC",
     .key = "grpc_port",
     .parse = parse_grpc_port},
    {.name = "host",
     .type = CLI_OPT_STRING,
     .arg = "ADDR",
     .help = "the front address (default 127.0.0.1)",
     .key = "host",
     .offset = O(host)},
    {.name = "policy",
     .type = CLI_OPT_CHOICE,
     .choices = {[GS_SERVE_ROUND_ROBIN] = "round_robin",
                 [GS_SERVE_LEAST_REQUEST] = "least_request"},
     .def = "round_robin",
     .help = "how the router picks a worker",
     .key = "policy",
     .offset = O(policy)},
    {.name = "request-timeout",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 3600000,
     .def = "0",
     .help = "per request; 0: 30000",
     .key = "request_timeout",
     .offset = O(request_timeout_ms)},
    {.name = "sequence-idle",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 86400000,
     .def = "0",
     .help = "a sequence idle this long loses its worker; 0: 60000",
     .key = "sequence_idle",
     .offset = O(sequence_idle_ms)},
    {.name = "health-interval",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 600000,
     .def = "0",
     .help = "between active health checks; 0: 200",
     .key = "health_interval",
     .offset = O(health_interval_ms)},
    {.name = "health-timeout",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 600000,
     .def = "0",
     .help = "of one health check; 0: 1000",
     .key = "health_timeout",
     .offset = O(health_timeout_ms)},
    {.name = "eject-failures",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .max = 1000,
     .def = "0",
     .help = "consecutive failed requests that take a worker out; 0: 3",
     .key = "eject_failures",
     .offset = O(eject_failures)},
    {.name = "eject-time",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 3600000,
     .def = "0",
     .help = "how long an ejected worker stays out; 0: 1000",
     .key = "eject_time",
     .offset = O(eject_ms)},
    {.name = "restart-unhealthy",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 3600000,
     .def = "0",
     .help = "unhealthy this long: the worker is restarted; 0: 10000",
     .key = "restart_unhealthy",
     .offset = O(restart_unhealthy_ms)},
    {.name = "start-timeout",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 3600000,
     .def = "0",
     .help = "for the first start of all workers; 0: 120000",
     .key = "start_timeout",
     .offset = O(start_timeout_ms)},
    {.name = "drain-timeout",
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .max = 3600000,
     .def = "0",
     .help = "SIGTERM waits this long for in-flight requests; 0: 30000",
     .key = "drain_timeout",
     .offset = O(drain_timeout_ms)},
    {.name = "threads",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 1024,
     .help = "each worker's inference threads (default: the "
             "worker's, the CPUs it may run on)",
     .key = "threads",
     .offset = S(threads)},
    {.name = "model-control-mode",
     .type = CLI_OPT_CUSTOM,
     .arg = "none|poll|explicit",
     .help = "each worker's (Triton's): none (default) loads every model, "
             "poll also rescans the repository, explicit loads "
             "--load-model's and serves load and unload",
     .key = "model_control_mode",
     .parse = parse_control_mode},
    {.name = "load-model",
     .type = CLI_OPT_STRING,
     .arg = "NAME[,NAME]...",
     .help = "with explicit: the models each worker loads at start ('*': "
             "all)",
     .key = "load_model",
     .offset = S(load_models)},
    {.name = "repository-poll-secs",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 86400,
     .help = "with poll: seconds between rescans (default 15)",
     .key = "repository_poll_secs",
     .offset = S(poll_secs)},
    {.name = "server-name",
     .type = CLI_OPT_STRING,
     .arg = "NAME",
     .help = "the server name each worker gives on GET /v2 and "
             "ServerMetadata (default gpuslice; Triton's health examples "
             "want triton)",
     .key = "server_name",
     .offset = S(server_name)},
    {.name = "busy-poll-us",
     .type = CLI_OPT_UINT,
     .arg = "US",
     .max = GS_WORKER_MAX_BUSY_POLL_US,
     .help = "each worker's --busy-poll-us: its threads spin this long for "
             "the next request instead of sleeping (a core each); 0: off",
     .key = "busy_poll_us",
     .offset = S(busy_poll_us)},
    {.name = "gpu-wait",
     .type = CLI_OPT_CHOICE,
     .choices = GS_WORKER_GPU_WAIT_NAMES,
     .def = "auto",
     .help = "each worker's --gpu-wait: how its CUDA runs are waited for; "
             "auto: spin with --busy-poll-us, else block when the serve "
             "starts several workers, else driver",
     .key = "gpu_wait",
     .offset = S(gpu_wait)},
    {.name = "rate-limit",
     .type = CLI_OPT_CUSTOM,
     .arg = "[ID=]N,...",
     .help = "each instance's rate limit, inferences a second its workers "
             "start (a request of batch 64 counts 64; the rest wait; "
             "split among --workers-per-instance): N for every instance, "
             "ID=N for one (any form --instances takes; 0: none), e.g. "
             "200,0:1=0 holds every instance but 0:1 to 200",
     .key = "rate_limit",
     .parse = parse_rate_limit},
    {.name = "conv-cache",
     .type = CLI_OPT_STRING,
     .arg = "DIR",
     .help = "where the workers keep the conv choices they timed, so "
             "that a restarted one plans without timing (default: "
             "STATE_DIR/conv-cache; empty: none)",
     .key = "conv_cache",
     .offset = S(conv_cache)},
    {.name = "plan-before-ready",
     .type = CLI_OPT_CUSTOM,
     .arg = "N|all",
     .help = "each worker's --plan-before-ready: a GPU model plans batch "
             "sizes up to N before it is ready, the larger ones right after "
             "(a restarted worker serves sooner); all: every size first "
             "(default: the worker's, 1)",
     .key = "plan_before_ready",
     .parse = parse_plan_before_ready},
    {.name = "router-threads",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = GS_SERVE_MAX_THREADS,
     .help = "HTTP router loops (default: one per CPU the serve may use, at "
             "most 16)",
     .key = "router_threads",
     .offset = O(router_threads)},
    {.name = "log-dir",
     .type = CLI_OPT_STRING,
     .arg = "DIR",
     .help = "the workers' logs (default STATE_DIR/serve-logs)",
     .key = "log_dir",
     .offset = O(log_dir)},
    {.name = "file",
     .short_name = 'f',
     .type = CLI_OPT_STRING,
     .arg = "serve.yaml",
     .help = "options as keys, read before the command line",
     .offset = S(file)},
    {.name = "status",
     .type = CLI_OPT_FLAG,
     .help = "list the workers of the serve running on this state directory",
     .offset = S(status)},
    {.name = "add",
     .type = CLI_OPT_STRING,
     .arg = "ID",
     .help = "start one instance's workers in the running serve",
     .offset = S(add)},
    {.name = "remove",
     .type = CLI_OPT_STRING,
     .arg = "ID",
     .help = "stop one instance's workers in the running serve",
     .offset = S(remove)},
    {.name = "sync",
     .type = CLI_OPT_FLAG,
     .help = "make the running serve re-read the layout",
     .offset = S(sync)},
    {.name = "help",
     .short_name = 'h',
     .type = CLI_OPT_HELP,
     .help = "this text"},
};

const cli_opts_t serve_cli_options = {
    .verb = "serve",
    .synopsis =
        "usage: gpuslice serve --model-repository DIR [OPTION]... "
        "[-f serve.yaml]\n"
        "       gpuslice serve --status | --add ID | --remove ID | --sync\n",
    .about =
        "  One worker per instance (gpuslice run -i ID -- gpuslice worker), a\n"
        "  router on the front ports (HTTP 8000, gRPC 8001), a supervisor\n"
        "  restarting what dies (under green isolation: one worker process "
        "per\n"
        "  GPU hosting its instances, restarted whole on any change;\n"
        "  --workers-per-instance 1). Workers follow the layout: an apply "
        "that\n"
        "  adds instances adds workers. SIGTERM drains: no new connections,\n"
        "  in-flight requests finish, then the workers stop.\n"
        "  -f serve.yaml: the same options as keys (model_repository: DIR,\n"
        "  instances: [0:1, 0:2]); the command line wins.\n",
    .opt = options,
    .n = sizeof options / sizeof options[0],
    .ctx_size = sizeof(serve_cli_t),
};

/* ---- serve.yaml ---------------------------------------------------------- */

/* A scalar, or a sequence of scalars joined by commas (instances); NULL
 * for anything else, or when out of memory. */
static char *node_text(yaml_document_t *doc, yaml_node_t *node) {
  if (node->type == YAML_SCALAR_NODE)
    return strndup((char *)node->data.scalar.value, node->data.scalar.length);
  if (node->type != YAML_SEQUENCE_NODE)
    return NULL;
  gs_buf_t text;
  gs_buf_init(&text, GS_LIMIT_TEXT);
  for (yaml_node_item_t *it = node->data.sequence.items.start;
       it < node->data.sequence.items.top; it++) {
    yaml_node_t *item = yaml_document_get_node(doc, *it);
    if (!item || item->type != YAML_SCALAR_NODE) {
      gs_buf_free(&text);
      return NULL;
    }
    if (text.len)
      gs_buf_adds(&text, ",");
    gs_buf_add(&text, item->data.scalar.value, item->data.scalar.length);
  }
  return gs_buf_take(&text, NULL); /* NULL when an append failed */
}

static int file_fail(const char *path, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int file_fail(const char *path, yaml_mark_t mark, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "gpuslice: serve: %s:%zu:%zu: ", path, mark.line + 1,
          mark.column + 1);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return CLI_USAGE;
}

/* Applies each key of the mapping in doc as its option. */
static int take_mapping(serve_cli_t *sc, const char *path,
                        yaml_document_t *doc) {
  yaml_node_t *root = yaml_document_get_root_node(doc);
  if (!root)
    return CLI_OK; /* an empty file: no options */
  if (root->type != YAML_MAPPING_NODE)
    return file_fail(path, root->start_mark, "%s",
                     "expected a mapping of "
                     "options (model_repository: DIR, ...)");
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
       p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    yaml_node_t *v = yaml_document_get_node(doc, p->value);
    const char *key = k && k->type == YAML_SCALAR_NODE
                          ? (const char *)k->data.scalar.value
                          : "";
    const cli_opt_t *o = cli_opts_key(&serve_cli_options, key);
    if (!o)
      return file_fail(path, k->start_mark,
                       "unknown key '%s' (keys are the "
                       "long options with _ for -)",
                       key);
    char *text = node_text(doc, v);
    if (!text)
      return file_fail(path, v->start_mark,
                       "'%s' takes a value or a list of "
                       "values",
                       key);
    /* kept until serve_cli_release: options point into it */
    if (gs_buf_add(&sc->file_strings, &text, sizeof text) != GS_OK) {
      free(text);
      gs_error_t err;
      gs_buf_error(&sc->file_strings, &err);
      return cli_fail("serve", &err);
    }
    int rc = cli_opts_take(&serve_cli_options, sc, o, text);
    if (rc != CLI_OK)
      return file_fail(path, v->start_mark, "bad value for '%s' (above)", key);
  }
  return CLI_OK;
}

static int read_file(serve_cli_t *sc, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "gpuslice: serve: cannot open %s: %s\n", path,
            strerror(errno));
    return CLI_USAGE;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  int rc;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = file_fail(path, parser.problem_mark, "%s",
                   parser.problem ? parser.problem : "malformed YAML");
  } else {
    rc = take_mapping(sc, path, &doc);
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

int serve_cli_parse(serve_cli_t *sc, int argc, char **argv) {
  int rc;
  gs_buf_init(&sc->file_strings, GS_LIMIT_TEXT);
  if ((rc = cli_opts_defaults(&serve_cli_options, sc)) != CLI_OK)
    return rc;
  for (int i = 1; i < argc; i++) { /* the file first: the command line wins */
    const char *file = NULL;
    if ((strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--file") == 0) &&
        i + 1 < argc)
      file = argv[i + 1];
    else if (strncmp(argv[i], "--file=", 7) == 0)
      file = argv[i] + 7;
    if (file && (rc = read_file(sc, file)) != CLI_OK)
      return rc;
  }
  rc = cli_opts_parse(&serve_cli_options, sc, argc, argv, &sc->help);
  if (rc != CLI_OK || sc->help)
    return rc;
  if ((sc->status + sc->sync + !!sc->add + !!sc->remove) > 1)
    return cli_usage("serve", "--status, --add, --remove and --sync go alone");
  if (!sc->status && !sc->sync && !sc->add && !sc->remove &&
      !sc->model_repository)
    return cli_usage("serve", "--model-repository DIR is needed");
  return CLI_OK;
}

void serve_cli_release(serve_cli_t *sc) {
  gs_backend_close(sc->hold_be); /* member_hold's, on every way out */
  sc->hold_be = NULL;
  char **kept = (char **)sc->file_strings.data;
  for (size_t i = 0; kept && i < sc->file_strings.len / sizeof *kept; i++)
    free(kept[i]);
  gs_buf_free(&sc->file_strings);
}
