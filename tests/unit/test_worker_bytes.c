/* BYTES tensors, classification and requested outputs in the worker's
 * codec, without sockets (KServe v2 and Triton's extensions): a BYTES
 * element travels as a 4-byte little-endian length then its bytes (binary
 * extension, gRPC raw contents), as a JSON string in "data" (flat or
 * nested, NUL characters allowed) or as gRPC bytes_contents; a length that
 * runs past the tensor, or a count that does not match the shape, is 400
 * naming the input and the element; a BYTES output that is not UTF-8 cannot
 * be a JSON string (400: ask for binary). An output asked for with
 * "classification": N is the top N per batch row as "value:index[:label]"
 * BYTES, shape [rows, N] (N at most the row's elements), values printed as
 * std::to_string does (%f for FP32); the same output asked for twice is
 * 400 "output 'X' already exists in request", as Triton answers. A dynamic
 * batch of BYTES rows splits back per request by elements, and pads with
 * empty strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "grpc_service.pb-c.h"
#include "test_tmpdir.h"
#include "worker/classify.h"
#include "worker/grpc_int.h"

/* Triton's simple_string: INPUT0, INPUT1 BYTES [-1,16] (here [-1,2]). */
static const gs_tensor_info_t str_in[] = {
    {"INPUT0", GS_DTYPE_BYTES, 2, {-1, 2}},
    {"INPUT1", GS_DTYPE_BYTES, 2, {-1, 2}}};
static const gs_tensor_info_t str_out[] = {
    {"OUTPUT0", GS_DTYPE_BYTES, 2, {-1, 2}},
    {"OUTPUT1", GS_DTYPE_BYTES, 2, {-1, 2}}};
static const gs__model_io_t strings = {"simple_string", "1",     2,    2,
                                       str_in,          str_out, NULL, 0};
/* A classifier: x FP32 [-1,4] -> probs FP32 [-1,4], ids INT32 [-1,4]. */
static const gs_tensor_info_t cls_in[] = {{"x", GS_DTYPE_FP32, 2, {-1, 4}}};
static const gs_tensor_info_t cls_out[] = {{"probs", GS_DTYPE_FP32, 2, {-1, 4}},
                                           {"ids", GS_DTYPE_INT32, 2, {-1, 4}}};
static const gs__model_io_t classifier = {"cls",  "1",     1,    2,
                                          cls_in, cls_out, NULL, 0};

static int decode_str(const gs__model_io_t *io, const char *body, size_t len,
                      long long hlen, gs__infer_request_t *req,
                      gs_error_t *err) {
  memset(err, 0, sizeof *err);
  return gs__infer_decode(req, io, body, len ? len : strlen(body), hlen, err);
}

#define IN1                                                                    \
  ",{\"name\":\"INPUT1\",\"shape\":[1,2],\"datatype\":\"BYTES\","              \
  "\"data\":[\"x\",\"y\"]}"

static void test_json_strings_decode(void **state) {
  (void)state;
  gs__infer_request_t req;
  gs_error_t err;
  /* nested, with a NUL character and a multi-byte character */
  const char *body = "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],"
                     "\"datatype\":\"BYTES\",\"data\":[[\"he\\u0000llo\","
                     "\"\\u00e9\"]]}" IN1 "]}";
  assert_int_equal(decode_str(&strings, body, 0, -1, &req, &err), 0);
  const uint8_t want[] = {6,   0,   0, 0, 'h', 'e', 0,    'l',
                          'l', 'o', 2, 0, 0,   0,   0xc3, 0xa9};
  assert_int_equal(req.inputs[0].bytes, sizeof want);
  assert_memory_equal(req.inputs[0].data, want, sizeof want);
  assert_int_equal(req.inputs[1].bytes, 10);
  gs__infer_request_release(&req);
  /* three strings for a [1,2] shape; a number among strings */
  const char *extra =
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],"
      "\"datatype\":\"BYTES\",\"data\":[\"a\",\"b\",\"c\"]}" IN1 "]}";
  assert_int_equal(decode_str(&strings, extra, 0, -1, &req, &err), 400);
  assert_non_null(strstr(err.msg, "'INPUT0'"));
  assert_non_null(strstr(err.msg, "2 strings"));
  gs__infer_request_release(&req);
  const char *number = "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],"
                       "\"datatype\":\"BYTES\",\"data\":[\"a\",1]}" IN1 "]}";
  assert_int_equal(decode_str(&strings, number, 0, -1, &req, &err), 400);
  gs__infer_request_release(&req);
}

/* The binary extension's body: JSON header, then INPUT0's bytes. */
static size_t binary_body(char *buf, const uint8_t *t0, size_t n0) {
  int h = sprintf(buf,
                  "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],"
                  "\"datatype\":\"BYTES\",\"parameters\":{\"binary_data_size\""
                  ":%zu}}" IN1 "]}",
                  n0);
  memcpy(buf + h, t0, n0);
  return (size_t)h + n0;
}

static void test_binary_strings_checked(void **state) {
  (void)state;
  gs__infer_request_t req;
  gs_error_t err;
  char body[512];
  const uint8_t ok[] = {1, 0, 0, 0, 'a', 0, 0, 0, 0}; /* "a", "" */
  size_t len = binary_body(body, ok, sizeof ok);
  long long hlen = (long long)(len - sizeof ok);
  assert_int_equal(decode_str(&strings, body, len, hlen, &req, &err), 0);
  assert_int_equal(req.inputs[0].bytes, sizeof ok);
  assert_memory_equal(req.inputs[0].data, ok, sizeof ok);
  gs__infer_request_release(&req);
  /* element 1's length 200 runs past the 9 bytes */
  const uint8_t past[] = {1, 0, 0, 0, 'a', 200, 0, 0, 0};
  len = binary_body(body, past, sizeof past);
  assert_int_equal(decode_str(&strings, body, len, hlen, &req, &err), 400);
  assert_string_equal(err.msg, "input 'INPUT0': element 1's length 200 runs "
                               "past the end of its 9 bytes");
  gs__infer_request_release(&req);
  /* one element where the shape needs two */
  const uint8_t short1[] = {1, 0, 0, 0, 'a'};
  len = binary_body(body, short1, sizeof short1);
  assert_int_equal(decode_str(&strings, body, len,
                              (long long)(len - sizeof short1), &req, &err),
                   400);
  assert_non_null(strstr(err.msg, "'INPUT0': element 1 has no 4-byte length"));
  gs__infer_request_release(&req);
  /* a raw body (header length 0) cannot give a BYTES input's shape */
  static const gs__model_io_t one_str = {"one",  "1",     1,    1,
                                         str_in, str_out, NULL, 0};
  assert_int_equal(
      decode_str(&one_str, (const char *)ok, sizeof ok, 0, &req, &err), 400);
  assert_non_null(strstr(err.msg, "'INPUT0' is BYTES, whose shape a raw body "
                                  "cannot give"));
  gs__infer_request_release(&req);
  const char *no_size = "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,2],"
                        "\"datatype\":\"BYTES\",\"parameters\":{"
                        "\"binary_data_size\":\"9\"}}" IN1 "]}";
  assert_int_equal(decode_str(&strings, no_size, 0, -1, &req, &err), 400);
  assert_string_equal(err.msg,
                      "input 'INPUT0': binary_data_size must be a byte count");
  gs__infer_request_release(&req);
  /* bytes left after the two elements */
  const uint8_t extra[] = {0, 0, 0, 0, 0, 0, 0, 0, 'z'};
  len = binary_body(body, extra, sizeof extra);
  assert_int_equal(decode_str(&strings, body, len, hlen, &req, &err), 400);
  assert_non_null(strstr(err.msg, "1 bytes follow the 2 elements"));
  gs__infer_request_release(&req);
}

static void test_strings_encode(void **state) {
  (void)state;
  gs__infer_request_t req = {0};
  gs__http_response_t resp = {0};
  gs_error_t err = {0};
  static const uint8_t d0[] = {3, 0, 0, 0, '1', '2', '3', 2, 0, 0, 0, 'h', 0};
  static const uint8_t d1[] = {1, 0, 0, 0, 'x', 1, 0, 0, 0, 0xff};
  gs_tensor_t outs[2] = {
      {"OUTPUT0", GS_DTYPE_BYTES, 2, {1, 2}, d0, sizeof d0, GS_MEM_HOST},
      {"OUTPUT1", GS_DTYPE_BYTES, 2, {1, 2}, d1, sizeof d1, GS_MEM_HOST}};
  req.want_output[0] = true;
  assert_int_equal(gs__infer_encode(&resp, &req, &strings, outs, &err), 0);
  assert_non_null(strstr(resp.body, "\"datatype\":\"BYTES\",\"shape\":[1,2],"
                                    "\"data\":[\"123\",\"h\\u0000\"]"));
  /* 0xff is not UTF-8: JSON cannot carry it */
  req.want_output[1] = true;
  assert_int_equal(gs__infer_encode(&resp, &req, &strings, outs, &err),
                   GS_EINVAL);
  assert_string_equal(err.msg,
                      "output 'OUTPUT1': element 1 is not valid UTF-8, which "
                      "JSON cannot carry: ask for the output as binary data");
  /* binary: the bytes as they are, after the header */
  req.binary_output[1] = true;
  assert_int_equal(gs__infer_encode(&resp, &req, &strings, outs, &err), 0);
  assert_int_equal(resp.body_len, (size_t)resp.infer_header_len + sizeof d1);
  assert_memory_equal(resp.body + resp.infer_header_len, d1, sizeof d1);
  assert_non_null(strstr(resp.body, "\"binary_data_size\":10"));
  gs__http_response_release(&resp);
}

static void test_duplicate_and_unknown_outputs(void **state) {
  (void)state;
  gs__infer_request_t req;
  gs_error_t err;
  const char *in = "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":"
                   "\"FP32\",\"data\":[1,2,3,4]}],\"outputs\":";
  char body[512];
  snprintf(body, sizeof body,
           "%s[{\"name\":\"ids\"},{\"name\":\"probs\"},"
           "{\"name\":\"ids\"}]}",
           in);
  assert_int_equal(decode_str(&classifier, body, 0, -1, &req, &err), 400);
  assert_string_equal(err.msg, "output 'ids' already exists in request");
  gs__infer_request_release(&req);
  snprintf(body, sizeof body, "%s[{\"name\":\"nope\"}]}", in);
  assert_int_equal(decode_str(&classifier, body, 0, -1, &req, &err), 400);
  assert_string_equal(err.msg,
                      "unexpected inference output 'nope' for model 'cls'");
  gs__infer_request_release(&req);
  /* the same through the tensors gRPC gives */
  static const float x[4] = {1, 2, 3, 4};
  static const int64_t shape[2] = {1, 4};
  gs__infer_tensors_t t = {.n_inputs = 1, .n_outputs = 2, .grpc = true};
  t.inputs[0] = (gs__infer_input_t){"x", "FP32", shape, 2, x, sizeof x};
  t.outputs[0] = t.outputs[1] = "probs";
  assert_int_equal(gs__infer_decode_tensors(&req, &classifier, &t, &err), 400);
  assert_string_equal(err.msg, "output 'probs' already exists in request");
  gs__infer_request_release(&req);
}

static void test_classification_request_parsed(void **state) {
  (void)state;
  gs__infer_request_t req;
  gs_error_t err;
  const char *body =
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
      "\"data\":[1,2,3,4]}],\"outputs\":[{\"name\":\"probs\",\"parameters\":"
      "{\"classification\":2,\"binary_data\":true}}]}";
  assert_int_equal(decode_str(&classifier, body, 0, -1, &req, &err), 0);
  assert_int_equal(req.class_count[0], 2);
  assert_true(req.binary_output[0]);
  assert_false(req.want_output[1]);
  gs__infer_request_release(&req);
  const char *neg =
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1,4],\"datatype\":\"FP32\","
      "\"data\":[1,2,3,4]}],\"outputs\":[{\"name\":\"probs\",\"parameters\":"
      "{\"classification\":-1}}]}";
  assert_int_equal(decode_str(&classifier, neg, 0, -1, &req, &err), 400);
  assert_non_null(strstr(err.msg, "output 'probs': classification"));
  gs__infer_request_release(&req);
}

/* Element i of a BYTES tensor as a string. */
static const char *element(const gs_tensor_t *t, size_t i, char *buf) {
  const uint8_t *p = t->data;
  uint32_t len;
  for (;;) {
    memcpy(&len, p, 4);
    if (i-- == 0)
      break;
    p += 4 + len;
  }
  memcpy(buf, p + 4, len);
  buf[len] = '\0';
  return buf;
}

static void test_classification_top_n_per_row(void **state) {
  (void)state;
  gs__infer_request_t req = {.batch_first_dim = true};
  gs_error_t err = {0};
  static const float probs[8] = {1.1f, 3.3f, 0.5f, 2.4f, 0, 7, 7, -1};
  static const int32_t ids[8] = {5, -9, 5, 100, 1, 2, 3, 4};
  gs_tensor_t outs[2] = {
      {"probs", GS_DTYPE_FP32, 2, {2, 4}, probs, 32, GS_MEM_HOST},
      {"ids", GS_DTYPE_INT32, 2, {2, 4}, ids, 32, GS_MEM_HOST}};
  gs_tensor_t got[2];
  void *owned[2];
  char s[64];
  req.want_output[0] = req.want_output[1] = true;
  req.class_count[0] = 2;
  req.class_count[1] = 9; /* more than the 4 a row has: 4 */
  assert_int_equal(
      gs__classify_outputs(got, owned, &req, &classifier, outs, &err), 0);
  assert_int_equal(got[0].dtype, GS_DTYPE_BYTES);
  assert_int_equal(got[0].rank, 2);
  assert_int_equal(got[0].shape[0], 2);
  assert_int_equal(got[0].shape[1], 2);
  assert_string_equal(element(&got[0], 0, s), "3.300000:1");
  assert_string_equal(element(&got[0], 1, s), "2.400000:3");
  assert_string_equal(element(&got[0], 2, s), "7.000000:1"); /* ties: index */
  assert_string_equal(element(&got[0], 3, s), "7.000000:2");
  assert_int_equal(got[1].shape[1], 4);
  assert_string_equal(element(&got[1], 0, s), "100:3");
  assert_string_equal(element(&got[1], 1, s), "5:0");
  assert_string_equal(element(&got[1], 3, s), "-9:1");
  assert_string_equal(element(&got[1], 4, s), "4:3");
  assert_int_equal(
      gs__bytes_check(got[1].data, got[1].bytes, 8, "output", "ids", &err), 0);
  free(owned[0]);
  free(owned[1]);
  /* no batch dimension (max_batch_size 0): shape [N] over the whole tensor */
  req.batch_first_dim = false;
  req.class_count[1] = 1;
  assert_int_equal(
      gs__classify_outputs(got, owned, &req, &classifier, outs, &err), 0);
  assert_int_equal(got[1].rank, 1);
  assert_int_equal(got[1].shape[0], 1);
  assert_string_equal(element(&got[1], 0, s), "100:3");
  free(owned[0]);
  free(owned[1]);
  /* FP16 has no order here, as in Triton */
  outs[0].dtype = GS_DTYPE_FP16;
  outs[0].bytes = 16;
  assert_int_equal(
      gs__classify_outputs(got, owned, &req, &classifier, outs, &err),
      GS_EINVAL);
  assert_non_null(strstr(err.msg, "unsupported type 'FP16'"));
  free(owned[0]);
  free(owned[1]);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_labels_from_config(void **state) {
  (void)state;
  char dir[256], path[512];
  assert_int_equal(test_tmpdir_make(dir, sizeof dir, "labels"), 0);
  snprintf(path, sizeof path, "%s/config.pbtxt", dir);
  const char *pbtxt = "max_batch_size: 8\n"
                      "output [{ name: \"probs\" data_type: TYPE_FP32 "
                      "dims: [4] label_filename: \"labels.txt\" }]\n";
  gs__model_config_t cfg;
  gs_error_t err = {0};
  assert_int_equal(gs__model_config_parse_pbtxt(&cfg, "cls", path, pbtxt,
                                                strlen(pbtxt), &err),
                   GS_OK);
  assert_string_equal(cfg.outputs[0].label_filename, "labels.txt");
  gs__labels_t *labels = NULL;
  /* the file does not exist: the load fails naming it */
  assert_int_not_equal(gs__labels_load(&labels, &classifier, &cfg, &err),
                       GS_OK);
  assert_non_null(strstr(err.msg, "labels.txt"));
  assert_null(labels);
  snprintf(path, sizeof path, "%s/labels.txt", dir);
  write_file(path, "cat\ndog\n\nfish"); /* no label 2, no newline at end */
  assert_int_equal(gs__labels_load(&labels, &classifier, &cfg, &err), GS_OK);
  assert_string_equal(gs__labels_get(labels, 0, 0), "cat");
  assert_string_equal(gs__labels_get(labels, 0, 3), "fish");
  assert_null(gs__labels_get(labels, 0, 2));
  assert_null(gs__labels_get(labels, 0, 4));
  assert_null(gs__labels_get(labels, 1, 0)); /* ids has none */
  /* classified with labels; an index without one has none */
  static const float probs[4] = {0.1f, 0.2f, 0.6f, 0.05f};
  static const int32_t ids[4] = {0};
  gs_tensor_t outs[2] = {
      {"probs", GS_DTYPE_FP32, 2, {1, 4}, probs, 16, GS_MEM_HOST},
      {"ids", GS_DTYPE_INT32, 2, {1, 4}, ids, 16, GS_MEM_HOST}};
  gs__infer_request_t req = {.batch_first_dim = true, .labels = labels};
  req.want_output[0] = true;
  req.binary_output[0] = false;
  req.class_count[0] = 2;
  gs__http_response_t resp = {0};
  assert_int_equal(gs__infer_encode(&resp, &req, &classifier, outs, &err), 0);
  assert_non_null(strstr(resp.body,
                         "{\"name\":\"probs\",\"datatype\":\"BYTES\","
                         "\"shape\":[1,2],\"data\":[\"0.600000:2\","
                         "\"0.200000:1:dog\"]}"));
  gs__http_response_release(&resp);
  gs__labels_destroy(labels);
  /* a label file outside the model directory is refused */
  const char *escape = "output [{ name: \"probs\" label_filename: "
                       "\"../x.txt\" }]\n";
  assert_int_equal(gs__model_config_parse_pbtxt(&cfg, "cls", path, escape,
                                                strlen(escape), &err),
                   GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "outside the model directory"));
  assert_int_equal(test_tmpdir_remove(dir), 0);
}

/* gRPC: bytes_contents and raw contents of a BYTES input. */
static void test_grpc_bytes_contents(void **state) {
  (void)state;
  static int64_t shape[2] = {1, 2};
  Inference__ModelInferRequest m = INFERENCE__MODEL_INFER_REQUEST__INIT;
  Inference__ModelInferRequest__InferInputTensor t[2], *pt[2] = {&t[0], &t[1]};
  Inference__InferTensorContents c;
  ProtobufCBinaryData els[2] = {{2, (uint8_t *)"ab"}, {0, NULL}};
  inference__infer_tensor_contents__init(&c);
  c.n_bytes_contents = 2;
  c.bytes_contents = els;
  for (int i = 0; i < 2; i++) {
    inference__model_infer_request__infer_input_tensor__init(&t[i]);
    t[i].name = i ? "INPUT1" : "INPUT0";
    t[i].datatype = "BYTES";
    t[i].n_shape = 2;
    t[i].shape = shape;
    t[i].contents = &c;
  }
  Inference__ModelInferRequest__InferRequestedOutputTensor o, *po = &o;
  Inference__ModelInferRequest__InferRequestedOutputTensor__ParametersEntry e,
      *pe = &e;
  Inference__InferParameter v = INFERENCE__INFER_PARAMETER__INIT;
  inference__model_infer_request__infer_requested_output_tensor__init(&o);
  inference__model_infer_request__infer_requested_output_tensor__parameters_entry__init(
      &e);
  o.name = "OUTPUT0";
  e.key = "classification";
  e.value = &v;
  v.parameter_choice_case =
      INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
  v.int64_param = 3;
  o.n_parameters = 1;
  o.parameters = &pe;
  m.model_name = "simple_string";
  m.n_inputs = 2;
  m.inputs = pt;
  m.n_outputs = 1;
  m.outputs = &po;
  uint8_t buf[512];
  size_t len = inference__model_infer_request__pack(&m, buf);
  gs__grpc_infer_t gi;
  gs_error_t err = {0};
  assert_int_equal(gs__grpc_infer_read(&gi, buf, len, &err), GS__GRPC_OK);
  const uint8_t want[] = {2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0};
  assert_int_equal(gi.bytes[0], sizeof want);
  assert_memory_equal(gi.data[0], want, sizeof want);
  gs__infer_request_t req;
  assert_int_equal(gs__grpc_infer_decode(&req, &strings, &gi, &err), 0);
  assert_int_equal(req.class_count[0], 3);
  assert_true(req.want_output[0]);
  assert_false(req.want_output[1]);
  gs__infer_request_release(&req);
  gs__grpc_infer_release(&gi);
  /* raw contents whose element 0 claims 9 bytes of 6 */
  ProtobufCBinaryData raw[2] = {{6, (uint8_t *)"\x09\0\0\0ab"},
                                {8, (uint8_t *)"\0\0\0\0\0\0\0\0"}};
  t[0].contents = t[1].contents = NULL;
  m.n_raw_input_contents = 2;
  m.raw_input_contents = raw;
  len = inference__model_infer_request__pack(&m, buf);
  assert_int_equal(gs__grpc_infer_read(&gi, buf, len, &err),
                   GS__GRPC_INVALID_ARGUMENT);
  assert_string_equal(err.msg, "input 'INPUT0': element 0's length 9 runs "
                               "past the end of its 6 bytes");
  gs__grpc_infer_release(&gi);
}

/* A batch of BYTES rows splits back per request by elements, not by an
 * even share of the bytes; padding rows are empty strings. */
static void test_batched_strings_split_and_pad(void **state) {
  (void)state;
  /* rows: ["a"*5, "b"], ["", "cc"], ["d", ""] */
  static const uint8_t all[] = {
      5, 0, 0, 0, 'a', 'a', 'a', 'a', 'a', 1, 0, 0,   0, 'b', 0, 0, 0,
      0, 2, 0, 0, 0,   'c', 'c', 1,   0,   0, 0, 'd', 0, 0,   0, 0};
  gs_tensor_t out = {"OUTPUT0", GS_DTYPE_BYTES, 2,          {3, 2},
                     all,       sizeof all,     GS_MEM_HOST};
  gs_tensor_t slice;
  gs_error_t err = {0};
  assert_int_equal(gs__batch_split(&slice, &out, 1, 1, 2, 3, &err), GS_OK);
  assert_int_equal(slice.shape[0], 2);
  assert_ptr_equal(slice.data, all + 14);
  assert_int_equal(slice.bytes, sizeof all - 14);
  assert_int_equal(gs__batch_split(&slice, &out, 1, 0, 1, 3, &err), GS_OK);
  assert_int_equal(slice.bytes, 14);
  /* padded from 3 rows to 4: 2 more empty elements, 8 zero bytes */
  void *buf = malloc(sizeof all);
  memcpy(buf, all, sizeof all);
  gs_tensor_t padded = out;
  padded.data = buf;
  assert_int_equal(gs__batch_pad(&padded, &buf, 1, 3, 4, &err), GS_OK);
  assert_int_equal(padded.shape[0], 4);
  assert_int_equal(padded.bytes, sizeof all + 8);
  assert_int_equal(
      gs__bytes_check(padded.data, padded.bytes, 8, "output", "OUTPUT0", &err),
      GS_OK);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_strings_decode),
      cmocka_unit_test(test_binary_strings_checked),
      cmocka_unit_test(test_strings_encode),
      cmocka_unit_test(test_duplicate_and_unknown_outputs),
      cmocka_unit_test(test_classification_request_parsed),
      cmocka_unit_test(test_classification_top_n_per_row),
      cmocka_unit_test(test_labels_from_config),
      cmocka_unit_test(test_grpc_bytes_contents),
      cmocka_unit_test(test_batched_strings_split_and_pad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
