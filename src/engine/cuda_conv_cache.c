/* The CUDA provider's conv choices, shared by every session of the process
 * and, with a cache directory set, kept in a file per GPU model and software
 * (conv_cache_file.c) that the next process reads at its first plan: a conv
 * timed once runs the way it was timed, without cudnnFind again. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conv_cache_file.h"
#include "engine/cuda_session_int.h"
#include "gpuslice/engine.h"

#define MAX_DEVICES 64

/* A device's cache file: read at the device's first plan, rewritten after
 * a plan that timed choices. */
typedef struct {
  bool attached;
  gs__ccf_ident_t ident;
  char path[4400];
  size_t timed; /* choices timed since the last save */
  bool bad;     /* the file was ignored: rewrite it */
} dev_file_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static gs__ccf_table_t table = {.key_size = sizeof(gs__cuda_conv_key_t),
                                .choice_size = sizeof(gs__cuda_conv_choice_t)};
static char cache_dir[4096]; /* "": no file */
static dev_file_t files[MAX_DEVICES];

bool gs__cuda_conv_cache_get(const gs__cuda_conv_key_t *key,
                             gs__cuda_conv_choice_t *out) {
  pthread_mutex_lock(&mu);
  const unsigned char *c = gs__ccf_table_find(&table, key);
  if (c)
    memcpy(out, c, sizeof *out);
  pthread_mutex_unlock(&mu);
  return c != NULL;
}

void gs__cuda_conv_cache_put(const gs__cuda_conv_key_t *key,
                             const gs__cuda_conv_choice_t *choice) {
  gs_error_t err;
  pthread_mutex_lock(&mu);
  /* a full cache keeps what it has: the next plan times again */
  if (gs__ccf_table_put(&table, key, choice, &err) == GS_OK && key->v[0] >= 0 &&
      key->v[0] < MAX_DEVICES)
    files[key->v[0]].timed++;
  pthread_mutex_unlock(&mu);
}

size_t gs__cuda_conv_cache_size(void) {
  pthread_mutex_lock(&mu);
  size_t n = table.n;
  pthread_mutex_unlock(&mu);
  return n;
}

void gs__cuda_conv_cache_clear(void) {
  pthread_mutex_lock(&mu);
  gs__ccf_table_free(&table);
  memset(files, 0, sizeof files);
  pthread_mutex_unlock(&mu);
}

int gs_engine_set_conv_cache(const char *dir, gs_error_t *err) {
  size_t len = dir ? strlen(dir) : 0;
  if (len >= sizeof cache_dir)
    return gs_error_set(err, GS_ELIMIT, "conv cache directory too long: %s",
                        dir);
  pthread_mutex_lock(&mu);
  memcpy(cache_dir, dir ? dir : "", len + 1);
  memset(files, 0, sizeof files); /* read again at each device's next plan */
  pthread_mutex_unlock(&mu);
  return GS_OK;
}

/* ---- the file ------------------------------------------------------------ */

/* DIR/<GPU name, [A-Za-z0-9._-] kept, others '_'>-sm<CC>-<SMs>.convcache */
static void file_path(const gs__ccf_ident_t *id, char *out, size_t cap) {
  char name[sizeof id->gpu];
  size_t i = 0;
  for (; id->gpu[i] && i + 1 < sizeof name; i++) {
    char ch = id->gpu[i];
    bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
    name[i] = keep ? ch : '_';
  }
  name[i] = '\0';
  int w = snprintf(out, cap, "%s/%s-sm%d%d-%d.convcache", cache_dir,
                   name[0] ? name : "gpu", id->cc_major, id->cc_minor, id->sms);
  if (w < 0 || (size_t)w >= cap)
    out[0] = '\0'; /* cannot happen: cache_dir is shorter than cap */
}

/* A choice read from a file is one this build could have made: values the
 * provider indexes by or reads as bools in range. The libraries' own
 * values (algorithms, math) are checked by running them (known_runs). */
static bool choice_sane(const unsigned char *bytes) {
  gs__cuda_conv_choice_t c;
  for (int k = 0; k < GS__CONV_PLAIN; k++)
    if (bytes[offsetof(gs__cuda_conv_choice_t, ran) + k] > 1)
      return false;
  memcpy(&c, bytes, sizeof c);
  return c.kind >= 0 && c.kind < GS__CONV_KINDS && c.ws <= GS__DNN_WS_BYTES &&
         c.lt_ws <= GS__DNN_WS_BYTES;
}

/* The file's choices into the process's table (device's keys), all or
 * none; mu held. The count taken, or -1 with err saying why not. */
static long take_file(int device, const gs__ccf_ident_t *id, const char *path,
                      gs_error_t *err) {
  gs__ccf_table_t got;
  int rc = gs__ccf_load(path, id, &got, err);
  size_t rs = got.key_size + got.choice_size, taken = 0, n0 = table.n;
  for (size_t i = 0; rc == GS_OK && i < got.n; i++)
    if (!choice_sane(got.rec + i * rs + got.key_size))
      rc = gs_error_set(err, GS_EPARSE,
                        "choice %zu is not one this build "
                        "makes",
                        i);
  for (size_t i = 0; rc == GS_OK && i < got.n; i++) {
    gs__cuda_conv_key_t key;
    memcpy(&key, got.rec + i * rs, sizeof key);
    key.v[0] = device; /* the file is the GPU model's, any ordinal */
    if (gs__ccf_table_find(&table, &key))
      continue;
    rc = gs__ccf_table_put(&table, &key, got.rec + i * rs + got.key_size, err);
    taken += rc == GS_OK;
  }
  gs__ccf_table_free(&got);
  if (rc != GS_OK)
    table.n = n0; /* none: the records taken were appended after n0 */
  return rc == GS_OK ? (long)taken : -1;
}

int gs__cuda_conv_cache_attach(int device,
                               const struct gs__ccf_ident_s *ident) {
  int rc = 0;
  gs_error_t err;
  pthread_mutex_lock(&mu);
  dev_file_t *f = device >= 0 && device < MAX_DEVICES ? &files[device] : NULL;
  if (!cache_dir[0] || !f || f->attached)
    goto out;
  f->attached = true;
  f->ident = *ident;
  f->ident.key_size = sizeof(gs__cuda_conv_key_t);
  f->ident.choice_size = sizeof(gs__cuda_conv_choice_t);
  file_path(&f->ident, f->path, sizeof f->path);
  long n = take_file(device, &f->ident, f->path, &err);
  if (n >= 0)
    fprintf(stderr, "gpuslice: conv cache %s: %ld choices loaded\n", f->path,
            n);
  else if (err.code == GS_ENOTFOUND)
    fprintf(stderr, "gpuslice: conv cache %s: none yet, convs are timed\n",
            f->path);
  else
    fprintf(stderr,
            "gpuslice: conv cache %s: ignored (%s), convs are timed "
            "and the file rewritten\n",
            f->path, err.msg);
  rc = n >= 0 ? (int)n : err.code == GS_ENOTFOUND ? 0 : -1;
  f->bad = n < 0 && err.code != GS_ENOTFOUND;
out:
  pthread_mutex_unlock(&mu);
  return rc;
}

int gs__cuda_conv_cache_flush(int device, gs_error_t *err) {
  int rc = GS_OK;
  gs__ccf_table_t mine;
  size_t rs = table.key_size + table.choice_size;
  pthread_mutex_lock(&mu);
  dev_file_t *f = device >= 0 && device < MAX_DEVICES ? &files[device] : NULL;
  gs__ccf_table_init(&mine, table.key_size, table.choice_size);
  if (!f || !f->attached || !cache_dir[0] || (!f->timed && !f->bad))
    goto out;
  for (size_t i = 0; rc == GS_OK && i < table.n; i++) {
    const unsigned char *r = table.rec + i * rs;
    gs__cuda_conv_key_t key;
    memcpy(&key, r, sizeof key);
    if (key.v[0] == device)
      rc = gs__ccf_table_put(&mine, r, r + table.key_size, err);
  }
  /* the file written without mu: other sessions' lookups do not wait for
   * the disk (saves are atomic renames of their own temporary files) */
  char path[sizeof f->path];
  gs__ccf_ident_t ident = f->ident;
  size_t timed = f->timed;
  memcpy(path, f->path, sizeof path);
  f->timed = 0; /* a failed save is not tried after every plan */
  f->bad = false;
  pthread_mutex_unlock(&mu);
  if (rc == GS_OK)
    rc = gs__ccf_save(path, &ident, &mine, err);
  if (rc == GS_OK)
    fprintf(stderr,
            "gpuslice: conv cache %s: %zu choices saved, %zu newly timed\n",
            path, mine.n, timed);
  else
    fprintf(stderr, "gpuslice: conv cache %s: not saved: %s\n", path, err->msg);
  gs__ccf_table_free(&mine);
  return rc;
out:
  pthread_mutex_unlock(&mu);
  gs__ccf_table_free(&mine);
  return rc;
}

int gs__cuda_conv_cache_open(const gs__cuda_session_t *cs) {
  const gs__cuda_libs_t *l = cs->l;
  gs__ccf_ident_t id;
  pthread_mutex_lock(&mu);
  bool skip = !cache_dir[0] || cs->device < 0 || cs->device >= MAX_DEVICES ||
              files[cs->device].attached;
  pthread_mutex_unlock(&mu);
  if (skip)
    return 0;
  memset(&id, 0, sizeof id);
  if (l->cuda.DeviceGetName(id.gpu, (int)sizeof id.gpu - 1, cs->dev) ||
      l->cuda.DeviceGetAttribute(&id.cc_major,
                                 CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                 cs->dev) ||
      l->cuda.DeviceGetAttribute(&id.cc_minor,
                                 CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                 cs->dev) ||
      l->cuda.DeviceGetAttribute(
          &id.sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, cs->dev))
    return -1; /* no file: this process times as before */
  id.driver = l->cuda.driver_version;
  id.cudnn = l->cudnn.version;
  id.cublaslt = l->cublaslt.GetVersion();
  return gs__cuda_conv_cache_attach(cs->device, &id);
}
