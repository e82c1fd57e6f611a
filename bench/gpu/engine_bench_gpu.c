/* The engine's GPU checks and benchmark, through the public engine API (and
 * the provider's profiling hook): check a model's outputs against reference
 * outputs computed elsewhere (PyTorch), time batch-1 latency and batch-N
 * throughput, and time each node of one eager run.
 *
 *   engine_bench_gpu check MODEL PREC INPUT.f32 REF.f32 N [MAX_REL [MISS]]
 *   engine_bench_gpu bench MODEL PREC N ITERS [--fp16-input] [--staged]
 *                          [--streams K] [--gap-us US [--spin]]
 *                          [--green G:S [--own-weights]] [--start-at T]
 *                          [--seconds D]
 *   engine_bench_gpu profile MODEL PREC N
 *   engine_bench_gpu nonfinite MODEL PREC INPUT.f32 [MAX_REL]
 *   engine_bench_gpu share MODEL PREC
 *   engine_bench_gpu reserve MODEL PREC N
 *
 * check and bench print on stderr, and profile on stdout with a line per
 * conv, what the provider chose for each conv ("convs: N fused, M
 * conv+epilogue, K cuBLASLt, P plain; ...").
 *
 * Environment: GS_GPU_WAIT (driver, spin, block) how every session waits
 * for its runs' ends (gs_gpu_wait_t; driver when unset).
 * Environment (bench): GS_MAX_PLAN_BYTES raises the 8 GiB plan limit;
 * GS_PROFILE_RANGE=1 brackets the device-only replay for ncu.
 *
 * PREC is fp32, fp16 or cpu (the CPU provider). bench's options: the input
 * as FP16, written once into the session's input buffer (--staged), and K
 * sessions of the model run on K threads at once (--streams; img/s is
 * theirs together). INPUT and REF hold raw
 * little-endian floats: N images in the model's input shape, N rows of
 * outputs. check exits 1 when the largest error, relative to the largest
 * reference magnitude, passes MAX_REL, or when top-1 classes differ: more
 * than MISS of them (a count, default 0), or with MISS "margin:R", any
 * whose two reference logits differ by more than 2 x R x max|ref|. An error
 * of R can swap only logits closer than that: with R PyTorch's own FP16
 * error, a swap it allows is rounding PyTorch's FP16 could make too (the
 * MAX_REL check alone would allow swaps up to 2 x MAX_REL). nonfinite runs a
 * batch of three made from INPUT's first image: a NaN in image 0, a +Inf
 * in image 1 (first element), image 2 untouched; it exits 1 when the run
 * fails or image 2's outputs are not finite or differ from the image run
 * alone by more than MAX_REL (default 1e-3 FP32, 1e-2 FP16) of their
 * largest magnitude. In FP16 the two runs differ where cuDNN picks other
 * algorithms for batch 3 than for batch 1, so engine_check passes twice
 * the FP16 check's limit (each run is within it of FP32). What rows 0 and 1
 * hold is printed, not judged: on the GPU, Relu and MaxPool use fmaxf and
 * cuDNN's NOT_PROPAGATE_NAN, which drop a NaN as the CPU's compares do. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/cuda_int.h"
#include "gpuslice/engine.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static float *read_floats(const char *path, size_t count) {
  FILE *f = fopen(path, "rb");
  float *p = malloc(count * sizeof *p);
  if (!f || !p || fread(p, sizeof *p, count, f) != count) {
    fprintf(stderr, "cannot read %zu floats from %s\n", count, path);
    exit(2);
  }
  fclose(f);
  return p;
}

typedef struct {
  const char *path;
  gs_model_t *model;
  gs_session_t *s;
  gs_session_options_t opts;
  gs_tensor_t in;
  size_t per_image;
} ctx_t;

/* GS_PROFILE_RANGE=1: the device-only replay runs between cuProfilerStart
 * and cuProfilerStop, so `ncu --profile-from-start off` profiles the
 * model's kernels only, not the algorithm timing at load. */
static void profiler_range(const char *call) {
  if (!getenv("GS_PROFILE_RANGE"))
    return;
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  int (*fn)(void) = NULL;
  if (lib)
    *(void **)&fn = dlsym(lib, call);
  int r = fn ? fn() : -1;
  fprintf(stderr, "engine_bench_gpu: %s: %d\n", call, r);
}

static void open_session(ctx_t *c, const char *path, const char *prec,
                         int64_t n) {
  gs_error_t err = {0};
  double t0 = now_ms();
  c->path = path;
  if (gs_model_load_file(&c->model, path, NULL, &err)) {
    fprintf(stderr, "load %s: %s\n", path, err.msg);
    exit(2);
  }
  gs_session_options_t o;
  gs_session_options_default(&o);
  o.max_plan_bytes = (size_t)8 << 30;
  const char *plan = getenv("GS_MAX_PLAN_BYTES"); /* a bench tool's knob */
  if (plan && *plan)
    o.max_plan_bytes = (size_t)strtoull(plan, NULL, 10);
  o.provider = strcmp(prec, "cpu") ? GS_PROVIDER_CUDA : GS_PROVIDER_CPU;
  const char *wait = getenv("GS_GPU_WAIT"); /* another bench tool's knob */
  if (wait && *wait &&
      gs_gpu_wait_parse(wait, "GS_GPU_WAIT", &o.gpu_wait, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    exit(2);
  }
  o.precision = !strcmp(prec, "fp32")   ? GS_PRECISION_FP32
                : !strcmp(prec, "fp16") ? GS_PRECISION_FP16
                                        : GS_PRECISION_DEFAULT;
  double t1 = now_ms();
  c->opts = o;
  if (gs_session_create(&c->s, c->model, &o, &err)) {
    fprintf(stderr, "session (%s): %s\n", prec, err.msg);
    exit(2);
  }
  double t2 = now_ms();
  const gs_tensor_info_t *info = gs_model_input(c->model, 0);
  memset(&c->in, 0, sizeof c->in);
  c->in.name = info->name;
  c->in.dtype = GS_DTYPE_FP32;
  c->in.rank = (unsigned)info->rank;
  c->per_image = 1;
  for (int d = 0; d < info->rank; d++) {
    c->in.shape[d] = d == 0 ? n : info->shape[d];
    if (d)
      c->per_image *= (size_t)info->shape[d];
  }
  c->in.bytes = c->per_image * (size_t)n * sizeof(float);
  fprintf(stderr, "%s: loaded in %.0f ms, session %s/%s in %.0f ms\n", path,
          t1 - t0, gs_provider_name(gs_session_provider(c->s)),
          gs_precision_name(gs_session_precision(c->s)), t2 - t1);
}

static void run_or_die(ctx_t *c) {
  gs_error_t err = {0};
  if (gs_session_run(c->s, &c->in, 1, &err)) {
    fprintf(stderr, "run: %s\n", err.msg);
    exit(2);
  }
}

/* What each conv runs as (the provider's choice at the first run): the
 * summary line on stderr, or (full) every conv's line on stdout too;
 * nothing for the CPU provider. */
static void conv_report(const ctx_t *c, bool full) {
  static char buf[64 << 10];
  gs_error_t err = {0};
  if (gs__session_gpu_conv_report(c->s, buf, sizeof buf, &err) != GS_OK)
    return;
  char *nl = strchr(buf, '\n');
  fprintf(stderr, "%.*s\n", nl ? (int)(nl - buf) : (int)strlen(buf), buf);
  if (full)
    fputs(buf, stdout);
}

static int check(int argc, char **argv) {
  if (argc < 7)
    return 2;
  int64_t n = atoll(argv[6]);
  double max_rel = argc > 7 ? atof(argv[7]) : 1e-3;
  bool by_margin = argc > 8 && !strncmp(argv[8], "margin:", 7);
  int max_miss = argc > 8 && !by_margin ? atoi(argv[8]) : 0;
  double swap_rel = by_margin ? atof(argv[8] + 7) : 0;
  ctx_t c;
  open_session(&c, argv[2], argv[3], n);
  float *x = read_floats(argv[4], c.per_image * (size_t)n);
  c.in.data = x;
  double t0 = now_ms();
  run_or_die(&c); /* the first run plans, picks algorithms and captures */
  double t1 = now_ms();
  conv_report(&c, false);
  run_or_die(&c);
  const gs_tensor_t *y = gs_session_output(c.s, 0);
  size_t cls = y->bytes / sizeof(float) / (size_t)n;
  float *ref = read_floats(argv[5], cls * (size_t)n);
  const float *got = y->data;
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < cls * (size_t)n; i++)
    max_ref = fmax(max_ref, fabs(ref[i]));
  /* Two logits closer than this may swap within the error limit. */
  double swap_width = 2 * swap_rel * max_ref;
  int top1_same = 0, wide_swaps = 0;
  double min_margin = INFINITY;
  for (int64_t b = 0; b < n; b++) {
    size_t ar = 0, ag = 0, second = 0;
    for (size_t k = 0; k < cls; k++) {
      size_t i = (size_t)b * cls + k;
      max_diff = fmax(max_diff, fabs((double)got[i] - ref[i]));
      if (ref[i] > ref[(size_t)b * cls + ar])
        ar = k;
      if (got[i] > got[(size_t)b * cls + ag])
        ag = k;
    }
    for (size_t k = 0; k < cls; k++)
      if (k != ar && (second == ar ||
                      ref[(size_t)b * cls + k] > ref[(size_t)b * cls + second]))
        second = k;
    min_margin = fmin(min_margin, ref[(size_t)b * cls + ar] -
                                      ref[(size_t)b * cls + second]);
    top1_same += ar == ag;
    wide_swaps +=
        ar != ag &&
        ref[(size_t)b * cls + ar] - ref[(size_t)b * cls + ag] > swap_width;
  }
  double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
  bool top1_ok = by_margin ? wide_swaps == 0 : n - top1_same <= max_miss;
  bool ok = top1_ok && rel <= max_rel;
  char top1_limit[96];
  if (by_margin)
    snprintf(top1_limit, sizeof top1_limit,
             "top-1 swaps only of logits within %.3g (%d wider)", swap_width,
             wide_swaps);
  else
    snprintf(top1_limit, sizeof top1_limit, "%d top-1 differences", max_miss);
  printf("check %s batch %lld (wait %s): top-1 %d/%lld same, max |diff| "
         "%.3g, max |ref| %.3g, rel %.3g (limits: rel %.3g, %s), "
         "smallest top-1 margin %.3g, first run %.0f ms: %s\n",
         argv[3], (long long)n, gs_gpu_wait_name(c.opts.gpu_wait), top1_same,
         (long long)n, max_diff, max_ref, rel, max_rel, top1_limit, min_margin,
         t1 - t0, ok ? "PASS" : "FAIL");
  gs_session_destroy(c.s);
  gs_model_destroy(c.model);
  free(x);
  free(ref);
  return ok ? 0 : 1;
}

/* Round to nearest even; the bench's inputs are small normal numbers. */
static uint16_t float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint32_t sign = (x >> 16) & 0x8000;
  int exp = (int)((x >> 23) & 0xff) - 127 + 15;
  uint32_t man = x & 0x7fffff;
  if (exp <= 0)
    return (uint16_t)sign; /* flush tiny values */
  if (exp >= 31)
    return (uint16_t)(sign | 0x7c00);
  uint32_t h = sign | (uint32_t)exp << 10 | man >> 13, rest = man & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
    h++;
  return (uint16_t)h;
}

enum { MAX_THREADS = 32 }; /* bench's sessions in all */

typedef struct {
  gs_session_t *s;
  gs_tensor_t in;
  int iters;
  double *t;
  const char *fail;
  pthread_barrier_t *warm; /* every thread warmed up: the timing starts */
  double t_start, t_end;   /* the timed loop's, after the barrier */
  int gap_us;              /* pause between runs (0: back to back) */
  bool gap_spin;           /* the pause busy-waits instead of sleeping */
  double start_at;         /* CLOCK_REALTIME seconds to start at (0: now) */
  double seconds;          /* run this long, at most iters runs (0: iters) */
  int done;                /* timed runs made */
  double late;             /* seconds past start_at when warmed up */
} worker_t;

/* Sleeps until the wall clock reaches at (seconds since the epoch), so that
 * benches in separate processes (one per MPS instance) time one window. */
static double wait_until(double at) {
  for (bool first = true;; first = false) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double left = at - (ts.tv_sec + ts.tv_nsec / 1e9);
    if (left <= 0)
      return first && at > 0 ? -left : 0; /* how late, seconds */
    usleep((useconds_t)(left > 0.01 ? 10000 : left * 1e6));
  }
}

/* The pause a client's round trip leaves between two requests at
 * concurrency 1: asleep (the thread's core may idle) or spinning (the CPU
 * stays busy; only the GPU idles). */
static void gap(const worker_t *w) {
  if (w->gap_us <= 0)
    return;
  if (!w->gap_spin) {
    usleep((useconds_t)w->gap_us);
    return;
  }
  double until = now_ms() + w->gap_us / 1e3;
  while (now_ms() < until)
    ;
}

static void *bench_thread(void *arg) {
  worker_t *w = arg;
  gs_error_t err = {0};
  for (int i = 0; i < 10; i++)
    if (gs_session_run(w->s, &w->in, 1, &err)) {
      fprintf(stderr, "run: %s\n", err.msg);
      w->fail = "run";
      break;
    }
  /* The first runs capture each session's graph and time its algorithms
   * (seconds at batch 64): throughput counts only after every thread has
   * warmed up. */
  pthread_barrier_wait(w->warm);
  if (w->fail)
    return NULL;
  w->late = wait_until(w->start_at);
  w->t_start = now_ms();
  double stop = w->seconds > 0 ? w->t_start + w->seconds * 1e3 : 0;
  for (int i = 0; i < w->iters && (!stop || now_ms() < stop); i++) {
    gap(w);
    double t0 = now_ms();
    if (gs_session_run(w->s, &w->in, 1, &err)) {
      fprintf(stderr, "run: %s\n", err.msg);
      w->fail = "run";
      return NULL;
    }
    w->t[i] = now_ms() - t0;
    w->done = i + 1;
  }
  w->t_end = now_ms();
  return NULL;
}

/* bench's options after MODEL PREC N ITERS. */
typedef struct {
  bool half, staged, spin;
  bool own_weights; /* each green context loads the model: a weights copy */
  int streams, gap_us;
  unsigned green, green_sms; /* green contexts and SMs each (0: whole GPU) */
  double start_at, seconds;
} bench_opts_t;

static int bench_parse(int argc, char **argv, bench_opts_t *o) {
  *o = (bench_opts_t){.streams = 1};
  for (int a = 6; a < argc; a++) {
    const char *v = a + 1 < argc ? argv[a + 1] : NULL;
    if (!strcmp(argv[a], "--fp16-input"))
      o->half = true;
    else if (!strcmp(argv[a], "--staged"))
      o->staged = true;
    else if (!strcmp(argv[a], "--spin"))
      o->spin = true;
    else if (!strcmp(argv[a], "--own-weights"))
      o->own_weights = true;
    else if (v && !strcmp(argv[a], "--streams"))
      o->streams = atoi(argv[++a]);
    else if (v && !strcmp(argv[a], "--gap-us"))
      o->gap_us = atoi(argv[++a]);
    else if (v && !strcmp(argv[a], "--green")) {
      if (sscanf(argv[++a], "%u:%u", &o->green, &o->green_sms) != 2 ||
          !o->green || o->green > MAX_THREADS || !o->green_sms) {
        fprintf(stderr, "bench: --green %s: want G:S, 1 <= G <= %d, S > 0\n",
                argv[a], MAX_THREADS);
        return 2;
      }
    } else if (v && !strcmp(argv[a], "--start-at"))
      o->start_at = atof(argv[++a]);
    else if (v && !strcmp(argv[a], "--seconds"))
      o->seconds = atof(argv[++a]);
    else {
      fprintf(stderr, "bench: bad option %s\n", argv[a]);
      return 2;
    }
  }
  unsigned contexts = o->green ? o->green : 1;
  if (o->streams < 1 || o->streams > MAX_THREADS ||
      contexts * (unsigned)o->streams > MAX_THREADS) {
    fprintf(stderr, "bench: at most %d sessions in all (green x streams)\n",
            MAX_THREADS);
    return 2;
  }
  if (o->own_weights && !o->green) {
    fprintf(stderr, "bench: --own-weights goes with --green\n");
    return 2;
  }
  return 0;
}

/* The model at path, loaded with an unknown protobuf field (number 1000,
 * value tag) after its bytes: the same graph and weights, another file
 * digest, so the engine gives it its own copy of the weights, as it did for
 * every load before models of equal bytes shared one. */
static gs_model_t *load_distinct(const char *path, unsigned tag) {
  FILE *f = fopen(path, "rb");
  long size = f && !fseek(f, 0, SEEK_END) ? ftell(f) : -1;
  uint8_t *buf = size > 0 ? malloc((size_t)size + 3) : NULL;
  if (!buf || fseek(f, 0, SEEK_SET) ||
      fread(buf, 1, (size_t)size, f) != (size_t)size) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(2);
  }
  fclose(f);
  buf[size] = 0xc0; /* key (1000 << 3) | 0 = 8000, a varint: 0xc0 0x3e */
  buf[size + 1] = 0x3e;
  buf[size + 2] = (uint8_t)(tag & 0x7f);
  gs_model_t *m;
  gs_error_t err = {0};
  if (gs_model_load_buffer(&m, buf, (size_t)size + 3, NULL, &err)) {
    fprintf(stderr, "load %s (+ field 1000): %s\n", path, err.msg);
    exit(2);
  }
  free(buf);
  return m;
}

/* Makes thread k's session: session 0 is the first one opened, unless green
 * contexts are asked for, where thread k runs on context g = k / streams,
 * over SMs [g x S, (g + 1) x S) of the GPU, with the model of models[g]:
 * the first one opened, or with --own-weights one loaded for the context
 * from distinct bytes (the engine shares the weights of models loaded from
 * equal bytes, so each such context holds its own copy). */
static gs_session_t *bench_session(ctx_t *c, const bench_opts_t *o, int k,
                                   gs_model_t **models) {
  if (k == 0 && !o->green)
    return c->s;
  gs_session_options_t so = c->opts;
  unsigned g = o->green ? (unsigned)k / (unsigned)o->streams : 0;
  gs_error_t err = {0};
  if (o->green) {
    so.sm_first = g * o->green_sms;
    so.sm_count = o->green_sms;
  }
  if (!models[g] && o->own_weights)
    models[g] = load_distinct(c->path, g);
  gs_session_t *s;
  if (gs_session_create(&s, models[g] ? models[g] : c->model, &so, &err)) {
    fprintf(stderr, "session %d: %s\n", k, err.msg);
    exit(2);
  }
  return s;
}

/* bench MODEL PREC N ITERS [--fp16-input] [--staged] [--streams K]
 *       [--gap-us US [--spin]] [--green G:S [--own-weights]] [--start-at T]
 *       [--seconds D]:
 * K sessions of one model (weights shared, a stream each) on K threads,
 * each running ITERS times; --staged writes the input once into each
 * session's own input buffer (gs_session_input_buffer), as a worker that
 * decodes into it does, instead of a buffer the run copies from; --gap-us
 * pauses between runs as a client at concurrency 1 does (--spin: busy).
 * --green: G green contexts of S SMs each, K sessions on each (G x K
 * threads), as a green-mode worker holds seven instances in one process;
 * --own-weights: each context loads the model with a 3-byte unknown field
 * appended (load_distinct), so each has its own weights, as each of that
 * worker's instances had before equal files shared them; else one copy.
 * --start-at: the timed runs start at wall-clock second T (CLOCK_REALTIME),
 * and --seconds: they stop after D seconds (or ITERS runs), so that benches
 * in several processes (one per MPS instance) time the same window. */
static int bench(int argc, char **argv) {
  bench_opts_t o;
  int iters = argc >= 6 ? atoi(argv[5]) : 0;
  if (argc < 6 || iters < 1 || bench_parse(argc, argv, &o))
    return 2;
  int64_t n = atoll(argv[4]);
  int threads = (int)(o.green ? o.green : 1) * o.streams;
  ctx_t c;
  open_session(&c, argv[2], argv[3], n);
  size_t count = c.per_image * (size_t)n;
  float *x = malloc(count * sizeof *x);
  uint16_t *xh = malloc(count * sizeof *xh);
  srand(1);
  for (size_t i = 0; i < count; i++) {
    x[i] = (float)((double)rand() / RAND_MAX - 0.5);
    xh[i] = float_to_half(x[i]);
  }
  c.in.dtype = o.half ? GS_DTYPE_FP16 : GS_DTYPE_FP32;
  c.in.bytes = count * gs_dtype_size(c.in.dtype);
  c.in.data = o.half ? (const void *)xh : (const void *)x;
  worker_t w[MAX_THREADS];
  pthread_t th[MAX_THREADS];
  gs_model_t *models[MAX_THREADS] = {0};
  gs_error_t err = {0};
  for (int k = 0; k < threads; k++) {
    w[k] = (worker_t){.s = bench_session(&c, &o, k, models),
                      .in = c.in,
                      .iters = iters,
                      .gap_us = o.gap_us,
                      .gap_spin = o.spin,
                      .start_at = o.start_at,
                      .seconds = o.seconds};
    w[k].t = malloc((size_t)iters * sizeof *w[k].t);
    void *buf;
    if (o.staged) {
      if (gs_session_input_buffer(w[k].s, 0, c.in.bytes, &buf, &err)) {
        fprintf(stderr, "input buffer: %s\n", err.msg);
        exit(2);
      }
      w[k].in.data = memcpy(buf, c.in.data, c.in.bytes);
    }
  }
  pthread_barrier_t warm;
  pthread_barrier_init(&warm, NULL, (unsigned)threads);
  for (int k = 0; k < threads; k++) {
    w[k].warm = &warm;
    pthread_create(&th[k], NULL, bench_thread, &w[k]);
  }
  for (int k = 0; k < threads; k++)
    pthread_join(th[k], NULL);
  pthread_barrier_destroy(&warm);
  double start = w[0].t_start, end = w[0].t_end;
  for (int k = 1; k < threads; k++) {
    start = w[k].t_start < start ? w[k].t_start : start;
    end = w[k].t_end > end ? w[k].t_end : end;
  }
  double total = end - start; /* the timed loops only, warm-ups excluded */
  double late = 0;
  for (int k = 0; k < threads; k++)
    late = w[k].late > late ? w[k].late : late;
  if (late > 0.1) /* engine_consolidation.sh drops such a process's row */
    fprintf(stderr, "bench: late: --start-at passed %.2f s before warm\n",
            late);
  conv_report(&c, false);
  double *t = malloc((size_t)iters * threads * sizeof *t);
  size_t runs = 0;
  for (int k = 0; k < threads; k++) {
    if (w[k].fail)
      exit(2);
    memcpy(t + runs, w[k].t, (size_t)w[k].done * sizeof *t);
    runs += (size_t)w[k].done;
  }
  if (!runs)
    exit(2);
  qsort(t, runs, sizeof *t, cmp_double);
  char how[96] = "";
  if (o.gap_us > 0)
    snprintf(how, sizeof how, " gap %dus%s", o.gap_us,
             o.spin ? " spinning" : " asleep");
  if (o.green)
    snprintf(how + strlen(how), sizeof how - strlen(how), " green %ux%u SMs%s",
             o.green, o.green_sms, o.own_weights ? " own weights" : "");
  printf("bench %s batch %lld in %s%s%s streams %d: p50 %.3f ms, p99 %.3f "
         "ms, min %.3f ms, %.0f img/s over %zu runs (engine API: host input "
         "to host output)\n",
         argv[3], (long long)n, o.half ? "FP16" : "FP32",
         o.staged ? " staged" : "", how, o.streams, t[runs / 2],
         t[(size_t)(runs * 0.99)], t[0],
         (double)n * (double)runs / (total / 1e3), runs);
  float dev_ms = 0;
  profiler_range("cuProfilerStart");
  int replayed =
      threads == 1 && !o.green && strcmp(argv[3], "cpu") &&
      !gs__session_gpu_replay(c.s, &w[0].in, 1, iters, &dev_ms, &err);
  profiler_range("cuProfilerStop");
  if (replayed)
    printf("bench %s batch %lld in %s: device-only graph replay %.3f ms per "
           "run, %.0f img/s (%s)\n",
           argv[3], (long long)n, o.half ? "FP16" : "FP32", dev_ms / iters,
           (double)n * iters / (dev_ms / 1e3),
           "the graph's own H2D/D2H copies from pinned staging included; "
           "PyTorch's figures have the input on the GPU already");
  for (int k = 0; k < threads; k++) {
    if (w[k].s != c.s)
      gs_session_destroy(w[k].s);
    free(w[k].t);
  }
  for (int g = 0; g < MAX_THREADS; g++)
    gs_model_destroy(models[g]);
  gs_session_destroy(c.s);
  gs_model_destroy(c.model);
  free(x);
  free(xh);
  free(t);
  return 0;
}

static size_t count_nonfinite(const float *p, size_t n, size_t *nan) {
  size_t bad = 0;
  *nan = 0;
  for (size_t i = 0; i < n; i++) {
    bad += !isfinite(p[i]);
    *nan += isnan(p[i]);
  }
  return bad;
}

static int nonfinite(int argc, char **argv) {
  if (argc < 5)
    return 2;
  ctx_t one, three;
  open_session(&one, argv[2], argv[3], 1);
  open_session(&three, argv[2], argv[3], 3);
  float *x = read_floats(argv[4], one.per_image);
  float *x3 = malloc(3 * one.per_image * sizeof *x3);
  for (int b = 0; b < 3; b++)
    memcpy(x3 + b * one.per_image, x, one.per_image * sizeof *x);
  x3[0] = NAN;
  x3[one.per_image] = INFINITY;
  one.in.data = x;
  three.in.data = x3;
  run_or_die(&one);
  run_or_die(&three);
  const gs_tensor_t *ya = gs_session_output(one.s, 0);
  const gs_tensor_t *y3 = gs_session_output(three.s, 0);
  size_t cls = ya->bytes / sizeof(float);
  const float *a = ya->data, *r = y3->data;
  double max_ref = 0, max_diff = 0;
  for (size_t k = 0; k < cls; k++) {
    max_ref = fmax(max_ref, fabs(a[k]));
    max_diff = fmax(max_diff, fabs((double)r[2 * cls + k] - a[k]));
  }
  size_t nan0, nan1, nan2;
  size_t bad0 = count_nonfinite(r, cls, &nan0);
  size_t bad1 = count_nonfinite(r + cls, cls, &nan1);
  size_t bad2 = count_nonfinite(r + 2 * cls, cls, &nan2);
  double lim = argc > 5 ? atof(argv[5]) : strcmp(argv[3], "fp16") ? 1e-3 : 1e-2;
  double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
  bool ok = bad2 == 0 && rel <= lim;
  printf("nonfinite %s: NaN image: %zu of %zu outputs non-finite (%zu NaN); "
         "+Inf image: %zu non-finite (%zu NaN); finite image: %zu "
         "non-finite, rel diff to its run alone %.3g (limit %.3g): %s\n",
         argv[3], bad0, cls, nan0, bad1, nan1, bad2, rel, lim,
         ok ? "PASS" : "FAIL");
  gs_session_destroy(one.s);
  gs_session_destroy(three.s);
  gs_model_destroy(one.model);
  gs_model_destroy(three.model);
  free(x);
  free(x3);
  return ok ? 0 : 1;
}

typedef struct {
  size_t node;
  float ms;
} node_time_t;

static int cmp_time(const void *a, const void *b) {
  float x = ((const node_time_t *)a)->ms, y = ((const node_time_t *)b)->ms;
  return x > y ? -1 : x < y;
}

static int profile(int argc, char **argv) {
  if (argc < 5)
    return 2;
  int64_t n = atoll(argv[4]);
  ctx_t c;
  open_session(&c, argv[2], argv[3], n);
  float *x = calloc(c.in.bytes / sizeof(float) + 1, sizeof *x);
  c.in.data = x;
  run_or_die(&c);
  size_t nn = gs_model_node_count(c.model);
  float *ms = calloc(nn + 1, sizeof *ms);
  node_time_t *t = calloc(nn + 1, sizeof *t);
  gs_error_t err = {0};
  for (int rep = 0; rep < 3; rep++) /* the last of three eager runs */
    if (gs__session_gpu_profile(c.s, &c.in, 1, ms, &err)) {
      fprintf(stderr, "profile: %s\n", err.msg);
      return 2;
    }
  double sum = 0;
  for (size_t i = 0; i < nn; i++) {
    t[i] = (node_time_t){i, ms[i]};
    sum += ms[i];
  }
  qsort(t, nn, sizeof *t, cmp_time);
  printf("profile %s batch %lld: %zu nodes, %.3f ms summed (eager, "
         "between-node gaps included)\n",
         argv[3], (long long)n, nn, sum);
  const gs_model_t *m = c.model;
  for (size_t k = 0; k < nn && k < 12; k++) {
    char label[160];
    printf("  %7.3f ms %5.1f%%  %s\n", t[k].ms, 100 * t[k].ms / sum,
           gs__node_label(&m->nodes[t[k].node], label, sizeof label));
  }
  conv_report(&c, true);
  gs_session_destroy(c.s);
  gs_model_destroy(c.model);
  free(x);
  free(ms);
  free(t);
  return 0;
}

/* share MODEL PREC: the model loaded twice (as two green instances of one
 * process load their copies of a repository), a session on each: exit 0
 * when both run on one copy of the weights, 1 when each has its own. */
/* One run of c's session at batch n (zeros, or what the buffer holds). */
static void run_batch(ctx_t *c, int64_t n, bool reserve_only) {
  gs_error_t err = {0};
  gs_tensor_t in = c->in;
  in.shape[0] = n;
  in.bytes = c->per_image * (size_t)n * sizeof(float);
  void *buf;
  if (gs_session_input_buffer(c->s, 0, in.bytes, &buf, &err)) {
    fprintf(stderr, "input buffer: %s\n", err.msg);
    exit(2);
  }
  in.data = buf;
  int rc = reserve_only ? gs_session_reserve(c->s, &in, 1, &err)
                        : gs_session_run(c->s, &in, 1, &err);
  if (rc) {
    fprintf(stderr, "%s at batch %lld: %s\n", reserve_only ? "reserve" : "run",
            (long long)n, err.msg);
    exit(2);
  }
}

/* gs_session_reserve at batch N, then runs at 1, N and 1: the graph of
 * batch 1 is captured once (2 captures in all). A session without the
 * reserve beside it, as the control, captures batch 1 again (3). The
 * first reserve finds batch N's convs without a choice (no conv cache
 * file: the process's cache starts empty); one after batch N ran finds
 * them all (gs_session_uncached_convs). */
static int reserve(int argc, char **argv) {
  if (argc < 5)
    return 2;
  int64_t n = atoll(argv[4]);
  unsigned got[2], uncached[2] = {0, 0};
  for (int with = 1; with >= 0; with--) {
    ctx_t c;
    open_session(&c, argv[2], argv[3], 1);
    if (with) {
      run_batch(&c, n, true);
      uncached[0] = gs_session_uncached_convs(c.s);
    }
    run_batch(&c, 1, false);
    run_batch(&c, n, false);
    run_batch(&c, 1, false);
    got[with] = gs__session_gpu_captures(c.s);
    if (with) {
      run_batch(&c, n, true); /* planned now: every choice cached */
      uncached[1] = gs_session_uncached_convs(c.s);
    }
    gs_session_destroy(c.s);
    gs_model_destroy(c.model);
  }
  printf("reserve %s: runs at 1, %lld, 1 captured %u graphs with batch %lld "
         "reserved first (want 2), %u without (the control: 3); convs "
         "without a cached choice at batch %lld: %u before it ran (want > "
         "0), %u after (want 0)\n",
         argv[3], (long long)n, got[1], (long long)n, got[0], (long long)n,
         uncached[0], uncached[1]);
  return got[1] == 2 && got[0] == 3 && uncached[0] > 0 && uncached[1] == 0 ? 0
                                                                           : 1;
}

static int share(int argc, char **argv) {
  if (argc < 4)
    return 2;
  ctx_t a, b;
  open_session(&a, argv[2], argv[3], 1);
  open_session(&b, argv[2], argv[3], 1);
  size_t bytes_a, bytes_b;
  uintptr_t wa = gs__session_gpu_weights(a.s, &bytes_a);
  uintptr_t wb = gs__session_gpu_weights(b.s, &bytes_b);
  bool shared = wa && wa == wb && bytes_a == bytes_b;
  printf("share %s: two loads of the model, weights at %#lx and %#lx (%zu "
         "bytes each): %s\n",
         argv[3], (unsigned long)wa, (unsigned long)wb, bytes_a,
         shared ? "one shared copy" : "two copies");
  gs_session_destroy(b.s);
  gs_model_destroy(b.model);
  gs_session_destroy(a.s);
  gs_model_destroy(a.model);
  return shared ? 0 : 1;
}

int main(int argc, char **argv) {
  int rc = 2;
  if (argc > 1 && !strcmp(argv[1], "check"))
    rc = check(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "bench"))
    rc = bench(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "nonfinite"))
    rc = nonfinite(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "profile"))
    rc = profile(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "reserve"))
    rc = reserve(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "share"))
    rc = share(argc, argv);
  else if (argc > 1 && !strcmp(argv[1], "describe")) {
    char buf[1024];
    gs_error_t err = {0};
    rc = gs_engine_cuda_describe(buf, sizeof buf, &err) ? 1 : 0;
    printf("describe: %s\n", rc ? err.msg : buf);
  }
  if (rc == 2)
    fprintf(
        stderr,
        "usage: engine_bench_gpu check|bench|profile|nonfinite|share ... (see "
        "the file's comment)\n");
  return rc;
}
