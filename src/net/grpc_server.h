/* A gRPC server on net/h2's pump, the one the worker (KServe's
 * GRPCInferenceService) and the device plugin (kubelet's DevicePlugin) run:
 * a TCP or unix-socket listener, one nghttp2 server session a connection,
 * each call's request gathered under a size limit and handed to the handler
 * its :path routes to; unary replies, streamed replies, and grpc-status /
 * grpc-message trailers. Handlers may answer later (gs_grpc_call_hold). */
#ifndef GS_NET_GRPC_SERVER_H
#define GS_NET_GRPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "gpuslice/error.h"
#include "net/h2.h"

typedef struct gs_grpc_srv_s gs_grpc_srv_t;
typedef struct gs_grpc_call_s gs_grpc_call_t;

typedef enum {
  /* the request's one message once the client half-closed; one reply
   * (gs_grpc_call_reply) or a status (gs_grpc_call_fail) */
  GS_GRPC_UNARY,
  /* the same request; messages out (gs_grpc_call_send) until
   * gs_grpc_call_end */
  GS_GRPC_SERVER_STREAM,
  /* each request message as it comes; messages out; the call ends once the
   * client half-closed (or gs_grpc_call_end) and nothing holds it */
  GS_GRPC_BIDI_STREAM,
  /* a relay's (the router's): the request's bytes as sent (framed, maybe
   * compressed, any content-type) once the client half-closed, within
   * max_message bytes in all; answered by gs_grpc_call_relay_head/_end */
  GS_GRPC_RAW,
  /* a relayed stream: the handler once the request headers are in (msg
   * NULL), then with each chunk of bytes as it comes; the config's
   * on_half_close once the client half-closed; answered as GS_GRPC_RAW */
  GS_GRPC_RAW_STREAM
} gs_grpc_kind_t;

/* A request message (unframed, decompressed); msg lives until the handler
 * returns. */
typedef void (*gs_grpc_handler_fn)(gs_grpc_call_t *call, const uint8_t *msg,
                                   size_t len);

typedef struct gs_grpc_route_s {
  const char *path; /* the :path, or NULL: every path not matched before */
  gs_grpc_kind_t kind;
  gs_grpc_handler_fn handler;
} gs_grpc_route_t;

typedef struct gs_grpc_srv_config_s {
  const gs_grpc_route_t *routes; /* a path no route takes: UNIMPLEMENTED */
  size_t n_routes;
  void *owner;           /* gs_grpc_call_owner's */
  size_t max_message;    /* a request message's bytes, unframed */
  const char *too_large; /* grpc-message for a request past max_message */
  size_t conn_buffered;  /* request bytes one connection holds; 0: no limit */
  const char *conn_full; /* grpc-message when conn_buffered is passed */
  gs_limit_t out_limit;  /* a streaming call's replies not yet taken */
  unsigned window;       /* each stream's receive window */
  unsigned conn_window;  /* the connection's */
  /* Reads grpc-encoding (a compressed request is decoded) and answers a
   * compressed unary request compressed, when grpc-accept-encoding allows;
   * unary replies then say grpc-accept-encoding and grpc-encoding. Without
   * it a compressed request is UNIMPLEMENTED. */
  bool compression;
  /* A request whose content-type is not gRPC's: HTTP 415, or (false)
   * grpc-status INVALID_ARGUMENT "not a gRPC request". */
  bool http_415;
  unsigned max_headers; /* a request's header list (RFC 9113); 0: nghttp2's */
  /* Each request header field as it comes (before the handler runs). */
  void (*on_header)(gs_grpc_call_t *call, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen);
  /* A GS_GRPC_RAW_STREAM call's client half-closed. */
  void (*on_half_close)(gs_grpc_call_t *call);
  size_t call_state; /* bytes of the owner's, zeroed, each call */
  void (*on_call_free)(gs_grpc_call_t *call); /* releases call_state's */
} gs_grpc_srv_config_t;

/* Listens on host:port (0: a free port) or on the unix socket path (a file
 * left there is removed first). *out is set even when listening fails (NULL
 * only without memory): gs_grpc_srv_close it either way. cfg is copied; the
 * routes it points to must outlive the server. */
int gs_grpc_srv_listen_tcp(gs_grpc_srv_t **out, uv_loop_t *loop,
                           const char *host, unsigned port,
                           const gs_grpc_srv_config_t *cfg, gs_error_t *err);
int gs_grpc_srv_listen_unix(gs_grpc_srv_t **out, uv_loop_t *loop,
                            const char *path, const gs_grpc_srv_config_t *cfg,
                            gs_error_t *err);
unsigned gs_grpc_srv_port(const gs_grpc_srv_t *s);
/* Closes the listener and every connection; the server frees itself once
 * they are closed (the loop runs). Calls still held outlive it, closed. */
void gs_grpc_srv_close(gs_grpc_srv_t *s);
/* Stops taking connections and sends each a GOAWAY: calls begun finish,
 * then the connections close. gs_grpc_srv_close still frees it. */
void gs_grpc_srv_drain(gs_grpc_srv_t *s);
/* Connections still open (a drain is over when none is: each closes once
 * its calls are answered and written, or at once when it had none). */
size_t gs_grpc_srv_conns(const gs_grpc_srv_t *s);
/* Writes what every connection answered outside the server's callbacks
 * since its last write (an owner flushing once per loop turn, so that no
 * session is written from inside another's callbacks); true if any was. */
bool gs_grpc_srv_flush(gs_grpc_srv_t *s);
/* fn on every open call, then each connection flushes. */
void gs_grpc_srv_each(gs_grpc_srv_t *s,
                      void (*fn)(gs_grpc_call_t *call, void *arg), void *arg);

void *gs_grpc_call_state(gs_grpc_call_t *call);
void *gs_grpc_call_owner(const gs_grpc_call_t *call);
const char *gs_grpc_call_path(const gs_grpc_call_t *call);
/* Whether the stream is gone (reset, or its connection closed). */
bool gs_grpc_call_closed(const gs_grpc_call_t *call);

/* The unary answer: framed (prefix + message, malloc'd) is taken. */
void gs_grpc_call_reply(gs_grpc_call_t *call, uint8_t *framed, size_t len);
/* The same from an unframed message (copied). */
void gs_grpc_call_reply_msg(gs_grpc_call_t *call, const void *msg, size_t len);
/* A trailers-only answer: grpc-status status (0: INTERNAL), grpc-message. */
void gs_grpc_call_fail(gs_grpc_call_t *call, int status, const char *msg);
/* The same for err, its code mapped by gs_error_grpc_status. */
void gs_grpc_call_fail_error(gs_grpc_call_t *call, const gs_error_t *err);

/* A streaming call's queued replies, framed, to append to; then kick. */
gs_buf_t *gs_grpc_call_out(gs_grpc_call_t *call);
/* Lets the session take what is queued (the response headers first). */
void gs_grpc_call_kick(gs_grpc_call_t *call);
/* Frames msg onto the queue and kicks. GS_OK, or the queue's error. */
int gs_grpc_call_send(gs_grpc_call_t *call, const void *msg, size_t len);
/* Ends a streaming call with status (first call wins; 0 for OK) once
 * nothing holds it: the request's unread bytes are dropped. */
void gs_grpc_call_end(gs_grpc_call_t *call, int status, const char *msg);

/* A relayed answer: the response headers as given (end: they end the
 * stream, a trailers-only answer); its framed messages then go onto
 * gs_grpc_call_out (with a kick), and relay_end ends it with the trailers
 * as given (none: the last DATA ends the stream). */
void gs_grpc_call_relay_head(gs_grpc_call_t *call, const gs_h2_hdrs_t *head,
                             bool end);
void gs_grpc_call_relay_end(gs_grpc_call_t *call, const gs_h2_hdrs_t *trailers);
/* Resets the stream with an HTTP/2 error code: no answer after that. */
void gs_grpc_call_reset(gs_grpc_call_t *call, uint32_t h2_error);
/* A GS_GRPC_RAW call's request bytes, moved into dst (freed first). */
void gs_grpc_call_take_request(gs_grpc_call_t *call, gs_buf_t *dst);

/* Keeps the call (and its state) while the owner works on it. */
void gs_grpc_call_hold(gs_grpc_call_t *call);
/* Drops a hold: false when the stream is gone (nobody to answer; the call
 * is freed with its last hold), true when it may still be answered. */
bool gs_grpc_call_release(gs_grpc_call_t *call);
/* Kicks the call and writes what its connection has queued: after an
 * answer given outside the server's callbacks (a finished job). */
void gs_grpc_call_flush(gs_grpc_call_t *call);

#endif
