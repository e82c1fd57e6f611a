/* The core the software backends (host, soft) share: their layouts live in
 * the state file, a change runs on a working copy under the exclusive
 * state lock (begin, GPU and compute instance edits, commit or abort),
 * instances get random UUIDs, and an instance with live processes in the
 * process registry cannot be destroyed. A backend embeds gs__swcore_t as
 * the first member of its own struct, points be.impl at that struct, and
 * uses the gs__swcore_* operations below directly in its ops table. */
#ifndef GPUSLICE_SWCORE_INT_H
#define GPUSLICE_SWCORE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/procs_int.h"
#include "gpuslice/backend.h"
#include "gpuslice/state.h"

#define GS__SW_MAX_DESTROYED 64 /* GIs destroyed in one change, for cleanup */

typedef struct gs__swcore_s gs__swcore_t;

/* What differs between the backends. Every hook must be set. */
typedef struct gs__swcore_hooks_s {
  /* Live processes of gi on device dev: gs__procs_list over what the
   * backend finds there. prune: the exclusive lock is held. */
  void (*procs)(gs__swcore_t *c, unsigned dev, const gs_gi_t *gi, bool prune,
                gs__procset_t *ps);
  /* Memory pid uses on device dev, in bytes; 0 when not known. */
  uint64_t (*memory_of)(gs__swcore_t *c, unsigned dev, pid_t pid);
  /* Best-effort cleanup once a commit is durable, the lock still held:
   * c->work is what was saved, c->destroyed the GIs it removed. */
  void (*committed)(gs__swcore_t *c);
} gs__swcore_hooks_t;

typedef struct gs__swdev_s {
  gs_catalog_t cat;
  char label[128];        /* "device 0 (host)", for messages */
  char uuid[GS_UUID_MAX]; /* recorded in the state file unless "" */
  /* What device_get reports beside catalog and layout. */
  char name[96];                 /* "host", the GPU's name */
  char device_uuid[GS_UUID_MAX]; /* the machine's or the GPU's */
  uint32_t pci_device_id;        /* 0 for the host */
} gs__swdev_t;

struct gs__swcore_s {
  gs_backend_t be;
  const gs__swcore_hooks_t *hooks;
  char backend[8];     /* the state file's owner: "host" or "soft" */
  char uuid_prefix[8]; /* of instance UUIDs: "HOST-", "SOFT-" */
  char state_dir[GS__PATH_MAX];
  unsigned n_dev;
  gs__swdev_t dev[GS_MAX_DEVICES]; /* filled by the backend after init */
  bool in_txn;                     /* between begin and commit/abort */
  gs_state_t st;                   /* holds the exclusive lock in a change */
  gs_state_doc_t *work;    /* the change: device[i] is device i's state */
  gs_state_doc_t *scratch; /* the file as read outside a change */
  unsigned n_destroyed;
  struct {
    unsigned dev;
    char uuid[GS_UUID_MAX];
  } destroyed[GS__SW_MAX_DESTROYED];
};

/* Checks opt->state_dir and allocates the documents. backend and
 * uuid_prefix are short literals. Release with gs__swcore_release(). */
int gs__swcore_init(gs__swcore_t *c, const char *backend,
                    const char *uuid_prefix, const gs_backend_options_t *opt,
                    const gs__swcore_hooks_t *hooks, gs_error_t *err);
/* Aborts an open change and frees the documents. */
void gs__swcore_release(gs__swcore_t *c);

/* Backend operations. */
int gs__swcore_device_count(gs_backend_t *be, unsigned *n, gs_error_t *err);
/* Device index from c->dev[index] and the state (the working copy in a
 * change); gs__swcore_describe also returns that state, for what a backend
 * adds. */
int gs__swcore_device_get(gs_backend_t *be, unsigned index, gs_device_t *out,
                          gs_error_t *err);
int gs__swcore_describe(gs__swcore_t *c, unsigned index, gs_device_t *out,
                        const gs_state_doc_t **doc, gs_error_t *err);
int gs__swcore_begin(gs_backend_t *be, gs_change_dev_t *devs, unsigned n,
                     gs_error_t *err);
int gs__swcore_commit(gs_backend_t *be, gs_error_t *err);
void gs__swcore_abort(gs_backend_t *be);
int gs__swcore_set_mig_mode(gs_backend_t *be, unsigned dev, bool enabled,
                            gs_error_t *err);
int gs__swcore_gi_create(gs_backend_t *be, unsigned dev, unsigned profile_id,
                         unsigned start, unsigned *gi_id, gs_error_t *err);
int gs__swcore_gi_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          gs_error_t *err);
int gs__swcore_ci_create(gs_backend_t *be, unsigned dev, unsigned gi_id,
                         unsigned ci_profile_id, unsigned start,
                         unsigned *ci_id, gs_error_t *err);
int gs__swcore_ci_destroy(gs_backend_t *be, unsigned dev, unsigned gi_id,
                          unsigned ci_id, gs_error_t *err);
int gs__swcore_processes(gs_backend_t *be, unsigned dev, unsigned gi_id,
                         gs_process_t *out, size_t max, size_t *n,
                         gs_error_t *err);

/* GS_ENODEV unless dev is one of the backend's devices. */
int gs__swcore_check_dev(const gs__swcore_t *c, unsigned dev, gs_error_t *err);

/* The state, one entry per device (device[i] is device i): the working
 * copy in a change, else the file read under the shared lock. */
int gs__swcore_read(gs__swcore_t *c, const gs_state_doc_t **doc,
                    gs_error_t *err);

/* Runs fn under the exclusive lock, on the working copy in a change, else
 * on the file's content (what fn changes in doc is then not saved). */
typedef int (*gs__swcore_fn_t)(gs__swcore_t *c, gs_state_doc_t *doc, void *arg,
                               gs_error_t *err);
int gs__swcore_locked(gs__swcore_t *c, gs__swcore_fn_t fn, void *arg,
                      gs_error_t *err);

/* The GI, or NULL with GS_ENOTFOUND listing the instances there are. */
gs_gi_t *gs__swcore_find_gi(const gs__swcore_t *c, unsigned dev,
                            gs_layout_t *layout, unsigned gi_id,
                            gs_error_t *err);
/* The GI's profile name, "?" if unknown. */
const char *gs__swcore_gi_name(const gs__swcore_t *c, unsigned dev,
                               const gs_gi_t *gi);

/* Appends NAME=value (printf-style) to a confinement's environment;
 * beyond GS_MAX_ENV entries it is dropped (callers stay within it). */
void gs__env_add(gs_confinement_t *out, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
