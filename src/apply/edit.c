/* Planning create and destroy: new GPU instances placed beside the existing
 * ones (profile names resolved against the device's catalog), and named or
 * all GPU instances removed. The transaction runner (change.c) executes
 * these plans the same way as apply's. */
#include "apply_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static bool destroy_selects(const gs_change_t *c, unsigned gi_id) {
  for (unsigned k = 0; !c->all && k < c->n_ids; k++)
    if (c->ids[k] == gi_id)
      return true;
  return c->all;
}

int gs__plan_destroy(const gs_device_t *dev, const gs_change_t *c,
                     const bool *busy, gs_plan_t *plan, unsigned *blocked,
                     gs_error_t *err) {
  const gs_layout_t *l = &dev->layout;
  for (unsigned k = 0; k < c->n_ids; k++)
    if (!gs_layout_find_gi_const(l, c->ids[k]))
      return gs_error_set(err, GS_ENOTFOUND, "no GPU instance %u on device %u",
                          c->ids[k], dev->index);
  memset(plan, 0, sizeof *plan);
  plan->mig_enabled = l->mig_enabled;
  for (unsigned i = 0; i < l->n_gi; i++) {
    if (!destroy_selects(c, l->gi[i].id)) {
      plan->keep_gi[plan->n_keep++] = l->gi[i].id;
    } else if (busy && busy[i]) {
      const gs_gi_profile_t *p =
          gs_catalog_gi(&dev->catalog, l->gi[i].profile_id);
      *blocked = i;
      return gs_error_set(err, GS_EBUSY,
                          "GPU instance %u (%s) is in use and cannot be "
                          "destroyed",
                          l->gi[i].id, p ? p->name : "?");
    } else {
      plan->destroy_gi[plan->n_destroy++] = l->gi[i].id;
    }
  }
  return GS_OK;
}
