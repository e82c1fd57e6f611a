/* gRPC over HTTP/2, the parts its servers, proxy and clients share: the
 * status codes, the 5-byte length-prefixed message framing, the limits,
 * and grpc-status / grpc-message as headers and trailers (net/h2.h pumps
 * the HTTP/2 session itself). */
#ifndef GS_NET_GRPC_H
#define GS_NET_GRPC_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "gpuslice/error.h"
#include "net/compress.h"

/* gRPC status codes gpuslice answers with (gs_error_grpc_status maps
 * gs_error_t codes onto them). */
enum {
  GS__GRPC_OK = 0,
  GS__GRPC_INVALID_ARGUMENT = 3,
  GS__GRPC_DEADLINE_EXCEEDED = 4,
  GS__GRPC_NOT_FOUND = 5,
  GS__GRPC_RESOURCE_EXHAUSTED = 8,
  GS__GRPC_UNIMPLEMENTED = 12,
  GS__GRPC_INTERNAL = 13,
  GS__GRPC_UNAVAILABLE = 14
};

/* One message, unframed; a framed one is GS_LIMIT_GRPC_MESSAGE bytes. */
#define GS__GRPC_MAX_MESSAGE (64u << 20)
/* Concurrent calls (streams) on one connection. */
#define GS__GRPC_MAX_STREAMS 128u
#define GS__GRPC_PREFIX 5

/* Reads the one length-prefixed message (flag byte, 4-byte big-endian
 * length) that must fill buf exactly. Returns GS__GRPC_OK with *msg and
 * *msg_len set, or a gRPC status with err set: INVALID_ARGUMENT for a
 * truncated or trailing frame, UNIMPLEMENTED for a compressed one,
 * RESOURCE_EXHAUSTED above max. */
int gs__grpc_frame_read(const uint8_t *buf, size_t len, size_t max,
                        const uint8_t **msg, size_t *msg_len, gs_error_t *err);
#define GS__GRPC_STREAM_MORE (-1)
/* The message at the front of a stream's len bytes (a bidi call's): GS__GRPC_OK
 * with msg, msg_len and *used (the bytes it took), GS__GRPC_STREAM_MORE when
 * the bytes hold no whole message yet, or a gRPC status (err set) when they
 * cannot be framed (too large, compressed): the stream cannot go on. */
int gs__grpc_stream_next(const uint8_t *buf, size_t len, size_t max,
                         const uint8_t **msg, size_t *msg_len, size_t *used,
                         gs_error_t *err);
/* The prefix of an uncompressed message of len bytes. */
void gs__grpc_frame_prefix(uint8_t prefix[GS__GRPC_PREFIX], size_t len);

/* The codings gpuslice reads and writes (grpc-accept-encoding's value). */
#define GS__GRPC_ACCEPT_ENCODING "identity,deflate,gzip"
/* Like gs__grpc_frame_read, and a message with the compressed flag is
 * decoded as enc (the call's grpc-encoding) into plain, within max bytes
 * decoded (*msg then points into plain; *compressed says so). Errors as
 * gRPC's compression spec says: INTERNAL for a flag without an encoding
 * or data that does not decode, UNIMPLEMENTED for an unknown encoding,
 * RESOURCE_EXHAUSTED (naming the limit) past max. */
int gs__grpc_frame_decode(const uint8_t *buf, size_t len, size_t max,
                          gs__encoding_t enc, gs_buf_t *plain,
                          const uint8_t **msg, size_t *msg_len,
                          bool *compressed, gs_error_t *err);
/* Appends msg framed with the compressed flag, encoded as e, to out. */
int gs__grpc_frame_compress(gs__encoding_t e, const uint8_t *msg, size_t len,
                            gs_buf_t *out, gs_error_t *err);

/* The gRPC status for an HTTP status of the worker's router. */
int gs__grpc_status_of_http(int http_status);
/* grpc-message's percent-encoding of text into out (NUL-terminated,
 * truncated to size). */
void gs__grpc_percent_encode(const char *text, char *out, size_t size);
/* Whether a content-type value is gRPC's ("application/grpc", "+proto"...). */
bool gs__grpc_content_type(const uint8_t *value, size_t len);

/* A trailers-only response on a server's stream: :status 200, grpc-status
 * and grpc-message (text, percent-encoded here). nghttp2's return. */
int gs__grpc_submit_status(nghttp2_session *session, int32_t id, int status,
                           const char *text);
/* The trailers that end a response whose message was sent: grpc-status 0. */
int gs__grpc_submit_ok_trailer(nghttp2_session *session, int32_t id);
/* A client's call: POST path with gRPC's request headers, the message from
 * data; stream_user is the stream's user data. nghttp2's return (the stream
 * id, or an error below 0). */
int gs__grpc_submit_call(nghttp2_session *session, const char *authority,
                         const char *path, const nghttp2_data_provider *data,
                         void *stream_user);

/* What a client reads of a call's answer: the message (prefix dropped once
 * the call ends) and the status from headers or trailers. */
typedef struct gs__grpc_answer_s {
  int http_status;
  int status; /* grpc-status once have_status */
  bool have_status;
  char message[512]; /* grpc-message, as sent */
} gs__grpc_answer_t;

/* Takes :status, grpc-status and grpc-message from one header field. */
void gs__grpc_answer_header(gs__grpc_answer_t *a, const uint8_t *name,
                            size_t namelen, const uint8_t *value,
                            size_t valuelen);
/* The call ended (HTTP/2 error code): a call without grpc-status is
 * UNAVAILABLE, as gRPC's own clients say. */
void gs__grpc_answer_end(gs__grpc_answer_t *a, uint32_t h2_error);

#endif
