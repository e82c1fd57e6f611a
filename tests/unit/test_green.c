/* Green-context partitions, without a GPU. Rules checked come from the
 * CUDA driver API docs (green contexts) and measurements on an H200: SMs split
 * into groups of the minimum partition size rounded up to the co-scheduling
 * alignment (8 and 8 on compute capability 9.0+; an H100/H200 has 132 SMs and
 * MIG gives a 1g slice 16, 3g 60, 4g 64, 7g 132 of them); instances whose MIG
 * placements do not overlap must get disjoint SMs; a request the GPU
 * cannot hold, or off the groups, fails naming the numbers; a driver
 * without green contexts is an error that names the missing symbol and
 * is not one that makes a session fall back to the CPU. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "backend/soft_int.h"
#include "engine/cuda_green_int.h"
#include "gpu/cuda_shim.h"

static const gs__green_gpu_t h100 = {132, 8, 16}; /* 16 groups of 8 */

static void test_unit(void **state) {
  (void)state;
  assert_int_equal(gs__cuda_green_unit(8, 8), 8); /* 9.0+ */
  assert_int_equal(gs__cuda_green_unit(4, 2), 4); /* 8.x */
  assert_int_equal(gs__cuda_green_unit(5, 2), 6); /* a multiple of 2 */
  assert_int_equal(gs__cuda_green_unit(0, 0), 8); /* not reported */
}

/* Seven 1g.10gb at memory slices 0..6: 16 SMs each, disjoint. */
static void test_seven_1g_disjoint(void **state) {
  (void)state;
  unsigned end = 0;
  for (unsigned start = 0; start < 7; start++) {
    unsigned first, count;
    assert_int_equal(
        gs__green_partition(&h100, 8, start, 1, 16, &first, &count, NULL),
        GS_OK);
    assert_int_equal(count, 16);
    assert_true(first >= end);
    end = first + count;
  }
  assert_true(end <= 16 * 8);
}

/* MIG layouts that fill the GPU still fit, each profile rounded down to
 * whole groups and kept inside its own placement's share. */
static void test_mixed_layouts(void **state) {
  (void)state;
  unsigned f4, c4, f3, c3, f7, c7;
  assert_int_equal(gs__green_partition(&h100, 8, 0, 4, 64, &f4, &c4, NULL),
                   GS_OK);
  assert_int_equal(gs__green_partition(&h100, 8, 4, 4, 60, &f3, &c3, NULL),
                   GS_OK);
  assert_int_equal(c4, 64);
  assert_int_equal(c3, 56); /* 60 down to whole groups of 8 */
  assert_true(f4 + c4 <= f3);
  assert_int_equal(gs__green_partition(&h100, 8, 0, 8, 132, &f7, &c7, NULL),
                   GS_OK);
  assert_int_equal(c7, 128); /* every group the driver makes */
  /* A driver that makes only 15 groups (GPCs of uneven size): the 7g and
   * the 3g at slice 4 shrink to what exists. */
  gs__green_gpu_t fifteen = {132, 8, 15};
  assert_int_equal(gs__green_partition(&fifteen, 8, 0, 8, 132, &f7, &c7, NULL),
                   GS_OK);
  assert_int_equal(c7, 120);
  assert_int_equal(gs__green_partition(&fifteen, 8, 4, 4, 60, &f3, &c3, NULL),
                   GS_OK);
  assert_int_equal(f3 + c3, 120);
  /* A100 (108 SMs, groups of 4 on 8.x): 1g.5gb's 14 SMs become 12. */
  gs__green_gpu_t a100 = {108, 4, 27};
  assert_int_equal(gs__green_partition(&a100, 8, 6, 1, 14, &f7, &c7, NULL),
                   GS_OK);
  assert_int_equal(c7, 12);
  assert_int_equal(f7, 72);
}

static void test_partition_refusals(void **state) {
  (void)state;
  gs_error_t err;
  unsigned first, count;
  gs__green_gpu_t none = {132, 0, 0};
  assert_int_equal(
      gs__green_partition(&none, 8, 0, 1, 16, &first, &count, &err),
      GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "green contexts are not available"));
  gs__green_gpu_t tiny = {12, 8, 1};
  assert_int_equal(gs__green_partition(&tiny, 8, 0, 1, 8, &first, &count, &err),
                   GS_EINVAL);
  assert_non_null(strstr(err.msg, "12 SMs over 8 memory slices"));
  /* A 1-slice instance with fewer SMs than one group. */
  assert_int_equal(gs__green_partition(&h100, 8, 3, 1, 6, &first, &count, &err),
                   GS_ELIMIT);
  assert_non_null(strstr(err.msg, "6 SMs at memory slice 3"));
}

/* The engine's check of a session's request. */
static void test_engine_check(void **state) {
  (void)state;
  gs_error_t err;
  assert_int_equal(gs__green_check(8, 16, 132, 96, 16, NULL), GS_OK);
  assert_int_equal(gs__green_check(8, 16, 132, 0, 128, NULL), GS_OK);
  assert_int_equal(gs__green_check(8, 16, 132, 4, 16, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "groups of 8 SMs"));
  assert_int_equal(gs__green_check(8, 16, 132, 0, 12, &err), GS_EINVAL);
  assert_int_equal(gs__green_check(8, 16, 132, 0, 136, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "136 SMs from SM 0"));
  assert_non_null(strstr(err.msg, "the GPU has 132 SMs, of which 128"));
  assert_int_equal(gs__green_check(8, 16, 132, 120, 16, &err), GS_EINVAL);
  assert_non_null(strstr(err.msg, "ends at SM 136"));
  assert_int_equal(gs__green_check(8, 16, 132, 0, 0, &err), GS_EINVAL);
}

/* A driver without the green functions (this test binary has none). */
static void test_missing_symbols(void **state) {
  (void)state;
  gs__cuda_t cuda;
  memset(&cuda, 0, sizeof cuda);
  cuda.dl = dlopen(NULL, RTLD_NOW);
  snprintf(cuda.path, sizeof cuda.path, "libcuda.so.1");
  gs__cuda_green_fns_t fns;
  gs_error_t err;
  int rc = gs__cuda_green_load(&cuda, &fns, &err);
  assert_int_equal(rc, GS_EDRIVER);
  assert_true(rc != GS_ENODEV && rc != GS_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "lacks cuDeviceGetDevResource"));
  assert_non_null(strstr(err.msg, "12.4"));
  dlclose(cuda.dl);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unit),
      cmocka_unit_test(test_seven_1g_disjoint),
      cmocka_unit_test(test_mixed_layouts),
      cmocka_unit_test(test_partition_refusals),
      cmocka_unit_test(test_engine_check),
      cmocka_unit_test(test_missing_symbols),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
