/* JSON text written straight into a gs_buf, for the answers written on
 * every request (the infer response header), where building a jansson tree
 * and dumping it cost most of the worker's time per request. The text is
 * what jansson's json_dumps(JSON_COMPACT) writes for the same values:
 * strings checked as UTF-8 and escaped the same way, reals as "%.17g" with
 * a ".0" or exponent always present. Parsing stays with jansson. */
#ifndef GS_CORE_JSON_OUT_H
#define GS_CORE_JSON_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* A JSON string: '"', s escaped, '"'. Returns GS_EINVAL, writing nothing,
 * when s is not valid UTF-8 (JSON text cannot carry it); the buffer's
 * failure otherwise (GS_OK, GS_ENOMEM, GS_ELIMIT). */
int gs_json_str(gs_buf_t *b, const char *s, size_t n);
/* The same, but what is not UTF-8 is written as U+FFFD (one per byte
 * that starts no valid sequence) instead of refused: for messages that
 * quote a client's bytes. */
int gs_json_str_lossy(gs_buf_t *b, const char *s, size_t n);
/* gs_json_str for a NUL-terminated string. */
int gs_json_strz(gs_buf_t *b, const char *s);
/* "key": (a string key written as above, then the colon). */
int gs_json_key(gs_buf_t *b, const char *key);
/* Numbers: a signed or unsigned integer, a real (non-finite: null). */
int gs_json_int(gs_buf_t *b, int64_t v);
int gs_json_uint(gs_buf_t *b, uint64_t v);
int gs_json_real(gs_buf_t *b, double v);
int gs_json_bool(gs_buf_t *b, bool v);

/* True when s[0..n) is valid UTF-8 (no overlong forms, surrogates or code
 * points above U+10FFFF), as jansson requires of every string. */
bool gs_json_utf8_valid(const char *s, size_t n);

#endif
