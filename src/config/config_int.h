/* Internals shared by the config loader (config.c), its libyaml plumbing
 * (config_yaml.c) and the writer (config_emit.c). */
#ifndef GPUSLICE_CONFIG_INT_H
#define GPUSLICE_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

#include "gpuslice/config.h"

/* Longest config name. libyaml reads no flow-mapping key over 1024
 * characters, so a longer name would not load back from the JSON we write. */
#define GS__CONFIG_NAME_MAX 255
/* Characters of an offending value quoted in a message. */
#define GS__CONFIG_SHOWN_MAX 40

typedef struct gs__config_loader_s {
  const char *source; /* path or label, first in every message */
  yaml_document_t *doc;
  gs_error_t *err;
  unsigned n_entries; /* across all sets so far */
} gs__config_loader_t;

/* Sets "SOURCE:LINE:COLUMN: message" (mark is libyaml's, 0-based) and
 * returns code. */
int gs__config_fail_at(const gs__config_loader_t *ld, int code,
                       yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int gs__config_nomem(const gs__config_loader_t *ld);

/* Copies at most GS__CONFIG_SHOWN_MAX bytes of whole characters of text into
 * out, '?' for any a name may not hold, so that messages never carry terminal
 * controls. Returns whether all of text fitted. */
bool gs__config_shown(char out[GS__CONFIG_SHOWN_MAX + 1], const char *text,
                      size_t len);

/* What a node is, for "got ..." in messages: 'two', the quoted string '2',
 * an empty value, a mapping, a list. Control characters show as '?'. */
const char *gs__config_describe(const yaml_node_t *node, char *buf,
                                size_t size);

/* The first pass: libyaml's syntax errors, and the YAML features a config
 * may not use (anchors, aliases, tags, several documents, deep nesting). */
int gs__config_scan_events(const gs__config_loader_t *ld, const char *data,
                           size_t len);
int gs__config_syntax_error(const gs__config_loader_t *ld,
                            const yaml_parser_t *parser, const char *data,
                            size_t len);

/* Whether a name (config, profile or key) is valid UTF-8 free of control
 * characters and line breaks, so that it prints safely and both writers can
 * write it back unchanged. */
bool gs__config_name_ok(const char *name, size_t len);

#endif
