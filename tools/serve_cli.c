/* gpuslice serve's options. -f serve.yaml holds the same options as the
 * command line (model_repository: ..., http_port: 8000, instances: [0:1,
 * 0:2]); the file is read first and the command line wins. The YAML is
 * libyaml's; each key becomes its --option, so one parser checks both. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "serve_cli.h"

enum {
  O_HEALTH_TIMEOUT = 256,
  O_EJECT_FAILURES,
  O_EJECT_MS,
  O_RESTART_UNHEALTHY,
  O_START_TIMEOUT,
  O_DRAIN_TIMEOUT,
  O_LOG_DIR,
  O_SYNC,
  O_ROUTER_THREADS,
};

static const struct option options[] = {
    {"model-repository", required_argument, NULL, 'm'},
    {"instances", required_argument, NULL, 'i'},
    {"workers-per-instance", required_argument, NULL, 'w'},
    {"http-port", required_argument, NULL, 'p'},
    {"grpc-port", required_argument, NULL, 'g'},
    {"host", required_argument, NULL, 'H'},
    {"policy", required_argument, NULL, 'P'},
    {"request-timeout", required_argument, NULL, 'T'},
    {"health-interval", required_argument, NULL, 'I'},
    {"health-timeout", required_argument, NULL, O_HEALTH_TIMEOUT},
    {"eject-failures", required_argument, NULL, O_EJECT_FAILURES},
    {"eject-time", required_argument, NULL, O_EJECT_MS},
    {"restart-unhealthy", required_argument, NULL, O_RESTART_UNHEALTHY},
    {"start-timeout", required_argument, NULL, O_START_TIMEOUT},
    {"drain-timeout", required_argument, NULL, O_DRAIN_TIMEOUT},
    {"threads", required_argument, NULL, 't'},
    {"router-threads", required_argument, NULL, O_ROUTER_THREADS},
    {"log-dir", required_argument, NULL, O_LOG_DIR},
    {"file", required_argument, NULL, 'f'},
    {"status", no_argument, NULL, 's'},
    {"add", required_argument, NULL, 'a'},
    {"remove", required_argument, NULL, 'r'},
    {"sync", no_argument, NULL, O_SYNC},
    {"help", no_argument, NULL, 'h'},
    {0}};

static const char usage[] =
    "usage: gpuslice serve --model-repository DIR [--instances all|PROFILE|"
    "ID,...]\n"
    "         [--workers-per-instance N] [--http-port N] [--grpc-port N]\n"
    "         [--host ADDR] [--policy round_robin|least_request] [--threads N]"
    "\n"
    "         [--request-timeout MS] [--health-interval MS] "
    "[--health-timeout MS]\n"
    "         [--eject-failures N] [--eject-time MS] [--restart-unhealthy MS]\n"
    "         [--start-timeout MS] [--drain-timeout MS] [--log-dir DIR]\n"
    "         [--router-threads N] [-f serve.yaml]\n"
    "       gpuslice serve --status | --add ID | --remove ID | --sync\n"
    "  One worker per instance (gpuslice run -i ID -- gpuslice worker), a\n"
    "  router on the front ports (HTTP 8000, gRPC 8001; --http-port 0: any\n"
    "  free port, --grpc-port 0: no gRPC), a supervisor restarting what\n"
    "  dies (under green isolation: one worker process per GPU hosting its\n"
    "  instances, restarted whole on any change; --workers-per-instance 1).\n"
    "  Workers follow the layout: an apply that adds instances adds\n"
    "  workers. --status lists the workers of the serve running on this\n"
    "  state directory; --add/--remove start or stop one instance's "
    "workers;\n"
    "  --sync re-reads the layout. SIGTERM drains: no new connections,\n"
    "  in-flight requests finish, then the workers stop. --threads: each\n"
    "  worker's; --router-threads: HTTP router loops (default: one per CPU\n"
    "  the serve may use, at most 16).\n"
    "  -f serve.yaml: the same options as keys (model_repository: DIR).\n";

static int number(const char *text, const char *name, unsigned max,
                  unsigned *out) {
  gs_error_t err;
  if (cli_parse_uint(text, name, max, out, &err) != GS_OK)
    return cli_fail("serve", &err);
  return CLI_OK;
}

static int take_option(serve_cli_t *sc, int c, const char *val) {
  gs_serve_options_t *o = &sc->opt;
  switch (c) {
  case 'm': sc->model_repository = val; return CLI_OK;
  case 'i': sc->instances = val; return CLI_OK;
  case 'H': o->host = val; return CLI_OK;
  case O_LOG_DIR: o->log_dir = val; return CLI_OK;
  case 's': sc->status = true; return CLI_OK;
  case 'a': sc->add = val; return CLI_OK;
  case 'r': sc->remove = val; return CLI_OK;
  case O_SYNC: sc->sync = true; return CLI_OK;
  case 'w':
    if (number(val, "--workers-per-instance", 64, &o->workers_per_instance))
      return CLI_USAGE;
    return o->workers_per_instance ? CLI_OK
                                   : cli_usage("serve", "--workers-per-"
                                               "instance is 1..64");
  case 'p': return number(val, "--http-port", 65535, &o->http_port);
  case 'g':
    o->grpc = strcmp(val, "0") != 0;
    return number(val, "--grpc-port", 65535, &o->grpc_port);
  case 'P':
    if (strcmp(val, "round_robin") == 0)
      o->policy = GS_SERVE_ROUND_ROBIN;
    else if (strcmp(val, "least_request") == 0)
      o->policy = GS_SERVE_LEAST_REQUEST;
    else
      return cli_usage("serve", "--policy '%s': round_robin or least_request",
                       val);
    return CLI_OK;
  case 'T': return number(val, "--request-timeout", 3600000, &o->request_timeout_ms);
  case 'I': return number(val, "--health-interval", 600000, &o->health_interval_ms);
  case O_HEALTH_TIMEOUT: return number(val, "--health-timeout", 600000, &o->health_timeout_ms);
  case O_EJECT_FAILURES: return number(val, "--eject-failures", 1000, &o->eject_failures);
  case O_EJECT_MS: return number(val, "--eject-time", 3600000, &o->eject_ms);
  case O_RESTART_UNHEALTHY: return number(val, "--restart-unhealthy", 3600000, &o->restart_unhealthy_ms);
  case O_START_TIMEOUT: return number(val, "--start-timeout", 3600000, &o->start_timeout_ms);
  case O_DRAIN_TIMEOUT: return number(val, "--drain-timeout", 3600000, &o->drain_timeout_ms);
  case O_ROUTER_THREADS:
    if (number(val, "--router-threads", UINT_MAX, &o->router_threads))
      return CLI_USAGE;
    return o->router_threads >= 1 && o->router_threads <= GS_SERVE_MAX_THREADS
               ? CLI_OK
               : cli_usage("serve", "--router-threads %s: 1..%d", val,
                           GS_SERVE_MAX_THREADS);
  case 't':
    if (number(val, "--threads", 1024, &sc->threads))
      return CLI_USAGE;
    return sc->threads ? CLI_OK : cli_usage("serve", "--threads is 1..1024");
  default:
    return cli_usage("serve", "bad option (gpuslice serve --help)");
  }
}

/* ---- serve.yaml ---------------------------------------------------------- */

static const struct option *option_for_key(const char *key) {
  char name[64];
  size_t i = 0;
  for (; key[i] && i + 1 < sizeof name; i++)
    name[i] = key[i] == '_' ? '-' : key[i];
  name[i] = '\0';
  for (const struct option *o = options; o->name; o++)
    if (strcmp(o->name, name) == 0 && o->has_arg == required_argument &&
        o->val != 'f' && o->val != 'a' && o->val != 'r')
      return o;
  return NULL;
}

/* A scalar, or a sequence of scalars joined by commas (instances). */
static char *node_text(yaml_document_t *doc, yaml_node_t *node) {
  if (node->type == YAML_SCALAR_NODE)
    return strndup((char *)node->data.scalar.value, node->data.scalar.length);
  if (node->type != YAML_SEQUENCE_NODE)
    return NULL;
  size_t len = 0;
  char *text = calloc(1, 1);
  for (yaml_node_item_t *it = node->data.sequence.items.start;
       text && it < node->data.sequence.items.top; it++) {
    yaml_node_t *item = yaml_document_get_node(doc, *it);
    if (!item || item->type != YAML_SCALAR_NODE) {
      free(text);
      return NULL;
    }
    size_t add = item->data.scalar.length;
    char *grown = realloc(text, len + add + 2);
    if (!grown) {
      free(text);
      return NULL;
    }
    text = grown;
    if (len)
      text[len++] = ',';
    memcpy(text + len, item->data.scalar.value, add);
    len += add;
    text[len] = '\0';
  }
  return text;
}

static int file_fail(const char *path, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int file_fail(const char *path, yaml_mark_t mark, const char *fmt,
                     ...) {
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
    return file_fail(path, root->start_mark, "%s", "expected a mapping of "
                     "options (model_repository: DIR, ...)");
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
       p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(doc, p->key);
    yaml_node_t *v = yaml_document_get_node(doc, p->value);
    const char *key = k && k->type == YAML_SCALAR_NODE
                          ? (const char *)k->data.scalar.value
                          : "";
    const struct option *o = option_for_key(key);
    if (!o)
      return file_fail(path, k->start_mark, "unknown key '%s' (keys are the "
                       "long options with _ for -)", key);
    char *text = node_text(doc, v);
    if (!text)
      return file_fail(path, v->start_mark, "'%s' takes a value or a list of "
                       "values", key);
    /* kept for the process's life: options point into it */
    size_t n = 0;
    while (sc->file_strings && sc->file_strings[n])
      n++;
    char **keep = realloc(sc->file_strings, (n + 2) * sizeof *keep);
    if (!keep) {
      free(text);
      return cli_usage("serve", "out of memory");
    }
    keep[n] = text;
    keep[n + 1] = NULL;
    sc->file_strings = keep;
    int rc = take_option(sc, o->val, text);
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
  int c, rc;
  sc->opt.http_port = 8000;
  sc->opt.grpc_port = 8001;
  sc->opt.grpc = true;
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
  optind = 0;
  while ((c = getopt_long(argc, argv, "hf:", options, NULL)) != -1) {
    if (c == 'h') {
      fputs(usage, stdout);
      sc->help = true;
      return CLI_OK;
    }
    if (c == 'f')
      continue;
    if (c == '?' || (rc = take_option(sc, c, optarg)) != CLI_OK)
      return c == '?' ? cli_usage("serve", "bad option") : rc;
  }
  if (optind < argc)
    return cli_usage("serve", "unexpected argument '%s'", argv[optind]);
  if ((sc->status + sc->sync + !!sc->add + !!sc->remove) > 1)
    return cli_usage("serve", "--status, --add, --remove and --sync go alone");
  if (!sc->status && !sc->sync && !sc->add && !sc->remove &&
      !sc->model_repository)
    return cli_usage("serve", "--model-repository DIR is needed");
  return CLI_OK;
}

void serve_cli_release(serve_cli_t *sc) {
  for (size_t i = 0; sc->file_strings && sc->file_strings[i]; i++)
    free(sc->file_strings[i]);
  free(sc->file_strings);
  sc->file_strings = NULL;
}
