// TEST-ONLY: the CUDA provider's kernels (src/engine/cuda_kernels.cu),
// compiled for the host by g++ with cuda_fp16.h beside this file and run
// one thread at a time on ONNX node test data (Debian's libonnx-testdata):
// asymmetric pooling, Softmax on every axis, Clip with bounds read from
// memory, in FP32 and FP16; the conv epilogue against a naive reference;
// INT32 Add/Sub/Mul against 64-bit arithmetic.
// It checks the kernels' index math without a GPU; it cannot see races or
// the launch configuration (the GPU run does).
// usage: cuda_kernels_host NODE_DIR; exit 0 all matched, 1 a mismatch.
#include "cuda_kernels.cu"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
static std::string D;
static std::vector<float> pb(const std::string &t, const char *f, size_t n) {
  FILE *fp = fopen((D + t + "/test_data_set_0/" + f).c_str(), "rb");
  if (!fp) {
    perror(f);
    exit(1);
  }
  std::vector<unsigned char> b(1 << 24);
  size_t sz = fread(b.data(), 1, b.size(), fp);
  fclose(fp);
  std::vector<float> v(n);
  memcpy(v.data(), b.data() + sz - 4 * n, 4 * n);
  return v;
}
static int fails;
static void cmp(const char *t, const std::vector<float> &got,
                const std::vector<float> &want) {
  double worst = 0;
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); i++) {
    double d = fabs(got[i] - want[i]);
    if (d > 1e-7 + 1e-3 * fabs(want[i]))
      bad++;
    if (d > worst)
      worst = d;
  }
  printf("%-48s %s (%zu elements, max |diff| %.3g, %zu off)\n", t,
         bad ? "FAIL" : "ok", want.size(), worst, bad);
  fails += bad != 0;
}
// NCHW (n = 1) <-> NHWC
static std::vector<float> nhwc(const std::vector<float> &x, int c, int hw) {
  std::vector<float> y(x.size());
  for (int ch = 0; ch < c; ch++)
    for (int p = 0; p < hw; p++)
      y[p * c + ch] = x[ch * hw + p];
  return y;
}
static void pool(const char *t, bool max, int c, int h, int w, int oh, int ow,
                 int kh, int kw, int sh, int sw, int ph, int pw, int phe,
                 int pwe, int dh, int dw, int cip, bool fp16) {
  std::vector<float> x = nhwc(pb(t, "input_0.pb", (size_t)c * h * w), c, h * w);
  std::vector<float> want = pb(t, "output_0.pb", (size_t)c * oh * ow);
  pool_geom g = {1,  h,  w,  c,  oh, ow,  kh,  kw, sh,
                 sw, ph, pw, dh, dw, cip, phe, pwe};
  std::vector<float> y(want.size());
  if (!fp16) {
    if (max)
      gs_maxpool_f32(x.data(), y.data(), g);
    else
      gs_avgpool_f32(x.data(), y.data(), g);
  } else {
    std::vector<__half> xh(x.size()), yh(y.size());
    for (size_t i = 0; i < x.size(); i++)
      xh[i] = __float2half_rn(x[i]);
    if (max && c % 8 == 0)
      gs_maxpool8_f16(xh.data(), yh.data(), g);
    else if (max)
      gs_maxpool_f16(xh.data(), yh.data(), g);
    else
      gs_avgpool_f16(xh.data(), yh.data(), g);
    for (size_t i = 0; i < y.size(); i++)
      y[i] = __half2float(yh[i]);
  }
  // back to NCHW
  std::vector<float> back(y.size());
  for (int ch = 0; ch < c; ch++)
    for (int p = 0; p < oh * ow; p++)
      back[ch * oh * ow + p] = y[p * c + ch];
  if (fp16) { // fp16 tolerance: compare loosely
    double worst = 0;
    size_t bad = 0;
    for (size_t i = 0; i < want.size(); i++) {
      double d = fabs(back[i] - want[i]);
      if (d > 1e-2 + 1e-2 * fabs(want[i]))
        bad++;
      if (d > worst)
        worst = d;
    }
    printf("%-48s %s (fp16, max |diff| %.3g)\n", t, bad ? "FAIL" : "ok", worst);
    fails += bad != 0;
    return;
  }
  cmp(t, back, want);
}
static void softmax(const char *t, int outer, int len, int inner) {
  size_t n = (size_t)outer * len * inner;
  std::vector<float> x = pb(t, "input_0.pb", n), want = pb(t, "output_0.pb", n),
                     y(n);
  gridDim.x = 1;
  gs_softmax_f32(x.data(), y.data(), outer, len, inner);
  cmp(t, y, want);
}
static void clip(const char *t, size_t n, int lo_in, int hi_in) {
  std::vector<float> x = pb(t, "input_0.pb", n), want = pb(t, "output_0.pb", n),
                     y(n);
  std::vector<float> lo =
      lo_in ? pb(t, lo_in == 1 ? "input_1.pb" : "input_2.pb", 1)
            : std::vector<float>{0};
  std::vector<float> hi =
      hi_in ? pb(t, hi_in == 1 ? "input_1.pb" : "input_2.pb", 1)
            : std::vector<float>{0};
  gs_unary_f32(x.data(), y.data(), (long)n, 1, -INFINITY, INFINITY,
               lo_in ? lo.data() : nullptr, hi_in ? hi.data() : nullptr);
  cmp(t, y, want);
  std::vector<__half> xh, yh(n), loh(1), hih(1);
  xh.resize(n);
  for (size_t i = 0; i < n; i++)
    xh[i] = __float2half_rn(x[i]);
  loh[0] = __float2half_rn(lo[0]);
  hih[0] = __float2half_rn(hi[0]);
  gs_unary_f16(xh.data(), yh.data(), (long)n, 1, -INFINITY, INFINITY,
               lo_in ? loh.data() : nullptr, hi_in ? hih.data() : nullptr);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(__half2float(yh[i]) - want[i]);
    if (d > 1e-2 + 1e-2 * fabs(want[i]))
      bad++;
  }
  printf("%-48s %s (fp16)\n", t, bad ? "FAIL" : "ok");
  fails += bad != 0;
}
// The conv epilogue y = act(y + bias[ch] + z) over an NHWC [n, hw, c]
// output, scalar and (c a multiple of the vector width) 16-byte vectors,
// against a naive reference on the same (FP16-rounded) inputs.
template <typename T> static float as_f(T v);
template <> float as_f(float v) {
  return v;
}
template <> float as_f(__half v) {
  return __half2float(v);
}
template <typename T> static T to_t(float v);
template <> float to_t(float v) {
  return v;
}
template <> __half to_t(float v) {
  return __float2half_rn(v);
}
template <typename T>
static void epilogue(const char *kind, bool vec, int n, int hw, int c,
                     bool bias, bool res, int a) {
  const int total = n * hw * c, width = 16 / (int)sizeof(T);
  std::vector<T> y(total), b(c), z(total);
  std::vector<float> want(total);
  unsigned seed = (unsigned)(total * 7 + c * 131 + bias * 3 + res * 5 + a);
  auto rnd = [&seed]() {
    seed = seed * 1103515245u + 12345u;
    return (float)((seed >> 8) % 2001) / 250.f - 4.f;
  };
  for (int i = 0; i < c; i++)
    b[i] = to_t<T>(rnd());
  for (int i = 0; i < total; i++) {
    y[i] = to_t<T>(rnd());
    z[i] = to_t<T>(rnd());
    float v =
        as_f(y[i]) + (bias ? as_f(b[i % c]) : 0.f) + (res ? as_f(z[i]) : 0.f);
    want[i] = a == 1   ? (v > 0.f ? v : 0.f)
              : a == 2 ? fminf(fmaxf(v, -1.5f), 2.5f)
                       : v;
  }
  const T *bp = bias ? b.data() : nullptr, *zp = res ? z.data() : nullptr;
  if (!vec && sizeof(T) == 4)
    gs_conv_epi_f32((float *)y.data(), (const float *)bp, (const float *)zp,
                    total, c, a, -1.5f, 2.5f);
  else if (!vec)
    gs_conv_epi_f16((__half *)y.data(), (const __half *)bp, (const __half *)zp,
                    total, c, a, -1.5f, 2.5f);
  else if (sizeof(T) == 4)
    gs_conv_epi_vec_f32((float *)y.data(), (const float *)bp, (const float *)zp,
                        total / width, c, a, -1.5f, 2.5f);
  else
    gs_conv_epi_vec_f16((__half *)y.data(), (const __half *)bp,
                        (const __half *)zp, total / width, c, a, -1.5f, 2.5f);
  size_t bad = 0;
  double worst = 0;
  for (int i = 0; i < total; i++) {
    double d = fabs(as_f(y[i]) - want[i]);
    // one rounding to the storage type: FP16 is 2^-11 relative
    if (d > (sizeof(T) == 2 ? 1e-3 * fabs(want[i]) + 1e-3 : 1e-6))
      bad++;
    worst = d > worst ? d : worst;
  }
  char name[96];
  snprintf(name, sizeof name, "conv_epi%s_%s c=%d bias=%d z=%d act=%d",
           vec ? "_vec" : "", kind, c, bias, res, a);
  printf("%-48s %s (%d elements, max |diff| %.3g, %zu off)\n", name,
         bad ? "FAIL" : "ok", total, worst, bad);
  fails += bad != 0;
}
static void epilogues() {
  const int cs[] = {1, 3, 4, 5, 8, 12, 16, 24, 40};
  for (int c : cs)
    for (int m = 0; m < 12; m++) {
      bool bias = m & 1, res = m & 2;
      int a = m >> 2;
      epilogue<float>("f32", false, 2, 7, c, bias, res, a);
      epilogue<__half>("f16", false, 2, 7, c, bias, res, a);
      if (c % 4 == 0)
        epilogue<float>("f32", true, 2, 7, c, bias, res, a);
      if (c % 8 == 0)
        epilogue<__half>("f16", true, 2, 7, c, bias, res, a);
    }
}
// INT32 Add, Sub, Mul (Triton's simple): two's-complement wrapping as the
// CPU provider's, against 64-bit arithmetic cut to 32 bits, with b of the
// same shape, a row of 16 and a scalar.
static void binary_i32() {
  const int n = 4 * 16;
  std::vector<int> a(n), b(n), y(n);
  for (int i = 0; i < n; i++)
    a[i] = i * 100003 - 7, b[i] = 7 - 3 * i * 65537;
  a[0] = 2147483647, b[0] = 1, a[1] = -2147483647 - 1, b[1] = 1;
  for (int op = 0; op < 3; op++)
    for (long bmod : {(long)n, 16L, 1L}) {
      gs_binary_i32(a.data(), b.data(), y.data(), n, n, bmod, op);
      size_t bad = 0;
      for (int i = 0; i < n; i++) {
        long long x = a[i], z = b[i % bmod];
        long long r = op == 0 ? x + z : op == 1 ? x - z : x * z;
        bad += y[i] != (int)(unsigned)(unsigned long long)r;
      }
      char name[64];
      snprintf(name, sizeof name, "binary_i32 op %d, b period %ld", op, bmod);
      printf("%-48s %s (%d elements, %zu off)\n", name, bad ? "FAIL" : "ok", n,
             bad);
      fails += bad != 0;
    }
}
int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: cuda_kernels_host NODE_DIR\n");
    return 2;
  }
  D = std::string(argv[1]) + "/";
  //   test                                   max  c  h  w  oh ow kh kw sh sw ph
  //   pw phe pwe dh dw cip
  pool("test_averagepool_2d_same_lower", 0, 3, 32, 32, 32, 32, 2, 2, 1, 1, 1, 1,
       0, 0, 1, 1, 0, false);
  pool("test_averagepool_2d_same_upper", 0, 3, 32, 32, 32, 32, 2, 2, 1, 1, 0, 0,
       1, 1, 1, 1, 0, false);
  pool("test_maxpool_2d_same_lower", 1, 3, 32, 32, 32, 32, 2, 2, 1, 1, 1, 1, 0,
       0, 1, 1, 0, false);
  pool("test_maxpool_2d_same_upper", 1, 3, 32, 32, 32, 32, 2, 2, 1, 1, 0, 0, 1,
       1, 1, 1, 0, false);
  pool("test_averagepool_2d_pads", 0, 3, 28, 28, 30, 30, 3, 3, 1, 1, 2, 2, 2, 2,
       1, 1, 0, false);
  pool("test_averagepool_2d_pads_count_include_pad", 0, 3, 28, 28, 30, 30, 3, 3,
       1, 1, 2, 2, 2, 2, 1, 1, 1, false);
  pool("test_averagepool_2d_precomputed_same_upper", 0, 1, 5, 5, 3, 3, 3, 3, 2,
       2, 1, 1, 1, 1, 1, 1, 0, false);
  pool("test_averagepool_2d_ceil", 0, 1, 4, 4, 2, 2, 3, 3, 2, 2, 0, 0, 0, 0, 1,
       1, 0, false);
  pool("test_maxpool_2d_dilations", 1, 1, 4, 4, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 2,
       2, 0, false);
  pool("test_averagepool_2d_same_lower", 0, 3, 32, 32, 32, 32, 2, 2, 1, 1, 1, 1,
       0, 0, 1, 1, 0, true);
  pool("test_maxpool_2d_same_upper", 1, 3, 32, 32, 32, 32, 2, 2, 1, 1, 0, 0, 1,
       1, 1, 1, 0, true);
  softmax("test_softmax_axis_0", 1, 3, 20);
  softmax("test_softmax_axis_1", 3, 4, 5);
  softmax("test_softmax_axis_2", 12, 5, 1);
  softmax("test_softmax_default_axis", 12, 5, 1);
  softmax("test_softmax_negative_axis", 12, 5, 1);
  clip("test_clip", 60, 1, 2);
  clip("test_clip_splitbounds", 3, 1, 2);
  clip("test_clip_outbounds", 3, 1, 2);
  clip("test_clip_inbounds", 3, 1, 2);
  clip("test_clip_example", 3, 1, 2);
  clip("test_clip_default_min", 60, 1, 0);
  clip("test_clip_default_max", 60, 0, 1);
  epilogues();
  binary_i32();
  printf("%d failed\n", fails);
  return fails != 0;
}
