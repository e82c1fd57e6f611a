/* gzip and deflate for HTTP bodies (Content-Encoding, Accept-Encoding) and
 * gRPC messages (grpc-encoding, grpc-accept-encoding), over zlib. Inflating
 * is bounded by the caller's buffer: a zip bomb stops at the limit. */
#ifndef GS_NET_COMPRESS_H
#define GS_NET_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "gpuslice/error.h"

typedef enum {
  GS__ENC_IDENTITY = 0,
  GS__ENC_GZIP,    /* RFC 1952 (gzip header and CRC) */
  GS__ENC_DEFLATE, /* RFC 1950 (zlib stream), as HTTP and gRPC mean it */
  GS__ENC_UNKNOWN
} gs__encoding_t;

/* One coding name (case-insensitive, surrounding blanks ignored); ""
 * is identity. */
gs__encoding_t gs__encoding_parse(const char *name, size_t len);
/* "identity", "gzip" or "deflate". */
const char *gs__encoding_name(gs__encoding_t e);
/* The coding to answer with from an Accept-Encoding or grpc-accept-encoding
 * list ("gzip;q=0.5, deflate"): the supported one of highest q (gzip on
 * a tie), identity when none is acceptable. */
gs__encoding_t gs__encoding_accepted(const char *list, size_t len);
/* Whether the list (as above) accepts e (listed, q above 0). */
bool gs__encoding_listed(const char *list, size_t len, gs__encoding_t e);

/* Appends the decoded bytes of in to out, within out's limit. GS_OK;
 * GS_ELIMIT when the decoded data would exceed it (err names the limit);
 * GS_EPARSE for data that is not valid e; GS_ENOMEM. */
int gs__decompress(gs__encoding_t e, const void *in, size_t len, gs_buf_t *out,
                   gs_error_t *err);
/* Appends in encoded as e to out. GS_OK, GS_ELIMIT or GS_ENOMEM. */
int gs__compress(gs__encoding_t e, const void *in, size_t len, gs_buf_t *out,
                 gs_error_t *err);

#endif
