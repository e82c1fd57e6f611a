/* TEST-ONLY fake NVML (see fake_nvml.c): FAKE_NVML_FIXTURE=<file.json>
 * replaces the built-in GPU models with GPUs recorded on real hardware by
 * tests/gpu/nvml_record (tests/fixtures/nvml/README.md). The read calls
 * replay what the driver answered there, return codes included: identity,
 * GPU-instance profile infos, placements, remaining capacity and, where the
 * recording saw a live GPU instance, its compute-instance profiles. Changes
 * (instances created and destroyed) run on the fake's own rules over the
 * recorded geometry. FAKE_NVML_FIXTURE_MIG_ON=1 reports MIG mode on for
 * every GPU that offered a profile, whatever the recording said (fixtures
 * are recorded with MIG off). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fake_nvml_int.h"

#define FX_MAX_BYTES (4 << 20) /* a fixture is a few tens of KiB */
#define FX_GI NVML_GPU_INSTANCE_PROFILE_COUNT
#define FX_CI NVML_COMPUTE_INSTANCE_PROFILE_COUNT
#define FX_PLACEMENTS 32

typedef struct fx_ci_s {
  nvmlReturn_t rc, pl_rc;
  nvmlComputeInstanceProfileInfo_v3_t info;
  unsigned n_pl;
  nvmlComputeInstancePlacement_t pl[FX_PLACEMENTS];
} fx_ci_t;

/* One GPU-instance profile index as recorded. */
typedef struct fx_gi_s {
  nvmlReturn_t rc, pl_rc, cap_rc;
  nvmlGpuInstanceProfileInfo_v3_t info;
  unsigned n_pl, cap;
  nvmlGpuInstancePlacement_t pl[FX_PLACEMENTS];
  int have_ci; /* the recording saw a live GI of this profile */
  fx_ci_t ci[FX_CI];
} fx_gi_t;

typedef struct fx_gpu_s {
  model_t model;
  geometry_t geometry;
  geo_t geo[FX_GI];
  prof_t prof[FX_GI];
  char key[16], product[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
  char names[FX_GI][NVML_DEVICE_NAME_V2_BUFFER_SIZE];
  unsigned mig_cur, mig_pending;
  unsigned recorded_gis; /* GPU instances that existed when recorded */
  fx_gi_t gi[FX_GI];
} fx_gpu_t;

static fx_gpu_t fx[MAX_GPUS];
static unsigned fx_n;

/* ---- reading the file -------------------------------------------------- */

static unsigned uint_at(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_integer(v) ? (unsigned)json_integer_value(v) : 0;
}

/* The "rc" of an answer object; a missing answer reads as NOT_SUPPORTED. */
static nvmlReturn_t rc_at(json_t *obj, const char *key) {
  json_t *a = key ? json_object_get(obj, key) : obj;
  json_t *v = json_object_get(a, "rc");
  return json_is_integer(v) ? (nvmlReturn_t)json_integer_value(v)
                            : NVML_ERROR_NOT_SUPPORTED;
}

static void copy_str(char *dst, size_t size, json_t *v) {
  snprintf(dst, size, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static void read_ci(fx_ci_t *c, json_t *e) {
  json_t *info = json_object_get(e, "info");
  c->rc = rc_at(e, NULL);
  c->info = (nvmlComputeInstanceProfileInfo_v3_t){0};
  c->info.id = uint_at(info, "id");
  c->info.sliceCount = uint_at(info, "slices");
  c->info.instanceCount = uint_at(info, "instances");
  c->info.multiprocessorCount = uint_at(info, "sms");
  copy_str(c->info.name, sizeof c->info.name, json_object_get(info, "name"));
  c->pl_rc = rc_at(e, "placements");
  json_t *list = json_object_get(json_object_get(e, "placements"), "list");
  for (size_t i = 0; i < json_array_size(list) && c->n_pl < FX_PLACEMENTS; i++)
    c->pl[c->n_pl++] = (nvmlComputeInstancePlacement_t){
        uint_at(json_array_get(list, i), "start"),
        uint_at(json_array_get(list, i), "size")};
}

static void read_gi(fx_gi_t *p, json_t *e) {
  json_t *info = json_object_get(e, "info");
  p->rc = rc_at(e, NULL);
  p->info = (nvmlGpuInstanceProfileInfo_v3_t){0};
  p->info.id = uint_at(info, "id");
  p->info.sliceCount = uint_at(info, "slices");
  p->info.instanceCount = uint_at(info, "instances");
  p->info.multiprocessorCount = uint_at(info, "sms");
  p->info.copyEngineCount = uint_at(info, "copy_engines");
  p->info.decoderCount = uint_at(info, "decoders");
  p->info.encoderCount = uint_at(info, "encoders");
  p->info.jpegCount = uint_at(info, "jpegs");
  p->info.ofaCount = uint_at(info, "ofas");
  json_t *mib = json_object_get(info, "memory_mib");
  p->info.memorySizeMB =
      json_is_integer(mib) ? (unsigned long long)json_integer_value(mib) : 0;
  copy_str(p->info.name, sizeof p->info.name, json_object_get(info, "name"));
  p->pl_rc = rc_at(e, "placements");
  json_t *list = json_object_get(json_object_get(e, "placements"), "list");
  for (size_t i = 0; i < json_array_size(list) && p->n_pl < FX_PLACEMENTS; i++)
    p->pl[p->n_pl++] =
        (nvmlGpuInstancePlacement_t){uint_at(json_array_get(list, i), "start"),
                                     uint_at(json_array_get(list, i), "size")};
  p->cap_rc = rc_at(e, "remaining_capacity");
  p->cap = uint_at(json_object_get(e, "remaining_capacity"), "count");
  json_t *cis = json_object_get(e, "ci_profiles");
  for (size_t i = 0; i < json_array_size(cis); i++) {
    json_t *c = json_array_get(cis, i);
    unsigned index = uint_at(c, "index");
    if (index < FX_CI) {
      read_ci(&p->ci[index], c);
      p->have_ci = 1;
    }
  }
}

/* The geometry the fake's instance rules need, from the recorded profiles:
 * one geo_t per profile that answered, in index order. */
static void build_model(fx_gpu_t *f, unsigned gpu) {
  unsigned n = 0;
  for (unsigned index = 0; index < FX_GI; index++) {
    const fx_gi_t *p = &f->gi[index];
    if (p->rc != NVML_SUCCESS)
      continue;
    uint32_t starts = 0;
    unsigned mem = 0;
    for (unsigned k = 0; k < p->n_pl; k++)
      if (p->pl[k].start < 32) {
        starts |= 1u << p->pl[k].start;
        mem = p->pl[k].size;
      }
    const char *name =
        strncmp(p->info.name, "MIG ", 4) == 0 ? p->info.name + 4 : p->info.name;
    snprintf(f->names[n], sizeof f->names[n], "%s", name);
    f->geo[n] = (geo_t){index,
                        p->info.id,
                        p->info.sliceCount,
                        mem,
                        p->info.instanceCount,
                        starts,
                        strstr(name, "+me") != NULL};
    f->prof[n] = (prof_t){f->names[n],
                          (unsigned)(p->info.memorySizeMB * 100 / 1024),
                          p->info.multiprocessorCount,
                          p->info.copyEngineCount,
                          p->info.decoderCount,
                          p->info.jpegCount,
                          p->info.ofaCount};
    if (f->geo[n].g > f->geometry.compute_slices)
      f->geometry.compute_slices = f->geo[n].g;
    for (unsigned s = 0; s < 32; s++)
      if ((starts & (1u << s)) && s + mem > f->geometry.memory_slices)
        f->geometry.memory_slices = s + mem;
    n++;
  }
  f->geometry.geo = f->geo;
  f->geometry.n_geo = n;
  snprintf(f->key, sizeof f->key, "fixture%u", gpu);
  f->model.key = f->key;
  f->model.product = f->product;
  f->model.geometry = &f->geometry;
  f->model.prof = f->prof;
  f->model.ampere =
      strstr(f->product, "A100") || strstr(f->product, "A30") ? 1 : 0;
}

static int read_gpu(fx_gpu_t *f, json_t *g, unsigned gpu) {
  memset(f, 0, sizeof *f);
  copy_str(f->product, sizeof f->product, json_object_get(g, "name"));
  copy_str(f->uuid, sizeof f->uuid, json_object_get(g, "uuid"));
  json_t *pci = json_object_get(json_object_get(g, "pci"), "device_id");
  f->model.pci = json_is_string(pci)
                     ? (uint32_t)strtoul(json_string_value(pci), NULL, 16)
                     : 0;
  json_t *total = json_object_get(json_object_get(g, "memory"), "total_bytes");
  f->model.total_mib = json_is_integer(total)
                           ? (unsigned long long)json_integer_value(total) >> 20
                           : 0;
  json_t *mode = json_object_get(g, "mig_mode");
  f->mig_cur = uint_at(mode, "current");
  f->mig_pending = uint_at(mode, "pending");
  json_t *list = json_object_get(g, "gi_profiles");
  for (size_t i = 0; i < FX_GI; i++)
    f->gi[i].rc = NVML_ERROR_NOT_SUPPORTED;
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *e = json_array_get(list, i);
    unsigned index = uint_at(e, "index");
    if (index < FX_GI)
      read_gi(&f->gi[index], e);
    json_t *gis = json_object_get(json_object_get(e, "gpu_instances"), "list");
    f->recorded_gis += (unsigned)json_array_size(gis);
  }
  build_model(f, gpu);
  return f->product[0] ? 0 : -1;
}

int fixture_load(const char *path) {
  struct stat st;
  json_error_t jerr;
  fx_n = 0;
  if (stat(path, &st) != 0 || st.st_size > FX_MAX_BYTES) {
    fprintf(stderr, "fake_nvml: fixture %s: missing or over %d bytes\n", path,
            FX_MAX_BYTES);
    return -1;
  }
  json_t *root = json_load_file(path, 0, &jerr);
  json_t *gpus = json_object_get(root, "gpus");
  if (!json_is_array(gpus) || json_array_size(gpus) == 0) {
    fprintf(stderr, "fake_nvml: fixture %s: %s\n", path,
            root ? "no GPUs (\"gpus\")" : jerr.text);
    json_decref(root);
    return -1;
  }
  int rc = 0;
  for (size_t i = 0; i < json_array_size(gpus) && fx_n < MAX_GPUS; i++) {
    if (read_gpu(&fx[fx_n], json_array_get(gpus, i), fx_n) != 0) {
      fprintf(stderr, "fake_nvml: fixture %s: GPU %zu has no name\n", path, i);
      rc = -1;
      break;
    }
    fx_n++;
  }
  json_decref(root);
  return rc;
}

unsigned fixture_gpus(void) {
  const char *on = getenv("FAKE_NVML_FIXTURE_MIG_ON");
  for (unsigned i = 0; i < fx_n && fk.n_gpu < MAX_GPUS; i++) {
    fgpu_t *g = &fk.gpu[fk.n_gpu++];
    g->m = &fx[i].model;
    g->cur = fx[i].mig_cur;
    g->pending = fx[i].mig_pending;
    if (on && strcmp(on, "1") == 0 && fx[i].geometry.n_geo > 0)
      g->cur = g->pending = NVML_DEVICE_MIG_ENABLE;
  }
  return fx_n;
}

/* ---- replaying --------------------------------------------------------- */

static const fx_gpu_t *fx_of(const model_t *m) {
  for (unsigned i = 0; i < fx_n; i++)
    if (m == &fx[i].model)
      return &fx[i];
  return NULL;
}

/* The recorded index whose profile has this ID. */
static const fx_gi_t *fx_gi_by_id(const fx_gpu_t *f, unsigned id) {
  for (unsigned i = 0; i < FX_GI; i++)
    if (f->gi[i].rc == NVML_SUCCESS && f->gi[i].info.id == id)
      return &f->gi[i];
  return NULL;
}

const model_t *fixture_model(const char *key, size_t len) {
  for (unsigned i = 0; i < fx_n; i++)
    if (strlen(fx[i].key) == len && strncmp(fx[i].key, key, len) == 0)
      return &fx[i].model;
  return NULL;
}

int fixture_uuid(const model_t *m, const char **uuid) {
  const fx_gpu_t *f = fx_of(m);
  if (!f || !f->uuid[0])
    return 0;
  *uuid = f->uuid;
  return 1;
}

int fixture_gi_profile(const model_t *m, unsigned index,
                       nvmlGpuInstanceProfileInfo_v3_t *v3, nvmlReturn_t *r) {
  const fx_gpu_t *f = fx_of(m);
  if (!f)
    return 0;
  *r = index < FX_GI ? f->gi[index].rc : NVML_ERROR_INVALID_ARGUMENT;
  if (*r == NVML_SUCCESS)
    *v3 = f->gi[index].info;
  return 1;
}

int fixture_placements(const model_t *m, unsigned id,
                       nvmlGpuInstancePlacement_t *out, unsigned *count,
                       nvmlReturn_t *r) {
  const fx_gpu_t *f = fx_of(m);
  if (!f)
    return 0;
  const fx_gi_t *p = fx_gi_by_id(f, id);
  *r = p ? p->pl_rc : NVML_ERROR_INVALID_ARGUMENT;
  if (*r != NVML_SUCCESS)
    return 1;
  if (out)
    memcpy(out, p->pl, p->n_pl * sizeof *out);
  *count = p->n_pl;
  return 1;
}

/* Replayed only while the GPU is as recorded: same mode, and no instances
 * then or now; otherwise the fake computes it from the recorded geometry. */
int fixture_capacity(fgpu_t *g, unsigned id, unsigned *count, nvmlReturn_t *r) {
  const fx_gpu_t *f = fx_of(g->m);
  const fx_gi_t *p = f ? fx_gi_by_id(f, id) : NULL;
  if (!p || g->cur != f->mig_cur || f->recorded_gis > 0 || gi_count(g->gi) > 0)
    return 0;
  *r = p->cap_rc;
  if (*r == NVML_SUCCESS)
    *count = p->cap;
  return 1;
}

int fixture_ci_profile(const model_t *m, unsigned gi_profile_id, unsigned index,
                       nvmlComputeInstanceProfileInfo_v3_t *v3,
                       nvmlReturn_t *r) {
  const fx_gpu_t *f = fx_of(m);
  const fx_gi_t *p = f ? fx_gi_by_id(f, gi_profile_id) : NULL;
  if (!p || !p->have_ci)
    return 0;
  *r = index < FX_CI ? p->ci[index].rc : NVML_ERROR_INVALID_ARGUMENT;
  if (*r == NVML_SUCCESS)
    *v3 = p->ci[index].info;
  return 1;
}

int fixture_ci_placements(const model_t *m, unsigned gi_profile_id,
                          unsigned ci_profile_id,
                          nvmlComputeInstancePlacement_t *out, unsigned *count,
                          nvmlReturn_t *r) {
  const fx_gpu_t *f = fx_of(m);
  const fx_gi_t *p = f ? fx_gi_by_id(f, gi_profile_id) : NULL;
  if (!p || !p->have_ci)
    return 0;
  const fx_ci_t *c = NULL;
  for (unsigned i = 0; i < FX_CI; i++)
    if (p->ci[i].rc == NVML_SUCCESS && p->ci[i].info.id == ci_profile_id)
      c = &p->ci[i];
  *r = c ? c->pl_rc : NVML_ERROR_NOT_SUPPORTED;
  if (*r != NVML_SUCCESS)
    return 1;
  if (out)
    memcpy(out, c->pl, c->n_pl * sizeof *out);
  *count = c->n_pl;
  return 1;
}
