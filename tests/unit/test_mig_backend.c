/* The mig backend against the test-only fake NVML (tests/fake_nvml). Rules
 * checked come from NVIDIA's MIG User Guide: profile IDs, names,
 * placements, max counts and SMs per GPU; GI IDs lowest free; destroying a
 * GI with CIs or processes fails (IN_USE); Ampere needs a reset to switch
 * MIG mode, Hopper does not; a failed apply leaves the device as it was. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/mig_int.h"
#include "gpu/nvml_shim.h"
#include "gpuslice/apply.h"

#ifndef GS_FAKE_NVML_DIR
#define GS_FAKE_NVML_DIR NULL
#endif

/* MIG profile IDs and CI profile IDs of the reference. */
enum {
  P_1G = 19,
  P_1G_ME = 20,
  P_1G_2X = 15,
  P_2G = 14,
  P_3G = 9,
  P_4G = 5,
  P_7G = 0
};

typedef struct fixture_s {
  char dir[64];
  char state[128];
  gs_backend_t *be;
  gs_error_t err;
} fixture_t;

/* The fake's build directory comes from tests/fake_nvml/CMakeLists.txt or
 * GS_FAKE_NVML_DIR; without either the tests that need it are skipped. */
static const char *fake_path(const char *variant) {
  static char path[1024];
  const char *dir = getenv("GS_FAKE_NVML_DIR");
  if (!dir)
    dir = GS_FAKE_NVML_DIR;
  if (!dir) {
    print_message("no fake NVML built (tests/fake_nvml): skipped\n");
    skip();
  }
  snprintf(path, sizeof path, "%s/%s/libnvidia-ml.so.1", dir, variant);
  return path;
}

static void assert_contains(const char *text, const char *fragment) {
  if (!strstr(text, fragment))
    fail_msg("'%s' does not contain '%s'", text, fragment);
}

static void set_env(const char *name, const char *value) {
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/gs-mig-test-XXXXXX");
  if (!f || !mkdtemp(f->dir))
    return -1;
  snprintf(f->state, sizeof f->state, "%s/fake.state", f->dir);
  gs_error_clear(&f->err);
  set_env("FAKE_NVML_CONFIG", NULL);
  set_env("FAKE_NVML_STATE", NULL);
  set_env("FAKE_NVML_BUSY", NULL);
  set_env("FAKE_NVML_FAIL_AFTER", NULL);
  set_env("FAKE_NVML_STRUCT_V2", NULL);
  set_env("FAKE_NVML_NO_PERMISSION", NULL);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  gs_backend_close(f->be);
  char path[160];
  snprintf(path, sizeof path, "%s/mig.lock", f->dir);
  unlink(path);
  unlink(f->state);
  rmdir(f->dir);
  free(f);
  return 0;
}

/* (Re)opens the backend over the current fake with these GPUs. */
static void open_mig(fixture_t *f, const char *config, const char *variant) {
  gs_backend_close(f->be);
  f->be = NULL;
  set_env("FAKE_NVML_CONFIG", config);
  gs_backend_options_t opt = {.state_dir = f->dir};
  int rc = gs__backend_mig_open(&f->be, &opt, fake_path(variant), &f->err);
  if (rc != GS_OK)
    fail_msg("gs_backend_mig_open: %s", f->err.msg);
}

static void get(fixture_t *f, unsigned dev, gs_device_t *out) {
  int rc = f->be->ops->device_get(f->be, dev, out, &f->err);
  if (rc != GS_OK)
    fail_msg("device_get(%u): %s", dev, f->err.msg);
}

static void ok(fixture_t *f, int rc) {
  if (rc != GS_OK)
    fail_msg("%s: %s", gs_err_name(rc), f->err.msg);
}

static unsigned gi_create(fixture_t *f, unsigned dev, unsigned profile,
                          unsigned start) {
  unsigned id = 99;
  ok(f, f->be->ops->gi_create(f->be, dev, profile, start, &id, &f->err));
  return id;
}

static unsigned ci_create(fixture_t *f, unsigned dev, unsigned gi,
                          unsigned ci_profile, unsigned start) {
  unsigned id = 99;
  ok(f, f->be->ops->ci_create(f->be, dev, gi, ci_profile, start, &id, &f->err));
  return id;
}

/* ---- the shim ---------------------------------------------------------- */

static void test_shim_loads_fake(void **state) {
  (void)state;
  gs__nvml_t nvml;
  gs_error_t err;
  gs_error_clear(&err);
  const char *variants[] = {"current", "legacy"};
  for (unsigned v = 0; v < 2; v++) {
    if (gs__nvml_open(&nvml, fake_path(variants[v]), &err) != GS_OK)
      fail_msg("%s: %s", variants[v], err.msg);
#define CHECK_REQUIRED(field, req, ret, params, sym, old)                      \
  if ((req))                                                                   \
    assert_non_null(nvml.field);
    GS__NVML_FUNCS(CHECK_REQUIRED)
#undef CHECK_REQUIRED
    unsigned n = 0;
    assert_int_equal(nvml.DeviceGetCount(&n), NVML_SUCCESS);
    assert_int_equal(n, 1);
    gs__nvml_close(&nvml);
  }
}

static void test_shim_missing_library(void **state) {
  fixture_t *f = *state;
  gs__nvml_t nvml;
  const char *path = "/nonexistent/libnvidia-ml.so.1";
  assert_int_equal(gs__nvml_open(&nvml, path, &f->err), GS_ENODEV);
  assert_contains(f->err.msg, "NVIDIA driver not found: dlopen ");
  assert_contains(f->err.msg, path);
  gs_backend_options_t opt = {.state_dir = f->dir};
  assert_int_equal(gs__backend_mig_open(&f->be, &opt, path, &f->err),
                   GS_ENODEV);
  assert_null(f->be);
}

/* A library lacking a required function is refused, naming the function. */
static void test_shim_missing_symbol(void **state) {
  fixture_t *f = *state;
  gs__nvml_t nvml;
  assert_int_equal(gs__nvml_open(&nvml, fake_path("noplacement"), &f->err),
                   GS_EUNSUPPORTED);
  assert_contains(f->err.msg, "nvmlDeviceCreateGpuInstanceWithPlacement");
  /* Any library that is not NVML: the first function it lacks. */
  assert_int_equal(gs__nvml_open(&nvml, "libm.so.6", &f->err), GS_EUNSUPPORTED);
  assert_contains(f->err.msg, "nvmlInit_v2");
}

/* ---- catalog ----------------------------------------------------------- */

static void assert_ci_equal(const gs_gi_profile_t *got,
                            const gs_gi_profile_t *want) {
  assert_int_equal(got->n_ci, want->n_ci);
  for (unsigned c = 0; c < want->n_ci; c++) {
    assert_int_equal(got->ci[c].id, want->ci[c].id);
    assert_int_equal(got->ci[c].compute_slices, want->ci[c].compute_slices);
    assert_int_equal(got->ci[c].max_count, want->ci[c].max_count);
    assert_int_equal(got->ci[c].start_mask, want->ci[c].start_mask);
  }
}

static void assert_catalog_equal(const gs_catalog_t *got,
                                 const gs_catalog_t *want) {
  assert_int_equal(got->source, GS_CATALOG_NVML);
  assert_string_equal(got->model, want->model);
  assert_string_equal(got->product, want->product);
  assert_int_equal(got->memory_slices, want->memory_slices);
  assert_int_equal(got->compute_slices, want->compute_slices);
  assert_int_equal(got->total_memory_mib, want->total_memory_mib);
  assert_int_equal(got->n_gi, want->n_gi);
  for (unsigned i = 0; i < want->n_gi; i++) {
    const gs_gi_profile_t *g = &got->gi[i], *w = &want->gi[i];
    assert_int_equal(g->id, w->id);
    assert_int_equal(g->nvml_index, w->nvml_index);
    assert_string_equal(g->name, w->name);
    assert_int_equal(g->compute_slices, w->compute_slices);
    assert_int_equal(g->memory_slices, w->memory_slices);
    assert_int_equal(g->max_count, w->max_count);
    assert_int_equal(g->start_mask, w->start_mask);
    assert_int_equal(g->memory_mib, w->memory_mib);
    assert_int_equal(g->sms, w->sms);
    assert_int_equal(g->copy_engines, w->copy_engines);
    assert_int_equal(g->decoders, w->decoders);
    assert_int_equal(g->jpegs, w->jpegs);
    assert_int_equal(g->ofas, w->ofas);
    assert_int_equal(g->media_extensions, w->media_extensions);
    assert_ci_equal(g, w);
  }
}

/* What NVML reports equals the reference table; the CI rules read from a
 * live GI of every profile do too. */
static void check_catalog(fixture_t *f, const char *model,
                          const char *variant) {
  gs_catalog_t table;
  ok(f, gs_catalog_for_model(&table, model, &f->err));
  open_mig(f, model, variant);
  gs_device_t *dev = malloc(sizeof *dev);
  get(f, 0, dev);
  assert_catalog_equal(&dev->catalog, &table);
  ok(f, f->be->ops->begin(f->be, NULL, 0, &f->err));
  for (unsigned i = 0; i < table.n_gi; i++) {
    unsigned start = (unsigned)__builtin_ctz(table.gi[i].start_mask);
    unsigned id = gi_create(f, 0, table.gi[i].id, start);
    get(f, 0, dev);
    assert_int_equal(dev->layout.n_gi, 1);
    assert_ci_equal(&dev->catalog.gi[i], &table.gi[i]);
    ok(f, f->be->ops->gi_destroy(f->be, 0, id, &f->err));
  }
  ok(f, f->be->ops->commit(f->be, &f->err));
  free(dev);
}

static void test_catalog_h100(void **state) {
  check_catalog(*state, "h100-80gb", "current");
}

static void test_catalog_a100(void **state) {
  check_catalog(*state, "a100-40gb", "current");
}

/* Older drivers: v1 profile queries (no names: the table names them). */
static void test_catalog_legacy_driver(void **state) {
  check_catalog(*state, "h100-80gb", "legacy");
}

/* Drivers that know the v2 structs only. */
static void test_catalog_v2_structs(void **state) {
  set_env("FAKE_NVML_STRUCT_V2", "1");
  check_catalog(*state, "a100-40gb", "current");
  set_env("FAKE_NVML_STRUCT_V2", NULL);
}

/* Placements need root: the table stands in for them; changes fail with
 * GS_EPERM. */
static void test_unprivileged(void **state) {
  fixture_t *f = *state;
  gs_catalog_t table;
  ok(f, gs_catalog_for_model(&table, "h100-80gb", &f->err));
  set_env("FAKE_NVML_NO_PERMISSION", "1");
  open_mig(f, "h100-80gb", "current");
  set_env("FAKE_NVML_NO_PERMISSION", NULL);
  gs_device_t *dev = malloc(sizeof *dev);
  get(f, 0, dev);
  assert_catalog_equal(&dev->catalog, &table);
  unsigned id;
  ok(f, f->be->ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(f->be->ops->gi_create(f->be, 0, P_7G, 0, &id, &f->err),
                   GS_EPERM);
  assert_contains(f->err.msg, "Insufficient Permissions");
  f->be->ops->abort(f->be);
  free(dev);
}

/* ---- instances --------------------------------------------------------- */

static void test_create_destroy(void **state) {
  fixture_t *f = *state;
  const gs_backend_ops_t *ops;
  open_mig(f, "h100-80gb", "current");
  ops = f->be->ops;
  unsigned id;
  assert_int_equal(ops->gi_create(f->be, 0, P_3G, 4, &id, &f->err),
                   GS_EINVAL); /* writes only inside a change */
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(gi_create(f, 0, P_3G, 4), 1); /* lowest free ID */
  assert_int_equal(ci_create(f, 0, 1, GS_CI_3C, 0), 0);
  assert_int_equal(gi_create(f, 0, P_1G, 0), 2);
  assert_int_equal(ci_create(f, 0, 2, GS_CI_1C, 0), 0);
  /* 3g starts are 0 or 4; slices 0-3 are partly taken by the 1g. */
  assert_int_equal(ops->gi_create(f->be, 0, P_3G, 2, &id, &f->err), GS_EINVAL);
  assert_contains(f->err.msg, "0,4");
  assert_int_equal(ops->gi_create(f->be, 0, P_4G, 0, &id, &f->err), GS_ENOFIT);
  gs_device_t *dev = malloc(sizeof *dev);
  get(f, 0, dev);
  gs_layout_t *l = &dev->layout;
  assert_true(l->mig_enabled);
  assert_int_equal(l->n_gi, 2);
  assert_int_equal(l->gi[0].id, 2); /* ascending by start */
  assert_int_equal(l->gi[0].start, 0);
  assert_int_equal(l->gi[1].id, 1);
  assert_int_equal(l->gi[1].profile_id, P_3G);
  assert_int_equal(l->gi[1].ci[0].profile_id, GS_CI_3C);
  assert_int_equal(strncmp(l->gi[1].ci[0].uuid, "MIG-", 4), 0);
  assert_string_equal(l->gi[1].uuid, l->gi[1].ci[0].uuid);
  assert_string_not_equal(l->gi[0].uuid, l->gi[1].uuid);
  ok(f, gs_layout_validate(&dev->catalog, l, &f->err));

  gs_confinement_t conf;
  ok(f, ops->confine(f->be, 0, 1, 0, &conf, &f->err));
  assert_int_equal(conf.n_env, 2);
  assert_string_equal(conf.env_name[0], "CUDA_VISIBLE_DEVICES");
  assert_string_equal(conf.env_value[0], l->gi[1].ci[0].uuid);
  assert_string_equal(conf.env_name[1], "NVIDIA_VISIBLE_DEVICES");
  gs_enforcement_t enf;
  ops->enforcement(f->be, &enf);
  assert_contains(enf.compute, "hardware");
  assert_contains(enf.memory, "L2");

  /* A GI with a CI is in use. */
  assert_int_equal(ops->gi_destroy(f->be, 0, 1, &f->err), GS_EBUSY);
  assert_contains(f->err.msg, "GPU instance 1 ");
  assert_contains(f->err.msg, "compute instances");
  ok(f, ops->ci_destroy(f->be, 0, 1, 0, &f->err));
  ok(f, ops->gi_destroy(f->be, 0, 1, &f->err));
  assert_int_equal(ops->gi_destroy(f->be, 0, 1, &f->err), GS_ENOTFOUND);
  assert_int_equal(gi_create(f, 0, P_3G, 4), 1); /* ID 1 is free again */
  ok(f, ops->commit(f->be, &f->err));
  get(f, 0, dev);
  assert_int_equal(dev->layout.n_gi, 2);
  free(dev);
}

/* At most 7 1g instances, and the compute-slice total holds. */
static void test_driver_limits(void **state) {
  fixture_t *f = *state;
  open_mig(f, "h100-80gb", "current");
  const gs_backend_ops_t *ops = f->be->ops;
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  for (unsigned s = 0; s < 7; s++)
    assert_int_equal(gi_create(f, 0, P_1G, s), s + 1);
  unsigned id;
  /* Slice 7 is free memory, but 1g cannot start there and compute is
   * used up. */
  assert_int_equal(ops->gi_create(f->be, 0, P_1G, 7, &id, &f->err), GS_EINVAL);
  ok(f, ops->gi_destroy(f->be, 0, 7, &f->err));
  assert_int_equal(ops->gi_create(f->be, 0, P_1G_2X, 6, &id, &f->err), GS_OK);
  assert_int_equal(ops->gi_create(f->be, 0, P_1G_ME, 6, &id, &f->err),
                   GS_ENOFIT);
  assert_contains(f->err.msg, "Insufficient Resources");
  ops->abort(f->be);
}

static void test_busy_gi(void **state) {
  fixture_t *f = *state;
  set_env("FAKE_NVML_BUSY", "gi:1");
  open_mig(f, "h100-80gb", "current");
  const gs_backend_ops_t *ops = f->be->ops;
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(gi_create(f, 0, P_2G, 0), 1);
  ci_create(f, 0, 1, GS_CI_2C, 0);
  ops->commit(f->be, &f->err);

  gs_process_t procs[4];
  size_t n = 0;
  ok(f, ops->processes(f->be, 0, 1, procs, 4, &n, &f->err));
  assert_int_equal(n, 1);
  assert_int_equal(procs[0].pid, getpid());
  assert_int_equal(procs[0].gi_id, 1);
  assert_int_equal(procs[0].ci_id, 0);

  char pid[32];
  snprintf(pid, sizeof pid, "pid %d (", (int)getpid());
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(ops->ci_destroy(f->be, 0, 1, 0, &f->err), GS_EBUSY);
  assert_contains(f->err.msg, pid);
  assert_int_equal(ops->gi_destroy(f->be, 0, 1, &f->err), GS_EBUSY);
  assert_contains(f->err.msg, "GPU instance 1 on GPU 0 is in use");
  assert_contains(f->err.msg, pid);
  ops->abort(f->be);

  /* apply refuses to plan the busy GI away. */
  gs_want_t want = {.mig_enabled = true, .n = 1, .item = {{P_7G, GS_CI_7C, 1}}};
  bool selected[1] = {true};
  gs_apply_report_t *report = malloc(sizeof *report);
  assert_int_equal(gs_apply(f->be, &want, selected, 1, false, report, &f->err),
                   GS_EBUSY);
  assert_contains(f->err.msg, pid);
  free(report);
}

/* ---- apply and rollback ------------------------------------------------ */

static bool same_layout(const gs_layout_t *a, const gs_layout_t *b) {
  if (a->mig_enabled != b->mig_enabled || a->n_gi != b->n_gi)
    return false;
  for (unsigned g = 0; g < a->n_gi; g++) {
    const gs_gi_t *x = &a->gi[g], *y = &b->gi[g];
    if (x->id != y->id || x->profile_id != y->profile_id ||
        x->start != y->start || x->n_ci != y->n_ci)
      return false;
    for (unsigned c = 0; c < x->n_ci; c++)
      if (x->ci[c].id != y->ci[c].id ||
          x->ci[c].profile_id != y->ci[c].profile_id ||
          x->ci[c].start != y->ci[c].start)
        return false;
  }
  return true;
}

/* 4g.40gb@0 + 3g.40gb@4 -> 3g.40gb + 2 x 2g.20gb: the 4g is destroyed and
 * the second create call fails; the 4g comes back, the 3g never moved. The
 * fake keeps its GPUs in a file between sessions, as for the CLI. */
static void test_apply_rollback(void **state) {
  fixture_t *f = *state;
  set_env("FAKE_NVML_STATE", f->state);
  open_mig(f, "h100-80gb", "current");
  const gs_backend_ops_t *ops = f->be->ops;
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  ci_create(f, 0, gi_create(f, 0, P_4G, 0), GS_CI_4C, 0);
  ci_create(f, 0, gi_create(f, 0, P_3G, 4), GS_CI_3C, 0);
  ok(f, ops->commit(f->be, &f->err));

  set_env("FAKE_NVML_FAIL_AFTER", "2");
  open_mig(f, "h100-80gb", "current");
  gs_device_t *before = malloc(sizeof *before), *after = malloc(sizeof *after);
  get(f, 0, before);
  assert_int_equal(before->layout.n_gi, 2);
  gs_want_t want = {.mig_enabled = true,
                    .n = 2,
                    .item = {{P_3G, GS_CI_3C, 1}, {P_2G, GS_CI_2C, 2}}};
  bool selected[1] = {true};
  gs_apply_report_t *report = malloc(sizeof *report);
  int rc = gs_apply(f->be, &want, selected, 1, false, report, &f->err);
  assert_int_equal(rc, GS_EDRIVER);
  assert_contains(f->err.msg, "Unknown Error");
  assert_contains(f->err.msg, "undone");
  get(f, 0, after);
  if (!same_layout(&before->layout, &after->layout))
    fail_msg("layout changed by a failed apply");
  assert_string_equal(before->layout.gi[1].uuid, after->layout.gi[1].uuid);

  set_env("FAKE_NVML_FAIL_AFTER", NULL);
  open_mig(f, "h100-80gb", "current"); /* state comes back from the file */
  get(f, 0, after);
  assert_true(same_layout(&before->layout, &after->layout));
  ok(f, gs_apply(f->be, &want, selected, 1, false, report, &f->err));
  get(f, 0, after);
  assert_int_equal(
      gs_layout_matches(&after->catalog, &after->layout, &want, &f->err), 1);
  assert_int_equal(gs_layout_find_gi(&after->layout, 2)->start, 4); /* kept */
  free(report);
  free(before);
  free(after);
}

/* begin holds <state_dir>/mig.lock until commit, so another gpuslice
 * process cannot change the GPU meanwhile; what one process changed,
 * another reads back from the hardware (the fake's state file). */
static void test_lock_and_other_process(void **state) {
  fixture_t *f = *state;
  set_env("FAKE_NVML_STATE", f->state);
  open_mig(f, "h100-80gb", "current");
  const gs_backend_ops_t *ops = f->be->ops;
  char lock[160];
  snprintf(lock, sizeof lock, "%s/mig.lock", f->dir);
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  pid_t child = fork();
  if (child == 0) {
    int fd = open(lock, O_RDWR | O_CLOEXEC);
    _exit(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK
              ? 0
              : 1);
  }
  int status = -1;
  assert_int_equal(waitpid(child, &status, 0), child);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ok(f, ops->commit(f->be, &f->err));

  child = fork();
  if (child == 0) {
    unsigned id;
    gs_error_t err;
    _exit(ops->begin(f->be, NULL, 0, &err) == GS_OK &&
                  ops->gi_create(f->be, 0, P_7G, 0, &id, &err) == GS_OK &&
                  ops->commit(f->be, &err) == GS_OK
              ? 0
              : 1);
  }
  assert_int_equal(waitpid(child, &status, 0), child);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  gs_device_t *dev = malloc(sizeof *dev);
  get(f, 0, dev);
  assert_int_equal(dev->layout.n_gi, 1);
  assert_int_equal(dev->layout.gi[0].profile_id, P_7G);
  free(dev);
}

/* ---- MIG mode ---------------------------------------------------------- */

static void test_ampere_mode_change(void **state) {
  fixture_t *f = *state;
  open_mig(f, "a100-40gb", "current");
  const gs_backend_ops_t *ops = f->be->ops;
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(ops->set_mig_mode(f->be, 0, false, &f->err),
                   GS_EUNSUPPORTED);
  assert_contains(f->err.msg, "GPU 0 (A100");
  assert_contains(f->err.msg, "reset");
  ops->abort(f->be);
  gs_device_t *dev = malloc(sizeof *dev);
  get(f, 0, dev);
  assert_true(dev->layout.mig_enabled);
  /* No change is left pending for the next reset. */
  gs__nvml_t nvml;
  ok(f, gs__nvml_open(&nvml, fake_path("current"), &f->err));
  nvmlDevice_t h;
  unsigned cur = 9, pending = 9;
  assert_int_equal(nvml.DeviceGetHandleByIndex(0, &h), NVML_SUCCESS);
  assert_int_equal(nvml.DeviceGetMigMode(h, &cur, &pending), NVML_SUCCESS);
  assert_int_equal(pending, NVML_DEVICE_MIG_ENABLE);
  gs__nvml_close(&nvml);
  free(dev);
}

static void test_hopper_mode_change(void **state) {
  fixture_t *f = *state;
  open_mig(f, "h100-80gb", "current");
  const gs_backend_ops_t *ops = f->be->ops;
  gs_device_t *dev = malloc(sizeof *dev);
  ok(f, ops->begin(f->be, NULL, 0, &f->err));
  unsigned id = gi_create(f, 0, P_7G, 0);
  assert_int_equal(ops->set_mig_mode(f->be, 0, false, &f->err), GS_EBUSY);
  ok(f, ops->gi_destroy(f->be, 0, id, &f->err));
  ok(f, ops->set_mig_mode(f->be, 0, false, &f->err));
  get(f, 0, dev);
  assert_false(dev->layout.mig_enabled);
  assert_int_equal(dev->layout.n_gi, 0);
  ok(f, ops->set_mig_mode(f->be, 0, true, &f->err));
  ok(f, ops->commit(f->be, &f->err));
  get(f, 0, dev);
  assert_true(dev->layout.mig_enabled);
  free(dev);
}

/* ---- several GPUs ------------------------------------------------------ */

static void test_two_gpus(void **state) {
  fixture_t *f = *state;
  open_mig(f, "h100-80gb,a100-40gb", "current");
  unsigned n = 0;
  ok(f, f->be->ops->device_count(f->be, &n, &f->err));
  assert_int_equal(n, 2);
  gs_device_t *devs = malloc(2 * sizeof *devs);
  get(f, 0, &devs[0]);
  get(f, 1, &devs[1]);
  assert_string_equal(devs[0].catalog.model, "h100-80gb");
  assert_string_equal(devs[1].catalog.model, "a100-40gb");
  assert_int_equal(devs[1].pci_device_id, 0x20B010DE);
  assert_string_not_equal(devs[0].uuid, devs[1].uuid);

  gs_want_t want[2] = {
      {.mig_enabled = true, .n = 1, .item = {{P_1G, GS_CI_1C, 7}}},
      {.mig_enabled = true, .n = 1, .item = {{P_3G, GS_CI_3C, 2}}}};
  bool selected[2] = {true, true};
  gs_apply_report_t *report = malloc(sizeof *report);
  ok(f, gs_apply(f->be, want, selected, 2, false, report, &f->err));
  for (unsigned d = 0; d < 2; d++) {
    get(f, d, &devs[d]);
    assert_int_equal(
        gs_layout_matches(&devs[d].catalog, &devs[d].layout, &want[d], &f->err),
        1);
  }
  assert_int_equal(devs[0].layout.n_gi, 7);
  assert_string_equal(devs[1].catalog.gi[4].name, "3g.20gb");

  /* A GPU with MIG off is not a MIG device: the A100 becomes device 0. */
  open_mig(f, "h100-80gb:off,a100-40gb", "current");
  ok(f, f->be->ops->device_count(f->be, &n, &f->err));
  assert_int_equal(n, 1);
  get(f, 0, &devs[0]);
  assert_string_equal(devs[0].catalog.model, "a100-40gb");
  free(report);
  free(devs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_shim_loads_fake, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shim_missing_library, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_shim_missing_symbol, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_catalog_h100, setup, teardown),
      cmocka_unit_test_setup_teardown(test_catalog_a100, setup, teardown),
      cmocka_unit_test_setup_teardown(test_catalog_legacy_driver, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_catalog_v2_structs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unprivileged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_destroy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_driver_limits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_busy_gi, setup, teardown),
      cmocka_unit_test_setup_teardown(test_apply_rollback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lock_and_other_process, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_ampere_mode_change, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hopper_mode_change, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_gpus, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
