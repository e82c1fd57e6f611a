/* Conv's im2col matrix written per run into the packed GEMM's 32-column
 * panels (kernels_gemm.c): a 1x1 conv's input copied, a stride-1
 * same-width conv's rows as one shifted copy each, the rest row by row of
 * the output, stride 2 with two loads and a permute. Split over threads by
 * rows of the matrix (gs__parallel_pieces). */
#include <string.h>

#include <immintrin.h>

#include "engine/kernels_conv_int.h"
#include "engine/kernels_gemm.h"

/* Rows of the im2col matrix written straight into the GEMM's packed
 * panels: logical column o of row kk lives at panel o / NR, offset
 * kk * NR + o % NR. */
typedef struct {
  float *packed;
  size_t kdim, at; /* at: the next column of row kk */
  size_t kk;
  size_t base; /* the first column of this image's part of the row */
} packed_row_t;

/* Copies (src) or zeroes (src NULL) n <= NR floats: masked AVX-512 moves,
 * as libc's memcpy is not inlined well for such short, varying runs; the
 * packed path runs only where AVX-512F is. */
__attribute__((target("avx512f"))) static inline void
move_chunk(float *d, const float *src, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    size_t left = n - i;
    __mmask16 m =
        left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    __m512 v = src ? _mm512_maskz_loadu_ps(m, src + i) : _mm512_setzero_ps();
    _mm512_mask_storeu_ps(d + i, m, v);
  }
}

/* d[i] = src[2 * i] for i < n <= NR: each 16 outputs from two loads of
 * 16 and one permute (a stride-2 conv's rows, element by element before:
 * ResNet-50's 7x7 and 3x3 stride-2 packing took 15 to 30 % longer).
 * Reads nothing past src[2 * (n - 1)]. */
__attribute__((target("avx512f"))) static inline void
move_chunk_stride2(float *d, const float *src, size_t n) {
  const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12,
                                         10, 8, 6, 4, 2, 0);
  for (size_t i = 0; i < n; i += 16) {
    size_t left = n - i, span = left >= 16 ? 31 : 2 * left - 1;
    __mmask16 lo =
        span >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << span) - 1);
    __mmask16 hi = span > 16 ? (__mmask16)((1u << (span - 16)) - 1) : 0;
    __m512 a = _mm512_maskz_loadu_ps(lo, src + 2 * i);
    __m512 b = _mm512_maskz_loadu_ps(hi, src + 2 * i + 16);
    __mmask16 m =
        left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    _mm512_mask_storeu_ps(d + i, m, _mm512_permutex2var_ps(a, evens, b));
  }
}

/* Appends len values, src[i * stride] (zeros when src is NULL). */
/* AVX-512 like move_chunk, so that it inlines into the packing loops. */
#define PACKED_PATH __attribute__((target("avx512f")))

PACKED_PATH static void put(packed_row_t *r, const float *src, int64_t stride,
                            size_t len) {
  size_t panel = GS__GEMM_NR * r->kdim; /* floats from one panel to the next */
  while (len > 0) {
    size_t in_panel = r->at % GS__GEMM_NR, chunk = GS__GEMM_NR - in_panel;
    float *d = r->packed + (r->at - in_panel) * r->kdim + r->kk * GS__GEMM_NR +
               in_panel;
    if (in_panel == 0 && (!src || stride == 1)) {
      /* Whole panels: two full-width moves each. */
      size_t whole = len / GS__GEMM_NR;
      for (size_t p = 0; p < whole; p++, d += panel) {
        move_chunk(d, src, GS__GEMM_NR);
        if (src)
          src += GS__GEMM_NR;
      }
      r->at += whole * GS__GEMM_NR;
      len -= whole * GS__GEMM_NR;
      if (len == 0)
        break;
      chunk = len; /* the rest fits the next panel */
    }
    if (chunk > len)
      chunk = len;
    if (!src || stride == 1)
      move_chunk(d, src, chunk);
    else if (stride == 2)
      move_chunk_stride2(d, src, chunk);
    else
      for (size_t i = 0; i < chunk; i++)
        d[i] = src[(size_t)stride * i];
    if (src)
      src += (size_t)stride * chunk;
    r->at += chunk;
    len -= chunk;
  }
}

/* im2col_row's row, packed. */
PACKED_PATH static void im2col_row_packed(const float *x, const geom3_t *t,
                                          const int64_t *kk, packed_row_t *r) {
  int64_t off[3], lo2, hi2;
  for (unsigned i = 0; i < 3; i++)
    off[i] = kk[i] * t->d[i] - t->pb[i];
  size_t o2n = (size_t)t->out[2];
  valid_range(t->out[2], t->s[2], off[2], t->in[2], &lo2, &hi2);
  for (int64_t o0 = 0; o0 < t->out[0]; o0++) {
    int64_t i0 = o0 * t->s[0] + off[0];
    for (int64_t o1 = 0; o1 < t->out[1]; o1++) {
      int64_t i1 = o1 * t->s[1] + off[1];
      if (i0 < 0 || i0 >= t->in[0] || i1 < 0 || i1 >= t->in[1]) {
        put(r, NULL, 1, o2n);
        continue;
      }
      const float *xr =
          x + ((size_t)i0 * (size_t)t->in[1] + (size_t)i1) * (size_t)t->in[2];
      put(r, NULL, 1, (size_t)lo2);
      put(r, xr + lo2 * t->s[2] + off[2], t->s[2], (size_t)(hi2 - lo2));
      put(r, NULL, 1, (size_t)(t->out[2] - hi2));
    }
  }
}

/* im2col_row_packed for a stride-1 2-D (or 1-D) conv whose output rows are
 * as wide as its input's: the row is then the input plane shifted by
 * off1 * W + off2, so one long copy does it, and only the columns that
 * wrapped across a row's edge are zeroed after. false when not such. */
PACKED_PATH static bool im2col_row_shifted(const float *x, const geom3_t *t,
                                           const int64_t *kk, packed_row_t *r) {
  if (t->in[0] != 1 || t->out[0] != 1 || t->s[1] != 1 || t->s[2] != 1 ||
      t->out[2] != t->in[2])
    return false;
  int64_t w = t->in[2], n = (int64_t)t->out_size, lo1, hi1, lo2, hi2;
  int64_t off1 = kk[1] * t->d[1] - t->pb[1], off2 = kk[2] * t->d[2] - t->pb[2];
  valid_range(t->out[1], 1, off1, t->in[1], &lo1, &hi1);
  valid_range(t->out[2], 1, off2, t->in[2], &lo2, &hi2);
  /* Rows lo1..hi1 read input rows lo1 + off1..: from the first column
   * that stays inside the plane to the last. */
  int64_t a = lo1 * w + (off2 < 0 ? -off2 : 0);
  int64_t b = hi1 * w - (off2 > 0 ? off2 : 0);
  if (b < a)
    b = a;
  r->at = r->base;
  put(r, NULL, 1, (size_t)a);
  put(r, x + a + off1 * w + off2, 1, (size_t)(b - a));
  put(r, NULL, 1, (size_t)(n - b));
  float *row = r->packed + r->kk * GS__GEMM_NR; /* column o at o / NR */
  size_t panel = GS__GEMM_NR * r->kdim;
  for (int64_t o1 = lo1; o1 < hi1; o1++) { /* the wrapped columns */
    for (int64_t o = o1 * w; o < o1 * w + lo2; o++)
      row[(r->base + (size_t)o) / GS__GEMM_NR * panel +
          (r->base + (size_t)o) % GS__GEMM_NR] = 0.0f;
    for (int64_t o = o1 * w + hi2; o < (o1 + 1) * w; o++)
      row[(r->base + (size_t)o) / GS__GEMM_NR * panel +
          (r->base + (size_t)o) % GS__GEMM_NR] = 0.0f;
  }
  r->at = r->base + (size_t)n;
  return true;
}

/* Threads for packing: one for under 8Ki floats (32 KiB, about 2 us of
 * packing), where handing a part to a worker costs about what it saves.
 * (The threshold was 2 MiB, then 256 KiB with a pool that always slept:
 * ResNet-50's packing, 7 to 12 ms an image, ran almost all on one
 * thread at 2 threads.) */
unsigned gs__conv_pack_parts(const pack_job_t *job, unsigned threads) {
  size_t floats = job->kdim * job->t->out_size * job->images;
  return floats < ((size_t)1 << 13) || job->kdim < threads ? 1 : threads;
}

/* Pieces of the rows for threads (gs__parallel_pieces). */
unsigned gs__conv_pack_pieces(const pack_job_t *job, unsigned threads) {
  size_t want = (size_t)GS__PIECES * threads;
  return (unsigned)(job->kdim < want ? job->kdim : want);
}

/* A strided 2-D conv of a small output (cnn_small's 3x3 stride-2 conv,
 * 8x8; ResNet-50's stride-2 3x3 convs at 14x14 and 7x7) is packed by
 * masked gathers, 16 columns at a time, each lane's input row and column
 * the output's origin (worked out once per call) moved by the tap: row by
 * row of the output, such short rows cost three puts each, more than the
 * moves (cnn_small's conv, 1 thread: 15.9-19.6 us to 10.0-11.7). Not 1x1
 * (ResNet-50's stride-2 downsamples at 14x14: 2.4 to 2.7-3.1 ms). */
#define GATHER_OUT 256 /* most output positions of an image */

static bool gather_fits(const pack_job_t *job) {
  const geom3_t *t = job->t;
  return job->images == 1 && t->k_size > 1 && t->in[0] == 1 && t->out[0] == 1 &&
         (t->s[1] > 1 || t->s[2] > 1) && t->out_size <= GATHER_OUT &&
         t->in_size < ((size_t)1 << 30) && t->in[1] < (1 << 20) &&
         t->in[2] < (1 << 20);
}

PACKED_PATH static void pack_gather(const pack_job_t *job, size_t r0,
                                    size_t r1) {
  const geom3_t *t = job->t;
  size_t cols = (t->out_size + GS__GEMM_NR - 1) / GS__GEMM_NR * GS__GEMM_NR;
  int32_t iy[GATHER_OUT + GS__GEMM_NR], ix[GATHER_OUT + GS__GEMM_NR];
  size_t o = 0;
  for (int64_t oy = 0; oy < t->out[1]; oy++)
    for (int64_t ox = 0; ox < t->out[2]; ox++, o++) {
      iy[o] = (int32_t)(oy * t->s[1] - t->pb[1]);
      ix[o] = (int32_t)(ox * t->s[2] - t->pb[2]);
    }
  for (; o < cols; o++) /* past the outputs: never inside */
    iy[o] = ix[o] = -(1 << 30);
  __m512i h = _mm512_set1_epi32((int)t->in[1]);
  __m512i w = _mm512_set1_epi32((int)t->in[2]);
  for (size_t row = r0; row < r1; row++) {
    size_t c = row / t->k_size, tap = row % t->k_size;
    const float *xc = job->x + c * t->in_size;
    __m512i dy = _mm512_set1_epi32((int)(tap / (size_t)t->k[2] * t->d[1]));
    __m512i dx = _mm512_set1_epi32((int)(tap % (size_t)t->k[2] * t->d[2]));
    for (size_t o0 = 0; o0 < cols; o0 += 16) {
      __m512i y = _mm512_add_epi32(_mm512_loadu_si512(iy + o0), dy);
      __m512i x = _mm512_add_epi32(_mm512_loadu_si512(ix + o0), dx);
      /* unsigned: below 0 is above */
      __mmask16 in =
          _mm512_mask_cmplt_epu32_mask(_mm512_cmplt_epu32_mask(y, h), x, w);
      __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(y, w), x);
      __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, at, xc, 4);
      _mm512_storeu_ps(job->packed +
                           o0 / GS__GEMM_NR * GS__GEMM_NR * job->kdim +
                           row * GS__GEMM_NR + o0 % GS__GEMM_NR,
                       v);
    }
  }
}

/* Each channel's four phases, [py][px][oy][ox] = x[2 oy + py][2 ox + px],
 * 0 beyond the input: even and odd columns by two loads and a permute
 * each 16 (move_chunk_stride2). */
PACKED_PATH void gs__conv_phase_split(const float *x, const geom3_t *t,
                                      size_t channels, float *phases) {
  size_t oh = (size_t)t->out[1], ow = (size_t)t->out[2];
  size_t h = (size_t)t->in[1], w = (size_t)t->in[2];
  for (size_t c = 0; c < channels; c++, x += t->in_size)
    for (size_t py = 0; py < 2; py++)
      for (size_t px = 0; px < 2; px++)
        for (size_t oy = 0; oy < oh; oy++, phases += ow) {
          size_t iy = 2 * oy + py, cols = px < w ? (w - px + 1) / 2 : 0;
          if (iy >= h)
            cols = 0;
          cols = cols < ow ? cols : ow;
          if (cols)
            move_chunk_stride2(phases, x + iy * w + px, cols);
          move_chunk(phases + cols, NULL, ow - cols);
        }
}

PACKED_PATH void gs__conv_pack_part(void *arg, unsigned part, unsigned parts) {
  const pack_job_t *job = arg;
  const geom3_t *t = job->t;
  size_t r0 = job->kdim * part / parts, r1 = job->kdim * (part + 1) / parts;
  size_t n = t->out_size, all = n * job->images;
  size_t pad = (GS__GEMM_NR - all % GS__GEMM_NR) % GS__GEMM_NR;
  if (gather_fits(job)) {
    pack_gather(job, r0, r1);
    return;
  }
  for (size_t row = r0; row < r1; row++) {
    size_t c = row / t->k_size, tap = row % t->k_size;
    int64_t kk[3] = {(int64_t)tap / (t->k[1] * t->k[2]),
                     (int64_t)tap / t->k[2] % t->k[1], (int64_t)tap % t->k[2]};
    packed_row_t r = {job->packed, job->kdim, 0, row, 0};
    for (size_t img = 0; img < job->images; img++) {
      const float *xc = job->x + img * job->image_floats + c * t->in_size;
      r.at = r.base = img * n;
      if (t->pointwise)
        put(&r, xc, 1, n);
      else if (!im2col_row_shifted(xc, t, kk, &r))
        im2col_row_packed(xc, t, kk, &r);
    }
    put(&r, NULL, 1, pad); /* padding columns: computed, never stored */
  }
}
