/* Warm models (CUDA sessions, or config.json "warmup": true): every session
 * the model will use is made at load, and each is run once with zeros at
 * every batch size the batcher pads to, so that planning, algorithm timing
 * and CUDA graph capture happen at load and never on a request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* One run of s at batch size rows (0: the fixed shape) on zeros, written
 * into the session's input buffers as the batcher writes a batch. */
static int warm_run(gs__model_slot_t *slot, gs_session_t *s, uint64_t rows,
                    gs_error_t *err) {
  gs_tensor_t in[GS__INFER_MAX_TENSORS];
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
  return gs_session_run(s, in, slot->io.n_inputs, err);
}

/* Largest first: the session's buffers grow once, and the graphs captured
 * at the larger sizes are not captured again for a smaller one. */
static int warm_session(gs__model_slot_t *slot, gs_session_t *s,
                        gs_error_t *err) {
  for (size_t k = 0; k < slot->n_sizes; k++) {
    int rc = warm_run(slot, s, slot->sizes[k], err);
    if (rc != GS_OK) {
      char why[sizeof err->msg];
      snprintf(why, sizeof why, "%s", err->msg);
      if (slot->sizes[k])
        gs_error_set(err, rc, "planning batch size %llu at load: %s",
                     (unsigned long long)slot->sizes[k], why);
      else
        gs_error_set(err, rc, "planning the model at load: %s", why);
      return rc;
    }
  }
  return GS_OK;
}

static void note_load(gs__model_slot_t *slot, const gs_session_t *first,
                      uint64_t ns) {
  unsigned first_ms = (unsigned)(slot->first_session_ns / 1000000u);
  char list[200] = "";
  size_t at = 0;
  for (size_t k = slot->n_sizes; k-- > 0 && at < sizeof list;)
    at += (size_t)snprintf(list + at, sizeof list - at, "%s%llu", at ? "," : "",
                           (unsigned long long)slot->sizes[k]);
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
             "%u sessions, batch sizes {%s} planned in %u ms", slot->n_sessions,
             list, ms);
  if (slot->n_sizes == 0)
    return;
  char timing[200];
  gs_session_timing(first, timing, sizeof timing);
  size_t used = strlen(slot->load_note);
  snprintf(slot->load_note + used, sizeof slot->load_note - used,
           "; the model read and its first session made in %u ms before%s%s%s",
           first_ms, timing[0] ? " (the first session, ms: " : "", timing,
           timing[0] ? ")" : "");
}

int gs__slot_warm(gs__model_slot_t *slot, gs_session_t *first,
                  gs_error_t *err) {
  uint64_t t0 = gs__now_ns();
  unsigned want = slot->placement.count ? slot->placement.count : 1;
  slot->n_sizes =
      gs__slot_planned_sizes(slot, slot->sizes, GS__MAX_PLANNED_SIZES);
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
  return rc;
}
