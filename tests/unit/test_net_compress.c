/* Compression in the network layer (src/net/compress.c, the HTTP server's
 * Content-Encoding and Accept-Encoding, gRPC's compressed messages):
 * - gzip (RFC 1952) and deflate (RFC 1950 zlib streams; raw RFC 1951 data
 *   read too) decode to what was encoded, gzip members one after another
 *   (RFC 1952 section 2.2);
 * - decoding stops at the caller's limit: a bomb is GS_ELIMIT naming the
 *   limit, never more memory; corrupt or truncated data is GS_EPARSE;
 * - Accept-Encoding (RFC 9110 section 12.5.3): q=0 means "not acceptable",
 *   the highest q wins, unknown codings are ignored;
 * - gRPC (its compression spec): a compressed flag without grpc-encoding
 *   is INTERNAL, an unknown encoding UNIMPLEMENTED, a message decoding
 *   past the limit RESOURCE_EXHAUSTED, data that does not decode INTERNAL;
 * - on a real loopback server: a gzip body reaches the handler decoded
 *   (Inference-Header-Content-Length refers to the decoded body, as
 *   Triton's clients send it), Accept-Encoding gets a Content-Encoding
 *   answer, a bomb is 413 naming the limit, corrupt data 400. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "net/grpc.h"
#include "net/http.h"

/* ---- the codecs --------------------------------------------------------- */

static char *encode(gs__encoding_t e, const void *in, size_t len,
                    size_t *out_len) {
  gs_buf_t b;
  gs_error_t err;
  gs_buf_init(&b, GS_LIMIT_COMPRESSED);
  assert_int_equal(gs__compress(e, in, len, &b, &err), GS_OK);
  return gs_buf_take(&b, out_len);
}

/* Decodes into a buffer of at most max bytes: the code, and *out. */
static int decode(gs__encoding_t e, const void *in, size_t len, size_t max,
                  gs_buf_t *out, gs_error_t *err) {
  gs_buf_init_max(out, GS_LIMIT_HTTP_BODY, max);
  return gs__decompress(e, in, len, out, err);
}

static void test_gzip_and_deflate_round_trip(void **state) {
  (void)state;
  static const char text[] = "the quick brown fox, the quick brown fox";
  gs__encoding_t codings[] = {GS__ENC_GZIP, GS__ENC_DEFLATE};
  for (int i = 0; i < 2; i++) {
    size_t n;
    char *z = encode(codings[i], text, sizeof text, &n);
    /* the wrappers: gzip's magic 1f 8b, zlib's CMF 0x78 */
    assert_int_equal((unsigned char)z[0], i == 0 ? 0x1f : 0x78);
    gs_buf_t out;
    gs_error_t err;
    assert_int_equal(decode(codings[i], z, n, 1024, &out, &err), GS_OK);
    assert_int_equal(out.len, sizeof text);
    assert_memory_equal(out.data, text, sizeof text);
    gs_buf_free(&out);
    free(z);
  }
}

static void test_raw_deflate_and_gzip_members(void **state) {
  (void)state;
  /* raw deflate (no zlib header), as some HTTP clients send "deflate" */
  unsigned char raw[64];
  z_stream z = {0};
  assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, 0), Z_OK);
  z.next_in = (unsigned char *)"abcabcabc";
  z.avail_in = 9;
  z.next_out = raw;
  z.avail_out = sizeof raw;
  assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
  size_t raw_len = sizeof raw - z.avail_out;
  deflateEnd(&z);
  gs_buf_t out;
  gs_error_t err;
  assert_int_equal(decode(GS__ENC_DEFLATE, raw, raw_len, 64, &out, &err),
                   GS_OK);
  assert_string_equal(out.data, "abcabcabc");
  gs_buf_free(&out);
  /* two gzip members decode to both texts */
  size_t n1, n2;
  char *a = encode(GS__ENC_GZIP, "one,", 4, &n1);
  char *b = encode(GS__ENC_GZIP, "two", 3, &n2);
  char both[256];
  memcpy(both, a, n1);
  memcpy(both + n1, b, n2);
  assert_int_equal(decode(GS__ENC_GZIP, both, n1 + n2, 64, &out, &err), GS_OK);
  assert_string_equal(out.data, "one,two");
  gs_buf_free(&out);
  free(a);
  free(b);
}

/* 8 MiB of zeros compress to about 8 KiB: decoding under 1 MiB stops. */
static void test_a_bomb_stops_at_the_limit(void **state) {
  (void)state;
  size_t big = 8u << 20, n;
  char *zeros = calloc(1, big);
  assert_non_null(zeros);
  char *z = encode(GS__ENC_GZIP, zeros, big, &n);
  assert_true(n < 64u << 10);
  gs_buf_t out;
  gs_error_t err;
  assert_int_equal(decode(GS__ENC_GZIP, z, n, 1u << 20, &out, &err), GS_ELIMIT);
  assert_non_null(strstr(err.msg, "more than the limit of 1048576 bytes"));
  /* the buffer grows by doubling: never beyond twice the limit */
  assert_true(out.cap <= 2 * ((1u << 20) + 1));
  gs_buf_free(&out);
  /* exactly the limit is fine */
  assert_int_equal(decode(GS__ENC_GZIP, z, n, big, &out, &err), GS_OK);
  assert_int_equal(out.len, big);
  gs_buf_free(&out);
  free(z);
  free(zeros);
}

static void test_corrupt_and_truncated_data_are_parse_errors(void **state) {
  (void)state;
  size_t n;
  char *z = encode(GS__ENC_GZIP, "hello hello hello", 17, &n);
  gs_buf_t out;
  gs_error_t err;
  assert_int_equal(decode(GS__ENC_GZIP, z, n - 4, 64, &out, &err), GS_EPARSE);
  assert_non_null(strstr(err.msg, "gzip data is not valid"));
  gs_buf_free(&out);
  z[n - 1] ^= 0x55; /* the trailer's length no longer matches */
  assert_int_equal(decode(GS__ENC_GZIP, z, n, 64, &out, &err), GS_EPARSE);
  gs_buf_free(&out);
  assert_int_equal(
      decode(GS__ENC_DEFLATE, "not zlib at all", 15, 64, &out, &err),
      GS_EPARSE);
  gs_buf_free(&out);
  free(z);
}

static void test_accept_encoding_negotiation(void **state) {
  (void)state;
#define ACCEPTED(s) gs__encoding_accepted(s, strlen(s))
  assert_int_equal(ACCEPTED(""), GS__ENC_IDENTITY);
  assert_int_equal(ACCEPTED("gzip"), GS__ENC_GZIP);
  assert_int_equal(ACCEPTED("DEFLATE"), GS__ENC_DEFLATE);
  assert_int_equal(ACCEPTED("br, zstd"), GS__ENC_IDENTITY);
  assert_int_equal(ACCEPTED("gzip;q=0, deflate"), GS__ENC_DEFLATE);
  assert_int_equal(ACCEPTED("gzip;q=0"), GS__ENC_IDENTITY);
  assert_int_equal(ACCEPTED("gzip; q=0.4, deflate;q=0.8"), GS__ENC_DEFLATE);
  assert_int_equal(ACCEPTED("deflate, gzip, br"), GS__ENC_GZIP);
#undef ACCEPTED
  assert_true(gs__encoding_listed("identity,deflate,gzip", 21, GS__ENC_GZIP));
  assert_false(gs__encoding_listed("identity", 8, GS__ENC_GZIP));
  assert_int_equal(gs__encoding_parse(" gzip ", 6), GS__ENC_GZIP);
  assert_int_equal(gs__encoding_parse("br", 2), GS__ENC_UNKNOWN);
}

/* ---- gRPC messages ------------------------------------------------------ */

static int frame_decode(const uint8_t *buf, size_t len, size_t max,
                        gs__encoding_t enc, char *msg_out, gs_error_t *err) {
  gs_buf_t plain;
  const uint8_t *msg;
  size_t msg_len;
  bool compressed;
  int status = gs__grpc_frame_decode(buf, len, max, enc, &plain, &msg, &msg_len,
                                     &compressed, err);
  if (status == GS__GRPC_OK)
    snprintf(msg_out, 64, "%.*s", (int)msg_len, (const char *)msg);
  gs_buf_free(&plain);
  return status;
}

static void test_grpc_compressed_messages(void **state) {
  (void)state;
  gs_buf_t framed;
  gs_error_t err;
  char msg[64];
  gs_buf_init(&framed, GS_LIMIT_COMPRESSED);
  assert_int_equal(gs__grpc_frame_compress(GS__ENC_DEFLATE,
                                           (const uint8_t *)"infer me", 8,
                                           &framed, &err),
                   GS_OK);
  const uint8_t *f = (const uint8_t *)framed.data;
  assert_int_equal(f[0], 1); /* the compressed flag */
  assert_int_equal((size_t)f[4], framed.len - GS__GRPC_PREFIX);
  assert_int_equal(
      frame_decode(f, framed.len, 1024, GS__ENC_DEFLATE, msg, &err),
      GS__GRPC_OK);
  assert_string_equal(msg, "infer me");
  assert_int_equal(
      frame_decode(f, framed.len, 1024, GS__ENC_IDENTITY, msg, &err),
      GS__GRPC_INTERNAL);
  assert_int_equal(
      frame_decode(f, framed.len, 1024, GS__ENC_UNKNOWN, msg, &err),
      GS__GRPC_UNIMPLEMENTED);
  assert_non_null(strstr(err.msg, "identity,deflate,gzip"));
  /* gzip data called deflate does not decode */
  assert_int_equal(frame_decode(f, framed.len, 1024, GS__ENC_GZIP, msg, &err),
                   GS__GRPC_INTERNAL);
  /* the decoded size counts against the limit too: 64 bytes compress to
   * about 12 */
  char many[64];
  memset(many, 'a', sizeof many);
  gs_buf_reset(&framed);
  assert_int_equal(gs__grpc_frame_compress(GS__ENC_GZIP, (const uint8_t *)many,
                                           sizeof many, &framed, &err),
                   GS_OK);
  f = (const uint8_t *)framed.data;
  assert_true(framed.len - GS__GRPC_PREFIX <= 32);
  assert_int_equal(frame_decode(f, framed.len, 32, GS__ENC_GZIP, msg, &err),
                   GS__GRPC_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(err.msg, "limit of 32 bytes"));
  /* an uncompressed message passes as it is */
  const uint8_t plain[] = {0, 0, 0, 0, 2, 'o', 'k'};
  assert_int_equal(
      frame_decode(plain, sizeof plain, 1024, GS__ENC_GZIP, msg, &err),
      GS__GRPC_OK);
  assert_string_equal(msg, "ok");
  gs_buf_free(&framed);
}

/* ---- HTTP on loopback ---------------------------------------------------- */

static uv_loop_t loop;
static gs__http_listener_t server;

/* Echoes the body it got and the Inference-Header-Content-Length; the
 * body "fail" is answered 400. */
static void echo(void *ctx, gs__http_conn_t *c, gs__http_request_t *req) {
  (void)ctx;
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_HTTP_BODY);
  gs_buf_addf(&b, "ihcl=%lld|", req->infer_header_len);
  gs_buf_add(&b, req->body ? req->body : "", req->body_len);
  bool fail = req->body_len == 4 && memcmp(req->body, "fail", 4) == 0;
  gs__http_response_t resp = {.status = fail ? 400 : 200,
                              .infer_header_len = -1};
  resp.body = gs_buf_take(&b, &resp.body_len);
  gs__http_conn_respond(c, &resp);
}

typedef struct client_s {
  gs_buf_t out, in;
  bool done;
} client_t;

/* A blocking client on its own thread: sends out, reads until close. */
static void *client_run(void *arg) {
  client_t *cl = arg;
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", (int)server.port, &addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
      write(fd, cl->out.data, cl->out.len) == (ssize_t)cl->out.len) {
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
      gs_buf_add(&cl->in, buf, (size_t)n);
  }
  if (fd >= 0)
    close(fd);
  __atomic_store_n(&cl->done, true, __ATOMIC_RELEASE);
  return NULL;
}

/* One request (head lines, then body) on a new connection; the response
 * read by the client layer's reader, its raw bytes in *raw. */
static void exchange_at(const char *url, const char *head, const void *body,
                        size_t body_len, gs_buf_t *raw,
                        gs__http_response_t *resp) {
  client_t cl = {0};
  gs_buf_init(&cl.out, GS_LIMIT_HTTP_BODY);
  gs_buf_init(&cl.in, GS_LIMIT_HTTP_BODY);
  gs_buf_addf(&cl.out,
              "POST %s HTTP/1.1\r\nConnection: close\r\n%s"
              "Content-Length: %zu\r\n\r\n",
              url, head, body_len);
  gs_buf_add(&cl.out, body, body_len);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, client_run, &cl), 0);
  while (!__atomic_load_n(&cl.done, __ATOMIC_ACQUIRE))
    uv_run(&loop, UV_RUN_NOWAIT), usleep(200);
  pthread_join(t, NULL);
  gs__http_reply_t r;
  gs__http_reply_init(&r, GS_LIMIT_UPSTREAM_RESPONSE, 0);
  gs__http_reply_feed(&r, cl.in.data, cl.in.len);
  assert_true(r.complete);
  gs__http_reply_take(&r, resp);
  gs__http_reply_release(&r);
  gs_buf_free(&cl.out);
  *raw = cl.in;
}

static void exchange(const char *head, const void *body, size_t body_len,
                     gs_buf_t *raw, gs__http_response_t *resp) {
  exchange_at("/v2/models/m/infer", head, body, body_len, raw, resp);
}

static void test_http_gzip_request_reaches_the_handler_decoded(void **state) {
  (void)state;
  static const char body[] = "{\"inputs\":[]}BINARYDATA";
  size_t n;
  char *z = encode(GS__ENC_GZIP, body, sizeof body - 1, &n);
  gs_buf_t raw;
  gs__http_response_t resp;
  exchange("Content-Encoding: gzip\r\nInference-Header-Content-Length: 13\r\n",
           z, n, &raw, &resp);
  assert_int_equal(resp.status, 200);
  assert_string_equal(resp.body, "ihcl=13|{\"inputs\":[]}BINARYDATA");
  assert_null(strstr(raw.data, "Content-Encoding")); /* none asked */
  gs__http_response_release(&resp);
  gs_buf_free(&raw);
  free(z);
}

static void test_http_accept_encoding_gets_a_compressed_answer(void **state) {
  (void)state;
  gs__encoding_t codings[] = {GS__ENC_GZIP, GS__ENC_DEFLATE};
  for (int i = 0; i < 2; i++) {
    char head[64];
    snprintf(head, sizeof head, "Accept-Encoding: %s\r\n",
             gs__encoding_name(codings[i]));
    gs_buf_t raw, plain;
    gs__http_response_t resp;
    gs_error_t err;
    exchange(head, "abc", 3, &raw, &resp);
    assert_int_equal(resp.status, 200);
    char want[64];
    snprintf(want, sizeof want, "Content-Encoding: %s\r\n",
             gs__encoding_name(codings[i]));
    assert_non_null(strstr(raw.data, want));
    assert_int_equal(
        decode(codings[i], resp.body, resp.body_len, 1024, &plain, &err),
        GS_OK);
    assert_string_equal(plain.data, "ihcl=-1|abc");
    gs_buf_free(&plain);
    gs__http_response_release(&resp);
    gs_buf_free(&raw);
  }
}

/* Triton compresses infer responses only: its clients (aiohttp's sends
 * Accept-Encoding on every request) read every other answer, and errors,
 * as plain JSON. */
static void test_http_only_infer_answers_are_compressed(void **state) {
  (void)state;
  static const char *urls[] = {"/v2/models/m/stats", "/v2/models/m/infer?x=1",
                               "/v2/models/m/infer"};
  for (int i = 0; i < 3; i++) {
    gs_buf_t raw;
    gs__http_response_t resp;
    exchange_at(urls[i], "Accept-Encoding: gzip, deflate\r\n", "abc", 3, &raw,
                &resp);
    assert_int_equal(strstr(raw.data, "Content-Encoding: gzip") != NULL, i > 0);
    gs__http_response_release(&resp);
    gs_buf_free(&raw);
  }
  /* an error answer stays plain */
  gs_buf_t raw;
  gs__http_response_t resp;
  exchange("Accept-Encoding: gzip\r\n", "fail", 4, &raw, &resp);
  assert_int_equal(resp.status, 400);
  assert_null(strstr(raw.data, "Content-Encoding: gzip"));
  gs__http_response_release(&resp);
  gs_buf_free(&raw);
}

static void test_http_bomb_is_413_and_corrupt_is_400(void **state) {
  (void)state;
  size_t big = 2u << 20, n; /* twice the server's 1 MiB limit */
  char *zeros = calloc(1, big);
  assert_non_null(zeros);
  char *z = encode(GS__ENC_GZIP, zeros, big, &n);
  gs_buf_t raw;
  gs__http_response_t resp;
  exchange("Content-Encoding: gzip\r\n", z, n, &raw, &resp);
  assert_int_equal(resp.status, 413);
  assert_non_null(strstr(resp.body, "limit of 1048576 bytes"));
  gs__http_response_release(&resp);
  gs_buf_free(&raw);
  exchange("Content-Encoding: deflate\r\n", z, n, &raw, &resp);
  assert_int_equal(resp.status, 400); /* gzip sent as deflate */
  assert_non_null(strstr(resp.body, "deflate data is not valid"));
  gs__http_response_release(&resp);
  gs_buf_free(&raw);
  exchange("Content-Encoding: br\r\n", "x", 1, &raw, &resp);
  assert_int_equal(resp.status, 400);
  assert_non_null(strstr(resp.body, "unsupported Content-Encoding"));
  gs__http_response_release(&resp);
  gs_buf_free(&raw);
  free(z);
  free(zeros);
}

static int setup(void **state) {
  (void)state;
  gs_error_t err;
  if (uv_loop_init(&loop) != 0)
    return -1;
  server = (gs__http_listener_t){.handler = echo, .max_body = 1u << 20};
  return gs__http_listen(&loop, &server, "127.0.0.1", 0, &err) == GS_OK ? 0
                                                                        : -1;
}

static int teardown(void **state) {
  (void)state;
  gs__http_listener_close(&server);
  uv_run(&loop, UV_RUN_DEFAULT);
  return uv_loop_close(&loop) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gzip_and_deflate_round_trip),
      cmocka_unit_test(test_raw_deflate_and_gzip_members),
      cmocka_unit_test(test_a_bomb_stops_at_the_limit),
      cmocka_unit_test(test_corrupt_and_truncated_data_are_parse_errors),
      cmocka_unit_test(test_accept_encoding_negotiation),
      cmocka_unit_test(test_grpc_compressed_messages),
      cmocka_unit_test(test_http_gzip_request_reaches_the_handler_decoded),
      cmocka_unit_test(test_http_accept_encoding_gets_a_compressed_answer),
      cmocka_unit_test(test_http_only_infer_answers_are_compressed),
      cmocka_unit_test(test_http_bomb_is_413_and_corrupt_is_400),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
