/* State file rules: the documented schema round-trips; anything that does
 * not match it is GS_ECORRUPT and the file is left alone; saves are atomic
 * (temporary file, rename) and clean up stale temporaries; the exclusive
 * lock serializes processes. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/test_hooks.h"
#include "gpuslice/state.h"
#include "test_tmpdir.h"

/* The example document of the schema, as the design gives it. */
static const char *const example =
    "{\"version\":1,\"backend\":\"host\",\"devices\":[{\"index\":0,\"model\":"
    "\"host\",\"memory_slices\":8,\"mig_enabled\":true,\"gpu_instances\":[{"
    "\"id\":1,\"profile\":19,\"start\":0,\"uuid\":\"HOST-1\",\"compute_"
    "instances\":[{\"id\":0,\"profile\":0,\"start\":0,\"uuid\":\"HOST-2\"}]}]}]"
    "}";

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  return test_tmpdir_make(tmpdir, sizeof tmpdir, "state");
}

static int teardown(void **state) {
  (void)state;
  return test_tmpdir_remove(tmpdir);
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = malloc(8u << 20);
  assert_non_null(buf);
  *len = fread(buf, 1, 8u << 20, f);
  fclose(f);
  return buf;
}

static gs_state_doc_t *new_doc(void) {
  gs_state_doc_t *doc = calloc(1, sizeof *doc);
  assert_non_null(doc);
  return doc;
}

static void assert_layouts_equal(const gs_layout_t *a, const gs_layout_t *b) {
  assert_int_equal(a->mig_enabled, b->mig_enabled);
  assert_int_equal(a->n_gi, b->n_gi);
  for (unsigned g = 0; g < a->n_gi; g++) {
    const gs_gi_t *x = &a->gi[g], *y = &b->gi[g];
    assert_int_equal(x->id, y->id);
    assert_int_equal(x->profile_id, y->profile_id);
    assert_int_equal(x->start, y->start);
    assert_string_equal(x->uuid, y->uuid);
    assert_int_equal(x->n_ci, y->n_ci);
    for (unsigned c = 0; c < x->n_ci; c++) {
      assert_int_equal(x->ci[c].id, y->ci[c].id);
      assert_int_equal(x->ci[c].profile_id, y->ci[c].profile_id);
      assert_int_equal(x->ci[c].start, y->ci[c].start);
      assert_string_equal(x->ci[c].uuid, y->ci[c].uuid);
    }
  }
}

/* Rule: the schema's example decodes to what it says. */
static void test_decode_example(void **state) {
  (void)state;
  gs_state_doc_t *doc = new_doc();
  gs_error_t err;
  assert_int_equal(gs_state_decode(doc, "x", example, strlen(example), &err),
                   GS_OK);
  assert_string_equal(doc->backend, "host");
  assert_int_equal(doc->n_devices, 1);
  assert_string_equal(doc->device[0].model, "host");
  assert_int_equal(doc->device[0].memory_slices, 8);
  const gs_layout_t *l = &doc->device[0].layout;
  assert_true(l->mig_enabled);
  assert_int_equal(l->n_gi, 1);
  assert_int_equal(l->gi[0].id, 1);
  assert_int_equal(l->gi[0].profile_id, 19);
  assert_string_equal(l->gi[0].uuid, "HOST-1");
  assert_int_equal(l->gi[0].n_ci, 1);
  assert_string_equal(l->gi[0].ci[0].uuid, "HOST-2");
  free(doc);
}

/* Rule: encode then decode gives back the same document. */
static void test_round_trip(void **state) {
  (void)state;
  gs_state_doc_t *doc = new_doc(), *back = new_doc();
  snprintf(doc->backend, sizeof doc->backend, "host");
  doc->n_devices = 1;
  snprintf(doc->device[0].model, sizeof doc->device[0].model, "host");
  doc->device[0].memory_slices = 8;
  gs_layout_t *l = &doc->device[0].layout;
  gs_layout_init(l);
  l->n_gi = 2;
  l->gi[0] = (gs_gi_t){.id = 2, .profile_id = 9, .start = 0, .n_ci = 2};
  snprintf(l->gi[0].uuid, sizeof l->gi[0].uuid, "HOST-a");
  l->gi[0].ci[0] = (gs_ci_t){.id = 0, .profile_id = 0, .start = 0};
  snprintf(l->gi[0].ci[0].uuid, sizeof l->gi[0].ci[0].uuid, "HOST-b");
  l->gi[0].ci[1] = (gs_ci_t){.id = 1, .profile_id = 1, .start = 1};
  snprintf(l->gi[0].ci[1].uuid, sizeof l->gi[0].ci[1].uuid, "HOST-c");
  l->gi[1] = (gs_gi_t){.id = 1, .profile_id = 19, .start = 4};
  snprintf(l->gi[1].uuid, sizeof l->gi[1].uuid, "HOST-d");

  char *text = NULL;
  gs_error_t err;
  assert_int_equal(gs_state_encode(doc, &text, &err), GS_OK);
  assert_int_equal(gs_state_decode(back, "mem", text, strlen(text), &err),
                   GS_OK);
  assert_string_equal(back->backend, "host");
  assert_int_equal(back->n_devices, 1);
  assert_string_equal(back->device[0].model, "host");
  assert_int_equal(back->device[0].memory_slices, 8);
  assert_layouts_equal(&back->device[0].layout, l);
  free(text);
  free(doc);
  free(back);
}

/* Rule: a document this module would not read back is never encoded. */
static void test_encode_refuses_invalid(void **state) {
  (void)state;
  gs_state_doc_t *doc = new_doc();
  snprintf(doc->backend, sizeof doc->backend, "host");
  doc->n_devices = 1;
  snprintf(doc->device[0].model, sizeof doc->device[0].model, "host");
  doc->device[0].memory_slices = 8;
  gs_layout_init(&doc->device[0].layout);
  doc->device[0].layout.n_gi = 1;
  doc->device[0].layout.gi[0] = (gs_gi_t){.id = 1, .profile_id = 19};
  snprintf(doc->device[0].layout.gi[0].uuid, GS_UUID_MAX, "../etc");
  char *text = NULL;
  gs_error_t err;
  assert_int_equal(gs_state_encode(doc, &text, &err), GS_EINVAL);
  assert_null(text);
  free(doc);
}

/* Rule: a missing file is an empty document, not an error. */
static void test_missing_file(void **state) {
  (void)state;
  gs_state_t st;
  gs_error_t err;
  bool existed = true;
  gs_state_doc_t *doc = new_doc();
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_SHARED, &err), GS_OK);
  assert_int_equal(gs_state_load(&st, doc, &existed, &err), GS_OK);
  assert_false(existed);
  assert_int_equal(doc->n_devices, 0);
  gs_state_close(&st);
  free(doc);
}

/* Rule: the last directory component is created 0700, parents too. */
static void test_open_creates_dir(void **state) {
  (void)state;
  char dir[300];
  snprintf(dir, sizeof dir, "%s/a/b/state", tmpdir);
  gs_state_t st;
  gs_error_t err;
  assert_int_equal(gs_state_open(&st, dir, GS_STATE_EXCLUSIVE, &err), GS_OK);
  struct stat sb;
  assert_int_equal(stat(dir, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0700);
  gs_state_close(&st);
  assert_int_equal(st.lock_fd, -1);
}

/* Rule: whatever does not match the schema is GS_ECORRUPT naming the file,
 * and loading it leaves the file exactly as it was. */
static void check_corrupt(const char *data, size_t len, const char *expect) {
  char path[300];
  snprintf(path, sizeof path, "%s/%s", tmpdir, GS_STATE_FILE);
  write_file(path, data, len);
  gs_state_t st;
  gs_error_t err;
  bool existed = false;
  gs_state_doc_t *doc = new_doc();
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_EXCLUSIVE, &err), GS_OK);
  int rc = gs_state_load(&st, doc, &existed, &err);
  gs_state_close(&st);
  if (rc != GS_ECORRUPT)
    fail_msg("expected GS_ECORRUPT for %.60s, got %d: %s", data, rc, err.msg);
  assert_non_null(strstr(err.msg, path));
  assert_non_null(strstr(err.msg, "fix or remove it by hand"));
  if (expect && !strstr(err.msg, expect))
    fail_msg("message '%s' lacks '%s'", err.msg, expect);
  size_t got_len = 0;
  char *got = read_file(path, &got_len);
  assert_non_null(got);
  assert_int_equal(got_len, len);
  assert_memory_equal(got, data, len);
  free(got);
  free(doc);
}

static void check_corrupt_str(const char *data, const char *expect) {
  check_corrupt(data, strlen(data), expect);
}

static void test_corrupt_files(void **state) {
  (void)state;
  /* truncated JSON: the parser's position is reported */
  check_corrupt(example, strlen(example) / 2, "line 1");
  check_corrupt_str("", "line");
  check_corrupt_str("[]", "expected an object");
  /* wrong types */
  check_corrupt_str("{\"version\":\"1\",\"backend\":\"host\",\"devices\":[]}",
                    "\"version\" must be an integer");
  check_corrupt_str("{\"version\":1.0,\"backend\":\"host\",\"devices\":[]}",
                    "integer");
  check_corrupt_str("{\"version\":1,\"backend\":\"host\",\"devices\":{}}",
                    "array");
  /* unknown key, unknown backend, unsupported version */
  check_corrupt_str(
      "{\"version\":1,\"backend\":\"host\",\"devices\":[],\"extra\":0}",
      "unknown key \"extra\"");
  check_corrupt_str("{\"version\":1,\"backend\":\"gpu\",\"devices\":[]}",
                    "unknown backend");
  check_corrupt_str("{\"version\":2,\"backend\":\"host\",\"devices\":[]}",
                    "version");
  /* duplicate keys are not silently merged */
  check_corrupt_str(
      "{\"version\":1,\"version\":1,\"backend\":\"host\",\"devices\":[]}",
      "duplicate");
}

#define DEV_HEAD                                                               \
  "{\"version\":1,\"backend\":\"host\",\"devices\":[{\"index\":0,"             \
  "\"model\":\"host\",\"memory_slices\":8,\"mig_enabled\":true,"               \
  "\"gpu_instances\":["
#define DEV_TAIL "]}]}"
#define GI(id, start, uuid, cis)                                               \
  "{\"id\":" #id ",\"profile\":19,\"start\":" #start ",\"uuid\":\"" uuid       \
  "\",\"compute_instances\":[" cis "]}"
#define CI(id, uuid)                                                           \
  "{\"id\":" #id ",\"profile\":0,\"start\":0,\"uuid\":\"" uuid "\"}"

// clang-format off
#define NINE_GIS                                                               \
  DEV_HEAD GI(1, 0, "A", "") "," GI(2, 1, "B", "") "," GI(3, 2, "C", "") ","   \
  GI(4, 3, "D", "") "," GI(5, 4, "E", "") "," GI(6, 5, "F", "") ","            \
  GI(7, 6, "G", "") "," GI(8, 7, "H", "") "," GI(9, 7, "I", "") DEV_TAIL
// clang-format on

static void test_corrupt_layouts(void **state) {
  (void)state;
  check_corrupt_str(DEV_HEAD GI(1, 0, "A", "") "," GI(1, 1, "B", "") DEV_TAIL,
                    "duplicate GPU instance ID 1");
  check_corrupt_str(DEV_HEAD GI(1, 0, "A", CI(0, "C") "," CI(0, "D")) DEV_TAIL,
                    "duplicate compute instance ID 0");
  check_corrupt_str(DEV_HEAD GI(1, 0, "A", "") "," GI(2, 1, "A", "") DEV_TAIL,
                    "duplicate uuid");
  check_corrupt_str(DEV_HEAD GI(-1, 0, "A", "") DEV_TAIL, "outside");
  check_corrupt_str(DEV_HEAD GI(1, 8, "A", "") DEV_TAIL, "\"start\" is 8");
  check_corrupt_str(DEV_HEAD GI(1, 0, "a/b", "") DEV_TAIL, "illegal");
  check_corrupt_str(DEV_HEAD GI(99999999999999999999, 0, "A", "") DEV_TAIL,
                    NULL);
  /* more GPU instances than GS_MAX_GIS (8) */
  check_corrupt_str(NINE_GIS, "more than 8");
  check_corrupt_str(
      "{\"version\":1,\"backend\":\"host\",\"devices\":[{\"index\":0,\"model\":"
      "\"host\",\"memory_slices\":8,\"mig_enabled\":false,\"gpu_instances\":"
      "[" GI(1, 0, "A", "") "]}]}",
      "mig_enabled false");
}

/* Rule: a file over GS_STATE_MAX_BYTES is refused before parsing. */
static void test_oversize(void **state) {
  (void)state;
  size_t len = GS_STATE_MAX_BYTES + 10;
  char *big = malloc(len);
  assert_non_null(big);
  memset(big, ' ', len);
  memcpy(big, example, strlen(example));
  check_corrupt(big, len, "limit");
  free(big);
}

/* Rule: a save replaces the file through a temporary that is gone
 * afterwards, and removes temporaries a dead writer left. */
static void test_save_atomic(void **state) {
  (void)state;
  char stale[320], tmp_self[320];
  snprintf(stale, sizeof stale, "%s/%s.tmp.999999", tmpdir, GS_STATE_FILE);
  snprintf(tmp_self, sizeof tmp_self, "%s/%s.tmp.%ld", tmpdir, GS_STATE_FILE,
           (long)getpid());
  write_file(stale, "partial", 7);
  gs_state_doc_t *doc = new_doc(), *back = new_doc();
  gs_error_t err;
  assert_int_equal(gs_state_decode(doc, "x", example, strlen(example), &err),
                   GS_OK);
  gs_state_t st;
  bool existed = false;
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_EXCLUSIVE, &err), GS_OK);
  assert_int_equal(gs_state_save(&st, doc, &err), GS_OK);
  assert_int_not_equal(access(stale, F_OK), 0);
  assert_int_not_equal(access(tmp_self, F_OK), 0);
  assert_int_equal(gs_state_load(&st, back, &existed, &err), GS_OK);
  assert_true(existed);
  assert_layouts_equal(&back->device[0].layout, &doc->device[0].layout);
  gs_state_close(&st);

  /* saving needs the exclusive lock */
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_SHARED, &err), GS_OK);
  assert_int_equal(gs_state_save(&st, doc, &err), GS_EINVAL);
  gs_state_close(&st);
  free(doc);
  free(back);
}

/* Reads one byte from fd within timeout_ms; -1 on timeout. */
static int read_byte(int fd, int timeout_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  char c;
  if (poll(&p, 1, timeout_ms) != 1 || read(fd, &c, 1) != 1)
    return -1;
  return c;
}

/* A large document: `devices` devices of 8 GIs with 2 CIs each; `tag` goes
 * into every UUID, so two tags give two documents of the same shape. */
static gs_state_doc_t *big_doc(char tag, unsigned devices) {
  gs_state_doc_t *doc = new_doc();
  snprintf(doc->backend, sizeof doc->backend, "host");
  doc->n_devices = devices;
  for (unsigned d = 0; d < devices; d++) {
    doc->device[d].index = d;
    snprintf(doc->device[d].model, sizeof doc->device[d].model, "host");
    doc->device[d].memory_slices = 8;
    gs_layout_t *l = &doc->device[d].layout;
    gs_layout_init(l);
    l->mig_enabled = true;
    l->n_gi = GS_MAX_GIS;
    for (unsigned g = 0; g < GS_MAX_GIS; g++) {
      gs_gi_t *gi = &l->gi[g];
      *gi = (gs_gi_t){.id = g + 1, .profile_id = 19, .start = g, .n_ci = 2};
      snprintf(gi->uuid, sizeof gi->uuid, "HOST-%c-%u-%u-0000-0000-0000", tag,
               d, g);
      for (unsigned c = 0; c < gi->n_ci; c++) {
        gi->ci[c] = (gs_ci_t){.id = c, .profile_id = 0, .start = c};
        snprintf(gi->ci[c].uuid, sizeof gi->ci[c].uuid,
                 "HOST-%c-%u-%u-%u-0000-0000", tag, d, g, c);
      }
    }
  }
  return doc;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Saves first, says so on ready_fd, then saves second and first
 * alternately until killed (a forked child). The whole first save happens
 * before the parent starts its clock, so however slow the child's saves
 * are (a sanitizer build, a busy machine), an early kill leaves the first
 * document and the rounds alternate which one that is. */
static _Noreturn void save_forever(int ready_fd, const gs_state_doc_t *first,
                                   const gs_state_doc_t *second) {
  alarm(30); /* bounded: never outlive the test */
  gs_state_t st;
  if (gs_state_open(&st, tmpdir, GS_STATE_EXCLUSIVE, NULL) != GS_OK)
    _exit(1);
  gs__test_hooks.step_delay_us = 1000; /* kills land inside a save */
  if (gs_state_save(&st, first, NULL) != GS_OK)
    _exit(3);
  if (write(ready_fd, "S", 1) != 1)
    _exit(2);
  const gs_state_doc_t *old_doc = first, *new_doc_ = second;
  for (;;)
    if (gs_state_save(&st, new_doc_, NULL) != GS_OK ||
        gs_state_save(&st, old_doc, NULL) != GS_OK)
      _exit(3);
}

/* Rule: a process killed at any moment of a save leaves the old file or the
 * new one, never a torn one: the file is replaced atomically. Children save
 * a large document over and over and are killed at random moments; after
 * each kill the file holds exactly one of the two documents and loads. */
static void test_save_killed_midway(void **state) {
  (void)state;
  enum { ROUNDS = 60 };
  gs_state_doc_t *a = big_doc('a', 48), *b = big_doc('b', 48);
  gs_state_doc_t *back = new_doc();
  char *text_a = NULL, *text_b = NULL, path[320];
  gs_error_t err;
  assert_int_equal(gs_state_encode(a, &text_a, &err), GS_OK);
  assert_int_equal(gs_state_encode(b, &text_b, &err), GS_OK);
  snprintf(path, sizeof path, "%s/%s", tmpdir, GS_STATE_FILE);
  /* One save of each, timed: the kills are spread over about two saves. */
  gs_state_t st;
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_EXCLUSIVE, &err), GS_OK);
  gs__test_hooks.step_delay_us = 1000;
  double t0 = now_s();
  assert_int_equal(gs_state_save(&st, b, &err), GS_OK);
  assert_int_equal(gs_state_save(&st, a, &err), GS_OK);
  unsigned span_us = (unsigned)((now_s() - t0) * 1e6);
  gs__test_hooks.step_delay_us = 0;
  gs_state_close(&st);

  unsigned seed = 20261206, seen_a = 0, seen_b = 0;
  for (int round = 0; round < ROUNDS; round++) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
      close(fds[0]);
      save_forever(fds[1], round % 2 ? a : b, round % 2 ? b : a);
    }
    close(fds[1]);
    assert_int_equal(read_byte(fds[0], 60000), 'S');
    close(fds[0]);
    usleep(rand_r(&seed) % (span_us + 1));
    assert_int_equal(kill(child, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    size_t len = 0;
    char *data = read_file(path, &len);
    assert_non_null(data);
    bool is_a = len == strlen(text_a) && memcmp(data, text_a, len) == 0;
    bool is_b = len == strlen(text_b) && memcmp(data, text_b, len) == 0;
    if (!is_a && !is_b)
      fail_msg("round %d: the state file is torn: %zu bytes, neither the old "
               "(%zu) nor the new (%zu) document",
               round, len, strlen(text_a), strlen(text_b));
    free(data);
    seen_a += is_a;
    seen_b += is_b;
    bool existed = false;
    assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_SHARED, &err), GS_OK);
    assert_int_equal(gs_state_load(&st, back, &existed, &err), GS_OK);
    gs_state_close(&st);
  }
  /* The kills landed in different saves: both documents were left. */
  assert_true(seen_a > 0 && seen_b > 0);
  free(text_a);
  free(text_b);
  free(a);
  free(b);
  free(back);
}

/* Rule: a second process asking for the exclusive lock blocks until the
 * holder releases it; shared locks do not block each other. */
static void test_lock_serializes(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  gs_state_t st;
  gs_error_t err;
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_EXCLUSIVE, &err), GS_OK);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    alarm(20); /* bounded: never hang the test run */
    gs_state_t cst;
    close(fds[0]);
    close(st.lock_fd); /* flock belongs to the shared open file */
    if (write(fds[1], "S", 1) != 1)
      _exit(2);
    if (gs_state_open(&cst, tmpdir, GS_STATE_EXCLUSIVE, NULL) != GS_OK)
      _exit(1);
    if (write(fds[1], "C", 1) != 1)
      _exit(2);
    gs_state_close(&cst);
    _exit(0);
  }
  close(fds[1]);
  assert_int_equal(read_byte(fds[0], 10000), 'S');
  /* the child is waiting for the lock: nothing arrives while we hold it */
  assert_int_equal(read_byte(fds[0], 300), -1);
  gs_state_close(&st);
  assert_int_equal(read_byte(fds[0], 10000), 'C');
  int status;
  assert_int_equal(waitpid(child, &status, 0), child);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fds[0]);

  /* shared + shared: the child gets in at once */
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(gs_state_open(&st, tmpdir, GS_STATE_SHARED, &err), GS_OK);
  child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    alarm(20);
    gs_state_t cst;
    close(fds[0]);
    close(st.lock_fd);
    if (gs_state_open(&cst, tmpdir, GS_STATE_SHARED, NULL) != GS_OK)
      _exit(1);
    _exit(write(fds[1], "C", 1) == 1 ? 0 : 2);
  }
  close(fds[1]);
  assert_int_equal(read_byte(fds[0], 10000), 'C');
  gs_state_close(&st);
  assert_int_equal(waitpid(child, &status, 0), child);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fds[0]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_example),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_encode_refuses_invalid),
      cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_creates_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_layouts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
      cmocka_unit_test_setup_teardown(test_save_atomic, setup, teardown),
      cmocka_unit_test_setup_teardown(test_save_killed_midway, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lock_serializes, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
