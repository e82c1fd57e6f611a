/* Writes a config back as a mig-parted v1 document: YAML through libyaml's
 * event emitter (block style, quoted profile names, as mig-parted files are
 * written) or JSON through jansson, keys in the same order. */
#include "config/config_int.h"
#include "core/buf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static bool entry_ok(const gs_config_entry_t *entry) {
  if ((!entry->all_devices && entry->n_devices == 0) ||
      entry->n_devices > GS_CONFIG_MAX_DEVICES ||
      entry->n_filters > GS_CONFIG_MAX_FILTERS ||
      entry->n_mig_devices > GS_CONFIG_MAX_MIG_DEVICES)
    return false;
  for (unsigned i = 0; !entry->all_devices && i < entry->n_devices; i++)
    if (entry->devices[i] >= GS_CONFIG_MAX_DEVICES)
      return false;
  for (unsigned i = 0; i < entry->n_mig_devices; i++) {
    const gs_config_mig_device_t *dev = &entry->mig_devices[i];
    size_t len = strnlen(dev->name, sizeof dev->name);
    if (len == 0 || len == sizeof dev->name ||
        !gs__config_name_ok(dev->name, len) || dev->count > GS_CONFIG_MAX_COUNT)
      return false;
  }
  return true;
}

/* A config built by hand (not loaded) is checked against the loader's value
 * rules, so that what is written loads back; the table bounds also keep the
 * writers inside the arrays. Repeated names are not looked for. */
static int check_config(const gs_config_t *cfg, gs_error_t *err) {
  if (!cfg || cfg->n_sets == 0 || !cfg->sets)
    return gs_error_set(err, GS_EINVAL, "cannot write a config with no sets");
  for (unsigned s = 0; s < cfg->n_sets; s++) {
    const gs_config_set_t *set = &cfg->sets[s];
    size_t len = set->name ? strlen(set->name) : 0;
    if (len == 0 || len > GS__CONFIG_NAME_MAX ||
        !gs__config_name_ok(set->name, len) || set->n_entries == 0 ||
        !set->entries)
      return gs_error_set(err, GS_EINVAL,
                          "cannot write config set %u: it needs a printable "
                          "name of at most %d bytes and at least one entry",
                          s + 1, GS__CONFIG_NAME_MAX);
    for (unsigned e = 0; e < set->n_entries; e++)
      if (!entry_ok(&set->entries[e]))
        return gs_error_set(err, GS_EINVAL,
                            "cannot write config '%s' entry %u: devices, "
                            "filters or mig-devices out of range",
                            set->name, e + 1);
  }
  return GS_OK;
}

/* ---- YAML -------------------------------------------------------------- */

/* libyaml's write handler: 1 on success, 0 stops the emitter. */
static int outbuf_write(void *ctx, unsigned char *bytes, size_t size) {
  return gs_buf_add(ctx, bytes, size) == GS_OK;
}

/* Implicit both ways: the emitter may quote where plain text would misread,
 * and never writes a tag (the loader refuses tags). */
static int emit_scalar(yaml_emitter_t *em, const char *text,
                       yaml_scalar_style_t style) {
  yaml_event_t ev;
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)text,
                                    (int)strlen(text), 1, 1, style))
    return 0;
  return yaml_emitter_emit(em, &ev);
}

static int emit_plain(yaml_emitter_t *em, const char *text) {
  return emit_scalar(em, text, YAML_PLAIN_SCALAR_STYLE);
}

static int emit_start(yaml_emitter_t *em, bool mapping, bool flow) {
  yaml_event_t ev;
  int ok =
      mapping
          ? yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                flow ? YAML_FLOW_MAPPING_STYLE
                                                     : YAML_BLOCK_MAPPING_STYLE)
          : yaml_sequence_start_event_initialize(
                &ev, NULL, NULL, 1,
                flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
  return ok && yaml_emitter_emit(em, &ev);
}

static int emit_end(yaml_emitter_t *em, bool mapping) {
  yaml_event_t ev;
  int ok = mapping ? yaml_mapping_end_event_initialize(&ev)
                   : yaml_sequence_end_event_initialize(&ev);
  return ok && yaml_emitter_emit(em, &ev);
}

static void filter_text(uint32_t id, char buf[11]) {
  snprintf(buf, 11, "0x%08X", (unsigned)id);
}

/* One filter is written as a string, several as a list: the struct does not
 * record which form the file used, and both load the same. */
static int emit_filters(yaml_emitter_t *em, const gs_config_entry_t *entry) {
  char text[11];
  int ok = emit_plain(em, "device-filter");
  if (entry->n_filters == 1) {
    filter_text(entry->device_filter[0], text);
    return ok && emit_scalar(em, text, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
  }
  ok = ok && emit_start(em, false, true);
  for (unsigned i = 0; ok && i < entry->n_filters; i++) {
    filter_text(entry->device_filter[i], text);
    ok = emit_scalar(em, text, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
  }
  return ok && emit_end(em, false);
}

static int emit_entry(yaml_emitter_t *em, const gs_config_entry_t *entry) {
  char num[16];
  int ok = emit_start(em, true, false) && emit_plain(em, "devices");
  if (entry->all_devices) {
    ok = ok && emit_plain(em, "all");
  } else {
    ok = ok && emit_start(em, false, true);
    for (unsigned i = 0; ok && i < entry->n_devices; i++) {
      snprintf(num, sizeof num, "%u", entry->devices[i]);
      ok = emit_plain(em, num);
    }
    ok = ok && emit_end(em, false);
  }
  if (entry->n_filters > 0)
    ok = ok && emit_filters(em, entry);
  ok = ok && emit_plain(em, "mig-enabled") &&
       emit_plain(em, entry->mig_enabled ? "true" : "false");
  if (entry->mig_enabled) {
    ok = ok && emit_plain(em, "mig-devices") && emit_start(em, true, false);
    for (unsigned i = 0; ok && i < entry->n_mig_devices; i++) {
      const gs_config_mig_device_t *dev = &entry->mig_devices[i];
      snprintf(num, sizeof num, "%u", dev->count);
      ok = emit_scalar(em, dev->name, YAML_DOUBLE_QUOTED_SCALAR_STYLE) &&
           emit_plain(em, num);
    }
    ok = ok && emit_end(em, true);
  }
  return ok && emit_end(em, true);
}

static int emit_document(yaml_emitter_t *em, const gs_config_t *cfg) {
  yaml_event_t ev;
  int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
           yaml_emitter_emit(em, &ev);
  ok = ok && yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
       yaml_emitter_emit(em, &ev);
  ok = ok && emit_start(em, true, false) && emit_plain(em, "version") &&
       emit_plain(em, "v1") && emit_plain(em, "mig-configs") &&
       emit_start(em, true, false);
  for (unsigned s = 0; ok && s < cfg->n_sets; s++) {
    const gs_config_set_t *set = &cfg->sets[s];
    ok = emit_scalar(em, set->name, YAML_ANY_SCALAR_STYLE) &&
         emit_start(em, false, false);
    for (unsigned e = 0; ok && e < set->n_entries; e++)
      ok = emit_entry(em, &set->entries[e]);
    ok = ok && emit_end(em, false);
  }
  ok = ok && emit_end(em, true) && emit_end(em, true);
  ok = ok && yaml_document_end_event_initialize(&ev, 1) &&
       yaml_emitter_emit(em, &ev);
  return ok && yaml_stream_end_event_initialize(&ev) &&
         yaml_emitter_emit(em, &ev);
}

static int emit_yaml(const gs_config_t *cfg, char **out, size_t *len,
                     gs_error_t *err) {
  yaml_emitter_t em;
  gs_buf_t buf;
  gs_buf_init(&buf, GS_LIMIT_TEXT);
  if (!yaml_emitter_initialize(&em))
    return gs_error_set(err, GS_ENOMEM, "writing config: out of memory");
  yaml_emitter_set_output(&em, outbuf_write, &buf);
  yaml_emitter_set_unicode(&em, 1);
  int rc = GS_OK;
  if (!emit_document(&em, cfg)) {
    if (buf.failed) {
      rc = gs_buf_error(&buf, err);
      gs_error_prefix(err, "writing config: ");
    } else if (em.error == YAML_EMITTER_ERROR)
      rc = gs_error_set(err, GS_EINVAL, "cannot write config as YAML: %s",
                        em.problem ? em.problem : "emitter failed");
    else
      rc = gs_error_set(err, GS_ENOMEM, "writing config: out of memory");
  }
  yaml_emitter_delete(&em);
  if (rc == GS_OK && !(*out = gs_buf_take(&buf, len)))
    rc = gs_error_set(err, GS_ENOMEM, "writing config: out of memory");
  gs_buf_free(&buf);
  return rc;
}

/* ---- JSON -------------------------------------------------------------- */

/* jansson's dump callback: 0 on success, -1 stops the dump. */
static int json_write(const char *bytes, size_t size, void *ctx) {
  return gs_buf_add(ctx, bytes, size) == GS_OK ? 0 : -1;
}

/* jansson's setters take (and on failure drop) a NULL value, so a failed
 * allocation anywhere surfaces as a nonzero return here. */
static int json_entry(json_t *list, const gs_config_entry_t *entry) {
  json_t *obj = json_object();
  if (json_array_append_new(list, obj) != 0)
    return -1;
  int bad = 0;
  if (entry->all_devices) {
    bad |= json_object_set_new(obj, "devices", json_string("all"));
  } else {
    json_t *devices = json_array();
    bad |= json_object_set_new(obj, "devices", devices);
    for (unsigned i = 0; !bad && i < entry->n_devices; i++)
      bad |= json_array_append_new(devices, json_integer(entry->devices[i]));
  }
  char text[11];
  if (entry->n_filters == 1) {
    filter_text(entry->device_filter[0], text);
    bad |= json_object_set_new(obj, "device-filter", json_string(text));
  } else if (entry->n_filters > 1) {
    json_t *filters = json_array();
    bad |= json_object_set_new(obj, "device-filter", filters);
    for (unsigned i = 0; !bad && i < entry->n_filters; i++) {
      filter_text(entry->device_filter[i], text);
      bad |= json_array_append_new(filters, json_string(text));
    }
  }
  bad |=
      json_object_set_new(obj, "mig-enabled", json_boolean(entry->mig_enabled));
  if (!entry->mig_enabled)
    return bad;
  json_t *mig = json_object();
  bad |= json_object_set_new(obj, "mig-devices", mig);
  for (unsigned i = 0; !bad && i < entry->n_mig_devices; i++)
    bad |= json_object_set_new(mig, entry->mig_devices[i].name,
                               json_integer(entry->mig_devices[i].count));
  return bad;
}

static int json_config(const gs_config_t *cfg, char **out, size_t *len,
                       gs_error_t *err) {
  json_t *root = json_object(), *sets = json_object();
  int bad = json_object_set_new(root, "version", json_string("v1"));
  bad |= json_object_set_new(root, "mig-configs", sets);
  for (unsigned s = 0; !bad && s < cfg->n_sets; s++) {
    const gs_config_set_t *set = &cfg->sets[s];
    json_t *entries = json_array();
    bad |= json_object_set_new(sets, set->name, entries);
    for (unsigned e = 0; !bad && e < set->n_entries; e++)
      bad |= json_entry(entries, &set->entries[e]);
  }
  int rc = GS_OK;
  gs_buf_t buf;
  gs_buf_init(&buf, GS_LIMIT_TEXT);
  if (bad)
    rc = gs_error_set(err, GS_EINVAL,
                      "cannot write config as JSON: a name is not valid "
                      "UTF-8 (or memory ran out)");
  /* A failed buffer stops the dump; the newline's add then reports it. */
  else if (json_dump_callback(root, json_write, &buf, JSON_INDENT(2)) != 0 &&
           !buf.failed)
    rc = gs_error_set(err, GS_ENOMEM, "writing config: out of memory");
  else if (gs_buf_adds(&buf, "\n") != GS_OK) {
    rc = gs_buf_error(&buf, err);
    gs_error_prefix(err, "writing config: ");
  } else if (!(*out = gs_buf_take(&buf, len)))
    rc = gs_error_set(err, GS_ENOMEM, "writing config: out of memory");
  json_decref(root);
  gs_buf_free(&buf);
  return rc;
}

int gs_config_emit(const gs_config_t *cfg, gs_config_format_t format,
                   char **out, size_t *len, gs_error_t *err) {
  if (!out || !len)
    return gs_error_set(err, GS_EINVAL, "writing config: no output given");
  *out = NULL;
  *len = 0;
  int rc = check_config(cfg, err);
  if (rc != GS_OK)
    return rc;
  if (format == GS_CONFIG_YAML)
    return emit_yaml(cfg, out, len, err);
  if (format == GS_CONFIG_JSON)
    return json_config(cfg, out, len, err);
  return gs_error_set(err, GS_EINVAL, "writing config: unknown format %d",
                      (int)format);
}
