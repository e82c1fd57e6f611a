/* The host backend's per-instance accounting (gs__cgroup_usage) on cgroup
 * trees made in a scratch directory, by the kernel's documented files:
 * v2 memory.current (bytes) and cpu.stat's usage_usec (microseconds, in
 * every v2 cgroup); v1 memory.usage_in_bytes (bytes) and cpuacct.usage
 * (nanoseconds). A missing cgroup or file is "not known", not zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "backend/host_int.h"
#include "test_tmpdir.h"

#define UUID "HOST-0000-gi1"

static char dir[256];

static int setup(void **state) {
  (void)state;
  return test_tmpdir_make(dir, sizeof dir, "cgroup_usage");
}

static int teardown(void **state) {
  (void)state;
  return test_tmpdir_remove(dir);
}

static void put(const char *base, const char *file, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/gpuslice", base);
  mkdir(base, 0755);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/gpuslice/" UUID, base);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/gpuslice/" UUID "/%s", base, file);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_v2(void **state) {
  (void)state;
  gs__cgroup_t cg = {.mem = GS__CG_V2, .cpu = GS__CG_V2};
  snprintf(cg.mem_dir, sizeof cg.mem_dir, "%s/v2", dir);
  snprintf(cg.cpu_dir, sizeof cg.cpu_dir, "%s/v2", dir);
  put(cg.mem_dir, "memory.current", "104857600\n");
  put(cg.mem_dir, "cpu.stat",
      "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n");
  gs_gi_usage_t u;
  gs__cgroup_usage(&cg, UUID, false, &u);
  assert_true(u.has_memory);
  assert_int_equal(u.memory_bytes, 104857600);
  assert_true(u.has_cpu); /* cpu.stat without the cpu controller too */
  assert_int_equal(u.cpu_usec, 2500000);
}

static void test_v1(void **state) {
  (void)state;
  gs__cgroup_t cg = {.mem = GS__CG_V1, .cpu = GS__CG_V1};
  snprintf(cg.mem_dir, sizeof cg.mem_dir, "%s/v1mem", dir);
  snprintf(cg.cpu_dir, sizeof cg.cpu_dir, "%s/v1cpu", dir);
  put(cg.mem_dir, "memory.usage_in_bytes", "4096\n");
  put(cg.cpu_dir, "cpuacct.usage", "3000000000\n");
  gs_gi_usage_t u;
  gs__cgroup_usage(&cg, UUID, true, &u);
  assert_true(u.has_memory);
  assert_int_equal(u.memory_bytes, 4096);
  assert_true(u.has_cpu);
  assert_int_equal(u.cpu_usec, 3000000);  /* ns / 1000 */
  gs__cgroup_usage(&cg, UUID, false, &u); /* no CPU cgroup in use */
  assert_false(u.has_cpu);
}

static void test_missing(void **state) {
  (void)state;
  gs__cgroup_t cg = {.mem = GS__CG_V2};
  snprintf(cg.mem_dir, sizeof cg.mem_dir, "%s/none", dir);
  gs_gi_usage_t u;
  gs__cgroup_usage(&cg, UUID, false, &u);
  assert_false(u.has_memory);
  assert_false(u.has_cpu);
  gs__cgroup_t off = {.mem = GS__CG_NONE, .cpu = GS__CG_NONE};
  gs__cgroup_usage(&off, UUID, true, &u);
  assert_false(u.has_memory);
  assert_false(u.has_cpu);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v2),
      cmocka_unit_test(test_v1),
      cmocka_unit_test(test_missing),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
