/* Persisted layouts of the software backends (host, soft). One JSON file in
 * the state directory, replaced atomically (write temporary, fsync, rename,
 * fsync directory) under an flock()ed lock file, so that concurrent
 * commands serialize and a process killed at any point leaves the old file
 * or the new one. A file that does not parse or validate is an error,
 * never silently reset. */
#ifndef GPUSLICE_STATE_H
#define GPUSLICE_STATE_H

#include <stdbool.h>

#include "gpuslice/error.h"
#include "gpuslice/layout.h"

#define GS_STATE_MAX_BYTES (4u << 20)
#define GS_STATE_FILE "state.json"
#define GS_STATE_LOCK "lock"

typedef enum { GS_STATE_SHARED, GS_STATE_EXCLUSIVE } gs_state_lock_t;

typedef struct gs_state_s {
  char dir[4096];
  int lock_fd; /* -1 when not locked */
  gs_state_lock_t mode;
} gs_state_t;

/* What the file holds: the backend that owns it ("host" or "soft") and
 * each device's layout. `model` records the catalog the layout was made
 * against and `uuid` (optional, "" = none) the device; loading it under a
 * different catalog or device is an error (the machine changed).
 * `isolation` (soft, optional) is how the device's instances run: "mps",
 * "process" or "green"; "" = not recorded. */
typedef struct gs_state_doc_s {
  char backend[16];
  unsigned n_devices;
  struct {
    unsigned index;
    char model[32];
    unsigned memory_slices;
    char uuid[GS_UUID_MAX];
    char isolation[16];
    gs_layout_t layout;
  } device[GS_MAX_DEVICES];
} gs_state_doc_t;

/* Creates dir (0700) if missing and takes the lock; blocks until it is
 * free. Caller releases it with gs_state_close(). */
int gs_state_open(gs_state_t *st, const char *dir, gs_state_lock_t mode,
                  gs_error_t *err);
void gs_state_close(gs_state_t *st);

/* Reads the document; a missing file yields an empty document (no devices)
 * and *existed = false. GS_ECORRUPT names the file and what is wrong. */
int gs_state_load(gs_state_t *st, gs_state_doc_t *doc, bool *existed,
                  gs_error_t *err);

/* Atomically replaces the document. Needs the exclusive lock. */
int gs_state_save(gs_state_t *st, const gs_state_doc_t *doc, gs_error_t *err);

/* Serialization, exposed for tests and fuzzing. *out is malloc'd. */
int gs_state_encode(const gs_state_doc_t *doc, char **out, gs_error_t *err);
int gs_state_decode(gs_state_doc_t *doc, const char *source, const char *data,
                    size_t len, gs_error_t *err);

#endif
