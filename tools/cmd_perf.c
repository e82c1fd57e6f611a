/* gpuslice perf: perf_analyzer's flags and console report around the
 * library's load generator (gs_perf_run), plus its CSV (-f), a chart
 * (--plot) and --json. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpuslice/perf.h"
#include "gpuslice/plot.h"

typedef struct perf_cli_s {
  gs_perf_options_t o;
  char host[256];
  const char *csv, *plot;
  bool json, have_range, help;
} perf_cli_t;

/* -u HOST:PORT (an http:// prefix and [IPv6] brackets allowed). */
static int parse_url(perf_cli_t *p, const char *text) {
  gs_error_t err;
  const char *s = strncmp(text, "http://", 7) == 0 ? text + 7 : text;
  const char *colon = strrchr(s, ':');
  if (colon && strchr(s, ']') && colon < strchr(s, ']'))
    colon = NULL; /* [::1] alone */
  size_t hlen = colon ? (size_t)(colon - s) : strlen(s);
  if (hlen == 0 || hlen >= sizeof p->host)
    return cli_usage("perf", "-u '%s': expected HOST:PORT", text);
  if (s[0] == '[' && s[hlen - 1] == ']')
    snprintf(p->host, sizeof p->host, "%.*s", (int)hlen - 2, s + 1);
  else
    snprintf(p->host, sizeof p->host, "%.*s", (int)hlen, s);
  p->o.host = p->host;
  if (colon &&
      (cli_parse_uint(colon + 1, "-u port", 65535, &p->o.port, &err) != GS_OK ||
       p->o.port == 0))
    return cli_usage("perf", "-u '%s': the port is 1..65535", text);
  return CLI_OK;
}

/* --input-data random|zero|FILE */
static int parse_input_data(void *ctx, const cli_opts_t *spec,
                            const cli_opt_t *o, const char *a) {
  gs_perf_options_t *po = &((perf_cli_t *)ctx)->o;
  (void)spec;
  (void)o;
  if (strcmp(a, "random") == 0)
    po->data = GS_PERF_DATA_RANDOM;
  else if (strcmp(a, "zero") == 0)
    po->data = GS_PERF_DATA_ZERO;
  else
    po->data = GS_PERF_DATA_FILE, po->data_file = a;
  return CLI_OK;
}

static int parse_range(perf_cli_t *p, bool rate, const char *a) {
  gs_error_t err;
  if (p->have_range)
    return cli_usage("perf", "give one of --concurrency-range and "
                             "--request-rate-range, once");
  p->have_range = true;
  p->o.mode = rate ? GS_PERF_RATE : GS_PERF_CONCURRENCY;
  if (gs_perf_parse_range(a, rate, &p->o.range, &err) != GS_OK)
    return cli_fail("perf", &err);
  return CLI_OK;
}

static int parse_shape(void *ctx, const cli_opts_t *spec, const cli_opt_t *o,
                       const char *a) {
  perf_cli_t *p = ctx;
  gs_error_t err;
  (void)spec;
  (void)o;
  if (p->o.n_shapes == GS_PERF_MAX_SHAPES)
    return cli_usage("perf", "at most %d --shape", GS_PERF_MAX_SHAPES);
  if (gs_perf_parse_shape(a, &p->o.shapes[p->o.n_shapes++], &err) != GS_OK)
    return cli_fail("perf", &err);
  return CLI_OK;
}

static int parse_concurrency(void *ctx, const cli_opts_t *spec,
                             const cli_opt_t *o, const char *a) {
  (void)spec;
  (void)o;
  return parse_range(ctx, false, a);
}

static int parse_rate(void *ctx, const cli_opts_t *spec, const cli_opt_t *o,
                      const char *a) {
  (void)spec;
  (void)o;
  return parse_range(ctx, true, a);
}

static int parse_u(void *ctx, const cli_opts_t *spec, const cli_opt_t *o,
                   const char *a) {
  (void)spec;
  (void)o;
  return parse_url(ctx, a);
}

#define P(field) offsetof(perf_cli_t, field)

/* perf_analyzer's flags: -m, -x, -u, -i, -b and -f have no long form. */
static const cli_opt_t options[] = {
    {.short_name = 'm',
     .type = CLI_OPT_STRING,
     .arg = "MODEL",
     .help = "the model; needed",
     .offset = P(o.model)},
    {.short_name = 'x',
     .type = CLI_OPT_STRING,
     .arg = "VERSION",
     .help = "the model's version (default: the server's choice)",
     .offset = P(o.version)},
    {.short_name = 'u',
     .type = CLI_OPT_CUSTOM,
     .arg = "HOST:PORT",
     .help = "the server (default localhost:8000, 8001 for gRPC; an http:// "
             "prefix and [IPv6] allowed)",
     .parse = parse_u},
    {.short_name = 'i',
     .type = CLI_OPT_CHOICE,
     .choices = {[GS_PERF_HTTP] = "http", [GS_PERF_GRPC] = "grpc"},
     .help = "the protocol (default http)",
     .offset = P(o.protocol)},
    {.short_name = 'b',
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 1u << 20,
     .help = "batch size: rows per request (default 1)",
     .offset = P(o.batch)},
    {.name = "concurrency-range",
     .type = CLI_OPT_CUSTOM,
     .arg = "START:END:STEP",
     .help = "requests in flight, level by level (default 1:1:1)",
     .parse = parse_concurrency},
    {.name = "request-rate-range",
     .type = CLI_OPT_CUSTOM,
     .arg = "START:END:STEP",
     .help = "requests per second instead, level by level",
     .parse = parse_rate},
    {.name = "request-distribution",
     .type = CLI_OPT_CHOICE,
     .choices =
         {[GS_PERF_CONSTANT] = "constant", [GS_PERF_POISSON] = "poisson"},
     .help = "the request rate's arrivals (default constant)",
     .offset = P(o.distribution)},
    {.name = "measurement-interval",
     .short_name = 'p',
     .type = CLI_OPT_UINT,
     .arg = "MS",
     .min = 10,
     .max = 3600000,
     .help = "one measurement window (default 5000)",
     .offset = P(o.window_ms)},
    {.name = "stability-percentage",
     .short_name = 's',
     .type = CLI_OPT_DOUBLE,
     .arg = "PCT",
     .dmin = 0.001,
     .help = "windows agreeing within this are stable (default 10)",
     .offset = P(o.stability_pct)},
    {.name = "percentile",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 99,
     .help = "stabilise on this latency percentile (default: the average)",
     .offset = P(o.percentile)},
    {.name = "max-trials",
     .short_name = 'r',
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 3,
     .max = 100,
     .help = "windows at most per level (default 10)",
     .offset = P(o.max_trials)},
    {.name = "input-data",
     .type = CLI_OPT_CUSTOM,
     .arg = "random|zero|FILE",
     .help = "the tensors sent (default random; FILE: perf_analyzer's JSON)",
     .parse = parse_input_data},
    {.name = "shared-memory",
     .type = CLI_OPT_CHOICE,
     .choices = {[GS_PERF_SHM_NONE] = "none",
                 [GS_PERF_SHM_SYSTEM] = "system",
                 [GS_PERF_SHM_CUDA] = "cuda"},
     .help = "inputs written once into a shared-memory region per request "
             "and outputs asked into it (default none; cuda: device 0)",
     .offset = P(o.shared_memory)},
    {.name = "input-tensor-format",
     .type = CLI_OPT_CHOICE,
     .choices =
         {[GS_PERF_FORMAT_BINARY] = "binary", [GS_PERF_FORMAT_JSON] = "json"},
     .help = "HTTP inputs as binary data after the JSON (default) or as "
             "JSON data arrays",
     .offset = P(o.input_format)},
    {.name = "output-tensor-format",
     .type = CLI_OPT_CHOICE,
     .choices =
         {[GS_PERF_FORMAT_BINARY] = "binary", [GS_PERF_FORMAT_JSON] = "json"},
     .help = "HTTP outputs asked as binary data (default) or as JSON",
     .offset = P(o.output_format)},
    {.name = "output-shared-memory-size",
     .type = CLI_OPT_UINT,
     .arg = "BYTES",
     .min = 1,
     .max = 1u << 30,
     .help = "room for each output in the region (default 102400)",
     .offset = P(o.output_shm_size)},
    {.name = "shape",
     .type = CLI_OPT_CUSTOM,
     .arg = "NAME:D1,D2",
     .help = "repeatable: the shape of a variable-size input",
     .parse = parse_shape},
    {.name = "async",
     .short_name = 'a',
     .type = CLI_OPT_FLAG,
     .help = "asynchronous calls",
     .offset = P(o.async)},
    {.name = "max-threads",
     .type = CLI_OPT_UINT,
     .arg = "N",
     .min = 1,
     .max = 4096,
     .help = "request-rate mode: connections at most (default 64)",
     .offset = P(o.max_threads)},
    {.short_name = 'f',
     .type = CLI_OPT_STRING,
     .arg = "FILE.csv",
     .help = "perf_analyzer's CSV of the levels",
     .offset = P(csv)},
    {.name = "latency-budget",
     .type = CLI_OPT_DOUBLE,
     .arg = "MS",
     .dmin = 0.001,
     .help = "report the highest level whose latency is within it",
     .offset = P(o.latency_budget_ms)},
    {.name = "plot",
     .type = CLI_OPT_STRING,
     .arg = "FILE.svg",
     .help = "throughput and latency charts",
     .offset = P(plot)},
    {.name = "json",
     .type = CLI_OPT_FLAG,
     .help = "the report as JSON",
     .offset = P(json)},
    {.name = "help",
     .short_name = 'h',
     .type = CLI_OPT_HELP,
     .help = "this text"},
};

const cli_opts_t perf_cli_options = {
    .verb = "perf",
    .synopsis = "usage: gpuslice perf -m MODEL [OPTION]...\n",
    .about = "  perf_analyzer's flags and defaults: -u localhost:8000 (8001 "
             "for\n  gRPC), concurrency 1:1:1, -p 5000 ms windows, -s 10 %, "
             "-r 10 trials.\n  Exit status: 0 done, 1 measurement failed or "
             "unstable, 2 bad input.\n",
    .opt = options,
    .n = sizeof options / sizeof options[0],
    .ctx_size = sizeof(perf_cli_t),
};

static int parse_args(perf_cli_t *p, int argc, char **argv) {
  p->o.range = (gs_perf_range_t){1, 1, 1};
  int rc = cli_opts_defaults(&perf_cli_options, p);
  if (rc == CLI_OK)
    rc = cli_opts_parse(&perf_cli_options, p, argc, argv, &p->help);
  if (rc != CLI_OK || p->help)
    return rc;
  if (!p->o.model)
    return cli_usage("perf", "-m MODEL is needed");
  return CLI_OK;
}

/* ---- the console report, in perf_analyzer's words ---------------------- */

static void print_settings(const perf_cli_t *p) {
  const gs_perf_options_t *o = &p->o;
  printf("*** Measurement Settings ***\n  Batch size: %u\n"
         "  Service Kind: TRITON\n"
         "  Using \"time_windows\" mode for stabilization\n",
         o->batch ? o->batch : 1);
  if (o->percentile)
    printf("  Stabilizing using p%u latency and throughput\n", o->percentile);
  else
    printf("  Stabilizing using average latency and throughput\n");
  printf("  Measurement window: %u msec\n", o->window_ms ? o->window_ms : 5000);
  if (o->mode == GS_PERF_RATE)
    printf("  Request Rate limit: %g requests per seconds\n"
           "  Using %s distribution on request generation\n",
           o->range.end,
           o->distribution == GS_PERF_POISSON ? "poisson" : "uniform");
  else
    printf("  Concurrency limit: %g concurrent requests\n", o->range.end);
  printf("  Using %s calls for inference\n\n",
         o->async ? "asynchronous" : "synchronous");
}

static void print_server(const gs_perf_server_t *s) {
  printf("  Server: \n    Inference count: %llu\n    Execution count: %llu\n"
         "    Successful request count: %llu\n"
         "    Avg request latency: %.0f usec (overhead %.0f usec + queue %.0f "
         "usec + compute input %.0f usec + compute infer %.0f usec + compute "
         "output %.0f usec)\n",
         (unsigned long long)s->inferences, (unsigned long long)s->executions,
         (unsigned long long)s->success, floor(s->request_us),
         floor(s->overhead_us), floor(s->queue_us), floor(s->input_us),
         floor(s->infer_us), floor(s->output_us));
}

static void on_level(const gs_perf_result_t *r, void *user) {
  const perf_cli_t *p = user;
  if (p->json)
    return;
  if (p->o.mode == GS_PERF_RATE)
    printf("Request Rate: %g inference requests per seconds\n", r->level);
  else
    printf("Request concurrency: %g\n", r->level);
  printf("  Client: \n    Request count: %llu\n    Throughput: %g infer/sec\n"
         "    Avg latency: %.0f usec (standard deviation %.0f usec)\n",
         (unsigned long long)r->request_count, r->throughput, floor(r->avg_us),
         floor(r->stddev_us));
  printf("    p50 latency: %.0f usec\n    p90 latency: %.0f usec\n"
         "    p95 latency: %.0f usec\n    p99 latency: %.0f usec\n",
         floor(r->p50_us), floor(r->p90_us), floor(r->p95_us),
         floor(r->p99_us));
  double sr = r->send_us + r->recv_us;
  if (p->o.protocol == GS_PERF_GRPC)
    printf("    Avg gRPC time: %.0f usec ((un)marshal request/response %.0f "
           "usec + response wait %.0f usec)\n",
           floor(r->avg_us), floor(sr), floor(fmax(0, r->avg_us - sr)));
  else
    printf("    Avg HTTP time: %.0f usec (send/recv %.0f usec + response "
           "wait %.0f usec)\n",
           floor(r->avg_us), floor(sr), floor(fmax(0, r->avg_us - sr)));
  if (r->has_server)
    print_server(&r->server);
  putchar('\n');
  if (r->client_bottleneck)
    fprintf(stderr,
            "gpuslice: perf: warning: client bottleneck at %s %g: "
            "%s; the figures may understate the server\n",
            p->o.mode == GS_PERF_RATE ? "request rate" : "concurrency",
            r->level, r->bottleneck);
  fflush(stdout);
}

static void print_summary(const perf_cli_t *p, const gs_perf_report_t *rep) {
  bool rate = p->o.mode == GS_PERF_RATE;
  char lat[16] = "Average";
  if (p->o.percentile)
    snprintf(lat, sizeof lat, "p%u", p->o.percentile);
  printf("Inferences/Second vs. Client %s Batch Latency\n", lat);
  for (size_t i = 0; i < rep->n; i++)
    printf("%s: %g, throughput: %g infer/sec, latency %.0f usec\n",
           rate ? "Request Rate" : "Concurrency", rep->levels[i].level,
           rep->levels[i].throughput, floor(rep->levels[i].pct_us));
  if (!(p->o.latency_budget_ms > 0))
    return;
  if (rep->budget_index < 0) {
    printf("Latency budget %g ms (%s): no %s within it\n",
           p->o.latency_budget_ms, p->o.percentile ? lat : "p99",
           rate ? "request rate" : "concurrency");
    return;
  }
  const gs_perf_result_t *b = &rep->levels[rep->budget_index];
  printf("Latency budget %g ms (%s): highest %s within it: %g (%.0f usec, "
         "%g infer/sec)\n",
         p->o.latency_budget_ms, p->o.percentile ? lat : "p99",
         rate ? "request rate" : "concurrency", b->level,
         floor(p->o.percentile ? b->pct_us : b->p99_us), b->throughput);
}

/* ---- files and JSON ------------------------------------------------------ */

static int write_csv(const perf_cli_t *p, const gs_perf_report_t *rep) {
  gs_error_t err;
  char *csv;
  if (gs_perf_csv(rep, p->o.mode, &csv, &err) != GS_OK)
    return cli_fail("perf", &err);
  FILE *f = fopen(p->csv, "w");
  bool ok = f && fputs(csv, f) >= 0;
  if (f && fclose(f) != 0)
    ok = false;
  free(csv);
  if (!ok) {
    gs_error_sys(&err, errno, "cannot write %s", p->csv);
    return cli_fail("perf", &err);
  }
  return CLI_OK;
}

static int write_plot(const perf_cli_t *p, const gs_perf_report_t *rep) {
  gs_error_t err;
  size_t n = rep->n;
  double *x = calloc(n + 1, sizeof *x), *tput = calloc(n + 1, sizeof *tput),
         *lat = calloc(n + 1, sizeof *lat);
  bool rate = p->o.mode == GS_PERF_RATE;
  char lat_label[64], budget[64];
  snprintf(lat_label, sizeof lat_label, "p%u latency (ms)",
           p->o.percentile ? p->o.percentile : 99);
  snprintf(budget, sizeof budget, "budget %g ms", p->o.latency_budget_ms);
  for (size_t i = 0; x && tput && lat && i < n; i++) {
    x[i] = rep->levels[i].level;
    tput[i] = rep->levels[i].throughput;
    lat[i] = (p->o.percentile ? rep->levels[i].pct_us : rep->levels[i].p99_us) /
             1000.0;
  }
  gs_plot_series_t st = {p->o.model, n, x, tput}, sl = {p->o.model, n, x, lat};
  const char *xl =
      rate ? "request rate (requests/s)" : "concurrency (requests)";
  gs_plot_chart_t charts[2] = {
      {"Throughput", xl, "infer/s", false, 1, &st, 0, NULL},
      {"Latency", xl, lat_label, false, 1, &sl, p->o.latency_budget_ms,
       p->o.latency_budget_ms > 0 ? budget : NULL}};
  int rc = x && tput && lat
               ? gs_plot_svg_write(p->plot, charts, 2, p->o.model, &err)
               : gs_error_set(&err, GS_ENOMEM, "out of memory");
  free(x);
  free(tput);
  free(lat);
  return rc == GS_OK ? CLI_OK : cli_fail("perf", &err);
}

static json_t *level_json(const gs_perf_result_t *r) {
  json_t *j = json_pack(
      "{s:f, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i,"
      " s:b, s:b}",
      "level", r->level, "request_count", (json_int_t)r->request_count,
      "duration_s", r->duration_s, "throughput", r->throughput, "avg_us",
      r->avg_us, "stddev_us", r->stddev_us, "p50_us", r->p50_us, "p90_us",
      r->p90_us, "p95_us", r->p95_us, "p99_us", r->p99_us, "latency_us",
      r->pct_us, "send_us", r->send_us, "recv_us", r->recv_us, "windows",
      (int)r->windows, "stable", r->stable, "client_bottleneck",
      r->client_bottleneck);
  if (r->client_bottleneck)
    json_object_set_new(j, "bottleneck", json_string(r->bottleneck));
  if (r->has_server)
    json_object_set_new(
        j, "server",
        json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "success",
                  (json_int_t)r->server.success, "inferences",
                  (json_int_t)r->server.inferences, "executions",
                  (json_int_t)r->server.executions, "queue_us",
                  r->server.queue_us, "compute_input_us", r->server.input_us,
                  "compute_infer_us", r->server.infer_us, "compute_output_us",
                  r->server.output_us, "overhead_us", r->server.overhead_us,
                  "network_us", r->server.network_us));
  return j;
}

static void print_json(const perf_cli_t *p, const gs_perf_report_t *rep,
                       const gs_error_t *err) {
  json_t *levels = json_array();
  for (size_t i = 0; i < rep->n; i++)
    json_array_append_new(levels, level_json(&rep->levels[i]));
  json_t *doc = json_pack(
      "{s:s, s:s, s:s, s:i, s:o, s:b}", "model", p->o.model, "protocol",
      p->o.protocol == GS_PERF_GRPC ? "grpc" : "http", "mode",
      p->o.mode == GS_PERF_RATE ? "request_rate" : "concurrency", "batch",
      (int)rep->batch, "levels", levels, "server_statistics", rep->has_server);
  if (p->o.latency_budget_ms > 0)
    json_object_set_new(
        doc, "budget",
        json_pack("{s:f, s:o}", "ms", p->o.latency_budget_ms, "level",
                  rep->budget_index < 0
                      ? json_null()
                      : json_real(rep->levels[rep->budget_index].level)));
  if (err)
    json_object_set_new(doc, "error", json_string(err->msg));
  cli_print_json(doc);
}

int cmd_perf(cli_t *cli, int argc, char **argv) {
  perf_cli_t p = {.json = cli->json};
  gs_perf_report_t rep;
  gs_error_t err;
  int rc = parse_args(&p, argc, argv);
  if (rc != CLI_OK || p.help)
    return rc;
  signal(SIGPIPE, SIG_IGN);
  if (!p.json)
    print_settings(&p);
  int prc = gs_perf_run(&p.o, on_level, &p, &rep, &err);
  if (prc == GS_OK && !p.json)
    print_summary(&p, &rep);
  if (p.json)
    print_json(&p, &rep, prc == GS_OK ? NULL : &err);
  if (prc == GS_OK && p.csv)
    rc = write_csv(&p, &rep);
  if (prc == GS_OK && rc == CLI_OK && p.plot)
    rc = write_plot(&p, &rep);
  gs_perf_report_release(&rep);
  return prc != GS_OK ? cli_fail("perf", &err) : rc;
}
