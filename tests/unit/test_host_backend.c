/* Host backend rules: GPU instances are created and destroyed between
 * begin and commit and persist in the state file; abort changes nothing;
 * a confined process makes its instance busy until it dies; compute
 * slices map onto CPU cores as documented; a state file made for another
 * geometry is refused; `run` addresses instances as the CLI takes them. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/host_int.h"
#include "gpuslice/backend.h"
#include "gpuslice/run.h"
#include "gpuslice/state.h"
#include "test_tmpdir.h"

#define MIB_16G 16384u /* 1g = 2048 MiB: profile names 1g.2gb ... 7g.16gb */
#define P_1G 19u
#define P_3G 9u
#define CI_FULL_1G GS_CI_1C

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  return test_tmpdir_make(tmpdir, sizeof tmpdir, "host");
}

static int teardown(void **state) {
  (void)state;
  return test_tmpdir_remove(tmpdir);
}

static gs_backend_t *open_host(unsigned cores, uint64_t mib,
                               const char *cgroup_root) {
  gs_backend_options_t opt = {.state_dir = tmpdir,
                              .host_cpu_cores = cores,
                              .host_memory_mib = mib,
                              .host_cgroup_root = cgroup_root};
  gs_backend_t *be = NULL;
  gs_error_t err;
  int rc = gs_backend_open(&be, "host", &opt, &err);
  if (rc != GS_OK)
    fail_msg("opening host backend: %s", err.msg);
  return be;
}

static void get_layout(gs_backend_t *be, gs_layout_t *out) {
  gs_device_t *dev = malloc(sizeof *dev);
  gs_error_t err;
  assert_non_null(dev);
  if (be->ops->device_get(be, 0, dev, &err) != GS_OK)
    fail_msg("device_get: %s", err.msg);
  *out = dev->layout;
  free(dev);
}

/* One 1g GI at start with its full CI; returns the GI ID. */
static unsigned create_1g(gs_backend_t *be, unsigned start) {
  gs_error_t err;
  unsigned gi = 0, ci = 0;
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK);
  if (be->ops->gi_create(be, 0, P_1G, start, &gi, &err) != GS_OK ||
      be->ops->ci_create(be, 0, gi, CI_FULL_1G, 0, &ci, &err) != GS_OK ||
      be->ops->commit(be, &err) != GS_OK)
    fail_msg("creating 1g at %u: %s", start, err.msg);
  return gi;
}

static void destroy_gi(gs_backend_t *be, unsigned gi_id) {
  gs_error_t err;
  gs_layout_t l;
  get_layout(be, &l);
  const gs_gi_t *gi = gs_layout_find_gi_const(&l, gi_id);
  assert_non_null(gi);
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK);
  for (unsigned c = 0; c < gi->n_ci; c++)
    assert_int_equal(be->ops->ci_destroy(be, 0, gi_id, gi->ci[c].id, &err),
                     GS_OK);
  if (be->ops->gi_destroy(be, 0, gi_id, &err) != GS_OK)
    fail_msg("destroying GI %u: %s", gi_id, err.msg);
  assert_int_equal(be->ops->commit(be, &err), GS_OK);
}

/* Rule: backend names: host opens; mig and soft without a driver are "no
 * device" and auto-detection then falls back to host; an unknown name
 * lists the backends. */
static void test_backend_names(void **state) {
  (void)state;
  gs_backend_options_t opt = {.state_dir = tmpdir,
                              .host_cgroup_root = "none",
                              .nvml_library = "/nonexistent/libnvidia-ml.so.1"};
  gs_backend_t *be = NULL;
  gs_error_t err;
  assert_int_equal(gs_backend_open(&be, "mig", &opt, &err), GS_ENODEV);
  assert_non_null(strstr(err.msg, "libnvidia-ml"));
  assert_int_equal(gs_backend_open(&be, "soft", &opt, &err), GS_ENODEV);
  assert_non_null(strstr(err.msg, "libnvidia-ml"));
  assert_int_equal(gs_backend_open(&be, "tpu", &opt, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "host, soft, mig"));
  assert_int_equal(gs_backend_open(&be, NULL, &opt, &err), GS_OK);
  assert_string_equal(be->ops->name, "host");
  gs_device_t *dev = malloc(sizeof *dev);
  assert_int_equal(be->ops->device_get(be, 0, dev, &err), GS_OK);
  assert_string_equal(dev->name, "host");
  assert_memory_equal(dev->uuid, "HOST-", 5);
  assert_int_equal(dev->catalog.source, GS_CATALOG_HOST);
  assert_int_equal(be->ops->device_get(be, 1, dev, &err), GS_ENODEV);
  free(dev);
  gs_backend_close(be);
}

/* Rule: instances made between begin and commit persist (a new backend
 * sees them, with HOST- UUIDs); IDs are the lowest free; destroy removes. */
static void test_create_destroy(void **state) {
  (void)state;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  assert_int_equal(create_1g(be, 0), 1);
  assert_int_equal(create_1g(be, 3), 2);
  gs_backend_close(be);

  be = open_host(14, MIB_16G, "none");
  gs_layout_t l;
  get_layout(be, &l);
  assert_int_equal(l.n_gi, 2);
  assert_int_equal(l.gi[0].id, 1);
  assert_int_equal(l.gi[1].start, 3);
  assert_memory_equal(l.gi[1].uuid, "HOST-", 5);
  assert_memory_equal(l.gi[1].ci[0].uuid, "HOST-", 5);
  assert_string_not_equal(l.gi[0].uuid, l.gi[1].uuid);
  /* HOST- and a version-4 UUID: 8-4-4-4-12 hex digits, version nibble 4 */
  assert_int_equal(strlen(l.gi[0].uuid), 5 + 36);
  assert_int_equal(l.gi[0].uuid[5 + 14], '4');
  assert_int_equal(l.gi[0].uuid[5 + 8], '-');
  destroy_gi(be, 1);
  get_layout(be, &l);
  assert_int_equal(l.n_gi, 1);
  assert_int_equal(l.gi[0].id, 2);
  assert_int_equal(create_1g(be, 6), 1); /* lowest free ID again */
  gs_backend_close(be);
}

/* Rule: abort drops the change; the state file is untouched. */
static void test_abort(void **state) {
  (void)state;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  create_1g(be, 0);
  char path[300];
  snprintf(path, sizeof path, "%s/%s", tmpdir, GS_STATE_FILE);
  struct stat before, after;
  assert_int_equal(stat(path, &before), 0);
  gs_error_t err;
  unsigned gi;
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK);
  assert_int_equal(be->ops->gi_create(be, 0, P_3G, 4, &gi, &err), GS_OK);
  assert_int_equal(be->ops->gi_destroy(be, 0, 1, &err), GS_EBUSY); /* CI */
  be->ops->abort(be);
  gs_layout_t l;
  get_layout(be, &l);
  assert_int_equal(l.n_gi, 1);
  assert_int_equal(stat(path, &after), 0);
  assert_int_equal(before.st_ino, after.st_ino);
  assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
  gs_backend_close(be);
}

/* Rule: write operations exist only between begin and commit; MIG mode
 * cannot be switched off under instances and gates gi_create. */
static void test_change_rules(void **state) {
  (void)state;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  gs_error_t err;
  unsigned id;
  assert_int_equal(be->ops->gi_create(be, 0, P_1G, 0, &id, &err), GS_EINVAL);
  assert_int_equal(be->ops->set_mig_mode(be, 0, true, &err), GS_EINVAL);
  assert_int_equal(be->ops->commit(be, &err), GS_EINVAL);
  create_1g(be, 0);
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK);
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_EINVAL);
  assert_int_equal(be->ops->set_mig_mode(be, 0, false, &err), GS_EBUSY);
  assert_int_equal(be->ops->gi_create(be, 1, P_1G, 1, &id, &err), GS_ENODEV);
  assert_int_equal(be->ops->gi_destroy(be, 0, 7, &err), GS_ENOTFOUND);
  assert_non_null(strstr(err.msg, "instances: 1"));
  be->ops->abort(be);
  destroy_gi(be, 1);
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK);
  assert_int_equal(be->ops->set_mig_mode(be, 0, false, &err), GS_OK);
  assert_int_equal(be->ops->gi_create(be, 0, P_1G, 0, &id, &err),
                   GS_EUNSUPPORTED);
  assert_int_equal(be->ops->commit(be, &err), GS_OK);
  gs_layout_t l;
  get_layout(be, &l);
  assert_false(l.mig_enabled);
  gs_backend_close(be);
}

/* What a confined child reports back through a pipe (no allocation after
 * confine: the RLIMIT_AS fallback may forbid it). */
typedef struct report_s {
  int rc;
  int n_cpus;
  char cpus[64];
  char profile[64];
  char memory[32];
  char omp[8];
} report_t;

static const char *env_of(const gs_confinement_t *c, const char *name) {
  for (unsigned i = 0; i < c->n_env; i++)
    if (strcmp(c->env_name[i], name) == 0)
      return c->env_value[i];
  return "";
}

/* Forks a child that confines itself to gi (CI 0), reports, and waits for
 * the `release` pipe to close. */
static pid_t spawn_confined(gs_backend_t *be, unsigned gi, report_t *rep,
                            int *release) {
  int up[2], down[2];
  assert_int_equal(pipe(up), 0);
  assert_int_equal(pipe(down), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(30);
    close(up[0]);
    close(down[1]);
    static gs_confinement_t conf;
    static report_t r;
    r.rc = be->ops->confine(be, 0, gi, 0, &conf, NULL);
    cpu_set_t set;
    r.n_cpus =
        sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
    snprintf(r.cpus, sizeof r.cpus, "%s", env_of(&conf, "GPUSLICE_CPUS"));
    snprintf(r.profile, sizeof r.profile, "%s",
             env_of(&conf, "GPUSLICE_PROFILE"));
    snprintf(r.memory, sizeof r.memory, "%s",
             env_of(&conf, "GPUSLICE_MEMORY_LIMIT_BYTES"));
    snprintf(r.omp, sizeof r.omp, "%s", env_of(&conf, "OMP_NUM_THREADS"));
    if (write(up[1], &r, sizeof r) != (ssize_t)sizeof r)
      _exit(2);
    char c;
    while (read(down[0], &c, 1) > 0)
      ;
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  struct pollfd p = {.fd = up[0], .events = POLLIN};
  assert_int_equal(poll(&p, 1, 10000), 1);
  assert_int_equal(read(up[0], rep, sizeof *rep), sizeof *rep);
  close(up[0]);
  *release = down[1];
  return pid;
}

static void reap(pid_t pid, int release) {
  close(release);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Rule: a confined process is listed by processes() and makes gi_destroy
 * (and ci_destroy) fail with GS_EBUSY naming it; once it is gone the GI is
 * destroyable. */
static void test_busy_instance(void **state) {
  (void)state;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  unsigned gi = create_1g(be, 2);
  report_t rep;
  int release;
  pid_t child = spawn_confined(be, gi, &rep, &release);
  assert_int_equal(rep.rc, GS_OK);
  assert_string_equal(rep.profile, "1g.2gb");
  assert_string_equal(rep.memory, "2147483648");
  assert_int_equal(atoi(rep.omp), rep.n_cpus);

  gs_process_t procs[4];
  size_t n = 0;
  gs_error_t err;
  assert_int_equal(be->ops->processes(be, 0, gi, procs, 4, &n, &err), GS_OK);
  assert_int_equal(n, 1);
  assert_int_equal(procs[0].pid, child);
  assert_int_equal(procs[0].gi_id, gi);
  assert_int_equal(procs[0].ci_id, 0);
  assert_true(procs[0].command[0] != '\0');

  char want[64];
  snprintf(want, sizeof want, "in use by pid %ld", (long)child);
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK);
  assert_int_equal(be->ops->gi_destroy(be, 0, gi, &err), GS_EBUSY);
  assert_non_null(strstr(err.msg, want));
  assert_non_null(strstr(err.msg, "(1g.2gb)"));
  assert_int_equal(be->ops->ci_destroy(be, 0, gi, 0, &err), GS_EBUSY);
  be->ops->abort(be);

  reap(child, release);
  assert_int_equal(be->ops->processes(be, 0, gi, procs, 4, &n, &err), GS_OK);
  assert_int_equal(n, 0);
  destroy_gi(be, gi);
  gs_backend_close(be);
}

/* Rule: begin reads, in the step that takes the lock, each device the
 * change names with who runs in each of its GIs (what the one busy rule of
 * create, destroy and apply reads); users only where asked; a device it
 * cannot read fails begin, marked, with no lock left held. */
static void test_begin_reads_users(void **state) {
  (void)state;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  unsigned idle = create_1g(be, 0), busy = create_1g(be, 2);
  report_t rep;
  int release;
  pid_t child = spawn_confined(be, busy, &rep, &release);
  assert_int_equal(rep.rc, GS_OK);

  gs_change_dev_t *d = calloc(2, sizeof *d);
  assert_non_null(d);
  gs_error_t err;
  d[0] = (gs_change_dev_t){.index = 0, .with_users = true};
  assert_int_equal(be->ops->begin(be, d, 1, &err), GS_OK);
  assert_false(d[0].failed);
  assert_int_equal(d[0].dev.layout.n_gi, 2);
  for (unsigned g = 0; g < 2; g++) {
    const gs_busy_t *u = &d[0].users[g];
    assert_int_equal(u->gi_id, d[0].dev.layout.gi[g].id);
    assert_int_equal(u->in_use, u->gi_id == busy);
    assert_int_equal(u->n_procs, u->gi_id == busy ? 1 : 0);
  }
  const gs_busy_t *b = &d[0].users[d[0].dev.layout.gi[0].id == busy ? 0 : 1];
  assert_int_equal(b->procs[0].pid, child);
  assert_true(b->procs[0].command[0] != '\0');
  be->ops->abort(be);

  d[0] = (gs_change_dev_t){.index = 0, .with_users = false};
  assert_int_equal(be->ops->begin(be, d, 1, &err), GS_OK);
  assert_false(d[0].users[0].in_use || d[0].users[1].in_use);
  be->ops->abort(be);

  d[1] = (gs_change_dev_t){.index = 1, .with_users = true};
  d[0] = (gs_change_dev_t){.index = 0, .with_users = true};
  assert_int_equal(be->ops->begin(be, d, 2, &err), GS_ENODEV);
  assert_false(d[0].failed);
  assert_true(d[1].failed);
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK); /* not held */
  be->ops->abort(be);

  free(d);
  reap(child, release);
  destroy_gi(be, busy);
  destroy_gi(be, idle);
  gs_backend_close(be);
}

/* Rule (design): with C >= 7 cores, compute slice s owns cores
 * [floor(s*C/7), floor((s+1)*C/7)), disjoint; with C < 7 slice s shares
 * core floor(s*C/7). A GI at memory slice m with g slices uses compute
 * slices [min(m, 7-g), +g). */
static void test_cpu_geometry(void **state) {
  (void)state;
  unsigned lo, hi;
  /* C = 14: two cores per slice, every 1g disjoint, 7g has all */
  for (unsigned s = 0; s < 7; s++) {
    gs__host_core_range(14, 7, s, 1, &lo, &hi);
    assert_int_equal(lo, 2 * s);
    assert_int_equal(hi, 2 * s + 2);
  }
  gs__host_core_range(14, 7, gs__host_gi_first_slice(4, 3, 7), 3, &lo, &hi);
  assert_int_equal(lo, 8); /* 3g at memory 4: slices 4-6 */
  assert_int_equal(hi, 14);
  gs__host_core_range(14, 7, 0, 7, &lo, &hi);
  assert_int_equal(lo, 0);
  assert_int_equal(hi, 14);
  /* C = 2: slices 0-3 share core 0, slices 4-6 core 1 */
  static const unsigned core_of[7] = {0, 0, 0, 0, 1, 1, 1};
  for (unsigned s = 0; s < 7; s++) {
    gs__host_core_range(2, 7, s, 1, &lo, &hi);
    assert_int_equal(lo, core_of[s]);
    assert_int_equal(hi, core_of[s] + 1);
  }
  gs__host_core_range(2, 7, 0, 4, &lo, &hi); /* 4g: core 0 only */
  assert_int_equal(lo, 0);
  assert_int_equal(hi, 1);
  gs__host_core_range(2, 7, 2, 3, &lo, &hi); /* slices 2-4 span both */
  assert_int_equal(lo, 0);
  assert_int_equal(hi, 2);
  /* GI compute start */
  assert_int_equal(gs__host_gi_first_slice(6, 1, 7), 6);
  assert_int_equal(gs__host_gi_first_slice(0, 7, 7), 0);
  assert_int_equal(gs__host_gi_first_slice(7, 1, 7), 6);
  char buf[64];
  gs__cpulist_format((const int[]){0, 1, 2, 3, 6, 8, 9}, 7, buf, sizeof buf);
  assert_string_equal(buf, "0-3,6,8-9");
}

/* Rule: what enforcement() claims follows the core count and cgroups. */
static void test_enforcement(void **state) {
  (void)state;
  gs_enforcement_t e;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  be->ops->enforcement(be, &e);
  assert_non_null(strstr(e.compute, "disjoint CPU cores"));
  assert_non_null(strstr(e.memory, "RLIMIT_AS"));
  assert_non_null(strstr(e.faults, "isolated"));
  gs_backend_close(be);
  be = open_host(2, MIB_16G, "none");
  be->ops->enforcement(be, &e);
  assert_non_null(strstr(e.compute, "shared CPU cores (2 cores for 7"));
  gs_backend_close(be);
}

/* Rule: with C = 2, a 1g GI at memory slice 5 runs on logical core 1. */
static void test_confine_two_cores(void **state) {
  (void)state;
  cpu_set_t set;
  assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
  int allowed[2], n = 0;
  for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
    if (CPU_ISSET(c, &set))
      allowed[n++] = c;
  gs_backend_t *be = open_host(2, MIB_16G, "none");
  unsigned gi = create_1g(be, 5);
  report_t rep;
  int release;
  pid_t child = spawn_confined(be, gi, &rep, &release);
  reap(child, release);
  assert_int_equal(rep.rc, GS_OK);
  char want[16];
  snprintf(want, sizeof want, "%d", allowed[1 % n]);
  assert_string_equal(rep.cpus, want);
  assert_int_equal(rep.n_cpus, 1);
  destroy_gi(be, gi);
  gs_backend_close(be);
}

static void write_state(const char *text) {
  char path[300];
  snprintf(path, sizeof path, "%s/%s", tmpdir, GS_STATE_FILE);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

#define STATE_DEV(model, slices, gis)                                          \
  "{\"version\":1,\"backend\":\"host\",\"devices\":[{\"index\":0,"             \
  "\"model\":\"" model "\",\"memory_slices\":" #slices ",\"mig_enabled\":"     \
  "true,\"gpu_instances\":[" gis "]}]}"
#define STATE_GI(profile, start)                                               \
  "{\"id\":1,\"profile\":" #profile ",\"start\":" #start ",\"uuid\":\"HOST-"   \
  "x\",\"compute_instances\":[]}"

/* Rule: a state file made for another geometry or model, or whose layout
 * this host's catalog rejects, is reported as corrupt, never reset. */
static void test_state_mismatch(void **state) {
  (void)state;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  gs_error_t err;
  gs_layout_t l;
  gs_device_t *dev = malloc(sizeof *dev);
  write_state(STATE_DEV("host", 4, STATE_GI(19, 0)));
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_ECORRUPT);
  assert_non_null(strstr(err.msg, "4 memory slices"));
  assert_non_null(strstr(err.msg, "fix or remove it by hand"));
  assert_int_equal(be->ops->device_get(be, 0, dev, &err), GS_ECORRUPT);
  write_state(STATE_DEV("a100-40gb", 8, STATE_GI(19, 0)));
  assert_int_equal(be->ops->device_get(be, 0, dev, &err), GS_ECORRUPT);
  assert_non_null(strstr(err.msg, "a100-40gb"));
  write_state(STATE_DEV("host", 8, STATE_GI(9, 2))); /* 3g starts 0 or 4 */
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_ECORRUPT);
  write_state("{\"version\":1,\"backend\":\"soft\",\"devices\":[]}");
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "soft backend"));
  write_state(STATE_DEV("host", 8, STATE_GI(9, 4)));
  get_layout(be, &l);
  assert_int_equal(l.n_gi, 1);
  free(dev);
  gs_backend_close(be);
}

/* Rule: instance addresses are GI, DEV:GI, DEV:GI:CI or a UUID; bad
 * syntax is GS_EINVAL, a missing instance GS_ENOTFOUND listing those that
 * exist. */
static void test_instance_ref(void **state) {
  (void)state;
  gs_backend_t *be = open_host(14, MIB_16G, "none");
  unsigned gi = create_1g(be, 0);
  gs_instance_ref_t ref;
  gs_error_t err;
  assert_int_equal(gs_instance_ref_parse(be, "1", &ref, &err), GS_OK);
  assert_int_equal(ref.dev, 0);
  assert_int_equal(ref.gi_id, gi);
  assert_int_equal(ref.ci_id, -1);
  assert_int_equal(gs_instance_ref_parse(be, "0:1:0", &ref, &err), GS_OK);
  assert_int_equal(ref.ci_id, 0);
  assert_int_equal(gs_instance_ref_parse(be, "0:3", &ref, &err), GS_ENOTFOUND);
  assert_string_equal(err.msg, "no instance 3 on device 0 (instances: 1)");
  assert_int_equal(gs_instance_ref_parse(be, "0:1:5", &ref, &err),
                   GS_ENOTFOUND);
  assert_int_equal(gs_instance_ref_parse(be, "2:1", &ref, &err), GS_ENOTFOUND);
  static const char *const bad[] = {
      "", "1:", ":1", "1:2:3:4", "-1", "1:x", "99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(gs_instance_ref_parse(be, bad[i], &ref, &err), GS_EINVAL);
  gs_layout_t l;
  get_layout(be, &l);
  assert_int_equal(gs_instance_ref_parse(be, l.gi[0].ci[0].uuid, &ref, &err),
                   GS_OK);
  assert_int_equal(ref.gi_id, gi);
  assert_int_equal(ref.ci_id, 0);
  assert_int_equal(gs_instance_ref_parse(be, l.gi[0].uuid, &ref, &err), GS_OK);
  assert_int_equal(ref.ci_id, -1);
  assert_int_equal(gs_instance_ref_parse(be, "HOST-nope", &ref, &err),
                   GS_ENOTFOUND);
  gs_backend_close(be);
}

/* Rule: run execs the command confined, with the instance's identity in
 * its environment; a missing command is GS_ENOTFOUND naming it; a GI
 * without compute instances cannot run anything. */
static void test_run_exec(void **state) {
  (void)state;
  /* Plenty of memory: RLIMIT_AS must not starve a sanitizer build. */
  gs_backend_t *be = open_host(14, 1ull << 29, "none");
  unsigned gi = create_1g(be, 1);
  int out[2];
  assert_int_equal(pipe(out), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(30);
    dup2(out[1], 1);
    gs_instance_ref_t ref = {.dev = 0, .gi_id = gi, .ci_id = -1};
    char *argv[] = {"sh", "-c",
                    "echo \"$GPUSLICE_BACKEND $GPUSLICE_GI_ID $GPUSLICE_CI_ID "
                    "$GPUSLICE_PROFILE\"",
                    NULL};
    gs_run_exec(be, &ref, argv, 0, NULL);
    _exit(3);
  }
  close(out[1]);
  char buf[128] = "";
  struct pollfd p = {.fd = out[0], .events = POLLIN};
  assert_int_equal(poll(&p, 1, 10000), 1);
  ssize_t got = read(out[0], buf, sizeof buf - 1);
  assert_true(got > 0);
  buf[got] = '\0';
  close(out[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  char want[64];
  snprintf(want, sizeof want, "host %u 0 1g.65536gb\n", gi);
  assert_string_equal(buf, want);

  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    gs_instance_ref_t ref = {.dev = 0, .gi_id = gi, .ci_id = 0};
    char *argv[] = {"gs-no-such-command-xyz", NULL};
    gs_error_t err;
    int rc = gs_run_exec(be, &ref, argv, 0, &err);
    _exit(rc == GS_ENOTFOUND &&
                  strstr(err.msg, "command 'gs-no-such-command-xyz' not found")
              ? 0
              : 1);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  gs_error_t err;
  unsigned bare;
  assert_int_equal(be->ops->begin(be, NULL, 0, &err), GS_OK);
  assert_int_equal(be->ops->gi_create(be, 0, P_1G, 5, &bare, &err), GS_OK);
  assert_int_equal(be->ops->commit(be, &err), GS_OK);
  gs_instance_ref_t ref = {.dev = 0, .gi_id = bare, .ci_id = -1};
  char *argv[] = {"true", NULL};
  assert_int_equal(gs_run_exec(be, &ref, argv, 0, &err), GS_EINVAL);
  gs_backend_close(be);
}

/* Reads the cgroup directory of pid in the hierarchy holding `controller`
 * (v1) or the unified one (controller NULL). */
static bool cgroup_path_of(pid_t pid, const char *controller, char *out,
                           size_t size) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%ld/cgroup", (long)pid);
  FILE *f = fopen(path, "r");
  bool found = false;
  while (f && !found && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c2 = '\0';
    bool match = false;
    if (!controller)
      match = strcmp(line, "0:") == 0;
    for (char *save = NULL, *tok = strtok_r(c1 + 1, ",", &save);
         controller && tok && !match; tok = strtok_r(NULL, ",", &save))
      match = strcmp(tok, controller) == 0;
    if (match) {
      snprintf(out, size, "%s", c2 + 1);
      found = true;
    }
  }
  if (f)
    fclose(f);
  return found;
}

static unsigned long long read_number(const char *dir, const char *file) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "r");
  unsigned long long v = 0;
  if (!f || fscanf(f, "%llu", &v) != 1)
    fail_msg("cannot read %s", path);
  fclose(f);
  return v;
}

/* Rule: where a cgroup v1 memory controller is writable, confine puts the
 * process in <our cgroup>/gpuslice/<gi-uuid> whose memory.limit_in_bytes
 * is the GI's memory; with C < 7 the cpu cgroup holds g/7 of the host. */
static void test_cgroup_v1(void **state) {
  (void)state;
  gs_backend_t *be = open_host(2, MIB_16G, NULL);
  gs_enforcement_t e;
  be->ops->enforcement(be, &e);
  if (!strstr(e.memory, "cgroup v1 memory")) {
    print_message("no writable cgroup v1 memory controller (memory: %s): "
                  "skipped\n",
                  e.memory);
    gs_backend_close(be);
    skip();
  }
  unsigned gi = create_1g(be, 0);
  gs_layout_t l;
  get_layout(be, &l);
  report_t rep;
  int release;
  pid_t child = spawn_confined(be, gi, &rep, &release);
  assert_int_equal(rep.rc, GS_OK);
  char rel[512], dir[600], tail[128];
  assert_true(cgroup_path_of(child, "memory", rel, sizeof rel));
  snprintf(tail, sizeof tail, "/gpuslice/%s", l.gi[0].uuid);
  assert_true(strlen(rel) > strlen(tail));
  assert_string_equal(rel + strlen(rel) - strlen(tail), tail);
  snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s", rel);
  assert_int_equal(read_number(dir, "memory.limit_in_bytes"), 2048ull << 20);
  char cpu_dir[600] = "";
  if (strstr(e.compute, "cgroup v1 cpu") &&
      cgroup_path_of(child, "cpu", rel, sizeof rel)) {
    snprintf(cpu_dir, sizeof cpu_dir, "/sys/fs/cgroup/cpu%s", rel);
    /* 1 slice of 7 on 2 cores: 2/7 of a 10 ms period */
    assert_int_equal(read_number(cpu_dir, "cpu.cfs_period_us"), 10000);
    assert_int_equal(read_number(cpu_dir, "cpu.cfs_quota_us"), 2857);
  }
  gs_process_t procs[2];
  size_t n;
  gs_error_t err;
  assert_int_equal(be->ops->processes(be, 0, gi, procs, 2, &n, &err), GS_OK);
  assert_int_equal(n, 1);
  assert_int_equal(procs[0].pid, child);
  reap(child, release);
  /* commit removes the cgroups of destroyed instances */
  destroy_gi(be, gi);
  assert_int_not_equal(access(dir, F_OK), 0);
  if (cpu_dir[0])
    assert_int_not_equal(access(cpu_dir, F_OK), 0);
  gs_backend_close(be);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_backend_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_destroy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_rules, setup, teardown),
      cmocka_unit_test_setup_teardown(test_busy_instance, setup, teardown),
      cmocka_unit_test_setup_teardown(test_begin_reads_users, setup, teardown),
      cmocka_unit_test(test_cpu_geometry),
      cmocka_unit_test_setup_teardown(test_enforcement, setup, teardown),
      cmocka_unit_test_setup_teardown(test_confine_two_cores, setup, teardown),
      cmocka_unit_test_setup_teardown(test_state_mismatch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_instance_ref, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_exec, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cgroup_v1, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
