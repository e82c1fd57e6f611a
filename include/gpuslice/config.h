/* mig-parted v1 configuration files: loaded with libyaml (JSON is accepted
 * too, as YAML flow style) and written back as YAML or JSON. This module
 * checks structure and value types; profile names are resolved against a
 * device's catalog by the apply module, with the line and column kept here. */
#ifndef GPUSLICE_CONFIG_H
#define GPUSLICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpuslice/error.h"

#define GS_CONFIG_MAX_BYTES (1u << 20) /* a larger file is refused */
#define GS_CONFIG_MAX_DEVICES 64       /* indices 0..63 in a devices list */
#define GS_CONFIG_MAX_FILTERS 8
#define GS_CONFIG_MAX_MIG_DEVICES 32 /* keys in one mig-devices map */
#define GS_CONFIG_MAX_COUNT 64       /* largest count of one profile */

typedef struct gs_config_mark_s {
  unsigned line;   /* 1-based */
  unsigned column; /* 1-based */
} gs_config_mark_t;

typedef struct gs_config_mig_device_s {
  char name[64]; /* key as written: "1g.10gb", "1c.3g.40gb", "19" */
  unsigned count;
  gs_config_mark_t mark; /* of the key */
} gs_config_mig_device_t;

typedef struct gs_config_entry_s {
  bool all_devices;
  unsigned n_devices;
  unsigned devices[GS_CONFIG_MAX_DEVICES];
  unsigned n_filters;
  uint32_t device_filter[GS_CONFIG_MAX_FILTERS]; /* 0x233010DE */
  bool mig_enabled;
  unsigned n_mig_devices;
  gs_config_mig_device_t mig_devices[GS_CONFIG_MAX_MIG_DEVICES];
  gs_config_mark_t mark; /* of the entry's mapping */
} gs_config_entry_t;

typedef struct gs_config_set_s {
  char *name;
  unsigned n_entries;
  gs_config_entry_t *entries;
  gs_config_mark_t mark;
} gs_config_set_t;

typedef struct gs_config_s {
  char *source; /* path or label used in messages */
  unsigned n_sets;
  gs_config_set_t *sets; /* in file order */
} gs_config_t;

/* Loads and checks a file. Every error message starts with
 * "PATH:LINE:COLUMN: ". On failure *cfg holds nothing to release.
 * Caller releases a loaded config with gs_config_release(). */
int gs_config_load_file(gs_config_t *cfg, const char *path, gs_error_t *err);
int gs_config_load_buffer(gs_config_t *cfg, const char *source,
                          const char *data, size_t len, gs_error_t *err);
void gs_config_release(gs_config_t *cfg);

/* The set called name; GS_ENOTFOUND listing the names the file has. */
const gs_config_set_t *gs_config_find(const gs_config_t *cfg, const char *name,
                                      gs_error_t *err);

typedef enum { GS_CONFIG_YAML, GS_CONFIG_JSON } gs_config_format_t;

/* Writes cfg as a mig-parted v1 document. *out is malloc'd, NUL-terminated;
 * the caller frees it. */
int gs_config_emit(const gs_config_t *cfg, gs_config_format_t format,
                   char **out, size_t *len, gs_error_t *err);

#endif
