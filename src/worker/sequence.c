/* The sequence batcher's slot table, without a loop or a model: which
 * sequences live, which slot each holds (the others wait for one, oldest
 * first), the order their requests run in (one at a time, as they came),
 * and the idle timeout that frees a slot. sequence_run.c runs requests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/sequence.h"

int gs__seq_table_init(gs__seq_table_t *t, unsigned n_slots, uint64_t idle_us,
                       gs_error_t *err) {
  memset(t, 0, sizeof *t);
  if (n_slots == 0 || n_slots > GS__SEQ_MAX_SLOTS)
    return gs_error_set(err, GS_EINVAL, "sequence slots must be 1..%d, not %u",
                        GS__SEQ_MAX_SLOTS, n_slots);
  t->slots = calloc(n_slots, sizeof *t->slots);
  if (!t->slots)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  t->n_slots = n_slots;
  t->idle_ns = (idle_us ? idle_us : GS__SEQ_DEFAULT_IDLE_US) * 1000u;
  return GS_OK;
}

static void seq_free(gs__seq_table_t *t, gs__seq_t *seq) {
  if (t->free_state)
    t->free_state(seq);
  free(seq->state);
  free(seq);
}

void gs__seq_table_release(gs__seq_table_t *t) {
  while (t->live) {
    gs__seq_t *seq = t->live;
    t->live = seq->next;
    seq_free(t, seq);
  }
  free(t->slots);
  memset(t, 0, sizeof *t);
}

static bool same_id(const gs__seq_id_t *a, const gs__seq_id_t *b) {
  return a->is_string == b->is_string &&
         (a->is_string ? strcmp(a->s, b->s) == 0 : a->u == b->u);
}

gs__seq_t *gs__seq_table_find(gs__seq_table_t *t, const gs__seq_id_t *id) {
  for (gs__seq_t *s = t->live; s; s = s->next)
    if (same_id(&s->id, id))
      return s;
  return NULL;
}

void gs__seq_id_format(const gs__seq_id_t *id, char *buf, size_t size) {
  if (id->is_string)
    snprintf(buf, size, "'%.100s'", id->s);
  else
    snprintf(buf, size, "%llu", (unsigned long long)id->u);
}

static int free_slot(const gs__seq_table_t *t) {
  for (unsigned i = 0; i < t->n_slots; i++)
    if (!t->slots[i])
      return (int)i;
  return -1;
}

/* A new sequence, at the end of the live list (oldest first), in a free
 * slot or waiting for one. */
static gs__seq_t *seq_new(gs__seq_table_t *t, const gs__seq_id_t *id) {
  gs__seq_t *seq = calloc(1, sizeof *seq);
  if (!seq)
    return NULL;
  seq->id = *id;
  seq->slot = free_slot(t);
  if (seq->slot >= 0)
    t->slots[seq->slot] = seq;
  gs__seq_t **p = &t->live;
  while (*p)
    p = &(*p)->next;
  *p = seq;
  return seq;
}

int gs__seq_table_add(gs__seq_table_t *t, const gs__seq_id_t *id,
                      gs__seq_item_t *item, uint64_t now, gs__seq_t **out,
                      const char *model, gs_error_t *err) {
  char name[140];
  gs__seq_t *seq = gs__seq_table_find(t, id);
  bool after_end = seq && (seq->tail ? seq->tail->end : seq->ended);
  *out = NULL;
  if (!item->start && (!seq || after_end)) {
    gs__seq_id_format(id, name, sizeof name);
    return gs_error_set(err, GS_ENOTFOUND,
                        "inference request for sequence %s to model '%s' must "
                        "specify the START flag on the first request of the "
                        "sequence (it is not active: never started, ended, "
                        "or idle longer than max_sequence_idle_microseconds)",
                        name, model);
  }
  if (!seq && !(seq = seq_new(t, id)))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  item->next = NULL;
  if (seq->tail)
    seq->tail->next = item;
  else
    seq->head = item;
  seq->tail = item;
  seq->last_ns = now;
  *out = seq;
  return GS_OK;
}

gs__seq_item_t *gs__seq_table_next(gs__seq_table_t *t, gs__seq_t *seq) {
  (void)t;
  if (seq->busy || seq->slot < 0 || !seq->head)
    return NULL;
  gs__seq_item_t *item = seq->head;
  seq->head = item->next;
  if (!seq->head)
    seq->tail = NULL;
  item->next = NULL;
  seq->busy = true;
  if (item->start)
    seq->ended = false;
  if (item->end)
    seq->ended = true;
  return item;
}

static void unlink_live(gs__seq_table_t *t, gs__seq_t *seq) {
  for (gs__seq_t **p = &t->live; *p; p = &(*p)->next)
    if (*p == seq) {
      *p = seq->next;
      return;
    }
}

/* Frees seq's slot and hands it to the oldest sequence waiting for one. */
static gs__seq_t *seq_remove(gs__seq_table_t *t, gs__seq_t *seq) {
  int slot = seq->slot;
  unlink_live(t, seq);
  seq_free(t, seq);
  if (slot < 0)
    return NULL;
  t->slots[slot] = NULL;
  for (gs__seq_t *w = t->live; w; w = w->next)
    if (w->slot < 0) {
      w->slot = slot;
      t->slots[slot] = w;
      return w;
    }
  return NULL;
}

bool gs__seq_table_done(gs__seq_table_t *t, gs__seq_t *seq, uint64_t now,
                        gs__seq_t **woken) {
  *woken = NULL;
  seq->busy = false;
  seq->last_ns = now;
  if (!seq->ended || seq->head)
    return false;
  *woken = seq_remove(t, seq);
  return true;
}

size_t gs__seq_table_expire(gs__seq_table_t *t, uint64_t now, gs__seq_t **woken,
                            size_t max, size_t *n_woken) {
  size_t freed = 0;
  *n_woken = 0;
  gs__seq_t *seq = t->live;
  while (seq) {
    gs__seq_t *next = seq->next;
    if (!seq->busy && !seq->head && now - seq->last_ns >= t->idle_ns) {
      gs__seq_t *w = seq_remove(t, seq);
      freed++;
      if (w && *n_woken < max)
        woken[(*n_woken)++] = w;
    }
    seq = next;
  }
  return freed;
}
