/* The fan-outs' answers merged, pure (no sockets, unit tested and fuzzed):
 * Triton's statistics summed over workers, and workers' Prometheus text
 * relabelled with instance="worker" before it is concatenated. */
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "serve/serve_int.h"

/* ---- statistics merge -----------------------------------------------------
 */

/* Keys that say which entry of an array an object is: equal in entries
 * that merge, so they are kept rather than summed. */
static const char *const identity_keys[] = {"name", "version", "batch_size"};
#define N_IDENTITY (sizeof identity_keys / sizeof identity_keys[0])

static bool is_identity_key(const char *key) {
  for (size_t i = 0; i < N_IDENTITY; i++)
    if (strcmp(key, identity_keys[i]) == 0)
      return true;
  return false;
}

static bool has_identity(const json_t *obj) {
  for (size_t i = 0; i < N_IDENTITY; i++)
    if (json_object_get(obj, identity_keys[i]))
      return true;
  return false;
}

static bool same_identity(const json_t *a, const json_t *b) {
  for (size_t i = 0; i < N_IDENTITY; i++) {
    json_t *va = json_object_get(a, identity_keys[i]);
    json_t *vb = json_object_get(b, identity_keys[i]);
    if (!va != !vb || (va && !json_equal(va, vb)))
      return false;
  }
  return true;
}

_Static_assert(sizeof(json_int_t) == sizeof(long long),
               "saturation below assumes json_int_t is long long");

/* Counters saturate rather than wrap: a sum past the range is a worker's
 * garbage, and signed overflow would be undefined. */
static json_int_t add_saturated(json_int_t a, json_int_t b) {
  if (b > 0 && a > LLONG_MAX - b)
    return LLONG_MAX;
  if (b < 0 && a < LLONG_MIN - b)
    return LLONG_MIN;
  return a + b;
}

static int merge(json_t *acc, json_t *src, const char *key);

/* An empty container of src's type to merge src into, or a copy of a
 * scalar (the first value seen is the one kept). */
static json_t *fresh(json_t *src) {
  if (json_is_object(src))
    return json_object();
  if (json_is_array(src))
    return json_array();
  return json_copy(src);
}

/* Merges src into a new value added to acc (an object at key, or the end
 * of an array when key is NULL). */
static int merge_new(json_t *acc, const char *key, json_t *src) {
  json_t *v = fresh(src);
  if (!v)
    return -1;
  int added =
      key ? json_object_set_new(acc, key, v) : json_array_append_new(acc, v);
  if (added != 0)
    return -1;
  /* A scalar is already the copy; merging it again would count it twice. */
  return json_is_object(v) || json_is_array(v) ? merge(v, src, key) : 0;
}

static int merge_object(json_t *acc, json_t *src) {
  const char *key;
  json_t *v;
  json_object_foreach(src, key, v) {
    json_t *a = json_object_get(acc, key);
    if (a ? merge(a, v, key) : merge_new(acc, key, v))
      return -1;
  }
  return 0;
}

static int by_batch_size(const void *a, const void *b) {
  json_int_t x =
      json_integer_value(json_object_get(*(json_t *const *)a, "batch_size"));
  json_int_t y =
      json_integer_value(json_object_get(*(json_t *const *)b, "batch_size"));
  return (x > y) - (x < y);
}

/* Triton lists batch_stats by batch size; entries from several workers
 * arrive interleaved. */
static int sort_batch_stats(json_t *arr) {
  size_t n = json_array_size(arr);
  if (n < 2)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!json_is_integer(json_object_get(json_array_get(arr, i), "batch_size")))
      return 0;
  json_t **items = malloc(n * sizeof *items);
  if (!items)
    return -1;
  for (size_t i = 0; i < n; i++)
    items[i] = json_incref(json_array_get(arr, i));
  qsort(items, n, sizeof *items, by_batch_size);
  json_array_clear(arr);
  int rc = 0;
  for (size_t i = 0; i < n; i++)
    if (json_array_append_new(arr, items[i]) != 0)
      rc = -1; /* append_new released it */
  free(items);
  return rc;
}

/* Entries with identity fields merge with their match or are added;
 * anything else is kept from the first worker that had the array (acc was
 * empty then). */
static int merge_array(json_t *acc, json_t *src) {
  bool first = json_array_size(acc) == 0;
  size_t i;
  json_t *v;
  json_array_foreach(src, i, v) {
    if (!json_is_object(v) || !has_identity(v)) {
      if (first && merge_new(acc, NULL, v))
        return -1;
      continue;
    }
    json_t *match = NULL;
    for (size_t j = 0; !match && j < json_array_size(acc); j++) {
      json_t *a = json_array_get(acc, j);
      if (json_is_object(a) && same_identity(a, v))
        match = a;
    }
    if (match ? merge(match, v, NULL) : merge_new(acc, NULL, v))
      return -1;
  }
  return sort_batch_stats(acc);
}

/* Merges src into acc, which the result owns: containers recurse, counters
 * add, last_inference is the latest; everything else keeps the first. */
static int merge(json_t *acc, json_t *src, const char *key) {
  if (json_is_object(acc) && json_is_object(src))
    return merge_object(acc, src);
  if (json_is_array(acc) && json_is_array(src))
    return merge_array(acc, src);
  if (!json_is_integer(acc) || !json_is_integer(src) || !key ||
      is_identity_key(key))
    return 0;
  json_int_t a = json_integer_value(acc), b = json_integer_value(src);
  if (strcmp(key, "last_inference") == 0)
    return json_integer_set(acc, a > b ? a : b);
  return json_integer_set(acc, add_saturated(a, b));
}

/* GS_EPARSE naming worker i and what is wrong, unless doc is statistics. */
static int check_stats_doc(const json_t *doc, size_t i, gs_error_t *err) {
  if (!json_is_object(doc))
    return gs_error_set(err, GS_EPARSE,
                        "statistics of worker %zu: not a JSON object", i);
  json_t *list = json_object_get(doc, "model_stats");
  if (!json_is_array(list))
    return gs_error_set(err, GS_EPARSE,
                        "statistics of worker %zu: no \"model_stats\" array",
                        i);
  for (size_t at = 0; at < json_array_size(list); at++)
    if (!json_is_object(json_array_get(list, at)))
      return gs_error_set(err, GS_EPARSE,
                          "statistics of worker %zu: model_stats[%zu] is not "
                          "an object",
                          i, at);
  return GS_OK;
}

json_t *gs__stats_merge(json_t *const *docs, size_t n, gs_error_t *err) {
  for (size_t i = 0; i < n; i++)
    if (check_stats_doc(docs[i], i, err) != GS_OK)
      return NULL;
  json_t *sum = json_pack("{s:[]}", "model_stats");
  /* Every document merges into an empty one, so that even a worker's own
   * duplicate entries combine. */
  for (size_t i = 0; sum && i < n; i++) {
    if (merge(sum, docs[i], NULL) != 0) {
      json_decref(sum);
      sum = NULL;
    }
  }
  if (!sum)
    gs_error_set(err, GS_ENOMEM, "out of memory merging statistics");
  return sum;
}

/* ---- metrics labels -------------------------------------------------------
 */

/* Appends n bytes; false once the buffer failed (out of memory or over its
 * limit: the failure sticks, so the caller looks once at the end). */
static bool put(gs_buf_t *o, const char *s, size_t n) {
  return gs_buf_add(o, s, n) == GS_OK;
}

static bool puts_(gs_buf_t *o, const char *s) {
  return gs_buf_adds(o, s) == GS_OK;
}

/* instance="label", escaped as the text format wants label values. */
static bool put_instance(gs_buf_t *o, const char *label) {
  bool ok = puts_(o, "instance=\"");
  for (const char *c = label; ok && *c; c++) {
    if (*c == '\\')
      ok = puts_(o, "\\\\");
    else if (*c == '"')
      ok = puts_(o, "\\\"");
    else if (*c == '\n')
      ok = puts_(o, "\\n");
    else
      ok = put(o, c, 1);
  }
  return ok && puts_(o, "\"");
}

static bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         c == ':';
}

static bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

static const char *skip_blanks(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  return p;
}

/* The closing '}' of a label block starting after '{', skipping quoted
 * values (which may hold braces and escaped quotes); NULL when open. */
static const char *labels_end(const char *p, const char *end) {
  bool quoted = false;
  for (; p < end; p++) {
    if (quoted && *p == '\\' && p + 1 < end)
      p++; /* the escaped character */
    else if (*p == '"')
      quoted = !quoted;
    else if (!quoted && *p == '}')
      return p;
  }
  return NULL;
}

/* One sample line: name{instance="L",labels} value...; a line that is not
 * a sample (no name, open labels, no value) is dropped. */
static bool relabel_sample(gs_buf_t *o, const char *p, const char *end,
                           const char *label) {
  const char *name = p;
  if (!is_name_start(*p))
    return true;
  while (p < end && is_name_char(*p))
    p++;
  const char *name_end = p;
  const char *labels = NULL, *labels_stop = NULL;
  p = skip_blanks(p, end);
  if (p < end && *p == '{') {
    labels = p + 1;
    labels_stop = labels_end(labels, end);
    if (!labels_stop)
      return true;
    p = skip_blanks(labels_stop + 1, end);
  } else if (p == name_end) {
    return true; /* the name runs into something that is not a name */
  }
  if (p == end)
    return true; /* no value */
  bool ok = put(o, name, (size_t)(name_end - name)) && puts_(o, "{") &&
            put_instance(o, label);
  const char *inner = labels ? skip_blanks(labels, labels_stop) : NULL;
  if (ok && inner && inner < labels_stop)
    ok = puts_(o, ",") && put(o, inner, (size_t)(labels_stop - inner));
  return ok && puts_(o, "} ") && put(o, p, (size_t)(end - p)) && puts_(o, "\n");
}

/* "# HELP x" and "# TYPE x" carry meaning, other comments do not; they
 * are written in the one spelling every reader takes ("#HELP\tx" is one
 * Prometheus accepts). */
static bool put_help_or_type(gs_buf_t *o, const char *p, const char *end) {
  p = skip_blanks(p + 1, end);
  size_t left = (size_t)(end - p);
  if (left <= 4 || (memcmp(p, "HELP", 4) != 0 && memcmp(p, "TYPE", 4) != 0) ||
      (p[4] != ' ' && p[4] != '\t'))
    return true;
  const char *rest = skip_blanks(p + 4, end);
  return puts_(o, "# ") && put(o, p, 4) && puts_(o, " ") &&
         put(o, rest, (size_t)(end - rest)) && puts_(o, "\n");
}

int gs__metrics_relabel_buf(const char *text, size_t len, const char *label,
                            bool with_help, gs_buf_t *out) {
  const char *end = text ? text + len : text;
  if (!label)
    label = "";
  bool ok = true;
  for (const char *line = text; ok && line < end;) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    const char *stop = nl ? nl : end;
    const char *next = nl ? nl + 1 : end;
    if (stop > line && stop[-1] == '\r')
      stop--;
    const char *p = skip_blanks(line, stop);
    if (p < stop && *p == '#')
      ok = !with_help || put_help_or_type(out, p, stop);
    else if (p < stop)
      ok = relabel_sample(out, p, stop, label);
    line = next;
  }
  return out->failed;
}
