// TEST-ONLY: the CUDA provider's kernels (src/engine/cuda_kernels.cu),
// compiled for the host by g++ with cuda_fp16.h beside this file and run
// one thread at a time on ONNX node test data (Debian's libonnx-testdata):
// asymmetric pooling, Softmax on every axis, Clip with bounds read from
// memory, in FP32 and FP16. It checks the kernels' index math without a
// GPU; it cannot see races or the launch configuration (the GPU run does).
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
  printf("%d failed\n", fails);
  return fails != 0;
}
