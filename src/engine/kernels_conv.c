/* Conv on the CPU (NCHW, 1-D to 3-D): per image and group, a 1x1 stride-1
 * unpadded conv is one sgemm straight on the input; any other gathers the
 * input into the planned im2col scratch first. The bias, a fused residual
 * and activation are added in one pass over each image's output rows while
 * they are still in cache. Also BatchNormalization and Clip. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "engine/engine_int.h"

/* A geometry as three spatial dims: missing leading dims have size 1. */
typedef struct {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3];
  size_t in_size, out_size, k_size;
  bool pointwise; /* 1x1, stride 1, no pads: the input is the column matrix */
} geom3_t;

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

size_t gs__scratch_conv(const gs__node_t *n, const gs__tensor_t *in,
                        const gs__tensor_t *out) {
  gs__conv_geom_t g;
  geom3_t t;
  (void)out;
  if (gs__conv_geometry(n, &in[0], &in[1], &g, NULL) != GS_OK)
    return 0;
  geom3(&g, &t);
  if (t.pointwise)
    return 0;
  /* Shape inference bounded every planned tensor; the product of these
   * parts of W and Y cannot overflow size_t on a 64-bit host. */
  return (size_t)(g.in_channels / g.group) * t.k_size * t.out_size *
         sizeof(float);
}

/* Output positions o in [0, out) whose input o * s + off is in [0, in):
 * [*lo, *hi). */
static void valid_range(int64_t out, int64_t s, int64_t off, int64_t in,
                        int64_t *lo, int64_t *hi) {
  *lo = off >= 0 ? 0 : (-off + s - 1) / s;
  *hi = in - 1 - off < 0 ? 0 : (in - 1 - off) / s + 1;
  if (*hi > out)
    *hi = out;
  if (*lo > *hi)
    *lo = *hi;
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

int gs__run_batchnorm(const gs__node_t *n, const gs__tensor_t *in,
                      gs__tensor_t *out, gs_error_t *err) {
  (void)err;
  const float *x = in[0].data, *scale = in[1].data, *bias = in[2].data;
  const float *mean = in[3].data, *var = in[4].data;
  float *y = out->data;
  size_t channels = (size_t)in[0].dims[1], inner = 1;
  if (out->count == 0)
    return GS_OK;
  for (unsigned d = 2; d < in[0].rank; d++)
    inner *= (size_t)in[0].dims[d];
  size_t images = out->count / (channels * inner);
  for (size_t i = 0; i < images; i++)
    for (size_t c = 0; c < channels; c++) {
      float a = scale[c] / sqrtf(var[c] + n->p.epsilon);
      float b = bias[c] - mean[c] * a;
      size_t at = (i * channels + c) * inner;
      for (size_t k = 0; k < inner; k++)
        y[at + k] = x[at + k] * a + b;
    }
  return GS_OK;
}

#define CLIP_LOOP(T, LO, HI)                                                   \
  do {                                                                         \
    const T *x = in[0].data;                                                   \
    T *y = out->data, lo = (LO), hi = (HI);                                    \
    if (n->n_in > 1 && in[1].data)                                             \
      lo = *(const T *)in[1].data;                                             \
    if (n->n_in > 2 && in[2].data)                                             \
      hi = *(const T *)in[2].data;                                             \
    for (size_t i = 0; i < out->count; i++) {                                  \
      T v = x[i] < lo ? lo : x[i];                                             \
      y[i] = v > hi ? hi : v;                                                  \
    }                                                                          \
  } while (0)

int gs__run_clip(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err) {
  (void)err;
  switch (out->dtype) {
  case GS_DTYPE_INT8:
    CLIP_LOOP(int8_t, INT8_MIN, INT8_MAX);
    break;
  case GS_DTYPE_UINT8:
    CLIP_LOOP(uint8_t, 0, UINT8_MAX);
    break;
  case GS_DTYPE_INT32:
    CLIP_LOOP(int32_t, INT32_MIN, INT32_MAX);
    break;
  case GS_DTYPE_INT64:
    CLIP_LOOP(int64_t, INT64_MIN, INT64_MAX);
    break;
  default:
    CLIP_LOOP(float, n->p.act_min, n->p.act_max);
    break;
  }
  return GS_OK;
}
