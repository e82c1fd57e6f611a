/* NaN and Inf in the worker's KServe v2 codec. JSON (RFC 8259) has no
 * NaN or Infinity: a JSON request spelling them is a 400 that says the body
 * is not JSON, and a non-finite FP32 output encodes as null, so that every
 * response is strict JSON (Triton writes bare NaN/Infinity tokens instead,
 * which strict parsers reject; Triton's Python client reads null as NaN).
 * Binary tensors carry any float: a NaN or Inf input decodes bit for bit,
 * and a binary output keeps its bits (the way to tell NaN from Inf). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "worker/worker_int.h"

static const gs_tensor_info_t one_in[] = {{"x", GS_DTYPE_FP32, 2, {-1, 4}}};
static const gs__model_io_t one = {"one", "1", 1, 1, one_in, one_in};

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
  gs_tensor_t out = {"x", GS_DTYPE_FP32, 2, {1, 4}, y, sizeof y};
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_input_keeps_nonfinite),
      cmocka_unit_test(test_json_input_nonfinite_is_400),
      cmocka_unit_test(test_json_output_nonfinite_is_null),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
