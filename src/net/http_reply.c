/* The HTTP/1.1 response reader, over http-parser, with no sockets: bytes
 * in, one whole response out (status, Content-Type, KServe's
 * Inference-Header-Content-Length, the body under a hard limit). The one
 * reader behind the router's upstream connections, perf and the CLI. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"

enum { H_OTHER = 0, H_CONTENT_TYPE, H_INFER_LEN };

static gs__http_reply_t *reply_of(http_parser *p) {
  return p->data;
}

static void end_value(gs__http_reply_t *r) {
  r->value[r->value_len] = '\0';
  if (r->header == H_CONTENT_TYPE) {
    snprintf(r->content_type, sizeof r->content_type, "%s", r->value);
  } else if (r->header == H_INFER_LEN) {
    char *end;
    long long v = strtoll(r->value, &end, 10);
    r->infer_header_len = end != r->value && !*end && v >= 0 ? v : -1;
  }
  r->header = H_OTHER;
  r->value_len = 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  gs__http_reply_t *r = reply_of(p);
  if (r->value_len || r->header != H_OTHER)
    end_value(r);
  for (size_t i = 0; i < len && r->field_len + 1 < sizeof r->field; i++)
    r->field[r->field_len++] = (char)(at[i] | 0x20);
  r->field[r->field_len] = '\0';
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  gs__http_reply_t *r = reply_of(p);
  if (r->field_len) {
    r->header = strcmp(r->field, "content-type") == 0 ? H_CONTENT_TYPE
                : strcmp(r->field, "inference-header-content-length") == 0
                    ? H_INFER_LEN
                    : H_OTHER;
    r->field_len = 0;
  }
  for (size_t i = 0; i < len && r->value_len + 1 < sizeof r->value; i++)
    r->value[r->value_len++] = at[i];
  return 0;
}

static int on_headers_complete(http_parser *p) {
  gs__http_reply_t *r = reply_of(p);
  if (r->value_len || r->header != H_OTHER)
    end_value(r);
  r->status = (int)p->status_code;
  /* RFC 9110 15: three digits, 100 and up; "020" is no status. */
  if (r->status < 100) {
    r->error = GS_EPARSE;
    return -1;
  }
  /* One allocation for a body of known length within the limit (a larger
   * one fails as its bytes arrive, or is truncated). */
  if (p->content_length != ULLONG_MAX && p->content_length > 0 &&
      p->content_length <= r->body.max)
    gs_buf_reserve(&r->body, (size_t)p->content_length); /* sticky */
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  gs__http_reply_t *r = reply_of(p);
  if (r->truncate && len > r->body.max - r->body.len)
    len = r->body.max - r->body.len;
  int rc = gs_buf_add(&r->body, at, len);
  if (rc != GS_OK) {
    r->error = rc;
    return -1;
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  gs__http_reply_t *r = reply_of(p);
  r->complete = true;
  r->keep_alive = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1); /* one response: what follows is not ours */
  return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void gs__http_reply_init(gs__http_reply_t *r, gs_limit_t limit, size_t max) {
  memset(r, 0, sizeof *r);
  gs_buf_init_max(&r->body, limit, max ? max : gs_limit_bytes(limit));
  gs__http_reply_reset(r);
}

void gs__http_reply_reset(gs__http_reply_t *r) {
  http_parser_init(&r->parser, HTTP_RESPONSE);
  r->parser.data = r;
  gs_buf_reset(&r->body);
  r->status = 0;
  r->content_type[0] = '\0';
  r->infer_header_len = -1;
  r->complete = r->keep_alive = r->got_bytes = false;
  r->error = GS_OK;
  r->field_len = r->value_len = 0;
  r->header = H_OTHER;
}

void gs__http_reply_limit(gs__http_reply_t *r, size_t max, bool truncate) {
  r->body.max = max;
  r->truncate = truncate;
}

void gs__http_reply_release(gs__http_reply_t *r) {
  gs_buf_free(&r->body);
}

size_t gs__http_reply_feed(gs__http_reply_t *r, const char *data, size_t len) {
  if (r->complete || r->error)
    return 0;
  r->got_bytes = r->got_bytes || len > 0;
  size_t n = http_parser_execute(&r->parser, &settings, data, len);
  if (r->complete)
    return n;
  if (!r->error && (n != len || HTTP_PARSER_ERRNO(&r->parser) != HPE_OK))
    r->error = GS_EPARSE;
  else if (!r->error && len == 0) /* closed before the response ended */
    r->error = GS_EPARSE;
  return n;
}

int gs__http_reply_error(const gs__http_reply_t *r, gs_error_t *err) {
  if (r->error == GS_ELIMIT || r->error == GS_ENOMEM)
    return gs_buf_error(&r->body, err);
  if (r->error == GS_EPARSE && r->status > 0 && r->status < 100)
    return gs_error_set(err, GS_EPARSE,
                        "malformed HTTP response: status code %d is not "
                        "100 to 999",
                        r->status);
  if (r->error == GS_EPARSE && HTTP_PARSER_ERRNO(&r->parser) != HPE_OK)
    return gs_error_set(err, GS_EPARSE, "malformed HTTP response: %s",
                        http_errno_description(HTTP_PARSER_ERRNO(&r->parser)));
  if (r->error)
    return gs_error_set(err, r->error,
                        "the connection closed in the middle of a response");
  return GS_OK;
}

void gs__http_reply_take(gs__http_reply_t *r, gs__http_response_t *resp) {
  resp->status = r->status;
  resp->body = NULL;
  resp->body_len = 0;
  if (r->body.len > 0)
    resp->body = gs_buf_take(&r->body, &resp->body_len);
  resp->infer_header_len = r->infer_header_len;
  resp->content_type = r->content_type[0] ? r->content_type : NULL;
}
