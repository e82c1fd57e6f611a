/* Placement engine: where requested GPU instances (and compute instances
 * inside a GPU instance) go, whatever order they were asked in; the precise
 * reason when they cannot; and what capacity remains. */
#ifndef GPUSLICE_PLACEMENT_H
#define GPUSLICE_PLACEMENT_H

#include <stddef.h>

#include "gpuslice/catalog.h"
#include "gpuslice/layout.h"

#define GS_MAX_REQUESTS 16

typedef struct gs_gi_request_s {
  unsigned profile_id; /* MIG GI profile ID */
  int start;           /* -1: engine chooses */
} gs_gi_request_t;

/* Places n GI requests beside the GIs already in `existing`. On success
 * starts[i] is request i's memory-slice start. Among all valid placements
 * the engine picks the one that leaves the largest profiles creatable
 * (lexicographically, largest profile first), then the highest starts
 * (small instances pack toward the top, as the driver places them). Fails with
 * GS_ELIMIT (max count), GS_EINVAL (illegal explicit start) or GS_ENOFIT, with
 * a message naming the profile, the slices and what is in the way. */
int gs_place_gis(const gs_catalog_t *cat, const gs_layout_t *existing,
                 const gs_gi_request_t *req, size_t n, unsigned *starts,
                 gs_error_t *err);

typedef struct gs_ci_request_s {
  unsigned profile_id; /* NVML CI profile */
  int start;           /* -1: engine chooses */
} gs_ci_request_t;

/* Same for compute instances inside one GI (existing may be NULL for a GI
 * about to be created). */
int gs_place_cis(const gs_gi_profile_t *gi_prof, const gs_gi_t *existing,
                 const gs_ci_request_t *req, size_t n, unsigned *starts,
                 gs_error_t *err);

/* How many more GIs of each catalog profile could be created alone beside
 * the layout (nvidia-smi -lgip's Free column): free[i] for cat->gi[i]. */
void gs_capacity(const gs_catalog_t *cat, const gs_layout_t *layout,
                 unsigned free[GS_MAX_GI_PROFILES]);

/* Starts where one GI of profile_id could be created now. */
uint32_t gs_free_starts(const gs_catalog_t *cat, const gs_layout_t *layout,
                        unsigned profile_id);

#endif
