/* Pooling on the CPU (NCHW, 1-D to 3-D): MaxPool and AveragePool over
 * windows that gs__conv_geometry places, and GlobalAveragePool. Padding
 * never wins a max; an average divides by the window's elements inside
 * the input, or with count_include_pad by those inside the padded input. */
#include <float.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <immintrin.h>

#include "engine/engine_int.h"
#include "engine/kernels_gemm.h"

/* A window's geometry as three spatial dims (leading dims of size 1). */
typedef struct {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
  size_t in_size, out_size, planes;
} pool3_t;

static int pool3(const gs__node_t *n, const gs__tensor_t *x, pool3_t *t,
                 gs_error_t *err) {
  gs__conv_geom_t g;
  int rc = gs__conv_geometry(n, x, NULL, &g, err);
  if (rc != GS_OK)
    return rc;
  unsigned lead = 3 - g.n_spatial;
  t->in_size = t->out_size = 1;
  t->planes = (size_t)(g.batch * g.in_channels);
  for (unsigned i = 0; i < 3; i++) {
    bool real = i >= lead;
    unsigned j = real ? i - lead : 0;
    t->in[i] = real ? g.in[j] : 1;
    t->out[i] = real ? g.out[j] : 1;
    t->k[i] = real ? g.kernel[j] : 1;
    t->s[i] = real ? g.strides[j] : 1;
    t->d[i] = real ? g.dilations[j] : 1;
    t->pb[i] = real ? g.pads[j] : 0;
    t->pe[i] = real ? g.pads[g.n_spatial + j] : 0;
    t->in_size *= (size_t)t->in[i];
    t->out_size *= (size_t)t->out[i];
  }
  return GS_OK;
}

/* Taps k in [0, n) with lo <= start + k * d < hi: [*first, *last). O(1),
 * so that a huge kernel_shape costs nothing over the input it covers. */
static void tap_range(int64_t start, int64_t d, int64_t n, int64_t lo,
                      int64_t hi, int64_t *first, int64_t *last) {
  if (start >= lo && start + (n - 1) * d < hi) { /* inside: most windows */
    *first = 0;
    *last = n;
    return;
  }
  *first = start >= lo ? 0 : (lo - start + d - 1) / d;
  *last = start >= hi ? 0 : (hi - 1 - start) / d + 1;
  if (*last > n)
    *last = n;
  if (*first > *last)
    *first = *last;
}

/* For the window at output o along dim i: the kernel taps [*lo, *hi) that
 * land inside the input, and how many land inside the padded input. */
static int64_t taps(const pool3_t *t, unsigned i, int64_t o, int64_t *lo,
                    int64_t *hi) {
  int64_t start = o * t->s[i] - t->pb[i], plo, phi;
  tap_range(start, t->d[i], t->k[i], 0, t->in[i], lo, hi);
  tap_range(start, t->d[i], t->k[i], -t->pb[i], t->in[i] + t->pe[i], &plo,
            &phi);
  return phi - plo;
}

/* Visits every output of every plane: BODY sees x (the plane), starts
 * s0..s2, valid taps [l0,h0)x[l1,h1)x[l2,h2), padded tap counts p0..p2,
 * and stores through *yp. */
#define POOL_WALK(T, BODY)                                                     \
  do {                                                                         \
    const T *xall = in[0].data;                                                \
    T *yp = out->data;                                                         \
    for (size_t pl = 0; pl < t.planes; pl++) {                                 \
      const T *x = xall + pl * t.in_size;                                      \
      for (int64_t o0 = 0; o0 < t.out[0]; o0++) {                              \
        int64_t l0, h0, p0 = taps(&t, 0, o0, &l0, &h0);                        \
        int64_t s0 = o0 * t.s[0] - t.pb[0];                                    \
        for (int64_t o1 = 0; o1 < t.out[1]; o1++) {                            \
          int64_t l1, h1, p1 = taps(&t, 1, o1, &l1, &h1);                      \
          int64_t s1 = o1 * t.s[1] - t.pb[1];                                  \
          for (int64_t o2 = 0; o2 < t.out[2]; o2++, yp++) {                    \
            int64_t l2, h2, p2 = taps(&t, 2, o2, &l2, &h2);                    \
            int64_t s2 = o2 * t.s[2] - t.pb[2];                                \
            (void)p0, (void)p1, (void)p2;                                      \
            BODY;                                                              \
          }                                                                    \
        }                                                                      \
      }                                                                        \
    }                                                                          \
  } while (0)

#define AT(k0, k1, k2)                                                         \
  x[((size_t)(s0 + (k0)*t.d[0]) * (size_t)t.in[1] +                            \
     (size_t)(s1 + (k1)*t.d[1])) *                                             \
        (size_t)t.in[2] +                                                      \
    (size_t)(s2 + (k2)*t.d[2])]

#define MAX_BODY(T, LOWEST)                                                    \
  T m = (LOWEST);                                                              \
  for (int64_t k0 = l0; k0 < h0; k0++)                                         \
    for (int64_t k1 = l1; k1 < h1; k1++)                                       \
      for (int64_t k2 = l2; k2 < h2; k2++) {                                   \
        T v = AT(k0, k1, k2);                                                  \
        m = v > m ? v : m;                                                     \
      }                                                                        \
  *yp = m

/* MaxPool of FP32 planes with one or two spatial dims, a row of outputs
 * at a time. Each tap's outputs along the row, [lo2[k2], hi2[k2]), are
 * the same for every row: worked out once (two divisions each) for the
 * first TAPS_KEPT taps. */
#define TAPS_KEPT 16

static void tap_outputs(const pool3_t *t, int64_t k2, const int64_t *lo2,
                        const int64_t *hi2, int64_t *lo, int64_t *hi) {
  if (k2 < TAPS_KEPT) {
    *lo = lo2[k2];
    *hi = hi2[k2];
  } else {
    tap_range(k2 * t->d[2] - t->pb[2], t->s[2], t->out[2], 0, t->in[2], lo, hi);
  }
}

/* Bits 0-7 of m moved to the even bits 0-14. */
static inline unsigned spread_even(unsigned m) {
  m = (m | m << 4) & 0x0f0fu;
  m = (m | m << 2) & 0x3333u;
  return (m | m << 1) & 0x5555u;
}

/* Where group j0's 16 outputs read at tap k2 and which lanes are inside
 * the row: the same for every row and plane. */
typedef struct {
  int64_t off;          /* where lane 0 reads, from the row's start */
  __mmask16 in;         /* lanes inside the row (none: the tap is skipped) */
  __mmask16 m_lo, m_hi; /* stride 2: the two loads' lanes */
} tap_lanes_t;

static void tap_lanes(const pool3_t *t, int64_t j0, int64_t k2,
                      const int64_t *lo2, const int64_t *hi2, tap_lanes_t *tl) {
  int64_t n = t->out[2] - j0 < 16 ? t->out[2] - j0 : 16, a, b;
  tap_outputs(t, k2, lo2, hi2, &a, &b);
  a = a > j0 ? a : j0;
  b = b < j0 + n ? b : j0 + n;
  tl->in = a < b ? (__mmask16)(((1u << (b - a)) - 1) << (a - j0)) : 0;
  tl->off = j0 * t->s[2] + k2 * t->d[2] - t->pb[2];
  tl->m_lo = t->s[2] == 1 ? tl->in : (__mmask16)spread_even(tl->in & 0xffu);
  tl->m_hi = (__mmask16)spread_even(tl->in >> 8);
}

/* The lanes of every group and tap, worked out once per call where they
 * are at most LANES_KEPT (every 2-D pool of cnn_small and ResNet-50): per
 * row they cost more than the loads (batch 8, 1 thread: cnn_small's 2x2
 * pool over 32x32 33 to 24 us, its 3x3 over 8x8, 4 outputs a row, 26 to
 * 19.5; ResNet-50's 3x3 pool, batch 1, 0.33 to 0.23 ms). */
#define LANES_KEPT 64

static bool lanes_kept(const pool3_t *t, const int64_t *lo2, const int64_t *hi2,
                       tap_lanes_t *kept) {
  if ((t->out[2] + 15) / 16 * t->k[2] > LANES_KEPT)
    return false;
  for (int64_t j0 = 0; j0 < t->out[2]; j0 += 16)
    for (int64_t k2 = 0; k2 < t->k[2]; k2++)
      tap_lanes(t, j0, k2, lo2, hi2, kept++);
  return true;
}

/* One output row, strides 1 and 2, on AVX-512: 16 outputs at a time,
 * their maximum kept in a register over every row [l1, h1) and tap of the
 * window and stored once (a pass per tap loaded and stored the row each
 * time, and rows under 8 outputs went scalar: cnn_small's 2x2 and 3x3
 * pools, 9 % of its run). A lane reads only where its tap is inside the
 * row (masked loads; stride 2: two loads and a permute, as
 * kernels_conv.c's stride-2 packing). NaN never wins, as in the scalar
 * loop: MAXPS returns its second operand when either is NaN. The lanes
 * from kept (lanes_kept) when not NULL. */
__attribute__((target("avx512f"))) static void
max_out_row(const pool3_t *t, const float *x, int64_t s1, int64_t l1,
            int64_t h1, const int64_t *lo2, const int64_t *hi2,
            const tap_lanes_t *kept, float *y) {
  const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12,
                                         10, 8, 6, 4, 2, 0);
  int64_t w = t->out[2];
  for (int64_t j0 = 0; j0 < w; j0 += 16) {
    int64_t n = w - j0 < 16 ? w - j0 : 16;
    __m512 acc = _mm512_set1_ps(-FLT_MAX);
    for (int64_t k2 = 0; k2 < t->k[2]; k2++) {
      tap_lanes_t here;
      const tap_lanes_t *tl = kept ? kept++ : &here;
      if (!kept)
        tap_lanes(t, j0, k2, lo2, hi2, &here);
      if (!tl->in)
        continue;
      for (int64_t k1 = l1; k1 < h1; k1++) {
        const float *src = x + (s1 + k1 * t->d[1]) * t->in[2] + tl->off;
        __m512 v;
        if (t->s[2] == 1) {
          v = _mm512_maskz_loadu_ps(tl->in, src);
        } else {
          __m512 lo = _mm512_maskz_loadu_ps(tl->m_lo, src);
          __m512 hi = _mm512_maskz_loadu_ps(tl->m_hi, src + 16);
          v = _mm512_permutex2var_ps(lo, evens, hi);
        }
        acc = _mm512_mask_max_ps(acc, tl->in, v, acc);
      }
    }
    _mm512_mask_storeu_ps(y + j0, (__mmask16)((1u << n) - 1), acc);
  }
}

/* The same row, scalar: for each tap, one pass over the outputs it
 * reaches, so that the maxima of neighbouring outputs are independent
 * (vectorizable) instead of one long chain per window. */
static void max_out_row_scalar(const pool3_t *t, const float *x, int64_t s1,
                               int64_t l1, int64_t h1, const int64_t *lo2,
                               const int64_t *hi2, float *y) {
  for (int64_t o2 = 0; o2 < t->out[2]; o2++)
    y[o2] = -FLT_MAX;
  for (int64_t k1 = l1; k1 < h1; k1++) {
    const float *row = x + (s1 + k1 * t->d[1]) * t->in[2];
    for (int64_t k2 = 0; k2 < t->k[2]; k2++) {
      int64_t lo, hi;
      tap_outputs(t, k2, lo2, hi2, &lo, &hi);
      const float *src = row + k2 * t->d[2] - t->pb[2];
      for (int64_t o2 = lo; o2 < hi; o2++) {
        float v = src[o2 * t->s[2]];
        y[o2] = v > y[o2] ? v : y[o2];
      }
    }
  }
}

static void maxpool_rows(const pool3_t *t, const float *x, float *y,
                         size_t planes) {
  size_t w = (size_t)t->out[2];
  /* read by every pool thread: set once, relaxed (the same value each) */
  static _Atomic int avx512 = -1;
  if (atomic_load_explicit(&avx512, memory_order_relaxed) < 0)
    atomic_store_explicit(&avx512, __builtin_cpu_supports("avx512f") ? 1 : 0,
                          memory_order_relaxed);
  bool vec = avx512 && (t->s[2] == 1 || t->s[2] == 2);
  int64_t lo2[TAPS_KEPT], hi2[TAPS_KEPT];
  for (int64_t k2 = 0; k2 < t->k[2] && k2 < TAPS_KEPT; k2++)
    tap_range(k2 * t->d[2] - t->pb[2], t->s[2], t->out[2], 0, t->in[2],
              &lo2[k2], &hi2[k2]);
  tap_lanes_t lanes[LANES_KEPT];
  const tap_lanes_t *kept =
      vec && lanes_kept(t, lo2, hi2, lanes) ? lanes : NULL;
  for (size_t pl = 0; pl < planes; pl++, x += t->in_size)
    for (int64_t o1 = 0; o1 < t->out[1]; o1++, y += w) {
      int64_t s1 = o1 * t->s[1] - t->pb[1], l1, h1;
      tap_range(s1, t->d[1], t->k[1], 0, t->in[1], &l1, &h1);
      if (vec)
        max_out_row(t, x, s1, l1, h1, lo2, hi2, kept, y);
      else
        max_out_row_scalar(t, x, s1, l1, h1, lo2, hi2, y);
    }
}

/* maxpool_rows over the threads, a range of planes each (ResNet-50's
 * 3x3 pool: 0.3 ms an image on one thread). */
typedef struct {
  const pool3_t *t;
  const float *x;
  float *y;
} maxpool_job_t;

static void maxpool_part(void *arg, unsigned part, unsigned parts) {
  const maxpool_job_t *j = arg;
  size_t p0 = j->t->planes * part / parts,
         p1 = j->t->planes * (part + 1) / parts;
  maxpool_rows(j->t, j->x + p0 * j->t->in_size, j->y + p0 * j->t->out_size,
               p1 - p0);
}

static void maxpool_planes(const pool3_t *t, const float *x, float *y) {
  maxpool_job_t j = {t, x, y};
  unsigned threads = gs_engine_threads();
  /* Under about 2 us of work (8Ki window taps) on one thread. */
  double work = (double)t->planes * (double)t->out_size * (double)t->k[1] *
                (double)t->k[2];
  if (threads > t->planes)
    threads = (unsigned)t->planes;
  gs__parallel_pieces(maxpool_part, &j, GS__PIECES * threads,
                      work < 8192.0 ? 1 : threads);
}

int gs__run_maxpool(const gs__node_t *n, const gs__tensor_t *in,
                    gs__tensor_t *out, gs_error_t *err) {
  pool3_t t;
  int rc = pool3(n, &in[0], &t, err);
  if (rc != GS_OK || out->count == 0)
    return rc;
  switch (out->dtype) {
  case GS_DTYPE_UINT8:
    POOL_WALK(uint8_t, MAX_BODY(uint8_t, 0));
    break;
  case GS_DTYPE_INT8:
    POOL_WALK(int8_t, MAX_BODY(int8_t, INT8_MIN));
    break;
  default:
    if (t.in[0] == 1 && t.out[0] == 1)
      maxpool_planes(&t, in[0].data, out->data);
    else
      POOL_WALK(float, MAX_BODY(float, -FLT_MAX));
    break;
  }
  return GS_OK;
}

int gs__run_avgpool(const gs__node_t *n, const gs__tensor_t *in,
                    gs__tensor_t *out, gs_error_t *err) {
  pool3_t t;
  bool include = n->p.count_include_pad;
  int rc = pool3(n, &in[0], &t, err);
  if (rc != GS_OK || out->count == 0)
    return rc;
  POOL_WALK(float, {
    float sum = 0.0f;
    for (int64_t k0 = l0; k0 < h0; k0++)
      for (int64_t k1 = l1; k1 < h1; k1++)
        for (int64_t k2 = l2; k2 < h2; k2++)
          sum += AT(k0, k1, k2);
    int64_t count = include ? p0 * p1 * p2 : (h0 - l0) * (h1 - l1) * (h2 - l2);
    *yp = count > 0 ? sum / (float)count : 0.0f;
  });
  return GS_OK;
}

int gs__run_globalavgpool(const gs__node_t *n, const gs__tensor_t *in,
                          gs__tensor_t *out, gs_error_t *err) {
  (void)n, (void)err;
  const float *x = in[0].data;
  float *y = out->data;
  size_t inner = out->count ? in[0].count / out->count : 0;
  for (size_t p = 0; p < out->count; p++) {
    float sum = 0.0f;
    for (size_t i = 0; i < inner; i++)
      sum += x[p * inner + i];
    y[p] = inner ? sum / (float)inner : 0.0f;
  }
  return GS_OK;
}
