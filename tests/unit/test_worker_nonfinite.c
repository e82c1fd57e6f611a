/* NaN and Inf in the worker's KServe v2 codec. JSON (RFC 8259) has no
 * NaN or Infinity: a JSON request spelling them is a 400 that says the body
 * is not JSON, and a non-finite FP32 output encodes as null, so that every
 * response is strict JSON (Triton writes bare NaN/Infinity tokens instead,
 * which strict parsers reject; Triton's Python client reads null as NaN).
 * Binary tensors carry any float: a NaN or Inf input decodes bit for bit,
 * and a binary output keeps its bits (the way to tell NaN from Inf).
 * Through the router, a binary request with NaN and Inf into a Sigmoid model
 * is a 200 whose JSON says null where the output is NaN. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "onnx.pb-c.h"
#include "test_tmpdir.h"
#include "worker/worker_int.h"

static const gs_tensor_info_t one_in[] = {{"x", GS_DTYPE_FP32, 2, {-1, 4}}};
static const gs__model_io_t one = {"one", "1", 1, 1, one_in, one_in, NULL, 0};

static void test_binary_input_keeps_nonfinite(void **state) {
  (void)state;
  const float x[4] = {NAN, INFINITY, -INFINITY, 1.5f};
  gs__infer_request_t req;
  gs_error_t err = {0};
  assert_int_equal(
      gs__infer_decode(&req, &one, (const char *)x, sizeof x, 0, &err), 0);
  assert_memory_equal(req.inputs[0].data, x, sizeof x);
  gs__infer_request_release(&req);
}

static void test_json_input_nonfinite_is_400(void **state) {
  (void)state;
  static const char *bodies[] = {
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
      "\"data\":[NaN,1,2,3]}]}",
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
      "\"data\":[Infinity,1,2,3]}]}",
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
      "\"data\":[null,1,2,3]}]}"};
  for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
    gs__infer_request_t req;
    gs_error_t err = {0};
    assert_int_equal(
        gs__infer_decode(&req, &one, bodies[i], strlen(bodies[i]), -1, &err),
        400);
    assert_true(err.msg[0] != '\0');
    print_message("400: %s\n", err.msg);
    gs__infer_request_release(&req);
  }
}

static void test_json_output_nonfinite_is_null(void **state) {
  (void)state;
  const float y[4] = {NAN, INFINITY, -INFINITY, 1.5f};
  gs__infer_request_t req = {.want_output = {true}};
  gs_tensor_t out = {"x", GS_DTYPE_FP32, 2, {1, 4}, y, sizeof y, GS_MEM_HOST};
  gs__http_response_t resp = {.infer_header_len = -1};
  gs_error_t err = {0};
  assert_int_equal(gs__infer_encode(&resp, &req, &one, &out, &err), 0);
  assert_string_equal(resp.body,
                      "{\"model_name\":\"one\",\"model_version\":\"1\","
                      "\"outputs\":[{\"name\":\"x\",\"datatype\":\"FP32\","
                      "\"shape\":[1,4],\"data\":[null,null,null,1.5]}]}");
  gs__http_response_release(&resp);
  /* Binary: the bits as they are. */
  req.binary_output[0] = true;
  resp = (gs__http_response_t){.infer_header_len = -1};
  assert_int_equal(gs__infer_encode(&resp, &req, &one, &out, &err), 0);
  assert_true(resp.infer_header_len > 0);
  assert_int_equal(resp.body_len, (size_t)resp.infer_header_len + sizeof y);
  assert_memory_equal(resp.body + resp.infer_header_len, y, sizeof y);
  gs__http_response_release(&resp);
}

static Onnx__ValueInfoProto *value_info(const char *name,
                                        Onnx__TypeProto *type) {
  Onnx__ValueInfoProto *v = malloc(sizeof *v);
  assert_non_null(v);
  onnx__value_info_proto__init(v);
  v->name = (char *)name;
  v->type = type;
  return v;
}

/* DIR/sig/1/model.onnx: y = Sigmoid(x), x and y FP32 [1,4]. */
static void write_sigmoid_model(const char *dir) {
  Onnx__TensorShapeProto__Dimension d0, d1, *dims[2] = {&d0, &d1};
  onnx__tensor_shape_proto__dimension__init(&d0);
  onnx__tensor_shape_proto__dimension__init(&d1);
  d0.value_case = d1.value_case =
      ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
  d0.dim_value = 1;
  d1.dim_value = 4;
  Onnx__TensorShapeProto shape;
  onnx__tensor_shape_proto__init(&shape);
  shape.n_dim = 2;
  shape.dim = dims;
  Onnx__TypeProto__Tensor tt;
  onnx__type_proto__tensor__init(&tt);
  tt.has_elem_type = 1;
  tt.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  tt.shape = &shape;
  Onnx__TypeProto type;
  onnx__type_proto__init(&type);
  type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  type.tensor_type = &tt;
  Onnx__ValueInfoProto *in = value_info("x", &type);
  Onnx__ValueInfoProto *out = value_info("y", &type);
  char *node_in[1] = {"x"}, *node_out[1] = {"y"};
  Onnx__NodeProto node, *nodes[1] = {&node};
  onnx__node_proto__init(&node);
  node.op_type = "Sigmoid";
  node.n_input = node.n_output = 1;
  node.input = node_in;
  node.output = node_out;
  Onnx__GraphProto graph;
  onnx__graph_proto__init(&graph);
  graph.name = "sig";
  graph.n_node = 1;
  graph.node = nodes;
  graph.n_input = graph.n_output = 1;
  graph.input = &in;
  graph.output = &out;
  Onnx__OperatorSetIdProto opset, *opsets[1] = {&opset};
  onnx__operator_set_id_proto__init(&opset);
  opset.domain = "";
  opset.has_version = 1;
  opset.version = 13;
  Onnx__ModelProto m;
  onnx__model_proto__init(&m);
  m.has_ir_version = 1;
  m.ir_version = 8;
  m.n_opset_import = 1;
  m.opset_import = opsets;
  m.graph = &graph;
  size_t len = onnx__model_proto__get_packed_size(&m);
  uint8_t *buf = malloc(len);
  assert_non_null(buf);
  onnx__model_proto__pack(&m, buf);
  char path[512];
  snprintf(path, sizeof path, "mkdir -p '%s/sig/1'", dir);
  assert_int_equal(system(path), 0);
  snprintf(path, sizeof path, "%s/sig/1/model.onnx", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, len, f), len);
  fclose(f);
  free(buf);
  free(in);
  free(out);
}

static void test_router_answers_200(void **state) {
  (void)state;
  char dir[256];
  static gs__repo_t repo;
  gs_error_t err = {0};
  assert_int_equal(test_tmpdir_make(dir, sizeof dir, "nonfinite"), 0);
  write_sigmoid_model(dir);
  assert_int_equal(gs__repo_open(&repo, dir, &err), 0);
  /* A binary input, a JSON output. */
  static const char hdr[] =
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
      "\"parameters\":{\"binary_data_size\":16}}]}";
  const float x[4] = {NAN, INFINITY, -INFINITY, 0.0f};
  size_t hlen = sizeof hdr - 1;
  char *body = malloc(hlen + sizeof x + 1); /* owned by the request */
  assert_non_null(body);
  memcpy(body, hdr, hlen);
  memcpy(body + hlen, x, sizeof x);
  body[hlen + sizeof x] = '\0';
  gs__http_request_t req = {.method = HTTP_POST,
                            .url = strdup("/v2/models/sig/infer"),
                            .body = body,
                            .body_len = hlen + sizeof x,
                            .infer_header_len = (long long)hlen};
  gs__http_response_t resp = {.infer_header_len = -1};
  gs__infer_job_t job;
  memset(&job, 0, sizeof job);
  int routed = gs__route(&repo, &req, &resp, &job);
  if (routed != 1)
    fail_msg("route: %d, status %d: %s", routed, resp.status,
             resp.body ? resp.body : "");
  gs__infer_job_run(&job);
  gs__infer_job_finish(&job);
  if (job.resp.status != 200)
    fail_msg("status %d: %s", job.resp.status, job.resp.body);
  /* Sigmoid: NaN -> NaN (null), +Inf -> 1, -Inf -> 0, 0 -> 0.5. */
  assert_non_null(strstr(job.resp.body, "\"data\":[null,1.0,0.0,0.5]"));
  gs__http_response_release(&job.resp);
  gs__http_response_release(&resp);
  free(req.url);
  gs__repo_close(&repo);
  test_tmpdir_remove(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_input_keeps_nonfinite),
      cmocka_unit_test(test_json_input_nonfinite_is_400),
      cmocka_unit_test(test_json_output_nonfinite_is_null),
      cmocka_unit_test(test_router_answers_200),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
