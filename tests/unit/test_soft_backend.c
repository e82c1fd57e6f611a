/* The soft backend against test-only fakes of NVML (tests/fake_nvml), the
 * CUDA driver (tests/fake_cuda) and nvidia-cuda-mps-control
 * (tests/fake_mps). Rules checked come from NVIDIA's MIG and MPS docs: a GPU
 * with
 * MIG off offers the profiles MIG offers on its model, other GPUs a
 * catalog synthesized at 8-SM granularity; MPS's active-thread percentage
 * p gives floor(p * SMs / 100) rounded down to whole TPCs (12% of 132 SMs
 * gave 14 on H200, driver 580); and the issue's: one gpuslice-owned MPS
 * daemon per GPU with its own pipe and log directories, started by the
 * first process and stopped with the GPU's last instance; an instance's
 * memory holds for all its processes together; --isolation process runs
 * without MPS; a foreign MPS server, a missing driver or a missing GPU
 * are clear errors that leave nothing behind. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/soft_int.h"
#include "gpuslice/backend.h"
#include "gpuslice/state.h"
#include "test_tmpdir.h"

#ifndef GS_FAKE_NVML_DIR
#define GS_FAKE_NVML_DIR NULL
#define GS_FAKE_CUDA NULL
#define GS_FAKE_MPS NULL
#define GS_NVML_FIXTURE_DIR "."
#endif

enum { P_1G = 19, P_1G_2X = 15, P_3G = 9, P_7G = 0 };
#define H100_GPU0 "GPU-fa4e0000-0000-4000-8000-000000002330"
#define H100_GPU1 "GPU-fa4e0001-0000-4000-8000-000000002330"
#define L4_GPU0 "GPU-fa4e0000-0000-4000-8000-0000000027b8"
#define MIB_1G_10GB 9984u /* H100 1g.10gb: 9.75 GiB */

typedef struct fixture_s {
  char dir[64];
  char nvml[1024];
  gs_backend_t *be;
  gs_error_t err;
} fixture_t;

static void set_env(const char *name, const char *value) {
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
}

static void assert_contains(const char *text, const char *fragment) {
  if (!strstr(text, fragment))
    fail_msg("'%s' does not contain '%s'", text, fragment);
}

static int setup(void **state) {
  if (!GS_FAKE_NVML_DIR) {
    print_message("no fakes built (tests/fake_cuda): skipped\n");
    return -1;
  }
  fixture_t *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/gs-soft-test-XXXXXX");
  if (!f || !mkdtemp(f->dir))
    return -1;
  snprintf(f->nvml, sizeof f->nvml, "%s/current/libnvidia-ml.so.1",
           GS_FAKE_NVML_DIR);
  static const char *const vars[] = {
      "FAKE_NVML_CONFIG",     "FAKE_NVML_STATE",        "FAKE_NVML_BUSY",
      "FAKE_NVML_PROCS",      "FAKE_NVML_FIXTURE",      "FAKE_CUDA_SMS",
      "FAKE_CUDA_UUIDS",      "FAKE_CUDA_FAIL_INIT",    "FAKE_CUDA_LOG",
      "FAKE_MPS_STATIC",      "FAKE_MPS_FAIL_START",    "FAKE_MPS_LOG",
      "CUDA_VISIBLE_DEVICES", "CUDA_MPS_PIPE_DIRECTORY"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    set_env(vars[i], NULL);
  *state = f;
  return 0;
}

/* Stops whatever daemon a failed test left, then removes the directory. */
static int teardown(void **state) {
  fixture_t *f = *state;
  gs_backend_close(f->be);
  char pattern[128];
  glob_t g;
  snprintf(pattern, sizeof pattern, "%s/mps/*/pipe/*.pid", f->dir);
  if (glob(pattern, 0, NULL, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++) {
      FILE *p = fopen(g.gl_pathv[i], "r");
      long pid = 0;
      if (p && fscanf(p, "%ld", &pid) == 1 && pid > 0)
        kill((pid_t)pid, SIGKILL);
      if (p)
        fclose(p);
    }
    globfree(&g);
  }
  int rc = test_tmpdir_remove(f->dir);
  free(f);
  return rc;
}

static int try_open(fixture_t *f, const char *config, const char *sms,
                    gs_soft_isolation_t isolation, const char *name) {
  gs_backend_close(f->be);
  f->be = NULL;
  set_env("FAKE_NVML_CONFIG", config);
  set_env("FAKE_CUDA_SMS", sms);
  gs_backend_options_t opt = {.state_dir = f->dir,
                              .nvml_library = f->nvml,
                              .cuda_library = GS_FAKE_CUDA,
                              .mps_control = GS_FAKE_MPS,
                              .soft_isolation = isolation,
                              .host_cgroup_root = "none"};
  return gs_backend_open(&f->be, name, &opt, &f->err);
}

static void open_soft(fixture_t *f, const char *config, const char *sms,
                      gs_soft_isolation_t isolation) {
  if (try_open(f, config, sms, isolation, "soft") != GS_OK)
    fail_msg("opening soft: %s", f->err.msg);
}

static void ok(fixture_t *f, int rc) {
  if (rc != GS_OK)
    fail_msg("%s (%s)", f->err.msg, gs_err_name(rc));
}

/* A GI of `profile` at start with its full CI, on device dev. */
static unsigned create(fixture_t *f, unsigned dev, unsigned profile,
                       unsigned start) {
  const gs_backend_ops_t *o = f->be->ops;
  gs_device_t *d = malloc(sizeof *d);
  unsigned gi = 0, ci = 0;
  ok(f, o->device_get(f->be, dev, d, &f->err));
  const gs_ci_profile_t *full =
      gs_catalog_ci_full(gs_catalog_gi(&d->catalog, profile));
  assert_non_null(full);
  ok(f, o->begin(f->be, NULL, 0, &f->err));
  ok(f, o->gi_create(f->be, dev, profile, start, &gi, &f->err));
  ok(f, o->ci_create(f->be, dev, gi, full->id, 0, &ci, &f->err));
  ok(f, o->commit(f->be, &f->err));
  free(d);
  return gi;
}

static void destroy(fixture_t *f, unsigned dev, unsigned gi) {
  const gs_backend_ops_t *o = f->be->ops;
  ok(f, o->begin(f->be, NULL, 0, &f->err));
  ok(f, o->ci_destroy(f->be, dev, gi, 0, &f->err));
  ok(f, o->gi_destroy(f->be, dev, gi, &f->err));
  ok(f, o->commit(f->be, &f->err));
}

/* ---- confined children ------------------------------------------------- */

/* What a confined child reports: the result, the message, its env. */
typedef struct report_s {
  int rc;
  char msg[sizeof((gs_error_t *)0)->msg];
  char env[4096]; /* NAME=value lines */
} report_t;

typedef struct child_s {
  pid_t pid;
  int release;
  report_t rep;
} child_t;

/* Forks a child that confines itself to dev:gi:0 asking for `request`
 * bytes, reports, and waits for `release` to close. */
static void spawn(fixture_t *f, unsigned dev, unsigned gi, uint64_t request,
                  child_t *c) {
  int up[2], down[2];
  assert_int_equal(pipe(up), 0);
  assert_int_equal(pipe(down), 0);
  c->pid = fork();
  assert_true(c->pid >= 0);
  if (c->pid == 0) {
    alarm(60);
    /* Only its own pipes: another child's would keep that one waiting. */
    for (int fd = 3; fd < 1024; fd++)
      if (fd != up[1] && fd != down[0])
        close(fd);
    static gs_confinement_t conf;
    static report_t r;
    static gs_error_t err;
    conf.memory_request_bytes = request;
    r.rc = f->be->ops->confine(f->be, dev, gi, 0, &conf, &err);
    snprintf(r.msg, sizeof r.msg, "%s", r.rc ? err.msg : "");
    size_t len = 0;
    for (unsigned i = 0; r.rc == GS_OK && i < conf.n_env; i++)
      len += (size_t)snprintf(r.env + len, sizeof r.env - len, "%s=%s\n",
                              conf.env_name[i], conf.env_value[i]);
    if (write(up[1], &r, sizeof r) != (ssize_t)sizeof r)
      _exit(2);
    char ch;
    while (read(down[0], &ch, 1) > 0)
      ;
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  struct pollfd p = {.fd = up[0], .events = POLLIN};
  assert_int_equal(poll(&p, 1, 30000), 1);
  assert_int_equal(read(up[0], &c->rep, sizeof c->rep), sizeof c->rep);
  close(up[0]);
  c->release = down[1];
}

static void reap(child_t *c) {
  close(c->release);
  int status;
  assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The value of NAME in a report's env, "" when absent. */
static const char *env_of(const report_t *r, const char *name) {
  static char value[512];
  char key[64];
  snprintf(key, sizeof key, "%s=", name);
  value[0] = '\0';
  for (const char *line = r->env; *line; line = strchr(line, '\n') + 1) {
    if (strncmp(line, key, strlen(key)) == 0) {
      size_t n = strcspn(line + strlen(key), "\n");
      snprintf(value, sizeof value, "%.*s", (int)n, line + strlen(key));
      break;
    }
    if (!strchr(line, '\n'))
      break;
  }
  return value;
}

static void read_file(const char *path, char *buf, size_t size) {
  FILE *fp = fopen(path, "r");
  size_t n = fp ? fread(buf, 1, size - 1, fp) : 0;
  buf[n] = '\0';
  if (fp)
    fclose(fp);
}

/* How many lines of the GPU's fake MPS log contain `what`. */
static unsigned log_count(fixture_t *f, const char *uuid, const char *what) {
  char path[256], text[8192];
  snprintf(path, sizeof path, "%s/mps/%s/log/fake.log", f->dir, uuid);
  read_file(path, text, sizeof text);
  unsigned n = 0;
  for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
    n++;
  return n;
}

static pid_t daemon_of(fixture_t *f, unsigned dev) {
  return gs__mps_daemon_pid((gs__soft_t *)f->be->impl, dev);
}

/* ---- rules ------------------------------------------------------------- */

/* Rule (notes): 12% of 132 SMs gave 14 SMs; the percentage function
 * returns the smallest percentage reaching a count, monotonically. */
static void test_percentage(void **state) {
  (void)state;
  assert_int_equal(gs__mps_sms_at(12, 132), 14);
  assert_int_equal(gs__mps_sms_at(100, 132), 132);
  assert_int_equal(gs__mps_percentage(16, 132), 13); /* 1g.10gb */
  assert_int_equal(gs__mps_percentage(26, 132), 20); /* 1g.20gb */
  assert_int_equal(gs__mps_percentage(32, 132), 25);
  assert_int_equal(gs__mps_percentage(60, 132), 46);
  assert_int_equal(gs__mps_percentage(64, 132), 49);
  assert_int_equal(gs__mps_percentage(132, 132), 100);
  assert_int_equal(gs__mps_percentage(14, 108), 13); /* A100: 14.04 -> 14 */
  for (unsigned total = 8; total <= 160; total += 2)
    for (unsigned want = 1; want <= total; want++) {
      unsigned p = gs__mps_percentage(want, total);
      assert_true(gs__mps_sms_at(p, total) >= want);
      assert_true(p == 1 || gs__mps_sms_at(p - 1, total) < want);
      assert_true(gs__mps_sms_at(p, total) >= gs__mps_sms_at(p - 1, total));
    }
}

/* Rule: an H100 with MIG off offers the H100 table, device by device. */
static void test_catalog_h100(void **state) {
  fixture_t *f = *state;
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  assert_string_equal(f->be->ops->name, "soft");
  gs_device_t *d = malloc(sizeof *d);
  gs_catalog_t *want = malloc(sizeof *want);
  ok(f, f->be->ops->device_get(f->be, 0, d, &f->err));
  ok(f, gs_catalog_for_model(want, "h100-80gb", &f->err));
  assert_string_equal(d->uuid, H100_GPU0);
  assert_string_equal(d->name, "NVIDIA H100 80GB HBM3");
  assert_int_equal(d->catalog.source, GS_CATALOG_TABLE);
  assert_int_equal(d->catalog.n_gi, want->n_gi);
  for (unsigned i = 0; i < want->n_gi; i++) {
    assert_int_equal(d->catalog.gi[i].id, want->gi[i].id);
    assert_string_equal(d->catalog.gi[i].name, want->gi[i].name);
    assert_int_equal(d->catalog.gi[i].sms, want->gi[i].sms);
  }
  assert_int_equal(f->be->ops->device_get(f->be, 1, d, &f->err), GS_ENODEV);
  free(want);
  free(d);
}

/* Rule: the H200 recorded on the GPU machine (MIG off, driver 580) is a
 * soft device with the H200 table, under its recorded UUID. */
static void test_recorded_h200(void **state) {
  fixture_t *f = *state;
  char path[512];
  glob_t g;
  snprintf(path, sizeof path, "%s/h200-*.json", GS_NVML_FIXTURE_DIR);
  if (glob(path, 0, NULL, &g) != 0) {
    print_message("no recorded H200 in %s: skipped\n", GS_NVML_FIXTURE_DIR);
    skip();
  }
  set_env("FAKE_NVML_FIXTURE", g.gl_pathv[0]);
  globfree(&g);
  open_soft(f, NULL, "132", GS_SOFT_ISOLATION_DEFAULT);
  gs_device_t *d = malloc(sizeof *d);
  ok(f, f->be->ops->device_get(f->be, 0, d, &f->err));
  assert_string_equal(d->catalog.model, "h200");
  assert_int_equal(d->catalog.source, GS_CATALOG_TABLE);
  assert_memory_equal(d->uuid, "GPU-", 4);
  assert_int_equal(d->pci_device_id, 0x233510DE);
  assert_string_equal(gs_catalog_gi(&d->catalog, P_1G)->name, "1g.18gb");
  free(d);
}

/* Rule: a GPU without a MIG table gets a synthesized catalog, SMs from
 * CUDA in multiples of 8 (at least 8); GPUs with MIG on are left to mig. */
static void test_catalog_synth(void **state) {
  fixture_t *f = *state;
  set_env("FAKE_CUDA_UUIDS", "GPU-fa4e0000-0000-4000-8000-00000000ffff,"
                             "GPU-fa4e0001-0000-4000-8000-0000000027b8");
  open_soft(f, "h100-80gb,l4", "999,58", GS_SOFT_ISOLATION_DEFAULT);
  unsigned n = 0;
  ok(f, f->be->ops->device_count(f->be, &n, &f->err));
  assert_int_equal(n, 1); /* the H100 has MIG on */
  gs_device_t *d = malloc(sizeof *d);
  ok(f, f->be->ops->device_get(f->be, 0, d, &f->err));
  assert_string_equal(d->uuid, "GPU-fa4e0001-0000-4000-8000-0000000027b8");
  assert_int_equal(d->catalog.source, GS_CATALOG_SOFT);
  assert_int_equal(d->catalog.total_sms, 58);
  assert_int_equal(d->catalog.memory_slices, 8);
  const gs_gi_profile_t *g1 = gs_catalog_gi(&d->catalog, P_1G);
  const gs_gi_profile_t *g7 = gs_catalog_gi(&d->catalog, P_7G);
  assert_non_null(g1);
  assert_int_equal(g1->sms, 8);
  assert_int_equal(g7->sms, 58);
  for (unsigned i = 0; i < d->catalog.n_gi; i++)
    assert_true(d->catalog.gi[i].sms % 8 == 0 || d->catalog.gi[i].id == P_7G);
  free(d);
  /* Without CUDA the SM count of a table-less GPU is unknown. */
  gs_backend_close(f->be);
  f->be = NULL;
  gs_backend_options_t opt = {.state_dir = f->dir,
                              .nvml_library = f->nvml,
                              .cuda_library = "/nonexistent/libcuda.so.1"};
  assert_int_equal(gs_backend_open(&f->be, "soft", &opt, &f->err), GS_ENODEV);
  assert_contains(f->err.msg, "CUDA driver not found");
  assert_contains(f->err.msg, "no MIG profile table");
}

/* Rule: no driver, or no GPU without MIG, is GS_ENODEV with the reason;
 * auto-detection picks mig, then soft, then host. */
static void test_no_driver_and_detection(void **state) {
  fixture_t *f = *state;
  gs_backend_options_t opt = {.state_dir = f->dir,
                              .nvml_library = "/nonexistent/libnvidia-ml.so.1",
                              .host_cgroup_root = "none"};
  assert_int_equal(gs_backend_open(&f->be, "soft", &opt, &f->err), GS_ENODEV);
  assert_contains(f->err.msg, "NVIDIA driver not found");
  assert_null(f->be);
  ok(f, gs_backend_open(&f->be, NULL, &opt, &f->err));
  assert_string_equal(f->be->ops->name, "host");
  assert_int_equal(try_open(f, "h100-80gb", "132", 0, "soft"), GS_ENODEV);
  assert_contains(f->err.msg, "MIG mode on");
  ok(f, try_open(f, "h100-80gb", "132", 0, NULL));
  assert_string_equal(f->be->ops->name, "mig");
  ok(f, try_open(f, "h100-80gb:off", "132", 0, NULL));
  assert_string_equal(f->be->ops->name, "soft");
}

/* Rule: a process confined under MPS gets its GPU, the GPU's own pipe and
 * log directories, the percentage reaching its instance's SMs and the
 * instance's memory; the daemon starts once per GPU and stops with the
 * GPU's last instance. */
static void test_confine_mps(void **state) {
  fixture_t *f = *state;
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  unsigned gi = create(f, 0, P_1G, 3);
  assert_int_equal(daemon_of(f, 0), 0); /* started lazily */
  child_t a, b;
  spawn(f, 0, gi, 0, &a);
  if (a.rep.rc != GS_OK)
    fail_msg("confine: %s", a.rep.msg);
  char pipe[256], log[256];
  snprintf(pipe, sizeof pipe, "%s/mps/%s/pipe", f->dir, H100_GPU0);
  snprintf(log, sizeof log, "%s/mps/%s/log", f->dir, H100_GPU0);
  assert_string_equal(env_of(&a.rep, "CUDA_VISIBLE_DEVICES"), H100_GPU0);
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_PIPE_DIRECTORY"), pipe);
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_LOG_DIRECTORY"), log);
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"),
                      "13");
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"),
                      "0=9984M");
  assert_string_equal(env_of(&a.rep, "GPUSLICE_MEMORY_LIMIT_BYTES"),
                      "10468982784");
  assert_string_equal(env_of(&a.rep, "GPUSLICE_PROFILE"), "1g.10gb");
  assert_string_equal(env_of(&a.rep, "GPUSLICE_ISOLATION"), "mps");
  assert_string_equal(env_of(&a.rep, "GPUSLICE_SMS"), "16");
  pid_t daemon = daemon_of(f, 0);
  assert_true(daemon > 0);
  assert_int_equal(log_count(f, H100_GPU0, "args=-d"), 1);
  assert_int_equal(log_count(f, H100_GPU0, "CUDA_VISIBLE_DEVICES=" H100_GPU0),
                   1);
  /* A second process asks for 1 GiB of what is left; same daemon. */
  reap(&a);
  spawn(f, 0, gi, 1u << 30, &b);
  assert_int_equal(b.rep.rc, GS_OK);
  assert_string_equal(env_of(&b.rep, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"),
                      "0=1024M");
  assert_int_equal(daemon_of(f, 0), daemon);
  assert_int_equal(log_count(f, H100_GPU0, "args=-d"), 1);
  /* The instance is busy while b runs; destroying it stops the daemon. */
  ok(f, f->be->ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(f->be->ops->gi_destroy(f->be, 0, gi, &f->err), GS_EBUSY);
  f->be->ops->abort(f->be);
  reap(&b);
  destroy(f, 0, gi);
  assert_int_equal(daemon_of(f, 0), 0);
  assert_int_equal(log_count(f, H100_GPU0, "command=quit"), 1);
}

/* Rule: each GPU has its own daemon and directories; one GPU losing its
 * last instance stops its daemon only. A CI gets the SMs of a GI of as
 * many slices (MIG hands out SMs that way). */
static void test_two_gpus(void **state) {
  fixture_t *f = *state;
  open_soft(f, "h100-80gb:off,h100-80gb:off", "132,114",
            GS_SOFT_ISOLATION_DEFAULT);
  unsigned g0 = create(f, 0, P_7G, 0), g1 = create(f, 1, P_3G, 4);
  child_t a, b;
  spawn(f, 0, g0, 0, &a);
  spawn(f, 1, g1, 0, &b);
  assert_int_equal(a.rep.rc, GS_OK);
  assert_int_equal(b.rep.rc, GS_OK);
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"),
                      "100");
  /* 3g: 60 SMs of the 114 CUDA reports for GPU 1: 53% gives 60 */
  assert_string_equal(env_of(&b.rep, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"),
                      "53");
  assert_string_equal(env_of(&b.rep, "CUDA_VISIBLE_DEVICES"), H100_GPU1);
  char pipe0[512];
  snprintf(pipe0, sizeof pipe0, "%s",
           env_of(&a.rep, "CUDA_MPS_PIPE_DIRECTORY"));
  assert_string_not_equal(pipe0, env_of(&b.rep, "CUDA_MPS_PIPE_DIRECTORY"));
  assert_contains(env_of(&b.rep, "CUDA_MPS_PIPE_DIRECTORY"), H100_GPU1);
  pid_t d0 = daemon_of(f, 0), d1 = daemon_of(f, 1);
  assert_true(d0 > 0 && d1 > 0 && d0 != d1);
  assert_int_equal(log_count(f, H100_GPU1, "CUDA_VISIBLE_DEVICES=" H100_GPU1),
                   1);
  reap(&a);
  reap(&b);
  destroy(f, 0, g0);
  assert_int_equal(daemon_of(f, 0), 0);
  assert_int_equal(daemon_of(f, 1), d1);
  destroy(f, 1, g1);
  assert_int_equal(daemon_of(f, 1), 0);
}

/* Rule: an instance's memory holds for its processes together: each gets
 * what it asks for, at most what the others leave; with nothing left the
 * next is refused naming the holders; a dead process's part comes back. */
static void test_quota_split(void **state) {
  fixture_t *f = *state;
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  unsigned gi = create(f, 0, P_1G, 0);
  child_t a, b, c, d;
  spawn(f, 0, gi, 8ull << 30, &a);
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"),
                      "0=8192M");
  spawn(f, 0, gi, 0, &b); /* the rest */
  assert_string_equal(env_of(&b.rep, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"),
                      "0=1792M");
  spawn(f, 0, gi, 1ull << 20, &c);
  assert_int_equal(c.rep.rc, GS_EBUSY);
  char who[64];
  snprintf(who, sizeof who, "pid %ld", (long)a.pid);
  assert_contains(c.rep.msg, who);
  snprintf(who, sizeof who, "pid %ld", (long)b.pid);
  assert_contains(c.rep.msg, who);
  assert_contains(c.rep.msg, "no memory left");
  reap(&c);
  gs_process_t procs[8];
  size_t n = 0;
  ok(f, f->be->ops->processes(f->be, 0, gi, procs, 8, &n, &f->err));
  assert_int_equal(n, 2); /* the refused one never registered */
  reap(&b);
  spawn(f, 0, gi, 4ull << 30, &d); /* b's part is free again */
  assert_int_equal(d.rep.rc, GS_OK);
  assert_string_equal(env_of(&d.rep, "GPUSLICE_MEMORY_LIMIT_BYTES"),
                      "1879048192");
  reap(&d);
  reap(&a);
  destroy(f, 0, gi);
}

/* Rule: --isolation process runs without MPS (no daemon, a pipe directory
 * no daemon listens on), is recorded for the GPU, and the GPU cannot
 * switch while it has instances. enforcement() says what each way
 * enforces. */
static void test_isolation_process(void **state) {
  fixture_t *f = *state;
  gs_enforcement_t e;
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_PROCESS);
  unsigned gi = create(f, 0, P_1G_2X, 2);
  child_t a;
  spawn(f, 0, gi, 0, &a);
  assert_int_equal(a.rep.rc, GS_OK);
  char off[128];
  snprintf(off, sizeof off, "%s/mps/off", f->dir);
  assert_string_equal(env_of(&a.rep, "CUDA_VISIBLE_DEVICES"), H100_GPU0);
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_PIPE_DIRECTORY"), off);
  assert_string_equal(env_of(&a.rep, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "");
  assert_string_equal(env_of(&a.rep, "GPUSLICE_ISOLATION"), "process");
  assert_int_equal(daemon_of(f, 0), 0);
  assert_int_equal(log_count(f, H100_GPU0, "args="), 0);
  reap(&a);
  f->be->ops->enforcement(f->be, &e);
  assert_contains(e.compute, "time-sliced");
  assert_contains(e.memory, "not enforced");
  assert_contains(e.faults, "isolated");

  /* MPS asked for explicitly: refused while the instance exists. */
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_MPS);
  unsigned id;
  ok(f, f->be->ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(f->be->ops->gi_create(f->be, 0, P_1G, 0, &id, &f->err),
                   GS_EBUSY);
  assert_contains(f->err.msg, "run under process isolation");
  f->be->ops->abort(f->be);
  spawn(f, 0, gi, 0, &a);
  assert_int_equal(a.rep.rc, GS_EBUSY);
  reap(&a);
  /* The default follows what is recorded. */
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  spawn(f, 0, gi, 0, &a);
  assert_int_equal(a.rep.rc, GS_OK);
  assert_string_equal(env_of(&a.rep, "GPUSLICE_ISOLATION"), "process");
  reap(&a);
  destroy(f, 0, gi);
  /* Without instances the GPU takes MPS again. */
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_MPS);
  f->be->ops->enforcement(f->be, &e);
  assert_contains(e.compute, "SMs capped");
  assert_contains(e.compute, "this driver has no MPS static partitions");
  assert_contains(e.memory, "split among its processes");
  assert_contains(e.faults, "ends every client on that GPU");
  set_env("FAKE_MPS_STATIC", "1");
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_MPS);
  f->be->ops->enforcement(f->be, &e);
  assert_contains(e.compute, "does not use MPS static partitions yet");
}

/* Sleeps under the name MPS servers have, until killed. */
static pid_t fake_server(void) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_NAME, "nvidia-cuda-mps-server");
    for (;;)
      pause();
  }
  for (int i = 0; i < 200; i++) { /* until the name has changed */
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    read_file(path, comm, sizeof comm);
    if (strncmp(comm, "nvidia-cuda-mps", 15) == 0)
      break;
    usleep(10000);
  }
  return pid;
}

/* Rule: an MPS server gpuslice did not start on the GPU is refused with a
 * message naming its control daemon; nothing is registered or started. */
static void test_foreign_daemon(void **state) {
  fixture_t *f = *state;
  pid_t server = fake_server();
  char procs[64];
  snprintf(procs, sizeof procs, "0:%ld", (long)server);
  set_env("FAKE_NVML_PROCS", procs);
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  unsigned gi = create(f, 0, P_1G, 0);
  child_t a;
  spawn(f, 0, gi, 0, &a);
  reap(&a);
  kill(server, SIGKILL);
  waitpid(server, NULL, 0);
  assert_int_equal(a.rep.rc, GS_EBUSY);
  char want[96];
  snprintf(want, sizeof want, "not started by gpuslice (pid %ld,",
           (long)getpid());
  assert_contains(a.rep.msg, want);
  assert_contains(a.rep.msg, "use --isolation process");
  assert_int_equal(daemon_of(f, 0), 0);
  gs_process_t p[4];
  size_t n = 9;
  ok(f, f->be->ops->processes(f->be, 0, gi, p, 4, &n, &f->err));
  assert_int_equal(n, 0);
  set_env("FAKE_NVML_PROCS", NULL);
  destroy(f, 0, gi);
}

/* Rule: a daemon of ours that died is cleaned up and restarted; one that
 * fails to start, or a missing control program, is a clear error. */
static void test_daemon_failures(void **state) {
  fixture_t *f = *state;
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  unsigned gi = create(f, 0, P_1G, 0);
  char path[256];
  snprintf(path, sizeof path, "%s/mps", f->dir);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/mps/%s", f->dir, H100_GPU0);
  mkdir(path, 0700);
  snprintf(path, sizeof path, "%s/mps/%s/pipe", f->dir, H100_GPU0);
  mkdir(path, 0700);
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  waitpid(dead, NULL, 0);
  snprintf(path, sizeof path, "%s/mps/%s/pipe/nvidia-cuda-mps-control.pid",
           f->dir, H100_GPU0);
  FILE *fp = fopen(path, "w");
  fprintf(fp, "%ld\n", (long)dead);
  fclose(fp);
  child_t a;
  set_env("FAKE_MPS_FAIL_START", "1");
  spawn(f, 0, gi, 0, &a);
  reap(&a);
  assert_int_equal(a.rep.rc, GS_EDRIVER);
  assert_contains(a.rep.msg, "exited 1: An error occurred");
  set_env("FAKE_MPS_FAIL_START", NULL);
  spawn(f, 0, gi, 0, &a);
  assert_int_equal(a.rep.rc, GS_OK);
  assert_true(daemon_of(f, 0) > 0 && daemon_of(f, 0) != dead);
  reap(&a);
  destroy(f, 0, gi);

  gs_backend_close(f->be);
  gs_backend_options_t opt = {.state_dir = f->dir,
                              .nvml_library = f->nvml,
                              .cuda_library = GS_FAKE_CUDA,
                              .mps_control = "/nonexistent/mps-control"};
  ok(f, gs_backend_open(&f->be, "soft", &opt, &f->err));
  gi = create(f, 0, P_1G, 0);
  spawn(f, 0, gi, 0, &a);
  reap(&a);
  assert_int_equal(a.rep.rc, GS_ENOTFOUND);
  assert_contains(a.rep.msg, "cannot run the MPS control program");
  destroy(f, 0, gi);
}

/* Rule: CUDA is asked in a child that sees every GPU and no MPS daemon,
 * and only when needed (a GPU with a MIG table needs it at confine). */
static void test_cuda_probe_env(void **state) {
  fixture_t *f = *state;
  char logpath[128], text[1024], want[160];
  snprintf(logpath, sizeof logpath, "%s/cuda.log", f->dir);
  set_env("FAKE_CUDA_LOG", logpath);
  set_env("CUDA_VISIBLE_DEVICES", "1");
  set_env("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps");
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  read_file(logpath, text, sizeof text);
  assert_string_equal(text, "");
  unsigned gi = create(f, 0, P_1G, 0);
  child_t a;
  spawn(f, 0, gi, 0, &a);
  reap(&a);
  assert_int_equal(a.rep.rc, GS_OK);
  read_file(logpath, text, sizeof text);
  snprintf(want, sizeof want,
           "cuInit CUDA_MPS_PIPE_DIRECTORY=%s/mps/off "
           "CUDA_VISIBLE_DEVICES=(unset)\n",
           f->dir);
  assert_string_equal(text, want);
  set_env("CUDA_VISIBLE_DEVICES", NULL);
  set_env("CUDA_MPS_PIPE_DIRECTORY", NULL);
  destroy(f, 0, gi);
}

/* Rule: processes() lists registered processes and, from NVML's list,
 * their children; a GPU process of no instance is nobody's. */
static void test_processes(void **state) {
  fixture_t *f = *state;
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  unsigned gi = create(f, 0, P_1G, 0);
  child_t a;
  spawn(f, 0, gi, 0, &a);
  assert_int_equal(a.rep.rc, GS_OK);
  char procs[64];
  snprintf(procs, sizeof procs, "0:%ld:300,0:%ld:100", (long)a.pid,
           (long)getpid());
  set_env("FAKE_NVML_PROCS", procs);
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  gs_process_t p[4];
  size_t n = 0;
  ok(f, f->be->ops->processes(f->be, 0, gi, p, 4, &n, &f->err));
  assert_int_equal(n, 1); /* the test process is not in the instance */
  assert_int_equal(p[0].pid, a.pid);
  assert_int_equal(p[0].memory_bytes, 300ull << 20);
  ok(f, f->be->ops->begin(f->be, NULL, 0, &f->err));
  assert_int_equal(f->be->ops->gi_destroy(f->be, 0, gi, &f->err), GS_EBUSY);
  char want[64];
  snprintf(want, sizeof want, "in use by pid %ld", (long)a.pid);
  assert_contains(f->err.msg, want);
  f->be->ops->abort(f->be);
  reap(&a);
  set_env("FAKE_NVML_PROCS", NULL);
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  destroy(f, 0, gi);
}

/* Rule: the state records the GPU; a layout recorded for another GPU is
 * corrupt, never silently moved. */
static void test_state_records_gpu(void **state) {
  fixture_t *f = *state;
  open_soft(f, "h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  create(f, 0, P_1G, 0);
  char path[128], text[8192];
  snprintf(path, sizeof path, "%s/state.json", f->dir);
  read_file(path, text, sizeof text);
  assert_contains(text, "\"backend\": \"soft\"");
  assert_contains(text, "\"uuid\": \"" H100_GPU0 "\"");
  assert_contains(text, "\"isolation\": \"mps\"");
  /* The same H100 model now at another index: another GPU. */
  open_soft(f, "h100-80gb,h100-80gb:off", "132", GS_SOFT_ISOLATION_DEFAULT);
  gs_device_t *d = malloc(sizeof *d);
  assert_int_equal(f->be->ops->device_get(f->be, 0, d, &f->err), GS_ECORRUPT);
  assert_contains(f->err.msg, "recorded for " H100_GPU0);
  free(d);
  /* How a GPU's instances run is mps or process, nothing else. */
  gs_state_doc_t *doc = malloc(sizeof *doc);
  static const char bad[] =
      "{\"version\":1,\"backend\":\"soft\",\"devices\":[{\"index\":0,"
      "\"model\":\"h100-80gb\",\"memory_slices\":8,\"mig_enabled\":true,"
      "\"gpu_instances\":[],\"isolation\":\"threads\"}]}";
  assert_int_equal(gs_state_decode(doc, "test", bad, strlen(bad), &f->err),
                   GS_ECORRUPT);
  assert_contains(f->err.msg, "not mps, process or green");
  free(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_percentage),
      cmocka_unit_test_setup_teardown(test_catalog_h100, setup, teardown),
      cmocka_unit_test_setup_teardown(test_recorded_h200, setup, teardown),
      cmocka_unit_test_setup_teardown(test_catalog_synth, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_driver_and_detection, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_confine_mps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_gpus, setup, teardown),
      cmocka_unit_test_setup_teardown(test_quota_split, setup, teardown),
      cmocka_unit_test_setup_teardown(test_isolation_process, setup, teardown),
      cmocka_unit_test_setup_teardown(test_foreign_daemon, setup, teardown),
      cmocka_unit_test_setup_teardown(test_daemon_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cuda_probe_env, setup, teardown),
      cmocka_unit_test_setup_teardown(test_processes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_state_records_gpu, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
