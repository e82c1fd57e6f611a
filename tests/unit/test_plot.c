/* SVG chart rules: the document is standalone, well-formed XML; user text is
 * escaped and shown; a log2 axis is labelled 1 2 4 ... as integers; values
 * map monotonically to pixels; y starts at 0; a budget stays visible even
 * when latency runs far past it; bad input is GS_EINVAL naming the chart and
 * series; the file is replaced atomically. */
#include <math.h>
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

#include "gpuslice/plot.h"
#include "test_tmpdir.h"

#define MAX_ITEMS 512

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  return test_tmpdir_make(tmpdir, sizeof tmpdir, "plot");
}

static int teardown(void **state) {
  (void)state;
  return test_tmpdir_remove(tmpdir);
}

/* A perf run as `gpuslice perf` measures it: concurrency 1..256. */
static const double conc[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
static const double tput_1[] = {180,  340,  610,  980, 1150,
                                1190, 1200, 1205, 1210};
static const double tput_7[] = {170,  330,  650,  1250, 2300,
                                3900, 5600, 6300, 6500};
static const double p99_1[] = {6, 7, 9, 12, 21, 40, 80, 160, 320};
static const double p99_7[] = {6.5, 7, 7.5, 8, 10, 13, 19, 33, 61};

static const gs_plot_series_t tput[] = {
    {"1 instance", 9, conc, tput_1},
    {"7 instances", 9, conc, tput_7},
};
static const gs_plot_series_t lat[] = {
    {"1 instance", 9, conc, p99_1},
    {"7 instances", 9, conc, p99_7},
};
static const gs_plot_chart_t perf_charts[] = {
    {"Throughput", "concurrency (requests in flight)", "throughput (infer/s)",
     true, 2, tput, NAN, NULL},
    {"p99 latency", "concurrency (requests in flight)", "p99 latency (ms)",
     true, 2, lat, 50, "budget 50 ms"},
};

static char *render(const gs_plot_chart_t *charts, size_t n,
                    const char *title) {
  char *svg = NULL;
  size_t len = 0;
  gs_error_t err;
  gs_error_clear(&err);
  assert_int_equal(gs_plot_svg(charts, n, title, &svg, &len, &err), GS_OK);
  assert_non_null(svg);
  assert_int_equal(strlen(svg), len);
  return svg;
}

/* Contents of every <text> element, in document order. */
static size_t text_items(const char *svg, char items[][64], size_t max) {
  size_t n = 0;
  for (const char *p = svg; n < max && (p = strstr(p, "<text")); n++) {
    const char *start = strchr(p, '>') + 1, *end = strstr(start, "</text>");
    size_t len = (size_t)(end - start) < 63 ? (size_t)(end - start) : 63;
    memcpy(items[n], start, len);
    items[n][len] = '\0';
    p = end;
  }
  return n;
}

static bool has_text(const char *svg, const char *text) {
  static char items[MAX_ITEMS][64];
  size_t n = text_items(svg, items, MAX_ITEMS);
  for (size_t i = 0; i < n; i++)
    if (strcmp(items[i], text) == 0)
      return true;
  return false;
}

/* Pixel coordinates of the first polyline (the first series' line). */
static size_t polyline_points(const char *svg, double *xs, double *ys,
                              size_t max) {
  const char *p = strstr(svg, "<polyline");
  assert_non_null(p);
  p = strstr(p, "points=\"");
  assert_non_null(p);
  p += strlen("points=\"");
  size_t n = 0;
  int used;
  while (n < max && sscanf(p, "%lf,%lf%n", &xs[n], &ys[n], &used) == 2) {
    p += used;
    n++;
  }
  return n;
}

static void standalone_svg_document(void **state) {
  (void)state;
  char *svg = render(perf_charts, 2, "resnet50 on A100");
  assert_true(strncmp(svg, "<?xml", 5) == 0);
  assert_non_null(strstr(svg, "xmlns=\"http://www.w3.org/2000/svg\""));
  assert_non_null(strstr(svg, "viewBox=\"0 0 "));
  assert_non_null(strstr(svg, " width=\""));
  assert_non_null(strstr(svg, " height=\""));
  assert_non_null(strstr(svg, "fill=\"#ffffff\""));
  assert_non_null(strstr(svg, "sans-serif"));
  assert_true(has_text(svg, "resnet50 on A100"));
  assert_true(has_text(svg, "Throughput"));
  assert_true(has_text(svg, "throughput (infer/s)"));
  assert_true(has_text(svg, "concurrency (requests in flight)"));
  assert_true(has_text(svg, "1 instance"));
  assert_true(has_text(svg, "7 instances"));
  assert_true(has_text(svg, "budget 50 ms"));
  assert_non_null(strstr(svg, "stroke-dasharray")); /* the budget line */
  free(svg);
}

/* Labels come from users: markup in them must stay text. */
static void user_text_is_escaped(void **state) {
  (void)state;
  static const double x[] = {1, 2}, y[] = {3, 4};
  gs_plot_series_t s = {"a<b & \"c\"", 2, x, y};
  gs_plot_chart_t c = {"<T&>", "x & y", "y<1>", false, 1, &s, 3, "b<&>"};
  char *svg = render(&c, 1, "t<&");
  assert_null(strstr(svg, "a<b"));
  assert_null(strstr(svg, "<T"));
  assert_null(strstr(svg, "x & y"));
  assert_null(strstr(svg, "b<&"));
  assert_null(strstr(svg, "t<&"));
  assert_true(has_text(svg, "a&#60;b &#38; &#34;c&#34;"));
  assert_true(has_text(svg, "b&#60;&#38;&#62;"));
  free(svg);
}

static void log2_axis_labels_powers_of_two(void **state) {
  (void)state;
  static char items[MAX_ITEMS][64];
  char *svg = render(&perf_charts[0], 1, NULL);
  size_t n = text_items(svg, items, MAX_ITEMS);
  static const char *const want[] = {"1",  "2",  "4",   "8",  "16",
                                     "32", "64", "128", "256"};
  size_t found = 0;
  for (size_t i = 0; i < n && found < 9; i++)
    found = strcmp(items[i], want[found]) == 0 ? found + 1 : 0;
  assert_int_equal(found, 9);
  free(svg);
}

/* Tick labels stay short (1.2k, not 1200) and throughput starts at 0. */
static void compact_ticks_from_zero(void **state) {
  (void)state;
  static char items[MAX_ITEMS][64];
  char *svg = render(&perf_charts[0], 1, NULL);
  size_t n = text_items(svg, items, MAX_ITEMS);
  bool zero = false;
  for (size_t i = 0; i < n; i++) {
    if (strspn(items[i], "0123456789.") == strlen(items[i])) /* a number */
      assert_true(atof(items[i]) < 1000); /* bigger ones carry k, M */
    zero = zero || strcmp(items[i], "0") == 0;
  }
  assert_true(zero);
  assert_true(has_text(svg, "6k") || has_text(svg, "6.5k") ||
              has_text(svg, "7k"));
  free(svg);
}

static void monotonic_positions(void **state) {
  (void)state;
  static const double x[] = {1, 3, 10, 100}, y[] = {0, 0.5, 7, 7.5};
  double px[4], py[4];
  for (int log_x = 0; log_x < 2; log_x++) {
    gs_plot_series_t s = {"s", 4, x, y};
    gs_plot_chart_t c = {"t", "x", "y", log_x, 1, &s, NAN, NULL};
    char *svg = render(&c, 1, NULL);
    assert_int_equal(polyline_points(svg, px, py, 4), 4);
    for (int i = 1; i < 4; i++) {
      assert_true(px[i] > px[i - 1]);
      assert_true(py[i] < py[i - 1]); /* SVG y grows downwards */
    }
    free(svg);
  }
}

/* Latency at 100x the budget must not squash the budget line onto the
 * x axis: it keeps a clear share of the height. */
static void budget_visible_when_exceeded(void **state) {
  (void)state;
  static const double x[] = {1, 2, 4, 8}, y[] = {0, 50, 500, 5000};
  gs_plot_series_t s = {"1 instance", 4, x, y};
  gs_plot_chart_t c = {"p99", "c", "ms", true, 1, &s, 50, "budget 50 ms"};
  double px[4], py[4];
  char *svg = render(&c, 1, NULL);
  assert_int_equal(polyline_points(svg, px, py, 4), 4);
  double zero_to_budget = py[0] - py[1];
  assert_true(zero_to_budget >= 40); /* of 400 px */
  assert_non_null(strstr(svg, "off scale"));
  free(svg);
}

static void assert_invalid(const gs_plot_chart_t *c, size_t n,
                           const char *names1, const char *names2) {
  char *svg = (char *)"untouched";
  gs_error_t err;
  gs_error_clear(&err);
  assert_int_equal(gs_plot_svg(c, n, NULL, &svg, NULL, &err), GS_EINVAL);
  assert_int_equal(err.code, GS_EINVAL);
  assert_null(svg);
  if (names1)
    assert_non_null(strstr(err.msg, names1));
  if (names2)
    assert_non_null(strstr(err.msg, names2));
}

static void invalid_input_named(void **state) {
  (void)state;
  static const double x[] = {1, 2}, y[] = {3, 4}, nan_y[] = {3, NAN},
                      inf_y[] = {INFINITY, 1}, zero_x[] = {0, 2};
  assert_invalid(NULL, 0, NULL, NULL);
  assert_invalid(perf_charts, 0, NULL, NULL);

  gs_plot_series_t s[2] = {{"ok", 2, x, y}, {"empty one", 0, x, y}};
  gs_plot_chart_t c = {"Latency", "c", "ms", false, 2, s, NAN, NULL};
  assert_invalid(&c, 1, "Latency", "empty one");

  s[1] = (gs_plot_series_t){"has nan", 2, x, nan_y};
  assert_invalid(&c, 1, "Latency", "has nan");

  s[1] = (gs_plot_series_t){"has inf", 2, x, inf_y};
  assert_invalid(&c, 1, "Latency", "has inf");

  s[1] = (gs_plot_series_t){"x zero", 2, zero_x, y};
  c.log_x = false; /* zero is fine on a linear axis */
  char *svg = render(&c, 1, NULL);
  free(svg);
  c.log_x = true;
  assert_invalid(&c, 1, "Latency", "x zero");

  c.n_series = 0;
  assert_invalid(&c, 1, "Latency", NULL);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void write_replaces_file(void **state) {
  (void)state;
  char path[300], tmp[310];
  snprintf(path, sizeof path, "%s/perf.svg", tmpdir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("old", f);
  fclose(f);
  gs_error_t err;
  gs_error_clear(&err);
  assert_int_equal(gs_plot_svg_write(path, perf_charts, 2, "t", &err), GS_OK);
  assert_true(strncmp(slurp(path), "<?xml", 5) == 0);
  assert_int_equal(access(tmp, F_OK), -1); /* no temporary left behind */

  snprintf(path, sizeof path, "%s/missing/dir/perf.svg", tmpdir);
  assert_int_not_equal(gs_plot_svg_write(path, perf_charts, 2, "t", &err),
                       GS_OK);
  assert_non_null(strstr(err.msg, path));

  /* Bad input names the file it was meant for, and writes nothing. */
  snprintf(path, sizeof path, "%s/bad.svg", tmpdir);
  assert_int_equal(gs_plot_svg_write(path, perf_charts, 0, "t", &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, path));
  assert_int_equal(access(path, F_OK), -1);
}

/* An XML parser, not string matching, is the judge of well-formedness. A
 * path in GS_PLOT_EXAMPLE also gets a copy, for looking at. */
static void xml_parser_accepts(void **state) {
  (void)state;
  if (system("command -v python3 >/dev/null 2>&1") != 0) {
    print_message("no python3 to parse the SVG with: skipped\n");
    skip();
  }
  static const double x[] = {1, 2, 4}, y[] = {1, 2, 3};
  gs_plot_series_t odd = {"bad utf-8 \xC3( and \x01 ctl, ok: caf\xC3\xA9", 3, x,
                          y};
  gs_plot_chart_t c = {"A <&> B", "x", "y", true, 1, &odd, 2, "b &"};
  const char *example = getenv("GS_PLOT_EXAMPLE");
  char path[300], cmd[700];
  gs_error_t err;
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/sample%d.svg", tmpdir, i);
    int rc = i == 2 ? gs_plot_svg_write(path, &c, 1, "odd", &err)
                    : gs_plot_svg_write(path, perf_charts, 2 - (size_t)i,
                                        "resnet50 & friends", &err);
    assert_int_equal(rc, GS_OK);
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import xml.dom.minidom,sys; "
             "xml.dom.minidom.parse(sys.argv[1])\" '%s'",
             path);
    assert_int_equal(system(cmd), 0);
  }
  if (example)
    assert_int_equal(gs_plot_svg_write(example, perf_charts, 2,
                                       "resnet50 on one A100: 1 vs 7 MIG "
                                       "instances",
                                       &err),
                     GS_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(standalone_svg_document),
      cmocka_unit_test(user_text_is_escaped),
      cmocka_unit_test(log2_axis_labels_powers_of_two),
      cmocka_unit_test(compact_ticks_from_zero),
      cmocka_unit_test(monotonic_positions),
      cmocka_unit_test(budget_visible_when_exceeded),
      cmocka_unit_test(invalid_input_named),
      cmocka_unit_test(write_replaces_file),
      cmocka_unit_test(xml_parser_accepts),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
