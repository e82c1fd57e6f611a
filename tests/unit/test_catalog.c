/* Catalog tests. Expected values are transcribed from
 * NVIDIA's MIG User Guide (the tables below quote it), not derived
 * from the catalog code; values the reference lacks must read 0 (unknown). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gpuslice/catalog.h"

#define N7 7 /* profiles of a 7-compute/8-memory GPU */

static void load(gs_catalog_t *cat, const char *model) {
  gs_error_t err;
  gs_error_clear(&err);
  int rc = gs_catalog_for_model(cat, model, &err);
  if (rc != GS_OK)
    fail_msg("%s: %s", model, err.msg);
}

static void assert_starts(uint32_t mask, const char *want) {
  char buf[96];
  gs_format_starts(mask, buf, sizeof buf);
  assert_string_equal(buf, want);
}

static void assert_contains(const char *text, const char *fragment) {
  if (!strstr(text, fragment))
    fail_msg("'%s' does not contain '%s'", text, fragment);
}

/* "GiB reported" in hundredths -> MiB, rounded: the rule of the brief. */
static uint64_t gib100_to_mib(unsigned gib100) {
  return ((uint64_t)gib100 * 1024 + 50) / 100;
}

/* ---- the reference's 7/8-slice geometry -------------------------------- */

/* "ID | NVML index | kind | max | placement size @ starts", in
 * nvidia-smi -lgip order (ascending compute slices). */
static const struct {
  unsigned id, nvml, g, size, max;
  const char *starts;
  bool me;
} geometry_7x8[N7] = {
    {19, 0, 1, 1, 7, "0,1,2,3,4,5,6", false},
    {20, 7, 1, 1, 1, "0,1,2,3,4,5,6", true},
    {15, 9, 1, 2, 4, "0,2,4,6", false},
    {14, 1, 2, 2, 3, "0,2,4", false},
    {9, 2, 3, 4, 2, "0,4", false},
    {5, 3, 4, 4, 1, "0", false},
    {0, 4, 7, 8, 1, "0", false},
};

static void check_geometry_7x8(const gs_catalog_t *cat) {
  assert_int_equal(cat->memory_slices, 8);
  assert_int_equal(cat->compute_slices, 7);
  assert_int_equal(cat->n_gi, N7);
  for (unsigned i = 0; i < N7; i++) {
    const gs_gi_profile_t *gi = &cat->gi[i];
    assert_int_equal(gi->id, geometry_7x8[i].id);
    assert_int_equal(gi->nvml_index, geometry_7x8[i].nvml);
    assert_int_equal(gi->compute_slices, geometry_7x8[i].g);
    assert_int_equal(gi->memory_slices, geometry_7x8[i].size);
    assert_int_equal(gi->max_count, geometry_7x8[i].max);
    assert_int_equal(gi->media_extensions, geometry_7x8[i].me);
    assert_starts(gi->start_mask, geometry_7x8[i].starts);
  }
}

/* ---- CI profiles inside a GI (reference table) -------------------------- */

typedef struct {
  unsigned id, c, max;
  const char *starts;
} want_ci_t;

static const want_ci_t ci_1g[] = {{0, 1, 1, "0"}};
static const want_ci_t ci_2g[] = {{0, 1, 2, "0,1"}, {1, 2, 1, "0"}};
static const want_ci_t ci_3g[] = {
    {0, 1, 3, "0,1,2"}, {1, 2, 1, "0"}, {2, 3, 1, "0"}};
/* 4g: "no 3c". */
static const want_ci_t ci_4g[] = {
    {0, 1, 4, "0,1,2,3"}, {1, 2, 2, "0,2"}, {3, 4, 1, "0"}};
/* 7g: the reference lists 4c (max 1) without starts; {0} is what the
 * catalog states (as in the 4g GI). */
static const want_ci_t ci_7g[] = {{0, 1, 7, "0,1,2,3,4,5,6"},
                                  {1, 2, 3, "0,2,4"},
                                  {2, 3, 2, "0,4"},
                                  {3, 4, 1, "0"},
                                  {4, 7, 1, "0"}};

static void check_cis(const gs_gi_profile_t *gi) {
  const want_ci_t *want;
  unsigned n;
  switch (gi->compute_slices) {
  case 1: /* "+me" and double-memory 1g behave as 1g */
    want = ci_1g, n = 1;
    break;
  case 2:
    want = ci_2g, n = 2;
    break;
  case 3:
    want = ci_3g, n = 3;
    break;
  case 4:
    want = ci_4g, n = 3;
    break;
  case 7:
    want = ci_7g, n = 5;
    break;
  default:
    fail_msg("GI %s has %u compute slices", gi->name, gi->compute_slices);
    return;
  }
  assert_int_equal(gi->n_ci, n);
  for (unsigned k = 0; k < n; k++) {
    assert_int_equal(gi->ci[k].id, want[k].id);
    assert_int_equal(gi->ci[k].compute_slices, want[k].c);
    assert_int_equal(gi->ci[k].max_count, want[k].max);
    assert_starts(gi->ci[k].start_mask, want[k].starts);
  }
  const gs_ci_profile_t *full = gs_catalog_ci_full(gi);
  assert_non_null(full);
  assert_int_equal(full->compute_slices, gi->compute_slices);
}

/* ---- per-model facts, reference column order ID 19/20/15/14/9/5/0 ------- */

typedef struct {
  const char *model, *product;
  const char *names[N7];
  unsigned gib100[N7]; /* 0: the reference has no figure */
  unsigned sms[N7];    /* 0: the reference has no figure */
  unsigned total_sms;
} want_model_t;

static const want_model_t models_7x8[] = {
    {"a100-40gb",
     "NVIDIA A100-SXM4-40GB",
     {"1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb",
      "7g.40gb"},
     {475, 475, 962, 962, 1950, 1950, 3925},
     {14, 14, 14, 28, 42, 56, 98},
     108},
    {"a100-80gb",
     "NVIDIA A100-SXM4-80GB",
     {"1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb",
      "7g.80gb"},
     {950, 950, 1950, 1950, 3925, 3925, 0 /* "~79" */},
     {14, 14, 14, 28, 42, 56, 98},
     108},
    {"h100-80gb",
     "NVIDIA H100 80GB HBM3",
     {"1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb",
      "7g.80gb"},
     {975, 975, 1962, 1962, 3950, 3950, 7925},
     {16, 16, 26, 32, 60, 64, 132},
     132},
    {"h100-94gb",
     "NVIDIA H100 NVL",
     {"1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb",
      "7g.94gb"},
     {1075, 1075, 2162, 2162, 4638, 4638, 9312},
     {16, 16, 26, 32, 60, 64, 132},
     132},
    {"h200",
     "NVIDIA H200",
     {"1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb",
      "7g.141gb"},
     {1600, 1600, 3250, 3250, 6975, 6975, 14000},
     {16, 16, 26, 32, 60, 64, 132},
     132},
    /* GH200: names only in the reference; SMs of the GH100 die. */
    {"gh200",
     "NVIDIA GH200 144G HBM3e",
     {"1g.18gb", "1g.18gb+me", "1g.36gb", "2g.36gb", "3g.72gb", "4g.72gb",
      "7g.144gb"},
     {0, 0, 0, 0, 0, 0, 0},
     {16, 16, 26, 32, 60, 64, 132},
     132},
    {"b200",
     "NVIDIA B200",
     {"1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb",
      "7g.180gb"},
     {2200, 2200, 4425, 4425, 0, 0, 0},
     {18, 18, 30, 36, 0, 0, 0},
     0},
};

/* Engines, ID 19/20/15/14/9/5/0. */
typedef struct {
  unsigned ce[N7], dec[N7], jpeg[N7], ofa[N7];
} want_engines_t;

/* H100/H200: "CE 1/1/1/2/3/4/8; decoders 1/1/1/2/3/4/7; JPEG = decoders;
 * OFA 0 except +me and 7g (1)". */
static const want_engines_t engines_h100 = {{1, 1, 1, 2, 3, 4, 8},
                                            {1, 1, 1, 2, 3, 4, 7},
                                            {1, 1, 1, 2, 3, 4, 7},
                                            {0, 1, 0, 0, 0, 0, 1}};
/* A100: "CE 1/1/1/2/3/4/7, DEC 0/1/1/1/2/2/5"; +me adds 1 JPEG, 1 OFA; no
 * other JPEG/OFA figure (7g unknown: 0). */
static const want_engines_t engines_a100 = {{1, 1, 1, 2, 3, 4, 7},
                                            {0, 1, 1, 1, 2, 2, 5},
                                            {0, 1, 0, 0, 0, 0, 0},
                                            {0, 1, 0, 0, 0, 0, 0}};
static const want_engines_t engines_unknown = {{0}, {0}, {0}, {0}};

static const want_engines_t *engines_for(const char *model) {
  if (strncmp(model, "a100", 4) == 0)
    return &engines_a100;
  if (strcmp(model, "b200") == 0)
    return &engines_unknown;
  return &engines_h100; /* h100-*, h200, gh200 */
}

/* Rule: every 7/8-slice model has the reference's IDs, NVML indices,
 * placements, max counts, CI tables, names, memory and SMs. */
static void test_models_7x8(void **state) {
  (void)state;
  for (size_t m = 0; m < sizeof models_7x8 / sizeof models_7x8[0]; m++) {
    const want_model_t *w = &models_7x8[m];
    const want_engines_t *e = engines_for(w->model);
    gs_catalog_t cat;
    load(&cat, w->model);
    assert_string_equal(cat.model, w->model);
    assert_string_equal(cat.product, w->product);
    assert_int_equal(cat.source, GS_CATALOG_TABLE);
    assert_int_equal(cat.total_sms, w->total_sms);
    /* the whole-GPU profile's memory, unknown where its GiB is */
    assert_int_equal(cat.total_memory_mib, gib100_to_mib(w->gib100[6]));
    check_geometry_7x8(&cat);
    for (unsigned i = 0; i < N7; i++) {
      const gs_gi_profile_t *gi = &cat.gi[i];
      assert_string_equal(gi->name, w->names[i]);
      assert_int_equal(gi->memory_mib, gib100_to_mib(w->gib100[i]));
      assert_int_equal(gi->sms, w->sms[i]);
      assert_int_equal(gi->copy_engines, e->ce[i]);
      assert_int_equal(gi->decoders, e->dec[i]);
      assert_int_equal(gi->encoders, 0);
      assert_int_equal(gi->jpegs, e->jpeg[i]);
      assert_int_equal(gi->ofas, e->ofa[i]);
      check_cis(gi);
    }
  }
}

/* Rule: "A100-40GB: profile 15 is 1g.10gb with placements at 0,2,4,6 of
 * size 2, max 4"; 1g.5gb is 4.75 GiB = 4864 MiB. */
static void test_a100_40gb_spot_checks(void **state) {
  (void)state;
  gs_catalog_t cat;
  load(&cat, "a100-40gb");
  const gs_gi_profile_t *gi = gs_catalog_gi(&cat, 15);
  assert_non_null(gi);
  assert_string_equal(gi->name, "1g.10gb");
  assert_int_equal(gi->memory_slices, 2);
  assert_int_equal(gi->max_count, 4);
  assert_int_equal(gi->start_mask, 0x55); /* 0,2,4,6 */
  assert_int_equal(gs_catalog_gi(&cat, 19)->memory_mib, 4864);
  assert_null(gs_catalog_gi(&cat, 21)); /* an A30 ID */
  assert_null(gs_catalog_gi(NULL, 19));
}

/* Rule: A30 has 4 memory and 4 compute slices: 14 1g.6gb max 4 @0..3,
 * 21 1g.6gb+me max 1, 5 2g.12gb max 2 @{0,2}, 6 2g.12gb+me max 1 @{0,2},
 * 0 4g.24gb @{0}; NVML 1_SLICE, 1_SLICE_REV1, 2_SLICE, 2_SLICE_REV1,
 * 4_SLICE. */
static void test_a30(void **state) {
  (void)state;
  static const struct {
    unsigned id, nvml, g, size, max;
    const char *starts, *name;
    unsigned gib100, sms, ce, dec, jpeg, ofa;
    bool me;
  } want[] = {
      {14, 0, 1, 1, 4, "0,1,2,3", "1g.6gb", 581, 14, 1, 0, 0, 0, false},
      {21, 7, 1, 1, 1, "0,1,2,3", "1g.6gb+me", 581, 14, 1, 1, 1, 1, true},
      {5, 1, 2, 2, 2, "0,2", "2g.12gb", 1169, 28, 2, 2, 0, 0, false},
      {6, 8, 2, 2, 1, "0,2", "2g.12gb+me", 1169, 28, 2, 2, 1, 1, true},
      {0, 3, 4, 4, 1, "0", "4g.24gb", 2350, 56, 4, 4, 1, 1, false},
  };
  gs_catalog_t cat;
  load(&cat, "a30");
  assert_string_equal(cat.product, "NVIDIA A30");
  assert_int_equal(cat.memory_slices, 4);
  assert_int_equal(cat.compute_slices, 4);
  assert_int_equal(cat.n_gi, 5);
  assert_int_equal(cat.total_memory_mib, gib100_to_mib(2350));
  for (unsigned i = 0; i < 5; i++) {
    const gs_gi_profile_t *gi = &cat.gi[i];
    assert_int_equal(gi->id, want[i].id);
    assert_int_equal(gi->nvml_index, want[i].nvml);
    assert_int_equal(gi->compute_slices, want[i].g);
    assert_int_equal(gi->memory_slices, want[i].size);
    assert_int_equal(gi->max_count, want[i].max);
    assert_starts(gi->start_mask, want[i].starts);
    assert_string_equal(gi->name, want[i].name);
    assert_int_equal(gi->memory_mib, gib100_to_mib(want[i].gib100));
    assert_int_equal(gi->sms, want[i].sms);
    assert_int_equal(gi->copy_engines, want[i].ce);
    assert_int_equal(gi->decoders, want[i].dec);
    assert_int_equal(gi->encoders, 0);
    assert_int_equal(gi->jpegs, want[i].jpeg);
    assert_int_equal(gi->ofas, want[i].ofa);
    assert_int_equal(gi->media_extensions, want[i].me);
    check_cis(gi); /* A30 GIs: 1g 1c; 2g 1c{0,1} 2c; 4g 1c 2c{0,2} 4c */
  }
}

/* Rule: --gpu accepts a30, a100-40gb, a100-80gb, h100-80gb, h100-94gb,
 * h200, gh200, b200, in that order, case-insensitively. */
static void test_model_names(void **state) {
  (void)state;
  static const char *want[] = {"a30",       "a100-40gb", "a100-80gb",
                               "h100-80gb", "h100-94gb", "h200",
                               "gh200",     "b200"};
  assert_int_equal(gs_catalog_model_count(), 8);
  for (unsigned i = 0; i < 8; i++)
    assert_string_equal(gs_catalog_model_name(i), want[i]);
  assert_null(gs_catalog_model_name(8));
  gs_catalog_t cat;
  load(&cat, "H100-80GB");
  assert_string_equal(cat.model, "h100-80gb");
}

/* Rule: an unknown model is GS_ENOTFOUND naming the closest model and the
 * list. */
static void test_model_unknown(void **state) {
  (void)state;
  gs_catalog_t cat;
  gs_error_t err;
  gs_error_clear(&err);
  assert_int_equal(gs_catalog_for_model(&cat, "h100", &err), GS_ENOTFOUND);
  assert_contains(err.msg, "did you mean 'h100-80gb'");
  assert_contains(err.msg, "a30, a100-40gb, a100-80gb, h100-80gb, h100-94gb, "
                           "h200, gh200, b200");
  assert_int_equal(gs_catalog_for_model(&cat, "a100-40g", &err), GS_ENOTFOUND);
  assert_contains(err.msg, "'a100-40gb'");
  assert_int_equal(gs_catalog_for_model(&cat, "H2OO", &err), GS_ENOTFOUND);
  assert_contains(err.msg, "'h200'");
  assert_int_equal(gs_catalog_for_model(&cat, "", &err), GS_ENOTFOUND);
  assert_int_equal(gs_catalog_for_model(&cat, NULL, &err), GS_EINVAL);
}

/* Rule: PCI device IDs as mig-parted's device-filter map to the models. */
static void test_pci_ids(void **state) {
  (void)state;
  static const struct {
    uint32_t id;
    const char *model;
  } want[] = {
      {0x20B710DE, "a30"},       {0x20B010DE, "a100-40gb"},
      {0x20F110DE, "a100-40gb"}, {0x20B210DE, "a100-80gb"},
      {0x20B510DE, "a100-80gb"}, {0x233010DE, "h100-80gb"},
      {0x233110DE, "h100-80gb"}, {0x232110DE, "h100-94gb"},
      {0x233510DE, "h200"},      {0x234210DE, "gh200"},
      {0x290110DE, "b200"},
  };
  gs_catalog_t cat;
  gs_error_t err;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    gs_error_clear(&err);
    assert_int_equal(gs_catalog_for_pci_id(&cat, want[i].id, 0, &err), GS_OK);
    assert_string_equal(cat.model, want[i].model);
    /* memory only disambiguates; a one-model ID ignores it */
    assert_int_equal(gs_catalog_for_pci_id(&cat, want[i].id, 1024, &err),
                     GS_OK);
    assert_string_equal(cat.model, want[i].model);
    bool listed = false;
    for (unsigned k = 0; k < cat.n_pci_ids; k++)
      listed |= cat.pci_device_ids[k] == want[i].id;
    assert_true(listed);
  }
  assert_int_equal(gs_catalog_for_pci_id(&cat, 0x1EB810DE, 0, &err),
                   GS_ENOTFOUND); /* T4: no MIG */
  assert_contains(err.msg, "0x1EB810DE");
}

/* ---- synthesized catalogs ---------------------------------------------- */

static void check_synth(const gs_catalog_t *cat, const char *names[N7],
                        const uint64_t mib[N7], const unsigned sms[N7]) {
  check_geometry_7x8(cat);
  for (unsigned i = 0; i < N7; i++) {
    assert_string_equal(cat->gi[i].name, names[i]);
    assert_int_equal(cat->gi[i].memory_mib, mib[i]);
    assert_int_equal(cat->gi[i].sms, sms[i]);
    assert_int_equal(cat->gi[i].copy_engines + cat->gi[i].decoders, 0);
    check_cis(&cat->gi[i]);
  }
}

/* Rule: host, 2 cores, 24576 MiB: a memory slice is 24576/8 = 3072 MiB;
 * names Ng.round(GiB); cores max(1, N*cores/7), 7g all. */
static void test_synth_host(void **state) {
  (void)state;
  static const char *names[N7] = {"1g.3gb",  "1g.3gb+me", "1g.6gb", "2g.6gb",
                                  "3g.12gb", "4g.12gb",   "7g.24gb"};
  static const uint64_t mib[N7] = {3072, 3072, 6144, 6144, 12288, 12288, 24576};
  static const unsigned cores[N7] = {1, 1, 1, 1, 1, 1, 2};
  gs_catalog_t cat;
  gs_catalog_synth_host(&cat, 2, 24576);
  assert_string_equal(cat.model, "host");
  assert_string_equal(cat.product, "host (2 CPU cores, 24576 MiB)");
  assert_int_equal(cat.source, GS_CATALOG_HOST);
  assert_int_equal(cat.total_sms, 2);
  assert_int_equal(cat.total_memory_mib, 24576);
  assert_int_equal(cat.n_pci_ids, 0);
  check_synth(&cat, names, mib, cores);

  /* 16 cores, 64 GiB: 16/7=2, 32/7=4, 48/7=6, 64/7=9, 16 */
  static const char *names16[N7] = {"1g.8gb",  "1g.8gb+me", "1g.16gb",
                                    "2g.16gb", "3g.32gb",   "4g.32gb",
                                    "7g.64gb"};
  static const uint64_t mib16[N7] = {8192,  8192,  16384, 16384,
                                     32768, 32768, 65536};
  static const unsigned cores16[N7] = {2, 2, 2, 4, 6, 9, 16};
  gs_catalog_synth_host(&cat, 16, 65536);
  check_synth(&cat, names16, mib16, cores16);
}

/* Rule: soft, 80 SMs, 80 GiB: Ng gets max(8, floor(N*80/56)*8) SMs, 7g
 * all 80; ID 15 the 1g count. */
static void test_synth_soft(void **state) {
  (void)state;
  static const char *names[N7] = {"1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb",
                                  "3g.40gb", "4g.40gb",    "7g.80gb"};
  static const uint64_t mib[N7] = {10240, 10240, 20480, 20480,
                                   40960, 40960, 81920};
  static const unsigned sms[N7] = {8, 8, 8, 16, 32, 40, 80};
  gs_catalog_t cat;
  gs_catalog_synth_soft(&cat, "NVIDIA A100 80GB PCIe", 80, 81920);
  assert_string_equal(cat.model, "soft");
  assert_string_equal(cat.product, "NVIDIA A100 80GB PCIe");
  assert_int_equal(cat.source, GS_CATALOG_SOFT);
  assert_int_equal(cat.total_sms, 80);
  check_synth(&cat, names, mib, sms);

  /* 132 SMs: 264/56*8... = 16, 32, 56, 72, 132; multiples of 8 */
  static const unsigned sms132[N7] = {16, 16, 16, 32, 56, 72, 132};
  gs_catalog_synth_soft(&cat, "NVIDIA H100", 132, 81920);
  check_synth(&cat, names, mib, sms132);
}

/* Rule: names round GiB half up; memory per slice is the floor of
 * memory/8; no profile gets more SMs than the device has; names are
 * unique: when GB rounding would give profiles 19 and 15 (1 and 2 memory
 * slices) one name, every name is in MB instead. */
static void test_synth_rounding(void **state) {
  (void)state;
  gs_catalog_t cat;
  gs_catalog_synth_soft(&cat, "x", 58, 12288);   /* 1536 MiB a slice */
  assert_string_equal(cat.gi[0].name, "1g.2gb"); /* 1.5 GiB rounds up */
  assert_string_equal(cat.gi[2].name, "1g.3gb");
  assert_string_equal(cat.gi[6].name, "7g.12gb");
  gs_catalog_synth_soft(&cat, "x", 58, 23034); /* 2879 MiB a slice */
  assert_int_equal(cat.gi[6].memory_mib, 8 * 2879);
  assert_string_equal(cat.gi[6].name, "7g.22gb"); /* 22.49 GiB */
  assert_int_equal(cat.gi[0].sms, 8);
  assert_int_equal(cat.gi[6].sms, 58);
  gs_catalog_synth_host(&cat, 1, 1024); /* 128 MiB a slice */
  assert_string_equal(cat.gi[0].name, "1g.128mb");
  assert_string_equal(cat.gi[2].name, "1g.256mb");
  gs_catalog_synth_host(&cat, 2, 4096); /* 0.5 and 1 GiB would both be 1gb */
  assert_string_equal(cat.gi[0].name, "1g.512mb");
  assert_string_equal(cat.gi[2].name, "1g.1024mb");
  for (unsigned i = 0; i < cat.n_gi; i++)
    for (unsigned j = i + 1; j < cat.n_gi; j++)
      assert_string_not_equal(cat.gi[i].name, cat.gi[j].name);
  assert_int_equal(cat.gi[0].sms, 1);
  gs_catalog_synth_soft(&cat, "tiny", 4, 8192);
  for (unsigned i = 0; i < cat.n_gi; i++)
    assert_true(cat.gi[i].sms <= 4);
  gs_catalog_synth_soft(&cat, NULL, 0, 0); /* unknown: 0s, still named */
  assert_string_equal(cat.gi[6].name, "7g.0mb");
  assert_int_equal(cat.gi[6].sms, 0);
}

/* ---- names, starts, lookups -------------------------------------------- */

/* Rule: a CI inside a GI is named "Nc.<GI>"; the full-GI CI takes the GI's
 * own name (mig-parted, nvidia-smi), "+me" included. */
static void test_device_names(void **state) {
  (void)state;
  gs_catalog_t cat;
  char buf[GS_PROFILE_NAME_MAX + 8];
  load(&cat, "h100-80gb");
  const gs_gi_profile_t *g7 = gs_catalog_gi(&cat, 0);
  gs_catalog_device_name(g7, gs_catalog_ci(g7, GS_CI_3C), buf, sizeof buf);
  assert_string_equal(buf, "3c.7g.80gb");
  gs_catalog_device_name(g7, gs_catalog_ci(g7, GS_CI_7C), buf, sizeof buf);
  assert_string_equal(buf, "7g.80gb");
  gs_catalog_device_name(g7, NULL, buf, sizeof buf);
  assert_string_equal(buf, "7g.80gb");
  const gs_gi_profile_t *me = gs_catalog_gi(&cat, 20);
  gs_catalog_device_name(me, gs_catalog_ci_full(me), buf, sizeof buf);
  assert_string_equal(buf, "1g.10gb+me");
  gs_catalog_device_name(g7, gs_catalog_ci(g7, GS_CI_1C), buf, 4);
  assert_string_equal(buf, "1c.");
  const gs_gi_profile_t *g4 = gs_catalog_gi(&cat, 5);
  assert_null(gs_catalog_ci(g4, GS_CI_3C)); /* 4g: no 3c */
  assert_int_equal(gs_catalog_ci_full(g4)->id, GS_CI_4C);
  assert_int_equal(gs_catalog_ci_full(gs_catalog_gi(&cat, 9))->id, GS_CI_3C);
  load(&cat, "a30");
  const gs_gi_profile_t *a30me = gs_catalog_gi(&cat, 6);
  gs_catalog_device_name(a30me, gs_catalog_ci(a30me, GS_CI_1C), buf,
                         sizeof buf);
  assert_string_equal(buf, "1c.2g.12gb+me");
}

/* Rule: starts print as "0,2,4,6", empty for none, always terminated. */
static void test_format_starts(void **state) {
  (void)state;
  char buf[64];
  assert_starts(0, "");
  assert_starts(0x55, "0,2,4,6");
  assert_starts(0x7f, "0,1,2,3,4,5,6");
  assert_starts(UINT32_C(1) << 31, "31");
  assert_starts(0xffffffffu, "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,"
                             "18,19,20,21,22,23,24,25,26,27,28,29,30,31");
  memset(buf, 'x', sizeof buf);
  gs_format_starts(0x55, buf, 4);
  assert_string_equal(buf, "0,2");
  gs_format_starts(0x55, buf, 1);
  assert_string_equal(buf, "");
  gs_format_starts(0x55, buf, 0); /* writes nothing */
}

/* ---- parsing ----------------------------------------------------------- */

typedef struct {
  const char *model, *text;
  bool allow_start;
  unsigned gi;
  int ci, start;
} parse_ok_t;

/* Rule: a GI name, "MIG <name>", a profile ID, "Nc.<GI name>", "+me"
 * names, case-insensitive, with ":START" where allowed. */
static void test_parse_accepts(void **state) {
  (void)state;
  static const parse_ok_t ok[] = {
      {"h100-80gb", "1g.10gb", false, 19, -1, -1},
      {"h100-80gb", "1G.10GB", false, 19, -1, -1},
      {"h100-80gb", "MIG 1g.10gb", false, 19, -1, -1},
      {"h100-80gb", "mig 3g.40gb", false, 9, -1, -1},
      {"h100-80gb", "1g.10gb+me", false, 20, -1, -1},
      {"h100-80gb", "1g.20gb", false, 15, -1, -1},
      {"h100-80gb", "19", false, 19, -1, -1},
      {"h100-80gb", "0", false, 0, -1, -1},
      {"h100-80gb", "15", false, 15, -1, -1},
      {"h100-80gb", "1c.3g.40gb", false, 9, GS_CI_1C, -1},
      {"h100-80gb", "MIG 1c.3g.40gb", false, 9, GS_CI_1C, -1},
      {"h100-80gb", "3c.3g.40gb", false, 9, GS_CI_3C, -1},
      {"h100-80gb", "4c.7g.80gb", false, 0, GS_CI_4C, -1},
      {"h100-80gb", "2C.4G.40GB", false, 5, GS_CI_2C, -1},
      {"h100-80gb", "3g.40gb:4", true, 9, -1, 4},
      {"h100-80gb", "3g.40gb:0", true, 9, -1, 0},
      {"h100-80gb", "9:4", true, 9, -1, 4},
      {"h100-80gb", "MIG 1g.20gb:6", true, 15, -1, 6},
      {"h100-80gb", "1c.7g.80gb:0", true, 0, GS_CI_1C, 0},
      {"h100-80gb", "3g.40gb", true, 9, -1, -1},
      {"a100-40gb", "1g.5gb", false, 19, -1, -1},
      {"a100-40gb", "1g.5gb+me:6", true, 20, -1, 6},
      {"a100-40gb", "1g.10gb", false, 15, -1, -1},
      {"a30", "1g.6gb", false, 14, -1, -1},
      {"a30", "1g.6gb+me", false, 21, -1, -1},
      {"a30", "2g.12gb+me:2", true, 6, -1, 2},
      {"a30", "2c.4g.24gb", false, 0, GS_CI_2C, -1},
      {"h200", "7g.141gb", false, 0, -1, -1},
      {"b200", "MIG 2g.45gb", false, 14, -1, -1},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    gs_catalog_t cat;
    gs_error_t err;
    gs_profile_ref_t ref = {0};
    load(&cat, ok[i].model);
    gs_error_clear(&err);
    int rc = gs_profile_parse(&cat, ok[i].text, ok[i].allow_start, &ref, &err);
    if (rc != GS_OK)
      fail_msg("%s on %s: %s", ok[i].text, ok[i].model, err.msg);
    assert_int_equal(ref.gi_profile_id, ok[i].gi);
    assert_int_equal(ref.ci_profile_id, ok[i].ci);
    assert_int_equal(ref.start, ok[i].start);
  }
}

/* Rule: synthesized catalogs parse the same forms. */
static void test_parse_synth(void **state) {
  (void)state;
  gs_catalog_t cat;
  gs_profile_ref_t ref;
  gs_catalog_synth_host(&cat, 2, 24576);
  assert_int_equal(gs_profile_parse(&cat, "1c.3g.12gb:4", true, &ref, NULL),
                   GS_OK);
  assert_int_equal(ref.gi_profile_id, 9);
  assert_int_equal(ref.ci_profile_id, GS_CI_1C);
  assert_int_equal(ref.start, 4);
  assert_int_equal(gs_profile_parse(&cat, "1g.6gb", false, &ref, NULL), GS_OK);
  assert_int_equal(ref.gi_profile_id, 15);
}

typedef struct {
  const char *model, *text;
  bool allow_start;
  int code;
  const char *fragment;
} parse_bad_t;

/* Rule: unknown names are GS_ENOTFOUND with the closest name; a start the
 * profile cannot take, a CI the GI does not allow, a start where none is
 * allowed, whitespace and text over 127 bytes are GS_EINVAL. */
static void test_parse_rejects(void **state) {
  (void)state;
  static const parse_bad_t bad[] = {
      {"h100-80gb", "1g.5gbb", false, GS_ENOTFOUND,
       "unknown profile '1g.5gbb' for h100-80gb; did you mean '1g.10gb'?"},
      {"h100-80gb", "1g.5gb", false, GS_ENOTFOUND, "did you mean '1g.10gb'"},
      {"h100-80gb", "3g.20gb", false, GS_ENOTFOUND, "did you mean '3g.40gb'"},
      {"h100-80gb", "3g", false, GS_ENOTFOUND, "did you mean '3g.40gb'"},
      {"h100-80gb", "1c.3g.20gb", false, GS_ENOTFOUND,
       "did you mean '1c.3g.40gb'"},
      {"h100-80gb", "99", false, GS_ENOTFOUND,
       "no profile ID 99 on h100-80gb (IDs: 19, 20, 15, 14, 9, 5, 0)"},
      {"a30", "19", false, GS_ENOTFOUND, "(IDs: 14, 21, 5, 6, 0)"},
      {"h100-80gb", "99999999999999999999", false, GS_ENOTFOUND,
       "no profile ID"},
      {"h100-80gb", "3g.40gb:2", true, GS_EINVAL,
       "profile 3g.40gb cannot start at slice 2: starts are 0,4"},
      {"h100-80gb", "1g.20gb:1", true, GS_EINVAL, "starts are 0,2,4,6"},
      {"h100-80gb", "7g.80gb:32", true, GS_EINVAL, "starts are 0"},
      {"h100-80gb", "7g.80gb:4294967296", true, GS_EINVAL, "slice number"},
      {"h100-80gb", "3g.40gb:", true, GS_EINVAL, "slice number"},
      {"h100-80gb", "3g.40gb:-1", true, GS_EINVAL, "slice number"},
      {"h100-80gb", "3g.40gb:4:4", true, GS_EINVAL, "slice number"},
      {"h100-80gb", ":4", true, GS_EINVAL, "no name"},
      {"h100-80gb", "3g.40gb:4", false, GS_EINVAL, "not accepted"},
      {"h100-80gb", "3c.4g.40gb", false, GS_EINVAL,
       "profile 4g.40gb has no 3c compute instance: CI sizes are 1c, 2c, 4c"},
      {"h100-80gb", "2c.1g.10gb", false, GS_EINVAL, "CI sizes are 1c"},
      {"h100-80gb", " 1g.10gb", false, GS_EINVAL, "space"},
      {"h100-80gb", "1g.10gb ", false, GS_EINVAL, "space"},
      {"h100-80gb", "MIG  1g.10gb", false, GS_EINVAL, "space"},
      {"h100-80gb", "MIG\t1g.10gb", false, GS_EINVAL, "space"},
      {"h100-80gb", "", false, GS_EINVAL, "empty"},
      {"h100-80gb", "MIG ", false, GS_EINVAL, "empty"},
      {"h100-80gb", "MIG", false, GS_ENOTFOUND, "unknown profile 'MIG'"},
      {"h100-80gb", "1g.10gb\x7f", false, GS_EINVAL, "control"},
      {"h100-80gb", "1g.10gb\xc3\xa9", false, GS_ENOTFOUND, "'1g.10gb\?\?'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gs_catalog_t cat;
    gs_error_t err;
    gs_profile_ref_t ref = {.gi_profile_id = 77, .ci_profile_id = 7};
    load(&cat, bad[i].model);
    gs_error_clear(&err);
    int rc =
        gs_profile_parse(&cat, bad[i].text, bad[i].allow_start, &ref, &err);
    if (rc != bad[i].code)
      fail_msg("'%s': got %s (%s), want %s", bad[i].text, gs_err_name(rc),
               err.msg, gs_err_name(bad[i].code));
    assert_int_equal(err.code, bad[i].code);
    assert_contains(err.msg, bad[i].fragment);
    assert_int_equal(ref.gi_profile_id, 77); /* untouched on failure */
  }
}

/* Rule: text longer than 127 bytes is refused before any lookup. */
static void test_parse_length_limit(void **state) {
  (void)state;
  gs_catalog_t cat;
  gs_error_t err;
  gs_profile_ref_t ref;
  char text[200];
  load(&cat, "h100-80gb");
  memset(text, 'a', sizeof text);
  text[127] = '\0';
  assert_int_equal(gs_profile_parse(&cat, text, false, &ref, &err),
                   GS_ENOTFOUND);
  text[127] = 'a';
  text[128] = '\0';
  assert_int_equal(gs_profile_parse(&cat, text, false, &ref, &err), GS_EINVAL);
  assert_contains(err.msg, "longer than 127 bytes");
  text[199] = '\0';
  assert_int_equal(gs_profile_parse(&cat, text, true, &ref, &err), GS_EINVAL);
  assert_int_equal(gs_profile_parse(NULL, "19", false, &ref, &err), GS_EINVAL);
  assert_int_equal(gs_profile_parse(&cat, NULL, false, &ref, &err), GS_EINVAL);
  assert_int_equal(gs_profile_parse(&cat, "19", false, NULL, NULL), GS_EINVAL);
}

/* Rule (issue 3): when the hardware's report differs from the table, the
 * differences are named (NVML's values win; `profiles` shows the note);
 * identical catalogs and values the table leaves unknown are not. */
static void test_differences(void **state) {
  (void)state;
  gs_catalog_t table, live;
  gs_error_t err;
  char buf[384];
  assert_int_equal(gs_catalog_for_model(&table, "h100-80gb", &err), GS_OK);
  live = table;
  gs_catalog_differences(&live, &table, buf, sizeof buf);
  assert_string_equal(buf, "");
  live.gi[0].memory_mib += 256; /* a driver that reports more memory */
  snprintf(live.gi[2].name, sizeof live.gi[2].name, "1g.20gb-renamed");
  live.n_gi--; /* the last (7g) not offered */
  gs_catalog_differences(&live, &table, buf, sizeof buf);
  assert_non_null(strstr(buf, "profile 0 (7g.80gb) not offered"));
  assert_non_null(strstr(buf, "memory"));
  assert_non_null(strstr(buf, "name 1g.20gb-renamed, table 1g.20gb"));
  gs_catalog_t b200;
  assert_int_equal(gs_catalog_for_model(&b200, "b200", &err), GS_OK);
  live = b200;
  live.gi[live.n_gi - 1].sms = 148; /* the table does not know it */
  gs_catalog_differences(&live, &b200, buf, sizeof buf);
  assert_string_equal(buf, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_differences),
      cmocka_unit_test(test_models_7x8),
      cmocka_unit_test(test_a100_40gb_spot_checks),
      cmocka_unit_test(test_a30),
      cmocka_unit_test(test_model_names),
      cmocka_unit_test(test_model_unknown),
      cmocka_unit_test(test_pci_ids),
      cmocka_unit_test(test_synth_host),
      cmocka_unit_test(test_synth_soft),
      cmocka_unit_test(test_synth_rounding),
      cmocka_unit_test(test_device_names),
      cmocka_unit_test(test_format_starts),
      cmocka_unit_test(test_parse_accepts),
      cmocka_unit_test(test_parse_synth),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_parse_length_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
