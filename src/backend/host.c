/* The host backend: a CPU machine cut into instances the MIG way. One
 * device; compute slices are CPU cores, memory slices are RAM. The layout
 * lives in the state file; processes are confined with sched_setaffinity
 * and cgroups, or RLIMIT_AS where no cgroup can be had. */
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
#include "gpuslice/backend.h"
#include "gpuslice/state.h"

#define HOST_MAX_CORES 65536
#define HOST_MAX_DESTROYED 64

typedef struct host_s {
  unsigned test_step_delay_us; /* test hook (gs_backend_options_t) */
  gs_backend_t be;
  char state_dir[GS__PATH_MAX];
  char uuid[GS_UUID_MAX];
  unsigned cores;       /* C: logical cores the slices are cut from */
  unsigned n_cpus;      /* CPUs this process may run on ... */
  int cpu[CPU_SETSIZE]; /* ... ascending; logical core k is cpu[k % n] */
  gs_catalog_t cat;
  gs__cgroup_t cg;
  bool in_txn;          /* between begin and commit/abort */
  gs_state_t st;        /* holds the exclusive lock in a change */
  gs_layout_t work;     /* device 0's layout being changed */
  gs_state_doc_t doc;   /* scratch for loading and saving */
  unsigned n_destroyed; /* GIs destroyed in this change, for cleanup */
  char destroyed[HOST_MAX_DESTROYED][GS_UUID_MAX];
} host_t;

static host_t *host_of(gs_backend_t *be) {
  return be->impl;
}

/* ---- state ------------------------------------------------------------- */

static void format_ids(const gs_layout_t *layout, char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < layout->n_gi && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%u", i ? ", " : "",
                            layout->gi[i].id);
  if (layout->n_gi == 0)
    snprintf(buf, size, "none");
}

static int corrupt(host_t *h, gs_error_t *err) {
  gs_error_prefix(err, "state file %s/%s is corrupt: device 0: ", h->state_dir,
                  GS_STATE_FILE);
  if (err) {
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof err->msg - len,
             "; fix or remove it by hand");
    err->code = GS_ECORRUPT;
  }
  return GS_ECORRUPT;
}

/* Device 0's layout from the state document, checked against this host. */
static int layout_from_doc(host_t *h, const gs_state_doc_t *doc, bool existed,
                           gs_layout_t *out, gs_error_t *err) {
  gs_layout_init(out);
  if (!existed)
    return GS_OK;
  if (strcmp(doc->backend, "host") != 0)
    return gs_error_set(err, GS_EINVAL,
                        "state file %s/%s belongs to the %s backend, not host; "
                        "use --backend %s or another state directory",
                        h->state_dir, GS_STATE_FILE, doc->backend,
                        doc->backend);
  for (unsigned i = 0; i < doc->n_devices; i++) {
    if (doc->device[i].index != 0) {
      gs_error_set(err, GS_ECORRUPT,
                   "device %u listed, the host has only device 0",
                   doc->device[i].index);
      return corrupt(h, err);
    }
  }
  if (doc->n_devices == 0)
    return GS_OK;
  const __typeof__(doc->device[0]) *d = &doc->device[0];
  if (strcmp(d->model, h->cat.model) != 0 ||
      d->memory_slices != h->cat.memory_slices) {
    gs_error_set(err, GS_ECORRUPT,
                 "recorded as model '%s' with %u memory slices, this machine "
                 "is '%s' with %u",
                 d->model, d->memory_slices, h->cat.model,
                 h->cat.memory_slices);
    return corrupt(h, err);
  }
  if (gs_layout_validate(&h->cat, &d->layout, err) != GS_OK)
    return corrupt(h, err);
  *out = d->layout;
  return GS_OK;
}

static int load_layout(host_t *h, gs_state_t *st, gs_layout_t *out,
                       gs_error_t *err) {
  bool existed;
  int rc = gs_state_load(st, &h->doc, &existed, err);
  return rc ? rc : layout_from_doc(h, &h->doc, existed, out, err);
}

/* Outside a change: the stored layout under the shared lock. */
static int read_layout(host_t *h, gs_layout_t *out, gs_error_t *err) {
  gs_state_t st;
  int rc = gs_state_open(&st, h->state_dir, GS_STATE_SHARED, err);
  if (rc != GS_OK)
    return rc;
  rc = load_layout(h, &st, out, err);
  gs_state_close(&st);
  return rc;
}

static int check_dev(unsigned dev, gs_error_t *err) {
  if (dev != 0)
    return gs_error_set(err, GS_ENODEV,
                        "no device %u: the host backend has device 0 only",
                        dev);
  return GS_OK;
}

static int need_change(host_t *h, unsigned dev, const char *what,
                       gs_error_t *err) {
  if (!h->in_txn)
    return gs_error_set(err, GS_EINVAL, "host backend: %s outside begin/commit",
                        what);
  if (h->test_step_delay_us)
    usleep(h->test_step_delay_us); /* test hook; 0 in normal use */
  return check_dev(dev, err);
}

static gs_gi_t *find_gi(host_t *h, gs_layout_t *layout, unsigned gi_id,
                        gs_error_t *err) {
  gs_gi_t *gi = gs_layout_find_gi(layout, gi_id);
  if (!gi) {
    char ids[128];
    format_ids(layout, ids, sizeof ids);
    gs_error_set(err, GS_ENOTFOUND,
                 "no GPU instance %u on device 0 (%s) (instances: %s)", gi_id,
                 h->cat.model, ids);
  }
  return gi;
}

static const char *gi_name(host_t *h, const gs_gi_t *gi) {
  const gs_gi_profile_t *p = gs_catalog_gi(&h->cat, gi->profile_id);
  return p ? p->name : "?";
}

/* "HOST-" and a random version-4 UUID. */
static int new_uuid(char *out, size_t size, gs_error_t *err) {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return gs_error_sys(err, errno, "generating an instance UUID");
    got += (size_t)n;
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  char text[48] = "HOST-";
  size_t len = strlen(text);
  for (unsigned i = 0; i < sizeof b; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      text[len++] = '-';
    len += (size_t)snprintf(text + len, sizeof text - len, "%02x", b[i]);
  }
  snprintf(out, size, "%s", text);
  return GS_OK;
}

/* ---- processes --------------------------------------------------------- */

/* The cpu cgroup is made only where cores are shared (for the quota). */
static bool uses_cpu_cgroup(const host_t *h) {
  return h->cores < h->cat.compute_slices;
}

/* GS_EBUSY naming the first process of ci_id (-1: any CI), else GS_OK. */
static int check_idle(host_t *h, const gs_gi_t *gi, int ci_id,
                      gs_error_t *err) {
  gs__procset_t *ps = malloc(sizeof *ps);
  if (!ps)
    return gs_error_set(err, GS_ENOMEM, "listing processes: out of memory");
  gs__procs_list(h->state_dir, &h->cg, uses_cpu_cgroup(h), gi, true, ps);
  int rc = GS_OK;
  for (size_t i = 0; i < ps->n; i++) {
    if (ci_id >= 0 && ps->ci[i] != (unsigned)ci_id)
      continue;
    char comm[64];
    gs__proc_comm(ps->pid[i], comm, sizeof comm);
    if (ci_id >= 0)
      rc = gs_error_set(err, GS_EBUSY,
                        "compute instance %d of GPU instance %u (%s) is in use "
                        "by pid %ld (%s)",
                        ci_id, gi->id, gi_name(h, gi), (long)ps->pid[i], comm);
    else
      rc = gs_error_set(err, GS_EBUSY,
                        "GPU instance %u (%s) is in use by pid %ld (%s)",
                        gi->id, gi_name(h, gi), (long)ps->pid[i], comm);
    break;
  }
  free(ps);
  return rc;
}

static int host_processes(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          gs_process_t *out, size_t max, size_t *n,
                          gs_error_t *err) {
  host_t *h = host_of(be);
  *n = 0;
  int rc = check_dev(dev, err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t stored;
  gs_layout_t *layout = h->in_txn ? &h->work : &stored;
  gs_state_t st = {.lock_fd = -1};
  if (!h->in_txn) {
    /* Shared lock: registrations are read, never pruned. */
    if ((rc = gs_state_open(&st, h->state_dir, GS_STATE_SHARED, err)) ||
        (rc = load_layout(h, &st, &stored, err)))
      goto out;
  }
  const gs_gi_t *gi = find_gi(h, layout, gi_id, err);
  gs__procset_t *ps = gi ? malloc(sizeof *ps) : NULL;
  if (!ps) {
    rc = gi ? gs_error_set(err, GS_ENOMEM, "listing processes: out of memory")
            : GS_ENOTFOUND;
    goto out;
  }
  gs__procs_list(h->state_dir, &h->cg, uses_cpu_cgroup(h), gi, h->in_txn, ps);
  for (size_t i = 0; i < ps->n && i < max; i++) {
    gs_process_t *p = &out[i];
    memset(p, 0, sizeof *p);
    p->pid = ps->pid[i];
    p->gi_id = gi->id;
    p->ci_id = ps->ci[i];
    p->memory_bytes = gs__proc_rss_bytes(p->pid);
    gs__proc_comm(p->pid, p->command, sizeof p->command);
  }
  *n = ps->n;
  free(ps);
out:
  gs_state_close(&st);
  return rc;
}

/* ---- device and changes ------------------------------------------------ */

static int host_device_count(gs_backend_t *be, unsigned *n, gs_error_t *err) {
  (void)be;
  (void)err;
  *n = 1;
  return GS_OK;
}

static int host_device_get(gs_backend_t *be, unsigned index, gs_device_t *out,
                           gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = check_dev(index, err);
  if (rc != GS_OK)
    return rc;
  memset(out, 0, sizeof *out);
  if (h->in_txn)
    out->layout = h->work;
  else if ((rc = read_layout(h, &out->layout, err)) != GS_OK)
    return rc;
  out->index = 0;
  snprintf(out->name, sizeof out->name, "host");
  snprintf(out->uuid, sizeof out->uuid, "%s", h->uuid);
  out->catalog = h->cat;
  return GS_OK;
}

static int host_begin(gs_backend_t *be, gs_error_t *err) {
  host_t *h = host_of(be);
  if (h->in_txn)
    return gs_error_set(err, GS_EINVAL,
                        "host backend: a change is already in progress");
  int rc = gs_state_open(&h->st, h->state_dir, GS_STATE_EXCLUSIVE, err);
  h->st.test_step_delay_us = h->test_step_delay_us;
  if (rc != GS_OK)
    return rc;
  if ((rc = load_layout(h, &h->st, &h->work, err)) != GS_OK) {
    gs_state_close(&h->st);
    return rc;
  }
  h->in_txn = true;
  h->n_destroyed = 0;
  return GS_OK;
}

/* A failed commit leaves the change open (the file is untouched), so that
 * the caller can undo steps and abort. */
static int host_commit(gs_backend_t *be, gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = need_change(h, 0, "commit", err);
  if (rc != GS_OK)
    return rc;
  memset(&h->doc, 0, sizeof h->doc);
  snprintf(h->doc.backend, sizeof h->doc.backend, "host");
  h->doc.n_devices = 1;
  h->doc.device[0].index = 0;
  snprintf(h->doc.device[0].model, sizeof h->doc.device[0].model, "%s",
           h->cat.model);
  h->doc.device[0].memory_slices = h->cat.memory_slices;
  h->doc.device[0].layout = h->work;
  if ((rc = gs_state_save(&h->st, &h->doc, err)) != GS_OK)
    return rc;
  /* Registrations of destroyed GIs are state: cleared under the lock. */
  for (unsigned i = 0; i < h->n_destroyed; i++)
    gs__procs_forget(h->state_dir, h->destroyed[i]);
  gs_state_close(&h->st);
  h->in_txn = false;
  for (unsigned i = 0; i < h->n_destroyed; i++)
    gs__cgroup_remove(&h->cg, h->destroyed[i]);
  return GS_OK;
}

static void host_abort(gs_backend_t *be) {
  host_t *h = host_of(be);
  if (h->in_txn)
    gs_state_close(&h->st);
  h->in_txn = false;
}

static int host_set_mig_mode(gs_backend_t *be, unsigned dev, bool enabled,
                             gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = need_change(h, dev, "set_mig_mode", err);
  if (rc != GS_OK)
    return rc;
  if (!enabled && h->work.n_gi > 0) {
    char ids[128];
    format_ids(&h->work, ids, sizeof ids);
    return gs_error_set(err, GS_EBUSY,
                        "device 0 (host) has GPU instances %s; destroy them "
                        "before disabling MIG mode",
                        ids);
  }
  h->work.mig_enabled = enabled;
  return GS_OK;
}

static int host_gi_create(gs_backend_t *be, unsigned dev, unsigned profile_id,
                          unsigned start, unsigned *gi_id, gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = need_change(h, dev, "gi_create", err);
  if (rc != GS_OK)
    return rc;
  if (!h->work.mig_enabled) /* NVML says NOT_SUPPORTED here */
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "MIG mode is disabled on device 0 (host); enable it "
                        "before creating GPU instances");
  unsigned id;
  gs_layout_t before = h->work;
  if ((rc = gs_layout_add_gi(&h->work, &h->cat, profile_id, start, &id, err)))
    return rc;
  gs_gi_t *gi = gs_layout_find_gi(&h->work, id);
  if ((rc = new_uuid(gi->uuid, sizeof gi->uuid, err)) != GS_OK) {
    h->work = before;
    return rc;
  }
  if (gi_id)
    *gi_id = id;
  return GS_OK;
}

static int host_gi_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                           gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = need_change(h, dev, "gi_destroy", err);
  if (rc != GS_OK)
    return rc;
  gs_gi_t *gi = find_gi(h, &h->work, gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  if ((rc = check_idle(h, gi, -1, err)) != GS_OK)
    return rc;
  if (gi->n_ci > 0) /* as the driver does (NVML_ERROR_IN_USE) */
    return gs_error_set(err, GS_EBUSY,
                        "GPU instance %u (%s) still has %u compute instance%s; "
                        "destroy them first",
                        gi->id, gi_name(h, gi), gi->n_ci,
                        gi->n_ci == 1 ? "" : "s");
  if (h->n_destroyed < HOST_MAX_DESTROYED) /* else a stale cgroup stays */
    memcpy(h->destroyed[h->n_destroyed++], gi->uuid, sizeof gi->uuid);
  return gs_layout_remove_gi(&h->work, gi_id, err);
}

static int host_ci_create(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          unsigned ci_profile_id, unsigned start,
                          unsigned *ci_id, gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = need_change(h, dev, "ci_create", err);
  if (rc != GS_OK)
    return rc;
  unsigned id;
  gs_layout_t before = h->work;
  rc = gs_layout_add_ci(&h->work, &h->cat, gi_id, ci_profile_id, start, &id,
                        err);
  if (rc != GS_OK)
    return rc;
  gs_ci_t *ci = gs_gi_find_ci(gs_layout_find_gi(&h->work, gi_id), id);
  if ((rc = new_uuid(ci->uuid, sizeof ci->uuid, err)) != GS_OK) {
    h->work = before;
    return rc;
  }
  if (ci_id)
    *ci_id = id;
  return GS_OK;
}

static int host_ci_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                           unsigned ci_id, gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = need_change(h, dev, "ci_destroy", err);
  if (rc != GS_OK)
    return rc;
  gs_gi_t *gi = find_gi(h, &h->work, gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  if (gs_gi_find_ci(gi, ci_id) &&
      (rc = check_idle(h, gi, (int)ci_id, err)) != GS_OK)
    return rc;
  return gs_layout_remove_ci(&h->work, gi_id, ci_id, err);
}

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
  unsigned first = gs__host_gi_first_slice(gi->start, gp->compute_slices,
                                           h->cat.compute_slices) +
                   ci->start;
  unsigned lo, hi, n = 0;
  gs__host_core_range(h->cores, h->cat.compute_slices, first,
                      cp->compute_slices, &lo, &hi);
  CPU_ZERO(set);
  for (unsigned k = lo; k < hi; k++)
    CPU_SET((size_t)h->cpu[k % h->n_cpus], set);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET((size_t)c, set))
      list[n++] = c;
  return n;
}

static void add_env(gs_confinement_t *out, const char *name, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

static void add_env(gs_confinement_t *out, const char *name, const char *fmt,
                    ...) {
  if (out->n_env >= GS_MAX_ENV)
    return; /* GS_MAX_ENV is sized for the list below */
  snprintf(out->env_name[out->n_env], sizeof out->env_name[0], "%s", name);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->env_value[out->n_env], sizeof out->env_value[0], fmt, ap);
  va_end(ap);
  out->n_env++;
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

static int confine_locked(host_t *h, gs_layout_t *layout, unsigned gi_id,
                          unsigned ci_id, gs_confinement_t *out,
                          gs_error_t *err) {
  gs_gi_t *gi = find_gi(h, layout, gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  gs_ci_t *ci = gs_gi_find_ci(gi, ci_id);
  if (!ci)
    return gs_error_set(
        err, GS_ENOTFOUND,
        "no compute instance %u in GPU instance %u on device 0 (it has %u)",
        ci_id, gi_id, gi->n_ci);
  const gs_gi_profile_t *gp = gs_catalog_gi(&h->cat, gi->profile_id);
  const gs_ci_profile_t *cp = gs_catalog_ci(gp, ci->profile_id);
  if (!cp) /* gs_layout_validate has already checked this */
    return gs_error_set(err, GS_ECORRUPT, "GPU instance %u: unknown profile",
                        gi_id);
  cpu_set_t set;
  int list[CPU_SETSIZE];
  unsigned n = instance_cpus(h, gi, gp, cp, ci, &set, list);
  char cpus[512];
  gs__cpulist_format(list, n, cpus, sizeof cpus);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    return gs_error_sys(err, errno, "pinning to CPUs %s", cpus);
  uint64_t bytes = gp->memory_mib << 20;
  uint64_t quota_us = 0;
  if (h->cores < h->cat.compute_slices) /* shared cores: g/7 of the host */
    quota_us = (uint64_t)gp->compute_slices * h->cores * GS__CPU_PERIOD_US /
               h->cat.compute_slices;
  int rc = limit_memory(h, gi, bytes, quota_us, &out->address_space_limit,
                        err);
  if (rc == GS_OK)
    rc = gs__procs_register(h->state_dir, layout, gi, ci_id, err);
  if (rc != GS_OK)
    return rc;
  char name[GS_PROFILE_NAME_MAX + 8];
  gs_catalog_device_name(gp, cp, name, sizeof name);
  memset(out, 0, sizeof *out);
  add_env(out, "GPUSLICE_BACKEND", "host");
  add_env(out, "GPUSLICE_DEVICE", "0");
  add_env(out, "GPUSLICE_GI_ID", "%u", gi_id);
  add_env(out, "GPUSLICE_CI_ID", "%u", ci_id);
  add_env(out, "GPUSLICE_INSTANCE_UUID", "%s", ci->uuid);
  add_env(out, "GPUSLICE_PROFILE", "%s", name);
  add_env(out, "GPUSLICE_CPUS", "%s", cpus);
  add_env(out, "GPUSLICE_MEMORY_LIMIT_BYTES", "%" PRIu64, bytes);
  add_env(out, "OMP_NUM_THREADS", "%u", n);
  add_env(out, "OPENBLAS_NUM_THREADS", "%u", n);
  return GS_OK;
}

static int host_confine(gs_backend_t *be, unsigned dev, unsigned gi_id,
                        unsigned ci_id, gs_confinement_t *out,
                        gs_error_t *err) {
  host_t *h = host_of(be);
  int rc = check_dev(dev, err);
  if (rc != GS_OK)
    return rc;
  if (h->in_txn) /* the exclusive lock is already ours */
    return confine_locked(h, &h->work, gi_id, ci_id, out, err);
  gs_state_t st;
  gs_layout_t layout;
  if ((rc = gs_state_open(&st, h->state_dir, GS_STATE_EXCLUSIVE, err)))
    return rc;
  rc = load_layout(h, &st, &layout, err);
  if (rc == GS_OK)
    rc = confine_locked(h, &layout, gi_id, ci_id, out, err);
  gs_state_close(&st);
  return rc;
}

static void host_enforcement(gs_backend_t *be, gs_enforcement_t *out) {
  host_t *h = host_of(be);
  unsigned c = h->cores, s = h->cat.compute_slices;
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

/* ---- open and close ---------------------------------------------------- */

static void host_close(gs_backend_t *be) {
  host_abort(be);
  free(host_of(be));
}

static const gs_backend_ops_t host_ops = {
    .name = "host",
    .device_count = host_device_count,
    .device_get = host_device_get,
    .begin = host_begin,
    .commit = host_commit,
    .abort = host_abort,
    .set_mig_mode = host_set_mig_mode,
    .gi_create = host_gi_create,
    .gi_destroy = host_gi_destroy,
    .ci_create = host_ci_create,
    .ci_destroy = host_ci_destroy,
    .processes = host_processes,
    .enforcement = host_enforcement,
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
  if (!opt || !opt->state_dir || !opt->state_dir[0])
    return gs_error_set(err, GS_EINVAL,
                        "the host backend needs a state directory");
  if (strlen(opt->state_dir) >= sizeof((host_t *)0)->state_dir - 256)
    return gs_error_set(err, GS_EINVAL, "state directory path is too long");
  if (opt->host_cpu_cores > HOST_MAX_CORES)
    return gs_error_set(err, GS_EINVAL, "%u CPU cores: at most %d",
                        opt->host_cpu_cores, HOST_MAX_CORES);
  host_t *h = calloc(1, sizeof *h);
  if (!h)
    return gs_error_set(err, GS_ENOMEM,
                        "opening the host backend: out of memory");
  int rc = GS_OK;
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
  snprintf(h->state_dir, sizeof h->state_dir, "%s", opt->state_dir);
  h->test_step_delay_us = opt->test_step_delay_us;
  gs_catalog_synth_host(&h->cat, h->cores, mib);
  host_uuid(h->uuid, sizeof h->uuid);
  gs__cgroup_detect(&h->cg, opt->host_cgroup_root);
  h->st.lock_fd = -1;
  h->be.ops = &host_ops;
  h->be.impl = h;
  *out = &h->be;
out:
  if (rc != GS_OK)
    free(h);
  return rc;
}
