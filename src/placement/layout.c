/* In-memory layouts: slice bookkeeping, ID assignment and checked edits.
 * Software backends keep their layout this way; planning uses it to
 * simulate a change before any backend call. */
#include "gpuslice/layout.h"

#include <string.h>

static uint32_t span_mask(unsigned start, unsigned size) {
  return ((1u << size) - 1u) << start;
}

void gs_layout_init(gs_layout_t *layout) {
  memset(layout, 0, sizeof *layout);
  layout->mig_enabled = true;
}

gs_gi_t *gs_layout_find_gi(gs_layout_t *layout, unsigned gi_id) {
  for (unsigned i = 0; i < layout->n_gi; i++)
    if (layout->gi[i].id == gi_id)
      return &layout->gi[i];
  return NULL;
}

const gs_gi_t *gs_layout_find_gi_const(const gs_layout_t *layout,
                                       unsigned gi_id) {
  return gs_layout_find_gi((gs_layout_t *)layout, gi_id);
}

gs_ci_t *gs_gi_find_ci(gs_gi_t *gi, unsigned ci_id) {
  for (unsigned i = 0; i < gi->n_ci; i++)
    if (gi->ci[i].id == ci_id)
      return &gi->ci[i];
  return NULL;
}

uint32_t gs_layout_used_slices(const gs_catalog_t *cat,
                               const gs_layout_t *layout) {
  uint32_t used = 0;
  for (unsigned i = 0; i < layout->n_gi; i++) {
    const gs_gi_profile_t *p = gs_catalog_gi(cat, layout->gi[i].profile_id);
    if (p)
      used |= span_mask(layout->gi[i].start, p->memory_slices);
  }
  return used;
}

unsigned gs_layout_used_compute(const gs_catalog_t *cat,
                                const gs_layout_t *layout) {
  unsigned used = 0;
  for (unsigned i = 0; i < layout->n_gi; i++) {
    const gs_gi_profile_t *p = gs_catalog_gi(cat, layout->gi[i].profile_id);
    if (p)
      used += p->compute_slices;
  }
  return used;
}

uint32_t gs_gi_used_compute(const gs_gi_profile_t *prof, const gs_gi_t *gi) {
  uint32_t used = 0;
  for (unsigned i = 0; i < gi->n_ci; i++) {
    const gs_ci_profile_t *c = gs_catalog_ci(prof, gi->ci[i].profile_id);
    if (c)
      used |= span_mask(gi->ci[i].start, c->compute_slices);
  }
  return used;
}

static unsigned count_profile(const gs_layout_t *layout, unsigned profile_id) {
  unsigned n = 0;
  for (unsigned i = 0; i < layout->n_gi; i++)
    n += layout->gi[i].profile_id == profile_id;
  return n;
}

/* Why one more GI of prof at start cannot join layout; GS_OK if it can. */
static int gi_fits(const gs_catalog_t *cat, const gs_layout_t *layout,
                   const gs_gi_profile_t *prof, unsigned start,
                   gs_error_t *err) {
  char starts[64];
  if (start >= 32 || !(prof->start_mask & (1u << start))) {
    gs_format_starts(prof->start_mask, starts, sizeof starts);
    return gs_error_set(err, GS_EINVAL,
                        "profile %s cannot start at slice %u: starts are %s",
                        prof->name, start, starts);
  }
  unsigned have = count_profile(layout, prof->id);
  if (have >= prof->max_count)
    return gs_error_set(err, GS_ELIMIT,
                        "profile %s: at most %u per device, %u exist",
                        prof->name, prof->max_count, have);
  uint32_t want = span_mask(start, prof->memory_slices);
  for (unsigned i = 0; i < layout->n_gi; i++) {
    const gs_gi_t *gi = &layout->gi[i];
    const gs_gi_profile_t *p = gs_catalog_gi(cat, gi->profile_id);
    if (p && (span_mask(gi->start, p->memory_slices) & want))
      return gs_error_set(err, GS_ENOFIT,
                          "%s at %u:%u overlaps GPU instance %u (%s at %u:%u)",
                          prof->name, start, prof->memory_slices, gi->id,
                          p->name, gi->start, p->memory_slices);
  }
  unsigned used = gs_layout_used_compute(cat, layout);
  if (used + prof->compute_slices > cat->compute_slices)
    return gs_error_set(err, GS_ENOFIT,
                        "%s needs %u compute slices; %u of %u are free",
                        prof->name, prof->compute_slices,
                        cat->compute_slices - used, cat->compute_slices);
  if (layout->n_gi >= GS_MAX_GIS)
    return gs_error_set(err, GS_ELIMIT, "a device holds at most %d instances",
                        GS_MAX_GIS);
  return GS_OK;
}

static unsigned lowest_free_gi_id(const gs_layout_t *layout) {
  for (unsigned id = 1;; id++)
    if (!gs_layout_find_gi_const(layout, id))
      return id;
}

int gs_layout_add_gi(gs_layout_t *layout, const gs_catalog_t *cat,
                     unsigned profile_id, unsigned start, unsigned *gi_id,
                     gs_error_t *err) {
  const gs_gi_profile_t *prof = gs_catalog_gi(cat, profile_id);
  if (!prof)
    return gs_error_set(err, GS_ENOTFOUND,
                        "no GPU instance profile ID %u on %s", profile_id,
                        cat->model);
  int rc = gi_fits(cat, layout, prof, start, err);
  if (rc != GS_OK)
    return rc;
  unsigned id = lowest_free_gi_id(layout); /* before the array shifts */
  unsigned pos = 0;
  while (pos < layout->n_gi && layout->gi[pos].start < start)
    pos++;
  memmove(&layout->gi[pos + 1], &layout->gi[pos],
          (layout->n_gi - pos) * sizeof layout->gi[0]);
  gs_gi_t *gi = &layout->gi[pos];
  memset(gi, 0, sizeof *gi);
  gi->id = id;
  gi->profile_id = profile_id;
  gi->start = start;
  layout->n_gi++;
  if (gi_id)
    *gi_id = gi->id;
  return GS_OK;
}

int gs_layout_remove_gi(gs_layout_t *layout, unsigned gi_id, gs_error_t *err) {
  gs_gi_t *gi = gs_layout_find_gi(layout, gi_id);
  if (!gi)
    return gs_error_set(err, GS_ENOTFOUND, "no GPU instance %u", gi_id);
  unsigned pos = (unsigned)(gi - layout->gi);
  memmove(gi, gi + 1, (layout->n_gi - pos - 1) * sizeof *gi);
  layout->n_gi--;
  return GS_OK;
}

static int ci_fits(const gs_gi_profile_t *gprof, const gs_gi_t *gi,
                   const gs_ci_profile_t *cprof, unsigned start,
                   gs_error_t *err) {
  char starts[64];
  if (start >= 32 || !(cprof->start_mask & (1u << start))) {
    gs_format_starts(cprof->start_mask, starts, sizeof starts);
    return gs_error_set(
        err, GS_EINVAL,
        "compute instance %uc in %s cannot start at slice %u: starts are %s",
        cprof->compute_slices, gprof->name, start, starts);
  }
  unsigned same = 0;
  for (unsigned i = 0; i < gi->n_ci; i++)
    same += gi->ci[i].profile_id == cprof->id;
  if (same >= cprof->max_count)
    return gs_error_set(err, GS_ELIMIT,
                        "compute instance %uc: at most %u in a %s instance",
                        cprof->compute_slices, cprof->max_count, gprof->name);
  if (gs_gi_used_compute(gprof, gi) & span_mask(start, cprof->compute_slices))
    return gs_error_set(err, GS_ENOFIT,
                        "compute instance %uc at %u overlaps another compute "
                        "instance of GPU instance %u",
                        cprof->compute_slices, start, gi->id);
  if (gi->n_ci >= GS_MAX_CIS)
    return gs_error_set(err, GS_ELIMIT, "too many compute instances");
  return GS_OK;
}

int gs_layout_add_ci(gs_layout_t *layout, const gs_catalog_t *cat,
                     unsigned gi_id, unsigned ci_profile_id, unsigned start,
                     unsigned *ci_id, gs_error_t *err) {
  gs_gi_t *gi = gs_layout_find_gi(layout, gi_id);
  if (!gi)
    return gs_error_set(err, GS_ENOTFOUND, "no GPU instance %u", gi_id);
  const gs_gi_profile_t *gprof = gs_catalog_gi(cat, gi->profile_id);
  const gs_ci_profile_t *cprof =
      gprof ? gs_catalog_ci(gprof, ci_profile_id) : NULL;
  if (!cprof)
    return gs_error_set(err, GS_ENOTFOUND,
                        "no compute instance profile %u in GPU instance %u",
                        ci_profile_id, gi_id);
  int rc = ci_fits(gprof, gi, cprof, start, err);
  if (rc != GS_OK)
    return rc;
  unsigned id = 0;
  while (gs_gi_find_ci(gi, id))
    id++;
  unsigned pos = 0;
  while (pos < gi->n_ci && gi->ci[pos].start < start)
    pos++;
  memmove(&gi->ci[pos + 1], &gi->ci[pos], (gi->n_ci - pos) * sizeof gi->ci[0]);
  memset(&gi->ci[pos], 0, sizeof gi->ci[pos]);
  gi->ci[pos].id = id;
  gi->ci[pos].profile_id = ci_profile_id;
  gi->ci[pos].start = start;
  gi->n_ci++;
  if (ci_id)
    *ci_id = id;
  return GS_OK;
}

int gs_layout_remove_ci(gs_layout_t *layout, unsigned gi_id, unsigned ci_id,
                        gs_error_t *err) {
  gs_gi_t *gi = gs_layout_find_gi(layout, gi_id);
  gs_ci_t *ci = gi ? gs_gi_find_ci(gi, ci_id) : NULL;
  if (!ci)
    return gs_error_set(err, GS_ENOTFOUND,
                        "no compute instance %u in GPU instance %u", ci_id,
                        gi_id);
  unsigned pos = (unsigned)(ci - gi->ci);
  memmove(ci, ci + 1, (gi->n_ci - pos - 1) * sizeof *ci);
  gi->n_ci--;
  return GS_OK;
}

/* Turns an edit's error into "GPU instance N: <why>" marked corrupt. */
static int corrupt_gi(gs_error_t *err, unsigned gi_id) {
  gs_error_prefix(err, "GPU instance %u: ", gi_id);
  return gs_error_code(err, GS_ECORRUPT);
}

/* Rebuilds the layout edit by edit: every rule add_gi/add_ci check holds
 * for a stored layout too, so validation reuses them. */
int gs_layout_validate(const gs_catalog_t *cat, const gs_layout_t *layout,
                       gs_error_t *err) {
  if (layout->n_gi > GS_MAX_GIS)
    return gs_error_set(err, GS_ECORRUPT, "%u GPU instances (at most %d)",
                        layout->n_gi, GS_MAX_GIS);
  if (!layout->mig_enabled && layout->n_gi > 0)
    return gs_error_set(err, GS_ECORRUPT,
                        "GPU instances exist while partitioning is disabled");
  gs_layout_t check;
  gs_layout_init(&check);
  for (unsigned i = 0; i < layout->n_gi; i++) {
    const gs_gi_t *gi = &layout->gi[i];
    if (gs_layout_find_gi(&check, gi->id))
      return gs_error_set(err, GS_ECORRUPT, "GPU instance ID %u appears twice",
                          gi->id);
    unsigned id;
    int rc = gs_layout_add_gi(&check, cat, gi->profile_id, gi->start, &id, err);
    if (rc != GS_OK)
      return corrupt_gi(err, gi->id);
    gs_gi_t *copy = gs_layout_find_gi(&check, id);
    copy->id = gi->id;
    if (gi->n_ci > GS_MAX_CIS)
      return gs_error_set(err, GS_ECORRUPT, "GPU instance %u: %u CIs", gi->id,
                          gi->n_ci);
    for (unsigned j = 0; j < gi->n_ci; j++) {
      if (gs_gi_find_ci(copy, gi->ci[j].id))
        return gs_error_set(err, GS_ECORRUPT,
                            "GPU instance %u: compute instance ID %u twice",
                            gi->id, gi->ci[j].id);
      unsigned cid;
      rc = gs_layout_add_ci(&check, cat, gi->id, gi->ci[j].profile_id,
                            gi->ci[j].start, &cid, err);
      if (rc != GS_OK)
        return corrupt_gi(err, gi->id);
      gs_gi_find_ci(copy, cid)->id = gi->ci[j].id;
    }
  }
  return GS_OK;
}
