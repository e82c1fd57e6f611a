/* Configs and layouts: a mig-parted config set resolved into each device's
 * wanted layout (for apply and assert), and layouts described as a config
 * (export). Planning is in plan.c and edit.c, executing in change.c. */
#include "apply_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- config -> want ---------------------------------------------------- */

static bool filter_selects(const gs_config_entry_t *e, const gs_device_t *d) {
  if (e->n_filters == 0)
    return true;
  for (unsigned f = 0; f < e->n_filters; f++)
    if (e->device_filter[f] == d->pci_device_id)
      return true;
  return false;
}

static int entry_want(const gs_config_t *cfg, const gs_config_entry_t *e,
                      const gs_device_t *dev, gs_want_t *want,
                      gs_error_t *err) {
  memset(want, 0, sizeof *want);
  want->mig_enabled = e->mig_enabled;
  for (unsigned m = 0; m < e->n_mig_devices; m++) {
    const gs_config_mig_device_t *md = &e->mig_devices[m];
    gs_profile_ref_t ref;
    int rc = gs_profile_parse(&dev->catalog, md->name, false, &ref, err);
    if (rc != GS_OK) {
      gs_error_prefix(err, "%s:%u:%u: device %u: ", cfg->source, md->mark.line,
                      md->mark.column, dev->index);
      return rc;
    }
    const gs_gi_profile_t *gp = gs_catalog_gi(&dev->catalog, ref.gi_profile_id);
    unsigned ci = ref.ci_profile_id >= 0 ? (unsigned)ref.ci_profile_id
                                         : gs_catalog_ci_full(gp)->id;
    if (want->n == GS_MAX_WANT)
      return gs_error_set(err, GS_ELIMIT, "%s:%u:%u: too many profiles",
                          cfg->source, md->mark.line, md->mark.column);
    gs__want_add(want, ref.gi_profile_id, ci, md->count);
  }
  return GS_OK;
}

int gs_want_from_config(const gs_config_t *cfg, const gs_config_set_t *set,
                        const gs_device_t *devs, unsigned n_devs,
                        gs_want_t *want, bool *selected, gs_error_t *err) {
  int chosen_by[GS_MAX_DEVICES];
  for (unsigned d = 0; d < n_devs; d++) {
    selected[d] = false;
    chosen_by[d] = -1;
  }
  for (unsigned i = 0; i < set->n_entries; i++) {
    const gs_config_entry_t *e = &set->entries[i];
    for (unsigned k = 0; !e->all_devices && k < e->n_devices; k++) {
      bool present = false;
      for (unsigned d = 0; d < n_devs; d++)
        present |= devs[d].index == e->devices[k];
      if (!present)
        return gs_error_set(err, GS_EINVAL,
                            "%s:%u:%u: config '%s' names device %u, but this "
                            "machine has %u device%s (0..%u)",
                            cfg->source, e->mark.line, e->mark.column,
                            set->name, e->devices[k], n_devs,
                            n_devs == 1 ? "" : "s", n_devs ? n_devs - 1 : 0);
    }
    for (unsigned d = 0; d < n_devs; d++) {
      bool listed = e->all_devices;
      for (unsigned k = 0; !listed && k < e->n_devices; k++)
        listed = e->devices[k] == devs[d].index;
      if (!listed || !filter_selects(e, &devs[d]))
        continue;
      if (chosen_by[d] >= 0)
        return gs_error_set(err, GS_EINVAL,
                            "%s:%u:%u: device %u is already configured by "
                            "entry %d of config '%s'",
                            cfg->source, e->mark.line, e->mark.column,
                            devs[d].index, chosen_by[d] + 1, set->name);
      int rc = entry_want(cfg, e, &devs[d], &want[d], err);
      if (rc != GS_OK)
        return rc;
      chosen_by[d] = (int)i;
      selected[d] = true;
    }
  }
  return GS_OK;
}

/* ---- layouts -> config (export) ---------------------------------------- */

int gs_config_from_layouts(gs_config_t *cfg, const char *set_name,
                           const gs_device_t *devs, unsigned n_devs,
                           gs_error_t *err) {
  memset(cfg, 0, sizeof *cfg);
  cfg->source = strdup("export");
  cfg->sets = calloc(1, sizeof *cfg->sets);
  if (!cfg->source || !cfg->sets)
    goto nomem;
  cfg->n_sets = 1;
  gs_config_set_t *set = &cfg->sets[0];
  set->name = strdup(set_name);
  set->entries = calloc(n_devs ? n_devs : 1, sizeof *set->entries);
  if (!set->name || !set->entries)
    goto nomem;
  set->n_entries = n_devs;
  for (unsigned d = 0; d < n_devs; d++) {
    gs_config_entry_t *e = &set->entries[d];
    const gs_layout_t *l = &devs[d].layout;
    e->n_devices = 1;
    e->devices[0] = devs[d].index;
    e->mig_enabled = l->mig_enabled;
    gs_want_t counts = {0};
    for (unsigned g = 0; g < l->n_gi; g++)
      for (unsigned c = 0; c < l->gi[g].n_ci; c++)
        gs__want_add(&counts, l->gi[g].profile_id, l->gi[g].ci[c].profile_id,
                     1);
    for (unsigned k = 0; k < counts.n && k < GS_CONFIG_MAX_MIG_DEVICES; k++) {
      const gs_gi_profile_t *gp =
          gs_catalog_gi(&devs[d].catalog, counts.item[k].gi_profile_id);
      if (!gp)
        continue;
      gs_config_mig_device_t *md = &e->mig_devices[e->n_mig_devices++];
      gs_catalog_device_name(gp,
                             gs_catalog_ci(gp, counts.item[k].ci_profile_id),
                             md->name, sizeof md->name);
      md->count = counts.item[k].count;
    }
  }
  return GS_OK;
nomem:
  gs_config_release(cfg);
  return gs_error_set(err, GS_ENOMEM, "out of memory");
}
