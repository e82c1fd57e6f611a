/* gzip and deflate over zlib for the network layer (net/compress.h): the
 * HTTP server's request bodies and responses, gRPC's messages. Inflating
 * writes into the caller's bounded buffer chunk by chunk and stops at its
 * limit, so a small bomb never allocates more than the limit. */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "net/compress.h"

#define CHUNK ((size_t)64 << 10)
#define WINDOW_BITS 15
#define GZIP_WRAPPER 16 /* windowBits + 16: gzip header and trailer */

static bool token_is(const char *s, size_t len, const char *want) {
  size_t n = strlen(want);
  if (len != n)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c + 32);
    if (c != want[i])
      return false;
  }
  return true;
}

static bool blank(char c) {
  return c == ' ' || c == '\t';
}

gs__encoding_t gs__encoding_parse(const char *name, size_t len) {
  while (len && blank(*name))
    name++, len--;
  while (len && blank(name[len - 1]))
    len--;
  if (len == 0 || token_is(name, len, "identity"))
    return GS__ENC_IDENTITY;
  if (token_is(name, len, "gzip") || token_is(name, len, "x-gzip"))
    return GS__ENC_GZIP;
  if (token_is(name, len, "deflate"))
    return GS__ENC_DEFLATE;
  return GS__ENC_UNKNOWN;
}

const char *gs__encoding_name(gs__encoding_t e) {
  return e == GS__ENC_GZIP      ? "gzip"
         : e == GS__ENC_DEFLATE ? "deflate"
                                : "identity";
}

/* q of one list element's parameters (";q=0.5"), 1000ths; 1000 without. */
static int element_q(const char *p, size_t len) {
  for (size_t i = 0; i + 2 < len; i++) {
    if (p[i] != ';')
      continue;
    size_t j = i + 1;
    while (j < len && blank(p[j]))
      j++;
    if (j + 1 >= len || (p[j] != 'q' && p[j] != 'Q') || p[j + 1] != '=')
      continue;
    double q = strtod(p + j + 2, NULL); /* stops at ',' or the end */
    return q <= 0 ? 0 : q >= 1 ? 1000 : (int)(q * 1000 + 0.5);
  }
  return 1000;
}

/* The q (1000ths) the list gives each coding; 0 for those not listed. */
static void list_q(const char *list, size_t len, int q[GS__ENC_UNKNOWN + 1]) {
  memset(q, 0, sizeof(int) * (GS__ENC_UNKNOWN + 1));
  size_t at = 0;
  while (at < len) {
    size_t end = at;
    while (end < len && list[end] != ',')
      end++;
    size_t name_end = at;
    while (name_end < end && list[name_end] != ';')
      name_end++;
    gs__encoding_t e = gs__encoding_parse(list + at, name_end - at);
    if (q[e] == 0) /* the first mention counts */
      q[e] = element_q(list + at, end - at) + 1;
    at = end + 1;
  }
  for (int i = 0; i <= GS__ENC_UNKNOWN; i++)
    q[i] = q[i] ? q[i] - 1 : 0;
}

gs__encoding_t gs__encoding_accepted(const char *list, size_t len) {
  int q[GS__ENC_UNKNOWN + 1];
  list_q(list, len, q);
  /* gzip first on a tie: it is what Triton's HTTP clients ask for */
  if (q[GS__ENC_GZIP] && q[GS__ENC_GZIP] >= q[GS__ENC_DEFLATE])
    return GS__ENC_GZIP;
  return q[GS__ENC_DEFLATE] ? GS__ENC_DEFLATE : GS__ENC_IDENTITY;
}

bool gs__encoding_listed(const char *list, size_t len, gs__encoding_t e) {
  int q[GS__ENC_UNKNOWN + 1];
  list_q(list, len, q);
  return q[e] > 0;
}

/* windowBits for inflating e: gzip's wrapper, or for deflate the zlib
 * wrapper when the data starts with a zlib header, else raw deflate (some
 * clients send that under the same name). */
static int inflate_bits(gs__encoding_t e, const unsigned char *in, size_t len) {
  if (e == GS__ENC_GZIP)
    return WINDOW_BITS + GZIP_WRAPPER;
  bool zlib_header = len >= 2 && (in[0] & 0x0f) == Z_DEFLATED &&
                     ((unsigned)in[0] << 8 | in[1]) % 31 == 0;
  return zlib_header ? WINDOW_BITS : -WINDOW_BITS;
}

static int corrupt(gs__encoding_t e, const char *why, gs_error_t *err) {
  return gs_error_set(err, GS_EPARSE, "the %s data is not valid: %s",
                      gs__encoding_name(e), why);
}

/* One inflate step into out's tail; at the limit, into a spare byte that
 * tells whether more output would follow. */
static int inflate_step(z_stream *z, gs_buf_t *out, int *zr) {
  size_t room = out->max - out->len;
  size_t n = room < CHUNK ? room : CHUNK;
  unsigned char spare;
  unsigned char *tail = n ? gs_buf_reserve(out, n) : &spare;
  if (!tail)
    return GS_ENOMEM;
  z->next_out = tail;
  z->avail_out = n ? (uInt)n : 1;
  *zr = inflate(z, Z_NO_FLUSH);
  size_t got = (n ? n : 1) - z->avail_out;
  if (!n && got)
    return GS_ELIMIT;
  if (n)
    gs_buf_commit(out, got);
  return GS_OK;
}

static int inflate_all(gs__encoding_t e, z_stream *z, gs_buf_t *out,
                       gs_error_t *err) {
  for (;;) {
    int zr, rc = inflate_step(z, out, &zr);
    if (rc == GS_ELIMIT)
      return gs_error_set(err, GS_ELIMIT,
                          "the %s data decompresses to more than the limit "
                          "of %zu bytes (%s)",
                          gs__encoding_name(e), out->max,
                          gs_limit_what(out->limit));
    if (rc != GS_OK || zr == Z_MEM_ERROR)
      return gs_error_set(err, GS_ENOMEM, "out of memory decompressing %s",
                          gs__encoding_name(e));
    if (zr == Z_STREAM_END && z->avail_in == 0)
      return GS_OK;
    if (zr == Z_STREAM_END && e == GS__ENC_GZIP) {
      inflateReset(z); /* RFC 1952: members may follow one another */
      continue;
    }
    if (zr == Z_STREAM_END)
      return corrupt(e, "bytes follow the end of the compressed stream", err);
    if (zr == Z_BUF_ERROR && z->avail_in == 0)
      return corrupt(e, "it ends before the compressed stream does", err);
    if (zr != Z_OK)
      return corrupt(e, z->msg ? z->msg : "inflate failed", err);
  }
}

int gs__decompress(gs__encoding_t e, const void *in, size_t len, gs_buf_t *out,
                   gs_error_t *err) {
  if (e == GS__ENC_IDENTITY)
    return gs_buf_add(out, in, len) == GS_OK ? GS_OK : gs_buf_error(out, err);
  if (e != GS__ENC_GZIP && e != GS__ENC_DEFLATE)
    return gs_error_set(err, GS_EUNSUPPORTED, "unsupported encoding");
  if (len > UINT_MAX)
    return gs_error_set(err, GS_ELIMIT, "compressed data of %zu bytes", len);
  z_stream z = {0};
  z.next_in = (unsigned char *)(uintptr_t)in;
  z.avail_in = (uInt)len;
  if (inflateInit2(&z, inflate_bits(e, in, len)) != Z_OK)
    return gs_error_set(err, GS_ENOMEM, "cannot start inflating %s",
                        gs__encoding_name(e));
  size_t before = out->len;
  int rc = inflate_all(e, &z, out, err);
  inflateEnd(&z);
  if (rc != GS_OK && !out->failed)
    out->len = before; /* nothing of a failed stream stays */
  return rc;
}

int gs__compress(gs__encoding_t e, const void *in, size_t len, gs_buf_t *out,
                 gs_error_t *err) {
  if (e == GS__ENC_IDENTITY)
    return gs_buf_add(out, in, len) == GS_OK ? GS_OK : gs_buf_error(out, err);
  if ((e != GS__ENC_GZIP && e != GS__ENC_DEFLATE) || len > UINT_MAX)
    return gs_error_set(err, GS_EUNSUPPORTED, "cannot compress as %s",
                        gs__encoding_name(e));
  z_stream z = {0};
  int bits = WINDOW_BITS + (e == GS__ENC_GZIP ? GZIP_WRAPPER : 0);
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, bits, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return gs_error_set(err, GS_ENOMEM, "cannot start compressing");
  int rc = GS_OK;
  size_t bound = deflateBound(&z, (uLong)len);
  unsigned char *tail = gs_buf_reserve(out, bound);
  if (!tail) {
    rc = gs_buf_error(out, err);
    goto out;
  }
  z.next_in = (unsigned char *)(uintptr_t)in;
  z.avail_in = (uInt)len;
  z.next_out = tail;
  z.avail_out = (uInt)bound;
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
    rc = gs_error_set(err, GS_ENOMEM, "compressing %zu bytes failed", len);
    goto out;
  }
  gs_buf_commit(out, bound - z.avail_out);
out:
  deflateEnd(&z);
  return rc;
}
