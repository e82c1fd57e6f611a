/* Inference worker rules, without sockets: HTTP/1.1 requests are read one
 * at a time even when pipelined, with limits (URL 8 KiB -> 414, headers
 * 16 KiB -> 431, body over the limit -> 413, malformed -> 400); KServe v2
 * infer requests decode from JSON (flat or nested data) and from the binary
 * tensor extension (Inference-Header-Content-Length, binary_data_size,
 * header length 0 = the raw tensor of a one-input model); names, datatypes,
 * shapes and sizes that do not match the model are 400; outputs encode as
 * JSON or binary per binary_data / binary_data_output; unknown paths 404. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "test_tmpdir.h"
#include "worker/worker_int.h"

static size_t feed_str(gs__http_reader_t *r, const char *s) {
  return gs__http_reader_feed(r, s, strlen(s));
}

static void test_pipelined_requests_come_one_at_a_time(void **state) {
  (void)state;
  gs__http_reader_t r;
  gs__http_reader_init(&r, 1024);
  const char *in = "GET /v2 HTTP/1.1\r\nHost: a\r\n\r\n"
                   "POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 3\r\n"
                   "Inference-Header-Content-Length: 2\r\n\r\nabc";
  size_t n = feed_str(&r, in);
  assert_true(r.complete);
  assert_int_equal(r.req.method, HTTP_GET);
  assert_string_equal(r.req.url, "/v2");
  assert_true(r.req.keep_alive);
  assert_int_equal(r.req.infer_header_len, -1);
  gs__http_reader_next(&r);
  gs__http_reader_feed(&r, in + n, strlen(in) - n);
  assert_true(r.complete);
  assert_int_equal(r.req.method, HTTP_POST);
  assert_int_equal(r.req.body_len, 3);
  assert_memory_equal(r.req.body, "abc", 3);
  assert_int_equal(r.req.infer_header_len, 2);
  gs__http_reader_release(&r);
}

static void test_request_split_across_reads(void **state) {
  (void)state;
  gs__http_reader_t r;
  gs__http_reader_init(&r, 1024);
  const char *in = "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
  for (size_t i = 0; in[i]; i++)
    assert_int_equal(gs__http_reader_feed(&r, in + i, 1), 1);
  assert_true(r.complete);
  assert_string_equal(r.req.body, "hello");
  gs__http_reader_release(&r);
}

static int status_of(const char *in, size_t max_body) {
  gs__http_reader_t r;
  gs__http_reader_init(&r, max_body);
  feed_str(&r, in);
  int s = r.complete ? 200 : r.error_status;
  gs__http_reader_release(&r);
  return s;
}

static void test_limits_and_malformed(void **state) {
  (void)state;
  char *big = malloc(20000);
  assert_non_null(big);
  snprintf(big, 20000, "GET /%09000d HTTP/1.1\r\n\r\n", 0);
  assert_int_equal(status_of(big, 1024), 414);
  memset(big, 'a', 19999);
  memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
  strcpy(big + 19000, "\r\n\r\n");
  assert_int_equal(status_of(big, 1024), 431);
  free(big);
  assert_int_equal(
      status_of("POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", 1024), 413);
  assert_int_equal(status_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked"
                             "\r\n\r\n800\r\n",
                             1024),
                   0); /* not yet over: more to come */
  assert_int_equal(status_of("BLAH\r\n\r\n", 1024), 400);
  assert_int_equal(status_of("GET / HTTP/1.1\r\nInference-Header-Content-"
                             "Length: -4\r\n\r\n",
                             1024),
                   400);
}

static void test_eof_mid_request_is_400(void **state) {
  (void)state;
  gs__http_reader_t r;
  gs__http_reader_init(&r, 1024);
  feed_str(&r, "POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc");
  gs__http_reader_feed(&r, NULL, 0);
  assert_int_equal(r.error_status, 400);
  gs__http_reader_release(&r);
}

/* Triton's `simple`: INPUT0, INPUT1 INT32 [-1,16]; OUTPUT0, OUTPUT1. */
static const gs_tensor_info_t simple_in[] = {
    {"INPUT0", GS_DTYPE_INT32, 2, {-1, 16}},
    {"INPUT1", GS_DTYPE_INT32, 2, {-1, 16}}};
static const gs_tensor_info_t simple_out[] = {
    {"OUTPUT0", GS_DTYPE_INT32, 2, {-1, 16}},
    {"OUTPUT1", GS_DTYPE_INT32, 2, {-1, 16}}};
static const gs__model_io_t simple = {"simple",  "1",        2,    2,
                                      simple_in, simple_out, NULL, 0};
static const gs_tensor_info_t one_in[] = {{"x", GS_DTYPE_FP32, 2, {-1, 4}}};
static const gs__model_io_t one = {"one", "1", 1, 1, one_in, one_in, NULL, 0};

#define D16 "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]"

static int decode(const char *body, long long hlen, size_t len,
                  gs__infer_request_t *req, gs_error_t *err) {
  return gs__infer_decode(req, &simple, body, len ? len : strlen(body), hlen,
                          err);
}

static void test_json_decode(void **state) {
  (void)state;
  gs__infer_request_t req;
  gs_error_t err;
  const char *body =
      "{\"id\":\"a\",\"inputs\":[{\"name\":\"INPUT1\",\"shape\":[1,16],"
      "\"datatype\":\"INT32\",\"data\":[" D16 "]},{\"name\":\"INPUT0\","
      "\"shape\":[1,16],\"datatype\":\"INT32\",\"data\":" D16 "}],"
      "\"outputs\":[{\"name\":\"OUTPUT1\",\"parameters\":{\"binary_data\":"
      "true}}]}";
  assert_int_equal(decode(body, -1, 0, &req, &err), 0);
  assert_string_equal(req.id, "a");
  assert_int_equal(req.n_inputs, 2);
  assert_string_equal(req.inputs[0].name, "INPUT1");
  assert_int_equal(req.inputs[0].bytes, 64);
  assert_int_equal(((const int32_t *)req.inputs[1].data)[15], 16);
  assert_false(req.want_output[0]);
  assert_true(req.want_output[1] && req.binary_output[1]);
  gs__infer_request_release(&req);
}

/* The "timeout" parameter (microseconds), as tritonclient's
 * infer(timeout=N) sends it, is kept for the queue policy; one that is
 * not a non-negative integer is a 400 naming it. */
static void test_json_timeout_parameter(void **state) {
  (void)state;
  static const struct {
    const char *value;
    int status;
    uint64_t timeout_us;
  } cases[] = {
      {"", 0, 0},
      {"\"timeout\":250000", 0, 250000},
      {"\"timeout\":0", 0, 0},
      {"\"timeout\":-1", 400, 0},
      {"\"timeout\":\"5\"", 400, 0},
      {"\"timeout\":1.5", 400, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"parameters\":{%s},\"inputs\":[{\"name\":\"INPUT0\","
             "\"shape\":[1,16],\"datatype\":\"INT32\",\"data\":" D16
             "},{\"name\":\"INPUT1\",\"shape\":[1,16],\"datatype\":"
             "\"INT32\",\"data\":" D16 "}]}",
             cases[i].value);
    gs__infer_request_t req;
    gs_error_t err = {0};
    int status = decode(body, -1, 0, &req, &err);
    if (status != cases[i].status ||
        (status == 0 && req.timeout_us != cases[i].timeout_us) ||
        (status != 0 && !strstr(err.msg, "parameter 'timeout'")))
      fail_msg("%s: got %d (%s)", cases[i].value, status, err.msg);
    gs__infer_request_release(&req);
  }
}

static void test_json_mismatches_are_400(void **state) {
  (void)state;
  static const char *const bad[] = {
      "{\"inputs\":[", /* not JSON */
      "{\"inputs\":{}}",
      /* wrong datatype */
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,16],\"datatype\":"
      "\"FP32\",\"data\":" D16 "},{\"name\":\"INPUT1\",\"shape\":[1,16],"
      "\"datatype\":\"INT32\",\"data\":" D16 "}]}",
      /* wrong fixed dimension */
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[2,8],\"datatype\":"
      "\"INT32\",\"data\":" D16 "},{\"name\":\"INPUT1\",\"shape\":[1,16],"
      "\"datatype\":\"INT32\",\"data\":" D16 "}]}",
      /* data count does not match the shape */
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[2,16],\"datatype\":"
      "\"INT32\",\"data\":" D16 "},{\"name\":\"INPUT1\",\"shape\":[1,16],"
      "\"datatype\":\"INT32\",\"data\":" D16 "}]}",
      /* a missing input, an unknown one, a duplicate */
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,16],\"datatype\":"
      "\"INT32\",\"data\":" D16 "}]}",
      "{\"inputs\":[{\"name\":\"X\",\"shape\":[1,16],\"datatype\":"
      "\"INT32\",\"data\":" D16 "}]}",
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,16],\"datatype\":"
      "\"INT32\",\"data\":" D16 "},{\"name\":\"INPUT0\",\"shape\":[1,16],"
      "\"datatype\":\"INT32\",\"data\":" D16 "}]}",
      /* a value out of INT32's range */
      ("{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,1],\"datatype\":"
       "\"INT32\",\"data\":[4294967296]}]}"),
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gs__infer_request_t req;
    gs_error_t err = {0};
    assert_int_equal(decode(bad[i], -1, 0, &req, &err), 400);
    assert_true(err.msg[0] != '\0');
    gs__infer_request_release(&req);
  }
}

static char *binary_body(size_t bin_bytes, size_t *hlen, size_t *len) {
  static const char hdr[] =
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[1,16],\"datatype\":"
      "\"INT32\",\"parameters\":{\"binary_data_size\":64}},{\"name\":"
      "\"INPUT1\",\"shape\":[1,16],\"datatype\":\"INT32\",\"parameters\":{"
      "\"binary_data_size\":64}}],\"parameters\":{\"binary_data_output\":"
      "true}}";
  *hlen = sizeof hdr - 1;
  *len = *hlen + bin_bytes;
  char *b = malloc(*len + 1);
  assert_non_null(b);
  memcpy(b, hdr, *hlen);
  for (size_t i = 0; i < bin_bytes; i++)
    b[*hlen + i] = (char)(i % 4 == 0 ? i / 4 : 0); /* little-endian int32 */
  return b;
}

/* Binary data after a JSON header of any length: gs__infer_decode copies
 * misaligned data into an aligned buffer; gs__infer_decode_unaligned
 * leaves it in the body (the worker copies it once, into the batch or the
 * session's staging) until gs__infer_request_align copies it for a reader
 * of elements. */
static void test_binary_decode_unaligned(void **state) {
  (void)state;
  size_t hlen, len;
  char *b = binary_body(128, &hlen, &len);
  char *space = aligned_alloc(16, (len + 32 + 15) / 16 * 16);
  assert_non_null(space);
  size_t off = (16 + 1 - hlen % 16) % 16; /* binary data at 1 mod 16 */
  char *body = memcpy(space + off, b, len);
  assert_int_equal((uintptr_t)(body + hlen) % 16, 1);
  gs__infer_request_t req;
  gs_error_t err;
  assert_int_equal(decode(body, (long long)hlen, len, &req, &err), 0);
  assert_int_equal((uintptr_t)req.inputs[0].data % 16, 0);
  assert_memory_equal(req.inputs[0].data, body + hlen, 64);
  gs__infer_request_release(&req);
  assert_int_equal(gs__infer_decode_unaligned(&req, &simple, body, len,
                                              (long long)hlen, &err),
                   0);
  assert_ptr_equal(req.inputs[0].data, body + hlen); /* in place */
  assert_ptr_equal(req.inputs[1].data, body + hlen + 64);
  assert_int_equal(gs__infer_request_align(&req, &err), GS_OK);
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal((uintptr_t)req.inputs[i].data % 16, 0);
    assert_memory_equal(req.inputs[i].data, body + hlen + 64 * i, 64);
  }
  assert_int_equal(((const int32_t *)req.inputs[1].data)[1], 17);
  const void *aligned = req.inputs[0].data;
  assert_int_equal(gs__infer_request_align(&req, &err), GS_OK); /* once */
  assert_ptr_equal(req.inputs[0].data, aligned);
  gs__infer_request_release(&req);
  free(space);
  free(b);
}

static void test_binary_decode_and_encode(void **state) {
  (void)state;
  size_t hlen, len;
  char *b = binary_body(128, &hlen, &len);
  gs__infer_request_t req;
  gs_error_t err;
  assert_int_equal(decode(b, (long long)hlen, len, &req, &err), 0);
  assert_memory_equal(req.inputs[1].data, b + hlen + 64, 64);
  for (size_t i = 0; i < 2; i++) /* kernels need aligned elements */
    assert_int_equal((uintptr_t)req.inputs[i].data % 4, 0);
  assert_int_equal(((const int32_t *)req.inputs[1].data)[1], 17);
  assert_true(req.binary_output[0] && req.binary_output[1]);
  /* Outputs go back binary, JSON header length in the response. */
  gs_tensor_t outs[2] = {req.inputs[0], req.inputs[1]};
  outs[0].name = "OUTPUT0";
  outs[1].name = "OUTPUT1";
  gs__http_response_t resp = {.infer_header_len = -1};
  assert_int_equal(gs__infer_encode(&resp, &req, &simple, outs, &err), 0);
  assert_true(resp.infer_header_len > 0);
  assert_int_equal(resp.body_len, (size_t)resp.infer_header_len + 128);
  assert_non_null(strstr(resp.body, "\"binary_data_size\":64"));
  assert_memory_equal(resp.body + resp.infer_header_len, b + hlen, 128);
  gs__http_response_release(&resp);
  gs__infer_request_release(&req);
  /* Truncated, trailing bytes, header length beyond the body. */
  assert_int_equal(decode(b, (long long)hlen, len - 1, &req, &err), 400);
  gs__infer_request_release(&req);
  assert_int_equal(decode(b, (long long)hlen - 1, len, &req, &err), 400);
  gs__infer_request_release(&req);
  assert_int_equal(decode(b, (long long)len + 1, len, &req, &err), 400);
  gs__infer_request_release(&req);
  free(b);
}

static void test_raw_body_for_one_input(void **state) {
  (void)state;
  float x[8] = {0};
  gs__infer_request_t req;
  gs_error_t err;
  assert_int_equal(
      gs__infer_decode(&req, &one, (const char *)x, sizeof x, 0, &err), 0);
  assert_int_equal(req.inputs[0].shape[0], 2); /* 32 bytes / (4 x FP32) */
  assert_true(req.binary_output[0]);
  gs__infer_request_release(&req);
  assert_int_equal(gs__infer_decode(&req, &one, (const char *)x, 6, 0, &err),
                   400);
  gs__infer_request_release(&req);
  assert_int_equal(
      gs__infer_decode(&req, &simple, (const char *)x, 128, 0, &err),
      400); /* two inputs: raw is not allowed */
  gs__infer_request_release(&req);
}

static void test_json_output_encoding(void **state) {
  (void)state;
  gs__infer_request_t req = {.want_output = {true, false}};
  int32_t v[2] = {-3, 7};
  gs_tensor_t outs[2] = {
      {"OUTPUT0", GS_DTYPE_INT32, 2, {1, 2}, v, sizeof v, GS_MEM_HOST},
      {"OUTPUT1", GS_DTYPE_INT32, 2, {1, 2}, v, sizeof v, GS_MEM_HOST}};
  gs__http_response_t resp = {.infer_header_len = -1};
  gs_error_t err;
  assert_int_equal(gs__infer_encode(&resp, &req, &simple, outs, &err), 0);
  assert_int_equal(resp.infer_header_len, -1);
  assert_string_equal(resp.body,
                      "{\"model_name\":\"simple\",\"model_version\":\"1\","
                      "\"outputs\":[{\"name\":\"OUTPUT0\",\"datatype\":"
                      "\"INT32\",\"shape\":[1,2],\"data\":[-3,7]}]}");
  gs__http_response_release(&resp);
}

static void test_router_errors(void **state) {
  (void)state;
  static gs__repo_t repo; /* empty */
  static const struct {
    enum http_method method;
    const char *url;
    int status;
  } cases[] = {{HTTP_GET, "/v2", 200},
               {HTTP_GET, "/v2/health/live", 200},
               {HTTP_GET, "/v2/health/ready", 200},
               {HTTP_POST, "/v2", 400},
               {HTTP_GET, "/v2/models/x", 404},
               {HTTP_POST, "/v2/models/x/infer", 404},
               {HTTP_GET, "/v2/models/x/infer", 400},
               {HTTP_GET, "/v2/models/x/versions/1/ready", 404},
               {HTTP_GET, "/nope", 404},
               {HTTP_GET, "/v2/a/b/c/d/e/f/g/h/i", 404},
               {HTTP_GET, "/metrics", 200},
               {HTTP_POST, "/v2/repository/index", 200},
               /* Triton's model control mode none: load refused */
               {HTTP_POST, "/v2/repository/models/..%2f/load", 503}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    gs__http_request_t req = {.method = cases[i].method,
                              .url = strdup(cases[i].url),
                              .infer_header_len = -1};
    gs__http_response_t resp = {.infer_header_len = -1};
    gs__infer_job_t job;
    assert_int_equal(gs__route(&repo, &req, &resp, &job), 0);
    if (resp.status != cases[i].status)
      fail_msg("%s: %d, want %d", cases[i].url, resp.status, cases[i].status);
    if (resp.status >= 400)
      assert_non_null(strstr(resp.body, "{\"error\":"));
    gs__http_response_release(&resp);
    free(req.url);
  }
}

/* One process may run several workers' loops at once (green instances:
 * gpuslice worker --instance ...), so routing keeps no state between
 * calls: threads routing different paths at once each get their own
 * answer. (strtok's hidden state mixed them up on a GPU machine: 404s and
 * "use GET" on infer requests.) */
typedef struct {
  enum http_method method;
  const char *url;
  int status;
  unsigned wrong;
} route_case_t;

static void *route_many(void *arg) {
  route_case_t *c = arg;
  static gs__repo_t repo; /* empty, read only */
  for (int i = 0; i < 20000; i++) {
    gs__http_request_t req = {
        .method = c->method, .url = strdup(c->url), .infer_header_len = -1};
    gs__http_response_t resp = {.infer_header_len = -1};
    gs__infer_job_t job;
    if (gs__route(&repo, &req, &resp, &job) != 0 || resp.status != c->status)
      c->wrong++;
    gs__http_response_release(&resp);
    free(req.url);
  }
  return NULL;
}

static void test_router_threads(void **state) {
  (void)state;
  route_case_t cases[] = {{HTTP_GET, "/v2/health/live", 200, 0},
                          {HTTP_GET, "/v2/models/x/infer", 400, 0},
                          {HTTP_GET, "/v2/a/b/c/d/e/f/g/h/i", 404, 0},
                          {HTTP_GET, "/v2/models/x/versions/1/ready", 404, 0}};
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&th[i], NULL, route_many, &cases[i]), 0);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++)
    if (cases[i].wrong)
      fail_msg("%s: %u of 20000 answers wrong", cases[i].url, cases[i].wrong);
}

static void note_failure(void *ctx, const char *why) {
  snprintf(ctx, 512, "%s", why);
}

/* A device failure takes the model that failed out of service, and only
 * it: a job that started on a slot since replaced by a reload must not
 * unload the new load (its slot is not at fault). */
static void test_device_failure_hits_its_own_load(void **state) {
  (void)state;
  static gs__model_entry_t m;
  static gs__model_slot_t old_slot, new_slot;
  memset(&m, 0, sizeof m);
  new_slot.refs = 2; /* the entry's and a request's: never freed here */
  old_slot.refs = 2;
  m.state = GS__MODEL_READY;
  m.slot = &new_slot;
  static gs__repo_t repo;
  static char heard[512];
  repo.device_failed = note_failure;
  repo.device_failed_ctx = heard;
  heard[0] = 0;
  gs__repo_device_failed(&repo, &m, &old_slot, "CUDA device 0: a stale fault");
  assert_int_equal(m.state, GS__MODEL_READY);
  assert_string_equal(heard, ""); /* not this load's fault: not told */
  assert_ptr_equal(m.slot, &new_slot);
  assert_int_equal(new_slot.refs, 2);
  gs__repo_device_failed(&repo, &m, &new_slot,
                         "CUDA device 0: cuGraphLaunch failed");
  assert_int_equal(m.state, GS__MODEL_UNAVAILABLE);
  assert_null(m.slot);
  assert_int_equal(new_slot.refs, 1);
  assert_non_null(strstr(m.reason, "the device failed while serving"));
  assert_non_null(strstr(m.reason, "cuGraphLaunch failed"));
  /* the worker hears of it once, with the reason */
  assert_string_equal(heard, m.reason);
  heard[0] = 0;
  gs__repo_device_failed(&repo, &m, &new_slot, "CUDA device 0: again");
  assert_string_equal(heard, "");
  /* no repository (a job made before one was known): no callback */
  m.state = GS__MODEL_READY;
  m.slot = &new_slot;
  new_slot.refs = 2;
  gs__repo_device_failed(NULL, &m, &new_slot, "CUDA device 0: no repo");
  assert_int_equal(m.state, GS__MODEL_UNAVAILABLE);
}

/* Triton: GET /v2/health/ready is 200 when every model is ready and 400
 * when one is not (a model that failed to load keeps the server not
 * ready). */
static void test_ready_needs_every_model(void **state) {
  (void)state;
  static gs__repo_t repo;
  memset(&repo, 0, sizeof repo);
  repo.n = 1;
  snprintf(repo.models[0].name, sizeof repo.models[0].name, "broken");
  repo.models[0].state = GS__MODEL_UNAVAILABLE;
  for (int round = 0; round < 2; round++) {
    gs__http_request_t req = {.method = HTTP_GET,
                              .url = strdup("/v2/health/ready"),
                              .infer_header_len = -1};
    gs__http_response_t resp = {.infer_header_len = -1};
    gs__infer_job_t job;
    assert_int_equal(gs__route(&repo, &req, &resp, &job), 0);
    assert_int_equal(resp.status, round == 0 ? 400 : 200);
    gs__http_response_release(&resp);
    free(req.url);
    repo.models[0].state = GS__MODEL_READY;
  }
}

/* With batching (max_batch_size > 0) dim 0 of every input is the batch:
 * inputs that disagree on it are a 400, as Triton answers. */
static void test_inputs_must_agree_on_the_batch(void **state) {
  (void)state;
  static gs__model_slot_t slot;
  memset(&slot, 0, sizeof slot);
  snprintf(slot.name, sizeof slot.name, "simple");
  slot.max_batch_size = 8;
  slot.io = simple;
  static const char *const bodies[] = {
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[2,16],\"datatype\":"
      "\"INT32\",\"data\":[" D16 "," D16 "]},{\"name\":\"INPUT1\",\"shape\":"
      "[1,16],\"datatype\":\"INT32\",\"data\":" D16 "}]}",
      "{\"inputs\":[{\"name\":\"INPUT0\",\"shape\":[2,16],\"datatype\":"
      "\"INT32\",\"data\":[" D16 "," D16 "]},{\"name\":\"INPUT1\",\"shape\":"
      "[2,16],\"datatype\":\"INT32\",\"data\":[" D16 "," D16 "]}]}"};
  for (int i = 0; i < 2; i++) {
    gs__infer_job_t job;
    memset(&job, 0, sizeof job);
    job.slot = &slot;
    job.req.body = (char *)bodies[i];
    job.req.body_len = strlen(bodies[i]);
    job.req.infer_header_len = -1;
    gs_error_t err;
    gs_error_clear(&err);
    int status = gs__infer_job_decode(&job, -1, &err);
    if (i == 0) {
      assert_int_equal(status, 400);
      assert_non_null(strstr(err.msg, "batch size"));
    } else {
      assert_int_equal(status, 0);
      assert_int_equal(job.batch, 2);
    }
    gs__infer_request_release(&job.ir);
  }
}

/* Triton's repository layout: <model>/<version>/model.onnx; the highest
 * version that holds a model.onnx is served, an empty version directory
 * does not count. */
static void test_the_highest_version_with_a_model_is_picked(void **state) {
  (void)state;
  char dir[256], path[400];
  assert_int_equal(test_tmpdir_make(dir, sizeof dir, "worker_repo"), 0);
  snprintf(path, sizeof path, "%s/m", dir);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/m/1", dir);
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/m/2", dir); /* no model.onnx in it */
  assert_int_equal(mkdir(path, 0755), 0);
  snprintf(path, sizeof path, "%s/m/1/model.onnx", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs("not a model", f);
  fclose(f);
  static gs__repo_t repo;
  memset(&repo, 0, sizeof repo);
  snprintf(repo.dir, sizeof repo.dir, "%s", dir);
  gs_error_t err;
  assert_int_not_equal(gs__repo_load(&repo, "m", &err), GS_OK); /* garbage */
  assert_int_equal(repo.n, 1);
  assert_string_equal(repo.models[0].version, "1");
  assert_int_equal(repo.models[0].state, GS__MODEL_UNAVAILABLE);
  assert_int_equal(test_tmpdir_remove(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipelined_requests_come_one_at_a_time),
      cmocka_unit_test(test_request_split_across_reads),
      cmocka_unit_test(test_limits_and_malformed),
      cmocka_unit_test(test_eof_mid_request_is_400),
      cmocka_unit_test(test_json_decode),
      cmocka_unit_test(test_json_timeout_parameter),
      cmocka_unit_test(test_json_mismatches_are_400),
      cmocka_unit_test(test_binary_decode_and_encode),
      cmocka_unit_test(test_binary_decode_unaligned),
      cmocka_unit_test(test_raw_body_for_one_input),
      cmocka_unit_test(test_json_output_encoding),
      cmocka_unit_test(test_router_errors),
      cmocka_unit_test(test_router_threads),
      cmocka_unit_test(test_device_failure_hits_its_own_load),
      cmocka_unit_test(test_ready_needs_every_model),
      cmocka_unit_test(test_inputs_must_agree_on_the_batch),
      cmocka_unit_test(test_the_highest_version_with_a_model_is_picked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
