/* Conv's own GEMM on AVX-512 CPUs: Y[M x N] = W[M x K] * X'[K x N] with W
 * packed once at load into 12-row panels and X' (the im2col matrix, or the
 * input itself for a 1x1 conv) packed per run into 32-column panels in the
 * planned scratch; a 12x32 register tile adds bias, residual and
 * activation as it stores. Packing W once saves what a BLAS call repacks
 * on every run, and the kernel does not depend on the BLAS library knowing
 * the CPU. Work is split over gs_engine_threads() threads on
 * kernels_threads.c's pool, each product cut into a few pieces per thread
 * that a thread done with its own takes from one that is behind. */
#include <stdint.h>

#include <immintrin.h>

#include "engine/engine_int.h"
#include "engine/kernels_gemm.h"

/* --- packing ------------------------------------------------------------ */

static bool gemm_off; /* gs__gemm_set_off: the tests' switch */

/* __builtin_cpu_supports reads what libgcc's constructor found (a load and
 * a mask), so the pool's threads ask it directly: no cache to race on. */
bool gs__gemm_available(void) {
  return __builtin_cpu_supports("avx512f") && !gemm_off;
}

void gs__gemm_set_off(bool off) {
  gemm_off = off;
}

/* W's row panels: MR rows each, then the rest rounded up to 4 (a 64-filter
 * W wastes no rows rather than 8). A rest of 13 to 16 rows goes as two
 * 8-row panels rather than 12 and 4: a 4-row tile has too few
 * accumulators to hide the FMA latency (cnn_small's 16-filter convs). */
static size_t full_panels(size_t m) {
  size_t f = m / GS__GEMM_MR, rest = m % GS__GEMM_MR;
  return f > 0 && rest > 0 && rest <= 4 ? f - 1 : f;
}

static size_t panel_count(size_t m) {
  size_t f = full_panels(m), tail = m - f * GS__GEMM_MR;
  return f + (tail == 0 ? 0 : tail > GS__GEMM_MR ? 2 : 1);
}

static size_t panel_start(size_t m, size_t q) {
  size_t f = full_panels(m);
  return q <= f ? q * GS__GEMM_MR : f * GS__GEMM_MR + (q - f) * 8;
}

static unsigned panel_height(size_t m, size_t q) {
  size_t f = full_panels(m), tail = m - f * GS__GEMM_MR;
  if (q < f)
    return GS__GEMM_MR;
  return tail > GS__GEMM_MR ? 8 : (unsigned)(tail + 3) / 4 * 4;
}

size_t gs__gemm_packed_a_count(size_t m, size_t k) {
  return (m + 3) / 4 * 4 * k;
}

size_t gs__gemm_packed_b_count(size_t k, size_t n) {
  return (n + GS__GEMM_NR - 1) / GS__GEMM_NR * GS__GEMM_NR * k;
}

/* KC-step blocks one after the other, in each the row panels one after
 * the other: a pass over K reads W as one sequential stream, which the
 * hardware prefetcher follows (panels K floats apart ran the cold-W 7x7
 * layers at half speed). */
void gs__gemm_pack_a(const float *a, size_t m, size_t k, float *packed) {
  for (size_t k0 = 0; k0 < k; k0 += GS__GEMM_KC) {
    size_t k1 = k - k0 < GS__GEMM_KC ? k : k0 + GS__GEMM_KC;
    for (size_t q = 0; q < panel_count(m); q++) {
      size_t r0 = panel_start(m, q), h = panel_height(m, q);
      for (size_t kk = k0; kk < k1; kk++)
        for (size_t r = r0; r < r0 + h; r++)
          *packed++ = r < m ? a[r * k + kk] : 0.0f;
    }
  }
}

/* --- the register tile ----------------------------------------------------
 * H rows (12, 8 or 4: a panel's height) x 32 columns in 2H zmm
 * accumulators over kc steps, each step two loads of B and H broadcasts of
 * A: 12x32 keeps 24 accumulators and both B vectors in registers (MLAS's
 * AVX-512 tile is the same shape). first starts from 0, else from C; last
 * adds bias and residual and applies the activation before storing. rows
 * and the column masks clip the tile to C's edge. Every loop over rows is
 * unrolled by pragma and indexed by constants only, so that the
 * accumulators stay in registers at -O2 too (without, gcc -O2 kept them on
 * the stack: half the speed). */

typedef struct {
  const float *bias; /* per row of this tile, NULL for none */
  const float *z;    /* residual at the tile's origin, ldc apart */
  gs__act_t act;
  float lo, hi;
} epilogue_t;

typedef struct {
  float *c;
  size_t ldc;
  unsigned rows;
  __mmask16 m0, m1;
  bool first, last;
} tile_out_t;

/* A direct X' (gs__gemm_direct_t) at one tile: the k steps' channel and
 * tap, and per tap where column 0 reads and which columns are inside. */
typedef struct {
  const float *xc; /* the first k step's channel */
  size_t plane;
  unsigned taps, t0; /* t0: the first k step's tap */
  const int64_t *shift;
  const __mmask16 *m0, *m1;
} direct_tile_t;

#define UNROLL _Pragma("GCC unroll 12")

__attribute__((target("avx512f"), always_inline)) static inline void
tile_h32(const unsigned h, const bool direct, size_t kc, const float *a,
         const float *b, const direct_tile_t *d, const tile_out_t *o,
         const epilogue_t *e) {
  __m512 c0[GS__GEMM_MR], c1[GS__GEMM_MR];
  float *c = o->c;
  size_t ldc = o->ldc;
  UNROLL for (unsigned r = 0; r < h; r++) {
    if (o->first || r >= o->rows) {
      c0[r] = _mm512_setzero_ps();
      c1[r] = _mm512_setzero_ps();
    } else {
      c0[r] = _mm512_maskz_loadu_ps(o->m0, c + r * ldc);
      c1[r] = _mm512_maskz_loadu_ps(o->m1, c + r * ldc + 16);
    }
  }
  const float *xc = direct ? d->xc : NULL;
  unsigned t = direct ? d->t0 : 0;
  for (size_t k = 0; k < kc; k++, a += h) {
    __m512 b0, b1;
    if (direct) { /* masked lanes are not read: no fault past the plane */
      const float *bp = xc + d->shift[t];
      b0 = _mm512_maskz_loadu_ps(d->m0[t], bp);
      b1 = _mm512_maskz_loadu_ps(d->m1[t], bp + 16);
      if (++t == d->taps) {
        t = 0;
        xc += d->plane;
      }
    } else {
      b0 = _mm512_loadu_ps(b);
      b1 = _mm512_loadu_ps(b + 16);
      b += GS__GEMM_NR;
    }
    UNROLL for (unsigned r = 0; r < h; r++) {
      __m512 ar = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
    }
  }
  if (o->last) {
    __m512 lo = _mm512_set1_ps(e->act == GS__ACT_RELU ? 0.0f : e->lo);
    __m512 hi = _mm512_set1_ps(e->hi);
    UNROLL for (unsigned r = 0; r < h; r++) {
      if (r >= o->rows)
        break;
      if (e->bias) {
        __m512 br = _mm512_set1_ps(e->bias[r]);
        c0[r] = _mm512_add_ps(c0[r], br);
        c1[r] = _mm512_add_ps(c1[r], br);
      }
      if (e->z) {
        c0[r] =
            _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(o->m0, e->z + r * ldc));
        c1[r] = _mm512_add_ps(
            c1[r], _mm512_maskz_loadu_ps(o->m1, e->z + r * ldc + 16));
      }
      if (e->act != GS__ACT_NONE) {
        c0[r] = _mm512_max_ps(c0[r], lo);
        c1[r] = _mm512_max_ps(c1[r], lo);
      }
      if (e->act == GS__ACT_CLIP) {
        c0[r] = _mm512_min_ps(c0[r], hi);
        c1[r] = _mm512_min_ps(c1[r], hi);
      }
    }
  }
  UNROLL for (unsigned r = 0; r < h; r++) {
    if (r >= o->rows)
      break;
    _mm512_mask_storeu_ps(c + r * ldc, o->m0, c0[r]);
    _mm512_mask_storeu_ps(c + r * ldc + 16, o->m1, c1[r]);
  }
}

static __mmask16 cols_mask(size_t cols) {
  return cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);
}

/* One function per panel height and B source, so that both are constants
 * in each. */
__attribute__((target("avx512f"))) static void
tile(unsigned h, size_t kc, const float *a, const float *b, const tile_out_t *o,
     const epilogue_t *e) {
  if (h == 12)
    tile_h32(12, false, kc, a, b, NULL, o, e);
  else if (h == 8)
    tile_h32(8, false, kc, a, b, NULL, o, e);
  else
    tile_h32(4, false, kc, a, b, NULL, o, e);
}

__attribute__((target("avx512f"))) static void
tile_direct(unsigned h, size_t kc, const float *a, const direct_tile_t *d,
            const tile_out_t *o, const epilogue_t *e) {
  if (h == 12)
    tile_h32(12, true, kc, a, NULL, d, o, e);
  else if (h == 8)
    tile_h32(8, true, kc, a, NULL, d, o, e);
  else
    tile_h32(4, true, kc, a, NULL, d, o, e);
}

/* --- 17 to 24 columns ------------------------------------------------------
 * A last column panel of 17 to 24 columns on the 12x32 tile costs 24 FMAs
 * a k step for as few as 17 columns (ResNet-50's 7x7 layers at batch 1:
 * 49 = 32 + 17, a quarter of its run). Here the panel's second half is a
 * 256-bit vector: Zen 4 runs a 512-bit FMA as two 256-bit halves, so a k
 * step takes 18 FMA slots, not 24. Packed B only; masked 256-bit moves
 * need AVX-512VL. */

static bool have_vl(void) {
  return __builtin_cpu_supports("avx512vl");
}

__attribute__((target("avx512f,avx512vl,fma"),
               always_inline)) static inline void
tile_h24(const unsigned h, size_t kc, const float *a, const float *b,
         const tile_out_t *o, const epilogue_t *e) {
  __m512 c0[GS__GEMM_MR];
  __m256 c1[GS__GEMM_MR];
  float *c = o->c;
  size_t ldc = o->ldc;
  __mmask8 m1 = (__mmask8)o->m1;
  UNROLL for (unsigned r = 0; r < h; r++) {
    bool zero = o->first || r >= o->rows;
    c0[r] =
        zero ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(o->m0, c + r * ldc);
    c1[r] = zero ? _mm256_setzero_ps()
                 : _mm256_maskz_loadu_ps(m1, c + r * ldc + 16);
  }
  for (size_t k = 0; k < kc; k++, a += h, b += GS__GEMM_NR) {
    __m512 b0 = _mm512_loadu_ps(b);
    __m256 b1 = _mm256_loadu_ps(b + 16);
    UNROLL for (unsigned r = 0; r < h; r++) {
      __m512 ar = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(ar), b1, c1[r]);
    }
  }
  __m512 lo = _mm512_set1_ps(e->act == GS__ACT_RELU ? 0.0f : e->lo);
  __m512 hi = _mm512_set1_ps(e->hi);
  UNROLL for (unsigned r = 0; r < h; r++) {
    if (r >= o->rows)
      break;
    if (o->last && e->bias) {
      __m512 br = _mm512_set1_ps(e->bias[r]);
      c0[r] = _mm512_add_ps(c0[r], br);
      c1[r] = _mm256_add_ps(c1[r], _mm512_castps512_ps256(br));
    }
    if (o->last && e->z) {
      c0[r] =
          _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(o->m0, e->z + r * ldc));
      c1[r] =
          _mm256_add_ps(c1[r], _mm256_maskz_loadu_ps(m1, e->z + r * ldc + 16));
    }
    if (o->last && e->act != GS__ACT_NONE) {
      c0[r] = _mm512_max_ps(c0[r], lo);
      c1[r] = _mm256_max_ps(c1[r], _mm512_castps512_ps256(lo));
    }
    if (o->last && e->act == GS__ACT_CLIP) {
      c0[r] = _mm512_min_ps(c0[r], hi);
      c1[r] = _mm256_min_ps(c1[r], _mm512_castps512_ps256(hi));
    }
    _mm512_mask_storeu_ps(c + r * ldc, o->m0, c0[r]);
    _mm256_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

__attribute__((target("avx512f,avx512vl,fma"))) static void
tile24(unsigned h, size_t kc, const float *a, const float *b,
       const tile_out_t *o, const epilogue_t *e) {
  if (h == 12)
    tile_h24(12, kc, a, b, o, e);
  else if (h == 8)
    tile_h24(8, kc, a, b, o, e);
  else
    tile_h24(4, kc, a, b, o, e);
}

/* Where the tile at columns [o0, o0 + cols) reads each tap of a direct X'
 * and which of its 32 columns are inside the input: output row and column
 * of each lane as (o + 0.5) / width in float, exact for o < 2^20 (the
 * error, under 1 / (8 width), is less than the 0.5 / width to the nearest
 * integer). */
__attribute__((target("avx512f"))) static void
direct_masks(const gs__gemm_direct_t *d, size_t o0, size_t cols, int64_t *shift,
             __mmask16 *m0, __mmask16 *m1) {
  const __m512i iota =
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  __m512i w = _mm512_set1_epi32((int)d->width);
  __m512i rows = _mm512_set1_epi32((int)d->rows);
  __m512 inv = _mm512_set1_ps(1.0f / (float)d->width);
  __m512i oy[2], ox[2];
  __mmask16 in_cols[2] = {cols_mask(cols),
                          cols_mask(cols > 16 ? cols - 16 : 0)};
  for (unsigned hf = 0; hf < 2; hf++) {
    __m512i o = _mm512_add_epi32(_mm512_set1_epi32((int)(o0 + 16 * hf)), iota);
    __m512 of = _mm512_add_ps(_mm512_cvtepi32_ps(o), _mm512_set1_ps(0.5f));
    oy[hf] = _mm512_cvttps_epi32(_mm512_mul_ps(of, inv));
    ox[hf] = _mm512_sub_epi32(o, _mm512_mullo_epi32(oy[hf], w));
  }
  for (unsigned t = 0; t < d->taps; t++) {
    __m512i dy = _mm512_set1_epi32((int)d->dy[t]);
    __m512i dx = _mm512_set1_epi32((int)d->dx[t]);
    __mmask16 m[2];
    for (unsigned hf = 0; hf < 2; hf++) /* unsigned: below 0 is above */
      m[hf] = _mm512_mask_cmplt_epu32_mask(
          _mm512_mask_cmplt_epu32_mask(in_cols[hf],
                                       _mm512_add_epi32(oy[hf], dy), rows),
          _mm512_add_epi32(ox[hf], dx), w);
    m0[t] = m[0];
    m1[t] = m[1];
    shift[t] = (int64_t)o0 + d->at[t] + d->dy[t] * d->width + d->dx[t];
  }
}

/* --- narrow column panels ------------------------------------------------
 * A last column panel of few columns costs the whole 12x32 tile, 24 FMAs a
 * k step, for as few as 4 of them (ResNet-50's 14x14 layers at batch 1:
 * 196 = 6 x 32 + 4; its 7x7 ones at batch 8: 392 = 12 x 32 + 8). Here the
 * vector runs along a row panel's filters instead, W's packed panel as it
 * is (12 of 16 lanes), and each column is one accumulator: a FMA a column
 * a k step. The accumulators hold all of K; the same FMAs in the same
 * order as the tile, so the sums are the same; bias, residual and
 * activation as the tile's epilogue, on the way out (the product
 * transposed). Per conv, 1 thread: the 14x14 ones 7 to 12 % faster. Not
 * for 13 to 20 columns (the 7x7 layers at batch 1, 17): 2 to 5 % slower,
 * a B panel of 4608 rows read whole per row panel from beyond L2. */
#define NARROW_MAX 12             /* most columns a narrow panel may have */
#define NARROW_MAX_B (512u << 10) /* and most bytes (its K rows) */

typedef struct {
  const gs__gemm_t *g;
  size_t i, j; /* the row panel's first row, the column panel's first column */
  unsigned h, cols;
} narrow_t;

/* Writes out[col][r] to C rows i.. and columns j.., as the tile stores. */
static void narrow_store(const narrow_t *nw, float (*out)[16]) {
  const gs__gemm_t *g = nw->g;
  unsigned rows = g->m - nw->i < nw->h ? (unsigned)(g->m - nw->i) : nw->h;
  float lo = g->act == GS__ACT_RELU ? 0.0f : g->act_min;
  for (unsigned r = 0; r < rows; r++) {
    size_t at = (nw->i + r) * g->ldc + nw->j;
    for (unsigned c = 0; c < nw->cols; c++) {
      float v = out[c][r];
      if (g->bias)
        v += g->bias[nw->i + r];
      if (g->z)
        v += g->z[at + c];
      if (g->act != GS__ACT_NONE) /* MAXPS, MINPS: NaN gives lo */
        v = v > lo ? v : lo;
      if (g->act == GS__ACT_CLIP)
        v = v < g->act_max ? v : g->act_max;
      g->c[at + c] = v;
    }
  }
}

#define UNROLL_NARROW _Pragma("GCC unroll 12")

/* P columns (cols rounded up to 4: the rest of B's panel is its padding,
 * computed and not stored), the accumulators indexed by constants only. */
__attribute__((target("avx512f"), always_inline)) static inline void
narrow_p(const unsigned P, const narrow_t *nw) {
  const gs__gemm_t *g = nw->g;
  __m512 acc[NARROW_MAX];
  __mmask16 mh = (__mmask16)((1u << nw->h) - 1);
  size_t mpad = gs__gemm_packed_a_count(g->m, 1);
  UNROLL_NARROW for (unsigned c = 0; c < P; c++) acc[c] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < g->k; k0 += GS__GEMM_KC) {
    size_t kc = g->k - k0 < GS__GEMM_KC ? g->k - k0 : GS__GEMM_KC;
    const float *a = g->a + k0 * mpad + nw->i * kc;
    const float *b = g->b + nw->j * g->k + k0 * GS__GEMM_NR;
    for (size_t k = 0; k < kc; k++, a += nw->h, b += GS__GEMM_NR) {
      __m512 w = _mm512_maskz_loadu_ps(mh, a);
      UNROLL_NARROW for (unsigned c = 0; c < P; c++) acc[c] =
          _mm512_fmadd_ps(w, _mm512_set1_ps(b[c]), acc[c]);
    }
  }
  float out[NARROW_MAX][16];
  UNROLL_NARROW for (unsigned c = 0; c < P; c++)
      _mm512_storeu_ps(out[c], acc[c]);
  narrow_store(nw, out);
}

__attribute__((target("avx512f"))) static void narrow(const narrow_t *nw) {
  if (nw->cols <= 4)
    narrow_p(4, nw);
  else if (nw->cols <= 8)
    narrow_p(8, nw);
  else
    narrow_p(12, nw);
}

/* --- the product ---------------------------------------------------------- */

#define KC GS__GEMM_KC

/* Work items: column panels times chunks of row panels, so that two
 * threads share even a product of one or two column panels. Items run
 * column panel by column panel (a 32-column B slice stays in L1 while W
 * streams past it), or, where B's KC rows for every column fit in L2,
 * row chunk by row chunk: then each W panel is read from memory once, not
 * once per column panel (ResNet-50's 14x14 and 7x7 layers hold MBs of W
 * and few column panels). */
typedef struct {
  const gs__gemm_t *g;
  size_t panels, row_panels;
  size_t chunks, chunk_panels; /* row panels in chunks of chunk_panels */
  bool rows_outer;
  size_t narrow; /* the column panel run by narrow(), or SIZE_MAX */
} gemm_job_t;

#define ROWS_OUTER_MAX_B (1u << 20) /* bytes of B per KC pass: half an L2 */
#define SMALL_W_BYTES (32u << 10)   /* packed W split by columns */

/* The first item of part of parts. Row panel by row panel, items are cut
 * by their rows (a 12-row panel's items cost 1.5 times an 8-row one's: 64
 * filters, 12 + 12 + 12 + 12 + 8 + 8 rows, split by items gave 36 and 28
 * rows to 2 threads); column panel by column panel, they cost the same. */
static size_t part_start(const gemm_job_t *job, unsigned part, unsigned parts) {
  size_t items = job->panels * job->chunks;
  if (!job->rows_outer || part == 0 || part >= parts)
    return part >= parts ? items : items * part / parts;
  size_t m = job->g->m, last = job->row_panels - 1;
  size_t rows = panel_start(m, last) + panel_height(m, last);
  size_t want = rows * job->panels * part / parts; /* row-columns before */
  for (size_t q = 0; q < job->row_panels; q++) {
    size_t h = panel_height(m, q), before = panel_start(m, q) * job->panels;
    if (before + h * job->panels > want)
      return q * job->panels + (want - before + h / 2) / h;
  }
  return items;
}

/* Item w's row panels by narrow(), if its column panel is the narrow one. */
static void narrow_item(const gemm_job_t *job, size_t w) {
  size_t p = job->rows_outer ? w % job->panels : w / job->chunks;
  if (p != job->narrow)
    return;
  size_t q0 =
      (job->rows_outer ? w / job->panels : w % job->chunks) * job->chunk_panels;
  for (size_t q = q0; q < q0 + job->chunk_panels && q < job->row_panels; q++) {
    narrow_t nw = {job->g, panel_start(job->g->m, q), p * GS__GEMM_NR,
                   panel_height(job->g->m, q),
                   (unsigned)(job->g->n - p * GS__GEMM_NR)};
    narrow(&nw);
  }
}

__attribute__((target("avx512f"))) static void
gemm_part(void *arg, unsigned part, unsigned parts) {
  const gemm_job_t *job = arg;
  const gs__gemm_t *g = job->g;
  size_t w0 = part_start(job, part, parts),
         w1 = part_start(job, part + 1, parts);
  size_t mpad = gs__gemm_packed_a_count(g->m, 1);
  for (size_t k0 = 0; k0 < g->k; k0 += KC) {
    size_t kc = g->k - k0 < KC ? g->k - k0 : KC;
    bool first = k0 == 0, last = k0 + kc == g->k;
    for (size_t w = w0; w < w1; w++) {
      size_t p = job->rows_outer ? w % job->panels : w / job->chunks;
      size_t q0 = (job->rows_outer ? w / job->panels : w % job->chunks) *
                  job->chunk_panels;
      size_t q1 = q0 + job->chunk_panels < job->row_panels
                      ? q0 + job->chunk_panels
                      : job->row_panels;
      if (p == job->narrow)
        continue; /* after the K passes */
      size_t j = p * GS__GEMM_NR, cols = g->n - j;
      if (cols > GS__GEMM_NR)
        cols = GS__GEMM_NR;
      __mmask16 m0 = cols_mask(cols), m1 = cols_mask(cols > 16 ? cols - 16 : 0);
      const float *bp =
          g->direct ? NULL : g->b + p * GS__GEMM_NR * g->k + k0 * GS__GEMM_NR;
      int64_t shift[GS__GEMM_DIRECT_TAPS];
      __mmask16 dm0[GS__GEMM_DIRECT_TAPS], dm1[GS__GEMM_DIRECT_TAPS];
      direct_tile_t dt = {0};
      if (g->direct) {
        const gs__gemm_direct_t *d = g->direct;
        direct_masks(d, j, cols, shift, dm0, dm1);
        dt = (direct_tile_t){d->x + k0 / d->taps * d->plane,
                             d->plane,
                             d->taps,
                             (unsigned)(k0 % d->taps),
                             shift,
                             dm0,
                             dm1};
      }
      for (size_t q = q0; q < q1; q++) {
        size_t i = panel_start(g->m, q);
        unsigned h = panel_height(g->m, q);
        tile_out_t o = {g->c + i * g->ldc + j,
                        g->ldc,
                        (unsigned)(g->m - i < h ? g->m - i : h),
                        m0,
                        m1,
                        first,
                        last};
        epilogue_t e = {.bias = g->bias ? g->bias + i : NULL,
                        .z = g->z ? g->z + i * g->ldc + j : NULL,
                        .act = g->act,
                        .lo = g->act_min,
                        .hi = g->act_max};
        if (g->direct)
          tile_direct(h, kc, g->a + k0 * mpad + i * kc, &dt, &o, &e);
        else if (cols > 16 && cols <= 24 && have_vl())
          tile24(h, kc, g->a + k0 * mpad + i * kc, bp, &o, &e);
        else
          tile(h, kc, g->a + k0 * mpad + i * kc, bp, &o, &e);
      }
    }
  }
  for (size_t w = w0; w < w1; w++)
    narrow_item(job, w);
}

void gs__gemm_run(const gs__gemm_t *g, unsigned threads) {
  size_t row_panels = panel_count(g->m);
  gemm_job_t job = {g,          (g->n + GS__GEMM_NR - 1) / GS__GEMM_NR,
                    row_panels, 1,
                    row_panels, false,
                    SIZE_MAX};
  /* A packed B's last panel of at most NARROW_MAX columns, if that panel,
   * read whole for each row panel, stays in L2: narrow(). */
  if (!g->direct && g->n % GS__GEMM_NR != 0 &&
      g->n % GS__GEMM_NR <= NARROW_MAX &&
      g->k * GS__GEMM_NR * sizeof(float) <= NARROW_MAX_B)
    job.narrow = job.panels - 1;
  size_t kc = g->k < KC ? g->k : KC;
  /* A direct X' pass reads the input planes of its channels. */
  size_t b_pass = g->direct
                      ? ((kc + g->direct->taps - 1) / g->direct->taps + 1) *
                            g->direct->plane * sizeof(float)
                      : job.panels * GS__GEMM_NR * kc * sizeof(float);
  /* A W this small stays in each core's L2 anyway: over threads, the
   * columns are split instead, so that each thread reads and writes only
   * its part of the image, which the next op's same split finds in its
   * own cache (split by rows, both threads read all of X', and all of Y
   * moved between the cores). On one thread too: column panel by column
   * panel, a direct X' tile's masks are worked out once for all the row
   * panels (cnn_small's first conv, K = 27, batch 8: 89.7 to 81 us). */
  bool small_w =
      gs__gemm_packed_a_count(g->m, g->k) * sizeof(float) <= SMALL_W_BYTES &&
      job.panels >= 2 * (size_t)threads;
  if (b_pass <= ROWS_OUTER_MAX_B && !small_w) {
    job.rows_outer = true;
    job.chunks = row_panels;
    job.chunk_panels = 1;
  } else if (threads > 1 && job.panels < 4 * (size_t)threads) {
    /* Few column panels: split the rows too, into row-panel chunks. */
    job.chunks = (4 * (size_t)threads + job.panels - 1) / job.panels;
    if (job.chunks > row_panels)
      job.chunks = row_panels;
    job.chunk_panels = (row_panels + job.chunks - 1) / job.chunks;
    job.chunks = (row_panels + job.chunk_panels - 1) / job.chunk_panels;
  }
  if (g->k == 0) { /* no products: only the epilogue */
    for (size_t i = 0; i < g->m; i++)
      for (size_t j = 0; j < g->n; j++) {
        float v = (g->bias ? g->bias[i] : 0.0f) +
                  (g->z ? g->z[i * g->ldc + j] : 0.0f);
        gs__params_t p = {
            .act = g->act, .act_min = g->act_min, .act_max = g->act_max};
        gs__apply_act(&p, &v, 1);
        g->c[i * g->ldc + j] = v;
      }
    return;
  }
  size_t items = job.panels * job.chunks;
  unsigned parts = threads < items ? threads : (unsigned)items;
  /* Handing a part to a spinning worker costs well under a microsecond,
   * waking a sleeping one microseconds: a product under 0.5 MFLOP (about
   * 3 us on one core) runs on the caller alone. (The threshold was 8
   * MFLOP with a pool that always slept: cnn_small's convs, 0.6 to 4.7
   * MFLOP, then ran on one thread whatever the thread count.) */
  if ((double)g->m * (double)g->n * (double)g->k < GS__GEMM_SERIAL_MAX)
    parts = 1;
  size_t pieces =
      (size_t)GS__PIECES * parts < items ? (size_t)GS__PIECES * parts : items;
  gs__parallel_pieces(gemm_part, &job, (unsigned)pieces, parts);
}

/* --- small products (Gemm, MatMul) ------------------------------------- */

/* c's rows gain alpha * A(i, kk) times B's row kk, 16 columns at a time. */
__attribute__((target("avx512f"))) static void
small_rows(const gs__gemm_small_t *g) {
  for (size_t i = 0; i < g->m; i++) {
    float *ci = g->c + i * g->ldc;
    for (size_t j = 0; j < g->n; j += 64) {
      __m512 acc[4];
      __mmask16 mk[4];
      for (unsigned v = 0; v < 4; v++) {
        size_t at = j + 16 * v;
        mk[v] = cols_mask(at < g->n ? g->n - at : 0);
        acc[v] = _mm512_maskz_loadu_ps(mk[v], ci + at);
      }
      for (size_t kk = 0; kk < g->k; kk++) {
        __m512 av =
            _mm512_set1_ps(g->alpha * g->a[i * g->a_row + kk * g->a_col]);
        const float *bk = g->b + kk * g->b_row + j;
        for (unsigned v = 0; v < 4; v++)
          acc[v] = _mm512_fmadd_ps(
              av, _mm512_maskz_loadu_ps(mk[v], bk + 16 * v), acc[v]);
      }
      for (unsigned v = 0; v < 4; v++)
        _mm512_mask_storeu_ps(ci + j + 16 * v, mk[v], acc[v]);
    }
  }
}

/* c[i][j] += alpha * dot(A's row i, B's column j), both contiguous: four
 * rows of A at a time against each column of B, which is read once per
 * four rows. */
__attribute__((target("avx512f"))) static void
small_dots(const gs__gemm_small_t *g) {
  for (size_t i0 = 0; i0 < g->m; i0 += 4) {
    unsigned rows = g->m - i0 < 4 ? (unsigned)(g->m - i0) : 4;
    for (size_t j = 0; j < g->n; j++) {
      const float *bj = g->b + j * g->b_col;
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(),
                       _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (size_t kk = 0; kk < g->k; kk += 16) {
        __mmask16 mk = cols_mask(g->k - kk);
        __m512 bv = _mm512_maskz_loadu_ps(mk, bj + kk);
        for (unsigned r = 0; r < rows; r++)
          acc[r] = _mm512_fmadd_ps(
              _mm512_maskz_loadu_ps(mk, g->a + (i0 + r) * g->a_row + kk), bv,
              acc[r]);
      }
      for (unsigned r = 0; r < rows; r++)
        g->c[(i0 + r) * g->ldc + j] += g->alpha * _mm512_reduce_add_ps(acc[r]);
    }
  }
}

bool gs__gemm_small(const gs__gemm_small_t *g) {
  if (!gs__gemm_available() ||
      (double)g->m * (double)g->n * (double)g->k > (double)GS__GEMM_SMALL_MAX)
    return false;
  if (g->b_col == 1)
    small_rows(g);
  else if (g->a_col == 1 && g->b_row == 1)
    small_dots(g);
  else
    return false;
  return true;
}
