/* Profile catalogs: what GPU-instance and compute-instance profiles a device
 * offers, where they may be placed, and what each one gets. Tables for the
 * MIG GPUs live in src/catalog/catalog_data.c; soft and host catalogs are
 * synthesized with the same geometry so that configs read the same. */
#ifndef GPUSLICE_CATALOG_H
#define GPUSLICE_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "gpuslice/error.h"

#define GS_MAX_GI_PROFILES 16
#define GS_MAX_CI_PROFILES 8
#define GS_MAX_SLICES 8 /* memory slices of the largest MIG GPU */
#define GS_PROFILE_NAME_MAX 32

/* Compute-instance profile IDs are NVML's values. */
enum { GS_CI_1C = 0, GS_CI_2C = 1, GS_CI_3C = 2, GS_CI_4C = 3, GS_CI_7C = 4 };

typedef struct gs_ci_profile_s {
  unsigned id;             /* NVML CI profile: 1c=0, 2c=1, 3c=2, 4c=3, 7c=4 */
  unsigned compute_slices; /* the "c" count */
  unsigned max_count;      /* per GPU instance */
  uint32_t start_mask; /* bit s set: may start at compute slice s of the GI */
} gs_ci_profile_t;

typedef struct gs_gi_profile_s {
  unsigned id;         /* MIG profile ID as nvidia-smi -lgip prints it */
  unsigned nvml_index; /* NVML_GPU_INSTANCE_PROFILE_* value */
  char name[GS_PROFILE_NAME_MAX]; /* "1g.10gb", "1g.10gb+me" (no "MIG ") */
  unsigned compute_slices;        /* the "g" count */
  unsigned memory_slices;         /* placement size on the memory axis */
  unsigned max_count;             /* per device */
  uint32_t start_mask;            /* bit s set: may start at memory slice s */
  uint64_t memory_mib; /* memory as the driver reports it; 0 = unknown */
  unsigned sms;        /* 0 = unknown (NVML reports it on live hardware) */
  unsigned copy_engines, decoders, encoders, jpegs, ofas;
  bool media_extensions; /* the "+me" variant */
  unsigned n_ci;
  gs_ci_profile_t ci[GS_MAX_CI_PROFILES]; /* allowed CI profiles, ascending */
} gs_gi_profile_t;

typedef enum {
  GS_CATALOG_TABLE, /* a MIG GPU from the reference tables */
  GS_CATALOG_NVML,  /* read from NVML on live hardware */
  GS_CATALOG_SOFT,  /* synthesized for an NVIDIA GPU with no table */
  GS_CATALOG_HOST   /* synthesized for a CPU machine */
} gs_catalog_source_t;

typedef struct gs_catalog_s {
  char model[32];   /* "h100-80gb", "host", "soft" */
  char product[96]; /* "NVIDIA H100 80GB HBM3" */
  gs_catalog_source_t source;
  unsigned memory_slices;  /* 8, or 4 on the A30 */
  unsigned compute_slices; /* 7, or 4 on the A30 */
  unsigned total_sms;      /* SMs, or CPU cores for the host catalog */
  uint64_t total_memory_mib;
  unsigned n_pci_ids;
  uint32_t pci_device_ids[4]; /* as mig-parted's device-filter: 0x233010DE */
  unsigned n_gi;
  gs_gi_profile_t gi[GS_MAX_GI_PROFILES]; /* ascending by compute slices */
  /* For a catalog read from NVML: where it differs from gpuslice's table
   * for the model ("" when it does not, or there is no table). */
  char differences[384];
} gs_catalog_t;

/* The models `--gpu MODEL` accepts, in catalog order. */
unsigned gs_catalog_model_count(void);
const char *gs_catalog_model_name(unsigned i);

/* Fills *out with the table of a model ("a100-40gb"; case-insensitive).
 * An unknown model fails with GS_ENOTFOUND naming the closest model. */
int gs_catalog_for_model(gs_catalog_t *out, const char *model, gs_error_t *err);

/* Finds the table for a PCI device ID (0x20B010DE) and, where one ID covers
 * several memory sizes, the memory in MiB. GS_ENOTFOUND if none. */
int gs_catalog_for_pci_id(gs_catalog_t *out, uint32_t pci_device_id,
                          uint64_t memory_mib, gs_error_t *err);

/* Synthesized catalogs, same geometry as the 7/8-slice MIG GPUs. A soft
 * profile's SM count is a multiple of 8 (the SM granularity of green
 * contexts and MPS on Hopper), at least 8. The host catalog treats CPU
 * cores as SMs. */
void gs_catalog_synth_soft(gs_catalog_t *out, const char *product, unsigned sms,
                           uint64_t memory_mib);
void gs_catalog_synth_host(gs_catalog_t *out, unsigned cpu_cores,
                           uint64_t memory_mib);

const gs_gi_profile_t *gs_catalog_gi(const gs_catalog_t *cat,
                                     unsigned profile_id);
const gs_ci_profile_t *gs_catalog_ci(const gs_gi_profile_t *gi,
                                     unsigned ci_profile_id);
/* The CI profile that spans the whole GI (nvidia-smi -C creates it). */
const gs_ci_profile_t *gs_catalog_ci_full(const gs_gi_profile_t *gi);

/* "3c.7g.80gb" for a CI profile inside a GI profile; the GI's own name
 * when the CI spans the whole GI (as mig-parted and nvidia-smi name it). */
void gs_catalog_device_name(const gs_gi_profile_t *gi,
                            const gs_ci_profile_t *ci, char *buf,
                            unsigned size);

/* A parsed profile reference: "1g.10gb", "MIG 1g.10gb", "19",
 * "1c.3g.40gb", "1g.10gb+me", optionally ":START" when allowed. */
typedef struct gs_profile_ref_s {
  unsigned gi_profile_id;
  int ci_profile_id; /* -1: the full-GI CI (default) */
  int start;         /* -1: any placement */
} gs_profile_ref_t;

/* Parses text against cat. With allow_start, "PROFILE:START" is accepted.
 * Unknown names fail with GS_ENOTFOUND and suggest the closest name; a
 * start the profile cannot take fails with GS_EINVAL listing legal starts. */
int gs_profile_parse(const gs_catalog_t *cat, const char *text,
                     bool allow_start, gs_profile_ref_t *out, gs_error_t *err);

/* Describes in buf where live (read from the hardware) differs from table:
 * profiles missing on either side, names, memory, SMs, max counts and
 * placements ("profile 19: memory 9984 MiB, table 9728; ..."). Values the
 * table does not know (0) are not differences. buf is "" when they agree. */
void gs_catalog_differences(const gs_catalog_t *live, const gs_catalog_t *table,
                            char *buf, unsigned size);

/* Formats a start mask as "0,2,4,6" (for messages and tables). */
void gs_format_starts(uint32_t mask, char *buf, unsigned size);

#endif
