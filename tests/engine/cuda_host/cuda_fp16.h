// TEST-ONLY host stand-in for CUDA's cuda_fp16.h and the CUDA C++ keywords,
// just enough for g++ to compile src/engine/cuda_kernels.cu and run each
// kernel as one thread of one block (blockDim = gridDim = 1: every
// grid-stride loop and block reduction then covers all elements). For
// tests/engine/test_cuda_kernels_host.sh; never part of the library.
#pragma once
#include <cmath>
#include <cstdint>

struct dim3 {
  unsigned x, y, z;
};
static dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1},
            gridDim = {1, 1, 1};

struct __half {
  _Float16 v;
};
inline float __half2float(__half h) {
  return (float)h.v;
}
inline __half __float2half_rn(float f) {
  return {(_Float16)f};
}
struct __half2 {
  __half a, b;
};
inline __half2 __float2half2_rn(float f) {
  return {{(_Float16)f}, {(_Float16)f}};
}
inline __half2 __hmax2(__half2 x, __half2 y) {
  return {{x.a.v > y.a.v ? x.a.v : y.a.v}, {x.b.v > y.b.v ? x.b.v : y.b.v}};
}
struct uint4 {
  unsigned x, y, z, w;
};

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads()
#define __expf expf
