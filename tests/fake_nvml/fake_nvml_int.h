/* TEST-ONLY fake NVML (see fake_nvml.c): the in-memory model of the fake
 * GPUs shared by fake_nvml.c (devices, profiles, init, state file) and
 * fake_nvml_instances.c (GPU and compute instances, MIG devices). */
#ifndef FAKE_NVML_INT_H
#define FAKE_NVML_INT_H

#include <stdint.h>

#include "gpu/nvml_shim.h" /* NVML's types, nothing else */

#ifdef FAKE_NVML_LEGACY
#define SYM(current, older) older
#else
#define SYM(current, older) current
#endif
#define EXPORT __attribute__((visibility("default")))

#define MAX_GPUS 8
#define MAX_GI 8 /* GI IDs 1..MAX_GI */
#define MAX_CI 8 /* CI IDs 0..MAX_CI-1 */
#define NO_ID 0xFFFFFFFFu

/* One GI profile: NVML index, profile ID, compute slices, memory slices,
 * max count, legal starts, media extensions. */
typedef struct geo_s {
  unsigned index, id, g, mem, max;
  uint32_t starts;
  int me;
} geo_t;

typedef struct geometry_s {
  const geo_t *geo;
  unsigned n_geo, compute_slices, memory_slices;
} geometry_t;

/* What one model's profile gets: name, GiB x 100, SMs, CE, DEC, JPEG, OFA. */
typedef struct prof_s {
  const char *name;
  unsigned gib100, sms, ce, dec, jpeg, ofa;
} prof_t;

typedef struct model_s {
  const char *key, *product;
  uint32_t pci;
  unsigned long long total_mib;
  int ampere; /* MIG mode changes wait for a GPU reset */
  const geometry_t *geometry;
  const prof_t *prof; /* in geometry order */
} model_t;

typedef struct fci_s {
  int used;
  unsigned id, prof, start, serial;
} fci_t;

typedef struct fgi_s {
  int used;
  unsigned id, start, serial;
  const geo_t *geo;
  fci_t ci[MAX_CI];
} fgi_t;

typedef struct fgpu_s {
  const model_t *m;
  unsigned cur, pending;
  fgi_t gi[MAX_GI];
  unsigned busy_pid[MAX_GI + 1]; /* by GI ID; 0 = idle */
} fgpu_t;

typedef struct fake_s {
  unsigned refs, n_gpu, serial, creates, fail_at;
  fgpu_t gpu[MAX_GPUS];
  char state[4096];
  unsigned long long state_dev, state_ino; /* the file version in memory */
  int struct_v2_only; /* FAKE_NVML_STRUCT_V2: a driver without v3 structs */
  int no_permission;  /* FAKE_NVML_NO_PERMISSION: a non-root caller */
  int device_fd;      /* FAKE_NVML_DEVICE_DIR's file, open while initialized */
} fake_t;

extern fake_t fk;

struct nvmlDevice_st {
  unsigned gpu, gi, ci; /* gi == NO_ID: the whole GPU */
};
struct nvmlGpuInstance_st {
  unsigned gpu, id;
};
struct nvmlComputeInstance_st {
  unsigned gpu, gi, id;
};

/* Handles are addresses in these pools, so that stale or foreign ones are
 * recognised. */
extern struct nvmlDevice_st h_gpu[MAX_GPUS];
extern struct nvmlDevice_st h_mig[MAX_GPUS][MAX_GI + 1][MAX_CI];
extern struct nvmlGpuInstance_st h_gi[MAX_GPUS][MAX_GI + 1];
extern struct nvmlComputeInstance_st h_ci[MAX_GPUS][MAX_GI + 1][MAX_CI];

const prof_t *prof_of(const model_t *m, const geo_t *geo);
const geo_t *geo_by_id(const model_t *m, unsigned id);
fgi_t *gi_find(fgpu_t *g, unsigned id);
fci_t *ci_find(fgi_t *gi, unsigned id);
fci_t *ci_first(fgi_t *gi);
unsigned gi_count(fgi_t *gi_arr);
unsigned ci_count(fgi_t *gi);
void state_save(void);
/* Reloads the GPUs when another process replaced the state file. */
void state_sync(void);

fgpu_t *gpu_of(nvmlDevice_t dev);
fgi_t *gi_of(nvmlGpuInstance_t h, fgpu_t **g);
fci_t *ci_of(nvmlComputeInstance_t h, fgpu_t **g, fgi_t **gi);
fci_t *mig_of(nvmlDevice_t dev, fgpu_t **g, fgi_t **gi);
nvmlGpuInstance_t gi_handle(unsigned gpu, unsigned id);
nvmlComputeInstance_t ci_handle(unsigned gpu, unsigned gi, unsigned id);

/* FAKE_NVML_EVENTS (fake_nvml_events.c): whether GPU gpu is lost. */
int fake_gpu_lost(unsigned gpu);

/* ---- FAKE_NVML_FIXTURE: GPUs recorded on hardware (fake_nvml_fixture.c) */
/* Reads the fixture's GPUs: 0, or -1 with a message on stderr. */
int fixture_load(const char *path);
/* Puts them into fk.gpu; returns how many. */
unsigned fixture_gpus(void);
/* The fixture's model saved in a state file under `key`, or NULL. */
const model_t *fixture_model(const char *key, size_t len);
/* Replays: each returns 1 with NVML's recorded answer in *r (and the
 * outputs) when the GPU comes from a fixture, 0 when the fake's own model
 * answers. */
int fixture_uuid(const model_t *m, const char **uuid);
int fixture_gi_profile(const model_t *m, unsigned index,
                       nvmlGpuInstanceProfileInfo_v3_t *v3, nvmlReturn_t *r);
int fixture_placements(const model_t *m, unsigned id,
                       nvmlGpuInstancePlacement_t *out, unsigned *count,
                       nvmlReturn_t *r);
int fixture_capacity(fgpu_t *g, unsigned id, unsigned *count, nvmlReturn_t *r);
int fixture_ci_profile(const model_t *m, unsigned gi_profile_id, unsigned index,
                       nvmlComputeInstanceProfileInfo_v3_t *v3,
                       nvmlReturn_t *r);
int fixture_ci_placements(const model_t *m, unsigned gi_profile_id,
                          unsigned ci_profile_id,
                          nvmlComputeInstancePlacement_t *out, unsigned *count,
                          nvmlReturn_t *r);

#endif
