/* The JSON writer (src/core/json_out.c) against jansson, the library whose
 * text it must reproduce: the input's bytes as a string (refused exactly
 * when jansson refuses them as UTF-8, else the same escaped text), and its
 * first 8 bytes as an integer and as a real. A difference aborts. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_out.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(json_t *j, gs_buf_t *b) {
  char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  if (!text || b->failed || strlen(text) != b->len ||
      memcmp(text, b->data, b->len) != 0)
    abort();
  free(text);
  gs_buf_reset(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  json_t *s = json_stringn((const char *)data, size);
  int rc = gs_json_str(&b, (const char *)data, size);
  if ((s == NULL) != (rc == GS_EINVAL))
    abort();
  if (s)
    same(s, &b);
  if (size >= 8) {
    int64_t i;
    double d;
    memcpy(&i, data, 8);
    memcpy(&d, data, 8);
    gs_json_int(&b, i);
    same(json_integer(i), &b);
    gs_json_real(&b, d);
    same(isfinite(d) ? json_real(d) : json_null(), &b);
    float f;
    memcpy(&f, data, 4);
    gs_json_real(&b, f);
    same(isfinite(f) ? json_real(f) : json_null(), &b);
  }
  gs_buf_free(&b);
  return 0;
}
