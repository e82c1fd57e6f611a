/* The CUDA provider where CI runs it (no GPU): the run-time loaders name a
 * missing library or symbol, a node the provider cannot run is refused by
 * name, AUTO falls back to the CPU when no GPU is usable and CUDA does not,
 * the CPU refuses FP16, and the batcher pads GPU batches to the sizes it
 * keeps graphs for. On a machine with a usable GPU the no-GPU
 * checks are skipped (tests/gpu/engine_check.sh covers that side). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "engine/conv_cache_file.h"
#include "engine/cuda_session_int.h"
#include "gpu/cublas_shim.h"
#include "gpu/cuda_shim.h"
#include "gpu/cudnn_shim.h"
#include "gpuslice/engine.h"
#include "test_onnx_build.h"
#include "worker/worker_int.h"

/* x [N,2] -> Gemm(w [3,2], transB) -> Relu -> y [N,3]; with transpose, a
 * Transpose node 'flip' after the Relu (which the GPU path does not run). */
static graph_t gemm_relu_graph(bool transpose) {
  static const float w[6] = {1, 0, 0, 1, 1, 1};
  static const int64_t wd[2] = {3, 2}, xd[2] = {-1, 2}, yd[2] = {-1, 3},
                       flipped[2] = {3, -1};
  graph_t g = {.n_in = 1, .n_out = 1, .n_init = 1};
  g.nodes[g.n_nodes++] =
      node("Gemm", "fc", "x,w", "h", attr_i("transB", 1), NULL);
  g.nodes[g.n_nodes++] = node("Relu", "relu", "h", transpose ? "r" : "y", NULL);
  if (transpose)
    g.nodes[g.n_nodes++] = node("Transpose", "flip", "r", "y", NULL);
  g.init[0] = init_tensor("w", ELEM_F32, 2, wd, w);
  g.in[0] = info("x", ELEM_F32, 2, xd);
  g.out[0] = info("y", ELEM_F32, 2, transpose ? flipped : yd);
  return g;
}

static gs_model_t *load_model(bool transpose) {
  graph_t g = gemm_relu_graph(transpose);
  return load(&g);
}

static bool gpu_usable(void) {
  char buf[512];
  gs_error_t err = {0};
  return gs_engine_cuda_describe(buf, sizeof buf, &err) == GS_OK;
}

/* The GPU wait's names both ways; a wrong one is GS_EINVAL naming it and
 * where it came from. */
static void test_gpu_wait_names(void **state) {
  (void)state;
  static const char *const names[] = {"driver", "spin", "block"};
  for (int i = 0; i < 3; i++) {
    gs_gpu_wait_t w = (gs_gpu_wait_t)-1;
    gs_error_t err = {0};
    assert_int_equal(gs_gpu_wait_parse(names[i], "--x", &w, &err), GS_OK);
    assert_int_equal(w, i);
    assert_string_equal(gs_gpu_wait_name(w), names[i]);
  }
  gs_gpu_wait_t w = GS_GPU_WAIT_SPIN;
  gs_error_t err = {0};
  assert_int_equal(gs_gpu_wait_parse("auto", "GS_GPU_WAIT", &w, &err),
                   GS_EINVAL);
  assert_string_equal(err.msg,
                      "GS_GPU_WAIT: \"auto\" is not driver, spin or block");
  assert_int_equal(w, GS_GPU_WAIT_SPIN); /* untouched */
  assert_string_equal(gs_gpu_wait_name((gs_gpu_wait_t)3), "invalid");
}

/* A library that cannot be opened is GS_ENODEV naming it and its path. */
static void test_missing_library_named(void **state) {
  (void)state;
  gs_error_t err = {0};
  gs__cudnn_t dnn;
  gs__cublas_t blas;
  gs__cublaslt_t lt;
  assert_int_equal(gs__cudnn_open(&dnn, "/nonexistent/libcudnn.so.9", &err),
                   GS_ENODEV);
  assert_non_null(strstr(err.msg, "cuDNN not found"));
  assert_non_null(strstr(err.msg, "/nonexistent/libcudnn.so.9"));
  assert_int_equal(gs__cublas_open(&blas, "/nonexistent/libcublas.so.13", &err),
                   GS_ENODEV);
  assert_non_null(strstr(err.msg, "cuBLAS not found"));
  assert_int_equal(
      gs__cublaslt_open(&lt, "/nonexistent/libcublasLt.so.13", &err),
      GS_ENODEV);
  assert_non_null(strstr(err.msg, "cuBLASLt not found"));
  assert_null(dnn.dl);
  assert_null(blas.dl);
  assert_null(lt.dl);
}

/* A library that opens but lacks a function is GS_EUNSUPPORTED naming the
 * function (libm stands in: it has none of them). */
static void test_missing_symbol_named(void **state) {
  (void)state;
  gs_error_t err = {0};
  gs__cudnn_t dnn;
  gs__cublas_t blas;
  gs__cuda_t cuda;
  assert_int_equal(gs__cudnn_open(&dnn, "libm.so.6", &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "lacks cudnnGetVersion"));
  assert_int_equal(gs__cublas_open(&blas, "libm.so.6", &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "lacks cublasCreate_v2"));
  assert_int_equal(gs__cuda_open(&cuda, "libm.so.6", &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "cuInit"));
  assert_null(dnn.dl);
}

/* A node outside the provider's op set is refused at session creation,
 * by name, whether or not a GPU is here; AUTO runs the model on the CPU. */
static void test_unsupported_node_refused(void **state) {
  (void)state;
  gs_model_t *m = load_model(true);
  gs_session_options_t o;
  gs_session_options_default(&o);
  o.provider = GS_PROVIDER_CUDA;
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, &o, &err), GS_EUNSUPPORTED);
  assert_null(s);
  assert_non_null(strstr(err.msg, "node 'flip' (Transpose)"));
  assert_non_null(strstr(err.msg, "cuda provider cannot run it"));
  o.provider = GS_PROVIDER_AUTO;
  assert_int_equal(gs_session_create(&s, m, &o, &err), GS_OK);
  assert_int_equal(gs_session_provider(s), GS_PROVIDER_CPU);
  assert_int_equal(gs_session_precision(s), GS_PRECISION_FP32);
  const float x[2] = {1, -2};
  gs_tensor_t in = {.dtype = GS_DTYPE_FP32,
                    .rank = 2,
                    .shape = {1, 2},
                    .data = x,
                    .bytes = sizeof x};
  assert_int_equal(gs_session_run(s, &in, 1, &err), GS_OK);
  const float want[3] = {1, 0, 0}; /* relu(x w') = relu(1, -2, -1) */
  assert_memory_equal(gs_session_output(s, 0)->data, want, sizeof want);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* INT32 (Triton's simple: Add and Sub of two INT32 inputs) passes the
 * provider's node check: a GPU runs it, without one the session fails for
 * want of the GPU only; INT32 Div (a zero divisor cannot fail a kernel as
 * it fails the CPU's run) and an INT64 input are refused by name. */
static void test_int32_accepted(void **state) {
  (void)state;
  static const int64_t d[2] = {-1, 16};
  const char *ops[3] = {"Add", "Div", "Add"};
  for (int k = 0; k < 3; k++) {
    int elem = k == 2 ? ELEM_I64 : ELEM_I32;
    graph_t g = {.n_nodes = 2, .n_in = 2, .n_out = 2};
    g.nodes[0] = node(ops[k], "first", "A,B", "Y", NULL);
    g.nodes[1] = node("Sub", "sub", "A,B", "Z", NULL);
    g.in[0] = info("A", elem, 2, d);
    g.in[1] = info("B", elem, 2, d);
    g.out[0] = info("Y", elem, 2, d);
    g.out[1] = info("Z", elem, 2, d);
    gs_model_t *m = load(&g);
    gs_session_options_t o;
    gs_session_options_default(&o);
    o.provider = GS_PROVIDER_CUDA;
    gs_session_t *s = NULL;
    gs_error_t err = {0};
    int rc = gs_session_create(&s, m, &o, &err);
    if (k == 0)
      assert_int_equal(rc, gpu_usable() ? GS_OK : GS_ENODEV);
    else
      assert_int_equal(rc, GS_EUNSUPPORTED);
    if (k == 1)
      assert_non_null(strstr(err.msg, "node 'first' (Div)"));
    if (k == 1)
      assert_non_null(strstr(err.msg, "INT32 runs through Add, Sub, Mul"));
    if (k == 2)
      assert_non_null(strstr(err.msg, "input 'A' is INT64"));
    gs_session_destroy(s);
    gs_model_destroy(m);
  }
}

/* No usable GPU: CUDA is an error saying why (the same as
 * gs_engine_cuda_describe's), AUTO is the CPU in FP32. */
static void test_no_gpu_auto_falls_back(void **state) {
  (void)state;
  if (gpu_usable())
    skip();
  char buf[512];
  gs_error_t why = {0}, err = {0};
  assert_int_equal(gs_engine_cuda_describe(buf, sizeof buf, &why), GS_ENODEV);
  /* opening the device ahead of a session: the same error, nothing held */
  assert_int_equal(gs_engine_cuda_open(0, &err), GS_ENODEV);
  assert_string_equal(err.msg, why.msg);
  gs_model_t *m = load_model(false);
  gs_session_options_t o;
  gs_session_options_default(&o);
  o.provider = GS_PROVIDER_CUDA;
  gs_session_t *s = NULL;
  assert_int_equal(gs_session_create(&s, m, &o, &err), GS_ENODEV);
  assert_string_equal(err.msg, why.msg);
  o.provider = GS_PROVIDER_AUTO;
  o.precision = GS_PRECISION_DEFAULT;
  assert_int_equal(gs_session_create(&s, m, &o, &err), GS_OK);
  assert_int_equal(gs_session_provider(s), GS_PROVIDER_CPU);
  assert_int_equal(gs_session_precision(s), GS_PRECISION_FP32);
  gs_session_destroy(s);
  gs_model_destroy(m);
}

/* The CPU computes in FP32 only: asking it for FP16 is an error. */
static void test_cpu_refuses_fp16(void **state) {
  (void)state;
  gs_model_t *m = load_model(false);
  gs_session_options_t o;
  gs_session_options_default(&o);
  o.provider = GS_PROVIDER_CPU;
  o.precision = GS_PRECISION_FP16;
  gs_session_t *s = NULL;
  gs_error_t err = {0};
  assert_int_equal(gs_session_create(&s, m, &o, &err), GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "FP32 only"));
  gs_model_destroy(m);
  assert_string_equal(gs_provider_name(GS_PROVIDER_CUDA), "cuda");
  assert_string_equal(gs_precision_name(GS_PRECISION_FP16), "fp16");
}

/* The batcher runs a GPU batch at the smallest size it keeps a graph for
 * (a power of two, a preferred size, max_batch_size) that holds it; the
 * CPU runs every size as it is. */
static void test_gpu_batches_padded(void **state) {
  (void)state;
  gs__model_slot_t slot;
  memset(&slot, 0, sizeof slot);
  slot.max_batch_size = 64;
  slot.batching.n_preferred = 1;
  slot.batching.preferred[0] = 48;
  slot.provider = GS_PROVIDER_CUDA;
  assert_int_equal(gs__batch_padded_rows(&slot, 1), 1);
  assert_int_equal(gs__batch_padded_rows(&slot, 3), 4);
  assert_int_equal(gs__batch_padded_rows(&slot, 33), 48);
  assert_int_equal(gs__batch_padded_rows(&slot, 49), 64);
  assert_int_equal(gs__batch_padded_rows(&slot, 64), 64);
  slot.provider = GS_PROVIDER_CPU;
  assert_int_equal(gs__batch_padded_rows(&slot, 3), 3);
  slot.provider = GS_PROVIDER_CUDA;
  slot.max_batch_size = 0;
  assert_int_equal(gs__batch_padded_rows(&slot, 3), 3);

  float *x = malloc(6 * sizeof *x);
  for (int i = 0; i < 6; i++)
    x[i] = (float)(i + 1);
  gs_tensor_t t = {.name = "x",
                   .dtype = GS_DTYPE_FP32,
                   .rank = 2,
                   .shape = {3, 2},
                   .data = x,
                   .bytes = 6 * sizeof *x};
  void *bufs[1] = {x};
  gs_error_t err = {0};
  assert_int_equal(gs__batch_pad(&t, bufs, 1, 3, 4, &err), GS_OK);
  assert_int_equal(t.shape[0], 4);
  assert_int_equal(t.bytes, 8 * sizeof(float));
  const float want[8] = {1, 2, 3, 4, 5, 6, 0, 0};
  assert_memory_equal(t.data, want, sizeof want);
  free(bufs[0]);
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

/* A model directory NAME with model.onnx (transpose: the model the GPU
 * path refuses) and config.json holding config. */
static void add_model(const char *repo, const char *name, bool transpose,
                      const char *config) {
  char path[512];
  size_t len;
  graph_t g = gemm_relu_graph(transpose);
  const uint8_t *buf = pack(&g, &len);
  snprintf(path, sizeof path, "%s/%s", repo, name);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/%s/1", repo, name);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/%s/1/model.onnx", repo, name);
  write_file(path, buf, len);
  snprintf(path, sizeof path, "%s/%s/config.json", repo, name);
  write_file(path, config, strlen(config));
}

/* config.json's instance_group as Triton writes it decides the provider:
 * KIND_CPU runs on the CPU; KIND_AUTO or none on the GPU when usable, else
 * the CPU; KIND_GPU on the GPU or the load fails with the reason (a node
 * it cannot run, or no GPU); an unknown kind fails the load by name. */
static void test_worker_instance_group(void **state) {
  (void)state;
  char repo_dir[] = "/tmp/gs_test_cuda_repo_XXXXXX";
  assert_non_null(mkdtemp(repo_dir));
  add_model(repo_dir, "cpu", false,
            "{\"instance_group\": [{\"kind\": \"KIND_CPU\", \"count\": 2}]}");
  add_model(repo_dir, "auto", false, "{\"max_batch_size\": 8}");
  add_model(repo_dir, "gpu_flip", true,
            "{\"instance_group\": [{\"kind\": \"KIND_GPU\"}]}");
  add_model(repo_dir, "bogus", false,
            "{\"instance_group\": [{\"kind\": \"KIND_TPU\"}]}");
  add_model(repo_dir, "fp8", false, "{\"precision\": \"fp8\"}");
  gs__repo_t *repo = calloc(1, sizeof *repo);
  assert_non_null(repo);
  gs_error_t err = {0};
  assert_int_equal(gs__repo_open(repo, repo_dir, &err), GS_OK);
  gs__model_entry_t *m = gs__repo_find(repo, "cpu");
  assert_int_equal(m->state, GS__MODEL_READY);
  assert_int_equal(m->slot->provider, GS_PROVIDER_CPU);
  m = gs__repo_find(repo, "auto");
  assert_int_equal(m->state, GS__MODEL_READY);
  assert_int_equal(m->slot->provider,
                   gpu_usable() ? GS_PROVIDER_CUDA : GS_PROVIDER_CPU);
  m = gs__repo_find(repo, "gpu_flip");
  assert_int_equal(m->state, GS__MODEL_UNAVAILABLE);
  assert_non_null(strstr(m->reason, "node 'flip' (Transpose)"));
  m = gs__repo_find(repo, "bogus");
  assert_int_equal(m->state, GS__MODEL_UNAVAILABLE);
  assert_non_null(strstr(m->reason, "kind KIND_TPU is not supported"));
  m = gs__repo_find(repo, "fp8");
  assert_int_equal(m->state, GS__MODEL_UNAVAILABLE);
  assert_non_null(strstr(m->reason, "precision must be"));
  gs__repo_close(repo);
  free(repo);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", repo_dir);
  assert_int_equal(system(cmd), 0);
}

/* A one-node model: op on x [1,3,5,5] (opset 0: 13) with up to three
 * attributes (NULL for fewer). */
static gs_model_t *one_node(const char *op, int opset, Onnx__AttributeProto *a,
                            Onnx__AttributeProto *b, Onnx__AttributeProto *c) {
  static const int64_t xd[4] = {1, 3, 5, 5}, yd[4] = {-1, -1, -1, -1};
  graph_t g = {.n_in = 1, .n_out = 1, .opset = opset};
  g.nodes[g.n_nodes++] = node(op, "n", "x", "y", a, b, c, NULL);
  g.in[0] = info("x", ELEM_F32, 4, xd);
  g.out[0] = info("y", ELEM_F32, 4, yd);
  return load(&g);
}

static gs__tensor_t shape4(int64_t n, int64_t c, int64_t h, int64_t w) {
  return (gs__tensor_t){.dtype = GS_DTYPE_FP32,
                        .rank = 4,
                        .dims = {n, c, h, w},
                        .count = (size_t)(n * c * h * w)};
}

/* The pooling kernels get the begin and end pads as the CPU resolves them:
 * SAME_LOWER puts the odd pad first, SAME_UPPER last, explicit pads go as
 * given; an output size other than the window's is refused by name. */
static void test_pool_geom_asymmetric(void **state) {
  (void)state;
  gs__tensor_t x = shape4(1, 3, 5, 5), y = shape4(1, 3, 5, 5);
  gs__cuda_pool_geom_t g;
  gs_error_t err = {0};
  gs_model_t *m = one_node("AveragePool", 0, INTS("kernel_shape", 2, 2),
                           attr_s("auto_pad", "SAME_LOWER"), NULL);
  assert_int_equal(gs__cuda_pool_geom(&m->nodes[0], &x, &y, &g, &err), GS_OK);
  assert_int_equal(g.ph, 1);
  assert_int_equal(g.pw, 1);
  assert_int_equal(g.ph_end, 0);
  assert_int_equal(g.pw_end, 0);
  assert_int_equal(g.kh, 2);
  assert_int_equal(g.c, 3);
  assert_int_equal(g.oh, 5);
  assert_int_equal(g.count_include_pad, 0);
  gs_model_destroy(m);

  m = one_node("MaxPool", 0, INTS("kernel_shape", 2, 2),
               attr_s("auto_pad", "SAME_UPPER"), NULL);
  assert_int_equal(gs__cuda_pool_geom(&m->nodes[0], &x, &y, &g, &err), GS_OK);
  assert_int_equal(g.ph, 0);
  assert_int_equal(g.pw, 0);
  assert_int_equal(g.ph_end, 1);
  assert_int_equal(g.pw_end, 1);
  assert_int_equal(g.dh, 1);
  gs_model_destroy(m);

  /* pads [h_begin, w_begin, h_end, w_end] = [0, 1, 2, 3], 3x3: 5 x 7. */
  m = one_node("AveragePool", 0, INTS("kernel_shape", 3, 3),
               INTS("pads", 0, 1, 2, 3), attr_i("count_include_pad", 1));
  y = shape4(1, 3, 5, 7);
  assert_int_equal(gs__cuda_pool_geom(&m->nodes[0], &x, &y, &g, &err), GS_OK);
  assert_int_equal(g.ph, 0);
  assert_int_equal(g.pw, 1);
  assert_int_equal(g.ph_end, 2);
  assert_int_equal(g.pw_end, 3);
  assert_int_equal(g.ow, 7);
  assert_int_equal(g.count_include_pad, 1);
  y = shape4(1, 3, 5, 5);
  assert_int_equal(gs__cuda_pool_geom(&m->nodes[0], &x, &y, &g, &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "node 'n' (AveragePool)"));
  gs_model_destroy(m);

  /* Strides 2 and dilations 2, no padding: a 3x3 window spans 5, so 5
   * gives one output. */
  m = one_node("MaxPool", 0, INTS("kernel_shape", 3, 3), INTS("strides", 2, 2),
               INTS("dilations", 2, 2));
  y = shape4(1, 3, 1, 1);
  assert_int_equal(gs__cuda_pool_geom(&m->nodes[0], &x, &y, &g, &err), GS_OK);
  assert_int_equal(g.sh, 2);
  assert_int_equal(g.dw, 2);
  assert_int_equal(g.ph + g.ph_end, 0);
  gs_model_destroy(m);
}

/* Softmax runs over (outer, len, inner) as the CPU does: opset 13 over the
 * one axis, opset 11 over dims[axis:] flattened (inner 1). */
static void test_softmax_dims(void **state) {
  (void)state;
  gs__tensor_t x = {
      .dtype = GS_DTYPE_FP32, .rank = 3, .dims = {3, 4, 5}, .count = 60};
  int outer, len, inner;
  gs_model_t *m = one_node("Softmax", 0, attr_i("axis", 0), NULL, NULL);
  gs__cuda_softmax_dims(&m->nodes[0], &x, &outer, &len, &inner);
  assert_int_equal(outer, 1);
  assert_int_equal(len, 3);
  assert_int_equal(inner, 20);
  gs_model_destroy(m);
  m = one_node("Softmax", 0, attr_i("axis", 1), NULL, NULL);
  gs__cuda_softmax_dims(&m->nodes[0], &x, &outer, &len, &inner);
  assert_int_equal(outer, 3);
  assert_int_equal(len, 4);
  assert_int_equal(inner, 5);
  gs_model_destroy(m);
  m = one_node("Softmax", 0, attr_i("axis", -1), NULL, NULL);
  gs__cuda_softmax_dims(&m->nodes[0], &x, &outer, &len, &inner);
  assert_int_equal(outer, 12);
  assert_int_equal(len, 5);
  assert_int_equal(inner, 1);
  gs_model_destroy(m);
  m = one_node("Softmax", 11, attr_i("axis", 1), NULL, NULL);
  gs__cuda_softmax_dims(&m->nodes[0], &x, &outer, &len, &inner);
  assert_int_equal(outer, 3);
  assert_int_equal(len, 20);
  assert_int_equal(inner, 1);
  gs_model_destroy(m);
}

/* config.json's "input" data_type TYPE_FP16 makes an FP32 input travel as
 * FP16 (metadata, config and the codec say FP16; the engine widens it),
 * and instance_group count makes that many sessions at load. */
static void test_worker_fp16_input(void **state) {
  (void)state;
  char repo_dir[] = "/tmp/gs_test_cuda_repo_XXXXXX";
  assert_non_null(mkdtemp(repo_dir));
  add_model(repo_dir, "half", false,
            "{\"max_batch_size\": 8, \"input\": [{\"name\": \"x\", "
            "\"data_type\": \"TYPE_FP16\"}], \"instance_group\": [{\"kind\": "
            "\"KIND_CPU\", \"count\": 3}]}");
  add_model(repo_dir, "nope", false,
            "{\"input\": [{\"name\": \"z\", \"data_type\": \"TYPE_FP16\"}]}");
  add_model(repo_dir, "int8", false,
            "{\"input\": [{\"name\": \"x\", \"data_type\": \"TYPE_INT8\"}]}");
  add_model(repo_dir, "zero", false,
            "{\"instance_group\": [{\"kind\": \"KIND_CPU\", \"count\": 0}]}");
  gs__repo_t *repo = calloc(1, sizeof *repo);
  assert_non_null(repo);
  gs_error_t err = {0};
  assert_int_equal(gs__repo_open(repo, repo_dir, &err), GS_OK);
  gs__model_entry_t *m = gs__repo_find(repo, "half");
  assert_int_equal(m->state, GS__MODEL_READY);
  gs__model_slot_t *slot = m->slot;
  assert_int_equal(slot->io.inputs[0].dtype, GS_DTYPE_FP16);
  assert_int_equal(slot->n_idle, 3);
  json_t *meta = gs__model_metadata_json(m), *cfg = gs__model_config_json(m);
  char *ms = json_dumps(meta, JSON_COMPACT),
       *cs = json_dumps(cfg, JSON_COMPACT);
  assert_non_null(strstr(ms, "\"datatype\":\"FP16\""));
  assert_non_null(strstr(cs, "\"data_type\":\"TYPE_FP16\""));
  assert_non_null(strstr(cs, "\"count\":3"));
  free(ms);
  free(cs);
  json_decref(meta);
  json_decref(cfg);
  /* A binary FP16 request: 1.5 and -0.25. */
  const char head[] = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP16\","
                      "\"shape\":[1,2],\"parameters\":{\"binary_data_size\":4}}"
                      "]}";
  char body[sizeof head + 4];
  memcpy(body, head, sizeof head - 1);
  const uint8_t halves[4] = {0x00, 0x3e, 0x00, 0xb4};
  memcpy(body + sizeof head - 1, halves, 4);
  gs__infer_request_t req;
  assert_int_equal(gs__infer_decode(&req, &slot->io, body, sizeof head + 3,
                                    sizeof head - 1, &err),
                   0);
  gs_session_t *s = gs__slot_get(slot, &err);
  assert_non_null(s);
  if (gs_session_run(s, req.inputs, req.n_inputs, &err) != GS_OK)
    fail_msg("run: %s", err.msg);
  const float want[3] = {1.5f, 0.0f, 1.25f};
  assert_memory_equal(gs_session_output(s, 0)->data, want, sizeof want);
  gs__slot_put(slot, s);
  gs__infer_request_release(&req);
  /* FP32 data for it is refused by the codec, as JSON FP16 is. */
  const char f32[] = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\","
                     "\"shape\":[1,2],\"data\":[1,2]}]}";
  assert_int_equal(
      gs__infer_decode(&req, &slot->io, f32, sizeof f32 - 1, -1, &err), 400);
  assert_non_null(strstr(err.msg, "expects 'FP16'"));
  gs__infer_request_release(&req);
  m = gs__repo_find(repo, "nope");
  assert_int_equal(m->state, GS__MODEL_UNAVAILABLE);
  assert_non_null(strstr(m->reason, "'z' is not an input of the model"));
  m = gs__repo_find(repo, "int8");
  assert_int_equal(m->state, GS__MODEL_UNAVAILABLE);
  assert_non_null(strstr(m->reason, "TYPE_INT8 is not supported"));
  m = gs__repo_find(repo, "zero");
  assert_int_equal(m->state, GS__MODEL_UNAVAILABLE);
  assert_non_null(strstr(m->reason, "count must be 1..64"));
  gs__repo_close(repo);
  free(repo);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", repo_dir);
  assert_int_equal(system(cmd), 0);
}

/* x [1,8,4,4] -> Conv 'pw' (1x1, bias) -> Conv 'k3' (3x3, pad 1, bias) -> y. */
static gs_model_t *two_convs(void) {
  static float w1[64], w2[576], b[8];
  static const int64_t xd[4] = {1, 8, 4, 4}, w1d[4] = {8, 8, 1, 1},
                       w2d[4] = {8, 8, 3, 3}, bd[1] = {8};
  graph_t g = {.n_in = 1, .n_out = 1, .n_init = 3};
  g.nodes[g.n_nodes++] = node("Conv", "pw", "x,w1,b", "h", NULL);
  g.nodes[g.n_nodes++] =
      node("Conv", "k3", "h,w2,b", "y", INTS("pads", 1, 1, 1, 1), NULL);
  g.init[0] = init_tensor("w1", ELEM_F32, 4, w1d, w1);
  g.init[1] = init_tensor("w2", ELEM_F32, 4, w2d, w2);
  g.init[2] = init_tensor("b", ELEM_F32, 1, bd, b);
  g.in[0] = info("x", ELEM_F32, 4, xd);
  g.out[0] = info("y", ELEM_F32, 4, xd);
  return load(&g);
}

/* The choice among a conv's candidates: the fastest that ran, ties and
 * untimed ones to the earlier (fused, conv+epilogue, cuBLASLt), plain when
 * none ran; the workspace of the chosen way; the report counts each way
 * and names each conv with its candidates' times. */
static void test_conv_choice_recorded(void **state) {
  (void)state;
  float ms[GS__CONV_PLAIN] = {2.f, 1.f, INFINITY};
  bool ran[GS__CONV_PLAIN] = {true, true, false};
  assert_int_equal(gs__cuda_conv_pick(ms, ran), GS__CONV_EPI);
  ran[GS__CONV_LT] = true;
  ms[GS__CONV_LT] = 0.5f;
  assert_int_equal(gs__cuda_conv_pick(ms, ran), GS__CONV_LT);
  ms[GS__CONV_LT] = 1.f; /* a tie keeps the earlier */
  assert_int_equal(gs__cuda_conv_pick(ms, ran), GS__CONV_EPI);
  bool only_fused[GS__CONV_PLAIN] = {true, false, false};
  float untimed[GS__CONV_PLAIN] = {INFINITY, INFINITY, INFINITY};
  assert_int_equal(gs__cuda_conv_pick(untimed, only_fused), GS__CONV_FUSED);
  bool none[GS__CONV_PLAIN] = {false, false, false};
  assert_int_equal(gs__cuda_conv_pick(ms, none), GS__CONV_PLAIN);

  gs_model_t *m = two_convs();
  assert_non_null(m);
  assert_int_equal(m->n_nodes, 2);
  gs__cuda_conv_t conv[2] = {{0}};
  gs__cuda_graph_t g = {.conv = conv};
  char buf[1024];
  gs__cuda_conv_report(m, &g, buf, sizeof buf); /* nothing prepared */
  assert_non_null(strstr(buf, "convs: 0 fused, 0 conv+epilogue, 0 cuBLASLt"));
  for (int i = 0; i < 2; i++) {
    conv[i].x = (cudnnTensorDescriptor_t)(uintptr_t)0x10; /* prepared */
    for (int k = 0; k < GS__CONV_PLAIN; k++)
      conv[i].ms[k] = INFINITY;
  }
  conv[0].kind = GS__CONV_LT;
  conv[0].ws = 1 << 20; /* the cuDNN candidate's, not chosen */
  conv[0].lt_ws = 4096;
  conv[0].ran[GS__CONV_LT] = conv[0].ran[GS__CONV_EPI] = true;
  conv[0].ms[GS__CONV_LT] = 0.03f;
  conv[0].ms[GS__CONV_EPI] = 0.06f;
  conv[0].cand_algo[GS__CONV_EPI] = 1;
  conv[1].kind = GS__CONV_EPI;
  conv[1].algo = 6;
  conv[1].ws = 8192;
  conv[1].lt_ws = 1 << 22; /* never a cuBLASLt candidate */
  conv[1].ran[GS__CONV_EPI] = conv[1].ran[GS__CONV_FUSED] = true;
  conv[1].ms[GS__CONV_EPI] = 0.3f;
  conv[1].ms[GS__CONV_FUSED] = 0.9f;
  conv[1].cand_algo[GS__CONV_FUSED] = 1;
  conv[1].cand_algo[GS__CONV_EPI] = 6;
  assert_int_equal(gs__cuda_conv_ws(&conv[0]), 4096);
  assert_int_equal(gs__cuda_conv_ws(&conv[1]), 8192);
  gs__cuda_conv_report(m, &g, buf, sizeof buf);
  assert_non_null(strstr(buf, "convs: 0 fused, 1 conv+epilogue, 1 cuBLASLt, "
                              "0 plain; workspace 8192 bytes at most"));
  assert_non_null(strstr(buf, "node 'pw' (Conv): cuBLASLt; ms a call: fused "
                              "- conv+epilogue 0.0200 (algo 1) cuBLASLt "
                              "0.0100\n"));
  assert_non_null(strstr(buf, "node 'k3' (Conv): conv+epilogue (algo 6); ms "
                              "a call: fused 0.3000 (algo 1) conv+epilogue "
                              "0.1000 (algo 6) cuBLASLt -\n"));
  char small[24];
  gs__cuda_conv_report(m, &g, small, sizeof small); /* truncated, ended */
  assert_int_equal(strlen(small), sizeof small - 1);
  gs_model_destroy(m);
}

/* The process's conv choices: the same conv on the same shapes and SMs in
 * another session finds the first session's choice; another batch size,
 * SM count or precision does not; each put is one entry. */
static void test_conv_cache_shared(void **state) {
  (void)state;
  gs_model_t *m = two_convs();
  assert_non_null(m);
  gs__cuda_conv_cache_clear();
  int64_t pad[64] = {0};
  assert_true(m->n_values <= 64);
  gs__tensor_t shapes[64];
  memset(shapes, 0, sizeof shapes);
  for (size_t v = 0; v < m->n_values; v++)
    shapes[v] = (gs__tensor_t){.rank = 4, .dims = {1, 8, 4, 4}, .count = 128};
  gs__plan_view_t plan = {.shapes = shapes};
  gs__cuda_session_t a = {
      .m = m, .sms = 16, .fp16 = true, .cpad = pad, .wpad = pad};
  gs__cuda_session_t b = a; /* another green context of 16 SMs */
  gs__cuda_conv_key_t ka, kb, k3;
  gs__cuda_conv_key(&a, &plan, 0, &ka);
  gs__cuda_conv_key(&b, &plan, 0, &kb);
  gs__cuda_conv_key(&a, &plan, 1, &k3);
  assert_memory_equal(&ka, &kb, sizeof ka);
  assert_memory_not_equal(&ka, &k3, sizeof ka); /* 1x1 vs 3x3 padded */
  gs__cuda_conv_choice_t put = {.kind = GS__CONV_LT, .lt_ws = 4096}, got;
  put.ran[GS__CONV_LT] = true;
  put.ms[GS__CONV_LT] = 0.03f;
  assert_false(gs__cuda_conv_cache_get(&kb, &got));
  gs__cuda_conv_cache_put(&ka, &put);
  assert_true(gs__cuda_conv_cache_get(&kb, &got));
  assert_int_equal(got.kind, GS__CONV_LT);
  assert_int_equal(got.lt_ws, 4096);
  assert_false(gs__cuda_conv_cache_get(&k3, &got));
  gs__cuda_conv_cache_put(&ka, &put); /* again: still one entry */
  assert_int_equal(gs__cuda_conv_cache_size(), 1);
  gs__cuda_conv_key_t other;
  b.sms = 32; /* a 2g context times its own */
  gs__cuda_conv_key(&b, &plan, 0, &other);
  assert_false(gs__cuda_conv_cache_get(&other, &got));
  b.sms = 16;
  b.fp16 = false;
  gs__cuda_conv_key(&b, &plan, 0, &other);
  assert_false(gs__cuda_conv_cache_get(&other, &got));
  shapes[m->nodes[0].in[0]].dims[0] = 2; /* batch 2 */
  gs__cuda_conv_key(&a, &plan, 0, &other);
  assert_false(gs__cuda_conv_cache_get(&other, &got));
  gs__cuda_conv_cache_clear();
  assert_false(gs__cuda_conv_cache_get(&ka, &got));
  gs_model_destroy(m);
}

/* The choices a process timed, saved to the cache directory, are the next
 * process's (any device ordinal) when its GPU and software match; a file
 * for other software, or with a choice this build could not make, is
 * ignored and rewritten. */
static void test_conv_cache_file_restart(void **state) {
  (void)state;
  char dir[] = "/tmp/gs_test_convcache.XXXXXX", path[200];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/NVIDIA_H100_80GB_HBM3-sm90-132.convcache",
           dir);
  gs__ccf_ident_t id = {.cc_major = 9,
                        .sms = 132,
                        .driver = 13000,
                        .cudnn = 91900,
                        .cublaslt = 130100},
                  newer = id;
  snprintf(id.gpu, sizeof id.gpu, "NVIDIA H100 80GB HBM3");
  newer = id;
  newer.cudnn = 92000;
  gs__cuda_conv_key_t k = {.v = {0, 16, 1, 4, 8, 64, 56, 56}};
  gs__cuda_conv_choice_t ch = {.kind = GS__CONV_EPI, .algo = 1, .ws = 1024},
                         got;
  ch.ran[GS__CONV_EPI] = true;
  assert_int_equal(gs_engine_set_conv_cache(dir, NULL), GS_OK);
  gs__cuda_conv_cache_clear();
  assert_int_equal(gs__cuda_conv_cache_attach(0, &id), 0); /* none yet */
  gs__cuda_conv_cache_put(&k, &ch);
  assert_int_equal(gs__cuda_conv_cache_flush(0, NULL), GS_OK);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  gs__cuda_conv_cache_clear(); /* a new process, on device 1 */
  assert_int_equal(gs__cuda_conv_cache_attach(1, &id), 1);
  k.v[0] = 1;
  assert_true(gs__cuda_conv_cache_get(&k, &got));
  assert_int_equal(got.kind, GS__CONV_EPI);
  assert_int_equal(got.ws, 1024);
  assert_int_equal(gs__cuda_conv_cache_attach(1, &id), 0); /* once */
  gs__cuda_conv_cache_clear(); /* another cuDNN: ignored, rewritten */
  assert_int_equal(gs__cuda_conv_cache_attach(1, &newer), -1);
  assert_false(gs__cuda_conv_cache_get(&k, &got));
  assert_int_equal(gs__cuda_conv_cache_flush(1, NULL), GS_OK);
  gs__cuda_conv_cache_clear();
  assert_int_equal(gs__cuda_conv_cache_attach(1, &newer), 0);
  /* a kind out of range in a file that reads: ignored */
  gs__ccf_table_t t;
  gs__ccf_table_init(&t, sizeof k, sizeof ch);
  ch.kind = GS__CONV_KINDS;
  assert_int_equal(gs__ccf_table_put(&t, &k, &ch, NULL), GS_OK);
  id.key_size = sizeof k;
  id.choice_size = sizeof ch;
  assert_int_equal(gs__ccf_save(path, &id, &t, NULL), GS_OK);
  gs__ccf_table_free(&t);
  gs__cuda_conv_cache_clear();
  assert_int_equal(gs__cuda_conv_cache_attach(1, &id), -1);
  assert_false(gs__cuda_conv_cache_get(&k, &got));
  /* no directory: nothing read or written */
  assert_int_equal(gs_engine_set_conv_cache("", NULL), GS_OK);
  gs__cuda_conv_cache_clear();
  assert_int_equal(gs__cuda_conv_cache_attach(1, &id), 0);
  gs__cuda_conv_cache_clear();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_missing_library_named, free_kept),
      cmocka_unit_test_teardown(test_missing_symbol_named, free_kept),
      cmocka_unit_test_teardown(test_unsupported_node_refused, free_kept),
      cmocka_unit_test_teardown(test_no_gpu_auto_falls_back, free_kept),
      cmocka_unit_test_teardown(test_int32_accepted, free_kept),
      cmocka_unit_test_teardown(test_cpu_refuses_fp16, free_kept),
      cmocka_unit_test(test_gpu_batches_padded),
      cmocka_unit_test_teardown(test_worker_instance_group, free_kept),
      cmocka_unit_test_teardown(test_pool_geom_asymmetric, free_kept),
      cmocka_unit_test_teardown(test_softmax_dims, free_kept),
      cmocka_unit_test_teardown(test_worker_fp16_input, free_kept),
      cmocka_unit_test_teardown(test_conv_choice_recorded, free_kept),
      cmocka_unit_test(test_conv_cache_shared),
      cmocka_unit_test(test_conv_cache_file_restart),
      cmocka_unit_test(test_gpu_wait_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
