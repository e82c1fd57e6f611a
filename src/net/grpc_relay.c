/* The answers of a relay on net/grpc_server (the router's gRPC front): an
 * upstream's response headers and trailers passed on as given, its framed
 * messages through the call's queue in between; a reset; the request's
 * bytes moved out without a copy. */
#include <stdlib.h>

#include "net/grpc_server_int.h"

/* A relayed answer's trailers, as given; without any the DATA ends it. */
int gs__grpc_relay_trailer(nghttp2_session *session, int32_t id,
                           gs_grpc_call_t *call, uint32_t *flags) {
  size_t n;
  if (call->relay_trailers.n == 0)
    return 0;
  nghttp2_nv *nv = gs_h2_hdrs_nv(&call->relay_trailers, 0, &n);
  int rc = nv ? nghttp2_submit_trailer(session, id, nv, n) : -1;
  free(nv);
  *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  return rc;
}

void gs_grpc_call_relay_head(gs_grpc_call_t *call, const gs_h2_hdrs_t *head,
                             bool end) {
  size_t n;
  if (call->closed || call->trailers || call->headers_sent)
    return;
  nghttp2_session *session = call->c->h2.session;
  nghttp2_nv *nv = gs_h2_hdrs_nv(head, 0, &n);
  nghttp2_data_provider data = {.source.ptr = call,
                                .read_callback = gs__grpc_read_stream};
  call->headers_sent = call->relayed = true;
  call->trailers = end;
  if (!nv || nghttp2_submit_response(session, call->id, nv, n,
                                     end ? NULL : &data) != 0)
    gs_grpc_call_reset(call, NGHTTP2_INTERNAL_ERROR);
  free(nv);
  gs__grpc_call_dirty(call);
}

void gs_grpc_call_relay_end(gs_grpc_call_t *call,
                            const gs_h2_hdrs_t *trailers) {
  gs_h2_hdrs_t *t = &call->relay_trailers;
  if (call->ended || !call->relayed)
    return;
  gs_buf_init(&t->b, GS_LIMIT_GRPC_HEADERS);
  t->n = trailers->n;
  t->list_bytes = trailers->list_bytes;
  if (trailers->n &&
      gs_buf_add(&t->b, trailers->b.data, trailers->b.len) != GS_OK) {
    gs_grpc_call_reset(call, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  gs_grpc_call_end(call, GS__GRPC_OK, NULL);
}

void gs_grpc_call_reset(gs_grpc_call_t *call, uint32_t h2_error) {
  if (call->closed)
    return;
  call->headers_sent = call->trailers = true;
  nghttp2_submit_rst_stream(call->c->h2.session, NGHTTP2_FLAG_NONE, call->id,
                            h2_error);
  gs__grpc_call_dirty(call);
}

void gs_grpc_call_take_request(gs_grpc_call_t *call, gs_buf_t *dst) {
  gs_buf_t empty;
  gs_buf_init_max(&empty, call->in.limit, call->in.max);
  if (call->c)
    call->c->buffered -= call->in.len;
  gs_buf_free(dst);
  *dst = call->in;
  call->in = empty;
}
