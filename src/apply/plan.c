/* Planning every layout change but a destroy (change.c takes the GPU
 * instances a destroy names): a mig-parted config set resolved into each
 * device's wanted layout (MIG-device counts), the smallest change from the
 * current layout to it (existing GPU instances that match a wanted one are
 * kept whenever the rest can still be placed; busy ones must be kept), new
 * GPU instances placed beside the existing ones for create, and layouts
 * compared with a want (assert) or described as a config (export). */
#include "apply_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GROUPS GS_MAX_REQUESTS

/* One GPU instance as a config sees it: its profile and its CIs' profiles
 * (sorted, largest first). */
typedef struct group_s {
  unsigned gi_profile_id;
  unsigned n_ci;
  unsigned ci_profile_id[GS_MAX_CIS];
} group_t;

static void want_add(gs_want_t *want, unsigned gi, unsigned ci,
                     unsigned count) {
  for (unsigned i = 0; i < want->n; i++)
    if (want->item[i].gi_profile_id == gi &&
        want->item[i].ci_profile_id == ci) {
      want->item[i].count += count;
      return;
    }
  if (want->n < GS_MAX_WANT && count > 0)
    want->item[want->n++] = (gs_want_item_t){gi, ci, count};
}

/* ---- config -> want ---------------------------------------------------- */

static bool filter_selects(const gs_config_entry_t *e, const gs_device_t *d) {
  if (e->n_filters == 0)
    return true;
  for (unsigned f = 0; f < e->n_filters; f++)
    if (e->device_filter[f] == d->pci_device_id)
      return true;
  return false;
}

static int entry_want(const gs_config_t *cfg, const gs_config_entry_t *e,
                      const gs_device_t *dev, gs_want_t *want,
                      gs_error_t *err) {
  memset(want, 0, sizeof *want);
  want->mig_enabled = e->mig_enabled;
  for (unsigned m = 0; m < e->n_mig_devices; m++) {
    const gs_config_mig_device_t *md = &e->mig_devices[m];
    gs_profile_ref_t ref;
    int rc = gs_profile_parse(&dev->catalog, md->name, false, &ref, err);
    if (rc != GS_OK) {
      gs_error_prefix(err, "%s:%u:%u: device %u: ", cfg->source, md->mark.line,
                      md->mark.column, dev->index);
      return rc;
    }
    const gs_gi_profile_t *gp = gs_catalog_gi(&dev->catalog, ref.gi_profile_id);
    unsigned ci = ref.ci_profile_id >= 0 ? (unsigned)ref.ci_profile_id
                                         : gs_catalog_ci_full(gp)->id;
    if (want->n == GS_MAX_WANT)
      return gs_error_set(err, GS_ELIMIT, "%s:%u:%u: too many profiles",
                          cfg->source, md->mark.line, md->mark.column);
    want_add(want, ref.gi_profile_id, ci, md->count);
  }
  return GS_OK;
}

int gs_want_from_config(const gs_config_t *cfg, const gs_config_set_t *set,
                        const gs_device_t *devs, unsigned n_devs,
                        gs_want_t *want, bool *selected, gs_error_t *err) {
  int chosen_by[GS_MAX_DEVICES];
  for (unsigned d = 0; d < n_devs; d++) {
    selected[d] = false;
    chosen_by[d] = -1;
  }
  for (unsigned i = 0; i < set->n_entries; i++) {
    const gs_config_entry_t *e = &set->entries[i];
    for (unsigned k = 0; !e->all_devices && k < e->n_devices; k++) {
      bool present = false;
      for (unsigned d = 0; d < n_devs; d++)
        present |= devs[d].index == e->devices[k];
      if (!present)
        return gs_error_set(err, GS_EINVAL,
                            "%s:%u:%u: config '%s' names device %u, but this "
                            "machine has %u device%s (0..%u)",
                            cfg->source, e->mark.line, e->mark.column,
                            set->name, e->devices[k], n_devs,
                            n_devs == 1 ? "" : "s", n_devs ? n_devs - 1 : 0);
    }
    for (unsigned d = 0; d < n_devs; d++) {
      bool listed = e->all_devices;
      for (unsigned k = 0; !listed && k < e->n_devices; k++)
        listed = e->devices[k] == devs[d].index;
      if (!listed || !filter_selects(e, &devs[d]))
        continue;
      if (chosen_by[d] >= 0)
        return gs_error_set(err, GS_EINVAL,
                            "%s:%u:%u: device %u is already configured by "
                            "entry %d of config '%s'",
                            cfg->source, e->mark.line, e->mark.column,
                            devs[d].index, chosen_by[d] + 1, set->name);
      int rc = entry_want(cfg, e, &devs[d], &want[d], err);
      if (rc != GS_OK)
        return rc;
      chosen_by[d] = (int)i;
      selected[d] = true;
    }
  }
  return GS_OK;
}

/* ---- want -> plan ------------------------------------------------------ */

static int cmp_unsigned_desc(const void *a, const void *b) {
  unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
  return (x < y) - (x > y);
}

static void group_sort(group_t *g) {
  qsort(g->ci_profile_id, g->n_ci, sizeof g->ci_profile_id[0],
        cmp_unsigned_desc);
}

/* Can one more CI of ci_id join the group's GI? */
static bool group_accepts(const gs_gi_profile_t *gp, const group_t *g,
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
static int want_groups(const gs_catalog_t *cat, const gs_want_t *want,
                       group_t *groups, unsigned *n_groups, gs_error_t *err) {
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
        if (n == MAX_GROUPS)
          return gs_error_set(err, GS_ELIMIT,
                              "the config asks for more GPU instances than "
                              "%s can hold",
                              cat->model);
        groups[n] = (group_t){.gi_profile_id = gp->id};
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

static void group_of_gi(const gs_gi_t *gi, group_t *g) {
  g->gi_profile_id = gi->profile_id;
  g->n_ci = gi->n_ci;
  for (unsigned i = 0; i < gi->n_ci; i++)
    g->ci_profile_id[i] = gi->ci[i].profile_id;
  group_sort(g);
}

static bool group_equal(const group_t *a, const group_t *b) {
  return a->gi_profile_id == b->gi_profile_id && a->n_ci == b->n_ci &&
         memcmp(a->ci_profile_id, b->ci_profile_id,
                a->n_ci * sizeof a->ci_profile_id[0]) == 0;
}

/* Matches the GIs in keep_mask to wanted groups one to one; *used marks the
 * groups taken. False if some kept GI matches no free group. */
static bool match_keep(const gs_layout_t *cur, unsigned keep_mask,
                       const group_t *groups, unsigned n_groups,
                       bool used[MAX_GROUPS]) {
  memset(used, 0, MAX_GROUPS * sizeof used[0]);
  for (unsigned i = 0; i < cur->n_gi; i++) {
    if (!(keep_mask & (1u << i)))
      continue;
    group_t mine;
    group_of_gi(&cur->gi[i], &mine);
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
                     unsigned keep_mask, const group_t *groups,
                     unsigned n_groups, gs_plan_t *plan) {
  bool used[MAX_GROUPS];
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
    const group_t *g = &groups[idx[r]];
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
  group_t groups[MAX_GROUPS];
  unsigned n_groups = 0;
  int rc = want_groups(cat, want, groups, &n_groups, err);
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
      want_add(out, layout->gi[i].profile_id, layout->gi[i].ci[j].profile_id,
               1);
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

/* ---- create ------------------------------------------------------------ */

/* One --ci token: "1c" (compute slices), an ID, or a CI-qualified name. */
static const gs_ci_profile_t *ci_token(const gs_catalog_t *cat,
                                       const gs_gi_profile_t *gp,
                                       const char *tok, gs_error_t *err) {
  char *end;
  unsigned long v = strtoul(tok, &end, 10);
  if (end != tok && (*end == 'c' || *end == 'C') && end[1] == '\0') {
    for (unsigned k = 0; k < gp->n_ci; k++)
      if (gp->ci[k].compute_slices == v)
        return &gp->ci[k];
    return NULL;
  }
  if (end != tok && *end == '\0')
    return gs_catalog_ci(gp, (unsigned)v);
  gs_profile_ref_t ref;
  if (gs_profile_parse(cat, tok, false, &ref, err) != GS_OK)
    return NULL;
  if (ref.gi_profile_id == gp->id && ref.ci_profile_id >= 0)
    return gs_catalog_ci(gp, (unsigned)ref.ci_profile_id);
  return NULL;
}

static int parse_ci_list(const gs_catalog_t *cat, const gs_gi_profile_t *gp,
                         const char *list, unsigned *ids, unsigned *n,
                         gs_error_t *err) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  *n = 0;
  if (strspn(list, ",") == strlen(list))
    return gs_error_set(err, GS_EINVAL,
                        "--ci needs at least one compute instance profile");
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    gs_error_t why;
    gs_error_clear(&why);
    const gs_ci_profile_t *cp = ci_token(cat, gp, tok, &why);
    if (why.code != GS_OK) {
      if (err)
        *err = why;
      return why.code;
    }
    if (!cp)
      return gs_error_set(err, GS_EINVAL,
                          "compute instance '%s' is not allowed in %s", tok,
                          gp->name);
    if (*n == GS_MAX_CIS)
      return gs_error_set(err, GS_ELIMIT, "too many compute instances");
    ids[(*n)++] = cp->id;
  }
  return GS_OK;
}

/* The GI requests of the profile arguments; ci_of[i] is the CI profile a
 * CI-qualified name asked for, -1 otherwise. */
static int parse_profiles(const gs_device_t *dev, const gs_change_t *c,
                          gs_gi_request_t *req, int *ci_of, size_t *n,
                          gs_error_t *err) {
  *n = 0;
  for (unsigned a = 0; a < c->n_profiles; a++) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", c->profiles[a]);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
      gs_profile_ref_t ref;
      int rc = gs_profile_parse(&dev->catalog, tok, true, &ref, err);
      if (rc != GS_OK)
        return rc;
      if (*n == GS_MAX_REQUESTS)
        return gs_error_set(err, GS_ELIMIT, "too many instances requested");
      req[*n] = (gs_gi_request_t){ref.gi_profile_id, ref.start};
      ci_of[(*n)++] = ref.ci_profile_id;
    }
  }
  if (*n == 0)
    return gs_error_set(err, GS_EINVAL, "no profile given");
  return GS_OK;
}

/* The CIs of one new GI, placed inside it. */
static int plan_cis(const gs_device_t *dev, const gs_gi_profile_t *gp,
                    int ci_of, const char *ci_list, gs_plan_create_t *pc,
                    gs_error_t *err) {
  if (ci_of >= 0) {
    pc->n_ci = 1;
    pc->ci_profile_id[0] = (unsigned)ci_of;
  } else if (ci_list) {
    int rc = parse_ci_list(&dev->catalog, gp, ci_list, pc->ci_profile_id,
                           &pc->n_ci, err);
    if (rc != GS_OK)
      return rc;
  } else {
    pc->n_ci = 1;
    pc->ci_profile_id[0] = gs_catalog_ci_full(gp)->id;
  }
  gs_ci_request_t creq[GS_MAX_CIS];
  for (unsigned j = 0; j < pc->n_ci; j++)
    creq[j] = (gs_ci_request_t){pc->ci_profile_id[j], -1};
  int rc = gs_place_cis(gp, NULL, creq, pc->n_ci, pc->ci_start, err);
  if (rc != GS_OK)
    gs_error_prefix(err, "compute instances of %s: ", gp->name);
  return rc;
}

int gs__plan_create(const gs_device_t *dev, const gs_change_t *c,
                    gs_plan_t *plan, gs_error_t *err) {
  gs_gi_request_t req[GS_MAX_REQUESTS];
  int ci_of[GS_MAX_REQUESTS];
  size_t n = 0;
  unsigned starts[GS_MAX_REQUESTS];
  int rc = parse_profiles(dev, c, req, ci_of, &n, err);
  if (rc == GS_OK)
    rc = gs_place_gis(&dev->catalog, &dev->layout, req, n, starts, err);
  if (rc != GS_OK)
    return rc;
  memset(plan, 0, sizeof *plan);
  plan->mig_enabled = true;
  for (unsigned i = 0; i < dev->layout.n_gi; i++)
    plan->keep_gi[plan->n_keep++] = dev->layout.gi[i].id;
  for (size_t i = 0; i < n; i++) {
    const gs_gi_profile_t *gp = gs_catalog_gi(&dev->catalog, req[i].profile_id);
    gs_plan_create_t *pc = &plan->create[plan->n_create++];
    pc->profile_id = gp->id;
    pc->start = starts[i];
    if ((rc = plan_cis(dev, gp, ci_of[i], c->ci_list, pc, err)) != GS_OK)
      return rc;
  }
  return GS_OK;
}

/* ---- layouts -> config (export) ---------------------------------------- */

int gs_config_from_layouts(gs_config_t *cfg, const char *set_name,
                           const gs_device_t *devs, unsigned n_devs,
                           gs_error_t *err) {
  memset(cfg, 0, sizeof *cfg);
  cfg->source = strdup("export");
  cfg->sets = calloc(1, sizeof *cfg->sets);
  if (!cfg->source || !cfg->sets)
    goto nomem;
  cfg->n_sets = 1;
  gs_config_set_t *set = &cfg->sets[0];
  set->name = strdup(set_name);
  set->entries = calloc(n_devs ? n_devs : 1, sizeof *set->entries);
  if (!set->name || !set->entries)
    goto nomem;
  set->n_entries = n_devs;
  for (unsigned d = 0; d < n_devs; d++) {
    gs_config_entry_t *e = &set->entries[d];
    const gs_layout_t *l = &devs[d].layout;
    e->n_devices = 1;
    e->devices[0] = devs[d].index;
    e->mig_enabled = l->mig_enabled;
    gs_want_t counts = {0};
    for (unsigned g = 0; g < l->n_gi; g++)
      for (unsigned c = 0; c < l->gi[g].n_ci; c++)
        want_add(&counts, l->gi[g].profile_id, l->gi[g].ci[c].profile_id, 1);
    for (unsigned k = 0; k < counts.n && k < GS_CONFIG_MAX_MIG_DEVICES; k++) {
      const gs_gi_profile_t *gp =
          gs_catalog_gi(&devs[d].catalog, counts.item[k].gi_profile_id);
      if (!gp)
        continue;
      gs_config_mig_device_t *md = &e->mig_devices[e->n_mig_devices++];
      gs_catalog_device_name(gp,
                             gs_catalog_ci(gp, counts.item[k].ci_profile_id),
                             md->name, sizeof md->name);
      md->count = counts.item[k].count;
    }
  }
  return GS_OK;
nomem:
  gs_config_release(cfg);
  return gs_error_set(err, GS_ENOMEM, "out of memory");
}
