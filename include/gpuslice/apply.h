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

/* report->busy: the instance that stopped a change because processes run
 * in it (gs_busy_t, backend.h), as begin read it or, for a destroy the
 * backend refused while executing, as ops->processes lists it; never
 * found from an error message. */

typedef struct gs_apply_report_s {
  unsigned n_devices;
  struct {
    gs_device_t dev; /* as planned against: dev.layout is the layout before */
    gs_plan_t plan;
    gs_layout_t after;
  } device[GS_MAX_DEVICES];
  gs_busy_t busy; /* on GS_EBUSY: which instance, used by whom */
} gs_apply_report_t;

/* A layout change: one of the CLI's verbs that change layouts. */
typedef enum {
  GS_CHANGE_APPLY,  /* a config's wanted layout, on the selected devices */
  GS_CHANGE_CREATE, /* new GPU instances beside the existing ones */
  GS_CHANGE_DESTROY /* GPU instances by ID, or all of a device's */
} gs_change_kind_t;

typedef struct gs_change_s {
  gs_change_kind_t kind;
  bool dry_run; /* plan and report; no write op is called */
  /* apply: want[d] for every device d with selected[d] (n_devs of them),
   * as gs_want_from_config makes them */
  const gs_want_t *want;
  const bool *selected;
  unsigned n_devs;
  /* create and destroy: the device */
  unsigned dev;
  /* create: profiles as nvidia-smi -cgi takes them (name, 'MIG name', ID,
   * CI-qualified, :START; comma lists), and the compute instances of each
   * new GI (1c, IDs or names, comma-separated; NULL: one spanning it) */
  char *const *profiles;
  unsigned n_profiles;
  const char *ci_list;
  /* destroy: these GI IDs, or every GI of the device */
  bool all;
  unsigned n_ids;
  unsigned ids[GS_MAX_GIS];
} gs_change_t;

/* Runs a change as one transaction: under the backend's lock, plans every
 * device it names first (nothing is touched if any plan fails; a GI in use
 * is never destroyed: GS_EBUSY with report->busy naming it), then executes
 * destroys before creates, journaled, and on a failure undoes the steps
 * taken, newest first, before returning the error. report->device[i].after
 * is the layout read back after the commit (the planned one on dry_run). */
int gs_change_run(gs_backend_t *be, const gs_change_t *c,
                  gs_apply_report_t *report, gs_error_t *err);

/* Plans a change against catalog-only devices (--gpu MODEL: no backend,
 * nothing in use); devs[i].index is i. */
int gs_change_plan(const gs_device_t *devs, unsigned n_devs,
                   const gs_change_t *c, gs_apply_report_t *report,
                   gs_error_t *err);

/* gs_change_run of a GS_CHANGE_APPLY. */
int gs_apply(gs_backend_t *be, const gs_want_t *want, const bool *selected,
             unsigned n_devs, bool dry_run, gs_apply_report_t *report,
             gs_error_t *err);

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
