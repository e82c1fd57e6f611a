/* The HTTP/1.1 request reader and response writer of every server (the
 * worker's, the router's front), over http-parser, with no sockets: bytes
 * in, one whole request out at a time. It pauses after each request so
 * that pipelined requests are answered in order, and enforces the size
 * limits on URL, headers and body (GS_LIMITS). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_out.h"
#include "net/http.h"

enum {
  HDR_OTHER = 0,
  HDR_INFER_LEN,
  HDR_EXPECT,
  HDR_CONTENT_ENCODING,
  HDR_ACCEPT_ENCODING
};

static gs__http_reader_t *reader_of(http_parser *p) {
  return p->data;
}

static int fail(gs__http_reader_t *r, int status, const char *msg) {
  if (!r->error_status) {
    r->error_status = status;
    r->error_msg = msg;
  }
  return -1;
}

/* Whether the path is KServe's infer (".../infer", any query after it):
 * Triton compresses only infer responses, and its clients read every
 * other answer as plain JSON whatever they sent as Accept-Encoding. */
static bool infer_url(const char *url) {
  size_t n = strcspn(url, "?");
  return n >= 6 && memcmp(url + n - 6, "/infer", 6) == 0;
}

static int fail_body_limit(gs__http_reader_t *r) {
  snprintf(r->error_text, sizeof r->error_text,
           "request body is larger than the limit (%zu bytes)", r->max_body);
  return fail(r, 413, r->error_text);
}

static int on_message_begin(http_parser *p) {
  gs__http_reader_t *r = reader_of(p);
  r->header_bytes = 0;
  r->req.infer_header_len = -1;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  gs__http_reader_t *r = reader_of(p);
  int rc = gs_buf_add(&r->url, at, len);
  if (rc == GS_ELIMIT)
    return fail(r, 414, "request URL is longer than 8 KiB");
  return rc == GS_OK ? 0 : fail(r, 500, "out of memory");
}

static int count_header(gs__http_reader_t *r, size_t len) {
  r->header_bytes += len;
  if (r->header_bytes > gs_limit_bytes(GS_LIMIT_HTTP_HEADERS))
    return fail(r, 431, "request headers are larger than 16 KiB");
  return 0;
}

/* Finishes the header whose value was just read. */
static int end_header(gs__http_reader_t *r) {
  if (!r->in_value)
    return 0;
  r->in_value = false;
  r->value[r->value_len] = '\0';
  if (r->header_kind == HDR_EXPECT) {
    r->expect_continue = strcmp(r->value, "100-continue") == 0;
  } else if (r->header_kind == HDR_INFER_LEN) {
    char *end;
    long long v = strtoll(r->value, &end, 10);
    /* 23 characters at most, as when the value buffer held 24 */
    if (r->value_too_long || r->value_len > 23 || end == r->value || *end ||
        v < 0)
      return fail(r, 400,
                  "Inference-Header-Content-Length is not a "
                  "non-negative number");
    r->req.infer_header_len = v;
  } else if (r->header_kind == HDR_CONTENT_ENCODING) {
    r->req.content_encoding = r->value_too_long
                                  ? GS__ENC_UNKNOWN
                                  : gs__encoding_parse(r->value, r->value_len);
  } else if (r->header_kind == HDR_ACCEPT_ENCODING && !r->value_too_long) {
    r->req.accept_encoding = gs__encoding_accepted(r->value, r->value_len);
  }
  r->field_len = 0;
  r->value_len = 0;
  r->value_too_long = false;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  gs__http_reader_t *r = reader_of(p);
  if (count_header(r, len) != 0 || end_header(r) != 0)
    return -1;
  for (size_t i = 0; i < len && r->field_len + 1 < sizeof r->field; i++) {
    char c = at[i];
    r->field[r->field_len++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  r->field[r->field_len] = '\0';
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  gs__http_reader_t *r = reader_of(p);
  if (count_header(r, len) != 0)
    return -1;
  if (!r->in_value) {
    r->in_value = true;
    r->header_kind =
        strcmp(r->field, "inference-header-content-length") == 0 ? HDR_INFER_LEN
        : strcmp(r->field, "expect") == 0                        ? HDR_EXPECT
        : strcmp(r->field, "content-encoding") == 0 ? HDR_CONTENT_ENCODING
        : strcmp(r->field, "accept-encoding") == 0  ? HDR_ACCEPT_ENCODING
                                                    : HDR_OTHER;
  }
  if (r->header_kind == HDR_OTHER)
    return 0;
  if (r->value_len + len >= sizeof r->value) {
    r->value_too_long = true;
    return 0;
  }
  memcpy(r->value + r->value_len, at, len);
  r->value_len += len;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  gs__http_reader_t *r = reader_of(p);
  if (end_header(r) != 0)
    return -1;
  if (!r->url.data)
    return fail(r, 400, "request has no URL");
  r->req.url = gs_buf_take(&r->url, &r->req.url_len);
  if (!infer_url(r->req.url))
    r->req.accept_encoding = GS__ENC_IDENTITY;
  /* ULLONG_MAX means no Content-Length (chunked or none). */
  if (p->content_length != ULLONG_MAX && p->content_length > r->max_body)
    return fail_body_limit(r);
  if (r->req.content_encoding == GS__ENC_UNKNOWN)
    return fail(r, 400,
                "unsupported Content-Encoding (gzip, deflate and identity "
                "are supported)");
  r->req.method = (enum http_method)p->method;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  gs__http_reader_t *r = reader_of(p);
  /* One allocation for a body of known length (never above the limit: a
   * chunk's announced size is not checked until it arrives). By this
   * callback http-parser has counted content_length down by len. */
  if (!r->body.data && p->content_length != ULLONG_MAX &&
      p->content_length < r->max_body - len)
    gs_buf_reserve(&r->body, (size_t)p->content_length + len); /* sticky */
  int rc = gs_buf_add(&r->body, at, len);
  if (rc == GS_ELIMIT)
    return fail_body_limit(r);
  return rc == GS_OK ? 0 : fail(r, 500, "out of memory");
}

/* Replaces a gzip or deflate body by its decoded bytes, within the body
 * limit: a bomb is a 413 naming the limit, corrupt data a 400. */
static int decode_body(gs__http_reader_t *r) {
  gs_buf_t plain;
  gs_error_t err = {0};
  gs_buf_init_max(&plain, GS_LIMIT_HTTP_BODY, r->max_body);
  int rc = gs__decompress(r->req.content_encoding, r->body.data, r->body.len,
                          &plain, &err);
  if (rc != GS_OK) {
    gs_buf_free(&plain);
    snprintf(r->error_text, sizeof r->error_text,
             "cannot decode the request body (Content-Encoding %s): %.120s",
             gs__encoding_name(r->req.content_encoding), err.msg);
    return fail(r,
                rc == GS_ELIMIT   ? 413
                : rc == GS_ENOMEM ? 500
                                  : 400,
                r->error_text);
  }
  gs_buf_free(&r->body);
  r->body = plain;
  return 0;
}

static int on_message_complete(http_parser *p) {
  gs__http_reader_t *r = reader_of(p);
  gs__http_request_t *q = &r->req;
  if (r->body.data && q->content_encoding != GS__ENC_IDENTITY &&
      decode_body(r) != 0)
    return -1;
  if (r->body.data) { /* NULL without a body, as before */
    q->body_cap = r->body.cap;
    q->body = gs_buf_take(&r->body, &q->body_len);
  }
  q->keep_alive = http_should_keep_alive(p) != 0;
  r->complete = true;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void gs__http_reader_init(gs__http_reader_t *r, size_t max_body) {
  memset(r, 0, sizeof *r);
  http_parser_init(&r->parser, HTTP_REQUEST);
  r->parser.data = r;
  r->max_body = max_body;
  r->req.infer_header_len = -1;
  gs_buf_init(&r->url, GS_LIMIT_HTTP_URL);
  gs_buf_init_max(&r->body, GS_LIMIT_HTTP_BODY, max_body);
}

static void request_release(gs__http_request_t *q) {
  free(q->url);
  free(q->body);
  memset(q, 0, sizeof *q);
  q->infer_header_len = -1;
}

void gs__http_reader_release(gs__http_reader_t *r) {
  request_release(&r->req);
  gs_buf_free(&r->url);
  gs_buf_free(&r->body);
}

size_t gs__http_reader_feed(gs__http_reader_t *r, const char *data,
                            size_t len) {
  if (r->complete || r->error_status)
    return 0;
  size_t n = http_parser_execute(&r->parser, &settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  if (r->complete)
    return n;
  if (e != HPE_OK && !r->error_status)
    fail(r, 400, http_errno_description(e));
  else if (len == 0 && !r->error_status &&
           r->header_bytes + r->url.len + r->req.url_len)
    fail(r, 400, "connection closed in the middle of a request");
  return n;
}

void gs__http_reader_next(gs__http_reader_t *r) {
  request_release(&r->req);
  r->header_bytes = 0; /* a close before the next request is no error */
  gs_buf_reset(&r->url);
  gs_buf_reset(&r->body);
  r->complete = false;
  r->expect_continue = false;
  http_parser_pause(&r->parser, 0);
}

void gs__http_response_release(gs__http_response_t *resp) {
  free(resp->body);
  memset(resp, 0, sizeof *resp);
  resp->infer_header_len = -1;
}

void gs__http_response_json(gs__http_response_t *resp, int status,
                            json_t *json) {
  gs__http_response_release(resp);
  resp->status = status;
  resp->body = json ? json_dumps(json, JSON_COMPACT) : NULL;
  json_decref(json);
  if (json && !resp->body) {
    resp->status = 500;
    return;
  }
  resp->body_len = resp->body ? strlen(resp->body) : 0;
  resp->content_type = "application/json";
}

/* {"error": msg}; a message quoting a client's bytes that are not UTF-8
 * keeps them as U+FFFD (json_pack refused the whole message: an empty
 * body). */
void gs__http_response_error(gs__http_response_t *resp, int status,
                             const char *msg) {
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_TEXT);
  gs_buf_adds(&b, "{\"error\":");
  gs_json_str_lossy(&b, msg, strlen(msg));
  gs_buf_add(&b, "}", 1);
  gs__http_response_release(resp);
  resp->status = b.failed ? 500 : status;
  resp->body = b.failed ? NULL : gs_buf_take(&b, &resp->body_len);
  gs_buf_free(&b);
  resp->content_type = "application/json";
}

const char *gs__http_reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 413:
    return "Payload Too Large";
  case 414:
    return "URI Too Long";
  case 431:
    return "Request Header Fields Too Large";
  case 499: /* nginx's: the answer to a client that left */
    return "Client Closed Request";
  case 501:
    return "Not Implemented";
  case 503:
    return "Service Unavailable";
  default:
    return status >= 500 ? "Internal Server Error" : "Bad Request";
  }
}

int gs__http_response_head(const gs__http_response_t *resp, bool keep_alive,
                           char *buf, size_t size) {
  int n = snprintf(buf, size, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n",
                   resp->status, gs__http_reason(resp->status), resp->body_len);
  if (n > 0 && resp->content_type && resp->body_len)
    n += snprintf(buf + n, size - (size_t)n, "Content-Type: %s\r\n",
                  resp->content_type);
  if (n > 0 && resp->content_encoding)
    n += snprintf(buf + n, size - (size_t)n, "Content-Encoding: %s\r\n",
                  resp->content_encoding);
  if (n > 0 && resp->infer_header_len >= 0)
    n += snprintf(buf + n, size - (size_t)n,
                  "Inference-Header-Content-Length: %lld\r\n",
                  resp->infer_header_len);
  if (n > 0)
    n += snprintf(buf + n, size - (size_t)n, "%s\r\n",
                  keep_alive ? "" : "Connection: close\r\n");
  return n > 0 && (size_t)n < size ? n : -1;
}
