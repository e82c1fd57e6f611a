/* State file durability: a save puts the new contents on disk (fsync of the
 * temporary file) before the rename makes them the state file, and then
 * syncs the directory, so that a power cut leaves the old file or the new
 * one, never an empty or partial file under the state file's name (the
 * write-fsync-rename-fsync sequence of ARCHITECTURE.md's state module).
 * fsync is interposed by this test binary: it records which file each call
 * synced and whether the state file held the new contents at that moment,
 * then does the real fsync. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "gpuslice/state.h"
#include "test_tmpdir.h"

static const char *const example =
    "{\"version\":1,\"backend\":\"host\",\"devices\":[{\"index\":0,\"model\":"
    "\"host\",\"memory_slices\":8,\"mig_enabled\":true,\"gpu_instances\":[{"
    "\"id\":1,\"profile\":19,\"start\":0,\"uuid\":\"HOST-1\",\"compute_"
    "instances\":[{\"id\":0,\"profile\":0,\"start\":0,\"uuid\":\"HOST-2\"}]}]}]"
    "}";

static char tmpdir[256];

typedef struct synced_s {
  char path[512];
  bool state_file_existed; /* the state file's name was taken then */
} synced_t;

static synced_t synced[16];
static unsigned n_synced;
static bool recording;

/* The process's fsync, for libgpuslice too. */
int fsync(int fd);
int fsync(int fd) {
  if (recording && n_synced < sizeof synced / sizeof synced[0]) {
    char link[64], state_path[400];
    synced_t *s = &synced[n_synced++];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, s->path, sizeof s->path - 1);
    s->path[n > 0 ? n : 0] = '\0';
    snprintf(state_path, sizeof state_path, "%s/%s", tmpdir, GS_STATE_FILE);
    s->state_file_existed = access(state_path, F_OK) == 0;
  }
  return (int)syscall(SYS_fsync, fd);
}

static bool ends_with(const char *s, const char *tail) {
  size_t a = strlen(s), b = strlen(tail);
  return a >= b && strcmp(s + a - b, tail) == 0;
}

/* Rule: the first save syncs a temporary beside the state file while the
 * state file does not exist yet, and then the directory. */
static void
test_save_syncs_the_new_file_before_it_takes_the_name(void **state) {
  (void)state;
  gs_state_doc_t *doc = calloc(1, sizeof *doc);
  assert_non_null(doc);
  gs_error_t err;
  assert_int_equal(gs_state_decode(doc, "x", example, strlen(example), &err),
                   GS_OK);
  gs_state_t st;
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_EXCLUSIVE, &err), GS_OK);
  n_synced = 0;
  recording = true;
  int rc = gs_state_save(&st, doc, &err);
  recording = false;
  assert_int_equal(rc, GS_OK);
  gs_state_close(&st);
  free(doc);

  char tmp_prefix[600], real_dir[400];
  assert_non_null(realpath(tmpdir, real_dir));
  snprintf(tmp_prefix, sizeof tmp_prefix, "%s/%s.tmp.", real_dir,
           GS_STATE_FILE);
  int tmp_at = -1, dir_at = -1;
  for (unsigned i = 0; i < n_synced; i++) {
    /* a file renamed away shows as "... (deleted)" or its new name */
    if (strncmp(synced[i].path, tmp_prefix, strlen(tmp_prefix)) == 0 &&
        tmp_at < 0) {
      tmp_at = (int)i;
      assert_false(synced[i].state_file_existed);
    }
    if (strcmp(synced[i].path, real_dir) == 0)
      dir_at = (int)i;
  }
  if (tmp_at < 0)
    fail_msg("no fsync of the temporary file (%u fsync calls)", n_synced);
  if (dir_at < 0)
    fail_msg("no fsync of the state directory after the rename");
  assert_true(dir_at > tmp_at);
  assert_true(synced[dir_at].state_file_existed);
  assert_false(ends_with(synced[tmp_at].path, GS_STATE_FILE));
}

static int setup(void **state) {
  (void)state;
  return test_tmpdir_make(tmpdir, sizeof tmpdir, "state_rules");
}

static int teardown(void **state) {
  (void)state;
  return test_tmpdir_remove(tmpdir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_save_syncs_the_new_file_before_it_takes_the_name),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
