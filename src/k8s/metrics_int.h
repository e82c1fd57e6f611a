/* `gpuslice k8s metrics`' NVML side (metrics_nvml.c): the GPUs' NVML
 * indices and the per-process SM utilisation NVML samples, read once per
 * GPU or MIG device per scrape, from the last sample the previous scrape
 * saw. */
#ifndef GS_K8S_METRICS_INT_H
#define GS_K8S_METRICS_INT_H

#include <stdbool.h>
#include <sys/types.h>

#include "gpu/nvml_shim.h"
#include "gpuslice/layout.h"

#define GS__MX_MAX_HANDLES 128

typedef struct gs__mx_samples_s {
  nvmlDevice_t handle;
  bool ok; /* NVML answered (no samples since the last scrape is 0 %) */
  unsigned n;
  nvmlProcessUtilizationSample_t *s;
} gs__mx_samples_t;

typedef struct gs__mx_nvml_s {
  gs__nvml_t nvml;
  bool open;
  unsigned n_gpu;
  struct {
    char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    nvmlDevice_t handle;
    unsigned index;
  } gpu[GS_MAX_DEVICES];
  /* the newest sample each handle gave, across scrapes */
  unsigned n_seen;
  struct {
    nvmlDevice_t handle;
    unsigned long long last_ts;
  } seen[GS__MX_MAX_HANDLES];
  /* this scrape's answers */
  unsigned n_cache;
  gs__mx_samples_t cache[GS__MX_MAX_HANDLES];
} gs__mx_nvml_t;

/* Loads NVML (library NULL: the driver's) and lists its GPUs. */
int gs__mx_nvml_open(gs__mx_nvml_t *x, const char *library, gs_error_t *err);
void gs__mx_nvml_close(gs__mx_nvml_t *x);
/* NVML's index of the GPU whose UUID is uuid: false when none is. */
bool gs__mx_gpu_index(const gs__mx_nvml_t *x, const char *uuid,
                      unsigned *index);
/* The SM utilisation of the processes pids (percent of the sampling
 * period, summed over them, at most 100) on the instance: its MIG device
 * (mig: GI gi_id, CI ci_id of the GPU) else the GPU. false when NVML
 * cannot tell (no such call, not supported there). */
bool gs__mx_sm_percent(gs__mx_nvml_t *x, const char *gpu_uuid, bool mig,
                       unsigned gi_id, unsigned ci_id, const pid_t *pids,
                       size_t n_pids, double *percent);
/* Ends a scrape: forgets its answers, remembers their newest samples. */
void gs__mx_scrape_end(gs__mx_nvml_t *x);

#endif
