/* Catalog lookups: builds gs_catalog_t from the tables in catalog_data.c or
 * synthesizes one for soft and host backends, names profiles, and parses
 * the profile references users type ("1g.10gb", "19", "1c.3g.40gb:4"). */
#include "catalog/catalog_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PROFILE_TEXT_MAX 127 /* longest profile reference accepted */
#define SUGGEST_MAX 64       /* longest name a suggestion is drawn from */

static char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static bool equal_nocase(const char *a, const char *b) {
  for (; *a && *b; a++, b++)
    if (ascii_lower(*a) != ascii_lower(*b))
      return false;
  return *a == *b;
}

static bool prefix_nocase(const char *prefix, const char *s) {
  for (; *prefix; prefix++, s++)
    if (!*s || ascii_lower(*prefix) != ascii_lower(*s))
      return false;
  return true;
}

/* Levenshtein distance, case-insensitive; a is cut at PROFILE_TEXT_MAX and
 * b at SUGGEST_MAX bytes (enough to rank suggestions). */
static unsigned edit_distance(const char *a, const char *b) {
  unsigned row[SUGGEST_MAX + 1];
  size_t nb = strnlen(b, SUGGEST_MAX);
  size_t na = strnlen(a, PROFILE_TEXT_MAX);
  for (size_t j = 0; j <= nb; j++)
    row[j] = (unsigned)j;
  for (size_t i = 1; i <= na; i++) {
    unsigned diag = row[0];
    row[0] = (unsigned)i;
    for (size_t j = 1; j <= nb; j++) {
      unsigned up = row[j];
      unsigned cost = ascii_lower(a[i - 1]) != ascii_lower(b[j - 1]);
      unsigned best = diag + cost;
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[nb];
}

/* True when a and b agree up to their last '.' ("3g.20gb" and "3g.40gb"):
 * the slice counts match and only the memory figure differs, the usual
 * slip when a name is copied from another GPU. */
static bool same_stem(const char *a, const char *b) {
  const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
  if (!da || !db || da - a != db - b)
    return false;
  for (; a < da; a++, b++)
    if (ascii_lower(*a) != ascii_lower(*b))
      return false;
  return true;
}

/* Keeps the best suggestion seen so far. A candidate the text is a prefix
 * of ranks first, then one with the same stem, then any; within a rank the
 * smaller edit distance, and on ties the earlier candidate. */
typedef struct suggestion_s {
  char name[SUGGEST_MAX];
  unsigned rank;
  unsigned distance;
} suggestion_t;

static void suggest_consider(suggestion_t *s, const char *text,
                             const char *candidate) {
  unsigned rank = prefix_nocase(text, candidate) ? 2
                  : same_stem(text, candidate)   ? 1
                                                 : 0;
  unsigned d = edit_distance(text, candidate);
  if (s->name[0] && (s->rank > rank || (s->rank == rank && s->distance <= d)))
    return;
  snprintf(s->name, sizeof s->name, "%s", candidate);
  s->rank = rank;
  s->distance = d;
}

/* Copies text for an error message, with unprintable bytes as '?'. */
static void printable_copy(char *dst, size_t size, const char *text) {
  size_t i = 0;
  for (; i + 1 < size && text[i]; i++) {
    unsigned char c = (unsigned char)text[i];
    dst[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  dst[i] = '\0';
}

/* ---- catalogs from the tables ------------------------------------------ */

unsigned gs_catalog_model_count(void) {
  return gs__n_models;
}

const char *gs_catalog_model_name(unsigned i) {
  return i < gs__n_models ? gs__models[i].model : NULL;
}

static const gs__engines_t *engines_of(const gs__model_t *m, unsigned id) {
  if (!m->engines)
    return NULL;
  for (unsigned i = 0; i < m->geometry->n_gi; i++)
    if (m->engines[i].id == id)
      return &m->engines[i];
  return NULL;
}

static const gs__profile_facts_t *facts_of(const gs__model_t *m, unsigned id) {
  for (unsigned i = 0; i < m->geometry->n_gi; i++)
    if (m->profiles[i].name && m->profiles[i].id == id)
      return &m->profiles[i];
  return NULL;
}

/* Copies a geometry into out->gi (names and amounts left empty). */
static void fill_geometry(gs_catalog_t *out, const gs__geometry_t *g) {
  out->memory_slices = g->memory_slices;
  out->compute_slices = g->compute_slices;
  out->n_gi = g->n_gi;
  for (unsigned i = 0; i < g->n_gi; i++) {
    const gs__gi_geometry_t *src = &g->gi[i];
    gs_gi_profile_t *gi = &out->gi[i];
    gi->id = src->id;
    gi->nvml_index = src->nvml_index;
    gi->compute_slices = src->compute_slices;
    gi->memory_slices = src->memory_slices;
    gi->max_count = src->max_count;
    gi->start_mask = src->start_mask;
    gi->media_extensions = src->media_extensions;
    gi->n_ci = src->n_ci;
    memcpy(gi->ci, src->ci, sizeof gi->ci);
  }
}

static void fill_from_model(gs_catalog_t *out, const gs__model_t *m) {
  memset(out, 0, sizeof *out);
  snprintf(out->model, sizeof out->model, "%s", m->model);
  snprintf(out->product, sizeof out->product, "%s", m->product);
  out->source = GS_CATALOG_TABLE;
  out->total_sms = m->total_sms;
  out->n_pci_ids = m->n_pci_ids;
  memcpy(out->pci_device_ids, m->pci_device_ids, sizeof out->pci_device_ids);
  fill_geometry(out, m->geometry);
  for (unsigned i = 0; i < out->n_gi; i++) {
    gs_gi_profile_t *gi = &out->gi[i];
    const gs__profile_facts_t *f = facts_of(m, gi->id);
    const gs__engines_t *e = engines_of(m, gi->id);
    if (f) {
      snprintf(gi->name, sizeof gi->name, "%s", f->name);
      gi->memory_mib = f->memory_mib;
      gi->sms = f->sms;
    }
    if (e) {
      gi->copy_engines = e->copy_engines;
      gi->decoders = e->decoders;
      gi->encoders = e->encoders;
      gi->jpegs = e->jpegs;
      gi->ofas = e->ofas;
    }
    if (gi->memory_slices == out->memory_slices)
      out->total_memory_mib = gi->memory_mib; /* the whole-GPU profile */
  }
}

static void list_models(char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < gs__n_models && len < size; i++) {
    int n = snprintf(buf + len, size - len, "%s%s", i ? ", " : "",
                     gs__models[i].model);
    if (n < 0)
      break;
    len += (size_t)n;
  }
}

int gs_catalog_for_model(gs_catalog_t *out, const char *model,
                         gs_error_t *err) {
  if (!out || !model)
    return gs_error_set(err, GS_EINVAL, "no GPU model given");
  suggestion_t best = {0};
  for (unsigned i = 0; i < gs__n_models; i++) {
    if (equal_nocase(model, gs__models[i].model)) {
      fill_from_model(out, &gs__models[i]);
      return GS_OK;
    }
    suggest_consider(&best, model, gs__models[i].model);
  }
  char shown[PROFILE_TEXT_MAX + 1], models[256];
  printable_copy(shown, sizeof shown, model);
  list_models(models, sizeof models);
  return gs_error_set(err, GS_ENOTFOUND,
                      "unknown GPU model '%s'; did you mean '%s'? "
                      "(models: %s)",
                      shown, best.name, models);
}

/* Distance of a model's nominal memory from a device's, in MiB. */
static uint64_t memory_gap(const gs__model_t *m, uint64_t memory_mib) {
  uint64_t nominal = (uint64_t)m->memory_gb * 1024;
  return nominal > memory_mib ? nominal - memory_mib : memory_mib - nominal;
}

int gs_catalog_for_pci_id(gs_catalog_t *out, uint32_t pci_device_id,
                          uint64_t memory_mib, gs_error_t *err) {
  if (!out)
    return gs_error_set(err, GS_EINVAL, "no catalog to fill");
  const gs__model_t *found = NULL;
  for (unsigned i = 0; i < gs__n_models; i++) {
    const gs__model_t *m = &gs__models[i];
    for (unsigned k = 0; k < m->n_pci_ids; k++) {
      if (m->pci_device_ids[k] != pci_device_id)
        continue;
      if (!found || (memory_mib &&
                     memory_gap(m, memory_mib) < memory_gap(found, memory_mib)))
        found = m;
    }
  }
  if (!found)
    return gs_error_set(err, GS_ENOTFOUND,
                        "no MIG profile table for PCI device ID 0x%08" PRIX32,
                        pci_device_id);
  fill_from_model(out, found);
  return GS_OK;
}

/* ---- synthesized catalogs ---------------------------------------------- */

/* The share of `total` a profile of n compute slices gets. Soft: a multiple
 * of 8 SMs, at least 8; host: at least one core. The whole-device profile
 * gets everything, and no profile more than the device has. */
static unsigned synth_share(bool soft, unsigned n, unsigned n_max,
                            unsigned total) {
  uint64_t share;
  if (n >= n_max)
    share = total;
  else if (soft)
    share = (uint64_t)n * total / (7 * 8) * 8;
  else
    share = (uint64_t)n * total / 7;
  if (n < n_max && share < (soft ? 8u : 1u))
    share = soft ? 8 : 1;
  return share > total ? total : (unsigned)share;
}

static void synth_fill(gs_catalog_t *out, bool soft, unsigned total,
                       uint64_t memory_mib) {
  const gs__geometry_t *g = &gs__geometry_7x8;
  uint64_t slice_mib = memory_mib / g->memory_slices;
  fill_geometry(out, g);
  out->total_sms = total;
  out->total_memory_mib = memory_mib;
  /* Names in whole GB as MIG's, unless rounding would give the 1-slice and
   * 2-slice 1g profiles (IDs 19 and 15) one name: then in MB. */
  uint64_t gb1 = (slice_mib + 512) / 1024, gb2 = (2 * slice_mib + 512) / 1024;
  bool in_mb = gb1 == 0 || gb1 == gb2;
  for (unsigned i = 0; i < out->n_gi; i++) {
    gs_gi_profile_t *gi = &out->gi[i];
    gi->memory_mib = gi->memory_slices * slice_mib;
    gi->sms = synth_share(soft, gi->compute_slices, g->compute_slices, total);
    snprintf(gi->name, sizeof gi->name, "%ug.%" PRIu64 "%s%s",
             gi->compute_slices,
             in_mb ? gi->memory_mib : (gi->memory_mib + 512) / 1024,
             in_mb ? "mb" : "gb", gi->media_extensions ? "+me" : "");
  }
}

void gs_catalog_synth_soft(gs_catalog_t *out, const char *product, unsigned sms,
                           uint64_t memory_mib) {
  memset(out, 0, sizeof *out);
  snprintf(out->model, sizeof out->model, "soft");
  snprintf(out->product, sizeof out->product, "%s",
           product ? product : "NVIDIA GPU");
  out->source = GS_CATALOG_SOFT;
  synth_fill(out, true, sms, memory_mib);
}

void gs_catalog_synth_host(gs_catalog_t *out, unsigned cpu_cores,
                           uint64_t memory_mib) {
  memset(out, 0, sizeof *out);
  snprintf(out->model, sizeof out->model, "host");
  snprintf(out->product, sizeof out->product,
           "host (%u CPU cores, %" PRIu64 " MiB)", cpu_cores, memory_mib);
  out->source = GS_CATALOG_HOST;
  synth_fill(out, false, cpu_cores, memory_mib);
}

/* ---- lookups and names ------------------------------------------------- */

const gs_gi_profile_t *gs_catalog_gi(const gs_catalog_t *cat,
                                     unsigned profile_id) {
  if (!cat)
    return NULL;
  for (unsigned i = 0; i < cat->n_gi && i < GS_MAX_GI_PROFILES; i++)
    if (cat->gi[i].id == profile_id)
      return &cat->gi[i];
  return NULL;
}

const gs_ci_profile_t *gs_catalog_ci(const gs_gi_profile_t *gi,
                                     unsigned ci_profile_id) {
  if (!gi)
    return NULL;
  for (unsigned i = 0; i < gi->n_ci && i < GS_MAX_CI_PROFILES; i++)
    if (gi->ci[i].id == ci_profile_id)
      return &gi->ci[i];
  return NULL;
}

const gs_ci_profile_t *gs_catalog_ci_full(const gs_gi_profile_t *gi) {
  if (!gi)
    return NULL;
  for (unsigned i = 0; i < gi->n_ci && i < GS_MAX_CI_PROFILES; i++)
    if (gi->ci[i].compute_slices == gi->compute_slices)
      return &gi->ci[i];
  return NULL;
}

void gs_catalog_device_name(const gs_gi_profile_t *gi,
                            const gs_ci_profile_t *ci, char *buf,
                            unsigned size) {
  if (!buf || size == 0)
    return;
  if (!gi)
    buf[0] = '\0';
  else if (!ci || ci->compute_slices == gi->compute_slices)
    snprintf(buf, size, "%s", gi->name);
  else
    snprintf(buf, size, "%uc.%s", ci->compute_slices, gi->name);
}

void gs_format_starts(uint32_t mask, char *buf, unsigned size) {
  if (!buf || size == 0)
    return;
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned s = 0; s < 32; s++) {
    if (!(mask & (UINT32_C(1) << s)))
      continue;
    char piece[8];
    int n = snprintf(piece, sizeof piece, "%s%u", len ? "," : "", s);
    if (n < 0 || len + (size_t)n >= size)
      return; /* stop at a whole number rather than cut one */
    memcpy(buf + len, piece, (size_t)n + 1);
    len += (size_t)n;
  }
}

/* ---- parsing profile references ---------------------------------------- */

/* Parses 1..digits_max decimal digits spanning all of s. */
static bool parse_decimal(const char *s, size_t len, size_t digits_max,
                          unsigned *out) {
  if (len == 0 || len > digits_max)
    return false;
  unsigned v = 0;
  for (size_t i = 0; i < len; i++) {
    if (!is_digit(s[i]))
      return false;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  *out = v;
  return true;
}

static const gs_gi_profile_t *gi_by_name(const gs_catalog_t *cat,
                                         const char *name) {
  for (unsigned i = 0; i < cat->n_gi && i < GS_MAX_GI_PROFILES; i++)
    if (equal_nocase(name, cat->gi[i].name))
      return &cat->gi[i];
  return NULL;
}

static void list_ids(const gs_catalog_t *cat, char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < cat->n_gi && len < size; i++) {
    int n =
        snprintf(buf + len, size - len, "%s%u", i ? ", " : "", cat->gi[i].id);
    if (n < 0)
      break;
    len += (size_t)n;
  }
}

static void list_ci_sizes(const gs_gi_profile_t *gi, char *buf, size_t size) {
  size_t len = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < gi->n_ci && len < size; i++) {
    int n = snprintf(buf + len, size - len, "%s%uc", i ? ", " : "",
                     gi->ci[i].compute_slices);
    if (n < 0)
      break;
    len += (size_t)n;
  }
}

static int not_found(const gs_catalog_t *cat, const char *name,
                     gs_error_t *err) {
  suggestion_t best = {0};
  char device[SUGGEST_MAX];
  for (unsigned i = 0; i < cat->n_gi && i < GS_MAX_GI_PROFILES; i++)
    suggest_consider(&best, name, cat->gi[i].name);
  for (unsigned i = 0; i < cat->n_gi && i < GS_MAX_GI_PROFILES; i++) {
    const gs_gi_profile_t *gi = &cat->gi[i];
    for (unsigned k = 0; k < gi->n_ci && k < GS_MAX_CI_PROFILES; k++) {
      if (gi->ci[k].compute_slices == gi->compute_slices)
        continue;
      gs_catalog_device_name(gi, &gi->ci[k], device, sizeof device);
      suggest_consider(&best, name, device);
    }
  }
  char shown[PROFILE_TEXT_MAX + 1];
  printable_copy(shown, sizeof shown, name);
  if (!best.name[0])
    return gs_error_set(err, GS_ENOTFOUND, "unknown profile '%s' for %s", shown,
                        cat->model);
  return gs_error_set(err, GS_ENOTFOUND,
                      "unknown profile '%s' for %s; did you mean '%s'?", shown,
                      cat->model, best.name);
}

static int resolve_id(const gs_catalog_t *cat, const char *digits,
                      gs_profile_ref_t *ref, gs_error_t *err) {
  unsigned id = 0;
  const gs_gi_profile_t *gi = parse_decimal(digits, strlen(digits), 9, &id)
                                  ? gs_catalog_gi(cat, id)
                                  : NULL;
  if (gi) {
    ref->gi_profile_id = gi->id;
    return GS_OK;
  }
  char ids[128];
  list_ids(cat, ids, sizeof ids);
  return gs_error_set(err, GS_ENOTFOUND, "no profile ID %s on %s (IDs: %s)",
                      digits, cat->model, ids);
}

/* Resolves a name without "MIG " or ":START": an ID, a GI name or
 * "Nc.<GI name>" (a compute instance of N slices inside that GI). */
static int resolve_name(const gs_catalog_t *cat, const char *name,
                        gs_profile_ref_t *ref, gs_error_t *err) {
  size_t digits = strspn(name, "0123456789");
  if (digits > 0 && name[digits] == '\0')
    return resolve_id(cat, name, ref, err);
  const gs_gi_profile_t *gi = gi_by_name(cat, name);
  if (gi) {
    ref->gi_profile_id = gi->id;
    return GS_OK;
  }
  unsigned n = 0;
  if (!parse_decimal(name, digits, 2, &n) || ascii_lower(name[digits]) != 'c' ||
      name[digits + 1] != '.' || !(gi = gi_by_name(cat, name + digits + 2)))
    return not_found(cat, name, err);
  for (unsigned k = 0; k < gi->n_ci && k < GS_MAX_CI_PROFILES; k++) {
    if (gi->ci[k].compute_slices == n) {
      ref->gi_profile_id = gi->id;
      ref->ci_profile_id = (int)gi->ci[k].id;
      return GS_OK;
    }
  }
  char sizes[64];
  list_ci_sizes(gi, sizes, sizeof sizes);
  return gs_error_set(err, GS_EINVAL,
                      "profile %s has no %uc compute instance: CI sizes are %s",
                      gi->name, n, sizes);
}

int gs_profile_parse(const gs_catalog_t *cat, const char *text,
                     bool allow_start, gs_profile_ref_t *out, gs_error_t *err) {
  if (!cat || !text || !out)
    return gs_error_set(err, GS_EINVAL, "no profile given");
  size_t len = strnlen(text, PROFILE_TEXT_MAX + 1);
  if (len > PROFILE_TEXT_MAX)
    return gs_error_set(err, GS_EINVAL, "profile name is longer than %d bytes",
                        PROFILE_TEXT_MAX);
  char shown[PROFILE_TEXT_MAX + 1];
  printable_copy(shown, sizeof shown, text);
  const char *body = text;
  if (len >= 4 && prefix_nocase("MIG ", text))
    body += 4; /* as nvidia-smi prints profile names */
  if (*body == '\0')
    return gs_error_set(err, GS_EINVAL, "empty profile name");
  for (const char *p = body; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return gs_error_set(err, GS_EINVAL,
                          "profile '%s' contains a space or control character",
                          shown);

  char name[PROFILE_TEXT_MAX + 1];
  snprintf(name, sizeof name, "%s", body);
  char *colon = strchr(name, ':');
  unsigned start = 0;
  if (colon) {
    if (!allow_start)
      return gs_error_set(err, GS_EINVAL,
                          "profile '%s': a start slice (':N') is not "
                          "accepted here",
                          shown);
    if (!parse_decimal(colon + 1, strlen(colon + 1), 9, &start))
      return gs_error_set(err, GS_EINVAL,
                          "profile '%s': the start after ':' must be a slice "
                          "number",
                          shown);
    *colon = '\0';
  }
  if (name[0] == '\0')
    return gs_error_set(err, GS_EINVAL, "profile '%s' has no name", shown);

  gs_profile_ref_t ref = {.ci_profile_id = -1, .start = -1};
  int rc = resolve_name(cat, name, &ref, err);
  if (rc != GS_OK)
    return rc;
  if (colon) {
    const gs_gi_profile_t *gi = gs_catalog_gi(cat, ref.gi_profile_id);
    if (start >= 32 || !(gi->start_mask & (UINT32_C(1) << start))) {
      char starts[96];
      gs_format_starts(gi->start_mask, starts, sizeof starts);
      return gs_error_set(err, GS_EINVAL,
                          "profile %s cannot start at slice %u: starts are %s",
                          gi->name, start, starts);
    }
    ref.start = (int)start;
  }
  *out = ref;
  return GS_OK;
}

/* Appends "; " and a formatted clause to buf while room is left. */
__attribute__((format(printf, 3, 4))) static void
append_clause(char *buf, unsigned size, const char *fmt, ...) {
  size_t len = strlen(buf);
  if (len + 4 >= size)
    return;
  if (len)
    len += (size_t)snprintf(buf + len, size - len, "; ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, size - len, fmt, ap);
  va_end(ap);
}

void gs_catalog_differences(const gs_catalog_t *live, const gs_catalog_t *table,
                            char *buf, unsigned size) {
  if (size == 0)
    return;
  buf[0] = '\0';
  for (unsigned i = 0; i < table->n_gi; i++)
    if (!gs_catalog_gi(live, table->gi[i].id))
      append_clause(buf, size, "profile %u (%s) not offered", table->gi[i].id,
                    table->gi[i].name);
  for (unsigned i = 0; i < live->n_gi; i++) {
    const gs_gi_profile_t *l = &live->gi[i];
    const gs_gi_profile_t *t = gs_catalog_gi(table, l->id);
    if (!t) {
      append_clause(buf, size, "profile %u (%s) not in the table", l->id,
                    l->name);
      continue;
    }
    if (strcmp(l->name, t->name) != 0)
      append_clause(buf, size, "profile %u: name %s, table %s", l->id, l->name,
                    t->name);
    if (t->memory_mib && l->memory_mib != t->memory_mib)
      append_clause(buf, size,
                    "profile %u: memory %" PRIu64 " MiB, table %" PRIu64, l->id,
                    l->memory_mib, t->memory_mib);
    if (t->sms && l->sms != t->sms)
      append_clause(buf, size, "profile %u: %u SMs, table %u", l->id, l->sms,
                    t->sms);
    if (l->max_count != t->max_count)
      append_clause(buf, size, "profile %u: at most %u, table %u", l->id,
                    l->max_count, t->max_count);
    if (l->start_mask != t->start_mask || l->memory_slices != t->memory_slices)
      append_clause(buf, size, "profile %u: placements differ", l->id);
  }
}
