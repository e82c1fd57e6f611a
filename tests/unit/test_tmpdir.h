/* A scratch directory per unit test binary: made in setup, removed with
 * everything in it in teardown (test-only). */
#ifndef GPUSLICE_TEST_TMPDIR_H
#define GPUSLICE_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

/* /tmp/gs_test_NAME.XXXXXX into buf; 0 or -1. */
static inline int test_tmpdir_make(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "/tmp/gs_test_%s.XXXXXX", name);
  return mkdtemp(buf) ? 0 : -1;
}

static inline int test_tmpdir_remove(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

#endif
