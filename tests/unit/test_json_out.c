/* The JSON writer (src/core/json_out.c) writes what jansson's compact dump
 * writes for the same value: checked here against jansson itself over
 * random strings (control characters, quotes, valid and invalid UTF-8),
 * random integers and random bit patterns as doubles and floats, plus the
 * edges (INT64_MIN, exponents, -0.0, subnormals, non-finite as null). */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/json_out.h"

static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint64_t next(void) { /* xorshift64*: reproducible */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545F4914F6CDD1Du;
}

/* b's text equals jansson's for j (consumed); b is reset. */
static void assert_same(json_t *j, gs_buf_t *b) {
  char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(j);
  assert_non_null(want);
  assert_int_equal(b->failed, 0);
  assert_string_equal(b->data ? b->data : "", want);
  free(want);
  gs_buf_reset(b);
}

static void test_strings_match_jansson(void **state) {
  (void)state;
  static const unsigned char alphabet[] = {
      'a',  'Z',  '0',  ' ',  '"',  '\\', '/',  0x00, 0x01, 0x08, 0x09,
      0x0a, 0x0c, 0x0d, 0x1f, 0x7f, 0x80, 0xbf, 0xc2, 0xc0, 0xdf, 0xe0,
      0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0xa0, 0x9f, 0x90, 0x8f};
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  size_t valid = 0;
  for (int i = 0; i < 200000; i++) {
    unsigned char s[12];
    size_t n = next() % sizeof s;
    for (size_t k = 0; k < n; k++)
      s[k] = alphabet[next() % sizeof alphabet];
    json_t *j = json_stringn((const char *)s, n);
    int rc = gs_json_str(&b, (const char *)s, n);
    assert_int_equal(j == NULL, rc == GS_EINVAL);
    assert_int_equal(j != NULL, gs_json_utf8_valid((const char *)s, n));
    if (!j) {
      assert_int_equal(b.len, 0); /* refused: nothing written */
      continue;
    }
    valid++;
    assert_same(j, &b);
  }
  assert_true(valid > 20000); /* both kinds were exercised */
  assert_true(valid < 180000);
  gs_buf_free(&b);
}

static void test_integers_match_jansson(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  int64_t edges[] = {0,         1,         -1,           9,
                     10,        -10,       INT32_MAX,    INT32_MIN,
                     INT64_MAX, INT64_MIN, INT64_MIN + 1};
  for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
    gs_json_int(&b, edges[i]);
    assert_same(json_integer(edges[i]), &b);
  }
  for (int i = 0; i < 100000; i++) {
    int64_t v = (int64_t)(next() >> (next() % 64));
    v = next() & 1 ? -v : v;
    gs_json_int(&b, v);
    assert_same(json_integer(v), &b);
    if (v >= 0) {
      gs_json_uint(&b, (uint64_t)v);
      assert_same(json_integer(v), &b);
    }
  }
  /* above INT64_MAX jansson cannot say it; the writer says it in full */
  gs_json_uint(&b, UINT64_MAX);
  assert_string_equal(b.data, "18446744073709551615");
  gs_buf_free(&b);
}

static void one_real(gs_buf_t *b, double v) {
  gs_json_real(b, v);
  assert_same(isfinite(v) ? json_real(v) : json_null(), b);
}

static void test_reals_match_jansson(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  double edges[] = {0.0,
                    -0.0,
                    1.0,
                    -1.0,
                    0.1,
                    1e-7,
                    1e-5,
                    1e16,
                    1e17,
                    1e20,
                    1e100,
                    1e-100,
                    1e300,
                    5e-324,
                    DBL_MAX,
                    DBL_MIN,
                    FLT_MAX,
                    FLT_MIN,
                    123456789012345678.0,
                    NAN,
                    INFINITY,
                    -INFINITY};
  for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
    one_real(&b, edges[i]);
  for (int i = 0; i < 100000; i++) {
    uint64_t bits = next();
    double d;
    float f;
    uint32_t fbits = (uint32_t)bits;
    memcpy(&d, &bits, sizeof d);
    memcpy(&f, &fbits, sizeof f);
    one_real(&b, d);
    one_real(&b, f); /* as a float output is written: widened */
  }
  gs_buf_free(&b);
}

/* The lossy form: the same text for UTF-8, and always JSON that jansson
 * reads back, each byte that starts no sequence as U+FFFD. */
static void test_lossy_strings(void **state) {
  (void)state;
  gs_buf_t b, want;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  gs_buf_init(&want, GS_LIMIT_TEXT);
  static const unsigned char alphabet[] = {'a',  '"',  '\\', 0x01, 0x7f, 0x80,
                                           0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xed,
                                           0xa0, 0xf0, 0x9f, 0xff};
  for (int i = 0; i < 100000; i++) {
    unsigned char s[10];
    size_t n = next() % sizeof s;
    for (size_t k = 0; k < n; k++)
      s[k] = alphabet[next() % sizeof alphabet];
    gs_json_str_lossy(&b, (const char *)s, n);
    json_error_t jerr;
    json_t *back = json_loadb(b.data, b.len, JSON_DECODE_ANY, &jerr);
    assert_non_null(back);
    assert_true(json_is_string(back));
    json_decref(back);
    if (gs_json_str(&want, (const char *)s, n) == GS_OK)
      assert_string_equal(b.data, want.data);
    gs_buf_reset(&b);
    gs_buf_reset(&want);
  }
  gs_json_str_lossy(&b, "a\xc3z", 3);
  assert_string_equal(b.data, "\"a\\uFFFDz\"");
  gs_buf_free(&b);
  gs_buf_free(&want);
}

static void test_key_and_bool(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  gs_json_key(&b, "na\"me");
  gs_json_bool(&b, true);
  gs_buf_add(&b, ",", 1);
  gs_json_bool(&b, false);
  assert_string_equal(b.data, "\"na\\\"me\":true,false");
  gs_buf_reset(&b);
  assert_int_equal(gs_json_key(&b, "\xc3"), GS_EINVAL);
  assert_int_equal(b.len, 0);
  gs_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strings_match_jansson),
      cmocka_unit_test(test_integers_match_jansson),
      cmocka_unit_test(test_reals_match_jansson),
      cmocka_unit_test(test_lossy_strings),
      cmocka_unit_test(test_key_and_bool),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
