/* config.pbtxt as Triton reads it (protobuf text format of ModelConfig):
 * the fields Triton's docs describe land where the worker serves them; a
 * syntax error or an unknown field is an error at its line and column; a
 * field of Triton's schema gpuslice does not serve is refused by name; the
 * config is checked against the model; version_policy picks the version;
 * a model without a config is autocompleted as Triton does (max_batch_size
 * 4 and dynamic batching when every first dimension is variable). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/model_config.h"
#include "worker/reshape.h"

static char text[1 << 16];

/* tests/data/pbtxt/NAME into text; its length. */
static size_t fixture(const char *name) {
  const char *dir = getenv("GS_TEST_DATA");
  char path[1024];
  snprintf(path, sizeof path, "%s/pbtxt/%s", dir ? dir : "tests/data", name);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  return n;
}

static int parse_fixture(gs__model_config_t *cfg, const char *name,
                         gs_error_t *err) {
  size_t n = fixture(name);
  return gs__model_config_parse_pbtxt(cfg, "simple", name, text, n, err);
}

static int parse(gs__model_config_t *cfg, const char *s, gs_error_t *err) {
  return gs__model_config_parse_pbtxt(cfg, "simple", "config.pbtxt", s,
                                      strlen(s), err);
}

/* Triton's ModelInput.Format: FORMAT_NONE 0, FORMAT_NHWC 1, FORMAT_NCHW 2;
 * kept per input, as image_client reads it back from the model config. */
static void test_input_format_kept(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(
      parse(&cfg,
            "max_batch_size: 0\n"
            "input [ { name: \"A\" data_type: TYPE_FP32 format: FORMAT_NCHW "
            "dims: [ 3, 4, 4 ] },\n"
            "        { name: \"B\" data_type: TYPE_FP32 format: FORMAT_NHWC "
            "dims: [ 4, 4, 3 ] },\n"
            "        { name: \"C\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n",
            &err),
      GS_OK);
  assert_int_equal(cfg.inputs[0].format, 2);
  assert_int_equal(cfg.inputs[1].format, 1);
  assert_int_equal(cfg.inputs[2].format, 0);
}

/* parameters are free-form key/values that Triton passes to the backend:
 * keys gpuslice does not use load (listed for a warning), as Triton's
 * simple_dyna_sequence's execute_delay_ms does in Triton; gpuslice's own
 * keys still take their values. */
static void test_unknown_parameters_listed_not_refused(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(
      parse(&cfg,
            "parameters [ { key: \"execute_delay_ms\" value: { string_value: "
            "\"3\" } },\n"
            "  { key: \"precision\" value: { string_value: \"fp32\" } },\n"
            "  { key: \"intra_op_thread_count\" value: { string_value: "
            "\"2\" } } ]\n",
            &err),
      GS_OK);
  /* a protobuf map: its order is not the file's */
  assert_non_null(strstr(cfg.unused_parameters, "execute_delay_ms"));
  assert_non_null(strstr(cfg.unused_parameters, "intra_op_thread_count"));
  assert_int_equal(strlen(cfg.unused_parameters),
                   strlen("execute_delay_ms, intra_op_thread_count"));
  assert_int_equal(cfg.placement.precision, GS_PRECISION_FP32);
  assert_int_equal(parse(&cfg, "max_batch_size: 2", &err), GS_OK);
  assert_string_equal(cfg.unused_parameters, "");
}

static void test_simple_batches_of_8(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(parse_fixture(&cfg, "simple.pbtxt", &err), GS_OK);
  assert_int_equal(cfg.max_batch_size, 8);
  assert_true(cfg.batching.enabled);
  assert_int_equal(cfg.batching.max_queue_delay_us, 100);
  assert_int_equal(cfg.batching.n_preferred, 2);
  assert_int_equal(cfg.batching.preferred[0], 4);
  assert_int_equal(cfg.batching.preferred[1], 8);
  assert_int_equal(cfg.n_inputs, 2);
  assert_int_equal(cfg.n_outputs, 2);
  assert_string_equal(cfg.inputs[1].name, "INPUT1");
  assert_int_equal(cfg.inputs[1].dtype, GS_DTYPE_INT32);
  assert_int_equal(cfg.inputs[1].rank, 1);
  assert_int_equal(cfg.inputs[1].dims[0], 16);
  assert_string_equal(cfg.outputs[1].name, "OUTPUT1");
  assert_int_equal(cfg.version_policy, GS__VERSIONS_LATEST);
  assert_int_equal(cfg.latest_versions, 1);
  assert_int_equal(cfg.placement.warmup, -1);
}

static void test_every_section(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  size_t n = fixture("every_section.pbtxt");
  assert_int_equal(
      gs__model_config_parse_pbtxt(&cfg, "image", "f", text, n, &err), GS_OK);
  assert_int_equal(cfg.max_batch_size, 16);
  assert_int_equal(cfg.version_policy, GS__VERSIONS_SPECIFIC);
  assert_int_equal(cfg.n_versions, 1);
  assert_int_equal(cfg.versions[0], 2);
  assert_int_equal(cfg.inputs[0].dtype, GS_DTYPE_FP16);
  assert_int_equal(cfg.inputs[0].rank, 3);
  assert_int_equal(cfg.inputs[0].dims[1], -1);
  assert_int_equal(cfg.outputs[0].dims[0], 1000);
  assert_true(cfg.batching.enabled);
  assert_int_equal(cfg.batching.max_queue_delay_us, 500);
  assert_int_equal(cfg.batching.n_preferred, 0);
  assert_int_equal(cfg.placement.provider, GS_PROVIDER_CUDA);
  assert_int_equal(cfg.placement.device, 1);
  assert_int_equal(cfg.placement.count, 3);
  /* model_warmup: warm at load; parameters: gpuslice's own settings. */
  assert_int_equal(cfg.placement.warmup, 1);
  assert_int_equal(cfg.placement.precision, GS_PRECISION_FP32);
  assert_int_equal(cfg.memory_budget_bytes, 1048576);
}

static void test_syntax_error_at_line_and_column(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(parse_fixture(&cfg, "syntax_error.pbtxt", &err), GS_EPARSE);
  /* The input list is not closed: "output" on line 9 is where it fails. */
  assert_non_null(strstr(err.msg, "syntax_error.pbtxt:9:1: "));
  assert_non_null(strstr(err.msg, "\"output\""));
}

static void test_unknown_field_at_line_and_column(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(parse_fixture(&cfg, "unknown_field.pbtxt", &err), GS_EPARSE);
  assert_non_null(strstr(err.msg, "unknown_field.pbtxt:5:"));
  assert_non_null(strstr(err.msg, "max_queue_delay_milliseconds"));
}

static void test_unsupported_fields_named(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(parse_fixture(&cfg, "unsupported_field.pbtxt", &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "unsupported_field.pbtxt:5:3: field "
                                  "'dynamic_batching.preserve_ordering' "
                                  "is not supported by gpuslice"));
  /* sequence_batching is read (issue 15 item 4); what it cannot serve is
   * refused by name. */
  assert_int_equal(parse_fixture(&cfg, "sequence.pbtxt", &err), GS_OK);
  assert_true(cfg.sequence.enabled);
  assert_int_equal(cfg.sequence.idle_us, 5000000);
  assert_int_equal(cfg.sequence.n_controls, 1);
  assert_string_equal(cfg.sequence.controls[0].name, "START");
  assert_int_equal(cfg.sequence.controls[0].dtype, GS_DTYPE_INT32);
  /* the oldest strategy's batch: preferred sizes and queue delay */
  assert_int_equal(parse(&cfg,
                         "sequence_batching { oldest { "
                         "max_candidate_sequences: 3 preferred_batch_size: "
                         "[2, 4] max_queue_delay_microseconds: 700 } }",
                         &err),
                   GS_OK);
  assert_true(cfg.sequence.oldest);
  assert_int_equal(cfg.sequence.max_sequences, 3);
  assert_int_equal(cfg.sequence.n_preferred, 2);
  assert_int_equal(cfg.sequence.preferred[1], 4);
  assert_int_equal(cfg.sequence.delay_us, 700);
  assert_int_equal(parse(&cfg,
                         "sequence_batching { oldest { preferred_batch_size: "
                         "[0] } }",
                         &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "preferred_batch_size 0"));
  assert_int_equal(
      parse(&cfg, "sequence_batching { iterative_sequence: true }", &err),
      GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "iterative_sequence"));
  assert_int_equal(
      parse(&cfg,
            "sequence_batching { control_input [{ name: \"C\" control [{ "
            "kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING }] }] }",
            &err),
      GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "TYPE_STRING"));
  assert_int_equal(parse(&cfg, "input [{ name: \"a\" optional: true }]", &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "'input.optional'"));
  assert_int_equal(
      parse(&cfg, "output [{ name: \"a\" is_shape_tensor: true }]", &err),
      GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "'output.is_shape_tensor'"));
  assert_int_equal(parse(&cfg,
                         "max_batch_size: 2 dynamic_batching { "
                         "priority_levels: 2 }",
                         &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "'dynamic_batching.priority_levels'"));
}

/* Triton's ModelQueuePolicy (default_queue_policy): max_queue_size (0: no
 * bound), default_timeout_microseconds (0: none), allow_timeout_override,
 * timeout_action REJECT (0, the default) or DELAY (1). Priority queues are
 * not served: priority_levels (unless 0, Triton's "no priorities"),
 * default_priority_level and priority_queue_policy are refused by name. */
static void test_queue_policy(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(parse(&cfg,
                         "max_batch_size: 8 dynamic_batching { "
                         "default_queue_policy { max_queue_size: 3 "
                         "default_timeout_microseconds: 250000 "
                         "allow_timeout_override: true timeout_action: DELAY "
                         "} priority_levels: 0 }",
                         &err),
                   GS_OK);
  const gs__queue_policy_t *p = &cfg.batching.policy;
  assert_int_equal(p->max_queue_size, 3);
  assert_int_equal(p->default_timeout_us, 250000);
  assert_true(p->allow_timeout_override);
  assert_true(p->delay);
  /* absent: no bound, no timeout, REJECT */
  assert_int_equal(parse(&cfg, "max_batch_size: 8 dynamic_batching { }", &err),
                   GS_OK);
  assert_int_equal(p->max_queue_size, 0);
  assert_int_equal(p->default_timeout_us, 0);
  assert_false(p->allow_timeout_override);
  assert_false(p->delay);
  assert_int_equal(parse(&cfg,
                         "max_batch_size: 8 dynamic_batching { "
                         "default_queue_policy { timeout_action: REJECT "
                         "max_queue_size: 4294967295 } }",
                         &err),
                   GS_OK);
  assert_false(p->delay);
  assert_int_equal(p->max_queue_size, 4294967295u);
  static const char *const refused[] = {
      "priority_levels: 2",
      "default_priority_level: 1",
      "priority_queue_policy { key: 1 value { max_queue_size: 2 } }",
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    char text_[256], field[64];
    snprintf(text_, sizeof text_, "max_batch_size: 8 dynamic_batching { %s }",
             refused[i]);
    snprintf(field, sizeof field, "'dynamic_batching.%.*s'",
             (int)strcspn(refused[i], ": "), refused[i]);
    assert_int_equal(parse(&cfg, text_, &err), GS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, field));
  }
}

/* Values a queue policy cannot take: an action outside the enum (as a
 * number), a negative or too large size, an unknown action name; each
 * named with the file. */
static void test_queue_policy_bad_values(void **state) {
  (void)state;
  static const struct {
    const char *policy;
    int code;
    const char *says;
  } cases[] = {
      {"timeout_action: 2", GS_EINVAL,
       "config.pbtxt: default_queue_policy.timeout_action must be REJECT or "
       "DELAY, not 2"},
      {"timeout_action: LATER", GS_EPARSE, "config.pbtxt:1:"},
      {"max_queue_size: -1", GS_EPARSE, "config.pbtxt:1:"},
      {"max_queue_size: 4294967296", GS_EPARSE, "config.pbtxt:1:"},
      {"default_timeout_microseconds: -5", GS_EPARSE, "config.pbtxt:1:"},
      {"allow_timeout_override: maybe", GS_EPARSE, "config.pbtxt:1:"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gs__model_config_t cfg;
    gs_error_t err;
    char text_[256];
    snprintf(text_, sizeof text_,
             "max_batch_size: 8 dynamic_batching { default_queue_policy { %s "
             "} }",
             cases[i].policy);
    int rc = parse(&cfg, text_, &err);
    if (rc != cases[i].code || !strstr(err.msg, cases[i].says))
      fail_msg("%s: got %d '%s', want %d '%s'", cases[i].policy, rc,
               rc ? err.msg : "", cases[i].code, cases[i].says);
  }
}

static void test_backends_gpuslice_cannot_run(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  assert_int_equal(parse_fixture(&cfg, "python_backend.pbtxt", &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "backend 'python'"));
  assert_int_equal(parse(&cfg, "platform: \"tensorflow_savedmodel\"", &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "tensorflow_savedmodel"));
  assert_int_equal(parse(&cfg,
                         "platform: \"onnxruntime_onnx\" backend: "
                         "\"onnxruntime\"",
                         &err),
                   GS_OK);
}

static void test_values_out_of_range(void **state) {
  (void)state;
  static const struct {
    const char *text;
    int code;
    const char *says;
  } cases[] = {
      {"name: \"other\"", GS_EINVAL, "not the model directory's name"},
      /* Error bodies are JSON: bytes that are not UTF-8 are not quoted. */
      {"name: \"\\377\"", GS_EINVAL, "name '?' is not"},
      {"max_batch_size: -1", GS_EINVAL, "max_batch_size must be"},
      {"dynamic_batching { }", GS_EINVAL, "needs max_batch_size > 0"},
      {"max_batch_size: 4 dynamic_batching { preferred_batch_size: [ 8 ] }",
       GS_EINVAL, "preferred_batch_size 8 is not in 1..4"},
      {"instance_group [{ count: 1 }, { count: 1 }]", GS_EUNSUPPORTED,
       "2 instance_group entries"},
      {"instance_group [{ kind: KIND_MODEL }]", GS_EUNSUPPORTED, "KIND_MODEL"},
      {"instance_group [{ gpus: [ 0, 1 ] }]", GS_EUNSUPPORTED, "lists 2 GPUs"},
      {"instance_group [{ count: 65 }]", GS_EINVAL, "count must be 1..64"},
      {"input [{ name: \"a\" dims: [ 0 ] }]", GS_EINVAL, "not 0"},
      /* Triton: dims and reshape hold the same elements, per run between
       * variable sizes; an empty reshape only with a batch dimension. */
      {"input [{ name: \"a\" dims: [ 4 ] reshape { shape: [ 2, 3 ] } }]",
       GS_EINVAL, "'a': reshape and dims differ in element count"},
      {"output [{ name: \"o\" dims: [ 2, -1 ] reshape { shape: [ -1, -1 ] } "
       "}]",
       GS_EINVAL,
       "'o': reshape and dims differ in element count (not the same"},
      {"input [{ name: \"a\" dims: [ 2, 4, -1, 6 ] reshape { shape: [ 4, -1, "
       "2, 6 ] } }]",
       GS_EINVAL, "'a': reshape and dims differ in element count (between"},
      {"input [{ name: \"a\" dims: [ 1 ] reshape { shape: [ ] } }]", GS_EINVAL,
       "an empty reshape needs max_batch_size > 0"},
      {"input [{ name: \"a\" dims: [ 4 ] reshape { shape: [ 0, 4 ] } }]",
       GS_EINVAL, "reshape holds sizes >= 1 or -1"},
      {"input [{ name: \"a\" reshape { shape: [ 4 ] } }]", GS_EINVAL,
       "'a': reshape needs dims"},
      {"input [{ dims: [ 4 ] }]", GS_EINVAL, "needs a name"},
      {"parameters { key: \"precision\" value { string_value: \"int8\" } }",
       GS_EINVAL, "'int8' is not one of fp16, fp32"},
      {"max_batch_size: 4 max_batch_size: 8", GS_EPARSE,
       "config.pbtxt:1:33: Non-repeated field \"max_batch_size\" is specified "
       "multiple times"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gs__model_config_t cfg;
    gs_error_t err;
    int rc = parse(&cfg, cases[i].text, &err);
    if (rc != cases[i].code || !strstr(err.msg, cases[i].says))
      fail_msg("%s: got %d '%s', want %d '%s'", cases[i].text, rc,
               rc ? err.msg : "", cases[i].code, cases[i].says);
  }
}

/* Triton's version_policy over the version directories present: latest
 * (default 1), all, specific; highest first. */
static void test_version_policy_picks(void **state) {
  (void)state;
  static const long long present[] = {1, 3, 2};
  gs__model_config_t cfg;
  gs_error_t err;
  long long v[8];
  size_t n = 0;
  gs__model_config_init(&cfg);
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 8, &n, "f", &err),
      GS_OK);
  assert_int_equal(n, 1);
  assert_int_equal(v[0], 3); /* Triton's default: the latest one */
  assert_int_equal(
      parse(&cfg, "version_policy { specific { versions: 2 } }", &err), GS_OK);
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 8, &n, "f", &err),
      GS_OK);
  assert_int_equal(n, 1);
  assert_int_equal(v[0], 2);
  assert_int_equal(
      parse(&cfg, "version_policy { specific { versions: [1, 3, 9] } }", &err),
      GS_OK);
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 8, &n, "f", &err),
      GS_OK);
  assert_int_equal(n, 2);
  assert_int_equal(v[0], 3);
  assert_int_equal(v[1], 1);
  assert_int_equal(
      parse(&cfg, "version_policy { specific { versions: 7 } }", &err), GS_OK);
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 8, &n, "f", &err),
      GS_ENOTFOUND);
  assert_int_equal(n, 0);
  assert_int_equal(parse(&cfg, "version_policy { all { } }", &err), GS_OK);
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 8, &n, "f", &err),
      GS_OK);
  assert_int_equal(n, 3);
  assert_int_equal(v[0], 3);
  assert_int_equal(v[1], 2);
  assert_int_equal(v[2], 1);
  /* more than cap: refused, naming the count, never truncated */
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 2, &n, "f", &err),
      GS_ELIMIT);
  assert_non_null(strstr(err.msg, "selects 3 versions"));
  assert_int_equal(
      parse(&cfg, "version_policy { latest { num_versions: 2 } }", &err),
      GS_OK);
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 8, &n, "f", &err),
      GS_OK);
  assert_int_equal(n, 2);
  assert_int_equal(v[0], 3);
  assert_int_equal(v[1], 2);
  assert_int_equal(
      parse(&cfg, "version_policy { latest { num_versions: 0 } }", &err),
      GS_OK);
  assert_int_equal(
      gs__model_config_pick_versions(&cfg, present, 3, v, 8, &n, "f", &err),
      GS_EINVAL);
}

/* A load request's "config": Triton's ModelConfig as JSON, quoted
 * integers as protobuf's JSON mapping allows; refused by field name as
 * config.pbtxt is; not JSON: a clear error. */
static void test_config_json(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  const char *ok = "{\"max_batch_size\":\"16\", \"version_policy\": "
                   "{\"all\": {}}}";
  assert_int_equal(gs__model_config_parse_json(&cfg, "m", "config override", ok,
                                               strlen(ok), &err),
                   GS_OK);
  assert_int_equal(cfg.max_batch_size, 16);
  assert_int_equal(cfg.version_policy, GS__VERSIONS_ALL);
  const char *bad = "\"parameters\": {\"config\": {{\"max_batch_size\": "
                    "\"16\"}}}";
  assert_int_equal(gs__model_config_parse_json(&cfg, "m", "config override",
                                               bad, strlen(bad), &err),
                   GS_EPARSE);
  assert_non_null(strstr(err.msg, "config override: not a model "
                                  "configuration in JSON"));
  const char *unknown = "{\"model_transaction_policy\": {}}";
  assert_int_equal(gs__model_config_parse_json(&cfg, "m", "config override",
                                               unknown, strlen(unknown), &err),
                   GS_EUNSUPPORTED);
  assert_non_null(
      strstr(err.msg, "'model_transaction_policy' is not supported"));
  /* a queue policy in protobuf's JSON mapping (uint64 as a string) */
  const char *policy =
      "{\"max_batch_size\": 4, \"dynamic_batching\": "
      "{\"default_queue_policy\": {\"max_queue_size\": 2, "
      "\"default_timeout_microseconds\": \"5000\", "
      "\"allow_timeout_override\": true, \"timeout_action\": \"DELAY\"}}}";
  assert_int_equal(gs__model_config_parse_json(&cfg, "m", "config override",
                                               policy, strlen(policy), &err),
                   GS_OK);
  assert_int_equal(cfg.batching.policy.max_queue_size, 2);
  assert_int_equal(cfg.batching.policy.default_timeout_us, 5000);
  assert_true(cfg.batching.policy.allow_timeout_override);
  assert_true(cfg.batching.policy.delay);
  const char *action = "{\"max_batch_size\": 4, \"dynamic_batching\": "
                       "{\"default_queue_policy\": {\"timeout_action\": 3}}}";
  assert_int_equal(gs__model_config_parse_json(&cfg, "m", "config override",
                                               action, strlen(action), &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "config override: default_queue_policy."
                                  "timeout_action must be REJECT or DELAY"));
  const char *prio = "{\"max_batch_size\": 4, \"dynamic_batching\": "
                     "{\"priority_queue_policy\": {\"1\": {}}}}";
  assert_int_equal(gs__model_config_parse_json(&cfg, "m", "config override",
                                               prio, strlen(prio), &err),
                   GS_EUNSUPPORTED);
  assert_non_null(
      strstr(err.msg, "'dynamic_batching.priority_queue_policy' is not"));
  const char *other = "{\"name\": \"other\"}";
  assert_int_equal(gs__model_config_parse_json(&cfg, "m", "config override",
                                               other, strlen(other), &err),
                   GS_EINVAL);
}

/* Triton's `simple` as scripts/make_models.py writes it: [N, 16] INT32. */
static void simple_io(gs_tensor_info_t in[2], gs_tensor_info_t out[2]) {
  static const char *names[] = {"INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1"};
  for (int i = 0; i < 4; i++) {
    gs_tensor_info_t t = {names[i], GS_DTYPE_INT32, 2, {-1, 16}};
    (i < 2 ? in : out)[i % 2] = t;
  }
}

static int apply(const char *s, gs_tensor_info_t in[2], gs_tensor_info_t out[2],
                 gs_error_t *err) {
  gs__model_config_t cfg;
  simple_io(in, out);
  int rc = parse(&cfg, s, err);
  return rc ? rc : gs__model_config_apply(&cfg, "f", in, 2, out, 2, err);
}

static void test_config_checked_against_model(void **state) {
  (void)state;
  gs_tensor_info_t in[2], out[2];
  gs_error_t err;
  assert_int_equal(
      parse_fixture(&(gs__model_config_t){0}, "simple.pbtxt", &err), GS_OK);
  assert_int_equal(apply(text, in, out, &err), GS_OK);
  assert_int_equal(apply("max_batch_size: 8 input [{ name: \"INPUT0\" dims: "
                         "[ 15 ] }]",
                         in, out, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "'INPUT0' has dims [15] in the config but "
                                  "[16] in the model"));
  /* Without batching the config's dims are the whole shape. */
  assert_int_equal(
      apply("input [{ name: \"INPUT0\" dims: [ 16 ] }]", in, out, &err),
      GS_EINVAL);
  assert_int_equal(apply("output [{ name: \"OUT\" }]", in, out, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg,
                         "output 'OUT' is not one of the model's ('OUTPUT0', "
                         "'OUTPUT1')"));
  assert_int_equal(apply("output [{ name: \"OUTPUT1\" data_type: TYPE_FP32 }]",
                         in, out, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "TYPE_FP32 in the config but INT32"));
  /* A variable model dimension the config fixes: requests must match. */
  assert_int_equal(
      apply("input [{ name: \"INPUT1\" dims: [ 4, 16 ] }]", in, out, &err),
      GS_OK);
  assert_int_equal(in[1].shape[0], 4);
  assert_int_equal(in[1].shape[1], 16);
}

/* Triton's densenet_onnx: requests send and get the dims ([3,224,224] in,
 * [1000] out); the model takes and gives its reshape ([1,3,224,224],
 * [1,1000,1,1]), checked against the model's own shapes. */
static void test_reshape_densenet(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  gs_tensor_info_t in = {"data_0", GS_DTYPE_FP32, 4, {1, 3, 224, 224}};
  gs_tensor_info_t out = {"fc6_1", GS_DTYPE_FP32, 4, {1, 1000, 1, 1}};
  assert_int_equal(parse_fixture(&cfg, "densenet_onnx.pbtxt", &err), GS_OK);
  assert_int_equal(gs__model_config_apply(&cfg, "f", &in, 1, &out, 1, &err),
                   GS_OK);
  assert_int_equal(in.rank, 3); /* metadata: what requests send */
  assert_int_equal(in.shape[0], 3);
  assert_int_equal(in.shape[2], 224);
  assert_int_equal(out.rank, 1);
  assert_int_equal(out.shape[0], 1000);
  gs__reshape_t *table;
  size_t n;
  assert_int_equal(gs__reshape_table(&cfg, &table, &n, &err), GS_OK);
  assert_int_equal(n, 2);
  gs_tensor_info_t ins[1] = {in}, outs[1] = {out};
  gs__model_io_t io = {"densenet_onnx", "1", 1, 1, ins, outs, table, n};
  gs_tensor_t t = {.name = "data_0", .rank = 3, .shape = {3, 224, 224}};
  assert_int_equal(gs__reshape_tensor(&t, &io, true, true, &err), GS_OK);
  assert_int_equal(t.rank, 4);
  assert_int_equal(t.shape[0], 1);
  assert_int_equal(t.shape[1], 3);
  assert_int_equal(t.shape[3], 224);
  gs_tensor_t o = {.name = "fc6_1", .rank = 4, .shape = {1, 1000, 1, 1}};
  assert_int_equal(gs__reshape_tensor(&o, &io, false, false, &err), GS_OK);
  assert_int_equal(o.rank, 1);
  assert_int_equal(o.shape[0], 1000);
  /* an output that is not the reshape's shape is an error naming it */
  gs_tensor_t bad = {.name = "fc6_1", .rank = 4, .shape = {1, 999, 1, 1}};
  assert_int_equal(gs__reshape_tensor(&bad, &io, false, false, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "output 'fc6_1'"));
  /* an input name that is an output's: untouched */
  gs_tensor_t other = {.name = "fc6_1", .rank = 1, .shape = {1000}};
  assert_int_equal(gs__reshape_tensor(&other, &io, true, true, &err), GS_OK);
  assert_int_equal(other.rank, 1);
  free(table);
  /* the model's shape must match the reshape, not the dims */
  gs_tensor_info_t in2 = {"data_0", GS_DTYPE_FP32, 3, {3, 224, 224}};
  gs_tensor_info_t out2 = {"fc6_1", GS_DTYPE_FP32, 4, {1, 1000, 1, 1}};
  assert_int_equal(gs__model_config_apply(&cfg, "f", &in2, 1, &out2, 1, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "'data_0' has reshape [1,3,224,224] in the "
                                  "config but [3,224,224] in the model"));
}

/* Variable sizes carry over in order, after the batch dimension:
 * [B,2,4,X,6] in requests is [B,8,X,1,6] in the model, and back. */
static void test_reshape_variable_sizes(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  gs_tensor_info_t in = {"x", GS_DTYPE_FP32, 5, {-1, 8, -1, 1, 6}};
  gs_tensor_info_t out = {"y", GS_DTYPE_FP32, 5, {-1, -1, 2, 2, -1}};
  assert_int_equal(parse(&cfg,
                         "max_batch_size: 4\n"
                         "input [{ name: \"x\" dims: [ 2, 4, -1, 6 ] "
                         "reshape { shape: [ 8, -1, 1, 6 ] } }]\n"
                         "output [{ name: \"y\" dims: [ -1, 4, -1 ] "
                         "reshape { shape: [ -1, 2, 2, -1 ] } }]\n",
                         &err),
                   GS_OK);
  assert_int_equal(gs__model_config_apply(&cfg, "f", &in, 1, &out, 1, &err),
                   GS_OK);
  assert_int_equal(in.rank, 5);
  assert_int_equal(in.shape[0], -1);
  assert_int_equal(in.shape[1], 2);
  assert_int_equal(in.shape[3], -1);
  gs__reshape_t *table;
  size_t n;
  assert_int_equal(gs__reshape_table(&cfg, &table, &n, &err), GS_OK);
  gs__model_io_t io = {"m", "1", 1, 1, &in, &out, table, n};
  gs_tensor_t t = {.name = "x", .rank = 5, .shape = {3, 2, 4, 7, 6}};
  assert_int_equal(gs__reshape_tensor(&t, &io, true, true, &err), GS_OK);
  int64_t want[] = {3, 8, 7, 1, 6};
  assert_int_equal(t.rank, 5);
  assert_memory_equal(t.shape, want, sizeof want);
  gs_tensor_t o = {.name = "y", .rank = 5, .shape = {3, 5, 2, 2, 7}};
  assert_int_equal(gs__reshape_tensor(&o, &io, false, false, &err), GS_OK);
  int64_t back[] = {3, 5, 4, 7}; /* two variable sizes, in order */
  assert_int_equal(o.rank, 4);
  assert_memory_equal(o.shape, back, sizeof back);
  free(table);
}

static void test_fp16_for_an_fp32_input(void **state) {
  (void)state;
  gs__model_config_t cfg;
  gs_error_t err;
  gs_tensor_info_t in = {"x", GS_DTYPE_FP32, 2, {-1, 8}}, out = in;
  assert_int_equal(
      parse(&cfg, "input [{ name: \"x\" data_type: TYPE_FP16 }]", &err), GS_OK);
  assert_int_equal(gs__model_config_apply(&cfg, "f", &in, 1, &out, 1, &err),
                   GS_OK);
  assert_int_equal(in.dtype, GS_DTYPE_FP16);
}

static void test_autocomplete_as_triton(void **state) {
  (void)state;
  gs_tensor_info_t in[2], out[2];
  simple_io(in, out);
  gs__model_io_t io = {"simple", "1", 2, 2, in, out, NULL, 0};
  unsigned mbs = 0;
  gs__batching_t b;
  gs__model_config_autocomplete(&mbs, &b, &io);
  assert_int_equal(mbs, 4);
  assert_true(b.enabled);
  assert_int_equal(b.max_queue_delay_us, 0);
  /* One output with a fixed first dimension: no batching. */
  out[1].shape[0] = 16;
  mbs = 0;
  memset(&b, 0, sizeof b);
  gs__model_config_autocomplete(&mbs, &b, &io);
  assert_int_equal(mbs, 0);
  assert_false(b.enabled);
  out[1].rank = -1; /* shape not declared: no batching either */
  gs__model_config_autocomplete(&mbs, &b, &io);
  assert_int_equal(mbs, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_simple_batches_of_8),
      cmocka_unit_test(test_every_section),
      cmocka_unit_test(test_syntax_error_at_line_and_column),
      cmocka_unit_test(test_unknown_field_at_line_and_column),
      cmocka_unit_test(test_unsupported_fields_named),
      cmocka_unit_test(test_queue_policy),
      cmocka_unit_test(test_queue_policy_bad_values),
      cmocka_unit_test(test_backends_gpuslice_cannot_run),
      cmocka_unit_test(test_values_out_of_range),
      cmocka_unit_test(test_version_policy_picks),
      cmocka_unit_test(test_config_json),
      cmocka_unit_test(test_config_checked_against_model),
      cmocka_unit_test(test_fp16_for_an_fp32_input),
      cmocka_unit_test(test_autocomplete_as_triton),
      cmocka_unit_test(test_input_format_kept),
      cmocka_unit_test(test_unknown_parameters_listed_not_refused),
      cmocka_unit_test(test_reshape_densenet),
      cmocka_unit_test(test_reshape_variable_sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
