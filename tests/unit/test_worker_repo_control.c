/* The model repository's versions and model control without sockets: poll
 * mode's diff of two scans and its directory stamp, version_policy over
 * real version directories (each version its own entry, the highest READY
 * one for unversioned requests), a failed reload that leaves the old
 * versions serving, unload, the index, and explicit mode's start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_onnx_build.h"
#include "test_tmpdir.h"
#include "worker/worker_int.h"

static gs__repo_seen_t seen(const char *name, uint64_t stamp) {
  gs__repo_seen_t s = {.stamp = stamp};
  snprintf(s.name, sizeof s.name, "%s", name);
  return s;
}

static void test_poll_diff(void **state) {
  (void)state;
  gs__repo_seen_t old[3] = {seen("a", 1), seen("b", 2), seen("c", 3)};
  gs__repo_seen_t now[3] = {seen("a", 1), seen("b", 5), seen("d", 7)};
  gs__poll_action_t act[8];
  size_t n = gs__repo_poll_diff(old, 3, now, 3, act, 8);
  assert_int_equal(n, 3);
  assert_string_equal(act[0].name, "b"); /* changed */
  assert_int_equal(act[0].op, GS__POLL_LOAD);
  assert_string_equal(act[1].name, "d"); /* new */
  assert_int_equal(act[1].op, GS__POLL_LOAD);
  assert_string_equal(act[2].name, "c"); /* gone */
  assert_int_equal(act[2].op, GS__POLL_UNLOAD);
  assert_int_equal(gs__repo_poll_diff(old, 3, old, 3, act, 8), 0);
  assert_int_equal(gs__repo_poll_diff(NULL, 0, now, 3, act, 8), 3);
  assert_int_equal(gs__repo_poll_diff(old, 3, NULL, 0, act, 8), 3);
  assert_int_equal(act[0].op, GS__POLL_UNLOAD);
  assert_int_equal(gs__repo_poll_diff(old, 3, now, 3, act, 2), 2); /* cap */
}

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* The stamp changes with a new version directory, a config, a rewritten
 * model file, and comes back when the directory does. */
static void test_stamp(void **state) {
  (void)state;
  char dir[256], path[700];
  assert_int_equal(test_tmpdir_make(dir, sizeof dir, "repo_stamp"), 0);
  snprintf(path, sizeof path, "mkdir -p '%s/1' '%s/2'", dir, dir);
  assert_int_equal(system(path), 0);
  snprintf(path, sizeof path, "%s/1/model.onnx", dir);
  put(path, "one");
  uint64_t s1 = gs__repo_stamp(dir);
  assert_int_equal(gs__repo_stamp(dir), s1);
  snprintf(path, sizeof path, "%s/2/model.onnx", dir);
  put(path, "two");
  uint64_t s2 = gs__repo_stamp(dir);
  assert_int_not_equal(s2, s1);
  unlink(path);
  assert_int_equal(gs__repo_stamp(dir), s1);
  snprintf(path, sizeof path, "%s/config.pbtxt", dir);
  put(path, "max_batch_size: 4\n");
  uint64_t s3 = gs__repo_stamp(dir);
  assert_int_not_equal(s3, s1);
  snprintf(path, sizeof path, "%s/1/model.onnx", dir);
  put(path, "one, longer");
  assert_int_not_equal(gs__repo_stamp(dir), s3);
  assert_int_equal(test_tmpdir_remove(dir), 0);
}

/* DIR/NAME/V/model.onnx for each version: y = Gemm(x [N,2], w) [N,3]. */
static void write_versions(const char *dir, const char *name,
                           const int *versions, size_t n, const char *pbtxt) {
  static const float w[6] = {1, 0, 0, 1, 1, 1};
  static const int64_t wd[2] = {3, 2}, xd[2] = {-1, 2}, yd[2] = {-1, 3};
  graph_t g = {.n_in = 1, .n_out = 1, .n_init = 1};
  g.nodes[g.n_nodes++] =
      node("Gemm", "fc", "x,w", "y", attr_i("transB", 1), NULL);
  g.init[0] = init_tensor("w", ELEM_F32, 2, wd, w);
  g.in[0] = info("x", ELEM_F32, 2, xd);
  g.out[0] = info("y", ELEM_F32, 2, yd);
  size_t len;
  uint8_t *buf = pack(&g, &len);
  char path[512];
  for (size_t i = 0; i < n; i++) {
    snprintf(path, sizeof path, "mkdir -p '%s/%s/%d'", dir, name, versions[i]);
    assert_int_equal(system(path), 0);
    snprintf(path, sizeof path, "%s/%s/%d/model.onnx", dir, name, versions[i]);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
  }
  snprintf(path, sizeof path, "%s/%s/config.pbtxt", dir, name);
  if (pbtxt)
    put(path, pbtxt);
}

static bool ready(gs__repo_t *repo, const char *name, const char *v) {
  gs__model_entry_t *m = gs__repo_find_version(repo, name, v);
  return m && m->state == GS__MODEL_READY;
}

static void test_versions(void **state) {
  (void)state;
  char dir[256];
  static const int v123[] = {1, 2, 3};
  assert_int_equal(test_tmpdir_make(dir, sizeof dir, "repo_versions"), 0);
  write_versions(dir, "m", v123, 3,
                 "version_policy { specific { versions: [1, 2] } }\n");
  static gs__repo_t repo;
  gs_error_t err;
  gs_worker_options_t opts = {.model_repository = dir,
                              .model_control = GS_MODEL_CONTROL_EXPLICIT};
  assert_int_equal(gs__repo_open_opts(&repo, &opts, &err), GS_OK);
  assert_int_equal(repo.n, 0); /* explicit, nothing named: nothing loads */
  json_t *index = gs__repo_index_json(&repo, false);
  assert_int_equal(json_array_size(index), 1); /* the name alone */
  assert_null(json_object_get(json_array_get(index, 0), "state"));
  json_decref(index);

  assert_int_equal(gs__repo_load(&repo, "m", &err), GS_OK);
  assert_true(ready(&repo, "m", "1"));
  assert_true(ready(&repo, "m", "2"));
  assert_null(gs__repo_find_version(&repo, "m", "3"));
  assert_string_equal(gs__repo_find(&repo, "m")->version, "2"); /* highest */
  json_t *vs = gs__repo_versions_json(&repo, "m");
  assert_string_equal(json_string_value(json_array_get(vs, 0)), "1");
  assert_string_equal(json_string_value(json_array_get(vs, 1)), "2");
  json_decref(vs);

  /* A bad override: not JSON, a field the model contradicts. */
  static const char *const bad[] = {
      "{\"max_batch_size\": ",
      "{\"input\": [{\"name\": \"nope\", \"data_type\": \"TYPE_FP32\", "
      "\"dims\": [2]}], \"max_batch_size\": 4}"};
  gs__model_slot_t *before = gs__repo_find(&repo, "m")->slot;
  for (size_t i = 0; i < 2; i++) {
    assert_int_not_equal(
        gs__repo_load_config(&repo, "m", bad[i], strlen(bad[i]), &err), GS_OK);
    assert_non_null(strstr(err.msg, "failed to load 'm'"));
    assert_true(ready(&repo, "m", "1")); /* the old ones keep serving */
    assert_true(ready(&repo, "m", "2"));
    assert_ptr_equal(gs__repo_find(&repo, "m")->slot, before);
  }
  assert_non_null(strstr(err.msg, "config override"));
  assert_non_null(strstr(err.msg, "'nope'"));

  /* latest 1 by override: 3 loads, 1 and 2 unload. */
  const char *latest = "{\"version_policy\": {\"latest\": "
                       "{\"num_versions\": 1}}, \"max_batch_size\": \"4\"}";
  assert_int_equal(
      gs__repo_load_config(&repo, "m", latest, strlen(latest), &err), GS_OK);
  assert_true(ready(&repo, "m", "3"));
  assert_false(ready(&repo, "m", "1"));
  assert_false(ready(&repo, "m", "2"));
  assert_string_equal(gs__repo_find(&repo, "m")->version, "3");
  assert_int_equal(gs__repo_find(&repo, "m")->max_batch_size, 4);
  index = gs__repo_index_json(&repo, true);
  assert_int_equal(json_array_size(index), 1);
  json_decref(index);

  gs__repo_unload_name(&repo, "m");
  assert_false(ready(&repo, "m", "3"));
  assert_int_equal(gs__repo_find(&repo, "m")->state, GS__MODEL_UNLOADED);
  assert_int_equal(gs__repo_load(&repo, "ghost", &err), GS_ENOTFOUND);
  assert_non_null(strstr(err.msg, "failed to poll from model repository"));
  gs__repo_close(&repo);
  assert_int_equal(test_tmpdir_remove(dir), 0);
}

/* Poll: a new directory loads, a new version joins, a removed directory
 * unloads; explicit's --load-model names a directory or fails. */
static void test_poll_and_explicit_start(void **state) {
  (void)state;
  char dir[256], cmd[600];
  static const int v1[] = {1}, v2[] = {2};
  assert_int_equal(test_tmpdir_make(dir, sizeof dir, "repo_poll"), 0);
  write_versions(dir, "a", v1, 1, NULL);
  static gs__repo_t repo;
  gs_error_t err;
  gs_worker_options_t opts = {.model_repository = dir,
                              .model_control = GS_MODEL_CONTROL_POLL};
  assert_int_equal(gs__repo_open_opts(&repo, &opts, &err), GS_OK);
  assert_true(ready(&repo, "a", "1"));
  write_versions(dir, "b", v1, 1, NULL);
  gs__repo_poll(&repo);
  assert_true(ready(&repo, "b", "1"));
  write_versions(dir, "a", v2, 1, NULL);
  gs__repo_poll(&repo);
  assert_true(ready(&repo, "a", "2")); /* latest 1: 2 replaces 1 */
  assert_false(ready(&repo, "a", "1"));
  snprintf(cmd, sizeof cmd, "rm -r '%s/b'", dir);
  assert_int_equal(system(cmd), 0);
  gs__repo_poll(&repo);
  assert_false(ready(&repo, "b", "1"));
  assert_true(ready(&repo, "a", "2"));
  gs__repo_close(&repo);

  const char *names[] = {"ghost"};
  opts.model_control = GS_MODEL_CONTROL_EXPLICIT;
  opts.load_models = names;
  opts.n_load_models = 1;
  assert_int_equal(gs__repo_open_opts(&repo, &opts, &err), GS_ENOTFOUND);
  assert_non_null(strstr(err.msg, "--load-model ghost"));
  gs__repo_close(&repo);
  names[0] = "*";
  assert_int_equal(gs__repo_open_opts(&repo, &opts, &err), GS_OK);
  assert_true(ready(&repo, "a", "2"));
  gs__repo_close(&repo);
  assert_int_equal(test_tmpdir_remove(dir), 0);
}

/* The worker's --gpu-wait as its CUDA sessions get it: AUTO spins with busy
 * poll, else leaves it to the driver; the others pass through. */
static void test_gpu_wait(void **state) {
  (void)state;
  char dir[256];
  assert_int_equal(test_tmpdir_make(dir, sizeof dir, "repo_wait"), 0);
  static const struct {
    gs_worker_gpu_wait_t asked;
    unsigned busy_poll_us;
    gs_gpu_wait_t got;
  } cases[] = {
      {GS_WORKER_GPU_WAIT_AUTO, 0, GS_GPU_WAIT_DRIVER},
      {GS_WORKER_GPU_WAIT_AUTO, 200, GS_GPU_WAIT_SPIN},
      {GS_WORKER_GPU_WAIT_DRIVER, 0, GS_GPU_WAIT_DRIVER},
      {GS_WORKER_GPU_WAIT_DRIVER, 200, GS_GPU_WAIT_DRIVER},
      {GS_WORKER_GPU_WAIT_SPIN, 0, GS_GPU_WAIT_SPIN},
      {GS_WORKER_GPU_WAIT_SPIN, 200, GS_GPU_WAIT_SPIN},
      {GS_WORKER_GPU_WAIT_BLOCK, 0, GS_GPU_WAIT_BLOCK},
      {GS_WORKER_GPU_WAIT_BLOCK, 200, GS_GPU_WAIT_BLOCK},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    static gs__repo_t repo;
    gs_error_t err;
    gs_worker_options_t opts = {.model_repository = dir,
                                .busy_poll_us = cases[i].busy_poll_us,
                                .gpu_wait = cases[i].asked};
    assert_int_equal(gs__repo_open_opts(&repo, &opts, &err), GS_OK);
    assert_int_equal(repo.gpu_wait, cases[i].got);
    gs__repo_close(&repo);
  }
  assert_int_equal(test_tmpdir_remove(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_poll_diff),
      cmocka_unit_test(test_stamp),
      cmocka_unit_test_teardown(test_versions, free_kept),
      cmocka_unit_test_teardown(test_poll_and_explicit_start, free_kept),
      cmocka_unit_test(test_gpu_wait),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
