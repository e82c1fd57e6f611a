/* gpuslice demo's plan: which engine serves (the GPU's CUDA provider where
 * the backend is a GPU's and the provider loads, else the CPU), which
 * instances each phase serves on (made by the demo from the catalog, or on
 * MIG the ones that already exist, never changed), and the model
 * repository serve gets (a private one asking for KIND_GPU on a GPU). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "demo.h"
#include "gpuslice/engine.h"

static void set_phase(demo_phase_t *p, const char *profile, unsigned count) {
  memset(p, 0, sizeof *p);
  snprintf(p->profile, sizeof p->profile, "%s", profile);
  p->count = count;
  snprintf(p->label, sizeof p->label, "%u x %s", count, profile);
}

/* The smallest profile without +me that the device can hold (the catalog
 * lists fewest compute slices first) and the one spanning every compute
 * slice (7g on a 7-slice GPU). NULL when there is none. */
static const gs_gi_profile_t *smallest_profile(const gs_catalog_t *c) {
  for (unsigned i = 0; i < c->n_gi; i++)
    if (!c->gi[i].media_extensions && c->gi[i].max_count > 0)
      return &c->gi[i];
  return NULL;
}

static const gs_gi_profile_t *whole_profile(const gs_catalog_t *c) {
  const gs_gi_profile_t *best = NULL;
  for (unsigned i = 0; i < c->n_gi; i++)
    if (!c->gi[i].media_extensions && c->gi[i].max_count > 0 &&
        (!best || c->gi[i].compute_slices > best->compute_slices))
      best = &c->gi[i];
  return best;
}

/* A backend that makes instances (soft, host): device 0's catalog. */
static int plan_create(demo_t *d, const gs_device_t *dev) {
  const gs_gi_profile_t *small = smallest_profile(&dev->catalog);
  const gs_gi_profile_t *whole = whole_profile(&dev->catalog);
  if (!small) {
    fprintf(stderr, "gpuslice: demo: device 0 (%s) has no profile to use\n",
            dev->catalog.model);
    return CLI_FAIL;
  }
  unsigned n = d->n_instances ? d->n_instances : small->max_count;
  if (n > small->max_count) {
    fprintf(stderr,
            "gpuslice: demo: --instances %u: device 0 (%s) holds "
            "at most %u x %s\n",
            n, dev->catalog.model, small->max_count, small->name);
    return CLI_USAGE;
  }
  d->n_instances = n;
  set_phase(&d->phases[0], small->name, 1);
  set_phase(&d->phases[1], small->name, n);
  d->n_phases = 2;
  if (d->engine == DEMO_ENGINE_GPU && whole && whole != small)
    set_phase(&d->phases[d->n_phases++], whole->name, 1);
  return CLI_OK;
}

/* What to run to make the smallest instances, when MIG has none. */
static void mig_advice(const gs_device_t *dev) {
  const gs_gi_profile_t *p = smallest_profile(&dev->catalog);
  if (!p)
    return;
  fprintf(stderr, "  gpuslice --backend mig create");
  for (unsigned i = 0; i < p->max_count; i++)
    fprintf(stderr, " %s", p->name);
  fprintf(stderr, "\n  or: sudo nvidia-smi mig -i %u -cgi ", dev->index);
  for (unsigned i = 0; i < p->max_count; i++)
    fprintf(stderr, "%s%u", i ? "," : "", p->id);
  fprintf(stderr, " -C\n");
}

typedef struct found_s {
  unsigned dev, gi, slices, mem;
  const char *profile;
} found_t;

static void add_selection(demo_phase_t *p, const found_t *f) {
  size_t len = strlen(p->select);
  snprintf(p->select + len, sizeof p->select - len, "%s%u:%u", len ? "," : "",
           f->dev, f->gi);
}

/* Existing MIG instances (with a compute instance) of every device. */
static size_t find_existing(const gs_device_t *devs, unsigned n_dev,
                            found_t *out, size_t max, bool *whole) {
  size_t n = 0;
  for (unsigned d = 0; d < n_dev; d++)
    for (unsigned g = 0; g < devs[d].layout.n_gi && n < max; g++) {
      const gs_gi_t *gi = &devs[d].layout.gi[g];
      const gs_gi_profile_t *p =
          gs_catalog_gi(&devs[d].catalog, gi->profile_id);
      if (!p || gi->n_ci == 0)
        continue;
      out[n++] =
          (found_t){d, gi->id, p->compute_slices, p->memory_slices, p->name};
      whole[n - 1] = p->compute_slices == devs[d].catalog.compute_slices;
    }
  return n;
}

/* MIG on: the smallest profile that exists, 1 of them and all of them,
 * and a whole-GPU instance if one exists; nothing is made or destroyed. */
static int plan_existing(demo_t *d, const gs_device_t *devs, unsigned n_dev) {
  found_t f[DEMO_MAX_INSTANCES];
  bool whole[DEMO_MAX_INSTANCES];
  size_t n = find_existing(devs, n_dev, f, DEMO_MAX_INSTANCES, whole);
  size_t s = 0;
  for (size_t i = 1; i < n; i++)
    if (f[i].slices < f[s].slices ||
        (f[i].slices == f[s].slices && f[i].mem < f[s].mem))
      s = i;
  if (n == 0 || whole[s]) {
    fprintf(stderr,
            "gpuslice: demo: MIG mode is on and %s; the demo uses "
            "the MIG instances that exist and never changes them. Make the "
            "smallest instances (with their compute instances) first, e.g.\n",
            n ? "only whole-GPU instances exist" : "no instance exists");
    mig_advice(&devs[0]);
    return CLI_FAIL;
  }
  demo_phase_t *one = &d->phases[0], *all = &d->phases[1];
  set_phase(one, f[s].profile, 1);
  add_selection(one, &f[s]);
  unsigned count = 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(f[i].profile, f[s].profile) == 0)
      count++;
  if (d->n_instances && d->n_instances < count)
    count = d->n_instances;
  set_phase(all, f[s].profile, count);
  for (size_t i = 0, k = 0; i < n && k < count; i++)
    if (strcmp(f[i].profile, f[s].profile) == 0) {
      add_selection(all, &f[i]);
      k++;
    }
  d->n_instances = count;
  d->n_phases = count > 1 ? 2 : 1;
  if (count < 2)
    fprintf(stderr,
            "gpuslice: demo: only one %s instance exists: the N "
            "instance phase is left out\n",
            f[s].profile);
  for (size_t i = 0; i < n && d->engine == DEMO_ENGINE_GPU; i++)
    if (whole[i]) {
      set_phase(&d->phases[d->n_phases], f[i].profile, 1);
      add_selection(&d->phases[d->n_phases++], &f[i]);
      break;
    }
  return CLI_OK;
}

/* GPU when asked, or (auto) when the backend is a GPU's and the engine's
 * CUDA provider finds what it needs here. */
static int choose_engine(demo_t *d) {
  gs_error_t err = {0};
  char line[1024];
  bool cuda = gs_engine_cuda_describe(line, sizeof line, &err) == GS_OK;
  bool gpu_backend = strcmp(d->backend, "host") != 0;
  if (d->engine == DEMO_ENGINE_GPU && !gpu_backend)
    return cli_usage("demo",
                     "--engine gpu needs a GPU backend (mig or "
                     "soft), not %s",
                     d->backend);
  if (d->engine == DEMO_ENGINE_AUTO)
    d->engine = cuda && gpu_backend ? DEMO_ENGINE_GPU : DEMO_ENGINE_CPU;
  if (d->engine == DEMO_ENGINE_GPU && !cuda && !d->dry_run) {
    fprintf(stderr,
            "gpuslice: demo: --engine gpu: the GPU engine cannot "
            "run here: %s\n",
            err.msg);
    return CLI_FAIL;
  }
  snprintf(d->engine_why, sizeof d->engine_why, "%s", cuda ? line : err.msg);
  if (!d->model)
    d->model = d->engine == DEMO_ENGINE_GPU ? "resnet50" : "classifier";
  return CLI_OK;
}

int demo_plan(demo_t *d) {
  gs_error_t err;
  gs_backend_t *be;
  gs_device_t *devs;
  unsigned n_dev;
  if (cli_open_devices(d->cli, &be, &devs, &n_dev, &err) != GS_OK)
    return cli_fail("demo", &err);
  d->backend = be->ops->name; /* a static string: outlives be */
  int rc = n_dev ? choose_engine(d) : CLI_FAIL;
  if (n_dev == 0)
    fprintf(stderr, "gpuslice: demo: the %s backend has no device\n",
            d->backend);
  d->existing = strcmp(d->backend, "mig") == 0;
  if (rc == CLI_OK)
    rc = d->existing ? plan_existing(d, devs, n_dev) : plan_create(d, &devs[0]);
  free(devs);
  gs_backend_close(be);
  return rc;
}

void demo_print_plan(const demo_t *d, FILE *out) {
  fprintf(out, "backend: %s; engine: %s (%s)\nmodel: %s in %s\n", d->backend,
          d->engine == DEMO_ENGINE_GPU ? "gpu, KIND_GPU" : "cpu", d->engine_why,
          d->model, d->models);
  for (size_t i = 0; i < d->n_phases; i++)
    fprintf(out, "phase %zu: %s, %s%s\n", i + 1, d->phases[i].label,
            d->existing ? "existing MIG instances " : "made by the demo",
            d->phases[i].select);
  fprintf(out, "concurrency:");
  for (size_t i = 0; i < d->n_levels; i++)
    fprintf(out, "%s%u", i ? "," : " ", d->levels[i]);
  fprintf(out, "; %u ms windows; p99 budget %.0f ms\n", d->window_ms,
          d->budget_ms);
}

/* ---- the GPU model repository ------------------------------------------ */

#define GPU_QUEUE_DELAY_US 100

/* The model's own config with instance_group KIND_GPU, (when it names
 * none) precision fp16 and a 100 us queue delay (a batch of ResNet-50 on a
 * GPU runs in a few ms: the CPU config's delay would add up to itself to
 * every lone request); a ResNet-50 batching config when it has none. */
static int write_gpu_config(const char *src, const char *dst) {
  json_t *doc = json_load_file(src, JSON_REJECT_DUPLICATES, NULL);
  if (!doc && access(src, F_OK) == 0) {
    fprintf(stderr, "gpuslice: demo: %s is not valid JSON\n", src);
    return CLI_FAIL;
  }
  if (!doc)
    doc = json_pack("{s:i, s:{s:i, s:[i,i,i,i]}}", "max_batch_size", 64,
                    "dynamic_batching", "max_queue_delay_microseconds",
                    GPU_QUEUE_DELAY_US, "preferred_batch_size", 8, 16, 32, 64);
  json_t *db = json_object_get(doc, "dynamic_batching");
  if (json_is_object(db))
    json_object_set_new(db, "max_queue_delay_microseconds",
                        json_integer(GPU_QUEUE_DELAY_US));
  json_object_set_new(doc, "instance_group",
                      json_pack("[{s:s}]", "kind", "KIND_GPU"));
  if (!json_object_get(doc, "precision"))
    json_object_set_new(doc, "precision", json_string("fp16"));
  int rc = json_dump_file(doc, dst, JSON_INDENT(2)) == 0 ? CLI_OK : CLI_FAIL;
  json_decref(doc);
  if (rc != CLI_OK)
    fprintf(stderr, "gpuslice: demo: cannot write %s\n", dst);
  return rc;
}

/* Every entry of the model's directory but config.json, linked. */
static int link_versions(const char *src, const char *dst) {
  DIR *dir = opendir(src);
  if (!dir) {
    fprintf(stderr, "gpuslice: demo: %s: %s\n", src, strerror(errno));
    return CLI_FAIL;
  }
  int rc = CLI_OK;
  for (struct dirent *e; rc == CLI_OK && (e = readdir(dir));) {
    if (e->d_name[0] == '.' || strcmp(e->d_name, "config.json") == 0)
      continue;
    char from[4400], to[4400];
    snprintf(from, sizeof from, "%s/%s", src, e->d_name);
    snprintf(to, sizeof to, "%s/%s", dst, e->d_name);
    if (symlink(from, to) != 0) {
      fprintf(stderr, "gpuslice: demo: linking %s: %s\n", to, strerror(errno));
      rc = CLI_FAIL;
    }
  }
  closedir(dir);
  return rc;
}

int demo_model_repository(demo_t *d) {
  if (d->engine != DEMO_ENGINE_GPU) {
    snprintf(d->serve_models, sizeof d->serve_models, "%s", d->models);
    return CLI_OK;
  }
  char src[4400], dst[4400], abs_models[4096];
  if (!realpath(d->models, abs_models)) {
    fprintf(stderr, "gpuslice: demo: %s: %s\n", d->models, strerror(errno));
    return CLI_FAIL;
  }
  snprintf(d->serve_models, sizeof d->serve_models, "%s/models", d->state_dir);
  snprintf(src, sizeof src, "%s/%s", abs_models, d->model);
  snprintf(dst, sizeof dst, "%s/%s", d->serve_models, d->model);
  if (mkdir(d->serve_models, 0755) != 0 || mkdir(dst, 0755) != 0) {
    fprintf(stderr, "gpuslice: demo: %s: %s\n", dst, strerror(errno));
    return CLI_FAIL;
  }
  int rc = link_versions(src, dst);
  snprintf(src + strlen(src), sizeof src - strlen(src), "/config.json");
  snprintf(dst + strlen(dst), sizeof dst - strlen(dst), "/config.json");
  return rc == CLI_OK ? write_gpu_config(src, dst) : rc;
}
