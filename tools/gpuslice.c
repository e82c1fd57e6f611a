/* gpuslice: the command-line tool. main() reads the global options and the
 * environment (the library never does), then hands over to a verb. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_k8s.h"
#include "core/test_hooks.h"
#include "gpuslice/engine.h"
#include "gpuslice/placement.h"
#include "gpuslice/run.h"

#define GPUSLICE_VERSION "0.1.0"

static const char usage_text[] =
    "usage: gpuslice [--backend host|soft|mig] [--state-dir DIR] [--json]\n"
    "                [--isolation mps|process|green] VERB [ARGS]\n"
    "\n"
    "  info                                  backends, devices, what is "
    "enforced here\n"
    "  profiles [--gpu MODEL] [-d DEV] [--ci]  GPU instance profiles and "
    "placements\n"
    "  create [--dry-run] [--gpu MODEL] [-d DEV] PROFILE[:START]... "
    "[--ci CI,...]\n"
    "  list                                  instances, processes, "
    "enforcement\n"
    "  destroy [-d DEV] GI_ID... | --all\n"
    "  apply -f CONFIG.yaml -c NAME [--dry-run] [--gpu MODEL]   mig-parted "
    "v1 configs\n"
    "  assert -f CONFIG.yaml -c NAME\n"
    "  export [-o yaml|json] [-c NAME]\n"
    "  run -i INSTANCE [--memory SIZE] -- COMMAND [ARGS...]\n"
    "  worker --model-repository DIR [--http-port N] [--host ADDR] "
    "[--threads N]\n"
    "                                        KServe v2 inference over HTTP\n"
    "  serve --model-repository DIR [--instances all|PROFILE|ID,...]\n"
    "        [--workers-per-instance N] [--http-port N] [--grpc-port N]\n"
    "                                        a worker per instance, router, "
    "supervisor\n"
    "  serve --status | --add ID | --remove ID | --sync\n"
    "  perf -m MODEL [-u HOST:PORT] [--concurrency-range A:B:S] ...\n"
    "                                        perf_analyzer-compatible load\n"
    "  demo [--model-repository DIR] [--out DIR]\n"
    "                                        the flower demo on this machine\n"
    "  cdi generate [--output PATH|-] [--format json|yaml]\n"
    "                                        the instances as CDI devices\n"
    "  k8s device-plugin [--plugin-dir DIR] ...  kubelet device plugin\n"
    "  k8s devices --socket PATH             a plugin's devices, as the "
    "kubelet sees them\n"
    "\n"
    "MODEL (for --gpu): a30 a100-40gb a100-80gb h100-80gb h100-94gb h200 "
    "gh200 b200\n"
    "Environment: GPUSLICE_BACKEND, GPUSLICE_STATE_DIR (default "
    "/var/lib/gpuslice as root,\n"
    "  else $XDG_STATE_HOME/gpuslice or ~/.local/state/gpuslice),\n"
    "  GPUSLICE_ISOLATION, GPUSLICE_NVML_LIBRARY, GPUSLICE_CUDA_LIBRARY,\n"
    "  GPUSLICE_MPS_CONTROL, GPUSLICE_CDI_DIR (create, destroy and apply\n"
    "  rewrite DIR/gpuslice.json when set).\n"
    "--isolation (soft backend): mps (default) caps each instance's SMs and\n"
    "  memory, but a fatal GPU fault in one process ends every process on\n"
    "  that GPU; process runs without MPS: faults stay apart, compute is\n"
    "  time-sliced and memory is not limited; green gives each instance\n"
    "  disjoint SMs as a CUDA green context, all of a GPU's instances in one\n"
    "  worker process under serve (one fault domain, memory not limited;\n"
    "  run -i sets GPUSLICE_SM_PARTITION=FIRST:COUNT, which gpuslice worker\n"
    "  honours).\n"
    "Exit status: 0 done, 1 the operation failed, 2 usage or input error.\n";

static char state_dir_buf[4096];

/* NULL when no safe default exists (not root, no HOME): a shared /tmp
 * path could be made by another user first. */
static const char *default_state_dir(void) {
  const char *env = getenv("GPUSLICE_STATE_DIR");
  if (env && *env)
    return env;
  if (geteuid() == 0)
    return "/var/lib/gpuslice";
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  if (xdg && *xdg)
    snprintf(state_dir_buf, sizeof state_dir_buf, "%s/gpuslice", xdg);
  else if (home && *home)
    snprintf(state_dir_buf, sizeof state_dir_buf, "%s/.local/state/gpuslice",
             home);
  else
    return NULL;
  return state_dir_buf;
}

/* A number from an environment variable, or CLI_USAGE naming it. */
static int env_uint(const char *name, unsigned min, unsigned max,
                    unsigned *out) {
  const char *v = getenv(name);
  gs_error_t err;
  if (!v || !*v)
    return CLI_OK;
  if (cli_parse_uint(v, name, max, out, &err) != GS_OK || *out < min)
    return cli_usage("gpuslice", "%s must be a number from %u to %u, not '%s'",
                     name, min, max, v);
  return CLI_OK;
}

/* Host-backend overrides, for tests that need a machine of another shape. */
static int read_test_overrides(cli_t *cli) {
  const char *v;
  unsigned mib = 0;
  if (env_uint("GPUSLICE_HOST_CPUS", 1, 4096, &cli->opt.host_cpu_cores) ||
      env_uint("GPUSLICE_HOST_MEMORY_MIB", 64, 1u << 30, &mib) ||
      env_uint("GPUSLICE_TEST_STEP_DELAY_US", 0, 1000000,
               &gs__test_hooks.step_delay_us) ||
      env_uint("GPUSLICE_TEST_LATE_PLAN_DELAY_MS", 0, 600000,
               &gs__test_hooks.late_plan_delay_ms) ||
      env_uint("GPUSLICE_TEST_LATE_PLAN_STEP_MS", 0, 600000,
               &gs__test_hooks.late_plan_step_ms))
    return CLI_USAGE;
  cli->opt.host_memory_mib = mib;
  v = getenv("GPUSLICE_TEST_DEVICE_FAIL_FILE");
  gs__test_hooks.device_fail_file = v && *v ? v : NULL;
  v = getenv("GPUSLICE_TEST_SIGUSR2_CLOSES");
  gs__test_hooks.sigusr2_closes = v && strcmp(v, "1") == 0;
  v = getenv("GPUSLICE_TEST_CONVS_UNCACHED");
  gs__test_hooks.convs_uncached = v && strcmp(v, "1") == 0;
  v = getenv("GPUSLICE_TEST_NO_ADDRESS_LIMIT");
  gs__test_hooks.no_address_limit = v && strcmp(v, "1") == 0;
  if ((v = getenv("GPUSLICE_HOST_CGROUP_ROOT")) != NULL)
    cli->opt.host_cgroup_root = v;
  if ((v = getenv("GPUSLICE_NVML_LIBRARY")) != NULL && *v)
    cli->opt.nvml_library = v;
  if ((v = getenv("GPUSLICE_CUDA_LIBRARY")) != NULL && *v)
    cli->opt.cuda_library = v;
  if ((v = getenv("GPUSLICE_MPS_CONTROL")) != NULL && *v)
    cli->opt.mps_control = v;
  return CLI_OK;
}

/* "mps", "process" or "green" for the soft backend's --isolation. */
static int parse_isolation(const char *text, const char *what,
                           gs_soft_isolation_t *out) {
  if (strcmp(text, "mps") == 0)
    *out = GS_SOFT_ISOLATION_MPS;
  else if (strcmp(text, "process") == 0)
    *out = GS_SOFT_ISOLATION_PROCESS;
  else if (strcmp(text, "green") == 0)
    *out = GS_SOFT_ISOLATION_GREEN;
  else
    return cli_usage("gpuslice", "%s is mps, process or green, not '%s'", what,
                     text);
  return CLI_OK;
}

/* Takes the global options out of argv wherever they stand before "--",
 * so that `gpuslice list --json` and `gpuslice --json list` both work. */
static int take_global_options(cli_t *cli, int *argc, char **argv) {
  int out = 1;
  bool rest = false;
  for (int i = 1; i < *argc; i++) {
    const char *a = argv[i];
    if (!rest && (strcmp(a, "--") == 0 || strcmp(a, "run") == 0))
      rest = true; /* what follows `run` belongs to it and its workload */
    if (rest) {
      argv[out++] = argv[i];
      continue;
    }
    if (strcmp(a, "--json") == 0) {
      cli->json = true;
    } else if (strcmp(a, "--backend") == 0 || strcmp(a, "--state-dir") == 0) {
      if (i + 1 >= *argc)
        return cli_usage("gpuslice", "%s needs a value", a);
      if (a[2] == 'b')
        cli->backend = argv[++i];
      else
        cli->state_dir = argv[++i];
    } else if (strcmp(a, "--isolation") == 0) {
      if (i + 1 >= *argc)
        return cli_usage("gpuslice", "%s needs a value", a);
      if (parse_isolation(argv[++i], a, &cli->opt.soft_isolation) != CLI_OK)
        return CLI_USAGE;
    } else if (strncmp(a, "--isolation=", 12) == 0) {
      if (parse_isolation(a + 12, "--isolation", &cli->opt.soft_isolation) !=
          CLI_OK)
        return CLI_USAGE;
    } else if (strncmp(a, "--backend=", 10) == 0) {
      cli->backend = a + 10;
    } else if (strncmp(a, "--state-dir=", 12) == 0) {
      cli->state_dir = a + 12;
    } else {
      argv[out++] = argv[i];
    }
  }
  argv[out] = NULL;
  *argc = out;
  return CLI_OK;
}

int cmd_info(cli_t *cli, int argc, char **argv) {
  (void)argv;
  if (argc > 1)
    return cli_usage("info", "takes no arguments");
  gs_error_t err;
  gs_backend_t *be;
  gs_device_t *devs;
  unsigned n;
  if (cli_open_devices(cli, &be, &devs, &n, &err) != GS_OK)
    return cli_fail("info", &err);
  gs_enforcement_t enf;
  be->ops->enforcement(be, &enf);
  json_t *jdevs = json_array();
  for (unsigned d = 0; d < n; d++) {
    const gs_catalog_t *c = &devs[d].catalog;
    json_array_append_new(
        jdevs, json_pack("{s:i, s:s, s:s, s:s, s:i, s:I, s:i, s:i}", "index",
                         (int)d, "name", devs[d].name, "uuid", devs[d].uuid,
                         "catalog", c->model, "sms_or_cores", (int)c->total_sms,
                         "memory_mib", (json_int_t)c->total_memory_mib,
                         "memory_slices", (int)c->memory_slices,
                         "compute_slices", (int)c->compute_slices));
  }
  /* What the engine's CUDA provider finds here (driver, cuDNN, cuBLAS,
   * its kernels), or why models run on the CPU instead. */
  char engine[1100];
  gs_error_t eerr = {0};
  bool gpu_engine =
      gs_engine_cuda_describe(engine, sizeof engine, &eerr) == GS_OK;
  if (!gpu_engine)
    snprintf(engine, sizeof engine, "cpu only: %s", eerr.msg);
  if (cli->json) {
    cli_print_json(json_pack(
        "{s:s, s:s, s:o, s:{s:s, s:s, s:s}, s:{s:b, s:s}}", "backend",
        be->ops->name, "state_dir", cli->state_dir, "devices", jdevs,
        "enforcement", "compute", enf.compute, "memory", enf.memory, "faults",
        enf.faults, "engine", "cuda", gpu_engine, "detail", engine));
  } else {
    json_decref(jdevs);
    printf("backend:   %s\nstate dir: %s\n", be->ops->name, cli->state_dir);
    for (unsigned d = 0; d < n; d++) {
      const gs_catalog_t *c = &devs[d].catalog;
      char mem[32];
      cli_format_mib(c->total_memory_mib, mem, sizeof mem);
      printf("device %u:  %s (%s), catalog %s, %u %s, %s GiB, %u memory / "
             "%u compute slices\n",
             d, devs[d].name, devs[d].uuid, c->model, c->total_sms,
             c->source == GS_CATALOG_HOST ? "CPU cores" : "SMs", mem,
             c->memory_slices, c->compute_slices);
    }
    printf("enforced:\n  compute: %s\n  memory:  %s\n  faults:  %s\n",
           enf.compute, enf.memory, enf.faults);
    printf("engine:    %s\n", engine);
  }
  free(devs);
  gs_backend_close(be);
  return CLI_OK;
}

static void print_profiles(cli_t *cli, const gs_device_t *dev, bool cis,
                           json_t *jout) {
  const gs_catalog_t *c = &dev->catalog;
  unsigned free_n[GS_MAX_GI_PROFILES];
  gs_capacity(c, &dev->layout, free_n);
  static const char *const head[] = {"GPU",
                                     "NAME",
                                     "ID",
                                     "FREE/TOTAL",
                                     "GiB",
                                     "SMS",
                                     "CE",
                                     "DEC",
                                     "JPEG",
                                     "OFA",
                                     "PLACEMENTS (start:size)"};
  cli_table_t *t = calloc(1, sizeof *t);
  if (!t)
    return;
  cli_table_header(t, 11, head);
  if (c->source == GS_CATALOG_HOST) {
    free(t->cell[0][5]);
    t->cell[0][5] = strdup("CORES");
  }
  json_t *jprofiles = json_array();
  for (unsigned i = 0; i < c->n_gi; i++) {
    const gs_gi_profile_t *p = &c->gi[i];
    char g[8], name[48], id[8], ft[16], mem[16], sms[8], ce[8], dec[8], jpg[8],
        ofa[8], place[96] = "";
    snprintf(g, sizeof g, "%u", dev->index);
    snprintf(name, sizeof name, "MIG %s", p->name);
    snprintf(id, sizeof id, "%u", p->id);
    snprintf(ft, sizeof ft, "%u/%u", free_n[i], p->max_count);
    cli_format_mib(p->memory_mib, mem, sizeof mem);
    snprintf(sms, sizeof sms, p->sms ? "%u" : "?", p->sms);
    snprintf(ce, sizeof ce, "%u", p->copy_engines);
    snprintf(dec, sizeof dec, "%u", p->decoders);
    snprintf(jpg, sizeof jpg, "%u", p->jpegs);
    snprintf(ofa, sizeof ofa, "%u", p->ofas);
    json_t *jstarts = json_array();
    for (unsigned s = 0; s < 32; s++)
      if (p->start_mask & (1u << s)) {
        size_t len = strlen(place);
        snprintf(place + len, sizeof place - len, "%s%u:%u", len ? " " : "", s,
                 p->memory_slices);
        json_array_append_new(jstarts, json_integer(s));
      }
    cli_table_row(t, g, name, id, ft, mem, sms, ce, dec, jpg, ofa, place);
    json_t *jci = json_array();
    for (unsigned k = 0; k < p->n_ci; k++) {
      char starts[64];
      gs_format_starts(p->ci[k].start_mask, starts, sizeof starts);
      json_array_append_new(jci, json_pack("{s:i, s:i, s:i, s:s}", "id",
                                           (int)p->ci[k].id, "compute_slices",
                                           (int)p->ci[k].compute_slices,
                                           "max_count", (int)p->ci[k].max_count,
                                           "starts", starts));
    }
    json_array_append_new(
        jprofiles,
        json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:I, s:i, s:i, s:i, s:i, "
                  "s:i, s:i, s:o, s:i, s:o}",
                  "name", p->name, "id", (int)p->id, "nvml_index",
                  (int)p->nvml_index, "free", (int)free_n[i], "max_count",
                  (int)p->max_count, "compute_slices", (int)p->compute_slices,
                  "memory_mib", (json_int_t)p->memory_mib, "sms", (int)p->sms,
                  "copy_engines", (int)p->copy_engines, "decoders",
                  (int)p->decoders, "jpegs", (int)p->jpegs, "ofas",
                  (int)p->ofas, "memory_slices", (int)p->memory_slices,
                  "starts", jstarts, "encoders", (int)p->encoders,
                  "compute_instance_profiles", jci));
  }
  if (jout) {
    json_array_append_new(jout,
                          json_pack("{s:i, s:s, s:s, s:s, s:o}", "device",
                                    (int)dev->index, "model", c->model,
                                    "product", c->product, "differs_from_table",
                                    c->differences, "profiles", jprofiles));
    cli_table_release(t);
  } else {
    json_decref(jprofiles);
    printf("device %u: %s, catalog %s%s\n", dev->index, dev->name, c->model,
           c->source == GS_CATALOG_HOST   ? " (synthesized from CPU cores "
                                            "and memory)"
           : c->source == GS_CATALOG_SOFT ? " (synthesized from SMs and "
                                            "memory)"
                                          : "");
    cli_table_print(t, stdout);
    if (c->differences[0])
      printf("note: NVML's report differs from gpuslice's %s table; NVML's "
             "values are used: %s\n",
             c->model, c->differences);
  }
  free(t);
  (void)cli;
  if (!cis || jout)
    return;
  printf("\ncompute instance profiles (CI: max per GI @ starts):\n");
  for (unsigned i = 0; i < c->n_gi; i++) {
    printf("  %-14s", c->gi[i].name);
    for (unsigned k = 0; k < c->gi[i].n_ci; k++) {
      char starts[64];
      gs_format_starts(c->gi[i].ci[k].start_mask, starts, sizeof starts);
      printf("  %uc (ID %u): %u @ {%s}", c->gi[i].ci[k].compute_slices,
             c->gi[i].ci[k].id, c->gi[i].ci[k].max_count, starts);
    }
    printf("\n");
  }
}

int cmd_profiles(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {{"gpu", required_argument, NULL, 'g'},
                                       {"device", required_argument, NULL, 'd'},
                                       {"ci", no_argument, NULL, 'C'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  const char *gpu = NULL;
  int dev_index = -1, c;
  unsigned parsed;
  gs_error_t err;
  bool cis = false;
  optind = 0;
  while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
    switch (c) {
    case 'g':
      gpu = optarg;
      break;
    case 'd':
      if (cli_parse_uint(optarg, "device", GS_MAX_DEVICES - 1, &parsed, &err) !=
          GS_OK)
        return cli_fail("profiles", &err);
      dev_index = (int)parsed;
      break;
    case 'C':
      cis = true;
      break;
    case 'h':
      puts("usage: gpuslice profiles [--gpu MODEL] [-d DEV] [--ci]\n"
           "  what nvidia-smi mig -lgip and -lgipp show (--ci: -lcip)");
      return CLI_OK;
    default:
      return cli_usage("profiles", "bad option");
    }
  }
  if (optind < argc)
    return cli_usage("profiles", "unexpected argument '%s'", argv[optind]);
  if (gpu && dev_index >= 0)
    return cli_usage("profiles", "--gpu and -d exclude each other");
  gs_backend_t *be = NULL;
  gs_device_t *devs = NULL;
  unsigned n = 0;
  int rc;
  if (gpu) {
    devs = calloc(1, sizeof *devs);
    rc = devs ? cli_virtual_device(gpu, &devs[0], &err)
              : gs_error_set(&err, GS_ENOMEM, "out of memory");
    n = 1;
  } else {
    rc = cli_open_devices(cli, &be, &devs, &n, &err);
    if (rc == GS_OK && dev_index >= (int)n)
      rc = gs_error_set(&err, GS_ENOTFOUND,
                        "no device %d (this machine has %u)", dev_index, n);
  }
  if (rc != GS_OK) {
    free(devs);
    gs_backend_close(be);
    return cli_fail("profiles", &err);
  }
  json_t *jout = cli->json ? json_array() : NULL;
  for (unsigned d = 0; d < n; d++)
    if (dev_index < 0 || (unsigned)dev_index == d)
      print_profiles(cli, &devs[d], cis, jout);
  if (jout)
    cli_print_json(json_pack("{s:o}", "devices", jout));
  free(devs);
  gs_backend_close(be);
  return CLI_OK;
}

/* "512M", "2G", "1048576": bytes, with an optional binary suffix K, M, G
 * or T (KiB, MiB, ... also accepted). */
static int parse_size(const char *text, uint64_t *out) {
  static const char suffixes[] = "KMGT";
  uint64_t v = 0;
  const char *p = text;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (UINT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (p == text)
    return -1;
  const char *unit = *p ? strchr(suffixes, *p & ~0x20) : NULL;
  if (*p && !unit)
    return -1;
  if (unit) {
    unsigned shift = 10 * (unsigned)(unit - suffixes + 1);
    if (v > (UINT64_MAX >> shift))
      return -1;
    v <<= shift;
    p++;
    if (strcmp(p, "iB") == 0 || strcmp(p, "B") == 0)
      p += strlen(p);
  }
  if (*p || v == 0)
    return -1;
  *out = v;
  return 0;
}

int cmd_run(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {
      {"instance", required_argument, NULL, 'i'},
      {"memory", required_argument, NULL, 'm'},
      {"group", no_argument, NULL, 'g'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  const char *inst = NULL;
  uint64_t memory = 0;
  bool group = false;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "+i:m:h", opts, NULL)) != -1) {
    switch (c) {
    case 'i':
      inst = optarg;
      break;
    case 'g':
      group = true;
      break;
    case 'm':
      if (parse_size(optarg, &memory) != 0)
        return cli_usage("run",
                         "--memory takes a size such as 512M, 2G or "
                         "a number of bytes, not '%s'",
                         optarg);
      break;
    case 'h':
      puts(
          "usage: gpuslice run -i INSTANCE [--memory SIZE | --group] -- "
          "COMMAND "
          "[ARGS...]\n"
          "  INSTANCE: GI, DEV:GI, DEV:GI:CI or an instance UUID\n"
          "  --memory: the part of the instance's memory this process gets\n"
          "    (soft backend: 512M, 2G, bytes; default what its other\n"
          "    processes leave). Its share is in GPUSLICE_MEMORY_LIMIT_BYTES.\n"
          "  --group: the process hosts several instances of INSTANCE's GPU\n"
          "    (soft backend, green isolation; gpuslice serve's shared\n"
          "    worker): it gets the GPU, is counted in none of them.");
      return CLI_OK;
    default:
      return cli_usage("run", "bad option");
    }
  }
  if (!inst)
    return cli_usage("run", "-i INSTANCE is needed");
  if (optind >= argc)
    return cli_usage("run", "no command given (gpuslice run -i ID -- CMD)");
  gs_error_t err;
  gs_backend_t *be = NULL;
  gs_instance_ref_t ref;
  int rc = cli_open_backend(cli, &be, &err);
  if (rc == GS_OK)
    rc = gs_instance_ref_parse(be, inst, &ref, &err);
  if (rc == GS_OK && group && memory)
    rc = gs_error_set(&err, GS_EINVAL,
                      "--memory is per instance: a --group process has none");
  if (rc == GS_OK)
    rc = group ? gs_run_exec_group(be, &ref, &argv[optind], &err)
               : gs_run_exec(be, &ref, &argv[optind], memory, &err);
  gs_backend_close(be);
  int status = cli_fail("run", &err);
  return rc == GS_ENOTFOUND && strstr(err.msg, "command") ? 127 : status;
}

int main(int argc, char **argv) {
  cli_t cli = {0};
  if (take_global_options(&cli, &argc, argv) != CLI_OK)
    return CLI_USAGE;
  if (!cli.backend) {
    const char *env = getenv("GPUSLICE_BACKEND");
    cli.backend = env && *env ? env : NULL;
  }
  const char *isolation = getenv("GPUSLICE_ISOLATION");
  if (cli.opt.soft_isolation == GS_SOFT_ISOLATION_DEFAULT && isolation &&
      *isolation &&
      parse_isolation(isolation, "GPUSLICE_ISOLATION",
                      &cli.opt.soft_isolation) != CLI_OK)
    return CLI_USAGE;
  if (!cli.state_dir)
    cli.state_dir = default_state_dir();
  if (!cli.state_dir) {
    fprintf(stderr, "gpuslice: no state directory: set GPUSLICE_STATE_DIR, "
                    "HOME or XDG_STATE_HOME, or pass --state-dir\n");
    return CLI_USAGE;
  }
  if (read_test_overrides(&cli) != CLI_OK)
    return CLI_USAGE;
  if (argc < 2) {
    fputs(usage_text, stderr);
    return CLI_USAGE;
  }
  const char *verb = argv[1];
  static const struct {
    const char *name;
    int (*fn)(cli_t *, int, char **);
  } verbs[] = {
      {"info", cmd_info},       {"profiles", cmd_profiles},
      {"create", cmd_create},   {"list", cmd_list},
      {"destroy", cmd_destroy}, {"apply", cmd_apply},
      {"assert", cmd_assert},   {"export", cmd_export},
      {"run", cmd_run},         {"cdi", cmd_cdi},
#ifndef GS_NO_WORKER /* builds without the worker's libraries (GPU kit) */
      {"worker", cmd_worker},   {"serve", cmd_serve},
      {"perf", cmd_perf},       {"demo", cmd_demo},
      {"k8s", cmd_k8s},
#endif
  };
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    if (strcmp(verb, verbs[i].name) != 0)
      continue;
    int rc = verbs[i].fn(&cli, argc - 1, argv + 1);
    /* A layout change reaches the CDI spec ($GPUSLICE_CDI_DIR). */
    bool changes = strcmp(verb, "create") == 0 ||
                   strcmp(verb, "destroy") == 0 || strcmp(verb, "apply") == 0;
    return rc == CLI_OK && changes ? cli_cdi_refresh(&cli) : rc;
  }
  if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 ||
      strcmp(verb, "help") == 0) {
    fputs(usage_text, stdout);
    return CLI_OK;
  }
  if (strcmp(verb, "--version") == 0 || strcmp(verb, "version") == 0) {
    puts("gpuslice " GPUSLICE_VERSION);
    return CLI_OK;
  }
  fprintf(stderr, "gpuslice: unknown verb '%s'\n\n%s", verb, usage_text);
  return CLI_USAGE;
}
