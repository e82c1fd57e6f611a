/* net/grpc_server's private parts, shared by grpc_server.c (listener,
 * connections, requests, answers) and grpc_relay.c (the answers of a relay:
 * an upstream's headers, messages and trailers passed on as given). */
#ifndef GS_NET_GRPC_SERVER_INT_H
#define GS_NET_GRPC_SERVER_INT_H

#include <stdalign.h>
#include <stddef.h>

#include "net/grpc.h"
#include "net/grpc_server.h"
#include "net/h2.h"

typedef struct conn_s conn_t;

struct gs_grpc_call_s {
  gs_grpc_call_t *next, *prev; /* in the connection's list */
  conn_t *c;                   /* NULL once the stream is gone */
  gs_grpc_srv_t *srv;          /* freed only after its last call */
  const gs_grpc_srv_config_t *cfg;
  int32_t id;
  const gs_grpc_route_t *route; /* NULL: no route takes the path */
  char path[256];
  bool grpc;       /* the content-type is gRPC's */
  bool dispatched; /* the request went to the handler (or was refused) */
  bool closed;     /* nghttp2 is done with the stream */
  unsigned holds;
  gs_buf_t in; /* the request's bytes */
  int error;   /* a gRPC status found while reading, answered at its end */
  char error_msg[128];
  gs__encoding_t encoding, reply_encoding; /* grpc-encoding, the reply's */
  char accept[64];                         /* grpc-accept-encoding */
  uint8_t *body;                           /* a unary reply, framed */
  size_t body_len, sent;
  /* streaming replies */
  bool half_closed;  /* a bidi call's client sent END_STREAM */
  bool headers_sent; /* the response (data source) is submitted */
  bool trailers;     /* the status is queued: nothing more to send */
  bool ended;        /* gs_grpc_call_end: end_status once nothing holds it */
  int end_status;
  char end_msg[256];
  gs_buf_t out; /* framed replies not yet taken by nghttp2 */
  size_t out_at;
  bool relayed;                /* answered by gs_grpc_call_relay_head */
  gs_h2_hdrs_t relay_trailers; /* what gs_grpc_call_relay_end gave */
  alignas(max_align_t) unsigned char state[]; /* the owner's */
};

struct conn_s {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  gs_h2_t h2;
  gs_grpc_srv_t *s;
  conn_t *next, *prev;
  gs_grpc_call_t *calls;
  size_t buffered; /* request bytes held by its calls */
  bool closing;
  bool dirty; /* answered outside its callbacks: gs_grpc_srv_flush writes */
};

struct gs_grpc_srv_s {
  uv_loop_t *loop;
  gs_grpc_srv_config_t cfg;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } listener;
  bool is_unix, closing, draining, listener_closed;
  unsigned port;
  conn_t *conns;
  size_t live_calls; /* calls not yet freed: a held one outlives its conn */
};

/* An answer was queued on call's session: written by the next flush. */
void gs__grpc_call_dirty(gs_grpc_call_t *call);
/* A streamed answer's data source: call->out, then the trailers once the
 * call is done (deferred while nothing is queued). */
ssize_t gs__grpc_read_stream(nghttp2_session *session, int32_t id, uint8_t *buf,
                             size_t length, uint32_t *flags,
                             nghttp2_data_source *source, void *user);
/* A relayed call's trailers (grpc_relay.c); 0 or nghttp2's error. */
int gs__grpc_relay_trailer(nghttp2_session *session, int32_t id,
                           gs_grpc_call_t *call, uint32_t *flags);

#endif
