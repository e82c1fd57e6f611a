/* gs_buf_read_fd rules: a file is read whole whatever its length up to the
 * buffer's limit (exactly the limit included); one byte more fails the
 * buffer with GS_ELIMIT and the table's message; a read error is
 * GS_ESYSTEM with errno; a pipe (no size known up front) reads the same.
 * Table rows that mirror a public constant (the state file's) equal it. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "gpuslice/state.h"

/* A pipe holding n bytes of a repeating pattern, write end closed. */
static int pipe_with(size_t n) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  for (size_t i = 0; i < n; i++) {
    char c = (char)('a' + i % 26);
    assert_int_equal(write(fds[1], &c, 1), 1);
  }
  close(fds[1]);
  return fds[0];
}

static void test_reads_up_to_the_limit(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init_max(&b, GS_LIMIT_CONFIG_FILE, 100);
  int fd = pipe_with(100); /* exactly the limit */
  assert_int_equal(gs_buf_read_fd(&b, fd), GS_OK);
  close(fd);
  assert_int_equal(b.len, 100);
  assert_int_equal(b.data[100], '\0');
  assert_memory_equal(b.data + 26, "abc", 3);
  gs_buf_free(&b);
}

static void test_one_byte_over_fails(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init_max(&b, GS_LIMIT_CONFIG_FILE, 100);
  int fd = pipe_with(101);
  assert_int_equal(gs_buf_read_fd(&b, fd), GS_ELIMIT);
  close(fd);
  assert_null(b.data);
  gs_error_t err = {0};
  assert_int_equal(gs_buf_error(&b, &err), GS_ELIMIT);
  assert_string_equal(err.msg,
                      "model configuration file larger than 100 bytes");
}

static void test_longer_than_a_chunk(void **state) {
  (void)state;
  char path[] = "/tmp/gs_test_buf_read.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  size_t n = ((size_t)200 << 10) + 7; /* several reads */
  char *bytes = malloc(n);
  assert_non_null(bytes);
  for (size_t i = 0; i < n; i++)
    bytes[i] = (char)(i * 7);
  assert_int_equal(write(fd, bytes, n), (ssize_t)n);
  assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_STATE_FILE);
  assert_int_equal(gs_buf_read_fd(&b, fd), GS_OK);
  assert_int_equal(b.len, n);
  assert_memory_equal(b.data, bytes, n);
  close(fd);
  free(bytes);
  gs_buf_free(&b);
}

static void test_read_error(void **state) {
  (void)state;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_CONFIG_FILE);
  errno = 0;
  assert_int_equal(gs_buf_read_fd(&b, -1), GS_ESYSTEM);
  assert_int_equal(errno, EBADF);
  gs_buf_free(&b);
}

/* A row that mirrors a public constant keeps its value. */
static void test_rows_match_public_limits(void **state) {
  (void)state;
  assert_int_equal(gs_limit_bytes(GS_LIMIT_STATE_FILE), GS_STATE_MAX_BYTES);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reads_up_to_the_limit),
      cmocka_unit_test(test_one_byte_over_fails),
      cmocka_unit_test(test_longer_than_a_chunk),
      cmocka_unit_test(test_read_error),
      cmocka_unit_test(test_rows_match_public_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
