/* The conv choice cache's file format (src/engine/conv_cache_file.c), with
 * records as opaque bytes and no GPU: round trip, a header for another GPU
 * or software ignored, truncated and garbage files refused, merging saves,
 * and two processes saving while a third reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/conv_cache_file.h"
#include "test_tmpdir.h"

enum { KEY = 24, CHOICE = 40 };

static char dir[256], path[512];

static int setup(void **state) {
  (void)state;
  if (test_tmpdir_make(dir, sizeof dir, "conv_cache_file") != 0)
    return -1;
  snprintf(path, sizeof path, "%s/sub/dir/h100.convcache", dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return test_tmpdir_remove(dir);
}

static gs__ccf_ident_t ident(void) {
  gs__ccf_ident_t id = {.key_size = KEY,
                        .choice_size = CHOICE,
                        .cc_major = 9,
                        .cc_minor = 0,
                        .sms = 132,
                        .driver = 13000,
                        .cudnn = 91900,
                        .cublaslt = 130100};
  snprintf(id.gpu, sizeof id.gpu, "NVIDIA H100 80GB HBM3");
  return id;
}

/* Record i of writer w: key and choice bytes derived from both. */
static void record(unsigned w, unsigned i, unsigned char *key,
                   unsigned char *choice) {
  memset(key, 0, KEY);
  key[0] = (unsigned char)w;
  memcpy(key + 8, &i, sizeof i);
  for (unsigned b = 0; b < CHOICE; b++)
    choice[b] = (unsigned char)(w * 31 + i * 7 + b);
}

static void fill(gs__ccf_table_t *t, unsigned w, unsigned n) {
  unsigned char key[KEY], choice[CHOICE];
  gs__ccf_table_init(t, KEY, CHOICE);
  for (unsigned i = 0; i < n; i++) {
    record(w, i, key, choice);
    assert_int_equal(gs__ccf_table_put(t, key, choice, NULL), GS_OK);
  }
}

/* Whether t holds writer w's n records as made. */
static bool holds(const gs__ccf_table_t *t, unsigned w, unsigned n) {
  unsigned char key[KEY], choice[CHOICE];
  for (unsigned i = 0; i < n; i++) {
    record(w, i, key, choice);
    const unsigned char *c = gs__ccf_table_find(t, key);
    if (!c || memcmp(c, choice, CHOICE) != 0)
      return false;
  }
  return true;
}

static void test_round_trip(void **state) {
  (void)state;
  gs__ccf_ident_t id = ident();
  gs__ccf_table_t t, got;
  gs_error_t err = {0};
  fill(&t, 1, 371);
  unsigned char key[KEY], choice[CHOICE];
  record(1, 5, key, choice);
  choice[0] ^= 0xff; /* a put again replaces */
  assert_int_equal(gs__ccf_table_put(&t, key, choice, &err), GS_OK);
  assert_int_equal(t.n, 371);
  assert_int_equal(gs__ccf_save(path, &id, &t, &err), GS_OK);
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_OK);
  assert_int_equal(got.n, 371);
  assert_memory_equal(got.rec, t.rec, t.n * (KEY + CHOICE));
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, GS__CCF_HEADER_BYTES + 371 * (KEY + CHOICE));
  gs__ccf_table_free(&t);
  gs__ccf_table_free(&got);
  /* none there: GS_ENOTFOUND, not a parse error */
  char none[600];
  snprintf(none, sizeof none, "%s/absent.convcache", dir);
  assert_int_equal(gs__ccf_load(none, &id, &got, &err), GS_ENOTFOUND);
  unlink(path);
}

/* Each field of the header that differs makes the file ignored, saying
 * which; the table comes back empty. */
static void test_header_mismatch_ignored(void **state) {
  (void)state;
  gs__ccf_ident_t id = ident(), other;
  gs__ccf_table_t t, got;
  gs_error_t err = {0};
  fill(&t, 1, 10);
  assert_int_equal(gs__ccf_save(path, &id, &t, &err), GS_OK);
  const char *says[] = {"H100 PCIe",    "sm_89",       "114 SMs",
                        "driver 12080", "cuDNN 90100", "cuBLASLt 120000",
                        "are 40+40",    "are 24+48"};
  for (int k = 0; k < 8; k++) {
    other = id;
    switch (k) {
    case 0:
      snprintf(other.gpu, sizeof other.gpu, "NVIDIA H100 PCIe");
      break;
    case 1:
      other.cc_minor = 9, other.cc_major = 8;
      break;
    case 2:
      other.sms = 114;
      break;
    case 3:
      other.driver = 12080;
      break;
    case 4:
      other.cudnn = 90100;
      break;
    case 5:
      other.cublaslt = 120000;
      break;
    case 6:
      other.key_size = 40;
      break;
    case 7:
      other.choice_size = 48;
      break;
    }
    err.msg[0] = '\0';
    assert_int_equal(gs__ccf_load(path, &other, &got, &err), GS_EPARSE);
    assert_int_equal(got.n, 0);
    /* the message names this side's value (the running GPU/software) */
    if (!strstr(err.msg, says[k]))
      fail_msg("case %d: '%s' lacks '%s'", k, err.msg, says[k]);
  }
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_OK);
  assert_int_equal(got.n, 10);
  gs__ccf_table_free(&got);
  gs__ccf_table_free(&t);
  unlink(path);
}

static void write_file(const unsigned char *img, size_t size) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(img, 1, size, f), size);
  fclose(f);
}

/* Every shorter prefix, a byte more, a byte changed anywhere, random bytes:
 * refused as a whole; saving over such a file leaves a valid one. */
static void test_truncated_and_garbage_ignored(void **state) {
  (void)state;
  gs__ccf_ident_t id = ident();
  gs__ccf_table_t t, got;
  gs_error_t err = {0};
  unsigned char *img;
  size_t size;
  fill(&t, 2, 4);
  assert_int_equal(gs__ccf_encode(&id, &t, &img, &size, &err), GS_OK);
  assert_int_equal(gs__ccf_parse(img, size, &id, NULL, &got, &err), GS_OK);
  assert_true(holds(&got, 2, 4));
  gs__ccf_table_free(&got);
  for (size_t cut = 0; cut < size; cut++) {
    assert_int_equal(gs__ccf_parse(img, cut, &id, NULL, &got, &err), GS_EPARSE);
    assert_int_equal(got.n, 0);
  }
  for (size_t at = 0; at < size; at++) {
    img[at] ^= 0x40;
    if (gs__ccf_parse(img, size, &id, NULL, &got, &err) == GS_OK)
      fail_msg("byte %zu changed and still read", at);
    img[at] ^= 0x40;
  }
  unsigned char *longer = malloc(size + 1);
  memcpy(longer, img, size);
  longer[size] = 0;
  assert_int_equal(gs__ccf_parse(longer, size + 1, &id, NULL, &got, &err),
                   GS_EPARSE);
  assert_non_null(strstr(err.msg, "truncated"));
  /* on disk: a cut file is named in nothing here but refused */
  write_file(img, size - 7);
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_EPARSE);
  srand(7);
  for (size_t b = 0; b < size; b++)
    longer[b] = (unsigned char)rand();
  write_file(longer, size);
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_EPARSE);
  assert_non_null(strstr(err.msg, "not a gpuslice conv cache"));
  /* a save over garbage writes a valid file */
  assert_int_equal(gs__ccf_save(path, &id, &t, &err), GS_OK);
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_OK);
  assert_true(holds(&got, 2, 4));
  gs__ccf_table_free(&got);
  gs__ccf_table_free(&t);
  free(longer);
  free(img);
  unlink(path);
}

/* A save keeps the file's records it lacks; its own win. */
static void test_save_merges(void **state) {
  (void)state;
  gs__ccf_ident_t id = ident(), other = ident();
  gs__ccf_table_t a, b, got;
  gs_error_t err = {0};
  fill(&a, 1, 20);
  fill(&b, 2, 30);
  assert_int_equal(gs__ccf_save(path, &id, &a, &err), GS_OK);
  assert_int_equal(gs__ccf_save(path, &id, &b, &err), GS_OK);
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_OK);
  assert_int_equal(got.n, 50);
  assert_true(holds(&got, 1, 20) && holds(&got, 2, 30));
  gs__ccf_table_free(&got);
  unsigned char key[KEY], choice[CHOICE];
  record(1, 3, key, choice);
  memset(choice, 0xab, CHOICE);
  gs__ccf_table_t one;
  gs__ccf_table_init(&one, KEY, CHOICE);
  assert_int_equal(gs__ccf_table_put(&one, key, choice, &err), GS_OK);
  assert_int_equal(gs__ccf_save(path, &id, &one, &err), GS_OK);
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_OK);
  assert_int_equal(got.n, 50);
  assert_memory_equal(gs__ccf_table_find(&got, key), choice, CHOICE);
  gs__ccf_table_free(&got);
  /* another GPU's save does not merge this one's records */
  other.sms = 114;
  assert_int_equal(gs__ccf_save(path, &other, &one, &err), GS_OK);
  assert_int_equal(gs__ccf_load(path, &other, &got, &err), GS_OK);
  assert_int_equal(got.n, 1);
  gs__ccf_table_free(&got);
  gs__ccf_table_free(&one);
  gs__ccf_table_free(&a);
  gs__ccf_table_free(&b);
  unlink(path);
}

static pid_t writer(unsigned w, unsigned n, unsigned saves) {
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  gs__ccf_ident_t id = ident();
  gs__ccf_table_t t;
  gs_error_t err;
  fill(&t, w, n);
  for (unsigned k = 0; k < saves; k++)
    if (gs__ccf_save(path, &id, &t, &err) != GS_OK)
      _exit(1);
  _exit(0);
}

/* Two processes saving over and over while this one reads: every read
 * finds a whole file (or none yet), the last holds a writer's records, and
 * no temporary file is left. */
static void test_concurrent_writers(void **state) {
  (void)state;
  gs__ccf_ident_t id = ident();
  gs__ccf_table_t got;
  gs_error_t err = {0};
  unlink(path);
  pid_t a = writer(1, 200, 80), b = writer(2, 300, 80);
  assert_true(a > 0 && b > 0);
  unsigned reads = 0, whole = 0;
  for (int done = 0; done < 2;) {
    int rc = gs__ccf_load(path, &id, &got, &err);
    if (rc != GS_OK && rc != GS_ENOTFOUND)
      fail_msg("read %u: %s", reads, err.msg);
    whole += rc == GS_OK;
    reads++;
    gs__ccf_table_free(&got);
    int status;
    for (pid_t p; (p = waitpid(-1, &status, WNOHANG)) > 0; done++)
      assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  assert_true(whole > 0);
  assert_int_equal(gs__ccf_load(path, &id, &got, &err), GS_OK);
  assert_true(holds(&got, 1, 200) || holds(&got, 2, 300));
  gs__ccf_table_free(&got);
  char sub[600];
  snprintf(sub, sizeof sub, "%s/sub/dir", dir);
  DIR *d = opendir(sub);
  assert_non_null(d);
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (strstr(e->d_name, ".tmp."))
      fail_msg("left behind: %s", e->d_name);
  closedir(d);
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_header_mismatch_ignored),
      cmocka_unit_test(test_truncated_and_garbage_ignored),
      cmocka_unit_test(test_save_merges),
      cmocka_unit_test(test_concurrent_writers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
