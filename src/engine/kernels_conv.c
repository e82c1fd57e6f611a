/* Conv on the CPU (NCHW, 1-D to 3-D). Where AVX-512F is and a group has
 * at least 8 filters, on kernels_gemm.c's packed GEMM: W packed at load,
 * the input written into 32-column panels per run (im2col on the way; a
 * batch's images side by side where an image fills few panels) or, for a
 * stride-1 "same"-width conv of up to 128 filters, read in place by the
 * tile (direct_x; a small stride-2 conv's input split into its phases
 * first, phase_x); bias, residual and activation applied by the tile as
 * it stores. Depthwise convs are computed directly. Anything else:
 * im2col (none for 1x1) and OpenBLAS's sgemm, then one pass adding bias,
 * residual and activation. Also gs__apply_act, a fused Relu or Clip.
 * (BatchNormalization left unfolded runs in kernels_math.c.) */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "engine/engine_int.h"
#include "engine/kernels_conv_int.h"
#include "engine/kernels_gemm.h"

static void geom3(const gs__conv_geom_t *g, geom3_t *t) {
  unsigned lead = 3 - g->n_spatial;
  t->pointwise = true;
  t->in_size = t->out_size = t->k_size = 1;
  for (unsigned i = 0; i < 3; i++) {
    bool real = i >= lead;
    unsigned j = real ? i - lead : 0;
    t->in[i] = real ? g->in[j] : 1;
    t->out[i] = real ? g->out[j] : 1;
    t->k[i] = real ? g->kernel[j] : 1;
    t->s[i] = real ? g->strides[j] : 1;
    t->d[i] = real ? g->dilations[j] : 1;
    t->pb[i] = real ? g->pads[j] : 0;
    int64_t pe = real ? g->pads[g->n_spatial + j] : 0;
    t->pointwise = t->pointwise && t->k[i] == 1 && t->s[i] == 1 &&
                   t->pb[i] == 0 && pe == 0;
    t->in_size *= (size_t)t->in[i];
    t->out_size *= (size_t)t->out[i];
    t->k_size *= (size_t)t->k[i];
  }
}

/* Whether node n runs on the packed GEMM: its W was packed at load and
 * this CPU runs the kernel. */
static bool packed_path(const gs__node_t *n) {
  return n->cpu_weights && gs__gemm_available();
}

/* Whether a batch's images go side by side into one product (their
 * columns concatenated): worth it where one image's outputs fill few
 * 32-column panels (ResNet's 14x14 and 7x7 stages), at the cost of one
 * pass that moves the product into NCHW. */
static bool merge_images(const gs__conv_geom_t *g, const geom3_t *t) {
  return g->batch > 1 && g->group == 1 && t->out_size < 256;
}

/* Whether a batch's images go to the threads one each (conv_apart): where
 * one image's product is small (cnn_small's convs, under 8 MFLOP), so that
 * splitting each image's product would cost a hand-over per image. Each
 * image has its own packed B in the scratch, planned whatever the thread
 * count (it may change between plan and run). */
#define APART_MAX 4e6 /* multiply-adds of one image's product */

static bool images_apart(const gs__conv_geom_t *g, const geom3_t *t) {
  size_t kdim = (size_t)g->in_channels * t->k_size;
  return g->batch > 1 && g->group == 1 &&
         (double)g->out_channels * (double)t->out_size * (double)kdim <
             APART_MAX;
}

/* Whether one image's output rows are cut into chunks (conv_chunked), each
 * packed and multiplied on its own: where an image's packed X' is larger
 * than a chunk (ResNet-50's 7x7 conv: 7.4 MB an image, the 56x56 and 28x28
 * 1x1 and stride-2 convs: 0.4 to 3.6 MB), it was written to memory whole
 * and read back by the GEMM; a chunk stays in the L2 of the core that
 * packed it and multiplies it. Only where packed W fits L2 too (each chunk
 * reads all of it), for 2-D (1-D) convs of one group. Threads take whole
 * chunks from a counter, each into a scratch slot of its own, so that no
 * chunk is handed between cores. */
#define CHUNK_BYTES ((size_t)512 << 10) /* packed X' of a chunk, about */
#define CHUNK_W_MAX ((size_t)128 << 10) /* bytes of packed W */
#define CHUNK_IMAGE 4 /* an image's packed X' cut from 4 chunks' size */
#define CHUNK_SLOTS 4 /* threads a plan has slots for */

/* gs__conv_set_chunk_bytes: the tests' chunks, cut from images of more
 * than one chunk. */
static size_t chunk_bytes = CHUNK_BYTES,
              chunk_image = CHUNK_IMAGE * CHUNK_BYTES;

void gs__conv_set_chunk_bytes(size_t bytes) {
  chunk_bytes = bytes ? bytes : CHUNK_BYTES;
  chunk_image = bytes ? bytes : CHUNK_IMAGE * CHUNK_BYTES;
}

/* Output rows per chunk: about chunk_bytes of packed X', a multiple of
 * the rows that fill whole 32-column panels where that is at most the
 * image; 0 when the image is not cut. */
static size_t chunk_rows(const gs__conv_geom_t *g, const geom3_t *t) {
  size_t kdim = (size_t)g->in_channels * t->k_size, w = (size_t)t->out[2];
  if (g->group != 1 || t->out[0] != 1 || t->out[1] < 2 ||
      gs__gemm_packed_a_count((size_t)g->out_channels, kdim) * sizeof(float) >
          CHUNK_W_MAX ||
      kdim * t->out_size * sizeof(float) <= chunk_image)
    return 0;
  size_t rows = chunk_bytes / (kdim * w * sizeof(float)), whole = 1;
  while (whole * w % GS__GEMM_NR != 0)
    whole++; /* at most NR */
  if (rows >= whole)
    rows -= rows % whole;
  rows = rows ? rows : 1;
  return rows < (size_t)t->out[1] ? rows : 0;
}

/* The rows a run cuts at (at most the planned rows, for which the slots
 * are sized): fewer where that gives every thread as many chunks (ResNet's
 * 7x7 conv at batch 1 and 2 threads: 19 chunks of 6 rows, 28 of 4). */
static size_t chunk_rows_run(const gs__conv_geom_t *g, const geom3_t *t,
                             size_t rows, unsigned threads) {
  size_t whole = 1, h = (size_t)t->out[1];
  while (whole * (size_t)t->out[2] % GS__GEMM_NR != 0)
    whole++;
  size_t step = rows >= whole ? whole : 1;
  for (size_t r = rows; r >= step; r -= step)
    if ((size_t)g->batch * ((h + r - 1) / r) % threads == 0)
      return r;
  return rows;
}

static size_t chunk_slots(const gs__conv_geom_t *g, const geom3_t *t,
                          size_t rows) {
  size_t chunks = (size_t)g->batch * (((size_t)t->out[1] + rows - 1) / rows);
  return chunks < CHUNK_SLOTS ? chunks : CHUNK_SLOTS;
}

/* Whether the packed GEMM reads X' in place (gs__gemm_direct_t) rather
 * than packing it: a 2-D (or 1-D) stride-1 conv whose input rows are as
 * wide as its output's (3x3 with pads 1) and with at most 128 filters a
 * group, where packing costs most next to the product (per conv, min of
 * paired p50s: ResNet-50's 3x3 56x56 layer 3.0 to 1.7-2.0 ms, 28x28 1.48
 * to 1.37, cnn_small's 16-filter 3x3 0.048 to 0.032). Not with more
 * filters (the 14x14 and 7x7 layers: 1.2 to 1.5x slower, the input's rows
 * read at an offset split cache lines where packed panels do not), nor
 * pointwise (1x1 in place: 1.1 to 1.8x slower but for 64 x 64 at 56x56).
 * Bounds keep the direct tile's 32-bit lane arithmetic exact. */
static bool direct_x(const geom3_t *t, size_t filters) {
  const int64_t lim = (int64_t)1 << 20;
  if (t->pointwise || filters > 128 || t->out_size >= (size_t)lim ||
      t->in_size >= (size_t)lim)
    return false;
  return t->in[0] == 1 && t->out[0] == 1 && t->s[1] == 1 && t->s[2] == 1 &&
         t->out[2] == t->in[2] && t->k_size <= GS__GEMM_DIRECT_TAPS &&
         t->k[1] * t->d[1] < lim && t->k[2] * t->d[2] < lim && t->pb[1] < lim &&
         t->pb[2] < lim;
}

/* The direct X' of one image's (group's) channels from x. */
static void direct_setup(const geom3_t *t, const float *x,
                         gs__gemm_direct_t *d) {
  d->x = x;
  d->plane = t->in_size;
  d->taps = (unsigned)t->k_size;
  d->width = t->in[2];
  d->rows = t->in[1];
  for (unsigned tap = 0; tap < d->taps; tap++) {
    d->dy[tap] = tap / t->k[2] * t->d[1] - t->pb[1];
    d->dx[tap] = tap % t->k[2] * t->d[2] - t->pb[2];
    d->at[tap] = 0;
  }
}

/* Whether a stride-2 conv's input is split into its four phases (even and
 * odd rows times even and odd columns, gs__conv_phase_split) and the
 * packed GEMM reads those in place as it reads a stride-1 conv's input
 * (direct_x): input row 2 * oy + ky - pad is row oy + (ky - pad) / 2
 * (rounded down) of phase (ky - pad) % 2, so each tap reads one phase
 * shifted by -1, 0 or 1 rows and columns. Each phase plane is as wide and
 * as high as the output, so the tile's masks take the pads for it: which
 * needs twice the output to cover the input (no input row or column left
 * beyond the last output's). For a small output and up to 128 filters, as
 * direct_x, and ahead of merge_images: cnn_small's 3x3 stride-2 conv (8x8
 * outputs) at batch 8 spent 2/3 of its time writing the merged im2col, 3
 * puts per 8-column row (per conv, 1 thread: 122 to 62 us; 2: 65 to 32).
 * ResNet-50's layer2.0.conv2 (128 filters, 28x28 outputs) too: 2.51-2.55
 * to 2.38-2.41 ms at batch 1 and 1 thread, 12.2-13.9 to 10.5-11.0 at
 * batch 8 and 2 threads (the split shared by the threads). */
#define PHASE_OUT 1024 /* most output positions of an image */

static bool phase_x(const geom3_t *t, size_t filters) {
  return filters <= 128 && t->k_size > 1 && t->out_size <= PHASE_OUT &&
         t->k_size <= GS__GEMM_DIRECT_TAPS && t->in[0] == 1 && t->out[0] == 1 &&
         t->s[1] == 2 && t->s[2] == 2 && t->d[1] == 1 && t->d[2] == 1 &&
         2 * t->out[1] >= t->in[1] && 2 * t->out[2] >= t->in[2] &&
         t->pb[1] < PHASE_OUT && t->pb[2] < PHASE_OUT;
}

/* Floats of one image's (group's) phases of channels channels. */
static size_t phase_floats(const geom3_t *t, size_t channels) {
  return channels * 4 * t->out_size;
}

/* The direct X' over phases xp (gs__conv_phase_split's). */
static void phase_setup(const geom3_t *t, const float *xp,
                        gs__gemm_direct_t *d) {
  d->x = xp;
  d->plane = 4 * t->out_size;
  d->taps = (unsigned)t->k_size;
  d->width = t->out[2];
  d->rows = t->out[1];
  for (unsigned tap = 0; tap < d->taps; tap++) {
    int64_t ry = tap / t->k[2] - t->pb[1], rx = tap % t->k[2] - t->pb[2];
    int64_t py = (ry % 2 + 2) % 2, px = (rx % 2 + 2) % 2;
    d->dy[tap] = (ry - py) / 2;
    d->dx[tap] = (rx - px) / 2;
    d->at[tap] = (py * 2 + px) * (int64_t)t->out_size;
  }
}

size_t gs__scratch_conv(const gs__node_t *n, const gs__tensor_t *in,
                        const gs__tensor_t *out) {
  gs__conv_geom_t g;
  geom3_t t;
  (void)out;
  if (gs__conv_geometry(n, &in[0], &in[1], &g, NULL) != GS_OK)
    return 0;
  geom3(&g, &t);
  /* Shape inference bounded every planned tensor; the product of these
   * parts of W and Y cannot overflow size_t on a 64-bit host. */
  size_t kdim = (size_t)(g.in_channels / g.group) * t.k_size;
  size_t mg = (size_t)(g.out_channels / g.group);
  if (packed_path(n) && phase_x(&t, mg))
    return phase_floats(&t, (size_t)g.in_channels) * (size_t)g.batch *
           sizeof(float);
  if (packed_path(n) && merge_images(&g, &t)) {
    size_t all = t.out_size * (size_t)g.batch;
    return (gs__gemm_packed_b_count(kdim, all) + all * (size_t)g.out_channels) *
           sizeof(float);
  }
  if (packed_path(n) && direct_x(&t, mg))
    return 0;
  if (packed_path(n) && images_apart(&g, &t))
    return gs__gemm_packed_b_count(kdim, t.out_size) * (size_t)g.batch *
           sizeof(float);
  size_t rows = packed_path(n) ? chunk_rows(&g, &t) : 0;
  if (rows)
    return gs__gemm_packed_b_count(kdim, rows * (size_t)t.out[2]) *
           chunk_slots(&g, &t, rows) * sizeof(float);
  if (packed_path(n))
    return gs__gemm_packed_b_count(kdim, t.out_size) * sizeof(float);
  if (t.pointwise || g.in_channels == g.group) /* 1x1; direct depthwise */
    return 0;
  return kdim * t.out_size * sizeof(float);
}

/* One row of the column matrix: input channel plane x sampled at kernel
 * offset (k0, k1, k2) for every output position, 0 in the padding. */
static void im2col_row(const float *x, const geom3_t *t, const int64_t *kk,
                       float *row) {
  int64_t off[3], lo2, hi2;
  for (unsigned i = 0; i < 3; i++)
    off[i] = kk[i] * t->d[i] - t->pb[i];
  size_t o2n = (size_t)t->out[2];
  valid_range(t->out[2], t->s[2], off[2], t->in[2], &lo2, &hi2);
  for (int64_t o0 = 0; o0 < t->out[0]; o0++) {
    int64_t i0 = o0 * t->s[0] + off[0];
    for (int64_t o1 = 0; o1 < t->out[1]; o1++, row += o2n) {
      int64_t i1 = o1 * t->s[1] + off[1];
      if (i0 < 0 || i0 >= t->in[0] || i1 < 0 || i1 >= t->in[1]) {
        memset(row, 0, o2n * sizeof *row);
        continue;
      }
      const float *xr =
          x + ((size_t)i0 * (size_t)t->in[1] + (size_t)i1) * (size_t)t->in[2];
      memset(row, 0, (size_t)lo2 * sizeof *row);
      if (t->s[2] == 1)
        memcpy(row + lo2, xr + lo2 + off[2], (size_t)(hi2 - lo2) * sizeof *row);
      else
        for (int64_t o2 = lo2; o2 < hi2; o2++)
          row[o2] = xr[o2 * t->s[2] + off[2]];
      memset(row + hi2, 0, (size_t)(t->out[2] - hi2) * sizeof *row);
    }
  }
}

static void im2col(const float *x, const geom3_t *t, int64_t channels,
                   float *col) {
  int64_t kk[3];
  for (int64_t c = 0; c < channels; c++) {
    const float *xc = x + (size_t)c * t->in_size;
    for (kk[0] = 0; kk[0] < t->k[0]; kk[0]++)
      for (kk[1] = 0; kk[1] < t->k[1]; kk[1]++)
        for (kk[2] = 0; kk[2] < t->k[2]; kk[2]++, col += t->out_size)
          im2col_row(xc, t, kk, col);
  }
}

int gs__conv_prepack(gs_model_t *m, gs_error_t *err) {
  if (!gs__gemm_available())
    return GS_OK;
  for (size_t i = 0; i < m->n_nodes; i++) {
    gs__node_t *n = &m->nodes[i];
    if (n->op->code != GS__OP_CONV || n->cpu_weights)
      continue;
    const gs__value_t *wv = &m->values[n->in[1]];
    const gs__tensor_t *w = &wv->constant;
    if (wv->kind != GS__VALUE_CONST || w->dtype != GS_DTYPE_FP32 ||
        w->rank < 3 || !w->data || w->count == 0 || n->p.group < 1 ||
        w->dims[0] % n->p.group)
      continue;
    size_t mg = (size_t)(w->dims[0] / n->p.group),
           kdim = w->count / (size_t)w->dims[0];
    /* Fewer filters per group than a panel's rows (depthwise) would mostly
     * multiply padding (a panel is 4, 8 or 12 rows): those stay on the BLAS
     * path. */
    if (mg < 8)
      continue;
    size_t per = gs__gemm_packed_a_count(mg, kdim);
    if (!(n->cpu_weights = malloc((size_t)n->p.group * per * sizeof(float))))
      return gs_error_set(err, GS_ENOMEM, "out of memory");
    for (int64_t gi = 0; gi < n->p.group; gi++)
      gs__gemm_pack_a((const float *)w->data + (size_t)gi * mg * kdim, mg, kdim,
                      n->cpu_weights + (size_t)gi * per);
  }
  return GS_OK;
}

void gs__apply_act(const gs__params_t *p, float *y, size_t count) {
  if (p->act == GS__ACT_RELU) {
    for (size_t i = 0; i < count; i++)
      y[i] = y[i] > 0.0f ? y[i] : 0.0f;
  } else if (p->act == GS__ACT_CLIP) {
    float lo = p->act_min, hi = p->act_max;
    for (size_t i = 0; i < count; i++) {
      float v = y[i] < lo ? lo : y[i];
      y[i] = v > hi ? hi : v;
    }
  }
}

/* y = act(y + b + z) over rows of len, b per row (NULL: none), z shaped
 * as y (NULL: none). */
static void finish_rows(const gs__params_t *p, float *y, const float *b,
                        const float *z, size_t rows, size_t len) {
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * len, bias = b ? b[r] : 0.0f;
    if (z) {
      const float *zr = z + r * len;
      for (size_t i = 0; i < len; i++)
        yr[i] += bias + zr[i];
    } else if (b) {
      for (size_t i = 0; i < len; i++)
        yr[i] += bias;
    }
    gs__apply_act(p, yr, len);
  }
}

/* Conv with one input channel per group (depthwise, any channel
 * multiplier) computed directly: each output plane starts as its bias and
 * gains weight * shifted input row by row; no im2col, no BLAS. */
static void conv_depthwise(const gs__conv_geom_t *g, const geom3_t *t,
                           const float *x, const float *w, const float *b,
                           float *y) {
  size_t mg = (size_t)(g->out_channels / g->group);
  int64_t kk[3];
  for (int64_t img = 0; img < g->batch; img++)
    for (size_t m = 0; m < (size_t)g->out_channels; m++) {
      const float *xc =
          x + ((size_t)img * (size_t)g->in_channels + m / mg) * t->in_size;
      const float *wm = w + m * t->k_size;
      float *ym = y + ((size_t)img * (size_t)g->out_channels + m) * t->out_size;
      for (size_t i = 0; i < t->out_size; i++)
        ym[i] = b ? b[m] : 0.0f;
      for (kk[0] = 0; kk[0] < t->k[0]; kk[0]++)
        for (kk[1] = 0; kk[1] < t->k[1]; kk[1]++)
          for (kk[2] = 0; kk[2] < t->k[2]; kk[2]++) {
            float wv = *wm++;
            int64_t off[3], lo2, hi2;
            for (unsigned i = 0; i < 3; i++)
              off[i] = kk[i] * t->d[i] - t->pb[i];
            valid_range(t->out[2], t->s[2], off[2], t->in[2], &lo2, &hi2);
            for (int64_t o0 = 0; o0 < t->out[0]; o0++) {
              int64_t i0 = o0 * t->s[0] + off[0];
              if (i0 < 0 || i0 >= t->in[0])
                continue;
              for (int64_t o1 = 0; o1 < t->out[1]; o1++) {
                int64_t i1 = o1 * t->s[1] + off[1];
                if (i1 < 0 || i1 >= t->in[1])
                  continue;
                const float *xr = xc +
                                  ((size_t)i0 * (size_t)t->in[1] + (size_t)i1) *
                                      (size_t)t->in[2] +
                                  off[2];
                float *yr = ym + ((size_t)o0 * (size_t)t->out[1] + (size_t)o1) *
                                     (size_t)t->out[2];
                if (t->s[2] == 1)
                  for (int64_t o2 = lo2; o2 < hi2; o2++)
                    yr[o2] += wv * xr[o2];
                else
                  for (int64_t o2 = lo2; o2 < hi2; o2++)
                    yr[o2] += wv * xr[o2 * t->s[2]];
              }
            }
          }
    }
}

/* conv_merged's product [M][images * HW] moved into NCHW with bias,
 * residual and activation: part i does a range of the images * M rows. */
typedef struct {
  const gs__params_t *p;
  const float *prod, *bias, *z;
  float *y;
  size_t m, hw, images;
} merged_out_t;

static void merged_out_part(void *arg, unsigned part, unsigned parts) {
  const merged_out_t *j = arg;
  size_t rows = j->images * j->m, all = j->images * j->hw;
  for (size_t r = rows * part / parts; r < rows * (part + 1) / parts; r++) {
    size_t img = r / j->m, o = r % j->m;
    float *yr = j->y + r * j->hw;
    memcpy(yr, j->prod + o * all + img * j->hw, j->hw * sizeof *yr);
    finish_rows(j->p, yr, j->bias ? j->bias + o : NULL,
                j->z ? j->z + r * j->hw : NULL, 1, j->hw);
  }
}

/* The packed GEMM over all images at once (merge_images): the product
 * lands in scratch as [M][images * HW], then bias, residual and activation
 * are applied on the way to NCHW. */
static int conv_merged(const gs__node_t *n, const gs__conv_geom_t *g,
                       const geom3_t *t, const gs__tensor_t *in,
                       gs__tensor_t *out) {
  size_t kdim = (size_t)g->in_channels * t->k_size, hw = t->out_size;
  size_t all = hw * (size_t)g->batch, m = (size_t)g->out_channels;
  unsigned threads = gs_engine_threads();
  const float *b = n->n_in > 2 && n->in[2] >= 0 ? in[2].data : NULL;
  const float *z = n->p.residual > 0 ? in[n->p.residual].data : NULL;
  float *packed = in[n->n_in].data, *y = out->data;
  float *prod = packed + gs__gemm_packed_b_count(kdim, all);
  pack_job_t pj = {in[0].data,
                   t,
                   kdim,
                   packed,
                   (size_t)g->batch,
                   (size_t)g->in_channels * t->in_size};
  gs__parallel_pieces(gs__conv_pack_part, &pj,
                      gs__conv_pack_pieces(&pj, threads),
                      gs__conv_pack_parts(&pj, threads));
  gs__gemm_t gm = {.m = m,
                   .n = all,
                   .k = kdim,
                   .ldc = all,
                   .a = n->cpu_weights,
                   .b = packed,
                   .c = prod};
  gs__gemm_run(&gm, threads);
  merged_out_t mo = {&n->p, prod, b, z, y, m, hw, (size_t)g->batch};
  size_t floats = m * all;
  gs__parallel_pieces(merged_out_part, &mo, GS__PIECES * threads,
                      floats < ((size_t)1 << 14) || threads < 2 ? 1 : threads);
  return GS_OK;
}

/* gs__conv_phase_split over the threads, a range of channels each. */
typedef struct {
  const float *x;
  const geom3_t *t;
  size_t channels;
  float *phases;
} phase_job_t;

static void phase_part(void *arg, unsigned part, unsigned parts) {
  const phase_job_t *j = arg;
  size_t c0 = j->channels * part / parts, c1 = j->channels * (part + 1) / parts;
  gs__conv_phase_split(j->x + c0 * j->t->in_size, j->t, c1 - c0,
                       j->phases + phase_floats(j->t, c0));
}

/* One image's (group's) product on the packed GEMM: X' read in place
 * (direct_x) or packed into col first; y, z at the image's outputs. */
typedef struct {
  const gs__node_t *n;
  const geom3_t *t;
  const float *a, *bias; /* W's packed panels and bias of this group */
  size_t m, kdim;
} conv_one_t;

static void conv_one(const conv_one_t *c, const float *x, const float *z,
                     float *col, float *y, unsigned threads) {
  gs__gemm_direct_t d;
  gs__gemm_t gm = {.m = c->m,
                   .n = c->t->out_size,
                   .k = c->kdim,
                   .ldc = c->t->out_size,
                   .a = c->a,
                   .b = col,
                   .c = y,
                   .bias = c->bias,
                   .z = z,
                   .act = c->n->p.act,
                   .act_min = c->n->p.act_min,
                   .act_max = c->n->p.act_max};
  if (direct_x(c->t, c->m)) {
    direct_setup(c->t, x, &d);
    gm.direct = &d;
  } else if (phase_x(c->t, c->m)) {
    phase_job_t pj = {x, c->t, c->kdim / c->t->k_size, col};
    /* one thread for under 8Ki floats, as the packing */
    bool one = phase_floats(c->t, pj.channels) < ((size_t)1 << 13);
    gs__parallel_pieces(phase_part, &pj, GS__PIECES * threads,
                        one ? 1 : threads);
    phase_setup(c->t, col, &d);
    gm.direct = &d;
  } else {
    pack_job_t pj = {x, c->t, c->kdim, col, 1, 0};
    gs__parallel_pieces(gs__conv_pack_part, &pj,
                        gs__conv_pack_pieces(&pj, threads),
                        gs__conv_pack_parts(&pj, threads));
  }
  gs__gemm_run(&gm, threads);
}

/* images_apart's run: each image a piece (gs__parallel_pieces), run
 * alone with its own packed B (when packed): a thread that the scheduler
 * holds up (a busy machine) delays one image, not its share of the batch.
 * Each thread starts on its own run of images, as the pieces of the ops
 * around it do, so that an image's input and output mostly stay in the
 * cache of one core from op to op (an atomic counter handed out images
 * 0, 2, 4, 6 to one thread, whose MaxPool then read images 0 to 3). */
typedef struct {
  conv_one_t one;
  const float *x, *z;
  float *col, *y;
  size_t batch, cin;
} apart_job_t;

static void conv_apart_part(void *arg, unsigned part, unsigned parts) {
  apart_job_t *j = arg;
  size_t hw = j->one.t->out_size, m = j->one.m;
  size_t per_b = direct_x(j->one.t, m) ? 0
                 : phase_x(j->one.t, m)
                     ? phase_floats(j->one.t, j->cin)
                     : gs__gemm_packed_b_count(j->one.kdim, hw);
  for (size_t img = j->batch * part / parts;
       img < j->batch * (part + 1) / parts; img++)
    conv_one(&j->one, j->x + img * j->cin * j->one.t->in_size,
             j->z ? j->z + img * m * hw : NULL,
             per_b ? j->col + img * per_b : NULL, /* no scratch if direct */
             j->y + img * m * hw, 1);
}

/* conv_chunked's run: each part takes the next chunk (an image's output
 * rows [r0, r0 + rows)) not yet taken, packs it into its own slot and
 * multiplies it on its own thread, until none is left. A chunk is the
 * conv of a geometry whose output is those rows: the row padding moved by
 * r0 * stride (a pointwise conv's input moved by r0 rows instead). */
typedef struct {
  conv_one_t one;
  const float *x, *z;
  float *slots, *y;
  size_t rows, per_image, chunks, slot_floats, cin;
  atomic_size_t next; /* the next chunk to take */
} chunk_job_t;

static void conv_chunk_part(void *arg, unsigned part, unsigned parts) {
  chunk_job_t *j = arg;
  const geom3_t *t = j->one.t;
  size_t w = (size_t)t->out[2], m = j->one.m;
  float *col = j->slots + part * j->slot_floats;
  (void)parts;
  for (size_t c; (c = atomic_fetch_add(&j->next, 1)) < j->chunks;) {
    size_t img = c / j->per_image, r0 = c % j->per_image * j->rows;
    size_t rows =
        (size_t)t->out[1] - r0 < j->rows ? (size_t)t->out[1] - r0 : j->rows;
    geom3_t ct = *t;
    const float *x = j->x + img * j->cin * t->in_size;
    ct.out[1] = (int64_t)rows;
    ct.out_size = rows * w;
    if (t->pointwise)
      x += r0 * w; /* input rows are output rows */
    else
      ct.pb[1] -= (int64_t)r0 * t->s[1];
    size_t at = img * m * t->out_size + r0 * w; /* the chunk's output */
    pack_job_t pj = {x, &ct, j->one.kdim, col, 1, 0};
    gs__conv_pack_part(&pj, 0, 1);
    gs__gemm_t gm = {.m = m,
                     .n = ct.out_size,
                     .k = j->one.kdim,
                     .ldc = t->out_size,
                     .a = j->one.a,
                     .b = col,
                     .c = j->y + at,
                     .bias = j->one.bias,
                     .z = j->z ? j->z + at : NULL,
                     .act = j->one.n->p.act,
                     .act_min = j->one.n->p.act_min,
                     .act_max = j->one.n->p.act_max};
    gs__gemm_run(&gm, 1);
  }
}

static int conv_chunked(const gs__node_t *n, const gs__conv_geom_t *g,
                        const geom3_t *t, size_t rows, const gs__tensor_t *in,
                        gs__tensor_t *out) {
  size_t kdim = (size_t)g->in_channels * t->k_size;
  size_t slots = chunk_slots(g, t, rows);
  unsigned threads = gs_engine_threads();
  if (threads > slots)
    threads = (unsigned)slots;
  size_t slot_floats = gs__gemm_packed_b_count(kdim, rows * (size_t)t->out[2]);
  rows = chunk_rows_run(g, t, rows, threads); /* at most the planned rows */
  chunk_job_t j = {{n, t, n->cpu_weights,
                    n->n_in > 2 && n->in[2] >= 0 ? in[2].data : NULL,
                    (size_t)g->out_channels, kdim},
                   in[0].data,
                   n->p.residual > 0 ? in[n->p.residual].data : NULL,
                   in[n->n_in].data,
                   out->data,
                   rows,
                   ((size_t)t->out[1] + rows - 1) / rows,
                   0,
                   slot_floats,
                   (size_t)g->in_channels,
                   0};
  j.chunks = j.per_image * (size_t)g->batch;
  gs__parallel(conv_chunk_part, &j, threads);
  return GS_OK;
}

int gs__run_conv(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err) {
  gs__conv_geom_t g;
  geom3_t t;
  char label[160];
  int rc = gs__conv_geometry(n, &in[0], &in[1], &g, err);
  if (rc != GS_OK || out->count == 0)
    return rc;
  geom3(&g, &t);
  size_t cg = (size_t)(g.in_channels / g.group);
  size_t mg = (size_t)(g.out_channels / g.group), kdim = cg * t.k_size;
  if (mg > INT_MAX || kdim > INT_MAX || t.out_size > INT_MAX)
    return gs_error_set(err, GS_ELIMIT,
                        "%s: matrix dimensions exceed what BLAS indexes",
                        gs__node_label(n, label, sizeof label));
  const float *x = in[0].data, *w = in[1].data;
  const float *b = n->n_in > 2 && n->in[2] >= 0 ? in[2].data : NULL;
  const float *z = n->p.residual > 0 ? in[n->p.residual].data : NULL;
  float *col = in[n->n_in].data, *y = out->data;
  bool phase = packed_path(n) && phase_x(&t, mg);
  if (packed_path(n) && merge_images(&g, &t) && !phase)
    return conv_merged(n, &g, &t, in, out);
  if (packed_path(n) && images_apart(&g, &t) && gs_engine_threads() > 1) {
    apart_job_t j = {{n, &t, n->cpu_weights, b, mg, kdim},
                     x,
                     z,
                     col,
                     y,
                     (size_t)g.batch,
                     (size_t)g.in_channels};
    gs__parallel_pieces(conv_apart_part, &j, (unsigned)j.batch,
                        gs_engine_threads());
    return GS_OK;
  }
  size_t rows = packed_path(n) && !images_apart(&g, &t) &&
                        !direct_x(&t, (size_t)g.out_channels) && !phase
                    ? chunk_rows(&g, &t)
                    : 0;
  if (rows)
    return conv_chunked(n, &g, &t, rows, in, out);
  if (packed_path(n)) {
    size_t per = gs__gemm_packed_a_count(mg, kdim);
    unsigned threads = gs_engine_threads();
    for (int64_t img = 0; img < g.batch; img++)
      for (int64_t gi = 0; gi < g.group; gi++) {
        size_t x_at = ((size_t)img * (size_t)g.group + (size_t)gi) * cg;
        size_t y_at = ((size_t)img * (size_t)g.group + (size_t)gi) * mg;
        conv_one_t one = {n,
                          &t,
                          n->cpu_weights + (size_t)gi * per,
                          b ? b + (size_t)gi * mg : NULL,
                          mg,
                          kdim};
        conv_one(&one, x + x_at * t.in_size, z ? z + y_at * t.out_size : NULL,
                 col, y + y_at * t.out_size, threads);
      }
    return GS_OK;
  }
  if (cg == 1) {
    conv_depthwise(&g, &t, x, w, b, y);
    finish_rows(&n->p, y, NULL, z, (size_t)(g.batch * g.out_channels),
                t.out_size);
    return GS_OK;
  }
  for (int64_t img = 0; img < g.batch; img++)
    for (int64_t gi = 0; gi < g.group; gi++) {
      size_t x_at = ((size_t)img * (size_t)g.group + (size_t)gi) * cg;
      size_t y_at = ((size_t)img * (size_t)g.group + (size_t)gi) * mg;
      const float *xg = x + x_at * t.in_size;
      const float *cols = xg;
      if (!t.pointwise) {
        im2col(xg, &t, (int64_t)cg, col);
        cols = col;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg,
                  (int)t.out_size, (int)kdim, 1.0f, w + (size_t)gi * mg * kdim,
                  (int)kdim, cols, (int)t.out_size, 0.0f, y + y_at * t.out_size,
                  (int)t.out_size);
      finish_rows(&n->p, y + y_at * t.out_size, b ? b + (size_t)gi * mg : NULL,
                  z ? z + y_at * t.out_size : NULL, mg, t.out_size);
    }
  return GS_OK;
}
