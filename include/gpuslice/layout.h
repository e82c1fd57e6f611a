/* A device's layout: its GPU instances and their compute instances. A plain
 * value type (no heap), so it can be copied, compared and rolled back. */
#ifndef GPUSLICE_LAYOUT_H
#define GPUSLICE_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "gpuslice/catalog.h"
#include "gpuslice/error.h"

#define GS_MAX_GIS 8      /* at most 7 on any MIG GPU; one spare */
#define GS_MAX_CIS 8      /* per GI; at most 7 */
#define GS_MAX_DEVICES 64 /* devices one backend or state file holds */
#define GS_UUID_MAX 64

typedef struct gs_ci_s {
  unsigned id;
  unsigned profile_id; /* NVML CI profile (gs_ci_profile_t.id) */
  unsigned start;      /* on the GI's compute-slice axis */
  char uuid[GS_UUID_MAX];
} gs_ci_t;

typedef struct gs_gi_s {
  unsigned id;
  unsigned profile_id; /* MIG profile ID */
  unsigned start;      /* memory slice */
  char uuid[GS_UUID_MAX];
  unsigned n_ci;
  gs_ci_t ci[GS_MAX_CIS];
} gs_gi_t;

typedef struct gs_layout_s {
  bool mig_enabled; /* partitioning on; false = the whole device, no GIs */
  unsigned n_gi;
  gs_gi_t gi[GS_MAX_GIS]; /* ascending by start */
} gs_layout_t;

void gs_layout_init(gs_layout_t *layout);

gs_gi_t *gs_layout_find_gi(gs_layout_t *layout, unsigned gi_id);
const gs_gi_t *gs_layout_find_gi_const(const gs_layout_t *layout,
                                       unsigned gi_id);
gs_ci_t *gs_gi_find_ci(gs_gi_t *gi, unsigned ci_id);

/* Memory-slice bitmap a layout occupies, and the compute slices it uses. */
uint32_t gs_layout_used_slices(const gs_catalog_t *cat,
                               const gs_layout_t *layout);
unsigned gs_layout_used_compute(const gs_catalog_t *cat,
                                const gs_layout_t *layout);
/* Compute-slice bitmap the CIs of one GI occupy. */
uint32_t gs_gi_used_compute(const gs_gi_profile_t *prof, const gs_gi_t *gi);

/* In-memory edits used by software backends and by planning. IDs are the
 * lowest free (GIs from 1, CIs from 0), as the driver hands them out.
 * They check bounds and overlap and fail without changing the layout. */
int gs_layout_add_gi(gs_layout_t *layout, const gs_catalog_t *cat,
                     unsigned profile_id, unsigned start, unsigned *gi_id,
                     gs_error_t *err);
int gs_layout_remove_gi(gs_layout_t *layout, unsigned gi_id, gs_error_t *err);
int gs_layout_add_ci(gs_layout_t *layout, const gs_catalog_t *cat,
                     unsigned gi_id, unsigned ci_profile_id, unsigned start,
                     unsigned *ci_id, gs_error_t *err);
int gs_layout_remove_ci(gs_layout_t *layout, unsigned gi_id, unsigned ci_id,
                        gs_error_t *err);

/* Full check of a layout against its catalog: profiles exist, starts are
 * legal, no overlap, max counts, CI rules. GS_ECORRUPT with the reason. */
int gs_layout_validate(const gs_catalog_t *cat, const gs_layout_t *layout,
                       gs_error_t *err);

#endif
