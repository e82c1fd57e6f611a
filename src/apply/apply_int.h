/* Shared between the planners (plan.c, edit.c) and the transaction runner
 * (change.c). */
#ifndef GPUSLICE_APPLY_INT_H
#define GPUSLICE_APPLY_INT_H

#include "gpuslice/apply.h"
#include "gpuslice/placement.h"

#define GS__MAX_GROUPS GS_MAX_REQUESTS

/* One GPU instance as a config sees it: its profile and its CIs' profiles
 * (sorted, largest first). */
typedef struct gs__group_s {
  unsigned gi_profile_id;
  unsigned n_ci;
  unsigned ci_profile_id[GS_MAX_CIS];
} gs__group_t;

int gs__want_groups(const gs_catalog_t *cat, const gs_want_t *want,
                    gs__group_t *groups, unsigned *n_groups, gs_error_t *err);
void gs__group_of_gi(const gs_gi_t *gi, gs__group_t *g);
void gs__want_add(gs_want_t *want, unsigned gi, unsigned ci, unsigned count);

/* The three planners. busy[i] marks dev->layout.gi[i] as in use (NULL:
 * none is); on GS_EBUSY *blocked is the index of the GI in use that the
 * plan would have to destroy. */
int gs__plan_layout(const gs_catalog_t *cat, const gs_layout_t *current,
                    const gs_want_t *want, const bool *busy, gs_plan_t *plan,
                    unsigned *blocked, gs_error_t *err);
int gs__plan_create(const gs_device_t *dev, const gs_change_t *c,
                    gs_plan_t *plan, gs_error_t *err);
int gs__plan_destroy(const gs_device_t *dev, const gs_change_t *c,
                     const bool *busy, gs_plan_t *plan, unsigned *blocked,
                     gs_error_t *err);

#endif
