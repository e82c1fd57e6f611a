/* mig-parted v1 config loader. libyaml parses the text (JSON too, as flow
 * style) in two passes: an event pass (config_yaml.c) that refuses anchors,
 * aliases, tags and deep nesting, then a document load whose nodes are checked
 * key by key here. */
#include "config/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* An entry is about 2.7 KiB (fixed tables), so the entry count, not the file
 * size, bounds what a config costs in memory. */
#define CONFIG_MAX_ENTRIES 4096
#define SHOWN_MAX GS__CONFIG_SHOWN_MAX
#define WHERE_MAX (GS__CONFIG_NAME_MAX + 64)

typedef gs__config_loader_t loader_t;

/* Most messages point at the node at fault. */
#define fail(ld, code, node, ...)                                              \
  gs__config_fail_at(ld, code, (node)->start_mark, __VA_ARGS__)

static const char *const ROOT_KEYS[] = {"version", "mig-configs"};
enum { ROOT_VERSION, ROOT_CONFIGS, ROOT_N };
static const char *const ENTRY_KEYS[] = {"devices", "device-filter",
                                         "mig-enabled", "mig-devices"};
enum { ENTRY_DEVICES, ENTRY_FILTER, ENTRY_ENABLED, ENTRY_MIG, ENTRY_N };

static yaml_node_t *node_at(const loader_t *ld, int id) {
  return yaml_document_get_node(ld->doc, id);
}

static size_t n_pairs(const yaml_node_t *map) {
  return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static size_t n_items(const yaml_node_t *seq) {
  return (size_t)(seq->data.sequence.items.top -
                  seq->data.sequence.items.start);
}

static bool is_plain(const yaml_node_t *node) {
  return node->type == YAML_SCALAR_NODE &&
         node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* Compares the whole scalar, so "all\0x" is not "all". */
static bool scalar_is(const yaml_node_t *node, const char *text) {
  return node->type == YAML_SCALAR_NODE &&
         node->data.scalar.length == strlen(text) &&
         memcmp(node->data.scalar.value, text, node->data.scalar.length) == 0;
}

static bool is_null(const yaml_node_t *node) {
  return is_plain(node) && (node->data.scalar.length == 0 ||
                            scalar_is(node, "~") || scalar_is(node, "null"));
}

/* ---- scalars ----------------------------------------------------------- */

/* A mapping key as text. Keys are strings, printable and on one line; an
 * embedded NUL (from a "\0" escape) would silently shorten a name. */
static int key_text(const loader_t *ld, const yaml_node_t *key,
                    const char *where, const char **text) {
  char shown[SHOWN_MAX + 32];
  if (key->type != YAML_SCALAR_NODE)
    return fail(ld, GS_EINVAL, key, "keys %s must be strings, got %s", where,
                gs__config_describe(key, shown, sizeof shown));
  if (!gs__config_name_ok((const char *)key->data.scalar.value,
                          key->data.scalar.length))
    return fail(ld, GS_EINVAL, key,
                "a key %s holds a control character or line break: %s", where,
                gs__config_describe(key, shown, sizeof shown));
  *text = (const char *)key->data.scalar.value;
  return GS_OK;
}

/* A decimal integer written plainly (a quoted "2" is a string, as in
 * mig-parted). Leading zeros are refused: YAML 1.1 reads them as octal. Sets
 * *too_big rather than failing, so callers word the limit themselves. */
static int parse_uint(const loader_t *ld, const yaml_node_t *node,
                      const char *what, unsigned *out, bool *too_big) {
  char shown[SHOWN_MAX + 32];
  bool plain = is_plain(node);
  const char *text = plain ? (const char *)node->data.scalar.value : "";
  size_t len = plain ? node->data.scalar.length : 0;
  bool digits = len > 0;
  for (size_t i = 0; i < len; i++)
    digits = digits && text[i] >= '0' && text[i] <= '9';
  if (!digits)
    return fail(ld, GS_EINVAL, node,
                "%s must be a non-negative integer, got %s", what,
                gs__config_describe(node, shown, sizeof shown));
  if (len > 1 && text[0] == '0')
    return fail(ld, GS_EINVAL, node,
                "%s must be a decimal integer without leading zeros, got %s",
                what, gs__config_describe(node, shown, sizeof shown));
  *too_big = len > 9;
  *out = *too_big ? 0 : (unsigned)strtoul(text, NULL, 10);
  return GS_OK;
}

/* A PCI device ID as mig-parted writes it: "0x233010DE". */
static int parse_filter(const loader_t *ld, const yaml_node_t *node,
                        uint32_t *out) {
  char shown[SHOWN_MAX + 32];
  bool scalar = node->type == YAML_SCALAR_NODE;
  const char *text = scalar ? (const char *)node->data.scalar.value : "";
  size_t len = scalar ? node->data.scalar.length : 0;
  bool ok = len == 10 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  for (int i = 2; ok && i < 10; i++)
    ok = isxdigit((unsigned char)text[i]);
  uint32_t id = ok ? (uint32_t)strtoul(text + 2, NULL, 16) : 0;
  if (!ok)
    return fail(ld, GS_EINVAL, node,
                "device-filter values must be PCI device IDs like "
                "\"0x233010DE\" (0x and 8 hex digits), got %s",
                gs__config_describe(node, shown, sizeof shown));
  *out = id;
  return GS_OK;
}

/* ---- mappings ---------------------------------------------------------- */

static void join_names(const char *const *names, unsigned n, char *buf,
                       size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < n && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
                             names[i]);
}

/* Looks up the known keys of a mapping: values[i] (and keys[i]) for names[i],
 * NULL when absent. Unknown and repeated keys are errors. */
static int read_keys(const loader_t *ld, const yaml_node_t *map,
                     const char *const *names, unsigned n, const char *where,
                     const yaml_node_t **keys, const yaml_node_t **values) {
  for (unsigned i = 0; i < n; i++)
    keys[i] = values[i] = NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
       p < map->data.mapping.pairs.top; p++) {
    const yaml_node_t *key = node_at(ld, p->key);
    const char *text;
    int rc = key_text(ld, key, where, &text);
    if (rc != GS_OK)
      return rc;
    unsigned i = 0;
    while (i < n && strcmp(text, names[i]) != 0)
      i++;
    if (i == n) {
      char expected[128], shown[SHOWN_MAX + 1];
      join_names(names, n, expected, sizeof expected);
      bool whole = gs__config_shown(shown, text, key->data.scalar.length);
      return fail(ld, GS_EINVAL, key, "unknown key '%s%s' %s (expected %s)",
                  shown, whole ? "" : "...", where, expected);
    }
    if (keys[i])
      return fail(ld, GS_EINVAL, key,
                  "duplicate key '%s' %s (first at %zu:%zu)", names[i], where,
                  keys[i]->start_mark.line + 1, keys[i]->start_mark.column + 1);
    keys[i] = key;
    values[i] = node_at(ld, p->value);
  }
  return GS_OK;
}

/* ---- entries ----------------------------------------------------------- */

static int parse_devices(const loader_t *ld, const yaml_node_t *node,
                         gs_config_entry_t *entry) {
  char shown[SHOWN_MAX + 32];
  if (scalar_is(node, "all")) {
    entry->all_devices = true;
    return GS_OK;
  }
  if (node->type != YAML_SEQUENCE_NODE)
    return fail(ld, GS_EINVAL, node,
                "devices must be 'all' or a list of device indices, got %s",
                gs__config_describe(node, shown, sizeof shown));
  if (n_items(node) == 0)
    return fail(ld, GS_EINVAL, node,
                "devices list is empty (write 'all' or device indices)");
  uint64_t seen = 0;
  for (yaml_node_item_t *it = node->data.sequence.items.start;
       it < node->data.sequence.items.top; it++) {
    const yaml_node_t *item = node_at(ld, *it);
    if (entry->n_devices == GS_CONFIG_MAX_DEVICES)
      return fail(ld, GS_ELIMIT, item, "more than %d devices in one list",
                  GS_CONFIG_MAX_DEVICES);
    unsigned index;
    bool too_big;
    int rc = parse_uint(ld, item, "a device index", &index, &too_big);
    if (rc != GS_OK)
      return rc;
    if (too_big || index >= GS_CONFIG_MAX_DEVICES)
      return fail(ld, GS_ELIMIT, item,
                  "device index %s is out of range (0 to %d)",
                  gs__config_describe(item, shown, sizeof shown),
                  GS_CONFIG_MAX_DEVICES - 1);
    if (seen & (UINT64_C(1) << index))
      return fail(ld, GS_EINVAL, item, "device %u is listed twice", index);
    seen |= UINT64_C(1) << index;
    entry->devices[entry->n_devices++] = index;
  }
  return GS_OK;
}

static int parse_filters(const loader_t *ld, const yaml_node_t *node,
                         gs_config_entry_t *entry) {
  if (node->type == YAML_SCALAR_NODE) {
    entry->n_filters = 1;
    return parse_filter(ld, node, &entry->device_filter[0]);
  }
  if (node->type != YAML_SEQUENCE_NODE || n_items(node) == 0)
    return fail(ld, GS_EINVAL, node,
                "device-filter must be a PCI device ID or a non-empty list "
                "of them, got %s",
                node->type == YAML_MAPPING_NODE ? "a mapping"
                                                : "an empty list");
  for (yaml_node_item_t *it = node->data.sequence.items.start;
       it < node->data.sequence.items.top; it++) {
    const yaml_node_t *item = node_at(ld, *it);
    if (entry->n_filters == GS_CONFIG_MAX_FILTERS)
      return fail(ld, GS_ELIMIT, item, "more than %d device-filter values",
                  GS_CONFIG_MAX_FILTERS);
    int rc = parse_filter(ld, item, &entry->device_filter[entry->n_filters]);
    if (rc != GS_OK)
      return rc;
    entry->n_filters++;
  }
  return GS_OK;
}

/* YAML 1.2 core booleans only; yes/no/on/off (YAML 1.1) and 1/0 are refused
 * rather than guessed at. */
static int parse_enabled(const loader_t *ld, const yaml_node_t *node,
                         bool *out) {
  static const char *const words[] = {"true",  "True",  "TRUE",
                                      "false", "False", "FALSE"};
  char shown[SHOWN_MAX + 32];
  for (unsigned i = 0; is_plain(node) && i < 6; i++) {
    if (scalar_is(node, words[i])) {
      *out = i < 3;
      return GS_OK;
    }
  }
  return fail(ld, GS_EINVAL, node,
              "mig-enabled must be true or false, got %s%s",
              gs__config_describe(node, shown, sizeof shown),
              is_plain(node) ? " (yes/no/on/off and numbers are not booleans "
                               "here)"
                             : "");
}

static int parse_mig_device(const loader_t *ld, const yaml_node_pair_t *p,
                            const char *where, gs_config_entry_t *entry) {
  const yaml_node_t *key = node_at(ld, p->key);
  const char *name;
  int rc = key_text(ld, key, where, &name);
  if (rc != GS_OK)
    return rc;
  size_t len = strlen(name);
  if (len == 0)
    return fail(ld, GS_EINVAL, key, "empty profile name in mig-devices");
  if (len >= sizeof entry->mig_devices[0].name) {
    char shown[SHOWN_MAX + 1];
    gs__config_shown(shown, name, len);
    return fail(ld, GS_ELIMIT, key,
                "profile name '%s...' is longer than %zu bytes", shown,
                sizeof entry->mig_devices[0].name - 1);
  }
  for (unsigned i = 0; i < entry->n_mig_devices; i++) {
    const gs_config_mig_device_t *prev = &entry->mig_devices[i];
    if (strcmp(prev->name, name) == 0)
      return fail(ld, GS_EINVAL, key,
                  "duplicate key '%s' in mig-devices %s (first at %u:%u)", name,
                  where, prev->mark.line, prev->mark.column);
  }
  char what[sizeof entry->mig_devices[0].name + 16];
  snprintf(what, sizeof what, "count for '%s'", name);
  const yaml_node_t *value = node_at(ld, p->value);
  unsigned count;
  bool too_big;
  rc = parse_uint(ld, value, what, &count, &too_big);
  if (rc != GS_OK)
    return rc;
  if (too_big || count > GS_CONFIG_MAX_COUNT) {
    char shown[SHOWN_MAX + 32];
    return fail(ld, GS_ELIMIT, value, "%s is %s; the limit is %d", what,
                gs__config_describe(value, shown, sizeof shown),
                GS_CONFIG_MAX_COUNT);
  }
  gs_config_mig_device_t *dev = &entry->mig_devices[entry->n_mig_devices++];
  memcpy(dev->name, name, len + 1);
  dev->count = count;
  dev->mark.line = (unsigned)key->start_mark.line + 1;
  dev->mark.column = (unsigned)key->start_mark.column + 1;
  return GS_OK;
}

/* key is the "mig-devices" key, node its value (NULL for neither). An empty
 * value reads as an empty mapping, as it does in mig-parted. */
static int parse_mig_devices(const loader_t *ld, const yaml_node_t *key,
                             const yaml_node_t *node, const char *where,
                             gs_config_entry_t *entry) {
  char shown[SHOWN_MAX + 32];
  if (!node || is_null(node))
    return GS_OK;
  if (node->type != YAML_MAPPING_NODE)
    return fail(ld, GS_EINVAL, node,
                "mig-devices must be a mapping of profile names to counts, "
                "got %s",
                gs__config_describe(node, shown, sizeof shown));
  if (n_pairs(node) > 0 && !entry->mig_enabled)
    return fail(ld, GS_EINVAL, key,
                "mig-devices must be empty when mig-enabled is false %s",
                where);
  for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
       p < node->data.mapping.pairs.top; p++) {
    if (entry->n_mig_devices == GS_CONFIG_MAX_MIG_DEVICES)
      return fail(ld, GS_ELIMIT, node_at(ld, p->key),
                  "more than %d profiles in mig-devices %s",
                  GS_CONFIG_MAX_MIG_DEVICES, where);
    int rc = parse_mig_device(ld, p, where, entry);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

static int parse_entry(const loader_t *ld, const yaml_node_t *node,
                       const char *set_name, unsigned number,
                       gs_config_entry_t *entry) {
  char where[WHERE_MAX], shown[SHOWN_MAX + 32];
  snprintf(where, sizeof where, "in config '%s' entry %u", set_name, number);
  entry->mark.line = (unsigned)node->start_mark.line + 1;
  entry->mark.column = (unsigned)node->start_mark.column + 1;
  if (node->type != YAML_MAPPING_NODE)
    return fail(ld, GS_EINVAL, node,
                "entry %u of config '%s' must be a mapping with devices "
                "and mig-enabled, got %s",
                number, set_name,
                gs__config_describe(node, shown, sizeof shown));
  const yaml_node_t *keys[ENTRY_N], *values[ENTRY_N];
  int rc = read_keys(ld, node, ENTRY_KEYS, ENTRY_N, where, keys, values);
  if (rc != GS_OK)
    return rc;
  if (!values[ENTRY_DEVICES])
    return fail(ld, GS_EINVAL, node,
                "missing key 'devices' %s (write 'all' or a list of indices)",
                where);
  if (!values[ENTRY_ENABLED])
    return fail(ld, GS_EINVAL, node,
                "missing key 'mig-enabled' %s (write true or false)", where);
  rc = parse_devices(ld, values[ENTRY_DEVICES], entry);
  if (rc == GS_OK && values[ENTRY_FILTER])
    rc = parse_filters(ld, values[ENTRY_FILTER], entry);
  if (rc == GS_OK)
    rc = parse_enabled(ld, values[ENTRY_ENABLED], &entry->mig_enabled);
  if (rc == GS_OK && entry->mig_enabled && !values[ENTRY_MIG])
    rc = fail(ld, GS_EINVAL, node,
              "missing key 'mig-devices' %s (required when mig-enabled is "
              "true; write {} for none)",
              where);
  if (rc == GS_OK)
    rc =
        parse_mig_devices(ld, keys[ENTRY_MIG], values[ENTRY_MIG], where, entry);
  return rc;
}

/* ---- sets and the document --------------------------------------------- */

static int parse_set(loader_t *ld, const yaml_node_t *node,
                     gs_config_set_t *set) {
  char shown[SHOWN_MAX + 32];
  if (node->type != YAML_SEQUENCE_NODE)
    return fail(ld, GS_EINVAL, node,
                "config '%s' must be a list of entries, got %s", set->name,
                gs__config_describe(node, shown, sizeof shown));
  size_t n = n_items(node);
  if (n == 0)
    return fail(ld, GS_EINVAL, node, "config '%s' has no entries", set->name);
  if (n > CONFIG_MAX_ENTRIES - ld->n_entries)
    return fail(ld, GS_ELIMIT, node, "more than %d entries in one file",
                CONFIG_MAX_ENTRIES);
  ld->n_entries += (unsigned)n;
  set->entries = calloc(n, sizeof *set->entries);
  if (!set->entries)
    return gs__config_nomem(ld);
  for (size_t i = 0; i < n; i++) {
    const yaml_node_t *item = node_at(ld, node->data.sequence.items.start[i]);
    set->n_entries++;
    int rc =
        parse_entry(ld, item, set->name, (unsigned)i + 1, &set->entries[i]);
    if (rc != GS_OK)
      return rc;
  }
  return GS_OK;
}

typedef struct {
  const char *name;
  const yaml_node_t *key;
  size_t order;
} named_key_t;

static int compare_named(const void *a, const void *b) {
  const named_key_t *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* Config names may be many, so repeats are found by sorting; the message
 * points at the earliest repeat in the file. */
static int check_set_names(const loader_t *ld, named_key_t *names, size_t n) {
  qsort(names, n, sizeof *names, compare_named);
  const named_key_t *repeat = NULL, *first = NULL;
  for (size_t i = 1, group = 0; i < n; i++) {
    if (strcmp(names[i].name, names[group].name) != 0)
      group = i;
    else if (!repeat || names[i].order < repeat->order) {
      repeat = &names[i];
      first = &names[group];
    }
  }
  if (!repeat)
    return GS_OK;
  return fail(ld, GS_EINVAL, repeat->key,
              "duplicate config name '%s' in mig-configs (first at %zu:%zu)",
              repeat->name, first->key->start_mark.line + 1,
              first->key->start_mark.column + 1);
}

static int collect_set_names(const loader_t *ld, const yaml_node_t *node) {
  size_t n = n_pairs(node);
  named_key_t *names = calloc(n, sizeof *names);
  if (!names)
    return gs__config_nomem(ld);
  int rc = GS_OK;
  for (size_t i = 0; i < n && rc == GS_OK; i++) {
    names[i].key = node_at(ld, node->data.mapping.pairs.start[i].key);
    names[i].order = i;
    rc = key_text(ld, names[i].key, "in mig-configs", &names[i].name);
    if (rc == GS_OK && names[i].name[0] == '\0')
      rc = fail(ld, GS_EINVAL, names[i].key, "empty config name");
    size_t len = rc == GS_OK ? strlen(names[i].name) : 0;
    if (len > GS__CONFIG_NAME_MAX) {
      char shown[SHOWN_MAX + 1];
      gs__config_shown(shown, names[i].name, len);
      rc = fail(ld, GS_ELIMIT, names[i].key,
                "config name '%s...' is longer than %d bytes", shown,
                GS__CONFIG_NAME_MAX);
    }
  }
  if (rc == GS_OK)
    rc = check_set_names(ld, names, n);
  free(names);
  return rc;
}

static int parse_sets(loader_t *ld, const yaml_node_t *node, gs_config_t *cfg) {
  char shown[SHOWN_MAX + 32];
  if (node->type != YAML_MAPPING_NODE)
    return fail(ld, GS_EINVAL, node,
                "mig-configs must be a mapping of config names to entry "
                "lists, got %s",
                gs__config_describe(node, shown, sizeof shown));
  size_t n = n_pairs(node);
  if (n == 0)
    return fail(ld, GS_EINVAL, node, "mig-configs holds no configs");
  int rc = collect_set_names(ld, node);
  if (rc != GS_OK)
    return rc;
  cfg->sets = calloc(n, sizeof *cfg->sets);
  if (!cfg->sets)
    return gs__config_nomem(ld);
  cfg->n_sets = (unsigned)n;
  for (size_t i = 0; i < n && rc == GS_OK; i++) {
    const yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];
    const yaml_node_t *key = node_at(ld, p->key);
    gs_config_set_t *set = &cfg->sets[i];
    set->name = strdup((const char *)key->data.scalar.value);
    if (!set->name)
      return gs__config_nomem(ld);
    set->mark.line = (unsigned)key->start_mark.line + 1;
    set->mark.column = (unsigned)key->start_mark.column + 1;
    rc = parse_set(ld, node_at(ld, p->value), set);
  }
  return rc;
}

static int parse_root(loader_t *ld, gs_config_t *cfg) {
  char shown[SHOWN_MAX + 32];
  const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
  if (!root) {
    yaml_mark_t start = {0, 0, 0};
    return gs__config_fail_at(
        ld, GS_EINVAL, start,
        "empty config (expected 'version: v1' and 'mig-configs')");
  }
  if (root->type != YAML_MAPPING_NODE)
    return fail(ld, GS_EINVAL, root,
                "the top level must be a mapping with version and "
                "mig-configs, got %s",
                gs__config_describe(root, shown, sizeof shown));
  const yaml_node_t *keys[ROOT_N], *values[ROOT_N];
  int rc =
      read_keys(ld, root, ROOT_KEYS, ROOT_N, "at the top level", keys, values);
  if (rc != GS_OK)
    return rc;
  if (!values[ROOT_VERSION])
    return fail(ld, GS_EINVAL, root, "missing key 'version' (expected v1)");
  if (!scalar_is(values[ROOT_VERSION], "v1"))
    return fail(ld, GS_EINVAL, values[ROOT_VERSION],
                "version must be v1, got %s",
                gs__config_describe(values[ROOT_VERSION], shown, sizeof shown));
  if (!values[ROOT_CONFIGS])
    return fail(ld, GS_EINVAL, root, "missing key 'mig-configs'");
  return parse_sets(ld, values[ROOT_CONFIGS], cfg);
}

static int load_document(loader_t *ld, gs_config_t *cfg, const char *data,
                         size_t len) {
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser))
    return gs__config_nomem(ld);
  yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
  int rc;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = gs__config_syntax_error(ld, &parser, data, len);
  } else {
    ld->doc = &doc;
    rc = parse_root(ld, cfg);
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  return rc;
}

/* ---- public API -------------------------------------------------------- */

int gs_config_load_buffer(gs_config_t *cfg, const char *source,
                          const char *data, size_t len, gs_error_t *err) {
  if (!cfg)
    return gs_error_set(err, GS_EINVAL, "config: no config to load into");
  memset(cfg, 0, sizeof *cfg);
  loader_t ld = {source ? source : "<config>", NULL, err, 0};
  if (!data && len > 0)
    return gs_error_set(err, GS_EINVAL, "%s: no data", ld.source);
  if (len > GS_CONFIG_MAX_BYTES)
    return gs_error_set(err, GS_ELIMIT,
                        "%s: config is %zu bytes, more than the limit of %u",
                        ld.source, len, GS_CONFIG_MAX_BYTES);
  cfg->source = strdup(ld.source);
  if (!cfg->source)
    return gs__config_nomem(&ld);
  const char *text = data ? data : "";
  int rc = gs__config_scan_events(&ld, text, len);
  if (rc == GS_OK)
    rc = load_document(&ld, cfg, text, len);
  if (rc != GS_OK)
    gs_config_release(cfg);
  return rc;
}

/* Reads at most GS_CONFIG_MAX_BYTES + 1 bytes, so that an oversized file
 * (or an endless pipe) is refused without reading it all. */
static int read_file(const char *path, char **data, size_t *len,
                     gs_error_t *err) {
  FILE *f = fopen(path, "rbe");
  if (!f)
    return gs_error_sys(err, errno, "%s: cannot open", path);
  char *buf = malloc(GS_CONFIG_MAX_BYTES + 1);
  size_t used = buf ? fread(buf, 1, GS_CONFIG_MAX_BYTES + 1, f) : 0;
  int rc = GS_OK;
  if (!buf)
    rc = gs_error_set(err, GS_ENOMEM, "%s: out of memory", path);
  else if (ferror(f))
    rc = gs_error_sys(err, errno, "%s: cannot read", path);
  else if (used > GS_CONFIG_MAX_BYTES)
    rc = gs_error_set(err, GS_ELIMIT,
                      "%s: config is larger than the limit of %u bytes", path,
                      GS_CONFIG_MAX_BYTES);
  fclose(f);
  if (rc != GS_OK) {
    free(buf);
    return rc;
  }
  *data = buf;
  *len = used;
  return GS_OK;
}

int gs_config_load_file(gs_config_t *cfg, const char *path, gs_error_t *err) {
  if (!cfg || !path)
    return gs_error_set(err, GS_EINVAL, "config: no %s given",
                        cfg ? "path" : "config to load into");
  memset(cfg, 0, sizeof *cfg);
  char *data = NULL;
  size_t len = 0;
  int rc = read_file(path, &data, &len, err);
  if (rc != GS_OK)
    return rc;
  rc = gs_config_load_buffer(cfg, path, data, len, err);
  free(data);
  return rc;
}

void gs_config_release(gs_config_t *cfg) {
  if (!cfg)
    return;
  for (unsigned i = 0; cfg->sets && i < cfg->n_sets; i++) {
    free(cfg->sets[i].name);
    free(cfg->sets[i].entries);
  }
  free(cfg->sets);
  free(cfg->source);
  memset(cfg, 0, sizeof *cfg);
}

const gs_config_set_t *gs_config_find(const gs_config_t *cfg, const char *name,
                                      gs_error_t *err) {
  if (!cfg || !name) {
    gs_error_set(err, GS_EINVAL, "config: no %s to look up",
                 cfg ? "name" : "config");
    return NULL;
  }
  for (unsigned i = 0; i < cfg->n_sets; i++)
    if (strcmp(cfg->sets[i].name, name) == 0)
      return &cfg->sets[i];
  char names[640];
  size_t used = 0;
  names[0] = '\0';
  for (unsigned i = 0; i < cfg->n_sets && used < sizeof names; i++)
    used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
                             i ? ", " : "", cfg->sets[i].name);
  if (used >= sizeof names)
    memcpy(names + sizeof names - 4, "...", 4);
  gs_error_set(err, GS_ENOTFOUND, "no config '%.*s' in %s (it has: %s)",
               SHOWN_MAX * 2, name, cfg->source ? cfg->source : "<config>",
               cfg->n_sets ? names : "none");
  return NULL;
}
