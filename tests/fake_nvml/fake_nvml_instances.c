/* TEST-ONLY fake NVML (see fake_nvml.c): GPU and compute instances with
 * the driver's rules, MIG device handles and the processes on them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_nvml_int.h"

/* Compute-instance profiles (ID = index: 1c=0 2c=1 3c=2 4c=3 7c=4) allowed
 * in a GI of g compute slices: {ID, slices, max, starts}. */
typedef struct cigeo_s {
  unsigned id, c, max;
  uint32_t starts;
} cigeo_t;

static unsigned ci_rules(unsigned g, cigeo_t out[5]) {
  static const cigeo_t g1[] = {{0, 1, 1, 0x1}};
  static const cigeo_t g2[] = {{0, 1, 2, 0x3}, {1, 2, 1, 0x1}};
  static const cigeo_t g3[] = {{0, 1, 3, 0x7}, {1, 2, 1, 0x1}, {2, 3, 1, 0x1}};
  static const cigeo_t g4[] = {{0, 1, 4, 0xf}, {1, 2, 2, 0x5}, {3, 4, 1, 0x1}};
  static const cigeo_t g7[] = {{0, 1, 7, 0x7f},
                               {1, 2, 3, 0x15},
                               {2, 3, 2, 0x11},
                               {3, 4, 1, 0x1},
                               {4, 7, 1, 0x1}};
  const cigeo_t *src = g == 1   ? g1
                       : g == 2 ? g2
                       : g == 3 ? g3
                       : g == 4 ? g4
                                : g7;
  unsigned n = g == 1 ? 1 : g == 2 ? 2 : g == 3 || g == 4 ? 3 : 5;
  memcpy(out, src, n * sizeof *src);
  return n;
}

/* ---- GPU instances ----------------------------------------------------- */

static unsigned used_memory(fgpu_t *g) {
  unsigned mask = 0;
  for (unsigned i = 0; i < MAX_GI; i++)
    if (g->gi[i].used)
      mask |= ((1u << g->gi[i].geo->mem) - 1) << g->gi[i].start;
  return mask;
}

static unsigned used_compute(fgpu_t *g) {
  unsigned n = 0;
  for (unsigned i = 0; i < MAX_GI; i++)
    if (g->gi[i].used)
      n += g->gi[i].geo->g;
  return n;
}

static unsigned count_of(fgpu_t *g, const geo_t *geo) {
  unsigned n = 0;
  for (unsigned i = 0; i < MAX_GI; i++)
    n += g->gi[i].used && g->gi[i].geo == geo;
  return n;
}

/* What the driver checks before creating a GI of geo at start. */
static nvmlReturn_t gi_fits(fgpu_t *g, const geo_t *geo, unsigned start) {
  if (start >= 32 || !(geo->starts & (1u << start)))
    return NVML_ERROR_INVALID_ARGUMENT;
  unsigned want = ((1u << geo->mem) - 1) << start;
  if (count_of(g, geo) >= geo->max || (used_memory(g) & want) ||
      used_compute(g) + geo->g > g->m->geometry->compute_slices ||
      gi_count(g->gi) >= MAX_GI)
    return NVML_ERROR_INSUFFICIENT_RESOURCES;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceRemainingCapacity(nvmlDevice_t dev,
                                                              unsigned id,
                                                              unsigned *count) {
  fgpu_t *g = gpu_of(dev);
  const geo_t *geo = g ? geo_by_id(g->m, id) : NULL;
  nvmlReturn_t recorded;
  if (g && count && fixture_capacity(g, id, count, &recorded))
    return recorded;
  if (!geo || !count)
    return NVML_ERROR_INVALID_ARGUMENT;
  fgpu_t sim = *g; /* place greedily, lowest start first */
  unsigned n = 0;
  for (unsigned s = 0; s < 32 && sim.cur == NVML_DEVICE_MIG_ENABLE; s++) {
    if (gi_fits(&sim, geo, s) != NVML_SUCCESS)
      continue;
    unsigned slot = 0;
    while (sim.gi[slot].used)
      slot++;
    sim.gi[slot] = (fgi_t){1, 100 + n, s, 0, geo, {{0}}};
    n++;
  }
  *count = n;
  return NVML_SUCCESS;
}

static int create_fails(void) {
  return fk.fail_at && ++fk.creates == fk.fail_at;
}

#ifndef FAKE_NVML_NO_PLACEMENT
EXPORT nvmlReturn_t nvmlDeviceCreateGpuInstanceWithPlacement(
    nvmlDevice_t dev, unsigned id, const nvmlGpuInstancePlacement_t *pl,
    nvmlGpuInstance_t *out) {
  fgpu_t *g = gpu_of(dev);
  const geo_t *geo = g ? geo_by_id(g->m, id) : NULL;
  if (!geo || !pl || !out)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (g->cur != NVML_DEVICE_MIG_ENABLE)
    return NVML_ERROR_NOT_SUPPORTED;
  if (fk.no_permission)
    return NVML_ERROR_NO_PERMISSION;
  if (create_fails())
    return NVML_ERROR_UNKNOWN;
  if (pl->size != geo->mem)
    return NVML_ERROR_INVALID_ARGUMENT;
  nvmlReturn_t r = gi_fits(g, geo, pl->start);
  if (r != NVML_SUCCESS)
    return r;
  unsigned gid = 1, slot = 0;
  while (gi_find(g, gid))
    gid++;
  while (g->gi[slot].used)
    slot++;
  g->gi[slot] = (fgi_t){1, gid, pl->start, ++fk.serial, geo, {{0}}};
  *out = gi_handle(dev->gpu, gid);
  state_save();
  return NVML_SUCCESS;
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstances(nvmlDevice_t dev, unsigned id,
                                              nvmlGpuInstance_t *out,
                                              unsigned *count) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !geo_by_id(g->m, id) || !out || !count)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (g->cur != NVML_DEVICE_MIG_ENABLE)
    return NVML_ERROR_NOT_SUPPORTED;
  unsigned n = 0;
  for (unsigned gid = 1; gid <= MAX_GI; gid++) {
    fgi_t *gi = gi_find(g, gid);
    if (gi && gi->geo->id == id)
      out[n++] = gi_handle(dev->gpu, gid);
  }
  *count = n;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceById(nvmlDevice_t dev, unsigned id,
                                                 nvmlGpuInstance_t *out) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !out)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (g->cur != NVML_DEVICE_MIG_ENABLE)
    return NVML_ERROR_NOT_SUPPORTED;
  if (!gi_find(g, id))
    return NVML_ERROR_NOT_FOUND;
  *out = gi_handle(dev->gpu, id);
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t h,
                                           nvmlGpuInstanceInfo_t *info) {
  fgpu_t *g;
  fgi_t *gi = gi_of(h, &g);
  if (!gi || !info)
    return NVML_ERROR_INVALID_ARGUMENT;
  *info = (nvmlGpuInstanceInfo_t){
      &h_gpu[h->gpu], gi->id, gi->geo->id, {gi->start, gi->geo->mem}};
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlGpuInstanceDestroy(nvmlGpuInstance_t h) {
  fgpu_t *g;
  fgi_t *gi = gi_of(h, &g);
  if (!gi)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (fk.no_permission)
    return NVML_ERROR_NO_PERMISSION;
  if (ci_count(gi) > 0 || g->busy_pid[gi->id])
    return NVML_ERROR_IN_USE;
  memset(gi, 0, sizeof *gi);
  state_save();
  return NVML_SUCCESS;
}

/* ---- compute instances ------------------------------------------------- */

static const cigeo_t *ci_rule(const fgi_t *gi, unsigned id, cigeo_t buf[5]) {
  unsigned n = ci_rules(gi->geo->g, buf);
  for (unsigned i = 0; i < n; i++)
    if (buf[i].id == id)
      return &buf[i];
  return NULL;
}

static nvmlReturn_t ci_profile(nvmlGpuInstance_t h, unsigned index,
                               unsigned eng,
                               nvmlComputeInstanceProfileInfo_v3_t *v3) {
  fgpu_t *g;
  fgi_t *gi = gi_of(h, &g);
  cigeo_t buf[5];
  if (!gi || index >= NVML_COMPUTE_INSTANCE_PROFILE_COUNT || eng != 0)
    return NVML_ERROR_INVALID_ARGUMENT;
  nvmlReturn_t recorded;
  if (fixture_ci_profile(g->m, gi->geo->id, index, v3, &recorded))
    return recorded;
  const cigeo_t *r = ci_rule(gi, index, buf);
  if (!r)
    return NVML_ERROR_NOT_SUPPORTED;
  const prof_t *p = prof_of(g->m, gi->geo);
  *v3 = (nvmlComputeInstanceProfileInfo_v3_t){
      0,     r->id,  r->c, r->max,  p->sms * r->c / gi->geo->g,
      p->ce, p->dec, 0,    p->jpeg, p->ofa,
      "",    0};
  if (r->c == gi->geo->g)
    snprintf(v3->name, sizeof v3->name, "MIG %s", p->name);
  else
    snprintf(v3->name, sizeof v3->name, "MIG %uc.%s", r->c, p->name);
  return NVML_SUCCESS;
}

#ifdef FAKE_NVML_LEGACY
EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfo(
    nvmlGpuInstance_t h, unsigned index, unsigned eng,
    nvmlComputeInstanceProfileInfo_t *info) {
  nvmlComputeInstanceProfileInfo_v3_t v3;
  nvmlReturn_t r =
      info ? ci_profile(h, index, eng, &v3) : NVML_ERROR_INVALID_ARGUMENT;
  if (r == NVML_SUCCESS)
    *info = (nvmlComputeInstanceProfileInfo_t){v3.id,
                                               v3.sliceCount,
                                               v3.instanceCount,
                                               v3.multiprocessorCount,
                                               v3.sharedCopyEngineCount,
                                               v3.sharedDecoderCount,
                                               v3.sharedEncoderCount,
                                               v3.sharedJpegCount,
                                               v3.sharedOfaCount};
  return r;
}
#else
EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfoV(
    nvmlGpuInstance_t h, unsigned index, unsigned eng,
    nvmlComputeInstanceProfileInfo_v2_t *info) {
  nvmlComputeInstanceProfileInfo_v3_t v3;
  if (!info)
    return NVML_ERROR_INVALID_ARGUMENT;
  unsigned version = info->version;
  if (version != nvmlComputeInstanceProfileInfo_v2 &&
      (version != nvmlComputeInstanceProfileInfo_v3 || fk.struct_v2_only))
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  nvmlReturn_t r = ci_profile(h, index, eng, &v3);
  if (r != NVML_SUCCESS)
    return r;
  v3.version = version;
  /* v2 is v3 without the trailing capabilities. */
  memcpy(info, &v3,
         version == nvmlComputeInstanceProfileInfo_v3 ? sizeof v3
                                                      : sizeof *info);
  return r;
}
#endif

EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstancePossiblePlacements(
    nvmlGpuInstance_t h, unsigned id, nvmlComputeInstancePlacement_t *out,
    unsigned *count) {
  fgpu_t *g;
  fgi_t *gi = gi_of(h, &g);
  cigeo_t buf[5];
  const cigeo_t *r = gi ? ci_rule(gi, id, buf) : NULL;
  nvmlReturn_t recorded;
  if (gi && count && !fk.no_permission &&
      fixture_ci_placements(g->m, gi->geo->id, id, out, count, &recorded))
    return recorded;
  if (!gi || !count)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (!r)
    return NVML_ERROR_NOT_SUPPORTED;
  if (fk.no_permission)
    return NVML_ERROR_NO_PERMISSION;
  unsigned n = 0;
  for (unsigned s = 0; s < 32; s++)
    if (r->starts & (1u << s)) {
      if (out)
        out[n] = (nvmlComputeInstancePlacement_t){s, r->c};
      n++;
    }
  *count = n;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlGpuInstanceCreateComputeInstanceWithPlacement(
    nvmlGpuInstance_t h, unsigned id, const nvmlComputeInstancePlacement_t *pl,
    nvmlComputeInstance_t *out) {
  fgpu_t *g;
  fgi_t *gi = gi_of(h, &g);
  cigeo_t buf[5];
  if (!gi || !pl || !out)
    return NVML_ERROR_INVALID_ARGUMENT;
  const cigeo_t *r = ci_rule(gi, id, buf);
  if (!r)
    return NVML_ERROR_NOT_SUPPORTED;
  if (fk.no_permission)
    return NVML_ERROR_NO_PERMISSION;
  if (create_fails())
    return NVML_ERROR_UNKNOWN;
  if (pl->size != r->c || pl->start >= 32 || !(r->starts & (1u << pl->start)))
    return NVML_ERROR_INVALID_ARGUMENT;
  unsigned used = 0, same = 0, cid = 0, slot = 0;
  for (unsigned i = 0; i < MAX_CI; i++) {
    const fci_t *c = &gi->ci[i];
    if (!c->used)
      continue;
    cigeo_t b2[5];
    used |= ((1u << ci_rule(gi, c->prof, b2)->c) - 1) << c->start;
    same += c->prof == id;
  }
  if (same >= r->max || (used & (((1u << r->c) - 1) << pl->start)))
    return NVML_ERROR_INSUFFICIENT_RESOURCES;
  while (ci_find(gi, cid))
    cid++;
  while (gi->ci[slot].used)
    slot++;
  gi->ci[slot] = (fci_t){1, cid, id, pl->start, ++fk.serial};
  *out = ci_handle(h->gpu, gi->id, cid);
  state_save();
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlGpuInstanceGetComputeInstances(
    nvmlGpuInstance_t h, unsigned id, nvmlComputeInstance_t *out,
    unsigned *count) {
  fgpu_t *g;
  fgi_t *gi = gi_of(h, &g);
  if (!gi || !out || !count)
    return NVML_ERROR_INVALID_ARGUMENT;
  unsigned n = 0;
  for (unsigned cid = 0; cid < MAX_CI; cid++) {
    fci_t *c = ci_find(gi, cid);
    if (c && c->prof == id)
      out[n++] = ci_handle(h->gpu, gi->id, cid);
  }
  *count = n;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t SYM(nvmlComputeInstanceGetInfo_v2,
                        nvmlComputeInstanceGetInfo)(
    nvmlComputeInstance_t h, nvmlComputeInstanceInfo_t *info) {
  fgpu_t *g;
  fgi_t *gi;
  fci_t *ci = ci_of(h, &g, &gi);
  cigeo_t buf[5];
  if (!ci || !info)
    return NVML_ERROR_INVALID_ARGUMENT;
  *info =
      (nvmlComputeInstanceInfo_t){&h_gpu[h->gpu],
                                  &h_gi[h->gpu][gi->id],
                                  ci->id,
                                  ci->prof,
                                  {ci->start, ci_rule(gi, ci->prof, buf)->c}};
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlComputeInstanceDestroy(nvmlComputeInstance_t h) {
  fgpu_t *g;
  fgi_t *gi;
  fci_t *ci = ci_of(h, &g, &gi);
  if (!ci)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (fk.no_permission)
    return NVML_ERROR_NO_PERMISSION;
  if (g->busy_pid[gi->id] && ci == ci_first(gi))
    return NVML_ERROR_IN_USE;
  memset(ci, 0, sizeof *ci);
  state_save();
  return NVML_SUCCESS;
}

/* ---- MIG devices and processes ----------------------------------------- */

EXPORT nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t dev,
                                                   unsigned *count) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !count)
    return NVML_ERROR_INVALID_ARGUMENT;
  *count =
      g->cur == NVML_DEVICE_MIG_ENABLE ? g->m->geometry->compute_slices : 0;
  return NVML_SUCCESS;
}

/* MIG device i is the i-th compute instance by (GI ID, CI ID). */
EXPORT nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t dev,
                                                        unsigned index,
                                                        nvmlDevice_t *out) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !out || index >= g->m->geometry->compute_slices)
    return NVML_ERROR_INVALID_ARGUMENT;
  unsigned k = 0;
  for (unsigned gid = 1; gid <= MAX_GI; gid++) {
    fgi_t *gi = gi_find(g, gid);
    for (unsigned cid = 0; gi && cid < MAX_CI; cid++) {
      if (!ci_find(gi, cid) || k++ != index)
        continue;
      h_mig[dev->gpu][gid][cid] = (struct nvmlDevice_st){dev->gpu, gid, cid};
      *out = &h_mig[dev->gpu][gid][cid];
      return NVML_SUCCESS;
    }
  }
  return NVML_ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t dev, unsigned *id) {
  fgpu_t *g;
  fgi_t *gi;
  if (gpu_of(dev))
    return NVML_ERROR_NOT_SUPPORTED;
  if (!mig_of(dev, &g, &gi) || !id)
    return NVML_ERROR_INVALID_ARGUMENT;
  *id = gi->id;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t dev,
                                                   unsigned *id) {
  fgpu_t *g;
  fgi_t *gi;
  fci_t *ci;
  if (gpu_of(dev))
    return NVML_ERROR_NOT_SUPPORTED;
  if (!(ci = mig_of(dev, &g, &gi)) || !id)
    return NVML_ERROR_INVALID_ARGUMENT;
  *id = ci->id;
  return NVML_SUCCESS;
}

/* FAKE_NVML_PROCS entries (PID[:MIB[:SM]]) of GPU gpu whose MIG mode is
 * off, appended to found (room for max); sm[k] gets entry k's SM percent
 * (0 when not given) when sm is not NULL. */
static unsigned env_procs(unsigned gpu, const fgpu_t *g,
                          nvmlProcessInfo_t *found, unsigned *sm, unsigned n,
                          unsigned max) {
  const char *p = getenv("FAKE_NVML_PROCS");
  while (p && *p && n < max && g->cur == NVML_DEVICE_MIG_DISABLE) {
    unsigned at = 0, pid = 0, mib = 512, pct = 0;
    int len = 0;
    if (sscanf(p, "%u:%u%n", &at, &pid, &len) != 2)
      break;
    p += len;
    if (*p == ':')
      mib = (unsigned)strtoul(p + 1, (char **)&p, 10);
    if (*p == ':')
      pct = (unsigned)strtoul(p + 1, (char **)&p, 10);
    if (at == gpu) {
      if (sm)
        sm[n] = pct;
      found[n++] =
          (nvmlProcessInfo_t){pid, (unsigned long long)mib << 20, NO_ID, NO_ID};
    }
    p = *p == ',' ? p + 1 : NULL;
  }
  return n;
}

/* On a GPU: every busy GI's process; on a MIG device: the process of its
 * GI when it is the GI's first compute instance. */
EXPORT nvmlReturn_t SYM(nvmlDeviceGetComputeRunningProcesses_v3,
                        nvmlDeviceGetComputeRunningProcesses_v2)(
    nvmlDevice_t dev, unsigned *count, nvmlProcessInfo_t *out) {
  fgpu_t *g = gpu_of(dev);
  fgi_t *mgi = NULL;
  fci_t *mci = NULL;
  if (!count || (!g && !(mci = mig_of(dev, &g, &mgi))))
    return NVML_ERROR_INVALID_ARGUMENT;
  nvmlProcessInfo_t found[MAX_GI + 16];
  unsigned n = 0;
  for (unsigned gid = 1; gid <= MAX_GI; gid++) {
    fgi_t *gi = gi_find(g, gid);
    if (!gi || !g->busy_pid[gid] || (mgi && (gi != mgi || mci != ci_first(gi))))
      continue;
    fci_t *first = ci_first(gi);
    found[n++] = (nvmlProcessInfo_t){g->busy_pid[gid], 512ull << 20, gid,
                                     first ? first->id : NO_ID};
  }
  if (!mgi)
    n = env_procs(dev->gpu, g, found, NULL, n, MAX_GI + 16);
  if (*count < n) {
    *count = n;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  if (n && !out)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (n)
    memcpy(out, found, n * sizeof *found);
  *count = n;
  return NVML_SUCCESS;
}

/* One sample per FAKE_NVML_PROCS process with a non-zero SM percent, time
 * stamped now (microseconds), as NVML returns those of the last sample
 * period newer than lastSeen. MIG devices, and GPUs in MIG mode, answer
 * NOT_SUPPORTED (a choice of this fake: what a real driver answers there
 * is not recorded in tests/fixtures). */
EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(
    nvmlDevice_t dev, nvmlProcessUtilizationSample_t *out, unsigned *count,
    unsigned long long last_seen) {
  fgpu_t *g = gpu_of(dev), *mg;
  fgi_t *mgi;
  if (!count || (!g && !mig_of(dev, &mg, &mgi)))
    return NVML_ERROR_INVALID_ARGUMENT;
  if (!g || g->cur != NVML_DEVICE_MIG_DISABLE)
    return NVML_ERROR_NOT_SUPPORTED;
  nvmlProcessInfo_t procs[16];
  unsigned sm[16], n = env_procs(dev->gpu, g, procs, sm, 0, 16), k = 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long long now = (unsigned long long)ts.tv_sec * 1000000ull +
                           (unsigned long long)ts.tv_nsec / 1000;
  nvmlProcessUtilizationSample_t found[16];
  for (unsigned i = 0; i < n && now > last_seen; i++)
    if (sm[i])
      found[k++] =
          (nvmlProcessUtilizationSample_t){procs[i].pid, now, sm[i], 0, 0, 0};
  if (k == 0)
    return NVML_ERROR_NOT_FOUND;
  if (!out || *count < k) {
    *count = k;
    return NVML_ERROR_INSUFFICIENT_SIZE;
  }
  memcpy(out, found, k * sizeof *found);
  *count = k;
  return NVML_SUCCESS;
}
