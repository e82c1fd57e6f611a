/* Runs ONNX backend node tests (a model.onnx beside test_data_set_N/ dirs
 * of input_K.pb and output_K.pb TensorProtos) through the engine, and says
 * for each test "PASS name", "SKIP name (why)" or "FAIL name: why".
 *
 * Arguments are test directories, or directories of them (Debian's
 * libonnx-testdata: /usr/share/libonnx-testdata/data/node). In a directory
 * of tests, a test is run when its name says it tests a supported op
 * (test_<op>, test_<op>_...) or when its model loads (a composite of
 * supported ops); the tests of other ops are counted, not listed. A named
 * test whose model uses an op, attribute or type the engine does not
 * support is skipped with the engine's reason. Outputs must match as
 * ONNX's backend tests require: |got - want| <= 1e-7 + 1e-3 * |want|.
 *
 * --provider cpu|cuda|auto (default cpu) and --precision fp32|fp16 go to
 * gs_session_options_t. With cuda, a model the CUDA provider refuses at
 * session creation (it checks every node before it loads any GPU library)
 * is a skip with the provider's reason, named or not; a provider that
 * cannot start here (no GPU, driver, library or kernels) fails every test
 * it would have run, after one line that says why. FP32 keeps the
 * tolerance above; FP16 (computed in half precision, 11-bit significand)
 * is held to |got - want| <= 1e-2 + 1e-2 * |want|.
 *
 * A skip is a failure unless it is expected:
 *   --no-skip           every skip fails;
 *   --expected-skips F  a skip fails unless F lists the test (lines of
 *                       "name  reason", '#' comments); a listed test that
 *                       passes fails too (the entry is stale: left there it
 *                       would hide the op regressing to unsupported), and
 *                       listed tests that were not run are printed; a
 *                       test whose listed reason starts "differs:" runs,
 *                       and its mismatch counts as that expected skip.
 * Without either, skips only count as skips.
 * Exit 0 when nothing failed, 1 otherwise (2: bad arguments or list), 77
 * when no tests were found. */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/engine_int.h"

#define RTOL 1e-3
#define ATOL 1e-7
#define RTOL_FP16 1e-2
#define ATOL_FP16 1e-2
#define MAX_PB_BYTES ((size_t)256 << 20)
#define MAX_TENSORS 64

#define MAX_EXPECTED 1024
/* An expected-skip reason that starts so lets its test run and differ
 * (test data that disagrees with the ONNX spec or ONNX Runtime). */
#define KNOWN "differs:"

#define MAX_LIST_LINE 1024

typedef struct {
  unsigned passed, skipped, failed, other;
} tally_t;

/* One entry of the expected-skip list. */
typedef struct {
  char *name, *reason;
  unsigned line;
  bool seen;
} expected_t;

static struct {
  const char *path; /* NULL: no list */
  expected_t e[MAX_EXPECTED];
  unsigned n;
} skips;

static bool no_skip;
static gs_session_options_t session_opts;
/* Sessions per provider they resolved to (AUTO tells which it took). */
static unsigned on_provider[GS_PROVIDER_CUDA + 1];

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* test_<op> or test_<op>_..., op lowercased. */
static bool names_supported_op(const char *test) {
  if (strncmp(test, "test_", 5) != 0)
    return false;
  for (size_t i = 0; i < gs_engine_op_count(); i++) {
    const char *op = gs_engine_op_name(i), *t = test + 5;
    while (*op && tolower((unsigned char)*op) == *t)
      op++, t++;
    if (!*op && (*t == '\0' || *t == '_'))
      return true;
  }
  return false;
}

static int read_tensor(const char *path, gs__tensor_t *t, gs_error_t *err) {
  uint8_t *data = NULL;
  size_t size = 0;
  char *name = NULL;
  int rc = gs__read_file(path, MAX_PB_BYTES, &data, &size, err);
  if (rc == GS_OK)
    rc = gs__tensor_decode(t, &name, data, size, MAX_PB_BYTES, err);
  free(data);
  free(name);
  return rc;
}

/* BYTES outputs: element by element, naming the first that differs. */
static bool bytes_equal(const gs__tensor_t *want, const gs_tensor_t *got,
                        char *why, size_t size) {
  const uint8_t *w = want->data, *g = got->data;
  size_t at_w = 0, at_g = 0;
  for (size_t i = 0; i < want->count; i++) {
    uint32_t lw, lg;
    if (got->bytes - at_g < 4) {
      snprintf(why, size, "element %zu is missing", i);
      return false;
    }
    memcpy(&lw, w + at_w, 4);
    memcpy(&lg, g + at_g, 4);
    if (lg > got->bytes - at_g - 4 || lw != lg ||
        memcmp(w + at_w + 4, g + at_g + 4, lw)) {
      snprintf(why, size, "element %zu is '%.*s', expected '%.*s'", i,
               (int)(lg > 64 ? 64 : lg), (const char *)g + at_g + 4,
               (int)(lw > 64 ? 64 : lw), (const char *)w + at_w + 4);
      return false;
    }
    at_w += 4 + lw;
    at_g += 4 + lg;
  }
  return true;
}

static bool close_enough(const gs__tensor_t *want, const gs_tensor_t *got,
                         bool fp16, char *why, size_t size) {
  double rtol = fp16 ? RTOL_FP16 : RTOL, atol = fp16 ? ATOL_FP16 : ATOL;
  gs__tensor_t bf16;
  if (want->dtype == GS_DTYPE_UINT16 && got->dtype == GS_DTYPE_BF16) {
    bf16 = *want; /* BFLOAT16 stored as UINT16, as for the inputs */
    bf16.dtype = GS_DTYPE_BF16;
    want = &bf16;
  }
  if (want->dtype != got->dtype || want->rank != got->rank ||
      memcmp(want->dims, got->shape, want->rank * sizeof *want->dims)) {
    char ws[128], gs[128];
    snprintf(why, size, "output is %s %s, expected %s %s",
             gs_dtype_name(got->dtype),
             gs__dims_str(got->shape, got->rank, gs, sizeof gs),
             gs_dtype_name(want->dtype),
             gs__dims_str(want->dims, want->rank, ws, sizeof ws));
    return false;
  }
  if (want->dtype == GS_DTYPE_BYTES) /* strings: the same bytes */
    return bytes_equal(want, got, why, size);
  for (size_t i = 0; i < want->count; i++) {
    if (want->dtype == GS_DTYPE_FP32) {
      double w = ((const float *)want->data)[i];
      double g = ((const float *)got->data)[i];
      if ((isnan(w) && isnan(g)) || w == g ||
          fabs(g - w) <= atol + rtol * fabs(w))
        continue;
      snprintf(why, size, "element %zu is %.9g, expected %.9g", i, g, w);
      return false;
    }
    size_t es = gs_dtype_size(want->dtype);
    if (memcmp((const char *)want->data + i * es,
               (const char *)got->data + i * es, es) != 0) {
      snprintf(why, size, "element %zu differs", i);
      return false;
    }
  }
  return true;
}

/* Runs one test_data_set directory; false with a reason on a mismatch. */
static bool run_data_set(gs_session_t *s, const gs_model_t *m, const char *dir,
                         char *why, size_t size) {
  gs__tensor_t in[MAX_TENSORS], want;
  gs_tensor_t args[MAX_TENSORS];
  gs_error_t err;
  size_t n_in = 0;
  bool ok = true;
  char path[4096];
  for (; n_in < MAX_TENSORS && n_in < gs_model_input_count(m); n_in++) {
    if (snprintf(path, sizeof path, "%s/input_%zu.pb", dir, n_in) >=
            (int)sizeof path ||
        read_tensor(path, &in[n_in], &err) != GS_OK) {
      snprintf(why, size, "input_%zu.pb: %s", n_in, err.msg);
      ok = false;
      break;
    }
    /* ONNX's test data (before 1.14) stores BFLOAT16 as UINT16: same bits. */
    if (in[n_in].dtype == GS_DTYPE_UINT16 &&
        gs_model_input(m, n_in)->dtype == GS_DTYPE_BF16)
      in[n_in].dtype = GS_DTYPE_BF16;
    args[n_in] = (gs_tensor_t){
        .name = gs_model_input(m, n_in)->name,
        .dtype = in[n_in].dtype,
        .rank = in[n_in].rank,
        .data = in[n_in].data,
        .bytes = in[n_in].dtype == GS_DTYPE_BYTES
                     ? in[n_in].bytes
                     : in[n_in].count * gs_dtype_size(in[n_in].dtype)};
    memcpy(args[n_in].shape, in[n_in].dims, sizeof args[n_in].shape);
  }
  if (ok && gs_session_run(s, args, n_in, &err) != GS_OK) {
    snprintf(why, size, "run: %s", err.msg);
    ok = false;
  }
  for (size_t k = 0; ok && k < gs_model_output_count(m); k++) {
    if (snprintf(path, sizeof path, "%s/output_%zu.pb", dir, k) >=
            (int)sizeof path ||
        read_tensor(path, &want, &err) != GS_OK) {
      snprintf(why, size, "output_%zu.pb: %s", k, err.msg);
      ok = false;
      break;
    }
    ok = close_enough(&want, gs_session_output(s, k),
                      gs_session_precision(s) == GS_PRECISION_FP16, why, size);
    free(want.data);
  }
  for (size_t i = 0; i < n_in; i++)
    free(in[i].data);
  return ok;
}

/* 1 passed, 0 skipped (why says why), -1 failed (why says why); -2 not
 * run (an unnamed test whose model does not load). */
static int run_test(const char *dir, bool named, char *why, size_t size) {
  char path[4096];
  gs_error_t err;
  gs_model_t *m = NULL;
  gs_session_t *s = NULL;
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  int rc = gs_model_load_file(&m, path, NULL, &err);
  if (rc != GS_OK) {
    if (!named)
      return -2;
    /* The reason without the path and the list of supported ops. */
    char *msg = strstr(err.msg, "': ") ? strstr(err.msg, "': ") + 3 : err.msg;
    char *list = strstr(msg, "; the engine runs");
    if (list)
      *list = '\0';
    snprintf(why, size, "%s", msg);
    return rc == GS_EUNSUPPORTED ? 0 : -1;
  }
  int result = 1, sets = 0;
  rc = gs_session_create(&s, m, &session_opts, &err);
  if (rc == GS_EUNSUPPORTED && session_opts.provider == GS_PROVIDER_CUDA) {
    /* The provider refused a node, an input or an output by name. */
    snprintf(why, size, "%s", err.msg);
    result = 0;
  } else if (rc != GS_OK) {
    snprintf(why, size, "session (%s): %s",
             gs_provider_name(session_opts.provider), err.msg);
    result = -1;
  } else {
    on_provider[gs_session_provider(s)]++;
  }
  for (int i = 0; result == 1; i++, sets++) {
    snprintf(path, sizeof path, "%s/test_data_set_%d", dir, i);
    if (!is_dir(path))
      break;
    if (!run_data_set(s, m, path, why, size))
      result = -1;
  }
  if (result == 1 && sets == 0) {
    snprintf(why, size, "no test_data_set_0");
    result = -1;
  }
  gs_session_destroy(s);
  gs_model_destroy(m);
  return result;
}

static char *trim(char *p) {
  while (isspace((unsigned char)*p))
    p++;
  char *end = p + strlen(p);
  while (end > p && isspace((unsigned char)end[-1]))
    *--end = '\0';
  return p;
}

/* Reads the expected-skip list; false (after saying why) when it is bad. */
static bool load_skips(const char *path) {
  FILE *f = fopen(path, "r");
  char line[MAX_LIST_LINE];
  unsigned no = 0;
  bool ok = true;
  if (!f) {
    fprintf(stderr, "run_node_tests: cannot open %s\n", path);
    return false;
  }
  skips.path = path;
  while (ok && fgets(line, sizeof line, f)) {
    no++;
    if (!strchr(line, '\n') && !feof(f)) {
      fprintf(stderr, "%s:%u: line longer than %d bytes\n", path, no,
              MAX_LIST_LINE - 2);
      ok = false;
      break;
    }
    char *name = trim(line), *reason = name;
    if (*name == '\0' || *name == '#')
      continue;
    while (*reason && !isspace((unsigned char)*reason))
      reason++;
    if (*reason)
      *reason++ = '\0';
    reason = trim(reason);
    if (*reason == '\0') {
      fprintf(stderr, "%s:%u: '%s' needs a reason after its name\n", path, no,
              name);
      ok = false;
    } else if (skips.n == MAX_EXPECTED) {
      fprintf(stderr, "%s:%u: more than %d entries\n", path, no, MAX_EXPECTED);
      ok = false;
    }
    for (unsigned i = 0; ok && i < skips.n; i++)
      if (strcmp(skips.e[i].name, name) == 0) {
        fprintf(stderr, "%s:%u: '%s' is listed already on line %u\n", path, no,
                name, skips.e[i].line);
        ok = false;
      }
    if (ok)
      skips.e[skips.n++] =
          (expected_t){strdup(name), strdup(reason), no, false};
  }
  fclose(f);
  return ok;
}

static expected_t *expected_skip(const char *name) {
  for (unsigned i = 0; i < skips.n; i++)
    if (strcmp(skips.e[i].name, name) == 0)
      return &skips.e[i];
  return NULL;
}

/* Prints one test's outcome and counts it, judging skips by --no-skip or
 * the expected-skip list. */
static void report(tally_t *t, const char *name, bool named, int result,
                   const char *why) {
  expected_t *e = expected_skip(name);
  if (e && result != -2)
    e->seen = true;
  if (result == 1 && e) {
    printf("FAIL %s: passes, but %s:%u lists it as an expected skip (%s): "
           "remove the entry\n",
           name, skips.path, e->line, e->reason);
    t->failed++;
  } else if (result == 1) {
    printf("PASS %s%s\n", name, named ? "" : " (composite of supported ops)");
    t->passed++;
  } else if (result == 0 && no_skip) {
    printf("FAIL %s: skipped (%s)\n", name, why);
    t->failed++;
  } else if (result == 0 && skips.path && !e) {
    printf("FAIL %s: skipped (%s), and %s does not list it\n", name, why,
           skips.path);
    t->failed++;
  } else if (result == 0) {
    printf("SKIP %s (%s)%s%s\n", name, why, e ? "; expected: " : "",
           e ? e->reason : "");
    t->skipped++;
  } else if (result == -1 && e && !no_skip &&
             strncmp(e->reason, KNOWN, 8) == 0) {
    printf("SKIP %s (%s); expected: %s\n", name, why, e->reason);
    t->skipped++;
  } else if (result == -1) {
    printf("FAIL %s: %s\n", name, why);
    t->failed++;
  } else {
    t->other++;
  }
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_tree(const char *root, tally_t *t) {
  DIR *d = opendir(root);
  char **names = NULL, path[4096], why[1200];
  size_t n = 0, cap = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 256;
      char **grown = realloc(names, cap * sizeof *names);
      if (!grown)
        break;
      names = grown;
    }
    names[n++] = strdup(e->d_name);
  }
  if (d)
    closedir(d);
  qsort(names, n, sizeof *names, name_cmp);
  for (size_t i = 0; i < n; i++) {
    bool named = names_supported_op(names[i]);
    snprintf(path, sizeof path, "%s/%s", root, names[i]);
    report(t, names[i], named, run_test(path, named, why, sizeof why), why);
    free(names[i]);
  }
  free(names);
}

static int usage(void) {
  fprintf(stderr, "usage: run_node_tests [--provider cpu|cuda|auto] "
                  "[--precision fp32|fp16] [--no-skip | --expected-skips "
                  "LIST] DIR...\n");
  return 2;
}

int main(int argc, char **argv) {
  tally_t t = {0};
  char model[4096], why[1200];
  gs_engine_set_threads(1, NULL);
  gs_session_options_default(&session_opts);
  session_opts.provider = GS_PROVIDER_CPU;
  session_opts.precision = GS_PRECISION_FP32;
  int first = 1;
  for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
    if (strcmp(argv[first], "--no-skip") == 0) {
      no_skip = true;
    } else if (strcmp(argv[first], "--provider") == 0 && first + 1 < argc) {
      const char *v = argv[++first];
      session_opts.provider = !strcmp(v, "cpu")    ? GS_PROVIDER_CPU
                              : !strcmp(v, "cuda") ? GS_PROVIDER_CUDA
                              : !strcmp(v, "auto") ? GS_PROVIDER_AUTO
                                                   : (gs_provider_t)-1;
      if ((int)session_opts.provider < 0)
        return usage();
    } else if (strcmp(argv[first], "--precision") == 0 && first + 1 < argc) {
      const char *v = argv[++first];
      if (!strcmp(v, "fp32"))
        session_opts.precision = GS_PRECISION_FP32;
      else if (!strcmp(v, "fp16"))
        session_opts.precision = GS_PRECISION_FP16;
      else
        return usage();
    } else if (strcmp(argv[first], "--expected-skips") == 0 &&
               first + 1 < argc) {
      if (!load_skips(argv[++first]))
        return 2;
    } else {
      return usage();
    }
  }
  if (session_opts.provider == GS_PROVIDER_CPU &&
      session_opts.precision == GS_PRECISION_FP16) {
    fprintf(stderr, "run_node_tests: the cpu provider computes in FP32 "
                    "only: --precision fp16 needs --provider cuda or auto\n");
    return 2;
  }
  if (session_opts.provider != GS_PROVIDER_CPU) {
    char line[1024];
    gs_error_t err = {0};
    if (gs_engine_cuda_describe(line, sizeof line, &err) == GS_OK)
      printf("provider %s, precision %s: %s\n",
             gs_provider_name(session_opts.provider),
             gs_precision_name(session_opts.precision), line);
    else
      printf("provider %s: no usable GPU here (%s)%s\n",
             gs_provider_name(session_opts.provider), err.msg,
             session_opts.provider == GS_PROVIDER_CUDA
                 ? ": every test the provider accepts fails"
                 : ": tests run on the cpu");
  }
  for (int i = first; i < argc; i++) {
    snprintf(model, sizeof model, "%s/model.onnx", argv[i]);
    if (is_file(model)) {
      const char *base = strrchr(argv[i], '/');
      base = base ? base + 1 : argv[i];
      report(&t, base, true, run_test(argv[i], true, why, sizeof why), why);
    } else if (is_dir(argv[i])) {
      run_tree(argv[i], &t);
    } else {
      printf("no node tests at %s (Debian: apt-get install "
             "libonnx-testdata)\n",
             argv[i]);
    }
  }
  bool ran = t.passed + t.skipped + t.failed + t.other > 0;
  for (unsigned i = 0; i < skips.n; i++) {
    if (ran && !skips.e[i].seen)
      printf("note: %s:%u lists %s, which was not among the tests run\n",
             skips.path, skips.e[i].line, skips.e[i].name);
    free(skips.e[i].name);
    free(skips.e[i].reason);
  }
  if (session_opts.provider == GS_PROVIDER_AUTO)
    printf("provider auto: %u sessions on cuda, %u on cpu\n",
           on_provider[GS_PROVIDER_CUDA], on_provider[GS_PROVIDER_CPU]);
  printf("%u passed, %u skipped%s, %u failed; %u tests of other ops not run\n",
         t.passed, t.skipped, skips.path && t.skipped ? " (all expected)" : "",
         t.failed, t.other);
  if (t.failed)
    return 1;
  return t.passed + t.skipped == 0 ? 77 : 0;
}
