/* What kernels_conv.c and its packing (kernels_conv_pack.c) share: a
 * conv's geometry as three spatial dims and the job that writes the
 * im2col matrix into the packed GEMM's 32-column panels. */
#ifndef GPUSLICE_KERNELS_CONV_INT_H
#define GPUSLICE_KERNELS_CONV_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A geometry as three spatial dims: missing leading dims have size 1. */
typedef struct {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3];
  size_t in_size, out_size, k_size;
  bool pointwise; /* 1x1, stride 1, no pads: the input is the column matrix */
} geom3_t;

/* Output positions o in [0, out) whose input o * s + off is in [0, in):
 * [*lo, *hi). */
static inline void valid_range(int64_t out, int64_t s, int64_t off, int64_t in,
                               int64_t *lo, int64_t *hi) {
  *lo = off >= 0 ? 0 : (-off + s - 1) / s;
  *hi = in - 1 - off < 0 ? 0 : (in - 1 - off) / s + 1;
  if (*hi > out)
    *hi = out;
  if (*lo > *hi)
    *lo = *hi;
}

typedef struct {
  const float *x;
  const geom3_t *t;
  size_t kdim;
  float *packed;
  size_t images, image_floats; /* images side by side in the columns */
} pack_job_t;

/* Packs the im2col rows of piece part of parts (gs__parallel_pieces). */
void gs__conv_pack_part(void *arg, unsigned part, unsigned parts);
/* Threads for a packing job, and the pieces it is cut into. */
unsigned gs__conv_pack_parts(const pack_job_t *job, unsigned threads);
unsigned gs__conv_pack_pieces(const pack_job_t *job, unsigned threads);

/* A stride-2 conv's input channels split into their four phases, each a
 * plane of the output's size (kernels_conv.c's phase_x). */
void gs__conv_phase_split(const float *x, const geom3_t *t, size_t channels,
                          float *phases);

#endif
