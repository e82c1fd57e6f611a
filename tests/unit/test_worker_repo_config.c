/* A model's config.json is read whole up to GS_LIMIT_CONFIG_FILE (64 KiB,
 * "every buffer fed from a file has a hard size limit and a clear error"):
 * a file of exactly the limit is read and applied, one byte more refuses
 * the load with GS_ELIMIT naming the file and the limit, and a file that
 * is not JSON is GS_EPARSE with its path, line and jansson's reason.
 * dynamic_batching's default_queue_policy takes Triton's ModelQueuePolicy
 * keys; a value of the wrong type or range, or another key, is refused
 * naming the key and the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "core/buf.h"
#include "test_tmpdir.h"
#include "worker/worker_int.h"

typedef struct {
  char dir[64];
  gs__repo_t *repo;
} fixture_t;

/* dir/NAME/1/model.onnx (empty: the load fails after the config) and
 * dir/NAME/config.json holding json padded with spaces to size bytes. */
static void write_model(const char *dir, const char *name, const char *json,
                        size_t size) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/%s/1", dir, name);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/%s/1/model.onnx", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  snprintf(path, sizeof path, "%s/%s/config.json", dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  size_t n = strlen(json);
  assert_true(n <= size);
  assert_int_equal(fwrite(json, 1, n, f), n);
  for (; n < size; n++)
    fputc(' ', f);
  fclose(f);
}

static int setup(void **state) {
  fixture_t *fx = calloc(1, sizeof *fx);
  if (!fx || test_tmpdir_make(fx->dir, sizeof fx->dir, "repo_config") != 0)
    return -1;
  fx->repo = calloc(1, sizeof *fx->repo);
  snprintf(fx->repo->dir, sizeof fx->repo->dir, "%s", fx->dir);
  *state = fx;
  return fx->repo ? 0 : -1;
}

static int teardown(void **state) {
  fixture_t *fx = *state;
  gs__repo_close(fx->repo);
  free(fx->repo);
  test_tmpdir_remove(fx->dir);
  free(fx);
  return 0;
}

static void test_config_of_exactly_the_limit_is_read(void **state) {
  fixture_t *fx = *state;
  size_t limit = gs_limit_bytes(GS_LIMIT_CONFIG_FILE);
  assert_int_equal(limit, 64 << 10);
  write_model(fx->dir, "fits", "{\"max_batch_size\": 4}", limit);
  gs_error_t err = {0};
  assert_int_not_equal(gs__repo_load(fx->repo, "fits", &err), GS_OK);
  /* The config was applied; the (empty) model is what failed. */
  gs__model_entry_t *m = gs__repo_find(fx->repo, "fits");
  assert_non_null(m);
  assert_int_equal(m->max_batch_size, 4);
  assert_null(strstr(err.msg, "config.json"));
}

static void test_config_one_byte_over_is_refused(void **state) {
  fixture_t *fx = *state;
  size_t limit = gs_limit_bytes(GS_LIMIT_CONFIG_FILE);
  write_model(fx->dir, "big", "{\"max_batch_size\": 4}", limit + 1);
  gs_error_t err = {0};
  assert_int_equal(gs__repo_load(fx->repo, "big", &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "/big/config.json: model configuration "
                                  "file larger than 65536 bytes"));
}

static void test_config_not_json_is_a_parse_error(void **state) {
  fixture_t *fx = *state;
  write_model(fx->dir, "bad", "{\"max_batch_size\": ", 20);
  gs_error_t err = {0};
  assert_int_equal(gs__repo_load(fx->repo, "bad", &err), GS_EPARSE);
  assert_non_null(strstr(err.msg, "/bad/config.json:1: "));
}

static void test_queue_policy_read(void **state) {
  fixture_t *fx = *state;
  const char *json =
      "{\"max_batch_size\": 8, \"dynamic_batching\": "
      "{\"default_queue_policy\": {\"max_queue_size\": 2, "
      "\"default_timeout_microseconds\": 300000, "
      "\"allow_timeout_override\": true, \"timeout_action\": \"DELAY\"}}}";
  write_model(fx->dir, "qp", json, strlen(json));
  gs_error_t err = {0};
  assert_int_not_equal(gs__repo_load(fx->repo, "qp", &err), GS_OK);
  gs__model_entry_t *m = gs__repo_find(fx->repo, "qp");
  assert_non_null(m);
  assert_null(strstr(err.msg, "config.json")); /* the model failed, not it */
  assert_int_equal(m->batching.policy.max_queue_size, 2);
  assert_int_equal(m->batching.policy.default_timeout_us, 300000);
  assert_true(m->batching.policy.allow_timeout_override);
  assert_true(m->batching.policy.delay);
}

static void test_queue_policy_bad_values_named(void **state) {
  fixture_t *fx = *state;
  static const struct {
    const char *policy;
    int code;
    const char *says;
  } cases[] = {
      {"{\"max_queue_size\": -1}", GS_EINVAL,
       "default_queue_policy.max_queue_size must be an integer 0..4294967295"},
      {"{\"max_queue_size\": 4294967296}", GS_EINVAL,
       "default_queue_policy.max_queue_size must be"},
      {"{\"default_timeout_microseconds\": \"5\"}", GS_EINVAL,
       "default_queue_policy.default_timeout_microseconds must be a "
       "non-negative integer"},
      {"{\"allow_timeout_override\": 1}", GS_EINVAL,
       "default_queue_policy.allow_timeout_override must be true or false"},
      {"{\"timeout_action\": \"LATER\"}", GS_EINVAL,
       "default_queue_policy.timeout_action must be \"REJECT\" or \"DELAY\""},
      {"{\"priority_levels\": 2}", GS_EUNSUPPORTED,
       "default_queue_policy.priority_levels is not supported"},
      {"[]", GS_EINVAL, "default_queue_policy must be an object"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char name[16], json[256], file[64];
    snprintf(name, sizeof name, "bad%zu", i);
    snprintf(json, sizeof json,
             "{\"max_batch_size\": 8, \"dynamic_batching\": "
             "{\"default_queue_policy\": %s}}",
             cases[i].policy);
    snprintf(file, sizeof file, "/%s/config.json: ", name);
    write_model(fx->dir, name, json, strlen(json));
    gs_error_t err = {0};
    int rc = gs__repo_load(fx->repo, name, &err);
    if (rc != cases[i].code || !strstr(err.msg, cases[i].says) ||
        !strstr(err.msg, file))
      fail_msg("%s: got %d '%s', want %d '%s'", cases[i].policy, rc, err.msg,
               cases[i].code, cases[i].says);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_config_of_exactly_the_limit_is_read,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_one_byte_over_is_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_not_json_is_a_parse_error,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_policy_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_policy_bad_values_named, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
