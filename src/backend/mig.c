/* The mig backend: real GPU and compute instances through NVML. The
 * catalog is what the driver reports (mig_read.c), the layout is read back
 * from the hardware every time, and a lock file only keeps two gpuslice
 * commands from interleaving. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/mig_int.h"

#define MIG_MAX_PROCS 64

static gs__mig_t *mig_of(gs_backend_t *be) {
  return be->impl;
}

static int dev_at(gs__mig_t *m, unsigned index, gs__mig_dev_t **d,
                  gs_error_t *err) {
  if (index >= m->n_dev)
    return gs_error_set(err, GS_ENOTFOUND,
                        "no MIG device %u: %u GPU%s with MIG mode enabled",
                        index, m->n_dev, m->n_dev == 1 ? " has" : "s have");
  *d = &m->dev[index];
  return GS_OK;
}

static int need_catalog(gs__mig_t *m, gs__mig_dev_t *d, gs_error_t *err) {
  return d->have_catalog ? GS_OK : gs__mig_build_catalog(m, d, err);
}

static int mig_device_count(gs_backend_t *be, unsigned *n, gs_error_t *err) {
  (void)err;
  *n = mig_of(be)->n_dev;
  return GS_OK;
}

static int mig_device_get(gs_backend_t *be, unsigned index, gs_device_t *out,
                          gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  gs__mig_dev_t *d = NULL;
  int rc = dev_at(m, index, &d, err);
  if (rc == GS_OK)
    rc = need_catalog(m, d, err);
  if (rc != GS_OK)
    return rc;
  memset(out, 0, sizeof *out);
  if ((rc = gs__mig_read_layout(m, d, &out->layout, err)) != GS_OK)
    return rc;
  out->index = index;
  snprintf(out->name, sizeof out->name, "%s", d->name);
  snprintf(out->uuid, sizeof out->uuid, "%s", d->uuid);
  out->pci_device_id = d->pci_device_id;
  out->catalog = d->cat; /* after read_layout: it may refresh CI lists */
  return GS_OK;
}

/* ---- changes ----------------------------------------------------------- */

static int make_dirs(const char *path, gs_error_t *err) {
  char buf[GS__MIG_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return gs_error_sys(err, errno, "creating %s", buf);
    if (!(*p = c))
      return GS_OK;
  }
}

static int take_lock(gs__mig_t *m, gs_error_t *err) {
  if (m->lock_fd >= 0)
    return gs_error_set(err, GS_EINVAL,
                        "mig backend: a change is already in progress");
  char dir[GS__MIG_PATH_MAX];
  snprintf(dir, sizeof dir, "%s", m->lock_path);
  *strrchr(dir, '/') = '\0';
  int rc = make_dirs(dir, err);
  if (rc != GS_OK)
    return rc;
  int fd = open(m->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return gs_error_sys(err, errno, "opening %s", m->lock_path);
  while (flock(fd, LOCK_EX) != 0)
    if (errno != EINTR) {
      rc = gs_error_sys(err, errno, "locking %s", m->lock_path);
      close(fd);
      return rc;
    }
  m->lock_fd = fd;
  return GS_OK;
}

static void mig_abort(gs_backend_t *be) {
  gs__mig_t *m = mig_of(be);
  if (m->lock_fd >= 0)
    close(m->lock_fd); /* releases the flock */
  m->lock_fd = -1;
}

/* The hardware already holds every change: committing only unlocks. */
static int mig_commit(gs_backend_t *be, gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  if (m->lock_fd < 0)
    return gs_error_set(err, GS_EINVAL, "mig backend: commit without begin");
  mig_abort(be);
  return GS_OK;
}

static int need_change(gs__mig_t *m, unsigned index, const char *what,
                       gs__mig_dev_t **d, gs_error_t *err) {
  if (m->lock_fd < 0)
    return gs_error_set(err, GS_EINVAL,
                        "mig backend: %s outside a change (begin first)", what);
  return dev_at(m, index, d, err);
}

static int mig_set_mig_mode(gs_backend_t *be, unsigned dev, bool enabled,
                            gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  gs__mig_dev_t *d = NULL;
  int rc = need_change(m, dev, "set_mig_mode", &d, err);
  if (rc != GS_OK)
    return rc;
  unsigned want = enabled ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
  unsigned cur = 0, pending = 0;
  nvmlReturn_t r = m->nvml.DeviceGetMigMode(d->handle, &cur, &pending);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceGetMigMode", err,
                        "reading the MIG mode");
  if (cur == want && pending == want)
    return GS_OK;
  unsigned was = cur;
  const char *what = enabled ? "enabling MIG" : "disabling MIG";
  nvmlReturn_t activation = NVML_SUCCESS;
  r = m->nvml.DeviceSetMigMode(d->handle, want, &activation);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceSetMigMode", err, what);
  d->have_catalog = false; /* profiles hold for one MIG mode lifetime */
  nvmlReturn_t back = m->nvml.DeviceGetMigMode(d->handle, &cur, &pending);
  if (activation == NVML_SUCCESS && back == NVML_SUCCESS && cur == want) {
    /* The switch may rebind the GPU: ask for its handle again. */
    r = m->nvml.DeviceGetHandleByIndex(d->nvml_index, &d->handle);
    return r == NVML_SUCCESS
               ? GS_OK
               : gs__mig_fail(m, d, r, "nvmlDeviceGetHandleByIndex", err, what);
  }
  /* Not in effect: leave the GPU as it was, nothing pending for the next
   * reset. */
  nvmlReturn_t ignored;
  m->nvml.DeviceSetMigMode(d->handle, was, &ignored);
  if (activation != NVML_SUCCESS && activation != NVML_ERROR_RESET_REQUIRED)
    return gs__mig_fail(m, d, activation, "nvmlDeviceSetMigMode (activation)",
                        err, what);
  if (back != NVML_SUCCESS)
    return gs__mig_fail(m, d, back, "nvmlDeviceGetMigMode", err, what);
  return gs_error_set(err, GS_EUNSUPPORTED,
                      "MIG mode change on GPU %u (%s) needs a GPU reset; "
                      "gpuslice does not reset GPUs (nvidia-smi -i %u -mig "
                      "%u, then reset the GPU or reboot)",
                      d->nvml_index, gs__mig_short_name(d), d->nvml_index,
                      want);
}

static int gi_handle(gs__mig_t *m, gs__mig_dev_t *d, unsigned gi_id,
                     nvmlGpuInstance_t *gih, gs_error_t *err) {
  nvmlReturn_t r = m->nvml.DeviceGetGpuInstanceById(d->handle, gi_id, gih);
  if (r == NVML_ERROR_NOT_FOUND || r == NVML_ERROR_INVALID_ARGUMENT)
    return gs_error_set(err, GS_ENOTFOUND, "no GPU instance %u on GPU %u",
                        gi_id, d->nvml_index);
  return r == NVML_SUCCESS
             ? GS_OK
             : gs__mig_fail(m, d, r, "nvmlDeviceGetGpuInstanceById", err,
                            "finding a GPU instance");
}

static int mig_gi_create(gs_backend_t *be, unsigned dev, unsigned profile_id,
                         unsigned start, unsigned *gi_id, gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  gs__mig_dev_t *d = NULL;
  int rc = need_change(m, dev, "gi_create", &d, err);
  if (rc == GS_OK)
    rc = need_catalog(m, d, err);
  if (rc != GS_OK)
    return rc;
  const gs_gi_profile_t *p = gs_catalog_gi(&d->cat, profile_id);
  if (!p)
    return gs_error_set(err, GS_ENOTFOUND,
                        "GPU %u (%s) has no GPU instance profile ID %u",
                        d->nvml_index, gs__mig_short_name(d), profile_id);
  char what[128], starts[64];
  if (start >= 32 || !(p->start_mask & (1u << start))) {
    gs_format_starts(p->start_mask, starts, sizeof starts);
    return gs_error_set(err, GS_EINVAL,
                        "profile %s cannot start at slice %u: starts are %s",
                        p->name, start, starts);
  }
  nvmlGpuInstancePlacement_t pl = {start, p->memory_slices};
  nvmlGpuInstance_t gih = NULL;
  snprintf(what, sizeof what, "creating GPU instance %s at %u:%u", p->name,
           start, p->memory_slices);
  nvmlReturn_t r = m->nvml.DeviceCreateGpuInstanceWithPlacement(
      d->handle, profile_id, &pl, &gih);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceCreateGpuInstanceWithPlacement",
                        err, what);
  nvmlGpuInstanceInfo_t info;
  r = m->nvml.GpuInstanceGetInfo(gih, &info);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlGpuInstanceGetInfo", err, what);
  *gi_id = info.id;
  return GS_OK;
}

/* ---- processes and busy errors ----------------------------------------- */

static void read_comm(pid_t pid, char *buf, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
  FILE *f = fopen(path, "re");
  buf[0] = '\0';
  if (f) {
    if (fgets(buf, (int)size, f))
      buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
  }
  if (!buf[0])
    snprintf(buf, size, "?");
}

typedef struct procs_s {
  size_t n;
  gs_process_t p[MIG_MAX_PROCS];
} procs_t;

/* Adds the compute processes NVML lists on handle (a MIG device or the
 * GPU) that run in GI gi_id; ci_id is the MIG device's CI, or taken from
 * NVML's record for the GPU. */
static void collect(gs__mig_t *m, nvmlDevice_t handle, unsigned gi_id,
                    const unsigned *ci_id, procs_t *out) {
  nvmlProcessInfo_t stack[MIG_MAX_PROCS], *info = stack;
  unsigned n = MIG_MAX_PROCS;
  nvmlReturn_t r = m->nvml.DeviceGetComputeRunningProcesses(handle, &n, info);
  if (r == NVML_ERROR_INSUFFICIENT_SIZE &&
      (info = calloc(n + 8, sizeof *info))) {
    n += 8;
    r = m->nvml.DeviceGetComputeRunningProcesses(handle, &n, info);
  }
  for (unsigned i = 0; r == NVML_SUCCESS && i < n; i++) {
    if (!ci_id && info[i].gpuInstanceId != gi_id)
      continue;
    bool seen = false;
    for (size_t k = 0; k < out->n; k++)
      seen |= out->p[k].pid == (pid_t)info[i].pid;
    if (seen || out->n == MIG_MAX_PROCS)
      continue;
    gs_process_t *p = &out->p[out->n++];
    memset(p, 0, sizeof *p);
    p->pid = (pid_t)info[i].pid;
    p->gi_id = gi_id;
    p->ci_id = ci_id ? *ci_id : info[i].computeInstanceId;
    if (info[i].usedGpuMemory != NVML_VALUE_NOT_AVAILABLE_ULL)
      p->memory_bytes = info[i].usedGpuMemory;
    read_comm(p->pid, p->command, sizeof p->command);
  }
  if (info != stack)
    free(info);
}

static void gi_processes(gs__mig_t *m, gs__mig_dev_t *d, unsigned gi_id,
                         procs_t *out) {
  out->n = 0;
  unsigned max = 0;
  if (m->nvml.DeviceGetMaxMigDeviceCount(d->handle, &max) != NVML_SUCCESS)
    max = 0;
  for (unsigned i = 0; i < max; i++) {
    nvmlDevice_t mh;
    unsigned gid, cid;
    if (m->nvml.DeviceGetMigDeviceHandleByIndex(d->handle, i, &mh) ==
            NVML_SUCCESS &&
        m->nvml.DeviceGetGpuInstanceId(mh, &gid) == NVML_SUCCESS &&
        m->nvml.DeviceGetComputeInstanceId(mh, &cid) == NVML_SUCCESS &&
        gid == gi_id)
      collect(m, mh, gi_id, &cid, out);
  }
  /* A GI without CIs has no MIG device: the GPU's list still names it. */
  collect(m, d->handle, gi_id, NULL, out);
}

static int mig_processes(gs_backend_t *be, unsigned dev, unsigned gi_id,
                         gs_process_t *out, size_t max, size_t *n,
                         gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  gs__mig_dev_t *d = NULL;
  int rc = dev_at(m, dev, &d, err);
  if (rc != GS_OK)
    return rc;
  procs_t *procs = malloc(sizeof *procs);
  if (!procs)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  gi_processes(m, d, gi_id, procs);
  *n = procs->n;
  memcpy(out, procs->p, (procs->n < max ? procs->n : max) * sizeof *out);
  free(procs);
  return GS_OK;
}

/* One device as the change finds it: its layout read back from NVML and
 * who runs in each GI. */
static int read_device(gs_backend_t *be, gs_change_dev_t *cd, gs_error_t *err) {
  gs_layout_t *l = &cd->dev.layout;
  int rc = mig_device_get(be, cd->index, &cd->dev, err);
  for (unsigned g = 0; rc == GS_OK && cd->with_users && g < l->n_gi; g++) {
    gs_busy_t *u = &cd->users[g];
    memset(u, 0, sizeof *u);
    u->dev = cd->index;
    u->gi_id = l->gi[g].id;
    rc = mig_processes(be, cd->index, u->gi_id, u->procs, GS_BUSY_MAX_PROCS,
                       &u->n_procs, err);
    u->in_use = u->n_procs > 0;
  }
  cd->failed = rc != GS_OK;
  return rc;
}

static int mig_begin(gs_backend_t *be, gs_change_dev_t *devs, unsigned n,
                     gs_error_t *err) {
  int rc = take_lock(mig_of(be), err);
  for (unsigned i = 0; rc == GS_OK && i < n; i++)
    if ((rc = read_device(be, &devs[i], err)) != GS_OK)
      mig_abort(be);
  return rc;
}

/* GS_EBUSY for an IN_USE destroy, naming who uses the instance. */
static int busy(gs__mig_t *m, gs__mig_dev_t *d, unsigned gi_id,
                const char *subject, bool has_cis, gs_error_t *err) {
  procs_t *procs = malloc(sizeof *procs);
  char who[512] = "";
  size_t len = 0;
  if (procs)
    gi_processes(m, d, gi_id, procs);
  for (size_t i = 0; procs && i < procs->n && len < sizeof who; i++) {
    int w =
        snprintf(who + len, sizeof who - len, "%s pid %d (%s)", i ? "," : " by",
                 (int)procs->p[i].pid, procs->p[i].command);
    len += w > 0 ? (size_t)w : 0;
  }
  free(procs);
  if (!who[0])
    snprintf(who, sizeof who, "%s",
             has_cis ? ": it still has compute instances"
                     : " (by a process NVML does not list)");
  return gs_error_set(err, GS_EBUSY, "%sGPU instance %u on GPU %u is in use%s",
                      subject, gi_id, d->nvml_index, who);
}

static int mig_gi_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  gs__mig_dev_t *d = NULL;
  nvmlGpuInstance_t gih = NULL;
  int rc = need_change(m, dev, "gi_destroy", &d, err);
  if (rc == GS_OK)
    rc = gi_handle(m, d, gi_id, &gih, err);
  if (rc != GS_OK)
    return rc;
  nvmlReturn_t r = m->nvml.GpuInstanceDestroy(gih);
  if (r == NVML_ERROR_IN_USE) {
    gs_gi_t gi = {.id = gi_id};
    bool has_cis =
        gs__mig_read_cis(m, d, gih, &gi, NULL) == GS_OK && gi.n_ci > 0;
    return busy(m, d, gi_id, "", has_cis, err);
  }
  if (r != NVML_SUCCESS) {
    char what[64];
    snprintf(what, sizeof what, "destroying GPU instance %u", gi_id);
    return gs__mig_fail(m, d, r, "nvmlGpuInstanceDestroy", err, what);
  }
  return GS_OK;
}

/* ---- compute instances ------------------------------------------------- */

static int mig_ci_create(gs_backend_t *be, unsigned dev, unsigned gi_id,
                         unsigned ci_profile_id, unsigned start,
                         unsigned *ci_id, gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  gs__mig_dev_t *d = NULL;
  nvmlGpuInstance_t gih = NULL;
  nvmlGpuInstanceInfo_t gi_info;
  int rc = need_change(m, dev, "ci_create", &d, err);
  if (rc == GS_OK)
    rc = need_catalog(m, d, err);
  if (rc == GS_OK)
    rc = gi_handle(m, d, gi_id, &gih, err);
  if (rc != GS_OK)
    return rc;
  nvmlReturn_t r = m->nvml.GpuInstanceGetInfo(gih, &gi_info);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlGpuInstanceGetInfo", err,
                        "reading a GPU instance");
  gs__mig_refresh_cis(m, d, gih, gi_info.profileId);
  const gs_gi_profile_t *gp = gs_catalog_gi(&d->cat, gi_info.profileId);
  const gs_ci_profile_t *cp = gs_catalog_ci(gp, ci_profile_id);
  if (!cp)
    return gs_error_set(err, GS_ENOTFOUND,
                        "GPU instance %u (%s) on GPU %u has no compute "
                        "instance profile %u",
                        gi_id, gp ? gp->name : "?", d->nvml_index,
                        ci_profile_id);
  char what[160], starts[64];
  if (start >= 32 || !(cp->start_mask & (1u << start))) {
    gs_format_starts(cp->start_mask, starts, sizeof starts);
    return gs_error_set(err, GS_EINVAL,
                        "compute instance %uc in %s cannot start at slice %u: "
                        "starts are %s",
                        cp->compute_slices, gp->name, start, starts);
  }
  snprintf(what, sizeof what,
           "creating compute instance %uc at %u in GPU instance %u",
           cp->compute_slices, start, gi_id);
  nvmlComputeInstancePlacement_t pl = {start, cp->compute_slices};
  nvmlComputeInstance_t cih = NULL;
  r = m->nvml.GpuInstanceCreateComputeInstanceWithPlacement(gih, ci_profile_id,
                                                            &pl, &cih);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r,
                        "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
                        err, what);
  nvmlComputeInstanceInfo_t info;
  r = m->nvml.ComputeInstanceGetInfo(cih, &info);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlComputeInstanceGetInfo", err, what);
  *ci_id = info.id;
  return GS_OK;
}

/* The handle of compute instance ci_id in gih. */
static int ci_handle(gs__mig_t *m, gs__mig_dev_t *d, nvmlGpuInstance_t gih,
                     unsigned gi_id, unsigned ci_id, nvmlComputeInstance_t *out,
                     gs_error_t *err) {
  for (unsigned pid = 0; pid < NVML_COMPUTE_INSTANCE_PROFILE_COUNT; pid++) {
    nvmlComputeInstance_t cis[GS__MIG_MAX_LISTED];
    unsigned n = GS__MIG_MAX_LISTED;
    if (m->nvml.GpuInstanceGetComputeInstances(gih, pid, cis, &n) !=
        NVML_SUCCESS)
      continue;
    for (unsigned k = 0; k < n && k < GS__MIG_MAX_LISTED; k++) {
      nvmlComputeInstanceInfo_t info;
      if (m->nvml.ComputeInstanceGetInfo(cis[k], &info) == NVML_SUCCESS &&
          info.id == ci_id) {
        *out = cis[k];
        return GS_OK;
      }
    }
  }
  return gs_error_set(err, GS_ENOTFOUND,
                      "no compute instance %u in GPU instance %u on GPU %u",
                      ci_id, gi_id, d->nvml_index);
}

static int mig_ci_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          unsigned ci_id, gs_error_t *err) {
  gs__mig_t *m = mig_of(be);
  gs__mig_dev_t *d = NULL;
  nvmlGpuInstance_t gih = NULL;
  nvmlComputeInstance_t cih = NULL;
  int rc = need_change(m, dev, "ci_destroy", &d, err);
  if (rc == GS_OK)
    rc = gi_handle(m, d, gi_id, &gih, err);
  if (rc == GS_OK)
    rc = ci_handle(m, d, gih, gi_id, ci_id, &cih, err);
  if (rc != GS_OK)
    return rc;
  nvmlReturn_t r = m->nvml.ComputeInstanceDestroy(cih);
  char what[96];
  snprintf(what, sizeof what, "compute instance %u of ", ci_id);
  if (r == NVML_ERROR_IN_USE)
    return busy(m, d, gi_id, what, false, err);
  if (r != NVML_SUCCESS) {
    snprintf(what, sizeof what,
             "destroying compute instance %u of GPU instance %u", ci_id, gi_id);
    return gs__mig_fail(m, d, r, "nvmlComputeInstanceDestroy", err, what);
  }
  return GS_OK;
}

/* ---- enforcement, confinement, open and close -------------------------- */

static void mig_enforcement(gs_backend_t *be, gs_enforcement_t *out) {
  (void)be;
  snprintf(out->compute, sizeof out->compute,
           "hardware: dedicated SMs per instance (MIG)");
  snprintf(out->memory, sizeof out->memory,
           "hardware: dedicated memory, L2 and bandwidth per GPU instance");
  snprintf(out->faults, sizeof out->faults, "isolated by hardware");
}

static void add_env(gs_confinement_t *out, const char *name,
                    const char *value) {
  if (out->n_env == GS_MAX_ENV)
    return;
  snprintf(out->env_name[out->n_env], sizeof out->env_name[0], "%s", name);
  snprintf(out->env_value[out->n_env], sizeof out->env_value[0], "%s", value);
  out->n_env++;
}

/* CUDA sees one MIG device per process: the CI's UUID is all it takes. */
static int mig_confine(gs_backend_t *be, unsigned dev, unsigned gi_id,
                       unsigned ci_id, gs_confinement_t *out, gs_error_t *err) {
  gs_device_t *d = malloc(sizeof *d);
  if (!d)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = mig_device_get(be, dev, d, err);
  gs_gi_t *gi = rc == GS_OK ? gs_layout_find_gi(&d->layout, gi_id) : NULL;
  gs_ci_t *ci = gi ? gs_gi_find_ci(gi, ci_id) : NULL;
  if (rc == GS_OK && !ci)
    rc = gs_error_set(err, GS_ENOTFOUND,
                      "no compute instance %u in GPU instance %u on MIG "
                      "device %u",
                      ci_id, gi_id, dev);
  if (rc == GS_OK) {
    char uuid[GS_UUID_MAX + 32];
    if (ci->uuid[0]) /* MIG-<uuid>, R470+; else the legacy form */
      snprintf(uuid, sizeof uuid, "%s", ci->uuid);
    else
      snprintf(uuid, sizeof uuid, "MIG-%s/%u/%u", d->uuid, gi_id, ci_id);
    memset(out, 0, sizeof *out);
    add_env(out, "CUDA_VISIBLE_DEVICES", uuid);
    add_env(out, "NVIDIA_VISIBLE_DEVICES", uuid);
  }
  free(d);
  return rc;
}

static void mig_close(gs_backend_t *be) {
  gs__mig_t *m = mig_of(be);
  mig_abort(be);
  gs__nvml_close(&m->nvml);
  free(m->dev);
  free(m);
}

static const gs_backend_ops_t mig_ops = {
    .name = "mig",
    .device_count = mig_device_count,
    .device_get = mig_device_get,
    .begin = mig_begin,
    .commit = mig_commit,
    .abort = mig_abort,
    .set_mig_mode = mig_set_mig_mode,
    .gi_create = mig_gi_create,
    .gi_destroy = mig_gi_destroy,
    .ci_create = mig_ci_create,
    .ci_destroy = mig_ci_destroy,
    .processes = mig_processes,
    .enforcement = mig_enforcement,
    .confine = mig_confine,
    .close = mig_close,
};

/* Identity of GPU i if its MIG mode is on; *on = false when it is not (or
 * the GPU has no MIG). */
static int probe_gpu(gs__mig_t *m, unsigned i, gs__mig_dev_t *d, bool *on,
                     gs_error_t *err) {
  memset(d, 0, sizeof *d);
  d->nvml_index = i;
  nvmlReturn_t r = m->nvml.DeviceGetHandleByIndex(i, &d->handle);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceGetHandleByIndex", err, "opening");
  unsigned cur = 0, pending = 0;
  r = m->nvml.DeviceGetMigMode(d->handle, &cur, &pending);
  *on = r == NVML_SUCCESS && cur == NVML_DEVICE_MIG_ENABLE;
  if (!*on)
    return GS_OK;
  nvmlPciInfo_t pci;
  nvmlMemory_t mem;
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  if ((r = m->nvml.DeviceGetName(d->handle, d->name, sizeof d->name)) !=
      NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceGetName", err, "reading the name");
  if ((r = m->nvml.DeviceGetUUID(d->handle, uuid, sizeof uuid)) != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceGetUUID", err, "reading the UUID");
  snprintf(d->uuid, sizeof d->uuid, "%.*s", GS_UUID_MAX - 1, uuid);
  if ((r = m->nvml.DeviceGetPciInfo(d->handle, &pci)) != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceGetPciInfo", err,
                        "reading PCI info");
  d->pci_device_id = pci.pciDeviceId;
  if ((r = m->nvml.DeviceGetMemoryInfo(d->handle, &mem)) != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceGetMemoryInfo", err,
                        "reading memory");
  d->memory_mib = mem.total >> 20;
  return GS_OK;
}

static int probe_gpus(gs__mig_t *m, gs_error_t *err) {
  unsigned n = 0;
  nvmlReturn_t r = m->nvml.DeviceGetCount(&n);
  if (r != NVML_SUCCESS)
    return gs__nvml_fail(&m->nvml, r, "nvmlDeviceGetCount", err,
                         "counting GPUs");
  if (n > GS_MAX_DEVICES)
    n = GS_MAX_DEVICES;
  m->dev = calloc(n ? n : 1, sizeof *m->dev);
  if (!m->dev)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  for (unsigned i = 0; i < n; i++) {
    bool on = false;
    int rc = probe_gpu(m, i, &m->dev[m->n_dev], &on, err);
    if (rc != GS_OK)
      return rc;
    m->n_dev += on;
  }
  return GS_OK;
}

int gs__backend_mig_open(gs_backend_t **out, const gs_backend_options_t *opt,
                         const char *nvml_path, gs_error_t *err) {
  *out = NULL;
  if (!opt || !opt->state_dir || !opt->state_dir[0])
    return gs_error_set(err, GS_EINVAL,
                        "the mig backend needs a state directory (for its "
                        "lock)");
  if (strlen(opt->state_dir) + sizeof "/mig.lock" > GS__MIG_PATH_MAX)
    return gs_error_set(err, GS_EINVAL, "state directory path is too long");
  gs__mig_t *m = calloc(1, sizeof *m);
  if (!m)
    return gs_error_set(err, GS_ENOMEM,
                        "opening the mig backend: out of "
                        "memory");
  m->lock_fd = -1;
  snprintf(m->lock_path, sizeof m->lock_path, "%s/mig.lock", opt->state_dir);
  m->be.ops = &mig_ops;
  m->be.impl = m;
  int rc = gs__nvml_open(&m->nvml, nvml_path, err);
  if (rc == GS_OK)
    rc = probe_gpus(m, err);
  if (rc != GS_OK) {
    mig_close(&m->be);
    return rc;
  }
  *out = &m->be;
  return GS_OK;
}
