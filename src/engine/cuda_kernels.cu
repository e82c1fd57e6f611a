// The CUDA provider's own kernels: layout and precision conversion at the
// model's edges, NHWC pooling, elementwise ops, conv epilogues, softmax.
// Compiled by nvcc to a fatbin embedded in the library and loaded with
// cuModuleLoadData; every kernel is extern "C" so that cuModuleGetFunction
// finds it by name. Each exists for float (_f32) and half (_f16) storage;
// arithmetic is in float.
#include <cuda_fp16.h>

#define GS_ACT_NONE 0
#define GS_ACT_RELU 1
#define GS_ACT_CLIP 2

__device__ __forceinline__ float ld(const float *p, long i) {
  return p[i];
}
__device__ __forceinline__ float ld(const __half *p, long i) {
  return __half2float(p[i]);
}
__device__ __forceinline__ void st(float *p, long i, float v) {
  p[i] = v;
}
__device__ __forceinline__ void st(__half *p, long i, float v) {
  p[i] = __float2half_rn(v);
}

__device__ __forceinline__ float act(float v, int a, float lo, float hi) {
  if (a == GS_ACT_RELU)
    return v > 0.f ? v : 0.f;
  if (a == GS_ACT_CLIP)
    return fminf(fmaxf(v, lo), hi);
  return v;
}

// Tensors stay under 2^31 elements (the provider checks at plan), so the
// index math is 32-bit: 64-bit division is many times slower on the GPU.
#define GRID_STRIDE(i, n)                                                      \
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (int)(n);            \
       i += blockDim.x * gridDim.x)

// NCHW float (the caller's input) to NHWC storage with c_pad >= C channels,
// the extra ones zero (the stem conv's 3 channels become 8 for tensor cores).
template <typename T>
__device__ void in_nhwc(const float *x, T *y, int n, int c, int hw, int c_pad) {
  long total = (long)n * hw * c_pad;
  GRID_STRIDE(i, total) {
    int ch = i % c_pad, pix = i / c_pad, p = pix % hw, b = pix / hw;
    st(y, i, ch < c ? x[(b * c + ch) * hw + p] : 0.f);
  }
}

// NHWC storage back to the caller's NCHW float.
template <typename T>
__device__ void out_nchw(const T *x, float *y, int n, int c, int hw) {
  long total = (long)n * c * hw;
  GRID_STRIDE(i, total) {
    int p = i % hw, bc = i / hw, ch = bc % c, b = bc / c;
    y[i] = ld(x, (b * hw + p) * c + ch);
  }
}

template <typename S, typename D>
__device__ void cast(const S *x, D *y, long n) {
  GRID_STRIDE(i, n) st(y, i, ld(x, i));
}

// y = act(a op b); a and b repeat with periods amod and bmod (trailing
// broadcasting: same shape, a row vector, a scalar).
template <typename T>
__device__ void binary(const T *a, const T *b, T *y, long n, long amod,
                       long bmod, int op, int a_act, float lo, float hi) {
  GRID_STRIDE(i, n) {
    float u = ld(a, i % (int)amod), v = ld(b, i % (int)bmod), r;
    switch (op) {
    case 0:
      r = u + v;
      break;
    case 1:
      r = u - v;
      break;
    case 2:
      r = u * v;
      break;
    default:
      r = u / v;
      break;
    }
    st(y, i, act(r, a_act, lo, hi));
  }
}

// 0 relu, 1 clip, 2 sigmoid, 3 tanh. Clip's bounds are lo and hi, or the
// scalars at lo_p / hi_p when not null (bounds the graph computes or takes
// as inputs: read at run time, so that a graph replay sees their values).
template <typename T>
__device__ void unary(const T *x, T *y, long n, int op, float lo, float hi,
                      const T *lo_p, const T *hi_p) {
  if (lo_p)
    lo = ld(lo_p, 0);
  if (hi_p)
    hi = ld(hi_p, 0);
  GRID_STRIDE(i, n) {
    float v = ld(x, i), r;
    switch (op) {
    case 0:
      r = v > 0.f ? v : 0.f;
      break;
    case 1:
      r = fminf(fmaxf(v, lo), hi);
      break;
    case 2:
      r = 1.f / (1.f + __expf(-v));
      break;
    default:
      r = tanhf(v);
      break;
    }
    st(y, i, r);
  }
}

// gs__cuda_pool_geom_t (cuda_int.h) field for field: ph, pw are the begin
// pads, ph_end, pw_end the end pads (they differ with SAME_LOWER,
// SAME_UPPER, explicit asymmetric pads, ceil_mode).
struct pool_geom {
  int n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
  int count_include_pad, ph_end, pw_end;
};

template <typename T> __device__ void maxpool(const T *x, T *y, pool_geom g) {
  long total = (long)g.n * g.oh * g.ow * g.c;
  GRID_STRIDE(i, total) {
    int ch = i % g.c, r = i / g.c, ox = r % g.ow;
    r /= g.ow;
    int oy = r % g.oh, b = r / g.oh;
    float m = -INFINITY;
    for (int ky = 0; ky < g.kh; ky++) {
      int iy = oy * g.sh - g.ph + ky * g.dh;
      if (iy < 0 || iy >= g.h)
        continue;
      for (int kx = 0; kx < g.kw; kx++) {
        int ix = ox * g.sw - g.pw + kx * g.dw;
        if (ix < 0 || ix >= g.w)
          continue;
        m = fmaxf(m, ld(x, ((b * g.h + iy) * g.w + ix) * g.c + ch));
      }
    }
    st(y, i, m);
  }
}

template <typename T> __device__ void avgpool(const T *x, T *y, pool_geom g) {
  long total = (long)g.n * g.oh * g.ow * g.c;
  GRID_STRIDE(i, total) {
    int ch = i % g.c, r = i / g.c, ox = r % g.ow;
    r /= g.ow;
    int oy = r % g.oh, b = r / g.oh;
    // Taps start at -ph at the least; those at or past the end pad (ceil
    // mode's last window) count for nothing, as on the CPU.
    float s = 0.f;
    int cnt = 0;
    for (int ky = 0; ky < g.kh; ky++) {
      int iy = oy * g.sh - g.ph + ky * g.dh;
      if (iy >= g.h + g.ph_end)
        break;
      for (int kx = 0; kx < g.kw; kx++) {
        int ix = ox * g.sw - g.pw + kx * g.dw;
        if (ix >= g.w + g.pw_end)
          break;
        bool in = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
        if (in)
          s += ld(x, ((b * g.h + iy) * g.w + ix) * g.c + ch);
        if (in || g.count_include_pad)
          cnt++;
      }
    }
    st(y, i, cnt ? s / cnt : 0.f);
  }
}

// Global average pool over the hw pixels of NHWC x: y is [n, c]. One thread
// per (n, c); neighbouring threads read neighbouring channels.
template <typename T>
__device__ void gap(const T *x, T *y, int n, int hw, int c) {
  long total = (long)n * c;
  GRID_STRIDE(i, total) {
    int ch = i % c, b = i / c;
    const int base = b * hw * c + ch;
    float s = 0.f;
    for (int p = 0; p < hw; p++)
      s += ld(x, base + p * c);
    st(y, i, s / hw);
  }
}

// Softmax over len elements spaced inner apart, for each of outer blocks
// of len * inner. Contiguous rows (inner 1): one block of 256 threads per
// row, reductions in shared memory. Otherwise a thread per (o, j) column,
// over the grid: neighbouring threads read neighbouring j (coalesced).
template <typename T>
__device__ void softmax_rows(const T *x, T *y, int rows, int cols) {
  __shared__ float red[256];
  for (int row = blockIdx.x; row < rows; row += gridDim.x) {
    const long base = (long)row * cols;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
      m = fmaxf(m, ld(x, base + j));
    red[threadIdx.x] = m;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s)
        red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
      __syncthreads();
    }
    m = red[0];
    __syncthreads();
    float sum = 0.f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
      sum += __expf(ld(x, base + j) - m);
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s)
        red[threadIdx.x] += red[threadIdx.x + s];
      __syncthreads();
    }
    sum = red[0];
    __syncthreads();
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
      st(y, base + j, __expf(ld(x, base + j) - m) / sum);
  }
}

template <typename T>
__device__ void softmax_cols(const T *x, T *y, int outer, int len, int inner) {
  GRID_STRIDE(i, (long)outer * inner) {
    const int o = i / inner, j = i % inner;
    const int base = o * len * inner + j;
    float m = -INFINITY, sum = 0.f;
    for (int k = 0; k < len; k++)
      m = fmaxf(m, ld(x, base + k * inner));
    for (int k = 0; k < len; k++)
      sum += __expf(ld(x, base + k * inner) - m);
    for (int k = 0; k < len; k++)
      st(y, base + k * inner, __expf(ld(x, base + k * inner) - m) / sum);
  }
}

// The launch matches the branch: inner 1, a block per row (grid up to
// 65535); otherwise the grid-stride launch over outer * inner threads.
template <typename T>
__device__ void softmax(const T *x, T *y, int outer, int len, int inner) {
  if (inner == 1)
    softmax_rows(x, y, outer, len);
  else
    softmax_cols(x, y, outer, len, inner);
}

// A convolution's epilogue in one pass over its NHWC output y (n elements,
// channel innermost, c channels): y = act(y + bias[ch] + z), bias and the
// residual z optional (null), in float. The scalar form takes any c and
// any alignment.
template <typename T>
__device__ void conv_epi(T *y, const T *bias, const T *z, int n, int c, int a,
                         float lo, float hi) {
  GRID_STRIDE(i, n) {
    float v = ld(y, i);
    if (bias)
      v += ld(bias, i % c);
    if (z)
      v += ld(z, i);
    st(y, i, act(v, a, lo, hi));
  }
}

// The same over nv vectors of 16 bytes (8 halves, 4 floats) per thread:
// for c a multiple of the vector width and y, bias, z 16-byte aligned (the
// provider checks), so that a vector never straddles two pixels.
template <typename T>
__device__ void conv_epi_vec(T *y, const T *bias, const T *z, int nv, int c,
                             int a, float lo, float hi) {
  const int V = 16 / sizeof(T);
  GRID_STRIDE(j, nv) {
    const int i = j * V, ch = i % c;
    uint4 yv = *(const uint4 *)(y + i), bv = {0, 0, 0, 0}, zv = {0, 0, 0, 0};
    if (bias)
      bv = *(const uint4 *)(bias + ch);
    if (z)
      zv = *(const uint4 *)(z + i);
    T *yt = (T *)&yv;
    const T *bt = (const T *)&bv, *zt = (const T *)&zv;
    for (int k = 0; k < V; k++) {
      float v = ld(yt, k);
      if (bias)
        v += ld(bt, k);
      if (z)
        v += ld(zt, k);
      st(yt, k, act(v, a, lo, hi));
    }
    *(uint4 *)(y + i) = yv;
  }
}

// INT32 Add (0), Sub (1), Mul (2) with the same trailing broadcasting,
// wrapping in two's complement as the CPU provider does (Triton's integer
// add/sub models); one variant, loaded for both precisions.
extern "C" __global__ void gs_binary_i32(const int *a, const int *b, int *y,
                                         long n, long amod, long bmod, int op) {
  GRID_STRIDE(i, n) {
    unsigned x = (unsigned)a[i % amod], z = (unsigned)b[i % bmod];
    y[i] = (int)(op == 0 ? x + z : op == 1 ? x - z : x * z);
  }
}

#define INSTANCE(T, sfx)                                                       \
  extern "C" __global__ void gs_in_nhwc_##sfx(const float *x, T *y, int n,     \
                                              int c, int hw, int c_pad) {      \
    in_nhwc(x, y, n, c, hw, c_pad);                                            \
  }                                                                            \
  extern "C" __global__ void gs_out_nchw_##sfx(const T *x, float *y, int n,    \
                                               int c, int hw) {                \
    out_nchw(x, y, n, c, hw);                                                  \
  }                                                                            \
  extern "C" __global__ void gs_from_f32_##sfx(const float *x, T *y, long n) { \
    cast(x, y, n);                                                             \
  }                                                                            \
  extern "C" __global__ void gs_to_f32_##sfx(const T *x, float *y, long n) {   \
    cast(x, y, n);                                                             \
  }                                                                            \
  extern "C" __global__ void gs_binary_##sfx(                                  \
      const T *a, const T *b, T *y, long n, long amod, long bmod, int op,      \
      int a_act, float lo, float hi) {                                         \
    binary(a, b, y, n, amod, bmod, op, a_act, lo, hi);                         \
  }                                                                            \
  extern "C" __global__ void gs_unary_##sfx(const T *x, T *y, long n, int op,  \
                                            float lo, float hi, const T *lo_p, \
                                            const T *hi_p) {                   \
    unary(x, y, n, op, lo, hi, lo_p, hi_p);                                    \
  }                                                                            \
  extern "C" __global__ void gs_maxpool_##sfx(const T *x, T *y, pool_geom g) { \
    maxpool(x, y, g);                                                          \
  }                                                                            \
  extern "C" __global__ void gs_avgpool_##sfx(const T *x, T *y, pool_geom g) { \
    avgpool(x, y, g);                                                          \
  }                                                                            \
  extern "C" __global__ void gs_gap_##sfx(const T *x, T *y, int n, int hw,     \
                                          int c) {                             \
    gap(x, y, n, hw, c);                                                       \
  }                                                                            \
  extern "C" __global__ void gs_softmax_##sfx(const T *x, T *y, int outer,     \
                                              int len, int inner) {            \
    softmax(x, y, outer, len, inner);                                          \
  }                                                                            \
  extern "C" __global__ void gs_conv_epi_##sfx(T *y, const T *bias,            \
                                               const T *z, int n, int c,       \
                                               int a, float lo, float hi) {    \
    conv_epi(y, bias, z, n, c, a, lo, hi);                                     \
  }                                                                            \
  extern "C" __global__ void gs_conv_epi_vec_##sfx(                            \
      T *y, const T *bias, const T *z, int nv, int c, int a, float lo,         \
      float hi) {                                                              \
    conv_epi_vec(y, bias, z, nv, c, a, lo, hi);                                \
  }

INSTANCE(float, f32)
INSTANCE(__half, f16)

// Max pooling over 8 channels per thread with 16-byte loads (FP16, C a
// multiple of 8): the stem's pool reads 100 MB at batch 64.
extern "C" __global__ void gs_maxpool8_f16(const __half *x, __half *y,
                                           pool_geom g) {
  const int c8 = g.c / 8;
  int total = g.n * g.oh * g.ow * c8;
  GRID_STRIDE(i, total) {
    int cv = i % c8, r = i / c8, ox = r % g.ow;
    r /= g.ow;
    int oy = r % g.oh, b = r / g.oh;
    __half2 m[4];
    for (int k = 0; k < 4; k++)
      m[k] = __float2half2_rn(-65504.f);
    for (int ky = 0; ky < g.kh; ky++) {
      int iy = oy * g.sh - g.ph + ky * g.dh;
      if (iy < 0 || iy >= g.h)
        continue;
      for (int kx = 0; kx < g.kw; kx++) {
        int ix = ox * g.sw - g.pw + kx * g.dw;
        if (ix < 0 || ix >= g.w)
          continue;
        uint4 v =
            *(const uint4 *)(x + ((b * g.h + iy) * g.w + ix) * g.c + cv * 8);
        const __half2 *h = (const __half2 *)&v;
        for (int k = 0; k < 4; k++)
          m[k] = __hmax2(m[k], h[k]);
      }
    }
    *(uint4 *)(y + i * 8) = *(const uint4 *)m;
  }
}
