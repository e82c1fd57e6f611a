/* libFuzzer harness for the decompression path (net/compress.c and gRPC's
 * compressed messages): the first byte picks the coding and a limit, the
 * rest is decoded under it. A decode must stay within the limit, and what
 * decodes must encode and decode back to itself; the rest is read as a
 * compressed gRPC frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(gs__encoding_t e, const gs_buf_t *plain) {
  gs_buf_t z, back;
  gs_error_t err;
  gs_buf_init(&z, GS_LIMIT_COMPRESSED);
  gs_buf_init_max(&back, GS_LIMIT_HTTP_BODY, plain->max);
  if (gs__compress(e, plain->data, plain->len, &z, &err) != GS_OK ||
      gs__decompress(e, z.data, z.len, &back, &err) != GS_OK ||
      back.len != plain->len ||
      (plain->len && memcmp(back.data, plain->data, plain->len) != 0))
    abort();
  gs_buf_free(&z);
  gs_buf_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  gs__encoding_t e = data[0] & 1 ? GS__ENC_DEFLATE : GS__ENC_GZIP;
  size_t limit = (size_t)1 << (4 + (data[0] >> 1) % 17); /* 16 B .. 1 MiB */
  gs_buf_t plain;
  gs_error_t err = {0};
  gs_buf_init_max(&plain, GS_LIMIT_HTTP_BODY, limit);
  int rc = gs__decompress(e, data + 1, size - 1, &plain, &err);
  if (rc == GS_OK) {
    if (plain.len > limit)
      abort();
    round_trip(e, &plain);
  } else if (rc != GS_ELIMIT && rc != GS_EPARSE && rc != GS_ENOMEM) {
    abort();
  } else if (err.msg[0] == '\0') {
    abort(); /* every failure says why */
  }
  gs_buf_free(&plain);
  const uint8_t *msg;
  size_t len;
  bool compressed;
  int status = gs__grpc_frame_decode(data + 1, size - 1, limit, e, &plain, &msg,
                                     &len, &compressed, &err);
  if (status == GS__GRPC_OK && len > limit)
    abort();
  gs_buf_free(&plain);
  return 0;
}
