/* The one transaction runner of every layout change (create, destroy,
 * apply): the backend's begin takes its lock and reads each device with
 * who runs in each GPU instance (the one busy rule's data), the planners
 * plan (a destroy needs none: it takes the GIs it names), then destroys run
 * before creates with a journal that is undone newest first when a step
 * fails. */
#include "apply_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the busy rule ------------------------------------------------------ */

/* A destroy the backend refused as busy (a process it saw, or compute
 * instances left): recorded even when no process can be named. */
static void note_in_use(gs_backend_t *be, unsigned dev, unsigned gi_id,
                        gs_busy_t *busy) {
  memset(busy, 0, sizeof *busy);
  busy->in_use = true;
  busy->dev = dev;
  busy->gi_id = gi_id;
  be->ops->processes(be, dev, gi_id, busy->procs, GS_BUSY_MAX_PROCS,
                     &busy->n_procs, NULL);
}

/* Appends ": used by pid 123 (sleep), pid 124 (sh) and 2 more". */
static void name_users(const gs_busy_t *b, gs_error_t *err) {
  if (!err)
    return;
  size_t len = strlen(err->msg), shown = 0;
  for (; shown < b->n_procs && shown < GS_BUSY_MAX_PROCS; shown++) {
    int w = snprintf(err->msg + len, sizeof err->msg - len, "%s pid %d (%s)",
                     shown ? "," : ": used by", (int)b->procs[shown].pid,
                     b->procs[shown].command);
    if (w < 0 || (size_t)w >= sizeof err->msg - len)
      return;
    len += (size_t)w;
  }
  if (shown < b->n_procs)
    snprintf(err->msg + len, sizeof err->msg - len, " and %zu more",
             b->n_procs - shown);
}

/* ---- execution with undo ------------------------------------------------ */

typedef enum {
  STEP_GI_CREATED,
  STEP_CI_CREATED,
  STEP_CI_DESTROYED,
  STEP_GI_DESTROYED,
  STEP_MODE_SET
} step_kind_t;

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
                      journal_t *j, gs_busy_t *busy, gs_error_t *err) {
  for (unsigned c = gi->n_ci; c-- > 0;) {
    int rc = be->ops->ci_destroy(be, dev, gi->id, gi->ci[c].id, err);
    if (rc == GS_EBUSY)
      note_in_use(be, dev, gi->id, busy);
    if (rc != GS_OK)
      return rc;
    journal_push(j, (step_t){.kind = STEP_CI_DESTROYED,
                             .dev = dev,
                             .gi_id = gi->id,
                             .ci_id = gi->ci[c].id,
                             .profile_id = gi->ci[c].profile_id,
                             .start = gi->ci[c].start});
  }
  int rc = be->ops->gi_destroy(be, dev, gi->id, err);
  if (rc == GS_EBUSY)
    note_in_use(be, dev, gi->id, busy);
  if (rc == GS_OK)
    journal_push(j, (step_t){.kind = STEP_GI_DESTROYED,
                             .dev = dev,
                             .gi_id = gi->id,
                             .profile_id = gi->profile_id,
                             .start = gi->start});
  return rc;
}

static int create_gi(gs_backend_t *be, unsigned dev, const gs_plan_create_t *c,
                     journal_t *j, gs_error_t *err) {
  unsigned gi_id;
  int rc = be->ops->gi_create(be, dev, c->profile_id, c->start, &gi_id, err);
  if (rc != GS_OK)
    return rc;
  journal_push(j,
               (step_t){.kind = STEP_GI_CREATED, .dev = dev, .gi_id = gi_id});
  for (unsigned k = 0; k < c->n_ci; k++) {
    unsigned ci_id;
    rc = be->ops->ci_create(be, dev, gi_id, c->ci_profile_id[k], c->ci_start[k],
                            &ci_id, err);
    if (rc != GS_OK)
      return rc;
    journal_push(j, (step_t){.kind = STEP_CI_CREATED,
                             .dev = dev,
                             .gi_id = gi_id,
                             .ci_id = ci_id});
  }
  return GS_OK;
}

static int set_mode(gs_backend_t *be, unsigned dev, bool before, bool after,
                    journal_t *j, gs_error_t *err) {
  int rc = be->ops->set_mig_mode(be, dev, after, err);
  if (rc == GS_OK)
    journal_push(
        j, (step_t){.kind = STEP_MODE_SET, .dev = dev, .mode_before = before});
  return rc;
}

static int execute_device(gs_backend_t *be, const gs_device_t *d,
                          const gs_plan_t *plan, journal_t *j, gs_busy_t *busy,
                          gs_error_t *err) {
  int rc = GS_OK;
  if (plan->set_mig_mode && plan->mig_enabled)
    rc = set_mode(be, d->index, false, true, j, err);
  for (unsigned i = 0; rc == GS_OK && i < plan->n_destroy; i++)
    rc = destroy_gi(be, d->index,
                    gs_layout_find_gi_const(&d->layout, plan->destroy_gi[i]), j,
                    busy, err);
  for (unsigned i = 0; rc == GS_OK && i < plan->n_create; i++)
    rc = create_gi(be, d->index, &plan->create[i], j, err);
  if (rc == GS_OK && plan->set_mig_mode && !plan->mig_enabled)
    rc = set_mode(be, d->index, true, false, j, err);
  return rc;
}

/* Says what the undo did after the failure already in err. */
static void note_undo(gs_backend_t *be, journal_t *j, gs_error_t *err) {
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
}

/* Executes the plans inside the open change and commits; on a failure
 * undoes the steps taken and aborts. Always ends the change. */
static int execute(gs_backend_t *be, gs_apply_report_t *rep, gs_error_t *err) {
  gs_error_t local;
  if (!err)
    err = &local; /* the undo note writes into it */
  gs_error_clear(err);
  journal_t *j = calloc(1, sizeof *j);
  if (!j) {
    be->ops->abort(be);
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  }
  int rc = GS_OK;
  for (unsigned i = 0; rc == GS_OK && i < rep->n_devices; i++) {
    const gs_device_t *d = &rep->device[i].dev;
    rc = execute_device(be, d, &rep->device[i].plan, j, &rep->busy, err);
    if (rc != GS_OK)
      gs_error_prefix(err, "device %u: ", d->index);
  }
  if (rc == GS_OK)
    rc = be->ops->commit(be, err);
  if (rc == GS_OK) {
    for (unsigned i = 0; i < rep->n_devices; i++) {
      gs_device_t now;
      if (be->ops->device_get(be, rep->device[i].dev.index, &now, NULL) ==
          GS_OK)
        rep->device[i].after = now.layout;
    }
  } else {
    note_undo(be, j, err);
    be->ops->abort(be);
  }
  free(j);
  return rc;
}

/* ---- planning ------------------------------------------------------------ */

static bool targets(const gs_change_t *c, unsigned d) {
  return c->kind == GS_CHANGE_APPLY ? c->selected[d] : d == c->dev;
}

static unsigned targets_end(const gs_change_t *c) {
  return c->kind == GS_CHANGE_APPLY ? c->n_devs : c->dev + 1;
}

static bool destroy_selects(const gs_change_t *c, unsigned gi_id) {
  for (unsigned k = 0; !c->all && k < c->n_ids; k++)
    if (c->ids[k] == gi_id)
      return true;
  return c->all;
}

/* A destroy's plan: the GIs it names go, the rest stay; one in use stops
 * it (*blocked: its index). */
static int plan_destroy(const gs_device_t *dev, const gs_change_t *c,
                        const bool *busy, gs_plan_t *plan, unsigned *blocked,
                        gs_error_t *err) {
  const gs_layout_t *l = &dev->layout;
  for (unsigned k = 0; k < c->n_ids; k++)
    if (!gs_layout_find_gi_const(l, c->ids[k]))
      return gs_error_set(err, GS_ENOTFOUND, "no GPU instance %u on device %u",
                          c->ids[k], dev->index);
  memset(plan, 0, sizeof *plan);
  plan->mig_enabled = l->mig_enabled;
  for (unsigned i = 0; i < l->n_gi; i++) {
    if (!destroy_selects(c, l->gi[i].id)) {
      plan->keep_gi[plan->n_keep++] = l->gi[i].id;
    } else if (busy[i]) {
      const gs_gi_profile_t *p =
          gs_catalog_gi(&dev->catalog, l->gi[i].profile_id);
      *blocked = i;
      return gs_error_set(err, GS_EBUSY,
                          "GPU instance %u (%s) is in use and cannot be "
                          "destroyed",
                          l->gi[i].id, p ? p->name : "?");
    } else {
      plan->destroy_gi[plan->n_destroy++] = l->gi[i].id;
    }
  }
  return GS_OK;
}

/* Plans one device; users[i] (NULL: none in use) is who runs in
 * dev->layout.gi[i]. On GS_EBUSY, *busy is the instance in the way. */
static int plan_device(const gs_change_t *c, const gs_device_t *dev,
                       const gs_busy_t *users, gs_plan_t *plan,
                       gs_layout_t *after, gs_busy_t *busy, gs_error_t *err) {
  bool flags[GS_MAX_GIS] = {false};
  for (unsigned i = 0; users && i < dev->layout.n_gi; i++)
    flags[i] = users[i].in_use;
  unsigned blocked = 0;
  int rc = GS_OK;
  switch (c->kind) {
  case GS_CHANGE_APPLY:
    rc = gs__plan_layout(&dev->catalog, &dev->layout, &c->want[dev->index],
                         flags, plan, &blocked, err);
    break;
  case GS_CHANGE_CREATE:
    rc = gs__plan_create(dev, c, plan, err);
    break;
  case GS_CHANGE_DESTROY:
    rc = plan_destroy(dev, c, flags, plan, &blocked, err);
    break;
  }
  if (rc == GS_EBUSY && users) {
    *busy = users[blocked];
    name_users(busy, err);
  }
  if (rc == GS_OK)
    rc = gs_plan_result(&dev->catalog, &dev->layout, plan, after, err);
  return rc;
}

/* Begins the change, reading every device it names (with who runs in
 * each GPU instance, unless it creates: it keeps them all), and plans
 * them; the change stays open when this succeeds. */
static int begin_and_plan(gs_backend_t *be, const gs_change_t *c,
                          gs_apply_report_t *rep, gs_error_t *err) {
  gs_change_dev_t *devs = calloc(targets_end(c) + 1, sizeof *devs); /* 0 */
  if (!devs)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  unsigned n = 0;
  for (unsigned d = 0; d < targets_end(c); d++)
    if (targets(c, d))
      devs[n++] = (gs_change_dev_t){.index = d,
                                    .with_users = c->kind != GS_CHANGE_CREATE};
  int rc = be->ops->begin(be, devs, n, err);
  for (unsigned i = 0; rc != GS_OK && i < n; i++)
    if (devs[i].failed && c->kind == GS_CHANGE_APPLY)
      gs_error_prefix(err, "device %u: ", devs[i].index);
  for (unsigned i = 0; rc == GS_OK && i < n; i++) {
    rep->device[i].dev = devs[i].dev;
    rc = plan_device(c, &devs[i].dev, devs[i].with_users ? devs[i].users : NULL,
                     &rep->device[i].plan, &rep->device[i].after, &rep->busy,
                     err);
    if (rc != GS_OK && c->kind == GS_CHANGE_APPLY)
      gs_error_prefix(err, "device %u: ", devs[i].index);
    if (rc == GS_OK)
      rep->n_devices++;
    else
      be->ops->abort(be);
  }
  free(devs);
  return rc;
}

static void report_clear(gs_apply_report_t *rep) {
  rep->n_devices = 0;
  memset(&rep->busy, 0, sizeof rep->busy);
}

int gs_change_run(gs_backend_t *be, const gs_change_t *c,
                  gs_apply_report_t *rep, gs_error_t *err) {
  report_clear(rep);
  int rc = begin_and_plan(be, c, rep, err);
  if (rc != GS_OK)
    return rc;
  if (c->dry_run) {
    be->ops->abort(be);
    return GS_OK;
  }
  return execute(be, rep, err);
}

int gs_change_plan(const gs_device_t *devs, unsigned n_devs,
                   const gs_change_t *c, gs_apply_report_t *rep,
                   gs_error_t *err) {
  report_clear(rep);
  if (c->kind != GS_CHANGE_APPLY && c->dev >= n_devs)
    return gs_error_set(err, GS_ENODEV, "no device %u", c->dev);
  for (unsigned d = 0; d < n_devs && d < targets_end(c); d++) {
    if (!targets(c, d))
      continue;
    rep->device[rep->n_devices].dev = devs[d];
    int rc = plan_device(c, &devs[d], NULL, &rep->device[rep->n_devices].plan,
                         &rep->device[rep->n_devices].after, &rep->busy, err);
    if (rc != GS_OK && c->kind == GS_CHANGE_APPLY)
      gs_error_prefix(err, "device %u: ", d);
    if (rc != GS_OK)
      return rc;
    rep->n_devices++;
  }
  return GS_OK;
}

int gs_apply(gs_backend_t *be, const gs_want_t *want, const bool *selected,
             unsigned n_devs, bool dry_run, gs_apply_report_t *report,
             gs_error_t *err) {
  gs_change_t c = {.kind = GS_CHANGE_APPLY,
                   .dry_run = dry_run,
                   .want = want,
                   .selected = selected,
                   .n_devs = n_devs};
  return gs_change_run(be, &c, report, err);
}
