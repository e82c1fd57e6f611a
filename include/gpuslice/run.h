/* Start a workload inside an instance: the backend confines the process,
 * the instance's identity goes into its environment, then exec. */
#ifndef GPUSLICE_RUN_H
#define GPUSLICE_RUN_H

#include "gpuslice/backend.h"

/* Instance address as the CLI takes it: "GI" (device 0, that GI, its first
 * CI), "DEV:GI", "DEV:GI:CI", or an instance UUID. */
typedef struct gs_instance_ref_s {
  unsigned dev;
  unsigned gi_id;
  int ci_id; /* -1: the GI's first CI */
} gs_instance_ref_t;

int gs_instance_ref_parse(gs_backend_t *be, const char *text,
                          gs_instance_ref_t *out, gs_error_t *err);

/* Confines this process to the instance, sets GPUSLICE_* identity variables
 * and the backend's, and execs argv[0] (PATH searched). memory_bytes: how
 * much of the instance's memory the process asks for (0 = what is left;
 * the soft backend splits an instance's memory among its processes, the
 * others ignore it). Returns only on failure. */
int gs_run_exec(gs_backend_t *be, const gs_instance_ref_t *ref,
                char *const argv[], uint64_t memory_bytes, gs_error_t *err);

/* gs_run_exec for a process that hosts several of a GPU's instances
 * (the soft backend's green isolation): ref names one of them, for its
 * GPU; the process gets that GPU, no instance's identity, and is
 * registered in none, so each instance it serves can leave it (and be
 * destroyed) while it runs. Returns only on failure. */
int gs_run_exec_group(gs_backend_t *be, const gs_instance_ref_t *ref,
                      char *const argv[], gs_error_t *err);

#endif
