/* Options declared once (cli_opts.h): from a command's table come
 * getopt_long's arrays, the usage's option list, the serve.yaml keys, the
 * defaults and the checks, so an option is added in one place. */
#include "cli_opts.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LONG_ONLY 256 /* getopt val of the table's entry i: LONG_ONLY + i */
#define HELP_COLUMN 30
#define LINE_WIDTH 79

const char *cli_opt_label(const cli_opt_t *o, char *buf, size_t size) {
  if (o->name)
    snprintf(buf, size, "--%s", o->name);
  else
    snprintf(buf, size, "-%c", o->short_name);
  return buf;
}

static bool takes_value(const cli_opt_t *o) {
  return o->type != CLI_OPT_FLAG && o->type != CLI_OPT_HELP;
}

static size_t n_choices(const cli_opt_t *o) {
  size_t n = 0;
  while (n < CLI_OPT_MAX_CHOICES && o->choices[n])
    n++;
  return n;
}

/* "a or b", "a, b or c" */
static void choice_list(const cli_opt_t *o, char *buf, size_t size) {
  size_t n = n_choices(o), len = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < n && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%s",
                            i == 0       ? ""
                            : i + 1 == n ? " or "
                                         : ", ",
                            o->choices[i]);
}

typedef union value_u {
  unsigned u;
  double d;
  int choice;
} value_t;

/* Checks val against the option's type and range; why says what it must
 * be when it is not. */
static bool check_value(const cli_opt_t *o, const char *val, value_t *v,
                        char *why, size_t size) {
  gs_error_t err;
  char *end;
  switch (o->type) {
  case CLI_OPT_UINT:
    if (cli_parse_uint(val, "", o->max, &v->u, &err) == GS_OK && v->u >= o->min)
      return true;
    snprintf(why, size, "a whole number from %u to %u", o->min, o->max);
    return false;
  case CLI_OPT_DOUBLE:
    v->d = strtod(val, &end);
    if (end != val && !*end && isfinite(v->d) && v->d >= o->dmin)
      return true;
    snprintf(why, size, "a number >= %g", o->dmin);
    return false;
  case CLI_OPT_CHOICE:
    for (size_t i = 0; i < n_choices(o); i++)
      if (strcmp(val, o->choices[i]) == 0) {
        v->choice = (int)i;
        return true;
      }
    char list[128];
    choice_list(o, list, sizeof list);
    snprintf(why, size, "expected %s", list);
    return false;
  default:
    return true;
  }
}

int cli_opts_take(const cli_opts_t *spec, void *ctx, const cli_opt_t *o,
                  const char *val) {
  char *at = (char *)ctx + o->offset, label[64], why[160];
  value_t v;
  if (takes_value(o) && o->type != CLI_OPT_STRING &&
      o->type != CLI_OPT_CUSTOM && !check_value(o, val, &v, why, sizeof why))
    return cli_usage(spec->verb, "%s '%s': %s",
                     cli_opt_label(o, label, sizeof label), val, why);
  switch (o->type) {
  case CLI_OPT_FLAG:
    *(bool *)at = true;
    break;
  case CLI_OPT_STRING:
    *(const char **)at = val;
    break;
  case CLI_OPT_UINT:
    *(unsigned *)at = v.u;
    break;
  case CLI_OPT_DOUBLE:
    *(double *)at = v.d;
    break;
  case CLI_OPT_CHOICE:
    *(int *)at = v.choice;
    break;
  case CLI_OPT_CUSTOM:
    return o->parse(ctx, spec, o, val);
  case CLI_OPT_HELP:
    break;
  }
  return CLI_OK;
}

int cli_opt_uint(const cli_opts_t *spec, const cli_opt_t *o, const char *val,
                 unsigned *out) {
  cli_opt_t as_uint = *o;
  as_uint.type = CLI_OPT_UINT;
  char label[64], why[160];
  value_t v;
  if (!check_value(&as_uint, val, &v, why, sizeof why))
    return cli_usage(spec->verb, "%s '%s': %s",
                     cli_opt_label(o, label, sizeof label), val, why);
  *out = v.u;
  return CLI_OK;
}

int cli_opts_defaults(const cli_opts_t *spec, void *ctx) {
  for (size_t i = 0; i < spec->n; i++) {
    int rc;
    if (spec->opt[i].def && (rc = cli_opts_take(spec, ctx, &spec->opt[i],
                                                spec->opt[i].def)) != CLI_OK)
      return rc;
  }
  return CLI_OK;
}

static void build_getopt(const cli_opts_t *spec, struct option *longs,
                         char *shorts) {
  size_t nl = 0, ns = 0;
  for (size_t i = 0; i < spec->n && i < CLI_OPTS_MAX; i++) {
    const cli_opt_t *o = &spec->opt[i];
    int val = o->short_name ? o->short_name : LONG_ONLY + (int)i;
    if (o->name)
      longs[nl++] = (struct option){
          o->name, takes_value(o) ? required_argument : no_argument, NULL, val};
    if (o->short_name) {
      shorts[ns++] = (char)o->short_name;
      if (takes_value(o))
        shorts[ns++] = ':';
    }
  }
  longs[nl] = (struct option){0};
  shorts[ns] = '\0';
}

static const cli_opt_t *by_val(const cli_opts_t *spec, int val) {
  if (val >= LONG_ONLY && (size_t)(val - LONG_ONLY) < spec->n)
    return &spec->opt[val - LONG_ONLY];
  for (size_t i = 0; i < spec->n; i++)
    if (spec->opt[i].short_name && spec->opt[i].short_name == val)
      return &spec->opt[i];
  return NULL;
}

int cli_opts_parse(const cli_opts_t *spec, void *ctx, int argc, char **argv,
                   bool *help) {
  struct option longs[CLI_OPTS_MAX + 1];
  char shorts[2 * CLI_OPTS_MAX + 1];
  int c, rc;
  build_getopt(spec, longs, shorts);
  *help = false;
  optind = 0;
  while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
    const cli_opt_t *o = c == '?' ? NULL : by_val(spec, c);
    if (!o)
      return cli_usage(spec->verb, "bad option");
    if (o->type == CLI_OPT_HELP) {
      cli_opts_usage(spec, stdout);
      *help = true;
      return CLI_OK;
    }
    if ((rc = cli_opts_take(spec, ctx, o, optarg)) != CLI_OK)
      return rc;
  }
  if (optind < argc)
    return cli_usage(spec->verb, "unexpected argument '%s'", argv[optind]);
  return CLI_OK;
}

const cli_opt_t *cli_opts_key(const cli_opts_t *spec, const char *key) {
  for (size_t i = 0; i < spec->n; i++)
    if (spec->opt[i].key && strcmp(spec->opt[i].key, key) == 0)
      return &spec->opt[i];
  return NULL;
}

/* ---- usage ---------------------------------------------------------------
 */

/* text from column col, words wrapped at LINE_WIDTH onto HELP_COLUMN. */
static void print_wrapped(FILE *out, int col, const char *text) {
  for (const char *p = text; *p;) {
    size_t word = strcspn(p, " ");
    if (col > HELP_COLUMN && col + 1 + (int)word > LINE_WIDTH) {
      fprintf(out, "\n%*s", HELP_COLUMN, "");
      col = HELP_COLUMN;
    } else if (col > HELP_COLUMN) {
      col += fprintf(out, " ");
    }
    col += fprintf(out, "%.*s", (int)word, p);
    p += word;
    while (*p == ' ')
      p++;
  }
  fputc('\n', out);
}

static void print_option(FILE *out, const cli_opt_t *o) {
  char arg[128], text[512];
  int col;
  if (o->type == CLI_OPT_CHOICE && !o->arg) {
    size_t len = 0;
    for (size_t i = 0; i < n_choices(o); i++)
      len += (size_t)snprintf(arg + len, sizeof arg - len, "%s%s", i ? "|" : "",
                              o->choices[i]);
  } else {
    snprintf(arg, sizeof arg, "%s", o->arg ? o->arg : "VALUE");
  }
  const char *a = takes_value(o) ? arg : NULL;
  if (o->short_name && o->name)
    col = fprintf(out, "  -%c, --%s%s%s", o->short_name, o->name, a ? " " : "",
                  a ? a : "");
  else if (o->name)
    col = fprintf(out, "      --%s%s%s", o->name, a ? " " : "", a ? a : "");
  else
    col = fprintf(out, "  -%c%s%s", o->short_name, a ? " " : "", a ? a : "");
  if (col >= HELP_COLUMN - 1) {
    fputc('\n', out);
    col = 0;
  }
  fprintf(out, "%*s", HELP_COLUMN - col, "");
  size_t len = (size_t)snprintf(text, sizeof text, "%s", o->help);
  if (o->type == CLI_OPT_UINT || (o->type == CLI_OPT_CUSTOM && o->max))
    len += (size_t)snprintf(text + len, sizeof text - len, " (%u..%u%s%s)",
                            o->min, o->max, o->def ? ", default " : "",
                            o->def ? o->def : "");
  else if (o->type == CLI_OPT_DOUBLE)
    len +=
        (size_t)snprintf(text + len, sizeof text - len, " (>= %g%s%s)", o->dmin,
                         o->def ? ", default " : "", o->def ? o->def : "");
  else if (o->def)
    len += (size_t)snprintf(text + len, sizeof text - len, " (default %s)",
                            o->def);
  (void)len;
  print_wrapped(out, HELP_COLUMN, text);
}

void cli_opts_usage(const cli_opts_t *spec, FILE *out) {
  fputs(spec->synopsis, out);
  if (spec->about)
    fputs(spec->about, out);
  fputs("options:\n", out);
  for (size_t i = 0; i < spec->n; i++)
    print_option(out, &spec->opt[i]);
}

/* ---- the table's own consistency ------------------------------------------
 */

static int bad(char *buf, size_t size, const cli_opt_t *o, const char *what) {
  char label[64];
  snprintf(buf, size, "%s: %s", cli_opt_label(o, label, sizeof label), what);
  return -1;
}

static int check_names(const cli_opts_t *spec, size_t i, char *buf,
                       size_t size) {
  const cli_opt_t *o = &spec->opt[i];
  for (size_t j = 0; j < i; j++) {
    const cli_opt_t *p = &spec->opt[j];
    if (o->name && p->name && strcmp(o->name, p->name) == 0)
      return bad(buf, size, o, "declared twice");
    if (o->short_name && o->short_name == p->short_name)
      return bad(buf, size, o, "short option used twice");
    if (o->key && p->key && strcmp(o->key, p->key) == 0)
      return bad(buf, size, o, "YAML key used twice");
  }
  if (o->key) { /* the key is the long name with _ for - */
    size_t n = strlen(o->key);
    if (!o->name || strlen(o->name) != n)
      return bad(buf, size, o, "YAML key is not the option's name");
    for (size_t k = 0; k < n; k++)
      if (o->key[k] != (o->name[k] == '-' ? '_' : o->name[k]))
        return bad(buf, size, o, "YAML key is not the option's name");
    if (!takes_value(o))
      return bad(buf, size, o, "a YAML key needs a value");
  }
  return 0;
}

int cli_opts_check(const cli_opts_t *spec, char *buf, size_t size) {
  if (spec->n > CLI_OPTS_MAX)
    return snprintf(buf, size, "more than %d options", CLI_OPTS_MAX), -1;
  for (size_t i = 0; i < spec->n; i++) {
    const cli_opt_t *o = &spec->opt[i];
    char why[160];
    value_t v;
    if (!o->name && !o->short_name)
      return snprintf(buf, size, "option %zu has no name", i), -1;
    if (!o->help || !o->help[0])
      return bad(buf, size, o, "no help");
    if (o->type == CLI_OPT_UINT && o->min > o->max)
      return bad(buf, size, o, "min above max");
    if (o->type == CLI_OPT_CHOICE && n_choices(o) < 2)
      return bad(buf, size, o, "a choice of fewer than two");
    if (o->type == CLI_OPT_CUSTOM && !o->parse)
      return bad(buf, size, o, "custom without a parse function");
    if (o->def && !takes_value(o))
      return bad(buf, size, o, "a default on an option without a value");
    cli_opt_t as_uint = *o; /* a custom option's number */
    if (o->type == CLI_OPT_CUSTOM && o->max)
      as_uint.type = CLI_OPT_UINT;
    if (o->def && !check_value(&as_uint, o->def, &v, why, sizeof why))
      return bad(buf, size, o, "default out of range");
    if (check_names(spec, i, buf, size) != 0)
      return -1;
  }
  return 0;
}
