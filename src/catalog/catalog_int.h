/* Private shapes of the catalog tables: the slice geometry of a GPU family
 * and the per-model facts (names, memory, SMs, engines, PCI IDs) that
 * catalog.c joins into a gs_catalog_t. The data is in catalog_data.c. */
#ifndef GPUSLICE_CATALOG_INT_H
#define GPUSLICE_CATALOG_INT_H

#include "gpuslice/catalog.h"

/* One GI profile's geometry, the same on every GPU of a slice family. */
typedef struct gs__gi_geometry_s {
  unsigned id;
  unsigned nvml_index;
  unsigned compute_slices;
  unsigned memory_slices; /* placement size */
  unsigned max_count;
  uint32_t start_mask;
  bool media_extensions;
  unsigned n_ci;
  gs_ci_profile_t ci[GS_MAX_CI_PROFILES];
} gs__gi_geometry_t;

typedef struct gs__geometry_s {
  const char *name;
  unsigned memory_slices;
  unsigned compute_slices;
  unsigned n_gi;
  gs__gi_geometry_t gi[GS_MAX_GI_PROFILES]; /* in catalog order */
} gs__geometry_t;

/* Engines of one profile; shared by the models of one GPU generation. */
typedef struct gs__engines_s {
  unsigned id;
  unsigned copy_engines, decoders, encoders, jpegs, ofas;
} gs__engines_t;

/* What one model's profile gets. 0 memory or SMs = unknown. */
typedef struct gs__profile_facts_s {
  unsigned id;
  const char *name;
  uint64_t memory_mib;
  unsigned sms;
} gs__profile_facts_t;

typedef struct gs__model_s {
  const char *model;   /* the --gpu name */
  const char *product; /* as NVML names the device */
  const gs__geometry_t *geometry;
  const gs__engines_t *engines; /* geometry->n_gi rows; NULL = unknown */
  unsigned total_sms;           /* 0 = unknown */
  unsigned memory_gb; /* nominal size, tells apart models sharing an ID */
  unsigned n_pci_ids;
  uint32_t pci_device_ids[4];
  gs__profile_facts_t profiles[GS_MAX_GI_PROFILES]; /* geometry->n_gi */
} gs__model_t;

extern const gs__geometry_t gs__geometry_7x8;
extern const gs__geometry_t gs__geometry_4x4;
extern const gs__model_t gs__models[];
extern const unsigned gs__n_models;

#endif
