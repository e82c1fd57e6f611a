/* gpuslice perf's text in and out: ranges and shapes as perf_analyzer's
 * flags spell them, and its CSV. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "perf/perf_int.h"

static bool parse_number(const char *s, size_t len, double *out) {
  char buf[64], *end;
  if (len == 0 || len >= sizeof buf)
    return false;
  memcpy(buf, s, len);
  buf[len] = '\0';
  errno = 0;
  *out = strtod(buf, &end);
  return errno == 0 && *end == '\0' && isfinite(*out) &&
         strspn(buf, "-0123456789.") == len;
}

int gs_perf_parse_range(const char *text, bool rate, gs_perf_range_t *out,
                        gs_error_t *err) {
  const char *what = rate ? "request rate range" : "concurrency range";
  double v[3] = {0, 0, 1};
  const char *p = text;
  unsigned n = 0;
  while (n < 3) {
    size_t len = strcspn(p, ":");
    if (!parse_number(p, len, &v[n]))
      return gs_error_set(err, GS_EINVAL,
                          "%s '%s': '%.*s' is not a number (start:end:step)",
                          what, text, (int)len, p);
    n++;
    if (p[len] == '\0')
      break;
    p += len + 1;
  }
  unsigned colons = 0;
  for (const char *q = text; *q; q++)
    colons += *q == ':';
  if (colons > 2)
    return gs_error_set(err, GS_EINVAL, "%s '%s': at most start:end:step", what,
                        text);
  if (n == 1)
    v[1] = v[0];
  if (!rate &&
      (v[0] != floor(v[0]) || v[1] != floor(v[1]) || v[2] != floor(v[2])))
    return gs_error_set(err, GS_EINVAL, "%s '%s': whole numbers only", what,
                        text);
  if (v[0] <= 0)
    return gs_error_set(err, GS_EINVAL, "%s '%s': start must be > 0", what,
                        text);
  if (v[0] > v[1])
    return gs_error_set(err, GS_EINVAL, "%s '%s': start %g is above end %g",
                        what, text, v[0], v[1]);
  if (v[2] <= 0)
    return gs_error_set(err, GS_EINVAL, "%s '%s': step must be > 0", what,
                        text);
  if ((v[1] - v[0]) / v[2] > 10000)
    return gs_error_set(err, GS_EINVAL, "%s '%s': more than 10000 levels", what,
                        text);
  *out = (gs_perf_range_t){v[0], v[1], v[2]};
  return GS_OK;
}

int gs_perf_parse_shape(const char *text, gs_perf_shape_t *out,
                        gs_error_t *err) {
  const char *colon = strrchr(text, ':');
  memset(out, 0, sizeof *out);
  if (!colon || colon == text || (size_t)(colon - text) >= sizeof out->name)
    return gs_error_set(err, GS_EINVAL, "--shape '%s': expected NAME:d1,d2,...",
                        text);
  memcpy(out->name, text, (size_t)(colon - text));
  const char *p = colon + 1;
  while (*p) {
    char *end;
    errno = 0;
    long long d = strtoll(p, &end, 10);
    if (end == p || errno || d <= 0 || d > (1ll << 31) ||
        (*end != ',' && *end != '\0') || out->rank == GS_PERF_MAX_DIMS)
      return gs_error_set(err, GS_EINVAL,
                          "--shape '%s': dims are %u positive numbers at most",
                          text, GS_PERF_MAX_DIMS);
    out->dims[out->rank++] = d;
    p = *end ? end + 1 : end;
  }
  if (out->rank == 0)
    return gs_error_set(err, GS_EINVAL, "--shape '%s': no dims", text);
  return GS_OK;
}

/* perf_analyzer writes whole microseconds (truncated). */
static unsigned long long us(double v) {
  return (unsigned long long)fmax(0, v);
}

int gs_perf_csv(const gs_perf_report_t *report, gs_perf_mode_t mode, char **csv,
                gs_error_t *err) {
  gs_buf_t t;
  gs_buf_init(&t, GS_LIMIT_TEXT);
  gs_buf_addf(&t, "%s,Inferences/Second,Client Send,",
              mode == GS_PERF_RATE ? "Request Rate" : "Concurrency");
  if (report->has_server)
    gs_buf_adds(&t, "Network+Server Send/Recv,Server Queue,Server Compute "
                    "Input,Server Compute Infer,Server Compute Output,");
  gs_buf_adds(&t,
              "Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n");
  for (size_t i = 0; i < report->n; i++) {
    const gs_perf_result_t *r = &report->levels[i];
    gs_buf_addf(&t, "%g,%g,%llu,", r->level, r->throughput, us(r->send_us));
    if (report->has_server)
      gs_buf_addf(&t, "%llu,%llu,%llu,%llu,%llu,", us(r->server.network_us),
                  us(r->server.queue_us), us(r->server.input_us),
                  us(r->server.infer_us), us(r->server.output_us));
    gs_buf_addf(&t, "%llu,%llu,%llu,%llu,%llu\n", us(r->recv_us), us(r->p50_us),
                us(r->p90_us), us(r->p95_us), us(r->p99_us));
  }
  if (!(*csv = gs_buf_take(&t, NULL))) { /* never empty: only on failure */
    int rc = gs_buf_error(&t, err);
    gs_error_prefix(err, "writing the CSV: ");
    return rc;
  }
  return GS_OK;
}

void gs_perf_report_release(gs_perf_report_t *report) {
  free(report->levels);
  memset(report, 0, sizeof *report);
  report->budget_index = -1;
}
