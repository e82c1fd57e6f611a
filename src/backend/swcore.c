/* The layout machinery of the software backends: the state file as the
 * layout's home, changes on a working copy under the exclusive lock, GI
 * and CI edits through gs_layout_*, instance UUIDs, and busy checks
 * against the process registry. */
#include "backend/swcore_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/test_hooks.h"

typedef __typeof__(((gs_state_doc_t *)0)->device[0]) doc_dev_t;

static gs__swcore_t *core_of(gs_backend_t *be) {
  return be->impl; /* the backend's struct begins with its core */
}

/* ---- loading the state ------------------------------------------------- */

static void format_ids(const gs_layout_t *layout, char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < layout->n_gi && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%u", i ? ", " : "",
                            layout->gi[i].id);
  if (layout->n_gi == 0)
    snprintf(buf, size, "none");
}

static int corrupt(const gs__swcore_t *c, unsigned dev, gs_error_t *err) {
  gs_error_prefix(err, "state file %s/%s is corrupt: device %u: ", c->state_dir,
                  GS_STATE_FILE, dev);
  if (err) {
    size_t len = strlen(err->msg);
    snprintf(err->msg + len, sizeof err->msg - len,
             "; fix or remove it by hand");
    err->code = GS_ECORRUPT;
  }
  return GS_ECORRUPT;
}

/* A recorded device against this machine's. A device without instances
 * may have changed: nothing recorded is lost by taking it as it is now. */
static int check_recorded(const gs__swcore_t *c, unsigned i, const doc_dev_t *d,
                          gs_error_t *err) {
  const gs__swdev_t *dev = &c->dev[i];
  if (d->layout.n_gi == 0)
    return GS_OK;
  if (strcmp(d->model, dev->cat.model) != 0 ||
      d->memory_slices != dev->cat.memory_slices) {
    gs_error_set(err, GS_ECORRUPT,
                 "recorded as model '%s' with %u memory slices, this machine "
                 "is '%s' with %u",
                 d->model, d->memory_slices, dev->cat.model,
                 dev->cat.memory_slices);
    return corrupt(c, i, err);
  }
  if (d->uuid[0] && dev->uuid[0] && strcmp(d->uuid, dev->uuid) != 0) {
    gs_error_set(err, GS_ECORRUPT, "recorded for %s, device %u is now %s",
                 d->uuid, i, dev->uuid);
    return corrupt(c, i, err);
  }
  if (gs_layout_validate(&dev->cat, &d->layout, err) != GS_OK)
    return corrupt(c, i, err);
  return GS_OK;
}

/* Turns the file's document (devices ascending by index, as decoded) into
 * one entry per device of this machine, in place, checked. */
static int normalize(const gs__swcore_t *c, gs_state_doc_t *doc, bool existed,
                     gs_error_t *err) {
  if (existed && strcmp(doc->backend, c->backend) != 0)
    return gs_error_set(err, GS_EINVAL,
                        "state file %s/%s belongs to the %s backend, not %s; "
                        "use --backend %s or another state directory",
                        c->state_dir, GS_STATE_FILE, doc->backend, c->backend,
                        doc->backend);
  bool present[GS_MAX_DEVICES] = {false};
  /* From the end: every entry moves up (or stays), never onto one not
   * yet moved. */
  for (unsigned k = doc->n_devices; k-- > 0;) {
    unsigned idx = doc->device[k].index;
    if (idx >= c->n_dev) {
      gs_error_set(err, GS_ECORRUPT, "listed, this machine has %s%u",
                   c->n_dev == 1 ? "only device " : "devices 0-",
                   c->n_dev ? c->n_dev - 1 : 0);
      return corrupt(c, idx, err);
    }
    if (idx != k)
      doc->device[idx] = doc->device[k];
    present[idx] = true;
  }
  for (unsigned i = 0; i < c->n_dev; i++) {
    doc_dev_t *d = &doc->device[i];
    if (!present[i]) {
      memset(d, 0, sizeof *d);
      gs_layout_init(&d->layout);
    } else {
      int rc = check_recorded(c, i, d, err);
      if (rc != GS_OK)
        return rc;
    }
    d->index = i;
    snprintf(d->model, sizeof d->model, "%s", c->dev[i].cat.model);
    d->memory_slices = c->dev[i].cat.memory_slices;
    snprintf(d->uuid, sizeof d->uuid, "%s", c->dev[i].uuid);
  }
  doc->n_devices = c->n_dev;
  snprintf(doc->backend, sizeof doc->backend, "%s", c->backend);
  return GS_OK;
}

static int load(gs__swcore_t *c, gs_state_t *st, gs_state_doc_t *doc,
                gs_error_t *err) {
  bool existed;
  int rc = gs_state_load(st, doc, &existed, err);
  return rc ? rc : normalize(c, doc, existed, err);
}

int gs__swcore_read(gs__swcore_t *c, const gs_state_doc_t **doc,
                    gs_error_t *err) {
  if (c->in_txn) {
    *doc = c->work;
    return GS_OK;
  }
  gs_state_t st;
  int rc = gs_state_open(&st, c->state_dir, GS_STATE_SHARED, err);
  if (rc != GS_OK)
    return rc;
  rc = load(c, &st, c->scratch, err);
  gs_state_close(&st);
  *doc = c->scratch;
  return rc;
}

int gs__swcore_locked(gs__swcore_t *c, gs__swcore_fn_t fn, void *arg,
                      gs_error_t *err) {
  if (c->in_txn) /* the exclusive lock is already ours */
    return fn(c, c->work, arg, err);
  gs_state_t st;
  int rc = gs_state_open(&st, c->state_dir, GS_STATE_EXCLUSIVE, err);
  if (rc != GS_OK)
    return rc;
  rc = load(c, &st, c->scratch, err);
  if (rc == GS_OK)
    rc = fn(c, c->scratch, arg, err);
  gs_state_close(&st);
  return rc;
}

/* ---- lookups ----------------------------------------------------------- */

int gs__swcore_check_dev(const gs__swcore_t *c, unsigned dev, gs_error_t *err) {
  if (dev < c->n_dev)
    return GS_OK;
  if (c->n_dev == 1)
    return gs_error_set(err, GS_ENODEV,
                        "no device %u: the %s backend has device 0 only", dev,
                        c->backend);
  return gs_error_set(err, GS_ENODEV,
                      "no device %u: the %s backend has devices 0-%u", dev,
                      c->backend, c->n_dev - 1);
}

gs_gi_t *gs__swcore_find_gi(const gs__swcore_t *c, unsigned dev,
                            gs_layout_t *layout, unsigned gi_id,
                            gs_error_t *err) {
  gs_gi_t *gi = gs_layout_find_gi(layout, gi_id);
  if (!gi) {
    char ids[128];
    format_ids(layout, ids, sizeof ids);
    gs_error_set(err, GS_ENOTFOUND,
                 "no GPU instance %u on device %u (%s) (instances: %s)", gi_id,
                 dev, c->dev[dev].cat.model, ids);
  }
  return gi;
}

const char *gs__swcore_gi_name(const gs__swcore_t *c, unsigned dev,
                               const gs_gi_t *gi) {
  const gs_gi_profile_t *p = gs_catalog_gi(&c->dev[dev].cat, gi->profile_id);
  return p ? p->name : "?";
}

static int need_change(gs__swcore_t *c, unsigned dev, const char *what,
                       gs_error_t *err) {
  if (!c->in_txn)
    return gs_error_set(err, GS_EINVAL, "%s backend: %s outside begin/commit",
                        c->backend, what);
  if (gs__test_hooks.step_delay_us)
    usleep(gs__test_hooks.step_delay_us); /* 0 in normal use */
  return gs__swcore_check_dev(c, dev, err);
}

/* <prefix> and a random version-4 UUID. */
static int new_uuid(const gs__swcore_t *c, char *out, size_t size,
                    gs_error_t *err) {
  unsigned char b[16];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return gs_error_sys(err, errno, "generating an instance UUID");
    got += (size_t)n;
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  char text[48];
  size_t len = (size_t)snprintf(text, sizeof text, "%s", c->uuid_prefix);
  for (unsigned i = 0; i < sizeof b; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      text[len++] = '-';
    len += (size_t)snprintf(text + len, sizeof text - len, "%02x", b[i]);
  }
  snprintf(out, size, "%s", text);
  return GS_OK;
}

/* ---- processes --------------------------------------------------------- */

/* GS_EBUSY naming the first process of ci_id (-1: any CI), else GS_OK. */
static int check_idle(gs__swcore_t *c, unsigned dev, const gs_gi_t *gi,
                      int ci_id, gs_error_t *err) {
  gs__procset_t *ps = malloc(sizeof *ps);
  if (!ps)
    return gs_error_set(err, GS_ENOMEM, "listing processes: out of memory");
  c->hooks->procs(c, dev, gi, true, ps);
  int rc = GS_OK;
  for (size_t i = 0; i < ps->n; i++) {
    if (ci_id >= 0 && ps->ci[i] != (unsigned)ci_id)
      continue;
    char comm[64];
    gs__proc_comm(ps->pid[i], comm, sizeof comm);
    if (ci_id >= 0)
      rc = gs_error_set(err, GS_EBUSY,
                        "compute instance %d of GPU instance %u (%s) is in use "
                        "by pid %ld (%s)",
                        ci_id, gi->id, gs__swcore_gi_name(c, dev, gi),
                        (long)ps->pid[i], comm);
    else
      rc = gs_error_set(
          err, GS_EBUSY, "GPU instance %u (%s) is in use by pid %ld (%s)",
          gi->id, gs__swcore_gi_name(c, dev, gi), (long)ps->pid[i], comm);
    break;
  }
  free(ps);
  return rc;
}

/* The live processes of gi (the first max in out; *n counts all).
 * Registrations are pruned only under the exclusive lock. */
static int list_processes(gs__swcore_t *c, unsigned dev, const gs_gi_t *gi,
                          gs_process_t *out, size_t max, size_t *n,
                          gs_error_t *err) {
  gs__procset_t *ps = malloc(sizeof *ps);
  if (!ps)
    return gs_error_set(err, GS_ENOMEM, "listing processes: out of memory");
  c->hooks->procs(c, dev, gi, c->in_txn, ps);
  for (size_t i = 0; i < ps->n && i < max; i++) {
    gs_process_t *p = &out[i];
    memset(p, 0, sizeof *p);
    p->pid = ps->pid[i];
    p->gi_id = gi->id;
    p->ci_id = ps->ci[i];
    p->memory_bytes = c->hooks->memory_of(c, dev, p->pid);
    gs__proc_comm(p->pid, p->command, sizeof p->command);
  }
  *n = ps->n;
  free(ps);
  return GS_OK;
}

int gs__swcore_processes(gs_backend_t *be, unsigned dev, unsigned gi_id,
                         gs_process_t *out, size_t max, size_t *n,
                         gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  const gs_state_doc_t *doc;
  *n = 0;
  int rc = gs__swcore_check_dev(c, dev, err);
  if (rc == GS_OK)
    rc = gs__swcore_read(c, &doc, err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t *layout = (gs_layout_t *)&doc->device[dev].layout;
  const gs_gi_t *gi = gs__swcore_find_gi(c, dev, layout, gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  return list_processes(c, dev, gi, out, max, n, err);
}

/* One device as the change finds it: the backend's device_get (on the
 * working copy) and who runs in each GI. */
static int read_device(gs_backend_t *be, gs_change_dev_t *d, gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  int rc = be->ops->device_get(be, d->index, &d->dev, err);
  for (unsigned g = 0; rc == GS_OK && d->with_users && g < d->dev.layout.n_gi;
       g++) {
    gs_busy_t *u = &d->users[g];
    memset(u, 0, sizeof *u);
    u->dev = d->index;
    u->gi_id = d->dev.layout.gi[g].id;
    rc = list_processes(c, d->index, &c->work->device[d->index].layout.gi[g],
                        u->procs, GS_BUSY_MAX_PROCS, &u->n_procs, err);
    u->in_use = u->n_procs > 0;
  }
  d->failed = rc != GS_OK;
  return rc;
}

/* ---- devices ----------------------------------------------------------- */

int gs__swcore_describe(gs__swcore_t *c, unsigned index, gs_device_t *out,
                        const gs_state_doc_t **doc, gs_error_t *err) {
  int rc = gs__swcore_check_dev(c, index, err);
  if (rc == GS_OK)
    rc = gs__swcore_read(c, doc, err);
  if (rc != GS_OK)
    return rc;
  const gs__swdev_t *d = &c->dev[index];
  memset(out, 0, sizeof *out);
  out->layout = (*doc)->device[index].layout;
  out->index = index;
  snprintf(out->name, sizeof out->name, "%s", d->name);
  snprintf(out->uuid, sizeof out->uuid, "%s", d->device_uuid);
  out->pci_device_id = d->pci_device_id;
  out->catalog = d->cat;
  return GS_OK;
}

int gs__swcore_device_get(gs_backend_t *be, unsigned index, gs_device_t *out,
                          gs_error_t *err) {
  const gs_state_doc_t *doc;
  return gs__swcore_describe(core_of(be), index, out, &doc, err);
}

/* ---- changes ----------------------------------------------------------- */

int gs__swcore_device_count(gs_backend_t *be, unsigned *n, gs_error_t *err) {
  (void)err;
  *n = core_of(be)->n_dev;
  return GS_OK;
}

int gs__swcore_begin(gs_backend_t *be, gs_change_dev_t *devs, unsigned n,
                     gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  if (c->in_txn)
    return gs_error_set(err, GS_EINVAL,
                        "%s backend: a change is already in progress",
                        c->backend);
  int rc = gs_state_open(&c->st, c->state_dir, GS_STATE_EXCLUSIVE, err);
  if (rc != GS_OK)
    return rc;
  if ((rc = load(c, &c->st, c->work, err)) != GS_OK) {
    gs_state_close(&c->st);
    return rc;
  }
  c->in_txn = true;
  c->n_destroyed = 0;
  for (unsigned i = 0; rc == GS_OK && i < n; i++)
    rc = read_device(be, &devs[i], err);
  if (rc != GS_OK)
    gs__swcore_abort(be);
  return rc;
}

/* A failed commit leaves the change open (the file is untouched), so that
 * the caller can undo steps and abort. */
int gs__swcore_commit(gs_backend_t *be, gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  int rc = need_change(c, 0, "commit", err);
  if (rc != GS_OK)
    return rc;
  if ((rc = gs_state_save(&c->st, c->work, err)) != GS_OK)
    return rc;
  /* Registrations of destroyed GIs are state: cleared under the lock. */
  for (unsigned i = 0; i < c->n_destroyed; i++)
    gs__procs_forget(c->state_dir, c->destroyed[i].uuid);
  c->hooks->committed(c);
  gs_state_close(&c->st);
  c->in_txn = false;
  return GS_OK;
}

void gs__swcore_abort(gs_backend_t *be) {
  gs__swcore_t *c = core_of(be);
  if (c->in_txn)
    gs_state_close(&c->st);
  c->in_txn = false;
}

int gs__swcore_set_mig_mode(gs_backend_t *be, unsigned dev, bool enabled,
                            gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  int rc = need_change(c, dev, "set_mig_mode", err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t *work = &c->work->device[dev].layout;
  if (!enabled && work->n_gi > 0) {
    char ids[128];
    format_ids(work, ids, sizeof ids);
    return gs_error_set(err, GS_EBUSY,
                        "%s has GPU instances %s; destroy them before "
                        "disabling MIG mode",
                        c->dev[dev].label, ids);
  }
  work->mig_enabled = enabled;
  return GS_OK;
}

int gs__swcore_gi_create(gs_backend_t *be, unsigned dev, unsigned profile_id,
                         unsigned start, unsigned *gi_id, gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  int rc = need_change(c, dev, "gi_create", err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t *work = &c->work->device[dev].layout;
  if (!work->mig_enabled) /* NVML says NOT_SUPPORTED here */
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "MIG mode is disabled on %s; enable it before "
                        "creating GPU instances",
                        c->dev[dev].label);
  unsigned id;
  if ((rc = gs_layout_add_gi(work, &c->dev[dev].cat, profile_id, start, &id,
                             err)) != GS_OK)
    return rc;
  gs_gi_t *gi = gs_layout_find_gi(work, id);
  if ((rc = new_uuid(c, gi->uuid, sizeof gi->uuid, err)) != GS_OK) {
    gs_layout_remove_gi(work, id, NULL);
    return rc;
  }
  if (gi_id)
    *gi_id = id;
  return GS_OK;
}

int gs__swcore_gi_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  int rc = need_change(c, dev, "gi_destroy", err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t *work = &c->work->device[dev].layout;
  gs_gi_t *gi = gs__swcore_find_gi(c, dev, work, gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  if ((rc = check_idle(c, dev, gi, -1, err)) != GS_OK)
    return rc;
  if (gi->n_ci > 0) /* as the driver does (NVML_ERROR_IN_USE) */
    return gs_error_set(err, GS_EBUSY,
                        "GPU instance %u (%s) still has %u compute instance%s; "
                        "destroy them first",
                        gi->id, gs__swcore_gi_name(c, dev, gi), gi->n_ci,
                        gi->n_ci == 1 ? "" : "s");
  if (c->n_destroyed < GS__SW_MAX_DESTROYED) { /* else cleanup is missed */
    c->destroyed[c->n_destroyed].dev = dev;
    memcpy(c->destroyed[c->n_destroyed++].uuid, gi->uuid, sizeof gi->uuid);
  }
  return gs_layout_remove_gi(work, gi_id, err);
}

int gs__swcore_ci_create(gs_backend_t *be, unsigned dev, unsigned gi_id,
                         unsigned ci_profile_id, unsigned start,
                         unsigned *ci_id, gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  int rc = need_change(c, dev, "ci_create", err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t *work = &c->work->device[dev].layout;
  unsigned id;
  rc = gs_layout_add_ci(work, &c->dev[dev].cat, gi_id, ci_profile_id, start,
                        &id, err);
  if (rc != GS_OK)
    return rc;
  gs_ci_t *ci = gs_gi_find_ci(gs_layout_find_gi(work, gi_id), id);
  if ((rc = new_uuid(c, ci->uuid, sizeof ci->uuid, err)) != GS_OK) {
    gs_layout_remove_ci(work, gi_id, id, NULL);
    return rc;
  }
  if (ci_id)
    *ci_id = id;
  return GS_OK;
}

int gs__swcore_ci_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          unsigned ci_id, gs_error_t *err) {
  gs__swcore_t *c = core_of(be);
  int rc = need_change(c, dev, "ci_destroy", err);
  if (rc != GS_OK)
    return rc;
  gs_layout_t *work = &c->work->device[dev].layout;
  gs_gi_t *gi = gs__swcore_find_gi(c, dev, work, gi_id, err);
  if (!gi)
    return GS_ENOTFOUND;
  if (gs_gi_find_ci(gi, ci_id) &&
      (rc = check_idle(c, dev, gi, (int)ci_id, err)) != GS_OK)
    return rc;
  return gs_layout_remove_ci(work, gi_id, ci_id, err);
}

void gs__env_add(gs_confinement_t *out, const char *name, const char *fmt,
                 ...) {
  if (out->n_env >= GS_MAX_ENV)
    return;
  snprintf(out->env_name[out->n_env], sizeof out->env_name[0], "%s", name);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->env_value[out->n_env], sizeof out->env_value[0], fmt, ap);
  va_end(ap);
  out->n_env++;
}

/* ---- life cycle -------------------------------------------------------- */

int gs__swcore_init(gs__swcore_t *c, const char *backend,
                    const char *uuid_prefix, const gs_backend_options_t *opt,
                    const gs__swcore_hooks_t *hooks, gs_error_t *err) {
  if (!opt || !opt->state_dir || !opt->state_dir[0])
    return gs_error_set(err, GS_EINVAL,
                        "the %s backend needs a state directory", backend);
  if (strlen(opt->state_dir) >= sizeof c->state_dir - 256)
    return gs_error_set(err, GS_EINVAL, "state directory path is too long");
  snprintf(c->backend, sizeof c->backend, "%s", backend);
  snprintf(c->uuid_prefix, sizeof c->uuid_prefix, "%s", uuid_prefix);
  snprintf(c->state_dir, sizeof c->state_dir, "%s", opt->state_dir);
  c->hooks = hooks;
  c->st.lock_fd = -1;
  c->work = malloc(sizeof *c->work);
  c->scratch = malloc(sizeof *c->scratch);
  if (!c->work || !c->scratch) {
    gs__swcore_release(c);
    return gs_error_set(err, GS_ENOMEM, "opening the %s backend: out of memory",
                        backend);
  }
  return GS_OK;
}

void gs__swcore_release(gs__swcore_t *c) {
  if (c->in_txn)
    gs_state_close(&c->st);
  c->in_txn = false;
  free(c->work);
  free(c->scratch);
  c->work = c->scratch = NULL;
}
