/* Applying: resolve a config for this machine's devices, plan every device
 * before touching any, execute through the backend, and undo what was
 * done if a step fails. Also builds configs from layouts (export). */
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
      gs_error_prefix(err, "%s:%u:%u: device %u: ", cfg->source,
                      md->mark.line, md->mark.column, dev->index);
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

/* ---- execution with undo ----------------------------------------------- */

typedef enum { STEP_GI_CREATED, STEP_CI_CREATED, STEP_CI_DESTROYED,
               STEP_GI_DESTROYED, STEP_MODE_SET } step_kind_t;

typedef struct step_s {
  step_kind_t kind;
  unsigned dev, gi_id, ci_id;
  unsigned profile_id, start; /* what to recreate on undo */
  bool mode_before;
} step_t;

typedef struct journal_s {
  unsigned n;
  step_t step[GS_MAX_DEVICES * GS_MAX_GIS * (GS_MAX_CIS + 1) * 2 + 64];
} journal_t;

static void journal_push(journal_t *j, step_t s) {
  j->step[j->n++] = s;
}

/* Undoes steps newest first; a recreated GI gets a new ID, so later (older)
 * steps that name the old ID are redirected. */
static int undo(gs_backend_t *be, journal_t *j, gs_error_t *err) {
  const gs_backend_ops_t *ops = be->ops;
  int first_rc = GS_OK;
  for (unsigned k = j->n; k-- > 0;) {
    step_t *s = &j->step[k];
    int rc = GS_OK;
    unsigned new_id = 0;
    switch (s->kind) {
    case STEP_CI_CREATED:
      rc = ops->ci_destroy(be, s->dev, s->gi_id, s->ci_id, err);
      break;
    case STEP_GI_CREATED:
      rc = ops->gi_destroy(be, s->dev, s->gi_id, err);
      break;
    case STEP_CI_DESTROYED:
      rc = ops->ci_create(be, s->dev, s->gi_id, s->profile_id, s->start,
                          &new_id, err);
      break;
    case STEP_GI_DESTROYED:
      rc = ops->gi_create(be, s->dev, s->profile_id, s->start, &new_id, err);
      for (unsigned m = 0; rc == GS_OK && m < k; m++)
        if (j->step[m].dev == s->dev && j->step[m].gi_id == s->gi_id)
          j->step[m].gi_id = new_id;
      break;
    case STEP_MODE_SET:
      rc = ops->set_mig_mode(be, s->dev, s->mode_before, err);
      break;
    }
    if (rc != GS_OK && first_rc == GS_OK)
      first_rc = rc;
  }
  return first_rc;
}

static int destroy_gi(gs_backend_t *be, unsigned dev, const gs_gi_t *gi,
                      journal_t *j, gs_error_t *err) {
  for (unsigned c = gi->n_ci; c-- > 0;) {
    int rc = be->ops->ci_destroy(be, dev, gi->id, gi->ci[c].id, err);
    if (rc != GS_OK)
      return rc;
    journal_push(j, (step_t){.kind = STEP_CI_DESTROYED, .dev = dev,
                             .gi_id = gi->id, .ci_id = gi->ci[c].id,
                             .profile_id = gi->ci[c].profile_id,
                             .start = gi->ci[c].start});
  }
  int rc = be->ops->gi_destroy(be, dev, gi->id, err);
  if (rc == GS_OK)
    journal_push(j, (step_t){.kind = STEP_GI_DESTROYED, .dev = dev,
                             .gi_id = gi->id, .profile_id = gi->profile_id,
                             .start = gi->start});
  return rc;
}

static int create_gi(gs_backend_t *be, unsigned dev, const gs_plan_create_t *c,
                     journal_t *j, gs_error_t *err) {
  unsigned gi_id;
  int rc = be->ops->gi_create(be, dev, c->profile_id, c->start, &gi_id, err);
  if (rc != GS_OK)
    return rc;
  journal_push(j, (step_t){.kind = STEP_GI_CREATED, .dev = dev,
                           .gi_id = gi_id});
  for (unsigned k = 0; k < c->n_ci; k++) {
    unsigned ci_id;
    rc = be->ops->ci_create(be, dev, gi_id, c->ci_profile_id[k],
                            c->ci_start[k], &ci_id, err);
    if (rc != GS_OK)
      return rc;
    journal_push(j, (step_t){.kind = STEP_CI_CREATED, .dev = dev,
                             .gi_id = gi_id, .ci_id = ci_id});
  }
  return GS_OK;
}

static int set_mode(gs_backend_t *be, unsigned dev, bool before, bool after,
                    journal_t *j, gs_error_t *err) {
  int rc = be->ops->set_mig_mode(be, dev, after, err);
  if (rc == GS_OK)
    journal_push(j, (step_t){.kind = STEP_MODE_SET, .dev = dev,
                             .mode_before = before});
  return rc;
}

static int execute_device(gs_backend_t *be, const gs_device_t *d,
                          const gs_plan_t *plan, journal_t *j,
                          gs_error_t *err) {
  int rc = GS_OK;
  if (plan->set_mig_mode && plan->mig_enabled)
    rc = set_mode(be, d->index, false, true, j, err);
  for (unsigned i = 0; rc == GS_OK && i < plan->n_destroy; i++)
    rc = destroy_gi(be, d->index,
                    gs_layout_find_gi_const(&d->layout, plan->destroy_gi[i]),
                    j, err);
  for (unsigned i = 0; rc == GS_OK && i < plan->n_create; i++)
    rc = create_gi(be, d->index, &plan->create[i], j, err);
  if (rc == GS_OK && plan->set_mig_mode && !plan->mig_enabled)
    rc = set_mode(be, d->index, true, false, j, err);
  return rc;
}

static int busy_flags(gs_backend_t *be, const gs_device_t *d, bool *busy,
                      gs_error_t *err) {
  for (unsigned i = 0; i < d->layout.n_gi; i++) {
    size_t n = 0;
    gs_process_t procs[1];
    int rc = be->ops->processes(be, d->index, d->layout.gi[i].id, procs, 1,
                                &n, err);
    if (rc != GS_OK)
      return rc;
    busy[i] = n > 0;
  }
  return GS_OK;
}

/* Adds "(pid 123 sleep, ...)" to a busy error. */
static void name_busy_processes(gs_backend_t *be, const gs_device_t *d,
                                gs_error_t *err) {
  if (!err)
    return;
  for (unsigned i = 0; i < d->layout.n_gi; i++) {
    gs_process_t procs[4];
    size_t n = 0;
    char needle[32];
    snprintf(needle, sizeof needle, "GPU instance %u ", d->layout.gi[i].id);
    if (!strstr(err->msg, needle) ||
        be->ops->processes(be, d->index, d->layout.gi[i].id, procs, 4, &n,
                           NULL) != GS_OK)
      continue;
    size_t len = strlen(err->msg);
    for (size_t p = 0; p < n && p < 4; p++) {
      int w = snprintf(err->msg + len, sizeof err->msg - len, "%s pid %d (%s)",
                       p ? "," : ": used by", (int)procs[p].pid,
                       procs[p].command);
      if (w < 0 || (size_t)w >= sizeof err->msg - len)
        break;
      len += (size_t)w;
    }
    return;
  }
}

static int plan_all(gs_backend_t *be, const gs_want_t *want,
                    const bool *selected, unsigned n_devs,
                    gs_apply_report_t *report, gs_error_t *err) {
  report->n_devices = 0;
  for (unsigned d = 0; d < n_devs; d++) {
    if (!selected[d])
      continue;
    gs_device_t dev;
    int rc = be->ops->device_get(be, d, &dev, err);
    if (rc != GS_OK)
      return rc;
    bool busy[GS_MAX_GIS] = {false};
    rc = busy_flags(be, &dev, busy, err);
    if (rc == GS_OK)
      rc = gs_plan_layout(&dev.catalog, &dev.layout, &want[d], busy,
                          &report->device[report->n_devices].plan, err);
    if (rc == GS_EBUSY)
      name_busy_processes(be, &dev, err);
    if (rc == GS_OK)
      rc = gs_plan_result(&dev.catalog, &dev.layout,
                          &report->device[report->n_devices].plan,
                          &report->device[report->n_devices].after, err);
    if (rc != GS_OK) {
      gs_error_prefix(err, "device %u: ", d);
      return rc;
    }
    report->device[report->n_devices].index = d;
    report->device[report->n_devices].before = dev.layout;
    report->n_devices++;
  }
  return GS_OK;
}

int gs_execute(gs_backend_t *be, gs_apply_report_t *report, gs_error_t *err) {
  gs_error_t local;
  if (!err)
    err = &local; /* the undo note below writes into it */
  gs_error_clear(err);
  int rc = GS_OK;
  journal_t *j = calloc(1, sizeof *j);
  if (!j) {
    be->ops->abort(be);
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  for (unsigned i = 0; rc == GS_OK && i < report->n_devices; i++) {
    gs_device_t dev;
    rc = be->ops->device_get(be, report->device[i].index, &dev, err);
    if (rc == GS_OK)
      rc = execute_device(be, &dev, &report->device[i].plan, j, err);
    if (rc != GS_OK)
      gs_error_prefix(err, "device %u: ", report->device[i].index);
  }
  if (rc == GS_OK)
    rc = be->ops->commit(be, err);
  if (rc == GS_OK) {
    for (unsigned i = 0; i < report->n_devices; i++) {
      gs_device_t dev;
      if (be->ops->device_get(be, report->device[i].index, &dev, NULL) == GS_OK)
        report->device[i].after = dev.layout;
    }
    free(j);
    return GS_OK;
  }
  gs_error_t undo_err;
  gs_error_clear(&undo_err);
  size_t len = strlen(err->msg);
  if (undo(be, j, &undo_err) != GS_OK)
    snprintf(err->msg + len, sizeof err->msg - len,
             "; undoing the steps already taken also failed (%s): the "
             "device may be left partly changed",
             undo_err.msg);
  else if (j->n > 0)
    snprintf(err->msg + len, sizeof err->msg - len,
             "; the %u step%s already taken were undone", j->n,
             j->n == 1 ? "" : "s");
  be->ops->abort(be);
  free(j);
  return rc;
}

int gs_apply(gs_backend_t *be, const gs_want_t *want, const bool *selected,
             unsigned n_devs, bool dry_run, gs_apply_report_t *report,
             gs_error_t *err) {
  int rc = be->ops->begin(be, err);
  if (rc != GS_OK)
    return rc;
  rc = plan_all(be, want, selected, n_devs, report, err);
  if (rc != GS_OK || dry_run) {
    be->ops->abort(be);
    return rc;
  }
  return gs_execute(be, report, err);
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
      gs_catalog_device_name(gp, gs_catalog_ci(gp, counts.item[k].ci_profile_id),
                             md->name, sizeof md->name);
      md->count = counts.item[k].count;
    }
  }
  return GS_OK;
nomem:
  gs_config_release(cfg);
  return gs_error_set(err, GS_ENOMEM, "out of memory");
}
