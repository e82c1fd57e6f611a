/* Model control as Triton's --model-control-mode: what loads at start
 * (none and poll: every model; explicit: --load-model's), poll mode's
 * rescan (a stamp per model directory, diffed against the last scan), and
 * the repository index that lists loaded versions and unloaded models. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "worker/worker_int.h"

static bool is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* FNV-1a over bytes, continuing from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

static uint64_t stamp_file(uint64_t h, const char *path) {
  struct stat st;
  h = fnv(h, path, strlen(path));
  if (stat(path, &st) != 0)
    return fnv(h, "-", 1);
  int64_t v[3] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec,
                  (int64_t)st.st_mtim.tv_nsec};
  return fnv(h, v, sizeof v);
}

/* Order-independent over the version directories: readdir's order is
 * not stable across changes to the directory. */
uint64_t gs__repo_stamp(const char *model_dir) {
  char path[4400];
  uint64_t h = 14695981039346656037ull, sum = 0;
  snprintf(path, sizeof path, "%s/config.pbtxt", model_dir);
  h = stamp_file(h, path);
  snprintf(path, sizeof path, "%s/config.json", model_dir);
  h = stamp_file(h, path);
  DIR *d = opendir(model_dir);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof path, "%s/%s/model.onnx", model_dir, e->d_name);
    sum += stamp_file(14695981039346656037ull, path);
  }
  if (d)
    closedir(d);
  return fnv(h, &sum, sizeof sum);
}

size_t gs__repo_poll_diff(const gs__repo_seen_t *old, size_t n_old,
                          const gs__repo_seen_t *now, size_t n_now,
                          gs__poll_action_t *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < n_now && n < cap; i++) {
    size_t k = 0;
    while (k < n_old && strcmp(old[k].name, now[i].name))
      k++;
    if (k < n_old && old[k].stamp == now[i].stamp)
      continue;
    snprintf(out[n].name, sizeof out[n].name, "%s", now[i].name);
    out[n++].op = GS__POLL_LOAD;
  }
  for (size_t k = 0; k < n_old && n < cap; k++) {
    size_t i = 0;
    while (i < n_now && strcmp(old[k].name, now[i].name))
      i++;
    if (i < n_now)
      continue;
    snprintf(out[n].name, sizeof out[n].name, "%s", old[k].name);
    out[n++].op = GS__POLL_UNLOAD;
  }
  return n;
}

/* The model directories under repo->dir with their stamps (at most cap). */
static size_t scan(const gs__repo_t *repo, gs__repo_seen_t *seen, size_t cap,
                   bool with_stamps) {
  DIR *d = opendir(repo->dir);
  struct dirent *e;
  size_t n = 0;
  while (d && (e = readdir(d)) != NULL && n < cap) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", repo->dir, e->d_name);
    if (!gs__repo_valid_name(e->d_name) || !is_dir(path))
      continue;
    snprintf(seen[n].name, sizeof seen[n].name, "%.127s", e->d_name);
    seen[n++].stamp = with_stamps ? gs__repo_stamp(path) : 0;
  }
  if (d)
    closedir(d);
  return n;
}

void gs__repo_poll(gs__repo_t *repo) {
  gs__repo_seen_t now[GS__REPO_MAX_MODELS];
  gs__poll_action_t act[2 * GS__REPO_MAX_MODELS];
  size_t n_now = scan(repo, now, GS__REPO_MAX_MODELS, true);
  size_t n = gs__repo_poll_diff(repo->seen, repo->n_seen, now, n_now, act,
                                sizeof act / sizeof act[0]);
  for (size_t i = 0; i < n; i++) {
    gs_error_t err;
    if (act[i].op == GS__POLL_UNLOAD)
      gs__repo_unload_name(repo, act[i].name);
    else
      gs__repo_load(repo, act[i].name, &err); /* the reason is the entry's */
  }
  memcpy(repo->seen, now, n_now * sizeof now[0]);
  repo->n_seen = (unsigned)n_now;
}

/* Explicit mode's --load-model names: each must be a model directory. */
static int load_named(gs__repo_t *repo, const gs_worker_options_t *opts,
                      gs_error_t *err) {
  for (size_t i = 0; i < opts->n_load_models; i++) {
    const char *name = opts->load_models[i];
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", repo->dir, name);
    if (!strcmp(name, "*"))
      continue;
    if (!gs__repo_valid_name(name) || !is_dir(path))
      return gs_error_set(err, GS_ENOTFOUND,
                          "--load-model %.128s: no model directory of that "
                          "name in %s",
                          name, repo->dir);
    gs_error_t lerr;
    if (gs__repo_load(repo, name, &lerr) == GS_ELIMIT)
      return gs_error_set(err, GS_ELIMIT, "%s", lerr.msg);
  }
  return GS_OK;
}

static bool load_all(const gs_worker_options_t *opts) {
  if (opts->model_control != GS_MODEL_CONTROL_EXPLICIT)
    return true;
  for (size_t i = 0; i < opts->n_load_models; i++)
    if (!strcmp(opts->load_models[i], "*"))
      return true;
  return false;
}

/* The engine's wait for the worker's choice; AUTO spins along with
 * busy_poll_us's threads, else leaves it to the driver. */
static gs_gpu_wait_t gpu_wait(const gs_worker_options_t *opts) {
  switch (opts->gpu_wait) {
  case GS_WORKER_GPU_WAIT_AUTO:
    break;
  case GS_WORKER_GPU_WAIT_DRIVER:
    return GS_GPU_WAIT_DRIVER;
  case GS_WORKER_GPU_WAIT_SPIN:
    return GS_GPU_WAIT_SPIN;
  case GS_WORKER_GPU_WAIT_BLOCK:
    return GS_GPU_WAIT_BLOCK;
  }
  return opts->busy_poll_us > 0 ? GS_GPU_WAIT_SPIN : GS_GPU_WAIT_DRIVER;
}

int gs__repo_open_opts(gs__repo_t *repo, const gs_worker_options_t *opts,
                       gs_error_t *err) {
  memset(repo, 0, sizeof *repo);
  pthread_mutex_init(&repo->wake.lock, NULL);
  repo->wake.lock_ready = true;
  repo->sm_first = opts->sm_first;
  repo->sm_count = opts->sm_count;
  repo->gpu_wait = gpu_wait(opts);
  repo->plan_before_ready = opts->plan_before_ready;
  repo->note = opts->note;
  repo->note_ctx = opts->note_ctx;
  repo->mode = opts->model_control;
  const char *sname = opts->server_name ? opts->server_name : "gpuslice";
  if (!gs__repo_valid_name(sname) || strlen(sname) >= sizeof repo->server_name)
    return gs_error_set(err, GS_EINVAL,
                        "server name '%.64s': letters, digits, '_.-', under "
                        "64 bytes",
                        sname);
  snprintf(repo->server_name, sizeof repo->server_name, "%s", sname);
  if (strlen(opts->model_repository) >= sizeof repo->dir)
    return gs_error_set(err, GS_EINVAL, "repository path is too long");
  snprintf(repo->dir, sizeof repo->dir, "%s", opts->model_repository);
  DIR *d = opendir(repo->dir);
  if (!d)
    return gs_error_sys(err, errno, "cannot read model repository %s",
                        repo->dir);
  closedir(d);
  gs__repo_seen_t all[GS__REPO_MAX_MODELS];
  size_t n = scan(repo, all, GS__REPO_MAX_MODELS,
                  opts->model_control == GS_MODEL_CONTROL_POLL);
  for (size_t i = 0; load_all(opts) && i < n; i++) {
    gs_error_t lerr;
    if (gs__repo_load(repo, all[i].name, &lerr) == GS_ELIMIT)
      break;
  }
  if (opts->model_control == GS_MODEL_CONTROL_POLL) {
    memcpy(repo->seen, all, n * sizeof all[0]);
    repo->n_seen = (unsigned)n;
  }
  return load_all(opts) ? GS_OK : load_named(repo, opts, err);
}

int gs__repo_open(gs__repo_t *repo, const char *dir, gs_error_t *err) {
  return gs__repo_open_sms(repo, dir, 0, 0, err);
}

int gs__repo_open_sms(gs__repo_t *repo, const char *dir, unsigned sm_first,
                      unsigned sm_count, gs_error_t *err) {
  gs_worker_options_t opts = {
      .model_repository = dir, .sm_first = sm_first, .sm_count = sm_count};
  return gs__repo_open_opts(repo, &opts, err);
}

void gs__repo_close(gs__repo_t *repo) {
  for (unsigned i = 0; i < repo->n; i++) {
    gs__slot_unref(repo->models[i].slot);
    free(repo->models[i].stats.batch);
    gs__seq_model_destroy(&repo->models[i]);
  }
  repo->n = 0;
  if (repo->wake.lock_ready) /* every planning thread is joined now */
    pthread_mutex_destroy(&repo->wake.lock);
  repo->wake.lock_ready = false;
}

static json_t *index_entry(const gs__model_entry_t *m) {
  json_t *e = json_pack("{s:s, s:s}", "name", m->name, "state",
                        m->state == GS__MODEL_READY ? "READY" : "UNAVAILABLE");
  if (m->version[0])
    json_object_set_new(e, "version", json_string(m->version));
  json_object_set_new(e, "reason", json_string(m->reason));
  return e;
}

json_t *gs__repo_index_json(const gs__repo_t *repo, bool ready) {
  json_t *a = json_array();
  for (unsigned i = 0; i < repo->n; i++)
    if (!ready || repo->models[i].state == GS__MODEL_READY)
      json_array_append_new(a, index_entry(&repo->models[i]));
  gs__repo_seen_t all[GS__REPO_MAX_MODELS];
  size_t n = ready ? 0 : scan(repo, all, GS__REPO_MAX_MODELS, false);
  for (size_t i = 0; i < n; i++) {
    unsigned k = 0;
    while (k < repo->n && strcmp(repo->models[k].name, all[i].name))
      k++;
    if (k == repo->n) /* never loaded: Triton lists the name alone */
      json_array_append_new(a, json_pack("{s:s}", "name", all[i].name));
  }
  return a;
}
