/* ModelStreamInfer's messages without sockets: the next length-prefixed
 * message off the front of a stream's bytes (which may hold several, or
 * part of one), and a ModelStreamInferResponse appended to a stream's
 * output, so that grpc.c's stream path can be tested and fuzzed alone. */
#include <string.h>

#include "worker/grpc_int.h"

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

int gs__grpc_stream_response(gs_buf_t *out, unsigned field, const void *data,
                             size_t len) {
  uint8_t head[GS__GRPC_PREFIX + 1 + 10];
  size_t n = GS__GRPC_PREFIX, v = len;
  head[n++] = (uint8_t)(field << 3 | 2); /* length-delimited */
  do {
    head[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  size_t body = n - GS__GRPC_PREFIX + len;
  if (body > GS__GRPC_MAX_MESSAGE)
    return GS_ELIMIT;
  gs__grpc_frame_prefix(head, body);
  int rc = gs_buf_add(out, head, n);
  return rc == GS_OK && len ? gs_buf_add(out, data, len) : rc;
}
