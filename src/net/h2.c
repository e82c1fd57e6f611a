/* The HTTP/2 session pump (net/h2.h): nghttp2 parses and frames, libuv
 * moves bytes. Frames are gathered into one write (HEADERS and DATA of a
 * call leave in one segment), tried at once with uv_try_write, and only
 * what the socket does not take is copied into a queued write. */
#include <stdlib.h>

#include "net/h2.h"

typedef struct write_s {
  uv_write_t req;
  gs_h2_t *h;
  char *data;
  size_t len;
} write_t;

void gs_h2_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  static _Thread_local char slab[64 << 10];
  (void)handle;
  (void)suggested;
  *buf = uv_buf_init(slab, sizeof slab);
}

static int settings(gs_h2_t *h, const gs_h2_config_t *cfg) {
  nghttp2_settings_entry s[3];
  size_t n = 0;
  s[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
                                    cfg->window};
  if (cfg->server)
    s[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                      cfg->max_streams};
  else
    s[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
  if (cfg->max_headers)
    s[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
                                      cfg->max_headers};
  if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, s, n) != 0)
    return -1;
  return nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0,
                                               (int32_t)cfg->conn_window);
}

int gs_h2_init(gs_h2_t *h, uv_stream_t *stream, const gs_h2_config_t *cfg,
               const nghttp2_session_callbacks *cb, void *user,
               gs_h2_written_fn on_written, gs_error_t *err) {
  nghttp2_option *opt = NULL;
  int rc = GS_ENOMEM;
  memset(h, 0, sizeof *h);
  h->stream = stream;
  h->on_written = on_written;
  gs_buf_init(&h->out, GS_LIMIT_H2_WRITE);
  if (nghttp2_option_new(&opt) != 0)
    goto out;
  nghttp2_option_set_max_reserved_remote_streams(opt, 0);
  nghttp2_option_set_peer_max_concurrent_streams(opt, 128);
  if (cfg->max_headers)
    nghttp2_option_set_max_send_header_block_length(opt, 2 * cfg->max_headers);
  if ((cfg->server
           ? nghttp2_session_server_new2(&h->session, cb, user, opt)
           : nghttp2_session_client_new2(&h->session, cb, user, opt)) != 0)
    goto out;
  rc = settings(h, cfg) == 0 ? GS_OK : GS_ESYSTEM;
out:
  nghttp2_option_del(opt);
  if (rc != GS_OK) {
    gs_h2_release(h);
    return gs_error_set(err, rc, "cannot start an HTTP/2 session");
  }
  return GS_OK;
}

void gs_h2_release(gs_h2_t *h) {
  if (h->session)
    nghttp2_session_del(h->session); /* calls no callback */
  h->session = NULL;
  gs_buf_free(&h->out);
}

int gs_h2_feed(gs_h2_t *h, const void *data, size_t len, gs_error_t *err) {
  ssize_t n = nghttp2_session_mem_recv(h->session, data, len);
  if (n < 0 || (size_t)n != len)
    return gs_error_set(err, GS_EPARSE, "HTTP/2: %s",
                        nghttp2_strerror(n < 0 ? (int)n : NGHTTP2_ERR_PROTO));
  return GS_OK;
}

static void on_write(uv_write_t *req, int status) {
  write_t *w = (write_t *)req;
  gs_h2_t *h = w->h;
  h->in_flight -= w->len;
  h->writes--;
  free(w->data);
  free(w);
  h->on_written(h, status);
}

/* Sends the gathered frames: what the socket takes now, then a queued
 * write of the rest (the buffer's memory moves into it). */
static int send_out(gs_h2_t *h, gs_error_t *err) {
  size_t len = h->out.len, done = 0;
  uv_buf_t buf = uv_buf_init(h->out.data, (unsigned)len);
  if (h->writes == 0) { /* nothing queued before it: order is kept */
    int n = uv_try_write(h->stream, &buf, 1);
    if (n < 0 && n != UV_EAGAIN)
      return gs_error_set(err, GS_ESYSTEM, "HTTP/2 write: %s", uv_strerror(n));
    done = n > 0 ? (size_t)n : 0;
  }
  if (done == len) {
    gs_buf_reset(&h->out);
    return GS_OK;
  }
  write_t *w = malloc(sizeof *w);
  if (!w)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  w->h = h;
  w->data = gs_buf_take(&h->out, &w->len);
  buf = uv_buf_init(w->data + done, (unsigned)(w->len - done));
  w->len -= done;
  int rc = uv_write(&w->req, h->stream, &buf, 1, on_write);
  if (rc != 0) {
    free(w->data);
    free(w);
    return gs_error_set(err, GS_ESYSTEM, "HTTP/2 write: %s", uv_strerror(rc));
  }
  h->writes++;
  h->in_flight += w->len;
  return GS_OK;
}

int gs_h2_flush(gs_h2_t *h, gs_error_t *err) {
  while (h->in_flight < GS_H2_HIGH_WATER) {
    while (h->out.len < GS_H2_HIGH_WATER - h->in_flight) {
      const uint8_t *chunk;
      ssize_t n = nghttp2_session_mem_send(h->session, &chunk);
      if (n < 0)
        return gs_error_set(err, GS_EPARSE, "HTTP/2: %s",
                            nghttp2_strerror((int)n));
      if (n == 0)
        break;
      if (gs_buf_add(&h->out, chunk, (size_t)n) != GS_OK)
        return gs_buf_error(&h->out, err);
    }
    if (h->out.len == 0)
      return GS_OK;
    int rc = send_out(h, err);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

bool gs_h2_finished(const gs_h2_t *h) {
  return h->writes == 0 && !nghttp2_session_want_read(h->session) &&
         !nghttp2_session_want_write(h->session);
}

void gs_h2_hdrs_clear(gs_h2_hdrs_t *h) {
  gs_buf_reset(&h->b);
  h->list_bytes = 0;
  h->n = 0;
}

int gs_h2_hdrs_add(gs_h2_hdrs_t *h, size_t max, const uint8_t *name,
                   size_t nlen, const uint8_t *value, size_t vlen) {
  if (h->list_bytes + nlen + vlen + 32 > max)
    return -1;
  uint8_t *p = gs_buf_reserve(&h->b, nlen + vlen + 2);
  if (!p)
    return -1;
  memcpy(p, name, nlen);
  p[nlen] = '\0';
  memcpy(p + nlen + 1, value, vlen);
  p[nlen + 1 + vlen] = '\0';
  gs_buf_commit(&h->b, nlen + vlen + 2);
  h->list_bytes += nlen + vlen + 32;
  h->n++;
  return 0;
}

nghttp2_nv *gs_h2_hdrs_nv(const gs_h2_hdrs_t *h, size_t first, size_t *n) {
  nghttp2_nv *nv = calloc(first + h->n + 1, sizeof *nv);
  const char *p = (const char *)h->b.data;
  *n = first;
  for (unsigned i = 0; nv && i < h->n; i++) {
    size_t nlen = strlen(p), vlen = strlen(p + nlen + 1);
    if (p[0] != ':' || strcmp(p, ":status") == 0 || strcmp(p, ":path") == 0 ||
        strcmp(p, ":authority") == 0)
      nv[(*n)++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)p + nlen + 1, nlen,
                                vlen, NGHTTP2_NV_FLAG_NONE};
    p += nlen + vlen + 2;
  }
  return nv;
}
