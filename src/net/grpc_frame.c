/* gRPC's message framing and status headers (net/grpc.h): what the
 * worker's server, the router's proxy and perf's client read and write the
 * same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc.h"
#include "net/h2.h"

/* The frame's checks; any flag byte passes (the caller decides). */
static int frame_check(const uint8_t *buf, size_t len, size_t max,
                       gs_error_t *err) {
  if (len < GS__GRPC_PREFIX)
    return gs_error_set(err, GS_EINVAL,
                        "the request holds no whole gRPC message"),
           GS__GRPC_INVALID_ARGUMENT;
  uint32_t n = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 |
               (uint32_t)buf[3] << 8 | buf[4];
  if (n > max)
    return gs_error_set(err, GS_ELIMIT,
                        "message of %u bytes is larger than the limit (%zu)", n,
                        max),
           GS__GRPC_RESOURCE_EXHAUSTED;
  if (len - GS__GRPC_PREFIX != n)
    return gs_error_set(err, GS_EINVAL,
                        "the request's message is %u bytes but %zu follow", n,
                        len - GS__GRPC_PREFIX),
           GS__GRPC_INVALID_ARGUMENT;
  return GS__GRPC_OK;
}

int gs__grpc_frame_read(const uint8_t *buf, size_t len, size_t max,
                        const uint8_t **msg, size_t *msg_len, gs_error_t *err) {
  if (len >= GS__GRPC_PREFIX && buf[0] != 0)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "compressed messages are not supported"),
           GS__GRPC_UNIMPLEMENTED;
  int status = frame_check(buf, len, max, err);
  if (status != GS__GRPC_OK)
    return status;
  *msg = buf + GS__GRPC_PREFIX;
  *msg_len = len - GS__GRPC_PREFIX;
  return GS__GRPC_OK;
}

int gs__grpc_frame_decode(const uint8_t *buf, size_t len, size_t max,
                          gs__encoding_t enc, gs_buf_t *plain,
                          const uint8_t **msg, size_t *msg_len,
                          bool *compressed, gs_error_t *err) {
  gs_buf_init_max(plain, GS_LIMIT_GRPC_MESSAGE, max);
  int status = frame_check(buf, len, max, err);
  *compressed = status == GS__GRPC_OK && buf[0] != 0;
  if (status != GS__GRPC_OK || !*compressed) {
    *msg = buf + GS__GRPC_PREFIX;
    *msg_len = len - GS__GRPC_PREFIX;
    return status;
  }
  if (buf[0] != 1)
    return gs_error_set(err, GS_EPARSE, "the message's flag byte is %u",
                        buf[0]),
           GS__GRPC_INTERNAL;
  if (enc == GS__ENC_IDENTITY)
    return gs_error_set(err, GS_EPARSE,
                        "a compressed message without grpc-encoding"),
           GS__GRPC_INTERNAL;
  if (enc == GS__ENC_UNKNOWN)
    return gs_error_set(err, GS_EUNSUPPORTED,
                        "unsupported grpc-encoding (%s are)",
                        GS__GRPC_ACCEPT_ENCODING),
           GS__GRPC_UNIMPLEMENTED;
  int rc = gs__decompress(enc, buf + GS__GRPC_PREFIX, len - GS__GRPC_PREFIX,
                          plain, err);
  if (rc != GS_OK)
    return rc == GS_ELIMIT ? GS__GRPC_RESOURCE_EXHAUSTED : GS__GRPC_INTERNAL;
  *msg = (const uint8_t *)(plain->data ? plain->data : "");
  *msg_len = plain->len;
  return GS__GRPC_OK;
}

int gs__grpc_frame_compress(gs__encoding_t e, const uint8_t *msg, size_t len,
                            gs_buf_t *out, gs_error_t *err) {
  uint8_t *prefix = gs_buf_reserve(out, GS__GRPC_PREFIX);
  if (!prefix)
    return gs_buf_error(out, err);
  size_t at = out->len;
  gs_buf_commit(out, GS__GRPC_PREFIX);
  int rc = gs__compress(e, msg, len, out, err);
  if (rc != GS_OK)
    return rc;
  gs__grpc_frame_prefix((uint8_t *)out->data + at,
                        out->len - at - GS__GRPC_PREFIX);
  out->data[at] = 1;
  return GS_OK;
}

void gs__grpc_frame_prefix(uint8_t prefix[GS__GRPC_PREFIX], size_t len) {
  prefix[0] = 0;
  prefix[1] = (uint8_t)(len >> 24);
  prefix[2] = (uint8_t)(len >> 16);
  prefix[3] = (uint8_t)(len >> 8);
  prefix[4] = (uint8_t)len;
}

int gs__grpc_status_of_http(int http_status) {
  switch (http_status) {
  case 200:
    return GS__GRPC_OK;
  case 404:
    return GS__GRPC_NOT_FOUND;
  case 413:
    return GS__GRPC_RESOURCE_EXHAUSTED;
  case 501:
    return GS__GRPC_UNIMPLEMENTED;
  case 503:
    return GS__GRPC_UNAVAILABLE;
  default:
    return http_status >= 500 ? GS__GRPC_INTERNAL : GS__GRPC_INVALID_ARGUMENT;
  }
}

void gs__grpc_percent_encode(const char *text, char *out, size_t size) {
  static const char hex[] = "0123456789ABCDEF";
  size_t at = 0;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
    if (at + (plain ? 1 : 3) >= size)
      break;
    if (plain) {
      out[at++] = (char)*p;
    } else {
      out[at++] = '%';
      out[at++] = hex[*p >> 4];
      out[at++] = hex[*p & 15];
    }
  }
  if (size)
    out[at] = '\0';
}

bool gs__grpc_content_type(const uint8_t *value, size_t len) {
  static const char type[] = "application/grpc";
  size_t n = sizeof type - 1;
  return len >= n && memcmp(value, type, n) == 0 &&
         (len == n || value[n] == '+' || value[n] == ';');
}

int gs__grpc_stream_next(const uint8_t *buf, size_t len, size_t max,
                         const uint8_t **msg, size_t *msg_len, size_t *used,
                         gs_error_t *err) {
  *used = 0;
  if (len < GS__GRPC_PREFIX)
    return GS__GRPC_STREAM_MORE;
  size_t n = (size_t)buf[1] << 24 | (size_t)buf[2] << 16 | (size_t)buf[3] << 8 |
             buf[4];
  if (n <= max && len - GS__GRPC_PREFIX < n)
    return GS__GRPC_STREAM_MORE; /* the rest is still to come */
  size_t whole = n > max ? len : GS__GRPC_PREFIX + n;
  int status = gs__grpc_frame_read(buf, whole, max, msg, msg_len, err);
  if (status == GS__GRPC_OK)
    *used = whole;
  return status;
}

int gs__grpc_submit_status(nghttp2_session *session, int32_t id, int status,
                           const char *text) {
  char code[16], msg[1024];
  snprintf(code, sizeof code, "%d", status);
  gs__grpc_percent_encode(text, msg, sizeof msg);
  nghttp2_nv head[] = {
      GS_H2_NV(":status", "200"), GS_H2_NV("content-type", "application/grpc"),
      GS_H2_NV("grpc-status", code), GS_H2_NV("grpc-message", msg),
      GS_H2_NV("grpc-accept-encoding", GS__GRPC_ACCEPT_ENCODING)};
  return nghttp2_submit_response(session, id, head, 5, NULL);
}

int gs__grpc_submit_ok_trailer(nghttp2_session *session, int32_t id) {
  nghttp2_nv trailers[] = {GS_H2_NV("grpc-status", "0")};
  return nghttp2_submit_trailer(session, id, trailers, 1);
}

int gs__grpc_submit_call(nghttp2_session *session, const char *authority,
                         const char *path, const nghttp2_data_provider *data,
                         void *stream_user) {
  nghttp2_nv head[] = {GS_H2_NV(":method", "POST"),
                       GS_H2_NV(":scheme", "http"),
                       GS_H2_NV(":path", path),
                       GS_H2_NV(":authority", authority),
                       GS_H2_NV("content-type", "application/grpc"),
                       GS_H2_NV("te", "trailers")};
  return nghttp2_submit_request(session, NULL, head, 6, data, stream_user);
}

static bool named(const uint8_t *name, size_t len, const char *want) {
  return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int parse_int(const uint8_t *value, size_t len) {
  char text[16];
  snprintf(text, sizeof text, "%.*s", (int)len, (const char *)value);
  return atoi(text);
}

void gs__grpc_answer_header(gs__grpc_answer_t *a, const uint8_t *name,
                            size_t namelen, const uint8_t *value,
                            size_t valuelen) {
  if (named(name, namelen, ":status")) {
    a->http_status = parse_int(value, valuelen);
  } else if (named(name, namelen, "grpc-status")) {
    a->status = parse_int(value, valuelen);
    a->have_status = true;
  } else if (named(name, namelen, "grpc-message")) {
    snprintf(a->message, sizeof a->message, "%.*s", (int)valuelen,
             (const char *)value);
  }
}

void gs__grpc_answer_end(gs__grpc_answer_t *a, uint32_t h2_error) {
  if (a->have_status)
    return;
  a->status = GS__GRPC_UNAVAILABLE;
  snprintf(a->message, sizeof a->message,
           "the server ended the call without a grpc-status (HTTP %d, "
           "HTTP/2 error %u)",
           a->http_status, h2_error);
}
