/* `gpuslice k8s metrics`: each instance's layout, health, processes,
 * memory and SM (or, on the host backend, CPU) use, as Prometheus text.
 * Processes come from the backend (MIG devices' NVML lists, the soft
 * backend's registrations and its clients' environment, the host's
 * cgroups), SM activity from NVML's per-process samples (metrics_nvml.c),
 * health by the device plugin's rule. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/prom.h"
#include "gpuslice/k8s.h"
#include "k8s/metrics_int.h"

#define MX_MAX_PROCS 1024

struct gs_k8s_metrics_s {
  gs_backend_t *be;
  gs_k8s_metrics_options_t opt;
  gs_k8s_inventory_t *inv;   /* the layout as last read (NULL before) */
  gs__mx_nvml_t nvml;        /* nvml.open false: no SM series */
  gs_k8s_gpu_health_t *gpus; /* NULL: no fault watch */
  gs_process_t procs[MX_MAX_PROCS];
  gs_device_t dev; /* the device of the instance being read */
};

/* What one scrape found of one instance. */
typedef struct row_s {
  const gs_k8s_instance_t *in;
  char id[48], gpu[16], gi[16], ci[16];
  bool healthy;
  bool has_procs, has_sm, has_cpu, has_total;
  uint64_t n_procs, memory_bytes, total_bytes, cpu_usec;
  double sm_ratio;
} row_t;

int gs_k8s_metrics_create(gs_k8s_metrics_t **out, gs_backend_t *be,
                          const gs_k8s_metrics_options_t *opt,
                          gs_error_t *err) {
  gs_k8s_metrics_t *m = calloc(1, sizeof *m);
  *out = NULL;
  if (!m)
    return gs_error_set(err, GS_ENOMEM, "metrics: out of memory");
  m->be = be;
  m->opt = *opt;
  if (strcmp(be->ops->name, "host") != 0) {
    gs_error_t nvml_err = {0};
    char line[sizeof nvml_err.msg + 64];
    /* no NVML: the SM series are left out, nothing else */
    if (gs__mx_nvml_open(&m->nvml, opt->nvml_library, &nvml_err) != GS_OK &&
        opt->log) {
      snprintf(line, sizeof line, "no SM utilisation series: %s", nvml_err.msg);
      opt->log(opt->log_data, line);
    } else if (!m->nvml.nvml.DeviceGetProcessUtilization && opt->log) {
      opt->log(opt->log_data, "no SM utilisation series: this NVML has no "
                              "nvmlDeviceGetProcessUtilization");
    }
    m->gpus =
        gs_k8s_gpu_health_open(opt->nvml_library, opt->log, opt->log_data);
  }
  *out = m;
  return GS_OK;
}

void gs_k8s_metrics_destroy(gs_k8s_metrics_t *m) {
  if (!m)
    return;
  gs__mx_nvml_close(&m->nvml);
  gs_k8s_gpu_health_close(m->gpus);
  free(m->inv);
  free(m);
}

/* Reads the layout; instances already known keep their env (their MPS
 * daemon is not restarted by a scrape), as in the device plugin. */
static int read_layout(gs_k8s_metrics_t *m, gs_error_t *err) {
  gs_k8s_inventory_t *next = malloc(sizeof *next);
  if (!next)
    return gs_error_set(err, GS_ENOMEM, "metrics: out of memory");
  gs_k8s_options_t kopt = m->opt.inventory;
  kopt.old = m->inv;
  int rc = gs_k8s_inventory_read(m->be, &kopt, next, err);
  if (rc != GS_OK) {
    free(next);
    return rc;
  }
  free(m->inv);
  m->inv = next;
  return GS_OK;
}

/* The instance's processes (those of its CI), their memory and SM use. */
static void read_processes(gs_k8s_metrics_t *m, row_t *r) {
  const gs_k8s_instance_t *in = r->in;
  size_t n = 0, k = 0;
  gs_error_t err;
  if (m->be->ops->processes(m->be, in->dev, in->gi_id, m->procs, MX_MAX_PROCS,
                            &n, &err) != GS_OK)
    return;
  pid_t pids[MX_MAX_PROCS];
  for (size_t i = 0; i < n && i < MX_MAX_PROCS; i++) {
    if (m->procs[i].ci_id != in->ci_id)
      continue;
    pids[k++] = m->procs[i].pid;
    r->memory_bytes += m->procs[i].memory_bytes;
  }
  r->has_procs = true;
  r->n_procs = k;
  double pct = 0;
  r->has_sm = gs__mx_sm_percent(&m->nvml, in->gpu_uuid,
                                strcmp(m->inv->backend, "mig") == 0, in->gi_id,
                                in->ci_id, pids, k, &pct);
  r->sm_ratio = pct / 100.0;
}

/* The GI's own accounting (host cgroups) wins over its processes' sum. */
static void read_usage(gs_k8s_metrics_t *m, row_t *r) {
  gs_gi_usage_t u;
  gs_error_t err;
  if (!m->be->ops->gi_usage ||
      m->be->ops->gi_usage(m->be, r->in->dev, r->in->gi_id, &u, &err) != GS_OK)
    return;
  if (u.has_memory && r->in->single_ci)
    r->memory_bytes = u.memory_bytes;
  r->has_cpu = u.has_cpu && r->in->single_ci;
  r->cpu_usec = u.cpu_usec;
}

/* The instance's memory by its profile (the whole GI's, its CIs share it). */
static void read_total(gs_k8s_metrics_t *m, row_t *r, unsigned *dev_read) {
  gs_error_t err;
  if (*dev_read != r->in->dev) {
    if (m->be->ops->device_get(m->be, r->in->dev, &m->dev, &err) != GS_OK)
      return;
    *dev_read = r->in->dev;
  }
  const gs_gi_t *gi = gs_layout_find_gi_const(&m->dev.layout, r->in->gi_id);
  const gs_gi_profile_t *gp =
      gi ? gs_catalog_gi(&m->dev.catalog, gi->profile_id) : NULL;
  r->has_total = gp && gp->memory_mib > 0;
  r->total_bytes = r->has_total ? gp->memory_mib << 20 : 0;
}

static void read_row(gs_k8s_metrics_t *m, const gs_k8s_instance_t *in,
                     unsigned *dev_read, row_t *r) {
  char why[256];
  unsigned index = in->dev;
  memset(r, 0, sizeof *r);
  r->in = in;
  snprintf(r->id, sizeof r->id, "%u:%u:%u", in->dev, in->gi_id, in->ci_id);
  (void)gs__mx_gpu_index(&m->nvml, in->gpu_uuid, &index);
  snprintf(r->gpu, sizeof r->gpu, "%u", index);
  snprintf(r->gi, sizeof r->gi, "%u", in->gi_id);
  snprintf(r->ci, sizeof r->ci, "%u", in->ci_id);
  r->healthy =
      gs_k8s_instance_healthy(in, NULL, why, sizeof why) &&
      !gs_k8s_gpu_faulted(m->gpus, in, strcmp(m->be->ops->name, "mig") == 0,
                          why, sizeof why) &&
      !(m->opt.worker_down &&
        m->opt.worker_down(m->opt.health_data, in->uuid, why, sizeof why));
  read_processes(m, r);
  read_usage(m, r);
  read_total(m, r, dev_read);
}

/* The labels every series of an instance carries. */
#define ROW_LABELS(r)                                                          \
  {"instance_id", (r)->id}, {"instance_uuid", (r)->in->uuid},                  \
      {"profile", (r)->in->profile}, {"gpu", (r)->gpu}, {                      \
    "gpu_uuid", (r)->in->gpu_uuid                                              \
  }

static void family_u64(gs_buf_t *b, const char *name, const char *type,
                       const char *help, const row_t *rows, size_t n,
                       size_t has_off, size_t value_off) {
  gs_prom_family(b, name, type, help);
  for (size_t i = 0; i < n; i++) {
    const row_t *r = &rows[i];
    if (has_off != (size_t)-1 && !*(const bool *)((const char *)r + has_off))
      continue;
    const gs_prom_label_t labels[] = {ROW_LABELS(r)};
    gs_prom_sample_u64(b, name, labels, 5,
                       *(const uint64_t *)((const char *)r + value_off));
  }
}

static void write_text(const gs_k8s_metrics_t *m, const row_t *rows, size_t n,
                       gs_buf_t *b) {
  gs_prom_family(b, "gpuslice_instance_info", "gauge",
                 "The layout: one series per instance (compute instance), "
                 "always 1");
  for (size_t i = 0; i < n; i++) {
    const row_t *r = &rows[i];
    const gs_prom_label_t labels[] = {ROW_LABELS(r),
                                      {"backend", m->inv->backend},
                                      {"gpu_instance", r->gi},
                                      {"compute_instance", r->ci}};
    gs_prom_sample_u64(b, "gpuslice_instance_info", labels, 8, 1);
  }
  gs_prom_family(b, "gpuslice_instance_healthy", "gauge",
                 "1 when the device plugin advertises the instance Healthy");
  for (size_t i = 0; i < n; i++) {
    const gs_prom_label_t labels[] = {ROW_LABELS(&rows[i])};
    gs_prom_sample_u64(b, "gpuslice_instance_healthy", labels, 5,
                       rows[i].healthy);
  }
  family_u64(b, "gpuslice_instance_processes", "gauge",
             "Processes running in the instance", rows, n,
             offsetof(row_t, has_procs), offsetof(row_t, n_procs));
  family_u64(b, "gpuslice_instance_memory_used_bytes", "gauge",
             "Memory the instance's processes use (GPU memory from NVML; "
             "host: the cgroup's, else resident memory)",
             rows, n, offsetof(row_t, has_procs),
             offsetof(row_t, memory_bytes));
  family_u64(b, "gpuslice_instance_memory_total_bytes", "gauge",
             "Memory of the instance's profile", rows, n,
             offsetof(row_t, has_total), offsetof(row_t, total_bytes));
  gs_prom_family(b, "gpuslice_instance_sm_utilization_ratio", "gauge",
                 "Share of the sampling period in which the instance's "
                 "processes ran kernels (NVML per-process SM utilisation "
                 "since the previous scrape, summed, at most 1)");
  for (size_t i = 0; i < n; i++) {
    if (!rows[i].has_sm)
      continue;
    const gs_prom_label_t labels[] = {ROW_LABELS(&rows[i])};
    gs_prom_sample_f64(b, "gpuslice_instance_sm_utilization_ratio", labels, 5,
                       rows[i].sm_ratio);
  }
  gs_prom_family(b, "gpuslice_instance_cpu_seconds_total", "counter",
                 "CPU time of the instance's cgroup (host backend)");
  for (size_t i = 0; i < n; i++) {
    if (!rows[i].has_cpu)
      continue;
    const gs_prom_label_t labels[] = {ROW_LABELS(&rows[i])};
    gs_prom_sample_f64(b, "gpuslice_instance_cpu_seconds_total", labels, 5,
                       (double)rows[i].cpu_usec / 1e6);
  }
}

int gs_k8s_metrics_scrape(gs_k8s_metrics_t *m, char **text, size_t *len,
                          gs_error_t *err) {
  *text = NULL;
  *len = 0;
  if (m->opt.tick)
    m->opt.tick(m->opt.health_data);
  gs_k8s_gpu_health_poll(m->gpus);
  int rc = read_layout(m, err);
  row_t *rows = rc == GS_OK ? calloc(m->inv->n + 1, sizeof *rows) : NULL;
  if (rc == GS_OK && !rows)
    rc = gs_error_set(err, GS_ENOMEM, "metrics: out of memory");
  unsigned dev_read = (unsigned)-1;
  for (unsigned i = 0; rc == GS_OK && i < m->inv->n; i++)
    read_row(m, &m->inv->inst[i], &dev_read, &rows[i]);
  gs__mx_scrape_end(&m->nvml);
  if (rc == GS_OK) {
    gs_buf_t b;
    gs_buf_init(&b, GS_LIMIT_TEXT);
    write_text(m, rows, m->inv->n, &b);
    rc = gs_buf_error(&b, err);
    if (rc == GS_OK)
      *text = gs_buf_take(&b, len);
    gs_buf_free(&b);
  }
  free(rows);
  return rc;
}
