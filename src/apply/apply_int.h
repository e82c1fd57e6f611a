/* Shared between the planners (plan.c) and the transaction runner
 * (change.c). */
#ifndef GPUSLICE_APPLY_INT_H
#define GPUSLICE_APPLY_INT_H

#include "gpuslice/apply.h"
#include "gpuslice/placement.h"

/* The planners of apply and create (a destroy takes the GIs it names, in
 * change.c). busy[i] marks current->gi[i] as in use (NULL: none is); on
 * GS_EBUSY *blocked is the index of the GI in use that the plan would
 * have to destroy. */
int gs__plan_layout(const gs_catalog_t *cat, const gs_layout_t *current,
                    const gs_want_t *want, const bool *busy, gs_plan_t *plan,
                    unsigned *blocked, gs_error_t *err);
int gs__plan_create(const gs_device_t *dev, const gs_change_t *c,
                    gs_plan_t *plan, gs_error_t *err);

#endif
