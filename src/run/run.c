/* `gpuslice run`: resolve an instance address, let the backend confine
 * this process to it, put the instance's identity in the environment and
 * exec the workload. */
#include "gpuslice/run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define REF_MAX_NUMBERS 3

static int bad_ref(const char *text, gs_error_t *err) {
  return gs_error_set(
      err, GS_EINVAL,
      "instance '%s' is not GI, DEV:GI, DEV:GI:CI or an instance UUID", text);
}

/* "1", "0:1" or "0:1:0": up to three decimal numbers. */
static int parse_numbers(const char *text, unsigned *num, unsigned *n) {
  *n = 0;
  const char *p = text;
  for (;;) {
    if (*p < '0' || *p > '9' || *n == REF_MAX_NUMBERS)
      return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno || v > 0xffffu)
      return -1;
    num[(*n)++] = (unsigned)v;
    if (*end == '\0')
      return 0;
    if (*end != ':')
      return -1;
    p = end + 1;
  }
}

static void list_gis(const gs_layout_t *layout, char *buf, size_t size) {
  size_t len = 0;
  snprintf(buf, size, "none");
  for (unsigned i = 0; i < layout->n_gi && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%u", i ? ", " : "",
                            layout->gi[i].id);
}

static void list_cis(const gs_gi_t *gi, char *buf, size_t size) {
  size_t len = 0;
  snprintf(buf, size, "none");
  for (unsigned i = 0; i < gi->n_ci && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%u", i ? ", " : "",
                            gi->ci[i].id);
}

/* The device, or GS_ENOTFOUND naming the devices there are. */
static int get_device(gs_backend_t *be, unsigned dev, gs_device_t *out,
                      gs_error_t *err) {
  unsigned count;
  int rc = be->ops->device_count(be, &count, err);
  if (rc != GS_OK)
    return rc;
  if (dev >= count)
    return gs_error_set(err, GS_ENOTFOUND, "no device %u (devices: 0-%u)", dev,
                        count ? count - 1 : 0);
  return be->ops->device_get(be, dev, out, err);
}

/* Checks that the addressed GI (and CI) exist. */
static int check_ref(gs_backend_t *be, const gs_instance_ref_t *ref,
                     gs_device_t *dev, const gs_gi_t **gi_out,
                     gs_error_t *err) {
  int rc = get_device(be, ref->dev, dev, err);
  if (rc != GS_OK)
    return rc;
  const gs_gi_t *gi = gs_layout_find_gi_const(&dev->layout, ref->gi_id);
  char ids[128];
  if (!gi) {
    list_gis(&dev->layout, ids, sizeof ids);
    return gs_error_set(err, GS_ENOTFOUND,
                        "no instance %u on device %u (instances: %s)",
                        ref->gi_id, ref->dev, ids);
  }
  bool found = ref->ci_id < 0;
  for (unsigned i = 0; !found && i < gi->n_ci; i++)
    found = gi->ci[i].id == (unsigned)ref->ci_id;
  if (!found) {
    list_cis(gi, ids, sizeof ids);
    return gs_error_set(err, GS_ENOTFOUND,
                        "no compute instance %d in instance %u on device %u "
                        "(compute instances: %s)",
                        ref->ci_id, ref->gi_id, ref->dev, ids);
  }
  if (gi_out)
    *gi_out = gi;
  return GS_OK;
}

/* UUIDs carry a prefix (MIG-, GPU-, HOST-): at least one letter, so that
 * a malformed number is not taken for one. */
static bool uuid_shaped(const char *text) {
  static const char letters[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  size_t len = strlen(text);
  return len > 0 && len < GS_UUID_MAX && strpbrk(text, letters) &&
         strspn(text,
                "0123456789-_/"
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == len;
}

/* A GI or CI UUID, searched on every device. */
static int find_uuid(gs_backend_t *be, const char *text, gs_instance_ref_t *out,
                     gs_error_t *err) {
  unsigned count;
  int rc = be->ops->device_count(be, &count, err);
  gs_device_t *dev = rc == GS_OK ? malloc(sizeof *dev) : NULL;
  if (rc == GS_OK && !dev)
    rc = gs_error_set(err, GS_ENOMEM, "out of memory");
  for (unsigned d = 0; rc == GS_OK && d < count; d++) {
    if ((rc = be->ops->device_get(be, d, dev, err)) != GS_OK)
      break;
    for (unsigned g = 0; g < dev->layout.n_gi; g++) {
      const gs_gi_t *gi = &dev->layout.gi[g];
      *out = (gs_instance_ref_t){.dev = d, .gi_id = gi->id, .ci_id = -1};
      if (strcmp(gi->uuid, text) == 0)
        goto out;
      for (unsigned c = 0; c < gi->n_ci; c++) {
        out->ci_id = (int)gi->ci[c].id;
        if (strcmp(gi->ci[c].uuid, text) == 0)
          goto out;
      }
    }
  }
  if (rc == GS_OK)
    rc = gs_error_set(err, GS_ENOTFOUND, "no instance with UUID %s", text);
out:
  free(dev);
  return rc;
}

int gs_instance_ref_parse(gs_backend_t *be, const char *text,
                          gs_instance_ref_t *out, gs_error_t *err) {
  if (!text || !*text)
    return bad_ref("", err);
  unsigned num[REF_MAX_NUMBERS], n;
  if (parse_numbers(text, num, &n) != 0) {
    if (strchr(text, ':') || !uuid_shaped(text))
      return bad_ref(text, err);
    return find_uuid(be, text, out, err);
  }
  gs_instance_ref_t ref = {.dev = 0, .gi_id = num[0], .ci_id = -1};
  if (n >= 2)
    ref = (gs_instance_ref_t){.dev = num[0], .gi_id = num[1], .ci_id = -1};
  if (n == 3)
    ref.ci_id = (int)num[2];
  gs_device_t *dev = malloc(sizeof *dev);
  if (!dev)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  int rc = check_ref(be, &ref, dev, NULL, err);
  free(dev);
  if (rc == GS_OK)
    *out = ref;
  return rc;
}

static int set_env(const char *name, const char *value, gs_error_t *err) {
  if (setenv(name, value, 1) != 0)
    return gs_error_sys(err, errno, "setting %s", name);
  return GS_OK;
}

static int limit_address_space(uint64_t bytes, gs_error_t *err) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) != 0)
    return gs_error_sys(err, errno, "reading RLIMIT_AS");
  rlim_t want = (rlim_t)bytes;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
    want = rl.rlim_max;
  rl.rlim_cur = rl.rlim_max = want;
  if (setrlimit(RLIMIT_AS, &rl) != 0)
    return gs_error_sys(err, errno, "setting RLIMIT_AS to %llu bytes",
                        (unsigned long long)want);
  return GS_OK;
}

static int run_exec(gs_backend_t *be, const gs_instance_ref_t *ref,
                    char *const argv[], uint64_t memory_bytes, bool group,
                    gs_error_t *err) {
  if (!argv || !argv[0] || !argv[0][0])
    return gs_error_set(err, GS_EINVAL, "no command to run");
  gs_device_t *dev = malloc(sizeof *dev);
  if (!dev)
    return gs_error_set(err, GS_ENOMEM, "out of memory");
  const gs_gi_t *gi = NULL;
  int rc = check_ref(be, ref, dev, &gi, err);
  if (rc != GS_OK)
    goto out;
  if (gi->n_ci == 0) {
    rc = gs_error_set(err, GS_EINVAL,
                      "instance %u on device %u has no compute instance to run "
                      "in; create one first",
                      gi->id, ref->dev);
    goto out;
  }
  unsigned ci_id = ref->ci_id >= 0 ? (unsigned)ref->ci_id : gi->ci[0].id;
  gs_confinement_t conf;
  memset(&conf, 0, sizeof conf);
  conf.memory_request_bytes = memory_bytes;
  conf.group = group;
  if (group && strcmp(be->ops->name, "soft") != 0) {
    rc = gs_error_set(err, GS_EINVAL,
                      "the %s backend runs no process in several instances "
                      "at once (run --group is for the soft backend's green "
                      "isolation)",
                      be->ops->name);
    goto out;
  }
  rc = be->ops->confine(be, ref->dev, gi->id, ci_id, &conf, err);
  if (rc != GS_OK)
    goto out;
  char num[3][16];
  snprintf(num[0], sizeof num[0], "%u", ref->dev);
  snprintf(num[1], sizeof num[1], "%u", gi->id);
  snprintf(num[2], sizeof num[2], "%u", ci_id);
  if ((rc = set_env("GPUSLICE_BACKEND", be->ops->name, err)) ||
      (rc = set_env("GPUSLICE_DEVICE", num[0], err)) ||
      (!group && (rc = set_env("GPUSLICE_GI_ID", num[1], err))) ||
      (!group && (rc = set_env("GPUSLICE_CI_ID", num[2], err))))
    goto out;
  for (unsigned i = 0; i < conf.n_env && i < GS_MAX_ENV; i++)
    if ((rc = set_env(conf.env_name[i], conf.env_value[i], err)) != GS_OK)
      goto out;
  if (conf.address_space_limit &&
      (rc = limit_address_space(conf.address_space_limit, err)) != GS_OK)
    goto out;
  execvp(argv[0], argv); /* nothing may allocate between the limit and this */
  if (errno == ENOENT)
    rc = gs_error_set(err, GS_ENOTFOUND, "command '%s' not found", argv[0]);
  else
    rc = gs_error_sys(err, errno, "running command '%s'", argv[0]);
out:
  free(dev);
  return rc;
}

int gs_run_exec(gs_backend_t *be, const gs_instance_ref_t *ref,
                char *const argv[], uint64_t memory_bytes, gs_error_t *err) {
  return run_exec(be, ref, argv, memory_bytes, false, err);
}

int gs_run_exec_group(gs_backend_t *be, const gs_instance_ref_t *ref,
                      char *const argv[], gs_error_t *err) {
  return run_exec(be, ref, argv, 0, true, err);
}
