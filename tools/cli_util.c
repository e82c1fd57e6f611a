/* CLI helpers: errors, backend and device loading, tables and layouts in
 * text and JSON. */
#include "cli.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Milliseconds since this process started (exec and the dynamic loader
 * included: the kernel's start time, at its tick's resolution); -1 when
 * /proc cannot say. */
int cli_plan_before_ready(const char *verb, const char *val, unsigned *n) {
  *n = 0;
  if (strcmp(val, "all") != 0 &&
      (val[strspn(val, "0123456789")] || !*val || strlen(val) > 7 ||
       (*n = (unsigned)strtoul(val, NULL, 10)) < 1 ||
       *n > CLI_PLAN_BEFORE_READY_MAX))
    return cli_usage(verb, "--plan-before-ready: '%s' is not N (1..%u) or all",
                     val, CLI_PLAN_BEFORE_READY_MAX);
  return CLI_OK;
}

long cli_process_age_ms(void) {
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* the name may hold spaces */
  unsigned long long start = 0;
  /* after the name: state is field 3, starttime field 22 */
  if (!p || sscanf(p + 2,
                   "%*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
                   "%*s %*s %*s %*s %*s %*s %*s %llu",
                   &start) != 1)
    return -1;
  long tick = sysconf(_SC_CLK_TCK);
  struct timespec now;
  if (tick <= 0 || clock_gettime(CLOCK_BOOTTIME, &now) != 0)
    return -1;
  long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 -
                 (long long)(start * 1000 / (unsigned long long)tick);
  return ms < 0 ? 0 : (long)ms;
}

int cli_fail(const char *verb, const gs_error_t *err) {
  fprintf(stderr, "gpuslice: %s: %s\n", verb,
          err->msg[0] ? err->msg : gs_strerror(err->code));
  return gs_error_exit_status(err->code);
}

int cli_usage(const char *verb, const char *fmt, ...) {
  /* verb "gpuslice": a global option, named once ("gpuslice: ...",
   * "see 'gpuslice --help'"), not as a verb of its own. */
  bool global = strcmp(verb, "gpuslice") == 0;
  va_list ap;
  fprintf(stderr, global ? "gpuslice: " : "gpuslice: %s: ", verb);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (global)
    fprintf(stderr, " (see 'gpuslice --help')\n");
  else
    fprintf(stderr, " (see 'gpuslice %s --help')\n", verb);
  return CLI_USAGE;
}

int cli_parse_uint(const char *text, const char *what, unsigned max,
                   unsigned *out, gs_error_t *err) {
  unsigned long long v = 0;
  const char *p = text;
  for (; *p >= '0' && *p <= '9' && v <= max; p++)
    v = v * 10 + (unsigned)(*p - '0');
  if (p == text || *p != '\0' || v > max)
    return gs_error_set(err, GS_EINVAL, "%s '%s' is not a number from 0 to %u",
                        what, text, max);
  *out = (unsigned)v;
  return GS_OK;
}

int cli_open_backend(cli_t *cli, gs_backend_t **be, gs_error_t *err) {
  cli->opt.state_dir = cli->state_dir;
  return gs_backend_open(be, cli->backend, &cli->opt, err);
}

int cli_load_devices(gs_backend_t *be, gs_device_t *devs, unsigned *n,
                     gs_error_t *err) {
  unsigned count = 0;
  int rc = be->ops->device_count(be, &count, err);
  if (rc != GS_OK)
    return rc;
  if (count > GS_MAX_DEVICES)
    count = GS_MAX_DEVICES;
  for (unsigned d = 0; d < count; d++) {
    rc = be->ops->device_get(be, d, &devs[d], err);
    if (rc != GS_OK)
      return rc;
  }
  *n = count;
  return GS_OK;
}

int cli_open_devices(cli_t *cli, gs_backend_t **be, gs_device_t **devs,
                     unsigned *n, gs_error_t *err) {
  *be = NULL;
  *n = 0;
  *devs = calloc(GS_MAX_DEVICES, sizeof **devs);
  if (!*devs)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = cli_open_backend(cli, be, err);
  if (rc == GS_OK)
    rc = cli_load_devices(*be, *devs, n, err);
  if (rc != GS_OK) {
    free(*devs);
    *devs = NULL;
    gs_backend_close(*be);
    *be = NULL;
  }
  return rc;
}

int cli_virtual_device(const char *model, gs_device_t *dev, gs_error_t *err) {
  memset(dev, 0, sizeof *dev);
  int rc = gs_catalog_for_model(&dev->catalog, model, err);
  if (rc != GS_OK)
    return rc;
  snprintf(dev->name, sizeof dev->name, "%s", dev->catalog.product);
  snprintf(dev->uuid, sizeof dev->uuid, "PLAN-%s", dev->catalog.model);
  dev->pci_device_id =
      dev->catalog.n_pci_ids ? dev->catalog.pci_device_ids[0] : 0;
  gs_layout_init(&dev->layout);
  return GS_OK;
}

void cli_format_mib(uint64_t mib, char *buf, size_t size) {
  if (mib == 0)
    snprintf(buf, size, "?");
  else
    snprintf(buf, size, "%.2f", (double)mib / 1024.0);
}

/* ---- tables -------------------------------------------------------------- */

void cli_table_header(cli_table_t *t, unsigned n, const char *const *names) {
  memset(t, 0, sizeof *t);
  t->n_cols = n;
  for (unsigned c = 0; c < n; c++)
    t->cell[0][c] = strdup(names[c]);
  t->n_rows = 1;
}

void cli_table_row(cli_table_t *t, ...) {
  va_list ap;
  va_start(ap, t);
  if (t->n_rows < CLI_TABLE_MAX_ROWS) {
    for (unsigned c = 0; c < t->n_cols; c++) {
      const char *v = va_arg(ap, const char *);
      t->cell[t->n_rows][c] = strdup(v ? v : "");
    }
    t->n_rows++;
  }
  va_end(ap);
}

void cli_table_print(cli_table_t *t, FILE *out) {
  size_t width[CLI_TABLE_MAX_COLS] = {0};
  for (unsigned r = 0; r < t->n_rows; r++)
    for (unsigned c = 0; c < t->n_cols; c++)
      if (t->cell[r][c] && strlen(t->cell[r][c]) > width[c])
        width[c] = strlen(t->cell[r][c]);
  for (unsigned r = 0; r < t->n_rows; r++) {
    for (unsigned c = 0; c < t->n_cols; c++) {
      const char *v = t->cell[r][c] ? t->cell[r][c] : "";
      if (c + 1 == t->n_cols)
        fprintf(out, "%s\n", v);
      else
        fprintf(out, "%-*s  ", (int)width[c], v);
      free(t->cell[r][c]);
      t->cell[r][c] = NULL;
    }
  }
  t->n_rows = 0;
}

void cli_table_release(cli_table_t *t) {
  for (unsigned r = 0; r < t->n_rows; r++)
    for (unsigned c = 0; c < t->n_cols; c++) {
      free(t->cell[r][c]);
      t->cell[r][c] = NULL;
    }
  t->n_rows = 0;
}

void cli_print_json(json_t *doc) {
  char *text = json_dumps(doc, JSON_INDENT(2));
  if (text) {
    puts(text);
    free(text);
  }
  json_decref(doc);
}

/* ---- layouts ------------------------------------------------------------- */

static const char *unit_name(const gs_device_t *dev) {
  return dev->catalog.source == GS_CATALOG_HOST ? "cores" : "SMs";
}

/* GI i's green-isolation SMs when layout is the device's own. */
static bool green_sms(const gs_device_t *dev, const gs_layout_t *layout,
                      unsigned i, unsigned *first, unsigned *count) {
  if (layout != &dev->layout || i >= GS_MAX_GIS || !dev->sm_count[i])
    return false;
  *first = dev->sm_first[i];
  *count = dev->sm_count[i];
  return true;
}

json_t *cli_layout_json(const gs_device_t *dev, const gs_layout_t *layout) {
  json_t *gis = json_array();
  for (unsigned i = 0; i < layout->n_gi; i++) {
    const gs_gi_t *gi = &layout->gi[i];
    const gs_gi_profile_t *p = gs_catalog_gi(&dev->catalog, gi->profile_id);
    json_t *cis = json_array();
    for (unsigned j = 0; j < gi->n_ci; j++) {
      const gs_ci_t *ci = &gi->ci[j];
      char name[64] = "?";
      if (p)
        gs_catalog_device_name(p, gs_catalog_ci(p, ci->profile_id), name,
                               sizeof name);
      json_array_append_new(
          cis, json_pack("{s:i, s:s, s:i, s:i, s:s}", "id", (int)ci->id,
                         "profile", name, "profile_id", (int)ci->profile_id,
                         "start", (int)ci->start, "uuid", ci->uuid));
    }
    json_array_append_new(
        gis, json_pack("{s:i, s:s, s:i, s:i, s:i, s:I, s:i, s:s, s:o}", "id",
                       (int)gi->id, "profile", p ? p->name : "?", "profile_id",
                       (int)gi->profile_id, "start", (int)gi->start, "size",
                       p ? (int)p->memory_slices : 0, "memory_mib",
                       (json_int_t)(p ? p->memory_mib : 0), unit_name(dev),
                       p ? (int)p->sms : 0, "uuid", gi->uuid,
                       "compute_instances", cis));
    unsigned first, count;
    if (green_sms(dev, layout, i, &first, &count))
      json_object_set_new(
          json_array_get(gis, json_array_size(gis) - 1), "sm_partition",
          json_pack("{s:i, s:i}", "first", (int)first, "count", (int)count));
  }
  return json_pack("{s:i, s:s, s:s, s:b, s:o}", "index", (int)dev->index,
                   "name", dev->name, "model", dev->catalog.model,
                   "mig_enabled", layout->mig_enabled, "gpu_instances", gis);
}

void cli_print_layout(const gs_device_t *dev, const gs_layout_t *layout,
                      FILE *out) {
  static const char *const head[] = {
      "DEV", "GI", "CI", "PROFILE", "PLACEMENT", "SMS", "MEMORY GiB", "UUID"};
  cli_table_t *t = calloc(1, sizeof *t);
  if (!t)
    return;
  cli_table_header(t, 8, head);
  free(t->cell[0][5]);
  t->cell[0][5] =
      strdup(dev->catalog.source == GS_CATALOG_HOST ? "CORES" : "SMS");
  for (unsigned i = 0; i < layout->n_gi; i++) {
    const gs_gi_t *gi = &layout->gi[i];
    const gs_gi_profile_t *p = gs_catalog_gi(&dev->catalog, gi->profile_id);
    char d[16], g[16], place[32], sms[16], mem[32];
    snprintf(d, sizeof d, "%u", dev->index);
    snprintf(g, sizeof g, "%u", gi->id);
    snprintf(place, sizeof place, "%u:%u", gi->start, p ? p->memory_slices : 0);
    unsigned first, count;
    if (green_sms(dev, layout, i, &first, &count))
      snprintf(sms, sizeof sms, "%u@%u-%u", count, first, first + count - 1);
    else
      snprintf(sms, sizeof sms, "%u", p ? p->sms : 0);
    cli_format_mib(p ? p->memory_mib : 0, mem, sizeof mem);
    cli_table_row(t, d, g, "-", p ? p->name : "?", place, sms, mem, gi->uuid);
    for (unsigned j = 0; j < gi->n_ci; j++) {
      const gs_ci_t *ci = &gi->ci[j];
      const gs_ci_profile_t *cp = p ? gs_catalog_ci(p, ci->profile_id) : NULL;
      char c[16], name[64] = "?", cplace[32], csms[16] = "?";
      snprintf(c, sizeof c, "%u", ci->id);
      if (p)
        gs_catalog_device_name(p, cp, name, sizeof name);
      snprintf(cplace, sizeof cplace, "%u:%u", ci->start,
               cp ? cp->compute_slices : 0);
      if (p && cp && p->compute_slices) {
        unsigned whole = p->sms * cp->compute_slices;
        if (whole % p->compute_slices == 0)
          snprintf(csms, sizeof csms, "%u", whole / p->compute_slices);
        else
          snprintf(csms, sizeof csms, "%.1f",
                   (double)whole / p->compute_slices);
      }
      cli_table_row(t, d, g, c, name, cplace, csms, "", ci->uuid);
    }
  }
  if (layout->n_gi == 0) {
    cli_table_release(t);
    fprintf(out, "device %u (%s): %s\n", dev->index, dev->name,
            layout->mig_enabled ? "no instances"
                                : "partitioning disabled (whole device)");
  } else
    cli_table_print(t, out);
  free(t);
}

static void print_plan_gi(FILE *out, const char *verb, const gs_device_t *dev,
                          const gs_layout_t *before, unsigned gi_id) {
  const gs_gi_t *gi = gs_layout_find_gi_const(before, gi_id);
  const gs_gi_profile_t *p =
      gi ? gs_catalog_gi(&dev->catalog, gi->profile_id) : NULL;
  if (!gi || !p)
    fprintf(out, "  %s GPU instance %u\n", verb, gi_id);
  else
    fprintf(out, "  %s GPU instance %u (%s at %u:%u)\n", verb, gi->id, p->name,
            gi->start, p->memory_slices);
}

void cli_print_plan(const gs_device_t *dev, const gs_layout_t *before,
                    const gs_plan_t *plan, FILE *out) {
  if (plan->set_mig_mode)
    fprintf(out, "  device %u: %s partitioning\n", dev->index,
            plan->mig_enabled ? "enable" : "disable");
  for (unsigned i = 0; i < plan->n_keep; i++)
    print_plan_gi(out, "keep    ", dev, before, plan->keep_gi[i]);
  for (unsigned i = 0; i < plan->n_destroy; i++)
    print_plan_gi(out, "destroy ", dev, before, plan->destroy_gi[i]);
  for (unsigned i = 0; i < plan->n_create; i++) {
    const gs_plan_create_t *c = &plan->create[i];
    const gs_gi_profile_t *p = gs_catalog_gi(&dev->catalog, c->profile_id);
    fprintf(out, "  create   %s at %u:%u with", p ? p->name : "?", c->start,
            p ? p->memory_slices : 0);
    for (unsigned j = 0; j < c->n_ci; j++) {
      char name[64] = "?";
      if (p)
        gs_catalog_device_name(p, gs_catalog_ci(p, c->ci_profile_id[j]), name,
                               sizeof name);
      fprintf(out, "%s %s at %u", j ? "," : "", name, c->ci_start[j]);
    }
    fprintf(out, c->n_ci ? "\n" : " no compute instance\n");
  }
}
