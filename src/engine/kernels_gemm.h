/* Conv's packed GEMM (kernels_gemm.c) and the thread pool it runs on
 * (kernels_threads.c). */
#ifndef GPUSLICE_KERNELS_GEMM_H
#define GPUSLICE_KERNELS_GEMM_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/engine_int.h"

#define GS__GEMM_MR 12  /* rows of W per packed panel (the last: 4 or 8) */
#define GS__GEMM_NR 32  /* columns of X' per packed panel */
#define GS__GEMM_KC 256 /* K steps per pass: a 32-column B slice is 32 KiB */

/* Runs fn(arg, i, parts) for every i < parts, on up to parts threads. */
typedef void (*gs__task_fn)(void *arg, unsigned part, unsigned parts);
void gs__parallel(gs__task_fn fn, void *arg, unsigned parts);
/* Runs fn(arg, i, pieces) for every i < pieces on up to threads threads:
 * each thread starts on its own equal run of pieces and, when that is
 * done, takes the last pieces of another's that are not yet started (a
 * thread the scheduler holds up then delays one piece, not its share). */
void gs__parallel_pieces(gs__task_fn fn, void *arg, unsigned pieces,
                         unsigned threads);
#define GS__PIECES 4 /* pieces per thread, for the split ops */

/* Whether this CPU runs the packed GEMM (AVX-512F), and not switched off. */
bool gs__gemm_available(void);
/* For tests: off makes models loaded after it, and their runs, take the
 * path of a CPU without AVX-512F (im2col + BLAS). Not thread-safe. */
void gs__gemm_set_off(bool off);
/* For tests: the bytes of packed X' a conv's chunk of output rows aims at
 * (kernels_conv.c's conv_chunked), for models planned after it; 0 for the
 * default. Not thread-safe. */
void gs__conv_set_chunk_bytes(size_t bytes);

/* Floats of a packed m x k W (rows padded to 4) or k x n X' (columns
 * padded to NR). */
size_t gs__gemm_packed_a_count(size_t m, size_t k);
size_t gs__gemm_packed_b_count(size_t k, size_t n);
/* Packs row-major a (m x k) into MR-row panels, k-major within a panel;
 * the last panel is the rest, rounded up to 4 rows; K is cut into KC-step
 * blocks, all panels' first block first.
 * X' is packed into NR-column panels the same way: column o of row kk at
 * (o / NR) * NR * k + kk * NR + o % NR (kernels_conv.c writes it). */
void gs__gemm_pack_a(const float *a, size_t m, size_t k, float *packed);
/* X' of a stride-1 conv read in place rather than packed (the direct
 * path): the input's rows as wide as the output's (a "same" 2-D conv, a
 * 1-D one, or any 1x1 with no pads taken as one row of n). Row k of X' is
 * channel k / taps at tap k % taps: column o (output row o / width,
 * column o % width) reads x[(k / taps) * plane + at + o + dy * width +
 * dx], 0 where that row or column falls outside the input. */
#define GS__GEMM_DIRECT_TAPS 32 /* most taps a direct X' may have */
typedef struct {
  const float *x; /* the first input channel */
  size_t plane;   /* floats from one input channel to the next */
  unsigned taps;  /* kernel positions per channel, <= GS__GEMM_DIRECT_TAPS */
  int64_t width;  /* input and output row width */
  int64_t rows;   /* input rows */
  int64_t dy[GS__GEMM_DIRECT_TAPS], dx[GS__GEMM_DIRECT_TAPS];
  /* Floats from the channel's start to the tap's plane: 0 but for a
   * stride-2 conv's input split into its four phases (kernels_conv.c's
   * phase_x), each a plane as wide as the output. */
  int64_t at[GS__GEMM_DIRECT_TAPS];
} gs__gemm_direct_t;

/* c (m x n, rows ldc apart) = act(a * b + bias + z), a packed, b packed
 * or (direct not NULL) read in place. */
typedef struct {
  size_t m, n, k, ldc;
  const float *a, *b;
  const gs__gemm_direct_t *direct; /* then b is unused; n < 2^20 */
  float *c;
  const float *bias; /* per row, NULL for none */
  const float *z;    /* shaped as c, NULL for none */
  gs__act_t act;
  float act_min, act_max;
} gs__gemm_t;

/* Runs on the caller's thread alone where m * n * k is under
 * GS__GEMM_SERIAL_MAX. */
void gs__gemm_run(const gs__gemm_t *g, unsigned threads);
#define GS__GEMM_SERIAL_MAX 2.5e5

/* Gemm's and MatMul's small products on AVX-512, one thread, no packing:
 * c[i * ldc + j] += alpha * sum over kk of A(i, kk) B(kk, j), where
 * A(i, kk) = a[i * a_row + kk * a_col], B(kk, j) = b[kk * b_row + j *
 * b_col]. Runs where B's rows are contiguous (b_col 1: c's rows gain
 * scaled rows of B) or A's and B's columns are (a_col and b_row 1: dot
 * products, a Linear layer's x W^T), the product is at most
 * GS__GEMM_SMALL_MAX multiply-adds and gs__gemm_available(); false, and
 * nothing done, otherwise. (Such products on OpenBLAS paid its call and
 * thread overhead, and its SSE3 kernels on CPUs it does not know.) */
#define GS__GEMM_SMALL_MAX ((size_t)1 << 24)
typedef struct {
  size_t m, n, k, ldc;
  const float *a, *b;
  size_t a_row, a_col, b_row, b_col;
  float alpha;
  float *c;
} gs__gemm_small_t;
bool gs__gemm_small(const gs__gemm_small_t *g);

#endif
