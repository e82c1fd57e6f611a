/* Verbs that read or change layouts: create, destroy, list, apply, assert,
 * export. Each one parses its flags, calls libgpuslice, prints: every
 * change is planned and run by src/apply (gs_change_run). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gpuslice/config.h"

static const char create_usage[] =
    "usage: gpuslice create [--dry-run] [--gpu MODEL] [-d DEV] "
    "PROFILE[:START]... [--ci CI[,CI...]]\n"
    "  PROFILE: name (1g.10gb), 'MIG 1g.10gb', ID (19) or CI-qualified "
    "(1c.3g.40gb);\n"
    "  several may be given comma-separated (19,19,14) as nvidia-smi -cgi "
    "takes them.\n"
    "  --ci: compute instances to create in each new GPU instance (1c, 2c, "
    "or IDs);\n"
    "        default: one spanning the whole GPU instance (nvidia-smi -C).\n";

static int report_change(cli_t *cli, const char *verb,
                         const gs_apply_report_t *rep, bool dry_run) {
  if (cli->json) {
    json_t *devs = json_array();
    for (unsigned i = 0; i < rep->n_devices; i++)
      json_array_append_new(
          devs, cli_layout_json(&rep->device[i].dev, &rep->device[i].after));
    cli_print_json(json_pack("{s:s, s:b, s:o}", "verb", verb, "dry_run",
                             dry_run, "devices", devs));
    return CLI_OK;
  }
  for (unsigned i = 0; i < rep->n_devices; i++) {
    const gs_device_t *d = &rep->device[i].dev;
    const gs_plan_t *p = &rep->device[i].plan;
    printf("%s device %u (%s): %u kept, %u destroyed, %u created\n",
           dry_run ? "Plan for" : "Changed", d->index, d->catalog.model,
           p->n_keep, p->n_destroy, p->n_create);
    cli_print_plan(d, &d->layout, p, stdout);
    cli_print_layout(d, &rep->device[i].after, stdout);
  }
  return CLI_OK;
}

enum { OPT_DRY_RUN = 256, OPT_GPU, OPT_CI, OPT_ALL };

/* Runs a create or destroy through the backend, or plans it against a
 * catalog model (--gpu), and prints the report or the error. */
static int run_change(cli_t *cli, const char *verb, const char *gpu,
                      const gs_change_t *change) {
  gs_error_t err;
  gs_error_clear(&err);
  gs_backend_t *be = NULL;
  gs_apply_report_t *rep = calloc(1, sizeof *rep);
  gs_device_t *dev = calloc(1, sizeof *dev);
  int rc = rep && dev ? GS_OK : gs_error_set(&err, GS_ENOMEM, "out of memory");
  if (rc == GS_OK && gpu) {
    rc = cli_virtual_device(gpu, dev, &err);
    if (rc == GS_OK)
      rc = gs_change_plan(dev, 1, change, rep, &err);
  } else if (rc == GS_OK) {
    rc = cli_open_backend(cli, &be, &err);
    if (rc == GS_OK)
      rc = gs_change_run(be, change, rep, &err);
  }
  int status = rc == GS_OK ? report_change(cli, verb, rep, change->dry_run)
                           : cli_fail(verb, &err);
  free(dev);
  free(rep);
  gs_backend_close(be);
  return status;
}

int cmd_create(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {
      {"dry-run", no_argument, NULL, OPT_DRY_RUN},
      {"gpu", required_argument, NULL, OPT_GPU},
      {"device", required_argument, NULL, 'd'},
      {"ci", required_argument, NULL, OPT_CI},
      {"help", no_argument, NULL, 'h'},
      {0}};
  const char *gpu = NULL, *dev_text = NULL;
  gs_change_t args = {.kind = GS_CHANGE_CREATE};
  gs_error_t err;
  int c;
  optind = 0; /* options and profiles may come in any order */
  while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_DRY_RUN:
      args.dry_run = true;
      break;
    case OPT_GPU:
      gpu = optarg;
      break;
    case OPT_CI:
      args.ci_list = optarg;
      break;
    case 'd':
      dev_text = optarg;
      break;
    case 'h':
      fputs(create_usage, stdout);
      return CLI_OK;
    default:
      return cli_usage("create", "bad option");
    }
  }
  args.profiles = argv + optind;
  args.n_profiles = (unsigned)(argc - optind);
  if (args.n_profiles == 0)
    return cli_usage("create", "no profile given");
  if (gpu && !args.dry_run)
    return cli_usage("create",
                     "--gpu plans against a catalog model; add --dry-run");
  if (gpu && dev_text)
    return cli_usage("create", "--gpu and -d exclude each other");
  if (dev_text && cli_parse_uint(dev_text, "device", GS_MAX_DEVICES - 1,
                                 &args.dev, &err) != GS_OK)
    return cli_fail("create", &err);
  return run_change(cli, "create", gpu, &args);
}

static void print_processes(gs_backend_t *be, const gs_device_t *dev,
                            json_t *jdev) {
  json_t *jgis = json_object_get(jdev, "gpu_instances");
  for (unsigned i = 0; i < dev->layout.n_gi; i++) {
    gs_process_t procs[32];
    size_t n = 0;
    gs_error_t err;
    if (be->ops->processes(be, dev->index, dev->layout.gi[i].id, procs, 32, &n,
                           &err) != GS_OK)
      continue;
    json_t *jp = json_array();
    for (size_t p = 0; p < n && p < 32; p++) {
      json_array_append_new(
          jp, json_pack("{s:i, s:i, s:s, s:I}", "pid", (int)procs[p].pid, "ci",
                        (int)procs[p].ci_id, "command", procs[p].command,
                        "memory_bytes", (json_int_t)procs[p].memory_bytes));
      if (!jgis)
        printf("  process %d (%s) in GPU instance %u, compute instance %u, "
               "%.1f MiB\n",
               (int)procs[p].pid, procs[p].command, dev->layout.gi[i].id,
               procs[p].ci_id, (double)procs[p].memory_bytes / 1048576.0);
    }
    if (jgis)
      json_object_set_new(json_array_get(jgis, i), "processes", jp);
    else
      json_decref(jp);
  }
}

int cmd_list(cli_t *cli, int argc, char **argv) {
  if (argc > 1 &&
      (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    puts("usage: gpuslice list [--json]\n"
         "  instances of every device, their processes, and what is "
         "enforced");
    return CLI_OK;
  }
  if (argc > 1)
    return cli_usage("list", "unexpected argument '%s'", argv[1]);
  gs_error_t err;
  gs_backend_t *be;
  gs_device_t *devs;
  unsigned n;
  if (cli_open_devices(cli, &be, &devs, &n, &err) != GS_OK)
    return cli_fail("list", &err);
  gs_enforcement_t enf;
  be->ops->enforcement(be, &enf);
  json_t *jdevs = json_array();
  for (unsigned d = 0; d < n; d++) {
    json_t *jdev = cli_layout_json(&devs[d], &devs[d].layout);
    if (cli->json) {
      print_processes(be, &devs[d], jdev);
      json_array_append_new(jdevs, jdev);
    } else {
      json_decref(jdev);
      cli_print_layout(&devs[d], &devs[d].layout, stdout);
      print_processes(be, &devs[d], NULL);
    }
  }
  if (cli->json)
    cli_print_json(json_pack("{s:s, s:o, s:{s:s, s:s, s:s}}", "backend",
                             be->ops->name, "devices", jdevs, "enforcement",
                             "compute", enf.compute, "memory", enf.memory,
                             "faults", enf.faults));
  else {
    json_decref(jdevs);
    printf("enforced (%s backend): compute: %s; memory: %s; faults: %s\n",
           be->ops->name, enf.compute, enf.memory, enf.faults);
  }
  free(devs);
  gs_backend_close(be);
  return CLI_OK;
}

int cmd_destroy(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {{"all", no_argument, NULL, OPT_ALL},
                                       {"device", required_argument, NULL, 'd'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  gs_change_t args = {.kind = GS_CHANGE_DESTROY};
  gs_error_t err;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_ALL:
      args.all = true;
      break;
    case 'd':
      if (cli_parse_uint(optarg, "device", GS_MAX_DEVICES - 1, &args.dev,
                         &err) != GS_OK)
        return cli_fail("destroy", &err);
      break;
    case 'h':
      puts("usage: gpuslice destroy [-d DEV] GI_ID... | --all");
      return CLI_OK;
    default:
      return cli_usage("destroy", "bad option");
    }
  }
  if (args.all == (optind < argc))
    return cli_usage("destroy", "give GPU instance IDs or --all (not both)");
  for (int i = optind; i < argc; i++) {
    if (args.n_ids == GS_MAX_GIS)
      return cli_usage("destroy", "at most %d IDs", GS_MAX_GIS);
    if (cli_parse_uint(argv[i], "GPU instance ID", 0xFFFF,
                       &args.ids[args.n_ids++], &err) != GS_OK)
      return cli_fail("destroy", &err);
  }
  return run_change(cli, "destroy", NULL, &args);
}

/* ---- apply, assert, export ---------------------------------------------- */

typedef struct config_job_s {
  gs_config_t cfg;
  const gs_config_set_t *set;
  gs_device_t devs[GS_MAX_DEVICES];
  unsigned n_devs;
  gs_want_t want[GS_MAX_DEVICES];
  bool selected[GS_MAX_DEVICES];
} config_job_t;

static int parse_config_flags(const char *verb, int argc, char **argv,
                              const char **file, const char **name,
                              bool *dry_run, const char **gpu) {
  static const struct option opts[] = {
      {"file", required_argument, NULL, 'f'},
      {"config", required_argument, NULL, 'c'},
      {"selected-config", required_argument, NULL, 'c'},
      {"dry-run", no_argument, NULL, OPT_DRY_RUN},
      {"gpu", required_argument, NULL, OPT_GPU},
      {"help", no_argument, NULL, 'h'},
      {0}};
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "f:c:h", opts, NULL)) != -1) {
    switch (c) {
    case 'f':
      *file = optarg;
      break;
    case 'c':
      *name = optarg;
      break;
    case OPT_DRY_RUN:
      if (!dry_run)
        return cli_usage(verb, "--dry-run is not an option of %s", verb);
      *dry_run = true;
      break;
    case OPT_GPU:
      if (!gpu)
        return cli_usage(verb, "--gpu is not an option of %s", verb);
      *gpu = optarg;
      break;
    case 'h':
      printf("usage: gpuslice %s -f CONFIG.yaml -c NAME%s\n", verb,
             dry_run ? " [--dry-run] [--gpu MODEL]" : "");
      return -1;
    default:
      return cli_usage(verb, "bad option");
    }
  }
  if (optind < argc)
    return cli_usage(verb, "unexpected argument '%s'", argv[optind]);
  if (!*file || !*name)
    return cli_usage(verb, "both -f FILE and -c NAME are needed");
  if (gpu && *gpu && !*dry_run)
    return cli_usage(verb, "--gpu plans against a catalog model; add "
                           "--dry-run");
  return CLI_OK;
}

static int load_job(cli_t *cli, config_job_t *job, const char *file,
                    const char *name, const char *gpu, gs_backend_t **be,
                    gs_error_t *err) {
  int rc = gs_config_load_file(&job->cfg, file, err);
  /* An unreadable file or one past the format's limits is bad input. */
  if (rc == GS_ESYSTEM || rc == GS_EPERM || rc == GS_ELIMIT)
    err->code = rc = GS_EINVAL;
  if (rc != GS_OK)
    return rc;
  job->set = gs_config_find(&job->cfg, name, err);
  if (!job->set)
    return err->code;
  if (gpu) {
    rc = cli_virtual_device(gpu, &job->devs[0], err);
    job->n_devs = 1;
  } else {
    rc = cli_open_backend(cli, be, err);
    if (rc == GS_OK)
      rc = cli_load_devices(*be, job->devs, &job->n_devs, err);
  }
  if (rc == GS_OK)
    rc = gs_want_from_config(&job->cfg, job->set, job->devs, job->n_devs,
                             job->want, job->selected, err);
  return rc;
}

static void note_unselected(const config_job_t *job) {
  for (unsigned d = 0; d < job->n_devs; d++)
    if (!job->selected[d])
      printf("device %u: not selected by config '%s' (left as it is)\n", d,
             job->set->name);
}

int cmd_apply(cli_t *cli, int argc, char **argv) {
  const char *file = NULL, *name = NULL, *gpu = NULL;
  bool dry_run = false;
  int st =
      parse_config_flags("apply", argc, argv, &file, &name, &dry_run, &gpu);
  if (st != CLI_OK)
    return st < 0 ? CLI_OK : st;
  gs_error_t err;
  gs_error_clear(&err);
  gs_backend_t *be = NULL;
  config_job_t *job = calloc(1, sizeof *job);
  gs_apply_report_t *rep = calloc(1, sizeof *rep);
  if (!job || !rep) {
    free(job);
    free(rep);
    return cli_fail("apply", &(gs_error_t){.code = GS_ENOMEM});
  }
  int rc = load_job(cli, job, file, name, gpu, &be, &err);
  gs_change_t change = {.kind = GS_CHANGE_APPLY,
                        .dry_run = dry_run,
                        .want = job->want,
                        .selected = job->selected,
                        .n_devs = job->n_devs};
  if (rc == GS_OK)
    rc = gpu ? gs_change_plan(job->devs, job->n_devs, &change, rep, &err)
             : gs_change_run(be, &change, rep, &err);
  if (rc != GS_OK) {
    gs_error_prefix(&err, "config '%s': ", name);
    st = cli_fail("apply", &err);
  } else {
    if (!cli->json)
      note_unselected(job);
    st = report_change(cli, "apply", rep, dry_run);
  }
  gs_config_release(&job->cfg);
  free(job);
  free(rep);
  gs_backend_close(be);
  return st;
}

int cmd_assert(cli_t *cli, int argc, char **argv) {
  const char *file = NULL, *name = NULL;
  int st = parse_config_flags("assert", argc, argv, &file, &name, NULL, NULL);
  if (st != CLI_OK)
    return st < 0 ? CLI_OK : st;
  gs_error_t err;
  gs_error_clear(&err);
  gs_backend_t *be = NULL;
  config_job_t *job = calloc(1, sizeof *job);
  if (!job)
    return cli_fail("assert", &(gs_error_t){.code = GS_ENOMEM});
  int rc = load_job(cli, job, file, name, NULL, &be, &err);
  if (rc != GS_OK) {
    st = cli_fail("assert", &err);
    goto out;
  }
  st = CLI_OK;
  unsigned checked = 0;
  for (unsigned d = 0; d < job->n_devs; d++)
    checked += job->selected[d];
  if (checked == 0) {
    /* An assert that checks nothing must not look like success. */
    fprintf(stderr,
            "gpuslice: assert: config '%s' selects no device on this "
            "machine (devices, device-filter)\n",
            name);
    st = CLI_FAIL;
    goto out;
  }
  json_t *jres = json_array();
  for (unsigned d = 0; d < job->n_devs; d++) {
    if (!job->selected[d])
      continue;
    gs_error_t why;
    gs_error_clear(&why);
    int m = gs_layout_matches(&job->devs[d].catalog, &job->devs[d].layout,
                              &job->want[d], &why);
    if (m == 0)
      st = CLI_FAIL;
    if (cli->json)
      json_array_append_new(jres, json_pack("{s:i, s:b, s:s}", "device", (int)d,
                                            "matches", m == 1, "difference",
                                            why.msg));
    else if (m == 1)
      printf("device %u matches config '%s'\n", d, name);
    else
      printf("device %u does not match config '%s': %s\n", d, name, why.msg);
  }
  if (cli->json)
    cli_print_json(json_pack("{s:s, s:b, s:o}", "config", name, "matches",
                             st == CLI_OK, "devices", jres));
  else
    json_decref(jres);
out:
  gs_config_release(&job->cfg);
  free(job);
  gs_backend_close(be);
  return st;
}

int cmd_export(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"config", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  const char *format = cli->json ? "json" : "yaml", *name = "current";
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "o:c:h", opts, NULL)) != -1) {
    switch (c) {
    case 'o':
      format = optarg;
      break;
    case 'c':
      name = optarg;
      break;
    case 'h':
      puts("usage: gpuslice export [-o yaml|json] [-c NAME]");
      return CLI_OK;
    default:
      return cli_usage("export", "bad option");
    }
  }
  if (optind < argc)
    return cli_usage("export", "unexpected argument '%s'", argv[optind]);
  gs_config_format_t fmt;
  if (strcmp(format, "yaml") == 0)
    fmt = GS_CONFIG_YAML;
  else if (strcmp(format, "json") == 0)
    fmt = GS_CONFIG_JSON;
  else
    return cli_usage("export", "-o takes yaml or json, not '%s'", format);
  gs_error_t err;
  gs_backend_t *be;
  gs_device_t *devs;
  unsigned n;
  gs_config_t cfg = {0};
  char *text = NULL;
  size_t len = 0;
  int rc = cli_open_devices(cli, &be, &devs, &n, &err);
  if (rc == GS_OK)
    rc = gs_config_from_layouts(&cfg, name, devs, n, &err);
  if (rc == GS_OK)
    rc = gs_config_emit(&cfg, fmt, &text, &len, &err);
  if (rc == GS_OK)
    fwrite(text, 1, len, stdout);
  free(text);
  gs_config_release(&cfg);
  free(devs);
  gs_backend_close(be);
  return rc == GS_OK ? CLI_OK : cli_fail("export", &err);
}
