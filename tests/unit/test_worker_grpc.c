/* Inference worker gRPC rules, without sockets: a message travels behind a
 * 5-byte prefix (compressed flag 0, 4-byte big-endian length) that must
 * match the bytes that follow; a compressed message is UNIMPLEMENTED, one
 * over the limit RESOURCE_EXHAUSTED; methods are
 * /inference.GRPCInferenceService/NAME and any other is UNIMPLEMENTED;
 * grpc-message is percent-encoded outside printable ASCII and for '%';
 * ModelInferRequest's raw_input_contents (one per input, in order) or typed
 * contents decode into the infer request HTTP's bodies decode into, and the
 * outputs become a ModelInferResponse with raw_output_contents; HTTP
 * 400/404/503/500 map to INVALID_ARGUMENT/NOT_FOUND/UNAVAILABLE/INTERNAL;
 * ModelConfig carries the HTTP config document's fields under the proto's
 * names and enum numbers (KIND_GPU 1, CONTROL_SEQUENCE_READY 1, ...). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc_service.pb-c.h"
#include "worker/grpc_int.h"

static const gs_tensor_info_t in_info[] = {
    {"INPUT0", GS_DTYPE_INT32, 2, {-1, 4}},
    {"INPUT1", GS_DTYPE_INT32, 2, {-1, 4}}};
static const gs_tensor_info_t out_info[] = {
    {"OUTPUT0", GS_DTYPE_INT32, 2, {-1, 4}}};
static const gs__model_io_t simple = {"simple", "1",      2,    1,
                                      in_info,  out_info, NULL, 0};

static void test_framing(void **state) {
  (void)state;
  const uint8_t *msg;
  size_t len;
  gs_error_t err;
  uint8_t ok[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
  assert_int_equal(gs__grpc_frame_read(ok, sizeof ok, 100, &msg, &len, &err),
                   GS__GRPC_OK);
  assert_int_equal(len, 3);
  assert_ptr_equal(msg, ok + 5);
  uint8_t empty[] = {0, 0, 0, 0, 0};
  assert_int_equal(gs__grpc_frame_read(empty, 5, 100, &msg, &len, &err), 0);
  assert_int_equal(len, 0);
  /* Big-endian length: 0x00000100 = 256 > the limit of 100. */
  uint8_t big[] = {0, 0, 0, 1, 0};
  assert_int_equal(gs__grpc_frame_read(big, 5, 100, &msg, &len, &err),
                   GS__GRPC_RESOURCE_EXHAUSTED);
  uint8_t compressed[] = {1, 0, 0, 0, 1, 'x'};
  assert_int_equal(gs__grpc_frame_read(compressed, 6, 100, &msg, &len, &err),
                   GS__GRPC_UNIMPLEMENTED);
  assert_int_equal(gs__grpc_frame_read(ok, 4, 100, &msg, &len, &err),
                   GS__GRPC_INVALID_ARGUMENT); /* no whole prefix */
  assert_int_equal(gs__grpc_frame_read(ok, 7, 100, &msg, &len, &err),
                   GS__GRPC_INVALID_ARGUMENT); /* truncated */
  uint8_t trailing[] = {0, 0, 0, 0, 1, 'a', 'b'};
  assert_int_equal(gs__grpc_frame_read(trailing, 7, 100, &msg, &len, &err),
                   GS__GRPC_INVALID_ARGUMENT); /* a second message */
}

static void test_methods_and_status(void **state) {
  (void)state;
  assert_int_equal(
      gs__grpc_method("/inference.GRPCInferenceService/ModelInfer"),
      GS__GRPC_MODEL_INFER);
  assert_int_equal(
      gs__grpc_method("/inference.GRPCInferenceService/ServerLive"),
      GS__GRPC_SERVER_LIVE);
  assert_int_equal(
      gs__grpc_method("/inference.GRPCInferenceService/ModelStatistics"),
      GS__GRPC_MODEL_STATISTICS);
  assert_int_equal(
      gs__grpc_method("/inference.GRPCInferenceService/ModelStreamInfer"),
      GS__GRPC_MODEL_STREAM_INFER);
  assert_int_equal(
      gs__grpc_method("/inference.GRPCInferenceService/NoSuchMethod"),
      GS__GRPC_UNKNOWN_METHOD);
  assert_int_equal(gs__grpc_method("/other.Service/ModelInfer"),
                   GS__GRPC_UNKNOWN_METHOD);
  assert_int_equal(gs__grpc_status_of_http(200), GS__GRPC_OK);
  assert_int_equal(gs__grpc_status_of_http(400), GS__GRPC_INVALID_ARGUMENT);
  assert_int_equal(gs__grpc_status_of_http(404), GS__GRPC_NOT_FOUND);
  assert_int_equal(gs__grpc_status_of_http(503), GS__GRPC_UNAVAILABLE);
  assert_int_equal(gs__grpc_status_of_http(500), GS__GRPC_INTERNAL);
  char out[64];
  gs__grpc_percent_encode("a 100% \"ok\"\n\xc3\xa9", out, sizeof out);
  assert_string_equal(out, "a 100%25 \"ok\"%0A%C3%A9");
  gs__grpc_percent_encode("abcdef", out, 4);
  assert_string_equal(out, "abc");
}

/* Packs a ModelInferRequest for `simple` with two [1,4] INT32 inputs. */
static const char *pack_version = ""; /* pack_infer's model_version */

static uint8_t *pack_infer(const char *model, bool raw, bool contents,
                           const char *dtype, size_t *len) {
  static int32_t a[4] = {1, 2, 3, 4}, b[4] = {10, 20, 30, 40};
  static int64_t shape[2] = {1, 4};
  Inference__ModelInferRequest m = INFERENCE__MODEL_INFER_REQUEST__INIT;
  Inference__ModelInferRequest__InferInputTensor t[2], *pt[2] = {&t[0], &t[1]};
  Inference__InferTensorContents c[2];
  ProtobufCBinaryData rawd[2] = {{16, (uint8_t *)a}, {16, (uint8_t *)b}};
  Inference__ModelInferRequest__InferRequestedOutputTensor o, *po = &o;
  for (int i = 0; i < 2; i++) {
    inference__model_infer_request__infer_input_tensor__init(&t[i]);
    inference__infer_tensor_contents__init(&c[i]);
    t[i].name = i ? "INPUT1" : "INPUT0";
    t[i].datatype = (char *)dtype;
    t[i].n_shape = 2;
    t[i].shape = shape;
    c[i].n_int_contents = 4;
    c[i].int_contents = i ? b : a;
    if (contents)
      t[i].contents = &c[i];
  }
  inference__model_infer_request__infer_requested_output_tensor__init(&o);
  o.name = "OUTPUT0";
  m.model_name = (char *)model;
  m.model_version = (char *)pack_version;
  m.id = "req-7";
  m.n_inputs = 2;
  m.inputs = pt;
  m.n_outputs = 1;
  m.outputs = &po;
  if (raw) {
    m.n_raw_input_contents = 2;
    m.raw_input_contents = rawd;
  }
  *len = inference__model_infer_request__get_packed_size(&m);
  uint8_t *buf = malloc(*len + 1);
  inference__model_infer_request__pack(&m, buf);
  return buf;
}

/* The message read for the router decodes, into the infer request HTTP's
 * bodies decode into, to the tensors that were sent, whichever way they
 * travelled. */
static void check_decodes(const gs__grpc_infer_t *gi) {
  gs__infer_request_t ir;
  gs_error_t err = {0};
  assert_string_equal(gi->m->model_name, "simple");
  assert_int_equal(gs__grpc_infer_decode(&ir, &simple, gi, &err), 0);
  assert_string_equal(ir.id, "req-7");
  assert_int_equal(ir.n_inputs, 2);
  int32_t want1[4] = {10, 20, 30, 40};
  assert_int_equal(ir.inputs[1].bytes, 16);
  assert_memory_equal(ir.inputs[1].data, want1, 16);
  assert_int_equal(ir.inputs[0].shape[1], 4);
  assert_true(ir.want_output[0] && ir.binary_output[0]);
  gs__infer_request_release(&ir);
}

static void test_infer_request_raw_and_contents(void **state) {
  (void)state;
  for (int contents = 0; contents < 2; contents++) {
    size_t len;
    uint8_t *msg = pack_infer("simple", !contents, contents, "INT32", &len);
    gs__grpc_infer_t gi;
    gs_error_t err = {0};
    assert_int_equal(gs__grpc_infer_read(&gi, msg, len, &err), 0);
    check_decodes(&gi);
    gs__grpc_infer_release(&gi);
    free(msg);
  }
}

/* The "timeout" parameter: an int64_param of microseconds (what
 * tritonclient's grpc infer(timeout=N) sends), kept for the queue policy;
 * another type, or a negative one, is INVALID_ARGUMENT naming it. */
static void test_infer_timeout_parameter(void **state) {
  (void)state;
  size_t len;
  uint8_t *msg = pack_infer("simple", true, false, "INT32", &len);
  Inference__ModelInferRequest *m =
      inference__model_infer_request__unpack(NULL, len, msg);
  assert_non_null(m);
  Inference__InferParameter v = INFERENCE__INFER_PARAMETER__INIT;
  Inference__ModelInferRequest__ParametersEntry e =
      INFERENCE__MODEL_INFER_REQUEST__PARAMETERS_ENTRY__INIT;
  Inference__ModelInferRequest__ParametersEntry *pe = &e;
  e.key = "timeout";
  e.value = &v;
  m->n_parameters = 1;
  m->parameters = &pe;
  static const struct {
    int choice;
    int64_t value;
    int status;
  } cases[] = {
      {INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM, 7000, 0},
      {INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM, -7, 400},
      {INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM, 7000, 400},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    v.parameter_choice_case = cases[i].choice;
    v.int64_param = cases[i].value; /* a union: uint64_param alike */
    gs__grpc_infer_t gi = {
        .m = m,
        .data = {m->raw_input_contents[0].data, m->raw_input_contents[1].data},
        .bytes = {16, 16}};
    gs__infer_request_t ir;
    gs_error_t err = {0};
    int status = gs__grpc_infer_decode(&ir, &simple, &gi, &err);
    assert_int_equal(status, cases[i].status);
    if (status == 0)
      assert_int_equal(ir.timeout_us, 7000);
    else
      assert_non_null(strstr(err.msg, "parameter 'timeout'"));
    gs__infer_request_release(&ir);
  }
  m->n_parameters = 0;
  m->parameters = NULL;
  inference__model_infer_request__free_unpacked(m, NULL);
  free(msg);
}

static int infer_status(const char *model, bool raw, bool contents,
                        const char *dtype, gs_error_t *err) {
  size_t len;
  uint8_t *msg = pack_infer(model, raw, contents, dtype, &len);
  gs__grpc_infer_t gi;
  int status = gs__grpc_infer_read(&gi, msg, len, err);
  gs__grpc_infer_release(&gi);
  free(msg);
  return status;
}

static void test_infer_request_errors(void **state) {
  (void)state;
  gs_error_t err;
  /* Both ways at once, for one input, is ambiguous. */
  assert_int_equal(infer_status("simple", true, true, "INT32", &err),
                   GS__GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(err.msg, "both"));
  /* 16 raw bytes for an INT8 [1,4] input: its shape needs 4. */
  assert_int_equal(infer_status("simple", true, false, "INT8", &err),
                   GS__GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(err.msg, "need 4"));
  /* FP16 cannot travel in typed contents. */
  assert_int_equal(infer_status("simple", false, true, "FP16", &err),
                   GS__GRPC_INVALID_ARGUMENT);
  /* A name the repository cannot hold is an unknown model, not a path. */
  assert_int_equal(infer_status("../simple", true, false, "INT32", &err),
                   GS__GRPC_NOT_FOUND);
  assert_int_equal(infer_status("a/b/infer?x", true, false, "INT32", &err),
                   GS__GRPC_NOT_FOUND);
  uint8_t junk[] = {0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f};
  gs__grpc_infer_t gi;
  assert_int_equal(gs__grpc_infer_read(&gi, junk, sizeof junk, &err),
                   GS__GRPC_INVALID_ARGUMENT);
  gs__grpc_infer_release(&gi);
  /* One raw_input_contents for two inputs. */
  Inference__ModelInferRequest m = INFERENCE__MODEL_INFER_REQUEST__INIT;
  Inference__ModelInferRequest__InferInputTensor t[2], *pt[2] = {&t[0], &t[1]};
  ProtobufCBinaryData raw = {0, NULL};
  for (int i = 0; i < 2; i++)
    inference__model_infer_request__infer_input_tensor__init(&t[i]);
  m.model_name = "simple";
  m.n_inputs = 2;
  m.inputs = pt;
  m.n_raw_input_contents = 1;
  m.raw_input_contents = &raw;
  uint8_t buf[256];
  size_t len = inference__model_infer_request__pack(&m, buf);
  assert_int_equal(gs__grpc_infer_read(&gi, buf, len, &err),
                   GS__GRPC_INVALID_ARGUMENT);
  assert_non_null(strstr(err.msg, "raw_input_contents"));
  gs__grpc_infer_release(&gi);
}

static void test_infer_reply(void **state) {
  (void)state;
  /* The outputs, encoded for a gRPC request, as the job leaves them. */
  int32_t data[2] = {7, -7};
  gs_tensor_t outs[1] = {{.name = "OUTPUT0",
                          .dtype = GS_DTYPE_INT32,
                          .rank = 2,
                          .shape = {1, 2},
                          .data = data,
                          .bytes = 8}};
  gs__infer_request_t ir = {.id = "r", .grpc = true};
  ir.want_output[0] = ir.binary_output[0] = true;
  gs__http_response_t resp = {.infer_header_len = -1};
  gs_error_t enc_err;
  assert_int_equal(gs__infer_encode(&resp, &ir, &simple, outs, &enc_err), 0);
  gs__grpc_reply_t reply = {0};
  gs__grpc_infer_reply(&resp, &reply);
  assert_int_equal(reply.status, GS__GRPC_OK);
  const uint8_t *msg;
  size_t len;
  gs_error_t err;
  assert_int_equal(gs__grpc_frame_read(reply.body, reply.body_len,
                                       GS__GRPC_MAX_MESSAGE, &msg, &len, &err),
                   0);
  Inference__ModelInferResponse *r =
      inference__model_infer_response__unpack(NULL, len, msg);
  assert_non_null(r);
  assert_string_equal(r->model_name, "simple");
  assert_string_equal(r->id, "r");
  assert_int_equal(r->n_outputs, 1);
  assert_string_equal(r->outputs[0]->datatype, "INT32");
  assert_int_equal(r->outputs[0]->n_shape, 2);
  assert_int_equal(r->n_raw_output_contents, 1);
  assert_int_equal(r->raw_output_contents[0].len, 8);
  assert_memory_equal(r->raw_output_contents[0].data, data, 8);
  inference__model_infer_response__free_unpacked(r, NULL);
  gs__grpc_reply_release(&reply);
  gs__http_response_error(&resp, 503, "model 'm' is not ready");
  gs__grpc_infer_reply(&resp, &reply);
  assert_int_equal(reply.status, GS__GRPC_UNAVAILABLE);
  assert_string_equal(reply.message, "model 'm' is not ready");
  assert_null(reply.body);
  gs__http_response_release(&resp);
}

/* ModelInfer finds its model by name and version itself (no URL routed):
 * its errors are HTTP's infer's for the same model (404 NOT_FOUND, 503
 * UNAVAILABLE, the same messages), a name or version no path could carry
 * is NOT_FOUND as before, and a ready model's job holds its slot. */
static void test_infer_job_errors_as_http(void **state) {
  (void)state;
  static gs__repo_t repo;
  static gs__model_slot_t slot;
  memset(&repo, 0, sizeof repo);
  repo.n = 2;
  snprintf(repo.models[0].name, sizeof repo.models[0].name, "m");
  snprintf(repo.models[0].version, sizeof repo.models[0].version, "1");
  repo.models[0].state = GS__MODEL_READY;
  repo.models[0].slot = &slot;
  slot.refs = 1;
  snprintf(repo.models[1].name, sizeof repo.models[1].name, "n");
  snprintf(repo.models[1].version, sizeof repo.models[1].version, "1");
  repo.models[1].state = GS__MODEL_UNAVAILABLE;
  snprintf(repo.models[1].reason, sizeof repo.models[1].reason, "boom");
  static const struct {
    const char *model, *version, *url;
  } cases[] = {{"x", "", "/v2/models/x/infer"},
               {"n", "", "/v2/models/n/infer"},
               {"m", "7", "/v2/models/m/versions/7/infer"},
               {"m", "abc", "/v2/models/m/versions/abc/infer"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gs__http_request_t req = {.method = HTTP_POST,
                              .url = strdup(cases[i].url),
                              .url_len = strlen(cases[i].url),
                              .infer_header_len = -1};
    gs__http_response_t resp = {.infer_header_len = -1};
    gs__infer_job_t job;
    assert_int_equal(gs__route(&repo, &req, &resp, &job), 0);
    gs__grpc_reply_t want = {0}, got = {0};
    gs__grpc_reply_http_error(&want, &resp);
    size_t len;
    pack_version = cases[i].version;
    uint8_t *msg = pack_infer(cases[i].model, true, false, "INT32", &len);
    assert_int_equal(gs__grpc_infer_job(&repo, msg, len, &got, &job), 0);
    assert_int_not_equal(got.status, GS__GRPC_OK);
    assert_int_equal(got.status, want.status);
    assert_string_equal(got.message, want.message);
    gs__grpc_reply_release(&got);
    gs__grpc_reply_release(&want);
    gs__http_response_release(&resp);
    free(req.url);
    free(msg);
  }
  assert_int_equal(slot.refs, 1);
  size_t len;
  gs__grpc_reply_t reply;
  gs__infer_job_t job;
  pack_version = "../1";
  uint8_t *msg = pack_infer("m", true, false, "INT32", &len);
  assert_int_equal(gs__grpc_infer_job(&repo, msg, len, &reply, &job), 0);
  assert_int_equal(reply.status, GS__GRPC_NOT_FOUND);
  assert_string_equal(reply.message,
                      "Request for unknown model: 'm' is not found");
  free(msg);
  for (int v = 0; v < 2; v++) {
    pack_version = v ? "1" : "";
    msg = pack_infer("m", true, false, "INT32", &len);
    assert_int_equal(gs__grpc_infer_job(&repo, msg, len, &reply, &job), 1);
    assert_ptr_equal(job.entry, &repo.models[0]);
    assert_ptr_equal(job.slot, &slot);
    assert_int_equal(slot.refs, 2);
    assert_non_null(job.grpc);
    assert_string_equal(job.grpc->m->model_version, v ? "1" : "");
    gs__grpc_infer_destroy(job.grpc);
    slot.refs--;
    free(msg);
  }
  pack_version = "";
}

static void test_calls_on_an_empty_repository(void **state) {
  (void)state;
  static gs__repo_t repo;
  gs__grpc_reply_t reply;
  gs__infer_job_t job;
  const uint8_t *msg;
  size_t len;
  gs_error_t err;
  assert_int_equal(
      gs__grpc_call(&repo, GS__GRPC_SERVER_LIVE, NULL, 0, &reply, &job), 0);
  assert_int_equal(reply.status, GS__GRPC_OK);
  assert_int_equal(
      gs__grpc_frame_read(reply.body, reply.body_len, 100, &msg, &len, &err),
      0);
  Inference__ServerLiveResponse *live =
      inference__server_live_response__unpack(NULL, len, msg);
  assert_true(live->live);
  inference__server_live_response__free_unpacked(live, NULL);
  gs__grpc_reply_release(&reply);

  size_t n;
  uint8_t *infer = pack_infer("simple", true, false, "INT32", &n);
  assert_int_equal(
      gs__grpc_call(&repo, GS__GRPC_MODEL_INFER, infer, n, &reply, &job), 0);
  assert_int_equal(reply.status, GS__GRPC_NOT_FOUND);
  assert_non_null(strstr(reply.message, "unknown model"));
  free(infer);
  gs__grpc_reply_release(&reply);

  Inference__ModelMetadataRequest mr = INFERENCE__MODEL_METADATA_REQUEST__INIT;
  uint8_t buf[64];
  mr.name = "nope";
  n = inference__model_metadata_request__pack(&mr, buf);
  assert_int_equal(
      gs__grpc_call(&repo, GS__GRPC_MODEL_METADATA, buf, n, &reply, &job), 0);
  assert_int_equal(reply.status, GS__GRPC_NOT_FOUND);
  gs__grpc_reply_release(&reply);
  /* ModelReady of an unknown model is an answer, not an error. */
  assert_int_equal(
      gs__grpc_call(&repo, GS__GRPC_MODEL_READY, buf, n, &reply, &job), 0);
  assert_int_equal(reply.status, GS__GRPC_OK);
  gs__grpc_reply_release(&reply);
  assert_int_equal(
      gs__grpc_call(&repo, GS__GRPC_UNKNOWN_METHOD, NULL, 0, &reply, &job), 0);
  assert_int_equal(reply.status, GS__GRPC_UNIMPLEMENTED);
  gs__grpc_reply_release(&reply);
}

/* A GPU instance group and bool/fp32 controls: what the integration
 * tests' CPU-only models never show. */
static const char config_doc[] =
    "{\"name\": \"m\", \"max_batch_size\": 8,"
    " \"instance_group\": [{\"kind\": \"KIND_GPU\", \"count\": 2,"
    " \"gpus\": [1]}],"
    " \"sequence_batching\": {\"max_sequence_idle_microseconds\": 7,"
    " \"control_input\": [{\"name\": \"READY\", \"control\": [{\"kind\":"
    " \"CONTROL_SEQUENCE_READY\", \"bool_false_true\": [false, true]}]},"
    " {\"name\": \"END\", \"control\": [{\"kind\": \"CONTROL_SEQUENCE_END\","
    " \"fp32_false_true\": [0.0, 1.0]}]}], \"direct\": {}}}";

static void test_model_config_from_document(void **state) {
  (void)state;
  gs__grpc_reply_t reply = {0};
  const uint8_t *msg;
  size_t len;
  gs_error_t err;
  json_t *doc = json_loads(config_doc, 0, NULL);
  assert_non_null(doc);
  gs__grpc_model_config(doc, &reply);
  json_decref(doc);
  assert_int_equal(reply.status, GS__GRPC_OK);
  assert_int_equal(gs__grpc_frame_read(reply.body, reply.body_len, 1 << 20,
                                       &msg, &len, &err),
                   0);
  Inference__ModelConfigResponse *r =
      inference__model_config_response__unpack(NULL, len, msg);
  assert_non_null(r);
  const Inference__Config__ModelConfig *c = r->config;
  assert_int_equal(c->n_instance_group, 1);
  assert_int_equal(c->instance_group[0]->kind, 1); /* KIND_GPU */
  assert_int_equal(c->instance_group[0]->count, 2);
  assert_int_equal(c->instance_group[0]->n_gpus, 1);
  assert_int_equal(c->instance_group[0]->gpus[0], 1);
  assert_int_equal(c->scheduling_choice_case, 13); /* sequence_batching */
  const Inference__Config__ModelSequenceBatching *sb = c->sequence_batching;
  assert_int_equal(sb->max_sequence_idle_microseconds, 7);
  assert_int_equal(sb->strategy_choice_case, 3); /* direct */
  assert_int_equal(sb->n_control_input, 2);
  const Inference__Config__ModelSequenceBatching__Control
      *ready = sb->control_input[0]->control[0],
      *end = sb->control_input[1]->control[0];
  assert_int_equal(ready->kind, 1); /* CONTROL_SEQUENCE_READY */
  assert_int_equal(ready->n_bool_false_true, 2);
  assert_false(ready->bool_false_true[0]);
  assert_true(ready->bool_false_true[1]);
  assert_int_equal(end->kind, 2); /* CONTROL_SEQUENCE_END */
  assert_int_equal(end->n_fp32_false_true, 2);
  assert_true(end->fp32_false_true[0] == 0.0f &&
              end->fp32_false_true[1] == 1.0f);
  inference__model_config_response__free_unpacked(r, NULL);
  gs__grpc_reply_release(&reply);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_framing),
      cmocka_unit_test(test_methods_and_status),
      cmocka_unit_test(test_infer_request_raw_and_contents),
      cmocka_unit_test(test_infer_request_errors),
      cmocka_unit_test(test_infer_timeout_parameter),
      cmocka_unit_test(test_infer_reply),
      cmocka_unit_test(test_calls_on_an_empty_repository),
      cmocka_unit_test(test_infer_job_errors_as_http),
      cmocka_unit_test(test_model_config_from_document),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
