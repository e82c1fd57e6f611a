/* The packed GEMM's direct X' (gs__gemm_direct_t: a stride-1 conv's input
 * read in place, no im2col) against the same product with X' packed from
 * an im2col written here, and both against a conv in double: odd sizes,
 * tiles that cross output rows, asymmetric pads, dilations, kernels of 1
 * to 25 taps, K passes that start inside a channel, both loop orders.
 * Also the small products Gemm and MatMul run on, and the thread pool
 * (gs__parallel) they and the other ops split their work over. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine/kernels_gemm.h"

typedef struct {
  int64_t h, w, cin, m, kh, kw, dh, dw, pt, pl, pb; /* pr: W stays W */
  bool bias, z;
  gs__act_t act;
} shape_t;

/* Deterministic values in [-1, 1). */
static float *values(size_t count, uint32_t seed) {
  float *v = malloc(count * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < count; i++) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
  }
  return v;
}

static int64_t out_rows(const shape_t *s) {
  return s->h + s->pt + s->pb - (s->kh - 1) * s->dh;
}

/* x[c][oy + dy][ox + dx] for tap t of the conv, 0 outside. */
static float tap_at(const shape_t *s, const float *x, int64_t c, int64_t t,
                    int64_t oy, int64_t ox) {
  int64_t iy = oy + t / s->kw * s->dh - s->pt;
  int64_t ix = ox + t % s->kw * s->dw - s->pl;
  if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
    return 0.0f;
  return x[(c * s->h + iy) * s->w + ix];
}

/* X' packed as gs__gemm_pack_a's comment lays it out. */
static float *pack_b(const shape_t *s, const float *x) {
  size_t taps = (size_t)(s->kh * s->kw), k = (size_t)s->cin * taps;
  size_t n = (size_t)(out_rows(s) * s->w);
  float *b = calloc(gs__gemm_packed_b_count(k, n), sizeof *b);
  assert_non_null(b);
  for (size_t kk = 0; kk < k; kk++)
    for (size_t o = 0; o < n; o++)
      b[o / GS__GEMM_NR * GS__GEMM_NR * k + kk * GS__GEMM_NR +
        o % GS__GEMM_NR] =
          tap_at(s, x, (int64_t)(kk / taps), (int64_t)(kk % taps),
                 (int64_t)o / s->w, (int64_t)o % s->w);
  return b;
}

static void check_shape(const shape_t *s, unsigned threads) {
  size_t taps = (size_t)(s->kh * s->kw), k = (size_t)s->cin * taps;
  size_t m = (size_t)s->m, n = (size_t)(out_rows(s) * s->w);
  float *x = values((size_t)(s->cin * s->h * s->w), 1);
  float *w = values(m * k, 2), *bias = values(m, 3), *z = values(m * n, 4);
  float *a = malloc(gs__gemm_packed_a_count(m, k) * sizeof *a);
  float *y_direct = malloc(m * n * sizeof(float));
  float *y_packed = malloc(m * n * sizeof(float));
  assert_true(a && y_direct && y_packed);
  gs__gemm_pack_a(w, m, k, a);
  float *b = pack_b(s, x);
  gs__gemm_direct_t d = {.x = x,
                         .plane = (size_t)(s->h * s->w),
                         .taps = (unsigned)taps,
                         .width = s->w,
                         .rows = s->h};
  for (size_t t = 0; t < taps; t++) {
    d.dy[t] = (int64_t)t / s->kw * s->dh - s->pt;
    d.dx[t] = (int64_t)t % s->kw * s->dw - s->pl;
  }
  gs__gemm_t g = {.m = m,
                  .n = n,
                  .k = k,
                  .ldc = n,
                  .a = a,
                  .b = b,
                  .c = y_packed,
                  .bias = s->bias ? bias : NULL,
                  .z = s->z ? z : NULL,
                  .act = s->act,
                  .act_min = -0.5f,
                  .act_max = 0.75f};
  gs__gemm_run(&g, threads);
  g.b = NULL;
  g.direct = &d;
  g.c = y_direct;
  gs__gemm_run(&g, threads);
  /* The same products in the same order: the same bits. */
  for (size_t i = 0; i < m * n; i++)
    if (y_direct[i] != y_packed[i])
      fail_msg("%lldx%lld k %lldx%lld row %zu col %zu: direct %g, packed %g",
               (long long)s->h, (long long)s->w, (long long)s->kh,
               (long long)s->kw, i / n, i % n, y_direct[i], y_packed[i]);
  for (size_t r = 0; r < m; r++)
    for (size_t o = 0; o < n; o++) {
      double sum = s->bias ? bias[r] : 0.0, mag = fabs(sum);
      for (size_t kk = 0; kk < k; kk++) {
        double v = (double)w[r * k + kk] *
                   tap_at(s, x, (int64_t)(kk / taps), (int64_t)(kk % taps),
                          (int64_t)o / s->w, (int64_t)o % s->w);
        sum += v;
        mag += fabs(v);
      }
      if (s->z) {
        sum += z[r * n + o];
        mag += fabs(z[r * n + o]);
      }
      if (s->act != GS__ACT_NONE)
        sum = sum < (s->act == GS__ACT_CLIP ? -0.5 : 0.0)
                  ? (s->act == GS__ACT_CLIP ? -0.5 : 0.0)
                  : sum;
      if (s->act == GS__ACT_CLIP && sum > 0.75)
        sum = 0.75;
      if (fabs(y_direct[r * n + o] - sum) > 1e-5 * (mag + 1.0))
        fail_msg("%lldx%lld k %lldx%lld row %zu col %zu: got %g, want %g",
                 (long long)s->h, (long long)s->w, (long long)s->kh,
                 (long long)s->kw, r, o, y_direct[r * n + o], sum);
    }
  free(x), free(w), free(bias), free(z), free(a), free(b);
  free(y_direct), free(y_packed);
}

static void test_direct_matches_packed(void **state) {
  (void)state;
  if (!gs__gemm_available())
    skip(); /* no AVX-512F: the packed GEMM never runs */
  const shape_t shapes[] = {
      /* cnn_small's 3x3: one 32-wide row a tile, two 8-row panels. */
      {32, 32, 16, 16, 3, 3, 1, 1, 1, 1, 1, true, true, GS__ACT_RELU},
      /* 3 input channels (K = 27); 9x7: tiles cross rows; K = 360: the
       * second pass starts inside channel 28 (256 = 28 * 9 + 4). */
      {32, 32, 3, 16, 3, 3, 1, 1, 1, 1, 1, true, false, GS__ACT_NONE},
      {9, 7, 40, 20, 3, 3, 1, 1, 1, 1, 1, true, true, GS__ACT_RELU},
      /* 5x5 (25 taps), 13 filters (8 + 8, the last 5 rows used). */
      {11, 13, 3, 13, 5, 5, 1, 1, 2, 2, 2, false, true, GS__ACT_CLIP},
      /* 1x3 over rows of 33 (tiles cross rows), 4 filters. */
      {5, 33, 5, 4, 1, 3, 1, 1, 0, 1, 0, false, false, GS__ACT_NONE},
      /* 3x1 dilated 2 with pads 3 above and 1 below; 28 filters. */
      {10, 6, 4, 28, 3, 1, 2, 1, 3, 0, 1, true, false, GS__ACT_RELU},
      /* No pads above or below: 8 output rows of 10 input ones; 3x3
       * dilated 2 across (pads 2 and 2). */
      {10, 6, 6, 12, 3, 3, 1, 2, 0, 2, 0, true, true, GS__ACT_NONE},
      /* 2x2, pads 1 left and 0 right, 0 above and 1 below. */
      {7, 9, 5, 9, 2, 2, 1, 1, 0, 1, 1, false, false, GS__ACT_RELU},
      /* 1-D: one row of 50, k 3. */
      {1, 50, 7, 12, 1, 3, 1, 1, 0, 1, 0, true, false, GS__ACT_NONE},
      /* 1x1 (the kernel takes it; kernels_conv.c packs those). */
      {5, 7, 300, 9, 1, 1, 1, 1, 0, 0, 0, false, true, GS__ACT_NONE},
      /* 96x96 x 30 channels: a pass's planes over 1 MiB, so the column
       * panels are the outer loop. */
      {96, 96, 30, 12, 3, 3, 1, 1, 1, 1, 1, true, true, GS__ACT_RELU},
  };
  for (unsigned threads = 1; threads <= 3; threads++)
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
      check_shape(&shapes[i], threads);
}

/* gs__gemm_small (Gemm's and MatMul's small products) against the
 * definition: both layouts it takes (B's rows contiguous; A's rows and
 * B's columns contiguous), each with A transposed or not where it allows,
 * sizes that leave tails everywhere (K not a multiple of 16, N not of 64,
 * M not of 4), alpha not 1, c accumulated into; a layout it does not take
 * is refused, c untouched. */
static void check_small(size_t m, size_t n, size_t k, bool trans_a,
                        bool trans_b) {
  float *a = values(m * k, 5), *b = values(k * n, 6), *c = values(m * n, 7);
  float *c0 = malloc(m * n * sizeof *c0);
  assert_non_null(c0);
  memcpy(c0, c, m * n * sizeof *c);
  gs__gemm_small_t g = {m,
                        n,
                        k,
                        n,
                        a,
                        b,
                        trans_a ? 1 : k,
                        trans_a ? m : 1,
                        trans_b ? 1 : n,
                        trans_b ? k : 1,
                        0.5f,
                        c};
  bool taken = gs__gemm_small(&g);
  assert_int_equal(taken, g.b_col == 1 || (g.a_col == 1 && g.b_row == 1));
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double sum = 0.0, mag = fabs(c0[i * n + j]);
      for (size_t kk = 0; kk < k; kk++) {
        double v = (double)a[i * g.a_row + kk * g.a_col] *
                   b[kk * g.b_row + j * g.b_col];
        sum += v;
        mag += fabs(v);
      }
      double want = taken ? c0[i * n + j] + 0.5 * sum : c0[i * n + j];
      if (fabs(c[i * n + j] - want) > 1e-5 * (mag + 1.0))
        fail_msg("%zux%zux%zu a%c b%c (%zu, %zu): got %g, want %g", m, n, k,
                 trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', i, j, c[i * n + j],
                 want);
    }
  free(a), free(b), free(c), free(c0);
}

static void test_small_products(void **state) {
  (void)state;
  if (!gs__gemm_available())
    skip(); /* no AVX-512F: Gemm and MatMul stay on OpenBLAS */
  const size_t sizes[][3] = {{1, 102, 2048}, {8, 10, 32}, {7, 130, 45},
                             {5, 1, 17},     {1, 64, 16}, {3, 65, 1}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        check_small(sizes[i][0], sizes[i][1], sizes[i][2], ta, tb);
}

/* gs__parallel: each part of a call runs once, with the call's part count,
 * before the call returns, whoever runs it (a worker, or the caller taking
 * a part no worker has started): calls in a row of 1 to 5 parts with no
 * work, a little, and more; after a pause longer than the workers' spin
 * (asleep, they must be woken); and from two threads at once (one of them
 * runs its parts alone). */
typedef struct {
  unsigned parts, spin;
  unsigned ran[8], bad_parts;
} pool_task_t;

static void pool_task(void *arg, unsigned part, unsigned parts) {
  pool_task_t *t = arg;
  volatile unsigned sink = 0;
  for (unsigned i = 0; i < t->spin * (part == 0 ? 1 : 4); i++)
    sink += i; /* the caller's part the shortest: it must wait */
  (void)sink;
  if (parts != t->parts)
    __atomic_add_fetch(&t->bad_parts, 1, __ATOMIC_RELAXED);
  if (part < 8)
    __atomic_add_fetch(&t->ran[part], 1, __ATOMIC_RELAXED);
}

static void pool_calls(unsigned calls, unsigned spin, unsigned pause_us) {
  for (unsigned c = 0; c < calls; c++) {
    pool_task_t t = {.parts = 1 + c % 5, .spin = spin};
    gs__parallel(pool_task, &t, t.parts);
    for (unsigned i = 0; i < 8; i++)
      if (t.ran[i] != (i < t.parts ? 1u : 0u))
        fail_msg("call %u of %u parts (spin %u): part %u ran %u times", c,
                 t.parts, spin, i, t.ran[i]);
    if (t.bad_parts)
      fail_msg("call %u: %u parts saw a wrong part count", c, t.bad_parts);
    if (pause_us) {
      struct timespec ts = {0, (long)pause_us * 1000};
      nanosleep(&ts, NULL);
    }
  }
}

static void *pool_calls_thread(void *arg) {
  (void)arg;
  pool_calls(3000, 50, 0);
  return NULL;
}

static void test_pool_parts(void **state) {
  (void)state;
  pool_calls(20000, 0, 0);
  pool_calls(5000, 200, 0);
  pool_calls(500, 20000, 0);
  pool_calls(20, 100, 120000); /* 120 ms: longer than any spin */
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, pool_calls_thread, NULL), 0);
  pool_calls(3000, 50, 0);
  assert_int_equal(pthread_join(t, NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_direct_matches_packed),
      cmocka_unit_test(test_small_products),
      cmocka_unit_test(test_pool_parts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
