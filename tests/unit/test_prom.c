/* core/prom.h against the Prometheus text exposition format (0.0.4): in a
 * label value backslash, double quote and line feed are escaped as \\, \"
 * and \n; in HELP text backslash and line feed; sample values are Go
 * float literals, NaN and +Inf/-Inf spelled so. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/prom.h"

static char *take(gs_buf_t *b) {
  size_t len;
  char *text = gs_buf_take(b, &len);
  assert_non_null(text);
  return text;
}

static void test_label_values_escaped(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  const gs_prom_label_t labels[] = {{"a", "x\\y\"z\nw"}, {"b", NULL}};
  gs_prom_sample_u64(&b, "m", labels, 2, 7);
  char *text = take(&b);
  assert_string_equal(text, "m{a=\"x\\\\y\\\"z\\nw\",b=\"\"} 7\n");
  free(text);
}

static void test_help_escaped_type_kept(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  gs_prom_family(&b, "m_total", "counter", "a \\ and\na \"quote\"");
  char *text = take(&b);
  /* a quote in HELP stays as it is */
  assert_string_equal(text, "# HELP m_total a \\\\ and\\na \"quote\"\n"
                            "# TYPE m_total counter\n");
  free(text);
}

static void test_values(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  gs_prom_sample_u64(&b, "u", NULL, 0, UINT64_MAX);
  gs_prom_sample_f64(&b, "f", NULL, 0, 0.25);
  gs_prom_sample_f64(&b, "g", NULL, 0, 0.1);
  gs_prom_sample_f64(&b, "n", NULL, 0, NAN);
  gs_prom_sample_f64(&b, "i", NULL, 0, -INFINITY);
  char *text = take(&b);
  assert_string_equal(text, "u 18446744073709551615\nf 0.25\ng 0.1\nn NaN\n"
                            "i -Inf\n");
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_label_values_escaped),
      cmocka_unit_test(test_help_escaped_type_kept),
      cmocka_unit_test(test_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
