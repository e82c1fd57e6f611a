/* The soft backend: MIG-like instances on NVIDIA GPUs whose MIG mode is
 * off or absent. A GPU instance is a reservation of SMs and memory in the
 * state file (swcore.c), enforced when a process starts in it: under MPS
 * (the default) the process gets the GPU's own control daemon, an
 * active-thread percentage that caps its SMs at the instance's share, and
 * a pinned device memory limit, its part of the instance's memory; under
 * --isolation process it gets the GPU alone, time-sliced, unlimited; under
 * --isolation green it is told its SMs (GPUSLICE_SM_PARTITION) and runs
 * them as a green context, no MPS (soft_green.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/soft_int.h"

#define MIB ((uint64_t)1 << 20)

typedef __typeof__(((gs_state_doc_t *)0)->device[0]) doc_dev_t;

static gs__soft_t *soft_of(gs_backend_t *be) {
  return be->impl;
}

/* ---- hooks ------------------------------------------------------------- */

/* Registered processes and, among the GPU's processes, their children. */
static void soft_procs(gs__swcore_t *c, unsigned dev, const gs_gi_t *gi,
                       bool prune, gs__procset_t *ps) {
  gs__soft_t *s = (gs__soft_t *)c;
  nvmlProcessInfo_t *info;
  unsigned n;
  gs__soft_gpu_procs(s, dev, &info, &n);
  pid_t *members = n ? calloc(n, sizeof *members) : NULL;
  size_t k = 0;
  for (unsigned i = 0; members && i < n; i++)
    members[k++] = (pid_t)info[i].pid;
  gs__procs_list(c->state_dir, gi, members, k, true, prune, ps);
  free(members);
  free(info);
}

static uint64_t soft_memory_of(gs__swcore_t *c, unsigned dev, pid_t pid) {
  nvmlProcessInfo_t *info;
  unsigned n;
  uint64_t bytes = 0;
  gs__soft_gpu_procs((gs__soft_t *)c, dev, &info, &n);
  for (unsigned i = 0; i < n; i++)
    if ((pid_t)info[i].pid == pid &&
        info[i].usedGpuMemory != NVML_VALUE_NOT_AVAILABLE_ULL)
      bytes = info[i].usedGpuMemory;
  free(info);
  return bytes;
}

/* A GPU left without instances under MPS no longer needs its daemon. */
static void soft_committed(gs__swcore_t *c) {
  for (unsigned d = 0; d < c->n_dev; d++) {
    const doc_dev_t *dd = &c->work->device[d];
    if (dd->layout.n_gi == 0 || strcmp(dd->isolation, "mps") != 0)
      gs__mps_stop((gs__soft_t *)c, d);
  }
}

const gs__swcore_hooks_t gs__soft_hooks = {
    .procs = soft_procs,
    .memory_of = soft_memory_of,
    .committed = soft_committed,
};

/* ---- isolation --------------------------------------------------------- */

static const char *mode_name(gs_soft_isolation_t mode) {
  return mode == GS_SOFT_ISOLATION_PROCESS ? "process"
         : mode == GS_SOFT_ISOLATION_GREEN ? "green"
                                           : "mps";
}

static gs_soft_isolation_t mode_of(const char *name) {
  return strcmp(name, "process") == 0 ? GS_SOFT_ISOLATION_PROCESS
         : strcmp(name, "green") == 0 ? GS_SOFT_ISOLATION_GREEN
                                      : GS_SOFT_ISOLATION_MPS;
}

/* How device dev's instances run: as recorded while it has some, else as
 * the option says (MPS by default). GS_EBUSY when the option asks for
 * another way than its instances run. */
static int device_mode(const gs__soft_t *s, unsigned dev, const doc_dev_t *d,
                       gs_soft_isolation_t *mode, gs_error_t *err) {
  gs_soft_isolation_t recorded = GS_SOFT_ISOLATION_DEFAULT;
  if (d->layout.n_gi > 0 && d->isolation[0])
    recorded = mode_of(d->isolation);
  gs_soft_isolation_t asked = s->isolation;
  if (recorded != GS_SOFT_ISOLATION_DEFAULT &&
      asked != GS_SOFT_ISOLATION_DEFAULT && asked != recorded)
    return gs_error_set(err, GS_EBUSY,
                        "the GPU instances of %s run under %s isolation; "
                        "destroy them before switching it to %s",
                        s->core.dev[dev].label, mode_name(recorded),
                        mode_name(asked));
  *mode = recorded != GS_SOFT_ISOLATION_DEFAULT ? recorded
          : asked != GS_SOFT_ISOLATION_DEFAULT  ? asked
                                                : GS_SOFT_ISOLATION_MPS;
  return GS_OK;
}

/* ---- green partitions -------------------------------------------------- */

/* A CI's SMs: what a GI of as many compute slices gets on this GPU (as
 * MIG hands out SMs by GPC), within its own GI's. */
static unsigned ci_sms(const gs_catalog_t *cat, const gs_gi_profile_t *gp,
                       const gs_ci_profile_t *cp) {
  if (cp->compute_slices >= gp->compute_slices)
    return gp->sms;
  unsigned best = 0;
  for (unsigned i = 0; i < cat->n_gi; i++)
    if (cat->gi[i].compute_slices == cp->compute_slices &&
        (best == 0 || cat->gi[i].sms < best))
      best = cat->gi[i].sms;
  if (best == 0)
    best = gp->sms * cp->compute_slices / gp->compute_slices;
  return best < gp->sms ? best : gp->sms;
}

/* The SMs of GI gi (with ci: of that CI, within its GI's) under green
 * isolation. Reads the GPU's split from CUDA on first use. */
static int green_range(gs__soft_t *s, unsigned dev, const gs_gi_t *gi,
                       const gs_ci_t *ci, unsigned *first, unsigned *count,
                       gs_error_t *err) {
  const gs_catalog_t *cat = &s->core.dev[dev].cat;
  const gs_gi_profile_t *gp = gs_catalog_gi(cat, gi->profile_id);
  int rc = gs__soft_read_sms(s, err);
  if (rc == GS_OK && !gp)
    rc = gs_error_set(err, GS_ECORRUPT, "GPU instance %u: unknown profile",
                      gi->id);
  if (rc == GS_OK)
    rc = gs__green_partition(&s->gpu[dev].green, cat->memory_slices, gi->start,
                             gp->memory_slices, gp->sms, first, count, err);
  const gs_ci_profile_t *cp =
      ci && gp ? gs_catalog_ci(gp, ci->profile_id) : NULL;
  unsigned gi_end = *first + *count;
  if (rc == GS_OK && cp && cp->compute_slices < gp->compute_slices) {
    rc = gs__green_partition(&s->gpu[dev].green, cat->memory_slices,
                             gi->start + ci->start, cp->compute_slices,
                             ci_sms(cat, gp, cp), first, count, err);
    if (rc == GS_OK && *first + *count > gi_end)
      *count = *first < gi_end ? gi_end - *first : 0;
  }
  if (rc == GS_OK && *count == 0)
    rc = gs_error_set(err, GS_ELIMIT, "no green-context SMs left for it");
  if (rc != GS_OK)
    gs_error_prefix(err,
                    "green isolation of GPU instance %u (%s) on %s: ", gi->id,
                    gp ? gp->name : "?", s->core.dev[dev].label);
  return rc;
}

/* ---- device and changes ------------------------------------------------ */

static int soft_device_get(gs_backend_t *be, unsigned index, gs_device_t *out,
                           gs_error_t *err) {
  gs__soft_t *s = soft_of(be);
  const gs_state_doc_t *doc;
  int rc = gs__swcore_describe(&s->core, index, out, &doc, err);
  if (rc != GS_OK || strcmp(doc->device[index].isolation, "green") != 0)
    return rc;
  for (unsigned i = 0; i < out->layout.n_gi; i++)
    if (green_range(s, index, &out->layout.gi[i], NULL, &out->sm_first[i],
                    &out->sm_count[i], NULL) != GS_OK)
      out->sm_first[i] = out->sm_count[i] = 0; /* listed without SMs */
  return GS_OK;
}

static int soft_gi_create(gs_backend_t *be, unsigned dev, unsigned profile_id,
                          unsigned start, unsigned *gi_id, gs_error_t *err) {
  gs__soft_t *s = soft_of(be);
  gs_soft_isolation_t mode = GS_SOFT_ISOLATION_MPS; /* set by device_mode */
  if (s->core.in_txn && dev < s->core.n_dev) {
    int rc = device_mode(s, dev, &s->core.work->device[dev], &mode, err);
    if (rc != GS_OK)
      return rc;
  }
  int rc = gs__swcore_gi_create(be, dev, profile_id, start, gi_id, err);
  if (rc != GS_OK || mode != GS_SOFT_ISOLATION_GREEN)
    return rc;
  /* Refused now, not when a process starts: no green contexts here, or
   * no SMs for this placement. */
  unsigned first, count;
  gs_layout_t *l = &s->core.work->device[dev].layout;
  gs_gi_t *gi = gs_layout_find_gi(l, *gi_id);
  rc = gi ? green_range(s, dev, gi, NULL, &first, &count, err) : GS_OK;
  if (rc != GS_OK)
    gs__swcore_gi_destroy(be, dev, *gi_id, NULL);
  return rc;
}

/* Records how each GPU's instances run, so that every later process
 * agrees. */
static int soft_commit(gs_backend_t *be, gs_error_t *err) {
  gs__soft_t *s = soft_of(be);
  for (unsigned d = 0; s->core.in_txn && d < s->core.n_dev; d++) {
    doc_dev_t *dd = &s->core.work->device[d];
    gs_soft_isolation_t mode = GS_SOFT_ISOLATION_MPS;
    if (dd->layout.n_gi == 0)
      dd->isolation[0] = '\0';
    else if (!dd->isolation[0] && device_mode(s, d, dd, &mode, NULL) == GS_OK)
      snprintf(dd->isolation, sizeof dd->isolation, "%s", mode_name(mode));
  }
  return gs__swcore_commit(be, err);
}

/* ---- confinement ------------------------------------------------------- */

/* The part of the GI's memory this process gets: what it asks for (0: all
 * that is left), at most what the GI's other live processes leave, in
 * whole MiB. GS_EBUSY naming the holders when nothing is left. */
static int memory_share(gs__soft_t *s, unsigned dev, const gs_gi_t *gi,
                        const gs_gi_profile_t *gp, uint64_t request,
                        uint64_t *share, gs_error_t *err) {
  gs__procset_t *ps = malloc(sizeof *ps);
  if (!ps)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  s->core.hooks->procs(&s->core, dev, gi, true, ps);
  uint64_t quota = gp->memory_mib * MIB, held = 0;
  pid_t self = getpid();
  for (size_t i = 0; i < ps->n; i++)
    if (ps->pid[i] != self)
      held += ps->reserved[i];
  uint64_t left = quota > held ? (quota - held) / MIB * MIB : 0;
  uint64_t want = request ? (request + MIB - 1) / MIB * MIB : left;
  *share = want < left ? want : left;
  int rc = GS_OK;
  if (*share == 0) {
    char who[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < ps->n && len < sizeof who; i++) {
      if (ps->pid[i] == self || !ps->reserved[i])
        continue;
      char comm[64];
      gs__proc_comm(ps->pid[i], comm, sizeof comm);
      len += (size_t)snprintf(
          who + len, sizeof who - len, "%spid %ld (%s, %" PRIu64 " MiB)",
          len ? ", " : "", (long)ps->pid[i], comm, ps->reserved[i] / MIB);
    }
    rc = gs_error_set(err, GS_EBUSY,
                      "GPU instance %u (%s) on %s has no memory left for "
                      "another process: its %" PRIu64 " MiB are held by %s",
                      gi->id, gp->name, s->core.dev[dev].label, gp->memory_mib,
                      who[0] ? who : "its other processes");
  }
  free(ps);
  return rc;
}

typedef struct confine_args_s {
  unsigned dev, gi_id, ci_id;
  gs_confinement_t *out;
} confine_args_t;

/* MPS: the GPU's daemon runs and the process's SM percentage is known. */
static int prepare_mps(gs__soft_t *s, unsigned dev, unsigned sms,
                       unsigned *percent, gs_error_t *err) {
  const gs__soft_gpu_t *g = &s->gpu[dev];
  int rc = gs__soft_read_sms(s, err);
  if (rc == GS_OK && g->sms == 0)
    rc = gs_error_set(err, GS_EDRIVER,
                      "CUDA does not list GPU %u (%s): its SM count is "
                      "unknown",
                      g->nvml_index, g->uuid);
  if (rc != GS_OK) {
    gs_error_prefix(err, "capping SMs on %s: ", s->core.dev[dev].label);
    return rc;
  }
  *percent = gs__mps_percentage(sms, g->sms);
  return gs__mps_ensure(s, dev, err);
}

static void set_env(gs__soft_t *s, unsigned dev, const gs_gi_t *gi,
                    const gs_ci_t *ci, const char *profile,
                    gs_soft_isolation_t mode, unsigned sms, unsigned percent,
                    uint64_t share, unsigned sm_first, gs_confinement_t *out) {
  const char *uuid = s->gpu[dev].uuid;
  char pipe[GS__PATH_MAX], log[GS__PATH_MAX];
  gs__env_add(out, "GPUSLICE_BACKEND", "soft");
  gs__env_add(out, "GPUSLICE_DEVICE", "%u", dev);
  gs__env_add(out, "GPUSLICE_GI_ID", "%u", gi->id);
  gs__env_add(out, "GPUSLICE_CI_ID", "%u", ci->id);
  gs__env_add(out, "GPUSLICE_INSTANCE_UUID", "%s", ci->uuid);
  gs__env_add(out, "GPUSLICE_PROFILE", "%s", profile);
  gs__env_add(out, "GPUSLICE_ISOLATION", "%s", mode_name(mode));
  gs__env_add(out, "GPUSLICE_MEMORY_LIMIT_BYTES", "%" PRIu64, share);
  gs__env_add(out, "CUDA_VISIBLE_DEVICES", "%s", uuid);
  gs__env_add(out, "NVIDIA_VISIBLE_DEVICES", "%s", uuid);
  if (mode != GS_SOFT_ISOLATION_MPS) {
    gs__mps_off_dir(s, pipe, sizeof pipe);
    gs__env_add(out, "CUDA_MPS_PIPE_DIRECTORY", "%s", pipe);
  }
  if (mode == GS_SOFT_ISOLATION_GREEN) {
    /* Nothing enforces it from outside: the engine (gpuslice worker) and
     * green-aware programs run their kernels on these SMs. */
    gs__env_add(out, "GPUSLICE_SMS", "%u", sms);
    gs__env_add(out, "GPUSLICE_SM_PARTITION", "%u:%u", sm_first, sms);
  }
  if (mode != GS_SOFT_ISOLATION_MPS)
    return;
  gs__mps_dirs(s, dev, pipe, log, NULL); /* checked by gs__mps_ensure */
  gs__env_add(out, "GPUSLICE_SMS", "%u", sms);
  gs__env_add(out, "CUDA_MPS_PIPE_DIRECTORY", "%s", pipe);
  gs__env_add(out, "CUDA_MPS_LOG_DIRECTORY", "%s", log);
  gs__env_add(out, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "%u", percent);
  /* Device 0 of the client: the only one CUDA_VISIBLE_DEVICES leaves. */
  gs__env_add(out, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "0=%" PRIu64 "M",
              share / MIB);
}

/* A process hosting several of the GPU's instances (green isolation,
 * `run --group`): the GPU without MPS, no instance's identity or memory
 * share, registered in none (each instance's SMs come another way). */
static int confine_group(gs__soft_t *s, unsigned dev, gs_soft_isolation_t mode,
                         gs_confinement_t *out, gs_error_t *err) {
  char pipe[GS__PATH_MAX];
  if (mode != GS_SOFT_ISOLATION_GREEN)
    return gs_error_set(err, GS_EINVAL,
                        "a process hosting several instances (run --group) "
                        "needs green isolation; %s runs its instances under "
                        "%s",
                        s->core.dev[dev].label, mode_name(mode));
  memset(out, 0, sizeof *out);
  gs__env_add(out, "GPUSLICE_BACKEND", "soft");
  gs__env_add(out, "GPUSLICE_DEVICE", "%u", dev);
  gs__env_add(out, "GPUSLICE_ISOLATION", "%s", mode_name(mode));
  gs__env_add(out, "CUDA_VISIBLE_DEVICES", "%s", s->gpu[dev].uuid);
  gs__env_add(out, "NVIDIA_VISIBLE_DEVICES", "%s", s->gpu[dev].uuid);
  gs__mps_off_dir(s, pipe, sizeof pipe);
  gs__env_add(out, "CUDA_MPS_PIPE_DIRECTORY", "%s", pipe);
  return GS_OK;
}

static int confine_locked(gs__swcore_t *c, gs_state_doc_t *doc, void *arg,
                          gs_error_t *err) {
  gs__soft_t *s = (gs__soft_t *)c;
  const confine_args_t *a = arg;
  const gs_catalog_t *cat = &c->dev[a->dev].cat;
  gs_gi_t *gi =
      gs__swcore_find_gi(c, a->dev, &doc->device[a->dev].layout, a->gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  gs_ci_t *ci = gs_gi_find_ci(gi, a->ci_id);
  if (!ci)
    return gs_error_set(
        err, GS_ENOTFOUND,
        "no compute instance %u in GPU instance %u on device %u (it has %u)",
        a->ci_id, a->gi_id, a->dev, gi->n_ci);
  const gs_gi_profile_t *gp = gs_catalog_gi(cat, gi->profile_id);
  const gs_ci_profile_t *cp = gs_catalog_ci(gp, ci->profile_id);
  if (!cp) /* gs_layout_validate has already checked this */
    return gs_error_set(err, GS_ECORRUPT, "GPU instance %u: unknown profile",
                        a->gi_id);
  gs_soft_isolation_t mode = GS_SOFT_ISOLATION_MPS; /* set by device_mode */
  uint64_t share = 0;
  unsigned sms = ci_sms(cat, gp, cp), percent = 100;
  int rc = device_mode(s, a->dev, &doc->device[a->dev], &mode, err);
  if (rc == GS_OK && a->out->group)
    return confine_group(s, a->dev, mode, a->out, err);
  if (rc == GS_OK)
    rc = memory_share(s, a->dev, gi, gp, a->out->memory_request_bytes, &share,
                      err);
  unsigned sm_first = 0;
  if (rc == GS_OK && mode == GS_SOFT_ISOLATION_MPS)
    rc = prepare_mps(s, a->dev, sms, &percent, err);
  if (rc == GS_OK && mode == GS_SOFT_ISOLATION_GREEN)
    rc = green_range(s, a->dev, gi, ci, &sm_first, &sms, err);
  if (rc == GS_OK)
    rc = gs__procs_register(c->state_dir, gi, a->ci_id, share, err);
  if (rc != GS_OK)
    return rc;
  char name[GS_PROFILE_NAME_MAX + 8];
  gs_catalog_device_name(gp, cp, name, sizeof name);
  memset(a->out, 0, sizeof *a->out);
  set_env(s, a->dev, gi, ci, name, mode, sms, percent, share, sm_first, a->out);
  return GS_OK;
}

typedef struct hold_args_s {
  unsigned dev, gi_id, ci_id;
  pid_t pid;
  bool on;
} hold_args_t;

static int hold_locked(gs__swcore_t *c, gs_state_doc_t *doc, void *arg,
                       gs_error_t *err) {
  gs__soft_t *s = (gs__soft_t *)c;
  const hold_args_t *a = arg;
  gs_gi_t *gi =
      gs__swcore_find_gi(c, a->dev, &doc->device[a->dev].layout, a->gi_id, err);
  if (!gi)
    return a->on ? GS_ENOTFOUND : GS_OK; /* destroyed: nothing to hold */
  gs__procs_release(c->state_dir, gi->uuid, a->pid);
  if (!a->on)
    return GS_OK;
  const gs_gi_profile_t *gp =
      gs_catalog_gi(&c->dev[a->dev].cat, gi->profile_id);
  gs_soft_isolation_t mode = GS_SOFT_ISOLATION_MPS;
  uint64_t share = 0;
  int rc = gp ? device_mode(s, a->dev, &doc->device[a->dev], &mode, err)
              : gs_error_set(err, GS_ECORRUPT,
                             "GPU instance %u: unknown profile", a->gi_id);
  if (rc == GS_OK && mode != GS_SOFT_ISOLATION_GREEN)
    rc = gs_error_set(err, GS_EINVAL,
                      "only a GPU under green isolation has processes "
                      "serving several instances (%s runs under %s)",
                      s->core.dev[a->dev].label, mode_name(mode));
  if (rc == GS_OK)
    rc = memory_share(s, a->dev, gi, gp, 0, &share, err);
  if (rc == GS_OK)
    rc = gs__procs_hold(c->state_dir, gi, a->ci_id, a->pid, share, err);
  return rc;
}

static int soft_hold(gs_backend_t *be, unsigned dev, unsigned gi_id,
                     unsigned ci_id, pid_t pid, bool on, gs_error_t *err) {
  gs__soft_t *s = soft_of(be);
  int rc = gs__swcore_check_dev(&s->core, dev, err);
  if (rc != GS_OK)
    return rc;
  hold_args_t a = {dev, gi_id, ci_id, pid, on};
  return gs__swcore_locked(&s->core, hold_locked, &a, err);
}

static int soft_confine(gs_backend_t *be, unsigned dev, unsigned gi_id,
                        unsigned ci_id, gs_confinement_t *out,
                        gs_error_t *err) {
  gs__soft_t *s = soft_of(be);
  int rc = gs__swcore_check_dev(&s->core, dev, err);
  if (rc != GS_OK)
    return rc;
  confine_args_t a = {dev, gi_id, ci_id, out};
  return gs__swcore_locked(&s->core, confine_locked, &a, err);
}

/* ---- enforcement ------------------------------------------------------- */

/* The way instances run here: the option, else what the GPUs record
 * (MPS unless every GPU with instances records one other mode). */
static gs_soft_isolation_t overall_mode(gs__soft_t *s, char *others,
                                        size_t size) {
  const gs_state_doc_t *doc = NULL;
  unsigned n[4] = {0};
  others[0] = '\0';
  if (gs__swcore_read(&s->core, &doc, NULL) != GS_OK)
    doc = NULL;
  for (unsigned d = 0; doc && d < s->core.n_dev; d++)
    if (doc->device[d].isolation[0])
      n[mode_of(doc->device[d].isolation)]++;
  gs_soft_isolation_t mode = s->isolation;
  if (mode == GS_SOFT_ISOLATION_DEFAULT)
    mode = n[GS_SOFT_ISOLATION_MPS] == 0 && n[GS_SOFT_ISOLATION_PROCESS] > 0 &&
                   n[GS_SOFT_ISOLATION_GREEN] == 0
               ? GS_SOFT_ISOLATION_PROCESS
           : n[GS_SOFT_ISOLATION_MPS] == 0 && n[GS_SOFT_ISOLATION_GREEN] > 0 &&
                   n[GS_SOFT_ISOLATION_PROCESS] == 0
               ? GS_SOFT_ISOLATION_GREEN
               : GS_SOFT_ISOLATION_MPS;
  size_t len = 0;
  for (unsigned d = 0; doc && d < s->core.n_dev && len < size; d++)
    if (doc->device[d].isolation[0] &&
        strcmp(doc->device[d].isolation, mode_name(mode)) != 0)
      len +=
          (size_t)snprintf(others + len, size - len, "%s%u", len ? "," : "", d);
  return mode;
}

static void soft_enforcement(gs_backend_t *be, gs_enforcement_t *out) {
  gs__soft_t *s = soft_of(be);
  char others[64];
  gs_soft_isolation_t mode = overall_mode(s, others, sizeof others);
  char note[128] = "";
  if (others[0])
    snprintf(note, sizeof note, " (devices %s run under another isolation)",
             others);
  if (mode == GS_SOFT_ISOLATION_PROCESS) {
    snprintf(out->compute, sizeof out->compute,
             "time-sliced: each process may use every SM of its GPU "
             "(--isolation process, no MPS)%.48s",
             note);
    snprintf(out->memory, sizeof out->memory,
             "not enforced by the driver: GPUSLICE_MEMORY_LIMIT_BYTES tells "
             "each process its share of the instance");
    snprintf(out->faults, sizeof out->faults,
             "isolated: each process has its own GPU context (no MPS)");
    return;
  }
  if (mode == GS_SOFT_ISOLATION_GREEN) {
    snprintf(out->compute, sizeof out->compute,
             "disjoint SMs per instance: a green context each, all of a GPU's "
             "instances in one worker process (--isolation green, no "
             "MPS)%.48s",
             note);
    snprintf(out->memory, sizeof out->memory,
             "not enforced: the instances share their process's GPU memory; "
             "the engine refuses what the GPU does not have free and plans "
             "within the model's memory budget, nothing more");
    snprintf(out->faults, sizeof out->faults,
             "shared: one process (one fault domain) per GPU holds every "
             "instance; a fatal fault restarts them all");
    return;
  }
  if (gs__mps_static_partitions(s))
    snprintf(out->compute, sizeof out->compute,
             "SMs capped per process at the instance's share (MPS "
             "active-thread percentage); not disjoint: gpuslice does not use "
             "MPS static partitions yet%.48s",
             note);
  else
    snprintf(out->compute, sizeof out->compute,
             "SMs capped per process at the instance's share (MPS "
             "active-thread percentage); not disjoint: this driver has no MPS "
             "static partitions%.48s",
             note);
  snprintf(out->memory, sizeof out->memory,
           "hard per process (MPS pinned device memory limit); an instance's "
           "quota is split among its processes at start");
  snprintf(out->faults, sizeof out->faults,
           "shared on a GPU under MPS: a fatal fault in one client ends every "
           "client on that GPU (measured on H200, driver 580)");
}

/* ---- close ------------------------------------------------------------- */

static void soft_close(gs_backend_t *be) {
  gs__soft_t *s = soft_of(be);
  gs__swcore_release(&s->core);
  gs__nvml_close(&s->nvml);
  free(s);
}

const gs_backend_ops_t gs__soft_ops = {
    .name = "soft",
    .device_count = gs__swcore_device_count,
    .device_get = soft_device_get,
    .begin = gs__swcore_begin,
    .commit = soft_commit,
    .abort = gs__swcore_abort,
    .set_mig_mode = gs__swcore_set_mig_mode,
    .gi_create = soft_gi_create,
    .gi_destroy = gs__swcore_gi_destroy,
    .ci_create = gs__swcore_ci_create,
    .ci_destroy = gs__swcore_ci_destroy,
    .processes = gs__swcore_processes,
    .enforcement = soft_enforcement,
    .confine = soft_confine,
    .hold = soft_hold,
    .close = soft_close,
};
