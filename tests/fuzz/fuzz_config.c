/* libFuzzer harness for the config loader: whatever loads must write out as
 * YAML and as JSON, and each output must load back to the same config. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuslice/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_entry(const gs_config_entry_t *a, const gs_config_entry_t *b) {
  if (a->all_devices != b->all_devices || a->n_devices != b->n_devices ||
      a->n_filters != b->n_filters || a->mig_enabled != b->mig_enabled ||
      a->n_mig_devices != b->n_mig_devices)
    return false;
  if (memcmp(a->devices, b->devices, a->n_devices * sizeof a->devices[0]) ||
      memcmp(a->device_filter, b->device_filter,
             a->n_filters * sizeof a->device_filter[0]))
    return false;
  for (unsigned i = 0; i < a->n_mig_devices; i++)
    if (strcmp(a->mig_devices[i].name, b->mig_devices[i].name) != 0 ||
        a->mig_devices[i].count != b->mig_devices[i].count)
      return false;
  return true;
}

static bool same_config(const gs_config_t *a, const gs_config_t *b) {
  if (a->n_sets != b->n_sets)
    return false;
  for (unsigned s = 0; s < a->n_sets; s++) {
    const gs_config_set_t *x = &a->sets[s], *y = &b->sets[s];
    if (strcmp(x->name, y->name) != 0 || x->n_entries != y->n_entries)
      return false;
    for (unsigned e = 0; e < x->n_entries; e++)
      if (!same_entry(&x->entries[e], &y->entries[e]))
        return false;
  }
  return true;
}

static void check_round_trip(const gs_config_t *cfg, gs_config_format_t fmt) {
  gs_error_t err;
  char *text;
  size_t len;
  if (gs_config_emit(cfg, fmt, &text, &len, &err) != GS_OK) {
    fprintf(stderr, "emit failed: %s\n", err.msg);
    abort();
  }
  gs_config_t again;
  if (gs_config_load_buffer(&again, "emitted", text, len, &err) != GS_OK) {
    fprintf(stderr, "emitted config does not load: %s\n%s\n", err.msg, text);
    abort();
  }
  if (!same_config(cfg, &again)) {
    fprintf(stderr, "emitted config loads differently:\n%s\n", text);
    abort();
  }
  gs_config_release(&again);
  free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gs_config_t cfg;
  gs_error_t err;
  if (gs_config_load_buffer(&cfg, "fuzz", (const char *)data, size, &err) !=
      GS_OK)
    return 0;
  check_round_trip(&cfg, GS_CONFIG_YAML);
  check_round_trip(&cfg, GS_CONFIG_JSON);
  gs_config_release(&cfg);
  return 0;
}
