/* ModelStreamInfer's replies without sockets: a ModelStreamInferResponse
 * appended to a stream's output, so that grpc.c's stream path can be tested
 * and fuzzed alone (net/grpc_frame.c takes the messages off the stream). */
#include <string.h>

#include "worker/grpc_int.h"

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
