/* From a wanted layout to backend calls: plan (which GPU instances to keep,
 * destroy and create), execute, and roll back on failure. Also `assert`
 * and `export`, which compare and describe layouts in config terms. */
#ifndef GPUSLICE_APPLY_H
#define GPUSLICE_APPLY_H

#include <stdbool.h>

#include "gpuslice/backend.h"
#include "gpuslice/config.h"
#include "gpuslice/layout.h"

#define GS_MAX_WANT 32

/* One device's wanted layout in mig-parted terms: counts of MIG devices
 * (a GI profile with a CI profile). Like mig-parted, CIs of one kind are
 * packed into as few GIs as they fit in. */
typedef struct gs_want_item_s {
  unsigned gi_profile_id;
  unsigned ci_profile_id;
  unsigned count;
} gs_want_item_t;

typedef struct gs_want_s {
  bool mig_enabled;
  unsigned n;
  gs_want_item_t item[GS_MAX_WANT];
} gs_want_t;

/* Resolves a config set for the devices given: selected[i] tells whether
 * the set names devs[i] (devices, device-filter); want[i] is its layout.
 * Errors carry "SOURCE:LINE:COLUMN: ". A device index the machine lacks,
 * a profile the device's catalog lacks (closest name suggested) or a
 * device listed twice fails with GS_EINVAL. */
int gs_want_from_config(const gs_config_t *cfg, const gs_config_set_t *set,
                        const gs_device_t *devs, unsigned n_devs,
                        gs_want_t *want, bool *selected, gs_error_t *err);

/* A GI to create: profile, start, and its CIs (profile and start). */
typedef struct gs_plan_create_s {
  unsigned profile_id;
  unsigned start;
  unsigned n_ci;
  unsigned ci_profile_id[GS_MAX_CIS];
  unsigned ci_start[GS_MAX_CIS];
} gs_plan_create_t;

typedef struct gs_plan_s {
  bool set_mig_mode; /* mode differs from wanted */
  bool mig_enabled;
  unsigned n_keep, n_destroy, n_create;
  unsigned keep_gi[GS_MAX_GIS];    /* GI IDs kept untouched */
  unsigned destroy_gi[GS_MAX_GIS]; /* GI IDs destroyed (with their CIs) */
  gs_plan_create_t create[GS_MAX_GIS];
} gs_plan_t;

/* Plans the smallest change from current to want: every existing GI whose
 * profile and CIs match a wanted one is kept when the rest can still be
 * placed; busy[i] (may be NULL) marks current->gi[i] as having processes,
 * and a plan that would destroy a busy GI fails with GS_EBUSY naming it. */
int gs_plan_layout(const gs_catalog_t *cat, const gs_layout_t *current,
                   const gs_want_t *want, const bool *busy, gs_plan_t *plan,
                   gs_error_t *err);

/* The layout a plan leads to, with new GIs given the IDs an in-memory
 * backend would give them. For --dry-run output. */
int gs_plan_result(const gs_catalog_t *cat, const gs_layout_t *current,
                   const gs_plan_t *plan, gs_layout_t *after, gs_error_t *err);

typedef struct gs_apply_report_s {
  unsigned n_devices;
  struct {
    unsigned index;
    gs_plan_t plan;
    gs_layout_t before, after;
  } device[GS_MAX_DEVICES];
} gs_apply_report_t;

/* Applies want to every selected device as one transaction: plans all
 * devices first (nothing is touched if any plan fails), executes, and on a
 * failure undoes what was done, in reverse, before returning the error.
 * dry_run plans and reports without calling the backend's write ops. */
int gs_apply(gs_backend_t *be, const gs_want_t *want, const bool *selected,
             unsigned n_devs, bool dry_run, gs_apply_report_t *report,
             gs_error_t *err);

/* Executes the plans in report (made by the caller inside an open change:
 * after be->ops->begin) and commits; on a failure undoes the steps taken,
 * in reverse, and aborts. Always ends the change. report->device[i].after
 * is refreshed from the backend on success. */
int gs_execute(gs_backend_t *be, gs_apply_report_t *report, gs_error_t *err);

/* 1 if layout matches want exactly (same MIG devices, same counts, mode),
 * 0 if not (with what differs in err->msg), negative on error. */
int gs_layout_matches(const gs_catalog_t *cat, const gs_layout_t *layout,
                      const gs_want_t *want, gs_error_t *err);

/* Builds a one-set config (name set_name) describing the devices' layouts,
 * one entry per device, as mig-parted export does. Release with
 * gs_config_release(). */
int gs_config_from_layouts(gs_config_t *cfg, const char *set_name,
                           const gs_device_t *devs, unsigned n_devs,
                           gs_error_t *err);

#endif
