/* Sequences through the router: every request of a Triton sequence
 * (sequence_id) goes to the worker its start went to, through a map id ->
 * worker shared by every router loop and the gRPC front, pinned at
 * sequence_start, dropped at sequence_end, after an idle time, or when the
 * worker's process is gone (the client is then told to start again). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_int.h"

#define DEFAULT_IDLE_MS 60000u

typedef struct entry_s {
  char id[GS__SEQ_ID];
  gs__wk_t *wk; /* a reference */
  unsigned port;
  uint64_t used_ns;
} entry_t;

struct gs__rseqs_s {
  uv_mutex_t mu;
  entry_t *e;
  size_t n, cap;
  uint64_t idle_ns;
};

int gs__rseqs_init(gs__serve_t *s, gs_error_t *err) {
  gs__rseqs_t *m = calloc(1, sizeof *m);
  if (!m || uv_mutex_init(&m->mu) != 0) {
    free(m);
    return gs_error_set(err, GS_ENOMEM, "cannot set up the sequence map");
  }
  unsigned ms =
      s->opt.sequence_idle_ms ? s->opt.sequence_idle_ms : DEFAULT_IDLE_MS;
  m->idle_ns = (uint64_t)ms * 1000000u;
  s->seqs = m;
  return GS_OK;
}

void gs__rseqs_free(gs__serve_t *s) {
  gs__rseqs_t *m = s->seqs;
  if (!m)
    return;
  for (size_t i = 0; i < m->n; i++)
    gs__wk_unref(m->e[i].wk);
  free(m->e);
  uv_mutex_destroy(&m->mu);
  free(m);
  s->seqs = NULL;
}

/* Drops entry i (under mu). */
static void drop_at(gs__rseqs_t *m, size_t i) {
  gs__wk_unref(m->e[i].wk);
  m->e[i] = m->e[--m->n];
}

/* Drops the idle ones, then finds id (under mu); -1 when absent. */
static long find(gs__rseqs_t *m, const char *id, uint64_t now) {
  long at = -1;
  for (size_t i = 0; i < m->n;) {
    if (now - m->e[i].used_ns > m->idle_ns) {
      drop_at(m, i);
      continue;
    }
    if (strcmp(m->e[i].id, id) == 0)
      at = (long)i;
    i++;
  }
  return at;
}

gs__wk_t *gs__rseq_find(gs__serve_t *s, const gs__rseq_t *q, unsigned *port) {
  gs__rseqs_t *m = s->seqs;
  gs__wk_t *wk = NULL;
  uint64_t now = gs__serve_now_ns();
  uv_mutex_lock(&m->mu);
  long i = find(m, q->id, now);
  if (i >= 0) {
    m->e[i].used_ns = now;
    wk = m->e[i].wk;
    wk->refs++;
    *port = m->e[i].port;
  }
  uv_mutex_unlock(&m->mu);
  return wk;
}

void gs__rseq_pin(gs__serve_t *s, const gs__rseq_t *q, gs__wk_t *wk,
                  unsigned port) {
  gs__rseqs_t *m = s->seqs;
  uint64_t now = gs__serve_now_ns();
  uv_mutex_lock(&m->mu);
  long i = find(m, q->id, now);
  if (i >= 0) /* started again: the new start's worker */
    drop_at(m, (size_t)i);
  if (m->n == m->cap) {
    size_t cap = m->cap ? 2 * m->cap : 64;
    entry_t *e = realloc(m->e, cap * sizeof *e);
    if (!e) { /* unpinned: its requests go by the policy */
      uv_mutex_unlock(&m->mu);
      return;
    }
    m->e = e;
    m->cap = cap;
  }
  entry_t *e = &m->e[m->n++];
  snprintf(e->id, sizeof e->id, "%s", q->id);
  e->wk = wk;
  wk->refs++;
  e->port = port;
  e->used_ns = now;
  uv_mutex_unlock(&m->mu);
}

void gs__rseq_drop(gs__serve_t *s, const gs__rseq_t *q) {
  gs__rseqs_t *m = s->seqs;
  uv_mutex_lock(&m->mu);
  long i = find(m, q->id, gs__serve_now_ns());
  if (i >= 0)
    drop_at(m, (size_t)i);
  uv_mutex_unlock(&m->mu);
}

/* ---- what a request says of its sequence ----------------------------------
 */

bool gs__rseq_from_json(const char *body, size_t len, long long header_len,
                        gs__rseq_t *q) {
  memset(q, 0, sizeof *q);
  if (header_len >= 0 && (size_t)header_len < len)
    len = (size_t)header_len;
  if (!body || !memmem(body, len, "sequence_id", 11))
    return false; /* most requests: not parsed */
  json_t *doc = json_loadb(body, len, 0, NULL);
  json_t *params = json_object_get(doc, "parameters");
  json_t *id = json_object_get(params, "sequence_id");
  if (json_is_integer(id) && json_integer_value(id) != 0)
    snprintf(q->id, sizeof q->id, "i:%lld", (long long)json_integer_value(id));
  else if (json_is_string(id) && json_string_length(id) > 0)
    snprintf(q->id, sizeof q->id, "s:%s", json_string_value(id));
  q->start = json_is_true(json_object_get(params, "sequence_start"));
  q->end = json_is_true(json_object_get(params, "sequence_end"));
  json_decref(doc);
  return q->id[0] != '\0';
}

/* Protobuf's wire format, as far as ModelInferRequest's parameters. */
static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return true;
  }
  return false;
}

/* Reads one field: its number and wire type, and its bytes (length
 * delimited) or value (varint); the others are skipped. */
static bool pb_field(const uint8_t **p, const uint8_t *end, unsigned *num,
                     unsigned *type, const uint8_t **data, uint64_t *value) {
  uint64_t key;
  if (!pb_varint(p, end, &key))
    return false;
  *num = (unsigned)(key >> 3);
  *type = key & 7;
  *data = NULL;
  if (*type == 0)
    return pb_varint(p, end, value);
  size_t skip = *type == 1 ? 8 : *type == 5 ? 4 : 0;
  if (*type == 2) {
    if (!pb_varint(p, end, value) || *value > (uint64_t)(end - *p))
      return false;
    *data = *p;
    skip = (size_t)*value;
  } else if (!skip) {
    return false; /* groups: not in these messages */
  }
  if (skip > (size_t)(end - *p))
    return false;
  *p += skip;
  return true;
}

/* One parameters entry: key (1) and InferParameter (2): bool 1, int64 2,
 * string 3, uint64 5. */
static void pb_param(const uint8_t *p, const uint8_t *end, gs__rseq_t *q) {
  char key[32] = "";
  const uint8_t *val = NULL, *vend = NULL;
  unsigned num, type;
  const uint8_t *data;
  uint64_t v;
  while (p < end && pb_field(&p, end, &num, &type, &data, &v))
    if (num == 1 && data && v < sizeof key) {
      memcpy(key, data, (size_t)v);
      key[v] = '\0';
    } else if (num == 2 && data) {
      val = data;
      vend = data + v;
    }
  while (val && val < vend && pb_field(&val, vend, &num, &type, &data, &v)) {
    if (!strcmp(key, "sequence_start") && num == 1 && !data)
      q->start = v != 0;
    else if (!strcmp(key, "sequence_end") && num == 1 && !data)
      q->end = v != 0;
    else if (!strcmp(key, "sequence_id") && (num == 2 || num == 5) && !data &&
             v != 0)
      snprintf(q->id, sizeof q->id, "i:%lld", (long long)v);
    else if (!strcmp(key, "sequence_id") && num == 3 && data && v > 0)
      snprintf(q->id, sizeof q->id, "s:%.*s",
               (int)(v < GS__SEQ_ID - 3 ? v : GS__SEQ_ID - 3),
               (const char *)data);
  }
}

bool gs__rseq_from_grpc(const uint8_t *msg, size_t len, gs__rseq_t *q) {
  memset(q, 0, sizeof *q);
  /* one uncompressed message: a compressed one goes by the policy */
  if (len < 5 || msg[0] != 0)
    return false;
  const uint8_t *p = msg + 5, *end = msg + len;
  unsigned num, type;
  const uint8_t *data;
  uint64_t v;
  while (p < end && pb_field(&p, end, &num, &type, &data, &v))
    if (num == 4 && data)
      pb_param(data, data + v, q);
  return q->id[0] != '\0';
}
