/* Versions of a model: the VERSION directories that the config's
 * version_policy selects load together, each its own entry (its own slot,
 * batcher and statistics), and a reload replaces them only once every new
 * version has loaded, so that a bad config leaves the old ones serving. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "worker/model_config.h"
#include "worker/repo_files.h"
#include "worker/worker_int.h"

#define MAX_PRESENT 256 /* version directories read per model */

/* The numeric directories of model_dir that hold a model.onnx. */
static int list_versions(const char *model_dir, long long *present, size_t *n,
                         gs_error_t *err) {
  DIR *d = opendir(model_dir);
  *n = 0;
  if (!d)
    return gs_error_sys(err, errno, "cannot read %s", model_dir);
  struct dirent *e;
  while ((e = readdir(d)) != NULL && *n < MAX_PRESENT) {
    char *end, path[4400];
    long long v = strtoll(e->d_name, &end, 10);
    struct stat st;
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || *end || v > 1000000000)
      continue;
    if (snprintf(path, sizeof path, "%s/%s/model.onnx", model_dir, e->d_name) <
            (int)sizeof path &&
        stat(path, &st) == 0)
      present[(*n)++] = v;
  }
  closedir(d);
  if (*n == 0)
    return gs_error_set(err, GS_ENOTFOUND, "no VERSION/model.onnx under %s",
                        model_dir);
  return GS_OK;
}

static long long version_number(const char *v) {
  char *end;
  long long n = strtoll(v, &end, 10);
  return v[0] >= '0' && v[0] <= '9' && !*end ? n : -1;
}

gs__model_entry_t *gs__repo_find_version(gs__repo_t *repo, const char *name,
                                         const char *version) {
  long long want = version_number(version);
  for (unsigned i = 0; want >= 0 && i < repo->n; i++)
    if (!strcmp(repo->models[i].name, name) &&
        version_number(repo->models[i].version) == want)
      return &repo->models[i];
  return NULL;
}

gs__model_entry_t *gs__repo_find(gs__repo_t *repo, const char *name) {
  gs__model_entry_t *best = NULL, *any = NULL;
  for (unsigned i = 0; i < repo->n; i++) {
    gs__model_entry_t *m = &repo->models[i];
    if (strcmp(m->name, name))
      continue;
    if (!any ||
        (any->state == GS__MODEL_UNLOADED && m->state != GS__MODEL_UNLOADED))
      any = m;
    if (m->state == GS__MODEL_READY &&
        (!best || version_number(m->version) > version_number(best->version)))
      best = m;
  }
  return best ? best : any;
}

gs__model_entry_t *gs__repo_ready(gs__repo_t *repo, const char *name,
                                  const char *version, int not_ready_status,
                                  gs__infer_job_t *job, int *status,
                                  gs_error_t *err) {
  gs__model_entry_t *m = gs__repo_find(repo, name);
  *status = 404;
  if (!m)
    return gs_error_set(err, GS_ENOTFOUND,
                        "Request for unknown model: '%.128s' is not found",
                        name),
           NULL;
  if (version && !(m = gs__repo_find_version(repo, name, version)))
    return gs_error_set(err, GS_ENOTFOUND,
                        "Request for unknown model: '%.128s' version %.24s is "
                        "not found",
                        name, version),
           NULL;
  if (m->state != GS__MODEL_READY) {
    *status = not_ready_status;
    return gs_error_set(err, GS_EINVAL,
                        "Request for unknown model: '%.128s' is not "
                        "ready%s%.400s",
                        name, m->reason[0] ? ": " : "", m->reason),
           NULL;
  }
  *status = 200;
  if (job) { /* the job holds the slot it runs on */
    memset(job, 0, sizeof *job);
    job->entry = m;
    job->slot = m->slot;
    job->shm = repo->shm;
    job->repo = repo;
    job->pacer = repo->pace.ns_per_row ? &repo->pace : NULL;
    m->slot->refs++;
    job->t_received = gs__now_ns();
  }
  return m;
}

/* An entry for (name, version): its own, else an entry of name that
 * serves no version (a failed load's), else a new one; NULL when full. */
static gs__model_entry_t *entry_for(gs__repo_t *repo, const char *name,
                                    const char *version) {
  gs__model_entry_t *m = gs__repo_find_version(repo, name, version);
  for (unsigned i = 0; !m && i < repo->n; i++)
    if (!strcmp(repo->models[i].name, name) && !repo->models[i].version[0])
      m = &repo->models[i];
  if (!m && repo->n < GS__REPO_MAX_MODELS) {
    m = &repo->models[repo->n++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
  }
  return m;
}

static void take_out(gs__model_entry_t *m, gs__model_state_t state,
                     const char *reason) {
  gs__slot_unref(m->slot);
  m->slot = NULL;
  m->state = state;
  snprintf(m->reason, sizeof m->reason, "%.511s", reason);
}

/* A load that failed: a model that serves keeps serving; one that does
 * not shows the reason, a new one in an entry of the version that failed
 * ("" when none was reached) with what its config said (tmpl). */
static void note_failure(gs__repo_t *repo, const gs__model_entry_t *tmpl,
                         const char *version, const char *why) {
  bool any = false;
  for (unsigned i = 0; i < repo->n; i++) {
    gs__model_entry_t *m = &repo->models[i];
    if (strcmp(m->name, tmpl->name))
      continue;
    any = true;
    if (m->state == GS__MODEL_READY)
      return;
  }
  for (unsigned i = 0; i < repo->n; i++)
    if (!strcmp(repo->models[i].name, tmpl->name))
      take_out(&repo->models[i], GS__MODEL_UNAVAILABLE, why);
  gs__model_entry_t *m = any ? NULL : entry_for(repo, tmpl->name, version);
  if (!m)
    return;
  snprintf(m->version, sizeof m->version, "%s", version);
  m->max_batch_size = tmpl->max_batch_size;
  m->batching = tmpl->batching;
  m->sequence = tmpl->sequence;
  m->memory_budget_bytes = tmpl->memory_budget_bytes;
  m->placement = tmpl->placement;
  take_out(m, GS__MODEL_UNAVAILABLE, why);
}

/* Loads each picked version into staged[i] (config fields from tmpl). */
static int stage_versions(const char *dir, const gs__model_entry_t *tmpl,
                          const gs__model_config_t *cfg, bool found,
                          const long long *picked, size_t n,
                          const char *config_name, gs__model_entry_t *staged,
                          char *failed, gs_error_t *err) {
  for (size_t i = 0; i < n; i++) {
    char path[4500];
    gs__model_entry_t *s = &staged[i];
    memcpy(s, tmpl, sizeof *s);
    snprintf(s->version, sizeof s->version, "%lld", picked[i]);
    snprintf(path, sizeof path, "%s/%s/model.onnx", dir, s->version);
    int rc = gs__repo_slot_create(s, path, cfg, found, config_name, err);
    if (rc == GS_OK && (rc = gs__repo_check_batch_dims(s, err)) != GS_OK) {
      gs__slot_unref(s->slot);
      s->slot = NULL;
    }
    if (rc != GS_OK) {
      gs_error_prefix(err, "version %s: ", s->version);
      snprintf(failed, sizeof s->version, "%s", s->version);
      return rc;
    }
  }
  return GS_OK;
}

/* The staged versions replace what name served; the others unload. */
static void commit(gs__repo_t *repo, const char *name,
                   gs__model_entry_t *staged, size_t n) {
  gs__model_entry_t *put[GS__CONFIG_MAX_VERSIONS];
  for (size_t i = 0; i < n; i++) {
    gs__model_entry_t *m = put[i] = entry_for(repo, name, staged[i].version);
    gs__model_slot_t *old = m->slot;
    snprintf(m->version, sizeof m->version, "%s", staged[i].version);
    m->max_batch_size = staged[i].max_batch_size;
    m->batching = staged[i].batching;
    m->sequence = staged[i].sequence;
    m->memory_budget_bytes = staged[i].memory_budget_bytes;
    m->placement = staged[i].placement;
    m->slot = staged[i].slot;
    staged[i].slot = NULL;
    m->state = GS__MODEL_READY;
    m->reason[0] = '\0';
    gs__slot_unref(old);
  }
  for (unsigned i = 0; i < repo->n; i++) {
    gs__model_entry_t *m = &repo->models[i];
    bool kept = false;
    for (size_t k = 0; k < n; k++)
      kept = kept || put[k] == m;
    if (!kept && !strcmp(m->name, name) && m->state != GS__MODEL_UNLOADED)
      take_out(m, GS__MODEL_UNLOADED,
               "unloaded: version_policy no longer "
               "selects this version");
  }
}

/* The versions picked for dir under cfg, loaded into staged; *n of them. */
static int load_versions(gs__repo_t *repo, const char *name, const char *dir,
                         const char *override, size_t override_len,
                         gs__model_entry_t *staged, size_t *n, char *failed,
                         gs_error_t *err) {
  gs__model_config_t cfg;
  long long present[MAX_PRESENT], picked[GS__CONFIG_MAX_VERSIONS];
  size_t np = 0;
  bool found = false;
  gs__model_entry_t *tmpl = &staged[GS__CONFIG_MAX_VERSIONS];
  memset(tmpl, 0, sizeof *tmpl);
  snprintf(tmpl->name, sizeof tmpl->name, "%s", name);
  int rc = gs__repo_read_config(tmpl, dir, override, override_len, &cfg, &found,
                                err);
  tmpl->placement.sm_first = repo->sm_first;
  tmpl->placement.sm_count = repo->sm_count;
  tmpl->placement.gpu_wait = repo->gpu_wait;
  tmpl->placement.plan_before_ready = repo->plan_before_ready;
  tmpl->placement.note = repo->note;
  tmpl->placement.note_ctx = repo->note_ctx;
  tmpl->placement.wake = &repo->wake;
  if (rc == GS_OK)
    rc = list_versions(dir, present, &np, err);
  if (rc == GS_OK)
    rc = gs__model_config_pick_versions(&cfg, present, np, picked,
                                        GS__CONFIG_MAX_VERSIONS, n, dir, err);
  if (rc == GS_OK)
    rc = stage_versions(dir, tmpl, &cfg, found, picked, *n,
                        override ? "config override" : NULL, staged, failed,
                        err);
  return rc;
}

int gs__repo_load_config(gs__repo_t *repo, const char *name,
                         const char *override, size_t override_len,
                         gs_error_t *err) {
  char dir[4400];
  struct stat st;
  snprintf(dir, sizeof dir, "%s/%s", repo->dir, name);
  if (!gs__repo_valid_name(name) || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return gs_error_set(err, GS_ENOTFOUND,
                        "failed to load '%.128s', failed to poll from model "
                        "repository: no model directory of that name",
                        name);
  return gs__repo_load_from(repo, name, dir, override, override_len, err);
}

int gs__repo_load_from(gs__repo_t *repo, const char *name, const char *dir,
                       const char *override, size_t override_len,
                       gs_error_t *err) {
  /* One more than the versions: the template the config is read into. */
  gs__model_entry_t *staged =
      calloc(GS__CONFIG_MAX_VERSIONS + 1, sizeof *staged);
  if (!staged)
    return gs_error_set(err, GS_ENOMEM,
                        "failed to load '%.128s': out of "
                        "memory",
                        name);
  size_t n = 0;
  char failed[24] = "";
  int rc = load_versions(repo, name, dir, override, override_len, staged, &n,
                         failed, err);
  unsigned free_entries = GS__REPO_MAX_MODELS - repo->n;
  for (unsigned i = 0; i < repo->n; i++)
    free_entries += !strcmp(repo->models[i].name, name);
  if (rc == GS_OK && n > free_entries)
    rc = gs_error_set(err, GS_ELIMIT,
                      "the repository holds %d model versions, the most a "
                      "worker serves",
                      GS__REPO_MAX_MODELS);
  if (rc == GS_OK)
    commit(repo, name, staged, n);
  for (size_t i = 0; i < GS__CONFIG_MAX_VERSIONS; i++)
    gs__slot_unref(staged[i].slot);
  if (rc != GS_OK) {
    gs_error_prefix(err, "failed to load '%.128s': ", name);
    note_failure(repo, &staged[GS__CONFIG_MAX_VERSIONS], failed, err->msg);
  }
  free(staged);
  return rc;
}

int gs__repo_load(gs__repo_t *repo, const char *name, gs_error_t *err) {
  return gs__repo_load_config(repo, name, NULL, 0, err);
}

void gs__repo_unload_name(gs__repo_t *repo, const char *name) {
  for (unsigned i = 0; i < repo->n; i++)
    if (!strcmp(repo->models[i].name, name))
      take_out(&repo->models[i], GS__MODEL_UNLOADED, "unloaded");
}

void gs__repo_unload(gs__repo_t *repo, gs__model_entry_t *m) {
  char name[sizeof m->name];
  snprintf(name, sizeof name, "%s", m->name);
  gs__repo_unload_name(repo, name);
}

json_t *gs__repo_versions_json(const gs__repo_t *repo, const char *name) {
  long long v[GS__REPO_MAX_MODELS];
  size_t n = 0;
  for (unsigned i = 0; i < repo->n; i++) {
    const gs__model_entry_t *m = &repo->models[i];
    if (strcmp(m->name, name) || m->state != GS__MODEL_READY)
      continue;
    size_t j = n++;
    for (; j > 0 && v[j - 1] > version_number(m->version); j--)
      v[j] = v[j - 1];
    v[j] = version_number(m->version);
  }
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) {
    char s[24];
    snprintf(s, sizeof s, "%lld", v[i]);
    json_array_append_new(a, json_string(s));
  }
  return a;
}
