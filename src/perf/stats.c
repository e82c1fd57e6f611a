/* gpuslice perf's measurement arithmetic: exact percentiles over every
 * latency of a window, perf_analyzer's stability rule, the merge of the
 * last windows into a level's result, and the open-loop send schedule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "perf/perf_int.h"

uint64_t gs__perf_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t gs__perf_percentile(const uint64_t *sorted, size_t n, unsigned p) {
  if (n == 0)
    return 0;
  size_t i = (size_t)((double)p / 100.0 * (double)(n - 1) + 0.5);
  return sorted[i < n ? i : n - 1];
}

int gs__perf_window_add(gs__perf_window_t *w, uint64_t lat_ns) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 4096;
    uint64_t *grown = realloc(w->lat, cap * sizeof *grown);
    if (!grown)
      return GS_ENOMEM;
    w->lat = grown;
    w->cap = cap;
  }
  w->lat[w->n++] = lat_ns;
  return GS_OK;
}

void gs__perf_window_release(gs__perf_window_t *w) {
  free(w->lat);
  memset(w, 0, sizeof *w);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

double gs__perf_window_latency(gs__perf_window_t *w, unsigned p) {
  if (w->n == 0)
    return 0;
  if (p == 0) {
    double sum = 0;
    for (size_t i = 0; i < w->n; i++)
      sum += (double)w->lat[i];
    return sum / (double)w->n;
  }
  qsort(w->lat, w->n, sizeof *w->lat, cmp_u64);
  return (double)gs__perf_percentile(w->lat, w->n, p);
}

double gs__perf_window_throughput(const gs__perf_window_t *w, unsigned batch) {
  if (w->t_end <= w->t_begin)
    return 0;
  return (double)w->n * batch * 1e9 / (double)(w->t_end - w->t_begin);
}

static bool within(const double *v, size_t n, double pct) {
  double lo = v[n - 3], hi = v[n - 3];
  for (size_t i = n - 3; i < n; i++) {
    lo = v[i] < lo ? v[i] : lo;
    hi = v[i] > hi ? v[i] : hi;
  }
  return lo > 0 && hi / lo <= 1.0 + pct / 100.0;
}

bool gs__perf_stable(const double *tput, const double *lat, size_t n,
                     double pct) {
  return n >= 3 && within(tput, n, pct) && within(lat, n, pct);
}

/* Sums of the server's deltas over the merged windows, as averages. */
static void merge_server(const gs__perf_window_t *w, size_t n,
                         gs_perf_result_t *out) {
  gs__perf_window_t s = {0};
  for (size_t i = 0; i < n; i++) {
    s.s_success += w[i].s_success;
    s.s_inferences += w[i].s_inferences;
    s.s_executions += w[i].s_executions;
    s.s_request_ns += w[i].s_request_ns;
    s.s_queue_ns += w[i].s_queue_ns;
    s.s_input_ns += w[i].s_input_ns;
    s.s_infer_ns += w[i].s_infer_ns;
    s.s_output_ns += w[i].s_output_ns;
  }
  gs_perf_server_t *sv = &out->server;
  double d = s.s_success ? (double)s.s_success * 1000.0 : 1.0;
  sv->success = s.s_success;
  sv->inferences = s.s_inferences;
  sv->executions = s.s_executions;
  sv->request_us = (double)s.s_request_ns / d;
  sv->queue_us = (double)s.s_queue_ns / d;
  sv->input_us = (double)s.s_input_ns / d;
  sv->infer_us = (double)s.s_infer_ns / d;
  sv->output_us = (double)s.s_output_ns / d;
  double server = sv->queue_us + sv->input_us + sv->infer_us + sv->output_us;
  sv->overhead_us = fmax(0, sv->request_us - server);
  /* perf_analyzer: client wait (latency less send and receive) minus the
   * server's time, capped at 0 as the two clocks differ. */
  double wait = out->avg_us - out->send_us - out->recv_us;
  sv->network_us = fmax(0, wait - server - sv->overhead_us);
}

int gs__perf_merge(gs__perf_window_t *w, size_t n, size_t k, unsigned batch,
                   unsigned percentile, gs_perf_result_t *out) {
  size_t first = n > k ? n - k : 0, total = 0;
  memset(out, 0, sizeof *out);
  for (size_t i = first; i < n; i++)
    total += w[i].n;
  uint64_t *all = malloc((total ? total : 1) * sizeof *all);
  if (!all)
    return GS_ENOMEM;
  double sum = 0, sq = 0, ns = 0, send = 0, recv = 0;
  size_t at = 0;
  for (size_t i = first; i < n; i++) {
    if (w[i].n) /* an empty window may have no buffer: memcpy(_, NULL, 0) is UB
                 */
      memcpy(all + at, w[i].lat, w[i].n * sizeof *all);
    at += w[i].n;
    ns += (double)(w[i].t_end - w[i].t_begin);
    send += (double)w[i].send_ns;
    recv += (double)w[i].recv_ns;
  }
  qsort(all, total, sizeof *all, cmp_u64);
  for (size_t i = 0; i < total; i++) {
    sum += (double)all[i];
    sq += (double)all[i] * (double)all[i];
  }
  double cnt = total ? (double)total : 1.0, mean = sum / cnt;
  out->request_count = total;
  out->duration_s = ns / 1e9;
  out->throughput = ns > 0 ? (double)total * batch * 1e9 / ns : 0;
  out->avg_us = mean / 1000.0;
  out->stddev_us = sqrt(fmax(0, sq / cnt - mean * mean)) / 1000.0;
  out->p50_us = (double)gs__perf_percentile(all, total, 50) / 1000.0;
  out->p90_us = (double)gs__perf_percentile(all, total, 90) / 1000.0;
  out->p95_us = (double)gs__perf_percentile(all, total, 95) / 1000.0;
  out->p99_us = (double)gs__perf_percentile(all, total, 99) / 1000.0;
  out->pct_us =
      percentile ? (double)gs__perf_percentile(all, total, percentile) / 1000.0
                 : out->avg_us;
  out->send_us = send / cnt / 1000.0;
  out->recv_us = recv / cnt / 1000.0;
  out->has_server = n > first && w[first].has_server;
  if (out->has_server)
    merge_server(w + first, n - first, out);
  free(all);
  return GS_OK;
}

/* splitmix64: small, seedable, and good enough for arrival gaps. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void gs__perf_schedule(double rate, gs_perf_dist_t dist, uint64_t seed,
                       uint64_t *offsets, size_t n) {
  double gap = 1e9 / rate, t = 0;
  uint64_t state = seed ? seed : 0x6770757365656421ull;
  for (size_t i = 0; i < n; i++) {
    offsets[i] = (uint64_t)t;
    if (dist == GS_PERF_POISSON) {
      /* u in (0, 1]: -ln(u) is exponential with mean 1. */
      double u =
          ((double)(next_random(&state) >> 11) + 1.0) / 9007199254740992.0;
      t += -log(u) * gap;
    } else {
      t = (double)(i + 1) * gap;
    }
  }
}

size_t gs__perf_levels(const gs_perf_range_t *r, double *out, size_t max) {
  size_t n = 0;
  /* A small tolerance so that 0.1 steps reach their end despite rounding. */
  for (double v = r->start; n < max && v <= r->end * (1 + 1e-9);
       v = r->start + r->step * (double)n)
    out[n++] = v;
  return n;
}
