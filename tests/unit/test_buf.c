/* gs_buf rules: appends grow and stay NUL-terminated; the hard limit fails
 * the append that would cross it, frees the bytes and sticks until reset;
 * reserve/commit and consume keep the contents exact; the error message is
 * derived from the limits table; the error code maps to one HTTP and one
 * gRPC status, and a failure after a request was accepted to 400 or 500. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

static void test_grows_and_terminates(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(gs_buf_addf(&b, "%03d,", i), GS_OK);
  assert_int_equal(b.len, 4000);
  assert_int_equal(b.data[b.len], '\0');
  assert_memory_equal(b.data + 3996, "999,", 4);
  size_t len = 0;
  char *s = gs_buf_take(&b, &len);
  assert_non_null(s);
  assert_int_equal(len, 4000);
  assert_null(b.data);
  free(s);
  s = gs_buf_take(&b, &len); /* empty: "" not NULL */
  assert_string_equal(s, "");
  free(s);
}

static void test_limit_is_sticky(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init_max(&b, GS_LIMIT_HTTP_HEADERS, 10);
  assert_int_equal(gs_buf_add(&b, "0123456789", 10), GS_OK); /* exactly max */
  assert_int_equal(gs_buf_add(&b, "x", 1), GS_ELIMIT);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(gs_buf_add(&b, "", 0), GS_ELIMIT); /* sticky */
  assert_int_equal(gs_buf_adds(&b, "y"), GS_ELIMIT);
  assert_null(gs_buf_take(&b, NULL));
  gs_error_t err = {0};
  assert_int_equal(gs_buf_error(&b, &err), GS_ELIMIT);
  assert_string_equal(err.msg, "HTTP header block larger than 10 bytes");
  gs_buf_reset(&b);
  assert_int_equal(gs_buf_error(&b, &err), GS_OK);
  assert_int_equal(gs_buf_adds(&b, "ok"), GS_OK);
  assert_string_equal(b.data, "ok");
  gs_buf_free(&b);
}

static void test_reserve_commit_consume(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_HTTP_BODY);
  char *tail = gs_buf_reserve(&b, 100);
  assert_non_null(tail);
  memcpy(tail, "hello world", 11);
  gs_buf_commit(&b, 11);
  assert_string_equal(b.data, "hello world");
  gs_buf_consume(&b, 6);
  assert_string_equal(b.data, "world");
  assert_int_equal(b.len, 5);
  gs_buf_commit(&b, 1u << 20); /* more than reserved: clamped to capacity */
  assert_true(b.len < b.cap);
  gs_buf_consume(&b, b.len + 5);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  gs_buf_free(&b);
}

static void test_limits_table(void **state) {
  (void)state;
  assert_int_equal(gs_limit_bytes(GS_LIMIT_HTTP_URL), 8u << 10);
  assert_string_equal(gs_limit_what(GS_LIMIT_GRPC_MESSAGE), "gRPC message");
  assert_int_equal(gs_limit_bytes(GS_LIMIT_COUNT), 0);
}

static void test_status_mapping(void **state) {
  (void)state;
  assert_int_equal(gs_error_http_status(GS_OK), 200);
  assert_int_equal(gs_error_http_status(GS_ENOTFOUND), 404);
  assert_int_equal(gs_error_http_status(GS_EINVAL), 400);
  assert_int_equal(gs_error_http_status(GS_EDRIVER), 500);
  assert_int_equal(gs_error_http_status(9999), 500);
  assert_int_equal(gs_error_grpc_status(GS_OK), 0);
  assert_int_equal(gs_error_grpc_status(GS_EINVAL), 3);
  assert_int_equal(gs_error_grpc_status(GS_ENOTFOUND), 5);
  assert_int_equal(gs_error_grpc_status(GS_ELIMIT), 8);
  assert_int_equal(gs_error_grpc_status(GS_ENODEV), 14);
  assert_int_equal(gs_error_grpc_status(-1), 13);
}

/* Rule: after a request was accepted, only bad data in it is the client's
 * fault (400): GS_EINVAL anywhere, GS_ELIMIT only in the engine's run;
 * everything else, an unset code included, is the server's (500). */
static void test_run_status(void **state) {
  (void)state;
  assert_int_equal(gs_error_http_status_run(GS_EINVAL, true), 400);
  assert_int_equal(gs_error_http_status_run(GS_EINVAL, false), 400);
  assert_int_equal(gs_error_http_status_run(GS_ELIMIT, true), 400);
  assert_int_equal(gs_error_http_status_run(GS_ELIMIT, false), 500);
  assert_int_equal(gs_error_http_status_run(GS_ENOTFOUND, true), 500);
  assert_int_equal(gs_error_http_status_run(GS_EUNSUPPORTED, true), 500);
  assert_int_equal(gs_error_http_status_run(GS_ENOMEM, false), 500);
  assert_int_equal(gs_error_http_status_run(GS_OK, false), 500);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grows_and_terminates),
      cmocka_unit_test(test_limit_is_sticky),
      cmocka_unit_test(test_reserve_commit_consume),
      cmocka_unit_test(test_limits_table),
      cmocka_unit_test(test_status_mapping),
      cmocka_unit_test(test_run_status),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
