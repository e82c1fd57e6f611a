/* gpuslice cdi: the CDI spec of this machine's instances (generate), the
 * host backend's container hook (hook), and the refresh after a layout
 * change when a CDI directory is configured. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_k8s.h"
#include "core/buf.h"

static char hook_exe[4096];
static char hook_state[4200];
static char hook_env_buf[4][300];

/* What the spec's host hook needs to find the same instances: this
 * binary's absolute path, the backend and state directory, and the
 * host-shape overrides this run had. */
void cli_k8s_options(cli_t *cli, gs_k8s_options_t *opt) {
  static const char *const pass[] = {
      "GPUSLICE_HOST_CPUS", "GPUSLICE_HOST_MEMORY_MIB",
      "GPUSLICE_HOST_CGROUP_ROOT", "GPUSLICE_TEST_NO_ADDRESS_LIMIT"};
  memset(opt, 0, sizeof *opt);
  opt->nvidia_proc = getenv("GPUSLICE_NVIDIA_PROC");
  ssize_t n = readlink("/proc/self/exe", hook_exe, sizeof hook_exe - 1);
  hook_exe[n > 0 ? n : 0] = '\0';
  opt->hook_path = n > 0 ? hook_exe : "/usr/local/bin/gpuslice";
  snprintf(hook_state, sizeof hook_state, "--state-dir=%s", cli->state_dir);
  opt->hook_args[opt->n_hook_args++] = "--backend=host";
  opt->hook_args[opt->n_hook_args++] = hook_state;
  for (unsigned i = 0; i < 4; i++) {
    const char *v = getenv(pass[i]);
    if (!v || !*v)
      continue;
    snprintf(hook_env_buf[i], sizeof hook_env_buf[i], "%s=%s", pass[i], v);
    opt->hook_env[opt->n_hook_env++] = hook_env_buf[i];
  }
}

int cli_cdi_generate(cli_t *cli, const char *path, gs_cdi_format_t format,
                     gs_error_t *err) {
  gs_backend_t *be = NULL;
  gs_k8s_options_t opt;
  gs_k8s_inventory_t *inv = malloc(sizeof *inv);
  if (!inv)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  cli_k8s_options(cli, &opt);
  int rc = cli_open_backend(cli, &be, err);
  if (rc == GS_OK)
    rc = gs_k8s_inventory_read(be, &opt, inv, err);
  if (rc == GS_OK) {
    json_t *spec = gs_cdi_spec(inv, &opt);
    rc = gs_cdi_write(spec, path, format, err);
    json_decref(spec);
  }
  gs_backend_close(be);
  free(inv);
  return rc;
}

int cli_cdi_refresh(cli_t *cli) {
  const char *dir = getenv("GPUSLICE_CDI_DIR");
  char path[4200];
  gs_error_t err;
  if (!dir || !*dir)
    return CLI_OK;
  snprintf(path, sizeof path, "%s/%s", dir, GS_CDI_FILE);
  if (cli_cdi_generate(cli, path, GS_CDI_JSON, &err) != GS_OK)
    return cli_fail("cdi (refresh after the layout change)", &err);
  return CLI_OK;
}

static int cdi_generate(cli_t *cli, int argc, char **argv) {
  static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                       {"format", required_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  const char *out = NULL;
  gs_cdi_format_t format = GS_CDI_JSON;
  char path[4200];
  gs_error_t err;
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, "o:f:h", opts, NULL)) != -1) {
    if (c == 'o')
      out = optarg;
    else if (c == 'f' && strcmp(optarg, "json") == 0)
      format = GS_CDI_JSON;
    else if (c == 'f' && strcmp(optarg, "yaml") == 0)
      format = GS_CDI_YAML;
    else if (c == 'f')
      return cli_usage("cdi generate", "--format is json or yaml, not '%s'",
                       optarg);
    else if (c == 'h') {
      puts("usage: gpuslice cdi generate [--output PATH|-] [--format "
           "json|yaml]\n  default output " GS_CDI_DEFAULT_DIR "/gpuslice.json "
           "(.yaml for yaml)");
      return CLI_OK;
    } else
      return cli_usage("cdi generate", "bad option");
  }
  if (optind < argc)
    return cli_usage("cdi generate", "unexpected argument '%s'", argv[optind]);
  if (!out) {
    snprintf(path, sizeof path, "%s/gpuslice.%s", GS_CDI_DEFAULT_DIR,
             format == GS_CDI_YAML ? "yaml" : "json");
    out = path;
  }
  if (cli_cdi_generate(cli, out, format, &err) != GS_OK)
    return cli_fail("cdi generate", &err);
  return CLI_OK;
}

/* The OCI state on stdin ({"pid": N, ...}), as runtimes hand it to hooks. */
static int read_state_pid(long *pid, gs_error_t *err) {
  gs_buf_t b;
  gs_buf_init(&b, GS_LIMIT_CONFIG_FILE);
  int rc = gs_buf_read_fd(&b, STDIN_FILENO);
  json_error_t jerr;
  json_t *state = rc == GS_OK ? json_loadb(b.data, b.len, 0, &jerr) : NULL;
  if (rc != GS_OK)
    rc = gs_buf_error(&b, err);
  else if (!state)
    rc = gs_error_set(err, GS_EPARSE, "the OCI state on stdin: %s", jerr.text);
  else if (!json_is_integer(json_object_get(state, "pid")))
    rc = gs_error_set(err, GS_EPARSE, "the OCI state on stdin has no pid");
  else
    *pid = (long)json_integer_value(json_object_get(state, "pid"));
  json_decref(state);
  gs_buf_free(&b);
  return rc;
}

static int cdi_hook(cli_t *cli, int argc, char **argv) {
  unsigned gi = 0, ci = 0;
  gs_error_t err;
  gs_backend_t *be = NULL;
  long pid = 0;
  char tail;
  if (argc != 3 || strcmp(argv[1], "--instance") != 0)
    return cli_usage("cdi hook", "usage: gpuslice cdi hook --instance GI:CI "
                                 "(the OCI state on stdin)");
  if (sscanf(argv[2], "%u:%u%c", &gi, &ci, &tail) != 2)
    return cli_usage("cdi hook", "--instance is GI:CI, not '%s'", argv[2]);
  int rc = read_state_pid(&pid, &err);
  if (rc == GS_OK)
    rc = cli_open_backend(cli, &be, &err);
  if (rc == GS_OK)
    rc = gs_cdi_hook_confine(be, gi, ci, (pid_t)pid, &err);
  gs_backend_close(be);
  return rc == GS_OK ? CLI_OK : cli_fail("cdi hook", &err);
}

int cmd_cdi(cli_t *cli, int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "generate") == 0)
    return cdi_generate(cli, argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "hook") == 0)
    return cdi_hook(cli, argc - 1, argv + 1);
  return cli_usage("cdi", "usage: gpuslice cdi generate [--output PATH|-] "
                          "[--format json|yaml] | cdi hook --instance GI:CI");
}
