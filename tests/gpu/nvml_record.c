/* nvml_record: writes, as JSON on stdout, everything gpuslice's mig backend
 * reads through NVML, for every GPU: identity, memory, MIG mode, every GPU
 * instance profile index with the call's return code, placements, remaining
 * capacity, and the compute-instance profiles of live GPU instances. The
 * output is the fixture the test-only fake NVML replays
 * (tests/fixtures/nvml/README.md). Read-only: it never creates, destroys or
 * switches anything.
 *
 * usage: nvml_record [--nvml LIBRARY]   (default $GPUSLICE_NVML_LIBRARY,
 *        else the driver's libnvidia-ml.so.1)
 * exit: 0 recorded; 77 no NVIDIA driver; 1 NVML failed or usage error. */
#include <dlfcn.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/nvml_shim.h"
#include "gpuslice/catalog.h"

#define FIXTURE_FORMAT "gpuslice-nvml-fixture 1"
#define MAX_PLACEMENTS 32
#define MAX_INSTANCES 16

static const char *rc_name(nvmlReturn_t r) {
  switch (r) {
  case NVML_SUCCESS:
    return "SUCCESS";
  case NVML_ERROR_UNINITIALIZED:
    return "ERROR_UNINITIALIZED";
  case NVML_ERROR_INVALID_ARGUMENT:
    return "ERROR_INVALID_ARGUMENT";
  case NVML_ERROR_NOT_SUPPORTED:
    return "ERROR_NOT_SUPPORTED";
  case NVML_ERROR_NO_PERMISSION:
    return "ERROR_NO_PERMISSION";
  case NVML_ERROR_NOT_FOUND:
    return "ERROR_NOT_FOUND";
  case NVML_ERROR_INSUFFICIENT_SIZE:
    return "ERROR_INSUFFICIENT_SIZE";
  case NVML_ERROR_FUNCTION_NOT_FOUND:
    return "ERROR_FUNCTION_NOT_FOUND";
  case NVML_ERROR_GPU_IS_LOST:
    return "ERROR_GPU_IS_LOST";
  case NVML_ERROR_IN_USE:
    return "ERROR_IN_USE";
  case NVML_ERROR_INSUFFICIENT_RESOURCES:
    return "ERROR_INSUFFICIENT_RESOURCES";
  case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
    return "ERROR_ARGUMENT_VERSION_MISMATCH";
  default:
    return "ERROR_OTHER";
  }
}

/* {"rc": 3, "rc_name": "ERROR_NOT_SUPPORTED"}, to which callers add. */
static json_t *answer(nvmlReturn_t r) {
  return json_pack("{s:i, s:s}", "rc", (int)r, "rc_name", rc_name(r));
}

/* The answer for one profile index: {"index": 5, "rc": ..., ...}. */
static json_t *answer_at(unsigned index, nvmlReturn_t r) {
  return json_pack("{s:i, s:i, s:s}", "index", (int)index, "rc", (int)r,
                   "rc_name", rc_name(r));
}

/* Optional read-only calls outside the shim's list (metadata only). */
static void system_versions(const gs__nvml_t *nvml, json_t *out) {
  static const char *const syms[][2] = {
      {"nvmlSystemGetDriverVersion", "driver_version"},
      {"nvmlSystemGetNVMLVersion", "nvml_version"}};
  for (size_t k = 0; k < sizeof syms / sizeof syms[0]; k++) {
    nvmlReturn_t (*fn)(char *, unsigned) = NULL;
    void *p = dlsym(nvml->dl, syms[k][0]);
    memcpy(&fn, &p, sizeof p);
    char buf[96] = "";
    if (fn && fn(buf, sizeof buf) == NVML_SUCCESS)
      json_object_set_new(out, syms[k][1], json_string(buf));
  }
}

static json_t *gi_profile_info(const gs__nvml_gi_profile_t *p) {
  return json_pack("{s:i, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I}",
                   "id", (int)p->id, "name", p->name, "slices", (int)p->slices,
                   "instances", (int)p->instances, "sms", (int)p->sms,
                   "copy_engines", (int)p->copy_engines, "decoders",
                   (int)p->decoders, "encoders", (int)p->encoders, "jpegs",
                   (int)p->jpegs, "ofas", (int)p->ofas, "memory_mib",
                   (json_int_t)p->memory_mib);
}

static json_t *gi_placements(const gs__nvml_t *nvml, nvmlDevice_t dev,
                             unsigned id) {
  nvmlGpuInstancePlacement_t pl[MAX_PLACEMENTS];
  unsigned n = MAX_PLACEMENTS;
  nvmlReturn_t r =
      nvml->DeviceGetGpuInstancePossiblePlacements(dev, id, pl, &n);
  json_t *out = answer(r);
  if (r != NVML_SUCCESS)
    return out;
  json_t *list = json_array();
  for (unsigned i = 0; i < n && i < MAX_PLACEMENTS; i++)
    json_array_append_new(list,
                          json_pack("{s:i, s:i}", "start", (int)pl[i].start,
                                    "size", (int)pl[i].size));
  json_object_set_new(out, "list", list);
  return out;
}

static json_t *remaining_capacity(const gs__nvml_t *nvml, nvmlDevice_t dev,
                                  unsigned id) {
  if (!nvml->DeviceGetGpuInstanceRemainingCapacity)
    return answer(NVML_ERROR_FUNCTION_NOT_FOUND);
  unsigned count = 0;
  nvmlReturn_t r = nvml->DeviceGetGpuInstanceRemainingCapacity(dev, id, &count);
  json_t *out = answer(r);
  if (r == NVML_SUCCESS)
    json_object_set_new(out, "count", json_integer(count));
  return out;
}

/* Every CI profile index of one live GPU instance, with placements. */
static json_t *ci_profiles(const gs__nvml_t *nvml, nvmlGpuInstance_t gi) {
  json_t *list = json_array();
  for (unsigned index = 0; index < NVML_COMPUTE_INSTANCE_PROFILE_COUNT;
       index++) {
    gs__nvml_ci_profile_t p;
    nvmlReturn_t r = gs__nvml_ci_profile(nvml, gi, index, &p);
    json_t *e = answer_at(index, r);
    if (r == NVML_SUCCESS) {
      json_object_set_new(e, "info",
                          json_pack("{s:i, s:s, s:i, s:i, s:i}", "id",
                                    (int)p.id, "name", p.name, "slices",
                                    (int)p.slices, "instances",
                                    (int)p.instances, "sms", (int)p.sms));
      nvmlComputeInstancePlacement_t pl[MAX_PLACEMENTS];
      unsigned n = MAX_PLACEMENTS;
      nvmlReturn_t pr =
          nvml->GpuInstanceGetComputeInstancePossiblePlacements
              ? nvml->GpuInstanceGetComputeInstancePossiblePlacements(gi, p.id,
                                                                      pl, &n)
              : NVML_ERROR_FUNCTION_NOT_FOUND;
      json_t *jp = answer(pr);
      if (pr == NVML_SUCCESS) {
        json_t *jl = json_array();
        for (unsigned i = 0; i < n && i < MAX_PLACEMENTS; i++)
          json_array_append_new(jl, json_pack("{s:i, s:i}", "start",
                                              (int)pl[i].start, "size",
                                              (int)pl[i].size));
        json_object_set_new(jp, "list", jl);
      }
      json_object_set_new(e, "placements", jp);
    }
    json_array_append_new(list, e);
  }
  return list;
}

/* The compute instances of one GPU instance (read-only listing). */
static json_t *compute_instances(const gs__nvml_t *nvml, nvmlGpuInstance_t gi) {
  json_t *list = json_array();
  for (unsigned pid = 0; pid < NVML_COMPUTE_INSTANCE_PROFILE_COUNT; pid++) {
    nvmlComputeInstance_t cis[MAX_INSTANCES];
    unsigned n = MAX_INSTANCES;
    if (nvml->GpuInstanceGetComputeInstances(gi, pid, cis, &n) != NVML_SUCCESS)
      continue;
    for (unsigned k = 0; k < n && k < MAX_INSTANCES; k++) {
      nvmlComputeInstanceInfo_t info;
      if (nvml->ComputeInstanceGetInfo(cis[k], &info) == NVML_SUCCESS)
        json_array_append_new(list, json_pack("{s:i, s:i, s:i, s:i}", "id",
                                              (int)info.id, "profile_id",
                                              (int)info.profileId, "start",
                                              (int)info.placement.start, "size",
                                              (int)info.placement.size));
    }
  }
  return list;
}

/* Live GPU instances of one profile ID; the first one's CI profiles go in
 * *ci_out (NULL when there is none). */
static json_t *gpu_instances(const gs__nvml_t *nvml, nvmlDevice_t dev,
                             unsigned id, json_t **ci_out) {
  nvmlGpuInstance_t gis[MAX_INSTANCES];
  unsigned n = MAX_INSTANCES;
  nvmlReturn_t r = nvml->DeviceGetGpuInstances(dev, id, gis, &n);
  json_t *out = answer(r);
  *ci_out = NULL;
  if (r != NVML_SUCCESS)
    return out;
  json_t *list = json_array();
  for (unsigned k = 0; k < n && k < MAX_INSTANCES; k++) {
    nvmlGpuInstanceInfo_t info;
    if (nvml->GpuInstanceGetInfo(gis[k], &info) != NVML_SUCCESS)
      continue;
    json_array_append_new(
        list,
        json_pack("{s:i, s:i, s:i, s:i, s:o}", "id", (int)info.id, "profile_id",
                  (int)info.profileId, "start", (int)info.placement.start,
                  "size", (int)info.placement.size, "compute_instances",
                  compute_instances(nvml, gis[k])));
    if (!*ci_out)
      *ci_out = ci_profiles(nvml, gis[k]);
  }
  json_object_set_new(out, "list", list);
  return out;
}

/* Every GPU-instance profile index the shim asks about, in index order. */
static json_t *gi_profiles(const gs__nvml_t *nvml, nvmlDevice_t dev) {
  json_t *list = json_array();
  for (unsigned index = 0; index < NVML_GPU_INSTANCE_PROFILE_COUNT; index++) {
    gs__nvml_gi_profile_t p;
    nvmlReturn_t r = gs__nvml_gi_profile(nvml, dev, index, &p);
    json_t *e = answer_at(index, r);
    if (r == NVML_SUCCESS) {
      json_t *cis = NULL;
      json_object_set_new(e, "info", gi_profile_info(&p));
      json_object_set_new(e, "placements", gi_placements(nvml, dev, p.id));
      json_object_set_new(e, "remaining_capacity",
                          remaining_capacity(nvml, dev, p.id));
      json_object_set_new(e, "gpu_instances",
                          gpu_instances(nvml, dev, p.id, &cis));
      if (cis)
        json_object_set_new(e, "ci_profiles", cis);
    }
    json_array_append_new(list, e);
  }
  return list;
}

static json_t *record_gpu(const gs__nvml_t *nvml, unsigned i) {
  nvmlDevice_t dev;
  nvmlReturn_t r = nvml->DeviceGetHandleByIndex(i, &dev);
  json_t *g = json_pack("{s:i}", "index", (int)i);
  json_object_set_new(g, "handle", answer(r));
  if (r != NVML_SUCCESS)
    return g;
  char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = "";
  char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = "";
  r = nvml->DeviceGetName(dev, name, sizeof name);
  json_object_set_new(g, "name", json_string(r == NVML_SUCCESS ? name : ""));
  r = nvml->DeviceGetUUID(dev, uuid, sizeof uuid);
  json_object_set_new(g, "uuid", json_string(r == NVML_SUCCESS ? uuid : ""));

  nvmlPciInfo_t pci;
  memset(&pci, 0, sizeof pci);
  r = nvml->DeviceGetPciInfo(dev, &pci);
  json_t *jpci = answer(r);
  if (r == NVML_SUCCESS) {
    char id[16];
    snprintf(id, sizeof id, "0x%08X", pci.pciDeviceId);
    json_object_set_new(jpci, "device_id", json_string(id));
    json_object_set_new(jpci, "bus_id", json_string(pci.busId));
  }
  json_object_set_new(g, "pci", jpci);

  nvmlMemory_t mem;
  memset(&mem, 0, sizeof mem);
  r = nvml->DeviceGetMemoryInfo(dev, &mem);
  json_t *jmem = answer(r);
  if (r == NVML_SUCCESS)
    json_object_set_new(jmem, "total_bytes",
                        json_integer((json_int_t)mem.total));
  json_object_set_new(g, "memory", jmem);

  unsigned cur = 0, pending = 0;
  r = nvml->DeviceGetMigMode(dev, &cur, &pending);
  json_t *jmode = answer(r);
  if (r == NVML_SUCCESS) {
    json_object_set_new(jmode, "current", json_integer(cur));
    json_object_set_new(jmode, "pending", json_integer(pending));
  }
  json_object_set_new(g, "mig_mode", jmode);
  json_object_set_new(g, "gi_profiles", gi_profiles(nvml, dev));

  /* Not NVML's answer: which gpuslice table this GPU maps to, so that the
   * readout check knows what to compare against. */
  gs_catalog_t table;
  if (pci.pciDeviceId && gs_catalog_for_pci_id(&table, pci.pciDeviceId,
                                               mem.total >> 20, NULL) == GS_OK)
    json_object_set_new(g, "gpuslice_table", json_string(table.model));
  return g;
}

int main(int argc, char **argv) {
  const char *path = getenv("GPUSLICE_NVML_LIBRARY");
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--nvml") == 0 && i + 1 < argc) {
      path = argv[++i];
    } else {
      fprintf(stderr, "usage: nvml_record [--nvml LIBRARY] > fixture.json\n");
      return 1;
    }
  }
  gs__nvml_t nvml;
  gs_error_t err;
  int rc = gs__nvml_open(&nvml, path, &err);
  if (rc != GS_OK) {
    fprintf(stderr, "nvml_record: %s\n", err.msg);
    return rc == GS_ENODEV ? 77 : 1;
  }
  unsigned n = 0;
  nvmlReturn_t r = nvml.DeviceGetCount(&n);
  if (r != NVML_SUCCESS) {
    fprintf(stderr, "nvml_record: nvmlDeviceGetCount: %s\n",
            gs__nvml_strerror(&nvml, r));
    gs__nvml_close(&nvml);
    return 1;
  }
  char when[32];
  time_t now = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  json_t *out = json_pack("{s:s, s:s, s:s, s:s}", "format", FIXTURE_FORMAT,
                          "recorded_by", "tests/gpu/nvml_record", "recorded_at",
                          when, "nvml_library", nvml.path);
  system_versions(&nvml, out);
  json_t *gpus = json_array();
  for (unsigned i = 0; i < n; i++)
    json_array_append_new(gpus, record_gpu(&nvml, i));
  json_object_set_new(out, "gpus", gpus);
  gs__nvml_close(&nvml);
  rc = json_dumpf(out, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
  fputc('\n', stdout);
  json_decref(out);
  return rc == 0 && fflush(stdout) == 0 ? 0 : 1;
}
