/* gs_buf: the growable byte buffer with a hard limit and sticky failure
 * (buf.h), and the table of limits its messages come from. Growth doubles,
 * so appends are amortised O(1). */
#include "core/buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
  size_t bytes;
  const char *what;
} limits[GS_LIMIT_COUNT] = {
#define XX(name, bytes, what) [GS_LIMIT_##name] = {bytes, what},
    GS_LIMITS(XX)
#undef XX
};

size_t gs_limit_bytes(gs_limit_t which) {
  return which < GS_LIMIT_COUNT ? limits[which].bytes : 0;
}

const char *gs_limit_what(gs_limit_t which) {
  return which < GS_LIMIT_COUNT ? limits[which].what : "buffer";
}

void gs_buf_init_max(gs_buf_t *b, gs_limit_t limit, size_t max) {
  *b = (gs_buf_t){.max = max, .limit = limit};
}

void gs_buf_init(gs_buf_t *b, gs_limit_t limit) {
  gs_buf_init_max(b, limit, gs_limit_bytes(limit));
}

static void *fail(gs_buf_t *b, int code) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = code;
  return NULL;
}

void *gs_buf_reserve(gs_buf_t *b, size_t n) {
  if (b->failed)
    return NULL;
  if (n > b->max - b->len)
    return fail(b, GS_ELIMIT);
  size_t need = b->len + n + 1;
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
      cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *grown = realloc(b->data, cap);
    if (!grown)
      return fail(b, GS_ENOMEM);
    b->data = grown;
    b->cap = cap;
  }
  b->data[b->len] = '\0';
  return b->data + b->len;
}

void gs_buf_commit(gs_buf_t *b, size_t n) {
  if (b->failed || !b->data)
    return;
  if (n > b->cap - b->len - 1)
    n = b->cap - b->len - 1;
  b->len += n;
  b->data[b->len] = '\0';
}

int gs_buf_add(gs_buf_t *b, const void *data, size_t n) {
  char *tail = gs_buf_reserve(b, n);
  if (!tail)
    return b->failed;
  if (n)
    memcpy(tail, data, n);
  gs_buf_commit(b, n);
  return GS_OK;
}

int gs_buf_adds(gs_buf_t *b, const char *s) {
  return gs_buf_add(b, s, strlen(s));
}

int gs_buf_vaddf(gs_buf_t *b, const char *fmt, va_list ap) {
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  int rc = GS_OK;
  char *tail = n < 0 ? NULL : gs_buf_reserve(b, (size_t)n);
  if (n < 0)
    rc = b->failed ? b->failed : (fail(b, GS_ENOMEM), GS_ENOMEM);
  else if (!tail)
    rc = b->failed;
  else {
    vsnprintf(tail, (size_t)n + 1, fmt, again);
    gs_buf_commit(b, (size_t)n);
  }
  va_end(again);
  return rc;
}

int gs_buf_addf(gs_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = gs_buf_vaddf(b, fmt, ap);
  va_end(ap);
  return rc;
}

void gs_buf_consume(gs_buf_t *b, size_t n) {
  if (!b->data)
    return;
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
  }
  b->data[b->len] = '\0';
}

void gs_buf_reset(gs_buf_t *b) {
  b->len = 0;
  b->failed = 0;
  if (b->data)
    b->data[0] = '\0';
}

void gs_buf_free(gs_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
}

char *gs_buf_take(gs_buf_t *b, size_t *len) {
  if (b->failed)
    return NULL;
  char *out = b->data ? b->data : strdup("");
  if (len)
    *len = out ? b->len : 0;
  b->data = NULL;
  b->len = b->cap = 0;
  return out;
}

int gs_buf_error(const gs_buf_t *b, gs_error_t *err) {
  if (b->failed == GS_ELIMIT)
    return gs_error_set(err, GS_ELIMIT, "%s larger than %zu bytes",
                        gs_limit_what(b->limit), b->max);
  if (b->failed)
    return gs_error_set(err, b->failed, "out of memory growing %s",
                        gs_limit_what(b->limit));
  return GS_OK;
}
