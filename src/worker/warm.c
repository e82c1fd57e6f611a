/* Warm models (CUDA sessions, or config.json "warmup": true): every session
 * the model will use is made at load, and each is run once with zeros at
 * every batch size the batcher pads to, so that planning, algorithm timing
 * and CUDA graph capture happen before requests, never on one. The sizes
 * past the worker's plan_before_ready plan after the model is ready, on a
 * thread of the slot's (their memory reserved at load), while the batcher
 * keeps batches to the sizes planned so far. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/test_hooks.h"
#include "worker/reshape.h"
#include "worker/worker_int.h"

static void add_size(uint64_t *sizes, size_t *n, size_t cap, uint64_t size) {
  for (size_t i = 0; i < *n; i++)
    if (sizes[i] == size)
      return;
  if (*n < cap)
    sizes[(*n)++] = size;
}

static int descending(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Every input's shape is known but for the batch dimension. */
static bool shapes_fixed(const gs__model_slot_t *slot) {
  for (size_t i = 0; i < slot->io.n_inputs; i++) {
    const gs_tensor_info_t *t = &slot->io.inputs[i];
    if (t->rank < 0 || (slot->max_batch_size && t->rank < 1))
      return false;
    for (int d = slot->max_batch_size ? 1 : 0; d < t->rank; d++)
      if (t->shape[d] < 0)
        return false;
  }
  return true;
}

size_t gs__slot_planned_sizes(const gs__model_slot_t *slot, uint64_t *sizes,
                              size_t cap) {
  size_t n = 0;
  uint64_t max = slot->max_batch_size;
  if (!shapes_fixed(slot) || cap == 0)
    return 0;
  if (max == 0) {
    sizes[0] = 0;
    return 1;
  }
  add_size(sizes, &n, cap, max);
  for (unsigned i = 0; i < slot->batching.n_preferred; i++)
    add_size(sizes, &n, cap, slot->batching.preferred[i]);
  for (uint64_t p = 1; p < max; p *= 2)
    add_size(sizes, &n, cap, p);
  qsort(sizes, n, sizeof *sizes, descending);
  return n;
}

/* Zeros for every input at batch size rows (0: the fixed shape), written
 * into the session's input buffers as the batcher writes a batch, into
 * in[]. */
static int warm_inputs(gs__model_slot_t *slot, gs_session_t *s, uint64_t rows,
                       gs_tensor_t *in, gs_error_t *err) {
  for (size_t i = 0; i < slot->io.n_inputs; i++) {
    const gs_tensor_info_t *t = &slot->io.inputs[i];
    /* zeros; a BYTES element of zeros is an empty string: 4 bytes */
    size_t bytes = t->dtype == GS_DTYPE_BYTES ? 4 : gs_dtype_size(t->dtype);
    in[i] = (gs_tensor_t){
        .name = t->name, .dtype = t->dtype, .rank = (unsigned)t->rank};
    for (int d = 0; d < t->rank; d++) {
      in[i].shape[d] = d == 0 && rows ? (int64_t)rows : t->shape[d];
      if (in[i].shape[d] && bytes > SIZE_MAX / (size_t)in[i].shape[d])
        return gs_error_set(err, GS_ELIMIT,
                            "input '%s' at batch %llu is too large", t->name,
                            (unsigned long long)rows);
      bytes *= (size_t)in[i].shape[d];
    }
    /* the model's shape where the config reshapes what requests send */
    int rc = gs__reshape_tensor(&in[i], &slot->io, true, true, err);
    void *buf = NULL;
    if (rc == GS_OK)
      rc = gs_session_input_buffer(s, i, bytes, &buf, err);
    if (rc != GS_OK)
      return rc;
    memset(buf, 0, bytes);
    in[i].data = buf;
    in[i].bytes = bytes;
  }
  return GS_OK;
}

/* One run of s at batch size rows on zeros (reserve: memory for that size
 * only, nothing run), its error naming the size and when ("at load"). */
static int warm_run(gs__model_slot_t *slot, gs_session_t *s, uint64_t rows,
                    bool reserve, const char *when, gs_error_t *err) {
  gs_tensor_t in[GS__INFER_MAX_TENSORS];
  int rc = warm_inputs(slot, s, rows, in, err);
  if (rc == GS_OK)
    rc = reserve ? gs_session_reserve(s, in, slot->io.n_inputs, err)
                 : gs_session_run(s, in, slot->io.n_inputs, err);
  if (rc != GS_OK) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    if (rows)
      gs_error_set(err, rc, "%s batch size %llu %s: %s",
                   reserve ? "reserving memory for" : "planning",
                   (unsigned long long)rows, when, why);
    else
      gs_error_set(err, rc, "planning the model %s: %s", when, why);
  }
  return rc;
}

/* Before ready: the memory of the largest size when larger sizes plan
 * later (the graphs captured now keep their addresses), then the sizes
 * not left for later, largest first: the session's buffers grow once, and
 * the graphs captured at the larger sizes are not captured again for a
 * smaller one. When the conv cache has no choice for some of the largest
 * size's convs (a first start on this GPU and SM count), none is left for
 * later: cuDNN would time them after ready, under the requests' load (the
 * requests waiting, the timings skewed and kept in the cache). */
static int warm_session(gs__model_slot_t *slot, gs_session_t *s,
                        gs_error_t *err) {
  int rc = slot->n_late
               ? warm_run(slot, s, slot->sizes[0], true, "at load", err)
               : GS_OK;
  unsigned uncached = rc != GS_OK || !slot->n_late ? 0
                      : gs__test_hooks.convs_uncached
                          ? 1
                          : gs_session_uncached_convs(s);
  if (uncached) {
    slot->uncached_convs = uncached;
    slot->n_late = 0;
    slot->batch_cap = 0;
  }
  for (size_t k = slot->n_late; rc == GS_OK && k < slot->n_sizes; k++)
    rc = warm_run(slot, s, slot->sizes[k], false, "at load", err);
  return rc;
}

/* "{a,b,c}" of sizes[from..to), smallest first. */
static void size_list(const gs__model_slot_t *slot, size_t from, size_t to,
                      char *buf, size_t cap) {
  size_t at = 0;
  buf[0] = '\0';
  at += (size_t)snprintf(buf, cap, "{");
  for (size_t k = to; k-- > from && at < cap;)
    at += (size_t)snprintf(buf + at, cap - at, "%s%llu", k + 1 < to ? "," : "",
                           (unsigned long long)slot->sizes[k]);
  if (at < cap)
    snprintf(buf + at, cap - at, "}");
}

static void note_load(gs__model_slot_t *slot, const gs_session_t *first,
                      uint64_t ns) {
  unsigned first_ms = (unsigned)(slot->first_session_ns / 1000000u);
  char list[200], late[200];
  size_list(slot, slot->n_late, slot->n_sizes, list, sizeof list);
  size_list(slot, 0, slot->n_late, late, sizeof late);
  unsigned ms = (unsigned)(ns / 1000000u);
  if (slot->n_sizes == 0)
    snprintf(slot->load_note, sizeof slot->load_note,
             "%u sessions, shapes vary: each new shape plans at its first "
             "request",
             slot->n_sessions);
  else if (slot->sizes[0] == 0)
    snprintf(slot->load_note, sizeof slot->load_note,
             "%u sessions, its fixed shape planned in %u ms", slot->n_sessions,
             ms);
  else
    snprintf(slot->load_note, sizeof slot->load_note,
             "%u sessions, batch sizes %s planned in %u ms%s%s%s",
             slot->n_sessions, list, ms, slot->n_late ? ", " : "",
             slot->n_late ? late : "",
             slot->n_late ? " to plan after ready" : "");
  if (slot->uncached_convs) {
    size_t at = strlen(slot->load_note);
    snprintf(slot->load_note + at, sizeof slot->load_note - at,
             ", every one before ready: the conv cache had no choice for %u "
             "convs of batch %llu",
             slot->uncached_convs, (unsigned long long)slot->sizes[0]);
  }
  if (slot->n_sizes == 0)
    return;
  char timing[240];
  gs_session_timing(first, timing, sizeof timing);
  size_t used = strlen(slot->load_note);
  snprintf(slot->load_note + used, sizeof slot->load_note - used,
           "; the model read and its first session made in %u ms before%s%s%s",
           first_ms, timing[0] ? " (the first session, ms: " : "", timing,
           timing[0] ? ")" : "");
}

static void late_note(gs__model_slot_t *slot, size_t planned, uint64_t ns,
                      const gs_error_t *err) {
  if (!slot->placement.note)
    return;
  char done[200], line[1400];
  size_list(slot, slot->n_late - planned, slot->n_late, done, sizeof done);
  unsigned ms = (unsigned)(ns / 1000000u);
  if (planned == slot->n_late)
    snprintf(line, sizeof line,
             "model %s: batch sizes %s planned after ready in %u ms",
             slot->name, done, ms);
  else
    snprintf(line, sizeof line,
             "model %s: %s after ready in %u ms; batches stay at most %llu "
             "rows: %.400s",
             slot->name, planned ? done : "no batch size planned", ms,
             (unsigned long long)gs__slot_batch_max(slot), err->msg);
  slot->placement.note(slot->placement.note_ctx, line);
}

/* late_thread: the sizes left for after ready, smallest first, each on
 * every session in turn (taken from the pool as a request would take one,
 * so the others serve meanwhile, and never twice running while a request
 * waits for it: gs__slot_take); the batcher's cap rises as each size is
 * planned everywhere. Stops at a failure: a device failure marks the slot
 * failed, as a request's would; any other leaves the cap where it is. */
static void *plan_late(void *arg) {
  gs__model_slot_t *slot = arg;
  uint64_t t0 = gs__now_ns();
  gs_session_t *sessions[sizeof slot->idle / sizeof slot->idle[0]];
  pthread_mutex_lock(&slot->lock);
  unsigned n = slot->n_idle; /* every session: none has served yet */
  memcpy(sessions, slot->idle, n * sizeof *sessions);
  unsigned delay_ms = gs__test_hooks.late_plan_delay_ms;
  if (delay_ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += delay_ms / 1000;
    until.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (!slot->late_stop &&
           pthread_cond_timedwait(&slot->late_cond, &slot->lock, &until) == 0)
      ;
  }
  pthread_mutex_unlock(&slot->lock);
  gs_error_t err = {0};
  int rc = GS_OK;
  size_t planned = 0;
  for (size_t k = slot->n_late; rc == GS_OK && k-- > 0;) {
    for (unsigned i = 0; rc == GS_OK && i < n; i++) {
      if (!gs__slot_take(slot, sessions[i], &err)) {
        rc = err.code;
        break;
      }
      if (gs__test_hooks.late_plan_step_ms)
        usleep(gs__test_hooks.late_plan_step_ms * 1000u);
      rc = gs__test_device_fault(&err)
               ? GS_EDRIVER
               : warm_run(slot, sessions[i], slot->sizes[k], false,
                          "after ready", &err);
      gs__slot_put(slot, sessions[i]);
    }
    if (rc == GS_OK) {
      planned++;
      __atomic_store_n(&slot->batch_cap, k ? slot->sizes[k] : 0,
                       __ATOMIC_RELEASE);
    }
  }
  if (rc == GS_EDRIVER) {
    gs__slot_fail(slot, err.msg);        /* requests find it, as after a run */
    gs__loop_wake(slot->placement.wake); /* the repository at once */
  }
  if (rc != GS_EBUSY) /* not being unloaded */
    late_note(slot, planned, gs__now_ns() - t0, &err);
  return NULL;
}

void gs__slot_late_join(gs__model_slot_t *slot) {
  if (!slot->late_started)
    return;
  pthread_mutex_lock(&slot->lock);
  slot->late_stop = true;
  pthread_cond_broadcast(&slot->late_cond);
  pthread_mutex_unlock(&slot->lock);
  pthread_join(slot->late_thread, NULL);
  slot->late_started = false;
}

/* The sizes past placement.plan_before_ready, the smallest always kept
 * for before ready. */
static size_t late_sizes(const gs__model_slot_t *slot) {
  uint64_t before = slot->placement.plan_before_ready;
  size_t n = 0;
  if (before == 0 || slot->n_sizes < 2 || slot->sizes[0] == 0)
    return 0;
  while (n + 1 < slot->n_sizes && slot->sizes[n] > before)
    n++;
  return n;
}

int gs__slot_warm(gs__model_slot_t *slot, gs_session_t *first,
                  gs_error_t *err) {
  uint64_t t0 = gs__now_ns();
  unsigned want = slot->placement.count ? slot->placement.count : 1;
  slot->n_sizes =
      gs__slot_planned_sizes(slot, slot->sizes, GS__MAX_PLANNED_SIZES);
  slot->n_late = late_sizes(slot);
  if (slot->n_late)
    slot->batch_cap = slot->sizes[slot->n_late];
  gs_session_t *s = first;
  int rc = GS_OK;
  for (unsigned i = 0; rc == GS_OK && i < want; i++) {
    if (i > 0)
      rc = gs__slot_session_create(slot, &s, err);
    if (rc == GS_OK) {
      rc = warm_session(slot, s, err);
      gs__slot_put(slot, s); /* slot_destroy frees it on failure */
      slot->n_sessions++;
    }
  }
  note_load(slot, first, gs__now_ns() - t0);
  if (rc == GS_OK && slot->n_late) {
    int prc = pthread_create(&slot->late_thread, NULL, plan_late, slot);
    if (prc != 0)
      return gs_error_sys(err, prc,
                          "model %s: cannot start a thread to plan "
                          "batch sizes after ready",
                          slot->name);
    slot->late_started = true;
  }
  return rc;
}
