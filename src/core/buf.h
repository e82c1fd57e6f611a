/* One growable byte buffer for the whole codebase: a hard limit fixed at
 * init, and a sticky failure, so a long chain of appends is checked once at
 * the end. The limits every buffer uses live in one table (GS_LIMITS), and
 * the message a failed buffer gives is derived from its entry. */
#ifndef GS_CORE_BUF_H
#define GS_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "gpuslice/error.h"

/* name, bytes, what is limited (for messages). */
#define GS_LIMITS(XX)                                                          \
  XX(HTTP_URL, (size_t)8 << 10, "HTTP request target")                         \
  XX(HTTP_HEADERS, (size_t)16 << 10, "HTTP header block")                      \
  XX(HTTP_BODY, (size_t)64 << 20, "HTTP body")                                 \
  XX(HTTP_READ_AHEAD, (size_t)64 << 20,                                        \
     "bytes read ahead on an HTTP connection")                                 \
  XX(HTTP_REQUEST_HEAD, ((size_t)8 << 10) + 512, "HTTP request head")          \
  XX(UPSTREAM_RESPONSE, (size_t)256 << 20, "upstream response")                \
  XX(INFER_RESPONSE, (size_t)4 << 30, "inference response")                    \
  XX(PERF_ANSWER, (size_t)64 << 20, "perf's fetched answer")                   \
  XX(CLI_RESPONSE, (size_t)16 << 20, "HTTP response to the CLI")               \
  XX(GRPC_MESSAGE, ((size_t)64 << 20) + 5, "gRPC message")                     \
  XX(GRPC_CONN, (size_t)256 << 20, "buffered gRPC requests of a connection")   \
  XX(GRPC_HEADERS, (size_t)16 << 10, "gRPC header list")                       \
  XX(GRPC_PROXY_BUFFERED, (size_t)512 << 20,                                   \
     "gRPC calls buffered by the router")                                      \
  XX(H2_WRITE, (size_t)8 << 20, "HTTP/2 output gathered for one write")        \
  XX(CONFIG_FILE, (size_t)64 << 10, "model configuration file")                \
  XX(CONV_CACHE_FILE, (size_t)64 << 20, "conv choice cache file")              \
  XX(TEXT, (size_t)16 << 20, "generated text")                                 \
  XX(STATE_FILE, (size_t)4 << 20, "state file")                                \
  XX(SVG, (size_t)64 << 20, "SVG document")                                    \
  XX(METRICS, (size_t)256 << 20, "merged metrics text")                        \
  XX(PERF_INPUT, (size_t)64 << 20, "perf input tensor")                        \
  XX(PERF_REQUEST, (size_t)4 << 30, "perf request")                            \
  XX(COMPRESSED, (size_t)4 << 30, "compressed response")

typedef enum {
#define XX(name, bytes, what) GS_LIMIT_##name,
  GS_LIMITS(XX)
#undef XX
      GS_LIMIT_COUNT
} gs_limit_t;

size_t gs_limit_bytes(gs_limit_t which);
const char *gs_limit_what(gs_limit_t which);

typedef struct gs_buf_s {
  char *data;       /* NUL-terminated past len whenever non-NULL */
  size_t len;       /* bytes held */
  size_t cap;       /* bytes allocated (len + 1 at least when data != NULL) */
  size_t max;       /* hard limit on len */
  gs_limit_t limit; /* the table entry max came from, for messages */
  int failed;       /* sticky: GS_ENOMEM or GS_ELIMIT once an append failed */
} gs_buf_t;

/* An empty buffer holding at most the limit's bytes. Allocates nothing. */
void gs_buf_init(gs_buf_t *b, gs_limit_t limit);
/* Same with an explicit maximum (a configured body limit); messages still
 * name the table entry. */
void gs_buf_init_max(gs_buf_t *b, gs_limit_t limit, size_t max);

/* Appends; on failure the buffer is emptied and freed, marked failed, and
 * every later append fails too. Returns GS_OK, GS_ELIMIT or GS_ENOMEM. */
int gs_buf_add(gs_buf_t *b, const void *data, size_t n);
int gs_buf_adds(gs_buf_t *b, const char *s);
int gs_buf_addf(gs_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int gs_buf_vaddf(gs_buf_t *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Room for n more bytes written in place (a read() target): returns the
 * tail, or NULL on failure (sticky as above). gs_buf_commit then counts the
 * bytes actually written (at most n). */
void *gs_buf_reserve(gs_buf_t *b, size_t n);
void gs_buf_commit(gs_buf_t *b, size_t n);

/* Drops the first n bytes (consumed input), keeping the rest in place. */
void gs_buf_consume(gs_buf_t *b, size_t n);

/* Empties the buffer, keeping its memory, and clears a failure. */
void gs_buf_reset(gs_buf_t *b);
/* Frees the memory; the buffer is empty and usable again. */
void gs_buf_free(gs_buf_t *b);
/* Hands the bytes to the caller (free() them); the buffer is empty after.
 * Never NULL unless failed: an empty buffer gives "". */
char *gs_buf_take(gs_buf_t *b, size_t *len);

/* Appends the rest of fd, up to end of file, within the limit (a longer
 * file fails the buffer with GS_ELIMIT). Returns GS_OK, the buffer's
 * failure (gs_buf_error says what), or GS_ESYSTEM with errno set. */
int gs_buf_read_fd(gs_buf_t *b, int fd);

/* The failure as an error: "HTTP body larger than 67108864 bytes" or
 * "out of memory growing HTTP body"; GS_OK when not failed. */
int gs_buf_error(const gs_buf_t *b, gs_error_t *err);

#endif
