/* The worker's Prometheus text: Triton's nv_inference_* counters, one
 * line per model, built in one gs_buf (GS_LIMIT_TEXT) with core/prom.h's
 * writer. */
#include <stddef.h>

#include "core/buf.h"
#include "core/prom.h"
#include "worker/shm.h"
#include "worker/worker_int.h"

/* gpuslice's own, per model: what dynamic_batching's default_queue_policy
 * did (Triton counts these only among its failures). */
static void queue_policy_rows(gs_buf_t *b, const gs__repo_t *repo) {
  static const struct {
    const char *name, *help;
    size_t off; /* offsetof a counter in the stats */
  } rows[] = {
      {"gpuslice_queue_full_requests",
       "Requests refused at once because the model's queue held "
       "max_queue_size requests",
       offsetof(gs__model_stats_t, queue_full)},
      {"gpuslice_queue_timeout_requests",
       "Requests whose queue policy timeout passed in the queue (REJECT: "
       "answered; DELAY: moved behind the others)",
       offsetof(gs__model_stats_t, queue_timeout)},
  };
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    gs_prom_family(b, rows[r].name, "counter", rows[r].help);
    for (unsigned i = 0; i < repo->n; i++) {
      const gs__model_entry_t *m = &repo->models[i];
      const gs_prom_label_t labels[] = {{"model", m->name},
                                        {"version", m->version}};
      gs_prom_sample_u64(
          b, rows[r].name, labels, 2,
          *(const uint64_t *)((const char *)&m->stats + rows[r].off));
    }
  }
}

char *gs__metrics_text(const gs__repo_t *repo, size_t *len) {
  static const struct {
    const char *name, *help;
    size_t off; /* offsetof a gs__stat_t in the stats */
    bool us;    /* the ns total, in microseconds; else the count */
  } rows[] = {
      {"nv_inference_request_success",
       "Number of successful inference "
       "requests",
       offsetof(gs__model_stats_t, success), false},
      {"nv_inference_request_failure", "Number of failed inference requests",
       offsetof(gs__model_stats_t, fail), false},
      {"nv_inference_request_duration_us",
       "Cumulative inference request "
       "duration in microseconds",
       offsetof(gs__model_stats_t, success), true},
      {"nv_inference_queue_duration_us",
       "Cumulative inference queuing "
       "duration in microseconds",
       offsetof(gs__model_stats_t, queue), true},
      {"nv_inference_compute_input_duration_us",
       "Cumulative compute input "
       "duration in microseconds",
       offsetof(gs__model_stats_t, compute_input), true},
      {"nv_inference_compute_infer_duration_us",
       "Cumulative compute "
       "inference duration in microseconds",
       offsetof(gs__model_stats_t, compute_infer), true},
      {"nv_inference_compute_output_duration_us",
       "Cumulative inference "
       "compute output duration in microseconds",
       offsetof(gs__model_stats_t, compute_output), true},
  };
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    gs_prom_family(&b, rows[r].name, "counter", rows[r].help);
    for (unsigned i = 0; i < repo->n; i++) {
      const gs__model_entry_t *m = &repo->models[i];
      const gs__stat_t *s =
          (const gs__stat_t *)((const char *)&m->stats + rows[r].off);
      const gs_prom_label_t labels[] = {{"model", m->name},
                                        {"version", m->version}};
      gs_prom_sample_u64(&b, rows[r].name, labels, 2,
                         rows[r].us ? s->ns / 1000 : s->count);
    }
  }
  queue_policy_rows(&b, repo);
  const gs__shm_registry_t *shm = repo->shm;
  if (shm) { /* gpuslice's own: which path CUDA shared memory took */
    gs_buf_addf(&b, "# HELP gpuslice_cuda_shm_tensors Tensors read from or "
                    "written to CUDA shared memory, by path (device: by the "
                    "engine on the GPU; host: copied through host memory)\n"
                    "# TYPE gpuslice_cuda_shm_tensors counter\n");
    for (int dir = 0; dir < 2; dir++)
      for (int dev = 0; dev < 2; dev++)
        gs_buf_addf(&b,
                    "gpuslice_cuda_shm_tensors{direction=\"%s\",path=\"%s\"} "
                    "%llu\n",
                    dir ? "output" : "input", dev ? "device" : "host",
                    (unsigned long long)__atomic_load_n(
                        &shm->cuda_tensors[dir][dev], __ATOMIC_RELAXED));
  }
  const gs__pacer_t *pace = &repo->pace;
  if (pace->ns_per_row) { /* --rate-limit's */
    gs_prom_family(&b, "gpuslice_rate_limited_requests", "counter",
                   "Requests that waited for their turn under the worker's "
                   "rate limit");
    gs_prom_sample_u64(&b, "gpuslice_rate_limited_requests", NULL, 0,
                       pace->held);
    gs_prom_family(&b, "gpuslice_rate_limit_wait_us", "counter",
                   "Cumulative time requests waited for their turn under "
                   "the rate limit, in microseconds");
    gs_prom_sample_u64(&b, "gpuslice_rate_limit_wait_us", NULL, 0,
                       pace->held_ns / 1000);
    gs_prom_family(&b, "gpuslice_rate_limit_waiting", "gauge",
                   "Requests waiting for their turn now");
    gs_prom_sample_u64(&b, "gpuslice_rate_limit_waiting", NULL, 0,
                       pace->waiting);
  }
  /* NULL when an append failed (the failure is sticky) */
  return gs_buf_take(&b, len);
}
