/* The nghttp2-on-libuv session pump every HTTP/2 side of gpuslice uses (the
 * worker's gRPC server, the router's gRPC front and its connections to the
 * workers, perf's gRPC client): bytes read go into nghttp2, what nghttp2
 * queues goes to the uv stream, at most GS_H2_HIGH_WATER bytes in flight. */
#ifndef GS_NET_H2_H
#define GS_NET_H2_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "core/buf.h"
#include "gpuslice/error.h"

/* A header field of a literal name and a NUL-terminated value. */
#define GS_H2_NV(name, value)                                                  \
  {                                                                            \
    (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),    \
        NGHTTP2_NV_FLAG_NONE                                                   \
  }

/* Bytes handed to the socket and not yet written, above which the pump
 * stops taking frames from nghttp2 until a write completes. */
#define GS_H2_HIGH_WATER ((size_t)4 << 20)

typedef struct gs_h2_s gs_h2_t;
/* A write finished (status < 0: it failed and the connection is unusable).
 * The owner flushes again, now or later. */
typedef void (*gs_h2_written_fn)(gs_h2_t *h, int status);

typedef struct gs_h2_config_s {
  bool server;
  unsigned max_streams; /* server: SETTINGS_MAX_CONCURRENT_STREAMS */
  unsigned window;      /* SETTINGS_INITIAL_WINDOW_SIZE, per stream */
  unsigned conn_window; /* the connection's receive window */
  unsigned max_headers; /* SETTINGS_MAX_HEADER_LIST_SIZE; 0: nghttp2's */
} gs_h2_config_t;

struct gs_h2_s {
  nghttp2_session *session;
  uv_stream_t *stream;
  gs_h2_written_fn on_written;
  void *data;       /* the owner's */
  size_t in_flight; /* bytes in uv_write requests not yet completed */
  unsigned writes;  /* those requests */
  gs_buf_t out;     /* frames gathered for one write */
};

/* Creates the session (callbacks cb, user data user) on stream and queues
 * the SETTINGS cfg asks for; on_written is required. On failure nothing is
 * held. */
int gs_h2_init(gs_h2_t *h, uv_stream_t *stream, const gs_h2_config_t *cfg,
               const nghttp2_session_callbacks *cb, void *user,
               gs_h2_written_fn on_written, gs_error_t *err);
/* Frees the session; writes in flight must have completed (the stream was
 * closed). Safe on a zeroed or released h. */
void gs_h2_release(gs_h2_t *h);
/* Gives nghttp2 len bytes read from the stream (its callbacks run now). */
int gs_h2_feed(gs_h2_t *h, const void *data, size_t len, gs_error_t *err);
/* Writes what nghttp2 has queued, up to the high water mark (on_written
 * calls again). GS_OK, or an error: the connection is unusable. */
int gs_h2_flush(gs_h2_t *h, gs_error_t *err);
/* Whether the session is done both ways with nothing left to write. */
bool gs_h2_finished(const gs_h2_t *h);
/* A header list kept to be sent again (a relayed request's or answer's):
 * name\0value\0 pairs (nghttp2 rejects NULs in both), at most max bytes
 * as RFC 9113 counts them (name + value + 32 each). */
typedef struct gs_h2_hdrs_s {
  gs_buf_t b;
  size_t list_bytes;
  unsigned n;
} gs_h2_hdrs_t;

/* Appends one field; -1 past max list bytes or without memory. */
int gs_h2_hdrs_add(gs_h2_hdrs_t *h, size_t max, const uint8_t *name,
                   size_t nlen, const uint8_t *value, size_t vlen);
/* Empties h (its buffer kept for reuse). */
void gs_h2_hdrs_clear(gs_h2_hdrs_t *h);
/* h's fields after `first` entries left to the caller, skipping pseudo
 * headers other than :status, :path and :authority (the ones a relay
 * keeps). NULL without memory; free the array. */
nghttp2_nv *gs_h2_hdrs_nv(const gs_h2_hdrs_t *h, size_t first, size_t *n);

/* A uv_alloc_cb: one read buffer per thread, consumed by gs_h2_feed before
 * the next read (nghttp2 copies what it keeps). */
void gs_h2_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);

#endif
