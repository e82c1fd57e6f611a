/* The mig backend's view of a GPU, read from NVML: the profile catalog
 * (NVML wins over the reference table; the table fills what NVML does not
 * say) and the current layout with its MIG device UUIDs. */
#include <stdio.h>
#include <string.h>

#include "backend/mig_int.h"

#define MIG_MAX_PLACEMENTS 32

const char *gs__mig_short_name(const gs__mig_dev_t *d) {
  return strncmp(d->name, "NVIDIA ", 7) == 0 ? d->name + 7 : d->name;
}

int gs__mig_fail(const gs__mig_t *m, const gs__mig_dev_t *d, nvmlReturn_t r,
                 const char *call, gs_error_t *err, const char *what) {
  char ctx[256];
  snprintf(ctx, sizeof ctx, "%s on GPU %u%s%s%s", what, d->nvml_index,
           d->name[0] ? " (" : "", gs__mig_short_name(d),
           d->name[0] ? ")" : "");
  return gs__nvml_fail(&m->nvml, r, call, err, ctx);
}

/* ---- catalog ----------------------------------------------------------- */

/* "no such profile here" answers, as opposed to real failures. */
bool gs__mig_not_offered(nvmlReturn_t r) {
  return r == NVML_ERROR_NOT_SUPPORTED || r == NVML_ERROR_INVALID_ARGUMENT ||
         r == NVML_ERROR_NOT_FOUND;
}

/* Compute-instance rules where no table and no live GI tell them: the
 * rules of a table GPU's profile with the same compute slices (they are
 * the same on every MIG GPU). */
static void borrow_cis(gs_gi_profile_t *gi) {
  static const char *const donors[] = {"h100-80gb", "a30"};
  gs_catalog_t donor;
  for (unsigned k = 0; k < 2; k++) {
    if (gs_catalog_for_model(&donor, donors[k], NULL) != GS_OK)
      continue;
    for (unsigned i = 0; i < donor.n_gi; i++)
      if (donor.gi[i].compute_slices == gi->compute_slices) {
        gi->n_ci = donor.gi[i].n_ci;
        memcpy(gi->ci, donor.gi[i].ci, sizeof gi->ci);
        return;
      }
  }
}

static nvmlReturn_t gi_placements(gs__mig_t *m, gs__mig_dev_t *d,
                                  gs_gi_profile_t *gi) {
  nvmlGpuInstancePlacement_t pl[MIG_MAX_PLACEMENTS];
  unsigned n = MIG_MAX_PLACEMENTS;
  nvmlReturn_t r =
      m->nvml.DeviceGetGpuInstancePossiblePlacements(d->handle, gi->id, pl, &n);
  for (unsigned i = 0; r == NVML_SUCCESS && i < n && i < MIG_MAX_PLACEMENTS;
       i++)
    if (pl[i].start < 32) {
      gi->start_mask |= 1u << pl[i].start;
      gi->memory_slices = pl[i].size;
    }
  return r;
}

/* One NVML profile into a catalog entry; table (may be NULL) fills the
 * name when the driver speaks only v1, and the placements when the caller
 * may not query them (they need root). Returns the placement query's
 * failure when nothing could stand in for it. */
static nvmlReturn_t fill_profile(gs__mig_t *m, gs__mig_dev_t *d, unsigned index,
                                 const gs__nvml_gi_profile_t *p,
                                 const gs_catalog_t *table,
                                 gs_gi_profile_t *gi) {
  const gs_gi_profile_t *t = table ? gs_catalog_gi(table, p->id) : NULL;
  memset(gi, 0, sizeof *gi);
  gi->id = p->id;
  gi->nvml_index = index;
  const char *name = strncmp(p->name, "MIG ", 4) == 0 ? p->name + 4 : p->name;
  if (name[0])
    snprintf(gi->name, sizeof gi->name, "%.*s", GS_PROFILE_NAME_MAX - 1, name);
  else if (t)
    snprintf(gi->name, sizeof gi->name, "%s", t->name);
  else
    snprintf(gi->name, sizeof gi->name, "%ug.%llugb", p->slices,
             (p->memory_mib + 1023) / 1024);
  gi->compute_slices = p->slices;
  gi->max_count = p->instances;
  nvmlReturn_t r = gi_placements(m, d, gi);
  if (r != NVML_SUCCESS && t) {
    gi->start_mask = t->start_mask;
    gi->memory_slices = t->memory_slices;
    r = NVML_SUCCESS;
  }
  gi->memory_mib = p->memory_mib;
  gi->sms = p->sms;
  gi->copy_engines = p->copy_engines;
  gi->decoders = p->decoders;
  gi->encoders = p->encoders;
  gi->jpegs = p->jpegs;
  gi->ofas = p->ofas;
  gi->media_extensions = strstr(gi->name, "+me") || (t && t->media_extensions);
  if (t) {
    gi->n_ci = t->n_ci;
    memcpy(gi->ci, t->ci, sizeof gi->ci);
  } else {
    borrow_cis(gi);
  }
  return r;
}

/* nvidia-smi -lgip order: ascending compute, then memory, +me last. */
static bool profile_before(const gs_gi_profile_t *a, const gs_gi_profile_t *b) {
  if (a->compute_slices != b->compute_slices)
    return a->compute_slices < b->compute_slices;
  if (a->memory_slices != b->memory_slices)
    return a->memory_slices < b->memory_slices;
  if (a->media_extensions != b->media_extensions)
    return !a->media_extensions;
  return a->nvml_index < b->nvml_index;
}

static void catalog_identity(const gs__mig_dev_t *d, const gs_catalog_t *table,
                             gs_catalog_t *cat) {
  memset(cat, 0, sizeof *cat);
  if (table) {
    snprintf(cat->model, sizeof cat->model, "%.*s", (int)sizeof cat->model - 1,
             table->model);
    cat->total_sms = table->total_sms;
    cat->n_pci_ids = table->n_pci_ids;
    memcpy(cat->pci_device_ids, table->pci_device_ids,
           sizeof cat->pci_device_ids);
  } else {
    /* "NVIDIA B300 SXM" -> "b300-sxm" */
    size_t k = 0;
    for (const char *s = gs__mig_short_name(d); *s && k + 1 < sizeof cat->model;
         s++)
      cat->model[k++] = *s == ' '                  ? '-'
                        : (*s >= 'A' && *s <= 'Z') ? (char)(*s - 'A' + 'a')
                                                   : *s;
    cat->n_pci_ids = 1;
    cat->pci_device_ids[0] = d->pci_device_id;
  }
  snprintf(cat->product, sizeof cat->product, "%s", d->name);
  cat->source = GS_CATALOG_NVML;
}

int gs__mig_build_catalog(gs__mig_t *m, gs__mig_dev_t *d, gs_error_t *err) {
  gs_catalog_t table;
  bool have_table = gs_catalog_for_pci_id(&table, d->pci_device_id,
                                          d->memory_mib, NULL) == GS_OK;
  gs_catalog_t *cat = &d->cat;
  catalog_identity(d, have_table ? &table : NULL, cat);
  for (unsigned index = 0; index < NVML_GPU_INSTANCE_PROFILE_COUNT &&
                           cat->n_gi < GS_MAX_GI_PROFILES;
       index++) {
    gs__nvml_gi_profile_t p;
    nvmlReturn_t r = gs__nvml_gi_profile(&m->nvml, d->handle, index, &p);
    if (gs__mig_not_offered(r))
      continue;
    if (r != NVML_SUCCESS)
      return gs__mig_fail(m, d, r, "nvmlDeviceGetGpuInstanceProfileInfo", err,
                          "reading MIG profiles");
    if (gs_catalog_gi(cat, p.id))
      continue; /* two indices, one profile */
    gs_gi_profile_t gi;
    r = fill_profile(m, d, index, &p, have_table ? &table : NULL, &gi);
    if (r != NVML_SUCCESS)
      return gs__mig_fail(m, d, r, "nvmlDeviceGetGpuInstancePossiblePlacements",
                          err, "reading MIG placements");
    if (!gi.start_mask || !gi.memory_slices)
      continue;
    unsigned pos = cat->n_gi++;
    while (pos > 0 && profile_before(&gi, &cat->gi[pos - 1])) {
      cat->gi[pos] = cat->gi[pos - 1];
      pos--;
    }
    cat->gi[pos] = gi;
  }
  if (cat->n_gi == 0 && have_table) {
    /* Drivers that answer nothing with MIG off: the table, asked again
     * next time (have_catalog stays false). */
    *cat = table;
    snprintf(cat->product, sizeof cat->product, "%s", d->name);
    return GS_OK;
  }
  if (cat->n_gi == 0)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "GPU %u (%s) reports no MIG profiles", d->nvml_index,
                        gs__mig_short_name(d));
  if (have_table) /* NVML's values are used; say where they differ */
    gs_catalog_differences(cat, &table, cat->differences,
                           sizeof cat->differences);
  for (unsigned i = 0; i < cat->n_gi; i++) {
    const gs_gi_profile_t *gi = &cat->gi[i];
    unsigned end = 0;
    for (unsigned s = 0; s < 32; s++)
      if (gi->start_mask & (1u << s))
        end = s + gi->memory_slices;
    if (end > cat->memory_slices)
      cat->memory_slices = end;
    if (gi->compute_slices > cat->compute_slices)
      cat->compute_slices = gi->compute_slices;
  }
  for (unsigned i = 0; i < cat->n_gi; i++)
    if (cat->gi[i].memory_slices == cat->memory_slices) {
      cat->total_memory_mib = cat->gi[i].memory_mib; /* the whole GPU */
      if (!cat->total_sms)
        cat->total_sms = cat->gi[i].sms;
    }
  memset(d->ci_from_nvml, 0, sizeof d->ci_from_nvml);
  d->have_catalog = true;
  return GS_OK;
}

static uint32_t ci_placements(gs__mig_t *m, nvmlGpuInstance_t gih,
                              unsigned id) {
  nvmlComputeInstancePlacement_t pl[MIG_MAX_PLACEMENTS];
  unsigned n = MIG_MAX_PLACEMENTS;
  uint32_t mask = 0;
  if (!m->nvml.GpuInstanceGetComputeInstancePossiblePlacements ||
      m->nvml.GpuInstanceGetComputeInstancePossiblePlacements(
          gih, id, pl, &n) != NVML_SUCCESS)
    return 0;
  for (unsigned i = 0; i < n && i < MIG_MAX_PLACEMENTS; i++)
    if (pl[i].start < 32)
      mask |= 1u << pl[i].start;
  return mask;
}

/* CI profiles are only queryable on a live GI: the first time one of a
 * profile is seen, its CI list is read from NVML and replaces the table's.
 * Failures keep the table's list. */
void gs__mig_refresh_cis(gs__mig_t *m, gs__mig_dev_t *d, nvmlGpuInstance_t gih,
                         unsigned profile_id) {
  gs_gi_profile_t *gp = NULL;
  for (unsigned i = 0; i < d->cat.n_gi; i++)
    if (d->cat.gi[i].id == profile_id)
      gp = &d->cat.gi[i];
  if (!gp || d->ci_from_nvml[gp - d->cat.gi])
    return;
  gs_ci_profile_t ci[GS_MAX_CI_PROFILES];
  unsigned n = 0;
  for (unsigned index = 0;
       index < NVML_COMPUTE_INSTANCE_PROFILE_COUNT && n < GS_MAX_CI_PROFILES;
       index++) {
    gs__nvml_ci_profile_t p;
    if (gs__nvml_ci_profile(&m->nvml, gih, index, &p) != NVML_SUCCESS)
      continue;
    const gs_ci_profile_t *t = gs_catalog_ci(gp, p.id);
    gs_ci_profile_t c = {p.id, p.slices, p.instances,
                         ci_placements(m, gih, p.id)};
    if (!c.start_mask)
      c.start_mask = t ? t->start_mask : 1u;
    unsigned pos = n++;
    while (pos > 0 && ci[pos - 1].compute_slices > c.compute_slices) {
      ci[pos] = ci[pos - 1];
      pos--;
    }
    ci[pos] = c;
  }
  if (n == 0)
    return;
  gp->n_ci = n;
  memset(gp->ci, 0, sizeof gp->ci);
  memcpy(gp->ci, ci, n * sizeof ci[0]);
  d->ci_from_nvml[gp - d->cat.gi] = true;
}

/* ---- layout ------------------------------------------------------------ */

int gs__mig_read_cis(gs__mig_t *m, gs__mig_dev_t *d, nvmlGpuInstance_t gih,
                     gs_gi_t *gi, gs_error_t *err) {
  for (unsigned pid = 0; pid < NVML_COMPUTE_INSTANCE_PROFILE_COUNT; pid++) {
    nvmlComputeInstance_t cis[GS__MIG_MAX_LISTED];
    unsigned n = GS__MIG_MAX_LISTED;
    nvmlReturn_t r = m->nvml.GpuInstanceGetComputeInstances(gih, pid, cis, &n);
    if (gs__mig_not_offered(r))
      continue;
    if (r != NVML_SUCCESS)
      return gs__mig_fail(m, d, r, "nvmlGpuInstanceGetComputeInstances", err,
                          "listing compute instances");
    for (unsigned k = 0; k < n && k < GS__MIG_MAX_LISTED; k++) {
      nvmlComputeInstanceInfo_t info;
      r = m->nvml.ComputeInstanceGetInfo(cis[k], &info);
      if (r != NVML_SUCCESS)
        return gs__mig_fail(m, d, r, "nvmlComputeInstanceGetInfo", err,
                            "reading a compute instance");
      if (gi->n_ci == GS_MAX_CIS)
        return gs_error_set(err, GS_ELIMIT,
                            "GPU instance %u on GPU %u has more than %d "
                            "compute instances",
                            gi->id, d->nvml_index, GS_MAX_CIS);
      unsigned pos = gi->n_ci++;
      while (pos > 0 && gi->ci[pos - 1].start > info.placement.start) {
        gi->ci[pos] = gi->ci[pos - 1];
        pos--;
      }
      gi->ci[pos] =
          (gs_ci_t){info.id, info.profileId, info.placement.start, ""};
    }
  }
  return GS_OK;
}

static int add_gi(gs__mig_t *m, gs__mig_dev_t *d, nvmlGpuInstance_t gih,
                  gs_layout_t *layout, gs_error_t *err) {
  nvmlGpuInstanceInfo_t info;
  nvmlReturn_t r = m->nvml.GpuInstanceGetInfo(gih, &info);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlGpuInstanceGetInfo", err,
                        "reading a GPU instance");
  if (layout->n_gi == GS_MAX_GIS)
    return gs_error_set(err, GS_ELIMIT, "GPU %u has more than %d GPU instances",
                        d->nvml_index, GS_MAX_GIS);
  gs__mig_refresh_cis(m, d, gih, info.profileId);
  unsigned pos = layout->n_gi++;
  while (pos > 0 && layout->gi[pos - 1].start > info.placement.start) {
    layout->gi[pos] = layout->gi[pos - 1];
    pos--;
  }
  gs_gi_t *gi = &layout->gi[pos];
  memset(gi, 0, sizeof *gi);
  gi->id = info.id;
  gi->profile_id = info.profileId;
  gi->start = info.placement.start;
  return gs__mig_read_cis(m, d, gih, gi, err);
}

/* MIG device UUIDs ("MIG-...") of the compute instances. */
static void read_uuids(gs__mig_t *m, gs__mig_dev_t *d, gs_layout_t *layout) {
  unsigned max = 0;
  if (m->nvml.DeviceGetMaxMigDeviceCount(d->handle, &max) != NVML_SUCCESS)
    return;
  for (unsigned i = 0; i < max; i++) {
    nvmlDevice_t mh;
    unsigned gid, cid;
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    if (m->nvml.DeviceGetMigDeviceHandleByIndex(d->handle, i, &mh) !=
            NVML_SUCCESS ||
        m->nvml.DeviceGetGpuInstanceId(mh, &gid) != NVML_SUCCESS ||
        m->nvml.DeviceGetComputeInstanceId(mh, &cid) != NVML_SUCCESS ||
        m->nvml.DeviceGetUUID(mh, uuid, sizeof uuid) != NVML_SUCCESS)
      continue;
    gs_gi_t *gi = gs_layout_find_gi(layout, gid);
    gs_ci_t *ci = gi ? gs_gi_find_ci(gi, cid) : NULL;
    if (ci)
      snprintf(ci->uuid, sizeof ci->uuid, "%.*s", GS_UUID_MAX - 1, uuid);
  }
  for (unsigned g = 0; g < layout->n_gi; g++)
    if (layout->gi[g].n_ci > 0)
      memcpy(layout->gi[g].uuid, layout->gi[g].ci[0].uuid, GS_UUID_MAX);
}

int gs__mig_read_layout(gs__mig_t *m, gs__mig_dev_t *d, gs_layout_t *layout,
                        gs_error_t *err) {
  unsigned cur = 0, pending = 0;
  nvmlReturn_t r = m->nvml.DeviceGetMigMode(d->handle, &cur, &pending);
  if (r != NVML_SUCCESS)
    return gs__mig_fail(m, d, r, "nvmlDeviceGetMigMode", err,
                        "reading the MIG mode");
  gs_layout_init(layout);
  layout->mig_enabled = cur == NVML_DEVICE_MIG_ENABLE;
  for (unsigned p = 0; layout->mig_enabled && p < d->cat.n_gi; p++) {
    nvmlGpuInstance_t gis[GS__MIG_MAX_LISTED];
    unsigned n = GS__MIG_MAX_LISTED;
    r = m->nvml.DeviceGetGpuInstances(d->handle, d->cat.gi[p].id, gis, &n);
    if (gs__mig_not_offered(r))
      continue;
    if (r != NVML_SUCCESS)
      return gs__mig_fail(m, d, r, "nvmlDeviceGetGpuInstances", err,
                          "listing GPU instances");
    for (unsigned k = 0; k < n && k < GS__MIG_MAX_LISTED; k++) {
      int rc = add_gi(m, d, gis[k], layout, err);
      if (rc != GS_OK)
        return rc;
    }
  }
  read_uuids(m, d, layout);
  return GS_OK;
}
