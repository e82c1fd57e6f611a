/* Times the engine API on one model: gs_session_run on a batch, after
 * warm-up runs, each run timed alone; prints p50 and p99 latency and images
 * per second (bench/cpu_engine_bench.sh runs it beside onnxruntime). With
 * --input and --output it runs a given input and keeps the output, so that
 * tests/engine/test_models.sh can compare the engine with a reference. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpuslice/engine.h"

#define MAX_INPUTS 16
#define MAX_ITERS 1000000

typedef struct {
  const char *model, *input, *output;
  unsigned long batch, iters, warmup, threads;
  gs_provider_t provider;
  gs_precision_t precision;
  int csv;
} bench_args_t;

static const char usage_text[] =
    "usage: engine_bench --model PATH [--batch N] [--iters K]\n"
    "         [--warmup W] [--threads T] [--provider cpu|cuda|auto]\n"
    "         [--precision fp32|fp16] [--input FILE] [--output FILE]\n"
    "         [--csv]\n"
    "  Defaults: batch 1, iters 100, warmup 10, threads 1, provider\n"
    "  cpu, the provider's default precision. Inputs are random (FP32\n"
    "  in [-1, 1), other types zero); a variable leading dimension is\n"
    "  the batch.\n"
    "  --input FILE   the raw data of the model's only input (C order)\n"
    "  --output FILE  writes output 0's raw data after the last run\n"
    "  --csv          one line: csv,model,batch,threads,provider,\n"
    "                 precision,iters,p50_ms,p99_ms,mean_ms,images_per_s\n";

static int parse_count(const char *s, unsigned long min, unsigned long max,
                       unsigned long *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, bench_args_t *a) {
  static const struct option opts[] = {
      {"model", 1, 0, 'm'},     {"batch", 1, 0, 'b'},   {"iters", 1, 0, 'i'},
      {"warmup", 1, 0, 'w'},    {"threads", 1, 0, 't'}, {"provider", 1, 0, 'p'},
      {"precision", 1, 0, 'P'}, {"input", 1, 0, 'I'},   {"output", 1, 0, 'O'},
      {"csv", 0, 0, 'c'},       {"help", 0, 0, 'h'},    {0, 0, 0, 0}};
  *a = (bench_args_t){.batch = 1,
                      .iters = 100,
                      .warmup = 10,
                      .threads = 1,
                      .provider = GS_PROVIDER_CPU};
  int c, bad = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'm':
      a->model = optarg;
      break;
    case 'b':
      bad |= parse_count(optarg, 1, 1 << 20, &a->batch);
      break;
    case 'i':
      bad |= parse_count(optarg, 1, MAX_ITERS, &a->iters);
      break;
    case 'w':
      bad |= parse_count(optarg, 0, MAX_ITERS, &a->warmup);
      break;
    case 't':
      bad |= parse_count(optarg, 1, 1024, &a->threads);
      break;
    case 'p':
      if (!strcmp(optarg, "cpu"))
        a->provider = GS_PROVIDER_CPU;
      else if (!strcmp(optarg, "cuda"))
        a->provider = GS_PROVIDER_CUDA;
      else if (!strcmp(optarg, "auto"))
        a->provider = GS_PROVIDER_AUTO;
      else
        bad = -1;
      break;
    case 'P':
      if (!strcmp(optarg, "fp32"))
        a->precision = GS_PRECISION_FP32;
      else if (!strcmp(optarg, "fp16"))
        a->precision = GS_PRECISION_FP16;
      else
        bad = -1;
      break;
    case 'I':
      a->input = optarg;
      break;
    case 'O':
      a->output = optarg;
      break;
    case 'c':
      a->csv = 1;
      break;
    case 'h':
      fputs(usage_text, stdout);
      exit(0);
    default:
      bad = -1;
    }
  }
  if (bad || optind != argc || !a->model) {
    fputs(usage_text, stderr);
    return -1;
  }
  return 0;
}

/* Reads exactly size bytes of path into data. */
static int read_exact(const char *path, void *data, size_t size,
                      gs_error_t *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return gs_error_sys(err, errno, "cannot open %s", path);
  size_t got = fread(data, 1, size, f);
  int longer = fgetc(f) != EOF;
  fclose(f);
  if (got != size || longer)
    return gs_error_set(err, GS_EINVAL,
                        "%s must hold exactly %zu bytes, the input's size",
                        path, size);
  return GS_OK;
}

static int write_all(const char *path, const gs_tensor_t *t, gs_error_t *err) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return gs_error_sys(err, errno, "cannot create %s", path);
  size_t put = fwrite(t->data, 1, t->bytes, f);
  if (fclose(f) != 0 || put != t->bytes)
    return gs_error_sys(err, errno, "cannot write %s", path);
  return GS_OK;
}

/* in[i] for model input i: shape with the batch for a variable leading
 * dim, data allocated (the caller frees it) and filled. */
static int make_input(const gs_model_t *model, size_t i, const bench_args_t *a,
                      gs_tensor_t *in, gs_error_t *err) {
  const gs_tensor_info_t *info = gs_model_input(model, i);
  if (info->rank < 0)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "input '%s' has no declared shape", info->name);
  *in = (gs_tensor_t){
      .name = info->name, .dtype = info->dtype, .rank = (unsigned)info->rank};
  size_t n = 1;
  for (int d = 0; d < info->rank; d++) {
    int64_t v = info->shape[d] >= 0 ? info->shape[d]
                : d == 0            ? (int64_t)a->batch
                                    : -1;
    if (v < 0)
      return gs_error_set(err, GS_EUNSUPPORTED,
                          "input '%s': dimension %d is variable and not the "
                          "batch",
                          info->name, d);
    in->shape[d] = v;
    n *= (size_t)v;
  }
  in->bytes = n * gs_dtype_size(info->dtype);
  void *data = calloc(1, in->bytes ? in->bytes : 1);
  if (!data)
    return gs_error_set(err, GS_ENOMEM, "input '%s': %zu bytes", info->name,
                        in->bytes);
  in->data = data;
  if (a->input)
    return read_exact(a->input, data, in->bytes, err);
  if (info->dtype == GS_DTYPE_FP32) {
    unsigned seed = 12345;
    for (size_t k = 0; k < n; k++)
      ((float *)data)[k] = (float)rand_r(&seed) / ((float)RAND_MAX + 1) * 2 - 1;
  }
  return GS_OK;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* The nearest-rank percentile p (0..100) of sorted v. */
static double percentile(const double *v, size_t n, double p) {
  size_t rank = (size_t)(p / 100 * (double)n + 0.999999);
  return v[rank ? rank - 1 : 0];
}

static void report(const bench_args_t *a, double *ms, double total_ms) {
  qsort(ms, a->iters, sizeof *ms, cmp_double);
  double p50 = percentile(ms, a->iters, 50), p99 = percentile(ms, a->iters, 99);
  double mean = total_ms / (double)a->iters;
  double ips = (double)(a->batch * a->iters) / (total_ms / 1e3);
  if (a->csv) {
    printf("csv,%s,%lu,%lu,%s,%s,%lu,%.4f,%.4f,%.4f,%.1f\n", a->model, a->batch,
           a->threads, gs_provider_name(a->provider),
           gs_precision_name(a->precision), a->iters, p50, p99, mean, ips);
    return;
  }
  printf("%s: batch %lu, %lu threads, provider %s, precision %s, %lu runs\n",
         a->model, a->batch, a->threads, gs_provider_name(a->provider),
         gs_precision_name(a->precision), a->iters);
  printf("latency p50 %.4f ms  p99 %.4f ms  mean %.4f ms  %.1f images/s\n", p50,
         p99, mean, ips);
}

static int bench(const bench_args_t *a, gs_error_t *err) {
  gs_model_t *model = NULL;
  gs_session_t *session = NULL;
  gs_tensor_t in[MAX_INPUTS] = {0};
  size_t n_in = 0;
  gs_session_options_t opts;
  double total = 0;
  double *ms = calloc(a->iters, sizeof *ms);
  int rc = ms ? GS_OK : gs_error_set(err, GS_ENOMEM, "timings");
  if (rc == GS_OK)
    rc = gs_engine_set_threads((unsigned)a->threads, err);
  if (rc == GS_OK)
    rc = gs_model_load_file(&model, a->model, NULL, err);
  if (rc != GS_OK)
    goto out;
  n_in = gs_model_input_count(model);
  if (n_in > MAX_INPUTS || (a->input && n_in != 1)) {
    rc = gs_error_set(err, GS_EUNSUPPORTED, "%zu inputs (%s)", n_in,
                      a->input ? "--input needs exactly 1" : "at most 16");
    n_in = 0;
    goto out;
  }
  for (size_t i = 0; i < n_in && rc == GS_OK; i++)
    rc = make_input(model, i, a, &in[i], err);
  gs_session_options_default(&opts);
  opts.provider = a->provider;
  opts.precision = a->precision;
  if (rc == GS_OK)
    rc = gs_session_create(&session, model, &opts, err);
  for (unsigned long k = 0; k < a->warmup && rc == GS_OK; k++)
    rc = gs_session_run(session, in, n_in, err);
  for (unsigned long k = 0; k < a->iters && rc == GS_OK; k++) {
    double t0 = now_ms();
    rc = gs_session_run(session, in, n_in, err);
    ms[k] = now_ms() - t0;
    total += ms[k];
  }
  if (rc == GS_OK && a->output)
    rc = write_all(a->output, gs_session_output(session, 0), err);
  if (rc == GS_OK)
    report(a, ms, total);
out:
  for (size_t i = 0; i < n_in; i++)
    free((void *)in[i].data);
  gs_session_destroy(session);
  gs_model_destroy(model);
  free(ms);
  return rc;
}

int main(int argc, char **argv) {
  bench_args_t a;
  if (parse_args(argc, argv, &a) != 0)
    return 2;
  gs_error_t err = {0};
  int rc = bench(&a, &err);
  if (rc != GS_OK) {
    fprintf(stderr, "engine_bench: %s: %s\n", a.model, err.msg);
    return 1;
  }
  return 0;
}
