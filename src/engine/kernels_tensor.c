/* Matrix kernels (MatMul, Gemm: small products on kernels_gemm.c's AVX-512
 * loops, the rest through OpenBLAS) and the kernels that only move data
 * (Reshape, Flatten, Identity, Concat, Transpose). */
#include <limits.h>
#include <string.h>

#include <cblas.h>

#include "engine/engine_int.h"
#include "engine/kernels_gemm.h"

static int too_large(const gs__node_t *n, gs_error_t *err) {
  char label[160];
  return gs_error_set(err, GS_ELIMIT,
                      "%s: matrix dimensions exceed what BLAS indexes",
                      gs__node_label(n, label, sizeof label));
}

static bool fits_int(size_t a, size_t b, size_t c) {
  return a <= INT_MAX && b <= INT_MAX && c <= INT_MAX;
}

/* Element offset of batch index `flat` of out's batch dims in x, whose
 * batch dims (the first x_batch of them) broadcast to out's. */
static size_t batch_offset(size_t flat, const int64_t *out_dims,
                           unsigned out_batch, const gs__tensor_t *x,
                           unsigned x_batch, size_t matrix) {
  size_t off = 0, stride = matrix;
  for (unsigned i = out_batch; i-- > 0;) {
    size_t idx = flat % (size_t)out_dims[i];
    flat /= (size_t)out_dims[i];
    unsigned back = out_batch - 1 - i;
    if (back >= x_batch)
      continue;
    size_t d = (size_t)x->dims[x_batch - 1 - back];
    off += (d == 1 ? 0 : idx) * stride;
    stride *= d;
  }
  return off;
}

int gs__run_matmul(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err) {
  const gs__tensor_t *a = &in[0], *b = &in[1];
  size_t m = a->rank > 1 ? (size_t)a->dims[a->rank - 2] : 1;
  size_t k = (size_t)a->dims[a->rank - 1];
  size_t nn = b->rank > 1 ? (size_t)b->dims[b->rank - 1] : 1;
  unsigned a_batch = a->rank > 2 ? a->rank - 2 : 0;
  unsigned b_batch = b->rank > 2 ? b->rank - 2 : 0;
  unsigned out_batch = a_batch > b_batch ? a_batch : b_batch;
  size_t batches = 1;
  for (unsigned i = 0; i < out_batch; i++)
    batches *= (size_t)out->dims[i];
  float *y = out->data;
  if (out->count == 0)
    return GS_OK;
  if (k == 0) {
    memset(y, 0, out->count * sizeof *y);
    return GS_OK;
  }
  if (b_batch == 0) { /* one product: A's batches stack along M */
    size_t rows = a->count / k;
    gs__gemm_small_t sm = {rows, nn, k,  nn, a->data, b->data,
                           k,    1,  nn, 1,  1.0f,    y};
    memset(y, 0, out->count * sizeof *y);
    if (gs__gemm_small(&sm))
      return GS_OK;
    if (!fits_int(rows, k, nn))
      return too_large(n, err);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)nn,
                (int)k, 1.0f, a->data, (int)k, b->data, (int)nn, 0.0f, y,
                (int)nn);
    return GS_OK;
  }
  if (!fits_int(m, k, nn))
    return too_large(n, err);
  for (size_t i = 0; i < batches; i++) {
    const float *pa = (const float *)a->data +
                      batch_offset(i, out->dims, out_batch, a, a_batch, m * k);
    const float *pb = (const float *)b->data +
                      batch_offset(i, out->dims, out_batch, b, b_batch, k * nn);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)nn,
                (int)k, 1.0f, pa, (int)k, pb, (int)nn, 0.0f, y + i * m * nn,
                (int)nn);
  }
  return GS_OK;
}

int gs__run_gemm(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err) {
  const gs__tensor_t *a = &in[0], *b = &in[1];
  const gs__tensor_t *c = n->n_in > 2 && in[2].data ? &in[2] : NULL;
  size_t m = (size_t)out->dims[0], nn = (size_t)out->dims[1];
  size_t k = (size_t)a->dims[n->p.trans_a ? 0 : 1];
  float *y = out->data, beta = 0.0f;
  if (out->count == 0)
    return GS_OK;
  if (!fits_int(m, k, nn))
    return too_large(n, err);
  if (c && n->p.beta != 0.0f) {
    size_t cm = c->rank == 2 ? (size_t)c->dims[0] : 1;
    size_t cn = c->rank >= 1 ? (size_t)c->dims[c->rank - 1] : 1;
    const float *pc = c->data;
    for (size_t i = 0; i < m; i++)
      for (size_t j = 0; j < nn; j++)
        y[i * nn + j] =
            n->p.beta * pc[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
    beta = 1.0f;
  } else {
    memset(y, 0, out->count * sizeof *y);
  }
  gs__gemm_small_t sm = {m,
                         nn,
                         k,
                         nn,
                         a->data,
                         b->data,
                         n->p.trans_a ? 1 : k,
                         n->p.trans_a ? m : 1,
                         n->p.trans_b ? 1 : nn,
                         n->p.trans_b ? k : 1,
                         n->p.alpha,
                         y};
  if (k > 0 && !gs__gemm_small(&sm))
    cblas_sgemm(CblasRowMajor, n->p.trans_a ? CblasTrans : CblasNoTrans,
                n->p.trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)nn,
                (int)k, n->p.alpha, a->data, (int)(n->p.trans_a ? m : k),
                b->data, (int)(n->p.trans_b ? k : nn), beta, y, (int)nn);
  gs__apply_act(&n->p, y, out->count); /* a Relu or Clip fused at load */
  return GS_OK;
}

int gs__run_copy(const gs__node_t *n, const gs__tensor_t *in, gs__tensor_t *out,
                 gs_error_t *err) {
  (void)n, (void)err;
  if (out->dtype == GS_DTYPE_BYTES) { /* the session sized out->data */
    if (in[0].bytes)
      memcpy(out->data, in[0].data, in[0].bytes);
    out->bytes = in[0].bytes;
    return GS_OK;
  }
  if (out->count)
    memcpy(out->data, in[0].data, out->count * gs_dtype_size(out->dtype));
  return GS_OK;
}

int gs__run_concat(const gs__node_t *n, const gs__tensor_t *in,
                   gs__tensor_t *out, gs_error_t *err) {
  (void)err;
  unsigned axis = (unsigned)gs__axis(n->p.axis, out->rank, 0);
  size_t es = gs_dtype_size(out->dtype), outer = 1, inner = es;
  for (unsigned d = 0; d < out->rank; d++) {
    if (d < axis)
      outer *= (size_t)out->dims[d];
    else if (d > axis)
      inner *= (size_t)out->dims[d];
  }
  size_t out_row = (size_t)out->dims[axis] * inner, at = 0;
  if (out->count == 0)
    return GS_OK;
  for (unsigned k = 0; k < n->n_in; k++) {
    size_t row = (size_t)in[k].dims[axis] * inner;
    if (row == 0)
      continue;
    for (size_t o = 0; o < outer; o++)
      memcpy((char *)out->data + o * out_row + at,
             (const char *)in[k].data + o * row, row);
    at += row;
  }
  return GS_OK;
}

#define TRANSPOSE_LOOP(T)                                                      \
  do {                                                                         \
    const T *x = in[0].data;                                                   \
    T *y = out->data;                                                          \
    for (size_t i = 0; i < out->count; i++) {                                  \
      y[i] = x[src];                                                           \
      for (unsigned d = rank; d-- > 0;) {                                      \
        src += stride[d];                                                      \
        if (++idx[d] < (size_t)out->dims[d])                                   \
          break;                                                               \
        src -= stride[d] * idx[d];                                             \
        idx[d] = 0;                                                            \
      }                                                                        \
    }                                                                          \
  } while (0)

int gs__run_transpose(const gs__node_t *n, const gs__tensor_t *in,
                      gs__tensor_t *out, gs_error_t *err) {
  (void)err;
  unsigned rank = out->rank;
  size_t in_stride[GS_TENSOR_MAX_RANK], stride[GS_TENSOR_MAX_RANK];
  size_t idx[GS_TENSOR_MAX_RANK] = {0}, src = 0, s = 1;
  for (unsigned d = rank; d-- > 0;) {
    in_stride[d] = s;
    s *= (size_t)in[0].dims[d];
  }
  /* Walking the output in order steps the input by the permuted strides. */
  for (unsigned d = 0; d < rank; d++)
    stride[d] = in_stride[n->p.n_perm ? n->p.perm[d] : rank - 1 - d];
  if (out->count == 0)
    return GS_OK;
  switch (gs_dtype_size(out->dtype)) {
  case 1:
    TRANSPOSE_LOOP(uint8_t);
    break;
  case 2:
    TRANSPOSE_LOOP(uint16_t);
    break;
  case 4:
    TRANSPOSE_LOOP(uint32_t);
    break;
  default:
    TRANSPOSE_LOOP(uint64_t);
    break;
  }
  return GS_OK;
}
