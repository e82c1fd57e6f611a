/* A jansson document as YAML through libyaml's emitter (the CDI spec's
 * other form): strings are quoted where a plain scalar would read as
 * another type, numbers and booleans stay plain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/buf.h"
#include "gpuslice/k8s.h"

static int on_write(void *data, unsigned char *buffer, size_t size) {
  return gs_buf_add(data, buffer, size) == GS_OK;
}

static int scalar(yaml_emitter_t *em, const char *text, bool quoted) {
  yaml_event_t ev;
  yaml_scalar_style_t style =
      quoted ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE;
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)text,
                                    (int)strlen(text), !quoted, quoted, style))
    return 0;
  return yaml_emitter_emit(em, &ev);
}

static int emit_value(yaml_emitter_t *em, json_t *v);

static int emit_object(yaml_emitter_t *em, json_t *v) {
  yaml_event_t ev;
  const char *key;
  json_t *item;
  if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                           YAML_BLOCK_MAPPING_STYLE) ||
      !yaml_emitter_emit(em, &ev))
    return 0;
  json_object_foreach(v, key, item) {
    if (!scalar(em, key, false) || !emit_value(em, item))
      return 0;
  }
  return yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
}

static int emit_array(yaml_emitter_t *em, json_t *v) {
  yaml_event_t ev;
  size_t i;
  json_t *item;
  if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                            YAML_BLOCK_SEQUENCE_STYLE) ||
      !yaml_emitter_emit(em, &ev))
    return 0;
  json_array_foreach(v, i, item) {
    if (!emit_value(em, item))
      return 0;
  }
  return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
}

static int emit_value(yaml_emitter_t *em, json_t *v) {
  char num[64];
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return emit_object(em, v);
  case JSON_ARRAY:
    return emit_array(em, v);
  case JSON_STRING: /* always quoted: "0:1" or "1.10" stay strings */
    return scalar(em, json_string_value(v), true);
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return scalar(em, num, false);
  case JSON_REAL:
    snprintf(num, sizeof num, "%.17g", json_real_value(v));
    return scalar(em, num, false);
  case JSON_TRUE:
    return scalar(em, "true", false);
  case JSON_FALSE:
    return scalar(em, "false", false);
  default:
    return scalar(em, "null", false);
  }
}

int gs_cdi_yaml(json_t *doc, char **text, size_t *len, gs_error_t *err) {
  yaml_emitter_t em;
  yaml_event_t ev;
  gs_buf_t o;
  gs_buf_init(&o, GS_LIMIT_TEXT);
  *text = NULL;
  *len = 0;
  if (!yaml_emitter_initialize(&em))
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  yaml_emitter_set_output(&em, on_write, &o);
  yaml_emitter_set_unicode(&em, 1);
  int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
           yaml_emitter_emit(&em, &ev) &&
           yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
           yaml_emitter_emit(&em, &ev) && emit_value(&em, doc) &&
           yaml_document_end_event_initialize(&ev, 1) &&
           yaml_emitter_emit(&em, &ev) &&
           yaml_stream_end_event_initialize(&ev) &&
           yaml_emitter_emit(&em, &ev) && yaml_emitter_flush(&em);
  char problem[128];
  snprintf(problem, sizeof problem, "%s",
           em.problem ? em.problem : "out of memory");
  yaml_emitter_delete(&em);
  if (o.failed) { /* too large, or out of memory */
    int rc = gs_buf_error(&o, err);
    gs_error_prefix(err, "writing the CDI spec as YAML: ");
    gs_buf_free(&o);
    return rc;
  }
  if (!ok || !o.data) {
    gs_buf_free(&o);
    return gs_error_set(err, GS_EINVAL, "writing the CDI spec as YAML: %s",
                        problem);
  }
  *text = gs_buf_take(&o, len);
  return GS_OK;
}
