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

/* y[i] = max(y[i], src[i * stride]) for i < n, as the scalar loop's
 * v > y ? v : y (a NaN in src never wins; MAXPS returns its second
 * operand when either is NaN): 16 at a time with AVX-512, strides 1 and 2
 * (2: two loads and a permute, as kernels_conv.c's stride-2 packing;
 * the scalar gather was most of cnn_small's MaxPool, 10 % of its time). */
__attribute__((target("avx512f"))) static void
max_row_avx512(float *y, const float *src, int64_t stride, size_t n) {
  const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12,
                                         10, 8, 6, 4, 2, 0);
  for (size_t i = 0; i < n; i += 16) {
    size_t left = n - i;
    __mmask16 m =
        left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    __m512 v;
    if (stride == 1) {
      v = _mm512_maskz_loadu_ps(m, src + i);
    } else { /* reads nothing past src[2 * (n - 1)] */
      size_t span = left >= 16 ? 31 : 2 * left - 1;
      __mmask16 lo =
          span >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << span) - 1);
      __mmask16 hi = span > 16 ? (__mmask16)((1u << (span - 16)) - 1) : 0;
      __m512 a = _mm512_maskz_loadu_ps(lo, src + 2 * i);
      __m512 b = _mm512_maskz_loadu_ps(hi, src + 2 * i + 16);
      v = _mm512_permutex2var_ps(a, evens, b);
    }
    __m512 cur = _mm512_maskz_loadu_ps(m, y + i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_max_ps(v, cur));
  }
}

/* MaxPool of FP32 planes with one or two spatial dims, a row at a time:
 * for each kernel tap, one pass over the outputs it reaches, so that the
 * maxima of neighbouring outputs are independent (vectorizable) instead
 * of one long chain per window. */
#define TAPS_KEPT 16

static void maxpool_rows(const pool3_t *t, const float *x, float *y,
                         size_t planes) {
  size_t w = (size_t)t->out[2];
  /* read by every pool thread: set once, relaxed (the same value each) */
  static _Atomic int avx512 = -1;
  if (atomic_load_explicit(&avx512, memory_order_relaxed) < 0)
    atomic_store_explicit(&avx512, __builtin_cpu_supports("avx512f") ? 1 : 0,
                          memory_order_relaxed);
  /* Rows of 8 outputs or more (a call per tap costs what a short row
   * gains: cnn_small's 4-wide 3x3 pool ran 50 % slower). */
  bool wide = avx512 && w >= 8 && (t->s[2] == 1 || t->s[2] == 2);
  /* Each tap's outputs along the row, the same for every row: worked out
   * once (two divisions each) for the first TAPS_KEPT taps. */
  int64_t lo2[TAPS_KEPT], hi2[TAPS_KEPT];
  for (int64_t k2 = 0; k2 < t->k[2] && k2 < TAPS_KEPT; k2++)
    tap_range(k2 * t->d[2] - t->pb[2], t->s[2], t->out[2], 0, t->in[2],
              &lo2[k2], &hi2[k2]);
  for (size_t pl = 0; pl < planes; pl++, x += t->in_size)
    for (int64_t o1 = 0; o1 < t->out[1]; o1++, y += w) {
      int64_t s1 = o1 * t->s[1] - t->pb[1], l1, h1;
      tap_range(s1, t->d[1], t->k[1], 0, t->in[1], &l1, &h1);
      for (size_t o2 = 0; o2 < w; o2++)
        y[o2] = -FLT_MAX;
      for (int64_t k1 = l1; k1 < h1; k1++) {
        const float *row = x + (s1 + k1 * t->d[1]) * t->in[2];
        for (int64_t k2 = 0; k2 < t->k[2]; k2++) {
          /* Outputs o2 whose tap k2 lands inside the row. */
          int64_t off = k2 * t->d[2] - t->pb[2], lo, hi;
          if (k2 < TAPS_KEPT) {
            lo = lo2[k2];
            hi = hi2[k2];
          } else {
            tap_range(off, t->s[2], t->out[2], 0, t->in[2], &lo, &hi);
          }
          const float *src = row + off;
          if (wide && hi > lo) {
            max_row_avx512(y + lo, row + (off + lo * t->s[2]), t->s[2],
                           (size_t)(hi - lo));
            continue;
          }
          for (int64_t o2 = lo; o2 < hi; o2++) {
            float v = src[o2 * t->s[2]];
            y[o2] = v > y[o2] ? v : y[o2];
          }
        }
      }
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
