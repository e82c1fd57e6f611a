/* Unit tests of the mig-parted v1 config module. Each test states the rule of
 * the format (mig-parted's README, "v1" config files) or of
 * gpuslice's own contract (include/gpuslice/config.h) that it checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gpuslice/apply.h"
#include "gpuslice/config.h"

#define SRC "cfg.yaml"

/* The example from the reference, verbatim. */
static const char REFERENCE_EXAMPLE[] = "version: v1\n"
                                        "mig-configs:\n"
                                        "  all-disabled:\n"
                                        "    - devices: all\n"
                                        "      mig-enabled: false\n"
                                        "  all-1g.6gb:\n"
                                        "    - devices: all\n"
                                        "      mig-enabled: true\n"
                                        "      mig-devices:\n"
                                        "        \"1g.6gb\": 4\n"
                                        "  custom-config:\n"
                                        "    - devices: [0]\n"
                                        "      mig-enabled: true\n"
                                        "      mig-devices:\n"
                                        "        \"1g.6gb\": 4\n"
                                        "    - devices: [1]\n"
                                        "      mig-enabled: true\n"
                                        "      mig-devices:\n"
                                        "        \"2g.12gb\": 2\n";

/* An entry template: one set "s" with one entry whose body is given. */
#define ONE_ENTRY(body)                                                        \
  "version: v1\n"                                                              \
  "mig-configs:\n"                                                             \
  "  s:\n"                                                                     \
  "    - " body

static int load(gs_config_t *cfg, const char *text, gs_error_t *err) {
  gs_error_clear(err);
  return gs_config_load_buffer(cfg, SRC, text, strlen(text), err);
}

static void expect_ok(gs_config_t *cfg, const char *text) {
  gs_error_t err;
  int rc = load(cfg, text, &err);
  if (rc != GS_OK)
    fail_msg("unexpected failure: %s", err.msg);
}

/* A failed load returns code, leaves *cfg zeroed, and the message is exactly
 * msg (a full "SOURCE:LINE:COLUMN: ..." line). */
static void expect_error(const char *text, int code, const char *msg) {
  gs_config_t cfg;
  gs_error_t err;
  memset(&cfg, 0xA5, sizeof cfg);
  int rc = load(&cfg, text, &err);
  if (rc != code)
    fail_msg("expected %s, got %s: %s", gs_err_name(code), gs_err_name(rc),
             err.msg);
  assert_int_equal(err.code, code);
  assert_string_equal(err.msg, msg);
  gs_config_t zero;
  memset(&zero, 0, sizeof zero);
  assert_memory_equal(&cfg, &zero, sizeof cfg);
}

/* Like expect_error, for messages whose wording comes from libyaml: only the
 * "SOURCE:LINE:COLUMN: " prefix is checked. */
static void expect_error_at(const char *text, int code, const char *prefix) {
  gs_config_t cfg;
  gs_error_t err;
  int rc = load(&cfg, text, &err);
  if (rc != code)
    fail_msg("expected %s, got %s: %s", gs_err_name(code), gs_err_name(rc),
             err.msg);
  if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
    fail_msg("message '%s' does not start with '%s'", err.msg, prefix);
  assert_null(cfg.sets);
  assert_null(cfg.source);
}

static char *data_path(const char *name) {
  const char *dir = getenv("GS_TEST_DATA");
  if (!dir)
    dir = "tests/data";
  size_t size = strlen(dir) + strlen(name) + 2;
  char *path = malloc(size);
  assert_non_null(path);
  snprintf(path, size, "%s/%s", dir, name);
  return path;
}

/* ---- valid input ------------------------------------------------------- */

/* The reference example loads: sets in file order, devices 'all' or
 * indices, profile name -> count. */
static void test_reference_example(void **state) {
  (void)state;
  gs_config_t cfg;
  expect_ok(&cfg, REFERENCE_EXAMPLE);
  assert_string_equal(cfg.source, SRC);
  assert_int_equal(cfg.n_sets, 3);
  const gs_config_set_t *off = &cfg.sets[0], *all = &cfg.sets[1];
  assert_string_equal(off->name, "all-disabled");
  assert_int_equal(off->n_entries, 1);
  assert_true(off->entries[0].all_devices);
  assert_false(off->entries[0].mig_enabled);
  assert_int_equal(off->entries[0].n_mig_devices, 0);
  assert_string_equal(all->name, "all-1g.6gb");
  assert_true(all->entries[0].mig_enabled);
  assert_int_equal(all->entries[0].n_mig_devices, 1);
  assert_string_equal(all->entries[0].mig_devices[0].name, "1g.6gb");
  assert_int_equal(all->entries[0].mig_devices[0].count, 4);
  const gs_config_set_t *custom = &cfg.sets[2];
  assert_int_equal(custom->n_entries, 2);
  assert_false(custom->entries[1].all_devices);
  assert_int_equal(custom->entries[1].n_devices, 1);
  assert_int_equal(custom->entries[1].devices[0], 1);
  assert_string_equal(custom->entries[1].mig_devices[0].name, "2g.12gb");
  assert_int_equal(custom->entries[1].mig_devices[0].count, 2);
  assert_int_equal(custom->entries[1].n_filters, 0);
  gs_config_release(&cfg);
}

/* Marks are 1-based and point at the set's name, the entry's mapping and the
 * profile key (the apply module reports profile errors there). */
static void test_marks(void **state) {
  (void)state;
  gs_config_t cfg;
  expect_ok(&cfg, REFERENCE_EXAMPLE);
  const gs_config_set_t *custom = &cfg.sets[2];
  assert_int_equal(custom->mark.line, 11);
  assert_int_equal(custom->mark.column, 3);
  assert_int_equal(custom->entries[1].mark.line, 16);
  assert_int_equal(custom->entries[1].mark.column, 7);
  assert_int_equal(custom->entries[1].mig_devices[0].mark.line, 19);
  assert_int_equal(custom->entries[1].mig_devices[0].mark.column, 9);
  gs_config_release(&cfg);
}

/* JSON is YAML flow style, so the same config in JSON loads the same. */
static void test_json_input(void **state) {
  (void)state;
  gs_config_t cfg;
  expect_ok(&cfg,
            "{\"version\": \"v1\", \"mig-configs\": {\"mixed\": [\n"
            "  {\"devices\": [0, 1], \"device-filter\": [\"0x233010DE\"],\n"
            "   \"mig-enabled\": true,\n"
            "   \"mig-devices\": {\"1g.10gb\": 2, \"1c.3g.40gb\": 1}},\n"
            "  {\"devices\": \"all\", \"mig-enabled\": false}]}}\n");
  assert_int_equal(cfg.n_sets, 1);
  const gs_config_entry_t *e = &cfg.sets[0].entries[0];
  assert_int_equal(e->n_devices, 2);
  assert_int_equal(e->devices[1], 1);
  assert_int_equal(e->n_filters, 1);
  assert_int_equal(e->device_filter[0], 0x233010DE);
  assert_int_equal(e->n_mig_devices, 2);
  assert_string_equal(e->mig_devices[1].name, "1c.3g.40gb");
  assert_true(cfg.sets[0].entries[1].all_devices);
  gs_config_release(&cfg);
}

/* CI-qualified names are kept as written; a count of 0 is stored. */
static void test_ci_names_and_zero_count(void **state) {
  (void)state;
  gs_config_t cfg;
  expect_ok(&cfg, ONE_ENTRY("devices: all\n"
                            "      mig-enabled: true\n"
                            "      mig-devices: {\"1c.3g.40gb\": 3, "
                            "\"3g.40gb\": 0, 19: 1}\n"));
  const gs_config_entry_t *e = &cfg.sets[0].entries[0];
  assert_int_equal(e->n_mig_devices, 3);
  assert_string_equal(e->mig_devices[0].name, "1c.3g.40gb");
  assert_int_equal(e->mig_devices[0].count, 3);
  assert_int_equal(e->mig_devices[1].count, 0);
  assert_string_equal(e->mig_devices[2].name, "19");
  gs_config_release(&cfg);
}

/* device-filter is one PCI device ID or a list; hex digits in any case. */
static void test_device_filter_forms(void **state) {
  (void)state;
  gs_config_t cfg;
  expect_ok(&cfg, ONE_ENTRY("devices: all\n"
                            "      device-filter: \"0x233010de\"\n"
                            "      mig-enabled: false\n"));
  assert_int_equal(cfg.sets[0].entries[0].n_filters, 1);
  assert_int_equal(cfg.sets[0].entries[0].device_filter[0], 0x233010DE);
  gs_config_release(&cfg);
  expect_ok(&cfg,
            ONE_ENTRY("devices: all\n"
                      "      device-filter: [\"0x20B010DE\", 0x20B210DE]\n"
                      "      mig-enabled: false\n"));
  assert_int_equal(cfg.sets[0].entries[0].n_filters, 2);
  assert_int_equal(cfg.sets[0].entries[0].device_filter[0], 0x20B010DE);
  assert_int_equal(cfg.sets[0].entries[0].device_filter[1], 0x20B210DE);
  gs_config_release(&cfg);
}

/* mig-devices is required when enabled but may be empty; when disabled it may
 * be absent, empty, or written with no value. */
static void test_empty_mig_devices(void **state) {
  (void)state;
  gs_config_t cfg;
  expect_ok(&cfg, ONE_ENTRY("devices: all\n"
                            "      mig-enabled: true\n"
                            "      mig-devices: {}\n"
                            "    - devices: [3]\n"
                            "      mig-enabled: False\n"
                            "      mig-devices: {}\n"
                            "    - devices: [4]\n"
                            "      mig-enabled: FALSE\n"
                            "      mig-devices:\n"));
  assert_int_equal(cfg.sets[0].n_entries, 3);
  assert_true(cfg.sets[0].entries[0].mig_enabled);
  assert_int_equal(cfg.sets[0].entries[0].n_mig_devices, 0);
  assert_false(cfg.sets[0].entries[1].mig_enabled);
  gs_config_release(&cfg);
}

/* The example files other tests use load with the documented values. */
static void test_example_files(void **state) {
  (void)state;
  gs_config_t cfg;
  gs_error_t err;
  char *path = data_path("configs/h100-examples.yaml");
  int rc = gs_config_load_file(&cfg, path, &err);
  if (rc != GS_OK)
    fail_msg("%s", err.msg);
  assert_string_equal(cfg.source, path);
  free(path);
  const gs_config_set_t *set = gs_config_find(&cfg, "all-balanced", &err);
  assert_non_null(set);
  const gs_config_entry_t *e = &set->entries[0];
  assert_int_equal(e->device_filter[0], 0x233010DE);
  assert_int_equal(e->n_mig_devices, 3);
  assert_string_equal(e->mig_devices[2].name, "3g.40gb");
  set = gs_config_find(&cfg, "all-1g.10gb", &err);
  assert_non_null(set);
  assert_int_equal(set->entries[0].mig_devices[0].count, 7);
  gs_config_release(&cfg);

  path = data_path("configs/host-examples.yaml");
  rc = gs_config_load_file(&cfg, path, &err);
  free(path);
  if (rc != GS_OK)
    fail_msg("%s", err.msg);
  assert_non_null(gs_config_find(&cfg, "host-mixed", &err));
  gs_config_release(&cfg);
}

/* ---- errors: syntax and structure -------------------------------------- */

/* libyaml's syntax errors come back as EPARSE with the line and column. */
static void test_syntax_errors(void **state) {
  (void)state;
  expect_error_at("version: v1\n"
                  "mig-configs: [\n",
                  GS_EPARSE, SRC ":3:1: ");
  expect_error_at("version: v1\n"
                  "mig-configs:\n"
                  "  s:\n"
                  "    - devices: all\n"
                  "     mig-enabled: true\n",
                  GS_EPARSE, SRC ":5:6: ");
  /* A tab may not indent YAML. */
  expect_error_at("version: v1\n\tmig-configs: {}\n", GS_EPARSE, SRC ":2:1: ");
  /* Bad UTF-8 is a reader error, located from its byte offset. */
  expect_error_at("version: v1\nmig-configs:\n  s\xff: []\n", GS_EPARSE,
                  SRC ":3:4: ");
}

/* Unknown keys are rejected anywhere; the message lists the keys allowed. */
static void test_unknown_keys(void **state) {
  (void)state;
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-device:\n"
                         "        \"1g.10gb\": 1\n"),
               GS_EINVAL,
               SRC ":6:7: unknown key 'mig-device' in config 's' entry 1 "
                   "(expected devices, device-filter, mig-enabled, "
                   "mig-devices)");
  expect_error("version: v1\nkind: x\n", GS_EINVAL,
               SRC ":2:1: unknown key 'kind' at the top level (expected "
                   "version, mig-configs)");
}

/* Keys are unique; the error points at the second one. */
static void test_duplicate_keys(void **state) {
  (void)state;
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: false\n"
                         "      devices: [0]\n"),
               GS_EINVAL,
               SRC ":6:7: duplicate key 'devices' in config 's' entry 1 "
                   "(first at 4:7)");
  expect_error(
      ONE_ENTRY("devices: all\n"
                "      mig-enabled: true\n"
                "      mig-devices: {\"1g.10gb\": 1, \"1g.10gb\": 2}\n"),
      GS_EINVAL,
      SRC ":6:35: duplicate key '1g.10gb' in mig-devices in config "
          "'s' entry 1 (first at 6:21)");
  expect_error("version: v1\n"
               "mig-configs:\n"
               "  a: [{devices: all, mig-enabled: false}]\n"
               "  a: [{devices: all, mig-enabled: true}]\n",
               GS_EINVAL,
               SRC ":4:3: duplicate config name 'a' in mig-configs (first at "
                   "3:3)");
}

/* version is v1; both top-level keys are required; mig-configs and every set
 * must hold something. */
static void test_document_shape(void **state) {
  (void)state;
  expect_error("version: v2\nmig-configs: {}\n", GS_EINVAL,
               SRC ":1:10: version must be v1, got 'v2'");
  expect_error("mig-configs:\n  s: [{devices: all, mig-enabled: false}]\n",
               GS_EINVAL, SRC ":1:1: missing key 'version' (expected v1)");
  expect_error("version: v1\n", GS_EINVAL,
               SRC ":1:1: missing key 'mig-configs'");
  expect_error("version: v1\nmig-configs: {}\n", GS_EINVAL,
               SRC ":2:14: mig-configs holds no configs");
  expect_error("version: v1\nmig-configs:\n  s: []\n", GS_EINVAL,
               SRC ":3:6: config 's' has no entries");
  expect_error("", GS_EINVAL,
               SRC ":1:1: empty config (expected 'version: v1' and "
                   "'mig-configs')");
  expect_error("- 1\n", GS_EINVAL,
               SRC ":1:1: the top level must be a mapping with version and "
                   "mig-configs, got a list");
  expect_error("version: v1\nmig-configs:\n  s:\n    - all\n", GS_EINVAL,
               SRC ":4:7: entry 1 of config 's' must be a mapping with "
                   "devices and mig-enabled, got 'all'");
}

/* devices and mig-enabled are required; mig-devices is required when
 * mig-enabled is true and must be empty when it is false. */
static void test_required_keys(void **state) {
  (void)state;
  expect_error(ONE_ENTRY("mig-enabled: false\n"), GS_EINVAL,
               SRC ":4:7: missing key 'devices' in config 's' entry 1 (write "
                   "'all' or a list of indices)");
  expect_error(ONE_ENTRY("devices: all\n"), GS_EINVAL,
               SRC ":4:7: missing key 'mig-enabled' in config 's' entry 1 "
                   "(write true or false)");
  expect_error(ONE_ENTRY("devices: all\n      mig-enabled: true\n"), GS_EINVAL,
               SRC ":4:7: missing key 'mig-devices' in config 's' entry 1 "
                   "(required when mig-enabled is true; write {} for none)");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: false\n"
                         "      mig-devices: {\"1g.10gb\": 1}\n"),
               GS_EINVAL,
               SRC ":6:7: mig-devices must be empty when mig-enabled is false "
                   "in config 's' entry 1");
}

/* Counts are non-negative decimal integers written plainly. */
static void test_count_types(void **state) {
  (void)state;
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices:\n"
                         "        \"1g.10gb\": two\n"),
               GS_EINVAL,
               SRC ":7:20: count for '1g.10gb' must be a non-negative "
                   "integer, got 'two'");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices: {\"1g.10gb\": -1}\n"),
               GS_EINVAL,
               SRC ":6:32: count for '1g.10gb' must be a non-negative "
                   "integer, got '-1'");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices: {\"1g.10gb\": \"2\"}\n"),
               GS_EINVAL,
               SRC ":6:32: count for '1g.10gb' must be a non-negative "
                   "integer, got the quoted string '2'");
  /* A mapping where a number belongs: the message names key and type. */
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices:\n"
                         "        \"1g.10gb\": {n: 2}\n"),
               GS_EINVAL,
               SRC ":7:20: count for '1g.10gb' must be a non-negative "
                   "integer, got a mapping");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices: {\"1g.10gb\": 010}\n"),
               GS_EINVAL,
               SRC ":6:32: count for '1g.10gb' must be a decimal integer "
                   "without leading zeros, got '010'");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices: [\"1g.10gb\"]\n"),
               GS_EINVAL,
               SRC ":6:20: mig-devices must be a mapping of profile names to "
                   "counts, got a list");
}

/* devices is 'all' or a list of distinct non-negative indices. */
static void test_devices_values(void **state) {
  (void)state;
  expect_error(ONE_ENTRY("devices: some\n      mig-enabled: false\n"),
               GS_EINVAL,
               SRC ":4:16: devices must be 'all' or a list of device "
                   "indices, got 'some'");
  expect_error(ONE_ENTRY("devices: [0, 2, 0]\n      mig-enabled: false\n"),
               GS_EINVAL, SRC ":4:23: device 0 is listed twice");
  expect_error(ONE_ENTRY("devices: [x]\n      mig-enabled: false\n"), GS_EINVAL,
               SRC ":4:17: a device index must be a non-negative integer, got "
                   "'x'");
  expect_error(ONE_ENTRY("devices: []\n      mig-enabled: false\n"), GS_EINVAL,
               SRC ":4:16: devices list is empty (write 'all' or device "
                   "indices)");
}

/* mig-enabled is a boolean: true/false in any of the three cases YAML 1.2
 * allows; yes/no and numbers are refused with a clear message. */
static void test_mig_enabled_values(void **state) {
  (void)state;
  gs_config_t cfg;
  expect_ok(&cfg, ONE_ENTRY("devices: all\n      mig-enabled: TRUE\n"
                            "      mig-devices: {}\n"));
  assert_true(cfg.sets[0].entries[0].mig_enabled);
  gs_config_release(&cfg);
  expect_error(ONE_ENTRY("devices: all\n      mig-enabled: yes\n"), GS_EINVAL,
               SRC ":5:20: mig-enabled must be true or false, got 'yes' "
                   "(yes/no/on/off and numbers are not booleans here)");
  expect_error(ONE_ENTRY("devices: all\n      mig-enabled: 1\n"), GS_EINVAL,
               SRC ":5:20: mig-enabled must be true or false, got '1' "
                   "(yes/no/on/off and numbers are not booleans here)");
  expect_error(ONE_ENTRY("devices: all\n      mig-enabled: \"true\"\n"),
               GS_EINVAL,
               SRC ":5:20: mig-enabled must be true or false, got the quoted "
                   "string 'true'");
}

/* device-filter values are "0x" and 8 hex digits. */
static void test_device_filter_values(void **state) {
  (void)state;
  expect_error(ONE_ENTRY("devices: all\n"
                         "      device-filter: \"233010DE\"\n"
                         "      mig-enabled: false\n"),
               GS_EINVAL,
               SRC ":5:22: device-filter values must be PCI device IDs like "
                   "\"0x233010DE\" (0x and 8 hex digits), got the quoted "
                   "string '233010DE'");
  expect_error(
      ONE_ENTRY("devices: all\n"
                "      device-filter: [\"0x233010DE\", \"0x2330G0DE\"]\n"
                "      mig-enabled: false\n"),
      GS_EINVAL,
      SRC ":5:37: device-filter values must be PCI device IDs like "
          "\"0x233010DE\" (0x and 8 hex digits), got the quoted "
          "string '0x2330G0DE'");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      device-filter: {a: 1}\n"
                         "      mig-enabled: false\n"),
               GS_EINVAL,
               SRC ":5:22: device-filter must be a PCI device ID or a "
                   "non-empty list of them, got a mapping");
}

/* Anchors, aliases (the billion-laughs vector) and explicit tags are not part
 * of mig-parted files and are refused where they appear. */
static void test_anchors_aliases_tags(void **state) {
  (void)state;
  expect_error("version: v1\n"
               "mig-configs:\n"
               "  a: &e [{devices: all, mig-enabled: false}]\n"
               "  b: *e\n",
               GS_EINVAL,
               SRC ":3:6: anchor '&e' is not allowed (mig-parted configs use "
                   "no anchors or aliases)");
  expect_error(ONE_ENTRY("devices: all\n      mig-enabled: !!bool true\n"),
               GS_EINVAL,
               SRC ":5:20: tag 'tag:yaml.org,2002:bool' is not allowed "
                   "(values take their default types; write them plainly)");
  expect_error("version: v1\n---\nversion: v1\n", GS_EINVAL,
               SRC ":2:1: a second YAML document; a config is one document");
}

/* Names are printed in tables and messages and written back as YAML and
 * JSON: a key holding a control character or line break (or a NUL through a
 * "\0" escape) is refused, and the message shows it as '?'. */
static void test_names_printable(void **state) {
  (void)state;
  expect_error("version: v1\n"
               "mig-configs:\n"
               "  \"all\\e[2J\": [{devices: all, mig-enabled: false}]\n",
               GS_EINVAL,
               SRC ":3:3: a key in mig-configs holds a control character or "
                   "line break: the quoted string 'all?[2J'");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices: {\"1g\\0.10gb\": 1}\n"),
               GS_EINVAL,
               SRC ":6:21: a key in config 's' entry 1 holds a control "
                   "character or line break: the quoted string '1g?.10gb'");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      mig-enabled: true\n"
                         "      mig-devices: {\"1g\\u2028x\": 1}\n"),
               GS_EINVAL,
               SRC ":6:21: a key in config 's' entry 1 holds a control "
                   "character or line break: the quoted string '1g?x'");
}

/* ---- limits ------------------------------------------------------------ */

/* Builds an entry whose mig-devices has n keys of the given name length. */
static char *mig_devices_config(unsigned n, unsigned name_len, unsigned count) {
  size_t size = 256 + (size_t)n * (name_len + 32);
  char *text = malloc(size);
  assert_non_null(text);
  int used = snprintf(text, size, "%s",
                      ONE_ENTRY("devices: all\n      mig-enabled: true\n"
                                "      mig-devices:\n"));
  for (unsigned i = 0; i < n; i++) {
    char name[128];
    snprintf(name, sizeof name, "%u", i);
    memset(name + strlen(name), 'g', name_len - strlen(name));
    name[name_len] = '\0';
    used += snprintf(text + used, size - (size_t)used, "        \"%s\": %u\n",
                     name, count);
  }
  return text;
}

/* Every limit in config.h holds at its value and fails one past it. */
static void test_limits(void **state) {
  (void)state;
  gs_config_t cfg;
  char *text =
      mig_devices_config(GS_CONFIG_MAX_MIG_DEVICES, 63, GS_CONFIG_MAX_COUNT);
  expect_ok(&cfg, text);
  assert_int_equal(cfg.sets[0].entries[0].n_mig_devices, 32);
  assert_int_equal(strlen(cfg.sets[0].entries[0].mig_devices[0].name), 63);
  gs_config_release(&cfg);
  free(text);
  text = mig_devices_config(GS_CONFIG_MAX_MIG_DEVICES + 1, 8, 1);
  expect_error(text, GS_ELIMIT,
               SRC ":39:9: more than 32 profiles in mig-devices in config 's' "
                   "entry 1");
  free(text);
  text = mig_devices_config(1, 64, 1);
  expect_error(text, GS_ELIMIT,
               SRC ":7:9: profile name '0gggggggggggggggggggggggggggggggggggggg"
                   "g...' is longer than 63 bytes");
  free(text);
  text = mig_devices_config(1, 8, GS_CONFIG_MAX_COUNT + 1);
  expect_error(text, GS_ELIMIT,
               SRC ":7:21: count for '0ggggggg' is '65'; the limit is 64");
  free(text);

  expect_error(ONE_ENTRY("devices: [63, 64]\n      mig-enabled: false\n"),
               GS_ELIMIT,
               SRC ":4:21: device index '64' is out of range (0 "
                   "to 63)");
  expect_error(ONE_ENTRY("devices: all\n"
                         "      device-filter: [0x00000001, 0x00000002, "
                         "0x00000003, 0x00000004, 0x00000005, 0x00000006, "
                         "0x00000007, 0x00000008, 0x00000009]\n"
                         "      mig-enabled: false\n"),
               GS_ELIMIT, SRC ":5:119: more than 8 device-filter values");
}

/* Config names are at most 255 bytes (a longer key would not read back from
 * JSON), and one file holds at most 4096 entries (each entry is a few KiB):
 * limits of this module beyond those in config.h. */
static void test_module_limits(void **state) {
  (void)state;
  gs_config_t cfg;
  gs_error_t err;
  char text[1024];
  char name[300];
  memset(name, 'n', sizeof name);
  name[256] = '\0';
  snprintf(text, sizeof text,
           "version: v1\nmig-configs:\n  %s: [{devices: all, "
           "mig-enabled: false}]\n",
           name);
  assert_int_equal(load(&cfg, text, &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "is longer than 255 bytes"));
  name[255] = '\0';
  snprintf(text, sizeof text,
           "version: v1\nmig-configs:\n  %s: [{devices: all, "
           "mig-enabled: false}]\n",
           name);
  expect_ok(&cfg, text);
  gs_config_release(&cfg);

  const char entry[] = "{devices: all, mig-enabled: false},";
  size_t size = 64 + 4097 * strlen(entry);
  char *many = malloc(size), *end = many;
  assert_non_null(many);
  end += sprintf(end, "version: v1\nmig-configs:\n  a: [");
  for (unsigned i = 0; i < 4096; i++)
    end += sprintf(end, "%s", entry);
  sprintf(end, "]\n  b: [%s]\n", entry);
  assert_int_equal(load(&cfg, many, &err), GS_ELIMIT);
  assert_string_equal(err.msg, SRC ":4:6: more than 4096 entries in one file");
  free(many);
}

/* A buffer or file over GS_CONFIG_MAX_BYTES is refused before parsing. */
static void test_size_limit(void **state) {
  (void)state;
  size_t len = GS_CONFIG_MAX_BYTES + 1;
  char *big = malloc(len);
  assert_non_null(big);
  memset(big, '#', len);
  gs_config_t cfg;
  gs_error_t err;
  assert_int_equal(gs_config_load_buffer(&cfg, "big", big, len, &err),
                   GS_ELIMIT);
  assert_string_equal(err.msg,
                      "big: config is 1048577 bytes, more than the limit of "
                      "1048576");
  assert_null(cfg.sets);

  char path[] = "/tmp/gs_test_config_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, big, len), (ssize_t)len);
  close(fd);
  assert_int_equal(gs_config_load_file(&cfg, path, &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "larger than the limit of 1048576 bytes"));
  unlink(path);
  free(big);
}

/* A missing file is a system error that carries errno. */
static void test_missing_file(void **state) {
  (void)state;
  gs_config_t cfg;
  gs_error_t err;
  assert_int_equal(gs_config_load_file(&cfg, "/nonexistent/cfg.yaml", &err),
                   GS_ESYSTEM);
  assert_int_equal(err.sys_errno, 2 /* ENOENT */);
  assert_string_equal(err.msg,
                      "/nonexistent/cfg.yaml: cannot open: No such file or "
                      "directory");
  assert_null(cfg.sets);
}

/* ---- emit, find, release ----------------------------------------------- */

static void assert_same_config(const gs_config_t *a, const gs_config_t *b) {
  assert_int_equal(a->n_sets, b->n_sets);
  for (unsigned s = 0; s < a->n_sets; s++) {
    const gs_config_set_t *x = &a->sets[s], *y = &b->sets[s];
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->n_entries, y->n_entries);
    for (unsigned e = 0; e < x->n_entries; e++) {
      const gs_config_entry_t *p = &x->entries[e], *q = &y->entries[e];
      assert_int_equal(p->all_devices, q->all_devices);
      assert_int_equal(p->n_devices, q->n_devices);
      assert_memory_equal(p->devices, q->devices,
                          p->n_devices * sizeof p->devices[0]);
      assert_int_equal(p->n_filters, q->n_filters);
      assert_memory_equal(p->device_filter, q->device_filter,
                          p->n_filters * sizeof p->device_filter[0]);
      assert_int_equal(p->mig_enabled, q->mig_enabled);
      assert_int_equal(p->n_mig_devices, q->n_mig_devices);
      for (unsigned m = 0; m < p->n_mig_devices; m++) {
        assert_string_equal(p->mig_devices[m].name, q->mig_devices[m].name);
        assert_int_equal(p->mig_devices[m].count, q->mig_devices[m].count);
      }
    }
  }
}

static const char ROUND_TRIP[] =
    "version: v1\n"
    "mig-configs:\n"
    "  all-disabled:\n"
    "    - devices: all\n"
    "      mig-enabled: false\n"
    "  \"odd: name\":\n"
    "    - devices: [0, 1]\n"
    "      device-filter: [\"0x233010DE\", \"0x20b010de\"]\n"
    "      mig-enabled: true\n"
    "      mig-devices: {\"1g.10gb\": 2, \"1c.3g.40gb\": 1, \"2g.20gb\": 0}\n"
    "    - devices: [2]\n"
    "      device-filter: \"0x233510DE\"\n"
    "      mig-enabled: true\n"
    "      mig-devices: {}\n";

static void round_trip(gs_config_format_t format, const char **expected,
                       unsigned n_expected) {
  gs_config_t cfg, again;
  gs_error_t err;
  expect_ok(&cfg, ROUND_TRIP);
  char *text;
  size_t len;
  assert_int_equal(gs_config_emit(&cfg, format, &text, &len, &err), GS_OK);
  assert_int_equal(strlen(text), len);
  const char *at = text;
  for (unsigned i = 0; i < n_expected; i++) {
    const char *found = strstr(at, expected[i]);
    if (!found)
      fail_msg("'%s' not found in order in:\n%s", expected[i], text);
    at = found;
  }
  if (gs_config_load_buffer(&again, "emitted", text, len, &err) != GS_OK)
    fail_msg("%s\n%s", err.msg, text);
  assert_same_config(&cfg, &again);
  free(text);
  gs_config_release(&again);
  gs_config_release(&cfg);
}

/* Emitted YAML reads like a mig-parted file (block style, quoted profile
 * names, flow device lists) and loads back to the same config. */
static void test_emit_yaml_round_trip(void **state) {
  (void)state;
  const char *expected[] = {"version: v1\n",
                            "mig-configs:\n",
                            "  all-disabled:\n",
                            "devices: all\n",
                            "mig-enabled: false\n",
                            "devices: [0, 1]\n",
                            "device-filter: [\"0x233010DE\", \"0x20B010DE\"]",
                            "\"1g.10gb\": 2\n",
                            "\"1c.3g.40gb\": 1\n",
                            "device-filter: \"0x233510DE\"\n",
                            "mig-devices: {}\n"};
  round_trip(GS_CONFIG_YAML, expected, sizeof expected / sizeof *expected);
}

/* Emitted JSON keeps the YAML key order and loads back the same. */
static void test_emit_json_round_trip(void **state) {
  (void)state;
  const char *expected[] = {"{\n  \"version\": \"v1\",\n  \"mig-configs\": {",
                            "\"all-disabled\": [",
                            "\"devices\": \"all\"",
                            "\"mig-enabled\": false",
                            "\"odd: name\": [",
                            "\"devices\": [",
                            "\"device-filter\": [",
                            "\"mig-enabled\": true",
                            "\"mig-devices\": {",
                            "\"1g.10gb\": 2",
                            "\"device-filter\": \"0x233510DE\"",
                            "\"mig-devices\": {}"};
  round_trip(GS_CONFIG_JSON, expected, sizeof expected / sizeof *expected);
}

/* emit refuses a config the loader could not have produced. */
static void test_emit_refuses_bad_config(void **state) {
  (void)state;
  gs_config_entry_t entry;
  memset(&entry, 0, sizeof entry);
  entry.n_devices = GS_CONFIG_MAX_DEVICES + 1;
  char name[] = "bad";
  gs_config_set_t set = {name, 1, &entry, {1, 1}};
  gs_config_t cfg = {NULL, 1, &set};
  char *text = (char *)"untouched";
  size_t len = 7;
  gs_error_t err;
  assert_int_equal(gs_config_emit(&cfg, GS_CONFIG_YAML, &text, &len, &err),
                   GS_EINVAL);
  assert_null(text);
  assert_int_equal(len, 0);
}

/* find returns the named set; a missing name lists the names there are. */
static void test_find(void **state) {
  (void)state;
  gs_config_t cfg;
  gs_error_t err;
  expect_ok(&cfg, REFERENCE_EXAMPLE);
  const gs_config_set_t *set = gs_config_find(&cfg, "custom-config", &err);
  assert_ptr_equal(set, &cfg.sets[2]);
  assert_null(gs_config_find(&cfg, "all-2g", &err));
  assert_int_equal(err.code, GS_ENOTFOUND);
  assert_string_equal(err.msg, "no config 'all-2g' in " SRC " (it has: "
                               "all-disabled, all-1g.6gb, custom-config)");
  gs_config_release(&cfg);
}

/* release frees what a config holds and leaves it zeroed; a zeroed config
 * releases safely (twice, too). */
static void test_release(void **state) {
  (void)state;
  gs_config_t cfg;
  memset(&cfg, 0, sizeof cfg);
  gs_config_release(&cfg);
  expect_ok(&cfg, REFERENCE_EXAMPLE);
  gs_config_release(&cfg);
  assert_null(cfg.sets);
  assert_null(cfg.source);
  assert_int_equal(cfg.n_sets, 0);
  gs_config_release(&cfg);
  gs_config_release(NULL);
}

/* gs_want_from_config's contract (apply.h): a device that two entries of
 * one set both select (a list and `all`, or two lists) fails with
 * GS_EINVAL naming the entry that chose it first; separate devices are
 * fine. */
static void test_a_device_configured_twice_is_refused(void **state) {
  (void)state;
  static gs_device_t devs[2];
  for (unsigned d = 0; d < 2; d++) {
    gs_error_t err;
    devs[d].index = d;
    assert_int_equal(gs_catalog_for_model(&devs[d].catalog, "a100-40gb", &err),
                     GS_OK);
    gs_layout_init(&devs[d].layout);
  }
  static const char *const twice[] = {
      "version: v1\nmig-configs:\n  s:\n"
      "    - devices: all\n      mig-enabled: true\n"
      "      mig-devices: {\"1g.5gb\": 7}\n"
      "    - devices: [1]\n      mig-enabled: true\n"
      "      mig-devices: {\"7g.40gb\": 1}\n",
      "version: v1\nmig-configs:\n  s:\n"
      "    - devices: [0, 1]\n      mig-enabled: false\n"
      "    - devices: [1]\n      mig-enabled: false\n"};
  for (unsigned i = 0; i < 2; i++) {
    gs_config_t cfg;
    gs_error_t err;
    expect_ok(&cfg, twice[i]);
    gs_want_t want[2];
    bool selected[2];
    assert_int_equal(
        gs_want_from_config(&cfg, &cfg.sets[0], devs, 2, want, selected, &err),
        GS_EINVAL);
    assert_non_null(
        strstr(err.msg, "device 1 is already configured by entry 1"));
    gs_config_release(&cfg);
  }
  gs_config_t cfg;
  gs_error_t err;
  expect_ok(&cfg, "version: v1\nmig-configs:\n  s:\n"
                  "    - devices: [0]\n      mig-enabled: false\n"
                  "    - devices: [1]\n      mig-enabled: false\n");
  gs_want_t want[2];
  bool selected[2];
  assert_int_equal(
      gs_want_from_config(&cfg, &cfg.sets[0], devs, 2, want, selected, &err),
      GS_OK);
  assert_true(selected[0] && selected[1]);
  gs_config_release(&cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_example),
      cmocka_unit_test(test_a_device_configured_twice_is_refused),
      cmocka_unit_test(test_marks),
      cmocka_unit_test(test_json_input),
      cmocka_unit_test(test_ci_names_and_zero_count),
      cmocka_unit_test(test_device_filter_forms),
      cmocka_unit_test(test_empty_mig_devices),
      cmocka_unit_test(test_example_files),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_unknown_keys),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_document_shape),
      cmocka_unit_test(test_required_keys),
      cmocka_unit_test(test_count_types),
      cmocka_unit_test(test_devices_values),
      cmocka_unit_test(test_mig_enabled_values),
      cmocka_unit_test(test_device_filter_values),
      cmocka_unit_test(test_anchors_aliases_tags),
      cmocka_unit_test(test_names_printable),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_module_limits),
      cmocka_unit_test(test_size_limit),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_emit_yaml_round_trip),
      cmocka_unit_test(test_emit_json_round_trip),
      cmocka_unit_test(test_emit_refuses_bad_config),
      cmocka_unit_test(test_find),
      cmocka_unit_test(test_release),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
