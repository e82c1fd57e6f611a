/* ======================================================================
 * TEST-ONLY FAKE of libnvidia-ml.so.1. It is never shipped, never
 * installed and never loaded unless a test points gpuslice at it. It
 * stands in for the NVIDIA driver on machines without a GPU so that the
 * `mig` backend can be exercised end to end.
 * ======================================================================
 *
 * It models one or more MIG GPUs in memory and enforces the rules the
 * driver enforces (NVIDIA's MIG User Guide): legal placements per
 * profile, no overlapping memory slices, max instance counts, the
 * compute-slice total, IN_USE when destroying a GPU instance that still
 * has compute instances or processes, INSUFFICIENT_RESOURCES when an
 * instance cannot be placed, lowest-free instance IDs, reset-pending MIG
 * mode changes on Ampere and immediate ones on Hopper.
 *
 * Environment (read at the first nvmlInit of a process):
 *   FAKE_NVML_CONFIG=h100-80gb,a100-40gb:off   GPUs (":off" = MIG off);
 *       models: h100-80gb a100-40gb a100-80gb h200 a30, and l4 (no MIG:
 *       no profiles, NOT_SUPPORTED for MIG mode); default h100-80gb
 *   FAKE_NVML_PROCS=0:PID[:MIB[:SM]],1:PID   compute processes on GPUs whose
 *       MIG mode is off, as NVML lists them on the GPU (default 512 MiB),
 *       and their SM utilisation in percent for
 *       nvmlDeviceGetProcessUtilization (default 0: no sample)
 *   FAKE_NVML_STATE=<file>   load the GPUs from it when present, save
 *       them after every change and reload them when another process has
 *       changed them, so that state outlives and spans processes
 *   FAKE_NVML_BUSY=gi:3[,gpu1:gi:2][=PID]   a process (default: the caller's
 *       pid) runs on that GPU instance (GPU 0 unless gpuN: is given)
 *   FAKE_NVML_FAIL_AFTER=N   the Nth create call (GPU or compute instance)
 *       of this process fails with NVML_ERROR_UNKNOWN
 *   FAKE_NVML_STRUCT_V2=1   profile queries refuse the v3 structs (R470-era
 *       drivers), as NVML_ERROR_ARGUMENT_VERSION_MISMATCH
 *   FAKE_NVML_NO_PERMISSION=1   placement queries and every change fail
 *       with NVML_ERROR_NO_PERMISSION, as for a caller who is not root
 *   FAKE_NVML_FIXTURE=<file.json>   the GPUs recorded by tests/gpu/nvml_record
 *       instead of FAKE_NVML_CONFIG; read calls replay the recording
 *       (fake_nvml_fixture.c); FAKE_NVML_FIXTURE_MIG_ON=1 reports MIG on
 *   FAKE_NVML_DEVICE_DIR=<dir>   as the real library holds /dev/nvidiactl
 *       while initialized (not close-on-exec), nvmlInit opens
 *       <dir>/nvidiactl-PID and the last nvmlShutdown closes it
 *   FAKE_NVML_EVENTS=<file>   injected XID events and lost GPUs, read
 *       again on every call (fake_nvml_events.c)
 * Build variants: -DFAKE_NVML_LEGACY exports only the older symbol names
 * (v1 profile queries, nvmlInit, ...); -DFAKE_NVML_NO_PLACEMENT omits
 * nvmlDeviceCreateGpuInstanceWithPlacement. The profile data below is
 * transcribed from the reference, independently of src/catalog. The GPU
 * and compute instances live in fake_nvml_instances.c. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fake_nvml_int.h"

/* ---- profile tables ---------------------------------------------------- */

static const geo_t geo_7x8[] = {
    {0, 19, 1, 1, 7, 0x7f, 0}, {7, 20, 1, 1, 1, 0x7f, 1},
    {9, 15, 1, 2, 4, 0x55, 0}, {1, 14, 2, 2, 3, 0x15, 0},
    {2, 9, 3, 4, 2, 0x11, 0},  {3, 5, 4, 4, 1, 0x01, 0},
    {4, 0, 7, 8, 1, 0x01, 0},
};
static const geo_t geo_4x4[] = {
    {0, 14, 1, 1, 4, 0x0f, 0}, {7, 21, 1, 1, 1, 0x0f, 1},
    {1, 5, 2, 2, 2, 0x05, 0},  {8, 6, 2, 2, 1, 0x05, 1},
    {3, 0, 4, 4, 1, 0x01, 0},
};
static const geometry_t g7x8 = {geo_7x8, 7, 7, 8};
static const geometry_t g4x4 = {geo_4x4, 5, 4, 4};
static const geometry_t gnone = {geo_7x8, 0, 0, 0}; /* a GPU without MIG */

/* Names, GiB and SMs from the reference; engines: H100/H200 CE
 * 1/1/1/2/3/4/8, DEC 1/1/1/2/3/4/7, JPEG = DEC, OFA on +me and 7g; A100
 * CE 1/1/1/2/3/4/7, DEC 0/1/1/1/2/2/5, +me adds a JPEG and an OFA. */
static const prof_t h100_80[] = {
    {"1g.10gb", 975, 16, 1, 1, 1, 0},   {"1g.10gb+me", 975, 16, 1, 1, 1, 1},
    {"1g.20gb", 1962, 26, 1, 1, 1, 0},  {"2g.20gb", 1962, 32, 2, 2, 2, 0},
    {"3g.40gb", 3950, 60, 3, 3, 3, 0},  {"4g.40gb", 3950, 64, 4, 4, 4, 0},
    {"7g.80gb", 7925, 132, 8, 7, 7, 1},
};
static const prof_t a100_40[] = {
    {"1g.5gb", 475, 14, 1, 0, 0, 0},   {"1g.5gb+me", 475, 14, 1, 1, 1, 1},
    {"1g.10gb", 962, 14, 1, 1, 0, 0},  {"2g.10gb", 962, 28, 2, 1, 0, 0},
    {"3g.20gb", 1950, 42, 3, 2, 0, 0}, {"4g.20gb", 1950, 56, 4, 2, 0, 0},
    {"7g.40gb", 3925, 98, 7, 5, 0, 0},
};
static const prof_t a100_80[] = {
    {"1g.10gb", 950, 14, 1, 0, 0, 0},  {"1g.10gb+me", 950, 14, 1, 1, 1, 1},
    {"1g.20gb", 1950, 14, 1, 1, 0, 0}, {"2g.20gb", 1950, 28, 2, 1, 0, 0},
    {"3g.40gb", 3925, 42, 3, 2, 0, 0}, {"4g.40gb", 3925, 56, 4, 2, 0, 0},
    {"7g.80gb", 7925, 98, 7, 5, 0, 0}, /* the reference says ~79 GiB */
};
static const prof_t h200[] = {
    {"1g.18gb", 1600, 16, 1, 1, 1, 0},    {"1g.18gb+me", 1600, 16, 1, 1, 1, 1},
    {"1g.35gb", 3250, 26, 1, 1, 1, 0},    {"2g.35gb", 3250, 32, 2, 2, 2, 0},
    {"3g.71gb", 6975, 60, 3, 3, 3, 0},    {"4g.71gb", 6975, 64, 4, 4, 4, 0},
    {"7g.141gb", 14000, 132, 8, 7, 7, 1},
};
/* The reference gives no A30 engine counts: these are the fake's own. */
static const prof_t a30[] = {
    {"1g.6gb", 581, 14, 1, 0, 0, 0},   {"1g.6gb+me", 581, 14, 1, 1, 1, 1},
    {"2g.12gb", 1169, 28, 2, 2, 0, 0}, {"2g.12gb+me", 1169, 28, 2, 2, 1, 1},
    {"4g.24gb", 2350, 56, 4, 4, 1, 1},
};

static const model_t models[] = {
    {"h100-80gb", "NVIDIA H100 80GB HBM3", 0x233010DE, 81559, 0, &g7x8,
     h100_80},
    {"a100-40gb", "NVIDIA A100-SXM4-40GB", 0x20B010DE, 40960, 1, &g7x8,
     a100_40},
    {"a100-80gb", "NVIDIA A100-SXM4-80GB", 0x20B210DE, 81920, 1, &g7x8,
     a100_80},
    {"h200", "NVIDIA H200", 0x233510DE, 143771, 0, &g7x8, h200},
    {"a30", "NVIDIA A30", 0x20B710DE, 24576, 1, &g4x4, a30},
    {"l4", "NVIDIA L4", 0x27B810DE, 23034, 0, &gnone, NULL},
};
#define N_MODELS (sizeof models / sizeof models[0])

/* ---- the model --------------------------------------------------------- */

fake_t fk;
struct nvmlDevice_st h_gpu[MAX_GPUS];
struct nvmlDevice_st h_mig[MAX_GPUS][MAX_GI + 1][MAX_CI];
struct nvmlGpuInstance_st h_gi[MAX_GPUS][MAX_GI + 1];
struct nvmlComputeInstance_st h_ci[MAX_GPUS][MAX_GI + 1][MAX_CI];

static const model_t *model_named(const char *key, size_t len) {
  for (size_t i = 0; i < N_MODELS; i++)
    if (strlen(models[i].key) == len && strncmp(models[i].key, key, len) == 0)
      return &models[i];
  return fixture_model(key, len);
}

const prof_t *prof_of(const model_t *m, const geo_t *geo) {
  return &m->prof[geo - m->geometry->geo];
}

const geo_t *geo_by_id(const model_t *m, unsigned id) {
  for (unsigned i = 0; i < m->geometry->n_geo; i++)
    if (m->geometry->geo[i].id == id)
      return &m->geometry->geo[i];
  return NULL;
}

fgi_t *gi_find(fgpu_t *g, unsigned id) {
  for (unsigned i = 0; i < MAX_GI; i++)
    if (g->gi[i].used && g->gi[i].id == id)
      return &g->gi[i];
  return NULL;
}

fci_t *ci_find(fgi_t *gi, unsigned id) {
  for (unsigned i = 0; i < MAX_CI; i++)
    if (gi->ci[i].used && gi->ci[i].id == id)
      return &gi->ci[i];
  return NULL;
}

/* The CI a busy GI's process runs on: its lowest CI ID, or none. */
fci_t *ci_first(fgi_t *gi) {
  fci_t *best = NULL;
  for (unsigned i = 0; i < MAX_CI; i++)
    if (gi->ci[i].used && (!best || gi->ci[i].id < best->id))
      best = &gi->ci[i];
  return best;
}

unsigned gi_count(fgi_t *gi_arr) {
  unsigned n = 0;
  for (unsigned i = 0; i < MAX_GI; i++)
    n += gi_arr[i].used != 0;
  return n;
}

unsigned ci_count(fgi_t *gi) {
  unsigned n = 0;
  for (unsigned i = 0; i < MAX_CI; i++)
    n += gi->ci[i].used != 0;
  return n;
}

/* ---- state file -------------------------------------------------------- */

static void state_seen(void) {
  struct stat st;
  if (stat(fk.state, &st) == 0) {
    fk.state_dev = st.st_dev;
    fk.state_ino = st.st_ino;
  }
}

void state_save(void) {
  if (!fk.state[0])
    return;
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", fk.state);
  FILE *f = fopen(tmp, "w");
  if (!f)
    return;
  fprintf(f, "fake-nvml 1 %u\n", fk.serial);
  for (unsigned d = 0; d < fk.n_gpu; d++) {
    fgpu_t *g = &fk.gpu[d];
    fprintf(f, "gpu %s %u %u\n", g->m->key, g->cur, g->pending);
    for (unsigned i = 0; i < MAX_GI; i++) {
      fgi_t *gi = &g->gi[i];
      if (!gi->used)
        continue;
      fprintf(f, "gi %u %u %u %u\n", gi->id, gi->geo->id, gi->start,
              gi->serial);
      for (unsigned c = 0; c < MAX_CI; c++)
        if (gi->ci[c].used)
          fprintf(f, "ci %u %u %u %u\n", gi->ci[c].id, gi->ci[c].prof,
                  gi->ci[c].start, gi->ci[c].serial);
    }
  }
  if (fclose(f) == 0 && rename(tmp, fk.state) == 0)
    state_seen();
}

static int state_load(void) {
  FILE *f = fopen(fk.state, "r");
  if (!f)
    return 0;
  char line[256], key[32];
  unsigned a, b, c, d;
  fgpu_t *g = NULL;
  fgi_t *gi = NULL;
  int ok = fgets(line, sizeof line, f) &&
           sscanf(line, "fake-nvml 1 %u", &fk.serial) == 1;
  while (ok && fgets(line, sizeof line, f)) {
    if (sscanf(line, "gpu %31s %u %u", key, &a, &b) == 3 &&
        fk.n_gpu < MAX_GPUS) {
      g = &fk.gpu[fk.n_gpu++];
      g->m = model_named(key, strlen(key));
      g->cur = a;
      g->pending = b;
      gi = NULL;
      ok = g->m != NULL;
    } else if (sscanf(line, "gi %u %u %u %u", &a, &b, &c, &d) == 4 && g &&
               gi_count(g->gi) < MAX_GI) {
      unsigned slot = 0;
      while (g->gi[slot].used)
        slot++;
      gi = &g->gi[slot];
      *gi = (fgi_t){1, a, c, d, geo_by_id(g->m, b), {{0}}};
      ok = gi->geo != NULL && a >= 1 && a <= MAX_GI;
    } else if (sscanf(line, "ci %u %u %u %u", &a, &b, &c, &d) == 4 && gi &&
               a < MAX_CI) {
      gi->ci[a] = (fci_t){1, a, b, c, d};
    } else {
      ok = 0;
    }
  }
  fclose(f);
  if (!ok)
    fprintf(stderr, "fake_nvml: cannot read %s\n", fk.state);
  state_seen();
  return ok ? 1 : -1;
}

/* ---- init and the environment ------------------------------------------ */

static int config_gpus(const char *cfg) {
  for (const char *p = cfg; *p && fk.n_gpu < MAX_GPUS;) {
    size_t len = strcspn(p, ",:");
    const model_t *m = model_named(p, len);
    if (!m) {
      fprintf(stderr, "fake_nvml: unknown model '%.*s'\n", (int)len, p);
      return -1;
    }
    fgpu_t *g = &fk.gpu[fk.n_gpu++];
    g->m = m;
    g->cur = g->pending =
        m->geometry->n_geo ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    p += len;
    if (strncmp(p, ":off", 4) == 0) {
      g->cur = g->pending = NVML_DEVICE_MIG_DISABLE;
      p += 4;
    }
    if (*p == ',')
      p++;
  }
  return fk.n_gpu ? 0 : -1;
}

static void config_busy(const char *spec) {
  for (const char *p = spec; p && *p;) {
    unsigned gpu = 0, id = 0, pid = (unsigned)getpid();
    int n = 0;
    if (sscanf(p, "gpu%u:gi:%u%n", &gpu, &id, &n) != 2)
      sscanf(p, "gi:%u%n", &id, &n);
    p += n;
    if (*p == '=')
      pid = (unsigned)strtoul(p + 1, (char **)&p, 10);
    if (gpu < MAX_GPUS && id >= 1 && id <= MAX_GI)
      fk.gpu[gpu].busy_pid[id] = pid;
    p = strchr(p, ',');
    p = p ? p + 1 : NULL;
  }
}

/* Each save replaces the file (a new inode), so a different inode means
 * another process changed the GPUs. */
void state_sync(void) {
  struct stat st;
  if (!fk.refs || !fk.state[0] || stat(fk.state, &st) != 0 ||
      ((unsigned long long)st.st_dev == fk.state_dev &&
       (unsigned long long)st.st_ino == fk.state_ino))
    return;
  fk.n_gpu = 0;
  memset(fk.gpu, 0, sizeof fk.gpu);
  if (state_load() < 0)
    fk.n_gpu = 0;
  config_busy(getenv("FAKE_NVML_BUSY"));
}

EXPORT nvmlReturn_t SYM(nvmlInit_v2, nvmlInit)(void) {
  if (fk.refs++ > 0)
    return NVML_SUCCESS;
  memset(&fk, 0, sizeof fk);
  fk.refs = 1;
  const char *state = getenv("FAKE_NVML_STATE");
  const char *cfg = getenv("FAKE_NVML_CONFIG");
  const char *fail = getenv("FAKE_NVML_FAIL_AFTER");
  const char *fixture = getenv("FAKE_NVML_FIXTURE");
  if (state)
    snprintf(fk.state, sizeof fk.state, "%s", state);
  /* A fixture's models must exist before a state file names them. */
  if (fixture && *fixture && fixture_load(fixture) != 0) {
    fk.refs = 0;
    return NVML_ERROR_UNKNOWN;
  }
  int loaded = state ? state_load() : 0;
  if (!loaded && fixture && *fixture)
    loaded = fixture_gpus() > 0;
  if (loaded < 0 || (!loaded && config_gpus(cfg && *cfg ? cfg : "h100-80gb"))) {
    fk.refs = 0;
    return NVML_ERROR_UNKNOWN;
  }
  config_busy(getenv("FAKE_NVML_BUSY"));
  fk.fail_at = fail ? (unsigned)atoi(fail) : 0;
  fk.struct_v2_only = getenv("FAKE_NVML_STRUCT_V2") != NULL;
  fk.no_permission = getenv("FAKE_NVML_NO_PERMISSION") != NULL;
  const char *devdir = getenv("FAKE_NVML_DEVICE_DIR");
  fk.device_fd = -1;
  if (devdir && *devdir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/nvidiactl-%ld", devdir, (long)getpid());
    fk.device_fd = open(path, O_RDWR | O_CREAT, 0600);
  }
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
  if (fk.refs == 0)
    return NVML_ERROR_UNINITIALIZED;
  if (--fk.refs == 0 && fk.device_fd >= 0) {
    close(fk.device_fd);
    fk.device_fd = -1;
  }
  return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
  switch (r) {
  case NVML_SUCCESS:
    return "Success";
  case NVML_ERROR_UNINITIALIZED:
    return "Uninitialized";
  case NVML_ERROR_INVALID_ARGUMENT:
    return "Invalid Argument";
  case NVML_ERROR_NOT_SUPPORTED:
    return "Not Supported";
  case NVML_ERROR_NO_PERMISSION:
    return "Insufficient Permissions";
  case NVML_ERROR_NOT_FOUND:
    return "Not Found";
  case NVML_ERROR_INSUFFICIENT_SIZE:
    return "Insufficient Size";
  case NVML_ERROR_RESET_REQUIRED:
    return "GPU requires restart";
  case NVML_ERROR_IN_USE:
    return "In use by another client";
  case NVML_ERROR_INSUFFICIENT_RESOURCES:
    return "Insufficient Resources";
  case NVML_ERROR_ARGUMENT_VERSION_MISMATCH:
    return "Argument version mismatch";
  default:
    return "Unknown Error";
  }
}

/* ---- handles ----------------------------------------------------------- */

#define IN_POOL(p, pool)                                                       \
  ((uintptr_t)(p) >= (uintptr_t)(pool) &&                                      \
   (uintptr_t)(p) < (uintptr_t)(pool) + sizeof(pool))

/* A GPU (not MIG device) handle, or NULL. */
fgpu_t *gpu_of(nvmlDevice_t dev) {
  state_sync();
  if (!fk.refs || !IN_POOL(dev, h_gpu) || dev->gpu >= fk.n_gpu)
    return NULL;
  return &fk.gpu[dev->gpu];
}

fgi_t *gi_of(nvmlGpuInstance_t h, fgpu_t **g) {
  state_sync();
  if (!fk.refs || !IN_POOL(h, h_gi) || h->gpu >= fk.n_gpu)
    return NULL;
  *g = &fk.gpu[h->gpu];
  return gi_find(*g, h->id);
}

fci_t *ci_of(nvmlComputeInstance_t h, fgpu_t **g, fgi_t **gi) {
  state_sync();
  if (!fk.refs || !IN_POOL(h, h_ci) || h->gpu >= fk.n_gpu)
    return NULL;
  *g = &fk.gpu[h->gpu];
  *gi = gi_find(*g, h->gi);
  return *gi ? ci_find(*gi, h->id) : NULL;
}

/* A MIG device handle whose compute instance exists, or NULL. */
fci_t *mig_of(nvmlDevice_t dev, fgpu_t **g, fgi_t **gi) {
  state_sync();
  if (!fk.refs || !IN_POOL(dev, h_mig) || dev->gpu >= fk.n_gpu)
    return NULL;
  *g = &fk.gpu[dev->gpu];
  *gi = gi_find(*g, dev->gi);
  return *gi ? ci_find(*gi, dev->ci) : NULL;
}

nvmlGpuInstance_t gi_handle(unsigned gpu, unsigned id) {
  h_gi[gpu][id] = (struct nvmlGpuInstance_st){gpu, id};
  return &h_gi[gpu][id];
}

nvmlComputeInstance_t ci_handle(unsigned gpu, unsigned gi, unsigned id) {
  h_ci[gpu][gi][id] = (struct nvmlComputeInstance_st){gpu, gi, id};
  return &h_ci[gpu][gi][id];
}

/* ---- devices ----------------------------------------------------------- */

EXPORT nvmlReturn_t SYM(nvmlDeviceGetCount_v2,
                        nvmlDeviceGetCount)(unsigned *n) {
  if (!fk.refs)
    return NVML_ERROR_UNINITIALIZED;
  state_sync();
  *n = fk.n_gpu;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t SYM(nvmlDeviceGetHandleByIndex_v2,
                        nvmlDeviceGetHandleByIndex)(unsigned i,
                                                    nvmlDevice_t *dev) {
  if (!fk.refs)
    return NVML_ERROR_UNINITIALIZED;
  if (i >= fk.n_gpu || !dev)
    return NVML_ERROR_INVALID_ARGUMENT;
  h_gpu[i] = (struct nvmlDevice_st){i, NO_ID, NO_ID};
  *dev = &h_gpu[i];
  return NVML_SUCCESS;
}

static nvmlReturn_t put_string(char *buf, unsigned len, const char *s) {
  if (!buf || strlen(s) + 1 > len)
    return NVML_ERROR_INSUFFICIENT_SIZE;
  memcpy(buf, s, strlen(s) + 1);
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t dev, char *buf,
                                      unsigned len) {
  fgpu_t *g;
  fgi_t *gi;
  char name[160];
  if (gpu_of(dev))
    return put_string(buf, len, gpu_of(dev)->m->product);
  if (!mig_of(dev, &g, &gi))
    return NVML_ERROR_INVALID_ARGUMENT;
  snprintf(name, sizeof name, "%s MIG %s", g->m->product,
           prof_of(g->m, gi->geo)->name);
  return put_string(buf, len, name);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t dev, char *buf,
                                      unsigned len) {
  fgpu_t *g;
  fgi_t *gi;
  fci_t *ci;
  char uuid[96];
  const char *recorded;
  if ((g = gpu_of(dev)) != NULL && fixture_uuid(g->m, &recorded)) {
    snprintf(uuid, sizeof uuid, "%s", recorded);
  } else if (g) {
    snprintf(uuid, sizeof uuid, "GPU-fa4e%04x-0000-4000-8000-%012x", dev->gpu,
             (unsigned)(g->m->pci >> 16));
  } else if ((ci = mig_of(dev, &g, &gi)) != NULL) {
    snprintf(uuid, sizeof uuid, "MIG-fa4e%04x-%04x-4%03x-8%03x-%012x", dev->gpu,
             gi->id, ci->id, gi->serial & 0xfff, ci->serial);
  } else {
    return NVML_ERROR_INVALID_ARGUMENT;
  }
  return put_string(buf, len, uuid);
}

EXPORT nvmlReturn_t SYM(nvmlDeviceGetPciInfo_v3,
                        nvmlDeviceGetPciInfo_v2)(nvmlDevice_t dev,
                                                 nvmlPciInfo_t *pci) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !pci)
    return NVML_ERROR_INVALID_ARGUMENT;
  memset(pci, 0, sizeof *pci);
  pci->bus = 0x10 + dev->gpu;
  pci->pciDeviceId = g->m->pci;
  snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
  snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0",
           pci->bus);
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t dev,
                                            nvmlMemory_t *mem) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !mem)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (fake_gpu_lost(dev->gpu))
    return NVML_ERROR_GPU_IS_LOST;
  mem->total = g->m->total_mib << 20;
  mem->used = 0;
  mem->free = mem->total;
  return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t dev, unsigned *cur,
                                         unsigned *pending) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !cur || !pending)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (!g->m->geometry->n_geo)
    return NVML_ERROR_NOT_SUPPORTED;
  *cur = g->cur;
  *pending = g->pending;
  return NVML_SUCCESS;
}

/* Ampere keeps a change pending until a GPU reset; Hopper switches now.
 * Turning MIG off while GPU instances exist is refused. */
EXPORT nvmlReturn_t nvmlDeviceSetMigMode(nvmlDevice_t dev, unsigned mode,
                                         nvmlReturn_t *activation) {
  fgpu_t *g = gpu_of(dev);
  if (!g || !activation || mode > NVML_DEVICE_MIG_ENABLE)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (!g->m->geometry->n_geo)
    return NVML_ERROR_NOT_SUPPORTED;
  if (fk.no_permission)
    return NVML_ERROR_NO_PERMISSION;
  if (mode == NVML_DEVICE_MIG_DISABLE && gi_count(g->gi) > 0)
    return NVML_ERROR_IN_USE;
  g->pending = mode;
  if (!g->m->ampere)
    g->cur = mode;
  *activation = g->cur == g->pending ? NVML_SUCCESS : NVML_ERROR_RESET_REQUIRED;
  state_save();
  return NVML_SUCCESS;
}

/* ---- GPU instance profiles --------------------------------------------- */

static const geo_t *geo_by_index(const model_t *m, unsigned index) {
  for (unsigned i = 0; i < m->geometry->n_geo; i++)
    if (m->geometry->geo[i].index == index)
      return &m->geometry->geo[i];
  return NULL;
}

static nvmlReturn_t gi_profile(nvmlDevice_t dev, unsigned index,
                               nvmlGpuInstanceProfileInfo_v3_t *v3) {
  fgpu_t *g = gpu_of(dev);
  if (!g || index >= NVML_GPU_INSTANCE_PROFILE_COUNT)
    return NVML_ERROR_INVALID_ARGUMENT;
  nvmlReturn_t recorded;
  if (fixture_gi_profile(g->m, index, v3, &recorded))
    return recorded;
  const geo_t *geo = geo_by_index(g->m, index);
  if (!geo)
    return NVML_ERROR_NOT_SUPPORTED;
  const prof_t *p = prof_of(g->m, geo);
  *v3 = (nvmlGpuInstanceProfileInfo_v3_t){0,
                                          geo->id,
                                          geo->g,
                                          geo->max,
                                          p->sms,
                                          p->ce,
                                          p->dec,
                                          0,
                                          p->jpeg,
                                          p->ofa,
                                          (p->gib100 * 1024ull + 50) / 100,
                                          "",
                                          0};
  snprintf(v3->name, sizeof v3->name, "MIG %s", p->name);
  return NVML_SUCCESS;
}

#ifdef FAKE_NVML_LEGACY
EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(
    nvmlDevice_t dev, unsigned index, nvmlGpuInstanceProfileInfo_t *info) {
  nvmlGpuInstanceProfileInfo_v3_t v3;
  nvmlReturn_t r =
      info ? gi_profile(dev, index, &v3) : NVML_ERROR_INVALID_ARGUMENT;
  if (r == NVML_SUCCESS)
    *info = (nvmlGpuInstanceProfileInfo_t){v3.id,
                                           1,
                                           v3.sliceCount,
                                           v3.instanceCount,
                                           v3.multiprocessorCount,
                                           v3.copyEngineCount,
                                           v3.decoderCount,
                                           v3.encoderCount,
                                           v3.jpegCount,
                                           v3.ofaCount,
                                           v3.memorySizeMB};
  return r;
}
#else
EXPORT nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfoV(
    nvmlDevice_t dev, unsigned index, nvmlGpuInstanceProfileInfo_v2_t *info) {
  nvmlGpuInstanceProfileInfo_v3_t v3;
  if (!info)
    return NVML_ERROR_INVALID_ARGUMENT;
  unsigned version = info->version;
  if (version != nvmlGpuInstanceProfileInfo_v2 &&
      (version != nvmlGpuInstanceProfileInfo_v3 || fk.struct_v2_only))
    return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
  nvmlReturn_t r = gi_profile(dev, index, &v3);
  if (r != NVML_SUCCESS)
    return r;
  if (version == nvmlGpuInstanceProfileInfo_v3) {
    v3.version = version;
    memcpy(info, &v3, sizeof v3);
    return r;
  }
  *info = (nvmlGpuInstanceProfileInfo_v2_t){version,
                                            v3.id,
                                            1,
                                            v3.sliceCount,
                                            v3.instanceCount,
                                            v3.multiprocessorCount,
                                            v3.copyEngineCount,
                                            v3.decoderCount,
                                            v3.encoderCount,
                                            v3.jpegCount,
                                            v3.ofaCount,
                                            v3.memorySizeMB,
                                            ""};
  memcpy(info->name, v3.name, sizeof info->name);
  return r;
}
#endif

EXPORT nvmlReturn_t SYM(nvmlDeviceGetGpuInstancePossiblePlacements_v2,
                        nvmlDeviceGetGpuInstancePossiblePlacements)(
    nvmlDevice_t dev, unsigned id, nvmlGpuInstancePlacement_t *out,
    unsigned *count) {
  fgpu_t *g = gpu_of(dev);
  const geo_t *geo = g ? geo_by_id(g->m, id) : NULL;
  nvmlReturn_t recorded;
  if (g && count && !fk.no_permission &&
      fixture_placements(g->m, id, out, count, &recorded))
    return recorded;
  if (!geo || !count)
    return NVML_ERROR_INVALID_ARGUMENT;
  if (fk.no_permission)
    return NVML_ERROR_NO_PERMISSION;
  unsigned n = 0;
  for (unsigned s = 0; s < 32; s++)
    if (geo->starts & (1u << s)) {
      if (out)
        out[n] = (nvmlGpuInstancePlacement_t){s, geo->mem};
      n++;
    }
  *count = n;
  return NVML_SUCCESS;
}
