/* libyaml plumbing of the config loader: the event pass that refuses what a
 * mig-parted file never uses, syntax errors with their line and column, and
 * the message helpers every check shares. */
#include "config/config_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The format nests five levels deep; far deeper input is not a config and
 * only costs libyaml memory. */
#define CONFIG_MAX_DEPTH 16
#define SHOWN_MAX GS__CONFIG_SHOWN_MAX

typedef gs__config_loader_t loader_t;

/* ---- messages ---------------------------------------------------------- */

int gs__config_fail_at(const loader_t *ld, int code, yaml_mark_t mark,
                       const char *fmt, ...) {
  char what[800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return gs_error_set(ld->err, code, "%s:%zu:%zu: %s", ld->source,
                      mark.line + 1, mark.column + 1, what);
}

int gs__config_nomem(const loader_t *ld) {
  return gs_error_set(ld->err, GS_ENOMEM, "%s: out of memory", ld->source);
}

/* Decodes one UTF-8 character; returns its length, 0 if malformed. */
static size_t utf8_next(const unsigned char *p, size_t left, uint32_t *c) {
  size_t n = *p < 0x80                 ? 1
             : *p >= 0xC2 && *p < 0xE0 ? 2
             : *p >= 0xE0 && *p < 0xF0 ? 3
             : *p >= 0xF0 && *p < 0xF5 ? 4
                                       : 0;
  if (n == 0 || n > left)
    return 0;
  *c = n == 1 ? *p : *p & (0x7Fu >> n);
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    *c = *c << 6 | (p[i] & 0x3Fu);
  }
  return n;
}

/* Control characters (C0, DEL, C1), Unicode line and paragraph separators
 * (YAML reads them as line breaks), surrogates and noncharacters that YAML
 * refuses but JSON writers pass through raw. */
static bool char_ok(uint32_t c) {
  return c >= 0x20 && !(c >= 0x7F && c <= 0x9F) && c != 0x2028 && c != 0x2029 &&
         !(c >= 0xD800 && c <= 0xDFFF) && c != 0xFFFE && c != 0xFFFF &&
         c <= 0x10FFFF;
}

bool gs__config_name_ok(const char *name, size_t len) {
  const unsigned char *p = (const unsigned char *)name;
  size_t n;
  for (size_t i = 0; i < len; i += n) {
    uint32_t c;
    n = utf8_next(p + i, len - i, &c);
    if (n == 0 || !char_ok(c))
      return false;
  }
  return true;
}

bool gs__config_shown(char out[SHOWN_MAX + 1], const char *text, size_t len) {
  const unsigned char *p = (const unsigned char *)text;
  size_t i = 0, used = 0;
  while (i < len) {
    uint32_t c;
    size_t n = utf8_next(p + i, len - i, &c);
    bool ok = n > 0 && char_ok(c);
    if (used + (ok ? n : 1) > SHOWN_MAX)
      break;
    if (ok)
      memcpy(out + used, p + i, n);
    else
      out[used] = '?';
    used += ok ? n : 1;
    i += n ? n : 1;
  }
  out[used] = '\0';
  return i >= len;
}

const char *gs__config_describe(const yaml_node_t *node, char *buf,
                                size_t size) {
  if (node->type == YAML_MAPPING_NODE)
    return "a mapping";
  if (node->type == YAML_SEQUENCE_NODE)
    return "a list";
  bool plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (plain && node->data.scalar.length == 0)
    return "an empty value";
  char text[SHOWN_MAX + 1];
  bool whole = gs__config_shown(text, (const char *)node->data.scalar.value,
                                node->data.scalar.length);
  snprintf(buf, size, "%s'%s%s'", plain ? "" : "the quoted string ", text,
           whole ? "" : "...");
  return buf;
}

/* ---- event pass -------------------------------------------------------- */

/* libyaml reports reader errors (bad UTF-8, control characters) as a byte
 * offset only; count lines up to it. Columns count characters. */
static yaml_mark_t mark_of_offset(const char *data, size_t len, size_t off) {
  yaml_mark_t mark = {off, 0, 0};
  for (size_t i = 0; i < off && i < len; i++) {
    if (data[i] == '\n') {
      mark.line++;
      mark.column = 0;
    } else if (((unsigned char)data[i] & 0xC0) != 0x80) {
      mark.column++;
    }
  }
  return mark;
}

int gs__config_syntax_error(const loader_t *ld, const yaml_parser_t *parser,
                            const char *data, size_t len) {
  const char *problem = parser->problem ? parser->problem : "malformed YAML";
  if (parser->error == YAML_MEMORY_ERROR)
    return gs__config_nomem(ld);
  if (parser->error == YAML_READER_ERROR) {
    yaml_mark_t mark = mark_of_offset(data, len, parser->problem_offset);
    if (parser->problem_value != -1)
      return gs__config_fail_at(ld, GS_EPARSE, mark, "%s (0x%02X)", problem,
                                (unsigned)parser->problem_value);
    return gs__config_fail_at(ld, GS_EPARSE, mark, "%s", problem);
  }
  if (parser->context)
    return gs__config_fail_at(ld, GS_EPARSE, parser->problem_mark,
                              "%s (%s at %zu:%zu)", problem, parser->context,
                              parser->context_mark.line + 1,
                              parser->context_mark.column + 1);
  return gs__config_fail_at(ld, GS_EPARSE, parser->problem_mark, "%s", problem);
}

/* libyaml decodes %XX escapes in tags, so a tag is shown sanitized. */
static int check_properties(const loader_t *ld, const yaml_event_t *ev,
                            const yaml_char_t *anchor, const yaml_char_t *tag) {
  char shown[SHOWN_MAX + 1];
  if (anchor)
    return gs__config_fail_at(
        ld, GS_EINVAL, ev->start_mark,
        "anchor '&%.*s' is not allowed (mig-parted configs use no "
        "anchors or aliases)",
        SHOWN_MAX, (const char *)anchor);
  if (tag) {
    gs__config_shown(shown, (const char *)tag, strlen((const char *)tag));
    return gs__config_fail_at(ld, GS_EINVAL, ev->start_mark,
                              "tag '%s' is not allowed (values take their "
                              "default types; write them plainly)",
                              shown);
  }
  return GS_OK;
}

static int check_event(const loader_t *ld, const yaml_event_t *ev,
                       unsigned *depth, unsigned *documents) {
  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (++*documents > 1)
      return gs__config_fail_at(
          ld, GS_EINVAL, ev->start_mark,
          "a second YAML document; a config is one document");
    return GS_OK;
  case YAML_ALIAS_EVENT:
    return gs__config_fail_at(
        ld, GS_EINVAL, ev->start_mark,
        "alias '*%.*s' is not allowed (mig-parted configs use no "
        "anchors or aliases)",
        SHOWN_MAX, (const char *)ev->data.alias.anchor);
  case YAML_SCALAR_EVENT:
    return check_properties(ld, ev, ev->data.scalar.anchor,
                            ev->data.scalar.tag);
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT:
    if (++*depth > CONFIG_MAX_DEPTH)
      return gs__config_fail_at(ld, GS_ELIMIT, ev->start_mark,
                                "nested deeper than %d levels",
                                CONFIG_MAX_DEPTH);
    if (ev->type == YAML_SEQUENCE_START_EVENT)
      return check_properties(ld, ev, ev->data.sequence_start.anchor,
                              ev->data.sequence_start.tag);
    return check_properties(ld, ev, ev->data.mapping_start.anchor,
                            ev->data.mapping_start.tag);
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    --*depth;
    return GS_OK;
  default:
    return GS_OK;
  }
}

int gs__config_scan_events(const loader_t *ld, const char *data, size_t len) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return gs__config_nomem(ld);
  yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
  int rc = GS_OK;
  unsigned depth = 0, documents = 0;
  bool done = false;
  while (rc == GS_OK && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      rc = gs__config_syntax_error(ld, &parser, data, len);
      break;
    }
    rc = check_event(ld, &ev, &depth, &documents);
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return rc;
}
