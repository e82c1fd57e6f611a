/* The host backend: a CPU machine cut into instances the MIG way. One
 * device; compute slices are CPU cores, memory slices are RAM. The layout
 * lives in the state file (swcore.c); processes are confined with
 * sched_setaffinity and cgroups, or RLIMIT_AS where no cgroup can be had. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/host_int.h"
#include "backend/swcore_int.h"
#include "core/test_hooks.h"
#include "gpuslice/backend.h"
#include "gpuslice/state.h"

#define HOST_MAX_CORES 65536

typedef struct host_s {
  gs__swcore_t core;    /* first: the shared layout machinery */
  unsigned cores;       /* C: logical cores the slices are cut from */
  unsigned n_cpus;      /* CPUs this process may run on ... */
  int cpu[CPU_SETSIZE]; /* ... ascending; logical core k is cpu[k % n] */
  gs__cgroup_t cg;
} host_t;

#define HOST_MAX_SCANNED_PIDS 65536 /* PIDs read from /proc at most */

static host_t *host_of(gs_backend_t *be) {
  return be->impl;
}

static const gs_catalog_t *host_cat(const host_t *h) {
  return &h->core.dev[0].cat;
}

/* ---- processes --------------------------------------------------------- */

/* The cpu cgroup is made only where cores are shared (for the quota). */
static bool uses_cpu_cgroup(const host_t *h) {
  return h->cores < host_cat(h)->compute_slices;
}

/* Registered processes and the members of the GI's cgroup. */
static void host_procs(gs__swcore_t *c, unsigned dev, const gs_gi_t *gi,
                       bool prune, gs__procset_t *ps) {
  (void)dev;
  host_t *h = (host_t *)c;
  /* Without a cgroup holding the instance, its processes are the
   * registered ones and their descendants, found by ancestry in /proc. */
  bool in_cgroup = h->cg.mem != GS__CG_NONE ||
                   (uses_cpu_cgroup(h) && h->cg.cpu != GS__CG_NONE);
  bool by_ancestry = !in_cgroup;
  size_t max = by_ancestry ? HOST_MAX_SCANNED_PIDS : GS__MAX_PIDS, n = 0;
  pid_t *members = malloc(max * sizeof *members);
  if (members && by_ancestry)
    gs__proc_all(members, max, &n);
  else if (members)
    gs__cgroup_pids(&h->cg, gi->uuid, uses_cpu_cgroup(h), members, max, &n);
  gs__procs_list(c->state_dir, gi, members, n < max ? n : max, by_ancestry,
                 prune, ps);
  free(members);
}

static uint64_t host_memory_of(gs__swcore_t *c, unsigned dev, pid_t pid) {
  (void)c;
  (void)dev;
  return gs__proc_rss_bytes(pid);
}

/* The cgroups of destroyed instances go (those still holding processes
 * stay, harmlessly). */
static void host_committed(gs__swcore_t *c) {
  host_t *h = (host_t *)c;
  for (unsigned i = 0; i < c->n_destroyed; i++)
    gs__cgroup_remove(&h->cg, c->destroyed[i].uuid);
}

static const gs__swcore_hooks_t host_hooks = {
    .procs = host_procs,
    .memory_of = host_memory_of,
    .committed = host_committed,
};

/* ---- confinement ------------------------------------------------------- */

/* The instance's CPUs. A GI at memory slice m with g compute slices owns
 * compute slices [min(m, 7 - g), +g): inside its memory span for every
 * MIG profile, so GIs that do not overlap in memory do not share slices.
 * A CI owns its sub-range. Logical core k is the k-th allowed CPU
 * (wrapping when host_cpu_cores claims more cores than there are). */
static unsigned instance_cpus(host_t *h, const gs_gi_t *gi,
                              const gs_gi_profile_t *gp,
                              const gs_ci_profile_t *cp, const gs_ci_t *ci,
                              cpu_set_t *set, int *list) {
  unsigned slices = host_cat(h)->compute_slices;
  unsigned first =
      gs__host_gi_first_slice(gi->start, gp->compute_slices, slices) +
      ci->start;
  unsigned lo, hi, n = 0;
  gs__host_core_range(h->cores, slices, first, cp->compute_slices, &lo, &hi);
  CPU_ZERO(set);
  for (unsigned k = lo; k < hi; k++)
    CPU_SET((size_t)h->cpu[k % h->n_cpus], set);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET((size_t)c, set))
      list[n++] = c;
  return n;
}

/* The memory limit: a cgroup where we have one; else RLIMIT_AS, which the
 * caller (run) sets just before exec, so *as_limit says how much. */
static int limit_memory(host_t *h, const gs_gi_t *gi, uint64_t bytes,
                        uint64_t quota_us, uint64_t *as_limit,
                        gs_error_t *err) {
  *as_limit = 0;
  if (h->cg.mem != GS__CG_NONE || (quota_us > 0 && h->cg.cpu != GS__CG_NONE)) {
    int rc = gs__cgroup_enter(&h->cg, gi->uuid, bytes, quota_us, getpid(), err);
    if (rc != GS_OK || h->cg.mem != GS__CG_NONE)
      return rc;
  }
  *as_limit = bytes;
  return GS_OK;
}

typedef struct confine_args_s {
  unsigned gi_id, ci_id;
  gs_confinement_t *out;
} confine_args_t;

static int confine_locked(gs__swcore_t *c, gs_state_doc_t *doc, void *arg,
                          gs_error_t *err) {
  host_t *h = (host_t *)c;
  const confine_args_t *a = arg;
  const gs_catalog_t *cat = host_cat(h);
  gs_gi_t *gi = gs__swcore_find_gi(c, 0, &doc->device[0].layout, a->gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  gs_ci_t *ci = gs_gi_find_ci(gi, a->ci_id);
  if (!ci)
    return gs_error_set(
        err, GS_ENOTFOUND,
        "no compute instance %u in GPU instance %u on device 0 (it has %u)",
        a->ci_id, a->gi_id, gi->n_ci);
  const gs_gi_profile_t *gp = gs_catalog_gi(cat, gi->profile_id);
  const gs_ci_profile_t *cp = gs_catalog_ci(gp, ci->profile_id);
  if (!cp) /* gs_layout_validate has already checked this */
    return gs_error_set(err, GS_ECORRUPT, "GPU instance %u: unknown profile",
                        a->gi_id);
  cpu_set_t set;
  int list[CPU_SETSIZE];
  unsigned n = instance_cpus(h, gi, gp, cp, ci, &set, list);
  char cpus[512];
  gs__cpulist_format(list, n, cpus, sizeof cpus);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    return gs_error_sys(err, errno, "pinning to CPUs %s", cpus);
  uint64_t bytes = gp->memory_mib << 20;
  uint64_t quota_us = 0, as_limit = 0;
  if (h->cores < cat->compute_slices) /* shared cores: g/7 of the host */
    quota_us = (uint64_t)gp->compute_slices * h->cores * GS__CPU_PERIOD_US /
               cat->compute_slices;
  int rc = limit_memory(h, gi, bytes, quota_us, &as_limit, err);
  if (rc == GS_OK)
    rc = gs__procs_register(c->state_dir, gi, a->ci_id, 0, err);
  if (rc != GS_OK)
    return rc;
  char name[GS_PROFILE_NAME_MAX + 8];
  gs_catalog_device_name(gp, cp, name, sizeof name);
  gs_confinement_t *out = a->out;
  memset(out, 0, sizeof *out);
  out->address_space_limit = gs__test_hooks.no_address_limit ? 0 : as_limit;
  gs__env_add(out, "GPUSLICE_BACKEND", "host");
  gs__env_add(out, "GPUSLICE_DEVICE", "0");
  gs__env_add(out, "GPUSLICE_GI_ID", "%u", a->gi_id);
  gs__env_add(out, "GPUSLICE_CI_ID", "%u", a->ci_id);
  gs__env_add(out, "GPUSLICE_INSTANCE_UUID", "%s", ci->uuid);
  gs__env_add(out, "GPUSLICE_PROFILE", "%s", name);
  gs__env_add(out, "GPUSLICE_CPUS", "%s", cpus);
  gs__env_add(out, "GPUSLICE_MEMORY_LIMIT_BYTES", "%" PRIu64, bytes);
  gs__env_add(out, "OMP_NUM_THREADS", "%u", n);
  gs__env_add(out, "OPENBLAS_NUM_THREADS", "%u", n);
  return GS_OK;
}

/* The instance's memory is the GI's, whatever memory_request_bytes says. */
static int host_confine(gs_backend_t *be, unsigned dev, unsigned gi_id,
                        unsigned ci_id, gs_confinement_t *out,
                        gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = gs__swcore_check_dev(&h->core, dev, err);
  if (rc != GS_OK)
    return rc;
  confine_args_t a = {gi_id, ci_id, out};
  return gs__swcore_locked(&h->core, confine_locked, &a, err);
}

static void host_enforcement(gs_backend_t *be, gs_enforcement_t *out) {
  host_t *h = host_of(be);
  unsigned c = h->cores, s = host_cat(h)->compute_slices;
  const char *cpu_cg =
      h->cg.cpu == GS__CG_V2 ? "cgroup v2 cpu.max" : "cgroup v1 cpu";
  if (c >= s)
    snprintf(out->compute, sizeof out->compute,
             "disjoint CPU cores per instance (sched_setaffinity; %u cores for "
             "%u slices)",
             c, s);
  else if (h->cg.cpu != GS__CG_NONE)
    snprintf(out->compute, sizeof out->compute,
             "shared CPU cores (%u cores for %u slices) with a CPU quota per "
             "instance (%s)",
             c, s, cpu_cg);
  else
    snprintf(out->compute, sizeof out->compute,
             "shared CPU cores (%u cores for %u slices), no CPU quota (%s)", c,
             s,
             h->cg.disabled ? "cgroups disabled"
                            : "no writable cgroup cpu controller");
  if (h->cg.mem == GS__CG_NONE)
    snprintf(out->memory, sizeof out->memory,
             "per-process address-space limit (RLIMIT_AS); %s", h->cg.why);
  else
    snprintf(out->memory, sizeof out->memory,
             "hard limit per instance, all its processes together (%s)",
             h->cg.mem == GS__CG_V2 ? "cgroup v2 memory.max"
                                    : "cgroup v1 memory");
  snprintf(out->faults, sizeof out->faults,
           "isolated: instances are separate processes");
}

/* The GI's cgroup accounting (nothing known without a cgroup). */
static int host_gi_usage(gs_backend_t *be, unsigned dev, unsigned gi_id,
                         gs_gi_usage_t *out, gs_error_t *err) {
  host_t *h = host_of(be);
  const gs_state_doc_t *doc;
  memset(out, 0, sizeof *out);
  int rc = gs__swcore_check_dev(&h->core, dev, err);
  if (rc == GS_OK)
    rc = gs__swcore_read(&h->core, &doc, err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t *layout = (gs_layout_t *)&doc->device[dev].layout;
  const gs_gi_t *gi = gs__swcore_find_gi(&h->core, dev, layout, gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  gs__cgroup_usage(&h->cg, gi->uuid, uses_cpu_cgroup(h), out);
  return GS_OK;
}

/* ---- open and close ---------------------------------------------------- */

static void host_close(gs_backend_t *be) {
  host_t *h = host_of(be);
  gs__swcore_release(&h->core);
  free(h);
}

static const gs_backend_ops_t host_ops = {
    .name = "host",
    .device_count = gs__swcore_device_count,
    .device_get = gs__swcore_device_get,
    .begin = gs__swcore_begin,
    .commit = gs__swcore_commit,
    .abort = gs__swcore_abort,
    .set_mig_mode = gs__swcore_set_mig_mode,
    .gi_create = gs__swcore_gi_create,
    .gi_destroy = gs__swcore_gi_destroy,
    .ci_create = gs__swcore_ci_create,
    .ci_destroy = gs__swcore_ci_destroy,
    .processes = gs__swcore_processes,
    .enforcement = host_enforcement,
    .gi_usage = host_gi_usage,
    .confine = host_confine,
    .close = host_close,
};

static int read_memtotal_mib(uint64_t *mib, gs_error_t *err) {
  FILE *f = fopen("/proc/meminfo", "re");
  if (!f)
    return gs_error_sys(err, errno, "opening /proc/meminfo");
  char line[256];
  unsigned long long kib = 0;
  while (fgets(line, sizeof line, f) &&
         sscanf(line, "MemTotal: %llu kB", &kib) != 1)
    ;
  fclose(f);
  if (kib < 1024)
    return gs_error_set(err, GS_ESYSTEM, "no MemTotal in /proc/meminfo");
  *mib = kib / 1024;
  return GS_OK;
}

/* HOST-<machine-id as a UUID>, or a hash of the host name. */
static void host_uuid(char *out, size_t size) {
  char id[64] = "";
  int fd = open("/etc/machine-id", O_RDONLY | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, id, sizeof id - 1) : -1;
  if (fd >= 0)
    close(fd);
  id[got > 0 ? got : 0] = '\0';
  id[strcspn(id, "\n")] = '\0';
  if (strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32) {
    snprintf(out, size, "HOST-%.8s-%.4s-%.4s-%.4s-%.12s", id, id + 8, id + 12,
             id + 16, id + 20);
    return;
  }
  char name[256] = "";
  gethostname(name, sizeof name - 1);
  uint64_t hash = 1469598103934665603u; /* FNV-1a */
  for (const char *p = name; *p; p++)
    hash = (hash ^ (unsigned char)*p) * 1099511628211u;
  snprintf(out, size, "HOST-%016" PRIx64, hash);
}

int gs_backend_host_open(gs_backend_t **out, const gs_backend_options_t *opt,
                         gs_error_t *err) {
  *out = NULL;
  if (opt && opt->host_cpu_cores > HOST_MAX_CORES)
    return gs_error_set(err, GS_EINVAL, "%u CPU cores: at most %d",
                        opt->host_cpu_cores, HOST_MAX_CORES);
  host_t *h = calloc(1, sizeof *h);
  if (!h)
    return gs_error_set(err, GS_ENOMEM,
                        "opening the host backend: out of memory");
  int rc = gs__swcore_init(&h->core, "host", "HOST-", opt, &host_hooks, err);
  if (rc != GS_OK)
    goto out;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    rc = gs_error_sys(err, errno, "reading this process's CPU affinity");
    goto out;
  }
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET((size_t)c, &set))
      h->cpu[h->n_cpus++] = c;
  h->cores = opt->host_cpu_cores ? opt->host_cpu_cores : h->n_cpus;
  uint64_t mib = opt->host_memory_mib;
  if (!mib && (rc = read_memtotal_mib(&mib, err)) != GS_OK)
    goto out;
  if (h->n_cpus == 0) {
    rc = gs_error_set(err, GS_ESYSTEM, "this process may run on no CPU");
    goto out;
  }
  h->core.n_dev = 1;
  gs_catalog_synth_host(&h->core.dev[0].cat, h->cores, mib);
  snprintf(h->core.dev[0].label, sizeof h->core.dev[0].label,
           "device 0 (host)");
  snprintf(h->core.dev[0].name, sizeof h->core.dev[0].name, "host");
  host_uuid(h->core.dev[0].device_uuid, sizeof h->core.dev[0].device_uuid);
  gs__cgroup_detect(&h->cg, opt->host_cgroup_root);
  h->core.be.ops = &host_ops;
  h->core.be.impl = h;
  *out = &h->core.be;
out:
  if (rc != GS_OK) {
    gs__swcore_release(&h->core);
    free(h);
  }
  return rc;
}
