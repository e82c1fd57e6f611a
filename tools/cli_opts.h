/* Options declared once: a command's table of (name, short option, type,
 * range, default, help, serve.yaml key) gives getopt_long's arrays, the
 * option list of its usage, the YAML key lookup, the defaults and the range
 * checks with their messages (redis's config table is the model). */
#ifndef GPUSLICE_CLI_OPTS_H
#define GPUSLICE_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
  CLI_OPT_FLAG,   /* no value: sets a bool */
  CLI_OPT_STRING, /* a const char * into argv (or the file's kept text) */
  CLI_OPT_UINT,   /* an unsigned from min to max, digits only */
  CLI_OPT_DOUBLE, /* a finite double >= dmin */
  CLI_OPT_CHOICE, /* one of choices: its index, stored as an int (an enum) */
  CLI_OPT_CUSTOM, /* the command's own parse (lists, HOST:PORT, "any") */
  CLI_OPT_HELP,   /* prints the usage */
} cli_opt_type_t;

#define CLI_OPT_MAX_CHOICES 4

struct cli_opts_s;

typedef struct cli_opt_s {
  const char *name; /* long option without "--"; NULL: short only */
  int short_name;   /* 0: long only */
  cli_opt_type_t type;
  const char *arg;   /* the value in the usage: N, MS, DIR */
  unsigned min, max; /* CLI_OPT_UINT (and a custom option's number) */
  double dmin;       /* CLI_OPT_DOUBLE */
  const char *choices[CLI_OPT_MAX_CHOICES]; /* CLI_OPT_CHOICE, by value */
  const char *def;  /* applied by cli_opts_defaults; NULL: none */
  const char *help; /* one line; the range and default are added */
  const char *key;  /* serve.yaml key; NULL: not in the file */
  size_t offset;    /* where the value goes in the command's struct */
  /* CLI_OPT_CUSTOM: CLI_OK, or the exit status after printing why. */
  int (*parse)(void *ctx, const struct cli_opts_s *spec,
               const struct cli_opt_s *o, const char *val);
} cli_opt_t;

typedef struct cli_opts_s {
  const char *verb;     /* "serve": messages say "gpuslice: serve: ..." */
  const char *synopsis; /* the "usage: ..." lines */
  const char *about;    /* what the command does, after the synopsis */
  const cli_opt_t *opt;
  size_t n;
  size_t ctx_size; /* the command's struct the offsets are into */
} cli_opts_t;

#define CLI_OPTS_MAX 48 /* options of one command */

/* Stores every option's default (parsed as if given). CLI_OK or the
 * status of a default that does not pass its own check. */
int cli_opts_defaults(const cli_opts_t *spec, void *ctx);
/* Parses argv (argv[0] is the verb) in order into ctx. --help prints the
 * usage on stdout and sets *help. CLI_OK or the exit status after
 * printing what was wrong (the option and the bad value). */
int cli_opts_parse(const cli_opts_t *spec, void *ctx, int argc, char **argv,
                   bool *help);
/* One option's value, checked against its type and range. */
int cli_opts_take(const cli_opts_t *spec, void *ctx, const cli_opt_t *o,
                  const char *val);
/* The option a serve.yaml key names; NULL when no option has that key. */
const cli_opt_t *cli_opts_key(const cli_opts_t *spec, const char *key);
/* Synopsis, about, then one line per option with its range and default. */
void cli_opts_usage(const cli_opts_t *spec, FILE *out);
/* val as a number from o->min to o->max (a custom option's number), or
 * CLI_USAGE after the message naming the option and the value. */
int cli_opt_uint(const cli_opts_t *spec, const cli_opt_t *o, const char *val,
                 unsigned *out);
/* "--name" or "-x", for messages. */
const char *cli_opt_label(const cli_opt_t *o, char *buf, size_t size);
/* Whether the table holds together: names, help, defaults within range,
 * keys; 0 or a message in buf (for the unit test). */
int cli_opts_check(const cli_opts_t *spec, char *buf, size_t size);

#endif
