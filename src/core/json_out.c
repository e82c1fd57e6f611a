/* JSON text written straight into a gs_buf (json_out.h): the same text as
 * jansson's compact dump, without a tree of allocated values in between.
 * Integers are formatted by hand (no printf on the request path); reals
 * go through snprintf("%.17g") as jansson's do. */
#include "core/json_out.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpuslice/error.h"

/* The length of the UTF-8 sequence starting at s[0..left), 0 when it is
 * not a valid one: a lead byte's length, continuation bytes, no overlong
 * form, no surrogate, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t left) {
  unsigned c = s[0];
  size_t n;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF)
    n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4)
    n = 4, cp = c & 0x07;
  else
    return 0; /* a continuation byte, 0xC0/0xC1 (overlong), 0xF5.. */
  if (n > left)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

bool gs_json_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t at = 0; at < n;) {
    if (p[at] < 0x80) { /* the common case, one byte at a time */
      at++;
      continue;
    }
    size_t len = utf8_seq(p + at, n - at);
    if (!len)
      return false;
    at += len;
  }
  return true;
}

/* The escape for byte c, or NULL when c goes out as it is. Control
 * characters without a short form become \u00XX (upper-case hex). */
static const char *escape_of(unsigned char c, char tmp[7]) {
  switch (c) {
  case '"':
    return "\\\"";
  case '\\':
    return "\\\\";
  case '\b':
    return "\\b";
  case '\f':
    return "\\f";
  case '\n':
    return "\\n";
  case '\r':
    return "\\r";
  case '\t':
    return "\\t";
  default:
    break;
  }
  if (c >= 0x20)
    return NULL;
  static const char hex[] = "0123456789ABCDEF";
  memcpy(tmp, "\\u00", 4);
  tmp[4] = hex[c >> 4];
  tmp[5] = hex[c & 15];
  tmp[6] = '\0';
  return tmp;
}

int gs_json_str(gs_buf_t *b, const char *s, size_t n) {
  if (!gs_json_utf8_valid(s, n))
    return GS_EINVAL;
  gs_buf_add(b, "\"", 1);
  size_t run = 0; /* bytes before i not written yet */
  for (size_t i = 0; i < n; i++) {
    char tmp[7];
    const char *esc = escape_of((unsigned char)s[i], tmp);
    if (!esc)
      continue;
    gs_buf_add(b, s + run, i - run);
    gs_buf_adds(b, esc);
    run = i + 1;
  }
  gs_buf_add(b, s + run, n - run);
  return gs_buf_add(b, "\"", 1);
}

int gs_json_str_lossy(gs_buf_t *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  gs_buf_add(b, "\"", 1);
  for (size_t at = 0; at < n;) {
    size_t len = utf8_seq(p + at, n - at);
    if (!len) {
      gs_buf_adds(b, "\\uFFFD"); /* one per byte that starts nothing */
      at++;
      continue;
    }
    char tmp[7];
    const char *esc = len == 1 ? escape_of(p[at], tmp) : NULL;
    if (esc)
      gs_buf_adds(b, esc);
    else
      gs_buf_add(b, s + at, len);
    at += len;
  }
  return gs_buf_add(b, "\"", 1);
}

int gs_json_strz(gs_buf_t *b, const char *s) {
  return gs_json_str(b, s, strlen(s));
}

int gs_json_key(gs_buf_t *b, const char *key) {
  int rc = gs_json_strz(b, key);
  return rc == GS_EINVAL ? rc : gs_buf_add(b, ":", 1);
}

int gs_json_uint(gs_buf_t *b, uint64_t v) {
  char tmp[24];
  size_t at = sizeof tmp;
  do {
    tmp[--at] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return gs_buf_add(b, tmp + at, sizeof tmp - at);
}

int gs_json_int(gs_buf_t *b, int64_t v) {
  if (v >= 0)
    return gs_json_uint(b, (uint64_t)v);
  gs_buf_add(b, "-", 1);
  return gs_json_uint(b, (uint64_t)0 - (uint64_t)v); /* INT64_MIN too */
}

/* As jansson writes a real: "%.17g", then ".0" when neither '.' nor 'e'
 * is in it (so it reads back as a real), and the exponent without '+' or
 * leading zeros ("1e-07" -> "1e-7", "1e+20" -> "1e20"). */
int gs_json_real(gs_buf_t *b, double v) {
  if (!isfinite(v))
    return gs_buf_add(b, "null", 4);
  char tmp[40];
  int n = snprintf(tmp, sizeof tmp - 2, "%.17g", v);
  if (n < 0 || (size_t)n >= sizeof tmp - 2)
    return gs_buf_add(b, "null", 4); /* cannot happen for %.17g */
  char *e = strchr(tmp, 'e');
  if (!e && !strchr(tmp, '.')) {
    memcpy(tmp + n, ".0", 3);
    n += 2;
  }
  if (e) {
    char *from = e + 1, *to = e + 1;
    if (*from == '+')
      from++;
    else if (*from == '-')
      from++, to++;
    while (*from == '0' && from[1])
      from++;
    memmove(to, from, strlen(from) + 1);
    n = (int)strlen(tmp);
  }
  return gs_buf_add(b, tmp, (size_t)n);
}

int gs_json_bool(gs_buf_t *b, bool v) {
  return v ? gs_buf_add(b, "true", 4) : gs_buf_add(b, "false", 5);
}
