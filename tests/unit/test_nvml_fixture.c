/* The mig backend's catalog on GPUs recorded from real hardware: every
 * tests/fixtures/nvml/<name>.json (written by tests/gpu/nvml_record) is
 * replayed through the test-only fake NVML. Rules
 * (NVIDIA's MIG User Guide, docs/ARCHITECTURE.md): NVML's own report on a
 * live GPU wins over the catalog tables, so every profile field the driver
 * reported comes out unchanged; profile IDs and placements are the same on
 * every GPU of a geometry, so a gpuslice table that disagrees with the hardware
 * on the profile set, slices, starts or counts is wrong and fails; names, GiB,
 * SMs and engine counts drift with the driver, so their differences are printed
 * only. Without fixtures the test is skipped, never passed. */
#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/mig_int.h"
#include "gpuslice/catalog.h"

#ifndef GS_FAKE_NVML_DIR
#define GS_FAKE_NVML_DIR NULL
#endif
#ifndef GS_NVML_FIXTURE_DIR
#define GS_NVML_FIXTURE_DIR NULL
#endif

#define MAX_FIXTURES 64
#define FIXTURE_MAX_BYTES (4 << 20)

static char fixture_paths[MAX_FIXTURES][1024];

/* ---- reading what the hardware said ------------------------------------ */

/* One recorded profile: what the driver reported for it. */
typedef struct recorded_s {
  unsigned index, id, slices, instances, sms, ce, dec, enc, jpeg, ofa;
  unsigned long long memory_mib;
  const char *name; /* without "MIG " */
  int placements_ok;
  uint32_t starts;
  unsigned size;
} recorded_t;

static unsigned uint_at(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;
}

static int rc_of(json_t *answer) {
  json_t *v = json_object_get(answer, "rc");
  return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

/* The profiles one recorded GPU answered, first index per ID (the backend
 * keeps the first index of a profile). */
static unsigned recorded_profiles(json_t *gpu, recorded_t *out, unsigned max) {
  json_t *list = json_object_get(gpu, "gi_profiles");
  unsigned n = 0;
  for (size_t i = 0; i < json_array_size(list) && n < max; i++) {
    json_t *e = json_array_get(list, i);
    json_t *info = json_object_get(e, "info");
    if (rc_of(e) != 0 || !info)
      continue;
    recorded_t r = {0};
    r.index = uint_at(e, "index");
    r.id = uint_at(info, "id");
    bool seen = false;
    for (unsigned k = 0; k < n; k++)
      seen = seen || out[k].id == r.id;
    if (seen)
      continue;
    r.slices = uint_at(info, "slices");
    r.instances = uint_at(info, "instances");
    r.sms = uint_at(info, "sms");
    r.ce = uint_at(info, "copy_engines");
    r.dec = uint_at(info, "decoders");
    r.enc = uint_at(info, "encoders");
    r.jpeg = uint_at(info, "jpegs");
    r.ofa = uint_at(info, "ofas");
    json_t *mib = json_object_get(info, "memory_mib");
    r.memory_mib =
        json_is_integer(mib) ? (unsigned long long)json_integer_value(mib) : 0;
    const char *name = json_string_value(json_object_get(info, "name"));
    name = name ? name : "";
    r.name = strncmp(name, "MIG ", 4) == 0 ? name + 4 : name;
    json_t *pl = json_object_get(e, "placements");
    r.placements_ok = rc_of(pl) == 0;
    json_t *starts = json_object_get(pl, "list");
    for (size_t k = 0; k < json_array_size(starts); k++) {
      unsigned s = uint_at(json_array_get(starts, k), "start");
      if (s < 32)
        r.starts |= 1u << s;
      r.size = uint_at(json_array_get(starts, k), "size");
    }
    out[n++] = r;
  }
  return n;
}

/* ---- the checks -------------------------------------------------------- */

typedef struct fixture_s {
  const char *path;
  json_t *root;
  char dir[64];
  gs_backend_t *be;
  gs_error_t err;
} fixture_t;

static const char *fake_path(void) {
  static char path[1024];
  const char *dir = getenv("GS_FAKE_NVML_DIR");
  if (!dir)
    dir = GS_FAKE_NVML_DIR;
  if (!dir) {
    print_message("no fake NVML built (tests/fake_nvml): skipped\n");
    skip();
  }
  snprintf(path, sizeof path, "%s/current/libnvidia-ml.so.1", dir);
  return path;
}

/* The backend's profile must carry exactly what the driver reported. */
static void check_nvml_wins(const recorded_t *r, const gs_gi_profile_t *p) {
  assert_int_equal(p->nvml_index, r->index);
  if (r->name[0]) /* v1-only drivers give no name: the table's stands in */
    assert_string_equal(p->name, r->name);
  assert_int_equal(p->compute_slices, r->slices);
  assert_int_equal(p->max_count, r->instances);
  assert_int_equal(p->memory_mib, r->memory_mib);
  assert_int_equal(p->sms, r->sms);
  assert_int_equal(p->copy_engines, r->ce);
  assert_int_equal(p->decoders, r->dec);
  assert_int_equal(p->encoders, r->enc);
  assert_int_equal(p->jpegs, r->jpeg);
  assert_int_equal(p->ofas, r->ofa);
  if (r->placements_ok) {
    assert_int_equal(p->start_mask, r->starts);
    assert_int_equal(p->memory_slices, r->size);
  } else {
    print_message("  profile %u: placements not readable when recorded "
                  "(not root?): the table's stand in\n",
                  r->id);
  }
}

static void note_u(const char *model, const recorded_t *r, const char *what,
                   unsigned long long table, unsigned long long nvml) {
  if (table != nvml)
    print_message("  %s profile %u (%s): %s table %llu, NVML %llu: NVML "
                  "wins\n",
                  model, r->id, r->name, what, table, nvml);
}

/* Geometry differences fail; drift is printed. Returns mismatches. */
static unsigned compare_table(const gs_catalog_t *table, const recorded_t *rec,
                              unsigned n_rec) {
  unsigned bad = 0;
  for (unsigned i = 0; i < n_rec; i++) {
    const recorded_t *r = &rec[i];
    const gs_gi_profile_t *t = gs_catalog_gi(table, r->id);
    if (!t) {
      print_message("  %s: table lacks profile %u (%s) that the GPU offers\n",
                    table->model, r->id, r->name);
      bad++;
      continue;
    }
    if (t->compute_slices != r->slices || t->max_count != r->instances ||
        (r->placements_ok &&
         (t->start_mask != r->starts || t->memory_slices != r->size))) {
      print_message("  %s profile %u (%s): table %ug x%u starts 0x%x size %u,"
                    " hardware %ug x%u starts 0x%x size %u\n",
                    table->model, r->id, r->name, t->compute_slices,
                    t->max_count, t->start_mask, t->memory_slices, r->slices,
                    r->instances, r->starts, r->size);
      bad++;
    }
    if (r->name[0] && strcmp(t->name, r->name) != 0)
      print_message("  %s profile %u: name table %s, NVML %s: NVML wins\n",
                    table->model, r->id, t->name, r->name);
    double mib = (double)r->memory_mib, tmib = (double)t->memory_mib;
    if (tmib < mib * 0.99 || tmib > mib * 1.01)
      note_u(table->model, r, "MiB (beyond 1%)", t->memory_mib, r->memory_mib);
    note_u(table->model, r, "SMs", t->sms, r->sms);
    note_u(table->model, r, "CE", t->copy_engines, r->ce);
    note_u(table->model, r, "DEC", t->decoders, r->dec);
    note_u(table->model, r, "ENC", t->encoders, r->enc);
    note_u(table->model, r, "JPEG", t->jpegs, r->jpeg);
    note_u(table->model, r, "OFA", t->ofas, r->ofa);
  }
  for (unsigned i = 0; i < table->n_gi; i++) {
    bool offered = false;
    for (unsigned k = 0; k < n_rec; k++)
      offered = offered || rec[k].id == table->gi[i].id;
    if (!offered) {
      print_message("  %s: table has profile %u (%s) the GPU does not offer\n",
                    table->model, table->gi[i].id, table->gi[i].name);
      bad++;
    }
  }
  return bad;
}

static void check_device(fixture_t *f, unsigned dev, json_t *gpu) {
  gs_device_t d;
  if (f->be->ops->device_get(f->be, dev, &d, &f->err) != GS_OK)
    fail_msg("%s: device_get(%u): %s", f->path, dev, f->err.msg);
  const char *name = json_string_value(json_object_get(gpu, "name"));
  assert_string_equal(d.name, name);
  assert_true(d.layout.mig_enabled);
  assert_int_equal(d.layout.n_gi, 0);

  recorded_t rec[GS_MAX_GI_PROFILES];
  unsigned n_rec = recorded_profiles(gpu, rec, GS_MAX_GI_PROFILES);
  const gs_catalog_t *cat = &d.catalog;
  print_message("%s: GPU %u %s: %u profiles from NVML, catalog %s\n", f->path,
                dev, name, n_rec, cat->model);
  assert_int_equal(cat->source, GS_CATALOG_NVML);
  assert_int_equal(cat->n_gi, n_rec);
  for (unsigned i = 0; i < n_rec; i++) {
    const gs_gi_profile_t *p = gs_catalog_gi(cat, rec[i].id);
    if (!p)
      fail_msg("profile %u (%s) missing from the backend's catalog", rec[i].id,
               rec[i].name);
    check_nvml_wins(&rec[i], p);
  }

  gs_catalog_t table;
  if (gs_catalog_for_pci_id(&table, d.pci_device_id, cat->total_memory_mib,
                            NULL) != GS_OK) {
    print_message("  no gpuslice table for PCI ID 0x%08X: NVML's catalog "
                  "only\n",
                  d.pci_device_id);
    return;
  }
  assert_string_equal(cat->model, table.model);
  unsigned bad = compare_table(&table, rec, n_rec);
  if (bad)
    fail_msg("%s: gpuslice's %s table disagrees with the hardware on %u "
             "profile(s) (above)",
             f->path, table.model, bad);
}

/* GPUs the fake reports with MIG on: those that offered a profile. */
static unsigned mig_capable(json_t *gpus) {
  unsigned n = 0;
  recorded_t rec[GS_MAX_GI_PROFILES];
  for (size_t i = 0; i < json_array_size(gpus); i++)
    n +=
        recorded_profiles(json_array_get(gpus, i), rec, GS_MAX_GI_PROFILES) > 0;
  return n;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  if (!f)
    return -1;
  f->path = *state;
  snprintf(f->dir, sizeof f->dir, "/tmp/gs-fixture-test-XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  char lock[128];
  gs_backend_close(f->be);
  unsetenv("FAKE_NVML_FIXTURE");
  unsetenv("FAKE_NVML_FIXTURE_MIG_ON");
  snprintf(lock, sizeof lock, "%s/mig.lock", f->dir);
  unlink(lock);
  rmdir(f->dir);
  json_decref(f->root);
  free(f);
  return 0;
}

static void replay_fixture(void **state) {
  fixture_t *f = *state;
  struct stat st;
  json_error_t jerr;
  if (stat(f->path, &st) != 0 || st.st_size > FIXTURE_MAX_BYTES)
    fail_msg("%s: missing or over %d bytes", f->path, FIXTURE_MAX_BYTES);
  f->root = json_load_file(f->path, 0, &jerr);
  if (!f->root)
    fail_msg("%s:%d: %s", f->path, jerr.line, jerr.text);
  json_t *gpus = json_object_get(f->root, "gpus");
  assert_true(json_array_size(gpus) > 0);

  unsetenv("FAKE_NVML_CONFIG");
  unsetenv("FAKE_NVML_STATE");
  unsetenv("FAKE_NVML_BUSY");
  unsetenv("FAKE_NVML_STRUCT_V2");
  unsetenv("FAKE_NVML_NO_PERMISSION");
  setenv("FAKE_NVML_FIXTURE", f->path, 1);
  setenv("FAKE_NVML_FIXTURE_MIG_ON", "1", 1);
  gs_backend_options_t opt = {.state_dir = f->dir};
  if (gs__backend_mig_open(&f->be, &opt, fake_path(), &f->err) != GS_OK)
    fail_msg("%s: gs__backend_mig_open: %s", f->path, f->err.msg);

  unsigned n = 0;
  assert_int_equal(f->be->ops->device_count(f->be, &n, &f->err), GS_OK);
  assert_int_equal(n, mig_capable(gpus));
  recorded_t rec[GS_MAX_GI_PROFILES];
  unsigned dev = 0;
  for (size_t i = 0; i < json_array_size(gpus); i++) {
    json_t *gpu = json_array_get(gpus, i);
    if (recorded_profiles(gpu, rec, GS_MAX_GI_PROFILES) > 0)
      check_device(f, dev++, gpu);
  }
}

static void no_fixture_yet(void **state) {
  print_message("no fixture in %s (tests/fixtures/nvml/README.md says how to "
                "record one): skipped\n",
                (const char *)*state);
  skip();
}

static int by_name(const void *a, const void *b) {
  return strcmp(a, b);
}

/* The *.json files of dir, sorted. */
static unsigned find_fixtures(const char *dir) {
  unsigned n = 0;
  DIR *d = dir ? opendir(dir) : NULL;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL && n < MAX_FIXTURES) {
    size_t len = strlen(e->d_name);
    if (len > 5 && strcmp(e->d_name + len - 5, ".json") == 0)
      snprintf(fixture_paths[n++], sizeof fixture_paths[0], "%s/%s", dir,
               e->d_name);
  }
  if (d)
    closedir(d);
  qsort(fixture_paths, n, sizeof fixture_paths[0], by_name);
  return n;
}

int main(void) {
  const char *dir = getenv("GS_NVML_FIXTURE_DIR");
  if (!dir)
    dir = GS_NVML_FIXTURE_DIR;
  unsigned n = find_fixtures(dir);
  if (n == 0) {
    const struct CMUnitTest none[] = {
        cmocka_unit_test_prestate(no_fixture_yet, (void *)(dir ? dir : "?"))};
    return cmocka_run_group_tests(none, NULL, NULL);
  }
  struct CMUnitTest tests[MAX_FIXTURES];
  for (unsigned i = 0; i < n; i++)
    tests[i] = (struct CMUnitTest){.name = fixture_paths[i],
                                   .test_func = replay_fixture,
                                   .setup_func = setup,
                                   .teardown_func = teardown,
                                   .initial_state = fixture_paths[i]};
  return _cmocka_run_group_tests("nvml_fixture", tests, n, NULL, NULL);
}
