/* Planning: from a wanted layout (mig-parted MIG-device counts) to the
 * smallest change of the current layout. Existing GPU instances that match
 * a wanted one are kept whenever the rest can still be placed; busy ones
 * must be kept. */
#include "apply_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_unsigned_desc(const void *a, const void *b) {
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return (x < y) - (x > y);
}

static void group_sort(gs__group_t *g) {
  qsort(g->ci_profile_id, g->n_ci, sizeof g->ci_profile_id[0],
        cmp_unsigned_desc);
}

/* Can one more CI of ci_id join the group's GI? */
static bool group_accepts(const gs_gi_profile_t *gp, const gs__group_t *g,
                          unsigned ci_id) {
  if (g->n_ci >= GS_MAX_CIS)
    return false;
  gs_ci_request_t req[GS_MAX_CIS + 1];
  unsigned starts[GS_MAX_CIS + 1];
  for (unsigned i = 0; i < g->n_ci; i++)
    req[i] = (gs_ci_request_t){.profile_id = g->ci_profile_id[i], .start = -1};
  req[g->n_ci] = (gs_ci_request_t){.profile_id = ci_id, .start = -1};
  return gs_place_cis(gp, NULL, req, g->n_ci + 1, starts, NULL) == GS_OK;
}

/* mig-parted creates a MIG device (GI + CI) per count and reuses the last
 * GI while the next CI of the same GI profile still fits; we pack the
 * same way, largest CIs first, first fit. */
int gs__want_groups(const gs_catalog_t *cat, const gs_want_t *want,
                    gs__group_t *groups, unsigned *n_groups, gs_error_t *err) {
  unsigned n = 0;
  for (unsigned p = 0; p < cat->n_gi; p++) {
    const gs_gi_profile_t *gp = &cat->gi[p];
    unsigned cis[GS_MAX_GIS * GS_MAX_CIS], n_cis = 0;
    for (unsigned i = 0; i < want->n; i++) {
      if (want->item[i].gi_profile_id != gp->id)
        continue;
      for (unsigned c = 0; c < want->item[i].count; c++) {
        if (n_cis == sizeof cis / sizeof cis[0])
          return gs_error_set(err, GS_ELIMIT, "too many %s instances requested",
                              gp->name);
        cis[n_cis++] = want->item[i].ci_profile_id;
      }
    }
    /* Larger CIs first: higher compute-slice counts have higher IDs. */
    qsort(cis, n_cis, sizeof cis[0], cmp_unsigned_desc);
    unsigned first_group = n;
    for (unsigned c = 0; c < n_cis; c++) {
      unsigned g = first_group;
      while (g < n && !group_accepts(gp, &groups[g], cis[c]))
        g++;
      if (g == n) {
        if (n == GS__MAX_GROUPS)
          return gs_error_set(err, GS_ELIMIT,
                              "the config asks for more GPU instances than "
                              "%s can hold",
                              cat->model);
        groups[n] = (gs__group_t){.gi_profile_id = gp->id};
        n++;
      }
      groups[g].ci_profile_id[groups[g].n_ci++] = cis[c];
    }
  }
  for (unsigned g = 0; g < n; g++)
    group_sort(&groups[g]);
  *n_groups = n;
  return GS_OK;
}

void gs__group_of_gi(const gs_gi_t *gi, gs__group_t *g) {
  g->gi_profile_id = gi->profile_id;
  g->n_ci = gi->n_ci;
  for (unsigned i = 0; i < gi->n_ci; i++)
    g->ci_profile_id[i] = gi->ci[i].profile_id;
  group_sort(g);
}

static bool group_equal(const gs__group_t *a, const gs__group_t *b) {
  return a->gi_profile_id == b->gi_profile_id && a->n_ci == b->n_ci &&
         memcmp(a->ci_profile_id, b->ci_profile_id,
                a->n_ci * sizeof a->ci_profile_id[0]) == 0;
}

/* Matches the GIs in keep_mask to wanted groups one to one; *used marks the
 * groups taken. False if some kept GI matches no free group. */
static bool match_keep(const gs_layout_t *cur, unsigned keep_mask,
                       const gs__group_t *groups, unsigned n_groups,
                       bool used[GS__MAX_GROUPS]) {
  memset(used, 0, GS__MAX_GROUPS * sizeof used[0]);
  for (unsigned i = 0; i < cur->n_gi; i++) {
    if (!(keep_mask & (1u << i)))
      continue;
    gs__group_t mine;
    gs__group_of_gi(&cur->gi[i], &mine);
    unsigned g = 0;
    while (g < n_groups && (used[g] || !group_equal(&mine, &groups[g])))
      g++;
    if (g == n_groups)
      return false;
    used[g] = true;
  }
  return true;
}

/* Tries to place the groups not matched by the kept GIs; fills the plan. */
static bool try_keep(const gs_catalog_t *cat, const gs_layout_t *cur,
                     unsigned keep_mask, const gs__group_t *groups,
                     unsigned n_groups, gs_plan_t *plan) {
  bool used[GS__MAX_GROUPS];
  if (!match_keep(cur, keep_mask, groups, n_groups, used))
    return false;
  gs_layout_t kept = *cur;
  kept.n_gi = 0;
  for (unsigned i = 0; i < cur->n_gi; i++)
    if (keep_mask & (1u << i))
      kept.gi[kept.n_gi++] = cur->gi[i];
  gs_gi_request_t req[GS_MAX_REQUESTS];
  unsigned idx[GS_MAX_REQUESTS], starts[GS_MAX_REQUESTS], n = 0;
  for (unsigned g = 0; g < n_groups; g++) {
    if (used[g])
      continue;
    if (n == GS_MAX_REQUESTS)
      return false;
    req[n] =
        (gs_gi_request_t){.profile_id = groups[g].gi_profile_id, .start = -1};
    idx[n++] = g;
  }
  if (gs_place_gis(cat, &kept, req, n, starts, NULL) != GS_OK)
    return false;
  memset(plan, 0, sizeof *plan);
  for (unsigned i = 0; i < cur->n_gi; i++) {
    if (keep_mask & (1u << i))
      plan->keep_gi[plan->n_keep++] = cur->gi[i].id;
    else
      plan->destroy_gi[plan->n_destroy++] = cur->gi[i].id;
  }
  for (unsigned r = 0; r < n; r++) {
    const gs__group_t *g = &groups[idx[r]];
    gs_plan_create_t *c = &plan->create[plan->n_create++];
    c->profile_id = g->gi_profile_id;
    c->start = starts[r];
    c->n_ci = g->n_ci;
    gs_ci_request_t creq[GS_MAX_CIS];
    for (unsigned j = 0; j < g->n_ci; j++) {
      c->ci_profile_id[j] = g->ci_profile_id[j];
      creq[j] =
          (gs_ci_request_t){.profile_id = g->ci_profile_id[j], .start = -1};
    }
    /* Groups were built so that their CIs fit. */
    if (gs_place_cis(gs_catalog_gi(cat, g->gi_profile_id), NULL, creq, g->n_ci,
                     c->ci_start, NULL) != GS_OK)
      return false;
  }
  return true;
}

static unsigned popcount(unsigned x) {
  return (unsigned)__builtin_popcount(x);
}

/* Among keep sets that work: all busy GIs kept first, then the most GIs
 * kept, then the lowest mask (deterministic). */
static bool keep_better(unsigned mask, unsigned best, bool have_best,
                        unsigned busy_mask) {
  if (!have_best)
    return true;
  bool all_busy = (mask & busy_mask) == busy_mask;
  bool best_all_busy = (best & busy_mask) == busy_mask;
  if (all_busy != best_all_busy)
    return all_busy;
  if (popcount(mask) != popcount(best))
    return popcount(mask) > popcount(best);
  return mask < best;
}

static int plan_disable(const gs_layout_t *cur, const bool *busy,
                        const gs_catalog_t *cat, gs_plan_t *plan,
                        unsigned *blocked, gs_error_t *err) {
  memset(plan, 0, sizeof *plan);
  for (unsigned i = 0; i < cur->n_gi; i++) {
    if (busy && busy[i]) {
      const gs_gi_profile_t *p = gs_catalog_gi(cat, cur->gi[i].profile_id);
      *blocked = i;
      return gs_error_set(err, GS_EBUSY,
                          "GPU instance %u (%s) is in use and would have to "
                          "be destroyed to disable partitioning",
                          cur->gi[i].id, p ? p->name : "?");
    }
    plan->destroy_gi[plan->n_destroy++] = cur->gi[i].id;
  }
  plan->mig_enabled = false;
  plan->set_mig_mode = cur->mig_enabled;
  return GS_OK;
}

int gs_plan_layout(const gs_catalog_t *cat, const gs_layout_t *current,
                   const gs_want_t *want, const bool *busy, gs_plan_t *plan,
                   gs_error_t *err) {
  unsigned blocked;
  return gs__plan_layout(cat, current, want, busy, plan, &blocked, err);
}

int gs__plan_layout(const gs_catalog_t *cat, const gs_layout_t *current,
                    const gs_want_t *want, const bool *busy, gs_plan_t *plan,
                    unsigned *blocked, gs_error_t *err) {
  if (!want->mig_enabled)
    return plan_disable(current, busy, cat, plan, blocked, err);
  /* A layout that already has what is wanted stays as it is, whatever way
   * its compute instances are grouped (assert and export count them the
   * same way). */
  if (current->mig_enabled &&
      gs_layout_matches(cat, current, want, NULL) == 1) {
    memset(plan, 0, sizeof *plan);
    plan->mig_enabled = true;
    for (unsigned i = 0; i < current->n_gi; i++)
      plan->keep_gi[plan->n_keep++] = current->gi[i].id;
    return GS_OK;
  }
  gs__group_t groups[GS__MAX_GROUPS];
  unsigned n_groups = 0;
  int rc = gs__want_groups(cat, want, groups, &n_groups, err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t cur = *current;
  cur.mig_enabled = true; /* planning as if enabled; mode change is a step */
  unsigned busy_mask = 0;
  for (unsigned i = 0; busy && i < cur.n_gi; i++)
    busy_mask |= (unsigned)busy[i] << i;
  unsigned best = 0;
  bool have_best = false;
  gs_plan_t candidate;
  for (unsigned mask = 0; mask < (1u << cur.n_gi); mask++) {
    if (have_best && !keep_better(mask, best, have_best, busy_mask))
      continue;
    if (try_keep(cat, &cur, mask, groups, n_groups, &candidate)) {
      best = mask;
      have_best = true;
      *plan = candidate;
    }
  }
  if (!have_best) {
    /* Nothing fits even from an empty device: explain with the engine. */
    gs_layout_t empty;
    gs_layout_init(&empty);
    gs_gi_request_t req[GS_MAX_REQUESTS];
    unsigned starts[GS_MAX_REQUESTS];
    if (n_groups > GS_MAX_REQUESTS)
      return gs_error_set(err, GS_ELIMIT, "%u GPU instances requested",
                          n_groups);
    for (unsigned g = 0; g < n_groups; g++)
      req[g] =
          (gs_gi_request_t){.profile_id = groups[g].gi_profile_id, .start = -1};
    rc = gs_place_gis(cat, &empty, req, n_groups, starts, err);
    return rc != GS_OK
               ? rc
               : gs_error_set(err, GS_ENOFIT, "the wanted layout does not fit");
  }
  if ((best & busy_mask) != busy_mask) {
    for (unsigned i = 0; i < cur.n_gi; i++)
      if ((busy_mask & ~best) & (1u << i)) {
        const gs_gi_profile_t *p = gs_catalog_gi(cat, cur.gi[i].profile_id);
        *blocked = i;
        return gs_error_set(err, GS_EBUSY,
                            "GPU instance %u (%s at %u:%u) is in use and "
                            "would have to be destroyed",
                            cur.gi[i].id, p ? p->name : "?", cur.gi[i].start,
                            p ? p->memory_slices : 0);
      }
  }
  plan->mig_enabled = true;
  plan->set_mig_mode = !current->mig_enabled;
  return GS_OK;
}

int gs_plan_result(const gs_catalog_t *cat, const gs_layout_t *current,
                   const gs_plan_t *plan, gs_layout_t *after, gs_error_t *err) {
  *after = *current;
  for (unsigned i = 0; i < plan->n_destroy; i++) {
    int rc = gs_layout_remove_gi(after, plan->destroy_gi[i], err);
    if (rc != GS_OK)
      return rc;
  }
  after->mig_enabled = plan->mig_enabled;
  for (unsigned i = 0; i < plan->n_create; i++) {
    const gs_plan_create_t *c = &plan->create[i];
    unsigned gi_id;
    int rc = gs_layout_add_gi(after, cat, c->profile_id, c->start, &gi_id, err);
    for (unsigned j = 0; rc == GS_OK && j < c->n_ci; j++)
      rc = gs_layout_add_ci(after, cat, gi_id, c->ci_profile_id[j],
                            c->ci_start[j], NULL, err);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

/* Counts of MIG devices (GI profile, CI profile), as mig-parted compares. */
static void device_counts(const gs_layout_t *layout, gs_want_t *out) {
  memset(out, 0, sizeof *out);
  out->mig_enabled = layout->mig_enabled;
  for (unsigned i = 0; i < layout->n_gi; i++)
    for (unsigned j = 0; j < layout->gi[i].n_ci; j++)
      gs__want_add(out, layout->gi[i].profile_id,
                   layout->gi[i].ci[j].profile_id, 1);
}

void gs__want_add(gs_want_t *want, unsigned gi, unsigned ci, unsigned count) {
  for (unsigned i = 0; i < want->n; i++)
    if (want->item[i].gi_profile_id == gi &&
        want->item[i].ci_profile_id == ci) {
      want->item[i].count += count;
      return;
    }
  if (want->n < GS_MAX_WANT && count > 0)
    want->item[want->n++] = (gs_want_item_t){gi, ci, count};
}

static unsigned want_count(const gs_want_t *w, unsigned gi, unsigned ci) {
  for (unsigned i = 0; i < w->n; i++)
    if (w->item[i].gi_profile_id == gi && w->item[i].ci_profile_id == ci)
      return w->item[i].count;
  return 0;
}

int gs_layout_matches(const gs_catalog_t *cat, const gs_layout_t *layout,
                      const gs_want_t *want, gs_error_t *err) {
  if (layout->mig_enabled != want->mig_enabled) {
    gs_error_set(err, GS_OK, "partitioning is %s, wanted %s",
                 layout->mig_enabled ? "enabled" : "disabled",
                 want->mig_enabled ? "enabled" : "disabled");
    return 0;
  }
  gs_want_t have;
  device_counts(layout, &have);
  const gs_want_t *sides[2] = {want, &have};
  for (unsigned s = 0; s < 2; s++)
    for (unsigned i = 0; i < sides[s]->n; i++) {
      unsigned gi = sides[s]->item[i].gi_profile_id;
      unsigned ci = sides[s]->item[i].ci_profile_id;
      unsigned w = want_count(want, gi, ci), h = want_count(&have, gi, ci);
      if (w == h)
        continue;
      const gs_gi_profile_t *gp = gs_catalog_gi(cat, gi);
      char name[64] = "?";
      if (gp)
        gs_catalog_device_name(gp, gs_catalog_ci(gp, ci), name, sizeof name);
      gs_error_set(err, GS_OK, "%s: wanted %u, found %u", name, w, h);
      return 0;
    }
  return 1;
}
