/* The option tables of serve, worker and perf (tools/cli_opts.h): each
 * holds together (every option has help, defaults within their range, no
 * name, short option or YAML key twice, keys are the names with _), and
 * the checker itself catches each kind of broken table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "serve_cli.h"

static const cli_opts_t *const tables[] = {
    &serve_cli_options, &worker_cli_options, &perf_cli_options};

/* Rule: a command's table is consistent. */
static void test_tables_consistent(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
    char why[256] = "";
    int rc = cli_opts_check(tables[t], why, sizeof why);
    if (rc != 0)
      fail_msg("%s: %s", tables[t]->verb, why);
    assert_true(tables[t]->n > 0 && tables[t]->ctx_size > 0);
  }
}

/* Rule: every default, applied as if given, passes its own check. */
static void test_defaults_apply(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
    void *ctx = calloc(1, tables[t]->ctx_size);
    assert_non_null(ctx);
    assert_int_equal(cli_opts_defaults(tables[t], ctx), CLI_OK);
    free(ctx);
  }
  serve_cli_t sc = {0};
  assert_int_equal(cli_opts_defaults(&serve_cli_options, &sc), CLI_OK);
  assert_int_equal(sc.opt.http_port, 8000);
  assert_int_equal(sc.opt.grpc_port, 8001);
  assert_true(sc.opt.grpc);
  assert_int_equal(sc.opt.policy, GS_SERVE_ROUND_ROBIN);
}

static const cli_opt_t *named(const cli_opts_t *spec, const char *name) {
  for (size_t i = 0; i < spec->n; i++)
    if (spec->opt[i].name && strcmp(spec->opt[i].name, name) == 0)
      return &spec->opt[i];
  fail_msg("no option --%s in %s", name, spec->verb);
  return NULL;
}

/* Rule: a value is checked against the declared range, both ends
 * included; a bad value changes nothing. */
static void test_range_checked(void **state) {
  (void)state;
  serve_cli_t sc = {0};
  const cli_opt_t *o = named(&serve_cli_options, "router-threads");
  assert_int_equal(cli_opts_take(&serve_cli_options, &sc, o, "16"), CLI_OK);
  assert_int_equal(sc.opt.router_threads, 16);
  assert_int_equal(cli_opts_take(&serve_cli_options, &sc, o, "17"), CLI_USAGE);
  assert_int_equal(cli_opts_take(&serve_cli_options, &sc, o, "0"), CLI_USAGE);
  assert_int_equal(cli_opts_take(&serve_cli_options, &sc, o, "1x"), CLI_USAGE);
  assert_int_equal(sc.opt.router_threads, 16);
  o = named(&serve_cli_options, "policy");
  assert_int_equal(cli_opts_take(&serve_cli_options, &sc, o, "least_request"),
                   CLI_OK);
  assert_int_equal(sc.opt.policy, GS_SERVE_LEAST_REQUEST);
  assert_int_equal(cli_opts_take(&serve_cli_options, &sc, o, "random"),
                   CLI_USAGE);
}

/* Rule: a serve.yaml key is its option's long name with _ for -; options
 * that only make sense on the command line have none. */
static void test_yaml_keys(void **state) {
  (void)state;
  const cli_opt_t *o = cli_opts_key(&serve_cli_options, "router_threads");
  assert_non_null(o);
  assert_string_equal(o->name, "router-threads");
  assert_non_null(cli_opts_key(&serve_cli_options, "model_repository"));
  assert_null(cli_opts_key(&serve_cli_options, "router-threads"));
  assert_null(cli_opts_key(&serve_cli_options, "file"));
  assert_null(cli_opts_key(&serve_cli_options, "status"));
  assert_null(cli_opts_key(&serve_cli_options, "add"));
}

/* Rule: the usage lists every option of the table. */
static void test_usage_lists_every_option(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    cli_opts_usage(tables[t], f);
    fclose(f);
    for (size_t i = 0; i < tables[t]->n; i++) {
      char want[80];
      const cli_opt_t *o = &tables[t]->opt[i];
      if (o->name)
        snprintf(want, sizeof want, "--%s", o->name);
      else
        snprintf(want, sizeof want, "  -%c ", o->short_name);
      if (!strstr(text, want))
        fail_msg("%s usage lacks %s", tables[t]->verb, want);
    }
    free(text);
  }
}

static int dummy_parse(void *ctx, const cli_opts_t *spec, const cli_opt_t *o,
                       const char *val) {
  (void)ctx, (void)spec, (void)o, (void)val;
  return CLI_OK;
}

static void expect_broken(const cli_opt_t *opt, size_t n, const char *why) {
  cli_opts_t spec = {.verb = "t", .opt = opt, .n = n, .ctx_size = 64};
  char msg[256] = "";
  assert_int_not_equal(cli_opts_check(&spec, msg, sizeof msg), 0);
  if (!strstr(msg, why))
    fail_msg("expected '%s', got '%s'", why, msg);
}

/* Rule: the checker refuses each kind of broken table. */
static void test_checker_catches(void **state) {
  (void)state;
  const cli_opt_t dup[] = {{.name = "a", .type = CLI_OPT_FLAG, .help = "x"},
                           {.name = "a", .type = CLI_OPT_FLAG, .help = "y"}};
  expect_broken(dup, 2, "declared twice");
  const cli_opt_t dup_short[] = {
      {.name = "a", .short_name = 'a', .type = CLI_OPT_FLAG, .help = "x"},
      {.name = "b", .short_name = 'a', .type = CLI_OPT_FLAG, .help = "y"}};
  expect_broken(dup_short, 2, "short option used twice");
  const cli_opt_t no_help[] = {{.name = "a", .type = CLI_OPT_FLAG}};
  expect_broken(no_help, 1, "no help");
  const cli_opt_t def_high[] = {{.name = "a",
                                 .type = CLI_OPT_UINT,
                                 .min = 1,
                                 .max = 16,
                                 .def = "17",
                                 .help = "x"}};
  expect_broken(def_high, 1, "default out of range");
  const cli_opt_t def_low[] = {{.name = "a",
                                .type = CLI_OPT_UINT,
                                .min = 1,
                                .max = 16,
                                .def = "0",
                                .help = "x"}};
  expect_broken(def_low, 1, "default out of range");
  const cli_opt_t def_choice[] = {{.name = "a",
                                   .type = CLI_OPT_CHOICE,
                                   .choices = {"x", "y"},
                                   .def = "z",
                                   .help = "x"}};
  expect_broken(def_choice, 1, "default out of range");
  const cli_opt_t key[] = {
      {.name = "a-b", .type = CLI_OPT_STRING, .key = "a-b", .help = "x"}};
  expect_broken(key, 1, "YAML key is not the option's name");
  const cli_opt_t custom[] = {
      {.name = "a", .type = CLI_OPT_CUSTOM, .help = "x"}};
  expect_broken(custom, 1, "custom without a parse function");
  const cli_opt_t good[] = {
      {.name = "a-b",
       .type = CLI_OPT_UINT,
       .max = 9,
       .def = "9",
       .key = "a_b",
       .help = "x"},
      {.name = "c", .type = CLI_OPT_CUSTOM, .parse = dummy_parse, .help = "y"}};
  cli_opts_t spec = {.verb = "t", .opt = good, .n = 2, .ctx_size = 64};
  char msg[256] = "";
  assert_int_equal(cli_opts_check(&spec, msg, sizeof msg), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tables_consistent),
      cmocka_unit_test(test_defaults_apply),
      cmocka_unit_test(test_range_checked),
      cmocka_unit_test(test_yaml_keys),
      cmocka_unit_test(test_usage_lists_every_option),
      cmocka_unit_test(test_checker_catches),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
