/* Internals of the mig backend shared by mig.c (the backend's operations)
 * and mig_read.c (catalog and layout read from NVML); and its constructor,
 * until it joins gs_backend_open() and the public header. */
#ifndef GPUSLICE_MIG_INT_H
#define GPUSLICE_MIG_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "gpu/nvml_shim.h"
#include "gpuslice/backend.h"

#define GS__MIG_PATH_MAX 4096
#define GS__MIG_MAX_LISTED 16 /* instances asked for per profile and call */

/* One GPU whose MIG mode was on when the backend opened. */
typedef struct gs__mig_dev_s {
  unsigned nvml_index;
  nvmlDevice_t handle;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  char uuid[GS_UUID_MAX];
  uint32_t pci_device_id;
  uint64_t memory_mib;
  bool have_catalog;
  bool ci_from_nvml[GS_MAX_GI_PROFILES]; /* CI list read from a live GI */
  gs_catalog_t cat;
} gs__mig_dev_t;

typedef struct gs__mig_s {
  gs_backend_t be;
  gs__nvml_t nvml;
  char lock_path[GS__MIG_PATH_MAX];
  int lock_fd; /* -1 outside a change */
  unsigned n_dev;
  gs__mig_dev_t *dev;
} gs__mig_t;

/* "A100-SXM4-40GB" for messages: NVML's name without "NVIDIA ". */
const char *gs__mig_short_name(const gs__mig_dev_t *d);

/* Fails with the mapped code and "<what> on GPU n (name): <call> failed:
 * <NVML's text>". */
int gs__mig_fail(const gs__mig_t *m, const gs__mig_dev_t *d, nvmlReturn_t r,
                 const char *call, gs_error_t *err, const char *what);

/* NVML's "no such profile here" answers, as opposed to real failures. */
bool gs__mig_not_offered(nvmlReturn_t r);

/* d->cat from NVML's profile reports, the table filling what NVML leaves
 * out (names on v1-only drivers, placements for unprivileged callers, CI
 * rules until a live GI shows them). */
int gs__mig_build_catalog(gs__mig_t *m, gs__mig_dev_t *d, gs_error_t *err);

/* Replaces the table's CI rules of profile_id with NVML's, read on the live
 * GI gih, the first time such a GI is seen. Failures keep the table's. */
void gs__mig_refresh_cis(gs__mig_t *m, gs__mig_dev_t *d, nvmlGpuInstance_t gih,
                         unsigned profile_id);

/* The compute instances of gih into gi->ci, ascending by start. */
int gs__mig_read_cis(gs__mig_t *m, gs__mig_dev_t *d, nvmlGpuInstance_t gih,
                     gs_gi_t *gi, gs_error_t *err);

/* The MIG mode and every GPU and compute instance, with MIG device UUIDs. */
int gs__mig_read_layout(gs__mig_t *m, gs__mig_dev_t *d, gs_layout_t *layout,
                        gs_error_t *err);

/* Opens the MIG backend over NVML loaded from nvml_path (NULL: the
 * driver's libnvidia-ml.so.1). Its devices are the GPUs whose MIG mode is
 * enabled when it opens, in NVML order; none is not an error (device_count
 * says 0). opt->state_dir holds mig.lock, which begin/commit take and
 * release so that two gpuslice commands never interleave their changes;
 * the hardware is the only state. Without a driver: GS_ENODEV. Caller
 * closes it with gs_backend_close(). */
int gs__backend_mig_open(gs_backend_t **out, const gs_backend_options_t *opt,
                         const char *nvml_path, gs_error_t *err);

#endif
